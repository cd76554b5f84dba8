//! Eviction: taking entries out of the cache's shards by their policy
//! (`evict`, `evict_across`), and the cache's map as the policy's
//! [`Store`], whose unlinked entries are retired, and discarded keys
//! dropped, once the shard's lock is released ([`Unlocked`]).

use std::cell::RefCell;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::Ordering;

use super::entry::Entry;
use super::policy::{Busy, S3Fifo, Store};
use super::shards::Shard;
use super::Inner;
use crate::guard::ReadGuard;
use crate::map::{StripeBusy, Unlinked};

impl<K, V, S> Inner<K, V, S>
where
    K: Hash + Eq + Send + 'static,
    V: Send + 'static,
    S: BuildHasher,
{
    /// Evicts from the shards in turn until the cache holds at most
    /// `target` bytes, at most `max` entries in all: first each shard down
    /// to its share of `target` (at most its share of `max`, so that a
    /// reclaim pass evicts by every shard's policy), then, should the
    /// cache still be over, whatever any shard holds. With `try_only` (a
    /// reclaim pass) a shard whose lock stays busy is skipped
    /// ([`Shard::try_lock_queues`](super::shards::Shard::try_lock_queues)), and `None` says that
    /// none could be had; else each lock is waited for, one at a time.
    /// The shards are taken in turn from the one after shard `last` (a
    /// writer's own shard goes last: it has evicted what it could).
    /// Returns the entries and bytes evicted, each shard's retired once
    /// its lock is released.
    pub(super) fn evict_across(
        &self,
        target: usize,
        max: usize,
        try_only: bool,
        last: usize,
    ) -> Option<(usize, usize)> {
        let shards = &self.policy;
        let share = shards.share(target);
        let per_shard = max.div_ceil(shards.count());
        let (mut n, mut bytes, mut locked) = (0, 0, false);
        for pass in 0..2 {
            for shard in shards.iter_ending_at(last) {
                if n >= max || shards.bytes() <= target {
                    return Some((n, bytes));
                }
                // The first pass evicts only from shards above their share:
                // one at or under it is passed over without taking its lock
                // (with 16 writers, an insert over the capacity locked every
                // shard in turn to find the few above theirs).
                if pass == 0 && shard.bytes.load(Ordering::Relaxed) <= share {
                    continue;
                }
                let held = if try_only {
                    shard.try_lock_queues()
                } else {
                    Some(shard.lock_queues(self.map.domain()))
                };
                let Some(mut queues) = held else {
                    continue;
                };
                locked = true;
                let (k, b, unlinked) = if pass == 0 {
                    let over = || shard.bytes.load(Ordering::Relaxed) > share;
                    self.evict(shard, &mut queues, over, per_shard.min(max - n))
                } else {
                    self.evict(shard, &mut queues, || shards.bytes() > target, max - n)
                };
                drop(queues);
                drop(unlinked);
                n += k;
                bytes += b;
            }
        }
        locked.then_some((n, bytes))
    }

    /// Evicts from `shard`'s `queues` (at most `max` entries) while
    /// `over` says so: the entries and bytes evicted, and the entries
    /// unlinked and keys discarded, to drop (retiring the entries) once the
    /// caller has released the shard's lock.
    pub(super) fn evict<'a>(
        &'a self,
        shard: &'a Shard<K>,
        queues: &mut S3Fifo<K>,
        over: impl Fn() -> bool,
        max: usize,
    ) -> (usize, usize, Unlocked<'a, K, V, S>) {
        let (mut n, mut bytes) = (0, 0);
        let guard = self.map.domain().read_lock();
        let store = MapStore::of_shard(self, &guard, shard);
        // Small's size is a share of the shard's share of `max_bytes`.
        let cap = self.policy.share(self.cap.max());
        while n < max && over() {
            match queues.evict(cap, &store) {
                Some(w) => {
                    n += 1;
                    bytes += w;
                }
                None => break,
            }
        }
        (n, bytes, store.into_unlocked())
    }
}

/// What one eviction unlinks or discards: usually an entry or two, kept
/// inline (a `Vec` here was two allocations and two frees per insert that
/// evicts, a tenth of an insert's instructions).
type Few<T> = smallvec::SmallVec<[T; 2]>;

/// An entry evicted from the cache's map, retired when dropped.
pub(super) type EntryUnlinked<'a, K, V, S> = Unlinked<'a, K, Entry<V>, S>;

/// What a [`MapStore`] leaves to do once the shard's lock is released:
/// the entries it unlinked, retired as this drops, then the keys of the
/// queue items it discarded, dropped (their `Drop` may write to the cache,
/// which under the lock waited for the lock).
pub(super) struct Unlocked<'a, K, V, S>
where
    K: Hash + Eq + Send + 'static,
    V: Send + 'static,
    S: BuildHasher,
{
    // Fields drop in order: the entries are retired first.
    _unlinked: Few<EntryUnlinked<'a, K, V, S>>,
    _keys: Few<K>,
}

