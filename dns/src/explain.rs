//! `explain`: the answer a name would get for a given client, with each
//! steering step's decision and reasons (Route 53's TestDNSAnswer, with the
//! why). The command line prints it; the REST API will serve it.

use std::net::IpAddr;
use std::str::FromStr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{LowerName, RecordType};
use meridian_steering::{Context, GeoIp, Location, Outcome, Trace};
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::answer::{resolve, Client, Steering};
use crate::snapshot::Snapshot;

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
        .and_then(|z| z.nodes.get(&qname))
        .and_then(|n| n.steered(rtype))
        .map(|st| {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut ctx = Context {
                client: client.map(|c| c.0),
                client_prefix: client.map_or(0, |c| c.1),
                location: location.as_ref().filter(|_| st.policy.needs_location()),
                rng: &mut rng,
            };
            let mut trace = Trace::default();
            let mut out = Vec::new();
            let d = st
                .policy
                .decide(&st.endpoints, &mut ctx, &mut out, Some(&mut trace));
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
