//! Raft clusters of real `meridian serve` processes, each node on its own
//! loopback address (127.0.0.11, .12, ...), written to with the real
//! `meridian cluster` commands and read with `dig`.
//!
//! Every write sets `www.glb.example.com A 192.0.2.V`; the tests keep a log
//! of the writes the client saw acknowledged and check at the end that the
//! cluster serves the last of them (or a later write whose outcome the
//! client could not know).

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::harness::{dig, query_bytes, rcode, Process, BIN};

/// How long any wait in these tests may take before it fails.
pub(crate) const BOUND: Duration = Duration::from_secs(30);

pub(crate) fn host(id: u64) -> String {
    format!("127.0.0.{}", 10 + id)
}

/// A free TCP port on `host` (bound and released; the node binds it next).
pub(crate) fn free_port(host: &str) -> u16 {
    TcpListener::bind((host, 0))
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

pub(crate) fn spec(v: u32) -> String {
    format!(
        "zones:\n  glb.example.com:\n    soa: {{rname: hostmaster.example.com.}}\n    ns: [{{name: ns.example.net.}}]\n    records:\n      - {{name: www, type: A, value: 192.0.2.{v}}}\n"
    )
}

/// What the client learned of a write.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Outcome {
    Acked,
    /// Failed from the client's side: it may or may not apply.
    Unknown,
}

pub(crate) struct Node {
    id: u64,
    pub(crate) api: String,
    config: PathBuf,
    data: PathBuf,
    process: Option<Process>,
}

impl Node {
    pub(crate) fn dns(&self) -> SocketAddr {
        self.process.as_ref().expect("node is running").addr
    }

    pub(crate) fn data_path(&self) -> &Path {
        &self.data
    }

    pub(crate) fn config_path(&self) -> &str {
        self.config.to_str().expect("utf-8 path")
    }
}

/// How the nodes' configs are written.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Tls {
    Off,
    On,
}

pub(crate) struct Cluster {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) nodes: Vec<Node>,
    tls: Tls,
    writes: Vec<(u32, Outcome)>,
}

impl Cluster {
    /// Starts `n` nodes that form a cluster from a shared `members` list,
    /// seeded with write 0.
    fn start(n: u64, tls: Tls) -> Cluster {
        Cluster::start_with(n, tls, &spec(0), "", &[])
    }

