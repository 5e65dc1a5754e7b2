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

pub mod classify;
pub mod geo;
mod steps;
mod table;

use std::net::IpAddr;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
pub use classify::{ClientClass, Tree};
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
    /// Whether the step reads anything of the client.
    fn client_dependent(&self) -> bool {
        matches!(
            self,
            Stage::Fence(_)
                | Stage::Geo(_)
                | Stage::Nearest
                | Stage::Latency
                | Stage::Cost(_)
                | Stage::Sticky
        )
    }

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
    /// same for every client); longer than [`Context::client_prefix`] when
    /// the known bits did not settle the answer.
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
    /// The client's class in the policy's [`Tree`] and the widest prefix
    /// sharing it, when the policy has a tree: steps then read their
    /// decision from it instead of `location`, and the decision's scope is
    /// that prefix.
    pub class: Option<(&'a ClientClass, u8)>,
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

/// What a pool's policies share, worked out once per snapshot: region
/// indices, coordinates as unit vectors, bias factors, the RTT matrix and
/// the sticky hash seeds of its endpoints.
#[derive(Debug, Clone)]
pub struct PoolTable(Arc<Table>);

impl PoolTable {
    /// The tables of `pool` with what probes `observed` of it (aligned
    /// with `pool`) and the probe `regions`.
    pub fn new(pool: &[Endpoint], observed: &[Observed], regions: &[ProbeRegion]) -> PoolTable {
        PoolTable(Arc::new(Table::new(pool, observed, regions)))
    }
}

/// A steered record's pipeline, compiled against its pool.
#[derive(Debug)]
pub struct Policy {
    stages: Vec<Stage>,
    on_all_down: OnAllDown,
    /// Shared by every policy of the pool in a snapshot.
    table: Arc<Table>,
    needs_location: bool,
    /// What decides the client's class, hashed: policies with the same
    /// one can share a [`Tree`]. `None` when the policy is not classified.
    classifier: Option<[u64; 2]>,
    tree: ArcSwapOption<Tree>,
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
        Policy::compile_for(
            steps,
            on_all_down,
            pool,
            &PoolTable::new(pool, observed, regions),
        )
    }

    /// [`Policy::compile`] with the pool's tables built once for all its
    /// records ([`PoolTable::new`]).
    pub fn compile_for(
        steps: &[Step],
        on_all_down: &OnAllDown,
        pool: &[Endpoint],
        table: &PoolTable,
    ) -> Policy {
        let table = Arc::clone(&table.0);
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
        let mut policy = Policy {
            stages,
            on_all_down: on_all_down.clone(),
            table,
            needs_location,
            classifier: None,
            tree: ArcSwapOption::empty(),
        };
        policy.classifier = policy.classifier_hash();
        policy
    }

    /// Whether the client-dependent steps decide from the GeoIP record
    /// alone (none reads the address itself), and there is one.
    fn classifiable(&self) -> bool {
        let mut any = false;
        for stage in &self.stages {
            match stage {
                Stage::Sticky => return false,
                Stage::Fence(f) if !f.classifiable() => return false,
                Stage::Fence(_)
                | Stage::Geo(_)
                | Stage::Nearest
                | Stage::Latency
                | Stage::Cost(_) => any = true,
                _ => {}
            }
        }
        any
    }

    /// A hash of everything a client class depends on: the
    /// client-dependent stages and the pool's regions, coordinates, biases
    /// and probe regions (not health or RTTs, which change every few
    /// seconds and apply per query).
    fn classifier_hash(&self) -> Option<[u64; 2]> {
        use std::hash::{Hash, Hasher};
        if !self.classifiable() {
            return None;
        }
        // each stage with the parts of the table it reads
        let t = &self.table;
        let mut text = String::new();
        for stage in self.stages.iter().filter(|s| s.client_dependent()) {
            let sig = t.signature;
            let described = match stage {
                Stage::Geo(g) => format!("geo {g:?} {}", sig.regions),
                Stage::Nearest => format!("nearest {}", sig.places),
                Stage::Latency | Stage::Cost(_) => format!("probe {}", sig.probes),
                Stage::Fence(f) => format!("fence {}", f.rules_text()),
                other => format!("{other:?}"),
            };
            text.push_str(&described);
            text.push('\n');
        }
        let hash = |salt: u64| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            salt.hash(&mut h);
            text.hash(&mut h);
            h.finish()
        };
        Some([hash(1), hash(2)])
    }

    /// What a client's class depends on, when the policy is classified:
    /// policies with equal classifiers can share a [`Tree`].
    pub fn classifier(&self) -> Option<[u64; 2]> {
        self.classifier
    }

    /// The client tree steps read, when one is attached.
    pub fn tree(&self) -> arc_swap::Guard<Option<Arc<Tree>>> {
        self.tree.load()
    }

    /// Attaches (or, with `None`, detaches) the client tree, built for
    /// this policy's [`Policy::classifier`].
    pub fn set_tree(&self, tree: Option<Arc<Tree>>) {
        self.tree.store(tree);
    }

    /// What the client-dependent steps decide for a client at `loc`.
    pub(crate) fn client_class(&self, loc: &Location) -> ClientClass {
        // no client-dependent step draws
        let mut rng = <rand::rngs::SmallRng as rand::SeedableRng>::seed_from_u64(0);
        let ctx = Context {
            client: None,
            client_prefix: 0,
            location: Some(loc),
            rng: &mut rng,
            class: None,
        };
        let keys = self
            .stages
            .iter()
            .filter(|s| s.client_dependent())
            .map(|s| match s {
                Stage::Geo(g) => classify::StageKey::Regions(g.regions(loc)),
                Stage::Nearest => match loc.coords {
                    Some(_) => classify::StageKey::Ranks(steps::nearest_ranks(&self.table, loc)),
                    None => classify::StageKey::Unplaced,
                },
                Stage::Fence(f) => classify::StageKey::Fence(f.verdicts(&ctx)),
                _ => classify::StageKey::Probe(self.table.nearest_probe(&ctx).map(|p| p as u16)),
            })
            .collect();
        ClientClass { keys }
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
        // the class's decision for each client-dependent stage, in order
        let mut keys = ctx.class.map(|(c, _)| c.keys.iter());
        for stage in &self.stages {
            let key = match (&mut keys, stage.client_dependent()) {
                (Some(k), true) => k.next(),
                _ => None,
            };
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
                Stage::Fence(f) => f.apply(pool, out, ctx, key, &mut fx),
                Stage::Geo(g) => g.apply(&self.table, out, ctx, key, &mut fx),
                Stage::Nearest => steps::nearest(pool, &self.table, out, ctx, key, &mut fx),
                Stage::Latency => {
                    let probe = *nearest_probe.get_or_insert_with(|| self.probe(ctx, key));
                    steps::latency(&self.table, out, probe, ctx, &mut fx);
                }
                Stage::Cost(m) => {
                    let probe = *nearest_probe.get_or_insert_with(|| self.probe(ctx, key));
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
        // with a class, the answer is the same across its widest prefix.
        // Not capped by the client's known bits: a scope longer than an
        // ECS source prefix says the prefix was not specific enough (RFC
        // 7871 §7.2.1), where a capped one would claim the answer for
        // addresses inside it that get another
        let scope = ctx.class.map_or(scope, |(_, widest)| widest);
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

    /// The probe region nearest the client: from its location when known,
    /// else from its class.
    fn probe(&self, ctx: &Context<'_>, key: Option<&classify::StageKey>) -> Option<usize> {
        match (ctx.location, key) {
            (None, Some(classify::StageKey::Probe(p))) => p.map(usize::from),
            _ => self.table.nearest_probe(ctx),
        }
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
