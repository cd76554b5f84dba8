//! Taking threads' buffered pages (and drains) into the shards: at a
//! barrier, or lazily for pages buffered too long.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{add, Callbacks};
use crate::clock::epoch_ms;
use crate::gp::GracePeriods;
use crate::policy;
use crate::sync::{lock, try_lock};

impl Callbacks {
    /// Takes every thread's buffered page (and pages of exited threads) into
    /// the shards. With `older_than`, only pages buffered at least that long;
    /// returns whether to kick, and when the next younger page comes due.
    pub(crate) fn flush_locals(
        &self,
        gp: &GracePeriods,
        older_than: Option<Duration>,
    ) -> (bool, Option<Duration>) {
        // In a child forked without `prepare_fork`, a wait on a thread of
        // the parent caught in a retire gives up, naming the fix.
        let _forked = crate::sync::ForkedWaits::scope(gp.fork_check("a flush"));
        let mut kick = false;
        let mut next_due: Option<usize> = None;
        let now_ms = epoch_ms();
        let min_age =
            older_than.map_or(0, |d| usize::try_from(d.as_millis()).unwrap_or(usize::MAX));
        gp.registry().for_each_slot(|slot| {
            let local = &slot.local;
            if local.drain_count.load(Ordering::Relaxed) > 0 {
                // A drain its thread has not finished (it stopped retiring,
                // or exited: the drain stays in its slot) goes back to a
                // shard as a ready page, for a worker or the barrier. Also
                // from an abandoned slot (its thread exited inside a
                // section, which leaves the drain behind): the slot is
                // never reused, so nothing else would ever free it, and a
                // dropped domain would wait for it forever. (A forked
                // child's slot whose buffer was caught locked has its
                // drain count zeroed, so its lock is never taken here.)
                let since = local.drain_since_ms.load(Ordering::Relaxed);
                let due =
                    policy::drain_due_ms(&self.params, since).min(since.saturating_add(min_age));
                if older_than.is_some() && now_ms < due {
                    let left = due - now_ms;
                    next_due = Some(next_due.map_or(left, |d| d.min(left)));
                } else if self.steal_drain_to_shard(gp, local, self.current_shard()) {
                    kick = true;
                }
            }
            if slot.abandoned.load(Ordering::Relaxed) {
                // Its thread is gone and its page was handed on, or (in a
                // forked child) its buffer was caught locked: skip it.
                return;
            }
            if local.count.load(Ordering::Relaxed) == 0 {
                if older_than.is_none() {
                    // A stealer or the owner resets the counts before
                    // handing the page to a shard, holding the buffer's
                    // lock throughout: wait for it, so that a barrier finds
                    // the page on its shard (found by the torture test).
                    local.wait_for_handoff();
                }
                return;
            }
            let since = local.since_ms.load(Ordering::Relaxed);
            let age = now_ms.saturating_sub(since);
            if older_than.is_some() && age < min_age {
                // A page its thread found due but could not hand on (its
                // shard's lock was held) goes now, whatever its age, unless
                // the shard it would go to is held now: the hand-off below
                // waits for that lock holding the thread's buffer, and the
                // thread's next retire would wait behind it.
                let left = if !local.refused.load(Ordering::Relaxed) {
                    min_age - age
                } else if try_lock(&self.shards[self.current_shard()].state).is_none() {
                    policy::RETIRER_FALLBACK_MS as usize
                } else {
                    0
                };
                if left > 0 {
                    next_due = Some(next_due.map_or(left, |d| d.min(left)));
                    return;
                }
            }
            local.steal(
                || gp.writer_barrier(),
                |page| {
                    if let Some(page) = page {
                        add(&self.counters.page_steals, 1);
                        if older_than.is_some() {
                            add(&self.counters.lazy_flushes, 1);
                        }
                        kick |= self.hand_off(gp, page, true);
                    }
                },
            );
        });
        {
            // After the slots: a thread exiting meanwhile moves its page
            // here under its buffer's lock, which the walk above waited for.
            // Held while handing off, so `barrier` never misses a page in transit.
            let mut orphans = lock(&gp.registry().orphans);
            for page in orphans.drain(..) {
                kick |= self.hand_off(gp, page, true);
            }
        }
        (kick, next_due.map(|ms| Duration::from_millis(ms as u64)))
    }

    /// Objects buffered in threads' pages, and their bytes.
    pub(super) fn local_totals(&self, gp: &GracePeriods) -> (usize, usize) {
        let (mut n, mut b) = Self::slot_totals(gp);
        for page in lock(&gp.registry().orphans).iter() {
            n += page.len();
            b += page.bytes();
        }
        (n, b)
    }

    /// The threads' pages and drains alone (lock-free: the mirrored
    /// counts), without the exited threads' pages.
    pub(super) fn slot_totals(gp: &GracePeriods) -> (usize, usize) {
        let (mut n, mut b) = (0, 0);
        gp.registry().for_each_slot(|slot| {
            let local = &slot.local;
            n += local.count.load(Ordering::Relaxed) + local.drain_count.load(Ordering::Relaxed);
            b += local.bytes.load(Ordering::Relaxed) + local.drain_bytes.load(Ordering::Relaxed);
        });
        (n, b)
    }

    /// Whether any thread holds a page of deferred drops not yet on a shard.
    pub(crate) fn has_local_pages(&self, gp: &GracePeriods) -> bool {
        self.local_totals(gp).0 > 0
    }
}
