//! The immutable, pre-indexed view of all zones that queries are answered
//! from, and the handle it is published through.
//!
//! A [`Snapshot`] is built once per state version from a validated
//! [`ZoneSpec`]: every record is turned into wire-ready hickory `Record`s,
//! names are indexed (empty non-terminals included, so NXDOMAIN and NODATA
//! are one lookup), additional-section data is resolved, and each steered
//! record gets its compiled [`Policy`] and one prebuilt answer record per
//! endpoint. Per query, only lookups and the steering steps run.
//!
//! [`SnapshotHandle`] is the seam between whoever owns the state (the zone
//! file loader today, the Raft state machine later) and the readers: writers
//! `publish`, readers `load` without taking a lock.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, NS, NULL, SOA, SRV, TXT};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};
use meridian_config::zone::{
    Endpoint, EndpointAddress, RecordData, RecordType as ConfigType, SteeredRecord, Zone,
};
use meridian_config::{DomainName, ZoneSpec};
use meridian_steering::{Observations, Policy, PoolTable};

use crate::handler::GeoHandle;
use crate::hot::{HotIndex, SoaWire};
use crate::trees::Trees;
use rustc_hash::FxHashMap;

/// Why a snapshot could not be built. Validated specs build; this guards
/// against names hickory rejects that our validation let through.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    #[error("invalid name {name:?}: {reason}")]
    Name { name: String, reason: String },
    #[error("pool {0:?} is missing")]
    MissingPool(String),
}

/// A record with its uncompressed wire size, for cheap "does it fit"
/// checks, and its wire form after the owner name for the hot path.
#[derive(Debug)]
pub struct SizedRecord {
    pub record: Record,
    pub wire_len: usize,
    /// TYPE, CLASS, TTL, RDLENGTH and RDATA as sent, for records whose
    /// RDATA holds no name (A, AAAA, TXT, CAA, HINFO): what
    /// [`crate::hot`] writes after a pointer to the question's name.
    /// `None` for the others, which the hickory path encodes.
    pub tail: Option<Box<[u8]>>,
}

impl SizedRecord {
    /// Measures `record`.
    pub fn new(record: Record) -> SizedRecord {
        let mut buf = Vec::with_capacity(64);
        let mut enc = BinEncoder::new(&mut buf);
        // a record that fails to encode is caught when answering; size it 0
        let wire_len = record.emit(&mut enc).map_or(0, |_| buf.len());
        let name_free = matches!(
            record.record_type(),
            RecordType::A
                | RecordType::AAAA
                | RecordType::TXT
                | RecordType::CAA
                | RecordType::HINFO
        );
        // the owner is written uncompressed first: its length is the name's
        let owner_len = record.name.iter().map(|l| 1 + l.len()).sum::<usize>() + 1;
        let tail =
            (name_free && wire_len > owner_len).then(|| Box::from(&buf[owner_len..wire_len]));
        SizedRecord {
            record,
            wire_len,
            tail,
        }
    }
}

/// All records of one name and type, plus what goes in the additional
/// section with them.
#[derive(Debug)]
pub struct RecordSet {
    pub rtype: RecordType,
    pub records: Vec<SizedRecord>,
    /// Addresses of in-zone targets (NS glue, MX and SRV targets).
    pub additional: Vec<SizedRecord>,
    /// Every record has a wire tail and nothing goes in the additional
    /// section: [`crate::hot`] answers the set (worked out once, when the
    /// zone is built).
    pub wire_ready: bool,
}

