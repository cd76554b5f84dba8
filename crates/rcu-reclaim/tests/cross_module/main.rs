//! Cross-module stress and misuse tests, on the public API only: callbacks
//! that retire and write into cells and maps while barriers race them,
//! domains made and dropped while other threads hold their handles,
//! sections and registrations, several flavors read at once with nested
//! sections, cells under contention with pressure and `run_callbacks`
//! beside them, map walks across resizes, and a cache under a budget and
//! a flapping pressure signal. Every value checks it is read only while
//! alive (a poison word its `Drop` overwrites) and every test counts drops
//! exactly at quiescence.
//!
//! One test binary; a module per concern.

#[path = "../common/mod.rs"]
mod common;

mod books;
mod caches;
mod callbacks;
mod cells;
mod flavors;
mod lifecycles;
mod maps;

use std::collections::HashSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use rcu_reclaim::pressure::NodeMask;
use rcu_reclaim::reclaim::{MemoryBudget, Reclaimer};
use rcu_reclaim::{reclaim_size, Config, Flavor, Rcu, RcuCache, RcuCell, RcuHashMap};

use common::StopOnDrop;

const ALIVE: u64 = 0xA11C_E0F0_0D15_EA5E;
const DEAD: u64 = 0xDEAD_DEAD_DEAD_DEAD;

/// One slot of counters per test (the tests of this file run in parallel).
const SLOTS: usize = 24;
static CREATED: [AtomicUsize; SLOTS] = [const { AtomicUsize::new(0) }; SLOTS];
static DROPPED: [AtomicUsize; SLOTS] = [const { AtomicUsize::new(0) }; SLOTS];
static POISON_READS: [AtomicUsize; SLOTS] = [const { AtomicUsize::new(0) }; SLOTS];

const S_CHAIN_CUSTOM: usize = 0;
const S_CHAIN_GLOBAL: usize = 1;
const S_LIFECYCLE: usize = 2;
const S_LIFECYCLE_OTHER: usize = 3;
const S_FLAVORS: usize = 4;
const S_CELL: usize = 5;
const S_MAP: usize = 6;
const S_CACHE: usize = 7;
const S_STATS: usize = 8;
const S_CYCLE: usize = 9;
const S_NO_PAGE: usize = 10;
const S_QSBR_CELL: usize = 11;
const S_LAST: usize = 12;
const S_NODES: usize = 13;
const S_CACHE_LIFE: usize = 14;
const S_BARRIER: usize = 15;
const S_QSBR_MAP: usize = 16;

/// A value that knows whether it is alive: reading it after its drop
/// (before the allocator reuses the memory, which is when a
/// use-after-free is most likely to show) counts a poison read.
struct Tracked {
    magic: AtomicU64,
    slot: u8,
    value: u64,
    payload: Vec<u8>,
}
reclaim_size!(Tracked { payload });

impl Tracked {
    fn new(slot: usize, value: u64, payload: usize) -> Tracked {
        CREATED[slot].fetch_add(1, Ordering::Relaxed);
        Tracked {
            magic: AtomicU64::new(ALIVE),
            slot: slot as u8,
            value,
            payload: vec![value as u8; payload],
        }
    }

    /// The value, after checking the poison word.
    #[track_caller]
    fn check(&self) -> u64 {
        let m = self.magic.load(Ordering::Relaxed);
        if m != ALIVE {
            POISON_READS[self.slot as usize % SLOTS].fetch_add(1, Ordering::Relaxed);
            panic!("read a dropped value (magic {m:#x})");
        }
        if let Some(&b) = self.payload.first() {
            assert_eq!(b, self.value as u8, "payload overwritten");
        }
        self.value
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        let m = self.magic.swap(DEAD, Ordering::Relaxed);
        assert_eq!(m, ALIVE, "a value dropped twice");
        DROPPED[self.slot as usize].fetch_add(1, Ordering::Relaxed);
    }
}

/// The same, declared to drop anywhere (its drop only counts): freed by
/// retiring threads as well as by workers.
struct Plain(Tracked);
reclaim_size!(Plain { 0 }; drops_anywhere);

fn live(slot: usize) -> isize {
    CREATED[slot].load(Ordering::SeqCst) as isize - DROPPED[slot].load(Ordering::SeqCst) as isize
}

/// Waits (at most `secs`) until `f` holds, returning whether it did.
fn eventually(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if f() {
            return true;
        }
        if start.elapsed() > Duration::from_secs(secs) {
            return false;
        }
        thread::sleep(Duration::from_millis(2));
    }
}

/// The books of a domain nobody else uses, once every thread has stopped
/// and a barrier ran: nothing pending, and everything queued has run.
#[track_caller]
fn assert_quiescent_books(rcu: &Rcu) {
    rcu.barrier();
    let s = rcu.stats();
    assert_eq!(rcu.pending(), 0, "pending after barrier: {s:?}");
    assert_eq!(rcu.pending_bytes(), 0, "pending bytes after barrier: {s:?}");
    assert_eq!(s.pending, 0);
    assert_eq!(s.pending_bytes, 0);
    assert_eq!(
        s.callbacks_queued + s.deferred_drops,
        s.invoked,
        "queued {} + deferred {} != invoked {} (fallbacks {})",
        s.callbacks_queued,
        s.deferred_drops,
        s.invoked,
        s.fallback_syncs
    );
}
