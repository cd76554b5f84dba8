//! A thread that exits inside a read-side section while its drain (ready
//! values that drop anywhere, freed a few per retire) still holds objects.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use rcu_reclaim::topology::Topology;
use rcu_reclaim::{Config, Rcu};

mod common;
use common::CountedPlain as Plain;

/// Whatever the point at which the thread exits, a barrier frees every
/// value it retired, and dropping the domain returns (it used to wait for
/// the abandoned slot's drain forever: 255 values were never freed).
#[test]
fn a_thread_exiting_inside_a_section_leaves_no_drain_behind() {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for extra in 0..300 {
            let rcu = Rcu::new(Config::new().topology(Topology::synthetic(1, 1))).unwrap();
            let freed = Arc::new(AtomicUsize::new(0));
            let total = 2_000 + extra;
            let (r, f) = (rcu.clone(), freed.clone());
            thread::spawn(move || {
                for i in 0..total {
                    r.defer_drop(Box::new(Plain(f.clone())));
                    if i % 300 == 0 {
                        r.synchronize();
                    }
                }
                r.read_lock_raw(); // never unlocked: the thread exits inside it
            })
            .join()
            .unwrap();
            rcu.barrier();
            let left = (rcu.pending(), total - freed.load(Ordering::SeqCst));
            if left != (0, 0) {
                let _ = tx.send(Err(format!(
                    "exit after {total}: (pending, unfreed) {left:?}"
                )));
                std::mem::forget(rcu); // dropping it would hang
                return;
            }
            drop(rcu);
        }
        let _ = tx.send(Ok(()));
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(r) => r.unwrap(),
        Err(_) => panic!("dropping the domain hung"),
    }
}
