//! An accounting global allocator: live heap bytes, counted cheaply, for
//! [`MemoryBudget`](super::MemoryBudget) and the demo.
//!
//! Each thread batches its allocations and frees in a thread-local delta and
//! folds it into one global counter once it reaches ±16 KiB, so the fast
//! path is a thread-local add and compare. [`AccountingAlloc::live_bytes`]
//! is therefore exact to within 16 KiB per live thread. A thread folds what
//! it still holds when it exits (its thread-local's destructor), and frees
//! made after that, by later thread-local destructors, go to the global
//! counter directly, so thread churn never makes the count drift (on glibc;
//! see `Delta`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use super::reclaimer::reclaim_allowed;

/// Per-thread batch before the global counter is touched.
const BATCH: isize = 16 << 10;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

/// A thread's unfolded delta; folded into `LIVE` when the thread exits.
struct Delta(Cell<isize>);

// Only where the C runtime registers thread-local destructors without
// allocating (glibc's `__cxa_thread_atexit_impl`); elsewhere std's fallback
// list would allocate from inside the allocator on a thread's first use, so
// there an exiting thread's last < 16 KiB stays unfolded.
#[cfg(target_env = "gnu")]
impl Drop for Delta {
    fn drop(&mut self) {
        let v = self.0.replace(0);
        if v != 0 {
            LIVE.fetch_add(v, Ordering::Relaxed);
        }
    }
}

thread_local! {
    // `const`-initialised: no lazy initialiser and no allocation inside the
    // allocator. Its destructor is registered on the thread's first use
    // (through glibc's `__cxa_thread_atexit_impl`, which does not call back
    // into the Rust global allocator).
    static DELTA: Delta = const { Delta(Cell::new(0)) };
}

#[inline]
fn account(bytes: isize) {
    let fold = DELTA.try_with(|d| {
        let v = d.0.get() + bytes;
        // |v| >= BATCH, as one unsigned compare.
        if (v + BATCH) as usize >= (2 * BATCH) as usize {
            d.0.set(0);
            v
        } else {
            d.0.set(v);
            0
        }
    });
    match fold {
        Ok(0) => {}
        Ok(fold) => fold_in(fold),
        // The thread is exiting and its delta is folded already: count
        // directly (no budget check from a dying thread's destructors).
        Err(_) => {
            LIVE.fetch_add(bytes, Ordering::Relaxed);
        }
    }
}

#[cold]
fn fold_in(add: isize) {
    let now = LIVE.fetch_add(add, Ordering::Relaxed) + add;
    if now > 0 {
        PEAK.fetch_max(now as usize, Ordering::Relaxed);
    }
    if add > 0 && reclaim_allowed() {
        if let Some(budget) = DIRECT.get() {
            // Over `min`, reclaim here before the allocation returns; over
            // `low`, wake the background reclaimer. That runs the caller's
            // code (shrinkers, the OOM handler, the usage function), and a
            // panic in it must not unwind out of the global allocator
            // (undefined behaviour): it is reported, the budget is left
            // consistent (its turn and marks restore on unwind), and the
            // allocation proceeds.
            let checked = crate::sync::catch_panic(|| budget.check_from_allocation());
            if checked.is_err() {
                reclaim_panicked();
            }
        }
    }
}

#[cold]
fn reclaim_panicked() {
    crate::sync::report_caught(|| {
        tracing::error!(
            "rcu-reclaim: direct reclaim from an allocation panicked (in a shrinker, the OOM \
             handler or the budget's usage function); a panic cannot unwind out of the global \
             allocator, so the allocation proceeds"
        );
    });
}

/// What an allocation checks once a budget is enforced: the
/// [`MemoryBudget`](super::MemoryBudget) (`budget.rs` implements this and
/// `AccountingAlloc::enforce`, so this file, below the budget, never names
/// it).
pub(crate) trait DirectReclaim: Send + Sync {
    /// Reclaims directly over `min`, wakes the background reclaimer over
    /// `low` (`MemoryBudget::check`).
    fn check_from_allocation(&self);
}

