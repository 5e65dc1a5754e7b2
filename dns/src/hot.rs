//! The hot path: the answer to a query of the common shape, written from
//! records the snapshot encoded ahead of time, into the reused send
//! buffer, with no allocation and no trip through hickory's message types.
//!
//! It answers what nearly all traffic asks:
//! - a name with a static set of the asked type whose RDATA holds no name
//!   (A, AAAA, TXT, CAA) and that needs no additional records;
//! - a steered A or AAAA record, after running its pipeline;
//! - NODATA, NXDOMAIN (with the zone's SOA in authority) and REFUSED.
//!
//! Every answer record's owner is the question's name, so it is written as
//! a pointer to it (`0xC00C`), and the asked case is kept. The SOA's owner
//! and the names in its RDATA point at the zone's origin inside the
//! question.
//!
//! Anything else takes the hickory path ([`crate::Handler::respond`]): a
//! CNAME on the way, a name at or below a delegation, ANY, zone
//! transfers, classes other than IN, EDNS versions other than 0, and sets
//! with names in their RDATA or additional records. The two paths give the
//! same answers (the differential test below); the hot one writes them
//! smaller, as it compresses the owner names hickory writes in full.

use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::SOA;
use hickory_proto::rr::{Name, RecordType};
use meridian_steering::GeoIp;
use rustc_hash::FxHashMap;

use crate::answer::{find_cut, steered_answer, Client, SteeredAnswer, Steering};
use crate::handler::{Extras, Local};
use crate::rrl::Subject;
use crate::snapshot::{Node, SizedRecord, Snapshot, Steered};
use crate::stats::Seen;
use crate::wire::Query;

/// Every name of a snapshot by its lower-case wire form (length-prefixed
/// labels and the root's zero), as [`Snapshot::find_zone`] would answer it.
#[derive(Debug, Default)]
pub struct HotIndex {
    names: FxHashMap<Box<[u8]>, HotName>,
}

#[derive(Debug)]
struct HotName {
    /// The zone (index into [`Snapshot::zones`]) that answers the name.
    zone: usize,
    /// A delegation at or above the name (below the apex): referrals are
    /// the hickory path's.
    delegated: bool,
    node: Arc<Node>,
}

impl HotIndex {
    /// Indexes every name of `snap`. Where a name is in two zones (a
    /// delegation point in the parent, the apex of the child), the zone
    /// that answers it wins.
    pub fn build(snap: &Snapshot) -> HotIndex {
        let mut names = FxHashMap::default();
        for (i, zone) in snap.zones.iter().enumerate() {
            for (name, node) in &zone.nodes {
                let answered_here = snap.find_zone(name).is_some_and(|z| std::ptr::eq(z, zone));
                if !answered_here {
                    continue;
                }
                let delegated = zone.has_cuts && find_cut(zone, name).is_some();
                let hot = HotName {
                    zone: i,
                    delegated,
                    node: Arc::clone(node),
                };
                names.insert(lower_wire(name), hot);
            }
        }
        HotIndex { names }
    }

    fn get(&self, name: &[u8]) -> Option<&HotName> {
        self.names.get(name)
    }

    /// Looks a lower-case wire name up as [`crate::snapshot::ZoneData::lookup`]
    /// does: the name, else the wildcard at its closest encloser (RFC
    /// 4592), else the closest encloser itself (an NXDOMAIN in its zone).
    fn find(&self, name: &[u8]) -> Lookup<'_> {
        if let Some(h) = self.get(name) {
            return Lookup::Name(h);
        }
        let mut at = 0;
        while name[at] != 0 {
            at += 1 + usize::from(name[at]);
            let Some(encloser) = self.get(&name[at..]) else {
                continue;
            };
            // the source of synthesis: `*` below the closest encloser
            let suffix = &name[at..];
            let mut wild = [0u8; MAX_NAME];
            if encloser.delegated || suffix.len() + 2 > MAX_NAME {
                return Lookup::Missing(encloser);
            }
            wild[..2].copy_from_slice(b"\x01*");
            wild[2..2 + suffix.len()].copy_from_slice(suffix);
            return match self.get(&wild[..2 + suffix.len()]) {
                Some(w) => Lookup::Wildcard(w),
                None => Lookup::Missing(encloser),
            };
        }
        Lookup::Outside
    }

    /// The node of a host name as HTTP gives it (any case, with or
    /// without the final dot), without parsing it into a DNS name; `None`
    /// when no zone of ours holds it, or it is no DNS name.
    pub fn host(&self, host: &str) -> Option<&Node> {
        let host = host.strip_suffix('.').unwrap_or(host);
        let mut wire = [0u8; MAX_NAME];
        let mut at = 0;
        for label in host.split('.') {
            let end = at + 1 + label.len();
            if label.is_empty() || label.len() > 63 || end >= MAX_NAME {
                return None;
            }
            wire[at] = label.len() as u8;
            for (w, b) in wire[at + 1..end].iter_mut().zip(label.bytes()) {
                *w = b.to_ascii_lowercase();
            }
            at = end;
        }
        match self.find(&wire[..=at]) {
            Lookup::Name(h) | Lookup::Wildcard(h) => Some(&*h.node),
            Lookup::Missing(_) | Lookup::Outside => None,
        }
    }
}

