//! Survival under a cgroup memory limit: run inside a memory cgroup the
//! caller made (cgroup v1 here; as root), in one of these modes:
//!
//! * `cache`: an `RcuCache` with `max_bytes(1 GiB)` and `auto_pressure()`
//!   filled with 400 MiB of 64 KiB values (`SLOW_US=600` sleeps that many
//!   microseconds per insert: about 100 MiB/s);
//! * `cache-budget`: the same, with a budget from `budget_from_cgroup`;
//! * `cache-v1`: the cgroup v1 `memory.pressure_level` source alone;
//! * `store`: a budget from the cgroup, 50 MiB held, two writers storing
//!   1 MiB values into an `RcuCell` (and retiring 256 KiB ones) beside two
//!   readers, each calling `MemoryBudget::check` after each store
//!   (`NO_CHECK=1`: never, leaving it to the pressure source; `TRACE=1`
//!   prints usage, pending bytes and the pressure throttle's count every
//!   8 ms; `STUCK_MS=n`: a third reader holds one section for n ms;
//!   `AUTO_ONLY=1`: no budget, only `auto_pressure(512 MiB)`;
//!   `IN_GUARD=1`: each store inside a read-side section);
//! * `store-crossbeam`: `store`'s writers and readers on crossbeam-epoch;
//! * `hog` / `hog-budget`: an `auto_pressure` cache (with a budget) filled
//!   beside a hog that grows to 60 MiB and frees it, five times.
//!
//! * `many`: `THREADS` threads (default 256) each reading one `RcuCell`
//!   and storing a 64-byte value with a `Drop` of its own into it, at full
//!   speed, for `SECS` seconds (default 6), with `auto_pressure(256 MiB)`:
//!   far more threads than CPUs, so the worker that frees the values gets
//!   little CPU, and its frees wait for glibc's arena locks;
//! * `many-crossbeam`: `many`'s threads on crossbeam-epoch (an `Atomic`,
//!   `swap` and `defer_destroy` under a pin).
//!
//! It prints `END survived` at the end; the cgroup's OOM killer ends it
//! with status 137 otherwise.
//!
//! ```text
//! cargo build --release -p rcu-reclaim --example cgroup_fill
//! cg=/sys/fs/cgroup/memory/fill-$$; mkdir $cg
//! echo $((100 << 20)) > $cg/memory.limit_in_bytes
//! sh -c "echo \$\$ > $cg/cgroup.procs; exec target/release/examples/cgroup_fill cache"
//! echo "status $?"; grep oom_kill $cg/memory.oom_control; rmdir $cg
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcu_reclaim::reclaim::Reclaimer;
use rcu_reclaim::sources::{auto_pressure, auto_pressure_for, budget_from_cgroup};
use rcu_reclaim::{Rcu, RcuCache, RcuCell};

const MIB: usize = 1 << 20;

fn rss() -> usize {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap();
    s.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<usize>()
        .unwrap()
        * 4096
}

fn usage() -> usize {
    let cg = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let rel = cg
        .lines()
        .find_map(|l| l.split_once(":memory:").map(|(_, r)| r.to_string()))
        .unwrap();
    std::fs::read_to_string(format!("/sys/fs/cgroup/memory{rel}/memory.usage_in_bytes"))
        .map(|s| s.trim().parse().unwrap_or(0))
        .unwrap_or(0)
}

