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
    /// The zone spec file: without `cluster`, the spec this node serves
    /// (applied at start and on SIGHUP); with `cluster`, it seeds an empty
    /// cluster and SIGHUP applies it to the cluster.
    pub zones: Option<PathBuf>,
    /// Raft cluster membership; `None` runs a one-node cluster.
    pub cluster: Option<ClusterConfig>,
    pub probe: ProbeConfig,
    /// The HTTP fallback: `None` serves none.
    pub http: Option<HttpConfig>,
    /// A listener of its own for `/metrics`, `/healthz` and `/readyz`
    /// (`metrics`): how a node without a `cluster` section shows them.
    pub metrics: Option<MetricsConfig>,
}

/// The metrics listener (`metrics`).
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsConfig {
    pub listen: SocketAddr,
    /// Token file (`meridian token new --scope read --file F`) of who may
    /// read them; `None` only with `insecure`.
    pub tokens: Option<PathBuf>,
    /// `/healthz` and `/readyz` without a credential.
    pub open_health: bool,
    /// `/readyz` says not ready past this much staleness (ms).
    pub ready_stale_ms: u64,
    /// No credential checked at all (logged at start).
    pub insecure: bool,
}

/// The HTTP fallback (`http`): where it listens and how it redirects.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpConfig {
    /// Plain-HTTP listeners.
    pub listen: Vec<SocketAddr>,
    /// The redirect's status: 302, 307 (default) or 308.
    pub status: u16,
    /// Peers whose `X-Forwarded-For` / `Forwarded` is believed: the client
    /// is then the right-most address in it that is not one of these.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The header the trusted proxies write: `x-forwarded-for` (default)
    /// or `forwarded`; the other is ignored.
    pub forwarded_header: String,
    /// Say which endpoint was chosen (`X-Meridian-Endpoint`; default on).
    pub endpoint_header: bool,
    /// `Retry-After` of a 503 when no endpoint is in service (seconds).
    pub retry_after_secs: u32,
    /// The body of that 503: an HTML (`.html`) or text file, read at
    /// start; default a line of text.
    pub unavailable_page: Option<PathBuf>,
    /// HTTPS listeners and their certificates.
    pub tls: Option<HttpTlsConfig>,
    /// The addresses DNS gives clients that a record hands over to the
    /// fallback (`mode` or `on_all_down: http_fallback`); default: the
    /// listeners' addresses that are not unspecified.
    pub advertise: Vec<std::net::IpAddr>,
    /// Bounds of proxy mode (`http.proxy`).
    pub proxy: ProxyConfig,
}

/// How far proxy mode goes for one request (`http.proxy`).
#[derive(Debug, Clone, PartialEq)]
pub struct ProxyConfig {
    /// Connecting to an endpoint, TLS included, per attempt.
    pub connect_timeout: std::time::Duration,
    /// From the request's arrival to the endpoint's response headers, all
    /// attempts together.
    pub timeout: std::time::Duration,
    /// A body (either way) that moves nothing for this long is cut.
    pub idle_timeout: std::time::Duration,
    /// A request body's bytes at most (413 past it).
    pub max_body_bytes: u64,
    /// An endpoint's response headers' bytes at most (502 past them).
    pub max_header_bytes: usize,
    /// Connections to endpoints open at once, idle ones included.
    pub max_connections: usize,
    /// Proxied requests of one client (an IPv6 one by its /64) in flight
    /// at once, their answers included (503 past it).
    pub max_per_client: usize,
    /// Endpoints tried for one request (idempotent methods only retry).
    pub attempts: u8,
    /// PEM roots that endpoints' certificates are verified against,
    /// instead of the system's.
    pub ca_file: Option<PathBuf>,
}

impl Default for ProxyConfig {
    fn default() -> ProxyConfig {
        ProxyConfig {
            connect_timeout: std::time::Duration::from_secs(2),
            timeout: std::time::Duration::from_secs(30),
            idle_timeout: std::time::Duration::from_secs(60),
            max_body_bytes: 64 << 20,
            max_header_bytes: 64 << 10,
            max_connections: 512,
            max_per_client: 64,
            attempts: 3,
            ca_file: None,
        }
    }
}

