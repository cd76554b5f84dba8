//! Adaptive reader fences under flapping: several memb domains whose
//! writers alternate bursts of grace periods (one policy window, enough to
//! switch the readers to fences) with quiet gaps (one window with a single
//! grace period, enough to switch back), through every write path
//! (`RcuCell::store`, `defer_drop`, `call`, `synchronize`,
//! `synchronize_expedited`, `start_poll`), while readers in guard, raw and
//! nested sections, some held across a switch, check values that poison
//! themselves on drop, and short-lived threads register as new readers.
//!
//! `FENCE_FLAP_SECS` (default 3) sets how long it runs.

mod common;
use common::poison::{Drops, Val};
use common::StopOnDrop;

use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rcu_reclaim::{Config, Flavor, Rcu, RcuCell};

/// The policy decides once per 20 ms window (`reader_fences::WINDOW_US`).
const WINDOW: Duration = Duration::from_millis(20);

struct Target {
    rcu: Rcu,
    key: u64,
    cell: RcuCell<Val>,
    /// Retired with `defer_drop`.
    deferred: AtomicPtr<Val>,
    /// Retired with `call`.
    called: AtomicPtr<Val>,
    /// Freed by the writer after a grace period it waited for
    /// (`synchronize`, `synchronize_expedited`, `start_poll` + `poll`).
    waited: AtomicPtr<Val>,
}

struct SendPtr(*mut Val);
// SAFETY: the pointer is a `Box<Val>` handed to the callback alone.
unsafe impl Send for SendPtr {}

fn new_val(drops: &Arc<Drops>, key: u64) -> *mut Val {
    Box::into_raw(Box::new(Val::new(drops, key)))
}

/// Checks `p` (loaded inside a section still open) if non-null.
fn check_ptr(p: *mut Val, key: u64) {
    if !p.is_null() {
        // SAFETY: loaded inside a section that is still open: retired
        // values are freed only after a grace period that waits for it.
        unsafe { &*p }.check(key);
    }
}

fn load_ptrs(t: &Target) -> [*mut Val; 3] {
    [
        t.deferred.load(Ordering::Acquire),
        t.called.load(Ordering::Acquire),
        t.waited.load(Ordering::Acquire),
    ]
}

/// One read of `t`, the section's kind and length chosen by `i`.
fn read_one(t: &Target, i: u64) -> u64 {
    let hold = i % 61 == 0;
    let spin = |n: u32| {
        for _ in 0..n {
            std::hint::spin_loop();
        }
    };
    match i % 4 {
        // A guard.
        0 | 1 => {
            let g = t.rcu.read_lock();
            let v = t.cell.load(&g);
            let ps = load_ptrs(t);
            if let Some(v) = v {
                v.check(t.key);
            }
            ps.iter().for_each(|p| check_ptr(*p, t.key));
            if hold {
                // Held across grace periods (and maybe a switch): what was
                // loaded must still be alive.
                spin(20_000);
                if let Some(v) = v {
                    v.check(t.key);
                }
                ps.iter().for_each(|p| check_ptr(*p, t.key));
            }
            drop(g);
        }
        // A raw section.
        2 => {
            t.rcu.read_lock_raw();
            let ps = load_ptrs(t);
            ps.iter().for_each(|p| check_ptr(*p, t.key));
            if hold {
                spin(20_000);
                ps.iter().for_each(|p| check_ptr(*p, t.key));
            }
            assert!(t.rcu.read_unlock_raw());
        }
        // A guard nested in a raw section, the outer loads checked after
        // the inner section ends.
        _ => {
            t.rcu.read_lock_raw();
            let ps = load_ptrs(t);
            {
                let g = t.rcu.read_lock();
                if let Some(v) = t.cell.load(&g) {
                    v.check(t.key);
                }
                ps.iter().for_each(|p| check_ptr(*p, t.key));
            }
            if hold {
                spin(20_000);
            }
            ps.iter().for_each(|p| check_ptr(*p, t.key));
            assert!(t.rcu.read_unlock_raw());
        }
    }
    1
}

