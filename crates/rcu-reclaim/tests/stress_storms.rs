//! Independent stress, storms: many APIs of one domain at once (cells,
//! maps, caches, every retire and wait call, `run_callbacks`, pressure
//! flapping, reclaim and a budget), on every flavor and at extreme config
//! values, with many domains and with CPUs hopping across synthetic
//! nodes. Poison checks (a dropped value is overwritten with a poison
//! pattern; readers assert they never see it) and exact drop counting
//! (every value created is dropped exactly once by the end).
//!
//! `RCU_ISTRESS_MS` sets the storm length per test (default 1200 ms).

mod common;
mod istress;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use istress::{Tracker, Val};

use rcu_reclaim::pressure::NodeMask;
use rcu_reclaim::reclaim::{MemoryBudget, Reclaimer, Scanned, ShrinkControl, Shrinker};
use rcu_reclaim::sources::Level;
use rcu_reclaim::{Config, Flavor, Rcu, RcuCache, RcuCell, RcuHashMap};

/// A shrinker holding values; a scan retires some through RCU.
struct Hoard {
    rcu: Rcu,
    vals: Mutex<Vec<Val>>,
}

impl Shrinker for Hoard {
    fn count(&self, _: &ShrinkControl) -> usize {
        self.vals.lock().unwrap().len()
    }
    fn scan(&self, ctl: &mut ShrinkControl) -> Scanned {
        let taken: Vec<Val> = {
            let mut v = self.vals.lock().unwrap();
            let n = ctl.nr_to_scan().min(v.len());
            let keep = v.len() - n;
            v.split_off(keep)
        };
        let n = taken.len();
        for val in taken {
            self.rcu.defer_drop(Box::new(val));
        }
        Scanned {
            freed: n,
            bytes: n * std::mem::size_of::<Val>(),
        }
    }
}

fn reentrant_callback(rcu: Rcu, t: Arc<Tracker>, cell: Arc<RcuCell<Val>>, depth: u32) {
    // Inside a callback: queue more work of every kind.
    rcu.defer_drop(Val::new(&t));
    cell.store(Val::new(&t));
    let _ = rcu.start_poll();
    let v = Val::new(&t);
    if depth < 3 {
        let (r2, t2, c2) = (rcu.clone(), t.clone(), cell.clone());
        rcu.call(move || {
            drop(v);
            reentrant_callback(r2, t2, c2, depth + 1)
        });
    } else {
        rcu.call_sized(move || drop(v), 64);
    }
}

