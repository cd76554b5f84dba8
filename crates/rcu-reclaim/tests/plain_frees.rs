//! Values whose type has no drop glue, or declares
//! `ReclaimSize::DROPS_ANYWHERE`, are freed by the thread that retired them
//! (their drops take no lock and wait for nothing), while values with a
//! destructor not so declared still go to the workers.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::thread;

use std::sync::atomic::{AtomicUsize, Ordering};

use rcu_reclaim::{drops_anywhere, Config, Rcu, RcuCell, RcuHashMap, ReclaimSize};

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

/// Retires `N` values made by `make` on a fresh thread of a domain with a
/// small pace; returns how many 64-byte blocks that thread freed itself.
fn freed_by_retiring_thread<T: ReclaimSize + Send + 'static>(
    make: fn(usize) -> T,
    n: usize,
) -> usize {
    // A small pace: a page goes to its shard every 4 KiB, so grace
    // periods, driven by this thread, complete all the time.
    let rcu = Rcu::new(Config::new().pace_bytes(4 << 10)).unwrap();
    let r = rcu.clone();
    let own = thread::spawn(move || {
        for i in 0..n {
            r.defer_drop(Box::new(make(i)));
        }
        FREED_64.with(Cell::get)
    })
    .join()
    .unwrap();
    rcu.barrier();
    own
}

static DROPPED: AtomicUsize = AtomicUsize::new(0);

/// 64 bytes with a destructor that only bumps a counter: declared.
struct Counted([u64; 8]);
impl Drop for Counted {
    fn drop(&mut self) {
        DROPPED.fetch_add(1, Ordering::Relaxed);
        std::hint::black_box(self.0);
    }
}
impl ReclaimSize for Counted {
    const DROPS_ANYWHERE: bool = true;
    fn reclaim_size(&self) -> usize {
        std::mem::size_of::<Self>()
    }
}

/// The same without the declaration: its drop might take a lock.
struct Undeclared([u64; 8]);
impl Drop for Undeclared {
    fn drop(&mut self) {
        DROPPED.fetch_add(1, Ordering::Relaxed);
        std::hint::black_box(self.0);
    }
}
rcu_reclaim::reclaim_size!(Undeclared {});

#[test]
fn values_declared_to_drop_anywhere_are_freed_by_the_retiring_thread() {
    const N: usize = 100_000;
    assert!(drops_anywhere::<Counted>());
    let own = freed_by_retiring_thread(|i| Counted([i as u64; 8]), N);
    assert!(own >= N / 4, "the retiring thread freed {own} of {N}");
}

#[test]
fn values_with_an_undeclared_destructor_go_to_the_workers() {
    const N: usize = 100_000;
    assert!(!drops_anywhere::<Undeclared>());
    let own = freed_by_retiring_thread(|i| Undeclared([i as u64; 8]), N);
    assert!(
        own <= N / 100,
        "the retiring thread ran {own} destructors of {N}"
    );
}

#[test]
fn a_cell_of_std_containers_frees_old_versions_on_the_storing_thread() {
    // `RcuCell::store` books `Vec<u8>`'s real size and frees ready old
    // versions on the storing thread: a `Vec<u8>`'s drop only frees.
    const N: usize = 100_000;
    assert!(drops_anywhere::<Vec<u8>>());
    let rcu = Rcu::new(Config::new().pace_bytes(4 << 10)).unwrap();
    let cell = std::sync::Arc::new(RcuCell::new_in(&rcu, None::<Box<Vec<u8>>>));
    let c = cell.clone();
    let own = thread::spawn(move || {
        for i in 0..N {
            c.store(Box::new(vec![i as u8; 64]));
        }
        FREED_64.with(Cell::get)
    })
    .join()
    .unwrap();
    drop(cell);
    rcu.barrier();
    assert!(
        own >= N / 4,
        "the storing thread freed {own} of {N} buffers"
    );
}

