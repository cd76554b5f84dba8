//! rcu-reclaim as `bench` runs it (the backend itself is
//! [`crate::dcache::Ours`]): its engine's counters, and, under a budget, a
//! `MemoryBudget` and a `Reclaimer` with the table as shrinker, so that
//! pressure expedites grace periods and runs the callbacks (what the
//! "aware" side of `rcu-reclaim demo` does).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rcu_reclaim::reclaim::{MemoryBudget, Reclaimer};
use rcu_reclaim::Rcu;

use super::{Budget, Contender, PressureReport};
use crate::dcache::{Backend, Ours, OursQsbr, Table};

/// How often the grace-period probe looks whether its cookie completed.
const PROBE_POLL: Duration = Duration::from_micros(50);
/// The pause between two probes.
const PROBE_GAP: Duration = Duration::from_millis(1);

/// Measures, without asking for any, how long a grace period takes to
/// elapse from an arbitrary moment (what a version retired at that moment
/// waits for): takes a cookie, then polls it. Returns (total ns, probes).
fn probe_grace_periods(rcu: Rcu, stop: Arc<AtomicBool>) -> (u128, u64) {
    let (mut total, mut n) = (0u128, 0u64);
    while !stop.load(Ordering::Relaxed) {
        let cookie = rcu.get_state();
        let start = Instant::now();
        while !rcu.poll(&cookie) {
            if stop.load(Ordering::Relaxed) {
                return (total, n);
            }
            thread::sleep(PROBE_POLL);
        }
        total += start.elapsed().as_nanos();
        n += 1;
        thread::sleep(PROBE_GAP);
    }
    (total, n)
}

impl<const MODE: crate::dcache::Mode> Contender for Ours<MODE> {
    fn engine(&self) -> Option<super::engine::EngineSample> {
        Some(engine_sample(self.rcu()))
    }

    fn budget(
        table: &Arc<Table<Self>>,
        limit: usize,
        usage: Arc<dyn Fn() -> usize + Send + Sync>,
    ) -> Option<Budget> {
        budget(table, table.backend().rcu().clone(), limit, usage)
    }
}

impl Contender for OursQsbr {
    fn engine(&self) -> Option<super::engine::EngineSample> {
        Some(engine_sample(self.rcu()))
    }

    fn budget(
        table: &Arc<Table<Self>>,
        limit: usize,
        usage: Arc<dyn Fn() -> usize + Send + Sync>,
    ) -> Option<Budget> {
        budget(table, table.backend().rcu().clone(), limit, usage)
    }
}

fn engine_sample(rcu: &Rcu) -> super::engine::EngineSample {
    super::engine::EngineSample::take(&rcu.stats())
}

/// A `MemoryBudget` and a `Reclaimer` on `rcu` with the table as shrinker.
fn budget<B: Backend>(
    table: &Arc<Table<B>>,
    rcu: Rcu,
    limit: usize,
    usage: Arc<dyn Fn() -> usize + Send + Sync>,
) -> Option<Budget> {
    let reclaimer = Arc::new(Reclaimer::new(&rcu).rcu_loop(true));
    reclaimer.set_oom_handler(|_| {});
    let id = reclaimer.register(table.clone());
    let budget = Arc::new(MemoryBudget::new(limit, reclaimer.clone(), move || usage()));
    let stop = Arc::new(AtomicBool::new(false));
    let probe = {
        let (rcu, stop) = (rcu.clone(), stop.clone());
        thread::Builder::new()
            .name("bench-gp-probe".into())
            .spawn(move || probe_grace_periods(rcu, stop))
            .ok()?
    };
    let b = budget.clone();
    let check = Arc::new(move || {
        b.check();
    });
    let finish = Box::new(move || {
        stop.store(true, Ordering::Relaxed);
        let (total, probes) = probe.join().unwrap_or((0, 0));
        let (r, b) = (reclaimer.stats(), budget.stats());
        drop(budget);
        reclaimer.unregister(id);
        let s = rcu.stats();
        PressureReport {
            direct_reclaims: b.direct_reclaims,
            background_reclaims: b.background_runs,
            reclaim_passes: r.passes,
            rcu_waits: r.rcu_waits,
            grace_periods: s.gp_completed,
            expedited_grace_periods: s.expedited_gps,
            fast_mode_ms: s.fast_mode_ms,
            gp_wait_mean_ns: if probes > 0 {
                total as f64 / probes as f64
            } else {
                0.0
            },
            gp_wait_probes: probes,
        }
    });
    Some(Budget { check, finish })
}
