//! Keys, values, hashers and weighers that misbehave all at
//! once (a `Hash` that panics or is random, an `Eq` that panics or is not
//! reflexive, a `Clone` or `Drop` that panics, a `Drop` that writes back
//! into the same map or cache, a weigher that panics or answers 0,
//! `usize::MAX` or at random), single-threaded and with concurrent
//! writers, readers and resizes. What must hold: no hang, every key and
//! value made is dropped exactly once after the structure is dropped and
//! `barrier()` runs, `len` matches a walk once writes stop, and a cache's
//! `bytes()` is back to 0 after `clear()`.

mod common;
use common::StopOnDrop;

use std::hash::{BuildHasher, Hash, Hasher};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use rcu_reclaim::{Config, Rcu, RcuCache, RcuHashMap, ReclaimSize};

// ---------------------------------------------------------------- helpers

fn watchdog(secs: u64, f: impl FnOnce() + Send + 'static) {
    common::within(Duration::from_secs(secs), "the test body (a hang)", f)
}

thread_local! {
    /// Each thread's stream, seeded by its id.
    static RNG: std::cell::RefCell<common::rng::Rng> = std::cell::RefCell::new(common::rng::Rng({
        let mut h = std::collections::hash_map::DefaultHasher::new();
        std::thread::current().id().hash(&mut h);
        h.finish()
    }));
}

fn rnd() -> u64 {
    RNG.with(|r| r.borrow_mut().next())
}

fn chance(one_in: u64) -> bool {
    rnd() % one_in == 0
}

/// Whether the misbehaviours are switched on (off while the tests check
/// their counts at the end).
static WILD: AtomicBool = AtomicBool::new(true);

fn wild() -> bool {
    WILD.load(SeqCst)
}

// Counters, per test (each test runs in its own process only if run
// alone; so each test uses its own `Book`).
#[derive(Default)]
struct Book {
    keys_made: AtomicUsize,
    keys_dropped: AtomicUsize,
    vals_made: AtomicUsize,
    vals_dropped: AtomicUsize,
}

// ----------------------------------------------------------------- keys

/// Flags in a key's high bits.
const RANDOM_HASH: u64 = 1 << 40;
const PANIC_HASH: u64 = 1 << 41;
const NAN_EQ: u64 = 1 << 42;
const PANIC_EQ: u64 = 1 << 43;
const PANIC_CLONE: u64 = 1 << 44;
const PANIC_DROP: u64 = 1 << 45;

struct Wild {
    id: u64,
    book: Arc<Book>,
}

impl Wild {
    fn new(id: u64, book: &Arc<Book>) -> Wild {
        book.keys_made.fetch_add(1, SeqCst);
        Wild {
            id,
            book: book.clone(),
        }
    }
}

impl Clone for Wild {
    fn clone(&self) -> Self {
        if self.id & PANIC_CLONE != 0 && wild() && chance(4) {
            panic!("Wild::clone");
        }
        Wild::new(self.id, &self.book)
    }
}

impl Drop for Wild {
    fn drop(&mut self) {
        self.book.keys_dropped.fetch_add(1, SeqCst);
        if self.id & PANIC_DROP != 0 && wild() && !std::thread::panicking() && chance(4) {
            panic!("Wild::drop");
        }
    }
}

impl Hash for Wild {
    fn hash<H: Hasher>(&self, state: &mut H) {
        if self.id & PANIC_HASH != 0 && wild() && chance(4) {
            panic!("Wild::hash");
        }
        if self.id & RANDOM_HASH != 0 && wild() {
            state.write_u64(rnd());
        } else {
            state.write_u64(self.id);
        }
    }
}

impl PartialEq for Wild {
    fn eq(&self, other: &Self) -> bool {
        if (self.id | other.id) & PANIC_EQ != 0 && wild() && chance(4) {
            panic!("Wild::eq");
        }
        if self.id & NAN_EQ != 0 {
            return false;
        }
        self.id == other.id
    }
}
impl Eq for Wild {}

impl ReclaimSize for Wild {
    fn reclaim_size(&self) -> usize {
        std::mem::size_of::<Self>()
    }
}

// --------------------------------------------------------------- values

/// What a value does when dropped.
const VAL_PANIC_DROP: u64 = 1;
const VAL_REENTER: u64 = 2;
const VAL_SYNC: u64 = 4;
const VAL_PANIC_SIZE: u64 = 8;

