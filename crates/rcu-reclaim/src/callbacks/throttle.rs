//! Back-pressure on retiring threads: a thread that retires faster than
//! its garbage can be freed waits, briefly, for it to be freed (the
//! kernel throttles writers of dirty pages the same way, in
//! `balance_dirty_pages`, and reclaimers in `reclaim_throttle`).
//!
//! * **Producer throttle** (always): a thread handing its shard a page
//!   while more than `policy::THROTTLE_PAGES` pages wait ready to free
//!   yields to the worker, for at most `policy::THROTTLE_MAX_WAIT`.
//! * **Pressure throttle** (while a pressure signal is held): a thread
//!   handing off a page while the shards hold more than
//!   `Config::pressure_throttle_bytes` waits, outside any read-side
//!   section, until they hold half that, for at most 10 ms per hand-off
//!   (100 ms when they hold over twice the mark), moving grace
//!   periods on itself and waking the workers. Without it, two threads
//!   storing 1 MiB values at full speed in a 100 MiB cgroup kept up to
//!   28 MiB waiting for grace periods that the grace-period thread, short
//!   of CPU, could not run, and were OOM-killed in 3 runs of 3 although a
//!   pressure source had put the domain in fast mode.
//!
//! Both waits are bounded, so a worker or a reader stuck on a lock the
//! retiring thread holds costs it a delay, never a deadlock.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::{add, Callbacks};
use crate::gp::GracePeriods;
use crate::policy;
use crate::sync::lock;

impl Callbacks {
    /// Back-pressure on a thread that has just handed shard `cpu` a full
    /// page, when the domain does not let retiring threads free
    /// (`retiring_thread_frees`), outside callbacks and reclaim: while the
    /// shard holds more than `policy::THROTTLE_PAGES` pages whose grace
    /// period has elapsed, wake its worker and give it the CPU, for at most
    /// `policy::THROTTLE_MAX_WAIT`. Threads that retire faster than one
    /// worker frees would otherwise grow the backlog without bound (two
    /// updating threads on two cores: 810 MiB in 2 s). Only ready pages
    /// count: freeing them waits for no read-side section, so this works
    /// inside one too. The thread runs no destructor and holds no lock
    /// here, and the wait is bounded, so a worker stuck on a lock the
    /// thread holds costs a delay, never a deadlock.
    pub(crate) fn throttle_producer(&self, gp: &GracePeriods, cpu: usize) {
        let shard = &self.shards[cpu];
        if shard.count.load(Ordering::Relaxed) <= policy::THROTTLE_PAGES * 255 {
            return;
        }
        let ready = || lock(&shard.state).ready_pages(gp.seq(), policy::THROTTLE_PAGES + 1);
        if !policy::throttles(ready()) {
            return;
        }
        if self.pages_left_to_producer(&lock(&shard.state), cpu) {
            // They are left to this thread, which frees plain pages itself
            // (the worker would leave them to it): its drain takes
            // `DRAIN_STEP_HURRY` objects per retire while the backlog is
            // this large, so it shrinks without a pause here (freeing a
            // throttle's worth at once kept the caller's read-side section
            // open for milliseconds).
            return;
        }
        add(&self.counters.throttles, 1);
        self.workers.wake(self.worker_group(cpu));
        let start = Instant::now();
        while start.elapsed() < policy::THROTTLE_MAX_WAIT {
            std::thread::yield_now();
            if policy::throttle_done(ready()) {
                break;
            }
        }
    }

    /// Bytes on the shards: waiting for a grace period, or ready to free
    /// (what threads still buffer in their pages is not counted; under
    /// pressure the grace-period thread takes those at once).
    fn shard_bytes(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.bytes.load(Ordering::Relaxed))
            .sum()
    }

    /// The pressure throttle (see the module docs), for a thread that has
    /// just handed off a page, outside read-side sections of this domain,
    /// callbacks and reclaim: while a pressure signal is held and the
    /// shards hold more than `pressure_throttle_bytes`, it moves grace
    /// periods on (`try_advance`, which never waits), wakes the workers of
    /// shards with ready pages and naps, until they hold half that or
    /// `pressure_throttle_max_wait` has passed (10 ms; 100 ms when it
    /// started over twice the throttle's bytes). `kick` wakes the
    /// grace-period thread (which expedites in fast mode).
    #[cfg(not(loom))]
    pub(crate) fn throttle_under_pressure(&self, gp: &GracePeriods, kick: &dyn Fn()) {
        let signals = || self.pressure.total();
        let bytes = self.shard_bytes();
        if !policy::pressure_throttles(&self.params, signals(), bytes) {
            return;
        }
        let max_wait = policy::pressure_throttle_max_wait(&self.params, bytes);
        add(&self.counters.pressure_throttles, 1);
        let target = gp.snapshot();
        let start = Instant::now();
        kick();
        loop {
            gp.try_advance(target);
            for cpu in 0..self.shards.len() {
                if self.worker_has_pages(gp, cpu) {
                    self.wake_worker(cpu);
                }
            }
            std::thread::sleep(policy::PRESSURE_THROTTLE_NAP);
            if policy::pressure_throttle_done(&self.params, signals(), self.shard_bytes())
                || start.elapsed() >= max_wait
            {
                break;
            }
        }
        add(
            &self.counters.pressure_throttle_us,
            usize::try_from(start.elapsed().as_micros()).unwrap_or(usize::MAX),
        );
    }
}
