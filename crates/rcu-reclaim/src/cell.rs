//! `RcuCell<T>`: a pointer that readers load inside a read-side section and
//! writers replace, with the old value handed back as [`Retired`] until a
//! grace period makes it safe to free.

use std::fmt;
use std::marker::PhantomData;
use std::ptr::{self, NonNull};
use std::sync::atomic::Ordering;

use crate::domain::{Rcu, WaitInstead};
use crate::guard::ReadSection;
use crate::size::ReclaimSize;
use crate::sync::{acq_rel_for_loom, ord_for_loom, weigh_caught, AtomicPtr};
use crate::Retired;

/// An RCU-protected, optionally empty, heap value.
///
/// Readers [`load`](RcuCell::load) it inside a read-side section at the cost
/// of one acquire load; writers [`replace`](RcuCell::replace) it and get the
/// old value back as a [`Retired`], which becomes a plain `Box` again only
/// after a grace period. The cell belongs to one domain (the global one for
/// [`RcuCell::new`]); loading with a guard of another domain panics.
///
/// ```
/// use rcu_reclaim::{Rcu, RcuCell};
/// #[derive(Debug)]
/// struct Route { next_hop: u32 }
/// let table = RcuCell::new(Route { next_hop: 1 });
/// let rcu = Rcu::global();
/// {
///     let guard = rcu.read_lock();
///     assert_eq!(table.load(&guard).unwrap().next_hop, 1);
/// }
/// let old = table.replace(Box::new(Route { next_hop: 2 })).unwrap();
/// let old: Box<Route> = old.into_box(); // waits for a grace period
/// assert_eq!(old.next_hop, 1);
/// ```
///
/// It moves to, and is shared with, other threads only if `T` is `Send`
/// and `Sync` (readers on other threads borrow the value, writers there
/// drop it). A cell of `Rc` stays on its thread:
///
/// ```compile_fail,E0277
/// let cell = rcu_reclaim::RcuCell::new(std::rc::Rc::new(1));
/// std::thread::spawn(move || drop(cell)); // error: `Rc<i32>` cannot be sent between threads safely
/// ```
///
/// and a cell of `Cell` is not shared, not even with a scoped thread:
///
/// ```compile_fail,E0277
/// let cell = rcu_reclaim::RcuCell::new(std::cell::Cell::new(1));
/// std::thread::scope(|s| {
///     // error: `Cell<i32>` cannot be shared between threads safely
///     s.spawn(|| cell.load(&cell.domain().read_lock()).map(|c| c.get()));
/// });
/// ```
///
/// With a `Sync` value it is:
///
/// ```
/// use std::sync::atomic::{AtomicU32, Ordering};
/// let cell = rcu_reclaim::RcuCell::new(AtomicU32::new(1));
/// std::thread::scope(|s| {
///     s.spawn(|| cell.load(&cell.domain().read_lock()).map(|c| c.load(Ordering::Relaxed)));
/// });
/// ```
///
/// It is invariant in `T`: a cell of `&'static str` cannot pass for a cell
/// of shorter-lived strings, into which a writer could then store one that
/// readers would find after it died:
///
/// ```compile_fail
/// use rcu_reclaim::RcuCell;
/// fn shorten<'a>(c: &'a RcuCell<&'static str>) -> &'a RcuCell<&'a str> {
///     c // error: lifetime may not live long enough
/// }
/// ```
pub struct RcuCell<T> {
    ptr: AtomicPtr<T>,
    rcu: Rcu,
    _owns: PhantomData<Box<T>>,
}

// SAFETY: the cell owns a `T` that readers on other threads borrow (`&T`,
// needs `T: Sync`) and that writers on other threads move out and drop
// (needs `T: Send`).
unsafe impl<T: Send + Sync> Send for RcuCell<T> {}
// SAFETY: as above.
unsafe impl<T: Send + Sync> Sync for RcuCell<T> {}

fn into_raw<T>(value: Option<Box<T>>) -> *mut T {
    value.map_or(ptr::null_mut(), Box::into_raw)
}

impl<T> RcuCell<T> {
    /// A cell of the global domain holding `value`.
    ///
    /// ```
    /// let cell = rcu_reclaim::RcuCell::new(7);
    /// let guard = rcu_reclaim::Rcu::global().read_lock();
    /// assert_eq!(cell.load(&guard), Some(&7));
    /// ```
    #[cfg(not(loom))]
    pub fn new(value: T) -> Self {
        Self::new_in(Rcu::global(), Some(Box::new(value)))
    }

