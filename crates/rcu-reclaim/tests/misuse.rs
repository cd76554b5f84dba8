//! Misuse is a clear panic or report, never a hang.

use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use rcu_reclaim::{Config, Flavor, Rcu, RcuCell};

mod common;

#[test]
#[should_panic(expected = "synchronize() called inside a read-side critical section")]
fn synchronize_inside_a_section_panics() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let _g = rcu.read_lock();
    rcu.synchronize();
}

#[test]
#[should_panic(expected = "synchronize_expedited() called inside a read-side critical section")]
fn synchronize_expedited_inside_a_section_panics() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let _g = rcu.read_lock();
    let _nested = rcu.read_lock();
    rcu.synchronize_expedited();
}

#[test]
#[should_panic(expected = "cond_synchronize() called inside a read-side critical section")]
fn cond_synchronize_inside_a_section_panics() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let c = rcu.get_state();
    let _g = rcu.read_lock();
    rcu.cond_synchronize(c);
}

#[test]
#[should_panic(
    expected = "Retired::into_box() (it waits for the value's grace period; \
                           Retired::try_into_box() does not) called inside a read-side"
)]
fn into_box_inside_a_section_panics_naming_it() {
    // On demand: no grace period can pass between the take and the guard.
    let rcu = Rcu::new(Config::new().on_demand()).unwrap();
    let cell = RcuCell::new_in(&rcu, Some(Box::new(1)));
    let retired = cell.take().unwrap();
    let _g = rcu.read_lock();
    let _ = retired.into_box();
}

#[test]
#[should_panic(expected = "RcuCell::store_sync() called inside a read-side critical section")]
fn store_sync_inside_a_section_panics() {
    let cell = RcuCell::new(1);
    let _g = cell.domain().read_lock();
    cell.store_sync(Box::new(2));
}

#[test]
#[should_panic(expected = "Retired value was dropped inside a read-side section")]
fn dropping_retired_inside_a_section_panics() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let cell = RcuCell::new_in(&rcu, Some(Box::new(1)));
    let _g = rcu.read_lock();
    drop(cell.replace(Box::new(2)));
}

#[test]
#[should_panic(expected = "guard (ReadGuard or QsbrGuard) of domain")]
fn loading_with_another_domains_guard_panics() {
    let a = Rcu::new(Config::new()).unwrap();
    let b = Rcu::new(Config::new()).unwrap();
    let cell = RcuCell::new_in(&a, Some(Box::new(1)));
    let g = b.read_lock();
    let _ = cell.load(&g);
}

#[test]
#[should_panic(expected = "Cookie of domain")]
fn polling_another_domains_cookie_panics() {
    let a = Rcu::new(Config::new()).unwrap();
    let b = Rcu::new(Config::new()).unwrap();
    let c = a.get_state();
    b.poll(&c);
}

/// The panic leaves the domain usable: the section still ends on unwind.
#[test]
fn domain_works_after_a_misuse_panic() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let r = rcu.clone();
    let res = thread::spawn(move || {
        let _g = r.read_lock();
        r.synchronize();
    })
    .join();
    assert!(res.is_err());
    rcu.synchronize();
}

