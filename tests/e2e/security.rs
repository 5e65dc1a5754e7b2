//! The attacks of the cluster-safety review, each tried against real
//! nodes: every one must be refused (with the right status) and change
//! nothing.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::cluster::{Cluster, Tls, BOUND};
use crate::harness::{dig, http, http_exchange};

/// A GET from the source address `from` (any 127/8 address).
fn http_from(from: &str, addr: &str, path: &str, token: &str) -> (u16, String) {
    let s = connect_from(from, addr).expect("connect");
    http_exchange(s, addr, "GET", path, Some(token), "")
}

pub(crate) fn token(c: &Cluster, name: &str) -> String {
    std::fs::read_to_string(c.dir.path().join(name))
        .expect("token")
        .trim()
        .to_string()
}

/// The SOA serial node 1 serves: the state version.
fn serial(c: &Cluster) -> String {
    dig(c.node(1).dns(), &["glb.example.com", "SOA"]).answer[0]
        .data
        .split_whitespace()
        .nth(2)
        .expect("serial")
        .to_string()
}

/// A whole spec as the JSON of a `ReplaceSpec`, answering www with `v`.
fn replace_spec(v: &str) -> String {
    let text = format!(
        "zones:\n  glb.example.com:\n    soa: {{rname: hostmaster.example.com.}}\n    ns: [{{name: ns.example.net.}}]\n    records:\n      - {{name: www, type: A, value: {v}}}\n"
    );
    let spec = meridian_config::zone::parse("x.yaml", &text).expect("valid");
    serde_json::to_string(&meridian_consensus::Command::ReplaceSpec(Box::new(spec))).expect("json")
}

/// A forged AppendEntries from "node 2" at a high term, carrying one
/// `ReplaceSpec`.
fn forged_append() -> String {
    forged_append_from(2)
}

/// The same, from node `from`.
fn forged_append_from(from: u64) -> String {
    use openraft::raft::AppendEntriesRequest;
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, Vote};
    let cmd: meridian_consensus::Command =
        serde_json::from_str(&replace_spec("203.0.113.66")).expect("command");
    let req: AppendEntriesRequest<meridian_consensus::TypeConfig> = AppendEntriesRequest {
        vote: Vote::new_committed(1000, from),
        prev_log_id: None,
        entries: vec![Entry {
            log_id: LogId::new(CommittedLeaderId::new(1000, from), 1),
            payload: EntryPayload::Normal(cmd),
        }],
        leader_commit: Some(LogId::new(CommittedLeaderId::new(1000, from), 1)),
    };
    serde_json::to_string(&req).expect("json")
}

