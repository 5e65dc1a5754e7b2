use super::*;
use meridian_config::zone::{ClientMatch, EndpointAddress, FenceRule, GeoMap};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::collections::BTreeMap;

use AdminState::{Disabled, Drained, Enabled};

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
        bias: 0,
        rtt_ms: BTreeMap::new(),
        check_address: None,
        redirect_url: None,
        proxy_url: None,
    }
}

/// An endpoint in `region` at (lat, lon) with `cost` and static RTTs.
fn placed(id: &str, region: &str, lat: f64, lon: f64, cost: f64, rtt: &[(&str, f64)]) -> Endpoint {
    Endpoint {
        region: region.into(),
        lat: Some(lat),
        lon: Some(lon),
        cost,
        rtt_ms: rtt.iter().map(|(r, ms)| (r.to_string(), *ms)).collect(),
        ..ep(id, 1, 1, Enabled)
    }
}

fn code(s: &str) -> Option<Code> {
    Code::new(s)
}

/// A client location: country, continent, coordinates, network prefix.
fn loc(country: &str, continent: &str, coords: (f64, f64), prefix: u8) -> Location {
    Location {
        country: code(country),
        continent: code(continent),
        subdivision: None,
        coords: Some(coords),
        asn: None,
        network_prefix: prefix,
    }
}

struct Run<'a> {
    pool: &'a [Endpoint],
    steps: Vec<Step>,
    on_all_down: OnAllDown,
    regions: Vec<ProbeRegion>,
    observed: Vec<Observed>,
    client: Option<IpAddr>,
    prefix: u8,
    location: Option<Location>,
    seed: u64,
}

