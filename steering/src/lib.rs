//! The steering engine: which endpoints a steered record answers with.
//!
//! A steered record's answer comes from an ordered pipeline of steps over
//! the record's candidate endpoints (NS1 filter-chain style). Each step takes
//! the ordered candidate list and the query [`Context`] and leaves a new
//! ordered list; when the pipeline ends empty, the record's
//! [`OnAllDown`] rule decides.
//!
//! # Layout
//!
//! - [`Policy`]: a record's pipeline compiled once per snapshot against its
//!   pool ([`Policy::compile`]): region indices, coordinates as unit
//!   vectors, bias factors, the RTT matrix and hash seeds are all worked out
//!   then. [`Policy::decide`] is the per-query call.
//! - [`Context`]: what steps may know about the query — the client address
//!   and how many of its bits are known, its [`Location`], randomness.
//! - `steps`: the steps themselves; `table`: the per-pool tables.
//! - [`geo`]: client facts from MaxMind databases.
//! - [`Trace`]: what each step kept and dropped, and why, for `explain`.
//!
//! A [`Decision`] also says how many leading bits of the client address the
//! answer depended on, which the DNS server returns as the ECS scope.
//!
//! This crate does no I/O: it reads no clock, socket or file (databases
//! arrive as bytes), and randomness comes in as an argument, so every
//! decision is a plain function call in tests and benchmarks.

#![forbid(unsafe_code)]

pub mod geo;
mod steps;
mod table;

use std::net::IpAddr;

pub use geo::{Code, GeoIp, Location};
use meridian_config::zone::{
    AdminState, CostMargin, Endpoint, EndpointAddress, OnAllDown, ProbeRegion, Step,
};
use rand::RngCore;

use steps::{FenceStage, GeoStage};
use table::Table;

/// Index of an endpoint in its pool.
pub type Candidate = u16;

/// A step ready to run, with what could be worked out ahead of time.
#[derive(Debug, Clone)]
enum Stage {
    Health,
    Priority,
    /// `picks`: how many places the draw must fill; a following `first N`
    /// means only N draws are needed, the rest keep their order.
    Weighted {
        picks: usize,
    },
    Sticky,
    First(usize),
    Fence(Box<FenceStage>),
    Geo(Box<GeoStage>),
    Nearest,
    Latency,
    Cost(CostMargin),
}

impl Stage {
    fn name(&self) -> &'static str {
        match self {
            Stage::Health => "health",
            Stage::Priority => "priority",
            Stage::Weighted { .. } => "weighted",
            Stage::Sticky => "weighted(sticky)",
            Stage::First(_) => "first",
            Stage::Fence(_) => "fence",
            Stage::Geo(_) => "geo",
            Stage::Nearest => "nearest",
            Stage::Latency => "latency",
            Stage::Cost(_) => "cost",
        }
    }
}

/// What the pipeline answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answer these endpoints (the candidate list given to `decide`).
    Endpoints,
    /// Nothing left and the record falls back to its sorry set.
    Sorry,
    /// Nothing left: answer NODATA.
    NoData,
}

/// The outcome, and how specific to the client it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub outcome: Outcome,
    /// Leading bits of the client address the answer depended on (0: the
    /// same for every client), at most [`Context::client_prefix`].
    pub scope: u8,
}

/// The facts about one query that steps may use.
pub struct Context<'a> {
    /// The client's address: the ECS address when the query carried one,
    /// else the resolver's. `None` when unknown (e.g. `explain` without one).
    pub client: Option<IpAddr>,
    /// How many leading bits of `client` are known: the ECS source prefix,
    /// else the whole address (32 or 128).
    pub client_prefix: u8,
    /// What GeoIP knows of the client; `None` when no database is loaded.
    pub location: Option<&'a Location>,
    /// Randomness for weighted draws.
    pub rng: &'a mut dyn RngCore,
}

/// One step's effect, for `explain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepTrace {
    pub step: &'static str,
    /// Endpoint ids after the step, in order.
    pub kept: Vec<String>,
    /// Why endpoints were dropped or reordered.
    pub notes: Vec<String>,
}