type WildMap = RcuHashMap<Wild, Val>;

static REENTER_MAP: Mutex<Option<Weak<WildMap>>> = Mutex::new(None);
static REENTER_CACHE: Mutex<Option<Weak<RcuCache<Wild, Val>>>> = Mutex::new(None);

struct Val {
    flags: u64,
    book: Arc<Book>,
    rcu: Option<Rcu>,
    pad: Vec<u8>,
}

impl Val {
    fn new(flags: u64, book: &Arc<Book>, rcu: &Rcu) -> Val {
        book.vals_made.fetch_add(1, SeqCst);
        Val {
            flags,
            book: book.clone(),
            rcu: Some(rcu.clone()),
            pad: vec![0; (rnd() % 200) as usize],
        }
    }
}

impl Drop for Val {
    fn drop(&mut self) {
        self.book.vals_dropped.fetch_add(1, SeqCst);
        if !wild() {
            return;
        }
        if self.flags & VAL_REENTER != 0 && !std::thread::panicking() {
            // Writes into its own map / cache, from wherever it is dropped
            // (a callback, a barrier, a writer's retire, the map's drop).
            let map = REENTER_MAP.lock().unwrap().as_ref().and_then(Weak::upgrade);
            let rcu = self.rcu.clone().unwrap();
            if let Some(map) = map {
                let _ = catch_unwind(AssertUnwindSafe(|| {
                    let k = rnd() % 64;
                    map.insert(Wild::new(k, &self.book), Val::new(0, &self.book, &rcu));
                    map.remove(&Wild::new(rnd() % 64, &self.book));
                    let g = rcu.read_lock();
                    let _ = map.get(&Wild::new(k, &self.book), &g);
                }));
            }
            let cache = REENTER_CACHE
                .lock()
                .unwrap()
                .as_ref()
                .and_then(Weak::upgrade);
            if let Some(cache) = cache {
                let _ = catch_unwind(AssertUnwindSafe(|| {
                    let k = rnd() % 64;
                    cache.insert(Wild::new(k, &self.book), Val::new(0, &self.book, &rcu));
                    cache.remove(&Wild::new(rnd() % 64, &self.book));
                }));
            }
        }
        if self.flags & VAL_SYNC != 0 && !std::thread::panicking() {
            let rcu = self.rcu.clone().unwrap();
            let _ = catch_unwind(AssertUnwindSafe(|| {
                if chance(2) {
                    rcu.synchronize();
                } else {
                    rcu.barrier();
                }
            }));
        }
        if self.flags & VAL_PANIC_DROP != 0 && !std::thread::panicking() && chance(3) {
            panic!("Val::drop");
        }
    }
}

impl ReclaimSize for Val {
    fn reclaim_size(&self) -> usize {
        if self.flags & VAL_PANIC_SIZE != 0 && wild() && chance(3) {
            panic!("Val::reclaim_size");
        }
        std::mem::size_of::<Self>() + self.pad.capacity()
    }
}

fn key_flags() -> u64 {
    let mut f = 0;
    for flag in [
        RANDOM_HASH,
        PANIC_HASH,
        NAN_EQ,
        PANIC_EQ,
        PANIC_CLONE,
        PANIC_DROP,
    ] {
        if chance(12) {
            f |= flag;
        }
    }
    f
}

fn val_flags() -> u64 {
    let mut f = 0;
    for (flag, one_in) in [
        (VAL_PANIC_DROP, 10),
        (VAL_REENTER, 20),
        (VAL_SYNC, 40),
        (VAL_PANIC_SIZE, 10),
    ] {
        if chance(one_in) {
            f |= flag;
        }
    }
    f
}

fn quiet() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let msg = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_default();
            // While the misbehaviours are on, every panic is expected (the
            // probe's own, and the library's refusals of what its values'
            // `Drop`s try from callbacks): caught, not printed.
            if wild()
                || msg.starts_with("Wild::")
                || msg.starts_with("Val::")
                || msg.starts_with("Weigher")
            {
                return;
            }
            prev(info);
        }));
    });
}

// ------------------------------------------------------------------ map