impl<'a> Run<'a> {
    fn new(pool: &'a [Endpoint], steps: Vec<Step>) -> Run<'a> {
        Run {
            pool,
            steps,
            on_all_down: OnAllDown::NoData,
            regions: Vec::new(),
            observed: Vec::new(),
            client: Some("192.0.2.77".parse().unwrap()),
            prefix: 32,
            location: None,
            seed: 1,
        }
    }

    fn decide(&self) -> (Decision, Vec<String>) {
        let policy = Policy::compile(
            &self.steps,
            &self.on_all_down,
            self.pool,
            &self.observed,
            &self.regions,
        );
        let mut rng = StdRng::seed_from_u64(self.seed);
        let mut ctx = Context {
            client: self.client,
            client_prefix: self.prefix,
            location: self.location.as_ref(),
            rng: &mut rng,
            class: None,
        };
        let mut out = Vec::new();
        let d = policy.decide(self.pool, &mut ctx, &mut out, None);
        (
            d,
            out.iter()
                .map(|&i| self.pool[usize::from(i)].id.clone())
                .collect(),
        )
    }

    fn ids(&self) -> Vec<String> {
        self.decide().1
    }
}

fn run(
    pool: &[Endpoint],
    steps: &[Step],
    on_all_down: OnAllDown,
    seed: u64,
) -> (Outcome, Vec<String>) {
    let mut r = Run::new(pool, steps.to_vec());
    r.on_all_down = on_all_down;
    r.seed = seed;
    let (d, ids) = r.decide();
    (d.outcome, ids)
}

fn weighted() -> Step {
    Step::Weighted { sticky: false }
}

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
    assert_eq!(
        run(&pool, &[Step::Health, Step::Priority], OnAllDown::NoData, 1).1,
        ["p2", "p2b"]
    );
    assert_eq!(
        run(&pool, &[Step::Priority], OnAllDown::NoData, 1).1,
        ["p1"]
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
        ["a", "b"]
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
    let n = 20_000;
    let mut b = 0;
    for seed in 0..n {
        match run(
            &pool,
            &[weighted(), Step::First(1)],
            OnAllDown::NoData,
            seed,
        )
        .1[0]
            .as_str()
        {
            "a" => {}
            "b" => b += 1,
            other => panic!("zero weight answered: {other}"),
        }
    }
    let share_b = f64::from(b) / n as f64;
    assert!((share_b - 0.75).abs() < 0.02, "b got {share_b}");
}

#[test]
fn weighted_keeps_every_candidate_once() {
    let pool: Vec<Endpoint> = (0..30)
        .map(|i| ep(&format!("e{i}"), (i % 5) as u16 + 1, 1, Enabled))
        .collect();
    for seed in 0..50 {
        let (_, mut ids) = run(&pool, &[weighted()], OnAllDown::NoData, seed);
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
        .map(|s| run(&pool, &[weighted(), Step::First(1)], OnAllDown::NoData, s).1[0].clone())
        .collect();
    assert!(firsts.iter().any(|f| f == "a") && firsts.iter().any(|f| f == "b"));
}

#[test]
fn on_all_down_rules() {
    let pool = [ep("a", 1, 1, Drained), ep("b", 1, 1, Enabled)];
    let all_down = [ep("a", 1, 1, Drained), ep("b", 1, 1, Disabled)];
    assert_eq!(
        run(&all_down, &[Step::Health], OnAllDown::NoData, 1).0,
        Outcome::NoData
    );
    let sorry = OnAllDown::Sorry(vec![EndpointAddress::Ip("192.0.2.99".parse().unwrap())]);
    assert_eq!(run(&all_down, &[Step::Health], sorry, 1).0, Outcome::Sorry);
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
fn empty_pool_and_empty_pipeline() {
    let none: [Endpoint; 0] = [];
    for steps in [
        vec![Step::Health, weighted(), Step::First(1)],
        vec![Step::Weighted { sticky: true }],
        vec![Step::Nearest],
    ] {
        assert_eq!(
            run(&none, &steps, OnAllDown::NoData, 1),
            (Outcome::NoData, vec![])
        );
    }
    let pool = [ep("a", 1, 1, Enabled), ep("b", 1, 1, Disabled)];
    assert_eq!(run(&pool, &[], OnAllDown::NoData, 1).1.len(), 2);
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
        &pool,
        &[],
        &[],
    );
    let mut rng = StdRng::seed_from_u64(1);
    let mut ctx = Context {
        client: None,
        client_prefix: 0,
        location: None,
        rng: &mut rng,
        class: None,
    };
    let mut out = Vec::new();
    let mut trace = Trace::default();
    policy.decide(&pool, &mut ctx, &mut out, Some(&mut trace));
    let steps: Vec<&str> = trace.steps.iter().map(|s| s.step).collect();
    assert_eq!(steps, ["health", "priority", "first"]);
    assert_eq!(trace.steps[0].notes, ["dropped a (admin state Disabled)"]);
    assert_eq!(trace.steps[1].kept, ["b"]);
}

// --- location steps ---

fn world() -> Vec<Endpoint> {
    vec![
        placed(
            "eu-1",
            "eu-west",
            53.35,
            -6.26,
            3.0,
            &[("eu-west", 5.0), ("us-east", 80.0)],
        ),
        placed(
            "eu-2",
            "eu-west",
            50.11,
            8.68,
            1.0,
            &[("eu-west", 12.0), ("us-east", 90.0)],
        ),
        placed(
            "us-1",
            "us-east",
            39.04,
            -77.49,
            2.0,
            &[("eu-west", 75.0), ("us-east", 4.0)],
        ),
        placed("ap-1", "ap-south", 19.08, 72.88, 1.0, &[("eu-west", 120.0)]),
    ]
}

fn probe_regions() -> Vec<ProbeRegion> {
    vec![
        ProbeRegion {
            name: "eu-west".into(),
            lat: Some(53.3),
            lon: Some(-6.3),
        },
        ProbeRegion {
            name: "us-east".into(),
            lat: Some(39.0),
            lon: Some(-77.5),
        },
    ]
}

fn geo_map() -> GeoMap {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    GeoMap {
        subdivisions: vec![(("US".into(), "CA".into()), s(&["ap-south"]))],
        countries: vec![("JP".into(), s(&["ap-south", "us-east"]))],
        continents: vec![
            ("EU".into(), s(&["eu-west", "us-east"])),
            ("NA".into(), s(&["us-east"])),
        ],
        default: s(&["us-east"]),
    }
}

#[test]
fn geo_follows_the_fallback_chain() {
    let pool = world();
    let mut r = Run::new(&pool, vec![Step::Health, Step::Geo(geo_map())]);
    r.location = Some(loc("IE", "EU", (53.3, -6.2), 25));
    r.prefix = 24;
    let (d, ids) = r.decide();
    assert_eq!(ids, ["eu-1", "eu-2"]);
    assert_eq!(
        d.scope, 25,
        "the geo network /25: longer than the source /24, which did not settle it"
    );
    r.prefix = 32;
    assert_eq!(r.decide().0.scope, 25);

    // the continent's first region is down: its next one
    let mut down = world();
    down[0].state = Disabled;
    down[1].state = Drained;
    let mut r2 = Run::new(&down, vec![Step::Health, Step::Geo(geo_map())]);
    r2.location = Some(loc("IE", "EU", (53.3, -6.2), 25));
    assert_eq!(r2.ids(), ["us-1"]);

    // a country rule beats the continent; a subdivision beats the country
    r.location = Some(loc("JP", "AS", (35.7, 139.7), 25));
    assert_eq!(r.ids(), ["ap-1"]);
    let mut ca = loc("US", "NA", (37.8, -122.4), 25);
    ca.subdivision = code("CA");
    r.location = Some(ca);
    assert_eq!(r.ids(), ["ap-1"]);
    r.location = Some(loc("US", "NA", (39.0, -77.0), 25));
    assert_eq!(r.ids(), ["us-1"]);
}

#[test]
fn geo_without_a_location_uses_the_default() {
    let pool = world();
    let mut r = Run::new(&pool, vec![Step::Geo(geo_map())]);
    // no database
    let (d, ids) = r.decide();
    assert_eq!((ids, d.scope), (vec!["us-1".to_string()], 0));
    // a database that does not know the client
    r.location = Some(Location {
        network_prefix: 8,
        ..Location::default()
    });
    let (d, ids) = r.decide();
    assert_eq!((ids, d.scope), (vec!["us-1".to_string()], 8));
    // nothing mapped has candidates: all kept
    let only_ap = [world().remove(3)];
    let r = Run::new(&only_ap, vec![Step::Geo(geo_map())]);
    assert_eq!(r.ids(), ["ap-1"]);
}

fn fence(target: &str, allow: Option<ClientMatch>, deny: Option<ClientMatch>) -> Step {
    Step::Fence(vec![FenceRule {
        target: target.into(),
        allow,
        deny,
    }])
}

#[test]
fn fence_by_geography_asn_and_cidr() {
    let pool = world();
    let eu_only = ClientMatch {
        continents: vec!["EU".into()],
        ..Default::default()
    };
    let mut r = Run::new(&pool, vec![fence("eu-west", Some(eu_only.clone()), None)]);
    r.location = Some(loc("JP", "AS", (35.7, 139.7), 20));
    let (d, ids) = r.decide();
    assert_eq!(ids, ["us-1", "ap-1"]);
    assert_eq!(d.scope, 20);
    r.location = Some(loc("DE", "EU", (50.1, 8.7), 20));
    assert_eq!(r.ids().len(), 4);
    // unknown location: an allow list cannot be satisfied
    r.location = None;
    assert_eq!(r.ids(), ["us-1", "ap-1"]);

    // an endpoint's own rule wins over its region's
    let deny_asn = ClientMatch {
        asns: vec![64500],
        ..Default::default()
    };
    let steps = vec![Step::Fence(vec![
        FenceRule {
            target: "eu-west".into(),
            allow: Some(eu_only),
            deny: None,
        },
        FenceRule {
            target: "eu-2".into(),
            allow: None,
            deny: Some(deny_asn),
        },
    ])];
    let mut r = Run::new(&pool, steps);
    let mut l = loc("JP", "AS", (35.7, 139.7), 20);
    l.asn = Some(64501);
    r.location = Some(l);
    assert_eq!(r.ids(), ["eu-2", "us-1", "ap-1"]);
    l.asn = Some(64500);
    r.location = Some(l);
    let (d, ids) = r.decide();
    assert_eq!(ids, ["us-1", "ap-1"]);
    assert_eq!(
        d.scope, 32,
        "ASN membership depends on the whole known address"
    );

    // CIDR: only when the known client bits cover the network
    let deny_net = ClientMatch {
        cidrs: vec!["192.0.2.0/24".parse().unwrap()],
        ..Default::default()
    };
    let mut r = Run::new(&pool, vec![fence("us-east", None, Some(deny_net))]);
    let (d, ids) = r.decide();
    assert_eq!((ids.len(), d.scope), (3, 24));
    r.prefix = 16;
    assert_eq!(
        r.decide().0.scope,
        24,
        "the /16 source was not specific enough"
    );
    assert_eq!(
        r.ids().len(),
        4,
        "a /16 source does not prove membership of a /24"
    );
    r.client = Some("2001:db8::1".parse().unwrap());
    r.prefix = 56;
    assert_eq!(r.ids().len(), 4, "an IPv6 client is not in an IPv4 network");
}

#[test]
fn nearest_orders_by_distance_with_bias() {
    let pool = world();
    let mut r = Run::new(&pool, vec![Step::Nearest]);
    r.location = Some(loc("IN", "AS", (19.0, 72.8), 22));
    let (d, ids) = r.decide();
    assert_eq!(ids, ["ap-1", "eu-2", "eu-1", "us-1"]);
    assert_eq!(d.scope, 22);
    r.location = Some(loc("US", "NA", (40.7, -74.0), 22));
    assert_eq!(r.ids()[0], "us-1");
    // a strong bias pulls a farther endpoint ahead
    let mut biased = world();
    biased[0].bias = 95;
    let mut r2 = Run::new(&biased, vec![Step::Nearest]);
    r2.location = Some(loc("US", "NA", (40.7, -74.0), 22));
    assert_eq!(r2.ids()[0], "eu-1");
    // no coordinates: order kept; endpoints without coordinates go last
    r.location = Some(Location {
        country: code("US"),
        network_prefix: 22,
        ..Location::default()
    });
    assert_eq!(r.ids(), ["eu-1", "eu-2", "us-1", "ap-1"]);
    let mut partial = world();
    partial[0].lat = None;
    partial[0].lon = None;
    let mut r3 = Run::new(&partial, vec![Step::Nearest]);
    r3.location = Some(loc("IE", "EU", (53.3, -6.2), 22));
    assert_eq!(r3.ids().last().unwrap(), "eu-1");
}

#[test]
fn latency_orders_by_rtt_from_the_nearest_probe_region() {
    let pool = world();
    let mut r = Run::new(&pool, vec![Step::Latency]);
    r.regions = probe_regions();
    r.location = Some(loc("FR", "EU", (48.9, 2.3), 21));
    let (d, ids) = r.decide();
    assert_eq!(ids, ["eu-1", "eu-2", "us-1", "ap-1"]);
    assert_eq!(d.scope, 21);
    // from America, ap-1 has no measurement from us-east: last
    r.location = Some(loc("US", "NA", (40.7, -74.0), 21));
    assert_eq!(r.ids(), ["us-1", "eu-1", "eu-2", "ap-1"]);
    // no client position: order kept
    r.location = None;
    assert_eq!(r.ids(), ["eu-1", "eu-2", "us-1", "ap-1"]);
}

#[test]
fn probes_verdicts_drop_endpoints_and_all_down_fails_open() {
    let pool = [ep("a", 1, 1, Enabled), ep("b", 1, 1, Enabled)];
    let down = |in_service| Observed {
        in_service,
        rtt_ms: Vec::new(),
    };
    let mut r = Run::new(&pool, vec![Step::Health]);
    r.observed = vec![down(false), down(true)];
    assert_eq!(r.ids(), ["b"]);
    // every endpoint down: fail open answers the enabled ones
    r.observed = vec![down(false), down(false)];
    r.on_all_down = OnAllDown::FailOpen;
    assert_eq!(r.ids(), ["a", "b"]);
    r.on_all_down = OnAllDown::NoData;
    assert_eq!(r.decide().0.outcome, Outcome::NoData);
}

#[test]
fn measured_rtt_steers_latency_and_static_rtt_overrides_it() {
    let mut pool = world();
    for e in &mut pool {
        e.rtt_ms.clear();
    }
    // measured from eu-west: ap-1 fastest, then us-1; eu-1 unmeasured
    let seen = |ms: &[(&str, f64)]| Observed {
        in_service: true,
        rtt_ms: ms.iter().map(|(r, m)| (r.to_string(), *m)).collect(),
    };
    let observed = vec![
        seen(&[]),
        seen(&[("eu-west", 30.0)]),
        seen(&[("eu-west", 20.0)]),
        seen(&[("eu-west", 10.0)]),
    ];
    let mut r = Run::new(&pool, vec![Step::Latency]);
    r.regions = probe_regions();
    r.observed = observed.clone();
    r.location = Some(loc("FR", "EU", (48.9, 2.3), 21));
    assert_eq!(r.ids(), ["ap-1", "us-1", "eu-2", "eu-1"]);
    // a static rtt_ms wins over the measurement
    let mut pinned = pool.clone();
    pinned[1].rtt_ms.insert("eu-west".into(), 1.0);
    let mut p = Run::new(&pinned, vec![Step::Latency]);
    p.regions = probe_regions();
    p.observed = observed;
    p.location = Some(loc("FR", "EU", (48.9, 2.3), 21));
    assert_eq!(p.ids(), ["eu-2", "ap-1", "us-1", "eu-1"]);
}

#[test]
fn a_region_without_coordinates_is_never_the_nearest() {
    let pool = world();
    let mut r = Run::new(&pool, vec![Step::Latency]);
    r.regions = probe_regions();
    r.regions[0].lat = None;
    r.regions[0].lon = None;
    // from France the nearest placed region is now us-east
    r.location = Some(loc("FR", "EU", (48.9, 2.3), 21));
    assert_eq!(r.ids(), ["us-1", "eu-1", "eu-2", "ap-1"]);
}

#[test]
fn cost_prefers_the_cheapest_within_the_margin() {
    let pool = world();
    let mut r = Run::new(&pool, vec![Step::Latency, Step::Cost(CostMargin::Ms(10.0))]);
    r.regions = probe_regions();
    r.location = Some(loc("IE", "EU", (53.3, -6.2), 24));
    // eu-1 5 ms cost 3, eu-2 12 ms cost 1: within 10 ms of the best, eu-2 is cheaper
    assert_eq!(r.ids(), ["eu-2", "eu-1", "us-1", "ap-1"]);
    r.steps = vec![Step::Latency, Step::Cost(CostMargin::Ms(5.0))];
    assert_eq!(r.ids(), ["eu-1", "eu-2", "us-1", "ap-1"]);
    r.steps = vec![Step::Latency, Step::Cost(CostMargin::Percent(200.0))];
    assert_eq!(r.ids()[0], "eu-2");
    // ties in cost keep the latency order
    let mut tied = world();
    tied[0].cost = 1.0;
    let mut t = Run::new(&tied, vec![Step::Latency, Step::Cost(CostMargin::Ms(10.0))]);
    t.regions = probe_regions();
    t.location = Some(loc("IE", "EU", (53.3, -6.2), 24));
    assert_eq!(t.ids()[..2], ["eu-1", "eu-2"]);
}

#[test]
fn sticky_keeps_a_subnet_on_its_endpoint() {
    let pool: Vec<Endpoint> = (0..5)
        .map(|i| ep(&format!("e{i}"), 1, 1, Enabled))
        .collect();
    let steps = vec![Step::Weighted { sticky: true }, Step::First(1)];
    let mut r = Run::new(&pool, steps);
    r.client = Some("198.51.100.7".parse().unwrap());
    let first = r.ids();
    // same /24, other hosts and other random seeds: same answer
    for (host, seed) in [("198.51.100.200", 9), ("198.51.100.1", 77)] {
        r.client = Some(host.parse().unwrap());
        r.seed = seed;
        assert_eq!(r.ids(), first);
    }
    let (d, _) = r.decide();
    assert_eq!(d.scope, 24);
    r.client = Some("2001:db8:1:2::1".parse().unwrap());
    r.prefix = 56;
    assert_eq!(r.decide().0.scope, 48);
    r.prefix = 32;
    assert_eq!(r.decide().0.scope, 32, "never more bits than are known");
    r.client = None;
    assert_eq!(r.ids(), ["e0"], "no client: pool order");
}

#[test]
fn codes_and_combinations() {
    // geo then latency then sticky weighted then first 2: the benchmark pipeline
    let pool = world();
    let mut r = Run::new(
        &pool,
        vec![
            Step::Health,
            Step::Geo(geo_map()),
            Step::Latency,
            Step::Cost(CostMargin::Ms(20.0)),
            Step::Weighted { sticky: true },
            Step::First(2),
        ],
    );
    r.regions = probe_regions();
    r.location = Some(loc("IE", "EU", (53.3, -6.2), 25));
    r.prefix = 24;
    let (d, ids) = r.decide();
    assert_eq!(ids.len(), 2);
    assert!(ids.iter().all(|i| i.starts_with("eu-")), "{ids:?}");
    assert_eq!(d.scope, 25, "the geo network's /25 beats sticky's /24");
}

mod sticky_properties {
    use super::*;
    use proptest::prelude::*;

    fn pick(pool: &[Endpoint], client: IpAddr) -> String {
        let mut r = Run::new(pool, vec![Step::Weighted { sticky: true }, Step::First(1)]);
        r.client = Some(client);
        r.prefix = 24;
        r.ids().remove(0)
    }

    fn pool_of(weights: &[u16]) -> Vec<Endpoint> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| ep(&format!("e{i}"), w, 1, Enabled))
            .collect()
    }

