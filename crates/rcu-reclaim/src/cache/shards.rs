//! The eviction policy of an [`RcuCache`](super::RcuCache), split by key
//! hash into shards, as quick_cache and the kernel's per-node LRU lists
//! split theirs: each shard has its own S3-FIFO queues, its own lock and
//! its own share of the capacity, so writers of different keys queue and
//! evict side by side instead of one after the other under one lock (at
//! two threads the cache bench's inserts spent 3 % of their time waiting
//! for the single lock, and that lock serialized every insert of a
//! 16-thread cache).
//!
//! The capacity is the whole cache's: a writer whose insert takes the
//! cache over it evicts from its own shard, down to seven eighths of the
//! shard's share of the capacity at most ([`evict_floor`]), then, should
//! the cache still be over, from the shards above their share, then from
//! any. A shard's bytes so stay near its share as keys come and go (one
//! that has shrunk takes its room back from those above theirs), and an
//! entry heavier than a share is cached while the cache has room for it,
//! as in a cache of one shard.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use crossbeam_utils::CachePadded;

use super::policy::S3Fifo;
use crate::domain::Rcu;
use crate::lock_holder::{Holder, HolderMark};

/// The most shards a cache has.
pub(crate) const MAX_SHARDS: usize = 64;

/// The least share of the capacity a shard gets when the builder chooses
/// the number of shards: a cache smaller than two of these has one
/// shard, so a small cache evicts exactly as one S3-FIFO would.
pub(crate) const MIN_SHARE: usize = 1 << 20;

/// Shards per CPU when the builder chooses: two, so that two writers
/// rarely meet on one lock.
const SHARDS_PER_CPU: usize = 2;

/// One shard: the S3-FIFO queues of the keys that hash to it, and the
/// accounted bytes of their entries.
pub(crate) struct Shard<K> {
    queues: Mutex<S3Fifo<K>>,
    /// Who holds `queues` (`lock_holder.rs`: how a wait in a forked child
    /// tells a holder that does not exist there).
    holder: Holder,
    pub(crate) bytes: AtomicUsize,
    /// Bytes of this shard's entries evicted or replaced since an insert
    /// of its keys last looked at the domain's backlog (see
    /// `RcuCache::queue_and_evict`). Per shard, on the line its writers
    /// own already: one counter for the cache, on the line of its
    /// capacity and weigher, took that line from every other writer at
    /// every insert.
    pub(crate) retired: AtomicUsize,
}

impl<K> Shard<K> {
    /// Books `bytes` of this shard as evicted or replaced (see
    /// [`Shard::retired`]).
    pub(crate) fn retired_add(&self, bytes: usize) {
        if bytes > 0 {
            self.retired.fetch_add(bytes, Ordering::Relaxed);
        }
    }
}

/// How far a writer evicts from its own shard, of `share` bytes, before
/// the shards above their share make room: seven eighths of the share.
/// The shards' sizes so stay close to their shares, as S3-FIFO's queues
/// are sized by them: letting a shard fall to half its share before it
/// took room back cost 0.7 points of hit ratio at 4 shards and 1.2 at 32
/// in the policy simulation (`cache::sim`), seven eighths nothing.
pub(crate) fn evict_floor(share: usize) -> usize {
    share - share / 8
}

/// The shards of one cache's policy; a power of two of them.
pub(crate) struct Shards<K> {
    shards: Box<[CachePadded<Shard<K>>]>,
    /// The accounted bytes of every shard's entries, on its own cache
    /// line (every write changes it).
    total: CachePadded<AtomicUsize>,
}

impl<K> Shard<K> {
    /// Locks the shard's queues for a writer of the cache (the policy
    /// lock), `rcu` being the cache's domain. Should another thread hold
    /// it, in a process forked from the domain's (where a thread of the
    /// parent, caught evicting or queueing at the fork, may hold it for
    /// good), the wait gives up or says so after
    /// [`FORKED_WAIT`](crate::sync::FORKED_WAIT) as a map's stripe does
    /// (`GracePeriods::lock_written`); an uncontended lock pays nothing for
    /// that check.
    #[inline]
    #[track_caller]
    pub(crate) fn lock_queues(&self, rcu: &Rcu) -> QueuesLocked<'_, K> {
        let guard = match crate::sync::try_lock_std(&self.queues) {
            Some(held) => held,
            None => rcu.inner().gp.lock_std_written(
                &self.queues,
                &self.holder,
                "a write to an RcuCache",
                "the cache's policy lock (one shard's queues)",
            ),
        };
        self.locked(guard)
    }

    /// The shard's queues for a reclaim pass, tried, never waited for
    /// (see [`shrink::try_lock_queues`](super::shrink::try_lock_queues)).
    pub(crate) fn try_lock_queues(&self) -> Option<QueuesLocked<'_, K>> {
        super::shrink::try_lock_queues(&self.queues).map(|guard| self.locked(guard))
    }

    /// `guard`, just taken, with this thread noted as its holder.
    #[inline]
    fn locked<'a>(&'a self, guard: MutexGuard<'a, S3Fifo<K>>) -> QueuesLocked<'a, K> {
        QueuesLocked {
            _mark: self.holder.mark(),
            guard,
        }
    }
}

