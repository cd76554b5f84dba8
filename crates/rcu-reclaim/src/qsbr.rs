//! The QSBR flavor: read-side sections that cost nothing, on threads that
//! report quiescent states (liburcu's `urcu-qsbr`, DPDK's `rte_rcu_qsbr`).
//!
//! A domain created with [`Flavor::Qsbr`] hands out
//! [`QsbrThread`] registrations ([`Rcu::register_qsbr_thread`]). A
//! registered thread is *online* or *offline*:
//!
//! * **online**, it may read: [`QsbrThread::read_lock`] returns a
//!   [`QsbrGuard`] without executing a single instruction (no store, no
//!   fence, no thread-local lookup); every [`RcuCell::load`](crate::RcuCell::load)
//!   under it is the one acquire load the user wrote. In exchange the
//!   thread calls [`QsbrThread::quiescent_state`] from time to time, at a
//!   point where it holds no reference from a section (an event loop's
//!   top). Between two quiescent states the thread is in one long read-side
//!   section.
//! * **offline** ([`QsbrThread::thread_offline`], [`QsbrThread::offline_while`]),
//!   it holds no reference and no grace period waits for it: a thread goes
//!   offline before it blocks (sleeps, waits for I/O, a lock or a grace
//!   period).
//!
//! A grace period waits until every *online* registered thread has reported
//! a quiescent state after it began. Offline threads, threads that dropped
//! their registration (also while online, also when the registration is
//! dropped as the thread exits), and threads of other domains never hold
//! it up. Concurrent callers share grace periods, and the polled API
//! ([`Rcu::get_state`], [`Rcu::start_poll`], [`Rcu::poll`],
//! [`Rcu::cond_synchronize`]) works as on the other flavors. A waiting
//! writer spins for about 25 µs on a thread that has not reported yet, then
//! sleeps until that thread's next quiescent state wakes it: threads that
//! report every few microseconds are waited for without a sleep, and one
//! that reports seldom costs the writer those microseconds of CPU once per
//! grace period.
//!
//! # The type system's part
//! A [`QsbrGuard`] borrows its registration (`&self`), and
//! [`QsbrThread::quiescent_state`] takes `&mut self`: a quiescent state
//! cannot be reported while a reference read under a guard is alive.
//!
//! ```compile_fail,E0502
//! use rcu_reclaim::{Config, Flavor, Rcu, RcuCell};
//! let rcu = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
//! let cell = RcuCell::new_in(&rcu, Some(Box::new(1)));
//! let mut thread = rcu.register_qsbr_thread();
//! let guard = thread.read_lock();
//! let value = cell.load(&guard).unwrap();
//! thread.quiescent_state(); // error: `thread` is borrowed by the guard
//! println!("{value}");
//! ```
//!
//! The same holds for what [`RcuHashMap::get`](crate::RcuHashMap::get) and
//! [`RcuCache::get`](crate::RcuCache::get) lend under the guard:
//!
//! ```compile_fail,E0502
//! use rcu_reclaim::{Config, Flavor, Rcu, RcuCache, RcuHashMap};
//! let rcu = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
//! let map = RcuHashMap::new_in(&rcu);
//! map.insert(1u32, String::from("one"));
//! let cache: RcuCache<u32, String> = RcuCache::builder().rcu(&rcu).max_bytes(1 << 20).build();
//! cache.insert(1, String::from("one"));
//! let mut thread = rcu.register_qsbr_thread();
//! let guard = thread.read_lock();
//! let (a, b) = (map.get(&1, &guard).unwrap(), cache.get(&1, &guard).unwrap());
//! thread.quiescent_state(); // error: `thread` is borrowed by the guard
//! println!("{a} {b}");
//! ```
//!
//! The reference cannot outlive its guard either, nor be kept across a
//! quiescent state by keeping the guard:
//!
//! ```compile_fail,E0505
//! use rcu_reclaim::{Config, Flavor, Rcu, RcuCell};
//! let rcu = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
//! let cell = RcuCell::new_in(&rcu, Some(Box::new(1)));
//! let thread = rcu.register_qsbr_thread();
//! let value = cell.load(&thread.read_lock()).copied(); // fine: copied out
//! let guard = thread.read_lock();
//! let r = cell.load(&guard).unwrap();
//! let offline = thread.thread_offline(); // error: moved while borrowed
//! println!("{r} {value:?}");
//! # drop(offline);
//! ```
//!
//! Going offline consumes the online registration
//! ([`QsbrThread::thread_offline`] returns a [`QsbrOfflineThread`], whose
//! [`thread_online`](QsbrOfflineThread::thread_online) gives it back), or
//! borrows it mutably for a closure ([`QsbrThread::offline_while`]): an
//! offline thread has no way to take a guard, and forgetting the offline
//! registration leaves it offline, which holds nothing up. Forgetting an
//! online one (`mem::forget`, `Box::leak`) holds every grace period up for
//! good, as a thread that never reports would, also once its thread has
//! exited: a leaked registration's guard lends `&'static T`, which another
//! thread may still read (the stall warning names the thread). One kept
//! in a thread-local stays online, and protects what its destructor
//! reads, until it is dropped. A registration
//! stays on its thread (its slot names the thread in stall reports, and
//! "online" is a property of a thread):
//!
//! ```compile_fail,E0277
//! use rcu_reclaim::{Config, Flavor, Rcu};
//! let rcu = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
//! let thread = rcu.register_qsbr_thread();
//! std::thread::spawn(move || drop(thread)); // error: `QsbrThread` is not `Send`
//! ```
//!
//! nor does an offline one (it would come online on another thread):
//!
//! ```compile_fail,E0277
//! use rcu_reclaim::{Config, Flavor, Rcu};
//! let rcu = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
//! let offline = rcu.register_qsbr_thread().thread_offline();
//! std::thread::spawn(move || drop(offline.thread_online())); // error: `QsbrOfflineThread` is not `Send`
//! ```
//!
//! and a registration is not shared with another thread, not even a
//! scoped one, which would read under it while this thread reports:
//!
//! ```compile_fail,E0277
//! use rcu_reclaim::{Config, Flavor, Rcu, RcuCell};
//! let rcu = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
//! let cell = RcuCell::new_in(&rcu, Some(Box::new(1)));
//! let thread = rcu.register_qsbr_thread();
//! std::thread::scope(|s| {
//!     s.spawn(|| cell.load(&thread.read_lock()).copied()); // error: `QsbrThread` is not `Sync`
//! });
//! ```
//!
//! Nor does a guard, even to a scoped thread that the registering thread
//! outlives: the section is the registering thread's, which may report a
//! quiescent state while the other thread still reads.
//!
//! ```compile_fail,E0277
//! use rcu_reclaim::{Config, Flavor, Rcu, RcuCell};
//! let rcu = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
//! let cell = RcuCell::new_in(&rcu, Some(Box::new(1)));
//! let thread = rcu.register_qsbr_thread();
//! let guard = thread.read_lock();
//! std::thread::scope(|s| {
//!     s.spawn(move || cell.load(&guard).copied()); // error: `QsbrGuard` is not `Send`
//! });
//! ```
//!
//! A reference read online cannot be used while the thread is offline
//! either ([`offline_while`](QsbrThread::offline_while) borrows the
//! registration mutably):
//!
//! ```compile_fail,E0502
//! use rcu_reclaim::{Config, Flavor, Rcu, RcuCell};
//! let rcu = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
//! let cell = RcuCell::new_in(&rcu, Some(Box::new(1)));
//! let mut thread = rcu.register_qsbr_thread();
//! let guard = thread.read_lock();
//! let value = cell.load(&guard).unwrap();
//! thread.offline_while(|| println!("{value}")); // error: `thread` is borrowed by the guard
//! ```
//!
//! nor while it waits for a grace period
//! ([`synchronize`](QsbrThread::synchronize) goes offline for the wait):
//!
//! ```compile_fail,E0502
//! use rcu_reclaim::{Config, Flavor, Rcu, RcuCell};
//! let rcu = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
//! let cell = RcuCell::new_in(&rcu, Some(Box::new(1)));
//! let mut thread = rcu.register_qsbr_thread();
//! let guard = thread.read_lock();
//! let value = cell.load(&guard).unwrap();
//! thread.synchronize(); // error: `thread` is borrowed by the guard
//! println!("{value}");
//! ```
//!
//! nor after the registration is dropped (unregistered):
//!
//! ```compile_fail,E0505
//! use rcu_reclaim::{Config, Flavor, Rcu, RcuCell};
//! let rcu = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
//! let cell = RcuCell::new_in(&rcu, Some(Box::new(1)));
//! let thread = rcu.register_qsbr_thread();
//! let guard = thread.read_lock();
//! let value = cell.load(&guard).unwrap();
//! drop(thread); // error: cannot move out of `thread` because it is borrowed
//! println!("{value}");
//! ```
//!
//! An offline registration has no guard to read under (a
//! [`ReadGuard`](crate::ReadGuard) from its domain is one of its own):
//!
//! ```compile_fail,E0599
//! use rcu_reclaim::{Config, Flavor, Rcu, RcuCell};
//! let rcu = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
//! let cell = RcuCell::new_in(&rcu, Some(Box::new(1)));
//! let offline = rcu.register_qsbr_thread().thread_offline();
//! println!("{:?}", cell.load(&offline.read_lock())); // error: no method named `read_lock`
//! ```
//!
//! ```
//! use rcu_reclaim::{Config, Flavor, Rcu, RcuCell};
//! let rcu = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
//! let cell = RcuCell::new_in(&rcu, Some(Box::new(1)));
//! let offline = rcu.register_qsbr_thread().thread_offline();
//! assert_eq!(cell.load(&offline.domain().read_lock()), Some(&1));
//! ```
//!
//! # Waiting on an online thread
//! An online thread is inside a section of its domain
//! ([`Rcu::in_read_section`] is `true`), so a call that waits for a grace
//! period of that domain would wait for the thread's own next quiescent
//! state: [`Rcu::synchronize`], [`Rcu::barrier`], dropping a
//! [`Retired`](crate::Retired) early and the like panic there, as inside any
//! section. liburcu's `synchronize_rcu` puts an online caller offline for
//! the wait; here [`QsbrThread::synchronize`] does (it takes `&mut self`, so
//! no reference from a section can be alive), and
//! [`QsbrThread::offline_while`] does for any other call. Calls that never
//! wait ([`Rcu::call`], [`Rcu::defer_drop`], [`RcuCell::store`](crate::RcuCell::store),
//! [`Rcu::start_poll`]) work online.
//!
//! # Everything above the read side
//! Callbacks, deferred drops with their bulk pages, `barrier`, byte
//! accounting, pressure mode, [`Rcu::run_callbacks`], reclaim and the
//! memory budget work on a QSBR domain unchanged: they see grace periods
//! only, and a QSBR grace period is one like any other, whose end depends
//! on the registered threads' reports. One difference: an online thread
//! is in a read-side section, where a budget's direct reclaim (which may
//! wait for a grace period) cannot run, so a
//! [`MemoryBudget::check`](crate::reclaim::MemoryBudget::check) over its
//! `min` there is owed, and runs at the thread's next quiescent state that
//! reports or when it goes offline
//! ([`BudgetStats::owed_reclaims`](crate::reclaim::BudgetStats::owed_reclaims)).
//! A panic in that reclaim (a shrinker's, the OOM handler's, the usage
//! function's) reaches the caller of `quiescent_state`, `thread_offline`
//! or `offline_while`; paid as the registration is dropped, it is
//! reported instead (a drop may run while the thread unwinds, or in a
//! thread-local's destructor, where a panic would abort the process).
//! A budget then holds as well as the threads report: in a stress test
//! whose three online threads each allocated 64 KiB and more between two
//! reports, live memory peaked at 3.3–3.8 times a 48 MiB budget (4–5
//! times before the owed reclaim; a memb domain held it). Threads that
//! allocate much between reports should go offline around that work.
//! [`RcuHashMap`](crate::RcuHashMap) and [`RcuCache`](crate::RcuCache) on a
//! QSBR domain read under the thread's [`QsbrGuard`] (their writers take
//! their own short guard sections).
//!
//! # What memory pressure can and cannot do here
//! A writer cannot force a quiescent state: only the thread itself knows
//! when it holds no reference, so a grace period lasts until the slowest
//! online thread reports, whatever the pressure. Under pressure the domain
//! still does everything on its own side: it starts grace periods at once
//! instead of lazily, flushes the threads' bulk pages, expedites its waits
//! (spinning instead of sleeping, so a report ends the grace period at
//! once), lifts the workers' batch limits, and frees what is ready on the
//! reclaiming thread ([`Rcu::run_callbacks`]). And it can say who is late:
//! [`Rcu::late_readers`] names the threads the grace period in progress
//! still waits for, and a thread late past
//! [`Config::stall_timeout`](crate::Config::stall_timeout) is reported by
//! name and thread id. Threads that may block must go offline first, and
//! the shorter the interval between quiescent states, the less memory a
//! grace period holds back.
//!
//! Nor can it make the scheduler run a thread. With more online threads
//! than CPUs, a grace period lasts until every one of them has had a time
//! slice: twelve threads each storing 88-byte values into an `RcuCell` as
//! fast as they can, on a busy 2-CPU machine, saw 24–47 grace periods a
//! second, 130–190 MiB of garbage pending at its peak and 320–430 MiB
//! resident after 5 s; on a memb domain the same program ran 6,000–7,300
//! grace periods a second, with 21–100 MiB pending at its peak. A memory
//! budget or limit still bounds
//! it (its waits are paid at the threads' quiescent states); without one,
//! keep online writers no more numerous than CPUs, or use
//! [`Flavor::Memb`], whose grace periods wait only for threads inside a
//! section.
//!
//! # Memory ordering
//! As liburcu's `urcu-qsbr`: the domain's readers' counter is bumped once
//! per grace period after the writer's fence; a thread's slot holds the
//! counter value it last reported, `0` offline. A quiescent state that sees
//! a new counter value stores it between two full fences (the first
//! releases the thread's earlier sections to a writer that reads the slot,
//! and, with the thread's read of the counter, acquires the writer's
//! unlinks for its later sections; the second orders the report before the
//! check for a parked writer to wake). Going offline is the same store of
//! `0`; going online stores the counter then fences (a writer either sees
//! the thread online and waits, or the thread sees the unlink). The
//! reader-side fences run once per grace period per thread, never per
//! section; they are not replaced by `membarrier` (the loom model in
//! `tests/loom.rs` checks the protocol as written, and a mutant without the
//! first fence fails it).

