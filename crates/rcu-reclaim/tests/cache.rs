//! `RcuCache`: the byte bound under churn, shrinking under pressure with the
//! memory really freed, readers never seeing an entry freed under them,
//! and a hit ratio above random eviction's on a skewed trace.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use rcu_reclaim::reclaim::{MemoryBudget, Reclaimer};
use rcu_reclaim::sources::{Level, PressureMonitor, SyntheticSource};
use rcu_reclaim::{Config, Rcu, RcuCache};

mod common;
use common::rng::Rng;
use common::StopOnDrop;

fn on_demand() -> Rcu {
    Rcu::new(Config::new().on_demand()).unwrap()
}

#[test]
fn a_64_kib_vec_books_at_least_64_kib() {
    let rcu = on_demand();
    let cache = RcuCache::builder().rcu(&rcu).max_bytes(1 << 20).build();
    cache.insert(1u32, vec![0u8; 64 << 10]);
    assert!(cache.bytes() >= 64 << 10);
    assert_eq!(
        cache.bytes(),
        RcuCache::<u32, Vec<u8>>::ENTRY_OVERHEAD + (64 << 10)
    );
    assert!(cache.remove(&1));
    assert_eq!(cache.bytes(), 0);
    assert!(
        rcu.pending_bytes() >= 64 << 10,
        "the removal books its size"
    );
    rcu.barrier();
    assert_eq!(rcu.pending_bytes(), 0);
}

#[test]
fn stays_within_max_bytes_under_a_churn_of_ten_times_its_capacity() {
    churn_within_max_bytes(None);
}

#[test]
fn stays_within_max_bytes_in_eight_shards() {
    churn_within_max_bytes(Some(8));
}

/// Ten times the capacity inserted by one writer, the bound checked after
/// each insert; `shards`: the policy's (default: one, at 1 MiB).
fn churn_within_max_bytes(shards: Option<usize>) {
    let rcu = on_demand();
    let max = 1 << 20;
    let builder = RcuCache::builder().rcu(&rcu).max_bytes(max);
    let cache = match shards {
        Some(n) => builder.shards(n).build(),
        None => builder.build(),
    };
    let mut rng = Rng(1);
    let mut inserted = 0;
    // Under Miri, a churn of 3 times the capacity, not 10.
    let churn = if cfg!(miri) { 3 } else { 10 };
    while inserted < churn * max {
        let len = 1 + rng.index(16 << 10);
        cache.insert(rng.index(2000) as u32, vec![1u8; len]);
        inserted += len;
        // One writer: nothing in flight, so the bound is exact.
        assert!(cache.bytes() <= max, "{} > {max}", cache.bytes());
    }
    assert!(
        cache.bytes() > max / 2,
        "the cache is used: {}",
        cache.bytes()
    );
    rcu.barrier();
    assert_eq!(rcu.pending_bytes(), 0, "everything evicted was freed");
}

#[test]
fn concurrent_writers_exceed_it_by_at_most_their_entries_in_flight() {
    concurrent_writers_within_max_bytes(2, 1);
}

#[test]
fn concurrent_writers_of_four_shards_exceed_it_by_at_most_their_entries_in_flight() {
    concurrent_writers_within_max_bytes(4, 4);
}

/// `writers` threads insert into a cache of `shards` shards; the bound
/// holds but for the entries the others have in flight.
fn concurrent_writers_within_max_bytes(writers: u64, shards: usize) {
    let rcu = on_demand();
    let max = 1 << 20;
    let biggest = RcuCache::<u32, Vec<u8>>::ENTRY_OVERHEAD + (16 << 10);
    let cache = RcuCache::builder()
        .rcu(&rcu)
        .max_bytes(max)
        .shards(shards)
        .build();
    std::thread::scope(|s| {
        for t in 0..writers {
            let cache = &cache;
            s.spawn(move || {
                let mut rng = Rng(100 + t);
                // Under Miri, fewer: still several times the capacity.
                for _ in 0..if cfg!(miri) { 300 } else { 2000 } {
                    let len = 1 + rng.index(16 << 10);
                    cache.insert(rng.index(2000) as u32, vec![1u8; len]);
                    // The others may each hold one entry not yet queued.
                    assert!(cache.bytes() <= max + (writers as usize - 1) * biggest);
                }
            });
        }
    });
    assert!(cache.bytes() <= max);
    // The bytes booked equal the entries' weights, summed.
    let weights: usize = (0..2000u32)
        .filter_map(|k| {
            let guard = rcu.read_lock();
            cache
                .get(&k, &guard)
                .map(|v| RcuCache::<u32, Vec<u8>>::ENTRY_OVERHEAD + v.len())
        })
        .sum();
    assert_eq!(cache.bytes(), weights);
    drop(cache);
    rcu.barrier();
    assert_eq!(rcu.pending_bytes(), 0);
}

#[test]
fn an_entry_heavier_than_a_shards_share_is_cached_while_the_cache_has_room() {
    let rcu = on_demand();
    let max = 4 << 20;
    let cache = RcuCache::builder()
        .rcu(&rcu)
        .max_bytes(max)
        .shards(4)
        .build();
    // Half full, spread over the four shards (1 MiB shares).
    for k in 0..1500u32 {
        cache.insert(k, vec![0u8; 1 << 10]);
    }
    // Over twice a share, 64 KiB more than the cache has left: cached,
    // the cache within its capacity, some entries evicted to make room.
    let heavy = max - cache.bytes() + (64 << 10);
    assert!(heavy > 2 << 20);
    assert!(cache.insert(1 << 20, vec![7u8; heavy]));
    assert!(cache.bytes() <= max, "{} > {max}", cache.bytes());
    {
        let guard = rcu.read_lock();
        assert_eq!(cache.get(&(1 << 20), &guard).map(Vec::len), Some(heavy));
    }
    let left = (0..1500u32)
        .filter(|k| cache.get(k, &rcu.read_lock()).is_some())
        .count();
    assert!((1400..1500).contains(&left), "{left} entries left");
    drop(cache);
    rcu.barrier();
    assert_eq!(rcu.pending_bytes(), 0);
}

