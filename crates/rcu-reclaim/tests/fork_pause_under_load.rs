//! `prepare_fork` must return while other threads keep queueing callbacks:
//! a callback worker that always finds ready work must still park.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use rcu_reclaim::{Config, Rcu};

#[test]
fn prepare_fork_returns_while_callbacks_keep_coming() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let producers: Vec<_> = (0..2)
        .map(|_| {
            let rcu = rcu.clone();
            let stop = stop.clone();
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    // Each callback takes a while, but the worker keeps up: it
                    // always finds another ready batch, never an empty queue.
                    rcu.call(|| thread::sleep(Duration::from_micros(20)));
                    thread::sleep(Duration::from_micros(30));
                }
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(100));
    let (tx, rx) = mpsc::channel();
    let r = rcu.clone();
    thread::spawn(move || {
        let mut slowest = Duration::ZERO;
        for _ in 0..10 {
            let start = Instant::now();
            r.prepare_fork().parent();
            slowest = slowest.max(start.elapsed());
            thread::sleep(Duration::from_millis(20));
        }
        let _ = tx.send(slowest);
    });
    let slowest = rx.recv_timeout(Duration::from_secs(20));
    stop.store(true, Ordering::Relaxed);
    // A worker parks between batches; it used to run until it found no
    // ready work at all, which a steady stream of callbacks put off for
    // seconds (or for ever).
    let slowest = slowest.expect("prepare_fork() did not return in 20 s");
    assert!(
        slowest < Duration::from_secs(1),
        "prepare_fork() took {slowest:?}: a callback worker did not park"
    );
    for p in producers {
        p.join().unwrap();
    }
    rcu.barrier();
}
