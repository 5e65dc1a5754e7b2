//! Load generator for `bench/cluster.sh`, run against a live cluster.
//!
//! - `throughput`: N weight changes (`SetWeight`) from C concurrent
//!   clients, sent to the leader's API; reports writes per second and the
//!   latency of each acknowledged write.
//! - `visibility`: writes one at a time; after each acknowledgement, asks
//!   every node's DNS server for the zone's SOA until its serial (the state
//!   version) reaches the write's version; reports the time from the
//!   acknowledgement, and from the request, to visible everywhere.
//!
//! `--via api` sends each weight change as the REST API's
//! `PATCH /v1/pools/{pool}/endpoints/{id}` instead of the cluster API's
//! write.
//!
//! Output: one JSON object on stdout.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use meridian_consensus::{Command, Status};

#[derive(Parser)]
struct Args {
    /// Any node's API address (host:port); the leader is found from it.
    #[arg(long)]
    api: String,
    /// The zone whose SOA serial is watched.
    #[arg(long, default_value = "bench.example.com")]
    zone: String,
    /// The pool and endpoints whose weights are written.
    #[arg(long, default_value = "web")]
    pool: String,
    #[arg(long, value_delimiter = ',', default_value = "a,b")]
    endpoints: Vec<String>,
    /// `cluster` (POST /cluster/write) or `api` (PATCH /v1/...).
    #[arg(long, default_value = "cluster")]
    via: String,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    Throughput {
        #[arg(long)]
        writes: usize,
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
    },
    Visibility {
        #[arg(long)]
        writes: usize,
        /// Every node's DNS address.
        #[arg(long, value_delimiter = ',')]
        dns: Vec<SocketAddr>,
    },
}

fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = Args::parse();
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    // the token the nodes accept writes with (see bench/cluster.sh)
    let mut headers = reqwest::header::HeaderMap::new();
    if let Ok(token) = std::env::var("MERIDIAN_TOKEN") {
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {}", token.trim()).parse()?,
        );
    }
    let client = reqwest::Client::builder()
        .default_headers(headers)
        .build()?;
    let status: Status = client
        .get(format!("http://{}/cluster/status", args.api))
        .send()
        .await?
        .json()
        .await?;
    let leader = status.leader.context("the cluster has no leader")?;
    let leader_addr = &status.members[&leader].addr;
    let url = match args.via.as_str() {
        "cluster" => format!("http://{leader_addr}/cluster/write"),
        "api" => format!("http://{leader_addr}/v1/pools/{}/endpoints/", args.pool),
        other => bail!("--via cluster or api, not {other}"),
    };
    let target = Arc::new((args.pool.clone(), args.endpoints.clone()));
    match args.mode {
        Mode::Throughput {
            writes,
            concurrency,
        } => {
            let next = Arc::new(AtomicUsize::new(0));
            let latencies = Arc::new(Mutex::new(Vec::with_capacity(writes)));
            let start = Instant::now();
            let mut tasks = Vec::new();
            for _ in 0..concurrency {
                let (next, latencies, client, url, target) = (
                    next.clone(),
                    latencies.clone(),
                    client.clone(),
                    url.clone(),
                    target.clone(),
                );
                tasks.push(tokio::spawn(async move {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= writes {
                            return Ok::<_, anyhow::Error>(());
                        }
                        let cmd = set_weight(&target, i);
                        let t = Instant::now();
                        write(&client, &url, &cmd).await?;
                        latencies.lock().expect("lock").push(t.elapsed());
                    }
                }));
            }
            for t in tasks {
                t.await??;
            }
            let secs = start.elapsed().as_secs_f64();
            let mut l = latencies.lock().expect("lock").clone();
            println!(
                "{}",
                serde_json::json!({
                    "writes": writes,
                    "via": args.via,
                    "concurrency": concurrency,
                    "seconds": round(secs),
                    "writes_per_second": round(writes as f64 / secs),
                    "latency_ms": summary(&mut l),
                })
            );
        }
        Mode::Visibility { writes, dns } => {
            let sockets: Vec<UdpSocket> = dns
                .iter()
                .map(|_| {
                    let s = UdpSocket::bind("127.0.0.1:0")?;
                    s.set_read_timeout(Some(Duration::from_millis(200)))?;
                    Ok(s)
                })
                .collect::<std::io::Result<_>>()?;
            let (mut from_ack, mut from_send) = (Vec::new(), Vec::new());
            for i in 0..writes {
                let sent = Instant::now();
                let w = write(&client, &url, &set_weight(&target, i)).await?;
                let acked = Instant::now();
                // truncation is how the serial follows the version
                #[allow(clippy::cast_possible_truncation)]
                let want = w.version as u32;
                let deadline = acked + Duration::from_secs(10);
                for (sock, addr) in sockets.iter().zip(&dns) {
                    while serial(sock, *addr, &args.zone)?.is_none_or(|s| s < want) {
                        if Instant::now() > deadline {
                            bail!("version {want} not visible at {addr} after 10 s");
                        }
                    }
                }
                let visible = Instant::now();
                from_ack.push(visible - acked);
                from_send.push(visible - sent);
            }
            println!(
                "{}",
                serde_json::json!({
                    "writes": writes,
                    "via": args.via,
                    "nodes": dns.len(),
                    "ack_to_visible_everywhere_ms": summary(&mut from_ack),
                    "request_to_visible_everywhere_ms": summary(&mut from_send),
                })
            );
        }
    }
    Ok(())
}

