//! A running cluster node: the Raft instance on its sled store, the HTTP
//! API its peers and the `meridian cluster` commands talk to, and the
//! operations behind it — write (forwarded to the leader), init, join,
//! leave, status.
//!
//! Every operation that must run on the leader is tried locally first; a
//! follower forwards it once to the leader it knows, and a forwarded
//! request is never forwarded again. Each one is bounded in time: with no
//! quorum a write fails within the write timeout with
//! [`ClusterError::Unavailable`] (HTTP 503), and the DNS server keeps
//! answering from the last applied state.
//!
//! Every route is guarded ([`crate::http::guarded`]): Raft RPCs take only
//! nodes, writes an operator's `write` scope, membership `admin`, status
//! `read`. A node's own requests to another (a forwarded write, a join of
//! itself) carry its node identity, and only a node's request counts as
//! forwarded. Probe observations enter only through the probe API and are
//! stamped by the leader's clock, which can never run ahead of the time
//! that really passed.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Extension, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::routing::{get, post};
use axum::{Json, Router};
use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{BasicNode, ChangeMembers, Config, Raft, ServerState, SnapshotPolicy};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::auth::{Credentials, Need, Principal, Scope};
use crate::engine::{EngineError, KvEngine, Sled};
use crate::http::{self, Limits};
use crate::journal::Journal;
use crate::log_store::LogStore;
use crate::network::{self, Contact, HttpNetwork};
pub use crate::resources::Refusal;
use crate::resources::{self, Change, Op, RefusalKind, Resource, Target};
use crate::state::{ReplicatedState, StateMachine, MAX_SPEC_TEXT};
use crate::tls::{self, Tls};
use crate::{Command, NodeId, Response, TypeConfig};

/// Marks a request one node forwarded to the leader.
const FORWARDED: &str = "x-meridian-forwarded";

/// Raft timing and log retention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timing {
    /// Leader heartbeat interval.
    pub heartbeat: Duration,
    /// Shortest election timeout; the longest is twice this.
    pub election_timeout: Duration,
    /// Build a snapshot after this many log entries since the last one,
    /// and keep this many entries before it.
    pub snapshot_every: u64,
    /// Also build one once the entries appended since the last snapshot
    /// exceed this many bytes (as serialized), and then purge the whole
    /// log up to it: probe reports are large entries, and a count alone
    /// would let the log grow to gigabytes.
    pub snapshot_bytes: u64,
    /// How long a write (or membership change) may wait for a quorum.
    pub write_timeout: Duration,
}

impl Default for Timing {
    fn default() -> Timing {
        Timing {
            heartbeat: Duration::from_millis(100),
            election_timeout: Duration::from_millis(500),
            snapshot_every: 5000,
            snapshot_bytes: 64 << 20,
            write_timeout: Duration::from_secs(5),
        }
    }
}

/// What a node needs to start.
pub struct NodeOptions {
    pub id: NodeId,
    /// Holds `raft/` (sled) and `snapshots/`.
    pub data_dir: PathBuf,
    /// The `host:port` peers reach this node's API at.
    pub advertise: String,
    pub timing: Timing,
    pub tls: Option<Tls>,
    /// Checks a whole spec before this node, as leader, proposes it: a spec
    /// that arrived over the API as JSON has not been through the YAML
    /// validator, and one the DNS server cannot index must never commit.
    pub check_spec: Option<SpecCheck>,
    /// Who may call this node's API, and what they may do.
    pub credentials: Arc<Credentials>,
    /// The cluster secret this node presents to its peers when there is
    /// no TLS (its identity otherwise is its certificate).
    pub secret: Option<String>,
    /// The bounds of the API listener.
    pub limits: Limits,
}

/// Room kept below [`MAX_SPEC_TEXT`] for patches, which are not weighed
/// (a weight or priority grows the spec by a few bytes at most).
const PATCH_HEADROOM: usize = 256 * 1024;

/// Why a node's log split from its leader's (see `LogStore::truncate`).
type Diverged = Arc<std::sync::Mutex<Option<String>>>;

/// See [`NodeOptions::check_spec`].
pub type SpecCheck = Arc<
    dyn Fn(&meridian_config::ZoneSpec) -> Result<(), meridian_config::zone::rules::Violations>
        + Send
        + Sync,
>;

/// Why an operation failed; each maps to an HTTP status.
///
/// On the wire every error is `{"error": {"code", "message", "field"}}`
/// (`field` only where one is at fault), whichever route gave it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    /// The request is wrong (a command the state rejects, an unknown
    /// member): 422.
    #[error("{0}")]
    Rejected(String),
    /// It conflicts with the cluster as it is (already initialized, id
    /// taken): 409.
    #[error("{0}")]
    Conflict(String),
    /// No leader or no quorum within the bound; retrying later may work:
    /// 503 with `Retry-After`.
    #[error("{0}")]
    Unavailable(String),
    /// The node itself failed: 500.
    #[error("{0}")]
    Failed(String),
    /// No valid credential for the operation: 401.
    #[error("{0}")]
    Unauthorized(String),
    /// A valid credential without the right to do this: 403.
    #[error("{0}")]
    Forbidden(String),
    /// The request body is larger than the route accepts: 413.
    #[error("{0}")]
    TooLarge(String),
    /// The request took longer than the listener allows: 408.
    #[error("{0}")]
    Timeout(String),
    /// An API change refused by its precondition or the rules: 400, 404,
    /// 409 or 412 by its kind.
    #[error("{0}")]
    Refused(Refusal),
    /// A request HTTP itself refused (no such route, a body that is not
    /// JSON, a wrong content type), with its status.
    #[error("{message}")]
    Http { status: u16, message: String },
}

/// The JSON form of every error.
#[derive(Serialize, Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Serialize, Deserialize)]
struct ErrorDetail {
    code: String,
    message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    field: Option<String>,
    /// The HTTP status, for errors HTTP itself gave.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
}

impl ClusterError {
    /// The stable, machine-readable code of the error.
    pub fn code(&self) -> &'static str {
        match self {
            ClusterError::Rejected(_) => "rejected",
            ClusterError::Conflict(_) => "conflict",
            ClusterError::Unavailable(_) => "unavailable",
            ClusterError::Failed(_) => "internal",
            ClusterError::Unauthorized(_) => "unauthorized",
            ClusterError::Forbidden(_) => "forbidden",
            ClusterError::TooLarge(_) => "payload_too_large",
            ClusterError::Timeout(_) => "timeout",
            ClusterError::Refused(r) => match r.kind {
                RefusalKind::Invalid => "invalid",
                RefusalKind::NotFound => "not_found",
                RefusalKind::Conflict => "conflict",
                RefusalKind::Precondition => "precondition_failed",
            },
            ClusterError::Http { status, .. } => match *status {
                400 | 422 => "invalid",
                404 => "not_found",
                405 => "method_not_allowed",
                406 => "not_acceptable",
                415 => "unsupported_media_type",
                _ => "http",
            },
        }
    }
}