#[test]
fn strangers_and_wrong_roles_are_refused_everywhere() {
    let c = Cluster::start_with(3, Tls::Off, &crate::cluster::spec(0), "", &[]);
    c.wait_healthy(1);
    c.wait_answer(1, 0);
    let api = c.node(2).api.clone();
    let before = serial(&c);
    let term = |c: &Cluster| c.status_json(1)["1"]["term"].as_u64().expect("term");
    let term_before = term(&c);
    let (read, write, admin, probe) = (
        token(&c, "read.token"),
        token(&c, "write.token"),
        token(&c, "admin.token"),
        token(&c, "probe-eu.token"),
    );

    // writes: nobody without write; read and probe tokens are the wrong role
    let spec = replace_spec("203.0.113.66");
    let cases: [(Option<&str>, u16); 4] = [
        (None, 401),
        (Some("mrd_000000000000_0000"), 401),
        (Some(&read), 403),
        (Some(&probe), 403),
    ];
    for (t, want) in cases {
        let (status, body) = http(&api, "POST", "/cluster/write", t, &spec);
        assert_eq!(status, want, "write with {t:?}: {body}");
        assert!(body.contains("\"code\""), "a JSON error: {body}");
    }

    // membership: a stranger cannot join or init; a writer is not an admin
    let join = r#"{"id": 9, "addr": "127.0.0.19:8440"}"#;
    assert_eq!(http(&api, "POST", "/cluster/join", None, join).0, 401);
    assert_eq!(
        http(&api, "POST", "/cluster/join", Some(&write), join).0,
        403
    );
    assert_eq!(http(&api, "POST", "/cluster/init", None, "{}").0, 401);
    assert_eq!(
        http(&api, "POST", "/cluster/init", Some(&write), "{}").0,
        403
    );
    let (status, body) = http(&api, "POST", "/cluster/init", Some(&admin), "{}");
    assert_eq!(status, 409, "an initialized cluster stays as it is: {body}");
    // a metadata address is no member address, even for an admin
    let meta = r#"{"id": 9, "addr": "169.254.169.254:80"}"#;
    let (status, body) = http(&api, "POST", "/cluster/join", Some(&admin), meta);
    assert_eq!(status, 422, "{body}");

    // Raft RPCs: only nodes. A forged append and a vote at a high term
    // are refused by a follower, with or without an operator's token.
    let forged = forged_append();
    for t in [None, Some(admin.as_str())] {
        let (status, body) = http(&api, "POST", "/raft/append", t, &forged);
        assert!(status == 401 || status == 403, "{status} {body}");
        let vote = r#"{"vote":{"leader_id":{"term":1000,"node_id":2},"committed":false},"last_log_id":null}"#;
        let (status, body) = http(&api, "POST", "/raft/vote", t, vote);
        assert!(status == 401 || status == 403, "{status} {body}");
    }

    // status and health: a read credential at least
    assert_eq!(http(&api, "GET", "/cluster/status", None, "").0, 401);
    assert_eq!(http(&api, "GET", "/probe/health", Some(&probe), "").0, 403);
    assert_eq!(http(&api, "GET", "/cluster/status", Some(&read), "").0, 200);
    assert_eq!(http(&api, "GET", "/probe/health", Some(&read), "").0, 200);

    // observations only through the probe API, never written with a
    // chosen time, whatever the token
    let observe = r#"{"Observe":{"at_ms":18446744073709551615,"report":{"region":"eu","agent":"x","observations":[]}}}"#;
    let (status, body) = http(&api, "POST", "/cluster/write", Some(&admin), observe);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("/probe/report"), "{body}");

    // a probe token reports only for its region, with sane numbers
    let report = |token: &str, region: &str, ms: &str| {
        let body = format!(
            r#"{{"region":"{region}","agent":"a","observations":[{{"pool":"web","endpoint":"e","up":false,"ok":false,"connect_ms":{ms}}}]}}"#
        );
        http(&api, "POST", "/probe/report", Some(token), &body)
    };
    let (status, body) = report(&probe, "us", "1.0");
    assert_eq!(status, 403, "another region: {body}");
    let (status, _) = http(&api, "GET", "/probe/checks?region=us", Some(&probe), "");
    assert_eq!(status, 403, "another region's checks");
    let (status, body) = report(&probe, "eu", "-5.0");
    assert_eq!(status, 422, "a negative time: {body}");
    assert!(body.contains("connect_ms"), "{body}");
    let (status, body) = report(&write, "eu", "1.0");
    assert_eq!(status, 403, "a writer is no agent: {body}");

    // nothing of it changed the state or the term
    assert_eq!(serial(&c), before);
    for id in [1, 2, 3] {
        assert_eq!(
            dig(c.node(id).dns(), &["www.glb.example.com", "A"]).answers("A"),
            ["192.0.2.0"],
            "node {id}"
        );
    }
    assert_eq!(term(&c), term_before, "no election was forced");
    // `status | head` ends quietly when head stops reading
    let piped = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "{} cluster status --api {api} --token-file read.token | head -c 10 >/dev/null; echo ${{PIPESTATUS[0]}}",
            crate::harness::BIN
        ))
        .current_dir(c.dir.path())
        .output()
        .expect("bash");
    let code = String::from_utf8_lossy(&piped.stdout).trim().to_string();
    let err = String::from_utf8_lossy(&piped.stderr);
    assert!(
        ["0", "141"].contains(&code.as_str()) && !err.contains("panicked"),
        "status into a closed pipe: exit {code}, {err}"
    );
    // small commands stay small: a 1 MB pool name is refused
    let huge = format!(
        r#"{{"SetWeight":{{"pool":"{}","endpoint":"a","weight":1}}}}"#,
        "p".repeat(1 << 20)
    );
    let (status, body) = http(&api, "POST", "/cluster/write", Some(&write), &huge);
    assert_eq!(status, 422, "{body}");
    // while the right credential works
    let (status, body) = http(
        &api,
        "POST",
        "/cluster/write",
        Some(&write),
        &replace_spec("192.0.2.5"),
    );
    assert_eq!(status, 200, "{body}");
}

