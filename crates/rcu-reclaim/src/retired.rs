//! `Retired<T>`: a value unlinked from an [`RcuCell`] that readers
//! may still hold, until a grace period turns it back into a `Box`.

use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::ptr::NonNull;

use crate::domain::{Rcu, WaitInstead};
use crate::size::ReclaimSize;
use crate::sync::weigh_caught;
use crate::synchronize::Cookie;
#[cfg(doc)]
use crate::RcuCell;

/// A value unlinked from an [`RcuCell`] that readers may still be using.
///
/// It turns back into a `Box` once a grace period has elapsed since the
/// unlink: [`into_box`](Retired::into_box) waits for one (sharing it with
/// other waiters), [`try_into_box`](Retired::try_into_box) never waits.
/// [`defer_drop`](Retired::defer_drop) hands it to the callback engine.
/// Dropping a `Retired` waits for the grace period, then drops the value, so
/// nothing is freed early and nothing leaks (unless that wait panics: the
/// value is then leaked, never dropped as the panic unwinds). Inside a
/// read-side section of its domain no grace period can end, so there the
/// drop of one from [`RcuCell::compare_exchange`] (always called inside a
/// section) hands the value to the callback engine, as
/// [`defer_drop_sized`](Retired::defer_drop_sized) with its inline size
/// would; one from [`RcuCell::replace`] or [`RcuCell::take`] (whose `T`
/// need not be `Send`) panics, naming the fix, and leaks the value rather
/// than free it under readers.
///
/// ```
/// use rcu_reclaim::RcuCell;
/// let cell = RcuCell::new(String::from("old"));
/// let retired = cell.replace(Box::new(String::from("new"))).unwrap();
/// let retired = match retired.try_into_box() {
///     Ok(_) => unreachable!("no grace period has run yet"),
///     Err(still_retired) => still_retired,
/// };
/// assert_eq!(*retired.into_box(), "old");
/// ```
///
/// It derefs to the value that readers may still be reading on other
/// threads, so it moves to another thread only if `T` is `Sync` as well as
/// `Send` (as the cell itself does): a `Retired<Cell<_>>` stays put.
///
/// ```compile_fail,E0277
/// use std::cell::Cell;
/// let cell = rcu_reclaim::RcuCell::new(Cell::new(0));
/// let guard = cell.domain().read_lock();
/// let mine = cell.load(&guard).unwrap();
/// let retired = cell.replace(Box::new(Cell::new(1))).unwrap();
/// // error: `Cell<i32>` cannot be shared between threads safely
/// std::thread::spawn(move || retired.set(2)); // would race with `mine`
/// mine.set(3);
/// ```
///
/// Nor does a `Retired<Rc<_>>`, whose value is not `Send`:
///
/// ```compile_fail,E0277
/// let cell = rcu_reclaim::RcuCell::new(std::rc::Rc::new(1));
/// let retired = cell.take().unwrap();
/// std::thread::spawn(move || drop(retired)); // error: `Rc<i32>` cannot be sent between threads safely
/// ```
pub struct Retired<T> {
    /// The unlinked value, from `Box::into_raw`; `None` once consumed. A
    /// raw pointer, not a `Box`, until its grace period has elapsed:
    /// readers may still hold `&T` to it, and a `Box` asserts unique
    /// access (under Stacked Borrows, making or moving one pops the
    /// readers' shared borrows, so their next read is undefined behaviour;
    /// Miri reported it on `tests/soundness.rs`).
    value: Option<NonNull<T>>,
    cookie: Cookie,
    rcu: Rcu,
    /// How `Drop` retires the value when it cannot wait (inside a
    /// read-side section of the domain): set by the makers whose `T` is
    /// `Send + 'static` (`compare_exchange`, whose caller is always in a
    /// section); `None`: such a drop panics and leaks the value.
    defer_in_section: Option<fn(Retired<T>)>,
    /// Owns a `T` (it drops one); not `Send` or `Sync` by itself: the
    /// impls below say when it is.
    _shared: PhantomData<(T, *const T)>,
}

/// `Retired::defer_in_section` for a `T` that may drop on another thread:
/// booked at its inline size (no `ReclaimSize` bound is known here).
fn defer_inline_size<T: Send + 'static>(retired: Retired<T>) {
    retired.defer_drop_sized(std::mem::size_of::<T>());
}

