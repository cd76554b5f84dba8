//! The dentry-cache-like workload shared by `demo` (and later `bench`): an
//! RCU hash table whose readers look keys up without locks, whose writers
//! insert, replace and delete under per-bucket locks, and whose shrinker
//! evicts entries and frees them through RCU.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rcu_reclaim::reclaim::{Scanned, ShrinkControl, Shrinker};
use rcu_reclaim::{Rcu, RcuCell};

/// A small, fast generator (xorshift64*): the workload needs speed and
/// spread, not cryptographic quality.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Skewed towards small values (hot keys): the square of a uniform.
    pub fn skewed(&mut self, n: u64) -> u64 {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        ((u * u) * n as f64) as u64 % n
    }
}

/// One cached entry's payload (its key lives in the bucket's chain).
pub struct Entry {
    pub payload: Vec<u8>,
}

impl Entry {
    fn bytes(&self) -> usize {
        std::mem::size_of::<Entry>() + self.payload.capacity()
    }
}

/// A bucket's entries, each with its key inline so a lookup compares keys
/// without touching the entries it passes over.
type Chain = Vec<(u64, Arc<Entry>)>;

/// The RCU hash table.
pub struct DCache {
    rcu: Rcu,
    buckets: Vec<(Mutex<()>, RcuCell<Chain>)>,
    entries: AtomicUsize,
    bytes: AtomicUsize,
    /// Where the shrinker resumes (the kernel's LRU walk, simplified).
    cursor: AtomicUsize,
}

impl DCache {
    pub fn new(rcu: &Rcu, buckets: usize) -> DCache {
        DCache {
            rcu: rcu.clone(),
            buckets: (0..buckets.max(1))
                .map(|_| {
                    (
                        Mutex::new(()),
                        RcuCell::new_in(rcu, Some(Box::new(Vec::new()))),
                    )
                })
                .collect(),
            entries: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            cursor: AtomicUsize::new(0),
        }
    }

    fn bucket(&self, key: u64) -> &(Mutex<()>, RcuCell<Chain>) {
        &self.buckets[(key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 20) as usize % self.buckets.len()]
    }

    /// Looks `key` up without locks; returns the payload's first byte.
    pub fn lookup(&self, key: u64) -> Option<u8> {
        let guard = self.rcu.read_lock();
        let chain = self.bucket(key).1.load(&guard)?;
        chain
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, e)| e.payload.first().copied().unwrap_or(0))
    }

    /// Publishes `chain` for the bucket and defers the old one's drop,
    /// accounting the bytes that the old version alone keeps alive.
    fn publish(&self, cell: &RcuCell<Chain>, chain: Chain, freed: usize) {
        if let Some(old) = cell.replace(Box::new(chain)) {
            old.defer_drop_sized(freed + std::mem::size_of::<Chain>());
        }
    }

    /// Inserts or replaces `key`.
    pub fn upsert(&self, key: u64, payload: Vec<u8>) {
        let (lock, cell) = self.bucket(key);
        let entry = Arc::new(Entry { payload });
        let added = entry.bytes();
        let _held = lock.lock().unwrap_or_else(|p| p.into_inner());
        let guard = self.rcu.read_lock();
        let mut chain: Chain = cell.load(&guard).cloned().unwrap_or_default();
        drop(guard);
        let mut freed = 0;
        if let Some(pos) = chain.iter().position(|(k, _)| *k == key) {
            freed = chain[pos].1.bytes();
            chain[pos].1 = entry;
        } else {
            chain.push((key, entry));
            self.entries.fetch_add(1, Ordering::Relaxed);
        }
        self.bytes.fetch_add(added, Ordering::Relaxed);
        self.bytes.fetch_sub(freed, Ordering::Relaxed);
        self.publish(cell, chain, freed);
    }

    /// Deletes `key`; returns whether it was there.
    pub fn remove(&self, key: u64) -> bool {
        let (lock, cell) = self.bucket(key);
        let _held = lock.lock().unwrap_or_else(|p| p.into_inner());
        let guard = self.rcu.read_lock();
        let mut chain: Chain = cell.load(&guard).cloned().unwrap_or_default();
        drop(guard);
        let Some(pos) = chain.iter().position(|(k, _)| *k == key) else {
            return false;
        };
        let freed = chain.remove(pos).1.bytes();
        self.entries.fetch_sub(1, Ordering::Relaxed);
        self.bytes.fetch_sub(freed, Ordering::Relaxed);
        self.publish(cell, chain, freed);
        true
    }

    /// Entries cached.
    pub fn len(&self) -> usize {
        self.entries.load(Ordering::Relaxed)
    }

    /// Bytes cached (entries and payloads).
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }
}

impl Shrinker for DCache {
    fn count(&self, _: &ShrinkControl) -> usize {
        self.len()
    }

    /// Evicts up to `nr_to_scan` entries, bucket by bucket from a cursor;
    /// buckets a writer holds are skipped (`try_lock`).
    fn scan(&self, ctl: &mut ShrinkControl) -> Scanned {
        let mut freed = 0;
        let mut bytes = 0;
        let n = self.buckets.len();
        let mut visited = 0;
        while freed < ctl.nr_to_scan() && visited < n {
            let i = self.cursor.fetch_add(1, Ordering::Relaxed) % n;
            visited += 1;
            let (lock, cell) = &self.buckets[i];
            let Ok(_held) = lock.try_lock() else { continue };
            let guard = self.rcu.read_lock();
            let Some(chain) = cell.load(&guard).cloned() else {
                continue;
            };
            drop(guard);
            if chain.is_empty() {
                continue;
            }
            let take = (ctl.nr_to_scan() - freed).min(chain.len());
            let evicted: usize = chain[..take].iter().map(|(_, e)| e.bytes()).sum();
            let rest = chain[take..].to_vec();
            self.entries.fetch_sub(take, Ordering::Relaxed);
            self.bytes.fetch_sub(evicted, Ordering::Relaxed);
            freed += take;
            bytes += evicted;
            self.publish(cell, rest, evicted);
        }
        ctl.set_scanned(ctl.nr_to_scan());
        Scanned { freed, bytes }
    }

    fn frees_via_rcu(&self) -> bool {
        true
    }

    fn name(&self) -> &str {
        "dcache"
    }
}
