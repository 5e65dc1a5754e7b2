//! Clients classified ahead of time, as gdnsd does: for a policy's
//! client-dependent steps (`geo`, `fence` by place, `nearest`, and the
//! probe region `latency` and `cost` measure from), what each decides
//! depends only on the client's GeoIP record. A [`Tree`] maps every
//! address range of the City database to that decision (a
//! [`ClientClass`]), adjacent ranges of the same class merged, so a query
//! does one binary search instead of a GeoIP lookup and the steps' logic.
//!
//! The ECS scope follows from the tree: the widest prefix around the
//! client that lies inside its merged range is exactly the widest prefix
//! whose every address gets the same answer. It is never wider (that
//! would hand one client's answer to others through resolver caches) and
//! never narrower than the database forces.
//!
//! Health, weights and measured RTTs still apply per query: a class says
//! only what the client's place decides (an order of regions, a ranking
//! by distance, a probe region, a fence's verdicts), never which
//! endpoints are up. Policies whose steps read the client's address itself
//! (sticky weighting, fences by ASN or CIDR) are not classified and look
//! the client up per query as before.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::geo::{GeoIp, Networks, ALIASES};
use crate::Policy;

/// What one client-dependent step decides from the client alone.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum StageKey {
    /// `geo`: the regions to try, in order.
    Regions(Box<[u16]>),
    /// `nearest`: each endpoint's rank by biased distance (equal
    /// distances, equal ranks).
    Ranks(Box<[u16]>),
    /// `nearest` for a client without coordinates: the order is kept.
    Unplaced,
    /// `latency`, `cost`: the probe region nearest the client.
    Probe(Option<u16>),
    /// `fence`: each rule's (allow matches, deny matches).
    Fence(Box<[(bool, bool)]>),
}

/// What each client-dependent step of a policy decides for a client, in
/// the order of the steps.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientClass {
    pub(crate) keys: Box<[StageKey]>,
}

/// Address ranges in order: range `i` runs from `starts[i]` to just before
/// `starts[i + 1]` (the last to the family's end) and has class
/// `class[i]`; the first starts at 0 and neighbours differ.
#[derive(Debug, Default)]
struct Ranges<T> {
    starts: Vec<T>,
    /// Classes fit in 16 bits: a tree has at most [`MAX_CLASSES`].
    class: Vec<u16>,
}

/// A policy's clients by network, for one GeoIP database.
#[derive(Debug)]
pub struct Tree {
    classes: Vec<ClientClass>,
    v4: Ranges<u32>,
    v6: Ranges<u128>,
}

/// The most classes a tree is built for: a classifier with more (a
/// `nearest` over many endpoints ranks clients in thousands of ways)
/// hardly merges networks, so its tree would cost memory in proportion
/// to the database and widen no scope.
pub const MAX_CLASSES: usize = 1024;

/// A tree is kept only when merging left at most this share of the
/// database's networks as ranges.
const MAX_RANGE_SHARE: f64 = 0.5;

/// The class of addresses a tree leaves to a GeoIP lookup.
const LOOK_UP: u16 = u16::MAX;

/// Builds the trees of `policies` (each classifiable) from one pass over
/// `geo`'s City database; `None` for a policy whose clients do not merge
/// enough to be worth a tree (see [`MAX_CLASSES`]), which keeps looking
/// clients up.
pub fn build(geo: &GeoIp, policies: &[&Policy]) -> Vec<Option<Tree>> {
    let networks = geo.networks();
    policies.iter().map(|p| Tree::new(&networks, p)).collect()
}

