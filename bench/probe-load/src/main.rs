//! Timing and load for `bench/probes.sh`, against real processes: it
//! starts `meridian serve` nodes and `meridian probe` agents on loopback
//! and serves the checked targets itself (HTTP on 127.0.0.1, one port per
//! target; a stopped target closes its listener, so connects are refused,
//! as when its process dies).
//!
//! - `detect`: a target stops; the time until the DNS answers of every
//!   node leave it out, and after it restarts, until every node has it
//!   back. Repeated, each stop at a random phase of the probe schedule.
//! - `capacity`: one agent with N targets: the checks per second the
//!   targets receive, and the agent's CPU and memory.
//! - `raft`: one agent per region, all checking the same endpoints: the
//!   rate of Raft log entries the reports cause, their size, and the
//!   nodes' CPU.
//!
//! Progress goes to stderr; each measurement is one JSON object on stdout.

use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use meridian_probes::{Observation, Report};
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio::sync::watch;

const ZONE: &str = "bench.example.com";
/// The longest any wait for the system under test may take.
const BOUND: Duration = Duration::from_secs(120);

#[derive(Parser)]
struct Args {
    /// The meridian binary.
    #[arg(long, default_value = "target/release/meridian")]
    bin: PathBuf,
    /// Pin the agents to this CPU (with taskset).
    #[arg(long)]
    agent_cpu: Option<usize>,
    /// The nodes' `cluster.snapshot_log_mib` (their default when absent).
    #[arg(long)]
    snapshot_log_mib: Option<u64>,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    Detect {
        #[arg(long, default_value_t = 20)]
        runs: usize,
        #[arg(long, default_value_t = 1000)]
        interval_ms: u64,
        #[arg(long, default_value_t = 3)]
        fall: u16,
        #[arg(long, default_value_t = 2)]
        rise: u16,
        /// Seeds the random phase of each stop.
        #[arg(long, default_value_t = 20_261_123)]
        seed: u64,
    },
    Capacity {
        #[arg(long, default_value_t = 10_000)]
        targets: usize,
        #[arg(long, default_value_t = 1000)]
        interval_ms: u64,
        /// http or tcp.
        #[arg(long, default_value = "http")]
        kind: String,
        /// The measured window, after every target has been checked once.
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        #[arg(long, default_value_t = 512)]
        concurrency: usize,
    },
    Raft {
        #[arg(long, default_value_t = 1000)]
        endpoints: usize,
        #[arg(long, value_delimiter = ',', default_value = "eu,us,ap")]
        regions: Vec<String>,
        #[arg(long, default_value_t = 5000)]
        interval_ms: u64,
        #[arg(long, default_value_t = 60)]
        seconds: u64,
    },
}

fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = Args::parse();
    let rt = Runtime::new()?;
    let dir = tempfile::tempdir()?;
    let bench = Bench {
        // absolute: commands run in the bench directory
        bin: std::fs::canonicalize(&args.bin)?,
        agent_cpu: args.agent_cpu,
        snapshot_log_mib: args.snapshot_log_mib,
        dir: dir.path().to_path_buf(),
        http: reqwest::Client::new(),
        rt,
    };
    let result = match args.mode {
        Mode::Detect {
            runs,
            interval_ms,
            fall,
            rise,
            seed,
        } => bench.detect(runs, interval_ms, fall, rise, seed),
        Mode::Capacity {
            targets,
            interval_ms,
            kind,
            seconds,
            concurrency,
        } => bench.capacity(targets, interval_ms, &kind, seconds, concurrency),
        Mode::Raft {
            endpoints,
            regions,
            interval_ms,
            seconds,
        } => bench.raft(endpoints, &regions, interval_ms, seconds),
    };
    if result.is_err() {
        // keep the processes' logs for a look
        let kept = dir.keep();
        eprintln!("logs kept in {}", kept.display());
    }
    println!("{}", result?);
    Ok(())
}

struct Bench {
    bin: PathBuf,
    agent_cpu: Option<usize>,
    snapshot_log_mib: Option<u64>,
    dir: PathBuf,
    http: reqwest::Client,
    rt: Runtime,
}

/// A child process, killed when dropped.
struct Proc(Child);

