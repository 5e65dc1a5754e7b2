//! Aggregation: the replicated health state and how reports change it.
//!
//! Every node applies the same reports in the same order, so this is plain
//! deterministic code: no clock but the report times the cluster stamped,
//! no randomness. The cluster's clock ([`HealthState::now_ms`]) is the
//! latest report time applied and never goes back.
//!
//! The verdict rule for an endpoint whose check runs in regions R with
//! quorum q: a region's vote counts while it is fresh (reported within
//! `stale_after`). The endpoint is **up** when at least q fresh regions
//! report it up; **down** when fewer than q report it up and at least q
//! report it down; otherwise the last verdict holds. So regions whose
//! agents stopped reporting can never take an endpoint down, and with no
//! fresh region nothing changes. An endpoint that came back is kept out of
//! answers for the check's `hold_down`.

use std::collections::{BTreeMap, HashMap, HashSet};

use meridian_config::zone::{Check, Pool};
use meridian_config::ZoneSpec;
use meridian_steering::{Observations, Observed};
use serde::{Deserialize, Serialize};

/// Weight of a new RTT sample in the smoothed RTT.
pub const EWMA_ALPHA: f64 = 0.3;

/// One endpoint's latest result from one agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    pub pool: String,
    pub endpoint: String,
    /// The agent's state for the endpoint, after rise/fall.
    pub up: bool,
    /// Whether this probe itself succeeded.
    pub ok: bool,
    /// TCP connection set-up (with the TLS handshake for https), in ms.
    /// (Absent fields are left out: reports are Raft log entries.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_ms: Option<f64>,
    /// From the start of the probe to the first byte of the response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttfb_ms: Option<f64>,
    /// Why the probe failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A batch of observations from one agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub region: String,
    /// Names the agent in logs and `cluster health`.
    pub agent: String,
    pub observations: Vec<Observation>,
}

/// One region's vote on one endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vote {
    pub up: bool,
    pub ok: bool,
    /// Cluster time of the report that carried it.
    pub at_ms: u64,
    pub agent: String,
    pub connect_ms: Option<f64>,
    pub ttfb_ms: Option<f64>,
    /// Smoothed connection RTT: what `latency` and `cost` steer by.
    pub rtt_ms: Option<f64>,
    pub error: Option<String>,
}

/// The verdict on one endpoint and the votes behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointHealth {
    pub up: bool,
    /// Whether answers may use it: up, and past any hold-down.
    pub in_service: bool,
    /// Cluster time of the last verdict change (0: never changed).
    pub since_ms: u64,
    /// In service again from this cluster time (hold-down).
    pub hold_until_ms: u64,
    pub votes: BTreeMap<String, Vote>,
}

impl Default for EndpointHealth {
    fn default() -> EndpointHealth {
        EndpointHealth {
            up: true,
            in_service: true,
            since_ms: 0,
            hold_until_ms: 0,
            votes: BTreeMap::new(),
        }
    }
}

/// Health of every checked endpoint: pool → endpoint id → health.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HealthState {
    /// The cluster's clock, ms since the Unix epoch.
    pub now_ms: u64,
    pub pools: BTreeMap<String, BTreeMap<String, EndpointHealth>>,
}

/// How one fresh-vote count came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub up: usize,
    pub down: usize,
    pub stale: usize,
}

