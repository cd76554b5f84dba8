//! Grace periods: waiting for readers, sharing, expedited and polled waits.

mod common;
use common::{domains, hold_reader, StopOnDrop};

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use rcu_reclaim::{Config, Cookie, Rcu};

#[test]
fn synchronize_waits_for_a_pre_existing_reader() {
    for rcu in domains() {
        for expedited in [false, true] {
            let (stop, reader) = hold_reader(&rcu);
            let done = Arc::new(AtomicBool::new(false));
            let (d, w) = (done.clone(), rcu.clone());
            let writer = thread::spawn(move || {
                if expedited {
                    w.synchronize_expedited();
                } else {
                    w.synchronize();
                }
                d.store(true, Ordering::SeqCst);
            });
            thread::sleep(Duration::from_millis(60));
            assert!(!done.load(Ordering::SeqCst), "expedited={expedited}");
            stop.send(()).unwrap();
            writer.join().unwrap();
            reader.join().unwrap();
            assert!(done.load(Ordering::SeqCst));
        }
    }
}

#[test]
fn synchronize_does_not_wait_for_readers_that_start_later() {
    let rcu = Rcu::new(Config::new()).unwrap();
    // A reader thread that keeps entering and leaving short sections.
    let stop = Arc::new(AtomicBool::new(false));
    let (s, r) = (stop.clone(), rcu.clone());
    let reader = thread::spawn(move || {
        while !s.load(Ordering::Relaxed) {
            let _g = r.read_lock();
            std::hint::spin_loop();
        }
    });
    let _stop = StopOnDrop(&stop);
    let start = Instant::now();
    for _ in 0..200 {
        rcu.synchronize();
    }
    stop.store(true, Ordering::Relaxed);
    reader.join().unwrap();
    assert!(start.elapsed() < Duration::from_secs(20));
    assert!(rcu.stats().gp_completed >= 200);
}

#[test]
fn concurrent_callers_share_grace_periods() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let (stop, reader) = hold_reader(&rcu);
    let callers = 8;
    let barrier = Arc::new(Barrier::new(callers + 1));
    let handles: Vec<_> = (0..callers)
        .map(|_| {
            let (b, r) = (barrier.clone(), rcu.clone());
            thread::spawn(move || {
                b.wait();
                r.synchronize();
            })
        })
        .collect();
    barrier.wait();
    // Let every caller take its snapshot and queue behind the first grace
    // period, which waits for the reader: wait until each has called in (a
    // fixed sleep let a loaded machine release the reader before some
    // callers ran, and those then ran grace periods of their own).
    let t = Instant::now();
    while rcu.stats().synchronize_calls < callers as u64 {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the callers never called synchronize: {:?}",
            rcu.stats()
        );
        thread::sleep(Duration::from_millis(1));
    }
    thread::sleep(Duration::from_millis(20));
    stop.send(()).unwrap();
    for h in handles {
        h.join().unwrap();
    }
    reader.join().unwrap();
    let s = rcu.stats();
    assert_eq!(s.synchronize_calls, callers as u64);
    assert!(
        s.gp_completed < callers as u64,
        "{} grace periods for {} callers",
        s.gp_completed,
        callers
    );
    assert!(s.shared_waits >= 1, "{s:?}");
}

#[test]
fn get_state_poll_and_cond_synchronize() {
    for rcu in domains() {
        let c = rcu.get_state();
        assert!(!rcu.poll(&c), "no grace period ran since the cookie");
        rcu.synchronize();
        assert!(rcu.poll(&c));
        // cond_synchronize on a completed cookie runs no grace period.
        let before = rcu.stats().gp_completed;
        rcu.cond_synchronize(c);
        assert_eq!(rcu.stats().gp_completed, before);
        // ...and on a fresh one it does.
        let c2 = rcu.get_state();
        rcu.cond_synchronize(c2);
        assert!(rcu.poll(&c2));
        assert!(rcu.stats().gp_completed > before);
    }
}

#[test]
fn a_cookie_taken_during_a_grace_period_needs_the_next_one() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let (stop, reader) = hold_reader(&rcu);
    let w = rcu.clone();
    let writer = thread::spawn(move || w.synchronize());
    // Wait until the writer's grace period is in progress.
    let t = Instant::now();
    while !rcu.stats().gp_in_progress {
        assert!(t.elapsed() < Duration::from_secs(5));
        thread::yield_now();
    }
    let c = rcu.get_state();
    stop.send(()).unwrap();
    writer.join().unwrap();
    reader.join().unwrap();
    // The grace period that was running when `c` was taken may have begun
    // before an update made just before it: it does not complete `c`.
    assert!(!rcu.poll(&c));
    rcu.synchronize();
    assert!(rcu.poll(&c));
}

