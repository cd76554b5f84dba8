//! `ReclaimSize` impls that lie: one that claims the whole address space,
//! and one whose answer changes at every call (0, then 1 GiB more each
//! time, wrapping past `usize::MAX`), so that what a write booked and what
//! its free gives back differ. Through every retire path (cell, domain,
//! map, cache, reclaim) nothing panics or overflows, every value is
//! dropped once, and the counts come back to zero.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rcu_reclaim::pressure::NodeMask;
use rcu_reclaim::reclaim::Reclaimer;
use rcu_reclaim::{Config, Rcu, RcuCache, RcuCell, RcuHashMap, ReclaimSize};

/// Counts its drops; its size is `size` (a lie), called with its count
/// of calls so far.
struct Liar {
    drops: Arc<AtomicUsize>,
    calls: AtomicUsize,
    size: fn(usize) -> usize,
}

impl Liar {
    fn new(drops: &Arc<AtomicUsize>, size: fn(usize) -> usize) -> Liar {
        Liar {
            drops: drops.clone(),
            calls: AtomicUsize::new(0),
            size,
        }
    }
}

impl Drop for Liar {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
    }
}

impl ReclaimSize for Liar {
    fn reclaim_size(&self) -> usize {
        (self.size)(self.calls.fetch_add(1, Ordering::Relaxed))
    }
}

fn everything(_: usize) -> usize {
    usize::MAX
}

fn changing(call: usize) -> usize {
    call.wrapping_mul(1 << 30)
        .wrapping_add(usize::MAX / 3 * (call % 4))
}

fn check(size: fn(usize) -> usize) {
    let rcu = Rcu::new(Config::new()).unwrap();
    let reclaimer = Arc::new(Reclaimer::new(&rcu));
    let drops = Arc::new(AtomicUsize::new(0));
    let made = std::cell::Cell::new(0);
    let liar = || {
        made.set(made.get() + 1);
        Liar::new(&drops, size)
    };

    let cell = RcuCell::new_in(&rcu, Box::new(liar()));
    for _ in 0..50 {
        cell.store(Box::new(liar()));
        cell.update(|_| Some(Box::new(liar())));
        cell.replace(Box::new(liar())).unwrap().defer_drop();
        rcu.defer_drop(Box::new(liar()));
    }

    let map = RcuHashMap::new_in(&rcu);
    for i in 0..200u32 {
        map.insert(i % 16, liar());
    }
    map.remove(&3);
    map.clear();

    let cache = RcuCache::builder()
        .rcu(&rcu)
        .reclaimer(&reclaimer)
        .max_bytes(1 << 20)
        .build();
    for i in 0..200u32 {
        cache.insert(i % 32, liar());
        cache.read_or_insert_with(1000 + i, liar, |_| ());
    }
    {
        let _pressure = rcu.pressure_start_all();
        let _ = reclaimer.reclaim(usize::MAX, &NodeMask::all());
        for i in 0..50u32 {
            cache.insert(i, liar());
        }
    }
    cache.clear();
    assert_eq!((cache.len(), cache.bytes()), (0, 0));

    drop((cell, map, cache));
    rcu.barrier();
    assert_eq!(
        drops.load(Ordering::SeqCst),
        made.get(),
        "a value was lost or dropped twice"
    );
    assert_eq!((rcu.pending(), rcu.pending_bytes()), (0, 0));
}

#[test]
fn a_size_of_usize_max_overflows_no_count() {
    check(everything);
}

#[test]
fn a_size_that_changes_at_every_call_leaves_no_count_behind() {
    check(changing);
}
