//! Domains made and dropped while other threads hold their handles,
//! sections, QSBR registrations and containers; last handles dropped where
//! the drop cannot wait.

use super::*;

// ---------------------------------------------------------------------
// Domains made and dropped while other threads hold their handles,
// sections, QSBR registrations, cells, maps and caches; values whose drop
// writes into another domain; a map value owning a cell of its own domain.
// ---------------------------------------------------------------------

/// A value whose drop writes into a cell and a map of another domain.
struct CrossWriter {
    inner: Tracked,
    other_cell: Arc<RcuCell<Tracked>>,
    other_map: Arc<RcuHashMap<u64, Tracked>>,
}
reclaim_size!(CrossWriter { inner });

impl Drop for CrossWriter {
    fn drop(&mut self) {
        let v = self.inner.check();
        self.other_cell
            .store(Box::new(Tracked::new(S_LIFECYCLE_OTHER, v, 8)));
        self.other_map
            .insert(v % 31, Tracked::new(S_LIFECYCLE_OTHER, v, 8));
        if v % 3 == 0 {
            self.other_map.remove(&(v % 31));
        }
    }
}

/// A map value that owns a cell of the map's own domain (so the domain's
/// handle is held by something the domain itself frees).
struct Node {
    cell: RcuCell<Tracked>,
    tag: Tracked,
}
reclaim_size!(Node { tag });

