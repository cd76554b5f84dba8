//! Read-side sections: nesting, registration, thread exit, independent domains.

mod common;
use common::{domains, IdleReader};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use rcu_reclaim::{Config, Flavor, Rcu, RcuCell};

#[test]
fn nesting_counts_and_only_the_outermost_unlock_ends_the_section() {
    for rcu in domains() {
        assert!(!rcu.in_read_section());
        let a = rcu.read_lock();
        let b = rcu.read_lock();
        let c = rcu.read_lock();
        drop(b); // out of order drops are fine: it is a count
        assert!(rcu.in_read_section());
        drop(a);
        assert!(rcu.in_read_section());
        drop(c);
        assert!(!rcu.in_read_section());
    }
}

/// A grace period must wait while any nesting level is held.
#[test]
fn nested_section_holds_grace_period_until_outermost_unlock() {
    for rcu in domains() {
        let (locked_tx, locked_rx) = mpsc::channel();
        let (step_tx, step_rx) = mpsc::channel::<()>();
        let r = rcu.clone();
        let reader = thread::spawn(move || {
            let outer = r.read_lock();
            let inner = r.read_lock();
            locked_tx.send(()).unwrap();
            step_rx.recv().unwrap();
            drop(inner); // still inside `outer`
            step_rx.recv().unwrap();
            drop(outer);
        });
        locked_rx.recv().unwrap();
        let done = Arc::new(AtomicBool::new(false));
        let (d, w) = (done.clone(), rcu.clone());
        let writer = thread::spawn(move || {
            w.synchronize();
            d.store(true, Ordering::SeqCst);
        });
        thread::sleep(Duration::from_millis(50));
        assert!(
            !done.load(Ordering::SeqCst),
            "GP ended while reader held two levels"
        );
        step_tx.send(()).unwrap();
        thread::sleep(Duration::from_millis(50));
        assert!(
            !done.load(Ordering::SeqCst),
            "GP ended while reader held the outer level"
        );
        step_tx.send(()).unwrap();
        writer.join().unwrap();
        reader.join().unwrap();
        assert!(done.load(Ordering::SeqCst));
    }
}

#[test]
fn threads_register_on_first_use_and_unregister_at_exit() {
    let rcu = Rcu::new(Config::new()).unwrap();
    assert_eq!(rcu.stats().registered_readers, 0);
    // Registered by its first section, outside it until dropped (joined).
    let idle = IdleReader::new(&rcu);
    assert_eq!(rcu.stats().registered_readers, 1);
    drop(idle);
    assert_eq!(rcu.stats().registered_readers, 0);
    // The freed slot is reused, not leaked: many short-lived threads leave one slot.
    for _ in 0..50 {
        let r = rcu.clone();
        thread::spawn(move || drop(r.read_lock())).join().unwrap();
    }
    assert_eq!(rcu.stats().registered_readers, 0);
}

/// A thread that exits inside raw sections (never unlocked) must not block
/// grace periods forever: no safe code holds a reference from them.
#[test]
#[cfg_attr(
    miri,
    ignore = "Miri cannot tell that a thread has exited (no tgkill, no /proc)"
)]
fn thread_exiting_inside_a_section_releases_grace_periods() {
    for rcu in domains() {
        let r = rcu.clone();
        thread::spawn(move || {
            r.read_lock_raw();
            r.read_lock_raw();
        })
        .join()
        .unwrap();
        let start = Instant::now();
        rcu.synchronize();
        assert!(start.elapsed() < Duration::from_secs(5));
    }
}

/// A thread that exits with a guard leaked holds grace periods up for good:
/// a reference read under the guard may have been sent to another thread
/// (tests/soundness.rs shows one).
#[test]
fn thread_exiting_with_a_leaked_guard_holds_grace_periods_up() {
    for rcu in domains() {
        let r = rcu.clone();
        thread::spawn(move || std::mem::forget(r.read_lock()))
            .join()
            .unwrap();
        assert!(
            common::grace_periods_held_up(&rcu, Duration::from_millis(300)),
            "a grace period ended a leaked guard's section"
        );
        assert_eq!(rcu.late_readers().len(), 1, "{:?}", rcu.late_readers());
        std::mem::forget(rcu); // dropping it would wait for good
    }
}

/// A writer parked on a reader that then exits (inside a raw section,
/// never unlocked) wakes up.
#[test]
#[cfg_attr(
    miri,
    ignore = "Miri cannot tell that a thread has exited (no tgkill, no /proc)"
)]
fn thread_exit_during_a_section_wakes_a_waiting_writer() {
    for rcu in domains() {
        let (tx, rx) = mpsc::channel();
        let r = rcu.clone();
        // Set just before the thread exits: the grace period must not end
        // before it (a lower bound on the time synchronize took instead
        // failed when this thread was descheduled between the reader's
        // send and the clock read).
        let exiting = Arc::new(AtomicBool::new(false));
        let e = exiting.clone();
        let reader = thread::spawn(move || {
            r.read_lock_raw();
            tx.send(()).unwrap();
            thread::sleep(Duration::from_millis(100));
            e.store(true, Ordering::SeqCst);
        });
        rx.recv().unwrap();
        rcu.synchronize(); // parks on the reader, woken by its exit
        assert!(
            exiting.load(Ordering::SeqCst),
            "synchronize returned while the reader's thread was inside its section"
        );
        reader.join().unwrap();
    }
}