impl HealthState {
    /// Applies a report stamped `at_ms` by the node that took it.
    /// Observations of endpoints the spec does not check from that region
    /// (a check removed meanwhile) are ignored. Returns whether any
    /// endpoint entered or left service.
    pub fn apply_report(&mut self, spec: &ZoneSpec, at_ms: u64, report: &Report) -> bool {
        self.now_ms = self.now_ms.max(at_ms);
        // Per pool named in the report: its endpoint ids, if the pool is
        // checked from the report's region.
        let mut accepted: HashMap<&str, Option<HashSet<&str>>> = HashMap::new();
        for o in &report.observations {
            let ids = accepted.entry(&o.pool).or_insert_with(|| {
                let (pool, check) = checked(spec, &o.pool)?;
                check
                    .regions
                    .contains(&report.region)
                    .then(|| endpoint_ids(pool))
            });
            if !ids
                .as_ref()
                .is_some_and(|ids| ids.contains(o.endpoint.as_str()))
            {
                continue;
            }
            let entry = self
                .pools
                .entry(o.pool.clone())
                .or_default()
                .entry(o.endpoint.clone())
                .or_default();
            let previous = entry.votes.get(&report.region).and_then(|v| v.rtt_ms);
            let rtt_ms = match (o.ok, o.connect_ms, previous) {
                (true, Some(ms), Some(p)) => Some(EWMA_ALPHA * ms + (1.0 - EWMA_ALPHA) * p),
                (true, Some(ms), None) => Some(ms),
                _ => previous,
            };
            entry.votes.insert(
                report.region.clone(),
                Vote {
                    up: o.up,
                    ok: o.ok,
                    at_ms: self.now_ms,
                    agent: report.agent.clone(),
                    connect_ms: o.connect_ms,
                    ttfb_ms: o.ttfb_ms,
                    rtt_ms,
                    error: o.error.clone(),
                },
            );
        }
        self.evaluate(spec)
    }

    /// Re-derives every verdict at the current cluster time, and forgets
    /// endpoints, pools and regions the spec no longer checks. Returns
    /// whether any endpoint entered or left service.
    pub fn evaluate(&mut self, spec: &ZoneSpec) -> bool {
        let now = self.now_ms;
        let mut changed = false;
        self.pools.retain(|name, endpoints| {
            let Some((pool, check)) = checked(spec, name) else {
                changed |= endpoints.values().any(|h| !h.in_service);
                return false;
            };
            let ids = endpoint_ids(pool);
            endpoints.retain(|id, h| {
                let keep = ids.contains(id.as_str());
                changed |= !keep && !h.in_service;
                keep
            });
            for h in endpoints.values_mut() {
                h.votes.retain(|region, _| check.regions.contains(region));
                let t = tally(h, check, now);
                let verdict = if t.up >= check.quorum {
                    true
                } else if t.down >= check.quorum {
                    false
                } else {
                    h.up
                };
                if verdict != h.up {
                    h.up = verdict;
                    h.since_ms = now;
                    h.hold_until_ms = if verdict {
                        now.saturating_add(check.hold_down_ms)
                    } else {
                        0
                    };
                }
                let in_service = h.up && now >= h.hold_until_ms;
                changed |= in_service != h.in_service;
                h.in_service = in_service;
            }
            !endpoints.is_empty()
        });
        changed
    }

    /// What the steering steps use: per checked pool, each endpoint's
    /// service state and the smoothed RTT of its fresh regions.
    pub fn observations(&self, spec: &ZoneSpec) -> Observations {
        let mut out = Observations::new();
        for (name, endpoints) in &self.pools {
            let Some((pool, check)) = checked(spec, name) else {
                continue;
            };
            let seen = pool
                .endpoints
                .iter()
                .map(|e| match endpoints.get(&e.id) {
                    None => Observed::default(),
                    Some(h) => Observed {
                        in_service: h.in_service,
                        rtt_ms: h
                            .votes
                            .iter()
                            .filter(|(_, v)| fresh(v, check, self.now_ms))
                            .filter_map(|(r, v)| Some((r.clone(), v.rtt_ms?)))
                            .collect(),
                    },
                })
                .collect();
            out.insert(name.clone(), seen);
        }
        out
    }

    /// The fresh votes on one endpoint, counted.
    pub fn tally(&self, spec: &ZoneSpec, pool: &str, endpoint: &str) -> Option<Tally> {
        let (_, check) = checked(spec, pool)?;
        let h = self.pools.get(pool)?.get(endpoint)?;
        Some(tally(h, check, self.now_ms))
    }
}

