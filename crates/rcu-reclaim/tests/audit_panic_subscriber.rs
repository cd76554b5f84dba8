//! Audit probe: a `tracing` subscriber that panics on the library's error
//! event for a panicking callback. The remaining callbacks must still run,
//! the worker must survive, and a later barrier must not hang or refuse.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rcu_reclaim::{Config, Rcu};

struct Panicky;
impl tracing::Subscriber for Panicky {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, e: &tracing::Event<'_>) {
        if *e.metadata().level() == tracing::Level::ERROR && !std::thread::panicking() {
            panic!("the subscriber panics on an error event (deliberate)");
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
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
    tracing::subscriber::set_global_default(Panicky).unwrap();
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