/// A stalled section whose thread is itself waiting for another domain's
/// grace period says so: two such threads, each inside a section of one
/// domain waiting for the other's, would wait for good, and the report
/// names that cycle's half.
#[test]
fn a_stall_report_names_the_other_domain_its_thread_waits_for() {
    let captured = common::Captured::default();
    let _default = captured.on_this_thread();
    let a = Rcu::new(Config::new().stall_timeout(Duration::from_millis(100))).unwrap();
    let b = Rcu::new(Config::new()).unwrap();
    // A reader of `b` holds its grace periods up until released.
    let (release_tx, holder) = common::hold_reader(&b);
    // Inside a section of `a`, a thread waits for a grace period of `b`.
    let (aa, bb) = (a.clone(), b.clone());
    let waiter = thread::Builder::new()
        .name("in-a-waiting-for-b".into())
        .spawn(move || {
            let _g = aa.read_lock();
            bb.synchronize();
        })
        .unwrap();
    while b.stats().synchronize_calls == 0 {
        thread::sleep(Duration::from_millis(1));
    }
    // Waiting for `a` stalls on that thread (past 100 ms), then ends once
    // `b`'s reader lets go.
    let release = thread::spawn(move || {
        thread::sleep(Duration::from_millis(600));
        release_tx.send(()).unwrap();
    });
    a.synchronize();
    for t in [release, holder, waiter] {
        t.join().unwrap();
    }
    let log = captured.text();
    assert!(log.contains("in-a-waiting-for-b"), "{log}");
    assert!(
        log.contains(&format!(
            "itself waiting for a grace period of domain {}",
            b.id()
        )),
        "{log}"
    );
    // The mark is gone once the wait is over: a later stall of a plain
    // section says nothing of it.
    let (in_tx, in_rx) = mpsc::channel();
    let aa = a.clone();
    let plain = thread::Builder::new()
        .name("in-a-sleeping".into())
        .spawn(move || {
            let _g = aa.read_lock();
            in_tx.send(()).unwrap();
            thread::sleep(Duration::from_millis(300));
        })
        .unwrap();
    in_rx.recv().unwrap();
    a.synchronize();
    plain.join().unwrap();
    let log = captured.text();
    let last = log.rsplit("reader stall").next().unwrap_or_default();
    assert!(
        last.contains("in-a-sleeping") && !last.contains("itself waiting"),
        "{log}"
    );
}

#[test]
fn a_stalled_reader_is_reported_once_with_its_thread_name() {
    let captured = common::Captured::default();
    let _default = captured.on_this_thread();

    let rcu = Rcu::new(Config::new().stall_timeout(Duration::from_millis(100))).unwrap();
    let (ready_tx, ready_rx) = mpsc::channel();
    let r = rcu.clone();
    let reader = thread::Builder::new()
        .name("slow-reader".into())
        .spawn(move || {
            let _g = r.read_lock();
            ready_tx.send(()).unwrap();
            thread::sleep(Duration::from_millis(600));
        })
        .unwrap();
    ready_rx.recv().unwrap();
    rcu.synchronize(); // waits ~600 ms: one stall, reported once
    reader.join().unwrap();

    let stats = rcu.stats();
    assert_eq!(stats.stalls_reported, 1, "{stats:?}");
    let log = captured.text();
    assert_eq!(log.matches("reader stall").count(), 1, "{log}");
    assert!(log.contains("slow-reader"), "{log}");
    // It names the fix, not only the problem: a new user who held a guard
    // across a blocking call read "must not block" and no way out.
    assert!(
        log.contains("end it before a blocking call") && log.contains("`Arc` clone"),
        "{log}"
    );

    // An expedited grace period (never parks) reports stalls too.
    let (ready_tx, ready_rx) = mpsc::channel();
    let r = rcu.clone();
    let reader = thread::Builder::new()
        .name("slow-reader-2".into())
        .spawn(move || {
            let _g = r.read_lock();
            ready_tx.send(()).unwrap();
            thread::sleep(Duration::from_millis(400));
        })
        .unwrap();
    ready_rx.recv().unwrap();
    rcu.synchronize_expedited();
    reader.join().unwrap();
    assert_eq!(rcu.stats().stalls_reported, 2);
    let log = captured.text();
    assert!(log.contains("slow-reader-2"), "{log}");
}

#[test]
fn a_short_reader_is_not_reported() {
    let rcu = Rcu::new(Config::new().stall_timeout(Duration::from_secs(5))).unwrap();
    let r = rcu.clone();
    let (tx, rx) = mpsc::channel();
    let h = thread::spawn(move || {
        let _g = r.read_lock();
        tx.send(()).unwrap();
        thread::sleep(Duration::from_millis(50));
    });
    rx.recv().unwrap();
    rcu.synchronize();
    h.join().unwrap();
    assert_eq!(rcu.stats().stalls_reported, 0);
}

/// Runs `f` on its own thread and returns its panic message, failing (not
/// hanging) if it neither panics nor returns within 10 s.
fn panic_message_of(f: impl FnOnce() + Send + 'static) -> String {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        let msg = match r {
            Ok(()) => String::from("(no panic)"),
            Err(p) => p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default(),
        };
        let _ = tx.send(msg);
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("the misuse hung instead of panicking")
}

