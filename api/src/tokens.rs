//! API tokens, managed by `admin`: create (the token is shown once), list
//! by id and scope, revoke. The replicated state keeps only each token's
//! SHA-256; every node honours a new token, and refuses a revoked one, as
//! soon as it applies the change.
//!
//! Tokens in a node's token file (`cluster.tokens`) are listed too, marked
//! `file`: they are revoked by editing the file on each node.

use std::collections::BTreeSet;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Extension, Json, Router};
use meridian_consensus::auth::{self, Principal, Scope};
use meridian_consensus::resources::{
    token_view, Change, Op, Precondition, Refusal, RefusalKind, Resource, StoredToken, Target,
};
use meridian_consensus::ClusterError;
use serde::Deserialize;
use serde_json::json;

use crate::{audit, invalid, json_body, not_found, Api};

pub fn routes() -> Router<Api> {
    Router::new()
        .route("/v1/tokens", get(list).post(create))
        .route("/v1/tokens/{id}", delete(revoke).get(get_one))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    pub scope: Scope,
    /// For `probe`: the regions it may report for.
    #[serde(default)]
    pub regions: BTreeSet<String>,
    #[serde(default)]
    pub description: String,
}

async fn list(State(api): State<Api>) -> Response {
    let state = api.node.state();
    let mut out: Vec<serde_json::Value> = state
        .tokens
        .iter()
        .map(|(id, t)| {
            let mut v = token_view(id, t);
            v["source"] = json!("api");
            v
        })
        .collect();
    for t in api.node.credentials().file_tokens() {
        out.push(json!({
            "id": t.id, "scope": t.scope, "regions": t.regions, "source": "file",
        }));
    }
    Json(json!({ "tokens": out })).into_response()
}

async fn get_one(State(api): State<Api>, Path(id): Path<String>) -> Result<Response, ClusterError> {
    let state = api.node.state();
    let t = state
        .tokens
        .get(&id)
        .ok_or_else(|| not_found(format!("no API token {id}")))?;
    Ok(Json(token_view(&id, t)).into_response())
}

async fn create(
    State(api): State<Api>,
    Extension(principal): Extension<Principal>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ClusterError> {
    let value = json_body(&headers, &body)?;
    let req: NewToken = serde_json::from_value(value).map_err(|e| {
        invalid(
            Some("scope"),
            format!(
                "expected {{\"scope\": read|write|admin|probe, \"regions\", \"description\"}}: {e}"
            ),
        )
    })?;
    if req.scope == Scope::Probe && req.regions.is_empty() {
        return Err(invalid(
            Some("regions"),
            "a probe token needs the regions it reports for",
        ));
    }
    if req.scope != Scope::Probe && !req.regions.is_empty() {
        return Err(invalid(Some("regions"), "only probe tokens have regions"));
    }
    if let Some(r) = req
        .regions
        .iter()
        .find(|r| !meridian_config::node::is_region_name(r))
    {
        return Err(invalid(
            Some("regions"),
            format!("not a region name: {r:?}"),
        ));
    }
    if req.description.len() > 256 || req.description.chars().any(char::is_control) {
        return Err(invalid(
            Some("description"),
            "a description is at most 256 bytes, without control characters",
        ));
    }
    let (token, entry) = auth::new_token(req.scope, req.regions.clone());
    if api.node.credentials().has_token_id(&entry.id) {
        return Err(ClusterError::Unavailable(
            "token id collision; retry".into(),
        ));
    }
    let stored = StoredToken {
        scope: req.scope,
        regions: req.regions,
        sha256: auth::hash_hex(&entry),
        description: req.description,
        created_ms: 0,
        created_by: principal.to_string(),
    };
    let change = Change {
        target: Target::Token {
            id: entry.id.clone(),
        },
        op: Op::Put(Resource::Token(stored)),
        precondition: Precondition::Absent,
        audit: audit(&principal, format!("{method} {}", uri.path())),
        at_ms: 0,
    };
    crate::commit(&api, change).await?;
    let state = api.node.state();
    let view = state
        .tokens
        .get(&entry.id)
        .map(|t| token_view(&entry.id, t))
        .unwrap_or_else(|| json!({"id": entry.id}));
    let mut body = view;
    body["token"] = json!(token);
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

async fn revoke(
    State(api): State<Api>,
    Extension(principal): Extension<Principal>,
    method: Method,
    uri: Uri,
    Path(id): Path<String>,
) -> Result<Response, ClusterError> {
    if !api.node.state().tokens.contains_key(&id) {
        if api
            .node
            .credentials()
            .file_tokens()
            .iter()
            .any(|t| t.id == id)
        {
            return Err(ClusterError::Refused(Refusal::new(
                RefusalKind::Conflict,
                format!("token {id} is in the nodes' token files: remove it there"),
            )));
        }
        return Err(not_found(format!("no API token {id}")));
    }
    let change = Change {
        target: Target::Token { id },
        op: Op::Delete,
        precondition: Precondition::None,
        audit: audit(&principal, format!("{method} {}", uri.path())),
        at_ms: 0,
    };
    crate::commit(&api, change).await
}