/// Under mutual TLS every certificate names a role: an agent's certificate
/// may report for its region and do nothing else; another CA's node
/// certificate gets no connection at all.
#[test]
fn under_mutual_tls_a_certificate_is_only_its_role() {
    let c = Cluster::start_with(1, Tls::On, &crate::cluster::spec(0), "", &[]);
    c.wait_healthy(1);
    let dir = c.dir.path();
    let zones = dir.join("w.yaml");
    std::fs::write(&zones, crate::cluster::spec(7)).expect("write");
    let as_cert = |name: &str, args: &[&str]| {
        let mut all = vec!["cluster"];
        all.extend_from_slice(args);
        let config = c.node(1).config_path();
        let (cert, key) = (format!("{name}.pem"), format!("{name}.key"));
        all.extend_from_slice(&["--config", config, "--cert", &cert, "--key", &key]);
        crate::harness::run(&all, dir)
    };
    let zones = zones.to_str().expect("utf-8");
    let (code, out, err) = as_cert("agent-eu", &["apply", zones]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("agent-eu has the probe scope"), "{err}");
    let (code, _, err) = as_cert("agent-eu", &["status"]);
    assert_eq!(code, 1, "an agent may not read the cluster: {err}");
    // a node's own certificate may read, not write
    let (code, out, err) = as_cert("n1", &["status"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, _, err) = as_cert("n1", &["apply", zones]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("may not write on its own account"), "{err}");
    // the operator may
    let (code, out, err) = as_cert("operator", &["apply", zones]);
    assert_eq!(code, 0, "{out}{err}");
    // a node certificate from another CA: no TLS session
    let (code, _, err) = as_cert("rogue", &["status"]);
    assert_eq!(code, 1, "{err}");
}

/// A spec that points checks at a cloud metadata address is refused by the
/// leader, whichever way it comes; the agents never see it.
#[test]
fn checks_cannot_be_pointed_at_a_metadata_address() {
    let c = Cluster::start_with(1, Tls::Off, &crate::cluster::spec(0), "", &[]);
    c.wait_healthy(1);
    c.wait_answer(1, 0);
    let before = serial(&c);
    let text = format!(
        "{}regions: {{eu: {{}}}}\npools:\n  web:\n    check: {{kind: http}}\n    endpoints:\n      - {{id: a, address: 192.0.2.1, region: eu, check_address: \"169.254.169.254:80\"}}\n",
        crate::cluster::spec(3)
    );
    let file = c.dir.path().join("meta.yaml");
    std::fs::write(&file, &text).expect("write");
    let (code, out, err) = c.cli(1, &["apply", file.to_str().expect("utf-8")]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("pools.web.endpoints[0].check_address: 169.254.169.254 is link-local"),
        "{err}"
    );
    // and as JSON straight to the API, with the fields the YAML would refuse
    let mut spec = meridian_config::zone::parse("meta.yaml", &text).expect("parses");
    let check = spec.pools.get_mut("web").unwrap().check.as_mut().unwrap();
    check.interval_ms = 0;
    check.quorum = 0;
    let body = serde_json::to_string(&meridian_consensus::Command::ReplaceSpec(Box::new(spec)))
        .expect("json");
    let (status, body) = http(
        &c.node(1).api,
        "POST",
        "/cluster/write",
        Some(&token(&c, "admin.token")),
        &body,
    );
    assert_eq!(status, 400, "{body}");
    for want in ["check.interval", "check.quorum", "169.254.169.254"] {
        assert!(body.contains(want), "{want} in {body}");
    }
    assert_eq!(serial(&c), before);
}

/// Connections that never finish their headers are closed; many idle ones
/// from one address hit its cap while DNS and the API keep answering.
#[test]
fn slow_and_idle_connections_are_bounded() {
    let c = Cluster::start_with(1, Tls::Off, &crate::cluster::spec(0), "", &[]);
    c.wait_healthy(1);
    let api = c.node(1).api.clone();
    // half-sent requests
    let mut slow: Vec<TcpStream> = (0..30)
        .map(|_| {
            let mut s = TcpStream::connect(&api).expect("connect");
            s.write_all(b"GET /cluster/status HTTP/1.1\r\nHost: x\r\n")
                .expect("send");
            s
        })
        .collect();
    // past the per-address cap (64), more idle connections from this
    // address are closed at once; another address still gets answers
    let idle: Vec<TcpStream> = (0..40)
        .map(|_| TcpStream::connect(&api).expect("connect"))
        .collect();
    let mut over = TcpStream::connect(&api).expect("connect");
    over.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut buf = [0u8; 16];
    assert!(
        matches!(over.read(&mut buf), Ok(0) | Err(_)),
        "a connection over the cap is closed"
    );
    let read = token(&c, "read.token");
    let (status, body) = http_from("127.0.0.99", &api, "/cluster/status", &read);
    assert_eq!(status, 200, "{body}");
    drop(idle);
    // each half-sent request is closed by the header timeout (10 s)
    let deadline = Instant::now() + BOUND;
    for s in &mut slow {
        s.set_read_timeout(Some(Duration::from_secs(1)))
            .expect("timeout");
        let mut buf = [0u8; 512];
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                // hyper may answer 408 before closing
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
                Err(_) => assert!(Instant::now() < deadline, "a half-sent request stayed open"),
            }
        }
    }
    // and DNS answered throughout
    assert_eq!(
        dig(c.node(1).dns(), &["www.glb.example.com", "A"]).answers("A"),
        ["192.0.2.0"]
    );
}

