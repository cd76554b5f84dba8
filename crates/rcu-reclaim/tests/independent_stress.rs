//! Independent stress: many APIs of one domain at once, with poison checks
//! (a dropped value is overwritten with a poison pattern; readers assert they
//! never see it) and exact drop counting (every value created is dropped
//! exactly once by the end; `pending()`/`pending_bytes()` are back to 0
//! after `barrier`).
//!
//! `RCU_ISTRESS_MS` sets the storm length per test (default 1200 ms).

mod common;
mod istress;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use istress::{storm_ms, Tracker, Val, CAPACITY};

use rcu_reclaim::pressure::NodeMask;
use rcu_reclaim::reclaim::{MemoryBudget, Reclaimer, Scanned, ShrinkControl, Shrinker};
use rcu_reclaim::sources::{Level, SyntheticSource};
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
    let rcu = match Rcu::new(config) {
        Ok(r) => r,
        Err(e) => {
            println!("skipped: {e}");
            return;
        }
    };
    let t = Tracker::new();
    let stop = Arc::new(AtomicBool::new(false));
    let cells: Arc<Vec<Arc<RcuCell<Val>>>> = Arc::new(
        (0..4)
            .map(|_| Arc::new(RcuCell::new_in(&rcu, Some(Val::new(&t)))))
            .collect(),
    );
    let map: Arc<RcuHashMap<u64, Val>> = Arc::new(RcuHashMap::with_capacity_in(4, &rcu));
    let reclaimer = Arc::new(Reclaimer::new(&rcu));
    let hoard = Arc::new(Hoard {
        rcu: rcu.clone(),
        vals: Mutex::new(Vec::new()),
    });
    reclaimer.register(hoard.clone());
    let live_for_budget = t.clone();
    let budget = Arc::new(MemoryBudget::new(64 << 10, reclaimer.clone(), move || {
        live_for_budget.live.load(Ordering::Relaxed) * std::mem::size_of::<Val>()
    }));
    let (events, source) = SyntheticSource::new();
    let cache: Arc<RcuCache<u64, Val>> = Arc::new(
        RcuCache::builder()
            .max_bytes(8 << 10)
            .rcu(&rcu)
            .reclaimer(&reclaimer)
            .budget(&budget)
            .pressure_source(Box::new(source))
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
                k = k
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
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
                k = k
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
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
    thread::sleep(storm_ms());
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().unwrap();
    }
    println!(
        "{what}: {} values, {} reads",
        t.next.load(Ordering::Relaxed),
        reads.load(Ordering::Relaxed)
    );
    // Reentrant callbacks may queue more after one barrier; settle.
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

/// Short-lived threads register, read, retire (leaving partly filled bulk
/// pages behind) and exit, while others run barrier/synchronize/collect and
/// flap pressure.
fn thread_churn(config: Config, what: &str) {
    let rcu = match Rcu::new(config) {
        Ok(r) => r,
        Err(e) => {
            println!("skipped: {e}");
            return;
        }
    };
    let t = Tracker::new();
    let stop = Arc::new(AtomicBool::new(false));
    let cells: Arc<Vec<Arc<RcuCell<Val>>>> = Arc::new(
        (0..4)
            .map(|_| Arc::new(RcuCell::new_in(&rcu, Some(Val::new(&t)))))
            .collect(),
    );
    let threads = Arc::new(AtomicUsize::new(0));
    let mut handles = vec![];
    for s in 0..3u64 {
        let (rcu, cells, stop, t, threads) = (
            rcu.clone(),
            cells.clone(),
            stop.clone(),
            t.clone(),
            threads.clone(),
        );
        handles.push(thread::spawn(move || {
            let mut i = s;
            while !stop.load(Ordering::Relaxed) && !t.full() {
                i = i
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let seed = i >> 33;
                let (rcu, cells, t) = (rcu.clone(), cells.clone(), t.clone());
                thread::spawn(move || {
                    let n = (seed % 300) as usize;
                    {
                        let g = rcu.read_lock();
                        for c in cells.iter() {
                            if let Some(v) = c.load(&g) {
                                v.check();
                            }
                        }
                        if seed % 5 == 0 {
                            // Retire while inside a section.
                            rcu.defer_drop(Val::new(&t));
                        }
                    }
                    for k in 0..n {
                        match (seed as usize + k) % 4 {
                            0 => rcu.defer_drop(Val::new(&t)),
                            1 => rcu.defer_drop_sized(Val::new(&t), 77),
                            2 => cells[k % 4].store(Val::new(&t)),
                            _ => {
                                let v = Val::new(&t);
                                rcu.call(move || drop(v));
                            }
                        }
                    }
                    match seed % 7 {
                        0 => rcu.synchronize(),
                        1 => {
                            let _ = rcu.collect();
                        }
                        2 => {
                            // Exit inside a raw section (ended at exit).
                            rcu.read_lock_raw();
                            rcu.defer_drop(Val::new(&t));
                        }
                        _ => {}
                    }
                })
                .join()
                .unwrap();
                threads.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    {
        let (rcu, cells, stop) = (rcu.clone(), cells.clone(), stop.clone());
        handles.push(thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let g = rcu.read_lock();
                for c in cells.iter() {
                    if let Some(v) = c.load(&g) {
                        v.check();
                    }
                }
                drop(g);
                thread::yield_now();
            }
        }));
    }
    {
        let (rcu, stop) = (rcu.clone(), stop.clone());
        handles.push(thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let p = (i % 4 == 0).then(|| rcu.pressure_start_all());
                match i % 5 {
                    0 => rcu.barrier(),
                    1 => rcu.synchronize(),
                    2 => {
                        let _ = rcu.collect();
                    }
                    3 => {
                        let _ = rcu.run_callbacks(&NodeMask::all(), (i % 13) as u8);
                    }
                    _ => thread::sleep(Duration::from_micros(300)),
                }
                drop(p);
            }
        }));
    }
    thread::sleep(storm_ms());
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().unwrap();
    }
    println!(
        "{what}: {} threads, {} values",
        threads.load(Ordering::Relaxed),
        t.next.load(Ordering::Relaxed)
    );
    rcu.barrier();
    assert_eq!(rcu.pending(), 0, "{what}: pending after barrier");
    assert_eq!(
        rcu.pending_bytes(),
        0,
        "{what}: pending_bytes after barrier"
    );
    drop(cells);
    rcu.barrier();
    assert_eq!(rcu.pending(), 0);
    assert_eq!(rcu.pending_bytes(), 0);
    drop(rcu);
    t.check_all_dropped(what);
}

