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
//!
//! QSBR variants (a `Flavor::Qsbr` domain, the thread registered outside
//! the loop): `qsbr_load` (a section: the free guard, one `RcuCell::load`
//! and the read), `plain_load` (the same loop with no RCU: an acquire load
//! of a pointer and the read, the baseline), `qsbr_raw` (`plain_load`'s
//! loop with a QSBR guard around each load: it must match `plain_load`) and
//! `qsbr_qs` (`QsbrThread::quiescent_state`, no grace period meanwhile).
//! The C counterpart for liburcu-qsbr is `csrc/callgrind_qsbr.c`.
//!
//! Other crates' snapshot reads, the same one-`u64` read: `arc_swap`
//! (`ArcSwap::load`), `arc_swap_full` (`ArcSwap::load_full`) and
//! `crossbeam_load` (a crossbeam-epoch pin around `Atomic::load`).

use std::hint::black_box;
use std::process::ExitCode;

use rcu_reclaim::{Config, Flavor, Rcu, RcuCell};

#[path = "../benches/support/read_pairs.rs"]
mod read_pairs;
use read_pairs::{
    arc_swap_load_fulls, arc_swap_loads, crossbeam_load_pins, ours_load_pairs, ours_pairs,
    ours_pairs_nested, plain_loads, qsbr_load_sections, qsbr_quiescent_states, qsbr_raw_loads,
};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (variant, n) = match (args.get(1), args.get(2).map(|s| s.parse::<u64>())) {
        (Some(v), Some(Ok(n))) => (v.as_str(), n),
        _ => {
            eprintln!(
                "usage: callgrind_read_pair <memb|mb|nested|load|qsbr_load|qsbr_raw|plain_load|qsbr_qs|\
                 arc_swap|arc_swap_full|crossbeam_load> <pairs>"
            );
            return ExitCode::from(2);
        }
    };
    if let Some(code) = qsbr_variant(variant, n) {
        return code;
    }
    if let Some(code) = other_crate_variant(variant, n) {
        return code;
    }
    let global = Rcu::global();
    let rcu = match variant {
        "memb" | "nested" | "load" => global.clone(),
        "mb" => Rcu::new(Config::new().flavor(Flavor::Mb)).expect("mb is always available"),
        other => {
            eprintln!(
                "unknown variant {other:?}; expected memb, mb, nested, load, qsbr_load, \
                 qsbr_raw, plain_load, qsbr_qs, arc_swap, arc_swap_full or crossbeam_load"
            );
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

/// Runs a QSBR variant; `None` if `variant` is not one.
fn qsbr_variant(variant: &str, n: u64) -> Option<ExitCode> {
    if !matches!(variant, "qsbr_load" | "qsbr_raw" | "plain_load" | "qsbr_qs") {
        return None;
    }
    let rcu = Rcu::new(Config::new().flavor(Flavor::Qsbr)).expect("qsbr is always available");
    let cell = RcuCell::new_in(&rcu, Some(Box::new(1u64)));
    let mut thread = rcu.register_qsbr_thread();
    let value = Box::new(1u64);
    let ptr = std::sync::atomic::AtomicPtr::new(Box::into_raw(value));
    let sum = match variant {
        "qsbr_load" => qsbr_load_sections(black_box(&thread), black_box(&cell), black_box(n)),
        "qsbr_raw" => qsbr_raw_loads(black_box(&thread), black_box(&ptr), black_box(n)),
        "plain_load" => plain_loads(black_box(&ptr), black_box(n)),
        _ => {
            qsbr_quiescent_states(black_box(&mut thread), black_box(n));
            0
        }
    };
    // SAFETY: from `Box::into_raw` above, freed once.
    drop(unsafe { Box::from_raw(ptr.into_inner()) });
    println!("variant={variant} flavor={} n={n} sum={sum}", rcu.flavor());
    Some(ExitCode::SUCCESS)
}

/// Runs another crate's snapshot read; `None` if `variant` is not one.
fn other_crate_variant(variant: &str, n: u64) -> Option<ExitCode> {
    let sum = match variant {
        "arc_swap" | "arc_swap_full" => {
            let cell = arc_swap::ArcSwap::from_pointee(1u64);
            // The thread's debt slots are set up outside the measured loop.
            black_box(cell.load());
            if variant == "arc_swap" {
                arc_swap_loads(black_box(&cell), black_box(n))
            } else {
                arc_swap_load_fulls(black_box(&cell), black_box(n))
            }
        }
        "crossbeam_load" => {
            let cell = crossbeam_epoch::Atomic::new(1u64);
            drop(crossbeam_epoch::pin()); // registers the thread
            let sum = crossbeam_load_pins(black_box(&cell), black_box(n));
            // SAFETY: no other thread can reach `cell`.
            drop(unsafe { cell.into_owned() });
            sum
        }
        _ => return None,
    };
    println!("variant={variant} n={n} sum={sum}");
    Some(ExitCode::SUCCESS)
}
