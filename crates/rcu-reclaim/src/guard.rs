//! `ReadGuard`: a read-side section of a domain, on top of the reader
//! registry's section primitives; and the guard-less raw sections of the C
//! ABI, counted apart from guards.

use std::marker::PhantomData;

use crate::domain::Rcu;
use crate::reader::{self, Slot};

impl Rcu {
    /// Enters a read-side critical section, which lasts until the guard drops.
    ///
    /// The outermost call costs a load and a store (memb flavor) or a store
    /// and a fence (mb flavor); nested calls only count. The calling thread is
    /// registered on its first call and unregistered when it exits.
    ///
    /// ```
    /// let rcu = rcu_reclaim::Rcu::global();
    /// let guard = rcu.read_lock();
    /// assert!(rcu.in_read_section());
    /// drop(guard);
    /// ```
    #[inline]
    pub fn read_lock(&self) -> ReadGuard<'_> {
        ReadGuard::enter(self)
    }
}

/// Enters a read-side section without a guard (see `Rcu::read_lock_raw`).
#[inline]
pub(crate) fn raw_enter(rcu: &Rcu) {
    let guard = ReadGuard::enter(rcu);
    // SAFETY: the guard's slot is this thread's, alive while its
    // registration is (at least as long as the guard).
    let s = unsafe { &**guard.slot };
    s.raw_nest.set(s.raw_nest.get() + 1);
    std::mem::forget(guard);
}

/// Leaves a section entered with `raw_enter`; `false` (and nothing done) if
/// the thread has no raw section open in `rcu`. A guard's section is never
/// ended here: raw sections are counted apart from guards.
#[inline]
pub(crate) fn raw_exit(rcu: &Rcu) -> bool {
    let slot = rcu.current_slot();
    // SAFETY: `current_slot` returns this thread's slot, alive while the
    // thread's registration is.
    let s = unsafe { &*slot };
    let raw = s.raw_nest.get();
    if raw == 0 {
        // A late slot claimed just for this look goes back at once.
        crate::reader::release_if_late(rcu.registry(), s);
        return false;
    }
    s.raw_nest.set(raw - 1);
    // Read while the slot is surely this thread's: the drop below may pay
    // a wait the section owed, whose user code may unregister the thread,
    // and the slot may then be another thread's (its late one, even).
    let late = s.late.get();
    // The guard `raw_enter` forgot, rebuilt on the same thread: dropping it
    // ends the section exactly as the original would have.
    drop(ReadGuard {
        rcu,
        slot: SlotRef(slot),
        _not_send: PhantomData,
    });
    if late {
        crate::reader::release_if_still_late(rcu.id(), rcu.registry(), slot);
    }
    true
}

/// A read-side section that [`RcuCell::load`](crate::RcuCell::load)
/// accepts: a [`ReadGuard`], or a [`QsbrGuard`](crate::QsbrGuard) of a
/// registered QSBR thread. Sealed: only the crate's guards implement it.
///
/// ```
/// use rcu_reclaim::{Rcu, ReadSection};
/// fn domain_of(section: &impl ReadSection) -> u64 {
///     section.domain().id()
/// }
/// let rcu = Rcu::global();
/// assert_eq!(domain_of(&rcu.read_lock()), rcu.id());
/// ```
///
/// A type of another crate cannot pass for a section (it would let
/// `load` read without holding grace periods up):
///
/// ```compile_fail,E0277
/// use rcu_reclaim::{Rcu, ReadSection};
/// struct NoSection(&'static Rcu);
/// impl ReadSection for NoSection { // error: the trait bound `NoSection: Sealed` is not satisfied
///     fn domain(&self) -> &Rcu {
///         self.0
///     }
/// }
/// ```
pub trait ReadSection: sealed::Sealed {
    /// The domain whose grace periods this section holds up.
    ///
    /// ```
    /// use rcu_reclaim::{Rcu, ReadSection};
    /// let guard = Rcu::global().read_lock();
    /// assert_eq!(ReadSection::domain(&guard).id(), Rcu::global().id());
    /// ```
    fn domain(&self) -> &Rcu;
}

/// The seal of [`ReadSection`].
pub(crate) mod sealed {
    /// Implemented by the crate's guards only.
    pub trait Sealed {}
}

impl sealed::Sealed for ReadGuard<'_> {}

impl ReadSection for ReadGuard<'_> {
    #[inline]
    fn domain(&self) -> &Rcu {
        self.rcu
    }
}