    /// A cell of domain `rcu`, holding `value` (a `Box<T>`, or an
    /// `Option<Box<T>>`: `None` for an empty cell). Unlike
    /// [`new`](RcuCell::new), it does not box a plain value for you:
    /// write `RcuCell::new_in(&rcu, Box::new(5u32))` (with a bare `5u32`
    /// the compiler says that `Option<Box<_>>: From<u32>` is not
    /// satisfied).
    ///
    /// ```
    /// use rcu_reclaim::{Config, Rcu, RcuCell};
    /// let rcu = Rcu::new(Config::new()).unwrap();
    /// let empty: RcuCell<u32> = RcuCell::new_in(&rcu, None);
    /// assert!(empty.load(&rcu.read_lock()).is_none());
    /// let full = RcuCell::new_in(&rcu, Box::new(7u32));
    /// assert_eq!(full.load(&rcu.read_lock()), Some(&7));
    /// ```
    pub fn new_in(rcu: &Rcu, value: impl Into<Option<Box<T>>>) -> Self {
        RcuCell {
            ptr: AtomicPtr::new(into_raw(value.into())),
            rcu: rcu.clone(),
            _owns: PhantomData,
        }
    }

    /// The domain whose grace periods protect this cell.
    ///
    /// ```
    /// let cell = rcu_reclaim::RcuCell::new(1);
    /// assert_eq!(cell.domain().id(), rcu_reclaim::Rcu::global().id());
    /// ```
    pub fn domain(&self) -> &Rcu {
        &self.rcu
    }

    /// The current value, valid while both the guard and the borrow of the
    /// cell last. The guard is a [`ReadGuard`](crate::ReadGuard) or, on a
    /// QSBR domain, a [`QsbrGuard`](crate::QsbrGuard).
    ///
    /// # Panics
    /// If `guard` belongs to another domain than the cell.
    ///
    /// ```
    /// let cell = rcu_reclaim::RcuCell::new("hello");
    /// let guard = cell.domain().read_lock();
    /// assert_eq!(cell.load(&guard), Some(&"hello"));
    /// ```
    ///
    /// The reference lives no longer than the section:
    ///
    /// ```compile_fail,E0597
    /// let cell = rcu_reclaim::RcuCell::new(1);
    /// let r = {
    ///     let guard = cell.domain().read_lock();
    ///     cell.load(&guard).unwrap() // error: `guard` does not live long enough
    /// };
    /// println!("{r}");
    /// ```
    ///
    /// nor moves to a thread that may outlive the section (`&T` is `Send`
    /// for `T: Sync`, but a spawned thread needs `'static`):
    ///
    /// ```compile_fail,E0597
    /// let cell = rcu_reclaim::RcuCell::new(1);
    /// let guard = cell.domain().read_lock();
    /// let r = cell.load(&guard).unwrap();
    /// std::thread::spawn(move || println!("{r}")); // error: `guard` does not live long enough
    /// ```
    ///
    /// (a scoped thread, which ends before the section, may read it:)
    ///
    /// ```
    /// let cell = rcu_reclaim::RcuCell::new(1);
    /// let guard = cell.domain().read_lock();
    /// let r = cell.load(&guard).unwrap();
    /// std::thread::scope(|s| s.spawn(move || assert_eq!(*r, 1)).join().unwrap());
    /// ```
    ///
    /// nor is it used after the guard is dropped:
    ///
    /// ```compile_fail,E0505
    /// let cell = rcu_reclaim::RcuCell::new(1);
    /// let guard = cell.domain().read_lock();
    /// let r = cell.load(&guard).unwrap();
    /// drop(guard); // error: cannot move out of `guard` because it is borrowed
    /// println!("{r}");
    /// ```
    ///
    /// or forgotten (leaking a guard is safe, but only once nothing read
    /// under it is in use):
    ///
    /// ```compile_fail,E0505
    /// let cell = rcu_reclaim::RcuCell::new(1);
    /// let guard = cell.domain().read_lock();
    /// let r = cell.load(&guard).unwrap();
    /// std::mem::forget(guard); // error: cannot move out of `guard` because it is borrowed
    /// println!("{r}");
    /// ```
    ///
    /// nor returned from the function that took the guard:
    ///
    /// ```compile_fail,E0515
    /// use rcu_reclaim::RcuCell;
    /// fn first(cell: &RcuCell<u32>) -> &u32 {
    ///     let guard = cell.domain().read_lock();
    ///     cell.load(&guard).unwrap() // error: returns a value referencing data owned by the current function
    /// }
    /// ```
    ///
    /// nor does it outlive the cell, which frees its value when dropped:
    ///
    /// ```compile_fail,E0505
    /// let cell = rcu_reclaim::RcuCell::new(1);
    /// let guard = rcu_reclaim::Rcu::global().read_lock();
    /// let r = cell.load(&guard).unwrap();
    /// drop(cell); // error: cannot move out of `cell` because it is borrowed
    /// println!("{r}");
    /// ```
    #[inline]
    #[track_caller]
    pub fn load<'a, G: ReadSection>(&'a self, guard: &'a G) -> Option<&'a T> {
        assert!(
            guard.domain().id() == self.rcu.id(),
            "rcu-reclaim: RcuCell::load with a guard (ReadGuard or QsbrGuard) of {} on a cell of {}; \
             take the guard from cell.domain().read_lock() (or the domain's QsbrThread)",
            Rcu::name_of(guard.domain().id()),
            Rcu::name_of(self.rcu.id())
        );
        let p = self
            .ptr
            .load(ord_for_loom("cell.load.acquire", Ordering::Acquire));
        // SAFETY: a non-null pointer in the cell came from `Box::into_raw`
        // and was published with Release. It is freed only after being
        // unlinked and a grace period elapsing (`Retired`), or when the cell
        // is dropped; the guard keeps any grace period that started after the
        // load from completing, and the `&'a self` borrow keeps the cell alive.
        unsafe { p.as_ref() }
    }

