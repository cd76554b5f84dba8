//! Surviving `fork()`: a child process keeps using the domain.
//!
//! Only the thread that calls `fork()` exists in the child. The domain's
//! background threads (the grace-period thread, the callback workers) and
//! every other reader are gone, and any lock one of them held stays held
//! forever. [`Rcu::prepare_fork`] therefore parks the background threads
//! where they hold nothing and takes the domain's locks; after the fork,
//! [`ForkGuard::parent`] releases everything, and [`ForkGuard::child`]
//! releases everything, forgets the threads, ends the read-side sections
//! of threads that do not exist in the child, and starts new threads so
//! that callbacks queued before the fork still run (see
//! [`ForkGuard::child`] for the one exception). This is what liburcu's
//! `call_rcu_before_fork` / `call_rcu_after_fork_parent` /
//! `call_rcu_after_fork_child` do for its call_rcu threads.
//!
//! Use it in a program that forks and keeps using RCU in the child (a
//! pre-forking server; [`ForkGuard`] shows the `fork()` call); a child that
//! only `exec`s needs nothing.
//!
//! It does not stop the writers of an [`RcuHashMap`](crate::RcuHashMap)
//! or [`RcuCache`](crate::RcuCache): one caught mid-write at the fork
//! leaves its key's lock held for good in the child. Fork while no thread
//! writes the maps and caches the child will write, or write in the child
//! only to new ones (see [`ForkGuard::child`]). A child's write that
//! waits for such a lock panics, naming the cause and the fix: at once,
//! since each lock notes which thread holds it and that thread is one of
//! the parent's; after 2 s in a child forked without `prepare_fork` where
//! the holder was caught before it noted itself (in a prepared child that
//! case says so and waits on, as for a lock one of the child's own
//! threads holds). It never waits in silence.
//!
//! ```
//! let rcu = rcu_reclaim::Rcu::global();
//! let guard = rcu.prepare_fork(); // background threads parked, locks taken
//! // ... fork() here ...
//! guard.parent(); // in the parent (the child calls `child()`)
//! rcu.synchronize();
//! ```

use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::callbacks::{BulkPage, EngineLocks, HeldForFork, WorkersForkHeld};
use crate::domain::Rcu;
use crate::gp_thread::GpThreadForkHeld;
use crate::reader::Slot;
use crate::sync::ForkHeld;

/// The domain's state held still across `fork()`, from
/// [`Rcu::prepare_fork`]. Call [`parent`](ForkGuard::parent) in the parent
/// and [`child`](ForkGuard::child) in the child; dropping it is `parent`
/// (in a child, where `parent` panics, it warns instead).
///
/// ```no_run
/// let rcu = rcu_reclaim::Rcu::global();
/// let guard = rcu.prepare_fork();
/// // SAFETY: the child only uses async-signal-safe calls and the domain,
/// // which `child()` made ready.
/// match unsafe { libc::fork() } {
///     0 => {
///         guard.child();
///         rcu.call(|| {}); // callbacks work in the child
///         rcu.barrier();
///         unsafe { libc::_exit(0) };
///     }
///     _ => guard.parent(),
/// }
/// ```
///
/// It holds the domain's locks, so it is resolved on the thread that
/// prepared the fork (the one thread a child has), never sent to another:
///
/// ```compile_fail,E0277
/// let guard = rcu_reclaim::Rcu::global().prepare_fork();
/// std::thread::spawn(move || guard.parent()); // error: `MutexGuard<..>` cannot be sent between threads safely
/// ```
#[must_use = "the domain stays stopped until the guard is resolved with parent() or child()"]
pub struct ForkGuard<'a> {
    rcu: &'a Rcu,
    /// The process that prepared the fork: `child` refuses to run in it.
    pid: u32,
    // Dropped in this order: the reverse of the order they were taken in.
    /// Other threads' buffers of deferred drops whose lock was free at
    /// `prepare_fork`, held with their owners kept out.
    buffers: Vec<HeldForFork<'a>>,
    kthread: Option<GpThreadForkHeld<'a>>,
    workers: Option<WorkersForkHeld<'a>>,
    pressure: Option<ForkHeld<'a, Option<Instant>>>,
    engine: Option<EngineLocks<'a>>,
}

