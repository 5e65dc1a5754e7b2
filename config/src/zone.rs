//! The zone spec (`zones.yaml`): zones with their static records, pools of
//! endpoints, and steered records.
//!
//! Parsing runs in two stages. [`raw`] holds serde structs that mirror the
//! file (unknown keys rejected); [`validate`] checks every cross-field rule
//! and produces the [`ZoneSpec`] the rest of Meridian uses, or every problem
//! found, each with its file position and field path.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

use crate::values::{DomainName, Ttl};
use crate::yaml::{index_segment, key_segment, Document, Lenient};
use crate::{Diagnostic, Diagnostics};

/// A validated zone spec.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ZoneSpec {
    pub zones: Vec<Zone>,
    pub pools: BTreeMap<String, Pool>,
    /// Probe regions, for the `latency` and `cost` steps.
    pub regions: Vec<ProbeRegion>,
}

/// One authoritative zone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Zone {
    pub name: DomainName,
    /// TTL for records that do not give one.
    pub default_ttl: u32,
    pub soa: Soa,
    pub ns: Vec<NameServer>,
    pub records: Vec<RecordSet>,
    pub steered: Vec<SteeredRecord>,
}

/// SOA fields; the serial is not configured, it follows the state version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Soa {
    pub mname: DomainName,
    pub rname: DomainName,
    pub refresh: u32,
    pub retry: u32,
    pub expire: u32,
    /// Negative-caching TTL (RFC 2308).
    pub minimum: u32,
    /// TTL of the SOA record itself.
    pub ttl: u32,
}

/// An apex name server, with glue addresses when its name is in the zone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NameServer {
    pub name: DomainName,
    pub addresses: Vec<IpAddr>,
}

/// The record types a static record set may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum RecordType {
    A,
    #[serde(rename = "AAAA")]
    Aaaa,
    #[serde(rename = "CNAME")]
    Cname,
    #[serde(rename = "MX")]
    Mx,
    #[serde(rename = "TXT")]
    Txt,
    #[serde(rename = "CAA")]
    Caa,
    #[serde(rename = "SRV")]
    Srv,
    #[serde(rename = "NS")]
    Ns,
}

impl RecordType {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordType::A => "A",
            RecordType::Aaaa => "AAAA",
            RecordType::Cname => "CNAME",
            RecordType::Mx => "MX",
            RecordType::Txt => "TXT",
            RecordType::Caa => "CAA",
            RecordType::Srv => "SRV",
            RecordType::Ns => "NS",
        }
    }
}

/// The data of one static record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RecordData {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Cname(DomainName),
    Mx {
        preference: u16,
        exchange: DomainName,
    },
    /// Character strings, each at most 255 octets.
    Txt(Vec<String>),
    Caa {
        critical: bool,
        tag: String,
        value: String,
    },
    Srv {
        priority: u16,
        weight: u16,
        port: u16,
        target: DomainName,
    },
    Ns(DomainName),
}

/// All records of one name and type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordSet {
    pub name: DomainName,
    pub rtype: RecordType,
    pub ttl: u32,
    pub data: Vec<RecordData>,
}

/// The types a steered record answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
pub enum SteeredType {
    A,
    #[serde(rename = "AAAA")]
    Aaaa,
    #[serde(rename = "CNAME")]
    Cname,
}

impl SteeredType {
    pub fn as_record_type(self) -> RecordType {
        match self {
            SteeredType::A => RecordType::A,
            SteeredType::Aaaa => RecordType::Aaaa,
            SteeredType::Cname => RecordType::Cname,
        }
    }
}

/// A name whose answer the steering pipeline computes per query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SteeredRecord {
    pub name: DomainName,
    pub rtype: SteeredType,
    pub ttl: u32,
    pub pool: String,
    pub steps: Vec<Step>,
    pub on_all_down: OnAllDown,
    #[serde(default, skip_serializing_if = "SteeredMode::is_dns")]
    pub mode: SteeredMode,
    /// How the HTTP fallback answers requests for this name.
    #[serde(default, skip_serializing_if = "HttpMode::is_redirect")]
    pub http: HttpMode,
    /// In proxy mode, the `Host` sent to the endpoint.
    #[serde(default, skip_serializing_if = "ProxyHost::is_keep")]
    pub proxy_host: ProxyHost,
}

/// One step of a steering pipeline, as configured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Step {
    /// Drop endpoints that are not enabled (and, later, not healthy).
    Health,
    /// Keep only the best (lowest) priority tier that has candidates.
    Priority,
    /// Order candidates by weight: a random draw, or with `sticky` a hash of
    /// the client subnet so one subnet keeps its endpoint.
    Weighted { sticky: bool },
    /// Keep at most this many candidates.
    First(u16),
    /// Drop endpoints the client may not use.
    Fence(Vec<FenceRule>),
    /// Keep the client's preferred region, by geography.
    Geo(GeoMap),
    /// Order by distance from the client, with each endpoint's bias.
    Nearest,
    /// Order by RTT from the probe region nearest the client.
    Latency,
    /// Among endpoints near the best latency, prefer the cheapest.
    Cost(CostMargin),
}

