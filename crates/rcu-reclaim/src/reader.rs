//! Reader registry and read-side critical sections.
//!
//! Every thread that reads in a domain owns one [`Slot`] in that domain's
//! [`Registry`]: a cache-padded word holding `0` while the thread is outside
//! any read-side section, or the domain's grace-period counter as it was when
//! the thread's outermost section began. A grace period bumps the counter and
//! waits for every slot that holds a smaller non-zero value.
//!
//! A thread registered for quiescent-state-based reclamation (the QSBR
//! flavor, `qsbr.rs`) owns a slot of its own, claimed apart from the
//! thread-local registrations below: its `ctr` holds the readers' counter
//! as the thread last reported it (`qsbr_report`) while the thread is
//! online, `0` while it is offline. The grace periods' test is the same:
//! a slot is quiescent for the grace period waiting for `new` when it reads
//! `0` or at least `new`.
//!
//! Slots live in an append-only list that writers walk without a lock; a
//! thread that exits gives its slot back (`in_use = false`) for the next new
//! thread to claim, so the list is as long as the most threads that ever read
//! at once, and a slot is freed only with its registry.

use std::cell::{Cell, RefCell};
use std::ptr;
use std::sync::atomic::Ordering;

use crossbeam_utils::CachePadded;

use crate::callbacks::bulk::BulkPage;
use crate::callbacks::local::LocalBuffer;
use crate::flavor::{reader_fence, Flavor};
use crate::sync::{
    acq_rel_for_loom, fence, lock, mutated_for_loom, ord_for_loom, Arc, AtomicBool, AtomicI32,
    AtomicPtr, AtomicU64, Mutex,
};

/// One thread's reader state in one domain.
pub(crate) struct Slot {
    /// `0` outside a section; else the grace-period counter snapshot taken by
    /// the outermost `read_lock`. A QSBR slot: `0` offline, else the counter
    /// the thread last reported.
    pub(crate) ctr: AtomicU64,
    /// Nesting depth: guards plus raw sections. Only the owning thread
    /// touches it (see `Sync` below). 64 bits: even leaking a guard every
    /// nanosecond, it would take centuries to wrap, so the read side needs
    /// no overflow check.
    pub(crate) nest: Cell<u64>,
    /// Of `nest`, the sections entered with `read_lock_raw` and not yet
    /// ended: a raw unlock may end only one of these, never a guard's.
    pub(crate) raw_nest: Cell<u64>,
    /// A late slot (see [`late_slot`]): no registration holds it, and it
    /// goes back when its outermost raw section ends. Written only by its
    /// owner; here rather than in the thread-local cache so that ending a
    /// raw section looks at a line it has just read (`raw_nest`).
    pub(crate) late: Cell<bool>,
    /// What the outermost exit of a section its thread abandoned does (see
    /// `flagged_exit`). Written only by its owner.
    abandoned_exit: Cell<AbandonedExit>,
    /// Claimed by a live thread.
    pub(crate) in_use: AtomicBool,
    /// Its thread exited inside a section: still claimed, and not counted
    /// as registered. A guard's section hands the slot back when its last
    /// guard drops (`abandoned_exit`); raw sections only, never (their
    /// thread cannot end them any more).
    pub(crate) abandoned: AtomicBool,
    /// Abandoned inside raw sections only ([`Rcu::read_lock_raw`]), which
    /// lend safe code no reference: once the thread is gone the section
    /// may be ended (`GracePeriods::reap_if_exited`). `false` for a slot
    /// abandoned inside a [`ReadGuard`](crate::ReadGuard)'s section
    /// (leaked, or kept in a thread-local destroyed later) or by an online
    /// QSBR registration: what was read under it may live on in other
    /// threads (a leaked guard lends `&'static T`, and `&T` is `Send` for
    /// `T: Sync`), so only that guard's (or registration's) drop ends it.
    /// `false` is the safe default: a stale read only delays the reaping.
    ///
    /// [`Rcu::read_lock_raw`]: crate::Rcu::read_lock_raw
    pub(crate) raw_only: AtomicBool,
    /// Next slot in the registry's list; set once before the slot is published.
    next: AtomicPtr<CachePadded<Slot>>,
    /// Who owns the slot, for stall reports.
    pub(crate) owner: Mutex<Owner>,
    /// The `ctr` value of the section last reported as stalled (once per stall).
    pub(crate) stall_reported: AtomicU64,
    /// A reader counter outside this library that grace periods also wait
    /// for (C built with liburcu's `_LGPL_SOURCE`: see `foreign.rs`).
    #[cfg(not(loom))]
    pub(crate) foreign: crate::foreign::ForeignReader,
    /// Claimed by a QSBR registration (`qsbr_register`), not a thread-local
    /// one: its stall is a missing quiescent state, not a long section.
    pub(crate) qsbr: AtomicBool,
    /// The domain (its number; 0: none) whose grace period the owner waits
    /// for while inside a section on this slot ([`mark_waiting`]): a stall
    /// report on this slot names the wait, which may close a cycle.
    #[cfg(not(loom))]
    pub(crate) waiting_on: AtomicU64,
    /// The owner's page of deferred drops.
    pub(crate) local: LocalBuffer,
}

// SAFETY: every field but the `Cell`s (`nest`, `raw_nest`, `late`,
// `abandoned_exit`) is an atomic, a mutex or `Sync` (`local`). The `Cell`s
// are read and written only by the thread that claimed the slot (through
// `read_lock`, `ReadGuard::drop`, the raw pair, `claim` and that thread's
// registration; a forked child resets those of threads that do not exist
// there, before any other thread runs), and a slot is claimed by one
// thread at a time: claiming is a CAS on `in_use`, and the slot is handed
// back only from the owner's thread-exit destructor when no section of the
// owner is open, or else (abandoned) by the owner's last guard drop, after
// which nothing of that thread can reach it (`release_abandoned`).
unsafe impl Sync for Slot {}

/// Whether the outermost exit of a section hands its slot back: set when
/// the slot's thread lets its registration go inside a guard's section (a
/// guard kept in a thread-local destroyed later), so that a thread that
/// exits with such a guard leaves no slot claimed for good.
#[derive(Clone, Copy, Default)]
enum AbandonedExit {
    #[default]
    No,
    /// Hand the slot back; `owed`: the section owed the pressure throttle
    /// before it was abandoned.
    Release { owed: bool },
}

/// Name, kernel thread id and process of the thread owning a slot.
#[derive(Clone, Debug, Default)]
pub(crate) struct Owner {
    pub(crate) name: String,
    pub(crate) tid: i32,
    /// The process the thread ran in when it claimed the slot (0 under
    /// loom): another one than the current process means the process was
    /// forked without `Rcu::prepare_fork`, and the thread does not exist
    /// here (the stall report says so).
    pub(crate) pid: u32,
}

impl Slot {
    fn new() -> Self {
        Slot {
            ctr: AtomicU64::new(0),
            nest: Cell::new(0),
            raw_nest: Cell::new(0),
            late: Cell::new(false),
            abandoned_exit: Cell::new(AbandonedExit::No),
            in_use: AtomicBool::new(true),
            abandoned: AtomicBool::new(false),
            raw_only: AtomicBool::new(false),
            next: AtomicPtr::new(ptr::null_mut()),
            owner: Mutex::new(Owner::default()),
            stall_reported: AtomicU64::new(0),
            #[cfg(not(loom))]
            foreign: Default::default(),
            qsbr: AtomicBool::new(false),
            #[cfg(not(loom))]
            waiting_on: AtomicU64::new(0),
            local: LocalBuffer::default(),
        }
    }
}

impl Slot {
    /// Hands the slot's buffered deferred drops over to `registry`'s
    /// orphans as its thread lets the slot go (under the buffer's lock, so
    /// a concurrent flush sees the page either here or in `orphans`).
    fn orphan_buffered_page(&self, registry: &Registry) {
        let orphaned = self.local.with_page_owner(|page| {
            let orphaned = page.take().map(|p| lock(&registry.orphans).push(p));
            self.local.reset_counts();
            orphaned.is_some()
        });
        // No retire of this thread will hand the page on: the domain's
        // grace-period thread adopts it now, not at its next lazy look.
        #[cfg(not(loom))]
        if orphaned {
            if let Some(adopt) = registry.adopt_orphans.get() {
                adopt();
            }
        }
        #[cfg(loom)]
        let _ = orphaned;
    }
}

