//! Independent stress, models: the map and the cache checked per key
//! against a sequential model under concurrent writers (across resizes
//! and evictions), caches stormed with one and many shards, and caches
//! dropped while a shrinker scans them.
//!
//! `RCU_ISTRESS_MS` sets the storm length per test (default 1200 ms).

mod common;
mod istress;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use istress::{Tracker, Val, CAPACITY};

use rcu_reclaim::pressure::NodeMask;
use rcu_reclaim::reclaim::{MemoryBudget, Reclaimer};
use rcu_reclaim::sources::{Level, SyntheticSource};
use rcu_reclaim::{Config, Rcu, RcuCache, RcuHashMap};

fn weight(v: &Val) -> usize {
    64 + (v.id * 37) % 900
}

/// An RcuCache with a variable weigher, several shards and a small capacity:
/// inserts of the same keys from several threads, removes, clears,
/// get_or_insert_with / read_or_insert_with, pressure events and budget
/// checks. At quiescence its byte count is exactly the sum of its entries'
/// weights, and within its capacity.
fn cache_storm(shards: usize, what: &'static str) {
    let rcu = Rcu::new(Config::new()).unwrap();
    let t = Tracker::new();
    let stop = Arc::new(AtomicBool::new(false));
    let (events, source, drained) = istress::drained_source();
    let cache: Arc<RcuCache<u64, Val>> = Arc::new(
        RcuCache::builder()
            .max_bytes(48 << 10)
            .shards(shards)
            .rcu(&rcu)
            .pressure_source(source)
            .regrow_after(Duration::from_millis(3))
            .weigher(|_: &u64, v: &Val| weight(v))
            .build(),
    );
    let mut handles = vec![];
    for w in 0..3u64 {
        let (rcu, cache, stop, t) = (rcu.clone(), cache.clone(), stop.clone(), t.clone());
        handles.push(thread::spawn(move || {
            let mut k = w + 1;
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) && !t.full() {
                i += 1;
                istress::step(&mut k);
                let key = (k >> 33) % 300;
                match i % 12 {
                    0..=4 => {
                        cache.insert(key, Val::unboxed(&t));
                    }
                    5 => {
                        cache.remove(&key);
                    }
                    6 | 7 => {
                        let g = rcu.read_lock();
                        cache
                            .get_or_insert_with(key, || Val::unboxed(&t), &g)
                            .check();
                    }
                    8 | 9 => {
                        let id = cache.read_or_insert_with(
                            key,
                            || Val::unboxed(&t),
                            |v| {
                                v.check();
                                v.id
                            },
                        );
                        assert!(id < CAPACITY);
                    }
                    10 => {
                        if i % 3000 == 10 {
                            cache.clear();
                        }
                    }
                    _ => {
                        let g = rcu.read_lock();
                        for key in 0..20 {
                            if let Some(v) = cache.get(&key, &g) {
                                v.check();
                            }
                        }
                    }
                }
            }
        }));
    }
    {
        let (stop, cache) = (stop.clone(), cache.clone());
        handles.push(thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let _ = events.send(match i % 3 {
                    0 => Level::Low,
                    1 => Level::Medium,
                    _ => Level::Critical,
                });
                let _ = cache.capacity_bytes();
                thread::sleep(Duration::from_millis(1));
            }
        }));
    }
    istress::storm_then_join(&stop, handles);
    // Let a shrink in flight (on the monitor's thread) finish.
    drained.wait();
    let (len, sum) = {
        let g = rcu.read_lock();
        let mut len = 0;
        let mut sum = 0;
        for key in 0..300 {
            if let Some(v) = cache.get(&key, &g) {
                v.check();
                len += 1;
                sum += weight(v) + RcuCache::<u64, Val>::ENTRY_OVERHEAD;
            }
        }
        (len, sum)
    };
    println!(
        "{what}: {} values, {len} entries, {sum} bytes, capacity {}",
        t.next.load(Ordering::Relaxed),
        cache.capacity_bytes()
    );
    assert_eq!(cache.len(), len, "{what}: len");
    assert_eq!(cache.bytes(), sum, "{what}: bytes");
    assert!(cache.bytes() <= cache.max_bytes(), "{what}: over max");
    drop(cache);
    rcu.barrier();
    assert_eq!(rcu.pending(), 0);
    drop(rcu);
    t.check_all_dropped(what);
}

#[test]
fn cache_storm_one_shard() {
    cache_storm(1, "one shard");
}

#[test]
fn cache_storm_many_shards() {
    cache_storm(8, "8 shards");
}

