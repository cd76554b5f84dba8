//! `RcuHashMap`: readers beside writers and resizes, each retired value
//! dropped once and only after a grace period, sizes booked and freed.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use rcu_reclaim::{Config, Rcu, RcuHashMap, ReclaimSize};

use common::poison::{Drops, Val};
use common::StopOnDrop;

/// A small xorshift generator, one per thread.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn readers_beside_writers_never_see_a_dropped_value() {
    // Miri interprets some 100 times slower: fewer keys and operations.
    const KEYS: u64 = if cfg!(miri) { 32 } else { 512 };
    const OPS: usize = if cfg!(miri) { 300 } else { 20_000 };
    const CLEAR_EVERY: usize = if cfg!(miri) { 100 } else { 2000 };
    const AFTER: usize = if cfg!(miri) { 10 } else { 1000 };
    let rcu = Rcu::new(Config::new()).unwrap();
    let drops = Drops::new(4 * OPS);
    let map: RcuHashMap<u64, Val> = RcuHashMap::new_in(&rcu);
    let done = AtomicUsize::new(0);
    thread::scope(|s| {
        for w in 0..2u64 {
            let (map, drops, done) = (&map, &drops, &done);
            s.spawn(move || {
                let mut rng = Rng(0x9E37_79B9_7F4A_7C15 + w);
                for i in 0..OPS {
                    let k = rng.below(KEYS);
                    match rng.below(8) {
                        0..=2 => {
                            map.insert(k, Val::new(drops, k));
                        }
                        3 | 4 => {
                            map.remove(&k);
                        }
                        5 => {
                            map.update(k, |old| old.is_none().then(|| Val::new(drops, k)));
                        }
                        6 => {
                            let g = map.domain().read_lock();
                            map.get_or_insert_with(k, || Val::new(drops, k), &g)
                                .check(k);
                        }
                        _ if i % CLEAR_EVERY == 0 => map.clear(),
                        _ => {
                            map.update(k, |_| Some(Val::new(drops, k)));
                        }
                    }
                }
                done.fetch_add(1, Ordering::Release);
            });
        }
        for r in 0..2u64 {
            let (map, done) = (&map, &done);
            s.spawn(move || {
                let mut rng = Rng(0xD1B5_4A32_D192_ED03 + r);
                let mut seen = 0usize;
                let mut after = 0;
                // On a loaded machine the writers may finish before this
                // thread first runs: it then reads what they left (a few
                // rounds at most), so every run checks something.
                while done.load(Ordering::Acquire) < 2 || (seen == 0 && after < AFTER) {
                    if done.load(Ordering::Acquire) == 2 {
                        after += 1;
                    }
                    let g = map.domain().read_lock();
                    // Hold what was found across a yield: the writers
                    // retire some of it meanwhile, and it must stay intact
                    // until the section ends.
                    let mut found = Vec::with_capacity(128);
                    for _ in 0..64 {
                        let k = rng.below(KEYS);
                        if let Some(v) = map.get(&k, &g) {
                            v.check(k);
                            found.push((k, v));
                        }
                    }
                    found.extend(map.iter(&g).take(64).map(|(k, v)| (*k, v)));
                    thread::yield_now();
                    for (k, v) in &found {
                        v.check(*k);
                    }
                    seen += found.len();
                }
                assert!(seen > 0 || map.is_empty());
            });
        }
    });
    let left = map.len();
    {
        let g = rcu.read_lock();
        assert_eq!(map.iter(&g).count(), left);
    }
    drop(map);
    rcu.barrier();
    drops.assert_each_dropped_once();
}