/// The slots of one domain, plus the word a parked writer sleeps on.
///
/// Shared (through `Arc`) by the domain and by every thread registered in it,
/// so a thread can give its slot back at exit even after the domain is gone.
pub(crate) struct Registry {
    /// The grace-period counter readers snapshot: starts at 1, bumped once
    /// per grace period. Alone on its cache line: readers load it at every
    /// outermost `read_lock`, writers bump it once per grace period.
    pub(crate) gp_ctr: CachePadded<AtomicU64>,
    head: AtomicPtr<CachePadded<Slot>>,
    /// Readers fence on entering their outermost section (mb, QSBR, or a
    /// memb domain whose grace periods skip `membarrier`: see
    /// `reader_fences.rs`). Beside `waiter`, which every outermost exit
    /// reads: a line the section touches anyway.
    pub(crate) fence_reads: AtomicBool,
    /// `-1` while a writer is parked waiting for readers, else `0`.
    pub(crate) waiter: AtomicI32,
    /// Cleared when the domain is dropped; dead registrations are pruned.
    pub(crate) alive: AtomicBool,
    /// Pages of deferred drops left by threads that exited, for the domain
    /// to adopt (nothing is lost).
    pub(crate) orphans: Mutex<Vec<BulkPage>>,
    pub(crate) flavor: Flavor,
    /// The grace-period word of foreign readers (see `foreign.rs`), or null.
    #[cfg(not(loom))]
    pub(crate) foreign_gp: std::sync::atomic::AtomicPtr<std::sync::atomic::AtomicUsize>,
    /// The futex word foreign readers wake a parked writer through
    /// (liburcu's `urcu_*_gp.futex`), or null.
    #[cfg(not(loom))]
    pub(crate) foreign_futex: std::sync::atomic::AtomicPtr<std::sync::atomic::AtomicI32>,
    /// Pays a pressure-throttle wait owed by a section that has just ended
    /// (set by the domain, which the registry cannot name: see
    /// [`OWES_THROTTLE`]).
    #[cfg(not(loom))]
    pub(crate) pay_owed: std::sync::OnceLock<PayOwed>,
    /// Asks the domain to adopt `orphans` at once (set by the domain: it
    /// kicks its grace-period thread).
    #[cfg(not(loom))]
    pub(crate) adopt_orphans: std::sync::OnceLock<Box<dyn Fn() + Send + Sync>>,
    /// The bytes waiting for a grace period, for stall reports (set by the
    /// domain; lock-free: a report runs under the grace-period lock).
    #[cfg(not(loom))]
    pub(crate) backlog_bytes: std::sync::OnceLock<Box<dyn Fn() -> usize + Send + Sync>>,
}

/// The domain's hook behind [`Registry::pay_owed`].
#[cfg(not(loom))]
pub(crate) type PayOwed = Box<dyn Fn(Payer) + Send + Sync>;

impl Registry {
    /// A registry of `flavor`'s readers; those of an mb or QSBR domain
    /// (or any under Miri or loom, which have no `membarrier`) fence for
    /// good, a memb domain's while its grace periods say so.
    pub(crate) fn new(flavor: Flavor) -> Self {
        Registry {
            gp_ctr: CachePadded::new(AtomicU64::new(1)),
            fence_reads: AtomicBool::new(Self::reads_always_fenced(flavor)),
            head: AtomicPtr::new(ptr::null_mut()),
            waiter: AtomicI32::new(0),
            alive: AtomicBool::new(true),
            orphans: Mutex::new(Vec::new()),
            flavor,
            #[cfg(not(loom))]
            foreign_gp: Default::default(),
            #[cfg(not(loom))]
            foreign_futex: Default::default(),
            #[cfg(not(loom))]
            pay_owed: std::sync::OnceLock::new(),
            #[cfg(not(loom))]
            adopt_orphans: std::sync::OnceLock::new(),
            #[cfg(not(loom))]
            backlog_bytes: std::sync::OnceLock::new(),
        }
    }

    /// Whether `flavor`'s readers always fence (see [`Registry::new`]).
    pub(crate) fn reads_always_fenced(flavor: Flavor) -> bool {
        flavor != Flavor::Memb || cfg!(miri) || cfg!(loom)
    }

    /// Claims a free slot or appends a new one.
    pub(crate) fn claim(&self) -> *const Slot {
        let mut cur = self
            .head
            .load(ord_for_loom("reader.claim.head_acquire", Ordering::Acquire));
        while !cur.is_null() {
            // SAFETY: slots in the list are freed only by `Registry::drop`,
            // and `self` is alive.
            let slot = unsafe { &**cur };
            if !slot.in_use.load(Ordering::Relaxed)
                && slot
                    .in_use
                    .compare_exchange(
                        false,
                        true,
                        ord_for_loom("reader.claim.in_use_acquire", Ordering::Acquire),
                        Ordering::Relaxed,
                    )
                    .is_ok()
            {
                slot.abandoned.store(false, Ordering::Relaxed);
                slot.raw_only.store(false, Ordering::Relaxed);
                // Left set only by a slot a forked child freed (its owner
                // does not exist there): this thread's sections must never
                // hand the slot back.
                slot.abandoned_exit.set(AbandonedExit::No);
                return slot as *const Slot;
            }
            cur = slot
                .next
                .load(ord_for_loom("reader.claim.next_acquire", Ordering::Acquire));
        }
        let new = Box::into_raw(Box::new(CachePadded::new(Slot::new())));
        let mut head = self.head.load(ord_for_loom(
            "reader.claim.push_head_acquire",
            Ordering::Acquire,
        ));
        loop {
            // SAFETY: `new` is ours until the CAS below publishes it.
            let new_ref: &Slot = unsafe { &*new };
            new_ref.next.store(head, Ordering::Relaxed);
            match self.head.compare_exchange(
                head,
                new,
                acq_rel_for_loom(
                    "reader.claim.push.release_half",
                    "reader.claim.push.acquire_half",
                ),
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(h) => head = h,
            }
        }
        // SAFETY: `new` is live and now owned by the list.
        unsafe { &**new as *const Slot }
    }

    /// Walks every slot of the registry (in use or not).
    pub(crate) fn for_each_slot(&self, mut f: impl FnMut(&Slot)) {
        let mut cur = self.head.load(ord_for_loom(
            "reader.for_each_slot.head_acquire",
            Ordering::Acquire,
        ));
        while !cur.is_null() {
            // SAFETY: slots are freed only by `Registry::drop`, and `self` is alive.
            let slot = unsafe { &**cur };
            f(slot);
            cur = slot.next.load(ord_for_loom(
                "reader.for_each_slot.next_acquire",
                Ordering::Acquire,
            ));
        }
    }

    /// Whether any slot is claimed (by a registered thread, or abandoned by
    /// one that exited inside a section). Acquire: a slot handed back was
    /// handed back after its thread's last section ended.
    pub(crate) fn any_claimed(&self) -> bool {
        let mut any = false;
        self.for_each_slot(|s| {
            any |= s.in_use.load(ord_for_loom(
                "reader.any_claimed.acquire",
                Ordering::Acquire,
            ))
        });
        any
    }

    /// Whether a thread left a section open as it exited that only a drop
    /// can end: a guard's, or an online QSBR registration's (see
    /// `Slot::raw_only`). Until then no grace period of the domain ends.
    pub(crate) fn any_section_left_open(&self) -> bool {
        let mut any = false;
        self.for_each_slot(|s| {
            any |= s.in_use.load(ord_for_loom(
                "reader.any_section_left_open.acquire",
                Ordering::Acquire,
            )) && s.abandoned.load(Ordering::Relaxed)
                && !s.raw_only.load(Ordering::Relaxed)
                && s.ctr.load(Ordering::Relaxed) != 0;
        });
        any
    }

    /// Number of slots claimed by live threads.
    pub(crate) fn registered(&self) -> usize {
        let mut n = 0;
        self.for_each_slot(|s| {
            n += usize::from(
                s.in_use.load(Ordering::Relaxed) && !s.abandoned.load(Ordering::Relaxed),
            );
        });
        n
    }

    /// Wakes a writer parked in `wait_for_readers`, if any. Cheap when none is.
    #[inline]
    pub(crate) fn wake_writer(&self) {
        if self.waiter.load(Ordering::Relaxed) != 0 {
            self.wake_writer_slow();
        }
    }

    /// Wakes a grace period parked on the foreign futex word
    /// (`GracePeriods::park_on_foreign`), if one is: called when a foreign
    /// counter is detached (its thread unregisters or exits), which no
    /// foreign reader's wake-up reports. liburcu's protocol: -1 means a
    /// writer waits; store 0, then a shared `FUTEX_WAKE`.
    #[cfg(not(loom))]
    pub(crate) fn wake_foreign_writer(&self) {
        let f = self.foreign_futex.load(ord_for_loom(
            "reader.wake_foreign_writer.acquire",
            Ordering::Acquire,
        ));
        if f.is_null() {
            return;
        }
        // SAFETY: a `&'static AtomicI32` (`Rcu::publish_foreign_futex`).
        let f = unsafe { &*f };
        // The detach's SeqCst swap orders the counter's release before
        // this look (a writer stores -1, then its barrier, then looks).
        if !mutated_for_loom("reader.wake_foreign_writer.fence") {
            fence(Ordering::SeqCst);
        }
        if f.load(Ordering::Relaxed) == -1 {
            f.store(0, Ordering::Relaxed);
            crate::sys::futex_wake_shared(f);
        }
    }

