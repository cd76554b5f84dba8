//! Semantics an independent user leans on, checked with exact drop counts
//! and poison-on-drop values: the QSBR flavor's registrations (twice on a
//! thread, across domains, threads coming and going), the map's iteration,
//! `len`, racing `get_or_insert_with` and panicking closures, keys, `clear`,
//! the cell's `compare_exchange`/`update`/`Retired`, zero-sized values,
//! and panics in callbacks and deferred drops.

mod common;
use common::{Counted, StopOnDrop};

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use common::poison::{Drops, Val};
use rcu_reclaim::{Config, Flavor, Rcu, RcuCell, RcuHashMap, ReclaimSize};

fn qsbr() -> Rcu {
    Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap()
}

fn on_demand() -> Rcu {
    Rcu::new(Config::new().on_demand()).unwrap()
}

// ---------------------------------------------------------------------------
// QSBR

#[test]
fn two_registrations_on_one_thread_each_hold_the_domain_until_both_are_offline() {
    let rcu = qsbr();
    let a = rcu.register_qsbr_thread();
    let b = rcu.register_qsbr_thread();
    // Online twice: waiting here would wait for this thread.
    let a = a.thread_offline();
    assert!(rcu.in_read_section(), "b is still online");
    let r = catch_unwind(AssertUnwindSafe(|| rcu.synchronize()));
    assert!(r.is_err(), "synchronize with b online must panic, not hang");
    let b = b.thread_offline();
    assert!(!rcu.in_read_section());
    rcu.synchronize();
    // Back online, dropped online: nothing held up afterwards.
    let a = a.thread_online();
    let b = b.thread_online();
    drop(a);
    assert!(rcu.in_read_section());
    drop(b);
    assert!(!rcu.in_read_section());
    rcu.synchronize();
    rcu.barrier();
}

#[test]
fn qsbr_synchronize_with_a_second_online_registration_panics_and_comes_back_online() {
    let rcu = qsbr();
    let mut a = rcu.register_qsbr_thread();
    let _b = rcu.register_qsbr_thread();
    let r = catch_unwind(AssertUnwindSafe(|| a.synchronize()));
    assert!(r.is_err());
    assert!(a.is_online());
    // `a` is truly online again: a grace period started elsewhere waits
    // for its report.
    let cell = RcuCell::new_in(&rcu, Some(Box::new(1u64)));
    let g = a.read_lock();
    assert_eq!(cell.load(&g), Some(&1));
}

#[test]
fn an_online_thread_of_one_qsbr_domain_waits_freely_on_another() {
    let a = qsbr();
    let b = qsbr();
    let memb = Rcu::new(Config::new()).unwrap();
    let mut ta = a.register_qsbr_thread();
    let cell_b = RcuCell::new_in(&b, Some(Box::new(1u64)));
    let cell_m = RcuCell::new_in(&memb, Some(Box::new(1u64)));
    // Online in `a`, not in `b` nor in `memb`: every wait there is fine.
    b.synchronize();
    b.barrier();
    memb.synchronize();
    memb.barrier();
    cell_b.store_sync(Box::new(2));
    cell_m.store_sync(Box::new(2));
    drop(cell_b.take().unwrap()); // a Retired of `b` waits here
    ta.quiescent_state();
    // ... while `a` still refuses.
    assert!(catch_unwind(AssertUnwindSafe(|| a.barrier())).is_err());
    ta.offline_while(|| a.barrier());
}

#[test]
fn call_defer_drop_and_store_from_an_online_thread_never_wait() {
    let rcu = qsbr();
    let drops = Arc::new(AtomicUsize::new(0));
    let cell = RcuCell::new_in(&rcu, Some(Box::new(Counted(drops.clone()))));
    let mut t = rcu.register_qsbr_thread();
    let ran = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    for _ in 0..1000 {
        let r = ran.clone();
        rcu.call(move || {
            r.fetch_add(1, Ordering::SeqCst);
        });
        rcu.defer_drop(Box::new(Counted(drops.clone())));
        cell.store(Box::new(Counted(drops.clone())));
        // A collect on an online thread does not wait either.
        rcu.collect();
    }
    assert!(start.elapsed() < Duration::from_secs(5));
    // Nothing can have run: this thread, online, has not reported.
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    assert_eq!(drops.load(Ordering::SeqCst), 0);
    t.quiescent_state();
    t.offline_while(|| rcu.barrier());
    assert_eq!(ran.load(Ordering::SeqCst), 1000);
    assert_eq!(drops.load(Ordering::SeqCst), 2000);
    drop(t);
    drop(cell);
    assert_eq!(drops.load(Ordering::SeqCst), 2001);
}