/// Who may use the endpoints of one region (or one endpoint).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FenceRule {
    /// A region name or an endpoint id of the record's pool; an endpoint id
    /// rule wins over its region's.
    pub target: String,
    /// When set, only clients matching it.
    pub allow: Option<ClientMatch>,
    /// Never clients matching it.
    pub deny: Option<ClientMatch>,
}

/// Clients by where they are. Codes are upper case.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ClientMatch {
    pub countries: Vec<String>,
    pub continents: Vec<String>,
    /// (country, subdivision), from `US-CA`.
    pub subdivisions: Vec<(String, String)>,
    pub asns: Vec<u32>,
    pub cidrs: Vec<ipnet::IpNet>,
}

/// Geography → preferred regions, most specific first: subdivision,
/// country, continent, then `default`. Each list is a failover order.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct GeoMap {
    pub subdivisions: Vec<((String, String), Vec<String>)>,
    pub countries: Vec<(String, Vec<String>)>,
    pub continents: Vec<(String, Vec<String>)>,
    pub default: Vec<String>,
}

/// How close to the best latency an endpoint must be for `cost` to
/// consider it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum CostMargin {
    Ms(f64),
    Percent(f64),
}

/// Continent codes of the GeoIP2 schema.
pub const CONTINENTS: [&str; 7] = ["AF", "AN", "AS", "EU", "NA", "OC", "SA"];

/// What to answer when the pipeline leaves no candidate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum OnAllDown {
    /// Answer every enabled endpoint, healthy or not.
    FailOpen,
    /// Answer NODATA.
    NoData,
    /// Answer this fixed set.
    Sorry(Vec<EndpointAddress>),
    /// Answer the HTTP fallback's addresses (A and AAAA records): it
    /// redirects each client once an endpoint is back.
    HttpFallback,
}

/// How a steered record answers DNS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SteeredMode {
    /// The pipeline's endpoints.
    #[default]
    Dns,
    /// Always the HTTP fallback's addresses: clients are steered by their
    /// own address, request by request (A and AAAA records).
    HttpFallback,
}

impl SteeredMode {
    fn is_dns(&self) -> bool {
        *self == SteeredMode::Dns
    }
}

/// How the HTTP fallback answers a steered name's requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HttpMode {
    /// A redirect to the chosen endpoint's `redirect_url`.
    #[default]
    Redirect,
    /// The request is forwarded to the chosen endpoint (its `proxy_url`,
    /// at its address) and the answer streamed back.
    Proxy,
}

impl HttpMode {
    fn is_redirect(&self) -> bool {
        *self == HttpMode::Redirect
    }
}

/// The `Host` a proxied request carries to the endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProxyHost {
    /// The client's own `Host`.
    #[default]
    Keep,
    /// The host of the endpoint's `proxy_url`.
    Endpoint,
}

impl ProxyHost {
    fn is_keep(&self) -> bool {
        *self == ProxyHost::Keep
    }
}

/// A named set of endpoints that steered records choose from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pool {
    pub name: String,
    pub endpoints: Vec<Endpoint>,
    /// The health check probe agents run against each endpoint.
    pub check: Option<Check>,
}

/// Where an endpoint is reached: an address for A/AAAA answers, a host name
/// for CNAME answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EndpointAddress {
    Ip(IpAddr),
    Host(DomainName),
}

impl EndpointAddress {
    fn parse(text: &str) -> Result<EndpointAddress, String> {
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Ok(EndpointAddress::Ip(ip));
        }
        DomainName::parse(text)
            .map(EndpointAddress::Host)
            .map_err(|_| format!("expected an IP address or a host name, got {text:?}"))
    }

    fn fits(&self, t: SteeredType) -> bool {
        matches!(
            (self, t),
            (EndpointAddress::Ip(IpAddr::V4(_)), SteeredType::A)
                | (EndpointAddress::Ip(IpAddr::V6(_)), SteeredType::Aaaa)
                | (EndpointAddress::Host(_), SteeredType::Cname)
        )
    }

    fn kind(&self) -> &'static str {
        match self {
            EndpointAddress::Ip(IpAddr::V4(_)) => "an IPv4 address",
            EndpointAddress::Ip(IpAddr::V6(_)) => "an IPv6 address",
            EndpointAddress::Host(_) => "a host name",
        }
    }
}

