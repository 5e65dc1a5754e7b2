//! The probe agent: keeps its region's check list in step with the
//! cluster, runs every check on its own jittered schedule with bounded
//! concurrency and a per-target rate limit, applies rise/fall, and reports
//! the latest result per endpoint in batches.
//!
//! Reporting is decoupled from probing: results land in a map that keeps
//! only the latest per endpoint, and the reporter sends it once per check
//! interval, or within [`DEBOUNCE`] after an endpoint changed state. While
//! the cluster is unreachable, probing goes on and the map holds what the
//! cluster has not yet seen, so nothing is lost but superseded results.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::check::Prober;
use crate::health::{Observation, Report};
use crate::targets::{CheckList, Target};

/// How long the reporter waits after a state change for more of them.
pub const DEBOUNCE: Duration = Duration::from_millis(20);

/// The most observations one report carries (about 180 KB): a bigger batch
/// goes as several reports, so no Raft entry is large enough to hold up
/// heartbeats or a lagging follower.
pub const MAX_PER_REPORT: usize = 2000;

/// The longest error text a report carries (the cluster refuses longer).
pub const MAX_ERROR_LEN: usize = 512;

/// `s` cut to at most `max` bytes, on a character boundary.
fn clip(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut at = max;
        while !s.is_char_boundary(at) {
            at -= 1;
        }
        s.truncate(at);
    }
    s
}

/// Where an agent gets its checks and sends its reports.
pub trait Cluster: Send + Sync + 'static {
    /// The region's check list. With `known` (the tag the agent has), it
    /// may wait a bounded time for the list to change.
    fn checks(
        &self,
        region: &str,
        known: Option<u64>,
    ) -> impl Future<Output = Result<CheckList, String>> + Send;

    /// Delivers a batch; an error means it was not committed.
    fn report(&self, report: Report) -> impl Future<Output = Result<(), String>> + Send;
}

/// How an agent runs.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    pub region: String,
    /// Names the agent in reports.
    pub name: String,
    /// Most probes in flight at once.
    pub concurrency: usize,
    /// Least time between two probes of the same `host:port`.
    pub per_target_gap: Duration,
}

impl AgentOptions {
    pub fn new(region: &str) -> AgentOptions {
        AgentOptions {
            region: region.to_string(),
            name: format!("{region}/{}", std::process::id()),
            concurrency: 512,
            per_target_gap: Duration::from_millis(100),
        }
    }
}

/// Counters, for logs and benchmarks.
#[derive(Debug, Default)]
pub struct Stats {
    pub probes: AtomicU64,
    pub failures: AtomicU64,
    pub reports: AtomicU64,
    pub reports_failed: AtomicU64,
}

/// Consecutive-result hysteresis for one endpoint in one region.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RiseFall {
    up: Option<bool>,
    streak: u16,
}

impl RiseFall {
    /// Records one probe result; returns the state and whether it changed.
    /// The first result sets the state; after that it takes `rise`
    /// successes in a row to go up and `fall` failures to go down.
    pub fn record(&mut self, ok: bool, rise: u16, fall: u16) -> (bool, bool) {
        match self.up {
            None => {
                self.up = Some(ok);
                (ok, true)
            }
            Some(up) if up == ok => {
                self.streak = 0;
                (up, false)
            }
            Some(up) => {
                self.streak += 1;
                if self.streak >= if up { fall } else { rise } {
                    self.up = Some(ok);
                    self.streak = 0;
                    (ok, true)
                } else {
                    (up, false)
                }
            }
        }
    }
}

type Key = (String, String);

struct Shared {
    opts: AgentOptions,
    prober: Prober,
    permits: Semaphore,
    /// Latest result per endpoint not yet delivered.
    pending: Mutex<HashMap<Key, Observation>>,
    changed: Notify,
    /// Next free probe time per `host:port`.
    next_slot: Mutex<HashMap<String, Instant>>,
    flush_every_ms: AtomicU64,
    stats: Arc<Stats>,
}

