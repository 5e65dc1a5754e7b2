//! The zone spec back in the file's schema: what the REST API shows and
//! takes, so that one schema serves `meridian check`, `POST /v1/apply` and
//! every resource, and a resource read can be written back unchanged.
//!
//! Every field is written with its effective value (a default the file
//! left out is written out), names are absolute (with the final dot) and
//! durations are in milliseconds. [`from_json`] reads such a value back
//! through the same validation as a file, so `from_json(export(s)) == s`.

use std::net::IpAddr;

use serde_json::{json, Map, Value};

use super::{
    Check, CheckAddress, ClientMatch, CostMargin, Endpoint, EndpointAddress, GeoMap, OnAllDown,
    Pool, ProbeRegion, RecordData, RecordSet, SteeredRecord, Step, Zone, ZoneSpec,
    DEFAULT_USER_AGENT,
};
use crate::zone::rules::{Violation, Violations};

/// The whole spec as the file would hold it.
pub fn export(spec: &ZoneSpec) -> Value {
    let zones: Map<String, Value> = spec
        .zones
        .iter()
        .map(|z| (z.name.to_string(), zone(z)))
        .collect();
    let pools: Map<String, Value> = spec
        .pools
        .iter()
        .map(|(n, p)| (n.clone(), pool(p)))
        .collect();
    let regions: Map<String, Value> = spec
        .regions
        .iter()
        .map(|r| (r.name.clone(), region(r)))
        .collect();
    json!({"zones": zones, "pools": pools, "regions": regions})
}

/// One zone with its records and steered records.
pub fn zone(z: &Zone) -> Value {
    json!({
        "ttl": z.default_ttl,
        "soa": {
            "mname": z.soa.mname.to_string(),
            "rname": z.soa.rname.to_string(),
            "refresh": z.soa.refresh,
            "retry": z.soa.retry,
            "expire": z.soa.expire,
            "minimum": z.soa.minimum,
            "ttl": z.soa.ttl,
        },
        "ns": z.ns.iter().map(|n| json!({
            "name": n.name.to_string(),
            "addresses": n.addresses,
        })).collect::<Vec<_>>(),
        "records": z.records.iter().map(record_set).collect::<Vec<_>>(),
        "steered": z.steered.iter().map(steered).collect::<Vec<_>>(),
    })
}

/// One static record set: its records' values in presentation form.
pub fn record_set(r: &RecordSet) -> Value {
    json!({
        "name": r.name.to_string(),
        "type": r.rtype.as_str(),
        "ttl": r.ttl,
        "values": r.data.iter().map(rdata).collect::<Vec<_>>(),
    })
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
    let on_all_down = match &s.on_all_down {
        OnAllDown::FailOpen => json!("fail_open"),
        OnAllDown::NoData => json!("nodata"),
        OnAllDown::Sorry(list) => {
            json!({"sorry": list.iter().map(ToString::to_string).collect::<Vec<_>>()})
        }
    };
    json!({
        "name": s.name.to_string(),
        "type": s.rtype.as_record_type().as_str(),
        "ttl": s.ttl,
        "pool": s.pool,
        "steps": s.steps.iter().map(step).collect::<Vec<_>>(),
        "on_all_down": on_all_down,
    })
}

fn step(s: &Step) -> Value {
    match s {
        Step::Health => json!("health"),
        Step::Priority => json!("priority"),
        Step::Nearest => json!("nearest"),
        Step::Latency => json!("latency"),
        Step::Weighted { sticky: false } => json!("weighted"),
        Step::Weighted { sticky: true } => json!({"weighted": {"sticky": true}}),
        Step::First(n) => json!({ "first": n }),
        Step::Fence(rules) => {
            let map: Map<String, Value> = rules
                .iter()
                .map(|r| {
                    let mut rule = Map::new();
                    if let Some(a) = &r.allow {
                        rule.insert("allow".into(), client_match(a));
                    }
                    if let Some(d) = &r.deny {
                        rule.insert("deny".into(), client_match(d));
                    }
                    (r.target.clone(), Value::Object(rule))
                })
                .collect();
            json!({ "fence": map })
        }
        Step::Geo(g) => json!({ "geo": geo(g) }),
        Step::Cost(CostMargin::Ms(ms)) => json!({"cost": {"margin_ms": ms}}),
        Step::Cost(CostMargin::Percent(p)) => json!({"cost": {"margin_pct": p}}),
    }
}