/// A steered record ready to answer.
#[derive(Debug)]
pub struct Steered {
    pub rtype: RecordType,
    pub policy: Policy,
    /// The pool's endpoints, in pool order.
    pub endpoints: Arc<[Endpoint]>,
    /// One answer record per endpoint, same order. Shared by the pool's
    /// records of the same type and TTL, so owned by the root name: the
    /// hot path writes the question's name, the hickory path sets it.
    pub answers: Arc<[SizedRecord]>,
    /// Answer records for the sorry set (shared the same way).
    pub sorry: Arc<[SizedRecord]>,
    /// The HTTP fallback's addresses of this record's family, as answer
    /// records with a short TTL (shared the same way).
    pub fallback: Arc<[SizedRecord]>,
    /// `mode: http_fallback`: always answer `fallback`.
    pub always_fallback: bool,
    /// `on_all_down: http_fallback`: answer `fallback` when the pipeline
    /// leaves nothing.
    pub fallback_when_down: bool,
    /// Every answer, sorry and fallback record has a wire tail: the hot
    /// path can write whatever the pipeline picks.
    pub wire_ready: bool,
    /// The key of this record's counters ([`crate::stats::steered_key`]).
    pub stats_key: u64,
    /// Each endpoint's key among them ([`crate::stats::endpoint_key`]),
    /// in pool order.
    pub endpoint_keys: Arc<[u64]>,
    /// How the HTTP fallback answers this name: redirect or proxy.
    pub http: meridian_config::zone::HttpMode,
    /// The `Host` a proxied request carries.
    pub proxy_host: meridian_config::zone::ProxyHost,
}

/// Everything at one owner name. Empty non-terminals have an empty node.
#[derive(Debug, Default)]
pub struct Node {
    pub sets: Vec<RecordSet>,
    pub steered: Vec<Steered>,
    /// NS records here below the apex: a delegation point.
    pub is_cut: bool,
}

impl Node {
    pub fn set(&self, t: RecordType) -> Option<&RecordSet> {
        self.sets.iter().find(|s| s.rtype == t)
    }

    pub fn steered(&self, t: RecordType) -> Option<&Steered> {
        self.steered.iter().find(|s| s.rtype == t)
    }

    /// Whether the name has a CNAME (static or steered).
    pub fn has_cname(&self) -> bool {
        self.set(RecordType::CNAME).is_some() || self.steered(RecordType::CNAME).is_some()
    }
}

/// One zone, indexed.
#[derive(Debug)]
pub struct ZoneData {
    pub origin: LowerName,
    /// The SOA as answered at the apex.
    pub soa: SizedRecord,
    /// The SOA for negative answers: TTL = min(SOA TTL, minimum) (RFC 2308).
    pub negative_soa: SizedRecord,
    /// Nodes by name. FxHash: names come from validated configuration, not
    /// from clients, so a fast non-keyed hash is safe here. Shared with the
    /// snapshot's [`HotIndex`].
    pub nodes: FxHashMap<LowerName, Arc<Node>>,
    pub has_cuts: bool,
    pub default_ttl: u32,
    /// `negative_soa` as the hot path writes it.
    pub negative_wire: SoaWire,
    /// The key of this zone's counter ([`crate::stats::zone_key`]).
    pub stats_key: u64,
}

/// Where a name of a zone is answered from (RFC 4592 §3.3.1).
#[derive(Debug, Clone, Copy)]
pub enum Found<'z> {
    /// The name exists (with data, or as an empty non-terminal).
    Name(&'z Node),
    /// The name does not exist and the wildcard at its closest encloser
    /// answers it: the records' owner becomes the name asked.
    Wildcard(&'z Node),
    /// The name does not exist and there is no wildcard to synthesize
    /// from: NXDOMAIN.
    Missing,
}

impl ZoneData {
    /// Looks `name` (inside this zone) up, synthesizing from a wildcard
    /// where RFC 4592 says to: the source of synthesis is `*` below the
    /// closest encloser, the longest ancestor that exists. A name below
    /// an existing name or empty non-terminal that has no `*` child is
    /// never synthesized.
    pub fn lookup(&self, name: &LowerName) -> Found<'_> {
        if let Some(node) = self.nodes.get(name) {
            return Found::Name(node);
        }
        let mut encloser = name.base_name();
        while encloser.num_labels() >= self.origin.num_labels() {
            if self.nodes.contains_key(&encloser) {
                let source = Name::from(encloser)
                    .prepend_label("*")
                    .ok()
                    .and_then(|w| self.nodes.get(&LowerName::from(w)));
                return source.map_or(Found::Missing, |n| Found::Wildcard(n));
            }
            if encloser.is_root() {
                break;
            }
            encloser = encloser.base_name();
        }
        Found::Missing
    }
}

