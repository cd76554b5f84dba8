//! The hash table, generic over the reclamation backend: readers look keys
//! up inside a read-side section; writers copy a bucket's chain under the
//! bucket's lock, publish the new version and retire the old one; the
//! shrinker evicts entries the same way and frees them through the backend.

use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rcu_reclaim::reclaim::{Scanned, ShrinkControl, Shrinker};

use super::garbage::{FREED, PEAK_GARBAGE, RETIRED};
use super::{Backend, Chain, Entry, Node};

/// One bucket: writers serialize on the lock; readers load the slot.
struct Bucket {
    lock: Mutex<()>,
    slot: AtomicPtr<Node>,
}

impl Drop for Bucket {
    /// Frees the live version: a bucket goes with its table, once no
    /// thread can use the table any more.
    fn drop(&mut self) {
        let p = std::mem::replace(self.slot.get_mut(), std::ptr::null_mut());
        if !p.is_null() {
            // SAFETY: `&mut self`: no reader or writer is left; a slot only
            // holds nodes from `Node::boxed`, and the live version was
            // never retired, so this is its only free.
            unsafe { Node::free(p) };
        }
    }
}

/// The hash table.
pub struct Table<B: Backend> {
    backend: B,
    buckets: Vec<Bucket>,
    entries: AtomicUsize,
    /// Where the shrinker resumes.
    cursor: AtomicUsize,
    /// Evictions by the shrinker.
    pub evicted: AtomicU64,
}

impl<B: Backend> Table<B> {
    /// An empty table with `buckets` buckets (rounded up to a power of two).
    pub fn new(backend: B, buckets: usize) -> Table<B> {
        Table {
            backend,
            buckets: (0..buckets.max(1).next_power_of_two())
                .map(|_| Bucket {
                    lock: Mutex::new(()),
                    slot: AtomicPtr::new(Node::boxed(Vec::new())),
                })
                .collect(),
            entries: AtomicUsize::new(0),
            cursor: AtomicUsize::new(0),
            evicted: AtomicU64::new(0),
        }
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    #[inline]
    fn bucket(&self, key: u64) -> &Bucket {
        let h = key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 20;
        &self.buckets[h as usize & (self.buckets.len() - 1)]
    }

    /// Looks `key` up inside one read-side section; returns the payload's
    /// first byte.
    #[inline]
    pub fn lookup(&self, local: &B::Local<'_>, key: u64) -> Option<u8> {
        let guard = self.backend.pin(local);
        let node = self.backend.load(&guard, &self.bucket(key).slot)?;
        node.chain
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, e)| e.payload.first().copied().unwrap_or(0))
    }

    /// Publishes `chain` in `bucket` (whose lock the caller holds) and
    /// retires the old version, accounting `extra` bytes (entries only the
    /// old version keeps alive) besides the old version's own. Returns the
    /// garbage right after the retire.
    ///
    /// The new version is allocated before the read-side section, which
    /// covers only the publish and the retire: a `malloc` inside a section
    /// can block on the allocator's lock, and a section blocked (or
    /// preempted) holds up every grace period, and with it every free.
    fn replace(&self, local: &B::Local<'_>, bucket: &Bucket, chain: Chain, extra: usize) -> u64 {
        let new = Node::boxed(chain);
        let guard = self.backend.pin(local);
        let old = self.backend.publish(&guard, &bucket.slot, new);
        // SAFETY: `old` came from `Node::boxed` (every slot starts with one
        // and only ever gets them), and the bucket lock makes this thread
        // the only one that unlinked it.
        let old_ref = unsafe { &*old };
        let bytes = old_ref.own_bytes() + extra;
        old_ref.set_retired_bytes(bytes);
        let retired = RETIRED.fetch_add(bytes as u64, Ordering::AcqRel) + bytes as u64;
        // SAFETY: unlinked above, retired once, by this thread.
        unsafe { self.backend.retire(&guard, old, bytes) };
        drop(guard);
        let garbage = retired.saturating_sub(FREED.load(Ordering::Acquire));
        // Load first: the peak's line then stays shared until it moves.
        if garbage > PEAK_GARBAGE.load(Ordering::Relaxed) {
            PEAK_GARBAGE.fetch_max(garbage, Ordering::Relaxed);
        }
        garbage
    }

    /// A copy of the bucket's chain. The caller holds the bucket's lock,
    /// and only a holder of that lock unlinks (and retires) the bucket's
    /// version, so the version stays valid without a read-side section:
    /// the copy's `malloc` runs outside any section (see `replace`).
    fn copy(&self, bucket: &Bucket) -> Chain {
        // SAFETY: a slot always holds a node from `Node::boxed`, published
        // with Release (the Acquire load sees it whole); it is unlinked and
        // retired only under the bucket's lock, which the caller holds for
        // as long as it uses the reference.
        let node = unsafe { &*bucket.slot.load(Ordering::Acquire) };
        node.chain.clone()
    }

    /// Inserts or replaces `key`; returns the garbage after its retire.
    pub fn upsert(&self, local: &B::Local<'_>, key: u64, payload: Vec<u8>) -> u64 {
        let bucket = self.bucket(key);
        let entry = Arc::new(Entry { payload });
        let _held = bucket.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut chain = self.copy(bucket);
        let mut freed = 0;
        if let Some(pos) = chain.iter().position(|(k, _)| *k == key) {
            freed = chain[pos].1.bytes();
            chain[pos].1 = entry;
        } else {
            chain.push((key, entry));
            self.entries.fetch_add(1, Ordering::Relaxed);
        }
        self.replace(local, bucket, chain, freed)
    }

    /// Deletes `key`; returns the garbage after its retire, if it was there.
    pub fn remove(&self, local: &B::Local<'_>, key: u64) -> Option<u64> {
        let bucket = self.bucket(key);
        let _held = bucket.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut chain = self.copy(bucket);
        let pos = chain.iter().position(|(k, _)| *k == key)?;
        let freed = chain.remove(pos).1.bytes();
        self.entries.fetch_sub(1, Ordering::Relaxed);
        Some(self.replace(local, bucket, chain, freed))
    }

    /// Fills the table before it is shared: `key -> payload(key)` for
    /// every key `payload` gives one for. Nothing is retired.
    pub fn prefill(&mut self, keys: u64, mut payload: impl FnMut(u64) -> Option<Vec<u8>>) {
        let mask = self.buckets.len() - 1;
        for key in 0..keys {
            let Some(p) = payload(key) else { continue };
            let entry = Arc::new(Entry { payload: p });
            *self.entries.get_mut() += 1;
            let h = key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 20;
            let slot = self.buckets[h as usize & mask].slot.get_mut();
            // SAFETY: `&mut self`: the table is not shared yet, and slots
            // always hold a node from `Node::boxed`.
            unsafe { (**slot).chain.push((key, entry)) };
        }
    }

    /// Entries cached.
    pub fn len(&self) -> usize {
        self.entries.load(Ordering::Relaxed)
    }

    /// Bytes cached (entries and payloads, as [`Entry::bytes`] counts
    /// them), added up bucket by bucket, each inside its own read-side
    /// section: exact once writers have stopped, an estimate while they run.
    pub fn bytes(&self, local: &B::Local<'_>) -> usize {
        self.buckets
            .iter()
            .map(|b| {
                let guard = self.backend.pin(local);
                self.backend
                    .load(&guard, &b.slot)
                    .map_or(0, |n| n.chain.iter().map(|(_, e)| e.bytes()).sum())
            })
            .sum()
    }

    /// Frees the live versions (no thread uses the table any more), then
    /// lets the backend free everything retired.
    pub fn finish(self) {
        let Table {
            backend, buckets, ..
        } = self;
        drop(buckets);
        backend.finish();
    }
}

