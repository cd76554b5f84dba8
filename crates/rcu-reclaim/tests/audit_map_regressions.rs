//! Regressions found by an audit of `RcuHashMap` and `RcuCache`.

use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use rcu_reclaim::{Config, Rcu, RcuCache};

/// An identity hasher, as `nohash-hasher` gives for integer keys: the
/// stripe of a key is its low 6 bits.
#[derive(Clone, Default)]
struct Identity;
struct IdentityHasher(u64);
impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0 << 8 | u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}
impl BuildHasher for Identity {
    type Hasher = IdentityHasher;
    fn build_hasher(&self) -> IdentityHasher {
        IdentityHasher(0)
    }
}

/// A two-level cache: the first level's loader (run under its stripe
/// lock) fills the second, of another domain. Past the second's backlog
/// allowance, that insert ran an expedited grace period of the second's
/// domain under the first's lock, while a reader of that domain waited for
/// the lock to write the first level: neither ever went on.
#[test]
fn a_loader_filling_a_cache_of_another_domain_does_not_wait_for_its_readers() {
    let rcu1 = Rcu::new(Config::new()).unwrap();
    let rcu2 = Rcu::new(Config::new()).unwrap();
    let first: Arc<RcuCache<u64, u64, Identity>> = Arc::new(
        RcuCache::builder()
            .rcu(&rcu1)
            .max_bytes(1 << 20)
            .hasher(Identity)
            .build(),
    );
    let second: Arc<RcuCache<u64, Vec<u8>>> =
        Arc::new(RcuCache::builder().rcu(&rcu2).max_bytes(64 << 10).build());
    let both_ready = Arc::new(Barrier::new(2));
    let (tx, rx) = std::sync::mpsc::channel();
    {
        let (first, second, both_ready, tx) = (
            first.clone(),
            second.clone(),
            both_ready.clone(),
            tx.clone(),
        );
        thread::spawn(move || {
            let guard = first.domain().read_lock();
            first.get_or_insert_with(
                1,
                || {
                    both_ready.wait();
                    // The reader below is waiting for this stripe now.
                    thread::sleep(Duration::from_millis(50));
                    // 2 MiB through a 64 KiB cache: its backlog passes the
                    // allowance.
                    for i in 0..256u64 {
                        second.insert(i, vec![0u8; 8 << 10]);
                    }
                    1
                },
                &guard,
            );
            let _ = tx.send("loader");
        });
    }
    {
        let (first, both_ready, tx) = (first.clone(), both_ready.clone(), tx.clone());
        thread::spawn(move || {
            let _reading_the_second_level = rcu2.read_lock();
            both_ready.wait();
            first.insert(65, 65); // key 65 shares key 1's stripe
            let _ = tx.send("reader");
        });
    }
    let mut done = Vec::new();
    while let Ok(who) = rx.recv_timeout(Duration::from_secs(10)) {
        done.push(who);
        if done.len() == 2 {
            break;
        }
    }
    assert_eq!(done.len(), 2, "deadlock: only {done:?} finished");
}

/// A key rewritten with weights near the largest capacity leaves stale
/// queue items whose weights, summed, overflowed `usize` (an overflow
/// panic in debug builds, under the policy's lock, leaving the new entry
/// unqueued).
#[test]
fn stale_items_of_huge_weights_do_not_overflow() {
    let rcu = Rcu::new(Config::new().on_demand()).unwrap();
    let overhead = RcuCache::<u64, u64>::ENTRY_OVERHEAD;
    let cache = RcuCache::<u64, u64>::builder()
        .rcu(&rcu)
        .max_bytes(usize::MAX)
        .shards(1)
        .weigher(move |_: &u64, v: &u64| isize::MAX as usize - overhead - 10 + *v as usize)
        .build();
    for v in 0..6u64 {
        assert!(cache.insert(1, v));
        assert!(cache.bytes() <= cache.max_bytes());
    }
    for k in 2..6u64 {
        assert!(cache.insert(k, 3));
        assert!(cache.bytes() <= cache.max_bytes());
    }
    assert_eq!(cache.len(), 1);
    cache.clear();
    assert_eq!((cache.len(), cache.bytes()), (0, 0));
    drop(cache);
    rcu.barrier();
    assert_eq!(rcu.pending_bytes(), 0);
}