#[test]
fn start_poll_completes_without_anyone_synchronizing() {
    for rcu in domains() {
        let c = rcu.start_poll();
        let t = Instant::now();
        while !rcu.poll(&c) {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "start_poll never completed"
            );
            thread::sleep(Duration::from_millis(1));
        }
        assert!(rcu.stats().poll_requests >= 1);
    }
}

/// A `Retired` polled with `try_into_box` (or `is_safe`) in a loop, on an
/// otherwise idle domain: nothing else starts a grace period, so the poll
/// must, or the loop never ends.
#[test]
fn a_retired_polled_in_a_loop_completes_without_anyone_synchronizing() {
    for rcu in domains() {
        let cell = rcu_reclaim::RcuCell::new_in(&rcu, Some(Box::new(vec![1u8; 16])));
        let mut retired = cell.replace(Box::new(vec![2u8; 16])).unwrap();
        let t = Instant::now();
        let value = loop {
            match retired.try_into_box() {
                Ok(value) => break value,
                Err(back) => retired = back,
            }
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "try_into_box never succeeded: no grace period was started"
            );
            thread::sleep(Duration::from_millis(1));
        };
        assert_eq!(*value, vec![1u8; 16]);

        let retired = cell.take().unwrap();
        let t = Instant::now();
        while !retired.is_safe() {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "is_safe never became true: no grace period was started"
            );
            thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(*retired.try_into_box().ok().unwrap(), vec![2u8; 16]);
    }
}

#[test]
fn start_poll_inside_a_section_completes_after_it() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let g = rcu.read_lock();
    let c = rcu.start_poll(); // legal: never blocks
    thread::sleep(Duration::from_millis(50));
    assert!(!rcu.poll(&c), "grace period ended while this thread reads");
    drop(g);
    let t = Instant::now();
    while !rcu.poll(&c) {
        assert!(t.elapsed() < Duration::from_secs(10));
        thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn completed_cookie_is_always_done() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let g = rcu.read_lock();
    assert!(rcu.poll(&Cookie::completed()));
    rcu.cond_synchronize(Cookie::completed()); // returns even inside a section
    drop(g);
    assert!(Rcu::global().poll(&Cookie::completed()));
}

#[test]
fn gp_sequence_advances_in_stats() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let s0 = rcu.stats();
    rcu.synchronize();
    rcu.synchronize_expedited();
    let s1 = rcu.stats();
    assert_eq!(s1.gp_completed, s0.gp_completed + 2);
    assert!(s1.gp_seq > s0.gp_seq);
    assert!(!s1.gp_in_progress);
    assert_eq!(s1.expedited_gps, s0.expedited_gps + 1);
    assert_eq!(s1.expedited_calls, 1);
}

#[test]
fn a_parked_writer_is_woken_by_the_reader() {
    let rcu = Rcu::new(Config::new().stall_timeout(Duration::from_secs(60))).unwrap();
    let (stop, reader) = hold_reader(&rcu);
    let w = rcu.clone();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let writer = thread::spawn(move || {
        w.synchronize();
        done_tx.send(()).unwrap();
    });
    // The writer spins, yields, then parks: on a loaded machine its yields
    // can take a time slice each, so wait for the park itself (a fixed
    // 100 ms sleep sometimes released the reader first).
    let t = Instant::now();
    while rcu.stats().writer_parks == 0 {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the writer never parked"
        );
        thread::sleep(Duration::from_millis(1));
    }
    stop.send(()).unwrap();
    // Woken by the unlock, not by a timeout: its first park lasts until the
    // stall check is due (60 s here), so a lost wake-up misses this bound
    // however loaded the machine.
    done_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the parked writer was not woken by the reader's unlock");
    writer.join().unwrap();
    reader.join().unwrap();
}

#[test]
fn many_writers_and_readers_make_progress() {
    for rcu in domains() {
        let stop = Arc::new(AtomicBool::new(false));
        let gps = Arc::new(AtomicUsize::new(0));
        let mut hs = vec![];
        for _ in 0..3 {
            let (s, r) = (stop.clone(), rcu.clone());
            hs.push(thread::spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    let _a = r.read_lock();
                    let _b = r.read_lock();
                }
            }));
        }
        for i in 0..3 {
            let (s, r, n) = (stop.clone(), rcu.clone(), gps.clone());
            hs.push(thread::spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    match i {
                        0 => r.synchronize(),
                        1 => r.synchronize_expedited(),
                        _ => r.cond_synchronize(r.start_poll()),
                    }
                    n.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        // Progress, not speed: more than 10 grace periods, within a minute
        // however loaded the machine (300 ms on an idle one sees hundreds;
        // a build beside it once left fewer than 10).
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while gps.load(Ordering::Relaxed) <= 10 && std::time::Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        stop.store(true, Ordering::Relaxed);
        for h in hs {
            h.join().unwrap();
        }
        let n = gps.load(Ordering::Relaxed);
        assert!(n > 10, "{n} grace periods in a minute");
    }
}

