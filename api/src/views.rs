//! What an operator reads to know what Meridian is doing: endpoint health,
//! the steering trace for a name and client, the cluster, and the audit
//! log of changes.

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use meridian_consensus::ClusterError;
use serde::{Deserialize, Serialize};

use crate::openapi::Errors;
use serde_json::json;

use crate::{invalid, Api};

pub fn routes() -> Router<Api> {
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/explain", get(explain))
        .route("/v1/cluster", get(cluster))
        .route("/v1/audit", get(audit))
}

/// Every checked endpoint: its verdict, and each region's vote with its
/// age and RTT.
#[utoipa::path(get, path = "/v1/health", tag = "views",
    summary = "Per endpoint: the verdict, and each region's vote, age and RTT",
    responses((status = 200, body = Object), Errors))]
pub async fn health(State(api): State<Api>) -> Response {
    let state = api.node.state();
    Json(state.health.view(&state.spec)).into_response()
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ExplainQuery {
    /// The name to ask for.
    pub name: String,
    /// The record type (default A).
    #[serde(rename = "type", default = "a")]
    #[param(rename = "type")]
    pub rtype: String,
    /// An address or `address/prefix`.
    pub client: Option<String>,
    /// Fixes the weighted draws (a random one when absent).
    pub seed: Option<u64>,
}

fn a() -> String {
    "A".into()
}

/// The answer this node would give, with each steering step's decision.
#[utoipa::path(get, path = "/v1/explain", tag = "views",
    summary = "The answer a name gets for a client, with each steering step's decision",
    params(ExplainQuery), responses((status = 200, body = Object), Errors))]
pub async fn explain(
    State(api): State<Api>,
    query: Result<Query<ExplainQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ClusterError> {
    let Query(q) = query.map_err(|e| invalid(Some("name"), e.body_text()))?;
    if q.name.len() > 255 {
        return Err(invalid(Some("name"), "a name is at most 255 octets"));
    }
    let rtype: hickory_proto::rr::RecordType = q
        .rtype
        .to_ascii_uppercase()
        .parse()
        .map_err(|_| invalid(Some("type"), format!("unknown record type {:?}", q.rtype)))?;
    let client = q
        .client
        .as_deref()
        .map(meridian_dns::explain::parse_client)
        .transpose()
        .map_err(|e| invalid(Some("client"), e))?;
    let seed = q.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    });
    let snap = api.dns.load();
    let geo = api.geo.load_full();
    let x = meridian_dns::explain::explain(&snap, geo.as_deref(), &q.name, rtype, client, seed)
        .map_err(|e| invalid(Some("name"), e))?;
    let steering = x.steering.as_ref().map(|s| {
        json!({
            "candidates": s.pool,
            "steps": s.trace.steps.iter().map(|t| json!({
                "step": t.step, "kept": t.kept, "notes": t.notes,
            })).collect::<Vec<_>>(),
            "outcome": format!("{:?}", s.outcome).to_ascii_lowercase(),
        })
    });
    Ok(Json(json!({
        "name": x.name,
        "type": x.rtype.to_string(),
        "client": x.client.map(|(ip, p)| format!("{ip}/{p}")),
        "location": x.location.map(|l| l.to_string()),
        "steering": steering,
        "rcode": meridian_dns::explain::mnemonic(x.rcode),
        "answers": x.answers,
        "scope": x.client.map(|_| x.scope),
        "version": snap.version,
        "text": meridian_dns::explain::render(&x, geo.is_some()),
    }))
    .into_response())
}

/// This node's view of the cluster: members, leader, each member's
/// replication (on the leader) and how stale this node's state may be.
#[utoipa::path(get, path = "/v1/cluster", tag = "views",
    summary = "Members, leader, replication lag and staleness, as this node sees them",
    responses((status = 200, body = Object), Errors))]
pub async fn cluster(State(api): State<Api>) -> Response {
    let s = api.node.status();
    let lag = s.matched.as_ref().map(|m| {
        m.iter()
            .map(|(id, i)| {
                let behind = s.last_log_index.unwrap_or(0).saturating_sub(i.unwrap_or(0));
                (id.to_string(), behind)
            })
            .collect::<std::collections::BTreeMap<_, _>>()
    });
    Json(json!({
        "node": s.id,
        "role": s.role,
        "leader": s.leader,
        "term": s.term,
        "version": s.version,
        "members": s.members,
        "lag_entries": lag,
        "stale_ms": s.stale_ms,
        "diverged": s.diverged,
        "status": s,
    }))
    .into_response()
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Only entries after this sequence number, the oldest first: page
    /// forward with the last `seq` seen.
    pub after: Option<u64>,
    /// At most this many (default 100): without `after`, the newest.
    pub limit: Option<usize>,
}

/// The changes made through the API, oldest first: who, when, with which
/// token, what, and the version before and after.
/// The audit log, as served.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    pub entries: Vec<AuditEntryDoc>,
    /// The number of the last entry ever recorded.
    pub last_seq: u64,
    /// How many entries the cluster keeps.
    pub kept: usize,
}

/// One change: who, when, with which token, what, and the state version
/// before and after.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditEntryDoc {
    pub seq: u64,
    /// Milliseconds since the Unix epoch, by the leader's clock.
    pub at_ms: u64,
    pub actor: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    pub action: String,
    /// The node that took the request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    pub target: String,
    pub before: u64,
    pub after: u64,
}

#[utoipa::path(get, path = "/v1/audit", tag = "views",
    summary = "Who changed what, when, with which token",
    params(AuditQuery), responses((status = 200, body = AuditPage), Errors))]
pub async fn audit(
    State(api): State<Api>,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ClusterError> {
    let Query(q) = query.map_err(|e| invalid(None, e.body_text()))?;
    let state = api.node.state();
    let limit = q
        .limit
        .unwrap_or(100)
        .min(meridian_consensus::resources::AUDIT_KEEP);
    let after = q.after.unwrap_or(0);
    let entries: Vec<_> = state.audit.iter().filter(|e| e.seq > after).collect();
    // with `after`, the next page forward; without, the newest entries
    let skip = if q.after.is_some() {
        0
    } else {
        entries.len().saturating_sub(limit)
    };
    let entries = &entries[..(skip + limit).min(entries.len())];
    let page = AuditPage {
        entries: entries[skip..]
            .iter()
            .map(|e| AuditEntryDoc {
                seq: e.seq,
                at_ms: e.at_ms,
                actor: e.actor.clone(),
                token: e.token.clone(),
                action: e.action.clone(),
                via: e.via.clone(),
                target: e.target.clone(),
                before: e.before,
                after: e.after,
            })
            .collect(),
        last_seq: state.audit_seq,
        kept: meridian_consensus::resources::AUDIT_KEEP,
    };
    Ok(Json(page).into_response())
}
