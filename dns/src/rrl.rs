//! Response rate limiting over UDP, as Knot's and BIND's RRL do: a
//! flood of spoofed queries "from" a victim cannot turn this server into
//! an amplifier against it.
//!
//! Each UDP answer belongs to a bucket: the client's prefix (a /24 for
//! IPv4, a /56 for IPv6 by default), the answer's class, and, for
//! answers with data or NODATA, the name and type asked. NXDOMAIN answers
//! share one bucket per prefix, and so do errors (FORMERR, REFUSED, …):
//! a flood of random names from one prefix fills one bucket, as Knot's
//! zone-keyed NXDOMAIN class does. Each bucket holds `rate` tokens and
//! refills at `rate` per second; an answer takes one. Past that, every
//! `slip`-th answer is sent truncated (TC=1, header, question and OPT:
//! a real client retries over TCP, which cannot be spoofed) and the
//! others are dropped. `slip: 0` drops them all.
//!
//! Clients with a valid server cookie are not limited (the caller skips
//! them), nor is TCP. Memory is one fixed table of `table_size` buckets
//! whatever the sources: a bucket is found by a keyed hash (a secret
//! seed per process, so no one can aim collisions), and a key meeting a
//! bucket held by another takes it over once that one has refilled;
//! before that the two share it (stricter, never looser).

use std::hash::Hasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use rand::{RngCore, SeedableRng};
use siphasher::sip::SipHasher13;

/// The limits, as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Answers per second per bucket (and the burst a bucket holds).
    pub rate: u32,
    /// Every `slip`-th limited answer is sent truncated; 0: none.
    pub slip: u32,
    /// Leading bits of an IPv4 client that make its prefix.
    pub ipv4_prefix: u8,
    /// Leading bits of an IPv6 client that make its prefix.
    pub ipv6_prefix: u8,
    /// Buckets in the table.
    pub table_size: usize,
}

/// What an answer is about, for its bucket: the question's name, or one
/// node of a zone that answers many names alike (the wildcard a name was
/// synthesized from, the delegation a referral is for), by identity, so
/// that random names under it share one bucket (as BIND keys them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Subject {
    #[default]
    Question,
    Node(usize),
}

impl Subject {
    /// The subject that is `node` (by its address: a node lives as long as
    /// its snapshot).
    pub fn node<T>(node: &T) -> Subject {
        Subject::Node(node as *const T as usize)
    }
}

/// What to do with one answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Send,
    /// Send it truncated (see [`slip`]).
    Slip,
    Drop,
}

/// The class of an answer, from its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
enum Class {
    /// Records, a referral or NODATA: per name and type.
    Answer = 1,
    NxDomain = 2,
    Error = 3,
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    key: u64,
    /// Thousandths of a token.
    tokens: u64,
    /// Milliseconds since the table's start, at the last refill.
    stamp: u64,
    /// Answers limited since the bucket last had a token.
    limited: u32,
}

/// Shards of the table, each behind its own lock: UDP threads rarely
/// meet on one.
const SHARDS: usize = 64;

/// The rate limiter: one per server, shared by its UDP threads.
pub struct Rrl {
    limits: Limits,
    seed: (u64, u64),
    start: Instant,
    shards: Box<[Mutex<Box<[Bucket]>>]>,
    per_shard: usize,
    dropped: AtomicU64,
    slipped: AtomicU64,
}

impl std::fmt::Debug for Rrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rrl").field("limits", &self.limits).finish()
    }
}

impl Rrl {
    pub fn new(limits: Limits) -> Rrl {
        let per_shard = limits.table_size.div_ceil(SHARDS).max(1);
        // every bucket starts full: free for the first key that comes
        let full = Bucket {
            tokens: u64::from(limits.rate) * 1000,
            ..Bucket::default()
        };
        let shards = (0..SHARDS)
            .map(|_| Mutex::new(vec![full; per_shard].into_boxed_slice()))
            .collect();
        Rrl {
            limits,
            seed: {
                let mut rng = rand::rngs::SmallRng::from_os_rng();
                (rng.next_u64(), rng.next_u64())
            },
            start: Instant::now(),
            shards,
            per_shard,
            dropped: AtomicU64::new(0),
            slipped: AtomicU64::new(0),
        }
    }