#[test]
fn thread_churn_memb() {
    thread_churn(Config::new(), "memb");
}

#[test]
fn thread_churn_mb() {
    thread_churn(Config::new().flavor(Flavor::Mb), "mb");
}

#[test]
fn thread_churn_retiring_frees() {
    thread_churn(
        Config::new()
            .retiring_thread_frees(true)
            .lazy_delay(Duration::from_millis(2)),
        "retiring frees",
    );
}

/// QSBR: readers go online/offline, short-lived registered threads retire
/// and exit (online or offline), while grace periods and barriers run.
#[test]
fn qsbr_churn() {
    let rcu = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
    let t = Tracker::new();
    let stop = Arc::new(AtomicBool::new(false));
    let cells: Arc<Vec<Arc<RcuCell<Val>>>> = Arc::new(
        (0..4)
            .map(|_| Arc::new(RcuCell::new_in(&rcu, Some(Val::new(&t)))))
            .collect(),
    );
    let mut handles = vec![];
    for r in 0..2u64 {
        let (rcu, cells, stop) = (rcu.clone(), cells.clone(), stop.clone());
        handles.push(thread::spawn(move || {
            let mut th = rcu.register_qsbr_thread();
            let mut i = r;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                {
                    let g = th.read_lock();
                    for c in cells.iter() {
                        if let Some(v) = c.load(&g) {
                            v.check();
                        }
                    }
                }
                match i % 50 {
                    0 => th.offline_while(|| thread::sleep(Duration::from_micros(100))),
                    1 => {
                        let off = th.thread_offline();
                        thread::yield_now();
                        th = off.thread_online();
                    }
                    2 => th.synchronize(),
                    _ => th.quiescent_state(),
                }
            }
        }));
    }
    let churned = Arc::new(AtomicUsize::new(0));
    for s in 0..2u64 {
        let (rcu, cells, stop, t, churned) = (
            rcu.clone(),
            cells.clone(),
            stop.clone(),
            t.clone(),
            churned.clone(),
        );
        handles.push(thread::spawn(move || {
            let mut i = s;
            while !stop.load(Ordering::Relaxed) && !t.full() {
                i = i
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let seed = i >> 33;
                let (rcu, cells, t) = (rcu.clone(), cells.clone(), t.clone());
                thread::spawn(move || {
                    let mut th = rcu.register_qsbr_thread();
                    for k in 0..(seed % 200) as usize {
                        {
                            let g = th.read_lock();
                            if let Some(v) = cells[k % 4].load(&g) {
                                v.check();
                            }
                        }
                        match k % 3 {
                            0 => rcu.defer_drop(Val::new(&t)),
                            1 => cells[k % 4].store(Val::new(&t)),
                            _ => {
                                let v = Val::new(&t);
                                rcu.call(move || drop(v));
                            }
                        }
                        th.quiescent_state();
                    }
                    match seed % 4 {
                        0 => drop(th),
                        1 => drop(th.thread_offline()),
                        2 => th.offline_while(|| rcu.barrier()),
                        _ => {
                            let off = th.thread_offline();
                            rcu.synchronize();
                            drop(off);
                        }
                    }
                })
                .join()
                .unwrap();
                churned.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    {
        // An unregistered thread: waits and barriers.
        let (rcu, stop, t, cells) = (rcu.clone(), stop.clone(), t.clone(), cells.clone());
        handles.push(thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) && !t.full() {
                i += 1;
                let p = (i % 3 == 0).then(|| rcu.pressure_start_all());
                match i % 6 {
                    0 => rcu.barrier(),
                    1 => rcu.synchronize(),
                    2 => {
                        let c = rcu.start_poll();
                        rcu.cond_synchronize(c);
                    }
                    3 => cells[(i % 4) as usize].store(Val::new(&t)),
                    4 => {
                        let _ = rcu.run_callbacks(&NodeMask::all(), (i % 13) as u8);
                    }
                    _ => rcu.synchronize_expedited(),
                }
                drop(p);
            }
        }));
    }
    thread::sleep(storm_ms());
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().unwrap();
    }
    println!(
        "qsbr: {} threads, {} values",
        churned.load(Ordering::Relaxed),
        t.next.load(Ordering::Relaxed)
    );
    rcu.barrier();
    assert_eq!(rcu.pending(), 0);
    assert_eq!(rcu.pending_bytes(), 0);
    drop(cells);
    rcu.barrier();
    assert_eq!(rcu.pending(), 0);
    assert_eq!(rcu.pending_bytes(), 0);
    drop(rcu);
    t.check_all_dropped("qsbr");
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
    thread::sleep(storm_ms());
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().unwrap();
    }
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

