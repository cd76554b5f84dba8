//! Caches under budgets, flapping pressure, and dropped in callbacks and
//! sections.

use super::*;

// ---------------------------------------------------------------------
// A cache under a budget, with a pressure signal flapping fast.
// ---------------------------------------------------------------------

/// A cache value that counts its drops and checks it is alive when read.
struct Blob(Tracked);

#[test]
fn cache_with_budget_under_flapping_pressure() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let usage = Arc::new(AtomicUsize::new(0));
    let u2 = usage.clone();
    let reclaimer = Arc::new(Reclaimer::new(&rcu));
    let budget = Arc::new(MemoryBudget::new(4 << 20, reclaimer, move || {
        u2.load(Ordering::Relaxed)
    }));
    const MAX: usize = 2 << 20;
    let cache: Arc<RcuCache<u64, Blob>> = Arc::new(
        RcuCache::builder()
            .rcu(&rcu)
            .max_bytes(MAX)
            .budget(&budget)
            .weigher(|_k: &u64, v: &Blob| v.0.payload.len())
            .regrow_after(Duration::from_millis(20))
            .build(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    const WRITERS: usize = 2;
    const MAX_ENTRY: usize = 16 << 10;
    let mut threads = Vec::new();
    for w in 0..WRITERS as u64 {
        let (cache, usage, rcu) = (cache.clone(), usage.clone(), rcu.clone());
        threads.push(thread::spawn(move || {
            let start = Instant::now();
            let mut i = 0u64;
            while i < 3000 || start.elapsed() < Duration::from_secs(3) {
                i += 1;
                let key = (i * 7 + w) % 600;
                let len = 1024 + (i as usize * 613) % (MAX_ENTRY - 1024);
                cache.insert(key, Blob(Tracked::new(S_CACHE, key, len)));
                // The budget's usage: what the cache holds and what waits
                // to be freed, doubled now and then to cross its marks.
                let doubled = if i % 100 < 10 { 2 } else { 1 };
                usage.store(
                    (cache.bytes() + rcu.pending_bytes()) * doubled,
                    Ordering::Relaxed,
                );
                if i % 97 == 0 {
                    cache.remove(&key);
                }
            }
        }));
    }
    let mut helpers = Vec::new();
    {
        let (rcu, stop) = (rcu.clone(), stop.clone());
        helpers.push(thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let g = rcu.pressure_start_all();
                thread::sleep(Duration::from_micros(50));
                drop(g);
                thread::sleep(Duration::from_micros(50));
            }
        }));
    }
    // Readers that hold entries for a while and check them at the end.
    for r in 0..2u64 {
        let (rcu, cache, stop) = (rcu.clone(), cache.clone(), stop.clone());
        helpers.push(thread::spawn(move || {
            let mut i = r;
            while !stop.load(Ordering::Relaxed) {
                let g = rcu.read_lock();
                let held: Vec<&Blob> = (0..40)
                    .filter_map(|k| cache.get(&((i + k) % 600), &g))
                    .collect();
                for b in &held {
                    b.0.check();
                }
                thread::sleep(Duration::from_micros(200));
                for b in &held {
                    assert_eq!(b.0.check() % 600, b.0.value % 600);
                    assert!(b
                        .0
                        .payload
                        .iter()
                        .step_by(512)
                        .all(|&x| x == b.0.value as u8));
                }
                drop(g);
                i += 40;
            }
        }));
    }
    // A sampler of the cache's bound.
    {
        let (cache, stop) = (cache.clone(), stop.clone());
        helpers.push(thread::spawn(move || {
            let mut worst = 0;
            while !stop.load(Ordering::Relaxed) {
                let b = cache.bytes();
                worst = worst.max(b);
                // Writes in flight may each have added an entry not yet
                // queued (the documented slack).
                let slack = WRITERS * (MAX_ENTRY + RcuCache::<u64, Blob>::ENTRY_OVERHEAD);
                assert!(
                    b <= MAX + slack,
                    "cache holds {b} bytes, max {MAX} + slack {slack}"
                );
                thread::sleep(Duration::from_micros(100));
            }
            assert!(worst > 0);
        }));
    }
    let _stop = StopOnDrop(&stop);
    for t in threads {
        t.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for h in helpers {
        h.join().unwrap();
    }
    assert!(
        cache.bytes() <= cache.capacity_bytes(),
        "over capacity at quiescence"
    );
    rcu.barrier();
    assert_eq!(rcu.pending_bytes(), 0);
    assert_eq!(live(S_CACHE), cache.len() as isize);
    drop(cache);
    drop(budget);
    assert_quiescent_books(&rcu);
    assert_eq!(live(S_CACHE), 0);
    assert_eq!(POISON_READS[S_CACHE].load(Ordering::SeqCst), 0);
}

