//! The public face of the callback engine: `call`, `defer_drop`, `barrier`
//! and the backlog queries, as methods of [`Rcu`].

use std::cell::Cell;
use std::ptr::NonNull;

use super::bulk::{call_back, call_entry, word, Kind};
use super::{drop_box, in_callback, Collected};
use crate::domain::Rcu;
use crate::policy;
use crate::size::ReclaimSize;
use crate::sync::weigh_caught;

/// `Box::into_raw`, as a `NonNull`.
fn box_into_non_null<T>(value: Box<T>) -> NonNull<T> {
    // SAFETY: `Box::into_raw` never returns null.
    unsafe { NonNull::new_unchecked(Box::into_raw(value)) }
}

/// An unlinked value handed over by raw pointer (see
/// [`Rcu::defer_drop_raw_as`]), carried to the callback that drops it after
/// its grace period. No drop glue: if that callback never runs (a panic on
/// the way), the value leaks rather than being freed under readers.
struct HandedOver<T>(NonNull<T>);

// SAFETY: the value is dropped (once) on whichever thread runs the
// callback, which `T: Send` allows; nothing else is done with it.
unsafe impl<T: Send> Send for HandedOver<T> {}

impl<T> HandedOver<T> {
    /// Drops the value.
    ///
    /// # Safety
    /// Its grace period has elapsed (no reader holds it any more).
    unsafe fn drop_now(self) {
        // SAFETY: from `Box::into_raw` (`defer_drop_raw_as`'s contract), and
        // dropped once (`self` is consumed); no reader is left, per ours.
        unsafe { drop_box::<T>(word(self.0.as_ptr().cast())) }
    }
}

thread_local! {
    /// Set while this thread must not allocate bulk pages (reclaim runs on
    /// it): `defer_drop` then takes the fallback.
    pub(super) static NO_PAGE_ALLOC: Cell<bool> = const { Cell::new(false) };
    /// This thread's `collect` calls so far (wrapping): paces the dearer
    /// parts of the safe point.
    static COLLECT_TICK: Cell<u32> = const { Cell::new(0) };
}

/// Runs `f` with bulk-page allocation forbidden on this thread, as memory
/// reclaim does (the kernel's `PF_MEMALLOC`): `defer_drop` uses only the
/// shard's spare pages, else waits for a grace period and drops at once (or
/// queues a callback inside a read-side section or an RCU callback).
///
/// ```
/// use rcu_reclaim::Rcu;
/// use rcu_reclaim::pages::without_page_allocation;
/// without_page_allocation(|| Rcu::global().defer_drop(Box::new([0u8; 64])));
/// ```
pub fn without_page_allocation<R>(f: impl FnOnce() -> R) -> R {
    crate::sync::with_flag(&NO_PAGE_ALLOC, f)
}

impl Rcu {
    /// Runs `f` after a grace period: once every read-side section that
    /// began before this call has ended. Never waits for a grace period;
    /// usable inside a read-side section and under any lock. The callback
    /// runs on a worker thread, or on a thread calling
    /// [`barrier`](Rcu::barrier) or [`collect`](Rcu::collect) (and, in a
    /// domain that opted into
    /// [`Config::retiring_thread_frees`](crate::Config::retiring_thread_frees),
    /// in retiring calls).
    ///
    /// Callbacks are buffered as deferred drops are: in this thread's bulk
    /// page, which goes to its CPU's shard when full or due by the pace
    /// (at the latest after [`Config::lazy_delay`](crate::Config::lazy_delay)),
    /// so a call takes no lock; a callback whose captures fit in a pointer
    /// (one `Box`, `Arc` or reference, or none) is stored in the page
    /// itself, without a `Box` of its own. ([`call_sized`](Rcu::call_sized)
    /// with bytes to free queues on the shard at once, where pressure sees
    /// them.) Callbacks carry no order among themselves. A thread that
    /// queues faster than the worker runs them is held back: while its
    /// CPU's shard holds more than 16 pages ready to run, a call that hands
    /// off a page yields to the worker for at most 2 ms
    /// (`Stats::producer_throttles`), so a flood of calls cannot grow
    /// memory without bound; and while a pressure signal is held, it waits
    /// for garbage to be freed as [`defer_drop`](Rcu::defer_drop) does.
    ///
    /// A callback given to `call` books no bytes: pressure, the budget's
    /// reclaim and the pressure throttle do not see what it will free.
    /// Only its count is bounded: while a pressure signal is held, or the
    /// usage of a memory limit the domain knows ([`Rcu::bound_garbage`])
    /// is over three quarters of its mark, a call that hands off a page
    /// while more than 4,096 callbacks and deferred values are outstanding
    /// waits (outside read-side sections) until they are half as many, for
    /// at most 10 ms (100 ms over 16,384; `Stats::call_backlog_waits`). A
    /// closure that owns memory (a buffer it drops) gives its size with
    /// [`call_sized`](Rcu::call_sized), or the value is retired with
    /// [`defer_drop`](Rcu::defer_drop), which weighs it.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// use std::sync::Arc;
    /// let rcu = rcu_reclaim::Rcu::global();
    /// let ran = Arc::new(AtomicBool::new(false));
    /// let r = ran.clone();
    /// rcu.call(move || r.store(true, Ordering::SeqCst));
    /// rcu.barrier();
    /// assert!(ran.load(Ordering::SeqCst));
    /// ```
    ///
    /// `f` runs later, on another thread, so it borrows nothing from the
    /// caller:
    ///
    /// ```compile_fail,E0373
    /// let rcu = rcu_reclaim::Rcu::global();
    /// let local = String::from("x");
    /// rcu.call(|| println!("{local}")); // error: closure may outlive the current function
    /// ```
    ///
    /// not even what a section read, which it may outlive:
    ///
    /// ```compile_fail,E0597
    /// let cell = rcu_reclaim::RcuCell::new(String::from("v"));
    /// let guard = cell.domain().read_lock();
    /// let r = cell.load(&guard).unwrap();
    /// cell.domain().call(move || println!("{r}")); // error: `guard` does not live long enough
    /// ```
    ///
    /// and it is `Send`:
    ///
    /// ```compile_fail,E0277
    /// let rc = std::rc::Rc::new(1);
    /// rcu_reclaim::Rcu::global().call(move || println!("{rc}")); // error: `Rc<i32>` cannot be sent between threads safely
    /// ```
    ///
    /// so a read guard, whose section begins and ends on its own thread,
    /// cannot be moved into it to end there (even one of the global
    /// domain, which is `'static`):
    ///
    /// ```compile_fail,E0277
    /// let rcu = rcu_reclaim::Rcu::global();
    /// let guard = rcu.read_lock();
    /// rcu.call(move || drop(guard)); // error: `*const ReadGuardStaysOnItsThread` cannot be sent between threads safely
    /// ```
    pub fn call(&self, f: impl FnOnce() + Send + 'static) {
        self.call_as(f, 0);
    }

