//! The whole spec at once: `GET /v1/spec` reads it in the file's schema,
//! `POST /v1/apply` replaces it atomically (YAML or JSON, what
//! `meridian check` reads), and `?dry_run=true` shows what would change
//! without changing it.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use meridian_config::zone::export;
use meridian_config::ZoneSpec;
use meridian_consensus::auth::Principal;
use meridian_consensus::resources::{check_tag, etag, Change, Op, Resource, Target};
use meridian_consensus::ClusterError;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::openapi::{Errors, WriteErrors};
use crate::{
    audit, blocking, commit, content_type, exported, json_bytes, precondition, unsupported, Api,
};
use meridian_config::zone::export::SpecDoc;

pub fn read_routes() -> Router<Api> {
    Router::new().route("/v1/spec", get(get_spec))
}

pub fn write_routes() -> Router<Api> {
    Router::new().route("/v1/apply", post(apply))
}

#[utoipa::path(get, path = "/v1/spec", tag = "spec", summary = "The whole spec, in the zone file's schema",
    responses((status = 200, body = SpecDoc, headers(("ETag" = String))), Errors))]
pub async fn get_spec(State(api): State<Api>) -> Result<Response, ClusterError> {
    let e = exported(&api).await?;
    Ok(json_bytes(e.bytes, &e.etag))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ApplyQuery {
    /// Show what would change, change nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Apply a spec without zones over one that has some (every zone
    /// leaves DNS): refused without this, as an empty file or variable
    /// in a pipeline usually is a mistake.
    #[serde(default)]
    pub allow_empty: bool,
}

/// What changed between two specs, object by object.
#[derive(Debug, Default, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Diff {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
}

impl Diff {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }
}

/// Every object of a spec by a stable name, with its file-schema form:
/// zones (without their records), record sets, steered records, pools
/// (without their endpoints), endpoints and regions.
fn objects(spec: &ZoneSpec) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for z in &spec.zones {
        let mut zone = export::zone(z);
        let obj = zone.as_object_mut().expect("an object");
        obj.remove("records");
        obj.remove("steered");
        let zone_key = z.name.key();
        out.insert(format!("zone {zone_key}"), zone);
        for r in &z.records {
            out.insert(
                format!("record {} {} in {zone_key}", r.name.key(), r.rtype.as_str()),
                export::record_set(r),
            );
        }
        for s in &z.steered {
            out.insert(
                format!(
                    "steered {} {} in {zone_key}",
                    s.name.key(),
                    s.rtype.as_record_type().as_str()
                ),
                export::steered(s),
            );
        }
    }
    for (name, p) in &spec.pools {
        let mut pool = export::pool(p);
        pool.as_object_mut().expect("an object").remove("endpoints");
        out.insert(format!("pool {name}"), pool);
        for e in &p.endpoints {
            out.insert(format!("endpoint {name}/{}", e.id), export::endpoint(e));
        }
    }
    for r in &spec.regions {
        out.insert(format!("region {}", r.name), export::region(r));
    }
    out
}

/// The objects added, changed and removed from `old` to `new`.
pub fn diff(old: &ZoneSpec, new: &ZoneSpec) -> Diff {
    let (a, b) = (objects(old), objects(new));
    let mut d = Diff::default();
    for (k, v) in &b {
        match a.get(k) {
            None => d.added.push(k.clone()),
            Some(w) if w != v => d.changed.push(k.clone()),
            Some(_) => {}
        }
    }
    d.removed = a.keys().filter(|k| !b.contains_key(*k)).cloned().collect();
    d
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ApplyReply {
    pub dry_run: bool,
    /// The version the spec is at: after the write, or (dry run) now.
    pub version: u64,
    /// The spec's ETag after the write (dry run: what it would be).
    pub etag: String,
    pub diff: Diff,
}

/// The media types a spec may come in.
const SPEC_TYPES: [&str; 5] = [
    "application/json",
    "application/yaml",
    "application/x-yaml",
    "text/yaml",
    "text/x-yaml",
];

#[utoipa::path(post, path = "/v1/apply", tag = "spec",
    summary = "Replace the whole spec atomically (dry_run: show the diff only)",
    params(ApplyQuery, ("If-Match" = Option<String>, Header, description = "The spec's ETag")),
    request_body(description = "The zone spec, as `meridian check` reads it",
        content((SpecDoc = "application/yaml"), (SpecDoc = "application/json"))),
    responses((status = 200, body = ApplyReply), Errors, WriteErrors))]
