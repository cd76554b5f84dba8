//! Two threads that write each other's map from the closures the maps run
//! under a key's lock (`update`, `get_or_insert_with`, `remove_if`, a
//! cache's `get_or_insert_with`) each hold the lock the other waits for.
//! The waits form a cycle, which the later of them finds: it panics naming
//! the lock-order deadlock, the panic releases its thread's locks, so the
//! other goes on and both maps stay whole. Before, both threads hung,
//! silently. A nested write that merely waits for another thread's slow
//! closure (no cycle) waits, and nothing a panic interrupts is lost.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use rcu_reclaim::{RcuCache, RcuHashMap};

/// The message of a caught panic.
fn message(e: &(dyn std::any::Any + Send)) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// Runs `left` and `right` on two threads (each gets the barrier to meet
/// the other inside its closure); returns the panic messages.
fn crossed(
    left: impl FnOnce(&Barrier) + Send + 'static,
    right: impl FnOnce(&Barrier) + Send + 'static,
) -> Vec<String> {
    let meet = Arc::new(Barrier::new(2));
    let start = Instant::now();
    let spawn = |f: Box<dyn FnOnce(&Barrier) + Send>| {
        let meet = meet.clone();
        std::thread::spawn(move || catch_unwind(AssertUnwindSafe(|| f(&meet))).err())
    };
    let (l, r) = (spawn(Box::new(left)), spawn(Box::new(right)));
    let panics: Vec<String> = [l, r]
        .into_iter()
        .filter_map(|h| h.join().unwrap())
        .map(|e| message(&*e))
        .collect();
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "the crossed writes took {:?}",
        start.elapsed()
    );
    panics
}

fn assert_named(panics: &[String]) {
    assert_eq!(
        panics.len(),
        1,
        "a crossed write deadlocks: one of the two must panic, the other go on: {panics:?}"
    );
    for p in panics {
        assert!(
            p.contains("lock-order deadlock") && p.contains("after the outer call returns"),
            "the panic names the problem and the fix: {p}"
        );
    }
}

#[test]
fn maps_written_from_each_others_closures_panic_instead_of_hanging() {
    let a: Arc<RcuHashMap<u64, u64>> = Arc::new(RcuHashMap::new());
    let b: Arc<RcuHashMap<u64, u64>> = Arc::new(RcuHashMap::new());
    a.insert(1, 0);
    b.insert(1, 0);
    let (a1, b1, a2, b2) = (a.clone(), b.clone(), a.clone(), b.clone());
    let panics = crossed(
        move |meet| {
            a1.update(1, |v| {
                meet.wait();
                b1.insert(1, 10);
                v.map(|v| v + 1)
            });
        },
        move |meet| {
            b2.update(1, |v| {
                meet.wait();
                a2.insert(1, 20);
                v.map(|v| v + 1)
            });
        },
    );
    assert_named(&panics);
    // Both maps are whole and writable; a value of each is there.
    for m in [&a, &b] {
        let g = m.domain().read_lock();
        assert!(m.get(&1, &g).is_some());
        drop(g);
        m.insert(2, 2);
        assert_eq!(m.len(), 2);
    }
}

#[test]
fn caches_written_from_each_others_closures_panic_instead_of_hanging() {
    let a: Arc<RcuCache<u64, Vec<u8>>> = Arc::new(RcuCache::builder().max_bytes(1 << 20).build());
    let b: Arc<RcuCache<u64, Vec<u8>>> = Arc::new(RcuCache::builder().max_bytes(1 << 20).build());
    let (a1, b1, a2, b2) = (a.clone(), b.clone(), a.clone(), b.clone());
    let panics = crossed(
        move |meet| {
            let g = a1.domain().read_lock();
            let _ = a1.get_or_insert_with(
                7,
                || {
                    meet.wait();
                    b1.insert(7, vec![1; 64]);
                    vec![2; 64]
                },
                &g,
            );
        },
        move |meet| {
            let g = b2.domain().read_lock();
            let _ = b2.get_or_insert_with(
                7,
                || {
                    meet.wait();
                    a2.insert(7, vec![3; 64]);
                    vec![4; 64]
                },
                &g,
            );
        },
    );
    assert_named(&panics);
    for c in [&a, &b] {
        assert!(c.insert(8, vec![5; 64]));
        let g = c.domain().read_lock();
        assert!(c.get(&8, &g).is_some());
    }
}

/// Values that count their drops, and poison themselves on the way out.
struct Counted {
    alive: u64,
}

static MADE: AtomicUsize = AtomicUsize::new(0);
static DROPPED: AtomicUsize = AtomicUsize::new(0);

impl Counted {
    fn new() -> Counted {
        MADE.fetch_add(1, Ordering::SeqCst);
        Counted { alive: ALIVE }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        assert_eq!(self.alive, ALIVE, "dropped twice");
        self.alive = 0;
        DROPPED.fetch_add(1, Ordering::SeqCst);
    }
}

