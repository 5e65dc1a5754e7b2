//! Meridian's REST API: the one way in for people and tools.
//!
//! Served under `/v1` on each node's API listener, beside the Raft routes,
//! behind the same identities (`meridian_consensus::auth`):
//!
//! - `read`: every `GET` (resources, health, explain, cluster, audit);
//! - `write`: `PUT`, `PATCH`, `DELETE` of resources and `POST /v1/apply`;
//! - `admin`: tokens (`/v1/tokens`).
//!
//! Nodes may read but never change resources: every change names an
//! operator or a tool in the audit log.
//!
//! Resources are shown and taken in the zone file's schema (what
//! `meridian check` reads), with an `ETag`; writes take `If-Match` (and
//! `If-None-Match: *`). Each write is one Raft command
//! ([`Change`](meridian_consensus::resources::Change)) that the leader
//! checks against the whole state before it proposes it, and that the
//! state machine applies only if its precondition and every rule still
//! hold. Every error is `{"error": {"code", "message", "field"}}`.
//!
//! # Layout
//!
//! - [`resources`]: CRUD on zones, record sets, steered records, pools,
//!   endpoints, checks and regions.
//! - [`apply`]: the whole spec at once, with a dry run that shows the diff.
//! - [`views`]: health, explain, cluster and audit.
//! - [`tokens`]: API tokens, created and revoked by `admin`.
//! - [`openapi`]: the OpenAPI 3.1 document, generated from the handlers
//!   and types, at `/v1/openapi.json`.

#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::header::{CONTENT_TYPE, ETAG};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use meridian_consensus::auth::{Need, Principal, Scope};
use meridian_consensus::http::guarded;
use meridian_consensus::resources::{
    etag, Audit, Change, Op, Precondition, Refusal, RefusalKind, Target,
};
use meridian_consensus::{ClusterError, ClusterNode, ReplicatedState, Written};
use meridian_dns::handler::GeoHandle;
use meridian_dns::SnapshotHandle;
use serde::Serialize;

pub mod apply;
pub mod openapi;
pub mod resources;
pub mod tokens;
pub mod views;

/// The API's bounds.
#[derive(Debug, Clone)]
pub struct ApiLimits {
    /// A resource write's body, in bytes.
    pub max_body_bytes: usize,
    /// `POST /v1/apply`'s body (a whole spec), in bytes.
    pub max_apply_bytes: usize,
    /// Requests handled at once; more get 503 with `Retry-After`.
    pub max_in_flight: usize,
}

impl Default for ApiLimits {
    fn default() -> ApiLimits {
        ApiLimits {
            max_body_bytes: 1 << 20,
            max_apply_bytes: meridian_consensus::state::MAX_SPEC_TEXT,
            max_in_flight: 64,
        }
    }
}

/// What the handlers need.
#[derive(Clone)]
pub struct Api {
    pub node: ClusterNode,
    /// The DNS server's current snapshot, for `explain`.
    pub dns: SnapshotHandle,
    pub geo: GeoHandle,
    /// The largest spec, in bytes of its JSON form, a resource write may
    /// leave: what `POST /v1/apply` takes, so a read can be written back.
    pub max_spec_bytes: usize,
    /// The spec in the file's schema, exported once per state version.
    pub exports: Arc<tokio::sync::Mutex<Option<Exported>>>,
}

impl Api {
    /// The handlers' state; [`routes`] sets the spec bound from its limits.
    pub fn new(node: ClusterNode, dns: SnapshotHandle, geo: GeoHandle) -> Api {
        Api {
            node,
            dns,
            geo,
            max_spec_bytes: meridian_consensus::state::MAX_SPEC_TEXT,
            exports: Default::default(),
        }
    }
}

/// The whole spec exported, as of one state version: reads of the spec,
/// of a list or of a zone take from it instead of exporting again (a spec
/// of megabytes takes a while, and readers may be many).
#[derive(Clone)]
pub struct Exported {
    version: u64,
    pub(crate) value: Arc<serde_json::Value>,
    pub(crate) bytes: Bytes,
    pub(crate) etag: String,
}

