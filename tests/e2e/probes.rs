//! Probe agents end to end: a three-node cluster, `meridian probe` agents
//! for three regions reporting over HTTP with a probe token, and real HTTP
//! backends on loopback that the tests stop, restart, fail for one region,
//! or make flap. Answers are read with `dig` on every node.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::cluster::{Cluster, Tls, BOUND};
use crate::harness::{dig, BIN};

/// How a backend treats each connection.
#[derive(Default, Clone, Copy, PartialEq)]
enum Mode {
    /// Answers 200 (or 503, see [`Behaviour`]).
    #[default]
    Serve,
    /// Answers 302 to the same path, for ever.
    Redirect,
    /// Accepts and never answers.
    Hang,
    /// Leaves the request unread and closes: a reset.
    Reset,
    /// Answers bytes that are not HTTP.
    Garbage,
}

/// What a backend does with a health request.
#[derive(Default)]
struct Behaviour {
    mode: Mode,
    /// Server names that TLS clients asked for.
    sni: Vec<String>,
    /// Regions (from the agent's region header) that get 503.
    failing: Vec<String>,
    /// Alternate 200 and 503 for each region in turn.
    flapping: bool,
    /// Requests answered so far, per region.
    counts: HashMap<String, u64>,
}

/// An HTTP backend on 127.0.0.1 that can be stopped (its listener
/// closed, so connections are refused) and started again on its port.
struct Backend {
    port: u16,
    stop: Arc<AtomicBool>,
    requests: Arc<AtomicU64>,
    behaviour: Arc<Mutex<Behaviour>>,
    /// Serves HTTPS with this (self-signed) identity.
    tls: Option<Arc<rustls::ServerConfig>>,
    thread: Option<JoinHandle<()>>,
}

impl Backend {
    fn start() -> Backend {
        Backend::with(Mode::Serve, None)
    }

    fn with(mode: Mode, tls: Option<Arc<rustls::ServerConfig>>) -> Backend {
        let mut b = Backend {
            port: 0,
            stop: Arc::new(AtomicBool::new(false)),
            requests: Arc::new(AtomicU64::new(0)),
            behaviour: Arc::new(Mutex::new(Behaviour {
                mode,
                ..Behaviour::default()
            })),
            tls,
            thread: None,
        };
        b.listen();
        b
    }

    /// An HTTPS backend whose certificate no one issued: self-signed.
    fn self_signed() -> Backend {
        crate::harness::install_crypto_provider();
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
            .expect("params")
            .self_signed(&key)
            .expect("certificate");
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .expect("server config");
        Backend::with(Mode::Serve, Some(Arc::new(config)))
    }

