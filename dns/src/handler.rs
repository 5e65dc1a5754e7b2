//! Meridian's request handler: checks a decoded request, asks
//! [`answer::resolve`](crate::answer::resolve) for a plan, and encodes it —
//! with the EDNS and size handling hickory's own `Catalog` gets wrong. The
//! UDP and TCP loops of [`crate::server`] both answer through it.
//!
//! - The response carries an OPT record whenever the query did (RFC 6891),
//!   version 0, our UDP size, and the DO bit copied (RFC 3225).
//! - EDNS version > 0 gets BADVERS; opcodes other than QUERY get NOTIMP; a
//!   question count other than one gets FORMERR; classes other than IN and
//!   zone transfers get REFUSED.
//! - Over UDP the answer must fit min(requester's size, our cap), 512 without
//!   EDNS. Optional additional records are dropped first; if it still does
//!   not fit, the reply is an empty TC=1 message that keeps its OPT record
//!   (hickory would drop it while truncating).

use std::cell::RefCell;

use hickory_proto::op::{Edns, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, Record, RecordType};
use hickory_proto::serialize::binary::BinEncoder;
use hickory_proto::ProtoError;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::Request;
use hickory_server::zone_handler::{MessageResponse, MessageResponseBuilder};
use rand::rngs::SmallRng;
use rand::SeedableRng;
use tracing::debug;

use std::net::IpAddr;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption, NSIDPayload};
use meridian_steering::GeoIp;

use crate::answer::{resolve_asked, Client, Reply, Steering};
use crate::cookies::{self, Secrets, Verdict};
use crate::hot::Incoming;
use crate::rrl::{Rrl, Subject};
use crate::snapshot::{Snapshot, SnapshotHandle};
use crate::stats::Seen;

/// Size of a header.
const HEADER_LEN: usize = 12;
/// Size of an OPT record with no options.
const OPT_LEN: usize = 11;

/// Per thread: randomness for weighted steering, and the candidate list
/// steering reuses from query to query.
pub(crate) type Local = (SmallRng, Vec<meridian_steering::Candidate>);

thread_local! {
    static LOCAL: RefCell<Local> = RefCell::new((SmallRng::from_os_rng(), Vec::new()));
}

/// The node's GeoIP databases, swapped whole when a file changes; empty
/// when none is configured.
pub type GeoHandle = Arc<ArcSwapOption<GeoIp>>;

/// Answers queries from the current snapshot. Cheap to clone: every UDP
/// thread and the TCP server hold one.
#[derive(Clone)]
pub struct Handler {
    snapshots: SnapshotHandle,
    geo: GeoHandle,
    max_udp_payload: u16,
    /// What a query with an NSID option learns (RFC 5001); `None`: it
    /// learns nothing.
    nsid: Option<Arc<[u8]>>,
    /// The cluster's cookie secrets (RFC 7873), swapped when they rotate.
    cookies: CookieHandle,
    /// An answer over UDP to a query without a valid server cookie is at
    /// most this many times the query's size (else truncated); `None`:
    /// no bound but the requester's UDP size.
    amplification: Option<usize>,
    /// Response rate limiting over UDP, when on.
    rrl: Option<Arc<Rrl>>,
}

/// What the UDP loop needs to know of an answer written: what the query's
/// cookie proved, and what the answer is about (for rate limiting).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answered {
    pub verdict: Verdict,
    pub subject: Subject,
    /// What the counters need of it.
    pub seen: Seen,
}

impl Answered {
    /// An answer that is about the question alone and names no zone (an
    /// error written before any lookup), for a query whose cookie proved
    /// `verdict`.
    pub fn bare(verdict: Verdict) -> Answered {
        Answered {
            verdict,
            subject: Subject::Question,
            seen: Seen::default(),
        }
    }
}

/// The cookie secrets a handler checks with, shared with whoever rotates
/// them.
pub type CookieHandle = Arc<arc_swap::ArcSwap<Secrets>>;

/// What a response carries for its query's options, and how large it may
/// be over UDP: worked out once per query, for both paths.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Extras<'a> {
    /// The largest UDP payload this server offers.
    pub max_udp: u16,
    /// The NSID answered, when asked and configured.
    pub nsid: Option<&'a [u8]>,
    /// The COOKIE option answered: the client's cookie and ours.
    pub cookie: Option<cookies::Reply>,
    /// The amplification bound: the largest UDP answer allowed (no bound:
    /// `usize::MAX`).
    pub cap: usize,
}

impl Handler {
    /// The largest UDP payload this server offers.
    pub fn max_udp_payload(&self) -> u16 {
        self.max_udp_payload
    }

