//! A page allocator that retires into the domain it serves (it logs through
//! a structure freed by RCU, say) re-enters `defer_drop` and `call` on the
//! thread whose page it is allocating, under that thread's buffer lock:
//! those retires take the no-page fallback instead of deadlocking on it.

use std::alloc::Layout;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use rcu_reclaim::pages::{PageAllocator, SystemPageAllocator};
use rcu_reclaim::{Config, Rcu};

static DOMAIN: OnceLock<Rcu> = OnceLock::new();
static DROPS: AtomicUsize = AtomicUsize::new(0);
static RAN: AtomicUsize = AtomicUsize::new(0);
static PAGES: AtomicUsize = AtomicUsize::new(0);

struct Counted;
impl Drop for Counted {
    fn drop(&mut self) {
        DROPS.fetch_add(1, Ordering::SeqCst);
    }
}

struct Retiring;

// SAFETY: every page comes from `SystemPageAllocator`.
unsafe impl PageAllocator for Retiring {
    fn allocate(&self, layout: Layout) -> Option<NonNull<u8>> {
        PAGES.fetch_add(1, Ordering::SeqCst);
        if let Some(rcu) = DOMAIN.get() {
            rcu.defer_drop_sized(Box::new(Counted), 8);
            rcu.call(|| {
                RAN.fetch_add(1, Ordering::SeqCst);
            });
        }
        SystemPageAllocator.allocate(layout)
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: forwarded; the page came from the system allocator.
        unsafe { SystemPageAllocator.deallocate(ptr, layout) }
    }
}

#[test]
fn a_page_allocator_that_retires_into_its_domain_does_not_deadlock() {
    let rcu = Rcu::new(Config::new().page_allocator(Arc::new(Retiring))).unwrap();
    DOMAIN.set(rcu.clone()).ok().unwrap();
    let (done, rx) = std::sync::mpsc::channel();
    let r = rcu.clone();
    std::thread::spawn(move || {
        for _ in 0..2_000 {
            r.defer_drop_sized(Box::new(Counted), 8);
        }
        {
            // Inside a section the fallback queues a callback instead of
            // waiting for a grace period.
            let _guard = r.read_lock();
            for _ in 0..2_000 {
                r.defer_drop_sized(Box::new(Counted), 8);
                r.call(|| {
                    RAN.fetch_add(1, Ordering::SeqCst);
                });
            }
        }
        done.send(()).unwrap();
    });
    rx.recv_timeout(std::time::Duration::from_secs(60))
        .expect("a retire from inside the page allocator deadlocked its thread");
    rcu.barrier();
    let pages = PAGES.load(Ordering::SeqCst);
    assert!(pages > 0);
    // One object and one callback from each allocation, and the test's own.
    assert_eq!(DROPS.load(Ordering::SeqCst), 4_000 + pages);
    assert_eq!(RAN.load(Ordering::SeqCst), 2_000 + pages);
    assert!(
        rcu.stats().fallback_syncs >= 2 * pages as u64 - 2,
        "{:?}",
        rcu.stats()
    );
}

static UNREGISTERING_DOMAIN: OnceLock<Rcu> = OnceLock::new();
static UNREGISTER_TRIES: AtomicUsize = AtomicUsize::new(0);
static UNREGISTERED: AtomicUsize = AtomicUsize::new(0);

/// Unregisters its thread (a safe call) from inside `allocate`.
struct Unregistering;

// SAFETY: every page comes from `SystemPageAllocator`.
unsafe impl PageAllocator for Unregistering {
    fn allocate(&self, layout: Layout) -> Option<NonNull<u8>> {
        if let Some(rcu) = UNREGISTERING_DOMAIN.get() {
            UNREGISTER_TRIES.fetch_add(1, Ordering::SeqCst);
            if rcu.unregister_thread() {
                UNREGISTERED.fetch_add(1, Ordering::SeqCst);
            }
        }
        SystemPageAllocator.allocate(layout)
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: forwarded; the page came from the system allocator.
        unsafe { SystemPageAllocator.deallocate(ptr, layout) }
    }
}

/// The allocator runs inside a retire's slow path, which holds the
/// thread's slot and its buffer's lock. `unregister_thread` there handed
/// the slot back under that retire: it locked the buffer again (the thread
/// hung for good), and a slot handed back could be claimed by another
/// thread while the retire still pushed into its page. Now it refuses.
#[test]
fn unregister_thread_inside_the_page_allocator_does_nothing() {
    let rcu = Rcu::new(Config::new().page_allocator(Arc::new(Unregistering))).unwrap();
    UNREGISTERING_DOMAIN.set(rcu.clone()).ok().unwrap();
    let (done, rx) = std::sync::mpsc::channel();
    let r = rcu.clone();
    std::thread::spawn(move || {
        for i in 0..2_000u64 {
            r.defer_drop_sized(Box::new(i), 8);
        }
        done.send(()).unwrap();
    });
    rx.recv_timeout(std::time::Duration::from_secs(60))
        .expect("unregister_thread inside the page allocator hung its thread");
    rcu.barrier();
    assert!(UNREGISTER_TRIES.load(Ordering::SeqCst) > 0);
    assert_eq!(UNREGISTERED.load(Ordering::SeqCst), 0);
}