#[test]
fn a_budget_over_its_watermark_shrinks_the_cache_and_the_memory_is_freed() {
    let rcu = on_demand();
    let reclaimer = Arc::new(Reclaimer::new(&rcu));
    // The budget measures the cache itself: limit 1 MiB, the cache may
    // hold 4 MiB, so reclaim, not the capacity, must keep it under.
    type Cache = RcuCache<u32, Vec<u8>>;
    // Weak: the cache holds the budget, which holds this closure.
    let slot: Arc<OnceLock<Weak<Cache>>> = Arc::new(OnceLock::new());
    let usage = {
        let slot = slot.clone();
        move || slot.get().and_then(Weak::upgrade).map_or(0, |c| c.bytes())
    };
    let budget = Arc::new(MemoryBudget::new(1 << 20, reclaimer.clone(), usage));
    let cache = Arc::new(
        RcuCache::builder()
            .max_bytes(4 << 20)
            .budget(&budget)
            .regrow_after(Duration::from_secs(60))
            .build(),
    );
    assert_eq!(cache.domain().id(), rcu.id(), "the budget's domain");
    assert!(slot.set(Arc::downgrade(&cache)).is_ok());
    for i in 0..400u32 {
        cache.insert(i, vec![0u8; 8 << 10]);
        // Each insert checks the budget: over `min`, direct reclaim
        // evicts back to `high` before the insert returns (over `low`,
        // the background reclaimer may do it first).
        assert!(cache.bytes() <= budget.watermarks().min);
    }
    let stats = budget.stats();
    // The background reclaimer (over `low`) or direct reclaim (over `min`)
    // shrank it, whichever came first.
    assert!(
        stats.background_runs + stats.direct_reclaims > 0,
        "{stats:?}"
    );
    assert_eq!(stats.ooms, 0, "{stats:?}");
    assert!(
        cache.capacity_bytes() < cache.max_bytes(),
        "held down after a shrink"
    );
    // What was evicted went through RCU (the shrinker's passes or the
    // cache's own evictions; which of them ran depends on timing: a
    // background pass may find the cache already back under its mark).
    let by_rcu: u64 = reclaimer
        .stats()
        .by_priority
        .iter()
        .map(|p| p.queued_via_rcu_bytes)
        .sum();
    assert!(
        by_rcu > 0 || rcu.pending_bytes() > 0,
        "evictions wait in RCU: {:?}",
        reclaimer.stats()
    );
    rcu.barrier();
    assert_eq!(rcu.pending_bytes(), 0, "freed within a grace period");
}

#[test]
fn a_pressure_event_shrinks_the_cache_which_then_grows_back() {
    pressure_shrinks_and_regrows(1);
}

#[test]
fn a_pressure_event_shrinks_every_shard() {
    pressure_shrinks_and_regrows(4);
}

