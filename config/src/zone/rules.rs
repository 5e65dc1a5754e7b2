//! The typed validator: rules over a [`ZoneSpec`] however it arrived.
//!
//! The YAML loader runs these after building the spec (so `meridian check`
//! applies them), and the leader runs them on every spec it is asked to
//! propose, JSON from the API included: a spec that skipped the YAML
//! loader cannot skip these. Each rule is one small function named for
//! what it guards, reporting every violation with its field path.
//!
//! The YAML loader checks the same bounds while it parses (to place each
//! error on its line); both take them from the functions here.

use std::collections::HashSet;
use std::fmt;

use super::{
    Check, CheckKind, Endpoint, Pool, ProbeRegion, RecordData, RecordSet, RecordType,
    SteeredRecord, Step, Zone, ZoneSpec, CONTINENTS,
};
use crate::values::DomainName;

/// Largest TTL (RFC 2181 §8).
pub const MAX_TTL: u32 = 2_147_483_647;

/// A rule a spec breaks: where, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The field path (`pools.web.check.interval`).
    pub path: String,
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every violation, one per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violations(pub Vec<Violation>);

impl fmt::Display for Violations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, v) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            v.fmt(f)?;
        }
        Ok(())
    }
}

impl std::error::Error for Violations {}

struct Found(Vec<Violation>);

impl Found {
    fn at(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Violation {
            path: path.into(),
            message: message.into(),
        });
    }

    fn maybe(&mut self, path: impl Into<String>, problem: Option<String>) {
        if let Some(m) = problem {
            self.at(path, m);
        }
    }
}

/// Checks every rule; all violations at once.
pub fn check(spec: &ZoneSpec) -> Result<(), Violations> {
    let mut f = Found(Vec::new());
    regions_are_named_and_placed(&mut f, &spec.regions);
    let declared: Vec<&str> = spec.regions.iter().map(|r| r.name.as_str()).collect();
    for (name, pool) in &spec.pools {
        let path = format!("pools.{name}");
        if !crate::node::is_region_name(name) {
            f.at(
                &path,
                format!("a pool name is letters, digits, '.', '_' and '-', got {name:?}"),
            );
        }
        if pool.name != *name {
            f.at(
                &path,
                format!("the pool is filed as {name:?} but named {:?}", pool.name),
            );
        }
        pool_holds_endpoints(&mut f, &path, pool, &declared);
        if let Some(c) = &pool.check {
            check_is_bounded(&mut f, &format!("{path}.check"), c, &declared);
            tcp_check_has_ports(&mut f, &path, c, &pool.endpoints);
        }
    }
    zones_are_distinct(&mut f, &spec.zones);
    for zone in &spec.zones {
        let path = format!("zones.{:?}", zone.name.as_str());
        zone_fields_are_bounded(&mut f, &path, zone);
        name_servers_have_glue_in_zone(&mut f, &path, zone);
        for (i, r) in zone.records.iter().enumerate() {
            record_data_fits(&mut f, &format!("{path}.records[{i}]"), r, zone);
        }
        names_stand_alone(&mut f, &path, zone);
        for (i, s) in zone.steered.iter().enumerate() {
            steered_is_sound(&mut f, &format!("{path}.steered[{i}]"), s, spec);
            if !s.name.is_within(&zone.name) {
                f.at(
                    format!("{path}.steered[{i}].name"),
                    format!("{} is outside the zone {}", s.name, zone.name),
                );
            }
        }
    }
    if f.0.is_empty() {
        Ok(())
    } else {
        Err(Violations(f.0))
    }
}

/// What a spec may mean but probably does not: served as it is, but
/// `meridian check` says so.
pub fn warnings(spec: &ZoneSpec) -> Vec<Violation> {
    let mut f = Found(Vec::new());
    for zone in &spec.zones {
        let path = format!("zones.{:?}", zone.name.as_str());
        child_is_delegated(&mut f, &path, zone, &spec.zones);
        for (i, s) in zone.steered.iter().enumerate() {
            if let Some(pool) = spec.pools.get(&s.pool) {
                steered_cname_is_one(&mut f, &format!("{path}.steered[{i}]"), s, pool);
            }
        }
    }
    f.0
}

/// A zone inside another zone of the spec needs NS records at its name
/// in the parent: resolvers that ask the parent's servers about it never
/// learn of the child otherwise, and other servers of the parent answer
/// NXDOMAIN for the child's names.
fn child_is_delegated(f: &mut Found, path: &str, zone: &Zone, zones: &[Zone]) {
    let parent = zones
        .iter()
        .filter(|p| p.name.key() != zone.name.key() && zone.name.is_within(&p.name))
        .max_by_key(|p| p.name.label_count());
    let Some(parent) = parent else {
        return;
    };
    let delegated = parent
        .records
        .iter()
        .any(|r| r.rtype == RecordType::Ns && r.name.key() == zone.name.key());
    if !delegated {
        f.at(
            path,
            format!(
                "{} is inside the zone {} but that zone has no NS records at {}: \
                 this server answers both, but resolvers that learn of it from the \
                 parent's other servers get NXDOMAIN (delegate it in {})",
                zone.name, parent.name, zone.name, parent.name
            ),
        );
    }
}