#[test]
fn threads_that_come_and_go_never_see_poison_and_never_stall_grace_periods() {
    let rcu = Rcu::new(
        Config::new()
            .flavor(Flavor::Qsbr)
            .lazy_delay(Duration::from_millis(1)),
    )
    .unwrap();
    let drops = Drops::new(200_000);
    let cell = Arc::new(RcuCell::new_in(&rcu, Some(Box::new(Val::new(&drops, 7)))));
    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for i in 0..3 {
        let (rcu, cell, stop) = (rcu.clone(), cell.clone(), stop.clone());
        readers.push(thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // A short-lived thread: registers, reads, leaves (online
                // or offline, by turns).
                let rcu = rcu.clone();
                let cell = cell.clone();
                let online_exit = (n + i) % 2 == 0;
                thread::spawn(move || {
                    let mut t = rcu.register_qsbr_thread();
                    for _ in 0..20 {
                        let g = t.read_lock();
                        cell.load(&g).unwrap().check(7);
                        t.quiescent_state();
                    }
                    if !online_exit {
                        drop(t.thread_offline());
                    }
                })
                .join()
                .unwrap();
                n += 1;
            }
        }));
    }
    let _stop = StopOnDrop(&stop);
    let start = Instant::now();
    let mut writes = 0;
    while start.elapsed() < Duration::from_millis(800) && writes < 190_000 {
        cell.store(Box::new(Val::new(&drops, 7)));
        if writes % 16 == 0 {
            rcu.synchronize();
        }
        writes += 1;
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().unwrap();
    }
    rcu.barrier();
    // Every grace period ended: nothing is pending, every value replaced
    // was dropped once.
    assert_eq!(rcu.pending(), 0);
    drop(Arc::try_unwrap(cell).ok().unwrap());
    drops.assert_each_dropped_once();
}

#[test]
fn a_thread_parked_offline_forever_holds_nothing_up() {
    let rcu = qsbr();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let r2 = rcu.clone();
    let h = thread::spawn(move || {
        let t = r2.register_qsbr_thread();
        let off = t.thread_offline();
        ready_tx.send(()).unwrap();
        let _ = rx.recv();
        drop(off);
    });
    ready_rx.recv().unwrap();
    let start = Instant::now();
    for _ in 0..10 {
        rcu.synchronize();
    }
    let drops = Arc::new(AtomicUsize::new(0));
    rcu.defer_drop(Box::new(Counted(drops.clone())));
    rcu.barrier();
    assert_eq!(drops.load(Ordering::SeqCst), 1);
    // Held up by the offline thread, they would never return; the bound
    // only names a slow return, with room for a loaded machine.
    assert!(start.elapsed() < Duration::from_secs(10));
    drop(tx);
    h.join().unwrap();
}

#[test]
fn late_readers_names_the_online_thread_that_has_not_reported() {
    let rcu = qsbr();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let r2 = rcu.clone();
    let h = thread::Builder::new()
        .name("audit-late".into())
        .spawn(move || {
            let mut t = r2.register_qsbr_thread();
            ready_tx.send(()).unwrap();
            let _ = rx.recv();
            t.quiescent_state();
        })
        .unwrap();
    ready_rx.recv().unwrap();
    let cookie = rcu.start_poll();
    let start = Instant::now();
    let mut named = false;
    while start.elapsed() < Duration::from_secs(2) {
        let late = rcu.late_readers();
        if late.iter().any(|l| l.name == "audit-late" && l.qsbr) {
            named = true;
            break;
        }
        thread::sleep(Duration::from_millis(5));
    }
    assert!(named, "late_readers: {:?}", rcu.late_readers());
    assert!(!rcu.poll(&cookie));
    tx.send(()).unwrap();
    h.join().unwrap();
    rcu.cond_synchronize(cookie);
}