/// Starts `meridian serve --config CONFIG` expecting it to refuse: its exit
/// code and stderr. Fails if it starts serving instead (or hangs).
fn serve_refused(config: &str) -> (i32, String) {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let mut child = Command::new(crate::harness::BIN)
        .args(["serve", "--config", config])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start meridian");
    let out = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let served = std::io::BufReader::new(out)
            .lines()
            .map_while(Result::ok)
            .any(|l| l.contains("DNS listening"));
        let _ = tx.send(served);
    });
    let served = rx.recv_timeout(BOUND);
    if served != Ok(false) {
        let _ = child.kill();
    }
    let status = child.wait().expect("wait");
    let mut err = String::new();
    let _ = child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err);
    assert_eq!(
        served,
        Ok(false),
        "the node started on a damaged store:\n{err}"
    );
    (status.code().unwrap_or(-1), err)
}

/// 4 KiB of noise written into the middle of a stopped node's store: the
/// node refuses to start and says how to recover; rebuilt from a snapshot
/// under a new id, it holds every acknowledged write.
#[test]
fn a_damaged_store_is_refused_and_the_node_rebuilt() {
    let mut c = Cluster::start_with(3, Tls::Off, &crate::cluster::spec(0), "", &[]);
    c.wait_healthy(1);
    for v in 1..=40 {
        c.apply_until_acked(&[1, 2], v);
    }
    c.kill(3);
    let journal = c.node(3).data_path().join("raft/journal");
    let mut bytes = std::fs::read(&journal).expect("journal");
    assert!(bytes.len() > 4096 + 8192, "a journal with records");
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let start = 4096 + (bytes.len() - 4096) / 2 - 2048;
    for b in &mut bytes[start..start + 4096] {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    std::fs::write(&journal, &bytes).expect("write");
    let (code, err) = serve_refused(c.node(3).config_path());
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("is damaged"), "{err}");
    assert!(err.contains("journal"), "the message names the file: {err}");
    assert!(
        err.contains("meridian cluster leave"),
        "and how to recover: {err}"
    );

    // the way back: leave, wipe, join as a new node
    let (code, out, err) = c.cli(1, &["leave", "--id", "3"]);
    assert_eq!(code, 0, "{out}{err}");
    std::fs::remove_dir_all(c.node(3).data_path()).expect("wipe");
    c.join_new(4);
    c.wait_healthy(4);
    for id in [1, 2, 4] {
        c.check_acknowledged_writes(id);
    }
}

