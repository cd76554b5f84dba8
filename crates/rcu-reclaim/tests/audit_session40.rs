//! An outside tester's probes: pressure monitors made and dropped
//! concurrently and in awkward places (read-side sections, callbacks,
//! thread-local destructors, forked children, a domain's last drop); maps
//! and caches under hostile user code; callback floods from short-lived
//! threads. Every drop and wait is bounded; every value is dropped once.

mod common;

use common::{eventually, StopOnDrop};

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rcu_reclaim::sources::{auto_pressure, Level, PressureMonitor, SyntheticSource};
use rcu_reclaim::{Config, Rcu};

/// The tests here count the process's threads and descriptors: one at a
/// time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn tasks() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// A monitor on `rcu` whose synthetic source has just fired, once its
/// signal is up.
fn firing_monitor(rcu: &Rcu, quiet: Duration) -> (PressureMonitor, std::sync::mpsc::Sender<Level>) {
    let (tx, source) = SyntheticSource::new();
    let m = PressureMonitor::start(rcu, Box::new(source), quiet, None);
    tx.send(Level::Critical).unwrap();
    assert!(
        eventually(Duration::from_secs(5), || m.stats().episodes > 0),
        "the monitor never raised its signal"
    );
    (m, tx)
}

// ---------------------------------------------------------------------------
// 1. PressureMonitor lifecycle

