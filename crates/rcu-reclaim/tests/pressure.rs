//! Memory-pressure mode and `run_callbacks(nodemask, priority)`.

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use rcu_reclaim::pressure::{NodeMask, RunAction};
use rcu_reclaim::topology::{override_current_cpu, Topology};
use rcu_reclaim::{Config, Rcu};

fn two_nodes_lazy() -> Rcu {
    // Nothing runs in the background unless pressure or reclaim asks.
    Rcu::new(
        Config::new()
            .topology(Topology::synthetic(2, 1))
            .on_demand(),
    )
    .unwrap()
}

#[test]
fn pressure_is_counted_per_node_across_threads_with_hysteresis() {
    let rcu = Rcu::new(Config::new().topology(Topology::synthetic(2, 1))).unwrap();
    assert!(!rcu.in_fast_mode());
    let start = Arc::new(Barrier::new(5));
    let release = Arc::new(Barrier::new(5));
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let (rcu, start, release) = (rcu.clone(), start.clone(), release.clone());
            thread::spawn(move || {
                let a = rcu.pressure_start(i % 2);
                let b = rcu.pressure_start(i % 2); // nested on one thread
                start.wait();
                release.wait();
                drop(b);
                a.end();
            })
        })
        .collect();
    start.wait();
    assert_eq!(rcu.pressure(), 8);
    assert_eq!(rcu.pressure_on(0), 4);
    assert_eq!(rcu.pressure_on(1), 4);
    assert!(rcu.in_fast_mode());
    // A process-wide signal counts on every node.
    let all = rcu.pressure_start_all();
    assert_eq!(rcu.pressure_on(1), 5);
    release.wait();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(rcu.pressure(), 1);
    assert!(rcu.in_fast_mode());
    drop(all);
    assert_eq!(rcu.pressure(), 0);
    assert_eq!(rcu.pressure_on(0), 0);
    // Hysteresis: still fast until two grace periods have completed.
    assert!(rcu.in_fast_mode(), "fast mode must outlast the last end");
    rcu.synchronize();
    assert!(rcu.in_fast_mode(), "one grace period is not enough");
    rcu.synchronize();
    assert!(!rcu.in_fast_mode());
    let s = rcu.stats();
    assert_eq!((s.fast_mode_entries, s.fast_mode_exits), (1, 1), "{s:?}");
    assert!(!s.fast_mode);
}

/// A domain whose lazy pace holds a 100 MB backlog (100 x 1 MiB deferred
/// drops) for a minute: a delay no test run outlasts, and no pace by bytes
/// (which would free it at once): the kernel's lazy pace, which pressure
/// cancels.
fn lazy_backlog() -> Rcu {
    let rcu = Rcu::new(
        Config::new()
            .lazy_delay(Duration::from_secs(60))
            .pace_bytes(usize::MAX),
    )
    .unwrap();
    for _ in 0..100 {
        rcu.defer_drop(Box::new(vec![1u8; 1 << 20]));
    }
    assert!(rcu.pending_bytes() >= 100 << 20);
    rcu
}

/// Pressure cancels the lazy delay: the backlog that the lazy pace still
/// holds is freed with no barrier, while the delay has most of its minute
/// to run. Behaviour, not speed: the lazy domain beside it still holds
/// every byte afterwards.
#[test]
fn pressure_frees_a_100mb_backlog_the_lazy_pace_holds() {
    let lazy = lazy_backlog();
    let pressed = lazy_backlog();
    let start = Instant::now();
    let _guard = pressed.pressure_start_all();
    while pressed.pending_bytes() > 0 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the backlog was not freed under pressure: {} bytes left",
            pressed.pending_bytes()
        );
        thread::sleep(Duration::from_micros(200));
    }
    println!(
        "100 MB backlog freed under pressure in {:?}",
        start.elapsed()
    );
    assert!(
        lazy.pending_bytes() >= 100 << 20,
        "the lazy pace freed its backlog early: {} bytes left",
        lazy.pending_bytes()
    );
}

#[test]
fn pressure_with_little_to_free_does_not_expedite() {
    let rcu = Rcu::new(Config::new()).unwrap();
    rcu.call_sized(|| {}, 10);
    let g = rcu.pressure_start(0);
    let t = Instant::now();
    while rcu.pending() > 0 {
        assert!(t.elapsed() < Duration::from_secs(10));
        thread::sleep(Duration::from_millis(1));
    }
    drop(g);
    // The callback ran promptly (no lazy delay) but with normal grace periods.
    assert_eq!(rcu.stats().expedited_gps, 0);
}

