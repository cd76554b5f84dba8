//! Loom models of the read-side / grace-period protocol.
//!
//! ```text
//! RUSTFLAGS="--cfg loom" cargo test -p rcu-reclaim --release --test loom
//! ```
//!
//! Under loom the domain runs the mb flavor (loom cannot model `membarrier`):
//! the memb flavor is the same protocol with the reader's fences supplied by
//! the writer's `membarrier`, so the model covers the ordering argument of
//! both.
#![cfg(loom)]

use loom::sync::atomic::{AtomicU64, Ordering};
use loom::thread;
use rcu_reclaim::{Config, Rcu, RcuCell};

const POISON: u64 = u64::MAX;

struct Obj {
    value: AtomicU64,
}

impl Obj {
    fn boxed(v: u64) -> Box<Obj> {
        Box::new(Obj {
            value: AtomicU64::new(v),
        })
    }
}

/// A reader that started before `synchronize()` returned never observes the
/// object the writer poisons after it.
#[test]
fn reader_never_sees_an_object_poisoned_after_synchronize() {
    loom::model(|| {
        let rcu = Rcu::new(Config::new()).unwrap();
        let cell = loom::sync::Arc::new(RcuCell::new_in(&rcu, Some(Obj::boxed(1))));
        let (r, c) = (rcu.clone(), cell.clone());
        let reader = thread::spawn(move || {
            let g = r.read_lock();
            if let Some(obj) = c.load(&g) {
                let v = obj.value.load(Ordering::Relaxed);
                assert_ne!(
                    v, POISON,
                    "reader saw an object poisoned after its grace period"
                );
            }
            drop(g);
        });
        let old = cell.replace(Obj::boxed(2)).unwrap();
        rcu.synchronize();
        // SAFETY: a grace period elapsed after the unlink.
        let old = unsafe { old.into_box_unchecked() };
        old.value.store(POISON, Ordering::Relaxed);
        drop(old);
        reader.join().unwrap();
    });
}

/// The same with a polled cookie completed by another thread's grace period:
/// the freeing thread never ran one itself.
#[test]
fn polled_cookie_completed_by_another_thread_protects_readers() {
    loom::model(|| {
        let rcu = Rcu::new(Config::new()).unwrap();
        let cell = loom::sync::Arc::new(RcuCell::new_in(&rcu, Some(Obj::boxed(1))));
        let (r, c) = (rcu.clone(), cell.clone());
        let reader = thread::spawn(move || {
            let g = r.read_lock();
            if let Some(obj) = c.load(&g) {
                assert_ne!(obj.value.load(Ordering::Relaxed), POISON);
            }
        });
        let r2 = rcu.clone();
        let old = cell.replace(Obj::boxed(2)).unwrap();
        let gp = thread::spawn(move || r2.synchronize());
        if let Ok(old) = old.try_into_box() {
            // The other thread's grace period covered the unlink.
            old.value.store(POISON, Ordering::Relaxed);
        } else {
            gp.join().unwrap();
            reader.join().unwrap();
            return;
        }
        gp.join().unwrap();
        reader.join().unwrap();
    });
}

/// Poisons its object when dropped, as a free would.
struct PoisonOnDrop(loom::sync::Arc<Obj>);
rcu_reclaim::reclaim_size!(PoisonOnDrop {});

impl Drop for PoisonOnDrop {
    fn drop(&mut self) {
        self.0.value.store(POISON, Ordering::Relaxed);
    }
}

