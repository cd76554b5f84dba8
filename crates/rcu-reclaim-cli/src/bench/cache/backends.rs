//! The caches the cache scenario compares RcuCache with, each as its
//! users would set it up for this workload.
//!
//! moka and quick_cache hand out clones of their values, so they hold
//! `Arc<Vec<u8>>` (a get clones an `Arc`; the value is built once, as
//! papaya's, not copied into an `Arc<Vec<u8>>`); papaya lends a reference
//! under a guard, so it holds `Vec<u8>`. The bounded two weigh an entry as its
//! value's bytes plus its key's, against the same capacity in bytes.

use std::sync::Arc;

use super::{CacheUnderTest, CacheWorkload};

/// A value of `size` bytes of `key as u8`, shared.
fn shared_value(key: u64, size: usize) -> Arc<Vec<u8>> {
    Arc::new(vec![key as u8; size])
}

/// What a bounded backend charges an entry: its value's bytes and its key's.
fn weight(value: &[u8]) -> usize {
    value.len() + size_of::<u64>()
}

/// moka's synchronous cache (`moka::sync::Cache`): TinyLFU admission, LRU
/// eviction, `max_capacity` in bytes through a `weigher`.
pub struct Moka(moka::sync::Cache<u64, Arc<Vec<u8>>>);

impl CacheUnderTest for Moka {
    const NAME: &'static str = "moka";
    const BOUNDED: bool = true;

    fn new(w: &CacheWorkload) -> Result<Self, String> {
        let cache = moka::sync::Cache::builder()
            .max_capacity(w.capacity as u64)
            .weigher(|_k, v: &Arc<Vec<u8>>| u32::try_from(weight(v)).unwrap_or(u32::MAX))
            .build();
        Ok(Moka(cache))
    }

    fn get(&self, key: u64) -> Option<u8> {
        self.0.get(&key).map(|v| v[0])
    }

    fn insert(&self, key: u64, size: usize) {
        self.0.insert(key, shared_value(key, size));
    }

    fn bytes(&self) -> Option<usize> {
        // Its counts lag its writes until its housekeeping runs.
        self.0.run_pending_tasks();
        Some(self.0.weighted_size() as usize)
    }

    fn len(&self) -> usize {
        self.0.run_pending_tasks();
        self.0.entry_count() as usize
    }
}

/// quick_cache's weighter: [`weight`].
#[derive(Clone)]
pub struct Bytes;

impl quick_cache::Weighter<u64, Arc<Vec<u8>>> for Bytes {
    fn weight(&self, _key: &u64, value: &Arc<Vec<u8>>) -> u64 {
        weight(value) as u64
    }
}

/// quick_cache's sharded cache (`quick_cache::sync::Cache`): CLOCK-PRO
/// like eviction, its weight capacity in bytes.
pub struct QuickCache(quick_cache::sync::Cache<u64, Arc<Vec<u8>>, Bytes>);

impl CacheUnderTest for QuickCache {
    const NAME: &'static str = "quick_cache";
    const BOUNDED: bool = true;

    fn new(w: &CacheWorkload) -> Result<Self, String> {
        // It sizes its tables for this many entries: the capacity over the
        // mean value.
        let mean = (w.value_min + w.value_max) / 2 + size_of::<u64>();
        let items = (w.capacity / mean).max(16);
        Ok(QuickCache(quick_cache::sync::Cache::with_weighter(
            items,
            w.capacity as u64,
            Bytes,
        )))
    }

    fn get(&self, key: u64) -> Option<u8> {
        self.0.get(&key).map(|v| v[0])
    }

    fn insert(&self, key: u64, size: usize) {
        self.0.insert(key, shared_value(key, size));
    }

    fn bytes(&self) -> Option<usize> {
        Some(self.0.weight() as usize)
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}

/// papaya's concurrent map (`papaya::HashMap`), with no bound: what a map
/// used as a cache does with a trace of more distinct bytes than memory.
pub struct Papaya(papaya::HashMap<u64, Vec<u8>>);

impl CacheUnderTest for Papaya {
    const NAME: &'static str = "papaya";
    const BOUNDED: bool = false;

    fn new(_w: &CacheWorkload) -> Result<Self, String> {
        Ok(Papaya(papaya::HashMap::new()))
    }

    fn get(&self, key: u64) -> Option<u8> {
        self.0.pin().get(&key).map(|v| v[0])
    }

    fn insert(&self, key: u64, size: usize) {
        self.0.pin().insert(key, vec![key as u8; size]);
    }

    fn bytes(&self) -> Option<usize> {
        None
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each backend keeps what it was given, and the bounded ones stay
    /// within their capacity after far more than it was inserted.
    fn holds_values_within_capacity<C: CacheUnderTest>() {
        let w = CacheWorkload {
            capacity: 1 << 20,
            ..crate::bench::cache::trace::tests::workload()
        };
        let c = C::new(&w).unwrap();
        c.insert(3, 1000);
        assert_eq!(c.get(3), Some(3), "{}", C::NAME);
        assert_eq!(c.get(4), None, "{}", C::NAME);
        for k in 0..200u64 {
            c.insert(k, 20 << 10); // 4 MiB into 1 MiB
        }
        if C::BOUNDED {
            let bytes = c.bytes().unwrap();
            assert!(bytes <= w.capacity, "{}: {bytes}", C::NAME);
            assert!(c.len() < 200, "{}", C::NAME);
        } else {
            assert_eq!(c.len(), 200, "{}", C::NAME);
        }
        assert_eq!(c.get(199).unwrap_or(199), 199, "{}", C::NAME);
        c.finish();
    }

    #[test]
    fn every_backend_holds_its_values_and_the_bounded_ones_their_capacity() {
        holds_values_within_capacity::<Moka>();
        holds_values_within_capacity::<QuickCache>();
        holds_values_within_capacity::<Papaya>();
    }
}
