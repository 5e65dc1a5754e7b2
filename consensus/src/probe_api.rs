//! The probe API, served beside the cluster API: agents fetch their
//! region's check list (long-polled, so a changed list reaches them at
//! once) and deliver reports, each with a probe credential (a `probe`
//! token or an `agent` certificate) bound to the regions it may speak
//! for; `meridian cluster health` reads the verdicts with `read`. The same
//! service is the embedded agent's in-process [`Cluster`].
//!
//! This is the only way observations enter the log: a report is checked
//! here (its region, sizes, finite non-negative times) and stamped by the
//! leader's clock.

use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Extension, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use meridian_probes::health::HealthView;
use meridian_probes::{checks_for, CheckList, Cluster, Report};
use serde::Deserialize;

use crate::auth::{Need, Principal, Scope};
use crate::http;
use crate::node::{ClusterError, ClusterNode, Written};
use crate::state::Command;

/// How long a check-list request waits for a change before answering with
/// the list as it is.
pub const LONG_POLL: Duration = Duration::from_secs(20);

/// The largest report body: agents send at most 2000 observations (about
/// 180 KB) a report; a bigger body is refused with 413 before it can
/// become one Raft entry too large to replicate within a heartbeat.
pub const REPORT_LIMIT: usize = 512 * 1024;

/// The most observations one report may carry.
pub const MAX_OBSERVATIONS: usize = 10_000;

/// The longest error text an observation may carry.
const MAX_ERROR_LEN: usize = 512;

/// The largest time an observation may report, in ms: an hour.
const MAX_MS: f64 = 3_600_000.0;

/// The probe side of a node.
#[derive(Clone)]
pub struct ProbeService {
    node: ClusterNode,
}

#[derive(Deserialize)]
struct ChecksQuery {
    region: String,
    known: Option<u64>,
}

impl ProbeService {
    /// The probe API of `node`, behind the node's credentials.
    pub fn new(node: ClusterNode) -> ProbeService {
        ProbeService { node }
    }

    pub fn routes(&self) -> Router {
        let creds = self.node.credentials();
        let probe = Router::new()
            .route("/probe/checks", get(checks_route))
            .route("/probe/report", post(report_route))
            .layer(DefaultBodyLimit::max(REPORT_LIMIT));
        let read = Router::new().route("/probe/health", get(health_route));
        // agents only: nodes forward observations through the write route
        http::guarded(probe, creds, Need::ClientScope(Scope::Probe))
            .merge(http::guarded(read, creds, Need::Scope(Scope::Read)))
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

    /// Commits a report, stamped with the leader's clock.
    pub async fn deliver(&self, report: Report) -> Result<Written, ClusterError> {
        check_report(&report).map_err(ClusterError::Rejected)?;
        // the time is the leader's to set (see `ClusterNode::write`)
        self.node.write(Command::Observe { at_ms: 0, report }).await
    }

    pub fn health(&self) -> HealthView {
        let s = self.node.state();
        s.health.view(&s.spec)
    }
}

/// A report's shape: a region name, bounded sizes, and times that are
/// finite, not negative and under an hour.
pub(crate) fn check_report(report: &Report) -> Result<(), String> {
    if !meridian_config::node::is_region_name(&report.region) {
        return Err(format!("region {:?} is not a region name", report.region));
    }
    if report.agent.len() > 255 || report.agent.chars().any(char::is_control) {
        return Err("the agent name must be at most 255 bytes, without control characters".into());
    }
    if report.observations.len() > MAX_OBSERVATIONS {
        return Err(format!(
            "{} observations in one report; at most {MAX_OBSERVATIONS}",
            report.observations.len()
        ));
    }
    for (i, o) in report.observations.iter().enumerate() {
        for (field, v) in [("connect_ms", o.connect_ms), ("ttfb_ms", o.ttfb_ms)] {
            if let Some(v) = v {
                if !v.is_finite() || !(0.0..=MAX_MS).contains(&v) {
                    return Err(format!(
                        "observations[{i}].{field}: expected a time of 0 to {MAX_MS} ms, got {v}"
                    ));
                }
            }
        }
        if o.error.as_ref().is_some_and(|e| e.len() > MAX_ERROR_LEN) {
            return Err(format!(
                "observations[{i}].error: longer than {MAX_ERROR_LEN} bytes"
            ));
        }
    }
    Ok(())
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
    Extension(principal): Extension<Principal>,
    Query(q): Query<ChecksQuery>,
) -> Result<Json<CheckList>, ClusterError> {
    principal.may_probe(&q.region).map_err(http::denied)?;
    Ok(Json(svc.check_list(&q.region, q.known).await))
}

async fn report_route(
    State(svc): State<ProbeService>,
    Extension(principal): Extension<Principal>,
    Json(report): Json<Report>,
) -> Result<Json<Written>, ClusterError> {
    principal.may_probe(&report.region).map_err(http::denied)?;
    svc.deliver(report).await.map(Json)
}

async fn health_route(State(svc): State<ProbeService>) -> Json<HealthView> {
    Json(svc.health())
}
