//! The zone spec back in the file's schema: what the REST API shows and
//! takes, so that one schema serves `meridian check`, `POST /v1/apply` and
//! every resource, and a resource read can be written back unchanged.
//!
//! Every field is written with its effective value (a default the file
//! left out is written out), names are absolute (with the final dot) and
//! durations are in milliseconds. [`from_json`] reads such a value back
//! through the same validation as a file, so `from_json(export(s)) == s`.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::{
    AdminState, Check, CheckAddress, CheckKind, ClientMatch, CostMargin, Endpoint, EndpointAddress,
    GeoMap, HttpMode, OnAllDown, Pool, ProbeRegion, ProxyHost, RecordData, RecordSet, SteeredMode,
    SteeredRecord, Step, Zone, ZoneSpec, DEFAULT_USER_AGENT,
};
use crate::zone::rules::{Violation, Violations};

/// The whole spec, as the zone file holds it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SpecDoc {
    /// Zones by name.
    #[serde(default)]
    pub zones: BTreeMap<String, ZoneDoc>,
    /// Pools by name.
    #[serde(default)]
    pub pools: BTreeMap<String, PoolDoc>,
    /// Probe regions by name.
    #[serde(default)]
    pub regions: BTreeMap<String, RegionDoc>,
}

/// One zone with its static record sets and steered records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ZoneDoc {
    /// The TTL of records that give none (default 3600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u32>,
    pub soa: SoaDoc,
    /// The apex name servers.
    pub ns: Vec<NameServerDoc>,
    #[serde(default)]
    pub records: Vec<RecordSetDoc>,
    #[serde(default)]
    pub steered: Vec<SteeredDoc>,
}

/// SOA fields; the serial follows the state version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SoaDoc {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mname: Option<String>,
    pub rname: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expire: Option<u32>,
    /// Negative-caching TTL (RFC 2308).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u32>,
}

/// An apex name server, with glue when it is inside the zone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NameServerDoc {
    pub name: String,
    /// IPv4 or IPv6 addresses.
    #[serde(default)]
    pub addresses: Vec<String>,
}

/// All records of one name and type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordSetDoc {
    /// `@`, relative to the zone, or absolute (with the final dot).
    /// Taken from the path when the body leaves it out.
    #[serde(default)]
    pub name: String,
    /// A, AAAA, CNAME, MX, TXT, CAA, SRV or NS.
    #[serde(rename = "type", default)]
    pub rtype: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u32>,
    /// Each record in presentation form (`10 mail`, `0 issue "ca.example"`).
    #[serde(default)]
    pub values: Vec<String>,
}

/// A name answered by a steering pipeline over a pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SteeredDoc {
    /// Taken from the path when the body leaves it out.
    #[serde(default)]
    pub name: String,
    /// A, AAAA or CNAME.
    #[serde(rename = "type", default)]
    pub rtype: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u32>,
    pub pool: String,
    #[serde(default)]
    pub steps: Vec<StepDoc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_all_down: Option<OnAllDownDoc>,
    /// `http_fallback`: always answer the HTTP fallback's addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<SteeredMode>,
    /// `proxy`: the HTTP fallback forwards requests instead of redirecting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpMode>,
    /// In proxy mode, `endpoint`: send the `proxy_url`'s host as `Host`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_host: Option<ProxyHost>,
}

/// A step without arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PlainStep {
    Health,
    Priority,
    Weighted,
    Nearest,
    Latency,
}

/// One step of a steering pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum StepDoc {
    Plain(PlainStep),
    Weighted {
        weighted: WeightedDoc,
    },
    First {
        first: u16,
    },
    /// Region or endpoint id → who may use it.
    Fence {
        fence: BTreeMap<String, FenceRuleDoc>,
    },
    Geo {
        geo: GeoDoc,
    },
    Cost {
        cost: CostDoc,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WeightedDoc {
    /// The same endpoint for the same client subnet.
    #[serde(default)]
    pub sticky: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FenceRuleDoc {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow: Option<ClientMatchDoc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deny: Option<ClientMatchDoc>,
}

/// Clients by where they are.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientMatchDoc {
    #[serde(default)]
    pub countries: Vec<String>,
    #[serde(default)]
    pub continents: Vec<String>,
    /// `US-CA`.
    #[serde(default)]
    pub subdivisions: Vec<String>,
    #[serde(default)]
    pub asns: Vec<u32>,
    #[serde(default)]
    pub cidrs: Vec<String>,
}

/// Geography → preferred regions (each list a failover order).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GeoDoc {
    #[serde(default)]
    pub subdivisions: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub countries: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub continents: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub default: Vec<String>,
}

