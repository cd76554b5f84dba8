//! Where a deferred free's time goes: `defer_drop` of 64-byte objects with
//! and without a barrier per batch, against a plain `drop`.
//!
//! ```text
//! cargo run --release -p rcu-reclaim --example defer_cost
//! ```

use std::hint::black_box;
use std::time::Instant;

use rcu_reclaim::{Config, Rcu};

fn main() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let n = 5_000_000u64;
    let t = Instant::now();
    for i in 0..n {
        drop(black_box(Box::new([i; 8])));
    }
    println!(
        "alloc + drop:                      {:6.1} ns/op",
        t.elapsed().as_nanos() as f64 / n as f64
    );
    let t = Instant::now();
    for i in 0..n {
        rcu.defer_drop(Box::new([black_box(i); 8]));
    }
    let queued = t.elapsed();
    rcu.barrier();
    println!(
        "alloc + defer_drop (queue only):   {:6.1} ns/op, then barrier {:?}",
        queued.as_nanos() as f64 / n as f64,
        t.elapsed() - queued
    );
    let t = Instant::now();
    for chunk in 0..n / 10_000 {
        for i in 0..10_000 {
            rcu.defer_drop(Box::new([black_box(chunk * 10_000 + i); 8]));
        }
        rcu.barrier();
    }
    println!(
        "alloc + defer_drop + barrier/10k:  {:6.1} ns/op",
        t.elapsed().as_nanos() as f64 / n as f64
    );
    // Nothing runs in the background: the barrier frees on this thread.
    let lazy = Rcu::new(Config::new().on_demand()).unwrap();
    let t = Instant::now();
    for chunk in 0..n / 10_000 {
        for i in 0..10_000 {
            lazy.defer_drop(Box::new([black_box(chunk * 10_000 + i); 8]));
        }
        lazy.barrier();
    }
    println!(
        "same, freed by the barrier's thread: {:6.1} ns/op",
        t.elapsed().as_nanos() as f64 / n as f64
    );
}
