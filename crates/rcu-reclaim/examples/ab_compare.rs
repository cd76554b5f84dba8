//! Interleaved A/B comparison with liburcu, robust to background load.
//!
//! The criterion benches measure one variant after another, so on a small,
//! shared machine a load spike during one variant skews the ratios. This
//! driver instead runs many short rounds; in each round every variant runs
//! one batch, in a rotating order, and the report gives per-variant medians
//! and the median over rounds of each variant's ratio to liburcu *in the
//! same round*.
//!
//! ```text
//! cargo run --release -p rcu-reclaim --features liburcu --example ab_compare -- read 301
//! cargo run --release -p rcu-reclaim --features liburcu --example ab_compare -- gp 101
//! ```
//!
//! `read`: ns per read-side pair (batches of 1,000,000 pairs).
//! `gp`: µs per `synchronize` (batches of 500), with one registered reader
//! thread that is idle (`idle_*`) or busy (`busy_*`: it loops sections of
//! 64 spins). Each busy batch gets its own reader thread, stopped after it.

#[path = "support/args.rs"]
mod args;

use std::hint::black_box;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Instant;

use rcu_reclaim::{Config, Flavor, Rcu, RcuCell};

#[path = "../benches/support/read_pairs.rs"]
mod read_pairs;
#[path = "../benches/support/urcu_ffi.rs"]
mod urcu_ffi;
use read_pairs::*;
use urcu_ffi::*;

/// Spin iterations inside each busy-reader section (as in the benches).
const BUSY_WORK: u32 = 64;
/// Read-side pairs per batch.
const READ_BATCH: u64 = 1_000_000;
/// `synchronize` calls per batch.
const GP_BATCH: u64 = 500;

#[inline]
fn spin_work(work: u32) {
    for i in 0..work {
        black_box(i);
    }
}

/// A variant: a name and a batch runner returning elapsed nanoseconds.
type Variant<'a> = (&'static str, Box<dyn FnMut() -> f64 + 'a>);

fn time_ns(f: impl FnOnce()) -> f64 {
    let start = Instant::now();
    f();
    start.elapsed().as_nanos() as f64
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// Runs `rounds` rounds of every variant (rotating the order) and prints
/// medians, in `unit`s (`scale` ns each), and the median per-round ratio to
/// the variant named `baseline(name)`.
fn run(
    rounds: usize,
    variants: &mut [Variant<'_>],
    per_batch: f64,
    unit: &str,
    scale: f64,
    baseline: &dyn Fn(&str) -> &'static str,
) {
    let n = variants.len();
    let mut samples = vec![Vec::with_capacity(rounds); n];
    for _ in 0..2 {
        for v in variants.iter_mut() {
            (v.1)(); // warm-up
        }
    }
    for r in 0..rounds {
        for k in 0..n {
            let i = (r + k) % n;
            let ns = (variants[i].1)();
            samples[i].push(ns / per_batch / scale);
        }
    }
    println!(
        "{:<30} {:>10} {:>10} {:>10}  median ratio to the baseline in the same round",
        "variant",
        format!("p10 {unit}"),
        format!("median {unit}"),
        format!("p90 {unit}"),
    );
    for i in 0..n {
        let base_name = baseline(variants[i].0);
        let base = variants
            .iter()
            .position(|v| v.0 == base_name)
            .expect("baseline variant exists");
        let mut ratios: Vec<f64> = samples[i]
            .iter()
            .zip(&samples[base])
            .map(|(a, b)| a / b)
            .collect();
        let mut s = samples[i].clone();
        println!(
            "{:<30} {:>10.3} {:>10.3} {:>10.3}  {:.3} x {base_name}",
            variants[i].0,
            percentile(&mut s, 0.1),
            median(&mut s),
            percentile(&mut s, 0.9),
            median(&mut ratios)
        );
    }
}

fn read(rounds: usize) {
    let global = Rcu::global();
    let mb = Rcu::new(Config::new().flavor(Flavor::Mb)).expect("mb is always available");
    let cell = RcuCell::new(7u64);
    let collector = seize::Collector::new();
    let slot: *mut u64 = Box::into_raw(Box::new(7u64));
    // SAFETY: registers this thread with liburcu; unregistered at the end.
    unsafe { shim_register_thread() };
    drop(global.read_lock());
    drop(mb.read_lock());
    let mut variants: Vec<Variant<'_>> = vec![
        (
            "ours_memb",
            Box::new(|| time_ns(|| ours_pairs(black_box(global), READ_BATCH))),
        ),
        (
            "ours_mb",
            Box::new(|| time_ns(|| ours_pairs(black_box(&mb), READ_BATCH))),
        ),
        (
            "ours_memb_nested",
            Box::new(|| time_ns(|| ours_pairs_nested(black_box(global), READ_BATCH))),
        ),
        (
            "ours_memb_rcucell_load",
            Box::new(|| {
                time_ns(|| {
                    black_box(ours_load_pairs(
                        black_box(global),
                        black_box(&cell),
                        READ_BATCH,
                    ));
                })
            }),
        ),
        (
            "crossbeam_epoch_pin",
            Box::new(|| time_ns(|| crossbeam_pins(READ_BATCH))),
        ),
        (
            "seize_enter",
            Box::new(|| time_ns(|| seize_enters(black_box(&collector), READ_BATCH))),
        ),
        (
            "liburcu_memb",
            Box::new(|| {
                time_ns(|| {
                    // SAFETY: this thread is registered with liburcu.
                    black_box(unsafe { shim_read_pairs(READ_BATCH) });
                })
            }),
        ),
        (
            "liburcu_memb_nested",
            Box::new(|| {
                time_ns(|| {
                    // SAFETY: this thread is registered with liburcu.
                    black_box(unsafe { shim_read_pairs_nested(READ_BATCH) });
                })
            }),
        ),
        (
            "liburcu_memb_rcu_dereference",
            Box::new(|| {
                time_ns(|| {
                    // SAFETY: registered thread; `slot` points to a live u64
                    // freed only after the last round.
                    black_box(unsafe { shim_read_deref_pairs(READ_BATCH, &slot) });
                })
            }),
        ),
    ];
    println!(
        "read: {rounds} rounds x {READ_BATCH} pairs; flavor(global)={}, liburcu sys_membarrier={}",
        global.flavor(),
        // SAFETY: reads an int liburcu's constructor initialised.
        unsafe { shim_has_sys_membarrier() } != 0
    );
    let baseline = |name: &str| match name {
        "ours_memb_nested" | "liburcu_memb_nested" => "liburcu_memb_nested",
        "ours_memb_rcucell_load" | "liburcu_memb_rcu_dereference" => "liburcu_memb_rcu_dereference",
        _ => "liburcu_memb",
    };
    run(
        rounds,
        &mut variants,
        READ_BATCH as f64,
        "ns",
        1.0,
        &baseline,
    );
    drop(variants);
    // SAFETY: this thread is outside any liburcu section.
    unsafe { shim_unregister_thread() };
    // SAFETY: `slot` came from Box::into_raw and no reader uses it any more.
    drop(unsafe { Box::from_raw(slot) });
}

/// Runs `f` while a reader thread of ours sits registered (idle) or loops
/// sections (busy) in `rcu`.
fn with_our_reader(rcu: &Rcu, busy: bool, f: impl FnOnce() -> f64) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = mpsc::channel();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let (r, s) = (rcu.clone(), stop.clone());
    let h = thread::spawn(move || {
        drop(r.read_lock());
        ready_tx.send(()).expect("waited for");
        if busy {
            while !s.load(Ordering::Relaxed) {
                let g = r.read_lock();
                spin_work(BUSY_WORK);
                drop(g);
            }
        } else {
            let _ = stop_rx.recv();
        }
    });
    ready_rx.recv().expect("reader starts");
    let ns = f();
    stop.store(true, Ordering::Relaxed);
    drop(stop_tx);
    h.join().expect("reader does not panic");
    ns
}

