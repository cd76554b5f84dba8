//! The memory budget: background reclaim between the watermarks, direct
//! reclaim over `min`, no recursion from allocations inside shrinkers.

mod common;
use common::StopOnDrop;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rcu_reclaim::reclaim::{MemoryBudget, Reclaimer, Scanned, ShrinkControl, Shrinker, Watermarks};
use rcu_reclaim::{Config, Rcu};

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
        common::free_units(&self.used, UNIT, ctl)
    }
}

fn setup(limit: usize) -> (Arc<AtomicUsize>, Arc<Cache>, Arc<MemoryBudget>, Rcu) {
    setup_in(Config::new(), limit, |used| used.load(Ordering::SeqCst))
}

/// [`setup`] in a domain of `config`, the budget reading the usage as
/// `usage` makes it of the cache's count.
fn setup_in(
    config: Config,
    limit: usize,
    usage: impl Fn(&AtomicUsize) -> usize + Send + Sync + 'static,
) -> (Arc<AtomicUsize>, Arc<Cache>, Arc<MemoryBudget>, Rcu) {
    let rcu = Rcu::new(config).unwrap();
    let used = Arc::new(AtomicUsize::new(0));
    let cache = Arc::new(Cache {
        used: used.clone(),
        budget: Mutex::new(None),
    });
    let reclaimer = Arc::new(Reclaimer::new(&rcu));
    reclaimer.register(cache.clone());
    let u = used.clone();
    let budget = Arc::new(MemoryBudget::new(limit, reclaimer, move || usage(&u)));
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
    assert!(err.to_string().contains("min 101"), "{err}");
}

/// Objects whose drop gives their bytes back to the usage counter.
struct Charged(Arc<AtomicUsize>);

impl Drop for Charged {
    fn drop(&mut self) {
        self.0.fetch_sub(UNIT, Ordering::SeqCst);
    }
}

/// A cache whose evictions free through RCU: usage falls only after a
/// grace period.
struct RcuCache {
    rcu: Rcu,
    used: Arc<AtomicUsize>,
    held: AtomicUsize,
    scans: AtomicUsize,
}

impl Shrinker for RcuCache {
    fn count(&self, _: &ShrinkControl) -> usize {
        self.held.load(Ordering::SeqCst)
    }
    fn scan(&self, ctl: &mut ShrinkControl) -> Scanned {
        self.scans.fetch_add(1, Ordering::SeqCst);
        let n = ctl.nr_to_scan().min(self.held.load(Ordering::SeqCst));
        self.held.fetch_sub(n, Ordering::SeqCst);
        for _ in 0..n {
            self.rcu
                .defer_drop_sized(Box::new(Charged(self.used.clone())), UNIT);
        }
        Scanned {
            freed: n,
            bytes: n * UNIT,
        }
    }
    fn frees_via_rcu(&self) -> bool {
        true
    }
}

/// A 64 MiB budget over an `RcuCache` (empty) and its usage counter.
fn rcu_cache_budget() -> (Rcu, Arc<AtomicUsize>, Arc<RcuCache>, MemoryBudget) {
    let rcu = Rcu::new(Config::new()).unwrap();
    let used = Arc::new(AtomicUsize::new(0));
    let cache = Arc::new(RcuCache {
        rcu: rcu.clone(),
        used: used.clone(),
        held: AtomicUsize::new(0),
        scans: AtomicUsize::new(0),
    });
    let reclaimer = Arc::new(Reclaimer::new(&rcu));
    reclaimer.register(cache.clone());
    let u = used.clone();
    let budget = MemoryBudget::new(64 * MIB, reclaimer, move || u.load(Ordering::SeqCst));
    (rcu, used, cache, budget)
}