impl rcu_reclaim::ReclaimSize for Counted {
    fn reclaim_size(&self) -> usize {
        std::mem::size_of::<Self>()
    }
}

const ALIVE: u64 = 0xa11c_e5a1_1ce5_a11c;

/// The tests below share the counters: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Holds the stripe of `key` in `map` (inside an `update` whose closure
/// sleeps `hold`) on a thread of its own; returns once it holds it.
fn hold_stripe(
    map: &Arc<RcuHashMap<u64, Counted>>,
    key: u64,
    hold: Duration,
) -> std::thread::JoinHandle<()> {
    let (m, held) = (map.clone(), Arc::new(Barrier::new(2)));
    let h = held.clone();
    let t = std::thread::spawn(move || {
        m.update(key, |_| {
            h.wait();
            std::thread::sleep(hold);
            Some(Counted::new())
        });
    });
    held.wait();
    t
}

/// Runs `f` (one such test at a time), then asserts that every value it
/// made was dropped once, its maps gone and their grace periods over.
fn each_value_dropped_once(f: impl FnOnce()) {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let (made, dropped) = (MADE.load(Ordering::SeqCst), DROPPED.load(Ordering::SeqCst));
    f();
    rcu_reclaim::Rcu::global().barrier();
    let made = MADE.load(Ordering::SeqCst) - made;
    let dropped = DROPPED.load(Ordering::SeqCst) - dropped;
    assert_eq!(made, dropped, "made {made} values, dropped {dropped}");
}

/// Another thread's closure holding a stripe for longer than the 2 s the
/// first version of this check waited is no deadlock: the nested write
/// waits for it and goes on (before: it panicked, mid-write).
#[test]
fn a_nested_write_waits_for_a_slow_closure_of_another_thread() {
    each_value_dropped_once(|| {
        let x: Arc<RcuHashMap<u64, Counted>> = Arc::new(RcuHashMap::new());
        let y: Arc<RcuHashMap<u64, Counted>> = Arc::new(RcuHashMap::new());
        let holder = hold_stripe(&y, 5, Duration::from_millis(2500));
        let start = Instant::now();
        x.update(1, |_| {
            y.insert(5, Counted::new());
            Some(Counted::new())
        });
        assert!(start.elapsed() >= Duration::from_secs(2));
        holder.join().unwrap();
        assert_eq!((x.len(), y.len()), (1, 1));
    });
}

/// Nested writes that resize the map (it doubles, then halves, then a
/// `clear`) while another thread holds one of its stripes: the resizes wait
/// for no stripe (all at once or later), the writes for theirs; nothing is
/// lost, nothing dropped twice (before: a panic halfway through a resize or
/// a `clear` leaked entries and left the table half resized).
#[test]
fn nested_resizes_and_clears_beside_a_held_stripe_lose_nothing() {
    each_value_dropped_once(|| {
        let x: Arc<RcuHashMap<u64, Counted>> = Arc::new(RcuHashMap::new());
        let y: Arc<RcuHashMap<u64, Counted>> = Arc::new(RcuHashMap::new());
        // Key 0's stripe is held meanwhile: the keys that fall in it wait
        // for it, and no resize can take every stripe at once.
        let holder = hold_stripe(&y, 0, Duration::from_millis(300));
        let keys: Vec<u64> = (1..2000u64).collect();
        x.update(1, |_| {
            for &k in &keys {
                y.insert(k, Counted::new());
            }
            for &k in &keys {
                assert!(y.remove(&k));
            }
            Some(Counted::new())
        });
        holder.join().unwrap();
        assert_eq!(y.len(), 1);
        let g = y.domain().read_lock();
        assert!(y.get(&0, &g).is_some());
        drop(g);
        let holder = hold_stripe(&y, 0, Duration::from_millis(300));
        for &k in &keys[..500] {
            y.insert(k, Counted::new());
        }
        x.update(2, |_| {
            y.clear();
            Some(Counted::new())
        });
        holder.join().unwrap();
        assert!(y.len() <= 1, "{}", y.len());
        // Grown back and still whole.
        for &k in &keys {
            y.insert(k, Counted::new());
        }
        let g = y.domain().read_lock();
        assert!(keys.iter().all(|k| y.get(k, &g).is_some()));
    });
}