#[allow(clippy::too_many_arguments)]
pub async fn apply(
    State(api): State<Api>,
    Extension(principal): Extension<Principal>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    query: Result<Query<ApplyQuery>, axum::extract::rejection::QueryRejection>,
    body: Bytes,
) -> Result<Response, ClusterError> {
    let Query(query) = query.map_err(|e| crate::invalid(None, e.body_text()))?;
    let ct = content_type(&headers);
    if !SPEC_TYPES.contains(&ct.as_str()) {
        return Err(unsupported(&ct, "application/yaml or application/json"));
    }
    if std::str::from_utf8(&body).is_err() {
        return Err(crate::invalid(None, "the spec is not UTF-8"));
    }
    // parsing a spec of megabytes takes a while: off the async threads
    let parsed = tokio::task::spawn_blocking(move || {
        let text = std::str::from_utf8(&body).unwrap_or_default();
        meridian_config::zone::parse("request", text)
    })
    .await
    .map_err(|e| ClusterError::Failed(format!("parsing the spec: {e}")))?;
    let spec = match parsed {
        Ok(s) => s,
        Err(d) => return Ok(diagnostics(&d)),
    };
    let pre = precondition(&headers)?;
    let state = api.node.state();
    let change = Change {
        target: Target::Spec,
        op: Op::Put(Resource::Spec(Box::new(spec.clone()))),
        precondition: pre,
        audit: audit(&principal, format!("{method} {}", uri.path())),
        at_ms: 0,
        allow_empty: query.allow_empty,
    };
    // the diff and the new tag walk both specs: off the async threads
    let (old, new) = (state.clone(), spec);
    let (diff, new_tag) =
        blocking(move || Ok((diff(&old.spec, &new), etag(&export::export(&new))))).await?;
    if query.dry_run {
        let current = exported(&api).await?;
        check_tag(Some(&current.etag), &change.precondition).map_err(ClusterError::Refused)?;
        // this node's whole check: the rules, its address policy, that DNS
        // can index the spec, its size, and that it leaves zones
        let (node, c) = (api.node.clone(), change.clone());
        blocking(move || node.check_change(&c)).await?;
        let reply = ApplyReply {
            dry_run: true,
            version: state.version,
            etag: new_tag,
            diff,
        };
        return Ok(Json(reply).into_response());
    }
    let resp = commit(&api, change).await?;
    let status = resp.status();
    let etag_value = resp
        .headers()
        .get(axum::http::header::ETAG)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let version = api.node.state().version;
    let reply = ApplyReply {
        dry_run: false,
        version,
        etag: etag_value,
        diff,
    };
    let mut out = (
        if status == StatusCode::CREATED {
            StatusCode::OK
        } else {
            status
        },
        Json(reply),
    )
        .into_response();
    if let Some(v) = resp.headers().get(axum::http::header::ETAG) {
        out.headers_mut()
            .insert(axum::http::header::ETAG, v.clone());
    }
    Ok(out)
}

/// The spec's problems as `meridian check` reports them: a 400 whose
/// `field` is the first problem's, with every problem in `details`.
fn diagnostics(d: &meridian_config::Diagnostics) -> Response {
    let details: Vec<Value> = d
        .0
        .iter()
        .map(|x| json!({"field": x.path, "line": x.line, "column": x.column, "message": x.message}))
        .collect();
    let message =
        d.0.iter()
            .map(|x| {
                if x.path.is_empty() {
                    format!("line {}: {}", x.line, x.message)
                } else {
                    format!("line {}: {}: {}", x.line, x.path, x.message)
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
    let body = json!({"error": {
        "code": "invalid",
        "message": message,
        "field": d.0.first().map(|x| x.path.clone()).filter(|p| !p.is_empty()),
        "details": details,
    }});
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}