const REENTRANT: &str = "wrote to the same map or cache, which would deadlock";

#[test]
fn writing_to_a_map_from_its_own_get_or_insert_with_panics_instead_of_deadlocking() {
    let map = Arc::new(rcu_reclaim::RcuHashMap::new());
    let m = map.clone();
    let msg = panic_message_of(move || {
        let guard = m.domain().read_lock();
        m.get_or_insert_with(
            1u32,
            || {
                m.insert(1u32, 5u32); // same key, same stripe
                7
            },
            &guard,
        );
    });
    assert!(msg.contains(REENTRANT), "{msg}");
    // The lock was released on the way out: the map still works.
    assert!(map.insert(1, 2));
    assert!(map.remove(&1));
}

#[test]
fn writing_to_a_map_from_its_own_update_panics_even_on_another_stripe() {
    let map = Arc::new(rcu_reclaim::RcuHashMap::new());
    for k in 0..1000u32 {
        map.insert(k, k);
    }
    let m = map.clone();
    let msg = panic_message_of(move || {
        m.update(0u32, |old| {
            // Some of these keys share key 0's stripe, most do not: the
            // first write panics either way (with another thread writing
            // the other way round, a different stripe deadlocks too).
            m.remove(&999);
            old.copied()
        });
    });
    assert!(msg.contains(REENTRANT), "{msg}");
    assert_eq!(map.len(), 1000);
    assert!(map.update(0, |_| Some(1)));
}

#[test]
fn writing_to_a_cache_from_its_own_get_or_insert_with_panics() {
    let cache = Arc::new(rcu_reclaim::RcuCache::builder().max_bytes(1 << 20).build());
    let c = cache.clone();
    let msg = panic_message_of(move || {
        let guard = c.domain().read_lock();
        c.get_or_insert_with(
            1u64,
            || {
                c.insert(2u64, vec![0u8; 10]);
                vec![1u8; 10]
            },
            &guard,
        );
    });
    assert!(msg.contains(REENTRANT), "{msg}");
    assert!(cache.insert(3, vec![0u8; 10]));
}

#[test]
fn writing_to_a_map_from_a_write_of_another_nested_in_its_own_panics() {
    // a's closure writes to b, whose closure writes to a: a's stripe is
    // held further out, and the same key's stripe deadlocked silently.
    let a = Arc::new(rcu_reclaim::RcuHashMap::new());
    let b = Arc::new(rcu_reclaim::RcuHashMap::new());
    let (a2, b2) = (a.clone(), b.clone());
    let msg = panic_message_of(move || {
        a2.update(1u32, |_| {
            b2.update(1u32, |_| {
                a2.insert(1u32, 5u32);
                Some(1u32)
            });
            Some(1)
        });
    });
    assert!(msg.contains(REENTRANT), "{msg}");
    // Both maps' locks were released on the way out.
    assert!(a.insert(1, 2));
    assert!(b.insert(1, 2));
    assert!(a.update(2, |_| {
        b.update(2, |_| Some(2));
        Some(2)
    }));
    assert_eq!((a.len(), b.len()), (2, 2));
}

/// Writes nested `depth` deep, one map each, the innermost running `last`.
fn nest(maps: &[rcu_reclaim::RcuHashMap<u32, u32>], last: &dyn Fn()) {
    match maps.split_first() {
        None => last(),
        Some((m, rest)) => {
            m.update(1, |_| {
                nest(rest, last);
                Some(1)
            });
        }
    }
}

#[test]
fn a_write_deep_in_nested_writes_to_a_map_it_holds_panics() {
    // Ten maps deep, the innermost writes to its own map, the tenth: the
    // check once kept only the first eight maps, and this write deadlocked.
    let maps: Arc<Vec<_>> = Arc::new((0..10).map(|_| rcu_reclaim::RcuHashMap::new()).collect());
    let m = maps.clone();
    let msg = panic_message_of(move || {
        nest(&m, &|| {
            m[9].insert(1, 5);
        })
    });
    assert!(msg.contains(REENTRANT), "{msg}");
    assert!(maps.iter().all(|m| m.insert(2, 2)), "every lock released");
    // As deep as the thread can check, distinct maps nest fine; one
    // deeper is refused, saying so, and every lock is released.
    let deep: Arc<Vec<_>> = Arc::new((0..33).map(|_| rcu_reclaim::RcuHashMap::new()).collect());
    nest(&deep[..32], &|| {});
    assert!(deep[..32].iter().all(|m| m.len() == 1));
    let d = deep.clone();
    let msg = panic_message_of(move || nest(&d, &|| {}));
    assert!(msg.contains("32 writes are already in progress"), "{msg}");
    assert!(deep.iter().all(|m| m.insert(2, 2)), "every lock released");
}

