//! The `meridian` binary: command line and wiring.
//!
//! # Layout
//!
//! - `cli`: the command line (clap).
//! - `logging`: tracing output, text or JSON, with hickory's per-query
//!   logging turned off.
//! - `serve`: `meridian serve` — load config, start the Raft member, bind,
//!   answer from the replicated state, apply the zone file on SIGHUP.
//! - `cluster`: `meridian cluster` — status, init, join, leave and apply,
//!   through a node's API.
//! - `ctl`: `meridian ctl` — the REST API's client: resources, apply,
//!   weights and drains, health, explain, audit, tokens.
//! - `probe`: `meridian probe` — a probe agent for one region.
//! - `explain`: `meridian explain` — one name, one client, every step.
//! - `dev`: `meridian dev` — `serve` on an embedded example zone, a
//!   generated demo GeoIP database and an embedded probe agent;
//!   `demo`: its demo backends, which can be stopped and started.
//! - `keys`: `meridian tls` and `meridian token` — the CA, role
//!   certificates, bearer tokens and the cluster secret.
//! - `geoip`: loading (into memory) and reloading GeoIP databases.
//!
//! Exit codes: 0 success, 1 runtime failure, 2 bad command line,
//! 78 (EX_CONFIG) invalid configuration.

#![forbid(unsafe_code)]

use std::process::ExitCode;

/// jemalloc: faster than glibc's for a large spec's many small structures,
/// and, with its background thread, it hands their memory back soon after
/// they are dropped.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use clap::Parser;

/// Prints a line to stdout; a closed pipe (`meridian cluster status |
/// head`) ends the process quietly, as SIGPIPE ends other tools, instead
/// of panicking.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if writeln!(std::io::stdout().lock(), $($arg)*).is_err() {
            std::process::exit(141);
        }
    }};
}

mod cli;
mod cluster;
mod ctl;
mod demo;
mod dev;
mod explain;
mod geoip;
mod keys;
mod logging;
mod metrics;
mod probe;
mod serve;
mod status;

/// The configuration was invalid (sysexits' EX_CONFIG).
const EXIT_CONFIG: u8 = 78;

/// Raises the soft limit on open files to the hard limit: connections are
/// capped by the listeners, and a low default would starve them first.
fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
}

fn main() -> ExitCode {
    // every binary installs the rustls provider before anything uses TLS
    let _ = rustls::crypto::ring::default_provider().install_default();
    raise_fd_limit();
    // no transparent huge pages: each would be zeroed whole on first touch
    // and counted whole in memory, for a heap of many small structures
    // that loading a large spec allocates and frees (measured in
    // BENCHMARKS.md, scale)
    #[cfg(target_os = "linux")]
    let _ = nix::sys::prctl::set_thp_disable(true);
    let args = cli::Cli::parse();
    match args.command {
        cli::Command::Serve { config, seed } => serve::run_from_file(&config, seed.as_deref()),
        cli::Command::Cluster { target, command } => cluster::run(&target, command),
        cli::Command::Ctl(args) => ctl::run(args),
        cli::Command::Check { config, zones } => serve::check(config.as_deref(), zones.as_deref()),
        cli::Command::Dev { listen, api, http } => dev::run(listen, api, http),
        cli::Command::Probe {
            region,
            cluster,
            token_file,
            ca,
            cert,
            key,
            concurrency,
            allow,
            deny,
            name,
            log,
            metrics,
            metrics_tokens,
        } => probe::run(probe::Args {
            region,
            cluster,
            token_file,
            tls: ca
                .zip(cert)
                .zip(key)
                .map(|((ca, cert), key)| (ca, cert, key)),
            concurrency,
            policy: meridian_config::policy::AddressPolicy { allow, deny },
            name,
            log,
            metrics: metrics.zip(metrics_tokens),
        }),
        cli::Command::DemoGeoip { dir } => geoip::write_demo(&dir),
        cli::Command::Tls { command } => match command {
            cli::TlsCommand::Ca {
                dir,
                name,
                years,
                force,
            } => keys::tls_ca(&dir, &name, years, force),
            cli::TlsCommand::Cert {
                dir,
                role,
                name,
                hosts,
                regions,
                years,
                force,
            } => keys::tls_cert(&keys::CertRequest {
                dir,
                role,
                name,
                hosts,
                regions,
                years,
                force,
            }),
        },
        cli::Command::Token { command } => match command {
            cli::TokenCommand::New {
                scope,
                regions,
                file,
            } => keys::token_new(&scope, regions, &file),
            cli::TokenCommand::Secret { file, force } => keys::token_secret(&file, force),
        },
        cli::Command::Explain {
            config,
            name,
            rtype,
            client,
            seed,
        } => explain::run(&config, &name, &rtype, client.as_deref(), seed),
    }
}