impl HttpConfig {
    /// What DNS answers for records that hand over to the fallback.
    pub fn advertised(&self) -> Vec<std::net::IpAddr> {
        if !self.advertise.is_empty() {
            return self.advertise.clone();
        }
        let mut out: Vec<std::net::IpAddr> = self
            .listen
            .iter()
            .chain(self.tls.iter().flat_map(|t| &t.listen))
            .map(SocketAddr::ip)
            .filter(|ip| !ip.is_unspecified())
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

/// HTTPS for the fallback (`http.tls`).
#[derive(Debug, Clone, PartialEq)]
pub struct HttpTlsConfig {
    pub listen: Vec<SocketAddr>,
    /// (certificate chain, key) PEM files; each certificate serves the
    /// DNS names it carries, chosen by the client's SNI.
    pub certs: Vec<(PathBuf, PathBuf)>,
}

/// Probes on this node.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ProbeConfig {
    /// Run an agent in-process for this probe region.
    pub region: Option<String>,
    /// Where checks may connect: applied by the leader to every spec and
    /// by the embedded agent to every connection.
    pub policy: crate::policy::AddressPolicy,
}

/// Whether `name` can name a probe region (or a pool): letters, digits,
/// `.`, `_`, `-`, and not dots alone (`.` and `..` cannot be named in a
/// URL path).
pub fn is_region_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && !name.bytes().all(|b| b == b'.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// This node's place in a Raft cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    /// This node's id: unique in the cluster, never reused.
    pub id: u64,
    /// Where the node's API (Raft RPCs and cluster commands) listens.
    pub listen: SocketAddr,
    /// The `host:port` peers reach the API at (default: `listen`).
    pub advertise: String,
    pub bootstrap: Bootstrap,
    pub tls: Option<TlsConfig>,
    /// The token file: hashes of the bearer tokens operators and agents
    /// may use (`meridian token new`).
    pub tokens: Option<PathBuf>,
    /// The cluster secret file: how nodes prove themselves to each other
    /// without TLS.
    pub secret: Option<PathBuf>,
    /// No credentials at all: anyone who reaches the API may do anything.
    pub insecure: bool,
    pub heartbeat_ms: u64,
    pub election_timeout_ms: u64,
    pub snapshot_every: u64,
    /// Also snapshot (and purge the log) once this many MiB of entries
    /// were appended since the last snapshot.
    pub snapshot_log_mib: u64,
    pub write_timeout_ms: u64,
    /// The REST API's bounds.
    pub api: ApiConfig,
}

/// The bounds of the REST API (`cluster.api`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiConfig {
    /// A resource write's body, in bytes (default 1 MiB).
    pub max_body_bytes: usize,
    /// `POST /v1/apply`'s body, in bytes (default 32 MiB, the most a spec
    /// may be).
    pub max_apply_bytes: usize,
    /// API requests handled at once; more get 503 (default 64).
    pub max_in_flight: usize,
    /// `/healthz` and `/readyz` without a credential, for probes that
    /// cannot send one (default: false, they need the `read` scope).
    pub open_health: bool,
    /// `/readyz` says not ready when the node's state is staler than this
    /// (default 10 s).
    pub ready_stale_ms: u64,
}

/// The longest NSID a node answers with, in bytes.
pub const MAX_NSID: usize = 128;

/// The largest spec, in bytes: what a spec sent in parts may hold. A
/// zone of 100 000 steered records is about 18 MB.
pub const MAX_SPEC_BYTES: usize = 32 << 20;

impl Default for ApiConfig {
    fn default() -> ApiConfig {
        ApiConfig {
            max_body_bytes: 1 << 20,
            max_apply_bytes: MAX_SPEC_BYTES,
            max_in_flight: 64,
            open_health: false,
            ready_stale_ms: 10_000,
        }
    }
}

/// How a node becomes part of a cluster the first time it starts.
#[derive(Debug, Clone, PartialEq)]
pub enum Bootstrap {
    /// Every initial member lists the same members (id → address) and the
    /// cluster forms on its own.
    Members(std::collections::BTreeMap<u64, String>),
    /// Ask the cluster at this address to add this node.
    Join(String),
    /// Wait for `meridian cluster init` or `meridian cluster join`.
    Manual,
}

/// Mutual TLS between nodes: PEM files.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
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
    /// What this node answers an NSID query with (RFC 5001); `None`: its
    /// cluster node id.
    pub nsid: Option<String>,
    /// Response rate limiting over UDP; `None`: off.
    pub rrl: Option<RrlConfig>,
    /// DNS Cookies (RFC 7873): server cookies given and checked.
    pub cookies: CookiesConfig,
    /// An unauthenticated UDP answer is at most this many times its
    /// query's size; `None`: no bound but the requester's UDP size.
    pub amplification_factor: Option<u16>,
    /// Bounds on DNS over TCP.
    pub tcp: TcpConfig,
    /// Count answers for `/metrics` (default true; off only to measure
    /// what counting costs).
    pub metrics: bool,
}

/// Response rate limiting (`dns.rrl`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RrlConfig {
    /// Answers per second per client prefix and answer.
    pub rate: u32,
    /// Every `slip`-th limited answer is sent truncated; 0: none.
    pub slip: u32,
    pub ipv4_prefix: u8,
    pub ipv6_prefix: u8,
    /// Buckets in the table (its memory: 32 bytes each).
    pub table_size: usize,
}

impl Default for RrlConfig {
    fn default() -> Self {
        RrlConfig {
            rate: 20,
            slip: 2,
            ipv4_prefix: 24,
            ipv6_prefix: 56,
            table_size: 65_536,
        }
    }
}

/// DNS Cookies (`dns.cookies`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CookiesConfig {
    pub enabled: bool,
    /// The cluster's leader replaces the secret this often.
    pub rotate_secs: u64,
}

