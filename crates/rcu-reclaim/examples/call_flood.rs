//! Memory under a flood of retires with no pressure signal: `THREADS`
//! threads (default 2) queue, as fast as they can for 6 seconds, closures
//! or values that own `BYTES` bytes each (default 4096), and the peak
//! resident memory, sampled every 100 ms, is printed with the rate.
//!
//! ```text
//! cargo run --release -p rcu-reclaim --example call_flood -- MODE [THREADS] [BYTES]
//! ```
//!
//! MODE: `call` (`Rcu::call` with a closure that owns a `Vec<u8>`),
//! `defer` (`Rcu::defer_drop` of the `Vec<u8>`), `defer-in-section` (the
//! same inside a read-side section), `crossbeam` (crossbeam-epoch's
//! `pin().defer(closure)`, the same closure as `call`). With `TRACE=1` in
//! the environment, each sample is printed too.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcu_reclaim::{Config, Rcu};

const MODES: [&str; 4] = ["call", "defer", "defer-in-section", "crossbeam"];

fn resident_mib() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<usize>().ok())
        .map_or(0, |pages| (pages * 4096) >> 20)
}

fn usage() -> ! {
    eprintln!("usage: call_flood {{call|defer|defer-in-section|crossbeam}} [THREADS: 1 to 256] [BYTES: 0 to 1048576]");
    std::process::exit(2);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = match args.first() {
        Some(m) if MODES.contains(&m.as_str()) => m.clone(),
        _ => usage(),
    };
    let number = |i: usize, default: usize, max: usize| match args.get(i).map(|a| a.parse()) {
        None => default,
        Some(Ok(n)) if n <= max => n,
        Some(_) => usage(),
    };
    let threads = number(1, 2, 256).max(1);
    let bytes = number(2, 4096, 1 << 20);
    let secs = 6;
    let rcu = Rcu::new(Config::new()).expect("a domain");
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (rcu, stop, mode) = (rcu.clone(), stop.clone(), mode.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let v = vec![n as u8; bytes];
                    match mode.as_str() {
                        "call" => rcu.call(move || drop(std::hint::black_box(v))),
                        "defer" => rcu.defer_drop(Box::new(v)),
                        "defer-in-section" => {
                            let _guard = rcu.read_lock();
                            rcu.defer_drop(Box::new(v));
                        }
                        _ => crossbeam_epoch::pin().defer(move || drop(std::hint::black_box(v))),
                    }
                    n += 1;
                }
                n
            })
        })
        .collect();
    let start = Instant::now();
    let mut peak = 0;
    while start.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_millis(100));
        peak = peak.max(resident_mib());
        if std::env::var_os("TRACE").is_some() {
            println!(
                "{:>6} ms: resident {} MiB, pending {}",
                start.elapsed().as_millis(),
                resident_mib(),
                rcu.pending()
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    let total: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    let s = rcu.stats();
    println!(
        "{mode}, {threads} threads, {bytes} B: {:.2} M/s, peak resident {peak} MiB, \
         grace periods {}, producer throttles {}",
        total as f64 / secs as f64 / 1e6,
        s.gp_completed,
        s.producer_throttles
    );
    rcu.barrier();
}
