//! Cost of the accounting allocator per alloc/free pair, against the
//! system allocator it wraps (both called directly, 64 and 4096 bytes).
//!
//! ```text
//! cargo bench -p rcu-reclaim --bench accounting
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use rcu_reclaim::reclaim::AccountingAlloc;

static ACCOUNTING: AccountingAlloc = AccountingAlloc::system();

fn pair<A: GlobalAlloc>(a: &A, layout: Layout) {
    // SAFETY: a non-zero layout; the block is freed with the same layout.
    unsafe {
        let p = a.alloc(layout);
        black_box(p);
        a.dealloc(p, layout);
    }
}

fn bench(c: &mut Criterion) {
    for size in [64usize, 4096] {
        let layout = Layout::from_size_align(size, 8).unwrap();
        c.bench_function(&format!("alloc+free {size} B/system"), |b| {
            b.iter(|| pair(&System, layout))
        });
        c.bench_function(&format!("alloc+free {size} B/accounting"), |b| {
            b.iter(|| pair(&ACCOUNTING, layout))
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