// ---------------------------------------------------------------------------
// RcuHashMap

#[test]
fn a_walk_beside_inserts_removes_and_resizes_sees_each_fixed_key_once() {
    let rcu = on_demand();
    let map: Arc<RcuHashMap<u64, u64>> = Arc::new(RcuHashMap::new_in(&rcu));
    const FIXED: u64 = 300;
    for k in 0..FIXED {
        map.insert(k, k);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..2u64 {
        let (map, stop) = (map.clone(), stop.clone());
        writers.push(thread::spawn(move || {
            let mut rng = common::rng::Rng(w);
            while !stop.load(Ordering::Relaxed) {
                // Grow to thousands (doublings), then empty (halvings).
                for _ in 0..3000 {
                    let x = rng.next();
                    map.insert(FIXED + (x % 100_000), x);
                }
                for k in FIXED..FIXED + 100_000 {
                    map.remove(&k);
                }
            }
        }));
    }
    let _stop = StopOnDrop(&stop);
    let start = Instant::now();
    let mut walks = 0;
    while start.elapsed() < Duration::from_millis(700) {
        common::walk_sees_each_fixed_key_once(&map, FIXED, |k, v| {
            if k < FIXED {
                assert_eq!(*v, k);
            }
        });
        walks += 1;
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    assert!(walks > 0);
    // At quiescence, len is exact and matches a walk.
    let g = rcu.read_lock();
    assert_eq!(map.len(), map.iter(&g).count());
    assert_eq!(map.len() as u64, FIXED);
}

#[test]
fn len_is_exact_at_quiescence_after_racing_writers() {
    let rcu = on_demand();
    let map: Arc<RcuHashMap<u64, u64>> = Arc::new(RcuHashMap::new_in(&rcu));
    let ops = 20_000u64;
    let hs: Vec<_> = (0..4u64)
        .map(|t| {
            let map = map.clone();
            thread::spawn(move || {
                for i in 0..ops {
                    let k = (i * 7 + t) % 5000;
                    match i % 5 {
                        0 | 1 => {
                            map.insert(k, i);
                        }
                        2 => {
                            map.remove(&k);
                        }
                        3 => {
                            map.update(k, |v| if v.is_some() { None } else { Some(i) });
                        }
                        _ => {
                            let g = map.domain().read_lock();
                            map.get_or_insert_with(k, || i, &g);
                        }
                    }
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    let g = rcu.read_lock();
    let keys: HashSet<u64> = map.iter(&g).map(|(k, _)| *k).collect();
    assert_eq!(keys.len(), map.iter(&g).count(), "a key listed twice");
    assert_eq!(map.len(), keys.len());
}

#[test]
fn racing_get_or_insert_with_inserts_one_value_and_runs_one_closure() {
    let rcu = on_demand();
    let drops = Drops::new(100_000);
    let map: Arc<RcuHashMap<u64, Val>> = Arc::new(RcuHashMap::new_in(&rcu));
    let made = Arc::new(AtomicUsize::new(0));
    const KEYS: u64 = 2000;
    let barrier = Arc::new(Barrier::new(4));
    let hs: Vec<_> = (0..4)
        .map(|_| {
            let (map, drops, made, barrier) =
                (map.clone(), drops.clone(), made.clone(), barrier.clone());
            thread::spawn(move || {
                barrier.wait();
                let g = map.domain().read_lock();
                let mut seen = Vec::new();
                for k in 0..KEYS {
                    let v = map.get_or_insert_with(
                        k,
                        || {
                            made.fetch_add(1, Ordering::SeqCst);
                            Val::new(&drops, k)
                        },
                        &g,
                    );
                    v.check(k);
                    seen.push(v as *const Val as usize);
                }
                seen
            })
        })
        .collect();
    let seen: Vec<Vec<usize>> = hs.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(made.load(Ordering::SeqCst), KEYS as usize);
    for s in &seen[1..] {
        assert_eq!(s, &seen[0], "two threads got different values for a key");
    }
    assert_eq!(map.len(), KEYS as usize);
    drop(Arc::try_unwrap(map).ok().unwrap());
    rcu.barrier();
    drops.assert_each_dropped_once();
}

#[test]
fn closures_that_panic_leave_the_map_consistent_and_drop_everything_once() {
    let rcu = on_demand();
    let drops = Drops::new(1000);
    let map: RcuHashMap<u64, Val> = RcuHashMap::new_in(&rcu);
    for k in 0..100 {
        map.insert(k, Val::new(&drops, k));
    }
    // update on a present key, on an absent key; get_or_insert_with on an
    // absent key; remove_if's predicate.
    for k in [5u64, 500] {
        let r = catch_unwind(AssertUnwindSafe(|| {
            map.update(k, |_| -> Option<Val> { panic!("update closure") })
        }));
        assert!(r.is_err());
    }
    let r = catch_unwind(AssertUnwindSafe(|| {
        let g = rcu.read_lock();
        map.get_or_insert_with(600, || panic!("init closure"), &g);
    }));
    assert!(r.is_err());
    let r = catch_unwind(AssertUnwindSafe(|| {
        map.remove_if(&7, |_| panic!("predicate"));
    }));
    assert!(r.is_err());
    // A closure that made a value and then panicked drops it once.
    let r = catch_unwind(AssertUnwindSafe(|| {
        map.update(9, |_| {
            let _v = Val::new(&drops, 9);
            panic!("after making a value")
        })
    }));
    assert!(r.is_err());
    assert_eq!(map.len(), 100);
    {
        let g = rcu.read_lock();
        for k in 0..100 {
            map.get(&k, &g).unwrap().check(k);
        }
        assert!(map.get(&500, &g).is_none() && map.get(&600, &g).is_none());
        assert_eq!(map.iter(&g).count(), 100);
    }
    // The stripes those panics unwound through are usable: every write
    // works on the same keys.
    for k in [5u64, 7, 9, 500, 600] {
        map.insert(k, Val::new(&drops, k));
        assert!(map.update(k, |v| v.map(|_| Val::new(&drops, k))));
        assert!(map.remove_if(&k, |_| true));
    }
    assert_eq!(map.len(), 97);
    drop(map);
    rcu.barrier();
    drops.assert_each_dropped_once();
}

/// A key whose `Hash` or `Eq` panics on demand, or whose `Eq` lies.
#[derive(Clone)]
struct Wild {
    id: u64,
    panic_hash: bool,
    panic_eq: bool,
}

static RANDOM_EQ: AtomicBool = AtomicBool::new(false);
static EQ_CALLS: AtomicU64 = AtomicU64::new(0);

impl Hash for Wild {
    fn hash<H: Hasher>(&self, h: &mut H) {
        if self.panic_hash {
            panic!("hash");
        }
        // Few distinct hashes: long runs of equal sort keys.
        (self.id % 4).hash(h);
    }
}

impl PartialEq for Wild {
    fn eq(&self, other: &Wild) -> bool {
        if self.panic_eq || other.panic_eq {
            panic!("eq");
        }
        if RANDOM_EQ.load(Ordering::Relaxed) {
            return EQ_CALLS.fetch_add(1, Ordering::Relaxed) % 3 == 0;
        }
        self.id == other.id
    }
}

impl Eq for Wild {}

impl ReclaimSize for Wild {
    fn reclaim_size(&self) -> usize {
        std::mem::size_of::<Self>()
    }
}

#[test]
fn keys_whose_hash_or_eq_panic_or_lie_cause_no_hang_and_no_lost_drop() {
    let rcu = on_demand();
    let drops = Drops::new(10_000);
    let map: RcuHashMap<Wild, Val> = RcuHashMap::new_in(&rcu);
    let key = |id| Wild {
        id,
        panic_hash: false,
        panic_eq: false,
    };
    for id in 0..200 {
        map.insert(key(id), Val::new(&drops, id));
    }
    let bad_hash = Wild {
        panic_hash: true,
        ..key(1)
    };
    let bad_eq = Wild {
        panic_eq: true,
        ..key(1)
    };
    for bad in [bad_hash, bad_eq] {
        let b = bad.clone();
        assert!(catch_unwind(AssertUnwindSafe(|| map.insert(b, Val::new(&drops, 0)))).is_err());
        let b = bad.clone();
        assert!(catch_unwind(AssertUnwindSafe(|| map.remove(&b))).is_err());
        let b = bad.clone();
        assert!(catch_unwind(AssertUnwindSafe(|| map.update(b, |_| None))).is_err());
        let b = bad.clone();
        assert!(catch_unwind(AssertUnwindSafe(|| {
            let g = rcu.read_lock();
            map.get(&b, &g).is_some()
        }))
        .is_err());
        let b = bad.clone();
        assert!(catch_unwind(AssertUnwindSafe(|| {
            let g = rcu.read_lock();
            map.get_or_insert_with(b, || Val::new(&drops, 0), &g);
        }))
        .is_err());
    }
    assert_eq!(map.len(), 200);
    // An `Eq` that lies: duplicates and misses, but every entry stays
    // counted and is dropped once.
    RANDOM_EQ.store(true, Ordering::Relaxed);
    for id in 0..400 {
        map.insert(key(id), Val::new(&drops, id));
        map.remove(&key(id + 1));
        map.update(key(id), |_| Some(Val::new(&drops, id)));
    }
    RANDOM_EQ.store(false, Ordering::Relaxed);
    {
        let g = rcu.read_lock();
        assert_eq!(map.len(), map.iter(&g).count());
    }
    map.clear();
    assert_eq!(map.len(), 0);
    drop(map);
    rcu.barrier();
    // Values made for the panicking calls above were dropped at once.
    drops.assert_each_dropped_once();
}

#[test]
fn clear_under_readers_frees_nothing_they_hold() {
    let rcu = Rcu::new(Config::new().lazy_delay(Duration::from_millis(1))).unwrap();
    const IDS: usize = 4_000_000;
    let drops = Drops::new(IDS);
    let map: Arc<RcuHashMap<u64, Val>> = Arc::new(RcuHashMap::new_in(&rcu));
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (map, stop) = (map.clone(), stop.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let g = map.domain().read_lock();
                    let held: Vec<(&u64, &Val)> = map.iter(&g).take(64).collect();
                    for _ in 0..4 {
                        for (k, v) in &held {
                            v.check(**k);
                        }
                        thread::yield_now();
                    }
                }
            })
        })
        .collect();
    let _stop = StopOnDrop(&stop);
    let start = Instant::now();
    // At most as many values as `drops` has ids for: a release build made
    // about 3 million in the 600 ms, against room for 400,000, and failed
    // on "raise the id limit".
    let mut rounds = 0;
    while start.elapsed() < Duration::from_millis(600) && rounds < IDS / 500 {
        for k in 0..500 {
            map.insert(k, Val::new(&drops, k));
        }
        map.clear();
        rounds += 1;
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().unwrap();
    }
    assert!(map.is_empty());
    drop(Arc::try_unwrap(map).ok().unwrap());
    rcu.barrier();
    drops.assert_each_dropped_once();
}

#[test]
fn a_map_dropped_with_deferred_values_loses_nothing() {
    let rcu = on_demand();
    let drops = Drops::new(10_000);
    let map: RcuHashMap<u64, Val> = RcuHashMap::new_in(&rcu);
    for k in 0..1000 {
        map.insert(k, Val::new(&drops, k));
    }
    for k in 0..500 {
        map.insert(k, Val::new(&drops, k)); // retires the first 500
    }
    for k in 500..1000 {
        map.remove(&k);
    }
    assert!(rcu.pending() > 0);
    drop(map);
    rcu.barrier();
    assert_eq!(rcu.pending(), 0);
    drops.assert_each_dropped_once();
}

#[test]
fn zero_and_huge_capacities() {
    let rcu = on_demand();
    let m0: RcuHashMap<u64, u64> = RcuHashMap::with_capacity_in(0, &rcu);
    assert!(m0.capacity() >= 1);
    m0.insert(1, 1);
    assert_eq!(m0.len(), 1);
    // A capacity of 2^20 fits; removing everything never halves below it.
    let big: RcuHashMap<u64, u64> = RcuHashMap::with_capacity_in(1 << 20, &rcu);
    let cap = big.capacity();
    assert!(cap >= 1 << 20);
    for k in 0..10 {
        big.insert(k, k);
    }
    for k in 0..10 {
        big.remove(&k);
    }
    assert_eq!(big.capacity(), cap);
    drop(big);
    drop(m0);
    rcu.barrier();
}

// ---------------------------------------------------------------------------
// RcuCell and Retired

#[test]
fn a_failed_compare_exchange_hands_back_the_very_box_given() {
    let rcu = on_demand();
    let drops = Drops::new(100);
    let cell = RcuCell::new_in(&rcu, Some(Box::new(Val::new(&drops, 1))));
    let g = rcu.read_lock();
    let new = Box::new(Val::new(&drops, 2));
    let addr = &*new as *const Val;
    let e = cell.compare_exchange(None, Some(new), &g).unwrap_err();
    let back = e.new.unwrap();
    assert_eq!(&*back as *const Val, addr);
    back.check(2);
    e.current.unwrap().check(1);
    // `None` for `new` on failure: nothing handed back, nothing dropped.
    let e = cell.compare_exchange(None, None, &g).unwrap_err();
    assert!(e.new.is_none());
    drop(back);
    assert_eq!(drops.dropped(1), 1);
    assert_eq!(drops.dropped(0), 0);
    drop(g);
    drop(cell);
    drops.assert_each_dropped_once();
}

#[test]
fn an_update_closure_that_panics_publishes_nothing_and_leaks_nothing() {
    let rcu = on_demand();
    let drops = Drops::new(100);
    let cell = RcuCell::new_in(&rcu, Some(Box::new(Val::new(&drops, 1))));
    let r = catch_unwind(AssertUnwindSafe(|| {
        cell.update(|_| {
            let _made = Box::new(Val::new(&drops, 1));
            panic!("update")
        })
    }));
    assert!(r.is_err());
    assert_eq!(drops.dropped(1), 1, "the value made before the panic");
    assert!(!rcu.in_read_section(), "the update's section ended");
    cell.load(&rcu.read_lock()).unwrap().check(1);
    assert_eq!(cell.update(|_| Some(Box::new(Val::new(&drops, 1)))), 1);
    drop(cell);
    rcu.barrier();
    drops.assert_each_dropped_once();
}

#[test]
fn retired_into_box_before_and_after_a_grace_period() {
    let rcu = on_demand();
    let drops = Drops::new(100);
    let cell = RcuCell::new_in(&rcu, Some(Box::new(Val::new(&drops, 1))));
    let r = cell.take().unwrap();
    // `rcu.poll`, not `r.is_safe()`: that would start the grace period,
    // which could end before the `try_into_box` below.
    assert!(!rcu.poll(&r.cookie()));
    let Err(r) = r.try_into_box() else {
        panic!("no grace period has run")
    };
    // A reader on another thread still holds the old value: into_box
    // must wait for it.
    let old = cell.replace(Box::new(Val::new(&drops, 1)));
    assert!(old.is_none());
    let b = r.into_box();
    assert_eq!(drops.dropped(0), 0);
    b.check(1);
    drop(b);
    let r = cell.take().unwrap();
    rcu.synchronize();
    assert!(r.is_safe());
    let b = r.try_into_box().ok().unwrap();
    b.check(1);
    drop(b);
    // take, then store into the empty cell.
    assert!(cell.take().is_none());
    cell.store(Box::new(Val::new(&drops, 1)));
    cell.load(&rcu.read_lock()).unwrap().check(1);
    drop(cell);
    drops.assert_each_dropped_once();
}

#[test]
fn into_box_waits_for_a_reader_on_another_thread() {
    let rcu = on_demand();
    let drops = Drops::new(100);
    let cell = Arc::new(RcuCell::new_in(&rcu, Some(Box::new(Val::new(&drops, 1)))));
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let c2 = cell.clone();
    let released = Arc::new(AtomicBool::new(false));
    let rel2 = released.clone();
    let h = thread::spawn(move || {
        let g = c2.domain().read_lock();
        let v = c2.load(&g).unwrap();
        ready_tx.send(()).unwrap();
        let _ = rx.recv();
        thread::sleep(Duration::from_millis(50));
        v.check(1);
        rel2.store(true, Ordering::SeqCst);
    });
    ready_rx.recv().unwrap();
    let r = cell.replace(Box::new(Val::new(&drops, 1))).unwrap();
    tx.send(()).unwrap();
    let b = r.into_box();
    assert!(released.load(Ordering::SeqCst));
    drop(b);
    h.join().unwrap();
}

#[test]
fn zero_sized_values_are_dropped_once_each() {
    static ZST_DROPS: AtomicUsize = AtomicUsize::new(0);
    struct Z;
    impl Drop for Z {
        fn drop(&mut self) {
            ZST_DROPS.fetch_add(1, Ordering::SeqCst);
        }
    }
    impl ReclaimSize for Z {
        fn reclaim_size(&self) -> usize {
            0
        }
    }
    let rcu = on_demand();
    let cell = Arc::new(RcuCell::new_in(&rcu, Some(Box::new(Z))));
    let hs: Vec<_> = (0..4)
        .map(|_| {
            let cell = cell.clone();
            thread::spawn(move || {
                let mut runs = 0;
                for _ in 0..1000 {
                    runs += cell.update(|_| Some(Box::new(Z)));
                }
                runs
            })
        })
        .collect();
    let runs: usize = hs.into_iter().map(|h| h.join().unwrap()).sum();
    let r = cell.take().unwrap();
    drop(r.into_box());
    rcu.defer_drop(Box::new(Z));
    rcu.barrier();
    // Every Z made: the initial one, one per run of `f`, the deferred one;
    // all dropped (the cell is empty).
    assert_eq!(ZST_DROPS.load(Ordering::SeqCst), 1 + runs + 1);
    drop(cell);
    assert_eq!(ZST_DROPS.load(Ordering::SeqCst), 1 + runs + 1);
}

/// A value whose `Drop` retires another value into the same domain.
struct Chain {
    rcu: Rcu,
    depth: u32,
    drops: Arc<AtomicUsize>,
}

impl Drop for Chain {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
        if self.depth > 0 {
            let next = Chain {
                rcu: self.rcu.clone(),
                depth: self.depth - 1,
                drops: self.drops.clone(),
            };
            self.rcu.defer_drop(Box::new(next));
            let ran = self.drops.clone();
            self.rcu.call(move || {
                ran.fetch_add(1000, Ordering::SeqCst);
            });
        }
    }
}

impl ReclaimSize for Chain {
    fn reclaim_size(&self) -> usize {
        std::mem::size_of::<Self>()
    }
}

#[test]
fn drops_that_retire_into_the_same_domain_all_run_by_barriers() {
    let rcu = on_demand();
    let drops = Arc::new(AtomicUsize::new(0));
    let cell = RcuCell::new_in(
        &rcu,
        Some(Box::new(Chain {
            rcu: rcu.clone(),
            depth: 5,
            drops: drops.clone(),
        })),
    );
    cell.store(Box::new(Chain {
        rcu: rcu.clone(),
        depth: 0,
        drops: drops.clone(),
    }));
    // Each barrier runs one link; a few are enough.
    for _ in 0..10 {
        rcu.barrier();
    }
    assert_eq!(drops.load(Ordering::SeqCst), 6 + 5 * 1000);
    drop(cell);
    assert_eq!(drops.load(Ordering::SeqCst), 7 + 5 * 1000);
    for _ in 0..10 {
        rcu.barrier();
    }
    assert_eq!(rcu.pending(), 0);
}

// ---------------------------------------------------------------------------
// Panics in callbacks and deferred drops

struct PanicOnDrop(Arc<AtomicUsize>);

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
        panic!("deferred drop panics");
    }
}

