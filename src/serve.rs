//! `meridian serve` and `meridian check`: load and validate configuration,
//! start this node's Raft member, bind the DNS listeners and answer from
//! the snapshot the replicated state publishes; SIGHUP applies the zone
//! file through the cluster.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use meridian_config::node::HttpConfig;
use meridian_config::node::{Bootstrap, ClusterConfig};
use meridian_config::policy::AddressPolicy;
use meridian_config::{ConfigError, NodeConfig, ZoneSpec};
use meridian_consensus::auth::{self, Credentials};
use meridian_consensus::http::Limits;
use meridian_consensus::node::SpecCheck;
use meridian_consensus::tls::Tls;
use meridian_consensus::{
    ClusterError, ClusterNode, Command, NodeOptions, ProbeService, ReplicatedState, Timing,
};
use meridian_dns::cookies::Secrets;
use meridian_dns::handler::{CookieHandle, GeoHandle};
use meridian_dns::rrl::{Limits as RrlLimits, Rrl};
use meridian_dns::{Handler, Listeners, Snapshot, SnapshotHandle, TcpLimits};
use meridian_http_fallback::tls::{CertFiles, Certs};
use meridian_probes::check::Prober;
use meridian_probes::{Agent, AgentOptions};
use openraft::ServerState;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tracing::{debug, error, info, warn};

use crate::geoip::{self, GeoSource};
use crate::{logging, EXIT_CONFIG};

/// Where the zone spec comes from.
#[derive(Clone)]
pub enum ZoneSource {
    File(PathBuf),
    /// Built in (`meridian dev`).
    Embedded(Arc<str>),
}

impl ZoneSource {
    fn load(&self) -> Result<ZoneSpec, ConfigError> {
        match self {
            ZoneSource::File(path) => meridian_config::load_zones(path),
            ZoneSource::Embedded(text) => {
                Ok(meridian_config::zone::parse("(built-in zones)", text)?)
            }
        }
    }
}

/// The SOA serial of a state version: the version itself, wrapping as
/// RFC 1982 serial arithmetic allows, so every node serves the same serial
/// for the same state.
fn serial_of(version: u64) -> u32 {
    // truncation is the intent: serials wrap
    #[allow(clippy::cast_possible_truncation)]
    let serial = version as u32;
    serial
}

fn exit_for(e: &ConfigError) -> ExitCode {
    match e {
        ConfigError::Invalid(_) => ExitCode::from(EXIT_CONFIG),
        _ => ExitCode::FAILURE,
    }
}

/// Why `serve` stopped before serving.
struct Failure {
    code: ExitCode,
    message: String,
}

impl Failure {
    fn runtime(message: impl std::fmt::Display) -> Failure {
        Failure {
            code: ExitCode::FAILURE,
            message: message.to_string(),
        }
    }

    fn config(message: impl std::fmt::Display) -> Failure {
        Failure {
            code: ExitCode::from(EXIT_CONFIG),
            message: message.to_string(),
        }
    }
}

/// `meridian serve --config FILE [--seed ZONES]`.
pub fn run_from_file(path: &Path, seed: Option<&Path>) -> ExitCode {
    let node = match meridian_config::load_node(path) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("meridian: invalid node config:\n{e}");
            return exit_for(&e);
        }
    };
    logging::init(&node.log);
    let zones = node.zones.clone().map(ZoneSource::File);
    let seed = seed.map(|p| ZoneSource::File(p.to_path_buf()));
    let geo = GeoSource::from_config(&node.geoip);
    run(&node, zones, seed, &geo, |_| {})
}

/// Loads a zone spec given on the command line or in the config; an
/// invalid one stops the start.
fn load_spec(source: Option<&ZoneSource>) -> Result<Option<ZoneSpec>, ExitCode> {
    match source.map(ZoneSource::load).transpose() {
        Ok(spec) => Ok(spec),
        Err(e) => {
            eprintln!("meridian: invalid zone spec:\n{e}");
            Err(exit_for(&e))
        }
    }
}

/// Where a node listens, once it does.
pub struct Bound {
    pub dns: Vec<SocketAddr>,
    pub api: Option<SocketAddr>,
    pub http: Vec<SocketAddr>,
}

