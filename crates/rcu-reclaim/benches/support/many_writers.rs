//! Writers that store at full speed into one `RcuCell`, far more of them
//! than CPUs: each reads the cell in a section, then stores a 64-byte value
//! with a `Drop` of its own (a worker frees it, not the retiring thread).
//! Included with `#[path]` by `examples/cgroup_fill.rs` (its `many` modes)
//! and `tests/cgroup.rs`.

#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use rcu_reclaim::{Rcu, RcuCell};

/// The mark of a value not yet dropped.
pub const ALIVE: u64 = 0xA11CE;

/// A 64-byte value with a `Drop` of its own, which checks it is dropped
/// once: writer `t`'s `n`th store.
pub struct Checked(pub [u64; 8]);

impl Checked {
    pub fn new(t: u64, n: u64) -> Checked {
        Checked([t, ALIVE, n, 0, 0, 0, 0, 0])
    }

    /// Panics if the value was freed (its mark overwritten).
    pub fn check(&self) {
        assert_eq!(self.0[1], ALIVE, "a value read after its free");
    }
}

impl Drop for Checked {
    fn drop(&mut self) {
        assert_eq!(self.0[1], ALIVE, "a value dropped twice or never made");
        self.0[1] = 0xDEAD;
    }
}

rcu_reclaim::reclaim_size!(Checked {});

/// Starts `threads` writers on `cell` (of the global domain) until `stop`;
/// each returns how many stores it made.
pub fn spawn(
    threads: usize,
    cell: &Arc<RcuCell<Checked>>,
    stop: &Arc<AtomicBool>,
) -> Vec<JoinHandle<u64>> {
    (0..threads as u64)
        .map(|t| {
            let (cell, stop) = (cell.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    {
                        let guard = Rcu::global().read_lock();
                        cell.load(&guard).expect("never emptied").check();
                    }
                    cell.store(Box::new(Checked::new(t, n)));
                    n += 1;
                }
                n
            })
        })
        .collect()
}