impl ReclaimSize for PanicOnDrop {
    fn reclaim_size(&self) -> usize {
        64
    }
}

fn panicking_traffic(rcu: &Rcu) {
    let before = rcu.stats().callback_panics;
    let ran = Arc::new(AtomicUsize::new(0));
    let dropped = Arc::new(AtomicUsize::new(0));
    let panicked = Arc::new(AtomicUsize::new(0));
    for i in 0..300 {
        let r = ran.clone();
        rcu.call(move || {
            r.fetch_add(1, Ordering::SeqCst);
        });
        if i % 3 == 0 {
            rcu.call(|| panic!("callback panics"));
        }
        if i % 5 == 0 {
            rcu.defer_drop(Box::new(PanicOnDrop(panicked.clone())));
        }
        rcu.defer_drop(Box::new(Counted(dropped.clone())));
    }
    rcu.barrier();
    assert_eq!(ran.load(Ordering::SeqCst), 300);
    assert_eq!(dropped.load(Ordering::SeqCst), 300);
    assert_eq!(panicked.load(Ordering::SeqCst), 60);
    assert_eq!(rcu.stats().callback_panics - before, 100 + 60);
    assert_eq!(rcu.pending(), 0);
    assert_eq!(rcu.pending_bytes(), 0);
}

#[test]
fn panics_in_callbacks_and_drops_are_counted_and_lose_nothing() {
    // Workers run them (default), then the barrier's caller (on demand).
    let quiet = Arc::new(AtomicUsize::new(0));
    let q2 = quiet.clone();
    let rcu = Rcu::new(Config::new().on_callback_panic(move |_| {
        q2.fetch_add(1, Ordering::SeqCst);
    }))
    .unwrap();
    panicking_traffic(&rcu);
    // The workers survived: a second round works as the first.
    panicking_traffic(&rcu);
    assert_eq!(quiet.load(Ordering::SeqCst), 2 * 160);
    // Callbacks still run on their own after the panics.
    let ran = Arc::new(AtomicBool::new(false));
    let r = ran.clone();
    rcu.call(move || r.store(true, Ordering::SeqCst));
    let start = Instant::now();
    while !ran.load(Ordering::SeqCst) && start.elapsed() < Duration::from_secs(5) {
        thread::sleep(Duration::from_millis(1));
    }
    assert!(ran.load(Ordering::SeqCst));
    panicking_traffic(&on_demand());
    let q = qsbr();
    panicking_traffic(&q);
}