/// A `clear` nested in another map's closure that closes a deadlock
/// halfway (the other thread holds a stripe of it and waits, from its own
/// closure, for the stripe this one holds): whichever panics, every entry
/// the clear had unlinked is still dropped, once.
#[test]
fn a_clear_interrupted_by_a_deadlock_panic_drops_what_it_unlinked() {
    each_value_dropped_once(|| {
        let x: Arc<RcuHashMap<u64, Counted>> = Arc::new(RcuHashMap::new());
        let y: Arc<RcuHashMap<u64, Counted, Known>> =
            Arc::new(RcuHashMap::with_capacity_and_hasher_in(
                0,
                Known::default(),
                rcu_reclaim::Rcu::global(),
            ));
        for k in 0..1000 {
            y.insert(k, Counted::new());
        }
        x.insert(1, Counted::new());
        let (x1, y1, x2, y2) = (x.clone(), y.clone(), x.clone(), y.clone());
        let panics = crossed(
            move |meet| {
                x1.update(1, |_| {
                    meet.wait();
                    std::thread::sleep(Duration::from_millis(50));
                    y1.clear();
                    Some(Counted::new())
                });
            },
            move |meet| {
                // Stripe 63 of `y` in the stripe order of `clear`: after
                // the clear has unlinked most stripes.
                let key = (0..1000u64).find(|k| stripe_of(*k) == 63).unwrap();
                y2.update(key, |_| {
                    meet.wait();
                    x2.insert(1, Counted::new());
                    Some(Counted::new())
                });
            },
        );
        assert_named(&panics);
    });
}

/// A hasher the test can compute a key's stripe with.
type Known = std::hash::BuildHasherDefault<std::collections::hash_map::DefaultHasher>;

/// The stripe a key of a map hashed with [`Known`] falls in (the low bits
/// of its hash, of 64 stripes).
fn stripe_of(key: u64) -> u64 {
    use std::hash::BuildHasher;
    Known::default().hash_one(key) & 63
}

/// Hashes a `u64` key to itself: a key's stripe is its low 6 bits, and a
/// cache of one policy shard keeps every key in it.
#[derive(Clone, Default)]
struct Identity;

struct IdentityHasher(u64);

impl std::hash::Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

impl std::hash::BuildHasher for Identity {
    type Hasher = IdentityHasher;
    fn build_hasher(&self) -> IdentityHasher {
        IdentityHasher(0)
    }
}

/// Three threads, each making calls the docs allow, once closed a cycle
/// through a lock the crossed-writes check cannot see: T3's
/// `get_or_insert_with` loader holds the cache's stripe 0 and writes to a
/// map stripe that T1 holds; T1, inside that map's `update`, inserts into
/// the cache and waits for its policy lock; T2 holds that lock, evicting,
/// and waited for stripe 0. An eviction now passes over an entry whose
/// stripe another thread holds (the cache is over its capacity until a
/// later eviction), so all three finish.
#[test]
fn an_eviction_never_waits_for_a_stripe_under_its_policy_lock() {
    let map: Arc<RcuHashMap<u64, u64, Identity>> = Arc::new(
        RcuHashMap::with_capacity_and_hasher_in(0, Identity, rcu_reclaim::Rcu::global()),
    );
    let per = RcuCache::<u64, Vec<u8>>::ENTRY_OVERHEAD + 1000;
    let cache: Arc<RcuCache<u64, Vec<u8>, Identity>> = Arc::new(
        RcuCache::<u64, Vec<u8>>::builder()
            .hasher(Identity)
            .shards(1)
            .max_bytes(per * 16)
            .build(),
    );
    // Full, every entry in the cache's stripe 0.
    for i in 1..=16u64 {
        assert!(cache.insert(i * 64, vec![1; 1000]));
    }
    let loader_in = Arc::new(Barrier::new(2));
    let (m3, c3, in3) = (map.clone(), cache.clone(), loader_in.clone());
    let t3 = std::thread::spawn(move || {
        let g = c3.domain().read_lock();
        let _ = c3.get_or_insert_with(
            17 * 64,
            || {
                in3.wait();
                std::thread::sleep(Duration::from_millis(400));
                m3.insert(5, 5); // stripe 5: T1's
                vec![3; 1000]
            },
            &g,
        );
    });
    loader_in.wait();
    let c2 = cache.clone();
    let t2 = std::thread::spawn(move || assert!(c2.insert(2, vec![2; 1000])));
    std::thread::sleep(Duration::from_millis(100));
    let (m1, c1) = (map.clone(), cache.clone());
    let t1 = std::thread::spawn(move || {
        m1.update(5, |_| {
            assert!(c1.insert(3, vec![4; 1000]));
            Some(1)
        });
    });
    let start = Instant::now();
    while !(t1.is_finished() && t2.is_finished() && t3.is_finished()) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the three writers deadlocked"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    for t in [t1, t2, t3] {
        t.join().expect("no writer panics");
    }
    assert_eq!(map.len(), 1);
    // Within its capacity again once an eviction finds the stripes free.
    assert!(cache.insert(4, vec![5; 1000]));
    assert!(cache.bytes() <= cache.max_bytes(), "{}", cache.bytes());
}
