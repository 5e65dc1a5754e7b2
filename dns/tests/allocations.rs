//! The hot path's promise, kept with a counting allocator (its own test
//! binary, since the library forbids unsafe code): reading a query,
//! answering it (static, weighted and GeoIP-steered, NXDOMAIN) and writing
//! a FORMERR reply allocate nothing.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use std::net::IpAddr;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use meridian_dns::hot::Incoming;
use meridian_dns::wire::{parse, Parsed};
use meridian_dns::{Handler, Snapshot, SnapshotHandle};
use meridian_steering::geo::build::{city_database, demo_places};
use meridian_steering::geo::DbBytes;
use meridian_steering::GeoIp;

/// The system allocator, counting this thread's allocations.
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: every call goes to the system allocator unchanged; the count is
// a thread-local cell with a const initializer, which does not allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: the caller's contract, passed on
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

#[test]
fn reading_a_query_allocates_nothing() {
    let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1];
    q.extend_from_slice(b"\x03www\x07example\x03com\x00\x00\x01\x00\x01");
    q.extend_from_slice(&[0, 0, 41, 0x04, 0xD0, 0, 0, 0x80, 0, 0, 11]);
    q.extend_from_slice(&[0, 8, 0, 7, 0, 1, 24, 0, 192, 0, 2]);
    let bad = [&q[..], &[0]].concat();
    let mut reply = Vec::with_capacity(512);
    let before = ALLOCATIONS.with(Cell::get);
    let mut hot = 0;
    for _ in 0..1000 {
        if let Parsed::Hot(h) = parse(&q) {
            hot += usize::from(h.edns.is_some_and(|e| e.ecs.is_some()));
        }
        if let Parsed::FormErr(f) = parse(&bad) {
            f.reply(1232, &mut reply);
        }
    }
    let allocated = ALLOCATIONS.with(Cell::get) - before;
    assert_eq!(hot, 1000);
    assert_eq!(reply[3] & 0x0F, 1, "FORMERR");
    assert_eq!(allocated, 0, "allocations while reading 2000 queries");
}

const SPEC: &str = r#"
zones:
  example.com:
    soa: {rname: hostmaster.example.com.}
    ns: [{name: ns1, addresses: [192.0.2.53]}]
    records:
      - {name: www, type: A, values: [192.0.2.1, 192.0.2.2]}
    steered:
      - {name: lb, type: A, pool: web, steps: [health, weighted, {first: 2}]}
      - name: geo
        type: A
        pool: web
        steps:
          - health
          - geo: {continents: {EU: [eu], NA: [us]}, default: [us]}
          - {first: 1}
pools:
  web:
    endpoints:
      - {id: eu, address: 192.0.2.10, region: eu, weight: 50}
      - {id: us, address: 198.51.100.10, region: us, weight: 30}
"#;

/// A query for `name` and type A with an OPT record and an ECS option for
/// 192.0.2.0/24.
fn query(name: &str) -> Vec<u8> {
    let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1];
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q.extend_from_slice(&[0, 0, 41, 0x04, 0xD0, 0, 0, 0, 0, 0, 11]);
    q.extend_from_slice(&[0, 8, 0, 7, 0, 1, 24, 0, 192, 0, 2]);
    q
}

#[test]
fn answering_on_the_hot_path_allocates_nothing() {
    let spec = meridian_config::zone::parse("t.yaml", SPEC).expect("valid spec");
    let snap = Snapshot::build(&spec, &Default::default(), 1, 1).expect("builds");
    let geo = GeoIp::new(DbBytes::Owned(city_database(&demo_places()).unwrap()), None).unwrap();
    let handler = Handler::new(
        SnapshotHandle::new(snap),
        Arc::new(ArcSwapOption::from_pointee(geo)),
        1232,
    );
    let queries: Vec<Vec<u8>> = [
        "www.example.com",
        "lb.example.com",
        "geo.example.com",
        "nope.example.com",
        "www.example.org",
    ]
    .iter()
    .map(|n| query(n))
    .collect();
    let source: IpAddr = "203.0.113.9".parse().unwrap();
    let mut out = Vec::with_capacity(1232);
    let answer = |q: &[u8], out: &mut Vec<u8>| {
        let Parsed::Hot(h) = parse(q) else {
            panic!("a query of the hot shape")
        };
        assert!(
            handler
                .answer_hot(
                    &Incoming {
                        query: &h,
                        packet: q,
                        source,
                        udp: true,
                    },
                    out
                )
                .is_some(),
            "answered on the hot path"
        );
    };
    // the first answers set up the thread's randomness and scratch space
    for q in &queries {
        answer(q, &mut out);
    }
    let before = ALLOCATIONS.with(Cell::get);
    for _ in 0..1000 {
        for q in &queries {
            answer(q, &mut out);
        }
    }
    let allocated = ALLOCATIONS.with(Cell::get) - before;
    assert_eq!(allocated, 0, "allocations while answering 5000 queries");
}
