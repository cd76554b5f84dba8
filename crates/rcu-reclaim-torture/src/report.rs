//! The verdict of a torture run, printed in the kernel's rcutorture format.

use std::fmt;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Serialize;

use crate::lock;
use rcu_reclaim::stats::Stats;
use rcu_reclaim::Flavor;

use super::{Fault, Shared, TortureConfig, UpdateMode, PIPE_LEN};

/// A snapshot taken about once a second while a torture runs
/// (see [`run_with_progress`](super::run_with_progress)).
///
/// ```
/// use std::time::Duration;
/// let mut c = rcu_reclaim_torture::TortureConfig::new();
/// c.duration = Duration::from_millis(1100);
/// let mut last = None;
/// rcu_reclaim_torture::run_with_progress(&c, |p| last = Some(p.clone())).unwrap();
/// assert!(last.unwrap().elapsed >= Duration::from_secs(1));
/// ```
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct Progress {
    /// Time since the threads started.
    #[serde(serialize_with = "secs")]
    pub elapsed: Duration,
    /// Reads so far (counted in batches of 1024).
    pub reads: u64,
    /// Element replacements so far.
    pub updates: u64,
    /// Grace periods completed so far.
    pub grace_periods: u64,
}

impl Progress {
    pub(crate) fn now(sh: &Shared, elapsed: Duration) -> Progress {
        Progress {
            elapsed,
            reads: sh.reads_progress.load(Ordering::Relaxed),
            updates: sh.updates(),
            grace_periods: sh.rcu.completed_grace_periods(),
        }
    }
}