impl<B: Backend> Shrinker for Table<B> {
    fn count(&self, _: &ShrinkControl) -> usize {
        self.len()
    }

    /// Evicts up to `nr_to_scan` entries, bucket by bucket from a cursor;
    /// buckets a writer holds are skipped.
    fn scan(&self, ctl: &mut ShrinkControl) -> Scanned {
        let local = self.backend.local();
        let (mut freed, mut bytes, mut visited) = (0, 0, 0);
        let n = self.buckets.len();
        while freed < ctl.nr_to_scan() && visited < n {
            let bucket = &self.buckets[self.cursor.fetch_add(1, Ordering::Relaxed) % n];
            visited += 1;
            let Ok(_held) = bucket.lock.try_lock() else {
                continue;
            };
            let chain = self.copy(bucket);
            if chain.is_empty() {
                continue;
            }
            let take = (ctl.nr_to_scan() - freed).min(chain.len());
            let evicted: usize = chain[..take].iter().map(|(_, e)| e.bytes()).sum();
            let rest = chain[take..].to_vec();
            drop(chain);
            self.entries.fetch_sub(take, Ordering::Relaxed);
            self.evicted.fetch_add(take as u64, Ordering::Relaxed);
            freed += take;
            bytes += evicted;
            self.replace(&local, bucket, rest, evicted);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dcache::{reset_counters, Ours};
    use rcu_reclaim::pressure::NodeMask;

    /// Upserts, removes and a shrink on the rcu-reclaim backend keep the
    /// entry count and byte count right, and every retired byte is freed.
    #[test]
    fn counts_entries_and_bytes_and_frees_what_it_retires() {
        let table = Table::new(<Ours>::new().expect("a domain"), 8);
        reset_counters();
        for key in 0..100 {
            table.upsert(&(), key, vec![key as u8; 100]);
        }
        table.upsert(&(), 7, vec![1; 300]);
        assert_eq!(table.remove(&(), 8).map(|_| ()), Some(()));
        assert_eq!(table.remove(&(), 8), None);
        assert_eq!(table.len(), 99);
        assert_eq!(table.lookup(&(), 7), Some(1));
        assert_eq!(table.lookup(&(), 8), None);
        let entry = |n: usize| {
            Entry {
                payload: vec![0; n],
            }
            .bytes()
        };
        let bytes = table.bytes(&());
        assert_eq!(bytes, 98 * entry(100) + entry(300));
        let mut ctl = ShrinkControl::new(NodeMask::node(0), 12, 10);
        let scanned = table.scan(&mut ctl);
        assert_eq!(scanned.freed, 10);
        assert_eq!(table.len(), 89);
        assert_eq!(table.bytes(&()), bytes - scanned.bytes);
        assert_eq!(table.evicted.load(Ordering::Relaxed), 10);
        table.finish();
        assert_eq!(RETIRED.load(Ordering::SeqCst), FREED.load(Ordering::SeqCst));
    }
}