/// A TCP connection from source address `from` (any 127/8 address).
pub(crate) fn connect_from(from: &str, to: &str) -> std::io::Result<TcpStream> {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    let src: std::net::SocketAddr = format!("{from}:0").parse().expect("addr");
    sock.bind(&src.into())?;
    let dst: std::net::SocketAddr = to.parse().expect("addr");
    sock.connect(&dst.into())?;
    Ok(sock.into())
}

/// CPU time (user + system) a process has used, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let after = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime")
}

/// 300 idle connections to the API and DNS TCP ports from many addresses,
/// under a limit of 200 open files: each listener holds to a quarter of the
/// files and closes the rest at once, the node does not spin, DNS over UDP
/// answers throughout, and DNS over TCP and the API answer again as the
/// busy listeners shed their idle connections.
#[test]
fn running_out_of_file_descriptors_is_survived() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    crate::cluster::meridian(d, &["token", "secret", "--file", "cluster.secret"]);
    let read =
        crate::cluster::meridian(d, &["token", "new", "--scope", "read", "--file", "tokens"]);
    let host = "127.0.0.31";
    let api = format!("{host}:{}", crate::cluster::free_port(host));
    std::fs::write(d.join("zones.yaml"), crate::cluster::spec(0)).expect("zones");
    let config = format!(
        "dns: {{listen: [\"{host}:0\"], udp_sockets: 1, tcp_idle_timeout_secs: 3}}\ndata_dir: data\nzones: zones.yaml\nlog: {{level: info}}\ncluster:\n  id: 1\n  listen: \"{api}\"\n  members: {{1: \"{api}\"}}\n  secret: cluster.secret\n  tokens: tokens\n"
    );
    std::fs::write(d.join("n.yaml"), config).expect("config");
    let bin = crate::harness::BIN;
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -n 200 && exec {bin} serve --config n.yaml"))
        .current_dir(d)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(d.join("n.log")).expect("log"))
        .spawn()
        .expect("start");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let out = child.stdout.take().expect("stdout");
    let pid = child.id();
    let _guard = Kill(child);
    let dns: std::net::SocketAddr = std::io::BufReader::new(out)
        .lines()
        .map_while(Result::ok)
        .find_map(|l| {
            l.strip_prefix("meridian: DNS listening on ")
                .and_then(|r| r.split_whitespace().next())
                .and_then(|a| a.parse().ok())
        })
        .expect("DNS address");
    let www = |c: &str| crate::harness::dig(dns, &["www.glb.example.com", "A", c]).answers("A");
    let deadline = Instant::now() + BOUND;
    while www("+notcp") != ["192.0.2.0"] {
        assert!(Instant::now() < deadline, "the node never served");
        std::thread::sleep(Duration::from_millis(100));
    }
    // 150 to each port, from 30 addresses: under the per-address caps,
    // over the file limit
    let dns_tcp = dns.to_string();
    let mut idle = Vec::new();
    for i in 0..300 {
        let from = format!("127.0.1.{}", 1 + i % 30);
        let to = if i % 2 == 0 { &api } else { &dns_tcp };
        if let Ok(s) = connect_from(&from, to) {
            idle.push(s);
        }
    }
    // no busy loop on EMFILE: the node stays mostly idle
    let before = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_ticks(pid) - before;
    assert!(used < 100, "the node spun: {used} ticks of CPU in 2 s");
    // UDP answers all along
    assert_eq!(www("+notcp"), ["192.0.2.0"]);
    let log = std::fs::read_to_string(d.join("n.log")).expect("log");
    assert!(
        log.contains("connections refused: over the connection cap"),
        "the caps, not the file limit, stopped them:\n{log}"
    );
    assert!(!log.contains("out of file descriptors"), "{log}");
    // once the idle connections time out (3 s), TCP and the API answer
    let deadline = Instant::now() + BOUND;
    loop {
        let tcp = www("+tcp");
        let (status, _) = http_from("127.0.0.99", &api, "/cluster/status", read.trim());
        if tcp == ["192.0.2.0"] && status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "TCP {tcp:?} and API {status} never answered again"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(idle);
}