impl Rcu {
    /// Gets the domain ready for `fork()`: parks its background threads
    /// where they hold no lock and takes its locks, so the child inherits a
    /// consistent domain. Grace periods and callbacks wait until the guard is
    /// resolved, and so do other threads' retires once their bulk page
    /// needs its slow path (their pages are held, so the child finds each
    /// whole); call `fork()` next, then [`ForkGuard::parent`] or
    /// [`ForkGuard::child`].
    ///
    /// # Panics
    /// Inside a read-side section of this domain (a grace period in
    /// progress may be waiting for it, and the domain could not be stopped),
    /// or inside an RCU callback (the worker running it could not be
    /// parked, and its shard's lock is held). While the guard lives, a call
    /// on this thread that needs one of the locks it holds (`call`,
    /// `synchronize`, `barrier`, `pending`, `stats`, a second
    /// `prepare_fork`...) panics, naming the guard, rather than waiting for
    /// itself; the guard is released as the panic unwinds.
    ///
    /// ```
    /// let rcu = rcu_reclaim::Rcu::new(Default::default()).unwrap();
    /// rcu.call(|| {});
    /// let guard = rcu.prepare_fork();
    /// guard.parent(); // no fork happened: everything runs again
    /// rcu.barrier();
    /// assert_eq!(rcu.pending(), 0);
    /// ```
    #[track_caller]
    pub fn prepare_fork(&self) -> ForkGuard<'_> {
        self.assert_not_in_section("prepare_fork()", crate::domain::WaitInstead::Nothing);
        if crate::callbacks::in_callback() {
            panic!(
                "rcu-reclaim: prepare_fork() called from inside an RCU callback; the domain \
                 cannot be stopped while one of its callbacks runs. Fork from a thread that is \
                 not running a callback"
            );
        }
        // This thread's own bulk-page buffer is held across the fork too: a
        // stealer holding it at the fork would leave it locked for ever in
        // the child, whose only thread is this one.
        let own = self.current_slot();
        // SAFETY: `current_slot` returns this thread's slot, alive while the
        // thread is registered (for as long as the guard borrows `self`).
        let own_buffer = unsafe { &(*own).local };
        // From the page allocator, run by a retire on this thread that
        // holds that buffer: refused before anything is paused.
        own_buffer.refuse_if_allocating_here("prepare_fork()");
        // The page clock starts on first use; another thread starting it now
        // would leave it starting for ever in the child.
        crate::clock::epoch_ms();
        let inner = self.inner();
        inner.kthread.pause();
        inner.callbacks.workers.pause();
        let mut attempt = 0;
        loop {
            let engine = inner.callbacks.lock_for_fork(
                &inner.registry.orphans,
                || inner.gp.lock_gp_for_fork(),
                own_buffer,
            );
            let pressure = inner.callbacks.pressure.lock_for_fork();
            // Last: a thread may wake a worker or ask the grace-period
            // thread for a grace period while it holds one of the locks
            // above (a callback asking for one under its shard's lock).
            let workers = inner.callbacks.workers.hold_for_fork();
            let kthread = inner.kthread.hold_for_fork();
            let (buffers, missed) = self.hold_buffers_for_fork(own);
            if missed == 0 || attempt == FORK_BUFFER_TRIES {
                return ForkGuard {
                    rcu: self,
                    pid: std::process::id(),
                    buffers,
                    kthread: Some(kthread),
                    workers: Some(workers),
                    pressure: Some(pressure),
                    engine: Some(engine),
                };
            }
            // A retire's slow path (or a steal) held a buffer, most likely
            // waiting for one of the locks just taken: let them all go,
            // in the reverse order, so it can finish, and try again.
            drop(buffers);
            drop(kthread);
            drop(workers);
            drop(pressure);
            inner.gp.fork_guard_released();
            drop(engine);
            std::thread::sleep(std::time::Duration::from_micros(50 << attempt.min(5)));
            attempt += 1;
        }
    }
}