fn map_op(map: &WildMap, rcu: &Rcu, book: &Arc<Book>, range: u64) {
    let id = (rnd() % range) | key_flags();
    let k = Wild::new(id, book);
    match rnd() % 10 {
        0..=2 => {
            map.insert(k, Val::new(val_flags(), book, rcu));
        }
        3 => {
            map.remove(&k);
        }
        4 => {
            map.update(k, |old| {
                if chance(8) {
                    panic!("Wild::update closure");
                }
                match old {
                    Some(_) if chance(2) => None,
                    _ => Some(Val::new(val_flags(), book, rcu)),
                }
            });
        }
        5 => {
            let g = rcu.read_lock();
            let _ = map.get_or_insert_with(
                k,
                || {
                    if chance(8) {
                        panic!("Wild::get_or_insert_with closure");
                    }
                    Val::new(val_flags(), book, rcu)
                },
                &g,
            );
        }
        6 => {
            map.remove_if(&k, |_| {
                if chance(8) {
                    panic!("Wild::remove_if pred");
                }
                chance(2)
            });
        }
        7 => {
            let g = rcu.read_lock();
            let _ = map.get(&k, &g);
            let _ = map.iter(&g).count();
        }
        8 => {
            if chance(50) {
                map.retain(|_, _| {
                    if chance(200) {
                        panic!("Wild::retain f");
                    }
                    chance(2)
                });
            } else if chance(200) {
                map.clear();
            } else {
                let g = rcu.read_lock();
                let _ = map.contains_key(&k, &g);
            }
        }
        _ => {
            // A burst that grows the table, then removes what it added.
            if chance(if cfg!(miri) { 3 } else { 20 }) {
                let base = 1 << 20 | (rnd() % (1 << 16)) << 24;
                for i in 0..BURST {
                    map.insert(Wild::new(base + i, book), Val::new(0, book, rcu));
                }
                for i in 0..BURST {
                    map.remove(&Wild::new(base + i, book));
                }
            }
        }
    }
}

fn check_map_end(map: Arc<WildMap>, rcu: &Rcu, book: &Arc<Book>) {
    WILD.store(false, SeqCst);
    rcu.barrier();
    {
        let g = rcu.read_lock();
        let walked = map.iter(&g).count();
        assert_eq!(walked, map.len(), "len drifted from the entries");
    }
    drop(map);
    rcu.barrier();
    rcu.barrier();
    let b = book;
    assert_eq!(
        b.vals_made.load(SeqCst),
        b.vals_dropped.load(SeqCst),
        "values made vs dropped"
    );
    assert_eq!(
        b.keys_made.load(SeqCst),
        b.keys_dropped.load(SeqCst),
        "keys made vs dropped"
    );
    assert_eq!(rcu.pending_bytes(), 0, "pending bytes left");
}

