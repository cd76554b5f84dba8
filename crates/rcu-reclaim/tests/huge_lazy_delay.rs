//! A lazy delay too long to count in milliseconds (`Duration::MAX`: "only
//! when asked") is accepted by `Rcu::new`, and must not break the
//! grace-period thread.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use rcu_reclaim::{Config, Rcu};

mod common;
use common::CountedPlain as Plain;

/// A thread that stops retiring leaves its drain (ready values that drop
/// anywhere) for the grace-period thread, which computed when to take it
/// as `since + lazy_delay` in milliseconds: with `Duration::MAX` that
/// overflowed and the grace-period thread died (debug builds), so
/// `start_poll` never completed and `call_hurry` never ran.
#[test]
fn a_lazy_delay_of_duration_max_keeps_the_grace_period_thread_alive() {
    let rcu = Rcu::new(Config::new().lazy_delay(Duration::MAX)).unwrap();
    let freed = Arc::new(AtomicUsize::new(0));
    for i in 0..5000 {
        rcu.defer_drop(Box::new(Plain(freed.clone())));
        if i % 300 == 0 {
            rcu.synchronize();
        }
    }
    // The thread stops retiring: the grace-period thread looks at its drain.
    thread::sleep(Duration::from_millis(200));
    let cookie = rcu.start_poll();
    let start = Instant::now();
    while !rcu.poll(&cookie) && start.elapsed() < Duration::from_secs(10) {
        thread::sleep(Duration::from_millis(1));
    }
    assert!(rcu.poll(&cookie), "start_poll's grace period never ran");
    let (tx, rx) = mpsc::channel();
    rcu.call_hurry(move || tx.send(()).unwrap());
    rx.recv_timeout(Duration::from_secs(10))
        .expect("call_hurry's callback never ran");
    rcu.barrier();
    assert_eq!(freed.load(Ordering::SeqCst), 5000);
}
