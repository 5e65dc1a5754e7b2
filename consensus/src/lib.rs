//! Meridian's replicated state: openraft 0.9 over a swappable storage
//! engine (sled today).
//!
//! # Layout
//!
//! - [`auth`]: who is calling (node, operator, agent; certificates, tokens,
//!   the cluster secret) and what each may do.
//! - [`http`]: the bounded API listener (connection caps, timeouts, fd
//!   back-off) and the guard that identifies callers before bodies are
//!   read.
//! - [`engine`]: the [`KvEngine`](engine::KvEngine) seam and its sled
//!   adapter; [`journal`]: Meridian's own durable, checksummed engine.
//! - [`log_store`]: the Raft log and vote, flushed before they are
//!   acknowledged.
//! - [`network`]: Raft RPCs over HTTP (reqwest out, axum routes in).
//! - [`node`]: a running node — Raft on its store, the cluster API
//!   (write, init, join, leave, status) and forwarding to the leader.
//! - [`tls`]: mutual TLS between nodes.
//! - [`resources`]: the REST API's resources inside the state, their
//!   entity tags, and the audited [`Change`](resources::Change)s that put
//!   or delete them.
//! - [`state`]: the [`ReplicatedState`](state::ReplicatedState), the
//!   [`Command`](state::Command)s that change it, and the state machine
//!   with file snapshots.

#![forbid(unsafe_code)]
// openraft's storage traits return `StorageError`, which is large; the
// helpers that build it return the same type rather than box and unbox it
#![allow(clippy::result_large_err)]

pub mod auth;
pub mod engine;
pub mod http;
pub mod journal;
pub mod log_store;
pub mod network;
pub mod node;
pub mod probe_api;
pub mod resources;
pub mod state;
pub mod tls;

use std::io::Cursor;

pub use node::{ClusterError, ClusterNode, NodeOptions, Status, Timing, Written};
pub use probe_api::ProbeService;
pub use state::{Command, CookieSecrets, ReplicatedState, Response};

/// A node's id in the cluster.
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// Meridian's Raft types: commands in, responses out.
    pub TypeConfig:
        D = Command,
        R = Response,
);

#[cfg(test)]
mod tests;
