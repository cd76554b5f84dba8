//! User code that panics or lies inside the map, the cache and the cell
//! (a key's `Hash`, `Eq` or `Drop`, a weigher, a `ReclaimSize`): once the
//! panic is caught the structure stays usable, every value is dropped
//! exactly once, and the byte counts stay right. Each body runs under a
//! watchdog, so a deadlock fails the test instead of hanging it.

use std::hash::{Hash, Hasher};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use rcu_reclaim::reclaim::Reclaimer;
use rcu_reclaim::{Config, Rcu, RcuCache, RcuCell, RcuHashMap, ReclaimSize};

mod common;

/// Runs `f` on a thread of its own and fails if it has not returned
/// within 30 s (a deadlock), passing its panic on otherwise.
fn watchdog(f: impl FnOnce() + Send + 'static) {
    common::within(Duration::from_secs(30), "the test body (a hang)", f)
}

/// A key whose `Drop` panics while `KEY_DROP_PANICS` is set and it is key 0.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Fussy(u32);

static KEY_DROP_PANICS: AtomicBool = AtomicBool::new(false);

impl Drop for Fussy {
    fn drop(&mut self) {
        if self.0 == 0 && KEY_DROP_PANICS.load(Ordering::SeqCst) {
            panic!("Fussy(0) refuses to be dropped");
        }
    }
}

impl ReclaimSize for Fussy {
    fn reclaim_size(&self) -> usize {
        std::mem::size_of::<Self>()
    }
}

/// A key's `Drop` that panicked under a policy shard's lock (its stale
/// queue item dropped as an insert evicted) poisoned that lock, and the
/// shrinker refused a poisoned lock: it never evicted from the shard
/// again, and reclaim declared out-of-memory over a cache full of
/// evictable entries. Writers ignored the poison all along. (The shrinker
/// now takes a poisoned lock, and keys are dropped with the lock released:
/// the drop's panic reaches the insert, and poisons nothing.)
#[test]
fn the_shrinker_still_evicts_from_a_shard_a_panic_poisoned() {
    watchdog(|| {
        let rcu = Rcu::new(Config::new()).unwrap();
        let reclaimer = Arc::new(Reclaimer::new(&rcu));
        let w = RcuCache::<Fussy, u64>::ENTRY_OVERHEAD;
        let cache: RcuCache<Fussy, u64> = RcuCache::builder()
            .max_bytes(4 * w)
            .shards(1)
            .reclaimer(&reclaimer)
            .build();
        for k in 0..4 {
            assert!(cache.insert(Fussy(k), 1));
        }
        // Key 0's entry goes (its own key dropped after a grace period, by
        // the barrier); its queue item, a clone of the key, stays queued.
        assert!(cache.remove(&Fussy(0)));
        rcu.barrier();
        assert!(cache.insert(Fussy(10), 1));
        KEY_DROP_PANICS.store(true, Ordering::SeqCst);
        // Over the capacity: the eviction drops key 0's stale item first.
        let r = catch_unwind(AssertUnwindSafe(|| cache.insert(Fussy(11), 1)));
        KEY_DROP_PANICS.store(false, Ordering::SeqCst);
        assert!(r.is_err(), "the stale item's drop did not run");
        let done = reclaimer.shrink(0);
        assert!(done.queued_via_rcu_bytes + done.freed_bytes > 0, "{done:?}");
        assert!(cache.len() < 5);
        assert_eq!(cache.bytes(), cache.len() * w);
        // Writers go on as before. (The capacity stays at what the shrink
        // left for `regrow_after`, so an insert may be refused meanwhile:
        // whatever it returns, the counts stay exact.)
        for k in 20..30 {
            cache.insert(Fussy(k), 1);
            assert_eq!(cache.bytes(), cache.len() * w);
        }
        assert!(cache.bytes() <= cache.max_bytes());
        cache.clear();
        assert_eq!((cache.len(), cache.bytes()), (0, 0));
        drop(cache);
        rcu.barrier();
        assert_eq!(rcu.pending_bytes(), 0);
    });
}