use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::Ordering;

use crate::domain::{Rcu, WaitInstead};
use crate::flavor::Flavor;
use crate::guard::{sealed, ReadSection};
use crate::reader::{self, Slot};

/// A late reader: a thread that the grace period in progress still waits
/// for (see [`Rcu::late_readers`]).
///
/// ```
/// use rcu_reclaim::{Config, Flavor, Rcu};
/// let rcu = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
/// let _thread = rcu.register_qsbr_thread();
/// // No grace period in progress: nobody is late.
/// assert!(rcu.late_readers().is_empty());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct LateReader {
    /// The thread's name (`<unnamed>` if it has none).
    pub name: String,
    /// The thread's kernel thread id.
    pub tid: i32,
    /// Whether it is a [`QsbrThread`] that has not reported a quiescent
    /// state (else a thread inside a guard's or raw section).
    pub qsbr: bool,
}

impl Rcu {
    /// Registers the calling thread for quiescent-state-based reading in
    /// this domain (of the [`Flavor::Qsbr`] flavor); the thread starts
    /// online. Dropping the registration unregisters the thread (online or
    /// not); until then every grace period of the domain waits for its
    /// quiescent states while it is online.
    ///
    /// A registration keeps the domain alive (as a clone of the `Rcu`).
    ///
    /// # Panics
    /// If the domain is not of the QSBR flavor.
    ///
    /// ```
    /// use rcu_reclaim::{Config, Flavor, Rcu, RcuCell};
    /// let rcu = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
    /// let cell = RcuCell::new_in(&rcu, Some(Box::new(7)));
    /// let mut thread = rcu.register_qsbr_thread();
    /// assert_eq!(cell.load(&thread.read_lock()), Some(&7));
    /// thread.quiescent_state();
    /// ```
    #[track_caller]
    pub fn register_qsbr_thread(&self) -> QsbrThread {
        assert!(
            self.flavor() == Flavor::Qsbr,
            "rcu-reclaim: register_qsbr_thread() on a domain of the {} flavor; create the domain \
             with Config::new().flavor(Flavor::Qsbr)",
            self.flavor()
        );
        let slot = reader::qsbr_register(self.registry(), self.id());
        reader::qsbr_mark_online(self.id());
        QsbrThread {
            reg: Registration {
                rcu: self.clone(),
                slot: SlotPtr(slot),
                online: OnlineFlag(Cell::new(true)),
            },
            _not_send: PhantomData,
        }
    }

