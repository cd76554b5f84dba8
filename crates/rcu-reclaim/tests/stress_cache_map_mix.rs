//! Stress of `RcuCache` and `RcuHashMap` with every write mixed: several
//! writers run `insert`, `remove`, `remove_if`, `retain`, `clear`,
//! `get_or_insert_with`, `read_or_insert_with` (cache) and `update`,
//! `get_or_insert_with`, growth and shrink of the table (map) while
//! readers hold guards across whole walks, the shrinker runs (pressure
//! from a `SyntheticSource`) and the capacity regrows. Values poison
//! themselves on drop: a reader that sees a poisoned value read freed (or
//! dropped) memory. After the writers stop: the cache's `bytes()` and
//! `len()` equal what a walk finds, the capacity holds, `clear` +
//! `barrier` leave nothing booked, and every value ever made is dropped
//! exactly once. Keys that no write removes are always found.
//!
//! Each case runs about a second (`RCU_STRESS_SECS` for longer soaks);
//! a watchdog aborts the process, naming the case, if one hangs.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcu_reclaim::sources::{Level, SyntheticSource};
use rcu_reclaim::{Config, Flavor, Rcu, RcuCache, RcuCell, RcuHashMap};

mod common;
use common::rng::Rng;

const MAGIC: u64 = 0x5afe_5afe_5afe_5afe;
const POISON: u64 = 0xdead_dead_dead_dead;

#[derive(Default)]
struct Counts {
    made: AtomicUsize,
    dropped: AtomicUsize,
    double: AtomicUsize,
}

impl Counts {
    /// Once everything was freed: no value dropped twice, every value
    /// made dropped once.
    fn assert_each_dropped_once(&self) {
        assert_eq!(
            self.double.load(Ordering::Relaxed),
            0,
            "values dropped twice"
        );
        assert_eq!(
            self.dropped.load(Ordering::Relaxed),
            self.made.load(Ordering::Relaxed),
            "every value made is dropped once"
        );
    }
}

/// A value that checks itself and poisons itself on drop.
struct Val {
    magic: u64,
    key: u64,
    stamp: u64,
    body: Vec<u64>,
    counts: Arc<Counts>,
}

impl Val {
    fn new(key: u64, stamp: u64, words: usize, counts: &Arc<Counts>) -> Val {
        counts.made.fetch_add(1, Ordering::Relaxed);
        Val {
            magic: MAGIC,
            key,
            stamp,
            body: vec![key ^ stamp; words],
            counts: counts.clone(),
        }
    }

    #[track_caller]
    fn check(&self, key: u64) {
        assert_eq!(self.magic, MAGIC, "a dropped value was read (key {key})");
        assert_eq!(self.key, key, "a value under the wrong key");
        let want = self.key ^ self.stamp;
        assert!(
            self.body.iter().all(|&w| w == want),
            "a value's body was overwritten (key {key})"
        );
    }

    fn heap(&self) -> usize {
        self.body.len() * 8
    }
}

impl rcu_reclaim::ReclaimSize for Val {
    fn reclaim_size(&self) -> usize {
        std::mem::size_of::<Self>() + self.heap()
    }
}

impl Drop for Val {
    fn drop(&mut self) {
        if self.magic != MAGIC {
            self.counts.double.fetch_add(1, Ordering::Relaxed);
        }
        self.magic = POISON;
        self.key = POISON;
        for w in &mut self.body {
            *w = POISON;
        }
        self.counts.dropped.fetch_add(1, Ordering::Relaxed);
    }
}

/// How long each case's threads run.
fn run_for() -> Duration {
    let default = if cfg!(miri) { 0.0 } else { 1.0 };
    Duration::from_secs_f64(common::env_or("RCU_STRESS_SECS", default))
}

/// Rounds each thread makes at least (Miri: only these).
const MIN_ROUNDS: u64 = if cfg!(miri) { 30 } else { 2_000 };

