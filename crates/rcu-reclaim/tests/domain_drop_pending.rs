//! A domain whose last handle drops while another, still running,
//! thread holds values it retired into that domain in its bulk page (or
//! callbacks it queued), and while that thread is registered as a reader.
//! Every value must be dropped exactly once, and nothing may touch the
//! freed domain afterwards.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;

use rcu_reclaim::{Config, Flavor, Rcu, RcuCell};

struct Counted(Arc<AtomicUsize>);
impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}
impl rcu_reclaim::ReclaimSize for Counted {
    fn reclaim_size(&self) -> usize {
        64
    }
}

fn probe(flavor: Flavor, n: usize, qsbr_registered: bool, use_after: bool) {
    let drops = Arc::new(AtomicUsize::new(0));
    let rcu = Rcu::new(Config::new().flavor(flavor)).unwrap();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let t = {
        let rcu = rcu.clone();
        let drops = drops.clone();
        thread::spawn(move || {
            let reg = qsbr_registered.then(|| rcu.register_qsbr_thread());
            let cell = RcuCell::new_in(&rcu, Some(Box::new(Counted(drops.clone()))));
            {
                let g = rcu.read_lock();
                let _ = cell.load(&g);
            }
            for i in 0..n {
                if i % 3 == 0 {
                    let d = drops.clone();
                    let v = Counted(d);
                    rcu.call(move || drop(v));
                } else {
                    rcu.defer_drop(Box::new(Counted(drops.clone())));
                }
            }
            cell.store(Box::new(Counted(drops.clone())));
            // Keep only the cell (which holds a clone) ... then drop it too:
            drop(cell);
            drop(reg);
            drop(rcu);
            ready_tx.send(()).unwrap();
            go_rx.recv().unwrap();
            if use_after {
                // A new domain on this thread afterwards.
                let other = Rcu::new(Config::new()).unwrap();
                other.defer_drop(Box::new(Counted(drops.clone())));
                other.barrier();
            }
        })
    };
    ready_rx.recv().unwrap();
    drop(rcu); // the last handle, while the thread still holds its page
    go_tx.send(()).unwrap();
    t.join().unwrap();
    let made = n + 2 + usize::from(use_after);
    assert_eq!(drops.load(Ordering::SeqCst), made, "{flavor:?} n={n}");
}

#[test]
fn last_handle_dropped_while_a_live_thread_holds_pending_values() {
    for flavor in [Flavor::Mb, Flavor::Memb, Flavor::Qsbr] {
        if Rcu::new(Config::new().flavor(flavor)).is_err() {
            continue;
        }
        for n in [0, 1, 5, 40, 300] {
            for use_after in [false, true] {
                probe(flavor, n, flavor == Flavor::Qsbr, use_after);
            }
        }
    }
}

/// The last handle dropped while the retiring thread exits (its bulk page
/// handed over in its thread-local destructors at the same moment).
#[test]
fn last_handle_dropped_while_the_retiring_thread_exits() {
    let rounds: usize = std::env::var("RCU_DROP_PENDING_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    for round in 0..rounds {
        let flavor = [Flavor::Mb, Flavor::Memb, Flavor::Qsbr][round % 3];
        let Ok(rcu) = Rcu::new(Config::new().flavor(flavor)) else {
            continue;
        };
        let drops = Arc::new(AtomicUsize::new(0));
        let n = 1 + round % 50;
        let (ready_tx, ready_rx) = mpsc::channel::<()>();
        let t = {
            let rcu = rcu.clone();
            let drops = drops.clone();
            thread::spawn(move || {
                let reg =
                    (flavor == Flavor::Qsbr && round % 2 == 0).then(|| rcu.register_qsbr_thread());
                {
                    let g = rcu.read_lock();
                    let _ = &g;
                }
                for i in 0..n {
                    if i % 4 == 0 {
                        let v = Counted(drops.clone());
                        rcu.call(move || drop(v));
                    } else {
                        rcu.defer_drop(Box::new(Counted(drops.clone())));
                    }
                }
                drop(reg);
                drop(rcu);
                ready_tx.send(()).unwrap();
                // Exits now: its page is handed over while the main thread
                // drops the last handle.
            })
        };
        ready_rx.recv().unwrap();
        if round % 2 == 1 {
            thread::yield_now();
        }
        drop(rcu);
        t.join().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while drops.load(Ordering::SeqCst) != n && std::time::Instant::now() < deadline {
            thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(
            drops.load(Ordering::SeqCst),
            n,
            "round {round} ({flavor:?})"
        );
    }
}
