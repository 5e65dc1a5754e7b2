//! CRUD on the spec's resources, in the zone file's schema:
//!
//! | path | resource |
//! |---|---|
//! | `/v1/zones/{zone}` | a zone with its records and steered records |
//! | `/v1/zones/{zone}/records/{name}/{type}` | a static record set |
//! | `/v1/zones/{zone}/steered/{name}/{type}` | a steered record |
//! | `/v1/pools/{pool}` | a pool with its endpoints and check |
//! | `/v1/pools/{pool}/endpoints/{id}` | one endpoint (`PATCH`: weight, priority, state) |
//! | `/v1/pools/{pool}/check` | a pool's health check |
//! | `/v1/regions/{region}` | a probe region |
//!
//! Names in paths are relative to the zone (`www`, `@`) or absolute
//! (`www.example.com.`). A `PUT` body is the resource as the file writes
//! it; the node puts it into the whole spec and validates that, so an
//! error names the field as `meridian check` would
//! (`pools.web.endpoints[2].weight`).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use axum::routing::{get, put};
use axum::{Extension, Router};
use meridian_config::zone::export::{export, from_json};
use meridian_config::zone::{AdminState, RecordType, SteeredType};
use meridian_config::{DomainName, ZoneSpec};
use meridian_consensus::auth::Principal;
use meridian_consensus::resources::{Change, Op, Resource, Target};
use meridian_consensus::ClusterError;
use serde_json::{json, Value};

use meridian_config::zone::export::{
    CheckDoc, EndpointDoc, PoolDoc, RecordSetDoc, RegionDoc, SteeredDoc, ZoneDoc,
};

use crate::openapi::{
    Deleted, EndpointList, Errors, PoolList, RecordList, RegionList, SteeredList, WriteErrors,
    Written, ZoneList,
};
use crate::{
    audit, blocking, commit, exported, invalid, json_body, not_found, precondition, read_target,
    tagged, tagged_with, zone_of, Api, WriteReply,
};

/// `{zone}` in a path.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct ZonePath {
    /// The zone, e.g. `example.com`.
    zone: String,
}

/// `{zone}/…/{name}/{rtype}` in a path.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct NamePath {
    /// The zone, e.g. `example.com`.
    zone: String,
    /// `@`, relative to the zone, or absolute with the final dot.
    name: String,
    /// The record type: A, AAAA, CNAME, MX, TXT, CAA, SRV, NS.
    rtype: String,
}

/// `{pool}` in a path.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct PoolPath {
    pool: String,
}

/// `{pool}/endpoints/{id}` in a path.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct EndpointPath {
    pool: String,
    /// The endpoint id.
    id: String,
}

/// `{region}` in a path.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct RegionPath {
    region: String,
}

/// The preconditions a write takes.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct Preconditions {
    /// Apply only if the resource's ETag is one of these (or `*`).
    #[param(rename = "If-Match")]
    if_match: Option<String>,
    /// `*`: create only, never replace.
    #[param(rename = "If-None-Match")]
    if_none_match: Option<String>,
}

/// The `GET` routes.
pub fn read_routes() -> Router<Api> {
    Router::new()
        .route("/v1/zones", get(list_zones))
        .route("/v1/zones/{zone}", get(get_zone))
        .route("/v1/zones/{zone}/records", get(list_records))
        .route("/v1/zones/{zone}/records/{name}/{rtype}", get(get_record))
        .route("/v1/zones/{zone}/steered", get(list_steered))
        .route("/v1/zones/{zone}/steered/{name}/{rtype}", get(get_steered))
        .route("/v1/pools", get(list_pools))
        .route("/v1/pools/{pool}", get(get_pool))
        .route("/v1/pools/{pool}/endpoints", get(list_endpoints))
        .route("/v1/pools/{pool}/endpoints/{id}", get(get_endpoint))
        .route("/v1/pools/{pool}/check", get(get_check))
        .route("/v1/regions", get(list_regions))
        .route("/v1/regions/{region}", get(get_region))
}