impl Rcu {
    /// The other threads' buffers of deferred drops (and the free slots'),
    /// each held if its lock is free, with its owner kept off its fast path: a thread caught at
    /// the fork inside a retire left its page half written, and the child
    /// could neither run nor free it (3 of 40 forks of a parent whose
    /// threads retired without pause lost a page so). Last in
    /// `prepare_fork`, with every other lock held, and without waiting for
    /// a lock: an owner's slow path holding its buffer may be waiting for
    /// one of those (the child leaves such a page alone, as before). No
    /// callback runs now (they run under the shard run locks held), so
    /// no retire from one can be kept waiting on a held buffer.
    ///
    /// Returns the buffers held and how many claimed slots' buffers were
    /// busy (`prepare_fork` then lets everything go and tries again, up to
    /// [`FORK_BUFFER_TRIES`] times).
    fn hold_buffers_for_fork(
        &self,
        own: *const crate::reader::Slot,
    ) -> (Vec<HeldForFork<'_>>, usize) {
        let inner = self.inner();
        let mut held = Vec::new();
        let mut missed = 0;
        inner.registry.for_each_slot(|slot| {
            // Not this thread's own (its guard slot's buffer is held as a
            // fork lock already; its QSBR registrations' are its own too).
            // Free slots' buffers too: a `barrier`'s flush takes every
            // slot's lock in turn, and one it held at the fork stayed held
            // in the child, whose first `barrier` then waited for it for
            // good (an audit: 11 children of 300 with a QSBR domain).
            if std::ptr::eq(slot, own) || crate::reader::is_own_qsbr_slot(slot) {
                return;
            }
            // SAFETY: slots are freed only when the registry is dropped,
            // and the registry lives as long as `self`, which the guard
            // borrows.
            let slot: &Slot = unsafe { &*(slot as *const Slot) };
            match slot.local.try_hold_for_fork() {
                Some(h) => held.push(h),
                None => missed += 1,
            }
        });
        if !held.is_empty() {
            // One barrier for all: each owner then either sees `steal` at
            // its next retire, or is seen on its fast path below.
            inner.gp.writer_barrier();
            for h in &held {
                h.wait_owner_out();
            }
        }
        (held, missed)
    }
}

/// How many more times `prepare_fork` lets its locks go and takes them
/// again while another thread's buffer of deferred drops is busy (a
/// retire's slow path waiting for one of them), sleeping 50 µs, then
/// twice as long each time up to 1.6 ms (about 10 ms in all); then it
/// forks without that buffer, whose page the child leaves alone.
const FORK_BUFFER_TRIES: u32 = 12;

