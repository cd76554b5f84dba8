//! Pressure-mode figures for BENCHMARKS.md:
//! * read and update throughput with pressure flapping at 100 Hz and 1 kHz
//!   against no pressure (rounds interleaved to cancel drift);
//! * time from `pressure_start` to a 100 MB backlog halved, against none;
//! * the cost of `run_callbacks` when nothing is pending.
//!
//! ```text
//! cargo run --release -p rcu-reclaim --example pressure_flap [rounds]
//! ```

#[path = "support/args.rs"]
mod args;

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rcu_reclaim::pressure::NodeMask;
use rcu_reclaim::{Config, Rcu, RcuCell};

/// One second of 2 readers + 1 writer, with pressure toggled at `hz`
/// (0: never). Returns (reads/s, updates/s, the writer's held-up waits/s
/// and the share of its time they took).
fn workload(hz: u32) -> (f64, f64, f64, f64) {
    let rcu = Rcu::new(Config::new()).unwrap();
    let cell = Arc::new(RcuCell::new_in(&rcu, Some(Box::new([0u8; 1024]))));
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let mut hs = Vec::new();
    for _ in 0..2 {
        let (rcu, cell, stop, reads) = (rcu.clone(), cell.clone(), stop.clone(), reads.clone());
        hs.push(thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let g = rcu.read_lock();
                black_box(cell.load(&g).map(|b| b[0]));
                n += 1;
            }
            reads.fetch_add(n, Ordering::Relaxed);
        }));
    }
    if hz > 0 {
        let (rcu, stop) = (rcu.clone(), stop.clone());
        hs.push(thread::spawn(move || {
            let half = Duration::from_secs_f64(0.5 / f64::from(hz));
            while !stop.load(Ordering::Relaxed) {
                let g = rcu.pressure_start_all();
                thread::sleep(half);
                drop(g);
                thread::sleep(half);
            }
        }));
    }
    let start = Instant::now();
    let mut updates = 0u64;
    while start.elapsed() < Duration::from_secs(1) {
        for _ in 0..64 {
            cell.store(Box::new([1u8; 1024]));
        }
        updates += 64;
    }
    let secs = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for h in hs {
        h.join().unwrap();
    }
    rcu.barrier();
    let st = rcu.stats();
    (
        reads.load(Ordering::Relaxed) as f64 / secs,
        updates as f64 / secs,
        st.held_up_waits as f64 / secs,
        st.held_up_wait_us as f64 / 1e6 / secs,
    )
}

/// Time for a 100 MB backlog (100 x 1 MiB deferred drops) to fall to half.
fn halving(pressure: bool) -> Duration {
    let rcu = Rcu::new(Config::new()).unwrap();
    for _ in 0..100 {
        rcu.defer_drop(Box::new(vec![1u8; 1 << 20]));
    }
    let total = rcu.pending_bytes();
    let start = Instant::now();
    let _g = pressure.then(|| rcu.pressure_start_all());
    while rcu.pending_bytes() > total / 2 {
        std::hint::spin_loop();
    }
    start.elapsed()
}

fn main() {
    let args = args::Args::from_env("pressure_flap", "[ROUNDS: 1 to 1000, default 3]");
    let rounds: usize = args.number(0, "ROUNDS", 1..=1000, 3);
    args.at_most(1);
    let rates = [0u32, 100, 1000];
    let mut sums = [(0.0f64, 0.0f64, 0.0f64, 0.0f64); 3];
    for _ in 0..rounds {
        for (i, &hz) in rates.iter().enumerate() {
            let (r, u, w, t) = workload(hz);
            sums[i].0 += r;
            sums[i].1 += u;
            sums[i].2 += w;
            sums[i].3 += t;
        }
    }
    println!(
        "| pressure | reads/s | updates/s | reads vs none | updates vs none | held-up waits/s (writer's time) |"
    );
    println!("|---|---|---|---|---|---|");
    for (i, &hz) in rates.iter().enumerate() {
        let (r, u) = (sums[i].0 / rounds as f64, sums[i].1 / rounds as f64);
        let label = if hz == 0 {
            "none".to_string()
        } else {
            format!("flapping at {hz} Hz")
        };
        println!(
            "| {label} | {:.1} M | {:.2} M | {:.1}% | {:.1}% | {:.0} ({:.1}%) |",
            r / 1e6,
            u / 1e6,
            100.0 * r / (sums[0].0 / rounds as f64),
            100.0 * u / (sums[0].1 / rounds as f64),
            sums[i].2 / rounds as f64,
            100.0 * sums[i].3 / rounds as f64
        );
    }

    let mut lazy = Vec::new();
    let mut fast = Vec::new();
    for _ in 0..rounds {
        lazy.push(halving(false));
        fast.push(halving(true));
    }
    lazy.sort();
    fast.sort();
    let (l, f) = (lazy[lazy.len() / 2], fast[fast.len() / 2]);
    println!(
        "100 MB backlog halved: {l:?} without pressure, {f:?} after pressure_start ({:.0}x faster; medians of {rounds})",
        l.as_secs_f64() / f.as_secs_f64()
    );

    let rcu = Rcu::new(Config::new()).unwrap();
    let mask = NodeMask::all();
    let n = 1_000_000u32;
    let t = Instant::now();
    for _ in 0..n {
        black_box(rcu.run_callbacks(black_box(&mask), 6));
    }
    println!(
        "run_callbacks with nothing pending: {:.1} ns/call",
        t.elapsed().as_nanos() as f64 / f64::from(n)
    );
}
