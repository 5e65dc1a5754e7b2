//! The command line: check, serve on bad input, version and help.

use crate::harness::{run, BIN};

const BROKEN: &str = "zones:
  glb.example.com:
    soa: {rname: hostmaster.example.com.}
    ns: [{name: ns.example.net.}]
    records:
      - {name: www, type: A, value: 2001:db8::1}
      - {name: www, type: CNAME, value: other.example.net.}
    steered:
      - {name: app, type: A, pool: missing}
pools:
  web:
    endpoints:
      - {id: a, address: 192.0.2.1, region: eu, weight: heavy}
";

#[test]
fn check_lists_every_error_with_its_position() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("zones.yaml"), BROKEN).unwrap();
    std::fs::write(dir.path().join("meridian.yaml"), "zones: zones.yaml\n").unwrap();
    let (code, _out, err) = run(&["check", "--config", "meridian.yaml"], dir.path());
    assert_eq!(code, 78, "{err}");
    for expected in [
        "zones.yaml:6:37: zones.\"glb.example.com\".records[0].value: expected an IPv4 address, got \"2001:db8::1\"",
        "zones.yaml:7:9: zones.\"glb.example.com\".records[1]: a CNAME cannot stand beside other data at www.glb.example.com. (also A)",
        "zones.yaml:9:36: zones.\"glb.example.com\".steered[0].pool: no pool named \"missing\"",
        "zones.yaml:13:57: pools.web.endpoints[0].weight: expected an integer 0..=65535, got string \"heavy\"",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    assert_eq!(err.lines().count(), 4, "{err}");
}

#[test]
fn check_accepts_a_good_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("zones.yaml"), crate::dns::zones()).unwrap();
    std::fs::write(dir.path().join("meridian.yaml"), "zones: zones.yaml\n").unwrap();
    let (code, out, err) = run(&["check", "--config", "meridian.yaml"], dir.path());
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("zones.yaml: ok (2 zones"), "{out}");
    let (code, _, _) = run(&["check", "--zones", "zones.yaml"], dir.path());
    assert_eq!(code, 0);
}

#[test]
fn check_warns_about_what_is_served_but_probably_not_meant() {
    let dir = tempfile::tempdir().unwrap();
    let zones = "zones:
  glb.example.com:
    soa: {rname: hostmaster.example.com.}
    ns: [{name: ns.example.net.}]
    steered:
      - {name: cdn, type: CNAME, pool: hosts, steps: [health], on_all_down: nodata}
  child.glb.example.com:
    soa: {rname: hostmaster.example.com.}
    ns: [{name: ns.example.net.}]
pools:
  hosts:
    endpoints:
      - {id: a, address: a.example.net., region: eu}
      - {id: b, address: b.example.net., region: eu}
";
    std::fs::write(dir.path().join("zones.yaml"), zones).unwrap();
    let (code, out, err) = run(&["check", "--zones", "zones.yaml"], dir.path());
    // served as written: a warning, not an error
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("zones.yaml: ok"), "{out}");
    for expected in [
        "warning: zones.yaml:6:54: zones.\"glb.example.com\".steered[0].steps: the steps can leave up to 2 hosts, but a name holds one CNAME",
        "warning: zones.yaml:8:8: zones.\"child.glb.example.com\": child.glb.example.com. is inside the zone glb.example.com. but that zone has no NS records",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    assert_eq!(err.lines().count(), 2, "{err}");
}