#[test]
fn reading_the_map_or_writing_another_inside_a_write_is_fine() {
    let a = rcu_reclaim::RcuHashMap::new();
    let b = rcu_reclaim::RcuHashMap::new();
    a.insert(1u32, 1u32);
    let guard = a.domain().read_lock();
    let v = a.get_or_insert_with(
        2,
        || {
            b.insert(2u32, 2u32); // another map: its own locks
            *a.get(&1, &a.domain().read_lock()).unwrap() + 1
        },
        &guard,
    );
    assert_eq!(*v, 2);
    assert_eq!(b.len(), 1);
    drop(guard);
    // A write of another map nested in a write of `a` leaves `a` writable
    // once both have returned.
    assert!(a.update(1, |_| {
        b.update(1, |_| Some(10));
        Some(3)
    }));
    assert_eq!(b.len(), 2);
}

#[test]
#[should_panic(expected = "given both auto_pressure() and pressure_source()")]
fn a_cache_given_two_pressure_sources_says_which_to_keep() {
    let (_events, source) = rcu_reclaim::sources::SyntheticSource::new();
    let _cache: rcu_reclaim::RcuCache<u32, u32> = rcu_reclaim::RcuCache::builder()
        .auto_pressure()
        .pressure_source(Box::new(source))
        .build();
}

#[test]
#[should_panic(expected = "leave out rcu() (the cache then takes the reclaimer's domain)")]
fn a_cache_given_a_budget_of_another_domain_says_how_to_match_them() {
    let other = Rcu::new(Config::new()).unwrap();
    let reclaimer = Arc::new(rcu_reclaim::reclaim::Reclaimer::new(Rcu::global()));
    let budget = Arc::new(rcu_reclaim::reclaim::MemoryBudget::new(
        1 << 30,
        reclaimer,
        || 0,
    ));
    let _cache: rcu_reclaim::RcuCache<u32, u32> = rcu_reclaim::RcuCache::builder()
        .rcu(&other)
        .budget(&budget)
        .build();
}

#[test]
fn a_weigher_claiming_the_whole_address_space_overflows_no_count() {
    struct Huge;
    impl rcu_reclaim::cache::Weigher<u32, u32> for Huge {
        fn weigh(&self, _: &u32, _: &u32) -> usize {
            usize::MAX
        }
    }
    let cache = rcu_reclaim::RcuCache::builder()
        .max_bytes(usize::MAX)
        .weigher(Huge)
        .build();
    // Heavier than any capacity: refused, nothing counted.
    assert!(!cache.insert(1, 1));
    assert!(!cache.insert(2, 2));
    assert_eq!((cache.len(), cache.bytes()), (0, 0));
    // Over half the largest capacity each: every insert evicts the last.
    struct Big;
    impl rcu_reclaim::cache::Weigher<u32, u32> for Big {
        fn weigh(&self, _: &u32, _: &u32) -> usize {
            isize::MAX as usize / 2 + 1
        }
    }
    let cache = rcu_reclaim::RcuCache::builder()
        .max_bytes(usize::MAX)
        .weigher(Big)
        .build();
    for k in 0..4 {
        assert!(cache.insert(k, k));
        assert_eq!(cache.len(), 1);
        assert!(cache.bytes() <= cache.max_bytes());
    }
}

