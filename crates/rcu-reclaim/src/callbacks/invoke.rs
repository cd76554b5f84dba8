//! Running what is ready: a shard's ready callbacks and pages, on a
//! worker, a barrier's thread, a reclaimer or a thread at its safe point.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::segcblist::Entry;
use super::shard::{InvokeLists, RunnerMark, ShardState};
use super::{add, Callbacks, Collected, IN_CALLBACK};
use crate::clock::epoch_ms;
use crate::gp::GracePeriods;
use crate::policy;
use crate::sync::{catch_panic, lock, run_each_caught, try_lock};

impl Callbacks {
    /// Runs up to `limit` ready callbacks of shard `cpu` on this thread, and
    /// drops its ready pages. Returns (callbacks and objects run, bytes).
    pub(crate) fn invoke_ready(
        &self,
        gp: &GracePeriods,
        cpu: usize,
        limit: Option<usize>,
    ) -> (usize, usize) {
        // After a fork the domain was not prepared for, a worker of the
        // parent may have held it: panic, naming the fix, rather than hang.
        // A runner stuck in one callback (one that waits for this thread,
        // say) is reported rather than waited for in silence.
        let mut lists = gp.lock_after_fork_reporting(
            &self.shards[cpu].invoke,
            "running callbacks",
            "a shard's run lock",
            |waited| self.report_runner_waited_for(gp, cpu, waited),
        );
        self.invoke_locked(&mut lists, gp, cpu, limit, usize::MAX)
    }

    /// Says that a wait for shard `cpu`'s runner (a `barrier`, a
    /// `run_callbacks`, a last handle's drop) has lasted `waited`, naming
    /// the thread running it.
    #[cold]
    #[inline(never)]
    fn report_runner_waited_for(&self, gp: &GracePeriods, cpu: usize, waited: Duration) {
        let runner = &self.shards[cpu].runner;
        let tid = runner.tid.load(Ordering::Relaxed);
        let who = if runner.running.load(Ordering::Relaxed) && tid != 0 {
            match crate::sys::thread_name(tid) {
                Some(name) => format!("thread {name} (tid {tid})"),
                None => format!("thread {tid}"),
            }
        } else {
            "another thread".to_string()
        };
        /// At most a line a second on standard error: with a tiny
        /// `stall_timeout`, a storm of barriers would each say it.
        static LOUD: crate::sys::LoudThrottle = crate::sys::LoudThrottle::new();
        let msg = format!(
            "rcu-reclaim: a wait for the callbacks of domain {} (barrier(), run_callbacks(), or \
             the drop of the domain's last handle) has waited {waited:?} for an RCU callback or \
             deferred Drop still running on {who}, and goes on waiting until it returns. If \
             that callback waits for this thread (a lock it holds, a message it would send \
             after this call, a thread it joins), neither ever returns: a callback or deferred \
             Drop must not wait for a thread that waits for callbacks",
            gp.id()
        );
        // A domain's last handle's drop waits here too, maybe while its
        // thread unwinds: a `tracing` subscriber's panic must not leave.
        crate::sync::report_caught(|| LOUD.warn_loud(&msg));
    }

    /// As `invoke_ready(.., None)`, but skips a shard someone is running
    /// (`None`): reclaim never waits for a worker, and a callback that calls
    /// `run_callbacks` does not deadlock on its own shard.
    pub(crate) fn try_invoke_ready(&self, gp: &GracePeriods, cpu: usize) -> Option<(usize, usize)> {
        let mut lists = try_lock(&self.shards[cpu].invoke)?;
        Some(self.invoke_locked(&mut lists, gp, cpu, None, usize::MAX))
    }