/// The `PUT`, `PATCH` and `DELETE` routes.
pub fn write_routes() -> Router<Api> {
    Router::new()
        .route("/v1/zones/{zone}", put(put_zone).delete(delete_zone))
        .route(
            "/v1/zones/{zone}/records/{name}/{rtype}",
            put(put_record).delete(delete_record),
        )
        .route(
            "/v1/zones/{zone}/steered/{name}/{rtype}",
            put(put_steered).delete(delete_steered),
        )
        .route("/v1/pools/{pool}", put(put_pool).delete(delete_pool))
        .route(
            "/v1/pools/{pool}/endpoints/{id}",
            put(put_endpoint)
                .delete(delete_endpoint)
                .patch(patch_endpoint),
        )
        .route(
            "/v1/pools/{pool}/check",
            put(put_check).delete(delete_check),
        )
        .route(
            "/v1/regions/{region}",
            put(put_region).delete(delete_region),
        )
}

// --- targets from paths ---

fn zone_name(text: &str) -> Result<DomainName, ClusterError> {
    let full = if text.ends_with('.') {
        text.to_string()
    } else {
        format!("{text}.")
    };
    DomainName::parse(&full).map_err(|e| invalid(Some("zone"), format!("zone {text:?}: {e}")))
}

/// A name in a zone: `@`, relative or absolute.
fn owner(text: &str, zone: &DomainName) -> Result<DomainName, ClusterError> {
    let full = if text == "@" {
        zone.to_string()
    } else if text.ends_with('.') {
        text.to_string()
    } else {
        format!("{text}.{zone}")
    };
    match DomainName::parse(&full) {
        Ok(n) if n.is_within(zone) => Ok(n),
        Ok(n) => Err(invalid(
            Some("name"),
            format!("{n} is outside the zone {zone}"),
        )),
        Err(e) => Err(invalid(Some("name"), format!("name {text:?}: {e}"))),
    }
}

fn record_type<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, ClusterError> {
    serde_json::from_value(json!(text.to_ascii_uppercase())).map_err(|_| {
        invalid(
            Some("type"),
            format!("unknown or unsupported type {text:?}"),
        )
    })
}

fn record_target(zone: &str, name: &str, rtype: &str) -> Result<Target, ClusterError> {
    let zone = zone_name(zone)?;
    let name = owner(name, &zone)?;
    let rtype: RecordType = record_type(rtype)?;
    Ok(Target::RecordSet { zone, name, rtype })
}

fn steered_target(zone: &str, name: &str, rtype: &str) -> Result<Target, ClusterError> {
    let zone = zone_name(zone)?;
    let name = owner(name, &zone)?;
    let rtype: SteeredType = record_type(rtype)?;
    Ok(Target::Steered { zone, name, rtype })
}

// --- reads ---

async fn found(api: &Api, target: Target) -> Result<Response, ClusterError> {
    let missing = || not_found(format!("no {target}"));
    // a zone may be large: from the export of this version
    if let Target::Zone { zone } = &target {
        let e = exported(api).await?;
        let zone = zone.clone();
        let v = blocking(move || Ok(zone_of(&e.value, &zone))).await?;
        return match v {
            Some(v) => tagged_with(move || Ok(v)).await,
            None => Err(missing()),
        };
    }
    read_target(&api.node.state(), &target)
        .map(tagged)
        .ok_or_else(missing)
}

/// `{key: …}` of the exported spec (`zones`, `pools`, `regions`).
async fn section(api: &Api, key: &'static str) -> Result<Response, ClusterError> {
    let e = exported(api).await?;
    tagged_with(move || Ok(json!({ key: e.value[key] }))).await
}

#[utoipa::path(get, path = "/v1/zones", tag = "zones", summary = "Every zone",
    responses((status = 200, body = ZoneList, headers(("ETag" = String))), Errors))]