#[test]
fn resizes_never_hide_a_present_key() {
    const FIXED: u64 = 100;
    const CHURN: u64 = 6_000;
    let value = |k: u64| k ^ 0x5A5A_5A5A;
    let rcu = Rcu::new(Config::new()).unwrap();
    let map: RcuHashMap<u64, u64> = RcuHashMap::new_in(&rcu);
    let initial = map.capacity();
    for k in 0..FIXED {
        map.insert(k, value(k));
    }
    let stop = AtomicBool::new(false);
    let (max_cap, min_cap) = (AtomicUsize::new(0), AtomicUsize::new(usize::MAX));
    let (lookups, walks) = (AtomicUsize::new(0), AtomicUsize::new(0));
    thread::scope(|s| {
        let _stop = StopOnDrop(&stop);
        // Two writers on disjoint keys grow the table and shrink it back,
        // three times; a third keeps replacing the fixed keys.
        let churners: Vec<_> = (1..=2u64)
            .map(|w| {
                let (map, max_cap, min_cap) = (&map, &max_cap, &min_cap);
                s.spawn(move || {
                    let base = w << 32;
                    for _ in 0..3 {
                        for k in base..base + CHURN {
                            map.insert(k, k);
                        }
                        max_cap.fetch_max(map.capacity(), Ordering::Relaxed);
                        for k in base..base + CHURN {
                            assert!(map.remove(&k));
                        }
                        min_cap.fetch_min(map.capacity(), Ordering::Relaxed);
                    }
                })
            })
            .collect();
        {
            let (map, stop) = (&map, &stop);
            s.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    for k in 0..FIXED {
                        assert!(!map.insert(k, value(k)));
                    }
                }
            });
        }
        // Lookups: every fixed key, every time.
        {
            let (map, stop, lookups) = (&map, &stop, &lookups);
            s.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let g = map.domain().read_lock();
                    for k in 0..FIXED {
                        assert_eq!(map.get(&k, &g), Some(&value(k)), "key {k} missed");
                    }
                    lookups.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        // Walks: every fixed key exactly once per walk.
        {
            let (map, stop, walks) = (&map, &stop, &walks);
            s.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    common::walk_sees_each_fixed_key_once(map, FIXED, |k, v| {
                        if k < FIXED {
                            assert_eq!(*v, value(k));
                        }
                    });
                    walks.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        for c in churners {
            c.join().unwrap();
        }
        // On a loaded machine the churners may finish before a reader has
        // had a CPU: let each complete a pass first (bounded).
        let waited = std::time::Instant::now();
        while (lookups.load(Ordering::Relaxed) == 0 || walks.load(Ordering::Relaxed) == 0)
            && waited.elapsed() < std::time::Duration::from_secs(60)
        {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    });
    let (max_cap, min_cap) = (max_cap.into_inner(), min_cap.into_inner());
    assert!(max_cap >= 16 * initial, "grew to {max_cap} only");
    assert!(min_cap <= max_cap / 8, "shrank to {min_cap} only");
    assert!(lookups.into_inner() > 0 && walks.into_inner() > 0);
    assert_eq!(map.len(), FIXED as usize);
    drop(map);
    rcu.barrier();
    assert_eq!(rcu.pending_bytes(), 0);
}

#[test]
fn a_retired_value_is_dropped_once_and_only_after_a_grace_period() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let drops = Drops::new(8);
    let map = RcuHashMap::new_in(&rcu);
    map.insert(1, Val::new(&drops, 1)); // id 0
    map.insert(2, Val::new(&drops, 2)); // id 1
    let (release, reader) = common::hold_reader(&rcu);
    {
        // A reader of this thread keeps using what it found.
        let g = rcu.read_lock();
        let v = map.get(&1, &g).unwrap();
        assert!(!map.insert(1, Val::new(&drops, 1))); // id 2 replaces id 0
        assert!(map.remove(&2)); // id 1
        assert!(map.update(1, |_| Some(Val::new(&drops, 1)))); // id 3 replaces id 2
        v.check(1);
    }
    // The other thread's section holds every grace period back.
    thread::sleep(Duration::from_millis(50));
    assert_eq!((0..3).map(|id| drops.dropped(id)).sum::<u8>(), 0);
    release.send(()).unwrap();
    reader.join().unwrap();
    rcu.barrier();
    assert_eq!([0, 1, 2, 3].map(|id| drops.dropped(id)), [1, 1, 1, 0]);
    // Dropping the map frees what it holds, at once.
    drop(map);
    drops.assert_each_dropped_once();
}

