//! A process forked while a thread of the parent was writing to an
//! `RcuHashMap` (or an `RcuCache`): that thread held its key's stripe lock
//! at the fork, and does not exist in the child, so the lock is never
//! released there. A child's write to the same stripe used to wait for it
//! for ever, in silence; forked without `Rcu::prepare_fork` it now panics
//! at once, naming what happened and the fix, as it does in a child that
//! `ForkGuard::child` made ready (the domain's fork does not stop map
//! writers): the lock's holder, noted beside it, is a thread of the
//! parent. A stripe held by a thread of the child's own is waited for,
//! with a word on standard error after 2 s.

#![cfg(not(loom))]

use std::sync::{mpsc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rcu_reclaim::{Config, Rcu, RcuCache, RcuHashMap};

/// One test at a time: a test's fork must not catch another test's thread
/// inside `prepare_fork` or a child's set-up (the child forked without it
/// would inherit what that thread holds, which is not what is tested).
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs `hold` on another thread, which holds a stripe lock inside a
/// write's closure while it calls the function it is passed; then runs
/// `forked` on this thread (which forks), and lets the holder go.
fn while_a_writer_holds<R>(hold: impl FnOnce(&dyn Fn()) + Send, forked: impl FnOnce() -> R) -> R {
    let (held_tx, held_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    std::thread::scope(|s| {
        let holder = s.spawn(move || {
            hold(&|| {
                held_tx.send(()).unwrap();
                let _ = release_rx.recv();
            })
        });
        held_rx.recv().unwrap();
        let r = forked();
        release_tx.send(()).unwrap();
        holder.join().unwrap();
        r
    })
}

/// In the child: runs `write` under an alarm of 10 s (a hang kills the
/// child), and `_exit`s with 0 if it panicked within 8 s with a message
/// that contains each of `names`, 3 if it panicked otherwise, 4 if it
/// returned.
fn in_child_expect_panic(write: impl FnOnce(), names: &[&str]) -> ! {
    // SAFETY: alarm has no preconditions; a hang kills the child.
    unsafe { libc::alarm(10) };
    let start = Instant::now();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(write));
    let code = match r {
        Ok(()) => 4,
        Err(e) => {
            let named = e
                .downcast_ref::<String>()
                .is_some_and(|m| names.iter().all(|n| m.contains(n)));
            if named && start.elapsed() < Duration::from_secs(8) {
                0
            } else {
                3
            }
        }
    };
    // SAFETY: ends the child without running the parent's destructors.
    unsafe { libc::_exit(code) }
}

/// Waits for child `pid` and asserts that it exited with 0.
fn assert_child_ok(pid: libc::pid_t, what: &str) {
    let mut status = 0;
    // SAFETY: waits for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFEXITED(status),
        "{what}: the child died of a signal (hung on the stripe lock, killed by its alarm): \
         status {status}"
    );
    assert_eq!(
        libc::WEXITSTATUS(status),
        0,
        "{what}: the child's write did not panic in time naming the cause and the fix (3: \
         another panic or too late; 4: it returned)"
    );
}

/// What the panic must name: the fork, the lock, and both fixes.
const NAMES: &[&str] = &[
    "forked from process",
    "stripe",
    "writing to the same map or cache at the fork",
    "Fork only while no thread writes",
    "made after the fork",
    "prepare_fork",
];

/// On the holder's thread: a write to `map`'s key 7 whose closure, run
/// under that key's stripe lock, calls `hold`.
fn holding_key_7(map: &RcuHashMap<u64, u64>, hold: &dyn Fn()) {
    let guard = map.domain().read_lock();
    map.get_or_insert_with(
        7,
        || {
            hold();
            1
        },
        &guard,
    );
}

/// Forks; the child runs `write` and must panic naming [`NAMES`] (see
/// [`in_child_expect_panic`]). Returns the child's pid, in the parent.
fn fork_expecting_a_panic(write: impl FnOnce()) -> libc::pid_t {
    // SAFETY: the child runs only this test's code and `_exit`s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        in_child_expect_panic(write, NAMES);
    }
    pid
}

#[test]
#[cfg_attr(miri, ignore = "Miri cannot fork")]
fn a_map_write_in_an_unprepared_child_panics_instead_of_hanging() {
    let _serial = serial();
    let rcu = Rcu::new(Config::new()).unwrap();
    let map: RcuHashMap<u64, u64> = RcuHashMap::new_in(&rcu);
    let pid = while_a_writer_holds(
        |hold| holding_key_7(&map, hold),
        || {
            fork_expecting_a_panic(|| {
                map.insert(7, 2);
            })
        },
    );
    assert_child_ok(pid, "RcuHashMap::insert");
    // The parent's map is whole: the holder's insert went through.
    let guard = rcu.read_lock();
    assert_eq!(map.get(&7, &guard), Some(&1));
}

#[test]
#[cfg_attr(miri, ignore = "Miri cannot fork")]
fn a_nested_map_write_in_an_unprepared_child_panics_instead_of_hanging() {
    let _serial = serial();
    let rcu = Rcu::new(Config::new()).unwrap();
    let map: RcuHashMap<u64, u64> = RcuHashMap::new_in(&rcu);
    let outer: RcuHashMap<u64, u64> = RcuHashMap::new_in(&rcu);
    let pid = while_a_writer_holds(
        |hold| holding_key_7(&map, hold),
        || {
            // The write waits inside another map's closure (the
            // crossed-writes wait, which looks for deadlock cycles).
            fork_expecting_a_panic(|| {
                let guard = rcu.read_lock();
                outer.get_or_insert_with(
                    1,
                    || {
                        map.insert(7, 2);
                        2
                    },
                    &guard,
                );
            })
        },
    );
    assert_child_ok(pid, "RcuHashMap::insert inside another map's closure");
}