/// A read-side critical section of an [`Rcu`] domain.
///
/// Created by [`Rcu::read_lock`]; the section ends when the guard is dropped.
/// While any guard of a domain is alive on a thread, no grace period of that
/// domain that started after the guard was taken can complete, so objects read
/// through [`RcuCell::load`](crate::RcuCell::load) stay valid.
///
/// Keep a section short. While it lasts, every grace period of the domain
/// waits, and every free behind them: do not hold a guard across a
/// blocking call (a sleep, I/O, a channel, or a lock that a thread waiting
/// for a grace period may hold, which deadlocks the two). Take out a copy,
/// or an `Arc` clone from an `RcuCell<Arc<T>>`, of what must outlive it,
/// and drop the guard first; a section that holds a grace period up past
/// [`Config::stall_timeout`](crate::Config::stall_timeout) is reported with
/// its thread's name.
///
/// ```
/// use rcu_reclaim::{Rcu, RcuCell};
/// let upstream = RcuCell::new(String::from("10.0.0.1:80"));
/// let addr: String = {
///     let guard = Rcu::global().read_lock();
///     upstream.load(&guard).cloned().unwrap_or_default()
/// }; // the section ends here, before the blocking call
/// std::thread::sleep(std::time::Duration::from_millis(1)); // stands for a connect(addr)
/// assert_eq!(addr, "10.0.0.1:80");
/// ```
///
/// Guards nest and are `!Send`: a section begins and ends on one thread.
///
/// ```
/// use rcu_reclaim::Rcu;
/// let rcu = Rcu::global();
/// let outer = rcu.read_lock();
/// let inner = rcu.read_lock(); // nesting is allowed and cheap
/// assert!(rcu.in_read_section());
/// drop(inner);
/// drop(outer);
/// assert!(!rcu.in_read_section());
/// ```
///
/// A guard cannot leave its thread (a section begins and ends on one
/// thread):
///
/// ```compile_fail,E0277
/// let guard = rcu_reclaim::Rcu::global().read_lock();
/// std::thread::spawn(move || drop(guard)); // error: `ReadGuard` is not `Send`
/// ```
///
/// nor is it shared, not even with a scoped thread (which could read under
/// it after this thread has reported a quiescent state elsewhere):
///
/// ```compile_fail,E0277
/// let cell = rcu_reclaim::RcuCell::new(1);
/// let guard = cell.domain().read_lock();
/// std::thread::scope(|s| {
///     s.spawn(|| cell.load(&guard).copied()); // error: `ReadGuard` is not `Sync`
/// });
/// ```
///
/// It borrows its domain handle, which so outlives the section:
///
/// ```compile_fail,E0505
/// let rcu = rcu_reclaim::Rcu::new(Default::default()).unwrap();
/// let guard = rcu.read_lock();
/// drop(rcu); // error: `rcu` is borrowed by the guard
/// drop(guard);
/// ```
#[must_use = "the read-side section ends when the guard is dropped"]
pub struct ReadGuard<'a> {
    rcu: &'a Rcu,
    slot: SlotRef,
    _not_send: PhantomData<*const ReadGuardStaysOnItsThread>,
}

/// This thread's slot, as a guard holds it. `Send`/`Sync` on its own so that
/// the compiler's "cannot be sent between threads" error for a guard names
/// [`ReadGuardStaysOnItsThread`], not a pointer to a slot.
#[derive(Clone, Copy)]
struct SlotRef(*const Slot);

// SAFETY: a `SlotRef` is only ever inside a `ReadGuard`, which is neither
// `Send` nor `Sync` (`ReadGuardStaysOnItsThread`): it is dereferenced only on
// the thread that owns the slot.
unsafe impl Send for SlotRef {}
// SAFETY: as above.
unsafe impl Sync for SlotRef {}

impl std::ops::Deref for SlotRef {
    type Target = *const Slot;
    fn deref(&self) -> &*const Slot {
        &self.0
    }
}

/// Why a [`ReadGuard`] is neither `Send` nor `Sync`: a read-side section
/// begins and ends on one thread. The guard holds a
/// `PhantomData<*const ReadGuardStaysOnItsThread>`, so the compiler's error
/// for sending one reads "`*const ReadGuardStaysOnItsThread` cannot be sent
/// between threads safely".
enum ReadGuardStaysOnItsThread {}

impl<'a> ReadGuard<'a> {
    #[inline]
    pub(crate) fn enter(rcu: &'a Rcu) -> Self {
        let slot = rcu.current_slot();
        let registry = rcu.registry();
        // SAFETY: `current_slot` returns this thread's slot, kept alive by the
        // thread's registration for as long as the thread runs; the guard is
        // `!Send`, so it is dropped on this thread.
        reader::section_enter(unsafe { &*slot }, &registry.gp_ctr, &registry.fence_reads);
        ReadGuard {
            rcu,
            slot: SlotRef(slot),
            _not_send: PhantomData,
        }
    }

    /// The domain this section belongs to.
    ///
    /// ```
    /// use rcu_reclaim::Rcu;
    /// let guard = Rcu::global().read_lock();
    /// assert_eq!(guard.domain().id(), Rcu::global().id());
    /// ```
    pub fn domain(&self) -> &'a Rcu {
        self.rcu
    }

    /// The mutation check of the loom model of a guard's section: ends
    /// the section as the guard's drop does, but with a relaxed store of
    /// the slot's `0`, which no longer orders the section's reads before a
    /// writer that reads it. Never use it: the model must fail with it.
    #[cfg(loom)]
    #[doc(hidden)]
    pub fn unlock_relaxed_for_loom_mutation(self) {
        let this = std::mem::ManuallyDrop::new(self);
        // SAFETY: as in `drop`: the guard's slot, on the thread that owns it.
        let s = unsafe { &**this.slot };
        reader::section_exit_relaxed(s, this.rcu.registry(), this.rcu.flavor());
    }
}

impl Drop for ReadGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: see `enter`; the guard never left this thread.
        let s = unsafe { &**self.slot };
        reader::section_exit(s, self.rcu.registry(), self.rcu.flavor());
    }
}

impl std::fmt::Debug for ReadGuard<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadGuard")
            .field("domain", &self.rcu.id())
            .finish_non_exhaustive()
    }
}
