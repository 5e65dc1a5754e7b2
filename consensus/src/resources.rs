//! The REST API's resources inside the replicated state: where each one is
//! ([`Target`]), its entity tag, and the [`Change`]s that put or delete
//! one, applied by the state machine with the caller's precondition and
//! recorded in the audit log.
//!
//! A change applies to a copy of the spec; the copy must pass every typed
//! rule (`meridian_config::zone::rules`) or the change is refused and the
//! state stays exactly as it was. The node that takes a request checks
//! the same before it proposes, for a good error; the state machine
//! checks again because two changes that are each valid alone may not be
//! together.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use meridian_config::zone::export;
use meridian_config::zone::{
    AdminState, Check, Endpoint, Pool, ProbeRegion, RecordSet, RecordType, SteeredRecord,
    SteeredType, Zone,
};
use meridian_config::{DomainName, ZoneSpec};
use serde::{Deserialize, Serialize};

use crate::auth::Scope;

/// The audit entries kept: older ones are dropped.
pub const AUDIT_KEEP: usize = 1000;

/// API-managed tokens kept, at most.
pub const MAX_TOKENS: usize = 10_000;

/// Where a resource lives in the state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Target {
    /// The whole spec (`/v1/apply`).
    Spec,
    Zone {
        zone: DomainName,
    },
    RecordSet {
        zone: DomainName,
        name: DomainName,
        rtype: RecordType,
    },
    Steered {
        zone: DomainName,
        name: DomainName,
        rtype: SteeredType,
    },
    Pool {
        pool: String,
    },
    Endpoint {
        pool: String,
        id: String,
    },
    /// A pool's health check.
    Check {
        pool: String,
    },
    Region {
        region: String,
    },
    Token {
        id: String,
    },
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Spec => f.write_str("spec"),
            Target::Zone { zone } => write!(f, "zone {zone}"),
            Target::RecordSet { zone, name, rtype } => {
                write!(f, "record set {name} {} in {zone}", rtype.as_str())
            }
            Target::Steered { zone, name, rtype } => write!(
                f,
                "steered record {name} {} in {zone}",
                rtype.as_record_type().as_str()
            ),
            Target::Pool { pool } => write!(f, "pool {pool}"),
            Target::Endpoint { pool, id } => write!(f, "endpoint {id} of pool {pool}"),
            Target::Check { pool } => write!(f, "the check of pool {pool}"),
            Target::Region { region } => write!(f, "region {region}"),
            Target::Token { id } => write!(f, "token {id}"),
        }
    }
}

/// A token the API created: only its hash is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredToken {
    pub scope: Scope,
    #[serde(default)]
    pub regions: BTreeSet<String>,
    /// SHA-256 of the whole token, hex.
    pub sha256: String,
    #[serde(default)]
    pub description: String,
    pub created_ms: u64,
    pub created_by: String,
}

/// A typed resource, as a change puts it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resource {
    Spec(Box<ZoneSpec>),
    Zone(Box<Zone>),
    RecordSet(RecordSet),
    Steered(SteeredRecord),
    Pool(Box<Pool>),
    Endpoint(Box<Endpoint>),
    Check(Option<Box<Check>>),
    Region(ProbeRegion),
    Token(StoredToken),
}

/// What a change does to its target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// Create or replace.
    Put(Resource),
    Delete,
    /// Set some of an endpoint's operational fields.
    PatchEndpoint {
        weight: Option<u16>,
        priority: Option<u16>,
        state: Option<AdminState>,
    },
}

/// What must hold of the target for a change to apply.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Precondition {
    #[default]
    None,
    /// `If-Match`: the target exists and has one of these tags (`*`: any).
    Match(Vec<String>),
    /// `If-None-Match: *`: the target does not exist.
    Absent,
}

/// Who made a change and how, for the audit log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Audit {
    /// The principal, as the node identified it (`token ab12 (write)`).
    pub actor: String,
    /// The token id, when a token was used.
    #[serde(default)]
    pub token: Option<String>,
    /// The request: `PATCH /v1/pools/web/endpoints/eu-1`.
    pub action: String,
    /// The node that took the request; for a forwarded one, as the
    /// leader saw the forwarding node (its credential and address).
    #[serde(default)]
    pub via: Option<String>,
}

impl Audit {
    /// `principal` making the request `action` (`PATCH /v1/...`).
    pub fn of(principal: &crate::auth::Principal, action: String) -> Audit {
        let token = match principal {
            crate::auth::Principal::Client { name, .. } => {
                name.strip_prefix("token ").map(str::to_string)
            }
            _ => None,
        };
        Audit {
            actor: principal.to_string(),
            token,
            action,
            via: None,
        }
    }
}