impl Default for CookiesConfig {
    fn default() -> Self {
        CookiesConfig {
            enabled: true,
            rotate_secs: 86_400,
        }
    }
}

/// DNS over TCP (`dns.tcp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpConfig {
    /// Open connections, all clients together; when full, the connection
    /// idle the longest is closed for a new one.
    pub max_connections: usize,
    /// Open connections from one client address.
    pub max_per_client: usize,
    /// Queries one connection may ask before it is closed.
    pub max_queries: u32,
}

impl Default for TcpConfig {
    fn default() -> Self {
        TcpConfig {
            max_connections: 1024,
            max_per_client: 32,
            max_queries: 10_000,
        }
    }
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

/// Default bound on an unauthenticated UDP answer, in multiples of its
/// query's size: a 40-byte query may get 400 bytes, more than a typical
/// answer (and NXDOMAIN with its SOA) needs.
pub const DEFAULT_AMPLIFICATION: u16 = 10;

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
        pub zones: Option<PathBuf>,
        #[serde(default)]
        pub cluster: Option<Lenient<Cluster>>,
        #[serde(default)]
        pub probe: Option<Lenient<Probe>>,
        #[serde(default)]
        pub http: Option<Lenient<Http>>,
        #[serde(default)]
        pub metrics: Option<Lenient<Metrics>>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Metrics {
        pub listen: SocketAddr,
        pub tokens: Option<PathBuf>,
        #[serde(default)]
        pub open_health: bool,
        pub ready_stale_ms: Option<u64>,
        #[serde(default)]
        pub insecure: bool,
    }

