//! The callback engine: call, defer_drop, barrier, lazy pace, overload,
//! backlog queries, panics, thread exit and domain drop.

mod common;
use common::{hold_reader, StopOnDrop};

use std::alloc::Layout;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rcu_reclaim::pages::{PageAllocator, SystemPageAllocator};
use rcu_reclaim::topology::{override_current_cpu, Topology};
use rcu_reclaim::{Config, Rcu, RcuCell, ReclaimSize};

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < limit, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn call_waits_for_pre_existing_readers() {
    let rcu = Rcu::new(Config::new().lazy_delay(Duration::from_millis(1))).unwrap();
    let (stop, reader) = hold_reader(&rcu);
    let ran = Arc::new(AtomicBool::new(false));
    let r = ran.clone();
    rcu.call_hurry(move || r.store(true, Ordering::SeqCst));
    thread::sleep(Duration::from_millis(100));
    assert!(
        !ran.load(Ordering::SeqCst),
        "callback ran while a prior reader was inside"
    );
    stop.send(()).unwrap();
    reader.join().unwrap();
    wait_until("the callback", Duration::from_secs(10), || {
        ran.load(Ordering::SeqCst)
    });
}

/// Callbacks of every capture size (none; a pointer; fields with padding
/// inside a pointer's size; more than a pointer, boxed) and on every path
/// (the thread's bulk page; the shard, for `call_sized` with bytes and
/// `call_hurry`) wait for a reader that was inside before they were
/// queued, then each runs once, and the stats count them as callbacks,
/// not deferred drops.
#[test]
fn callbacks_of_every_capture_size_wait_for_readers_and_run_once() {
    static PADDED: AtomicUsize = AtomicUsize::new(0);
    let rcu = Rcu::new(Config::new().lazy_delay(Duration::from_millis(5))).unwrap();
    let runs: Arc<Vec<AtomicUsize>> = Arc::new((0..5).map(|_| AtomicUsize::new(0)).collect());
    let (stop, reader) = hold_reader(&rcu);
    const ROUNDS: usize = 300; // more than a page of each
    for i in 0..ROUNDS {
        let r = runs.clone();
        // Captures no more than a pointer: stored in the page.
        let p = Arc::into_raw(r.clone()) as usize;
        rcu.call(move || {
            // SAFETY: from `Arc::into_raw` above, taken back once.
            let r = unsafe { Arc::from_raw(p as *const Vec<AtomicUsize>) };
            r[0].fetch_add(1, Ordering::SeqCst);
        });
        let small = (i as u8, 7u32); // 8 bytes, 3 of them padding
                                     // The pair alone fits in a pointer, padding and all.
        rcu.call(move || {
            // The whole tuple (a closure would capture only the fields it
            // names).
            let pair = std::hint::black_box(small);
            assert_eq!(pair, (i as u8, 7));
            PADDED.fetch_add(1, Ordering::SeqCst);
        });
        // An Arc and the pair: larger than a pointer, boxed.
        let r1 = r.clone();
        rcu.call(move || {
            assert_eq!((small.0, small.1), (i as u8, 7));
            r1[1].fetch_add(1, Ordering::SeqCst);
        });
        let b = Box::new(small);
        let r2 = r.clone();
        rcu.call(move || {
            assert_eq!(b.1, 7);
            r2[2].fetch_add(1, Ordering::SeqCst);
        });
        let big = [i as u64; 8];
        let r3 = r.clone();
        rcu.call_sized(
            move || {
                assert!(big.iter().all(|&v| v == i as u64));
                r3[3].fetch_add(1, Ordering::SeqCst);
            },
            64,
        );
        rcu.call(|| {}); // captures nothing
        let r4 = r.clone();
        rcu.call_hurry(move || {
            r4[4].fetch_add(1, Ordering::SeqCst);
        });
        drop(r);
    }
    thread::sleep(Duration::from_millis(50));
    let early: usize = runs.iter().map(|n| n.load(Ordering::SeqCst)).sum();
    let early = early + PADDED.load(Ordering::SeqCst);
    assert_eq!(early, 0, "callbacks ran while a prior reader was inside");
    stop.send(()).unwrap();
    reader.join().unwrap();
    rcu.barrier();
    for (k, n) in runs.iter().enumerate() {
        assert_eq!(n.load(Ordering::SeqCst), ROUNDS, "kind {k}");
    }
    assert_eq!(PADDED.load(Ordering::SeqCst), ROUNDS);
    let s = rcu.stats();
    assert_eq!(s.callbacks_queued, 7 * ROUNDS as u64, "{s:?}");
    assert_eq!(s.deferred_drops, 0, "{s:?}");
    assert_eq!(s.invoked, 7 * ROUNDS as u64, "{s:?}");
    assert_eq!(s.bytes_freed, 64 * ROUNDS as u64, "{s:?}");
    assert_eq!(Arc::strong_count(&runs), 1, "every capture dropped");
}

#[test]
fn callbacks_run_without_anyone_synchronizing() {
    let rcu = Rcu::new(Config::new().lazy_delay(Duration::from_millis(20))).unwrap();
    let n = Arc::new(AtomicUsize::new(0));
    for _ in 0..10 {
        let n = n.clone();
        rcu.call(move || {
            n.fetch_add(1, Ordering::SeqCst);
        });
    }
    for i in 0..10u64 {
        rcu.defer_drop(Box::new(i));
    }
    // Wait for them to have run, not for `pending()` to read 0: a worker
    // takes a batch off its queue (no longer pending) before it runs it
    // and counts it invoked.
    let t = Instant::now();
    while rcu.stats().invoked < 20 {
        let s = rcu.stats();
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "lazy callbacks never ran: {s:?}"
        );
        thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(n.load(Ordering::SeqCst), 10);
    let s = rcu.stats();
    assert_eq!(s.invoked, 20);
    assert_eq!(rcu.pending(), 0, "{s:?}");
    assert!(
        s.lazy_flushes >= 1,
        "the thread's partly filled page was flushed: {s:?}"
    );
}

