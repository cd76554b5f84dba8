//! QSBR: registered threads that report quiescent states (liburcu's
//! urcu-qsbr), each on a slot of its own. The writer's side is the grace
//! periods' usual one (`gp/`): a full fence (the QSBR flavor's writer
//! barrier), the counter's bump, then a wait until every slot reads `0` or
//! at least the new value.

use std::cell::RefCell;
use std::ptr;
use std::sync::atomic::Ordering;

#[cfg(not(loom))]
use super::owed::take_owed_qsbr;
#[cfg(not(loom))]
use super::owed::Payer;
use super::registration::{nesting_in, registrations_touched, touch_registrations};
use super::{current_owner, Registry, Slot};
use crate::sync::{fence, lock, mutated_for_loom, ord_for_loom, AtomicU64};

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

/// What a QSBR slot reads while its online thread owes a throttle wait
/// (`owed::owe_throttle_qsbr`): a value the readers' counter never takes
/// (it starts at 1 and every grace period waits for a larger one), so the
/// thread's next quiescent state takes its reporting path, which pays,
/// even when no grace period has begun since its last report. A grace
/// period reads it as a thread still to report (non-zero, under its
/// target): conservative, and ended by that same quiescent state.
pub(crate) const OWED_MARK: u64 = 1;

/// Records that an online QSBR registration of this thread in the domain
/// of `registry` owes the pressure throttle (`owed::owe_throttle_qsbr`),
/// and sets its slot to [`OWED_MARK`], so that its next quiescent state
/// pays, whether a grace period has begun since its last report or not (a
/// grace period held up by another online thread that never reports
/// begins none, and an online writer behind it never paid: 100 MiB over a
/// 4 MiB cap in 1.5 s). Returns whether it owed already.
pub(crate) fn owe_qsbr(registry: &Registry) -> bool {
    let again = super::owed::owe_throttle_qsbr(registry);
    mark_owing(registry);
    again
}

/// As [`owe_qsbr`], owing `work` besides (a budget's direct reclaim), run
/// where the registration pays: offline, at its next quiescent state, or
/// going offline.
#[cfg(not(loom))]
pub(crate) fn owe_at_quiescent_state(registry: &Registry, work: fn()) {
    let _ = owe_qsbr(registry);
    super::owed::owe_work(work);
}

/// Sets this thread's online QSBR slots of `registry` to [`OWED_MARK`]
/// (see there). Only the slot's own thread stores to it while online.
fn mark_owing(registry: &Registry) {
    let _ = QSBR_ONLINE.try_with(|o| {
        // Listed or unlisted only under `NO_RECLAIM`, where no retire
        // owes; a borrow held even so leaves the debt to the next report.
        let Ok(slots) = o.slots.try_borrow() else {
            return;
        };
        for &(slot, reg, _) in slots.iter() {
            if ptr::eq(reg, registry) {
                // SAFETY: this thread's own slot, alive while its
                // registration is (it is listed until released).
                let slot = unsafe { &*slot };
                if slot.ctr.load(Ordering::Relaxed) != 0 {
                    slot.ctr.store(OWED_MARK, Ordering::Relaxed);
                }
            }
        }
    });
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
pub(super) struct QsbrOnline {
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
        self.online_in(Some(id)).unwrap_or(0)
    }

    /// How many online QSBR registrations this thread has in domain `id`
    /// (`None`: in any domain), as [`online_count`](Self::online_count)
    /// counts them; `None` when neither list can be borrowed.
    fn online_in(&self, id: Option<u64>) -> Option<usize> {
        let here = |d: u64| id.map_or(true, |id| d == id);
        if let Ok(domains) = self.domains.try_borrow() {
            return Some(domains.iter().filter(|&&d| here(d)).count());
        }
        self.slots.try_borrow().ok().map(|slots| {
            slots
                .iter()
                // SAFETY: a listed slot is alive (see `QsbrOnline::drop`).
                .filter(|&&(slot, _, d)| {
                    here(d) && unsafe { &*slot }.ctr.load(Ordering::Relaxed) != 0
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
    pub(super) static QSBR_ONLINE: QsbrOnline = const {
        QsbrOnline {
            domains: RefCell::new(Vec::new()),
            slots: RefCell::new(Vec::new()),
        }
    };
}

#[cfg(loom)]
loom::thread_local! {
    pub(super) static QSBR_ONLINE: QsbrOnline = QsbrOnline {
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

/// Whether this thread is inside a read-side section of any domain: a
/// guard or raw section, a foreign (liburcu inline) section, or an online
/// QSBR registration. For waits on other threads that are not grace
/// periods (`RcuCache::read_or_insert_with`'s wait for another thread's
/// load): the thread it waits for may wait for a grace period of any of
/// them, which waits for this thread. A thread-local that cannot be read
/// (the thread exiting) answers yes.
#[cfg(not(loom))]
pub(crate) fn in_any_section() -> bool {
    super::registration::in_any_guarded_section() || qsbr_online_anywhere()
}

/// Whether this thread has an online QSBR registration in any domain (a
/// thread-local that cannot be read, the thread exiting: yes).
#[cfg(not(loom))]
fn qsbr_online_anywhere() -> bool {
    if !registrations_touched() {
        return false;
    }
    QSBR_ONLINE
        .try_with(|o| o.online_in(None).map_or(true, |n| n > 0))
        .unwrap_or(true)
}

/// How many online QSBR registrations this thread has in domain `id` (a
/// thread may register more than once).
pub(crate) fn qsbr_online_count_in(id: u64) -> usize {
    if !registrations_touched() {
        return 0;
    }
    QSBR_ONLINE.try_with(|o| o.online_count(id)).unwrap_or(0)
}

/// Whether this thread's only section of domain `id` is an online QSBR
/// registration (no guard or raw section inside it).
#[cfg(not(loom))]
pub(crate) fn qsbr_only_section_in(id: u64) -> bool {
    nesting_in(id) == 0 && qsbr_online_in(id)
}