/// Fork from a multi-threaded process while other threads retire; the
/// child uses the domain and checks its queue drains.
fn fork_while_retiring(flavor: Flavor) {
    let rcu = Rcu::new(Config::new().flavor(flavor)).unwrap();
    let t = Tracker::new();
    let stop = Arc::new(AtomicBool::new(false));
    let cell = Arc::new(RcuCell::new_in(&rcu, Some(Val::new(&t))));
    let mut handles = vec![];
    if flavor == Flavor::Qsbr {
        // Online QSBR readers, some of them online (mid-section) at the fork.
        for _ in 0..2 {
            let (rcu, stop, cell) = (rcu.clone(), stop.clone(), cell.clone());
            handles.push(thread::spawn(move || {
                let mut th = rcu.register_qsbr_thread();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    {
                        let g = th.read_lock();
                        if let Some(v) = cell.load(&g) {
                            v.check();
                        }
                    }
                    if i % 2 == 0 {
                        th.quiescent_state();
                    }
                    if i % 500 == 0 {
                        th.offline_while(|| thread::sleep(Duration::from_micros(100)));
                    }
                }
            }));
        }
    }
    for w in 0..3u64 {
        let (rcu, stop, t, cell) = (rcu.clone(), stop.clone(), t.clone(), cell.clone());
        handles.push(thread::spawn(move || {
            let mut i = w;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                match i % 5 {
                    0 => cell.store(Val::new(&t)),
                    1 => rcu.defer_drop(Val::new(&t)),
                    2 => {
                        let v = Val::new(&t);
                        rcu.call(move || drop(v));
                    }
                    3 => {
                        let g = rcu.read_lock();
                        if let Some(v) = cell.load(&g) {
                            v.check();
                        }
                        // Sometimes still inside at the fork.
                        if i % 1000 == 3 {
                            thread::sleep(Duration::from_micros(200));
                        }
                    }
                    _ => {
                        if i % 100 == 4 {
                            let _p = rcu.pressure_start_all();
                            rcu.synchronize();
                        }
                    }
                }
                if i % 256 == 0 {
                    thread::yield_now();
                }
            }
        }));
    }
    for round in 0..15 {
        thread::sleep(Duration::from_millis(20));
        let (rcu2, t2, cell2) = (rcu.clone(), t.clone(), cell.clone());
        let status = common::forked_child_status(&rcu, move || {
            for k in 0..2000 {
                match k % 3 {
                    0 => rcu2.defer_drop(Val::new(&t2)),
                    1 => cell2.store(Val::new(&t2)),
                    _ => {
                        let v = Val::new(&t2);
                        rcu2.call(move || drop(v));
                    }
                }
            }
            {
                let g = rcu2.read_lock();
                if let Some(v) = cell2.load(&g) {
                    v.check();
                }
            }
            rcu2.synchronize();
            rcu2.barrier();
            let (n, b, bad) = (
                rcu2.pending(),
                rcu2.pending_bytes(),
                t2.bad_drops.load(Ordering::SeqCst),
            );
            if (n, b, bad) != (0, 0, 0) {
                eprintln!("child: pending {n}, pending_bytes {b}, bad drops {bad}");
                let st = rcu2.stats();
                let shards: usize = st.shards.iter().map(|s| s.pending).sum();
                eprintln!(
                    "child: shards hold {shards}; live {}; registered {}",
                    t2.live.load(Ordering::SeqCst),
                    st.registered_readers
                );
                thread::sleep(Duration::from_millis(50));
                rcu2.barrier();
                eprintln!("child: after another barrier: pending {}", rcu2.pending());
                return false;
            }
            true
        });
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "round {round}: child status {status}"
        );
    }
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().unwrap();
    }
    rcu.barrier();
    assert_eq!(rcu.pending(), 0);
    drop(cell);
    rcu.barrier();
    assert_eq!(rcu.pending(), 0);
    assert_eq!(rcu.pending_bytes(), 0);
    drop(rcu);
    t.check_all_dropped("fork");
}

#[test]
fn fork_while_retiring_memb() {
    fork_while_retiring(Flavor::Memb);
}

#[test]
fn fork_while_retiring_mb() {
    fork_while_retiring(Flavor::Mb);
}

#[test]
fn fork_while_retiring_qsbr() {
    fork_while_retiring(Flavor::Qsbr);
}