pub async fn list_zones(State(api): State<Api>) -> Result<Response, ClusterError> {
    section(&api, "zones").await
}

#[utoipa::path(get, path = "/v1/pools", tag = "pools", summary = "Every pool",
    responses((status = 200, body = PoolList, headers(("ETag" = String))), Errors))]
pub async fn list_pools(State(api): State<Api>) -> Result<Response, ClusterError> {
    section(&api, "pools").await
}

#[utoipa::path(get, path = "/v1/regions", tag = "regions", summary = "Every probe region",
    responses((status = 200, body = RegionList, headers(("ETag" = String))), Errors))]
pub async fn list_regions(State(api): State<Api>) -> Result<Response, ClusterError> {
    section(&api, "regions").await
}

/// A list inside a resource (`records` of a zone, `endpoints` of a pool).
async fn inner_list(
    api: &Api,
    parent: Target,
    key: &'static str,
) -> Result<Response, ClusterError> {
    let missing = || not_found(format!("no {parent}"));
    if let Target::Zone { zone } = &parent {
        let e = exported(api).await?;
        let zone = zone.clone();
        let v = blocking(move || Ok(zone_of(&e.value, &zone))).await?;
        let v = v.ok_or_else(missing)?;
        return tagged_with(move || Ok(json!({ key: v[key] }))).await;
    }
    let v = read_target(&api.node.state(), &parent).ok_or_else(missing)?;
    Ok(tagged(json!({ key: v[key] })))
}

#[utoipa::path(get, path = "/v1/zones/{zone}", tag = "zones", summary = "One zone",
    params(ZonePath),
    responses((status = 200, body = ZoneDoc, headers(("ETag" = String))), Errors))]
pub async fn get_zone(
    State(api): State<Api>,
    Path(zone): Path<String>,
) -> Result<Response, ClusterError> {
    found(
        &api,
        Target::Zone {
            zone: zone_name(&zone)?,
        },
    )
    .await
}

#[utoipa::path(get, path = "/v1/zones/{zone}/records", tag = "zones", summary = "A zone's static record sets",
    params(ZonePath),
    responses((status = 200, body = RecordList, headers(("ETag" = String))), Errors))]
pub async fn list_records(
    State(api): State<Api>,
    Path(zone): Path<String>,
) -> Result<Response, ClusterError> {
    inner_list(
        &api,
        Target::Zone {
            zone: zone_name(&zone)?,
        },
        "records",
    )
    .await
}

#[utoipa::path(get, path = "/v1/zones/{zone}/steered", tag = "zones", summary = "A zone's steered records",
    params(ZonePath),
    responses((status = 200, body = SteeredList, headers(("ETag" = String))), Errors))]
pub async fn list_steered(
    State(api): State<Api>,
    Path(zone): Path<String>,
) -> Result<Response, ClusterError> {
    inner_list(
        &api,
        Target::Zone {
            zone: zone_name(&zone)?,
        },
        "steered",
    )
    .await
}

#[utoipa::path(get, path = "/v1/zones/{zone}/records/{name}/{rtype}", tag = "zones", summary = "One static record set",
    params(NamePath),
    responses((status = 200, body = RecordSetDoc, headers(("ETag" = String))), Errors))]
pub async fn get_record(
    State(api): State<Api>,
    Path((zone, name, rtype)): Path<(String, String, String)>,
) -> Result<Response, ClusterError> {
    found(&api, record_target(&zone, &name, &rtype)?).await
}

#[utoipa::path(get, path = "/v1/zones/{zone}/steered/{name}/{rtype}", tag = "zones", summary = "One steered record",
    params(NamePath),
    responses((status = 200, body = SteeredDoc, headers(("ETag" = String))), Errors))]
pub async fn get_steered(
    State(api): State<Api>,
    Path((zone, name, rtype)): Path<(String, String, String)>,
) -> Result<Response, ClusterError> {
    found(&api, steered_target(&zone, &name, &rtype)?).await
}