    /// Answers dropped and sent truncated so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.dropped.load(Ordering::Relaxed),
            self.slipped.load(Ordering::Relaxed),
        )
    }

    /// Milliseconds since the limiter started: the clock [`Rrl::check`]
    /// takes (read once per batch of datagrams).
    pub fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// What to do with `response` (a complete message this server wrote,
    /// about `subject`) to `client` at `now` ([`Rrl::now`]).
    pub fn check(&self, client: IpAddr, response: &[u8], subject: Subject, now: u64) -> Action {
        let Some(key) = self.key(client, response, subject) else {
            return Action::Send;
        };
        let index = (key % (self.per_shard * SHARDS) as u64) as usize;
        let (shard, slot) = (index % SHARDS, index / SHARDS);
        let full = u64::from(self.limits.rate) * 1000;
        let mut table = self.shards[shard].lock().unwrap_or_else(|p| p.into_inner());
        let b = &mut table[slot];
        let elapsed = now.saturating_sub(b.stamp);
        let refilled = b
            .tokens
            .saturating_add(elapsed.saturating_mul(u64::from(self.limits.rate)));
        if b.key != key && refilled >= full {
            // an idle bucket of another key: this key's now
            *b = Bucket {
                key,
                tokens: full,
                stamp: now,
                limited: 0,
            };
        } else {
            b.tokens = refilled.min(full);
            b.stamp = now;
        }
        if b.tokens >= 1000 {
            b.tokens -= 1000;
            b.limited = 0;
            return Action::Send;
        }
        b.limited = b.limited.wrapping_add(1);
        let slip = self.limits.slip;
        if slip > 0 && b.limited.is_multiple_of(slip) {
            self.slipped.fetch_add(1, Ordering::Relaxed);
            Action::Slip
        } else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            Action::Drop
        }
    }

    /// The bucket key of `response` to `client`; `None` for a message
    /// too short to be one of ours.
    fn key(&self, client: IpAddr, response: &[u8], subject: Subject) -> Option<u64> {
        let header = response.get(..12)?;
        let word = |i: usize| u16::from_be_bytes([header[i], header[i + 1]]);
        let (answers, authority) = (word(6), word(8));
        let class = match header[3] & 0x0F {
            // records, NODATA (the SOA in authority) or a referral (the
            // NS set); a NOERROR with neither is an error in an OPT's
            // extended RCODE (BADVERS)
            0 if answers > 0 || authority > 0 => Class::Answer,
            3 => Class::NxDomain,
            _ => Class::Error,
        };
        let mut h = SipHasher13::new_with_keys(self.seed.0, self.seed.1);
        h.write_u8(class as u8);
        match client {
            IpAddr::V4(a) => {
                let bits = u32::from(self.limits.ipv4_prefix.min(32));
                let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
                h.write_u8(4);
                h.write_u32(u32::from(a) & mask);
            }
            IpAddr::V6(a) => {
                let bits = u32::from(self.limits.ipv6_prefix.min(128));
                let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
                h.write_u8(6);
                h.write_u128(u128::from(a) & mask);
            }
        }
        if let (Class::Answer, Subject::Node(id)) = (class, subject) {
            h.write_usize(id);
        } else if class == Class::Answer && word(4) == 1 {
            // the question's name in lower case and its type, hashed in one
            // write (per-byte writes cost more than the rest of the check)
            let mut name = [0u8; 255 + 2];
            let mut at = 0;
            let mut i = 12;
            while let Some(&len) = response.get(i) {
                if len == 0 || len & 0xC0 != 0 || at + 1 + usize::from(len) > 255 {
                    break;
                }
                let label = response.get(i..i + 1 + usize::from(len))?;
                for (n, b) in name[at..at + label.len()].iter_mut().zip(label) {
                    *n = b.to_ascii_lowercase();
                }
                at += label.len();
                i += label.len();
            }
            // the type only for answers with records: NODATA for random
            // types at one name is one bucket
            let qtype = match answers {
                0 => &[][..],
                _ => response.get(i + 1..i + 3).unwrap_or_default(),
            };
            name[at..at + qtype.len()].copy_from_slice(qtype);
            h.write(&name[..at + qtype.len()]);
        }
        Some(h.finish())
    }
}