    /// A clone of the current value, made inside a read-side section of the
    /// cell's domain that ends before it returns: arc-swap's `load_full`
    /// for an `RcuCell<Arc<T>>` (the clone is a reference count), or a
    /// copy of a small value. Where a reference will do, [`load`](RcuCell::load)
    /// under a guard clones nothing; a clone is what to keep across an
    /// `.await`, a blocking call or a long computation, which a guard
    /// (`!Send`, and holding back every grace period while it lives) is not.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use rcu_reclaim::RcuCell;
    /// let config = RcuCell::new(Arc::new(String::from("v1")));
    /// let snapshot: Arc<String> = config.load_cloned().unwrap();
    /// config.store(Box::new(Arc::new(String::from("v2"))));
    /// assert_eq!(*snapshot, "v1"); // kept alive by its count
    /// assert_eq!(*config.load_cloned().unwrap(), "v2");
    /// ```
    ///
    /// On a [`Flavor::Qsbr`](crate::Flavor::Qsbr) domain the section is a
    /// [`Rcu::read_lock`] guard, which works on any thread (registered or
    /// not) at the mb flavor's cost.
    #[track_caller]
    pub fn load_cloned(&self) -> Option<T>
    where
        T: Clone,
    {
        let guard = self.rcu.read_lock();
        self.load(&guard).cloned()
    }

    /// Runs `f` on the current value inside a read-side section of the
    /// cell's domain that ends when `f` returns: a read in one call, with
    /// no guard to hold and nothing cloned (arc-swap's `load()` and a
    /// closure). For several loads in one section, or a reference to keep
    /// for a while, take a guard ([`Rcu::read_lock`](crate::Rcu::read_lock))
    /// and [`load`](RcuCell::load).
    ///
    /// ```
    /// use rcu_reclaim::RcuCell;
    /// let routes = RcuCell::new(vec![("10.0.0.0/8", "eth0"), ("0.0.0.0/0", "eth1")]);
    /// let via = routes.read(|r| r.map_or(0, |r| r.len()));
    /// assert_eq!(via, 2);
    /// ```
    ///
    /// The value is borrowed for the closure's run only, so no reference
    /// to it outlives the section:
    ///
    /// ```compile_fail
    /// let cell = rcu_reclaim::RcuCell::new(String::from("v1"));
    /// let s: &String = cell.read(|v| v.unwrap()); // error: the borrow escapes
    /// ```
    ///
    /// On a [`Flavor::Qsbr`](crate::Flavor::Qsbr) domain the section is a
    /// [`Rcu::read_lock`](crate::Rcu::read_lock) guard, as for
    /// [`load_cloned`](RcuCell::load_cloned).
    #[track_caller]
    pub fn read<R>(&self, f: impl FnOnce(Option<&T>) -> R) -> R {
        let guard = self.rcu.read_lock();
        f(self.load(&guard))
    }

