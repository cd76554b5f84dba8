//! A shrinker, or the usage function, that panics once on the background
//! reclaimer's thread does not end background reclaim for the budget's
//! lifetime, and one that panics every time is looked at less and less
//! often (while a request still wakes the reclaimer at once).

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rcu_reclaim::reclaim::{MemoryBudget, Reclaimer, Scanned, ShrinkControl, Shrinker};
use rcu_reclaim::{Config, Rcu};

const MIB: usize = 1 << 20;
const UNIT: usize = 64 << 10;

/// Holds `used` bytes in `UNIT` objects; its first scan panics.
struct FlakyCache {
    used: Arc<AtomicUsize>,
    panicked: AtomicBool,
}

impl Shrinker for FlakyCache {
    fn count(&self, _: &ShrinkControl) -> usize {
        self.used.load(Ordering::SeqCst) / UNIT
    }
    fn scan(&self, ctl: &mut ShrinkControl) -> Scanned {
        if !self.panicked.swap(true, Ordering::SeqCst) {
            panic!("the first scan panics");
        }
        common::free_units(&self.used, UNIT, ctl)
    }
}

/// Puts `used` over the budget's `low` (under `min`: only the background
/// reclaimer works) and waits, 10 s at most, for it to reclaim to `high`.
fn background_reclaims_to_high(budget: &MemoryBudget, used: &AtomicUsize, after: &str) {
    let w = budget.watermarks();
    used.store(w.low + 2 * MIB, Ordering::SeqCst);
    let t = Instant::now();
    while used.load(Ordering::SeqCst) > w.high {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "background reclaim stopped after {after}: {:?}",
            budget.stats()
        );
        assert!(budget.check());
        thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn background_reclaim_outlives_a_panicking_shrinker() {
    let rcu = Rcu::new(Config::new().on_demand()).unwrap();
    let reclaimer = Arc::new(Reclaimer::new(&rcu));
    reclaimer.set_oom_handler(|_| {});
    let used = Arc::new(AtomicUsize::new(0));
    reclaimer.register(Arc::new(FlakyCache {
        used: used.clone(),
        panicked: AtomicBool::new(false),
    }));
    let u = used.clone();
    let budget = MemoryBudget::new(64 * MIB, reclaimer, move || u.load(Ordering::SeqCst));
    // Its first scan panics. It must go on reclaiming all the same.
    background_reclaims_to_high(&budget, &used, "a shrinker's panic");
}

/// Frees `used` in `UNIT` objects; never panics.
struct Cache(Arc<AtomicUsize>);

impl Shrinker for Cache {
    fn count(&self, _: &ShrinkControl) -> usize {
        self.0.load(Ordering::SeqCst) / UNIT
    }
    fn scan(&self, ctl: &mut ShrinkControl) -> Scanned {
        common::free_units(&self.0, UNIT, ctl)
    }
}

#[test]
fn background_reclaim_outlives_a_usage_function_that_panics_once() {
    let rcu = Rcu::new(Config::new().on_demand()).unwrap();
    let reclaimer = Arc::new(Reclaimer::new(&rcu));
    reclaimer.set_oom_handler(|_| {});
    let used = Arc::new(AtomicUsize::new(0));
    reclaimer.register(Arc::new(Cache(used.clone())));
    let u = used.clone();
    let panicked = AtomicBool::new(false);
    // Its first call on the background reclaimer's thread panics (a
    // transient failure to read the usage, say): the thread's first look
    // at the usage, before any reclaim.
    let budget = MemoryBudget::new(64 * MIB, reclaimer, move || {
        if thread::current().name() == Some("rcu-kswapd") && !panicked.swap(true, Ordering::SeqCst)
        {
            panic!("the usage function fails once");
        }
        u.load(Ordering::SeqCst)
    });
    background_reclaims_to_high(&budget, &used, "the usage function panicked");
}

#[test]
fn a_usage_function_that_always_panics_is_looked_at_less_and_less_often() {
    let rcu = Rcu::new(Config::new().on_demand()).unwrap();
    let reclaimer = Arc::new(Reclaimer::new(&rcu));
    let used = Arc::new(AtomicUsize::new(0));
    reclaimer.register(Arc::new(Cache(used.clone())));
    let calls = Arc::new(AtomicUsize::new(0));
    let failing = Arc::new(AtomicBool::new(true));
    let (u, c, f) = (used.clone(), calls.clone(), failing.clone());
    // Broken on the background reclaimer's thread until told otherwise.
    let budget = MemoryBudget::new(64 * MIB, reclaimer, move || {
        if thread::current().name() == Some("rcu-kswapd") {
            c.fetch_add(1, Ordering::SeqCst);
            if f.load(Ordering::SeqCst) {
                panic!("the usage function always fails on rcu-kswapd");
            }
        }
        u.load(Ordering::SeqCst)
    });
    // Unasked, the thread looked every 10 ms (60 panics in 600 ms); now
    // 10, 20, 40 ... ms apart: 6 in 600 ms.
    thread::sleep(Duration::from_millis(600));
    let looks = calls.load(Ordering::SeqCst);
    assert!(
        (1..=12).contains(&looks),
        "{looks} panicking looks in 600 ms"
    );
    // Fixed, and asked: it reclaims at once, not after its long sleep.
    failing.store(false, Ordering::SeqCst);
    background_reclaims_to_high(&budget, &used, "the usage function was fixed");
}