/// A cache of `shards` shards, full, shrinks by half on a critical event
/// and grows back after `regrow_after`.
fn pressure_shrinks_and_regrows(shards: usize) {
    // Everything between the shrink and the inserts under what it left
    // must happen within `regrow_after` (the capacity grows back lazily,
    // by the clock): 500 ms was sometimes too short for a loaded machine.
    // Under Miri the shrink itself takes virtual seconds (its clock runs
    // with the instructions run), and sleeps cost no real time.
    let regrow = Duration::from_secs(if cfg!(miri) { 60 } else { 3 });
    let rcu = on_demand();
    let (events, source) = SyntheticSource::new();
    let cache = RcuCache::builder()
        .rcu(&rcu)
        .max_bytes(1 << 20)
        .shards(shards)
        .pressure_source(Box::new(source))
        .regrow_after(regrow)
        .build();
    for i in 0..256u32 {
        cache.insert(i, vec![0u8; 1 << 10]);
    }
    let full = cache.len();
    assert_eq!(full, 256);
    events.send(Level::Critical).unwrap(); // half
    let deadline = Instant::now() + Duration::from_secs(10);
    // The monitor's thread evicts, then lowers the capacity.
    while cache.len() > full / 2 || cache.capacity_bytes() == cache.max_bytes() {
        assert!(
            Instant::now() < deadline,
            "no shrink: {} entries, capacity {}",
            cache.len(),
            cache.capacity_bytes()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let held = cache.capacity_bytes();
    assert!(held < cache.max_bytes());
    // Inserts meanwhile stay under what the shrink left.
    for i in 1000..1100u32 {
        cache.insert(i, vec![0u8; 1 << 10]);
        assert!(cache.bytes() <= held);
    }
    rcu.barrier();
    assert_eq!(rcu.pending_bytes(), 0, "the evicted memory is freed");
    // After a quiet spell the cache grows back to its cap, in steps
    // (doubling every quarter of the quiet time).
    std::thread::sleep(regrow + Duration::from_millis(100));
    let first_step = cache.capacity_bytes();
    assert!(first_step > held, "{first_step} after {held}");
    let deadline = Instant::now() + 4 * regrow;
    while cache.capacity_bytes() < cache.max_bytes() {
        assert!(Instant::now() < deadline, "{}", cache.capacity_bytes());
        std::thread::sleep(Duration::from_millis(10));
    }
    for i in 2000..2256u32 {
        cache.insert(i, vec![0u8; 1 << 10]);
    }
    assert!(cache.bytes() > held);
}

#[test]
fn a_monitor_linked_to_a_budget_shrinks_its_caches_though_the_budget_is_not_full() {
    let rcu = on_demand();
    let reclaimer = Arc::new(Reclaimer::new(&rcu));
    // Far under its watermarks: only the machine's pressure can shrink.
    let budget = Arc::new(MemoryBudget::new(1 << 40, reclaimer, || 0));
    let cache = RcuCache::builder()
        .max_bytes(1 << 20)
        .budget(&budget)
        .build();
    for i in 0..200u32 {
        cache.insert(i, vec![0u8; 1 << 10]);
    }
    let (events, source) = SyntheticSource::new();
    let quiet = Duration::from_millis(50);
    let monitor = PressureMonitor::start(&rcu, Box::new(source), quiet, Some(budget.clone()));
    events.send(Level::Medium).unwrap(); // an eighth
    let deadline = Instant::now() + Duration::from_secs(10);
    while cache.len() == 200 {
        assert!(
            Instant::now() < deadline,
            "no shrink: {} entries",
            cache.len()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    // The shrink has begun; dropping the monitor joins its thread, so the
    // shrink has ended (a fixed 20 ms sleep sometimes saw it half done on
    // a loaded machine).
    drop(monitor);
    let left = cache.len();
    assert!(
        (160..=190).contains(&left),
        "about an eighth goes: {left} left"
    );
    rcu.barrier();
    assert_eq!(rcu.pending_bytes(), 0);
    assert_eq!(budget.stats().ooms, 0);
}

#[test]
#[cfg_attr(
    miri,
    ignore = "opens /proc/pressure with O_NONBLOCK, which Miri does not support"
)]
fn auto_pressure_for_watches_on_the_budgets_domain() {
    let rcu = on_demand();
    let budget = Arc::new(MemoryBudget::new(
        1 << 40,
        Arc::new(Reclaimer::new(&rcu)),
        || 0,
    ));
    let monitor = rcu_reclaim::sources::auto_pressure_for(&budget);
    assert!(!monitor.stats().source.is_empty());
    // The cache's own `auto_pressure` with the budget: the same monitor.
    let cache: RcuCache<u32, u32> = RcuCache::builder().budget(&budget).auto_pressure().build();
    assert_eq!(cache.domain().id(), rcu.id());
}

const ALIVE: u64 = 0xa11c_e5a1_1ce5_a11c;
const POISON: u64 = 0xdead_dead_dead_dead;

/// A value that poisons itself when dropped.
struct Canary {
    word: u64,
    body: Vec<u8>,
}

impl Drop for Canary {
    fn drop(&mut self) {
        // SAFETY: a plain write to our own field, kept by `write_volatile`
        // from being optimised out as a dead store before the free.
        unsafe { std::ptr::write_volatile(&mut self.word, POISON) };
    }
}

#[test]
fn the_shrinker_never_frees_an_entry_under_a_reader() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let reclaimer = Arc::new(Reclaimer::new(&rcu));
    let cache = RcuCache::builder()
        .reclaimer(&reclaimer)
        .max_bytes(256 << 10)
        .weigher(|_: &u32, v: &Canary| v.body.len())
        .regrow_after(Duration::ZERO)
        .build();
    let stop = AtomicBool::new(false);
    let checked = AtomicUsize::new(0);
    std::thread::scope(|s| {
        let _stop = StopOnDrop(&stop);
        for t in 0..2 {
            let (cache, stop, checked) = (&cache, &stop, &checked);
            s.spawn(move || {
                let mut rng = Rng(t);
                while !stop.load(Ordering::Relaxed) {
                    let guard = cache.domain().read_lock();
                    let held: Vec<&Canary> = (0..32)
                        .filter_map(|_| cache.get(&(rng.index(512) as u32), &guard))
                        .collect();
                    // Hold them while the writer and the shrinker evict.
                    std::thread::sleep(Duration::from_micros(200));
                    for c in &held {
                        // SAFETY: a read of a live `u64` (if the entry were
                        // freed, the test's whole point is to notice).
                        let word = unsafe { std::ptr::read_volatile(&c.word) };
                        assert_eq!(word, ALIVE, "an entry was freed under its reader");
                        checked.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
        let mut rng = Rng(99);
        // 800 ms, and on until the readers have checked enough entries (a
        // loaded machine may hardly schedule them in 800 ms).
        let start = Instant::now();
        let end = start + Duration::from_millis(800);
        let mut round = 0;
        while Instant::now() < end || checked.load(Ordering::Relaxed) <= 100 {
            // (The assertion below reports it; a panic here would leave
            // the readers running and the scope waiting for them.)
            if start.elapsed() > Duration::from_secs(60) {
                break;
            }
            for _ in 0..64 {
                let body = vec![0u8; 1 + rng.index(4 << 10)];
                cache.insert(rng.index(512) as u32, Canary { word: ALIVE, body });
            }
            round += 1;
            if round % 4 == 0 {
                reclaimer.shrink(2); // half, under the readers
            }
        }
    });
    assert!(
        checked.load(Ordering::Relaxed) > 100,
        "readers held entries"
    );
    drop(cache);
    rcu.barrier();
    assert_eq!(rcu.pending_bytes(), 0);
}

/// Random eviction with the cache's own weights: the baseline.
struct RandomBaseline {
    entries: std::collections::HashMap<u32, usize>,
    keys: Vec<u32>,
    bytes: usize,
    rng: Rng,
}

impl RandomBaseline {
    fn insert(&mut self, key: u32, weight: usize, max: usize) {
        self.entries.insert(key, weight);
        self.keys.push(key);
        self.bytes += weight;
        while self.bytes > max {
            let k = self.keys.swap_remove(self.rng.index(self.keys.len()));
            self.bytes -= self.entries.remove(&k).unwrap();
        }
    }
}

#[test]
fn the_hit_ratio_beats_random_eviction_on_a_skewed_trace() {
    const KEYS: usize = 20_000;
    // Zipf(0.99) by inverse CDF; ranks scattered over keys.
    let mut cdf: Vec<f64> = (1..=KEYS).map(|r| 1.0 / (r as f64).powf(0.99)).collect();
    let total: f64 = cdf.iter().sum();
    let mut acc = 0.0;
    for c in &mut cdf {
        acc += *c / total;
        *c = acc;
    }
    let size = |k: u32| 64 + (k as usize * 7919) % 1024;
    let max = 512 << 10; // ~3 % of the distinct data
    let rcu = on_demand();
    let cache = RcuCache::builder().rcu(&rcu).max_bytes(max).build();
    let mut baseline = RandomBaseline {
        entries: Default::default(),
        keys: Vec::new(),
        bytes: 0,
        rng: Rng(5),
    };
    let mut rng = Rng(3);
    let (mut ours, mut theirs, requests, warmup) = (0, 0, 150_000, 30_000);
    for i in 0..warmup + requests {
        let u = (rng.next() >> 11) as f64 / (1u64 << 53) as f64;
        let rank = cdf.partition_point(|&c| c < u).min(KEYS - 1);
        let key = (rank as u32).wrapping_mul(2_654_435_761) % KEYS as u32;
        let counted = usize::from(i >= warmup);
        let guard = cache.domain().read_lock();
        if cache.get(&key, &guard).is_some() {
            ours += counted;
        } else {
            drop(guard);
            cache.insert(key, vec![0u8; size(key)]);
        }
        if baseline.entries.contains_key(&key) {
            theirs += counted;
        } else {
            let weight = RcuCache::<u32, Vec<u8>>::ENTRY_OVERHEAD + size(key);
            baseline.insert(key, weight, max);
        }
    }
    let (ours, theirs) = (
        ours as f64 / requests as f64,
        theirs as f64 / requests as f64,
    );
    println!("hit ratio: RcuCache {ours:.3}, random eviction {theirs:.3}");
    assert!(
        ours > theirs + 0.04,
        "RcuCache {ours:.3} vs random {theirs:.3}"
    );
    drop(cache);
    rcu.barrier();
}

/// Evicted entries wait for a grace period and a free. On a domain that
/// frees only when asked, a churn of 12× the capacity would leave all of
/// it queued; the inserting thread frees the backlog once it passes the
/// cache's allowance (an eighth of the capacity, at least 1 MiB), so the
/// memory waiting stays within about that.
#[test]
fn evicted_memory_waiting_to_be_freed_stays_bounded() {
    let rcu = Rcu::new(Config::new().on_demand()).unwrap();
    let max = 8 << 20;
    let allowance = 1 << 20;
    let cache = RcuCache::builder().rcu(&rcu).max_bytes(max).build();
    let mut worst = 0;
    for k in 0..1536u64 {
        cache.insert(k, vec![k as u8; 64 << 10]);
        worst = worst.max(rcu.pending_bytes());
    }
    assert!(cache.bytes() <= max);
    // An insert looks once per quarter of the allowance retired: at most
    // that, and one insert's worth, over the allowance before it is freed.
    assert!(
        worst <= allowance + allowance / 4 + (64 << 10) + 4096,
        "up to {worst} bytes waited to be freed, allowance {allowance}: {:?}",
        rcu.stats()
    );
    drop(cache);
    rcu.barrier();
    assert_eq!(rcu.pending_bytes(), 0);
}

/// The allowance follows what the cache holds, not its cap: a cache capped
/// at 1 GiB that holds 8 MiB (as a cgroup's limit and its pressure keep it)
/// and churns by replacement keeps its backlog near 1 MiB. It let 128 MiB
/// (an eighth of the cap) wait, in a container of 100 MiB.
#[test]
fn the_backlog_allowance_follows_what_the_cache_holds() {
    let rcu = Rcu::new(Config::new().on_demand()).unwrap();
    let cache = RcuCache::builder().rcu(&rcu).max_bytes(1 << 30).build();
    let allowance = 1 << 20;
    let mut worst = 0;
    for round in 0..4u64 {
        for k in 0..128u64 {
            cache.insert(k, vec![round as u8; 64 << 10]); // replaces from round 1
            worst = worst.max(rcu.pending_bytes());
        }
    }
    assert!(cache.bytes() < 9 << 20, "{}", cache.bytes());
    assert!(
        worst <= allowance + allowance / 4 + (64 << 10) + 4096,
        "up to {worst} bytes waited to be freed for a cache of {} bytes",
        cache.bytes()
    );
    drop(cache);
    rcu.barrier();
    assert_eq!(rcu.pending_bytes(), 0);
}

/// A cache no larger than 1 MiB allows a backlog of its whole capacity.
#[test]
fn a_small_caches_backlog_may_reach_its_capacity() {
    let rcu = Rcu::new(Config::new().on_demand()).unwrap();
    let max = 512 << 10;
    let cache = RcuCache::builder().rcu(&rcu).max_bytes(max).build();
    let mut worst = 0;
    for k in 0..96u64 {
        cache.insert(k, vec![k as u8; 64 << 10]);
        worst = worst.max(rcu.pending_bytes());
    }
    assert!(
        worst > max / 2 && worst <= max + max / 4 + (64 << 10) + 4096,
        "up to {worst} bytes waited to be freed, capacity {max}"
    );
    drop(cache);
    rcu.barrier();
    assert_eq!(rcu.pending_bytes(), 0);
}

/// The backlog an insert frees is the domain's, which other code may share:
/// another thread that keeps retiring its own garbage must not make every
/// insert expedite a grace period. An insert looks at the backlog only once
/// the cache itself has retired a quarter of its allowance.
#[test]
fn foreign_garbage_in_the_domain_does_not_make_inserts_expedite() {
    let rcu = Rcu::new(Config::new().on_demand()).unwrap();
    let cache = RcuCache::builder().rcu(&rcu).max_bytes(1 << 20).build();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<bool>();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let r = rcu.clone();
    let other = std::thread::spawn(move || {
        // A full bulk page (255 entries of 8 KiB: 2 MiB) per round, handed
        // to its shard, where it waits: the domain frees only when asked.
        while go_rx.recv().unwrap() {
            for _ in 0..255 {
                r.defer_drop_sized(Box::new(vec![0u8; 8 << 10]), 8 << 10);
            }
            done_tx.send(()).unwrap();
        }
    });
    for k in 0..40u64 {
        go_tx.send(true).unwrap();
        done_rx.recv().unwrap();
        cache.insert(k, vec![0u8; 1 << 10]); // no eviction: 40 KiB of 1 MiB
    }
    go_tx.send(false).unwrap();
    other.join().unwrap();
    let s = rcu.stats();
    assert_eq!(
        s.expedited_gps, 0,
        "inserts expedited for foreign garbage: {s:?}"
    );
    drop(cache);
    rcu.barrier();
}

#[test]
fn read_or_insert_with_makes_on_a_miss_only_and_reads_either_way() {
    let rcu = on_demand();
    let cache = RcuCache::builder().rcu(&rcu).max_bytes(1 << 20).build();
    let made = AtomicUsize::new(0);
    let make = |n: u8| {
        made.fetch_add(1, Ordering::Relaxed);
        vec![n; 1000]
    };
    // A miss: made once, read before it is shared, then cached.
    assert_eq!(cache.read_or_insert_with(1u32, || make(7), |v| v[0]), 7);
    assert_eq!(made.load(Ordering::Relaxed), 1);
    assert_eq!(cache.len(), 1);
    // A hit: the cached value, nothing made.
    assert_eq!(cache.read_or_insert_with(1, || make(9), |v| v[0]), 7);
    assert_eq!(made.load(Ordering::Relaxed), 1);
    // Too large to cache: read, not kept.
    let len = cache.read_or_insert_with(2, || vec![0u8; 2 << 20], Vec::len);
    assert_eq!((len, cache.len()), (2 << 20, 1));
    rcu.barrier();
    assert_eq!(rcu.pending_bytes(), 0);
}

/// What the module docs' moka table says of concurrent misses of one key:
/// both `read_or_insert_with` (outside any section and lock) and
/// `get_or_insert_with` (under a guard and the key's stripe lock) run
/// their loader once, as moka's `get_with`, the other callers waiting for
/// it and reading what it cached.
#[test]
fn concurrent_misses_of_a_key_make_its_value_once() {
    let rcu = on_demand();
    let cache = RcuCache::builder().rcu(&rcu).max_bytes(1 << 20).build();
    let threads = 4;
    let made = AtomicUsize::new(0);
    let start = std::sync::Barrier::new(threads);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                start.wait();
                let make = || {
                    made.fetch_add(1, Ordering::Relaxed);
                    // Long enough for the others to miss and wait.
                    std::thread::sleep(Duration::from_millis(50));
                    vec![1u8; 100]
                };
                // Each reads the one value made, outside any section.
                let read = |v: &Vec<u8>| (v.len(), rcu.in_read_section());
                let (len, _) = cache.read_or_insert_with(1u32, make, read);
                assert_eq!(len, 100);
            });
        }
    });
    assert_eq!(
        made.load(Ordering::Relaxed),
        1,
        "the value was made more than once"
    );
    assert_eq!(cache.len(), 1);

    let made = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                start.wait();
                let guard = cache.domain().read_lock();
                let v = cache.get_or_insert_with(
                    2u32,
                    || {
                        made.fetch_add(1, Ordering::Relaxed);
                        // Long enough for the others to wait on the lock.
                        std::thread::sleep(Duration::from_millis(50));
                        vec![2u8; 100]
                    },
                    &guard,
                );
                assert_eq!(v.len(), 100);
            });
        }
    });
    assert_eq!(made.load(Ordering::Relaxed), 1);
    drop(cache);
    rcu.barrier();
}

