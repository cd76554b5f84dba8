//! The OOM handler is the caller's code: it runs with no reclaimer lock
//! held, so it may use the reclaimer, and it never recurses into reclaim.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier};
use std::thread;
use std::time::Duration;

use rcu_reclaim::pressure::NodeMask;
use rcu_reclaim::reclaim::{reclaim_allowed, Reclaimer};
use rcu_reclaim::{Config, Rcu};

/// Runs `f` on a thread and fails the test if it has not returned in `secs`.
fn within<R: Send + 'static>(secs: u64, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(secs))
        .expect("hung: the OOM handler waited for the reclaimer's lock")
}

#[test]
fn an_oom_handler_may_replace_itself() {
    within(20, || {
        let rcu = Rcu::new(Config::new().on_demand()).unwrap();
        let r = Arc::new(Reclaimer::new(&rcu));
        let first = Arc::new(AtomicUsize::new(0));
        let later = Arc::new(AtomicUsize::new(0));
        let (weak, f, l) = (Arc::downgrade(&r), first.clone(), later.clone());
        // A one-shot handler: the first OOM is reported, later ones counted.
        r.set_oom_handler(move |_| {
            f.fetch_add(1, Ordering::SeqCst);
            assert!(!reclaim_allowed(), "the handler runs marked no-reclaim");
            if let Some(r) = weak.upgrade() {
                let l = l.clone();
                r.set_oom_handler(move |_| {
                    l.fetch_add(1, Ordering::SeqCst);
                });
                let nested = r.reclaim(1 << 20, &NodeMask::all()).unwrap();
                assert!(nested.recursion_refused);
            }
        });
        assert!(r.reclaim(1 << 20, &NodeMask::all()).is_err());
        assert!(r.reclaim(1 << 20, &NodeMask::all()).is_err());
        assert_eq!(first.load(Ordering::SeqCst), 1);
        assert_eq!(later.load(Ordering::SeqCst), 1);
        assert_eq!(r.stats().ooms, 2);
    });
}

#[test]
fn oom_handlers_on_two_threads_run_concurrently() {
    within(20, || {
        let rcu = Rcu::new(Config::new().on_demand()).unwrap();
        let r = Arc::new(Reclaimer::new(&rcu));
        // Each handler waits for the other's: only possible if neither
        // holds a lock the other needs.
        let meet = Arc::new(Barrier::new(2));
        let m = meet.clone();
        r.set_oom_handler(move |_| {
            m.wait();
        });
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let r = r.clone();
                thread::spawn(move || r.reclaim(1 << 20, &NodeMask::all()).is_err())
            })
            .collect();
        for t in threads {
            assert!(t.join().unwrap());
        }
        assert_eq!(r.stats().ooms, 2);
    });
}

/// An OOM report whose shrinkers are all empty says the memory is held
/// outside them, and what to do: a new user's cache, emptied by a memory
/// hog in the same cgroup, read "shrinkers: RcuCache=0" and no more.
#[test]
fn an_oom_report_with_every_shrinker_empty_says_the_memory_is_elsewhere() {
    within(20, || {
        let rcu = Rcu::new(Config::new().on_demand()).unwrap();
        let r = Arc::new(Reclaimer::new(&rcu));
        let cache: rcu_reclaim::RcuCache<u32, Vec<u8>> =
            rcu_reclaim::RcuCache::builder().reclaimer(&r).build();
        r.set_oom_handler(|_| {});
        let err = r.reclaim(1 << 20, &NodeMask::all()).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("RcuCache=0"), "{text}");
        assert!(
            text.contains("every shrinker is empty: what holds the memory is outside them"),
            "{text}"
        );
        drop(cache);
    });
}
