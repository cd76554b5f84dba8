//! Cells under contention: `update` and `compare_exchange` from many
//! threads, with pressure and `run_callbacks` beside them.

use super::*;

// ---------------------------------------------------------------------
// A cell under contention: update and compare_exchange from many threads,
// a pressure signal toggling and run_callbacks from another thread.
// ---------------------------------------------------------------------

#[test]
fn cell_contention_with_pressure_and_run_callbacks() {
    for flavor in [Flavor::Memb, Flavor::Mb] {
        let Ok(rcu) = Rcu::new(Config::new().flavor(flavor)) else {
            continue;
        };
        let cell = Arc::new(RcuCell::new_in(
            &rcu,
            Some(Box::new(Tracked::new(S_CELL, 0, 256))),
        ));
        let stop = Arc::new(AtomicBool::new(false));
        let increments = Arc::new(AtomicU64::new(0));
        let mut threads = Vec::new();
        for w in 0..4usize {
            let (rcu, cell, increments) = (rcu.clone(), cell.clone(), increments.clone());
            threads.push(thread::spawn(move || {
                let start = Instant::now();
                let mut i = 0usize;
                while i < 1500 || start.elapsed() < Duration::from_secs(2) {
                    i += 1;
                    if w % 2 == 0 {
                        cell.update(|old| {
                            let v = old.map_or(0, Tracked::check);
                            Some(Box::new(Tracked::new(S_CELL, v + 1, 256 + i % 512)))
                        });
                    } else {
                        loop {
                            let g = rcu.read_lock();
                            let cur = cell.load(&g);
                            let v = cur.map_or(0, Tracked::check);
                            let new = Box::new(Tracked::new(S_CELL, v + 1, 256 + i % 512));
                            match cell.compare_exchange(cur, Some(new), &g) {
                                Ok(Some(old)) => {
                                    if i % 2 == 0 {
                                        old.defer_drop();
                                    } // else dropped in the section: deferred
                                    break;
                                }
                                Ok(None) => unreachable!("the cell is never emptied"),
                                Err(e) => {
                                    if let Some(c) = e.current {
                                        c.check();
                                    }
                                    drop(e.new); // never published: dropped at once
                                }
                            }
                        }
                    }
                    increments.fetch_add(1, Ordering::Relaxed);
                    if i % 64 == 0 {
                        rcu.collect();
                    }
                }
            }));
        }
        let mut helpers = pressure_and_run_callbacks(&rcu, &stop, 3);
        {
            let (rcu, stop, cell) = (rcu.clone(), stop.clone(), cell.clone());
            helpers.push(thread::spawn(move || {
                let mut last = 0;
                while !stop.load(Ordering::Relaxed) {
                    let g = rcu.read_lock();
                    let v = cell.load(&g).map_or(0, Tracked::check);
                    assert!(v >= last, "the cell went back from {last} to {v}");
                    last = v;
                }
            }));
        }
        let _stop = StopOnDrop(&stop);
        for t in threads {
            t.join().unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        for h in helpers {
            h.join().unwrap();
        }
        let total = increments.load(Ordering::SeqCst);
        assert!(total >= 4 * 1500);
        assert_eq!(
            cell.load(&rcu.read_lock()).map(Tracked::check),
            Some(total),
            "an update was lost"
        );
        rcu.barrier();
        assert_eq!(
            live(S_CELL),
            1,
            "exactly the cell's value is alive after barrier"
        );
        drop(cell);
        assert_quiescent_books(&rcu);
        assert_eq!(live(S_CELL), 0);
    }
    assert_eq!(POISON_READS[S_CELL].load(Ordering::SeqCst), 0);
}

/// The same on a QSBR domain: online registered writers (updating and
/// compare-exchanging between quiescent states), unregistered writers,
/// a registered reader, a pressure signal and `run_callbacks` beside them.
#[test]
fn qsbr_cell_contention_online_and_unregistered_writers() {
    let rcu = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
    let cell = Arc::new(RcuCell::new_in(
        &rcu,
        Some(Box::new(Tracked::new(S_QSBR_CELL, 0, 128))),
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let increments = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    for w in 0..4usize {
        let (rcu, cell, increments) = (rcu.clone(), cell.clone(), increments.clone());
        threads.push(thread::spawn(move || {
            let mut me = (w < 2).then(|| rcu.register_qsbr_thread());
            let start = Instant::now();
            let mut i = 0usize;
            while i < 1000 || start.elapsed() < Duration::from_secs(2) {
                i += 1;
                match &mut me {
                    Some(me) if i % 2 == 0 => loop {
                        let g = me.read_lock();
                        let cur = cell.load(&g);
                        let v = cur.map_or(0, Tracked::check);
                        let new = Box::new(Tracked::new(S_QSBR_CELL, v + 1, 64 + i % 256));
                        if cell.compare_exchange(cur, Some(new), &g).is_ok() {
                            break;
                        }
                    },
                    _ => {
                        cell.update(|old| {
                            let v = old.map_or(0, Tracked::check);
                            Some(Box::new(Tracked::new(S_QSBR_CELL, v + 1, 64 + i % 256)))
                        });
                    }
                }
                increments.fetch_add(1, Ordering::Relaxed);
                if let Some(me) = &mut me {
                    me.quiescent_state();
                    if i % 100 == 0 {
                        me.offline_while(|| thread::sleep(Duration::from_micros(50)));
                    }
                }
                if i % 32 == 0 {
                    rcu.collect();
                }
            }
        }));
    }
    let mut helpers = pressure_and_run_callbacks(&rcu, &stop, 5);
    {
        let (rcu, stop, cell) = (rcu.clone(), stop.clone(), cell.clone());
        helpers.push(thread::spawn(move || {
            let mut me = rcu.register_qsbr_thread();
            let mut last = 0;
            while !stop.load(Ordering::Relaxed) {
                let v = cell.load(&me.read_lock()).map_or(0, Tracked::check);
                assert!(v >= last, "the cell went back from {last} to {v}");
                last = v;
                me.quiescent_state();
            }
        }));
    }
    let _stop = StopOnDrop(&stop);
    for t in threads {
        t.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for h in helpers {
        h.join().unwrap();
    }
    let total = increments.load(Ordering::SeqCst);
    let mut me = rcu.register_qsbr_thread();
    assert_eq!(cell.load(&me.read_lock()).map(Tracked::check), Some(total));
    me.quiescent_state();
    drop(me);
    rcu.barrier();
    assert_eq!(live(S_QSBR_CELL), 1);
    drop(cell);
    assert_quiescent_books(&rcu);
    assert_eq!(live(S_QSBR_CELL), 0);
    assert_eq!(POISON_READS[S_QSBR_CELL].load(Ordering::SeqCst), 0);
}

/// Two helper threads until `stop`: one holding a pressure signal on every
/// node 200 µs at a time, one calling `run_callbacks` at priorities that
/// step by `step` (mod 13) every 100 µs.
fn pressure_and_run_callbacks(
    rcu: &Rcu,
    stop: &Arc<AtomicBool>,
    step: u8,
) -> Vec<thread::JoinHandle<()>> {
    let pressure = {
        let (rcu, stop) = (rcu.clone(), stop.clone());
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let g = rcu.pressure_start_all();
                thread::sleep(Duration::from_micros(200));
                drop(g);
                thread::yield_now();
            }
        })
    };
    let runner = {
        let (rcu, stop) = (rcu.clone(), stop.clone());
        thread::spawn(move || {
            let mut p = 0u8;
            while !stop.load(Ordering::Relaxed) {
                rcu.run_callbacks(&NodeMask::all(), p);
                p = (p + step) % 13;
                thread::sleep(Duration::from_micros(100));
            }
        })
    };
    vec![pressure, runner]
}