impl Tree {
    fn new(networks: &Networks, policy: &Policy) -> Option<Tree> {
        let mut classes = Vec::new();
        let mut index: HashMap<ClientClass, u32> = HashMap::new();
        let class_of: Vec<u32> = networks
            .locations
            .iter()
            .map(|loc| {
                let class = policy.client_class(loc);
                *index.entry(class).or_insert_with_key(|c| {
                    classes.push(c.clone());
                    (classes.len() - 1) as u32
                })
            })
            .collect();
        if classes.len() > MAX_CLASSES {
            return None;
        }
        let v4: Vec<(u128, u8, u16)> = networks
            .v4
            .iter()
            .map(|&(a, p, id)| (u128::from(a), p, class_of[id as usize] as u16))
            .collect();
        // the IPv6 prefixes that read the IPv4 subtree stay lookups
        let v6: Vec<(u128, u8, u16)> = networks
            .v6
            .iter()
            .map(|&(a, p, id)| (a, p, class_of[id as usize] as u16))
            .chain(ALIASES.iter().map(|&(a, p)| (a, p, LOOK_UP)))
            .collect();
        let tree = Tree {
            classes,
            v4: ranges(v4, 32, class_of[0] as u16, |a| a as u32),
            v6: ranges(v6, 128, class_of[0] as u16, |a| a),
        };
        let limit = (networks.v4.len() + networks.v6.len()) as f64 * MAX_RANGE_SHARE;
        (tree.v4.starts.len() + tree.v6.starts.len() <= limit.max(64.0) as usize).then_some(tree)
    }

    /// The class of `ip`, and the widest prefix around it inside which
    /// every address has that class; `None` for addresses the tree leaves
    /// to a GeoIP lookup (IPv6 addresses that alias IPv4 ones).
    pub fn classify(&self, ip: IpAddr) -> Option<(&ClientClass, u8)> {
        let (i, scope) = match ip {
            IpAddr::V4(a) => find(&self.v4, u32::from(a), 32, u128::from),
            IpAddr::V6(a) => find(&self.v6, u128::from(a), 128, |v| v),
        };
        self.classes.get(i as usize).map(|c| (c, scope))
    }

    /// How many merged ranges the tree holds (IPv4, IPv6), and how many
    /// classes.
    pub fn size(&self) -> (usize, usize, usize) {
        (
            self.v4.starts.len(),
            self.v6.starts.len(),
            self.classes.len(),
        )
    }

    /// Heap bytes held.
    pub fn memory(&self) -> usize {
        let keys: usize = self
            .classes
            .iter()
            .map(|c| {
                c.keys.len() * std::mem::size_of::<StageKey>()
                    + c.keys
                        .iter()
                        .map(|k| match k {
                            StageKey::Regions(r) | StageKey::Ranks(r) => r.len() * 2,
                            StageKey::Fence(f) => f.len() * 2,
                            StageKey::Unplaced | StageKey::Probe(_) => 0,
                        })
                        .sum::<usize>()
            })
            .sum();
        self.v4.starts.capacity() * 4
            + self.v4.class.capacity() * 2
            + self.v6.starts.capacity() * 16
            + self.v6.class.capacity() * 2
            + self.classes.capacity() * std::mem::size_of::<ClientClass>()
            + keys
    }
}

/// The merged ranges of one family from its networks (first address,
/// prefix, class), addresses outside every network taking the class
/// `unknown` (that of "not in the database").
fn ranges<T: Copy>(
    mut sorted: Vec<(u128, u8, u16)>,
    bits: u32,
    unknown: u16,
    narrow: impl Fn(u128) -> T,
) -> Ranges<T> {
    sorted.sort_unstable_by_key(|&(a, p, _)| (a, p));
    let mut out = Ranges {
        starts: Vec::new(),
        class: Vec::new(),
    };
    let mut push = |start: u128, class: u16| {
        if out.class.last() != Some(&class) {
            out.starts.push(narrow(start));
            out.class.push(class);
        }
    };
    // the first address not yet covered; None once the family is
    let mut next = Some(0u128);
    for (start, prefix, class) in sorted {
        let Some(n) = next else { break };
        if start < n {
            continue; // inside a network already placed
        }
        if start > n {
            push(n, unknown);
        }
        push(start, class);
        let host_bits = bits - u32::from(prefix).min(bits);
        next = 1u128
            .checked_shl(host_bits)
            .and_then(|size| start.checked_add(size))
            .filter(|&end| bits == 128 || end <= u128::from(u32::MAX));
    }
    if let Some(n) = next {
        push(n, unknown);
    }
    out
}