    /// `max_udp_payload` caps what a requester may ask for over UDP.
    pub fn new(snapshots: SnapshotHandle, geo: GeoHandle, max_udp_payload: u16) -> Handler {
        Handler {
            snapshots,
            geo,
            max_udp_payload: max_udp_payload.max(512),
            nsid: None,
            cookies: CookieHandle::default(),
            amplification: None,
            rrl: None,
        }
    }

    /// The handler checking and giving server cookies with `secrets`.
    pub fn with_cookies(mut self, secrets: CookieHandle) -> Handler {
        self.cookies = secrets;
        self
    }

    /// The handler bounding unauthenticated UDP answers to `factor` times
    /// their query's size.
    pub fn with_amplification(mut self, factor: Option<usize>) -> Handler {
        self.amplification = factor;
        self
    }

    /// The handler limiting UDP answers with `rrl`.
    pub fn with_rrl(mut self, rrl: Option<Arc<Rrl>>) -> Handler {
        self.rrl = rrl;
        self
    }

    /// Response rate limiting, when on.
    pub fn rrl(&self) -> Option<&Rrl> {
        self.rrl.as_deref()
    }

    /// What a response to a query from `source` with this COOKIE option
    /// (`None`: none) and NSID request carries, and how large it may be
    /// (`query_len`: the query's size; `udp`: over UDP). Also what the
    /// cookie proves.
    pub(crate) fn extras(
        &self,
        cookie: Option<&[u8]>,
        nsid: bool,
        source: IpAddr,
        query_len: usize,
        udp: bool,
    ) -> (Extras<'_>, Verdict) {
        let (verdict, cookie) = match cookie {
            None => (Verdict::Absent, None),
            Some(option) => self.cookies.load().check(option, source, cookies::now()),
        };
        let cap = match self.amplification {
            Some(factor) if udp && verdict != Verdict::Valid => query_len.saturating_mul(factor),
            _ => usize::MAX,
        };
        let extras = Extras {
            max_udp: self.max_udp_payload,
            nsid: self.nsid.as_deref().filter(|_| nsid),
            cookie,
            cap,
        };
        (extras, verdict)
    }

    /// The handler answering NSID queries with `nsid` (the node's name).
    pub fn with_nsid(mut self, nsid: &[u8]) -> Handler {
        self.nsid = Some(Arc::from(nsid));
        self
    }
}

/// The response to one request, worked out and ready to encode.
struct Prepared<'s> {
    meta: Metadata,
    edns: Option<Edns>,
    /// `None`: no records (an error, or a truncated UDP answer).
    reply: Option<Reply<'s>>,
    with_additional: bool,
    /// What the query's cookie proved, and what the answer is about.
    answered: Answered,
}