#[utoipa::path(get, path = "/v1/pools/{pool}", tag = "pools", summary = "One pool",
    params(PoolPath),
    responses((status = 200, body = PoolDoc, headers(("ETag" = String))), Errors))]
pub async fn get_pool(
    State(api): State<Api>,
    Path(pool): Path<String>,
) -> Result<Response, ClusterError> {
    found(&api, Target::Pool { pool }).await
}

#[utoipa::path(get, path = "/v1/pools/{pool}/endpoints", tag = "pools", summary = "A pool's endpoints",
    params(PoolPath),
    responses((status = 200, body = EndpointList, headers(("ETag" = String))), Errors))]
pub async fn list_endpoints(
    State(api): State<Api>,
    Path(pool): Path<String>,
) -> Result<Response, ClusterError> {
    inner_list(&api, Target::Pool { pool }, "endpoints").await
}

#[utoipa::path(get, path = "/v1/pools/{pool}/endpoints/{id}", tag = "pools", summary = "One endpoint",
    params(EndpointPath),
    responses((status = 200, body = EndpointDoc, headers(("ETag" = String))), Errors))]
pub async fn get_endpoint(
    State(api): State<Api>,
    Path((pool, id)): Path<(String, String)>,
) -> Result<Response, ClusterError> {
    found(&api, Target::Endpoint { pool, id }).await
}

#[utoipa::path(get, path = "/v1/pools/{pool}/check", tag = "pools", summary = "A pool's health check",
    params(PoolPath),
    responses((status = 200, body = CheckDoc, headers(("ETag" = String))), Errors))]
pub async fn get_check(
    State(api): State<Api>,
    Path(pool): Path<String>,
) -> Result<Response, ClusterError> {
    found(&api, Target::Check { pool }).await
}

#[utoipa::path(get, path = "/v1/regions/{region}", tag = "regions", summary = "One probe region",
    params(RegionPath),
    responses((status = 200, body = RegionDoc, headers(("ETag" = String))), Errors))]
pub async fn get_region(
    State(api): State<Api>,
    Path(region): Path<String>,
) -> Result<Response, ClusterError> {
    found(&api, Target::Region { region }).await
}

// --- writes ---

/// The request as the audit log names it.
fn action(method: &Method, uri: &Uri) -> String {
    let path = uri.path();
    let shown: String = path.chars().take(512).collect();
    format!("{method} {shown}")
}

/// One write request's parts.
struct Write {
    api: Api,
    principal: Principal,
    headers: HeaderMap,
    action: String,
}

impl Write {
    async fn commit(self, target: Target, op: Op) -> Result<Response, ClusterError> {
        let change = Change {
            target,
            op,
            precondition: precondition(&self.headers)?,
            audit: audit(&self.principal, self.action),
            at_ms: 0,
            allow_empty: false,
        };
        commit(&self.api, change).await
    }

    /// Puts `body` (the file's schema) at `target` in the whole spec,
    /// validates the whole, and commits the typed resource.
    async fn put(self, target: Target, body: Bytes) -> Result<Response, ClusterError> {
        let body = json_body(&self.headers, &body)?;
        let state = self.api.node.state();
        let max = self.api.max_spec_bytes;
        let at = target.clone();
        // the whole spec is exported and validated: off the async threads
        let resource = tokio::task::spawn_blocking(move || {
            let spec = merged(&state.spec, &at, body, max)?;
            typed(&spec, &at)
        })
        .await
        .map_err(|e| ClusterError::Failed(format!("validating the spec: {e}")))??;
        self.commit(target, Op::Put(resource)).await
    }

    async fn delete(self, target: Target) -> Result<Response, ClusterError> {
        self.commit(target, Op::Delete).await
    }
}

