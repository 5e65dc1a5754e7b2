//! What to answer: the authoritative lookup from a [`Snapshot`] and one
//! question to a [`Reply`] plan — sections and response code — with no
//! sockets and no wire format. The handler turns the plan into a message.
//!
//! Rules (RFC 1034 §4.3.2 with RFC 2308, 6604 and 8482):
//! - a name outside every zone is REFUSED;
//! - a name at or below a delegation gets a referral (AA=0, the NS set in
//!   authority, glue in additional), except DS at the cut itself;
//! - a missing name is NXDOMAIN, a name without the type NODATA, both with
//!   the SOA in authority at TTL min(SOA TTL, minimum);
//! - a missing name is synthesized from the wildcard at its closest
//!   encloser, if there is one (RFC 4592), with the name asked as owner;
//! - CNAMEs are followed inside the zone, at most [`MAX_CHAIN`] links;
//! - ANY gets one synthesized HINFO (RFC 8482).

use std::net::IpAddr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::HINFO;
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
use meridian_steering::{Candidate, Context, GeoIp, Outcome};
use rand::RngCore;

use crate::rrl::Subject;
use crate::snapshot::{Found, Node, SizedRecord, Snapshot, Steered, ZoneData};
use crate::stats;

/// CNAME links followed within a zone before giving up.
pub const MAX_CHAIN: usize = 8;

/// Optional additional records (addresses of MX and SRV targets) in one
/// answer, at most. A referral's glue is not optional and not capped
/// (RFC 9471): it is bounded by the delegation's NS set.
pub const MAX_ADDITIONAL: usize = 16;

/// Who is asking, as far as steering may know.
#[derive(Debug, Clone, Copy)]
pub struct Client<'a> {
    /// The ECS address when the query carried one, else the resolver's.
    pub addr: Option<IpAddr>,
    /// Known leading bits of `addr`: the ECS source prefix, else 32 or 128.
    pub prefix: u8,
    /// GeoIP databases, when loaded; looked up only for policies that need
    /// the client's location.
    pub geo: Option<&'a GeoIp>,
    /// The query carried an ECS subnet (with a source prefix): a static
    /// CNAME to a steered name is then answered alone, see [`resolve`].
    pub ecs: bool,
}

/// An answer record: one of the snapshot's, or a steered record's (shared
/// by every record of its pool, so owned by no name) given the name it
/// answers for.
#[derive(Debug)]
pub enum Answer<'s> {
    Snapshot(&'s SizedRecord),
    Owned(Box<SizedRecord>),
}

impl Answer<'_> {
    pub fn sized(&self) -> &SizedRecord {
        match self {
            Answer::Snapshot(r) => r,
            Answer::Owned(r) => r,
        }
    }
}

/// The plan for one response.
#[derive(Debug)]
pub struct Reply<'s> {
    pub rcode: ResponseCode,
    pub authoritative: bool,
    /// Leading bits of the client address the answer depended on: the ECS
    /// scope (0 when no steered record looked at the client).
    pub scope: u8,
    pub answers: Vec<Answer<'s>>,
    /// An answer made for this query (the RFC 8482 HINFO).
    pub synthesized: Option<SizedRecord>,
    pub authority: Vec<&'s SizedRecord>,
    pub additional: Vec<&'s SizedRecord>,
    /// Additional records are glue a referral needs: the message must carry
    /// them or be truncated.
    pub additional_required: bool,
    /// What the answer is about for rate limiting: the wildcard it was
    /// synthesized from, or the delegation of a referral.
    pub subject: Subject,
    /// For the counters: the zone that answered ([`stats::zone_key`], 0
    /// for none) and the first steered record's decision.
    pub seen_zone: u64,
    pub seen_steered: Option<(u64, u64)>,
}

