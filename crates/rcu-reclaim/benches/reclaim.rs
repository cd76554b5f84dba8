//! Deferred reclamation, side by side: allocate a 64-byte object and defer
//! its free, reclamation included (each measured batch ends with a drain).
//!
//! * ours: `Rcu::defer_drop` (bulk pages), the same with `Rcu::collect`
//!   after each (the thread's safe point), and `Rcu::call` (a closure
//!   owning the box, stored in the thread's bulk page), drained with `barrier()`;
//! * crossbeam-epoch: `Guard::defer_destroy`, drained by repinning and
//!   flushing until its garbage is collected (it has no barrier);
//! * seize: `Collector::retire` with `reclaim::boxed`, drained by dropping the
//!   collector (which frees everything retired);
//! * liburcu (feature `liburcu`): `call_rcu` + `rcu_barrier`, in C.
//!
//! Also: `barrier()` latency with 10^6 callbacks queued.
//!
//! ```text
//! cargo bench -p rcu-reclaim --features liburcu --bench reclaim
//! ```

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use rcu_reclaim::{Config, Rcu};

type Obj = [u64; 8]; // 64 bytes

/// Objects per measured batch: large enough that the drain is amortised the
/// way a real workload amortises it, small enough to stay in cache-sized
/// memory between drains.
const BATCH: u64 = 10_000;

fn per_batch(c: &mut Criterion, name: &str, mut batch: impl FnMut(u64)) {
    c.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            let mut left = iters;
            while left > 0 {
                let n = left.min(BATCH);
                batch(n);
                left -= n;
            }
            start.elapsed()
        })
    });
}

fn defer_free(c: &mut Criterion) {
    let rcu = Rcu::new(Config::new()).unwrap();
    per_batch(c, "defer_free_64B/rcu-reclaim defer_drop", |n| {
        for i in 0..n {
            rcu.defer_drop(Box::new([black_box(i); 8] as Obj));
        }
        rcu.barrier();
    });
    // As a loop that calls the safe point after each retire: the thread
    // drives the grace periods and frees its own garbage.
    per_batch(c, "defer_free_64B/rcu-reclaim defer_drop+collect", |n| {
        for i in 0..n {
            rcu.defer_drop(Box::new([black_box(i); 8] as Obj));
            rcu.collect();
        }
        rcu.barrier();
    });
    per_batch(c, "defer_free_64B/rcu-reclaim call", |n| {
        for i in 0..n {
            let b = Box::new([black_box(i); 8] as Obj);
            rcu.call(move || drop(b));
        }
        rcu.barrier();
    });

    per_batch(c, "defer_free_64B/crossbeam-epoch defer_destroy", |n| {
        use crossbeam_epoch::{self as epoch, Owned};
        for i in 0..n {
            let g = epoch::pin();
            let p = Owned::new([black_box(i); 8] as Obj).into_shared(&g);
            // SAFETY: `p` was never published; destroying it later is sound.
            unsafe { g.defer_destroy(p) };
        }
        // No barrier in crossbeam: repin and flush until the local bag and
        // the global queue have been collected (a few epochs).
        for _ in 0..8 {
            epoch::pin().flush();
        }
    });

    per_batch(c, "defer_free_64B/seize retire", |n| {
        let collector = seize::Collector::new();
        for i in 0..n {
            let p = Box::into_raw(Box::new([black_box(i); 8] as Obj));
            // SAFETY: `p` is a fresh Box allocation never shared, retired once.
            unsafe { collector.retire(p, seize::reclaim::boxed) };
        }
        drop(collector); // frees everything still retired
    });

    #[cfg(feature = "liburcu")]
    {
        urcu::register();
        per_batch(c, "defer_free_64B/liburcu call_rcu", |n| {
            // SAFETY: the thread is registered; the shim allocates, queues
            // and drains in C.
            unsafe { urcu::shim_call_rcu_n(n) };
        });
    }
}

fn barrier_latency(c: &mut Criterion) {
    // Nothing runs in the background, so the barrier does all the work:
    // one grace period, then invoking the 10^6 entries on its thread.
    let rcu = Rcu::new(Config::new().on_demand()).unwrap();
    let mut g = c.benchmark_group("barrier");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(10));
    g.bench_function("barrier with 10^6 callbacks queued", |b| {
        b.iter_batched(
            || {
                for _ in 0..1_000_000 {
                    rcu.call(|| {});
                }
            },
            |()| rcu.barrier(),
            BatchSize::PerIteration,
        )
    });
    g.bench_function("barrier with 10^6 deferred drops queued", |b| {
        b.iter_batched(
            || {
                for i in 0..1_000_000u64 {
                    rcu.defer_drop(Box::new(i));
                }
            },
            |()| rcu.barrier(),
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

#[cfg(feature = "liburcu")]
mod urcu {
    extern "C" {
        pub fn shim_register_thread();
        pub fn shim_call_rcu_n(n: u64);
    }

    pub fn register() {
        // SAFETY: registering the calling thread with liburcu is always sound.
        unsafe { shim_register_thread() };
    }
}

criterion_group!(benches, defer_free, barrier_latency);
criterion_main!(benches);
