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
//! cost. Each variant's loop is its own `#[inline(never)]` function, shared
//! with the benches (`benches/support/read_pairs.rs`: `ours_pairs`,
//! `ours_pairs_nested`, `ours_load_pairs`), so
//! `--toggle-collect='*read_pairs::ours_pairs*'` gives the same number
//! directly.
//!
//! Variants: `memb` (global domain, which is memb when the kernel offers
//! `membarrier`), `mb` (a domain forced to the mb flavor), `nested` (inner
//! pairs under a held outer guard, global domain), `load` (a section with
//! one `RcuCell::load`, global domain). The C counterpart for liburcu is
//! `csrc/callgrind_read_pair.c` (see BENCHMARKS.md).

use std::hint::black_box;
use std::process::ExitCode;

use rcu_reclaim::{Config, Flavor, Rcu, RcuCell};

#[path = "../benches/support/read_pairs.rs"]
mod read_pairs;
use read_pairs::{ours_load_pairs, ours_pairs, ours_pairs_nested};

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
        "nested" => ours_pairs_nested(black_box(&rcu), black_box(n)),
        "load" => {
            black_box(ours_load_pairs(
                black_box(&rcu),
                black_box(&cell),
                black_box(n),
            ));
        }
        _ => ours_pairs(black_box(&rcu), black_box(n)),
    }
    println!("variant={variant} flavor={} pairs={n}", rcu.flavor());
    ExitCode::SUCCESS
}