    proptest! {
        #[test]
        fn stable_across_calls_and_pool_order(ip: u32, weights in proptest::collection::vec(1u16..100, 2..12)) {
            let pool = pool_of(&weights);
            let client = IpAddr::from(std::net::Ipv4Addr::from(ip));
            let a = pick(&pool, client);
            prop_assert_eq!(&a, &pick(&pool, client));
            let mut reversed = pool.clone();
            reversed.reverse();
            prop_assert_eq!(a, pick(&reversed, client));
        }

        #[test]
        fn removing_an_endpoint_moves_only_its_subnets(seed: u64, weights in proptest::collection::vec(1u16..100, 3..10), gone in 0usize..3) {
            let pool = pool_of(&weights);
            let mut smaller = pool.clone();
            let removed = smaller.remove(gone).id;
            for k in 0..64u32 {
                let subnet = (seed as u32 ^ k.wrapping_mul(0x9e37_79b9)) & 0xffff_ff00;
                let client = IpAddr::from(std::net::Ipv4Addr::from(subnet));
                let before = pick(&pool, client);
                if before != removed {
                    prop_assert_eq!(before, pick(&smaller, client));
                }
            }
        }
    }

    #[test]
    fn shares_follow_the_weights_over_many_subnets() {
        let pool = pool_of(&[1, 2, 5]);
        let mut counts = [0u32; 3];
        let n = 30_000u32;
        for k in 0..n {
            let client = IpAddr::from(std::net::Ipv4Addr::from(k << 8));
            let id = pick(&pool, client);
            counts[id[1..].parse::<usize>().unwrap()] += 1;
        }
        for (i, expected) in [1.0 / 8.0, 2.0 / 8.0, 5.0 / 8.0].iter().enumerate() {
            let share = f64::from(counts[i]) / f64::from(n);
            assert!(
                (share - expected).abs() < 0.015,
                "e{i}: {share} vs {expected}"
            );
        }
    }
}

