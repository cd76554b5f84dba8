//! Values whose type has no drop glue are freed by the thread that retired
//! them (their freeing runs no code of the user's, only the allocator),
//! while values with a destructor still go to the workers.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::thread;

use rcu_reclaim::{Config, Rcu};

/// Counts, per thread, frees of 64-byte blocks.
struct Counting;

thread_local! {
    static FREED_64: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; the counter is a const-initialised
// thread-local without a destructor, which never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if layout.size() == 64 {
            let _ = FREED_64.try_with(|c| c.set(c.get() + 1));
        }
        // SAFETY: forwarded with the caller's pointer and layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn plain_values_are_freed_by_the_thread_that_retired_them() {
    // A small pace: a page goes to its shard every 4 KiB (64 objects), so
    // grace periods, driven by this thread, complete all the time.
    let rcu = Rcu::new(Config::new().pace_bytes(4 << 10)).unwrap();
    const N: usize = 100_000;
    let r = rcu.clone();
    let own = thread::spawn(move || {
        for i in 0..N {
            r.defer_drop(Box::new([i as u64; 8]));
        }
        FREED_64.with(Cell::get)
    })
    .join()
    .unwrap();
    rcu.barrier();
    assert!(
        own >= N / 4,
        "the retiring thread freed {own} of its {N} plain values: {:?}",
        rcu.stats()
    );
}
