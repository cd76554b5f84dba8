//! `Rcu::bound_garbage` as an outsider misuses it: usage readers that
//! block, panic, lie or call back into the domain, bounds replaced and
//! removed while retiring threads read or wait, extreme marks. The bound
//! must never hang a retire past its documented maximum, lose a deferred
//! drop, let a panic escape, or leave `garbage_bounded` wrong.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use rcu_reclaim::pressure::NodeMask;
use rcu_reclaim::{Config, Rcu};

mod common;
use common::within;
use common::StopOnDrop;

const MIB: usize = 1 << 20;

/// A value that counts its drops.
struct Counted(#[allow(dead_code)] Vec<u8>, Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.1.fetch_add(1, Ordering::Relaxed);
    }
}

fn counted(drops: &Arc<AtomicUsize>, bytes: usize) -> Box<Counted> {
    Box::new(Counted(vec![1u8; bytes], drops.clone()))
}

/// Bounds `rcu` under a 64 MiB mark by a reader whose first read says
/// so on the returned receiver and blocks until the returned sender
/// sends; later reads return 0 at once.
fn bound_by_a_reader_that_blocks_once(rcu: &Rcu) -> (mpsc::Receiver<()>, mpsc::Sender<()>) {
    let (entered_tx, entered_rx) = mpsc::channel::<()>();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let release_rx = std::sync::Mutex::new(release_rx);
    let entered_tx = std::sync::Mutex::new(Some(entered_tx));
    rcu.bound_garbage(64 * MIB, move || {
        if let Some(tx) = entered_tx.lock().unwrap().take() {
            tx.send(()).unwrap();
            let _ = release_rx.lock().unwrap().recv();
        }
        Some(0)
    });
    (entered_rx, release_tx)
}

/// `unbound_garbage` while a retiring thread is inside the usage reader:
/// the bound is gone once both are done. Before, the reader's result was
/// stored as the allowance after the unbind had cleared it, so
/// `garbage_bounded()` said `true` for a domain with no bound, for good.
#[test]
fn unbinding_while_the_usage_is_read_leaves_the_domain_unbound() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let (entered_rx, release_tx) = bound_by_a_reader_that_blocks_once(&rcu);
    let drops = Arc::new(AtomicUsize::new(0));
    let r = rcu.clone();
    let d = drops.clone();
    let writer = thread::spawn(move || {
        // Inside a section, so the garbage stays over the 2 MiB floor and
        // the hand-offs read the usage (and owe, not wait).
        let _g = r.read_lock();
        for _ in 0..4 {
            r.defer_drop_sized(counted(&d, MIB), MIB);
        }
    });
    entered_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the usage was never read");
    rcu.unbound_garbage();
    assert!(!rcu.garbage_bounded());
    release_tx.send(()).unwrap();
    writer.join().unwrap();
    assert!(
        !rcu.garbage_bounded(),
        "unbound_garbage() was undone by a usage read in flight"
    );
    rcu.barrier();
    assert_eq!(drops.load(Ordering::Relaxed), 4);
}

/// The same race with a new bound instead of none: the read of the
/// replaced bound, finishing after the rebind, leaves the new bound in
/// force (and removable).
#[test]
fn rebinding_while_the_old_usage_is_read_keeps_the_old_reader_out() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let (entered_rx, release_tx) = bound_by_a_reader_that_blocks_once(&rcu);
    let r = rcu.clone();
    let writer = thread::spawn(move || {
        let _g = r.read_lock();
        for i in 0..4u8 {
            r.defer_drop_sized(Box::new(vec![i; MIB]), MIB);
        }
    });
    entered_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let new_reads = Arc::new(AtomicUsize::new(0));
    let n = new_reads.clone();
    rcu.bound_garbage(64 * MIB, move || {
        n.fetch_add(1, Ordering::Relaxed);
        Some(0)
    });
    release_tx.send(()).unwrap();
    writer.join().unwrap();
    assert!(rcu.garbage_bounded());
    rcu.unbound_garbage();
    assert!(!rcu.garbage_bounded());
    rcu.barrier();
}