/// Everything at once on one domain.
fn mixed_storm(config: Config, what: &str) {
    let Some(rcu) = istress::domain_or_skip(config) else {
        return;
    };
    let t = Tracker::new();
    let stop = Arc::new(AtomicBool::new(false));
    let cells = istress::cells(&rcu, &t, 4);
    let map: Arc<RcuHashMap<u64, Val>> = Arc::new(RcuHashMap::with_capacity_in(4, &rcu));
    let reclaimer = Arc::new(Reclaimer::new(&rcu));
    let hoard = Arc::new(Hoard {
        rcu: rcu.clone(),
        vals: Mutex::new(Vec::new()),
    });
    reclaimer.register(hoard.clone());
    let live_for_budget = t.clone();
    // Off once the storm ends: the budget's background reclaimer (which
    // looks every 10 ms) then starts no reclaim that would retire values
    // while the checks below count what is pending.
    let budget_on = Arc::new(AtomicBool::new(true));
    let on = budget_on.clone();
    let budget = Arc::new(MemoryBudget::new(64 << 10, reclaimer.clone(), move || {
        if !on.load(Ordering::SeqCst) {
            return 0;
        }
        live_for_budget.live.load(Ordering::Relaxed) * std::mem::size_of::<Val>()
    }));
    let (events, source, drained) = istress::drained_source();
    let cache: Arc<RcuCache<u64, Val>> = Arc::new(
        RcuCache::builder()
            .max_bytes(8 << 10)
            .rcu(&rcu)
            .reclaimer(&reclaimer)
            .budget(&budget)
            .pressure_source(source)
            .regrow_after(Duration::from_millis(5))
            .weigher(|_: &u64, _: &Val| 128)
            .build(),
    );
    let reads = Arc::new(AtomicU64::new(0));
    let mut handles = vec![];

    // Readers.
    for r in 0..2u64 {
        let (rcu, cells, map, cache, stop, reads) = (
            rcu.clone(),
            cells.clone(),
            map.clone(),
            cache.clone(),
            stop.clone(),
            reads.clone(),
        );
        handles.push(thread::spawn(move || {
            let mut n = 0u64;
            let mut k = r;
            while !stop.load(Ordering::Relaxed) {
                let g = rcu.read_lock();
                for c in cells.iter() {
                    if let Some(v) = c.load(&g) {
                        v.check();
                    }
                }
                istress::step(&mut k);
                if let Some(v) = map.get(&(k % 256), &g) {
                    v.check();
                }
                if let Some(v) = cache.get(&(k % 512), &g) {
                    v.check();
                }
                if n % 16 == 0 {
                    for (_, v) in map.iter(&g).take(64) {
                        v.check();
                    }
                }
                drop(g);
                n += 1;
                if n % 64 == 0 {
                    thread::yield_now();
                }
            }
            reads.fetch_add(n, Ordering::Relaxed);
        }));
    }

    // Cell and direct-retire writer.
    {
        let (rcu, cells, stop, t) = (rcu.clone(), cells.clone(), stop.clone(), t.clone());
        handles.push(thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) && !t.full() {
                i += 1;
                let cell = &cells[(i % 4) as usize];
                match i % 11 {
                    0 => cell.store(Val::new(&t)),
                    1 => {
                        cell.update(|old| {
                            if let Some(o) = old {
                                o.check();
                            }
                            Some(Val::new(&t))
                        });
                    }
                    2 => {
                        let g = rcu.read_lock();
                        let cur = cell.load(&g);
                        match cell.compare_exchange(cur, Some(Val::new(&t)), &g) {
                            Ok(Some(old)) => old.defer_drop(),
                            Ok(None) => {}
                            Err(e) => drop(e),
                        }
                    }
                    3 => {
                        if let Some(old) = cell.replace(Val::new(&t)) {
                            if i % 3 == 0 {
                                drop(old.into_box());
                            } else {
                                old.defer_drop_sized(100);
                            }
                        }
                    }
                    4 => rcu.defer_drop(Val::new(&t)),
                    5 => rcu.defer_drop_sized(Val::new(&t), 1000),
                    6 => {
                        if let Err(v) = rcu.try_defer_drop(Val::new(&t)) {
                            drop(v); // never published
                        }
                    }
                    7 => {
                        let v = Val::new(&t);
                        rcu.call(move || drop(v));
                    }
                    8 => {
                        let v = Val::new(&t);
                        rcu.call_sized(move || drop(v), 333);
                    }
                    9 => {
                        if i % 64 == 9 {
                            let (r2, t2, c2) = (rcu.clone(), t.clone(), cell.clone());
                            rcu.call(move || reentrant_callback(r2, t2, c2, 0));
                        } else {
                            let v = Val::new(&t);
                            rcu.call_hurry(move || drop(v));
                        }
                    }
                    _ => {
                        // Retire inside a section: must not block.
                        let g = rcu.read_lock();
                        rcu.defer_drop(Val::new(&t));
                        cell.store(Val::new(&t));
                        drop(g);
                    }
                }
            }
        }));
    }

    // Map and cache writer.
    {
        let (rcu, map, cache, stop, t, hoard) = (
            rcu.clone(),
            map.clone(),
            cache.clone(),
            stop.clone(),
            t.clone(),
            hoard.clone(),
        );
        handles.push(thread::spawn(move || {
            let mut k = 7u64;
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) && !t.full() {
                i += 1;
                istress::step(&mut k);
                let key = (k >> 33) % 256;
                match i % 10 {
                    0 | 1 => {
                        map.insert(key, Val::unboxed(&t));
                    }
                    2 => {
                        map.remove(&key);
                    }
                    3 => {
                        map.update(key, |old| {
                            if let Some(o) = old {
                                o.check();
                            }
                            (i % 3 != 0).then(|| Val::unboxed(&t))
                        });
                    }
                    4 => {
                        let g = rcu.read_lock();
                        let v = map.get_or_insert_with(key, || Val::unboxed(&t), &g);
                        v.check();
                    }
                    5 => {
                        map.remove_if(&key, |v| v.id % 2 == 0);
                    }
                    6 | 7 => {
                        cache.insert((k >> 20) % 512, Val::unboxed(&t));
                    }
                    8 => {
                        if i % 500 == 8 {
                            map.clear();
                        } else {
                            cache.remove(&((k >> 20) % 512));
                        }
                    }
                    _ => {
                        let g = rcu.read_lock();
                        let v = cache.get_or_insert_with((k >> 20) % 512, || Val::unboxed(&t), &g);
                        v.check();
                        drop(g);
                        hoard.vals.lock().unwrap().push(Val::unboxed(&t));
                    }
                }
            }
        }));
    }

    // Pressure flapper (about 1 kHz) and cache pressure events.
    {
        let (rcu, stop) = (rcu.clone(), stop.clone());
        handles.push(thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let g = if i % 2 == 0 {
                    rcu.pressure_start_all()
                } else {
                    rcu.pressure_start(0)
                };
                thread::sleep(Duration::from_micros(500));
                drop(g);
                thread::sleep(Duration::from_micros(500));
                if i % 50 == 0 {
                    let _ = events.send(if i % 100 == 0 {
                        Level::Critical
                    } else {
                        Level::Medium
                    });
                }
            }
        }));
    }

    // Controller: every way to wait or run callbacks.
    {
        let (rcu, stop, reclaimer, budget) =
            (rcu.clone(), stop.clone(), reclaimer.clone(), budget.clone());
        handles.push(thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                match i % 9 {
                    0 => rcu.barrier(),
                    1 => rcu.synchronize(),
                    2 => {
                        let c = rcu.start_poll();
                        while !rcu.poll(&c) {
                            thread::yield_now();
                        }
                    }
                    3 => {
                        let c = rcu.get_state();
                        rcu.cond_synchronize(c);
                    }
                    4 => {
                        let p = (i / 9 % 13) as u8;
                        let _ = rcu.run_callbacks(&NodeMask::all(), p);
                        let _ = rcu.run_callbacks_for(&NodeMask::node(0), p, 10);
                    }
                    5 => {
                        let _ = rcu.collect();
                    }
                    6 => {
                        let _ = reclaimer.reclaim(4096, &NodeMask::all());
                    }
                    7 => {
                        let _ = budget.check();
                        let _ = reclaimer.shrink((i % 13) as u8);
                    }
                    _ => rcu.synchronize_expedited(),
                }
                let _ = rcu.stats();
                let _ = rcu.pending_bytes();
            }
        }));
    }

    // Sampler: counts never wrap below zero (a wrapped usize is huge).
    {
        let (rcu, stop) = (rcu.clone(), stop.clone());
        handles.push(thread::spawn(move || {
            const SANE: usize = 1 << 40;
            while !stop.load(Ordering::Relaxed) {
                let (n, b) = (rcu.pending(), rcu.pending_bytes());
                assert!(n < SANE && b < SANE, "pending {n}, pending_bytes {b}");
                let s = rcu.stats();
                assert!(s.pending < SANE && s.pending_bytes < SANE, "{s:?}");
                for sh in &s.shards {
                    assert!(sh.pending < SANE && sh.pending_bytes < SANE, "{sh:?}");
                }
                let (pn, pb) = rcu.pending_on(&NodeMask::all());
                assert!(pn < SANE && pb < SANE, "pending_on {pn} {pb}");
                assert!(rcu.pressure() < 1000, "pressure {}", rcu.pressure());
                thread::sleep(Duration::from_micros(50));
            }
        }));
    }
    istress::storm_then_join(&stop, handles);
    budget_on.store(false, Ordering::SeqCst);
    println!(
        "{what}: {} values, {} reads",
        t.next.load(Ordering::Relaxed),
        reads.load(Ordering::Relaxed)
    );
    // The cache's monitor may still be acting on an event the flapper sent
    // (a shrink retires entries): wait for it, then let reentrant
    // callbacks, which may queue more after one barrier, settle.
    drained.wait();
    for _ in 0..10 {
        rcu.barrier();
    }
    assert_eq!(rcu.pending(), 0, "{what}: pending after barrier");
    assert_eq!(
        rcu.pending_bytes(),
        0,
        "{what}: pending_bytes after barrier"
    );
    {
        let g = rcu.read_lock();
        assert_eq!(map.iter(&g).count(), map.len(), "{what}: map len vs iter");
        let per = 128 + RcuCache::<u64, Val>::ENTRY_OVERHEAD;
        assert_eq!(
            cache.bytes(),
            cache.len() * per,
            "{what}: cache bytes vs len"
        );
        assert!(cache.bytes() <= cache.max_bytes(), "{what}: cache over max");
    }
    drop(cells);
    drop(map);
    drop(cache);
    drop(budget);
    drop(reclaimer);
    drop(hoard);
    for _ in 0..4 {
        rcu.barrier();
    }
    assert_eq!(rcu.pending(), 0, "{what}: pending at the end");
    assert_eq!(rcu.pending_bytes(), 0, "{what}: pending_bytes at the end");
    let s = rcu.stats();
    assert_eq!(s.pending, 0);
    assert_eq!(s.pending_bytes, 0);
    assert_eq!(s.callback_panics, 0);
    drop(rcu);
    t.check_all_dropped(what);
}

