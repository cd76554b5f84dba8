//! Library calls made from code the library runs: RCU callbacks and
//! deferred drops that wait for grace periods, collect, queue more work or
//! make and drop domains; values whose `Drop` writes to the map or cache
//! they were in; thread-local destructors that retire after the library's
//! own thread-locals are gone; QSBR registrations made inside callbacks
//! and map closures. Each runs on every flavor where it applies, under a
//! watchdog (a hang fails the test), and counts what ran and what was
//! dropped: nothing may be lost or run twice.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use rcu_reclaim::pressure::NodeMask;
use rcu_reclaim::{Config, Flavor, Rcu, RcuCache, RcuCell, RcuHashMap, ReclaimSize};

mod common;
use common::Counted;

const LIMIT: Duration = Duration::from_secs(30);

/// A domain whose callback panics are collected, and the collection.
fn hooked(config: Config) -> (Rcu, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let s2 = seen.clone();
    let rcu = Rcu::new(config.on_callback_panic(move |m| s2.lock().unwrap().push(m.to_string())))
        .unwrap();
    (rcu, seen)
}

/// The configurations each attack runs on.
fn configs() -> Vec<(&'static str, Config)> {
    vec![
        ("default", Config::new()),
        ("on_demand", Config::new().on_demand()),
        ("qsbr", Config::new().flavor(Flavor::Qsbr)),
        (
            "qsbr_on_demand",
            Config::new().flavor(Flavor::Qsbr).on_demand(),
        ),
        ("retiring_frees", Config::new().retiring_thread_frees(true)),
    ]
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < LIMIT, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A callback may wait for a grace period of its own domain (a worker, or
/// the thread running `barrier`, runs it outside any section): every form
/// of the wait returns, and the callback is not reported as panicking.
#[test]
fn a_callback_may_wait_for_a_grace_period_of_its_own_domain() {
    for (name, config) in configs() {
        common::within(LIMIT, name, move || {
            let (rcu, seen) = hooked(config);
            let ran = Arc::new(AtomicUsize::new(0));
            let (r, n) = (rcu.clone(), ran.clone());
            rcu.call(move || {
                r.synchronize();
                r.synchronize_expedited();
                let c = r.start_poll();
                r.cond_synchronize(c);
                assert!(r.poll(&c));
                n.fetch_add(1, Ordering::SeqCst);
            });
            rcu.barrier();
            assert_eq!(ran.load(Ordering::SeqCst), 1, "{name}");
            assert!(seen.lock().unwrap().is_empty(), "{name}: {seen:?}");
        });
    }
}

/// `collect`, `run_callbacks` and a pressure signal from inside a
/// callback neither hang nor run a callback twice or lose one.
#[test]
fn collecting_and_running_callbacks_from_a_callback_loses_nothing() {
    for (name, config) in configs() {
        common::within(LIMIT, name, move || {
            let (rcu, seen) = hooked(config);
            let ran = Arc::new(AtomicUsize::new(0));
            let count = |rcu: &Rcu, ran: &Arc<AtomicUsize>| {
                for _ in 0..50 {
                    let n = ran.clone();
                    rcu.call(move || {
                        n.fetch_add(1, Ordering::SeqCst);
                    });
                }
            };
            count(&rcu, &ran);
            let (r, n) = (rcu.clone(), ran.clone());
            rcu.call(move || {
                r.collect();
                r.run_callbacks(&NodeMask::all(), 0);
                r.run_callbacks_for(&NodeMask::all(), 0, 1 << 20);
                let _p = r.pressure_start_all();
                r.run_callbacks(&NodeMask::all(), 0);
                n.fetch_add(1, Ordering::SeqCst);
            });
            count(&rcu, &ran);
            rcu.barrier();
            assert_eq!(ran.load(Ordering::SeqCst), 101, "{name}");
            assert!(seen.lock().unwrap().is_empty(), "{name}: {seen:?}");
        });
    }
}

/// Callbacks that queue callbacks and deferred drops, five deep, and a
/// callback that makes a domain, queues drops in it and drops its last
/// handle (which hands the shutdown to a thread of its own): everything
/// runs once, and dropping the outer domain's last handle waits for none
/// of it to be lost.
#[test]
fn callbacks_that_queue_work_and_drop_domains_lose_nothing() {
    fn chain(r: Rcu, n: Arc<AtomicUsize>, depth: usize) {
        if depth == 0 {
            return;
        }
        let r2 = r.clone();
        r.call(move || {
            n.fetch_add(1, Ordering::SeqCst);
            r2.defer_drop(Box::new(Counted(n.clone())));
            chain(r2.clone(), n, depth - 1);
        });
    }
    for (name, config) in configs() {
        common::within(LIMIT, name, move || {
            let (rcu, seen) = hooked(config);
            let ran = Arc::new(AtomicUsize::new(0));
            chain(rcu.clone(), ran.clone(), 5);
            let n = ran.clone();
            rcu.call(move || {
                let inner = Rcu::new(Config::new()).unwrap();
                for _ in 0..10 {
                    inner.defer_drop(Box::new(Counted(n.clone())));
                }
                drop(inner);
            });
            for _ in 0..6 {
                rcu.barrier();
            }
            drop(rcu);
            // 5 calls, 5 deferred drops, 10 drops in the inner domain.
            wait_until(name, || ran.load(Ordering::SeqCst) >= 20);
            assert_eq!(ran.load(Ordering::SeqCst), 20, "{name}");
            assert!(seen.lock().unwrap().is_empty(), "{name}: {seen:?}");
        });
    }
}

/// A map value whose `Drop` (run by RCU after a grace period) inserts into,
/// removes from and clears the map it was in.
struct Writer {
    map: Weak<RcuHashMap<u32, Writer>>,
    key: u32,
    drops: Arc<AtomicUsize>,
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
        let Some(map) = self.map.upgrade() else {
            return;
        };
        if self.key < 1000 {
            let again = Writer {
                map: self.map.clone(),
                key: self.key + 1000,
                drops: self.drops.clone(),
            };
            map.insert(self.key + 1000, again);
            map.remove(&(self.key + 1));
            map.clear();
        }
    }
}

impl ReclaimSize for Writer {
    fn reclaim_size(&self) -> usize {
        std::mem::size_of::<Self>()
    }
}

#[test]
fn values_whose_drop_writes_to_their_own_map_are_each_dropped_once() {
    for (name, config) in configs() {
        if name.starts_with("qsbr") {
            continue; // the writers here are not registered: same as default
        }
        common::within(LIMIT, name, move || {
            let (rcu, seen) = hooked(config);
            let drops = Arc::new(AtomicUsize::new(0));
            let map = Arc::new(RcuHashMap::new_in(&rcu));
            for key in 0..200u32 {
                let map_ = Arc::downgrade(&map);
                let drops = drops.clone();
                map.insert(
                    key,
                    Writer {
                        map: map_,
                        key,
                        drops,
                    },
                );
            }
            for key in 0..200u32 {
                map.remove(&key);
            }
            rcu.barrier();
            rcu.barrier();
            drop(map);
            rcu.barrier();
            // Each of the 200 inserted one more, which a later drop's
            // clear (or the map's drop) removed.
            assert_eq!(drops.load(Ordering::SeqCst), 400, "{name}");
            assert!(seen.lock().unwrap().is_empty(), "{name}: {seen:?}");
        });
    }
}

/// A cache value whose `Drop` inserts into and removes from its cache
/// (it is dropped by RCU after an eviction, a removal or a clear).
struct CacheWriter(Weak<RcuCache<u32, CacheWriter>>, Arc<AtomicUsize>, u32);

impl Drop for CacheWriter {
    fn drop(&mut self) {
        self.1.fetch_add(1, Ordering::SeqCst);
        if let Some(cache) = self.0.upgrade() {
            if self.2 < 10_000 {
                let again = CacheWriter(self.0.clone(), self.1.clone(), self.2 + 10_000);
                cache.insert(self.2 + 10_000, again);
                cache.remove(&(self.2 + 1));
            }
        }
    }
}

impl ReclaimSize for CacheWriter {
    fn reclaim_size(&self) -> usize {
        100
    }
}

#[test]
fn cache_values_whose_drop_writes_to_their_cache_are_each_dropped_once() {
    common::within(LIMIT, "cache", || {
        let rcu = Rcu::new(Config::new()).unwrap();
        let drops = Arc::new(AtomicUsize::new(0));
        let cache: Arc<RcuCache<u32, CacheWriter>> =
            Arc::new(RcuCache::builder().rcu(&rcu).max_bytes(20_000).build());
        for k in 0..2000u32 {
            cache.insert(k, CacheWriter(Arc::downgrade(&cache), drops.clone(), k));
        }
        rcu.barrier();
        cache.clear();
        rcu.barrier();
        drop(cache);
        rcu.barrier();
        assert_eq!(drops.load(Ordering::SeqCst), 4000);
    });
}

thread_local! {
    static LATE: std::cell::RefCell<Option<Late>> = const { std::cell::RefCell::new(None) };
}

/// Kept in a thread-local set before the library's first use on the
/// thread, so destroyed after the library's thread-locals: its `Drop`
/// queues a callback, defers a drop, stores into a cell and reads.
struct Late(Rcu, Arc<AtomicUsize>, Arc<RcuCell<Counted>>);

impl Drop for Late {
    fn drop(&mut self) {
        let n = self.1.clone();
        self.0.call(move || {
            n.fetch_add(1, Ordering::SeqCst);
        });
        self.0.defer_drop(Box::new(Counted(self.1.clone())));
        self.2.store(Box::new(Counted(self.1.clone())));
        assert!(self.2.load(&self.0.read_lock()).is_some());
    }
}

#[test]
fn work_queued_by_a_late_thread_local_destructor_runs() {
    for (name, config) in configs() {
        common::within(LIMIT, name, move || {
            let rcu = Rcu::new(config).unwrap();
            let n = Arc::new(AtomicUsize::new(0));
            let cell = Arc::new(RcuCell::new_in(&rcu, Box::new(Counted(n.clone()))));
            let (r, n2, c2) = (rcu.clone(), n.clone(), cell.clone());
            std::thread::spawn(move || {
                LATE.with(|l| *l.borrow_mut() = Some(Late(r.clone(), n2.clone(), c2)));
                r.call(|| {});
                r.defer_drop(Box::new(Counted(n2)));
                drop(r.read_lock());
            })
            .join()
            .unwrap();
            rcu.barrier();
            // The thread's deferred drop; the destructor's callback,
            // deferred drop and replaced cell value.
            assert_eq!(n.load(Ordering::SeqCst), 4, "{name}");
            drop(cell);
            assert_eq!(n.load(Ordering::SeqCst), 5, "{name}");
        });
    }
}

/// On a QSBR domain, a guard section of an online registered thread is
/// its own: the thread's quiescent states do not end it, so a value read
/// under the guard stays allocated until the guard drops.
#[test]
fn a_guard_on_a_qsbr_thread_outlasts_its_quiescent_states() {
    common::within(LIMIT, "qsbr", || {
        let rcu = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
        let n = Arc::new(AtomicUsize::new(0));
        let cell = RcuCell::new_in(&rcu, Box::new(Counted(n.clone())));
        let mut thread = rcu.register_qsbr_thread();
        let guard = rcu.read_lock();
        let read = cell.load(&guard).unwrap();
        thread.quiescent_state();
        let (tx, rx) = mpsc::channel();
        std::thread::scope(|s| {
            s.spawn(|| {
                cell.store(Box::new(Counted(n.clone())));
                tx.send(rcu.start_poll()).unwrap();
            });
            let cookie = rx.recv().unwrap();
            for _ in 0..100 {
                thread.quiescent_state();
                std::thread::yield_now();
            }
            assert!(!rcu.poll(&cookie));
            assert_eq!(n.load(Ordering::SeqCst), 0);
            assert_eq!(read.0.load(Ordering::SeqCst), 0);
        });
        drop(guard);
        thread.synchronize();
        thread.offline_while(|| rcu.barrier());
        assert_eq!(n.load(Ordering::SeqCst), 1);
    });
}

/// A QSBR registration made and dropped inside a callback (on a worker)
/// and inside a map's `update` closure comes and goes without holding a
/// grace period up.
#[test]
fn qsbr_registrations_inside_callbacks_and_map_closures_come_and_go() {
    common::within(LIMIT, "qsbr", || {
        let rcu = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
        let ran = Arc::new(AtomicUsize::new(0));
        let (r, n) = (rcu.clone(), ran.clone());
        rcu.call(move || {
            let mut thread = r.register_qsbr_thread();
            thread.quiescent_state();
            drop(thread.thread_offline());
            let _online = r.register_qsbr_thread();
            n.fetch_add(1, Ordering::SeqCst);
        });
        rcu.barrier();
        let map = RcuHashMap::new_in(&rcu);
        map.insert(1u32, 1u32);
        map.update(1, |v| {
            let mut thread = rcu.register_qsbr_thread();
            thread.quiescent_state();
            v.map(|v| v + 1)
        });
        rcu.synchronize();
        rcu.barrier();
        assert_eq!(ran.load(Ordering::SeqCst), 1);
        assert_eq!(map.get(&1, &rcu.read_lock()), Some(&2));
    });
}