/// A thread waiting for its garbage under a bound that is then removed
/// stops waiting: the limit it waited for is gone. Before, it waited out
/// its full second behind a reader that held every grace period up.
#[test]
#[cfg_attr(miri, ignore = "timing: measures how soon a waiting writer goes on")]
fn unbinding_wakes_a_thread_waiting_for_its_garbage() {
    let rcu = Rcu::new(Config::new()).unwrap();
    // Usage at the mark: the allowance is the 2 MiB floor.
    rcu.bound_garbage(64 * MIB, || Some(64 * MIB));
    let (stop_reader, reader) = common::hold_reader(&rcu);
    let r = rcu.clone();
    let writer = thread::spawn(move || {
        for i in 0..6u8 {
            r.defer_drop_sized(Box::new(vec![i; MIB]), MIB);
        }
    });
    let start = Instant::now();
    while rcu.stats().headroom_waits == 0 {
        assert!(start.elapsed() < Duration::from_secs(10), "never waited");
        thread::sleep(Duration::from_millis(1));
    }
    let unbound = Instant::now();
    rcu.unbound_garbage();
    writer.join().unwrap();
    let after = unbound.elapsed();
    drop(stop_reader);
    reader.join().unwrap();
    assert!(
        after < Duration::from_millis(400),
        "the writer went on waiting {after:?} for a bound that was removed"
    );
    rcu.barrier();
    assert_eq!(rcu.pending_bytes(), 0);
}

/// A usage reader that reports `usize::MAX` bytes in use (a saturated
/// conversion: "more than can be counted") is over any mark, not
/// unreadable: the garbage is bounded.
#[test]
fn a_usage_of_usize_max_is_over_the_mark_not_unknown() {
    let rcu = Rcu::new(Config::new()).unwrap();
    rcu.bound_garbage(64 * MIB, || Some(usize::MAX));
    // Inside the section the hand-offs owe the wait; it is paid (a grace
    // period, nobody else reading) when the section ends. A few rounds: a
    // hand-off that finds its shard's lock held leaves the page to the
    // grace-period thread, and then this thread owes nothing (once in a
    // loaded full-suite run); a usage taken as unknown never waits.
    for _ in 0..20 {
        {
            let _g = rcu.read_lock();
            for i in 0..4u8 {
                rcu.defer_drop_sized(Box::new(vec![i; MIB]), MIB);
            }
        }
        if rcu.stats().headroom_waits >= 1 {
            break;
        }
    }
    assert!(
        rcu.stats().headroom_waits >= 1,
        "4 MiB of garbage at a usage of usize::MAX waited for nothing: {:?}",
        rcu.stats()
    );
    rcu.barrier();
    assert_eq!(rcu.pending_bytes(), 0);
}

/// Marks of 0 and `usize::MAX`, usages of 0 and far over: no overflow
/// panic, no hang, every value dropped.
#[test]
fn extreme_marks_and_usages_neither_panic_nor_hang() {
    for (mark, usage) in [
        (0, Some(0)),
        (0, Some(usize::MAX - 1)),
        (usize::MAX, Some(0)),
        (usize::MAX, Some(usize::MAX - 1)),
        (usize::MAX, None),
        (1, Some(usize::MAX / 2)),
    ] {
        let rcu = Rcu::new(Config::new()).unwrap();
        rcu.bound_garbage(mark, move || usage);
        let drops = Arc::new(AtomicUsize::new(0));
        let r = rcu.clone();
        let d = drops.clone();
        within(
            Duration::from_secs(20),
            "retiring under an extreme bound",
            move || {
                for _ in 0..16 {
                    r.defer_drop_sized(counted(&d, MIB), MIB);
                    r.call(|| {});
                }
            },
        );
        assert!(rcu.garbage_bounded());
        rcu.barrier();
        assert_eq!(
            drops.load(Ordering::Relaxed),
            16,
            "mark {mark}, usage {usage:?}"
        );
    }
}

/// A usage reader that panics on every read: the retire goes on, nothing
/// escapes into the caller (inside a section, outside, at the section's
/// end), and every value is dropped.
#[test]
fn a_panicking_usage_reader_never_reaches_the_caller() {
    let rcu = Rcu::new(Config::new()).unwrap();
    rcu.bound_garbage(0, || panic!("usage reader failed"));
    let drops = Arc::new(AtomicUsize::new(0));
    {
        let _g = rcu.read_lock();
        for _ in 0..8 {
            rcu.defer_drop_sized(counted(&drops, MIB), MIB);
        }
    }
    for _ in 0..8 {
        rcu.defer_drop_sized(counted(&drops, MIB), MIB);
    }
    rcu.barrier();
    assert_eq!(drops.load(Ordering::Relaxed), 16);
    assert!(rcu.garbage_bounded());
}