    /// The threads that the grace period in progress still waits for:
    /// online [`QsbrThread`]s that have not reported a quiescent state
    /// since it began, and threads inside guard or raw sections that began
    /// before it. Empty when no grace period is in progress. A racy
    /// snapshot, for reports (under memory pressure, say who holds memory
    /// back: a writer cannot make them report).
    ///
    /// ```
    /// let rcu = rcu_reclaim::Rcu::new(Default::default()).unwrap();
    /// assert!(rcu.late_readers().is_empty());
    /// ```
    pub fn late_readers(&self) -> Vec<LateReader> {
        self.inner()
            .gp
            .holdouts()
            .into_iter()
            .map(|(owner, qsbr)| LateReader {
                name: owner.name,
                tid: owner.tid,
                qsbr,
            })
            .collect()
    }
}

/// A registration's slot. `Send`/`Sync` on its own so that the compiler's
/// error for sending a registration names [`QsbrThreadStaysOnItsThread`].
#[derive(Clone, Copy)]
struct SlotPtr(*const Slot);

// SAFETY: a `SlotPtr` is only inside a `Registration`, itself only inside
// `QsbrThread` and `QsbrOfflineThread`, which are neither `Send` nor `Sync`
// (`QsbrThreadStaysOnItsThread`): it is used only on the registering thread.
unsafe impl Send for SlotPtr {}
// SAFETY: as above.
unsafe impl Sync for SlotPtr {}

