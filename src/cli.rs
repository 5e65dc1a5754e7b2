//! The command line.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Meridian: a global load balancer that is the authoritative DNS for your
/// zone and answers each client with the best endpoints for it.
#[derive(Debug, Parser)]
#[command(name = "meridian", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve DNS for the zones in the node config's zone spec.
    ///
    /// SIGHUP reloads the zone spec: a valid one replaces the served zones
    /// atomically, an invalid one is logged and the old one keeps serving.
    Serve {
        /// Node config (meridian.yaml).
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
    },
    /// Validate a node config and its zone spec, listing every error.
    ///
    /// Exits 0 when both are valid, 78 otherwise.
    Check {
        /// Node config (meridian.yaml); its `zones` file is checked too.
        #[arg(long, short, value_name = "FILE", required_unless_present = "zones")]
        config: Option<PathBuf>,
        /// A zone spec to check on its own.
        #[arg(long, value_name = "FILE")]
        zones: Option<PathBuf>,
    },
    /// Serve a built-in example zone (glb.example.com) for trying Meridian.
    Dev {
        /// Where to listen (UDP and TCP).
        #[arg(long, default_value = "127.0.0.1:5300")]
        listen: SocketAddr,
    },
}