/// A thread inside a read-side section that checks the budget
/// (an allocation under `AccountingAlloc::enforce`) while the background
/// reclaimer holds the reclaim and waits for a grace period that the very
/// section holds up. Before, the check waited for the reclaimer forever;
/// now it wakes it and returns, and the reclaim completes after the section.
#[test]
fn a_check_inside_a_read_side_section_never_waits_for_reclaim() {
    let (rcu, used, cache, budget) = rcu_cache_budget();
    let budget = Arc::new(budget);
    let w = budget.watermarks();
    let objects = w.min / UNIT + 16;
    let (tx, rx) = std::sync::mpsc::channel();
    let (b, r, c, u) = (budget.clone(), rcu.clone(), cache.clone(), used.clone());
    thread::spawn(move || {
        let _guard = r.read_lock();
        // Over `min`: the background reclaimer (woken every 10 ms) evicts,
        // then waits for a grace period that this section holds up.
        c.held.store(objects, Ordering::SeqCst);
        u.store(objects * UNIT, Ordering::SeqCst);
        let t0 = Instant::now();
        while c.scans.load(Ordering::SeqCst) == 0 && t0.elapsed() < Duration::from_secs(20) {
            thread::sleep(Duration::from_millis(1));
        }
        thread::sleep(Duration::from_millis(50));
        let ok = b.check(); // the allocation's check, inside the section
        tx.send(ok).unwrap();
    });
    let ok = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("budget.check() inside a read-side section returned");
    assert!(ok);
    assert!(budget.stats().deferred_in_section >= 1);
    assert_eq!(budget.stats().direct_reclaims, 0);
    // Once the section ends, the background reclaim finishes its job.
    let t0 = Instant::now();
    while used.load(Ordering::SeqCst) > w.high && t0.elapsed() < Duration::from_secs(20) {
        thread::sleep(Duration::from_millis(5));
    }
    assert!(used.load(Ordering::SeqCst) <= w.high);
    assert_eq!(budget.stats().ooms, 0);
}

/// Dropping a budget inside a read-side section while its background
/// reclaimer waits for a grace period that the section holds up returns at
/// once (before: the drop joined the reclaimer, which waited for the
/// section: a deadlock); the reclaimer finishes and exits on its own.
#[test]
fn dropping_a_budget_inside_a_section_does_not_wait_for_its_reclaimer() {
    let (rcu, used, cache, budget) = rcu_cache_budget();
    let objects = budget.watermarks().min / UNIT + 16;
    let (tx, rx) = std::sync::mpsc::channel();
    let (r, c) = (rcu.clone(), cache.clone());
    thread::spawn(move || {
        let _guard = r.read_lock();
        c.held.store(objects, Ordering::SeqCst);
        used.store(objects * UNIT, Ordering::SeqCst);
        let t0 = Instant::now();
        while c.scans.load(Ordering::SeqCst) == 0 && t0.elapsed() < Duration::from_secs(20) {
            thread::sleep(Duration::from_millis(1));
        }
        thread::sleep(Duration::from_millis(50));
        drop(budget);
        tx.send(()).unwrap();
    });
    rx.recv_timeout(Duration::from_secs(20))
        .expect("dropping the budget inside a section returned");
    rcu.barrier();
}

/// A shrinker that blocks until its gate opens: a reclaim stuck on
/// something the allocating thread may hold.
struct Gated {
    used: Arc<AtomicUsize>,
    open: std::sync::atomic::AtomicBool,
    entered: AtomicUsize,
}

impl Shrinker for Gated {
    fn count(&self, _: &ShrinkControl) -> usize {
        self.used.load(Ordering::SeqCst) / UNIT
    }
    fn scan(&self, ctl: &mut ShrinkControl) -> Scanned {
        self.entered.fetch_add(1, Ordering::SeqCst);
        while !self.open.load(Ordering::SeqCst) {
            thread::sleep(Duration::from_millis(1));
        }
        common::free_units(&self.used, UNIT, ctl)
    }
}