/// Why [`QsbrThread`] and [`QsbrOfflineThread`] are neither `Send` nor
/// `Sync`: a registration reports the quiescent states of the thread that
/// registered, and its slot names that thread. They hold a
/// `PhantomData<*const QsbrThreadStaysOnItsThread>`, so the compiler's
/// error for sending one reads "`*const QsbrThreadStaysOnItsThread` cannot
/// be sent between threads safely".
enum QsbrThreadStaysOnItsThread {}

/// Whether a registration's slot is online. `Sync` on its own, as
/// [`SlotPtr`] is `Send` and `Sync`, so that the compiler's error for
/// sharing a registration (and so for sending a [`QsbrGuard`], which
/// borrows one) names [`QsbrThreadStaysOnItsThread`], not `Cell<bool>`,
/// whose hint ("use `AtomicBool` instead") would send the user the wrong
/// way.
struct OnlineFlag(Cell<bool>);

// SAFETY: an `OnlineFlag` is only inside a `Registration`, itself only
// inside `QsbrThread` and `QsbrOfflineThread`, which are neither `Send`
// nor `Sync` (`QsbrThreadStaysOnItsThread`): it is read and written only
// on the registering thread.
unsafe impl Sync for OnlineFlag {}

impl std::ops::Deref for OnlineFlag {
    type Target = Cell<bool>;

    #[inline(always)]
    fn deref(&self) -> &Cell<bool> {
        &self.0
    }
}

/// The state shared by the online and offline handles: the domain, the
/// slot, and whether the slot is online. Dropping it unregisters.
struct Registration {
    rcu: Rcu,
    slot: SlotPtr,
    online: OnlineFlag,
}

impl Registration {
    #[inline]
    fn slot(&self) -> &Slot {
        // SAFETY: the slot was claimed by this registration and is handed
        // back only by its drop; slots are freed only with their registry,
        // which `self.rcu` keeps alive.
        unsafe { &*self.slot.0 }
    }

    /// Puts the slot offline, then pays what a retire or a budget check
    /// while online owed. The payment runs the caller's code (a budget's
    /// usage function, shrinkers, the OOM handler), which may panic: the
    /// registration is offline by then, on both sides, and a caller that
    /// must come back online arms that before it calls this
    /// ([`QsbrThread::offline_while`]).
    fn go_offline(&self) {
        if self.go_offline_unpaid() {
            #[cfg(not(loom))]
            self.rcu.pay_owed_throttle();
        }
    }

