//! A budget whose reclaim "succeeds" by the bytes its shrinkers book while
//! usage does not fall (a shrinker claims more than it frees) gives up with
//! one out-of-memory event instead of reclaiming forever.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use rcu_reclaim::reclaim::{MemoryBudget, Reclaimer, Scanned, ShrinkControl, Shrinker};
use rcu_reclaim::{Config, Rcu};

const MIB: usize = 1 << 20;

/// Runs `f` on a thread and fails the test if it has not returned in `secs`.
fn within<R: Send + 'static>(secs: u64, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(secs))
        .expect("hung: the budget reclaimed forever")
}

/// Always has objects (enough to be scanned from priority 12 on), claims
/// a GiB per batch, frees nothing.
struct Boaster;

impl Shrinker for Boaster {
    fn count(&self, _: &ShrinkControl) -> usize {
        1 << 20
    }
    fn scan(&self, ctl: &mut ShrinkControl) -> Scanned {
        Scanned {
            freed: ctl.nr_to_scan(),
            bytes: 1 << 30,
        }
    }
}

/// Honest: `used` is what it holds, in 64 KiB objects.
struct Honest(Arc<AtomicUsize>);

impl Shrinker for Honest {
    fn count(&self, _: &ShrinkControl) -> usize {
        self.0.load(Ordering::SeqCst) / (64 << 10)
    }
    fn scan(&self, ctl: &mut ShrinkControl) -> Scanned {
        common::free_units(&self.0, 64 << 10, ctl)
    }
}

#[test]
fn a_shrinker_claiming_bytes_it_never_frees_ends_in_one_oom() {
    within(30, || {
        let rcu = Rcu::new(Config::new().on_demand()).unwrap();
        let r = Arc::new(Reclaimer::new(&rcu));
        r.register(Arc::new(Boaster));
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        r.set_oom_handler(move |_| {
            c.fetch_add(1, Ordering::SeqCst);
        });
        // Usage stays at the limit whatever reclaim does.
        let budget = MemoryBudget::new(16 * MIB, r.clone(), || 16 * MIB);
        assert!(!budget.check(), "out of memory: usage never fell");
        let st = budget.stats();
        assert_eq!(st.direct_reclaims, 1);
        assert_eq!(st.ooms, 1);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(r.stats().ooms, 1);
        drop(budget);
    });
}

/// A 16 MiB budget over the bytes in `used` (0 to start with), whose
/// reclaimer (out-of-memory events ignored) asks the boaster first, then,
/// with `honest`, a cache that really holds `used`.
fn boasted_budget(honest: bool) -> (Arc<Reclaimer>, Arc<AtomicUsize>, MemoryBudget) {
    let rcu = Rcu::new(Config::new().on_demand()).unwrap();
    let r = Arc::new(Reclaimer::new(&rcu));
    r.set_oom_handler(|_| {});
    r.register(Arc::new(Boaster));
    let used = Arc::new(AtomicUsize::new(0));
    if honest {
        r.register(Arc::new(Honest(used.clone())));
    }
    let u = used.clone();
    let budget = MemoryBudget::new(16 * MIB, r.clone(), move || u.load(Ordering::SeqCst));
    (r, used, budget)
}

#[test]
fn an_over_claiming_shrinker_does_not_starve_an_honest_one() {
    within(30, || {
        // The boaster is asked first, and meets every step on paper.
        let (_, used, budget) = boasted_budget(true);
        used.store(16 * MIB, Ordering::SeqCst);
        assert!(budget.check(), "the honest cache could free enough");
        assert!(used.load(Ordering::SeqCst) <= budget.watermarks().high);
        assert_eq!(budget.stats().ooms, 0);
    });
}

#[test]
fn dropping_a_budget_whose_background_reclaim_makes_no_progress_returns() {
    within(30, || {
        let (r, used, budget) = boasted_budget(false);
        // Over `low`, under `min`: only the background reclaimer works.
        used.store(budget.watermarks().low + MIB / 2, Ordering::SeqCst);
        assert!(budget.check());
        // Wait for the background reclaimer to start its run (a fixed
        // 200 ms sleep was sometimes too short for a loaded machine to
        // schedule it); the drop then joins it once it gives up.
        let start = std::time::Instant::now();
        while budget.stats().background_runs == 0 {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the background reclaimer never ran"
            );
            thread::sleep(Duration::from_millis(1));
        }
        drop(budget);
        assert!(r.stats().ooms >= 1, "the background reclaim gave up");
    });
}
