//! The books at quiescence: every retire path counted, and what `barrier`
//! covers.

use super::*;

/// A deferred drop that finds no bulk page outside a section waits for a
/// grace period and drops the value at once: it is counted as run, so it
/// must be counted as deferred too, or the books (and the call backlog's
/// count of outstanding entries, `queued - invoked`) drift by one each time.
#[test]
fn no_page_fallback_is_booked_as_deferred() {
    let rcu = Rcu::new(Config::new()).unwrap();
    for i in 0..50u64 {
        rcu_reclaim::pages::without_page_allocation(|| {
            rcu.defer_drop(Box::new(Tracked::new(S_NO_PAGE, i, 8)));
        });
        let g = rcu.read_lock(); // inside a section: a small callback instead
        rcu_reclaim::pages::without_page_allocation(|| {
            rcu.defer_drop(Box::new(Tracked::new(S_NO_PAGE, i, 8)));
        });
        drop(g);
    }
    assert_quiescent_books(&rcu);
    assert!(rcu.stats().fallback_syncs > 0);
    assert_eq!(live(S_NO_PAGE), 0);
}

/// `barrier` waits for everything queued before it by any thread: a
/// callback, deferred drop or cell store that another thread made (still
/// in its buffered page, on a shard, or taken by a worker) before telling
/// the barrier's caller has run when the barrier returns, while the
/// pressure signal flaps, `run_callbacks` runs beside it, and the
/// retiring threads move between CPUs of a synthetic topology.
#[test]
fn barrier_covers_what_other_threads_queued_before_it() {
    use rcu_reclaim::topology::{override_current_cpu, Topology};
    use std::sync::mpsc;
    let rcu = Rcu::new(Config::new().topology(Topology::synthetic(2, 2))).unwrap();
    const N: usize = 4000;
    let flags: Arc<Vec<AtomicU8>> = Arc::new((0..N).map(|_| AtomicU8::new(0)).collect());
    let (tx, rx) = mpsc::channel::<(usize, usize)>();
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for w in 0..3usize {
        let (rcu, flags, tx) = (rcu.clone(), flags.clone(), tx.clone());
        threads.push(thread::spawn(move || {
            for i in (w..N).step_by(3) {
                if i % 13 == 0 {
                    override_current_cpu(Some(i % 4));
                }
                let f = flags.clone();
                match i % 3 {
                    0 => rcu.call(move || {
                        assert_eq!(f[i].fetch_add(1, Ordering::SeqCst), 0);
                    }),
                    1 => {
                        let t = Tracked::new(S_BARRIER, i as u64, 8);
                        rcu.call_hurry(move || {
                            t.check();
                            assert_eq!(f[i].fetch_add(1, Ordering::SeqCst), 0);
                        })
                    }
                    _ => {
                        // A deferred drop: its drop marks the flag.
                        struct Mark(Arc<Vec<AtomicU8>>, usize);
                        reclaim_size!(Mark {});
                        impl Drop for Mark {
                            fn drop(&mut self) {
                                assert_eq!(self.0[self.1].fetch_add(1, Ordering::SeqCst), 0);
                            }
                        }
                        rcu.defer_drop(Box::new(Mark(f, i)));
                    }
                }
                tx.send((i, w)).unwrap();
                if i % 4 == 0 {
                    // Let barriers interleave with the queueing.
                    thread::sleep(Duration::from_micros(50));
                }
            }
            override_current_cpu(None);
        }));
    }
    drop(tx);
    let mut helpers = Vec::new();
    {
        let (rcu, stop) = (rcu.clone(), stop.clone());
        helpers.push(thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let g = rcu.pressure_start(0);
                thread::sleep(Duration::from_micros(150));
                drop(g);
                rcu.run_callbacks(&NodeMask::all(), 8);
                thread::sleep(Duration::from_micros(150));
            }
        }));
    }
    let _stop = StopOnDrop(&stop);
    let mut checked = 0;
    let mut batch = Vec::new();
    while let Ok(first) = rx.recv() {
        batch.push(first);
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        rcu.barrier();
        for (i, w) in batch.drain(..) {
            assert_eq!(
                flags[i].load(Ordering::SeqCst),
                1,
                "item {i} of thread {w}, queued before the barrier, had not run after it"
            );
            checked += 1;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads.into_iter().chain(helpers) {
        t.join().unwrap();
    }
    assert_eq!(checked, N);
    assert!(rcu.stats().barriers > 10, "{:?}", rcu.stats());
    assert_quiescent_books(&rcu);
    assert_eq!(live(S_BARRIER), 0);
}

// ---------------------------------------------------------------------
// Stats at quiescence: every retire path, counted.
// ---------------------------------------------------------------------

#[test]
fn stats_books_balance_after_barrier_for_every_retire_path() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let before = rcu.stats();
    assert_eq!(before.invoked, 0);
    let ran = Arc::new(AtomicUsize::new(0));
    let mut booked: u64 = 0;
    let threads: Vec<_> = (0..3)
        .map(|t| {
            let (rcu, ran) = (rcu.clone(), ran.clone());
            thread::spawn(move || {
                let mut booked = 0u64;
                let first = Box::new(Tracked::new(S_STATS, 0, 100));
                let mut cell_size =
                    (std::mem::size_of::<Tracked>() + first.payload.capacity()) as u64;
                let cell = RcuCell::new_in(&rcu, Some(first));
                for i in 0..2000usize {
                    match i % 7 {
                        0 => {
                            let r = ran.clone();
                            rcu.call(move || {
                                r.fetch_add(1, Ordering::Relaxed);
                            });
                        }
                        1 => {
                            let r = ran.clone();
                            rcu.call_sized(
                                move || {
                                    r.fetch_add(1, Ordering::Relaxed);
                                },
                                1000,
                            );
                            booked += 1000;
                        }
                        2 => {
                            let v = Box::new(Tracked::new(S_STATS, i as u64, 10 + i % 300));
                            booked +=
                                (std::mem::size_of::<Tracked>() + v.payload.capacity()) as u64;
                            rcu.defer_drop(v);
                        }
                        3 => {
                            rcu.defer_drop_sized(Box::new(Tracked::new(S_STATS, i as u64, 5)), 777);
                            booked += 777;
                        }
                        4 => {
                            let v = Box::new(Plain(Tracked::new(S_STATS, i as u64, 40)));
                            booked +=
                                (std::mem::size_of::<Plain>() + v.0.payload.capacity()) as u64;
                            if let Err(v) = rcu.try_defer_drop(v) {
                                booked -=
                                    (std::mem::size_of::<Plain>() + v.0.payload.capacity()) as u64;
                                drop(v);
                            }
                        }
                        5 => {
                            let v = Box::new(Tracked::new(S_STATS, i as u64, 64 + i % 100));
                            let size =
                                (std::mem::size_of::<Tracked>() + v.payload.capacity()) as u64;
                            // Retired::defer_drop books the old value's reclaim_size.
                            cell.replace(v).unwrap().defer_drop();
                            booked += std::mem::replace(&mut cell_size, size);
                        }
                        _ => {
                            let _g = rcu.read_lock();
                            rcu.call_hurry({
                                let r = ran.clone();
                                move || {
                                    r.fetch_add(1, Ordering::Relaxed);
                                }
                            });
                        }
                    }
                    if i % 500 == 0 && t == 0 {
                        let _p = rcu.pressure_start_all();
                        rcu.run_callbacks(&NodeMask::all(), 0);
                    }
                }
                // Dropping the cell drops its value at once (no reader can
                // hold it: a load borrows the cell): not through the domain.
                let _ = cell_size;
                drop(cell);
                booked
            })
        })
        .collect();
    for t in threads {
        booked += t.join().unwrap();
    }
    assert_quiescent_books(&rcu);
    let s = rcu.stats();
    let calls = (0..2000).filter(|i| matches!(i % 7, 0 | 1 | 6)).count() * 3;
    assert_eq!(ran.load(Ordering::SeqCst), calls);
    assert_eq!(s.callbacks_queued, calls as u64, "{s:?}");
    assert_eq!(s.bytes_freed, booked, "bytes freed != bytes booked");
    assert_eq!(live(S_STATS), 0);
}
