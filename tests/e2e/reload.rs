//! SIGHUP reloads: a valid spec replaces the served zones, an invalid one
//! is rejected and the old one keeps serving.

use crate::harness::Server;

fn spec(www: &str) -> String {
    format!(
        "zones:\n  glb.example.com:\n    soa: {{rname: hostmaster.example.com.}}\n    ns: [{{name: ns.example.net.}}]\n    records:\n      - {{name: www, type: A, value: {www}}}\n"
    )
}

/// Writes `text` as the zone spec, sends SIGHUP, and waits for a log line
/// containing `outcome` written after the signal.
fn reload(s: &Server, text: &str, outcome: &str) {
    std::fs::write(s.zones_path(), text).unwrap();
    let mark = s.log_len();
    s.hangup();
    assert!(
        s.wait_for_log(outcome, mark),
        "no {outcome:?}:\n{}",
        s.logs()
    );
}

fn serial(s: &Server) -> u32 {
    let d = s.dig(&["glb.example.com", "SOA"]);
    d.answer[0]
        .data
        .split_whitespace()
        .nth(2)
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn reload_with_a_good_file_then_a_bad_one() {
    let mut s = Server::start(&spec("192.0.2.1"));
    let www = |s: &Server| s.dig(&["www.glb.example.com", "A"]).answers("A");
    assert_eq!(www(&s), ["192.0.2.1"]);
    let before = serial(&s);

    reload(&s, &spec("192.0.2.2"), "zone spec reloaded");
    assert_eq!(www(&s), ["192.0.2.2"]);
    let after = serial(&s);
    assert!(after > before, "serial {before} -> {after}");

    // an invalid file: rejected with its errors, the old answers stay
    let broken = format!(
        "{}      - {{name: mail, type: A, value: 192.0.2.9, colour: red}}\n",
        spec("not-an-address")
    );
    reload(&s, &broken, "reload rejected");
    let logs = s.logs();
    assert!(
        logs.contains("zones.yaml:"),
        "errors name the file:\n{logs}"
    );
    assert!(
        logs.contains("unknown field `colour`"),
        "every error is logged:\n{logs}"
    );
    assert!(s.is_running());
    assert_eq!(www(&s), ["192.0.2.2"]);
    assert_eq!(serial(&s), after);

    // and a later good file still loads
    reload(&s, &spec("192.0.2.3"), "zone spec reloaded");
    assert_eq!(www(&s), ["192.0.2.3"]);
}

#[test]
fn reload_of_a_missing_file_keeps_serving() {
    let mut s = Server::start(&spec("192.0.2.1"));
    std::fs::remove_file(s.zones_path()).unwrap();
    let mark = s.log_len();
    s.hangup();
    assert!(s.wait_for_log("reload rejected", mark), "{}", s.logs());
    assert!(s.is_running());
    assert_eq!(
        s.dig(&["www.glb.example.com", "A"]).answers("A"),
        ["192.0.2.1"]
    );
}

/// Regression: the SIGHUP handler used to be installed after the node
/// announced it was listening, so a reload sent right away hit SIGHUP's
/// default action and killed the node.
#[test]
fn sighup_right_after_start_does_not_kill_the_node() {
    let mut s = Server::start(&spec("192.0.2.1"));
    s.hangup();
    assert!(s.wait_for_log("zone spec reloaded", 0), "{}", s.logs());
    assert!(s.is_running());
    assert_eq!(
        s.dig(&["www.glb.example.com", "A"]).answers("A"),
        ["192.0.2.1"]
    );
}
