//! A forked child whose parent had a thread between emptying its drain (the
//! ready values it frees a few per retire) and refilling it: the drain's
//! bytes must not stay in the child's `pending_bytes` with no object behind
//! them. Before the fix the child reported, after `barrier`, `pending() ==
//! 0` with a whole drained page's bytes pending, for good (found by an
//! independent stress run).

mod common;
use common::StopOnDrop;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rcu_reclaim::{Config, Rcu};

#[test]
fn a_child_forked_while_a_drain_was_emptied_has_no_bytes_left_pending() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    // Values with no drop glue drop anywhere: they go through the
    // retiring threads' drains. Several threads on two cores get preempted
    // anywhere, now and then between emptying a drain and refilling it.
    let retirers: Vec<_> = (0..6)
        .map(|_| {
            let (rcu, stop) = (rcu.clone(), stop.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    rcu.defer_drop(Box::new([7u64; 7]));
                }
            })
        })
        .collect();
    let _stop = StopOnDrop(&stop);
    let deadline = Instant::now() + Duration::from_secs(4);
    let mut rounds = 0;
    let mut failure = None;
    while Instant::now() < deadline && failure.is_none() {
        rounds += 1;
        thread::sleep(Duration::from_millis(1));
        let r = rcu.clone();
        let status = common::forked_child_status(&rcu, move || {
            r.barrier();
            let (n, b) = (r.pending(), r.pending_bytes());
            if (n, b) != (0, 0) {
                eprintln!("child: after barrier, pending {n} and pending_bytes {b}");
                return false;
            }
            true
        });
        if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
            failure = Some(format!("round {rounds}: child status {status}"));
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in retirers {
        t.join().unwrap();
    }
    rcu.barrier();
    assert_eq!(failure, None);
    println!("{rounds} forks");
}