/// What probes report of one endpoint, for the `health`, `latency` and
/// `cost` steps.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    /// False when the probes' verdict keeps the endpoint out of answers.
    pub in_service: bool,
    /// Smoothed RTT in ms from each probe region that measured it.
    pub rtt_ms: Vec<(String, f64)>,
}

impl Default for Observed {
    fn default() -> Observed {
        Observed {
            in_service: true,
            rtt_ms: Vec::new(),
        }
    }
}

/// Probe observations by pool name, each aligned with its pool's endpoints.
pub type Observations = std::collections::HashMap<String, Vec<Observed>>;

/// What each step did, in order; the last entry may be `on_all_down`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trace {
    pub steps: Vec<StepTrace>,
}

/// Work a step may note for the trace, and the client bits it used.
pub(crate) struct Effects<'n> {
    pub notes: Option<&'n mut Vec<String>>,
    pub scope: u8,
}

impl Effects<'_> {
    /// Records a note when tracing; the message is only built then.
    pub fn note(&mut self, f: impl FnOnce() -> String) {
        if let Some(n) = self.notes.as_deref_mut() {
            n.push(f());
        }
    }

    /// The answer depends on the first `bits` bits of the client address.
    pub fn depends(&mut self, bits: u8) {
        self.scope = self.scope.max(bits);
    }
}

/// A steered record's pipeline, compiled against its pool.
#[derive(Debug, Clone)]
pub struct Policy {
    stages: Vec<Stage>,
    on_all_down: OnAllDown,
    table: Table,
    needs_location: bool,
}

impl Policy {
    /// Compiles configured steps for `pool`, with what probes observed of
    /// it (`observed`, aligned with `pool`; empty when nothing is checked)
    /// and the probe `regions`. The spec is validated, so every name
    /// resolves; a name that does not simply matches nothing.
    pub fn compile(
        steps: &[Step],
        on_all_down: &OnAllDown,
        pool: &[Endpoint],
        observed: &[Observed],
        regions: &[ProbeRegion],
    ) -> Policy {
        let table = Table::new(pool, observed, regions);
        let stages: Vec<Stage> = steps
            .iter()
            .enumerate()
            .map(|(i, s)| match s {
                Step::Health => Stage::Health,
                Step::Priority => Stage::Priority,
                Step::Weighted { sticky: true } => Stage::Sticky,
                Step::Weighted { sticky: false } => Stage::Weighted {
                    picks: match steps.get(i + 1) {
                        Some(Step::First(n)) => usize::from(*n),
                        _ => usize::MAX,
                    },
                },
                Step::First(n) => Stage::First(usize::from(*n)),
                Step::Fence(rules) => Stage::Fence(Box::new(FenceStage::new(rules, pool, &table))),
                Step::Geo(map) => Stage::Geo(Box::new(GeoStage::new(map, &table))),
                Step::Nearest => Stage::Nearest,
                Step::Latency => Stage::Latency,
                Step::Cost(m) => Stage::Cost(*m),
            })
            .collect();
        let needs_location = stages.iter().any(|s| match s {
            Stage::Fence(f) => f.uses_location(),
            Stage::Geo(_) | Stage::Nearest | Stage::Latency | Stage::Cost(_) => true,
            _ => false,
        });
        Policy {
            stages,
            on_all_down: on_all_down.clone(),
            table,
            needs_location,
        }
    }

    /// Whether any step looks at the client's location, so the caller
    /// knows whether a GeoIP lookup is worth doing.
    pub fn needs_location(&self) -> bool {
        self.needs_location
    }

    /// Runs the pipeline over `pool` (the one it was compiled for). `out`
    /// is cleared and filled with the chosen endpoints' indices when the
    /// outcome is [`Outcome::Endpoints`]. With `trace`, each step's effect
    /// is recorded.
    pub fn decide(
        &self,
        pool: &[Endpoint],
        ctx: &mut Context<'_>,
        out: &mut Vec<Candidate>,
        trace: Option<&mut Trace>,
    ) -> Decision {
        self.decide_without(pool, ctx, out, trace, &[])
    }

