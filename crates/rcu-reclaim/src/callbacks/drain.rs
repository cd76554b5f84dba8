//! Freeing in steps: a thread that hands its shard pages of values that
//! drop anywhere takes one ready page at a time into its *drain* and drops
//! a few of its objects at each later retire (the kernel's reclaim works in
//! `SWAP_CLUSTER_MAX` batches for the same reason).
//!
//! Freeing whole pages at a hand-off (eight, about 1,700 objects) kept the
//! retiring call running for 0.3–1 ms; a retire usually runs inside the
//! caller's read-side section, so that section held up every grace period
//! meanwhile, and the other threads' garbage piled up behind it. In steps,
//! each retire frees `policy::drain_step_for` objects: one while the
//! drain's page was the only ready one or the last grace period's end made
//! it ready (with the pages behind it: they came ready at once), two behind
//! a backlog from an earlier end, eight behind a large one. So a section
//! grows by a few frees, frees interleave with the thread's allocations
//! (the allocator's thread cache recycles them), and a backlog still
//! drains faster than it grows.
//!
//! The drain lives in the thread's `LocalBuffer`, under the handshake that
//! guards its page: the owner pops objects on its fast path; a stealer
//! (`barrier`, the grace-period thread's lazy flush for a thread that
//! stopped retiring, pressure) takes what is left. Objects popped but not
//! yet dropped are counted in `LocalBuffer::dropping`, which `barrier`
//! waits for. A page's objects and bytes are counted as freed once, by
//! whoever empties it.

use crate::sync::run_each_caught;
use std::sync::atomic::Ordering;

use super::bulk::BulkPage;
use super::local::{Drain, LocalBuffer, Popped};
use super::{add, Callbacks, IN_CALLBACK};
use crate::clock::epoch_ms;
use crate::gp::GracePeriods;
use crate::policy;
use crate::sync::{lock, try_lock};

/// Whether the grace-period thread must look within `producer_window`
/// after a refill of a thread's drain ([`Callbacks::refill_drain`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DrainLook {
    /// No look needed.
    No,
    /// From now (the caller reads the clock).
    FromNow,
    /// From this time (`epoch_ms`), when the drain got its page.
    From(usize),
}

impl Callbacks {
    /// Runs what a retire took from `local`'s drain (ready objects that
    /// drop anywhere), as callbacks run: `in_callback` set, a panic
    /// reported and counted, never unwound into the retiring call.
    pub(crate) fn run_popped(&self, local: &LocalBuffer, popped: &Popped) {
        let was = IN_CALLBACK.with(|c| c.replace(true));
        run_each_caught(
            popped.items(),
            // SAFETY: the drain took it from a page whose grace period has
            // elapsed, once (`pos` moved past it), and nothing else runs it.
            |d| unsafe { d.run() },
            |msg| {
                add(&self.counters.panics, 1);
                self.report_panic(msg);
            },
        );
        IN_CALLBACK.with(|c| c.set(was));
        local.dropped(popped.len());
    }

    /// Counts a drained page's first `done` objects as freed, and keeps the
    /// rest on it (returns `None` when none are left, recycling the page
    /// into shard `cpu`'s spares).
    fn settle(&self, cpu: usize, mut page: BulkPage, done: usize) -> Option<BulkPage> {
        let (n, bytes) = page.forget_front(done);
        add(&self.counters.invoked, n);
        add(&self.counters.bytes_freed, bytes);
        if page.len() > 0 {
            return Some(page);
        }
        add(&self.counters.pages_freed, 1);
        self.recycle(cpu, page);
        None
    }