/// A value that counts its drops.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A map's weigher runs as it retires an entry: one that panicked leaked
/// that entry (never dropped), and in `clear` every entry after it too,
/// all of them already uncounted. Now each is retired (the panicking one
/// booking its node's size) and the panic goes on after.
#[test]
fn a_weigher_panicking_in_clear_leaks_no_entry() {
    watchdog(|| {
        let rcu = Rcu::new(Config::new().on_demand()).unwrap();
        let drops = Arc::new(AtomicUsize::new(0));
        let map = RcuHashMap::with_weigher_in(
            0,
            std::collections::hash_map::RandomState::new(),
            &rcu,
            |k: &u32, _: &Counted| {
                assert!(*k % 10 != 7, "the weigher refuses key {k}");
                0
            },
        );
        for k in 0..100u32 {
            map.insert(k, Counted(drops.clone()));
        }
        let r = catch_unwind(AssertUnwindSafe(|| map.clear()));
        assert!(r.is_err(), "the weigher's panic reaches the caller");
        assert_eq!(map.len(), 0);
        // The map goes on.
        for k in 0..3u32 {
            assert!(map.insert(k, Counted(drops.clone())));
        }
        assert!(map.remove(&1));
        assert_eq!(map.len(), 2);
        drop(map);
        rcu.barrier();
        assert_eq!(drops.load(Ordering::SeqCst), 103, "an entry leaked");
        assert_eq!(rcu.pending_bytes(), 0);
    });
}

/// A value whose `ReclaimSize` panics for id 13, and that counts its drops.
struct Grumpy(u32, Arc<AtomicUsize>);

impl Drop for Grumpy {
    fn drop(&mut self) {
        self.1.fetch_add(1, Ordering::SeqCst);
    }
}

impl ReclaimSize for Grumpy {
    fn reclaim_size(&self) -> usize {
        assert!(self.0 != 13, "Grumpy(13) will not be weighed");
        std::mem::size_of::<Self>()
    }
}

/// As above, through the default weigher (`ReclaimSize`): a remove, a
/// replace and an update that retire an entry the weigher panics on drop
/// it once all the same, after its grace period, and the map stays
/// consistent.
#[test]
fn a_reclaim_size_panicking_as_an_entry_is_retired_leaks_it_not() {
    watchdog(|| {
        let rcu = Rcu::new(Config::new().on_demand()).unwrap();
        let drops = Arc::new(AtomicUsize::new(0));
        let map: RcuHashMap<u32, Grumpy> = RcuHashMap::new_in(&rcu);
        let guard_drops = drops.clone();
        let grumpy = move |id| Grumpy(id, guard_drops.clone());
        for k in 0..3 {
            map.insert(k, grumpy(13));
        }
        {
            // A reader holding the entries keeps reading them.
            let guard = rcu.read_lock();
            let held = map.get(&0, &guard).unwrap();
            let r = catch_unwind(AssertUnwindSafe(|| map.remove(&0)));
            assert!(r.is_err(), "remove");
            let r = catch_unwind(AssertUnwindSafe(|| map.insert(1, grumpy(0))));
            assert!(r.is_err(), "replace");
            let r = catch_unwind(AssertUnwindSafe(|| map.update(2, |_| None)));
            assert!(r.is_err(), "update");
            assert_eq!(held.0, 13);
            assert_eq!(drops.load(Ordering::SeqCst), 0, "freed under a reader");
        }
        assert_eq!(map.len(), 1);
        let guard = rcu.read_lock();
        assert!(map.get(&0, &guard).is_none() && map.get(&2, &guard).is_none());
        assert_eq!(map.get(&1, &guard).map(|g| g.0), Some(0));
        drop(guard);
        rcu.barrier();
        assert_eq!(drops.load(Ordering::SeqCst), 3, "a retired entry leaked");
        drop(map);
        rcu.barrier();
        assert_eq!(drops.load(Ordering::SeqCst), 4);
        assert_eq!(rcu.pending_bytes(), 0);
    });
}

/// A key whose `Eq` is not reflexive for odd ids (as a NaN is not equal
/// to itself).
#[derive(Clone, Debug)]
struct NotReflexive(u32);