impl Shared {
    /// Reserves the next probe slot for `target`'s host:port.
    fn slot(&self, target: &Target) -> Instant {
        let now = Instant::now();
        let mut slots = self.next_slot.lock().unwrap_or_else(|p| p.into_inner());
        let next = slots.entry(target.authority()).or_insert(now);
        let at = (*next).max(now);
        *next = at + self.opts.per_target_gap;
        at
    }
}

/// A running agent.
pub struct Agent<C> {
    cluster: Arc<C>,
    shared: Arc<Shared>,
}

impl<C: Cluster> Agent<C> {
    pub fn new(cluster: Arc<C>, opts: AgentOptions, prober: Prober) -> Agent<C> {
        Agent {
            cluster,
            shared: Arc::new(Shared {
                permits: Semaphore::new(opts.concurrency.max(1)),
                opts,
                prober,
                pending: Mutex::new(HashMap::new()),
                changed: Notify::new(),
                next_slot: Mutex::new(HashMap::new()),
                flush_every_ms: AtomicU64::new(1_000),
                stats: Arc::new(Stats::default()),
            }),
        }
    }

    pub fn stats(&self) -> Arc<Stats> {
        self.shared.stats.clone()
    }

    /// Runs until the task is dropped.
    pub async fn run(self) {
        let reporter = tokio::spawn(report_loop(self.cluster.clone(), self.shared.clone()));
        let mut running: HashMap<Key, (Target, JoinHandle<()>)> = HashMap::new();
        let mut known = None;
        let mut failing = 0u32;
        let region = self.shared.opts.region.clone();
        let _stop = StopOnDrop(reporter);
        loop {
            match self.cluster.checks(&region, known).await {
                Ok(list) => {
                    if failing > 0 {
                        info!("the cluster answers again: check list received");
                    }
                    failing = 0;
                    if known != Some(list.etag) {
                        known = Some(list.etag);
                        self.adopt(list, &mut running);
                    }
                }
                Err(e) => {
                    if failing == 0 {
                        warn!(error = %e, "cannot fetch the check list; probing goes on with the last one");
                    }
                    failing += 1;
                    tokio::time::sleep(backoff(failing)).await;
                }
            }
        }
    }

    /// Starts new targets, restarts changed ones, stops removed ones.
    fn adopt(&self, list: CheckList, running: &mut HashMap<Key, (Target, JoinHandle<()>)>) {
        let mut wanted: HashMap<Key, Target> = list
            .targets
            .into_iter()
            .map(|t| ((t.pool.clone(), t.endpoint.clone()), t))
            .collect();
        running.retain(|key, (target, task)| {
            if wanted.get(key) == Some(target) {
                wanted.remove(key);
                true
            } else {
                task.abort();
                let mut pending = self
                    .shared
                    .pending
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                pending.remove(key);
                false
            }
        });
        for (key, target) in wanted {
            let task = tokio::spawn(probe_loop(self.shared.clone(), target.clone()));
            running.insert(key, (target, task));
        }
        let every = running
            .values()
            .map(|(t, _)| t.check.interval_ms)
            .min()
            .unwrap_or(1_000);
        self.shared.flush_every_ms.store(every, Ordering::Relaxed);
        info!(targets = running.len(), "check list updated");
    }
}