    /// Publishes `value` (or empties the cell with `None`) and returns the
    /// previous value, which readers may still be using.
    ///
    /// ```
    /// let cell = rcu_reclaim::RcuCell::new(1);
    /// let old = cell.replace(Box::new(2)).unwrap();
    /// assert_eq!(*old.into_box(), 1);
    /// ```
    ///
    /// Dropping the returned [`Retired`] waits for a grace period; to
    /// publish without waiting, use [`store`](RcuCell::store), or hand the
    /// old value to [`Retired::defer_drop`]. Throwing it away is warned
    /// about:
    ///
    /// ```compile_fail
    /// #![deny(unused_must_use)]
    /// let cell = rcu_reclaim::RcuCell::new(1);
    /// cell.replace(Box::new(2)); // error: dropping the old value here waits
    /// ```
    ///
    /// Mind the drop order inside a read-side section: a `Retired` dropped
    /// while a guard of its domain is alive would wait for a grace period
    /// that the guard holds up, so it panics (naming the fix) and leaks the
    /// value. A binding made after the guard's is dropped before it: hand
    /// the old value to [`Retired::defer_drop`], or end the section first.
    ///
    /// ```
    /// let cell = rcu_reclaim::RcuCell::new(1);
    /// let guard = cell.domain().read_lock();
    /// let old = cell.replace(Box::new(2)).unwrap();
    /// assert_eq!(*old, 1); // readers may still see it: it derefs until freed
    /// old.defer_drop(); // freed after the grace period, without waiting
    /// assert_eq!(cell.load(&guard), Some(&2));
    /// ```
    #[must_use = "dropping the returned Retired waits for a grace period: to publish without \
                  waiting use store(), or call defer_drop() on it"]
    #[track_caller]
    pub fn replace(&self, value: impl Into<Option<Box<T>>>) -> Option<Retired<T>> {
        let old = self.swap_out(value.into())?;
        // SAFETY: `old` came from `Box::into_raw` and was just unlinked.
        Some(unsafe { Retired::unlinked(old.as_ptr(), &self.rcu) })
    }

    /// Publishes `value` and returns the value it unlinked (from
    /// `Box::into_raw`; readers may still hold `&T` to it).
    #[track_caller]
    fn swap_out(&self, value: Option<Box<T>>) -> Option<NonNull<T>> {
        updating::check_not_in_update_of(self);
        let new = into_raw(value);
        NonNull::new(self.ptr.swap(
            new,
            acq_rel_for_loom("cell.swap_out.release_half", "cell.swap_out.acquire_half"),
        ))
    }

    /// Publishes `value` and hands the old value, booked at `weigh(&old)`,
    /// to the callback engine (`retire_unlinked`). No `Retired` is made:
    /// it would clone the domain's handle, a reference count every writer
    /// of every cell in the domain would increment and decrement.
    #[track_caller]
    fn store_retiring(&self, value: Box<T>, weigh: impl FnOnce(&T) -> usize, anywhere: bool)
    where
        T: Send + 'static,
    {
        if let Some(old) = self.swap_out(Some(value)) {
            self.retire_unlinked(old, weigh, anywhere);
        }
    }

    /// Hands `old`, just unlinked from this cell (from `Box::into_raw`),
    /// to the callback engine, booked at `weigh(&old)`; a panic of `weigh`
    /// goes on after the value is retired (booking its inline size).
    fn retire_unlinked(&self, old: NonNull<T>, weigh: impl FnOnce(&T) -> usize, anywhere: bool)
    where
        T: Send + 'static,
    {
        // SAFETY: unlinked but not freed (it is handed over only below),
        // and only shared, as readers have it.
        let (bytes, panic) =
            weigh_caught(std::mem::size_of::<T>(), || weigh(unsafe { old.as_ref() }));
        // SAFETY: from `Box::into_raw`, unlinked, and handed over here.
        unsafe { self.rcu.defer_drop_raw_as(old, bytes, anywhere) };
        if let Some(panic) = panic {
            std::panic::resume_unwind(panic);
        }
    }

    /// Publishes `value`, waits for a grace period, and drops the old value.
    ///
    /// # Panics
    /// Inside a read-side section of the cell's domain (the wait would never end).
    ///
    /// ```
    /// let cell = rcu_reclaim::RcuCell::new(vec![1, 2, 3]);
    /// cell.store_sync(Box::new(vec![4]));
    /// assert_eq!(cell.load(&cell.domain().read_lock()), Some(&vec![4]));
    /// ```
    #[track_caller]
    pub fn store_sync(&self, value: Box<T>) {
        self.rcu.assert_not_in_section(
            "RcuCell::store_sync()",
            WaitInstead::Retire("RcuCell::store()"),
        );
        drop(self.replace(value).map(Retired::into_box));
    }