/// Six threads make and drop monitors (synthetic ones that fire, and
/// `auto_pressure` ones on the global domain) at once: every drop returns
/// quickly, no signal is left, and threads and descriptors come back.
#[test]
fn monitors_made_and_dropped_on_many_threads_leave_nothing() {
    let _s = serial();
    let rcu = Rcu::new(Config::new()).unwrap();
    // Warm up what the library makes once (the domain's threads, the
    // global domain's).
    drop(auto_pressure(usize::MAX));
    drop(firing_monitor(&rcu, Duration::from_millis(5)));
    thread::sleep(Duration::from_millis(200));
    let (t0, f0) = (tasks(), fds());
    let rounds = common::env_or("AUDIT40_MONITOR_ROUNDS", 12usize);
    let slowest = Arc::new(Mutex::new(Duration::ZERO));
    let workers: Vec<_> = (0..6)
        .map(|w| {
            let rcu = rcu.clone();
            let slowest = slowest.clone();
            thread::spawn(move || {
                for i in 0..rounds {
                    let m = if (w + i) % 3 == 0 {
                        auto_pressure(usize::MAX)
                    } else {
                        let (tx, source) = SyntheticSource::new();
                        let m = PressureMonitor::start(
                            &rcu,
                            Box::new(source),
                            Duration::from_millis(1 + i as u64 % 7),
                            None,
                        );
                        for _ in 0..(i % 4) {
                            let _ = tx.send(Level::Medium);
                        }
                        if i % 2 == 0 {
                            thread::sleep(Duration::from_micros(300));
                        }
                        m
                    };
                    let t = Instant::now();
                    drop(m);
                    let took = t.elapsed();
                    let mut s = slowest.lock().unwrap();
                    *s = (*s).max(took);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let slowest = *slowest.lock().unwrap();
    assert!(
        slowest < Duration::from_millis(1500),
        "a drop took {slowest:?}"
    );
    assert_eq!(rcu.pressure(), 0, "a dropped monitor's signal lives on");
    assert_eq!(
        Rcu::global().pressure(),
        0,
        "an auto monitor's signal lives on"
    );
    assert!(
        eventually(Duration::from_secs(5), || tasks() <= t0 && fds() <= f0),
        "threads {t0} -> {}, descriptors {f0} -> {}",
        tasks(),
        fds()
    );
}

/// A monitor dropped inside a read-side section of its own domain, inside
/// one of its callbacks, and inside another domain's: the drop returns,
/// and the signal ends with it (or at once after), the thread goes.
#[test]
fn monitors_dropped_in_sections_and_callbacks_end_their_signal() {
    let _s = serial();
    let rcu = Rcu::new(Config::new()).unwrap();
    let other = Rcu::new(Config::new()).unwrap();
    drop(firing_monitor(&rcu, Duration::from_secs(10)));
    // The domains' own threads start with their first callbacks.
    rcu.call(|| ());
    other.call(|| ());
    rcu.barrier();
    other.barrier();
    thread::sleep(Duration::from_millis(100));
    let t0 = tasks();
    for round in 0..6 {
        // In a section.
        let (m, _tx) = firing_monitor(&rcu, Duration::from_secs(10));
        let g = rcu.read_lock();
        let t = Instant::now();
        drop(m);
        assert!(t.elapsed() < Duration::from_millis(500));
        drop(g);
        assert!(
            eventually(Duration::from_secs(3), || rcu.pressure() == 0),
            "round {round}: a monitor dropped in a section left its signal"
        );
        // In a callback of its own domain.
        let (m, _tx) = firing_monitor(&rcu, Duration::from_secs(10));
        rcu.call(move || drop(m));
        within(Duration::from_secs(5), "barrier", {
            let rcu = rcu.clone();
            move || rcu.barrier()
        });
        assert!(
            eventually(Duration::from_secs(3), || rcu.pressure() == 0),
            "round {round}: a monitor dropped in its domain's callback left its signal"
        );
        // In a callback of another domain, in a section of the other.
        let (m, _tx) = firing_monitor(&rcu, Duration::from_secs(10));
        let o2 = other.clone();
        other.call(move || {
            let _g = o2.read_lock();
            drop(m);
        });
        within(Duration::from_secs(5), "barrier", {
            let other = other.clone();
            move || other.barrier()
        });
        assert!(
            eventually(Duration::from_secs(3), || rcu.pressure() == 0),
            "round {round}: a monitor dropped in another domain's callback left its signal"
        );
    }
    assert!(
        eventually(Duration::from_secs(5), || tasks() <= t0),
        "threads {t0} -> {}",
        tasks()
    );
}

thread_local! {
    static KEPT: std::cell::RefCell<Vec<PressureMonitor>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Monitors kept in a thread-local are dropped by its destructor when the
/// thread exits (with a guard of the domain kept in another thread-local
/// too): the thread exits, the signals end.
#[test]
fn monitors_dropped_by_thread_local_destructors() {
    let _s = serial();
    let rcu = Rcu::new(Config::new()).unwrap();
    thread::sleep(Duration::from_millis(50));
    let t0 = tasks();
    for _ in 0..4 {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let rcu = rcu.clone();
                thread::spawn(move || {
                    let (m, tx) = firing_monitor(&rcu, Duration::from_secs(10));
                    let (a, _tx2) = firing_monitor(Rcu::global(), Duration::from_secs(10));
                    KEPT.with(|k| k.borrow_mut().extend([m, a]));
                    drop(tx);
                })
            })
            .collect();
        within(
            Duration::from_secs(10),
            "threads whose thread-locals drop monitors",
            move || {
                for h in handles {
                    h.join().unwrap();
                }
            },
        );
    }
    assert!(
        eventually(Duration::from_secs(3), || rcu.pressure() == 0
            && Rcu::global().pressure() == 0),
        "signals outlived their monitors: {} {}",
        rcu.pressure(),
        Rcu::global().pressure()
    );
    assert!(
        eventually(Duration::from_secs(5), || tasks() <= t0),
        "threads {t0} -> {}",
        tasks()
    );
}

/// A monitor dropped in a forked child returns and ends the signal there;
/// the parent's monitor keeps its signal, and a new one in the child works
/// and drops.
#[test]
fn monitors_dropped_in_a_forked_child() {
    let _s = serial();
    let rcu = Rcu::new(Config::new()).unwrap();
    for _ in 0..3 {
        let (m, tx) = firing_monitor(&rcu, Duration::from_secs(10));
        let auto = auto_pressure(usize::MAX);
        // Taken in the child only (the closure is dropped unrun in the
        // parent).
        let held = Arc::new(Mutex::new(Some((m, auto))));
        let in_child = held.clone();
        let r2 = rcu.clone();
        let code = common::in_forked_child(&rcu, move || {
            let t = Instant::now();
            let Some((m, auto)) = in_child.try_lock().ok().and_then(|mut h| h.take()) else {
                return false;
            };
            drop(m);
            drop(auto);
            if r2.pressure() != 0 || t.elapsed() > Duration::from_secs(2) {
                return false;
            }
            let (m2, _tx) = firing_monitor(&r2, Duration::from_secs(10));
            drop(m2);
            r2.pressure() == 0 && t.elapsed() < Duration::from_secs(5)
        });
        assert_eq!(code, 0, "the child's drops failed");
        assert!(
            rcu.pressure() > 0,
            "the parent's signal ended with the child's"
        );
        drop(held);
        drop(tx);
    }
    assert!(eventually(Duration::from_secs(3), || rcu.pressure() == 0));
}

/// A monitor on a domain whose last user handle is dropped, on another
/// thread, at the same time as the monitor, and one kept in a callback of
/// a domain whose last handle is dropped: nothing hangs.
#[test]
fn monitors_dropped_while_their_domain_goes() {
    let _s = serial();
    thread::sleep(Duration::from_millis(50));
    let t0 = tasks();
    for i in 0..8 {
        let rcu = Rcu::new(Config::new()).unwrap();
        let (m, _tx) = firing_monitor(&rcu, Duration::from_millis(20 + i));
        let cb = Rcu::new(Config::new()).unwrap();
        let (m2, _tx2) = firing_monitor(&cb, Duration::from_secs(10));
        // m2 lives in a callback of its own domain, whose last user handle
        // is dropped at once.
        cb.call(move || drop(m2));
        let a = thread::spawn(move || drop(rcu));
        let b = thread::spawn(move || drop(m));
        within(
            Duration::from_secs(5),
            "drops of a domain and its monitor",
            move || {
                a.join().unwrap();
                b.join().unwrap();
                drop(cb);
            },
        );
    }
    assert!(
        eventually(Duration::from_secs(5), || tasks() <= t0),
        "threads {t0} -> {}",
        tasks()
    );
}

/// A monitor whose own source drops it (the monitor's thread drops its
/// monitor): the drop does not wait on itself.
#[test]
fn a_monitor_dropped_by_its_own_source() {
    let _s = serial();
    struct SelfDropping {
        slot: Arc<Mutex<Option<PressureMonitor>>>,
        calls: u32,
    }
    impl rcu_reclaim::sources::PressureSource for SelfDropping {
        fn describe(&self) -> String {
            "self-dropping".into()
        }
        fn wait(
            &mut self,
            _: Duration,
        ) -> Result<Option<Level>, rcu_reclaim::sources::SourceError> {
            self.calls += 1;
            if self.calls < 3 {
                return Ok(Some(Level::Critical));
            }
            let m = self.slot.lock().unwrap().take();
            drop(m);
            thread::sleep(Duration::from_millis(1));
            Ok(None)
        }
    }
    let rcu = Rcu::new(Config::new()).unwrap();
    for _ in 0..5 {
        let slot = Arc::new(Mutex::new(None));
        let m = PressureMonitor::start(
            &rcu,
            Box::new(SelfDropping {
                slot: slot.clone(),
                calls: 0,
            }),
            Duration::from_secs(10),
            None,
        );
        *slot.lock().unwrap() = Some(m);
        assert!(
            eventually(Duration::from_secs(5), || slot.lock().unwrap().is_none()),
            "the source never ran"
        );
        assert!(
            eventually(Duration::from_secs(3), || rcu.pressure() == 0),
            "a self-dropped monitor left its signal"
        );
    }
    let _ = (
        AtomicBool::new(false),
        AtomicU64::new(0),
        AtomicUsize::new(0),
    );
}

// ---------------------------------------------------------------------------
// 2. Maps and caches under hostile user code

use common::poison::{Drops, Val};
use common::rng::Rng;
use common::within;
use rcu_reclaim::{RcuCache, RcuHashMap, ReclaimSize};
use std::hash::{Hash, Hasher};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Whether the user code below misbehaves (off for the final checks).
static HOSTILE: AtomicBool = AtomicBool::new(false);

thread_local! {
    static DICE: std::cell::Cell<u64> = std::cell::Cell::new(
        common::rng::mix(std::process::id() as u64 ^ (&DICE as *const _ as u64))
    );
}

/// True about once in `n` calls while hostile.
fn roll(n: u64) -> bool {
    HOSTILE.load(Ordering::Relaxed)
        && DICE.with(|d| {
            let mut r = Rng(d.get());
            let x = r.next();
            d.set(r.0);
            x % n == 0
        })
}

/// Installs, once, a panic hook that keeps this file's deliberate panics
/// quiet (they are many).
fn quiet_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let old = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let text = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_default();
            if std::env::var_os("AUDIT40_LOUD").is_some()
                || !text.starts_with("audit40:")
                    && !text.contains("rcu-reclaim:")
                    && !text.starts_with("RcuHashMap:")
            {
                old(info);
            }
        }));
    });
}

