//! Callgrind driver: runs N read-side sections so that
//! `valgrind --tool=callgrind` can count the instructions of one pair.
//!
//! ```text
//! cargo build --release -p rcu-reclaim --example callgrind_read_pair
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.memb.1m \
//!     target/release/examples/callgrind_read_pair memb 1000000
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.memb.2m \
//!     target/release/examples/callgrind_read_pair memb 2000000
//! ```
//!
//! Instructions per pair = (Ir(2M) - Ir(1M)) / 1M, which cancels start-up
//! cost. Each variant's loop is its own `#[inline(never)]` function
//! (`pairs_outermost`, `pairs_nested`, `pairs_load`), so
//! `--toggle-collect='*pairs_outermost*'` gives the same number directly.
//!
//! Variants: `memb` (global domain, which is memb when the kernel offers
//! `membarrier`), `mb` (a domain forced to the mb flavor), `nested` (inner
//! pairs under a held outer guard, global domain), `load` (a section with
//! one `RcuCell::load`, global domain). The C counterpart for liburcu is
//! `csrc/callgrind_read_pair.c` (see BENCHMARKS.md).

use std::hint::black_box;
use std::process::ExitCode;

use rcu_reclaim::{Config, Flavor, Rcu, RcuCell};

/// `n` outermost sections of `rcu`.
#[inline(never)]
fn pairs_outermost(rcu: &Rcu, n: u64) {
    for _ in 0..n {
        let guard = rcu.read_lock();
        drop(guard);
    }
}

/// `n` sections nested in one outer section of `rcu`.
#[inline(never)]
fn pairs_nested(rcu: &Rcu, n: u64) {
    let outer = rcu.read_lock();
    for _ in 0..n {
        let guard = rcu.read_lock();
        drop(guard);
    }
    drop(outer);
}

/// `n` sections that each load `cell` and read the value.
#[inline(never)]
fn pairs_load(rcu: &Rcu, cell: &RcuCell<u64>, n: u64) -> u64 {
    let mut sum = 0u64;
    for _ in 0..n {
        let guard = rcu.read_lock();
        sum = sum.wrapping_add(*cell.load(&guard).expect("never emptied"));
        drop(guard);
    }
    sum
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (variant, n) = match (args.get(1), args.get(2).map(|s| s.parse::<u64>())) {
        (Some(v), Some(Ok(n))) => (v.as_str(), n),
        _ => {
            eprintln!("usage: callgrind_read_pair <memb|mb|nested|load> <pairs>");
            return ExitCode::from(2);
        }
    };
    let global = Rcu::global();
    let rcu = match variant {
        "memb" | "nested" | "load" => global.clone(),
        "mb" => Rcu::new(Config::new().flavor(Flavor::Mb)).expect("mb is always available"),
        other => {
            eprintln!("unknown variant {other:?}; expected memb, mb, nested or load");
            return ExitCode::from(2);
        }
    };
    // Register this thread outside the measured loop.
    drop(rcu.read_lock());
    let cell = RcuCell::new_in(&rcu, Some(Box::new(1u64)));
    match variant {
        "nested" => pairs_nested(black_box(&rcu), black_box(n)),
        "load" => {
            black_box(pairs_load(black_box(&rcu), black_box(&cell), black_box(n)));
        }
        _ => pairs_outermost(black_box(&rcu), black_box(n)),
    }
    println!("variant={variant} flavor={} pairs={n}", rcu.flavor());
    ExitCode::SUCCESS
}
