//! The OpenAPI 3.1 document of the API, generated from the handlers'
//! annotations and the types they read and write (`utoipa`), served at
//! `/v1/openapi.json`.
//!
//! The resource schemas are the zone file's documents
//! (`meridian_config::zone::export`), the very types the API serializes,
//! so the schema cannot drift from the responses.

use std::collections::BTreeMap;

use meridian_config::zone::export::{
    CheckDoc, ClientMatchDoc, CostDoc, EndpointDoc, FenceRuleDoc, GeoDoc, NameServerDoc,
    OnAllDownDoc, PlainOnAllDown, PlainStep, PoolDoc, RecordSetDoc, RegionDoc, SoaDoc, SpecDoc,
    SteeredDoc, StepDoc, WeightedDoc, ZoneDoc,
};
use meridian_config::zone::{AdminState, CheckKind};
use serde::Serialize;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{IntoResponses, Modify, OpenApi, ToSchema};

use crate::apply::{ApplyReply, Diff};
use crate::views::{AuditEntryDoc, AuditPage};
use crate::{resources, tokens, views, WriteReply};

/// Every error: `{"error": {"code", "message", "field"}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// `invalid`, `not_found`, `conflict`, `precondition_failed`,
    /// `payload_too_large`, `unsupported_media_type`, `unauthorized`,
    /// `forbidden`, `unavailable`, `timeout`, `internal`, ...
    pub code: String,
    pub message: String,
    /// The field at fault, as a path into the spec
    /// (`pools.web.endpoints[2].weight`) or a request field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The HTTP status, for errors HTTP itself gave.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// `POST /v1/apply`: every problem of the spec.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Vec<ProblemDoc>>,
}

/// One problem of a spec, as `meridian check` reports it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProblemDoc {
    pub field: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// The errors any request may get.
#[derive(IntoResponses)]
pub enum Errors {
    /// The request is invalid: the field is named.
    #[response(status = 400)]
    Invalid(#[to_schema] ErrorBody),
    /// No credential, or an invalid one.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// The credential's scope does not allow this.
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// No such resource.
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// No leader or no quorum, or too many requests in flight: retry
    /// after `Retry-After` seconds.
    #[response(status = 503, headers(("Retry-After" = u32, description = "seconds")))]
    Unavailable(ErrorBody),
    /// Anything else, with its status.
    #[response(status = "default")]
    Other(ErrorBody),
}

/// What a PUT answers.
#[derive(IntoResponses)]
pub enum Written {
    /// Replaced (or unchanged: a PUT of what is there changes nothing).
    #[response(status = 200, headers(("ETag" = String)))]
    Replaced(#[to_schema] WriteReply),
    /// Created.
    #[response(status = 201, headers(("ETag" = String)))]
    Created(WriteReply),
}

/// What a DELETE answers.
#[derive(IntoResponses)]
pub enum Deleted {
    /// Deleted: the state version after it.
    #[response(status = 200)]
    Deleted(#[to_schema] WriteReply),
}

/// The errors a write may get besides.
#[derive(IntoResponses)]
pub enum WriteErrors {
    /// The change conflicts with the state (a pool still in use).
    #[response(status = 409)]
    Conflict(ErrorBody),
    /// `If-Match` does not match (or `If-None-Match: *` and it exists).
    #[response(status = 412)]
    Precondition(ErrorBody),
    /// The body is larger than the route accepts.
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// The body is not `application/json` (or YAML, for apply).
    #[response(status = 415)]
    Unsupported(ErrorBody),
}

/// `GET /v1/zones`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ZoneList {
    pub zones: BTreeMap<String, ZoneDoc>,
}

/// `GET /v1/pools`.
#[derive(Debug, Serialize, ToSchema)]
pub struct PoolList {
    pub pools: BTreeMap<String, PoolDoc>,
}

/// `GET /v1/regions`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RegionList {
    pub regions: BTreeMap<String, RegionDoc>,
}

/// `GET /v1/zones/{zone}/records`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecordList {
    pub records: Vec<RecordSetDoc>,
}

/// `GET /v1/zones/{zone}/steered`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SteeredList {
    pub steered: Vec<SteeredDoc>,
}