/// How close to the best latency an endpoint must be: one of the two.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CostDoc {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub margin_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub margin_pct: Option<f64>,
}

/// What to answer when the pipeline leaves no candidate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum OnAllDownDoc {
    Plain(PlainOnAllDown),
    /// A fixed set of addresses or host names.
    Sorry {
        sorry: Vec<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PlainOnAllDown {
    FailOpen,
    Nodata,
    HttpFallback,
}

/// A pool of endpoints, with the health check agents run on each.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PoolDoc {
    pub endpoints: Vec<EndpointDoc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<CheckDoc>,
}

/// One endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointDoc {
    /// Unique in the pool; taken from the path when the body leaves it out.
    #[serde(default)]
    pub id: String,
    /// An IP address (A, AAAA records) or a host name (CNAME records).
    pub address: String,
    pub region: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lat: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lon: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<f64>,
    /// Failover tier: lower is preferred.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<AdminState>,
    /// `nearest` bias, -99..=99.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bias: Option<i8>,
    /// Static RTT in ms from probe regions.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rtt_ms: BTreeMap<String, f64>,
    /// Where the check connects instead: `host`, `host:port`, `[v6]:port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_address: Option<String>,
    /// Where the HTTP fallback redirects clients this endpoint is chosen
    /// for; `{path}` stands for the request's path and query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_url: Option<String>,
    /// Where the HTTP fallback forwards proxied requests:
    /// `http(s)://host[:port]`, connected to at the endpoint's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_url: Option<String>,
}

/// A pool's health check. Durations are `500ms`, `5s`, `2m`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckDoc {
    pub kind: CheckKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// GET or HEAD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// `200`, `2xx` or `200-299`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_status: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_verify: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rise: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fall: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regions: Option<Vec<String>>,
    /// A count (`2`), a percentage (`50%`) or a fraction (`0.5`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale_after: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_down: Option<String>,
}

/// A probe region; one without coordinates is never nearest a client.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegionDoc {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lat: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lon: Option<f64>,
}

fn to_value<T: Serialize>(doc: &T) -> Value {
    serde_json::to_value(doc).expect("documents serialize")
}

/// The whole spec as the file would hold it.
pub fn export(spec: &ZoneSpec) -> Value {
    to_value(&spec_doc(spec))
}

pub fn spec_doc(spec: &ZoneSpec) -> SpecDoc {
    SpecDoc {
        zones: spec
            .zones
            .iter()
            .map(|z| (z.name.to_string(), zone_doc(z)))
            .collect(),
        pools: spec
            .pools
            .iter()
            .map(|(n, p)| (n.clone(), pool_doc(p)))
            .collect(),
        regions: spec
            .regions
            .iter()
            .map(|r| (r.name.clone(), region_doc(r)))
            .collect(),
    }
}

/// One zone with its records and steered records.
pub fn zone(z: &Zone) -> Value {
    to_value(&zone_doc(z))
}

fn zone_doc(z: &Zone) -> ZoneDoc {
    ZoneDoc {
        ttl: Some(z.default_ttl),
        soa: SoaDoc {
            mname: Some(z.soa.mname.to_string()),
            rname: z.soa.rname.to_string(),
            refresh: Some(z.soa.refresh),
            retry: Some(z.soa.retry),
            expire: Some(z.soa.expire),
            minimum: Some(z.soa.minimum),
            ttl: Some(z.soa.ttl),
        },
        ns: z
            .ns
            .iter()
            .map(|n| NameServerDoc {
                name: n.name.to_string(),
                addresses: n.addresses.iter().map(ToString::to_string).collect(),
            })
            .collect(),
        records: z.records.iter().map(record_set_doc).collect(),
        steered: z.steered.iter().map(steered_doc).collect(),
    }
}

