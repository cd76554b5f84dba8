//! Measures the lazy-pace trade-off that sets `lazy_delay` and `lazy_batch`'s
//! defaults: grace periods per second (CPU spent on reclamation) against
//! bytes in flight (memory held by garbage), under a sustained churn.
//!
//! ```text
//! cargo run --release -p rcu-reclaim --example lazy_pace
//! ```
//!
//! A writer replaces a 1 KiB object in an `RcuCell` as fast as it can,
//! deferring the old one; two readers read it in short sections.

#[path = "support/args.rs"]
mod args;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rcu_reclaim::{Config, Rcu, RcuCell};

fn run(delay: Duration, batch: usize, secs: f64) -> (f64, f64, usize) {
    let rcu = Rcu::new(Config::new().lazy_delay(delay).lazy_batch(batch)).unwrap();
    let cell = Arc::new(RcuCell::new_in(&rcu, Some(Box::new([0u8; 1024]))));
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (rcu, cell, stop, reads) = (rcu.clone(), cell.clone(), stop.clone(), reads.clone());
            thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let g = rcu.read_lock();
                    n += u64::from(cell.load(&g).map_or(0, |b| b[0]));
                    n += 1;
                }
                reads.fetch_add(n, Ordering::Relaxed);
            })
        })
        .collect();
    let start = Instant::now();
    let gp0 = rcu.stats().gp_completed;
    let mut updates = 0u64;
    let mut peak = 0usize;
    while start.elapsed().as_secs_f64() < secs {
        for _ in 0..256 {
            cell.store(Box::new([1u8; 1024]));
        }
        updates += 256;
        peak = peak.max(rcu.pending_bytes());
    }
    let elapsed = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().unwrap();
    }
    let gps = (rcu.stats().gp_completed - gp0) as f64 / elapsed;
    rcu.barrier();
    (updates as f64 / elapsed, gps, peak)
}

fn main() {
    let args = args::Args::from_env("lazy_pace", "[SECONDS: 0.001 to 3600, default 2]");
    let secs: f64 = args.number(0, "SECONDS", args::SECS, 2.0);
    args.at_most(1);
    println!("| lazy_delay | lazy_batch | updates/s | grace periods/s | peak pending |");
    println!("|---|---|---|---|---|");
    for (delay_ms, batch) in [
        (1, 100),
        (10, 1000),
        (50, 1000),
        (50, 10_000),
        (200, 1000),
        (200, 100_000),
    ] {
        let (ups, gps, peak) = run(Duration::from_millis(delay_ms), batch, secs);
        println!(
            "| {delay_ms} ms | {batch} | {:.2} M | {gps:.0} | {:.1} MiB |",
            ups / 1e6,
            peak as f64 / (1 << 20) as f64
        );
    }
}