impl<'s> Reply<'s> {
    fn new(rcode: ResponseCode, authoritative: bool) -> Reply<'s> {
        Reply {
            rcode,
            authoritative,
            scope: 0,
            answers: Vec::new(),
            synthesized: None,
            authority: Vec::new(),
            additional: Vec::new(),
            additional_required: false,
            subject: Subject::Question,
            seen_zone: 0,
            seen_steered: None,
        }
    }

    /// REFUSED: not a name we serve.
    pub fn refused() -> Reply<'s> {
        Reply::new(ResponseCode::Refused, false)
    }

    /// Every answer record, snapshot-owned and synthesized.
    pub fn answer_records(&self) -> impl Iterator<Item = &Record> + Send {
        self.answers
            .iter()
            .map(|a| &a.sized().record)
            .chain(self.synthesized.iter().map(|r| &r.record))
    }

    /// An upper bound of the encoded size of the record sections (no name
    /// compression counted).
    pub fn records_len(&self, with_additional: bool) -> usize {
        let sum = |v: &[&SizedRecord]| v.iter().map(|r| r.wire_len).sum::<usize>();
        self.answers
            .iter()
            .map(|a| a.sized().wire_len)
            .sum::<usize>()
            + self.synthesized.as_ref().map_or(0, |r| r.wire_len)
            + sum(&self.authority)
            + if with_additional {
                sum(&self.additional)
            } else {
                0
            }
    }
}

/// What steered records need to decide: the client, randomness, and a
/// reusable candidate list.
pub struct Steering<'a, 'r> {
    pub client: Client<'a>,
    pub rng: &'r mut dyn RngCore,
    pub scratch: Vec<Candidate>,
}

/// Answers `qname`/`qtype` from `snap`; steered records decide for `st`'s
/// client.
pub fn resolve<'s>(
    snap: &'s Snapshot,
    qname: &LowerName,
    qtype: RecordType,
    st: &mut Steering<'_, '_>,
) -> Reply<'s> {
    resolve_asked(snap, qname, &Name::from(qname.clone()), qtype, st)
}

/// [`resolve`], with the question's name as it was asked (`asked`, any
/// case): records made for it (steered, synthesized from a wildcard) are
/// owned by it, so they keep its case and compress against it.
pub fn resolve_asked<'s>(
    snap: &'s Snapshot,
    qname: &LowerName,
    asked: &Name,
    qtype: RecordType,
    st: &mut Steering<'_, '_>,
) -> Reply<'s> {
    let Some(zone) = snap.find_zone(qname) else {
        return Reply::refused();
    };
    let mut reply = Reply::new(ResponseCode::NoError, true);
    reply.seen_zone = zone.stats_key;
    let mut name = qname.clone();
    // the owner of records made for `name`
    let mut owner = asked.clone();
    // the names whose CNAME is in the answer already
    let mut chain: Vec<LowerName> = Vec::new();
    for hop in 0..MAX_CHAIN {
        if zone.has_cuts {
            if let Some((cut_name, cut)) = find_cut(zone, &name) {
                let ds_at_cut = qtype == RecordType::DS && cut_name == name;
                if !ds_at_cut {
                    if hop == 0 {
                        referral(&mut reply, cut);
                    }
                    // a CNAME into a delegated name: the answer ends at the
                    // CNAME and the resolver follows the referral itself
                    return reply;
                }
            }
        }
        // a wildcard's records answer with the name asked as their owner
        let (node, synthesized) = match zone.lookup(&name) {
            Found::Name(node) => (node, false),
            Found::Wildcard(node) => {
                if hop == 0 {
                    reply.subject = Subject::node(node);
                }
                (node, true)
            }
            Found::Missing => {
                reply.rcode = ResponseCode::NXDomain;
                reply.authority.push(&zone.negative_soa);
                return reply;
            }
        };
        if qtype == RecordType::ANY {
            // the CNAME is the answer to ANY where there is one (RFC 8482
            // §4.2 allows the synthesized HINFO only without one)
            if node.has_cname() {
                cname(&mut reply, node, &owner, synthesized, st);
            } else {
                reply.synthesized = Some(hinfo(&owner, zone.default_ttl));
            }
            return reply;
        }
        if let Some(set) = node.set(qtype) {
            if synthesized {
                let records = set.records.iter().map(|r| renamed(r, &owner));
                reply.answers.extend(records);
            } else {
                reply
                    .answers
                    .extend(set.records.iter().map(Answer::Snapshot));
            }
            let room = MAX_ADDITIONAL.saturating_sub(reply.additional.len());
            reply.additional.extend(set.additional.iter().take(room));
            return reply;
        }
        if let Some(steered) = node.steered(qtype) {
            // a name holds one CNAME (RFC 2181 §10.1), whatever the steps
            // leave
            let limit = if qtype == RecordType::CNAME {
                1
            } else {
                usize::MAX
            };
            if !steer(&mut reply, steered, &owner, st, limit) {
                reply.authority.push(&zone.negative_soa);
            }
            return reply;
        }
        if qtype != RecordType::CNAME {
            if let Some(target) = cname(&mut reply, node, &owner, synthesized, st) {
                // a target answered by another zone (outside this one, or
                // a zone of its own below it): the answer ends at the
                // CNAME and the resolver follows it, rather than an
                // NXDOMAIN from the wrong zone
                let same_zone = snap
                    .find_zone(&target)
                    .is_some_and(|z| std::ptr::eq(z, zone));
                // a loop: each record once, and the chain stops there
                // (RFC 1034 §3.6.2, RFC 2181 §5)
                let looped = target == name || chain.contains(&target);
                // with ECS, a static CNAME to a steered name is answered
                // alone (RFC 7871 §7.2.1): the resolver caches it for
                // every client and asks for the steered part per subnet,
                // where one scope over both would tie the static part to
                // a subnet
                let static_to_steered = st.client.ecs
                    && node.set(RecordType::CNAME).is_some()
                    && match zone.lookup(&target) {
                        Found::Name(t) | Found::Wildcard(t) => !t.steered.is_empty(),
                        Found::Missing => false,
                    };
                if !same_zone || looped || static_to_steered {
                    return reply;
                }
                owner = Name::from(target.clone());
                chain.push(std::mem::replace(&mut name, target));
                continue;
            }
        }
        reply.authority.push(&zone.negative_soa);
        return reply;
    }
    reply
}