/// A direct reclaim waits a bounded time for a reclaim already running,
/// then lets the allocation proceed: a running reclaim that waits for
/// something the allocating thread holds (a lock a shrinker or callback
/// takes) delays it, never deadlocks it.
#[test]
fn a_direct_reclaim_waits_a_bounded_time_for_a_running_one() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let used = Arc::new(AtomicUsize::new(0));
    let gated = Arc::new(Gated {
        used: used.clone(),
        open: std::sync::atomic::AtomicBool::new(false),
        entered: AtomicUsize::new(0),
    });
    let reclaimer = Arc::new(Reclaimer::new(&rcu));
    reclaimer.register(gated.clone());
    let u = used.clone();
    let budget = MemoryBudget::new(64 * MIB, reclaimer, move || u.load(Ordering::SeqCst));
    used.store(budget.watermarks().min + 16 * UNIT, Ordering::SeqCst);
    // Lets the stuck shrinker go however the test ends (else `rcu-kswapd`
    // stays in it for good: dropping the budget gives up on it after 1 s).
    let _open = StopOnDrop(&gated.open);
    // The background reclaimer (woken every 10 ms) gets stuck in the shrinker.
    let t0 = Instant::now();
    while gated.entered.load(Ordering::SeqCst) == 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "kswapd never scanned"
        );
        thread::sleep(Duration::from_millis(1));
    }
    let t = Instant::now();
    assert!(budget.check(), "the allocation proceeds");
    assert!(t.elapsed() < Duration::from_secs(10));
    assert_eq!(budget.stats().direct_wait_timeouts, 1);
    gated.open.store(true, Ordering::SeqCst);
    let t0 = Instant::now();
    while used.load(Ordering::SeqCst) > budget.watermarks().high {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "reclaim never finished"
        );
        thread::sleep(Duration::from_millis(1));
    }
}

/// A shrinker that frees through RCU but books only `size_of` bytes per
/// entry, as `Retired::defer_drop` did before it booked `ReclaimSize`.
struct UnderBooked {
    rcu: Rcu,
    entries: Mutex<Vec<Charged>>,
}

impl Shrinker for UnderBooked {
    fn count(&self, _: &ShrinkControl) -> usize {
        self.entries.lock().unwrap().len()
    }
    fn scan(&self, ctl: &mut ShrinkControl) -> Scanned {
        let mut entries = self.entries.lock().unwrap();
        let n = ctl.nr_to_scan().min(entries.len());
        let booked = std::mem::size_of::<Charged>();
        for e in entries.drain(..n) {
            self.rcu.defer_drop_sized(Box::new(e), booked);
        }
        ctl.set_scanned(n);
        Scanned {
            freed: n,
            bytes: n * booked,
        }
    }
    fn frees_via_rcu(&self) -> bool {
        true
    }
}

/// The OOM handler's calls, `ReclaimStats::ooms` and `BudgetStats::ooms`
/// count the same events. Reclaim that frees the budget's usage back to
/// `high` is no out-of-memory, even when the bytes booked for it say less
/// (a bounded cache of large entries once had the handler fire 260 times
/// while the budget counted 4);
/// reclaim that cannot is one, counted once by each.
#[test]
fn oom_handler_reclaim_stats_and_budget_count_the_same_events() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let used = Arc::new(AtomicUsize::new(0));
    let cache = Arc::new(UnderBooked {
        rcu: rcu.clone(),
        entries: Mutex::new(Vec::new()),
    });
    let reclaimer = Arc::new(Reclaimer::new(&rcu));
    reclaimer.register(cache.clone());
    let handled = Arc::new(AtomicUsize::new(0));
    let h = handled.clone();
    reclaimer.set_oom_handler(move |_| {
        h.fetch_add(1, Ordering::SeqCst);
    });
    let u = used.clone();
    let budget = MemoryBudget::new(64 * MIB, reclaimer.clone(), move || {
        u.load(Ordering::SeqCst)
    });
    let counts = || {
        (
            handled.load(Ordering::SeqCst) as u64,
            reclaimer.stats().ooms,
            budget.stats().ooms,
        )
    };

    // Under-booked but really freed: no out-of-memory anywhere.
    let w = budget.watermarks();
    let n = (w.min + 4 * MIB) / UNIT;
    {
        let mut entries = cache.entries.lock().unwrap();
        for _ in 0..n {
            used.fetch_add(UNIT, Ordering::SeqCst);
            entries.push(Charged(used.clone()));
        }
    }
    assert!(budget.check());
    assert!(used.load(Ordering::SeqCst) <= w.high);
    assert_eq!(counts(), (0, 0, 0));

    // Nothing left to free: each direct reclaim is one out-of-memory,
    // counted once by each of the three.
    used.fetch_add(w.min + MIB, Ordering::SeqCst);
    for _ in 0..3 {
        assert!(!budget.check());
    }
    assert_eq!(counts(), (3, 3, 3));
    used.store(0, Ordering::SeqCst);
}

