//! Health checks and their aggregation.
//!
//! - [`agent`]: the probe agent (`meridian probe`, or embedded in `serve`):
//!   its region's check list, the schedule, rise/fall, batched reports.
//! - [`check`]: one probe of one target (tcp, http, https), timed.
//! - [`targets`]: the spec's checks flattened per region.
//! - [`remote`]: the agent's HTTP client for the cluster's probe API.
//! - [`health`]: the replicated health state and the verdict rule: each
//!   endpoint's votes per region, the quorum of fresh regions, hold-down,
//!   smoothed RTT. Deterministic, no I/O: the state machine runs it.

pub mod agent;
pub mod check;
pub mod health;
pub mod remote;
pub mod targets;

pub use agent::{Agent, AgentOptions, Cluster};
pub use health::{HealthState, Observation, Report};
pub use targets::{checks_for, CheckList, Target};