/// The state every query is answered from.
#[derive(Debug)]
pub struct Snapshot {
    /// State version this snapshot was built from.
    pub version: u64,
    /// SOA serial of every zone in this snapshot.
    pub serial: u32,
    pub zones: Vec<ZoneData>,
    /// Every name by its lower-case wire form, for [`crate::hot`] and the
    /// HTTP fallback's lookup of a `Host` ([`HotIndex::host`]).
    pub hot: HotIndex,
}

impl Snapshot {
    /// An empty snapshot: every query is REFUSED.
    pub fn empty() -> Snapshot {
        Snapshot {
            version: 0,
            serial: 0,
            zones: Vec::new(),
            hot: HotIndex::default(),
        }
    }

    /// Builds the snapshot for `spec` at state `version`, with SOA `serial`,
    /// steering with what probes `observed`.
    pub fn build(
        spec: &ZoneSpec,
        observed: &Observations,
        version: u64,
        serial: u32,
    ) -> Result<Snapshot, BuildError> {
        Snapshot::build_with(spec, observed, version, serial, &[])
    }

    /// As [`Snapshot::build`], with the addresses records that hand over
    /// to the HTTP fallback answer with.
    pub fn build_with(
        spec: &ZoneSpec,
        observed: &Observations,
        version: u64,
        serial: u32,
        fallback: &[IpAddr],
    ) -> Result<Snapshot, BuildError> {
        let pools: HashMap<&str, Pool> = spec
            .pools
            .iter()
            .map(|(name, p)| {
                let seen = observed.get(name).map_or(&[][..], Vec::as_slice);
                let endpoints: Arc<[Endpoint]> = Arc::from(p.endpoints.clone());
                let table = PoolTable::new(&endpoints, seen, &spec.regions);
                let keys = endpoints
                    .iter()
                    .map(|e| crate::stats::endpoint_key(name, &e.id))
                    .collect();
                (name.as_str(), (endpoints, table, keys))
            })
            .collect();
        let mut shared = Shared::default();
        let zones = spec
            .zones
            .iter()
            .map(|z| build_zone(z, serial, &pools, fallback, &mut shared))
            .collect::<Result<_, _>>()?;
        let mut snapshot = Snapshot {
            version,
            serial,
            zones,
            hot: HotIndex::default(),
        };
        snapshot.hot = HotIndex::build(&snapshot);
        Ok(snapshot)
    }

    /// The zone with the longest origin that contains `name`.
    pub fn find_zone(&self, name: &LowerName) -> Option<&ZoneData> {
        self.zones
            .iter()
            .filter(|z| z.origin.zone_of(name))
            .max_by_key(|z| z.origin.num_labels())
    }
}

fn name(d: &DomainName) -> Result<Name, BuildError> {
    Name::from_ascii(d.as_str()).map_err(|e| BuildError::Name {
        name: d.to_string(),
        reason: e.to_string(),
    })
}

fn rdata(d: &RecordData) -> Result<RData, BuildError> {
    Ok(match d {
        RecordData::A(ip) => RData::A(A(*ip)),
        RecordData::Aaaa(ip) => RData::AAAA(AAAA(*ip)),
        RecordData::Cname(n) => RData::CNAME(CNAME(name(n)?)),
        RecordData::Ns(n) => RData::NS(NS(name(n)?)),
        RecordData::Mx {
            preference,
            exchange,
        } => RData::MX(MX::new(*preference, name(exchange)?)),
        RecordData::Srv {
            priority,
            weight,
            port,
            target,
        } => RData::SRV(SRV::new(*priority, *weight, *port, name(target)?)),
        RecordData::Txt(parts) => RData::TXT(TXT::new(parts.clone())),
        RecordData::Caa {
            critical,
            tag,
            value,
        } => {
            // RFC 8659 §4.1: flags, tag length, tag, value — kept verbatim
            let mut wire = Vec::with_capacity(2 + tag.len() + value.len());
            wire.push(if *critical { 0x80 } else { 0 });
            wire.push(tag.len() as u8);
            wire.extend_from_slice(tag.as_bytes());
            wire.extend_from_slice(value.as_bytes());
            RData::Unknown {
                code: RecordType::CAA,
                rdata: NULL::with(wire),
            }
        }
    })
}