/// Client trees against generated databases: every address gets the
/// class its GeoIP record gives, and the scope is exactly the widest
/// prefix whose every address has that class (checked against the
/// generated networks themselves, not the tree).
mod trees {
    use super::*;
    use crate::classify;
    use crate::geo::build::{city_database, Place};
    use crate::geo::{DbBytes, GeoIp};
    use proptest::prelude::*;

    #[rustfmt::skip]
    const PLACES: [(&str, &str, Option<&str>, f64, f64); 7] = [
        ("IE", "EU", Some("L"), 53.35, -6.26),
        ("DE", "EU", Some("HE"), 50.11, 8.68),
        ("US", "NA", Some("CA"), 37.77, -122.42),
        ("US", "NA", Some("VA"), 39.04, -77.49),
        ("JP", "AS", Some("13"), 35.68, 139.69),
        ("IN", "AS", Some("MH"), 19.08, 72.88),
        ("BR", "SA", None, -23.55, -46.63),
    ];

    /// Disjoint IPv4 networks inside 10.0.0.0/8 (the rest of the space is
    /// in no network), each with a place.
    fn networks() -> impl Strategy<Value = Vec<(u32, u8, usize)>> {
        proptest::collection::vec((any::<u16>(), 9u8..=30, 0..PLACES.len()), 1..60).prop_map(
            |raw| {
                let mut out: Vec<(u32, u8, usize)> = Vec::new();
                for (bits, prefix, place) in raw {
                    let mask = u32::MAX << (32 - prefix);
                    let start = (0x0A00_0000 | (u32::from(bits) << 8)) & mask;
                    let end = start | !mask;
                    let overlaps = out.iter().any(|&(s, p, _)| {
                        let e = s | !(u32::MAX << (32 - p));
                        start <= e && s <= end
                    });
                    if !overlaps {
                        out.push((start, prefix, place));
                    }
                }
                out
            },
        )
    }