/// One change to one resource: a Raft command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub target: Target,
    pub op: Op,
    #[serde(default)]
    pub precondition: Precondition,
    pub audit: Audit,
    /// The leader's clock when it proposed the change (ms since the Unix
    /// epoch), for the audit log.
    #[serde(default)]
    pub at_ms: u64,
    /// A spec without zones may replace one with zones (`/v1/apply
    /// ?allow_empty=true`); otherwise that is refused as a mistake.
    #[serde(default)]
    pub allow_empty: bool,
}

/// One applied change, as the audit log keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Numbers every entry ever recorded, from 1.
    pub seq: u64,
    pub at_ms: u64,
    pub actor: String,
    #[serde(default)]
    pub token: Option<String>,
    pub action: String,
    /// The node that took the request (see [`Audit::via`]).
    #[serde(default)]
    pub via: Option<String>,
    /// What changed (`pool web`).
    pub target: String,
    /// The state version before and after.
    pub before: u64,
    pub after: u64,
}

/// Why a change was not applied; each maps to an HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalKind {
    /// 400: the result breaks a rule.
    Invalid,
    /// 404: the target (or its parent) does not exist.
    NotFound,
    /// 409: the change conflicts with the state (a pool still in use).
    Conflict,
    /// 412: the precondition failed.
    Precondition,
}

/// A change refused: why, and the field at fault when there is one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    pub kind: RefusalKind,
    pub message: String,
    #[serde(default)]
    pub field: Option<String>,
}

impl Refusal {
    pub fn new(kind: RefusalKind, message: impl Into<String>) -> Refusal {
        Refusal {
            kind,
            message: message.into(),
            field: None,
        }
    }

    fn not_found(target: &Target) -> Refusal {
        Refusal::new(RefusalKind::NotFound, format!("no {target}"))
    }
}

/// The strong entity tag of a resource's JSON form: the first 128 bits
/// of its SHA-256, hex, quoted.
pub fn etag(value: &serde_json::Value) -> String {
    let text = serde_json::to_string(value).unwrap_or_default();
    let d = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    let hex: String = d.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("\"{hex}\"")
}

fn zone_index(spec: &ZoneSpec, zone: &DomainName) -> Option<usize> {
    spec.zones.iter().position(|z| z.name.key() == zone.key())
}

/// A resource's JSON form (the zone file's schema), if it exists.
pub fn read(
    spec: &ZoneSpec,
    tokens: &BTreeMap<String, StoredToken>,
    t: &Target,
) -> Option<serde_json::Value> {
    match t {
        Target::Spec => Some(export::export(spec)),
        Target::Zone { zone } => zone_index(spec, zone).map(|i| export::zone(&spec.zones[i])),
        Target::RecordSet { zone, name, rtype } => {
            let z = &spec.zones[zone_index(spec, zone)?];
            z.records
                .iter()
                .find(|r| r.rtype == *rtype && r.name.key() == name.key())
                .map(export::record_set)
        }
        Target::Steered { zone, name, rtype } => {
            let z = &spec.zones[zone_index(spec, zone)?];
            z.steered
                .iter()
                .find(|r| r.rtype == *rtype && r.name.key() == name.key())
                .map(export::steered)
        }
        Target::Pool { pool } => spec.pools.get(pool).map(export::pool),
        Target::Endpoint { pool, id } => spec
            .pools
            .get(pool)?
            .endpoints
            .iter()
            .find(|e| e.id == *id)
            .map(export::endpoint),
        Target::Check { pool } => spec.pools.get(pool)?.check.as_ref().map(export::check),
        Target::Region { region } => spec
            .regions
            .iter()
            .find(|r| r.name == *region)
            .map(export::region),
        Target::Token { id } => tokens.get(id).map(|t| token_view(id, t)),
    }
}

/// What the API shows of a token: never its hash.
pub fn token_view(id: &str, t: &StoredToken) -> serde_json::Value {
    serde_json::json!({
        "id": id,
        "scope": t.scope,
        "regions": t.regions,
        "description": t.description,
        "created_ms": t.created_ms,
        "created_by": t.created_by,
    })
}

/// Checks `p` against the target's current form.
pub fn check_precondition(
    current: Option<&serde_json::Value>,
    p: &Precondition,
) -> Result<(), Refusal> {
    match p {
        Precondition::None => Ok(()),
        _ => check_tag(current.map(etag).as_deref(), p),
    }
}

