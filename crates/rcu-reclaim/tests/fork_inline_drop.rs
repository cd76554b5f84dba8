//! A forked child whose parent had a thread inside a deferred drop it ran
//! itself (`defer_drop` with no bulk page to be had waits for a grace
//! period and drops the value on the calling thread): that thread does not
//! exist in the child, so the drop never ends there. Such a drop was
//! counted in the garbage bounds while it ran, and in the child its bytes
//! stayed counted for good: every hand-off of the child's under
//! `Config::max_pending_bytes` waited its full second for garbage no
//! thread would ever free. (Such drops are not counted now: they were
//! never on a shard, as `RcuCell::store_sync`'s are not.)

mod common;

use std::alloc::Layout;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;

use rcu_reclaim::pages::{PageAllocator, SystemPageAllocator};
use rcu_reclaim::{Config, Rcu};

const MIB: usize = 1 << 20;

/// A page allocator that has no page to give while `fail` is set.
#[derive(Default)]
struct Refusing {
    fail: AtomicBool,
}

// SAFETY: every page it hands out comes from `SystemPageAllocator`.
unsafe impl PageAllocator for Refusing {
    fn allocate(&self, layout: Layout) -> Option<NonNull<u8>> {
        if self.fail.load(Ordering::SeqCst) {
            return None;
        }
        SystemPageAllocator.allocate(layout)
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: forwarded from our caller.
        unsafe { SystemPageAllocator.deallocate(ptr, layout) }
    }
}

/// Says that its drop began, then waits until told to go on.
struct Blocking {
    entered: mpsc::Sender<()>,
    go: Mutex<mpsc::Receiver<()>>,
}

impl Drop for Blocking {
    fn drop(&mut self) {
        self.entered.send(()).unwrap();
        let _ = self.go.lock().unwrap().recv();
    }
}

#[test]
fn a_child_forked_during_another_threads_inline_drop_does_not_count_it() {
    let pages = Arc::new(Refusing::default());
    pages.fail.store(true, Ordering::SeqCst);
    let rcu = Rcu::new(
        Config::new()
            .max_pending_bytes(4 * MIB)
            .page_allocator(pages.clone()),
    )
    .unwrap();
    let (entered_tx, entered_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel();
    let dropper = {
        let rcu = rcu.clone();
        thread::spawn(move || {
            // No page: a grace period, then dropped here, booking 64 MiB.
            let value = Blocking {
                entered: entered_tx,
                go: Mutex::new(go_rx),
            };
            rcu.defer_drop_sized(Box::new(value), 64 * MIB);
        })
    };
    entered_rx.recv().unwrap();
    pages.fail.store(false, Ordering::SeqCst);
    let r = rcu.clone();
    let status = common::in_forked_child(&rcu, move || {
        // A 1 MiB value: its page goes to the shards at once, and the
        // hand-off looks at the cap (4 MiB). Only this 1 MiB waits for a
        // grace period here, under the cap's floor: nothing waits.
        r.defer_drop(Box::new(vec![7u8; MIB]));
        let waits = r.stats().headroom_waits;
        if waits != 0 {
            eprintln!("child: {waits} waits at the cap for 1 MiB of garbage");
            return false;
        }
        r.barrier();
        true
    });
    go_tx.send(()).unwrap();
    dropper.join().unwrap();
    assert_eq!(status, 0, "the child counted the parent's inline drop");
    // In the parent the drop ended, and counts no more.
    rcu.defer_drop(Box::new(vec![7u8; MIB]));
    assert_eq!(rcu.stats().headroom_waits, 0);
    rcu.barrier();
    assert_eq!(rcu.pending_bytes(), 0);
}