#[test]
fn serve_refuses_to_start_on_a_broken_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("zones.yaml"), BROKEN).unwrap();
    std::fs::write(
        dir.path().join("meridian.yaml"),
        "dns: {listen: [\"127.0.0.1:0\"]}\nzones: zones.yaml\n",
    )
    .unwrap();
    let (code, out, err) = run(&["serve", "--config", "meridian.yaml"], dir.path());
    assert_eq!(code, 78);
    assert!(
        err.contains("invalid zone spec") && err.contains("zones.yaml:13:57"),
        "{err}"
    );
    assert!(!out.contains("listening"), "{out}");

    std::fs::write(
        dir.path().join("bad.yaml"),
        "dns: {listen: [\"127.0.0.1:0\"], port: 53}\nzones: zones.yaml\n",
    )
    .unwrap();
    let (code, _, err) = run(&["serve", "--config", "bad.yaml"], dir.path());
    assert_eq!(code, 78);
    assert!(
        err.contains("bad.yaml:1:32: dns.port: unknown field `port`"),
        "{err}"
    );

    let (code, _, err) = run(&["serve", "--config", "absent.yaml"], dir.path());
    assert_eq!(code, 1);
    assert!(err.contains("cannot read absent.yaml"), "{err}");
}

#[test]
fn version_and_help() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, _) = run(&["--version"], dir.path());
    assert_eq!(code, 0);
    assert!(out.starts_with("meridian "), "{out}");
    let (code, out, _) = run(&["--help"], dir.path());
    assert_eq!(code, 0);
    for cmd in ["serve", "check", "dev"] {
        assert!(out.contains(cmd), "{out}");
    }
    let (code, _, err) = run(&["serve"], dir.path());
    assert_eq!(code, 2, "missing --config is a usage error: {err}");
    let _ = BIN;
}

