//! `RcuCache::retain` and keys whose `Hash` misbehaves. The cache's docs
//! say a key's `Hash` runs only in the calls given that key, and
//! `RcuHashMap::retain` calls neither `Hash` nor `Eq`
//! (`map_retain_keys.rs`); but the cache's `retain` hashed every key it
//! removed again, under the key's stripe lock, to book the removal: a key
//! whose `Hash` panics made `retain` panic, and one whose `Hash` changed
//! since its insert had its bytes taken off another shard's count.

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use rcu_reclaim::{Config, Rcu, RcuCache};

/// A key whose `Hash` counts its calls and panics once its flag is set.
#[derive(Clone, Debug)]
struct Key {
    id: u64,
    hashes: Arc<AtomicUsize>,
    refuse: Arc<AtomicBool>,
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        assert!(!self.refuse.load(Ordering::SeqCst), "Key::hash called");
        self.hashes.fetch_add(1, Ordering::SeqCst);
        self.id.hash(state);
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Eq for Key {}

#[test]
fn cache_retain_calls_no_key_hash() {
    let rcu = Rcu::new(Config::new().on_demand()).unwrap();
    let cache = RcuCache::builder()
        .rcu(&rcu)
        .max_bytes(1 << 20)
        .shards(8)
        .weigher(|_: &Key, v: &Vec<u8>| v.len())
        .build();
    let (hashes, refuse) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    for id in 0..64 {
        let key = Key {
            id,
            hashes: hashes.clone(),
            refuse: refuse.clone(),
        };
        cache.insert(key, vec![0u8; 100]);
    }
    assert_eq!(cache.len(), 64);
    let before = hashes.load(Ordering::SeqCst);
    refuse.store(true, Ordering::SeqCst);
    let mut offered = 0;
    cache.retain(|k, _| {
        offered += 1;
        k.id % 2 == 0
    });
    refuse.store(false, Ordering::SeqCst);
    assert_eq!(offered, 64, "retain offered every entry");
    assert_eq!(hashes.load(Ordering::SeqCst), before, "retain hashed keys");
    assert_eq!(cache.len(), 32);
    let weight = RcuCache::<Key, Vec<u8>>::ENTRY_OVERHEAD + 100;
    assert_eq!(cache.bytes(), 32 * weight);
    {
        let guard = cache.domain().read_lock();
        assert_eq!(cache.iter(&guard).count(), 32);
        assert!(cache.iter(&guard).all(|(k, _)| k.id % 2 == 0));
    }
    // The rest is still evicted and cleared as booked.
    cache.clear();
    assert_eq!(cache.bytes(), 0);
    drop(cache);
    rcu.barrier();
    assert_eq!(rcu.pending_bytes(), 0);
}
