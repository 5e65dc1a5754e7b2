//! What the HTTP fallback asks of a snapshot: for a host name and a client
//! address, the endpoint the name's steered record chooses, by the very
//! pipeline DNS answers with ([`crate::answer::decide`]).

use std::net::IpAddr;

use hickory_proto::rr::RecordType;
use meridian_config::zone::Endpoint;
use meridian_steering::{GeoIp, Outcome};
use rand::RngCore;

use crate::answer::{decide_without, Client, Steering};
use crate::snapshot::Snapshot;
use crate::snapshot::Steered;

/// What the pipeline chose for an HTTP client.
#[derive(Debug)]
pub enum Choice<'s> {
    /// The best endpoint.
    Endpoint {
        endpoint: &'s Endpoint,
        /// Its place in the pool: what a retry excludes.
        index: meridian_steering::Candidate,
        /// The steered record (its type, HTTP mode, proxy `Host`).
        record: &'s Steered,
    },
    /// The record exists but left no endpoint (every one down, or the
    /// record answers its sorry set or NODATA).
    Nothing,
    /// No steered record at this name.
    Unknown,
}

/// The endpoint `host`'s steered record (A, else AAAA, else CNAME) chooses
/// for `client`, as if the endpoints in `exclude` (pool indices: those that
/// failed) were not in the pool. `host` is a name without port, any case,
/// with or without the final dot. `scratch` is the pipeline's working list,
/// lent by the caller so that a server answering many requests allocates
/// it once.
pub fn choose<'s>(
    snap: &'s Snapshot,
    geo: Option<&GeoIp>,
    host: &str,
    client: IpAddr,
    rng: &mut dyn RngCore,
    exclude: &[meridian_steering::Candidate],
    scratch: &mut Vec<meridian_steering::Candidate>,
) -> Choice<'s> {
    let Some(node) = snap.hot.host(host) else {
        return Choice::Unknown;
    };
    let Some(steered) = [RecordType::A, RecordType::AAAA, RecordType::CNAME]
        .into_iter()
        .find_map(|t| node.steered(t))
    else {
        return Choice::Unknown;
    };
    let mut st = Steering {
        client: Client {
            addr: Some(client),
            prefix: if client.is_ipv4() { 32 } else { 128 },
            geo,
            ecs: false,
        },
        rng,
        scratch: std::mem::take(scratch),
    };
    let decision = decide_without(steered, &mut st, exclude);
    let first = st.scratch.first().copied();
    *scratch = st.scratch;
    match (decision.outcome, first) {
        (Outcome::Endpoints, Some(i)) => Choice::Endpoint {
            endpoint: &steered.endpoints[usize::from(i)],
            index: i,
            record: steered,
        },
        _ => Choice::Nothing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn snapshot(b_state: &str) -> Snapshot {
        let text = format!(
            "zones:
  example.com:
    soa: {{rname: hostmaster.example.com.}}
    ns: [{{name: ns.example.net.}}]
    records:
      - {{name: static, type: A, value: 192.0.2.9}}
    steered:
      - {{name: www, type: A, pool: web, steps: [health, priority, {{first: 1}}]}}
pools:
  web:
    endpoints:
      - {{id: a, address: 192.0.2.1, region: eu, priority: 2, redirect_url: \"https://a.example.com{{path}}\"}}
      - {{id: b, address: 192.0.2.2, region: us, priority: 1, state: {b_state}}}
"
        );
        let spec = meridian_config::zone::parse("t.yaml", &text).expect("valid");
        Snapshot::build(&spec, &Default::default(), 1, 1).expect("builds")
    }

    fn chosen(snap: &Snapshot, host: &str) -> Option<String> {
        let mut rng = StdRng::seed_from_u64(1);
        match choose(
            snap,
            None,
            host,
            "198.51.100.7".parse().unwrap(),
            &mut rng,
            &[],
            &mut Vec::new(),
        ) {
            Choice::Endpoint {
                endpoint, record, ..
            } => {
                assert_eq!(record.rtype, RecordType::A);
                Some(endpoint.id.clone())
            }
            Choice::Nothing => Some("(nothing)".into()),
            Choice::Unknown => None,
        }
    }

    #[test]
    fn the_pipeline_chooses_as_dns_does() {
        let snap = snapshot("enabled");
        assert_eq!(chosen(&snap, "www.example.com").as_deref(), Some("b"));
        assert_eq!(chosen(&snap, "WWW.Example.COM.").as_deref(), Some("b"));
        // b drained: the next tier, with its redirect
        let snap = snapshot("drained");
        assert_eq!(chosen(&snap, "www.example.com").as_deref(), Some("a"));
        // no steered record, or no zone at all
        assert_eq!(chosen(&snap, "static.example.com"), None);
        assert_eq!(chosen(&snap, "www.example.org"), None);
        assert_eq!(chosen(&snap, "not a name"), None);
    }

    #[test]
    fn the_next_candidate_leaves_out_those_that_failed() {
        let snap = snapshot("enabled");
        let client = "198.51.100.7".parse().unwrap();
        let mut rng = StdRng::seed_from_u64(1);
        let next = |exclude: &[u16], rng: &mut StdRng| match choose(
            &snap,
            None,
            "www.example.com",
            client,
            rng,
            exclude,
            &mut Vec::new(),
        ) {
            Choice::Endpoint {
                endpoint, index, ..
            } => {
                assert_eq!(endpoint.id, snap_id(&snap, index));
                Some(endpoint.id.clone())
            }
            _ => None,
        };
        assert_eq!(next(&[], &mut rng).as_deref(), Some("b"));
        // b failed: the priority step now keeps a's tier
        assert_eq!(next(&[1], &mut rng).as_deref(), Some("a"));
        assert_eq!(next(&[1, 0], &mut rng), None);
    }

    fn snap_id(snap: &Snapshot, index: u16) -> String {
        use std::str::FromStr;
        let name = hickory_proto::rr::LowerName::from_str("www.example.com.").unwrap();
        let node = snap.find_zone(&name).unwrap().nodes.get(&name).unwrap();
        node.steered(RecordType::A).unwrap().endpoints[usize::from(index)]
            .id
            .clone()
    }
}