impl std::fmt::Display for EndpointAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EndpointAddress::Ip(ip) => ip.fmt(f),
            EndpointAddress::Host(h) => h.fmt(f),
        }
    }
}

/// Whether an operator wants an endpoint in answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AdminState {
    /// In service.
    #[default]
    Enabled,
    /// Taking no new clients; existing ones finish (no DNS answers).
    Drained,
    /// Out of service.
    Disabled,
}

/// One backend that steered records can answer with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Endpoint {
    pub id: String,
    pub address: EndpointAddress,
    pub region: String,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    pub weight: u16,
    pub cost: f64,
    /// Failover tier: lower is preferred.
    pub priority: u16,
    pub state: AdminState,
    /// `nearest` bias, -99..=99: positive draws clients from farther away
    /// (distance × (1 − bias/100)), negative pushes them off.
    pub bias: i8,
    /// Static RTT in ms from probe regions: overrides what probes measure.
    pub rtt_ms: BTreeMap<String, f64>,
    /// Where the pool's check connects, when not `address`.
    pub check_address: Option<CheckAddress>,
    /// Where the HTTP fallback sends a client this endpoint is chosen
    /// for: an http(s) URL, `{path}` standing for the request's path and
    /// query (`https://eu.app.example.com{path}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_url: Option<String>,
    /// Where the HTTP fallback forwards requests for records in proxy
    /// mode: `http(s)://host[:port]`, connected to at the endpoint's
    /// address (the host is the TLS name and, if asked, the `Host`);
    /// default `http://ADDRESS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_url: Option<String>,
}

/// A probe region: where latency is measured from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeRegion {
    pub name: String,
    /// Where the region is; a region without coordinates runs checks but is
    /// never the region nearest a client.
    pub lat: Option<f64>,
    pub lon: Option<f64>,
}

pub mod raw;

/// Default TTL of a zone's records.
pub const DEFAULT_ZONE_TTL: u32 = 3600;
/// Default TTL of steered answers: short, so changes reach clients soon.
pub const DEFAULT_STEERED_TTL: u32 = 30;

/// Parses and validates a zone spec. `file` names the source in messages.
pub fn parse(file: &str, text: &str) -> Result<ZoneSpec, Diagnostics> {
    // the quick way for a file that parses: its text straight into the
    // typed structs, positions indexed only if a rule fails
    if let Some(doc) = Document::checked(file, text)? {
        if let Ok(raw) = serde_yaml::from_str::<raw::ZoneSpec>(text) {
            return checked(&doc, raw);
        }
    }
    // else through the value tree, which reports every error in place
    parse_document(Document::parse(file, text)?)
}

/// What `meridian check` warns about in `spec`, parsed from `text` (see
/// [`rules::warnings`]), each placed on its line.
pub fn warnings(file: &str, text: &str, spec: &ZoneSpec) -> Vec<Diagnostic> {
    let found = rules::warnings(spec);
    if found.is_empty() {
        return Vec::new();
    }
    let doc = Document::parse(file, text)
        .unwrap_or_else(|_| Document::from_value(file, Default::default()));
    let mut found = found
        .into_iter()
        .map(|v| doc.error(&in_file(&doc, &v.path), v.message))
        .collect::<Vec<_>>();
    found.sort_by_key(|d| (d.line, d.column));
    found
}

/// Validates a spec given as a value (no positions: diagnostics carry the
/// field path, at line 1).
fn parse_value(file: &str, value: serde_yaml::Value) -> Result<ZoneSpec, Diagnostics> {
    parse_document(Document::from_value(file, value))
}

fn parse_document(mut doc: Document) -> Result<ZoneSpec, Diagnostics> {
    // the typed structs take the value tree over; the document keeps what
    // diagnostics need
    let value = std::mem::take(&mut doc.value);
    let doc = &doc;
    let raw: raw::ZoneSpec = match crate::yaml::parse_value(value) {
        Ok(r) => r,
        Err(f) => return Err(Diagnostics(vec![doc.parse_error("", &f)])),
    };
    checked(doc, raw)
}

/// Validates the typed structs of `doc`, then the rules.
fn checked(doc: &Document, raw: raw::ZoneSpec) -> Result<ZoneSpec, Diagnostics> {
    let spec = validate(doc, raw)?;
    // the typed rules every spec passes, however it arrives
    match rules::check(&spec) {
        Ok(()) => Ok(spec),
        Err(v) => Err(Diagnostics(
            v.0.into_iter()
                .map(|v| doc.error(&in_file(doc, &v.path), v.message))
                .collect(),
        )),
    }
}