/// A cache of 4 KiB blocks freed through RCU; the budget's usage counts
/// the blocks it holds and the bytes RCU still holds for it.
struct RcuBlocks {
    rcu: Rcu,
    blocks: Mutex<Vec<Box<[u8; 4096]>>>,
}

impl Shrinker for RcuBlocks {
    fn count(&self, _: &ShrinkControl) -> usize {
        self.blocks.lock().unwrap().len()
    }
    fn scan(&self, ctl: &mut ShrinkControl) -> Scanned {
        let mut blocks = self.blocks.lock().unwrap();
        let n = ctl.nr_to_scan().min(blocks.len());
        for b in blocks.drain(..n) {
            self.rcu.defer_drop_sized(b, 4096);
        }
        Scanned {
            freed: n,
            bytes: n * 4096,
        }
    }
    fn frees_via_rcu(&self) -> bool {
        true
    }
}

/// A reclaim from over `min` back to `high` (about 11 MiB of a 64 MiB
/// budget) runs in steps of a 256th of `min` (at least 256 KiB), each evicting its share
/// and letting a grace period free it before the next, so what waits for a
/// grace period stays near one step; one reclaim used to evict it all at
/// once. It still ends at `high`.
#[test]
fn a_reclaim_to_high_evicts_in_steps_through_rcu() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let cache = Arc::new(RcuBlocks {
        rcu: rcu.clone(),
        blocks: Mutex::new(Vec::new()),
    });
    let reclaimer = Arc::new(Reclaimer::new(&rcu).rcu_loop(true));
    reclaimer.register(cache.clone());
    let (c, r) = (cache.clone(), rcu.clone());
    let budget = MemoryBudget::new(64 * MIB, reclaimer.clone(), move || {
        c.blocks.lock().unwrap().len() * 4096 + r.pending_bytes()
    });
    let w = budget.watermarks();
    let fill = (w.min + MIB) / 4096;
    cache
        .blocks
        .lock()
        .unwrap()
        .extend((0..fill).map(|_| Box::new([1u8; 4096])));
    assert!(budget.check(), "{:?}", budget.stats());
    // The budget's background reclaimer (it looks every 10 ms) may have
    // begun this reclaim first; `check` then waits for it at most a second
    // and returns, which a loaded machine's grace periods can outlast. Wait
    // for whichever reclaim runs to bring usage back to `high`.
    let usage = || cache.blocks.lock().unwrap().len() * 4096 + rcu.pending_bytes();
    let t = Instant::now();
    while usage() > w.high {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "no reclaim to high within a minute: {:?}, {:?}",
            budget.stats(),
            reclaimer.stats()
        );
        thread::sleep(Duration::from_millis(1));
    }
    let steps = reclaimer.stats().calls;
    let step = (w.min / 256).max(256 << 10);
    let expected = (w.min + MIB - w.high) / step;
    assert!(
        steps >= expected as u64 / 2,
        "{steps} reclaim calls for {} KiB in steps of {} KiB",
        (w.min + MIB - w.high) >> 10,
        step >> 10
    );
    rcu.barrier();
    let held = cache.blocks.lock().unwrap().len() * 4096;
    assert!(held <= w.high, "reclaimed to {held}, high is {}", w.high);
}

#[test]
fn every_limit_from_two_bytes_gets_ordered_default_watermarks() {
    let limits = (2..5000).chain([1 << 20, 100 << 20, usize::MAX / 2, usize::MAX]);
    for limit in limits {
        let w = Watermarks::from_limit(limit);
        assert!(
            w.high < w.low && w.low < w.min && w.min <= limit,
            "limit {limit}: {w:?}"
        );
    }
    let r = Arc::new(Reclaimer::new(Rcu::global()));
    let tiny = MemoryBudget::new(Watermarks::MIN_LIMIT, r, || 0);
    assert_eq!(tiny.watermarks(), Watermarks::from_limit(2));
}