impl Hash for NotReflexive {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl PartialEq for NotReflexive {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0 && self.0 % 2 == 0
    }
}

impl Eq for NotReflexive {}

impl ReclaimSize for NotReflexive {
    fn reclaim_size(&self) -> usize {
        std::mem::size_of::<Self>()
    }
}

/// A key whose `Clone` makes a key unequal to the original (the cache
/// queues a clone of each key it holds).
#[derive(Debug, PartialEq, Eq, Hash)]
struct Drifting(u32, u32);

impl Clone for Drifting {
    fn clone(&self) -> Self {
        Drifting(self.0, self.1 + 1)
    }
}

impl ReclaimSize for Drifting {
    fn reclaim_size(&self) -> usize {
        std::mem::size_of::<Self>()
    }
}

/// Fills a cache of 8 entries with 200 keys made by `key`, and checks
/// that it keeps its bound, that `clear` empties it and the shrinker
/// evicts from it.
fn keeps_its_bound<K>(key: impl Fn(u32) -> K)
where
    K: Hash + Eq + Clone + ReclaimSize + Send + Sync + 'static,
{
    let rcu = Rcu::new(Config::new()).unwrap();
    let reclaimer = Arc::new(Reclaimer::new(&rcu));
    let w = RcuCache::<K, u64>::ENTRY_OVERHEAD;
    let cache: RcuCache<K, u64> = RcuCache::builder()
        .reclaimer(&reclaimer)
        .max_bytes(8 * w)
        .shards(1)
        .build();
    for k in 0..200 {
        assert!(cache.insert(key(k), 1));
        assert!(cache.bytes() <= cache.max_bytes(), "over the capacity");
    }
    assert_eq!(cache.bytes(), cache.len() * w);
    cache.clear();
    assert_eq!((cache.len(), cache.bytes()), (0, 0), "clear left entries");
    for k in 0..200 {
        assert!(cache.insert(key(k), 1));
    }
    assert!(!cache.is_empty());
    reclaimer.shrink(0);
    assert_eq!(
        (cache.len(), cache.bytes()),
        (0, 0),
        "the shrinker left entries"
    );
    drop(cache);
    rcu.barrier();
    assert_eq!(rcu.pending_bytes(), 0);
}

/// Eviction looked entries up by their queued key: for a key not equal to
/// itself, or to its clone (the queued one), the lookup missed, and the
/// entry stayed in the cache for good, counted: the cache grew without
/// bound past its capacity (3200 bytes of a 512-byte cache, every entry
/// evictable one), and neither `clear` nor the shrinker could remove
/// them. Eviction now finds an entry by the hash it was filed under and
/// its id.
#[test]
fn a_cache_of_keys_whose_eq_or_clone_lies_keeps_its_bound() {
    watchdog(|| {
        keeps_its_bound(NotReflexive);
        keeps_its_bound(|k| Drifting(k, 0));
    });
}