/// The spec with `body` put at `target`, validated whole; at most `max`
/// bytes of JSON, so that it can be read and applied back.
fn merged(
    spec: &ZoneSpec,
    target: &Target,
    body: Value,
    max: usize,
) -> Result<ZoneSpec, ClusterError> {
    if !body.is_object() {
        return Err(invalid(None, "the body must be a JSON object"));
    }
    let mut whole = export(spec);
    splice(&mut whole, target, body)?;
    let size = serde_json::to_vec(&whole).map_or(usize::MAX, |v| v.len());
    if size > max {
        return Err(ClusterError::TooLarge(format!(
            "the spec would be {size} bytes, over the {max} a spec may be \
             (cluster.api.max_apply_bytes)"
        )));
    }
    from_json(&whole).map_err(|v| {
        let field = v.0.first().map(|x| x.path.clone());
        invalid(field.as_deref(), v.to_string())
    })
}

/// The key a zone has in the exported spec, if the zone exists.
fn zone_key(whole: &Value, zone: &DomainName) -> Option<String> {
    whole["zones"]
        .as_object()?
        .keys()
        .find(|k| DomainName::parse(k).is_ok_and(|n| n.key() == zone.key()))
        .cloned()
}

/// A field the path already names: absent, or the same.
fn agrees(
    body: &mut Value,
    key: &str,
    want: &str,
    same: impl Fn(&str) -> bool,
) -> Result<(), ClusterError> {
    match body.get(key) {
        None => {}
        Some(Value::String(s)) if same(s) => {}
        Some(other) => {
            return Err(invalid(
                Some(key),
                format!("the path says {key} {want:?}, the body says {other}"),
            ))
        }
    }
    body[key] = json!(want);
    Ok(())
}

/// Puts a record set or a steered record (`list` of the zone) by name
/// and type.
fn splice_named(
    whole: &mut Value,
    zone: &DomainName,
    name: &DomainName,
    list: &str,
    type_name: &str,
    mut body: Value,
) -> Result<(), ClusterError> {
    let zk = zone_key(whole, zone).ok_or_else(|| not_found(format!("no zone {zone}")))?;
    agrees(&mut body, "name", name.as_str(), |s| {
        owner(s, zone).is_ok_and(|n| n.key() == name.key())
    })?;
    agrees(&mut body, "type", type_name, |s| {
        s.eq_ignore_ascii_case(type_name)
    })?;
    let list = whole["zones"][&zk][list].as_array_mut().expect("a list");
    let at = list.iter().position(|r| {
        r["type"] == json!(type_name)
            && r["name"]
                .as_str()
                .and_then(|n| DomainName::parse(n).ok())
                .is_some_and(|n| n.key() == name.key())
    });
    match at {
        // an existing record keeps its name as it is spelled
        Some(i) => {
            body["name"] = list[i]["name"].clone();
            list[i] = body;
        }
        None => list.push(body),
    }
    Ok(())
}

fn splice(whole: &mut Value, target: &Target, mut body: Value) -> Result<(), ClusterError> {
    match target {
        // an existing zone keeps its name as it is spelled
        Target::Zone { zone } => {
            let key = zone_key(whole, zone).unwrap_or_else(|| zone.to_string());
            whole["zones"][key] = body;
        }
        Target::RecordSet { zone, name, rtype } => {
            splice_named(whole, zone, name, "records", rtype.as_str(), body)?
        }
        Target::Steered { zone, name, rtype } => splice_named(
            whole,
            zone,
            name,
            "steered",
            rtype.as_record_type().as_str(),
            body,
        )?,
        Target::Pool { pool } => whole["pools"][pool] = body,
        Target::Endpoint { pool, id } => {
            if whole["pools"].get(pool).is_none() {
                return Err(not_found(format!("no pool {pool}")));
            }
            agrees(&mut body, "id", id, |s| s == id)?;
            let list = whole["pools"][pool]["endpoints"]
                .as_array_mut()
                .expect("a list");
            match list.iter().position(|e| e["id"] == json!(id)) {
                Some(i) => list[i] = body,
                None => list.push(body),
            }
        }
        Target::Check { pool } => {
            if whole["pools"].get(pool).is_none() {
                return Err(not_found(format!("no pool {pool}")));
            }
            whole["pools"][pool]["check"] = body;
        }
        Target::Region { region } => whole["regions"][region] = body,
        Target::Spec | Target::Token { .. } => {
            return Err(invalid(None, "not a resource of the spec"))
        }
    }
    Ok(())
}

