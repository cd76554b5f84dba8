//! A fixed amount of `defer_drop` work for profilers (callgrind, perf).
//!
//! ```text
//! valgrind --tool=callgrind target/release/examples/defer_profile 200000
//! ```
use std::hint::black_box;

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(200_000);
    let rcu = rcu_reclaim::Rcu::new(rcu_reclaim::Config::new().on_demand()).unwrap();
    for chunk in 0..n / 10_000 {
        for i in 0..10_000 {
            rcu.defer_drop(Box::new([black_box(chunk * 10_000 + i); 8]));
        }
        rcu.barrier();
    }
}
