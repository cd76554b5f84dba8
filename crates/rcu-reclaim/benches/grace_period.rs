//! Grace-period latency: one `synchronize` per iteration.
//!
//! * `gp_idle`: one reader thread is registered in the domain (it took a
//!   section once) but sleeps outside any section.
//! * `gp_busy_reader`: one reader thread loops `read_lock`, a short spin
//!   (`BUSY_WORK` iterations), `read_unlock` for the whole measurement, and is
//!   stopped afterwards. Only one busy reader runs at a time (the machine has
//!   two cores: one for the reader, one for the writer).
//! * `gp_poll`: the cost of `get_state()` + `poll()` (no grace period).
//!
//! liburcu's rows (feature `liburcu`) use `urcu_memb_synchronize_rcu()` with
//! a reader thread registered with liburcu, idle or busy in the same way.
//!
//! ```text
//! cargo bench -p rcu-reclaim --features liburcu --bench grace_period -- --warm-up-time 1 --measurement-time 3
//! ```

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion};
use rcu_reclaim::{Config, Flavor, Rcu};

/// Spin iterations inside each busy-reader section.
const BUSY_WORK: u32 = 64;

#[cfg(feature = "liburcu")]
#[path = "support/urcu_ffi.rs"]
mod urcu_ffi;

/// liburcu's memb flavor through the C shim in `csrc/urcu_shim.c`.
#[cfg(feature = "liburcu")]
mod urcu {
    use std::sync::atomic::{AtomicI32, Ordering};
    use std::sync::{mpsc, Arc};
    use std::thread::{self, JoinHandle};

    use super::urcu_ffi::*;

    /// `urcu_memb_synchronize_rcu()`.
    pub fn synchronize() {
        // SAFETY: the caller (the bench's main thread) is not inside a
        // liburcu section: it never takes one.
        unsafe { shim_synchronize() }
    }

    /// Whether liburcu uses `membarrier` for its memb flavor.
    pub fn has_sys_membarrier() -> bool {
        // SAFETY: reads an int that liburcu's constructor initialised.
        unsafe { shim_has_sys_membarrier() != 0 }
    }

    /// A reader thread registered with liburcu: busy (looping sections of
    /// `work` spins) or idle (asleep outside any section) until stopped.
    pub struct Reader {
        stop: Arc<AtomicI32>,
        idle_stop: Option<mpsc::Sender<()>>,
        handle: Option<JoinHandle<u64>>,
    }

    impl Reader {
        /// Starts a busy reader and waits until it has registered.
        pub fn busy(work: u32) -> Reader {
            let stop = Arc::new(AtomicI32::new(0));
            let ready = Arc::new(AtomicI32::new(0));
            let (s, r) = (stop.clone(), ready.clone());
            let handle = thread::spawn(move || {
                // SAFETY: `s` and `r` outlive the call (the closure owns the
                // Arcs); the C side reads `stop` and writes `ready` as
                // volatile ints, which have the layout of `AtomicI32`. The
                // shim registers and unregisters the thread itself.
                unsafe { shim_busy_reader(&*s, &*r, work) }
            });
            while ready.load(Ordering::Acquire) == 0 {
                thread::yield_now();
            }
            Reader {
                stop,
                idle_stop: None,
                handle: Some(handle),
            }
        }

        /// Starts an idle, registered reader and waits until it has registered.
        pub fn idle() -> Reader {
            let (ready_tx, ready_rx) = mpsc::channel();
            let (stop_tx, stop_rx) = mpsc::channel::<()>();
            let handle = thread::spawn(move || {
                // SAFETY: registers this thread; unregistered below on the
                // same thread, outside any section.
                unsafe { shim_register_thread() };
                ready_tx.send(()).expect("the bench waits for us");
                let _ = stop_rx.recv();
                // SAFETY: as above.
                unsafe { shim_unregister_thread() };
                0
            });
            ready_rx.recv().expect("the reader registers");
            Reader {
                stop: Arc::new(AtomicI32::new(0)),
                idle_stop: Some(stop_tx),
                handle: Some(handle),
            }
        }

        /// Stops the reader; returns the number of sections it ran.
        pub fn stop(mut self) -> u64 {
            self.stop.store(1, Ordering::Relaxed);
            self.idle_stop.take();
            self.handle
                .take()
                .expect("stopped once")
                .join()
                .expect("the reader does not panic")
        }
    }
}

/// A reader thread of one of our domains: busy or idle, until stopped.
struct Reader {
    stop: Arc<AtomicBool>,
    idle_stop: Option<mpsc::Sender<()>>,
    handle: Option<JoinHandle<u64>>,
}

