//! Shrinkers are the caller's code: whatever counts they report, reclaim's
//! sums and stats never overflow.

use std::sync::Arc;

use rcu_reclaim::pressure::NodeMask;
use rcu_reclaim::reclaim::{Reclaimer, Scanned, ShrinkControl, Shrinker};
use rcu_reclaim::{Config, Rcu};

/// Claims `usize::MAX` bytes for every batch it scans.
struct Boaster {
    via_rcu: bool,
}

impl Shrinker for Boaster {
    fn count(&self, _: &ShrinkControl) -> usize {
        1000
    }
    fn scan(&self, ctl: &mut ShrinkControl) -> Scanned {
        Scanned {
            freed: ctl.nr_to_scan(),
            bytes: usize::MAX,
        }
    }
    fn frees_via_rcu(&self) -> bool {
        self.via_rcu
    }
}

#[test]
fn a_shrinker_claiming_usize_max_bytes_overflows_no_count() {
    let rcu = Rcu::new(Config::new().on_demand()).unwrap();
    for via_rcu in [false, true] {
        for aware in [true, false] {
            let r = Reclaimer::new(&rcu).rcu_loop(aware);
            r.set_oom_handler(|_| {});
            r.register(Arc::new(Boaster { via_rcu }));
            r.register(Arc::new(Boaster { via_rcu }));
            // Twice: the stats add up across calls too.
            for _ in 0..2 {
                let done = r.reclaim(usize::MAX, &NodeMask::all());
                if let Ok(done) = &done {
                    assert_eq!(done.freed_bytes, usize::MAX, "saturates: {done:?}");
                }
                let shrunk = r.shrink(0);
                if via_rcu {
                    assert_eq!(shrunk.queued_via_rcu_bytes, usize::MAX);
                } else {
                    assert_eq!(shrunk.freed_bytes, usize::MAX);
                }
            }
            let st = r.stats();
            assert_eq!(st.calls, 2);
            let p0 = st.by_priority[0];
            assert_eq!(
                p0.freed_bytes.max(p0.queued_via_rcu_bytes),
                u64::MAX,
                "{st:?}"
            );
        }
    }
    rcu.barrier();
}

/// Counts every object there could be and frees none of them.
struct Endless;

impl Shrinker for Endless {
    fn count(&self, _: &ShrinkControl) -> usize {
        usize::MAX
    }
    fn scan(&self, _: &mut ShrinkControl) -> Scanned {
        Scanned::default()
    }
}

/// The scan arithmetic trusts `count`: a shrinker counting `usize::MAX`
/// objects whose batches free nothing called `scan` about 2^50 times per
/// pass (a hang). A turn now ends after `FRUITLESS_BATCHES` batches in a
/// row that free nothing, and reclaim declares out-of-memory.
#[test]
fn a_shrinker_counting_usize_max_objects_that_frees_nothing_ends_in_an_oom() {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rcu = Rcu::new(Config::new().on_demand()).unwrap();
        let r = Reclaimer::new(&rcu);
        r.set_oom_handler(|_| {});
        r.register(Arc::new(Endless));
        let oom = r.reclaim(1 << 20, &NodeMask::all()).is_err();
        let shrunk = r.shrink(0);
        let _ = tx.send((oom, shrunk.freed_bytes));
    });
    assert_eq!(
        rx.recv_timeout(std::time::Duration::from_secs(60)),
        Ok((true, 0)),
        "reclaim or shrink kept calling a shrinker that frees nothing"
    );
}

/// Says it freed 1 MiB per batch and frees nothing.
struct Liar;

impl Shrinker for Liar {
    fn count(&self, _: &ShrinkControl) -> usize {
        1000
    }
    fn scan(&self, ctl: &mut ShrinkControl) -> Scanned {
        Scanned {
            freed: ctl.nr_to_scan(),
            bytes: 1 << 20,
        }
    }
}

/// A budget whose usage never falls, beside a shrinker that claims to
/// free plenty: the out-of-memory report says the counted bytes covered
/// the target while the measure did not come down, rather than only
/// "freed 40 MiB of 1 MiB ... out of memory".
#[test]
fn an_oom_after_counted_frees_covering_the_target_says_the_measure_did_not_fall() {
    use rcu_reclaim::reclaim::MemoryBudget;
    use std::sync::Mutex;
    let rcu = Rcu::new(Config::new().on_demand()).unwrap();
    let reclaimer = Arc::new(Reclaimer::new(&rcu));
    let reports = Arc::new(Mutex::new(Vec::new()));
    let seen = reports.clone();
    reclaimer.set_oom_handler(move |r| seen.lock().unwrap().push(r.to_string()));
    reclaimer.register(Arc::new(Liar));
    let budget = MemoryBudget::new(64 << 20, reclaimer, || 80 << 20);
    budget.check();
    let reports = reports.lock().unwrap();
    assert!(!reports.is_empty(), "no OOM reported: {:?}", budget.stats());
    let last = reports.last().unwrap();
    assert!(
        last.contains("did not fall") && last.contains("may report more than it frees"),
        "{last}"
    );
    rcu.barrier();
}

/// Counts `usize::MAX` objects (an underflowed `len - n`) and reports
/// freeing whatever it is asked to scan; counts its calls.
struct Underflowed(std::sync::atomic::AtomicUsize);

impl Shrinker for Underflowed {
    fn count(&self, _: &ShrinkControl) -> usize {
        usize::MAX
    }
    fn scan(&self, ctl: &mut ShrinkControl) -> Scanned {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Scanned {
            freed: ctl.nr_to_scan(),
            bytes: ctl.nr_to_scan() * 64,
        }
    }
}

/// `shrink` ends its turn with such a shrinker after at most 16 Mi objects
/// (131,072 calls of 128). Before, `shrink(2)` scanned a quarter of
/// `usize::MAX` objects: 450 million calls in 10 s and counting, and a
/// pressure monitor calling it could not be dropped.
#[test]
fn shrink_ends_with_a_shrinker_whose_count_is_absurd() {
    let rcu = Rcu::new(Config::new().on_demand()).unwrap();
    let r = Reclaimer::new(&rcu);
    let liar = Arc::new(Underflowed(Default::default()));
    r.register(liar.clone());
    for priority in [12, 2, 0] {
        liar.0.store(0, std::sync::atomic::Ordering::Relaxed);
        let done = r.shrink(priority);
        let calls = liar.0.load(std::sync::atomic::Ordering::Relaxed);
        assert!(
            calls <= (1 << 24) / 128,
            "priority {priority}: {calls} calls"
        );
        assert!(done.freed_bytes > 0, "priority {priority}: {done:?}");
    }
}