/// Replaces `slot`'s value with a new one; returns the old (never null).
fn swap_in(slot: &AtomicPtr<Val>, drops: &Arc<Drops>, key: u64) -> *mut Val {
    slot.swap(new_val(drops, key), Ordering::AcqRel)
}

/// One write to `t` through the path `i` picks; every path ends in a
/// grace period, waited for or requested.
fn write_one(t: &Target, drops: &Arc<Drops>, i: u64) {
    let rcu = &t.rcu;
    match i % 7 {
        0 => {
            t.cell.store(Box::new(Val::new(drops, t.key)));
            rcu.start_poll();
        }
        1 => {
            let old = swap_in(&t.deferred, drops, t.key);
            // SAFETY: unlinked above; a `Box` from `new_val`.
            rcu.defer_drop(unsafe { Box::from_raw(old) });
            rcu.synchronize();
        }
        2 => {
            let old = SendPtr(swap_in(&t.called, drops, t.key));
            rcu.call(move || {
                let old = old;
                // SAFETY: unlinked before `call`; freed once, here.
                drop(unsafe { Box::from_raw(old.0) });
            });
            rcu.start_poll();
        }
        3 => {
            let old = swap_in(&t.waited, drops, t.key);
            rcu.synchronize();
            // SAFETY: unlinked, and a grace period has passed.
            drop(unsafe { Box::from_raw(old) });
        }
        4 => {
            let old = swap_in(&t.waited, drops, t.key);
            rcu.synchronize_expedited();
            // SAFETY: as above.
            drop(unsafe { Box::from_raw(old) });
        }
        5 => {
            let old = swap_in(&t.waited, drops, t.key);
            let c = rcu.start_poll();
            while !rcu.poll(&c) {
                thread::yield_now();
            }
            // SAFETY: as above.
            drop(unsafe { Box::from_raw(old) });
        }
        _ => {
            t.cell.store(Box::new(Val::new(drops, t.key)));
            rcu.synchronize();
        }
    }
}

fn memb(cost: Duration) -> Option<Rcu> {
    let config = Config::new()
        .flavor(Flavor::Memb)
        .simulate_membarrier_cost(cost);
    match Rcu::new(config) {
        Ok(rcu) => Some(rcu),
        Err(e) => {
            eprintln!("skipped: no memb flavor here ({e})");
            None
        }
    }
}

