//! The status page: `/` is a page of plain HTML with a little JavaScript
//! (no build step) that reads `/status.json` every two seconds with a
//! `read` token and draws the cluster, each pool as a region × endpoint
//! matrix, recent health changes and each steered record's answer shares.
//!
//! The page itself holds no data and is served to anyone; everything it
//! shows comes from `/status.json`, behind the token. The token is typed
//! into the page once and kept in the tab's session storage; it never
//! goes in a URL.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use meridian_consensus::auth::{Need, Scope};
use meridian_dns::stats;
use serde::Serialize;

use crate::metrics::Sources;

/// `/` (open) and `/status.json` (the `read` scope of `creds`).
pub fn routes(
    sources: Sources,
    creds: std::sync::Arc<meridian_consensus::auth::Credentials>,
) -> Router {
    let data = Router::new().route("/status.json", get(status_route));
    let data = meridian_consensus::http::guarded(data, &creds, Need::Scope(Scope::Read));
    Router::new()
        .route("/", get(page))
        .merge(data)
        .with_state(sources)
}

/// The page's Content-Security-Policy: its one inline script allowed by
/// its SHA-256 (no other script runs, inline or not), inline styles, and
/// fetches to this origin only.
fn policy() -> &'static str {
    static POLICY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    POLICY.get_or_init(|| {
        let script = PAGE
            .split_once("<script>")
            .and_then(|(_, rest)| rest.split_once("</script>"))
            .map_or("", |(s, _)| s);
        let digest = ring::digest::digest(&ring::digest::SHA256, script.as_bytes());
        use base64::Engine as _;
        let hash = base64::engine::general_purpose::STANDARD.encode(digest.as_ref());
        format!(
            "default-src 'none'; script-src 'sha256-{hash}'; style-src 'unsafe-inline'; \
             connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; \
             frame-ancestors 'none'"
        )
    })
}

async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, policy()),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        PAGE,
    )
}

/// What the page shows, as of one moment.
#[derive(Debug, Serialize)]
pub struct StatusView {
    pub node: u64,
    pub role: String,
    pub leader: Option<u64>,
    pub term: u64,
    pub version: u64,
    pub stale_ms: Option<u64>,
    pub members: Vec<MemberView>,
    pub pools: Vec<PoolView>,
    /// Endpoints whose verdict changed, the latest first.
    pub changes: Vec<ChangeView>,
    /// Each steered record's answers so far, by what they led with (the
    /// page takes differences between polls for its shares).
    pub answers: Vec<RecordAnswers>,
    /// The cluster's clock (ms since the Unix epoch).
    pub now_ms: u64,
}

#[derive(Debug, Serialize)]
pub struct MemberView {
    pub id: u64,
    pub addr: String,
    pub voter: bool,
    /// On the leader: log entries it is behind.
    pub lag: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct PoolView {
    pub pool: String,
    /// The probe regions, in the check's order.
    pub regions: Vec<String>,
    pub endpoints: Vec<EndpointRow>,
}

#[derive(Debug, Serialize)]
pub struct EndpointRow {
    pub endpoint: String,
    pub region: String,
    pub up: bool,
    pub in_service: bool,
    /// One cell per probe region: its vote (`None`: none yet), whether
    /// it is fresh, the RTT in ms.
    pub cells: Vec<Cell>,
}

#[derive(Debug, Serialize)]
pub struct Cell {
    pub up: Option<bool>,
    pub fresh: bool,
    pub rtt_ms: Option<f64>,
    pub age_ms: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct ChangeView {
    pub pool: String,
    pub endpoint: String,
    pub up: bool,
    pub at_ms: u64,
}

#[derive(Debug, Serialize)]
pub struct RecordAnswers {
    pub record: String,
    pub rtype: String,
    /// (what it led with, answers so far).
    pub counts: Vec<(String, u64)>,
}

/// The view from `s` now.
pub fn view(s: &Sources) -> StatusView {
    let st = s.cluster.status();
    let state = s.cluster.state();
    let health = state.health.view(&state.spec);
    let last = st.last_log_index.unwrap_or(0);
    let members = st
        .members
        .iter()
        .map(|(id, m)| MemberView {
            id: *id,
            addr: m.addr.clone(),
            voter: m.voter,
            lag: st
                .matched
                .as_ref()
                .and_then(|x| x.get(id))
                .map(|m| last.saturating_sub(m.unwrap_or(0))),
        })
        .collect();
    let regions = crate::metrics::regions_of(&state.spec);
    let mut pools: Vec<PoolView> = Vec::new();
    for e in &health.endpoints {
        if pools.last().is_none_or(|p| p.pool != e.pool) {
            pools.push(PoolView {
                pool: e.pool.clone(),
                regions: e.regions.iter().map(|r| r.region.clone()).collect(),
                endpoints: Vec::new(),
            });
        }
        let region = regions
            .get(&(e.pool.as_str(), e.endpoint.as_str()))
            .map_or(String::new(), |r| r.to_string());
        let cells = e
            .regions
            .iter()
            .map(|r| Cell {
                up: r.vote.as_ref().map(|v| v.up),
                fresh: r.fresh,
                rtt_ms: r.vote.as_ref().and_then(|v| v.rtt_ms),
                age_ms: r.age_ms,
            })
            .collect();
        if let Some(p) = pools.last_mut() {
            p.endpoints.push(EndpointRow {
                endpoint: e.endpoint.clone(),
                region,
                up: e.up,
                in_service: e.in_service,
                cells,
            });
        }
    }
    let mut changes: Vec<ChangeView> = health
        .endpoints
        .iter()
        .filter_map(|e| {
            e.since_ms.map(|at| ChangeView {
                pool: e.pool.clone(),
                endpoint: e.endpoint.clone(),
                up: e.up,
                at_ms: at,
            })
        })
        .collect();
    changes.sort_by_key(|c| std::cmp::Reverse(c.at_ms));
    changes.truncate(20);
    let totals = stats::totals();
    let answers = crate::metrics::steered_counts(&state.spec, &totals)
        .into_iter()
        .map(|r| RecordAnswers {
            record: r.record.to_string(),
            rtype: r.rtype.to_string(),
            counts: r
                .counts
                .into_iter()
                .map(|(what, _, n)| (what.to_string(), n))
                .collect(),
        })
        .collect();
    StatusView {
        node: st.id,
        role: st.role.clone(),
        leader: st.leader,
        term: st.term,
        version: st.version,
        stale_ms: st.stale_ms,
        members,
        pools,
        changes,
        answers,
        now_ms: health.now_ms,
    }
}

async fn status_route(State(s): State<Sources>) -> impl IntoResponse {
    let cache = s.cache.clone();
    let made = crate::metrics::cached(cache.status(), move || {
        serde_json::to_string(&view(&s)).unwrap_or_default()
    })
    .await;
    match made {
        Some(body) => (
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            body,
        )
            .into_response(),
        None => axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// The page: its script polls `/status.json` and draws what it gets.
const PAGE: &str = include_str!("status.html");
