//! `meridian cluster`: status, health, init, join, leave, apply, backup and
//! restore, sent to one
//! node's API. The node forwards what belongs on the leader.
//!
//! Exit codes: 0 done (for `status`: the cluster is healthy), 1 the
//! cluster refused or could not be reached (for `status`: it is not
//! healthy), 2 bad arguments, 78 an invalid zone spec or TLS file.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use meridian_config::node::TlsConfig;
use meridian_consensus::node::{decode, InitRequest, JoinRequest, LeaveRequest};
use meridian_consensus::state::Backup;
use meridian_consensus::tls::{self, Tls};
use meridian_consensus::{ClusterError, Command, NodeId, Status, Written};
use meridian_probes::health::HealthView;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::cli::{ClusterCommand, Target};
use crate::EXIT_CONFIG;

/// Requests to nodes: one client, the scheme its identity implies.
struct Api {
    client: reqwest::Client,
    scheme: &'static str,
}

impl Api {
    fn url(&self, addr: &str, path: &str) -> String {
        format!("{}://{addr}{path}", self.scheme)
    }

    async fn get<T: DeserializeOwned>(&self, addr: &str, path: &str) -> Result<T, ClusterError> {
        let sent = self
            .client
            .get(self.url(addr, path))
            .timeout(Duration::from_secs(3))
            .send()
            .await;
        decode(sent.map_err(|e| unreachable(addr, &e))?).await
    }

    async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        addr: &str,
        path: &str,
        body: &B,
    ) -> Result<T, ClusterError> {
        let sent = self
            .client
            .post(self.url(addr, path))
            .timeout(Duration::from_secs(90))
            .json(body)
            .send()
            .await;
        decode(sent.map_err(|e| unreachable(addr, &e))?).await
    }
}

pub(crate) fn unreachable(addr: &str, e: &reqwest::Error) -> ClusterError {
    // reqwest's Display hides the cause (refused, TLS rejected...)
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message = format!("{message}: {s}");
        source = s.source();
    }
    ClusterError::Unavailable(format!("cannot reach {addr}: {message}"))
}

/// The identity a command presents: TLS files from the flags, else from
/// the node config; a bearer token from --token-file or MERIDIAN_TOKEN.
pub(crate) fn credentials(
    target: &Target,
    cluster: Option<&meridian_config::node::ClusterConfig>,
) -> Result<(Option<Tls>, Option<String>), String> {
    let from_config = cluster.and_then(|c| c.tls.as_ref());
    let ca = target
        .ca
        .clone()
        .or_else(|| from_config.map(|t| t.ca.clone()));
    let pair = match (&target.cert, &target.key) {
        (Some(c), Some(k)) => Some((c.clone(), k.clone())),
        _ => from_config.map(|t| (t.cert.clone(), t.key.clone())),
    };
    let identity = match (ca, pair) {
        (None, None) => None,
        (Some(ca), Some((cert, key))) => {
            let files = TlsConfig { cert, key, ca };
            Some(Tls::load(&files).map_err(|e| format!("TLS: {e}"))?)
        }
        (None, Some(_)) => return Err("--cert and --key need --ca: the cluster's CA".into()),
        (Some(_), None) => {
            return Err(
                "--ca needs --cert and --key: the cluster requires a client certificate".into(),
            )
        }
    };
    let token = match &target.token_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read --token-file {}: {e}", path.display()))?;
            let t = text.trim().to_string();
            if t.is_empty() {
                return Err(format!("{} holds no token", path.display()));
            }
            Some(t)
        }
        None => std::env::var("MERIDIAN_TOKEN")
            .ok()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty()),
    };
    Ok((identity, token))
}

/// The one-thread runtime a client command runs on; when it cannot start,
/// the exit code, said on stderr.
pub(crate) fn client_runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("meridian: cannot start the runtime: {e}");
            ExitCode::FAILURE
        })
}