    /// Publishes `value` and defers the drop of the old value until after a
    /// grace period ([`Rcu::defer_drop`]), booking the old value's
    /// [`ReclaimSize::reclaim_size`]: its heap included, so reclaim and
    /// pressure see what the grace period will free. Never blocks for
    /// long: it waits, bounded, only while garbage piles up (a grace
    /// period held up by a preempted reader, at most 2 ms; under a
    /// pressure signal, 10 ms to 1 s; in a domain whose garbage is bounded
    /// by a memory limit, as [`sources::auto_pressure`](crate::sources::auto_pressure)
    /// sets it in a cgroup, at most 1 s) or when no bulk page can be had;
    /// inside a read-side section the section pays when it ends. The
    /// [`locking`](crate::locking) table lists every wait. Usable inside a
    /// read-side section. Memory stays bounded only where something puts the
    /// domain under pressure (a monitor from
    /// [`sources::auto_pressure`](crate::sources::auto_pressure), a
    /// [`MemoryBudget`](crate::reclaim::MemoryBudget)) and readers leave
    /// their sections: each value stored while a reader stays in its section
    /// waits for that reader. For large values replaced at full speed,
    /// [`store_sync`](RcuCell::store_sync) frees each old value before it
    /// returns. For a
    /// type without `ReclaimSize`, or a custom size, see
    /// [`store_weighed`](RcuCell::store_weighed).
    ///
    /// ```
    /// let cell = rcu_reclaim::RcuCell::new(String::from("v1"));
    /// cell.store(Box::new(String::from("v2")));
    /// assert_eq!(cell.load(&cell.domain().read_lock()).unwrap(), "v2");
    /// ```
    ///
    /// With the garbage bounded (a process at 97 MiB of a 100 MiB mark),
    /// a store whose old value fills the room left returns once it is
    /// freed (waiting for it if need be: `Stats::headroom_waits`), with no
    /// pressure signal:
    ///
    /// ```
    /// use rcu_reclaim::{Config, Rcu, RcuCell};
    /// let rcu = Rcu::new(Config::new()).unwrap();
    /// rcu.bound_garbage(100 << 20, || Some(97 << 20));
    /// let cell = RcuCell::new_in(&rcu, Box::new(vec![0u8; 4 << 20]));
    /// cell.store(Box::new(vec![1u8; 4 << 20]));
    /// assert!(rcu.pending_bytes() < 4 << 20);
    /// ```
    ///
    /// The old value is dropped later, maybe on another thread, so it must
    /// be `Send`:
    ///
    /// ```compile_fail,E0277
    /// let cell = rcu_reclaim::RcuCell::new(std::rc::Rc::new(1));
    /// cell.store(Box::new(std::rc::Rc::new(2))); // error: `Rc<i32>` cannot be sent between threads safely
    /// ```
    ///
    /// and `'static`, as it may be dropped after everything it borrows:
    ///
    /// ```compile_fail,E0597
    /// let x = 1u32;
    /// let cell = rcu_reclaim::RcuCell::new(&x);
    /// cell.store(Box::new(&x)); // error: `x` does not live long enough
    /// ```
    #[track_caller]
    pub fn store(&self, value: Box<T>)
    where
        T: ReclaimSize + Send + 'static,
    {
        self.store_retiring(value, T::reclaim_size, crate::drops_anywhere::<T>());
    }

    /// As [`store`](RcuCell::store), booking `weigh(&old)` bytes for the
    /// old value: the opt-in for a type without [`ReclaimSize`] or a size
    /// of the caller's choosing (`std::mem::size_of_val` books the inline
    /// bytes only; `|_| n` a fixed size). `weigh` runs only if the cell
    /// held a value.
    ///
    /// ```
    /// use rcu_reclaim::{Config, Rcu, RcuCell};
    /// struct Blob { data: Vec<u8> } // no ReclaimSize
    /// let rcu = Rcu::new(Config::new().on_demand()).unwrap();
    /// let cell = RcuCell::new_in(&rcu, Some(Box::new(Blob { data: vec![0; 1000] })));
    /// cell.store_weighed(Box::new(Blob { data: vec![] }), |old| old.data.capacity());
    /// assert_eq!(rcu.pending_bytes(), 1000);
    /// rcu.barrier();
    /// ```
    #[track_caller]
    pub fn store_weighed(&self, value: Box<T>, weigh: impl FnOnce(&T) -> usize)
    where
        T: Send + 'static,
    {
        self.store_retiring(value, weigh, !std::mem::needs_drop::<T>());
    }

