//! Counters of what the DNS server does, kept off the query path's
//! critical section: every thread that answers counts into a block of its
//! own, and a scrape sums the blocks ([`totals`]).
//!
//! - Fixed counters (queries by type, RCODE and transport; ECS queries;
//!   truncations; the response-time histogram) are atomics only their
//!   thread writes, with plain loads and stores: no locked instruction,
//!   no cache line shared with another thread.
//! - Counters by zone and by steered record and endpoint are keyed by
//!   hashes the snapshot computed ahead of time ([`zone_key`],
//!   [`steered_key`], [`endpoint_key`]), in a map per thread behind a
//!   lock only a scrape ever contends for. A scrape names the keys from
//!   the snapshot it serves.

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rustc_hash::{FxHashMap, FxHasher};

/// Query types counted by name; the rest are `other`.
pub const QTYPES: [(u16, &str); 12] = [
    (1, "A"),
    (28, "AAAA"),
    (5, "CNAME"),
    (15, "MX"),
    (16, "TXT"),
    (2, "NS"),
    (6, "SOA"),
    (33, "SRV"),
    (257, "CAA"),
    (255, "ANY"),
    (12, "PTR"),
    (65, "HTTPS"),
];
const QTYPE_OTHER: usize = QTYPES.len();
const NQTYPES: usize = QTYPES.len() + 1;

/// Response codes counted by name (the header's four bits); the rest are
/// `other`.
pub const RCODES: [&str; 6] = [
    "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED",
];
const NRCODES: usize = RCODES.len() + 1;

/// Upper bounds of the response-time histogram, in microseconds: from a
/// datagram's arrival (or a TCP message's) to its answer being ready.
pub const LATENCY_BOUNDS_US: [u64; 11] = [
    10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 50_000,
];

/// The transports a query came over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp = 0,
    Tcp = 1,
}

/// What a keyed counter counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Key {
    /// Answers from a zone ([`zone_key`]).
    Zone(u64),
    /// A steered record's answers ([`steered_key`]) by what was answered
    /// first: an endpoint ([`endpoint_key`]) or one of [`SORRY`],
    /// [`NODATA`], [`HTTP_FALLBACK`].
    Steered(u64, u64),
}

/// What a steered record answered instead of an endpoint.
pub const SORRY: u64 = 1;
pub const NODATA: u64 = 2;
pub const HTTP_FALLBACK: u64 = 3;

/// One answer, as the answering path saw it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Seen {
    /// The zone that answered ([`zone_key`]); 0: none (REFUSED, errors).
    pub zone: u64,
    /// The steered record that decided and what it answered first.
    pub steered: Option<(u64, u64)>,
    /// The query carried an ECS option.
    pub ecs: bool,
}

#[derive(Default)]
struct Block {
    queries: [[[AtomicU64; 2]; NRCODES]; NQTYPES],
    ecs: AtomicU64,
    truncated: AtomicU64,
    latency: [AtomicU64; LATENCY_BOUNDS_US.len() + 1],
    latency_sum_ns: AtomicU64,
    keyed: Mutex<FxHashMap<Key, u64>>,
}

/// Adds `n` to a counter only this thread writes.
fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

static BLOCKS: Mutex<Vec<Arc<Block>>> = Mutex::new(Vec::new());

thread_local! {
    static BLOCK: Arc<Block> = {
        let b = Arc::new(Block::default());
        BLOCKS.lock().unwrap_or_else(|p| p.into_inner()).push(b.clone());
        b
    };
}

/// Whether answers are counted (`dns.metrics`; on unless turned off, for
/// measuring what counting costs).
static ENABLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Turns counting on or off for the whole process.
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Counts one answer written into `response` (a complete message), over
/// `transport`, `elapsed_ns` after its query arrived.
pub fn count(response: &[u8], transport: Transport, seen: Seen, elapsed_ns: u64) {
    if !ENABLED.load(Ordering::Relaxed) {
        return;
    }
    let Some(header) = response.get(..12) else {
        return;
    };
    let rcode = usize::from(header[3] & 0x0F).min(NRCODES - 1);
    let qtype = if u16::from_be_bytes([header[4], header[5]]) == 1 {
        question_type(response)
    } else {
        None
    };
    let qtype = qtype
        .and_then(|t| QTYPES.iter().position(|(code, _)| *code == t))
        .unwrap_or(QTYPE_OTHER);
    let truncated = header[2] & 0x02 != 0;
    BLOCK.with(|b| {
        bump(&b.queries[qtype][rcode][transport as usize], 1);
        if seen.ecs {
            bump(&b.ecs, 1);
        }
        if truncated {
            bump(&b.truncated, 1);
        }
        let us = elapsed_ns / 1000;
        let bucket = LATENCY_BOUNDS_US
            .iter()
            .position(|&b| us <= b)
            .unwrap_or(LATENCY_BOUNDS_US.len());
        bump(&b.latency[bucket], 1);
        bump(&b.latency_sum_ns, elapsed_ns);
        if seen.zone != 0 || seen.steered.is_some() {
            let mut keyed = b.keyed.lock().unwrap_or_else(|p| p.into_inner());
            if seen.zone != 0 {
                *keyed.entry(Key::Zone(seen.zone)).or_insert(0) += 1;
            }
            if let Some((record, what)) = seen.steered {
                *keyed.entry(Key::Steered(record, what)).or_insert(0) += 1;
            }
        }
    });
}

