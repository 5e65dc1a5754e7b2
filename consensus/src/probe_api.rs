//! The probe API, served beside the cluster API: agents fetch their
//! region's check list (long-polled, so a changed list reaches them at
//! once) and deliver reports, each with a probe-scoped bearer token;
//! `meridian cluster health` reads the verdicts. The same service is the
//! embedded agent's in-process [`Cluster`].

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};
use meridian_probes::health::HealthView;
use meridian_probes::{checks_for, CheckList, Cluster, Report};
use serde::Deserialize;

use crate::node::{ClusterError, ClusterNode, Written};
use crate::state::Command;

/// How long a check-list request waits for a change before answering with
/// the list as it is.
pub const LONG_POLL: Duration = Duration::from_secs(20);

/// Reports may carry many thousands of observations.
const REPORT_LIMIT: usize = 32 * 1024 * 1024;

/// The probe side of a node.
#[derive(Clone)]
pub struct ProbeService {
    node: ClusterNode,
    tokens: Arc<Vec<String>>,
}

#[derive(Deserialize)]
struct ChecksQuery {
    region: String,
    known: Option<u64>,
}

impl ProbeService {
    /// `tokens` are the probe tokens this node accepts over HTTP.
    pub fn new(node: ClusterNode, tokens: Vec<String>) -> ProbeService {
        ProbeService {
            node,
            tokens: Arc::new(tokens),
        }
    }

    pub fn routes(&self) -> Router {
        Router::new()
            .route("/probe/checks", get(checks_route))
            .route("/probe/report", post(report_route))
            .route("/probe/health", get(health_route))
            .layer(DefaultBodyLimit::max(REPORT_LIMIT))
            .with_state(self.clone())
    }

    /// `region`'s check list; when it is still `known`, waits up to
    /// [`LONG_POLL`] for it to change.
    pub async fn check_list(&self, region: &str, known: Option<u64>) -> CheckList {
        let mut states = self.node.subscribe();
        let deadline = tokio::time::Instant::now() + LONG_POLL;
        let (mut list, mut version) = {
            let s = states.borrow_and_update();
            (checks_for(&s.spec, region), s.version)
        };
        loop {
            if known != Some(list.etag) {
                return list;
            }
            match tokio::time::timeout_at(deadline, states.changed()).await {
                Ok(Ok(())) => {
                    // reports apply far more often than the spec changes;
                    // the spec changes only with the version
                    let s = states.borrow_and_update();
                    if s.version != version {
                        version = s.version;
                        list = checks_for(&s.spec, region);
                    }
                }
                _ => return list,
            }
        }
    }

    /// Commits a report, stamped with this node's clock.
    pub async fn deliver(&self, report: Report) -> Result<Written, ClusterError> {
        let at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self.node.write(Command::Observe { at_ms, report }).await
    }

    pub fn health(&self) -> HealthView {
        let s = self.node.state();
        s.health.view(&s.spec)
    }

    fn authorize(&self, headers: &HeaderMap) -> Result<(), ClusterError> {
        if self.tokens.is_empty() {
            return Err(ClusterError::Unauthorized(
                "this node accepts no probe tokens: set probe.tokens in its config".into(),
            ));
        }
        let given = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| {
                ClusterError::Unauthorized(
                    "a probe token is required (Authorization: Bearer)".into(),
                )
            })?;
        // compare against every token, in time independent of where they differ
        let matched = self
            .tokens
            .iter()
            .fold(false, |m, t| m | same(t.as_bytes(), given.as_bytes()));
        if matched {
            Ok(())
        } else {
            Err(ClusterError::Unauthorized(
                "the probe token is not valid".into(),
            ))
        }
    }
}

fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

impl Cluster for ProbeService {
    async fn checks(&self, region: &str, known: Option<u64>) -> Result<CheckList, String> {
        Ok(self.check_list(region, known).await)
    }

    async fn report(&self, report: Report) -> Result<(), String> {
        self.deliver(report)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

async fn checks_route(
    State(svc): State<ProbeService>,
    headers: HeaderMap,
    Query(q): Query<ChecksQuery>,
) -> Result<Json<CheckList>, ClusterError> {
    svc.authorize(&headers)?;
    Ok(Json(svc.check_list(&q.region, q.known).await))
}

async fn report_route(
    State(svc): State<ProbeService>,
    headers: HeaderMap,
    Json(report): Json<Report>,
) -> Result<Json<Written>, ClusterError> {
    svc.authorize(&headers)?;
    svc.deliver(report).await.map(Json)
}

async fn health_route(State(svc): State<ProbeService>) -> Json<HealthView> {
    Json(svc.health())
}
