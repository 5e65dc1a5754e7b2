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
    Change, Op, Precondition, Refusal, RefusalKind, Resource, StoredToken, Target,
};
use meridian_consensus::ClusterError;
use serde::{Deserialize, Serialize};

use crate::openapi::{Errors, WriteErrors};
use crate::{audit, invalid, json_body, not_found, Api, WriteReply};

pub fn routes() -> Router<Api> {
    Router::new()
        .route("/v1/tokens", get(list).post(create))
        .route("/v1/tokens/{id}", delete(revoke).get(get_one))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// read, write, admin or probe.
    #[schema(value_type = String)]
    pub scope: Scope,
    /// For `probe`: the regions it may report for.
    #[serde(default)]
    pub regions: BTreeSet<String>,
    #[serde(default)]
    pub description: String,
}

/// What the API shows of a token: never the token, never its hash.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenView {
    pub id: String,
    /// read, write, admin or probe.
    pub scope: String,
    pub regions: BTreeSet<String>,
    /// `api` (revocable here) or `file` (in the nodes' token files).
    pub source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Milliseconds since the Unix epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
}

impl TokenView {
    fn of(id: &str, t: &StoredToken) -> TokenView {
        TokenView {
            id: id.to_string(),
            scope: t.scope.name().to_string(),
            regions: t.regions.clone(),
            source: "api".into(),
            description: Some(t.description.clone()),
            created_ms: Some(t.created_ms),
            created_by: Some(t.created_by.clone()),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenList {
    pub tokens: Vec<TokenView>,
}

/// A new token: the only time it is shown.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedToken {
    #[serde(flatten)]
    pub view: TokenView,
    /// The bearer token. Keep it: only its hash is kept.
    pub token: String,
}

#[utoipa::path(get, path = "/v1/tokens", tag = "tokens", summary = "Every token, by id and scope",
    responses((status = 200, body = TokenList), Errors))]
pub async fn list(State(api): State<Api>) -> Response {
    let state = api.node.state();
    let mut tokens: Vec<TokenView> = state
        .tokens
        .iter()
        .map(|(id, t)| TokenView::of(id, t))
        .collect();
    for t in api.node.credentials().file_tokens() {
        tokens.push(TokenView {
            id: t.id.clone(),
            scope: t.scope.name().to_string(),
            regions: t.regions.clone(),
            source: "file".into(),
            description: None,
            created_ms: None,
            created_by: None,
        });
    }
    Json(TokenList { tokens }).into_response()
}

#[utoipa::path(get, path = "/v1/tokens/{id}", tag = "tokens", summary = "One API token",
    params(("id" = String, Path)), responses((status = 200, body = TokenView), Errors))]
pub async fn get_one(
    State(api): State<Api>,
    Path(id): Path<String>,
) -> Result<Response, ClusterError> {
    let state = api.node.state();
    let t = state
        .tokens
        .get(&id)
        .ok_or_else(|| not_found(format!("no API token {id}")))?;
    Ok(Json(TokenView::of(&id, t)).into_response())
}

#[utoipa::path(post, path = "/v1/tokens", tag = "tokens",
    summary = "Create a token; it is shown once",
    request_body(content = NewToken, content_type = "application/json"),
    responses((status = 201, body = CreatedToken), Errors, WriteErrors))]
pub async fn create(
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
        allow_empty: false,
    };
    crate::commit(&api, change).await?;
    let state = api.node.state();
    let view = match state.tokens.get(&entry.id) {
        Some(t) => TokenView::of(&entry.id, t),
        None => {
            return Err(ClusterError::Failed(
                "the new token is not in the state".into(),
            ))
        }
    };
    Ok((StatusCode::CREATED, Json(CreatedToken { view, token })).into_response())
}

#[utoipa::path(delete, path = "/v1/tokens/{id}", tag = "tokens",
    summary = "Revoke a token created through the API",
    params(("id" = String, Path)), responses((status = 200, body = WriteReply), Errors, WriteErrors))]
pub async fn revoke(
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
        allow_empty: false,
    };
    crate::commit(&api, change).await
}
