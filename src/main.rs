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
//! - `probe`: `meridian probe` — a probe agent for one region.
//! - `explain`: `meridian explain` — one name, one client, every step.
//! - `dev`: `meridian dev` — `serve` on an embedded example zone, a
//!   generated demo GeoIP database and an embedded probe agent;
//!   `demo`: its demo backends, which can be stopped and started.
//! - `geoip`: loading, memory-mapping and reloading GeoIP databases.
//!
//! Exit codes: 0 success, 1 runtime failure, 2 bad command line,
//! 78 (EX_CONFIG) invalid configuration.

// one exception, in `geoip::map`: memory-mapping GeoIP databases
#![deny(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;

mod cli;
mod cluster;
mod demo;
mod dev;
mod explain;
mod geoip;
mod logging;
mod probe;
mod serve;

/// The configuration was invalid (sysexits' EX_CONFIG).
const EXIT_CONFIG: u8 = 78;

fn main() -> ExitCode {
    // every binary installs the rustls provider before anything uses TLS
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = cli::Cli::parse();
    match args.command {
        cli::Command::Serve { config, seed } => serve::run_from_file(&config, seed.as_deref()),
        cli::Command::Cluster { target, command } => cluster::run(&target, command),
        cli::Command::Check { config, zones } => serve::check(config.as_deref(), zones.as_deref()),
        cli::Command::Dev { listen } => dev::run(listen),
        cli::Command::Probe {
            region,
            cluster,
            token_file,
            ca,
            cert,
            key,
            concurrency,
            name,
            log,
        } => probe::run(probe::Args {
            region,
            cluster,
            token_file,
            tls: ca
                .zip(cert)
                .zip(key)
                .map(|((ca, cert), key)| (ca, cert, key)),
            concurrency,
            name,
            log,
        }),
        cli::Command::DemoGeoip { dir } => geoip::write_demo(&dir),
        cli::Command::Explain {
            config,
            name,
            rtype,
            client,
            seed,
        } => explain::run(&config, &name, &rtype, client.as_deref(), seed),
    }
}