impl Proc {
    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Node {
    api: String,
    dns: SocketAddr,
    data: PathBuf,
    proc: Proc,
}

impl Bench {
    fn detect(
        &self,
        runs: usize,
        interval_ms: u64,
        fall: u16,
        rise: u16,
        seed: u64,
    ) -> anyhow::Result<Value> {
        if runs == 0 {
            bail!("--runs: at least one");
        }
        let targets = self.rt.block_on(Targets::start(2))?;
        let check = format!(
            "{{kind: http, path: /health, interval: {interval_ms}ms, timeout: 500ms, rise: {rise}, fall: {fall}}}"
        );
        let regions = ["eu", "us", "ap"];
        let nodes =
            self.start_cluster(3, &regions, &zones(&targets, &regions, &check, "[health]"))?;
        let _agents: Vec<Proc> = regions
            .iter()
            .map(|r| self.start_agent(r, &nodes, 512))
            .collect::<anyhow::Result<_>>()?;
        let gone = Ipv4Addr::from(address(0));
        let kept = Ipv4Addr::from(address(1));
        let name = Name::from_ascii(format!("www.{ZONE}."))?;
        let sock = UdpSocket::bind("127.0.0.1:0")?;
        sock.set_read_timeout(Some(Duration::from_millis(200)))?;
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let (mut detect_all, mut detect_first, mut recover_all) = (vec![], vec![], vec![]);
        for run in 1..=runs {
            // every region votes up, and every node answers both
            self.wait_up_votes(&nodes[0], "e0", regions.len())?;
            wait_answers(&sock, &nodes, &name, |a| {
                a.contains(&gone) && a.contains(&kept)
            })?;
            std::thread::sleep(Duration::from_millis(rng.random_range(0..interval_ms)));

            let stopped = Instant::now();
            targets.set(0, false);
            let seen = wait_answers(&sock, &nodes, &name, |a| {
                !a.contains(&gone) && a.contains(&kept)
            })?;
            let first = seen.iter().map(|t| *t - stopped).min().unwrap_or_default();
            let all = seen.iter().map(|t| *t - stopped).max().unwrap_or_default();

            // the restart, too, at a random phase
            std::thread::sleep(Duration::from_millis(rng.random_range(0..interval_ms)));
            let restarted = Instant::now();
            targets.set(0, true);
            let back = wait_answers(&sock, &nodes, &name, |a| a.contains(&gone))?;
            let back = back
                .iter()
                .map(|t| *t - restarted)
                .max()
                .unwrap_or_default();
            eprintln!(
                "run {run:>2}: gone from the first node after {:>5} ms, from all 3 after {:>5} ms; back in all 3 after {:>5} ms",
                first.as_millis(),
                all.as_millis(),
                back.as_millis()
            );
            detect_first.push(first);
            detect_all.push(all);
            recover_all.push(back);
        }
        Ok(json!({
            "mode": "detect",
            "runs": runs,
            "interval_ms": interval_ms,
            "fall": fall,
            "rise": rise,
            "regions": regions.len(),
            "quorum": 2,
            "target_ms": interval_ms * u64::from(fall) + 1000,
            "stop_to_gone_from_all_nodes_ms": summary(&mut detect_all),
            "stop_to_gone_from_first_node_ms": summary(&mut detect_first),
            "restart_to_back_in_all_nodes_ms": summary(&mut recover_all),
        }))
    }