/// `GET /v1/pools/{pool}/endpoints`.
#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointList {
    pub endpoints: Vec<EndpointDoc>,
}

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let c = openapi.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::builder().scheme(HttpAuthScheme::Bearer).description(Some(
                "A token (`mrd_ID_SECRET`) from `meridian token new` or `POST /v1/tokens`, with the read, write or admin scope",
            )).build()),
        );
        c.add_security_scheme(
            "mutual_tls",
            SecurityScheme::MutualTls {
                description: Some(
                    "A client certificate from the cluster's CA with the operator role (all scopes)"
                        .into(),
                ),
                extensions: None,
            },
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Meridian",
        description = "The REST API of a Meridian cluster: zones, record sets, steered records, pools, endpoints, health checks, probe regions and tokens, in the zone file's schema. Every write is one Raft command, checked against the whole state, audited; resources carry an ETag and writes take If-Match.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        resources::list_zones, resources::get_zone, resources::put_zone, resources::delete_zone,
        resources::list_records, resources::get_record, resources::put_record, resources::delete_record,
        resources::list_steered, resources::get_steered, resources::put_steered, resources::delete_steered,
        resources::list_pools, resources::get_pool, resources::put_pool, resources::delete_pool,
        resources::list_endpoints, resources::get_endpoint, resources::put_endpoint,
        resources::delete_endpoint, resources::patch_endpoint,
        resources::get_check, resources::put_check, resources::delete_check,
        resources::list_regions, resources::get_region, resources::put_region, resources::delete_region,
        crate::apply::get_spec, crate::apply::apply,
        views::health, views::explain, views::cluster, views::audit,
        tokens::list, tokens::get_one, tokens::create, tokens::revoke,
        openapi_json,
    ),
    components(schemas(
        SpecDoc, ZoneDoc, SoaDoc, NameServerDoc, RecordSetDoc, SteeredDoc, StepDoc, PlainStep,
        WeightedDoc, FenceRuleDoc, ClientMatchDoc, GeoDoc, CostDoc, OnAllDownDoc, PlainOnAllDown,
        PoolDoc, EndpointDoc, CheckDoc, RegionDoc, AdminState, CheckKind,
        ErrorBody, ErrorDetail, ProblemDoc, WriteReply, ApplyReply, Diff, AuditPage, AuditEntryDoc,
        ZoneList, PoolList, RegionList, RecordList, SteeredList, EndpointList,
        resources::EndpointPatch, tokens::NewToken, tokens::TokenView, tokens::TokenList,
        tokens::CreatedToken,
    )),
    modifiers(&Security),
    security(("bearer" = []), ("mutual_tls" = [])),
    tags(
        (name = "zones", description = "Zones, their static record sets and steered records"),
        (name = "pools", description = "Pools, their endpoints and health checks"),
        (name = "regions", description = "Probe regions"),
        (name = "spec", description = "The whole spec at once"),
        (name = "views", description = "Health, explain, cluster and audit"),
        (name = "tokens", description = "API tokens (admin)"),
    ),
)]
pub struct ApiDoc;

/// This document.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "spec",
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object), Errors))]
pub async fn openapi_json() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(ApiDoc::openapi())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_openapi_3_1_and_covers_every_route() {
        let doc = serde_json::to_value(ApiDoc::openapi()).expect("serializes");
        assert_eq!(doc["openapi"], "3.1.0");
        let paths = doc["paths"].as_object().expect("paths");
        for p in [
            "/v1/zones/{zone}/records/{name}/{rtype}",
            "/v1/pools/{pool}/endpoints/{id}",
            "/v1/apply",
            "/v1/tokens/{id}",
            "/v1/audit",
        ] {
            assert!(paths.contains_key(p), "{p} documented");
        }
        // each operation says how it is authorized and what errors it gives
        for (path, item) in paths {
            for (method, op) in item.as_object().expect("an item") {
                let responses = op["responses"].as_object().expect("responses");
                assert!(
                    responses.contains_key("default"),
                    "{method} {path}: default"
                );
                assert!(responses.contains_key("401"), "{method} {path}: 401");
            }
        }
        assert!(doc["components"]["securitySchemes"]["mutual_tls"].is_object());
    }
}