/// A usage reader that calls back into its own domain: reads its state,
/// replaces and removes the bound, asks for grace periods. No deadlock,
/// nothing lost.
#[test]
fn a_usage_reader_that_calls_into_its_domain_does_not_deadlock() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let reads = Arc::new(AtomicUsize::new(0));
    let weak_rcu = rcu.clone();
    let n = reads.clone();
    // A clone in the reader keeps the domain alive: removed at the end.
    rcu.bound_garbage(0, move || {
        let i = n.fetch_add(1, Ordering::Relaxed);
        let _ = weak_rcu.pending_bytes();
        let _ = weak_rcu.stats();
        let _ = weak_rcu.garbage_bounded();
        let _ = weak_rcu.start_poll();
        if i % 3 == 1 {
            weak_rcu.unbound_garbage();
        }
        Some(i * MIB)
    });
    let drops = Arc::new(AtomicUsize::new(0));
    let r = rcu.clone();
    let d = drops.clone();
    within(Duration::from_secs(20), "re-entrant reader", move || {
        for _ in 0..32 {
            r.defer_drop_sized(counted(&d, MIB), MIB);
            if !r.garbage_bounded() {
                let r2 = r.clone();
                let n2 = Arc::new(AtomicUsize::new(0));
                r.bound_garbage(0, move || {
                    let _ = r2.pending_bytes();
                    Some(n2.fetch_add(1, Ordering::Relaxed) * MIB)
                });
            }
        }
        r.unbound_garbage();
    });
    rcu.barrier();
    assert_eq!(drops.load(Ordering::Relaxed), 32);
}

/// A usage reader that owns a value whose `Drop` retires through the same
/// domain (the bound being replaced drops the reader): no deadlock. Before,
/// the old reader was dropped while the bound's lock was held, and the
/// retire in its `Drop` took that lock again.
#[test]
fn replacing_a_bound_whose_reader_retires_on_drop_does_not_deadlock() {
    struct RetireOnDrop(Rcu, Arc<AtomicUsize>);
    impl Drop for RetireOnDrop {
        fn drop(&mut self) {
            self.0.defer_drop_sized(counted(&self.1, MIB), MIB);
            let _ = self.0.garbage_bounded();
        }
    }
    let rcu = Rcu::new(Config::new()).unwrap();
    let drops = Arc::new(AtomicUsize::new(0));
    // Garbage over the floor, held by a reader, so that the retire in the
    // `Drop` reads the bound.
    let (stop_reader, reader) = common::hold_reader(&rcu);
    {
        let _g = rcu.read_lock();
        for _ in 0..3 {
            rcu.defer_drop_sized(counted(&drops, MIB), MIB);
        }
    }
    let owned = RetireOnDrop(rcu.clone(), drops.clone());
    rcu.bound_garbage(usize::MAX, move || {
        let _keep = &owned;
        Some(0)
    });
    let r = rcu.clone();
    within(Duration::from_secs(10), "replacing the bound", move || {
        r.bound_garbage(usize::MAX, || Some(0));
        r.unbound_garbage();
    });
    drop(stop_reader);
    reader.join().unwrap();
    rcu.barrier();
    assert_eq!(drops.load(Ordering::Relaxed), 4);
}

/// `bound_garbage` and `unbound_garbage` from inside a read-side section
/// and from inside callbacks and deferred drops: no deadlock, no panic.
#[test]
fn binding_from_a_section_or_a_callback_is_harmless() {
    let rcu = Rcu::new(Config::new()).unwrap();
    {
        let _g = rcu.read_lock();
        rcu.bound_garbage(8 * MIB, || Some(7 * MIB));
        for i in 0..6u8 {
            rcu.defer_drop_sized(Box::new(vec![i; MIB]), MIB);
        }
        rcu.unbound_garbage();
        rcu.bound_garbage(8 * MIB, || Some(7 * MIB));
    }
    let ran = Arc::new(AtomicUsize::new(0));
    for i in 0..32usize {
        let r = rcu.clone();
        let ran = ran.clone();
        rcu.call_sized(
            move || {
                if i % 2 == 0 {
                    r.bound_garbage(8 * MIB, move || Some(i * MIB));
                } else {
                    r.unbound_garbage();
                }
                r.defer_drop_sized(Box::new(vec![0u8; MIB]), MIB);
                ran.fetch_add(1, Ordering::Relaxed);
            },
            MIB,
        );
    }
    let r = rcu.clone();
    within(Duration::from_secs(20), "barrier", move || r.barrier());
    assert_eq!(ran.load(Ordering::Relaxed), 32);
    rcu.unbound_garbage();
    rcu.barrier();
    assert_eq!(rcu.pending_bytes(), 0);
}