/// A `make` of `read_or_insert_with` that panics ends its turn: the
/// threads waiting for it look again, one makes the value, and every call
/// returns (none waits for ever on the abandoned load).
#[test]
fn a_make_that_panics_hands_the_load_to_a_waiting_thread() {
    let rcu = on_demand();
    let cache = RcuCache::builder().rcu(&rcu).max_bytes(1 << 20).build();
    let threads = 4;
    let made = AtomicUsize::new(0);
    let start = std::sync::Barrier::new(threads);
    let panicked = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                start.wait();
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    cache.read_or_insert_with(
                        1u32,
                        || {
                            let n = made.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(Duration::from_millis(30));
                            assert!(n > 0, "the first make fails");
                            vec![1u8; 100]
                        },
                        Vec::len,
                    )
                }));
                match r {
                    Ok(len) => assert_eq!(len, 100),
                    Err(_) => {
                        panicked.fetch_add(1, Ordering::SeqCst);
                    }
                }
            });
        }
    });
    assert_eq!(panicked.load(Ordering::SeqCst), 1);
    assert_eq!(
        made.load(Ordering::SeqCst),
        2,
        "one failed make, then one that cached"
    );
    assert_eq!(cache.len(), 1);
    drop(cache);
    rcu.barrier();
}

/// `make`s that read caches: one that misses its own key makes a second
/// value rather than wait for itself, and two threads whose `make`s each
/// miss the key the other is making (of two caches) both return, where
/// waiting for each other's load would hang both. (Run on threads of
/// their own, so that a hang fails the test instead of hanging it.)
#[test]
fn makes_that_read_caches_never_wait_for_each_other() {
    let rcu = on_demand();
    let new_cache = || Arc::new(RcuCache::builder().rcu(&rcu).max_bytes(1 << 20).build());
    let (tx, rx) = std::sync::mpsc::channel();
    let cache = new_cache();
    let (c, t) = (cache.clone(), tx.clone());
    std::thread::spawn(move || {
        let inner = || vec![c.read_or_insert_with(1u32, || vec![7u8; 10], |v| v[0]); 20];
        t.send(c.read_or_insert_with(1u32, inner, Vec::len))
            .unwrap();
    });
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(20))
            .expect("a make that missed its own key hung"),
        20
    );
    assert_eq!(
        cache.read_or_insert_with(1u32, || unreachable!(), |v| v[0]),
        7
    );

    let (a, b) = (new_cache(), new_cache());
    let both = Arc::new(std::sync::Barrier::new(2));
    for (mine, other, k, o) in [(&a, &b, 1u32, 2u32), (&b, &a, 2, 1)] {
        let (mine, other, both, tx) = (mine.clone(), other.clone(), both.clone(), tx.clone());
        std::thread::spawn(move || {
            let make = || {
                both.wait();
                vec![other.read_or_insert_with(o, || vec![0u8; 1], |v| v[0]); 3]
            };
            tx.send(mine.read_or_insert_with(k, make, Vec::len))
                .unwrap();
        });
    }
    for _ in 0..2 {
        let n = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("two makes that read each other's keys hung");
        assert_eq!(n, 3);
    }
    drop((cache, a, b));
    rcu.barrier();
}