/// What [`HotIndex::find`] found for a name.
enum Lookup<'i> {
    Name(&'i HotName),
    /// The wildcard that answers the name.
    Wildcard(&'i HotName),
    /// No such name: its closest encloser.
    Missing(&'i HotName),
    /// In no zone of ours.
    Outside,
}

/// `name` in wire form, lower case.
fn lower_wire(name: &Name) -> Box<[u8]> {
    let mut out = Vec::with_capacity(name.len() + 1);
    for label in name.iter() {
        out.push(label.len() as u8);
        out.extend(label.iter().map(u8::to_ascii_lowercase));
    }
    out.push(0);
    out.into_boxed_slice()
}

/// A zone's SOA record as the hot path writes it in authority: its owner,
/// and each name in its RDATA that ends in the origin, end in a pointer
/// to the origin inside the question, filled in per query.
#[derive(Debug)]
pub struct SoaWire {
    bytes: Box<[u8]>,
    /// Offsets in `bytes` of the pointers to fill in.
    pointers: [usize; 3],
    count: usize,
}

impl SoaWire {
    pub fn new(origin: &Name, ttl: u32, soa: &SOA) -> SoaWire {
        let mut bytes = Vec::with_capacity(64);
        let mut pointers = [0; 3];
        let mut count = 0;
        let mut pointer_at = |bytes: &mut Vec<u8>| {
            pointers[count] = bytes.len();
            count += 1;
            bytes.extend_from_slice(&[0xC0, 0]);
        };
        pointer_at(&mut bytes);
        bytes.extend_from_slice(&u16::from(RecordType::SOA).to_be_bytes());
        bytes.extend_from_slice(&1u16.to_be_bytes()); // IN
        bytes.extend_from_slice(&ttl.to_be_bytes());
        let rdlength_at = bytes.len();
        bytes.extend_from_slice(&[0, 0]);
        for name in [&soa.mname, &soa.rname] {
            let inside = origin.zone_of(name);
            let own_labels = if inside {
                usize::from(name.num_labels() - origin.num_labels())
            } else {
                usize::from(name.num_labels())
            };
            for label in name.iter().take(own_labels) {
                bytes.push(label.len() as u8);
                bytes.extend_from_slice(label);
            }
            if inside {
                pointer_at(&mut bytes);
            } else {
                bytes.push(0);
            }
        }
        bytes.extend_from_slice(&soa.serial.to_be_bytes());
        for v in [soa.refresh, soa.retry, soa.expire] {
            bytes.extend_from_slice(&v.to_be_bytes());
        }
        bytes.extend_from_slice(&soa.minimum.to_be_bytes());
        let rdlength = (bytes.len() - rdlength_at - 2) as u16;
        bytes[rdlength_at..rdlength_at + 2].copy_from_slice(&rdlength.to_be_bytes());
        SoaWire {
            bytes: bytes.into_boxed_slice(),
            pointers,
            count,
        }
    }

    /// Appends the record, its pointers at `origin` (an offset in the
    /// message).
    fn write(&self, origin: u16, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&self.bytes);
        let pointer = (0xC000 | origin).to_be_bytes();
        for &at in &self.pointers[..self.count] {
            out[start + at..start + at + 2].copy_from_slice(&pointer);
        }
    }
}

/// Longest name in wire form, and most labels one can have.
const MAX_NAME: usize = 255;
const MAX_LABELS: usize = 128;

/// What one query is answered with.
enum Plan<'s> {
    /// Records of the asked name (all with a tail), and the ECS scope.
    Answers(Answers<'s>, u8),
    /// NODATA or NXDOMAIN: the zone's SOA in authority.
    Negative(ResponseCode, usize, u8),
    Refused,
}

enum Answers<'s> {
    Set(&'s [SizedRecord]),
    /// Indices into a steered record's answers.
    Chosen(&'s Steered),
}

/// A query of the hot shape as it arrived.
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'q> {
    pub query: &'q Query<'q>,
    /// The whole message (the answer echoes its question).
    pub packet: &'q [u8],
    pub source: IpAddr,
    /// Over UDP (answers are bounded by the requester's size), else TCP.
    pub udp: bool,
}

/// Answers `incoming` into `out`, as the hickory path would, and returns
/// what the answer is about (for rate limiting) and what its counters
/// need; `None` when the query is
/// not of a shape this path answers, with `out` left for the caller to
/// fill. `extras` holds what the OPT record carries besides ECS and the
/// bounds on a UDP answer's size.
pub(crate) fn answer(
    snap: &Snapshot,
    geo: Option<&GeoIp>,
    incoming: &Incoming<'_>,
    extras: &Extras<'_>,
    local: &mut Local,
    out: &mut Vec<u8>,
) -> Option<(Subject, Seen)> {
    let max_udp = extras.max_udp;
    let Incoming {
        query,
        packet,
        source,
        udp,
    } = *incoming;
    let edns = query.edns.as_ref();
    if query.qclass != 1
        || matches!(query.qtype, 41 | 251 | 252 | 255)
        || edns.is_some_and(|e| e.version != 0)
    {
        return None;
    }
    // the name in lower case, and where each label starts
    let mut lower = [0u8; MAX_NAME];
    let mut starts = [0u8; MAX_LABELS];
    let name = query.qname;
    let mut labels = 0;
    let mut i = 0;
    while name[i] != 0 {
        starts[labels] = i as u8;
        labels += 1;
        let len = usize::from(name[i]);
        lower[i] = name[i];
        for j in i + 1..=i + len {
            lower[j] = name[j].to_ascii_lowercase();
        }
        i += 1 + len;
    }
    let lower = &lower[..name.len()];
    let qtype = RecordType::from(query.qtype);

    // the client: the ECS subnet when it has a source prefix, else the
    // source address (RFC 7871 §7.2.1)
    let ecs = edns.and_then(|e| e.ecs);
    let (addr, prefix) = match ecs {
        Some(cs) if cs.source > 0 => (cs.addr, cs.source),
        _ => (source, if source.is_ipv4() { 32 } else { 128 }),
    };
    let (rng, scratch) = local;
    let found = snap.hot.find(lower);
    let mut seen_steered = None;
    let zone_key = match &found {
        Lookup::Name(h) | Lookup::Wildcard(h) | Lookup::Missing(h) => snap.zones[h.zone].stats_key,
        Lookup::Outside => 0,
    };
    // random names under one wildcard share its rate-limit bucket
    let subject = match &found {
        Lookup::Wildcard(h) => Subject::node(&*h.node),
        _ => Subject::Question,
    };
    let plan = match found {
        // a wildcard's records are written with the question's name as
        // owner, like every record here
        Lookup::Name(h) | Lookup::Wildcard(h) if h.delegated => return None,
        Lookup::Name(h) | Lookup::Wildcard(h) => {
            let node = &*h.node;
            if let Some(set) = node.set(qtype) {
                if !set.wire_ready {
                    return None;
                }
                Plan::Answers(Answers::Set(&set.records), 0)
            } else if let Some(steered) = node.steered(qtype) {
                // a steered CNAME's records hold names: never wire-ready
                if !steered.wire_ready {
                    return None;
                }
                let mut st = Steering {
                    client: Client {
                        addr: Some(addr),
                        prefix,
                        geo,
                        ecs: ecs.is_some_and(|cs| cs.source > 0),
                    },
                    rng,
                    scratch: std::mem::take(scratch),
                };
                let plan = steer(steered, &mut st, h.zone, &mut seen_steered);
                *scratch = st.scratch;
                plan
            } else if node.has_cname() {
                return None;
            } else {
                Plan::Negative(ResponseCode::NoError, h.zone, 0)
            }
        }
        // the closest name that exists: NXDOMAIN in its zone, or not ours
        Lookup::Missing(h) if h.delegated => return None,
        Lookup::Missing(h) => Plan::Negative(ResponseCode::NXDomain, h.zone, 0),
        Lookup::Outside => Plan::Refused,
    };

    let (rcode, authoritative, scope) = match &plan {
        Plan::Answers(_, scope) => (ResponseCode::NoError, true, *scope),
        Plan::Negative(rcode, _, scope) => (*rcode, true, *scope),
        Plan::Refused => (ResponseCode::Refused, false, 0),
    };
    out.clear();
    out.extend_from_slice(&query.id.to_be_bytes());
    // QR; opcode, RD and CD as asked; AA; the RCODE's low 4 bits
    let mut flags = 0x8000 | (query.flags & 0x7910) | (u16::from(rcode.low()) & 0xF);
    if authoritative {
        flags |= 0x0400;
    }
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, u8::from(edns.is_some())]);
    out.extend_from_slice(&packet[12..query.question_end]);
    let question_end = out.len();
    let (answers, authority): (u16, u16) = match plan {
        Plan::Answers(Answers::Set(records), _) => (write_records(records.iter(), out), 0),
        Plan::Answers(Answers::Chosen(steered), _) => {
            let chosen = scratch.iter().map(|&i| &steered.answers[usize::from(i)]);
            (write_records(chosen, out), 0)
        }
        Plan::Negative(_, zone, _) => {
            let zone = &snap.zones[zone];
            // the origin is the question's last labels
            let origin_labels = usize::from(zone.origin.num_labels());
            let at = match labels.checked_sub(origin_labels) {
                Some(l) if l < labels => usize::from(starts[l]),
                _ => name.len() - 1,
            };
            zone.negative_wire.write((12 + at) as u16, out);
            (0, 1)
        }
        Plan::Refused => (0, 0),
    };
    out[6..8].copy_from_slice(&answers.to_be_bytes());
    out[8..10].copy_from_slice(&authority.to_be_bytes());

    let limit = match (udp, edns) {
        (true, Some(e)) => usize::from(e.udp_size.clamp(512, max_udp.max(512))),
        (true, None) => 512,
        (false, _) => usize::from(u16::MAX),
    }
    .min(extras.cap);
    // the node's NSID, when asked for and configured (RFC 5001)
    let nsid = extras.nsid;
    let opt_len = edns.map_or(0, |_| {
        11 + ecs.map_or(0, |cs| 8 + ecs_octets(cs.source))
            + nsid.map_or(0, |n| 4 + n.len())
            + extras.cookie.map_or(0, |c| 4 + c.len())
    });
    if out.len() + opt_len > limit {
        // truncated: the header, the question and the OPT record
        out.truncate(question_end);
        out[2] |= 0x02;
        out[6..10].fill(0);
    }
    if let Some(e) = edns {
        out.extend_from_slice(&[0, 0, 41]);
        out.extend_from_slice(&max_udp.max(512).to_be_bytes());
        out.extend_from_slice(&[rcode.high(), 0, if e.dnssec_ok { 0x80 } else { 0 }, 0]);
        let rdlength = opt_len - 11;
        out.extend_from_slice(&(rdlength as u16).to_be_bytes());
        if let Some(cs) = ecs {
            let octets = ecs_octets(cs.source);
            out.extend_from_slice(&[0, 8]);
            out.extend_from_slice(&(4 + octets as u16).to_be_bytes());
            let scope = if cs.source == 0 { 0 } else { scope };
            match cs.addr {
                IpAddr::V4(a) => {
                    out.extend_from_slice(&[0, 1, cs.source, scope]);
                    out.extend_from_slice(&a.octets()[..octets]);
                }
                IpAddr::V6(a) => {
                    out.extend_from_slice(&[0, 2, cs.source, scope]);
                    out.extend_from_slice(&a.octets()[..octets]);
                }
            }
        }
        if let Some(n) = nsid {
            out.extend_from_slice(&[0, 3]);
            out.extend_from_slice(&(n.len() as u16).to_be_bytes());
            out.extend_from_slice(n);
        }
        if let Some(c) = &extras.cookie {
            out.extend_from_slice(&[0, 10]);
            out.extend_from_slice(&(c.len() as u16).to_be_bytes());
            out.extend_from_slice(c);
        }
    }
    let seen = Seen {
        zone: zone_key,
        steered: seen_steered,
        ecs: ecs.is_some(),
    };
    Some((subject, seen))
}