fn page(seed: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    let mut x = seed | 1;
    for c in v.chunks_mut(4096) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        c[0] = x as u8;
        c[c.len() - 1] = (x >> 8) as u8;
    }
    v
}

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_default();
    let t0 = Instant::now();
    match mode.as_str() {
        "cache" | "cache-budget" | "cache-v1" => {
            let budget = (mode == "cache-budget").then(|| {
                Arc::new(budget_from_cgroup(Arc::new(Reclaimer::new(Rcu::global()))).unwrap())
            });
            let mut b = RcuCache::builder().max_bytes(1 << 30);
            b = if mode == "cache-v1" {
                b.pressure_source(Box::new(
                    rcu_reclaim::sources::CgroupV1Source::for_this_process().unwrap(),
                ))
            } else {
                b.auto_pressure()
            };
            if let Some(bu) = &budget {
                b = b.budget(bu);
            }
            let cache: RcuCache<u64, Vec<u8>> = b.build();
            let mut peak_rss = 0;
            let m = rcu_reclaim::sources::auto_pressure(usize::MAX);
            println!("auto_pressure would use: {:?}", m.stats());
            drop(m);
            let slow = env_number("SLOW_US", 0);
            for i in 0..(400 * 16u64) {
                cache.insert(i, page(i, 64 << 10));
                if slow > 0 {
                    std::thread::sleep(Duration::from_micros(slow));
                }
                peak_rss = peak_rss.max(rss());
                if i % 320 == 0 {
                    println!(
                        "{:6.2}s ins {:4} MiB cache {:4} MiB cap {:5} MiB rss {:4} MiB cg {:4} MiB pend {} KiB",
                        t0.elapsed().as_secs_f64(),
                        i / 16,
                        cache.bytes() / MIB,
                        cache.capacity_bytes() / MIB,
                        rss() / MIB,
                        usage() / MIB,
                        cache.domain().pending_bytes() >> 10
                    );
                }
            }
            std::thread::sleep(Duration::from_secs(1));
            let before = rss();
            // SAFETY: malloc_trim has no preconditions.
            unsafe { libc::malloc_trim(0) };
            println!("malloc_trim: rss {} -> {} MiB", before / MIB, rss() / MIB);
            println!(
                "END survived; cache {} MiB, rss {} MiB, peak rss {} MiB, cg {} MiB",
                cache.bytes() / MIB,
                rss() / MIB,
                peak_rss / MIB,
                usage() / MIB
            );
        }
        "store" => {
            // AUTO_ONLY=1: no budget, only `auto_pressure` (and no check).
            let budget = std::env::var_os("AUTO_ONLY").is_none().then(|| {
                Arc::new(budget_from_cgroup(Arc::new(Reclaimer::new(Rcu::global()))).unwrap())
            });
            let monitor = match &budget {
                Some(budget) => auto_pressure_for(budget),
                None => auto_pressure(512 << 20),
            };
            // NO_MONITOR=1: no pressure source at all (the monitor stops).
            let monitor = (std::env::var_os("NO_MONITOR").is_none()).then_some(monitor);
            println!(
                "limit {:?} MiB, source {:?}",
                budget.as_ref().map(|b| b.limit() / MIB),
                monitor.as_ref().map(|m| m.stats().source)
            );
            // baseline live data: 50 MiB
            let _live: Vec<Vec<u8>> = (0..50).map(|i| page(i, MIB)).collect();
            let cell = Arc::new(RcuCell::new(page(0, MIB)));
            let stop = Arc::new(AtomicBool::new(false));
            let readers: Vec<_> = (0..2)
                .map(|_| {
                    let (c, s) = (cell.clone(), stop.clone());
                    std::thread::spawn(move || {
                        let mut n = 0u64;
                        while !s.load(Ordering::Relaxed) {
                            let g = Rcu::global().read_lock();
                            n += c.load(&g).map_or(0, |v| v[4096] as u64);
                        }
                        n
                    })
                })
                .collect();
            // STUCK_MS=n: a third reader holds one section for n ms.
            let stuck_ms = env_number("STUCK_MS", 0);
            let stuck = (stuck_ms > 0).then(|| {
                let c = cell.clone();
                std::thread::Builder::new()
                    .name("stuck-reader".into())
                    .spawn(move || {
                        std::thread::sleep(Duration::from_millis(200));
                        let g = Rcu::global().read_lock();
                        let v = c.load(&g).map_or(0, |v| v[4096]);
                        std::thread::sleep(Duration::from_millis(stuck_ms));
                        v
                    })
                    .unwrap()
            });
            let writers: Vec<_> = (0..2)
                .map(|w| {
                    let (c, b) = (cell.clone(), budget.clone());
                    let check = std::env::var_os("NO_CHECK").is_none();
                    let in_guard = std::env::var_os("IN_GUARD").is_some();
                    std::thread::spawn(move || {
                        for i in 0..3000u64 {
                            if in_guard {
                                // Read, then replace, inside one section.
                                let g = Rcu::global().read_lock();
                                let seen = c.load(&g).map_or(0, |v| v[0]);
                                c.store(Box::new(page(i * 2 + w + u64::from(seen), MIB)));
                            } else {
                                c.store(Box::new(page(i * 2 + w, MIB)));
                            }
                            if i % 2 == 0 {
                                Rcu::global().defer_drop(Box::new(page(i, 256 << 10)));
                            }
                            if let Some(b) = b.as_ref().filter(|_| check) {
                                b.check();
                            }
                        }
                    })
                })
                .collect();
            let mut peak = 0;
            let trace = std::env::var_os("TRACE").is_some();
            let mut n = 0u64;
            while writers.iter().any(|w| !w.is_finished()) {
                peak = peak.max(rss());
                if trace && n % 4 == 0 {
                    let s = Rcu::global().stats();
                    println!(
                        "{:6.3}s rss {:3} MiB cg {:3} MiB pending {:3} MiB gps {} fast {} exp {} thr {}",
                        t0.elapsed().as_secs_f64(),
                        rss() / MIB,
                        usage() / MIB,
                        Rcu::global().pending_bytes() / MIB,
                        s.gp_completed,
                        Rcu::global().in_fast_mode(),
                        s.expedited_gps,
                        s.pressure_throttles,
                    );
                }
                n += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
            for w in writers {
                w.join().unwrap();
            }
            stop.store(true, Ordering::Relaxed);
            for r in readers {
                r.join().unwrap();
            }
            if let Some(s) = stuck {
                s.join().unwrap();
            }
            println!(
                "END survived in {:.2}s; peak rss {} MiB; budget {:?}; monitor {:?}",
                t0.elapsed().as_secs_f64(),
                peak / MIB,
                budget.map(|b| b.stats()),
                monitor.map(|m| m.stats())
            );
        }
        "store-crossbeam" => {
            // The `store` workload on crossbeam-epoch, for comparison (it
            // has no pressure source, budget or throttle to use).
            use crossbeam_epoch::{self as epoch, Atomic, Owned};
            let _live: Vec<Vec<u8>> = (0..50).map(|i| page(i, MIB)).collect();
            let cell = Arc::new(Atomic::new(page(0, MIB)));
            let stop = Arc::new(AtomicBool::new(false));
            let readers: Vec<_> = (0..2)
                .map(|_| {
                    let (c, s) = (cell.clone(), stop.clone());
                    std::thread::spawn(move || {
                        let mut n = 0u64;
                        while !s.load(Ordering::Relaxed) {
                            let g = epoch::pin();
                            // SAFETY: pinned; the value is freed only
                            // after every pinned thread moved on.
                            n += unsafe { c.load(Ordering::Acquire, &g).deref()[4096] } as u64;
                        }
                        n
                    })
                })
                .collect();
            let writers: Vec<_> = (0..2u64)
                .map(|w| {
                    let c = cell.clone();
                    std::thread::spawn(move || {
                        for i in 0..3000u64 {
                            let g = epoch::pin();
                            let old =
                                c.swap(Owned::new(page(i * 2 + w, MIB)), Ordering::AcqRel, &g);
                            // SAFETY: unlinked; freed after the pinned
                            // threads that may hold it moved on.
                            unsafe { g.defer_destroy(old) };
                            if i % 2 == 0 {
                                let v = page(i, 256 << 10);
                                g.defer(move || drop(v));
                            }
                        }
                    })
                })
                .collect();
            let mut peak = 0;
            while writers.iter().any(|w| !w.is_finished()) {
                peak = peak.max(rss());
                std::thread::sleep(Duration::from_millis(2));
            }
            for w in writers {
                w.join().unwrap();
            }
            stop.store(true, Ordering::Relaxed);
            for r in readers {
                r.join().unwrap();
            }
            println!(
                "END survived in {:.2}s; peak rss {} MiB",
                t0.elapsed().as_secs_f64(),
                peak / MIB
            );
        }
        "hog" | "hog-budget" => {
            let budget = (mode == "hog-budget").then(|| {
                Arc::new(budget_from_cgroup(Arc::new(Reclaimer::new(Rcu::global()))).unwrap())
            });
            let mut b = RcuCache::builder().max_bytes(1 << 30).auto_pressure();
            if let Some(bu) = &budget {
                b = b.budget(bu);
            }
            let cache: Arc<RcuCache<u64, Vec<u8>>> = Arc::new(b.build());
            let stop = Arc::new(AtomicBool::new(false));
            let (c2, s2) = (cache.clone(), stop.clone());
            let filler = std::thread::spawn(move || {
                let mut i = 0u64;
                while !s2.load(Ordering::Relaxed) {
                    let key = i % 2000;
                    if c2.get(&key, &c2.domain().read_lock()).is_none() {
                        c2.insert(key, page(i, 64 << 10));
                    }
                    i += 1;
                    if i % 64 == 0 {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            });
            // hog: grows to 60 MiB in 2 MiB steps, then frees, 5 cycles
            for cycle in 0..5 {
                let mut hog = Vec::new();
                for s in 0..30 {
                    hog.push(page(s, 2 * MIB));
                    std::thread::sleep(Duration::from_millis(20));
                }
                println!(
                    "{:6.2}s cycle {cycle}: hog 60 MiB, cache {} MiB cap {} MiB rss {} MiB cg {} MiB",
                    t0.elapsed().as_secs_f64(),
                    cache.bytes() / MIB,
                    cache.capacity_bytes() / MIB,
                    rss() / MIB,
                    usage() / MIB
                );
                drop(hog);
                std::thread::sleep(Duration::from_millis(1500));
                println!(
                    "{:6.2}s cycle {cycle}: hog 0, cache {} MiB cap {} MiB rss {} MiB",
                    t0.elapsed().as_secs_f64(),
                    cache.bytes() / MIB,
                    cache.capacity_bytes() / MIB,
                    rss() / MIB
                );
            }
            stop.store(true, Ordering::Relaxed);
            filler.join().unwrap();
            println!(
                "END survived; cache {} MiB rss {} MiB",
                cache.bytes() / MIB,
                rss() / MIB
            );
        }
        "many" => many_writers(false),
        "many-crossbeam" => many_writers(true),
        other => {
            eprintln!(
                "cgroup_fill: unknown mode {other:?}: give cache, cache-budget, cache-v1, store, \
                 store-crossbeam, hog, hog-budget, many or many-crossbeam"
            );
            std::process::exit(2);
        }
    }
}

#[path = "../benches/support/many_writers.rs"]
mod many_writers;
use many_writers::Checked;

/// A number from the environment variable `name`, or `default` if it is
/// not set; one that is not a number is refused (it ran with the default).
fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Err(_) => default,
        Ok(s) => s.trim().parse().unwrap_or_else(|_| {
            eprintln!("cgroup_fill: {name} must be a whole number, not {s:?}");
            std::process::exit(2)
        }),
    }
}