/// A shard's queues, locked (see [`Shard::lock_queues`]).
pub(crate) struct QueuesLocked<'a, K> {
    // Declared first: the holder's token is cleared before the unlock.
    _mark: HolderMark<'a>,
    guard: MutexGuard<'a, S3Fifo<K>>,
}

impl<K> std::ops::Deref for QueuesLocked<'_, K> {
    type Target = S3Fifo<K>;
    #[inline]
    fn deref(&self) -> &S3Fifo<K> {
        &self.guard
    }
}

impl<K> std::ops::DerefMut for QueuesLocked<'_, K> {
    #[inline]
    fn deref_mut(&mut self) -> &mut S3Fifo<K> {
        &mut self.guard
    }
}

impl<K> Shards<K> {
    /// `n` shards (rounded up to a power of two, at most [`MAX_SHARDS`]).
    pub(crate) fn new(n: usize) -> Self {
        let n = n.clamp(1, MAX_SHARDS).next_power_of_two();
        Shards {
            shards: (0..n)
                .map(|_| {
                    CachePadded::new(Shard {
                        queues: Mutex::new(S3Fifo::new()),
                        holder: Holder::default(),
                        bytes: AtomicUsize::new(0),
                        retired: AtomicUsize::new(0),
                    })
                })
                .collect(),
            total: CachePadded::new(AtomicUsize::new(0)),
        }
    }

    /// The number of shards the builder chooses for a cache of
    /// `max_bytes` on `cpus` CPUs: [`SHARDS_PER_CPU`] per CPU, as many as
    /// leave each at least [`MIN_SHARE`] of the capacity.
    pub(crate) fn default_count(max_bytes: usize, cpus: usize) -> usize {
        let by_size = (max_bytes / MIN_SHARE).max(1);
        // Rounded down to a power of two: each share stays at least
        // `MIN_SHARE` once `new` rounds the count up.
        let by_size = 1 << by_size.ilog2();
        cpus.saturating_mul(SHARDS_PER_CPU)
            .next_power_of_two()
            .min(by_size)
            .clamp(1, MAX_SHARDS)
    }

    /// How many shards there are.
    pub(crate) fn count(&self) -> usize {
        self.shards.len()
    }

    /// The index of the shard of keys hashing to `hash`: the top bits of
    /// the hash times 2^64 / φ (Fibonacci hashing), which every bit of the
    /// hash reaches, so the shard is no function of the low bits alone
    /// that pick the map's stripe and bucket. Not the hash's own high
    /// bits: a hasher the builder was given may leave them zero (an
    /// identity hasher, as `nohash-hasher`'s, for integer keys below
    /// 2^40), and every key then went to one shard, whose queues an insert
    /// swept for stale items each time (`STALE_SLACK`): inserts grew
    /// quadratic in the entries.
    pub(crate) fn index(&self, hash: u64) -> usize {
        shard_of(hash, self.shards.len())
    }

    /// The shard of keys hashing to `hash`.
    pub(crate) fn of(&self, hash: u64) -> &Shard<K> {
        &self.shards[self.index(hash)]
    }

    /// Every shard, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Shard<K>> {
        self.shards.iter().map(|s| &**s)
    }

    /// Every shard, from the one after shard `last` round to `last`.
    pub(crate) fn iter_ending_at(&self, last: usize) -> impl Iterator<Item = &Shard<K>> {
        let n = self.shards.len();
        (1..=n).map(move |k| &*self.shards[(last + k) % n])
    }

    /// A shard's share of `capacity` bytes.
    pub(crate) fn share(&self, capacity: usize) -> usize {
        capacity / self.shards.len()
    }

    /// How far a writer evicts from its own shard of a cache of
    /// `capacity` bytes: [`evict_floor`] of its share.
    pub(crate) fn floor(&self, capacity: usize) -> usize {
        evict_floor(self.share(capacity))
    }

    /// Books `bytes` of `hash`'s shard as evicted or replaced (see
    /// [`Shard::retired`]).
    pub(crate) fn retired(&self, hash: u64, bytes: usize) {
        self.of(hash).retired_add(bytes);
    }

    /// The accounted bytes of every shard's entries.
    pub(crate) fn bytes(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    /// Books `new` bytes in place of `old` for an entry of `hash` (written,
    /// replaced or removed), in its shard and in the total.
    pub(crate) fn rebook(&self, hash: u64, old: usize, new: usize) {
        self.rebook_in(self.of(hash), old, new);
    }

    /// [`rebook`](Self::rebook) for an entry of `shard` (one of these),
    /// found by the caller already.
    pub(crate) fn rebook_in(&self, shard: &Shard<K>, old: usize, new: usize) {
        rebook(&shard.bytes, old, new);
        rebook(&self.total, old, new);
    }

    /// Queued items of every shard, stale ones included (each lock taken
    /// in turn).
    #[cfg(test)]
    pub(crate) fn queued(&self) -> usize {
        self.iter()
            .map(|s| crate::sync::lock_std(&s.queues).len())
            .sum()
    }
}