/// The current spec, exported (once per version, off the async threads).
pub(crate) async fn exported(api: &Api) -> Result<Exported, ClusterError> {
    let mut cached = api.exports.lock().await;
    let state = api.node.state();
    if let Some(e) = cached.as_ref().filter(|e| e.version == state.version) {
        return Ok(e.clone());
    }
    let version = state.version;
    let fresh = blocking(move || {
        let value = meridian_config::zone::export::export(&state.spec);
        let bytes = Bytes::from(serde_json::to_vec(&value).unwrap_or_default());
        Ok(Exported {
            version,
            etag: etag(&value),
            value: Arc::new(value),
            bytes,
        })
    })
    .await?;
    *cached = Some(fresh.clone());
    Ok(fresh)
}

/// Runs `f` on the blocking threads: work proportional to the spec.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ClusterError> + Send + 'static,
) -> Result<T, ClusterError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ClusterError::Failed(format!("a blocking task failed: {e}")))?
}

/// A JSON value built by `f` (off the async threads), with its `ETag`.
pub(crate) async fn tagged_with(
    f: impl FnOnce() -> Result<serde_json::Value, ClusterError> + Send + 'static,
) -> Result<Response, ClusterError> {
    let (bytes, tag) = blocking(move || {
        let v = f()?;
        Ok((serde_json::to_vec(&v).unwrap_or_default(), etag(&v)))
    })
    .await?;
    Ok(json_bytes(Bytes::from(bytes), &tag))
}

/// JSON bytes with their `ETag`.
pub(crate) fn json_bytes(bytes: Bytes, tag: &str) -> Response {
    let mut resp = (
        [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        bytes,
    )
        .into_response();
    if let Ok(t) = HeaderValue::from_str(tag) {
        resp.headers_mut().insert(ETAG, t);
    }
    resp
}

/// The `/v1` routes, each behind its scope, within `limits`.
///
/// Inside each scope's guard (so a stranger's body is never read), a
/// request is admitted in order: its body's size is reserved from the
/// node's body budget ([`BODY_BUDGET_KIB`]) or it gets 503; its body is
/// read whole within [`BODY_TIMEOUT`] and its route's limit; a change of
/// the spec's structure (a PUT, a DELETE, an apply) waits for the node's
/// one structural turn, since it validates the whole spec; then it takes
/// one of the `max_in_flight` slots, or gets 503 at once. A slow body
/// holds a connection and its reserved bytes, never a slot.
pub fn routes(api: Api, limits: &ApiLimits) -> Router {
    let creds = api.node.credentials().clone();
    let in_flight = Arc::new(tokio::sync::Semaphore::new(limits.max_in_flight.max(1)));
    let structure = Arc::new(tokio::sync::Semaphore::new(1));
    let budget = Arc::new(tokio::sync::Semaphore::new(BODY_BUDGET_KIB));
    let gate = |limit: usize| Gate {
        limit,
        in_flight: in_flight.clone(),
        structure: structure.clone(),
        budget: budget.clone(),
    };
    let read = resources::read_routes()
        .merge(views::routes())
        .route(
            "/v1/openapi.json",
            axum::routing::get(openapi::openapi_json),
        )
        .merge(apply::read_routes())
        .route_layer(axum::middleware::from_fn_with_state(gate(0), admit));
    let write = resources::write_routes()
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .route_layer(axum::middleware::from_fn_with_state(
            gate(limits.max_body_bytes),
            admit,
        ))
        .merge(
            apply::write_routes()
                .layer(DefaultBodyLimit::max(limits.max_apply_bytes))
                .route_layer(axum::middleware::from_fn_with_state(
                    gate(limits.max_apply_bytes),
                    admit,
                )),
        );
    let admin = tokens::routes()
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .route_layer(axum::middleware::from_fn_with_state(
            gate(limits.max_body_bytes),
            admit,
        ));
    guarded(read, &creds, Need::Scope(Scope::Read))
        .merge(guarded(write, &creds, Need::ClientScope(Scope::Write)))
        .merge(guarded(admin, &creds, Need::ClientScope(Scope::Admin)))
        .with_state(Api {
            max_spec_bytes: limits.max_apply_bytes,
            ..api
        })
}

/// How long a request's body may take to arrive.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// The request bodies a node holds at once, all requests together, in
/// KiB (64 MiB): a body's size (its `Content-Length`, else its route's
/// limit) is reserved before it is read, or the request gets 503.
const BODY_BUDGET_KIB: usize = 64 * 1024;

/// What [`admit`] bounds a route by.
#[derive(Clone)]
struct Gate {
    /// The body's limit in bytes (0: no body expected; one is refused).
    limit: usize,
    in_flight: Arc<tokio::sync::Semaphore>,
    structure: Arc<tokio::sync::Semaphore>,
    /// See [`BODY_BUDGET_KIB`].
    budget: Arc<tokio::sync::Semaphore>,
}

async fn admit(State(gate): State<Gate>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let declared = parts
        .headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let size = declared.unwrap_or(gate.limit).min(gate.limit);
    let kib = u32::try_from(size.div_ceil(1024).max(1)).unwrap_or(u32::MAX);
    let Ok(_reserved) = gate.budget.clone().try_acquire_many_owned(kib) else {
        return ClusterError::Unavailable(
            "too many request bytes in flight on this node; retry shortly".into(),
        )
        .into_response();
    };
    let bytes =
        match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, gate.limit.max(1)))
            .await
        {
            Ok(Ok(b)) => b,
            Ok(Err(_)) => {
                return ClusterError::TooLarge(format!(
                    "the request body is larger than this route accepts ({} bytes)",
                    gate.limit
                ))
                .into_response()
            }
            Err(_) => {
                return ClusterError::Timeout(format!(
                    "the request body did not arrive within {} s",
                    BODY_TIMEOUT.as_secs()
                ))
                .into_response()
            }
        };
    // a change of the spec's structure waits its turn first, holding no
    // slot while it waits; tokens are no structure
    let structural = matches!(parts.method, Method::PUT | Method::DELETE | Method::POST)
        && !parts.uri.path().starts_with("/v1/tokens");
    let _turn = if structural {
        match gate.structure.clone().acquire_owned().await {
            Ok(p) => Some(p),
            Err(_) => {
                return ClusterError::Unavailable("the node is shutting down".into())
                    .into_response()
            }
        }
    } else {
        None
    };
    let Ok(_slot) = gate.in_flight.try_acquire_owned() else {
        return ClusterError::Unavailable(
            "too many API requests in flight on this node; retry shortly".into(),
        )
        .into_response();
    };
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await
}