fn record_type(t: ConfigType) -> RecordType {
    match t {
        ConfigType::A => RecordType::A,
        ConfigType::Aaaa => RecordType::AAAA,
        ConfigType::Cname => RecordType::CNAME,
        ConfigType::Mx => RecordType::MX,
        ConfigType::Txt => RecordType::TXT,
        ConfigType::Caa => RecordType::CAA,
        ConfigType::Srv => RecordType::SRV,
        ConfigType::Ns => RecordType::NS,
    }
}

fn endpoint_rdata(a: &EndpointAddress) -> Result<RData, BuildError> {
    Ok(match a {
        EndpointAddress::Ip(IpAddr::V4(ip)) => RData::A(A(*ip)),
        EndpointAddress::Ip(IpAddr::V6(ip)) => RData::AAAA(AAAA(*ip)),
        EndpointAddress::Host(h) => RData::CNAME(CNAME(name(h)?)),
    })
}

/// A pool's endpoints and tables, shared by its steered records.
/// A pool as steered records use it: its endpoints, its table, and each
/// endpoint's counter key.
type Pool = (Arc<[Endpoint]>, PoolTable, Arc<[u64]>);

/// Answer records shared across steered records: by pool, type and TTL;
/// by sorry set and TTL; by fallback family and TTL.
#[derive(Default)]
struct Shared {
    sets: HashMap<String, Arc<[SizedRecord]>>,
}

impl Shared {
    /// The records under `key`, made by `make` the first time.
    fn get(
        &mut self,
        key: String,
        make: impl FnOnce() -> Result<Vec<SizedRecord>, BuildError>,
    ) -> Result<Arc<[SizedRecord]>, BuildError> {
        if let Some(set) = self.sets.get(&key) {
            return Ok(Arc::clone(set));
        }
        let set: Arc<[SizedRecord]> = make()?.into();
        self.sets.insert(key, Arc::clone(&set));
        Ok(set)
    }
}

