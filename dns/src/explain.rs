//! `explain`: the answer a name would get for a given client, with each
//! steering step's decision and reasons (Route 53's TestDNSAnswer, with the
//! why). The command line prints it; the REST API serves it.

use std::net::IpAddr;
use std::str::FromStr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{LowerName, RecordType};
use meridian_steering::{Context, GeoIp, Location, Outcome, Trace};
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::answer::{resolve, Client, Steering};
use crate::snapshot::{Found, Snapshot};

/// Everything `explain` found out.
#[derive(Debug)]
pub struct Explanation {
    pub name: String,
    pub rtype: RecordType,
    /// Client address and known prefix, when one was given.
    pub client: Option<(IpAddr, u8)>,
    /// What GeoIP knows of the client (`None`: no database or no client).
    pub location: Option<Location>,
    /// The steered record at the name, when there is one.
    pub steering: Option<SteeringExplanation>,
    pub rcode: ResponseCode,
    /// Answer records in presentation form.
    pub answers: Vec<String>,
    /// The ECS scope the answer would carry.
    pub scope: u8,
}

/// A steered record's decision.
#[derive(Debug)]
pub struct SteeringExplanation {
    /// The pool's endpoint ids, in pool order: the pipeline's input.
    pub pool: Vec<String>,
    pub trace: Trace,
    pub outcome: Outcome,
}

/// Explains `name`/`rtype` for `client` (address and known prefix). `seed`
/// fixes the weighted draws so the trace and the answer agree.
pub fn explain(
    snap: &Snapshot,
    geo: Option<&GeoIp>,
    name: &str,
    rtype: RecordType,
    client: Option<(IpAddr, u8)>,
    seed: u64,
) -> Result<Explanation, String> {
    let fqdn = if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    };
    let qname = LowerName::from_str(&fqdn).map_err(|e| format!("invalid name {name:?}: {e}"))?;
    let location = match (geo, client) {
        (Some(g), Some((addr, _))) => Some(g.lookup(addr)),
        _ => None,
    };
    let steering = snap
        .find_zone(&qname)
        .and_then(|z| match z.lookup(&qname) {
            Found::Name(n) | Found::Wildcard(n) => n.steered(rtype),
            Found::Missing => None,
        })
        .map(|st| {
            let mut rng = StdRng::seed_from_u64(seed);
            // the class gives the scope DNS answers with; the location, the
            // notes
            let tree = st.policy.tree();
            let class = tree.as_deref().zip(client).and_then(|(t, (addr, _))| t.classify(addr));
            let mut ctx = Context {
                client: client.map(|c| c.0),
                client_prefix: client.map_or(0, |c| c.1),
                location: location.as_ref().filter(|_| st.policy.needs_location()),
                rng: &mut rng,
                class,
            };
            let mut trace = Trace::default();
            let mut out = Vec::new();
            let d = st
                .policy
                .decide(&st.endpoints, &mut ctx, &mut out, Some(&mut trace));
            // where DNS hands the client to the HTTP fallback instead
            let handover = if st.always_fallback {
                Some("mode http_fallback: DNS answers the fallback's addresses, and it steers each request")
            } else if st.fallback_when_down && d.outcome == Outcome::NoData {
                Some("nothing left: DNS answers the HTTP fallback's addresses")
            } else {
                None
            };
            if let Some(why) = handover {
                trace.steps.push(meridian_steering::StepTrace {
                    step: "http_fallback",
                    kept: Vec::new(),
                    notes: vec![why.to_string()],
                });
            }
            SteeringExplanation {
                pool: st.endpoints.iter().map(|e| e.id.clone()).collect(),
                trace,
                outcome: d.outcome,
            }
        });
    let mut rng = StdRng::seed_from_u64(seed);
    let mut st = Steering {
        client: Client {
            addr: client.map(|c| c.0),
            prefix: client.map_or(0, |c| c.1),
            geo,
            // the answer a query from that subnet gets with ECS
            ecs: client.is_some(),
        },
        rng: &mut rng,
        scratch: Vec::new(),
    };
    let reply = resolve(snap, &qname, rtype, &mut st);
    Ok(Explanation {
        name: fqdn,
        rtype,
        client,
        location,
        steering,
        rcode: reply.rcode,
        answers: reply
            .answer_records()
            .map(|r| format!("{} {} IN {} {}", r.name, r.ttl, r.record_type(), r.data))
            .collect(),
        scope: reply.scope,
    })
}

/// `192.0.2.7` or `192.0.2.0/24`; host bits past the prefix are cleared.
pub fn parse_client(text: &str) -> Result<(IpAddr, u8), String> {
    let (addr, prefix) = match text.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (text, None),
    };
    let ip: IpAddr = addr
        .parse()
        .map_err(|_| format!("client: expected an address or address/prefix, got {text:?}"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        Some(p) => p
            .parse::<u8>()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| format!("client: expected a prefix 0..={max}, got {p:?}"))?,
        None => max,
    };
    let net = ipnet::IpNet::new(ip, prefix).map_err(|e| e.to_string())?;
    Ok((net.network(), prefix))
}

pub fn render(x: &Explanation, have_geo: bool) -> String {
    let mut s = String::new();
    let client = x.client.map_or("no client".to_string(), |(ip, p)| {
        format!("client {ip}/{p}")
    });
    s.push_str(&format!("{} {} for {client}\n", x.name, x.rtype));
    match (&x.location, have_geo) {
        (Some(l), _) => s.push_str(&format!(
            "location: {l}; GeoIP network /{}\n",
            l.network_prefix
        )),
        (None, false) => s.push_str("location: no GeoIP database configured\n"),
        (None, true) => s.push_str("location: no client given\n"),
    }
    if let Some(st) = &x.steering {
        s.push_str(&format!("candidates: {}\n", st.pool.join(", ")));
        for (i, step) in st.trace.steps.iter().enumerate() {
            let kept = if step.kept.is_empty() {
                "(none)".to_string()
            } else {
                step.kept.join(", ")
            };
            s.push_str(&format!("{:>3}. {:<17} -> {kept}\n", i + 1, step.step));
            for n in &step.notes {
                s.push_str(&format!("{:>24}{n}\n", ""));
            }
        }
    } else {
        s.push_str("not a steered name: static data\n");
    }
    s.push_str(&format!("rcode: {}\n", mnemonic(x.rcode)));
    for a in &x.answers {
        s.push_str(&format!("answer: {a}\n"));
    }
    if x.client.is_some() {
        s.push_str(&format!("ECS scope: /{}\n", x.scope));
    }
    s
}

/// The rcode as dig prints it.
pub fn mnemonic(rcode: hickory_proto::op::ResponseCode) -> String {
    use hickory_proto::op::ResponseCode as R;
    match rcode {
        R::NoError => "NOERROR".into(),
        R::FormErr => "FORMERR".into(),
        R::ServFail => "SERVFAIL".into(),
        R::NXDomain => "NXDOMAIN".into(),
        R::NotImp => "NOTIMP".into(),
        R::Refused => "REFUSED".into(),
        other => other.to_string(),
    }
}