    #[derive(Debug, Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    pub struct Http {
        #[serde(default)]
        pub listen: Vec<SocketAddr>,
        pub status: Option<u16>,
        #[serde(default)]
        pub trusted_proxies: Vec<ipnet::IpNet>,
        pub forwarded_header: Option<String>,
        pub endpoint_header: Option<bool>,
        pub retry_after_secs: Option<u32>,
        pub unavailable_page: Option<PathBuf>,
        pub tls: Option<HttpTls>,
        #[serde(default)]
        pub advertise: Vec<std::net::IpAddr>,
        pub proxy: Option<HttpProxy>,
    }

    #[derive(Debug, Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    pub struct HttpProxy {
        pub connect_timeout_ms: Option<u64>,
        pub timeout_secs: Option<u64>,
        pub idle_timeout_secs: Option<u64>,
        pub max_body_bytes: Option<u64>,
        pub max_header_bytes: Option<usize>,
        pub max_connections: Option<usize>,
        pub max_per_client: Option<usize>,
        pub attempts: Option<u8>,
        pub ca_file: Option<PathBuf>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct HttpTls {
        pub listen: Vec<SocketAddr>,
        pub certs: Vec<CertPair>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct CertPair {
        pub cert: PathBuf,
        pub key: PathBuf,
    }

    #[derive(Debug, Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    pub struct Probe {
        pub region: Option<String>,
        /// Replaced by `cluster.tokens`; named to say so.
        pub tokens: Option<serde_yaml::Value>,
        #[serde(default)]
        pub allow: Vec<ipnet::IpNet>,
        #[serde(default)]
        pub deny: Vec<ipnet::IpNet>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Cluster {
        pub id: u64,
        pub listen: SocketAddr,
        pub advertise: Option<String>,
        pub members: Option<std::collections::BTreeMap<u64, String>>,
        pub join: Option<String>,
        pub tls: Option<TlsConfig>,
        pub tokens: Option<PathBuf>,
        pub secret: Option<PathBuf>,
        #[serde(default)]
        pub insecure: bool,
        pub heartbeat_ms: Option<u64>,
        pub election_timeout_ms: Option<u64>,
        pub snapshot_every: Option<u64>,
        pub snapshot_log_mib: Option<u64>,
        pub write_timeout_ms: Option<u64>,
        pub api: Option<Api>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Api {
        pub max_body_bytes: Option<usize>,
        pub max_apply_bytes: Option<usize>,
        pub max_in_flight: Option<usize>,
        pub open_health: Option<bool>,
        pub ready_stale_ms: Option<usize>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Dns {
        pub listen: Option<Vec<SocketAddr>>,
        pub udp_sockets: Option<U16>,
        pub max_udp_payload: Option<U16>,
        pub tcp_idle_timeout_secs: Option<U16>,
        pub nsid: Option<String>,
        pub rrl: Option<Rrl>,
        pub cookies: Option<Cookies>,
        pub amplification_factor: Option<U16>,
        pub tcp: Option<Tcp>,
        pub metrics: Option<bool>,
    }

    #[derive(Debug, Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    pub struct Rrl {
        pub enabled: Option<bool>,
        pub rate: Option<u32>,
        pub slip: Option<u32>,
        pub ipv4_prefix: Option<u8>,
        pub ipv6_prefix: Option<u8>,
        pub table_size: Option<u32>,
    }

    #[derive(Debug, Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    pub struct Cookies {
        pub enabled: Option<bool>,
        pub rotate_secs: Option<u64>,
    }

    #[derive(Debug, Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    pub struct Tcp {
        pub max_connections: Option<u32>,
        pub max_per_client: Option<u32>,
        pub max_queries: Option<u32>,
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
        let probe = section(&doc, &mut errors, "probe", raw.probe).unwrap_or_default();
        let metrics = section(&doc, &mut errors, "metrics", raw.metrics).map(|m| {
            if m.tokens.is_none() && !m.insecure {
                errors.push(doc.error(
                    "metrics.tokens",
                    "the metrics listener needs a token file (meridian token new --scope read --file tokens), or insecure: true",
                ));
            }
            let ready_stale_ms = m.ready_stale_ms.unwrap_or(10_000);
            in_range(&doc, &mut errors, "metrics.ready_stale_ms", ready_stale_ms, 100, 86_400_000);
            MetricsConfig {
                listen: m.listen,
                tokens: m.tokens.map(|t| base.join(t)),
                open_health: m.open_health,
                ready_stale_ms,
                insecure: m.insecure,
            }
        });
        let http = section(&doc, &mut errors, "http", raw.http).map(|h| {
            if h.listen.is_empty() && h.tls.as_ref().is_none_or(|t| t.listen.is_empty()) {
                errors.push(doc.error(
                    "http.listen",
                    "expected at least one address (here or in http.tls.listen)",
                ));
            }
            if let Some(t) = &h.tls {
                if t.certs.is_empty() {
                    errors.push(doc.error("http.tls.certs", "expected at least one {cert, key}"));
                }
            }
            let status = h.status.unwrap_or(307);
            if ![302, 307, 308].contains(&status) {
                errors.push(doc.error(
                    "http.status",
                    format!("expected 302, 307 or 308, got {status}"),
                ));
            }
            let forwarded_header = h
                .forwarded_header
                .clone()
                .unwrap_or_else(|| "x-forwarded-for".into())
                .to_ascii_lowercase();
            if !["x-forwarded-for", "forwarded"].contains(&forwarded_header.as_str()) {
                errors.push(doc.error(
                    "http.forwarded_header",
                    format!("expected x-forwarded-for or forwarded, got {forwarded_header:?}"),
                ));
            }
            let retry_after_secs = h.retry_after_secs.unwrap_or(5);
            if retry_after_secs > 86_400 {
                errors.push(doc.error(
                    "http.retry_after_secs",
                    format!("expected at most a day (86400), got {retry_after_secs}"),
                ));
            }
            let d = ProxyConfig::default();
            let p = h.proxy.unwrap_or_default();
            let mut bounded = |field: &str, v: Option<u64>, lo: u64, hi: u64, default: u64| {
                let path = format!("http.proxy.{field}");
                in_range(&doc, &mut errors, &path, v.unwrap_or(default), lo, hi)
            };
            let secs = std::time::Duration::from_secs;
            let proxy = ProxyConfig {
                connect_timeout: std::time::Duration::from_millis(bounded(
                    "connect_timeout_ms",
                    p.connect_timeout_ms,
                    10,
                    60_000,
                    d.connect_timeout.as_millis() as u64,
                )),
                timeout: secs(bounded(
                    "timeout_secs",
                    p.timeout_secs,
                    1,
                    3600,
                    d.timeout.as_secs(),
                )),
                idle_timeout: secs(bounded(
                    "idle_timeout_secs",
                    p.idle_timeout_secs,
                    1,
                    3600,
                    d.idle_timeout.as_secs(),
                )),
                max_body_bytes: bounded(
                    "max_body_bytes",
                    p.max_body_bytes,
                    0,
                    1 << 40,
                    d.max_body_bytes,
                ),
                max_header_bytes: bounded(
                    "max_header_bytes",
                    p.max_header_bytes.map(|v| v as u64),
                    8192,
                    1 << 20,
                    d.max_header_bytes as u64,
                ) as usize,
                max_connections: bounded(
                    "max_connections",
                    p.max_connections.map(|v| v as u64),
                    1,
                    65_536,
                    d.max_connections as u64,
                ) as usize,
                max_per_client: bounded(
                    "max_per_client",
                    p.max_per_client.map(|v| v as u64),
                    1,
                    65_536,
                    d.max_per_client as u64,
                ) as usize,
                attempts: bounded(
                    "attempts",
                    p.attempts.map(u64::from),
                    1,
                    16,
                    u64::from(d.attempts),
                ) as u8,
                ca_file: p.ca_file.map(|f| base.join(f)),
            };
            HttpConfig {
                proxy,
                listen: h.listen,
                status,
                trusted_proxies: h.trusted_proxies,
                forwarded_header,
                endpoint_header: h.endpoint_header.unwrap_or(true),
                retry_after_secs,
                unavailable_page: h.unavailable_page.map(|p| base.join(p)),
                advertise: h.advertise,
                tls: h.tls.map(|t| HttpTlsConfig {
                    listen: t.listen,
                    certs: t
                        .certs
                        .into_iter()
                        .map(|c| (base.join(c.cert), base.join(c.key)))
                        .collect(),
                }),
            }
        });
        if probe.tokens.is_some() {
            errors.push(doc.error(
                "probe.tokens",
                "plain probe tokens are no longer read: list their hashes in cluster.tokens, \
                 each bound to its regions (meridian token new --scope probe --region R --file FILE)",
            ));
        }
        if let Some(r) = &probe.region {
            if !is_region_name(r) {
                errors.push(doc.error(
                    "probe.region",
                    format!("expected a region name (letters, digits, '.', '_', '-'), got {r:?}"),
                ));
            }
        }
        let has_cluster = raw.cluster.is_some();
        let cluster = section(&doc, &mut errors, "cluster", raw.cluster)
            .map(|c| cluster_config(&doc, &mut errors, c, base));
        if raw.zones.is_none() && !has_cluster {
            errors.push(doc.error(
                "",
                "missing field `zones`: a node without a `cluster` section serves its zone file",
            ));
        }

        let mut dns_config = DnsConfig {
            listen: vec![
                "0.0.0.0:53".parse().expect("valid"),
                "[::]:53".parse().expect("valid"),
            ],
            udp_sockets: None,
            max_udp_payload: DEFAULT_MAX_UDP_PAYLOAD,
            tcp_idle_timeout_secs: 10,
            nsid: None,
            rrl: Some(RrlConfig::default()),
            cookies: CookiesConfig::default(),
            amplification_factor: Some(DEFAULT_AMPLIFICATION),
            tcp: TcpConfig::default(),
            metrics: true,
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
            if let Some(n) = d.nsid {
                let printable = n.bytes().all(|b| b.is_ascii_graphic() || b == b' ');
                if n.is_empty() || n.len() > MAX_NSID || !printable {
                    errors.push(doc.error(
                        "dns.nsid",
                        format!("expected 1 to {MAX_NSID} printable ASCII characters"),
                    ));
                }
                dns_config.nsid = Some(n);
            }
            let mut bounded = |field: &str, v: Option<u64>, lo: u64, hi: u64, default: u64| {
                let path = format!("dns.{field}");
                in_range(&doc, &mut errors, &path, v.unwrap_or(default), lo, hi)
            };
            if let Some(r) = d.rrl {
                let def = RrlConfig::default();
                let rrl = RrlConfig {
                    rate: bounded(
                        "rrl.rate",
                        r.rate.map(u64::from),
                        1,
                        1_000_000,
                        def.rate.into(),
                    ) as u32,
                    slip: bounded("rrl.slip", r.slip.map(u64::from), 0, 100, def.slip.into())
                        as u32,
                    ipv4_prefix: bounded(
                        "rrl.ipv4_prefix",
                        r.ipv4_prefix.map(u64::from),
                        8,
                        32,
                        def.ipv4_prefix.into(),
                    ) as u8,
                    ipv6_prefix: bounded(
                        "rrl.ipv6_prefix",
                        r.ipv6_prefix.map(u64::from),
                        16,
                        128,
                        def.ipv6_prefix.into(),
                    ) as u8,
                    table_size: bounded(
                        "rrl.table_size",
                        r.table_size.map(u64::from),
                        1024,
                        1 << 24,
                        def.table_size as u64,
                    ) as usize,
                };
                dns_config.rrl = r.enabled.unwrap_or(true).then_some(rrl);
            }
            if let Some(c) = d.cookies {
                let def = CookiesConfig::default();
                dns_config.cookies = CookiesConfig {
                    enabled: c.enabled.unwrap_or(def.enabled),
                    // a server cookie lives an hour: the previous secret
                    // must outlive it
                    rotate_secs: bounded(
                        "cookies.rotate_secs",
                        c.rotate_secs,
                        3600,
                        30 * 86_400,
                        def.rotate_secs,
                    ),
                };
            }
            if let Some(f) = d.amplification_factor {
                // 0 is off; below 3 a truncated answer (a little larger
                // than its query, with our OPT) would not fit
                let f = if f.0 == 0 {
                    0
                } else {
                    bounded("amplification_factor", Some(f.0.into()), 3, 100, 0) as u16
                };
                dns_config.amplification_factor = (f > 0).then_some(f);
            }
            if let Some(m) = d.metrics {
                dns_config.metrics = m;
            }
            if let Some(t) = d.tcp {
                let def = TcpConfig::default();
                dns_config.tcp = TcpConfig {
                    max_connections: bounded(
                        "tcp.max_connections",
                        t.max_connections.map(u64::from),
                        1,
                        1_000_000,
                        def.max_connections as u64,
                    ) as usize,
                    max_per_client: bounded(
                        "tcp.max_per_client",
                        t.max_per_client.map(u64::from),
                        1,
                        1_000_000,
                        def.max_per_client as u64,
                    ) as usize,
                    max_queries: bounded(
                        "tcp.max_queries",
                        t.max_queries.map(u64::from),
                        1,
                        u32::MAX.into(),
                        def.max_queries.into(),
                    ) as u32,
                };
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
            zones: raw.zones.map(|z| base.join(z)),
            cluster,
            probe: ProbeConfig {
                region: probe.region,
                policy: crate::policy::AddressPolicy {
                    allow: probe.allow,
                    deny: probe.deny,
                },
            },
            http,
            metrics,
        })
    }
}

