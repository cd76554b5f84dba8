//! Whether the calling thread is between its `call_rcu_before_fork` and
//! the matching `call_rcu_after_fork_parent` / `_child` (`fork.rs` opens
//! and closes the window): the call_rcu list, the `defer_rcu` locks and
//! the domain are held for the fork there, so the calls that need them
//! (`call_rcu.rs`, `crdp/`, `defer.rs`) look here first. A leaf: it
//! imports none of them, and they need not import `fork.rs`.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

/// How many threads are in the window (0 or 1 but for misuse): lets
/// [`forking_here`] skip the thread-local look on every other call.
static IN_WINDOW: AtomicUsize = AtomicUsize::new(0);

std::thread_local! {
    /// This thread is in the window. No destructor.
    static HERE: Cell<bool> = const { Cell::new(false) };
}

/// Whether the calling thread is in the window. One relaxed load of a
/// global on every other thread.
#[inline]
pub(crate) fn forking_here() -> bool {
    IN_WINDOW.load(Ordering::Relaxed) != 0 && HERE.try_with(Cell::get).unwrap_or(false)
}

/// Opens the window on the calling thread (`before_fork`, once it holds
/// what it holds).
pub(crate) fn enter() {
    HERE.set(true);
    IN_WINDOW.fetch_add(1, Ordering::Relaxed);
}

/// Closes the window on the calling thread (an `after_fork_*` that took
/// what `before_fork` held).
pub(crate) fn leave() {
    HERE.set(false);
    IN_WINDOW.fetch_sub(1, Ordering::Relaxed);
}

/// Ends the process, saying why, where `what` (a call made in the window)
/// needs what the forking thread holds: it would wait for itself for ever
/// (liburcu hangs there without a word).
pub(crate) fn die_in_window(what: &str) -> ! {
    crate::die(&format!(
        "{what} called between call_rcu_before_fork() and call_rcu_after_fork_parent() / \
         call_rcu_after_fork_child() on the thread that forks: it needs the call_rcu_data \
         list or the defer_rcu queues, which that thread holds for the fork, so it would wait \
         for itself for ever. Make the call before call_rcu_before_fork() or after the \
         after_fork hook"
    ))
}

/// Locks `m`, one of the locks `call_rcu_before_fork` holds for the fork
/// (a poisoned one as it is); on the forking thread inside the window,
/// where it would wait for itself, dies instead, naming `what` needs it.
pub(crate) fn lock_outside<T>(m: &'static Mutex<T>, what: &str) -> MutexGuard<'static, T> {
    match m.try_lock() {
        Ok(g) => g,
        Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
        Err(std::sync::TryLockError::WouldBlock) => {
            if forking_here() {
                // Held by this thread's `call_rcu_before_fork`: std's mutex
                // would wait for ever.
                die_in_window(what);
            }
            m.lock().unwrap_or_else(|p| p.into_inner())
        }
    }
}