/// A miss inside a read-side section of another domain than the cache's
/// (a guard, or an online QSBR registration) does not wait for another
/// thread's load: that `make` may wait for a grace period of the section's
/// domain (here `synchronize`, or a QSBR thread's), which waits for the
/// section, which waited for the `make`, for ever. It makes the value
/// itself. (Threads of their own: a hang fails the test.)
#[test]
fn a_miss_inside_another_domains_section_does_not_wait_for_a_load() {
    let qsbr = Rcu::new(Config::new().flavor(rcu_reclaim::Flavor::Qsbr)).unwrap();
    for other in [Rcu::new(Config::new()).unwrap(), qsbr] {
        let cache = Arc::new(RcuCache::builder().max_bytes(1 << 20).build());
        let (started, making) = std::sync::mpsc::channel();
        let loader = {
            let (cache, other) = (cache.clone(), other.clone());
            std::thread::spawn(move || {
                let make = || {
                    started.send(()).unwrap();
                    std::thread::sleep(Duration::from_millis(50));
                    // Waits for the reader below to leave its section.
                    other.synchronize();
                    1u64
                };
                cache.read_or_insert_with(1u32, make, |v| *v)
            })
        };
        making.recv().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let (c, o) = (cache.clone(), other.clone());
        std::thread::spawn(move || {
            let read = |c: &RcuCache<u32, u64>| c.read_or_insert_with(1u32, || 2u64, |v| *v);
            let got = if o.flavor() == rcu_reclaim::Flavor::Qsbr {
                let thread = o.register_qsbr_thread();
                let got = read(&c);
                drop(thread);
                got
            } else {
                let guard = o.read_lock();
                let got = read(&c);
                drop(guard);
                got
            };
            tx.send(got).unwrap();
        });
        let got = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("a miss inside another domain's section waited for a make that waits for it");
        assert!(got == 1 || got == 2, "{got}");
        assert_eq!(loader.join().unwrap(), 1);
    }
}

/// The pass a pressure event runs (`Reclaimer::shrink`: priority 2 for a
/// critical event, 4 for a medium one) shrinks a cache of a few large
/// values too: the kernel's share of 3 entries at priority 2, or 15 at 4,
/// rounds down to none, and such a cache (here 3 or 15 MiB) never gave
/// anything back however many events came.
#[test]
fn a_pressure_pass_shrinks_a_cache_of_a_few_large_values() {
    let rcu = on_demand();
    // A cache of `n` entries of 1 MiB, alone with its reclaimer.
    let cache_of = |n: u32| {
        let reclaimer = Arc::new(Reclaimer::new(&rcu));
        let cache = RcuCache::builder()
            .rcu(&rcu)
            .max_bytes(64 << 20)
            .reclaimer(&reclaimer)
            .build();
        for k in 0..n {
            assert!(cache.insert(k, vec![0u8; 1 << 20]));
        }
        assert_eq!(cache.len(), n as usize);
        (reclaimer, cache)
    };
    let (reclaimer, cache) = cache_of(3);
    let done = reclaimer.shrink(2); // critical
    assert_eq!(cache.len(), 2, "{done:?}");
    assert!(done.queued_via_rcu_bytes >= 1 << 20, "{done:?}");
    // Down to the last entry, one event at a time; an empty cache gives
    // nothing and is not scanned.
    while !cache.is_empty() {
        let before = cache.len();
        reclaimer.shrink(2);
        assert!(cache.len() < before);
    }
    assert_eq!(reclaimer.shrink(2).queued_via_rcu_bytes, 0);
    let (reclaimer, cache) = cache_of(15);
    let done = reclaimer.shrink(4); // medium
    assert_eq!(cache.len(), 14, "{done:?}");
    drop(cache);
    rcu.barrier();
    assert_eq!(rcu.pending_bytes(), 0);
}

