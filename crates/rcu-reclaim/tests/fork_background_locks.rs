//! `prepare_fork` while other threads keep asking the grace-period thread
//! for grace periods and waking the callback workers: each of those takes
//! the background thread's lock for a moment, and one caught holding it at
//! the fork left it held for ever in the child, whose `ForkGuard::child`
//! then hung (found by an independent stress run).

mod common;
use common::StopOnDrop;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rcu_reclaim::{Config, Rcu};

#[test]
fn a_child_forked_while_threads_kick_the_background_threads_does_not_hang() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let kickers: Vec<_> = (0..3)
        .map(|k| {
            let (rcu, stop) = (rcu.clone(), stop.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if k == 0 {
                        // Each asks the grace-period thread (its lock).
                        let _ = rcu.start_poll();
                    } else {
                        // Each may wake a worker (its group's lock).
                        rcu.call_hurry(|| {});
                        rcu.defer_drop(Box::new([1u64; 4]));
                    }
                }
            })
        })
        .collect();
    let _stop = StopOnDrop(&stop);
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut forks = 0;
    let mut failure = None;
    while Instant::now() < deadline && failure.is_none() {
        forks += 1;
        let guard = rcu.prepare_fork();
        // SAFETY: the child runs only this crate's code and `_exit`s; the
        // domain was prepared for the fork.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            guard.child();
            rcu.call(|| {});
            rcu.barrier();
            let ok = rcu.pending() == 0;
            // SAFETY: ends the child without running the parent's destructors.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        guard.parent();
        let start = Instant::now();
        let mut status = 0;
        loop {
            // SAFETY: polls our own child.
            if unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } == pid {
                if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
                    failure = Some(format!("fork {forks}: child status {status}"));
                }
                break;
            }
            if start.elapsed() > Duration::from_secs(5) {
                // SAFETY: kills and reaps our own child.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                    libc::waitpid(pid, &mut status, 0);
                }
                failure = Some(format!("fork {forks}: the child hung"));
                break;
            }
            thread::sleep(Duration::from_micros(500));
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in kickers {
        t.join().unwrap();
    }
    rcu.barrier();
    assert_eq!(failure, None);
    println!("{forks} forks");
}