/// A name holds one CNAME (RFC 2181 §10.1): a steered CNAME answers the
/// first of what its steps leave, so steps that can leave more say less
/// than they seem to.
fn steered_cname_is_one(f: &mut Found, path: &str, s: &SteeredRecord, pool: &Pool) {
    if s.rtype != super::SteeredType::Cname {
        return;
    }
    let hosts = pool.endpoints.len();
    let cut_to_one = s.steps.contains(&Step::First(1));
    if hosts > 1 && !cut_to_one {
        f.at(
            format!("{path}.steps"),
            format!(
                "the steps can leave up to {hosts} hosts, but a name holds one CNAME \
                 (RFC 2181 §10.1): only the first is answered (end the steps with `first: 1`)"
            ),
        );
    }
    let enabled = pool
        .endpoints
        .iter()
        .filter(|e| e.state == super::AdminState::Enabled)
        .count();
    match &s.on_all_down {
        super::OnAllDown::FailOpen if enabled > 1 => f.at(
            format!("{path}.on_all_down"),
            format!(
                "with every host down, fail_open leaves all {enabled} enabled hosts: \
                 only the first is answered as the CNAME"
            ),
        ),
        super::OnAllDown::Sorry(set) if set.len() > 1 => f.at(
            format!("{path}.on_all_down"),
            format!(
                "the sorry set has {} names, but a name holds one CNAME: only the first is answered",
                set.len()
            ),
        ),
        _ => {}
    }
}

/// Latitude and longitude in range, both or neither.
pub fn coordinates_problem(lat: Option<f64>, lon: Option<f64>) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if let Some(lat) = lat {
        if !(-90.0..=90.0).contains(&lat) {
            out.push(("lat", format!("expected a latitude -90..=90, got {lat}")));
        }
    }
    if let Some(lon) = lon {
        if !(-180.0..=180.0).contains(&lon) {
            out.push(("lon", format!("expected a longitude -180..=180, got {lon}")));
        }
    }
    if lat.is_some() != lon.is_some() {
        out.push(("", "give both lat and lon, or neither".into()));
    }
    out
}

fn coordinates(f: &mut Found, path: &str, lat: Option<f64>, lon: Option<f64>) {
    for (field, m) in coordinates_problem(lat, lon) {
        if field.is_empty() {
            f.at(path, m);
        } else {
            f.at(format!("{path}.{field}"), m);
        }
    }
}

fn regions_are_named_and_placed(f: &mut Found, regions: &[ProbeRegion]) {
    let mut seen = HashSet::new();
    for r in regions {
        let path = format!("regions.{}", r.name);
        if !crate::node::is_region_name(&r.name) {
            f.at(
                &path,
                format!(
                    "expected a region name (letters, digits, '.', '_', '-'), got {:?}",
                    r.name
                ),
            );
        }
        if !seen.insert(r.name.as_str()) {
            f.at(&path, format!("region {:?} is declared twice", r.name));
        }
        coordinates(f, &path, r.lat, r.lon);
    }
}

/// A non-negative, finite amount (cost, milliseconds).
pub fn amount_problem(v: f64, what: &str) -> Option<String> {
    (!v.is_finite() || v < 0.0).then(|| format!("expected {what} >= 0, got {v}"))
}

/// `nearest` bias.
pub fn bias_problem(bias: i64) -> Option<String> {
    (!(-99..=99).contains(&bias)).then(|| format!("expected a bias -99..=99, got {bias}"))
}

fn pool_holds_endpoints(f: &mut Found, path: &str, pool: &Pool, declared: &[&str]) {
    if pool.endpoints.is_empty() {
        f.at(path, format!("pool {} has no endpoints", pool.name));
    }
    if pool.endpoints.len() > usize::from(u16::MAX) {
        f.at(
            format!("{path}.endpoints"),
            format!("a pool holds at most {} endpoints", u16::MAX),
        );
    }
    let mut ids = HashSet::new();
    for (i, e) in pool.endpoints.iter().enumerate() {
        let at = format!("{path}.endpoints[{i}]");
        endpoint_is_sound(f, &at, e, declared);
        if !ids.insert(e.id.as_str()) {
            f.at(
                format!("{at}.id"),
                format!("duplicate endpoint id {:?} in pool {}", e.id, pool.name),
            );
        }
        if RESERVED_IDS.contains(&e.id.as_str()) {
            f.at(
                format!("{at}.id"),
                format!(
                    "{:?} names what a steered record answers without an endpoint (in metrics and the status page): choose another id",
                    e.id
                ),
            );
        }
    }
}

/// Endpoint ids that name a steered record's other answers.
pub const RESERVED_IDS: [&str; 3] = ["sorry", "nodata", "http_fallback"];