/// A cache used with another domain's guard names the cache (the type the
/// caller made, and `cache.domain()`), not the map it is built on.
#[test]
fn a_cache_used_with_another_domains_guard_names_the_cache() {
    for call in ["get", "get_or_insert_with"] {
        let msg = panic_message_of(move || {
            let a = Rcu::new(Config::new()).unwrap();
            let b = Rcu::new(Config::new()).unwrap();
            let cache: rcu_reclaim::RcuCache<u32, u32> =
                rcu_reclaim::RcuCache::builder().rcu(&a).build();
            cache.insert(1, 1);
            let guard = b.read_lock();
            match call {
                "get" => drop(cache.get(&1, &guard)),
                _ => drop(cache.get_or_insert_with(2, || 2, &guard)),
            }
        });
        assert!(
            msg.contains("RcuCache used with a guard of domain"),
            "{call}: {msg}"
        );
        assert!(msg.contains("cache.domain().read_lock()"), "{call}: {msg}");
        assert!(!msg.contains("RcuHashMap"), "{call}: {msg}");
    }
}

/// Waiting inside a raw section (`read_lock_raw`, no guard) names the way
/// out that exists there, `read_unlock_raw()`, not a guard to drop.
#[test]
fn waiting_inside_a_raw_section_names_read_unlock_raw() {
    let msg = panic_message_of(|| {
        let rcu = Rcu::new(Config::new()).unwrap();
        rcu.read_lock_raw();
        rcu.synchronize();
    });
    assert!(
        msg.contains("synchronize() called inside a read-side critical section"),
        "{msg}"
    );
    assert!(msg.contains("read_unlock_raw()"), "{msg}");
    // With a guard, the fix is still to drop it.
    let msg = panic_message_of(|| {
        let rcu = Rcu::new(Config::new()).unwrap();
        let _guard = rcu.read_lock();
        rcu.barrier();
    });
    assert!(msg.contains("Drop the ReadGuard first"), "{msg}");
    assert!(!msg.contains("read_unlock_raw"), "{msg}");
}

/// Each wait inside a section names the way out that exists for that call:
/// the polled API for a grace-period wait, `store()` for `store_sync()`,
/// `defer_drop()` for `into_box()`, and none for `barrier()` (the polled
/// API does not wait for callbacks).
#[test]
fn waiting_inside_a_section_names_the_way_out_of_that_call() {
    let msg = panic_message_of(|| {
        let rcu = Rcu::new(Config::new()).unwrap();
        let _guard = rcu.read_lock();
        rcu.synchronize();
    });
    assert!(msg.contains("start_poll()/poll()"), "{msg}");
    let msg = panic_message_of(|| {
        let rcu = Rcu::new(Config::new()).unwrap();
        let _guard = rcu.read_lock();
        rcu.barrier();
    });
    assert!(msg.contains("barrier() called inside"), "{msg}");
    assert!(!msg.contains("poll"), "{msg}");
    let msg = panic_message_of(|| {
        let cell = RcuCell::new_in(&Rcu::new(Config::new()).unwrap(), Some(Box::new(1)));
        let _guard = cell.domain().read_lock();
        cell.store_sync(Box::new(2));
    });
    assert!(
        msg.contains("or use RcuCell::store(), which never waits"),
        "{msg}"
    );
    assert!(!msg.contains("poll"), "{msg}");
    let msg = panic_message_of(|| {
        let rcu = Rcu::new(Config::new().on_demand()).unwrap();
        let cell = RcuCell::new_in(&rcu, Some(Box::new(1)));
        let retired = cell.take().unwrap();
        let _guard = rcu.read_lock();
        let _ = retired.into_box();
    });
    assert!(
        msg.contains("or use Retired::defer_drop(), which never waits"),
        "{msg}"
    );
    // On an online QSBR thread: QsbrThread::synchronize() is the way out of
    // synchronize() only.
    let msg = panic_message_of(|| {
        let rcu = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
        let _me = rcu.register_qsbr_thread();
        rcu.synchronize();
    });
    assert!(msg.contains("or use QsbrThread::synchronize()"), "{msg}");
    let msg = panic_message_of(|| {
        let rcu = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
        let _me = rcu.register_qsbr_thread();
        rcu.barrier();
    });
    assert!(msg.contains("QsbrThread::offline_while(|| ...)"), "{msg}");
    assert!(!msg.contains("QsbrThread::synchronize()"), "{msg}");
}