/// One static record set: its records' values in presentation form.
pub fn record_set(r: &RecordSet) -> Value {
    to_value(&record_set_doc(r))
}

fn record_set_doc(r: &RecordSet) -> RecordSetDoc {
    RecordSetDoc {
        name: r.name.to_string(),
        rtype: r.rtype.as_str().to_string(),
        ttl: Some(r.ttl),
        values: r.data.iter().map(rdata).collect(),
    }
}

fn rdata(d: &RecordData) -> String {
    match d {
        RecordData::A(ip) => ip.to_string(),
        RecordData::Aaaa(ip) => ip.to_string(),
        RecordData::Cname(n) | RecordData::Ns(n) => n.to_string(),
        RecordData::Mx {
            preference,
            exchange,
        } => format!("{preference} {exchange}"),
        RecordData::Txt(chunks) => chunks.concat(),
        RecordData::Caa {
            critical,
            tag,
            value,
        } => format!("{} {tag} \"{value}\"", if *critical { 128 } else { 0 }),
        RecordData::Srv {
            priority,
            weight,
            port,
            target,
        } => format!("{priority} {weight} {port} {target}"),
    }
}

/// One steered record.
pub fn steered(s: &SteeredRecord) -> Value {
    to_value(&steered_doc(s))
}

fn steered_doc(s: &SteeredRecord) -> SteeredDoc {
    let on_all_down = match &s.on_all_down {
        OnAllDown::FailOpen => OnAllDownDoc::Plain(PlainOnAllDown::FailOpen),
        OnAllDown::NoData => OnAllDownDoc::Plain(PlainOnAllDown::Nodata),
        OnAllDown::HttpFallback => OnAllDownDoc::Plain(PlainOnAllDown::HttpFallback),
        OnAllDown::Sorry(list) => OnAllDownDoc::Sorry {
            sorry: list.iter().map(ToString::to_string).collect(),
        },
    };
    SteeredDoc {
        name: s.name.to_string(),
        rtype: s.rtype.as_record_type().as_str().to_string(),
        ttl: Some(s.ttl),
        pool: s.pool.clone(),
        steps: s.steps.iter().map(step_doc).collect(),
        on_all_down: Some(on_all_down),
        mode: (s.mode != SteeredMode::Dns).then_some(s.mode),
        http: (s.http != HttpMode::Redirect).then_some(s.http),
        proxy_host: (s.proxy_host != ProxyHost::Keep).then_some(s.proxy_host),
    }
}

fn step_doc(s: &Step) -> StepDoc {
    match s {
        Step::Health => StepDoc::Plain(PlainStep::Health),
        Step::Priority => StepDoc::Plain(PlainStep::Priority),
        Step::Nearest => StepDoc::Plain(PlainStep::Nearest),
        Step::Latency => StepDoc::Plain(PlainStep::Latency),
        Step::Weighted { sticky: false } => StepDoc::Plain(PlainStep::Weighted),
        Step::Weighted { sticky: true } => StepDoc::Weighted {
            weighted: WeightedDoc { sticky: true },
        },
        Step::First(n) => StepDoc::First { first: *n },
        Step::Fence(rules) => StepDoc::Fence {
            fence: rules
                .iter()
                .map(|r| {
                    (
                        r.target.clone(),
                        FenceRuleDoc {
                            allow: r.allow.as_ref().map(client_match),
                            deny: r.deny.as_ref().map(client_match),
                        },
                    )
                })
                .collect(),
        },
        Step::Geo(g) => StepDoc::Geo { geo: geo(g) },
        Step::Cost(CostMargin::Ms(ms)) => StepDoc::Cost {
            cost: CostDoc {
                margin_ms: Some(*ms),
                margin_pct: None,
            },
        },
        Step::Cost(CostMargin::Percent(p)) => StepDoc::Cost {
            cost: CostDoc {
                margin_ms: None,
                margin_pct: Some(*p),
            },
        },
    }
}