    fn capacity(
        &self,
        n: usize,
        interval_ms: u64,
        kind: &str,
        seconds: u64,
        concurrency: usize,
    ) -> anyhow::Result<Value> {
        let targets = self.rt.block_on(Targets::start(n))?;
        let path = if kind == "tcp" { "" } else { "path: /health, " };
        let check = format!("{{kind: {kind}, {path}interval: {interval_ms}ms}}");
        let nodes = self.start_cluster(
            1,
            &["eu"],
            &zones(&targets, &["eu"], &check, "[health, {first: 2}]"),
        )?;
        let agent = self.start_agent("eu", &nodes, concurrency)?;
        eprintln!("{n} {kind} targets every {interval_ms} ms: waiting for each to be checked once");
        wait_for(BOUND, "every target checked", || {
            Ok(targets.counts().iter().all(|c| *c > 0))
        })?;
        std::thread::sleep(Duration::from_millis(interval_ms));
        eprintln!("measuring for {seconds} s");
        let tck = clk_tck()?;
        let (c0, a0, n0, t0) = (
            targets.counts(),
            cpu_ticks(agent.pid())?,
            cpu_ticks(nodes[0].proc.pid())?,
            Instant::now(),
        );
        std::thread::sleep(Duration::from_secs(seconds));
        let (c1, a1, n1, secs) = (
            targets.counts(),
            cpu_ticks(agent.pid())?,
            cpu_ticks(nodes[0].proc.pid())?,
            t0.elapsed().as_secs_f64(),
        );
        let per_target: Vec<u64> = c1.iter().zip(&c0).map(|(b, a)| b - a).collect();
        let checks: u64 = per_target.iter().sum();
        let health = self.get(&format!("http://{}/probe/health", nodes[0].api))?;
        let failed = votes(&health).filter(|v| v["vote"]["ok"] == false).count();
        let checks_per_s = checks as f64 / secs;
        let agent_cpu = (a1 - a0) as f64 / tck / secs;
        Ok(json!({
            "mode": "capacity",
            "targets": n,
            "kind": kind,
            "interval_ms": interval_ms,
            "concurrency": concurrency,
            "seconds": round(secs),
            "checks_per_s": round(checks_per_s),
            "scheduled_per_s": round(n as f64 * 1000.0 / interval_ms as f64),
            "per_target_checks_in_window": {
                "min": per_target.iter().min(),
                "max": per_target.iter().max(),
            },
            "last_results_failed": failed,
            "agent_cpu_percent": round(agent_cpu * 100.0),
            "checks_per_agent_cpu_s": round(checks_per_s / agent_cpu.max(1e-9)),
            "agent_rss_mib": round(mem_kib(agent.pid(), "VmRSS")? as f64 / 1024.0),
            "agent_peak_rss_mib": round(mem_kib(agent.pid(), "VmHWM")? as f64 / 1024.0),
            "node_cpu_percent": round((n1 - n0) as f64 / tck / secs * 100.0),
            "node_rss_mib": round(mem_kib(nodes[0].proc.pid(), "VmRSS")? as f64 / 1024.0),
        }))
    }

    fn raft(
        &self,
        n: usize,
        regions: &[String],
        interval_ms: u64,
        seconds: u64,
    ) -> anyhow::Result<Value> {
        let targets = self.rt.block_on(Targets::start(n))?;
        let check = format!("{{kind: http, path: /health, interval: {interval_ms}ms}}");
        let names: Vec<&str> = regions.iter().map(String::as_str).collect();
        let nodes = self.start_cluster(
            3,
            &names,
            &zones(&targets, &names, &check, "[health, {first: 2}]"),
        )?;
        let _agents: Vec<Proc> = names
            .iter()
            .map(|r| self.start_agent(r, &nodes, 512))
            .collect::<anyhow::Result<_>>()?;
        eprintln!(
            "{} regions x {n} endpoints every {interval_ms} ms: waiting for every vote",
            regions.len()
        );
        wait_for(
            BOUND,
            "a fresh vote from every region on every endpoint",
            || {
                let h = self.get(&format!("http://{}/probe/health", nodes[0].api))?;
                Ok(votes(&h).filter(|v| v["fresh"] == true).count() == n * regions.len())
            },
        )?;
        // a whole interval more, so the measured window starts in the
        // steady state
        std::thread::sleep(Duration::from_millis(interval_ms));
        eprintln!("measuring for {seconds} s");
        let tck = clk_tck()?;
        let index = |b: &Bench| -> anyhow::Result<u64> {
            let s = b.get(&format!("http://{}/cluster/status", nodes[0].api))?;
            s["last_log_index"].as_u64().context("no last_log_index")
        };
        let ticks = || -> anyhow::Result<Vec<u64>> {
            nodes.iter().map(|n| cpu_ticks(n.proc.pid())).collect()
        };
        let (i0, cpu0, disk0, t0) = (index(self)?, ticks()?, disk(&nodes), Instant::now());
        // the stores' largest size, sampled every second
        let mut disk_max = disk0.clone();
        while t0.elapsed() < Duration::from_secs(seconds) {
            std::thread::sleep(Duration::from_secs(1));
            for (m, d) in disk_max.iter_mut().zip(disk(&nodes)) {
                *m = (*m).max(d);
            }
        }
        let (i1, cpu1, disk1, secs) = (
            index(self)?,
            ticks()?,
            disk(&nodes),
            t0.elapsed().as_secs_f64(),
        );
        let entries = i1 - i0;
        let status = self.get(&format!("http://{}/cluster/status", nodes[0].api))?;
        // the size of one region's report as its agent sends it, rebuilt
        // from that region's votes as the cluster holds them
        let h = self.get(&format!("http://{}/probe/health", nodes[0].api))?;
        let report_bytes = report_bytes(&h, names[0])?;
        Ok(json!({
            "mode": "raft",
            "regions": regions.len(),
            "endpoints": n,
            "interval_ms": interval_ms,
            "seconds": round(secs),
            "log_entries": entries,
            "log_entries_per_s": round(entries as f64 / secs),
            "expected_per_s": round(regions.len() as f64 * 1000.0 / interval_ms as f64),
            "report_json_bytes": report_bytes,
            "report_bytes_per_s": round(report_bytes as f64 * entries as f64 / secs),
            "node_cpu_percent": cpu1.iter().zip(&cpu0)
                .map(|(b, a)| round((b - a) as f64 / tck / secs * 100.0))
                .collect::<Vec<_>>(),
            "node_rss_mib": nodes.iter()
                .map(|n| mem_kib(n.proc.pid(), "VmRSS").map(|k| round(k as f64 / 1024.0)))
                .collect::<anyhow::Result<Vec<_>>>()?,
            "store_growth_kib": disk1.iter().zip(&disk0)
                .map(|(b, a)| (*b as i64 - *a as i64) / 1024)
                .collect::<Vec<_>>(),
            "store_kib_start_max_end": disk0.iter().zip(&disk_max).zip(&disk1)
                .map(|((a, m), b)| [a / 1024, m / 1024, b / 1024])
                .collect::<Vec<_>>(),
            "node1_log": {
                "last": status["last_log_index"],
                "snapshot": status["snapshot_index"],
                "purged": status["purged_index"],
            },
        }))
    }

