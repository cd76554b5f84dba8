//! N alloc/free pairs of 64 bytes through the system allocator or the
//! accounting allocator, for instruction counts under callgrind:
//!
//! ```text
//! valgrind --tool=callgrind target/release/examples/alloc_pairs system 1000000
//! valgrind --tool=callgrind target/release/examples/alloc_pairs accounting 1000000
//! ```

#[path = "support/args.rs"]
mod args;
use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;

static ACCOUNTING: rcu_reclaim::reclaim::AccountingAlloc =
    rcu_reclaim::reclaim::AccountingAlloc::system();

fn pairs<A: GlobalAlloc>(a: &A, n: u64) {
    let layout = Layout::from_size_align(64, 8).unwrap();
    for _ in 0..n {
        // SAFETY: non-zero layout, freed with the same layout.
        unsafe {
            let p = a.alloc(layout);
            a.dealloc(black_box(p), layout);
        }
    }
}

fn main() {
    let args = args::Args::from_env(
        "alloc_pairs",
        "[system|accounting] [N: 0 to 10^12, default 1000000]",
    );
    let which = args.word(0, "the allocator", &["system", "accounting"], "system");
    let n: u64 = args.number(1, "N", 0..=1_000_000_000_000, 1_000_000);
    args.at_most(2);
    match which {
        "accounting" => pairs(&ACCOUNTING, n),
        _ => pairs(&System, n),
    }
}
