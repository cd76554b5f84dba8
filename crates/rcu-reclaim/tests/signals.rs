//! The library's own threads run with every signal blocked, so a signal
//! meant for the program (a timer, a `SIGUSR1` its handler answers) lands on
//! one of the program's threads, never inside the library's critical
//! sections; and the thread that started them keeps its own mask.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcu_reclaim::reclaim::{MemoryBudget, Reclaimer};
use rcu_reclaim::sources::{Level, PressureMonitor, SyntheticSource};
use rcu_reclaim::{Config, Rcu};

/// This process's threads: (name, blocked-signal mask) from `/proc`.
fn threads() -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc/self/task").expect("/proc/self/task") {
        let dir = entry.unwrap().path();
        // A thread may exit between the listing and the reads.
        let (Ok(comm), Ok(status)) = (
            std::fs::read_to_string(dir.join("comm")),
            std::fs::read_to_string(dir.join("status")),
        ) else {
            continue;
        };
        let blocked = status
            .lines()
            .find_map(|l| l.strip_prefix("SigBlk:"))
            .map(|hex| u64::from_str_radix(hex.trim(), 16).expect("SigBlk is hex"))
            .expect("status has SigBlk");
        out.push((comm.trim().to_string(), blocked));
    }
    out
}

fn bit(sig: libc::c_int) -> u64 {
    1 << (sig - 1)
}

#[test]
fn the_librarys_threads_block_every_signal_and_the_callers_mask_is_kept() {
    let mine = || {
        std::fs::read_to_string("/proc/thread-self/status")
            .expect("/proc/thread-self/status")
            .lines()
            .find_map(|l| l.strip_prefix("SigBlk:").map(|m| m.trim().to_string()))
    };
    let before = mine();

    let rcu = Rcu::new(Config::new()).unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    for _ in 0..64 {
        let ran = ran.clone();
        rcu.call(move || {
            ran.fetch_add(1, Ordering::Relaxed);
        });
    }
    rcu.synchronize();
    rcu.barrier();
    assert_eq!(ran.load(Ordering::Relaxed), 64);
    let budget = Arc::new(MemoryBudget::new(
        256 << 20,
        Arc::new(Reclaimer::new(&rcu)),
        || 0,
    ));
    let (tx, source) = SyntheticSource::new();
    let monitor = PressureMonitor::start(&rcu, Box::new(source), Duration::from_millis(50), None);
    tx.send(Level::Low).unwrap();

    // Every kind of thread the library starts, each with the program's
    // signals blocked.
    let wanted = ["rcu-gp-", "rcu-cb-", "rcu-pressure", "rcu-kswapd"];
    let signals = [
        libc::SIGUSR1,
        libc::SIGUSR2,
        libc::SIGALRM,
        libc::SIGINT,
        libc::SIGTERM,
        libc::SIGCHLD,
        libc::SIGPIPE,
    ];
    let start = Instant::now();
    loop {
        let all = threads();
        let ours: Vec<_> = all.iter().filter(|(n, _)| n.starts_with("rcu-")).collect();
        let missing: Vec<_> = wanted
            .iter()
            .filter(|w| !ours.iter().any(|(n, _)| n.starts_with(*w)))
            .collect();
        if missing.is_empty() {
            for (name, mask) in &ours {
                for &sig in &signals {
                    assert!(
                        mask & bit(sig) != 0,
                        "thread {name} runs with signal {sig} unblocked (mask {mask:#x}): a \
                         program's handler could interrupt the library's locks there"
                    );
                }
            }
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the library's threads {missing:?} never appeared: {all:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(mine(), before, "the caller's own signal mask changed");
    drop(monitor);
    drop(budget);
}
