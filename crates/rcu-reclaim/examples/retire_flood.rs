//! How fast grace periods keep up with a flood of retires: `THREADS`
//! threads (default 2) each retire 300-byte `Vec<u8>`s as fast as they can,
//! each inside its own read-side section, for 2 seconds, then the domain's
//! counters say how many grace periods completed, how many the retiring
//! threads completed themselves, and what is still pending.
//!
//! ```text
//! cargo run --release -p rcu-reclaim --example retire_flood -- 1
//! ```
//!
//! A backlog in the tens of thousands with a few hundred grace periods a
//! second means the retiring threads could not move grace periods on
//! (BENCHMARKS.md, "A grace-period waiter yields without `gp_lock`").

use std::time::{Duration, Instant};

use rcu_reclaim::{Config, Rcu};

fn main() {
    let threads: usize = match std::env::args().nth(1).map(|a| a.parse()) {
        None => 2,
        Some(Ok(n)) if (1..=256).contains(&n) => n,
        Some(_) => {
            eprintln!("usage: retire_flood [THREADS: 1 to 256]");
            std::process::exit(2);
        }
    };
    let rcu = Rcu::new(Config::new()).expect("a domain");
    let secs = 2.0;
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let r = rcu.clone();
            std::thread::spawn(move || {
                let start = Instant::now();
                let mut n = 0u64;
                while start.elapsed() < Duration::from_secs_f64(secs) {
                    for _ in 0..100 {
                        let guard = r.read_lock();
                        r.defer_drop(Box::new(vec![n as u8; 300]));
                        drop(guard);
                        n += 1;
                    }
                }
                n
            })
        })
        .collect();
    let total: u64 = handles
        .into_iter()
        .map(|h| h.join().expect("a retiring thread"))
        .sum();
    let s = rcu.stats();
    println!(
        "{threads} thread(s): {:.0} k retires/s, {:.0} grace periods/s (of which {:.0}/s started \
         by retiring threads, {:.0}/s expedited, {:.0}/s normal), {} objects pending",
        total as f64 / secs / 1000.0,
        s.gp_completed as f64 / secs,
        s.retirer_gps as f64 / secs,
        s.expedited_gps as f64 / secs,
        s.normal_gps as f64 / secs,
        s.pending
    );
    rcu.barrier();
}