fn client_match(m: &ClientMatch) -> ClientMatchDoc {
    ClientMatchDoc {
        countries: m.countries.clone(),
        continents: m.continents.clone(),
        subdivisions: m
            .subdivisions
            .iter()
            .map(|(c, s)| format!("{c}-{s}"))
            .collect(),
        asns: m.asns.clone(),
        cidrs: m.cidrs.iter().map(ToString::to_string).collect(),
    }
}

fn geo(g: &GeoMap) -> GeoDoc {
    GeoDoc {
        subdivisions: g
            .subdivisions
            .iter()
            .map(|((c, s), r)| (format!("{c}-{s}"), r.clone()))
            .collect(),
        countries: g.countries.iter().cloned().collect(),
        continents: g.continents.iter().cloned().collect(),
        default: g.default.clone(),
    }
}

/// One pool with its endpoints and check.
pub fn pool(p: &Pool) -> Value {
    to_value(&pool_doc(p))
}

fn pool_doc(p: &Pool) -> PoolDoc {
    PoolDoc {
        endpoints: p.endpoints.iter().map(endpoint_doc).collect(),
        check: p.check.as_ref().map(check_doc),
    }
}

/// One endpoint.
pub fn endpoint(e: &Endpoint) -> Value {
    to_value(&endpoint_doc(e))
}

fn endpoint_doc(e: &Endpoint) -> EndpointDoc {
    EndpointDoc {
        id: e.id.clone(),
        address: e.address.to_string(),
        region: e.region.clone(),
        lat: e.lat,
        lon: e.lon,
        weight: Some(e.weight),
        cost: Some(e.cost),
        priority: Some(e.priority),
        state: Some(e.state),
        bias: Some(e.bias),
        rtt_ms: e.rtt_ms.clone(),
        check_address: e.check_address.as_ref().map(check_address),
        redirect_url: e.redirect_url.clone(),
        proxy_url: e.proxy_url.clone(),
    }
}

fn check_address(a: &CheckAddress) -> String {
    match (&a.host, a.port) {
        (EndpointAddress::Ip(IpAddr::V6(ip)), Some(p)) => format!("[{ip}]:{p}"),
        (host, Some(p)) => format!("{host}:{p}"),
        (host, None) => host.to_string(),
    }
}

/// A pool's health check.
pub fn check(c: &Check) -> Value {
    to_value(&check_doc(c))
}

fn check_doc(c: &Check) -> CheckDoc {
    let http = c.kind != CheckKind::Tcp;
    let ms = |v: u64| Some(format!("{v}ms"));
    CheckDoc {
        kind: c.kind,
        port: Some(c.port),
        path: http.then(|| c.path.clone()),
        method: http.then(|| c.method.clone()),
        host: c.host.clone().filter(|_| http),
        expect_status: http.then(|| {
            c.expect_status
                .iter()
                .map(|&(a, b)| {
                    if a == b {
                        a.to_string()
                    } else {
                        format!("{a}-{b}")
                    }
                })
                .collect()
        }),
        body: c.body.clone().filter(|_| http),
        user_agent: (http && c.user_agent != DEFAULT_USER_AGENT).then(|| c.user_agent.clone()),
        tls_verify: (c.kind == CheckKind::Https).then_some(c.tls_verify),
        interval: ms(c.interval_ms),
        timeout: ms(c.timeout_ms),
        rise: Some(c.rise),
        fall: Some(c.fall),
        regions: Some(c.regions.clone()),
        quorum: Some(c.quorum.to_string()),
        stale_after: ms(c.stale_after_ms),
        hold_down: ms(c.hold_down_ms),
    }
}

/// One probe region.
pub fn region(r: &ProbeRegion) -> Value {
    to_value(&region_doc(r))
}

fn region_doc(r: &ProbeRegion) -> RegionDoc {
    RegionDoc {
        lat: r.lat,
        lon: r.lon,
    }
}

