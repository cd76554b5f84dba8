//! Independent stress under the accounting allocator with an enforced,
//! tight budget: every allocation may run direct reclaim (shrinking caches,
//! running RCU callbacks, waiting for grace periods) in the middle of the
//! library's and the test's code. Nothing may deadlock, panic, free early or
//! lose a value.

mod istress;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use istress::{storm_ms, Tracker, Val};
use rcu_reclaim::pressure::NodeMask;
use rcu_reclaim::reclaim::{
    no_reclaim, AccountingAlloc, MemoryBudget, Reclaimer, Scanned, ShrinkControl, Shrinker,
};
use rcu_reclaim::{Config, Rcu, RcuCache, RcuCell, RcuHashMap};

#[global_allocator]
static ALLOC: AccountingAlloc = AccountingAlloc::system();

const MIB: usize = 1 << 20;

/// Values held for reclaim; scans retire them through RCU. Its lock is
/// only tried from a scan (the pusher may be allocating under it).
struct Hoard {
    rcu: Rcu,
    vals: Mutex<Vec<Val>>,
}

impl Shrinker for Hoard {
    fn count(&self, _: &ShrinkControl) -> usize {
        self.vals.try_lock().map_or(0, |v| v.len())
    }
    fn scan(&self, ctl: &mut ShrinkControl) -> Scanned {
        let taken: Vec<Val> = match self.vals.try_lock() {
            Ok(mut v) => {
                let n = ctl.nr_to_scan().min(v.len());
                let keep = v.len() - n;
                v.split_off(keep)
            }
            Err(_) => {
                ctl.stop();
                return Scanned::default();
            }
        };
        let n = taken.len();
        ctl.set_scanned(n);
        for val in taken {
            self.rcu.defer_drop(Box::new(val));
        }
        Scanned {
            freed: n,
            bytes: n * 256,
        }
    }
    fn frees_via_rcu(&self) -> bool {
        true
    }
}