    /// A safe point of the calling thread (`Rcu::collect`): drives the
    /// grace period the shard's oldest entry waits for (`try_advance`,
    /// which never waits) and runs what shard `cpu` has ready, here — up to
    /// `policy::COLLECT_PAGES` pages and as many callbacks as a worker's
    /// batch — unless nothing waits (a lock-free look) or someone else is
    /// running the shard. Marks the shard as freed by its own thread, so
    /// pages handed to it are left to that thread for `producer_window`
    /// rather than woken a worker for.
    ///
    /// `plain_only` (an online QSBR thread): it frees only ready pages of
    /// values that drop anywhere, as a retire's drain does, and leaves
    /// callbacks and other destructors to the workers: those may wait for
    /// a grace period, which on an online thread waits for itself (it
    /// panicked, and the callback's work was lost). The shard is not
    /// marked as freed by this thread then.
    pub(crate) fn collect(
        &self,
        gp: &GracePeriods,
        cpu: usize,
        tick: u32,
        plain_only: bool,
    ) -> Collected {
        let shard = &self.shards[cpu];
        // This shard's garbage is freed here from now on. The clock is
        // read on the thread's first call and every `COLLECT_MARK_EVERY`th
        // after, and the line written only when the millisecond changed.
        if !plain_only && tick % policy::COLLECT_MARK_EVERY == 0 {
            let now = epoch_ms();
            if shard.collected_ms.load(Ordering::Relaxed) != now {
                shard.collected_ms.store(now, Ordering::Relaxed);
            }
        }
        let at = shard.ready_at.load(Ordering::Relaxed);
        if at == u64::MAX {
            return Collected::Ran(0);
        }
        if !gp.done(at) {
            // Drive the grace period the oldest entry waits for (never
            // waits: completes the one in progress if its readers have
            // moved on, and starts the next if still needed), on every
            // `COLLECT_ADVANCE_EVERY`th call: each try takes `gp_lock` and
            // scans the readers.
            if tick % policy::COLLECT_ADVANCE_EVERY != 0 {
                return Collected::Ran(0);
            }
            if !gp.try_advance(at) {
                return Collected::Waiting;
            }
        }
        let Some(mut lists) = try_lock(&shard.invoke) else {
            return Collected::Ran(0);
        };
        if plain_only {
            {
                let mut st = lock(&shard.state);
                let seq = gp.seq();
                while lists.pages.len() < policy::COLLECT_PAGES {
                    let Some(page) = st.take_ready_plain(seq) else {
                        break;
                    };
                    lists.pages.push(page);
                }
                shard.publish(&st);
            }
            return Collected::Ran(self.run_entries(cpu, &mut lists).0);
        }
        Collected::Ran(
            self.invoke_locked(&mut lists, gp, cpu, None, policy::COLLECT_PAGES)
                .0,
        )
    }

    /// The body of `invoke_ready`; the caller holds the shard's `invoke`
    /// lock, which holds `lists`.
    pub(super) fn invoke_locked(
        &self,
        lists: &mut InvokeLists,
        gp: &GracePeriods,
        cpu: usize,
        limit: Option<usize>,
        max_pages: usize,
    ) -> (usize, usize) {
        let shard = &self.shards[cpu];
        let fast = self.pressure.on_node(self.topology.node_of(cpu));
        {
            let mut st = lock(&shard.state);
            let seq = gp.seq();
            st.list.advance(seq);
            let unlimited = st.overloaded || fast;
            let max_pages = policy::batch_pages(limit, unlimited, max_pages);
            let limit = policy::batch_limit(&self.params, limit, unlimited, st.list.len());
            st.list.take_done(limit, &mut lists.batch);
            st.take_ready_pages(seq, max_pages, &mut lists.pages);
            if st.overloaded && policy::shard_overload_ends(&self.params, st.totals().0) {
                st.overloaded = false;
            }
            shard.publish(&st);
        }
        self.run_entries(cpu, lists)
    }

