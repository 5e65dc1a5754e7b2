//! Raft RPCs between nodes over HTTP: the client side (openraft's
//! `RaftNetworkFactory`/`RaftNetwork`) and the server side (axum routes
//! under `/raft/`, served on the node's API listener).
//!
//! One `reqwest::Client` is shared by every connection, and each RPC gets
//! openraft's hard TTL as its timeout, so a dead peer costs at most that.
//! Bodies are JSON: the request, and the receiver's
//! `Result<Response, RaftError>` — except a snapshot chunk, whose bytes
//! travel as they are after a JSON head (`u32` length, head, bytes), not
//! as a JSON array of numbers four times their size.
//!
//! Sizes agree end to end: openraft sends at most [`MAX_PAYLOAD_ENTRIES`]
//! entries per append and [`SNAPSHOT_CHUNK`] bytes per chunk; the routes
//! accept [`APPEND_LIMIT`] and [`SNAPSHOT_LIMIT`]; and a receiver's 413 is
//! openraft's `PayloadTooLarge`, so the sender halves the batch instead
//! of retrying the same one for ever.
//!
//! The routes take only nodes (see [`crate::auth`]), and only members:
//! each RPC's sender must be a member this node knows, and a node
//! certificate must name that member's host ([`check_member`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Extension, State};
use axum::routing::post;
use axum::{Json, Router};
use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, Raft, SnapshotMeta, Vote};
use serde::de::DeserializeOwned;

use crate::auth::Principal;
use crate::node::{host_of, ClusterError};
use crate::{NodeId, TypeConfig};

/// Entries per append, at most (openraft's `max_payload_entries`).
pub const MAX_PAYLOAD_ENTRIES: u64 = 64;

/// Bytes per snapshot chunk (openraft's `snapshot_max_chunk_size`).
pub const SNAPSHOT_CHUNK: u64 = 4 << 20;

/// The most bytes an append of several entries carries: a bigger batch is
/// halved before it is sent (one entry goes whatever its size; specs and
/// reports are kept well under this).
pub const APPEND_BYTES: usize = 1 << 20;

/// Body limit of an append: [`MAX_PAYLOAD_ENTRIES`] entries of up to a
/// probe report's limit each would not fit, and need not: a 413 halves
/// the batch.
pub const APPEND_LIMIT: usize = 64 << 20;

/// Body limit of a vote: a vote and a log id.
pub const VOTE_LIMIT: usize = 64 * 1024;

/// The largest snapshot a node takes in.
pub const MAX_SNAPSHOT_BYTES: u64 = 256 << 20;

/// Body limit of a snapshot chunk: the chunk and its head.
pub const SNAPSHOT_LIMIT: usize = (SNAPSHOT_CHUNK as usize) + (1 << 20);

/// Makes connections to peers; holds the one shared HTTP client.
#[derive(Clone)]
pub struct HttpNetwork {
    client: reqwest::Client,
    scheme: &'static str,
}

impl HttpNetwork {
    /// A network with the given client: `https` when the client carries
    /// the node's TLS identity, else `http`.
    pub fn new(client: reqwest::Client, scheme: &'static str) -> HttpNetwork {
        HttpNetwork { client, scheme }
    }
}

/// When this node last heard from a leader that accepted it: how stale a
/// follower's state may be.
#[derive(Debug)]
pub struct Contact {
    start: Instant,
    /// Milliseconds after `start`, plus one; 0 means never.
    last: AtomicU64,
}

impl Default for Contact {
    fn default() -> Contact {
        Contact {
            start: Instant::now(),
            last: AtomicU64::new(0),
        }
    }
}

impl Contact {
    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms.saturating_add(1), Ordering::Relaxed);
    }

    /// Time since the last accepted append from a leader, if any.
    pub fn since(&self) -> Option<Duration> {
        match self.last.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(
                self.start
                    .elapsed()
                    .saturating_sub(Duration::from_millis(ms - 1)),
            ),
        }
    }
}

/// A connection to one peer.
pub struct HttpConnection {
    client: reqwest::Client,
    base: String,
    target: NodeId,
}

impl RaftNetworkFactory<TypeConfig> for HttpNetwork {
    type Network = HttpConnection;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> HttpConnection {
        HttpConnection {
            client: self.client.clone(),
            base: format!("{}://{}/raft", self.scheme, node.addr),
            target,
        }
    }
}

/// A snapshot chunk's head: the request without its bytes.
#[derive(serde::Serialize, serde::Deserialize)]
struct ChunkHead {
    vote: Vote<NodeId>,
    meta: SnapshotMeta<NodeId, BasicNode>,
    offset: u64,
    done: bool,
}

/// A body as sent: JSON, or a snapshot chunk's head and bytes.
enum Body {
    Json(Vec<u8>),
    Chunk(Vec<u8>),
}

