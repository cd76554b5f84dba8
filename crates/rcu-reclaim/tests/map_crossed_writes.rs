//! Two threads that write each other's map from the closures the maps run
//! under a key's lock (`update`, `get_or_insert_with`, `remove_if`, a
//! cache's `get_or_insert_with`) each hold the lock the other waits for. A
//! nested write waits 2 s at most, then panics naming the lock-order
//! deadlock; the panic releases its thread's locks, so the other goes on
//! and both maps stay whole. Before, both threads hung, silently.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use rcu_reclaim::{RcuCache, RcuHashMap};

/// The message of a caught panic.
fn message(e: &(dyn std::any::Any + Send)) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// Runs `left` and `right` on two threads (each gets the barrier to meet
/// the other inside its closure); returns the panic messages.
fn crossed(
    left: impl FnOnce(&Barrier) + Send + 'static,
    right: impl FnOnce(&Barrier) + Send + 'static,
) -> Vec<String> {
    let meet = Arc::new(Barrier::new(2));
    let start = Instant::now();
    let spawn = |f: Box<dyn FnOnce(&Barrier) + Send>| {
        let meet = meet.clone();
        std::thread::spawn(move || catch_unwind(AssertUnwindSafe(|| f(&meet))).err())
    };
    let (l, r) = (spawn(Box::new(left)), spawn(Box::new(right)));
    let panics: Vec<String> = [l, r]
        .into_iter()
        .filter_map(|h| h.join().unwrap())
        .map(|e| message(&*e))
        .collect();
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "the crossed writes took {:?}",
        start.elapsed()
    );
    panics
}

fn assert_named(panics: &[String]) {
    assert!(
        !panics.is_empty(),
        "a crossed write deadlocks: one must panic"
    );
    for p in panics {
        assert!(
            p.contains("lock-order deadlock") && p.contains("after the outer call returns"),
            "the panic names the problem and the fix: {p}"
        );
    }
}

#[test]
fn maps_written_from_each_others_closures_panic_instead_of_hanging() {
    let a: Arc<RcuHashMap<u64, u64>> = Arc::new(RcuHashMap::new());
    let b: Arc<RcuHashMap<u64, u64>> = Arc::new(RcuHashMap::new());
    a.insert(1, 0);
    b.insert(1, 0);
    let (a1, b1, a2, b2) = (a.clone(), b.clone(), a.clone(), b.clone());
    let panics = crossed(
        move |meet| {
            a1.update(1, |v| {
                meet.wait();
                b1.insert(1, 10);
                v.map(|v| v + 1)
            });
        },
        move |meet| {
            b2.update(1, |v| {
                meet.wait();
                a2.insert(1, 20);
                v.map(|v| v + 1)
            });
        },
    );
    assert_named(&panics);
    // Both maps are whole and writable; a value of each is there.
    for m in [&a, &b] {
        let g = m.domain().read_lock();
        assert!(m.get(&1, &g).is_some());
        drop(g);
        m.insert(2, 2);
        assert_eq!(m.len(), 2);
    }
}

#[test]
fn caches_written_from_each_others_closures_panic_instead_of_hanging() {
    let a: Arc<RcuCache<u64, Vec<u8>>> = Arc::new(RcuCache::builder().max_bytes(1 << 20).build());
    let b: Arc<RcuCache<u64, Vec<u8>>> = Arc::new(RcuCache::builder().max_bytes(1 << 20).build());
    let (a1, b1, a2, b2) = (a.clone(), b.clone(), a.clone(), b.clone());
    let panics = crossed(
        move |meet| {
            let g = a1.domain().read_lock();
            let _ = a1.get_or_insert_with(
                7,
                || {
                    meet.wait();
                    b1.insert(7, vec![1; 64]);
                    vec![2; 64]
                },
                &g,
            );
        },
        move |meet| {
            let g = b2.domain().read_lock();
            let _ = b2.get_or_insert_with(
                7,
                || {
                    meet.wait();
                    a2.insert(7, vec![3; 64]);
                    vec![4; 64]
                },
                &g,
            );
        },
    );
    assert_named(&panics);
    for c in [&a, &b] {
        assert!(c.insert(8, vec![5; 64]));
        let g = c.domain().read_lock();
        assert!(c.get(&8, &g).is_some());
    }
}
