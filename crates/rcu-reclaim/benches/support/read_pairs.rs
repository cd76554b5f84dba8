//! The read-side loops the benches and examples measure, in one place:
//! each runs `n` read-side sections (or pins, or enters) in a tight loop
//! inside one `#[inline(never)]` function, so a profile or a timer sees
//! the loop alone. Included with `#[path]` by `benches/read_side.rs`,
//! `examples/ab_compare.rs` and `examples/callgrind_read_pair.rs`.

#![allow(dead_code)]

use rcu_reclaim::{Rcu, RcuCell};

/// `n` outermost read-side sections of `rcu`.
#[inline(never)]
pub fn ours_pairs(rcu: &Rcu, n: u64) {
    for _ in 0..n {
        let guard = rcu.read_lock();
        drop(guard);
    }
}

/// `n` read-side sections nested inside one outer section.
#[inline(never)]
pub fn ours_pairs_nested(rcu: &Rcu, n: u64) {
    let outer = rcu.read_lock();
    for _ in 0..n {
        let guard = rcu.read_lock();
        drop(guard);
    }
    drop(outer);
}

/// `n` sections, alternating between two domains, so every `read_lock`
/// misses the one-entry per-thread cache and takes the slow lookup.
#[inline(never)]
pub fn ours_pairs_alternating(a: &Rcu, b: &Rcu, n: u64) {
    for i in 0..n {
        let rcu = if i & 1 == 0 { a } else { b };
        let guard = rcu.read_lock();
        drop(guard);
    }
}

/// `n` sections, each loading `cell` and reading the value.
#[inline(never)]
pub fn ours_load_pairs(rcu: &Rcu, cell: &RcuCell<u64>, n: u64) -> u64 {
    let mut sum = 0u64;
    for _ in 0..n {
        let guard = rcu.read_lock();
        sum = sum.wrapping_add(*cell.load(&guard).expect("the cell is never emptied"));
        drop(guard);
    }
    sum
}

/// `n` arc-swap loads (`ArcSwap::load`: a guard from the thread's debt
/// slots), each reading the value: what a configuration snapshot costs a
/// reader there.
#[inline(never)]
pub fn arc_swap_loads(cell: &arc_swap::ArcSwap<u64>, n: u64) -> u64 {
    let mut sum = 0u64;
    for _ in 0..n {
        let guard = cell.load();
        sum = sum.wrapping_add(**guard);
        drop(guard);
    }
    sum
}

/// `n` arc-swap `load_full`s (a fresh `Arc`: a reference-count increment
/// and decrement), each reading the value.
#[inline(never)]
pub fn arc_swap_load_fulls(cell: &arc_swap::ArcSwap<u64>, n: u64) -> u64 {
    let mut sum = 0u64;
    for _ in 0..n {
        let value = cell.load_full();
        sum = sum.wrapping_add(*value);
        drop(value);
    }
    sum
}

/// `n` crossbeam-epoch sections, each loading an `Atomic` and reading the
/// value (crossbeam-epoch's counterpart of `ours_load_pairs`).
#[inline(never)]
pub fn crossbeam_load_pins(cell: &crossbeam_epoch::Atomic<u64>, n: u64) -> u64 {
    let mut sum = 0u64;
    for _ in 0..n {
        let guard = crossbeam_epoch::pin();
        let p = cell.load(std::sync::atomic::Ordering::Acquire, &guard);
        // SAFETY: the benches store a valid value before the loop and never
        // free it while it runs.
        sum = sum.wrapping_add(*unsafe { p.deref() });
        drop(guard);
    }
    sum
}

/// `n` crossbeam-epoch pins (pin, then drop the guard).
#[inline(never)]
pub fn crossbeam_pins(n: u64) {
    for _ in 0..n {
        let guard = crossbeam_epoch::pin();
        drop(guard);
    }
}

/// `n` seize sections (enter, then drop the guard).
#[inline(never)]
pub fn seize_enters(collector: &seize::Collector, n: u64) {
    for _ in 0..n {
        let guard = collector.enter();
        drop(guard);
    }
}

/// `n` read-side sections of a QSBR thread, each loading `cell` and reading
/// the value (the guard is free: the loop should be the load and the read).
#[inline(never)]
pub fn qsbr_load_sections(thread: &rcu_reclaim::QsbrThread, cell: &RcuCell<u64>, n: u64) -> u64 {
    let mut sum = 0u64;
    for _ in 0..n {
        let guard = thread.read_lock();
        sum = sum.wrapping_add(*cell.load(&guard).expect("the cell is never emptied"));
    }
    sum
}

/// The baseline of [`qsbr_load_sections`]: `n` acquire loads of a pointer
/// and reads of the value (with the same `None` check), no RCU at all: the
/// loads the user writes.
#[inline(never)]
pub fn plain_loads(ptr: &std::sync::atomic::AtomicPtr<u64>, n: u64) -> u64 {
    let mut sum = 0u64;
    for _ in 0..n {
        let p = ptr.load(std::sync::atomic::Ordering::Acquire);
        // SAFETY: the caller's pointer is null or valid for the whole loop.
        let v = unsafe { p.as_ref() }.expect("the pointer is never null");
        sum = sum.wrapping_add(*v);
    }
    sum
}

/// [`plain_loads`] inside QSBR read-side sections: the guard is taken
/// around each load (as the `rcu-reclaim bench` table does with its raw
/// bucket pointers); the count must equal [`plain_loads`]'s.
#[inline(never)]
pub fn qsbr_raw_loads(
    thread: &rcu_reclaim::QsbrThread,
    ptr: &std::sync::atomic::AtomicPtr<u64>,
    n: u64,
) -> u64 {
    let mut sum = 0u64;
    for _ in 0..n {
        let guard = thread.read_lock();
        let p = ptr.load(std::sync::atomic::Ordering::Acquire);
        // SAFETY: the caller's pointer is null or valid for the whole loop.
        let v = unsafe { p.as_ref() }.expect("the pointer is never null");
        sum = sum.wrapping_add(*v);
        let _ = guard;
    }
    sum
}

/// `n` quiescent states of a QSBR thread, no grace period beginning
/// meanwhile (the fast path).
#[inline(never)]
pub fn qsbr_quiescent_states(thread: &mut rcu_reclaim::QsbrThread, n: u64) {
    for _ in 0..n {
        thread.quiescent_state();
    }
}