impl Handler {
    /// Works out the response to `request` from `snapshot` and `geo`:
    /// request checks, the client (ECS or source), the lookup, ECS in the
    /// answer, and what fits in UDP. Shared by the UDP loop and hickory's
    /// TCP path.
    fn prepare<'s>(
        &self,
        request: &Request,
        query_len: usize,
        snapshot: &'s Snapshot,
        geo: Option<&GeoIp>,
        local: &mut Local,
    ) -> Prepared<'s> {
        let src = request.src().ip();
        let udp = request.protocol() == Protocol::Udp;
        let cookie = request
            .edns
            .as_ref()
            .and_then(|e| match e.option(EdnsCode::Cookie) {
                Some(EdnsOption::Unknown(_, data)) => Some(&data[..]),
                _ => None,
            });
        let bad_cookie = cookie.is_some_and(|c| !crate::wire::cookie_len_ok(c.len()));
        let asked_nsid = request
            .edns
            .as_ref()
            .is_some_and(|e| e.option(EdnsCode::NSID).is_some());
        let (extras, verdict) = self.extras(
            cookie.filter(|_| !bad_cookie),
            asked_nsid,
            src,
            query_len,
            udp,
        );
        let mut edns = request.edns.as_ref().map(|req| {
            let mut e = Edns::new();
            e.set_max_payload(self.max_udp_payload)
                .set_version(0)
                .set_dnssec_ok(req.flags().dnssec_ok);
            if let Some(reply) = extras.cookie {
                e.options_mut().insert(EdnsOption::Unknown(
                    u16::from(EdnsCode::Cookie),
                    reply.to_vec(),
                ));
            }
            e
        });
        let cookie_len = extras.cookie.map_or(0, |c| 4 + c.len());
        let mut meta = Metadata::response_from_request(&request.metadata);

        let subnet = client_subnet(request);
        let early = if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
            Some(ResponseCode::BADVERS)
        } else if request.metadata.op_code != OpCode::Query {
            Some(ResponseCode::NotImp)
        } else if request.queries.is_empty() && cookie.is_some() && !bad_cookie {
            // a query for a server cookie alone (RFC 7873 §5.4)
            Some(ResponseCode::NoError)
        } else if request.queries.len() != 1 || subnet.is_err() || bad_cookie {
            Some(ResponseCode::FormErr)
        } else {
            let q = &request.queries.queries()[0];
            let transfer = matches!(q.query_type(), RecordType::AXFR | RecordType::IXFR);
            (q.query_class() != DNSClass::IN || transfer).then_some(ResponseCode::Refused)
        };
        if let Some(code) = early {
            meta.response_code = code;
            return Prepared {
                meta,
                edns,
                reply: None,
                with_additional: false,
                answered: Answered::bare(verdict),
            };
        }
        let subnet = subnet.ok().flatten();

        // the client is the ECS subnet when there is one (RFC 7871 §7.2.1);
        // a source prefix of 0 asks for no tailoring by it
        let client = match &subnet {
            Some(cs) if cs.source_prefix() > 0 => (cs.addr(), cs.source_prefix()),
            _ => (src, if src.is_ipv4() { 32 } else { 128 }),
        };
        let query = &request.queries.queries()[0];
        let (rng, scratch) = local;
        let mut steering = Steering {
            client: Client {
                addr: Some(client.0),
                prefix: client.1,
                geo,
                ecs: subnet.as_ref().is_some_and(|cs| cs.source_prefix() > 0),
            },
            rng,
            scratch: std::mem::take(scratch),
        };
        let reply = resolve_asked(
            snapshot,
            query.name(),
            query.original().name(),
            query.query_type(),
            &mut steering,
        );
        *scratch = steering.scratch;
        // ECS in the answer: the query's family, source prefix and address,
        // and the scope the decision needed (0: valid for every client)
        let mut ecs_len = 0;
        if let (Some(e), Some(cs)) = (edns.as_mut(), &subnet) {
            let scope = if cs.source_prefix() == 0 {
                0
            } else {
                reply.scope
            };
            let answer = ClientSubnet::new(cs.addr(), cs.source_prefix(), scope);
            ecs_len = 4 + usize::from(answer.len());
            e.options_mut().insert(EdnsOption::Subnet(answer));
        }
        // NSID when asked and this node has one (RFC 5001)
        let mut nsid_len = 0;
        if let (Some(e), Some(nsid)) = (edns.as_mut(), extras.nsid) {
            if let Ok(payload) = NSIDPayload::new(nsid.to_vec()) {
                nsid_len = 4 + nsid.len();
                e.options_mut().insert(EdnsOption::NSID(payload));
            }
        }
        meta.response_code = reply.rcode;
        meta.authoritative = reply.authoritative;

        let limit = match (request.protocol(), &request.edns) {
            (Protocol::Udp, Some(e)) => {
                usize::from(e.max_payload().clamp(512, self.max_udp_payload))
            }
            (Protocol::Udp, None) => 512,
            _ => usize::from(u16::MAX),
        }
        .min(extras.cap);
        let fixed = HEADER_LEN
            + request.queries.as_bytes().len()
            + edns
                .as_ref()
                .map_or(0, |_| OPT_LEN + ecs_len + nsid_len + cookie_len);
        // the uncompressed bound settles almost every answer without a
        // trial encoding
        let fit = if fixed + reply.records_len(true) <= limit
            || fits(&reply, true, limit, request, edns.as_ref(), meta)
        {
            Fit::Whole
        } else if !reply.additional_required
            && !reply.additional.is_empty()
            && fits(&reply, false, limit, request, edns.as_ref(), meta)
        {
            Fit::WithoutAdditional
        } else {
            Fit::Truncated
        };
        debug!(?fit, rcode = %reply.rcode, "answer");
        let answered = Answered {
            verdict,
            subject: reply.subject,
            seen: Seen {
                zone: reply.seen_zone,
                steered: reply.seen_steered,
                ecs: subnet.is_some(),
            },
        };
        if let Fit::Truncated = fit {
            meta.truncation = true;
            return Prepared {
                meta,
                edns,
                reply: None,
                with_additional: false,
                answered,
            };
        }
        Prepared {
            meta,
            edns,
            reply: Some(reply),
            with_additional: matches!(fit, Fit::Whole),
            answered,
        }
    }

    /// Answers one request (UDP or TCP, as the request says) of
    /// `query_len` bytes: the response's wire form goes into `out`
    /// (cleared first). Returns what the query's cookie proved.
    pub fn respond(
        &self,
        request: &Request,
        query_len: usize,
        out: &mut Vec<u8>,
    ) -> Result<Answered, ProtoError> {
        LOCAL.with(|local| self.respond_with(request, query_len, out, &mut local.borrow_mut()))
    }

    /// [`Handler::respond`] with this randomness and scratch space.
    pub(crate) fn respond_with(
        &self,
        request: &Request,
        query_len: usize,
        out: &mut Vec<u8>,
        local: &mut Local,
    ) -> Result<Answered, ProtoError> {
        out.clear();
        let snapshot = self.snapshots.load();
        let geo = self.geo.load();
        let p = self.prepare(request, query_len, &snapshot, geo.as_deref(), local);
        let b = builder(request, p.edns.as_ref());
        let mut enc = BinEncoder::new(out);
        match &p.reply {
            Some(reply) => {
                message(b, p.meta, reply, p.with_additional).destructive_emit(&mut enc)?
            }
            None => b.build_no_records(p.meta).destructive_emit(&mut enc)?,
        };
        Ok(p.answered)
    }
}