/// A retiring call whose `ReclaimSize` or weigher panicked lost the old
/// value: `RcuCell::store` inside a read-side section leaked it, outside
/// one it waited for a grace period and dropped it on the spot (a call
/// that never blocks nor runs a destructor, under the caller's locks),
/// and `Rcu::defer_drop_raw` leaked it. Each now retires it (booking its
/// inline size) and the panic goes on after.
#[test]
fn a_cell_value_whose_size_panics_is_still_retired_once() {
    watchdog(|| {
        let rcu = Rcu::new(Config::new().on_demand()).unwrap();
        let drops = Arc::new(AtomicUsize::new(0));
        let dropped = || drops.load(Ordering::SeqCst);
        let cell = RcuCell::new_in(&rcu, Some(Box::new(Grumpy(13, drops.clone()))));
        {
            let guard = rcu.read_lock();
            let held = cell.load(&guard).unwrap();
            let r = catch_unwind(AssertUnwindSafe(|| {
                cell.store(Box::new(Grumpy(13, drops.clone())))
            }));
            assert!(r.is_err(), "store");
            let r = catch_unwind(AssertUnwindSafe(|| {
                cell.update(|_| Some(Box::new(Grumpy(0, drops.clone()))))
            }));
            assert!(r.is_err(), "update");
            assert_eq!((held.0, dropped()), (13, 0), "freed under a reader");
        }
        let r = catch_unwind(AssertUnwindSafe(|| {
            cell.store_weighed(Box::new(Grumpy(1, drops.clone())), |_| {
                panic!("the weigher refuses")
            })
        }));
        assert!(r.is_err(), "store_weighed");
        assert_eq!(
            dropped(),
            0,
            "the retiring call dropped the old value itself"
        );
        let raw = Box::into_raw(Box::new(Grumpy(13, drops.clone())));
        // SAFETY: from `Box::into_raw`, never published, not used again.
        let r = catch_unwind(AssertUnwindSafe(|| unsafe { rcu.defer_drop_raw(raw) }));
        assert!(r.is_err(), "defer_drop_raw");
        let r = catch_unwind(AssertUnwindSafe(|| {
            rcu.defer_drop(Box::new(Grumpy(13, drops.clone())))
        }));
        assert!(r.is_err(), "defer_drop");
        assert_eq!(dropped(), 0);
        rcu.barrier();
        assert_eq!(dropped(), 5, "a retired value leaked");
        assert_eq!(rcu.pending_bytes(), 0);
        drop(cell);
        assert_eq!(dropped(), 6);
    });
}

/// The cache a [`Tenant`] key's `Drop` writes to while `TENANT_WRITES`.
static TENANT_CACHE: Mutex<Option<Weak<RcuCache<Tenant, u64>>>> = Mutex::new(None);
static TENANT_WRITES: AtomicBool = AtomicBool::new(false);
static TOMBSTONES: AtomicUsize = AtomicUsize::new(0);

/// A key whose `Drop` inserts another key into the cache (a cache of
/// tenants whose last reference going registers a tombstone, say).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Tenant(u32);