/// Writers retiring (drops and calls, some inside sections) while other
/// threads rebind and unbind, flap a pressure signal, run `barrier` and
/// `run_callbacks`, with a usage reader whose value jumps about: no hang,
/// every value dropped and every callback run exactly once, and the
/// stats agree.
#[test]
#[cfg_attr(miri, ignore = "many megabytes and threads")]
fn bound_churn_with_pressure_and_barriers_loses_nothing() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let drops = Arc::new(AtomicUsize::new(0));
    let calls = Arc::new(AtomicUsize::new(0));
    const WRITERS: usize = 3;
    const ROUNDS: usize = 60;
    let go = Arc::new(Barrier::new(WRITERS + 2));
    let mut hs = Vec::new();
    for w in 0..WRITERS {
        let (r, d, c, go) = (rcu.clone(), drops.clone(), calls.clone(), go.clone());
        hs.push(thread::spawn(move || {
            go.wait();
            for i in 0..ROUNDS {
                if (i + w) % 4 == 0 {
                    let _g = r.read_lock();
                    r.defer_drop_sized(counted(&d, 256 << 10), 256 << 10);
                } else {
                    r.defer_drop_sized(counted(&d, 256 << 10), 256 << 10);
                }
                let c = c.clone();
                r.call(move || {
                    c.fetch_add(1, Ordering::Relaxed);
                });
            }
        }));
    }
    let (r, go2) = (rcu.clone(), go.clone());
    let churn = thread::spawn(move || {
        go2.wait();
        let jump = Arc::new(AtomicUsize::new(0));
        for i in 0..40usize {
            let j = jump.clone();
            match i % 4 {
                0 => r.bound_garbage(16 * MIB, move || {
                    let k = j.fetch_add(1, Ordering::Relaxed);
                    [Some(0), Some(usize::MAX - 1), None, Some(15 * MIB)][k % 4]
                }),
                1 => {
                    let p = r.pressure_start_all();
                    let _ = r.run_callbacks(&NodeMask::all(), (i % 13) as u8);
                    drop(p);
                }
                2 => r.unbound_garbage(),
                _ => r.barrier(),
            }
        }
    });
    go.wait();
    let r = rcu.clone();
    within(Duration::from_secs(60), "writers and churn", move || {
        for h in hs {
            h.join().unwrap();
        }
        churn.join().unwrap();
        r.barrier();
    });
    assert_eq!(drops.load(Ordering::Relaxed), WRITERS * ROUNDS);
    assert_eq!(calls.load(Ordering::Relaxed), WRITERS * ROUNDS);
    let s = rcu.stats();
    assert!(
        s.headroom_waits == 0 || s.headroom_wait_us > 0,
        "waits counted without time: {s:?}"
    );
    assert_eq!(rcu.pending_bytes(), 0);
}

/// The domain is shut down with a bound set: the last handle's drop runs
/// every deferred drop (the bound's reader holds no handle here).
#[test]
fn dropping_a_bound_domain_runs_everything() {
    let drops = Arc::new(AtomicUsize::new(0));
    let rcu = Rcu::new(Config::new().on_demand()).unwrap();
    rcu.bound_garbage(4 * MIB, || Some(3 * MIB));
    for _ in 0..4 {
        rcu.defer_drop_sized(counted(&drops, MIB), MIB);
    }
    within(Duration::from_secs(10), "dropping the domain", move || {
        drop(rcu)
    });
    assert_eq!(drops.load(Ordering::Relaxed), 4);
}

/// A forked child of a bound domain retires under the bound (its reader
/// runs in the child) and frees everything.
#[test]
#[cfg_attr(miri, ignore = "fork")]
fn a_forked_child_retires_under_the_bound() {
    let rcu = Rcu::new(Config::new()).unwrap();
    rcu.bound_garbage(8 * MIB, || Some(7 * MIB));
    for i in 0..4u8 {
        rcu.defer_drop_sized(Box::new(vec![i; MIB]), MIB);
    }
    let r = rcu.clone();
    let status = common::in_forked_child(&rcu, move || {
        for i in 0..8u8 {
            r.defer_drop_sized(Box::new(vec![i; MIB]), MIB);
        }
        r.barrier();
        r.pending_bytes() == 0 && r.garbage_bounded()
    });
    assert_eq!(status, 0);
    rcu.barrier();
    assert_eq!(rcu.pending_bytes(), 0);
}