#[test]
fn barrier_is_ordered_and_complete_under_concurrent_producers() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let total = Arc::new(AtomicUsize::new(0));
    let (producers, per, every) = if cfg!(miri) {
        (3, 120, 40)
    } else {
        (4, 2_000, 500)
    };
    let handles: Vec<_> = (0..producers)
        .map(|p| {
            let (rcu, total) = (rcu.clone(), total.clone());
            thread::spawn(move || {
                let mine = Arc::new(AtomicUsize::new(0));
                for i in 0..per {
                    let (m, t) = (mine.clone(), total.clone());
                    if i % 2 == 0 {
                        rcu.call(move || {
                            m.fetch_add(1, Ordering::SeqCst);
                            t.fetch_add(1, Ordering::SeqCst);
                        });
                    } else {
                        struct Bump(Arc<AtomicUsize>, Arc<AtomicUsize>);
                        rcu_reclaim::reclaim_size!(Bump {});
                        impl Drop for Bump {
                            fn drop(&mut self) {
                                self.0.fetch_add(1, Ordering::SeqCst);
                                self.1.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                        rcu.defer_drop(Box::new(Bump(m, t)));
                    }
                    if i % every == every - 1 {
                        rcu.barrier();
                        // Everything this thread queued before the barrier ran.
                        assert_eq!(mine.load(Ordering::SeqCst), i + 1, "producer {p}");
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    rcu.barrier();
    assert_eq!(total.load(Ordering::SeqCst), producers * per);
    assert_eq!(rcu.pending(), 0);
    assert_eq!(rcu.pending_bytes(), 0);
}

/// Regression (found by `rcu-reclaim torture`: a barrier error under fast
/// pressure flapping): a thread's page of deferred drops taken by someone
/// else (another barrier, the grace-period thread's flush) had its counts
/// reset before it reached a shard, and a barrier that read the count as 0
/// then skipped the page, returning before its drops ran.
#[test]
fn concurrent_barriers_never_miss_a_page_in_transit() {
    struct Bump(Arc<AtomicUsize>);
    rcu_reclaim::reclaim_size!(Bump {});
    impl Drop for Bump {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let rcu = Rcu::new(Config::new()).unwrap();
    let stop_pressure = Arc::new(AtomicBool::new(false));
    let flapper = {
        let (rcu, stop) = (rcu.clone(), stop_pressure.clone());
        // Fast mode makes the grace-period thread flush every thread's page.
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let _g = rcu.pressure_start_all();
                thread::sleep(Duration::from_micros(200));
            }
        })
    };
    let _stop = StopOnDrop(&stop_pressure);
    let rounds = if cfg!(miri) { 40 } else { 3_000 };
    let handles: Vec<_> = (0..3)
        .map(|t| {
            let rcu = rcu.clone();
            thread::spawn(move || {
                let mine = Arc::new(AtomicUsize::new(0));
                for round in 1..=rounds {
                    rcu.defer_drop(Box::new(Bump(mine.clone())));
                    rcu.barrier();
                    let ran = mine.load(Ordering::SeqCst);
                    assert_eq!(
                        ran, round,
                        "thread {t}: barrier returned before its drop ran"
                    );
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    stop_pressure.store(true, Ordering::Relaxed);
    flapper.join().unwrap();
}

#[test]
fn ten_thousand_short_lived_threads_lose_nothing() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    struct Count(Arc<AtomicUsize>);
    rcu_reclaim::reclaim_size!(Count {});
    impl Drop for Count {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    // Under Miri, fewer (a thread costs it about a second), still several
    // chunks.
    let threads = if cfg!(miri) { 200 } else { 10_000 };
    for chunk in 0..threads / 100 {
        let hs: Vec<_> = (0..100)
            .map(|i| {
                let (rcu, ran) = (rcu.clone(), ran.clone());
                thread::spawn(move || {
                    let r = ran.clone();
                    rcu.call(move || {
                        r.fetch_add(1, Ordering::SeqCst);
                    });
                    rcu.defer_drop(Box::new(Count(ran.clone())));
                    if (chunk + i) % 3 == 0 {
                        rcu.defer_drop(Box::new(Count(ran)));
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
    }
    let expected = threads * 2
        + (0..threads / 100)
            .flat_map(|c| (0..100).map(move |i| usize::from((c + i) % 3 == 0)))
            .sum::<usize>();
    rcu.barrier();
    assert_eq!(
        ran.load(Ordering::SeqCst),
        expected,
        "every callback ran exactly once"
    );
    assert_eq!(rcu.pending(), 0);
    assert_eq!(rcu.stats().registered_readers, 0);
}

const POISON: u64 = 0xDEAD_BEEF_DEAD_BEEF;

struct Poisoned {
    words: [u64; 4],
    drops: Arc<AtomicUsize>,
}
rcu_reclaim::reclaim_size!(Poisoned {});

impl Drop for Poisoned {
    fn drop(&mut self) {
        for w in self.words.iter_mut() {
            // SAFETY: `w` is a valid exclusive reference.
            unsafe { std::ptr::write_volatile(w, POISON) };
        }
        self.drops.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn deferred_drops_happen_only_after_a_grace_period() {
    let rcu = Rcu::new(
        Config::new()
            .lazy_delay(Duration::from_millis(2))
            .lazy_batch(64),
    )
    .unwrap();
    let drops = Arc::new(AtomicUsize::new(0));
    let mk = |g: u64| {
        Box::new(Poisoned {
            words: [g; 4],
            drops: drops.clone(),
        })
    };
    let cell = Arc::new(RcuCell::new_in(&rcu, Some(mk(1))));
    let stop = Arc::new(AtomicBool::new(false));
    let bad = Arc::new(AtomicUsize::new(0));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (rcu, cell, stop, bad) = (rcu.clone(), cell.clone(), stop.clone(), bad.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let g = rcu.read_lock();
                    if let Some(o) = cell.load(&g) {
                        // SAFETY: the object is valid inside the section.
                        let first = unsafe { std::ptr::read_volatile(&o.words[0]) };
                        for w in &o.words {
                            // SAFETY: as above.
                            let v = unsafe { std::ptr::read_volatile(w) };
                            if v == POISON || v != first {
                                bad.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                }
            })
        })
        .collect();
    let _stop = StopOnDrop(&stop);
    let updates = if cfg!(miri) { 600u64 } else { 20_000 };
    for g in 2..updates + 2 {
        // The old version goes into the bulk pages as `defer_drop`'s do
        // (a `Box` made of it would assert uniqueness under the readers).
        cell.replace(mk(g)).unwrap().defer_drop();
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().unwrap();
    }
    rcu.barrier();
    assert_eq!(
        bad.load(Ordering::Relaxed),
        0,
        "a reader saw a poisoned object"
    );
    assert_eq!(drops.load(Ordering::SeqCst), updates as usize);
    assert!(rcu.stats().pages_freed >= 1);
}

/// A page allocator that fails while `fail` is set and counts what it hands out.
#[derive(Default)]
struct Flaky {
    fail: AtomicBool,
    live: AtomicUsize,
}

// SAFETY: every page it hands out comes from `SystemPageAllocator`.
unsafe impl PageAllocator for Flaky {
    fn allocate(&self, layout: Layout) -> Option<NonNull<u8>> {
        if self.fail.load(Ordering::SeqCst) {
            return None;
        }
        self.live.fetch_add(1, Ordering::SeqCst);
        SystemPageAllocator.allocate(layout)
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        self.live.fetch_sub(1, Ordering::SeqCst);
        // SAFETY: forwarded from our caller.
        unsafe { SystemPageAllocator.deallocate(ptr, layout) }
    }
}

#[test]
fn page_allocation_failure_takes_the_fallback_and_loses_nothing() {
    let flaky = Arc::new(Flaky::default());
    flaky.fail.store(true, Ordering::SeqCst);
    let rcu = Rcu::new(Config::new().page_allocator(flaky.clone())).unwrap();
    let drops = Arc::new(AtomicUsize::new(0));
    let mk = || {
        Box::new(Poisoned {
            words: [1; 4],
            drops: drops.clone(),
        })
    };
    // try_defer_drop hands the object back.
    let back = rcu.try_defer_drop(mk()).unwrap_err();
    drop(back);
    assert_eq!(drops.load(Ordering::SeqCst), 1);

    // defer_drop waits for a grace period and drops at once...
    let (stop, reader) = hold_reader(&rcu);
    let r = rcu.clone();
    let obj = mk();
    let writer = thread::spawn(move || r.defer_drop(obj));
    thread::sleep(Duration::from_millis(50));
    assert_eq!(
        drops.load(Ordering::SeqCst),
        1,
        "dropped before the reader left"
    );
    stop.send(()).unwrap();
    reader.join().unwrap();
    writer.join().unwrap();
    assert_eq!(drops.load(Ordering::SeqCst), 2);

    // ...and inside a read-side section it queues a callback instead.
    {
        let _g = rcu.read_lock();
        rcu.defer_drop(mk());
    }
    assert_eq!(drops.load(Ordering::SeqCst), 2);
    rcu.barrier();
    assert_eq!(drops.load(Ordering::SeqCst), 3);
    assert_eq!(rcu.stats().fallback_syncs, 2);

    // Pages again: the bulk path resumes.
    flaky.fail.store(false, Ordering::SeqCst);
    for _ in 0..1000 {
        rcu.defer_drop(mk());
    }
    rcu.barrier();
    assert_eq!(drops.load(Ordering::SeqCst), 1003);
    drop(rcu);
    assert_eq!(
        flaky.live.load(Ordering::SeqCst),
        0,
        "every page went back to its allocator"
    );
}

#[test]
fn no_page_allocation_scope_uses_the_fallback() {
    let rcu = Rcu::new(Config::new()).unwrap();
    rcu_reclaim::pages::without_page_allocation(|| rcu.defer_drop(Box::new(1u8)));
    assert_eq!(rcu.stats().fallback_syncs, 1);
    rcu.defer_drop(Box::new(1u8));
    assert_eq!(rcu.stats().fallback_syncs, 1);
    rcu.barrier();
}

#[test]
fn overload_starts_grace_periods_at_once_and_qlowmark_restores_batching() {
    let topo = Topology::synthetic(1, 2);
    // A lazy delay far longer than the test: without overload nothing would run.
    let cfg = || {
        Config::new()
            .topology(topo.clone())
            .lazy_delay(Duration::from_secs(60))
            .lazy_batch(1_000_000)
    };
    let lazy = Rcu::new(cfg()).unwrap();
    override_current_cpu(Some(1));
    for _ in 0..5_000 {
        lazy.call(|| {});
    }
    thread::sleep(Duration::from_millis(300));
    assert_eq!(
        lazy.pending(),
        5_000,
        "under qhimark the lazy delay holds them"
    );
    assert_eq!(lazy.stats().overload_events, 0);

    let rcu = Rcu::new(cfg()).unwrap();
    // A reader holds grace periods back while the flood is queued, so the
    // whole flood is queued while the shard is overloaded.
    let (stop, reader) = hold_reader(&rcu);
    let start = Instant::now();
    for _ in 0..12_000 {
        rcu.call(|| {});
    }
    override_current_cpu(None);
    let s = rcu.stats();
    assert_eq!(s.overload_events, 1, "{s:?}");
    assert!(s.shards[1].overloaded, "{s:?}");
    stop.send(()).unwrap();
    reader.join().unwrap();
    // The shard's callbacks run without a barrier. (The last few, on this
    // thread's partly filled bulk page, wait for its lazy flush, a minute
    // here, as deferred drops do.)
    wait_until(
        "the overloaded shard to drain",
        Duration::from_secs(20),
        || rcu.stats().shards[1].pending == 0,
    );
    let drained = start.elapsed();
    assert!(drained < Duration::from_secs(20));
    let s = rcu.stats();
    assert!(!s.shards[1].overloaded, "back under qlowmark: {s:?}");
    println!("12,000 callbacks past qhimark drained in {drained:?}");
    rcu.barrier();
    assert_eq!(rcu.pending(), 0);
    lazy.barrier();
}

#[test]
fn total_backlog_over_qovld_expedites() {
    let rcu = Rcu::new(
        Config::new()
            .qovld(500)
            .lazy_delay(Duration::from_millis(5)),
    )
    .unwrap();
    // Queued inside a section, so no grace period ends meanwhile: a plan
    // made while this thread was descheduled mid-loop saw part of them,
    // and a later one sees at least the rest (before, 600 calls split over
    // two grace periods under load never showed 500 at once).
    let guard = rcu.read_lock();
    for _ in 0..1200 {
        rcu.call(|| {});
    }
    drop(guard);
    wait_until("drain", Duration::from_secs(20), || rcu.pending() == 0);
    let s = rcu.stats();
    assert!(s.overload_expedited >= 1, "{s:?}");
    assert!(s.expedited_gps >= 1, "{s:?}");
}

#[test]
fn per_node_queries_on_a_synthetic_four_node_topology() {
    let rcu = Rcu::new(
        Config::new()
            .topology(Topology::synthetic(4, 2))
            .lazy_delay(Duration::from_secs(60))
            .lazy_batch(1_000_000),
    )
    .unwrap();
    for cpu in 0..8 {
        override_current_cpu(Some(cpu));
        for _ in 0..=cpu {
            rcu.call_sized(|| {}, 100);
        }
    }
    override_current_cpu(None);
    // node n holds cpus 2n and 2n+1: (2n+1) + (2n+2) callbacks.
    for node in 0..4 {
        assert_eq!(rcu.pending_on_node(node), 4 * node + 3, "node {node}");
        assert_eq!(rcu.pending_bytes_on_node(node), (4 * node + 3) * 100);
    }
    assert_eq!(rcu.pending_on_cpu(5), 6);
    assert_eq!(rcu.pending_bytes_on_cpu(5), 600);
    assert_eq!(rcu.pending(), 36);
    assert_eq!(rcu.pending_bytes(), 3600);
    let s = rcu.stats();
    assert_eq!(s.shards.len(), 8);
    assert_eq!(s.shards[5].node, 2);
    assert_eq!(s.shards[5].pending, 6);
    assert!(serde_json::to_string(&s).unwrap().contains("\"shards\""));
    rcu.barrier();
    assert_eq!(rcu.pending_on_node(3), 0);
}

#[test]
fn bytes_are_accounted_by_size_hint_and_reclaim_size() {
    let rcu = Rcu::new(Config::new().lazy_delay(Duration::from_secs(60))).unwrap();
    rcu.defer_drop(Box::new([0u8; 1000]));
    rcu.defer_drop_sized(Box::new(vec![0u8; 5000]), 5000);
    rcu.defer_drop(Box::new(String::with_capacity(300)));
    rcu.call_sized(|| {}, 7);
    let string = std::mem::size_of::<String>() + 300;
    assert_eq!(rcu.pending_bytes(), 1000 + 5000 + string + 7);
    assert_eq!(
        vec![0u32; 10].reclaim_size(),
        std::mem::size_of::<Vec<u32>>() + 40
    );
    rcu.barrier();
    let s = rcu.stats();
    assert_eq!(s.bytes_freed, (1000 + 5000 + string + 7) as u64);
    assert_eq!(s.pending_bytes, 0);
}

#[test]
fn a_panicking_callback_is_caught_counted_and_reported() {
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let s2 = seen.clone();
    let rcu =
        Rcu::new(Config::new().on_callback_panic(move |m| s2.lock().unwrap().push(m.to_string())))
            .unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    for i in 0..10 {
        let r = ran.clone();
        rcu.call(move || {
            if i == 3 {
                panic!("callback {i} fails on purpose");
            }
            r.fetch_add(1, Ordering::SeqCst);
        });
    }
    struct PanicOnDrop;
    rcu_reclaim::reclaim_size!(PanicOnDrop {});
    impl Drop for PanicOnDrop {
        fn drop(&mut self) {
            panic!("a deferred drop fails on purpose");
        }
    }
    rcu.defer_drop(Box::new(PanicOnDrop));
    rcu.barrier();
    assert_eq!(ran.load(Ordering::SeqCst), 9);
    let s = rcu.stats();
    assert_eq!(s.callback_panics, 2);
    let seen = seen.lock().unwrap();
    assert!(
        seen.iter()
            .any(|m| m.contains("callback 3 fails on purpose")),
        "{seen:?}"
    );
}

#[test]
fn barrier_inside_a_callback_is_reported_not_a_hang() {
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let s2 = seen.clone();
    let rcu =
        Rcu::new(Config::new().on_callback_panic(move |m| s2.lock().unwrap().push(m.to_string())))
            .unwrap();
    let r = rcu.clone();
    rcu.call(move || r.barrier());
    rcu.barrier();
    let seen = seen.lock().unwrap();
    assert!(
        seen.iter()
            .any(|m| m.contains("barrier() called from inside an RCU callback")),
        "{seen:?}"
    );
}

/// A barrier waiting for a callback that does not return (one that waits
/// for the barrier's own thread: a deadlock) says so once the wait has
/// lasted `stall_timeout`, naming the thread running the callback; before,
/// it waited in silence. Here the callback waits for that report (8 s at
/// most), so without it the barrier returns only then, unreported.
#[test]
fn a_barrier_waiting_for_a_stuck_callback_says_so() {
    let captured = common::Captured::default();
    let _log = captured.on_this_thread();
    let rcu = Rcu::new(Config::new().stall_timeout(Duration::from_millis(100))).unwrap();
    let (started_tx, started) = std::sync::mpsc::channel();
    let log = captured.clone();
    rcu.call_hurry(move || {
        started_tx.send(()).unwrap();
        let t = Instant::now();
        while !log.text().contains("still running on thread")
            && t.elapsed() < Duration::from_secs(8)
        {
            thread::sleep(Duration::from_millis(5));
        }
    });
    // A worker is inside the callback, holding its shard.
    started.recv().unwrap();
    rcu.barrier();
    let text = captured.text();
    assert!(
        text.contains("has waited") && text.contains("still running on thread rcu-cb-"),
        "no report of the wait: {text:?}"
    );
}

#[test]
fn barrier_of_another_domain_inside_a_callback_is_refused_naming_the_cycle() {
    // Two domains whose callbacks each wait for the other's barrier would
    // deadlock; the refusal says why it covers other domains too.
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let s2 = seen.clone();
    let a =
        Rcu::new(Config::new().on_callback_panic(move |m| s2.lock().unwrap().push(m.to_string())))
            .unwrap();
    let b = Rcu::new(Config::new()).unwrap();
    let b2 = b.clone();
    a.call(move || b2.barrier());
    a.barrier();
    b.barrier();
    let seen = seen.lock().unwrap();
    assert!(
        seen.iter()
            .any(|m| m.contains("of any domain") && m.contains("another domain")),
        "{seen:?}"
    );
}

#[test]
#[should_panic(expected = "barrier() called inside a read-side critical section")]
fn barrier_inside_a_section_panics() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let _g = rcu.read_lock();
    rcu.barrier();
}

#[test]
fn dropping_a_domain_runs_every_callback() {
    let ran = Arc::new(AtomicUsize::new(0));
    let rcu = Rcu::new(Config::new().lazy_delay(Duration::from_secs(60))).unwrap();
    struct Count(Arc<AtomicUsize>);
    rcu_reclaim::reclaim_size!(Count {});
    impl Drop for Count {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    for _ in 0..100 {
        let r = ran.clone();
        rcu.call(move || {
            r.fetch_add(1, Ordering::SeqCst);
        });
        rcu.defer_drop(Box::new(Count(ran.clone())));
    }
    // A thread that buffered drops and exited.
    let r2 = rcu.clone();
    let ran2 = ran.clone();
    thread::spawn(move || r2.defer_drop(Box::new(Count(ran2))))
        .join()
        .unwrap();
    drop(rcu);
    assert_eq!(ran.load(Ordering::SeqCst), 201);
}

#[test]
fn callbacks_run_in_queue_order_per_thread() {
    let rcu = Rcu::new(Config::new().topology(Topology::synthetic(1, 1))).unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    // Under Miri, fewer: still several pages of 255.
    let n = if cfg!(miri) { 800 } else { 5_000 };
    for i in 0..n {
        let l = log.clone();
        rcu.call(move || l.lock().unwrap().push(i));
    }
    rcu.barrier();
    let log = log.lock().unwrap();
    assert_eq!(*log, (0..n).collect::<Vec<_>>());
}

/// The last handle dropped inside a callback of its own domain: the domain
/// still shuts down (on a helper thread), without deadlocking the worker.
#[test]
fn last_handle_dropped_inside_a_callback() {
    struct Notify(std::sync::mpsc::Sender<&'static str>);
    rcu_reclaim::reclaim_size!(Notify {});
    impl Drop for Notify {
        fn drop(&mut self) {
            let _ = self.0.send("dropped");
        }
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let rcu = Rcu::new(Config::new().lazy_delay(Duration::from_millis(5))).unwrap();
    let cell = RcuCell::new_in(&rcu, Some(Box::new(Notify(tx.clone()))));
    let tx2 = tx.clone();
    rcu.call(move || {
        drop(cell); // holds the last handle once `rcu` below is gone
        let _ = tx2.send("callback ran");
    });
    // Queued behind it: must still run when the domain shuts down.
    rcu.defer_drop(Box::new(Notify(tx)));
    drop(rcu);
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(
            rx.recv_timeout(Duration::from_secs(10))
                .expect("domain shut down"),
        );
    }
    seen.sort_unstable();
    assert_eq!(seen, ["callback ran", "dropped", "dropped"]);
}

/// A fresh bulk page kicks the grace-period thread only when the thread has
/// not promised to look by the page's due time. Whatever the interleaving
/// of promise and page, every object buffered by threads that stay alive
/// (so no thread exit hands their pages on) is freed soon after
/// `lazy_delay`, with no barrier: a lost wake-up would leave it forever.
#[test]
fn fresh_pages_are_flushed_lazily_without_lost_wakeups() {
    use std::sync::Barrier;
    const THREADS: usize = 3;
    const ROUNDS: usize = 150;
    let rcu = Rcu::new(Config::new().lazy_delay(Duration::from_millis(3))).unwrap();
    let go = Arc::new(Barrier::new(THREADS + 1));
    let done = Arc::new(Barrier::new(THREADS + 1));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let (rcu, go, done) = (rcu.clone(), go.clone(), done.clone());
            thread::spawn(move || {
                for round in 0..ROUNDS {
                    go.wait();
                    // Spread the pages' starts over the thread's sleeps.
                    thread::sleep(Duration::from_micros(
                        ((round * 7 + t * 13) % 40) as u64 * 100,
                    ));
                    for i in 0..1 + (round + t) % 4 {
                        rcu.defer_drop(Box::new([i as u64; 4]));
                    }
                    done.wait();
                }
            })
        })
        .collect();
    for round in 0..ROUNDS {
        go.wait();
        done.wait();
        let t = Instant::now();
        while rcu.pending() > 0 {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "round {round}: buffered objects never freed: {:?}",
                rcu.stats()
            );
            thread::sleep(Duration::from_micros(200));
        }
    }
    for t in threads {
        t.join().unwrap();
    }
    assert!(rcu.stats().lazy_flushes >= ROUNDS as u64);
}

/// Counts drops, and those run on the thread that made the object.
struct Tracked {
    drops: Arc<AtomicUsize>,
    on_maker: Arc<AtomicUsize>,
    maker: thread::ThreadId,
}
rcu_reclaim::reclaim_size!(Tracked {});

impl Drop for Tracked {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::Relaxed);
        if thread::current().id() == self.maker {
            self.on_maker.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Defers `n` tracked drops from this thread.
fn defer_tracked(rcu: &Rcu, n: usize, drops: &Arc<AtomicUsize>, on_maker: &Arc<AtomicUsize>) {
    for _ in 0..n {
        rcu.defer_drop(Box::new(Tracked {
            drops: drops.clone(),
            on_maker: on_maker.clone(),
            maker: thread::current().id(),
        }));
    }
}

/// A thread that keeps handing full pages to its shard frees that shard's
/// ready pages itself, on its own core, as crossbeam-epoch and seize do:
/// within `producer_window` of its last hand-off no worker takes them.
#[test]
fn a_busy_thread_frees_its_own_ready_pages() {
    // A bulk page holds 255 objects; handing one off also asks for a grace
    // period at once (lazy_batch); the window outlasts the test.
    let per_page = (rcu_reclaim::pages::BULK_PAGE_SIZE - 16) / 16;
    let rcu = Rcu::new(
        Config::new()
            .lazy_batch(per_page)
            .lazy_delay(Duration::from_secs(60)) // no lazy flush of the thread's page
            .retiring_thread_frees(true)
            .producer_window(Duration::from_secs(60))
            // Pages go to their shard only when full (never early: a 32nd
            // of this pace is more than a page of these objects holds).
            .pace_bytes(1 << 20),
    )
    .unwrap();
    let (drops, on_maker) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (r, d, m) = (rcu.clone(), drops.clone(), on_maker.clone());
    thread::spawn(move || {
        // Shards are per CPU: stay on one across the sleep below.
        override_current_cpu(Some(0));
        // A full page plus one object: the first page is handed off.
        defer_tracked(&r, per_page + 1, &d, &m);
        // start_poll, not get_state: the grace period the hand-off asked
        // for may be running already, and nothing else would ask for the
        // next one (no lazy flush for a minute).
        let cookie = r.start_poll();
        wait_until(
            "the first page's grace period",
            Duration::from_secs(20),
            || r.poll(&cookie),
        );
        // Ready, but left to this thread: no worker is asked to free it.
        thread::sleep(Duration::from_millis(50));
        // A worker that is running anyway (woken for another reason) frees
        // what it finds ready; that happened once in many CI runs. Then
        // nothing is left for this thread to show, and the check is moot.
        let early = d.load(Ordering::Relaxed);
        // The next hand-off frees it, here.
        defer_tracked(&r, per_page, &d, &m);
        if early == 0 {
            // At least that page, here (the page this batch handed off may
            // be ready already too: this thread starts its grace period,
            // and the grace-period thread may finish it at once).
            let here = m.load(Ordering::Relaxed);
            assert!(here >= per_page, "{here} here: {:?}", r.stats());
        } else {
            assert_eq!(early, per_page, "{:?}", r.stats());
            println!(
                "a running worker freed the ready page first: {:?}",
                r.stats()
            );
        }
    })
    .join()
    .unwrap();
    rcu.barrier();
    assert_eq!(drops.load(Ordering::Relaxed), 2 * per_page + 1);
}

/// Once the thread stops handing pages on (it stays alive, so no thread
/// exit hands its page on), a worker frees its ready pages after
/// `producer_window`, with no barrier: nothing is stranded.
#[test]
fn a_worker_frees_ready_pages_once_their_thread_stops_handing_on() {
    // Each hand-off asks for a grace period at once (lazy_batch); nothing
    // else wakes the grace-period thread (no lazy flush for a minute), so
    // the last pages, ready after the thread's last hand-off, wait for the
    // look the thread times for the window's end.
    let rcu = Rcu::new(
        Config::new()
            .lazy_batch(255)
            .lazy_delay(Duration::from_secs(60))
            .retiring_thread_frees(true)
            .producer_window(Duration::from_millis(20)),
    )
    .unwrap();
    let (drops, on_maker) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (r, d, m) = (rcu.clone(), drops.clone(), on_maker.clone());
    // 200 full pages: all but the last are handed off.
    const N: usize = 200 * 255;
    thread::spawn(move || {
        defer_tracked(&r, N, &d, &m);
        wait_until(
            "the handed-off pages freed",
            Duration::from_secs(20),
            || d.load(Ordering::Relaxed) >= N - 255,
        );
    })
    .join()
    .unwrap();
    rcu.barrier();
    assert_eq!(drops.load(Ordering::Relaxed), N);
}

/// A thread that calls `collect` at its safe points frees its shard's
/// ready garbage itself, where it was allocated: pages it hands off once it
/// collects are left to it for `producer_window`, and `collect` frees them
/// on the calling thread.
#[test]
fn collect_frees_ready_garbage_on_the_calling_thread() {
    let per_page = (rcu_reclaim::pages::BULK_PAGE_SIZE - 16) / 16;
    let rcu = Rcu::new(
        Config::new()
            .lazy_batch(per_page)
            .lazy_delay(Duration::from_secs(60)) // no lazy flush of the thread's page
            .producer_window(Duration::from_secs(60))
            // Pages go to their shard only when full (never early: a 32nd
            // of this pace is more than a page of these objects holds).
            .pace_bytes(1 << 20),
    )
    .unwrap();
    let (drops, on_maker) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (r, d, m) = (rcu.clone(), drops.clone(), on_maker.clone());
    thread::spawn(move || {
        override_current_cpu(Some(0));
        // A first page, handed off before this thread ever collected: a
        // worker may free it once its grace period ends.
        defer_tracked(&r, per_page + 1, &d, &m);
        // From now on this thread collects (this call may also complete
        // the first page's grace period and free it here).
        let first = r.collect();
        assert!(first == 0 || first == per_page, "{first}");
        // A second page, handed off by a collecting thread: left to it.
        defer_tracked(&r, per_page, &d, &m);
        let cookie = r.start_poll();
        wait_until("the pages' grace period", Duration::from_secs(20), || {
            r.poll(&cookie)
        });
        thread::sleep(Duration::from_millis(50));
        let before = d.load(Ordering::Relaxed);
        let here_before = m.load(Ordering::Relaxed);
        let ran = r.collect();
        let here = m.load(Ordering::Relaxed) - here_before;
        assert_eq!(here, ran, "collect ran {ran} objects, {here} of them here");
        assert_eq!(before + ran, 2 * per_page, "{:?}", r.stats());
        // The page handed off while collecting was left to this thread.
        assert!(ran >= per_page, "{ran} ran here: {:?}", r.stats());
    })
    .join()
    .unwrap();
    rcu.barrier();
    assert_eq!(drops.load(Ordering::Relaxed), 2 * per_page + 1);
}

/// A collecting thread's garbage needs no lazy pace and no worker: its
/// `collect` calls start and complete the grace period its oldest page
/// waits for (a minute of lazy delay here) and free the page here.
#[test]
fn collect_drives_grace_periods_itself() {
    let rcu = Rcu::new(
        Config::new()
            .lazy_delay(Duration::from_secs(60))
            .producer_window(Duration::from_secs(60))
            // Pages go to their shard only when full (never early: a 32nd
            // of this pace is more than a page of these objects holds).
            .pace_bytes(1 << 20),
    )
    .unwrap();
    let (drops, on_maker) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (r, d, m) = (rcu.clone(), drops.clone(), on_maker.clone());
    thread::spawn(move || {
        override_current_cpu(Some(0));
        assert_eq!(r.collect(), 0, "nothing queued, nothing run");
        // 24-byte objects: a full page (255) is under the default batch
        // (1000) and under `pace_bytes`, so only collecting makes it due.
        defer_tracked(&r, 256, &d, &m);
        wait_until("the page freed here", Duration::from_secs(20), || {
            r.collect();
            m.load(Ordering::Relaxed) >= 255
        });
    })
    .join()
    .unwrap();
    rcu.barrier();
    assert_eq!(drops.load(Ordering::Relaxed), 256);
    assert_eq!(on_maker.load(Ordering::Relaxed), 255);
}

/// Inside a read-side section `collect` runs nothing (a destructor run
/// there could not wait for a grace period); the same ready page is freed
/// by the next `collect` outside it.
#[test]
fn collect_inside_a_section_runs_nothing() {
    let rcu = Rcu::new(
        Config::new()
            .lazy_delay(Duration::from_secs(60))
            .producer_window(Duration::from_secs(60))
            // Pages go to their shard only when full (never early: a 32nd
            // of this pace is more than a page of these objects holds).
            .pace_bytes(1 << 20),
    )
    .unwrap();
    let (drops, on_maker) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (r, d, m) = (rcu.clone(), drops.clone(), on_maker.clone());
    thread::spawn(move || {
        override_current_cpu(Some(0));
        r.collect();
        defer_tracked(&r, 256, &d, &m);
        let cookie = r.start_poll();
        wait_until("the page's grace period", Duration::from_secs(20), || {
            r.poll(&cookie)
        });
        {
            let _guard = r.read_lock();
            assert_eq!(r.collect(), 0, "collect inside a section runs nothing");
        }
        assert_eq!(d.load(Ordering::Relaxed), 0, "{:?}", r.stats());
        assert_eq!(r.collect(), 255, "{:?}", r.stats());
    })
    .join()
    .unwrap();
    rcu.barrier();
    assert_eq!(drops.load(Ordering::Relaxed), 256);
}

/// A thread that collects while it retires and then stops (it stays
/// alive) strands nothing: after `producer_window` a worker frees what it
/// left, with no barrier. `collect` inside a callback does nothing.
#[test]
fn a_thread_that_stops_collecting_strands_nothing() {
    let rcu = Rcu::new(
        Config::new()
            .lazy_batch(255)
            .lazy_delay(Duration::from_secs(60))
            .producer_window(Duration::from_millis(20)),
    )
    .unwrap();
    let (drops, on_maker) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (r, d, m) = (rcu.clone(), drops.clone(), on_maker.clone());
    const N: usize = 100 * 255;
    thread::spawn(move || {
        for _ in 0..N / 255 {
            defer_tracked(&r, 255, &d, &m);
            r.collect();
        }
        wait_until(
            "the handed-off pages freed",
            Duration::from_secs(20),
            || d.load(Ordering::Relaxed) >= N - 255,
        );
    })
    .join()
    .unwrap();
    let in_cb = Arc::new(AtomicUsize::new(usize::MAX));
    let (r, c) = (rcu.clone(), in_cb.clone());
    rcu.call(move || c.store(r.collect(), Ordering::Relaxed));
    rcu.barrier();
    assert_eq!(
        in_cb.load(Ordering::Relaxed),
        0,
        "collect in a callback runs nothing"
    );
    assert_eq!(drops.load(Ordering::Relaxed), N);
}

/// A domain paced by bytes alone: `pace_bytes` 64 KiB, a lazy delay of a
/// minute and no batch by count.
fn paced_by_bytes_only() -> Rcu {
    Rcu::new(
        Config::new()
            .lazy_delay(Duration::from_secs(60))
            .lazy_batch(1 << 30)
            .pace_bytes(64 << 10),
    )
    .unwrap()
}

/// The pace by memory: a thread whose retires reach `pace_bytes` gets a
/// grace period, and its garbage freed, long before the lazy delay; a
/// trickle under the mark still waits for the delay. The thread stops
/// retiring after its last hand-off, leaving the grace period it started
/// in progress: the grace-period thread's fallback look (not the lazy
/// delay, a minute here) finishes it, so nothing is stranded.
#[test]
fn bytes_set_the_pace_and_a_trickle_still_waits() {
    let rcu = paced_by_bytes_only();
    // Two pages' worth of 64 KiB buffers: each page goes to its shard as it
    // reaches four times the pace (256 KiB, 4 buffers: fewer objects than
    // the pace's least count, and fewer than the retires between two of
    // the thread's early looks, so no page goes early and leaves the last
    // one short) and asks for a grace period at once.
    for _ in 0..8 {
        rcu.defer_drop(Box::new(vec![0u8; 64 << 10]));
    }
    wait_until(
        "the paced garbage freed, with no barrier",
        Duration::from_secs(20),
        || rcu.pending_bytes() == 0,
    );
    // A trickle: 1 KiB waits in the thread's page for the lazy delay.
    rcu.defer_drop(Box::new(vec![0u8; 1 << 10]));
    thread::sleep(Duration::from_millis(200));
    assert!(rcu.pending_bytes() >= 1 << 10, "{:?}", rcu.stats());
    rcu.barrier();
    assert_eq!(rcu.pending(), 0);
}

/// A moderate retire rate does not wait for a whole `pace_bytes`: a page
/// holding a 32nd of it goes to its shard and asks for a grace period
/// when none has started for a while (the thread looks every 8 retires),
/// so its garbage is freed long before the lazy delay (a minute here) with
/// no barrier.
#[test]
fn a_page_with_a_32nd_of_the_pace_goes_early_when_grace_periods_are_quiet() {
    let rcu = paced_by_bytes_only();
    thread::sleep(Duration::from_millis(2));
    // 8 retires of about 512 bytes: 4 KiB, a 16th of the pace, in a page
    // with room for 250.
    for _ in 0..8 {
        rcu.defer_drop(Box::new(vec![0u8; 500]));
    }
    assert!(
        rcu.stats().deferred_drops >= 8,
        "the page did not go early: {:?}",
        rcu.stats()
    );
    wait_until(
        "the early page's garbage freed, with no barrier",
        Duration::from_secs(20),
        || rcu.pending_bytes() == 0,
    );
    assert_eq!(rcu.pending(), 0);
}

/// A retiring thread moves grace periods on itself when it hands a page
/// to its queue (without waiting), so its garbage does not wait for the
/// grace-period thread to be scheduled.
#[test]
fn a_retiring_thread_completes_grace_periods_itself() {
    let rcu = Rcu::new(
        Config::new()
            .lazy_delay(Duration::from_secs(60))
            .pace_bytes(1 << 10),
    )
    .unwrap();
    let start = std::time::Instant::now();
    while rcu.stats().retirer_gps == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no grace period completed by a retiring thread: {:?}",
            rcu.stats()
        );
        for _ in 0..16 {
            rcu.defer_drop(Box::new(vec![0u8; 1 << 10]));
        }
    }
    rcu.barrier();
    let s = rcu.stats();
    assert!(
        s.membarriers > 0 || s.flavor == rcu_reclaim::Flavor::Mb,
        "{s:?}"
    );
    assert_eq!(rcu.pending(), 0);
}

/// Per-CPU workers (opt-in): one pinned worker per CPU frees that CPU's
/// queue without a barrier, and the workers are named after their CPU.
#[test]
#[cfg_attr(
    miri,
    ignore = "reads the worker names in /proc/self/task, which Miri does not have"
)]
fn per_cpu_workers_free_their_cpus_garbage() {
    let rcu = Rcu::new(
        Config::new()
            .worker_per_cpu(true)
            .lazy_delay(Duration::from_secs(60))
            .pace_bytes(4 << 10),
    )
    .unwrap();
    let drops = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let (r, d) = (rcu.clone(), drops.clone());
            thread::spawn(move || {
                for _ in 0..64 {
                    let d = d.clone();
                    r.defer_drop(Box::new(OnDrop(Some(Box::new(move || {
                        d.fetch_add(1, Ordering::Relaxed);
                    })))));
                    r.defer_drop(Box::new(vec![0u8; 1 << 10]));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    // The exited threads' partial pages went to their queues; everything
    // is freed by the workers, with no barrier.
    let t = Instant::now();
    while drops.load(Ordering::Relaxed) != 128 {
        // Failed once in a full workspace run on the 2-core machine (not
        // reproduced in 30 runs since): say where everything stood.
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "timed out waiting for the workers to free it all: {} of 128 dropped; {:#?}",
            drops.load(Ordering::Relaxed),
            rcu.stats()
        );
        thread::sleep(Duration::from_millis(1));
    }
    let names: Vec<String> = std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .map(|n| n.trim().to_string())
        .collect();
    let prefix = format!("rcu-cb-{}-c", rcu.stats().domain);
    assert!(
        names.iter().any(|n| n.starts_with(&prefix)),
        "no per-CPU worker among {names:?}"
    );
}

/// A thread that exits with a few objects in its page (too few for the
/// pace to send the page on) leaves them to the domain, which gives them a
/// grace period at once: not after the lazy delay (a minute here), nor
/// after a second lazy delay on the shard the page went to. The per-CPU
/// worker test above timed out about once in 500 runs under load for this:
/// when a hand-off found its shard's lock held, the thread's last page was
/// a partial one, orphaned with no grace period asked for.
#[test]
fn an_exited_threads_last_objects_are_freed_without_a_barrier_or_the_lazy_delay() {
    let rcu = Rcu::new(Config::new().lazy_delay(Duration::from_secs(60))).unwrap();
    let drops = Arc::new(AtomicUsize::new(0));
    for round in 1..=3 {
        let (r, d) = (rcu.clone(), drops.clone());
        thread::spawn(move || {
            for _ in 0..3 {
                let d = d.clone();
                r.defer_drop(Box::new(OnDrop(Some(Box::new(move || {
                    d.fetch_add(1, Ordering::Relaxed);
                })))));
            }
        })
        .join()
        .unwrap();
        let t = Instant::now();
        while drops.load(Ordering::Relaxed) != 3 * round {
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "round {round}: an exited thread's objects wait for the lazy delay: {} of {} \
                 dropped; {:#?}",
                drops.load(Ordering::Relaxed),
                3 * round,
                rcu.stats()
            );
            thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Runs its closure when dropped.
struct OnDrop(Option<Box<dyn FnOnce() + Send>>);
rcu_reclaim::reclaim_size!(OnDrop {});

impl Drop for OnDrop {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}

/// `barrier` runs every callback queued before it even when other threads'
/// hand-offs assign grace periods on the same shards meanwhile (each may
/// merge newer entries into the segment holding the barrier's and raise its
/// grace period past the one the barrier waited for). Two threads retire
/// in a loop on their own CPUs while this one queues a callback on every
/// CPU and calls `barrier`, for about two seconds.
#[test]
fn barrier_runs_callbacks_whose_grace_period_a_concurrent_hand_off_raised() {
    use rcu_reclaim::topology::{override_current_cpu, Topology};
    let rcu = Rcu::new(
        Config::new()
            .topology(Topology::synthetic(2, 2))
            .qhimark(2000),
    )
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let producers: Vec<_> = (0..2)
        .map(|t| {
            let (rcu, stop) = (rcu.clone(), stop.clone());
            thread::spawn(move || {
                override_current_cpu(Some(t));
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    rcu.defer_drop(Box::new(vec![i; 4]));
                    if i % 50 == 0 {
                        rcu.call(|| {});
                    }
                }
            })
        })
        .collect();
    let _stop = StopOnDrop(&stop);
    let start = Instant::now();
    let (mut rounds, mut missed) = (0, 0);
    while start.elapsed() < Duration::from_secs(2) {
        rounds += 1;
        let ran = Arc::new(AtomicUsize::new(0));
        for cpu in 0..4 {
            override_current_cpu(Some(cpu));
            let r = ran.clone();
            if cpu % 2 == 0 {
                rcu.call(move || {
                    r.fetch_add(1, Ordering::Relaxed);
                });
            } else {
                rcu.call_hurry(move || {
                    r.fetch_add(1, Ordering::Relaxed);
                });
            }
        }
        override_current_cpu(None);
        rcu.barrier();
        if ran.load(Ordering::Relaxed) < 4 {
            missed += 1;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for p in producers {
        p.join().unwrap();
    }
    assert_eq!(missed, 0, "{missed} of {rounds} barriers returned early");
}

/// Retiring threads start grace periods themselves, but at most one per
/// `RETIRER_GP_MIN_INTERVAL` (100 µs) where each costs a dear `membarrier`
/// (a memb domain whose readers do not fence: here, never, as adaptive
/// fences are off; its policy weighs each `membarrier` at 5 µs, whatever
/// this machine's take, as cheaper ones space them closer). A thread
/// whose every retire is due (`pace_bytes(1)`) would otherwise start one
/// every other retire.
#[test]
fn retiring_threads_pace_the_grace_periods_they_start() {
    let rcu = Rcu::new(
        Config::new()
            .pace_bytes(1)
            .adaptive_reader_fences(false)
            .simulate_membarrier_cost(Duration::from_micros(5)),
    )
    .unwrap();
    let _reader = common::IdleReader::new(&rcu);
    let start = Instant::now();
    let mut retires = 0u64;
    while start.elapsed() < Duration::from_millis(200) {
        rcu.defer_drop(Box::new([retires; 8]));
        retires += 1;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let s = rcu.stats();
    // Completed by the retiring thread: at most one per start, 10,000 a
    // second (with room for timing; unpaced it is about one per two
    // retires, tens of thousands here).
    let bound = (elapsed * 10_000.0 * 1.2) as u64 + 10;
    assert!(
        s.retirer_gps <= bound,
        "{} grace periods by the retiring thread in {elapsed:.3} s for {retires} retires \
         (bound {bound}): {s:?}",
        s.retirer_gps
    );
    assert!(s.gp_completed > 0, "{s:?}");
    rcu.barrier();
}

/// Where a grace period starts with a fence, not a `membarrier` (an mb
/// domain here; a memb one whose readers fence, whose switch the unit
/// tests of `reader_fences.rs` cover), retiring threads start them up to
/// every 10 µs (`RETIRER_GP_MIN_INTERVAL_FENCED`), not every 100: the
/// spacing saved `membarrier`s, and without them it only kept garbage
/// waiting. Each retire here hands off a page (`pace_bytes(1)`) 30 µs
/// after the last, so each can complete the grace period the one before
/// started and start the next; spaced by 100 µs, about one in three
/// could (102 of 400 before).
#[test]
fn retiring_threads_start_fenced_grace_periods_more_often() {
    let rcu = Rcu::new(Config::new().flavor(rcu_reclaim::Flavor::Mb).pace_bytes(1)).unwrap();
    let _reader = common::IdleReader::new(&rcu);
    rcu.barrier();
    const RETIRES: u64 = 400;
    let by_retirer = common::retirer_gps_over(&rcu, RETIRES, Duration::from_micros(30), |i| {
        rcu.defer_drop(Box::new([i; 8]))
    });
    assert!(
        by_retirer >= RETIRES / 2,
        "the retiring thread completed {by_retirer} grace periods in {RETIRES} retires 30 µs \
         apart: {:?}",
        rcu.stats()
    );
    rcu.barrier();
}

/// Where a grace period's start costs a fence, a page holding a 32nd of
/// the pace goes early after a quiet spell of 15 µs, not 150 µs: the
/// spacing saves `membarrier`s, which such a start does not issue. Here a
/// thread retires 512-byte values 5 µs apart, so each look (every eight
/// retires, some 40 µs) finds 4 KiB on its page. A look that finds no
/// grace period in progress hands the page off early and starts one; the
/// next finds that one in progress (the thread completes it only after
/// the look), so one look in two goes early (199 of 400). With 150 µs, one
/// in four did (101).
#[test]
fn pages_go_early_after_a_short_quiet_spell_where_grace_periods_start_with_a_fence() {
    let rcu = Rcu::new(Config::new().flavor(rcu_reclaim::Flavor::Mb)).unwrap();
    let _reader = common::IdleReader::new(&rcu);
    rcu.barrier();
    const LOOKS: u64 = 400;
    let by_retirer = common::retirer_gps_over(&rcu, LOOKS * 8, Duration::from_micros(5), |i| {
        rcu.defer_drop(Box::new(vec![i as u8; 512]))
    });
    assert!(
        by_retirer >= LOOKS * 3 / 8,
        "the retiring thread completed {by_retirer} grace periods in {LOOKS} looks at its \
         page about 40 µs apart: {:?}",
        rcu.stats()
    );
    rcu.barrier();
}

/// Where a `membarrier` is cheap (no other CPU runs one of the process's
/// threads), a thread retiring fast spaces the grace periods it starts
/// by 40 times a `membarrier`'s cost (40 µs at 1 µs), not the fixed
/// 100–150 µs that dear ones get: one thread's garbage then peaks at
/// about half. Each domain's policy weighs its
/// `membarrier`s at a set cost, and its readers never fence, so only that
/// cost differs.
#[test]
fn a_thread_retiring_fast_starts_grace_periods_sooner_where_a_membarrier_is_cheap() {
    let gps_at = |cost_us: u64| -> Option<u64> {
        let config = Config::new()
            .flavor(rcu_reclaim::Flavor::Memb)
            .adaptive_reader_fences(false)
            .simulate_membarrier_cost(Duration::from_micros(cost_us));
        let rcu = match Rcu::new(config) {
            Ok(rcu) => rcu,
            Err(e) => {
                eprintln!("skipped: no memb flavor here ({e})");
                return None;
            }
        };
        let _reader = common::IdleReader::new(&rcu);
        rcu.barrier();
        // 4 KiB values 1 µs apart: half the pace (32 KiB) in about 10 µs,
        // or in a few scheduler ticks' time if the thread is preempted,
        // so the spells, not the bytes, set the pace.
        let gps = common::retirer_gps_over(&rcu, 12_000, Duration::from_micros(1), |i| {
            rcu.defer_drop(Box::new([i as u8; 4096]))
        });
        rcu.barrier();
        Some(gps)
    };
    let Some(cheap) = gps_at(1) else { return };
    let Some(dear) = gps_at(5) else { return };
    assert!(
        cheap * 2 >= dear * 3,
        "12,000 retires started {cheap} grace periods with 1 µs membarriers and {dear} \
         with 5 µs ones"
    );
}

/// Booked sizes are the caller's claim: `usize::MAX` for each of a page's
/// worth of deferred drops and callbacks overflowed the page's and the
/// shard's sums (a panic inside the bulk-page push in a debug build, after
/// which `barrier` and the domain's drop waited for ever). Each object now
/// books at most `MAX_BOOKED_BYTES` (1 TiB).
#[test]
fn claims_of_usize_max_bytes_overflow_no_sum() {
    let rcu = Rcu::new(Config::new()).unwrap();
    for _ in 0..600 {
        rcu.defer_drop_sized(Box::new(7u64), usize::MAX);
        rcu.call_sized(|| {}, usize::MAX);
    }
    assert!(rcu.pending_bytes() >= 1 << 40);
    rcu.barrier();
    assert_eq!((rcu.pending(), rcu.pending_bytes()), (0, 0));
    drop(rcu);
}

#[test]
fn a_thread_queueing_callbacks_faster_than_the_worker_runs_them_waits_for_it() {
    // One shard and one worker, whose callbacks each take 20 µs: a thread
    // queueing them as fast as it can outruns it, as threads queueing
    // closures that own memory outran the worker. A caller then waits for
    // the worker (bounded: 2 ms per call) instead of growing the backlog.
    let rcu = Rcu::new(Config::new().topology(Topology::synthetic(1, 1))).unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    let mut queued = 0;
    let mut longest = Duration::ZERO;
    let start = Instant::now();
    while rcu.stats().producer_throttles == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no caller waited with {queued} callbacks queued behind a slow worker"
        );
        let r = ran.clone();
        let t = Instant::now();
        rcu.call_hurry(move || {
            // Busy, not asleep: a worker that makes progress, one callback
            // at a time (one stuck on a single callback is not waited for).
            let t = Instant::now();
            while t.elapsed() < Duration::from_micros(20) {
                std::hint::spin_loop();
            }
            r.fetch_add(1, Ordering::Relaxed);
        });
        longest = longest.max(t.elapsed());
        queued += 1;
    }
    assert!(queued > 4_000, "waited after only {queued} callbacks");
    // A real wait, not a glance: the caller gives the worker its CPU until
    // the backlog falls back (at most 2 ms). It ends sooner when the worker
    // catches up sooner: 282 µs once in a full suite run, where the other
    // tests' threads left the worker more CPU than usual.
    assert!(
        longest >= Duration::from_micros(100),
        "the wait lasted {longest:?}"
    );
    rcu.barrier();
    assert_eq!(ran.load(Ordering::Relaxed), queued, "every callback ran");
}

#[test]
fn a_caller_does_not_wait_for_a_worker_stuck_in_one_callback() {
    // The worker blocks in one callback (as on a lock the caller holds):
    // callbacks queued after it become ready and cannot run. A caller over
    // the throttle's mark does not wait for it (once the worker has spent
    // 5 ms on that callback): it could wait only its bound, 2 ms per call.
    let rcu = Rcu::new(Config::new().topology(Topology::synthetic(1, 1))).unwrap();
    let (release, held) = std::sync::mpsc::channel::<()>();
    let holding = Arc::new(AtomicBool::new(false));
    let h = holding.clone();
    rcu.call_hurry(move || {
        h.store(true, Ordering::SeqCst);
        let _ = held.recv();
    });
    let t = Instant::now();
    while !holding.load(Ordering::SeqCst) {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the callback never ran"
        );
        thread::sleep(Duration::from_millis(1));
    }
    thread::sleep(Duration::from_millis(20));
    let ran = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    for _ in 0..20_000 {
        let r = ran.clone();
        rcu.call_hurry(move || {
            r.fetch_add(1, Ordering::Relaxed);
        });
    }
    let took = start.elapsed();
    // Once past the mark, each of some 15,000 calls would have waited
    // 2 ms: 30 s.
    assert!(
        took < Duration::from_secs(10),
        "20,000 calls behind a stuck worker took {took:?}"
    );
    release.send(()).unwrap();
    rcu.barrier();
    assert_eq!(ran.load(Ordering::Relaxed), 20_000, "every callback ran");
}
