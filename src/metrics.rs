//! What a node shows its operators: Prometheus metrics at `/metrics`,
//! `/healthz` and `/readyz` (and the status page, `crate::status`), on
//! the cluster API's listener and behind its
//! credentials (the `read` scope; `cluster.api.open_health` opens the two
//! health routes for probes that cannot send a token).
//!
//! Nothing here is on the query path: a scrape sums the DNS threads'
//! counters (`meridian_dns::stats`), reads the replicated state, Raft's
//! metrics and `/proc/self`, and writes the text format through the
//! `prometheus` crate's encoder.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use meridian_consensus::auth::{Need, Scope};
use meridian_consensus::ClusterNode;
use meridian_dns::rrl::Rrl;
use meridian_dns::stats::{self, Key, Totals, LATENCY_BOUNDS_US};
use meridian_dns::SnapshotHandle;
use prometheus::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType,
};
use prometheus::{Encoder, TextEncoder};
use serde::Serialize;

/// What a scrape reads.
#[derive(Clone)]
pub struct Sources {
    pub cluster: ClusterNode,
    pub snapshots: SnapshotHandle,
    pub rrl: Option<Arc<Rrl>>,
    /// `/readyz` says not ready past this much staleness.
    pub ready_stale: Duration,
    pub started: Instant,
    /// The embedded probe agent's counts, once it runs.
    pub agent: Arc<std::sync::OnceLock<AgentStats>>,
    /// The HTTP fallback's, when it is configured.
    pub fallback: Option<Arc<FallbackStats>>,
    /// The last scrape and status view, shared by requests within a
    /// second of them; one is worked out at a time.
    pub cache: Arc<Cache>,
}

/// Bodies worked out once for every request within [`CACHE_FOR`].
#[derive(Default)]
pub struct Cache {
    metrics: Slot,
    status: Slot,
}

/// One cached body and when it was made (bytes every response shares,
/// never copied per request).
type Slot = tokio::sync::Mutex<Option<(Instant, Bytes)>>;

/// How long a scrape or status view is reused.
const CACHE_FOR: Duration = Duration::from_secs(1);

/// The body in `slot` if it is fresh, else `make`'s, worked out off the
/// async threads while holding the slot: concurrent requests wait for one
/// result instead of each working it out. `None` when `make` panicked.
pub async fn cached(slot: &Slot, make: impl FnOnce() -> String + Send + 'static) -> Option<Bytes> {
    let mut held = slot.lock().await;
    if let Some((at, body)) = held.as_ref() {
        if at.elapsed() < CACHE_FOR {
            return Some(body.clone());
        }
    }
    let body = Bytes::from(tokio::task::spawn_blocking(make).await.ok()?);
    *held = Some((Instant::now(), body.clone()));
    Some(body)
}

impl Cache {
    /// The status view's slot.
    pub fn status(&self) -> &Slot {
        &self.status
    }
}

/// The HTTP fallback's counts, heard through its observer hook: answers
/// and proxy attempts by status.
pub struct FallbackStats {
    /// Statuses 100..=599.
    answered: Vec<AtomicU64>,
    upstream: Vec<AtomicU64>,
    /// Proxy attempts that got no response.
    upstream_failed: AtomicU64,
}

impl Default for FallbackStats {
    fn default() -> Self {
        FallbackStats {
            answered: (100..600).map(|_| AtomicU64::new(0)).collect(),
            upstream: (100..600).map(|_| AtomicU64::new(0)).collect(),
            upstream_failed: AtomicU64::new(0),
        }
    }
}