impl Serialize for ClusterError {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (field, status) = match self {
            ClusterError::Refused(r) => (r.field.clone(), None),
            ClusterError::Http { status, .. } => (None, Some(*status)),
            _ => (None, None),
        };
        ErrorBody {
            error: ErrorDetail {
                code: self.code().to_string(),
                message: self.to_string(),
                field,
                status,
            },
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for ClusterError {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let ErrorDetail {
            code,
            message: m,
            field,
            status,
        } = ErrorBody::deserialize(d)?.error;
        let refused = |kind| {
            ClusterError::Refused(Refusal {
                kind,
                message: m.clone(),
                field: field.clone(),
            })
        };
        Ok(match (code.as_str(), status) {
            (_, Some(status)) => ClusterError::Http { status, message: m },
            ("rejected", _) => ClusterError::Rejected(m),
            ("conflict", _) if field.is_some() => refused(RefusalKind::Conflict),
            ("conflict", _) => ClusterError::Conflict(m),
            ("unavailable", _) => ClusterError::Unavailable(m),
            ("unauthorized", _) => ClusterError::Unauthorized(m),
            ("forbidden", _) => ClusterError::Forbidden(m),
            ("payload_too_large", _) => ClusterError::TooLarge(m),
            ("timeout", _) => ClusterError::Timeout(m),
            ("invalid", _) => refused(RefusalKind::Invalid),
            ("not_found", _) => refused(RefusalKind::NotFound),
            ("precondition_failed", _) => refused(RefusalKind::Precondition),
            _ => ClusterError::Failed(m),
        })
    }
}

impl ClusterError {
    pub fn status(&self) -> StatusCode {
        match self {
            ClusterError::Rejected(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ClusterError::Conflict(_) => StatusCode::CONFLICT,
            ClusterError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ClusterError::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ClusterError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ClusterError::Forbidden(_) => StatusCode::FORBIDDEN,
            ClusterError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ClusterError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            ClusterError::Http { status, .. } => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_REQUEST)
            }
            ClusterError::Refused(r) => match r.kind {
                RefusalKind::Invalid => StatusCode::BAD_REQUEST,
                RefusalKind::NotFound => StatusCode::NOT_FOUND,
                RefusalKind::Conflict => StatusCode::CONFLICT,
                RefusalKind::Precondition => StatusCode::PRECONDITION_FAILED,
            },
        }
    }
}

impl IntoResponse for ClusterError {
    fn into_response(self) -> HttpResponse {
        let status = self.status();
        let body = Json(&self).into_response();
        let mut resp = (status, body).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from_static("1"));
        }
        resp
    }
}

/// An applied write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Written {
    /// The state version after the write.
    pub version: u64,
    /// Its log index.
    pub index: u64,
}

/// `POST /cluster/join`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinRequest {
    pub id: NodeId,
    pub addr: String,
}

/// `POST /cluster/leave`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeaveRequest {
    pub id: NodeId,
}

/// `POST /cluster/init`: the initial voters; none means this node alone.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct InitRequest {
    #[serde(default)]
    pub members: BTreeMap<NodeId, String>,
}

/// One node's view of the cluster (`GET /cluster/status`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub id: NodeId,
    pub addr: String,
    /// leader, follower, candidate or learner.
    pub role: String,
    pub term: u64,
    pub leader: Option<NodeId>,
    pub last_log_index: Option<u64>,
    pub applied_index: Option<u64>,
    /// The replicated state's version (the SOA serial follows it).
    pub version: u64,
    pub snapshot_index: Option<u64>,
    pub purged_index: Option<u64>,
    /// Every member: its address and whether it votes.
    pub members: BTreeMap<NodeId, Member>,
    /// On the leader: the last log index each member has.
    pub matched: Option<BTreeMap<NodeId, Option<u64>>>,
    /// How long since this node last knew its state current: on a leader,
    /// since a quorum acknowledged it; elsewhere, since the leader's last
    /// accepted append. `None`: never.
    pub stale_ms: Option<u64>,
    /// Set once a leader asked this node to drop entries it had
    /// committed: the cluster's states have split.
    #[serde(default)]
    pub diverged: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Member {
    pub addr: String,
    pub voter: bool,
}

/// A local attempt that may belong on the leader.
enum OpError {
    Cluster(ClusterError),
    /// This node is not the leader; the one it knows, if any.
    NotLeader(Option<(NodeId, String)>),
}

impl From<ClusterError> for OpError {
    fn from(e: ClusterError) -> OpError {
        OpError::Cluster(e)
    }
}

fn from_raft(e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>) -> OpError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
            OpError::NotLeader(f.leader_id.zip(f.leader_node.map(|n| n.addr)))
        }
        RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => {
            ClusterError::Conflict(c.to_string()).into()
        }
        RaftError::Fatal(f) => ClusterError::Failed(format!("raft stopped: {f}")).into(),
    }
}

/// A started node. Cheap to clone.
#[derive(Clone)]
pub struct ClusterNode {
    inner: Arc<Inner>,
}

struct Inner {
    raft: Raft<TypeConfig>,
    id: NodeId,
    advertise: String,
    client: reqwest::Client,
    scheme: &'static str,
    tls: Option<Tls>,
    timing: Timing,
    check_spec: Option<SpecCheck>,
    contact: Arc<Contact>,
    /// The last applied state.
    state: tokio::sync::watch::Sender<Arc<ReplicatedState>>,
    credentials: Arc<Credentials>,
    limits: Limits,
    /// The last applied index with the state version it produced, set
    /// together: what `status` reports, so versions compare across nodes.
    applied_at: crate::state::AppliedAt,
    /// Why this node's log split from its leader's, once it has.
    diverged: Diverged,
    /// Lets one large write body in at a time: decoding a spec takes many
    /// times its size in memory.
    big_writes: Arc<tokio::sync::Semaphore>,
    /// Held while a spec is committed in parts.
    spec_parts: tokio::sync::Mutex<()>,
    /// The last time this node stamped a probe report as leader: the
    /// monotonic instant, the cluster time it gave, and the term.
    last_stamp: std::sync::Mutex<Option<(std::time::Instant, u64, u64)>>,
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open the Raft store at {path}: {message}")]
    Store { path: PathBuf, message: String },
    #[error(
        "the Raft store at {path} is in use: {message} (is another meridian using this data_dir?)"
    )]
    Locked { path: PathBuf, message: String },
    /// The store failed its checks: this node cannot vouch for what it
    /// acknowledged, so it must not take part until it is rebuilt.
    #[error(
        "the Raft store at {path} is damaged: {message}\n\
         This node cannot vouch for what it acknowledged, so it will not start. To recover: \
         remove it from the cluster (meridian cluster leave --id ID, on a healthy node), \
         delete {path} and the snapshots beside it, and start it again with `join:` \
         (a new id is safest): it comes back through a snapshot from the leader."
    )]
    Corrupt { path: PathBuf, message: String },
    #[error(
        "cannot start Raft: {0}\n\
         If the store is damaged (the message names a log index or a snapshot), rebuild this \
         node: remove it from the cluster (meridian cluster leave --id ID, on a healthy node), \
         delete its data_dir/raft and data_dir/snapshots, and start it again with `join:`."
    )]
    Raft(String),
}

impl StartError {
    fn from_engine(path: &std::path::Path, e: EngineError) -> StartError {
        let path = path.to_path_buf();
        match e {
            EngineError::Corrupt(message) => StartError::Corrupt { path, message },
            EngineError::Locked(message) => StartError::Locked { path, message },
            EngineError::Io(message) => StartError::Store { path, message },
        }
    }
}

/// Opens the log store on `engine`, checks it whole, and starts Raft on it.
async fn start_raft<E: KvEngine>(
    engine: &E,
    path: &std::path::Path,
    id: NodeId,
    config: Arc<Config>,
    network: HttpNetwork,
    sm: StateMachine,
) -> Result<(Raft<TypeConfig>, Arc<AtomicU64>, Diverged), StartError> {
    let store_err = |message: String| StartError::Store {
        path: path.to_path_buf(),
        message,
    };
    let log = LogStore::new(engine).map_err(|e| store_err(e.to_string()))?;
    log.verify().map_err(|message| StartError::Corrupt {
        path: path.to_path_buf(),
        message,
    })?;
    let appended = log.appended_bytes();
    let diverged = log.diverged();
    let raft = Raft::new(id, config, network, log, sm)
        .await
        .map_err(|e| StartError::Raft(e.to_string()))?;
    Ok((raft, appended, diverged))
}

