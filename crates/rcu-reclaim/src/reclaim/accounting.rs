//! An accounting global allocator: live heap bytes, counted cheaply, for
//! [`MemoryBudget`](crate::MemoryBudget) and the demo.
//!
//! Each thread batches its allocations and frees in a thread-local delta and
//! folds it into one global counter once it reaches ±16 KiB, so the fast
//! path is a thread-local add and compare. [`AccountingAlloc::live_bytes`]
//! is therefore exact to within 16 KiB per thread; what a thread had not
//! folded in when it exited stays uncounted (at most 16 KiB each).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use super::budget::MemoryBudget;
use super::reclaimer::reclaim_allowed;

/// Per-thread batch before the global counter is touched.
const BATCH: isize = 16 << 10;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    // `const` and without `Drop`: usable inside the allocator (no lazy
    // initialisation, no destructor registration, no allocation).
    static DELTA: Cell<isize> = const { Cell::new(0) };
}

#[inline]
fn account(bytes: isize) {
    // A `const` thread-local without a destructor is never torn down, so
    // `with` cannot fail here, and compiles to a plain `%fs`-relative access.
    let fold = DELTA.with(|d| {
        let v = d.get() + bytes;
        // |v| >= BATCH, as one unsigned compare.
        if (v + BATCH) as usize >= (2 * BATCH) as usize {
            d.set(0);
            v
        } else {
            d.set(v);
            0
        }
    });
    if fold != 0 {
        fold_in(fold);
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
            // `low`, wake the background reclaimer.
            budget.check();
        }
    }
}

/// The budget that allocations check, once installed.
static DIRECT: OnceLock<Arc<MemoryBudget>> = OnceLock::new();

/// A [`GlobalAlloc`] that counts live bytes around another allocator.
///
/// ```
/// use rcu_reclaim::AccountingAlloc;
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
    /// static _A: rcu_reclaim::AccountingAlloc = rcu_reclaim::AccountingAlloc::system();
    /// ```
    pub const fn system() -> Self {
        AccountingAlloc { inner: System }
    }

    /// Live heap bytes of the process (to within 16 KiB per thread), as
    /// counted by whichever `AccountingAlloc` is the global allocator, of
    /// any inner allocator; 0 if none is.
    ///
    /// ```
    /// let _ = rcu_reclaim::AccountingAlloc::live_bytes();
    /// ```
    pub fn live_bytes() -> usize {
        LIVE.load(Ordering::Relaxed).max(0) as usize
    }

    /// The highest live count seen since start (or the last reset).
    ///
    /// ```
    /// let _ = rcu_reclaim::AccountingAlloc::peak_bytes();
    /// ```
    pub fn peak_bytes() -> usize {
        PEAK.load(Ordering::Relaxed)
    }

    /// Makes allocations enforce `budget` (the issue's optional direct
    /// reclaim): every 16 KiB of growth a thread checks it, reclaiming
    /// directly over `min` and waking the background reclaimer over `low`.
    /// Threads inside reclaim, inside [`no_reclaim`](crate::no_reclaim), or
    /// holding one of this crate's locks never reclaim from an allocation;
    /// code that allocates while holding a lock that a shrinker (or a
    /// `tracing` subscriber, which reclaim logs to) needs must use
    /// `no_reclaim` too, as kernel code uses `GFP_NOFS`. Once per process; returns the budget back if one
    /// is installed already.
    ///
    /// ```no_run
    /// use std::sync::Arc;
    /// use rcu_reclaim::{AccountingAlloc, MemoryBudget, Rcu, Reclaimer};
    /// #[global_allocator]
    /// static ALLOC: AccountingAlloc = AccountingAlloc::system();
    /// let reclaimer = Arc::new(Reclaimer::new(Rcu::global()));
    /// let budget = MemoryBudget::new(512 << 20, reclaimer, AccountingAlloc::live_bytes);
    /// AccountingAlloc::enforce(Arc::new(budget)).unwrap();
    /// ```
    pub fn enforce(budget: Arc<MemoryBudget>) -> Result<(), Arc<MemoryBudget>> {
        DIRECT.set(budget)
    }

    /// Restarts the peak from the current live count.
    ///
    /// ```
    /// rcu_reclaim::AccountingAlloc::reset_peak();
    /// ```
    pub fn reset_peak() {
        PEAK.store(Self::live_bytes(), Ordering::Relaxed);
    }
}

impl<A> AccountingAlloc<A> {
    /// Accounting around `inner`.
    ///
    /// ```
    /// static _A: rcu_reclaim::AccountingAlloc<std::alloc::System> =
    ///     rcu_reclaim::AccountingAlloc::new(std::alloc::System);
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