/// A usage reader that breaks the rule and retires through its own
/// domain (and waits for its callbacks): no deadlock, no runaway
/// recursion, nothing lost.
#[test]
fn a_usage_reader_that_retires_and_waits_does_not_hang() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let drops = Arc::new(AtomicUsize::new(0));
    let (r, d) = (rcu.clone(), drops.clone());
    let depth = Arc::new(AtomicUsize::new(0));
    let max_depth = Arc::new(AtomicUsize::new(0));
    let (dp, mx) = (depth.clone(), max_depth.clone());
    rcu.bound_garbage(8 * MIB, move || {
        let now = dp.fetch_add(1, Ordering::SeqCst) + 1;
        mx.fetch_max(now, Ordering::SeqCst);
        r.defer_drop_sized(counted(&d, MIB), MIB);
        r.call_sized(|| {}, MIB);
        r.call(|| {});
        if now == 1 {
            r.barrier();
            r.synchronize();
        }
        dp.fetch_sub(1, Ordering::SeqCst);
        Some(7 * MIB)
    });
    let (r, d) = (rcu.clone(), drops.clone());
    within(Duration::from_secs(30), "a retiring reader", move || {
        for i in 0..32 {
            if i % 2 == 0 {
                let _g = r.read_lock();
                r.defer_drop_sized(counted(&d, MIB), MIB);
            } else {
                r.defer_drop_sized(counted(&d, MIB), MIB);
            }
        }
        r.unbound_garbage();
    });
    rcu.barrier();
    let reads_retired = drops.load(Ordering::Relaxed) - 32;
    assert!(
        max_depth.load(Ordering::SeqCst) < 64,
        "recursed {max_depth:?} deep"
    );
    let s = rcu.stats();
    assert_eq!(s.deferred_drops as usize, 32 + reads_retired, "{s:?}");
    assert_eq!(rcu.pending_bytes(), 0);
}

/// A queued callback holds the bound's reader's domain handle, the last
/// other handle is dropped: the queued drops still run once the bound is
/// removed from a callback or the reader's own handle is let go.
#[test]
fn a_reader_that_owns_a_handle_is_let_go_by_unbound() {
    let drops = Arc::new(AtomicUsize::new(0));
    let rcu = Rcu::new(Config::new().on_demand()).unwrap();
    let r = rcu.clone();
    rcu.bound_garbage(64 * MIB, move || Some(r.pending_bytes()));
    for _ in 0..4 {
        rcu.defer_drop_sized(counted(&drops, MIB), MIB);
    }
    rcu.unbound_garbage();
    within(Duration::from_secs(10), "dropping the domain", move || {
        drop(rcu)
    });
    assert_eq!(drops.load(Ordering::Relaxed), 4);
}

/// A retire from a `Drop` that runs while a panic unwinds, under a usage
/// reader that panics too: the reader's panic is caught inside the
/// retire, so the process neither aborts nor loses the value.
#[test]
fn a_panicking_reader_during_unwinding_does_not_abort() {
    struct RetireOnDrop(Rcu, Arc<AtomicUsize>);
    impl Drop for RetireOnDrop {
        fn drop(&mut self) {
            for _ in 0..4 {
                self.0.defer_drop_sized(counted(&self.1, MIB), MIB);
            }
        }
    }
    let rcu = Rcu::new(Config::new()).unwrap();
    rcu.bound_garbage(0, || panic!("usage reader failed while unwinding"));
    let drops = Arc::new(AtomicUsize::new(0));
    let (stop_reader, reader) = common::hold_reader(&rcu);
    let (r, d) = (rcu.clone(), drops.clone());
    let unwound = common::deliberate_panic(move || {
        let _on_unwind = RetireOnDrop(r, d);
        panic!("the caller fails");
    });
    assert!(unwound.is_err());
    drop(stop_reader);
    reader.join().unwrap();
    rcu.barrier();
    assert_eq!(drops.load(Ordering::Relaxed), 4);
}