fn client_match(m: &ClientMatch) -> Value {
    json!({
        "countries": m.countries,
        "continents": m.continents,
        "subdivisions": m.subdivisions.iter().map(|(c, s)| format!("{c}-{s}")).collect::<Vec<_>>(),
        "asns": m.asns,
        "cidrs": m.cidrs.iter().map(ToString::to_string).collect::<Vec<_>>(),
    })
}

fn geo(g: &GeoMap) -> Value {
    let subdivisions: Map<String, Value> = g
        .subdivisions
        .iter()
        .map(|((c, s), r)| (format!("{c}-{s}"), json!(r)))
        .collect();
    let countries: Map<String, Value> = g
        .countries
        .iter()
        .map(|(c, r)| (c.clone(), json!(r)))
        .collect();
    let continents: Map<String, Value> = g
        .continents
        .iter()
        .map(|(c, r)| (c.clone(), json!(r)))
        .collect();
    json!({
        "subdivisions": subdivisions,
        "countries": countries,
        "continents": continents,
        "default": g.default,
    })
}

/// One pool with its endpoints and check.
pub fn pool(p: &Pool) -> Value {
    let mut out = Map::new();
    out.insert(
        "endpoints".into(),
        Value::Array(p.endpoints.iter().map(endpoint).collect()),
    );
    if let Some(c) = &p.check {
        out.insert("check".into(), check(c));
    }
    Value::Object(out)
}

/// One endpoint.
pub fn endpoint(e: &Endpoint) -> Value {
    let mut out = json!({
        "id": e.id,
        "address": e.address.to_string(),
        "region": e.region,
        "weight": e.weight,
        "cost": e.cost,
        "priority": e.priority,
        "state": e.state,
        "bias": e.bias,
        "rtt_ms": e.rtt_ms,
    });
    let obj = out.as_object_mut().expect("an object");
    if let Some(lat) = e.lat {
        obj.insert("lat".into(), json!(lat));
    }
    if let Some(lon) = e.lon {
        obj.insert("lon".into(), json!(lon));
    }
    if let Some(a) = &e.check_address {
        obj.insert("check_address".into(), json!(check_address(a)));
    }
    out
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
    let mut out = json!({
        "kind": c.kind,
        "port": c.port,
        "interval": format!("{}ms", c.interval_ms),
        "timeout": format!("{}ms", c.timeout_ms),
        "rise": c.rise,
        "fall": c.fall,
        "regions": c.regions,
        "quorum": c.quorum.to_string(),
        "stale_after": format!("{}ms", c.stale_after_ms),
        "hold_down": format!("{}ms", c.hold_down_ms),
    });
    let obj = out.as_object_mut().expect("an object");
    if c.kind != super::CheckKind::Tcp {
        obj.insert("path".into(), json!(c.path));
        obj.insert("method".into(), json!(c.method));
        let statuses: Vec<String> = c
            .expect_status
            .iter()
            .map(|&(a, b)| {
                if a == b {
                    a.to_string()
                } else {
                    format!("{a}-{b}")
                }
            })
            .collect();
        obj.insert("expect_status".into(), json!(statuses));
        if let Some(h) = &c.host {
            obj.insert("host".into(), json!(h));
        }
        if let Some(b) = &c.body {
            obj.insert("body".into(), json!(b));
        }
        if c.user_agent != DEFAULT_USER_AGENT {
            obj.insert("user_agent".into(), json!(c.user_agent));
        }
    }
    if c.kind == super::CheckKind::Https {
        obj.insert("tls_verify".into(), json!(c.tls_verify));
    }
    out
}

/// One probe region.
pub fn region(r: &ProbeRegion) -> Value {
    let mut out = Map::new();
    if let Some(lat) = r.lat {
        out.insert("lat".into(), json!(lat));
    }
    if let Some(lon) = r.lon {
        out.insert("lon".into(), json!(lon));
    }
    Value::Object(out)
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
      - {name: www, type: A, pool: web, steps: [health, {weighted: {sticky: true}}, {first: 1}]}
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
      - {id: eu-1, address: 192.0.2.10, region: eu, lat: 53.35, lon: -6.26, weight: 50, bias: 20, check_address: "127.0.0.1:8080"}
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
    }

    #[test]
    fn problems_name_their_field() {
        let spec = crate::zone::parse("t.yaml", SPEC).expect("valid");
        let mut v = export(&spec);
        v["pools"]["web"]["endpoints"][1]["weight"] = json!(70000);
        let err = from_json(&v).unwrap_err();
        assert!(
            err.0
                .iter()
                .any(|v| v.path == "pools.web.endpoints[1].weight"),
            "{err}"
        );
    }
}