    fn database(nets: &[(u32, u8, usize)]) -> GeoIp {
        let places: Vec<Place> = nets
            .iter()
            .map(|&(start, prefix, p)| {
                let (country, continent, subdivision, lat, lon) = PLACES[p];
                Place {
                    network: format!("{}/{prefix}", std::net::Ipv4Addr::from(start))
                        .parse()
                        .unwrap(),
                    country,
                    continent,
                    subdivision,
                    city: "x",
                    lat,
                    lon,
                }
            })
            .collect();
        GeoIp::new(DbBytes::Owned(city_database(&places).unwrap()), None).unwrap()
    }

    /// The policies classified: by map, by distance, by the nearest probe
    /// region, by a fence on continents.
    fn policies(pool: &[Endpoint]) -> Vec<Policy> {
        let eu_only = ClientMatch {
            continents: vec!["EU".into()],
            ..Default::default()
        };
        let steps = [
            vec![Step::Health, Step::Geo(geo_map()), Step::First(1)],
            vec![Step::Health, Step::Nearest],
            vec![Step::Health, Step::Latency],
            vec![fence("eu-west", Some(eu_only), None), Step::Priority],
        ];
        steps
            .iter()
            .map(|s| Policy::compile(s, &OnAllDown::NoData, pool, &[], &probe_regions()))
            .collect()
    }