/// After a shrink the capacity stays lowered (`regrow_after`): an entry
/// heavier than it is refused, as one heavier than `max_bytes` is. It was
/// inserted, reported cached, and then evicted with every other entry.
#[test]
fn an_entry_heavier_than_the_lowered_capacity_is_refused_and_evicts_nothing() {
    let rcu = on_demand();
    let reclaimer = Arc::new(Reclaimer::new(&rcu));
    let cache = RcuCache::builder()
        .rcu(&rcu)
        .max_bytes(16 << 20)
        .shards(1)
        .regrow_after(Duration::from_secs(3600))
        .reclaimer(&reclaimer)
        .build();
    for k in 0..4u32 {
        assert!(cache.insert(k, vec![0u8; 3 << 20]));
    }
    reclaimer.shrink(2); // half: the capacity is held at what is left
    let (len, bytes, cap) = (cache.len(), cache.bytes(), cache.capacity_bytes());
    assert_eq!(len, 2);
    assert!(cap < 8 << 20, "lowered to what is left: {cap}");
    // Under max_bytes, over the capacity now: refused, nothing evicted.
    assert!(!cache.insert(100, vec![1u8; 12 << 20]));
    assert_eq!((cache.len(), cache.bytes()), (len, bytes));
    {
        let guard = rcu.read_lock();
        assert!(cache.get(&100, &guard).is_none());
        // get_or_insert_with hands it out for the section, caches nothing.
        let v = cache.get_or_insert_with(101, || vec![2u8; 12 << 20], &guard);
        assert_eq!(v.len(), 12 << 20);
    }
    assert_eq!((cache.len(), cache.bytes()), (len, bytes));
    // A key that is cached loses its older value, as over max_bytes.
    let cached = (0..4u32)
        .find(|k| cache.get(k, &rcu.read_lock()).is_some())
        .unwrap();
    assert!(!cache.insert(cached, vec![3u8; 12 << 20]));
    assert!(cache.get(&cached, &rcu.read_lock()).is_none());
    assert_eq!(cache.len(), len - 1);
    // What fits the lowered capacity is cached.
    assert!(cache.insert(200, vec![4u8; 1 << 20]));
    assert!(cache.get(&200, &rcu.read_lock()).is_some());
    drop(cache);
    rcu.barrier();
    assert_eq!(rcu.pending_bytes(), 0);
}

/// A refused insert (the entry is heavier than the cache) for a key that
/// is cached must not leave the older value to be served: the caller has
/// a newer one, and a cache-aside reader would read the stale one for as
/// long as it stays cached.
#[test]
fn a_refused_replacement_leaves_no_stale_value_behind() {
    let rcu = on_demand();
    let w = RcuCache::<u32, Vec<u8>>::ENTRY_OVERHEAD + 1000;
    let cache = RcuCache::builder().rcu(&rcu).max_bytes(10 * w).build();
    assert!(cache.insert(1, vec![1u8; 1000]));
    assert!(cache.insert(2, vec![2u8; 1000]));
    assert!(
        !cache.insert(1, vec![9u8; 20 * w]),
        "heavier than the cache"
    );
    {
        let guard = rcu.read_lock();
        assert_eq!(
            cache.get(&1, &guard),
            None,
            "the old value of key 1 is stale"
        );
        assert_eq!(
            cache.get(&2, &guard).map(|v| v[0]),
            Some(2),
            "other keys stay"
        );
    }
    assert_eq!((cache.len(), cache.bytes()), (1, w));
    rcu.barrier();
    assert_eq!(rcu.pending_bytes(), 0);
    // A refused insert of a key that is not cached changes nothing.
    assert!(!cache.insert(3, vec![9u8; 20 * w]));
    assert_eq!((cache.len(), cache.bytes()), (1, w));
}

#[test]
fn get_or_insert_with_caches_no_entry_heavier_than_the_capacity() {
    let rcu = on_demand();
    let w = RcuCache::<u32, Vec<u8>>::ENTRY_OVERHEAD + 1000;
    let cache = RcuCache::builder().rcu(&rcu).max_bytes(10 * w).build();
    for k in 0..10u32 {
        assert!(cache.insert(k, vec![0u8; 1000]));
    }
    let (len, bytes) = (cache.len(), cache.bytes());
    assert_eq!((len, bytes), (10, 10 * w));
    // `insert` refuses a value heavier than the cache...
    assert!(!cache.insert(100, vec![1u8; 20 * w]));
    assert_eq!((cache.len(), cache.bytes()), (len, bytes));
    // ... and so does `get_or_insert_with`: it hands the value out for
    // the guard's section, caches nothing and evicts nothing for it (it
    // emptied the cache).
    {
        let guard = rcu.read_lock();
        let v = cache.get_or_insert_with(100, || vec![1u8; 20 * w], &guard);
        assert_eq!((v.len(), v[0]), (20 * w, 1));
        assert!(cache.get(&100, &guard).is_none());
    }
    assert_eq!((cache.len(), cache.bytes()), (len, bytes));
    // A weigher that claims half the address space: the bytes wrapped
    // past zero, so the entry stayed cached and evicted nothing (debug:
    // an overflow panic in the policy's queue).
    let cache = RcuCache::builder()
        .rcu(&rcu)
        .max_bytes(1 << 20)
        .weigher(|_: &u32, v: &u32| if *v == 0 { isize::MAX as usize } else { 10 })
        .build();
    assert!(cache.insert(1, 1));
    let bytes = cache.bytes();
    {
        let guard = rcu.read_lock();
        assert_eq!(*cache.get_or_insert_with(2, || 0, &guard), 0);
    }
    assert_eq!((cache.len(), cache.bytes()), (1, bytes));
    drop(cache);
    rcu.barrier();
    assert_eq!(rcu.pending_bytes(), 0);
}

/// A key whose `Eq` panics while `PANIC_EQ` is set and it is key 0.
#[derive(Clone, Debug)]
struct Touchy(u32);

impl std::hash::Hash for Touchy {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

static PANIC_EQ: AtomicBool = AtomicBool::new(false);

impl PartialEq for Touchy {
    fn eq(&self, other: &Self) -> bool {
        if (self.0 == 0 || other.0 == 0) && PANIC_EQ.load(Ordering::SeqCst) {
            panic!("Touchy(0) refuses to be compared");
        }
        self.0 == other.0
    }
}

impl Eq for Touchy {}

impl rcu_reclaim::ReclaimSize for Touchy {
    fn reclaim_size(&self) -> usize {
        size_of::<Self>()
    }
}

/// Eviction looked an entry up by its key: when the key's `Eq` panicked
/// there, the queue item was already gone and the entry stayed in the
/// cache, counted, and could never be evicted nor cleared (and the panic
/// poisoned the shard's lock). Eviction and `clear` now find entries by
/// hash and id, never calling the key's `Eq`: the key that would panic is
/// evicted and cleared like any other.
#[test]
fn a_key_whose_eq_panics_is_evicted_and_cleared_without_calling_it() {
    let cache: RcuCache<Touchy, u64> = RcuCache::builder()
        .max_bytes(4 * RcuCache::<Touchy, u64>::ENTRY_OVERHEAD)
        .build();
    for k in 0..4 {
        assert!(cache.insert(Touchy(k), 1));
    }
    assert_eq!(cache.len(), 4);
    PANIC_EQ.store(true, Ordering::SeqCst);
    // Touchy(0) is the oldest: this insert evicts it.
    let r = std::panic::catch_unwind(|| cache.insert(Touchy(10), 1));
    assert!(r.is_ok());
    assert!(cache
        .get(&Touchy(10), &cache.domain().read_lock())
        .is_some());
    assert_eq!(cache.len(), 4);
    assert!(cache.insert(Touchy(0), 2));
    let r = std::panic::catch_unwind(|| cache.clear());
    PANIC_EQ.store(false, Ordering::SeqCst);
    assert!(r.is_ok());
    assert_eq!((cache.len(), cache.bytes()), (0, 0));
    cache.domain().barrier();
}

/// A value that counts itself alive.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// `drop(cache); rcu.barrier()` frees every entry the cache held, even
/// while another thread's reclaim passes keep scanning it: dropping the
/// cache unregisters its shrinker, which waits for a pass in its scan, so
/// no pass holds the cache past the drop (before, a pass in flight could
/// keep it alive and its entries were retired after the barrier).
#[test]
fn a_dropped_cache_is_freed_by_the_next_barrier_while_reclaim_runs() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let reclaimer = Arc::new(Reclaimer::new(&rcu));
    let stop = AtomicBool::new(false);
    let alive = Arc::new(AtomicUsize::new(0));
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                reclaimer.shrink(0);
            }
        });
        // Stops the reclaiming thread however the rounds end (a failed
        // assertion must not leave the scope waiting for it).
        let _stop = StopOnDrop(&stop);
        let (rounds, keys) = if cfg!(miri) { (3, 40) } else { (200, 200u32) };
        for round in 0..rounds {
            let cache = RcuCache::builder()
                .reclaimer(&reclaimer)
                .max_bytes(64 << 10)
                .weigher(|_: &u32, _: &Counted| 512)
                .build();
            for k in 0..keys {
                alive.fetch_add(1, Ordering::SeqCst);
                cache.insert(k, Counted(alive.clone()));
            }
            drop(cache);
            rcu.barrier();
            assert_eq!(
                alive.load(Ordering::SeqCst),
                0,
                "round {round}: entries of a dropped cache outlived the barrier"
            );
        }
    });
}