    /// Puts the slot offline; returns whether a retire or a budget check
    /// while online owed a payment (`Rcu::pay_owed_throttle`), for the
    /// caller to make once its own state is consistent.
    fn go_offline_unpaid(&self) -> bool {
        if !self.online.replace(false) {
            return false;
        }
        reader::qsbr_offline(self.slot(), self.rcu.registry());
        reader::qsbr_mark_offline(self.rcu.id());
        // A retire while online would have waited for its garbage under
        // memory pressure: offline, it waits now (nothing is owed under
        // loom, which builds no pressure throttle).
        cfg!(not(loom)) && reader::take_owed_qsbr(self.rcu.registry())
    }

    fn go_online(&self) {
        if !self.online.replace(true) {
            reader::qsbr_online(self.slot(), &self.rcu.registry().gp_ctr);
            reader::qsbr_mark_online(self.rcu.id());
        }
    }
}

/// Puts a registration back online when dropped if it was online (`true`)
/// before: `offline_while` and `synchronize` leave the thread as its type
/// says, also when they unwind.
struct Online<'a>(&'a Registration, bool);

impl Drop for Online<'_> {
    fn drop(&mut self) {
        if self.1 {
            self.0.go_online();
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // Offline first: no later grace period waits for a thread that is
        // gone, whether it unregistered online or not.
        let owes = self.go_offline_unpaid();
        reader::qsbr_release(self.slot());
        // The slot's foreign counter, if one was attached, is let go: a
        // grace period parked on the foreign futex for it is woken by
        // nothing else (the thread exits online, say).
        #[cfg(not(loom))]
        self.rcu.registry().wake_foreign_writer();
        // What was owed is paid once the slot is handed back: the payment
        // runs the caller's code, and a panic there left the slot claimed
        // for good when it was paid first. That code's panic is caught and
        // reported, never unwound out of this destructor: a registration
        // is dropped while its thread unwinds (a panic on an online
        // thread) or by a thread-local's destructor at thread exit, where
        // a second panic aborts the process ("panic in a destructor during
        // cleanup", "thread local panicked on drop").
        if owes {
            #[cfg(not(loom))]
            crate::sync::run_reporting_panic(
                || self.rcu.pay_owed_throttle(),
                |msg| {
                    format!(
                        "rcu-reclaim: the direct reclaim a QsbrThread owed, paid as it was \
                         dropped, panicked (in the budget's usage function, a shrinker or the \
                         OOM handler): {msg}; the registration is released all the same"
                    )
                },
            );
        }
    }
}

/// An online QSBR registration of the calling thread in a
/// [`Flavor::Qsbr`] domain, from
/// [`Rcu::register_qsbr_thread`]. See the [module docs](crate::qsbr) for
/// the model.
///
/// While it is online, the thread reads with [`read_lock`](QsbrThread::read_lock)
/// (no instruction at all) and must call
/// [`quiescent_state`](QsbrThread::quiescent_state) regularly, and go
/// offline ([`offline_while`](QsbrThread::offline_while),
/// [`thread_offline`](QsbrThread::thread_offline)) before it blocks: until
/// it reports, no grace period of the domain can end. Dropping it
/// unregisters the thread.
///
/// ```
/// use rcu_reclaim::{Config, Flavor, Rcu, RcuCell};
/// let rcu = Rcu::new(Config::new().flavor(Flavor::Qsbr).on_demand()).unwrap();
/// let cell = RcuCell::new_in(&rcu, Some(Box::new(String::from("v1"))));
/// let mut thread = rcu.register_qsbr_thread();
/// for _event in 0..3 {
///     let guard = thread.read_lock();
///     assert!(cell.load(&guard).is_some());
///     thread.quiescent_state(); // between events: no reference held (a QsbrGuard is Copy: no drop)
/// }
/// cell.store(Box::new(String::from("v2"))); // never waits
/// thread.offline_while(|| rcu.barrier()); // waiting: offline
/// ```
#[must_use = "the thread is unregistered when the registration is dropped"]
pub struct QsbrThread {
    reg: Registration,
    _not_send: PhantomData<*const QsbrThreadStaysOnItsThread>,
}