#[test]
#[cfg_attr(miri, ignore = "Miri cannot fork")]
fn a_cache_write_in_an_unprepared_child_panics_instead_of_hanging() {
    let _serial = serial();
    let rcu = Rcu::new(Config::new()).unwrap();
    let cache: RcuCache<u64, u64> = RcuCache::builder().rcu(&rcu).build();
    let pid = while_a_writer_holds(
        |hold| {
            let guard = cache.domain().read_lock();
            // A load runs under the key's stripe lock of the cache's map.
            cache.get_or_insert_with(
                7,
                || {
                    hold();
                    1
                },
                &guard,
            );
        },
        || {
            fork_expecting_a_panic(|| {
                cache.insert(7, 2);
            })
        },
    );
    assert_child_ok(pid, "RcuCache::insert");
}

/// What the panic in a child that `ForkGuard::child` made ready must name.
const NAMES_PREPARED: &[&str] = &[
    "forked from process",
    "stripe",
    "is held by a thread of the parent",
    "writing to the same map or cache at the fork",
    "Fork only while no thread writes",
    "made after the fork",
    "ForkGuard::child()",
    "do not stop the writers of maps and caches",
];

#[test]
#[cfg_attr(miri, ignore = "Miri cannot fork")]
fn a_map_write_in_a_prepared_child_panics_naming_the_parents_writer() {
    let _serial = serial();
    let rcu = Rcu::new(Config::new()).unwrap();
    let map: RcuHashMap<u64, u64> = RcuHashMap::new_in(&rcu);
    let pid = while_a_writer_holds(
        |hold| holding_key_7(&map, hold),
        || {
            // `prepare_fork` does not stop the writer in its closure.
            let fork_guard = rcu.prepare_fork();
            // SAFETY: the child runs only this test's code and `_exit`s.
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0, "fork failed");
            if pid == 0 {
                fork_guard.child();
                // The stripe's holder is a thread of the parent: the
                // write cannot ever proceed (it waited for ever before).
                in_child_expect_panic(
                    || {
                        map.insert(7, 2);
                    },
                    NAMES_PREPARED,
                );
            }
            fork_guard.parent();
            pid
        },
    );
    assert_child_ok(pid, "RcuHashMap::insert in a prepared child");
    let guard = rcu.read_lock();
    assert_eq!(map.get(&7, &guard), Some(&1));
}

/// In a child that `ForkGuard::child` made ready, a stripe held by one of
/// the child's own threads (a slow loader) is waited for, however long,
/// with a word on standard error after 2 s: only a holder that does not
/// exist in the child ends the wait with a panic.
#[test]
#[cfg_attr(miri, ignore = "Miri cannot fork")]
fn a_map_write_in_a_prepared_child_waits_for_the_childs_own_writer() {
    let _serial = serial();
    let rcu = Rcu::new(Config::new()).unwrap();
    let map: RcuHashMap<u64, u64> = RcuHashMap::new_in(&rcu);
    // A write of the parent's before the fork (its thread, the forking
    // one, goes on in the child).
    map.insert(8, 0);
    let mut pipe = [0; 2];
    // SAFETY: `pipe` has room for the two descriptors.
    assert_eq!(unsafe { libc::pipe(pipe.as_mut_ptr()) }, 0);
    let fork_guard = rcu.prepare_fork();
    // SAFETY: the child runs only this test's code and `_exit`s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // SAFETY: alarm has no preconditions; `dup2` points standard
        // error at the pipe, whose ends are ours.
        unsafe {
            libc::alarm(20);
            libc::close(pipe[0]);
            libc::dup2(pipe[1], 2);
        }
        fork_guard.child();
        let (held_tx, held_rx) = mpsc::channel();
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            std::thread::scope(|s| {
                let map = &map;
                let loader = s.spawn(move || {
                    holding_key_7(map, &|| {
                        held_tx.send(()).unwrap();
                        std::thread::sleep(Duration::from_millis(2500));
                    })
                });
                held_rx.recv().unwrap();
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    map.insert(7, 2);
                }));
                let joined = loader.join();
                match (r, joined) {
                    (Ok(()), Ok(())) => 0,
                    (Err(_), _) => 3,
                    (_, Err(_)) => 4,
                }
            })
        }))
        .unwrap_or(5);
        // SAFETY: ends the child without running destructors.
        unsafe { libc::_exit(code) };
    }
    fork_guard.parent();
    // SAFETY: our end of the pipe; the child has its own copy.
    unsafe { libc::close(pipe[1]) };
    let mut said = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: reads into `buf`, which has that many bytes.
        let n = unsafe { libc::read(pipe[0], buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        said.extend_from_slice(&buf[..n as usize]);
    }
    let mut status = 0;
    // SAFETY: waits for our own child, then closes our end of the pipe.
    unsafe {
        assert_eq!(libc::waitpid(pid, &mut status, 0), pid);
        libc::close(pipe[0]);
    }
    let text = String::from_utf8_lossy(&said);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the child's write did not wait for its own writer and go through (status {status}; \
         3: it panicked, 4: the writer did, 5: the child's set-up did): {text}"
    );
    for name in ["stripe", "ForkGuard::child()", "Still waiting"] {
        assert!(
            text.contains(name),
            "the prepared child's wait did not say {name:?}; it said: {text}"
        );
    }
}