/// The `i`th write: endpoints in turn, weights 1..=1000.
fn set_weight((pool, endpoints): &(String, Vec<String>), i: usize) -> Command {
    Command::SetWeight {
        pool: pool.clone(),
        endpoint: endpoints[i % endpoints.len()].clone(),
        weight: u16::try_from(i % 1000 + 1).expect("below 1001"),
    }
}

/// What a write answered: the state version after it.
#[derive(serde::Deserialize)]
struct Version {
    version: u64,
}

/// Sends one weight change: to the cluster API (`url` ends in
/// `/cluster/write`), or as a PATCH of the endpoint (`url` ends in
/// `/endpoints/`).
async fn write(client: &reqwest::Client, url: &str, cmd: &Command) -> anyhow::Result<Version> {
    let resp = match cmd {
        Command::SetWeight {
            endpoint, weight, ..
        } if url.ends_with('/') => {
            client
                .patch(format!("{url}{endpoint}"))
                .json(&serde_json::json!({ "weight": weight }))
                .send()
                .await?
        }
        _ => client.post(url).json(cmd).send().await?,
    };
    if !resp.status().is_success() {
        bail!("write refused: {} {}", resp.status(), resp.text().await?);
    }
    Ok(resp.json().await?)
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn summary(d: &mut [Duration]) -> serde_json::Value {
    d.sort();
    let ms = |i: usize| round(d[i.min(d.len() - 1)].as_secs_f64() * 1000.0);
    let n = d.len();
    serde_json::json!({
        "median": ms(n / 2),
        "p99": ms(n * 99 / 100),
        "max": ms(n - 1),
    })
}

/// The zone's SOA serial as `addr` serves it, or None on no answer.
fn serial(sock: &UdpSocket, addr: SocketAddr, zone: &str) -> anyhow::Result<Option<u32>> {
    let mut q = vec![0x4d, 0x52, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in zone.trim_end_matches('.').split('.') {
        q.push(u8::try_from(label.len())?);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 6, 0, 1]);
    sock.send_to(&q, addr)?;
    let mut buf = [0u8; 1500];
    let Ok(n) = sock.recv(&mut buf) else {
        return Ok(None);
    };
    let r = &buf[..n];
    if n < 12 || r[..2] != q[..2] || r[6..8] == [0, 0] {
        return Ok(None);
    }
    // question, then the answer's owner, type, class, TTL, length, then
    // the SOA's two names and the serial
    let mut at = skip_name(r, 12)? + 4;
    at = skip_name(r, at)? + 10;
    at = skip_name(r, at)?;
    at = skip_name(r, at)?;
    let serial = r.get(at..at + 4).context("short SOA")?;
    Ok(Some(u32::from_be_bytes(serial.try_into()?)))
}

fn skip_name(r: &[u8], mut at: usize) -> anyhow::Result<usize> {
    loop {
        let len = *r.get(at).context("truncated name")?;
        match len {
            0 => return Ok(at + 1),
            l if l & 0xc0 == 0xc0 => return Ok(at + 2),
            l => at += 1 + usize::from(l),
        }
    }
}
