//! Meridian's authoritative DNS server.
//!
//! # Layout
//!
//! - [`snapshot`]: the immutable, indexed [`Snapshot`] of all zones, and the
//!   [`SnapshotHandle`] it is published through (the seam the state owner —
//!   today the zone file loader, later the Raft state machine — writes to).
//! - [`answer`]: the lookup — snapshot and question in, a reply plan out.
//!   No sockets, no wire format.
//! - [`trees`]: the client trees of classified policies, built when a
//!   snapshot or the GeoIP databases change.
//! - [`explain`]: the answer for a name and client, with each steering
//!   step's decision, for `meridian explain` and the API.
//! - [`fallback`]: the endpoint a host's steered record chooses for an
//!   HTTP client, by the same pipeline (the seam of the HTTP fallback).
//! - [`hot`]: the answer to the common query written from pre-encoded
//!   records, without allocating; [`wire`] reads such queries.
//! - [`handler`]: the handler that checks requests, runs the lookup and
//!   encodes replies with correct EDNS and truncation.
//! - [`server`]: binding UDP (several SO_REUSEPORT sockets) and TCP
//!   listeners, and serving them (a thread per UDP socket; a bounded TCP
//!   loop) until shutdown.
//!
//! The query path reads the current snapshot through an atomic pointer and
//! never takes a lock or waits on anything but the socket.

#![forbid(unsafe_code)]

pub mod answer;
pub mod cookies;
pub mod explain;
pub mod fallback;
pub mod handler;
pub mod hot;
pub mod rrl;
pub mod server;
pub mod snapshot;
pub mod stats;
pub mod trees;
pub mod wire;

pub use handler::Handler;
pub use server::{serve, Listeners, TcpLimits};
pub use snapshot::{Snapshot, SnapshotHandle};