impl HttpConnection {
    async fn rpc<Resp, E>(
        &self,
        path: &str,
        body: Body,
        timeout: Duration,
        // what to ask openraft for when the receiver says 413 (appends;
        // a snapshot chunk is sized to fit its route)
        smaller: Option<PayloadTooLarge>,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let url = format!("{}/{path}", self.base);
        let (bytes, content_type) = match body {
            Body::Json(b) => (b, "application/json"),
            Body::Chunk(b) => (b, "application/octet-stream"),
        };
        let sent = self
            .client
            .post(&url)
            .timeout(timeout)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(bytes)
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            // a refused connection backs off; a timeout is an ordinary
            // network failure, retried on openraft's schedule
            Err(e) if e.is_connect() => return Err(RPCError::Unreachable(Unreachable::new(&e))),
            Err(e) => return Err(RPCError::Network(NetworkError::new(&e))),
        };
        if let (reqwest::StatusCode::PAYLOAD_TOO_LARGE, Some(smaller)) = (resp.status(), smaller) {
            return Err(RPCError::PayloadTooLarge(smaller));
        }
        if !resp.status().is_success() {
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            let e = std::io::Error::other(format!("HTTP {status}: {}", text.trim()));
            return Err(RPCError::Network(NetworkError::new(&e)));
        }
        let body: Result<Resp, RaftError<NodeId, E>> = resp
            .json()
            .await
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        body.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for HttpConnection {
    async fn append_entries(
        &mut self,
        req: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let half = (req.entries.len() as u64 / 2).max(1);
        let body =
            serde_json::to_vec(&req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        // openraft gives an append one heartbeat interval and halves a batch
        // only when told it is too large: say so before sending a big one
        if body.len() > APPEND_BYTES && req.entries.len() > 1 {
            return Err(RPCError::PayloadTooLarge(
                PayloadTooLarge::new_entries_hint(half),
            ));
        }
        self.rpc(
            "append",
            Body::Json(body),
            option.hard_ttl(),
            Some(PayloadTooLarge::new_entries_hint(half)),
        )
        .await
    }

    async fn install_snapshot(
        &mut self,
        req: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        let body = chunk_body(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        self.rpc("snapshot", Body::Chunk(body), option.hard_ttl(), None)
            .await
    }

    async fn vote(
        &mut self,
        req: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let body =
            serde_json::to_vec(&req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        self.rpc("vote", Body::Json(body), option.hard_ttl(), None)
            .await
    }
}

/// The `/raft/...` routes a node serves to its peers; accepted appends
/// are recorded in `contact`.
pub fn routes(raft: Raft<TypeConfig>, contact: Arc<Contact>) -> Router {
    Router::new()
        .route(
            "/raft/append",
            post(append).layer(DefaultBodyLimit::max(APPEND_LIMIT)),
        )
        .with_state((raft.clone(), contact))
        .merge(
            Router::new()
                .route(
                    "/raft/vote",
                    post(vote).layer(DefaultBodyLimit::max(VOTE_LIMIT)),
                )
                .with_state(raft.clone()),
        )
        .merge(
            Router::new()
                .route(
                    "/raft/snapshot",
                    post(snapshot).layer(DefaultBodyLimit::max(SNAPSHOT_LIMIT)),
                )
                .with_state((raft, Arc::new(Incoming::default()))),
        )
}

/// The snapshot being received, kept beside openraft's copy so that it
/// can be checked whole before its last chunk is handed over: a snapshot
/// that does not decode would stop this node's Raft and leave a store it
/// cannot start on.
#[derive(Default)]
struct Incoming(tokio::sync::Mutex<Option<(String, Vec<u8>)>>);

/// Whether a node principal speaks for a member of this node's cluster.
///
/// - Claiming a member id (a Raft RPC): a certificate must name that
///   member's host.
/// - Claiming an id this node does not know: refused, unless this node is
///   not a voter yet (new, or a learner being added), which must take what
///   its cluster sends. A removed member's certificate, or a node
///   certificate for a host that never joined, moves nothing.
/// - Claiming no id (a forwarded request): a certificate must name some
///   voter's host.
/// - A learner (a node being added) neither leads, stands for election nor
///   forwards.
///
/// With the cluster secret instead of TLS there is no certificate: a known
/// id is taken at its word. Operators and agents are judged by their
/// scopes, not here.
pub(crate) fn check_member(
    raft: &Raft<TypeConfig>,
    principal: &Principal,
    claimed: Option<NodeId>,
) -> Result<(), ClusterError> {
    let Principal::Node { name, hosts } = principal else {
        return Ok(());
    };
    let metrics = raft.metrics();
    let m = metrics.borrow();
    let membership = m.membership_config.membership();
    let voter = membership.voter_ids().any(|v| v == m.id);
    let is_voter = |id: &NodeId| membership.voter_ids().any(|v| v == *id);
    let named = |addr: &str| hosts.as_ref().is_none_or(|h| h.contains(&host_of(addr)));
    match claimed {
        // a learner neither leads nor stands for election
        Some(id) if voter && membership.get_node(&id).is_some() && !is_voter(&id) => {
            Err(ClusterError::Forbidden(format!(
                "node {name} speaks as node {id}, a learner: it may not lead or stand"
            )))
        }
        Some(id) => match membership.get_node(&id) {
            Some(node) if named(&node.addr) => Ok(()),
            Some(node) => Err(ClusterError::Forbidden(format!(
                "node {name} speaks as member {id} at {}, which its certificate does not name",
                node.addr
            ))),
            None if !voter => Ok(()),
            None => Err(ClusterError::Forbidden(format!(
                "node {name} speaks as node {id}, which is not a member of this cluster"
            ))),
        },
        None if !voter
            || membership
                .nodes()
                .any(|(id, n)| is_voter(id) && named(&n.addr)) =>
        {
            Ok(())
        }
        None => Err(ClusterError::Forbidden(format!(
            "node {name} is not a member of this cluster: its certificate names no member's host"
        ))),
    }
}

async fn append(
    State((raft, contact)): State<(Raft<TypeConfig>, Arc<Contact>)>,
    Extension(principal): Extension<Principal>,
    Json(req): Json<AppendEntriesRequest<TypeConfig>>,
) -> Result<Json<Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>>, ClusterError> {
    check_member(&raft, &principal, req.vote.leader_id().voted_for())?;
    let result = raft.append_entries(req).await;
    if matches!(result, Ok(AppendEntriesResponse::Success)) {
        contact.touch();
    }
    Ok(Json(result))
}

async fn vote(
    State(raft): State<Raft<TypeConfig>>,
    Extension(principal): Extension<Principal>,
    Json(req): Json<VoteRequest<NodeId>>,
) -> Result<Json<Result<VoteResponse<NodeId>, RaftError<NodeId>>>, ClusterError> {
    check_member(&raft, &principal, req.vote.leader_id().voted_for())?;
    Ok(Json(raft.vote(req).await))
}

/// `u32` head length, the head as JSON, the chunk's bytes.
fn chunk_body(req: InstallSnapshotRequest<TypeConfig>) -> Result<Vec<u8>, serde_json::Error> {
    let head = serde_json::to_vec(&ChunkHead {
        vote: req.vote,
        meta: req.meta,
        offset: req.offset,
        done: req.done,
    })?;
    let mut out = Vec::with_capacity(4 + head.len() + req.data.len());
    out.extend_from_slice(&u32::try_from(head.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(&head);
    out.extend_from_slice(&req.data);
    Ok(out)
}

fn parse_chunk(body: &[u8]) -> Result<InstallSnapshotRequest<TypeConfig>, ClusterError> {
    let bad = |m: &str| ClusterError::Rejected(format!("a snapshot chunk {m}"));
    let len = body
        .get(..4)
        .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
        .ok_or_else(|| bad("without a head"))?;
    let head_end = 4usize
        .checked_add(len)
        .filter(|e| *e <= body.len())
        .ok_or_else(|| bad("with a head longer than itself"))?;
    let head: ChunkHead = serde_json::from_slice(&body[4..head_end])
        .map_err(|e| ClusterError::Rejected(format!("a snapshot chunk's head: {e}")))?;
    let end = head.offset.checked_add((body.len() - head_end) as u64);
    if end.is_none_or(|e| e > MAX_SNAPSHOT_BYTES) {
        return Err(bad(&format!(
            "past the largest snapshot a node takes ({MAX_SNAPSHOT_BYTES} bytes)"
        )));
    }
    Ok(InstallSnapshotRequest {
        vote: head.vote,
        meta: head.meta,
        offset: head.offset,
        data: body[head_end..].to_vec(),
        done: head.done,
    })
}

async fn snapshot(
    State((raft, incoming)): State<(Raft<TypeConfig>, Arc<Incoming>)>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> Result<
    Json<Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>>,
    ClusterError,
> {
    let req = parse_chunk(&body)?;
    check_member(&raft, &principal, req.vote.leader_id().voted_for())?;
    {
        let mut held = incoming.0.lock().await;
        let id = &req.meta.snapshot_id;
        if req.offset == 0 || held.as_ref().is_none_or(|(h, _)| h != id) {
            *held = Some((id.clone(), Vec::new()));
        }
        let (_, bytes) = held.as_mut().expect("set above");
        if req.offset > bytes.len() as u64 {
            return Err(ClusterError::Rejected(format!(
                "snapshot {id}: a chunk at {} leaves a gap after {}",
                req.offset,
                bytes.len()
            )));
        }
        // a chunk sent again (its answer was lost) replaces itself
        bytes.truncate(req.offset as usize);
        bytes.extend_from_slice(&req.data);
        if req.done {
            let whole = held.take().map(|(_, b)| b).unwrap_or_default();
            crate::state::check_snapshot_data(&whole).map_err(|e| {
                ClusterError::Rejected(format!("snapshot {id} does not decode: {e}"))
            })?;
        }
    }
    Ok(Json(raft.install_snapshot(req).await))
}