/// Aborts the process, naming `what`, unless the returned flag is set
/// within `limit` (not under Miri, whose clock runs with the instructions
/// it interprets and the sleeps it skips).
fn watchdog(what: &'static str, limit: Duration) -> Arc<AtomicBool> {
    let done = Arc::new(AtomicBool::new(false));
    if cfg!(miri) {
        return done;
    }
    let d = done.clone();
    std::thread::spawn(move || {
        let start = Instant::now();
        while !d.load(Ordering::Acquire) {
            if start.elapsed() > limit {
                eprintln!("stress_cache_map_mix: {what} hung for {limit:?}: aborting");
                std::process::abort();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    done
}

fn domain(flavor: Flavor) -> Rcu {
    Rcu::new(Config::new().flavor(flavor).on_demand()).unwrap()
}

type Cache = RcuCache<u64, Val>;

fn build_cache(rcu: &Rcu, max: usize, shards: usize) -> (Cache, std::sync::mpsc::Sender<Level>) {
    let (events, source) = SyntheticSource::new();
    let cache = RcuCache::builder()
        .rcu(rcu)
        .max_bytes(max)
        .shards(shards)
        .weigher(|_: &u64, v: &Val| v.heap())
        .pressure_source(Box::new(source))
        .regrow_after(Duration::from_millis(30))
        .build();
    (cache, events)
}

const KEYS: u64 = 600;

/// One writer's round on the cache.
fn cache_write(cache: &Cache, rng: &mut Rng, counts: &Arc<Counts>, stamp: &AtomicU64) {
    let key = rng.below(KEYS);
    let s = stamp.fetch_add(1, Ordering::Relaxed);
    // Mostly small, now and then larger than a shrunk capacity.
    let words = if rng.below(64) == 0 {
        4_000
    } else {
        1 + rng.below(64) as usize
    };
    match rng.below(100) {
        0..=39 => {
            cache.insert(key, Val::new(key, s, words, counts));
        }
        40..=49 => {
            cache.remove(&key);
        }
        50..=59 => {
            cache.remove_if(&key, |v| {
                v.check(key);
                v.stamp % 2 == 0
            });
        }
        60..=74 => {
            let guard = cache.domain().read_lock();
            let v = cache.get_or_insert_with(key, || Val::new(key, s, words, counts), &guard);
            v.check(key);
        }
        75..=89 => {
            cache.read_or_insert_with(key, || Val::new(key, s, words, counts), |v| v.check(key));
        }
        90..=97 => {
            let guard = cache.domain().read_lock();
            for (k, v) in cache.iter(&guard) {
                v.check(*k);
            }
        }
        98 => {
            let m = rng.below(7);
            cache.retain(|k, v| {
                v.check(*k);
                (k ^ v.stamp) % 7 != m
            });
        }
        _ => {
            if rng.below(20) == 0 {
                cache.clear();
            }
        }
    }
}

/// A reader's round: a walk and lookups under one guard, held across a
/// second walk.
fn cache_read(cache: &Cache, rng: &mut Rng) {
    let guard = cache.domain().read_lock();
    let mut seen = 0;
    for (k, v) in cache.iter(&guard) {
        v.check(*k);
        seen += 1;
    }
    for _ in 0..16 {
        let key = rng.below(KEYS);
        if let Some(v) = cache.get(&key, &guard) {
            v.check(key);
        }
        if rng.below(4) == 0 {
            let _ = cache.contains_key(&key, &guard);
        }
    }
    for (k, v) in cache.iter(&guard) {
        v.check(*k);
    }
    std::hint::black_box(seen);
}

/// After every writer has stopped: what a walk finds is what the cache
/// counts, and within the capacity.
fn check_quiet_cache(cache: &Cache) {
    let guard = cache.domain().read_lock();
    let (mut n, mut bytes) = (0, 0);
    let mut keys = std::collections::HashSet::new();
    for (k, v) in cache.iter(&guard) {
        v.check(*k);
        assert!(keys.insert(*k), "key {k} walked twice in a quiet cache");
        assert!(cache.get(k, &guard).is_some(), "walked key {k} not found");
        n += 1;
        bytes += Cache::ENTRY_OVERHEAD + v.heap();
    }
    drop(guard);
    assert_eq!(cache.len(), n, "len() against the entries walked");
    assert_eq!(cache.bytes(), bytes, "bytes() against the entries walked");
    assert!(
        cache.bytes() <= cache.max_bytes(),
        "{} bytes held, max {}",
        cache.bytes(),
        cache.max_bytes()
    );
}

/// The end of a cache case: `clear` leaves nothing cached, booked or
/// waiting once a barrier has run; the cache dropped, every value made
/// was dropped once.
fn clear_then_drop(cache: Cache, rcu: &Rcu, counts: &Counts) {
    cache.clear();
    rcu.barrier();
    assert_eq!(cache.len(), 0);
    assert_eq!(cache.bytes(), 0, "bytes after clear");
    assert_eq!(rcu.pending_bytes(), 0, "pending after clear and barrier");
    drop(cache);
    rcu.barrier();
    counts.assert_each_dropped_once();
}

/// The cache case: `writers` writers, `readers` readers, a pressure
/// thread; then the quiet checks, `clear`, `barrier`, and the drop count.
fn cache_case(what: &'static str, flavor: Flavor, shards: usize, max: usize) {
    let done = watchdog(what, Duration::from_secs(120) + 4 * run_for());
    let rcu = domain(flavor);
    let counts = Arc::new(Counts::default());
    let (cache, events) = build_cache(&rcu, max, shards);
    let stop = AtomicBool::new(false);
    let stamp = AtomicU64::new(0);
    std::thread::scope(|s| {
        for t in 0..3u64 {
            let (cache, counts, stop, stamp) = (&cache, &counts, &stop, &stamp);
            s.spawn(move || {
                let mut rng = Rng(t + 1);
                let mut round = 0;
                while round < MIN_ROUNDS || !stop.load(Ordering::Relaxed) {
                    cache_write(cache, &mut rng, counts, stamp);
                    round += 1;
                }
            });
        }
        for t in 0..2u64 {
            let (cache, stop) = (&cache, &stop);
            s.spawn(move || {
                let mut rng = Rng(100 + t);
                let mut round = 0;
                while round < MIN_ROUNDS / 8 || !stop.load(Ordering::Relaxed) {
                    cache_read(cache, &mut rng);
                    round += 1;
                }
            });
        }
        if flavor == Flavor::Qsbr {
            // A registered QSBR reader: online between quiescent states,
            // holding up grace periods as QSBR readers do.
            let (cache, stop) = (&cache, &stop);
            s.spawn(move || {
                let mut me = cache.domain().register_qsbr_thread();
                let mut rng = Rng(77);
                let mut round = 0;
                while round < MIN_ROUNDS / 8 || !stop.load(Ordering::Relaxed) {
                    {
                        let guard = me.read_lock();
                        for (k, v) in cache.iter(&guard) {
                            v.check(*k);
                        }
                        let key = rng.below(KEYS);
                        if let Some(v) = cache.get(&key, &guard) {
                            v.check(key);
                        }
                    }
                    me.quiescent_state();
                    round += 1;
                }
            });
        }
        s.spawn(|| {
            let mut rng = Rng(7);
            let levels = [Level::Low, Level::Medium, Level::Critical];
            while !stop.load(Ordering::Relaxed) {
                let _ = events.send(levels[rng.below(3) as usize]);
                std::thread::sleep(Duration::from_millis(1 + rng.below(10)));
            }
        });
        std::thread::sleep(run_for());
        stop.store(true, Ordering::Relaxed);
    });
    check_quiet_cache(&cache);
    clear_then_drop(cache, &rcu, &counts);
    done.store(true, Ordering::Release);
}

#[test]
fn cache_mixed_writes_memb_4_shards() {
    cache_case("cache memb", Flavor::Memb, 4, 64 << 10);
}

#[test]
fn cache_mixed_writes_mb_1_shard() {
    cache_case("cache mb", Flavor::Mb, 1, 48 << 10);
}

#[test]
fn cache_mixed_writes_qsbr_domain() {
    cache_case("cache qsbr", Flavor::Qsbr, 2, 64 << 10);
}

/// Two caches on one domain, one dropped and built again while the
/// other's writes (and both shrinkers, driven by pressure) run; a budget
/// ties them to one reclaimer.
#[test]
fn caches_sharing_a_domain_one_dropped_while_the_other_reclaims() {
    use rcu_reclaim::reclaim::{MemoryBudget, Reclaimer};
    let done = watchdog("shared domain", Duration::from_secs(120) + 4 * run_for());
    let rcu = domain(Flavor::Memb);
    let counts = Arc::new(Counts::default());
    // A usage the pressure thread moves over and under the limit: the
    // writers' budget checks then reclaim through both shrinkers.
    let usage = Arc::new(AtomicUsize::new(0));
    let u = usage.clone();
    let reclaimer = Arc::new(Reclaimer::new(&rcu));
    reclaimer.set_oom_handler(|_| {});
    let budget = Arc::new(MemoryBudget::new(1 << 20, reclaimer, move || {
        u.load(Ordering::Relaxed)
    }));
    let make = || -> Cache {
        RcuCache::builder()
            .rcu(&rcu)
            .max_bytes(64 << 10)
            .shards(2)
            .weigher(|_: &u64, v: &Val| v.heap())
            .budget(&budget)
            .regrow_after(Duration::from_millis(20))
            .build()
    };
    let steady = make();
    let stop = AtomicBool::new(false);
    let stamp = AtomicU64::new(0);
    std::thread::scope(|s| {
        let (steady, counts, stop, stamp) = (&steady, &counts, &stop, &stamp);
        for t in 0..2u64 {
            s.spawn(move || {
                let mut rng = Rng(t + 11);
                let mut round = 0;
                while round < MIN_ROUNDS || !stop.load(Ordering::Relaxed) {
                    cache_write(steady, &mut rng, counts, stamp);
                    round += 1;
                }
            });
        }
        s.spawn(|| {
            let mut rng = Rng(99);
            let mut round = 0;
            while round < MIN_ROUNDS / 100 + 1 || !stop.load(Ordering::Relaxed) {
                let other = make();
                for _ in 0..200 {
                    cache_write(&other, &mut rng, counts, stamp);
                }
                // Dropped while the steady cache's writes reclaim (its
                // budget checks run both shrinkers).
                drop(other);
                round += 1;
            }
        });
        s.spawn(|| {
            let mut rng = Rng(6);
            while !stop.load(Ordering::Relaxed) {
                let over = rng.below(2) == 0;
                usage.store(if over { 2 << 20 } else { 0 }, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(1 + rng.below(5)));
            }
            // Under the limit for the writers' last rounds: over it, each
            // budget check reclaims directly (waiting for grace periods).
            usage.store(0, Ordering::Relaxed);
        });
        s.spawn(|| {
            let mut rng = Rng(5);
            let mut round = 0;
            while round < MIN_ROUNDS / 8 || !stop.load(Ordering::Relaxed) {
                cache_read(steady, &mut rng);
                round += 1;
            }
        });
        std::thread::sleep(run_for());
        stop.store(true, Ordering::Relaxed);
    });
    check_quiet_cache(&steady);
    clear_then_drop(steady, &rcu, &counts);
    done.store(true, Ordering::Release);
}

/// Keys of the map that no write touches: always found, and yielded
/// exactly once by every walk.
const STABLE: std::ops::Range<u64> = 1_000_000..1_000_064;
/// Keys only `update` writes, always to a value: always found.
const UPDATED: std::ops::Range<u64> = 2_000_000..2_000_032;

fn map_case(what: &'static str, flavor: Flavor) {
    let done = watchdog(what, Duration::from_secs(120) + 4 * run_for());
    let rcu = domain(flavor);
    let counts = Arc::new(Counts::default());
    let map: RcuHashMap<u64, Val> = RcuHashMap::new_in(&rcu);
    for k in STABLE.chain(UPDATED) {
        map.insert(k, Val::new(k, 0, 2, &counts));
    }
    let cell = RcuCell::new_in(&rcu, Box::new(Arc::new(Val::new(7, 0, 4, &counts))));
    let stop = AtomicBool::new(false);
    let stamp = AtomicU64::new(1);
    std::thread::scope(|s| {
        for t in 0..3u64 {
            let (map, counts, stop, stamp, cell) = (&map, &counts, &stop, &stamp, &cell);
            s.spawn(move || {
                let mut rng = Rng(t + 21);
                let mut round = 0;
                while round < MIN_ROUNDS || !stop.load(Ordering::Relaxed) {
                    let st = stamp.fetch_add(1, Ordering::Relaxed);
                    // A key range that grows and shrinks the table.
                    let key = rng.below(if round % 512 < 256 { 4096 } else { 64 });
                    match rng.below(100) {
                        0..=34 => {
                            map.insert(key, Val::new(key, st, 1, counts));
                        }
                        35..=54 => {
                            map.remove(&key);
                        }
                        55..=64 => {
                            map.remove_if(&key, |v| {
                                v.check(key);
                                v.stamp % 3 != 0
                            });
                        }
                        65..=74 => {
                            map.update(key, |old| {
                                if let Some(v) = old {
                                    v.check(key);
                                }
                                (st % 4 != 0).then(|| Val::new(key, st, 1, counts))
                            });
                        }
                        75..=84 => {
                            let k = UPDATED.start + rng.below(UPDATED.end - UPDATED.start);
                            map.update(k, |old| {
                                old.expect("an updated key went missing").check(k);
                                Some(Val::new(k, st, 2, counts))
                            });
                        }
                        85..=94 => {
                            let guard = map.domain().read_lock();
                            map.get_or_insert_with(key, || Val::new(key, st, 1, counts), &guard)
                                .check(key);
                        }
                        95 => {
                            cell.store(Box::new(Arc::new(Val::new(7, st, 4, counts))));
                        }
                        96 => {
                            // Drains the low keys, shrinking the table.
                            if rng.below(8) == 0 {
                                map.retain(|k, v| {
                                    v.check(*k);
                                    *k >= 1_000_000
                                });
                            }
                        }
                        _ => {
                            let m = rng.below(5);
                            map.retain(|k, v| {
                                v.check(*k);
                                *k >= 1_000_000 || (k ^ v.stamp) % 5 != m
                            });
                        }
                    }
                    round += 1;
                }
            });
        }
        if flavor == Flavor::Qsbr {
            let (map, stop) = (&map, &stop);
            s.spawn(move || {
                let mut me = map.domain().register_qsbr_thread();
                let mut round = 0;
                while round < MIN_ROUNDS / 8 || !stop.load(Ordering::Relaxed) {
                    {
                        let guard = me.read_lock();
                        let mut stable = 0;
                        for (k, v) in map.iter(&guard) {
                            v.check(*k);
                            stable += u64::from(STABLE.contains(k));
                        }
                        assert_eq!(stable, STABLE.end - STABLE.start, "a QSBR walk");
                    }
                    me.quiescent_state();
                    round += 1;
                }
            });
        }
        for t in 0..2u64 {
            let (map, stop, cell) = (&map, &stop, &cell);
            s.spawn(move || {
                let mut rng = Rng(200 + t);
                let mut round = 0;
                while round < MIN_ROUNDS / 8 || !stop.load(Ordering::Relaxed) {
                    let guard = map.domain().read_lock();
                    let mut stable = 0;
                    for (k, v) in map.iter(&guard) {
                        v.check(*k);
                        if STABLE.contains(k) {
                            stable += 1;
                        }
                    }
                    assert_eq!(
                        stable,
                        STABLE.end - STABLE.start,
                        "a walk did not yield every untouched key exactly once"
                    );
                    for _ in 0..8 {
                        let k = STABLE.start + rng.below(STABLE.end - STABLE.start);
                        map.get(&k, &guard)
                            .expect("an untouched key went missing")
                            .check(k);
                        let k = UPDATED.start + rng.below(UPDATED.end - UPDATED.start);
                        map.get(&k, &guard)
                            .expect("an updated key went missing")
                            .check(k);
                    }
                    // Held across a second walk.
                    for (k, v) in map.iter(&guard) {
                        v.check(*k);
                    }
                    drop(guard);
                    let v = cell.load_cloned().expect("the cell holds a value");
                    v.check(7);
                    round += 1;
                }
            });
        }
        std::thread::sleep(run_for());
        stop.store(true, Ordering::Relaxed);
    });
    {
        let guard = map.domain().read_lock();
        let walked = map.iter(&guard).count();
        assert_eq!(map.len(), walked, "len() against the entries walked");
        for k in STABLE.chain(UPDATED) {
            map.get(&k, &guard)
                .expect("a kept key went missing")
                .check(k);
        }
    }
    map.clear();
    rcu.barrier();
    assert!(map.is_empty());
    drop(map);
    drop(cell);
    rcu.barrier();
    assert_eq!(rcu.pending_bytes(), 0);
    counts.assert_each_dropped_once();
    done.store(true, Ordering::Release);
}

#[test]
fn map_mixed_writes_and_resizes_memb() {
    map_case("map memb", Flavor::Memb);
}

#[test]
fn map_mixed_writes_and_resizes_qsbr_domain() {
    map_case("map qsbr", Flavor::Qsbr);
}

/// Caches on one reclaimer, built, filled and dropped while other threads
/// run that reclaimer's shrinkers (`shrink`, and `reclaim`, which waits
/// for grace periods) and write a steady cache beside them.
#[test]
fn caches_dropped_while_another_thread_runs_their_shrinkers() {
    drop_under_shrink("drop under shrink", Flavor::Memb);
}

/// The same on a QSBR domain, the caches made, written and dropped by an
/// online QSBR thread (which reports a quiescent state after each).
#[test]
fn caches_dropped_by_an_online_qsbr_thread_while_another_runs_their_shrinkers() {
    drop_under_shrink("drop under shrink, qsbr", Flavor::Qsbr);
}

fn drop_under_shrink(what: &'static str, flavor: Flavor) {
    use rcu_reclaim::pressure::NodeMask;
    use rcu_reclaim::reclaim::Reclaimer;
    let done = watchdog(what, Duration::from_secs(120) + 4 * run_for());
    let rcu = domain(flavor);
    let reclaimer = Arc::new(Reclaimer::new(&rcu));
    // Reclaim with nothing left to evict reports out-of-memory: expected.
    reclaimer.set_oom_handler(|_| {});
    let counts = Arc::new(Counts::default());
    let make = |max: usize| -> Cache {
        RcuCache::builder()
            .rcu(&rcu)
            .max_bytes(max)
            .shards(4)
            .weigher(|_: &u64, v: &Val| v.heap())
            .reclaimer(&reclaimer)
            .regrow_after(Duration::from_millis(10))
            .build()
    };
    let steady = make(64 << 10);
    let stop = AtomicBool::new(false);
    let stamp = AtomicU64::new(0);
    std::thread::scope(|s| {
        let (steady, counts, stop, stamp, reclaimer) =
            (&steady, &counts, &stop, &stamp, &reclaimer);
        s.spawn(move || {
            let mut rng = Rng(31);
            let mut round = 0;
            while round < MIN_ROUNDS || !stop.load(Ordering::Relaxed) {
                cache_write(steady, &mut rng, counts, stamp);
                round += 1;
            }
        });
        s.spawn(move || {
            let mut rng = Rng(32);
            let mut round = 0;
            let mut online =
                (flavor == Flavor::Qsbr).then(|| steady.domain().register_qsbr_thread());
            while round < MIN_ROUNDS / 50 + 1 || !stop.load(Ordering::Relaxed) {
                if let Some(me) = online.as_mut() {
                    me.quiescent_state();
                }
                let other = make(16 << 10);
                for _ in 0..100 {
                    cache_write(&other, &mut rng, counts, stamp);
                }
                match rng.below(3) {
                    0 => {
                        // Inside a section of the domain, where the drop
                        // cannot wait for a pass scanning the cache: the
                        // pass frees the entries when it lets go.
                        let rcu = other.domain().clone();
                        let guard = rcu.read_lock();
                        drop(other);
                        drop(guard);
                    }
                    1 => {
                        // In an RCU callback: run by a barrier, or by the
                        // reclaim thread's pass (which may be scanning it).
                        let rcu = other.domain().clone();
                        rcu.call(move || drop(other));
                    }
                    _ => drop(other),
                }
                round += 1;
            }
        });
        s.spawn(move || {
            let mut rng = Rng(33);
            let mut round = 0;
            while round < MIN_ROUNDS / 50 + 1 || !stop.load(Ordering::Relaxed) {
                if rng.below(4) == 0 {
                    let _ = reclaimer.reclaim(8 << 10, &NodeMask::all());
                } else {
                    reclaimer.shrink(rng.below(5) as u8);
                }
                round += 1;
            }
        });
        s.spawn(move || {
            let mut rng = Rng(34);
            let mut round = 0;
            while round < MIN_ROUNDS / 8 || !stop.load(Ordering::Relaxed) {
                cache_read(steady, &mut rng);
                round += 1;
            }
        });
        std::thread::sleep(run_for());
        stop.store(true, Ordering::Relaxed);
    });
    check_quiet_cache(&steady);
    clear_then_drop(steady, &rcu, &counts);
    done.store(true, Ordering::Release);
}

/// A cache too large to evict, no pressure: each writer owns a key range
/// and keeps a model of it, so every call's answer is checked exactly
/// (`remove`, `remove_if`, `get_or_insert_with`, `read_or_insert_with`,
/// `get`), while the others' `retain` walks (keeping what is not theirs)
/// and the table's resizes run beside it. Untouched keys are always found
/// and yielded once per walk; at the end the cache holds exactly the
/// models' entries, and `bytes()` is their weight.
#[test]
fn cache_without_eviction_matches_each_writers_model() {
    use std::collections::HashMap;
    let done = watchdog("cache model", Duration::from_secs(120) + 4 * run_for());
    let rcu = domain(Flavor::Memb);
    let counts = Arc::new(Counts::default());
    let cache: Cache = RcuCache::builder()
        .rcu(&rcu)
        .max_bytes(1 << 40)
        .shards(4)
        .weigher(|_: &u64, v: &Val| v.heap())
        .build();
    const PINNED: std::ops::Range<u64> = 900_000..900_050;
    for k in PINNED {
        cache.insert(k, Val::new(k, 0, 1, &counts));
    }
    let stop = AtomicBool::new(false);
    let stamp = AtomicU64::new(1);
    let models: Vec<HashMap<u64, (u64, usize)>> = std::thread::scope(|s| {
        let writers: Vec<_> = (0..3u64)
            .map(|t| {
                let (cache, counts, stop, stamp) = (&cache, &counts, &stop, &stamp);
                s.spawn(move || {
                    let mut rng = Rng(t + 41);
                    let mut model: HashMap<u64, (u64, usize)> = HashMap::new();
                    let base = t * 100_000;
                    let mine = |k: u64| (base..base + 100_000).contains(&k);
                    let mut round = 0;
                    while round < MIN_ROUNDS || !stop.load(Ordering::Relaxed) {
                        // Phases of many and few keys: the table grows and
                        // shrinks.
                        let span = if (round / 300) % 2 == 0 { 800 } else { 16 };
                        let k = base + rng.below(span);
                        let st = stamp.fetch_add(1, Ordering::Relaxed);
                        let words = 1 + rng.below(3) as usize;
                        let want = model.get(&k).copied();
                        match rng.below(100) {
                            0..=34 => {
                                assert!(cache.insert(k, Val::new(k, st, words, counts)));
                                model.insert(k, (st, words));
                            }
                            35..=49 => {
                                assert_eq!(cache.remove(&k), want.is_some(), "remove({k})");
                                model.remove(&k);
                            }
                            50..=59 => {
                                let removed = cache.remove_if(&k, |v| {
                                    v.check(k);
                                    assert_eq!(Some((v.stamp, v.body.len())), want);
                                    v.stamp % 2 == 0
                                });
                                assert_eq!(removed, want.is_some_and(|(st, _)| st % 2 == 0));
                                if removed {
                                    model.remove(&k);
                                }
                            }
                            60..=71 => {
                                let guard = cache.domain().read_lock();
                                let v = cache.get_or_insert_with(
                                    k,
                                    || Val::new(k, st, words, counts),
                                    &guard,
                                );
                                v.check(k);
                                let got = (v.stamp, v.body.len());
                                assert_eq!(got, want.unwrap_or((st, words)), "get_or_insert_with");
                                model.insert(k, got);
                            }
                            72..=83 => {
                                let got = cache.read_or_insert_with(
                                    k,
                                    || Val::new(k, st, words, counts),
                                    |v| {
                                        v.check(k);
                                        (v.stamp, v.body.len())
                                    },
                                );
                                assert_eq!(got, want.unwrap_or((st, words)), "read_or_insert_with");
                                model.insert(k, got);
                            }
                            84..=95 => {
                                let guard = cache.domain().read_lock();
                                let got = cache.get(&k, &guard).map(|v| {
                                    v.check(k);
                                    (v.stamp, v.body.len())
                                });
                                assert_eq!(got, want, "get({k})");
                            }
                            _ => {
                                let m = rng.below(4);
                                cache.retain(|k, v| {
                                    v.check(*k);
                                    !mine(*k) || (k ^ v.stamp) % 4 != m
                                });
                                model.retain(|k, (st, _)| (k ^ *st) % 4 != m);
                            }
                        }
                        round += 1;
                    }
                    model
                })
            })
            .collect();
        for t in 0..2u64 {
            let (cache, stop) = (&cache, &stop);
            s.spawn(move || {
                let mut rng = Rng(300 + t);
                let mut round = 0;
                while round < MIN_ROUNDS / 8 || !stop.load(Ordering::Relaxed) {
                    let guard = cache.domain().read_lock();
                    let mut pinned = 0;
                    for (k, v) in cache.iter(&guard) {
                        v.check(*k);
                        pinned += u64::from(PINNED.contains(k));
                    }
                    assert_eq!(
                        pinned,
                        PINNED.end - PINNED.start,
                        "a walk lost untouched keys"
                    );
                    let k = PINNED.start + rng.below(PINNED.end - PINNED.start);
                    cache
                        .get(&k, &guard)
                        .expect("an untouched key went missing")
                        .check(k);
                    round += 1;
                }
            });
        }
        std::thread::sleep(run_for());
        stop.store(true, Ordering::Relaxed);
        writers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let mut want: HashMap<u64, (u64, usize)> = PINNED.map(|k| (k, (0, 1))).collect();
    for m in models {
        want.extend(m);
    }
    {
        let guard = cache.domain().read_lock();
        let mut got = HashMap::new();
        for (k, v) in cache.iter(&guard) {
            assert!(
                got.insert(*k, (v.stamp, v.body.len())).is_none(),
                "{k} twice"
            );
        }
        assert_eq!(got, want, "the cache against the writers' models");
    }
    let bytes: usize = want
        .values()
        .map(|(_, w)| Cache::ENTRY_OVERHEAD + w * 8)
        .sum();
    assert_eq!(cache.len(), want.len());
    assert_eq!(cache.bytes(), bytes);
    clear_then_drop(cache, &rcu, &counts);
    done.store(true, Ordering::Release);
}

/// The map's writes against each writer's model of its own key range
/// (`insert`'s and `update`'s answers, `remove_if`, `get_or_insert_with`),
/// with the others' `retain` walks and the table's resizes beside them;
/// at the end the map holds exactly the models' entries.
#[test]
fn map_writes_match_each_writers_model() {
    use std::collections::HashMap;
    let done = watchdog("map model", Duration::from_secs(120) + 4 * run_for());
    let rcu = domain(Flavor::Memb);
    let counts = Arc::new(Counts::default());
    let map: RcuHashMap<u64, Val> = RcuHashMap::new_in(&rcu);
    let stop = AtomicBool::new(false);
    let stamp = AtomicU64::new(1);
    let models: Vec<HashMap<u64, u64>> = std::thread::scope(|s| {
        let writers: Vec<_> = (0..3u64)
            .map(|t| {
                let (map, counts, stop, stamp) = (&map, &counts, &stop, &stamp);
                s.spawn(move || {
                    let mut rng = Rng(t + 51);
                    let mut model: HashMap<u64, u64> = HashMap::new();
                    let base = t * 100_000;
                    let mine = |k: u64| (base..base + 100_000).contains(&k);
                    let mut round = 0;
                    while round < MIN_ROUNDS || !stop.load(Ordering::Relaxed) {
                        let span = if (round / 300) % 2 == 0 { 1000 } else { 8 };
                        let k = base + rng.below(span);
                        let st = stamp.fetch_add(1, Ordering::Relaxed);
                        let want = model.get(&k).copied();
                        match rng.below(100) {
                            0..=29 => {
                                let new = map.insert(k, Val::new(k, st, 1, counts));
                                assert_eq!(new, want.is_none(), "insert({k})");
                                model.insert(k, st);
                            }
                            30..=44 => {
                                assert_eq!(map.remove(&k), want.is_some(), "remove({k})");
                                model.remove(&k);
                            }
                            45..=54 => {
                                let removed = map.remove_if(&k, |v| {
                                    v.check(k);
                                    assert_eq!(Some(v.stamp), want);
                                    v.stamp % 2 == 0
                                });
                                assert_eq!(removed, want.is_some_and(|st| st % 2 == 0));
                                if removed {
                                    model.remove(&k);
                                }
                            }
                            55..=69 => {
                                let keep = st % 3 != 0;
                                let present = map.update(k, |old| {
                                    assert_eq!(old.map(|v| v.stamp), want, "update({k})");
                                    keep.then(|| Val::new(k, st, 1, counts))
                                });
                                assert_eq!(present, keep);
                                if keep {
                                    model.insert(k, st);
                                } else {
                                    model.remove(&k);
                                }
                            }
                            70..=84 => {
                                let guard = map.domain().read_lock();
                                let v = map.get_or_insert_with(
                                    k,
                                    || Val::new(k, st, 1, counts),
                                    &guard,
                                );
                                v.check(k);
                                assert_eq!(v.stamp, want.unwrap_or(st), "get_or_insert_with");
                                model.insert(k, v.stamp);
                            }
                            85..=95 => {
                                let guard = map.domain().read_lock();
                                let got = map.get(&k, &guard).map(|v| v.stamp);
                                assert_eq!(got, want, "get({k})");
                            }
                            _ => {
                                let m = rng.below(3);
                                map.retain(|k, v| {
                                    v.check(*k);
                                    !mine(*k) || (k ^ v.stamp) % 3 != m
                                });
                                model.retain(|k, st| (k ^ *st) % 3 != m);
                            }
                        }
                        round += 1;
                    }
                    model
                })
            })
            .collect();
        s.spawn(|| {
            let mut round = 0;
            while round < MIN_ROUNDS / 8 || !stop.load(Ordering::Relaxed) {
                let guard = map.domain().read_lock();
                for (k, v) in map.iter(&guard) {
                    v.check(*k);
                }
                round += 1;
            }
        });
        std::thread::sleep(run_for());
        stop.store(true, Ordering::Relaxed);
        writers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let mut want = HashMap::new();
    for m in models {
        want.extend(m);
    }
    {
        let guard = map.domain().read_lock();
        let got: HashMap<u64, u64> = map.iter(&guard).map(|(k, v)| (*k, v.stamp)).collect();
        assert_eq!(got, want, "the map against the writers' models");
        assert_eq!(map.len(), want.len());
    }
    drop(map);
    rcu.barrier();
    assert_eq!(rcu.pending_bytes(), 0);
    counts.assert_each_dropped_once();
    done.store(true, Ordering::Release);
}