/// Forks while another thread rebinds the garbage bound in a loop (and a
/// writer reads the usage): the child binds, retires over the floor and
/// frees everything. Before, the bound's lock was not among the locks
/// `prepare_fork` holds, so a child forked while the rebinding thread held
/// it waited for it for ever (killed after 20 s).
#[test]
#[cfg_attr(miri, ignore = "fork")]
fn forking_while_another_thread_rebinds_leaves_the_child_usable() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (r, s) = (rcu.clone(), stop.clone());
    let rebinder = thread::spawn(move || {
        let mut i = 0usize;
        while !s.load(Ordering::Relaxed) {
            i += 1;
            if i % 2 == 0 {
                r.bound_garbage(64 * MIB, || Some(0));
            } else {
                r.unbound_garbage();
            }
        }
    });
    let _stop = StopOnDrop(&stop);
    for _ in 0..100 {
        let r = rcu.clone();
        let status = common::in_forked_child(&rcu, move || {
            r.bound_garbage(64 * MIB, || Some(0));
            for i in 0..4u8 {
                r.defer_drop_sized(Box::new(vec![i; MIB]), MIB);
            }
            r.unbound_garbage();
            r.barrier();
            r.pending_bytes() == 0
        });
        assert_eq!(status, 0);
    }
    stop.store(true, Ordering::Relaxed);
    rebinder.join().unwrap();
    rcu.unbound_garbage();
    rcu.barrier();
}

/// Online QSBR threads retiring under a bound with usage at the mark: the
/// waits they owe are paid at their quiescent states, offline, so they
/// never wait for themselves (two online writers, each one a reader the
/// other's grace periods wait for, would each wait out 1 s per hand-off).
#[test]
fn online_qsbr_writers_under_a_bound_do_not_wait_for_each_other() {
    let rcu = Rcu::new(Config::new().flavor(rcu_reclaim::Flavor::Qsbr)).unwrap();
    rcu.bound_garbage(64 * MIB, || Some(64 * MIB));
    let drops = Arc::new(AtomicUsize::new(0));
    let go = Arc::new(Barrier::new(2));
    let mut hs = Vec::new();
    for _ in 0..2 {
        let (r, d, go) = (rcu.clone(), drops.clone(), go.clone());
        hs.push(thread::spawn(move || {
            let mut t = r.register_qsbr_thread();
            go.wait();
            for _ in 0..24 {
                r.defer_drop_sized(counted(&d, MIB), MIB);
                t.quiescent_state();
            }
            drop(t);
        }));
    }
    let r = rcu.clone();
    within(Duration::from_secs(15), "QSBR writers", move || {
        for h in hs {
            h.join().unwrap();
        }
        r.barrier();
    });
    assert_eq!(drops.load(Ordering::Relaxed), 48);
}

/// A usage reader that asks its own domain's memory state, and takes a
/// few milliseconds (a read on a loaded machine): the nested look does not
/// read the usage again from inside the reader. Before, each nested look
/// found the last read a millisecond old and called the reader again,
/// until the stack overflowed and the process aborted.
#[test]
fn a_usage_reader_asking_its_domains_memory_state_does_not_recurse() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let me = Arc::new(std::sync::OnceLock::<Rcu>::new());
    let depth = Arc::new(AtomicUsize::new(0));
    let deepest = Arc::new(AtomicUsize::new(0));
    let (m, d, most) = (me.clone(), depth.clone(), deepest.clone());
    rcu.bound_garbage(80 * MIB, move || {
        let at = d.fetch_add(1, Ordering::SeqCst) + 1;
        most.fetch_max(at, Ordering::SeqCst);
        thread::sleep(Duration::from_millis(2));
        // Three deep is already wrong: stop there rather than overflow.
        if at < 3 {
            if let Some(r) = m.get() {
                let _ = r.memory_state();
            }
        }
        d.fetch_sub(1, Ordering::SeqCst);
        Some(10 * MIB)
    });
    me.set(rcu.clone()).ok();
    let r = rcu.clone();
    within(Duration::from_secs(10), "memory_state", move || {
        for _ in 0..5 {
            let _ = r.memory_state();
            thread::sleep(Duration::from_millis(2));
        }
    });
    assert_eq!(
        deepest.load(Ordering::SeqCst),
        1,
        "the usage reader was called again from inside itself"
    );
    rcu.unbound_garbage();
}