fn scale() -> usize {
    std::env::var("H1_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

/// Ops per run: a hundredth under Miri.
fn ops_of(ops: usize) -> usize {
    if cfg!(miri) {
        ops / 100
    } else {
        ops * scale()
    }
}

/// Entries of a burst that grows the table (past its 64 buckets).
const BURST: u64 = if cfg!(miri) { 130 } else { 600 };

fn run_map(threads: usize, ops: usize, rcu: Rcu, range: u64) {
    let ops = ops_of(ops);
    quiet();
    let book = Arc::new(Book::default());
    let map: Arc<WildMap> = Arc::new(RcuHashMap::new_in(&rcu));
    *REENTER_MAP.lock().unwrap() = Some(Arc::downgrade(&map));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (map, rcu, book) = (map.clone(), rcu.clone(), book.clone());
            std::thread::spawn(move || {
                for _ in 0..ops {
                    let _ = catch_unwind(AssertUnwindSafe(|| map_op(&map, &rcu, &book, range)));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    *REENTER_MAP.lock().unwrap() = None;
    check_map_end(map, &rcu, &book);
    WILD.store(true, SeqCst);
}

static SERIAL: Mutex<()> = Mutex::new(());

#[test]
fn map_single_threaded() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    watchdog(120, || {
        run_map(1, 20_000, Rcu::new(Config::new()).unwrap(), 256)
    });
}

#[test]
fn map_single_threaded_on_demand() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    watchdog(120, || {
        run_map(1, 20_000, Rcu::new(Config::new().on_demand()).unwrap(), 256)
    });
}

#[test]
fn map_concurrent() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    watchdog(240, || {
        run_map(4, 10_000, Rcu::new(Config::new()).unwrap(), 512)
    });
}

// ------------------------------------------------- constant hasher (map)

#[derive(Clone, Default)]
struct Constant;
struct ConstantHasher;
impl Hasher for ConstantHasher {
    fn finish(&self) -> u64 {
        0x5555
    }
    fn write(&mut self, _: &[u8]) {}
}
impl BuildHasher for Constant {
    type Hasher = ConstantHasher;
    fn build_hasher(&self) -> ConstantHasher {
        ConstantHasher
    }
}

#[test]
fn constant_hasher_map_degrades_but_works() {
    watchdog(240, || {
        let rcu = Rcu::new(Config::new()).unwrap();
        let map: Arc<RcuHashMap<u64, u64, Constant>> =
            Arc::new(RcuHashMap::with_capacity_and_hasher_in(0, Constant, &rcu));
        let start = Instant::now();
        let hs: Vec<_> = (0..3u64)
            .map(|t| {
                let map = map.clone();
                std::thread::spawn(move || {
                    for round in 0..3 {
                        for i in 0..1500 {
                            map.insert(t << 32 | i, round);
                        }
                        for i in 0..1500 {
                            assert!(map.remove(&(t << 32 | i)));
                        }
                    }
                })
            })
            .collect();
        let reader = {
            let (map, rcu) = (map.clone(), rcu.clone());
            std::thread::spawn(move || {
                for _ in 0..200 {
                    let g = rcu.read_lock();
                    let _ = map.iter(&g).count();
                    let _ = map.get(&7, &g);
                }
            })
        };
        for h in hs {
            h.join().unwrap();
        }
        reader.join().unwrap();
        assert!(map.is_empty());
        assert_eq!(
            map.capacity(),
            RcuHashMap::<u64, u64>::new_in(&rcu).capacity()
        );
        eprintln!("constant hasher: {:?}", start.elapsed());
    });
}

// ---------------------------------------------------------------- cache

struct WildWeigher;

static WEIGH_CALLS: AtomicUsize = AtomicUsize::new(0);

impl rcu_reclaim::cache::Weigher<Wild, Val> for WildWeigher {
    fn weigh(&self, _k: &Wild, v: &Val) -> usize {
        let n = WEIGH_CALLS.fetch_add(1, SeqCst);
        if !wild() {
            return v.pad.capacity();
        }
        match rnd() % 12 {
            0 => panic!("Weigher panics"),
            1 => 0,
            2 => usize::MAX,
            3 => usize::MAX / 2,
            4 => (n % 5000) * 3,
            5 => 1 << 14,
            _ => v.pad.capacity(),
        }
    }
}

fn cache_op(cache: &RcuCache<Wild, Val>, rcu: &Rcu, book: &Arc<Book>, range: u64) {
    let id = (rnd() % range) | key_flags();
    let k = Wild::new(id, book);
    match rnd() % 8 {
        0..=2 => {
            cache.insert(k, Val::new(val_flags(), book, rcu));
        }
        3 => {
            cache.remove(&k);
        }
        4 => {
            let g = rcu.read_lock();
            let _ = cache.get_or_insert_with(
                k,
                || {
                    if chance(8) {
                        panic!("Wild::cache get_or_insert_with closure");
                    }
                    Val::new(val_flags(), book, rcu)
                },
                &g,
            );
        }
        5 => {
            let _ = cache.read_or_insert_with(
                k,
                || {
                    if chance(8) {
                        panic!("Wild::cache make");
                    }
                    Val::new(val_flags(), book, rcu)
                },
                |v| {
                    if chance(16) {
                        panic!("Wild::cache read");
                    }
                    v.flags
                },
            );
        }
        6 => {
            let g = rcu.read_lock();
            let _ = cache.get(&k, &g);
            let _ = cache.contains_key(&k, &g);
        }
        _ => {
            if chance(300) {
                cache.clear();
            }
        }
    }
}

fn run_cache(threads: usize, ops: usize, rcu: Rcu, range: u64, shards: usize, max: usize) {
    let ops = ops_of(ops);
    quiet();
    let book = Arc::new(Book::default());
    let reclaimer = Arc::new(rcu_reclaim::reclaim::Reclaimer::new(&rcu));
    let cache: Arc<RcuCache<Wild, Val>> = Arc::new(
        RcuCache::builder()
            .max_bytes(max)
            .shards(shards)
            .weigher(WildWeigher)
            .reclaimer(&reclaimer)
            .rcu(&rcu)
            .build(),
    );
    *REENTER_CACHE.lock().unwrap() = Some(Arc::downgrade(&cache));
    let stop = Arc::new(AtomicBool::new(false));
    let shrinker = {
        let (reclaimer, stop) = (reclaimer.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(SeqCst) {
                let _ = catch_unwind(AssertUnwindSafe(|| {
                    reclaimer.reclaim(1 << 14, &rcu_reclaim::pressure::NodeMask::all())
                }));
                std::thread::sleep(Duration::from_millis(if cfg!(miri) { 1 } else { 50 }));
            }
        })
    };
    let _stop = StopOnDrop(&stop);
    let max_seen = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (cache, rcu, book, max_seen) =
                (cache.clone(), rcu.clone(), book.clone(), max_seen.clone());
            std::thread::spawn(move || {
                for _ in 0..ops {
                    let _ = catch_unwind(AssertUnwindSafe(|| cache_op(&cache, &rcu, &book, range)));
                    max_seen.fetch_max(cache.bytes(), SeqCst);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    stop.store(true, SeqCst);
    shrinker.join().unwrap();
    *REENTER_CACHE.lock().unwrap() = None;
    WILD.store(false, SeqCst);
    rcu.barrier();
    eprintln!(
        "cache: max bytes seen {} (max_bytes {}), len {}, bytes {}",
        max_seen.load(SeqCst),
        cache.max_bytes(),
        cache.len(),
        cache.bytes()
    );
    cache.clear();
    assert_eq!(cache.len(), 0, "len after clear");
    assert_eq!(cache.bytes(), 0, "bytes after clear");
    drop(cache);
    rcu.barrier();
    rcu.barrier();
    assert_eq!(
        book.vals_made.load(SeqCst),
        book.vals_dropped.load(SeqCst),
        "values made vs dropped"
    );
    assert_eq!(
        book.keys_made.load(SeqCst),
        book.keys_dropped.load(SeqCst),
        "keys made vs dropped"
    );
    assert_eq!(rcu.pending_bytes(), 0);
    WILD.store(true, SeqCst);
}

#[test]
fn cache_single_threaded() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    watchdog(120, || {
        run_cache(
            1,
            20_000,
            Rcu::new(Config::new()).unwrap(),
            256,
            1,
            64 << 10,
        )
    });
}

#[test]
fn cache_concurrent_sharded() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    watchdog(240, || {
        run_cache(4, 8_000, Rcu::new(Config::new()).unwrap(), 512, 8, 64 << 10)
    });
}

#[test]
fn constant_hasher_cache_keeps_its_bound() {
    watchdog(240, || {
        let rcu = Rcu::new(Config::new()).unwrap();
        let reclaimer = Arc::new(rcu_reclaim::reclaim::Reclaimer::new(&rcu));
        let w = RcuCache::<u64, Vec<u8>>::ENTRY_OVERHEAD + 100;
        let cache: Arc<RcuCache<u64, Vec<u8>, Constant>> = Arc::new(
            RcuCache::builder()
                .max_bytes(200 * w)
                .shards(8)
                .hasher(Constant)
                .reclaimer(&reclaimer)
                .rcu(&rcu)
                .build(),
        );
        let stop = Arc::new(AtomicBool::new(false));
        let shrink = {
            let (reclaimer, stop) = (reclaimer.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(SeqCst) {
                    let _ = reclaimer.reclaim(10 * w, &rcu_reclaim::pressure::NodeMask::all());
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        };
        let _stop = StopOnDrop(&stop);
        let max_seen = Arc::new(AtomicUsize::new(0));
        let hs: Vec<_> = (0..3u64)
            .map(|t| {
                let (cache, max_seen) = (cache.clone(), max_seen.clone());
                std::thread::spawn(move || {
                    for i in 0..5000u64 {
                        cache.insert(t << 32 | (i % 700), vec![0; 100]);
                        if i % 7 == 0 {
                            cache.remove(&(t << 32 | (i / 2 % 700)));
                        }
                        max_seen.fetch_max(cache.bytes(), SeqCst);
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        stop.store(true, SeqCst);
        shrink.join().unwrap();
        let max = max_seen.load(SeqCst);
        assert!(max <= cache.max_bytes() + 3 * w, "bytes reached {max}");
        cache.clear();
        assert_eq!((cache.len(), cache.bytes()), (0, 0));
    });
}