/// Caches sharing one budget and reclaimer are built, filled and dropped
/// while other threads shrink, reclaim and check the budget.
#[test]
fn caches_dropped_while_shrinking() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let t = Tracker::new();
    let stop = Arc::new(AtomicBool::new(false));
    let reclaimer = Arc::new(Reclaimer::new(&rcu));
    let live = t.clone();
    let budget = Arc::new(MemoryBudget::new(32 << 10, reclaimer.clone(), move || {
        live.live.load(Ordering::Relaxed) * 128
    }));
    let mut handles = vec![];
    for w in 0..2u64 {
        let (rcu, stop, t, budget) = (rcu.clone(), stop.clone(), t.clone(), budget.clone());
        handles.push(thread::spawn(move || {
            let mut i = w;
            while !stop.load(Ordering::Relaxed) && !t.full() {
                i += 1;
                let cache: Arc<RcuCache<u64, Val>> = Arc::new(
                    RcuCache::builder()
                        .max_bytes(16 << 10)
                        .rcu(&rcu)
                        .budget(&budget)
                        .shards((i % 4 + 1) as usize)
                        .weigher(|_: &u64, _: &Val| 100)
                        .build(),
                );
                let reader = {
                    let (rcu, cache) = (rcu.clone(), cache.clone());
                    thread::spawn(move || {
                        for k in 0..2000u64 {
                            let g = rcu.read_lock();
                            if let Some(v) = cache.get(&(k % 97), &g) {
                                v.check();
                            }
                        }
                    })
                };
                for k in 0..(i % 300) {
                    cache.insert(k % 97, Val::unboxed(&t));
                }
                if i % 2 == 0 {
                    // The reader may hold the last handle.
                    drop(cache);
                    reader.join().unwrap();
                } else {
                    reader.join().unwrap();
                    drop(cache);
                }
            }
        }));
    }
    {
        let (rcu, stop, reclaimer, budget) =
            (rcu.clone(), stop.clone(), reclaimer.clone(), budget.clone());
        handles.push(thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                match i % 4 {
                    0 => {
                        let _ = reclaimer.shrink((i % 13) as u8);
                    }
                    1 => {
                        let _ = reclaimer.reclaim(8 << 10, &NodeMask::all());
                    }
                    2 => {
                        let _ = budget.check();
                    }
                    _ => {
                        let _ = rcu.collect();
                        let _ = budget.stats();
                        let _ = reclaimer.stats();
                    }
                }
            }
        }));
    }
    istress::storm_then_join(&stop, handles);
    drop(budget);
    drop(reclaimer);
    rcu.barrier();
    assert_eq!(rcu.pending(), 0);
    println!("caches: {} values", t.next.load(Ordering::Relaxed));
    drop(rcu);
    t.check_all_dropped("caches");
}

/// Per-key model check of RcuHashMap across resizes: each writer owns the
/// keys congruent to its number and keeps a model of them; every operation's
/// result and every lookup of its own keys must match the model, while the
/// other writers grow and shrink the table.
#[test]
fn map_per_key_model() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let t = Tracker::new();
    let stop = Arc::new(AtomicBool::new(false));
    let map: Arc<RcuHashMap<u64, Val>> = Arc::new(RcuHashMap::with_capacity_in(1, &rcu));
    let ops = Arc::new(AtomicU64::new(0));
    let mut handles = vec![];
    const W: u64 = 3;
    for w in 0..W {
        let (rcu, map, stop, t, ops) = (
            rcu.clone(),
            map.clone(),
            stop.clone(),
            t.clone(),
            ops.clone(),
        );
        handles.push(thread::spawn(move || {
            let mut model: std::collections::HashMap<u64, usize> = Default::default();
            let mut r = w + 11;
            let mut n = 0u64;
            // Phases: grow to many keys, then shrink back.
            while !stop.load(Ordering::Relaxed) && !t.full() {
                n += 1;
                istress::step(&mut r);
                let phase_big = (n / 20_000) % 2 == 0;
                let span = if phase_big { 4000 } else { 40 };
                let key = ((r >> 33) % span) * W + w;
                let present = model.get(&key).copied();
                match (r >> 20) % 7 {
                    0 | 1 => {
                        let v = Val::unboxed(&t);
                        let id = v.id;
                        let inserted = map.insert(key, v);
                        assert_eq!(inserted, present.is_none(), "insert {key}");
                        model.insert(key, id);
                    }
                    2 | 3 => {
                        let removed = map.remove(&key);
                        assert_eq!(removed, present.is_some(), "remove {key}");
                        model.remove(&key);
                    }
                    4 => {
                        let mut new_id = None;
                        let tt = &t;
                        map.update(key, |old| {
                            assert_eq!(old.map(|o| o.id), present, "update sees {key}");
                            let v = Val::unboxed(tt);
                            new_id = Some(v.id);
                            Some(v)
                        });
                        model.insert(key, new_id.unwrap());
                    }
                    5 => {
                        let g = rcu.read_lock();
                        let v = map.get_or_insert_with(key, || Val::unboxed(&t), &g);
                        v.check();
                        if let Some(id) = present {
                            assert_eq!(v.id, id, "get_or_insert_with {key}");
                        }
                        let id = v.id;
                        drop(g);
                        model.insert(key, id);
                    }
                    _ => {
                        let removed = map.remove_if(&key, |v| v.id % 2 == 0);
                        if let Some(id) = present {
                            assert_eq!(removed, id % 2 == 0, "remove_if {key}");
                            if removed {
                                model.remove(&key);
                            }
                        } else {
                            assert!(!removed);
                        }
                    }
                }
                if n % 64 == 0 {
                    let g = rcu.read_lock();
                    for probe in 0..8u64 {
                        let k = ((r >> (probe * 4)) % span) * W + w;
                        let got = map.get(&k, &g).map(|v| {
                            v.check();
                            v.id
                        });
                        assert_eq!(got, model.get(&k).copied(), "get {k}");
                    }
                }
            }
            // Leave nothing of ours behind.
            for k in model.keys() {
                assert!(map.remove(k));
            }
            ops.fetch_add(n, Ordering::Relaxed);
        }));
    }
    {
        let (rcu, map, stop) = (rcu.clone(), map.clone(), stop.clone());
        handles.push(thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let g = rcu.read_lock();
                let mut c = 0;
                for (_, v) in map.iter(&g) {
                    v.check();
                    c += 1;
                    if c > 500 {
                        break;
                    }
                }
                drop(g);
                let _ = map.capacity();
                thread::yield_now();
            }
        }));
    }
    istress::storm_then_join(&stop, handles);
    assert_eq!(map.len(), 0);
    println!(
        "map model: {} ops, capacity {}",
        ops.load(Ordering::Relaxed),
        map.capacity()
    );
    drop(map);
    rcu.barrier();
    drop(rcu);
    t.check_all_dropped("map model");
}