#[test]
fn inserts_on_a_qsbr_thread_that_never_reports_are_warned_about_once() {
    let rcu = Rcu::new(Config::new().flavor(rcu_reclaim::Flavor::Qsbr)).unwrap();
    let cache = RcuCache::<u32, Vec<u8>>::builder()
        .rcu(&rcu)
        .max_bytes(4 << 20)
        .build();
    let mut me = rcu.register_qsbr_thread();
    let log = common::Captured::default();
    {
        let _on = log.on_this_thread();
        for k in 0..200u32 {
            cache.insert(k, vec![k as u8; 64 << 10]); // never a quiescent state
        }
    }
    let text = log.text();
    assert!(
        text.contains("online QSBR thread") && text.contains("quiescent_state()"),
        "{text}"
    );
    assert_eq!(text.matches("online QSBR thread").count(), 1, "{text}");
    me.offline_while(|| rcu.barrier());
}

/// `get_or_insert_with` of entries too heavy to cache (linked, then
/// unlinked at once, the caller reading the value under its guard) races
/// with inserts, removes and clears of the same keys and with the
/// shrinker under a pressure signal: no reader sees a freed value, and
/// every value is dropped exactly once.
#[test]
fn too_heavy_entries_read_under_the_guard_race_safely_with_writers_and_the_shrinker() {
    use common::poison::{Drops, Val};
    use rcu_reclaim::pressure::NodeMask;
    common::within(Duration::from_secs(30), "race", || {
        let rcu = Rcu::new(Config::new().lazy_delay(Duration::from_millis(1))).unwrap();
        let drops = Drops::new(4_000_000);
        // Room for about 20 entries; every 4th key's value outweighs it all.
        let cache: RcuCache<u64, Val> = RcuCache::builder()
            .rcu(&rcu)
            .max_bytes(20 * (RcuCache::<u64, Val>::ENTRY_OVERHEAD + 64))
            .shards(2)
            .weigher(|k: &u64, _: &Val| if k % 4 == 0 { 1 << 30 } else { 64 })
            .build();
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            let _stop = StopOnDrop(&stop);
            for t in 0..3u64 {
                let (cache, drops, stop, rcu) = (&cache, &drops, &stop, &rcu);
                s.spawn(move || {
                    let mut i = t;
                    while !stop.load(Ordering::Relaxed) {
                        let k = i % 64;
                        {
                            let g = rcu.read_lock();
                            let v = cache.get_or_insert_with(k, || Val::new(drops, k), &g);
                            v.check(k);
                            if let Some(v) = cache.get(&(k ^ 1), &g) {
                                v.check(k ^ 1);
                            }
                            if i % 7 == 0 {
                                cache.insert(k, Val::new(drops, k));
                            }
                            if i % 11 == 0 {
                                cache.remove(&(k ^ 2));
                            }
                            v.check(k);
                        }
                        if i % 500 == 0 {
                            cache.clear();
                        }
                        i += 3;
                    }
                });
            }
            let start = Instant::now();
            while start.elapsed() < Duration::from_millis(400) {
                let _p = rcu.pressure_start_all();
                rcu.run_callbacks(&NodeMask::all(), 0);
                std::thread::yield_now();
            }
        });
        drop(cache);
        rcu.barrier();
        drops.assert_each_dropped_once();
    });
}

/// Shard counts and byte bounds at their extremes (0, 1, odd, past the
/// most shards, `usize::MAX`) build a working cache: no arithmetic
/// overflow, no division by zero.
#[test]
fn extreme_shard_counts_and_byte_bounds_build_a_working_cache() {
    for shards in [0usize, 1, 3, 1 << 20, usize::MAX] {
        for max in [0usize, 1, 100, usize::MAX] {
            let cache: RcuCache<u32, Vec<u8>> = RcuCache::builder()
                .rcu(&on_demand())
                .max_bytes(max)
                .shards(shards)
                .regrow_after(Duration::MAX)
                .build();
            for i in 0..100u32 {
                cache.insert(i, vec![0; 10]);
            }
            assert!(cache.bytes() <= max, "{shards} shards, {max} bytes");
            {
                let g = cache.domain().read_lock();
                assert_eq!(
                    cache.get_or_insert_with(1000, || vec![1; 100], &g).len(),
                    100
                );
            }
            cache.clear();
            assert_eq!((cache.len(), cache.bytes()), (0, 0));
        }
    }
}