/// The shard of `hash` among `n` (a power of two, at most 2^32): see
/// [`Shards::index`].
///
/// The hash's top bit is ignored: the map's sort key drops it, so the hash
/// an entry is found under again by its node (`RcuCache::retain`, which
/// calls no key's `Hash`) has it set whatever the key's was, and must pick
/// the shard its insert booked.
pub(crate) fn shard_of(hash: u64, n: usize) -> usize {
    debug_assert!(n.is_power_of_two());
    let top = (hash & (u64::MAX >> 1)).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32;
    (top >> (32 - n.trailing_zeros())) as usize & (n - 1)
}

/// `bytes` with `new` in place of `old`.
fn rebook(bytes: &AtomicUsize, old: usize, new: usize) {
    if new >= old {
        bytes.fetch_add(new - old, Ordering::Relaxed);
    } else {
        bytes.fetch_sub(old - new, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_powers_of_two_within_bounds() {
        assert_eq!(Shards::<u8>::new(0).count(), 1);
        assert_eq!(Shards::<u8>::new(3).count(), 4);
        assert_eq!(Shards::<u8>::new(1000).count(), MAX_SHARDS);
    }

    #[test]
    fn the_default_count_leaves_each_shard_a_mebibyte() {
        const MIB: usize = 1 << 20;
        assert_eq!(Shards::<u8>::default_count(64 * MIB, 2), 4);
        assert_eq!(Shards::<u8>::default_count(64 * MIB, 16), 32);
        assert_eq!(Shards::<u8>::default_count(64 * MIB, 1000), 64);
        assert_eq!(Shards::<u8>::default_count(3 * MIB, 16), 2);
        assert_eq!(Shards::<u8>::default_count(MIB, 16), 1);
        assert_eq!(Shards::<u8>::default_count(0, 16), 1);
        assert_eq!(Shards::<u8>::default_count(usize::MAX, 0), 1);
    }

    #[test]
    fn every_hash_has_one_shard_and_all_are_used() {
        let shards = Shards::<u8>::new(8);
        let order: Vec<_> = shards.iter_ending_at(2).map(|s| s as *const _).collect();
        let want: Vec<_> = [3, 4, 5, 6, 7, 0, 1, 2]
            .map(|i| &*shards.shards[i] as *const _)
            .into();
        assert_eq!(order, want);
        let mut seen = [0usize; 8];
        for i in 0..8000u64 {
            let hash = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let s = shards.of(hash) as *const Shard<u8>;
            let at = shards.iter().position(|x| std::ptr::eq(x, s)).unwrap();
            seen[at] += 1;
        }
        assert!(seen.iter().all(|&n| n > 800), "{seen:?}");
    }

    #[test]
    fn an_identity_hash_of_small_integer_keys_spreads_over_every_shard() {
        // An identity hasher (nohash-hasher's, for integer keys) gives
        // small keys hashes whose high bits are all zero: picked by those
        // bits alone, every key went to shard 0, whose queues then held
        // `count` times the per-shard estimate of the cache's entries, so
        // every insert swept them for stale items (40 000 inserts: 8.7 s,
        // against 20 ms with std's hasher).
        for n in [2, 8, 64] {
            let shards = Shards::<u8>::new(n);
            let mut seen = vec![0usize; n];
            for key in 0..64_000u64 {
                let s = shards.of(key) as *const Shard<u8>;
                let at = shards.iter().position(|x| std::ptr::eq(x, s)).unwrap();
                seen[at] += 1;
            }
            let fair = 64_000 / n;
            assert!(
                seen.iter().all(|&k| k > fair / 2 && k < fair * 2),
                "{n} shards: {seen:?}"
            );
        }
    }

    #[test]
    fn the_top_bit_of_a_hash_picks_no_other_shard() {
        let mut h = 0x0123_4567_89ab_cdefu64;
        for _ in 0..10_000 {
            h = h.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            for n in [1, 2, 8, 64] {
                assert_eq!(shard_of(h, n), shard_of(h | 1 << 63, n), "{h:#x} of {n}");
            }
        }
    }

    #[test]
    fn rebooking_adds_and_subtracts() {
        let shards = Shards::<u8>::new(2);
        // Two hashes of different shards.
        let a = 0;
        let b = (1..).find(|&h| shards.index(h) != shards.index(a)).unwrap();
        shards.rebook(a, 0, 100);
        shards.rebook(b, 0, 7);
        shards.rebook(a, 100, 40);
        assert_eq!(shards.bytes(), 47);
        assert_eq!(shards.of(a).bytes.load(Ordering::Relaxed), 40);
        assert_eq!(shards.of(b).bytes.load(Ordering::Relaxed), 7);
        shards.rebook(a, 40, 0);
        shards.rebook(b, 7, 0);
        assert_eq!(shards.bytes(), 0);
        assert_eq!(shards.share(100), 50);
    }
}