/// The typed resource at `target` in a validated spec.
fn typed(spec: &ZoneSpec, target: &Target) -> Result<Resource, ClusterError> {
    let zone = |z: &DomainName| spec.zones.iter().find(|x| x.name.key() == z.key());
    let lost = || ClusterError::Failed(format!("the {target} is not in the validated spec"));
    Ok(match target {
        Target::Zone { zone: z } => Resource::Zone(Box::new(zone(z).ok_or_else(lost)?.clone())),
        Target::RecordSet {
            zone: z,
            name,
            rtype,
        } => Resource::RecordSet(
            zone(z)
                .and_then(|z| {
                    z.records
                        .iter()
                        .find(|r| r.rtype == *rtype && r.name.key() == name.key())
                })
                .ok_or_else(lost)?
                .clone(),
        ),
        Target::Steered {
            zone: z,
            name,
            rtype,
        } => Resource::Steered(
            zone(z)
                .and_then(|z| {
                    z.steered
                        .iter()
                        .find(|r| r.rtype == *rtype && r.name.key() == name.key())
                })
                .ok_or_else(lost)?
                .clone(),
        ),
        Target::Pool { pool } => {
            Resource::Pool(Box::new(spec.pools.get(pool).ok_or_else(lost)?.clone()))
        }
        Target::Endpoint { pool, id } => Resource::Endpoint(Box::new(
            spec.pools
                .get(pool)
                .and_then(|p| p.endpoints.iter().find(|e| e.id == *id))
                .ok_or_else(lost)?
                .clone(),
        )),
        Target::Check { pool } => Resource::Check(
            spec.pools
                .get(pool)
                .ok_or_else(lost)?
                .check
                .clone()
                .map(Box::new),
        ),
        Target::Region { region } => Resource::Region(
            spec.regions
                .iter()
                .find(|r| r.name == *region)
                .ok_or_else(lost)?
                .clone(),
        ),
        Target::Spec => Resource::Spec(Box::new(spec.clone())),
        Target::Token { .. } => return Err(lost()),
    })
}

