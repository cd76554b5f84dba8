//! A reader thread's very first section in a domain (registration
//! on first use) racing a writer's grace period, where the domain often
//! has no registered reader at all (the no-reader fast path), with slots
//! given back by exiting threads and claimed again.
//!
//! `RCU_FRESH_READER_SECS` (default 1) sets the length of each flavor's run.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rcu_reclaim::{Config, Flavor, Rcu, RcuCell};

mod common;
use common::poison::{Word, ALIVE};
use common::StopOnDrop;

fn secs() -> u64 {
    std::env::var("RCU_FRESH_READER_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

fn run(flavor: Flavor) {
    let Ok(rcu) = Rcu::new(Config::new().flavor(flavor)) else {
        return;
    };
    let cell = Arc::new(RcuCell::new_in(&rcu, Some(Word::alive())));
    let stop = Arc::new(AtomicBool::new(false));
    let freed = Arc::new(AtomicU64::new(0));
    let writer = {
        let (rcu, cell, stop, freed) = (rcu.clone(), cell.clone(), stop.clone(), freed.clone());
        thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let old = cell.replace(Word::alive());
                match i % 4 {
                    0 => rcu.synchronize(),
                    1 => rcu.synchronize_expedited(),
                    2 => {
                        let c = rcu.start_poll();
                        while !rcu.poll(&c) {
                            std::hint::spin_loop();
                        }
                    }
                    _ => {
                        let _ = rcu.try_synchronize();
                    }
                }
                // Freed here, at once, when the wait said a grace period
                // elapsed (try_into_box refuses otherwise).
                if let Some(old) = old {
                    match old.try_into_box() {
                        Ok(b) => drop(b),
                        Err(r) => drop(r.into_box()),
                    }
                }
                freed.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        })
    };
    let _stop = StopOnDrop(&stop);
    let t = Instant::now();
    let mut spawned = 0u64;
    while t.elapsed() < Duration::from_secs(secs()) {
        let batch: Vec<_> = (0..2)
            .map(|k| {
                let (rcu, cell) = (rcu.clone(), cell.clone());
                thread::spawn(move || {
                    let g = rcu.read_lock();
                    let v = cell.load(&g).unwrap();
                    let first = v.get();
                    for _ in 0..(k * 200) {
                        std::hint::spin_loop();
                    }
                    if k == 1 {
                        thread::yield_now();
                    }
                    let later = v.get();
                    assert!(
                        first == ALIVE && later == ALIVE,
                        "a fresh reader's value was freed under it: {first:#x} {later:#x}"
                    );
                    drop(g);
                })
            })
            .collect();
        for h in batch {
            h.join().unwrap();
        }
        spawned += 2;
    }
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    eprintln!(
        "{flavor:?}: {spawned} fresh readers, {} grace periods",
        freed.load(Ordering::Relaxed)
    );
}

#[test]
fn fresh_readers_mb() {
    run(Flavor::Mb);
}

#[test]
fn fresh_readers_memb() {
    run(Flavor::Memb);
}

#[test]
fn fresh_readers_qsbr_guards() {
    run(Flavor::Qsbr);
}
