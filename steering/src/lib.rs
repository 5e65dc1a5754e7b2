//! The steering engine: which endpoints a steered record answers with.
//!
//! A steered record's answer comes from an ordered pipeline of steps over
//! the record's candidate endpoints (NS1 filter-chain style). Each step takes
//! the ordered candidate list and the query [`Context`] and leaves a new
//! ordered list; when the pipeline ends empty, the record's
//! [`OnAllDown`](meridian_config::zone::OnAllDown) rule decides.
//!
//! # Layout
//!
//! - [`Policy`]: a record's pipeline compiled once per snapshot from its
//!   config ([`Policy::compile`]), and [`Policy::decide`], the per-query call.
//! - [`Context`]: what a step may know about the query (client address,
//!   randomness). Geography, health and latency views join it as they
//!   arrive; steps that need them fall through when they are absent.
//! - [`Trace`]: an optional record of what each step kept and dropped, and
//!   why, for `explain`.
//!
//! This crate does no I/O: it reads no clock, socket or file, and
//! randomness comes in as an argument, so every decision is a plain function
//! call in tests and benchmarks.

#![forbid(unsafe_code)]

pub mod geo;

use std::net::IpAddr;

pub use geo::{Code, GeoIp, Location};
use meridian_config::zone::{AdminState, Endpoint, OnAllDown, Step};
use rand::RngCore;

/// Index of an endpoint in its pool.
pub type Candidate = u16;

/// A step ready to run, with what could be worked out ahead of time.
#[derive(Debug, Clone, PartialEq)]
enum Stage {
    Health,
    Priority,
    /// `picks`: how many places the draw must fill; a following `first N`
    /// means only N draws are needed, the rest keep their order.
    Weighted {
        picks: usize,
    },
    First(usize),
}

impl Stage {
    fn name(&self) -> &'static str {
        match self {
            Stage::Health => "health",
            Stage::Priority => "priority",
            Stage::Weighted { .. } => "weighted",
            Stage::First(_) => "first",
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

/// The facts about one query that steps may use.
pub struct Context<'a> {
    /// The client's address: the ECS address when the query carried one,
    /// else the resolver's. `None` when unknown (e.g. `explain` without one).
    pub client: Option<IpAddr>,
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

/// What each step did, in order; the last entry may be `on_all_down`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trace {
    pub steps: Vec<StepTrace>,
}

/// A steered record's pipeline, compiled.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    stages: Vec<Stage>,
    on_all_down: OnAllDown,
}

impl Policy {
    /// Compiles configured steps.
    pub fn compile(steps: &[Step], on_all_down: &OnAllDown) -> Policy {
        let stages = steps
            .iter()
            .enumerate()
            .map(|(i, s)| match s {
                Step::Health => Stage::Health,
                Step::Priority => Stage::Priority,
                Step::Weighted => Stage::Weighted {
                    picks: match steps.get(i + 1) {
                        Some(Step::First(n)) => usize::from(*n),
                        _ => usize::MAX,
                    },
                },
                Step::First(n) => Stage::First(usize::from(*n)),
            })
            .collect();
        Policy {
            stages,
            on_all_down: on_all_down.clone(),
        }
    }