impl QsbrThread {
    /// Enters a read-side section: free. The guard borrows the
    /// registration, so the thread cannot report a quiescent state or go
    /// offline while anything read under it is alive.
    ///
    /// ```
    /// use rcu_reclaim::{Config, Flavor, Rcu, RcuCell};
    /// let rcu = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
    /// let cell = RcuCell::new_in(&rcu, Some(Box::new(1u32)));
    /// let thread = rcu.register_qsbr_thread();
    /// let guard = thread.read_lock();
    /// assert_eq!(cell.load(&guard), Some(&1));
    /// ```
    #[inline(always)]
    pub fn read_lock(&self) -> QsbrGuard<'_> {
        QsbrGuard { thread: self }
    }

    /// Reports a quiescent state: the thread holds no reference read in an
    /// earlier section. Costs two loads and a compare when no grace period
    /// has begun since the last report; otherwise it stores the new counter
    /// between two fences and wakes a waiting writer. Call it often (an
    /// event loop's top): a grace period lasts until every online thread
    /// has called it.
    ///
    /// ```
    /// use rcu_reclaim::{Config, Flavor, Rcu};
    /// let rcu = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
    /// let mut thread = rcu.register_qsbr_thread();
    /// let cookie = rcu.start_poll(); // a grace period, run by another thread
    /// while !rcu.poll(&cookie) {
    ///     thread.quiescent_state(); // ... which waits for this report
    ///     std::thread::yield_now();
    /// }
    /// ```
    #[inline]
    pub fn quiescent_state(&mut self) {
        let slot = self.reg.slot();
        let ctr = self.reg.rcu.registry().gp_ctr.load(Ordering::Relaxed);
        // Offline (`thread_offline_unchecked`) the slot reads 0, never a
        // counter value: only then is `online` looked at.
        if slot.ctr.load(Ordering::Relaxed) != ctr && self.reg.online.get() {
            // It also pays a pressure-throttle wait that a retire while
            // online owed (offline: no reference from a section is alive,
            // as `&mut self` proves).
            // A debt (a retire over the pressure throttle's mark, a memory
            // limit's allowance or `Config::max_pending_bytes`) takes this
            // path too while no grace period begins: the retire that owed
            // it set the slot to `OWED_MARK`, which no counter value equals
            // (`qsbr_slots::owe_qsbr`).
            reader::qsbr_report(slot, self.reg.rcu.registry(), ctr);
        }
    }

    /// The mutation check of the loom model: a quiescent state reported
    /// without the fence that orders it after the thread's earlier
    /// accesses. Never use it: the model must fail with it.
    #[cfg(loom)]
    #[doc(hidden)]
    pub fn quiescent_state_without_fence_for_loom_mutation(&mut self) {
        let slot = self.reg.slot();
        let ctr = self.reg.rcu.registry().gp_ctr.load(Ordering::Relaxed);
        if slot.ctr.load(Ordering::Relaxed) != ctr && self.reg.online.get() {
            reader::qsbr_report_without_fence_a(slot, self.reg.rcu.registry(), ctr);
        }
    }

    /// Puts the thread offline (it holds no reference, and no grace period
    /// waits for it) until [`QsbrOfflineThread::thread_online`]. For a
    /// thread that blocks for long or stops reading for a while; around one
    /// call, [`offline_while`](QsbrThread::offline_while) is shorter.
    ///
    /// ```
    /// use rcu_reclaim::{Config, Flavor, Rcu};
    /// let rcu = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
    /// let thread = rcu.register_qsbr_thread();
    /// let offline = thread.thread_offline();
    /// rcu.synchronize(); // does not wait for this thread
    /// let thread = offline.thread_online();
    /// assert!(rcu.in_read_section()); // online again
    /// # drop(thread);
    /// ```
    pub fn thread_offline(self) -> QsbrOfflineThread {
        self.reg.go_offline();
        QsbrOfflineThread {
            reg: self.reg,
            _not_send: PhantomData,
        }
    }

    /// Runs `f` with the thread offline, then puts it back online (also if
    /// `f` panics): for blocking calls (a sleep, I/O, a lock, or a wait for
    /// a grace period of this domain such as [`Rcu::barrier`]). A thread
    /// put offline with
    /// [`thread_offline_unchecked`](QsbrThread::thread_offline_unchecked)
    /// stays offline, as liburcu's `synchronize_rcu` leaves an offline
    /// caller.
    ///
    /// ```
    /// use rcu_reclaim::{Config, Flavor, Rcu};
    /// let rcu = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
    /// let mut thread = rcu.register_qsbr_thread();
    /// rcu.call(|| println!("after a grace period"));
    /// thread.offline_while(|| rcu.barrier());
    /// ```
    pub fn offline_while<R>(&mut self, f: impl FnOnce() -> R) -> R {
        // Armed first: going offline pays what the thread owes (a
        // budget's direct reclaim, the caller's code), and a panic there
        // must leave the thread online as its type says, or its guards
        // would protect nothing once the panic is caught.
        let _online = Online(&self.reg, self.reg.online.get());
        self.reg.go_offline();
        f()
    }

    /// Waits for a grace period of the thread's domain, with the thread
    /// offline meanwhile (as liburcu's `synchronize_rcu` on an online QSBR
    /// thread): `&mut self` proves no reference from a section is alive.
    /// It comes back online after, unless it was offline
    /// ([`thread_offline_unchecked`](QsbrThread::thread_offline_unchecked)).
    /// [`Rcu::synchronize`] on an online thread would wait for itself, and
    /// panics instead.
    ///
    /// ```
    /// use rcu_reclaim::{Config, Flavor, Rcu, RcuCell};
    /// let rcu = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
    /// let cell = RcuCell::new_in(&rcu, Some(Box::new(1)));
    /// let mut thread = rcu.register_qsbr_thread();
    /// let old = cell.replace(Box::new(2)).unwrap();
    /// thread.synchronize();
    /// assert!(rcu.poll(&old.cookie()));
    /// ```
    ///
    /// # Panics
    /// If another registration of this thread in the same domain is
    /// online (the grace period would wait for its report), or inside a
    /// [`ReadGuard`](crate::ReadGuard)'s section of the domain; the panic
    /// names the caller's line.
    #[track_caller]
    pub fn synchronize(&mut self) {
        let rcu = self.reg.rcu.clone();
        let others = reader::qsbr_online_count_in(rcu.id())
            .saturating_sub(usize::from(self.reg.online.get()));
        assert!(
            others == 0,
            "rcu-reclaim: QsbrThread::synchronize() called while {others} other QsbrThread \
             registration(s) of this thread in the same domain are online; the grace period \
             would wait for their quiescent states forever. Put them offline first \
             (thread_offline(), or call this inside their offline_while(|| ...)), or drop them"
        );
        // As `offline_while`, without a closure, so that a misuse panic
        // below names the caller's line.
        let _online = Online(&self.reg, self.reg.online.get());
        self.reg.go_offline();
        rcu.assert_not_in_section("QsbrThread::synchronize()", WaitInstead::Poll);
        rcu.synchronize();
    }

    /// Whether the thread is online (always, for a `QsbrThread`; after
    /// [`thread_offline_unchecked`](QsbrThread::thread_offline_unchecked),
    /// not until [`thread_online_unchecked`](QsbrThread::thread_online_unchecked)).
    ///
    /// ```
    /// use rcu_reclaim::{Config, Flavor, Rcu};
    /// let rcu = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
    /// assert!(rcu.register_qsbr_thread().is_online());
    /// ```
    pub fn is_online(&self) -> bool {
        self.reg.online.get()
    }

    /// Attaches `ctr`, the thread's counter kept outside this library by
    /// code that follows liburcu's QSBR protocol (C built with
    /// `_LGPL_SOURCE`: its inlined quiescent state copies the word given to
    /// [`Rcu::publish_foreign_gp_word`] into `ctr`, going offline stores 0,
    /// going online copies the word), to this registration: from now on
    /// `ctr` stands for the registration's own state in every grace period
    /// (a grace period waits while it is online on an epoch from before
    /// it). The caller keeps `ctr` in step with the registration
    /// where both change (offline while it waits, say). `waiting` is the
    /// block's flag (liburcu's `urcu_qsbr_reader.waiting`) that a grace
    /// period parked on the domain's foreign futex word
    /// ([`Rcu::publish_foreign_futex`]) raises, so that the thread's next
    /// quiescent state wakes it; null: such a grace period polls. Replaces
    /// a counter attached before.
    ///
    /// # Safety
    ///
    /// `ctr` and `waiting` (if not null) stay valid until [`detach_foreign_counter`](QsbrThread::detach_foreign_counter)
    /// returns or the registration is dropped, whichever comes first.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use rcu_reclaim::{Config, Flavor, Rcu};
    /// static GP_WORD: AtomicUsize = AtomicUsize::new(1);
    /// static READER: AtomicUsize = AtomicUsize::new(0);
    /// let rcu = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
    /// let mut thread = rcu.register_qsbr_thread();
    /// unsafe {
    ///     rcu.publish_foreign_gp_word(&GP_WORD);
    ///     thread.attach_foreign_counter(&READER, std::ptr::null());
    /// }
    /// // Online, as liburcu's inlined rcu_thread_online() leaves it:
    /// READER.store(GP_WORD.load(Ordering::Relaxed), Ordering::SeqCst);
    /// // Waiting, offline on both sides (as the C drop-in's synchronize_rcu):
    /// READER.store(0, Ordering::SeqCst);
    /// thread.offline_while(|| rcu.synchronize());
    /// READER.store(GP_WORD.load(Ordering::Relaxed), Ordering::SeqCst);
    /// thread.detach_foreign_counter();
    /// ```
    #[cfg(not(loom))]
    pub unsafe fn attach_foreign_counter(
        &self,
        ctr: *const std::sync::atomic::AtomicUsize,
        waiting: *const std::sync::atomic::AtomicI32,
    ) {
        self.reg.slot().foreign.attach(ctr, true, waiting);
    }

    /// Detaches the counter given to
    /// [`attach_foreign_counter`](QsbrThread::attach_foreign_counter), if
    /// any, and waits until no grace period reads it; the registration's
    /// own state counts again.
    ///
    /// ```
    /// use rcu_reclaim::{Config, Flavor, Rcu};
    /// let rcu = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
    /// rcu.register_qsbr_thread().detach_foreign_counter(); // none: nothing to do
    /// ```
    #[cfg(not(loom))]
    pub fn detach_foreign_counter(&self) {
        self.reg.slot().foreign.detach();
        self.reg.rcu.registry().wake_foreign_writer();
    }

    /// Puts the thread offline without giving up the online handle, for a
    /// C ABI whose `thread_offline()`/`thread_online()` are separate calls
    /// on a thread-local registration. Does nothing if it is offline
    /// already. [`quiescent_state`](QsbrThread::quiescent_state) does
    /// nothing while the thread is offline.
    ///
    /// # Safety
    /// Until [`thread_online_unchecked`](QsbrThread::thread_online_unchecked)
    /// (or the registration's drop), the caller must not use any reference
    /// read under a guard of this registration, nor take a new guard:
    /// nothing protects them.
    ///
    /// ```
    /// use rcu_reclaim::{Config, Flavor, Rcu};
    /// let rcu = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
    /// let thread = rcu.register_qsbr_thread();
    /// // SAFETY: no guard is taken or used until the thread is back online.
    /// unsafe { thread.thread_offline_unchecked() };
    /// assert!(!thread.is_online());
    /// rcu.synchronize();
    /// thread.thread_online_unchecked();
    /// assert!(thread.is_online());
    /// ```
    pub unsafe fn thread_offline_unchecked(&self) {
        self.reg.go_offline();
    }

    /// Puts the thread back online after
    /// [`thread_offline_unchecked`](QsbrThread::thread_offline_unchecked);
    /// does nothing if it is online. Safe: going online only adds
    /// protection.
    ///
    /// ```
    /// use rcu_reclaim::{Config, Flavor, Rcu};
    /// let rcu = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
    /// let thread = rcu.register_qsbr_thread();
    /// thread.thread_online_unchecked(); // already online: nothing to do
    /// assert!(thread.is_online());
    /// ```
    pub fn thread_online_unchecked(&self) {
        self.reg.go_online();
    }

    /// The domain the thread is registered in.
    ///
    /// ```
    /// use rcu_reclaim::{Config, Flavor, Rcu};
    /// let rcu = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
    /// assert_eq!(rcu.register_qsbr_thread().domain().id(), rcu.id());
    /// ```
    pub fn domain(&self) -> &Rcu {
        &self.reg.rcu
    }
}