    #[cold]
    fn wake_writer_slow(&self) {
        if self.waiter.swap(0, Ordering::Relaxed) != 0 {
            #[cfg(not(loom))]
            crate::sys::futex_wake_all(&self.waiter);
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let mut cur = self.head.load(Ordering::Relaxed);
        while !cur.is_null() {
            // SAFETY: the registry is being dropped, so no thread and no
            // writer can reach its slots any more (both hold an `Arc` to it);
            // each slot was allocated by `Box::new` in `claim`.
            let slot = unsafe { Box::from_raw(cur) };
            cur = slot.next.load(Ordering::Relaxed);
        }
    }
}

/// A thread's claim on a slot of one domain; gives it back at thread exit.
struct Registration {
    domain_id: u64,
    registry: Arc<Registry>,
    slot: *const Slot,
}

impl Drop for Registration {
    fn drop(&mut self) {
        // SAFETY: `self.registry` keeps the slot alive, and this thread owns it.
        let slot = unsafe { &*self.slot };
        // The thread's foreign counter (a thread-local of its own) is let
        // go with the registration, before the thread's memory is.
        #[cfg(not(loom))]
        {
            slot.foreign.detach();
            // A grace period parked on the foreign futex for this counter
            // is woken by nothing else.
            self.registry.wake_foreign_writer();
        }
        let_go(slot, &self.registry);
    }
}

/// Lets this thread's `slot` of `registry` go as the thread exits (its
/// registration's drop, or a late slot's at thread exit): handed back if
/// no section of it is open, else abandoned with the section open.
fn let_go(slot: &Slot, registry: &Registry) {
    let abandoned = slot.nest.get() != 0;
    let raw_only = slot.nest.get() & !OWES_THROTTLE == slot.raw_nest.get();
    if abandoned {
        // The thread exits inside a section: a guard lives in a
        // thread-local destroyed after this one (and may still read),
        // a guard was leaked, or a raw section never ended. The section
        // stays open: a guard dropped later ends it (it holds the
        // slot). A guard's section (`nest` counts more than the raw
        // ones) is never ended otherwise: a leaked guard lends
        // `&'static T`, which may have been sent to a thread that
        // still reads it. Raw sections alone lend no reference to safe
        // code: a grace period that finds such a slot abandoned looks
        // whether the thread is gone, and then stops waiting for it
        // (`GracePeriods::reap_if_exited`). The slot is not handed
        // back now: a guard dropped later on this thread still writes
        // `nest`, which must never be another thread's. The last such
        // drop hands it back (`abandoned_exit`, set below).
        // Not under the owner lock: stall checks take it with the
        // domain's grace-period lock held.
        // A guard kept in a thread-local destroyed after this one is
        // not a mistake: it drops in a moment, so only `tracing` hears
        // of it. A leaked one is reported loudly by the first grace
        // period that finds its thread gone (`GracePeriods::
        // report_stall`); a raw section never unlocked is a bug.
        let name = lock(&slot.owner).name.clone();
        let depth = slot.nest.get() & !OWES_THROTTLE;
        if raw_only {
            crate::sys::warn_loud(&format!(
                "rcu-reclaim: thread {name} is exiting inside {depth} read_lock_raw() \
                     section(s) it never unlocked; grace periods wait until the thread is gone. \
                     Call read_unlock_raw() (rcu_read_unlock() in C) before the thread exits"
            ));
        } else {
            tracing::debug!(
                thread = %name,
                depth,
                "rcu-reclaim: a thread is exiting inside a read-side section; grace \
                 periods wait until its guard drops (a ReadGuard kept in a thread-local \
                 drops in a moment; a leaked one holds them for good and is reported)"
            );
        }
    }
    #[cfg(not(loom))]
    if crate::sync::holds_fork_locks() {
        // This thread holds the domain stopped for fork() (a `ForkGuard`
        // leaked with `mem::forget`, never resolved): its own buffer's
        // lock among the rest, so handing its page on would wait on
        // itself. The page stays, and so does the slot (never reused: its
        // buffer stays locked).
        crate::sys::warn_loud(
            "rcu-reclaim: a thread is exiting while it holds a domain stopped for fork() (a \
             ForkGuard from prepare_fork() that was leaked, never resolved with parent() or \
             child()): the domain stays stopped for good, and this thread's deferred work \
             is never run. Resolve or drop the guard before the thread exits",
        );
        slot.abandoned.store(true, Ordering::Relaxed);
        return;
    }
    slot.orphan_buffered_page(registry);
    if abandoned {
        slot.raw_only.store(raw_only, Ordering::Relaxed);
        slot.abandoned.store(true, Ordering::Relaxed);
        // A guard's section: the guard's drop hands the slot back when
        // the last section ends (a raw section is never ended on this
        // thread again: its unlock would find no registration). The
        // throttle bit routes that exit to `flagged_exit`, which reads
        // whether a wait was really owed from `abandoned_exit` (no
        // section of this thread can come to owe one any more: its
        // retires no longer find this slot).
        if !raw_only {
            let n = slot.nest.get();
            slot.abandoned_exit.set(AbandonedExit::Release {
                owed: n & OWES_THROTTLE != 0,
            });
            slot.nest.set(n | OWES_THROTTLE);
        }
        // Against a writer parking on the slot (it raises `waiter`,
        // then its barrier, then looks at `abandoned`).
        if !mutated_for_loom("reader.let_go.fence") {
            fence(Ordering::SeqCst);
        }
        // A writer parked on this slot looks again, now polling.
        registry.wake_writer();
    } else {
        slot.in_use.store(
            false,
            ord_for_loom("reader.let_go.release", Ordering::Release),
        );
    }
}

/// Per-thread registrations, one per domain this thread has read in.
struct Registrations {
    list: RefCell<Vec<Registration>>,
}

impl Drop for Registrations {
    fn drop(&mut self) {
        // Forget the fast-path cache first: the slots are being handed back.
        let _ = CACHE.try_with(Cache::clear);
        self.list.get_mut().clear();
    }
}

/// The fast-path cache: the domain this thread read in last and its slot.
struct Cache {
    domain_id: Cell<u64>,
    slot: Cell<*const Slot>,
}

impl Cache {
    /// Names `slot` as this thread's in the domain numbered `id`.
    fn set(&self, id: u64, slot: *const Slot) {
        self.domain_id.set(id);
        self.slot.set(slot);
    }

