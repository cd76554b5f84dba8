//! `barrier`: waiting until everything queued before the call has run.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::segcblist::Entry;
use super::{add, Callbacks};
use crate::gp::{GracePeriods, WaitMode};
use crate::sync::{lock, ord_for_loom};

impl Callbacks {
    /// Waits until everything queued before the call, by any thread, has run.
    ///
    /// Pages are sealed with their cookie, so one wait for the latest covers
    /// them. Callbacks are not: a concurrent `accelerate` (another thread's
    /// hand-off, the grace-period thread's plan) may merge newer entries
    /// into the segment holding older ones and raise its grace period past
    /// the one waited for. So a marker goes behind everything on each shard
    /// (the kernel's `rcu_barrier` entrains a callback per CPU), and the
    /// barrier waits, runs what is ready and looks again until every marker
    /// has run (entries keep queue order, so everything before it has too).
    pub(crate) fn barrier(&self, gp: &GracePeriods) {
        add(&self.counters.barriers, 1);
        // In a child forked without `prepare_fork`, a wait on what a thread
        // of the parent held at the fork gives up, naming the fix.
        let _forked = crate::sync::ForkedWaits::scope(gp.fork_check("a barrier"));
        self.flush_locals(gp, None);
        let markers: Vec<Arc<AtomicBool>> = self
            .shards
            .iter()
            .map(|shard| {
                let ran = Arc::new(AtomicBool::new(false));
                let r = ran.clone();
                let mut st = lock(&shard.state);
                st.list.enqueue(Entry::marker(Box::new(move || {
                    r.store(
                        true,
                        ord_for_loom("barrier.marker_release", Ordering::Release),
                    )
                })));
                ran
            })
            .collect();
        loop {
            let mut target = 0;
            for shard in self.shards.iter() {
                let mut st = lock(&shard.state);
                self.request_all(gp, &mut st);
                target = target.max(Self::needed_all(gp, &st).unwrap_or(0));
            }
            if target > 0 {
                gp.wait_for_seq(target, WaitMode::Normal);
            }
            for cpu in 0..self.shards.len() {
                // Everything queued before is now ready (or running on a
                // worker, which holds `invoke` until its batch ends), unless
                // its segment's grace period was raised meanwhile.
                self.invoke_ready(gp, cpu, None);
            }
            if markers
                .iter()
                .all(|m| m.load(ord_for_loom("barrier.marker_acquire", Ordering::Acquire)))
            {
                break;
            }
        }
        // Threads' drains may have taken ready pages meanwhile (none queued
        // before this barrier is left on a shard now, but for what is left
        // of drains taken from their threads, which no drain takes back):
        // take what they hold, and wait for the objects their threads are
        // dropping.
        let cpu = self.current_shard();
        gp.registry().for_each_slot(|slot| {
            if slot.abandoned.load(Ordering::Relaxed) {
                return;
            }
            slot.local.wait_out_drain(|| {
                let _ = self.steal_drain_to_shard(gp, &slot.local, cpu);
            });
        });
        // Drains taken from their threads (by this barrier, by another, or
        // by a lazy flush, before the walk above reached their buffers)
        // are ready pages on shards now: run them, or wait for the thread
        // running them (it holds `invoke`).
        for cpu in 0..self.shards.len() {
            self.invoke_ready(gp, cpu, None);
        }
    }
}