impl ClusterNode {
    /// Opens the node's store and starts Raft. `publish` gets the current
    /// state at once and every new state after it.
    pub async fn start(
        opts: NodeOptions,
        publish: impl Fn(&ReplicatedState) + Send + Sync + 'static,
    ) -> Result<ClusterNode, StartError> {
        let store_path = opts.data_dir.join("raft");
        let snapshots = opts.data_dir.join("snapshots");
        let mut sm = StateMachine::open(&snapshots).map_err(|e| StartError::Corrupt {
            path: snapshots.join("current.snapshot"),
            message: e.to_string(),
        })?;
        publish(sm.state());
        let (state, _) = tokio::sync::watch::channel(Arc::new(sm.state().clone()));
        let notify = state.clone();
        let applied_at = sm.applied_at();
        let creds = opts.credentials.clone();
        creds.set_replicated(&sm.state().tokens);
        sm.on_change(move |s| {
            creds.set_replicated(&s.tokens);
            notify.send_replace(Arc::new(s.clone()));
            publish(s);
        });
        let t = &opts.timing;
        let config = Config {
            cluster_name: "meridian".into(),
            heartbeat_interval: millis(t.heartbeat),
            election_timeout_min: millis(t.election_timeout),
            election_timeout_max: millis(t.election_timeout) * 2,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(t.snapshot_every),
            max_in_snapshot_log_to_keep: t.snapshot_every,
            install_snapshot_timeout: millis(t.write_timeout),
            max_payload_entries: network::MAX_PAYLOAD_ENTRIES,
            snapshot_max_chunk_size: network::SNAPSHOT_CHUNK,
            ..Default::default()
        }
        .validate()
        .map_err(|e| StartError::Raft(e.to_string()))?;
        let client = tls::http_client(opts.tls.as_ref(), opts.secret.as_deref());
        let scheme = if opts.tls.is_some() { "https" } else { "http" };
        let network = HttpNetwork::new(client.clone(), scheme);
        let config = Arc::new(config);
        // a store sled already holds stays on sled; every new one is a
        // journal (see `engine` for why)
        let (raft, appended, diverged) =
            if store_path.join("db").exists() && store_path.join("conf").exists() {
                warn!(
                    path = %store_path.display(),
                    "this Raft store is on sled, which does not sync what it acknowledges to disk; \
                     rebuild the node (leave, wipe, join) to move it to the journal"
                );
                let engine =
                    Sled::open(&store_path).map_err(|e| StartError::from_engine(&store_path, e))?;
                start_raft(&engine, &store_path, opts.id, config, network, sm).await?
            } else {
                let engine = Journal::open(&store_path)
                    .map_err(|e| StartError::from_engine(&store_path, e))?;
                start_raft(&engine, &store_path, opts.id, config, network, sm).await?
            };
        tokio::spawn(compact_by_bytes(
            raft.clone(),
            appended,
            opts.timing.snapshot_bytes,
        ));
        Ok(ClusterNode {
            inner: Arc::new(Inner {
                raft,
                id: opts.id,
                advertise: opts.advertise,
                client,
                scheme,
                tls: opts.tls,
                timing: opts.timing,
                check_spec: opts.check_spec,
                contact: Arc::new(Contact::default()),
                state,
                credentials: opts.credentials,
                limits: opts.limits,
                applied_at,
                diverged,
                big_writes: Arc::new(tokio::sync::Semaphore::new(1)),
                spec_parts: tokio::sync::Mutex::new(()),
                last_stamp: std::sync::Mutex::new(None),
            }),
        })
    }

    pub fn id(&self) -> NodeId {
        self.inner.id
    }

    pub fn raft(&self) -> &Raft<TypeConfig> {
        &self.inner.raft
    }

    /// The version of the state this node has applied.
    pub fn version(&self) -> u64 {
        self.inner.state.borrow().version
    }

    /// The state this node has applied.
    pub fn state(&self) -> Arc<ReplicatedState> {
        self.inner.state.borrow().clone()
    }

