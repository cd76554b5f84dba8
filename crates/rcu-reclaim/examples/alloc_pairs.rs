//! N alloc/free pairs of 64 bytes through the system allocator or the
//! accounting allocator, for instruction counts under callgrind:
//!
//! ```text
//! valgrind --tool=callgrind target/release/examples/alloc_pairs system 1000000
//! valgrind --tool=callgrind target/release/examples/alloc_pairs accounting 1000000
//! ```
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
    let mut args = std::env::args().skip(1);
    let which = args.next().unwrap_or_else(|| "system".into());
    let n: u64 = args
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    match which.as_str() {
        "accounting" => pairs(&ACCOUNTING, n),
        _ => pairs(&System, n),
    }
}