#[test]
fn domains_dropped_while_threads_hold_handles_sections_and_containers() {
    let other = Rcu::new(Config::new()).unwrap();
    let other_cell = Arc::new(RcuCell::new_in(&other, None));
    let other_map = Arc::new(RcuHashMap::new_in(&other));
    let flavors = [Flavor::Memb, Flavor::Mb, Flavor::Qsbr];
    let start = Instant::now();
    let mut rounds = 0u64;
    while rounds < 12 || (rounds < 60 && start.elapsed() < Duration::from_secs(6)) {
        let flavor = flavors[rounds as usize % 3];
        let config = if rounds % 2 == 0 {
            Config::new().flavor(flavor)
        } else {
            Config::new().flavor(flavor).on_demand()
        };
        let rcu = match Rcu::new(config) {
            Ok(r) => r,
            Err(e) if flavor == Flavor::Memb => {
                eprintln!("memb unavailable here ({e}); skipping that flavor");
                rounds += 1;
                continue;
            }
            Err(e) => panic!("{e}"),
        };
        let cell = Arc::new(RcuCell::new_in(
            &rcu,
            Some(Box::new(Tracked::new(S_LIFECYCLE, 1, 32))),
        ));
        let map: Arc<RcuHashMap<u64, Node>> = Arc::new(RcuHashMap::new_in(&rcu));
        let cache: Arc<RcuCache<u64, Vec<u8>>> =
            Arc::new(RcuCache::builder().rcu(&rcu).max_bytes(64 << 10).build());
        for k in 0..8u64 {
            map.insert(
                k,
                Node {
                    cell: RcuCell::new_in(&rcu, Some(Box::new(Tracked::new(S_LIFECYCLE, k, 8)))),
                    tag: Tracked::new(S_LIFECYCLE, k, 8),
                },
            );
        }
        let go = Arc::new(Barrier::new(4));
        let dropped_main = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        // A reader: a guard (or, on QSBR, an online registration) held
        // across the main thread's drop of its handles.
        {
            let (rcu, cell, map, go, dropped_main) = (
                rcu.clone(),
                cell.clone(),
                map.clone(),
                go.clone(),
                dropped_main.clone(),
            );
            threads.push(thread::spawn(move || {
                let read = |cell: &RcuCell<Tracked>, map: &RcuHashMap<u64, Node>, n: &mut u64| {
                    let check = |c: Option<&Tracked>| c.map(Tracked::check);
                    let _ = check(cell.load(&rcu.read_lock()));
                    let g = rcu.read_lock();
                    for (_, node) in map.iter(&g) {
                        node.tag.check();
                        if let Some(t) = node.cell.load(&g) {
                            t.check();
                        }
                        *n += 1;
                    }
                };
                let mut n = 0;
                if rcu.flavor() == Flavor::Qsbr {
                    let mut me = rcu.register_qsbr_thread();
                    go.wait();
                    while !dropped_main.load(Ordering::Acquire) {
                        {
                            let g = me.read_lock();
                            if let Some(t) = cell.load(&g) {
                                t.check();
                            }
                            for (_, node) in map.iter(&g) {
                                node.tag.check();
                                let _ = node.cell.load(&g).map(Tracked::check);
                            }
                        }
                        me.quiescent_state();
                    }
                    for _ in 0..50 {
                        {
                            let g = me.read_lock();
                            let _ = cell.load(&g).map(Tracked::check);
                        }
                        me.quiescent_state();
                    }
                    drop(me); // unregisters; may hold the last handle
                } else {
                    go.wait();
                    let g = rcu.read_lock();
                    let held = g.domain().clone();
                    while !dropped_main.load(Ordering::Acquire) {
                        read(&cell, &map, &mut n);
                    }
                    drop(g);
                    drop(held);
                    read(&cell, &map, &mut n);
                }
                drop(rcu);
            }));
        }
        // A writer: stores, map writes and callbacks holding handles.
        {
            let (rcu, cell, map, go, oc, om) = (
                rcu.clone(),
                cell.clone(),
                map.clone(),
                go.clone(),
                other_cell.clone(),
                other_map.clone(),
            );
            threads.push(thread::spawn(move || {
                go.wait();
                for i in 0..200u64 {
                    cell.store(Box::new(Tracked::new(S_LIFECYCLE, i, 16)));
                    let k = i % 12;
                    if i % 5 == 0 {
                        map.remove(&k);
                    } else {
                        map.insert(
                            k,
                            Node {
                                cell: RcuCell::new_in(
                                    &rcu,
                                    Some(Box::new(Tracked::new(S_LIFECYCLE, i, 8))),
                                ),
                                tag: Tracked::new(S_LIFECYCLE, i, 8),
                            },
                        );
                    }
                    if i % 20 == 0 {
                        rcu.defer_drop(Box::new(CrossWriter {
                            inner: Tracked::new(S_LIFECYCLE, i, 4),
                            other_cell: oc.clone(),
                            other_map: om.clone(),
                        }));
                    }
                    if i % 25 == 0 {
                        // A callback holding a handle of the domain: maybe
                        // its last, dropped inside the callback.
                        let r2 = rcu.clone();
                        let t = Tracked::new(S_LIFECYCLE, i, 4);
                        rcu.call(move || {
                            t.check();
                            drop(t);
                            drop(r2);
                        });
                    }
                }
            }));
        }
        // A cache user.
        {
            let (cache, go) = (cache.clone(), go.clone());
            threads.push(thread::spawn(move || {
                go.wait();
                for i in 0..300u64 {
                    cache.insert(i % 40, vec![i as u8; 1024 + (i as usize % 7) * 512]);
                    let g = cache.domain().read_lock();
                    if let Some(v) = cache.get(&(i % 40), &g) {
                        assert!(v.iter().all(|&b| b == v[0]));
                    }
                }
                drop(cache);
            }));
        }
        go.wait();
        // Lets the readers go however the drops below end.
        let _dropped_main = StopOnDrop(&dropped_main);
        thread::sleep(Duration::from_millis(1));
        // The main thread lets go of everything while the others run.
        drop(cell);
        drop(map);
        drop(cache);
        drop(rcu);
        dropped_main.store(true, Ordering::Release);
        for t in threads {
            t.join().unwrap();
        }
        rounds += 1;
    }
    // Every domain's last handle is gone: each ran (or handed to a
    // short-lived thread) everything it held.
    let ok = eventually(20, || live(S_LIFECYCLE) == 0);
    assert!(
        ok,
        "{} values of dropped domains never dropped",
        live(S_LIFECYCLE)
    );
    drop(other_cell);
    drop(other_map);
    other.barrier();
    assert_eq!(live(S_LIFECYCLE_OTHER), 0);
    assert_eq!(POISON_READS[S_LIFECYCLE].load(Ordering::SeqCst), 0);
    assert_quiescent_books(&other);
}