/// `barrier` waits for every callback and deferred drop queued before it,
/// by this thread, while other threads retire, collect, run callbacks and
/// flap pressure (so pages move into other threads' drains and workers).
fn barrier_covers_everything(config: Config, what: &'static str) {
    let rcu = match Rcu::new(config) {
        Ok(r) => r,
        Err(e) => {
            println!("skipped: {e}");
            return;
        }
    };
    let t = Tracker::new();
    let stop = Arc::new(AtomicBool::new(false));
    let cell = Arc::new(RcuCell::new_in(&rcu, Some(Val::new(&t))));
    let barriers = Arc::new(AtomicUsize::new(0));
    let mut handles = vec![];
    for w in 0..3u64 {
        let (rcu, stop, t, cell, barriers) = (
            rcu.clone(),
            stop.clone(),
            t.clone(),
            cell.clone(),
            barriers.clone(),
        );
        handles.push(thread::spawn(move || {
            let mut round = w;
            while !stop.load(Ordering::Relaxed) && !t.full() {
                round += 1;
                let first = t.next.load(Ordering::Relaxed);
                let n = 1 + (round * 37 % 700) as usize;
                let queue = {
                    let (rcu, t) = (rcu.clone(), t.clone());
                    move || {
                        let mut mine = Vec::with_capacity(n);
                        for k in 0..n {
                            let v = Val::new(&t);
                            mine.push(v.id);
                            match (k + round as usize) % 5 {
                                0 | 1 => rcu.defer_drop(v),
                                2 => {
                                    rcu.call(move || drop(v));
                                }
                                3 => rcu.defer_drop_sized(v, 10),
                                _ => {
                                    if let Err(v) = rcu.try_defer_drop(v) {
                                        rcu.defer_drop(v);
                                    }
                                }
                            }
                        }
                        mine
                    }
                };
                // Every fourth round queues from a thread that exits at once
                // (its partly filled page is orphaned).
                let mine = if round % 4 == 0 {
                    thread::spawn(queue).join().unwrap()
                } else {
                    queue()
                };
                if round % 3 == 0 {
                    let _ = rcu.collect();
                }
                rcu.barrier();
                barriers.fetch_add(1, Ordering::Relaxed);
                for id in mine {
                    let s = t.states[id].load(Ordering::SeqCst);
                    assert_eq!(
                        s, 2,
                        "{what}: value {id} (of {n} queued from {first}) not dropped after \
                         barrier (state {s})"
                    );
                }
                if round % 7 == 0 {
                    cell.store(Val::new(&t));
                }
            }
        }));
    }
    {
        let (rcu, stop, t) = (rcu.clone(), stop.clone(), t.clone());
        handles.push(thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) && !t.full() {
                i += 1;
                let p = (i % 2 == 0).then(|| rcu.pressure_start_all());
                for _ in 0..20 {
                    rcu.defer_drop(Val::new(&t));
                }
                match i % 4 {
                    0 => {
                        let _ = rcu.collect();
                    }
                    1 => {
                        let _ = rcu.run_callbacks(&NodeMask::all(), (i % 13) as u8);
                    }
                    2 => {
                        let _ = rcu.run_callbacks_for(&NodeMask::all(), 0, 5);
                    }
                    _ => thread::sleep(Duration::from_micros(200)),
                }
                drop(p);
            }
        }));
    }
    thread::sleep(storm_ms());
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().unwrap();
    }
    println!(
        "{what}: {} barriers, {} values",
        barriers.load(Ordering::Relaxed),
        t.next.load(Ordering::Relaxed)
    );
    rcu.barrier();
    assert_eq!(rcu.pending(), 0);
    assert_eq!(rcu.pending_bytes(), 0);
    drop(cell);
    drop(rcu);
    t.check_all_dropped(what);
}

#[test]
fn barrier_covers_everything_memb() {
    barrier_covers_everything(Config::new(), "memb");
}

#[test]
fn barrier_covers_everything_retiring_frees() {
    barrier_covers_everything(
        Config::new()
            .retiring_thread_frees(true)
            .lazy_delay(Duration::from_millis(1)),
        "retiring frees",
    );
}

#[test]
fn barrier_covers_everything_qsbr() {
    barrier_covers_everything(Config::new().flavor(Flavor::Qsbr), "qsbr");
}