impl Handler {
    /// Answers a query of the hot shape by [`crate::hot`] into `out`, and
    /// says what its cookie proved; `None` when it is not one that path
    /// answers (`out` is then the caller's to fill by
    /// [`Handler::respond`]).
    pub fn answer_hot(&self, incoming: &Incoming<'_>, out: &mut Vec<u8>) -> Option<Answered> {
        LOCAL.with(|local| self.answer_hot_with(incoming, out, &mut local.borrow_mut()))
    }

    /// [`Handler::answer_hot`] with this randomness and scratch space.
    pub(crate) fn answer_hot_with(
        &self,
        incoming: &Incoming<'_>,
        out: &mut Vec<u8>,
        local: &mut Local,
    ) -> Option<Answered> {
        let edns = incoming.query.edns.as_ref();
        let (extras, verdict) = self.extras(
            edns.and_then(|e| e.cookie),
            edns.is_some_and(|e| e.nsid),
            incoming.source,
            incoming.packet.len(),
            incoming.udp,
        );
        let snapshot = self.snapshots.current();
        let geo = self.geo.load();
        crate::hot::answer(&snapshot, geo.as_deref(), incoming, &extras, local, out).map(
            |(subject, seen)| Answered {
                verdict,
                subject,
                seen,
            },
        )
    }
}

#[derive(Debug, Clone, Copy)]
enum Fit {
    Whole,
    WithoutAdditional,
    Truncated,
}

/// Encodes the reply with name compression into a scratch buffer limited to
/// `limit` bytes and says whether it fitted whole.
fn fits(
    reply: &Reply<'_>,
    with_additional: bool,
    limit: usize,
    request: &Request,
    edns: Option<&Edns>,
    meta: Metadata,
) -> bool {
    let msg = message(builder(request, edns), meta, reply, with_additional);
    let mut buf = Vec::with_capacity(limit);
    let mut enc = BinEncoder::new(&mut buf);
    enc.set_max_size(u16::try_from(limit).unwrap_or(u16::MAX));
    matches!(msg.destructive_emit(&mut enc), Ok(h) if !h.truncation)
}

/// A response builder for `request`, with `edns` when the query had EDNS.
fn builder<'q>(request: &'q Request, edns: Option<&'q Edns>) -> MessageResponseBuilder<'q> {
    let mut b = MessageResponseBuilder::from_message_request(request);
    if let Some(e) = edns {
        b.edns(e);
    }
    b
}

/// The query's ECS option. Err when it is malformed: address bits set
/// beyond the source prefix (RFC 7871 §6). hickory itself rejects unknown
/// families, over-long prefixes and short addresses while decoding.
fn client_subnet(request: &Request) -> Result<Option<ClientSubnet>, ()> {
    let Some(edns) = &request.edns else {
        return Ok(None);
    };
    match edns.option(EdnsCode::Subnet) {
        Some(EdnsOption::Subnet(cs)) => {
            let clean = match cs.addr() {
                IpAddr::V4(a) => {
                    let bits = u32::from(cs.source_prefix().min(32));
                    u32::from(a) & u32::MAX.checked_shr(bits).unwrap_or(0) == 0
                }
                IpAddr::V6(a) => {
                    let bits = u32::from(cs.source_prefix().min(128));
                    u128::from(a) & u128::MAX.checked_shr(bits).unwrap_or(0) == 0
                }
            };
            if clean {
                Ok(Some(*cs))
            } else {
                Err(())
            }
        }
        _ => Ok(None),
    }
}

/// The reply as a message, with or without its additional records.
fn message<'q, 'a>(
    builder: MessageResponseBuilder<'q>,
    meta: Metadata,
    reply: &'a Reply<'_>,
    with_additional: bool,
) -> MessageResponse<
    'q,
    'a,
    impl Iterator<Item = &'a Record> + Send + 'a,
    impl Iterator<Item = &'a Record> + Send + 'a,
    impl Iterator<Item = &'a Record> + Send + 'a,
    impl Iterator<Item = &'a Record> + Send + 'a,
> {
    let additional = if with_additional {
        &reply.additional[..]
    } else {
        &[]
    };
    builder.build(
        meta,
        reply.answer_records(),
        reply.authority.iter().map(|r| &r.record),
        std::iter::empty(),
        additional.iter().map(|r| &r.record),
    )
}