pub fn run(target: &Target, command: ClusterCommand) -> ExitCode {
    let node = match &target.config {
        Some(path) => match meridian_config::load_node(path) {
            Ok(n) => Some(n),
            Err(e) => {
                eprintln!("meridian: invalid node config:\n{e}");
                return ExitCode::from(EXIT_CONFIG);
            }
        },
        None => None,
    };
    let cluster = node.as_ref().and_then(|n| n.cluster.as_ref());
    let Some(addr) = target
        .api
        .clone()
        .or_else(|| cluster.map(|c| c.advertise.clone()))
    else {
        eprintln!(
            "meridian: which node? Give --api HOST:PORT, or --config with a `cluster` section"
        );
        return ExitCode::from(2);
    };
    let (identity, token) = match credentials(target, cluster) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("meridian: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let api = Api {
        client: tls::http_client(identity.as_ref(), token.as_deref()),
        scheme: if identity.is_some() { "https" } else { "http" },
    };
    let runtime = match crate::cluster::client_runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    runtime.block_on(async move {
        let done = match command {
            ClusterCommand::Status { json } => return status(&api, &addr, json).await,
            ClusterCommand::Health { json } => return health(&api, &addr, json).await,
            ClusterCommand::Init => api
                .post::<_, ()>(&addr, "/cluster/init", &InitRequest::default())
                .await
                .map(|()| format!("initialized a cluster of one: the node at {addr}")),
            ClusterCommand::Join { id, addr: new } => api
                .post::<_, ()>(
                    &addr,
                    "/cluster/join",
                    &JoinRequest {
                        id,
                        addr: new.clone(),
                    },
                )
                .await
                .map(|()| format!("node {id} at {new} is a voting member")),
            ClusterCommand::Leave { id } => api
                .post::<_, ()>(&addr, "/cluster/leave", &LeaveRequest { id })
                .await
                .map(|()| format!("node {id} has left the cluster")),
            ClusterCommand::Backup => {
                return match api.get::<Backup>(&addr, "/cluster/backup").await {
                    Ok(b) => match serde_json::to_string(&b) {
                        Ok(text) => {
                            out!("{text}");
                            eprintln!(
                                "meridian: backup of state version {} ({} zones, {} pools)",
                                b.version,
                                b.state.spec.zones.len(),
                                b.state.spec.pools.len()
                            );
                            ExitCode::SUCCESS
                        }
                        Err(e) => {
                            eprintln!("meridian: cannot encode the backup: {e}");
                            ExitCode::FAILURE
                        }
                    },
                    Err(e) => {
                        eprintln!("meridian: {e}");
                        ExitCode::FAILURE
                    }
                };
            }
            ClusterCommand::Restore { file, force } => {
                let backup = match std::fs::read_to_string(&file)
                    .map_err(|e| e.to_string())
                    .and_then(|t| Backup::parse(&t))
                {
                    Ok(b) => b,
                    Err(e) => {
                        eprintln!("meridian: {}: {e}; nothing restored", file.display());
                        return ExitCode::from(EXIT_CONFIG);
                    }
                };
                let path = format!("/cluster/restore?force={force}");
                let from = backup.version;
                // straight to the leader: a follower forwards a write of at
                // most WRITE_LIMIT bytes, and a backup of the largest spec
                // is more (the node asked answers when the leader is unknown)
                let to = leader_addr(&api, &addr).await.unwrap_or(addr);
                api.post::<_, Written>(&to, &path, &backup).await.map(|w| {
                    format!(
                        "restored {} (state version {from}): the cluster is at version {}",
                        file.display(),
                        w.version
                    )
                })
            }
            ClusterCommand::Apply { zones } => {
                let spec = match meridian_config::load_zones(&zones) {
                    Ok(s) => s,
                    Err(e) => {
                        eprintln!("meridian: invalid zone spec, nothing applied:\n{e}");
                        return ExitCode::from(EXIT_CONFIG);
                    }
                };
                api.post::<_, Written>(
                    &addr,
                    "/cluster/write",
                    &Command::ReplaceSpec(Box::new(spec)),
                )
                .await
                .map(|w| {
                    format!(
                        "applied {}: state version {} (log index {})",
                        zones.display(),
                        w.version,
                        w.index
                    )
                })
            }
        };
        match done {
            Ok(message) => {
                out!("{message}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("meridian: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// Prints each checked endpoint's verdict and every region's vote.
async fn health(api: &Api, addr: &str, json: bool) -> ExitCode {
    let view: HealthView = match api.get(addr, "/probe/health").await {
        Ok(v) => v,
        Err(e) => {
            eprintln!("meridian: {e}");
            return ExitCode::FAILURE;
        }
    };
    if json {
        out!(
            "{}",
            serde_json::to_string_pretty(&view).unwrap_or_default()
        );
        return ExitCode::SUCCESS;
    }
    print_health(&view);
    ExitCode::SUCCESS
}

/// Each checked endpoint's verdict and every region's vote, as a table.
pub(crate) fn print_health(view: &HealthView) {
    if view.endpoints.is_empty() {
        out!("no pool has a check");
        return;
    }
    out!(
        "{:<12} {:<14} {:<10} {:<9} {:<10} {:>7} {:>9} {:>9} {:>9}  error",
        "POOL",
        "ENDPOINT",
        "VERDICT",
        "REGION",
        "VOTE",
        "AGE",
        "CONNECT",
        "TTFB",
        "RTT~"
    );
    let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}ms"));
    for e in &view.endpoints {
        let verdict = match (e.up, e.in_service) {
            (true, true) => "up",
            (true, false) => "held down",
            (false, _) => "down",
        };
        let verdict = format!("{verdict} q{}", e.quorum);
        for (i, r) in e.regions.iter().enumerate() {
            let (pool, ep, verdict) = if i == 0 {
                (e.pool.as_str(), e.endpoint.as_str(), verdict.as_str())
            } else {
                ("", "", "")
            };
            let (vote, conn, ttfb, rtt, err) = match &r.vote {
                None => ("none".to_string(), None, None, None, String::new()),
                Some(v) => (
                    format!(
                        "{}{}",
                        if v.up { "up" } else { "down" },
                        if r.fresh { "" } else { " stale" }
                    ),
                    v.connect_ms,
                    v.ttfb_ms,
                    v.rtt_ms,
                    // reported text is the agents' word: no terminal
                    // escapes or line breaks reach the operator's screen
                    v.error
                        .as_deref()
                        .unwrap_or_default()
                        .chars()
                        .map(|c| if c.is_control() { '?' } else { c })
                        .collect(),
                ),
            };
            let age = r
                .age_ms
                .map_or("-".to_string(), |a| format!("{:.1}s", a as f64 / 1000.0));
            out!(
                "{pool:<12} {ep:<14} {verdict:<10} {:<9} {vote:<10} {age:>7} {:>9} {:>9} {:>9}  {err}",
                r.region,
                ms(conn),
                ms(ttfb),
                ms(rtt)
            );
        }
    }
}

/// A follower that has not accepted an append for this long is out of
/// touch (the leader sends one every heartbeat).
const STALE_LIMIT_MS: u64 = 5000;

/// The API address of the leader `addr` knows, if it knows one.
async fn leader_addr(api: &Api, addr: &str) -> Option<String> {
    let status: Status = api.get(addr, "/cluster/status").await.ok()?;
    let leader = status.leader?;
    status.members.get(&leader).map(|m| m.addr.clone())
}

/// What the members' views say about whether their states have split:
/// a node that applied entries its leader does not have (a leader holds
/// every committed entry), or two nodes whose versions contradict their
/// applied indexes (the same index at different versions, or more applied
/// at a lower version).
fn divergence(views: &[&Status], leader: Option<NodeId>) -> Vec<String> {
    let mut out: Vec<String> = views
        .iter()
        .filter_map(|s| {
            s.diverged
                .as_ref()
                .map(|why| format!("diverged: node {}: {why}", s.id))
        })
        .collect();
    if let Some(l) = leader.and_then(|l| views.iter().find(|s| s.id == l)) {
        let leader_last = l.last_log_index.unwrap_or(0);
        for s in views {
            let applied = s.applied_index.unwrap_or(0);
            if s.id != l.id && applied > leader_last {
                out.push(format!(
                    "diverged: node {} applied entries up to {applied}, but its leader {} has only up to {leader_last}",
                    s.id, l.id
                ));
            }
        }
    }
    for (i, a) in views.iter().enumerate() {
        for b in &views[i + 1..] {
            let (ai, bi) = (a.applied_index.unwrap_or(0), b.applied_index.unwrap_or(0));
            let split = (ai == bi && a.version != b.version)
                || (ai > bi && a.version < b.version)
                || (bi > ai && b.version < a.version);
            if split {
                out.push(format!(
                    "diverged: node {} is at version {} after entry {ai}, node {} at version {} after entry {bi}",
                    a.id, a.version, b.id, b.version
                ));
            }
        }
    }
    out
}

/// Asks the target, then every member it knows, for their status; prints
/// one row per member. Healthy: a leader every member agrees on, and every
/// member reachable and voting.
async fn status(api: &Api, addr: &str, json: bool) -> ExitCode {
    let first: Status = match api.get(addr, "/cluster/status").await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("meridian: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut views: BTreeMap<NodeId, Result<Status, ClusterError>> = BTreeMap::new();
    for (id, m) in &first.members {
        let view = if *id == first.id {
            Ok(first.clone())
        } else {
            api.get(&m.addr, "/cluster/status").await
        };
        views.insert(*id, view);
    }
    if json {
        let all: BTreeMap<NodeId, serde_json::Value> = views
            .iter()
            .map(|(id, v)| {
                let value = match v {
                    Ok(s) => serde_json::to_value(s).unwrap_or_default(),
                    Err(e) => serde_json::json!({ "error": e.to_string() }),
                };
                (*id, value)
            })
            .collect();
        out!("{}", serde_json::to_string_pretty(&all).unwrap_or_default());
    }
    let leader = first.leader;
    let leader_log = leader
        .and_then(|l| views.get(&l))
        .and_then(|v| v.as_ref().ok())
        .and_then(|s| s.last_log_index);
    let voters = first.members.values().filter(|m| m.voter).count();
    let mut problems = Vec::new();
    if !json {
        match leader {
            Some(l) => out!(
                "cluster: leader {l}, term {}, {voters} voters, {} learners, state version {}",
                first.term,
                first.members.len() - voters,
                first.version
            ),
            None => out!("cluster: no leader (term {})", first.term),
        }
        out!(
            "{:<4} {:<22} {:<10} {:>5} {:>8} {:>8} {:>6} {:>9}",
            "ID",
            "ADDRESS",
            "ROLE",
            "TERM",
            "APPLIED",
            "VERSION",
            "LAG",
            "STALE"
        );
    }
    if leader.is_none() {
        problems.push("no leader".to_string());
    }
    if !first.members.contains_key(&first.id) {
        problems.push(format!(
            "node {} is not a member of a cluster (not initialized, or not joined yet)",
            first.id
        ));
    }
    let reached: Vec<&Status> = views.values().filter_map(|v| v.as_ref().ok()).collect();
    problems.extend(divergence(&reached, leader));
    for (id, view) in &views {
        let member = &first.members[id];
        match view {
            Ok(s) => {
                let lag = match (leader_log, s.applied_index) {
                    (Some(l), a) => l.saturating_sub(a.unwrap_or(0)).to_string(),
                    (None, _) => "?".into(),
                };
                if s.leader != leader {
                    problems.push(format!("node {id} sees leader {:?}", s.leader));
                }
                if !member.voter {
                    problems.push(format!("node {id} is a learner (still joining)"));
                }
                if Some(*id) == leader
                    && voters > 1
                    && s.stale_ms.is_none_or(|ms| ms > STALE_LIMIT_MS)
                {
                    problems.push(format!(
                        "the leader {id} has not heard from a majority {}: nothing can commit",
                        s.stale_ms.map_or("yet".into(), |ms| format!("for {ms} ms"))
                    ));
                }
                if Some(*id) != leader && s.stale_ms.is_none_or(|ms| ms > STALE_LIMIT_MS) {
                    problems.push(format!(
                        "node {id} has not heard from the leader {}",
                        s.stale_ms.map_or("yet".into(), |ms| format!("for {ms} ms"))
                    ));
                }
                if !json {
                    out!(
                        "{:<4} {:<22} {:<10} {:>5} {:>8} {:>8} {:>6} {:>9}",
                        id,
                        member.addr,
                        if member.voter {
                            s.role.as_str()
                        } else {
                            "learner"
                        },
                        s.term,
                        s.applied_index.map_or("-".into(), |i| i.to_string()),
                        s.version,
                        lag,
                        s.stale_ms.map_or("-".into(), |ms| format!("{ms} ms")),
                    );
                }
            }
            Err(e) => {
                problems.push(format!("node {id} unreachable"));
                if !json {
                    out!("{id:<4} {:<22} unreachable: {e}", member.addr);
                }
            }
        }
    }
    if problems.is_empty() {
        if !json {
            out!("health: ok");
        }
        ExitCode::SUCCESS
    } else {
        if !json {
            out!("health: degraded ({})", problems.join("; "));
        }
        ExitCode::FAILURE
    }
}