/// A typed rule's field path as the file spells it: the rules name a zone
/// by its absolute name (`zones."example.com."`), the file may key it
/// without the final dot.
fn in_file(doc: &Document, path: &str) -> String {
    let Some(rest) = path.strip_prefix("zones.\"") else {
        return path.to_string();
    };
    let Some(end) = rest.find('"') else {
        return path.to_string();
    };
    let (name, tail) = (&rest[..end], &rest[end + 1..]);
    [name, name.trim_end_matches('.')]
        .into_iter()
        .map(|n| key_segment("zones", n))
        .find(|p| doc.positions().has(p))
        .map_or_else(|| path.to_string(), |p| format!("{p}{tail}"))
}

/// Collects diagnostics against one document.
struct Checker<'d> {
    doc: &'d Document,
    errors: Vec<Diagnostic>,
}

impl Checker<'_> {
    fn err(&mut self, path: &str, message: impl Into<String>) {
        self.errors.push(self.doc.error(path, message));
    }

    fn key_err(&mut self, path: &str, message: impl Into<String>) {
        self.errors.push(self.doc.key_error(path, message));
    }

    /// Unwraps a lenient item, recording its failure.
    fn item<'a, T>(&mut self, path: &str, item: &'a Lenient<T>) -> Option<&'a T> {
        match item {
            Lenient::Ok(t) => Some(t),
            Lenient::Failed(f) => {
                self.errors.push(self.doc.parse_error(path, f));
                None
            }
        }
    }

    /// Checks optional coordinates: in range, and both or neither.
    fn coordinates(&mut self, path: &str, lat: Option<f64>, lon: Option<f64>) {
        for (field, m) in rules::coordinates_problem(lat, lon) {
            if field.is_empty() {
                self.err(path, m);
            } else {
                self.err(&format!("{path}.{field}"), m);
            }
        }
    }

    fn maybe(&mut self, path: &str, problem: Option<String>) {
        if let Some(m) = problem {
            self.err(path, m);
        }
    }

    /// Resolves an owner name written in a zone: `@`, relative, or absolute.
    fn owner(&mut self, path: &str, text: &str, zone: &DomainName) -> Option<DomainName> {
        let full = if text == "@" {
            zone.as_str().to_string()
        } else if text.ends_with('.') {
            text.to_string()
        } else if zone.as_str() == "." {
            format!("{text}.")
        } else {
            format!("{text}.{zone}")
        };
        match DomainName::parse(&full) {
            Ok(n) if !n.is_within(zone) => {
                self.err(path, format!("{n} is outside its zone {zone}"));
                None
            }
            Ok(n) => match rules::wildcard_problem(n.as_str()) {
                Some(m) => {
                    self.err(path, m);
                    None
                }
                None => Some(n),
            },
            Err(e) => {
                self.err(path, e);
                None
            }
        }
    }

    /// A name used as record data (targets): absolute, or relative to the zone.
    fn target(&mut self, path: &str, text: &str, zone: &DomainName) -> Option<DomainName> {
        let full = if text.ends_with('.') || text == "@" {
            if text == "@" {
                zone.as_str().to_string()
            } else {
                text.to_string()
            }
        } else {
            format!("{text}.{zone}")
        };
        match DomainName::parse(&full) {
            Ok(n) => Some(n),
            Err(e) => {
                self.err(path, e);
                None
            }
        }
    }
}

fn validate(doc: &Document, raw: raw::ZoneSpec) -> Result<ZoneSpec, Diagnostics> {
    let mut c = Checker {
        doc,
        errors: Vec::new(),
    };

    let mut regions = Vec::new();
    for (name, item) in &raw.regions {
        let path = key_segment("regions", name);
        if !crate::node::is_region_name(name) {
            c.key_err(
                &path,
                format!("expected a region name (letters, digits, '.', '_', '-'), got {name:?}"),
            );
        }
        if let Some(r) = c.item(&path, item) {
            c.coordinates(&path, r.lat, r.lon);
            regions.push(ProbeRegion {
                name: name.clone(),
                lat: r.lat,
                lon: r.lon,
            });
        }
    }

    let mut pools = BTreeMap::new();
    for (name, item) in &raw.pools {
        let path = key_segment("pools", name);
        if let Some(p) = c.item(&path, item) {
            if let Some(pool) = validate_pool(&mut c, &path, name, p, &raw.regions) {
                pools.insert(name.clone(), pool);
            }
        }
    }

    let mut zones = Vec::new();
    let mut zone_names: HashMap<String, String> = HashMap::new();
    for (name, item) in &raw.zones {
        let path = key_segment("zones", name);
        let zname = match DomainName::parse(name) {
            Ok(n) => n,
            Err(e) => {
                c.key_err(&path, e);
                continue;
            }
        };
        if let Some(first) = zone_names.insert(zname.key(), name.clone()) {
            c.key_err(
                &path,
                format!("zone {zname} is defined twice (also as {first:?})"),
            );
            continue;
        }
        if let Some(z) = c.item(&path, item) {
            if let Some(zone) = validate_zone(&mut c, &path, zname, z, &raw.pools, &pools, &regions)
            {
                zones.push(zone);
            }
        }
    }

    if c.errors.is_empty() {
        Ok(ZoneSpec {
            zones,
            pools,
            regions,
        })
    } else {
        c.errors.sort_by_key(|d| (d.line, d.column));
        Err(Diagnostics(c.errors))
    }
}