/// The `many` and `many-crossbeam` modes (see the module docs).
fn many_writers(crossbeam: bool) {
    let (threads, secs) = (env_number("THREADS", 256), env_number("SECS", 6));
    let _monitor = (!crossbeam).then(|| auto_pressure(256 * MIB));
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let writers = if crossbeam {
        let cb = Arc::new(crossbeam_epoch::Atomic::new(Checked::new(0, 0)));
        (0..threads)
            .map(|t| {
                let (cb, stop) = (cb.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let guard = crossbeam_epoch::pin();
                        // SAFETY: the pointer is never null (always a
                        // stored value), and read under the pin.
                        unsafe { cb.load(Ordering::Acquire, &guard).deref() }.check();
                        let new = crossbeam_epoch::Owned::new(Checked::new(t, n));
                        let old = cb.swap(new, Ordering::AcqRel, &guard);
                        // SAFETY: unlinked by the swap, destroyed once,
                        // after every pin that could have loaded it.
                        unsafe { guard.defer_destroy(old) };
                        n += 1;
                    }
                    n
                })
            })
            .collect()
    } else {
        let cell = Arc::new(RcuCell::new(Checked::new(0, 0)));
        many_writers::spawn(threads as usize, &cell, &stop)
    };
    let mut peak = 0;
    while t0.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_millis(10));
        peak = peak.max(rss());
    }
    // The sampler may not have run at all (1,024 writers on 2 CPUs): the
    // cgroup's own peak (`memory.max_usage_in_bytes`) is the better figure.
    peak = peak.max(rss());
    stop.store(true, Ordering::Relaxed);
    let stores: u64 = writers.into_iter().map(|w| w.join().unwrap()).sum();
    Rcu::global().barrier();
    println!(
        "END survived; {threads} threads, {:.1} M stores/s, peak rss {} MiB",
        stores as f64 / secs as f64 / 1e6,
        peak / MIB
    );
}