/// `iter` walks every cached entry once, and a walk is no use of the
/// entries: two caches fed the same inserts, one walked after each, evict
/// the same keys (a walk that counted as hits would keep every entry it
/// passed).
#[test]
fn iter_walks_every_entry_and_leaves_eviction_as_it_was() {
    let rcu = on_demand();
    let build = || -> RcuCache<u32, Vec<u8>> {
        RcuCache::builder()
            .rcu(&rcu)
            .shards(1)
            .max_bytes(16 * (1024 + RcuCache::<u32, Vec<u8>>::ENTRY_OVERHEAD + 24))
            .build()
    };
    let (walked, plain) = (build(), build());
    for key in 0..64u32 {
        walked.insert(key, vec![key as u8; 1024]);
        plain.insert(key, vec![key as u8; 1024]);
        let guard = rcu.read_lock();
        let mut seen: Vec<u32> = walked.iter(&guard).map(|(k, _)| *k).collect();
        let n = seen.len();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), n, "each entry once");
        assert_eq!(n, walked.len());
        for (k, v) in walked.iter(&guard) {
            assert_eq!(v, &vec![*k as u8; 1024]);
        }
    }
    let guard = rcu.read_lock();
    let keys = |c: &RcuCache<u32, Vec<u8>>| {
        let mut k: Vec<u32> = c.iter(&guard).map(|(k, _)| *k).collect();
        k.sort_unstable();
        k
    };
    assert!(walked.len() < 64, "the cache evicted");
    assert_eq!(keys(&walked), keys(&plain));
    drop(guard);
    // A guard of another domain is refused, naming the cache.
    let other = on_demand();
    let guard = other.read_lock();
    let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        walked.iter(&guard).count();
    }))
    .unwrap_err();
    let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("RcuCache used with a guard"), "{msg}");
    drop(guard);
    drop((walked, plain));
    rcu.barrier();
}

/// A value that counts its drops.
struct Dropped(Vec<u8>, Arc<AtomicUsize>);

impl Drop for Dropped {
    fn drop(&mut self) {
        self.1.fetch_add(1, Ordering::Relaxed);
    }
}

rcu_reclaim::reclaim_size!(Dropped { 0 });

/// `retain` and `remove_if` remove exactly what their closures reject,
/// book it out of the cache's bytes, free it once after a grace period,
/// and leave the cache's bound working: a churn past its capacity after
/// them stays within it.
#[test]
fn retain_and_remove_if_remove_what_they_reject_and_the_bound_holds_after() {
    let rcu = on_demand();
    let max = 256 << 10;
    let cache = RcuCache::builder().rcu(&rcu).max_bytes(max).build();
    let drops = Arc::new(AtomicUsize::new(0));
    for k in 0..100u32 {
        assert!(cache.insert(k, Dropped(vec![k as u8; 1000], drops.clone())));
    }
    let before = cache.bytes();
    let one = cache.bytes() / 100;
    cache.retain(|k, v| {
        assert_eq!(v.0[0], *k as u8, "each key offered with its own value");
        k % 3 != 0
    });
    assert_eq!(cache.len(), 66);
    assert_eq!(cache.bytes(), before - 34 * one);
    // A predicate that refuses removes nothing; one that accepts, the key.
    assert!(!cache.remove_if(&1, |v| v.0.len() != 1000));
    assert!(cache.remove_if(&1, |v| v.0.len() == 1000));
    assert!(!cache.remove_if(&3, |_| unreachable!("3 was removed by retain")));
    assert_eq!(cache.len(), 65);
    assert_eq!(cache.bytes(), before - 35 * one);
    {
        let guard = rcu.read_lock();
        assert!(cache.get(&2, &guard).is_some());
        assert!(cache.get(&3, &guard).is_none());
    }
    rcu.barrier();
    assert_eq!(
        drops.load(Ordering::Relaxed),
        35,
        "each rejected value dropped once"
    );
    // The policy's books still match the cache: a churn of several times
    // its capacity stays within it.
    let mut rng = Rng(7);
    for _ in 0..2000 {
        let len = 1 + rng.index(4 << 10);
        cache.insert(
            1000 + rng.index(500) as u32,
            Dropped(vec![1; len], drops.clone()),
        );
        assert!(cache.bytes() <= max, "{} > {max}", cache.bytes());
    }
    cache.clear();
    assert_eq!(cache.bytes(), 0);
    drop(cache);
    rcu.barrier();
    assert_eq!(drops.load(Ordering::Relaxed), 100 + 2000);
}

/// A `retain` whose closure writes to the same cache would deadlock on
/// the key's lock: it panics, naming the mistake, and the cache is left
/// usable.
#[test]
fn a_retain_that_writes_its_own_cache_panics_and_leaves_it_usable() {
    let rcu = on_demand();
    let cache = RcuCache::builder().rcu(&rcu).max_bytes(1 << 20).build();
    for k in 0..10u32 {
        cache.insert(k, k);
    }
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        cache.retain(|k, _| {
            cache.insert(k + 100, 0);
            true
        })
    }));
    let err = caught.unwrap_err();
    let msg = (err.downcast_ref::<String>().cloned())
        .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    assert!(msg.contains("deadlock"), "{msg}");
    assert!(cache.insert(50, 50));
    assert!(cache.remove(&50));
    assert_eq!(cache.len(), 10);
}

/// A child forked while another thread of the parent makes a key's value
/// in `read_or_insert_with`: that thread does not exist in the child, so
/// its load never ends there; a miss of the key in the child makes the
/// value itself instead of waiting for it for ever.
#[test]
fn a_load_in_flight_at_a_fork_does_not_hold_up_the_child() {
    let rcu = on_demand();
    let cache = Arc::new(RcuCache::builder().rcu(&rcu).max_bytes(1 << 20).build());
    let (making, made) = (std::sync::mpsc::channel(), std::sync::mpsc::channel::<()>());
    let (c, tx, rx) = (cache.clone(), making.0, made.1);
    let loader = std::thread::spawn(move || {
        c.read_or_insert_with(
            1u32,
            || {
                tx.send(()).unwrap();
                rx.recv().unwrap(); // until the fork is over
                vec![1u8; 10]
            },
            Vec::len,
        )
    });
    making.1.recv().unwrap();
    let status = common::in_forked_child(&rcu, || {
        cache.read_or_insert_with(1u32, || vec![2u8; 20], Vec::len) == 20
    });
    assert_eq!(status, 0, "the child's miss did not make its own value");
    made.0.send(()).unwrap();
    assert_eq!(loader.join().unwrap(), 10);
    drop(cache);
    rcu.barrier();
}

/// A value that is never cached (heavier than the capacity): threads that
/// miss it together wait for one load at most, then make their own at
/// once, rather than taking turns one `make` after another. Before, 8
/// threads' `make`s of 20 ms ran one at a time, and a call waited through
/// most of them.
#[test]
fn a_value_that_is_never_cached_is_made_side_by_side_after_one_wait() {
    let rcu = on_demand();
    let cache = Arc::new(RcuCache::builder().rcu(&rcu).max_bytes(4096).build());
    let threads = 8;
    let make_takes = Duration::from_millis(20);
    let start = Arc::new(std::sync::Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (cache, start) = (cache.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                let t = Instant::now();
                let make = || {
                    std::thread::sleep(make_takes);
                    vec![0u8; 1 << 20]
                };
                assert_eq!(cache.read_or_insert_with(1u32, make, Vec::len), 1 << 20);
                t.elapsed()
            })
        })
        .collect();
    let slowest = handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .max()
        .unwrap();
    // One wait and one make of its own: 40 ms, with room for a loaded
    // machine; one after another, 8 makes took 160 ms at least.
    assert!(
        slowest < make_takes * 6,
        "a call took {slowest:?}: the makes ran one after another"
    );
    assert!(cache.is_empty());
    drop(cache);
    rcu.barrier();
}
