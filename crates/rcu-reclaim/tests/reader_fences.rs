//! Adaptive reader fences: a memb domain whose grace periods come often
//! switches its readers to fences and its grace periods off `membarrier`,
//! and back when they are rare; readers stay protected across the switches.

mod common;
use common::poison::{Drops, Val};
use common::{IdleReader, StopOnDrop};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rcu_reclaim::{Config, Flavor, Rcu, RcuCell};

/// A memb domain, or `None` (saying why) where the kernel has no
/// `membarrier`. Its policy weighs each `membarrier` as 50 µs, whatever
/// this machine's take: back-to-back grace periods then switch to fences,
/// a few a second back.
fn memb(config: Config) -> Option<Rcu> {
    let config = config.simulate_membarrier_cost(Duration::from_micros(50));
    match Rcu::new(config.flavor(Flavor::Memb)) {
        Ok(rcu) => Some(rcu),
        Err(e) => {
            eprintln!("skipped: no memb flavor here ({e})");
            None
        }
    }
}

/// Runs grace periods back to back for `d` (real ones while another
/// thread holds a slot: an [`IdleReader`]; this thread's own slot holds up
/// none of its grace periods).
fn burst(rcu: &Rcu, d: Duration) {
    let end = Instant::now() + d;
    while Instant::now() < end {
        rcu.synchronize();
    }
}

/// A few grace periods, `gap` apart.
fn trickle(rcu: &Rcu, n: usize, gap: Duration) {
    for _ in 0..n {
        thread::sleep(gap);
        rcu.synchronize();
    }
}

#[test]
fn frequent_grace_periods_switch_readers_to_fences_and_rare_ones_back() {
    let Some(rcu) = memb(Config::new()) else {
        return;
    };
    let _reader = IdleReader::new(&rcu);
    assert!(
        !rcu.stats().reader_fences,
        "a new memb domain starts unfenced"
    );
    burst(&rcu, Duration::from_millis(150));
    let s = rcu.stats();
    assert!(s.reader_fences, "{s:#?}");
    assert!(s.reader_fence_switches >= 1, "{s:#?}");
    assert!(s.fenced_gps > 0, "{s:#?}");
    // Grace periods that fenced issued no membarrier.
    let gps = s.normal_gps + s.expedited_gps;
    assert!(
        s.membarriers + s.fenced_gps <= gps + s.writer_parks + 64,
        "{s:#?}"
    );
    // Rare grace periods: back to membarrier once a window has seen them.
    trickle(&rcu, 4, Duration::from_millis(30));
    let s = rcu.stats();
    assert!(!s.reader_fences, "{s:#?}");
    let before = s.membarriers;
    rcu.synchronize();
    assert!(rcu.stats().membarriers > before, "membarrier again");
}

