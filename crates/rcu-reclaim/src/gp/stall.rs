//! Stall warnings: the readers a grace period still waits for
//! (`holdouts`), and the report of one that has held it up past the
//! domain's `stall_timeout`, naming its thread (a leaked guard, a thread
//! gone inside a section, a process forked without `prepare_fork`, a
//! cycle of waits across domains).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::readers::slot_quiescent;
use super::{bump, GracePeriods, SEQ_STATE_MASK};
use crate::reader::{Owner, Slot};
use crate::sync::{lock, ord_for_loom};

/// In a process forked without `Rcu::prepare_fork`, how long a slot
/// claimed in the parent holds up a grace period before it is reported
/// (if the stall timeout is longer): its thread most likely does not exist
/// here, and the section never ends. Not at once: the thread that forked
/// came along, still in its parent's slot, and its own sections end.
const FORKED_STALL_REPORT: Duration = Duration::from_secs(1);

impl GracePeriods {
    /// The owners of the slots the grace period in progress still waits
    /// for, each with whether it is a QSBR registration (empty when no
    /// grace period is in progress). A racy look, for reports: a slot may
    /// move on as it is read.
    pub(crate) fn holdouts(&self) -> Vec<(Owner, bool)> {
        let mut out = Vec::new();
        if self
            .seq
            .load(ord_for_loom("gp.holdouts.acquire", Ordering::Acquire))
            & SEQ_STATE_MASK
            == 0
        {
            return out;
        }
        let new = self.in_flight.load(Ordering::Relaxed);
        self.registry.for_each_slot(|slot| {
            if slot.in_use.load(Ordering::Relaxed) && !slot_quiescent(slot, new) {
                out.push((lock(&slot.owner).clone(), slot.qsbr.load(Ordering::Relaxed)));
            }
        });
        out
    }

    /// Reports `slot` once if it has held up the grace period past the stall
    /// timeout; returns how long to park before checking again.
    ///
    /// In a process forked without `Rcu::prepare_fork`, a slot claimed in
    /// the parent is reported after [`FORKED_STALL_REPORT`] instead (if the
    /// stall timeout is longer): its thread most likely does not exist here
    /// (only the thread that forked came along), so its section can never
    /// end. The grace period still waits for it (what was read under it may
    /// have been handed to the thread that forked).
    pub(super) fn check_stall(&self, slot: &Slot, started: Instant) -> Duration {
        let limit = self.stall_timeout;
        let waited = started.elapsed();
        if waited < limit {
            if self.pid.load(Ordering::Relaxed) == crate::reader::current_pid() {
                return limit - waited;
            }
            let early = limit.min(FORKED_STALL_REPORT);
            if waited < early {
                return early - waited;
            }
            if self.of_another_process(slot) {
                self.report_stall(slot, waited, limit);
            }
            return (limit - waited).min(Duration::from_secs(1));
        }
        self.report_stall(slot, waited, limit);
        limit.min(Duration::from_secs(1))
    }

    /// Whether `slot` was claimed by a thread of another process (the one
    /// this process was forked from without `Rcu::prepare_fork`).
    pub(super) fn of_another_process(&self, slot: &Slot) -> bool {
        let owner = lock(&slot.owner).pid;
        owner != 0 && owner != crate::reader::current_pid()
    }

