//! Raft RPCs between nodes over HTTP: the client side (openraft's
//! `RaftNetworkFactory`/`RaftNetwork`) and the server side (axum routes
//! under `/raft/`, served on the node's API listener).
//!
//! One `reqwest::Client` is shared by every connection, and each RPC gets
//! openraft's hard TTL as its timeout, so a dead peer costs at most that.
//! Bodies are JSON: the request, and the receiver's
//! `Result<Response, RaftError>`.
//!
//! The routes take only nodes (see [`crate::auth`]); each RPC's sender
//! must also be who it says: when this node knows the sender's id as a
//! member, a node certificate must name that member's host. (An id this
//! node does not know yet — a leader elected while it lagged — is taken on
//! the certificate's role alone, so a lagging node is never locked out.)

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, Extension, State};
use axum::routing::post;
use axum::{Json, Router};
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, Raft};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::auth::Principal;
use crate::node::{host_of, ClusterError};
use crate::{NodeId, TypeConfig};

/// Body limit of an append: up to `max_payload_entries` entries, probe
/// reports among them.
pub const APPEND_LIMIT: usize = 64 * 1024 * 1024;

/// Body limit of a snapshot chunk (JSON, so several times the chunk).
pub const SNAPSHOT_LIMIT: usize = 64 * 1024 * 1024;

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

impl HttpConnection {
    async fn rpc<Req, Resp, E>(
        &self,
        path: &str,
        req: Req,
        timeout: Duration,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let url = format!("{}/{path}", self.base);
        let sent = self
            .client
            .post(&url)
            .timeout(timeout)
            .json(&req)
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            // a refused connection backs off; a timeout is an ordinary
            // network failure, retried on openraft's schedule
            Err(e) if e.is_connect() => return Err(RPCError::Unreachable(Unreachable::new(&e))),
            Err(e) => return Err(RPCError::Network(NetworkError::new(&e))),
        };
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
        self.rpc("append", req, option.hard_ttl()).await
    }

    async fn install_snapshot(
        &mut self,
        req: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.rpc("snapshot", req, option.hard_ttl()).await
    }

    async fn vote(
        &mut self,
        req: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.rpc("vote", req, option.hard_ttl()).await
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
                .route("/raft/vote", post(vote))
                .route(
                    "/raft/snapshot",
                    post(snapshot).layer(DefaultBodyLimit::max(SNAPSHOT_LIMIT)),
                )
                .with_state(raft),
        )
}

/// Refuses an RPC whose sender claims a member id that the caller's
/// certificate does not name.
fn check_sender(
    raft: &Raft<TypeConfig>,
    principal: &Principal,
    sender: Option<NodeId>,
) -> Result<(), ClusterError> {
    let Principal::Node {
        name,
        hosts: Some(hosts),
    } = principal
    else {
        return Ok(());
    };
    let Some(sender) = sender else {
        return Ok(());
    };
    let metrics = raft.metrics();
    let m = metrics.borrow();
    match m.membership_config.membership().get_node(&sender) {
        Some(node) if !hosts.contains(&host_of(&node.addr)) => {
            Err(ClusterError::Forbidden(format!(
                "node {name} speaks as member {sender} at {}, which its certificate does not name",
                node.addr
            )))
        }
        _ => Ok(()),
    }
}

async fn append(
    State((raft, contact)): State<(Raft<TypeConfig>, Arc<Contact>)>,
    Extension(principal): Extension<Principal>,
    Json(req): Json<AppendEntriesRequest<TypeConfig>>,
) -> Result<Json<Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>>, ClusterError> {
    check_sender(&raft, &principal, req.vote.leader_id().voted_for())?;
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
    check_sender(&raft, &principal, req.vote.leader_id().voted_for())?;
    Ok(Json(raft.vote(req).await))
}

async fn snapshot(
    State(raft): State<Raft<TypeConfig>>,
    Extension(principal): Extension<Principal>,
    Json(req): Json<InstallSnapshotRequest<TypeConfig>>,
) -> Result<
    Json<Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>>,
    ClusterError,
> {
    check_sender(&raft, &principal, req.vote.leader_id().voted_for())?;
    Ok(Json(raft.install_snapshot(req).await))
}