#[test]
#[should_panic(expected = "a limit of 1 bytes leaves no room for its watermarks")]
fn a_budget_too_small_for_watermarks_says_so() {
    let r = Arc::new(Reclaimer::new(Rcu::global()));
    let _ = MemoryBudget::new(1, r, || 0);
}

/// Without an `AccountingAlloc` as the global allocator (as in this test
/// binary), `AccountingAlloc::enforce` installs a budget no allocation
/// ever checks: it says so and names the fix (before: `Ok(())`, and
/// nothing). The one test here that enforces: once per process.
#[test]
fn enforcing_a_budget_without_the_accounting_allocator_warns() {
    use rcu_reclaim::reclaim::AccountingAlloc;
    let log = common::Captured::default();
    {
        let _on = log.on_this_thread();
        let reclaimer = Arc::new(Reclaimer::new(Rcu::global()));
        let budget = Arc::new(MemoryBudget::new(1 << 40, reclaimer, || 0));
        assert!(AccountingAlloc::enforce(budget).is_ok());
    }
    let text = log.text();
    assert!(
        text.contains(
            "AccountingAlloc::enforce() was called, but no AccountingAlloc is the global"
        ) && text.contains("#[global_allocator] static ALLOC: AccountingAlloc"),
        "{text}"
    );
}

/// This test binary has no `AccountingAlloc` as its global allocator: a
/// budget over `AccountingAlloc::live_bytes` would read 0 for ever and
/// never reclaim, so making one says so and names the fix; a closure or
/// any other usage is taken as it is.
#[test]
fn a_budget_over_live_bytes_without_the_accounting_allocator_warns() {
    use rcu_reclaim::reclaim::AccountingAlloc;
    let log = common::Captured::default();
    {
        let _on = log.on_this_thread();
        let reclaimer = Arc::new(Reclaimer::new(Rcu::global()));
        let _budget = MemoryBudget::new(64 * MIB, reclaimer.clone(), AccountingAlloc::live_bytes);
    }
    let text = log.text();
    assert!(
        text.contains("no AccountingAlloc is the global allocator")
            && text.contains("#[global_allocator] static ALLOC: AccountingAlloc"),
        "{text}"
    );
    let quiet = common::Captured::default();
    {
        let _on = quiet.on_this_thread();
        let reclaimer = Arc::new(Reclaimer::new(Rcu::global()));
        let _budget = MemoryBudget::new(64 * MIB, reclaimer, || 0);
    }
    assert!(
        !quiet.text().contains("AccountingAlloc"),
        "{}",
        quiet.text()
    );
}

/// An online QSBR thread is inside its domain's read-side section from one
/// quiescent state to the next, so a check over `min` there cannot reclaim
/// directly (reclaim may wait for a grace period, which the thread holds
/// up). It owes the reclaim instead and runs it at its next quiescent state
/// that reports, or when it goes offline; before, an event loop that only
/// reported quiescent states never reclaimed directly (4–5x its budget in
/// a stress run).
#[test]
fn an_online_qsbr_thread_reclaims_at_its_next_quiescent_state() {
    // Only this thread sees the usage: the background reclaimer, woken
    // by the check, finds nothing to do, so what reclaims is this thread.
    let me = thread::current().id();
    let (used, _cache, budget, rcu) = setup_in(
        Config::new().flavor(rcu_reclaim::Flavor::Qsbr),
        100 * MIB,
        move |used| {
            if thread::current().id() == me {
                used.load(Ordering::SeqCst)
            } else {
                0
            }
        },
    );
    let w = budget.watermarks();
    let mut online = rcu.register_qsbr_thread();

    used.store(w.min + 2 * MIB, Ordering::SeqCst);
    assert!(budget.check());
    let st = budget.stats();
    assert_eq!((st.direct_reclaims, st.deferred_in_section), (0, 1));
    assert!(
        used.load(Ordering::SeqCst) > w.min,
        "nothing reclaimed online"
    );
    // Once a grace period is in progress, a quiescent state reports, and
    // pays (an event loop reporting as it goes).
    let _cookie = rcu.start_poll();
    let start = Instant::now();
    while budget.stats().owed_reclaims == 0 {
        assert!(start.elapsed() < Duration::from_secs(10), "never paid");
        online.quiescent_state();
        thread::yield_now();
    }
    let st = budget.stats();
    assert_eq!((st.owed_reclaims, st.direct_reclaims), (1, 1), "{st:?}");
    assert!(used.load(Ordering::SeqCst) <= w.high);

    // Going offline pays too.
    used.store(w.min + 2 * MIB, Ordering::SeqCst);
    assert!(budget.check());
    let offline = online.thread_offline();
    let st = budget.stats();
    assert_eq!((st.owed_reclaims, st.direct_reclaims), (2, 2), "{st:?}");
    assert!(used.load(Ordering::SeqCst) <= w.high);
    drop(offline);
}