    /// `call` and `call_sized`: a callback that books no bytes goes into
    /// this thread's bulk page, as its entry when its captures fit in a
    /// pointer (one `Box`, `Arc` or reference, or none), else boxed, and
    /// runs where values that do not drop anywhere run; one that books
    /// bytes, or finds no page (counted in
    /// [`Stats::fallback_syncs`](crate::stats::Stats::fallback_syncs)), is
    /// boxed and queued on its CPU's shard.
    fn call_as<F: FnOnce() + Send + 'static>(&self, f: F, bytes: usize) {
        if bytes > 0 || cfg!(loom) {
            // Memory that pressure and `run_callbacks` act on per node: on
            // its CPU's shard at once.
            self.enqueue(Box::new(f), bytes, false);
            return;
        }
        let (w, run) = call_entry(f);
        // SAFETY: `run` runs the callback the entry holds once, after a
        // grace period, on any thread (`F: Send`); a `Call` entry runs only
        // where callbacks run.
        let Err(w) = (unsafe { self.try_push_entry(w, run, 0, Kind::Call, true) }) else {
            return;
        };
        // SAFETY: the entry from `call_entry::<F>`, not pushed.
        unsafe { self.call_refused::<F>(w) }
    }

    /// Refused (no page): the callback goes to the shard. (One push site:
    /// `try_push_entry` is inlined. Out of line, as `defer_drop_refused`.)
    ///
    /// # Safety
    /// `w` is an entry from `call_entry::<F>`, not pushed.
    #[cold]
    #[inline(never)]
    unsafe fn call_refused<F: FnOnce() + Send + 'static>(&self, w: super::bulk::Word) {
        // SAFETY: per our contract.
        let f = unsafe { call_back::<F>(w) };
        self.count_fallback();
        self.enqueue(f, 0, false);
    }

    /// Counts a retire that found no bulk page (`Stats::fallback_syncs`).
    fn count_fallback(&self) {
        let counters = &self.inner().callbacks.counters;
        counters
            .fallback_syncs
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// As [`call`](Rcu::call), counting `bytes` as the memory the callback
    /// frees, in [`pending_bytes`](Rcu::pending_bytes) and stats (at most
    /// 1 TiB: a larger claim is booked as 1 TiB, so no sum overflows). With
    /// bytes to free, the callback is queued on this CPU's shard at once
    /// (not buffered in the thread's page), where memory pressure and
    /// [`run_callbacks`](Rcu::run_callbacks) see it; while a pressure
    /// signal is held, the call waits for garbage to be freed as
    /// [`defer_drop`](Rcu::defer_drop) does (the pressure throttle; inside
    /// a read-side section the section pays when it ends).
    ///
    /// ```
    /// // On demand: nothing is freed until asked (with the default pace,
    /// // 1 MiB would ask for a grace period at once).
    /// let rcu = rcu_reclaim::Rcu::new(rcu_reclaim::Config::new().on_demand()).unwrap();
    /// let buf = vec![0u8; 1 << 20];
    /// rcu.call_sized(move || drop(buf), 1 << 20);
    /// assert!(rcu.pending_bytes() >= 1 << 20);
    /// rcu.barrier();
    /// assert_eq!(rcu.pending_bytes(), 0);
    /// ```
    pub fn call_sized(&self, f: impl FnOnce() + Send + 'static, bytes: usize) {
        self.call_as(f, bytes);
    }

    /// As [`call`](Rcu::call), but asks for a grace period at once instead
    /// of waiting for the lazy batch or delay (the kernel's `call_rcu_hurry`).
    ///
    /// ```
    /// use std::sync::mpsc;
    /// let rcu = rcu_reclaim::Rcu::global();
    /// let (tx, rx) = mpsc::channel();
    /// rcu.call_hurry(move || tx.send(()).unwrap());
    /// rx.recv().unwrap(); // runs soon, without a barrier
    /// ```
    pub fn call_hurry(&self, f: impl FnOnce() + Send + 'static) {
        self.enqueue(Box::new(f), 0, true);
    }

    fn enqueue(&self, f: Box<dyn FnOnce() + Send>, bytes: usize, hurry: bool) {
        self.enqueue_as(f, bytes, hurry, false);
    }

    /// `enqueue`; `deferred`: a deferred drop's no-page fallback, counted
    /// as a deferred drop rather than a call.
    fn enqueue_as(&self, f: Box<dyn FnOnce() + Send>, bytes: usize, hurry: bool, deferred: bool) {
        let bytes = policy::booked(bytes);
        let inner = self.inner();
        // In a process forked without `prepare_fork`, a shard lock a
        // parent's thread held at the fork is never released: the waits
        // below give up, naming the fix, instead of hanging.
        let _forked = crate::sync::ForkedWaits::scope(inner.gp.fork_check("a call"));
        let (kick, cpu) = inner.callbacks.enqueue(f, bytes, hurry, deferred);
        self.start_background(kick);
        #[cfg(not(loom))]
        {
            inner.callbacks.throttle_caller(&inner.gp, cpu);
            // Memory booked on the shard is what the pressure throttle
            // counts: a `call_sized` flood waits under pressure as
            // `defer_drop`'s does (before, it went on unthrottled).
            if !in_callback() && !crate::sync::NO_RECLAIM.with(Cell::get) {
                if bytes > 0 {
                    self.wait_for_headroom();
                    self.wait_under_pressure();
                } else {
                    self.wait_for_call_backlog();
                }
            }
        }
        #[cfg(loom)]
        let _ = cpu;
    }

    /// Drops `value` after a grace period, without allocating per object:
    /// the pointer and its drop function go into this thread's bulk page.
    /// Books the value's [`ReclaimSize::reclaim_size`] (itself and
    /// the heap it owns, e.g. a `Vec`'s buffer) in
    /// [`pending_bytes`](Rcu::pending_bytes), which reclaim and pressure
    /// act on. A value whose size is unknown, or custom, is retired with
    /// [`defer_drop_sized`](Rcu::defer_drop_sized), naming the bytes (e.g.
    /// `size_of::<T>()` for a type that owns no heap memory and does not
    /// implement `ReclaimSize`). Never blocks unless no page
    /// can be had, in which case it waits for a grace period and drops at
    /// once (inside a read-side section or an RCU callback it queues a
    /// callback instead), or
    /// memory is short: while a pressure signal is held and more than
    /// [`Config::pressure_throttle_bytes`](crate::Config::pressure_throttle_bytes)
    /// (8 MiB) wait to be freed, a call that hands its thread's page to the
    /// domain waits for them to be freed (inside a read-side section, the
    /// section waits when it ends), at
    /// most 10 ms (100 ms while over twice that, 1 s over four times), so
    /// writers do not outrun their own garbage into the out-of-memory killer
    /// while grace periods can end. It also waits, bounded, while garbage
    /// piles up behind a grace period held up by a preempted reader (at
    /// most 2 ms), or over a garbage bound ([`Rcu::bound_garbage`], which
    /// [`sources::auto_pressure`](crate::sources::auto_pressure) sets in a
    /// memory-limited cgroup; at most 1 s): the [`locking`](crate::locking)
    /// table lists every wait.
    ///
    /// It never runs a destructor that might take a lock (nor any
    /// callback), so it may be called while holding a lock that some
    /// deferred `Drop` takes; the one such destructor it may run is
    /// `value`'s own, in that no-page fallback. It does free, on this
    /// thread, values retired earlier on its CPU that drop anywhere
    /// ([`drops_anywhere`](crate::drops_anywhere): no drop glue, as
    /// `Box<[u64; 8]>`, or a type declaring
    /// [`ReclaimSize::DROPS_ANYWHERE`], as `String` and `Vec<u8>` do) once
    /// their grace period has elapsed: their drops take no lock, and the
    /// memory returns where it was allocated, while the thread keeps
    /// retiring. A domain created with
    /// [`Config::retiring_thread_frees`](crate::Config::retiring_thread_frees)
    /// opts out of that guarantee for speed.
    ///
    /// The value is dropped on another thread, so it must be `Send`:
    ///
    /// ```compile_fail,E0277
    /// let rcu = rcu_reclaim::Rcu::global();
    /// rcu.defer_drop(Box::new(std::rc::Rc::new(1))); // error: `Rc` is not `Send`
    /// ```
    ///
    /// and `'static`, as it may be dropped after everything it borrows:
    ///
    /// ```compile_fail,E0597
    /// let local = 7u32;
    /// rcu_reclaim::Rcu::global().defer_drop(Box::new(&local)); // error: `local` does not live long enough
    /// ```
    ///
    /// ```
    /// let rcu = rcu_reclaim::Rcu::global();
    /// // A value no reader has seen (an unpublished draft, say):
    /// rcu.defer_drop(Box::new([2u64; 8]));
    /// ```
    ///
    /// An `RcuCell`'s old version goes with [`Retired::defer_drop`](crate::Retired::defer_drop),
    /// a value unlinked from a structure of your own with
    /// [`defer_drop_raw`](Rcu::defer_drop_raw): readers may still hold
    /// either, and a `Box` made of it while they do asserts a uniqueness
    /// that does not hold.
    ///
    /// A 64 KiB buffer books 64 KiB, not the 24 bytes of its `Vec`:
    ///
    /// ```
    /// use rcu_reclaim::{Config, Rcu};
    /// let rcu = Rcu::new(Config::new().on_demand()).unwrap();
    /// rcu.defer_drop(Box::new(vec![0u8; 64 << 10]));
    /// assert_eq!(rcu.pending_bytes(), (64 << 10) + 24);
    /// rcu.barrier();
    /// ```
    pub fn defer_drop<T: ReclaimSize + Send + 'static>(&self, value: Box<T>) {
        // Should `reclaim_size` panic, the value is still deferred (booking
        // its inline size), and the panic goes on after.
        let (bytes, panic) = weigh_caught(std::mem::size_of::<T>(), || T::reclaim_size(&value));
        self.defer_drop_as(value, bytes, crate::drops_anywhere::<T>());
        if let Some(panic) = panic {
            std::panic::resume_unwind(panic);
        }
    }

    /// As [`defer_drop`](Rcu::defer_drop), booking `bytes`: the opt-in
    /// for a value whose size [`ReclaimSize`] does not give (a type without
    /// it, a shared pointer known to be the last, a size measured
    /// elsewhere). `size_of::<T>()` books the value's inline bytes only.
    /// A claim over 1 TiB is booked as 1 TiB, so no sum overflows.
    ///
    /// ```
    /// let rcu = rcu_reclaim::Rcu::new(Default::default()).unwrap();
    /// let v = vec![0u8; 10_000];
    /// rcu.defer_drop_sized(Box::new(v), 10_000);
    /// assert_eq!(rcu.pending_bytes(), 10_000);
    /// struct Opaque(u64); // no ReclaimSize: its size named explicitly
    /// rcu.defer_drop_sized(Box::new(Opaque(1)), std::mem::size_of::<Opaque>());
    /// assert_eq!(rcu.pending_bytes(), 10_008);
    /// rcu.barrier();
    /// ```
    ///
    /// The value is dropped on another thread, so it must be `Send`:
    ///
    /// ```compile_fail,E0277
    /// let rcu = rcu_reclaim::Rcu::global();
    /// rcu.defer_drop_sized(Box::new(std::rc::Rc::new(1)), 8); // error: `Rc<i32>` cannot be sent between threads safely
    /// ```
    pub fn defer_drop_sized<T: Send + 'static>(&self, value: Box<T>, bytes: usize) {
        self.defer_drop_as(value, bytes, !std::mem::needs_drop::<T>());
    }

    /// [`defer_drop`](Rcu::defer_drop) for a value reached through a raw
    /// pointer, as a structure of your own built on `AtomicPtr` holds it:
    /// the value is booked at its [`ReclaimSize`] and dropped (as the `Box`
    /// it came from) after a grace period. Prefer this to rebuilding the
    /// `Box` to call `defer_drop`: readers that loaded the pointer before
    /// the unlink may still hold `&T`, and a `Box` asserts it is the only
    /// way to the value, which Rust's aliasing rules (checked by Miri)
    /// make undefined behaviour while they do.
    ///
    /// # Safety
    /// `ptr` came from [`Box::into_raw`] of a `Box<T>`; no new reader can
    /// reach it (it is unlinked); and the caller hands it over: it does not
    /// use or free it afterwards (readers' references taken before the
    /// unlink stay valid until their sections end).
    ///
    /// # Panics
    /// If `ptr` is null (nothing is queued).
    ///
    /// ```
    /// use std::sync::atomic::{AtomicPtr, Ordering};
    /// use rcu_reclaim::{Config, Rcu};
    /// let rcu = Rcu::new(Config::new().on_demand()).unwrap();
    /// let slot = AtomicPtr::new(Box::into_raw(Box::new(vec![1u8; 4096])));
    ///
    /// let guard = rcu.read_lock();
    /// // SAFETY: published values are freed only after a grace period.
    /// let seen: &Vec<u8> = unsafe { &*slot.load(Ordering::Acquire) };
    ///
    /// // A writer publishes a new version and retires the old one.
    /// let old = slot.swap(Box::into_raw(Box::new(vec![2u8; 4096])), Ordering::AcqRel);
    /// // SAFETY: from `Box::into_raw`, unlinked, and not used again here.
    /// unsafe { rcu.defer_drop_raw(old) };
    /// assert_eq!(rcu.pending_bytes(), 4096 + 24); // booked at its heap size
    /// assert_eq!(seen[0], 1); // still valid: the section is open
    /// drop(guard);
    /// rcu.barrier(); // freed now
    /// assert_eq!(rcu.pending_bytes(), 0);
    /// // SAFETY: the domain's last version, reached by no reader now.
    /// drop(unsafe { Box::from_raw(slot.load(Ordering::Acquire)) });
    /// ```
    pub unsafe fn defer_drop_raw<T: ReclaimSize + Send + 'static>(&self, ptr: *mut T) {
        let ptr = non_null_or_refused(ptr, "defer_drop_raw");
        // SAFETY: a live value from `Box::into_raw` (our contract); a shared
        // borrow beside the readers' ones, ended before the hand-over.
        let value = unsafe { ptr.as_ref() };
        // Should `reclaim_size` panic, the value is still deferred (booking
        // its inline size; it leaked), and the panic goes on after.
        let (bytes, panic) = weigh_caught(std::mem::size_of::<T>(), || T::reclaim_size(value));
        // SAFETY: per our contract.
        unsafe { self.defer_drop_raw_as(ptr, bytes, crate::drops_anywhere::<T>()) };
        if let Some(panic) = panic {
            std::panic::resume_unwind(panic);
        }
    }

    /// [`defer_drop_raw`](Rcu::defer_drop_raw) for a type without
    /// [`ReclaimSize`], booking `bytes` (as
    /// [`defer_drop_sized`](Rcu::defer_drop_sized) does for a `Box`): the
    /// counterpart of crossbeam-epoch's `defer_destroy`, which takes any
    /// type. A claim over 1 TiB is booked as 1 TiB.
    ///
    /// # Safety
    /// As for [`defer_drop_raw`](Rcu::defer_drop_raw): `ptr` came from
    /// [`Box::into_raw`] of a `Box<T>`, no new reader can reach it, and the
    /// caller hands it over.
    ///
    /// # Panics
    /// If `ptr` is null (nothing is queued).
    ///
    /// ```
    /// use std::sync::atomic::{AtomicPtr, Ordering};
    /// use rcu_reclaim::{Config, Rcu};
    /// struct Node { key: u64, next: AtomicPtr<Node> } // no ReclaimSize
    /// let rcu = Rcu::new(Config::new().on_demand()).unwrap();
    /// let head = AtomicPtr::new(Box::into_raw(Box::new(Node {
    ///     key: 1,
    ///     next: AtomicPtr::new(std::ptr::null_mut()),
    /// })));
    /// let old = head.swap(std::ptr::null_mut(), Ordering::AcqRel); // unlinked
    /// // SAFETY: from `Box::into_raw`, unlinked, and not used again here.
    /// unsafe { rcu.defer_drop_raw_sized(old, std::mem::size_of::<Node>()) };
    /// assert_eq!(rcu.pending_bytes(), 16);
    /// rcu.barrier();
    /// assert_eq!(rcu.pending_bytes(), 0);
    /// ```
    pub unsafe fn defer_drop_raw_sized<T: Send + 'static>(&self, ptr: *mut T, bytes: usize) {
        let ptr = non_null_or_refused(ptr, "defer_drop_raw_sized");
        // SAFETY: per our contract.
        unsafe { self.defer_drop_raw_as(ptr, bytes, !std::mem::needs_drop::<T>()) };
    }

    /// As `defer_drop_sized`; `anywhere`: dropping a `T` takes no lock and
    /// waits for nothing (`drops_anywhere`), so a retiring thread may free
    /// ready values of it.
    pub(crate) fn defer_drop_as<T: Send + 'static>(
        &self,
        value: Box<T>,
        bytes: usize,
        anywhere: bool,
    ) {
        // SAFETY: fresh from `Box::into_raw`, handed over here.
        unsafe { self.defer_drop_raw_as(box_into_non_null(value), bytes, anywhere) }
    }

    /// As `defer_drop_as`, for a value the caller holds by raw pointer
    /// because readers may still hold `&T` to it: the library's own
    /// retires (`Retired`, the map's nodes and tables) hand the unlinked
    /// value over this way. Making a `Box` of it first would assert unique
    /// access while those readers' shared borrows are live (Stacked
    /// Borrows: their tags are popped, and a later read through them is
    /// undefined behaviour; Miri reported it). The `Box` is made only
    /// after the grace period, by `drop_box`.
    ///
    /// # Safety
    /// `ptr` came from `Box::<T>::into_raw`, no new reader can reach it
    /// (unlinked), and it is handed over: not used by the caller afterwards
    /// except through references readers took before the unlink.
    pub(crate) unsafe fn defer_drop_raw_as<T: Send + 'static>(
        &self,
        ptr: NonNull<T>,
        bytes: usize,
        anywhere: bool,
    ) {
        let bytes = policy::booked(bytes);
        // SAFETY: per our contract.
        let Err(ptr) = (unsafe { self.try_defer_drop_raw_as(ptr, bytes, anywhere, true) }) else {
            return;
        };
        // SAFETY: refused, so still handed over to us (our contract).
        unsafe { self.defer_drop_refused(ptr, bytes) }
    }

    /// The rest of `defer_drop_raw_as` once its value found no page, out
    /// of line (inlined, its locals and calls took registers that every
    /// retire saved and restored): a grace-period wait, or a small
    /// callback where none may be waited for.
    ///
    /// # Safety
    /// As for `defer_drop_raw_as`, with `bytes` booked.
    #[cold]
    #[inline(never)]
    unsafe fn defer_drop_refused<T: Send + 'static>(&self, ptr: NonNull<T>, bytes: usize) {
        let value = HandedOver(ptr);
        let inner = self.inner();
        self.count_fallback();
        // Leaked, not dropped, should the wait or the queueing below panic
        // (a `tracing` subscriber panicking on a stall report, say): readers
        // may still hold the value, and the unwind must not free it under
        // them (`HandedOver` has no drop glue). Only the callback that runs
        // after the grace period drops it.
        if self.in_read_section() || in_callback() {
            // Cannot wait here: queue a (small) callback on the shard
            // instead (not through a page: none could be had). Inside a
            // callback too (of any domain): `run_callbacks` and reclaim run
            // callbacks with page allocation forbidden, and a grace-period
            // wait there held up the callback that a barrier called inside
            // a section of this domain (or an online QSBR thread) waits
            // for, for good (tests/callback_fallback_wait.rs).
            // SAFETY (of `drop_now`): the callback runs after a grace period.
            self.enqueue_as(
                Box::new(move || unsafe { value.drop_now() }),
                bytes,
                false,
                true,
            );
        } else {
            self.synchronize();
            // Counted as deferred before it runs (and is counted as run),
            // so `deferred_drops + callbacks_queued - invoked` (the stats'
            // books, the call backlog's outstanding entries) stays exact.
            super::add(&inner.callbacks.counters.deferred_drops, 1);
            // Freed after a grace period like any deferred drop: counted
            // (reclaim sees the progress in `bytes_freed`), and a panic is
            // reported to the hook like any deferred drop's.
            // SAFETY (of `drop_now`): a grace period has elapsed.
            inner
                .callbacks
                .run_inline(bytes, move || unsafe { value.drop_now() });
        }
    }

    /// As [`defer_drop`](Rcu::defer_drop) (booking `reclaim_size()`) but
    /// never blocks: when no bulk page can be had, the value is handed back,
    /// and under memory pressure it does not wait for garbage to be freed.
    ///
    /// ```
    /// let rcu = rcu_reclaim::Rcu::global();
    /// match rcu.try_defer_drop(Box::new(5u32)) {
    ///     Ok(()) => {}
    ///     Err(value) => drop(value), // e.g. wait elsewhere, then drop
    /// }
    /// ```
    pub fn try_defer_drop<T: ReclaimSize + Send + 'static>(
        &self,
        value: Box<T>,
    ) -> Result<(), Box<T>> {
        let bytes = T::reclaim_size(&value);
        self.try_defer_drop_as(value, bytes, crate::drops_anywhere::<T>())
    }

    /// As [`try_defer_drop`](Rcu::try_defer_drop), accounting `bytes`.
    ///
    /// ```
    /// let rcu = rcu_reclaim::Rcu::global();
    /// assert!(rcu.try_defer_drop_sized(Box::new(vec![1u8; 64]), 64).is_ok());
    /// ```
    pub fn try_defer_drop_sized<T: Send + 'static>(
        &self,
        value: Box<T>,
        bytes: usize,
    ) -> Result<(), Box<T>> {
        self.try_defer_drop_as(value, bytes, !std::mem::needs_drop::<T>())
    }

    /// `try_defer_drop_raw_as` for a `Box` the caller owns (no reader holds
    /// it), handed back if refused.
    fn try_defer_drop_as<T: Send + 'static>(
        &self,
        value: Box<T>,
        bytes: usize,
        anywhere: bool,
    ) -> Result<(), Box<T>> {
        // SAFETY: fresh from `Box::into_raw`, and ours again if refused.
        unsafe { self.try_defer_drop_raw_as(box_into_non_null(value), bytes, anywhere, false) }
            // SAFETY: refused, so not queued: the pointer from `into_raw` is ours.
            .map_err(|p| unsafe { Box::from_raw(p.as_ptr()) })
    }

    /// The deferred drop itself; `plain` is `defer_drop_as`'s `anywhere`
    /// (a "plain" page holds only values that drop anywhere: a retiring
    /// thread may free it). `Err` hands `value` back, not queued. With
    /// `may_wait` (not for `try_defer_drop`, which never blocks) the
    /// pressure throttle may make it wait (see `callbacks/throttle.rs`).
    ///
    /// # Safety
    /// As [`defer_drop_raw_as`](Rcu::defer_drop_raw_as) (on `Err` the caller
    /// owns `value` again).
    #[inline]
    unsafe fn try_defer_drop_raw_as<T: Send + 'static>(
        &self,
        value: NonNull<T>,
        bytes: usize,
        plain: bool,
        may_wait: bool,
    ) -> Result<(), NonNull<T>> {
        let w = word(value.as_ptr().cast());
        // SAFETY: `drop_box::<T>` drops the value once, after a grace
        // period, on any thread (`T: Send`), per our contract.
        unsafe { self.try_push_entry(w, drop_box::<T>, bytes, Kind::of(plain), may_wait) }
            .map_err(|_| value)
    }

    /// A safe point: frees, on this thread, garbage of this CPU's shard
    /// whose grace period has ended (up to eight bulk pages, about 2,000
    /// objects, and a batch of ready callbacks), and returns how many
    /// objects and callbacks ran. When the oldest garbage still waits, it
    /// moves its grace period on without waiting (completes the one in
    /// progress if every reader has left its section since, else starts
    /// it), so a thread that collects often frees its garbage about a
    /// grace period after retiring it. Costs a clock read and a few loads
    /// when nothing waits.
    ///
    /// By default no retiring call runs another object's destructor (a
    /// caller may hold a lock that a deferred `Drop` takes), so garbage is
    /// freed by a worker thread, on another core, in memory that has gone
    /// cold. A thread that calls `collect` where it holds no such lock —
    /// at the top of its event loop, after each update outside the
    /// update's lock — frees its garbage itself, where it was allocated,
    /// about a grace period after retiring it: less garbage in flight, and
    /// frees that hit the allocator's thread cache. While a shard's thread
    /// keeps collecting, each bulk page it hands off gets its grace period
    /// at once (no lazy pace) and its ready pages are left to it for
    /// [`Config::producer_window`](crate::Config::producer_window); a thread
    /// that stops collecting strands nothing: the grace-period thread
    /// finishes what it started, and after the window a worker frees what
    /// is left.
    ///
    /// The contract: call it only where this thread holds no lock that a
    /// deferred destructor or callback takes (they run here). Inside a
    /// read-side section of this domain, or inside an RCU callback, it does
    /// nothing: what it would run might wait for a grace period. On an
    /// online QSBR thread, for the same reason, it runs no callback and no
    /// destructor that might wait (the workers run those): it frees only
    /// values that drop anywhere ([`drops_anywhere`](crate::drops_anywhere)),
    /// as a retire's own steps do.
    ///
    /// On a [`Flavor::Qsbr`](crate::Flavor::Qsbr) domain, `collect` cannot
    /// end a grace period that waits for the calling thread itself: an
    /// online registered thread that retires in a loop must report a
    /// [`quiescent_state`](crate::QsbrThread::quiescent_state) before it
    /// collects, or none of its garbage becomes ready (10,000 stores of
    /// 1 KiB then hold 10 MiB; with a report before each `collect`, about
    /// half a MiB).
    ///
    /// ```
    /// use rcu_reclaim::{Config, Flavor, Rcu, RcuCell};
    /// let rcu = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
    /// let mut me = rcu.register_qsbr_thread();
    /// let cell = RcuCell::new_in(&rcu, Some(Box::new(vec![0u8; 1024])));
    /// for i in 0..1000u32 {
    ///     cell.store(Box::new(vec![i as u8; 1024]));
    ///     me.quiescent_state(); // nothing from a section is held here
    ///     rcu.collect(); // so the grace periods can end, and this frees
    /// }
    /// // (On a loaded machine the loop may outrun every grace period: the
    /// // thread goes on reporting and collecting, as an event loop would.)
    /// let start = std::time::Instant::now();
    /// while rcu.pending_bytes() >= 1000 * 1024 && start.elapsed().as_secs() < 10 {
    ///     me.quiescent_state();
    ///     rcu.collect();
    ///     std::thread::yield_now();
    /// }
    /// assert!(rcu.pending_bytes() < 1000 * 1024);
    /// ```
    ///
    /// ```
    /// use std::sync::Mutex;
    /// use rcu_reclaim::{Rcu, RcuCell};
    ///
    /// let rcu = Rcu::global();
    /// let config = RcuCell::new(vec![0u8; 64]);
    /// let lock = Mutex::new(());
    /// for i in 0..1000u32 {
    ///     {
    ///         let _held = lock.lock().unwrap();
    ///         config.store(Box::new(vec![i as u8; 64])); // retires the old one
    ///     }
    ///     rcu.collect(); // no lock held here: free what is ready
    /// }
    /// rcu.barrier();
    /// assert_eq!(rcu.pending(), 0);
    /// ```
    pub fn collect(&self) -> usize {
        // Not inside a section of this domain: a callback or destructor run
        // here could not wait for a grace period (nor could it on a
        // worker inside one). Nor inside a callback.
        if in_callback() || crate::reader::nesting_in(self.id()) > 0 {
            return 0;
        }
        let tick = COLLECT_TICK.with(|t| {
            let n = t.get();
            t.set(n.wrapping_add(1));
            n
        });
        let inner = self.inner();
        let cbs = &inner.callbacks;
        let _forked = crate::sync::ForkedWaits::scope(inner.gp.fork_check("collect()"));
        // On an online QSBR thread, only what cannot wait for a grace
        // period (values that drop anywhere) runs here.
        let plain_only =
            self.flavor() == crate::Flavor::Qsbr && crate::reader::qsbr_online_in(self.id());
        match cbs.collect(&inner.gp, cbs.current_shard(), tick, plain_only) {
            Collected::Ran(n) => n,
            Collected::Waiting => {
                // As after a hand-off: the grace-period thread finishes the
                // grace period if this thread stops calling.
                #[cfg(not(loom))]
                inner.kthread.fallback_look(inner);
                0
            }
        }
    }

    /// Hands this thread's buffered bulk page, if any, to its shard, so the
    /// next grace period covers it: reclaim does this before it waits for
    /// one, else what its own shrinkers just queued would stay behind.
    pub(crate) fn flush_own_page(&self) {
        let inner = self.inner();
        let slot = self.current_slot();
        // SAFETY: `current_slot` returns this thread's slot, alive while the
        // thread is registered (for as long as this call runs).
        let local = unsafe { &(*slot).local };
        if local.count.load(std::sync::atomic::Ordering::Relaxed) == 0 {
            return;
        }
        let kick = inner.callbacks.hand_off_buffered(&inner.gp, local);
        self.start_background(kick);
    }

    /// Waits until every callback and deferred drop queued before the call,
    /// by any thread, has run (the kernel's `rcu_barrier`). Runs ready
    /// callbacks on the calling thread. A callback still running on another
    /// thread after [`Config::stall_timeout`](crate::Config::stall_timeout)
    /// is reported (through `tracing`, or standard error), naming that
    /// thread, and waited for: one that waits for the caller never returns.
    ///
    /// **At process exit**: what is still queued when the process exits
    /// (`main` returns, `std::process::exit`) is not run, as with liburcu's
    /// `call_rcu` and crossbeam-epoch's deferred functions: the memory goes
    /// back to the system with the process, but a callback with an effect
    /// beyond memory (a flush, a count, a file closed) must be waited for.
    /// Call `barrier` on the domains you use, [`Rcu::global`] included,
    /// before returning from `main`. A dropped [`Rcu`] of your own runs
    /// what it holds (see its `Drop`); the global domain is never dropped.
    ///
    /// # Panics
    /// Inside a read-side section of this domain (it would wait for
    /// itself), or inside an RCU callback or a destructor that RCU runs, of
    /// any domain: it could wait for that very callback, or, across two
    /// domains, for a callback that waits for this one (a deadlock).
    ///
    /// ```
    /// let rcu = rcu_reclaim::Rcu::new(Default::default()).unwrap();
    /// for i in 0..100 {
    ///     rcu.defer_drop(Box::new(i));
    /// }
    /// rcu.barrier();
    /// assert_eq!(rcu.pending(), 0);
    /// ```
    #[track_caller]
    pub fn barrier(&self) {
        self.assert_not_in_section("barrier()", crate::domain::WaitInstead::Nothing);
        if in_callback() {
            panic!(
                "rcu-reclaim: barrier() called from inside an RCU callback or a destructor run \
                 by RCU (of any domain); it could wait for that callback itself, or for one of \
                 another domain that waits for this one. Queue the follow-up work with call() \
                 instead, or call barrier() after the callbacks have run"
            );
        }
        self.inner().callbacks.barrier(&self.inner().gp);
    }

    /// Callbacks and deferred drops queued and not yet run (the
    /// `rcu_oom_count()` of the 2020 kernel proposal), including those
    /// buffered by threads. A batch that a worker (or a reclaiming thread)
    /// has taken to run no longer counts, though it may still be running:
    /// a count of 0 says nothing waits for a grace period, not that every
    /// callback has returned. To wait for that, call
    /// [`barrier`](Rcu::barrier); after it, the count is exact.
    ///
    /// ```
    /// let rcu = rcu_reclaim::Rcu::new(Default::default()).unwrap();
    /// rcu.call(|| {});
    /// assert_eq!(rcu.pending(), 1);
    /// rcu.barrier();
    /// assert_eq!(rcu.pending(), 0);
    /// ```
    pub fn pending(&self) -> usize {
        self.inner().callbacks.pending(&self.inner().gp).0
    }

    /// Bytes that queued callbacks and deferred drops will free. As with
    /// [`pending`](Rcu::pending), a batch that a worker has taken to run
    /// no longer counts while it runs: a count of 0 says nothing waits for
    /// a grace period, not that the memory is back (a worker freeing a
    /// batch of large values may take milliseconds after the count reads
    /// 0). After [`barrier`](Rcu::barrier) it is.
    ///
    /// ```
    /// let rcu = rcu_reclaim::Rcu::new(Default::default()).unwrap();
    /// rcu.defer_drop(Box::new([0u8; 256]));
    /// assert_eq!(rcu.pending_bytes(), 256);
    /// rcu.barrier();
    /// ```
    pub fn pending_bytes(&self) -> usize {
        self.inner().callbacks.pending(&self.inner().gp).1
    }

    /// Callbacks and deferred drops queued on `cpu`'s shard (pages still
    /// buffered by a thread are not on any shard yet).
    ///
    /// ```
    /// use rcu_reclaim::topology::Topology;
    /// use rcu_reclaim::{Config, Rcu};
    /// let rcu = Rcu::new(Config::new().topology(Topology::synthetic(1, 2))).unwrap();
    /// // A reader holds the grace period up, so nothing runs meanwhile.
    /// let guard = rcu.read_lock();
    /// rcu.call(|| {}); // buffered in this thread's page: on no shard yet
    /// assert_eq!(rcu.pending_on_cpu(0) + rcu.pending_on_cpu(1), 0);
    /// rcu.call_hurry(|| {}); // queued at once, on this thread's CPU (folded into 0..2)
    /// assert!(rcu.pending_on_cpu(0) + rcu.pending_on_cpu(1) >= 1);
    /// drop(guard);
    /// rcu.barrier();
    /// ```
    pub fn pending_on_cpu(&self, cpu: usize) -> usize {
        self.inner().callbacks.pending_on_cpu(cpu).0
    }

    /// Bytes queued on `cpu`'s shard.
    ///
    /// ```
    /// let rcu = rcu_reclaim::Rcu::new(Default::default()).unwrap();
    /// assert_eq!(rcu.pending_bytes_on_cpu(0), 0);
    /// ```
    pub fn pending_bytes_on_cpu(&self, cpu: usize) -> usize {
        self.inner().callbacks.pending_on_cpu(cpu).1
    }

    /// Callbacks and deferred drops queued on the shards of `node`.
    ///
    /// ```
    /// let rcu = rcu_reclaim::Rcu::new(Default::default()).unwrap();
    /// assert_eq!(rcu.pending_on_node(0), 0);
    /// ```
    pub fn pending_on_node(&self, node: usize) -> usize {
        self.inner().callbacks.pending_on_node(node).0
    }

    /// Bytes queued on the shards of `node`.
    ///
    /// ```
    /// let rcu = rcu_reclaim::Rcu::new(Default::default()).unwrap();
    /// assert_eq!(rcu.pending_bytes_on_node(0), 0);
    /// ```
    pub fn pending_bytes_on_node(&self, node: usize) -> usize {
        self.inner().callbacks.pending_on_node(node).1
    }

    /// The CPU/node layout this domain shards its callbacks by.
    ///
    /// ```
    /// assert!(rcu_reclaim::Rcu::global().topology().cpus() >= 1);
    /// ```
    pub fn topology(&self) -> &crate::topology::Topology {
        &self.inner().callbacks.topology
    }
}

/// `ptr`, handed to `Rcu::{call}`, or a panic naming the call when it is
/// null (nothing is queued).
#[track_caller]
fn non_null_or_refused<T>(ptr: *mut T, call: &str) -> NonNull<T> {
    NonNull::new(ptr).unwrap_or_else(|| {
        panic!("Rcu::{call}: the pointer is null (pass what Box::into_raw returned)")
    })
}
