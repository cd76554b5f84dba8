//! `RcuHashMap` under repeated deep resizes: writers grow the table by
//! many doublings and shrink it back by as many halvings, over and over,
//! while readers look up and walk keys that stay present throughout. Every
//! value is checked for poison where it is read, and dropped exactly once.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;

use common::poison::{Drops, Val};
use common::StopOnDrop;
use rcu_reclaim::{Config, Rcu, RcuHashMap};

/// `default` rounds, or `MAP_STRESS_ROUNDS` of them for a longer run.
fn rounds(default: usize) -> usize {
    common::env_or("MAP_STRESS_ROUNDS", default)
}

/// Keys present from start to end.
const FIXED: u64 = 128;

/// The most values the thread that replaces the fixed keys makes.
const REPLACEMENTS: usize = 4_000_000;

/// Two writers grow the map by `churn` keys each and remove them all,
/// `rounds` times; a third replaces the fixed keys; readers look up and
/// walk the fixed keys throughout. Returns the (largest, smallest)
/// capacities seen.
fn churn(capacity: usize, churn: u64, rounds: usize) -> (usize, usize) {
    let rcu = Rcu::new(Config::new()).unwrap();
    let drops = Drops::new(FIXED as usize + 2 * churn as usize * rounds + REPLACEMENTS);
    let map: RcuHashMap<u64, Val> = RcuHashMap::with_capacity_in(capacity, &rcu);
    let initial = map.capacity();
    for k in 0..FIXED {
        map.insert(k, Val::new(&drops, k));
    }
    let stop = AtomicBool::new(false);
    let (max_cap, min_cap) = (AtomicUsize::new(0), AtomicUsize::new(usize::MAX));
    let (lookups, walks) = (AtomicUsize::new(0), AtomicUsize::new(0));
    thread::scope(|s| {
        let _stop = StopOnDrop(&stop);
        let churners: Vec<_> = (1..=2u64)
            .map(|w| {
                let (map, drops, max_cap, min_cap) = (&map, &drops, &max_cap, &min_cap);
                let (lookups, walks) = (&lookups, &walks);
                s.spawn(move || {
                    // Start once both readers run (a loaded machine may
                    // otherwise run the writers first, and alone).
                    while lookups.load(Ordering::Relaxed) == 0 || walks.load(Ordering::Relaxed) == 0
                    {
                        thread::yield_now();
                    }
                    let base = w << 40;
                    for _ in 0..rounds {
                        for k in base..base + churn {
                            assert!(map.insert(k, Val::new(drops, k)));
                        }
                        max_cap.fetch_max(map.capacity(), Ordering::Relaxed);
                        // Remove them all (an eighth by `update`, the
                        // rest by `remove`), so the table halves down by
                        // as many levels as it grew.
                        for k in base..base + churn {
                            if k % 8 == 0 {
                                assert!(!map.update(k, |old| {
                                    old.unwrap().check(k);
                                    None
                                }));
                            } else {
                                assert!(map.remove(&k));
                            }
                        }
                        min_cap.fetch_min(map.capacity(), Ordering::Relaxed);
                    }
                })
            })
            .collect();
        {
            let (map, stop, drops) = (&map, &stop, &drops);
            s.spawn(move || {
                // At most `REPLACEMENTS` values (each needs a drop counter):
                // on a slow machine the writers may outlast them, and the
                // fixed keys then keep their last values.
                let mut made = 0;
                while !stop.load(Ordering::Relaxed) && made + FIXED as usize <= REPLACEMENTS {
                    for k in 0..FIXED {
                        assert!(!map.insert(k, Val::new(drops, k)));
                    }
                    made += FIXED as usize;
                    thread::yield_now();
                }
            });
        }
        {
            let (map, stop, lookups) = (&map, &stop, &lookups);
            s.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let g = map.domain().read_lock();
                    let mut found = Vec::with_capacity(FIXED as usize);
                    for k in 0..FIXED {
                        let v = map.get(&k, &g).unwrap_or_else(|| panic!("key {k} missed"));
                        v.check(k);
                        found.push(v);
                    }
                    // Hold them across a yield: replaced meanwhile, they
                    // must stay intact until the section ends.
                    thread::yield_now();
                    for (k, v) in found.iter().enumerate() {
                        v.check(k as u64);
                    }
                    lookups.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        {
            let (map, stop, walks) = (&map, &stop, &walks);
            s.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    common::walk_sees_each_fixed_key_once(map, FIXED, |k, v| v.check(k));
                    walks.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        for c in churners {
            c.join().unwrap();
        }
    });
    assert!(lookups.into_inner() > 0 && walks.into_inner() > 0);
    assert_eq!(map.len(), FIXED as usize);
    assert!(map.capacity() >= initial);
    // Every write that left the map too big for its entries asked for a
    // halving, and none was lost to a resize running at the time: the map
    // ends at the size its fixed keys need (a table halves while it holds
    // fewer entries than an eighth of its buckets), or its initial size.
    assert!(
        map.capacity() <= (8 * FIXED as usize).max(initial),
        "{} buckets left for {} entries (initial {initial})",
        map.capacity(),
        map.len()
    );
    {
        let g = rcu.read_lock();
        assert_eq!(map.iter(&g).count(), FIXED as usize);
    }
    let caps = (max_cap.into_inner(), min_cap.into_inner());
    drop(map);
    rcu.barrier();
    drops.assert_each_dropped_once();
    assert_eq!(rcu.pending_bytes(), 0);
    caps
}

/// From 64 buckets up to 32 Ki and more, and back down, each round.
#[test]
fn deep_resizes_from_the_smallest_table() {
    let (max, min) = churn(0, 20_000, rounds(3));
    assert!(max >= 32_768, "grew to {max} only");
    assert!(min <= max / 8, "shrank to {min} only (of {max})");
}

/// A map made for 1000 entries (1024 buckets, five levels) grows far
/// and halves back to its initial size, never below it.
#[test]
fn deep_resizes_never_shrink_below_the_initial_size() {
    let (max, min) = churn(1000, 20_000, rounds(2));
    assert!(max >= 32_768, "grew to {max} only");
    assert!(min >= 1024, "shrank to {min}, below the initial size");
}

/// `clear` (a stripe at a time) beside writers that grow and shrink the
/// table, and a reader that walks it: nothing read is poisoned, every
/// value dropped once, and the emptied map is back at its initial size.
#[test]
fn clear_beside_deep_resizes() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let drops = Drops::new(4_000_000);
    let map: RcuHashMap<u64, Val> = RcuHashMap::new_in(&rcu);
    let stop = AtomicBool::new(false);
    thread::scope(|s| {
        let _stop = StopOnDrop(&stop);
        let growers: Vec<_> = (1..=2u64)
            .map(|w| {
                let (map, drops) = (&map, &drops);
                s.spawn(move || {
                    let base = w << 40;
                    for _ in 0..rounds(3) {
                        for k in base..base + 15_000 {
                            map.insert(k, Val::new(drops, k));
                        }
                        for k in base..base + 15_000 {
                            map.remove(&k);
                        }
                    }
                })
            })
            .collect();
        {
            let (map, stop) = (&map, &stop);
            s.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    map.clear();
                    thread::yield_now();
                }
            });
        }
        {
            let (map, stop) = (&map, &stop);
            s.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let g = map.domain().read_lock();
                    for (k, v) in map.iter(&g) {
                        v.check(*k);
                    }
                    for k in (1u64 << 40)..(1 << 40) + 64 {
                        if let Some(v) = map.get(&k, &g) {
                            v.check(k);
                        }
                    }
                }
            });
        }
        for g in growers {
            g.join().unwrap();
        }
    });
    map.clear();
    assert!(map.is_empty());
    assert_eq!(map.capacity(), 64);
    drop(map);
    rcu.barrier();
    drops.assert_each_dropped_once();
    assert_eq!(rcu.pending_bytes(), 0);
}