// SAFETY: a `Retired` on another thread hands out `&T` (`Deref`) while
// readers on the unlinking thread may still hold `&T` to the same value
// (needs `T: Sync`), and drops or returns the `T` there (needs `T: Send`).
// Its other fields (`Cookie`, `Rcu`, a `fn` pointer) are `Send` and `Sync`.
unsafe impl<T: Send + Sync> Send for Retired<T> {}
// SAFETY: `&Retired<T>` gives only `&T` (`Deref`, `cookie`, `is_safe`).
unsafe impl<T: Sync> Sync for Retired<T> {}

impl<T> Retired<T> {
    /// The value at `old`, just unlinked from a cell of `rcu`.
    ///
    /// # Safety
    /// `old` is non-null, came from `Box::into_raw`, and is no longer
    /// reachable by new readers; the `Retired` owns it from here.
    pub(crate) unsafe fn unlinked(old: *mut T, rcu: &Rcu) -> Retired<T> {
        Retired {
            // SAFETY: non-null per our contract.
            value: Some(unsafe { NonNull::new_unchecked(old) }),
            cookie: rcu.get_state(),
            rcu: rcu.clone(),
            defer_in_section: None,
            _shared: PhantomData,
        }
    }

    /// Lets `Drop` inside a read-side section defer the value (see
    /// `defer_in_section`) rather than panic.
    pub(crate) fn deferring_in_section(mut self) -> Retired<T>
    where
        T: Send + 'static,
    {
        self.defer_in_section = Some(defer_inline_size::<T>);
        self
    }

    /// Takes the value's pointer (the `Retired` is consumed, or being
    /// dropped, after this).
    fn take_ptr(&mut self) -> NonNull<T> {
        self.value.take().expect("value present until consumed")
    }

    /// Takes the value as a `Box`.
    ///
    /// # Safety
    /// No reader holds a reference to it any more (its grace period has
    /// elapsed, or no reader ever saw it).
    unsafe fn take_box(&mut self) -> Box<T> {
        // SAFETY: from `Box::into_raw` (`unlinked`), taken once
        // (`take_ptr` empties `value`), and unshared per our contract.
        unsafe { Box::from_raw(self.take_ptr().as_ptr()) }
    }

    /// The grace-period cookie taken at the unlink.
    ///
    /// ```
    /// let cell = rcu_reclaim::RcuCell::new(1);
    /// let retired = cell.take().unwrap();
    /// assert!(!cell.domain().poll(&retired.cookie()));
    /// ```
    pub fn cookie(&self) -> Cookie {
        self.cookie
    }

    /// Whether a grace period has elapsed since the unlink. When none has,
    /// it also makes sure one will run (as [`Rcu::start_poll`]; never
    /// blocks), so a loop on it, or on [`try_into_box`](Retired::try_into_box),
    /// ends even where nothing else waits for a grace period.
    ///
    /// ```
    /// let cell = rcu_reclaim::RcuCell::new(1);
    /// let retired = cell.take().unwrap();
    /// cell.domain().synchronize();
    /// assert!(retired.is_safe());
    /// ```
    ///
    /// Polled alone, on an idle domain:
    ///
    /// ```
    /// let cell = rcu_reclaim::RcuCell::new(1);
    /// let retired = cell.take().unwrap();
    /// while !retired.is_safe() {
    ///     std::thread::sleep(std::time::Duration::from_millis(1));
    /// }
    /// ```
    #[track_caller]
    pub fn is_safe(&self) -> bool {
        self.rcu.poll_and_request(&self.cookie)
    }

    /// The value, after waiting for a grace period if none has elapsed yet.
    ///
    /// # Panics
    /// Inside a read-side section of the cell's domain while the grace period
    /// has not elapsed.
    ///
    /// ```
    /// let cell = rcu_reclaim::RcuCell::new([0u8; 16]);
    /// let b: Box<[u8; 16]> = cell.take().unwrap().into_box();
    /// assert_eq!(b.len(), 16);
    /// ```
    #[track_caller]
    pub fn into_box(mut self) -> Box<T> {
        self.rcu.cond_synchronize_for(
            self.cookie,
            "Retired::into_box() (it waits for the value's grace period; \
             Retired::try_into_box() does not)",
            WaitInstead::Retire("Retired::defer_drop()"),
        );
        // SAFETY: the grace period has elapsed.
        unsafe { self.take_box() }
    }

