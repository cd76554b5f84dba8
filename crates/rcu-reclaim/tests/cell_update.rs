//! `RcuCell::compare_exchange` and `update`: several writers without a
//! lock, readers checking what they load, every version dropped once.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

use rcu_reclaim::{Config, Rcu, RcuCell, ReclaimSize};

mod common;
use common::CountedPlain;
use common::StopOnDrop;

static LIVE: AtomicUsize = AtomicUsize::new(0);

/// A version whose `check` is poisoned on drop.
struct Version {
    n: u64,
    check: u64,
}

impl Version {
    fn new(n: u64) -> Box<Version> {
        LIVE.fetch_add(1, Ordering::SeqCst);
        Box::new(Version { n, check: !n })
    }
}

impl Drop for Version {
    fn drop(&mut self) {
        assert_eq!(self.check, !self.n, "dropped twice");
        self.check = 0xdead;
        LIVE.fetch_sub(1, Ordering::SeqCst);
    }
}

impl ReclaimSize for Version {
    fn reclaim_size(&self) -> usize {
        size_of::<Self>()
    }
}

#[test]
fn writers_update_without_a_lock_and_lose_no_increment() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let cell = Arc::new(RcuCell::new_in(&rcu, Some(Version::new(0))));
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (cell, stop) = (cell.clone(), stop.clone());
            thread::spawn(move || {
                let mut last = 0;
                while !stop.load(Ordering::Relaxed) {
                    let guard = cell.domain().read_lock();
                    let v = cell.load(&guard).expect("never emptied");
                    assert_eq!(v.check, !v.n, "read a freed version");
                    assert!(v.n >= last, "went back from {last} to {}", v.n);
                    last = v.n;
                }
            })
        })
        .collect();
    let _stop = StopOnDrop(&stop);
    const WRITERS: u64 = 4;
    const EACH: u64 = if cfg!(miri) { 150 } else { 5_000 };
    let writers: Vec<_> = (0..WRITERS)
        .map(|_| {
            let cell = cell.clone();
            thread::spawn(move || {
                let mut runs = 0;
                for _ in 0..EACH {
                    runs += cell.update(|v| Some(Version::new(v.map_or(0, |v| v.n) + 1)));
                }
                runs
            })
        })
        .collect();
    let runs: usize = writers.into_iter().map(|w| w.join().unwrap()).sum();
    stop.store(true, Ordering::Relaxed);
    readers.into_iter().for_each(|r| r.join().unwrap());
    assert!(runs >= (WRITERS * EACH) as usize);
    {
        let guard = rcu.read_lock();
        assert_eq!(cell.load(&guard).map(|v| v.n), Some(WRITERS * EACH));
    }
    rcu.barrier();
    // Every version made (the published ones and those that lost a race)
    // is dropped, once, but the one the cell holds.
    assert_eq!(LIVE.load(Ordering::SeqCst), 1);
    drop(cell);
    assert_eq!(LIVE.load(Ordering::SeqCst), 0);
}

#[test]
fn a_compare_exchange_against_a_stale_value_hands_the_new_one_back() {
    let cell = RcuCell::new(String::from("a"));
    let guard = cell.domain().read_lock();
    let stale = cell.load(&guard);
    let other = String::from("a");
    // Equal contents, another address: not the value the cell holds.
    let e = cell
        .compare_exchange(Some(&other), Some(Box::new("b".into())), &guard)
        .unwrap_err();
    assert_eq!(e.current.map(String::as_str), Some("a"));
    assert_eq!(e.new.as_deref().map(String::as_str), Some("b"));
    // Emptying through an exchange hands the old value back as Retired.
    let old = cell.compare_exchange(stale, None, &guard).unwrap().unwrap();
    assert_eq!(&*old, "a");
    assert!(cell.load(&guard).is_none());
    // Filling an empty cell expects None.
    assert!(matches!(
        cell.compare_exchange(None, Some(Box::new("c".into())), &guard),
        Ok(None)
    ));
    drop(guard);
    old.defer_drop();
}

#[test]
#[should_panic(expected = "compare_exchange with a guard of domain")]
fn a_compare_exchange_with_another_domains_guard_panics() {
    let other = Rcu::new(Config::new()).unwrap();
    let cell = RcuCell::new(1);
    let guard = other.read_lock();
    let _ = cell.compare_exchange(None, Some(Box::new(2)), &guard);
}

#[test]
fn a_compare_exchange_result_dropped_in_its_section_is_deferred_not_waited_for() {
    // `assert!(cell.compare_exchange(..).is_ok())` drops the previous value
    // inside the section: it must neither panic, nor wait (no grace period
    // can end), nor free the value under the section's reader.
    for rcu in [
        Rcu::new(Config::new().on_demand()).unwrap(),
        Rcu::new(Config::new()).unwrap(),
    ] {
        let drops = Arc::new(AtomicUsize::new(0));
        let cell = RcuCell::new_in(&rcu, Some(Box::new(CountedPlain(drops.clone()))));
        let guard = rcu.read_lock();
        let seen = cell.load(&guard);
        let new = Box::new(CountedPlain(drops.clone()));
        assert!(cell.compare_exchange(seen, Some(new), &guard).is_ok());
        // The reader still holds the old value: not dropped yet.
        let old: &CountedPlain = seen.unwrap();
        assert_eq!(old.0.load(Ordering::SeqCst), 0);
        assert_eq!(rcu.pending(), 1);
        drop(guard);
        rcu.barrier();
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        drop(cell);
        assert_eq!(drops.load(Ordering::SeqCst), 2);
        assert_eq!(rcu.pending(), 0);
    }
}