#[test]
fn dev_serves_the_example_zone() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let mut child = Command::new(BIN)
        .args([
            "dev",
            "--listen",
            "127.0.0.1:0",
            "--api",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut addr = None;
    let mut banner = String::new();
    let mut line = String::new();
    while out.read_line(&mut line).unwrap_or(0) > 0 {
        if let Some(rest) = line.strip_prefix("meridian: DNS listening on ") {
            addr = rest.split_whitespace().next().and_then(|a| a.parse().ok());
        }
        banner.push_str(&line);
        if line.starts_with("Ctrl-C") {
            break;
        }
        line.clear();
    }
    let addr: std::net::SocketAddr = addr.expect("listening line");
    assert!(
        banner.contains(&format!(
            "dig @127.0.0.1 -p {} www.glb.example.com A",
            addr.port()
        )),
        "{banner}"
    );
    let www = crate::harness::dig(addr, &["www.glb.example.com", "A"]);
    assert_eq!(www.status, "NOERROR");
    assert!(www.has_flag("aa"));
    assert_eq!(www.answer.len(), 1);
    assert!(["192.0.2.10", "198.51.100.10", "203.0.113.10"].contains(&www.answer[0].data.as_str()));

    // the banner's demo: stop eu-west's backend and api fails over
    let control = |verb: &str| {
        let url = banner
            .lines()
            .find_map(|l| l.trim().strip_prefix("curl -X POST "))
            .expect("a curl line")
            .replace("/stop", &format!("/{verb}"));
        let (host, path) = url
            .strip_prefix("http://")
            .and_then(|u| u.split_once('/'))
            .expect("url");
        let mut s = std::net::TcpStream::connect(host).expect("control server");
        use std::io::{Read, Write};
        write!(s, "POST /{path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n").unwrap();
        let mut reply = String::new();
        let _ = s.read_to_string(&mut reply);
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    };
    let api = |want: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let got = crate::harness::dig(addr, &["api.glb.example.com", "A"]).answers("A");
            if got == [want] {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "api answers {got:?}, not {want}"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };
    // the banner's HTTP fallback example: a European client to eu-west
    let web = banner
        .lines()
        .find_map(|l| l.strip_prefix("meridian: HTTP fallback listening on "))
        .expect("the fallback's address")
        .trim()
        .to_string();
    assert!(banner.contains("X-Forwarded-For: 192.0.2.7"), "{banner}");
    // the README's example, run as written against this fallback: the
    // lines it shows are the lines it prints
    let readme = include_str!("../../README.md");
    let block = readme
        .split_once("<!-- fallback-example:start -->")
        .and_then(|(_, rest)| rest.split_once("<!-- fallback-example:end -->"))
        .and_then(|(block, _)| block.split_once("```sh\n"))
        .and_then(|(_, rest)| rest.split_once("```"))
        .map(|(code, _)| code)
        .expect("the README's fallback example");
    let (command, expected): (Vec<&str>, Vec<&str>) =
        block.lines().partition(|l| !l.starts_with("# "));
    let command = command.join("\n").replace("127.0.0.1:8080", &web);
    let out = std::process::Command::new("sh")
        .args(["-c", &command])
        .output()
        .expect("sh");
    let printed: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim_end().to_string())
        .collect();
    let expected: Vec<&str> = expected.iter().map(|l| &l[2..]).collect();
    assert_eq!(printed, expected, "{command}");
    api("192.0.2.20");
    control("stop");
    api("198.51.100.20");
    control("start");
    api("192.0.2.20");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn json_logs() {
    let zones = "zones:\n  glb.example.com:\n    soa: {rname: h.example.com.}\n    ns: [{name: ns.example.net.}]\n";
    let s = crate::harness::Server::start_config(
        zones,
        "dns: {listen: [\"127.0.0.1:0\"]}\nlog: {level: info, format: json}\nzones: zones.yaml\n",
    );
    assert!(s.wait_for_log("\"message\":\"serving\"", 0), "{}", s.logs());
    let logs = s.logs();
    let line = logs.lines().find(|l| l.contains("serving")).unwrap();
    assert!(
        line.starts_with("{\"timestamp\":") && line.ends_with('}'),
        "{line}"
    );
}

/// The `metrics:` listener's two openings, each said out loud: health for
/// anyone (`open_health`, what a kubelet needs) with the scrape still
/// behind a token, or everything for anyone (`insecure`).
#[test]
fn a_metrics_listener_opens_only_what_it_is_told() {
    use crate::cluster::free_port;
    use crate::harness::http_get;
    let zones = "zones:\n  glb.example.com:\n    soa: {rname: h.example.com.}\n    ns: [{name: ns.example.net.}]\n";
    let creds = tempfile::tempdir().expect("tempdir");
    let read = crate::cluster::meridian(
        creds.path(),
        &["token", "new", "--scope", "read", "--file", "tokens"],
    );
    let tokens = std::fs::read(creds.path().join("tokens")).expect("tokens");

    let health = format!("127.0.0.1:{}", free_port("127.0.0.1"));
    let _open = crate::harness::Server::start_files(
        zones,
        &format!("dns: {{listen: [\"127.0.0.1:0\"]}}\nzones: zones.yaml\nmetrics: {{listen: \"{health}\", tokens: tokens, open_health: true}}\n"),
        &[("tokens", tokens)],
    );
    assert_eq!(http_get(&health, "/healthz", None).0, 200);
    let (status, body) = http_get(&health, "/readyz?scope=dns", None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(http_get(&health, "/metrics", None).0, 401);
    assert_eq!(http_get(&health, "/status.json", None).0, 401);
    let (status, scrape) = http_get(&health, "/metrics", Some(read.trim()));
    assert_eq!(status, 200, "{scrape}");
    let (status, view) = http_get(&health, "/status.json", Some(read.trim()));
    assert_eq!(status, 200, "{view}");
    assert!(view.starts_with('{'), "{view}");
    let (status, page) = http_get(&health, "/", None);
    assert_eq!(status, 200);
    assert!(page.contains("<html"), "the status page: {page}");

    let all = format!("127.0.0.1:{}", free_port("127.0.0.1"));
    let _insecure = crate::harness::Server::start_config(
        zones,
        &format!("dns: {{listen: [\"127.0.0.1:0\"]}}\nzones: zones.yaml\nmetrics: {{listen: \"{all}\", insecure: true}}\n"),
    );
    let (status, scrape) = http_get(&all, "/metrics", None);
    assert_eq!(status, 200, "{scrape}");
    assert!(scrape.contains("meridian_uptime_seconds"), "{scrape}");
}