fn validate_pool(
    c: &mut Checker<'_>,
    path: &str,
    name: &str,
    raw: &raw::Pool,
    regions: &BTreeMap<String, Lenient<raw::Region>>,
) -> Option<Pool> {
    let before = c.errors.len();
    let mut endpoints = Vec::new();
    let mut ids: HashSet<&str> = HashSet::new();
    if raw.endpoints.is_empty() {
        c.err(path, format!("pool {name} has no endpoints"));
    }
    // steering indexes endpoints with 16 bits
    if raw.endpoints.len() > usize::from(u16::MAX) {
        c.err(
            &format!("{path}.endpoints"),
            format!(
                "a pool holds at most {} endpoints, got {}",
                u16::MAX,
                raw.endpoints.len()
            ),
        );
    }
    for (i, item) in raw.endpoints.iter().enumerate() {
        let ep_path = index_segment(&format!("{path}.endpoints"), i);
        let Some(e) = c.item(&ep_path, item) else {
            continue;
        };
        if !ids.insert(&e.id) {
            c.err(
                &format!("{ep_path}.id"),
                format!("duplicate endpoint id {:?} in pool {name}", e.id),
            );
        }
        if e.id.is_empty() {
            c.err(
                &format!("{ep_path}.id"),
                "expected an endpoint id, got an empty string",
            );
        }
        let address = match EndpointAddress::parse(&e.address) {
            Ok(a) => Some(a),
            Err(m) => {
                c.err(&format!("{ep_path}.address"), m);
                None
            }
        };
        c.coordinates(&ep_path, e.lat, e.lon);
        let check_address = e.check_address.as_deref().and_then(|t| {
            CheckAddress::parse(t)
                .map_err(|m| c.err(&format!("{ep_path}.check_address"), m))
                .ok()
        });
        let bias = e.bias.unwrap_or(0);
        c.maybe(&format!("{ep_path}.bias"), rules::bias_problem(bias));
        for (region, ms) in &e.rtt_ms {
            let at = key_segment(&format!("{ep_path}.rtt_ms"), region);
            if !regions.contains_key(region) {
                c.key_err(
                    &at,
                    format!("no probe region named {region:?} (declare it under `regions`)"),
                );
            }
            c.maybe(&at, rules::amount_problem(*ms, "milliseconds"));
        }
        let cost = e.cost.unwrap_or(0.0);
        c.maybe(
            &format!("{ep_path}.cost"),
            rules::amount_problem(cost, "a cost"),
        );
        if let Some(address) = address {
            endpoints.push(Endpoint {
                id: e.id.clone(),
                address,
                region: e.region.clone(),
                lat: e.lat,
                lon: e.lon,
                weight: e.weight.map_or(1, |w| w.0),
                cost,
                priority: e.priority.map_or(1, |p| p.0),
                state: e.state,
                bias: i8::try_from(bias).unwrap_or(0),
                rtt_ms: e.rtt_ms.clone(),
                check_address,
                redirect_url: e.redirect_url.clone(),
                proxy_url: e.proxy_url.clone(),
            });
        }
    }
    let declared: Vec<&str> = regions.keys().map(String::as_str).collect();
    let check = raw.check.as_ref().and_then(|item| {
        let at = format!("{path}.check");
        let raw = c.item(&at, item)?;
        validate_check(c, &at, raw, &declared)
    });
    if check
        .as_ref()
        .is_some_and(|k| k.kind == CheckKind::Tcp && k.port == 0)
    {
        for (i, e) in endpoints.iter().enumerate() {
            if e.check_address.as_ref().is_none_or(|a| a.port.is_none()) {
                c.err(
                    &index_segment(&format!("{path}.endpoints"), i),
                    format!(
                        "the pool's tcp check has no port, so endpoint {:?} needs a check_address with one (host:port)",
                        e.id
                    ),
                );
            }
        }
    }
    (c.errors.len() == before).then(|| Pool {
        name: name.to_string(),
        endpoints,
        check,
    })
}

/// What is defined at one owner name, for the CNAME and delegation rules.
#[derive(Default)]
struct NameUse {
    types: Vec<(RecordType, String)>,
}