fn build_zone(
    z: &Zone,
    serial: u32,
    pools: &HashMap<&str, Pool>,
    fallback: &[IpAddr],
    shared: &mut Shared,
) -> Result<ZoneData, BuildError> {
    let origin = name(&z.name)?;
    let soa_rdata = SOA::new(
        name(&z.soa.mname)?,
        name(&z.soa.rname)?,
        serial,
        clamp_i32(z.soa.refresh),
        clamp_i32(z.soa.retry),
        clamp_i32(z.soa.expire),
        z.soa.minimum,
    );
    let soa = Record::from_rdata(origin.clone(), z.soa.ttl, RData::SOA(soa_rdata.clone()));
    let negative_wire = SoaWire::new(&origin, z.soa.ttl.min(z.soa.minimum), &soa_rdata);
    let negative_soa = Record::from_rdata(
        origin.clone(),
        z.soa.ttl.min(z.soa.minimum),
        RData::SOA(soa_rdata),
    );

    let mut nodes: FxHashMap<LowerName, Node> = FxHashMap::default();
    let mut add = |owner: &Name, t: RecordType, rec: Record| {
        let node = nodes.entry(LowerName::from(owner)).or_default();
        match node.sets.iter_mut().find(|s| s.rtype == t) {
            Some(set) => {
                if !set.records.iter().any(|r| r.record.data == rec.data) {
                    set.records.push(SizedRecord::new(rec));
                }
            }
            None => node.sets.push(RecordSet {
                rtype: t,
                records: vec![SizedRecord::new(rec)],
                additional: Vec::new(),
                wire_ready: false,
            }),
        }
    };

    add(&origin, RecordType::SOA, soa.clone());
    for ns in &z.ns {
        let target = name(&ns.name)?;
        add(
            &origin,
            RecordType::NS,
            Record::from_rdata(origin.clone(), z.default_ttl, RData::NS(NS(target.clone()))),
        );
        for ip in &ns.addresses {
            let rd = endpoint_rdata(&EndpointAddress::Ip(*ip))?;
            let t = rd.record_type();
            add(
                &target,
                t,
                Record::from_rdata(target.clone(), z.default_ttl, rd),
            );
        }
    }
    for set in &z.records {
        let owner = name(&set.name)?;
        for d in &set.data {
            add(
                &owner,
                record_type(set.rtype),
                Record::from_rdata(owner.clone(), set.ttl, rdata(d)?),
            );
        }
    }
    for s in &z.steered {
        let owner = name(&s.name)?;
        let steered = build_steered(s, pools, fallback, shared)?;
        nodes
            .entry(LowerName::from(&owner))
            .or_default()
            .steered
            .push(steered);
    }

    // Delegation points, and empty non-terminals between names and the apex.
    let origin_lower = LowerName::from(&origin);
    let names: Vec<LowerName> = nodes.keys().cloned().collect();
    let mut has_cuts = false;
    for n in &names {
        if *n != origin_lower {
            let node = nodes.get_mut(n).expect("listed");
            if node.set(RecordType::NS).is_some() {
                node.is_cut = true;
                has_cuts = true;
            }
        }
        let mut up = n.base_name();
        while origin_lower.zone_of(&up) && up != origin_lower {
            nodes.entry(up.clone()).or_default();
            up = up.base_name();
        }
    }

    // Additional-section data: addresses of in-zone targets.
    let mut extra: Vec<(LowerName, RecordType, Vec<SizedRecord>)> = Vec::new();
    for (owner, node) in &nodes {
        for set in &node.sets {
            let targets: Vec<&Name> = set
                .records
                .iter()
                .filter_map(|r| match &r.record.data {
                    RData::NS(ns) => Some(&ns.0),
                    RData::MX(mx) => Some(&mx.exchange),
                    RData::SRV(srv) => Some(&srv.target),
                    _ => None,
                })
                .collect();
            let mut add_recs = Vec::new();
            for t in targets {
                if let Some(tn) = nodes.get(&LowerName::from(t)) {
                    for at in [RecordType::A, RecordType::AAAA] {
                        if let Some(s) = tn.set(at) {
                            add_recs.extend(
                                s.records.iter().map(|r| SizedRecord::new(r.record.clone())),
                            );
                        }
                    }
                }
            }
            if !add_recs.is_empty() {
                extra.push((owner.clone(), set.rtype, add_recs));
            }
        }
    }
    for (owner, t, recs) in extra {
        if let Some(set) = nodes
            .get_mut(&owner)
            .and_then(|n| n.sets.iter_mut().find(|s| s.rtype == t))
        {
            set.additional = recs;
        }
    }

    Ok(ZoneData {
        origin: origin_lower,
        soa: SizedRecord::new(soa),
        negative_soa: SizedRecord::new(negative_soa),
        nodes: nodes
            .into_iter()
            .map(|(k, mut v)| {
                for set in &mut v.sets {
                    set.wire_ready =
                        set.additional.is_empty() && set.records.iter().all(|r| r.tail.is_some());
                }
                (k, Arc::new(v))
            })
            .collect(),
        has_cuts,
        default_ttl: z.default_ttl,
        negative_wire,
        stats_key: crate::stats::zone_key(z.name.as_str()),
    })
}

/// The longest TTL of an answer that hands a client to the HTTP fallback.
pub const FALLBACK_TTL: u32 = 30;