/// A key whose `Hash`, `Eq` and `Drop` panic now and then.
struct HKey(u64);

impl Clone for HKey {
    fn clone(&self) -> Self {
        if roll(500) {
            panic!("audit40: key clone");
        }
        HKey(self.0)
    }
}

impl Hash for HKey {
    fn hash<H: Hasher>(&self, h: &mut H) {
        if roll(400) {
            panic!("audit40: hash");
        }
        self.0.hash(h);
    }
}

impl PartialEq for HKey {
    fn eq(&self, o: &Self) -> bool {
        if roll(600) {
            panic!("audit40: eq");
        }
        self.0 == o.0
    }
}

impl Eq for HKey {}

impl Drop for HKey {
    fn drop(&mut self) {
        if !thread::panicking() && roll(800) {
            panic!("audit40: key drop");
        }
    }
}

impl ReclaimSize for HKey {
    fn reclaim_size(&self) -> usize {
        0
    }
}

/// A poisoned-on-drop value whose `Drop` and `ReclaimSize` panic now and
/// then.
struct HVal {
    v: Val,
    boom: bool,
    pad: Vec<u8>,
}

impl HVal {
    fn new(drops: &Arc<Drops>, key: u64) -> HVal {
        HVal {
            v: Val::new(drops, key),
            boom: roll(50),
            pad: vec![7; (key % 5) as usize * 40],
        }
    }
}