/// The highest delegation point at or above `name`, below the apex.
pub(crate) fn find_cut<'z>(zone: &'z ZoneData, name: &LowerName) -> Option<(LowerName, &'z Node)> {
    let mut found = None;
    let mut n = name.clone();
    while n.num_labels() > zone.origin.num_labels() {
        if let Some(node) = zone.nodes.get(&n) {
            if node.is_cut {
                found = Some((n.clone(), &**node));
            }
        }
        n = n.base_name();
    }
    found
}

fn referral<'s>(reply: &mut Reply<'s>, cut: &'s Node) {
    reply.authoritative = false;
    reply.subject = Subject::node(cut);
    if let Some(ns) = cut.set(RecordType::NS) {
        reply.authority.extend(ns.records.iter());
        reply.additional.extend(ns.additional.iter());
        reply.additional_required = true;
    }
}

/// Runs `steered`'s pipeline for `st`'s client: the candidates, best
/// first, are left in `st.scratch` (indices into the pool). The one place
/// a steered record decides, for DNS and for the HTTP fallback.
pub fn decide(steered: &Steered, st: &mut Steering<'_, '_>) -> meridian_steering::Decision {
    decide_without(steered, st, &[])
}

/// [`decide`] as if the endpoints in `exclude` were not in the pool.
pub fn decide_without(
    steered: &Steered,
    st: &mut Steering<'_, '_>,
    exclude: &[meridian_steering::Candidate],
) -> meridian_steering::Decision {
    let client = st.client;
    // a classified policy reads the client's class from its tree; the
    // others look the client up
    let tree = steered.policy.tree();
    let class = match (tree.as_deref(), client.addr) {
        (Some(t), Some(addr)) if client.geo.is_some() => t.classify(addr),
        _ => None,
    };
    let location = match (client.geo, client.addr) {
        (Some(geo), Some(addr)) if class.is_none() && steered.policy.needs_location() => {
            Some(geo.lookup(addr))
        }
        _ => None,
    };
    let mut ctx = Context {
        client: client.addr,
        client_prefix: client.prefix,
        location: location.as_ref(),
        rng: &mut *st.rng,
        class,
    };
    steered
        .policy
        .decide_without(&steered.endpoints, &mut ctx, &mut st.scratch, None, exclude)
}

/// What a steered record answers a client with.
pub(crate) enum SteeredAnswer<'s> {
    /// Its endpoints' records, for the candidates the pipeline left in
    /// [`Steering::scratch`], best first.
    Endpoints,
    /// A fixed set: the sorry set, or the HTTP fallback's addresses.
    Set(&'s [SizedRecord]),
    /// Nothing: NODATA.
    NoData,
}

