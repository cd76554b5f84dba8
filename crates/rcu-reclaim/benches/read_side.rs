//! Read-side cost: one read-side section (lock + unlock) per iteration.
//!
//! Every variant runs its pairs in a tight loop inside one `#[inline(never)]`
//! function (for liburcu, one C function, so no FFI call is paid per pair)
//! and is timed with criterion's `iter_custom`, so the reported time per
//! iteration is the time per pair for every row.
//!
//! `read_load` also times arc-swap's `load` and `load_full` and a
//! crossbeam-epoch pin around an `Atomic::load`: the same one-`u64` read
//! through each crate's snapshot cell.
//!
//! ```text
//! cargo bench -p rcu-reclaim --bench read_side -- --warm-up-time 1 --measurement-time 3
//! cargo bench -p rcu-reclaim --features liburcu --bench read_side -- --warm-up-time 1 --measurement-time 3
//! ```

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use rcu_reclaim::{Config, Flavor, Rcu, RcuCell};

#[path = "support/read_pairs.rs"]
mod read_pairs;
use read_pairs::*;

#[cfg(feature = "liburcu")]
#[path = "support/urcu_ffi.rs"]
mod urcu_ffi;

/// liburcu's memb flavor through the C shim in `csrc/urcu_shim.c`.
#[cfg(feature = "liburcu")]
mod urcu {
    use super::urcu_ffi::*;

    /// Registers the calling thread with liburcu (memb) for its lifetime.
    pub struct Registered(());

    impl Registered {
        /// Registers the calling thread.
        pub fn new() -> Self {
            // SAFETY: registering takes no arguments; the matching unregister
            // runs in `Drop` on the same thread (the type is used on one
            // thread only, on the stack of the bench function).
            unsafe { shim_register_thread() };
            Registered(())
        }

        /// `n` lock/unlock pairs, inlined in a C loop.
        pub fn read_pairs(&self, n: u64) -> u64 {
            // SAFETY: the calling thread is registered (`self` exists).
            unsafe { shim_read_pairs(n) }
        }

        /// `n` pairs nested inside one outer section.
        pub fn read_pairs_nested(&self, n: u64) -> u64 {
            // SAFETY: the calling thread is registered.
            unsafe { shim_read_pairs_nested(n) }
        }

        /// `n` sections, each dereferencing `*slot` and reading the value.
        pub fn read_deref_pairs(&self, n: u64, slot: &*mut u64) -> u64 {
            // SAFETY: the thread is registered; `*slot` points to a live
            // `u64` that nobody frees while we borrow `slot`.
            unsafe { shim_read_deref_pairs(n, slot) }
        }

        /// One section reading `**slot`.
        pub fn read_once(&self, slot: &*mut u64) -> u64 {
            // SAFETY: as in `read_deref_pairs`.
            unsafe { shim_read_once(slot) }
        }
    }

    impl Drop for Registered {
        fn drop(&mut self) {
            // SAFETY: this thread registered in `new` and is outside any
            // liburcu section (every shim loop closes its sections).
            unsafe { shim_unregister_thread() };
        }
    }

    /// Whether liburcu uses `membarrier` (its read side is then a compiler
    /// barrier only, like ours).
    pub fn has_sys_membarrier() -> bool {
        // SAFETY: reads an int that liburcu's constructor initialised.
        unsafe { shim_has_sys_membarrier() != 0 }
    }
}

/// Times `f(iters)`: the time per iteration is the time per pair.
fn timed(iters: u64, f: impl FnOnce(u64)) -> Duration {
    let start = Instant::now();
    f(iters);
    start.elapsed()
}