    /// Names no domain.
    fn clear(&self) {
        self.set(0, ptr::null());
    }
}

/// Names `slot` in this thread's cache as its slot in the domain `id`.
fn cache_set(id: u64, slot: *const Slot) {
    CACHE.with(|c| c.set(id, slot));
}

/// Clears this thread's cache if it names `slot` (being handed back). The
/// cache has no destructor: reachable even while the thread exits.
fn cache_forget(slot: &Slot) {
    let _ = CACHE.try_with(|c| {
        if ptr::eq(c.slot.get(), slot) {
            c.clear();
        }
    });
}

#[cfg(not(loom))]
thread_local! {
    static CACHE: Cache = const {
        Cache { domain_id: Cell::new(0), slot: Cell::new(ptr::null()) }
    };
    static REGISTRATIONS: Registrations = const {
        Registrations { list: RefCell::new(Vec::new()) }
    };
    /// Whether this thread has used `REGISTRATIONS` (or `QSBR_ONLINE`)
    /// yet. No destructor, so reading it allocates nothing: a thread-local
    /// with one registers that destructor on its first use, which
    /// allocates, and a query from a signal handler that interrupted
    /// `malloc` on a thread that never registered (`in_read_section`, the
    /// drop-in's `rcu_read_ongoing`) waited on `malloc`'s lock for good.
    /// Such queries answer "none" without touching them.
    static TOUCHED: Cell<bool> = const { Cell::new(false) };
}

/// Marks `REGISTRATIONS` and `QSBR_ONLINE` as possibly in use on this
/// thread (before either is first touched).
#[cfg(not(loom))]
fn touch_registrations() {
    let _ = TOUCHED.try_with(|t| t.set(true));
}

/// Whether this thread may have a registration (see `TOUCHED`).
#[cfg(not(loom))]
fn registrations_touched() -> bool {
    TOUCHED.try_with(Cell::get).unwrap_or(true)
}

#[cfg(loom)]
fn touch_registrations() {}

#[cfg(loom)]
fn registrations_touched() -> bool {
    true
}

#[cfg(loom)]
loom::thread_local! {
    static CACHE: Cache = Cache { domain_id: Cell::new(0), slot: Cell::new(ptr::null()) };
    static REGISTRATIONS: Registrations = Registrations { list: RefCell::new(Vec::new()) };
}

/// Returns this thread's slot in the domain numbered `id` (whose registry
/// is `registry`), registering the thread on first use.
#[inline]
pub(crate) fn current_slot(id: u64, registry: &Arc<Registry>) -> *const Slot {
    // One compare on the fast path: the cache names a domain (ids start at
    // 1; 0 is none) only together with that domain's slot, never null. (A
    // separate null check made the compiler merge both tests into a
    // branch-free sequence: 3 more instructions per read pair.)
    CACHE.with(|c| {
        if c.domain_id.get() == id {
            c.slot.get()
        } else {
            current_slot_slow(id, registry)
        }
    })
}

#[cold]
fn current_slot_slow(id: u64, registry: &Arc<Registry>) -> *const Slot {
    // Allocations below happen while the thread's registration list is
    // borrowed: they must not enter direct reclaim, which reads it.
    touch_registrations();
    let found = crate::sync::with_flag(&crate::sync::NO_RECLAIM, || {
        REGISTRATIONS.try_with(|regs| {
            // Borrowed already: this is a signal handler that interrupted
            // the thread's own registration (a C program's handler taking
            // a section): it takes a late slot, handed back when its raw
            // section ends, rather than panicking inside the handler.
            let Ok(mut list) = regs.list.try_borrow_mut() else {
                return ptr::null();
            };
            list.retain(|r| r.domain_id == id || r.registry.alive.load(Ordering::Relaxed));
            if let Some(r) = list.iter().find(|r| r.domain_id == id) {
                return r.slot;
            }
            let registry = registry.clone();
            let slot = registry.claim();
            // Orders the claim before this thread's first section: a grace
            // period that finds no slot claimed skips its barrier and its
            // wait (`GracePeriods::complete_if_no_reader`), so this section
            // must see what was unlinked before that grace period's scan.
            if !mutated_for_loom("reader.current_slot_slow.fence") {
                fence(Ordering::SeqCst);
            }
            let owner = current_owner();
            // SAFETY: the slot was just claimed by this thread and is kept alive
            // by `registry`, which the registration holds.
            let s = unsafe { &*slot };
            *lock(&s.owner) = owner;
            s.stall_reported.store(0, Ordering::Relaxed);
            list.push(Registration {
                domain_id: id,
                registry,
                slot,
            });
            slot
        })
    });
    match found {
        Ok(slot) if !slot.is_null() => {
            cache_set(id, slot);
            slot
        }
        _ => late_slot(id, registry),
    }
}

/// A slot for a thread whose registrations were already destroyed: a
/// section or a retire from a destructor that runs after them (another
/// thread-local's, a pthread key's, an `atexit` handler's: C programs
/// built for liburcu take sections and unregister there). It is kept in
/// the cache (which has no destructor) and handed back when its outermost
/// raw section ends ([`release_if_late`]) or the thread unregisters, else
/// when the thread exits (a pthread key's destructor, which glibc runs
/// after every thread-local's: [`late_exit`]). One late slot per domain:
/// the cache holds one at a time, and a section of another domain taken
/// inside this one's finds it again through `late_exit`'s list.
#[cold]
fn late_slot(id: u64, registry: &Arc<Registry>) -> *const Slot {
    // This thread's late slot of the domain, if the cache lost it to
    // another domain's: a section open in it must be found again.
    #[cfg(not(loom))]
    if let Some(slot) = late_exit::find(id) {
        cache_set(id, slot);
        return slot;
    }
    let slot = registry.claim();
    // As in `current_slot_slow`: the claim before the first section.
    if !mutated_for_loom("reader.late_slot.fence") {
        fence(Ordering::SeqCst);
    }
    // SAFETY: the slot was just claimed by this thread; `registry` (the
    // domain's, alive while the caller's `&Rcu` is) keeps it alive.
    let s = unsafe { &*slot };
    // Not `current_owner`: the thread's `std::thread::current` may be gone.
    *lock(&s.owner) = Owner {
        name: "<exiting thread>".to_string(),
        #[cfg(not(loom))]
        tid: crate::sys::gettid(),
        #[cfg(loom)]
        tid: 0,
        pid: current_pid(),
    };
    s.stall_reported.store(0, Ordering::Relaxed);
    s.late.set(true);
    #[cfg(not(loom))]
    late_exit::remember(id, registry, slot);
    cache_set(id, slot);
    slot
}

/// After a raw section of `registry`'s domain ended on `slot`: hands a late
/// slot (see [`late_slot`]) back once no section of it is open.
#[inline]
pub(crate) fn release_if_late(registry: &Registry, slot: &Slot) {
    if slot.late.get() {
        release_late(slot, registry);
    }
}

/// As [`release_if_late`], after `raw_exit` ended a raw section on `slot`,
/// which was this thread's late slot of the domain numbered `id` when
/// that section began to end: ending it may have paid a wait it owed,
/// and that wait runs user code (a `bound_garbage` usage reader, a
/// shrinker's scan) that may call `unregister_thread`, which hands the
/// slot back at once, for another thread to claim as its own late slot.
/// The slot is looked at again only if it is still this thread's: listed
/// as its late slot, or named by its cache (which names only its own).
#[cold]
pub(crate) fn release_if_still_late(id: u64, registry: &Registry, slot: *const Slot) {
    #[cfg(not(loom))]
    let listed = late_exit::find(id).is_some_and(|s| ptr::eq(s, slot));
    #[cfg(loom)]
    let listed = false;
    let cached = CACHE
        .try_with(|c| c.domain_id.get() == id && ptr::eq(c.slot.get(), slot))
        .unwrap_or(false);
    if listed || cached {
        // SAFETY: this thread's slot (listed or cached: both forget a slot
        // before it goes back), alive while `registry` is.
        release_if_late(registry, unsafe { &*slot });
    }
}

#[cold]
fn release_late(slot: &Slot, registry: &Registry) {
    if slot.nest.get() != 0 {
        return;
    }
    cache_forget(slot);
    slot.late.set(false);
    // Kept until the slot is handed back: it may hold the last reference
    // to the registry, which owns the slot.
    #[cfg(not(loom))]
    let _listed = late_exit::forget(slot);
    // As a registration does at thread exit (`Registration::drop`).
    slot.orphan_buffered_page(registry);
    slot.in_use.store(
        false,
        ord_for_loom("reader.release_late.release", Ordering::Release),
    );
}

/// Late slots (see [`late_slot`]) still claimed when their thread exits go
/// back then: each is listed under a pthread key whose destructor glibc
/// runs once the thread's thread-local destructors are done (and runs
/// again, up to `PTHREAD_DESTRUCTOR_ITERATIONS` rounds, for a value set
/// by another key's destructor). Before this list, every thread that
/// took a section or retired from such a destructor left its slot
/// claimed for good: the registry grew with thread churn, and no later
/// grace period of the domain could skip its barrier.
#[cfg(not(loom))]
mod late_exit {
    use std::ffi::c_void;
    use std::ptr;
    use std::sync::OnceLock;

    use super::{cache_forget, let_go, Registry, Slot};
    use crate::sync::Arc;

    /// This thread's late slots still claimed: the domain's id, its
    /// registry, the slot.
    type Listed = Vec<(u64, Arc<Registry>, *const Slot)>;

    /// The key (made if `create`), or `None` if none was made yet, or if
    /// the process ran out of them (late slots then stay claimed at
    /// thread exit, and one per domain is not guaranteed).
    fn key(create: bool) -> Option<libc::pthread_key_t> {
        static KEY: OnceLock<Option<libc::pthread_key_t>> = OnceLock::new();
        if !create {
            return KEY.get().copied().flatten();
        }
        *KEY.get_or_init(|| {
            let mut key: libc::pthread_key_t = 0;
            // SAFETY: `key` is a valid place for the new key, and the
            // destructor has the signature pthread calls it with.
            let rc = unsafe { libc::pthread_key_create(&mut key, Some(at_thread_exit)) };
            (rc == 0).then_some(key)
        })
    }

    /// This thread's list, created if `create` (null if none or if it
    /// could not be stored).
    fn listed(create: bool) -> *mut Listed {
        let Some(key) = key(create) else {
            return ptr::null_mut();
        };
        // SAFETY: `key` is a live key; the value is this thread's.
        let list = unsafe { libc::pthread_getspecific(key) }.cast::<Listed>();
        if !list.is_null() || !create {
            return list;
        }
        let list = Box::into_raw(Box::new(Listed::new()));
        // SAFETY: as above; on success the value is freed by
        // `at_thread_exit` (or never, on a thread that does not exit).
        if unsafe { libc::pthread_setspecific(key, list.cast()) } != 0 {
            // SAFETY: `list` was just made by `Box::into_raw` and not stored.
            drop(unsafe { Box::from_raw(list) });
            return ptr::null_mut();
        }
        list
    }

    /// Lists `slot`, a late slot this thread has just claimed in
    /// `registry`, the registry of the domain numbered `id`.
    pub(super) fn remember(id: u64, registry: &Arc<Registry>, slot: *const Slot) {
        // SAFETY: this thread's list, reached only from this thread, and
        // not borrowed elsewhere during this call.
        if let Some(list) = unsafe { listed(true).as_mut() } {
            list.push((id, registry.clone(), slot));
        }
    }

    /// This thread's late slot in the domain numbered `id`, if it has one.
    pub(super) fn find(id: u64) -> Option<*const Slot> {
        // SAFETY: as in `remember`.
        let list = unsafe { listed(false).as_ref() }?;
        list.iter().find(|e| e.0 == id).map(|e| e.2)
    }

    /// Takes `slot` off this thread's list as it goes back; returns its
    /// registry's reference, for the caller to drop once done with the slot.
    pub(super) fn forget(slot: *const Slot) -> Option<Arc<Registry>> {
        // SAFETY: as in `remember`.
        let list = unsafe { listed(false).as_mut() }?;
        let i = list.iter().position(|e| ptr::eq(e.2, slot))?;
        Some(list.swap_remove(i).1)
    }

