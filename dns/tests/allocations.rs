//! The hot path's promise, kept with a counting allocator (its own test
//! binary, since the library forbids unsafe code): reading a query and
//! writing a FORMERR reply allocate nothing.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use meridian_dns::wire::{parse, Parsed};

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
