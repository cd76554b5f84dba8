//! A guard (`ReadGuard` or `QsbrGuard`) of one domain passed to a cell,
//! map or cache of another: its section would not hold back that domain's
//! frees, so every call that takes a guard panics, naming the structure
//! and where its guard comes from, and the structure stays usable.

use std::panic::{catch_unwind, AssertUnwindSafe};

use rcu_reclaim::{Config, Flavor, Rcu, RcuCache, RcuCell, RcuHashMap, ReadSection};

mod common;

/// The message of `f`'s panic; fails if it does not panic.
fn panic_of(what: &str, f: impl FnOnce()) -> String {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(()) => panic!("{what}: a guard of another domain was accepted"),
        Err(p) => common::panic_text(&*p),
    }
}

/// A call that is to panic.
type Call<'a> = Box<dyn FnOnce() + 'a>;

/// Every guard-taking call of a cell, a map and a cache of `mine`, under
/// `guard` (of another domain).
fn each_call_refuses(mine: &Rcu, guard: &impl ReadSection) {
    let cell = RcuCell::new_in(mine, Box::new(1u32));
    let map = RcuHashMap::new_in(mine);
    map.insert(1u32, 1u32);
    let cache: RcuCache<u32, u32> = RcuCache::builder().rcu(mine).build();
    cache.insert(1, 1);

    let cell_fix = "take the guard from cell.domain().read_lock()";
    let map_fix = "take the guard from map.domain().read_lock()";
    let cases: Vec<(&str, &str, Call<'_>)> = vec![
        (
            "RcuCell::load",
            cell_fix,
            Box::new(|| {
                let _ = cell.load(guard);
            }),
        ),
        (
            "RcuCell::compare_exchange",
            cell_fix,
            Box::new(|| {
                let _ = cell.compare_exchange(None, None, guard);
            }),
        ),
        (
            "RcuHashMap::get",
            map_fix,
            Box::new(|| {
                let _ = map.get(&1, guard);
            }),
        ),
        (
            "RcuHashMap::contains_key",
            map_fix,
            Box::new(|| {
                let _ = map.contains_key(&1, guard);
            }),
        ),
        (
            "RcuHashMap::iter",
            map_fix,
            Box::new(|| {
                let _ = map.iter(guard);
            }),
        ),
        (
            "RcuHashMap::get_or_insert_with",
            map_fix,
            Box::new(|| {
                let _ = map.get_or_insert_with(2, || 2, guard);
            }),
        ),
        (
            "RcuCache::get",
            "RcuCache",
            Box::new(|| {
                let _ = cache.get(&1, guard);
            }),
        ),
        (
            "RcuCache::contains_key",
            "RcuCache",
            Box::new(|| {
                let _ = cache.contains_key(&1, guard);
            }),
        ),
        (
            "RcuCache::get_or_insert_with",
            "RcuCache",
            Box::new(|| {
                let _ = cache.get_or_insert_with(2, || 2, guard);
            }),
        ),
    ];
    for (what, names, call) in cases {
        let msg = panic_of(what, call);
        assert!(
            msg.contains("of domain") && msg.contains(names),
            "{what}: the panic names neither the domains nor the fix: {msg}"
        );
    }
    // Nothing was left locked or half-written: the structures still work,
    // and nothing was inserted under the wrong guard.
    let g = mine.read_lock();
    assert_eq!(cell.load(&g), Some(&1));
    assert_eq!(map.get(&1, &g), Some(&1));
    assert_eq!(map.get(&2, &g), None);
    assert_eq!(*map.get_or_insert_with(3, || 3, &g), 3);
    assert_eq!(cache.get(&2, &g), None);
    drop(g);
    assert!(map.insert(4, 4) && map.remove(&4));
    assert!(cache.insert(5, 5));
    cache.clear();
}

#[test]
fn a_read_guard_of_another_domain_is_refused_by_every_call() {
    let mine = Rcu::new(Config::new()).unwrap();
    let other = Rcu::new(Config::new()).unwrap();
    let guard = other.read_lock();
    each_call_refuses(&mine, &guard);
}

#[test]
fn a_qsbr_guard_of_another_domain_is_refused_by_every_call() {
    let mine = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
    let other = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
    let thread = other.register_qsbr_thread();
    each_call_refuses(&mine, &thread.read_lock());
}