#[test]
fn storm_under_direct_reclaim() {
    let t = Tracker::new(); // allocated before the base
    let rcu = Rcu::new(Config::new()).unwrap();
    let reclaimer = Arc::new(Reclaimer::new(&rcu));
    let hoard = Arc::new(Hoard {
        rcu: rcu.clone(),
        vals: Mutex::new(Vec::new()),
    });
    let hoard_id = reclaimer.register(hoard.clone());
    let base = AccountingAlloc::live_bytes();
    let limit = 12 * MIB;
    let budget = Arc::new(MemoryBudget::new(limit, reclaimer.clone(), move || {
        AccountingAlloc::live_bytes().saturating_sub(base)
    }));
    assert!(AccountingAlloc::enforce(budget.clone()).is_ok());

    let caches: Vec<Arc<RcuCache<u64, Vec<u8>>>> = (0..2)
        .map(|i| {
            Arc::new(
                RcuCache::builder()
                    .max_bytes(256 * MIB)
                    .shards(1 + i * 3)
                    .rcu(&rcu)
                    .budget(&budget)
                    .build(),
            )
        })
        .collect();
    let caches = Arc::new(caches);
    let map: Arc<RcuHashMap<u64, Val>> = Arc::new(RcuHashMap::with_capacity_in(1, &rcu));
    let cell = Arc::new(RcuCell::new_in(&rcu, Some(Val::new(&t))));
    let stop = Arc::new(AtomicBool::new(false));
    let inserted = Arc::new(AtomicU64::new(0));
    let mut handles = vec![];
    // Cache fillers: 4 KiB values, far past the budget.
    for w in 0..2u64 {
        let (caches, stop, inserted, rcu) =
            (caches.clone(), stop.clone(), inserted.clone(), rcu.clone());
        handles.push(thread::spawn(move || {
            let mut k = w;
            while !stop.load(Ordering::Relaxed) {
                k += 2;
                let c = &caches[(k % 2) as usize];
                c.insert(k % 100_000, vec![(k % 251) as u8; 4096]);
                if k % 16 == 0 {
                    let g = rcu.read_lock();
                    let key = k.wrapping_mul(2654435761) % 100_000;
                    if let Some(v) = c.get(&key, &g) {
                        assert!(v.iter().all(|&b| b == v[0]), "torn cache value");
                    }
                }
                if k % 64 == 0 {
                    let v = c
                        .get_or_insert_with(k % 977, || vec![7u8; 1000], &rcu.read_lock())
                        .len();
                    assert!(v == 1000 || v == 4096);
                }
                inserted.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // Map, cell, defer_drop, call, hoard.
    {
        let (rcu, map, cell, stop, t, hoard) = (
            rcu.clone(),
            map.clone(),
            cell.clone(),
            stop.clone(),
            t.clone(),
            hoard.clone(),
        );
        handles.push(thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) && !t.full() {
                i += 1;
                let key = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 52;
                match i % 8 {
                    0 | 1 => {
                        map.insert(key, Val::unboxed(&t));
                    }
                    2 => {
                        map.remove(&key);
                    }
                    3 => {
                        map.update(key, |_| Some(Val::unboxed(&t)));
                    }
                    4 => cell.store(Val::new(&t)),
                    5 => rcu.defer_drop(Val::new(&t)),
                    6 => {
                        let v = Val::new(&t);
                        let big = vec![1u8; 2048];
                        rcu.call_sized(
                            move || {
                                drop(v);
                                drop(big);
                            },
                            2048,
                        );
                    }
                    _ => {
                        let v = Val::unboxed(&t);
                        // Allocation under the hoard's lock must not reclaim
                        // into the hoard's own shrinker.
                        let mut held = hoard.vals.lock().unwrap();
                        no_reclaim(|| held.push(v));
                    }
                }
            }
        }));
    }
    // Readers.
    {
        let (rcu, map, cell, stop) = (rcu.clone(), map.clone(), cell.clone(), stop.clone());
        handles.push(thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let g = rcu.read_lock();
                if let Some(v) = cell.load(&g) {
                    v.check();
                }
                for (_, v) in map.iter(&g).take(32) {
                    v.check();
                }
                drop(g);
                thread::yield_now();
            }
        }));
    }
    // Waits and explicit reclaim.
    {
        let (rcu, stop, reclaimer) = (rcu.clone(), stop.clone(), reclaimer.clone());
        handles.push(thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                match i % 5 {
                    0 => rcu.barrier(),
                    1 => rcu.synchronize(),
                    2 => {
                        let _ = reclaimer.reclaim(MIB, &NodeMask::all());
                    }
                    3 => {
                        let _p = rcu.pressure_start_all();
                        let _ = rcu.run_callbacks(&NodeMask::all(), (i % 13) as u8);
                    }
                    _ => thread::sleep(Duration::from_millis(1)),
                }
            }
        }));
    }
    // A watchdog: a deadlock fails the test instead of hanging it.
    let done = Arc::new(AtomicBool::new(false));
    {
        let done = done.clone();
        thread::spawn(move || {
            for _ in 0..600 {
                thread::sleep(Duration::from_millis(100));
                if done.load(Ordering::Relaxed) {
                    return;
                }
            }
            eprintln!("watchdog: storm did not finish in 60 s (deadlock?)");
            std::process::abort();
        });
    }
    thread::sleep(storm_ms());
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().unwrap();
    }
    let s = budget.stats();
    println!(
        "{} cache inserts, {} values; budget: {:?}; peak {} MiB over base",
        inserted.load(Ordering::Relaxed),
        t.next.load(Ordering::Relaxed),
        s,
        AccountingAlloc::peak_bytes().saturating_sub(base) / MIB
    );
    // The caches unregister their shrinkers as they drop, and the hoard's
    // is unregistered here: each waits for a background reclaim pass still
    // scanning it, so nothing is retired after the barriers below.
    drop(caches);
    assert!(reclaimer.unregister(hoard_id));
    drop(map);
    drop(cell);
    rcu.barrier();
    hoard.vals.lock().unwrap().clear();
    rcu.barrier();
    assert_eq!(rcu.pending(), 0);
    done.store(true, Ordering::Relaxed);
    assert_eq!(t.bad_drops.load(Ordering::SeqCst), 0);
    assert_eq!(t.live.load(Ordering::SeqCst), 0);
}