    /// [`Policy::decide`] as if the endpoints in `exclude` were not in the
    /// pool at all (`fail_open` included): the next choice after them, for
    /// a proxy that found them failing.
    pub fn decide_without(
        &self,
        pool: &[Endpoint],
        ctx: &mut Context<'_>,
        out: &mut Vec<Candidate>,
        mut trace: Option<&mut Trace>,
        exclude: &[Candidate],
    ) -> Decision {
        out.clear();
        // pools are validated to hold at most u16::MAX endpoints
        out.extend(
            (0..pool.len())
                .map(|i| i as Candidate)
                .filter(|c| !exclude.contains(c)),
        );
        let mut scope = 0u8;
        // the probe region nearest the client, found once if needed
        let mut nearest_probe = None;
        for stage in &self.stages {
            let mut notes = Vec::new();
            let mut fx = Effects {
                notes: trace.as_ref().map(|_| &mut notes),
                scope: 0,
            };
            match stage {
                Stage::Health => steps::health(pool, &self.table, out, &mut fx),
                Stage::Priority => steps::priority(pool, out, &mut fx),
                Stage::Weighted { picks } => {
                    steps::drop_zero_weights(pool, out);
                    steps::weighted(pool, out, *picks, ctx.rng, &mut fx);
                }
                Stage::Sticky => {
                    steps::drop_zero_weights(pool, out);
                    steps::sticky(pool, &self.table, out, ctx, &mut fx);
                }
                Stage::First(n) => out.truncate(*n),
                Stage::Fence(f) => f.apply(pool, out, ctx, &mut fx),
                Stage::Geo(g) => g.apply(&self.table, out, ctx, &mut fx),
                Stage::Nearest => steps::nearest(pool, &self.table, out, ctx, &mut fx),
                Stage::Latency => {
                    let probe = *nearest_probe.get_or_insert_with(|| self.table.nearest_probe(ctx));
                    steps::latency(&self.table, out, probe, ctx, &mut fx);
                }
                Stage::Cost(m) => {
                    let probe = *nearest_probe.get_or_insert_with(|| self.table.nearest_probe(ctx));
                    steps::cost(pool, &self.table, out, probe, *m, ctx, &mut fx);
                }
            }
            scope = scope.max(fx.scope);
            if let Some(t) = trace.as_deref_mut() {
                t.steps.push(StepTrace {
                    step: stage.name(),
                    kept: ids(pool, out),
                    notes,
                });
            }
        }
        let scope = scope.min(ctx.client_prefix);
        if !out.is_empty() {
            return Decision {
                outcome: Outcome::Endpoints,
                scope,
            };
        }
        let (outcome, note) = match &self.on_all_down {
            OnAllDown::FailOpen => {
                out.extend(
                    pool.iter()
                        .enumerate()
                        .filter(|(_, e)| e.state == AdminState::Enabled)
                        .map(|(i, _)| i as Candidate)
                        .filter(|c| !exclude.contains(c)),
                );
                if out.is_empty() {
                    (
                        Outcome::NoData,
                        "fail open: no endpoint is enabled, answering NODATA",
                    )
                } else {
                    (
                        Outcome::Endpoints,
                        "fail open: answering every enabled endpoint",
                    )
                }
            }
            OnAllDown::NoData => (Outcome::NoData, "answering NODATA"),
            OnAllDown::Sorry(_) => (Outcome::Sorry, "answering the sorry set"),
            OnAllDown::HttpFallback => (Outcome::NoData, "handing over to the HTTP fallback"),
        };
        if let Some(t) = trace {
            t.steps.push(StepTrace {
                step: "on_all_down",
                kept: ids(pool, out),
                notes: vec![note.to_string()],
            });
        }
        Decision { outcome, scope }
    }

    /// The sorry set, when `on_all_down` has one.
    pub fn sorry(&self) -> &[EndpointAddress] {
        match &self.on_all_down {
            OnAllDown::Sorry(s) => s,
            _ => &[],
        }
    }
}

fn ids(pool: &[Endpoint], list: &[Candidate]) -> Vec<String> {
    list.iter()
        .map(|&i| pool[usize::from(i)].id.clone())
        .collect()
}

#[cfg(test)]
mod tests;