/// A value whose destructor is not declared, retired before a stream of
/// plain values on the same thread, is not stranded: the thread frees only
/// plain pages, so a worker frees the other one although the thread keeps
/// handing the shard pages (which leaves plain ready pages to it).
#[test]
fn an_undeclared_value_ahead_of_plain_ones_is_not_stranded() {
    static UNDECLARED_DROPPED: AtomicUsize = AtomicUsize::new(0);
    struct Flagged;
    impl Drop for Flagged {
        fn drop(&mut self) {
            UNDECLARED_DROPPED.fetch_add(1, Ordering::Release);
        }
    }
    rcu_reclaim::reclaim_size!(Flagged {});
    // A long window: ready pages stay left to the thread however long a
    // loaded machine deschedules it.
    let rcu = Rcu::new(
        Config::new()
            .pace_bytes(4 << 10)
            .producer_window(std::time::Duration::from_secs(3600)),
    )
    .unwrap();
    let r = rcu.clone();
    let (retired, backlog) = thread::spawn(move || {
        // The thread hands the shard plain pages first, so ready pages are
        // left to it when the other one comes.
        for i in 0..10_000u64 {
            r.defer_drop(Box::new([i; 8]));
        }
        r.defer_drop(Box::new(Flagged));
        let start = std::time::Instant::now();
        let mut n = 0u64;
        let mut backlog = 0;
        // Liveness, not speed: the bound is generous.
        while UNDECLARED_DROPPED.load(Ordering::Acquire) == 0
            && start.elapsed() < std::time::Duration::from_secs(20)
        {
            r.defer_drop(Box::new([n; 8]));
            n += 1;
            backlog = backlog.max(r.pending());
        }
        (n, backlog)
    })
    .join()
    .unwrap();
    assert_eq!(
        UNDECLARED_DROPPED.load(Ordering::Acquire),
        1,
        "stranded behind {retired} plain values (backlog up to {backlog}): {:?}",
        rcu.stats()
    );
    rcu.barrier();
}

#[test]
fn a_map_of_std_values_frees_removed_entries_on_the_writing_thread() {
    // Keys and values that drop anywhere: the writer frees ready entries.
    const N: usize = 50_000;
    let rcu = Rcu::new(Config::new().pace_bytes(4 << 10)).unwrap();
    let map: std::sync::Arc<RcuHashMap<u64, Vec<u8>>> =
        std::sync::Arc::new(RcuHashMap::new_in(&rcu));
    let m = map.clone();
    let own = thread::spawn(move || {
        for i in 0..N as u64 {
            m.insert(i % 64, vec![i as u8; 64]);
        }
        FREED_64.with(Cell::get)
    })
    .join()
    .unwrap();
    drop(map);
    rcu.barrier();
    assert!(
        own >= N / 4,
        "the writing thread freed {own} of {N} replaced values"
    );
}