#[test]
fn with_no_registered_reader_a_grace_period_skips_the_barrier() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let cookie = rcu.get_state();
    let before = rcu.stats();
    assert_eq!(before.registered_readers, 0);
    rcu.synchronize();
    rcu.synchronize_expedited();
    let after = rcu.stats();
    assert!(rcu.poll(&cookie));
    assert_eq!(after.gp_completed, before.gp_completed + 2);
    assert_eq!(after.membarriers, before.membarriers);
    // The calling thread registered, outside its sections, does not bring
    // them back: its later sections follow the grace period in program
    // order.
    rcu.register_thread();
    rcu.synchronize();
    assert_eq!(rcu.stats().membarriers, before.membarriers);
    assert!(rcu.unregister_thread());
    // Another registered thread, even outside any section, does.
    let _other = common::IdleReader::new(&rcu);
    rcu.synchronize();
    if rcu.flavor() == rcu_reclaim::Flavor::Memb {
        assert!(rcu.stats().membarriers > before.membarriers);
    }
}

/// Each `membarrier` is timed: `Stats::membarrier_us` holds their time, in
/// microseconds, no more than the wall time the calls took (a unit slip, ns
/// reported as µs, would break that), and some of it (a system call takes
/// well over 100 ns, so 200 of them over 20 µs). The domain's readers never
/// switch to fences: 200 grace periods back to back can cost over 5 % of a
/// CPU in `membarrier` (a loaded machine makes each call slower), and the
/// switch then spares the later ones theirs (81, 182 or 147 of 200 were
/// issued beside the other tests and busy loops; the last run's stats: one
/// switch, 53 fenced grace periods).
#[test]
fn membarriers_are_timed_in_microseconds() {
    let config = Config::new()
        .flavor(rcu_reclaim::Flavor::Memb)
        .adaptive_reader_fences(false);
    let rcu = match Rcu::new(config) {
        Ok(rcu) => rcu,
        Err(e) => {
            eprintln!("skipped: no memb flavor here ({e})");
            return;
        }
    };
    // A reader on another thread: grace periods wait for it (the calling
    // thread's own registration would not make them issue a barrier).
    let reader = common::IdleReader::new(&rcu);
    let before = rcu.stats();
    let start = std::time::Instant::now();
    for _ in 0..200 {
        rcu.synchronize();
    }
    let wall_us = u64::try_from(start.elapsed().as_micros()).unwrap();
    let after = rcu.stats();
    drop(reader);
    let calls = after.membarriers - before.membarriers;
    let us = after.membarrier_us - before.membarrier_us;
    assert!(
        calls >= 200,
        "{calls} membarriers for 200 grace periods: {after:?}"
    );
    assert!(us >= 1, "{calls} membarriers timed at {us} µs");
    assert!(
        us <= wall_us,
        "{us} µs in membarrier within {wall_us} µs of wall time"
    );
    // Only the memb flavor calls it.
    let mb = Rcu::new(Config::new().flavor(rcu_reclaim::Flavor::Mb)).unwrap();
    mb.register_thread();
    mb.synchronize();
    let s = mb.stats();
    assert!(mb.unregister_thread());
    assert_eq!((s.membarriers, s.membarrier_us), (0, 0));
}

/// Readers that register while grace periods skip their barrier on an
/// empty registry: each new thread's first section must still see every
/// pointer retired before a grace period that found no reader.
#[test]
fn readers_registering_during_empty_registry_grace_periods_see_no_freed_value() {
    use std::sync::atomic::AtomicPtr;
    const POISON: u64 = 0xdead_beef;
    for rcu in domains() {
        let shared = Arc::new(AtomicPtr::new(Box::into_raw(Box::new(0u64))));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st, r) = (shared.clone(), stop.clone(), rcu.clone());
        let writer = thread::spawn(move || {
            // Retired values are poisoned, never freed, so a late reader
            // reads the poison instead of freed memory.
            let mut retired = Vec::new();
            let mut i = 1u64;
            while !st.load(Ordering::Relaxed) {
                let old = s.swap(Box::into_raw(Box::new(i)), Ordering::AcqRel);
                r.synchronize();
                // SAFETY: `old` came from `Box::into_raw` and is never freed
                // while readers run; a grace period has passed.
                unsafe { std::ptr::write_volatile(old, POISON) };
                retired.push(old as usize);
                i += 1;
            }
            retired
        });
        let _stop = StopOnDrop(&stop);
        let deadline = Instant::now() + Duration::from_millis(500);
        let mut readers = 0;
        while Instant::now() < deadline {
            let (s, r) = (shared.clone(), rcu.clone());
            thread::spawn(move || {
                let g = r.read_lock();
                let p = s.load(Ordering::Acquire);
                // SAFETY: published values are never freed during the test.
                let v = unsafe { std::ptr::read_volatile(p) };
                drop(g);
                assert_ne!(
                    v, POISON,
                    "a new reader saw a value retired a grace period ago"
                );
                assert!(r.unregister_thread());
            })
            .join()
            .unwrap();
            readers += 1;
        }
        stop.store(true, Ordering::Relaxed);
        for p in writer.join().unwrap() {
            // SAFETY: from `Box::into_raw`, no reader left.
            drop(unsafe { Box::from_raw(p as *mut u64) });
        }
        // SAFETY: as above.
        drop(unsafe { Box::from_raw(shared.load(Ordering::Acquire)) });
        assert!(readers > 0);
    }
}