fn read_pair(c: &mut Criterion) {
    let global = Rcu::global();
    let mb = Rcu::new(Config::new().flavor(Flavor::Mb)).expect("the mb flavor is always available");
    let other = Rcu::new(Config::new()).expect("a second domain");
    eprintln!(
        "read_side: global domain flavor = {}, forced-mb domain flavor = {}",
        global.flavor(),
        mb.flavor()
    );
    #[cfg(feature = "liburcu")]
    eprintln!(
        "read_side: liburcu memb uses sys_membarrier = {}",
        urcu::has_sys_membarrier()
    );

    let mut g = c.benchmark_group("read_pair");
    g.bench_function("ours_memb_global", |b| {
        b.iter_custom(|iters| timed(iters, |n| ours_pairs(black_box(global), n)))
    });
    g.bench_function("ours_mb", |b| {
        b.iter_custom(|iters| timed(iters, |n| ours_pairs(black_box(&mb), n)))
    });
    g.bench_function("ours_memb_nested", |b| {
        b.iter_custom(|iters| timed(iters, |n| ours_pairs_nested(black_box(global), n)))
    });
    g.bench_function("ours_memb_two_domains_alternating", |b| {
        b.iter_custom(|iters| {
            timed(iters, |n| {
                ours_pairs_alternating(black_box(global), black_box(&other), n)
            })
        })
    });
    g.bench_function("crossbeam_epoch_pin", |b| {
        b.iter_custom(|iters| timed(iters, crossbeam_pins))
    });
    let collector = seize::Collector::new();
    g.bench_function("seize_enter", |b| {
        b.iter_custom(|iters| timed(iters, |n| seize_enters(black_box(&collector), n)))
    });
    #[cfg(feature = "liburcu")]
    {
        let reg = urcu::Registered::new();
        g.bench_function("liburcu_memb", |b| {
            b.iter_custom(|iters| {
                timed(iters, |n| {
                    black_box(reg.read_pairs(n));
                })
            })
        });
        g.bench_function("liburcu_memb_nested", |b| {
            b.iter_custom(|iters| {
                timed(iters, |n| {
                    black_box(reg.read_pairs_nested(n));
                })
            })
        });
        drop(reg);
    }
    g.finish();

    let mut g = c.benchmark_group("read_load");
    let cell = RcuCell::new(7u64);
    g.bench_function("ours_memb_rcucell_load", |b| {
        b.iter_custom(|iters| {
            timed(iters, |n| {
                black_box(ours_load_pairs(black_box(global), black_box(&cell), n));
            })
        })
    });
    let swap = arc_swap::ArcSwap::from_pointee(7u64);
    g.bench_function("arc_swap_load", |b| {
        b.iter_custom(|iters| {
            timed(iters, |n| {
                black_box(arc_swap_loads(black_box(&swap), n));
            })
        })
    });
    g.bench_function("arc_swap_load_full", |b| {
        b.iter_custom(|iters| {
            timed(iters, |n| {
                black_box(arc_swap_load_fulls(black_box(&swap), n));
            })
        })
    });
    let atomic = crossbeam_epoch::Atomic::new(7u64);
    g.bench_function("crossbeam_epoch_atomic_load", |b| {
        b.iter_custom(|iters| {
            timed(iters, |n| {
                black_box(crossbeam_load_pins(black_box(&atomic), n));
            })
        })
    });
    // SAFETY: no other thread can reach `atomic`; the loop above is done.
    drop(unsafe { atomic.into_owned() });
    #[cfg(feature = "liburcu")]
    {
        let reg = urcu::Registered::new();
        let slot: *mut u64 = Box::into_raw(Box::new(7u64));
        assert_eq!(reg.read_once(&slot), 7);
        g.bench_function("liburcu_memb_rcu_dereference", |b| {
            b.iter_custom(|iters| {
                timed(iters, |n| {
                    black_box(reg.read_deref_pairs(n, black_box(&slot)));
                })
            })
        });
        drop(reg);
        // SAFETY: `slot` came from `Box::into_raw` above and no reader can
        // reach it any more (the only reader was this thread's shim loop).
        drop(unsafe { Box::from_raw(slot) });
    }
    g.finish();
}

criterion_group!(benches, read_pair);
criterion_main!(benches);