/// A wait inside a closure that a map or cell write runs in its own
/// read-side section (`RcuHashMap::update`'s `f`, `remove_if`'s `pred`,
/// `RcuCell::update`'s `f`) names that call, not a `ReadGuard` the caller
/// never took. Before: "Drop the ReadGuard first", with no guard in sight.
#[test]
fn waiting_inside_a_write_closure_names_the_write_not_a_guard() {
    use rcu_reclaim::RcuHashMap;
    type Write = fn(&Rcu, &RcuHashMap<u32, u32>);
    let map_closures: [(&str, Write); 3] = [
        ("update", |rcu, map| {
            map.update(1, |_| {
                rcu.synchronize();
                Some(2)
            });
        }),
        ("remove_if", |rcu, map| {
            map.remove_if(&1, |_| {
                rcu.barrier();
                true
            });
        }),
        ("get_or_insert_with", |rcu, map| {
            let guard = rcu.read_lock();
            map.get_or_insert_with(
                7,
                || {
                    rcu.synchronize_expedited();
                    7
                },
                &guard,
            );
        }),
    ];
    for (call, write) in map_closures {
        let msg = panic_message_of(move || {
            let rcu = Rcu::new(Config::new()).unwrap();
            let map = RcuHashMap::new_in(&rcu);
            map.insert(1u32, 1u32);
            write(&rcu, &map);
        });
        assert!(
            msg.contains("called inside a read-side critical section"),
            "{call}: {msg}"
        );
        assert!(msg.contains("RcuHashMap"), "{call}: {msg}");
        assert!(msg.contains("after that call returns"), "{call}: {msg}");
    }
    let msg = panic_message_of(|| {
        let rcu = Rcu::new(Config::new()).unwrap();
        let cell = RcuCell::new_in(&rcu, Some(Box::new(1u32)));
        cell.update(|old| {
            rcu.synchronize();
            old.map(|v| Box::new(v + 1))
        });
    });
    assert!(
        msg.contains("called inside a read-side critical section"),
        "{msg}"
    );
    assert!(msg.contains("RcuCell::update"), "{msg}");
    assert!(!msg.contains("Drop the ReadGuard first"), "{msg}");
    // The same on a QSBR domain, from a thread that is not registered.
    let msg = panic_message_of(|| {
        let rcu = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
        let map = RcuHashMap::new_in(&rcu);
        map.update(1u32, |_| {
            rcu.barrier();
            Some(1u32)
        });
    });
    assert!(msg.contains("RcuHashMap"), "{msg}");
}

/// A `Retired` dropped inside the section a write runs the caller's code
/// in names that write, as a wait there does, not a `ReadGuard` the
/// caller never took; inside a raw section, its end. Before: "Keep the
/// Retired until the ReadGuard is dropped" in all three.
#[test]
fn a_retired_dropped_inside_a_write_closure_names_the_write() {
    use rcu_reclaim::RcuHashMap;
    let msg = panic_message_of(|| {
        let rcu = Rcu::new(Config::new()).unwrap();
        let (a, b) = (
            RcuCell::new_in(&rcu, Some(Box::new(1u32))),
            RcuCell::new_in(&rcu, Some(Box::new(2u32))),
        );
        a.update(|v| {
            drop(b.replace(Box::new(3)));
            v.map(|x| Box::new(x + 1))
        });
    });
    assert!(
        msg.contains("Retired value was dropped inside a read-side section"),
        "{msg}"
    );
    assert!(msg.contains("RcuCell::update"), "{msg}");
    assert!(!msg.contains("ReadGuard is dropped"), "{msg}");
    let msg = panic_message_of(|| {
        let rcu = Rcu::new(Config::new()).unwrap();
        let map = RcuHashMap::new_in(&rcu);
        map.insert(1u32, 1u32);
        let cell = RcuCell::new_in(&rcu, Some(Box::new(2u32)));
        map.update(1, |_| {
            drop(cell.replace(Box::new(3)));
            Some(2)
        });
    });
    assert!(msg.contains("RcuHashMap"), "{msg}");
    assert!(msg.contains("after that call returns"), "{msg}");
    let msg = panic_message_of(|| {
        let rcu = Rcu::new(Config::new()).unwrap();
        let cell = RcuCell::new_in(&rcu, Some(Box::new(2u32)));
        rcu.read_lock_raw();
        let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            drop(cell.replace(Box::new(3)));
        }));
        rcu.read_unlock_raw();
        if let Err(panic) = dropped {
            std::panic::resume_unwind(panic);
        }
    });
    assert!(msg.contains("End the raw section first"), "{msg}");
}