/// Octets of an ECS address with `source` known bits.
fn ecs_octets(source: u8) -> usize {
    usize::from(source).div_ceil(8)
}

/// Writes each record as a pointer to the question's name and its tail;
/// returns how many.
fn write_records<'r>(records: impl Iterator<Item = &'r SizedRecord>, out: &mut Vec<u8>) -> u16 {
    let mut n = 0;
    for r in records {
        if let Some(tail) = &r.tail {
            out.extend_from_slice(&[0xC0, 12]);
            out.extend_from_slice(tail);
            n += 1;
        }
    }
    n
}

/// A steered record's plan, from the same mapping the hickory path uses.
fn steer<'s>(
    steered: &'s Steered,
    st: &mut Steering<'_, '_>,
    zone: usize,
    seen: &mut Option<(u64, u64)>,
) -> Plan<'s> {
    let (answer, scope, what) = steered_answer(steered, st);
    *seen = Some((steered.stats_key, what));
    match answer {
        SteeredAnswer::Endpoints => Plan::Answers(Answers::Chosen(steered), scope),
        SteeredAnswer::Set(set) => Plan::Answers(Answers::Set(set), scope),
        SteeredAnswer::NoData => Plan::Negative(ResponseCode::NoError, zone, scope),
    }
}

#[cfg(test)]
mod tests {
    //! The differential test: for generated queries of the hot shape, the
    //! hot path and the hickory path give the same answer.