/// `v`, with a diagnostic at `path` when it is outside `lo..=hi`.
fn in_range(
    doc: &Document,
    errors: &mut Vec<Diagnostic>,
    path: &str,
    v: u64,
    lo: u64,
    hi: u64,
) -> u64 {
    if !(lo..=hi).contains(&v) {
        errors.push(doc.error(path, format!("expected {lo} to {hi}, got {v}")));
    }
    v
}

/// Validates the `cluster` section.
fn cluster_config(
    doc: &Document,
    errors: &mut Vec<Diagnostic>,
    c: raw::Cluster,
    base: &Path,
) -> ClusterConfig {
    if c.id == 0 {
        errors.push(doc.error("cluster.id", "expected a node id of 1 or more"));
    }
    let explicit = c.advertise.is_some();
    let advertise = c.advertise.unwrap_or_else(|| c.listen.to_string());
    if !explicit && c.listen.port() == 0 {
        errors.push(doc.error(
            "cluster.listen",
            "port 0 cannot be advertised to peers: give a fixed port, or set cluster.advertise",
        ));
    } else if !is_host_port(&advertise) {
        errors.push(doc.error(
            "cluster.advertise",
            format!("expected host:port, got {advertise:?}"),
        ));
    }
    let bootstrap = match (c.members, c.join) {
        (Some(_), Some(_)) => {
            errors.push(doc.error(
                "cluster.join",
                "give either `members` (a new cluster) or `join` (an existing one), not both",
            ));
            Bootstrap::Manual
        }
        (Some(members), None) => {
            match members.get(&c.id) {
                None => errors.push(doc.error(
                    "cluster.members",
                    format!("this node's id {} is not among the members", c.id),
                )),
                Some(a) if *a != advertise => errors.push(doc.error(
                    "cluster.members",
                    format!(
                        "member {} is at {a:?}, but this node advertises {advertise:?}",
                        c.id
                    ),
                )),
                Some(_) => {}
            }
            for (id, addr) in &members {
                if *id == 0 || !is_host_port(addr) {
                    errors.push(doc.error(
                        &format!("cluster.members.{id}"),
                        format!("expected a node id of 1 or more with host:port, got {addr:?}"),
                    ));
                }
            }
            Bootstrap::Members(members)
        }
        (None, Some(join)) => {
            if !is_host_port(&join) {
                errors.push(doc.error("cluster.join", format!("expected host:port, got {join:?}")));
            }
            Bootstrap::Join(join)
        }
        (None, None) => Bootstrap::Manual,
    };
    let heartbeat_ms = c.heartbeat_ms.unwrap_or(100);
    let election_timeout_ms = c.election_timeout_ms.unwrap_or(500);
    if heartbeat_ms == 0 || heartbeat_ms * 2 > election_timeout_ms {
        errors.push(doc.error(
            "cluster.heartbeat_ms",
            format!(
                "expected at least 1 and at most half of election_timeout_ms ({election_timeout_ms}), got {heartbeat_ms}"
            ),
        ));
    }
    let snapshot_every = c.snapshot_every.unwrap_or(5000);
    if snapshot_every == 0 {
        errors.push(doc.error("cluster.snapshot_every", "expected at least 1 entry"));
    }
    let snapshot_log_mib = c.snapshot_log_mib.unwrap_or(64);
    if !(1..=1 << 20).contains(&snapshot_log_mib) {
        errors.push(doc.error(
            "cluster.snapshot_log_mib",
            format!("expected 1 to 1048576 MiB, got {snapshot_log_mib}"),
        ));
    }
    let write_timeout_ms = c.write_timeout_ms.unwrap_or(5000);
    if write_timeout_ms < 100 {
        errors.push(doc.error(
            "cluster.write_timeout_ms",
            format!("expected at least 100 ms, got {write_timeout_ms}"),
        ));
    }
    let defaults = ApiConfig::default();
    let api = c.api.as_ref();
    let api = ApiConfig {
        max_body_bytes: api
            .and_then(|a| a.max_body_bytes)
            .unwrap_or(defaults.max_body_bytes),
        max_apply_bytes: api
            .and_then(|a| a.max_apply_bytes)
            .unwrap_or(defaults.max_apply_bytes),
        max_in_flight: api
            .and_then(|a| a.max_in_flight)
            .unwrap_or(defaults.max_in_flight),
        open_health: api
            .and_then(|a| a.open_health)
            .unwrap_or(defaults.open_health),
        ready_stale_ms: api
            .and_then(|a| a.ready_stale_ms)
            .map_or(defaults.ready_stale_ms, |v| v as u64),
    };
    for (field, value, low, high) in [
        ("max_body_bytes", api.max_body_bytes, 1024, 64 << 20),
        ("max_apply_bytes", api.max_apply_bytes, 1024, MAX_SPEC_BYTES),
        ("max_in_flight", api.max_in_flight, 1, 100_000),
        (
            "ready_stale_ms",
            api.ready_stale_ms as usize,
            100,
            86_400_000,
        ),
    ] {
        if !(low..=high).contains(&value) {
            errors.push(doc.error(
                &format!("cluster.api.{field}"),
                format!("expected {low} to {high}, got {value}"),
            ));
        }
    }
    if c.tls.is_none() && !c.insecure {
        if !c.listen.ip().is_loopback() {
            errors.push(doc.error(
                "cluster.listen",
                format!(
                    "the API would listen on {} without TLS: anyone on the network could reach it. \
                     Set cluster.tls (meridian tls ca; meridian tls cert --role node ...), \
                     or insecure: true to accept that",
                    c.listen
                ),
            ));
        } else if c.secret.is_none() {
            errors.push(doc.error(
                "cluster",
                "without cluster.tls, nodes prove themselves to each other with a shared secret: \
                 set cluster.secret to a file every node has (meridian token secret --file FILE), \
                 or insecure: true to accept anyone",
            ));
        }
    }
    ClusterConfig {
        id: c.id,
        listen: c.listen,
        advertise,
        bootstrap,
        tls: c.tls.map(|t| TlsConfig {
            cert: base.join(t.cert),
            key: base.join(t.key),
            ca: base.join(t.ca),
        }),
        tokens: c.tokens.map(|t| base.join(t)),
        secret: c.secret.map(|t| base.join(t)),
        insecure: c.insecure,
        heartbeat_ms,
        election_timeout_ms,
        snapshot_every,
        snapshot_log_mib,
        write_timeout_ms,
        api,
    }
}

