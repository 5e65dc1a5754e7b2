//! Health checks: a pool's `check:` (what probe agents run against each of
//! its endpoints, from which regions, and how their votes combine) and an
//! endpoint's `check_address` (probe one address, answer another).

use serde::{Deserialize, Serialize};

use super::{raw, rules, Checker, EndpointAddress};

/// What a check connects with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CheckKind {
    Http,
    Https,
    Tcp,
}

/// The User-Agent of HTTP checks that do not set one.
pub const DEFAULT_USER_AGENT: &str = concat!("Meridian-Probe/", env!("CARGO_PKG_VERSION"));

/// A pool's health check, validated, with every default filled in.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Check {
    pub kind: CheckKind,
    pub port: u16,
    /// HTTP only: request path, method, Host header, accepted statuses
    /// (inclusive ranges), a substring the body must hold.
    pub path: String,
    pub method: String,
    pub host: Option<String>,
    pub expect_status: Vec<(u16, u16)>,
    pub body: Option<String>,
    pub user_agent: String,
    /// HTTPS only: verify the certificate chain and name.
    pub tls_verify: bool,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    /// Consecutive successes that make a down endpoint up, and failures
    /// that make an up endpoint down, in one region.
    pub rise: u16,
    pub fall: u16,
    /// The probe regions that run the check.
    pub regions: Vec<String>,
    /// How many fresh regions must agree to change the verdict.
    pub quorum: usize,
    /// A region that has not reported for this long has no vote.
    pub stale_after_ms: u64,
    /// How long an endpoint that came back stays out of answers.
    pub hold_down_ms: u64,
}

/// Where a check connects instead of the answered address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckAddress {
    pub host: EndpointAddress,
    /// Overrides the check's port.
    pub port: Option<u16>,
}

impl CheckAddress {
    /// Parses `ip`, `ip:port`, `[v6]:port`, `host` or `host:port`.
    pub fn parse(text: &str) -> Result<CheckAddress, String> {
        if let Ok(sa) = text.parse::<std::net::SocketAddr>() {
            return Ok(CheckAddress {
                host: EndpointAddress::Ip(sa.ip()),
                port: Some(sa.port()),
            });
        }
        if let Ok(ip) = text.parse::<std::net::IpAddr>() {
            return Ok(CheckAddress {
                host: EndpointAddress::Ip(ip),
                port: None,
            });
        }
        let (host, port) = match text.rsplit_once(':') {
            Some((h, p)) => match p.parse::<u16>() {
                Ok(p) => (h, Some(p)),
                Err(_) => {
                    return Err(format!(
                        "expected host:port with a port 0..=65535, got {text:?}"
                    ))
                }
            },
            None => (text, None),
        };
        let host = EndpointAddress::parse(host).map_err(|_| {
            format!("expected an address, address:port, host or host:port, got {text:?}")
        })?;
        Ok(CheckAddress { host, port })
    }
}