struct StopOnDrop(JoinHandle<()>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// 250 ms, doubling to 4 s.
fn backoff(failures: u32) -> Duration {
    Duration::from_millis(250u64.saturating_mul(1 << failures.min(5).saturating_sub(1)))
        .min(Duration::from_secs(5))
}

async fn probe_loop(shared: Arc<Shared>, target: Target) {
    let interval = Duration::from_millis(target.check.interval_ms);
    let offset = SmallRng::from_os_rng().random_range(0..target.check.interval_ms.max(1));
    let mut next = Instant::now() + Duration::from_millis(offset);
    let mut state = RiseFall::default();
    let key = (target.pool.clone(), target.endpoint.clone());
    let prober = shared.prober.for_target(&target);
    loop {
        tokio::time::sleep_until(next).await;
        tokio::time::sleep_until(shared.slot(&target)).await;
        let outcome = {
            let Ok(_permit) = shared.permits.acquire().await else {
                return;
            };
            prober.probe(&target).await
        };
        shared.stats.probes.fetch_add(1, Ordering::Relaxed);
        if !outcome.ok {
            shared.stats.failures.fetch_add(1, Ordering::Relaxed);
        }
        let (up, changed) = state.record(outcome.ok, target.check.rise, target.check.fall);
        if changed {
            info!(pool = %target.pool, endpoint = %target.endpoint, up, error = ?outcome.error, "endpoint state changed");
        }
        let obs = Observation {
            pool: target.pool.clone(),
            endpoint: target.endpoint.clone(),
            up,
            ok: outcome.ok,
            connect_ms: outcome.connect_ms,
            ttfb_ms: outcome.ttfb_ms,
            error: outcome.error.map(|e| clip(e, MAX_ERROR_LEN)),
        };
        shared
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.clone(), obs);
        if changed {
            shared.changed.notify_one();
        }
        // keep the cadence; after a stall, start a fresh interval
        next += interval;
        let now = Instant::now();
        if next < now {
            next = now + interval;
        }
    }
}

async fn report_loop<C: Cluster>(cluster: Arc<C>, shared: Arc<Shared>) {
    let mut failing = 0u32;
    loop {
        let every = Duration::from_millis(shared.flush_every_ms.load(Ordering::Relaxed));
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shared.changed.notified() => tokio::time::sleep(DEBOUNCE).await,
        }
        let batch: Vec<(Key, Observation)> = {
            let mut pending = shared.pending.lock().unwrap_or_else(|p| p.into_inner());
            let n = pending.len().min(MAX_PER_REPORT);
            let keys: Vec<Key> = pending.keys().take(n).cloned().collect();
            let batch = keys
                .into_iter()
                .filter_map(|k| pending.remove(&k).map(|o| (k, o)))
                .collect();
            if !pending.is_empty() {
                // the rest goes in the next report, at once
                shared.changed.notify_one();
            }
            batch
        };
        if batch.is_empty() {
            continue;
        }
        let report = Report {
            region: shared.opts.region.clone(),
            agent: shared.opts.name.clone(),
            observations: batch.iter().map(|(_, o)| o.clone()).collect(),
        };
        match cluster.report(report).await {
            Ok(()) => {
                shared.stats.reports.fetch_add(1, Ordering::Relaxed);
                if failing > 0 {
                    info!(after = failing, "reports delivered again");
                }
                debug!(observations = batch.len(), "report delivered");
                failing = 0;
            }
            Err(e) => {
                shared.stats.reports_failed.fetch_add(1, Ordering::Relaxed);
                if failing == 0 {
                    warn!(error = %e, "cannot deliver the report; keeping the latest results until the cluster answers");
                }
                failing += 1;
                // put back what newer results have not replaced
                {
                    let mut pending = shared.pending.lock().unwrap_or_else(|p| p.into_inner());
                    for (k, o) in batch {
                        pending.entry(k).or_insert(o);
                    }
                }
                shared.changed.notify_one();
                tokio::time::sleep(backoff(failing)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rise_and_fall_need_streaks() {
        let mut s = RiseFall::default();
        assert_eq!(s.record(true, 2, 3), (true, true));
        assert_eq!(s.record(false, 2, 3), (true, false));
        assert_eq!(s.record(false, 2, 3), (true, false));
        assert_eq!(
            s.record(true, 2, 3),
            (true, false),
            "a success resets the streak"
        );
        for _ in 0..2 {
            assert_eq!(s.record(false, 2, 3), (true, false));
        }
        assert_eq!(s.record(false, 2, 3), (false, true));
        assert_eq!(s.record(true, 2, 3), (false, false));
        assert_eq!(s.record(true, 2, 3), (true, true));
        // alternating results never flip it
        for i in 0..20 {
            assert!(s.record(i % 2 == 0, 2, 2).0);
        }
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(1), Duration::from_millis(250));
        assert_eq!(backoff(2), Duration::from_millis(500));
        assert_eq!(backoff(40), Duration::from_secs(4));
    }
}