    /// Frees up to `max_pages` pages of shard `cpu` whose grace period has
    /// completed, on the calling thread (the kernel frees such pages
    /// directly, without a callback). Called by `defer_drop` after handing
    /// off a full page where the domain opts in (`retiring_thread_frees`),
    /// so a thread that produces garbage also frees what is ready, on the
    /// core that allocated it. (By default a thread frees only values that
    /// drop anywhere, in steps: `drain.rs`.) If a worker, a barrier or
    /// another thread is running the shard, wakes the node's worker
    /// instead: the holder may be a thread preempted in the middle of its
    /// own inline free, and ready pages left to threads that keep failing
    /// here piled up to 93 MiB in a 2-second run (2 threads on 2 cores).
    pub(crate) fn free_ready_pages(&self, gp: &GracePeriods, cpu: usize, max_pages: usize) {
        let shard = &self.shards[cpu];
        let Some(mut lists) = try_lock(&shard.invoke) else {
            self.workers.wake(self.worker_group(cpu));
            return;
        };
        {
            let mut st = lock(&shard.state);
            st.take_ready_pages(gp.seq(), max_pages, &mut lists.pages);
            if lists.pages.is_empty() {
                return;
            }
            shard.publish(&st);
        }
        self.run_entries(cpu, &mut lists);
    }

    /// Runs callbacks and drops pages taken from shard `cpu` (whose `invoke`
    /// lock the caller holds), leaving `lists` empty for the next batch,
    /// and marks its progress on the shard's `runner`. Returns (callbacks
    /// and objects run, bytes).
    pub(super) fn run_entries(&self, cpu: usize, lists: &mut InvokeLists) -> (usize, usize) {
        let shard = &self.shards[cpu];
        self.run_entries_marked(cpu, lists, &shard.runner, &shard.running_bytes)
    }

    /// `run_entries`, marking progress on `mark` and counting what it
    /// frees in `running` until freed.
    fn run_entries_marked(
        &self,
        cpu: usize,
        lists: &mut InvokeLists,
        mark: &RunnerMark,
        running: &AtomicUsize,
    ) -> (usize, usize) {
        let (mut n, mut bytes, mut panics) = (0, 0, 0);
        // Counted as running until freed (see `Shard::running_bytes`): by
        // the batch once it has run, by each page once it is dropped.
        let batch_bytes: usize = lists.batch.iter().map(|e| e.bytes).sum();
        let page_bytes: usize = lists.pages.iter().map(|p| p.bytes()).sum();
        running.fetch_add(batch_bytes + page_bytes, Ordering::Relaxed);
        let was = IN_CALLBACK.with(|c| c.replace(true));
        mark.start();
        panics += run_each_caught(
            lists.batch.drain(..),
            |e| {
                mark.bump();
                n += e.count();
                bytes += e.bytes;
                (e.f)();
            },
            |msg| self.report_panic(msg),
        );
        running.fetch_sub(batch_bytes, Ordering::Relaxed);
        for mut page in lists.pages.drain(..) {
            let page_bytes = page.bytes();
            n += page.len();
            bytes += page_bytes;
            panics += page.drop_objects_with(|| mark.bump(), &mut |msg| self.report_panic(msg));
            running.fetch_sub(page_bytes, Ordering::Relaxed);
            add(&self.counters.pages_freed, 1);
            self.recycle(cpu, page);
        }
        mark.running.store(false, Ordering::Relaxed);
        lists.trim();
        IN_CALLBACK.with(|c| c.set(was));
        add(&self.counters.invoked, n);
        add(&self.counters.bytes_freed, bytes);
        add(&self.counters.panics, panics);
        (n, bytes)
    }

    /// Reports a caught panic of a callback or deferred drop (`msg`: its
    /// message, from [`catch_panic`]).
    pub(crate) fn report_panic(&self, msg: Option<String>) {
        let msg = msg.unwrap_or_else(|| "<non-string panic payload>".to_string());
        // Neither a panicking hook nor a panicking `tracing` subscriber (the
        // program's code too) may unwind out of the batch: the callbacks
        // after this one were dropped unrun, and the thread was left marked
        // as running a callback (a later `barrier` on it refused, naming a
        // callback it was not in).
        crate::sync::report_caught(|| {
            tracing::error!(panic = %msg, "rcu-reclaim: an RCU callback panicked; the remaining callbacks still run");
        });
        if let Some(hook) = &self.panic_hook {
            if catch_panic(|| hook(&msg)).is_err() {
                crate::sync::report_caught(|| {
                    tracing::error!("rcu-reclaim: the on_callback_panic hook itself panicked");
                });
            }
        }
    }