/// An endpoint id: what APIs and logs name it by.
/// Why `url` cannot be an endpoint's `redirect_url`: it must be an
/// absolute http or https URL with a host, of at most 2048 bytes, of
/// characters a URL may hold as they are, with `{path}` (the request's
/// path and query) at most once and only after the host.
pub fn redirect_url_problem(url: &str) -> Option<String> {
    let bad = |why: &str| Some(format!("{why}: {url:?}"));
    let Some(rest) = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
    else {
        return bad("expected an http:// or https:// URL");
    };
    if url.len() > 2048 {
        return bad("expected at most 2048 bytes");
    }
    let host_end = rest.find(['/', '?', '#', '{']).unwrap_or(rest.len());
    let host = &rest[..host_end];
    if host.is_empty() || host.contains('@') {
        return bad("expected a host after the scheme (and no user info)");
    }
    // RFC 3986's characters, and the placeholder's braces
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-._~:/?#[]@!$&'()*+,;=%{}".contains(c);
    if !url.chars().all(allowed) {
        return bad("expected only characters a URL holds as they are (percent-encode the rest)");
    }
    let without = url.replacen("{path}", "", 1);
    if without.contains('{') || without.contains('}') {
        return bad("the only placeholder is {path}, at most once");
    }
    // the request's path and query go in the path: in a query or a
    // fragment they would add parameters of the client's choosing
    if let Some(at) = url.find("{path}") {
        if url[..at].contains(['?', '#']) {
            return bad("{path} belongs in the URL's path, not after ? or #");
        }
    }
    None
}

/// Why `url` cannot be an endpoint's `proxy_url`: it must be
/// `http://host[:port]` or `https://host[:port]` (a trailing `/` allowed),
/// with a DNS name or an address as host and nothing else.
pub fn proxy_url_problem(url: &str) -> Option<String> {
    let bad = |why: &str| Some(format!("{why}: {url:?}"));
    let Some(rest) = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
    else {
        return bad("expected an http:// or https:// URL");
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty() || authority.len() > 300 {
        return bad("expected a host after the scheme");
    }
    if authority.contains(['/', '?', '#', '@']) {
        return bad("expected only scheme://host[:port]: no path, query or user info");
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((ip, rest)) if ip.parse::<std::net::Ipv6Addr>().is_ok() => (None, rest),
            _ => return bad("expected an IPv6 address inside [ ]"),
        },
        None => match authority.rsplit_once(':') {
            Some((h, p)) => (Some(h), &authority[h.len()..][..p.len() + 1]),
            None => (Some(authority), ""),
        },
    };
    if let Some(p) = port.strip_prefix(':') {
        if !p.parse::<u16>().is_ok_and(|p| p > 0) || p.starts_with('+') {
            return bad("expected a port from 1 to 65535");
        }
    } else if !port.is_empty() {
        return bad("expected :port after the host");
    }
    let is_name = |h: &str| {
        h.len() <= 253
            && h.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            })
    };
    match host {
        Some(h) if h.parse::<std::net::Ipv4Addr>().is_err() && !is_name(h) => {
            bad("expected a DNS name or an address as host")
        }
        _ => None,
    }
}

/// A character that must not reach an operator's terminal as it is: a
/// control character, or a bidirectional formatting character (which
/// makes text show as other text).
pub fn unprintable(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}'
        )
}

fn id_problem(id: &str) -> Option<String> {
    if id.is_empty() {
        return Some("expected an endpoint id, got an empty string".into());
    }
    if id == "." || id == ".." {
        return Some(format!(
            "an endpoint id cannot be {id:?}: it cannot be named in a URL path"
        ));
    }
    (id.len() > 255 || id.chars().any(unprintable)).then(|| {
        format!("expected an id of at most 255 characters without control or bidirectional formatting characters, got {id:?}")
    })
}

fn endpoint_is_sound(f: &mut Found, at: &str, e: &Endpoint, declared: &[&str]) {
    f.maybe(format!("{at}.id"), id_problem(&e.id));
    if !crate::node::is_region_name(&e.region) {
        f.at(
            format!("{at}.region"),
            format!("expected a region name, got {:?}", e.region),
        );
    }
    if let super::EndpointAddress::Host(h) = &e.address {
        f.maybe(format!("{at}.address"), name_problem(h));
    }
    coordinates(f, at, e.lat, e.lon);
    f.maybe(format!("{at}.cost"), amount_problem(e.cost, "a cost"));
    f.maybe(format!("{at}.bias"), bias_problem(i64::from(e.bias)));
    for (region, ms) in &e.rtt_ms {
        let path = format!("{at}.rtt_ms.{region}");
        if !declared.contains(&region.as_str()) {
            f.at(
                &path,
                format!("no probe region named {region:?} (declare it under `regions`)"),
            );
        }
        f.maybe(&path, amount_problem(*ms, "milliseconds"));
    }
    if let Some(u) = &e.redirect_url {
        f.maybe(format!("{at}.redirect_url"), redirect_url_problem(u));
    }
    if let Some(u) = &e.proxy_url {
        f.maybe(format!("{at}.proxy_url"), proxy_url_problem(u));
    }
    if let Some(a) = &e.check_address {
        if let super::EndpointAddress::Host(h) = &a.host {
            f.maybe(format!("{at}.check_address"), name_problem(h));
        }
        if a.port == Some(0) {
            f.at(
                format!("{at}.check_address"),
                "expected a port 1..=65535, got 0",
            );
        }
    }
    for (field, addr) in [
        ("address", Some(&e.address)),
        ("check_address", e.check_address.as_ref().map(|a| &a.host)),
    ] {
        if let Some(super::EndpointAddress::Host(h)) = addr {
            if crate::policy::numeric_host(h.as_str()) {
                f.at(
                    format!("{at}.{field}"),
                    format!("{h} reads as a number, which clients take for an IPv4 address: give the address itself"),
                );
            }
        }
    }
}