/// Exact accounting: every byte booked by `defer_drop_sized`/`call_sized`/
/// `defer_drop` from several threads (with pressure, run_callbacks and
/// collect racing) shows up exactly once in `bytes_freed`, and every entry
/// once in `invoked`.
fn exact_accounting(config: Config, what: &'static str) {
    let rcu = match Rcu::new(config) {
        Ok(r) => r,
        Err(e) => {
            println!("skipped: {e}");
            return;
        }
    };
    let t = Tracker::new();
    let stop = Arc::new(AtomicBool::new(false));
    let booked = Arc::new(AtomicU64::new(0));
    let entries = Arc::new(AtomicU64::new(0));
    let before = rcu.stats();
    let mut handles = vec![];
    for w in 0..3u64 {
        let (rcu, stop, t, booked, entries) = (
            rcu.clone(),
            stop.clone(),
            t.clone(),
            booked.clone(),
            entries.clone(),
        );
        handles.push(thread::spawn(move || {
            let mut i = w;
            let (mut b, mut e) = (0u64, 0u64);
            while !stop.load(Ordering::Relaxed) && !t.full() {
                i += 1;
                let size = (i * 7919 % 5000) as usize;
                match i % 6 {
                    0 => rcu.defer_drop_sized(Val::new(&t), size),
                    1 => {
                        let v = Val::new(&t);
                        rcu.call_sized(move || drop(v), size);
                    }
                    2 => {
                        rcu.defer_drop(Val::new(&t));
                        b += std::mem::size_of::<Val>() as u64;
                        e += 1;
                        continue;
                    }
                    3 => {
                        if let Err(v) = rcu.try_defer_drop_sized(Val::new(&t), size) {
                            drop(v);
                            continue;
                        }
                    }
                    4 => {
                        // Inside a section: a full page's fallback cannot wait.
                        let _g = rcu.read_lock();
                        rcu.defer_drop_sized(Val::new(&t), size);
                    }
                    _ => {
                        let v = Val::new(&t);
                        rcu.call_hurry(move || drop(v));
                        e += 1;
                        continue;
                    }
                }
                b += size as u64;
                e += 1;
                if i % 1000 == 0 {
                    let _ = rcu.collect();
                }
            }
            booked.fetch_add(b, Ordering::Relaxed);
            entries.fetch_add(e, Ordering::Relaxed);
        }));
    }
    {
        let (rcu, stop) = (rcu.clone(), stop.clone());
        handles.push(thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let p = rcu.pressure_start_all();
                thread::sleep(Duration::from_micros(400));
                let _ = rcu.run_callbacks(&NodeMask::all(), (i % 13) as u8);
                drop(p);
                thread::sleep(Duration::from_micros(400));
                if i % 10 == 0 {
                    rcu.barrier();
                }
            }
        }));
    }
    thread::sleep(storm_ms());
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().unwrap();
    }
    rcu.barrier();
    let after = rcu.stats();
    assert_eq!(after.pending, 0);
    assert_eq!(after.pending_bytes, 0);
    assert_eq!(
        after.bytes_freed - before.bytes_freed,
        booked.load(Ordering::Relaxed),
        "{what}: bytes freed vs booked"
    );
    assert_eq!(
        after.invoked - before.invoked,
        entries.load(Ordering::Relaxed),
        "{what}: invoked vs queued"
    );
    println!(
        "{what}: {} entries, {} bytes, {} fallback syncs",
        entries.load(Ordering::Relaxed),
        booked.load(Ordering::Relaxed),
        after.fallback_syncs
    );
    drop(rcu);
    t.check_all_dropped(what);
}

#[test]
fn exact_accounting_memb() {
    exact_accounting(Config::new(), "memb");
}

#[test]
fn exact_accounting_retiring_frees() {
    exact_accounting(Config::new().retiring_thread_frees(true), "retiring frees");
}

#[test]
fn exact_accounting_tiny_pages() {
    exact_accounting(
        Config::new()
            .qhimark(4)
            .qlowmark(1)
            .qovld(8)
            .lazy_batch(1)
            .pace_bytes(1),
        "tiny marks",
    );
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
                i = i
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
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
    thread::sleep(storm_ms());
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().unwrap();
    }
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

/// Poison test for the polled API on every flavor: a writer replaces values
/// and frees the old one after `Retired::is_safe`, `cond_synchronize` on its
/// cookie, or `poll` of a `get_state` cookie taken after the unlink; readers
/// (guards, raw sections, QSBR registrations) must never see a freed value.
fn polled_poison(flavor: Flavor) {
    let rcu = Rcu::new(Config::new().flavor(flavor)).unwrap();
    let t = Tracker::new();
    let stop = Arc::new(AtomicBool::new(false));
    let cells: Arc<Vec<RcuCell<Val>>> = Arc::new(
        (0..3)
            .map(|_| RcuCell::new_in(&rcu, Some(Val::new(&t))))
            .collect(),
    );
    let mut handles = vec![];
    for r in 0..2u64 {
        let (rcu, cells, stop) = (rcu.clone(), cells.clone(), stop.clone());
        handles.push(thread::spawn(move || {
            let mut n = r;
            if flavor == Flavor::Qsbr {
                let mut th = rcu.register_qsbr_thread();
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    {
                        let g = th.read_lock();
                        for c in cells.iter() {
                            if let Some(v) = c.load(&g) {
                                v.check();
                                std::hint::spin_loop();
                                v.check();
                            }
                        }
                    }
                    if n % 3 == 0 {
                        th.quiescent_state();
                    }
                    if n % 1000 == 0 {
                        th.offline_while(thread::yield_now);
                    }
                }
            } else {
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    if n % 5 == 0 {
                        rcu.read_lock_raw();
                        let g = rcu.read_lock();
                        let v = cells[(n % 3) as usize].load(&g).map(|v| v as *const Val);
                        drop(g);
                        // Still inside the raw section.
                        if let Some(v) = v {
                            // SAFETY: the raw section protects it.
                            unsafe { (*v).check() };
                        }
                        assert!(rcu.read_unlock_raw());
                    } else {
                        let g = rcu.read_lock();
                        for c in cells.iter() {
                            if let Some(v) = c.load(&g) {
                                v.check();
                                std::hint::spin_loop();
                                v.check();
                            }
                        }
                    }
                    if n % 256 == 0 {
                        thread::yield_now();
                    }
                }
            }
        }));
    }
    for w in 0..2u64 {
        let (rcu, cells, stop, t) = (rcu.clone(), cells.clone(), stop.clone(), t.clone());
        handles.push(thread::spawn(move || {
            let mut i = w;
            while !stop.load(Ordering::Relaxed) && !t.full() {
                i += 1;
                let old = cells[(i % 3) as usize].replace(Val::new(&t)).unwrap();
                let freed = match i % 4 {
                    0 => {
                        // The unlink's cookie starts nothing: ask for a grace period.
                        let _ = rcu.start_poll();
                        while !old.is_safe() {
                            thread::yield_now();
                        }
                        old.try_into_box()
                            .unwrap_or_else(|_| panic!("is_safe said so"))
                    }
                    1 => {
                        rcu.cond_synchronize(old.cookie());
                        old.try_into_box()
                            .unwrap_or_else(|_| panic!("cond_synchronize waited"))
                    }
                    2 => {
                        let c = rcu.get_state();
                        let mut spins = 0u64;
                        while !rcu.poll(&c) {
                            spins += 1;
                            if spins % 64 == 0 {
                                // get_state starts nothing: ask for one.
                                let _ = rcu.start_poll();
                            }
                            thread::yield_now();
                        }
                        // SAFETY: a grace period began after the unlink and ended.
                        unsafe { old.into_box_unchecked() }
                    }
                    _ => {
                        let c = rcu.start_poll();
                        rcu.cond_synchronize(c);
                        // SAFETY: as above.
                        unsafe { old.into_box_unchecked() }
                    }
                };
                drop(freed); // poisons
            }
        }));
    }
    thread::sleep(storm_ms());
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().unwrap();
    }
    println!("{flavor}: {} values", t.next.load(Ordering::Relaxed));
    drop(cells);
    rcu.barrier();
    drop(rcu);
    t.check_all_dropped("polled");
}

