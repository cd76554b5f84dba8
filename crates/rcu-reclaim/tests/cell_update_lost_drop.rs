//! `RcuCell::update` drops the value a losing `f` made inside
//! its loop. A value whose `Drop` writes to the same cell (a "last word"
//! store) makes every later exchange fail, so the loop runs for ever.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, OnceLock};
use std::time::Duration;

use rcu_reclaim::{Config, Rcu, RcuCell, ReclaimSize};

static CELL: OnceLock<RcuCell<Noisy>> = OnceLock::new();
static RUNS: AtomicUsize = AtomicUsize::new(0);

/// A value that, when dropped, stores a fresh value into `CELL` unless it
/// is a "quiet" one.
struct Noisy {
    loud: bool,
}

impl Drop for Noisy {
    fn drop(&mut self) {
        if self.loud {
            if let Some(cell) = CELL.get() {
                cell.store(Box::new(Noisy { loud: false }));
            }
        }
    }
}

impl ReclaimSize for Noisy {
    fn reclaim_size(&self) -> usize {
        std::mem::size_of::<Self>()
    }
}

#[test]
fn a_lost_value_whose_drop_writes_the_cell_does_not_spin_update_for_ever() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let cell = CELL.get_or_init(|| RcuCell::new_in(&rcu, Some(Box::new(Noisy { loud: false }))));
    let (done_tx, done_rx) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        let r = catch_unwind(AssertUnwindSafe(|| {
            cell.update(|_| {
                let run = RUNS.fetch_add(1, Ordering::SeqCst);
                if run == 0 {
                    // Another thread gets there first, once: this run's
                    // value loses the race and is dropped in the loop.
                    std::thread::scope(|s| {
                        s.spawn(|| cell.store(Box::new(Noisy { loud: false })));
                    });
                }
                if run > 10_000 {
                    // Give up, so the test ends.
                    return Some(Box::new(Noisy { loud: false }));
                }
                Some(Box::new(Noisy { loud: true }))
            })
        }));
        let _ = done_tx.send(());
        r
    });
    let finished = done_rx.recv_timeout(Duration::from_secs(30)).is_ok();
    assert!(finished, "update has not returned in 30 s");
    let r = worker.join().unwrap();
    let runs = RUNS.load(Ordering::SeqCst);
    assert!(
        runs < 100,
        "update ran its closure {runs} times: every lost value's Drop wrote the cell, \
         and the loop only stopped because the closure gave up"
    );
    // The write from the lost value's `Drop` panicked, naming it, instead.
    let panic = r.expect_err("the write from the lost value's Drop panics");
    let msg = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    assert!(msg.contains("lost the"), "{msg}");
    // The cell is still usable, and an update without a race publishes.
    assert_eq!(cell.update(|_| Some(Box::new(Noisy { loud: false }))), 1);
    drop(rcu);
}

static OTHER: OnceLock<RcuCell<u64>> = OnceLock::new();
static OTHER_WRITES: AtomicUsize = AtomicUsize::new(0);
static CELL2: OnceLock<RcuCell<WritesOther>> = OnceLock::new();
static RUNS2: AtomicUsize = AtomicUsize::new(0);

/// A value that, when dropped, writes to another cell (`OTHER`).
struct WritesOther(#[allow(dead_code)] u64);

impl Drop for WritesOther {
    fn drop(&mut self) {
        if let Some(other) = OTHER.get() {
            other.store(Box::new(OTHER_WRITES.fetch_add(1, Ordering::SeqCst) as u64));
        }
    }
}

impl ReclaimSize for WritesOther {
    fn reclaim_size(&self) -> usize {
        0
    }
}

#[test]
fn a_lost_value_whose_drop_writes_another_cell_is_dropped_as_before() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let other = OTHER.get_or_init(|| RcuCell::new_in(&rcu, Some(Box::new(0))));
    let cell = CELL2.get_or_init(|| RcuCell::new_in(&rcu, Some(Box::new(WritesOther(1)))));
    let runs = cell.update(|_| {
        if RUNS2.fetch_add(1, Ordering::SeqCst) == 0 {
            std::thread::scope(|s| {
                s.spawn(|| cell.store(Box::new(WritesOther(1))));
            });
        }
        Some(Box::new(WritesOther(1)))
    });
    assert_eq!(runs, 2, "the first run lost the race, the second published");
    // The lost value's drop wrote the other cell (the stored-over value's
    // drop may too, later, from a callback).
    assert!(OTHER_WRITES.load(Ordering::SeqCst) >= 1);
    assert!(other.load(&rcu.read_lock()).is_some());
}