    /// Runs `drop` (a deferred drop the caller's thread runs itself, after
    /// a grace period it waited for) as a one-entry batch of `run_entries`:
    /// counted as invoked, a panic reported as any callback's is. It runs
    /// beside the shard's runner (without its `invoke` lock), so it marks
    /// its progress on a mark of its own, not on the runner's, and its
    /// bytes, never on a shard (as `RcuCell::store_sync`'s), are not
    /// counted in the shard's `running_bytes` either: no waiting thread
    /// sees that mark, so a drop stuck on a lock a thread retiring over a
    /// garbage bound holds kept it waiting its full second at every
    /// hand-off, where a runner stuck so is given up on
    /// (`Callbacks::runner_stuck`).
    pub(crate) fn run_inline(&self, bytes: usize, drop: impl FnOnce() + Send + 'static) {
        let mut lists = InvokeLists {
            batch: vec![Entry::call(Box::new(drop), bytes)],
            pages: Vec::new(),
        };
        self.run_entries_marked(
            self.current_shard(),
            &mut lists,
            &RunnerMark::default(),
            &AtomicUsize::new(0),
        );
    }

    /// Whether shard `cpu` has work for its worker: ready callbacks, or
    /// ready pages that are not left to the thread that frees its own
    /// (within `producer_window` of its last hand-off, unless pressured; as
    /// `after_gp` decides).
    pub(crate) fn has_ready(&self, gp: &GracePeriods, cpu: usize) -> bool {
        let seq = gp.seq();
        let mut st = lock(&self.shards[cpu].state);
        st.list.advance(seq);
        st.list.done_len() > 0 || self.pages_for_worker(&st, cpu, seq)
    }

    /// Whether the shard has ready pages that are not left to its producer.
    pub(super) fn pages_for_worker(&self, st: &ShardState, cpu: usize, seq: u64) -> bool {
        st.pages_ready(seq) && !self.pages_left_to_producer(st, cpu)
    }

    /// Whether the shard's ready pages are left to the thread handing it
    /// pages (it frees its own: `retiring_thread_frees` or `Rcu::collect`)
    /// for now: within `producer_window` of its last hand-off, and no
    /// pressure on the shard's node.
    pub(super) fn pages_left_to_producer(&self, st: &ShardState, cpu: usize) -> bool {
        !self.pressure.on_node(self.topology.node_of(cpu))
            && st
                .left_to_producer(crate::clock::now(), self.params.producer_window)
                .is_some()
    }

    /// As `invoke_ready`, for the shard's worker: pages left to their
    /// producer (see `has_ready`) stay for it; a worker running anyway
    /// (woken for callbacks, or for another shard) does not take them.
    pub(crate) fn invoke_for_worker(
        &self,
        gp: &GracePeriods,
        cpu: usize,
        limit: Option<usize>,
    ) -> (usize, usize) {
        let mut lists = lock(&self.shards[cpu].invoke);
        let max_pages = if self.pages_left_to_producer(&lock(&self.shards[cpu].state), cpu) {
            0
        } else {
            usize::MAX
        };
        self.invoke_locked(&mut lists, gp, cpu, limit, max_pages)
    }

    /// Whether a runner (a worker, or a thread running a barrier or
    /// reclaim) has spent `policy::WORKER_STUCK_MS` or more on one
    /// callback, or one page of destructors, of any shard: a throttled
    /// thread waiting for it stops waiting (it may hold the lock that item
    /// waits for).
    pub(crate) fn runner_stuck(&self) -> bool {
        self.runner_stuck_for(policy::WORKER_STUCK_MS)
    }

    /// As [`runner_stuck`](Self::runner_stuck), on one item for
    /// `patience_ms` or more.
    pub(crate) fn runner_stuck_for(&self, patience_ms: usize) -> bool {
        let now = epoch_ms();
        self.shards.iter().any(|s| s.runner.stuck(now, patience_ms))
    }
}