/// A 400 naming the field at fault.
pub(crate) fn invalid(field: Option<&str>, message: impl Into<String>) -> ClusterError {
    ClusterError::Refused(Refusal {
        kind: RefusalKind::Invalid,
        message: message.into(),
        field: field.map(str::to_string),
    })
}

pub(crate) fn not_found(message: impl Into<String>) -> ClusterError {
    ClusterError::Refused(Refusal::new(RefusalKind::NotFound, message))
}

/// The body as JSON, after checking its content type.
pub(crate) fn json_body(
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<serde_json::Value, ClusterError> {
    let ct = content_type(headers);
    if ct != "application/json" {
        return Err(unsupported(&ct, "application/json"));
    }
    serde_json::from_slice(body)
        .map_err(|e| invalid(None, format!("the body is not valid JSON: {e}")))
}

/// The media type of the request, lower case, without parameters.
pub(crate) fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default()
}

pub(crate) fn unsupported(got: &str, want: &str) -> ClusterError {
    ClusterError::Http {
        status: 415,
        message: if got.is_empty() {
            format!("no Content-Type: send {want}")
        } else {
            format!("Content-Type {got} is not accepted here: send {want}")
        },
    }
}

/// The precondition the request's headers set.
pub(crate) fn precondition(headers: &HeaderMap) -> Result<Precondition, ClusterError> {
    if let Some(v) = headers.get("if-none-match") {
        return match v.to_str().map(str::trim) {
            Ok("*") => Ok(Precondition::Absent),
            _ => Err(invalid(
                Some("If-None-Match"),
                "writes accept only If-None-Match: * (create, never replace)",
            )),
        };
    }
    let Some(v) = headers.get("if-match") else {
        return Ok(Precondition::None);
    };
    let text = v
        .to_str()
        .map_err(|_| invalid(Some("If-Match"), "If-Match is not ASCII"))?;
    let tags: Vec<String> = text
        .split(',')
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect();
    let well_formed =
        |t: &String| t == "*" || (t.len() >= 2 && t.starts_with('"') && t.ends_with('"'));
    if tags.is_empty() || !tags.iter().all(well_formed) {
        return Err(invalid(
            Some("If-Match"),
            "If-Match takes * or quoted entity tags, as ETag gives them",
        ));
    }
    Ok(Precondition::Match(tags))
}

/// Who is asking, for the audit log.
pub(crate) fn audit(principal: &Principal, action: String) -> Audit {
    Audit::of(principal, action)
}