#[test]
fn dropping_the_map_frees_every_entry_once() {
    let rcu = Rcu::new(Config::new().on_demand()).unwrap();
    let drops = Drops::new(1000);
    let map = RcuHashMap::new_in(&rcu);
    for k in 0..1000 {
        map.insert(k, Val::new(&drops, k));
    }
    drop(map);
    drops.assert_each_dropped_once();
    rcu.barrier();
    assert_eq!(rcu.pending_bytes(), 0);
}

#[test]
fn a_drop_that_panics_as_the_map_drops_leaves_no_other_entry_undropped() {
    struct Bomb(u32, Arc<AtomicUsize>);
    impl Drop for Bomb {
        fn drop(&mut self) {
            self.1.fetch_add(1, Ordering::Relaxed);
            assert_ne!(self.0, 37, "value 37 panics in drop");
        }
    }
    impl ReclaimSize for Bomb {
        fn reclaim_size(&self) -> usize {
            0
        }
    }
    let rcu = Rcu::new(Config::new().on_demand()).unwrap();
    let dropped = Arc::new(AtomicUsize::new(0));
    let map = RcuHashMap::new_in(&rcu);
    for k in 0..100 {
        map.insert(k, Bomb(k, dropped.clone()));
    }
    let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(map)));
    assert!(unwound.is_err());
    assert_eq!(dropped.load(Ordering::Relaxed), 100);
}

#[test]
fn a_capacity_past_the_address_space_panics_before_allocating() {
    // No table of that many buckets fits in memory: the map panics at
    // once, as a `Vec` would, rather than allocating (and writing) ever
    // larger levels of dummies until one allocation fails and aborts.
    for capacity in [
        usize::MAX,
        (1 << (usize::BITS - 2)) + 1,
        1 << (usize::BITS - 2),
    ] {
        let made = std::panic::catch_unwind(|| {
            let rcu = Rcu::new(Config::new().on_demand()).unwrap();
            RcuHashMap::<u64, u64>::with_capacity_in(capacity, &rcu).capacity()
        });
        let err = made.expect_err("a map of that capacity");
        let msg = err
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| err.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        assert!(msg.contains("capacity overflow"), "{capacity}: {msg}");
    }
}

/// The capacity panic names the caller's line, not the map's internals
/// (`#[track_caller]` down to the table).
#[test]
fn a_capacity_panic_points_at_the_callers_line() {
    let line = line!() + 3;
    let (_, file, at) = common::panic_site(|| {
        let rcu = Rcu::new(Config::new().on_demand()).unwrap();
        RcuHashMap::<u64, u64>::with_capacity_in(usize::MAX, &rcu).capacity();
    });
    assert_eq!(
        (file.as_str(), at),
        (file!(), line),
        "not the caller's line"
    );
}

#[test]
#[cfg_attr(miri, ignore = "Miri cannot ask the system for its memory size")]
fn a_capacity_past_the_machines_memory_panics_before_allocating() {
    // 2^40 buckets fit the address space, not a machine (16 TiB of
    // dummies): the map says so at once instead of filling memory level by
    // level until the OOM killer comes.
    let made = std::panic::catch_unwind(|| {
        let rcu = Rcu::new(Config::new().on_demand()).unwrap();
        RcuHashMap::<u64, u64>::with_capacity_in(1 << 40, &rcu).capacity()
    });
    let err = made.expect_err("a map of 2^40 buckets");
    let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("more than this machine's memory"), "{msg}");
}

#[test]
fn a_64_kib_value_books_64_kib() {
    let rcu = Rcu::new(Config::new().on_demand()).unwrap();
    let map: RcuHashMap<u64, Vec<u8>> = RcuHashMap::new_in(&rcu);
    map.insert(1, vec![0; 64 << 10]);
    map.remove(&1);
    let booked = rcu.pending_bytes();
    assert!(
        booked >= (64 << 10) + std::mem::size_of::<Vec<u8>>(),
        "{booked}"
    );
    assert!(booked <= (64 << 10) + 128, "{booked}");
    map.insert(2, vec![0; 64 << 10]);
    map.insert(2, Vec::new()); // replacing books the old value too
    assert!(rcu.pending_bytes() >= 2 * booked);
    rcu.barrier();
    assert_eq!(rcu.pending_bytes(), 0);
}