/// Runs `steered` for `st`'s client: what it answers, the ECS scope, and
/// what it answered first for its counters (an endpoint's key, or
/// [`stats::SORRY`], [`stats::NODATA`], [`stats::HTTP_FALLBACK`]). The one
/// mapping from a decision to records, for the hot path and this one.
pub(crate) fn steered_answer<'s>(
    steered: &'s Steered,
    st: &mut Steering<'_, '_>,
) -> (SteeredAnswer<'s>, u8, u64) {
    let fallback = || match &*steered.fallback {
        [] => (SteeredAnswer::NoData, stats::NODATA),
        set => (SteeredAnswer::Set(set), stats::HTTP_FALLBACK),
    };
    // the HTTP fallback steers each client itself: the same for everyone
    if steered.always_fallback {
        let (answer, what) = fallback();
        return (answer, 0, what);
    }
    let decision = decide(steered, st);
    let (answer, what) = match decision.outcome {
        Outcome::Endpoints => {
            let first = st.scratch.first().map(|&i| usize::from(i));
            let key = first.and_then(|i| steered.endpoint_keys.get(i).copied());
            (SteeredAnswer::Endpoints, key.unwrap_or(stats::NODATA))
        }
        Outcome::Sorry => (SteeredAnswer::Set(&steered.sorry), stats::SORRY),
        Outcome::NoData if steered.fallback_when_down => fallback(),
        Outcome::NoData => (SteeredAnswer::NoData, stats::NODATA),
    };
    (answer, decision.scope, what)
}

/// Runs a steered record for `name` and adds at most `limit` answers.
/// Returns false when the answer is NODATA.
fn steer<'s>(
    reply: &mut Reply<'s>,
    steered: &'s Steered,
    owner: &Name,
    st: &mut Steering<'_, '_>,
    limit: usize,
) -> bool {
    // shared records, given the name they answer for
    let owned = |r: &SizedRecord| renamed(r, owner);
    let (answer, scope, what) = steered_answer(steered, st);
    reply.scope = reply.scope.max(scope);
    reply.seen_steered.get_or_insert((steered.stats_key, what));
    match answer {
        SteeredAnswer::Endpoints => {
            let chosen = st.scratch.iter().take(limit);
            let records = chosen.map(|&i| owned(&steered.answers[usize::from(i)]));
            reply.answers.extend(records);
            true
        }
        SteeredAnswer::Set(set) => {
            reply.answers.extend(set.iter().take(limit).map(owned));
            true
        }
        SteeredAnswer::NoData => false,
    }
}

/// `r` answering for `owner`: a steered record (shared by its pool) or a
/// wildcard's.
fn renamed<'s>(r: &SizedRecord, owner: &Name) -> Answer<'s> {
    let mut record = r.record.clone();
    record.name = owner.clone();
    Answer::Owned(Box::new(SizedRecord::new(record)))
}

/// Adds the node's CNAME (static or steered) to the answer, owned by
/// `owner` (a wildcard's when `synthesized`), and returns its target.
fn cname<'s>(
    reply: &mut Reply<'s>,
    node: &'s Node,
    owner: &Name,
    synthesized: bool,
    st: &mut Steering<'_, '_>,
) -> Option<LowerName> {
    let before = reply.answers.len();
    if let Some(set) = node.set(RecordType::CNAME) {
        let record = set.records.first()?;
        reply.answers.push(if synthesized {
            renamed(record, owner)
        } else {
            Answer::Snapshot(record)
        });
    } else if let Some(steered) = node.steered(RecordType::CNAME) {
        // a name holds one CNAME: the steering's first choice
        if !steer(reply, steered, owner, st, 1) {
            return None;
        }
    } else {
        return None;
    }
    match reply.answers.get(before).map(|a| &a.sized().record.data) {
        Some(RData::CNAME(c)) => Some(LowerName::from(&c.0)),
        _ => None,
    }
}

