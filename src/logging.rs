//! Log output: `tracing` to stderr, as text or JSON lines.

use std::io::IsTerminal as _;

use meridian_config::node::{LogConfig, LogFormat};
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. hickory logs every query at `info`, and
/// a malformed one at `warn` (a line per packet anyone can send), and
/// openraft each step of its protocol; those lines are filtered out unless
/// the filter names the crate itself.
pub fn init(config: &LogConfig) {
    let mut filter = config.level.clone();
    if !filter.contains("hickory") {
        filter.push_str(",hickory_server=error,hickory_proto=error,hickory_net=error");
    }
    if !filter.contains("openraft") {
        filter.push_str(",openraft=warn");
    }
    let filter = EnvFilter::try_new(&filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    let _ = match config.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