impl ForkGuard<'_> {
    /// In the parent after `fork()` (or if it failed): lets the domain run
    /// again.
    ///
    /// # Panics
    /// In a child created by `fork()` (another process than the one that
    /// called `prepare_fork`): there the domain's background threads do not
    /// exist, so letting it run as in the parent would leave
    /// [`start_poll`](Rcu::start_poll) cookies that never complete and
    /// callbacks that run only at a `barrier`; call
    /// [`child`](ForkGuard::child) there. The guard is then released as by
    /// dropping it.
    ///
    /// ```
    /// let rcu = rcu_reclaim::Rcu::global();
    /// rcu.prepare_fork().parent();
    /// rcu.synchronize();
    /// ```
    #[track_caller]
    pub fn parent(self) {
        assert_eq!(
            std::process::id(),
            self.pid,
            "rcu-reclaim: ForkGuard::parent() called in a child created by fork(), not in the \
             process that called prepare_fork(); call child() in the child process (where \
             fork() returned 0), and parent() only in the parent"
        );
    }

    /// In the child after `fork()`: makes the domain usable by this process,
    /// the calling thread being its only thread. Sections other threads were
    /// inside at the fork are ended (they do not exist here), their buffered
    /// deferred drops are adopted, and new background threads are started
    /// for what was queued before the fork. Pressure signals that other
    /// threads of the parent held stay counted.
    ///
    /// [`Rcu::prepare_fork`] keeps every other thread out of its bulk page
    /// across the fork (a retire of that thread waits for the guard), so
    /// the child finds each page whole. One exception: a thread whose page
    /// stayed busy (its retire's slow path, or another thread's hand-off of
    /// it, held up for about 10 ms while `prepare_fork` let its locks go
    /// and tried again) is forked without; its entries, up to a page and a
    /// drain of that thread, are then neither run nor freed in the child
    /// (the parent runs its own copies).
    ///
    /// Call it only in a child process created by `fork()` right after
    /// [`Rcu::prepare_fork`] (it forgets the domain's threads). A reference
    /// this thread holds that another thread's section protects (one read
    /// under that thread's guard and shared with this one, through a scoped
    /// thread, say) must not be used after it: that section has ended, and
    /// the next grace period may free what it points to. The `unsafe` of
    /// the `fork()` call covers that promise. Only the domain's own locks
    /// are held still across the fork: the write locks of an
    /// [`RcuHashMap`](crate::RcuHashMap) or [`RcuCache`](crate::RcuCache)
    /// and a [`Reclaimer`](crate::reclaim::Reclaimer)'s are not (a map
    /// writer holds its key's stripe with no lock of the domain, and
    /// `prepare_fork` neither knows the maps nor waits for their writers),
    /// so in the child, read the maps and caches other threads were
    /// writing at the fork (their reads take no lock), and write to new
    /// ones. A child's write that finds a map's stripe or a cache's policy
    /// lock held by a thread of the parent (which never releases it here)
    /// panics, saying so; one that waits 2 s for a holder it cannot tell
    /// says so on standard error and waits on; see
    /// [`locking`](crate::locking), *Forks and the maps' locks*.
    ///
    /// # Panics
    /// In the process that called `prepare_fork` (no `fork()` happened, or
    /// this is the parent): ending the other threads' sections there would
    /// free memory they still read. The guard is then released as by
    /// [`parent`](ForkGuard::parent).
    ///
    /// ```no_run
    /// let rcu = rcu_reclaim::Rcu::global();
    /// let guard = rcu.prepare_fork();
    /// if unsafe { libc::fork() } == 0 {
    ///     guard.child();
    ///     rcu.synchronize();
    ///     unsafe { libc::_exit(0) };
    /// }
    /// ```
    #[track_caller]
    pub fn child(mut self) {
        assert_ne!(
            std::process::id(),
            self.pid,
            "rcu-reclaim: ForkGuard::child() called in the process that called prepare_fork(), \
             not in a child created by fork(); call parent() here, and child() only in the \
             child process (where fork() returned 0)"
        );
        let rcu = self.rcu;
        let inner = rcu.inner();
        inner.gp.adopt_process();
        // The buffers held across the fork are whole: let them go first
        // (no other thread exists here), so `reset_in_child` takes their
        // pages whatever their owners' `busy` said.
        let held_out: Vec<*const crate::callbacks::LocalBuffer> =
            self.buffers.drain(..).map(|h| h.buffer()).collect();
        if let Some(engine) = self.engine.as_mut() {
            reset_in_child(rcu, &mut engine.orphans, &held_out);
        }
        if let Some(kthread) = self.kthread.as_mut() {
            kthread.reset_in_child();
        }
        if let Some(workers) = self.workers.as_mut() {
            workers.reset_in_child();
        }
        self.release();
        if rcu.pending() > 0 {
            inner.callbacks.workers.ensure_started(inner);
            inner.kthread.kick(inner);
        }
    }

    fn release(&mut self) {
        self.rcu.inner().gp.fork_guard_released();
        self.buffers.clear();
        self.kthread = None;
        self.workers = None;
        self.pressure = None;
        self.engine = None;
        let inner = self.rcu.inner();
        inner.callbacks.workers.resume();
        inner.kthread.resume();
    }
}