#[test]
fn polled_poison_memb() {
    polled_poison(Flavor::Memb);
}

#[test]
fn polled_poison_mb() {
    polled_poison(Flavor::Mb);
}

#[test]
fn polled_poison_qsbr() {
    polled_poison(Flavor::Qsbr);
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

/// A page allocator that refuses about half the requests.
struct FlakyPages {
    n: AtomicU64,
}

// SAFETY: every page it hands out comes from `SystemPageAllocator`.
unsafe impl rcu_reclaim::pages::PageAllocator for FlakyPages {
    fn allocate(&self, layout: std::alloc::Layout) -> Option<std::ptr::NonNull<u8>> {
        let n = self.n.fetch_add(1, Ordering::Relaxed);
        if (n.wrapping_mul(2654435761) >> 7) % 2 == 0 {
            return None;
        }
        rcu_reclaim::pages::SystemPageAllocator.allocate(layout)
    }
    unsafe fn deallocate(&self, ptr: std::ptr::NonNull<u8>, layout: std::alloc::Layout) {
        // SAFETY: forwarded from our caller; the page came from the system allocator.
        unsafe { rcu_reclaim::pages::SystemPageAllocator.deallocate(ptr, layout) }
    }
}

/// With page allocation failing half the time, every fallback (waiting
/// in place, a callback inside a section, `try_defer_drop` handing back)
/// keeps exact counts, `barrier` still covers everything, and readers never
/// see a freed value.
fn flaky_pages(config: Config, what: &'static str) {
    let pages = Arc::new(FlakyPages {
        n: AtomicU64::new(0),
    });
    let rcu = Rcu::new(config.page_allocator(pages)).unwrap();
    let t = Tracker::new();
    let stop = Arc::new(AtomicBool::new(false));
    let booked = Arc::new(AtomicU64::new(0));
    let entries = Arc::new(AtomicU64::new(0));
    let cells: Arc<Vec<RcuCell<Val>>> = Arc::new(
        (0..3)
            .map(|_| RcuCell::new_in(&rcu, Some(Val::new(&t))))
            .collect(),
    );
    let before = rcu.stats();
    let mut handles = vec![];
    for w in 0..3u64 {
        let (rcu, stop, t, booked, entries, cells) = (
            rcu.clone(),
            stop.clone(),
            t.clone(),
            booked.clone(),
            entries.clone(),
            cells.clone(),
        );
        handles.push(thread::spawn(move || {
            let mut i = w;
            let (mut b, mut e) = (0u64, 0u64);
            let mut mine = Vec::new();
            while !stop.load(Ordering::Relaxed) && !t.full() {
                i += 1;
                let size = (i * 131 % 2000) as usize;
                let v = Val::new(&t);
                mine.push(v.id);
                match i % 6 {
                    0 => rcu.defer_drop_sized(v, size),
                    1 => {
                        let g = rcu.read_lock();
                        if let Some(c) = cells[(i % 3) as usize].load(&g) {
                            c.check();
                        }
                        rcu.defer_drop_sized(v, size);
                    }
                    2 => match rcu.try_defer_drop_sized(v, size) {
                        Ok(()) => {}
                        Err(v) => {
                            drop(v);
                            continue;
                        }
                    },
                    3 => {
                        rcu.call_sized(move || drop(v), size);
                    }
                    4 => {
                        let old = cells[(i % 3) as usize].replace(v).unwrap();
                        mine.pop();
                        mine.push(old.id);
                        old.defer_drop_sized(size);
                    }
                    _ => {
                        if rcu.without_page_allocation_probe() {
                            b += 8;
                            e += 1;
                        }
                        rcu.defer_drop_sized(v, size);
                    }
                }
                b += size as u64;
                e += 1;
                if i % 200 == 0 {
                    rcu.barrier();
                    for id in mine.drain(..) {
                        assert_eq!(t.states[id].load(Ordering::SeqCst), 2, "{what}: {id}");
                    }
                }
            }
            booked.fetch_add(b, Ordering::Relaxed);
            entries.fetch_add(e, Ordering::Relaxed);
        }));
    }
    {
        let (rcu, cells, stop) = (rcu.clone(), cells.clone(), stop.clone());
        handles.push(thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let g = rcu.read_lock();
                for c in cells.iter() {
                    if let Some(v) = c.load(&g) {
                        v.check();
                    }
                }
                drop(g);
                if i % 100 == 0 {
                    let _p = rcu.pressure_start_all();
                    let _ = rcu.run_callbacks(&NodeMask::all(), (i % 13) as u8);
                }
            }
        }));
    }
    thread::sleep(storm_ms());
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().unwrap();
    }
    rcu.barrier();
    let after = rcu.stats();
    assert_eq!(after.pending, 0);
    assert_eq!(after.pending_bytes, 0);
    assert_eq!(
        after.bytes_freed - before.bytes_freed,
        booked.load(Ordering::Relaxed),
        "{what}: bytes"
    );
    assert_eq!(
        after.invoked - before.invoked,
        entries.load(Ordering::Relaxed),
        "{what}: entries"
    );
    println!(
        "{what}: {} entries, {} fallback syncs",
        entries.load(Ordering::Relaxed),
        after.fallback_syncs
    );
    drop(cells);
    drop(rcu);
    t.check_all_dropped(what);
}