    fn listen(&mut self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).expect("bind backend");
        self.port = listener.local_addr().expect("addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        self.stop.store(false, Ordering::SeqCst);
        let (stop, requests, behaviour, tls) = (
            self.stop.clone(),
            self.requests.clone(),
            self.behaviour.clone(),
            self.tls.clone(),
        );
        self.thread = Some(std::thread::spawn(move || {
            // stops when told, or after five minutes whatever happens
            let end = Instant::now() + Duration::from_secs(300);
            while !stop.load(Ordering::SeqCst) && Instant::now() < end {
                match listener.accept() {
                    Ok((s, _)) => {
                        requests.fetch_add(1, Ordering::SeqCst);
                        let (behaviour, tls) = (behaviour.clone(), tls.clone());
                        std::thread::spawn(move || serve(s, tls, &behaviour));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        }));
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().expect("backend thread");
        }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.halt();
    }
}

fn serve(s: TcpStream, tls: Option<Arc<rustls::ServerConfig>>, behaviour: &Mutex<Behaviour>) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    match behaviour.lock().expect("lock").mode {
        // the probe's timeout ends it first; the sleep ends by itself
        Mode::Hang => return std::thread::sleep(Duration::from_secs(3)),
        // the request arrives meanwhile; closing with it unread resets
        Mode::Reset => return std::thread::sleep(Duration::from_millis(100)),
        _ => {}
    }
    match tls {
        Some(config) => {
            if let Ok(conn) = rustls::ServerConnection::new(config) {
                let mut tls = rustls::StreamOwned::new(conn, s);
                answer(&mut tls, behaviour);
                if let Some(name) = tls.conn.server_name() {
                    behaviour.lock().expect("lock").sni.push(name.to_string());
                }
            }
        }
        None => answer(s, behaviour),
    }
}

fn answer(mut s: impl Read + Write, behaviour: &Mutex<Behaviour>) {
    let mut region = String::new();
    {
        let mut reader = BufReader::new(&mut s);
        let mut line = String::new();
        while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
            let l = line.trim_end().to_ascii_lowercase();
            if l.is_empty() {
                break;
            }
            if let Some(r) = l.strip_prefix("x-meridian-probe-region:") {
                region = r.trim().to_string();
            }
            line.clear();
        }
    }
    match behaviour.lock().expect("lock").mode {
        Mode::Redirect => {
            let _ = s.write_all(b"HTTP/1.1 302 Found\r\nlocation: /health\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            return;
        }
        Mode::Garbage => {
            let _ = s.write_all(b"\x00\x01 not http at all\r\n\r\n");
            return;
        }
        _ => {}
    }
    let ok = {
        let mut b = behaviour.lock().expect("lock");
        let n = b.counts.entry(region.clone()).or_default();
        *n += 1;
        let n = *n;
        let fails = b.failing.contains(&region) || (b.flapping && n.is_multiple_of(2));
        !fails
    };
    let status = if ok {
        "200 OK"
    } else {
        "503 Service Unavailable"
    };
    let _ = s.write_all(
        format!("HTTP/1.1 {status}\r\ncontent-length: 3\r\nconnection: close\r\n\r\nok\n")
            .as_bytes(),
    );
    let _ = s.flush();
}

/// A `meridian probe` process, killed when dropped.
struct Agent {
    child: Child,
}

impl Agent {
    fn start(dir: &Path, region: &str, cluster: &Cluster) -> Agent {
        let urls: Vec<String> = cluster
            .nodes
            .iter()
            .map(|n| format!("http://{}", n.api))
            .collect();
        // each agent its own region's token, made with the cluster
        let token = cluster.dir.path().join(format!("probe-{region}.token"));
        let log = std::fs::File::create(dir.join(format!("agent-{region}.log"))).expect("log");
        // the eu agent serves its metrics, to the cluster's read token
        let metrics: Vec<String> = match region {
            "eu" => vec![
                "--metrics".into(),
                eu_metrics(cluster),
                "--metrics-tokens".into(),
                cluster.dir.path().join("tokens").display().to_string(),
            ],
            _ => vec![],
        };
        let child = Command::new(BIN)
            .args(["probe", "--region", region, "--cluster", &urls.join(",")])
            .arg("--token-file")
            .arg(&token)
            .args(&metrics)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start meridian probe");
        Agent { child }
    }
}

/// Where the eu agent serves its metrics: a port fixed per cluster.
fn eu_metrics(c: &Cluster) -> String {
    let file = c.dir.path().join("eu-metrics.addr");
    if let Ok(addr) = std::fs::read_to_string(&file) {
        return addr;
    }
    let addr = format!("127.0.0.1:{}", crate::cluster::free_port("127.0.0.1"));
    std::fs::write(&file, &addr).expect("write");
    addr
}

impl Agent {
    fn running(&mut self) -> bool {
        self.child.try_wait().is_ok_and(|status| status.is_none())
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The zone: `www` answers every endpoint of pool `web` that is in
/// service; each endpoint is checked at its backend.
fn spec(backends: &[&Backend], check: &str) -> String {
    let endpoints: String = backends
        .iter()
        .enumerate()
        .map(|(i, b)| {
            format!(
                "      - {{id: e{i}, address: 192.0.2.{}, region: eu, check_address: \"{}\"}}\n",
                i + 1,
                b.addr()
            )
        })
        .collect();
    format!(
        "zones:\n  glb.example.com:\n    soa: {{rname: hostmaster.example.com.}}\n    ns: [{{name: ns.example.net.}}]\n    steered:\n      - {{name: www, type: A, pool: web, steps: [health], on_all_down: nodata}}\nregions: {{eu: {{}}, us: {{}}, ap: {{}}}}\npools:\n  web:\n{check}    endpoints:\n{endpoints}"
    )
}

const CHECK: &str = "    check: {kind: http, path: /health, interval: 1s, timeout: 500ms, rise: 2, fall: 2, stale_after: 3s}\n";

fn start_cluster(seed: &str) -> Cluster {
    let c = Cluster::start_with(3, Tls::Off, seed, "", &[]);
    c.wait_healthy(1);
    c
}

fn answers(c: &Cluster, id: u64) -> Vec<String> {
    let mut a = dig(c.node(id).dns(), &["www.glb.example.com", "A"]).answers("A");
    a.sort();
    a
}

/// Waits (bounded) until every node answers `want`.
fn wait_all(c: &Cluster, want: &[&str], agents_dir: &Path) {
    let deadline = Instant::now() + BOUND;
    for id in [1, 2, 3] {
        loop {
            let got = answers(c, id);
            if got == want {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {id} answers {got:?}, not {want:?}\n{}\n{}",
                health(c)["endpoints"],
                agent_logs(agents_dir)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn health(c: &Cluster) -> serde_json::Value {
    let (_, out, err) = c.cli(1, &["health", "--json"]);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}"))
}

/// The vote of `region` on endpoint `ep`, and whether it is fresh.
fn vote(h: &serde_json::Value, ep: &str, region: &str) -> Option<(bool, bool)> {
    let e = h["endpoints"]
        .as_array()?
        .iter()
        .find(|e| e["endpoint"] == ep)?;
    let r = e["regions"]
        .as_array()?
        .iter()
        .find(|r| r["region"] == region)?;
    Some((r["vote"]["up"].as_bool()?, r["fresh"].as_bool()?))
}

fn wait_health(c: &Cluster, what: &str, ok: impl Fn(&serde_json::Value) -> bool) {
    let deadline = Instant::now() + BOUND;
    loop {
        let h = health(c);
        if ok(&h) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "never {what}: {h:#}\n{}",
            agent_logs(c.dir.path())
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn agent_logs(dir: &Path) -> String {
    ["eu", "us", "ap"]
        .iter()
        .map(|r| {
            let text =
                std::fs::read_to_string(dir.join(format!("agent-{r}.log"))).unwrap_or_default();
            format!("--- agent {r}:\n{text}")
        })
        .collect()
}

#[test]
fn a_stopped_backend_leaves_every_nodes_answers_and_returns_after_rise() {
    let mut a = Backend::start();
    let b = Backend::start();
    let c = start_cluster(&spec(&[&a, &b], CHECK));
    let dir = c.dir.path().to_path_buf();
    let _agents = start_agents(&c);
    wait_health(&c, "three fresh up votes on e0", |h| {
        ["eu", "us", "ap"]
            .iter()
            .all(|r| vote(h, "e0", r) == Some((true, true)))
    });
    wait_all(&c, &["192.0.2.1", "192.0.2.2"], &dir);

    a.halt();
    wait_all(&c, &["192.0.2.2"], &dir);
    let h = health(&c);
    let e0 = &h["endpoints"][0];
    assert_eq!(
        (e0["up"].as_bool(), e0["in_service"].as_bool()),
        (Some(false), Some(false))
    );
    let error = e0["regions"][0]["vote"]["error"]
        .as_str()
        .unwrap_or_default();
    assert!(!error.is_empty(), "the vote says why: {e0}");
    // the verdict needs a quorum; the metrics check every region's vote
    wait_health(&c, "three fresh down votes on e0", |h| {
        ["eu", "us", "ap"]
            .iter()
            .all(|r| vote(h, "e0", r) == Some((false, true)))
    });
    scrape_after_a_stopped_backend(&c);

    a.listen();
    wait_all(&c, &["192.0.2.1", "192.0.2.2"], &dir);
}

/// Node 1's `/metrics` once e0's backend is down: the verdicts and votes,
/// the agents' report ages, the queries the test asked and what the
/// steered record answered, Raft's view, the process.
fn scrape_after_a_stopped_backend(c: &Cluster) {
    let api = &c.node(1).api;
    let token = crate::security::token(c, "read.token");
    // no credential, no metrics
    assert_eq!(crate::harness::http_get(api, "/metrics", None).0, 401);
    // ten known queries first
    for _ in 0..10 {
        dig(c.node(1).dns(), &["www.glb.example.com", "A"]);
    }
    let (status, m) = crate::harness::http_get(api, "/metrics", Some(&token));
    assert_eq!(status, 200, "{m}");
    let get = |name: &str, labels: &[(&str, &str)]| {
        crate::harness::metric(&m, name, labels)
            .unwrap_or_else(|| panic!("no {name} {labels:?} in:\n{m}"))
    };
    let e0 = [("pool", "web"), ("endpoint", "e0")];
    let e1 = [("pool", "web"), ("endpoint", "e1")];
    assert_eq!(get("meridian_endpoint_up", &e0), 0.0);
    assert_eq!(get("meridian_endpoint_up", &e1), 1.0);
    assert_eq!(get("meridian_endpoint_in_service", &e0), 0.0);
    for region in ["eu", "us", "ap"] {
        let vote = [("endpoint", "e0"), ("probe_region", region)];
        assert_eq!(
            get("meridian_region_vote", &vote),
            0.0,
            "{region} votes e0 down"
        );
        let up = [("endpoint", "e1"), ("probe_region", region)];
        assert_eq!(get("meridian_region_vote", &up), 1.0);
        let rtt = get("meridian_endpoint_rtt_seconds", &up);
        assert!(rtt > 0.0 && rtt < 1.0, "{region} RTT to e1: {rtt}");
        let age = get("meridian_agent_report_age_seconds", &[("region", region)]);
        assert!(
            (0.0..10.0).contains(&age),
            "{region} agent's report is {age} s old"
        );
    }
    let answered = get(
        "meridian_dns_queries_total",
        &[("qtype", "A"), ("rcode", "NOERROR"), ("protocol", "udp")],
    );
    assert!(answered >= 10.0, "{answered} A queries counted");
    let zone = get(
        "meridian_dns_zone_queries_total",
        &[("zone", "glb.example.com.")],
    );
    assert!(zone >= 10.0, "{zone} for the zone");
    // every answer since the stop went to e1; e0 had some before it
    let to_e1 = get(
        "meridian_steered_answers_total",
        &[
            ("record", "www.glb.example.com."),
            ("endpoint", "e1"),
            ("region", "eu"),
        ],
    );
    assert!(to_e1 >= 10.0, "{to_e1} answers led by e1");
    let histogram = get("meridian_dns_response_seconds_count", &[]);
    assert!(histogram >= answered, "every answer timed: {histogram}");
    assert_eq!(get("meridian_raft_has_leader", &[]), 1.0);
    assert_eq!(get("meridian_raft_members", &[]), 3.0);
    assert!(get("meridian_state_version", &[]) >= 1.0);
    assert!(get("meridian_raft_applied_index", &[]) >= 1.0);
    assert!(get("process_resident_memory_bytes", &[]) > 1e6);
    assert!(get("process_open_fds", &[]) > 3.0);
    assert!(get("process_cpu_seconds_total", &[]) > 0.0);
    // the standalone eu agent's own metrics: its probes and reports
    let (status, am) = crate::harness::http_get(&eu_metrics(c), "/metrics", Some(&token));
    assert_eq!(status, 200, "{am}");
    let ok = crate::harness::metric(
        &am,
        "meridian_probe_results_total",
        &[("region", "eu"), ("result", "ok")],
    );
    let fail = crate::harness::metric(&am, "meridian_probe_results_total", &[("result", "fail")]);
    assert!(
        ok.is_some_and(|n| n > 0.0) && fail.is_some_and(|n| n > 0.0),
        "{am}"
    );
    let sent = crate::harness::metric(&am, "meridian_probe_reports_total", &[("result", "sent")]);
    assert!(sent.is_some_and(|n| n > 0.0), "{am}");
    assert_eq!(
        crate::harness::http_get(&eu_metrics(c), "/metrics", None).0,
        401
    );
    // the status page: the page for anyone, its data for the token
    let (status, page) = crate::harness::http_get(api, "/", None);
    assert!(status == 200 && page.contains("status.json"), "{status}");
    assert_eq!(crate::harness::http_get(api, "/status.json", None).0, 401);
    let (status, body) = crate::harness::http_get(api, "/status.json", Some(&token));
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(v["members"].as_array().map(Vec::len), Some(3), "{v}");
    let rows = &v["pools"][0]["endpoints"];
    assert_eq!(
        (rows[0]["endpoint"].as_str(), rows[0]["up"].as_bool()),
        (Some("e0"), Some(false)),
        "{v}"
    );
    assert_eq!(rows[1]["up"], true, "{v}");
    assert_eq!(rows[0]["cells"][0]["up"], false, "{v}");
    assert!(rows[1]["cells"][0]["rtt_ms"].as_f64().is_some(), "{v}");
    assert!(
        v["changes"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["endpoint"] == "e0" && c["up"] == false)),
        "{v}"
    );
    // the leader sees how far each member is behind
    let leader = c.leader(1);
    let (_, lm) = crate::harness::http_get(&c.node(leader).api, "/metrics", Some(&token));
    for member in ["1", "2", "3"] {
        let lag =
            crate::harness::metric(&lm, "meridian_raft_replication_lag", &[("member", member)]);
        assert!(
            lag.is_some_and(|l| l < 100.0),
            "member {member} lag {lag:?}"
        );
    }
}

#[test]
fn a_quorum_of_regions_decides_and_dead_agents_never_vote_down() {
    let a = Backend::start();
    let c = start_cluster(&spec(&[&a], CHECK));
    let dir = c.dir.path().to_path_buf();
    // the target fails for ap only
    a.behaviour.lock().expect("lock").failing = vec!["ap".into()];
    let mut agents: HashMap<&str, Agent> = ["eu", "us", "ap"]
        .iter()
        .map(|r| (*r, Agent::start(&dir, r, &c)))
        .collect();
    wait_health(&c, "ap down, eu and us up", |h| {
        vote(h, "e0", "ap") == Some((false, true))
            && vote(h, "e0", "eu") == Some((true, true))
            && vote(h, "e0", "us") == Some((true, true))
    });
    let h = health(&c);
    assert_eq!(
        h["endpoints"][0]["up"], true,
        "two of three regions say up: {h:#}"
    );
    assert_eq!(h["endpoints"][0]["quorum"], 2);
    wait_all(&c, &["192.0.2.1"], &dir);

    // the two agents that see it up die: their votes go stale, and the
    // lone down vote is not a quorum
    agents.remove("eu");
    agents.remove("us");
    wait_health(&c, "eu and us stale", |h| {
        vote(h, "e0", "eu").is_some_and(|v| !v.1) && vote(h, "e0", "us").is_some_and(|v| !v.1)
    });
    let h = health(&c);
    assert_eq!(vote(&h, "e0", "ap"), Some((false, true)), "{h:#}");
    assert_eq!(h["endpoints"][0]["up"], true, "{h:#}");
    for id in [1, 2, 3] {
        assert_eq!(answers(&c, id), ["192.0.2.1"]);
    }
}

#[test]
fn a_flapping_target_does_not_flip_the_answer_and_a_removed_check_stops_probing() {
    let a = Backend::start();
    let c = start_cluster(&spec(&[&a], CHECK));
    let dir = c.dir.path().to_path_buf();
    let _agents = start_agents(&c);
    wait_health(&c, "three fresh votes", |h| {
        ["eu", "us", "ap"]
            .iter()
            .all(|r| vote(h, "e0", r).is_some_and(|v| v.1))
    });
    // every region now sees success and failure in turn: rise and fall 2
    // never see two in a row
    a.behaviour.lock().expect("lock").flapping = true;
    let before = a.requests.load(Ordering::SeqCst);
    while a.requests.load(Ordering::SeqCst) < before + 18 {
        for id in [1, 2, 3] {
            assert_eq!(answers(&c, id), ["192.0.2.1"], "{:#}", health(&c));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let h = health(&c);
    assert_eq!(h["endpoints"][0]["up"], true, "{h:#}");
    let flaps: Vec<u64> = a
        .behaviour
        .lock()
        .expect("lock")
        .counts
        .values()
        .copied()
        .collect();
    assert_eq!(flaps.len(), 3, "each region probed");

    // the check goes away: the agents stop probing the backend
    let file = dir.join("unchecked.yaml");
    std::fs::write(&file, spec(&[&a], "")).expect("spec");
    let (code, out, err) = c.cli(1, &["apply", file.to_str().expect("utf-8")]);
    assert_eq!(code, 0, "{out}{err}");
    wait_health(&c, "no checked endpoints", |h| {
        h["endpoints"].as_array().is_some_and(|e| e.is_empty())
    });
    // each agent logs its new, empty list after aborting the probe tasks,
    // so no connection can start after that line
    for r in ["eu", "us", "ap"] {
        wait_log(&dir, r, "check list updated targets=0");
    }
    let settled = a.requests.load(Ordering::SeqCst);
    // absence has no event: watch for three check intervals
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        a.requests.load(Ordering::SeqCst),
        settled,
        "still probed after the check was removed"
    );
}

/// One `meridian probe` agent for each of eu, us and ap.
fn start_agents(c: &Cluster) -> Vec<Agent> {
    ["eu", "us", "ap"]
        .iter()
        .map(|r| Agent::start(c.dir.path(), r, c))
        .collect()
}

/// Waits (bounded) until `region`'s agent log shows `text`.
fn wait_log(dir: &Path, region: &str, text: &str) {
    let deadline = Instant::now() + BOUND;
    while !std::fs::read_to_string(dir.join(format!("agent-{region}.log")))
        .is_ok_and(|l| l.contains(text))
    {
        assert!(
            Instant::now() < deadline,
            "the {region} agent never logged {text:?}\n{}",
            agent_logs(dir)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn an_agent_outlives_hostile_targets_and_a_cluster_outage() {
    let mut good = Backend::start();
    let steady = Backend::start();
    let redirect = Backend::with(Mode::Redirect, None);
    let hang = Backend::with(Mode::Hang, None);
    let reset = Backend::with(Mode::Reset, None);
    let garbage = Backend::with(Mode::Garbage, None);
    let mut refuse = Backend::start();
    refuse.halt();
    let tls = Backend::self_signed();
    let ep = |id: &str, n: u8, b: &Backend| {
        format!(
            "      - {{id: {id}, address: 192.0.2.{n}, region: eu, check_address: \"{}\"}}\n",
            b.addr()
        )
    };
    let fast = "interval: 1s, timeout: 500ms, rise: 1, fall: 1";
    let seed = format!(
        "zones:\n  glb.example.com:\n    soa: {{rname: hostmaster.example.com.}}\n    ns: [{{name: ns.example.net.}}]\n    steered:\n      - {{name: www, type: A, pool: web, steps: [health], on_all_down: nodata}}\nregions: {{eu: {{}}}}\npools:\n  web:\n    check: {{kind: http, path: /health, expect_status: [2xx], {fast}}}\n    endpoints:\n{}  verified:\n    check: {{kind: https, path: /health, {fast}}}\n    endpoints:\n{}  unverified:\n    check: {{kind: https, path: /health, tls_verify: false, {fast}}}\n    endpoints:\n{}  named:\n    check: {{kind: https, path: /health, host: app.example, tls_verify: false, {fast}}}\n    endpoints:\n{}",
        [
            ep("good", 1, &good),
            ep("steady", 2, &steady),
            ep("redirect", 3, &redirect),
            ep("hang", 4, &hang),
            ep("reset", 5, &reset),
            ep("garbage", 6, &garbage),
            ep("refuse", 7, &refuse),
        ]
        .concat(),
        ep("selfsigned", 8, &tls),
        ep("selfsigned", 9, &tls),
        ep("selfsigned", 10, &tls),
    );
    let mut c = start_cluster(&seed);
    let dir = c.dir.path().to_path_buf();
    let mut agent = Agent::start(&dir, "eu", &c);
    let started = Instant::now();

    // each target gets the verdict it deserves, with the reason
    let expect: [(&str, &str, bool, &str); 10] = [
        ("web", "good", true, ""),
        ("web", "steady", true, ""),
        ("web", "redirect", false, "HTTP status 302 is not expected"),
        ("web", "hang", false, "timed out"),
        ("web", "reset", false, ""),
        ("web", "garbage", false, ""),
        ("web", "refuse", false, ""),
        ("verified", "selfsigned", false, "certificate"),
        ("unverified", "selfsigned", true, ""),
        // SNI and Host name app.example, the connection goes to the target
        ("named", "selfsigned", true, ""),
    ];
    let vote_of = |h: &serde_json::Value, pool: &str, ep: &str| {
        h["endpoints"]
            .as_array()
            .and_then(|a| a.iter().find(|e| e["pool"] == pool && e["endpoint"] == ep))
            .map(|e| e["regions"][0]["vote"].clone())
            .unwrap_or_default()
    };
    wait_health(&c, "every target judged", |h| {
        expect.iter().all(|(pool, ep, up, _)| {
            let v = vote_of(h, pool, ep);
            v["up"] == *up && v["ok"] == *up
        })
    });
    let h = health(&c);
    for (pool, ep, _, why) in expect {
        let v = vote_of(&h, pool, ep);
        let error = v["error"].as_str().unwrap_or_default();
        assert!(error.contains(why), "{pool}/{ep}: {v}");
    }
    let sni = tls.behaviour.lock().expect("lock").sni.clone();
    assert!(sni.iter().any(|n| n == "app.example"), "{sni:?}");
    // the redirect was never followed: one request per probe
    let probes = started.elapsed().as_secs() + 2;
    let redirects = redirect.requests.load(Ordering::SeqCst);
    assert!(redirects <= probes, "{redirects} requests in {probes} s");
    wait_all(&c, &["192.0.2.1", "192.0.2.2"], &dir);

    // the whole cluster goes away; the agent keeps probing and holds what
    // it saw until the cluster is back
    for id in [1, 2, 3] {
        c.kill(id);
    }
    good.halt();
    wait_log(&dir, "eu", "cannot deliver the report");
    wait_log(&dir, "eu", "endpoint=good up=false");
    let probed = steady.requests.load(Ordering::SeqCst);
    while steady.requests.load(Ordering::SeqCst) < probed + 2 {
        assert!(agent.running(), "{}", agent_logs(&dir));
        std::thread::sleep(Duration::from_millis(100));
    }
    for id in [1, 2, 3] {
        c.restart(id);
    }
    c.wait_healthy(1);
    wait_all(&c, &["192.0.2.2"], &dir);
    wait_log(&dir, "eu", "reports delivered again");
    assert!(agent.running(), "{}", agent_logs(&dir));
}