    /// The value if a grace period has elapsed, else `self` back (and a
    /// grace period started, as [`is_safe`](Retired::is_safe) does, so
    /// that trying again later succeeds). Never blocks.
    ///
    /// ```
    /// let cell = rcu_reclaim::RcuCell::new(3);
    /// let retired = cell.take().unwrap();
    /// cell.domain().synchronize();
    /// assert_eq!(retired.try_into_box().ok().map(|b| *b), Some(3));
    /// ```
    pub fn try_into_box(mut self) -> Result<Box<T>, Self> {
        if self.is_safe() {
            // SAFETY: the grace period has elapsed.
            Ok(unsafe { self.take_box() })
        } else {
            Err(self)
        }
    }

    /// Drops the value after its grace period without waiting here
    /// ([`Rcu::defer_drop`]), booking its [`ReclaimSize::reclaim_size`];
    /// usable inside a read-side section.
    ///
    /// ```
    /// use rcu_reclaim::{Config, Rcu, RcuCell};
    /// let rcu = Rcu::new(Config::new().on_demand()).unwrap();
    /// let cell = RcuCell::new_in(&rcu, Some(Box::new(vec![0u8; 4096])));
    /// let guard = rcu.read_lock();
    /// cell.take().unwrap().defer_drop(); // fine inside a section
    /// drop(guard);
    /// assert_eq!(rcu.pending_bytes(), 4096 + 24);
    /// rcu.barrier();
    /// ```
    pub fn defer_drop(self)
    where
        T: ReclaimSize + Send + 'static,
    {
        // Should `reclaim_size` panic, the value is still retired (booking
        // its inline size), and the panic goes on after.
        let (bytes, panic) = weigh_caught(std::mem::size_of::<T>(), || T::reclaim_size(&self));
        self.defer_drop_as(bytes, crate::drops_anywhere::<T>());
        if let Some(panic) = panic {
            std::panic::resume_unwind(panic);
        }
    }

    /// As [`defer_drop`](Retired::defer_drop), booking `bytes`: the opt-in
    /// for a type without [`ReclaimSize`] or a size of the caller's choosing.
    /// The `Retired` derefs to the value, so the size can be measured first.
    ///
    /// ```
    /// struct Blob(Vec<u8>); // no ReclaimSize
    /// let cell = rcu_reclaim::RcuCell::new(Blob(vec![0u8; 4096]));
    /// let old = cell.take().unwrap();
    /// let bytes = std::mem::size_of::<Blob>() + old.0.capacity();
    /// old.defer_drop_sized(bytes);
    /// ```
    ///
    /// The value is dropped on another thread, so it must be `Send`:
    ///
    /// ```compile_fail,E0277
    /// let cell = rcu_reclaim::RcuCell::new(std::rc::Rc::new(1));
    /// cell.take().unwrap().defer_drop_sized(8); // error: `Rc<i32>` cannot be sent between threads safely
    /// ```
    pub fn defer_drop_sized(self, bytes: usize)
    where
        T: Send + 'static,
    {
        self.defer_drop_as(bytes, !std::mem::needs_drop::<T>());
    }

    /// The deferred drop; `anywhere` as for `Rcu::defer_drop_as`.
    fn defer_drop_as(mut self, bytes: usize, anywhere: bool)
    where
        T: Send + 'static,
    {
        // Dropped here only if its drop takes no lock (`anywhere`): this is
        // a retiring call (`RcuCell::store` is one), whose caller may hold
        // a lock that the value's `Drop` takes, even when a grace period
        // has already elapsed (another thread may complete one between the
        // unlink and this call).
        if anywhere && self.rcu.poll(&self.cookie) {
            // SAFETY: the grace period has elapsed.
            drop(unsafe { self.take_box() });
        } else {
            let ptr = self.take_ptr();
            // SAFETY: from `Box::into_raw`, unlinked, and handed over (the
            // `Retired` no longer holds it).
            unsafe { self.rcu.defer_drop_raw_as(ptr, bytes, anywhere) };
        }
    }

    /// The value without waiting.
    ///
    /// # Safety
    /// No reader may still hold a reference to it: a grace period must have
    /// elapsed since the unlink, or the caller knows no reader ever saw it.
    ///
    /// ```
    /// let cell = rcu_reclaim::RcuCell::new(9);
    /// let retired = cell.take().unwrap();
    /// cell.domain().synchronize();
    /// // SAFETY: a grace period elapsed after the unlink.
    /// let b = unsafe { retired.into_box_unchecked() };
    /// assert_eq!(*b, 9);
    /// ```
    pub unsafe fn into_box_unchecked(mut self) -> Box<T> {
        // SAFETY: no reader holds it, per our contract.
        unsafe { self.take_box() }
    }
}