/// Reads a spec in the file's schema from a JSON value, through the same
/// validation as a file: every problem, each with its field path.
pub fn from_json(value: &Value) -> Result<ZoneSpec, Violations> {
    let yaml: serde_yaml::Value = serde_yaml::to_value(value).map_err(|e| {
        Violations(vec![Violation {
            path: String::new(),
            message: e.to_string(),
        }])
    })?;
    super::parse_value("request", yaml).map_err(|d| {
        Violations(
            d.0.into_iter()
                .map(|d| Violation {
                    path: d.path,
                    message: d.message,
                })
                .collect(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = r#"
zones:
  example.com:
    ttl: 300
    soa: {rname: hostmaster.example.com., minimum: 60}
    ns: [{name: ns1, addresses: [192.0.2.53, "2001:db8::53"]}]
    records:
      - {name: "@", type: MX, value: "10 mail"}
      - {name: "@", type: TXT, values: ["v=spf1 -all", "x"]}
      - {name: "@", type: CAA, value: '0 issue "ca.example"'}
      - {name: mail, type: A, values: [192.0.2.25, 192.0.2.26]}
      - {name: _sip._tcp, type: SRV, value: "10 5 5060 sip"}
      - {name: docs, type: CNAME, value: www}
    steered:
      - {name: www, type: A, pool: web, steps: [health, {weighted: {sticky: true}}, {first: 1}], http: proxy, proxy_host: endpoint}
      - name: geo
        type: A
        pool: web
        on_all_down: {sorry: [192.0.2.200]}
        steps:
          - health
          - fence: {eu: {allow: {continents: [EU], subdivisions: [US-CA], cidrs: [10.0.0.0/8]}}, us-1: {deny: {asns: [64500]}}}
          - geo: {continents: {EU: [eu, us]}, countries: {JP: [ap]}, subdivisions: {US-CA: [us]}, default: [us]}
          - latency
          - {cost: {margin_pct: 10}}
          - nearest
          - priority
      - {name: cdn, type: CNAME, pool: hosts, steps: [health, weighted, {first: 1}], on_all_down: nodata}
regions:
  eu: {lat: 50, lon: 8}
  us: {lat: 39, lon: -77}
  ap: {}
pools:
  web:
    check: {kind: https, path: /health, interval: 2s, timeout: 500ms, rise: 2, fall: 3, quorum: 50%, expect_status: [2xx, 301], host: www.example.com, body: ok, tls_verify: false, user_agent: probe}
    endpoints:
      - {id: eu-1, address: 192.0.2.10, region: eu, lat: 53.35, lon: -6.26, weight: 50, bias: 20, check_address: "127.0.0.1:8080", redirect_url: "https://eu.example.com{path}", proxy_url: "https://eu.example.com:8443"}
      - {id: us-1, address: 198.51.100.10, region: us, priority: 2, state: drained, cost: 1.5, rtt_ms: {eu: 80}}
      - {id: ap-1, address: 203.0.113.10, region: ap, check_address: "[::1]:9"}
  hosts:
    check: {kind: tcp, port: 443}
    endpoints:
      - {id: a, address: a.example.net., region: eu}
"#;

    #[test]
    fn exported_specs_read_back_the_same() {
        let spec = crate::zone::parse("t.yaml", SPEC).expect("valid");
        let exported = export(&spec);
        let back = from_json(&exported).expect("the export is valid");
        assert_eq!(back, spec);
        // and a second export is identical: a read can be written back
        assert_eq!(export(&back), exported);
        // the documents the API's schema is generated from describe it
        // exactly: read back into them and written out again, unchanged
        let doc: SpecDoc = serde_json::from_value(exported.clone()).expect("a SpecDoc");
        assert_eq!(to_value(&doc), exported);
    }

    #[test]
    fn problems_name_their_field() {
        let spec = crate::zone::parse("t.yaml", SPEC).expect("valid");
        let mut v = export(&spec);
        v["pools"]["web"]["endpoints"][1]["weight"] = serde_json::json!(70000);
        let err = from_json(&v).unwrap_err();
        assert!(
            err.0
                .iter()
                .any(|v| v.path == "pools.web.endpoints[1].weight"),
            "{err}"
        );
    }
}