    /// Reports `slot`'s section once (per section) as holding up a grace
    /// period for `waited`, past `limit` (zero for a section that can
    /// never end: a guard's, on a thread that is gone).
    pub(super) fn report_stall(&self, slot: &Slot, waited: Duration, limit: Duration) {
        // A C reader's section counts in its foreign counter (the drop-in's
        // registered threads, programs built with `_LGPL_SOURCE`).
        #[cfg(not(loom))]
        let foreign = slot.foreign.value();
        #[cfg(loom)]
        let foreign: Option<usize> = None;
        let section = match slot.ctr.load(Ordering::Relaxed) {
            0 => foreign.map_or(0, |v| v as u64),
            own => own,
        };
        if section != 0 && slot.stall_reported.swap(section, Ordering::Relaxed) != section {
            let owner = lock(&slot.owner).clone();
            bump(&self.counters.stalls_reported);
            let here = crate::reader::current_pid();
            let msg = if owner.pid != 0 && owner.pid != here {
                format!(
                    "rcu-reclaim: reader stall: thread '{}' (tid {}) of process {}, registered \
                     before this process ({}) was forked from it without Rcu::prepare_fork() \
                     (or with it, but without ForkGuard::child() in this child), has \
                     held up a grace period of domain {} for {:?} (stall timeout {:?}): inside a \
                     read-side section (or, QSBR, online) at the fork, it does not exist here \
                     (unless it is the thread that forked, which runs on here), so its section \
                     never ends and grace periods of the domain wait for good. Call \
                     rcu.prepare_fork() before fork() and ForkGuard::child() in the child \
                     (parent() in the parent), which ends those sections; on the liburcu drop-in, call_rcu_before_fork() \
                     before fork(), call_rcu_after_fork_parent() in the parent and \
                     call_rcu_after_fork_child() in the child (urcu_memb_call_rcu_before_fork() \
                     etc., or register the three once with pthread_atfork())",
                    owner.name, owner.tid, owner.pid, here, self.id, waited, limit
                )
            } else if slot.abandoned.load(Ordering::Relaxed)
                && !slot.raw_only.load(Ordering::Relaxed)
            {
                format!(
                    "rcu-reclaim: reader stall: thread '{}' (tid {}) exited inside a read-side \
                     section of domain {}: a ReadGuard or an online QsbrThread of it was leaked \
                     (mem::forget, Box::leak) or kept in a thread-local that was never dropped. \
                     What was read under it may still be referenced by other threads, so the \
                     section never ends: grace periods of the domain wait for good (reported \
                     as soon as a grace period found the thread gone). Drop guards and \
                     registrations before a thread exits",
                    owner.name, owner.tid, self.id
                )
            } else if slot.qsbr.load(Ordering::Relaxed) {
                let advice = if foreign.is_some() {
                    "rcu_quiescent_state() regularly and go offline (rcu_thread_offline()) \
                     before it blocks"
                } else {
                    "quiescent_state() regularly and go offline (offline_while, \
                     thread_offline) before it blocks"
                };
                format!(
                    "rcu-reclaim: reader stall: QSBR thread '{}' (tid {}) has not reported a \
                     quiescent state for a grace period of domain {} in {:?}, longer than the \
                     stall timeout {:?}; an online QSBR thread must call {advice}",
                    owner.name, owner.tid, self.id, waited, limit
                )
            } else {
                #[cfg(not(loom))]
                let waiting_on = slot.waiting_on.load(Ordering::Relaxed);
                #[cfg(loom)]
                let waiting_on = 0;
                let waiting = if waiting_on != 0 {
                    format!(
                        ". Inside this section the thread is itself waiting for a grace period of \
                         domain {waiting_on}: if a section of domain {waiting_on} waits for one of \
                         domain {} (directly or through other waits), neither wait ever ends (a \
                         cycle); do not wait for one domain's grace periods inside a section of \
                         another that may wait for it",
                        self.id
                    )
                } else {
                    String::new()
                };
                format!(
                    "rcu-reclaim: reader stall: thread '{}' (tid {}) has held up a grace period \
                     of domain {} for {:?}, longer than the stall timeout {:?}; a read-side \
                     section{} must not block or run for long (nor wait for something that needs \
                     a grace period): end it before a blocking call (a sleep, I/O, a lock that \
                     a thread waiting for a grace period may hold), taking out a copy{} of what \
                     must outlive it{waiting}",
                    owner.name,
                    owner.tid,
                    self.id,
                    waited,
                    limit,
                    if foreign.is_some() {
                        " (rcu_read_lock() to rcu_read_unlock())"
                    } else {
                        ""
                    },
                    if foreign.is_some() {
                        ""
                    } else {
                        " (or an `Arc` clone, from an `RcuCell<Arc<T>>`)"
                    }
                )
            };
            // What the stall costs: the memory held back meanwhile (a
            // reader blocked in its section let 124 MiB pile up in 127 ms
            // in a new user's program, and the report did not say).
            #[cfg(not(loom))]
            let msg = match self.registry.backlog_bytes.get().map(|f| f()) {
                Some(b) if b > 0 => format!(
                    "{msg}. Meanwhile {} waits to be freed (Rcu::pending_bytes)",
                    crate::sys::show_bytes(b)
                ),
                _ => msg,
            };
            tracing::warn!(
                domain = self.id,
                thread = %owner.name,
                tid = owner.tid,
                waited_ms = waited.as_millis() as u64,
                "{msg}"
            );
            crate::sys::eprint_if_unobserved(&msg);
        }
    }
}
