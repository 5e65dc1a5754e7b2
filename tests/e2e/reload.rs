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

/// Whether `pid` has a handler for SIGHUP (bit 0 of `SigCgt`).
fn catches_hangup(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("SigCgt:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .is_some_and(|mask| mask & 1 == 1)
}

/// Writes `text` into the FIFO at `path` once a reader has it open,
/// trying until `deadline`.
fn feed(path: &std::path::Path, text: &str, deadline: std::time::Instant) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    loop {
        // O_NONBLOCK: without a reader the open fails (ENXIO) instead of
        // waiting for ever
        match std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(0o4000)
            .open(path)
        {
            Ok(mut f) => {
                f.write_all(text.as_bytes()).expect("write the spec");
                return;
            }
            Err(_) => {
                assert!(std::time::Instant::now() < deadline, "nobody read {path:?}");
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
    }
}

/// A SIGHUP sent while the node is still starting (here: waiting for its
/// zone file, a FIFO nobody has written yet) is held and applied once it
/// serves; it never ends the process.
#[test]
fn sighup_while_starting_is_held_and_applied() {
    use std::io::BufRead;
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().expect("tempdir");
    let zones = dir.path().join("zones.yaml");
    let made = std::process::Command::new("mkfifo")
        .arg(&zones)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    let config = dir.path().join("meridian.yaml");
    std::fs::write(
        &config,
        "dns: {listen: [\"127.0.0.1:0\"], udp_sockets: 1}\nlog: {level: info}\nzones: zones.yaml\n",
    )
    .expect("config");
    crate::harness::install_crypto_provider();
    /// The node, killed however the test ends.
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Killed(
        std::process::Command::new(crate::harness::BIN)
            .args(["serve", "--config"])
            .arg(&config)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start meridian"),
    );
    let pid = child.0.id();
    let deadline = Instant::now() + Duration::from_secs(20);
    // it takes SIGHUP over before it reads its zones
    while !catches_hangup(pid) {
        assert!(
            Instant::now() < deadline,
            "SIGHUP not taken over while the node waits for its zones"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let status = std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    // now the zones it was waiting for
    feed(&zones, &spec("192.0.2.1"), deadline);
    let out = std::io::BufReader::new(child.0.stdout.take().expect("stdout"));
    let addr: std::net::SocketAddr = out
        .lines()
        .map_while(Result::ok)
        .find_map(|l| {
            l.strip_prefix("meridian: DNS listening on ")
                .and_then(|r| r.split_whitespace().next())
                .map(|a| a.parse().expect("address"))
        })
        .expect("the node died instead of serving");
    // then, for the held reload, new ones: only now, once the first reader
    // has closed the FIFO (a writer opening it earlier would join the first
    // read and hand the node both specs as one file)
    feed(&zones, &spec("192.0.2.2"), deadline);
    let www = || crate::harness::dig(addr, &["www.glb.example.com", "A"]).answers("A");
    while www() != ["192.0.2.2"] {
        assert!(
            Instant::now() < deadline,
            "the held reload was never applied"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        child.0.try_wait().expect("wait").is_none(),
        "the node ended"
    );
}
