//! `meridian probe`: a standalone probe agent for one region, reporting to
//! the cluster over HTTP(S) with a probe token.
//!
//! Exit codes: 0 after SIGINT/SIGTERM, 1 a runtime failure, 78 an
//! unreadable token or TLS file, or a bad region name.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use meridian_config::node::{is_region_name, LogConfig, LogFormat, TlsConfig};
use meridian_consensus::tls::Tls;
use meridian_probes::check::Prober;
use meridian_probes::remote::HttpCluster;
use meridian_probes::{Agent, AgentOptions};
use tracing::info;

use crate::{logging, EXIT_CONFIG};

pub struct Args {
    pub region: String,
    pub cluster: Vec<String>,
    pub token_file: Option<PathBuf>,
    /// CA, certificate, key.
    pub tls: Option<(PathBuf, PathBuf, PathBuf)>,
    pub concurrency: usize,
    /// Where checks may connect.
    pub policy: meridian_config::policy::AddressPolicy,
    pub name: Option<String>,
    pub log: String,
    /// Where to serve /metrics, and the token file that may read it.
    pub metrics: Option<(std::net::SocketAddr, PathBuf)>,
}

pub fn run(args: Args) -> ExitCode {
    logging::init(&LogConfig {
        level: args.log.clone(),
        format: LogFormat::Text,
    });
    let config_error = |m: String| {
        eprintln!("meridian: {m}");
        ExitCode::from(EXIT_CONFIG)
    };
    if !is_region_name(&args.region) {
        return config_error(format!(
            "--region: expected a region name (letters, digits, '.', '_', '-'), got {:?}",
            args.region
        ));
    }
    let token = match &args.token_file {
        None => None,
        Some(path) => match std::fs::read_to_string(path) {
            Ok(t) if t.trim().is_empty() => {
                return config_error(format!("{} holds no token", path.display()))
            }
            Ok(t) => Some(t.trim().to_string()),
            Err(e) => {
                return config_error(format!("cannot read --token-file {}: {e}", path.display()))
            }
        },
    };
    let mut builder = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(2))
        .redirect(reqwest::redirect::Policy::none());
    if let Some((ca, cert, key)) = args.tls {
        match Tls::load(&TlsConfig { cert, key, ca }) {
            Ok(t) => builder = builder.tls_backend_preconfigured((*t.client).clone()),
            Err(e) => return config_error(format!("TLS: {e}")),
        }
    }
    let (client, prober) = match (
        builder.build(),
        Prober::new(Some(&args.region), args.policy.clone()),
    ) {
        (Ok(c), Ok(p)) => (c, p),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("meridian: cannot build the HTTP clients: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut opts = AgentOptions::new(&args.region);
    opts.concurrency = args.concurrency.max(1);
    if let Some(n) = args.name {
        opts.name = n;
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("meridian: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let cluster = Arc::new(HttpCluster::new(args.cluster.clone(), token, client));
    info!(region = %args.region, cluster = ?args.cluster, "probe agent starting");
    println!("meridian: probe agent for region {} started", args.region);
    let agent = Agent::new(cluster, opts, prober);
    let stats = agent.stats();
    if let Some((addr, tokens)) = &args.metrics {
        let listener = match runtime.block_on(tokio::net::TcpListener::bind(addr)) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("meridian: cannot listen on {addr} (--metrics): {e}");
                return ExitCode::FAILURE;
            }
        };
        let creds = match crate::metrics::listener_credentials(Some(tokens), false) {
            Ok(c) => c,
            Err(e) => return config_error(format!("--metrics-tokens: {e}")),
        };
        let counts = crate::metrics::AgentStats {
            region: args.region.clone(),
            stats: stats.clone(),
        };
        let started = std::time::Instant::now();
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let counts = counts.clone();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            crate::metrics::TEXT_FORMAT,
                        )],
                        crate::metrics::render_agent(&counts, started),
                    )
                }
            }),
        );
        let app = meridian_consensus::http::guarded(
            app,
            &creds,
            meridian_consensus::auth::Need::Scope(meridian_consensus::auth::Scope::Read),
        );
        let _entered = runtime.enter();
        crate::metrics::serve_small(listener, app);
        println!("meridian: metrics on {addr}");
    }
    runtime.block_on(async move {
        tokio::select! {
            () = agent.run() => {}
            () = crate::serve::shutdown_signal() => {}
        }
    });
    use std::sync::atomic::Ordering::Relaxed;
    info!(
        probes = stats.probes.load(Relaxed),
        failures = stats.failures.load(Relaxed),
        reports = stats.reports.load(Relaxed),
        "probe agent stopped"
    );
    ExitCode::SUCCESS
}