/// A shrinker whose `count` takes `lock` (after saying it was called):
/// the program's code that a helper thread runs and that waits for a lock
/// the thread dropping the helper holds.
struct WaitsForLock {
    lock: Arc<Mutex<()>>,
    called: Arc<std::sync::atomic::AtomicBool>,
}

impl Shrinker for WaitsForLock {
    fn count(&self, _: &ShrinkControl) -> usize {
        self.called.store(true, Ordering::SeqCst);
        drop(self.lock.lock().unwrap_or_else(|p| p.into_inner()));
        0
    }
    fn scan(&self, _: &mut ShrinkControl) -> Scanned {
        Scanned::default()
    }
}

/// Runs `drop_helper` on a thread of its own that holds a lock the
/// reclaimer's shrinker waits for, once `start` has the helper thread
/// (`rcu-kswapd` or `rcu-pressure`) inside that shrinker; returns what
/// the library logged on that thread, or `None` if the drop had not
/// returned within 8 s.
fn drop_helper_holding_its_shrinkers_lock<H: Send + 'static>(
    start: impl FnOnce(Arc<Reclaimer>) -> H + Send + 'static,
) -> Option<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let captured = common::Captured::default();
        let _log = captured.on_this_thread();
        let lock = Arc::new(Mutex::new(()));
        let called = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let rcu = Rcu::new(Config::new()).unwrap();
        let reclaimer = Arc::new(Reclaimer::new(&rcu));
        // Its empty shrinker makes the pass an out-of-memory: quietly.
        reclaimer.set_oom_handler(|_| {});
        reclaimer.register(Arc::new(WaitsForLock {
            lock: lock.clone(),
            called: called.clone(),
        }));
        let held = lock.lock().unwrap();
        let helper = start(reclaimer);
        let t = Instant::now();
        while !called.load(Ordering::SeqCst) {
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "the shrinker was never called"
            );
            thread::sleep(Duration::from_millis(1));
        }
        drop(helper);
        drop(held);
        let _ = tx.send(captured.text());
    });
    rx.recv_timeout(Duration::from_secs(8)).ok()
}

/// Dropping a budget whose `rcu-kswapd` is inside a shrinker waiting for a
/// lock the dropping thread holds returns within about a second, saying
/// why, and leaves the thread to finish once the lock is let go; before,
/// the drop joined the thread and the two waited for each other for good.
#[test]
fn dropping_a_budget_whose_reclaim_waits_for_the_dropper_returns_saying_why() {
    let log = drop_helper_holding_its_shrinkers_lock(|reclaimer| {
        let w = Watermarks::from_limit(1 << 30);
        // Between `low` and `min`: the background thread reclaims, the
        // checking thread does not.
        let budget = MemoryBudget::new(1 << 30, reclaimer, move || (w.low + w.min) / 2);
        budget.check();
        budget
    });
    let log = log.expect("dropping the budget waited for good");
    assert!(log.contains("for the rcu-kswapd thread to stop"), "{log:?}");
}