/// Serves until SIGINT or SIGTERM. `announce` is called once the listeners
/// are bound, with their addresses.
///
/// Without a `cluster` section the node is a one-node cluster whose state
/// is the `zones` spec: applied before DNS starts and again on SIGHUP. With
/// one, DNS answers from the local replica from the start; `seed` (or the
/// `zones` file) fills an empty cluster, and SIGHUP applies `zones` to the
/// cluster.
pub fn run(
    node: &NodeConfig,
    zones: Option<ZoneSource>,
    seed: Option<ZoneSource>,
    geo_source: &GeoSource,
    announce: impl FnOnce(&Bound),
) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("meridian: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // SIGHUP's default action ends the process: take it over first, so a
    // reload asked for while the node is still starting (loading a large
    // spec, GeoIP, the store) is held and applied once it serves
    let hangups = {
        let _in_runtime = runtime.enter();
        match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("meridian: cannot listen for SIGHUP: {e}");
                return ExitCode::FAILURE;
            }
        }
    };
    let file_spec = match load_spec(zones.as_ref()) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let seed_spec = match load_spec(seed.as_ref()) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let geo: GeoHandle = match geo_source.load() {
        Ok(g) => {
            if let Some(g) = &g {
                info!(database = %g.describe(), "GeoIP databases loaded");
            }
            Arc::new(ArcSwapOption::from(g.map(Arc::new)))
        }
        Err(e) => {
            eprintln!("meridian: cannot load the GeoIP databases: {e}");
            return ExitCode::FAILURE;
        }
    };
    // the cluster's cookie secrets, as its state machine applies them
    let cookies = CookieHandle::default();
    let rrl = node.dns.rrl.map(|r| {
        Arc::new(Rrl::new(RrlLimits {
            rate: r.rate,
            slip: r.slip,
            ipv4_prefix: r.ipv4_prefix,
            ipv6_prefix: r.ipv6_prefix,
            table_size: r.table_size,
        }))
    });
    // the embedded probe agent's counts, for /metrics once it runs, and
    // the HTTP fallback's
    let agent_stats = Arc::new(std::sync::OnceLock::new());
    let fallback_stats = node
        .http
        .as_ref()
        .map(|_| Arc::new(crate::metrics::FallbackStats::default()));
    let scrapes = Arc::new(crate::metrics::Cache::default());
    let started = runtime.block_on(start(
        node,
        file_spec,
        seed_spec,
        geo.clone(),
        Shared {
            cookies: cookies.clone(),
            rrl: rrl.clone(),
            agent_stats: agent_stats.clone(),
            fallback_stats: fallback_stats.clone(),
            scrapes: scrapes.clone(),
        },
    ));
    let (cluster, handle, probes, api_addr) = match started {
        Ok(s) => s,
        Err(f) => {
            eprintln!("meridian: {}", f.message);
            return f.code;
        }
    };
    if let Some(m) = &node.metrics {
        let sources = crate::metrics::Sources {
            cluster: cluster.clone(),
            snapshots: handle.clone(),
            rrl: rrl.clone(),
            ready_stale: Duration::from_millis(m.ready_stale_ms),
            started: std::time::Instant::now(),
            agent: agent_stats.clone(),
            fallback: fallback_stats.clone(),
            cache: scrapes.clone(),
        };
        if let Err(e) = runtime.block_on(crate::metrics::listen(m, sources)) {
            eprintln!("meridian: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    }
    let udp_sockets = node
        .dns
        .udp_sockets
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
    // the HTTP fallback is bound before DNS says it is up
    let (http_addrs, certs) = match &node.http {
        Some(http) => {
            match runtime.block_on(start_fallback(http, &handle, &geo, fallback_stats.clone())) {
                Ok(started) => started,
                Err(e) => {
                    eprintln!("meridian: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        None => (Vec::new(), None),
    };
    let listeners = match Listeners::bind(&node.dns.listen, udp_sockets) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("meridian: {e}");
            return ExitCode::FAILURE;
        }
    };
    // one line per address on stdout, for scripts and tests to read the port
    {
        let mut out = std::io::stdout().lock();
        for addr in &listeners.addrs {
            let _ = writeln!(out, "meridian: DNS listening on {addr} (udp, tcp)");
        }
        let _ = out.flush();
    }
    info!(addrs = ?listeners.addrs, version = cluster.version(), "serving");
    announce(&Bound {
        dns: listeners.addrs.clone(),
        api: api_addr,
        http: http_addrs,
    });

    // NSID: the configured name, else the cluster node id
    let nsid = node
        .dns
        .nsid
        .clone()
        .unwrap_or_else(|| node.cluster.as_ref().map_or(1, |c| c.id).to_string());
    meridian_dns::stats::set_enabled(node.dns.metrics);
    let handler = Handler::new(handle.clone(), geo.clone(), node.dns.max_udp_payload)
        .with_nsid(nsid.as_bytes())
        .with_cookies(cookies)
        .with_amplification(node.dns.amplification_factor.map(usize::from))
        .with_rrl(rrl);
    if node.dns.cookies.enabled {
        let every = Duration::from_secs(node.dns.cookies.rotate_secs);
        runtime.spawn(cluster.clone().rotate_cookie_secrets(every));
    }
    let tcp = TcpLimits {
        idle_timeout: Duration::from_secs(node.dns.tcp_idle_timeout_secs),
        max_connections: node.dns.tcp.max_connections,
        max_per_client: node.dns.tcp.max_per_client,
        max_queries: node.dns.tcp.max_queries,
    };
    let agent = match &node.probe.region {
        Some(region) => match Prober::new(Some(region), node.probe.policy.clone()) {
            Ok(prober) => {
                info!(%region, "running an embedded probe agent");
                let agent = Agent::new(Arc::new(probes), AgentOptions::new(region), prober);
                let _ = agent_stats.set(crate::metrics::AgentStats {
                    region: region.clone(),
                    stats: agent.stats(),
                });
                Some(runtime.spawn(agent.run()))
            }
            Err(e) => {
                eprintln!("meridian: cannot start the probe agent: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    let result = runtime.block_on(async move {
        let watcher = tokio::spawn(geoip::watch(
            geo_source.clone(),
            geo.clone(),
            handle.clone(),
        ));
        let cert_watcher = certs.clone().map(|c| tokio::spawn(watch_certs(c)));
        let reloader = tokio::spawn(reload_on_hangup(
            hangups,
            zones,
            cluster.clone(),
            geo_source.clone(),
            geo,
            handle,
            certs,
        ));
        let r = meridian_dns::serve(listeners, handler, tcp, shutdown_signal()).await;
        reloader.abort();
        watcher.abort();
        if let Some(w) = cert_watcher {
            w.abort();
        }
        if let Some(a) = agent {
            a.abort();
        }
        cluster.shutdown().await;
        r
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!(%e, "DNS server failed");
            ExitCode::FAILURE
        }
    }
}

/// Who may call this node's API: the token file's hashes, the cluster
/// secret, or nobody checked at all with `insecure`. Files holding keys,
/// tokens or the secret that others can read get a warning.
fn credentials(c: &ClusterConfig) -> Result<(Credentials, Option<String>), Failure> {
    let files = [
        c.tls.as_ref().map(|t| t.key.as_path()),
        c.tokens.as_deref(),
        c.secret.as_deref(),
    ];
    for path in files.into_iter().flatten() {
        if let Some(w) = auth::exposure_warning(path) {
            warn!("{w}");
        }
    }
    if c.insecure {
        warn!(
            "cluster.insecure is set: anyone who reaches {} may read and change the cluster",
            c.listen
        );
        return Ok((Credentials::insecure(), None));
    }
    let tokens = match &c.tokens {
        Some(path) => {
            auth::load_tokens(path).map_err(|e| Failure::config(format!("cluster.tokens: {e}")))?
        }
        None => Vec::new(),
    };
    let secret = match &c.secret {
        Some(path) => Some(
            auth::load_secret(path).map_err(|e| Failure::config(format!("cluster.secret: {e}")))?,
        ),
        None => None,
    };
    let creds = Credentials::new(tokens, secret.as_deref(), false);
    // with TLS, the node's certificate is its identity; the secret, if
    // set, is accepted but not sent
    let send = if c.tls.is_some() { None } else { secret };
    Ok((creds, send))
}

/// The API listener's bounds: requests may take as long as the longest
/// operation (a join waits for the new node to catch up) and then some.
fn limits(c: &ClusterConfig) -> Limits {
    let write = Duration::from_millis(c.write_timeout_ms);
    Limits {
        request_timeout: Some((write * 5 + Duration::from_secs(30)).max(Duration::from_secs(60))),
        ..Limits::default()
    }
}

/// What the node's parts share with its Raft member and API: the cookie
/// secrets it publishes, and the counts `/metrics` reads.
struct Shared {
    cookies: CookieHandle,
    rrl: Option<Arc<Rrl>>,
    agent_stats: Arc<std::sync::OnceLock<crate::metrics::AgentStats>>,
    fallback_stats: Option<Arc<crate::metrics::FallbackStats>>,
    /// The scrape and status view both listeners reuse.
    scrapes: Arc<crate::metrics::Cache>,
}

/// Starts this node's Raft member and returns it with the DNS snapshot
/// handle its state machine publishes to, and its probe service.
async fn start(
    node: &NodeConfig,
    file_spec: Option<ZoneSpec>,
    seed_spec: Option<ZoneSpec>,
    geo: GeoHandle,
    shared: Shared,
) -> Result<
    (
        ClusterNode,
        SnapshotHandle,
        ProbeService,
        Option<SocketAddr>,
    ),
    Failure,
> {
    let handle = SnapshotHandle::with_geo(Snapshot::empty(), geo.clone());
    let publisher = handle.clone();
    // where records that hand over to the HTTP fallback send clients
    let fallback: Vec<std::net::IpAddr> = node
        .http
        .as_ref()
        .map(HttpConfig::advertised)
        .unwrap_or_default();
    let publish_snapshot = move |state: &ReplicatedState| match Snapshot::build_with(
        &state.spec,
        &state.health.observations(&state.spec),
        state.version,
        serial_of(state.version),
        &fallback,
    ) {
        Ok(s) => {
            debug!(version = s.version, "serving a new state");
            publisher.publish(s);
        }
        Err(e) => {
            error!(version = state.version, %e, "cannot index the replicated spec; still serving the previous one")
        }
    };
    let Shared {
        cookies,
        rrl,
        agent_stats,
        fallback_stats,
        scrapes,
    } = shared;
    let cookies_on = node.dns.cookies.enabled;
    let publish = move |state: &ReplicatedState| {
        if cookies_on {
            let s = &state.cookies;
            let secrets = Secrets {
                current: s.current,
                previous: s.previous,
            };
            if **cookies.load() != secrets {
                cookies.store(Arc::new(secrets));
            }
        }
        publish_snapshot(state)
    };
    match &node.cluster {
        None => {
            let cluster = ClusterNode::start(
                NodeOptions {
                    id: 1,
                    data_dir: node.data_dir.clone(),
                    advertise: "127.0.0.1:0".into(),
                    timing: Timing {
                        heartbeat: Duration::from_millis(50),
                        election_timeout: Duration::from_millis(150),
                        ..Timing::default()
                    },
                    tls: None,
                    check_spec: Some(spec_check(node.probe.policy.clone())),
                    // nothing listens: the embedded agent is in-process
                    credentials: Arc::new(Credentials::default()),
                    secret: None,
                    limits: Limits::default(),
                },
                publish,
            )
            .await
            .map_err(Failure::runtime)?;
            let spec = file_spec.expect("the config requires zones without a cluster section");
            settle_single(&cluster, spec).await?;
            let probes = ProbeService::new(cluster.clone());
            Ok((cluster, handle, probes, None))
        }
        Some(c) => {
            let (credentials, secret) = credentials(c)?;
            let tls = match &c.tls {
                Some(files) => Some(
                    Tls::load(files).map_err(|e| Failure::config(format!("cluster.tls: {e}")))?,
                ),
                None => None,
            };
            let cluster = ClusterNode::start(
                NodeOptions {
                    id: c.id,
                    data_dir: node.data_dir.clone(),
                    advertise: c.advertise.clone(),
                    timing: timing(c),
                    tls,
                    check_spec: Some(spec_check(node.probe.policy.clone())),
                    credentials: Arc::new(credentials),
                    secret,
                    limits: limits(c),
                },
                publish,
            )
            .await
            .map_err(Failure::runtime)?;
            let api = tokio::net::TcpListener::bind(c.listen).await.map_err(|e| {
                Failure::runtime(format!(
                    "cannot listen on {} (cluster.listen): {e}",
                    c.listen
                ))
            })?;
            let api_addr = api.local_addr().map_err(Failure::runtime)?;
            let probes = ProbeService::new(cluster.clone());
            let rest = meridian_api::routes(
                meridian_api::Api::new(cluster.clone(), handle.clone(), geo),
                &meridian_api::ApiLimits {
                    max_body_bytes: c.api.max_body_bytes,
                    max_apply_bytes: c.api.max_apply_bytes,
                    max_in_flight: c.api.max_in_flight,
                },
            );
            let metrics = crate::metrics::routes(
                crate::metrics::Sources {
                    cluster: cluster.clone(),
                    snapshots: handle.clone(),
                    rrl: rrl.clone(),
                    ready_stale: Duration::from_millis(c.api.ready_stale_ms),
                    started: std::time::Instant::now(),
                    agent: agent_stats.clone(),
                    fallback: fallback_stats.clone(),
                    cache: scrapes.clone(),
                },
                cluster.credentials().clone(),
                c.api.open_health,
            );
            cluster.serve(api, probes.routes().merge(rest).merge(metrics));
            println!("meridian: API listening on {api_addr}");
            info!(id = c.id, %api_addr, advertise = %c.advertise, "cluster node started");
            match &c.bootstrap {
                Bootstrap::Members(members) => match cluster.init(members.clone()).await {
                    Ok(()) => info!(members = members.len(), "cluster initialized"),
                    Err(ClusterError::Conflict(_)) => {}
                    Err(e) => {
                        return Err(Failure::runtime(format!(
                            "cannot initialize the cluster: {e}"
                        )))
                    }
                },
                Bootstrap::Join(addr) => {
                    tokio::spawn(cluster.clone().join_via(addr.clone()));
                }
                Bootstrap::Manual => {}
            }
            if let Some(spec) = seed_spec.or(file_spec) {
                // a cluster of this node alone serves its spec before it
                // says it is up; others seed once they have a leader
                let alone = matches!(&c.bootstrap, Bootstrap::Members(m)
                    if m.len() == 1 && m.contains_key(&c.id));
                if alone {
                    seed(cluster.clone(), spec).await;
                } else {
                    tokio::spawn(seed(cluster.clone(), spec));
                }
            }
            tokio::spawn(cluster.clone().watch_staleness());
            Ok((cluster, handle, probes, Some(api_addr)))
        }
    }
}

/// What the leader checks before it proposes a spec, however the spec
/// arrived: the typed rules `meridian check` applies, this node's policy
/// on where checks may connect, and that the DNS server can index it.
fn spec_check(policy: AddressPolicy) -> SpecCheck {
    use meridian_config::zone::rules::{Violation, Violations};
    Arc::new(move |spec: &ZoneSpec| {
        // every violation at once, the rules' and the policy's
        let mut found = Vec::new();
        if let Err(v) = meridian_config::zone::rules::check(spec) {
            found.extend(v.0);
        }
        if let Err(v) = meridian_config::policy::spec_targets(spec, &policy) {
            found.extend(v.0);
        }
        if !found.is_empty() {
            return Err(Violations(found));
        }
        Snapshot::build(spec, &Default::default(), 0, 0)
            .map(drop)
            .map_err(|e| {
                Violations(vec![Violation {
                    path: String::new(),
                    message: e.to_string(),
                }])
            })
    })
}

fn timing(c: &ClusterConfig) -> Timing {
    Timing {
        heartbeat: Duration::from_millis(c.heartbeat_ms),
        election_timeout: Duration::from_millis(c.election_timeout_ms),
        snapshot_every: c.snapshot_every,
        snapshot_bytes: c.snapshot_log_mib << 20,
        write_timeout: Duration::from_millis(c.write_timeout_ms),
    }
}

/// A one-node cluster: becomes leader, catches up on its own log, and
/// applies the zone file if the state differs from it.
async fn settle_single(cluster: &ClusterNode, spec: ZoneSpec) -> Result<(), Failure> {
    match cluster.init(BTreeMap::new()).await {
        Ok(()) | Err(ClusterError::Conflict(_)) => {}
        Err(e) => return Err(Failure::runtime(format!("cannot initialize: {e}"))),
    }
    cluster
        .raft()
        .wait(Some(Duration::from_secs(10)))
        .metrics(
            |m| {
                m.state == ServerState::Leader
                    && m.last_applied.map(|l| l.index) >= m.last_log_index
            },
            "leader with its log applied",
        )
        .await
        .map_err(|e| Failure::runtime(format!("the one-node cluster did not start: {e}")))?;
    if cluster.state().spec != spec {
        cluster
            .write(Command::ReplaceSpec(Box::new(spec)))
            .await
            .map_err(|e| Failure::runtime(format!("cannot apply the zone spec: {e}")))?;
    }
    Ok(())
}

/// Fills an empty cluster with `spec` once there is a leader; a cluster
/// that already has a spec keeps it.
async fn seed(cluster: ClusterNode, spec: ZoneSpec) {
    let cmd = Command::SeedSpec(Box::new(spec));
    loop {
        match cluster.write(cmd.clone()).await {
            Ok(w) => {
                info!(version = w.version, "seeded the cluster with the zone spec");
                return;
            }
            Err(ClusterError::Rejected(reason)) => {
                info!(%reason, "seed not needed");
                return;
            }
            Err(ClusterError::Unavailable(e)) => {
                debug!(%e, "no leader yet to seed through; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => {
                error!(%e, "cannot seed the cluster");
                return;
            }
        }
    }
}

/// On each SIGHUP: reloads the GeoIP databases, and applies the zone file
/// (when there is one) through the cluster. A spec that fails to load, or
/// a write that fails, changes nothing: the current state keeps serving.
async fn reload_on_hangup(
    mut hangups: Signal,
    zones: Option<ZoneSource>,
    cluster: ClusterNode,
    geo_source: GeoSource,
    geo: GeoHandle,
    snapshots: SnapshotHandle,
    certs: Option<Arc<Certs>>,
) {
    while hangups.recv().await.is_some() {
        geoip::reload(&geo_source, &geo, &snapshots);
        if let Some(c) = &certs {
            reload_certs(c, "SIGHUP");
        }
        let Some(zones) = &zones else { continue };
        let version = cluster.version();
        match zones.load() {
            Ok(spec) => match cluster.write(reload_change(&cluster, spec)).await {
                Ok(w) => info!(version = w.version, "zone spec reloaded"),
                Err(e) => {
                    error!(version, %e, "zone spec not applied; still serving the previous state")
                }
            },
            Err(e) => error!(
                version,
                "zone spec reload rejected, still serving the previous spec:\n{e}"
            ),
        }
    }
}

/// Binds the HTTP fallback's listeners (HTTPS with its certificates) and
/// serves them; returns the bound addresses and the certificates, for
/// reloading.
async fn start_fallback(
    http: &HttpConfig,
    handle: &SnapshotHandle,
    geo: &GeoHandle,
    stats: Option<Arc<crate::metrics::FallbackStats>>,
) -> Result<(Vec<SocketAddr>, Option<Arc<Certs>>), String> {
    let mut fallback =
        meridian_http_fallback::Fallback::new(handle.clone(), geo.clone(), http.clone())?;
    fallback.observer = stats.map(|s| s as Arc<dyn meridian_http_fallback::Observer>);
    let certs = match &http.tls {
        Some(t) => Some(
            Certs::load(
                t.certs
                    .iter()
                    .map(|(cert, key)| CertFiles {
                        cert: cert.clone(),
                        key: key.clone(),
                    })
                    .collect(),
            )
            .map_err(|e| format!("http.tls.certs: {e}"))?,
        ),
        None => None,
    };
    let plain = http.listen.iter().map(|a| (*a, None, "http.listen"));
    let secure = http.tls.iter().flat_map(|t| {
        t.listen.iter().map(|a| {
            (
                *a,
                certs.as_ref().map(Certs::server_config),
                "http.tls.listen",
            )
        })
    });
    let mut bound = Vec::new();
    for (addr, tls, field) in plain.chain(secure).collect::<Vec<_>>() {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("cannot listen on {addr} ({field}): {e}"))?;
        let at = listener.local_addr().map_err(|e| e.to_string())?;
        let scheme = if tls.is_some() { "HTTPS" } else { "HTTP" };
        println!("meridian: {scheme} fallback listening on {at}");
        bound.push(at);
        tokio::spawn(meridian_http_fallback::serve(
            listener,
            tls,
            fallback.clone(),
        ));
    }
    Ok((bound, certs))
}

/// Reloads the fallback's certificates; a set that does not load is
/// logged and the old one keeps serving.
fn reload_certs(certs: &Certs, why: &str) {
    match certs.reload() {
        Ok(n) => info!(names = n, why, "HTTPS certificates reloaded"),
        Err(e) => {
            error!(why, %e, "HTTPS certificates not reloaded; the previous ones keep serving")
        }
    }
}

/// Reloads the certificates when one of their files changes (the GeoIP
/// databases' watcher).
async fn watch_certs(certs: Arc<Certs>) {
    let paths = || {
        let files = certs.files().iter();
        geoip::files_stamp(files.flat_map(|f| [f.cert.as_path(), f.key.as_path()]))
    };
    geoip::watch_changes(paths, || reload_certs(&certs, "a certificate file changed")).await;
}

/// A reloaded zone file as an audited change of the whole spec.
fn reload_change(cluster: &ClusterNode, spec: ZoneSpec) -> Command {
    use meridian_consensus::resources::{Audit, Change, Op, Resource, Target};
    Command::Api(Box::new(Change {
        target: Target::Spec,
        op: Op::Put(Resource::Spec(Box::new(spec))),
        precondition: Default::default(),
        audit: Audit {
            actor: format!("node {}", cluster.id()),
            token: None,
            action: "SIGHUP: reload the zones file".into(),
            via: Some(format!("node {}", cluster.id())),
        },
        at_ms: 0,
        allow_empty: false,
    }))
}

pub async fn shutdown_signal() {
    let term = async {
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}

/// `meridian check`: validates and lists every error.
pub fn check(config: Option<&Path>, zones: Option<&Path>) -> ExitCode {
    let mut ok = true;
    let mut zone_files: Vec<PathBuf> = zones.map(Path::to_path_buf).into_iter().collect();
    let mut policy = AddressPolicy::default();
    if let Some(c) = config {
        match meridian_config::load_node(c) {
            Ok(node) => {
                println!("{}: ok", c.display());
                policy = node.probe.policy.clone();
                zone_files.splice(0..0, node.zones);
            }
            Err(e) => {
                eprintln!("{e}");
                ok = false;
            }
        }
    }
    for z in &zone_files {
        match meridian_config::load_zones_warned(z) {
            Ok((spec, warnings)) => match meridian_config::policy::spec_targets(&spec, &policy) {
                Ok(()) => {
                    for w in &warnings {
                        eprintln!("warning: {w}");
                    }
                    println!("{}: ok ({})", z.display(), summary(&spec));
                }
                Err(v) => {
                    eprintln!(
                        "{}: checks may not connect where this spec says:\n{v}",
                        z.display()
                    );
                    ok = false;
                }
            },
            Err(e) => {
                eprintln!("{e}");
                ok = false;
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_CONFIG)
    }
}

fn summary(spec: &ZoneSpec) -> String {
    let sets: usize = spec.zones.iter().map(|z| z.records.len()).sum();
    let steered: usize = spec.zones.iter().map(|z| z.steered.len()).sum();
    let endpoints: usize = spec.pools.values().map(|p| p.endpoints.len()).sum();
    format!(
        "{} zones, {sets} record sets, {steered} steered records, {} pools with {endpoints} endpoints",
        spec.zones.len(),
        spec.pools.len()
    )
}