#[test]
fn no_reader_synchronize_completes_counts_and_serves_cookies() {
    for rcu in domains() {
        let before = rcu.stats();
        let cookie = rcu.get_state();
        for _ in 0..3 {
            rcu.synchronize();
        }
        let after = rcu.stats();
        // Each call with no reader registered ran a grace period of its own
        // (the fast path) and was counted as a synchronize call.
        assert_eq!(after.synchronize_calls - before.synchronize_calls, 3);
        assert_eq!(after.gp_completed - before.gp_completed, 3);
        assert!(rcu.poll(&cookie));
        assert!(rcu.try_synchronize());
        assert_eq!(rcu.stats().synchronize_calls - before.synchronize_calls, 4);
    }
}

#[test]
fn try_synchronize_refuses_inside_a_section_and_waits_outside() {
    for rcu in domains() {
        // The only registered thread is the caller, inside a section.
        let g = rcu.read_lock();
        let nested = rcu.read_lock();
        let calls = rcu.stats().synchronize_calls;
        let cookie = rcu.get_state();
        assert!(!rcu.try_synchronize());
        assert!(!rcu.poll(&cookie), "a refused call ran no grace period");
        assert_eq!(
            rcu.stats().synchronize_calls,
            calls,
            "a refusal is not a call"
        );
        drop(nested);
        assert!(!rcu.try_synchronize());
        drop(g);
        // Registered, outside any section: waits (for nobody) and returns.
        assert!(rcu.try_synchronize());
        assert!(rcu.poll(&cookie));
        // Another thread's section does not make the caller's call a misuse.
        let (stop, reader) = hold_reader(&rcu);
        let cookie = rcu.get_state();
        let r = rcu.clone();
        let writer = thread::spawn(move || r.try_synchronize());
        stop.send(()).unwrap();
        assert!(writer.join().unwrap());
        reader.join().unwrap();
        assert!(rcu.poll(&cookie));
    }
}

#[test]
fn try_synchronize_refuses_on_an_online_qsbr_thread() {
    let rcu = Rcu::new(Config::new().flavor(rcu_reclaim::Flavor::Qsbr)).unwrap();
    let mut t = rcu.register_qsbr_thread();
    assert!(!rcu.try_synchronize());
    assert!(t.offline_while(|| rcu.try_synchronize()));
    drop(t);
    assert!(rcu.try_synchronize());
}

/// A stall report says how much memory the stalled reader holds back: a
/// reader blocked in its section let 124 MiB pile up in 127 ms in a new
/// user's program, and the report said only that it stalled.
#[test]
fn a_stall_report_says_how_much_waits_to_be_freed() {
    // On demand: the waiter runs the grace period, and reports the stall,
    // on its own thread (whose log is captured).
    let rcu = Rcu::new(
        Config::new()
            .on_demand()
            .stall_timeout(Duration::from_millis(100)),
    )
    .unwrap();
    let (entered_tx, entered) = std::sync::mpsc::channel();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let r = rcu.clone();
    let reader = thread::spawn(move || {
        let _g = r.read_lock();
        entered_tx.send(()).unwrap();
        let _ = released.recv_timeout(Duration::from_secs(20));
    });
    entered.recv().unwrap();
    rcu.defer_drop_sized(Box::new(vec![0u8; 3 << 20]), 3 << 20);
    let log = common::stall_report_of_a_synchronize(&rcu);
    release.send(()).unwrap();
    reader.join().unwrap();
    assert!(
        log.contains("Meanwhile 3.0 MiB waits to be freed (Rcu::pending_bytes)"),
        "{log}"
    );
}