/// A zero where a count must be at least one: the error names that knob
/// alone, with its default, not every knob the rule covers.
#[test]
fn a_zero_config_value_is_named_alone_with_its_default() {
    let msg = match Rcu::new(Config::new().pace_bytes(0)) {
        Err(rcu_reclaim::Error::InvalidConfig(msg)) => msg,
        Err(e) => panic!("unexpected error: {e}"),
        Ok(_) => panic!("pace_bytes(0) was accepted"),
    };
    assert!(msg.contains("pace_bytes (the default is 16384)"), "{msg}");
    for other in ["lazy_batch", "blimit", "workers_per_node", "qovld"] {
        assert!(!msg.contains(other), "{msg}");
    }
    let msg = match Rcu::new(Config::new().blimit(0).qovld(0)) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("blimit(0) and qovld(0) were accepted"),
    };
    assert!(
        msg.contains("blimit (the default is 10)") && msg.contains("qovld (the default is 20000)"),
        "{msg}"
    );
}

/// Inserts into a cache from inside one read-side section: no grace period
/// can end, so the backlog of evicted entries grows past the cache's
/// allowance. The first such insert says so, once, naming the fix.
#[test]
fn inserting_into_a_cache_inside_a_section_warns_once_of_the_backlog() {
    let captured = common::Captured::default();
    let _default = captured.on_this_thread();

    let rcu = Rcu::new(Config::new()).unwrap();
    let cache = rcu_reclaim::RcuCache::builder()
        .max_bytes(1 << 20)
        .rcu(&rcu)
        .build();
    {
        let _guard = rcu.read_lock();
        for i in 0..2_000u64 {
            cache.insert(i, vec![0u8; 4 << 10]);
        }
        assert!(rcu.pending_bytes() > 2 << 20, "{}", rcu.pending_bytes());
    }
    let log = captured.text();
    assert_eq!(
        log.matches("inside a read-side section").count(),
        1,
        "{log}"
    );
    assert!(log.contains("drop the guard first"), "{log}");
    // Outside the section the next inserts free the backlog themselves.
    for i in 0..2_000u64 {
        cache.insert(i, vec![0u8; 4 << 10]);
    }
    assert!(rcu.pending_bytes() < 2 << 20, "{}", rcu.pending_bytes());
    rcu.barrier();
}

/// Unregistering a shrinker while holding a lock its scan waits for, with
/// a pass in that scan on another thread: `unregister` would wait for the
/// pass forever. It gives up after a second, saying why and naming the
/// shrinker, and the pass finishes once the lock is released.
#[test]
fn unregistering_a_shrinker_while_holding_a_lock_its_scan_takes_warns_instead_of_hanging() {
    use rcu_reclaim::reclaim::{Reclaimer, Scanned, ShrinkControl, Shrinker};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Mutex;

    struct Locking {
        lock: Mutex<()>,
        entered: AtomicBool,
    }
    impl Shrinker for Locking {
        fn count(&self, _: &ShrinkControl) -> usize {
            10
        }
        fn scan(&self, ctl: &mut ShrinkControl) -> Scanned {
            self.entered.store(true, Ordering::SeqCst);
            let _held = self.lock.lock().unwrap();
            ctl.set_scanned(ctl.nr_to_scan());
            ctl.stop();
            Scanned::default()
        }
        fn name(&self) -> &str {
            "locking-shrinker"
        }
    }
    let captured = common::Captured::default();
    let _default = captured.on_this_thread();
    let rcu = Rcu::new(Config::new()).unwrap();
    let r = Arc::new(Reclaimer::new(&rcu));
    let s = Arc::new(Locking {
        lock: Mutex::new(()),
        entered: AtomicBool::new(false),
    });
    let id = r.register(s.clone());
    let held = s.lock.lock().unwrap();
    let pass = {
        let r = r.clone();
        thread::spawn(move || r.shrink(0))
    };
    while !s.entered.load(Ordering::SeqCst) {
        thread::yield_now();
    }
    let (tx, rx) = mpsc::channel();
    let waiter = {
        let r = r.clone();
        thread::spawn(move || {
            let _default = captured.on_this_thread();
            let _ = tx.send(r.unregister(id));
            captured.text()
        })
    };
    let unregistered = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("unregister hung on a lock its shrinker's scan waits for");
    assert!(unregistered);
    let log = waiter.join().unwrap();
    assert!(
        log.contains("locking-shrinker") && log.contains("release it before unregistering"),
        "{log}"
    );
    drop(held);
    pass.join().unwrap();
}