/// A reader that panics inside its section unwinds its guard.
#[test]
fn panicking_reader_ends_its_section() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let r = rcu.clone();
    let res = thread::spawn(move || {
        let _g = r.read_lock();
        panic!("reader panics inside its section");
    })
    .join();
    assert!(res.is_err());
    rcu.synchronize();
}

#[test]
fn independent_domains_do_not_wait_for_each_other() {
    let a = Rcu::new(Config::new()).unwrap();
    let b = Rcu::new(Config::new()).unwrap();
    let guard_a = a.read_lock();
    // Inside a section of `a`, synchronizing `b` is legal and does not wait for it.
    b.synchronize();
    b.synchronize_expedited();
    assert!(a.in_read_section());
    assert!(!b.in_read_section());
    drop(guard_a);

    // A reader of `b` held on another thread does not delay `a`.
    let (tx, rx) = mpsc::channel();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let rb = b.clone();
    let t = thread::spawn(move || {
        let _g = rb.read_lock();
        tx.send(()).unwrap();
        stop_rx.recv().unwrap();
    });
    rx.recv().unwrap();
    let start = Instant::now();
    a.synchronize();
    // Held up by `b`'s reader, it would never return; the bound only
    // names a slow return, with room for a loaded machine.
    assert!(start.elapsed() < Duration::from_secs(10));
    stop_tx.send(()).unwrap();
    t.join().unwrap();
}

/// One thread alternating between domains keeps separate nesting per domain.
#[test]
fn sections_in_several_domains_on_one_thread() {
    let doms: Vec<Rcu> = (0..4).map(|_| Rcu::new(Config::new()).unwrap()).collect();
    let guards: Vec<_> = doms.iter().map(|d| d.read_lock()).collect();
    for d in &doms {
        assert!(d.in_read_section());
    }
    drop(guards);
    for d in &doms {
        assert!(!d.in_read_section());
        d.synchronize();
    }
}

/// Dropping a domain that threads have read in leaves those threads working.
#[test]
fn dropped_domain_does_not_disturb_threads_that_used_it() {
    for _ in 0..20 {
        let rcu = Rcu::new(Config::new()).unwrap();
        drop(rcu.read_lock());
        drop(rcu);
    }
    let rcu = Rcu::new(Config::new()).unwrap();
    drop(rcu.read_lock());
    rcu.synchronize();
}

#[test]
fn cell_of_a_domain_loads_under_that_domains_guard() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let cell = RcuCell::new_in(&rcu, Some(Box::new(41)));
    let g = rcu.read_lock();
    assert_eq!(cell.load(&g), Some(&41));
}

#[test]
fn flavor_is_reported_in_stats() {
    let rcu = Rcu::new(Config::new().flavor(Flavor::Mb)).unwrap();
    assert_eq!(rcu.stats().flavor, Flavor::Mb);
    let json = serde_json::to_value(rcu.stats()).unwrap();
    assert_eq!(json["flavor"], "mb");
    let auto = Rcu::new(Config::new()).unwrap();
    assert_eq!(auto.stats().flavor, auto.flavor());
}

#[test]
fn forcing_memb_without_membarrier_is_a_clear_error() {
    let err = Rcu::new(
        Config::new()
            .flavor(Flavor::Memb)
            .simulate_no_membarrier(true),
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("membarrier"), "{msg}");
    assert!(msg.contains("Flavor::Mb"), "{msg}");
    // Without forcing, the same machine falls back to mb.
    let rcu = Rcu::new(Config::new().simulate_no_membarrier(true)).unwrap();
    assert_eq!(rcu.flavor(), Flavor::Mb);
}

#[test]
fn zero_stall_timeout_is_rejected() {
    let err = Rcu::new(Config::new().stall_timeout(Duration::ZERO)).unwrap_err();
    assert!(err.to_string().contains("stall_timeout"));
}

/// `load_cloned` is arc-swap's `load_full`: an owned snapshot that outlives
/// any section, taken in one call on every flavor, nested in a section of
/// the domain, and on a registered QSBR thread.
#[test]
fn load_cloned_is_a_snapshot_that_outlives_the_section() {
    for flavor in [Flavor::Memb, Flavor::Mb, Flavor::Qsbr] {
        let rcu = match Rcu::new(Config::new().flavor(flavor)) {
            Ok(rcu) => rcu,
            Err(_) => continue, // memb refused by this kernel
        };
        let cell = RcuCell::new_in(&rcu, Box::new(Arc::new(vec![1u8; 64])));
        let snapshot = cell.load_cloned().unwrap();
        assert_eq!(Arc::strong_count(&snapshot), 2);
        assert!(!rcu.in_read_section(), "the section ended");
        cell.store(Box::new(Arc::new(vec![2u8; 64])));
        rcu.barrier();
        assert_eq!(Arc::strong_count(&snapshot), 1, "the old value was freed");
        assert_eq!(snapshot[0], 1);
        // Nested in a section of the domain.
        let guard = rcu.read_lock();
        assert_eq!(cell.load_cloned().unwrap()[0], 2);
        assert!(rcu.in_read_section());
        drop(guard);
        if flavor == Flavor::Qsbr {
            let mut me = rcu.register_qsbr_thread();
            assert_eq!(cell.load_cloned().unwrap()[0], 2);
            me.quiescent_state();
        }
        let empty: RcuCell<u32> = RcuCell::new_in(&rcu, None);
        assert_eq!(empty.load_cloned(), None);
    }
}