#[test]
fn mixed_storm_memb() {
    mixed_storm(Config::new(), "memb");
}

#[test]
fn mixed_storm_mb() {
    mixed_storm(Config::new().flavor(Flavor::Mb), "mb");
}

#[test]
fn mixed_storm_memb_on_demand_retiring_frees() {
    mixed_storm(
        Config::new()
            .on_demand()
            .retiring_thread_frees(true)
            .lazy_delay(Duration::from_millis(1)),
        "memb on-demand",
    );
}

#[test]
fn mixed_storm_tiny_marks() {
    mixed_storm(
        Config::new()
            .qhimark(8)
            .qlowmark(2)
            .qovld(16)
            .blimit(1)
            .lazy_batch(1),
        "tiny marks",
    );
}

/// Several domains at once: callbacks of one queue into another, domains
/// are created and dropped (with work queued, under pressure) while other
/// threads hold clones and guards of other domains.
#[test]
fn many_domains() {
    let t = Tracker::new();
    let stop = Arc::new(AtomicBool::new(false));
    let long: Vec<Rcu> = vec![
        Rcu::new(Config::new()).unwrap(),
        Rcu::new(Config::new().flavor(Flavor::Mb)).unwrap(),
        Rcu::new(Config::new().on_demand()).unwrap(),
    ];
    let long = Arc::new(long);
    let made = Arc::new(AtomicUsize::new(0));
    let mut handles = vec![];
    for w in 0..3u64 {
        let (long, stop, t, made) = (long.clone(), stop.clone(), t.clone(), made.clone());
        handles.push(thread::spawn(move || {
            let mut i = w;
            while !stop.load(Ordering::Relaxed) && !t.full() {
                i += 1;
                // A short-lived domain, shared with a helper thread.
                let flavor = if i % 2 == 0 { Flavor::Mb } else { Flavor::Memb };
                let d = Rcu::new(Config::new().flavor(flavor)).unwrap();
                made.fetch_add(1, Ordering::Relaxed);
                let cell = Arc::new(RcuCell::new_in(&d, Some(Val::new(&t))));
                let pressure = d.pressure_start_all();
                let helper = {
                    let (d, long, t, cell) = (d.clone(), long.clone(), t.clone(), cell.clone());
                    thread::spawn(move || {
                        let other = &long[(i % 3) as usize];
                        let g_other = other.read_lock();
                        for k in 0..100 {
                            let g = d.read_lock();
                            if let Some(v) = cell.load(&g) {
                                v.check();
                            }
                            drop(g);
                            cell.store(Val::new(&t));
                            let v = Val::new(&t);
                            let o2 = other.clone();
                            let t2 = t.clone();
                            // Cross-domain: a callback of `d` queues into `other`.
                            d.call(move || {
                                drop(v);
                                o2.defer_drop(Val::new(&t2));
                            });
                            if k % 10 == 0 {
                                other.defer_drop(Val::new(&t));
                            }
                        }
                        drop(g_other);
                        // Drops its clone of `d` (maybe the last) while work is queued.
                        drop(d);
                    })
                };
                for _ in 0..50 {
                    d.defer_drop(Val::new(&t));
                    let v = Val::new(&t);
                    let o = long[((i + 1) % 3) as usize].clone();
                    d.call(move || {
                        drop(v);
                        o.call(|| {});
                    });
                }
                if i % 3 == 0 {
                    d.synchronize();
                }
                drop(pressure);
                // The cell (its value retired on drop) and this handle go
                // while the helper may still run.
                drop(d);
                helper.join().unwrap();
                drop(cell);
            }
        }));
    }
    {
        let (long, stop, t) = (long.clone(), stop.clone(), t.clone());
        handles.push(thread::spawn(move || {
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) && !t.full() {
                i += 1;
                let d = &long[i % 3];
                match i % 4 {
                    0 => d.barrier(),
                    1 => d.synchronize(),
                    2 => {
                        let _g = d.pressure_start_all();
                        let _ = d.run_callbacks(&NodeMask::all(), 0);
                    }
                    _ => {
                        // A guard of one domain while another waits.
                        let _g = long[(i + 1) % 3].read_lock();
                        let _ = d.start_poll();
                    }
                }
            }
        }));
    }
    istress::storm_then_join(&stop, handles);
    println!(
        "domains: {} made, {} values",
        made.load(Ordering::Relaxed),
        t.next.load(Ordering::Relaxed)
    );
    for _ in 0..3 {
        for d in long.iter() {
            d.barrier();
        }
    }
    for d in long.iter() {
        assert_eq!(d.pending(), 0);
        assert_eq!(d.pending_bytes(), 0);
    }
    drop(long);
    t.check_all_dropped("domains");
}

