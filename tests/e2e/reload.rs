//! SIGHUP reloads: a valid spec replaces the served zones, an invalid one
//! is rejected and the old one keeps serving.

use crate::harness::Server;

fn spec(www: &str) -> String {
    format!(
        "zones:\n  glb.example.com:\n    soa: {{rname: hostmaster.example.com.}}\n    ns: [{{name: ns.example.net.}}]\n    records:\n      - {{name: www, type: A, value: {www}}}\n"
    )
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
    assert_eq!(
        s.dig(&["www.glb.example.com", "A"]).answers("A"),
        ["192.0.2.1"]
    );
    let before = serial(&s);

    std::fs::write(s.zones_path(), spec("192.0.2.2")).unwrap();
    let mark = s.log_len();
    s.hangup();
    assert!(
        s.wait_for_log("zone spec reloaded", mark),
        "no reload:\n{}",
        s.logs()
    );
    assert_eq!(
        s.dig(&["www.glb.example.com", "A"]).answers("A"),
        ["192.0.2.2"]
    );
    let after = serial(&s);
    assert!(after > before, "serial {before} -> {after}");

    // an invalid file: rejected with its errors, the old answers stay
    std::fs::write(
        s.zones_path(),
        spec("not-an-address").replace("soa:", "soa:\n      colour: red\n     "),
    )
    .unwrap();
    let mark = s.log_len();
    s.hangup();
    assert!(
        s.wait_for_log("reload rejected", mark),
        "no rejection:\n{}",
        s.logs()
    );
    let logs = s.logs();
    assert!(
        logs.contains("zones.yaml:"),
        "errors name the file:\n{logs}"
    );
    assert!(s.is_running());
    assert_eq!(
        s.dig(&["www.glb.example.com", "A"]).answers("A"),
        ["192.0.2.2"]
    );
    assert_eq!(serial(&s), after);

    // and a later good file still loads
    std::fs::write(s.zones_path(), spec("192.0.2.3")).unwrap();
    let mark = s.log_len();
    s.hangup();
    assert!(s.wait_for_log("zone spec reloaded", mark));
    assert_eq!(
        s.dig(&["www.glb.example.com", "A"]).answers("A"),
        ["192.0.2.3"]
    );
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