fn build_steered(
    s: &SteeredRecord,
    pools: &HashMap<&str, Pool>,
    fallback: &[IpAddr],
    shared: &mut Shared,
) -> Result<Steered, BuildError> {
    let (endpoints, table, endpoint_keys) = pools
        .get(s.pool.as_str())
        .ok_or_else(|| BuildError::MissingPool(s.pool.clone()))?;
    // records shared by name: owned by the root, see `Steered::answers`
    let record = |ttl: u32, a: &EndpointAddress| {
        Ok(SizedRecord::new(Record::from_rdata(
            Name::root(),
            ttl,
            endpoint_rdata(a)?,
        )))
    };
    let answers = shared.get(format!("pool {} {:?} {}", s.pool, s.rtype, s.ttl), || {
        endpoints
            .iter()
            .map(|e| record(s.ttl, &e.address))
            .collect()
    })?;
    let policy = Policy::compile_for(&s.steps, &s.on_all_down, endpoints, table);
    let sorry = shared.get(format!("sorry {:?} {}", policy.sorry(), s.ttl), || {
        policy.sorry().iter().map(|a| record(s.ttl, a)).collect()
    })?;
    // the fallback's addresses of this record's family, with a TTL short
    // enough that clients come back to DNS soon after endpoints do
    let want_v4 = s.rtype == meridian_config::zone::SteeredType::A;
    let cname = s.rtype == meridian_config::zone::SteeredType::Cname;
    let ttl = s.ttl.min(FALLBACK_TTL);
    let fallback = shared.get(format!("fallback {want_v4} {cname} {ttl}"), || {
        fallback
            .iter()
            .filter(|ip| ip.is_ipv4() == want_v4 && !cname)
            .map(|ip| record(ttl, &EndpointAddress::Ip(*ip)))
            .collect()
    })?;
    let wire_ready = [&answers, &sorry, &fallback]
        .iter()
        .all(|set| set.iter().all(|r| r.tail.is_some()));
    Ok(Steered {
        wire_ready,
        rtype: record_type(s.rtype.as_record_type()),
        policy,
        endpoints: Arc::clone(endpoints),
        answers,
        sorry,
        fallback,
        always_fallback: s.mode == meridian_config::zone::SteeredMode::HttpFallback,
        fallback_when_down: s.on_all_down == meridian_config::zone::OnAllDown::HttpFallback,
        stats_key: crate::stats::steered_key(s.name.as_str(), s.rtype.as_record_type().as_str()),
        endpoint_keys: Arc::clone(endpoint_keys),
        http: s.http,
        proxy_host: s.proxy_host,
    })
}

/// SOA timers are 32-bit on the wire; hickory keeps them as i32.
fn clamp_i32(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

/// Publishes snapshots to readers: one writer swaps, any number of readers
/// load the current one without locking.
#[derive(Clone)]
pub struct SnapshotHandle {
    current: Arc<ArcSwap<Snapshot>>,
    /// Client trees for classified policies, when the handle knows the
    /// GeoIP databases ([`SnapshotHandle::with_geo`]).
    trees: Option<Arc<Trees>>,
}

impl SnapshotHandle {
    /// A handle without client trees: classified policies look each client
    /// up in GeoIP.
    pub fn new(initial: Snapshot) -> SnapshotHandle {
        SnapshotHandle {
            current: Arc::new(ArcSwap::from_pointee(initial)),
            trees: None,
        }
    }

    /// A handle that gives every published snapshot's classified policies
    /// their client trees, built from `geo`'s databases (see
    /// [`crate::trees`]); call [`SnapshotHandle::geo_changed`] after
    /// replacing them.
    pub fn with_geo(initial: Snapshot, geo: GeoHandle) -> SnapshotHandle {
        let handle = SnapshotHandle {
            current: Arc::new(ArcSwap::from_pointee(Snapshot::empty())),
            trees: Some(Arc::new(Trees::new(geo))),
        };
        handle.publish(initial);
        handle
    }

    /// Replaces the current snapshot, its client trees built first;
    /// queries already running finish on the one they loaded.
    pub fn publish(&self, snapshot: Snapshot) {
        match &self.trees {
            Some(t) => {
                let snapshot = Arc::new(snapshot);
                t.attach_then(&snapshot, || self.current.store(Arc::clone(&snapshot)));
            }
            None => self.current.store(Arc::new(snapshot)),
        }
    }

    /// Rebuilds the current snapshot's client trees from the GeoIP
    /// databases now in the handle given to [`SnapshotHandle::with_geo`].
    pub fn geo_changed(&self) {
        if let Some(t) = &self.trees {
            let current = self.current.load_full();
            t.attach_then(&current, || ());
        }
    }

    /// The current snapshot.
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// The current snapshot, for a moment: cheaper than [`Self::load`]
    /// (no reference count touched), for the query path.
    pub fn current(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.current.load()
    }
}