impl Reader {
    /// Starts a thread that loops `read_lock` / spin / unlock on `rcu`.
    fn busy(rcu: &Rcu, work: u32) -> Reader {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let rcu = rcu.clone();
        let (ready_tx, ready_rx) = mpsc::channel();
        let handle = thread::spawn(move || {
            drop(rcu.read_lock());
            ready_tx.send(()).expect("the bench waits for us");
            let mut sections = 0u64;
            while !s.load(Ordering::Relaxed) {
                let guard = rcu.read_lock();
                spin_work(work);
                drop(guard);
                sections += 1;
            }
            sections
        });
        ready_rx.recv().expect("the reader registers");
        Reader {
            stop,
            idle_stop: None,
            handle: Some(handle),
        }
    }

    /// Starts a thread that registers in `rcu` and sleeps outside sections.
    fn idle(rcu: &Rcu) -> Reader {
        let rcu = rcu.clone();
        let (ready_tx, ready_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let handle = thread::spawn(move || {
            drop(rcu.read_lock());
            ready_tx.send(()).expect("the bench waits for us");
            let _ = stop_rx.recv();
            0
        });
        ready_rx.recv().expect("the reader registers");
        Reader {
            stop: Arc::new(AtomicBool::new(false)),
            idle_stop: Some(stop_tx),
            handle: Some(handle),
        }
    }

    /// Stops the reader; returns the number of sections it ran.
    fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.idle_stop.take();
        self.handle
            .take()
            .expect("stopped once")
            .join()
            .expect("the reader does not panic")
    }
}

/// Spins `work` iterations the compiler must keep (the section's "work").
#[inline]
fn spin_work(work: u32) {
    for i in 0..work {
        black_box(i);
    }
}

/// Times `iters` calls of `f`.
fn timed(iters: u64, mut f: impl FnMut()) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        f();
    }
    start.elapsed()
}

/// Benchmarks our `synchronize` and `synchronize_expedited` on `rcu`, each
/// with its own reader thread made by `reader`.
fn bench_ours(
    g: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    rcu: &Rcu,
    reader: impl Fn(&Rcu) -> Reader,
) {
    let r = reader(rcu);
    g.bench_function(format!("ours_{name}_synchronize"), |b| {
        b.iter_custom(|iters| timed(iters, || rcu.synchronize()))
    });
    r.stop();
    let r = reader(rcu);
    g.bench_function(format!("ours_{name}_synchronize_expedited"), |b| {
        b.iter_custom(|iters| timed(iters, || rcu.synchronize_expedited()))
    });
    r.stop();
}

fn grace_periods(c: &mut Criterion) {
    let global = Rcu::global();
    let mb = Rcu::new(Config::new().flavor(Flavor::Mb)).expect("the mb flavor is always available");
    eprintln!(
        "grace_period: global domain flavor = {}, forced-mb domain flavor = {}",
        global.flavor(),
        mb.flavor()
    );
    #[cfg(feature = "liburcu")]
    eprintln!(
        "grace_period: liburcu memb uses sys_membarrier = {}",
        urcu::has_sys_membarrier()
    );

    // First, before any reader thread registers (liburcu's registry is the
    // process's): `synchronize` with no registered reader at all returns
    // without a `membarrier` in both libraries.
    let mut g = c.benchmark_group("gp_no_reader");
    let lone = Rcu::new(Config::new()).expect("a fresh domain");
    g.bench_function("ours_memb_synchronize", |b| {
        b.iter_custom(|iters| timed(iters, || lone.synchronize()))
    });
    #[cfg(feature = "liburcu")]
    g.bench_function("liburcu_memb_synchronize_rcu", |b| {
        b.iter_custom(|iters| timed(iters, urcu::synchronize))
    });
    g.finish();
    drop(lone);

    let mut g = c.benchmark_group("gp_idle");
    bench_ours(&mut g, "memb", global, Reader::idle);
    bench_ours(&mut g, "mb", &mb, Reader::idle);
    #[cfg(feature = "liburcu")]
    {
        let r = urcu::Reader::idle();
        g.bench_function("liburcu_memb_synchronize_rcu", |b| {
            b.iter_custom(|iters| timed(iters, urcu::synchronize))
        });
        r.stop();
    }
    g.finish();

    let mut g = c.benchmark_group("gp_busy_reader");
    let busy = |rcu: &Rcu| Reader::busy(rcu, BUSY_WORK);
    bench_ours(&mut g, "memb", global, busy);
    bench_ours(&mut g, "mb", &mb, busy);
    #[cfg(feature = "liburcu")]
    {
        let r = urcu::Reader::busy(BUSY_WORK);
        g.bench_function("liburcu_memb_synchronize_rcu", |b| {
            b.iter_custom(|iters| timed(iters, urcu::synchronize))
        });
        let sections = r.stop();
        assert!(sections > 0, "the liburcu busy reader ran no section");
    }
    g.finish();

    let mut g = c.benchmark_group("gp_poll");
    g.bench_function("ours_memb_get_state_poll", |b| {
        b.iter_custom(|iters| {
            timed(iters, || {
                let cookie = global.get_state();
                black_box(global.poll(black_box(&cookie)));
            })
        })
    });
    g.finish();
}

criterion_group!(benches, grace_periods);
criterion_main!(benches);