#[test]
fn run_callbacks_acts_by_priority_on_the_named_nodes() {
    let rcu = two_nodes_lazy();
    const MIB: usize = 1 << 20;
    for cpu in 0..2 {
        override_current_cpu(Some(cpu));
        for _ in 0..10 {
            rcu.call_sized(|| {}, MIB);
        }
    }
    override_current_cpu(None);
    let node0 = NodeMask::node(0);
    assert_eq!(rcu.pending_on(&node0), (10, 10 * MIB));

    // Gentle: only what is already ready, and nothing is.
    let r = rcu.run_callbacks(&node0, 12);
    assert_eq!(r.action, RunAction::InvokedReady);
    assert_eq!((r.invoked, r.bytes_freed), (0, 0));
    assert_eq!(r.pending_before, (10, 10 * MIB));

    // Medium with 10 MiB pending (over 64 KiB << 3): expedite node 0 only.
    let r = rcu.run_callbacks(&node0, 3);
    assert_eq!(r.action, RunAction::Expedited);
    assert_eq!((r.invoked, r.bytes_freed), (10, 10 * MIB));
    assert_eq!(rcu.pending_on(&node0), (0, 0));
    assert_eq!(rcu.pending_on(&NodeMask::node(1)), (10, 10 * MIB));

    // Medium priority but too little for it: invoke what is ready only.
    override_current_cpu(Some(0));
    rcu.call_sized(|| {}, 1000);
    override_current_cpu(None);
    let r = rcu.run_callbacks(&node0, 6);
    assert_eq!(r.action, RunAction::InvokedReady);
    assert_eq!(r.invoked, 0);

    // Desperate: a barrier on node 1 drains it.
    let r = rcu.run_callbacks(&NodeMask::node(1), 0);
    assert_eq!(r.action, RunAction::Barrier);
    assert_eq!((r.invoked, r.bytes_freed), (10, 10 * MIB));
    assert_eq!(rcu.pending_on(&NodeMask::node(1)), (0, 0));

    // Nothing pending on node 1 now.
    assert_eq!(
        rcu.run_callbacks(&NodeMask::node(1), 0).action,
        RunAction::Nothing
    );
    rcu.barrier();
}

#[test]
fn run_callbacks_at_priority_zero_frees_threads_buffered_drops() {
    let rcu = two_nodes_lazy();
    let bytes = 4096;
    for _ in 0..100 {
        rcu.defer_drop_sized(Box::new([0u8; 64]), bytes);
    }
    let r = rcu.run_callbacks(&NodeMask::all(), 0);
    assert_eq!(r.action, RunAction::Barrier);
    assert_eq!((r.invoked, r.bytes_freed), (100, 100 * bytes));
    assert_eq!(rcu.pending(), 0);
}

#[test]
fn run_callbacks_inside_a_section_never_waits() {
    let rcu = two_nodes_lazy();
    rcu.call_sized(|| {}, 1 << 30);
    let g = rcu.read_lock();
    let r = rcu.run_callbacks(&NodeMask::all(), 0);
    assert_eq!(r.action, RunAction::InvokedReady);
    drop(g);
    rcu.barrier();
}

#[test]
fn callbacks_run_by_reclaim_cannot_allocate_pages() {
    let rcu = two_nodes_lazy();
    // A callback that defers a drop while reclaim runs it: fallback, no
    // page. While the caller waits for the grace period, another thread may
    // complete it and a worker (which may allocate) run the callback first:
    // then the report counts nothing and no fallback happened; try again.
    let mut ran_here = false;
    for _ in 0..50 {
        let r2 = rcu.clone();
        let before = rcu.stats().fallback_syncs;
        rcu.call_sized(move || r2.defer_drop(Box::new(1u32)), 1 << 20);
        let report = rcu.run_callbacks(&NodeMask::all(), 0);
        rcu.barrier();
        if report.invoked == 1 {
            assert_eq!(rcu.stats().fallback_syncs, before + 1);
            ran_here = true;
            break;
        }
    }
    assert!(
        ran_here,
        "a worker ran the callback every time: {:?}",
        rcu.stats()
    );
}

/// In the hysteresis after pressure (fast mode, but no node pressured) no
/// shard asks for a grace period, so the grace-period thread must leave the
/// threads' pages alone until `lazy_delay`. It used to take a thread's page
/// as soon as the page's first object woke it: a steal, with its
/// membarrier, per object or two, which halved the demo writer's rate.
#[test]
fn hysteresis_leaves_thread_pages_alone_until_the_lazy_delay() {
    // A pace of 64 KiB: the 2,000 8-byte objects below then never reach
    // it, nor a half page's early share (2 KiB), so only the steal this
    // test is about could ask for a grace period.
    let rcu = Rcu::new(
        Config::new()
            .lazy_delay(Duration::from_secs(60))
            .lazy_batch(1 << 20)
            .pace_bytes(64 << 10),
    )
    .unwrap();
    drop(rcu.pressure_start_all()); // fast for two more grace periods
    assert!(rcu.in_fast_mode());
    for i in 0..2000u64 {
        rcu.defer_drop(Box::new(i));
        if i % 8 == 0 {
            // Time for the grace-period thread to wake and look.
            thread::sleep(Duration::from_micros(200));
        }
    }
    let s = rcu.stats();
    assert!(s.fast_mode, "nothing asked for a grace period: {s:?}");
    assert_eq!(s.page_steals, 0, "{s:?}");
    rcu.barrier();
    assert_eq!(rcu.stats().pending, 0);
}