impl meridian_http_fallback::Observer for FallbackStats {
    fn answered(&self, _host: &str, status: StatusCode, _endpoint: Option<&str>) {
        if let Some(c) = self
            .answered
            .get(usize::from(status.as_u16()).wrapping_sub(100))
        {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn upstream(&self, _endpoint: &str, _took: Duration, status: Option<StatusCode>) {
        match status {
            Some(s) => {
                if let Some(c) = self.upstream.get(usize::from(s.as_u16()).wrapping_sub(100)) {
                    c.fetch_add(1, Ordering::Relaxed);
                }
            }
            None => {
                self.upstream_failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn fallback(f: &mut Families, s: &FallbackStats) {
    let requests = "HTTP fallback requests answered, by status.";
    by_status(f, "meridian_http_requests_total", requests, &s.answered);
    let help = "Proxy-mode attempts at endpoints, by the status they answered (none: no response).";
    by_status(f, "meridian_http_upstream_total", help, &s.upstream);
    let failed = s.upstream_failed.load(Ordering::Relaxed);
    f.counter(
        "meridian_http_upstream_total",
        help,
        &[("status", "none")],
        failed as f64,
    );
}

/// One sample per HTTP status counted (`counts[i]` is status 100 + i).
fn by_status(f: &mut Families, name: &'static str, help: &str, counts: &[AtomicU64]) {
    for (i, c) in counts.iter().enumerate() {
        let n = c.load(Ordering::Relaxed);
        if n > 0 {
            let status = (100 + i).to_string();
            f.counter(name, help, &[("status", &status)], n as f64);
        }
    }
}

/// A probe agent's counts, by its region.
#[derive(Clone)]
pub struct AgentStats {
    pub region: String,
    pub stats: Arc<meridian_probes::agent::Stats>,
}

/// `/metrics`, `/healthz` and `/readyz`: the first behind the `read`
/// scope of `creds`, the others too unless `open_health`.
pub fn routes(
    sources: Sources,
    creds: Arc<meridian_consensus::auth::Credentials>,
    open_health: bool,
) -> Router {
    let metrics = Router::new().route("/metrics", get(metrics_route));
    let health = Router::new()
        .route("/healthz", get(healthz_route))
        .route("/readyz", get(readyz_route));
    let read = Need::Scope(Scope::Read);
    let guarded = meridian_consensus::http::guarded(metrics, &creds, read);
    let health = if open_health {
        health
    } else {
        meridian_consensus::http::guarded(health, &creds, read)
    };
    // the status page, whose data is behind the same token
    let page = crate::status::routes(sources.clone(), creds);
    guarded.merge(health).with_state(sources).merge(page)
}

/// The credentials of a plain-HTTP metrics listener: the tokens of its
/// own file (none: only `insecure` lets anyone in), no certificates.
pub fn listener_credentials(
    tokens: Option<&std::path::Path>,
    insecure: bool,
) -> Result<Arc<meridian_consensus::auth::Credentials>, String> {
    let tokens = match tokens {
        Some(path) => meridian_consensus::auth::load_tokens(path)?,
        None => Vec::new(),
    };
    Ok(Arc::new(meridian_consensus::auth::Credentials::new(
        tokens, None, insecure,
    )))
}

/// Serves the routes on the `metrics` section's own listener, with its
/// token file (or none, `insecure`).
pub async fn listen(
    config: &meridian_config::node::MetricsConfig,
    sources: Sources,
) -> Result<(), String> {
    let creds = listener_credentials(config.tokens.as_deref(), config.insecure)
        .map_err(|e| format!("metrics.tokens: {e}"))?;
    if config.insecure {
        tracing::warn!(listen = %config.listen, "metrics.insecure: anyone may read /metrics");
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {} (metrics.listen): {e}", config.listen))?;
    let at = listener.local_addr().map_err(|e| e.to_string())?;
    serve_small(listener, routes(sources, creds, config.open_health));
    println!("meridian: metrics listening on {at}");
    Ok(())
}

/// Serves `app` on `listener` with the bounds a scrape needs: a few
/// connections, the API's header and request timeouts.
pub fn serve_small(listener: tokio::net::TcpListener, app: Router) {
    let limits = meridian_consensus::http::Limits {
        max_connections: 64,
        max_per_peer: 8,
        name: "metrics",
        ..Default::default()
    };
    tokio::spawn(meridian_consensus::http::serve(
        listener,
        None,
        app,
        limits,
        Arc::new(|_| false),
    ));
}

async fn metrics_route(State(s): State<Sources>) -> Response {
    let cache = s.cache.clone();
    match cached(&cache.metrics, move || render(&s)).await {
        Some(body) => ([(header::CONTENT_TYPE, TEXT_FORMAT)], body).into_response(),
        // a scrape that failed is no empty scrape
        None => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// The Prometheus text format's content type.
pub const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

async fn healthz_route() -> Json<serde_json::Value> {
    Json(serde_json::json!({"alive": true}))
}

/// Whether this node should be sent traffic, and why not.
#[derive(Debug, Serialize)]
pub struct Readiness {
    pub ready: bool,
    /// Every reason it is not.
    pub reasons: Vec<String>,
    pub version: u64,
    pub leader: Option<u64>,
    pub stale_ms: Option<u64>,
    pub stale_limit_ms: u64,
}

/// Ready: DNS serves a spec (state version above 0), the cluster has a
/// leader, and this node's state is no staler than `limit`.
/// With `dns_only`, only what answering DNS needs: a spec and Raft
/// running, whatever the leader and the staleness.
pub fn readiness(
    cluster: &ClusterNode,
    snapshots: &SnapshotHandle,
    limit: Duration,
    dns_only: bool,
) -> Readiness {
    let status = cluster.status();
    let serving = snapshots.current().version;
    let limit_ms = limit.as_millis() as u64;
    let mut reasons = Vec::new();
    if serving == 0 {
        reasons.push("DNS serves no spec yet (state version 0)".to_string());
    }
    if status.role == "shutdown" {
        reasons.push("Raft has stopped on this node (see its log)".to_string());
    }
    // the leader and the staleness do not stop DNS answering
    if !dns_only && status.leader.is_none() {
        reasons.push("the cluster has no leader".to_string());
    }
    match status.stale_ms.filter(|_| !dns_only) {
        Some(ms) if ms > limit_ms => reasons.push(format!(
            "this node's state is {ms} ms old, over the {limit_ms} ms bound"
        )),
        None if !dns_only && status.members.len() > 1 => {
            reasons.push("this node has never been in contact with the cluster".to_string())
        }
        _ => {}
    }
    Readiness {
        ready: reasons.is_empty(),
        reasons,
        version: serving,
        leader: status.leader,
        stale_ms: status.stale_ms,
        stale_limit_ms: limit_ms,
    }
}

#[derive(Debug, serde::Deserialize)]
struct ReadyQuery {
    /// `dns`: ready to answer DNS (a spec served, Raft running), whether
    /// or not the cluster has a leader or this node is cut off: what a
    /// load balancer in front of DNS should ask, so that losing quorum
    /// does not take every node out of it.
    #[serde(default)]
    scope: Option<String>,
}

async fn readyz_route(
    State(s): State<Sources>,
    axum::extract::Query(q): axum::extract::Query<ReadyQuery>,
) -> (StatusCode, Json<Readiness>) {
    let dns_only = q.scope.as_deref() == Some("dns");
    let r = readiness(&s.cluster, &s.snapshots, s.ready_stale, dns_only);
    let code = if r.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(r))
}

/// The metric families of one scrape, by name.
#[derive(Default)]
struct Families(BTreeMap<&'static str, MetricFamily>);

impl Families {
    fn family(&mut self, name: &'static str, help: &str, kind: MetricType) -> &mut MetricFamily {
        self.0.entry(name).or_insert_with(|| {
            let mut f = MetricFamily::default();
            f.set_name(name.to_string());
            f.set_help(help.to_string());
            f.set_field_type(kind);
            f
        })
    }

    fn sample(
        &mut self,
        name: &'static str,
        help: &str,
        kind: MetricType,
        labels: &[(&str, &str)],
        value: f64,
    ) {
        let mut m = Metric::default();
        m.set_label(pairs(labels));
        match kind {
            MetricType::COUNTER => {
                let mut c = Counter::default();
                c.set_value(value);
                m.set_counter(c);
            }
            _ => {
                let mut g = Gauge::default();
                g.set_value(value);
                m.set_gauge(g);
            }
        }
        self.family(name, help, kind).mut_metric().push(m);
    }

    fn counter(&mut self, name: &'static str, help: &str, labels: &[(&str, &str)], v: f64) {
        self.sample(name, help, MetricType::COUNTER, labels, v);
    }

    fn gauge(&mut self, name: &'static str, help: &str, labels: &[(&str, &str)], v: f64) {
        self.sample(name, help, MetricType::GAUGE, labels, v);
    }

    fn encode(self) -> String {
        let families: Vec<MetricFamily> = self.0.into_values().collect();
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&families, &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

fn pairs(labels: &[(&str, &str)]) -> Vec<LabelPair> {
    labels
        .iter()
        .map(|(k, v)| {
            let mut p = LabelPair::default();
            p.set_name(k.to_string());
            p.set_value(v.to_string());
            p
        })
        .collect()
}

/// The whole scrape, in the text format.
pub fn render(s: &Sources) -> String {
    let mut f = Families::default();
    dns(&mut f, s);
    health(&mut f, s);
    raft(&mut f, s);
    if let Some(a) = s.agent.get() {
        agent(&mut f, a);
    }
    if let Some(fb) = &s.fallback {
        fallback(&mut f, fb);
    }
    process(&mut f, s.started);
    f.encode()
}

/// A standalone probe agent's scrape: its counts and its process.
pub fn render_agent(a: &AgentStats, started: Instant) -> String {
    let mut f = Families::default();
    agent(&mut f, a);
    process(&mut f, started);
    f.encode()
}

fn agent(f: &mut Families, a: &AgentStats) {
    use std::sync::atomic::Ordering::Relaxed;
    let s = &a.stats;
    let probes = s.probes.load(Relaxed);
    let failures = s.failures.load(Relaxed);
    let help = "Health probes this agent ran, by result.";
    let region = a.region.as_str();
    let ok = probes.saturating_sub(failures) as f64;
    f.counter(
        "meridian_probe_results_total",
        help,
        &[("region", region), ("result", "ok")],
        ok,
    );
    f.counter(
        "meridian_probe_results_total",
        help,
        &[("region", region), ("result", "fail")],
        failures as f64,
    );
    let help = "Reports this agent sent to the cluster, by outcome.";
    f.counter(
        "meridian_probe_reports_total",
        help,
        &[("region", region), ("result", "sent")],
        s.reports.load(Relaxed) as f64,
    );
    f.counter(
        "meridian_probe_reports_total",
        help,
        &[("region", region), ("result", "failed")],
        s.reports_failed.load(Relaxed) as f64,
    );
}

fn dns(f: &mut Families, s: &Sources) {
    let t: Totals = stats::totals();
    for (q, row) in t.queries.iter().enumerate() {
        for (r, cell) in row.iter().enumerate() {
            for (p, proto) in ["udp", "tcp"].iter().enumerate() {
                if cell[p] > 0 {
                    let labels = [
                        ("qtype", Totals::qtype_name(q)),
                        ("rcode", Totals::rcode_name(r)),
                        ("protocol", *proto),
                    ];
                    f.counter(
                        "meridian_dns_queries_total",
                        "DNS queries answered, by question type, response code and transport.",
                        &labels,
                        cell[p] as f64,
                    );
                }
            }
        }
    }
    f.counter(
        "meridian_dns_ecs_queries_total",
        "DNS queries that carried an EDNS Client Subnet option.",
        &[],
        t.ecs as f64,
    );
    f.counter(
        "meridian_dns_truncated_total",
        "DNS answers sent truncated (TC=1).",
        &[],
        t.truncated as f64,
    );
    // the response-time histogram, cumulative
    let mut h = Histogram::default();
    let mut cumulative = 0;
    let mut buckets = Vec::new();
    for (i, bound) in LATENCY_BOUNDS_US.iter().enumerate() {
        cumulative += t.latency[i];
        let mut b = Bucket::default();
        b.set_upper_bound(*bound as f64 / 1e6);
        b.set_cumulative_count(cumulative);
        buckets.push(b);
    }
    cumulative += t.latency[LATENCY_BOUNDS_US.len()];
    h.set_bucket(buckets);
    h.set_sample_count(cumulative);
    h.set_sample_sum(t.latency_sum_ns as f64 / 1e9);
    let mut m = Metric::default();
    m.set_histogram(h);
    f.family(
        "meridian_dns_response_seconds",
        "Time from a query's arrival to its answer being ready.",
        MetricType::HISTOGRAM,
    )
    .mut_metric()
    .push(m);
    if let Some(rrl) = &s.rrl {
        let (dropped, slipped) = rrl.counts();
        let help = "UDP answers response rate limiting dropped or sent truncated (slip).";
        f.counter(
            "meridian_dns_rrl_total",
            help,
            &[("action", "drop")],
            dropped as f64,
        );
        f.counter(
            "meridian_dns_rrl_total",
            help,
            &[("action", "slip")],
            slipped as f64,
        );
    }
    // by zone and by steered record, named from the snapshot served
    let snap = s.snapshots.load();
    let state = s.cluster.state();
    for zone in &snap.zones {
        let n = t
            .keyed
            .get(&Key::Zone(zone.stats_key))
            .copied()
            .unwrap_or(0);
        f.counter(
            "meridian_dns_zone_queries_total",
            "DNS queries answered from each zone.",
            &[("zone", &zone.origin.to_string())],
            n as f64,
        );
    }
    let help = "Steered answers by record and what was answered first: an endpoint (with its region), or sorry, nodata, http_fallback.";
    for r in steered_counts(&state.spec, &t) {
        for (what, region, n) in &r.counts {
            let labels = [
                ("record", r.record),
                ("type", r.rtype),
                ("endpoint", what),
                ("region", region),
            ];
            f.counter("meridian_steered_answers_total", help, &labels, *n as f64);
        }
    }
}

fn health(f: &mut Families, s: &Sources) {
    let state = s.cluster.state();
    let view = state.health.view(&state.spec);
    let now = view.now_ms;
    // the freshest report of each agent, per region
    let mut agents: BTreeMap<(String, String), u64> = BTreeMap::new();
    let regions = regions_of(&state.spec);
    for e in &view.endpoints {
        let region_of = regions
            .get(&(e.pool.as_str(), e.endpoint.as_str()))
            .copied()
            .unwrap_or("");
        let base = [
            ("pool", e.pool.as_str()),
            ("endpoint", e.endpoint.as_str()),
            ("region", region_of),
        ];
        f.gauge(
            "meridian_endpoint_up",
            "The cluster's verdict on each checked endpoint: 1 up, 0 down.",
            &base,
            f64::from(u8::from(e.up)),
        );
        f.gauge(
            "meridian_endpoint_in_service",
            "Whether answers may use the endpoint (up and past any hold-down).",
            &base,
            f64::from(u8::from(e.in_service)),
        );
        for r in &e.regions {
            let vote = match (&r.vote, r.fresh) {
                (Some(v), true) => f64::from(u8::from(v.up)),
                // no vote, or a stale one: it does not count
                _ => -1.0,
            };
            let labels = [
                ("pool", e.pool.as_str()),
                ("endpoint", e.endpoint.as_str()),
                ("probe_region", r.region.as_str()),
            ];
            f.gauge(
                "meridian_region_vote",
                "Each probe region's vote on each endpoint: 1 up, 0 down, -1 stale or none.",
                &labels,
                vote,
            );
            if let Some(rtt) = r.vote.as_ref().and_then(|v| v.rtt_ms) {
                f.gauge(
                    "meridian_endpoint_rtt_seconds",
                    "Smoothed connection RTT from each probe region to each endpoint.",
                    &labels,
                    rtt / 1e3,
                );
            }
            if let Some(v) = &r.vote {
                let age = now.saturating_sub(v.at_ms);
                let slot = agents
                    .entry((r.region.clone(), v.agent.clone()))
                    .or_insert(u64::MAX);
                *slot = (*slot).min(age);
            }
        }
    }
    for ((region, agent), age) in agents {
        f.gauge(
            "meridian_agent_report_age_seconds",
            "Age of each probe agent's latest report, on the cluster's clock.",
            &[("region", &region), ("agent", &agent)],
            age as f64 / 1e3,
        );
    }
}

/// A steered record's answers so far, by what they led with.
pub struct SteeredCounts<'s> {
    pub record: &'s str,
    pub rtype: &'static str,
    /// (an endpoint id or sorry, nodata, http_fallback; its region, empty
    /// for the others; answers).
    pub counts: Vec<(&'s str, &'s str, u64)>,
}

/// Every steered record of `spec` that has answered, with what it
/// answered, from the summed counters `t`: one entry per name (a name in
/// two zones of ours is answered by one of them), and only what answered
/// (records times endpoints of zeros would be the whole spec again).
pub fn steered_counts<'s>(
    spec: &'s meridian_config::ZoneSpec,
    t: &Totals,
) -> Vec<SteeredCounts<'s>> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for r in spec.zones.iter().flat_map(|z| &z.steered) {
        let record = r.name.as_str();
        let rtype = r.rtype.as_record_type().as_str();
        let key = stats::steered_key(record, rtype);
        if !seen.insert(key) {
            continue;
        }
        let count = |what| t.keyed.get(&Key::Steered(key, what)).copied();
        let mut counts = Vec::new();
        if let Some(pool) = spec.pools.get(&r.pool) {
            for e in &pool.endpoints {
                if let Some(n) = count(stats::endpoint_key(&r.pool, &e.id)) {
                    counts.push((e.id.as_str(), e.region.as_str(), n));
                }
            }
        }
        for (what, name) in [
            (stats::SORRY, "sorry"),
            (stats::NODATA, "nodata"),
            (stats::HTTP_FALLBACK, "http_fallback"),
        ] {
            if let Some(n) = count(what) {
                counts.push((name, "", n));
            }
        }
        if !counts.is_empty() {
            out.push(SteeredCounts {
                record,
                rtype,
                counts,
            });
        }
    }
    out
}

/// Each endpoint's region, by pool and id: looked up once per endpoint
/// of a scrape.
pub fn regions_of(
    spec: &meridian_config::ZoneSpec,
) -> std::collections::HashMap<(&str, &str), &str> {
    spec.pools
        .iter()
        .flat_map(|(name, p)| {
            p.endpoints
                .iter()
                .map(move |e| ((name.as_str(), e.id.as_str()), e.region.as_str()))
        })
        .collect()
}

fn raft(f: &mut Families, s: &Sources) {
    let st = s.cluster.status();
    let id = st.id.to_string();
    let node = [("node", id.as_str())];
    f.gauge(
        "meridian_raft_term",
        "The node's Raft term.",
        &node,
        st.term as f64,
    );
    f.gauge(
        "meridian_raft_is_leader",
        "1 on the leader.",
        &node,
        f64::from(u8::from(st.leader == Some(st.id))),
    );
    f.gauge(
        "meridian_raft_has_leader",
        "1 when this node knows a leader.",
        &node,
        f64::from(u8::from(st.leader.is_some())),
    );
    let idx = |v: Option<u64>| v.map_or(0.0, |v| v as f64);
    f.gauge(
        "meridian_raft_last_log_index",
        "The last index in this node's log.",
        &node,
        idx(st.last_log_index),
    );
    f.gauge(
        "meridian_raft_applied_index",
        "The last index this node applied.",
        &node,
        idx(st.applied_index),
    );
    f.gauge(
        "meridian_raft_snapshot_index",
        "The index of this node's last snapshot.",
        &node,
        idx(st.snapshot_index),
    );
    f.gauge(
        "meridian_raft_members",
        "Members of the cluster, as this node knows them.",
        &node,
        st.members.len() as f64,
    );
    if let Some(matched) = &st.matched {
        let last = st.last_log_index.unwrap_or(0);
        for (member, m) in matched {
            let follower = member.to_string();
            f.gauge(
                "meridian_raft_replication_lag",
                "On the leader: log entries each member is behind.",
                &[("node", id.as_str()), ("member", follower.as_str())],
                last.saturating_sub(m.unwrap_or(0)) as f64,
            );
        }
    }
    f.gauge(
        "meridian_state_version",
        "The replicated state's version this node serves (the SOA serial follows it).",
        &node,
        st.version as f64,
    );
    f.gauge(
        "meridian_state_stale_seconds",
        "Since this node last knew its state current (-1: never).",
        &node,
        st.stale_ms.map_or(-1.0, |ms| ms as f64 / 1e3),
    );
}

fn process(f: &mut Families, started: Instant) {
    if let Some((cpu, rss)) = proc_self() {
        f.counter(
            "process_cpu_seconds_total",
            "User and system CPU time of the process.",
            &[],
            cpu,
        );
        f.gauge(
            "process_resident_memory_bytes",
            "Resident memory of the process.",
            &[],
            rss,
        );
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        f.gauge(
            "process_open_fds",
            "Open file descriptors of the process.",
            &[],
            fds.count() as f64,
        );
    }
    f.gauge(
        "meridian_uptime_seconds",
        "Since the process started serving.",
        &[],
        started.elapsed().as_secs_f64(),
    );
}

/// CPU seconds and resident bytes from `/proc/self`.
fn proc_self() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // fields after the command name, which may hold spaces
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: f64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .unwrap_or(4096) as f64;
    Some(((utime + stime) / ticks, pages * page))
}