/// Caches tied to a budget and a pressure monitor fed at high frequency,
/// made and dropped over and over in a domain of their own: dropped on the
/// main thread, inside a callback of another domain, and inside a section
/// of their own domain (where the monitor's and the shrinker's drops do
/// not wait, as documented). Every value is freed once, nothing hangs.
#[test]
fn caches_with_budgets_and_monitors_dropped_in_callbacks_and_sections() {
    use rcu_reclaim::sources::{Level, SyntheticSource};
    let other = Rcu::new(Config::new()).unwrap();
    for round in 0..12u64 {
        let rcu = Rcu::new(Config::new()).unwrap();
        let usage = Arc::new(AtomicUsize::new(0));
        let u2 = usage.clone();
        let reclaimer = Arc::new(Reclaimer::new(&rcu));
        reclaimer.set_oom_handler(|_| {});
        let budget = Arc::new(MemoryBudget::new(1 << 20, reclaimer, move || {
            u2.load(Ordering::Relaxed)
        }));
        let (tx, src) = SyntheticSource::new();
        let cache: Arc<RcuCache<u64, Blob>> = Arc::new(
            RcuCache::builder()
                .rcu(&rcu)
                .max_bytes(512 << 10)
                .budget(&budget)
                .pressure_source(Box::new(src))
                .weigher(|_k: &u64, v: &Blob| v.0.payload.len())
                .regrow_after(Duration::from_millis(5))
                .build(),
        );
        let stop = Arc::new(AtomicBool::new(false));
        let signaller = {
            let stop = stop.clone();
            thread::spawn(move || {
                let mut n = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let level = [Level::Low, Level::Medium, Level::Critical][n as usize % 3];
                    if tx.send(level).is_err() {
                        break;
                    }
                    n += 1;
                    thread::sleep(Duration::from_micros(200));
                }
            })
        };
        let writers: Vec<_> = (0..2u64)
            .map(|w| {
                let (cache, usage, rcu) = (cache.clone(), usage.clone(), rcu.clone());
                thread::spawn(move || {
                    for i in 0..400u64 {
                        let key = (i * 3 + w) % 97;
                        cache.insert(
                            key,
                            Blob(Tracked::new(
                                S_CACHE_LIFE,
                                key,
                                2048 + (i as usize % 5) * 1024,
                            )),
                        );
                        usage.store(cache.bytes() * 2 + rcu.pending_bytes(), Ordering::Relaxed);
                        let g = rcu.read_lock();
                        if let Some(b) = cache.get(&((key + 1) % 97), &g) {
                            b.0.check();
                        }
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        match round % 3 {
            0 => {
                drop(cache);
                drop(budget);
            }
            1 => {
                other.call(move || {
                    drop(cache);
                    drop(budget);
                });
                other.barrier();
            }
            _ => {
                let r2 = rcu.clone();
                let g = r2.read_lock();
                drop(cache);
                drop(budget);
                drop(g);
            }
        }
        stop.store(true, Ordering::Relaxed);
        signaller.join().unwrap();
        drop(rcu);
        assert!(
            eventually(20, || live(S_CACHE_LIFE) == 0),
            "round {round}: {} values never freed",
            live(S_CACHE_LIFE)
        );
    }
    assert_eq!(POISON_READS[S_CACHE_LIFE].load(Ordering::SeqCst), 0);
}