    /// The owner's step after its hand-off or after it emptied its drain:
    /// an emptied page is counted and recycled, and the drain takes the
    /// next ready page of values that drop anywhere from shard `cpu` (its
    /// step set by the shard's ready backlog). Returns whether the
    /// grace-period thread must look within `producer_window`, in case
    /// this thread stops retiring: the drain got a page, ready pages are
    /// left on the shard, or the shard's lock was held, so whether any are
    /// is not known. (Only a drain that got a page said so before: when
    /// the lock was held, the shard's ready pages, left to this thread for
    /// `producer_window`, had no look coming after it, and a thread that
    /// stopped retiring then could strand them until the next `barrier`.)
    ///
    /// The answer says so as a [`DrainLook`], with the time the drain got
    /// its page, which the caller's kick reckons from (no second clock
    /// read).
    pub(crate) fn refill_drain(
        &self,
        gp: &GracePeriods,
        local: &LocalBuffer,
        cpu: usize,
    ) -> DrainLook {
        local.with_drain_owner(|drain| {
            if drain.left() > 0 {
                return DrainLook::No;
            }
            if let Some((page, done)) = drain.take() {
                // Every object was taken: settle waits for none of them,
                // and the page is recycled (never handed back).
                let _ = self.settle(cpu, page, done);
            }
            let shard = &self.shards[cpu];
            let (page, backlog, left_ready, latest) = {
                // The caller retires, maybe inside a read-side section: no
                // wait for a lock a background thread holds (the page stays
                // for the next refill, or the worker once the grace-period
                // thread has looked after `producer_window`).
                let Some(mut st) = try_lock(&shard.state) else {
                    return DrainLook::FromNow;
                };
                let seq = gp.seq();
                let page = st.take_ready_plain(seq);
                if page.is_some() {
                    shard.publish(&st);
                }
                // Ready as the last grace period ended (not behind).
                let latest = page
                    .as_ref()
                    .is_some_and(|p| p.cookie >= crate::gp::last_end(seq));
                (
                    page,
                    st.ready_pages(seq, policy::THROTTLE_PAGES),
                    st.pages_ready(seq),
                    latest,
                )
            };
            let Some(page) = page else {
                // Ready pages no drain takes (of values that do not drop
                // anywhere) go to a worker: the look wakes it.
                return if left_ready {
                    DrainLook::FromNow
                } else {
                    DrainLook::No
                };
            };
            *drain = Drain::new(page, policy::drain_step_for(backlog, latest));
            let since = epoch_ms().max(1);
            local.drain_since_ms.store(since, Ordering::Relaxed);
            DrainLook::From(since)
        })
    }

    /// The owner drops what is left of its drain at once, instead of a few
    /// objects per retire: for a thread about to wait for its garbage to
    /// be freed (outside read-side sections, callbacks and reclaim), which
    /// would free nothing while it waits. Its objects are ready and drop
    /// anywhere, so running them here costs what the steps would, without
    /// the `membarrier` of a steal or a worker's cross-thread frees.
    /// Returns whether the drain held anything.
    #[cfg(not(loom))]
    pub(crate) fn finish_own_drain(&self, local: &LocalBuffer, cpu: usize) -> bool {
        let Some((page, done)) = local.take_drain_to_drop() else {
            return false;
        };
        let Some(mut rest) = self.settle(cpu, page, done) else {
            return true;
        };
        let (n, bytes) = (rest.len(), rest.bytes());
        let was = IN_CALLBACK.with(|c| c.replace(true));
        let panics = rest.drop_objects_with(|| {}, &mut |msg| self.report_panic(msg));
        IN_CALLBACK.with(|c| c.set(was));
        add(&self.counters.invoked, n);
        add(&self.counters.bytes_freed, bytes);
        add(&self.counters.pages_freed, 1);
        add(&self.counters.panics, panics);
        self.recycle(cpu, rest);
        local.dropped(n);
        true
    }

    /// Takes `local`'s drain from its thread: counts what was taken as
    /// freed and puts what is left on shard `cpu` as a ready page that no
    /// drain takes back, before the buffer's lock is released. Returns
    /// whether a page went to the shard.
    ///
    /// Under the lock, and kept off drains, so that a `barrier` finds the
    /// objects: either still in the drain when it looks at the buffer (it
    /// takes the lock), or on a shard, where its last `invoke_ready` pass
    /// runs them (or waits for the worker running them). Handed on after
    /// the lock, a drain taken by the grace-period thread's lazy flush was
    /// in neither place while a `barrier` looked, and that `barrier`
    /// returned before objects retired ahead of it were dropped; one taken
    /// back into another thread's drain could slip past it the same way.
    pub(crate) fn steal_drain_to_shard(
        &self,
        gp: &GracePeriods,
        local: &LocalBuffer,
        cpu: usize,
    ) -> bool {
        local.steal_drain(
            || gp.writer_barrier(),
            |taken| {
                let Some((page, done)) = taken else {
                    return false;
                };
                let Some(mut rest) = self.settle(cpu, page, done) else {
                    return false;
                };
                rest.keep_off_drains();
                let shard = &self.shards[cpu];
                let mut st = lock(&shard.state);
                st.push_ready_front(rest);
                shard.publish(&st);
                true
            },
        )
    }
}