fn validate_zone(
    c: &mut Checker<'_>,
    path: &str,
    name: DomainName,
    z: &raw::Zone,
    raw_pools: &BTreeMap<String, Lenient<raw::Pool>>,
    pools: &BTreeMap<String, Pool>,
    regions: &[ProbeRegion],
) -> Option<Zone> {
    let before = c.errors.len();
    let default_ttl = z.ttl.map_or(DEFAULT_ZONE_TTL, |t| t.0);

    // SOA
    let soa_path = format!("{path}.soa");
    let rname = c.target(&format!("{soa_path}.rname"), &z.soa.rname, &name);
    let ns_names: Vec<Option<DomainName>> =
        z.ns.iter()
            .enumerate()
            .map(|(i, ns)| {
                c.target(
                    &format!("{}.name", index_segment(&format!("{path}.ns"), i)),
                    &ns.name,
                    &name,
                )
            })
            .collect();
    let mname = match &z.soa.mname {
        Some(m) => c.target(&format!("{soa_path}.mname"), m, &name),
        None => ns_names.first().cloned().flatten(),
    };
    if z.ns.is_empty() {
        c.err(
            &format!("{path}.ns"),
            "a zone needs at least one name server",
        );
    }

    let mut ns = Vec::new();
    let mut seen_ns = HashSet::new();
    for (i, (raw_ns, nsname)) in z.ns.iter().zip(&ns_names).enumerate() {
        let ns_path = index_segment(&format!("{path}.ns"), i);
        let Some(nsname) = nsname else { continue };
        if !seen_ns.insert(nsname.key()) {
            c.err(
                &format!("{ns_path}.name"),
                format!("name server {nsname} is listed twice"),
            );
        }
        let in_zone = nsname.is_within(&name);
        if !in_zone && !raw_ns.addresses.is_empty() {
            c.err(
                &format!("{ns_path}.addresses"),
                format!("{nsname} is outside the zone: glue addresses belong only to in-zone name servers"),
            );
        }
        ns.push(NameServer {
            name: nsname.clone(),
            addresses: raw_ns.addresses.clone(),
        });
    }

    // Static records.
    let mut uses: HashMap<String, NameUse> = HashMap::new();
    let mut records: Vec<RecordSet> = Vec::new();
    for (i, item) in z.records.iter().enumerate() {
        let r_path = index_segment(&format!("{path}.records"), i);
        let Some(r) = c.item(&r_path, item) else {
            continue;
        };
        let Some(owner) = c.owner(&format!("{r_path}.name"), &r.name, &name) else {
            continue;
        };
        let ttl = r.ttl.map_or(default_ttl, |t| t.0);
        let mut texts: Vec<(String, &str)> = Vec::new();
        if let Some(v) = &r.value {
            texts.push((format!("{r_path}.value"), v.0.as_str()));
        }
        for (j, v) in r.values.iter().enumerate() {
            texts.push((index_segment(&format!("{r_path}.values"), j), v.0.as_str()));
        }
        if texts.is_empty() {
            c.err(&r_path, "a record needs `value` or `values`");
            continue;
        }
        if r.value.is_some() && !r.values.is_empty() {
            c.err(&r_path, "give `value` or `values`, not both");
        }
        if r.rtype == RecordType::Cname && texts.len() > 1 {
            c.err(&r_path, "a CNAME has exactly one value");
        }
        if r.rtype == RecordType::Ns && owner.as_str().starts_with("*.") {
            c.err(
                &format!("{r_path}.type"),
                format!("{}: name each delegated child", rules::WILDCARD_NS),
            );
            continue;
        }
        if r.rtype == RecordType::Ns && owner.key() == name.key() {
            c.err(
                &format!("{r_path}.type"),
                "apex NS records come from the zone's `ns` list",
            );
            continue;
        }
        let mut data = Vec::new();
        for (vpath, text) in &texts {
            match parse_rdata(r.rtype, text, &name) {
                Ok(d) => data.push(d),
                Err(m) => c.err(vpath, m),
            }
        }
        let u = uses.entry(owner.key()).or_default();
        if let Some((_, first)) = u.types.iter().find(|(t, _)| *t == r.rtype) {
            c.err(
                &r_path,
                format!(
                    "duplicate {} record set at {owner} (first at {first}); put all values in one entry",
                    r.rtype.as_str()
                ),
            );
            continue;
        }
        u.types.push((r.rtype, r_path.clone()));
        records.push(RecordSet {
            name: owner,
            rtype: r.rtype,
            ttl,
            data,
        });
    }

    // Steered records.
    let mut steered = Vec::new();
    for (i, item) in z.steered.iter().enumerate() {
        let s_path = index_segment(&format!("{path}.steered"), i);
        let Some(s) = c.item(&s_path, item) else {
            continue;
        };
        let Some(owner) = c.owner(&format!("{s_path}.name"), &s.name, &name) else {
            continue;
        };
        let rtype = s.rtype.as_record_type();
        let u = uses.entry(owner.key()).or_default();
        if let Some((_, first)) = u.types.iter().find(|(t, _)| *t == rtype) {
            c.err(
                &s_path,
                format!(
                    "{} at {owner} is already defined at {first}",
                    rtype.as_str()
                ),
            );
            continue;
        }
        u.types.push((rtype, s_path.clone()));
        match pools.get(&s.pool) {
            Some(pool) => {
                for (j, ep) in pool.endpoints.iter().enumerate() {
                    if !ep.address.fits(s.rtype) {
                        c.err(
                            &format!("{s_path}.pool"),
                            format!(
                                "a steered {} record needs {}, but endpoint {:?} (pools.{}.endpoints[{j}]) has {} {}",
                                rtype.as_str(),
                                wanted(s.rtype),
                                ep.id,
                                s.pool,
                                ep.address.kind(),
                                ep.address
                            ),
                        );
                    }
                }
            }
            // a pool that exists but failed to parse was reported already
            None if raw_pools.contains_key(&s.pool) => {}
            None => c.err(
                &format!("{s_path}.pool"),
                format!("no pool named {:?}", s.pool),
            ),
        }
        let steps = validate_steps(c, &s_path, &s.steps, pools.get(&s.pool), regions);
        let on_all_down = match &s.on_all_down {
            None | Some(raw::OnAllDown::FailOpen) => OnAllDown::FailOpen,
            Some(raw::OnAllDown::NoData) => OnAllDown::NoData,
            Some(raw::OnAllDown::HttpFallback) => OnAllDown::HttpFallback,
            Some(raw::OnAllDown::Sorry(list)) => {
                let mut set = Vec::new();
                for (j, t) in list.iter().enumerate() {
                    let p = index_segment(&format!("{s_path}.on_all_down.sorry"), j);
                    match EndpointAddress::parse(&t.0) {
                        Ok(a) if a.fits(s.rtype) => set.push(a),
                        Ok(a) => c.err(
                            &p,
                            format!(
                                "a {} record needs {}, got {}",
                                rtype.as_str(),
                                wanted(s.rtype),
                                a.kind()
                            ),
                        ),
                        Err(m) => c.err(&p, m),
                    }
                }
                if set.is_empty() && list.is_empty() {
                    c.err(
                        &format!("{s_path}.on_all_down"),
                        "a sorry set needs at least one address",
                    );
                }
                OnAllDown::Sorry(set)
            }
        };
        steered.push(SteeredRecord {
            name: owner,
            rtype: s.rtype,
            ttl: s.ttl.map_or(DEFAULT_STEERED_TTL, |t| t.0),
            pool: s.pool.clone(),
            steps,
            on_all_down,
            mode: s.mode.unwrap_or_default(),
            http: s.http.unwrap_or_default(),
            proxy_host: s.proxy_host.unwrap_or_default(),
        });
    }

    // CNAME beside other data, and at the apex.
    for (owner, u) in &uses {
        if let Some((_, p)) = u.types.iter().find(|(t, _)| *t == RecordType::Cname) {
            if u.types.len() > 1 {
                let others: Vec<&str> = u
                    .types
                    .iter()
                    .filter(|(t, _)| *t != RecordType::Cname)
                    .map(|(t, _)| t.as_str())
                    .collect();
                c.err(
                    p,
                    format!(
                        "a CNAME cannot stand beside other data at {owner} (also {})",
                        others.join(", ")
                    ),
                );
            } else if *owner == name.key() {
                c.err(
                    p,
                    "a CNAME cannot stand at the zone apex (beside SOA and NS)",
                );
            }
        }
    }

    // Delegations: nothing but glue below a delegation point.
    let cuts: Vec<String> = uses
        .iter()
        .filter(|(_, u)| u.types.iter().any(|(t, _)| *t == RecordType::Ns))
        .map(|(o, _)| o.clone())
        .collect();
    for (owner, u) in &uses {
        for cut in &cuts {
            let below = owner.ends_with(&format!(".{cut}"));
            let at = owner == cut;
            for (t, p) in &u.types {
                let glue = matches!(t, RecordType::A | RecordType::Aaaa);
                if (below && !glue) || (at && *t != RecordType::Ns && !glue) {
                    c.err(
                        p,
                        format!("{owner} is at or below the delegation {cut}: only NS and glue addresses belong there"),
                    );
                }
            }
        }
    }

    // In-zone name servers need an address.
    for (i, n) in ns.iter().enumerate() {
        let has_static = uses.get(&n.name.key()).is_some_and(|u| {
            u.types
                .iter()
                .any(|(t, _)| matches!(t, RecordType::A | RecordType::Aaaa))
        });
        if n.name.is_within(&name) && n.addresses.is_empty() && !has_static {
            c.err(
                &index_segment(&format!("{path}.ns"), i),
                format!(
                    "{} is inside the zone and needs glue: give `addresses`",
                    n.name
                ),
            );
        }
    }

    let soa = Soa {
        mname: mname.unwrap_or_else(|| name.clone()),
        rname: rname.unwrap_or_else(|| name.clone()),
        refresh: z.soa.refresh.map_or(3600, |v| v.0),
        retry: z.soa.retry.map_or(600, |v| v.0),
        expire: z.soa.expire.map_or(1_209_600, |v| v.0),
        minimum: z.soa.minimum.map_or(300, |v| v.0),
        ttl: z.soa.ttl.map_or(default_ttl, |t: Ttl| t.0),
    };

    (c.errors.len() == before).then_some(Zone {
        name,
        default_ttl,
        soa,
        ns,
        records,
        steered,
    })
}