/// Checks `p` against the target's current entity tag (none: it does not
/// exist).
pub fn check_tag(current: Option<&str>, p: &Precondition) -> Result<(), Refusal> {
    let failed = |m: String| Err(Refusal::new(RefusalKind::Precondition, m));
    match (p, current) {
        (Precondition::None, _) => Ok(()),
        (Precondition::Absent, None) => Ok(()),
        (Precondition::Absent, Some(now)) => {
            failed(format!("If-None-Match: * but it exists (ETag {now})"))
        }
        (Precondition::Match(_), None) => failed("If-Match but it does not exist".into()),
        (Precondition::Match(tags), Some(now)) => {
            if tags.iter().any(|t| t == "*" || t == now) {
                Ok(())
            } else {
                failed(format!(
                    "If-Match does not match: the current ETag is {now}"
                ))
            }
        }
    }
}

/// Applies `op` at `target` to a spec (tokens aside), without checking
/// the rules.
pub fn apply_to_spec(spec: &mut ZoneSpec, target: &Target, op: &Op) -> Result<(), Refusal> {
    let missing = || Refusal::not_found(target);
    let mismatch = || {
        Refusal::new(
            RefusalKind::Invalid,
            format!("the resource given does not fit the {target}"),
        )
    };
    match (target, op) {
        (Target::Spec, Op::Put(Resource::Spec(s))) => *spec = (**s).clone(),
        (Target::Zone { zone }, Op::Put(Resource::Zone(z))) => {
            if z.name.key() != zone.key() {
                return Err(mismatch());
            }
            match zone_index(spec, zone) {
                Some(i) => spec.zones[i] = (**z).clone(),
                None => spec.zones.push((**z).clone()),
            }
        }
        (Target::Zone { zone }, Op::Delete) => {
            let i = zone_index(spec, zone).ok_or_else(missing)?;
            spec.zones.remove(i);
        }
        (Target::RecordSet { zone, name, rtype }, op) => {
            let i = zone_index(spec, zone)
                .ok_or_else(|| Refusal::not_found(&Target::Zone { zone: zone.clone() }))?;
            let new = match op {
                Op::Put(Resource::RecordSet(r)) => Some(r),
                Op::Delete => None,
                _ => return Err(mismatch()),
            };
            put_or_delete(&mut spec.zones[i].records, new, target, |r| {
                r.rtype == *rtype && r.name.key() == name.key()
            })?;
        }
        (Target::Steered { zone, name, rtype }, op) => {
            let i = zone_index(spec, zone)
                .ok_or_else(|| Refusal::not_found(&Target::Zone { zone: zone.clone() }))?;
            let new = match op {
                Op::Put(Resource::Steered(r)) => Some(r),
                Op::Delete => None,
                _ => return Err(mismatch()),
            };
            put_or_delete(&mut spec.zones[i].steered, new, target, |r| {
                r.rtype == *rtype && r.name.key() == name.key()
            })?;
        }
        (Target::Pool { pool }, Op::Put(Resource::Pool(p))) => {
            if p.name != *pool {
                return Err(mismatch());
            }
            spec.pools.insert(pool.clone(), (**p).clone());
        }
        (Target::Pool { pool }, Op::Delete) => {
            spec.pools.remove(pool).ok_or_else(missing)?;
        }
        (Target::Endpoint { .. }, Op::PatchEndpoint { .. }) => {
            patch_endpoint(spec, target, op)?;
        }
        (Target::Endpoint { pool, id }, op) => {
            let p = spec
                .pools
                .get_mut(pool)
                .ok_or_else(|| Refusal::not_found(&Target::Pool { pool: pool.clone() }))?;
            let new = match op {
                Op::Put(Resource::Endpoint(e)) => Some(&**e),
                Op::Delete => None,
                _ => return Err(mismatch()),
            };
            put_or_delete(&mut p.endpoints, new, target, |e| e.id == *id)?;
        }
        (Target::Check { pool }, op) => {
            let p = spec
                .pools
                .get_mut(pool)
                .ok_or_else(|| Refusal::not_found(&Target::Pool { pool: pool.clone() }))?;
            match op {
                Op::Put(Resource::Check(c)) => p.check = c.as_deref().cloned(),
                Op::Delete if p.check.is_some() => p.check = None,
                Op::Delete => return Err(missing()),
                _ => return Err(mismatch()),
            }
        }
        (Target::Region { region }, Op::Put(Resource::Region(r))) => {
            if r.name != *region {
                return Err(mismatch());
            }
            match spec.regions.iter_mut().find(|x| x.name == *region) {
                Some(x) => *x = r.clone(),
                None => spec.regions.push(r.clone()),
            }
        }
        (Target::Region { region }, Op::Delete) => {
            let at = spec
                .regions
                .iter()
                .position(|x| x.name == *region)
                .ok_or_else(missing)?;
            spec.regions.remove(at);
        }
        _ => return Err(mismatch()),
    }
    Ok(())
}