impl Drop for HVal {
    fn drop(&mut self) {
        if self.boom && !thread::panicking() {
            panic!("audit40: value drop");
        }
    }
}

impl ReclaimSize for HVal {
    fn reclaim_size(&self) -> usize {
        if roll(300) {
            panic!("audit40: reclaim_size");
        }
        self.pad.capacity()
    }
}

fn quiet_domain() -> Rcu {
    Rcu::new(Config::new().on_callback_panic(|_| ())).unwrap()
}

/// A thread that walks both of `items` with `walk` until `stop`.
fn spawn_walker<T: Send + Sync + 'static>(
    items: Arc<[T; 2]>,
    stop: Arc<AtomicBool>,
    walk: fn(&T),
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            for x in items.iter() {
                walk(x);
            }
        }
    })
}

/// Every value seen under a guard is alive and its key's.
fn walk_map(map: &RcuHashMap<HKey, HVal>) -> usize {
    let g = map.domain().read_lock();
    let mut n = 0;
    for (k, v) in map.iter(&g) {
        v.v.check(k.0);
        n += 1;
    }
    n
}

/// One hostile operation on `map` (and, from its closures, on `other`).
fn map_op(
    map: &RcuHashMap<HKey, HVal>,
    other: &RcuHashMap<HKey, HVal>,
    drops: &Arc<Drops>,
    rng: &mut Rng,
    keys: u64,
) {
    let k = rng.below(keys);
    match rng.below(12) {
        0..=2 => {
            map.insert(HKey(k), HVal::new(drops, k));
        }
        3 => {
            map.remove(&HKey(k));
        }
        4 => {
            let nested = rng.below(4);
            let o = rng.below(keys);
            map.update(HKey(k), |old| {
                if let Some(old) = old {
                    old.v.check(k);
                }
                match nested {
                    // A write to the same map: refused with a panic.
                    0 => {
                        let _ = catch_unwind(AssertUnwindSafe(|| {
                            map.insert(HKey(o), HVal::new(drops, o));
                        }));
                    }
                    // A write to the other map (whose closures may write
                    // this one: a crossed deadlock panics one of them).
                    1 => {
                        other.insert(HKey(o), HVal::new(drops, o));
                    }
                    _ => {}
                }
                if roll(20) {
                    panic!("audit40: update closure");
                }
                (k % 3 != 0).then(|| HVal::new(drops, k))
            });
        }
        5 => {
            let g = map.domain().read_lock();
            let v = map.get_or_insert_with(
                HKey(k),
                || {
                    if roll(20) {
                        panic!("audit40: loader");
                    }
                    if k % 5 == 0 {
                        other.remove(&HKey(k));
                    }
                    HVal::new(drops, k)
                },
                &g,
            );
            v.v.check(k);
        }
        6 if rng.below(8) == 0 => {
            let cut = rng.below(7);
            map.retain(|key, v| {
                v.v.check(key.0);
                if roll(200) {
                    panic!("audit40: retain");
                }
                key.0 % 7 != cut
            });
        }
        7 => {
            map.remove_if(&HKey(k), |v| {
                v.v.check(k);
                if roll(20) {
                    panic!("audit40: remove_if");
                }
                v.pad.len() % 80 == 0
            });
        }
        _ => {
            let g = map.domain().read_lock();
            if let Some(v) = map.get(&HKey(k), &g) {
                v.v.check(k);
            }
            if rng.below(16) == 0 {
                drop(g);
                walk_map(map);
            }
        }
    }
}

