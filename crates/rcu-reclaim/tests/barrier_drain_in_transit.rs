//! `barrier` must not return while a drain taken from its thread (by the
//! grace-period thread's lazy flush, or by another `barrier`) is on its way
//! to a shard: the drain's objects were retired before the barrier.
//!
//! Before the fix the drain went to a shard after its buffer's lock was
//! released; a barrier that looked at the buffer in between found neither
//! the drain nor the page and returned with values retired before it still
//! alive (found by an independent stress run). One shard, so threads queueing
//! callbacks hold up the hand-off on the shard's lock and widen the window.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rcu_reclaim::topology::Topology;
use rcu_reclaim::{Config, Rcu, ReclaimSize};

// Under Miri, a few rounds: the workers stop once the ids run out,
// and the test with them (the interpreter's clock, which runs seconds in
// a few rounds, is no measure).
const VALUES: usize = if cfg!(miri) { 1 << 11 } else { 1 << 23 };

struct Dropped(Vec<AtomicU8>);

/// A value that records its drop; it drops anywhere, so it goes through
/// threads' drains.
struct Val {
    id: usize,
    dropped: Arc<Dropped>,
}

impl Drop for Val {
    fn drop(&mut self) {
        self.dropped.0[self.id].fetch_add(1, Ordering::SeqCst);
    }
}

impl ReclaimSize for Val {
    const DROPS_ANYWHERE: bool = true;
    fn reclaim_size(&self) -> usize {
        std::mem::size_of::<Val>()
    }
}

#[test]
fn barrier_waits_for_a_drain_taken_from_its_thread() {
    let rcu = Rcu::new(
        Config::new()
            .topology(Topology::synthetic(1, 1))
            // Drains are taken from their threads at the grace-period
            // thread's next look.
            .producer_window(Duration::ZERO)
            .lazy_delay(Duration::from_micros(100)),
    )
    .unwrap();
    let dropped = Arc::new(Dropped((0..VALUES).map(|_| AtomicU8::new(0)).collect()));
    let next = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut handles = vec![];
    for w in 0..2usize {
        let (rcu, dropped, next, stop) = (rcu.clone(), dropped.clone(), next.clone(), stop.clone());
        handles.push(thread::spawn(move || {
            let mut round = w;
            while !stop.load(Ordering::Relaxed) {
                round += 1;
                let n = 1 + round * 37 % 700;
                let first = next.fetch_add(n, Ordering::Relaxed);
                if first + n > VALUES {
                    break;
                }
                for id in first..first + n {
                    rcu.defer_drop(Box::new(Val {
                        id,
                        dropped: dropped.clone(),
                    }));
                }
                rcu.barrier();
                if let Some(id) =
                    (first..first + n).find(|&id| dropped.0[id].load(Ordering::SeqCst) != 1)
                {
                    stop.store(true, Ordering::Relaxed);
                    panic!(
                        "value {id}, retired before barrier() by this thread, was not dropped \
                         when it returned"
                    );
                }
            }
        }));
    }
    // Callbacks on the one shard: its lock is busy.
    for _ in 0..2 {
        let (rcu, stop) = (rcu.clone(), stop.clone());
        handles.push(thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..64 {
                    rcu.call(|| {});
                }
                thread::yield_now();
            }
        }));
    }
    while (cfg!(miri) || Instant::now() < deadline)
        && !stop.load(Ordering::Relaxed)
        && next.load(Ordering::Relaxed) < VALUES
    {
        thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::Relaxed);
    eprintln!(
        "{} values retired",
        next.load(Ordering::Relaxed).min(VALUES)
    );
    let mut failed = None;
    for h in handles {
        if let Err(e) = h.join() {
            failed = Some(e);
        }
    }
    if let Some(e) = failed {
        std::panic::resume_unwind(e);
    }
    rcu.barrier();
    assert_eq!(rcu.pending(), 0);
}