/// In the child after `fork()`, only the calling thread exists: ends the
/// sections of every other thread's slot (a reader caught inside one at the
/// fork would hold up every grace period of the child), adopts their pages
/// of deferred drops into `orphans` and frees the slots for reuse. The
/// calling thread's own slots (its guard slot and its QSBR registrations,
/// which live on in the child) are left as they are.
///
/// `held_out`: the buffers the forking thread held across the fork with
/// their owners kept out (`Rcu::hold_buffers_for_fork`): whole, whatever
/// their `busy` flags say.
fn reset_in_child(
    rcu: &Rcu,
    orphans: &mut Vec<BulkPage>,
    held_out: &[*const crate::callbacks::LocalBuffer],
) {
    let mine = crate::reader::own_slot_in(rcu.id());
    let registry = rcu.registry();
    registry.waiter.store(0, Ordering::Relaxed);
    registry.for_each_slot(|slot| {
        // A scan of a foreign counter in flight at the fork never ends here.
        slot.foreign.forget_scans_in_child();
        if std::ptr::eq(slot, mine) || crate::reader::is_own_qsbr_slot(slot) {
            // The calling thread lives on, with a new thread id, in a new
            // process: its stall reports must name it as it is here. (A
            // try-lock: a thread reading the owner for a report at the fork
            // left it held for good, and then the old name stays.)
            if let Some(mut owner) = crate::sync::try_lock(&slot.owner) {
                *owner = crate::reader::current_owner();
            }
            return;
        }
        if !slot.in_use.load(Ordering::Relaxed) {
            return;
        }
        slot.ctr.store(0, Ordering::Release);
        slot.foreign.reset_in_child();
        // SAFETY: the slot's owner thread does not exist in the child, so
        // nothing else reads or writes `nest`.
        slot.nest.set(0);
        slot.raw_nest.set(0);
        let owner_free = crate::sync::try_lock(&slot.owner).is_some();
        let whole = held_out.iter().any(|&b| std::ptr::eq(b, &slot.local));
        match slot.local.take_in_child(whole) {
            Ok(page) if owner_free => {
                orphans.extend(page);
                slot.abandoned.store(false, Ordering::Relaxed);
                slot.in_use.store(false, Ordering::Release);
            }
            // The owner was inside a lock at the fork: the slot stays
            // claimed (but quiescent) forever rather than reused.
            Ok(page) => {
                orphans.extend(page);
                slot.abandoned.store(true, Ordering::Relaxed);
            }
            // The owner (or a stealer that does not exist here) was inside
            // the buffer's lock or fast path: the page's state is unknown,
            // so its objects are leaked, and the buffer is never touched
            // again (its lock stays held: `flush_locals` skips abandoned
            // slots but for a drain, whose count `take_in_child` zeroed,
            // and its counts no longer count as pending).
            Err(()) => {
                slot.local.reset_counts();
                slot.abandoned.store(true, Ordering::Relaxed);
            }
        }
    });
}

impl Drop for ForkGuard<'_> {
    fn drop(&mut self) {
        if self.engine.is_some() {
            // Dropped unresolved in a child of the fork (not by the panic of
            // `parent()` there, which names the fix itself): the domain's
            // threads are not here, so say so rather than leave it half
            // working in silence. A warning, not a panic: this may run in a
            // thread-local's destructor as the child exits.
            if std::process::id() != self.pid && !std::thread::panicking() {
                crate::sys::warn_loud(
                    "rcu-reclaim: a ForkGuard was dropped in a child created by fork() without \
                     ForkGuard::child(): the domain's background threads do not exist here, \
                     so start_poll() cookies never complete and callbacks run only at a \
                     barrier(); and the sections that the parent's other threads were in at \
                     the fork are never ended here, so synchronize(), barrier() and \
                     store_sync() wait for good if any thread was reading. Call \
                     guard.child() in the child (where fork() returned 0)",
                );
            }
            self.release();
        }
    }
}

impl std::fmt::Debug for ForkGuard<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForkGuard")
            .field("domain", &self.rcu.id())
            .finish_non_exhaustive()
    }
}