    /// Publishes `new` if the cell still holds `current` (the value a
    /// [`load`](RcuCell::load) under `guard` returned, compared by
    /// address; `None`: empty), and returns the previous value, which
    /// readers may still be using. Otherwise hands `new` back with the
    /// value the cell holds now. Several writers can so update a cell
    /// without a lock: see [`update`](RcuCell::update), which loops on it.
    ///
    /// The guard keeps `current` from being freed and its address reused
    /// by another value while the caller holds it, so a successful
    /// exchange means no other writer published in between. Except for a
    /// zero-sized `T`: every boxed value of it has the same (dangling)
    /// address, so the exchange cannot tell them apart and succeeds
    /// whenever the cell holds a value and `current` is `Some`, also after
    /// other writers published (each value is still dropped once).
    ///
    /// The previous value comes back as a [`Retired`]: hand it to
    /// [`Retired::defer_drop`] to book its heap size, or simply drop it;
    /// dropped inside the section (as `.is_ok()` on the result does) it is
    /// deferred at its inline size, never waited for.
    ///
    /// # Panics
    /// If `guard` belongs to another domain than the cell.
    ///
    /// ```
    /// use rcu_reclaim::RcuCell;
    /// let cell = RcuCell::new(String::from("v1"));
    /// let guard = cell.domain().read_lock();
    /// let seen = cell.load(&guard);
    /// // The previous value, dropped at once inside the section, is deferred.
    /// assert!(cell.compare_exchange(seen, Some(Box::new("v2".into())), &guard).is_ok());
    /// let seen = cell.load(&guard);
    /// if let Ok(Some(old)) = cell.compare_exchange(seen, Some(Box::new("v3".into())), &guard) {
    ///     old.defer_drop(); // books its heap bytes too
    /// }
    /// drop(guard);
    /// cell.domain().barrier(); // both old values freed
    /// ```
    ///
    /// ```
    /// use rcu_reclaim::RcuCell;
    /// let cell = RcuCell::new(1);
    /// let guard = cell.domain().read_lock();
    /// let seen = cell.load(&guard);
    /// cell.store(Box::new(2)); // another writer gets there first
    /// let lost = cell.compare_exchange(seen, Some(Box::new(10)), &guard).unwrap_err();
    /// assert_eq!(lost.current, Some(&2));
    /// let won = cell.compare_exchange(lost.current, lost.new, &guard);
    /// assert!(matches!(won, Ok(Some(_))));
    /// drop(guard);
    /// assert_eq!(cell.load(&cell.domain().read_lock()), Some(&10));
    /// ```
    ///
    /// The value a failed exchange hands back lives no longer than the guard:
    ///
    /// ```compile_fail,E0505
    /// let cell = rcu_reclaim::RcuCell::new(1);
    /// let guard = cell.domain().read_lock();
    /// let e = cell.compare_exchange(None, Some(Box::new(2)), &guard).unwrap_err();
    /// drop(guard); // error: cannot move out of `guard` because it is borrowed
    /// println!("{:?}", e.current);
    /// ```
    #[track_caller]
    pub fn compare_exchange<'g, G: ReadSection>(
        &'g self,
        current: Option<&T>,
        new: Option<Box<T>>,
        guard: &'g G,
    ) -> Result<Option<Retired<T>>, CompareExchangeError<'g, T>>
    where
        T: Send + 'static,
    {
        let old = self.exchange(current, new, guard)?;
        // SAFETY: `old` came from `Box::into_raw` and was just unlinked.
        Ok(old.map(|old| {
            unsafe { Retired::unlinked(old.as_ptr(), &self.rcu) }.deferring_in_section()
        }))
    }

    /// `compare_exchange`, giving the unlinked value as the raw pointer it
    /// is (from `Box::into_raw`; readers may still hold `&T` to it).
    #[track_caller]
    fn exchange<'g, G: ReadSection>(
        &'g self,
        current: Option<&T>,
        new: Option<Box<T>>,
        guard: &'g G,
    ) -> Result<Option<NonNull<T>>, CompareExchangeError<'g, T>> {
        assert!(
            guard.domain().id() == self.rcu.id(),
            "rcu-reclaim: RcuCell::compare_exchange with a guard of {} on a cell of \
             {}; take the guard from cell.domain().read_lock() (or the domain's QsbrThread)",
            Rcu::name_of(guard.domain().id()),
            Rcu::name_of(self.rcu.id())
        );
        updating::check_not_in_update_of(self);
        let expected = current.map_or(ptr::null_mut(), |c| ptr::from_ref(c).cast_mut());
        let new = into_raw(new);
        match self.ptr.compare_exchange(
            expected,
            new,
            acq_rel_for_loom("cell.exchange.release_half", "cell.exchange.acquire_half"),
            Ordering::Acquire,
        ) {
            Ok(old) => Ok(NonNull::new(old)),
            Err(now) => Err(CompareExchangeError {
                // SAFETY: `new` came from `into_raw` above and was not
                // published (the exchange failed).
                new: (!new.is_null()).then(|| unsafe { Box::from_raw(new) }),
                // SAFETY: as in `load`: a non-null pointer in the cell was
                // published with Release and read with Acquire, and the
                // guard (of this domain, checked above) keeps it from being
                // freed for `'g`.
                current: unsafe { now.as_ref() },
            }),
        }
    }

    /// Read-copy-update in one call: `f` makes the new value from the
    /// current one (`None`: empty; returning `None` empties the cell), and
    /// the cell publishes it unless another writer published first, in
    /// which case `f` runs again on the newer value. Writers need no lock
    /// (a lock-free loop on [`compare_exchange`](RcuCell::compare_exchange));
    /// the old value is retired as by [`store`](RcuCell::store). `f` runs
    /// inside a read-side section of the cell's domain: it must not wait
    /// for a grace period, and a value it made that lost the race is
    /// dropped there at once (it was never published). Returns how many
    /// times `f` ran.
    ///
    /// # Panics
    /// If `f` writes to this cell (`store`, `replace`, `take`,
    /// `compare_exchange`, `update`), in that write: each such write would
    /// make the exchange fail and `f` run again, for ever; also when the
    /// write comes from an update of another cell nested inside `f`, however
    /// deep, or from the `Drop` of a value `f` made that lost the race
    /// (each such drop would make the next exchange fail in turn).
    ///
    /// ```
    /// use std::sync::Arc;
    /// let hits = Arc::new(rcu_reclaim::RcuCell::new(0u64));
    /// let writers: Vec<_> = (0..4)
    ///     .map(|_| {
    ///         let hits = hits.clone();
    ///         std::thread::spawn(move || {
    ///             for _ in 0..1000 {
    ///                 hits.update(|n| Some(Box::new(n.map_or(0, |n| n + 1))));
    ///             }
    ///         })
    ///     })
    ///     .collect();
    /// writers.into_iter().for_each(|w| w.join().unwrap());
    /// assert_eq!(hits.load(&hits.domain().read_lock()), Some(&4000));
    /// ```
    #[track_caller]
    pub fn update(&self, mut f: impl FnMut(Option<&T>) -> Option<Box<T>>) -> usize
    where
        T: ReclaimSize + Send + 'static,
    {
        let mut runs = 0;
        let old = {
            let guard = self.rcu.read_lock();
            let mut current = self.load(&guard);
            loop {
                runs += 1;
                let new = updating::run_for(self, || f(current));
                match self.exchange(current, new, &guard) {
                    Ok(old) => break old,
                    // The value `f` made lost the race: never published,
                    // dropped here, marked as `f` is: a `Drop` that wrote
                    // to this cell would make every later exchange fail
                    // (a value of each run dropped, each writing), and
                    // the loop would run for ever.
                    Err(lost) => {
                        current = lost.current;
                        updating::run_for(self, || drop(lost.new));
                    }
                }
            }
            // The guard's section ends here: the retire below may free
            // ready values.
        };
        if let Some(old) = old {
            // No `Retired` (see `store_retiring`).
            self.retire_unlinked(old, T::reclaim_size, crate::drops_anywhere::<T>());
        }
        runs
    }

    /// Empties the cell, returning the old value.
    ///
    /// ```
    /// let cell = rcu_reclaim::RcuCell::new(5);
    /// assert_eq!(*cell.take().unwrap().into_box(), 5);
    /// assert!(cell.take().is_none());
    /// ```
    #[must_use = "dropping the returned Retired waits for a grace period: call defer_drop() on \
                  it to free it without waiting"]
    #[track_caller]
    pub fn take(&self) -> Option<Retired<T>> {
        self.replace(None)
    }

    /// The value, for a caller that owns the cell (no reader can be using it).
    ///
    /// ```
    /// let mut cell = rcu_reclaim::RcuCell::new(1);
    /// *cell.get_mut().unwrap() += 1;
    /// assert_eq!(cell.into_inner().map(|b| *b), Some(2));
    /// ```
    pub fn get_mut(&mut self) -> Option<&mut T> {
        // SAFETY: `&mut self` excludes readers (`load` borrows the cell), and
        // the pointer is null or from `Box::into_raw`.
        unsafe { self.ptr.load(Ordering::Relaxed).as_mut() }
    }

    /// The value, consuming the cell.
    ///
    /// ```
    /// let cell = rcu_reclaim::RcuCell::new('x');
    /// assert_eq!(cell.into_inner().map(|b| *b), Some('x'));
    /// ```
    pub fn into_inner(self) -> Option<Box<T>> {
        let p = self.ptr.swap(ptr::null_mut(), Ordering::Relaxed);
        // SAFETY: as in `get_mut`; the cell no longer points to it.
        (!p.is_null()).then(|| unsafe { Box::from_raw(p) })
    }
}