    /// The key's destructor: lets each listed slot go as a registration
    /// does at thread exit (handed back, or abandoned with a section
    /// still open).
    unsafe extern "C" fn at_thread_exit(list: *mut c_void) {
        // SAFETY: the value was made by `Box::into_raw` in `listed`; glibc
        // cleared it before this call, so it is freed once, here.
        let list = unsafe { Box::from_raw(list.cast::<Listed>()) };
        for (_, registry, slot) in *list {
            // SAFETY: listed slots are this thread's and still claimed;
            // `registry` keeps them alive.
            let slot = unsafe { &*slot };
            cache_forget(slot);
            slot.late.set(false);
            let_go(slot, &registry);
        }
    }
}

/// The calling thread, as a slot's owner.
pub(crate) fn current_owner() -> Owner {
    let thread = crate::sync::thread::current();
    Owner {
        name: thread.name().unwrap_or("<unnamed>").to_string(),
        #[cfg(not(loom))]
        tid: crate::sys::gettid(),
        #[cfg(loom)]
        tid: 0,
        pid: current_pid(),
    }
}

/// This process's id, for [`Owner::pid`] (0 under loom).
pub(crate) fn current_pid() -> u32 {
    if cfg!(loom) {
        0
    } else {
        std::process::id()
    }
}

/// This thread's slot in the domain numbered `id` (its cache, else its
/// registrations), or null.
fn own_slot_cached_in(id: u64) -> *const Slot {
    let cached = CACHE.with(|c| (c.domain_id.get() == id).then(|| c.slot.get()));
    let slot = cached.unwrap_or_else(|| own_slot_in(id));
    // A late slot the cache lost to another domain's (see `late_slot`).
    #[cfg(not(loom))]
    if slot.is_null() {
        return late_exit::find(id).unwrap_or(ptr::null());
    }
    slot
}

/// The slots [`mark_waiting`] marked; unmarked when dropped.
#[cfg(not(loom))]
pub(crate) struct WaitMarks {
    slots: [*const Slot; 4],
    len: usize,
}

#[cfg(not(loom))]
impl Drop for WaitMarks {
    fn drop(&mut self) {
        for &slot in &self.slots[..self.len] {
            // SAFETY: this thread's slots, marked by `mark_waiting` on this
            // thread, which cannot let its registrations go while it waits.
            unsafe { (*slot).waiting_on.store(0, Ordering::Relaxed) };
        }
    }
}

/// Marks this thread's sections of other domains than the one numbered
/// `id` (up to four) as waiting for a grace period of that one, until the
/// marks are dropped: a stall report of such a section then says what its
/// thread waits for (two threads, each inside a section of one domain and
/// waiting for the other's grace period, wait for good). Cheap next to a
/// wait: a walk over the thread's registrations.
#[cfg(not(loom))]
pub(crate) fn mark_waiting(id: u64) -> WaitMarks {
    let mut marks = WaitMarks {
        slots: [ptr::null(); 4],
        len: 0,
    };
    let _ = REGISTRATIONS.try_with(|regs| {
        let Ok(list) = regs.list.try_borrow() else {
            return;
        };
        for r in list.iter().filter(|r| r.domain_id != id) {
            if marks.len == marks.slots.len() {
                break;
            }
            // SAFETY: a registered slot of this thread, alive while the
            // registration is (this thread's, kept for this call).
            let slot = unsafe { &*r.slot };
            if slot.nest.get() & !OWES_THROTTLE > 0 {
                slot.waiting_on.store(id, Ordering::Relaxed);
                marks.slots[marks.len] = r.slot;
                marks.len += 1;
            }
        }
    });
    marks
}

/// This thread's nesting depth in the domain numbered `id`.
pub(crate) fn nesting_in(id: u64) -> u64 {
    let slot = own_slot_cached_in(id);
    if slot.is_null() {
        0
    } else {
        // SAFETY: a slot found in this thread's cache or registrations is
        // owned by this thread and kept alive by its registration.
        unsafe { (*slot).nest.get() & !OWES_THROTTLE }
    }
}

/// Whether this thread's foreign reader counter in the domain numbered
/// `id` (C built with `_LGPL_SOURCE`: see `foreign.rs`) is inside a
/// section (`false` if none is attached).
#[cfg(not(loom))]
pub(crate) fn foreign_in_section(id: u64) -> bool {
    // SAFETY: this thread's slot, alive while it is registered.
    unsafe { own_slot_in(id).as_ref() }.is_some_and(|slot| slot.foreign.in_section())
}

/// How many of this thread's sections in the domain numbered `id` are raw
/// ones (`Rcu::read_lock_raw`), for the misuse messages: a raw section
/// has no guard to drop.
pub(crate) fn raw_nesting_in(id: u64) -> u64 {
    let slot = own_slot_cached_in(id);
    if slot.is_null() {
        0
    } else {
        // SAFETY: as in `nesting_in`: the slot is this thread's, kept alive
        // by its registration.
        unsafe { (*slot).raw_nest.get() }
    }
}

/// Hands this thread's slot in the domain numbered `id` back now rather
/// than at thread exit; `false` (and nothing done) inside a read-side
/// section.
pub(crate) fn unregister(id: u64, registry: &Registry) -> bool {
    if nesting_in(id) > 0 || allocating_in(id) {
        return false;
    }
    let _ = CACHE.try_with(|c| {
        if c.domain_id.get() == id {
            // SAFETY: the cache holds this thread's slot of domain `id`,
            // kept alive by `registry` (the domain's).
            let slot = unsafe { &*c.slot.get() };
            if slot.late.get() {
                release_late(slot, registry);
                return;
            }
            c.clear();
        }
    });
    crate::sync::with_flag(&crate::sync::NO_RECLAIM, || {
        let _ = REGISTRATIONS.try_with(|regs| {
            let gone: Vec<Registration> = {
                let mut list = regs.list.borrow_mut();
                let (gone, keep) = list.drain(..).partition(|r| r.domain_id == id);
                *list = keep;
                gone
            };
            // Dropped outside the borrow: the drop takes the orphans lock.
            drop(gone);
        });
    });
    true
}

/// Whether this thread is in the page allocator of the domain numbered
/// `id`, from a retire's slow path that holds its slot's buffer (the
/// allocator is the user's code, and may call `unregister_thread`): its
/// registered slot or, past its registrations' teardown, the late slot
/// that the fast-path cache names.
fn allocating_in(id: u64) -> bool {
    let allocating = |slot: *const Slot| {
        // SAFETY: this thread's slot of domain `id` (registered, or the
        // cache's late one), alive while the thread holds it, which it
        // does for this call.
        unsafe { slot.as_ref() }.is_some_and(|s| s.local.allocating.load(Ordering::Relaxed))
    };
    let cached = CACHE
        .try_with(|c| (c.domain_id.get() == id).then(|| c.slot.get()))
        .ok()
        .flatten();
    allocating(own_slot_in(id)) || cached.is_some_and(allocating)
}

/// This thread's slot in the domain numbered `id`, or null if it is not
/// registered there.
///
/// Null too in a signal handler that interrupted this thread's own change
/// of its registrations (`current_slot_slow` registering it in another
/// domain, its list borrowed mutably): a `borrow()` there panicked, which
/// cannot unwind out of a handler, and aborted the process
/// (`Rcu::in_read_section` in a handler while its thread took its first
/// section of a domain, or alternated between two). The handler then sees
/// no section of this domain on the thread, as it sees none of a domain
/// the thread is registering in.
pub(crate) fn own_slot_in(id: u64) -> *const Slot {
    if !registrations_touched() {
        return ptr::null();
    }
    REGISTRATIONS
        .try_with(|regs| {
            regs.list.try_borrow().map_or(ptr::null(), |list| {
                list.iter()
                    .find(|r| r.domain_id == id)
                    .map_or(ptr::null(), |r| r.slot)
            })
        })
        .unwrap_or(ptr::null())
}

/// Enters a section on `slot` (this thread's): the outermost one snapshots
/// the domain's reader counter `gp_ctr`, then fences if `fence_reads` says
/// readers fence (mb, QSBR, or a memb domain in fence mode: see
/// `reader_fences.rs`).
#[inline]
pub(crate) fn section_enter(slot: &Slot, gp_ctr: &AtomicU64, fence_reads: &AtomicBool) {
    let n = slot.nest.get();
    // 64 bits cannot wrap (see `Slot::nest`).
    slot.nest.set(n + 1);
    // The count before the snapshot, for signal handlers that take a
    // section of this domain: one that runs between the two sees a nested
    // section, so its exit leaves the slot alone (with the snapshot first,
    // its outermost exit cleared the slot under the interrupted section,
    // which then ran unprotected: tests/signal_section_window.rs); and one
    // that finds the slot still 0 there (the snapshot below not stored
    // yet) takes the snapshot itself, for its own reads. A nested entry
    // otherwise finds the slot set (the counter starts at 1).
    std::sync::atomic::compiler_fence(Ordering::SeqCst);
    if n == 0 || slot.ctr.load(Ordering::Relaxed) == 0 {
        snapshot(slot, gp_ctr, fence_reads);
    }
    // The same count again, after the fences: the compiler then knows it
    // at the section's exit, and stores the lowered count there instead
    // of loading it (a handler in between leaves the count as it found
    // it). Without this store a pair took 1.22 ns instead of 1.04 here;
    // with the branches split by `n`, 1.5-1.7 ns.
    slot.nest.set(n + 1);
}

/// The outermost entry's snapshot: the domain's reader counter `gp_ctr`
/// into `slot`, then a fence if `fence_reads` says readers fence.
#[inline(always)]
fn snapshot(slot: &Slot, gp_ctr: &AtomicU64, fence_reads: &AtomicBool) {
    let ctr = gp_ctr.load(Ordering::Relaxed);
    slot.ctr.store(ctr, Ordering::Relaxed);
    // The flag is read after the slot store in program order: a reader
    // that finds it clear there is ordered by the `membarrier` that armed
    // fence mode (`reader_fences.rs`). Memb with the flag clear: the
    // writer's membarrier() turns this compiler fence into a full fence.
    std::sync::atomic::compiler_fence(Ordering::SeqCst);
    if fence_reads.load(Ordering::Relaxed) && !mutated_for_loom("reader.snapshot.fence") {
        fence(Ordering::SeqCst);
    }
}

/// A bit of `Slot::nest`, set by a retire inside a section that the
/// pressure throttle would have made wait (it cannot wait there: the grace
/// period waits for this very section): the outermost exit, which then
/// sees `nest` fall to this bit instead of 0, ends the section on its cold
/// path and tells its caller to pay the wait (`Rcu::pay_owed_throttle`).
/// The common exit costs nothing more.
pub(crate) const OWES_THROTTLE: u64 = 1 << 62;

/// Marks this thread's guard or raw section in the domain numbered `id`
/// (if one is open) as owing the pressure throttle (see [`OWES_THROTTLE`]).
/// Returns `None` if none was open, else whether it owed already.
pub(crate) fn owe_throttle_in(id: u64) -> Option<bool> {
    let slot = own_slot_cached_in(id);
    // SAFETY: as in `nesting_in`: this thread's slot, alive while its
    // registration is.
    let slot = unsafe { slot.as_ref() }?;
    let n = slot.nest.get();
    if n & !OWES_THROTTLE == 0 {
        return None;
    }
    slot.nest.set(n | OWES_THROTTLE);
    Some(n & OWES_THROTTLE != 0)
}

/// How many domains' QSBR debts a thread keeps apart (see `OWED_QSBR`).
const OWED_QSBR_DOMAINS: usize = 4;

thread_local! {
    /// The registries (of domains; null: none) in which an online QSBR
    /// registration of this thread retired while the pressure throttle
    /// would have made it wait: each pays when its registration next goes
    /// offline (at a quiescent state that reports, `thread_offline`,
    /// `offline_while`). One per domain: with a single entry, a thread
    /// online in two QSBR domains lost one domain's debt when it retired
    /// into the other before reporting (its throttle waits went unpaid:
    /// 221 waits alone, 131 beside a second domain). Past
    /// `OWED_QSBR_DOMAINS` domains owing at once, the first entry is
    /// replaced, as the single one was.
    static OWED_QSBR: [Cell<*const Registry>; OWED_QSBR_DOMAINS] =
        const { [const { Cell::new(ptr::null()) }; OWED_QSBR_DOMAINS] };
}

/// Who pays an owed pressure-throttle wait (the domain's hook,
/// [`Registry::pay_owed`]).
#[cfg(not(loom))]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Payer {
    /// The outermost exit of a guard or raw section.
    SectionEnd,
    /// An online QSBR registration, put offline for the wait by its
    /// caller (the domain's marks still say online).
    QsbrOffline,
}