/// A panic payload whose own `Drop` panics.
struct PayloadBomb;

impl Drop for PayloadBomb {
    fn drop(&mut self) {
        panic!("the panic payload's drop panics");
    }
}

/// A deferred value whose `Drop` panics with a [`PayloadBomb`].
struct DropThrowsBomb(Arc<AtomicUsize>);

impl Drop for DropThrowsBomb {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
        std::panic::panic_any(PayloadBomb);
    }
}

#[test]
fn a_panic_payload_whose_drop_panics_loses_no_other_callback() {
    for rcu in [on_demand(), Rcu::new(Config::new()).unwrap()] {
        let ran = Arc::new(AtomicUsize::new(0));
        let dropped = Arc::new(AtomicUsize::new(0));
        let bombs = Arc::new(AtomicUsize::new(0));
        for i in 0..100 {
            let r = ran.clone();
            rcu.call(move || {
                r.fetch_add(1, Ordering::SeqCst);
            });
            rcu.defer_drop(Box::new(Counted(dropped.clone())));
            if i % 25 == 0 {
                rcu.call(|| std::panic::panic_any(PayloadBomb));
                rcu.defer_drop_sized(Box::new(DropThrowsBomb(bombs.clone())), 8);
            }
        }
        // The barrier returns (it runs callbacks itself on demand), and
        // runs every callback and drop, the bombs counted as panics.
        rcu.barrier();
        assert_eq!(ran.load(Ordering::SeqCst), 100);
        assert_eq!(dropped.load(Ordering::SeqCst), 100);
        assert_eq!(bombs.load(Ordering::SeqCst), 4);
        assert_eq!(rcu.stats().callback_panics, 8);
        assert_eq!(rcu.pending(), 0);
        // This thread is not left "inside a callback": barrier and collect
        // still work here.
        let r = ran.clone();
        rcu.call(move || {
            r.fetch_add(1, Ordering::SeqCst);
        });
        rcu.barrier();
        assert_eq!(ran.load(Ordering::SeqCst), 101);
    }
}

/// As `RcuCell::compare_exchange`'s docs say: zero-sized values share one
/// address, so an exchange against a value another writer replaced still
/// succeeds (nothing is dropped twice or lost).
#[test]
fn a_zero_sized_compare_exchange_cannot_see_another_writer() {
    let rcu = on_demand();
    let cell = RcuCell::new_in(&rcu, Some(Box::new(())));
    let g = rcu.read_lock();
    let seen = cell.load(&g);
    cell.store(Box::new(()));
    let won = cell.compare_exchange(seen, Some(Box::new(())), &g);
    let old = won
        .ok()
        .flatten()
        .expect("succeeds, and hands back the value replaced");
    old.defer_drop();
    drop(g);
    rcu.barrier();
}