#[test]
fn bytes_booked_are_the_bytes_freed() {
    let rcu = Rcu::new(Config::new().on_demand()).unwrap();
    // The size of one entry's node, measured once.
    let node = {
        let map: RcuHashMap<u64, Vec<u8>> = RcuHashMap::new_in(&rcu);
        map.insert(0, Vec::new());
        map.remove(&0);
        let n = rcu.pending_bytes();
        rcu.barrier();
        n
    };
    let start = rcu.stats().bytes_freed;
    // No resize (the capacity covers every key), so only entries retire.
    let map: RcuHashMap<u64, Vec<u8>> = RcuHashMap::with_capacity_in(256, &rcu);
    let mut want = 0;
    let mut rng = Rng(7);
    for i in 0..2000 {
        let k = rng.below(256);
        let len = rng.below(3000) as usize;
        let had = {
            let g = rcu.read_lock();
            map.get(&k, &g).map(Vec::capacity)
        };
        if i % 3 == 0 {
            if map.remove(&k) {
                want += node + had.unwrap();
            }
        } else if !map.insert(k, vec![1; len]) {
            want += node + had.unwrap();
        }
    }
    let s = rcu.stats();
    assert_eq!(
        (s.bytes_freed - start) as usize + s.pending_bytes,
        want,
        "booked"
    );
    rcu.barrier();
    let s = rcu.stats();
    assert_eq!(s.pending_bytes, 0);
    assert_eq!((s.bytes_freed - start) as usize, want, "freed");
    // With resizes and a clear, tables and dummies are booked and freed too.
    for k in 0..5000 {
        map.insert(k, vec![0; 10]);
    }
    map.clear();
    assert!(rcu.pending_bytes() >= 5000 * (node + 10));
    rcu.barrier();
    assert_eq!(rcu.pending_bytes(), 0);
}

#[test]
fn a_closure_under_a_stripe_lock_cannot_wait_for_a_grace_period() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let map: RcuHashMap<u64, u64> = RcuHashMap::new_in(&rcu);
    map.insert(1, 1);
    // It would wait for its own section: it panics instead of hanging.
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        map.update(1, |_| {
            rcu.synchronize();
            Some(2)
        })
    }));
    assert!(r.is_err());
    // The map is unchanged and its stripe usable.
    assert_eq!(map.get(&1, &rcu.read_lock()), Some(&1));
    assert!(map.update(1, |old| old.map(|v| v + 1)));
    assert_eq!(map.get(&1, &rcu.read_lock()), Some(&2));
}

#[test]
fn len_never_wraps_below_zero_while_inserts_and_removes_race() {
    // A remove that unlinks an entry before its insert has counted it
    // must not take `len` below zero (it read 2^64 - 1 before the insert
    // counted under the stripe lock).
    const KEYS: u64 = 4;
    let rcu = Rcu::new(Config::new()).unwrap();
    let map: Arc<RcuHashMap<u64, u64>> = Arc::new(RcuHashMap::new_in(&rcu));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|t| {
            let (map, stop) = (map.clone(), stop.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    for k in 0..KEYS {
                        if t % 2 == 0 {
                            map.insert(k, k);
                        } else {
                            map.remove(&k);
                        }
                    }
                }
            })
        })
        .collect();
    let start = std::time::Instant::now();
    let mut most = 0;
    while start.elapsed() < Duration::from_secs(3) && most <= KEYS as usize {
        most = most.max(map.len());
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    assert!(most <= KEYS as usize, "len read {most} with {KEYS} keys");
    let left = (0..KEYS)
        .filter(|k| map.contains_key(k, &rcu.read_lock()))
        .count();
    assert_eq!(map.len(), left);
}