impl Drop for Tenant {
    fn drop(&mut self) {
        if self.0 < 1000 && TENANT_WRITES.load(Ordering::SeqCst) {
            let cache = TENANT_CACHE
                .lock()
                .unwrap()
                .as_ref()
                .and_then(Weak::upgrade);
            if let Some(cache) = cache {
                cache.insert(Tenant(self.0 + 1000), 0);
                TOMBSTONES.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
}

impl ReclaimSize for Tenant {
    fn reclaim_size(&self) -> usize {
        std::mem::size_of::<Self>()
    }
}

/// Eviction dropped the queued clones of keys it was done with (stale
/// items, evicted entries) under the policy shard's lock: a key whose
/// `Drop` wrote to the cache waited for that lock, held by its own thread,
/// for good. They are dropped once the lock is released now.
#[test]
fn a_key_whose_drop_writes_to_the_cache_does_not_deadlock_eviction() {
    watchdog(|| {
        let rcu = Rcu::new(Config::new()).unwrap();
        let w = RcuCache::<Tenant, u64>::ENTRY_OVERHEAD;
        let cache = Arc::new(
            RcuCache::builder()
                .rcu(&rcu)
                .max_bytes(4 * w)
                .shards(1)
                .build(),
        );
        *TENANT_CACHE.lock().unwrap() = Some(Arc::downgrade(&cache));
        for k in 0..4 {
            assert!(cache.insert(Tenant(k), 1));
        }
        // Key 0's queue item goes stale; key 1 is the oldest entry then.
        assert!(cache.remove(&Tenant(0)));
        assert!(cache.insert(Tenant(10), 1));
        TENANT_WRITES.store(true, Ordering::SeqCst);
        // Over the capacity: the eviction discards key 0's stale item and
        // evicts key 1 (two clones dropped, each inserting its tombstone).
        assert!(cache.insert(Tenant(11), 1));
        TENANT_WRITES.store(false, Ordering::SeqCst);
        // Each tombstone's insert evicts in turn: how many is up to the
        // order of eviction; at least those two.
        assert!(TOMBSTONES.load(Ordering::SeqCst) >= 2);
        assert!(cache.bytes() <= cache.max_bytes());
        assert_eq!(cache.bytes(), cache.len() * w);
        *TENANT_CACHE.lock().unwrap() = None;
        drop(Arc::try_unwrap(cache).ok().unwrap());
        rcu.barrier();
        assert_eq!(rcu.pending_bytes(), 0);
    });
}

/// The map a [`Registered`] key's `Drop` writes to.
static REGISTRY: Mutex<Option<Weak<RcuHashMap<Registered, u32>>>> = Mutex::new(None);

/// A key whose `Drop` (below id 1000) inserts another key into the map.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Registered(u32);

impl Drop for Registered {
    fn drop(&mut self) {
        if self.0 < 1000 {
            let map = REGISTRY.lock().unwrap().as_ref().and_then(Weak::upgrade);
            if let Some(map) = map {
                map.insert(Registered(self.0 + 1000), 0);
            }
        }
    }
}

impl ReclaimSize for Registered {
    fn reclaim_size(&self) -> usize {
        std::mem::size_of::<Self>()
    }
}

/// `update` dropped a key that no entry took (`f` made `None`) under the
/// key's stripe lock: a key whose `Drop` wrote to the map panicked there as
/// if `f` had written to it. Such a key is dropped with the lock released.
#[test]
fn a_key_dropped_by_a_write_may_write_to_the_map_from_its_drop() {
    watchdog(|| {
        let rcu = Rcu::new(Config::new().on_demand()).unwrap();
        let map = Arc::new(RcuHashMap::new_in(&rcu));
        *REGISTRY.lock().unwrap() = Some(Arc::downgrade(&map));
        // The argument keys of these calls are dropped inside them.
        assert!(!map.update(Registered(1), |_| None), "absent, stays absent");
        assert!(map.insert(Registered(2), 2));
        assert!(!map.update(Registered(2), |_| None), "present, removed");
        let guard = rcu.read_lock();
        assert!(map.get(&Registered(1001), &guard).is_some());
        assert!(map.get(&Registered(2), &guard).is_none());
        drop(guard);
        *REGISTRY.lock().unwrap() = None;
        drop(Arc::try_unwrap(map).ok().unwrap());
        rcu.barrier();
        assert_eq!(rcu.pending_bytes(), 0);
    });
}

/// An `RcuCell::update` whose closure wrote to the same cell never
/// returned: each write made the exchange fail and the closure run again,
/// retiring a value per round inside the update's section (so none could
/// be freed). Such a write now panics, naming the mistake.
#[test]
fn an_update_closure_writing_to_its_own_cell_panics_instead_of_spinning() {
    watchdog(|| {
        let rcu = Rcu::new(Config::new().on_demand()).unwrap();
        let cell = RcuCell::new_in(&rcu, Some(Box::new(1u64)));
        let other = RcuCell::new_in(&rcu, Some(Box::new(1u64)));
        let r = catch_unwind(AssertUnwindSafe(|| {
            cell.update(|v| {
                cell.store(Box::new(v.copied().unwrap_or(0) + 100));
                Some(Box::new(5))
            })
        }));
        let msg = common::panic_text(&*r.expect_err("a write to its own cell"));
        assert!(
            msg.contains("RcuCell::update's closure wrote to the same cell"),
            "{msg}"
        );
        // Nested in an update of another cell, too.
        let r = catch_unwind(AssertUnwindSafe(|| {
            cell.update(|v| {
                other.update(|_| {
                    drop(cell.take());
                    Some(Box::new(0))
                });
                v.map(|v| Box::new(v + 1))
            })
        }));
        assert!(r.is_err());
        // The cells work as before: writes from another cell's update are
        // fine, and the marks were taken back as the panics unwound.
        assert_eq!(
            cell.update(|v| {
                other.store(Box::new(7));
                v.map(|v| Box::new(v + 1))
            }),
            1
        );
        cell.store(Box::new(9));
        let guard = rcu.read_lock();
        assert_eq!(
            (cell.load(&guard), other.load(&guard)),
            (Some(&9), Some(&7))
        );
        drop(guard);
        rcu.barrier();
        assert_eq!(rcu.pending_bytes(), 0);
    });
}

/// Updates nested deeper than the eight a thread marks in its fixed array
/// were unchecked: the innermost closure's write to the cell of an update
/// nine or more levels out spun for ever. Every depth is checked now, and
/// the marks are all taken back as the panic unwinds.
#[test]
fn a_write_to_a_cell_whose_update_is_nested_deep_panics_at_any_depth() {
    /// Runs an update of `cells[i]`, with the updates of `cells[i + 1..]`
    /// nested inside it; the innermost writes to `cells[target]`.
    fn nest(cells: &[RcuCell<u64>], i: usize, target: usize) {
        if i == cells.len() {
            cells[target].store(Box::new(99));
            return;
        }
        cells[i].update(|v| {
            nest(cells, i + 1, target);
            v.map(|v| Box::new(v + 1))
        });
    }
    watchdog(|| {
        let rcu = Rcu::new(Config::new().on_demand()).unwrap();
        let cells: Vec<RcuCell<u64>> = (0..20)
            .map(|_| RcuCell::new_in(&rcu, Some(Box::new(1u64))))
            .collect();
        for target in [0, 7, 8, 9, 19] {
            let r = catch_unwind(AssertUnwindSafe(|| nest(&cells, 0, target)));
            let msg =
                common::panic_text(&*r.expect_err("a write to the cell of an enclosing update"));
            assert!(
                msg.contains("RcuCell::update's closure wrote to the same cell"),
                "target {target}: {msg}"
            );
        }
        // No mark is left behind: nested writes to cells whose updates are
        // not open (the store goes to a cell after the nest) work.
        let (open, free) = cells.split_at(10);
        fn nest_then_store(open: &[RcuCell<u64>], free: &RcuCell<u64>) {
            match open.split_first() {
                None => free.store(Box::new(5)),
                Some((first, rest)) => {
                    first.update(|v| {
                        nest_then_store(rest, free);
                        v.map(|v| Box::new(v + 1))
                    });
                }
            }
        }
        for f in free {
            nest_then_store(open, f);
        }
        let guard = rcu.read_lock();
        assert!(free.iter().all(|c| c.load(&guard) == Some(&5)));
        drop(guard);
        drop(cells);
        rcu.barrier();
        assert_eq!(rcu.pending_bytes(), 0);
    });
}

/// A key that collides with every other (so writes call its `Eq`), whose
/// `Eq` panics for key 13, and whose `Drop` of key 13 writes to the map in
/// `UNWINDING_MAP`; values of 99 write to it from their `Drop` too.
#[derive(Clone, Debug)]
struct Collides(u64);

impl Hash for Collides {
    fn hash<H: Hasher>(&self, h: &mut H) {
        0u8.hash(h);
    }
}

impl PartialEq for Collides {
    fn eq(&self, other: &Self) -> bool {
        if self.0 == 13 || other.0 == 13 {
            panic!("Collides(13) refuses to be compared");
        }
        self.0 == other.0
    }
}

impl Eq for Collides {}

impl ReclaimSize for Collides {
    fn reclaim_size(&self) -> usize {
        std::mem::size_of::<Self>()
    }
}

/// A value whose `Drop` (of 99) writes to the map in `UNWINDING_MAP`.
struct WritesOnDrop(u64);

impl ReclaimSize for WritesOnDrop {
    fn reclaim_size(&self) -> usize {
        std::mem::size_of::<Self>()
    }
}

type UnwindingMap = RcuHashMap<Collides, WritesOnDrop>;
static UNWINDING_MAP: Mutex<Option<Weak<UnwindingMap>>> = Mutex::new(None);
static DROP_WRITES: AtomicUsize = AtomicUsize::new(0);

/// Inserts a fresh key into `UNWINDING_MAP` (from a `Drop`).
fn write_from_drop() {
    let map = UNWINDING_MAP
        .lock()
        .unwrap()
        .as_ref()
        .and_then(Weak::upgrade);
    if let Some(map) = map {
        let n = DROP_WRITES.fetch_add(1, Ordering::SeqCst) as u64;
        map.insert(Collides(1000 + n), WritesOnDrop(0));
    }
}

impl Drop for Collides {
    fn drop(&mut self) {
        if self.0 == 13 {
            write_from_drop();
        }
    }
}

impl Drop for WritesOnDrop {
    fn drop(&mut self) {
        if self.0 == 99 {
            write_from_drop();
        }
    }
}

/// A write whose key's `Eq` (or whose cache's weigher) panics under the
/// stripe lock unwinds out of the lock before the write's own key and
/// value drop, so their `Drop` may write to the same map. Before, they
/// dropped in the closure run under the lock: the nested-write check
/// panicked while the first panic unwound, and the process aborted.
#[test]
fn a_panic_under_a_write_drops_its_key_and_value_after_the_lock() {
    watchdog(|| {
        let rcu = Rcu::new(Config::new().on_demand()).unwrap();
        let map: Arc<UnwindingMap> = Arc::new(RcuHashMap::new_in(&rcu));
        *UNWINDING_MAP.lock().unwrap() = Some(Arc::downgrade(&map));
        assert!(map.insert(Collides(1), WritesOnDrop(1)));
        let writes = || DROP_WRITES.load(Ordering::SeqCst);

        let r = catch_unwind(AssertUnwindSafe(|| {
            map.insert(Collides(13), WritesOnDrop(99));
        }));
        assert!(r.is_err(), "the key's Eq panic reaches the caller");
        assert_eq!(writes(), 2, "the key's and the value's drops wrote");

        let r = catch_unwind(AssertUnwindSafe(|| {
            let v = WritesOnDrop(99);
            map.update(Collides(13), move |_| Some(v));
        }));
        assert!(r.is_err());
        assert_eq!(
            writes(),
            4,
            "the key and the closure dropped after the lock"
        );

        let r = catch_unwind(AssertUnwindSafe(|| {
            let guard = rcu.read_lock();
            let v = WritesOnDrop(99);
            map.get_or_insert_with(Collides(13), move || v, &guard);
        }));
        assert!(r.is_err());
        assert_eq!(writes(), 6);

        let guard = rcu.read_lock();
        for k in [1, 1000, 1005] {
            assert!(map.get(&Collides(k), &guard).is_some(), "key {k}");
        }
        drop(guard);
        *UNWINDING_MAP.lock().unwrap() = None;
        drop(Arc::try_unwrap(map).ok().unwrap());
        rcu.barrier();
        assert_eq!(rcu.pending_bytes(), 0);
    });
}

/// A value whose `Drop` writes to its cache.
struct WritesToCache(u32);

static UNWINDING_CACHE: Mutex<Option<Weak<RcuCache<u32, WritesToCache>>>> = Mutex::new(None);

impl Drop for WritesToCache {
    fn drop(&mut self) {
        let cache = UNWINDING_CACHE
            .lock()
            .unwrap()
            .as_ref()
            .and_then(Weak::upgrade);
        if let (Some(cache), 99) = (cache, self.0) {
            cache.insert(7, WritesToCache(0));
        }
    }
}

/// The same for a cache whose weigher panics on a value its
/// `get_or_insert_with` loaded: the value drops after the stripe lock.
#[test]
fn a_weigher_panic_drops_the_loaded_value_after_the_lock() {
    watchdog(|| {
        let rcu = Rcu::new(Config::new().on_demand()).unwrap();
        let cache = Arc::new(
            RcuCache::builder()
                .rcu(&rcu)
                .weigher(|_: &u32, v: &WritesToCache| {
                    assert!(v.0 != 99, "the weigher refuses 99");
                    8
                })
                .build(),
        );
        *UNWINDING_CACHE.lock().unwrap() = Some(Arc::downgrade(&cache));
        let r = catch_unwind(AssertUnwindSafe(|| {
            let guard = rcu.read_lock();
            cache.get_or_insert_with(1, || WritesToCache(99), &guard);
        }));
        assert!(r.is_err(), "the weigher's panic reaches the caller");
        let guard = rcu.read_lock();
        assert!(cache.get(&7, &guard).is_some(), "the value's drop wrote");
        assert!(cache.get(&1, &guard).is_none());
        drop(guard);
        *UNWINDING_CACHE.lock().unwrap() = None;
    });
}