#[test]
fn readers_stay_protected_while_the_mode_flaps() {
    let secs: u64 = common::env_or("FENCE_FLAP_SECS", 3);
    let run_for = Duration::from_secs(secs);
    // At 300 µs a membarrier: 4 grace periods in a window switch on, one
    // in a window of 30 ms switches back.
    let cost = Duration::from_micros(300);
    // Room for ten times `secs` (see the writers).
    let drops = Drops::new(usize::try_from(secs).unwrap() * 10 * 400_000 + 100_000);
    let mut targets = Vec::new();
    for key in 0..3u64 {
        let Some(rcu) = memb(cost) else { return };
        let cell = RcuCell::new_in(&rcu, Some(Box::new(Val::new(&drops, key))));
        targets.push(Arc::new(Target {
            key,
            cell,
            deferred: AtomicPtr::new(new_val(&drops, key)),
            called: AtomicPtr::new(new_val(&drops, key)),
            waited: AtomicPtr::new(new_val(&drops, key)),
            rcu,
        }));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let start = Instant::now();

    let readers: Vec<_> = (0..3)
        .map(|r| {
            let (targets, stop, reads) = (targets.clone(), stop.clone(), reads.clone());
            thread::spawn(move || {
                let mut n = 0u64;
                let mut i = r as u64;
                while !stop.load(Ordering::Relaxed) {
                    for t in &targets {
                        n += read_one(t, i);
                        i += 1;
                    }
                }
                reads.fetch_add(n, Ordering::Relaxed);
            })
        })
        .collect();

    // New readers: short-lived threads that register, read and exit.
    let registrar = {
        let (targets, stop, reads) = (targets.clone(), stop.clone(), reads.clone());
        thread::spawn(move || {
            let mut born = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let targets = targets.clone();
                let n = thread::spawn(move || {
                    let mut n = 0;
                    for i in 0..64 {
                        for t in &targets {
                            n += read_one(t, i);
                        }
                    }
                    n
                })
                .join()
                .unwrap();
                reads.fetch_add(n, Ordering::Relaxed);
                born += 1;
                thread::sleep(Duration::from_millis(3));
            }
            born
        })
    };

    let writers: Vec<_> = targets
        .iter()
        .enumerate()
        .map(|(w, t)| {
            let (t, drops) = (t.clone(), drops.clone());
            thread::spawn(move || {
                let mut i = w as u64;
                let mut writes = 0u64;
                // Staggered, so the domains switch at different times.
                thread::sleep(Duration::from_millis(7 * w as u64));
                // Past `run_for` only while the domain has not flapped
                // yet (a loaded machine's writers may miss the windows:
                // 1 full-suite run in 4 ended unflapped), up to ten times
                // as long.
                while start.elapsed() < run_for
                    || (t.rcu.stats().reader_fence_switches < 2 && start.elapsed() < 10 * run_for)
                {
                    // Busy: two windows of grace periods (the first
                    // switches on at its end, the second runs fenced).
                    let busy_end = Instant::now() + 2 * WINDOW + WINDOW / 4;
                    while Instant::now() < busy_end {
                        write_one(&t, &drops, i);
                        i += 1;
                        writes += 1;
                    }
                    // Quiet: the window ends with no grace period, then
                    // one write starts (and decides) the next.
                    thread::sleep(WINDOW + WINDOW / 2);
                    write_one(&t, &drops, 3);
                    writes += 1;
                    thread::sleep(WINDOW + WINDOW / 2);
                }
                writes
            })
        })
        .collect();

    let _stop = StopOnDrop(&stop);
    let writes: u64 = writers.into_iter().map(|w| w.join().unwrap()).sum();
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().unwrap();
    }
    let born = registrar.join().unwrap();
    let elapsed = start.elapsed();

    let mut switches = Vec::new();
    let mut fenced = 0;
    for t in &targets {
        let s = t.rcu.stats();
        switches.push(s.reader_fence_switches);
        fenced += s.fenced_gps;
        eprintln!(
            "domain {}: switches on {}, fenced gps {}, membarriers {}, normal gps {}, \
             expedited gps {}, retirer gps {}, writer parks {}",
            t.key,
            s.reader_fence_switches,
            s.fenced_gps,
            s.membarriers,
            s.normal_gps,
            s.expedited_gps,
            s.retirer_gps,
            s.writer_parks
        );
    }
    eprintln!(
        "{:.1} s: {} reads, {} writes, {} reader threads born, switches on {:?}, fenced gps {}",
        elapsed.as_secs_f64(),
        reads.load(Ordering::Relaxed),
        writes,
        born,
        switches,
        fenced
    );
    for t in &targets {
        // Switched on at least twice: on, off and on again.
        assert!(
            t.rcu.stats().reader_fence_switches >= 2,
            "domain {} did not flap: {:#?}",
            t.key,
            t.rcu.stats()
        );
    }
    assert!(fenced > 0);
    for t in &targets {
        t.rcu.barrier();
        for p in [&t.deferred, &t.called, &t.waited] {
            // SAFETY: no reader is left; each is a `Box` from `new_val`.
            drop(unsafe { Box::from_raw(p.swap(std::ptr::null_mut(), Ordering::AcqRel)) });
        }
    }
    drop(targets);
    drops.assert_each_dropped_once();
}
