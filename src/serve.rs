//! `meridian serve` and `meridian check`: load and validate configuration,
//! bind the DNS listeners, answer from the current snapshot, and swap in a
//! new snapshot when SIGHUP asks for a reload.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use meridian_config::{ConfigError, NodeConfig, ZoneSpec};
use meridian_dns::{Handler, Listeners, Snapshot, SnapshotHandle};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tracing::{error, info};

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use meridian_dns::handler::GeoHandle;

use crate::geoip::{self, GeoSource};
use crate::{logging, EXIT_CONFIG};

/// Where the zone spec comes from.
#[derive(Clone)]
pub enum ZoneSource {
    File(PathBuf),
    /// Built into the binary (`meridian dev`).
    Embedded(&'static str),
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

/// SOA serials: the Unix time of each new state, kept strictly increasing
/// even when two reloads fall in one second or the clock steps back.
struct Serials(AtomicU32);

impl Serials {
    fn next(&self) -> u32 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX));
        let prev = self
            .0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |p| {
                Some(now.max(p.wrapping_add(1)))
            })
            .unwrap_or(0);
        now.max(prev.wrapping_add(1))
    }
}

fn exit_for(e: &ConfigError) -> ExitCode {
    match e {
        ConfigError::Invalid(_) => ExitCode::from(EXIT_CONFIG),
        _ => ExitCode::FAILURE,
    }
}

/// `meridian serve --config FILE`.
pub fn run_from_file(path: &Path) -> ExitCode {
    let node = match meridian_config::load_node(path) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("meridian: invalid node config:\n{e}");
            return exit_for(&e);
        }
    };
    logging::init(&node.log);
    let zones = ZoneSource::File(node.zones.clone());
    let geo = GeoSource::from_config(&node.geoip);
    run(&node, &zones, &geo, |_| {})
}

/// Serves until SIGINT or SIGTERM. `announce` is called once the listeners
/// are bound, with their addresses.
pub fn run(
    node: &NodeConfig,
    zones: &ZoneSource,
    geo_source: &GeoSource,
    announce: impl FnOnce(&[SocketAddr]),
) -> ExitCode {
    let spec = match zones.load() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("meridian: invalid zone spec:\n{e}");
            return exit_for(&e);
        }
    };
    let serials = Serials(AtomicU32::new(0));
    let snapshot = match Snapshot::build(&spec, 1, serials.next()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("meridian: cannot index the zone spec: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let handle = SnapshotHandle::new(snapshot);
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

    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("meridian: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let udp_sockets = node
        .dns
        .udp_sockets
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
    // SIGHUP's default action ends the process: take it over before telling
    // anyone we are up, or a reload right after start would kill the node
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
    info!(addrs = ?listeners.addrs, zones = spec.zones.len(), "serving");
    announce(&listeners.addrs);

    let handler = Handler::new(handle.clone(), geo.clone(), node.dns.max_udp_payload);
    let timeout = Duration::from_secs(node.dns.tcp_idle_timeout_secs);
    let result = runtime.block_on(async move {
        let watcher = tokio::spawn(geoip::watch(geo_source.clone(), geo.clone()));
        let reloader = tokio::spawn(reload_on_hangup(
            hangups,
            zones.clone(),
            handle,
            serials,
            geo_source.clone(),
            geo,
        ));
        let r = meridian_dns::serve(listeners, handler, timeout, shutdown_signal()).await;
        reloader.abort();
        watcher.abort();
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

/// Reloads the zone spec and the GeoIP databases on each SIGHUP. A spec or
/// database that fails to load changes nothing: the current ones keep
/// serving.
async fn reload_on_hangup(
    mut hangups: Signal,
    zones: ZoneSource,
    handle: SnapshotHandle,
    serials: Serials,
    geo_source: GeoSource,
    geo: GeoHandle,
) {
    while hangups.recv().await.is_some() {
        geoip::reload(&geo_source, &geo);
        let current = handle.load();
        let built = zones.load().map_err(|e| e.to_string()).and_then(|spec| {
            Snapshot::build(&spec, current.version + 1, serials.next()).map_err(|e| e.to_string())
        });
        match built {
            Ok(s) => {
                info!(version = s.version, serial = s.serial, "zone spec reloaded");
                handle.publish(s);
            }
            Err(e) => error!(
                serial = current.serial,
                "zone spec reload rejected, still serving the previous spec:\n{e}"
            ),
        }
    }
}

async fn shutdown_signal() {
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
    if let Some(c) = config {
        match meridian_config::load_node(c) {
            Ok(node) => {
                println!("{}: ok", c.display());
                zone_files.insert(0, node.zones);
            }
            Err(e) => {
                eprintln!("{e}");
                ok = false;
            }
        }
    }
    for z in &zone_files {
        match meridian_config::load_zones(z) {
            Ok(spec) => println!("{}: ok ({})", z.display(), summary(&spec)),
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
