//! Planning grace periods: which shards need one now (the lazy rules,
//! overload, pressure), assigning it, and advancing the shards after it.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::shard::ShardState;
use super::{add, Callbacks, GpPlan};
use crate::gp::{GracePeriods, WaitMode};
use crate::policy::{self, Pace, ShardFacts};
use crate::sync::lock;

impl Callbacks {
    /// The sequence value that completes the shard's waiting callbacks and
    /// its first `pages` pages, if any is still needed.
    pub(super) fn needed(gp: &GracePeriods, st: &ShardState, pages: usize) -> Option<u64> {
        st.list
            .needed_gp()
            .into_iter()
            .chain(st.pages.iter().take(pages).map(|p| p.cookie))
            .filter(|&t| !gp.done(t))
            .max()
    }

    /// [`needed`](Self::needed) for all the shard's pages, without walking
    /// them: a grace period that completes one cookie completes every
    /// lower one, so the highest cookie not yet done is the highest queued
    /// (`pages_max_cookie`) or none. Every retiring thread's hand-off asks
    /// this, and a shard may hold thousands of pages.
    pub(super) fn needed_all(gp: &GracePeriods, st: &ShardState) -> Option<u64> {
        st.list
            .needed_gp()
            .into_iter()
            .chain(Some(st.pages_max_cookie))
            .filter(|&t| !gp.done(t))
            .max()
    }

    /// Decides which shards need a grace period now (the lazy rules) and
    /// assigns them one. Called by the grace-period thread.
    pub(crate) fn plan(&self, gp: &GracePeriods) -> GpPlan {
        let fast = self.pressure.observe(gp.completed());
        // Under pressure, buffered pages go to their shards once a
        // millisecond old (`policy::PRESSURE_PAGE_AGE`). Not in
        // the hysteresis after it (fast, but no node pressured): no shard
        // asks for a grace period then, so a page taken from its thread
        // would only wait on a shard, and every fresh page's kick would
        // bring the thread back to take the next (a steal, with its
        // membarrier, per object or two).
        let pressured_any = fast && (0..self.topology.nodes()).any(|n| self.pressure.on_node(n));
        let older_than = Some(policy::page_flush_age(&self.params, pressured_any));
        let (_, local_due) = self.flush_locals(gp, older_than);
        let (total, _) = self.pending(gp);
        let mut overloaded = policy::domain_overloaded(&self.params, total);
        if overloaded {
            self.note_overload(total);
        } else {
            self.overloaded.store(false, Ordering::Relaxed);
        }
        // Fast mode on pressured nodes: no lazy delay; expedite only while
        // their backlog is worth it (see `pressure.rs`).
        let pressured_bytes: usize = (0..self.topology.nodes())
            .filter(|&n| fast && self.pressure.on_node(n))
            .map(|n| self.pending_on_node(n).1)
            .sum();
        let now = Instant::now();
        let mut target: Option<u64> = None;
        let mut deadline: Option<Duration> = local_due;
        // What the shards hold as the loop sees them: threads hand pages
        // to their shards while it runs, so the loop may request a grace
        // period for more than `total` counted.
        let mut on_shards = 0;
        for (cpu, shard) in self.shards.iter().enumerate() {
            let mut st = lock(&shard.state);
            on_shards += st.totals().0;
            let pressured = fast && self.pressure.on_node(self.topology.node_of(cpu));
            let (unrequested, unrequested_bytes) = st.unrequested();
            let facts = ShardFacts {
                hurry: st.hurry,
                overloaded: st.overloaded,
                pressured,
                age: st.since.map(|t| now.saturating_duration_since(t)),
                unrequested,
                unrequested_bytes,
            };
            match policy::shard_pace(&self.params, overloaded, facts) {
                Pace::Due => self.request_all(gp, &mut st),
                Pace::Wait(left) => deadline = Some(deadline.map_or(left, |d| d.min(left))),
                Pace::Idle => {}
            }
            if !pressured && st.pages_ready(gp.seq()) {
                // Look again when a worker should take them (`after_gp`):
                // at the end of the producer's window even when the front
                // page goes to a worker now (not plain). The worker takes
                // one page per batch and then finds the plain pages behind
                // it left to the producer again; with no look after the
                // window, a producer that had stopped stranded them for
                // good (`tests/plain_frees.rs`'s stopped-thread test, 3 to
                // 8 runs in 180 on two loaded cores, 100-190 values kept).
                if let Some(left) = st.producer_window_left(now, self.params.producer_window) {
                    deadline = Some(deadline.map_or(left, |d| d.min(left)));
                }
            }
            target = target.max(Self::needed(gp, &st, st.pages_requested));
        }
        // A backlog over `qovld` that grew in during the loop: the grace
        // period just requested for it is expedited too (else it would be
        // seen only once that grace period had ended, with nothing left to
        // expedite).
        if !overloaded && target.is_some() && policy::domain_overloaded(&self.params, on_shards) {
            overloaded = true;
            self.note_overload(on_shards);
        }
        let expedite = policy::expedite(&self.params, overloaded, fast, pressured_bytes);
        GpPlan {
            target,
            mode: if expedite {
                WaitMode::Expedited
            } else {
                WaitMode::Normal
            },
            next_deadline: deadline,
        }
    }

    /// Marks the domain overloaded (a backlog of `total` over `qovld`),
    /// counting and reporting each time it goes over.
    pub(super) fn note_overload(&self, total: usize) {
        if !self.overloaded.swap(true, Ordering::Relaxed) {
            add(&self.counters.overload_expedited, 1);
            tracing::debug!(
                total,
                "rcu-reclaim: backlog over qovld, expediting grace periods"
            );
        }
    }

    /// Assigns a grace period to everything on the shards `cpus`; returns
    /// the sequence value that completes them all, if any is still needed.
    pub(crate) fn request_cpus(&self, gp: &GracePeriods, cpus: &[usize]) -> Option<u64> {
        let mut target = None;
        for &cpu in cpus {
            let mut st = lock(&self.shards[cpu].state);
            self.request_all(gp, &mut st);
            target = target.max(Self::needed_all(gp, &st));
        }
        target
    }

    /// Assigns a grace period to everything in the shard that has none.
    pub(super) fn request_all(&self, gp: &GracePeriods, st: &mut ShardState) {
        // The snapshot is taken under the shard lock, after every entry in
        // NEXT was queued (and so after its object was unlinked).
        st.list.accelerate(gp.snapshot());
        st.pages_requested = st.pages.len();
        st.since = None;
        st.hurry = false;
    }

    /// After a grace period (or a plan that needed none): advance every
    /// shard and wake the workers of shards with something ready (ready
    /// pages of a shard a thread is still handing pages to are left to that
    /// thread for `producer_window`; `plan` times the look after it).
    pub(crate) fn after_gp(&self, gp: &GracePeriods) {
        let seq = gp.seq();
        let now = Instant::now();
        for (cpu, shard) in self.shards.iter().enumerate() {
            let pressured = self.pressure.on_node(self.topology.node_of(cpu));
            let ready = {
                let mut st = lock(&shard.state);
                st.list.advance(seq);
                // Ready pages go to a worker under pressure, or once the
                // thread that hands pages to the shard has stopped.
                st.list.done_len() > 0
                    || (st.pages_ready(seq)
                        && (pressured
                            || st
                                .left_to_producer(now, self.params.producer_window)
                                .is_none()))
            };
            if ready {
                self.workers.wake(self.worker_group(cpu));
            }
        }
    }
}
