use super::*;
use meridian_config::zone::EndpointAddress;
use rand::rngs::StdRng;
use rand::SeedableRng;

fn ep(id: &str, weight: u16, priority: u16, state: AdminState) -> Endpoint {
    Endpoint {
        id: id.into(),
        address: EndpointAddress::Ip("192.0.2.1".parse().unwrap()),
        region: "r".into(),
        lat: None,
        lon: None,
        weight,
        cost: 0.0,
        priority,
        state,
    }
}

fn run(
    pool: &[Endpoint],
    steps: &[Step],
    on_all_down: OnAllDown,
    seed: u64,
) -> (Outcome, Vec<String>) {
    let policy = Policy::compile(steps, &on_all_down);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut ctx = Context {
        client: None,
        rng: &mut rng,
    };
    let mut out = Vec::new();
    let outcome = policy.decide(pool, &mut ctx, &mut out, None);
    (
        outcome,
        out.iter()
            .map(|&i| pool[usize::from(i)].id.clone())
            .collect(),
    )
}

use AdminState::{Disabled, Drained, Enabled};

#[test]
fn health_drops_endpoints_not_enabled() {
    let pool = [
        ep("a", 1, 1, Enabled),
        ep("b", 1, 1, Drained),
        ep("c", 1, 1, Disabled),
        ep("d", 1, 1, Enabled),
    ];
    assert_eq!(
        run(&pool, &[Step::Health], OnAllDown::NoData, 1),
        (Outcome::Endpoints, vec!["a".into(), "d".into()])
    );
}

#[test]
fn priority_keeps_the_best_tier_with_candidates() {
    let pool = [
        ep("p2", 1, 2, Enabled),
        ep("p1", 1, 1, Disabled),
        ep("p3", 1, 3, Enabled),
        ep("p2b", 1, 2, Enabled),
    ];
    // the top tier is disabled, so tier 2 answers
    assert_eq!(
        run(&pool, &[Step::Health, Step::Priority], OnAllDown::NoData, 1).1,
        vec!["p2".to_string(), "p2b".to_string()]
    );
    // without health, tier 1 wins even though it is disabled
    assert_eq!(
        run(&pool, &[Step::Priority], OnAllDown::NoData, 1).1,
        vec!["p1".to_string()]
    );
}

#[test]
fn first_keeps_n() {
    let pool = [
        ep("a", 1, 1, Enabled),
        ep("b", 1, 1, Enabled),
        ep("c", 1, 1, Enabled),
    ];
    assert_eq!(
        run(&pool, &[Step::First(2)], OnAllDown::NoData, 1).1,
        vec!["a".to_string(), "b".to_string()]
    );
    assert_eq!(
        run(&pool, &[Step::First(9)], OnAllDown::NoData, 1).1.len(),
        3
    );
}

#[test]
fn weighted_follows_weights() {
    let pool = [
        ep("a", 1, 1, Enabled),
        ep("b", 3, 1, Enabled),
        ep("z", 0, 1, Enabled),
    ];
    let mut counts = [0u32; 2];
    let n = 20_000;
    for seed in 0..n {
        let (_, ids) = run(
            &pool,
            &[Step::Weighted, Step::First(1)],
            OnAllDown::NoData,
            seed,
        );
        match ids[0].as_str() {
            "a" => counts[0] += 1,
            "b" => counts[1] += 1,
            other => panic!("zero weight answered: {other}"),
        }
    }
    let share_b = f64::from(counts[1]) / f64::from(n as u32);
    assert!((share_b - 0.75).abs() < 0.02, "b got {share_b}");
}

#[test]
fn weighted_keeps_every_candidate_once() {
    let pool: Vec<Endpoint> = (0..30)
        .map(|i| ep(&format!("e{i}"), (i % 5) as u16 + 1, 1, Enabled))
        .collect();
    for seed in 0..50 {
        let (_, mut ids) = run(&pool, &[Step::Weighted], OnAllDown::NoData, seed);
        assert_eq!(ids.len(), 30);
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 30);
    }
}

#[test]
fn all_zero_weights_draw_uniformly() {
    let pool = [ep("a", 0, 1, Enabled), ep("b", 0, 1, Enabled)];
    let firsts: Vec<String> = (0..200)
        .map(|s| {
            run(
                &pool,
                &[Step::Weighted, Step::First(1)],
                OnAllDown::NoData,
                s,
            )
            .1[0]
                .clone()
        })
        .collect();
    assert!(firsts.iter().any(|f| f == "a") && firsts.iter().any(|f| f == "b"));
}

#[test]
fn on_all_down_rules() {
    let pool = [ep("a", 1, 1, Drained), ep("b", 1, 1, Enabled)];
    let all_down = [ep("a", 1, 1, Drained), ep("b", 1, 1, Disabled)];
    // a step (here `first` after health on an all-drained pool) leaves nothing
    assert_eq!(
        run(&all_down, &[Step::Health], OnAllDown::NoData, 1).0,
        Outcome::NoData
    );
    let sorry = OnAllDown::Sorry(vec![EndpointAddress::Ip("192.0.2.99".parse().unwrap())]);
    assert_eq!(run(&all_down, &[Step::Health], sorry, 1).0, Outcome::Sorry);
    // fail open answers every enabled endpoint; with none enabled, NODATA
    assert_eq!(
        run(&all_down, &[Step::Health], OnAllDown::FailOpen, 1).0,
        Outcome::NoData
    );
    assert_eq!(
        run(&pool, &[Step::Health], OnAllDown::FailOpen, 1),
        (Outcome::Endpoints, vec!["b".to_string()])
    );
}

#[test]
fn trace_says_what_each_step_did() {
    let pool = [
        ep("a", 1, 1, Disabled),
        ep("b", 1, 2, Enabled),
        ep("c", 1, 3, Enabled),
    ];
    let policy = Policy::compile(
        &[Step::Health, Step::Priority, Step::First(1)],
        &OnAllDown::NoData,
    );
    let mut rng = StdRng::seed_from_u64(1);
    let mut ctx = Context {
        client: None,
        rng: &mut rng,
    };
    let mut out = Vec::new();
    let mut trace = Trace::default();
    policy.decide(&pool, &mut ctx, &mut out, Some(&mut trace));
    let steps: Vec<&str> = trace.steps.iter().map(|s| s.step).collect();
    assert_eq!(steps, ["health", "priority", "first"]);
    assert_eq!(trace.steps[0].notes, ["dropped a (admin state Disabled)"]);
    assert_eq!(trace.steps[1].kept, ["b"]);
}

#[test]
fn empty_pipeline_answers_the_whole_pool() {
    let pool = [ep("a", 1, 1, Enabled), ep("b", 1, 1, Disabled)];
    assert_eq!(run(&pool, &[], OnAllDown::NoData, 1).1.len(), 2);
}