/// Records that an online QSBR registration of this thread in the domain
/// of `registry` owes the pressure throttle.
/// Returns whether it owed already (since its last payment).
pub(crate) fn owe_throttle_qsbr(registry: &Registry) -> bool {
    OWED_QSBR
        .try_with(|owed| {
            if owed.iter().any(|o| ptr::eq(o.get(), registry)) {
                return true;
            }
            owed.iter()
                .find(|o| o.get().is_null())
                .unwrap_or(&owed[0])
                .set(registry);
            false
        })
        .unwrap_or(false)
}

#[cfg(not(loom))]
thread_local! {
    /// Work an online QSBR registration of this thread owes besides the
    /// pressure throttle (a budget's direct reclaim), run when it pays.
    static OWED_WORK: Cell<Option<fn()>> = const { Cell::new(None) };
}

/// Records that an online QSBR registration of this thread in the domain
/// of `registry` owes `work`, to run where it pays the pressure throttle
/// (offline, at its next quiescent state that reports, or going offline).
#[cfg(not(loom))]
pub(crate) fn owe_at_quiescent_state(registry: &Registry, work: fn()) {
    let _ = owe_throttle_qsbr(registry);
    let _ = OWED_WORK.try_with(|w| w.set(Some(work)));
}

/// The work this thread owes (see `owe_at_quiescent_state`), taken.
#[cfg(not(loom))]
pub(crate) fn take_owed_work() -> Option<fn()> {
    OWED_WORK.try_with(Cell::take).ok().flatten()
}

/// Whether this thread's only section of domain `id` is an online QSBR
/// registration (no guard or raw section inside it).
#[cfg(not(loom))]
pub(crate) fn qsbr_only_section_in(id: u64) -> bool {
    nesting_in(id) == 0 && qsbr_online_in(id)
}

/// Whether this thread owes the pressure throttle in the domain of
/// `registry` as a QSBR thread; clears it.
pub(crate) fn take_owed_qsbr(registry: &Registry) -> bool {
    OWED_QSBR
        .try_with(|owed| {
            owed.iter()
                .find(|o| ptr::eq(o.get(), registry))
                .is_some_and(|o| {
                    o.set(ptr::null());
                    true
                })
        })
        .unwrap_or(false)
}

/// Leaves a section on `slot` (this thread's, inside a section): the
/// outermost one clears the snapshot and wakes a parked writer; one that
/// owes the pressure throttle (see [`OWES_THROTTLE`]) then pays it.
#[inline]
pub(crate) fn section_exit(slot: &Slot, registry: &Registry, flavor: Flavor) {
    // Never 0 here: the count is at least the number of live sections on
    // this thread, because raw unlocks end only raw sections (`raw_nest`),
    // `unregister_thread` refuses inside a section, and a slot whose thread
    // exits inside a section is abandoned with its count intact
    // (tests/soundness.rs covers each). Debug builds check it; release
    // builds keep the read path free of the branch (it cost 1–5
    // instructions per pair under callgrind).
    let n = slot.nest.get();
    if cfg!(debug_assertions) && n == 0 {
        unbalanced_exit();
    }
    let n = n.wrapping_sub(1);
    slot.nest.set(n);
    if n == 0 {
        // Release: the section's loads happen before a writer that sees 0.
        slot.ctr.store(
            0,
            ord_for_loom("reader.section_exit.release", Ordering::Release),
        );
        // Memb: a parked writer issues membarrier() after raising
        // `waiter`, so the compiler fence cannot miss its flag.
        if !mutated_for_loom("reader.section_exit.fence") {
            reader_fence(flavor);
        }
        registry.wake_writer();
    } else if flagged_outermost_now(slot) {
        flagged_exit(slot, registry, flavor);
    }
}

/// A broken `section_exit` for the loom model's mutation check (see
/// `ReadGuard::unlock_relaxed_for_loom_mutation`): the outermost exit
/// clears the slot with a relaxed store, so a writer that reads the `0`
/// frees with no order after the section's reads. The model must fail.
#[cfg(loom)]
pub(crate) fn section_exit_relaxed(slot: &Slot, registry: &Registry, flavor: Flavor) {
    let n = slot.nest.get() - 1;
    slot.nest.set(n);
    if n == 0 {
        slot.ctr.store(0, Ordering::Relaxed);
        reader_fence(flavor);
        registry.wake_writer();
    }
}

/// Whether `slot`'s count, just lowered by a nested-looking exit, is the
/// bare [`OWES_THROTTLE`] bit: the outermost exit of a section that owes
/// the pressure throttle, or of one whose slot goes back at its end
/// (`Slot::abandoned_exit`). Read afresh (volatile) rather than from the
/// value just stored: the compiler then tests the count in memory on the
/// common path (`cmpq $0`) instead of keeping it in a register for this
/// test, one instruction per pair fewer where enter and exit meet in a
/// loop. (An exact compare: a masked test of two flag bits made the
/// compiler stop unswitching `RcuCell::load`'s loop on the flavor, 25 →
/// 32 instructions per section.)
#[inline]
fn flagged_outermost_now(slot: &Slot) -> bool {
    // SAFETY: `nest` is this thread's (a `Cell` only its owner touches),
    // and the pointer is valid for the slot's lifetime.
    unsafe { std::ptr::read_volatile(slot.nest.as_ptr()) == OWES_THROTTLE }
}

