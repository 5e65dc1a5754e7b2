//! Client trees ([`meridian_steering::Tree`]) for the classified policies
//! of the published snapshot: built against the node's GeoIP databases
//! before a snapshot is swapped in, and again when the databases change.
//!
//! Policies with the same classifier share one tree, and a tree outlives
//! snapshots while its classifier and the databases stay: a new snapshot
//! for a health change (every few seconds) reuses every tree and builds
//! none. Trees no snapshot uses any more are dropped.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use meridian_steering::{classify, GeoIp, Policy, Tree};
use tracing::info;

use crate::handler::GeoHandle;
use crate::snapshot::Snapshot;

/// The trees of the current databases, by classifier.
#[derive(Default)]
struct Cache {
    /// The databases the trees were built from (compared by identity).
    geo: Option<Arc<GeoIp>>,
    /// `None`: the classifier is not worth a tree (its policies look
    /// clients up).
    trees: HashMap<[u64; 2], Option<Arc<Tree>>>,
}

/// Builds and attaches client trees; one per snapshot handle.
pub struct Trees {
    geo: GeoHandle,
    /// Held while trees are attached and a snapshot swapped in, so a
    /// database change and a new snapshot cannot interleave.
    cache: Mutex<Cache>,
}

impl Trees {
    pub fn new(geo: GeoHandle) -> Trees {
        Trees {
            geo,
            cache: Mutex::new(Cache::default()),
        }
    }

    /// Runs `f` with the lock held, after attaching trees to `snap`.
    pub fn attach_then<R>(&self, snap: &Snapshot, f: impl FnOnce() -> R) -> R {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        attach(&mut cache, snap, self.geo.load_full());
        f()
    }
}

/// Every steered record's policy in `snap`.
fn policies(snap: &Snapshot) -> impl Iterator<Item = &Policy> {
    snap.zones
        .iter()
        .flat_map(|z| z.nodes.values())
        .flat_map(|n| n.steered.iter())
        .map(|s| &s.policy)
}

fn attach(cache: &mut Cache, snap: &Snapshot, geo: Option<Arc<GeoIp>>) {
    let same_geo = match (&cache.geo, &geo) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        (None, None) => true,
        _ => false,
    };
    if !same_geo {
        cache.trees.clear();
        cache.geo = geo.clone();
    }
    let Some(geo) = geo else {
        for p in policies(snap) {
            p.set_tree(None);
        }
        return;
    };
    // one policy per classifier that has no tree yet
    let mut missing: HashMap<[u64; 2], &Policy> = HashMap::new();
    for p in policies(snap) {
        if let Some(c) = p.classifier() {
            if !cache.trees.contains_key(&c) {
                missing.entry(c).or_insert(p);
            }
        }
    }
    if !missing.is_empty() {
        let started = Instant::now();
        let (keys, todo): (Vec<[u64; 2]>, Vec<&Policy>) = missing.into_iter().unzip();
        let built = classify::build(&geo, &todo);
        let memory: usize = built.iter().flatten().map(Tree::memory).sum();
        let kept = built.iter().flatten().count();
        for (k, t) in keys.into_iter().zip(built) {
            cache.trees.insert(k, t.map(Arc::new));
        }
        info!(
            classifiers = todo.len(),
            trees = kept,
            ms = started.elapsed().as_millis() as u64,
            bytes = memory,
            "client trees built"
        );
    }
    let mut used: HashSet<[u64; 2]> = HashSet::new();
    for p in policies(snap) {
        let tree = p.classifier().and_then(|c| {
            used.insert(c);
            cache.trees.get(&c).cloned().flatten()
        });
        p.set_tree(tree);
    }
    cache.trees.retain(|k, _| used.contains(k));
}
