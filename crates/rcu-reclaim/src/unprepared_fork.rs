//! Test support for the calls that must give up on a lock that a thread
//! of the parent held at a fork made without `Rcu::prepare_fork`
//! (`sync::ForkedWaits`). A leaf: it uses nothing of the crate, so the
//! modules whose tests call it import nothing new.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Once};

/// Set in a forked child (its own copy of the flag): the panic hook below
/// then prints nothing.
static IN_FORKED_CHILD: AtomicBool = AtomicBool::new(false);

/// Wraps the process's panic hook, once, in one that stays quiet in a
/// forked child. The default hook (and the test harness's around it)
/// takes std's backtrace lock, which another test's thread may have held
/// at the fork, printing its own panic: the child's expected panic then
/// hung in the hook until the alarm killed it (a run of the `callbacks::`
/// tests alone, where a test that panics on purpose runs beside this one,
/// failed three times of three). The child's check reads the panic's
/// payload, not what the hook prints.
fn quiet_hook_in_forked_children() {
    static WRAPPED: Once = Once::new();
    WRAPPED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_FORKED_CHILD.load(Ordering::Relaxed) {
                previous(info);
            }
        }));
    });
}

/// Runs `hold` on another thread, which holds a lock of a domain while
/// it calls the function it is passed; forks meanwhile (without
/// `prepare_fork`); runs `child` in the child under a 20 s alarm; and
/// asserts that `child` panicked, within the alarm, with a message
/// naming `prepare_fork` and each of `names`.
pub(crate) fn child_gives_up(
    hold: impl FnOnce(&dyn Fn()) + Send + 'static,
    child: impl FnOnce(),
    names: &[&str],
) {
    let (held_tx, held_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        hold(&|| {
            held_tx.send(()).unwrap();
            let _ = release_rx.recv();
        })
    });
    held_rx.recv().unwrap();
    quiet_hook_in_forked_children();
    // SAFETY: the child runs only this test's code and `_exit`s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        IN_FORKED_CHILD.store(true, Ordering::Relaxed);
        // SAFETY: alarm has no preconditions; a hang kills the child.
        unsafe { libc::alarm(20) };
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(child));
        let named = r.err().is_some_and(|e| {
            e.downcast_ref::<String>()
                .is_some_and(|m| m.contains("prepare_fork") && names.iter().all(|n| m.contains(n)))
        });
        // SAFETY: ends the child without running the parent's destructors.
        unsafe { libc::_exit(if named { 0 } else { 3 }) };
    }
    let mut status = 0;
    // SAFETY: waits for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    release_tx.send(()).unwrap();
    holder.join().unwrap();
    assert!(
        libc::WIFEXITED(status),
        "the child died of a signal (hung on the held lock): status {status}"
    );
    assert_eq!(
        libc::WEXITSTATUS(status),
        0,
        "the child did not panic naming prepare_fork and {names:?}"
    );
}
