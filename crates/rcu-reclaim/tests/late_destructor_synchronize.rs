//! Misuse in a thread-local destructor, in a forked child: a test file of
//! its own. The child panics (the misuse panic, then the abort of a
//! panicking thread-local destructor), and a panic takes the standard
//! library's panic-hook and backtrace locks. In `misuse.rs`, beside tests
//! that panic on purpose, `fork()` sometimes caught one of those locks
//! held by another test's thread, and the child then waited for good in
//! its panic hook (4 runs in 40); here no other thread of the test process
//! panics.

use std::thread;

use rcu_reclaim::{Config, Rcu};

mod common;

/// A thread-local destroyed after the thread's own registrations (its
/// destructor runs late) that holds an online QSBR registration and calls
/// `synchronize`: the grace period would wait for that very thread, which
/// the registrations, already gone, can no longer say. It must end in the
/// misuse panic (an abort, from a thread-local's destructor), not wait
/// for good. In a forked child, which `forked_child_status` kills after
/// 20 s.
#[test]
fn synchronize_in_a_late_thread_local_destructor_while_online_does_not_hang() {
    use std::cell::RefCell;

    use rcu_reclaim::{Flavor, QsbrThread};

    struct SyncOnDrop {
        rcu: &'static Rcu,
        /// Online until after `drop` below has run.
        _online: QsbrThread,
    }
    impl Drop for SyncOnDrop {
        fn drop(&mut self) {
            self.rcu.synchronize();
        }
    }
    thread_local! {
        static LATE: RefCell<Option<SyncOnDrop>> = const { RefCell::new(None) };
    }

    let rcu: &'static Rcu = Box::leak(Box::new(
        Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap(),
    ));
    let status = common::forked_child_status(rcu, || {
        // The abort's message ("thread local panicked on drop") is expected:
        // kept out of the test's output.
        if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
            use std::os::fd::AsRawFd;
            // SAFETY: duplicates an open descriptor onto this (child)
            // process's stderr; both stay valid.
            unsafe { libc::dup2(null.as_raw_fd(), 2) };
        }
        thread::spawn(move || {
            // `LATE` first, so that its destructor runs after those of the
            // thread-locals the registration then creates.
            LATE.with(|l| {
                let _online = rcu.register_qsbr_thread();
                *l.borrow_mut() = Some(SyncOnDrop { rcu, _online });
            });
        })
        .join()
        .is_ok()
    });
    assert!(
        libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGABRT,
        "the child ended with status {status:#x}, not in the misuse abort"
    );
}