/// The cells whose [`RcuCell::update`] closure runs on this thread: a
/// write to one of them from inside its closure panics instead of making
/// the update retry for ever.
mod updating {
    /// Updates marked in a fixed array per thread (nested in each other's
    /// closures); deeper ones go on a growable list.
    #[cfg(not(loom))]
    const NESTED: usize = 8;

    /// How many update closures run on this thread, in a thread-local of
    /// `sync`, where the domain's misuse panic reads it.
    #[cfg(not(loom))]
    use crate::sync::CELL_UPDATE_DEPTH as DEPTH;

    #[cfg(not(loom))]
    std::thread_local! {
        /// The cells (addresses) of the first [`NESTED`] of them.
        static CELLS: [std::cell::Cell<usize>; NESTED] =
            const { [const { std::cell::Cell::new(0) }; NESTED] };
        /// The cells of the updates nested deeper, in order. Once this
        /// thread-local is gone (an update run from a late thread-local
        /// destructor), the deeper ones run unchecked.
        static DEEPER: std::cell::RefCell<Vec<usize>> =
            const { std::cell::RefCell::new(Vec::new()) };
    }

    /// Runs `f`, an update closure of `cell`, marking the thread as inside
    /// it (also should `f` unwind).
    pub(super) fn run_for<C, R>(cell: &C, f: impl FnOnce() -> R) -> R {
        #[cfg(not(loom))]
        {
            /// Takes the mark back.
            struct Mark;
            impl Drop for Mark {
                fn drop(&mut self) {
                    let depth = DEPTH.get() - 1;
                    if depth < NESTED {
                        CELLS.with(|cells| cells[depth].set(0));
                    } else {
                        let _ = DEEPER.try_with(|d| d.borrow_mut().pop());
                    }
                    DEPTH.set(depth);
                }
            }
            let depth = DEPTH.get();
            let me = cell as *const C as usize;
            if depth < NESTED {
                CELLS.with(|cells| cells[depth].set(me));
            } else {
                let _ = DEEPER.try_with(|d| d.borrow_mut().push(me));
            }
            DEPTH.set(depth + 1);
            let _mark = Mark;
            f()
        }
        #[cfg(loom)]
        {
            let _ = cell;
            f()
        }
    }