    /// The widest prefix around `a` whose every address has one class,
    /// from the generated networks: a block's classes are those of the
    /// networks it meets, and the "unknown" class if it is not covered.
    fn oracle(policy: &Policy, geo: &GeoIp, nets: &[(u32, u8, usize)], a: u32) -> u8 {
        let unknown = classify::location_class(policy, &Location::default());
        for len in 0..=32u8 {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            let (bs, be) = (a & mask, a | !mask);
            let mut classes: Vec<ClientClass> = Vec::new();
            let mut covered: u64 = 0;
            for &(s, p, _) in nets {
                let e = s | !(u32::MAX << (32 - p));
                if s <= be && bs <= e {
                    covered += u64::from(e.min(be) - s.max(bs)) + 1;
                    let c = classify::location_class(
                        policy,
                        &geo.lookup(IpAddr::from(s.to_be_bytes())),
                    );
                    if !classes.contains(&c) {
                        classes.push(c);
                    }
                }
            }
            if covered < u64::from(be - bs) + 1 && !classes.contains(&unknown) {
                classes.push(unknown.clone());
            }
            if classes.len() == 1 {
                return len;
            }
        }
        32
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn scopes_are_exact_and_classes_match_the_lookup(
            nets in networks(),
            probes in proptest::collection::vec((any::<u32>(), 0u8..4), 40),
        ) {
            let geo = database(&nets);
            let pool = world();
            let policies = policies(&pool);
            let refs: Vec<&Policy> = policies.iter().collect();
            let trees = classify::build(&geo, &refs);
            for (policy, tree) in policies.iter().zip(&trees) {
                let Some(tree) = tree else { continue };
                for &(bits, how) in &probes {
                    // inside a network, at its edges, in 10/8, anywhere
                    let a = match (how, nets.get(bits as usize % nets.len())) {
                        (0, Some(&(s, p, _))) => s | (bits & !(u32::MAX << (32 - p))),
                        (1, Some(&(s, p, _))) => (s | !(u32::MAX << (32 - p))).wrapping_add(bits % 3),
                        (2, _) => 0x0A00_0000 | (bits & 0x00FF_FFFF),
                        _ => bits,
                    };
                    let ip = IpAddr::from(a.to_be_bytes());
                    let (class, scope) = tree.classify(ip).expect("IPv4 is classified");
                    let expected = classify::location_class(policy, &geo.lookup(ip));
                    prop_assert_eq!(class, &expected, "class of {}", ip);
                    prop_assert_eq!(scope, oracle(policy, &geo, &nets, a), "scope of {}", ip);
                }
            }
        }
    }