impl fmt::Debug for QsbrThread {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QsbrThread")
            .field("domain", &self.reg.rcu.id())
            .field("online", &self.reg.online.get())
            .finish_non_exhaustive()
    }
}

/// An offline QSBR registration (from [`QsbrThread::thread_offline`]): the
/// thread holds no reference and no grace period waits for it. It cannot
/// read until [`thread_online`](QsbrOfflineThread::thread_online); dropping
/// (or leaking) it holds nothing up.
///
/// ```
/// use rcu_reclaim::{Config, Flavor, Rcu};
/// let rcu = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
/// let offline = rcu.register_qsbr_thread().thread_offline();
/// assert!(!rcu.in_read_section());
/// rcu.barrier(); // may wait: the thread is offline
/// let thread = offline.thread_online();
/// # drop(thread);
/// ```
#[must_use = "the thread is unregistered when the registration is dropped"]
pub struct QsbrOfflineThread {
    reg: Registration,
    _not_send: PhantomData<*const QsbrThreadStaysOnItsThread>,
}

impl QsbrOfflineThread {
    /// Puts the thread back online: from now on grace periods wait for its
    /// quiescent states again.
    ///
    /// ```
    /// use rcu_reclaim::{Config, Flavor, Rcu};
    /// let rcu = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
    /// let thread = rcu.register_qsbr_thread().thread_offline().thread_online();
    /// assert!(thread.is_online());
    /// ```
    pub fn thread_online(self) -> QsbrThread {
        self.reg.go_online();
        QsbrThread {
            reg: self.reg,
            _not_send: PhantomData,
        }
    }