/// A name that came in any way: it must be what [`DomainName::parse`]
/// makes of it.
fn name_problem(name: &DomainName) -> Option<String> {
    match DomainName::parse(name.as_str()) {
        Ok(n) if n == *name => None,
        Ok(_) => Some(format!(
            "{:?} is not an absolute domain name",
            name.as_str()
        )),
        Err(e) => Some(e),
    }
}

/// The check's interval: 1 s to 1 h.
pub fn interval_problem(ms: u64) -> Option<String> {
    (!(1_000..=3_600_000).contains(&ms))
        .then(|| format!("expected an interval from 1s to 1h, got {ms}ms"))
}

/// A probe's timeout: 100 ms up to the interval.
pub fn timeout_problem(ms: u64, interval_ms: u64) -> Option<String> {
    (ms < 100 || ms > interval_ms).then(|| {
        format!("expected a timeout from 100ms to the interval ({interval_ms}ms), got {ms}ms")
    })
}

/// `rise` and `fall`.
pub fn count_problem(n: u16) -> Option<String> {
    (!(1..=100).contains(&n)).then(|| format!("expected a count 1..=100, got {n}"))
}

/// A region goes stale no sooner than one interval, and within a day.
pub fn stale_after_problem(ms: u64, interval_ms: u64) -> Option<String> {
    (ms < interval_ms || ms > 86_400_000)
        .then(|| format!("expected from the interval ({interval_ms}ms) to 24h, got {ms}ms"))
}

/// Hold-down: at most a day.
pub fn hold_down_problem(ms: u64) -> Option<String> {
    (ms > 86_400_000).then(|| format!("expected at most 24h, got {ms}ms"))
}

/// A header value: not empty, no control characters (no CR or LF that
/// would start another header).
fn header_problem(v: &str, what: &str) -> Option<String> {
    (v.is_empty() || v.len() > 1024 || v.chars().any(char::is_control))
        .then(|| format!("expected {what} of 1 to 1024 characters without control characters"))
}

fn check_is_bounded(f: &mut Found, path: &str, c: &Check, declared: &[&str]) {
    let http = c.kind != CheckKind::Tcp;
    if c.port == 0 && c.kind != CheckKind::Tcp {
        f.at(format!("{path}.port"), "expected a port 1..=65535, got 0");
    }
    if http {
        if !c.path.starts_with('/')
            || c.path
                .chars()
                .any(|ch| ch.is_whitespace() || ch.is_control())
        {
            f.at(
                format!("{path}.path"),
                format!(
                    "expected an absolute path such as /health, got {:?}",
                    c.path
                ),
            );
        }
        if !matches!(c.method.as_str(), "GET" | "HEAD") {
            f.at(
                format!("{path}.method"),
                format!("expected GET or HEAD, got {:?}", c.method),
            );
        }
        if let Some(h) = &c.host {
            f.maybe(format!("{path}.host"), header_problem(h, "a Host header"));
        }
        f.maybe(
            format!("{path}.user_agent"),
            header_problem(&c.user_agent, "a User-Agent"),
        );
        if c.expect_status.is_empty()
            || c.expect_status
                .iter()
                .any(|(a, b)| *a < 100 || *b > 599 || a > b)
        {
            f.at(
                format!("{path}.expect_status"),
                "expected statuses within 100..=599",
            );
        }
        if c.body.as_ref().is_some_and(|b| b.len() > 4096) {
            f.at(
                format!("{path}.body"),
                "expected at most 4096 bytes to look for",
            );
        }
    }
    f.maybe(format!("{path}.interval"), interval_problem(c.interval_ms));
    f.maybe(
        format!("{path}.timeout"),
        timeout_problem(c.timeout_ms, c.interval_ms),
    );
    f.maybe(format!("{path}.rise"), count_problem(c.rise));
    f.maybe(format!("{path}.fall"), count_problem(c.fall));
    f.maybe(
        format!("{path}.stale_after"),
        stale_after_problem(c.stale_after_ms, c.interval_ms),
    );
    f.maybe(
        format!("{path}.hold_down"),
        hold_down_problem(c.hold_down_ms),
    );
    if c.regions.is_empty() {
        f.at(
            format!("{path}.regions"),
            "expected at least one probe region",
        );
    }
    for (i, r) in c.regions.iter().enumerate() {
        let at = format!("{path}.regions[{i}]");
        if !declared.contains(&r.as_str()) {
            f.at(
                &at,
                format!("no probe region named {r:?} (declare it under `regions`)"),
            );
        } else if c.regions[..i].contains(r) {
            f.at(&at, format!("region {r:?} is listed twice"));
        }
    }
    if c.quorum == 0 || c.quorum > c.regions.len().max(1) {
        f.at(
            format!("{path}.quorum"),
            format!(
                "expected a count of regions 1..={}, got {}",
                c.regions.len().max(1),
                c.quorum
            ),
        );
    }
}