/// The outermost exit of a flagged section (see `flagged_outermost_now`):
/// ends it as `section_exit` does; then, for a slot its thread abandoned
/// with this guard's section open, hands the slot back; then pays an owed
/// pressure-throttle wait (the domain's hook).
#[cold]
#[inline(never)]
fn flagged_exit(slot: &Slot, registry: &Registry, flavor: Flavor) {
    // Read before the slot can go back to another thread.
    let abandoned = slot.abandoned_exit.take();
    slot.nest.set(0);
    slot.ctr.store(
        0,
        ord_for_loom("reader.flagged_exit.release", Ordering::Release),
    );
    if !mutated_for_loom("reader.flagged_exit.fence") {
        reader_fence(flavor);
    }
    registry.wake_writer();
    let owes = match abandoned {
        AbandonedExit::No => true,
        AbandonedExit::Release { owed } => {
            release_abandoned(slot, registry);
            owed
        }
    };
    #[cfg(not(loom))]
    if owes {
        if let Some(pay) = registry.pay_owed.get() {
            // The payment may run the program's code (a budget's direct
            // reclaim that a QSBR registration of this thread owed: its
            // usage function, shrinkers, OOM handler). A section ends in a
            // guard's drop, also while the thread unwinds or in a
            // thread-local's destructor, where a panic out of it aborted
            // the process: it is caught and reported here.
            crate::sync::run_reporting_panic(
                || pay(Payer::SectionEnd),
                |msg| {
                    format!(
                        "rcu-reclaim: work paid as a read-side section ended (the direct \
                         reclaim a QSBR registration of this thread owed) panicked (in the \
                         budget's usage function, a shrinker or the OOM handler): {msg}"
                    )
                },
            );
        }
    }
    #[cfg(loom)]
    let _ = owes;
}

/// Hands back a slot abandoned with a guard's section open (see
/// `Slot::abandoned_exit`), now that its last section has ended: nothing of
/// this thread touches it again (its registrations are gone, so a later
/// section here claims a slot of its own), and no reference lent under it
/// is alive (each guard's borrow ended with its drop). Under the owner
/// lock, so that a grace period looking at the abandoned slot
/// (`GracePeriods::reap_if_exited`, which holds that lock) never acts on
/// it after another thread has claimed it.
#[cold]
fn release_abandoned(slot: &Slot, registry: &Registry) {
    // Anything this thread retired after its registration went would be
    // in another slot; handed over for form's sake (an empty page is a
    // lock and a look).
    slot.orphan_buffered_page(registry);
    {
        let _owner = lock(&slot.owner);
        slot.abandoned.store(false, Ordering::Relaxed);
        slot.raw_only.store(false, Ordering::Relaxed);
    }
    slot.in_use.store(
        false,
        ord_for_loom("reader.release_abandoned.release", Ordering::Release),
    );
}

#[cold]
#[inline(never)]
fn unbalanced_exit() -> ! {
    panic!(
        "rcu-reclaim: a ReadGuard was dropped on a thread with no open read-side section; \
         its section was already ended when the thread's registration was torn down (a guard \
         kept in a thread-local that outlives it). Keep guards out of thread-locals"
    )
}

// ---------------------------------------------------------------------------
// QSBR: registered threads that report quiescent states (liburcu's
// urcu-qsbr). The writer's side is the grace periods' usual one (`gp.rs`):
// a full fence (the QSBR flavor's writer barrier), the counter's bump, then
// a wait until every slot reads `0` or at least the new value.

/// Claims a slot of `registry` for the calling thread's QSBR registration
/// and puts it online. The slot is the registration's alone (not in the
/// thread-local list above); `qsbr_release` hands it back.
pub(crate) fn qsbr_register(registry: &Registry, id: u64) -> *const Slot {
    let slot = registry.claim();
    // SAFETY: the slot was just claimed by this thread (CAS on `in_use`),
    // and slots are freed only with their registry, which the caller holds.
    let s = unsafe { &*slot };
    *lock(&s.owner) = current_owner();
    s.stall_reported.store(0, Ordering::Relaxed);
    s.qsbr.store(true, Ordering::Relaxed);
    // Online after the claim: a grace period that finds the slot unclaimed
    // (`complete_if_no_reader`) or offline is ordered by the fence in
    // `qsbr_online` as for any thread coming online.
    qsbr_online(s, &registry.gp_ctr);
    qsbr_own_slot(slot, Some((registry, id)));
    slot
}

/// Puts a QSBR slot online: it reports the readers' counter as it is now.
///
/// The fence orders the store before every later load of the thread (its
/// sections). Against a writer (unlink; fence; bump; read the slot): if the
/// writer's fence comes first, this thread's later loads see the unlink;
/// if this fence comes first, the writer reads the slot as non-zero and
/// below its new value (the counter was read before the bump), and waits.
pub(crate) fn qsbr_online(slot: &Slot, gp_ctr: &AtomicU64) {
    slot.ctr
        .store(gp_ctr.load(Ordering::Relaxed), Ordering::Relaxed);
    if !mutated_for_loom("reader.qsbr_online.fence") {
        fence(Ordering::SeqCst);
    }
}

/// Puts a QSBR slot offline (`0`): no grace period waits for it.
///
/// The first fence makes the store a release of every access before it (a
/// writer that reads `0` frees only after them); the second orders the
/// store before the load of `waiter` (against a parked writer, which raises
/// `waiter`, then fences, then looks at the slot).
pub(crate) fn qsbr_offline(slot: &Slot, registry: &Registry) {
    if !mutated_for_loom("reader.qsbr_offline.fence_before") {
        fence(Ordering::SeqCst);
    }
    // Release as well as the fence: the same on x86 and Arm (no extra
    // instruction after a full fence), and ThreadSanitizer, which does not
    // model a fence before a relaxed store, then sees the release (it
    // reported the writer's free against the section's reads in 8 of 80
    // runs of a QSBR stress; 0 of 80 with these stores).
    slot.ctr.store(
        0,
        ord_for_loom("reader.qsbr_offline.release", Ordering::Release),
    );
    if !mutated_for_loom("reader.qsbr_offline.fence_after") {
        fence(Ordering::SeqCst);
    }
    registry.wake_writer();
}

/// The slow path of a quiescent state: the readers' counter moved to `ctr`
/// since the slot's last report; report it.
///
/// Fence A makes the store a release of everything the thread did before
/// (the sections that end here), so a writer that reads `ctr` (acquire)
/// frees after them. The thread read `ctr`, which the writer stored after
/// its own fence (after the unlink), so fence A is also the acquire that
/// makes every later section see that unlink. Fence B orders the report
/// before the load of `waiter` (see `qsbr_offline`).
#[inline(never)]
pub(crate) fn qsbr_report(slot: &Slot, registry: &Registry, ctr: u64) {
    // The store is a release too, for ThreadSanitizer (see `qsbr_offline`).
    if !mutated_for_loom("reader.qsbr_report.fence_a") {
        fence(Ordering::SeqCst); // A
    }
    slot.ctr.store(
        ctr,
        ord_for_loom("reader.qsbr_report.release", Ordering::Release),
    );
    if !mutated_for_loom("reader.qsbr_report.fence_b") {
        fence(Ordering::SeqCst); // B
    }
    registry.wake_writer();
    #[cfg(not(loom))]
    if take_owed_qsbr(registry) {
        pay_owed_offline(slot, registry);
    }
}

/// After a quiescent state's report: a retire while online owed the
/// pressure throttle (`owe_throttle_qsbr`), so the thread, which holds no
/// reference now, goes offline, waits (the domain's hook) and comes back
/// online.
#[cfg(not(loom))]
#[cold]
fn pay_owed_offline(slot: &Slot, registry: &Registry) {
    /// Puts the slot back online when dropped, also if the payment
    /// panics (it runs the caller's code: a budget's usage function,
    /// shrinkers, the OOM handler): the registration still says online, and
    /// its guards, after the panic is caught, would protect nothing.
    struct BackOnline<'a>(&'a Slot, &'a Registry);
    impl Drop for BackOnline<'_> {
        fn drop(&mut self) {
            qsbr_online(self.0, &self.1.gp_ctr);
        }
    }
    qsbr_offline(slot, registry);
    let _online = BackOnline(slot, registry);
    if let Some(pay) = registry.pay_owed.get() {
        pay(Payer::QsbrOffline);
    }
}

/// A broken `qsbr_report` for the loom model's mutation check: without
/// fence A the report is not ordered after the thread's last accesses, so
/// a writer may free what a section still reads. The model must fail.
#[cfg(loom)]
pub(crate) fn qsbr_report_without_fence_a(slot: &Slot, registry: &Registry, ctr: u64) {
    slot.ctr.store(ctr, Ordering::Relaxed);
    fence(Ordering::SeqCst);
    registry.wake_writer();
}