/// A synthetic NUMA topology, threads hopping CPUs (and so shards and nodes)
/// between and around retires, per-node pressure and per-node
/// `run_callbacks`: per-node and per-CPU counts return to 0, and bytes are
/// freed exactly once.
#[test]
fn numa_cpu_hopping() {
    use rcu_reclaim::topology::{override_current_cpu, Topology};
    let rcu = Rcu::new(Config::new().topology(Topology::synthetic(3, 2))).unwrap();
    let t = Tracker::new();
    let stop = Arc::new(AtomicBool::new(false));
    let booked = Arc::new(AtomicU64::new(0));
    let cell = Arc::new(RcuCell::new_in(&rcu, Some(Val::new(&t))));
    let before = rcu.stats();
    let mut handles = vec![];
    for w in 0..3u64 {
        let (rcu, stop, t, booked, cell) = (
            rcu.clone(),
            stop.clone(),
            t.clone(),
            booked.clone(),
            cell.clone(),
        );
        handles.push(thread::spawn(move || {
            let mut i = w;
            let mut b = 0u64;
            while !stop.load(Ordering::Relaxed) && !t.full() {
                istress::step(&mut i);
                let r = i >> 33;
                override_current_cpu(match r % 8 {
                    7 => None,
                    c => Some(c as usize), // 6 is out of range: wraps
                });
                let size = (r % 3000) as usize;
                match r % 5 {
                    0 => rcu.defer_drop_sized(Val::new(&t), size),
                    1 => {
                        let v = Val::new(&t);
                        rcu.call_sized(move || drop(v), size);
                    }
                    2 => {
                        let g = rcu.read_lock();
                        if let Some(v) = cell.load(&g) {
                            v.check();
                        }
                        rcu.defer_drop_sized(Val::new(&t), size);
                    }
                    3 => {
                        cell.store_weighed(Val::new(&t), |_| size);
                    }
                    _ => {
                        if r % 100 == 4 {
                            let _ = rcu.collect();
                        }
                        continue;
                    }
                }
                b += size as u64;
            }
            override_current_cpu(None);
            booked.fetch_add(b, Ordering::Relaxed);
        }));
    }
    {
        let (rcu, stop) = (rcu.clone(), stop.clone());
        handles.push(thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let node = (i % 4) as usize; // 3: out of range
                let p = rcu.pressure_start(node);
                let mask = NodeMask::node(node % 3).with((node + 1) % 3);
                let _ = rcu.pending_on(&mask);
                let _ = rcu.run_callbacks(&mask, (i % 13) as u8);
                let _ = rcu.run_callbacks_for(&NodeMask::node(node % 3), 0, 3);
                for c in 0..6 {
                    let _ = rcu.pending_bytes_on_cpu(c);
                }
                thread::sleep(Duration::from_micros(300));
                drop(p);
                if i % 20 == 0 {
                    rcu.barrier();
                }
            }
        }));
    }
    istress::storm_then_join(&stop, handles);
    // The cell's last value books its weigher's size when the cell drops?
    // It is dropped with the cell; count it apart.
    rcu.barrier();
    for n in 0..3 {
        assert_eq!(rcu.pending_on_node(n), 0, "node {n}");
        assert_eq!(rcu.pending_bytes_on_node(n), 0, "node {n}");
    }
    for c in 0..6 {
        assert_eq!(rcu.pending_on_cpu(c), 0, "cpu {c}");
        assert_eq!(rcu.pending_bytes_on_cpu(c), 0, "cpu {c}");
    }
    let after = rcu.stats();
    assert_eq!(after.pending_bytes, 0);
    assert_eq!(
        after.bytes_freed - before.bytes_freed,
        booked.load(Ordering::Relaxed)
    );
    drop(cell);
    rcu.barrier();
    assert_eq!(rcu.pending(), 0);
    drop(rcu);
    t.check_all_dropped("numa");
}