fn tcp_check_has_ports(f: &mut Found, path: &str, c: &Check, endpoints: &[Endpoint]) {
    if c.kind != CheckKind::Tcp || c.port != 0 {
        return;
    }
    for (i, e) in endpoints.iter().enumerate() {
        if e.check_address.as_ref().is_none_or(|a| a.port.is_none()) {
            f.at(
                format!("{path}.endpoints[{i}]"),
                format!(
                    "the pool's tcp check has no port, so endpoint {:?} needs a check_address with one (host:port)",
                    e.id
                ),
            );
        }
    }
}

fn zones_are_distinct(f: &mut Found, zones: &[Zone]) {
    let mut seen = HashSet::new();
    for z in zones {
        if !seen.insert(z.name.key()) {
            f.at(
                format!("zones.{:?}", z.name.as_str()),
                format!("zone {} is defined twice", z.name),
            );
        }
    }
}

fn ttl(f: &mut Found, path: String, v: u32) {
    if v > MAX_TTL {
        f.at(path, format!("expected a TTL 0..={MAX_TTL}, got {v}"));
    }
}

fn zone_fields_are_bounded(f: &mut Found, path: &str, z: &Zone) {
    f.maybe(path, name_problem(&z.name));
    ttl(f, format!("{path}.ttl"), z.default_ttl);
    ttl(f, format!("{path}.soa.ttl"), z.soa.ttl);
    ttl(f, format!("{path}.soa.minimum"), z.soa.minimum);
    f.maybe(format!("{path}.soa.mname"), name_problem(&z.soa.mname));
    f.maybe(format!("{path}.soa.rname"), name_problem(&z.soa.rname));
    if z.ns.is_empty() {
        f.at(format!("{path}.ns"), "expected at least one name server");
    }
    for (i, ns) in z.ns.iter().enumerate() {
        f.maybe(format!("{path}.ns[{i}].name"), name_problem(&ns.name));
    }
    for (i, r) in z.records.iter().enumerate() {
        let at = format!("{path}.records[{i}]");
        f.maybe(format!("{at}.name"), name_problem(&r.name));
        ttl(f, format!("{at}.ttl"), r.ttl);
        if !r.name.is_within(&z.name) {
            f.at(
                format!("{at}.name"),
                format!("{} is outside the zone {}", r.name, z.name),
            );
        }
        if r.data.is_empty() {
            f.at(format!("{at}.values"), "expected at least one value");
        }
    }
}

/// In-zone name servers carry glue; others do not.
fn name_servers_have_glue_in_zone(f: &mut Found, path: &str, z: &Zone) {
    for (i, ns) in z.ns.iter().enumerate() {
        let inside = ns.name.is_within(&z.name);
        if inside && ns.addresses.is_empty() {
            f.at(
                format!("{path}.ns[{i}]"),
                format!(
                    "{} is inside the zone and needs glue: give `addresses`",
                    ns.name
                ),
            );
        }
        if !inside && !ns.addresses.is_empty() {
            f.at(
                format!("{path}.ns[{i}].addresses"),
                format!(
                    "{} is outside the zone: glue addresses belong only to in-zone name servers",
                    ns.name
                ),
            );
        }
    }
}

/// Each value is of the set's type and encodable: TXT strings of at most
/// 255 octets, a CAA tag of 1 to 15 letters and digits, names well formed,
/// one CNAME.
fn record_data_fits(f: &mut Found, path: &str, r: &RecordSet, z: &Zone) {
    if r.rtype == RecordType::Cname && r.data.len() != 1 {
        f.at(path, "a CNAME has exactly one value");
    }
    if r.rtype == RecordType::Ns && r.name.key() == z.name.key() {
        f.at(
            format!("{path}.type"),
            "apex NS records come from the zone's `ns` list",
        );
    }
    for (j, d) in r.data.iter().enumerate() {
        let at = format!("{path}.values[{j}]");
        let fits = matches!(
            (r.rtype, d),
            (RecordType::A, RecordData::A(_))
                | (RecordType::Aaaa, RecordData::Aaaa(_))
                | (RecordType::Cname, RecordData::Cname(_))
                | (RecordType::Mx, RecordData::Mx { .. })
                | (RecordType::Txt, RecordData::Txt(_))
                | (RecordType::Caa, RecordData::Caa { .. })
                | (RecordType::Srv, RecordData::Srv { .. })
                | (RecordType::Ns, RecordData::Ns(_))
        );
        if !fits {
            f.at(&at, format!("not {} data", r.rtype.as_str()));
            continue;
        }
        match d {
            RecordData::Cname(n)
            | RecordData::Ns(n)
            | RecordData::Mx { exchange: n, .. }
            | RecordData::Srv { target: n, .. } => f.maybe(&at, name_problem(n)),
            RecordData::Txt(strings) => {
                if strings.is_empty()
                    || strings.iter().any(|t| t.len() > 255)
                    || strings.iter().map(String::len).sum::<usize>() > 16_384
                {
                    f.at(
                        &at,
                        "expected TXT strings of at most 255 octets each, 16 KiB in all",
                    );
                }
            }
            RecordData::Caa { tag, value, .. } => {
                if tag.is_empty()
                    || tag.len() > 15
                    || !tag.bytes().all(|b| b.is_ascii_alphanumeric())
                {
                    f.at(
                        &at,
                        format!("expected a CAA tag of 1 to 15 letters and digits, got {tag:?}"),
                    );
                }
                if value.len() > 1024 || value.chars().any(char::is_control) {
                    f.at(&at, "expected a CAA value of at most 1024 characters without control characters");
                }
            }
            RecordData::A(_) | RecordData::Aaaa(_) => {}
        }
    }
}