/// Extracts what every write needs; the body comes last.
macro_rules! write_handler {
    ($(#[$m:meta])* $name:ident, $params:ty, |$p:ident| $target:expr, put) => {
        $(#[$m])*
        pub async fn $name(
            State(api): State<Api>,
            Extension(principal): Extension<Principal>,
            method: Method,
            uri: Uri,
            headers: HeaderMap,
            Path($p): Path<$params>,
            body: Bytes,
        ) -> Result<Response, ClusterError> {
            let target = $target;
            let w = Write {
                api,
                principal,
                headers,
                action: action(&method, &uri),
            };
            w.put(target, body).await
        }
    };
    ($(#[$m:meta])* $name:ident, $params:ty, |$p:ident| $target:expr, delete) => {
        $(#[$m])*
        pub async fn $name(
            State(api): State<Api>,
            Extension(principal): Extension<Principal>,
            method: Method,
            uri: Uri,
            headers: HeaderMap,
            Path($p): Path<$params>,
        ) -> Result<Response, ClusterError> {
            let target = $target;
            let w = Write {
                api,
                principal,
                headers,
                action: action(&method, &uri),
            };
            w.delete(target).await
        }
    };
}

write_handler!(
    #[utoipa::path(put, path = "/v1/zones/{zone}", tag = "zones", summary = "Create or replace a zone with its records",
        params(ZonePath, Preconditions),
        request_body(content = ZoneDoc, content_type = "application/json"), responses(Written, Errors, WriteErrors))]
    put_zone,
    String,
    |z| Target::Zone {
        zone: zone_name(&z)?
    },
    put
);
write_handler!(
    #[utoipa::path(
        delete,
        path = "/v1/zones/{zone}",
        tag = "zones",
        summary = "Delete a zone",
        params(ZonePath, Preconditions),
        responses(Deleted, Errors, WriteErrors)
    )]
    delete_zone,
    String,
    |z| Target::Zone {
        zone: zone_name(&z)?
    },
    delete
);
write_handler!(
    #[utoipa::path(put, path = "/v1/zones/{zone}/records/{name}/{rtype}", tag = "zones", summary = "Create or replace a static record set",
        params(NamePath, Preconditions),
        request_body(content = RecordSetDoc, content_type = "application/json"), responses(Written, Errors, WriteErrors))]
    put_record,
    (String, String, String),
    |p| record_target(&p.0, &p.1, &p.2)?,
    put
);
write_handler!(
    #[utoipa::path(
        delete,
        path = "/v1/zones/{zone}/records/{name}/{rtype}",
        tag = "zones",
        summary = "Delete a static record set",
        params(NamePath, Preconditions),
        responses(Deleted, Errors, WriteErrors)
    )]
    delete_record,
    (String, String, String),
    |p| record_target(&p.0, &p.1, &p.2)?,
    delete
);
write_handler!(
    #[utoipa::path(put, path = "/v1/zones/{zone}/steered/{name}/{rtype}", tag = "zones", summary = "Create or replace a steered record",
        params(NamePath, Preconditions),
        request_body(content = SteeredDoc, content_type = "application/json"), responses(Written, Errors, WriteErrors))]
    put_steered,
    (String, String, String),
    |p| steered_target(&p.0, &p.1, &p.2)?,
    put
);
write_handler!(
    #[utoipa::path(
        delete,
        path = "/v1/zones/{zone}/steered/{name}/{rtype}",
        tag = "zones",
        summary = "Delete a steered record",
        params(NamePath, Preconditions),
        responses(Deleted, Errors, WriteErrors)
    )]
    delete_steered,
    (String, String, String),
    |p| steered_target(&p.0, &p.1, &p.2)?,
    delete
);
write_handler!(
    #[utoipa::path(put, path = "/v1/pools/{pool}", tag = "pools", summary = "Create or replace a pool",
        params(PoolPath, Preconditions),
        request_body(content = PoolDoc, content_type = "application/json"), responses(Written, Errors, WriteErrors))]
    put_pool,
    String,
    |pool| Target::Pool { pool },
    put
);
write_handler!(
    #[utoipa::path(
        delete,
        path = "/v1/pools/{pool}",
        tag = "pools",
        summary = "Delete a pool no record uses",
        params(PoolPath, Preconditions),
        responses(Deleted, Errors, WriteErrors)
    )]
    delete_pool,
    String,
    |pool| Target::Pool { pool },
    delete
);
write_handler!(
    #[utoipa::path(put, path = "/v1/pools/{pool}/endpoints/{id}", tag = "pools", summary = "Create or replace one endpoint",
        params(EndpointPath, Preconditions),
        request_body(content = EndpointDoc, content_type = "application/json"), responses(Written, Errors, WriteErrors))]
    put_endpoint,
    (String, String),
    |p| Target::Endpoint { pool: p.0, id: p.1 },
    put
);
write_handler!(
    #[utoipa::path(
        delete,
        path = "/v1/pools/{pool}/endpoints/{id}",
        tag = "pools",
        summary = "Delete one endpoint",
        params(EndpointPath, Preconditions),
        responses(Deleted, Errors, WriteErrors)
    )]
    delete_endpoint,
    (String, String),
    |p| Target::Endpoint { pool: p.0, id: p.1 },
    delete
);
write_handler!(
    #[utoipa::path(put, path = "/v1/pools/{pool}/check", tag = "pools", summary = "Set a pool's health check",
        params(PoolPath, Preconditions),
        request_body(content = CheckDoc, content_type = "application/json"), responses(Written, Errors, WriteErrors))]
    put_check,
    String,
    |pool| Target::Check { pool },
    put
);
write_handler!(
    #[utoipa::path(
        delete,
        path = "/v1/pools/{pool}/check",
        tag = "pools",
        summary = "Remove a pool's health check",
        params(PoolPath, Preconditions),
        responses(Deleted, Errors, WriteErrors)
    )]
    delete_check,
    String,
    |pool| Target::Check { pool },
    delete
);
write_handler!(
    #[utoipa::path(put, path = "/v1/regions/{region}", tag = "regions", summary = "Create or replace a probe region",
        params(RegionPath, Preconditions),
        request_body(content = RegionDoc, content_type = "application/json"), responses(Written, Errors, WriteErrors))]
    put_region,
    String,
    |region| Target::Region { region },
    put
);
write_handler!(
    #[utoipa::path(
        delete,
        path = "/v1/regions/{region}",
        tag = "regions",
        summary = "Delete a probe region nothing uses",
        params(RegionPath, Preconditions),
        responses(Deleted, Errors, WriteErrors)
    )]
    delete_region,
    String,
    |region| Target::Region { region },
    delete
);