#[test]
fn an_insert_whose_key_eq_panics_drops_its_key_and_value() {
    use std::hash::{Hash, Hasher};
    static PANICKY: AtomicBool = AtomicBool::new(false);
    /// Every key hashes alike, so an insert compares keys; `eq` panics
    /// while `PANICKY` is set.
    struct Key(u32, Arc<AtomicUsize>);
    impl Hash for Key {
        fn hash<H: Hasher>(&self, h: &mut H) {
            0u8.hash(h)
        }
    }
    impl PartialEq for Key {
        fn eq(&self, other: &Key) -> bool {
            assert!(!PANICKY.load(Ordering::Relaxed), "eq panics");
            self.0 == other.0
        }
    }
    impl Eq for Key {}
    impl Drop for Key {
        fn drop(&mut self) {
            self.1.fetch_sub(1, Ordering::Relaxed);
        }
    }
    let live = Arc::new(AtomicUsize::new(0));
    let key = |k| {
        live.fetch_add(1, Ordering::Relaxed);
        Key(k, live.clone())
    };
    let rcu = Rcu::new(Config::new().on_demand()).unwrap();
    let map = RcuHashMap::with_weigher_in(
        0,
        std::collections::hash_map::RandomState::new(),
        &rcu,
        |_: &Key, _: &u32| 0,
    );
    map.insert(key(1), 1);
    PANICKY.store(true, Ordering::Relaxed);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| map.insert(key(2), 2)));
    PANICKY.store(false, Ordering::Relaxed);
    assert!(r.is_err());
    assert_eq!(
        live.load(Ordering::Relaxed),
        1,
        "the key that failed was dropped"
    );
    assert_eq!(map.len(), 1);
    assert!(map.insert(key(2), 2));
    drop(map);
    rcu.barrier();
    assert_eq!(live.load(Ordering::Relaxed), 0);
}

/// A weigher is the caller's code and may claim any size: one claiming
/// `usize::MAX` bytes for every entry overflowed the map's retire
/// (`size_of` + the weight: a panic in a debug build, with the node leaked)
/// and then the domain's sums of booked bytes, whose panic inside a
/// thread's bulk-page push left its buffer marked as owned: the domain's
/// drop then waited for it for ever. Each object now books at most 1 TiB.
#[test]
fn a_weigher_claiming_the_address_space_breaks_no_count() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let map = RcuHashMap::with_weigher_in(
        0,
        std::collections::hash_map::RandomState::new(),
        &rcu,
        |_: &u32, _: &u32| usize::MAX,
    );
    for k in 0..600u32 {
        map.insert(k, k);
    }
    for k in 0..600u32 {
        assert!(map.remove(&k));
    }
    assert!(rcu.pending_bytes() > 0);
    drop(map);
    rcu.barrier();
    assert_eq!(rcu.pending_bytes(), 0);
    assert_eq!(rcu.pending(), 0);
    drop(rcu); // returns: no buffer left marked as owned
}

/// An iterator walks on over the dummies of a level that a halving
/// unlinked and retired meanwhile; the level is freed after the grace
/// period, through the pointer it was allocated with. Run under Miri
/// (`.ci/miri`): the level was retired as a `Box` made while the
/// iterator could still read it, which Stacked Borrows reported as
/// undefined behaviour at its deallocation.
#[test]
fn an_iterator_walks_dummies_of_a_level_a_halving_retired() {
    use std::collections::hash_map::DefaultHasher;
    use std::hash::BuildHasherDefault;
    for steps in 1..=4 {
        let rcu = Rcu::new(Config::new().on_demand()).unwrap();
        let map = RcuHashMap::with_capacity_and_hasher_in(
            0,
            BuildHasherDefault::<DefaultHasher>::default(),
            &rcu,
        );
        for i in 0..65u64 {
            map.insert(i, i); // more than 64: doubles to 128 buckets
        }
        assert_eq!(map.capacity(), 128);
        {
            let guard = rcu.read_lock();
            let mut it = map.iter(&guard);
            for _ in 0..steps {
                it.next();
            }
            for i in 0..60u64 {
                map.remove(&i); // 5 left: halves to 64, retiring the top level
            }
            assert_eq!(map.capacity(), 64);
            for (k, v) in it {
                assert_eq!(k, v);
            }
        }
        rcu.barrier();
        assert_eq!(map.len(), 5);
    }
}

