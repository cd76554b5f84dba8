//! A cache whose `get_or_insert_with` loaders hold their
//! stripe a while and then panic (or not), whose keys' `Drop` panics now
//! and then as they leave the queues, while other threads insert, clear,
//! read, and a reclaimer shrinks it. What must hold: no hang, the byte
//! bound (within one entry per writer in flight), `bytes() == 0` and
//! `len() == 0` after a quiet `clear()`, and every key and value dropped
//! exactly once after the cache is dropped and `barrier()` runs.

use std::hash::{Hash, Hasher};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use rcu_reclaim::pressure::NodeMask;
use rcu_reclaim::reclaim::Reclaimer;
use rcu_reclaim::{Config, Rcu, RcuCache, ReclaimSize};

static KEYS_MADE: AtomicUsize = AtomicUsize::new(0);
static KEYS_DROPPED: AtomicUsize = AtomicUsize::new(0);
static VALS_MADE: AtomicUsize = AtomicUsize::new(0);
static VALS_DROPPED: AtomicUsize = AtomicUsize::new(0);
static WILD: AtomicBool = AtomicBool::new(true);

struct Key(u64);

impl Key {
    fn new(k: u64) -> Key {
        KEYS_MADE.fetch_add(1, SeqCst);
        Key(k)
    }
}
impl Clone for Key {
    fn clone(&self) -> Self {
        Key::new(self.0)
    }
}
impl Drop for Key {
    fn drop(&mut self) {
        KEYS_DROPPED.fetch_add(1, SeqCst);
        if WILD.load(SeqCst) && self.0 % 97 == 0 && !std::thread::panicking() {
            panic!("injected: Key::drop");
        }
    }
}
impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}
impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}
impl Eq for Key {}
impl ReclaimSize for Key {
    fn reclaim_size(&self) -> usize {
        std::mem::size_of::<Self>()
    }
}

struct Val(Vec<u8>);

impl Val {
    fn new(n: usize) -> Val {
        VALS_MADE.fetch_add(1, SeqCst);
        Val(vec![1; n])
    }
}
impl Drop for Val {
    fn drop(&mut self) {
        VALS_DROPPED.fetch_add(1, SeqCst);
    }
}
impl ReclaimSize for Val {
    fn reclaim_size(&self) -> usize {
        std::mem::size_of::<Self>() + self.0.capacity()
    }
}

fn rng(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

#[test]
fn loaders_that_stall_and_panic_beside_the_shrinker_lose_nothing() {
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let s = info
            .payload()
            .downcast_ref::<&str>()
            .copied()
            .unwrap_or_default();
        if !s.starts_with("injected: ") {
            prev(info);
        }
    }));
    let (done_tx, done_rx) = mpsc::channel();
    let body = std::thread::spawn(move || {
        body();
        let _ = done_tx.send(());
    });
    assert!(
        done_rx.recv_timeout(Duration::from_secs(180)).is_ok(),
        "hang: no end in 180 s"
    );
    body.join().unwrap();
}

fn body() {
    let secs: u64 = std::env::var("H1_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4);
    let rcu = Rcu::new(Config::new()).unwrap();
    let reclaimer = Arc::new(Reclaimer::new(&rcu));
    const VAL: usize = 1000;
    let w = RcuCache::<Key, Val>::ENTRY_OVERHEAD + VAL;
    let max = 200 * w;
    let cache: Arc<RcuCache<Key, Val>> = Arc::new(
        RcuCache::builder()
            .max_bytes(max)
            .shards(4)
            .rcu(&rcu)
            .reclaimer(&reclaimer)
            .regrow_after(Duration::from_millis(50))
            .build(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let over = Arc::new(AtomicU64::new(0));
    let writers = 5;
    let mut hs = Vec::new();
    for t in 0..writers {
        let (cache, stop, over, rcu) = (cache.clone(), stop.clone(), over.clone(), rcu.clone());
        hs.push(std::thread::spawn(move || {
            let mut seed = 0x1234_5678_9abc_def1 ^ ((t as u64 + 1) * 0x9e37_79b9);
            while !stop.load(SeqCst) {
                let k = rng(&mut seed) % 1000;
                let r = catch_unwind(AssertUnwindSafe(|| match t {
                    0 | 1 => {
                        let g = rcu.read_lock();
                        let _ = cache.get_or_insert_with(
                            Key::new(k),
                            || {
                                // Hold the stripe a while.
                                std::thread::sleep(Duration::from_micros(200));
                                if k % 3 == 0 {
                                    panic!("injected: loader");
                                }
                                Val::new(VAL)
                            },
                            &g,
                        );
                    }
                    2 => {
                        cache.insert(Key::new(k), Val::new(VAL));
                        if k % 5 == 0 {
                            cache.remove(&Key::new(k + 1));
                        }
                    }
                    3 => {
                        let _ =
                            cache.read_or_insert_with(Key::new(k), || Val::new(VAL), |v| v.0.len());
                        if k % 400 == 0 {
                            cache.clear();
                        }
                    }
                    _ => {
                        let g = rcu.read_lock();
                        let _ = cache.get(&Key::new(k), &g).map(|v| v.0.len());
                    }
                }));
                drop(r);
                let b = cache.bytes();
                let excess = b.saturating_sub(max + writers * w) as u64;
                over.fetch_max(excess, SeqCst);
            }
        }));
    }
    let shrinker = {
        let (reclaimer, stop) = (reclaimer.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(SeqCst) {
                i += 1;
                let _ = catch_unwind(AssertUnwindSafe(|| {
                    if i % 2 == 0 {
                        let _ = reclaimer.reclaim(20 * w, &NodeMask::all());
                    } else {
                        reclaimer.shrink(4);
                    }
                }));
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, SeqCst);
    for h in hs {
        h.join().unwrap();
    }
    shrinker.join().unwrap();
    assert_eq!(over.load(SeqCst), 0, "bytes went past the bound");
    WILD.store(false, SeqCst);
    eprintln!("len {} bytes {}", cache.len(), cache.bytes());
    cache.clear();
    assert_eq!((cache.len(), cache.bytes()), (0, 0), "after a quiet clear");
    drop(cache);
    rcu.barrier();
    rcu.barrier();
    assert_eq!(VALS_MADE.load(SeqCst), VALS_DROPPED.load(SeqCst), "values");
    assert_eq!(KEYS_MADE.load(SeqCst), KEYS_DROPPED.load(SeqCst), "keys");
    assert_eq!(rcu.pending_bytes(), 0);
}