    /// Runs the pipeline over `pool`. `out` is cleared and filled with the
    /// chosen endpoints' indices when the outcome is
    /// [`Outcome::Endpoints`]. With `trace`, each step's effect is recorded.
    pub fn decide(
        &self,
        pool: &[Endpoint],
        ctx: &mut Context<'_>,
        out: &mut Vec<Candidate>,
        mut trace: Option<&mut Trace>,
    ) -> Outcome {
        out.clear();
        // pools are validated to hold at most u16::MAX endpoints
        out.extend((0..pool.len()).map(|i| i as Candidate));
        for stage in &self.stages {
            let mut notes = Vec::new();
            let notes_ref = trace.as_ref().map(|_| &mut notes);
            match stage {
                Stage::Health => health(pool, out, notes_ref),
                Stage::Priority => priority(pool, out, notes_ref),
                Stage::Weighted { picks } => {
                    drop_zero_weights(pool, out);
                    weighted(pool, out, *picks, ctx.rng, notes_ref);
                }
                Stage::First(n) => out.truncate(*n),
            }
            if let Some(t) = trace.as_deref_mut() {
                t.steps.push(StepTrace {
                    step: stage.name(),
                    kept: ids(pool, out),
                    notes,
                });
            }
        }
        if !out.is_empty() {
            return Outcome::Endpoints;
        }
        let (outcome, note) = match &self.on_all_down {
            OnAllDown::FailOpen => {
                out.extend(
                    pool.iter()
                        .enumerate()
                        .filter(|(_, e)| e.state == AdminState::Enabled)
                        .map(|(i, _)| i as Candidate),
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
        };
        if let Some(t) = trace {
            t.steps.push(StepTrace {
                step: "on_all_down",
                kept: ids(pool, out),
                notes: vec![note.to_string()],
            });
        }
        outcome
    }

    /// The sorry set, when `on_all_down` has one.
    pub fn sorry(&self) -> &[meridian_config::zone::EndpointAddress] {
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

fn health(pool: &[Endpoint], list: &mut Vec<Candidate>, notes: Option<&mut Vec<String>>) {
    match notes {
        None => list.retain(|&i| pool[usize::from(i)].state == AdminState::Enabled),
        Some(notes) => list.retain(|&i| {
            let e = &pool[usize::from(i)];
            let keep = e.state == AdminState::Enabled;
            if !keep {
                notes.push(format!("dropped {} (admin state {:?})", e.id, e.state));
            }
            keep
        }),
    }
}

fn priority(pool: &[Endpoint], list: &mut Vec<Candidate>, notes: Option<&mut Vec<String>>) {
    let Some(best) = list.iter().map(|&i| pool[usize::from(i)].priority).min() else {
        return;
    };
    let before = list.len();
    list.retain(|&i| pool[usize::from(i)].priority == best);
    if let Some(notes) = notes {
        if list.len() < before {
            notes.push(format!(
                "kept priority tier {best}, dropped {} in later tiers",
                before - list.len()
            ));
        }
    }
}

/// Weighted draw without replacement for the first `picks` places; the rest
/// keep their order. Weight 0 means "only when every weight is 0" (as in
/// Route 53): zero-weight endpoints are dropped while any has weight.
fn weighted(
    pool: &[Endpoint],
    list: &mut [Candidate],
    picks: usize,
    rng: &mut dyn RngCore,
    notes: Option<&mut Vec<String>>,
) {
    let weight = |i: Candidate| u64::from(pool[usize::from(i)].weight);
    let mut total: u64 = list.iter().map(|&i| weight(i)).sum();
    let uniform = total == 0;
    if uniform {
        total = list.len() as u64;
    }
    let w = |i: Candidate| if uniform { 1 } else { weight(i) };
    let mut placed = 0;
    while placed < list.len().min(picks) && total > 0 {
        let mut r = rng.next_u64() % total;
        let mut chosen = placed;
        for (k, &c) in list.iter().enumerate().skip(placed) {
            let cw = w(c);
            if r < cw {
                chosen = k;
                break;
            }
            r -= cw;
        }
        total -= w(list[chosen]);
        // move the chosen one into place, keeping the others' order
        list[placed..=chosen].rotate_right(1);
        placed += 1;
    }
    if let Some(notes) = notes {
        notes.push(if uniform {
            "all weights are 0: drew uniformly".to_string()
        } else {
            format!("drew {placed} by weight")
        });
    }
}

/// Drops zero-weight candidates while any candidate has weight, so weighted
/// answers never include them.
fn drop_zero_weights(pool: &[Endpoint], list: &mut Vec<Candidate>) {
    if list.iter().any(|&i| pool[usize::from(i)].weight > 0) {
        list.retain(|&i| pool[usize::from(i)].weight > 0);
    }
}

#[cfg(test)]
mod tests;