    use std::net::{IpAddr, Ipv4Addr, SocketAddr};
    use std::sync::Arc;

    use arc_swap::ArcSwapOption;
    use hickory_proto::op::Message;
    use hickory_proto::serialize::binary::BinDecodable;
    use hickory_server::net::xfer::Protocol;
    use hickory_server::server::Request;
    use meridian_steering::geo::build::{asn_database, city_database, demo_asns, demo_places};
    use meridian_steering::geo::DbBytes;
    use meridian_steering::GeoIp;
    use proptest::prelude::*;
    use rand::rngs::SmallRng;
    use rand::SeedableRng;

    use super::Incoming;
    use crate::wire::{parse, Parsed};
    use crate::{Handler, Snapshot, SnapshotHandle};

    const SPEC: &str = r#"
zones:
  example.test:
    soa: {rname: hostmaster.example.test., mname: ns1.example.test., minimum: 60}
    ns: [{name: ns1, addresses: [192.0.2.53]}]
    records:
      - {name: www, type: A, values: [192.0.2.1, 192.0.2.2]}
      - {name: www, type: AAAA, value: "2001:db8::1"}
      - {name: "@", type: TXT, value: "v=spf1 -all"}
      - {name: "@", type: MX, value: "10 mail"}
      - {name: "@", type: CAA, value: '0 issue "ca.example"'}
      - {name: mail, type: A, value: 192.0.2.25}
      - {name: big, type: TXT, values: [BIGTXT]}
      - {name: x.y.z, type: TXT, value: deep}
      - {name: docs, type: CNAME, value: www}
      - {name: away, type: CNAME, value: www.example.org.}
      - {name: sub, type: NS, value: ns.sub}
      - {name: ns.sub, type: A, value: 192.0.2.60}
      - {name: "*.wild", type: A, values: [192.0.2.80, 192.0.2.81]}
      - {name: "*.wild", type: MX, value: "10 mail"}
      - {name: sub.wild, type: TXT, value: real}
      - {name: "*.wc", type: CNAME, value: www}
    steered:
      - name: "*.gw"
        type: A
        pool: web
        steps:
          - health
          - geo: {continents: {EU: [eu], NA: [us], AS: [ap]}, default: [us]}
          - {first: 1}
      - {name: lb, type: A, ttl: 30, pool: web, steps: [health, weighted, {first: 2}]}
      - {name: lb, type: AAAA, ttl: 30, pool: web6, steps: [health, weighted, {first: 1}]}
      - name: geo
        type: A
        pool: web
        steps:
          - health
          - geo: {continents: {EU: [eu], NA: [us], AS: [ap]}, default: [us]}
          - {first: 1}
      - {name: near, type: A, pool: web, steps: [health, nearest, {first: 1}]}
      - {name: down, type: A, pool: off, steps: [health], on_all_down: nodata}
      - {name: sorry, type: A, pool: off, steps: [health], on_all_down: {sorry: [192.0.2.99]}}
  child.example.test:
    soa: {rname: h.example.net., mname: ns.example.net.}
    ns: [{name: ns.example.net.}]
    records:
      - {name: www, type: A, value: 198.51.100.1}
pools:
  web:
    endpoints:
      - {id: eu, address: 192.0.2.10, region: eu, lat: 53.35, lon: -6.26, weight: 50}
      - {id: us, address: 198.51.100.10, region: us, lat: 38.9, lon: -77.04, weight: 30}
      - {id: ap, address: 203.0.113.10, region: ap, lat: 19.08, lon: 72.88, weight: 20}
  web6:
    endpoints:
      - {id: eu, address: "2001:db8:1::10", region: eu, weight: 50}
      - {id: us, address: "2001:db8:2::10", region: us, weight: 30}
  off:
    endpoints:
      - {id: a, address: 192.0.2.7, region: r, state: disabled}
"#;

