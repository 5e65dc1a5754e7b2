//! The node config (`meridian.yaml`): where this node listens, where it
//! keeps data, its GeoIP databases, logging, and which zone spec it loads.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::values::U16;
use crate::yaml::{parse_value, Document, Lenient};
use crate::{Diagnostic, Diagnostics};

/// A validated node config. Relative paths are resolved against the
/// directory of the config file.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeConfig {
    pub dns: DnsConfig,
    pub data_dir: PathBuf,
    pub geoip: GeoIpConfig,
    pub log: LogConfig,
    /// The zone spec file this node serves.
    pub zones: PathBuf,
}

/// DNS listener settings.
#[derive(Debug, Clone, PartialEq)]
pub struct DnsConfig {
    /// Each address is served over both UDP and TCP. Port 0 picks a free port
    /// shared by UDP and TCP.
    pub listen: Vec<SocketAddr>,
    /// UDP sockets per address (SO_REUSEPORT); default: one per CPU.
    pub udp_sockets: Option<usize>,
    /// Largest UDP response, whatever the requester advertises (RFC 9715
    /// suggests 1232).
    pub max_udp_payload: u16,
    /// Idle TCP connections are closed after this many seconds.
    pub tcp_idle_timeout_secs: u64,
}

/// Optional MaxMind databases.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GeoIpConfig {
    pub city: Option<PathBuf>,
    pub asn: Option<PathBuf>,
}

/// Log output.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// A `tracing` filter directive: `info`, `debug`, `meridian_dns=debug`…
    pub level: String,
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

pub const DEFAULT_MAX_UDP_PAYLOAD: u16 = 1232;

mod raw {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct NodeConfig {
        #[serde(default)]
        pub dns: Option<Lenient<Dns>>,
        pub data_dir: Option<PathBuf>,
        #[serde(default)]
        pub geoip: Option<Lenient<GeoIp>>,
        #[serde(default)]
        pub log: Option<Lenient<Log>>,
        pub zones: PathBuf,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Dns {
        pub listen: Option<Vec<SocketAddr>>,
        pub udp_sockets: Option<U16>,
        pub max_udp_payload: Option<U16>,
        pub tcp_idle_timeout_secs: Option<U16>,
    }

    #[derive(Debug, Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    pub struct GeoIp {
        pub city: Option<PathBuf>,
        pub asn: Option<PathBuf>,
    }

    #[derive(Debug, Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    pub struct Log {
        pub level: Option<String>,
        #[serde(default)]
        pub format: LogFormat,
    }
}

impl NodeConfig {
    /// Parses and validates a node config; `file` names it in messages and
    /// `base` is the directory relative paths are resolved against.
    pub fn parse(file: &str, text: &str, base: &Path) -> Result<NodeConfig, Diagnostics> {
        let doc = Document::parse(file, text)?;
        let raw: raw::NodeConfig = match parse_value(doc.value.clone()) {
            Ok(r) => r,
            Err(f) => return Err(Diagnostics(vec![doc.parse_error("", &f)])),
        };
        let mut errors: Vec<Diagnostic> = Vec::new();
        let dns = section(&doc, &mut errors, "dns", raw.dns);
        let geoip = section(&doc, &mut errors, "geoip", raw.geoip).unwrap_or_default();
        let log = section(&doc, &mut errors, "log", raw.log).unwrap_or_default();

        let mut dns_config = DnsConfig {
            listen: vec![
                "0.0.0.0:53".parse().expect("valid"),
                "[::]:53".parse().expect("valid"),
            ],
            udp_sockets: None,
            max_udp_payload: DEFAULT_MAX_UDP_PAYLOAD,
            tcp_idle_timeout_secs: 10,
        };
        if let Some(d) = dns {
            if let Some(listen) = d.listen {
                if listen.is_empty() {
                    errors.push(doc.error("dns.listen", "expected at least one address"));
                }
                dns_config.listen = listen;
            }
            if let Some(n) = d.udp_sockets {
                if n.0 == 0 || n.0 > 64 {
                    errors.push(doc.error(
                        "dns.udp_sockets",
                        format!("expected 1..=64 sockets, got {}", n.0),
                    ));
                }
                dns_config.udp_sockets = Some(n.0.into());
            }
            if let Some(p) = d.max_udp_payload {
                if !(512..=4096).contains(&p.0) {
                    errors.push(doc.error(
                        "dns.max_udp_payload",
                        format!("expected a size 512..=4096, got {}", p.0),
                    ));
                }
                dns_config.max_udp_payload = p.0;
            }
            if let Some(t) = d.tcp_idle_timeout_secs {
                if t.0 == 0 {
                    errors
                        .push(doc.error("dns.tcp_idle_timeout_secs", "expected at least 1 second"));
                }
                dns_config.tcp_idle_timeout_secs = t.0.into();
            }
        }
        let level = log.level.unwrap_or_else(|| "info".into());
        if let Err(e) = check_filter(&level) {
            errors.push(doc.error("log.level", e));
        }
        if !errors.is_empty() {
            errors.sort_by_key(|d| (d.line, d.column));
            return Err(Diagnostics(errors));
        }
        Ok(NodeConfig {
            dns: dns_config,
            data_dir: base.join(raw.data_dir.unwrap_or_else(|| PathBuf::from("data"))),
            geoip: GeoIpConfig {
                city: geoip.city.map(|p| base.join(p)),
                asn: geoip.asn.map(|p| base.join(p)),
            },
            log: LogConfig {
                level,
                format: log.format,
            },
            zones: base.join(raw.zones),
        })
    }
}