/// `retain` beside writers and readers: of the keys no one else touches,
/// exactly the odd ones go (through the shrinks the removals cause);
/// churned keys are judged on the value `remove_if` holds; readers never
/// see a dropped value, and every value is dropped exactly once.
#[test]
fn retain_beside_writers_removes_exactly_what_it_rejects() {
    // keys 0..FIXED: only retain touches them
    const FIXED: u64 = if cfg!(miri) { 96 } else { 4096 };
    // keys FIXED..FIXED+CHURNED: a writer's
    const CHURNED: u64 = if cfg!(miri) { 24 } else { 512 };
    const YIELD_EVERY: u64 = if cfg!(miri) { 8 } else { 128 };
    const WRITES_FIRST: usize = if cfg!(miri) { 40 } else { 1000 };
    let rcu = Rcu::new(Config::new()).unwrap();
    let drops = Drops::new(if cfg!(miri) { 1 << 14 } else { 1 << 20 });
    let map: Arc<RcuHashMap<u64, Val>> = Arc::new(RcuHashMap::new_in(&rcu));
    for k in 0..FIXED + CHURNED {
        map.insert(k, Val::new(&drops, k));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (map, drops, stop, writes) = (map.clone(), drops.clone(), stop.clone(), writes.clone());
        thread::spawn(move || {
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
            while !stop.load(Ordering::Relaxed) {
                writes.fetch_add(1, Ordering::Relaxed);
                let k = FIXED + rng.below(CHURNED);
                if rng.below(2) == 0 {
                    map.insert(k, Val::new(&drops, k));
                } else {
                    map.remove(&k);
                }
            }
        })
    };
    let reader = {
        let (map, stop) = (map.clone(), stop.clone());
        thread::spawn(move || {
            let mut rng = Rng(0xD1B5_4A32_D192_ED03);
            while !stop.load(Ordering::Relaxed) {
                let guard = map.domain().read_lock();
                let k = rng.below(FIXED + CHURNED);
                if let Some(v) = map.get(&k, &guard) {
                    v.check(k);
                }
                for (k, v) in map.iter(&guard).take(64) {
                    v.check(*k);
                }
            }
        })
    };
    let _stop = StopOnDrop(&stop);
    while writes.load(Ordering::Relaxed) < WRITES_FIRST {
        thread::yield_now();
    }
    let offered = AtomicUsize::new(0);
    let before = writes.load(Ordering::Relaxed);
    map.retain(|k, v| {
        v.check(*k);
        if *k < FIXED {
            offered.fetch_add(1, Ordering::Relaxed);
        }
        if k % YIELD_EVERY == 0 {
            thread::yield_now(); // let the writer and reader in meanwhile
        }
        *k >= FIXED || k % 2 == 0
    });
    let during = writes.load(Ordering::Relaxed) - before;
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    reader.join().unwrap();
    // Each fixed key was offered once, and only the even ones are left.
    assert_eq!(offered.load(Ordering::Relaxed), FIXED as usize);
    eprintln!("{during} writes ran during the retain");
    let guard = rcu.read_lock();
    for k in 0..FIXED {
        assert_eq!(map.get(&k, &guard).is_some(), k % 2 == 0, "key {k}");
    }
    drop(guard);
    // Every churned key judged: a `retain` keeping none of them leaves
    // none behind once the writer has stopped.
    map.retain(|k, _| *k < FIXED);
    assert_eq!(map.len(), FIXED as usize / 2);
    drop(map);
    rcu.barrier();
    drops.assert_each_dropped_once();
    assert_eq!(rcu.pending_bytes(), 0);
}
