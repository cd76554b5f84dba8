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
use std::hint::black_box;

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(200_000);
    let call = match args.next().as_deref() {
        None | Some("defer") => false,
        Some("call") => true,
        Some("crossbeam") => return crossbeam(n),
        Some(other) => {
            eprintln!(
                "usage: defer_profile [N] [defer|call|crossbeam] [on-demand|background] (not {other:?})"
            );
            std::process::exit(2);
        }
    };
    let config = match args.next().as_deref() {
        None | Some("on-demand") => rcu_reclaim::Config::new().on_demand(),
        Some("background") => rcu_reclaim::Config::new(),
        Some(other) => {
            eprintln!(
                "usage: defer_profile [N] [defer|call|crossbeam] [on-demand|background] (not {other:?})"
            );
            std::process::exit(2);
        }
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