/// A retiring thread that drives grace periods itself (`try_advance` at
/// each page hand-off, never waiting) and frees what they made ready never
/// frees an object under a reader that could still hold it. `pace_bytes(1)`
/// hands each deferred object's page off at once; the second retire
/// completes the first's grace period if the reader allows it, then frees.
#[test]
fn grace_periods_driven_by_the_retiring_thread_protect_readers() {
    loom::model(|| {
        let rcu = Rcu::new(
            Config::new()
                .topology(rcu_reclaim::topology::Topology::synthetic(1, 1))
                .pace_bytes(1)
                .retiring_thread_frees(true),
        )
        .unwrap();
        let shared = loom::sync::Arc::new(Obj {
            value: AtomicU64::new(1),
        });
        let slot = loom::sync::Arc::new(loom::sync::atomic::AtomicBool::new(true));
        let (r, s, o) = (rcu.clone(), slot.clone(), shared.clone());
        let reader = thread::spawn(move || {
            let g = r.read_lock();
            // "Published" while the flag is set: the object may be read.
            if s.load(Ordering::Acquire) {
                assert_ne!(
                    o.value.load(Ordering::Relaxed),
                    POISON,
                    "a retiring thread freed an object under a reader"
                );
            }
            drop(g);
        });
        // Unlink, then retire; a second retire drives the grace period on.
        slot.store(false, Ordering::Release);
        rcu.defer_drop(Box::new(PoisonOnDrop(shared.clone())));
        rcu.defer_drop(Box::new(0u8));
        rcu.defer_drop(Box::new(0u8));
        reader.join().unwrap();
        rcu.barrier();
        assert_eq!(shared.value.load(Ordering::Relaxed), POISON);
    });
}

/// Nested sections: the grace period waits for the outermost unlock.
#[test]
fn nested_reader_is_protected_until_outermost_unlock() {
    loom::model(|| {
        let rcu = Rcu::new(Config::new()).unwrap();
        let cell = loom::sync::Arc::new(RcuCell::new_in(&rcu, Some(Obj::boxed(1))));
        let (r, c) = (rcu.clone(), cell.clone());
        let reader = thread::spawn(move || {
            let outer = r.read_lock();
            let seen = {
                let inner = r.read_lock();
                let p = c.load(&inner).map(|o| o as *const Obj);
                drop(inner);
                p
            };
            if let Some(p) = seen {
                // Still inside `outer`: the object must be intact.
                // SAFETY: `outer` keeps the object alive.
                let v = unsafe { (*p).value.load(Ordering::Relaxed) };
                assert_ne!(v, POISON);
            }
            drop(outer);
        });
        let old = cell.replace(Obj::boxed(2)).unwrap();
        let old = old.into_box();
        old.value.store(POISON, Ordering::Relaxed);
        reader.join().unwrap();
    });
}

mod callbacks {
    use super::*;
    use loom::sync::atomic::AtomicUsize;
    use loom::sync::Arc;
    use rcu_reclaim::topology::Topology;

    fn domain() -> Rcu {
        Rcu::new(Config::new().topology(Topology::synthetic(1, 1))).unwrap()
    }

    /// Each thread's barrier runs every callback that thread queued before
    /// it, whatever the other thread does meanwhile; at the end every
    /// callback has run exactly once.
    #[test]
    fn barrier_runs_what_was_queued_before_it_exactly_once() {
        loom::model(|| {
            let rcu = domain();
            let a = Arc::new(AtomicUsize::new(0));
            let b = Arc::new(AtomicUsize::new(0));
            let (r, a2) = (rcu.clone(), a.clone());
            let t = thread::spawn(move || {
                let a3 = a2.clone();
                r.call(move || {
                    a3.fetch_add(1, Ordering::Relaxed);
                });
                r.barrier();
                assert_eq!(a2.load(Ordering::Relaxed), 1);
            });
            let b2 = b.clone();
            rcu.call(move || {
                b2.fetch_add(1, Ordering::Relaxed);
            });
            rcu.barrier();
            assert_eq!(b.load(Ordering::Relaxed), 1);
            t.join().unwrap();
            rcu.barrier();
            assert_eq!(a.load(Ordering::Relaxed), 1);
            assert_eq!(b.load(Ordering::Relaxed), 1);
        });
    }