/// As `with_our_reader`, with a reader registered with liburcu.
fn with_urcu_reader(busy: bool, f: impl FnOnce() -> f64) -> f64 {
    let stop = Arc::new(AtomicI32::new(0));
    let ready = Arc::new(AtomicI32::new(0));
    let (s, rd) = (stop.clone(), ready.clone());
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let h = thread::spawn(move || {
        if busy {
            // SAFETY: `s` and `rd` outlive the call; the shim reads/writes
            // them as volatile ints (the layout of AtomicI32) and registers
            // and unregisters the thread itself.
            unsafe { shim_busy_reader(&*s, &*rd, BUSY_WORK) };
        } else {
            // SAFETY: register/unregister on this thread, outside sections.
            unsafe { shim_register_thread() };
            rd.store(1, Ordering::Release);
            let _ = stop_rx.recv();
            // SAFETY: as above.
            unsafe { shim_unregister_thread() };
        }
    });
    while ready.load(Ordering::Acquire) == 0 {
        thread::yield_now();
    }
    let ns = f();
    stop.store(1, Ordering::Relaxed);
    drop(stop_tx);
    h.join().expect("reader does not panic");
    ns
}

fn gp(rounds: usize) {
    let global = Rcu::global();
    let mut variants: Vec<Variant<'_>> = Vec::new();
    for busy in [false, true] {
        let name = |s: &'static str, i: &'static str| if busy { s } else { i };
        variants.push((
            name("busy_ours_memb_synchronize", "idle_ours_memb_synchronize"),
            Box::new(move || {
                with_our_reader(global, busy, || {
                    time_ns(|| (0..GP_BATCH).for_each(|_| global.synchronize()))
                })
            }),
        ));
        variants.push((
            name("busy_ours_memb_expedited", "idle_ours_memb_expedited"),
            Box::new(move || {
                with_our_reader(global, busy, || {
                    time_ns(|| (0..GP_BATCH).for_each(|_| global.synchronize_expedited()))
                })
            }),
        ));
        variants.push((
            name(
                "busy_liburcu_synchronize_rcu",
                "idle_liburcu_synchronize_rcu",
            ),
            Box::new(move || {
                with_urcu_reader(busy, || {
                    // SAFETY: this thread is not in a liburcu section.
                    time_ns(|| unsafe { shim_synchronize_n(GP_BATCH) })
                })
            }),
        ));
    }
    println!(
        "gp: {rounds} rounds x {GP_BATCH} synchronize calls; flavor(global)={}",
        global.flavor()
    );
    let baseline = |name: &str| {
        if name.starts_with("busy_") {
            "busy_liburcu_synchronize_rcu"
        } else {
            "idle_liburcu_synchronize_rcu"
        }
    };
    run(
        rounds,
        &mut variants,
        GP_BATCH as f64,
        "us",
        1000.0,
        &baseline,
    );
}

fn main() -> ExitCode {
    let args = args::Args::from_env("ab_compare", "<read|gp> [ROUNDS: 1 to 100000, default 101]");
    let rounds = args.number(1, "ROUNDS", 1..=100_000, 101);
    args.at_most(2);
    match args.get(0) {
        Some("read") => read(rounds),
        Some("gp") => gp(rounds),
        _ => {
            eprintln!("usage: ab_compare <read|gp> [rounds]");
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}