/// Applies a token change.
/// Puts `new` in place of the item `is` finds (or at the end), or, with
/// no `new`, deletes that item; `new` must be what `is` finds.
fn put_or_delete<T: Clone>(
    list: &mut Vec<T>,
    new: Option<&T>,
    target: &Target,
    is: impl Fn(&T) -> bool,
) -> Result<(), Refusal> {
    let at = list.iter().position(&is);
    match (new, at) {
        (Some(n), _) if !is(n) => {
            return Err(Refusal::new(
                RefusalKind::Invalid,
                format!("the resource given does not fit the {target}"),
            ))
        }
        (Some(n), Some(at)) => list[at] = n.clone(),
        (Some(n), None) => list.push(n.clone()),
        (None, Some(at)) => {
            list.remove(at);
        }
        (None, None) => return Err(Refusal::not_found(target)),
    }
    Ok(())
}

/// Applies an endpoint patch in place; whether it changed anything. A
/// patch sets only fields no rule constrains beyond their type (weight,
/// priority, admin state), so the spec needs no check after it.
pub fn patch_endpoint(spec: &mut ZoneSpec, target: &Target, op: &Op) -> Result<bool, Refusal> {
    let (
        Target::Endpoint { pool, id },
        Op::PatchEndpoint {
            weight,
            priority,
            state,
        },
    ) = (target, op)
    else {
        return Err(Refusal::new(RefusalKind::Invalid, "not an endpoint patch"));
    };
    let p = spec
        .pools
        .get_mut(pool)
        .ok_or_else(|| Refusal::not_found(&Target::Pool { pool: pool.clone() }))?;
    let e = p
        .endpoints
        .iter_mut()
        .find(|e| e.id == *id)
        .ok_or_else(|| Refusal::not_found(target))?;
    let before = (e.weight, e.priority, e.state);
    if let Some(w) = weight {
        e.weight = *w;
    }
    if let Some(pr) = priority {
        e.priority = *pr;
    }
    if let Some(s) = state {
        e.state = *s;
    }
    Ok(before != (e.weight, e.priority, e.state))
}

/// Applies a token change; a new token is stamped with `at_ms`.
pub fn apply_to_tokens(
    tokens: &mut BTreeMap<String, StoredToken>,
    target: &Target,
    op: &Op,
    at_ms: u64,
) -> Result<(), Refusal> {
    let Target::Token { id } = target else {
        return Err(Refusal::new(RefusalKind::Invalid, "not a token"));
    };
    match op {
        Op::Put(Resource::Token(t)) => {
            if !tokens.contains_key(id) && tokens.len() >= MAX_TOKENS {
                return Err(Refusal::new(
                    RefusalKind::Conflict,
                    format!("the cluster holds {MAX_TOKENS} tokens already: revoke some first"),
                ));
            }
            let mut t = t.clone();
            t.created_ms = at_ms;
            tokens.insert(id.clone(), t);
        }
        Op::Delete => {
            tokens
                .remove(id)
                .ok_or_else(|| Refusal::not_found(target))?;
        }
        _ => return Err(Refusal::new(RefusalKind::Invalid, "not a token change")),
    }
    Ok(())
}

/// Turns the rules' violations into a refusal naming the first field.
pub fn refusal_of(kind: RefusalKind, v: meridian_config::zone::rules::Violations) -> Refusal {
    Refusal {
        kind,
        field: v.0.first().map(|x| x.path.clone()),
        message: v.to_string(),
    }
}

