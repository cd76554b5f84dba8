//! A thread that both reads and retires while no other thread reads: the
//! grace periods it starts outside its sections complete at once, with a
//! fence instead of a `membarrier` and without the retiring threads' pace,
//! since its own later sections follow its unlinks in program order; one
//! it starts inside a section still waits for that section.

mod common;
use common::poison::{Drops, Val};
use common::IdleReader;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rcu_reclaim::{Config, Flavor, Rcu, RcuCell};

/// A memb domain whose readers never fence (so every grace period a
/// reader on another thread could hold up starts with a `membarrier`),
/// whose pages go at every retire; `None` where `membarrier` is missing.
fn memb_domain() -> Option<Rcu> {
    match Rcu::new(
        Config::new()
            .flavor(Flavor::Memb)
            .adaptive_reader_fences(false)
            .pace_bytes(1),
    ) {
        Ok(rcu) => Some(rcu),
        Err(e) => {
            eprintln!("skipped: no memb flavor here ({e})");
            None
        }
    }
}

/// Retires `n` boxed values on this thread, after one read-side section
/// (so the thread is a registered reader); returns the `membarrier`s
/// issued, the grace periods the retires completed meanwhile and the
/// microseconds they took.
fn retire_after_reading(rcu: &Rcu, n: u64) -> (u64, u64, u64) {
    drop(rcu.read_lock());
    rcu.barrier();
    let before = rcu.stats();
    let start = std::time::Instant::now();
    let mut most_pending = 0;
    for i in 0..n {
        rcu.defer_drop(Box::new([i; 64]));
        most_pending = most_pending.max(rcu.pending());
    }
    let us = start.elapsed().as_micros() as u64;
    let after = rcu.stats();
    eprintln!("most objects pending after a retire: {most_pending}");
    (
        after.membarriers - before.membarriers,
        after.retirer_gps - before.retirer_gps,
        us,
    )
}

#[test]
fn a_lone_reader_completes_the_grace_periods_of_its_retires_without_a_membarrier() {
    let Some(rcu) = memb_domain() else { return };
    let (membarriers, gps, _) = retire_after_reading(&rcu, 2_000);
    // The grace-period thread, which is not the reader, may start one with
    // a `membarrier` now and then (its lazy look at a slow run); before,
    // every grace period the retires started took one.
    assert!(
        membarriers * 20 <= gps,
        "{membarriers} membarriers for {gps} grace periods: {:?}",
        rcu.stats()
    );
    // Without the pace: about one per page handed off (every retire here).
    assert!(gps >= 1_000, "{gps} grace periods for 2,000 retires");
    rcu.barrier();
    assert_eq!(rcu.pending(), 0);
}

#[test]
fn another_registered_reader_brings_back_the_membarrier_and_the_pace() {
    let Some(rcu) = memb_domain() else { return };
    let _other = IdleReader::new(&rcu);
    let (membarriers, gps, us) = retire_after_reading(&rcu, 2_000);
    assert!(membarriers > 0, "{:?}", rcu.stats());
    // Paced: a start at most every 100 µs, or 40 times a `membarrier`'s
    // recent cost where that is less (a `membarrier` takes a microsecond
    // or more), not one per retire as for a lone reader.
    assert!(
        gps <= us / 40 + 10 && gps < 2_000,
        "{gps} grace periods for 2,000 retires in {us} us"
    );
}

#[test]
fn a_lone_reader_synchronizes_without_a_membarrier() {
    let Some(rcu) = memb_domain() else { return };
    drop(rcu.read_lock());
    let before = rcu.stats().membarriers;
    for _ in 0..100 {
        rcu.synchronize();
    }
    // At most a few from the grace-period thread (see above); each call
    // took one before.
    assert!(rcu.stats().membarriers - before < 10, "{:?}", rcu.stats());
}

/// What the thread reads inside its section stays alive while the section
/// lasts, however many grace periods its retires inside that section and
/// outside it start, and is dropped (once) after it.
#[test]
fn a_lone_readers_retires_inside_its_section_wait_for_that_section() {
    for flavor in [Flavor::Memb, Flavor::Mb] {
        let Ok(rcu) = Rcu::new(Config::new().flavor(flavor).pace_bytes(1)) else {
            continue;
        };
        let drops = Drops::new(16);
        let cell = RcuCell::new_in(&rcu, Some(Box::new(Val::new(&drops, 1))));
        let guard = rcu.read_lock();
        let held = cell.load(&guard).expect("stored above");
        // Unlinked and retired inside the section that holds it.
        cell.store(Box::new(Val::new(&drops, 2)));
        let dropped = Arc::new(AtomicUsize::new(0));
        for i in 0..5_000u64 {
            let d = dropped.clone();
            rcu.call(move || {
                d.fetch_add(1, Ordering::Relaxed);
            });
            rcu.defer_drop(Box::new([i; 8]));
            held.check(1);
        }
        assert_eq!(drops.dropped(0), 0, "{flavor:?}: freed under its reader");
        assert_eq!(dropped.load(Ordering::Relaxed), 0, "{flavor:?}");
        drop(guard);
        // Outside the section: the next retires complete grace periods.
        for i in 0..100u64 {
            rcu.defer_drop(Box::new([i; 8]));
        }
        rcu.barrier();
        assert_eq!(drops.dropped(0), 1, "{flavor:?}");
        assert_eq!(dropped.load(Ordering::Relaxed), 5_000, "{flavor:?}");
        drop(cell);
        rcu.barrier();
        drops.assert_each_dropped_once();
    }
}

/// Queues a callback, then retires 5,000 values (a grace period asked for
/// at each); returns whether the callback has run.
fn call_then_retire(rcu: &Rcu) -> Arc<AtomicUsize> {
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    rcu.call(move || {
        r.fetch_add(1, Ordering::Relaxed);
    });
    for i in 0..5_000u64 {
        rcu.defer_drop(Box::new([i; 8]));
    }
    ran
}

/// A raw section (`read_lock_raw`, no guard) on the lone reader holds up
/// the grace periods its retires start, as a guard's does.
#[test]
fn a_lone_readers_raw_section_holds_up_its_retires() {
    let rcu = Rcu::new(Config::new().pace_bytes(1)).expect("the default domain");
    rcu.read_lock_raw();
    let ran = call_then_retire(&rcu);
    let before_unlock = ran.load(Ordering::Relaxed);
    assert!(rcu.read_unlock_raw());
    assert_eq!(
        before_unlock, 0,
        "a callback ran inside its caller's section"
    );
    rcu.barrier();
    assert_eq!(ran.load(Ordering::Relaxed), 1);
}

/// An online QSBR thread is a reader between its quiescent states, guard
/// or none: the grace periods its own retires start wait for its next
/// report.
#[test]
fn a_lone_online_qsbr_thread_holds_up_its_retires_until_it_reports() {
    let rcu = Rcu::new(Config::new().flavor(Flavor::Qsbr).pace_bytes(1)).expect("qsbr");
    let mut me = rcu.register_qsbr_thread();
    let ran = call_then_retire(&rcu);
    assert_eq!(
        ran.load(Ordering::Relaxed),
        0,
        "ran before its caller reported"
    );
    me.quiescent_state();
    me.offline_while(|| rcu.barrier());
    assert_eq!(ran.load(Ordering::Relaxed), 1);
}