impl Shared {
    fn updates(&self) -> u64 {
        let u = &self.counters.updates;
        u.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

/// What a torture run saw, and its verdict: [`success`](Self::success) when
/// [`failures`](Self::failures) is empty. `Display` prints the kernel's
/// rcutorture lines ("Reader Pipe", "Reader Batch", "Free-Block
/// Circulation") and ends with `End of test: SUCCESS` or `FAILURE`;
/// serde serializes every field.
///
/// ```
/// use std::time::Duration;
/// let mut c = rcu_reclaim_torture::TortureConfig::new();
/// c.duration = Duration::from_millis(200);
/// let report = rcu_reclaim_torture::run(&c).unwrap();
/// assert!(report.to_string().ends_with("End of test: SUCCESS\n"));
/// assert_eq!(report.reader_pipe[2..].iter().sum::<u64>(), 0);
/// ```
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct TortureReport {
    /// The configuration that ran.
    pub config: TortureConfig,
    /// The flavor the domain got.
    pub flavor: Flavor,
    /// How long readers and writers ran.
    #[serde(serialize_with = "secs")]
    pub elapsed: Duration,
    /// Read-side sections that loaded and checked an element.
    pub reads: u64,
    /// Reads by the pipe stage of the element they saw (0: current,
    /// 1: retired, no grace period yet; more: a failure).
    pub reader_pipe: [u64; PIPE_LEN + 1],
    /// Reads by the grace periods that completed during them (0 or 1; more:
    /// a failure).
    pub reader_batch: [u64; PIPE_LEN + 1],
    /// Retired elements that reached each pipe stage (the last stage frees).
    pub free_block_circulation: [u64; PIPE_LEN + 1],
    /// Element replacements, by update mode.
    pub updates: Vec<(UpdateMode, u64)>,
    /// Elements in the ring.
    pub pool: usize,
    /// Replacements skipped because every element was in a pipe.
    pub alloc_failures: u64,
    /// Reads that found an element not fully initialised or already freed.
    pub mb_errors: u64,
    /// Elements freed twice, advanced after being freed, or reused in use.
    pub circulation_errors: u64,
    /// Elements that never came back to the freelist after the final barriers.
    pub elements_not_returned: u64,
    /// Barrier rounds run.
    pub barrier_rounds: u64,
    /// Rounds in which `barrier()` returned before a callback queued before it ran.
    pub barrier_errors: u64,
    /// Callbacks and deferred drops the torture queued.
    pub callbacks_queued: u64,
    /// Of those, run (each counted once, checked by id checksum).
    pub callbacks_run: u64,
    /// Runs that came before a grace period had elapsed since queueing.
    pub callbacks_early: u64,
    /// Flood bursts queued.
    pub floods: u64,
    /// Pressure signals raised and dropped.
    pub flaps: u64,
    /// Times the garbage bound's usage went near its mark and back
    /// (`TortureConfig::garbage_bound`).
    pub bound_flips: u64,
    /// Short-lived reader threads run.
    pub churned_threads: u64,
    /// Threads that exited right after queueing callbacks.
    pub exited_with_callbacks: u64,
    /// Reader stalls past the stall timeout injected.
    pub stall_episodes: u64,
    /// Panicking callbacks injected.
    pub panics_injected: u64,
    /// Times the domain's `on_callback_panic` hook ran.
    pub panic_hook_calls: u64,
    /// Bulk-page allocations failed on purpose.
    pub page_alloc_failures: u64,
    /// The domain's counters at the end.
    pub stats: Stats,
    /// Why the run failed; empty on success.
    pub failures: Vec<String>,
}

impl TortureReport {
    /// Whether the run found nothing wrong.
    ///
    /// ```
    /// let mut c = rcu_reclaim_torture::TortureConfig::new();
    /// c.duration = std::time::Duration::from_millis(100);
    /// assert!(rcu_reclaim_torture::run(&c).unwrap().success());
    /// ```
    pub fn success(&self) -> bool {
        self.failures.is_empty()
    }

    /// Reads per second.
    ///
    /// ```
    /// let mut c = rcu_reclaim_torture::TortureConfig::new();
    /// c.duration = std::time::Duration::from_millis(100);
    /// assert!(rcu_reclaim_torture::run(&c).unwrap().reads_per_sec() > 0.0);
    /// ```
    pub fn reads_per_sec(&self) -> f64 {
        self.reads as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub(crate) fn judge(
        sh: &Shared,
        stats: Stats,
        elapsed: Duration,
        drained: bool,
        thread_panics: Vec<String>,
    ) -> TortureReport {
        let reads = *lock(&sh.reads);
        let c = &sh.counters;
        let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let ring = &sh.ring;
        let mut r = TortureReport {
            config: sh.cfg.clone(),
            flavor: sh.rcu.flavor(),
            elapsed,
            reads: reads.reads(),
            reader_pipe: reads.pipe,
            reader_batch: reads.batch,
            free_block_circulation: ring.circulation(),
            updates: UpdateMode::ALL
                .into_iter()
                .map(|m| (m, get(&c.updates[m as usize])))
                .collect(),
            pool: ring.size(),
            alloc_failures: get(&ring.alloc_failures),
            mb_errors: reads.mb_errors,
            circulation_errors: get(&ring.circulation_errors),
            elements_not_returned: (ring.size() - 1 - ring.free_count()) as u64,
            barrier_rounds: get(&c.barrier_rounds),
            barrier_errors: get(&c.barrier_errors),
            callbacks_queued: get(&sh.ledger.queued),
            callbacks_run: get(&sh.ledger.run),
            callbacks_early: get(&sh.ledger.early),
            floods: get(&c.floods),
            flaps: get(&c.flaps),
            bound_flips: get(&c.bound_flips),
            churned_threads: get(&c.churned),
            exited_with_callbacks: get(&c.exited_with_callbacks),
            stall_episodes: get(&c.stall_episodes),
            panics_injected: get(&c.panics_injected),
            panic_hook_calls: get(&sh.hook_calls),
            page_alloc_failures: sh.pages.as_ref().map_or(0, |p| get(&p.failures)),
            stats,
            failures: thread_panics,
        };
        r.find_failures(drained && sh.ledger.settled());
        r
    }

    fn find_failures(&mut self, settled: bool) {
        let mut f = Vec::new();
        let beyond = |h: &[u64; PIPE_LEN + 1]| h[2..].iter().sum::<u64>();
        if beyond(&self.reader_pipe) > 0 {
            f.push(format!(
                "{} reads saw an element two or more grace periods after its removal (Reader Pipe)",
                beyond(&self.reader_pipe)
            ));
        }
        if beyond(&self.reader_batch) > 0 {
            f.push(format!(
                "{} reads lasted across two or more complete grace periods (Reader Batch)",
                beyond(&self.reader_batch)
            ));
        }
        let counts = [
            (
                self.mb_errors,
                "reads found an element not fully initialised or freed",
            ),
            (
                self.barrier_errors,
                "barrier() calls returned before callbacks queued earlier had run",
            ),
            (
                self.circulation_errors,
                "elements were freed twice or reused while in use",
            ),
            (
                self.elements_not_returned,
                "elements never came back to the freelist",
            ),
            (
                self.callbacks_early,
                "callbacks ran before a grace period had elapsed",
            ),
        ];
        for (n, what) in counts {
            if n > 0 {
                f.push(format!("{n} {what}"));
            }
        }
        let (q, run) = (self.callbacks_queued, self.callbacks_run);
        if q > run {
            f.push(format!("{} of {q} callbacks never ran", q - run));
        } else if run > q {
            f.push(format!(
                "{} callbacks ran more than once ({run} runs of {q})",
                run - q
            ));
        } else if !settled {
            f.push("the ids of the callbacks that ran do not match those queued".into());
        }
        let circ = &self.free_block_circulation;
        if self.elements_not_returned == 0 && circ[0] != circ[PIPE_LEN - 1] {
            f.push(format!(
                "{} elements were retired but {} freed",
                circ[0],
                circ[PIPE_LEN - 1]
            ));
        }
        if self.reads == 0 || self.updates.iter().all(|&(_, n)| n == 0) {
            f.push(
                "the run did no reads or no updates (too short, or the threads were starved): \
                 run it longer (`--duration`) or with fewer threads than CPUs \
                 (`--readers`, `--writers`)"
                    .into(),
            );
        }
        self.check_faults(&mut f);
        self.failures.extend(f);
    }

    /// Each option and fault must have been exercised and handled.
    fn check_faults(&self, f: &mut Vec<String>) {
        let s = &self.stats;
        let cfg = &self.config;
        if cfg.has(Fault::CallbackPanic) {
            if self.panics_injected == 0 {
                f.push("no callback panic was injected".into());
            }
            if self.panics_injected > 0 && self.panic_hook_calls == 0 {
                f.push("the on_callback_panic hook never ran".into());
            }
        }
        if s.callback_panics != self.panics_injected {
            f.push(format!(
                "{} callback panics were injected but the domain counted {}",
                self.panics_injected, s.callback_panics
            ));
        }
        if cfg.has(Fault::PageAllocFailure) {
            if self.page_alloc_failures == 0 {
                f.push("no page allocation was failed".into());
            } else if s.fallback_syncs != self.page_alloc_failures {
                f.push(format!(
                    "{} page allocations failed but defer_drop and call fell back {} times",
                    self.page_alloc_failures, s.fallback_syncs
                ));
            }
        }
        if cfg.has(Fault::ExitingThreads) && self.exited_with_callbacks == 0 {
            f.push("no thread exited with queued callbacks".into());
        }
        if cfg.has(Fault::ReaderStall) {
            if self.stall_episodes == 0 {
                f.push("no reader stall was injected (run too short)".into());
            } else if s.stalls_reported == 0 {
                f.push(format!(
                    "{} readers stalled past the stall timeout but no stall was reported",
                    self.stall_episodes
                ));
            }
        }
        if self.floods > 0 && s.overload_events == 0 {
            f.push(format!(
                "{} floods never took a shard past qhimark",
                self.floods
            ));
        }
        if self.flaps > 0 && s.fast_mode_entries == 0 {
            f.push(format!(
                "{} pressure signals never entered fast mode",
                self.flaps
            ));
        }
        if self.bound_flips >= BOUND_FLIPS_TO_JUDGE && s.headroom_waits == 0 {
            f.push(format!(
                "the garbage bound went near its mark {} times but no retire waited",
                self.bound_flips
            ));
        }
    }
}

/// Flips of the garbage bound after which a run in which no retire ever
/// waited fails (fewer: a run too short to judge).
const BOUND_FLIPS_TO_JUDGE: u64 = 10;

fn hist(h: &[u64; PIPE_LEN + 1]) -> String {
    h.iter().map(|n| format!(" {n}")).collect()
}

impl fmt::Display for TortureReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = "rcu-torture:";
        let cfg = &self.config;
        let s = &self.stats;
        let names = |v: Vec<&str>| {
            if v.is_empty() {
                "none".to_string()
            } else {
                v.join(",")
            }
        };
        let mut options = Vec::new();
        if cfg.flood {
            options.push(format!("flood(qhimark {})", cfg.qhimark));
        }
        if cfg.pressure_hz > 0.0 {
            options.push(format!("pressure {} Hz", cfg.pressure_hz));
        }
        if cfg.churn {
            options.push("churn".into());
        }
        if cfg.reader_stalls {
            options.push("reader-stalls".into());
        }
        if cfg.nodes > 0 {
            options.push(format!("topology {}x{}", cfg.nodes, cfg.cpus_per_node));
        }
        if cfg.busted {
            options.push("BUSTED".into());
        }
        writeln!(
            f,
            "{t} flavor {} readers {} writers {} duration {} modes {} options {} faults {}",
            self.flavor,
            cfg.readers,
            cfg.writers,
            seconds(self.elapsed),
            names(cfg.modes.iter().map(|m| m.name()).collect()),
            if options.is_empty() {
                "none".into()
            } else {
                options.join(",")
            },
            names(cfg.faults.iter().map(|x| x.name()).collect()),
        )?;
        let updates: u64 = self.updates.iter().map(|&(_, n)| n).sum();
        writeln!(
            f,
            "{t} ver: {updates} tfle: {} rta: {} rtaf: {} rtf: {} rtmbe: {} rtbe: {} barriers: {} gps: {}",
            u64::from(self.pool as u64 == 1 + self.elements_not_returned),
            updates + 1,
            self.alloc_failures,
            self.free_block_circulation[PIPE_LEN - 1],
            self.mb_errors,
            self.barrier_errors,
            self.barrier_rounds,
            s.gp_completed,
        )?;
        let bang = if self.success() { "" } else { "!!! " };
        writeln!(f, "{t} {bang}Reader Pipe: {}", hist(&self.reader_pipe))?;
        writeln!(f, "{t} Reader Batch: {}", hist(&self.reader_batch))?;
        writeln!(
            f,
            "{t} Free-Block Circulation: {}",
            hist(&self.free_block_circulation)
        )?;
        writeln!(
            f,
            "{t} reads {} ({:.3e}/s); updates {}; callbacks queued {} run {} early {}",
            self.reads,
            self.reads_per_sec(),
            self.updates
                .iter()
                .map(|(m, n)| format!("{m} {n}"))
                .collect::<Vec<_>>()
                .join(", "),
            self.callbacks_queued,
            self.callbacks_run,
            self.callbacks_early,
        )?;
        writeln!(
            f,
            "{t} grace periods {} (normal {}, expedited {}, fenced {}; readers switched to fences {} times); floods {} (overloads {}); flaps {} (fast-mode entries {}); churned threads {}",
            s.gp_completed, s.normal_gps, s.expedited_gps, s.fenced_gps, s.reader_fence_switches,
            self.floods, s.overload_events, self.flaps, s.fast_mode_entries, self.churned_threads,
        )?;
        if cfg.garbage_bound {
            writeln!(
                f,
                "{t} garbage bound: near its mark {} times; retires that waited {} ({} ms in all)",
                self.bound_flips,
                s.headroom_waits,
                s.headroom_wait_us / 1000,
            )?;
        }
        writeln!(
            f,
            "{t} faults: panics injected {} caught {} (hook {}); page allocations failed {} (fallbacks {}); exited with callbacks {}; stalls injected {} (reported {})",
            self.panics_injected, s.callback_panics, self.panic_hook_calls,
            self.page_alloc_failures, s.fallback_syncs, self.exited_with_callbacks,
            self.stall_episodes, s.stalls_reported,
        )?;
        for failure in &self.failures {
            writeln!(f, "{t} FAILURE: {failure}")?;
        }
        writeln!(
            f,
            "End of test: {}",
            if self.success() { "SUCCESS" } else { "FAILURE" }
        )
    }
}

/// A duration in JSON: seconds, as a number (serde's default is an object
/// of `secs` and `nanos`).
pub(crate) fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// A run's length for the header: tenths of a second, or hundredths under
/// a second (a run of `--duration 0.25` read "0.3s").
fn seconds(d: std::time::Duration) -> String {
    let s = d.as_secs_f64();
    if s < 1.0 {
        format!("{s:.2}s")
    } else {
        format!("{s:.1}s")
    }
}

#[cfg(test)]
mod tests {
    use super::seconds;
    use std::time::Duration;

    #[test]
    fn a_run_under_a_second_reads_in_hundredths() {
        assert_eq!(seconds(Duration::from_millis(250)), "0.25s");
        assert_eq!(seconds(Duration::from_millis(1250)), "1.2s");
        assert_eq!(seconds(Duration::from_secs(600)), "600.0s");
    }
}