/// Six threads write two maps with panicking keys, values, weighers and
/// closures that write the same map or the other one, while key ranges
/// swing between 2048 and 16 (the tables grow and halve) and readers walk
/// them: no reader sees a freed value, every value is dropped exactly once
/// and the domain's backlog empties.
#[test]
fn maps_under_hostile_user_code_drop_every_value_once() {
    let _s = serial();
    quiet_panics();
    let rcu = quiet_domain();
    let drops = Drops::new(1 << 20);
    let maps = Arc::new([RcuHashMap::new_in(&rcu), RcuHashMap::new_in(&rcu)]);
    let ops = common::env_or("AUDIT40_MAP_OPS", 40_000u64);
    let stop = Arc::new(AtomicBool::new(false));
    HOSTILE.store(true, Ordering::Relaxed);
    let walker = spawn_walker(maps.clone(), stop.clone(), |m| {
        walk_map(m);
    });
    let writers: Vec<_> = (0..6u64)
        .map(|t| {
            let (maps, drops) = (maps.clone(), drops.clone());
            thread::spawn(move || {
                let mut rng = Rng(t.wrapping_mul(0x9e37) + 1);
                let mut poisoned = 0;
                let (mut caps, mut panics) = ((usize::MAX, 0), 0);
                for i in 0..ops {
                    let c = maps[0].capacity();
                    caps = (caps.0.min(c), caps.1.max(c));
                    let keys = if (i / 400) % 2 == 0 { 2048 } else { 16 };
                    let (a, b) = if (i + t) % 2 == 0 { (0, 1) } else { (1, 0) };
                    let r = catch_unwind(AssertUnwindSafe(|| {
                        map_op(&maps[a], &maps[b], &drops, &mut rng, keys)
                    }));
                    if let Err(p) = r {
                        panics += 1;
                        let text = common::panic_text(&*p);
                        if text.contains("poison") || text.contains("left == right") {
                            poisoned += 1;
                        }
                    }
                }
                (poisoned, panics, caps)
            })
        })
        .collect();
    let _stop = StopOnDrop(&stop);
    let (mut poisoned, mut panics, mut caps) = (0, 0, (usize::MAX, 0));
    for w in writers {
        let (p, n, c) = w.join().unwrap();
        (poisoned, panics) = (poisoned + p, panics + n);
        caps = (caps.0.min(c.0), caps.1.max(c.1));
    }
    stop.store(true, Ordering::Relaxed);
    walker.join().unwrap();
    HOSTILE.store(false, Ordering::Relaxed);
    assert_eq!(poisoned, 0, "readers saw freed or foreign values");
    assert!(panics > 0, "no user code panicked");
    assert!(caps.1 >= 4 * caps.0, "the tables did not resize: {caps:?}");
    for m in maps.iter() {
        assert_eq!(walk_map(m), m.len(), "len disagrees with a walk");
    }
    // Values whose `Drop` panics panic out of the maps' drops (as out of
    // std's collections), the rest still dropped.
    let [a, b] = Arc::into_inner(maps).expect("the maps' last handle");
    let _ = catch_unwind(AssertUnwindSafe(move || drop(a)));
    let _ = catch_unwind(AssertUnwindSafe(move || drop(b)));
    within(Duration::from_secs(20), "barrier", {
        let rcu = rcu.clone();
        move || rcu.barrier()
    });
    drops.assert_each_dropped_once();
    assert_eq!(rcu.pending_bytes(), 0);
}

type HCache = RcuCache<HKey, HVal>;

fn weigh(k: &HKey, v: &HVal) -> usize {
    if roll(300) {
        panic!("audit40: weigher");
    }
    v.pad.capacity() + (k.0 % 3) as usize
}

fn walk_cache(cache: &HCache) -> (usize, usize) {
    let g = cache.domain().read_lock();
    let (mut n, mut bytes) = (0, 0);
    for (k, v) in cache.iter(&g) {
        v.v.check(k.0);
        n += 1;
        bytes += HCache::ENTRY_OVERHEAD + v.pad.capacity() + (k.0 % 3) as usize;
    }
    (n, bytes)
}

