//! Steered answers over many real queries.

use std::process::Command;

use crate::harness::Server;

fn zones(web_states: [&str; 2], on_all_down: &str) -> String {
    format!(
        r#"zones:
  glb.example.com:
    soa: {{rname: hostmaster.example.com.}}
    ns: [{{name: ns.example.net.}}]
    steered:
      - {{name: weighted, type: A, pool: weighted, steps: [health, weighted, {{first: 1}}]}}
      - {{name: two, type: A, ttl: 15, pool: weighted, steps: [health, weighted, {{first: 2}}]}}
      - name: failover
        type: A
        pool: tiers
        steps: [health, priority, {{first: 1}}]
        on_all_down: {on_all_down}
pools:
  weighted:
    endpoints:
      - {{id: heavy, address: 192.0.2.1, region: a, weight: 3}}
      - {{id: light, address: 192.0.2.2, region: b, weight: 1}}
      - {{id: off, address: 192.0.2.3, region: c, weight: 0}}
  tiers:
    endpoints:
      - {{id: primary, address: 198.51.100.1, region: a, priority: 1, state: {}}}
      - {{id: secondary, address: 198.51.100.2, region: b, priority: 2, state: {}}}
"#,
        web_states[0], web_states[1]
    )
}

/// Sends `n` queries for `name` in one dig batch and returns the first
/// address of each answer.
fn batch(s: &Server, name: &str, n: usize) -> Vec<String> {
    let file = s.dir.path().join("batch.txt");
    std::fs::write(&file, format!("{name} A\n").repeat(n)).unwrap();
    let out = Command::new("dig")
        .arg(format!("@{}", s.addr.ip()))
        .args([
            "-p",
            &s.addr.port().to_string(),
            "+norec",
            "+short",
            "+time=2",
            // a datagram lost on a loaded machine is asked again rather
            // than printed as a timeout among the answers
            "+tries=3",
            "-f",
        ])
        .arg(&file)
        .output()
        .expect("dig");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn weighted_answers_follow_the_weights() {
    let s = Server::start(&zones(["enabled", "enabled"], "nodata"));
    let n = 400;
    let answers = batch(&s, "weighted.glb.example.com", n);
    assert_eq!(answers.len(), n, "one answer per query");
    let heavy = answers.iter().filter(|a| *a == "192.0.2.1").count();
    let light = answers.iter().filter(|a| *a == "192.0.2.2").count();
    assert_eq!(heavy + light, n, "weight 0 is never answered: {answers:?}");
    // expected share 0.75, sd ≈ 0.022: a bound of ±0.1 fails by chance
    // far less than once in a million runs
    let share = heavy as f64 / n as f64;
    assert!((0.65..=0.85).contains(&share), "heavy share {share}");
}

#[test]
fn priority_fails_over_when_the_top_tier_is_disabled() {
    for (states, want) in [
        (["enabled", "enabled"], "198.51.100.1"),
        (["disabled", "enabled"], "198.51.100.2"),
        (["drained", "enabled"], "198.51.100.2"),
    ] {
        let s = Server::start(&zones(states, "nodata"));
        let answers = batch(&s, "failover.glb.example.com", 20);
        assert_eq!(answers, vec![want.to_string(); 20], "{states:?}");
    }
}

#[test]
fn on_all_down_rules() {
    let nodata = Server::start(&zones(["disabled", "disabled"], "nodata"));
    let d = nodata.dig(&["failover.glb.example.com", "A"]);
    assert_eq!(d.status, "NOERROR");
    assert!(d.answer.is_empty());
    assert_eq!(d.authority[0].rtype, "SOA");

    let sorry = Server::start(&zones(["disabled", "disabled"], "{sorry: [192.0.2.99]}"));
    assert_eq!(
        sorry.dig(&["failover.glb.example.com", "A"]).answers("A"),
        ["192.0.2.99"]
    );

    // fail open: nothing healthy, but enabled endpoints are answered
    let open = Server::start(&zones(["drained", "enabled"], "fail_open"));
    assert_eq!(
        open.dig(&["failover.glb.example.com", "A"]).answers("A"),
        ["198.51.100.2"]
    );
}

#[test]
fn steered_answers_may_carry_several_addresses() {
    let s = Server::start(&zones(["enabled", "enabled"], "nodata"));
    for _ in 0..10 {
        let d = s.dig(&["two.glb.example.com", "A"]);
        assert_eq!(
            d.answers("A"),
            ["192.0.2.1", "192.0.2.2"],
            "both weighted endpoints, never the weight-0 one"
        );
        assert!(d.answer.iter().all(|r| r.ttl == 15));
    }
}
