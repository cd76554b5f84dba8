//! A `tracing` subscriber that panics on the library's error events (the
//! program's code, as a callback or a shrinker is). Where the library
//! reports a caught panic of the program's code, the subscriber's panic
//! must not undo the catch: the rest of a callback batch must still run,
//! the barrier that ran it return, its thread not stay marked as in a
//! callback, and a budget's background reclaimer go on.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcu_reclaim::{Config, Rcu};

fn install() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        tracing::subscriber::set_global_default(common::PanicsOn(tracing::Level::ERROR)).unwrap()
    });
}

/// Queues 1000 callbacks (the 11th panics), then two barriers on another
/// thread; returns whether each barrier returned (not panicked) within
/// 20 s, and how many callbacks ran.
fn run(rcu: &Rcu) -> (bool, bool, usize) {
    let ran = Arc::new(AtomicUsize::new(0));
    for i in 0..1000 {
        let r = ran.clone();
        rcu.call(move || {
            if i == 10 {
                panic!("callback panics (deliberate)");
            }
            r.fetch_add(1, Ordering::SeqCst);
        });
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let rcu2 = rcu.clone();
    std::thread::spawn(move || {
        let first = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| rcu2.barrier()));
        // A second barrier on the same thread: the first must not have left
        // it marked as running a callback.
        let second = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| rcu2.barrier()));
        let _ = tx.send((first.is_ok(), second.is_ok()));
    });
    let (first, second) = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the barriers hung");
    (first, second, ran.load(Ordering::SeqCst))
}

#[test]
fn a_panicking_subscriber_loses_no_callback() {
    install();
    let mut bad = Vec::new();
    for on_demand in [false, true] {
        let rcu = Rcu::new(if on_demand {
            Config::new().on_demand()
        } else {
            Config::new()
        })
        .unwrap();
        let got = run(&rcu);
        if got != (true, true, 999) {
            bad.push(format!(
                "on_demand {on_demand}: (first barrier ok, second barrier ok, ran) = {got:?}, \
                 want (true, true, 999)"
            ));
        }
        // Not dropped: with the bug its drop could hang on lost work.
        std::mem::forget(rcu);
    }
    assert!(bad.is_empty(), "{bad:#?}");
}

struct OnceFailing {
    fail_next: std::sync::atomic::AtomicBool,
    scans: AtomicUsize,
}
impl rcu_reclaim::reclaim::Shrinker for OnceFailing {
    fn count(&self, _: &rcu_reclaim::reclaim::ShrinkControl) -> usize {
        1000
    }
    fn scan(&self, ctl: &mut rcu_reclaim::reclaim::ShrinkControl) -> rcu_reclaim::reclaim::Scanned {
        self.scans.fetch_add(1, Ordering::SeqCst);
        if self.fail_next.swap(false, Ordering::SeqCst) {
            panic!("the shrinker panics once (deliberate)");
        }
        rcu_reclaim::reclaim::Scanned {
            freed: ctl.nr_to_scan(),
            bytes: 1 << 20,
        }
    }
}

/// The budget's background reclaimer reports a caught panic of the
/// program's code through `tracing`; a subscriber that panics there must
/// not end the thread (background reclaim for the budget's lifetime).
#[test]
fn a_panicking_subscriber_does_not_end_background_reclaim() {
    use rcu_reclaim::reclaim::{MemoryBudget, Reclaimer};
    install();
    let rcu = Rcu::new(Config::new()).unwrap();
    let reclaimer = Arc::new(Reclaimer::new(&rcu));
    let shrinker = Arc::new(OnceFailing {
        fail_next: std::sync::atomic::AtomicBool::new(true),
        scans: AtomicUsize::new(0),
    });
    reclaimer.register(shrinker.clone());
    let used = Arc::new(AtomicUsize::new(0));
    let u = used.clone();
    let budget = MemoryBudget::new(64 << 20, reclaimer, move || u.load(Ordering::SeqCst));
    // Between low (85 %) and min (95 %): only the background thread reclaims.
    used.store(56 << 20, Ordering::SeqCst);
    budget.check();
    let start = Instant::now();
    while shrinker.fail_next.load(Ordering::SeqCst) {
        assert!(start.elapsed() < Duration::from_secs(10), "never scanned");
        std::thread::sleep(Duration::from_millis(5));
    }
    // The panic happened; now it must keep answering requests.
    let scans = shrinker.scans.load(Ordering::SeqCst);
    let start = Instant::now();
    while shrinker.scans.load(Ordering::SeqCst) == scans {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "background reclaim stopped after the subscriber's panic: {:?}",
            budget.stats()
        );
        budget.check();
        std::thread::sleep(Duration::from_millis(10));
    }
    used.store(0, Ordering::SeqCst);
}