trait Probe {
    fn without_page_allocation_probe(&self) -> bool;
}

impl Probe for Rcu {
    fn without_page_allocation_probe(&self) -> bool {
        rcu_reclaim::pages::without_page_allocation(|| self.try_defer_drop(Box::new(1u64)).is_ok())
    }
}

#[test]
fn flaky_pages_memb() {
    flaky_pages(Config::new(), "memb");
}

#[test]
fn flaky_pages_retiring_frees() {
    flaky_pages(Config::new().retiring_thread_frees(true), "retiring frees");
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
fn thread_churn_no_membarrier_tiny_stall() {
    thread_churn(
        Config::new()
            .simulate_no_membarrier(true)
            .stall_timeout(Duration::from_millis(1)),
        "no membarrier",
    );
}

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
    let (events, source) = SyntheticSource::new();
    let cache: Arc<RcuCache<u64, Val>> = Arc::new(
        RcuCache::builder()
            .max_bytes(48 << 10)
            .shards(shards)
            .rcu(&rcu)
            .pressure_source(Box::new(source))
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
                k = k
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
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
    thread::sleep(storm_ms());
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().unwrap();
    }
    // Let a shrink in flight (on the source's thread) finish.
    thread::sleep(Duration::from_millis(50));
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
    thread::sleep(storm_ms());
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().unwrap();
    }
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
                r = r
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
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
    thread::sleep(storm_ms());
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().unwrap();
    }
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

#[test]
fn barrier_covers_everything_zero_knobs() {
    barrier_covers_everything(
        Config::new()
            .lazy_delay(Duration::ZERO)
            .producer_window(Duration::ZERO)
            .lazy_batch(1)
            .qhimark(1)
            .qlowmark(0)
            .blimit(1)
            .retiring_thread_frees(true),
        "zero knobs",
    );
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
                r = r
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
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
    thread::sleep(storm_ms());
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().unwrap();
    }
    drop(cache);
    rcu.barrier();
    drop(rcu);
    t.check_all_dropped("cache model");
}

/// Threads register, retire (filling pages and drains), and hand their slot
/// back with `unregister_thread` over and over, while others retire, run
/// barriers and flap pressure; every value queued before a thread's own
/// `barrier` has been dropped when it returns.
fn unregister_churn(config: Config, what: &'static str) {
    let rcu = Rcu::new(config).unwrap();
    let t = Tracker::new();
    let stop = Arc::new(AtomicBool::new(false));
    let cell = Arc::new(RcuCell::new_in(&rcu, Some(Val::new(&t))));
    let mut handles = vec![];
    for w in 0..3u64 {
        let (rcu, stop, t, cell) = (rcu.clone(), stop.clone(), t.clone(), cell.clone());
        handles.push(thread::spawn(move || {
            let mut round = w;
            while !stop.load(Ordering::Relaxed) && !t.full() {
                round += 1;
                rcu.register_thread();
                let n = (round * 53 % 2500) as usize;
                let mut mine = Vec::with_capacity(n);
                for k in 0..n {
                    let v = Val::new(&t);
                    mine.push(v.id);
                    match k % 3 {
                        0 => rcu.defer_drop(v),
                        1 => {
                            let g = rcu.read_lock();
                            if let Some(c) = cell.load(&g) {
                                c.check();
                            }
                            rcu.defer_drop_sized(v, 1);
                        }
                        _ => {
                            let old = cell.replace(v).unwrap();
                            mine.pop();
                            mine.push(old.id);
                            old.defer_drop();
                        }
                    }
                }
                assert!(rcu.unregister_thread(), "{what}: unregister refused");
                if round % 2 == 0 {
                    rcu.barrier();
                    for id in mine {
                        assert_eq!(
                            t.states[id].load(Ordering::SeqCst),
                            2,
                            "{what}: {id} not dropped after unregister + barrier"
                        );
                    }
                    // barrier registered us again: hand it back.
                    rcu.unregister_thread();
                }
            }
        }));
    }
    {
        let (rcu, stop) = (rcu.clone(), stop.clone());
        handles.push(thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let p = (i % 2 == 0).then(|| rcu.pressure_start_all());
                match i % 3 {
                    0 => rcu.barrier(),
                    1 => {
                        let _ = rcu.run_callbacks(&NodeMask::all(), (i % 13) as u8);
                    }
                    _ => thread::sleep(Duration::from_micros(300)),
                }
                drop(p);
            }
        }));
    }
    thread::sleep(storm_ms());
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().unwrap();
    }
    rcu.barrier();
    assert_eq!(rcu.pending(), 0);
    assert_eq!(rcu.pending_bytes(), 0);
    println!("{what}: {} values", t.next.load(Ordering::Relaxed));
    drop(cell);
    drop(rcu);
    t.check_all_dropped(what);
}