fn hinfo(owner: &Name, ttl: u32) -> SizedRecord {
    SizedRecord::new(Record::from_rdata(
        owner.clone(),
        ttl,
        RData::HINFO(HINFO::new("RFC8482".into(), String::new())),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use std::str::FromStr;

    const SPEC: &str = r#"
zones:
  example.test:
    soa: {rname: h.example.test., minimum: 60}
    ns: [{name: ns1, addresses: [192.0.2.53]}]
    records:
      - {name: www, type: A, value: 192.0.2.1}
      - {name: loop1, type: CNAME, value: loop2}
      - {name: loop2, type: CNAME, value: loop1}
      - {name: tochild, type: CNAME, value: www.child}
      - {name: tosorry, type: CNAME, value: sorry}
      - {name: self, type: CNAME, value: self}
      - {name: c0, type: CNAME, value: c1}
      - {name: c1, type: CNAME, value: c2}
      - {name: c2, type: CNAME, value: c3}
      - {name: c3, type: CNAME, value: c4}
      - {name: c4, type: CNAME, value: c5}
      - {name: c5, type: CNAME, value: c6}
      - {name: c6, type: CNAME, value: c7}
      - {name: c7, type: CNAME, value: c8}
      - {name: c8, type: CNAME, value: c9}
      - {name: c9, type: A, value: 192.0.2.9}
      - {name: x.y.z, type: TXT, value: deep}
      - {name: sub, type: NS, value: ns.sub}
      - {name: ns.sub, type: A, value: 192.0.2.60}
      - {name: "*.wild", type: A, value: 192.0.2.80}
      - {name: sub.wild, type: TXT, value: real}
      - {name: a.ent.wild, type: TXT, value: deep}
      - {name: "*.wc", type: CNAME, value: www}
      - {name: "*.ws", type: CNAME, value: sorry}
    steered:
      - {name: "*.lb", type: A, pool: two, steps: [health, {first: 1}]}
      - {name: down, type: A, pool: off, steps: [health], on_all_down: nodata}
      - {name: sorry, type: A, pool: off, steps: [health], on_all_down: {sorry: [192.0.2.99]}}
      - {name: cdn, type: CNAME, pool: hosts, steps: [health, weighted]}
  child.example.test:
    soa: {rname: h.example.test.}
    ns: [{name: ns.example.net.}]
    records:
      - {name: www, type: A, value: 198.51.100.1}
pools:
  off:
    endpoints:
      - {id: a, address: 192.0.2.7, region: r, state: disabled}
  two:
    endpoints:
      - {id: a, address: 192.0.2.21, region: r}
      - {id: b, address: 192.0.2.22, region: r}
  hosts:
    endpoints:
      - {id: a, address: a.example.net., region: r}
      - {id: b, address: b.example.net., region: r}
      - {id: c, address: c.example.net., region: r}
"#;

    fn snapshot() -> Snapshot {
        let spec = meridian_config::zone::parse("t.yaml", SPEC).expect("valid spec");
        Snapshot::build(&spec, &Default::default(), 1, 7).expect("builds")
    }

    fn steering(rng: &mut StdRng) -> Steering<'_, '_> {
        Steering {
            client: Client {
                addr: None,
                prefix: 0,
                geo: None,
                ecs: false,
            },
            rng,
            scratch: Vec::new(),
        }
    }

    fn ask(snap: &Snapshot, name: &str, t: RecordType) -> (ResponseCode, bool, Vec<String>, usize) {
        let mut rng = StdRng::seed_from_u64(1);
        let r = resolve(
            snap,
            &LowerName::from_str(name).unwrap(),
            t,
            &mut steering(&mut rng),
        );
        let answers = r.answer_records().map(|rec| rec.data.to_string()).collect();
        (r.rcode, r.authoritative, answers, r.authority.len())
    }

    #[test]
    fn outside_every_zone_is_refused() {
        let s = snapshot();
        assert_eq!(
            ask(&s, "example.org.", RecordType::A).0,
            ResponseCode::Refused
        );
        assert!(!ask(&s, "test.", RecordType::A).1);
    }

    #[test]
    fn the_longest_zone_answers() {
        let s = snapshot();
        assert_eq!(
            ask(&s, "www.child.example.test.", RecordType::A).2,
            ["198.51.100.1"]
        );
        assert_eq!(ask(&s, "www.example.test.", RecordType::A).2, ["192.0.2.1"]);
    }

    #[test]
    fn missing_names_and_empty_non_terminals() {
        let s = snapshot();
        assert_eq!(
            ask(&s, "nope.example.test.", RecordType::A).0,
            ResponseCode::NXDomain
        );
        let (rcode, aa, answers, authority) = ask(&s, "y.z.example.test.", RecordType::A);
        assert_eq!(
            (rcode, aa, answers.len(), authority),
            (ResponseCode::NoError, true, 0, 1)
        );
        assert_eq!(
            ask(&s, "z.example.test.", RecordType::TXT).0,
            ResponseCode::NoError
        );
    }

    /// Owners and data of the answer records.
    fn owned(snap: &Snapshot, name: &str, t: RecordType) -> (ResponseCode, Vec<String>) {
        let mut rng = StdRng::seed_from_u64(1);
        let qname = LowerName::from_str(name).unwrap();
        let r = resolve(snap, &qname, t, &mut steering(&mut rng));
        let records = r
            .answer_records()
            .map(|rec| format!("{} {}", rec.name, rec.data))
            .collect();
        (r.rcode, records)
    }

    #[test]
    fn wildcards_synthesize_below_their_closest_encloser() {
        let s = snapshot();
        let nx = (ResponseCode::NXDomain, vec![]);
        let a = |owner: &str| (ResponseCode::NoError, vec![format!("{owner} 192.0.2.80")]);
        // one label or several below the closest encloser
        assert_eq!(
            owned(&s, "foo.wild.example.test.", RecordType::A),
            a("foo.wild.example.test.")
        );
        assert_eq!(
            owned(&s, "a.b.wild.example.test.", RecordType::A),
            a("a.b.wild.example.test.")
        );
        // the wildcard itself, asked literally
        assert_eq!(
            owned(&s, "*.wild.example.test.", RecordType::A),
            a("*.wild.example.test.")
        );
        // the wildcard has no such type: NODATA with the SOA
        let (rcode, _, answers, authority) = ask(&s, "foo.wild.example.test.", RecordType::AAAA);
        assert_eq!(
            (rcode, answers.len(), authority),
            (ResponseCode::NoError, 0, 1)
        );
        // an existing name is never synthesized over, nor is anything
        // below it or below an empty non-terminal
        assert_eq!(
            owned(&s, "sub.wild.example.test.", RecordType::A).1.len(),
            0
        );
        assert_eq!(owned(&s, "x.sub.wild.example.test.", RecordType::A), nx);
        assert_eq!(
            owned(&s, "ent.wild.example.test.", RecordType::A).0,
            ResponseCode::NoError
        );
        assert_eq!(owned(&s, "x.ent.wild.example.test.", RecordType::A), nx);
        // ANY at a synthesized name: the RFC 8482 HINFO, owned by the name
        assert_eq!(
            owned(&s, "q.wild.example.test.", RecordType::ANY).1,
            ["q.wild.example.test. RFC8482 "]
        );
    }

    #[test]
    fn wildcard_cnames_and_steered_wildcards() {
        let s = snapshot();
        assert_eq!(
            owned(&s, "x.wc.example.test.", RecordType::A),
            (
                ResponseCode::NoError,
                vec![
                    "x.wc.example.test. www.example.test.".to_string(),
                    "www.example.test. 192.0.2.1".to_string()
                ]
            )
        );
        assert_eq!(
            owned(&s, "x.ws.example.test.", RecordType::A).1,
            [
                "x.ws.example.test. sorry.example.test.",
                "sorry.example.test. 192.0.2.99"
            ]
        );
        let (rcode, records) = owned(&s, "edge-7.lb.example.test.", RecordType::A);
        assert_eq!(rcode, ResponseCode::NoError);
        assert_eq!(records.len(), 1);
        assert!(
            records[0].starts_with("edge-7.lb.example.test. 192.0.2.2"),
            "{records:?}"
        );
    }

    #[test]
    fn optional_additional_records_are_capped() {
        let mut spec = String::from(
            "zones:\n  example.test:\n    soa: {rname: h.example.test.}\n    ns: [{name: ns.example.net.}]\n    records:\n",
        );
        let targets: Vec<String> = (0..30).map(|i| format!("\"10 mx{i}\"")).collect();
        spec += &format!(
            "      - {{name: many, type: MX, values: [{}]}}\n",
            targets.join(", ")
        );
        for i in 0..30 {
            spec += &format!("      - {{name: mx{i}, type: A, value: 192.0.2.{i}}}\n");
        }
        let spec = meridian_config::zone::parse("t.yaml", &spec).expect("valid spec");
        let snap = Snapshot::build(&spec, &Default::default(), 1, 1).expect("builds");
        let mut rng = StdRng::seed_from_u64(1);
        let name = LowerName::from_str("many.example.test.").unwrap();
        let r = resolve(&snap, &name, RecordType::MX, &mut steering(&mut rng));
        assert_eq!(r.answers.len(), 30);
        assert_eq!(r.additional.len(), MAX_ADDITIONAL);
    }

    #[test]
    fn a_cname_into_another_zone_ends_the_answer() {
        let s = snapshot();
        // www.child is answered by the child zone, not the parent: the
        // answer is the CNAME, NOERROR, and the resolver follows it
        let (rcode, aa, answers, authority) = ask(&s, "tochild.example.test.", RecordType::A);
        assert_eq!(
            (rcode, aa, answers, authority),
            (
                ResponseCode::NoError,
                true,
                vec!["www.child.example.test.".to_string()],
                0
            )
        );
    }

    #[test]
    fn cname_loops_stop_with_each_record_once() {
        let s = snapshot();
        let (rcode, _, answers, _) = ask(&s, "loop1.example.test.", RecordType::A);
        assert_eq!(rcode, ResponseCode::NoError);
        assert_eq!(answers, ["loop2.example.test.", "loop1.example.test."]);
        let (_, _, answers, _) = ask(&s, "self.example.test.", RecordType::A);
        assert_eq!(answers, ["self.example.test."]);
        // a long chain without a loop still stops at MAX_CHAIN links
        let (_, _, answers, _) = ask(&s, "c0.example.test.", RecordType::A);
        assert_eq!(answers.len(), MAX_CHAIN);
    }

    #[test]
    fn with_ecs_a_static_cname_to_a_steered_name_is_answered_alone() {
        let s = snapshot();
        let name = LowerName::from_str("tosorry.example.test.").unwrap();
        let answers = |ecs| {
            let mut rng = StdRng::seed_from_u64(1);
            let mut st = steering(&mut rng);
            st.client.ecs = ecs;
            let r = resolve(&s, &name, RecordType::A, &mut st);
            assert_eq!(r.rcode, ResponseCode::NoError);
            r.answer_records()
                .map(|rec| rec.data.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(answers(false), ["sorry.example.test.", "192.0.2.99"]);
        assert_eq!(answers(true), ["sorry.example.test."]);
    }

    #[test]
    fn a_steered_cname_answers_one_cname() {
        let s = snapshot();
        // the steps leave all three hosts; a name holds one CNAME
        for t in [RecordType::CNAME, RecordType::A] {
            let (rcode, _, answers, _) = ask(&s, "cdn.example.test.", t);
            assert_eq!((rcode, answers.len()), (ResponseCode::NoError, 1), "{t}");
        }
    }

    #[test]
    fn any_at_a_cname_answers_the_cname() {
        let s = snapshot();
        let (rcode, _, answers, _) = ask(&s, "loop1.example.test.", RecordType::ANY);
        assert_eq!(
            (rcode, answers),
            (
                ResponseCode::NoError,
                vec!["loop2.example.test.".to_string()]
            )
        );
        // elsewhere, the RFC 8482 HINFO
        let (_, _, answers, _) = ask(&s, "www.example.test.", RecordType::ANY);
        assert_eq!(answers, ["RFC8482 "]);
    }

    #[test]
    fn referrals_are_not_authoritative_and_need_their_glue() {
        let s = snapshot();
        let mut rng = StdRng::seed_from_u64(1);
        let mut st = steering(&mut rng);
        let name = LowerName::from_str("a.b.sub.example.test.").unwrap();
        let r = resolve(&s, &name, RecordType::A, &mut st);
        assert!(!r.authoritative);
        assert!(r.additional_required);
        assert_eq!(r.authority.len(), 1);
        assert_eq!(r.additional.len(), 1);
        // DS at the cut belongs to the parent side
        let cut = LowerName::from_str("sub.example.test.").unwrap();
        let ds = resolve(&s, &cut, RecordType::DS, &mut st);
        assert!(ds.authoritative);
        assert_eq!(ds.rcode, ResponseCode::NoError);
    }

    #[test]
    fn steered_fallbacks() {
        let s = snapshot();
        let (rcode, _, answers, authority) = ask(&s, "down.example.test.", RecordType::A);
        assert_eq!(
            (rcode, answers.len(), authority),
            (ResponseCode::NoError, 0, 1)
        );
        assert_eq!(
            ask(&s, "sorry.example.test.", RecordType::A).2,
            ["192.0.2.99"]
        );
    }

    #[test]
    fn soa_serial_and_negative_ttl() {
        let s = snapshot();
        let origin = LowerName::from_str("example.test.").unwrap();
        let z = s.zones.iter().find(|z| z.origin == origin).unwrap();
        match &z.soa.record.data {
            RData::SOA(soa) => assert_eq!(soa.serial, 7),
            other => panic!("{other:?}"),
        }
        assert_eq!(z.negative_soa.record.ttl, 60);
        assert!(z.soa.wire_len > 0);
    }
}