/// What a write answers.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WriteReply {
    /// The state version after the write.
    pub version: u64,
    /// The resource's tag after the write (none after a delete).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
}

/// Commits `change`, waits (briefly) until this node has applied it, and
/// answers with the new version and the resource's tag.
pub(crate) async fn commit(api: &Api, mut change: Change) -> Result<Response, ClusterError> {
    change.audit.via = Some(format!("node {}", api.node.id()));
    let target = change.target.clone();
    let deleting = matches!(change.op, Op::Delete);
    let created = !deleting && !exists(&api.node.state(), &target);
    let written = api
        .node
        .write(meridian_consensus::Command::Api(Box::new(change)))
        .await?;
    let state = applied(&api.node, &written, &target, deleting).await;
    let tag = match &target {
        // the whole spec or a zone: from the export of this version
        Target::Spec | Target::Zone { .. } if !deleting => {
            let e = exported(api).await?;
            match &target {
                Target::Zone { zone } => zone_of(&e.value, zone).map(|v| etag(&v)),
                _ => Some(e.etag),
            }
        }
        _ => read_target(&state, &target).map(|v| etag(&v)),
    };
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut resp = (
        status,
        Json(WriteReply {
            version: written.version,
            etag: tag.clone(),
        }),
    )
        .into_response();
    if let Some(t) = tag.and_then(|t| HeaderValue::from_str(&t).ok()) {
        resp.headers_mut().insert(ETAG, t);
    }
    Ok(resp)
}

/// This node's state once it has applied `written` (or after 2 s, the
/// state it has): so a read after a write sees it.
async fn applied(
    node: &ClusterNode,
    written: &Written,
    target: &Target,
    deleting: bool,
) -> Arc<ReplicatedState> {
    let mut rx = node.subscribe();
    let done = |s: &ReplicatedState| match target {
        Target::Token { id } => s.tokens.contains_key(id) != deleting,
        _ => s.version >= written.version,
    };
    let waited = tokio::time::timeout(Duration::from_secs(2), async {
        rx.wait_for(|s| done(s)).await.map(|s| s.clone())
    })
    .await;
    match waited {
        Ok(Ok(s)) => s,
        _ => node.state(),
    }
}

/// A zone's document in an exported spec.
pub(crate) fn zone_of(
    whole: &serde_json::Value,
    zone: &meridian_config::DomainName,
) -> Option<serde_json::Value> {
    whole["zones"]
        .as_object()?
        .iter()
        .find(|(k, _)| meridian_config::DomainName::parse(k).is_ok_and(|n| n.key() == zone.key()))
        .map(|(_, v)| v.clone())
}

/// Whether `target` exists, from the typed state (no export).
fn exists(state: &ReplicatedState, target: &Target) -> bool {
    let spec = &state.spec;
    let zone =
        |z: &meridian_config::DomainName| spec.zones.iter().find(|x| x.name.key() == z.key());
    match target {
        Target::Spec => true,
        Target::Zone { zone: z } => zone(z).is_some(),
        Target::RecordSet {
            zone: z,
            name,
            rtype,
        } => zone(z).is_some_and(|z| {
            z.records
                .iter()
                .any(|r| r.rtype == *rtype && r.name.key() == name.key())
        }),
        Target::Steered {
            zone: z,
            name,
            rtype,
        } => zone(z).is_some_and(|z| {
            z.steered
                .iter()
                .any(|r| r.rtype == *rtype && r.name.key() == name.key())
        }),
        Target::Pool { pool } => spec.pools.contains_key(pool),
        Target::Endpoint { pool, id } => spec
            .pools
            .get(pool)
            .is_some_and(|p| p.endpoints.iter().any(|e| e.id == *id)),
        Target::Check { pool } => spec.pools.get(pool).is_some_and(|p| p.check.is_some()),
        Target::Region { region } => spec.regions.iter().any(|r| r.name == *region),
        Target::Token { id } => state.tokens.contains_key(id),
    }
}

pub(crate) fn read_target(state: &ReplicatedState, target: &Target) -> Option<serde_json::Value> {
    meridian_consensus::resources::read(&state.spec, &state.tokens, target)
}

/// A resource with its `ETag`.
pub(crate) fn tagged(value: serde_json::Value) -> Response {
    let tag = etag(&value);
    let mut resp = Json(value).into_response();
    if let Ok(t) = HeaderValue::from_str(&tag) {
        resp.headers_mut().insert(ETAG, t);
    }
    resp
}