/// Domains whose last handles live in each other's callbacks (and in their
/// own): every value is still dropped once, without a barrier from outside,
/// and nothing hangs.
#[test]
fn last_handles_dropped_inside_callbacks() {
    let t = Tracker::new();
    let rounds = 200;
    for i in 0..rounds {
        let cfg = || {
            Config::new()
                .lazy_delay(Duration::from_millis(1))
                .flavor(if i % 2 == 0 { Flavor::Memb } else { Flavor::Mb })
        };
        let a = Rcu::new(cfg()).unwrap();
        let b = Rcu::new(cfg()).unwrap();
        let cell_a = Arc::new(RcuCell::new_in(&a, Some(Val::new(&t))));
        for k in 0..20 {
            a.defer_drop(Val::new(&t));
            b.defer_drop(Val::new(&t));
            let (b2, t2, c2) = (b.clone(), t.clone(), cell_a.clone());
            let v = Val::new(&t);
            a.call(move || {
                drop(v);
                // Queues into the other domain, then drops (maybe) its last handle.
                b2.defer_drop(Val::new(&t2));
                c2.store(Val::new(&t2));
                if k % 2 == 0 {
                    let _ = b2.start_poll();
                }
                drop(b2);
                drop(c2);
            });
            let (a2, t2) = (a.clone(), t.clone());
            let v = Val::new(&t);
            b.call(move || {
                drop(v);
                a2.defer_drop(Val::new(&t2));
                let inner = a2.clone();
                let t3 = t2.clone();
                // The last handle of `a` may be this nested callback's.
                a2.call(move || {
                    inner.defer_drop(Val::new(&t3));
                    drop(inner);
                });
            });
        }
        let p = (i % 3 == 0).then(|| a.pressure_start_all());
        if i % 4 == 0 {
            // Another thread holds the last handle of `b` and drops it
            // while `a`'s callbacks still hold clones.
            let b3 = b.clone();
            thread::spawn(move || {
                let _g = b3.read_lock();
            })
            .join()
            .unwrap();
        }
        drop(cell_a);
        drop(p);
        drop(a);
        drop(b);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while t.live.load(Ordering::SeqCst) != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "{} values still live after 20 s",
            t.live.load(Ordering::SeqCst)
        );
        thread::sleep(Duration::from_millis(5));
    }
    t.check_all_dropped("callback handles");
}