/// Rewrites `response` as a slip: its header with TC=1 and no records but
/// the question and the OPT record (whose COOKIE lets a client come back
/// with a valid server cookie).
pub fn slip(response: &mut Vec<u8>) {
    let Some(parts) = sections(response) else {
        // not one of ours: the header alone, truncated
        if response.len() >= 12 {
            response.truncate(12);
            response[2] |= 0x02;
            response[4..12].fill(0);
        } else {
            response.clear();
        }
        return;
    };
    // the OPT record moved up behind the question, in place
    let mut end = parts.question_end;
    if let Some(r) = &parts.opt {
        response.copy_within(r.clone(), end);
        end += r.len();
    }
    response.truncate(end);
    response[2] |= 0x02;
    response[6..10].fill(0);
    let ar = u16::from(parts.opt.is_some());
    response[10..12].copy_from_slice(&ar.to_be_bytes());
}

/// Where a message's question ends and where its OPT record is.
struct Sections {
    question_end: usize,
    opt: Option<std::ops::Range<usize>>,
}

fn sections(msg: &[u8]) -> Option<Sections> {
    let word = |i: usize| msg.get(i..i + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
    let (qd, an, ns, ar) = (word(4)?, word(6)?, word(8)?, word(10)?);
    let mut i = 12;
    for _ in 0..qd {
        i = skip_name(msg, i)? + 4;
    }
    let question_end = i;
    let mut opt = None;
    for _ in 0..u32::from(an) + u32::from(ns) + u32::from(ar) {
        let start = i;
        i = skip_name(msg, i)?;
        let rtype = word(i)?;
        let rdlen = usize::from(word(i + 8)?);
        i += 10 + rdlen;
        if i > msg.len() {
            return None;
        }
        if rtype == 41 {
            opt = Some(start..i);
        }
    }
    (question_end <= msg.len()).then_some(Sections { question_end, opt })
}

/// The offset just past the name at `i`.
fn skip_name(msg: &[u8], mut i: usize) -> Option<usize> {
    loop {
        let len = *msg.get(i)?;
        match len {
            0 => return Some(i + 1),
            l if l & 0xC0 == 0xC0 => return Some(i + 2),
            l if l & 0xC0 == 0 => i += 1 + usize::from(l),
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(rate: u32, slip: u32) -> Limits {
        Limits {
            rate,
            slip,
            ipv4_prefix: 24,
            ipv6_prefix: 56,
            table_size: 1024,
        }
    }

    /// A response for `name` with `rcode`, one answer, and an OPT record.
    fn response(name: &str, rcode: u8) -> Vec<u8> {
        let mut m = vec![0, 1, 0x84, rcode, 0, 1, 0, 1, 0, 0, 0, 1];
        for l in name.split('.') {
            m.push(l.len() as u8);
            m.extend_from_slice(l.as_bytes());
        }
        m.extend_from_slice(&[0, 0, 1, 0, 1]);
        m.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1]);
        m.extend_from_slice(&[0, 0, 41, 4, 0xD0, 0, 0, 0, 0, 0, 4, 0, 3, 0, 0]);
        m
    }

    fn run(rrl: &Rrl, client: &str, r: &[u8], n: usize, now: u64) -> (usize, usize, usize) {
        let ip: IpAddr = client.parse().unwrap();
        let mut counts = (0, 0, 0);
        for _ in 0..n {
            match rrl.check(ip, r, Subject::Question, now) {
                Action::Send => counts.0 += 1,
                Action::Slip => counts.1 += 1,
                Action::Drop => counts.2 += 1,
            }
        }
        counts
    }

    #[test]
    fn a_bucket_passes_its_rate_then_slips_every_nth() {
        let rrl = Rrl::new(limits(10, 2));
        let www = response("www.example.com", 0);
        assert_eq!(run(&rrl, "192.0.2.1", &www, 30, 0), (10, 10, 10));
        // the same /24 shares the bucket; the name asked in another case too
        assert_eq!(
            run(&rrl, "192.0.2.200", &response("WWW.example.com", 0), 2, 0),
            (0, 1, 1)
        );
        // another prefix, another name: buckets of their own
        assert_eq!(run(&rrl, "192.0.3.1", &www, 10, 0).0, 10);
        assert_eq!(
            run(&rrl, "192.0.2.1", &response("mail.example.com", 0), 10, 0).0,
            10
        );
        // refilled at the rate: half a second, five answers
        assert_eq!(run(&rrl, "192.0.2.1", &www, 10, 500).0, 5);
        assert_eq!(rrl.counts(), (14, 13));
    }

    #[test]
    fn nxdomain_and_errors_share_a_bucket_per_prefix() {
        let rrl = Rrl::new(limits(5, 0));
        let mut sent = 0;
        for i in 0..20 {
            let r = response(&format!("random{i}.example.com"), 3);
            sent += run(&rrl, "2001:db8:0:ff::1", &r, 1, 0).0;
        }
        assert_eq!(sent, 5, "random names from one /56 fill one bucket");
        assert_eq!(
            run(
                &rrl,
                "2001:db8:0:1ff::1",
                &response("a.example.com", 3),
                5,
                0
            )
            .0,
            5
        );
        let refused = response("example.org", 5);
        assert_eq!(run(&rrl, "2001:db8:0:ff::1", &refused, 10, 0), (5, 0, 5));
    }

    #[test]
    fn random_names_under_one_node_and_random_types_share_a_bucket() {
        let rrl = Rrl::new(limits(5, 0));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let wildcard = Subject::Node(0x1000);
        let sent = (0..20)
            .filter(|i| {
                let r = response(&format!("r{i}.wild.example.com"), 0);
                rrl.check(ip, &r, wildcard, 0) == Action::Send
            })
            .count();
        assert_eq!(sent, 5, "synthesized names share their wildcard's bucket");
        // NODATA (no answers, the SOA in authority) for random types
        let mut nodata = response("www.example.com", 0);
        nodata[7] = 0; // ANCOUNT 0
        nodata[9] = 1; // NSCOUNT 1
        let sent = (0..20u16)
            .filter(|t| {
                let mut r = nodata.clone();
                let at = 12 + 17;
                r[at..at + 2].copy_from_slice(&(1000 + t).to_be_bytes());
                rrl.check(ip, &r, Subject::Question, 0) == Action::Send
            })
            .count();
        assert_eq!(sent, 5, "NODATA is keyed by the name alone");
        // a header-only NOERROR (BADVERS lives in the OPT) is an error
        let sent = (0..20)
            .filter(|i| {
                let mut r = response(&format!("b{i}.example.com"), 0);
                r[7] = 0;
                rrl.check(ip, &r, Subject::Question, 0) == Action::Send
            })
            .count();
        assert_eq!(sent, 5, "errors share one bucket per prefix");
    }

    #[test]
    fn memory_is_the_table_whatever_the_sources() {
        let rrl = Rrl::new(limits(1, 1));
        let www = response("www.example.com", 0);
        // a hundred thousand sources: the table does not grow, and every
        // fresh key finds a bucket it may take or share
        for i in 0..100_000u32 {
            let ip = IpAddr::from((0x0A00_0000 + (i << 8)).to_be_bytes());
            rrl.check(ip, &www, Subject::Question, 0);
        }
        assert_eq!(rrl.shards.len() * rrl.per_shard, 1024);
    }

    #[test]
    fn a_slip_keeps_the_header_question_and_opt() {
        let mut r = response("www.example.com", 0);
        slip(&mut r);
        assert_eq!(&r[..4], &[0, 1, 0x86, 0], "TC set");
        assert_eq!(&r[4..12], &[0, 1, 0, 0, 0, 0, 0, 1]);
        assert_eq!(r.len(), 12 + 17 + 4 + 15);
        assert_eq!(&r[r.len() - 15..r.len() - 12], &[0, 0, 41]);
        let mut junk = vec![0, 1, 0x84, 0, 0, 9];
        slip(&mut junk);
        assert!(junk.is_empty());
        let mut junk = vec![0, 1, 0x84, 0, 0, 9, 0, 0, 0, 0, 0, 0, 7];
        slip(&mut junk);
        assert_eq!(junk, [0, 1, 0x86, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    }
}