/// Shared access to the unlinked value. Readers that loaded it before the
/// unlink may still hold `&T` to it; this is one more shared reference.
///
/// ```
/// let cell = rcu_reclaim::RcuCell::new(vec![1, 2, 3]);
/// let old = cell.replace(Box::new(vec![4])).unwrap();
/// assert_eq!(old.len(), 3); // size what is being evicted
/// old.defer_drop();
/// ```
///
/// The reference lives no longer than the `Retired`, which hands the value
/// on when consumed:
///
/// ```compile_fail,E0505
/// let cell = rcu_reclaim::RcuCell::new(String::from("old"));
/// let old = cell.take().unwrap();
/// let s: &str = &old;
/// old.defer_drop(); // error: cannot move out of `old` because it is borrowed
/// println!("{s}");
/// ```
impl<T> Deref for Retired<T> {
    type Target = T;

    fn deref(&self) -> &T {
        // `value` is `Some` from construction until a consuming method
        // (`into_box`, `defer_drop_sized`, ...) or `Drop` takes it, and
        // none of those leaves `self` reachable. The value is unlinked but
        // not freed while the `Retired` lives (freeing waits for the grace
        // period, in those methods or in `Drop`), and `&self` keeps it so
        // for the borrow. The access is shared, exactly what readers have,
        // and a `Retired` reaches another thread only if `T: Sync` (its
        // `Send` and `Sync` impls).
        let p = self.value.expect("value present until consumed");
        // SAFETY: as above: live, from `Box::into_raw`, and only ever
        // shared (no `&mut T` exists until the grace period has elapsed).
        unsafe { p.as_ref() }
    }
}

impl<T> Drop for Retired<T> {
    fn drop(&mut self) {
        if let Some(value) = self.value.take() {
            if !self.rcu.poll(&self.cookie) && self.rcu.in_read_section() {
                if let Some(defer) = self.defer_in_section {
                    // Cannot wait here: the callback engine frees it after
                    // the grace period instead.
                    defer(Retired {
                        value: Some(value),
                        cookie: self.cookie,
                        rcu: self.rcu.clone(),
                        defer_in_section: None,
                        _shared: PhantomData,
                    });
                    return;
                }
                if std::thread::panicking() {
                    // Waiting would deadlock and panicking again would abort:
                    // keep readers safe at the price of a leak (the raw
                    // pointer is simply not freed).
                    crate::sys::error_loud(
                        "rcu-reclaim: a Retired value dropped inside a read-side section during \
                         a panic was leaked",
                    );
                    return;
                }
                // Readers may still use it: leak it rather than free it early.
                // The section is a guard's (or a raw one), or the thread's
                // online QSBR registration: name the fix for that one.
                let fix = if crate::reader::nesting_in(self.rcu.id()) > 0 {
                    self.rcu.section_fix()
                } else if crate::callbacks::in_callback() {
                    // Run on an online thread: the callback cannot put
                    // that thread offline.
                    "It was dropped inside an RCU callback (or a destructor that RCU runs) \
                     running on a thread online in this QSBR domain (a call on that thread ran \
                     ready callbacks there), which the callback cannot put offline: make calls \
                     that run callbacks on QSBR threads only inside \
                     QsbrThread::offline_while(|| ...)"
                } else {
                    "The thread is online in this QSBR domain: drop the Retired inside \
                     QsbrThread::offline_while(|| ...) or after QsbrThread::synchronize()"
                };
                panic!(
                    "rcu-reclaim: a Retired value was dropped inside a read-side section before \
                     its grace period elapsed; dropping it must wait for a grace period, which \
                     cannot end while this section lasts (the value was leaked). {fix}, or hand \
                     it to Retired::defer_drop(), which never waits"
                );
            }
            // Leaked, not dropped, should the wait panic (this thread holds
            // the domain stopped for `fork()`, or a `tracing` subscriber
            // panics on a stall report): readers on other threads may still
            // hold the value, and the unwind must not free it under them
            // (a raw pointer is not freed by an unwind).
            self.rcu.cond_synchronize(self.cookie);
            // SAFETY: from `Box::into_raw`, taken once above, and its grace
            // period has elapsed.
            drop(unsafe { Box::from_raw(value.as_ptr()) });
        }
    }
}

impl<T> fmt::Debug for Retired<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retired")
            .field("cookie", &self.cookie)
            .finish_non_exhaustive()
    }
}
