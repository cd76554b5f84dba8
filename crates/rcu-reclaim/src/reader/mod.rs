//! Reader registry and read-side critical sections.
//!
//! Every thread that reads in a domain owns one [`Slot`] in that domain's
//! [`Registry`]: a cache-padded word holding `0` while the thread is outside
//! any read-side section, or the domain's grace-period counter as it was when
//! the thread's outermost section began. A grace period bumps the counter and
//! waits for every slot that holds a smaller non-zero value.
//!
//! A thread registered for quiescent-state-based reclamation (the QSBR
//! flavor, `qsbr.rs`) owns a slot of its own (`qsbr_slots.rs`), claimed
//! apart from the thread-local registrations (`registration.rs`): its `ctr` holds the readers' counter
//! as the thread last reported it (`qsbr_report`) while the thread is
//! online, `0` while it is offline. The grace periods' test is the same:
//! a slot is quiescent for the grace period waiting for `new` when it reads
//! `0` or at least `new`.
//!
//! Slots live in an append-only list that writers walk without a lock; a
//! thread that exits gives its slot back (`in_use = false`) for the next new
//! thread to claim, so the list is as long as the most threads that ever read
//! at once, and a slot is freed only with its registry.
//!
//! The files:
//! - this one: the slots and the registry that lists them;
//! - `registration.rs`: a thread's slots, one per domain, found through a
//!   fast-path cache and handed back at thread exit; `registration/late_exit.rs`: slots
//!   taken after a thread's registrations were destroyed;
//! - `section.rs`: entering and leaving a section on a slot;
//! - `owed.rs`: pressure-throttle waits a section or a QSBR thread owes;
//! - `qsbr_slots.rs`: QSBR registrations' slots (online, offline, reports).

mod owed;
mod qsbr_slots;
mod registration;
mod section;

pub(crate) use owed::take_owed_qsbr;
#[cfg(not(loom))]
pub(crate) use owed::{take_owed_work, Payer};
#[cfg(not(loom))]
pub(crate) use qsbr_slots::in_any_section;
#[cfg(not(loom))]
pub(crate) use qsbr_slots::owe_at_quiescent_state;
pub(crate) use qsbr_slots::owe_qsbr;
#[cfg(not(loom))]
pub(crate) use qsbr_slots::qsbr_only_section_in;
#[cfg(loom)]
pub(crate) use qsbr_slots::qsbr_report_without_fence_a;
pub(crate) use qsbr_slots::{
    is_own_qsbr_slot, qsbr_mark_offline, qsbr_mark_online, qsbr_offline, qsbr_online,
    qsbr_online_count_in, qsbr_online_in, qsbr_register, qsbr_release, qsbr_report,
};
pub(crate) use registration::{
    current_slot, nesting_in, own_slot_cached_in, own_slot_in, raw_nesting_in, release_if_late,
    release_if_still_late, unregister,
};
#[cfg(not(loom))]
pub(crate) use registration::{foreign_in_section, mark_waiting};
#[cfg(loom)]
pub(crate) use section::section_exit_relaxed;
pub(crate) use section::{
    in_section, in_section_after_registrations, owe_throttle_in, section_enter, section_exit,
    OWES_THROTTLE,
};

use std::cell::Cell;
use std::ptr;
use std::sync::atomic::Ordering;

use crossbeam_utils::CachePadded;

use crate::callbacks::bulk::BulkPage;
use crate::callbacks::local::LocalBuffer;
use crate::flavor::Flavor;
use crate::sync::{
    acq_rel_for_loom, fence, lock, mutated_for_loom, ord_for_loom, AtomicBool, AtomicI32,
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
    /// A late slot (see `registration::late_slot`): no registration holds it, and it
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
    /// Called by the slot's own thread: whether that thread is outside
    /// every section of the slot's domain (no guard, raw section or online
    /// QSBR registration; nothing begun and not yet snapshotted, as in a
    /// signal handler that interrupted an entry), and no foreign counter is
    /// attached to the slot.
    pub(crate) fn owner_outside_sections(&self) -> bool {
        #[cfg(not(loom))]
        if self.foreign.value().is_some() {
            return false;
        }
        self.nest.get() == 0
            && self.ctr.load(Ordering::Relaxed) == 0
            && !self.abandoned.load(Ordering::Relaxed)
    }

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

    /// Whether any slot is claimed but the calling thread's own (`own`
    /// gives it, or null: asked only once a claimed slot is found, so a
    /// registry with none reads no thread-local), and the own one too
    /// while its thread is inside a section ([`Slot::owner_outside_sections`]).
    /// The calling thread's own slot outside every section holds up no
    /// grace period it starts: its later sections follow its unlinks in
    /// program order (a signal handler's too, which runs between two of
    /// its instructions), so they cannot reach what was unlinked, whatever
    /// the barrier. An abandoned slot (its thread exited inside a section)
    /// counts as claimed. Acquire: a slot handed back was handed back
    /// after its thread's last section ended.
    pub(crate) fn any_claimed_but(&self, own: impl FnOnce() -> *const Slot) -> bool {
        let mut own = Some(own);
        let mut own_slot: *const Slot = ptr::null();
        let mut any = false;
        self.for_each_slot(|s| {
            if any
                || !s.in_use.load(ord_for_loom(
                    "reader.any_claimed.acquire",
                    Ordering::Acquire,
                ))
            {
                return;
            }
            if let Some(f) = own.take() {
                own_slot = f();
            }
            any = !(ptr::eq(s, own_slot) && s.owner_outside_sections());
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

/// The calling thread's name, for reports. In a destructor that runs
/// after the thread's thread-locals are gone (a C program's pthread key
/// destructor calling `defer_rcu` or registering), std's handle of the
/// thread may be gone too: asking for it panicked there (an abort, from C),
/// so such a thread is named as exiting.
pub(crate) fn current_thread_name() -> String {
    if registration::thread_locals_alive() {
        crate::sync::thread::current()
            .name()
            .unwrap_or("<unnamed>")
            .to_string()
    } else {
        "<exiting thread>".to_string()
    }
}

/// The calling thread, as a slot's owner.
pub(crate) fn current_owner() -> Owner {
    Owner {
        name: current_thread_name(),
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