/// `host:port` with a non-empty host and a port number.
fn is_host_port(s: &str) -> bool {
    match s.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0),
        None => false,
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
    fn abuse_settings_default_on_and_are_bounded() {
        let d = parse("zones: z\n").unwrap().dns;
        assert_eq!(d.rrl, Some(RrlConfig::default()));
        assert!(d.cookies.enabled);
        assert_eq!(d.amplification_factor, Some(DEFAULT_AMPLIFICATION));
        assert_eq!(d.tcp, TcpConfig::default());
        let off = parse("dns:\n  rrl: {enabled: false}\n  amplification_factor: 0\n  cookies: {enabled: false}\nzones: z\n")
            .unwrap()
            .dns;
        assert_eq!(
            (off.rrl, off.amplification_factor, off.cookies.enabled),
            (None, None, false)
        );
        let set = parse("dns:\n  rrl: {rate: 50, slip: 0, ipv4_prefix: 32, ipv6_prefix: 64, table_size: 4096}\n  tcp: {max_connections: 100, max_per_client: 4, max_queries: 7}\nzones: z\n")
            .unwrap()
            .dns;
        assert_eq!(set.rrl.unwrap().rate, 50);
        assert_eq!(set.rrl.unwrap().slip, 0);
        assert_eq!((set.tcp.max_connections, set.tcp.max_queries), (100, 7));
        for (bad, message) in [
            (
                "rrl: {rate: 0}",
                "dns.rrl.rate: expected 1 to 1000000, got 0",
            ),
            (
                "rrl: {ipv4_prefix: 40}",
                "dns.rrl.ipv4_prefix: expected 8 to 32, got 40",
            ),
            (
                "rrl: {table_size: 10}",
                "dns.rrl.table_size: expected 1024 to 16777216, got 10",
            ),
            ("rrl: {burst: 3}", "unknown field `burst`"),
            (
                "amplification_factor: 2",
                "dns.amplification_factor: expected 3 to 100, got 2",
            ),
            (
                "cookies: {rotate_secs: 60}",
                "dns.cookies.rotate_secs: expected 3600 to 2592000, got 60",
            ),
            (
                "tcp: {max_connections: 0}",
                "dns.tcp.max_connections: expected 1 to 1000000, got 0",
            ),
        ] {
            let err = parse(&format!("dns:\n  {bad}\nzones: z\n"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(message), "{bad}: {err}");
            assert!(
                err.starts_with("meridian.yaml:2:"),
                "{bad}: on its line: {err}"
            );
        }
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = parse("zones: zones.yaml\n").unwrap();
        assert_eq!(c.zones, Some(PathBuf::from("/etc/meridian/zones.yaml")));
        assert_eq!(c.cluster, None);
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
        assert_eq!(c.zones, Some(PathBuf::from("/srv/zones.yaml")));
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
        // an NSID must be printable and short
        let long = "x".repeat(MAX_NSID + 1);
        for bad in ["\"\"", "\"a\\u0001\"", long.as_str()] {
            let err = parse(&format!("dns:\n  nsid: {bad}\nzones: z\n")).unwrap_err();
            assert!(
                err.to_string().contains("dns.nsid: expected 1 to 128"),
                "{err}"
            );
        }
        let ok = parse("dns:\n  nsid: ns-a.example\nzones: z\n").unwrap();
        assert_eq!(ok.dns.nsid.as_deref(), Some("ns-a.example"));
    }

    #[test]
    fn cluster_section() {
        let c = parse(
            "cluster:\n  id: 2\n  listen: 127.0.0.1:8442\n  members:\n    1: 127.0.0.1:8441\n    2: 127.0.0.1:8442\n  tls: {cert: n2.pem, key: n2.key, ca: ca.pem}\n",
        )
        .unwrap();
        let cluster = c.cluster.unwrap();
        assert_eq!(c.zones, None);
        assert_eq!(cluster.id, 2);
        assert_eq!(cluster.advertise, "127.0.0.1:8442");
        assert_eq!(
            cluster.tls.unwrap().ca,
            PathBuf::from("/etc/meridian/ca.pem")
        );
        match cluster.bootstrap {
            Bootstrap::Members(m) => assert_eq!(m.len(), 2),
            other => panic!("{other:?}"),
        }
        let joining =
            parse("cluster: {id: 4, listen: \"127.0.0.1:1\", join: \"n1:8441\", secret: s}\n")
                .unwrap();
        assert_eq!(
            joining.cluster.unwrap().bootstrap,
            Bootstrap::Join("n1:8441".into())
        );
    }

    #[test]
    fn cluster_errors_name_the_field() {
        let err = parse(
            "cluster:\n  id: 3\n  listen: 127.0.0.1:8443\n  members: {1: \"127.0.0.1:8441\"}\n  join: x:1\n  heartbeat_ms: 400\n  snapshot_log_mib: 0\n",
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("cluster.join: give either"), "{text}");
        assert!(
            text.contains("cluster.snapshot_log_mib: expected 1 to 1048576 MiB, got 0"),
            "{text}"
        );
        assert!(
            text.contains("cluster.heartbeat_ms: expected at least 1 and at most half"),
            "{text}"
        );
        let err = parse(
            "cluster:\n  id: 3\n  listen: 127.0.0.1:8443\n  members: {1: \"127.0.0.1:8441\"}\n",
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("cluster.members: this node's id 3 is not among the members"),
            "{err}"
        );
        let err = parse("cluster:\n  id: 1\n  listen: nowhere\n").unwrap_err();
        assert!(err.to_string().contains("meridian.yaml:3:"), "{err}");
    }

    #[test]
    fn an_api_without_credentials_needs_saying_so() {
        // beyond loopback without TLS: refused, with the way out
        let err = parse(
            "cluster: {id: 1, listen: \"0.0.0.0:8440\", advertise: \"10.0.0.1:8440\", secret: s}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("cluster.listen: the API would listen on 0.0.0.0:8440 without TLS")
                && err.contains("meridian tls ca")
                && err.contains("insecure: true"),
            "{err}"
        );
        // on loopback without TLS: nodes need the secret
        let err = parse("cluster: {id: 1, listen: \"127.0.0.1:8440\"}\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("set cluster.secret"), "{err}");
        // said out loud: accepted
        let c = parse("cluster: {id: 1, listen: \"0.0.0.0:8440\", advertise: \"10.0.0.1:8440\", insecure: true}\n")
            .unwrap();
        assert!(c.cluster.unwrap().insecure);
        let c = parse("cluster: {id: 1, listen: \"0.0.0.0:8440\", advertise: \"10.0.0.1:8440\", tls: {cert: c, key: k, ca: a}, tokens: t}\n")
            .unwrap();
        assert_eq!(
            c.cluster.unwrap().tokens,
            Some(PathBuf::from("/etc/meridian/t"))
        );
        // the metrics listener: a token file, or insecure said out loud
        let err = parse("zones: z\nmetrics:\n  listen: \"127.0.0.1:9153\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("meridian.yaml:3") && err.contains("metrics.tokens"),
            "{err}"
        );
        let m = parse(
            "zones: z\nmetrics: {listen: \"127.0.0.1:9153\", insecure: true, open_health: true}\n",
        )
        .unwrap()
        .metrics
        .unwrap();
        assert!(m.insecure && m.open_health && m.tokens.is_none());
        assert_eq!(m.ready_stale_ms, 10_000);
        let m = parse(
            "zones: z\nmetrics: {listen: \"127.0.0.1:9153\", tokens: mt, ready_stale_ms: 2000}\n",
        )
        .unwrap()
        .metrics
        .unwrap();
        assert_eq!(m.tokens, Some(PathBuf::from("/etc/meridian/mt")));
        assert_eq!(m.ready_stale_ms, 2000);
        let err = parse(
            "zones: z\nmetrics: {listen: \"127.0.0.1:9153\", tokens: mt, ready_stale_ms: 5}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("metrics.ready_stale_ms"), "{err}");
        // the old plain probe tokens say where they went
        let err = parse("zones: z\nprobe: {tokens: probe.tokens}\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("probe.tokens: plain probe tokens are no longer read"),
            "{err}"
        );
    }
}