/// Unwraps an optional section, recording its parse failure.
fn section<T>(
    doc: &Document,
    errors: &mut Vec<Diagnostic>,
    path: &str,
    item: Option<Lenient<T>>,
) -> Option<T> {
    match item? {
        Lenient::Ok(v) => Some(v),
        Lenient::Failed(f) => {
            errors.push(doc.parse_error(path, &f));
            None
        }
    }
}

/// A light check of a `tracing` filter: comma-separated `target=level` or
/// `level` parts with a known level.
fn check_filter(filter: &str) -> Result<(), String> {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    for part in filter.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let level = part.rsplit_once('=').map_or(part, |(_, l)| l);
        if !LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "expected a level (trace, debug, info, warn, error, off) or target=level, got {part:?}"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<NodeConfig, Diagnostics> {
        NodeConfig::parse("meridian.yaml", text, Path::new("/etc/meridian"))
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = parse("zones: zones.yaml\n").unwrap();
        assert_eq!(c.zones, PathBuf::from("/etc/meridian/zones.yaml"));
        assert_eq!(c.dns.max_udp_payload, 1232);
        assert_eq!(c.dns.listen.len(), 2);
        assert_eq!(c.log.format, LogFormat::Text);
        assert_eq!(c.data_dir, PathBuf::from("/etc/meridian/data"));
    }

    #[test]
    fn full_config() {
        let c = parse(
            "dns:\n  listen: [\"127.0.0.1:5300\", \"[::1]:5300\"]\n  udp_sockets: 2\n  max_udp_payload: 1400\ndata_dir: /var/lib/meridian\ngeoip:\n  city: city.mmdb\nlog:\n  level: debug\n  format: json\nzones: /srv/zones.yaml\n",
        )
        .unwrap();
        assert_eq!(c.dns.listen[1], "[::1]:5300".parse().unwrap());
        assert_eq!(c.dns.udp_sockets, Some(2));
        assert_eq!(c.geoip.city, Some(PathBuf::from("/etc/meridian/city.mmdb")));
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/meridian"));
        assert_eq!(c.zones, PathBuf::from("/srv/zones.yaml"));
        assert_eq!(c.log.format, LogFormat::Json);
    }

    #[test]
    fn all_errors_with_positions() {
        let err = parse(
            "dns:\n  listen: [\"nope\"]\nlog:\n  level: loud\n  colour: red\nzones: z.yaml\n",
        )
        .unwrap_err();
        let text = err.to_string();
        assert_eq!(err.0.len(), 2, "{text}");
        assert!(text.contains("meridian.yaml:2:"), "{text}");
        assert!(text.contains("dns.listen[0]"), "{text}");
        assert!(
            text.contains("meridian.yaml:5:3: log.colour: unknown field `colour`"),
            "{text}"
        );
    }

    #[test]
    fn range_checks() {
        let err = parse(
            "dns:\n  max_udp_payload: 100\n  udp_sockets: 0\nlog:\n  level: chatty\nzones: z\n",
        )
        .unwrap_err();
        assert_eq!(err.0.len(), 3, "{err}");
        assert!(parse("zones: z\nextra: 1\n")
            .unwrap_err()
            .to_string()
            .contains("2:1: extra: unknown field"));
        assert!(parse("dns: {}\n")
            .unwrap_err()
            .to_string()
            .contains("missing field `zones`"));
    }
}