    /// Starts `n` nodes seeded with `seed`; `extra` is appended to each
    /// node's config, and `files` (name, content) are written beside them.
    pub(crate) fn start_with(
        n: u64,
        tls: Tls,
        seed: &str,
        extra: &str,
        files: &[(&str, &str)],
    ) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("seed.yaml"), seed).expect("seed");
        for (name, content) in files {
            std::fs::write(dir.path().join(name), content).expect("file");
        }
        if tls == Tls::On {
            write_certs(dir.path(), n + 2);
        }
        write_credentials(dir.path());
        let mut c = Cluster {
            dir,
            nodes: Vec::new(),
            tls,
            writes: vec![(0, Outcome::Acked)],
        };
        let ids: Vec<u64> = (1..=n).collect();
        let apis: Vec<String> = ids
            .iter()
            .map(|id| format!("{}:{}", host(*id), free_port(&host(*id))))
            .collect();
        let members: String = ids
            .iter()
            .zip(&apis)
            .map(|(id, a)| format!("\n    {id}: \"{a}\""))
            .collect();
        for (id, api) in ids.iter().zip(&apis) {
            c.add(*id, api.clone(), &format!("  members:{members}\n"));
            let config = &c.nodes.last().expect("added").config;
            let mut text = std::fs::read_to_string(config).expect("config");
            text.push_str(extra);
            std::fs::write(config, text).expect("config");
        }
        for i in 0..c.nodes.len() {
            c.launch(i);
        }
        c
    }

    /// Writes node `id`'s config (not started yet); `bootstrap` is the
    /// `members` or `join` part of its cluster section.
    fn add(&mut self, id: u64, api: String, bootstrap: &str) {
        let tls = match self.tls {
            Tls::On => format!("  tls: {{cert: n{id}.pem, key: n{id}.key, ca: ca.pem}}\n"),
            Tls::Off => "  secret: cluster.secret\n".into(),
        };
        let config = format!(
            "dns:\n  listen: [\"{}:0\"]\n  udp_sockets: 1\n  rrl: {{enabled: false}}\ndata_dir: data-{id}\nlog:\n  level: info\nzones: seed.yaml\ncluster:\n  id: {id}\n  listen: \"{api}\"\n{bootstrap}{tls}  tokens: tokens\n  heartbeat_ms: 100\n  election_timeout_ms: 500\n  snapshot_every: 5\n  write_timeout_ms: 2000\n",
            host(id)
        );
        let path = self.dir.path().join(format!("n{id}.yaml"));
        std::fs::write(&path, config).expect("config");
        self.nodes.push(Node {
            id,
            api,
            config: path,
            data: self.dir.path().join(format!("data-{id}")),
            process: None,
        });
    }

    /// Adds node `id` on its own loopback address: starts it with
    /// `join:` (it waits) and has the admin add it through node 1.
    pub(crate) fn join_new(&mut self, id: u64) {
        let api = format!("{}:{}", host(id), free_port(&host(id)));
        let join = format!("  join: \"{}\"\n", self.node(1).api);
        self.add(id, api.clone(), &join);
        self.restart(id);
        self.admin_join(id, &api);
    }

    /// The admin's `meridian cluster join` of node `id` at `api`, through
    /// node 1, repeated while it fails for want of time.
    pub(crate) fn admin_join(&self, id: u64, api: &str) {
        let sid = id.to_string();
        // a big state may take longer to arrive than one join waits, and a
        // leader busy sending it may not commit the change in time: the
        // command is safe to repeat (exit 1: try again) until the node is
        // a voter
        let deadline = Instant::now() + BOUND * 2;
        loop {
            let (code, out, err) = self.cli(1, &["join", "--id", &sid, "--addr", api]);
            if code == 0 {
                break;
            }
            assert!(
                Instant::now() < deadline && code == 1,
                "the admin adds node {id}: {out}{err}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn index(&self, id: u64) -> usize {
        self.nodes
            .iter()
            .position(|n| n.id == id)
            .expect("known node")
    }

    pub(crate) fn node(&self, id: u64) -> &Node {
        &self.nodes[self.index(id)]
    }

    fn launch(&mut self, i: usize) {
        let p = Process::spawn(&self.nodes[i].config);
        self.nodes[i].process = Some(p);
    }

    pub(crate) fn restart(&mut self, id: u64) {
        let i = self.index(id);
        self.launch(i);
    }

    pub(crate) fn kill(&mut self, id: u64) {
        let i = self.index(id);
        if let Some(mut p) = self.nodes[i].process.take() {
            p.kill();
        }
    }

    fn running(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|n| n.process.is_some())
            .map(|n| n.id)
            .collect()
    }

    /// Runs `meridian cluster ARGS` against node `via` (its config names
    /// the address and the CA) as the operator: with the admin token, or
    /// under TLS the operator's certificate.
    pub(crate) fn cli(&self, via: u64, args: &[&str]) -> (i32, String, String) {
        let node = self.node(via);
        let mut cmd = std::process::Command::new(BIN);
        cmd.arg("cluster")
            .args(args)
            .arg("--config")
            .arg(&node.config);
        match self.tls {
            Tls::On => cmd
                .arg("--cert")
                .arg(self.dir.path().join("operator.pem"))
                .arg("--key")
                .arg(self.dir.path().join("operator.key")),
            Tls::Off => cmd
                .arg("--token-file")
                .arg(self.dir.path().join("admin.token")),
        };
        let out = cmd.output().expect("run meridian cluster");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Waits until `cluster status` through `via` reports a healthy cluster.
    pub(crate) fn wait_healthy(&self, via: u64) -> String {
        let deadline = Instant::now() + BOUND;
        loop {
            let (code, out, err) = self.cli(via, &["status"]);
            if code == 0 {
                return out;
            }
            assert!(
                Instant::now() < deadline,
                "cluster not healthy:\n{out}\n{err}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The leader `via` knows, once it knows one (healthy or not).
    pub(crate) fn leader(&self, via: u64) -> u64 {
        let deadline = Instant::now() + BOUND;
        loop {
            let (_, out, err) = self.cli(via, &["status"]);
            let leader = out
                .lines()
                .find_map(|l| l.strip_prefix("cluster: leader "))
                .and_then(|rest| rest.split(',').next())
                .and_then(|id| id.parse().ok());
            if let Some(l) = leader {
                return l;
            }
            assert!(Instant::now() < deadline, "no leader:\n{out}{err}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// One `meridian cluster apply` of write `v` through `via`, logged.
    fn apply(&mut self, via: u64, v: u32) -> (i32, String) {
        let file = self.dir.path().join(format!("write-{v}.yaml"));
        std::fs::write(&file, spec(v)).expect("write spec");
        let (code, out, err) = self.cli(via, &["apply", file.to_str().expect("utf-8 path")]);
        let outcome = if code == 0 {
            Outcome::Acked
        } else {
            Outcome::Unknown
        };
        self.writes.push((v, outcome));
        (code, format!("{out}{err}"))
    }

    /// Applies write `v` through any of `via`, retrying (bounded) while the
    /// cluster elects a leader.
    pub(crate) fn apply_until_acked(&mut self, via: &[u64], v: u32) {
        let deadline = Instant::now() + BOUND;
        for attempt in 0.. {
            let node = via[attempt % via.len()];
            let (code, out) = self.apply(node, v);
            if code == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "write {v} never acknowledged: {out}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn answer(&self, id: u64) -> Vec<String> {
        dig(self.node(id).dns(), &["www.glb.example.com", "A"]).answers("A")
    }

    pub(crate) fn wait_answer(&self, id: u64, v: u32) {
        let want = vec![format!("192.0.2.{v}")];
        let deadline = Instant::now() + BOUND;
        loop {
            let got = self.answer(id);
            if got == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {id} answers {got:?}, not {want:?}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every acknowledged write survived: the cluster serves the last
    /// acknowledged write, or a later one whose outcome was unknown.
    pub(crate) fn check_acknowledged_writes(&self, id: u64) {
        let last_acked = self
            .writes
            .iter()
            .rposition(|(_, o)| *o == Outcome::Acked)
            .expect("some write was acknowledged");
        let allowed: Vec<String> = self.writes[last_acked..]
            .iter()
            .map(|(v, _)| format!("192.0.2.{v}"))
            .collect();
        let got = self.answer(id);
        assert!(
            got.len() == 1 && allowed.contains(&got[0]),
            "node {id} answers {got:?}; an acknowledged write is lost (allowed {allowed:?}, log {:?})",
            self.writes
        );
    }

    pub(crate) fn status_json(&self, via: u64) -> serde_json::Value {
        let (_, out, err) = self.cli(via, &["status", "--json"]);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}"))
    }

    pub(crate) fn logs(&self) -> String {
        self.nodes
            .iter()
            .filter_map(|n| {
                n.process
                    .as_ref()
                    .map(|p| format!("--- node {}:\n{}", n.id, p.logs()))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Queries one address over UDP in a loop (each query may take 1 s) until
/// stopped, or for two minutes at most; counts the failures.
struct Querier {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<(u32, Vec<String>)>,
}

impl Querier {
    fn start(addr: SocketAddr) -> Querier {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
            sock.set_read_timeout(Some(Duration::from_secs(1)))
                .expect("timeout");
            let end = Instant::now() + Duration::from_secs(120);
            let (mut ok, mut failures) = (0u32, Vec::new());
            let mut id: u16 = 0;
            let mut buf = [0u8; 1500];
            while !flag.load(Ordering::Relaxed) && Instant::now() < end {
                id = id.wrapping_add(1);
                let q = query_bytes(id, "www.glb.example.com", 1, 0, 1);
                sock.send_to(&q, addr).expect("send");
                // skip late replies to earlier queries
                let reply = loop {
                    match sock.recv(&mut buf) {
                        Ok(n) if n >= 12 && buf[..2] == id.to_be_bytes() => {
                            break Some(buf[..n].to_vec())
                        }
                        Ok(_) => continue,
                        Err(_) => break None,
                    }
                };
                match reply {
                    Some(r) if rcode(&r) == 0 && r[6..8] != [0, 0] => ok += 1,
                    Some(r) => failures.push(format!("query {id}: rcode {}", rcode(&r))),
                    None => failures.push(format!("query {id}: no reply within 1 s")),
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            (ok, failures)
        });
        Querier { stop, thread }
    }

    fn finish(self) -> (u32, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("querier")
    }
}

#[test]
fn three_nodes_replicate_and_survive_a_killed_leader() {
    let mut c = Cluster::start(3, Tls::Off);
    let status = c.wait_healthy(1);
    assert_eq!(status.matches("follower").count(), 2, "{status}");
    assert!(status.contains("health: ok"), "{status}");
    for id in [1, 2, 3] {
        c.wait_answer(id, 0);
    }

    // a write on a follower is forwarded and visible on every node
    let leader = c.leader(1);
    let follower = [1, 2, 3].into_iter().find(|i| *i != leader).unwrap();
    let (code, out) = c.apply(follower, 1);
    assert_eq!(code, 0, "{out}");
    for id in [1, 2, 3] {
        c.wait_answer(id, 1);
    }

    // a server cookie one node gave is valid at the others (returned as
    // it came; an invalid one would be replaced): the secret is the
    // cluster's, replicated through the log
    let client = [0x33u8; 8];
    let name = "www.glb.example.com";
    let cookie = crate::abuse::learn_cookie_at(c.node(1).dns(), name, &client);
    for id in [2, 3] {
        let q = crate::abuse::with_cookie(crate::harness::query_bytes(2, name, 1, 0, 1), &cookie);
        let back = (0..50)
            .filter_map(|_| {
                std::thread::sleep(Duration::from_millis(100));
                crate::harness::udp_exchange(c.node(id).dns(), &q)
            })
            .filter_map(|r| crate::abuse::cookie_of(&r))
            .find(|back| *back == cookie);
        assert!(
            back.is_some(),
            "node {id} did not take node 1's cookie as valid"
        );
    }

    // kill -9 the leader while the survivors are queried continuously
    let survivors: Vec<u64> = [1, 2, 3].into_iter().filter(|i| *i != leader).collect();
    let queriers: Vec<Querier> = survivors
        .iter()
        .map(|id| Querier::start(c.node(*id).dns()))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    c.kill(leader);
    // given at once, through a node that still names the dead leader: it
    // waits out the election and goes to the new leader
    let (code, out) = c.apply(survivors[0], 2);
    assert_eq!(code, 0, "a write right after the leader died: {out}");
    let (code, out) = c.apply(survivors[1], 3);
    assert_eq!(code, 0, "writes continue under the new leader: {out}");
    for id in &survivors {
        c.wait_answer(*id, 3);
    }
    for (id, q) in survivors.iter().zip(queriers) {
        let (ok, failures) = q.finish();
        assert!(
            failures.is_empty(),
            "node {id}: {} of {} queries failed during the failover: {failures:?}",
            failures.len(),
            ok as usize + failures.len()
        );
        assert!(ok > 20, "node {id} answered only {ok} queries");
    }
    let new_leader = c.leader(survivors[0]);
    assert_ne!(new_leader, leader);

    // the killed node comes back and catches up
    c.restart(leader);
    c.wait_answer(leader, 3);
    c.wait_healthy(leader);
    for id in [1, 2, 3] {
        c.check_acknowledged_writes(id);
    }
}

#[test]
fn readyz_flips_when_a_node_is_cut_off_and_back_when_it_returns() {
    let mut c = Cluster::start_with(
        3,
        Tls::Off,
        &spec(0),
        "  api: {ready_stale_ms: 1000}\n",
        &[],
    );
    c.wait_healthy(1);
    let api = c.node(1).api.clone();
    let token = crate::security::token(&c, "read.token");
    let ready = |want: u16| {
        let deadline = std::time::Instant::now() + BOUND;
        loop {
            let (status, body) = crate::harness::http_get(&api, "/readyz", Some(&token));
            if status == want {
                return body;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "/readyz never {want}: {status} {body}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let body = ready(200);
    assert!(body.contains("\"ready\":true"), "{body}");
    // alive, and without a credential neither says anything
    let (status, body) = crate::harness::http_get(&api, "/healthz", Some(&token));
    assert_eq!((status, body.as_str()), (200, "{\"alive\":true}"));
    assert_eq!(crate::harness::http_get(&api, "/readyz", None).0, 401);
    // node 1 alone: no leader, and its state grows stale
    c.kill(2);
    c.kill(3);
    let body = ready(503);
    let why: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(why["ready"], false);
    let reasons = why["reasons"].to_string();
    assert!(
        reasons.contains("no leader") || reasons.contains("over the 1000 ms bound"),
        "{body}"
    );
    // DNS answers throughout, from the last state: ready for DNS traffic
    assert_eq!(c.answer(1), ["192.0.2.0"]);
    let (status, body) = crate::harness::http_get(&api, "/readyz?scope=dns", Some(&token));
    assert_eq!(status, 200, "{body}");
    c.restart(2);
    c.restart(3);
    ready(200);
}

#[test]
fn backup_wipe_and_restore_gives_back_the_same_state() {
    let mut c = Cluster::start(3, Tls::Off);
    c.wait_healthy(1);
    let (code, out) = c.apply(1, 7);
    assert_eq!(code, 0, "{out}");
    for id in [1, 2, 3] {
        c.wait_answer(id, 7);
    }
    let (code, backup, err) = c.cli(2, &["backup"]);
    assert_eq!(code, 0, "{err}");
    let taken: serde_json::Value = serde_json::from_str(&backup).expect("a JSON backup");
    let version = taken["version"].as_u64().expect("version");
    assert!(version >= 2, "{err}");
    let file = c.dir.path().join("backup.json");
    std::fs::write(&file, &backup).expect("write");
    // reading it needs admin: the read token gets 403
    let read = crate::security::token(&c, "read.token");
    let (status, _) = crate::harness::http_get(&c.node(1).api, "/cluster/backup", Some(&read));
    assert_eq!(status, 403);

    // the disaster: every node's data gone; they come back seeded with
    // the file's spec (write 0)
    for id in [1, 2, 3] {
        c.kill(id);
        std::fs::remove_dir_all(c.node(id).data_path()).expect("wipe");
    }
    for id in [1, 2, 3] {
        c.restart(id);
    }
    c.wait_healthy(1);
    for id in [1, 2, 3] {
        c.wait_answer(id, 0);
    }
    let path = file.to_str().expect("utf-8");
    // a cluster with a spec is not overwritten by accident
    let (code, _, err) = c.cli(3, &["restore", path]);
    assert_eq!(code, 1, "refused: {err}");
    assert!(err.contains("has a state already"), "{err}");
    let (code, out, err) = c.cli(3, &["restore", path, "--force"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("restored"), "{out}");
    for id in [1, 2, 3] {
        c.wait_answer(id, 7);
    }
    // the same state: the same spec and tokens, at a version past the
    // backup's
    let (code, again, err) = c.cli(1, &["backup"]);
    assert_eq!(code, 0, "{err}");
    let now: serde_json::Value = serde_json::from_str(&again).expect("JSON");
    assert_eq!(now["state"]["spec"], taken["state"]["spec"]);
    assert_eq!(now["state"]["tokens"], taken["state"]["tokens"]);
    assert!(now["version"].as_u64().expect("version") > version);
    // a file that is no backup changes nothing
    std::fs::write(c.dir.path().join("junk.json"), "{\"format\": \"other\"}").expect("write");
    let junk = c.dir.path().join("junk.json");
    let (code, _, err) = c.cli(1, &["restore", junk.to_str().expect("utf-8"), "--force"]);
    assert_eq!(code, 78, "{err}");
    c.wait_answer(1, 7);
}

#[test]
fn quorum_loss_restarts_and_a_wiped_node_rejoining() {
    let mut c = Cluster::start(3, Tls::Off);
    c.wait_healthy(1);
    // enough writes for snapshots (every 5 entries) and log purging
    for v in 1..=12 {
        let (code, out) = c.apply(1 + u64::from(v) % 3, v);
        assert_eq!(code, 0, "{out}");
    }
    for id in [1, 2, 3] {
        c.wait_answer(id, 12);
    }

    // two of three down: the last node still answers, writes fail clearly
    c.kill(1);
    c.kill(2);
    c.wait_answer(3, 12);
    let (code, out) = c.apply(3, 13);
    assert_eq!(code, 1, "a write without quorum must fail: {out}");
    assert!(
        out.contains("quorum") || out.contains("leader") || out.contains("majority"),
        "{out}"
    );
    c.wait_answer(3, 12);
    let (code, out, _) = c.cli(3, &["status"]);
    assert_eq!(code, 1, "status reports the lost quorum:\n{out}");
    assert!(out.contains("unreachable"), "{out}");

    // one back: writes resume
    c.restart(1);
    c.apply_until_acked(&[3, 1], 14);
    c.wait_answer(1, 14);
    c.wait_answer(3, 14);
    c.restart(2);
    c.wait_answer(2, 14);

    // all three restarted: the state survives intact
    for id in [1, 2, 3] {
        c.kill(id);
    }
    for id in [1, 2, 3] {
        c.restart(id);
    }
    c.wait_healthy(2);
    let serial = |c: &Cluster, id| {
        dig(c.node(id).dns(), &["glb.example.com", "SOA"]).answer[0]
            .data
            .clone()
    };
    for id in [1, 2, 3] {
        c.check_acknowledged_writes(id);
        assert_eq!(serial(&c, id), serial(&c, 1), "node {id}");
    }
    c.apply_until_acked(&[1, 2, 3], 15);

    // node 3 loses its data: it is removed and comes back as node 4,
    // brought up to date through a snapshot (the leader purged its log)
    c.kill(3);
    std::fs::remove_dir_all(&c.node(3).data).expect("wipe");
    let (code, out, err) = c.cli(1, &["leave", "--id", "3"]);
    assert_eq!(code, 0, "{out}{err}");
    let leader = c.leader(1);
    let purged = c.status_json(1)[leader.to_string()]["purged_index"].as_u64();
    assert!(purged.unwrap_or(0) > 0, "the leader purged its log");
    c.join_new(4);
    c.wait_answer(4, 15);
    let status = c.wait_healthy(4);
    let rows: Vec<&str> = status
        .lines()
        .filter(|l| l.starts_with(|c: char| c.is_ascii_digit()))
        .collect();
    assert_eq!(rows.len(), 3, "{status}");
    for (row, id) in rows.iter().zip(["1", "2", "4"]) {
        assert!(row.starts_with(id) && !row.contains("learner"), "{status}");
    }
    let joined = &c.status_json(4)["4"];
    assert!(
        joined["snapshot_index"].as_u64().is_some(),
        "node 4 got a snapshot: {joined}"
    );
    for id in [1, 2, 4] {
        c.check_acknowledged_writes(id);
    }
    assert_eq!(c.running(), [1, 2, 4]);
}

/// Runs the real `meridian` in `dir`, which must succeed; its stdout.
pub(crate) fn meridian(dir: &Path, args: &[&str]) -> String {
    let (code, out, err) = crate::harness::run(args, dir);
    assert_eq!(code, 0, "meridian {args:?}: {out}{err}");
    out
}

/// The cluster secret, and a token file with an admin token
/// (`admin.token`), a read token (`read.token`) and one probe token per
/// test region (`probe-eu.token`, ...), made by the real commands.
fn write_credentials(dir: &Path) {
    meridian(dir, &["token", "secret", "--file", "cluster.secret"]);
    let token = |file: &str, args: &[&str]| {
        let mut all = vec!["token", "new", "--file", "tokens"];
        all.extend_from_slice(args);
        let t = meridian(dir, &all);
        std::fs::write(dir.join(file), t.trim()).expect("token");
    };
    token("admin.token", &["--scope", "admin"]);
    token("read.token", &["--scope", "read"]);
    token("write.token", &["--scope", "write"]);
    for region in ["eu", "us", "ap"] {
        token(
            &format!("probe-{region}.token"),
            &["--scope", "probe", "--region", region],
        );
    }
}

/// Certificates made by `meridian tls`: a CA, one node certificate per
/// node (named for its loopback address), an operator's and an agent's
/// for region eu; and a rogue CA's node certificate for 127.0.0.11.
fn write_certs(dir: &Path, n: u64) {
    meridian(dir, &["tls", "ca", "--dir", "."]);
    for id in 1..=n {
        let name = format!("n{id}");
        meridian(
            dir,
            &[
                "tls",
                "cert",
                "--dir",
                ".",
                "--role",
                "node",
                "--name",
                &name,
                "--host",
                &host(id),
            ],
        );
    }
    meridian(
        dir,
        &[
            "tls", "cert", "--dir", ".", "--role", "operator", "--name", "operator",
        ],
    );
    meridian(
        dir,
        &[
            "tls", "cert", "--dir", ".", "--role", "agent", "--name", "agent-eu", "--region", "eu",
        ],
    );
    meridian(dir, &["tls", "ca", "--dir", "rogue"]);
    meridian(
        dir,
        &[
            "tls",
            "cert",
            "--dir",
            "rogue",
            "--role",
            "node",
            "--name",
            "rogue",
            "--host",
            &host(1),
        ],
    );
    for ext in ["pem", "key"] {
        std::fs::copy(
            dir.join(format!("rogue/rogue.{ext}")),
            dir.join(format!("rogue.{ext}")),
        )
        .expect("copy");
    }
}

#[test]
fn mutual_tls_join_and_an_unreachable_new_node() {
    let mut c = Cluster::start(1, Tls::On);
    c.wait_healthy(1);
    // a node certificate alone does not join: it waits for the admin
    let join = format!("  join: \"{}\"\n", c.node(1).api);
    let api = format!("{}:{}", host(2), free_port(&host(2)));
    c.add(2, api.clone(), &join);
    c.restart(2);
    c.admin_join(2, &api);
    let status = c.wait_healthy(2);
    assert!(status.contains("2 voters"), "{status}");

    // a write on the new node is forwarded to the leader over TLS
    let (code, out) = c.apply(2, 1);
    assert_eq!(code, 0, "{out}");
    c.wait_answer(1, 1);
    c.wait_answer(2, 1);

    // without a certificate, or with one from another CA: refused
    let api = c.node(1).api.clone();
    let plain = crate::harness::run(&["cluster", "status", "--api", &api], c.dir.path());
    assert_eq!(plain.0, 1, "{plain:?}");
    let rogue = c.dir.path().join("rogue.yaml");
    std::fs::write(
        &rogue,
        format!("cluster:\n  id: 9\n  listen: \"{api}\"\n  tls: {{cert: rogue.pem, key: rogue.key, ca: ca.pem}}\n"),
    )
    .expect("write");
    let refused = crate::harness::run(
        &["cluster", "status", "--config", "rogue.yaml", "--api", &api],
        c.dir.path(),
    );
    assert_eq!(refused.0, 1, "{refused:?}");

    // adding a node that is not there fails within its bound, never hangs
    let nowhere = format!("{}:{}", host(9), free_port(&host(9)));
    let (code, out, err) = c.cli(1, &["join", "--id", "9", "--addr", &nowhere]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("has not caught up"), "{err}");
    let (code, out, err) = c.cli(2, &["leave", "--id", "9"]);
    assert_eq!(code, 0, "{out}{err}");
    c.wait_healthy(1);
    c.check_acknowledged_writes(1);
}

/// A spec sent over the API as JSON skips the YAML validator; the leader
/// still refuses one the DNS server cannot index, and nothing changes.
#[test]
fn an_invalid_spec_over_the_api_changes_nothing() {
    use std::io::{Read, Write};
    let c = Cluster::start(1, Tls::Off);
    c.wait_healthy(1);
    c.wait_answer(1, 0);
    let text = format!(
        "{}    steered:\n      - {{name: api, type: A, pool: web, steps: [weighted]}}\npools:\n  web:\n    endpoints: [{{id: a, address: 192.0.2.1, region: eu}}]\n",
        spec(7)
    );
    let mut spec = meridian_config::zone::parse("api.yaml", &text).expect("a valid spec");
    spec.zones[0].steered[0].pool = "missing".into();
    let body = serde_json::to_string(&meridian_consensus::Command::ReplaceSpec(Box::new(spec)))
        .expect("json");
    let api = &c.node(1).api;
    let token = std::fs::read_to_string(c.dir.path().join("admin.token")).expect("token");
    let mut s = std::net::TcpStream::connect(api).expect("connect");
    write!(
        s,
        "POST /cluster/write HTTP/1.1\r\nHost: {api}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut reply = String::new();
    s.read_to_string(&mut reply).expect("reply");
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    assert!(
        reply.contains(r#""code":"invalid""#) && reply.contains("missing"),
        "{reply}"
    );
    c.wait_answer(1, 0);
    let soa = dig(c.node(1).dns(), &["glb.example.com", "SOA"]);
    assert_eq!(soa.answer[0].data.split_whitespace().nth(2), Some("1"));
}