fn wanted(t: SteeredType) -> &'static str {
    match t {
        SteeredType::A => "IPv4 addresses",
        SteeredType::Aaaa => "IPv6 addresses",
        SteeredType::Cname => "host names",
    }
}

/// Parses one record value in presentation form.
fn parse_rdata(t: RecordType, text: &str, zone: &DomainName) -> Result<RecordData, String> {
    let name = |s: &str| -> Result<DomainName, String> {
        if s == "@" {
            Ok(zone.clone())
        } else if s.ends_with('.') {
            DomainName::parse(s)
        } else {
            DomainName::parse(&format!("{s}.{zone}"))
        }
    };
    let num = |s: &str, what: &str| -> Result<u16, String> {
        s.parse::<u16>()
            .map_err(|_| format!("expected {what} 0..=65535, got {s:?}"))
    };
    let fields: Vec<&str> = text.split_whitespace().collect();
    match t {
        RecordType::A => text
            .trim()
            .parse::<Ipv4Addr>()
            .map(RecordData::A)
            .map_err(|_| format!("expected an IPv4 address, got {text:?}")),
        RecordType::Aaaa => text
            .trim()
            .parse::<Ipv6Addr>()
            .map(RecordData::Aaaa)
            .map_err(|_| format!("expected an IPv6 address, got {text:?}")),
        RecordType::Cname => name(text.trim()).map(RecordData::Cname),
        RecordType::Ns => name(text.trim()).map(RecordData::Ns),
        RecordType::Mx => match fields.as_slice() {
            [pref, exchange] => Ok(RecordData::Mx {
                preference: num(pref, "an MX preference")?,
                exchange: name(exchange)?,
            }),
            _ => Err(format!("expected \"PREFERENCE EXCHANGE\", got {text:?}")),
        },
        RecordType::Srv => match fields.as_slice() {
            [prio, weight, port, target] => Ok(RecordData::Srv {
                priority: num(prio, "an SRV priority")?,
                weight: num(weight, "an SRV weight")?,
                port: num(port, "a port")?,
                target: name(target)?,
            }),
            _ => Err(format!(
                "expected \"PRIORITY WEIGHT PORT TARGET\", got {text:?}"
            )),
        },
        RecordType::Txt => {
            if text.is_empty() {
                return Ok(RecordData::Txt(vec![String::new()]));
            }
            // split long text into 255-octet character strings
            let mut chunks = Vec::new();
            let mut cur = String::new();
            for ch in text.chars() {
                if cur.len() + ch.len_utf8() > 255 {
                    chunks.push(std::mem::take(&mut cur));
                }
                cur.push(ch);
            }
            chunks.push(cur);
            Ok(RecordData::Txt(chunks))
        }
        RecordType::Caa => {
            let mut parts = text.trim().splitn(3, char::is_whitespace);
            let (Some(flags), Some(tag), Some(value)) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(format!(
                    "expected \"FLAGS TAG VALUE\" (e.g. 0 issue \"ca.example\"), got {text:?}"
                ));
            };
            let flags: u8 = flags
                .parse()
                .map_err(|_| format!("expected CAA flags 0..=255, got {flags:?}"))?;
            if !matches!(tag, "issue" | "issuewild" | "iodef" | "issuemail") {
                return Err(format!(
                    "expected a CAA tag issue, issuewild, iodef or issuemail, got {tag:?}"
                ));
            }
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value);
            Ok(RecordData::Caa {
                critical: flags & 0x80 != 0,
                tag: tag.to_string(),
                value: value.to_string(),
            })
        }
    }
}

mod check;
use check::validate_check;
pub mod export;
pub use check::{Check, CheckAddress, CheckKind, DEFAULT_USER_AGENT};
pub mod rules;
mod steps;
use steps::validate_steps;

#[cfg(test)]
mod tests;
