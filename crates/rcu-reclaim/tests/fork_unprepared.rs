//! A process forked without `Rcu::prepare_fork` while a worker of the
//! parent was running a callback: the child's `barrier` finds that
//! shard's run lock held for ever (its holder does not exist there) and
//! panics within seconds, naming the fix, instead of hanging.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use rcu_reclaim::{Config, Rcu};

#[test]
#[cfg_attr(miri, ignore = "Miri cannot fork")]
fn a_child_forked_unprepared_panics_naming_the_fix_instead_of_hanging() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let running = Arc::new(AtomicBool::new(false));
    let (release, held) = mpsc::channel::<()>();
    let r = running.clone();
    rcu.call_hurry(move || {
        r.store(true, Ordering::SeqCst);
        let _ = held.recv();
    });
    let start = Instant::now();
    while !running.load(Ordering::SeqCst) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the callback never ran"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    // SAFETY: the child runs only this test's code and `_exit`s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // SAFETY: alarm has no preconditions; a hang kills the child.
        unsafe { libc::alarm(20) };
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| rcu.barrier()));
        let named = match r {
            Ok(()) => false,
            Err(e) => e
                .downcast_ref::<String>()
                .is_some_and(|m| m.contains("prepare_fork") && m.contains("run lock")),
        };
        // SAFETY: ends the child without running the parent's destructors.
        unsafe { libc::_exit(if named { 0 } else { 3 }) };
    }
    let mut status = 0;
    // SAFETY: waits for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    release.send(()).unwrap();
    rcu.barrier();
    assert!(
        libc::WIFEXITED(status),
        "the child died of a signal (a hang): status {status}"
    );
    assert_eq!(
        libc::WEXITSTATUS(status),
        0,
        "the child's barrier did not panic naming prepare_fork"
    );
}