/// The health of every checked endpoint, for `meridian cluster health`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthView {
    pub now_ms: u64,
    pub endpoints: Vec<EndpointView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointView {
    pub pool: String,
    pub endpoint: String,
    pub up: bool,
    pub in_service: bool,
    /// Cluster time of the last verdict change, if any.
    pub since_ms: Option<u64>,
    pub quorum: usize,
    /// One entry per region of the check, in the check's order.
    pub regions: Vec<RegionView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegionView {
    pub region: String,
    /// The region's latest vote; `None` before its first report.
    pub vote: Option<Vote>,
    pub fresh: bool,
    pub age_ms: Option<u64>,
}

impl HealthState {
    /// Every endpoint of every checked pool, with each region's vote.
    pub fn view(&self, spec: &ZoneSpec) -> HealthView {
        let mut endpoints = Vec::new();
        for (name, pool) in &spec.pools {
            let Some(check) = &pool.check else { continue };
            for e in &pool.endpoints {
                let h = self.pools.get(name).and_then(|p| p.get(&e.id));
                let d = EndpointHealth::default();
                let h = h.unwrap_or(&d);
                endpoints.push(EndpointView {
                    pool: name.clone(),
                    endpoint: e.id.clone(),
                    up: h.up,
                    in_service: h.in_service,
                    since_ms: (h.since_ms > 0).then_some(h.since_ms),
                    quorum: check.quorum,
                    regions: check
                        .regions
                        .iter()
                        .map(|r| {
                            let vote = h.votes.get(r).cloned();
                            RegionView {
                                region: r.clone(),
                                fresh: vote.as_ref().is_some_and(|v| fresh(v, check, self.now_ms)),
                                age_ms: vote.as_ref().map(|v| self.now_ms.saturating_sub(v.at_ms)),
                                vote,
                            }
                        })
                        .collect(),
                });
            }
        }
        HealthView {
            now_ms: self.now_ms,
            endpoints,
        }
    }
}

fn checked<'s>(spec: &'s ZoneSpec, pool: &str) -> Option<(&'s Pool, &'s Check)> {
    let p = spec.pools.get(pool)?;
    Some((p, p.check.as_ref()?))
}

/// A pool's endpoint ids, so that checking every endpoint against them
/// is not quadratic in the pool's size.
fn endpoint_ids(pool: &Pool) -> HashSet<&str> {
    pool.endpoints.iter().map(|e| e.id.as_str()).collect()
}

fn fresh(v: &Vote, check: &Check, now: u64) -> bool {
    now.saturating_sub(v.at_ms) <= check.stale_after_ms
}

