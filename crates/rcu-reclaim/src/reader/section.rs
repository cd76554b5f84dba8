//! Read-side sections on a slot: the outermost entry's snapshot of the
//! readers' counter, the exit that clears it and wakes a parked writer,
//! the cold exit of a section that owes the pressure throttle or whose
//! slot its thread abandoned, and whether this thread is inside a section.

use std::sync::atomic::Ordering;

#[cfg(not(loom))]
use super::owed::Payer;
use super::qsbr_slots::qsbr_online_in;
#[cfg(not(loom))]
use super::qsbr_slots::QSBR_ONLINE;
use super::registration::{nesting_in, own_slot_cached_in, registrations_touched, REGISTRATIONS};
use super::{AbandonedExit, Registry, Slot};
use crate::flavor::{reader_fence, Flavor};
use crate::sync::{fence, lock, mutated_for_loom, ord_for_loom, AtomicBool, AtomicU64};

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