#[test]
fn unregister_churn_memb() {
    unregister_churn(Config::new(), "memb");
}

#[test]
fn unregister_churn_retiring_frees() {
    unregister_churn(
        Config::new()
            .retiring_thread_frees(true)
            .producer_window(Duration::from_millis(50)),
        "retiring frees",
    );
}

#[test]
fn unregister_churn_mb_lazy() {
    unregister_churn(
        Config::new()
            .flavor(Flavor::Mb)
            .lazy_delay(Duration::from_micros(100)),
        "mb lazy",
    );
}

/// Leaves the bombs' panics out of the output (the hook is process-wide:
/// every other panic still goes to the default hook).
fn silence_bombs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let msg = info.payload().downcast_ref::<&str>().copied().unwrap_or("");
            if !msg.contains("bomb") {
                default(info);
            }
        }));
    });
}

/// A value whose drop panics (after being counted as dropped).
struct Bomb(#[allow(dead_code)] Box<Val>, bool);

impl Drop for Bomb {
    fn drop(&mut self) {
        if self.1 {
            panic!("bomb");
        }
    }
}

impl rcu_reclaim::ReclaimSize for Bomb {
    const DROPS_ANYWHERE: bool = true;
    fn reclaim_size(&self) -> usize {
        64
    }
}

/// Callbacks and deferred drops panic now and then, on workers, in
/// barriers, in run_callbacks and on retiring threads: each panic is
/// reported once, no other callback is lost, every value is dropped once.
fn panic_storm(config: Config, what: &'static str) {
    silence_bombs();
    let hooked = Arc::new(AtomicU64::new(0));
    let h2 = hooked.clone();
    let rcu = Rcu::new(config.on_callback_panic(move |_| {
        h2.fetch_add(1, Ordering::Relaxed);
    }))
    .unwrap();
    let t = Tracker::new();
    let stop = Arc::new(AtomicBool::new(false));
    let bombs = Arc::new(AtomicU64::new(0));
    let mut handles = vec![];
    for w in 0..3u64 {
        let (rcu, stop, t, bombs) = (rcu.clone(), stop.clone(), t.clone(), bombs.clone());
        handles.push(thread::spawn(move || {
            let mut i = w;
            let mut b = 0u64;
            while !stop.load(Ordering::Relaxed) && !t.full() {
                i += 1;
                let boom = i % 97 == 0;
                b += u64::from(boom);
                match i % 4 {
                    0 => rcu.defer_drop(Box::new(Bomb(Val::new(&t), boom))),
                    1 => {
                        let v = Val::new(&t);
                        rcu.call(move || {
                            let _v = v;
                            if boom {
                                panic!("callback bomb");
                            }
                        });
                    }
                    2 => rcu.defer_drop_sized(Box::new(Bomb(Val::new(&t), boom)), 10),
                    _ => {
                        let g = rcu.read_lock();
                        rcu.defer_drop(Box::new(Bomb(Val::new(&t), boom)));
                        drop(g);
                    }
                }
                if i % 500 == 0 {
                    rcu.barrier();
                }
            }
            bombs.fetch_add(b, Ordering::Relaxed);
        }));
    }
    {
        let (rcu, stop) = (rcu.clone(), stop.clone());
        handles.push(thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let _p = (i % 2 == 0).then(|| rcu.pressure_start_all());
                let _ = rcu.run_callbacks(&NodeMask::all(), (i % 13) as u8);
                let _ = rcu.collect();
                thread::sleep(Duration::from_micros(200));
            }
        }));
    }
    thread::sleep(storm_ms());
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().unwrap();
    }
    rcu.barrier();
    let s = rcu.stats();
    assert_eq!(s.pending, 0);
    assert_eq!(s.pending_bytes, 0);
    let b = bombs.load(Ordering::Relaxed);
    assert_eq!(s.callback_panics, b, "{what}: panics counted");
    assert_eq!(hooked.load(Ordering::Relaxed), b, "{what}: panics hooked");
    println!(
        "{what}: {} values, {b} bombs",
        t.next.load(Ordering::Relaxed)
    );
    drop(rcu);
    t.check_all_dropped(what);
}

#[test]
fn panic_storm_memb() {
    panic_storm(Config::new(), "memb");
}

#[test]
fn panic_storm_retiring_frees() {
    panic_storm(Config::new().retiring_thread_frees(true), "retiring frees");
}

#[test]
fn barrier_covers_everything_drains_flushed_at_once() {
    barrier_covers_everything(
        Config::new()
            .producer_window(Duration::ZERO)
            .lazy_delay(Duration::from_micros(200)),
        "drains flushed at once",
    );
}