/// Hands a QSBR slot back (it is offline: `ctr` reads `0`).
pub(crate) fn qsbr_release(slot: &Slot) {
    // Its foreign counter (a thread-local of the thread) goes with it.
    #[cfg(not(loom))]
    slot.foreign.detach();
    qsbr_own_slot(slot, None);
    slot.qsbr.store(false, Ordering::Relaxed);
    slot.in_use.store(
        false,
        ord_for_loom("reader.qsbr_release.release", Ordering::Release),
    );
}

/// The domains in which this thread has an online QSBR registration (one
/// entry per registration). Read by `in_section`, so that calls that wait
/// for a grace period refuse to wait for the calling thread itself.
struct QsbrOnline {
    domains: RefCell<Vec<u64>>,
    /// This thread's QSBR slots (online or not), their registries, by
    /// address, and their domains' numbers: a forked child keeps them
    /// (`fork.rs` frees every other thread's slot), the thread's exit puts
    /// them offline, and a signal handler that interrupted a change of
    /// `domains` counts the online ones from them (`online_count`).
    slots: RefCell<Vec<(*const Slot, *const Registry, u64)>>,
}

impl QsbrOnline {
    /// How many online QSBR registrations this thread has in domain `id`.
    ///
    /// `domains` is borrowed mutably only inside this thread's own
    /// `qsbr_mark_online`/`qsbr_mark_offline`: finding it so, this is a
    /// signal handler that interrupted one of them (`Rcu::in_read_section`
    /// in a handler), where a `borrow()` panicked, and a panic cannot
    /// unwind out of a handler: the process aborted. It counts the slots
    /// that are online instead: a slot is put online before it is marked
    /// and offline before it is unmarked, so they already say what the
    /// interrupted call is bringing about. (`slots` is never borrowed
    /// mutably at the same time.)
    fn online_count(&self, id: u64) -> usize {
        if let Ok(domains) = self.domains.try_borrow() {
            return domains.iter().filter(|&&d| d == id).count();
        }
        self.slots.try_borrow().map_or(0, |slots| {
            slots
                .iter()
                // SAFETY: a listed slot is alive (see `QsbrOnline::drop`).
                .filter(|&&(slot, _, d)| {
                    d == id && unsafe { &*slot }.ctr.load(Ordering::Relaxed) != 0
                })
                .count()
        })
    }
}

/// At thread exit, every QSBR slot of the thread still registered is
/// marked abandoned: its registration was leaked (`mem::forget`,
/// `Box::leak`: safe code), or is kept in a thread-local destroyed later
/// (whose destructor may still read through it). Either way it stays
/// online, also once the thread is gone (`Slot::raw_only` is `false`): a guard of a
/// leaked registration lends `&'static T`, which another thread may still
/// read. Only the registration's drop puts it offline; the stall warning
/// names the thread meanwhile. The slot stays claimed until its
/// registration, if it is ever dropped, releases it.
impl Drop for QsbrOnline {
    fn drop(&mut self) {
        for &(slot, registry, _) in self.slots.get_mut().iter() {
            // SAFETY: a slot is listed from its claim to its release by its
            // registration, which holds the domain, and so the registry and
            // its slots (freed only with the registry), alive; a listed
            // slot's registration has not been dropped.
            let (slot, registry) = unsafe { (&*slot, &*registry) };
            slot.abandoned.store(true, Ordering::Relaxed);
            // As in `Registration::drop`.
            if !mutated_for_loom("reader.slot_drop.fence") {
                fence(Ordering::SeqCst);
            }
            registry.wake_writer();
        }
    }
}

#[cfg(not(loom))]
thread_local! {
    static QSBR_ONLINE: QsbrOnline = const {
        QsbrOnline {
            domains: RefCell::new(Vec::new()),
            slots: RefCell::new(Vec::new()),
        }
    };
}

#[cfg(loom)]
loom::thread_local! {
    static QSBR_ONLINE: QsbrOnline = QsbrOnline {
        domains: RefCell::new(Vec::new()),
        slots: RefCell::new(Vec::new()),
    };
}

/// Records a QSBR slot of this thread, claimed in `registry` of the
/// domain numbered `id` (`Some`), or forgets it (`None`).
fn qsbr_own_slot(slot: *const Slot, registry: Option<(&Registry, u64)>) {
    touch_registrations();
    crate::sync::with_flag(&crate::sync::NO_RECLAIM, || {
        let _ = QSBR_ONLINE.try_with(|o| {
            let mut slots = o.slots.borrow_mut();
            if let Some((registry, id)) = registry {
                slots.push((slot, registry as *const Registry, id));
            } else if let Some(i) = slots.iter().rposition(|&(x, _, _)| ptr::eq(x, slot)) {
                slots.swap_remove(i);
            }
        });
    });
}

/// Whether `slot` is a QSBR slot of this thread's.
pub(crate) fn is_own_qsbr_slot(slot: *const Slot) -> bool {
    if !registrations_touched() {
        return false;
    }
    QSBR_ONLINE
        .try_with(|o| o.slots.borrow().iter().any(|&(x, _, _)| ptr::eq(x, slot)))
        .unwrap_or(false)
}

/// Records that this thread has one more online QSBR registration in the
/// domain numbered `id`.
pub(crate) fn qsbr_mark_online(id: u64) {
    touch_registrations();
    crate::sync::with_flag(&crate::sync::NO_RECLAIM, || {
        let _ = QSBR_ONLINE.try_with(|o| o.domains.borrow_mut().push(id));
    });
}

/// Undoes one `qsbr_mark_online(id)`.
pub(crate) fn qsbr_mark_offline(id: u64) {
    let _ = QSBR_ONLINE.try_with(|o| {
        let mut d = o.domains.borrow_mut();
        if let Some(i) = d.iter().rposition(|&x| x == id) {
            d.swap_remove(i);
        }
    });
}

/// Whether this thread has an online QSBR registration in domain `id`.
pub(crate) fn qsbr_online_in(id: u64) -> bool {
    if !registrations_touched() {
        return false;
    }
    QSBR_ONLINE
        .try_with(|o| o.online_count(id) > 0)
        .unwrap_or(false)
}

/// How many online QSBR registrations this thread has in domain `id` (a
/// thread may register more than once).
pub(crate) fn qsbr_online_count_in(id: u64) -> usize {
    if !registrations_touched() {
        return 0;
    }
    QSBR_ONLINE.try_with(|o| o.online_count(id)).unwrap_or(0)
}

/// Whether this thread is inside a read-side section of the domain numbered
/// `id`: a guard or raw section, or an online QSBR registration (an online
/// QSBR thread is in one long section between its quiescent states).
pub(crate) fn in_section(id: u64) -> bool {
    nesting_in(id) > 0 || qsbr_online_in(id)
}

/// For a thread whose thread-local registrations are already destroyed
/// (it runs the destructor of a thread-local destroyed after them, where
/// [`nesting_in`] and [`qsbr_online_in`] see no section): whether a slot of
/// `registry` that this thread owns is still inside a section (a guard,
/// or an online QSBR registration, kept in such a thread-local). A grace
/// period would wait for this very thread. `false`, without a look at the
/// slots, while the registrations are alive.
#[cfg(not(loom))]
pub(crate) fn in_section_after_registrations(registry: &Registry) -> bool {
    // A thread that never registered owns no slot (and is not made to
    // register a destructor here).
    if !registrations_touched() {
        return false;
    }
    let gone = REGISTRATIONS.try_with(|_| ()).is_err() || QSBR_ONLINE.try_with(|_| ()).is_err();
    if !gone {
        return false;
    }
    let tid = crate::sys::gettid();
    let mut open = false;
    registry.for_each_slot(|s| {
        open |= s.in_use.load(ord_for_loom(
            "reader.in_section_after_registrations.acquire",
            Ordering::Acquire,
        )) && s.ctr.load(Ordering::Relaxed) != 0
            && lock(&s.owner).tid == tid;
    });
    open
}

/// Under loom no thread-local is destroyed before another's destructor.
#[cfg(loom)]
pub(crate) fn in_section_after_registrations(_: &Registry) -> bool {
    false
}

#[cfg(all(test, not(loom)))]
mod owed_qsbr_tests {
    use super::{owe_throttle_qsbr, take_owed_qsbr};
    use crate::{Config, Flavor, Rcu};

    /// A thread online in two QSBR domains owes each one's pressure
    /// throttle apart: a retire into the second before the thread reports
    /// in the first replaced the first one's debt, whose wait then went
    /// unpaid (a loop retiring into both under pressure paid 20–40% of the
    /// first domain's waits that it paid alone).
    #[test]
    fn each_domain_keeps_its_own_qsbr_debt() {
        let a = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
        let b = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
        assert!(!owe_throttle_qsbr(a.registry()), "a owed nothing yet");
        assert!(!owe_throttle_qsbr(b.registry()), "b owed nothing yet");
        assert!(owe_throttle_qsbr(a.registry()), "a still owes beside b");
        assert!(take_owed_qsbr(a.registry()), "a pays its own debt");
        assert!(!take_owed_qsbr(a.registry()), "once");
        assert!(take_owed_qsbr(b.registry()), "b's debt is kept");
        assert!(!take_owed_qsbr(b.registry()), "once");
    }
}