    struct Counted(Arc<AtomicUsize>);
    rcu_reclaim::reclaim_size!(Counted {});
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A barrier that steals a thread's bulk page while the owner is adding
    /// to it (the busy/steal handshake): nothing is lost or dropped twice,
    /// and loom checks the page is never accessed by both at once. (Thread
    /// exit is covered by the std tests: loom runs thread-local destructors
    /// outside its model.)
    #[test]
    fn stealing_a_page_from_a_busy_owner_loses_nothing() {
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = Some(3);
        builder.check(|| {
            let rcu = domain();
            let drops = Arc::new(AtomicUsize::new(0));
            let done = Arc::new(AtomicUsize::new(0));
            let (r, d, done2) = (rcu.clone(), drops.clone(), done.clone());
            let owner = thread::spawn(move || {
                r.defer_drop(Box::new(Counted(d.clone()))); // installs the page
                r.defer_drop(Box::new(Counted(d))); // fast path
                done2.store(1, Ordering::Release);
                // Stay alive: thread exit is modelled separately.
                while done2.load(Ordering::Acquire) != 2 {
                    thread::yield_now();
                }
            });
            rcu.barrier(); // races with the owner's pushes
            while done.load(Ordering::Acquire) != 1 {
                thread::yield_now();
            }
            rcu.barrier();
            assert_eq!(drops.load(Ordering::Relaxed), 2, "{:?}", rcu.stats());
            assert_eq!(rcu.pending(), 0);
            done.store(2, Ordering::Release);
            owner.join().unwrap();
        });
    }
}

mod map {
    use super::*;
    use loom::sync::Arc;
    use rcu_reclaim::topology::Topology;
    use rcu_reclaim::RcuHashMap;
    use std::collections::hash_map::DefaultHasher;
    use std::hash::BuildHasherDefault;

    /// A hasher without random keys: loom replays each execution.
    type Fixed = BuildHasherDefault<DefaultHasher>;

    fn map(rcu: &Rcu) -> Arc<RcuHashMap<u64, PoisonOnDrop, Fixed>> {
        Arc::new(RcuHashMap::with_capacity_and_hasher_in(
            0,
            Fixed::default(),
            rcu,
        ))
    }

    /// A reader that finds an entry while a writer removes it never sees
    /// its value dropped: the map retires it through the domain.
    #[test]
    fn a_removed_value_is_not_dropped_under_a_reader() {
        loom::model(|| {
            let rcu = Rcu::new(Config::new().topology(Topology::synthetic(1, 1))).unwrap();
            let shared = Arc::new(Obj {
                value: AtomicU64::new(1),
            });
            let map = map(&rcu);
            map.insert(1, PoisonOnDrop(shared.clone()));
            let (r, m) = (rcu.clone(), map.clone());
            let reader = thread::spawn(move || {
                let g = r.read_lock();
                if let Some(v) = m.get(&1, &g) {
                    assert_ne!(v.0.value.load(Ordering::Relaxed), POISON);
                }
            });
            assert!(map.remove(&1));
            rcu.barrier();
            assert_eq!(shared.value.load(Ordering::Relaxed), POISON);
            reader.join().unwrap();
        });
    }

    /// A key present throughout is found while another insert doubles the
    /// table (its dummies linked under the stripe locks, then published).
    #[test]
    fn a_present_key_is_found_while_the_table_doubles() {
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = Some(2);
        builder.check(|| {
            let rcu = Rcu::new(Config::new().topology(Topology::synthetic(1, 1))).unwrap();
            let shared = Arc::new(Obj {
                value: AtomicU64::new(1),
            });
            let map = map(&rcu);
            let before = map.capacity();
            for k in 0..before as u64 {
                map.insert(k, PoisonOnDrop(shared.clone()));
            }
            let (r, m) = (rcu.clone(), map.clone());
            let reader = thread::spawn(move || {
                let g = r.read_lock();
                for k in 0..before as u64 {
                    assert!(m.get(&k, &g).is_some(), "key {k} missed");
                }
            });
            map.insert(before as u64, PoisonOnDrop(shared.clone()));
            assert_eq!(map.capacity(), 2 * before);
            reader.join().unwrap();
        });
    }
}
