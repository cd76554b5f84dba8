//! A thread that retires inside its own read-side section (or on an online
//! QSBR registration that reports no quiescent state) while memory is
//! short holds up the very grace periods that would free its garbage: it
//! is told so, once per domain, naming the thread and the fix, instead of
//! growing the garbage silently until the process is killed.

use std::thread;

use rcu_reclaim::{Config, Flavor, Rcu, RcuCell};

mod common;

const MIB: usize = 1 << 20;

/// A domain whose garbage is bounded as if 30 MiB were in use under a
/// 40 MiB mark: a retire over a few MiB of garbage would wait.
fn short_of_memory(flavor: Option<Flavor>) -> Rcu {
    let config = match flavor {
        Some(f) => Config::new().flavor(f),
        None => Config::new(),
    };
    let rcu = Rcu::new(config).unwrap();
    rcu.bound_garbage(40 * MIB, || Some(30 * MIB));
    rcu
}

/// Stores 20 MiB, waits past the warning's delay, then stores 4 more:
/// inside one section, the later stores find it owing for that long.
fn store_for_a_while(cell: &RcuCell<Vec<u8>>) {
    for i in 0..20u8 {
        cell.store(Box::new(vec![i; MIB]));
    }
    thread::sleep(std::time::Duration::from_millis(250));
    for i in 20..24u8 {
        cell.store(Box::new(vec![i; MIB]));
    }
}

#[test]
fn storing_inside_a_section_while_memory_is_short_says_the_section_holds_it_up() {
    let captured = common::Captured::default();
    let rcu = short_of_memory(None);
    let cell = RcuCell::new_in(&rcu, Box::new(vec![0u8; MIB]));
    let log = {
        let sink = captured.clone();
        let (rcu, cell) = (rcu.clone(), &cell);
        thread::scope(|s| {
            thread::Builder::new()
                .name("stores-in-its-section".into())
                .spawn_scoped(s, move || {
                    let _log = sink.on_this_thread();
                    let _g = rcu.read_lock();
                    store_for_a_while(cell);
                })
                .unwrap()
                .join()
                .unwrap();
        });
        captured.text()
    };
    assert!(log.contains("stores-in-its-section"), "{log}");
    assert!(log.contains("inside a read-side section"), "{log}");
    assert!(
        log.contains("drop the guard before RcuCell::store"),
        "{log}"
    );
    assert_eq!(log.matches("memory is short").count(), 1, "once: {log}");
    rcu.barrier();
    assert_eq!(rcu.pending_bytes(), 0);
}

#[test]
fn an_online_qsbr_thread_that_never_reports_is_told_to_call_quiescent_state() {
    let captured = common::Captured::default();
    let rcu = short_of_memory(Some(Flavor::Qsbr));
    let cell = RcuCell::new_in(&rcu, Box::new(vec![0u8; MIB]));
    thread::scope(|s| {
        let (rcu, cell, captured) = (&rcu, &cell, captured.clone());
        s.spawn(move || {
            let _log = captured.on_this_thread();
            let mut me = rcu.register_qsbr_thread();
            store_for_a_while(cell);
            me.quiescent_state();
        });
    });
    let log = captured.text();
    assert!(log.contains("online QSBR registration"), "{log}");
    // Says for how long, not "has not reported a quiescent state since in
    // domain N" (a sentence cut short).
    assert!(
        log.contains("has not reported a quiescent state to a grace period for 200 ms"),
        "{log}"
    );
    assert!(log.contains("call quiescent_state()"), "{log}");
    rcu.barrier();
}

#[test]
fn storing_outside_sections_says_nothing() {
    let captured = common::Captured::default();
    let _log = captured.on_this_thread();
    let rcu = short_of_memory(None);
    let cell = RcuCell::new_in(&rcu, Box::new(vec![0u8; MIB]));
    store_for_a_while(&cell);
    // Short sections that each store once, as a writer under pressure
    // does: each owes and soon pays, none for long.
    for i in 0..24u8 {
        let _g = rcu.read_lock();
        cell.store(Box::new(vec![i; MIB]));
        drop(_g);
        thread::sleep(std::time::Duration::from_millis(10));
    }
    rcu.barrier();
    let log = captured.text();
    assert!(!log.contains("memory is short"), "{log}");
}