/// Per-key model of RcuCache under eviction and pressure: each writer owns
/// its keys; after it inserts a value, a lookup finds that value or nothing
/// (evicted), never an older one; after it removes a key, nothing.
#[test]
fn cache_per_key_model() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let t = Tracker::new();
    let stop = Arc::new(AtomicBool::new(false));
    let (events, source) = SyntheticSource::new();
    let cache: Arc<RcuCache<u64, Val>> = Arc::new(
        RcuCache::builder()
            .max_bytes(24 << 10)
            .shards(4)
            .rcu(&rcu)
            .pressure_source(Box::new(source))
            .regrow_after(Duration::from_millis(2))
            .weigher(|_: &u64, v: &Val| 64 + v.id % 300)
            .build(),
    );
    let mut handles = vec![];
    const W: u64 = 3;
    for w in 0..W {
        let (rcu, cache, stop, t) = (rcu.clone(), cache.clone(), stop.clone(), t.clone());
        handles.push(thread::spawn(move || {
            // key -> the id it must hold if present (None: must be absent).
            let mut model: std::collections::HashMap<u64, Option<usize>> = Default::default();
            let mut r = w + 5;
            while !stop.load(Ordering::Relaxed) && !t.full() {
                istress::step(&mut r);
                let key = ((r >> 33) % 200) * W + w;
                match (r >> 20) % 6 {
                    0..=2 => {
                        let v = Val::unboxed(&t);
                        let id = v.id;
                        cache.insert(key, v);
                        model.insert(key, Some(id));
                    }
                    3 => {
                        cache.remove(&key);
                        model.insert(key, None);
                    }
                    4 => {
                        let g = rcu.read_lock();
                        let v = cache.get_or_insert_with(key, || Val::unboxed(&t), &g);
                        v.check();
                        if let Some(Some(id)) = model.get(&key) {
                            // Present and ours, or evicted and made anew.
                            assert!(v.id >= *id, "stale value for {key}");
                        }
                        let id = v.id;
                        drop(g);
                        model.insert(key, Some(id));
                    }
                    _ => {
                        let g = rcu.read_lock();
                        let got = cache.get(&key, &g).map(|v| {
                            v.check();
                            v.id
                        });
                        match (model.get(&key), got) {
                            (_, None) => {}
                            (Some(Some(id)), Some(g)) => {
                                assert_eq!(g, *id, "stale value for {key}")
                            }
                            (m, Some(g)) => panic!("key {key}: model {m:?}, found {g}"),
                        }
                    }
                }
            }
        }));
    }
    {
        let stop = stop.clone();
        handles.push(thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let _ = events.send(if i % 2 == 0 {
                    Level::Critical
                } else {
                    Level::Medium
                });
                thread::sleep(Duration::from_micros(500));
            }
        }));
    }
    istress::storm_then_join(&stop, handles);
    drop(cache);
    rcu.barrier();
    drop(rcu);
    t.check_all_dropped("cache model");
}