/// The budget that allocations check, once installed.
static DIRECT: OnceLock<Arc<dyn DirectReclaim>> = OnceLock::new();

/// Installs the budget allocations check; `false` if one is installed.
pub(crate) fn install_direct(budget: Arc<dyn DirectReclaim>) -> bool {
    DIRECT.set(budget).is_ok()
}

/// A [`GlobalAlloc`] that counts live bytes around another allocator.
///
/// ```
/// use rcu_reclaim::reclaim::AccountingAlloc;
/// #[global_allocator]
/// static ALLOC: AccountingAlloc = AccountingAlloc::system();
///
/// fn main() {
///     let before = AccountingAlloc::live_bytes();
///     let big = vec![0u8; 1 << 20];
///     assert!(AccountingAlloc::live_bytes() >= before + (1 << 20) - (16 << 10));
///     drop(big);
/// }
/// ```
#[derive(Debug, Default)]
pub struct AccountingAlloc<A = System> {
    inner: A,
}

impl AccountingAlloc<System> {
    /// Accounting around the system allocator.
    ///
    /// ```
    /// static _A: rcu_reclaim::reclaim::AccountingAlloc = rcu_reclaim::reclaim::AccountingAlloc::system();
    /// ```
    pub const fn system() -> Self {
        AccountingAlloc { inner: System }
    }

    /// Live heap bytes of the process (to within 16 KiB per live thread), as
    /// counted by whichever `AccountingAlloc` is the global allocator, of
    /// any inner allocator; 0 if none is.
    ///
    /// ```
    /// let _ = rcu_reclaim::reclaim::AccountingAlloc::live_bytes();
    /// ```
    pub fn live_bytes() -> usize {
        LIVE.load(Ordering::Relaxed).max(0) as usize
    }

    /// The highest live count seen since start (or the last reset).
    ///
    /// ```
    /// let _ = rcu_reclaim::reclaim::AccountingAlloc::peak_bytes();
    /// ```
    pub fn peak_bytes() -> usize {
        PEAK.load(Ordering::Relaxed)
    }

    /// Restarts the peak from the current live count.
    ///
    /// ```
    /// rcu_reclaim::reclaim::AccountingAlloc::reset_peak();
    /// ```
    pub fn reset_peak() {
        PEAK.store(Self::live_bytes(), Ordering::Relaxed);
    }
}

/// Whether an `AccountingAlloc` is the global allocator. Without one the
/// counts stay 0 for ever; with one they move once any thread folds a
/// batch, and this thread folds one when it allocates twice the batch, as
/// the probe below does.
pub(crate) fn is_global_allocator() -> bool {
    let counted = || LIVE.load(Ordering::Relaxed) != 0 || PEAK.load(Ordering::Relaxed) != 0;
    if counted() {
        return true;
    }
    let probe = std::hint::black_box(vec![0u8; 2 * BATCH as usize]);
    let seen = counted();
    drop(probe);
    seen
}

impl<A> AccountingAlloc<A> {
    /// Accounting around `inner`.
    ///
    /// ```
    /// static _A: rcu_reclaim::reclaim::AccountingAlloc<std::alloc::System> =
    ///     rcu_reclaim::reclaim::AccountingAlloc::new(std::alloc::System);
    /// ```
    pub const fn new(inner: A) -> Self {
        AccountingAlloc { inner }
    }
}

// SAFETY: every method forwards to `inner` with the caller's arguments and
// only adds bookkeeping that neither allocates nor touches the memory.
unsafe impl<A: GlobalAlloc> GlobalAlloc for AccountingAlloc<A> {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract.
        let p = unsafe { self.inner.alloc(layout) };
        if !p.is_null() {
            account(layout.size() as isize);
        }
        p
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract.
        let p = unsafe { self.inner.alloc_zeroed(layout) };
        if !p.is_null() {
            account(layout.size() as isize);
        }
        p
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded contract.
        unsafe { self.inner.dealloc(ptr, layout) };
        account(-(layout.size() as isize));
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded contract.
        let p = unsafe { self.inner.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            account(new_size as isize - layout.size() as isize);
        }
        p
    }
}