#[test]
fn mixed_storm_no_membarrier() {
    mixed_storm(Config::new().simulate_no_membarrier(true), "no membarrier");
}

#[test]
fn mixed_storm_workers_and_topology() {
    use rcu_reclaim::topology::Topology;
    mixed_storm(
        Config::new()
            .topology(Topology::synthetic(2, 3))
            .worker_per_cpu(true)
            .stall_timeout(Duration::from_millis(2))
            .producer_window(Duration::from_micros(10)),
        "workers/topology",
    );
}

#[test]
fn mixed_storm_zero_knobs() {
    mixed_storm(
        Config::new()
            .lazy_delay(Duration::ZERO)
            .producer_window(Duration::ZERO)
            .stall_timeout(Duration::from_nanos(1))
            .lazy_batch(1)
            .qhimark(1)
            .qlowmark(0)
            .qovld(1)
            .blimit(1)
            .pace_bytes(1)
            .fast_min_bytes(0),
        "zero knobs",
    );
}

#[test]
fn mixed_storm_max_knobs() {
    mixed_storm(
        Config::new()
            .lazy_delay(Duration::MAX)
            .producer_window(Duration::MAX)
            .stall_timeout(Duration::MAX)
            .lazy_batch(usize::MAX)
            .qhimark(usize::MAX)
            .qlowmark(usize::MAX - 1)
            .qovld(usize::MAX)
            .blimit(usize::MAX)
            .pace_bytes(usize::MAX)
            .fast_min_bytes(usize::MAX)
            .retiring_thread_frees(true),
        "max knobs",
    );
}