/// The cache's map as the policy's [`Store`], inside a read-side section.
/// Entries it removes are unlinked at once and kept in `unlinked`, to be
/// retired when that drops: after the caller has released the shard's
/// lock, as the keys it is given to discard are dropped.
pub(super) struct MapStore<'a, 'g, K, V, S>
where
    K: Hash + Eq + Send + 'static,
    V: Send + 'static,
    S: BuildHasher,
{
    inner: &'a Inner<K, V, S>,
    guard: &'g ReadGuard<'g>,
    /// The shard whose queues the store serves, when the caller has it:
    /// each of its entries' hashes picks it, so a removal books its bytes
    /// there without finding the shard again.
    shard: Option<&'a Shard<K>>,
    unlinked: RefCell<Few<EntryUnlinked<'a, K, V, S>>>,
    discarded: RefCell<Few<K>>,
}

impl<'a, 'g, K, V, S> MapStore<'a, 'g, K, V, S>
where
    K: Hash + Eq + Send + 'static,
    V: Send + 'static,
    S: BuildHasher,
{
    pub(super) fn new(inner: &'a Inner<K, V, S>, guard: &'g ReadGuard<'g>) -> Self {
        Self::with_shard(inner, guard, None)
    }

    /// [`new`](Self::new), for the queues of `shard` alone.
    pub(super) fn of_shard(
        inner: &'a Inner<K, V, S>,
        guard: &'g ReadGuard<'g>,
        shard: &'a Shard<K>,
    ) -> Self {
        Self::with_shard(inner, guard, Some(shard))
    }

    #[inline]
    fn with_shard(
        inner: &'a Inner<K, V, S>,
        guard: &'g ReadGuard<'g>,
        shard: Option<&'a Shard<K>>,
    ) -> Self {
        MapStore {
            inner,
            guard,
            shard,
            unlinked: RefCell::new(Few::new()),
            discarded: RefCell::new(Few::new()),
        }
    }

    /// Removes the entry `id` filed under `hash` if it is still there (its
    /// weight), waiting for its stripe if `wait`, else `Err(Busy)` when
    /// another thread holds it.
    #[track_caller]
    pub(super) fn take(&self, hash: u64, id: u64, wait: bool) -> Result<Option<usize>, Busy> {
        let mut weight = 0;
        let is = |e: &Entry<V>| {
            let it = e.id == id;
            if it {
                weight = e.weight;
            }
            it
        };
        let unlinked = if wait {
            self.inner.map.unlink_hashed_by(hash, is)
        } else {
            self.inner
                .map
                .try_unlink_hashed_by(hash, is)
                .map_err(|StripeBusy| Busy)?
        };
        let Some(unlinked) = unlinked else {
            return Ok(None);
        };
        self.unlinked.borrow_mut().push(unlinked);
        match self.shard {
            Some(shard) => self.inner.policy.rebook_in(shard, weight, 0),
            None => self.inner.policy.rebook(hash, weight, 0),
        }
        Ok(Some(weight))
    }

    /// Retires the entries unlinked so far (with no shard lock held).
    pub(super) fn retire_unlinked(&self) {
        drop(self.unlinked.take());
    }

    /// What is left to do once the shard's lock is released.
    pub(super) fn into_unlocked(self) -> Unlocked<'a, K, V, S> {
        Unlocked {
            _unlinked: self.unlinked.into_inner(),
            _keys: self.discarded.into_inner(),
        }
    }
}

impl<K, V, S> Store<K> for MapStore<'_, '_, K, V, S>
where
    K: Hash + Eq + Send + 'static,
    V: Send + 'static,
    S: BuildHasher,
{
    // Both find the entry by its hash and id, never by the key: the key's
    // `Eq` is the user's code, and one that panicked here did so under the
    // shard's lock, while one that is not reflexive (or a `Clone` that
    // makes a key unequal to the original, the queued one) left its
    // entries in the map for good, counted, over the capacity and out of
    // `clear`'s reach. Ids are unique, and the hash is the one the entry
    // was filed under.
    fn visit(
        &self,
        _key: &K,
        hash: u64,
        id: u64,
        next: impl FnOnce(u8) -> Option<u8>,
    ) -> Option<u8> {
        let e = self
            .inner
            .map
            .get_hashed_by(hash, |e| e.id == id, self.guard)?;
        let freq = e.freq();
        if let Some(f) = next(freq) {
            e.set_freq(f);
        }
        Some(freq)
    }

    // Never waits for the entry's stripe: this thread holds the policy
    // shard's lock, and the stripe's holder (a `get_or_insert_with`
    // closure) may be writing to a map whose writer, inside its own
    // closure, waits for that shard lock.
    fn remove(&self, _key: &K, hash: u64, id: u64) -> Result<Option<usize>, Busy> {
        self.take(hash, id, false)
    }

    fn discard(&self, key: K) {
        // A key without drop glue runs no code as it drops: at once.
        if std::mem::needs_drop::<K>() {
            self.discarded.borrow_mut().push(key);
        }
    }
}
