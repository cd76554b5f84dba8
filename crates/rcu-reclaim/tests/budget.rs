//! The memory budget: background reclaim between the watermarks, direct
//! reclaim over `min`, no recursion from allocations inside shrinkers.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rcu_reclaim::{
    Config, MemoryBudget, Rcu, Reclaimer, Scanned, ShrinkControl, Shrinker, Watermarks,
};

const MIB: usize = 1 << 20;
const UNIT: usize = 64 << 10;

/// A cache of `UNIT`-sized objects whose size is the "usage".
struct Cache {
    used: Arc<AtomicUsize>,
    budget: Mutex<Option<Arc<MemoryBudget>>>,
}

impl Shrinker for Cache {
    fn count(&self, _: &ShrinkControl) -> usize {
        self.used.load(Ordering::SeqCst) / UNIT
    }
    fn scan(&self, ctl: &mut ShrinkControl) -> Scanned {
        // An allocation inside a shrinker checks the budget: it must not
        // recurse into reclaim.
        if let Some(b) = self.budget.lock().unwrap().as_ref() {
            assert!(b.check());
        }
        let n = ctl.nr_to_scan().min(self.count(ctl));
        self.used.fetch_sub(n * UNIT, Ordering::SeqCst);
        Scanned {
            freed: n,
            bytes: n * UNIT,
        }
    }
}

fn setup(limit: usize) -> (Arc<AtomicUsize>, Arc<Cache>, Arc<MemoryBudget>, Rcu) {
    let rcu = Rcu::new(Config::new()).unwrap();
    let used = Arc::new(AtomicUsize::new(0));
    let cache = Arc::new(Cache {
        used: used.clone(),
        budget: Mutex::new(None),
    });
    let reclaimer = Arc::new(Reclaimer::new(&rcu));
    reclaimer.register(cache.clone());
    let u = used.clone();
    let budget = Arc::new(MemoryBudget::new(limit, reclaimer, move || {
        u.load(Ordering::SeqCst)
    }));
    (used, cache, budget, rcu)
}

#[test]
fn background_reclaim_wakes_at_low_and_stops_at_high() {
    let (used, _cache, budget, rcu) = setup(100 * MIB);
    let w = budget.watermarks();
    assert_eq!(w, Watermarks::from_limit(100 * MIB));
    used.store(w.low - UNIT, Ordering::SeqCst);
    assert!(budget.check());
    thread::sleep(Duration::from_millis(50));
    assert_eq!(budget.stats().background_runs, 0, "below low: nothing runs");

    used.store(w.low + 5 * MIB, Ordering::SeqCst);
    assert!(budget.check());
    let t = Instant::now();
    while used.load(Ordering::SeqCst) > w.high {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "background reclaim never ran"
        );
        thread::sleep(Duration::from_millis(1));
    }
    let after = used.load(Ordering::SeqCst);
    assert!(
        after + 10 * MIB > w.high,
        "stopped near high, not far below: {after}"
    );
    let s = budget.stats();
    assert!(s.background_runs >= 1 && s.direct_reclaims == 0, "{s:?}");
    assert!(
        rcu.stats().fast_mode_entries >= 1,
        "pressure raised while reclaiming"
    );
}

#[test]
fn over_min_the_checking_thread_reclaims_directly() {
    let (used, cache, budget, _rcu) = setup(100 * MIB);
    *cache.budget.lock().unwrap() = Some(budget.clone());
    let w = budget.watermarks();
    used.store(w.min + 2 * MIB, Ordering::SeqCst);
    assert!(budget.check());
    assert!(
        used.load(Ordering::SeqCst) <= w.high,
        "direct reclaim returned at high"
    );
    assert_eq!(budget.stats().direct_reclaims, 1);
    *cache.budget.lock().unwrap() = None;
}

#[test]
fn an_empty_cache_over_min_is_out_of_memory() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let reclaimer = Arc::new(Reclaimer::new(&rcu));
    reclaimer.set_oom_handler(|_| {});
    let budget = MemoryBudget::new(100, reclaimer, || 99);
    assert!(!budget.check());
    assert!(budget.stats().ooms >= 1);
}

#[test]
fn watermarks_must_be_ordered() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let r = Arc::new(Reclaimer::new(&rcu));
    let err = MemoryBudget::with_watermarks(
        100,
        Watermarks {
            min: 101,
            low: 50,
            high: 40,
        },
        r,
        || 0,
    )
    .unwrap_err();
    assert!(err.contains("min 101"), "{err}");
}