/// `PATCH /v1/pools/{pool}/endpoints/{id}`: the fields operators change
/// in operation, without resending the pool.
#[derive(Debug, utoipa::ToSchema)]
pub struct EndpointPatch {
    #[schema(minimum = 0, maximum = 65535)]
    pub weight: Option<u16>,
    pub priority: Option<u16>,
    pub state: Option<AdminState>,
}

/// Reads a patch field by field, so an error names its field.
fn endpoint_patch(value: Value) -> Result<EndpointPatch, ClusterError> {
    let Value::Object(map) = value else {
        return Err(invalid(None, "the body must be a JSON object"));
    };
    let mut patch = EndpointPatch {
        weight: None,
        priority: None,
        state: None,
    };
    let number = |k: &str, v: &Value| {
        v.as_u64()
            .and_then(|n| u16::try_from(n).ok())
            .ok_or_else(|| {
                invalid(
                    Some(k),
                    format!("{k}: expected an integer 0..=65535, got {v}"),
                )
            })
    };
    for (k, v) in &map {
        match k.as_str() {
            "weight" => patch.weight = Some(number(k, v)?),
            "priority" => patch.priority = Some(number(k, v)?),
            "state" => {
                patch.state = Some(serde_json::from_value(v.clone()).map_err(|_| {
                    invalid(
                        Some("state"),
                        format!("state: expected enabled, drained or disabled, got {v}"),
                    )
                })?)
            }
            other => {
                return Err(invalid(
                    Some(other),
                    format!("unknown field {other:?}: a patch sets weight, priority or state"),
                ))
            }
        }
    }
    Ok(patch)
}

#[utoipa::path(patch, path = "/v1/pools/{pool}/endpoints/{id}", tag = "pools",
    summary = "Set an endpoint's weight, priority or admin state",
    params(EndpointPath, Preconditions),
    request_body(content = EndpointPatch, content_type = "application/json"),
    responses((status = 200, body = WriteReply), Errors, WriteErrors))]
pub async fn patch_endpoint(
    State(api): State<Api>,
    Extension(principal): Extension<Principal>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path((pool, id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ClusterError> {
    let value = json_body(&headers, &body)?;
    let patch = endpoint_patch(value)?;
    if patch.weight.is_none() && patch.priority.is_none() && patch.state.is_none() {
        return Err(invalid(
            None,
            "nothing to change: give weight, priority or state",
        ));
    }
    let w = Write {
        api,
        principal,
        headers,
        action: action(&method, &uri),
    };
    w.commit(
        Target::Endpoint { pool, id },
        Op::PatchEndpoint {
            weight: patch.weight,
            priority: patch.priority,
            state: patch.state,
        },
    )
    .await
}