/// One hostile operation on `cache` (and, from its closures, on `other`
/// and on `map`).
fn cache_op(
    cache: &HCache,
    other: &HCache,
    map: &RcuHashMap<HKey, HVal>,
    drops: &Arc<Drops>,
    rng: &mut Rng,
    keys: u64,
) {
    let k = rng.below(keys);
    match rng.below(14) {
        0..=3 => {
            cache.insert(HKey(k), HVal::new(drops, k));
        }
        4 => {
            cache.remove(&HKey(k));
        }
        5 | 6 => {
            let nested = rng.below(5);
            let o = rng.below(keys);
            let g = cache.domain().read_lock();
            let v = cache.get_or_insert_with(
                HKey(k),
                || {
                    match nested {
                        0 => {
                            let _ = catch_unwind(AssertUnwindSafe(|| {
                                cache.insert(HKey(o), HVal::new(drops, o));
                            }));
                        }
                        1 => {
                            other.insert(HKey(o), HVal::new(drops, o));
                        }
                        2 => {
                            map.update(HKey(o), |old| {
                                if roll(30) {
                                    panic!("audit40: nested update");
                                }
                                old.is_none().then(|| HVal::new(drops, o))
                            });
                        }
                        _ => {}
                    }
                    if roll(20) {
                        panic!("audit40: loader");
                    }
                    HVal::new(drops, k)
                },
                &g,
            );
            v.v.check(k);
        }
        7 => {
            let n = cache.read_or_insert_with(
                HKey(k),
                || {
                    if roll(20) {
                        panic!("audit40: make");
                    }
                    HVal::new(drops, k)
                },
                |v| {
                    v.v.check(k);
                    v.pad.len()
                },
            );
            assert!(n < 1000);
        }
        8 => {
            cache.remove_if(&HKey(k), |v| {
                v.v.check(k);
                if rng_free_roll(k) {
                    let _ = catch_unwind(AssertUnwindSafe(|| cache.remove(&HKey(k + 1))));
                }
                if roll(20) {
                    panic!("audit40: remove_if");
                }
                v.pad.len() % 80 == 0
            });
        }
        9 if rng.below(10) == 0 => {
            let cut = rng.below(7);
            cache.retain(|key, v| {
                v.v.check(key.0);
                if roll(200) {
                    panic!("audit40: retain");
                }
                key.0 % 7 != cut
            });
        }
        10 if rng.below(200) == 0 => cache.clear(),
        _ => {
            let g = cache.domain().read_lock();
            if let Some(v) = cache.get(&HKey(k), &g) {
                v.v.check(k);
            }
            if rng.below(32) == 0 {
                drop(g);
                walk_cache(cache);
            }
        }
    }
}

fn rng_free_roll(k: u64) -> bool {
    k % 11 == 0
}