/// The range holding `a`, and the widest prefix around `a` inside it.
fn find<T: Copy + Ord>(r: &Ranges<T>, a: T, bits: u32, wide: impl Fn(T) -> u128) -> (u16, u8) {
    let i = r.starts.partition_point(|&s| s <= a) - 1;
    let start = wide(r.starts[i]);
    let end = r
        .starts
        .get(i + 1)
        .map_or(u128::MAX >> (128 - bits), |&n| wide(n) - 1);
    (r.class[i], widest(wide(a), start, end, bits))
}

/// The shortest prefix length whose block around `a` lies within
/// `[start, end]`: the block frees the `k` low bits where `k` is below
/// the highest bit in which `a` differs from `start - 1` and from
/// `end + 1`.
fn widest(a: u128, start: u128, end: u128, bits: u32) -> u8 {
    let highest_difference = |x: u128| 127 - x.leading_zeros();
    let low = if start == 0 {
        bits
    } else {
        highest_difference(a ^ (start - 1))
    };
    let max = u128::MAX >> (128 - bits);
    let high = if end == max {
        bits
    } else {
        highest_difference(a ^ (end + 1))
    };
    (bits - low.min(high)) as u8
}

/// Sorts `list` by each candidate's rank, keeping the order of equal
/// ranks, in place (lists are short: a pool's endpoints).
pub(crate) fn sort_by_rank(list: &mut [u16], ranks: &[u16]) {
    for i in 1..list.len() {
        let mut j = i;
        while j > 0 && ranks[usize::from(list[j - 1])] > ranks[usize::from(list[j])] {
            list.swap(j - 1, j);
            j -= 1;
        }
    }
}

/// Dense ranks of `keys` by `total_cmp`: equal keys share a rank.
pub(crate) fn ranks(keys: &[f64]) -> Box<[u16]> {
    let mut order: Vec<usize> = (0..keys.len()).collect();
    order.sort_by(|&a, &b| keys[a].total_cmp(&keys[b]));
    let mut ranks = vec![0u16; keys.len()];
    let mut rank = 0u16;
    for (n, &i) in order.iter().enumerate() {
        if n > 0 && keys[order[n - 1]].total_cmp(&keys[i]).is_ne() {
            rank += 1;
        }
        ranks[i] = rank;
    }
    ranks.into_boxed_slice()
}

/// The class of a client at `loc`, for tests.
#[cfg(test)]
pub(crate) fn location_class(policy: &Policy, loc: &crate::geo::Location) -> ClientClass {
    policy.client_class(loc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_widest_block_inside_a_range() {
        // 10.0.0.0 - 10.255.255.255 holds 10.1.2.3 in a /8
        let a = u128::from(0x0A01_0203u32);
        assert_eq!(widest(a, 0x0A00_0000, 0x0AFF_FFFF, 32), 8);
        // a range that starts mid-block: 10.128.0.0 - 10.255.255.255
        assert_eq!(
            widest(u128::from(0x0A80_0001u32), 0x0A80_0000, 0x0AFF_FFFF, 32),
            9
        );
        // the whole space
        assert_eq!(widest(a, 0, u128::from(u32::MAX), 32), 0);
        // a single address
        assert_eq!(widest(a, a, a, 32), 32);
        // an odd range: 5 in [4, 6] is the block [4, 5]
        assert_eq!(widest(5, 4, 6, 32), 31);
        assert_eq!(widest(5, 4, 7, 32), 30);
        assert_eq!(widest(u128::MAX, 0, u128::MAX, 128), 0);
        assert_eq!(widest(u128::MAX, u128::MAX - 1, u128::MAX, 128), 127);
    }

    #[test]
    fn ranks_share_equal_keys() {
        assert_eq!(
            &*ranks(&[3.0, 1.0, 3.0, f64::INFINITY, 0.5]),
            &[2, 1, 2, 3, 0]
        );
        let mut list = vec![0u16, 1, 2, 3, 4];
        sort_by_rank(&mut list, &ranks(&[3.0, 1.0, 3.0, f64::INFINITY, 0.5]));
        assert_eq!(list, [4, 1, 0, 2, 3]);
    }
}