    /// The domain the thread is registered in.
    ///
    /// ```
    /// use rcu_reclaim::{Config, Flavor, Rcu};
    /// let rcu = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
    /// let offline = rcu.register_qsbr_thread().thread_offline();
    /// assert_eq!(offline.domain().id(), rcu.id());
    /// ```
    pub fn domain(&self) -> &Rcu {
        &self.reg.rcu
    }
}

impl fmt::Debug for QsbrOfflineThread {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QsbrOfflineThread")
            .field("domain", &self.reg.rcu.id())
            .finish_non_exhaustive()
    }
}

/// A read-side section of an online [`QsbrThread`]: it executes nothing
/// (the thread is in a section from one quiescent state to the next); what
/// it adds is the borrow, which keeps the thread from reporting a
/// quiescent state or going offline while anything read under it is alive.
/// Pass it to [`RcuCell::load`](crate::RcuCell::load). It is `Copy` and has
/// no `Drop`: the section ends, for the borrow checker, at the last use of
/// the guard and of what was read under it (`drop(guard)` does nothing).
///
/// ```
/// use rcu_reclaim::{Config, Flavor, Rcu, RcuCell, ReadSection};
/// let rcu = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
/// let cell = RcuCell::new_in(&rcu, Some(Box::new("v1")));
/// let thread = rcu.register_qsbr_thread();
/// let guard = thread.read_lock();
/// assert_eq!(cell.load(&guard), Some(&"v1"));
/// assert_eq!(guard.domain().id(), rcu.id());
/// ```
#[derive(Clone, Copy)]
#[must_use = "a QsbrGuard does nothing unless passed to RcuCell::load"]
pub struct QsbrGuard<'a> {
    thread: &'a QsbrThread,
}

impl sealed::Sealed for QsbrGuard<'_> {}

impl ReadSection for QsbrGuard<'_> {
    #[inline(always)]
    fn domain(&self) -> &Rcu {
        &self.thread.reg.rcu
    }
}

impl fmt::Debug for QsbrGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QsbrGuard")
            .field("domain", &self.thread.reg.rcu.id())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The only thing keeping a registration (and so a `QsbrThread`, or a
    /// `QsbrGuard` borrowing one) on its thread is the
    /// `QsbrThreadStaysOnItsThread` marker: the compiler's error for
    /// sharing one then names that marker alone, not `Cell<bool>` with a
    /// hint to use `AtomicBool`.
    #[test]
    fn only_the_marker_keeps_a_registration_on_its_thread() {
        fn send_and_sync<T: Send + Sync>() {}
        send_and_sync::<Registration>();
    }
}