    #[test]
    fn a_tree_decides_as_the_lookup_does_and_answers_the_widest_scope() {
        // Europe is 10.0.0.0/9 in two halves of different countries
        let nets = [
            (0x0A00_0000, 10, 0),
            (0x0A40_0000, 10, 1),
            (0x0A80_0000, 9, 4),
        ];
        let geo = database(&nets);
        let pool = world();
        let policy = &policies(&pool)[0];
        let tree = classify::build(&geo, &[policy]).remove(0).expect("a tree");
        let client: IpAddr = "10.65.1.0".parse().unwrap();
        let (class, scope) = tree.classify(client).expect("classified");
        assert_eq!(scope, 9, "two /10 networks, one class: the /9");
        let mut rng = StdRng::seed_from_u64(1);
        let mut ctx = Context {
            client: Some(client),
            client_prefix: 24,
            location: None,
            rng: &mut rng,
            class: Some((class, scope)),
        };
        let mut out = Vec::new();
        let d = policy.decide(&pool, &mut ctx, &mut out, None);
        assert_eq!((d.scope, out), (9, vec![0]));
        // the same without the tree, from the lookup: the /10's scope
        let loc = geo.lookup(client);
        let mut ctx = Context {
            client: Some(client),
            client_prefix: 24,
            location: Some(&loc),
            rng: &mut rng,
            class: None,
        };
        let mut out = Vec::new();
        let d = policy.decide(&pool, &mut ctx, &mut out, None);
        assert_eq!((d.scope, out), (10, vec![0]));
        // classes: Europe, Asia, and the rest
        assert_eq!(tree.size().2, 3);
    }

    #[test]
    fn ipv6_aliases_of_ipv4_are_left_to_lookups() {
        use crate::geo::build::demo_places;
        let geo = GeoIp::new(DbBytes::Owned(city_database(&demo_places()).unwrap()), None).unwrap();
        let pool = world();
        let policy = &policies(&pool)[0];
        let tree = classify::build(&geo, &[policy]).remove(0).expect("a tree");
        for alias in [
            "::ffff:192.0.2.1",
            "::192.0.2.1",
            "2002:c000:201::1",
            "2001:0:c000:201::1",
        ] {
            assert!(tree.classify(alias.parse().unwrap()).is_none(), "{alias}");
        }
        // a real IPv6 network: Japan's /48, next to America's
        let (class, scope) = tree.classify("2001:db8:3::1".parse().unwrap()).unwrap();
        assert_eq!(scope, 48);
        let jp = geo.lookup("2001:db8:3::1".parse().unwrap());
        assert_eq!(class, &classify::location_class(policy, &jp));
    }
}