/// The question's type in a message with one question.
fn question_type(msg: &[u8]) -> Option<u16> {
    let mut i = 12;
    loop {
        let len = *msg.get(i)?;
        if len == 0 {
            break;
        }
        if len & 0xC0 != 0 {
            i += 1;
            break;
        }
        i += 1 + usize::from(len);
    }
    let t = msg.get(i + 1..i + 3)?;
    Some(u16::from_be_bytes([t[0], t[1]]))
}

/// Every thread's counts, summed.
#[derive(Debug, Clone, Default)]
pub struct Totals {
    /// By [`QTYPES`] (and other), [`RCODES`] (and other), UDP and TCP.
    pub queries: Vec<Vec<[u64; 2]>>,
    pub ecs: u64,
    pub truncated: u64,
    /// Per bucket of [`LATENCY_BOUNDS_US`] (and above), not cumulative.
    pub latency: Vec<u64>,
    pub latency_sum_ns: u64,
    pub keyed: FxHashMap<Key, u64>,
}

impl Totals {
    /// The name of a query-type row of [`Totals::queries`].
    pub fn qtype_name(i: usize) -> &'static str {
        QTYPES.get(i).map_or("other", |(_, n)| n)
    }

    /// The name of an RCODE column of [`Totals::queries`].
    pub fn rcode_name(i: usize) -> &'static str {
        RCODES.get(i).copied().unwrap_or("other")
    }
}

/// Sums every thread's block (a scrape's work).
pub fn totals() -> Totals {
    let blocks: Vec<Arc<Block>> = BLOCKS.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut t = Totals {
        queries: vec![vec![[0; 2]; NRCODES]; NQTYPES],
        latency: vec![0; LATENCY_BOUNDS_US.len() + 1],
        ..Totals::default()
    };
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
    for b in &blocks {
        for (q, row) in b.queries.iter().enumerate() {
            for (r, cell) in row.iter().enumerate() {
                t.queries[q][r][0] += load(&cell[0]);
                t.queries[q][r][1] += load(&cell[1]);
            }
        }
        t.ecs += load(&b.ecs);
        t.truncated += load(&b.truncated);
        for (i, c) in b.latency.iter().enumerate() {
            t.latency[i] += load(c);
        }
        t.latency_sum_ns += load(&b.latency_sum_ns);
        let keyed = b.keyed.lock().unwrap_or_else(|p| p.into_inner());
        for (k, v) in keyed.iter() {
            *t.keyed.entry(*k).or_insert(0) += v;
        }
    }
    t
}

fn hash_of(parts: impl Hash) -> u64 {
    let mut h = FxHasher::default();
    parts.hash(&mut h);
    // 0 means "none" in [`Seen::zone`]; SORRY..HTTP_FALLBACK are taken
    h.finish().max(16)
}

/// The key of a zone's counter: its name, lower case, with the final dot.
pub fn zone_key(origin: &str) -> u64 {
    hash_of(("zone", origin.to_ascii_lowercase()))
}

/// The key of a steered record's counters.
pub fn steered_key(name: &str, rtype: &str) -> u64 {
    hash_of(("steered", name.to_ascii_lowercase(), rtype))
}

/// The key of an endpoint among a steered record's counters.
pub fn endpoint_key(pool: &str, id: &str) -> u64 {
    hash_of(("endpoint", pool, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(qtype: u16, rcode: u8, tc: bool) -> Vec<u8> {
        let mut m = vec![
            0,
            1,
            0x84 | if tc { 2 } else { 0 },
            rcode,
            0,
            1,
            0,
            0,
            0,
            0,
            0,
            0,
        ];
        m.extend_from_slice(&[3, b'w', b'w', b'w', 4, b't', b'e', b's', b't', 0]);
        m.extend_from_slice(&qtype.to_be_bytes());
        m.extend_from_slice(&[0, 1]);
        m
    }

    #[test]
    fn counts_from_every_thread_sum_at_a_scrape() {
        let zone = zone_key("count.test.");
        let record = steered_key("lb.count.test.", "A");
        let endpoint = endpoint_key("web", "eu-1");
        let before = totals();
        let seen = Seen {
            zone,
            steered: Some((record, endpoint)),
            ecs: true,
        };
        let threads: Vec<_> = (0..3)
            .map(|_| {
                std::thread::spawn(move || {
                    for _ in 0..100 {
                        count(&response(1, 0, false), Transport::Udp, seen, 30_000);
                    }
                    count(
                        &response(999, 3, true),
                        Transport::Tcp,
                        Seen::default(),
                        2_000_000,
                    );
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let after = totals();
        let a = QTYPES.iter().position(|(c, _)| *c == 1).unwrap();
        assert_eq!(after.queries[a][0][0] - before.queries[a][0][0], 300);
        assert_eq!(
            after.queries[QTYPE_OTHER][3][1] - before.queries[QTYPE_OTHER][3][1],
            3
        );
        assert!(after.ecs - before.ecs >= 300);
        assert!(after.truncated - before.truncated >= 3);
        let get = |t: &Totals, k| t.keyed.get(&k).copied().unwrap_or(0);
        assert_eq!(
            get(&after, Key::Zone(zone)) - get(&before, Key::Zone(zone)),
            300
        );
        assert_eq!(get(&after, Key::Steered(record, endpoint)), 300);
        // 30 µs lands in the 50 µs bucket, 2 ms in the 2.5 ms one
        let b50 = LATENCY_BOUNDS_US.iter().position(|&b| b == 50).unwrap();
        assert!(after.latency[b50] - before.latency[b50] >= 300);
    }
}