/// Validates a pool's check. `declared` are the probe regions of the spec.
pub(super) fn validate_check(
    c: &mut Checker<'_>,
    path: &str,
    raw: &raw::Check,
    declared: &[&str],
) -> Option<Check> {
    let before = c.errors.len();
    let http = raw.kind != CheckKind::Tcp;
    if !http {
        for (field, set) in [
            ("path", raw.path.is_some()),
            ("method", raw.method.is_some()),
            ("host", raw.host.is_some()),
            ("expect_status", raw.expect_status.is_some()),
            ("body", raw.body.is_some()),
            ("user_agent", raw.user_agent.is_some()),
        ] {
            if set {
                c.key_err(
                    &format!("{path}.{field}"),
                    format!("{field} is only for http and https checks"),
                );
            }
        }
    }
    if raw.kind != CheckKind::Https && raw.tls_verify.is_some() {
        c.key_err(
            &format!("{path}.tls_verify"),
            "tls_verify is only for https checks",
        );
    }
    let port = match (raw.port, raw.kind) {
        (Some(p), _) if p.0 == 0 => {
            c.err(&format!("{path}.port"), "expected a port 1..=65535, got 0");
            0
        }
        (Some(p), _) => p.0,
        (None, CheckKind::Http) => 80,
        (None, CheckKind::Https) => 443,
        // each endpoint's check_address must then name one (checked
        // with the endpoints)
        (None, CheckKind::Tcp) => 0,
    };
    let path_value = raw.path.clone().unwrap_or_else(|| "/".to_string());
    if !path_value.starts_with('/')
        || path_value
            .chars()
            .any(|ch| ch.is_whitespace() || ch.is_control())
    {
        c.err(
            &format!("{path}.path"),
            format!("expected an absolute path such as /health, got {path_value:?}"),
        );
    }
    let method = raw.method.clone().unwrap_or_else(|| "GET".to_string());
    if !matches!(method.as_str(), "GET" | "HEAD") {
        c.err(
            &format!("{path}.method"),
            format!("expected GET or HEAD, got {method:?}"),
        );
    }
    if let Some(h) = &raw.host {
        if h.is_empty() || h.chars().any(|ch| ch.is_whitespace() || ch.is_control()) {
            c.err(
                &format!("{path}.host"),
                format!("expected a host name for the Host header, got {h:?}"),
            );
        }
    }
    let mut expect_status = Vec::new();
    for (i, t) in raw.expect_status.iter().flatten().enumerate() {
        match status_range(&t.0) {
            Some(r) => expect_status.push(r),
            None => c.err(
                &crate::yaml::index_segment(&format!("{path}.expect_status"), i),
                format!("expected a status (200), a class (2xx) or a range (200-299) within 100..=599, got {:?}", t.0),
            ),
        }
    }
    if raw.expect_status.as_ref().is_some_and(|v| v.is_empty()) {
        c.err(
            &format!("{path}.expect_status"),
            "expected at least one status",
        );
    }
    if expect_status.is_empty() {
        expect_status.push((200, 399));
    }
    if let Some(ua) = &raw.user_agent {
        if ua.is_empty() || ua.chars().any(|ch| ch.is_control()) {
            c.err(
                &format!("{path}.user_agent"),
                "expected a non-empty User-Agent without control characters",
            );
        }
    }

    let interval_ms = raw.interval.map_or(10_000, |m| m.0);
    c.maybe(
        &format!("{path}.interval"),
        rules::interval_problem(interval_ms),
    );
    let timeout_ms = raw.timeout.map_or(interval_ms.min(2_000), |m| m.0);
    c.maybe(
        &format!("{path}.timeout"),
        rules::timeout_problem(timeout_ms, interval_ms),
    );
    let count = |c: &mut Checker<'_>, field: &str, v: Option<crate::values::U16>, default: u16| {
        let n = v.map_or(default, |v| v.0);
        c.maybe(&format!("{path}.{field}"), rules::count_problem(n));
        n
    };
    let rise = count(c, "rise", raw.rise, 2);
    let fall = count(c, "fall", raw.fall, 3);

    let regions: Vec<String> = match &raw.regions {
        Some(list) => {
            for (i, r) in list.iter().enumerate() {
                let at = crate::yaml::index_segment(&format!("{path}.regions"), i);
                if !declared.contains(&r.as_str()) {
                    c.err(
                        &at,
                        format!("no probe region named {r:?} (declare it under `regions`)"),
                    );
                } else if list[..i].contains(r) {
                    c.err(&at, format!("region {r:?} is listed twice"));
                }
            }
            if list.is_empty() {
                c.err(
                    &format!("{path}.regions"),
                    "expected at least one probe region",
                );
            }
            list.clone()
        }
        None if declared.is_empty() => {
            c.err(path, "a check needs probe regions: declare them under `regions`, or list them in check.regions");
            Vec::new()
        }
        None => declared.iter().map(|s| s.to_string()).collect(),
    };
    let n = regions.len().max(1);
    let quorum = match &raw.quorum {
        None => n / 2 + 1,
        Some(t) => match parse_quorum(&t.0, n) {
            Ok(q) => q,
            Err(m) => {
                c.err(&format!("{path}.quorum"), m);
                1
            }
        },
    };
    let stale_after_ms = raw
        .stale_after
        .map_or(interval_ms.saturating_mul(3), |m| m.0);
    c.maybe(
        &format!("{path}.stale_after"),
        rules::stale_after_problem(stale_after_ms, interval_ms),
    );
    let hold_down_ms = raw.hold_down.map_or(0, |m| m.0);
    c.maybe(
        &format!("{path}.hold_down"),
        rules::hold_down_problem(hold_down_ms),
    );
    (c.errors.len() == before).then(|| Check {
        kind: raw.kind,
        port,
        path: path_value,
        method,
        host: raw.host.clone(),
        expect_status,
        body: raw.body.clone(),
        user_agent: raw
            .user_agent
            .clone()
            .unwrap_or_else(|| DEFAULT_USER_AGENT.to_string()),
        tls_verify: raw.tls_verify.unwrap_or(true),
        interval_ms,
        timeout_ms,
        rise,
        fall,
        regions,
        quorum,
        stale_after_ms,
        hold_down_ms,
    })
}