/// A type declared `drops_anywhere` whose `Drop` waits for a grace period
/// (against the declaration) is freed, once ready, by the thread that
/// keeps retiring values, here inside its own read-side section (or
/// online in a QSBR domain): the wait panics there. The message listed
/// only callbacks, reclaim and barriers as what could have run the
/// destructor, so it pointed nowhere near the cause; it names the
/// retiring call and the declaration to drop. Returns the first panic
/// message (the domain's `on_callback_panic` hook has it).
fn first_panic_of_a_waiting_drops_anywhere_destructor(qsbr: bool) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    /// Values made and dropped, this call's alone.
    type Counts = Arc<(AtomicUsize, AtomicUsize)>;
    struct Waits {
        rcu: Rcu,
        counts: Counts,
        bytes: Vec<u8>,
    }
    rcu_reclaim::reclaim_size!(Waits { bytes }; drops_anywhere);
    impl Drop for Waits {
        fn drop(&mut self) {
            self.counts.1.fetch_add(1, Ordering::SeqCst);
            self.rcu.synchronize();
        }
    }
    let counts = Counts::default();
    let waits = |rcu: &Rcu| {
        counts.0.fetch_add(1, Ordering::SeqCst);
        Box::new(Waits {
            rcu: rcu.clone(),
            counts: counts.clone(),
            bytes: vec![0; 64],
        })
    };

    let messages = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = messages.clone();
    let flavor = if qsbr { Flavor::Qsbr } else { Flavor::Mb };
    let rcu = Rcu::new(
        Config::new()
            .flavor(flavor)
            .on_callback_panic(move |m| seen.lock().unwrap().push(m.to_string())),
    )
    .unwrap();
    let cell = RcuCell::new_in(&rcu, Some(waits(&rcu)));
    let mut me = qsbr.then(|| rcu.register_qsbr_thread());
    // Each round retires inside a section (online, on QSBR), after a
    // grace period has made the earlier rounds' values ready: the
    // retiring thread frees some of them there.
    for _ in 0..200 {
        if !messages.lock().unwrap().is_empty() {
            break;
        }
        let guard = match me.as_mut() {
            Some(me) => {
                me.quiescent_state();
                me.synchronize();
                None
            }
            None => {
                rcu.synchronize();
                Some(rcu.read_lock())
            }
        };
        for _ in 0..100 {
            cell.store(waits(&rcu));
        }
        drop(guard);
    }
    drop(me);
    drop(cell);
    rcu.barrier();
    drop(rcu);
    assert_eq!(
        counts.1.load(Ordering::SeqCst),
        counts.0.load(Ordering::SeqCst)
    );
    let first = messages.lock().unwrap().first().cloned();
    first.expect("no destructor ran on the retiring thread inside its section")
}

#[test]
fn a_drops_anywhere_destructor_that_waits_inside_a_retiring_section_is_named() {
    let first = first_panic_of_a_waiting_drops_anywhere_destructor(false);
    assert!(
        first.contains("synchronize() called inside a read-side critical section")
            && first.contains("drops_anywhere"),
        "{first}"
    );
}

#[test]
fn a_drops_anywhere_destructor_that_waits_on_an_online_qsbr_retiring_thread_is_named() {
    let first = first_panic_of_a_waiting_drops_anywhere_destructor(true);
    assert!(
        first.contains("synchronize() called inside an RCU callback")
            && first.contains("drops_anywhere"),
        "{first}"
    );
}