#[test]
fn readers_stay_protected_while_the_mode_switches() {
    let Some(rcu) = memb(Config::new()) else {
        return;
    };
    let drops = Drops::new(2_000_000);
    let cell = Arc::new(RcuCell::new_in(&rcu, Some(Box::new(Val::new(&drops, 7)))));
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (rcu, cell, stop) = (rcu.clone(), cell.clone(), stop.clone());
            thread::spawn(move || {
                let mut reads = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let g = rcu.read_lock();
                    if let Some(v) = cell.load(&g) {
                        v.check(7);
                    }
                    drop(g);
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    let writer = {
        let (rcu, cell, drops) = (rcu.clone(), cell.clone(), drops.clone());
        thread::spawn(move || {
            // Six rounds, or more until the mode has switched on, off and
            // on and a fenced grace period has run: on a slow machine (an
            // AddressSanitizer build on two loaded cores) six rounds saw
            // the switches but no fenced grace period.
            for round in 0..60 {
                let s = rcu.stats();
                if round >= 6 && s.reader_fence_switches >= 2 && s.fenced_gps > 0 {
                    break;
                }
                // Busy: stores, each waited for, grace periods back to back.
                let end = Instant::now() + Duration::from_millis(80);
                while Instant::now() < end {
                    cell.store(Box::new(Val::new(&drops, 7)));
                    rcu.synchronize();
                }
                // Quiet: a few stores, far apart.
                for _ in 0..4 {
                    thread::sleep(Duration::from_millis(25));
                    cell.store(Box::new(Val::new(&drops, 7)));
                    rcu.synchronize();
                }
            }
        })
    };
    let _stop = StopOnDrop(&stop);
    writer.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        assert!(r.join().unwrap() > 0);
    }
    let s = rcu.stats();
    assert!(
        s.reader_fence_switches >= 2,
        "switched on, off and on: {s:#?}"
    );
    assert!(s.fenced_gps > 0, "{s:#?}");
    drop(cell);
    rcu.barrier();
    drops.assert_each_dropped_once();
}

#[test]
fn adaptive_reader_fences_off_keeps_membarrier() {
    let Some(rcu) = memb(Config::new().adaptive_reader_fences(false)) else {
        return;
    };
    let _reader = IdleReader::new(&rcu);
    burst(&rcu, Duration::from_millis(100));
    let s = rcu.stats();
    assert!(!s.reader_fences, "{s:#?}");
    assert_eq!((s.fenced_gps, s.reader_fence_switches), (0, 0), "{s:#?}");
    assert!(s.membarriers >= s.normal_gps, "{s:#?}");
}

#[test]
fn mb_and_qsbr_readers_always_fence() {
    for flavor in [Flavor::Mb, Flavor::Qsbr] {
        let rcu = Rcu::new(Config::new().flavor(flavor)).unwrap();
        assert!(rcu.stats().reader_fences, "{flavor}");
        burst(&rcu, Duration::from_millis(30));
        let s = rcu.stats();
        assert!(s.reader_fences, "{flavor}");
        assert_eq!(
            (s.fenced_gps, s.reader_fence_switches, s.membarriers),
            (0, 0, 0)
        );
    }
}

/// A foreign grace-period word published while a grace period that started
/// with a fence is in progress (waiting, without `gp_lock`, for a reader):
/// the domain leaves fence mode with a `membarrier` (issued before the
/// flag is cleared: `GracePeriods::publish_foreign_word`, and the loom model
/// in tests/loom_fence_protocol.rs), and no later grace period fences.
#[test]
fn a_foreign_word_published_mid_fenced_grace_period_leaves_fence_mode() {
    use std::sync::atomic::AtomicUsize;
    use std::sync::mpsc;
    static WORD: AtomicUsize = AtomicUsize::new(1);
    let Some(rcu) = memb(Config::new()) else {
        return;
    };
    let _reader = IdleReader::new(&rcu);
    burst(&rcu, Duration::from_millis(150));
    assert!(rcu.stats().reader_fences, "{:#?}", rcu.stats());
    // One reader holds the next grace period up; another's sections wake
    // it from its park, so that it then waits without `gp_lock`.
    let (held, release) = (mpsc::channel(), mpsc::channel::<()>());
    let holder = {
        let rcu = rcu.clone();
        let (tx, rx) = (held.0, release.1);
        thread::spawn(move || {
            let g = rcu.read_lock();
            tx.send(()).unwrap();
            rx.recv().unwrap();
            drop(g);
        })
    };
    held.1.recv().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let waker = {
        let (rcu, stop) = (rcu.clone(), stop.clone());
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                drop(rcu.read_lock());
                thread::sleep(Duration::from_micros(200));
            }
        })
    };
    let _stop = StopOnDrop(&stop);
    let fenced = rcu.stats().fenced_gps;
    let cookie = rcu.start_poll();
    let t0 = Instant::now();
    while !rcu.stats().gp_in_progress {
        assert!(t0.elapsed() < Duration::from_secs(10), "never started");
        thread::sleep(Duration::from_millis(1));
    }
    let s = rcu.stats();
    let started_fenced = s.fenced_gps > fenced;
    // SAFETY: only the domain writes WORD.
    unsafe { rcu.publish_foreign_gp_word(&WORD) };
    let after = rcu.stats();
    release.0.send(()).unwrap();
    holder.join().unwrap();
    while !rcu.poll(&cookie) {
        thread::sleep(Duration::from_millis(1));
    }
    stop.store(true, Ordering::Relaxed);
    waker.join().unwrap();
    assert!(!after.reader_fences, "{after:#?}");
    if started_fenced {
        assert!(after.membarriers > s.membarriers, "{after:#?}");
    } else {
        eprintln!("the grace period did not start fenced (a slow machine): not checked");
    }
    let before = rcu.stats();
    burst(&rcu, Duration::from_millis(100));
    let s = rcu.stats();
    assert!(!s.reader_fences, "{s:#?}");
    assert_eq!(s.fenced_gps, before.fenced_gps, "{s:#?}");
    assert!(s.membarriers > before.membarriers, "{s:#?}");
}