    /// Runs `meridian ARGS` in the bench directory; its stdout.
    fn meridian(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new(&self.bin)
            .args(args)
            .current_dir(&self.dir)
            .output()?;
        if !out.status.success() {
            bail!(
                "meridian {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Starts `n` nodes (127.0.0.11, .12, ...) serving `zones`, with the
    /// cluster secret and a token file holding a read token (`read.token`)
    /// and a probe token per region (`probe-REGION.token`), made by the
    /// real commands; waits until each node answers for the zone.
    fn start_cluster(&self, n: usize, regions: &[&str], zones: &str) -> anyhow::Result<Vec<Node>> {
        std::fs::write(self.dir.join("zones.yaml"), zones)?;
        let _ = std::fs::remove_file(self.dir.join("tokens"));
        self.meridian(&["token", "secret", "--file", "cluster.secret", "--force"])?;
        let read = self.meridian(&["token", "new", "--scope", "read", "--file", "tokens"])?;
        std::fs::write(self.dir.join("read.token"), read)?;
        for r in regions {
            let t = self.meridian(&[
                "token", "new", "--scope", "probe", "--region", r, "--file", "tokens",
            ])?;
            std::fs::write(self.dir.join(format!("probe-{r}.token")), t)?;
        }
        let hosts: Vec<String> = (1..=n).map(|id| format!("127.0.0.{}", 10 + id)).collect();
        let apis: Vec<String> = hosts
            .iter()
            .map(|h| {
                Ok(format!(
                    "{h}:{}",
                    StdListener::bind((h.as_str(), 0))?.local_addr()?.port()
                ))
            })
            .collect::<std::io::Result<_>>()?;
        let members: String = apis
            .iter()
            .enumerate()
            .map(|(i, a)| format!("    {}: \"{a}\"\n", i + 1))
            .collect();
        let mut nodes = Vec::new();
        for (i, (host, api)) in hosts.iter().zip(&apis).enumerate() {
            let id = i + 1;
            let dns = UdpSocket::bind((host.as_str(), 0))?.local_addr()?;
            let config = self.dir.join(format!("n{id}.yaml"));
            let budget = self
                .snapshot_log_mib
                .map_or(String::new(), |m| format!("  snapshot_log_mib: {m}\n"));
            std::fs::write(
                &config,
                format!(
                    "dns:\n  listen: [\"{dns}\"]\n  udp_sockets: 1\ndata_dir: data-{id}\nlog: {{level: warn}}\nzones: zones.yaml\ncluster:\n  id: {id}\n  listen: \"{api}\"\n  secret: cluster.secret\n  tokens: tokens\n{budget}  members:\n{members}"
                ),
            )?;
            let log = std::fs::File::create(self.dir.join(format!("n{id}.log")))?;
            let child = Command::new(&self.bin)
                .arg("serve")
                .arg("--config")
                .arg(&config)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .with_context(|| format!("starting {}", self.bin.display()))?;
            nodes.push(Node {
                api: api.clone(),
                dns,
                data: self.dir.join(format!("data-{id}")),
                proc: Proc(child),
            });
        }
        let sock = UdpSocket::bind("127.0.0.1:0")?;
        sock.set_read_timeout(Some(Duration::from_millis(200)))?;
        let name = Name::from_ascii(format!("www.{ZONE}."))?;
        let deadline = Instant::now() + BOUND;
        let mut served = vec![false; nodes.len()];
        while !served.iter().all(|s| *s) {
            for (i, node) in nodes.iter_mut().enumerate() {
                if let Some(code) = node.proc.0.try_wait()? {
                    let log = std::fs::read_to_string(self.dir.join(format!("n{}.log", i + 1)))?;
                    bail!("node {} exited ({code}):\n{log}", i + 1);
                }
                served[i] = served[i] || a_records(&sock, node.dns, &name, 1).is_some();
            }
            if Instant::now() > deadline {
                bail!(
                    "the cluster did not serve the zone within {} s",
                    BOUND.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(nodes)
    }

    fn start_agent(
        &self,
        region: &str,
        nodes: &[Node],
        concurrency: usize,
    ) -> anyhow::Result<Proc> {
        let urls: Vec<String> = nodes.iter().map(|n| format!("http://{}", n.api)).collect();
        let token = self.dir.join(format!("probe-{region}.token"));
        let mut cmd = match self.agent_cpu {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.args(["-c", &cpu.to_string()]).arg(&self.bin);
                c
            }
            None => Command::new(&self.bin),
        };
        let log = std::fs::File::create(self.dir.join(format!("agent-{region}.log")))?;
        let child = cmd
            .args(["probe", "--region", region, "--cluster", &urls.join(",")])
            .args(["--concurrency", &concurrency.to_string(), "--log", "warn"])
            .arg("--token-file")
            .arg(&token)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting meridian probe")?;
        Ok(Proc(child))
    }

    /// Waits until `want` regions vote up on `endpoint`, freshly.
    fn wait_up_votes(&self, node: &Node, endpoint: &str, want: usize) -> anyhow::Result<()> {
        wait_for(BOUND, "fresh up votes", || {
            let h = self.get(&format!("http://{}/probe/health", node.api))?;
            Ok(votes(&h)
                .filter(|v| {
                    v["endpoint"] == endpoint && v["fresh"] == true && v["vote"]["up"] == true
                })
                .count()
                == want)
        })
    }

    fn get(&self, url: &str) -> anyhow::Result<Value> {
        self.rt.block_on(async {
            let token = std::fs::read_to_string(self.dir.join("read.token"))?;
            let r = self
                .http
                .get(url)
                .bearer_auth(token.trim())
                .send()
                .await?
                .error_for_status()?;
            Ok(r.json().await?)
        })
    }
}

/// Every region's vote in a health view, each with its endpoint's name.
fn votes(health: &Value) -> impl Iterator<Item = Value> + '_ {
    health["endpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|e| {
            e["regions"].as_array().into_iter().flatten().map(|r| {
                let mut r = r.clone();
                r["endpoint"] = e["endpoint"].clone();
                r["pool"] = e["pool"].clone();
                r
            })
        })
}

/// `region`'s votes as the report its agent sends, serialized as the
/// agent serializes it.
fn report_bytes(health: &Value, region: &str) -> anyhow::Result<usize> {
    let mut agent = String::new();
    let mut observations = Vec::new();
    for v in votes(health).filter(|v| v["region"] == region) {
        let vote = &v["vote"];
        agent = vote["agent"].as_str().unwrap_or_default().to_string();
        observations.push(Observation {
            pool: v["pool"].as_str().unwrap_or_default().to_string(),
            endpoint: v["endpoint"].as_str().unwrap_or_default().to_string(),
            up: vote["up"] == true,
            ok: vote["ok"] == true,
            connect_ms: vote["connect_ms"].as_f64(),
            ttfb_ms: vote["ttfb_ms"].as_f64(),
            error: vote["error"].as_str().map(String::from),
        });
    }
    let report = Report {
        region: region.to_string(),
        agent,
        observations,
    };
    Ok(serde_json::to_vec(&report)?.len())
}

/// The address answered for endpoint `i`: 198.18.0.0/15 (benchmarking).
fn address(i: usize) -> [u8; 4] {
    let i = u32::try_from(i).expect("fewer than 2^17 endpoints") + 1;
    let [_, b, c, d] = (0xc612_0000u32 + i).to_be_bytes();
    [198, b, c, d]
}

/// The zone: `www` steered over pool `web`, one endpoint per target,
/// each checked at its target.
fn zones(targets: &Targets, regions: &[&str], check: &str, steps: &str) -> String {
    let mut y = format!(
        "zones:\n  {ZONE}:\n    soa: {{rname: hostmaster.example.com.}}\n    ns: [{{name: ns.example.net.}}]\n    steered:\n      - {{name: www, type: A, pool: web, steps: {steps}, on_all_down: nodata}}\nregions:\n"
    );
    for r in regions {
        y.push_str(&format!("  {r}: {{}}\n"));
    }
    y.push_str(&format!(
        "pools:\n  web:\n    check: {check}\n    endpoints:\n"
    ));
    for (i, port) in targets.ports.iter().enumerate() {
        let [a, b, c, d] = address(i);
        y.push_str(&format!(
            "      - {{id: e{i}, address: {a}.{b}.{c}.{d}, region: {}, check_address: \"127.0.0.1:{port}\"}}\n",
            regions[0]
        ));
    }
    y
}

/// Polls every node's A answer for `name` until `done` holds for it;
/// returns when each did.
fn wait_answers(
    sock: &UdpSocket,
    nodes: &[Node],
    name: &Name,
    done: impl Fn(&[Ipv4Addr]) -> bool,
) -> anyhow::Result<Vec<Instant>> {
    let start = Instant::now();
    let mut seen: Vec<Option<Instant>> = vec![None; nodes.len()];
    let mut id = 0u16;
    while seen.iter().any(Option::is_none) {
        for (node, seen) in nodes
            .iter()
            .zip(seen.iter_mut())
            .filter(|(_, s)| s.is_none())
        {
            id = id.wrapping_add(1);
            if a_records(sock, node.dns, name, id).is_some_and(|a| done(&a)) {
                *seen = Some(Instant::now());
            }
        }
        if start.elapsed() > BOUND {
            bail!("the answers did not change within {} s", BOUND.as_secs());
        }
        // about 1 ms resolution, without taking a core from the nodes
        std::thread::sleep(Duration::from_micros(500));
    }
    Ok(seen.into_iter().flatten().collect())
}

/// The A records `server` answers for `name`; None without a NOERROR
/// answer.
fn a_records(sock: &UdpSocket, server: SocketAddr, name: &Name, id: u16) -> Option<Vec<Ipv4Addr>> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(name.clone(), RecordType::A));
    sock.send_to(&m.to_vec().ok()?, server).ok()?;
    let mut buf = [0u8; 4096];
    loop {
        let n = sock.recv(&mut buf).ok()?;
        let Ok(r) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        // a late answer to an earlier query is skipped
        if r.metadata.id != id {
            continue;
        }
        if r.metadata.response_code != ResponseCode::NoError {
            return None;
        }
        return Some(
            r.answers
                .iter()
                .filter_map(|rec| match &rec.data {
                    RData::A(a) => Some(a.0),
                    _ => None,
                })
                .collect(),
        );
    }
}

fn wait_for(
    bound: Duration,
    what: &str,
    mut ok: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + bound;
    loop {
        if ok().unwrap_or(false) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("never {what} within {} s", bound.as_secs());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// HTTP targets on 127.0.0.1, one port each, counting connections.
struct Targets {
    ports: Vec<u16>,
    counts: Arc<Vec<AtomicU64>>,
    up: Vec<watch::Sender<bool>>,
}

impl Targets {
    async fn start(n: usize) -> anyhow::Result<Targets> {
        let counts: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
        let (mut ports, mut up) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for i in 0..n {
            let l = TcpListener::bind("127.0.0.1:0")
                .await
                .with_context(|| format!("binding target {i} (raise `ulimit -n`?)"))?;
            ports.push(l.local_addr()?.port());
            let (tx, rx) = watch::channel(true);
            tokio::spawn(serve_target(l, i, counts.clone(), rx));
            up.push(tx);
        }
        Ok(Targets { ports, counts, up })
    }

    /// Starts or stops target `i`.
    fn set(&self, i: usize, up: bool) {
        self.up[i].send_replace(up);
    }

    fn counts(&self) -> Vec<u64> {
        self.counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect()
    }
}

/// Accepts while up; when stopped, closes the listener (connects are
/// refused) and binds the same port again when started.
async fn serve_target(
    first: TcpListener,
    i: usize,
    counts: Arc<Vec<AtomicU64>>,
    mut up: watch::Receiver<bool>,
) {
    let Ok(addr) = first.local_addr() else { return };
    let mut listener = Some(first);
    loop {
        match listener.take() {
            Some(l) => {
                tokio::select! {
                    a = l.accept() => {
                        if let Ok((s, _)) = a {
                            counts[i].fetch_add(1, Ordering::Relaxed);
                            tokio::spawn(respond(s));
                        }
                        listener = Some(l);
                    }
                    r = up.changed() => {
                        if r.is_err() {
                            return;
                        }
                        if *up.borrow_and_update() {
                            listener = Some(l);
                        }
                    }
                }
            }
            None => {
                if up.changed().await.is_err() {
                    return;
                }
                if *up.borrow_and_update() {
                    match TcpListener::bind(addr).await {
                        Ok(l) => listener = Some(l),
                        Err(e) => {
                            eprintln!("target {i}: cannot listen on {addr} again: {e}");
                            return;
                        }
                    }
                }
            }
        }
    }
}

/// Reads a request head and answers 200; a tcp check just closes.
async fn respond(mut s: TcpStream) {
    let mut buf = [0u8; 2048];
    let mut got = 0;
    let head = async {
        while got < buf.len() {
            let n = s.read(&mut buf[got..]).await?;
            if n == 0 {
                return Ok(false);
            }
            got += n;
            if buf[..got].windows(4).any(|w| w == b"\r\n\r\n") {
                return Ok(true);
            }
        }
        Ok::<_, std::io::Error>(true)
    };
    if let Ok(Ok(true)) = tokio::time::timeout(Duration::from_secs(2), head).await {
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\nconnection: close\r\n\r\nok\n")
            .await;
        let _ = s.shutdown().await;
    }
}

fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // fields after the command name, which may hold spaces
    let rest = stat.rsplit_once(')').context("odd /proc stat")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    Ok(f[11].parse::<u64>()? + f[12].parse::<u64>()?)
}

fn mem_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .with_context(|| format!("no {field}"))?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("no value")?
        .parse()?)
}

fn clk_tck() -> anyhow::Result<f64> {
    let out = Command::new("getconf").arg("CLK_TCK").output()?;
    Ok(String::from_utf8(out.stdout)?.trim().parse()?)
}

/// Bytes under each node's Raft store.
fn disk(nodes: &[Node]) -> Vec<u64> {
    fn size(p: &Path) -> u64 {
        match std::fs::metadata(p) {
            Ok(m) if m.is_dir() => std::fs::read_dir(p)
                .map(|d| d.flatten().map(|e| size(&e.path())).sum())
                .unwrap_or(0),
            Ok(m) => m.len(),
            Err(_) => 0,
        }
    }
    nodes.iter().map(|n| size(&n.data.join("raft"))).collect()
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn summary(d: &mut [Duration]) -> Value {
    d.sort();
    let ms = |x: Duration| round(x.as_secs_f64() * 1000.0);
    let n = d.len();
    json!({
        "min": ms(d[0]),
        "median": ms(if n % 2 == 1 { d[n / 2] } else { (d[n / 2 - 1] + d[n / 2]) / 2 }),
        "max": ms(d[n - 1]),
        "values": d.iter().map(|x| ms(*x)).collect::<Vec<_>>(),
    })
}