    /// Names asked: existing ones, missing ones, below a delegation,
    /// through CNAMEs, empty non-terminals, and outside every zone.
    const NAMES: &[&str] = &[
        "example.test",
        "www.example.test",
        "mail.example.test",
        "big.example.test",
        "x.y.z.example.test",
        "y.z.example.test",
        "z.example.test",
        "docs.example.test",
        "away.example.test",
        "sub.example.test",
        "a.ns.sub.example.test",
        "lb.example.test",
        "geo.example.test",
        "near.example.test",
        "down.example.test",
        "sorry.example.test",
        "nope.example.test",
        "deep.nope.example.test",
        "foo.wild.example.test",
        "a.b.wild.example.test",
        "*.wild.example.test",
        "sub.wild.example.test",
        "x.sub.wild.example.test",
        "x.wc.example.test",
        "edge.gw.example.test",
        "a.b.gw.example.test",
        "child.example.test",
        "www.child.example.test",
        "nope.child.example.test",
        "example.org",
        "test",
    ];

    const TYPES: &[u16] = &[1, 28, 16, 15, 257, 2, 6, 5, 33, 43, 255, 12, 65_000];

    /// The handler, built once for all cases.
    fn handler() -> &'static Handler {
        static HANDLER: std::sync::OnceLock<Handler> = std::sync::OnceLock::new();
        HANDLER.get_or_init(build_handler)
    }

    fn build_handler() -> Handler {
        let big: Vec<String> = (0..40)
            .map(|i| format!("\"part {i:02} {}\"", "x".repeat(20)))
            .collect();
        let text = SPEC.replace("BIGTXT", &big.join(", "));
        let spec = meridian_config::zone::parse("t.yaml", &text).expect("valid spec");
        let snap = Snapshot::build(&spec, &Default::default(), 1, 7).expect("builds");
        let geo = GeoIp::new(
            DbBytes::Owned(city_database(&demo_places()).unwrap()),
            Some(DbBytes::Owned(asn_database(&demo_asns()).unwrap())),
        )
        .unwrap();
        Handler::new(
            SnapshotHandle::new(snap),
            Arc::new(ArcSwapOption::from_pointee(geo)),
            1232,
        )
        .with_nsid(b"node-7")
    }

    /// A query: its name (each letter's case from `case`), type, flags,
    /// and an OPT record with an ECS option when asked.
    #[derive(Debug, Clone)]
    struct Ask {
        name: usize,
        case: u64,
        qtype: u16,
        flags: u16,
        /// UDP size, DO, and an ECS option.
        edns: Option<(u16, bool, Option<Subnet>)>,
        /// An NSID option in the OPT record.
        nsid: bool,
    }

    /// An ECS option: IPv4 or not, the source prefix, the address's bits.
    type Subnet = (bool, u8, u128);

    fn packet(a: &Ask) -> Vec<u8> {
        let mut p = vec![0xAB, 0xCD];
        p.extend_from_slice(&a.flags.to_be_bytes());
        p.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, u8::from(a.edns.is_some())]);
        let mut bit = 0;
        for label in NAMES[a.name].split('.') {
            p.push(label.len() as u8);
            for c in label.bytes() {
                let upper = a.case >> (bit % 64) & 1 == 1;
                bit += 1;
                p.push(if upper { c.to_ascii_uppercase() } else { c });
            }
        }
        p.push(0);
        p.extend_from_slice(&a.qtype.to_be_bytes());
        p.extend_from_slice(&[0, 1]);
        if let Some((size, dnssec_ok, ecs)) = a.edns {
            p.extend_from_slice(&[0, 0, 41]);
            p.extend_from_slice(&size.to_be_bytes());
            p.extend_from_slice(&[0, 0, if dnssec_ok { 0x80 } else { 0 }, 0]);
            let mut opts = Vec::new();
            if let Some((v4, source, bits)) = ecs {
                let (family, max, addr) = if v4 {
                    (1u16, 32, (bits as u32).to_be_bytes().to_vec())
                } else {
                    (2, 128, bits.to_be_bytes().to_vec())
                };
                let source = source % (max + 1);
                let mut addr = addr;
                // keep the source prefix's bits, clear the rest
                for (i, b) in addr.iter_mut().enumerate() {
                    let keep = (usize::from(source)).saturating_sub(i * 8).min(8);
                    *b &= !(0xFFu8.checked_shr(keep as u32).unwrap_or(0));
                }
                let octets = usize::from(source).div_ceil(8);
                opts.extend_from_slice(&[0, 8]);
                opts.extend_from_slice(&(4 + octets as u16).to_be_bytes());
                opts.extend_from_slice(&family.to_be_bytes());
                opts.extend_from_slice(&[source, 0]);
                opts.extend_from_slice(&addr[..octets]);
            }
            if a.nsid {
                opts.extend_from_slice(&[0, 3, 0, 0]);
            }
            p.extend_from_slice(&(opts.len() as u16).to_be_bytes());
            p.extend_from_slice(&opts);
        }
        p
    }

    /// Addresses in the demo database's networks and elsewhere.
    fn client_bits() -> impl Strategy<Value = (bool, u128)> {
        let v4 = prop_oneof![
            Just(0xC000_0200u32),
            Just(0xC633_6400),
            Just(0xCB00_7100),
            any::<u32>()
        ];
        let v6 = prop_oneof![
            Just(0x2001_0db8_0001u128 << 80),
            Just(0x2001_0db8_0002u128 << 80),
            any::<u128>()
        ];
        prop_oneof![
            (v4, any::<u8>()).prop_map(|(a, low)| (true, u128::from(a | u32::from(low)))),
            v6.prop_map(|a| (false, a)),
        ]
    }

    fn asks() -> impl Strategy<Value = Ask> {
        let ecs = proptest::option::of(
            (client_bits(), any::<u8>()).prop_map(|((v4, bits), s)| (v4, s, bits)),
        );
        let edns = proptest::option::of((
            prop_oneof![Just(0u16), Just(512), Just(1232), Just(4096), any::<u16>()],
            any::<bool>(),
            ecs,
        ));
        (
            0..NAMES.len(),
            any::<u64>(),
            prop_oneof![4 => proptest::sample::select(TYPES), 1 => any::<u16>()],
            // RD and CD as asked, sometimes other bits a query may set
            prop_oneof![Just(0x0100u16), Just(0), Just(0x0110), Just(0x0130)],
            edns,
            any::<bool>(),
        )
            .prop_map(|(name, case, qtype, flags, edns, nsid)| Ask {
                name,
                case,
                qtype,
                flags,
                edns,
                nsid,
            })
    }

    /// Both paths' answers to `a`, each with the same randomness; `None`
    /// from the hot path when it leaves the query to the hickory path.
    fn both(h: &Handler, a: &Ask, seed: u64) -> (Vec<u8>, Option<Vec<u8>>) {
        let p = packet(a);
        let src = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 77)), 5353);
        let Parsed::Hot(q) = parse(&p) else {
            panic!("generated queries are of the hot shape: {a:?}")
        };
        let mut local = (SmallRng::seed_from_u64(seed), Vec::new());
        let mut hot = Vec::new();
        let incoming = Incoming {
            query: &q,
            packet: &p,
            source: src.ip(),
            udp: true,
        };
        let answered = h.answer_hot_with(&incoming, &mut hot, &mut local).is_some();
        let request = Request::from_bytes(p.clone(), src, Protocol::Udp).expect("decodes");
        let mut local = (SmallRng::seed_from_u64(seed), Vec::new());
        let mut slow = Vec::new();
        h.respond_with(&request, p.len(), &mut slow, &mut local)
            .expect("encodes");
        (slow, answered.then_some(hot))
    }

    /// The hot answer says what the hickory one says, in as many bytes or
    /// fewer; where hickory's longer encoding had to truncate, the hot one
    /// may be whole if it fits.
    fn same_answer(a: &Ask, slow: &[u8], hot: &[u8]) {
        let s = Message::from_bytes(slow).expect("hickory's answer decodes");
        let h = Message::from_bytes(hot).expect("the hot answer decodes");
        assert_eq!(hot[..4], slow[..4], "id and flags differ for {a:?}");
        let question_end = 12 + packet(a)[12..].iter().position(|&b| b == 0).unwrap() + 5;
        assert_eq!(
            hot[12..question_end],
            slow[12..question_end],
            "the question"
        );
        assert_eq!(h.edns, s.edns, "EDNS for {a:?}");
        let limit = match a.edns {
            Some((size, ..)) => usize::from(size.clamp(512, 1232)),
            None => 512,
        };
        assert!(hot.len() <= limit, "{a:?}: {} > {limit}", hot.len());
        if s.metadata.truncation && !h.metadata.truncation {
            return;
        }
        assert!(
            hot.len() <= slow.len(),
            "{a:?}: {} > {}",
            hot.len(),
            slow.len()
        );
        assert_eq!(h.metadata, s.metadata, "header for {a:?}");
        assert_eq!(h.answers, s.answers, "answers for {a:?}");
        assert_eq!(h.authorities, s.authorities, "authority for {a:?}");
        assert_eq!(h.additionals, s.additionals, "additional for {a:?}");
    }

    fn cases() -> u32 {
        std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(3000)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(cases()))]

        #[test]
        fn hot_answers_are_the_hickory_answers(a in asks(), seed in any::<u64>()) {
            let (slow, hot) = both(handler(), &a, seed);
            if let Some(hot) = hot {
                same_answer(&a, &slow, &hot);
            }
        }
    }

    #[test]
    fn the_common_queries_take_the_hot_path() {
        let h = handler();
        let ask = |name: &str, qtype, ecs| Ask {
            name: NAMES.iter().position(|n| *n == name).unwrap(),
            case: 0x5A5A,
            qtype,
            flags: 0x0100,
            edns: Some((1232, false, ecs)),
            nsid: true,
        };
        let eu = Some((true, 24, 0xC000_0200));
        let hot = [
            ask("www.example.test", 1, None),
            ask("www.example.test", 28, None),
            ask("example.test", 16, None),
            ask("example.test", 257, None),
            ask("lb.example.test", 1, None),
            ask("lb.example.test", 28, None),
            ask("geo.example.test", 1, eu),
            ask("near.example.test", 1, eu),
            ask("down.example.test", 1, None),
            ask("sorry.example.test", 1, None),
            ask("nope.example.test", 1, eu),
            ask("y.z.example.test", 1, None),
            ask("www.child.example.test", 1, None),
            ask("nope.child.example.test", 1, None),
            ask("example.org", 1, None),
            // wildcard synthesis: an A set, NODATA, a steered wildcard with
            // ECS, and NXDOMAIN below an existing name
            ask("foo.wild.example.test", 1, None),
            ask("a.b.wild.example.test", 28, None),
            ask("edge.gw.example.test", 1, eu),
            ask("x.sub.wild.example.test", 1, None),
        ];
        for a in &hot {
            let (slow, hot) = both(h, a, 7);
            let hot = hot.unwrap_or_else(|| panic!("{a:?} took the hickory path"));
            same_answer(a, &slow, &hot);
        }
        let slow = [
            ask("docs.example.test", 1, None),
            ask("a.ns.sub.example.test", 1, None),
            ask("example.test", 15, None),
            ask("example.test", 6, None),
            ask("www.example.test", 255, None),
            ask("x.wc.example.test", 1, None),
        ];
        for a in &slow {
            assert!(both(h, a, 7).1.is_none(), "{a:?} took the hot path");
        }
        // the geo answer and its scope: Europe's endpoint, the network's /25
        let (_, hot) = both(h, &ask("geo.example.test", 1, eu), 7);
        let hot = hot.unwrap();
        let m = Message::from_bytes(&hot).unwrap();
        assert_eq!(m.answers[0].data.to_string(), "192.0.2.10");
        // the node's NSID, asked for, after the ECS option
        assert!(hot.ends_with(b"\x00\x03\x00\x06node-7"), "{hot:x?}");
    }
}
