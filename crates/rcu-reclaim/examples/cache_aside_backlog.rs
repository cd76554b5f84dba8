//! The backlog (evicted entries waiting to be freed, `Rcu::pending_bytes`)
//! of an `RcuCache` filled through `get_or_insert_with` (the cache-aside
//! call, which runs inside the caller's read-side section) against one
//! filled through `get` and `insert` (outside it), or `read_or_insert_with`
//! (which makes and inserts outside it): 2 threads, a 64 MiB
//! cache, skewed keys over 100 000, values of 1-64 KiB, 5 s each; the
//! backlog sampled every 5 ms. `T=1` runs one thread.
//!
//! ```text
//! cargo run --release -p rcu-reclaim --example cache_aside_backlog -- get_or_insert_with
//! cargo run --release -p rcu-reclaim --example cache_aside_backlog -- insert
//! ```
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcu_reclaim::{Rcu, RcuCache};

fn main() {
    let mode = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "get_or_insert_with".into());
    let call = match mode.as_str() {
        "get_or_insert_with" => 0,
        "insert" => 1,
        "read_or_insert_with" => 2,
        other => {
            eprintln!(
                "unknown mode {other:?}: give get_or_insert_with, insert or read_or_insert_with"
            );
            std::process::exit(2);
        }
    };
    let cache: Arc<RcuCache<u64, Vec<u8>>> =
        Arc::new(RcuCache::builder().max_bytes(64 << 20).build());
    let stop = Arc::new(AtomicBool::new(false));
    let nthreads: u64 = match std::env::var("T") {
        Err(_) => 2,
        Ok(v) => {
            match v.trim().parse() {
                Ok(n) if (1..=256).contains(&n) => n,
                _ => {
                    eprintln!("cache_aside_backlog: T (threads) must be a number from 1 to 256, not {v:?}");
                    std::process::exit(2);
                }
            }
        }
    };
    let threads: Vec<_> = (0..nthreads)
        .map(|t| {
            let (cache, stop) = (cache.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ (t + 1);
                let mut ops = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    // Skewed: low keys come up far more often.
                    let key = (x % 100_000) * (x % 7 + 1) % 100_000;
                    let size = 1024 + (key as usize).wrapping_mul(2_654_435_761) % (63 * 1024);
                    let make = || vec![key as u8; size];
                    match call {
                        0 => {
                            let guard = cache.domain().read_lock();
                            let v = cache.get_or_insert_with(key, make, &guard);
                            std::hint::black_box(v[0]);
                        }
                        1 => {
                            if cache.get(&key, &cache.domain().read_lock()).is_none() {
                                cache.insert(key, make());
                            }
                        }
                        _ => {
                            std::hint::black_box(cache.read_or_insert_with(key, make, |v| v[0]));
                        }
                    }
                    ops += 1;
                }
                ops
            })
        })
        .collect();
    let (start, mut sum, mut samples, mut peak) = (Instant::now(), 0usize, 0usize, 0usize);
    while start.elapsed() < Duration::from_secs(5) {
        let pending = Rcu::global().pending_bytes();
        peak = peak.max(pending);
        sum += pending;
        samples += 1;
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::Relaxed);
    let ops: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    let mib = |b: usize| b as f64 / f64::from(1 << 20);
    println!(
        "{mode}: {:.2} M ops/s, backlog mean {:.1} MiB, peak {:.1} MiB, {} grace periods",
        ops as f64 / 5e6,
        mib(sum / samples.max(1)),
        mib(peak),
        Rcu::global().stats().gp_completed
    );
}