/// Six threads write two small caches (evicting all the time) with
/// panicking keys, values, weighers and closures that write the same
/// cache, the other one or a map: readers never see a freed value, the
/// caches' byte counts match their entries, every value is dropped once
/// and the backlog empties.
#[test]
fn caches_under_hostile_user_code_drop_every_value_once() {
    let _s = serial();
    quiet_panics();
    let rcu = quiet_domain();
    let drops = Drops::new(1 << 21);
    let build = || {
        RcuCache::builder()
            .rcu(&rcu)
            .max_bytes(48 << 10)
            .regrow_after(Duration::from_millis(5))
            .weigher(weigh)
    };
    // The second shrinks on pressure events, on its monitor's thread.
    let (events, source) = SyntheticSource::new();
    let caches = Arc::new([
        build().build(),
        build().pressure_source(Box::new(source)).build(),
    ]);
    let firing = Arc::new(AtomicBool::new(true));
    let firer = {
        let firing = firing.clone();
        thread::spawn(move || {
            let mut i = 0u64;
            while firing.load(Ordering::Relaxed) {
                let level = if i % 4 == 0 {
                    Level::Critical
                } else {
                    Level::Medium
                };
                if events.send(level).is_err() {
                    return;
                }
                i += 1;
                thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let map = Arc::new(RcuHashMap::new_in(&rcu));
    let ops = common::env_or("AUDIT40_CACHE_OPS", 30_000u64);
    let stop = Arc::new(AtomicBool::new(false));
    HOSTILE.store(true, Ordering::Relaxed);
    let walker = spawn_walker(caches.clone(), stop.clone(), |c| {
        walk_cache(c);
    });
    let writers: Vec<_> = (0..6u64)
        .map(|t| {
            let (caches, map, drops) = (caches.clone(), map.clone(), drops.clone());
            thread::spawn(move || {
                let mut rng = Rng(t.wrapping_mul(0x51ed) + 7);
                let (mut poisoned, mut panics) = (0, 0);
                for i in 0..ops {
                    let keys = if (i / 500) % 2 == 0 { 2048 } else { 24 };
                    let (a, b) = if (i + t) % 2 == 0 { (0, 1) } else { (1, 0) };
                    let r = catch_unwind(AssertUnwindSafe(|| {
                        cache_op(&caches[a], &caches[b], &map, &drops, &mut rng, keys)
                    }));
                    if let Err(p) = r {
                        panics += 1;
                        let text = common::panic_text(&*p);
                        if text.contains("poison") || text.contains("left == right") {
                            poisoned += 1;
                        }
                    }
                }
                (poisoned, panics)
            })
        })
        .collect();
    let _stop = StopOnDrop(&stop);
    let (mut poisoned, mut panics) = (0, 0);
    for w in writers {
        let (p, n) = w.join().unwrap();
        (poisoned, panics) = (poisoned + p, panics + n);
    }
    assert!(panics > 0, "no user code panicked");
    stop.store(true, Ordering::Relaxed);
    walker.join().unwrap();
    firing.store(false, Ordering::Relaxed);
    firer.join().unwrap();
    thread::sleep(Duration::from_millis(20));
    HOSTILE.store(false, Ordering::Relaxed);
    assert_eq!(poisoned, 0, "readers saw freed or foreign values");
    for (i, c) in caches.iter().enumerate() {
        let (n, bytes) = walk_cache(c);
        assert_eq!(n, c.len(), "cache {i}: len disagrees with a walk");
        assert_eq!(
            bytes,
            c.bytes(),
            "cache {i}: bytes disagree with its entries"
        );
        assert!(c.bytes() <= c.max_bytes(), "cache {i}: over its capacity");
    }
    let [a, b] = Arc::into_inner(caches).expect("the caches' last handle");
    let _ = catch_unwind(AssertUnwindSafe(move || drop(a)));
    let _ = catch_unwind(AssertUnwindSafe(move || drop(b)));
    let map = Arc::into_inner(map).expect("the map's last handle");
    let _ = catch_unwind(AssertUnwindSafe(move || drop(map)));
    within(Duration::from_secs(20), "barrier", {
        let rcu = rcu.clone();
        move || rcu.barrier()
    });
    drops.assert_each_dropped_once();
    assert_eq!(rcu.pending_bytes(), 0);
}

// ---------------------------------------------------------------------------
// 3. Callback floods from short-lived threads

/// A value that counts its drops.
struct Counted(Arc<AtomicUsize>, #[allow(dead_code)] [u64; 4]);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

impl ReclaimSize for Counted {
    fn reclaim_size(&self) -> usize {
        0
    }
}

/// Holds a domain and retires into it from the thread-local's
/// destructor, when the thread exits (maybe after the library's own
/// thread-locals are gone).
struct RetireOnExit(Option<(Rcu, Arc<AtomicUsize>, Arc<AtomicUsize>)>);

impl Drop for RetireOnExit {
    fn drop(&mut self) {
        if let Some((rcu, ran, queued)) = self.0.take() {
            for _ in 0..20 {
                let r = ran.clone();
                queued.fetch_add(1, Ordering::Relaxed);
                rcu.call(move || {
                    r.fetch_add(1, Ordering::Relaxed);
                });
                queued.fetch_add(1, Ordering::Relaxed);
                rcu.defer_drop(Box::new(Counted(ran.clone(), [0; 4])));
            }
        }
    }
}

thread_local! {
    static ON_EXIT: std::cell::RefCell<RetireOnExit> = const { std::cell::RefCell::new(RetireOnExit(None)) };
}

/// Rounds of eight threads that retire callbacks and deferred drops (some
/// in a section, some with a barrier, some from a thread-local destructor
/// at exit) and exit at once, while other threads drop handles of the
/// domain: every callback runs and every value drops exactly once, by the
/// time the last handle is dropped.
#[test]
fn floods_from_short_lived_threads_lose_nothing() {
    let _s = serial();
    let rounds = common::env_or("AUDIT40_FLOOD_ROUNDS", 12usize);
    for round in 0..rounds {
        let config = match round % 3 {
            0 => Config::new(),
            1 => Config::new().on_demand(),
            _ => Config::new().flavor(rcu_reclaim::Flavor::Mb),
        };
        let rcu = Rcu::new(config).unwrap();
        let ran = Arc::new(AtomicUsize::new(0));
        let queued = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8usize)
            .map(|t| {
                let (rcu, ran, queued) = (rcu.clone(), ran.clone(), queued.clone());
                thread::spawn(move || {
                    if t % 3 == 0 {
                        ON_EXIT.with(|e| {
                            e.borrow_mut().0 = Some((rcu.clone(), ran.clone(), queued.clone()))
                        });
                    }
                    for i in 0..300usize {
                        let g = (i % 7 == t % 7).then(|| rcu.read_lock());
                        queued.fetch_add(1, Ordering::Relaxed);
                        if i % 2 == 0 {
                            let r = ran.clone();
                            rcu.call(move || {
                                r.fetch_add(1, Ordering::Relaxed);
                            });
                        } else {
                            rcu.defer_drop(Box::new(Counted(ran.clone(), [i as u64; 4])));
                        }
                        drop(g);
                        if t == 1 && i % 100 == 99 {
                            rcu.barrier();
                        }
                    }
                    if t == 2 {
                        // A short-lived thread of its own, nested.
                        let (rcu, ran, queued) = (rcu.clone(), ran.clone(), queued.clone());
                        thread::spawn(move || {
                            for _ in 0..50 {
                                queued.fetch_add(1, Ordering::Relaxed);
                                let r = ran.clone();
                                rcu.call(move || {
                                    r.fetch_add(1, Ordering::Relaxed);
                                });
                            }
                        });
                    }
                })
            })
            .collect();
        // Handles dropped concurrently with the flood.
        let extra: Vec<_> = (0..3).map(|_| rcu.clone()).collect();
        let dropper = thread::spawn(move || {
            for h in extra {
                thread::sleep(Duration::from_micros(200));
                drop(h);
            }
        });
        within(Duration::from_secs(20), "the flood", move || {
            for t in threads {
                t.join().unwrap();
            }
            dropper.join().unwrap();
        });
        if round % 2 == 0 {
            within(Duration::from_secs(10), "barrier", {
                let rcu = rcu.clone();
                move || rcu.barrier()
            });
            // Nested threads may still be retiring: wait for them to
            // have queued before comparing.
            let want = 8 * 300 + 50 + 3 * 40;
            assert!(
                eventually(Duration::from_secs(5), || queued.load(Ordering::Relaxed)
                    == want),
                "round {round}: queued {}",
                queued.load(Ordering::Relaxed)
            );
            within(Duration::from_secs(10), "barrier", {
                let rcu = rcu.clone();
                move || rcu.barrier()
            });
            assert_eq!(
                ran.load(Ordering::Relaxed),
                queued.load(Ordering::Relaxed),
                "round {round}: after a barrier"
            );
            assert_eq!(rcu.pending_bytes(), 0, "round {round}");
        }
        let want = 8 * 300 + 50 + 3 * 40;
        assert!(
            eventually(Duration::from_secs(5), || queued.load(Ordering::Relaxed)
                == want),
            "round {round}: queued {}",
            queued.load(Ordering::Relaxed)
        );
        within(
            Duration::from_secs(10),
            "the domain's last drop",
            move || drop(rcu),
        );
        assert!(
            eventually(Duration::from_secs(5), || ran.load(Ordering::Relaxed)
                == want),
            "round {round}: ran {} of {want} after the domain's drop",
            ran.load(Ordering::Relaxed)
        );
    }
}

/// A monitor started before a fork and dropped in the child, then the
/// child's last handle of the domain: that drop runs the callbacks the
/// child queued, as a last handle's drop does (the monitor's thread, which
/// does not exist in the child, must not count as a handle there).
#[test]
fn a_childs_last_handle_runs_its_callbacks_after_dropping_an_inherited_monitor() {
    let _s = serial();
    // On demand: only a barrier or the last handle's drop runs
    // callbacks.
    let rcu = Rcu::new(Config::new().on_demand()).unwrap();
    let (m, tx) = firing_monitor(&rcu, Duration::from_millis(20));
    // Past its event, its signal ended (a fork in the middle of an
    // event is another story: the child cannot let go of what the
    // event holds, and says so).
    assert!(eventually(Duration::from_secs(10), || !m.stats().active));
    child_runs_its_callbacks_after_dropping(rcu, m);
    drop(tx);
}

/// Forks; in the child, queues a callback, drops `inherited` (made
/// before the fork), then `rcu`, the child's last handle of the domain,
/// whose drop must run the callback. Fails if it did not (or the child
/// hung for 20 s, or died).
fn child_runs_its_callbacks_after_dropping<T>(rcu: Rcu, inherited: T) {
    let fork = rcu.prepare_fork();
    let pid = common::fork();
    if pid == 0 {
        fork.child();
        let ran = Arc::new(AtomicUsize::new(0));
        let r = ran.clone();
        rcu.call(move || {
            r.fetch_add(1, Ordering::SeqCst);
        });
        drop(inherited);
        // The child's last handle: runs what is queued.
        drop(rcu);
        let ok = ran.load(Ordering::SeqCst) == 1;
        // SAFETY: ends the child without running the parent's
        // destructors.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    fork.parent();
    let status = common::child_status(pid);
    assert!(libc::WIFEXITED(status), "the child died: {status}");
    assert_eq!(
        libc::WEXITSTATUS(status),
        0,
        "the child's last handle ran none of its callbacks"
    );
}

/// A budget made before a fork and dropped in the child, then the child's
/// last handle of the domain: that drop runs the callbacks the child
/// queued. (Before, the budget's `rcu-kswapd` thread, which does not exist
/// in the child, held a strong reference to the budget's reclaimer, and
/// with it a handle of the domain, for ever there.)
#[test]
fn a_childs_last_handle_runs_its_callbacks_after_dropping_an_inherited_budget() {
    use rcu_reclaim::reclaim::{MemoryBudget, Reclaimer};
    let _s = serial();
    let rcu = Rcu::new(Config::new().on_demand()).unwrap();
    let budget = MemoryBudget::new(64 << 20, Arc::new(Reclaimer::new(&rcu)), || 0);
    // Its thread waiting for a request (its first look done).
    thread::sleep(Duration::from_millis(30));
    child_runs_its_callbacks_after_dropping(rcu, budget);
}
