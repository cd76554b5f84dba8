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

thread_local! {
    /// Set while this thread may not enter memory reclaim: it is reclaiming
    /// already, holds one of the crate's locks, or runs inside `no_reclaim`.
    pub(crate) static NO_RECLAIM: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A held lock of the crate. While any is held the thread is marked
/// no-reclaim, so an allocation made under the lock can never enter direct
/// reclaim, which may need the same lock (the kernel's `GFP_NOFS` idea).
pub(crate) struct Locked<'a, T> {
    guard: MutexGuard<'a, T>,
    prev: bool,
}

impl<T> std::ops::Deref for Locked<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> std::ops::DerefMut for Locked<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

impl<T> Drop for Locked<'_, T> {
    fn drop(&mut self) {
        NO_RECLAIM.with(|c| c.set(self.prev));
    }
}

fn mark<T>(guard: MutexGuard<'_, T>) -> Locked<'_, T> {
    Locked {
        guard,
        prev: NO_RECLAIM.with(|c| c.replace(true)),
    }
}

/// Several held locks of the crate, taken in list order and released in
/// the reverse order (a `Vec` would drop them first to last, and leave the
/// no-reclaim mark of the second-taken lock behind).
pub(crate) struct LockedAll<'a, T>(Vec<Locked<'a, T>>);

impl<'a, T> LockedAll<'a, T> {
    pub(crate) fn new(held: Vec<Locked<'a, T>>) -> Self {
        LockedAll(held)
    }
}

impl<T> Drop for LockedAll<'_, T> {
    fn drop(&mut self) {
        while let Some(last) = self.0.pop() {
            drop(last);
        }
    }
}

/// Locks `m`, ignoring poisoning: every structure the crate guards with a
/// mutex stays consistent even if a holder panicked (the holder never leaves
/// it half-updated), so a poisoned lock is safe to keep using.
pub(crate) fn lock<T>(m: &Mutex<T>) -> Locked<'_, T> {
    mark(match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    })
}

/// As [`lock`], without waiting: `None` if the lock is held.
pub(crate) fn try_lock<T>(m: &Mutex<T>) -> Option<Locked<'_, T>> {
    match m.try_lock() {
        Ok(g) => Some(mark(g)),
        Err(std::sync::TryLockError::Poisoned(p)) => Some(mark(p.into_inner())),
        Err(std::sync::TryLockError::WouldBlock) => None,
    }
}

/// [`lock`] for the std mutexes that pair with a `Condvar` (in the
/// background threads): a plain guard, not marked, for `Condvar::wait`.
/// Their critical sections must not allocate.
pub(crate) fn lock_std<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
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