/// A thread that retires values that drop anywhere and then stops (its
/// ready pages were left to it) strands nothing: the grace-period thread
/// and a worker free the rest once `producer_window` has passed, with no
/// barrier.
#[test]
fn a_thread_that_stops_retiring_plain_values_strands_nothing() {
    let rcu = Rcu::new(Config::new().pace_bytes(4 << 10)).unwrap();
    let r = rcu.clone();
    thread::spawn(move || {
        for i in 0..20_000u64 {
            r.defer_drop(Box::new(vec![i; 4]));
        }
    })
    .join()
    .unwrap();
    let start = std::time::Instant::now();
    while rcu.pending() > 0 && start.elapsed() < std::time::Duration::from_secs(20) {
        thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(rcu.pending(), 0, "{:?}", rcu.stats());
}

/// The retiring thread frees in steps: each retire frees a few ready
/// objects (at most eight, while a backlog waits), never a whole page or
/// more at once. Freeing pages at a hand-off kept the retire, usually
/// inside the caller's read-side section, running for up to a millisecond,
/// and every grace period waited for it.
#[test]
fn a_retire_frees_a_few_objects_never_a_page_at_once() {
    let rcu = Rcu::new(Config::new().pace_bytes(4 << 10)).unwrap();
    const N: usize = 100_000;
    let r = rcu.clone();
    let (most, own) = thread::spawn(move || {
        let mut most = 0;
        for i in 0..N {
            let before = FREED_64.with(Cell::get);
            let guard = r.read_lock();
            r.defer_drop(Box::new([i as u64; 8]));
            drop(guard);
            most = most.max(FREED_64.with(Cell::get) - before);
        }
        (most, FREED_64.with(Cell::get))
    })
    .join()
    .unwrap();
    rcu.barrier();
    assert!(
        most <= 8,
        "one retire freed {most} objects at once: {:?}",
        rcu.stats()
    );
    assert!(
        own >= N / 4,
        "the retiring thread freed {own} of its {N} values: {:?}",
        rcu.stats()
    );
}

/// Retires `n` plain values on a new thread that then stays alive, parked
/// (it may hold part of a ready page in its drain); returns a handle that
/// lets it exit.
fn retire_then_park(rcu: &Rcu, n: u64) -> (std::sync::mpsc::Sender<()>, thread::JoinHandle<()>) {
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let (exit_tx, exit_rx) = std::sync::mpsc::channel::<()>();
    let r = rcu.clone();
    let h = thread::spawn(move || {
        for i in 0..n {
            r.defer_drop(Box::new(vec![i; 4]));
        }
        done_tx.send(()).unwrap();
        let _ = exit_rx.recv();
    });
    done_rx.recv().unwrap();
    (exit_tx, h)
}

/// A live thread that stops retiring in the middle of a drain strands
/// nothing: the grace-period thread takes its drain once `producer_window`
/// has passed and a worker frees the rest, with no barrier.
#[test]
fn a_live_thread_that_stops_in_the_middle_of_a_drain_strands_nothing() {
    let rcu = Rcu::new(Config::new().pace_bytes(4 << 10)).unwrap();
    const N: u64 = 20_003;
    let (exit, h) = retire_then_park(&rcu, N);
    // Wait until all N have run, not until `pending()` reads 0: a worker
    // takes a page off its queue (no longer pending) before it drops the
    // page's values and counts them invoked.
    let start = std::time::Instant::now();
    while rcu.stats().invoked < N && start.elapsed() < std::time::Duration::from_secs(20) {
        thread::sleep(std::time::Duration::from_millis(5));
    }
    let s = rcu.stats();
    assert_eq!(s.invoked, s.deferred_drops, "{s:?}");
    assert_eq!(rcu.pending(), 0, "{s:?}");
    exit.send(()).unwrap();
    h.join().unwrap();
}

/// `barrier` runs what a live thread's drain still holds: when it returns,
/// every value retired before it has been dropped and counted.
#[test]
fn barrier_runs_what_a_live_threads_drain_holds() {
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    struct Noted(#[allow(dead_code)] [u64; 8]);
    impl Drop for Noted {
        fn drop(&mut self) {
            DROPS.fetch_add(1, Ordering::Relaxed);
        }
    }
    rcu_reclaim::reclaim_size!(Noted { 0 }; drops_anywhere);
    let rcu = Rcu::new(
        Config::new()
            .pace_bytes(4 << 10)
            .producer_window(std::time::Duration::from_secs(60)),
    )
    .unwrap();
    const N: usize = 10_007;
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let (exit_tx, exit_rx) = std::sync::mpsc::channel::<()>();
    let r = rcu.clone();
    let h = thread::spawn(move || {
        for i in 0..N {
            r.defer_drop(Box::new(Noted([i as u64; 8])));
        }
        done_tx.send(()).unwrap();
        let _ = exit_rx.recv();
    });
    done_rx.recv().unwrap();
    rcu.barrier();
    assert_eq!(DROPS.load(Ordering::Relaxed), N, "{:?}", rcu.stats());
    assert_eq!(rcu.pending(), 0);
    let s = rcu.stats();
    assert_eq!(s.invoked, s.deferred_drops, "{s:?}");
    exit_tx.send(()).unwrap();
    h.join().unwrap();
}