/// As above, for a pressure monitor whose event runs the shrinker.
#[test]
fn dropping_a_monitor_whose_reclaim_waits_for_the_dropper_returns_saying_why() {
    use rcu_reclaim::sources::{Level, PressureMonitor, SyntheticSource};
    let log = drop_helper_holding_its_shrinkers_lock(|reclaimer| {
        let rcu = reclaimer.rcu().clone();
        let budget = Arc::new(MemoryBudget::new(1 << 30, reclaimer, || 0));
        let (events, source) = SyntheticSource::new();
        let monitor = PressureMonitor::start(
            &rcu,
            Box::new(source),
            Duration::from_millis(10),
            Some(budget),
        );
        events.send(Level::Critical).unwrap();
        (monitor, events)
    });
    let log = log.expect("dropping the monitor waited for good");
    assert!(
        log.contains("for the rcu-pressure thread to stop"),
        "{log:?}"
    );
}

/// A budget whose `rcu-kswapd` is busy in the program's code (here its
/// usage function, on the CPU for 1.5 s, as a thread starved of CPU on a
/// loaded machine is runnable for long) is waited for by the drop, which
/// returns once that code has: the thread is not waiting for a lock the
/// dropping thread holds. Before, the drop gave up after 1 s and left the
/// thread running with the budget's reclaimer and shrinkers (a stress
/// test's cache, held by its monitor thread that way, outlived its drop
/// with 273 entries).
#[test]
fn dropping_a_budget_whose_reclaimer_is_busy_on_the_cpu_waits_for_it() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let reclaimer = Arc::new(Reclaimer::new(&rcu));
    let (busy, done) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let (b, d) = (busy.clone(), done.clone());
    let budget = MemoryBudget::new(1 << 30, reclaimer, move || {
        // rcu-kswapd's first look only.
        if thread::current().name() == Some("rcu-kswapd") && !b.swap(true, Ordering::SeqCst) {
            let start = Instant::now();
            while start.elapsed() < Duration::from_millis(1500) {
                std::hint::spin_loop();
            }
            d.store(true, Ordering::SeqCst);
        }
        0
    });
    assert!(
        common::eventually(Duration::from_secs(10), || busy.load(Ordering::SeqCst)),
        "rcu-kswapd never looked"
    );
    drop(budget);
    assert!(
        done.load(Ordering::SeqCst),
        "the drop returned while rcu-kswapd still ran the usage function"
    );
    rcu.barrier();
}

/// Dropping a budget whose `rcu-kswapd` is asleep in its reclaim's wait
/// for a grace period waits for it: that wait ends with the readers, not
/// with the dropping thread (in no section of the domain). On 2 CPUs with
/// 1,024 busy threads (readers preempted in their sections made one grace
/// period last seconds), such drops gave up after 1 s, several a second,
/// each warning that the thread was "most likely waiting for a lock this
/// thread holds", and left it running with the budget's usage function
/// and reclaimer. Here a reader holds a section for 2.5 s while the
/// reclaim waits.
#[test]
fn dropping_a_budget_whose_reclaimer_waits_for_a_grace_period_waits_for_it() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let reclaimer = Arc::new(Reclaimer::new(&rcu));
    let (entered, section) = std::sync::mpsc::channel();
    let r = rcu.clone();
    let reader = thread::spawn(move || {
        let _guard = r.read_lock();
        entered.send(()).unwrap();
        thread::sleep(Duration::from_millis(2500));
    });
    section.recv().unwrap();
    // Work that only a grace period lets run: the reclaim waits for it.
    rcu.call_sized(|| {}, 4 * MIB);
    let usage = Arc::new(AtomicUsize::new(100 * MIB));
    let u = usage.clone();
    let budget = MemoryBudget::new(100 * MIB, reclaimer, move || u.load(Ordering::SeqCst));
    assert!(
        common::eventually(Duration::from_secs(10), || budget.stats().background_runs
            > 0),
        "rcu-kswapd never reclaimed"
    );
    // Asleep in the grace period's wait by now (the reader holds it up);
    // its reclaim ends with that grace period.
    thread::sleep(Duration::from_millis(100));
    usage.store(0, Ordering::SeqCst);
    drop(budget);
    assert_eq!(
        Arc::strong_count(&usage),
        1,
        "the drop returned while rcu-kswapd still reclaimed (its usage function alive)"
    );
    reader.join().unwrap();
    rcu.barrier();
}