/// A POST over mutual TLS with the identity `name` (`name.pem`,
/// `name.key`, `ca.pem` in `dir`): the status and the body.
fn tls_post(
    dir: &std::path::Path,
    name: &str,
    url: &str,
    forwarded: bool,
    body: impl Into<reqwest::Body>,
) -> (u16, String) {
    crate::harness::install_crypto_provider();
    let files = meridian_config::node::TlsConfig {
        cert: dir.join(format!("{name}.pem")),
        key: dir.join(format!("{name}.key")),
        ca: dir.join("ca.pem"),
    };
    let tls = meridian_consensus::tls::Tls::load(&files).expect("tls");
    let client = meridian_consensus::tls::http_client(Some(&tls), None);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut req = client
            .post(url)
            .header("content-type", "application/json")
            .timeout(Duration::from_secs(10))
            .body(body);
        if forwarded {
            req = req.header("x-meridian-forwarded", "1");
        }
        let resp = req.send().await.expect("send");
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap_or_default())
    })
}

/// A node certificate from the cluster's CA for a host that is not a
/// member (or was removed) moves nothing: no Raft RPC as an unknown node,
/// no forwarded write, join or report.
#[test]
fn a_node_certificate_of_no_member_moves_nothing() {
    let c = Cluster::start_with(3, Tls::On, &crate::cluster::spec(0), "", &[]);
    c.wait_healthy(1);
    c.wait_answer(1, 0);
    let before = serial(&c);
    let dir = c.dir.path();
    // n5 is signed by the cluster's CA for 127.0.0.15, which never joined
    let api = |id: u64| format!("https://{}", c.node(id).api);
    let (status, body) = tls_post(
        dir,
        "n5",
        &format!("{}/raft/append", api(2)),
        false,
        forged_append_from(99),
    );
    assert_eq!(status, 403, "an append from a stranger: {body}");
    let vote =
        r#"{"vote":{"leader_id":{"term":1000,"node_id":99},"committed":false},"last_log_id":null}"#;
    let (status, body) = tls_post(
        dir,
        "n5",
        &format!("{}/raft/vote", api(1)),
        false,
        vote.to_string(),
    );
    assert_eq!(status, 403, "a vote from a stranger: {body}");
    for path in ["/cluster/write", "/cluster/leave"] {
        let body = if path == "/cluster/write" {
            replace_spec("203.0.113.66")
        } else {
            r#"{"id": 3}"#.into()
        };
        for id in [1, 2, 3] {
            let (status, reply) =
                tls_post(dir, "n5", &format!("{}{path}", api(id)), true, body.clone());
            assert_eq!(status, 403, "a forwarded {path} from a stranger: {reply}");
        }
    }
    // nor can it add itself (or anyone): only an admin adds members
    for forwarded in [false, true] {
        let join = r#"{"id": 5, "addr": "127.0.0.15:8440"}"#;
        let (status, reply) = tls_post(
            dir,
            "n5",
            &format!("{}/cluster/join", api(1)),
            forwarded,
            join.to_string(),
        );
        assert_eq!(status, 403, "a join by a node certificate: {reply}");
    }
    // a member's own certificate is no probe agent either
    let report = r#"{"region":"eu","agent":"x","observations":[]}"#;
    let (status, reply) = tls_post(
        dir,
        "n1",
        &format!("{}/probe/report", api(1)),
        false,
        report.to_string(),
    );
    assert_eq!(status, 403, "{reply}");
    // a member's snapshot that does not decode is refused before Raft
    // sees it, and the node goes on
    let head = serde_json::json!({
        "vote": {"leader_id": {"term": 1, "node_id": 1}, "committed": true},
        "meta": {"last_log_id": {"leader_id": {"term": 1, "node_id": 1}, "index": 100000},
                 "last_membership": {"log_id": null, "membership": {"configs": [], "nodes": {}}},
                 "snapshot_id": "evil"},
        "offset": 0,
        "done": true
    })
    .to_string();
    let mut chunk = (head.len() as u32).to_le_bytes().to_vec();
    chunk.extend_from_slice(head.as_bytes());
    chunk.extend_from_slice(b"not json");
    let (status, reply) = tls_post(
        dir,
        "n1",
        &format!("{}/raft/snapshot", api(2)),
        false,
        chunk,
    );
    assert_eq!(status, 422, "{reply}");
    assert!(reply.contains("does not decode"), "{reply}");
    assert_eq!(serial(&c), before);
    c.wait_healthy(1);
    c.wait_healthy(2);
}
