//! `RcuCell::store` is a retiring call: it never runs a deferred destructor
//! (the old value's included) on the calling thread, which may hold a lock
//! that destructor takes.

mod common;
use common::StopOnDrop;

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rcu_reclaim::{Config, Rcu, RcuCell};

thread_local! {
    /// Set while this thread is inside `RcuCell::store`.
    static STORING: Cell<bool> = const { Cell::new(false) };
}

/// Takes a lock in its destructor (so it does not drop anywhere); records
/// a drop made inside `store` on the storing thread.
struct Locky {
    inline_drops: Arc<AtomicUsize>,
}
rcu_reclaim::reclaim_size!(Locky {});
impl Drop for Locky {
    fn drop(&mut self) {
        if STORING.with(Cell::get) {
            self.inline_drops.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// While another thread completes grace periods back to back, a grace
/// period may end between `store`'s unlink and its retire: the old value
/// must still be queued, not dropped by the storing thread (it was, about
/// once per few thousand stores: a deadlock where the caller holds a lock
/// the old value's `Drop` takes).
#[test]
fn store_never_drops_the_old_value_on_the_calling_thread() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let inline_drops = Arc::new(AtomicUsize::new(0));
    let cell = RcuCell::new_in(
        &rcu,
        Some(Box::new(Locky {
            inline_drops: inline_drops.clone(),
        })),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let syncer = {
        let (rcu, stop) = (rcu.clone(), stop.clone());
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                rcu.synchronize();
            }
        })
    };
    let _stop = StopOnDrop(&stop);
    let start = Instant::now();
    let mut stores = 0u64;
    while start.elapsed() < Duration::from_secs(2) && inline_drops.load(Ordering::SeqCst) == 0 {
        for _ in 0..1000 {
            let new = Box::new(Locky {
                inline_drops: inline_drops.clone(),
            });
            STORING.with(|s| s.set(true));
            cell.store(new);
            STORING.with(|s| s.set(false));
        }
        stores += 1000;
    }
    stop.store(true, Ordering::Relaxed);
    syncer.join().unwrap();
    rcu.barrier();
    assert_eq!(
        inline_drops.load(Ordering::SeqCst),
        0,
        "store dropped the old value on the calling thread (within {stores} stores)"
    );
}