/// `200`, `2xx` or `200-299`, within 100..=599.
fn status_range(text: &str) -> Option<(u16, u16)> {
    let t = text.trim();
    let range = if let Some(class) = t.strip_suffix("xx") {
        let d: u16 = class.parse().ok()?;
        (d * 100, d * 100 + 99)
    } else if let Some((a, b)) = t.split_once('-') {
        (a.trim().parse().ok()?, b.trim().parse().ok()?)
    } else {
        let s = t.parse().ok()?;
        (s, s)
    };
    (range.0 >= 100 && range.1 <= 599 && range.0 <= range.1).then_some(range)
}

/// A count of regions (`2`), a percentage (`50%`) or a fraction (`0.5`) of
/// the check's `n` regions, as a count (fractions round up, at least 1).
fn parse_quorum(text: &str, n: usize) -> Result<usize, String> {
    let t = text.trim();
    let expected = || {
        format!("expected a count of regions 1..={n}, a percentage (50%) or a fraction (0.5), got {text:?}")
    };
    if let Ok(q) = t.parse::<usize>() {
        return if (1..=n).contains(&q) {
            Ok(q)
        } else {
            Err(expected())
        };
    }
    let fraction = match t.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map(|p| p / 100.0),
        None => t.parse::<f64>(),
    }
    .map_err(|_| expected())?;
    if !(fraction > 0.0 && fraction <= 1.0) {
        return Err(expected());
    }
    // n is small; the product is exact enough for ceil
    Ok(((fraction * n as f64) - 1e-9).ceil().max(1.0) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_quorums() {
        assert_eq!(status_range("2xx"), Some((200, 299)));
        assert_eq!(status_range("200-204"), Some((200, 204)));
        assert_eq!(status_range("301"), Some((301, 301)));
        assert_eq!(status_range("99"), None);
        assert_eq!(status_range("300-200"), None);
        assert_eq!(parse_quorum("2", 3), Ok(2));
        assert_eq!(parse_quorum("50%", 3), Ok(2));
        assert_eq!(parse_quorum("0.5", 4), Ok(2));
        assert_eq!(parse_quorum("1.0", 3), Ok(3));
        assert!(parse_quorum("4", 3).is_err());
        assert!(parse_quorum("0", 3).is_err());
        assert!(parse_quorum("150%", 3).is_err());
    }

    #[test]
    fn check_addresses() {
        let a = CheckAddress::parse("127.0.0.1:8080").unwrap();
        assert_eq!(a.port, Some(8080));
        assert_eq!(CheckAddress::parse("[::1]:80").unwrap().port, Some(80));
        assert_eq!(CheckAddress::parse("::1").unwrap().port, None);
        let h = CheckAddress::parse("backend.example:8443").unwrap();
        assert_eq!(h.host.to_string(), "backend.example.");
        assert!(CheckAddress::parse("host:99999").is_err());
        assert!(CheckAddress::parse("bad host").is_err());
    }
}
