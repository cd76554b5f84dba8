//! A fixed amount of `defer_drop` (or, with `call`, `Rcu::call`) work for
//! profilers (callgrind, perf): 64-byte boxes, a barrier every 10,000.
//! The domain runs grace periods on demand only (so the count does not
//! depend on timing); `background` gives it the default configuration, as
//! the criterion bench `reclaim` has (grace periods in the background,
//! frees partly on the retiring thread).
//!
//! ```text
//! valgrind --tool=callgrind target/release/examples/defer_profile 200000
//! valgrind --tool=callgrind target/release/examples/defer_profile 200000 call
//! valgrind --tool=callgrind target/release/examples/defer_profile 200000 defer background
//! valgrind --tool=callgrind target/release/examples/defer_profile 200000 crossbeam
//! ```
//!
//! `crossbeam` runs the criterion bench's crossbeam-epoch loop instead
//! (`defer_destroy`, then eight pin+flush rounds per 10,000), to compare
//! what glibc's `malloc`/`free` cost each.

#[path = "support/args.rs"]
mod args;
use std::hint::black_box;

fn main() {
    let args = args::Args::from_env(
        "defer_profile",
        "[N: 0 to 10^12, default 200000] [defer|call|crossbeam] [on-demand|background]",
    );
    let n: u64 = args.number(0, "N", 0..=1_000_000_000_000, 200_000);
    let kind = args.word(1, "the work", &["defer", "call", "crossbeam"], "defer");
    let mode = args.word(2, "the mode", &["on-demand", "background"], "on-demand");
    args.at_most(3);
    let call = match kind {
        "call" => true,
        "crossbeam" => return crossbeam(n),
        _ => false,
    };
    let config = match mode {
        "background" => rcu_reclaim::Config::new(),
        _ => rcu_reclaim::Config::new().on_demand(),
    };
    let rcu = rcu_reclaim::Rcu::new(config).unwrap();
    for chunk in 0..n / 10_000 {
        for i in 0..10_000 {
            let b = Box::new([black_box(chunk * 10_000 + i); 8]);
            if call {
                rcu.call(move || drop(b));
            } else {
                rcu.defer_drop(b);
            }
        }
        rcu.barrier();
    }
}

fn crossbeam(n: u64) {
    use crossbeam_epoch::{self as epoch, Owned};
    for chunk in 0..n / 10_000 {
        for i in 0..10_000 {
            let g = epoch::pin();
            let p = Owned::new([black_box(chunk * 10_000 + i); 8]).into_shared(&g);
            // SAFETY: `p` was never published; destroying it later is sound.
            unsafe { g.defer_destroy(p) };
        }
        for _ in 0..8 {
            epoch::pin().flush();
        }
    }
}