fn tally(h: &EndpointHealth, check: &Check, now: u64) -> Tally {
    let mut t = Tally {
        up: 0,
        down: 0,
        stale: 0,
    };
    for v in h.votes.values() {
        match (fresh(v, check, now), v.up) {
            (false, _) => t.stale += 1,
            (true, true) => t.up += 1,
            (true, false) => t.down += 1,
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_leave_out_what_they_lack() {
        let o = Observation {
            pool: "p".into(),
            endpoint: "e".into(),
            up: true,
            ok: true,
            connect_ms: Some(0.25),
            ttfb_ms: None,
            error: None,
        };
        let json = serde_json::to_string(&o).unwrap();
        assert_eq!(
            json,
            r#"{"pool":"p","endpoint":"e","up":true,"ok":true,"connect_ms":0.25}"#
        );
        // log entries written with nulls still read
        let old = r#"{"pool":"p","endpoint":"e","up":true,"ok":true,"connect_ms":0.25,"ttfb_ms":null,"error":null}"#;
        assert_eq!(serde_json::from_str::<Observation>(old).unwrap(), o);
    }

    const SPEC: &str = r#"
regions:
  a: {lat: 50, lon: 0}
  b: {lat: 40, lon: -70}
  c: {}
pools:
  web:
    check: {kind: tcp, port: 80, interval: 1s, stale_after: 3s, hold_down: 5s}
    endpoints:
      - {id: x, address: 192.0.2.1, region: a}
      - {id: y, address: 192.0.2.2, region: b}
"#;

    fn spec() -> ZoneSpec {
        meridian_config::zone::parse("spec.yaml", SPEC).expect("valid")
    }

    fn report(region: &str, up: bool, ms: f64) -> Report {
        Report {
            region: region.into(),
            agent: format!("agent-{region}"),
            observations: vec![Observation {
                pool: "web".into(),
                endpoint: "x".into(),
                up,
                ok: up,
                connect_ms: up.then_some(ms),
                ttfb_ms: None,
                error: (!up).then(|| "refused".to_string()),
            }],
        }
    }

    fn x(h: &HealthState) -> &EndpointHealth {
        &h.pools["web"]["x"]
    }

    #[test]
    fn a_quorum_of_fresh_regions_decides() {
        let s = spec();
        let mut h = HealthState::default();
        // default quorum of three regions is two
        assert!(!h.apply_report(&s, 1_000, &report("a", false, 0.0)));
        assert!(x(&h).in_service, "one down vote is not a quorum");
        assert!(h.apply_report(&s, 1_100, &report("b", false, 0.0)));
        assert!(!x(&h).up);
        assert_eq!(x(&h).since_ms, 1_100);
        // one region up again: still down (one up vote, two down)
        h.apply_report(&s, 1_200, &report("c", true, 4.0));
        assert!(!x(&h).up);
    }

    #[test]
    fn stale_regions_never_vote_down() {
        let s = spec();
        let mut h = HealthState::default();
        h.apply_report(&s, 1_000, &report("a", true, 5.0));
        h.apply_report(&s, 1_000, &report("b", true, 5.0));
        h.apply_report(&s, 1_000, &report("c", false, 0.0));
        assert!(x(&h).up);
        // a and b stop reporting; c keeps saying down for longer than stale_after
        for t in [2_000, 4_000, 9_000] {
            h.apply_report(&s, t, &report("c", false, 0.0));
        }
        let t = h.tally(&s, "web", "x").unwrap();
        assert_eq!((t.up, t.down, t.stale), (0, 1, 2));
        assert!(x(&h).up, "a lone fresh region below quorum changes nothing");
    }

    #[test]
    fn hold_down_keeps_a_returning_endpoint_out() {
        let s = spec();
        let mut h = HealthState::default();
        for r in ["a", "b"] {
            h.apply_report(&s, 1_000, &report(r, false, 0.0));
        }
        assert!(!x(&h).in_service);
        for r in ["a", "b"] {
            h.apply_report(&s, 2_000, &report(r, true, 3.0));
        }
        assert!(x(&h).up && !x(&h).in_service, "held down until 7000");
        assert_eq!(x(&h).hold_until_ms, 7_000);
        assert!(h.apply_report(&s, 7_000, &report("a", true, 3.0)));
        assert!(x(&h).in_service);
    }

    #[test]
    fn rtt_is_smoothed_and_observations_follow_the_pool() {
        let s = spec();
        let mut h = HealthState::default();
        h.apply_report(&s, 1_000, &report("a", true, 10.0));
        h.apply_report(&s, 1_500, &report("a", true, 20.0));
        let v = &x(&h).votes["a"];
        assert!((v.rtt_ms.unwrap() - 13.0).abs() < 1e-9);
        // a failed probe keeps the smoothed RTT
        h.apply_report(&s, 1_600, &report("a", false, 0.0));
        assert!((x(&h).votes["a"].rtt_ms.unwrap() - 13.0).abs() < 1e-9);
        let o = h.observations(&s);
        assert_eq!(o["web"].len(), 2);
        assert_eq!(o["web"][0].rtt_ms, vec![("a".to_string(), 13.0)]);
        assert_eq!(o["web"][1], Observed::default());
        // once stale, the RTT no longer steers
        h.apply_report(&s, 9_000, &report("b", true, 1.0));
        assert!(h.observations(&s)["web"][0]
            .rtt_ms
            .iter()
            .all(|(r, _)| r != "a"));
    }

    #[test]
    fn removed_checks_and_endpoints_are_forgotten_and_late_reports_ignored() {
        let s = spec();
        let mut h = HealthState::default();
        for r in ["a", "b"] {
            h.apply_report(&s, 1_000, &report(r, false, 0.0));
        }
        let mut unchecked = s.clone();
        unchecked.pools.get_mut("web").unwrap().check = None;
        assert!(h.evaluate(&unchecked), "x leaves the down set");
        assert!(h.pools.is_empty());
        h.apply_report(&unchecked, 2_000, &report("a", false, 0.0));
        assert!(h.pools.is_empty());
        // the clock still moved on
        assert_eq!(h.now_ms, 2_000);
        // and time never goes back
        h.apply_report(&unchecked, 1_500, &report("a", false, 0.0));
        assert_eq!(h.now_ms, 2_000);
    }
}