/// One owner, one kind of answer: static sets unique per name and type, a
/// steered name apart from static data of its type, a CNAME alone and
/// never at the apex, nothing but glue at or below a delegation.
fn names_stand_alone(f: &mut Found, path: &str, z: &Zone) {
    use std::collections::{BTreeMap, BTreeSet};
    let mut at_owner: BTreeMap<String, BTreeSet<&'static str>> = BTreeMap::new();
    let apex = z.name.key();
    for (i, r) in z.records.iter().enumerate() {
        if !at_owner
            .entry(r.name.key())
            .or_default()
            .insert(r.rtype.as_str())
        {
            f.at(
                format!("{path}.records[{i}]"),
                format!("a second {} record set at {}", r.rtype.as_str(), r.name),
            );
        }
    }
    for (i, s) in z.steered.iter().enumerate() {
        let t = s.rtype.as_record_type().as_str();
        if !at_owner.entry(s.name.key()).or_default().insert(t) {
            f.at(
                format!("{path}.steered[{i}]"),
                format!("{t} at {} is already defined", s.name),
            );
        }
    }
    let cuts: Vec<String> = z
        .records
        .iter()
        .filter(|r| r.rtype == RecordType::Ns && r.name.key() != apex)
        .map(|r| r.name.key())
        .collect();
    for (owner, types) in &at_owner {
        if let Some(m) = wildcard_problem(owner) {
            f.at(path, format!("{owner}: {m}"));
        }
        if types.contains("NS") && owner.starts_with("*.") {
            f.at(path, format!("{owner}: {WILDCARD_NS}"));
        }
        if types.contains("CNAME") && types.len() > 1 {
            f.at(
                path,
                format!("a CNAME cannot stand beside other data at {owner}"),
            );
        }
        if types.contains("CNAME") && *owner == apex {
            f.at(
                path,
                "a CNAME cannot stand at the zone apex (beside SOA and NS)",
            );
        }
        for cut in &cuts {
            let below = owner == cut || owner.ends_with(&format!(".{cut}"));
            let glue_only = types
                .iter()
                .all(|t| matches!(*t, "A" | "AAAA") || (*t == "NS" && owner == cut));
            if below && !glue_only {
                f.at(
                    path,
                    format!("{owner} is at or below the delegation {cut}: only NS and glue addresses belong there"),
                );
            }
        }
    }
}

/// Why NS records at a wildcard are refused: the YAML check and the typed
/// one say it alike.
pub const WILDCARD_NS: &str = "a wildcard cannot delegate (RFC 4592 §4.2)";

/// A name whose `*` would never be served as the operator means it: a
/// wildcard is `*` as a whole first label (RFC 4592 §2.1.1); `a*b` or
/// `x.*.y` only ever match themselves.
pub fn wildcard_problem(name: impl AsRef<str>) -> Option<String> {
    let name = name.as_ref();
    let mut labels = name.trim_end_matches('.').split('.');
    let first = labels.next().unwrap_or_default();
    if first.contains('*') && first != "*" {
        return Some(format!(
            "{first:?}: a wildcard is `*` as a whole label (RFC 4592); a label with `*` among other characters matches only itself"
        ));
    }
    labels.any(|l| l.contains('*')).then(|| {
        "a wildcard is `*` as the first label only: names below a `*` label are never synthesized (RFC 4592)".to_string()
    })
}

/// A country code: two upper-case letters.
fn country_problem(code: &str) -> Option<String> {
    (code.len() != 2 || !code.bytes().all(|b| b.is_ascii_uppercase()))
        .then(|| format!("expected a country code of two upper-case letters, got {code:?}"))
}

