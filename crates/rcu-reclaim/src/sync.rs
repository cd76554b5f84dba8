//! The synchronisation primitives the crate is built on, swapped for loom's
//! model-checked versions under `--cfg loom` (as crossbeam-epoch does).

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicBool, AtomicI32, AtomicPtr, AtomicU64};
#[cfg(loom)]
pub(crate) use loom::sync::{Arc, Mutex, MutexGuard};
#[cfg(loom)]
pub(crate) use loom::thread;

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicBool, AtomicI32, AtomicPtr, AtomicU64};
#[cfg(not(loom))]
pub(crate) use std::sync::{Arc, Mutex, MutexGuard};
#[cfg(not(loom))]
pub(crate) use std::thread;

/// Locks `m`, ignoring poisoning: every structure the crate guards with a
/// mutex stays consistent even if a holder panicked (the holder never leaves
/// it half-updated), so a poisoned lock is safe to keep using.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// `UnsafeCell` with loom's closure API, so code that hands out raw access
/// is checked by loom and compiles to a plain cell otherwise.
#[cfg(loom)]
pub(crate) use loom::cell::UnsafeCell;

#[cfg(not(loom))]
#[derive(Debug, Default)]
pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(loom))]
impl<T> UnsafeCell<T> {
    /// Runs `f` with a raw pointer to the value; the caller upholds the
    /// aliasing rules, as with `std::cell::UnsafeCell::get`.
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

/// [`lock`] for the std mutexes of the background threads, which stay std
/// under loom (loom models the protocols, not the thread plumbing).
#[cfg(loom)]
pub(crate) fn lock_std<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

#[cfg(not(loom))]
pub(crate) use lock as lock_std;

/// Runs `f` with the thread-local flag `key` set, restoring its previous
/// value afterwards (also on unwind): the scoped per-thread marks such as
/// `without_page_allocation` and `no_reclaim`.
pub(crate) fn with_flag<R>(
    key: &'static std::thread::LocalKey<std::cell::Cell<bool>>,
    f: impl FnOnce() -> R,
) -> R {
    struct Restore(&'static std::thread::LocalKey<std::cell::Cell<bool>>, bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            self.0.with(|c| c.set(self.1));
        }
    }
    let _restore = Restore(key, key.with(|c| c.replace(true)));
    f()
}