/// A map value owning a cell of the same domain, and cells owning values
/// that own cells: dropping the map drops them all, once, through the
/// domain, while the domain itself is dropped right after.
#[test]
fn cycles_of_containers_in_one_domain_are_freed_once() {
    struct Inner {
        cell: RcuCell<Tracked>,
    }
    reclaim_size!(Inner {});
    struct Outer(RcuCell<Inner>);
    reclaim_size!(Outer {});
    for round in 0..30u64 {
        let rcu = Rcu::new(if round % 2 == 0 {
            Config::new()
        } else {
            Config::new().on_demand()
        })
        .unwrap();
        let map: RcuHashMap<u64, Outer> = RcuHashMap::new_in(&rcu);
        for k in 0..50u64 {
            let inner = Inner {
                cell: RcuCell::new_in(&rcu, Some(Box::new(Tracked::new(S_CYCLE, k, 8)))),
            };
            map.insert(k, Outer(RcuCell::new_in(&rcu, Some(Box::new(inner)))));
        }
        // Replace some inner values, retiring cells that own cells.
        for k in 0..50u64 {
            let g = rcu.read_lock();
            let outer = &map.get(&k, &g).unwrap().0;
            let inner = outer.load(&g).unwrap();
            inner.cell.load(&g).unwrap().check();
            if k % 2 == 0 {
                inner
                    .cell
                    .store(Box::new(Tracked::new(S_CYCLE, k + 100, 8)));
            }
            drop(g);
            if k % 3 == 0 {
                let inner = Inner {
                    cell: RcuCell::new_in(&rcu, Some(Box::new(Tracked::new(S_CYCLE, k + 200, 8)))),
                };
                map.get_or_insert_with(k, || unreachable!(), &rcu.read_lock())
                    .0
                    .store(Box::new(inner));
            }
            if k % 7 == 0 {
                map.remove(&k);
            }
        }
        if round % 3 == 0 {
            rcu.barrier();
        }
        drop(map);
        if round % 2 == 1 {
            // On demand, the entries' cells hold the domain's last handles
            // and nothing frees them unless asked (documented in `Rcu`'s
            // `Drop`): a barrier runs them, and the last handle's drop
            // then runs what dropping the cells retired.
            rcu.clone().barrier();
        }
        drop(rcu); // the last handle may be the containers' (held until freed)
        let ok = eventually(10, || live(S_CYCLE) == 0);
        assert!(ok, "round {round}: {} values never dropped", live(S_CYCLE));
    }
    assert_eq!(POISON_READS[S_CYCLE].load(Ordering::SeqCst), 0);
}

/// Last handles dropped where the drop cannot wait: inside another
/// domain's callback (with callbacks, deferred drops and a cell's values
/// pending, on a lazy or an on-demand domain), and inside a raw section on
/// a thread that then exits without unlocking it (documented: the work
/// goes to a short-lived thread, done once the section ends).
#[test]
fn last_handles_dropped_in_callbacks_and_raw_sections() {
    let mut expect = 0;
    for round in 0..40 {
        let a = Rcu::new(Config::new()).unwrap();
        let b = Rcu::new(if round % 2 == 0 {
            Config::new()
        } else {
            Config::new().flavor(Flavor::Mb).on_demand()
        })
        .unwrap();
        for i in 0..10 {
            b.defer_drop(Box::new(Tracked::new(S_LAST, i, 8)));
            let t = Tracked::new(S_LAST, i, 8);
            b.call(move || drop(t));
        }
        let c = RcuCell::new_in(&b, Some(Box::new(Tracked::new(S_LAST, 0, 8))));
        c.store(Box::new(Tracked::new(S_LAST, 1, 8)));
        expect += 22;
        a.call(move || {
            assert!(Rcu::in_callback());
            drop(c);
            drop(b); // the last handle, inside a callback of another domain
        });
        if round % 3 == 0 {
            a.barrier();
        }
        drop(a);
    }
    for _ in 0..10 {
        let b = Rcu::new(Config::new()).unwrap();
        for i in 0..10 {
            b.defer_drop(Box::new(Tracked::new(S_LAST, i, 8)));
        }
        expect += 10;
        thread::spawn(move || {
            b.read_lock_raw();
            drop(b); // inside its own raw section, never unlocked
        })
        .join()
        .unwrap();
    }
    assert_eq!(CREATED[S_LAST].load(Ordering::SeqCst), expect);
    assert!(
        eventually(20, || live(S_LAST) == 0),
        "{} values of dropped domains never dropped",
        live(S_LAST)
    );
}
