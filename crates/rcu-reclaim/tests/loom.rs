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