/// Appends an entry, dropping the oldest past [`AUDIT_KEEP`].
pub fn record(
    log: &mut VecDeque<std::sync::Arc<AuditEntry>>,
    next_seq: &mut u64,
    mut entry: AuditEntry,
) {
    *next_seq += 1;
    entry.seq = *next_seq;
    log.push_back(std::sync::Arc::new(entry));
    while log.len() > AUDIT_KEEP {
        log.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{ReplicatedState, Response};
    use crate::Command;

    const SPEC: &str = "zones:
  example.com:
    soa: {rname: hostmaster.example.com.}
    ns: [{name: ns.example.net.}]
    steered:
      - {name: www, type: A, pool: web, steps: [health, weighted, {first: 1}]}
regions:
  eu: {}
pools:
  web:
    endpoints:
      - {id: a, address: 192.0.2.1, region: eu}
";

    fn state() -> ReplicatedState {
        let spec = meridian_config::zone::parse("t.yaml", SPEC).expect("valid");
        let mut s = ReplicatedState::default();
        s.apply(&Command::ReplaceSpec(Box::new(spec)));
        s
    }

    fn change(target: Target, op: Op, precondition: Precondition) -> Command {
        Command::Api(Box::new(Change {
            target,
            op,
            precondition,
            audit: Audit {
                actor: "token t1 (write)".into(),
                token: Some("t1".into()),
                action: "TEST".into(),
                via: None,
            },
            at_ms: 7,
            allow_empty: false,
        }))
    }

    fn endpoint() -> Target {
        Target::Endpoint {
            pool: "web".into(),
            id: "a".into(),
        }
    }

    fn weight(w: u16) -> Op {
        Op::PatchEndpoint {
            weight: Some(w),
            priority: None,
            state: None,
        }
    }

    fn refused(r: Response) -> RefusalKind {
        match r {
            Response::Refused(r) => r.kind,
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn a_stale_precondition_changes_nothing() {
        let mut s = state();
        let before = s.clone();
        let stale = Precondition::Match(vec!["\"0\"".into()]);
        let r = s.apply(&change(endpoint(), weight(5), stale));
        assert_eq!(refused(r), RefusalKind::Precondition);
        assert_eq!(s, before);
        // the current tag applies, and is audited
        let tag = etag(&read(&s.spec, &s.tokens, &endpoint()).expect("exists"));
        let r = s.apply(&change(
            endpoint(),
            weight(5),
            Precondition::Match(vec![tag]),
        ));
        assert_eq!(
            r,
            Response::Applied {
                version: before.version + 1
            }
        );
        let e = s.audit.back().expect("audited");
        assert_eq!(
            (e.before, e.after, e.at_ms),
            (before.version, before.version + 1, 7)
        );
        assert_eq!(e.token.as_deref(), Some("t1"));
    }

    #[test]
    fn a_repeated_change_is_idempotent() {
        let mut s = state();
        s.apply(&change(endpoint(), weight(5), Precondition::None));
        let after = s.clone();
        let r = s.apply(&change(endpoint(), weight(5), Precondition::None));
        assert_eq!(
            r,
            Response::Applied {
                version: after.version
            }
        );
        assert_eq!(s, after, "no version, no audit entry");
    }

    #[test]
    fn a_change_breaking_a_rule_or_a_reference_changes_nothing() {
        let mut s = state();
        let before = s.clone();
        let r = s.apply(&change(
            Target::Pool { pool: "web".into() },
            Op::Delete,
            Precondition::None,
        ));
        assert_eq!(refused(r), RefusalKind::Conflict, "www uses it");
        let mut www = s.spec.zones[0].steered[0].clone();
        www.pool = "missing".into();
        let r = s.apply(&change(
            Target::Steered {
                zone: www.name.clone(),
                name: www.name.clone(),
                rtype: www.rtype,
            },
            Op::Put(Resource::Steered(www.clone())),
            Precondition::None,
        ));
        assert_eq!(
            refused(r),
            RefusalKind::NotFound,
            "www.example.com is no zone"
        );
        let r = s.apply(&change(
            Target::Steered {
                zone: s.spec.zones[0].name.clone(),
                name: www.name.clone(),
                rtype: www.rtype,
            },
            Op::Put(Resource::Steered(www)),
            Precondition::None,
        ));
        assert_eq!(refused(r), RefusalKind::Invalid);
        let r = s.apply(&change(
            Target::Endpoint {
                pool: "web".into(),
                id: "nope".into(),
            },
            weight(1),
            Precondition::None,
        ));
        assert_eq!(refused(r), RefusalKind::NotFound);
        assert_eq!(s, before);
    }

    #[test]
    fn the_audit_log_is_bounded() {
        let mut s = state();
        for i in 0..(AUDIT_KEEP + 10) {
            s.apply(&change(
                endpoint(),
                weight((i % 2) as u16 + 2),
                Precondition::None,
            ));
        }
        assert_eq!(s.audit.len(), AUDIT_KEEP);
        assert_eq!(s.audit_seq, (AUDIT_KEEP + 10) as u64);
        assert_eq!(s.audit.front().map(|e| e.seq), Some(11));
    }
}