    /// Panics if `cell`'s update closure runs on this thread (one load of
    /// a thread-local otherwise).
    #[inline]
    #[track_caller]
    pub(super) fn check_not_in_update_of<C>(cell: &C) {
        #[cfg(not(loom))]
        if DEPTH.get() > 0 {
            check_slow(cell as *const C as usize);
        }
        #[cfg(loom)]
        let _ = cell;
    }

    #[cfg(not(loom))]
    #[cold]
    #[inline(never)]
    #[track_caller]
    fn check_slow(me: usize) {
        let depth = DEPTH.get();
        let in_first = CELLS.with(|cells| cells[..depth.min(NESTED)].iter().any(|c| c.get() == me));
        let in_deeper = || {
            DEEPER
                .try_with(|d| d.borrow().contains(&me))
                .unwrap_or(false)
        };
        if in_first || (depth > NESTED && in_deeper()) {
            panic!(
                "rcu-reclaim: RcuCell::update's closure wrote to the same cell (store, replace, \
                 take, compare_exchange or update; or the Drop of a value it made that lost the \
                 race did): the update could never publish (each such write makes it run the \
                 closure again, for ever); return the new value from the closure, or write \
                 after update returns"
            );
        }
    }
}

/// A failed [`RcuCell::compare_exchange`]: the value the cell holds now,
/// and the value that was not published, handed back.
///
/// ```
/// let cell = rcu_reclaim::RcuCell::new(1);
/// let guard = cell.domain().read_lock();
/// let e = cell.compare_exchange(None, Some(Box::new(2)), &guard).unwrap_err();
/// assert_eq!((e.current, e.new.as_deref()), (Some(&1), Some(&2)));
/// ```
pub struct CompareExchangeError<'g, T> {
    /// What the cell holds now (valid while the guard lasts).
    pub current: Option<&'g T>,
    /// The value given to publish, back to the caller.
    pub new: Option<Box<T>>,
}

impl<T: fmt::Debug> fmt::Debug for CompareExchangeError<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompareExchangeError")
            .field("current", &self.current)
            .field("new", &self.new)
            .finish()
    }
}

/// A cell of the global domain holding `value`, as [`RcuCell::new`].
///
/// ```
/// let cell = rcu_reclaim::RcuCell::from(vec![1u8, 2, 3]);
/// assert_eq!(cell.load(&cell.domain().read_lock()).map(Vec::len), Some(3));
/// ```
#[cfg(not(loom))]
impl<T> From<T> for RcuCell<T> {
    fn from(value: T) -> Self {
        Self::new(value)
    }
}

/// An empty cell of the global domain.
///
/// ```
/// let cell: rcu_reclaim::RcuCell<String> = Default::default();
/// assert!(cell.load(&cell.domain().read_lock()).is_none());
/// ```
#[cfg(not(loom))]
impl<T> Default for RcuCell<T> {
    fn default() -> Self {
        Self::new_in(Rcu::global(), None)
    }
}

impl<T> Drop for RcuCell<T> {
    fn drop(&mut self) {
        let p = self.ptr.load(Ordering::Relaxed);
        if !p.is_null() {
            // SAFETY: dropping needs ownership, and every reference from
            // `load` borrows the cell, so none is left; the pointer came from
            // `Box::into_raw`.
            drop(unsafe { Box::from_raw(p) });
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for RcuCell<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let guard = self.rcu.read_lock();
        f.debug_tuple("RcuCell").field(&self.load(&guard)).finish()
    }
}