fn steered_is_sound(f: &mut Found, path: &str, s: &SteeredRecord, spec: &ZoneSpec) {
    f.maybe(format!("{path}.name"), name_problem(&s.name));
    ttl(f, format!("{path}.ttl"), s.ttl);
    let Some(pool) = spec.pools.get(&s.pool) else {
        f.at(
            format!("{path}.pool"),
            format!("no pool named {:?}", s.pool),
        );
        return;
    };
    for (i, e) in pool.endpoints.iter().enumerate() {
        if !e.address.fits(s.rtype) {
            f.at(
                format!("{path}.pool"),
                format!(
                    "endpoint {:?} (pools.{}.endpoints[{i}]) has {}; a {} record needs {}",
                    e.id,
                    s.pool,
                    e.address.kind(),
                    s.rtype.as_record_type().as_str(),
                    super::wanted(s.rtype)
                ),
            );
        }
    }
    let hands_over = s.mode == super::SteeredMode::HttpFallback
        || s.on_all_down == super::OnAllDown::HttpFallback;
    if hands_over && s.rtype == super::SteeredType::Cname {
        f.at(
            path,
            "the HTTP fallback is reached by address: only A and AAAA records hand over to it",
        );
    }
    if s.http == super::HttpMode::Proxy && s.rtype == super::SteeredType::Cname {
        f.at(
            format!("{path}.http"),
            "proxy mode connects to the endpoints' addresses: only A and AAAA records can proxy",
        );
    }
    if let super::OnAllDown::Sorry(addrs) = &s.on_all_down {
        if addrs.is_empty() {
            f.at(
                format!("{path}.on_all_down.sorry"),
                "expected at least one address",
            );
        }
        for (i, a) in addrs.iter().enumerate() {
            if !a.fits(s.rtype) {
                f.at(
                    format!("{path}.on_all_down.sorry[{i}]"),
                    format!(
                        "a {} record needs {}",
                        s.rtype.as_record_type().as_str(),
                        super::wanted(s.rtype)
                    ),
                );
            }
        }
    }
    if s.steps.len() > 64 {
        f.at(format!("{path}.steps"), "at most 64 steps");
        return;
    }
    let pool_regions: Vec<&str> = pool.endpoints.iter().map(|e| e.region.as_str()).collect();
    let region_known = |r: &str| pool_regions.contains(&r);
    for (i, step) in s.steps.iter().enumerate() {
        let at = format!("{path}.steps[{i}]");
        match step {
            Step::First(0) => f.at(at, "expected first: 1 or more"),
            Step::Fence(rules) => {
                for (k, rule) in rules.iter().enumerate() {
                    let known = region_known(&rule.target)
                        || pool.endpoints.iter().any(|e| e.id == rule.target);
                    if !known {
                        f.at(
                            format!("{at}.fence[{k}]"),
                            format!("{:?} is no region or endpoint of the pool", rule.target),
                        );
                    }
                    for m in [&rule.allow, &rule.deny].into_iter().flatten() {
                        for c in &m.countries {
                            f.maybe(format!("{at}.fence[{k}]"), country_problem(c));
                        }
                        for c in &m.continents {
                            if !CONTINENTS.contains(&c.as_str()) {
                                f.at(format!("{at}.fence[{k}]"), format!("no continent {c:?}"));
                            }
                        }
                    }
                }
            }
            Step::Geo(g) => {
                let lists = g
                    .subdivisions
                    .iter()
                    .map(|(_, l)| l)
                    .chain(g.countries.iter().map(|(_, l)| l))
                    .chain(g.continents.iter().map(|(_, l)| l))
                    .chain(std::iter::once(&g.default));
                for list in lists {
                    for r in list {
                        if !crate::node::is_region_name(r) {
                            f.at(&at, format!("{r:?} is not a region name"));
                        }
                    }
                }
                for (c, _) in &g.countries {
                    f.maybe(&at, country_problem(c));
                }
                for (c, _) in &g.continents {
                    if !CONTINENTS.contains(&c.as_str()) {
                        f.at(&at, format!("no continent {c:?}"));
                    }
                }
            }
            Step::Cost(super::CostMargin::Ms(m) | super::CostMargin::Percent(m)) => {
                f.maybe(at, amount_problem(*m, "a margin"));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn proxy_urls() {
        for ok in [
            "http://192.0.2.1",
            "https://app.example.com:8443",
            "https://app.example.com/",
            "http://[2001:db8::1]:8080",
        ] {
            assert_eq!(proxy_url_problem(ok), None, "{ok}");
        }
        for bad in [
            "ftp://x.example",
            "https://",
            "https://x.example/base",
            "https://x.example?q",
            "https://u@x.example",
            "https://x.example:0",
            "https://x.example:99999",
            "https://x.example:+80",
            "https://x..example",
            "https://[::1",
            "https://[::1]x",
            "https://x_y.example",
        ] {
            assert!(proxy_url_problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn redirect_urls() {
        for ok in [
            "https://eu.app.example.com{path}",
            "http://[2001:db8::1]:8080/base{path}",
            "https://x.example/fixed?from=meridian",
        ] {
            assert_eq!(redirect_url_problem(ok), None, "{ok}");
        }
        for bad in [
            "ftp://x.example/",
            "https://{path}",
            "https://user@x.example/",
            "https://x.example/{path}{path}",
            "https://x.example/{host}",
            "https://x.example/a b",
            "https://x.example/\r\nSet-Cookie: a=b",
            "https://x.example/login?next={path}",
            "//x.example/",
        ] {
            assert!(redirect_url_problem(bad).is_some(), "{bad}");
        }
    }

    use super::*;

    const SPEC: &str = "zones:\n  glb.example.com:\n    soa: {rname: hostmaster.example.com.}\n    ns: [{name: ns.example.net.}]\n    steered:\n      - {name: www, type: A, pool: web, steps: [health, {first: 2}]}\nregions: {eu: {lat: 50, lon: 8}, us: {}}\npools:\n  web:\n    check: {kind: http, interval: 5s}\n    endpoints:\n      - {id: a, address: 192.0.2.1, region: eu, check_address: \"10.0.0.1:80\"}\n";

    fn spec() -> ZoneSpec {
        crate::zone::parse("t.yaml", SPEC).expect("valid")
    }

    fn violations(spec: &ZoneSpec) -> String {
        check(spec).unwrap_err().to_string()
    }

    #[test]
    fn a_valid_spec_passes() {
        assert_eq!(check(&spec()), Ok(()));
    }

    /// The spec the attack review sent as JSON: zero intervals and
    /// timeouts, quorum 0, latitude 1000, first: 0. Each is refused.
    #[test]
    fn a_hostile_spec_is_refused_field_by_field() {
        let mut s = spec();
        let pool = s.pools.get_mut("web").unwrap();
        let c = pool.check.as_mut().unwrap();
        c.interval_ms = 0;
        c.timeout_ms = 0;
        c.quorum = 0;
        c.user_agent = "x\r\nX-Evil: 1".into();
        pool.endpoints[0].lat = Some(1000.0);
        pool.endpoints[0].lon = Some(0.0);
        pool.endpoints[0].cost = f64::NAN;
        s.zones[0].steered[0].steps[1] = Step::First(0);
        s.regions[0].lon = Some(500.0);
        let text = violations(&s);
        for want in [
            "pools.web.check.interval: expected an interval from 1s to 1h, got 0ms",
            "pools.web.check.timeout: expected a timeout from 100ms",
            "pools.web.check.quorum: expected a count of regions 1..=2, got 0",
            "pools.web.check.user_agent: expected a User-Agent",
            "pools.web.endpoints[0].lat: expected a latitude -90..=90, got 1000",
            "pools.web.endpoints[0].cost: expected a cost >= 0, got NaN",
            "zones.\"glb.example.com.\".steered[0].steps[1]: expected first: 1 or more",
            "regions.eu.lon: expected a longitude",
        ] {
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
        }
    }

    #[test]
    fn references_and_names_are_checked() {
        let mut s = spec();
        s.zones[0].steered[0].pool = "missing".into();
        let copy = s.pools["web"].endpoints[0].clone();
        s.pools.get_mut("web").unwrap().endpoints.push(copy);
        let text = violations(&s);
        assert!(
            text.contains("steered[0].pool: no pool named \"missing\""),
            "{text}"
        );
        assert!(
            text.contains("endpoints[1].id: duplicate endpoint id"),
            "{text}"
        );
        let json = serde_json::to_string(&spec())
            .unwrap()
            .replace("\"ns.example.net.\"", "\"evil name\\r\\n.\"");
        let err = serde_json::from_str::<ZoneSpec>(&json).unwrap_err();
        assert!(err.to_string().contains("not a domain name"), "{err}");
    }

    /// What the attack review sent as JSON after the first rules: each is
    /// now refused with its path.
    #[test]
    fn records_and_names_a_resolver_would_choke_on_are_refused() {
        use crate::zone::{NameServer, RecordData, RecordSet, RecordType};
        let name = |n: &str| DomainName::parse(n).unwrap();
        let mut s = spec();
        let z = &mut s.zones[0];
        z.records.push(RecordSet {
            name: name("t.glb.example.com."),
            rtype: RecordType::Txt,
            ttl: 60,
            data: vec![RecordData::Txt(vec!["x".repeat(1000)])],
        });
        z.records.push(RecordSet {
            name: name("c.glb.example.com."),
            rtype: RecordType::Caa,
            ttl: 60,
            data: vec![RecordData::Caa {
                critical: false,
                tag: "bad tag\r\n".into(),
                value: "x".into(),
            }],
        });
        z.records.push(RecordSet {
            name: name("m.glb.example.com."),
            rtype: RecordType::A,
            ttl: 60,
            data: vec![RecordData::Txt(vec!["not an address".into()])],
        });
        z.records.push(RecordSet {
            name: name("www.glb.example.com."),
            rtype: RecordType::A,
            ttl: 60,
            data: vec![RecordData::A("192.0.2.9".parse().unwrap())],
        });
        z.records.push(RecordSet {
            name: name("two.glb.example.com."),
            rtype: RecordType::Cname,
            ttl: 60,
            data: vec![
                RecordData::Cname(name("a.example.")),
                RecordData::Cname(name("b.example.")),
            ],
        });
        z.ns.push(NameServer {
            name: name("ns9.glb.example.com."),
            addresses: Vec::new(),
        });
        let mut outside = z.steered[0].clone();
        outside.name = name("www.victim.org.");
        z.steered.push(outside);
        let pool = s.pools["web"].clone();
        s.pools.insert(
            "bad\r\nname".into(),
            Pool {
                name: "bad\r\nname".into(),
                ..pool
            },
        );
        let text = violations(&s);
        for want in [
            "records[0].values[0]: expected TXT strings of at most 255 octets",
            "records[1].values[0]: expected a CAA tag",
            "records[2].values[0]: not A data",
            "steered[0]: A at www.glb.example.com. is already defined",
            "records[4]: a CNAME has exactly one value",
            "ns[1]: ns9.glb.example.com. is inside the zone and needs glue",
            "steered[1].name: www.victim.org. is outside the zone",
            "a pool name is letters, digits",
        ] {
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
        }
    }
}