    /// Every state this node applies from now on.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<Arc<ReplicatedState>> {
        self.inner.state.subscribe()
    }

    /// Who may call this node.
    pub fn credentials(&self) -> &Arc<Credentials> {
        &self.inner.credentials
    }

    /// Serves the Raft RPCs, the cluster API and `extra` routes on
    /// `listener` (with TLS when configured), within the node's listener
    /// limits, until the process ends.
    pub fn serve(&self, listener: TcpListener, extra: Router) {
        let app = self
            .router()
            .merge(extra)
            .layer(axum::middleware::from_fn(http::errors_as_json));
        let tls = self.inner.tls.as_ref().map(|t| t.server.clone());
        let limits = self.inner.limits.clone();
        let metrics = self.inner.raft.metrics();
        let peers: http::Peers = Arc::new(move |ip| {
            let m = metrics.borrow();
            let members = m.membership_config.membership();
            let found = members
                .nodes()
                .any(|(_, n)| host_of(&n.addr).parse::<std::net::IpAddr>() == Ok(ip));
            found
        });
        tokio::spawn(http::serve(listener, tls, app, limits, peers));
    }

    fn router(&self) -> Router {
        let creds = &self.inner.credentials;
        let read = Router::new().route("/cluster/status", get(status_route));
        let write = Router::new()
            .route("/cluster/write", post(write_route))
            .layer(DefaultBodyLimit::max(WRITE_LIMIT))
            .layer(axum::middleware::from_fn_with_state(
                self.inner.big_writes.clone(),
                one_big_write_at_a_time,
            ));
        let admin = Router::new()
            .route("/cluster/join", post(join_route))
            .route("/cluster/leave", post(leave_route))
            .route("/cluster/backup", get(backup_route));
        // a whole state may be large; only an operator restores one
        let restore = Router::new()
            .route("/cluster/restore", post(restore_route))
            .layer(DefaultBodyLimit::max(RESTORE_LIMIT))
            .layer(axum::middleware::from_fn_with_state(
                self.inner.big_writes.clone(),
                one_big_write_at_a_time,
            ));
        let init = Router::new().route("/cluster/init", post(init_route));
        let api = http::guarded(read, creds, Need::Scope(Scope::Read))
            .merge(http::guarded(write, creds, Need::Scope(Scope::Write)))
            .merge(http::guarded(admin, creds, Need::Scope(Scope::Admin)))
            .merge(http::guarded(init, creds, Need::ClientScope(Scope::Admin)))
            .merge(http::guarded(
                restore,
                creds,
                Need::ClientScope(Scope::Admin),
            ))
            .layer(DefaultBodyLimit::max(API_LIMIT))
            .with_state(self.clone());
        let raft = network::routes(self.inner.raft.clone(), self.inner.contact.clone());
        http::guarded(raft, creds, Need::Node).merge(api)
    }

    /// The cluster time for a probe report this leader is about to
    /// propose: its wall clock, but never behind the cluster's clock and
    /// never further ahead of the last stamp than the time that really
    /// passed since it (a monotonic clock), so a wall clock that jumps
    /// ahead cannot pin the freshness of every vote.
    pub(crate) fn stamp(&self, wall_ms: u64) -> u64 {
        let floor = self.inner.state.borrow().health.now_ms;
        let term = self.inner.raft.metrics().borrow().current_term;
        let mut last = self
            .inner
            .last_stamp
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        // a stamp of an earlier leadership says nothing of this one's time
        if last.is_some_and(|(_, _, t)| t != term) {
            *last = None;
        }
        let ceiling = match *last {
            Some((at, ms, _)) => ms
                .saturating_add(millis(at.elapsed()))
                .saturating_add(STAMP_SLACK_MS),
            // the first stamp of this leadership: allow a bounded step
            None if floor == 0 => wall_ms,
            None => floor.saturating_add(FIRST_STAMP_STEP_MS),
        };
        let stamped = wall_ms.min(ceiling).max(floor);
        *last = Some((std::time::Instant::now(), stamped, term));
        stamped
    }

    /// Commits `cmd` through the leader, wherever it is.
    pub async fn write(&self, cmd: Command) -> Result<Written, ClusterError> {
        self.write_from(cmd, false).await
    }

    async fn write_from(&self, cmd: Command, forwarded: bool) -> Result<Written, ClusterError> {
        self.on_leader("/cluster/write", &cmd, forwarded, || {
            self.write_local(cmd.clone())
        })
        .await
    }

    async fn write_local(&self, mut cmd: Command) -> Result<Written, OpError> {
        self.check_quorum()?;
        if let Command::Observe { at_ms, report } = &mut cmd {
            // checked again here: a forwarded report skipped this node's
            // probe API
            crate::probe_api::check_report(report).map_err(ClusterError::Rejected)?;
            if self.inner.raft.metrics().borrow().state != ServerState::Leader {
                return Err(OpError::NotLeader(leader_of(
                    &self.inner.raft.metrics().borrow(),
                )));
            }
            // the leader's own clock, whatever the request said
            *at_ms = self.stamp(wall_now_ms());
        }
        let leader = self.inner.raft.metrics().borrow().state == ServerState::Leader;
        if let (Command::ReplaceSpec(spec) | Command::SeedSpec(spec), Some(check)) =
            (&cmd, &self.inner.check_spec)
        {
            // only the leader checks: a follower forwards the spec as it is
            if leader {
                check(spec).map_err(|e| ClusterError::Rejected(format!("invalid spec: {e}")))?;
            }
        }
        if let Command::Api(change) = &mut cmd {
            if !leader {
                return Err(OpError::NotLeader(leader_of(
                    &self.inner.raft.metrics().borrow(),
                )));
            }
            change.at_ms = wall_now_ms();
            // a patch or a token is checked in place; anything else
            // validates the whole spec: off the async threads
            match (&change.target, &change.op) {
                (Target::Token { .. }, _) | (_, Op::PatchEndpoint { .. }) => {
                    self.check_change(change)?
                }
                _ => {
                    let (node, c) = (self.clone(), (**change).clone());
                    tokio::task::spawn_blocking(move || node.check_change(&c))
                        .await
                        .map_err(|e| ClusterError::Failed(format!("checking a change: {e}")))??
                }
            }
            // a whole spec too large for one entry goes in parts
            if let (Target::Spec, Op::Put(Resource::Spec(spec))) = (&change.target, &change.op) {
                let text = serde_json::to_string(spec)
                    .map_err(|e| ClusterError::Failed(format!("encoding the spec: {e}")))?;
                if text.len() > SPEC_PART_BYTES {
                    let mut end = change.clone();
                    end.op = Op::Delete;
                    return self
                        .write_in_parts(
                            &text,
                            PartsEnd::Spec {
                                seed: false,
                                change: Some(end),
                            },
                        )
                        .await;
                }
            }
        }
        // a backup: its spec checked as any spec is, and in parts when it
        // is too large for one entry
        if let Command::Restore { backup, force } = &cmd {
            backup.check().map_err(ClusterError::Rejected)?;
            // a clock ahead of this one would freeze every vote's age
            let ahead = backup.state.health.now_ms.saturating_sub(wall_now_ms());
            if ahead > 5 * 60 * 1000 {
                return Err(ClusterError::Rejected(format!(
                    "the backup's health clock is {} s ahead of this node's",
                    ahead / 1000
                ))
                .into());
            }
            if let (true, Some(check)) = (leader, &self.inner.check_spec) {
                check(&backup.state.spec).map_err(|e| {
                    ClusterError::Rejected(format!("the backup's spec is invalid: {e}"))
                })?;
            }
            let text = serde_json::to_string(backup)
                .map_err(|e| ClusterError::Failed(format!("encoding the backup: {e}")))?;
            if text.len() > SPEC_PART_BYTES {
                return self
                    .write_in_parts(&text, PartsEnd::Restore { force: *force })
                    .await;
            }
        }
        // a spec too large for one entry goes in parts (see `SpecPart`)
        if let Command::ReplaceSpec(spec) | Command::SeedSpec(spec) = &cmd {
            let seed = matches!(cmd, Command::SeedSpec(_));
            let text = serde_json::to_string(spec)
                .map_err(|e| ClusterError::Failed(format!("encoding the spec: {e}")))?;
            if text.len() > SPEC_PART_BYTES {
                return self
                    .write_in_parts(&text, PartsEnd::Spec { seed, change: None })
                    .await;
            }
        }
        self.propose(cmd).await
    }

    /// The leader's check of an API change before it is proposed: what the
    /// state machine will check (precondition, rules), and this node's
    /// whole spec check (address policy, that DNS can index it).
    pub fn check_change(&self, change: &Change) -> Result<(), ClusterError> {
        let state = self.state();
        if change.precondition != resources::Precondition::None {
            let current = resources::read(&state.spec, &state.tokens, &change.target);
            resources::check_precondition(current.as_ref(), &change.precondition)
                .map_err(ClusterError::Refused)?;
        }
        // tokens touch no spec; a patch sets only unconstrained fields
        // (see `resources::patch_endpoint`): it needs the endpoint only
        match (&change.target, &change.op) {
            (Target::Token { .. }, _) => return Ok(()),
            (Target::Endpoint { pool, id }, Op::PatchEndpoint { .. }) => {
                let exists = state
                    .spec
                    .pools
                    .get(pool)
                    .is_some_and(|p| p.endpoints.iter().any(|e| e.id == *id));
                return if exists {
                    Ok(())
                } else {
                    Err(ClusterError::Refused(Refusal::new(
                        RefusalKind::NotFound,
                        format!("no {}", change.target),
                    )))
                };
            }
            _ => {}
        }
        let mut spec = state.spec.clone();
        resources::apply_to_spec(&mut spec, &change.target, &change.op)
            .map_err(ClusterError::Refused)?;
        if spec == state.spec {
            return Ok(());
        }
        if spec.zones.is_empty() && !state.spec.zones.is_empty() && !change.allow_empty {
            return Err(ClusterError::Refused(Refusal {
                kind: RefusalKind::Conflict,
                message: format!(
                    "this change leaves no zones: it would take all {} zones out of DNS; \
                     apply with allow_empty=true if that is meant",
                    state.spec.zones.len()
                ),
                field: Some("zones".into()),
            }));
        }
        // what a spec may weigh, with room for patches (which are not
        // weighed) to grow it: so the spec read can always be applied back
        let size = serde_json::to_vec(&meridian_config::zone::export::export(&spec))
            .map_or(usize::MAX, |v| v.len());
        if size > MAX_SPEC_TEXT - PATCH_HEADROOM {
            return Err(ClusterError::TooLarge(format!(
                "the spec would be {size} bytes; a spec is at most {} bytes",
                MAX_SPEC_TEXT - PATCH_HEADROOM
            )));
        }
        let kind = match change.op {
            Op::Delete => RefusalKind::Conflict,
            _ => RefusalKind::Invalid,
        };
        // the node's check holds the rules and more; without one, the rules
        let whole = match &self.inner.check_spec {
            Some(check) => check(&spec),
            None => meridian_config::zone::rules::check(&spec),
        };
        whole.map_err(|v| ClusterError::Refused(resources::refusal_of(kind, v)))
    }

    /// Commits one command through this node's Raft, within the write
    /// timeout.
    async fn propose(&self, cmd: Command) -> Result<Written, OpError> {
        let t = self.inner.timing.write_timeout;
        let written = tokio::time::timeout(t, self.inner.raft.client_write(cmd))
            .await
            .map_err(|_| no_commit(t))?
            .map_err(from_raft)?;
        match written.data {
            Response::Applied { version } => Ok(Written {
                version,
                index: written.log_id.index,
            }),
            Response::Rejected { reason } => Err(ClusterError::Rejected(reason).into()),
            Response::Refused(r) => Err(ClusterError::Refused(r).into()),
            Response::Nothing => Ok(Written {
                version: self.version(),
                index: written.log_id.index,
            }),
        }
    }

    /// Commits a large spec as parts of at most [`SPEC_PART_BYTES`] and an
    /// end that applies it. The parts change nothing until the end
    /// commits; a spec left half-sent (this leader died) is dropped when
    /// others arrive.
    async fn write_in_parts(&self, text: &str, end: PartsEnd) -> Result<Written, OpError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        // one spec in parts at a time: parts of two would take turns and
        // the state keeps only a few unfinished ones
        if text.len() > MAX_SPEC_TEXT {
            return Err(ClusterError::TooLarge(format!(
                "the spec is {} bytes; a spec is at most {MAX_SPEC_TEXT} bytes",
                text.len()
            ))
            .into());
        }
        let _one = self.inner.spec_parts.lock().await;
        // unique across leaders: the term, this node, a counter
        let term = self.inner.raft.metrics().borrow().current_term;
        let id = (term << 32) ^ (self.inner.id << 20) ^ NEXT.fetch_add(1, Ordering::Relaxed);
        let mut seq = 0u32;
        let mut rest = text;
        while !rest.is_empty() {
            let mut cut = rest.len().min(SPEC_PART_BYTES);
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
            let (part, tail) = rest.split_at(cut);
            self.propose(Command::SpecPart {
                id,
                seq,
                text: part.to_string(),
            })
            .await?;
            seq += 1;
            rest = tail;
        }
        let end = match end {
            PartsEnd::Spec { seed, change } => Command::SpecEnd {
                id,
                parts: seq,
                seed,
                change,
            },
            PartsEnd::Restore { force } => Command::RestoreEnd {
                id,
                parts: seq,
                force,
            },
        };
        self.propose(end).await
    }

    /// A leader that has not heard from a majority for longer than an
    /// election takes refuses at once instead of waiting out the timeout.
    fn check_quorum(&self) -> Result<(), ClusterError> {
        let m = self.inner.raft.metrics().borrow().clone();
        let voters = m.membership_config.membership().voter_ids().count();
        let limit = millis(self.inner.timing.election_timeout) * 2;
        match m.millis_since_quorum_ack {
            Some(ms) if m.state == ServerState::Leader && voters > 1 && ms > limit => {
                Err(ClusterError::Unavailable(format!(
                    "no quorum: a majority of the {voters} voters has not answered for {ms} ms; \
                     the write was not attempted"
                )))
            }
            _ => Ok(()),
        }
    }

    /// Runs `local` here; if this node is not the leader, sends the request
    /// to the leader instead. While there is no leader, or the leader it
    /// knows cannot be connected to (the request never left), it waits up
    /// to the write timeout for one and tries again: a command given right
    /// after the leader stopped waits out the election instead of failing.
    async fn on_leader<Req: Serialize, T: DeserializeOwned, F>(
        &self,
        path: &str,
        req: &Req,
        forwarded: bool,
        local: impl Fn() -> F,
    ) -> Result<T, ClusterError>
    where
        F: Future<Output = Result<T, OpError>>,
    {
        let deadline = tokio::time::Instant::now() + self.inner.timing.write_timeout;
        loop {
            let failed = match local().await {
                Ok(v) => return Ok(v),
                Err(OpError::Cluster(e)) => return Err(e),
                Err(OpError::NotLeader(_)) if forwarded => {
                    return Err(ClusterError::Unavailable(
                        "leadership is changing; retry".into(),
                    ))
                }
                Err(OpError::NotLeader(None)) => (
                    None,
                    ClusterError::Unavailable(
                        "no leader: an election is under way, or a majority of the cluster \
                         is unreachable"
                            .into(),
                    ),
                ),
                Err(OpError::NotLeader(Some((id, addr)))) => {
                    let url = format!("{}://{addr}{path}", self.inner.scheme);
                    let sent = self
                        .inner
                        .client
                        .post(url)
                        .header(FORWARDED, "1")
                        .timeout(self.inner.timing.write_timeout + Duration::from_secs(20))
                        .json(req)
                        .send()
                        .await;
                    match sent {
                        Ok(sent) => return decode(sent).await,
                        Err(e) => {
                            let error = ClusterError::Unavailable(format!(
                                "the leader (node {id} at {addr}) is unreachable: {e}"
                            ));
                            // sent, or perhaps sent: never twice
                            if !e.is_connect() {
                                return Err(error);
                            }
                            (Some(id), error)
                        }
                    }
                }
            };
            let (gone, error) = failed;
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Err(error);
            }
            // a leader this node can address (a member it knows), other
            // than the one it could not reach
            let another = self
                .inner
                .raft
                .wait(Some(left))
                .metrics(
                    |m| leader_of(m).is_some_and(|(l, _)| Some(l) != gone),
                    "a leader to forward to",
                )
                .await;
            if another.is_err() {
                return Err(error);
            }
            // the metrics may say so before the leader knows it leads: one
            // heartbeat between tries, so the loop never spins
            tokio::time::sleep(self.inner.timing.heartbeat.min(left)).await;
        }
    }

    /// Initializes a pristine cluster with `members` (this node alone when
    /// empty).
    pub async fn init(&self, members: BTreeMap<NodeId, String>) -> Result<(), ClusterError> {
        let members: BTreeMap<NodeId, BasicNode> = if members.is_empty() {
            BTreeMap::from([(self.inner.id, BasicNode::new(&self.inner.advertise))])
        } else {
            members
                .into_iter()
                .map(|(id, a)| (id, BasicNode::new(a)))
                .collect()
        };
        match self.inner.raft.initialize(members).await {
            Ok(()) => Ok(()),
            Err(RaftError::APIError(InitializeError::NotAllowed(n))) => Err(
                ClusterError::Conflict(format!("the cluster is already initialized ({n})")),
            ),
            Err(e) => Err(ClusterError::Failed(e.to_string())),
        }
    }

    /// Adds node `id` at `addr`: as a learner, then, once it has caught
    /// up, as a voter. Never waits longer than the join bound, even when
    /// the new node is unreachable.
    pub async fn join(&self, id: NodeId, addr: String) -> Result<(), ClusterError> {
        self.join_from(id, addr, false).await
    }

    async fn join_from(&self, id: NodeId, addr: String, fwd: bool) -> Result<(), ClusterError> {
        let req = JoinRequest {
            id,
            addr: addr.clone(),
        };
        self.on_leader("/cluster/join", &req, fwd, || {
            self.join_local(id, addr.clone())
        })
        .await
    }

    async fn join_local(&self, id: NodeId, addr: String) -> Result<(), OpError> {
        let raft = &self.inner.raft;
        let m = raft.metrics().borrow().clone();
        if m.state != ServerState::Leader {
            return Err(OpError::NotLeader(leader_of(&m)));
        }
        let membership = m.membership_config.membership();
        if let Some(node) = membership.get_node(&id) {
            if node.addr != addr {
                return Err(ClusterError::Conflict(format!(
                    "node {id} is already a member at {}; remove it first (meridian cluster leave --id {id})",
                    node.addr
                ))
                .into());
            }
            if membership.voter_ids().any(|v| v == id) {
                return Ok(());
            }
        }
        let t = self.inner.timing.write_timeout;
        tokio::time::timeout(t, raft.add_learner(id, BasicNode::new(&addr), false))
            .await
            .map_err(|_| no_commit(t))?
            .map_err(from_raft)?;
        let target = raft.metrics().borrow().last_log_index;
        let bound = join_bound(&self.inner.timing);
        let caught_up = raft
            .wait(Some(bound))
            .metrics(
                |m| {
                    let matched = m
                        .replication
                        .as_ref()
                        .and_then(|r| r.get(&id).copied().flatten());
                    matched.map(|l| l.index) >= target
                },
                "the new node caught up",
            )
            .await;
        if caught_up.is_err() {
            return Err(ClusterError::Unavailable(format!(
                "node {id} at {addr} has not caught up within {} s: is it running and reachable \
                 from the leader? It stays a learner until it catches up or is removed \
                 (meridian cluster leave --id {id})",
                bound.as_secs()
            ))
            .into());
        }
        tokio::time::timeout(
            t,
            raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false),
        )
        .await
        .map_err(|_| no_commit(t))?
        .map_err(from_raft)?;
        info!(id, %addr, "node joined as a voter");
        Ok(())
    }

    /// Removes node `id` from the cluster.
    pub async fn leave(&self, id: NodeId) -> Result<(), ClusterError> {
        self.leave_from(id, false).await
    }

    async fn leave_from(&self, id: NodeId, fwd: bool) -> Result<(), ClusterError> {
        self.on_leader("/cluster/leave", &LeaveRequest { id }, fwd, || {
            self.leave_local(id)
        })
        .await
    }

    async fn leave_local(&self, id: NodeId) -> Result<(), OpError> {
        let raft = &self.inner.raft;
        let m = raft.metrics().borrow().clone();
        if m.state != ServerState::Leader {
            return Err(OpError::NotLeader(leader_of(&m)));
        }
        let membership = m.membership_config.membership();
        let change = if membership.voter_ids().any(|v| v == id) {
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else if membership.get_node(&id).is_some() {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        } else {
            return Err(ClusterError::Rejected(format!("node {id} is not a member")).into());
        };
        let t = self.inner.timing.write_timeout;
        tokio::time::timeout(t, raft.change_membership(change, false))
            .await
            .map_err(|_| no_commit(t))?
            .map_err(from_raft)?;
        info!(id, "node removed from the cluster");
        Ok(())
    }

    /// A node started with `join:` waits for an admin to add it: a node
    /// certificate (or the cluster secret) is not enough to join, as in
    /// etcd, where a member is added before it starts. Logs what to run
    /// until the node is a voter.
    pub async fn join_via(self, addr: String) {
        let mut ticks = tokio::time::interval(Duration::from_secs(10));
        loop {
            ticks.tick().await;
            let voter = {
                let m = self.inner.raft.metrics().borrow().clone();
                let ms = m.membership_config.membership();
                ms.voter_ids().any(|v| v == self.inner.id)
            };
            if voter {
                info!("joined the cluster");
                return;
            }
            info!(
                "waiting to be added to the cluster: run `meridian cluster join --id {} --addr {} --api {addr}` with an admin credential",
                self.inner.id, self.inner.advertise
            );
        }
    }

    /// This node's view of the cluster.
    pub fn status(&self) -> Status {
        let m = self.inner.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let members = membership
            .nodes()
            .map(|(id, n)| {
                (
                    *id,
                    Member {
                        addr: n.addr.clone(),
                        voter: voters.contains(id),
                    },
                )
            })
            .collect();
        let (applied_index, version) = *self
            .inner
            .applied_at
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let stale_ms = if m.state == ServerState::Leader {
            m.millis_since_quorum_ack
        } else {
            self.inner
                .contact
                .since()
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        };
        Status {
            id: m.id,
            addr: self.inner.advertise.clone(),
            role: match m.state {
                ServerState::Leader => "leader",
                ServerState::Follower => "follower",
                ServerState::Candidate => "candidate",
                ServerState::Learner => "learner",
                ServerState::Shutdown => "shutdown",
            }
            .into(),
            term: m.current_term,
            leader: m.current_leader,
            last_log_index: m.last_log_index,
            applied_index,
            version,
            snapshot_index: m.snapshot.map(|l| l.index),
            purged_index: m.purged.map(|l| l.index),
            members,
            matched: m
                .replication
                .as_ref()
                .map(|r| r.iter().map(|(id, l)| (*id, l.map(|l| l.index))).collect()),
            stale_ms,
            diverged: self
                .inner
                .diverged
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }

    /// Logs when this node loses and regains contact with a working
    /// cluster, checking once a second; DNS keeps answering either way.
    pub async fn watch_staleness(self) {
        let limit = 3 * millis(self.inner.timing.election_timeout) * 2;
        let mut stale = false;
        // staleness is the absence of events (no append arrives), so it is
        // found by looking, not by waiting on one
        let mut ticks = tokio::time::interval(Duration::from_secs(1));
        loop {
            ticks.tick().await;
            let s = self.status();
            let now_stale = match s.stale_ms {
                Some(ms) => ms > limit,
                None => s.members.len() > 1,
            };
            if now_stale && !stale {
                warn!(
                    version = s.version,
                    stale_ms = s.stale_ms,
                    "lost contact with the cluster; DNS answers from the last applied state"
                );
            } else if stale && !now_stale {
                info!(version = s.version, "back in contact with the cluster");
            }
            stale = now_stale;
        }
    }

    /// On the leader, replaces the DNS cookie secret when there is none
    /// or it is `every` old, checking once a second while the cluster has
    /// none, then once a minute. Every node serves the replicated secrets;
    /// a follower only waits for them.
    pub async fn rotate_cookie_secrets(self, every: Duration) {
        loop {
            let pause = if self.state().cookies.current.is_none() {
                Duration::from_secs(1)
            } else {
                Duration::from_secs(60)
            };
            tokio::time::sleep(pause).await;
            let s = self.status();
            if s.leader != Some(s.id) {
                continue;
            }
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            let cookies = self.state().cookies;
            let due = cookies.current.is_none()
                || now_ms.saturating_sub(cookies.rotated_at_ms) >= every.as_millis() as u64;
            if !due {
                continue;
            }
            let secret = crate::auth::random::<16>();
            match self
                .write(Command::RotateCookieSecret {
                    at_ms: now_ms,
                    secret,
                })
                .await
            {
                Ok(_) => info!("DNS cookie secret rotated"),
                Err(e) => {
                    warn!(%e, "cannot rotate the DNS cookie secret; trying again in a minute")
                }
            }
        }
    }

    pub async fn shutdown(&self) {
        let _ = self.inner.raft.shutdown().await;
    }
}

fn leader_of(m: &openraft::RaftMetrics<NodeId, BasicNode>) -> Option<(NodeId, String)> {
    let id = m.current_leader?;
    let node = m.membership_config.membership().get_node(&id)?;
    Some((id, node.addr.clone()))
}

fn no_commit(t: Duration) -> ClusterError {
    ClusterError::Unavailable(format!(
        "not committed within {} ms: a majority of the cluster is unreachable; \
         the change applies later if they come back before a new leader is elected",
        t.as_millis()
    ))
}

/// How long a join waits for the new node to catch up.
fn join_bound(t: &Timing) -> Duration {
    t.write_timeout * 3
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// This machine's wall clock, ms since the Unix epoch.
fn wall_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The largest piece of a spec in one log entry: small enough to cross
/// to a follower and be synced there well within one heartbeat interval,
/// which is all openraft gives an append.
pub const SPEC_PART_BYTES: usize = 256 * 1024;

/// Body limit of `/cluster/write`: a whole zone spec.
pub const WRITE_LIMIT: usize = 16 * 1024 * 1024;

/// Body limit of `/cluster/restore`: the largest spec and the rest of a
/// state (health, tokens, the audit log). A restore this large must be
/// sent to the leader (`meridian cluster restore` sends it there): a
/// follower forwards at most [`WRITE_LIMIT`].
const RESTORE_LIMIT: usize = MAX_SPEC_TEXT + (16 << 20);

/// What the parts of a large write become once they are all in.
enum PartsEnd {
    /// A spec: seeded, replaced, or the resource of an API change.
    Spec {
        seed: bool,
        change: Option<Box<Change>>,
    },
    /// A backup to restore.
    Restore { force: bool },
}

/// Body limit of the other cluster API routes.
const API_LIMIT: usize = 64 * 1024;

/// How far ahead of the time that passed (by the monotonic clock) a
/// leader's stamps may run: scheduling noise.
const STAMP_SLACK_MS: u64 = 1000;

/// How far past the cluster's clock a new leader's first stamp may go.
const FIRST_STAMP_STEP_MS: u64 = 60_000;

/// Builds a snapshot once `budget` bytes were appended since the last one,
/// then purges the log up to that snapshot (ignoring the entries openraft
/// keeps after a count-triggered one: a follower that far behind gets the
/// snapshot, which is smaller than the log it replaces). Ends with the
/// Raft.
async fn compact_by_bytes(raft: Raft<TypeConfig>, appended: Arc<AtomicU64>, budget: u64) {
    let mut metrics = raft.metrics();
    let mut snapshot = metrics.borrow().snapshot.map(|l| l.index);
    // the count at the last snapshot, and at the pending request (asked
    // again if that snapshot never comes)
    let mut since = appended.load(Ordering::Relaxed);
    let mut requested: Option<u64> = None;
    while metrics.changed().await.is_ok() {
        let now = metrics.borrow_and_update().snapshot.map(|l| l.index);
        let bytes = appended.load(Ordering::Relaxed);
        if now != snapshot {
            snapshot = now;
            since = bytes;
            if let (Some(_), Some(upto)) = (requested.take(), now) {
                info!(
                    upto,
                    "the log passed its byte budget: purging it up to the new snapshot"
                );
                if raft.trigger().purge_log(upto).await.is_err() {
                    return;
                }
            }
        } else if bytes - requested.unwrap_or(since) > budget {
            requested = Some(bytes);
            if raft.trigger().snapshot().await.is_err() {
                return;
            }
        }
    }
}

/// Reads a cluster API response: the value, or the error it carries.
pub async fn decode<T: DeserializeOwned>(resp: reqwest::Response) -> Result<T, ClusterError> {
    let status = resp.status();
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| ClusterError::Unavailable(format!("reading the response: {e}")))?;
    if status.is_success() {
        return serde_json::from_slice(&bytes)
            .map_err(|e| ClusterError::Failed(format!("unexpected response: {e}")));
    }
    Err(
        serde_json::from_slice::<ClusterError>(&bytes).unwrap_or_else(|_| {
            ClusterError::Failed(format!(
                "HTTP {status}: {}",
                String::from_utf8_lossy(&bytes).trim()
            ))
        }),
    )
}

/// Bodies larger than this (or of unknown length) wait for
/// [`Inner::big_writes`]; small writes (weights, states) never do.
const BIG_WRITE: u64 = SPEC_PART_BYTES as u64;

async fn one_big_write_at_a_time(
    State(gate): State<Arc<tokio::sync::Semaphore>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> HttpResponse {
    let len = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if len.is_some_and(|n| n <= BIG_WRITE) {
        return next.run(req).await;
    }
    match gate.acquire_owned().await {
        Ok(_permit) => next.run(req).await,
        Err(_) => ClusterError::Unavailable("the node is shutting down".into()).into_response(),
    }
}

/// Whether a request was forwarded by another node: only a node's word
/// counts.
fn forwarded(headers: &HeaderMap, principal: &Principal) -> bool {
    headers.contains_key(FORWARDED)
        && matches!(principal, Principal::Node { .. } | Principal::Insecure)
}

/// A node's own requests are forwards (or its joining itself), and only a
/// member's: anything else a node sends is not its business.
fn node_must_forward(
    node: &ClusterNode,
    headers: &HeaderMap,
    principal: &Principal,
    what: &str,
) -> Result<(), ClusterError> {
    match principal {
        Principal::Node { name, .. } if !headers.contains_key(FORWARDED) => Err(
            ClusterError::Forbidden(format!("node {name} may not {what} on its own account")),
        ),
        Principal::Node { .. } => network::check_member(&node.inner.raft, principal, None),
        _ => Ok(()),
    }
}

async fn status_route(State(node): State<ClusterNode>) -> Json<Status> {
    Json(node.status())
}

/// The whole state this node applied, with its version: what `meridian
/// cluster backup` writes. It holds token hashes and the cookie secrets:
/// admins only.
async fn backup_route(State(node): State<ClusterNode>) -> Json<crate::state::Backup> {
    Json(crate::state::Backup::of(&node.state(), wall_now_ms()))
}

#[derive(Debug, Deserialize)]
struct RestoreQuery {
    #[serde(default)]
    force: bool,
}

/// Restores a backup (`meridian cluster restore`): onto a cluster with no
/// spec, or any with `?force=true`.
async fn restore_route(
    State(node): State<ClusterNode>,
    axum::extract::Query(q): axum::extract::Query<RestoreQuery>,
    body: String,
) -> Result<Json<Written>, ClusterError> {
    let backup = crate::state::Backup::parse(&body).map_err(ClusterError::Rejected)?;
    node.write(Command::Restore {
        backup: Box::new(backup),
        force: q.force,
    })
    .await
    .map(Json)
}

async fn write_route(
    State(node): State<ClusterNode>,
    Extension(principal): Extension<Principal>,
    peer: Option<Extension<http::Peer>>,
    headers: HeaderMap,
    Json(cmd): Json<Command>,
) -> Result<Json<Written>, ClusterError> {
    node_must_forward(&node, &headers, &principal, "write")?;
    // small commands stay small: only a spec may be large
    if let Command::SetWeight { pool, endpoint, .. }
    | Command::SetAdminState { pool, endpoint, .. } = &cmd
    {
        if pool.len() > 255 || endpoint.len() > 255 {
            return Err(ClusterError::Rejected(
                "pool and endpoint names are at most 255 bytes".into(),
            ));
        }
    }
    // parts of a spec are the leader's own
    if matches!(
        cmd,
        Command::SpecPart { .. } | Command::SpecEnd { .. } | Command::RestoreEnd { .. }
    ) {
        return Err(ClusterError::Forbidden(
            "spec parts are made by the leader; send the whole spec".into(),
        ));
    }
    let forwarded = forwarded(&headers, &principal);
    // a cookie secret is the leader's to make, a restore an admin's
    // through /cluster/restore: here, only forwarded by a node
    if matches!(
        cmd,
        Command::RotateCookieSecret { .. } | Command::Restore { .. }
    ) && !forwarded
    {
        return Err(ClusterError::Forbidden(
            "cookie secrets are made by the leader, and restores go through /cluster/restore"
                .into(),
        ));
    }
    // API changes come only through /v1, which names who made them; a
    // node forwards them to the leader, which records which node did
    if matches!(cmd, Command::Api(_)) && !forwarded {
        return Err(ClusterError::Forbidden(
            "resource changes are made through the /v1 API".into(),
        ));
    }
    // a node turns an operator's spec and weight writes into audited API
    // changes before it forwards them, and never seeds for a client
    match &cmd {
        Command::ReplaceSpec(_) | Command::SetWeight { .. } | Command::SetAdminState { .. }
            if forwarded =>
        {
            return Err(ClusterError::Forbidden(
                "a node forwards operators' changes as audited API changes".into(),
            ));
        }
        Command::SeedSpec(_) if !forwarded => {
            return Err(ClusterError::Forbidden(
                "a spec is seeded by `meridian serve --seed`; apply one with /v1/apply".into(),
            ));
        }
        _ => {}
    }
    let mut cmd = cmd;
    if let (Command::Api(change), true) = (&mut cmd, forwarded) {
        // what the forwarder says it is, beside what the leader saw
        let at = peer.map_or_else(String::new, |p| format!(" at {}", p.addr.ip()));
        let said = change.audit.via.take().unwrap_or_else(|| "a node".into());
        let said: String = said.chars().take(64).collect();
        change.audit.via = Some(format!("{said}, forwarded by {principal}{at}"));
    }
    // observations come only through the probe API, which checks the
    // agent's regions and has the leader stamp the time
    if matches!(cmd, Command::Observe { .. })
        && !matches!(principal, Principal::Node { .. } | Principal::Insecure)
    {
        return Err(ClusterError::Forbidden(
            "probe observations are reported through /probe/report with a probe credential, \
             not written"
                .into(),
        ));
    }
    let cmd = if forwarded {
        cmd
    } else {
        audited(cmd, &principal, node.id())
    };
    node.write_from(cmd, forwarded).await.map(Json)
}

/// An operator's change through the cluster API (`meridian cluster
/// apply`), made the API change it stands for: checked the same way and
/// recorded in the audit log.
fn audited(cmd: Command, principal: &Principal, node_id: NodeId) -> Command {
    let audit = |what: &str| resources::Audit {
        via: Some(format!("node {node_id}")),
        ..resources::Audit::of(principal, format!("POST /cluster/write ({what})"))
    };
    let change = |target, op, what: &str| {
        Command::Api(Box::new(Change {
            target,
            op,
            precondition: Default::default(),
            audit: audit(what),
            at_ms: 0,
            allow_empty: false,
        }))
    };
    match cmd {
        Command::ReplaceSpec(spec) => change(
            Target::Spec,
            Op::Put(Resource::Spec(spec)),
            "replace the spec",
        ),
        Command::SetWeight {
            pool,
            endpoint,
            weight,
        } => change(
            Target::Endpoint { pool, id: endpoint },
            Op::PatchEndpoint {
                weight: Some(weight),
                priority: None,
                state: None,
            },
            "set a weight",
        ),
        Command::SetAdminState {
            pool,
            endpoint,
            state,
        } => change(
            Target::Endpoint { pool, id: endpoint },
            Op::PatchEndpoint {
                weight: None,
                priority: None,
                state: Some(state),
            },
            "set an admin state",
        ),
        other => other,
    }
}

async fn init_route(
    State(node): State<ClusterNode>,
    Json(req): Json<InitRequest>,
) -> Result<Json<()>, ClusterError> {
    for addr in req.members.values() {
        check_member_addr(addr)?;
        resolves_to_permitted(addr).await?;
    }
    node.init(req.members).await.map(Json)
}

async fn join_route(
    State(node): State<ClusterNode>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    Json(req): Json<JoinRequest>,
) -> Result<Json<()>, ClusterError> {
    check_member_addr(&req.addr)?;
    resolves_to_permitted(&req.addr).await?;
    // only an admin adds members; a node only forwards an admin's request
    node_must_forward(&node, &headers, &principal, "add a member")?;
    node.join_from(req.id, req.addr, forwarded(&headers, &principal))
        .await
        .map(Json)
}

async fn leave_route(
    State(node): State<ClusterNode>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    Json(req): Json<LeaveRequest>,
) -> Result<Json<()>, ClusterError> {
    node_must_forward(&node, &headers, &principal, "remove a member")?;
    node.leave_from(req.id, forwarded(&headers, &principal))
        .await
        .map(Json)
}

/// A member address given as a name must resolve, within 2 s, to
/// addresses a node may be at (no metadata or link-local ones).
async fn resolves_to_permitted(addr: &str) -> Result<(), ClusterError> {
    let host = host_of(addr);
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    let bad = |why: String| {
        Err(ClusterError::Rejected(format!(
            "member address {addr:?}: {why}"
        )))
    };
    match tokio::time::timeout(Duration::from_secs(2), tokio::net::lookup_host(addr)).await {
        Ok(Ok(addrs)) => {
            let policy = meridian_config::policy::AddressPolicy::default();
            for a in addrs {
                if let Err(why) = policy.permits(a.ip()) {
                    return bad(format!("resolves to {why}"));
                }
            }
            Ok(())
        }
        Ok(Err(e)) => bad(format!("does not resolve: {e}")),
        Err(_) => bad("does not resolve within 2 s".into()),
    }
}

/// The host part of `host:port`, lower-cased, without IPv6 brackets.
pub(crate) fn host_of(addr: &str) -> String {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase()
}

/// A member address given over the API: `host:port`, a port that is not
/// 0, a host that is a name or an address other than unspecified,
/// multicast, broadcast or link-local (where cloud metadata services
/// live).
fn check_member_addr(addr: &str) -> Result<(), ClusterError> {
    let bad = |why: &str| {
        Err(ClusterError::Rejected(format!(
            "member address {addr:?}: {why}"
        )))
    };
    let Some((host, port)) = addr.rsplit_once(':') else {
        return bad("expected host:port");
    };
    if port.is_empty()
        || !port.bytes().all(|b| b.is_ascii_digit())
        || !port.parse::<u16>().is_ok_and(|p| p > 0)
    {
        return bad("expected a port 1..=65535");
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.len() > 253 {
        return bad("expected a host");
    }
    if addr.starts_with('[') != host.contains(':') {
        return bad("an IPv6 address goes in brackets: [::1]:8440");
    }
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => {
            if let Err(why) = meridian_config::policy::AddressPolicy::default().permits(ip) {
                return bad(&format!("not an address a node can be reached at: {why}"));
            }
        }
        Err(_) if meridian_config::policy::numeric_host(host) => {
            return bad("a host name that reads as a number: give the address itself");
        }
        Err(_) => {
            let ok = host.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
            if !ok {
                return bad("expected a host name or an IP address");
            }
        }
    }
    Ok(())
}
