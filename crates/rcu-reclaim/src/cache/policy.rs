//! The eviction policy of [`RcuCache`](super::RcuCache): S3-FIFO (Yang et
//! al., SOSP 2023), weighed in bytes. Why this one: the
//! [module docs](super) give the measured hit ratios.
//!
//! Three FIFO queues of keys, held by writers only (under the lock of
//! their policy shard: `shards.rs`); readers never see them:
//!
//! * **small** takes new keys, up to a hundred-and-twenty-eighth of the
//!   capacity in bytes ([`SMALL_SHARE`]). An entry leaving it is promoted to *main* if
//!   it was read while there, else evicted, its key's hash remembered in
//!   *ghost*. One-hit wonders
//!   (most keys of a skewed trace) so leave after a short stay, without
//!   pushing out the entries that are read again.
//! * **main** takes promoted keys, and new keys found in *ghost* (evicted
//!   too early once). An entry at its head that was read since it last
//!   passed there is moved to its tail with its frequency lowered by one
//!   (CLOCK with a 2-bit counter), else evicted.
//! * **ghost** holds the hashes of keys evicted from small, as many as the
//!   cache holds entries.
//!
//! The frequency lives in the entry, where a reader's hit sets it with a
//! relaxed store; the queues hold `(key, id)` and ask a [`Store`] for it,
//! so an entry that was removed or replaced meanwhile (another id) is
//! skipped, and one replaced between the question and the eviction is not
//! evicted (the store removes by id). Each item also keeps its key's hash
//! (the store's, computed once by the insert), so neither the store's
//! lookups nor ghost hash a key again.

use std::collections::VecDeque;

/// The highest frequency an entry counts to (2 bits, as in S3-FIFO).
pub(crate) const MAX_FREQ: u8 = 3;

/// What the policy asks of the store that holds the entries. `hash` is
/// always the store's hash of `key`, as given to [`S3Fifo::push`].
pub(crate) trait Store<K> {
    /// Looks up `key`'s entry `id` (one lookup): its frequency, `None` if
    /// it is gone (removed, or replaced by another id). If `next` makes
    /// `Some(f)` of the frequency, the entry's frequency is set to `f`.
    fn visit(&self, key: &K, hash: u64, id: u64, next: impl FnOnce(u8) -> Option<u8>)
        -> Option<u8>;
    /// Removes `key`'s entry `id` if it is still there: its weight.
    /// `Err(Busy)` leaves it there: another thread holds it locked (and
    /// may be waiting for the lock the evicting thread holds).
    fn remove(&self, key: &K, hash: u64, id: u64) -> Result<Option<usize>, Busy>;
    /// Takes the key of an item leaving the queues for good (stale or
    /// evicted). The cache's store drops it only once the policy's lock
    /// is released: a key's `Drop` is its user's code, and one that wrote
    /// to the cache under that lock waited for the lock itself, for good.
    /// By default the key is dropped at once.
    fn discard(&self, key: K) {
        drop(key);
    }
}

/// An entry [`Store::remove`] could not take now: skipped, tried again
/// when the queue comes round to it.
#[derive(Debug)]
pub(crate) struct Busy;

/// Small holds up to this fraction of the capacity (in bytes): a
/// hundred-and-twenty-eighth, where S3-FIFO's paper takes a tenth. Chosen
/// by measurement (the module docs of `cache` and BENCHMARKS.md): on Zipf
/// traces of skew 0.7, 0.99 and 1.2 the hit ratio is 0.3–0.8 points
/// higher than with a tenth (the ghost brings back, into main, the keys
/// small let go too soon), and a smaller small is a warmer one: the
/// values it evicts were written moments ago, so the allocator hands
/// their still-cached memory to the next insert (the bench's gets/s
/// +37–42 % at a thirty-second, +4–9 % more at a sixty-fourth: the
/// inserts' `memset` of fresh values the difference). At a
/// hundred-and-twenty-eighth the simulation's hit ratios (`cache::sim`'s
/// policy and shard tables, skews 0.7 and 1.2) were the same as at a
/// sixty-fourth or up to 0.3 points higher, and `examples/callgrind_cache`
/// (2 M operations, one thread) took 4–11 % less CPU time, in four runs
/// alternated with a sixty-fourth's.
pub(crate) const SMALL_SHARE: usize = 128;

/// A queued entry.
struct Item<K> {
    key: K,
    id: u64,
    weight: usize,
    hash: u64,
}

/// A FIFO of items with the sum of their weights (stale items included,
/// until they reach the head).
struct Fifo<K> {
    items: VecDeque<Item<K>>,
    /// In `u128`: each weight is at most the capacity (`isize::MAX`), but
    /// stale items of replaced entries count too, and three of a weigher's
    /// near-`isize::MAX` weights overflowed a `usize` (a panic under the
    /// shard's lock in debug builds, leaving the new entry unqueued: never
    /// evicted nor cleared).
    bytes: u128,
}

impl<K> Fifo<K> {
    fn new() -> Self {
        Fifo {
            items: VecDeque::new(),
            bytes: 0,
        }
    }

    fn push(&mut self, item: Item<K>) {
        self.bytes += item.weight as u128;
        self.items.push_back(item);
    }

    fn pop(&mut self) -> Option<Item<K>> {
        let item = self.items.pop_front()?;
        self.bytes -= item.weight as u128;
        Some(item)
    }
}

/// Entries per ghost bucket: `(hash, insertion number)` pairs, one cache
/// line.
const GHOST_WAYS: usize = 4;

/// A ghost bucket, aligned to a cache line.
#[derive(Clone, Copy, Default)]
#[repr(align(64))]
struct Bucket([(u64, u64); GHOST_WAYS]);

/// Hashes of keys evicted from small, recently: a set-associative table of
/// `(hash, insertion number)` (0: empty) in buckets of one cache line, at
/// least twice as many slots as `bound`. A hash counts as present while
/// fewer than `bound` insertions have followed its own (S3-FIFO's ghost
/// FIFO of `bound` hashes); a full bucket gives its oldest slot to a new
/// hash. One cache line per insert and per lookup: a hash map beside a
/// FIFO of hashes missed the cache twice per insert (3.5 % of a cache
/// bench thread's time).
struct Ghost {
    buckets: Vec<Bucket>,
    /// Insertions so far (the newest one's number).
    seq: u64,
    /// The last insert's `bound`.
    bound: u64,
}

impl Ghost {
    fn new() -> Self {
        Ghost {
            buckets: Vec::new(),
            seq: 0,
            bound: 0,
        }
    }

    /// The bucket of `hash` in a table of `n` buckets (a power of two):
    /// high bits, as the store's own table uses the low ones.
    fn index(hash: u64, n: usize) -> usize {
        ((hash ^ (hash >> 29)).rotate_right(17) as usize) & (n - 1)
    }

    /// Whether an entry numbered `at` is still among the last `bound`.
    fn live(&self, at: u64) -> bool {
        at != 0 && self.seq - at < self.bound
    }

    fn insert(&mut self, hash: u64, bound: usize) {
        self.bound = bound as u64;
        // Whether the table is below `(2 * bound).div_ceil(GHOST_WAYS)`
        // buckets rounded up to a power of two, and at least 16: as its
        // length is such a power (or 0), the same as below 16 buckets or
        // below `2 * bound` slots, without the rounding at every insert.
        let n = self.buckets.len();
        if n < 16 || n * GHOST_WAYS < 2 * bound {
            self.grow((2 * bound).div_ceil(GHOST_WAYS).next_power_of_two().max(16));
        }
        self.seq += 1;
        let i = Self::index(hash, self.buckets.len());
        let bucket = &mut self.buckets[i].0;
        // One pass: the slot already holding `hash`, else the first of the
        // oldest (the least insertion number; an empty slot's is 0).
        let mut way = 0;
        let mut oldest = u64::MAX;
        for (w, &(h, at)) in bucket.iter().enumerate() {
            if h == hash && at != 0 {
                way = w;
                break;
            }
            if at < oldest {
                oldest = at;
                way = w;
            }
        }
        bucket[way] = (hash, self.seq);
    }

    /// A table of `n` buckets holding the live entries of this one.
    fn grow(&mut self, n: usize) {
        let mut buckets = vec![Bucket::default(); n];
        for &(hash, at) in self.buckets.iter().flat_map(|b| b.0.iter()) {
            if self.live(at) {
                let bucket = &mut buckets[Self::index(hash, n)].0;
                if let Some(slot) = bucket.iter_mut().min_by_key(|(_, a)| *a) {
                    if slot.1 < at {
                        *slot = (hash, at);
                    }
                }
            }
        }
        self.buckets = buckets;
    }

    /// Whether `hash` was evicted recently (it stays listed until it ages
    /// out: a second early eviction is just as telling).
    fn contains(&self, hash: u64) -> bool {
        if self.buckets.is_empty() {
            return false;
        }
        let bucket = &self.buckets[Self::index(hash, self.buckets.len())].0;
        bucket.iter().any(|&(h, at)| h == hash && self.live(at))
    }
}

/// The S3-FIFO queues of one cache (see the module docs).
pub(crate) struct S3Fifo<K> {
    small: Fifo<K>,
    main: Fifo<K>,
    ghost: Ghost,
}

impl<K> S3Fifo<K> {
    pub(crate) fn new() -> Self {
        S3Fifo {
            small: Fifo::new(),
            main: Fifo::new(),
            ghost: Ghost::new(),
        }
    }

    /// Queues a new entry: `id` of `key`, weighing `weight` bytes, whose
    /// key hashes to `hash` (for ghost).
    pub(crate) fn push(&mut self, key: K, id: u64, weight: usize, hash: u64) {
        let item = Item {
            key,
            id,
            weight,
            hash,
        };
        if self.ghost.contains(hash) {
            self.main.push(item);
        } else {
            self.small.push(item);
        }
    }

    /// Queued entries, stale ones included.
    pub(crate) fn len(&self) -> usize {
        self.small.items.len() + self.main.items.len()
    }

    /// Evicts one entry from `store`, for a cache of `capacity` bytes:
    /// its weight, or `None` when no queued entry is left.
    pub(crate) fn evict(&mut self, capacity: usize, store: &impl Store<K>) -> Option<usize> {
        // Readers may raise frequencies as fast as this lowers them: after
        // this many second chances, the next entry goes whatever it says.
        let mut chances = self.len() * usize::from(MAX_FREQ) + 1;
        // Entries locked by other threads are passed over, each at most
        // once in this call: with every one busy, nothing is evicted now.
        let mut busy_left = self.len();
        loop {
            let from_small =
                self.small.bytes > (capacity / SMALL_SHARE) as u128 || self.main.items.is_empty();
            let fifo = if from_small {
                &mut self.small
            } else {
                &mut self.main
            };
            // Looked at in place, and taken off its queue only once the
            // store has answered: should the store panic in there, the item
            // stays queued, so its entry can still be evicted, or cleared,
            // later. (The cache's store runs none of the key's code: it
            // finds entries by hash and id.)
            let head = fifo.items.front()?;
            let spared = chances > 0;
            // One lookup: the frequency, lowered at once if the entry is
            // spared (read while in small: promoted, counting afresh).
            let seen = store.visit(&head.key, head.hash, head.id, |freq| {
                (freq > 0 && spared).then(|| if from_small { 0 } else { freq - 1 })
            });
            let Some(freq) = seen else {
                // Removed or replaced: its bytes left with it.
                let item = fifo.pop().expect("the head looked at");
                store.discard(item.key);
                continue;
            };
            if freq > 0 && spared {
                chances -= 1;
                let item = fifo.pop().expect("the head looked at");
                self.main.push(item);
                continue;
            }
            let removed = store.remove(&head.key, head.hash, head.id);
            let item = fifo.pop().expect("the head looked at");
            let Ok(removed) = removed else {
                // Busy: to its queue's tail, as it was.
                fifo.push(item);
                busy_left = busy_left.checked_sub(1)?;
                continue;
            };
            let Some(weight) = removed else {
                // Replaced since `visit`: the new entry is queued.
                store.discard(item.key);
                continue;
            };
            if from_small {
                let bound = self.len().max(64);
                self.ghost.insert(item.hash, bound);
            }
            store.discard(item.key);
            return Some(weight);
        }
    }

    /// Drops the queued items whose entries are gone (removed, or
    /// replaced: a key rewritten while the cache is not full leaves one
    /// per write). Called when the queues hold far more items than the
    /// store has entries, so its cost is amortized over those writes.
    /// The keys of the items dropped go to the store's
    /// [`discard`](Store::discard).
    pub(crate) fn retain_live(&mut self, store: &impl Store<K>) {
        for fifo in [&mut self.small, &mut self.main] {
            // Each item in turn, from the head to the tail again: a live
            // one goes back, keeping the order.
            for _ in 0..fifo.items.len() {
                let item = fifo.pop().expect("counted");
                if store
                    .visit(&item.key, item.hash, item.id, |_| None)
                    .is_some()
                {
                    fifo.push(item);
                } else {
                    store.discard(item.key);
                }
            }
        }
    }

    /// Takes every queued entry's key, id, weight and hash (as `push`
    /// takes them), emptying the queues (ghost stays).
    pub(crate) fn drain(&mut self) -> Vec<(K, u64, usize, u64)> {
        let mut out = Vec::with_capacity(self.len());
        while let Some(item) = self.small.pop().or_else(|| self.main.pop()) {
            out.push((item.key, item.id, item.weight, item.hash));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::HashMap;

    /// Entries by key: (id, freq, weight); and the keys locked by other
    /// threads (busy).
    #[derive(Default)]
    struct Model(
        RefCell<HashMap<u32, (u64, u8, usize)>>,
        RefCell<std::collections::HashSet<u32>>,
    );

    impl Model {
        fn freq(&self, key: &u32, id: u64) -> Option<u8> {
            self.visit(key, u64::from(*key), id, |_| None)
        }
    }

    impl Store<u32> for Model {
        fn visit(
            &self,
            key: &u32,
            _: u64,
            id: u64,
            next: impl FnOnce(u8) -> Option<u8>,
        ) -> Option<u8> {
            let mut m = self.0.borrow_mut();
            let e = m.get_mut(key).filter(|e| e.0 == id)?;
            let freq = e.1;
            if let Some(f) = next(freq) {
                e.1 = f;
            }
            Some(freq)
        }
        fn remove(&self, key: &u32, _: u64, id: u64) -> Result<Option<usize>, Busy> {
            if self.1.borrow().contains(key) {
                return Err(Busy);
            }
            let mut m = self.0.borrow_mut();
            let Some(w) = m.get(key).filter(|e| e.0 == id).map(|e| e.2) else {
                return Ok(None);
            };
            m.remove(key);
            Ok(Some(w))
        }
    }

    #[test]
    fn a_read_entry_outlives_unread_ones() {
        let (store, mut p) = (Model::default(), S3Fifo::new());
        for k in 0..10u32 {
            store.0.borrow_mut().insert(k, (u64::from(k), 0, 1));
            p.push(k, u64::from(k), 1, u64::from(k));
        }
        store.visit(&0, 0, 0, |_| Some(1));
        for _ in 0..5 {
            assert!(p.evict(10, &store).is_some());
        }
        assert!(store.freq(&0, 0).is_some(), "the read entry stays");
        assert!((1..=5).all(|k| store.freq(&k, u64::from(k)).is_none()));
        assert_eq!(p.main.items.len(), 1, "promoted to main");
    }

    /// A policy over a cache of `cap` one-byte entries after `rounds *
    /// cap` inserts of new keys, each of the first `cap` read while in
    /// small (promoted to main as it leaves), evicting down to `cap`.
    fn full_of_one_byte_entries(cap: usize, rounds: u32) -> S3Fifo<u32> {
        let (store, mut p) = (Model::default(), S3Fifo::new());
        for k in 0..rounds * cap as u32 {
            store.0.borrow_mut().insert(k, (u64::from(k), 0, 1));
            p.push(k, u64::from(k), 1, u64::from(k));
            if k < cap as u32 {
                store.visit(&k, 0, u64::from(k), |_| Some(1));
            }
            while store.0.borrow().len() > cap {
                assert!(p.evict(cap, &store).is_some());
            }
        }
        p
    }

    #[test]
    fn small_keeps_its_share_of_the_capacity() {
        // Entries of 1 byte, each of the first `cap` read while in small:
        // a full cache of `2 * SMALL_SHARE` bytes keeps small at 2 (its
        // share) and main at the rest as new unread keys come and go.
        let cap = 2 * SMALL_SHARE;
        let p = full_of_one_byte_entries(cap, 10);
        assert_eq!(p.small.bytes, (cap / SMALL_SHARE) as u128, "small's bytes");
        assert_eq!(
            p.main.bytes,
            (cap - cap / SMALL_SHARE) as u128,
            "main's bytes"
        );
    }

    /// Small's share is a hundred-and-twenty-eighth: a full cache of 256
    /// one-byte entries keeps two new ones in small (a sixty-fourth kept
    /// four), evicting unread new keys sooner, while their values' memory
    /// is still cached for the next insert.
    #[test]
    fn small_is_a_128th_of_the_capacity() {
        let cap = 256;
        let p = full_of_one_byte_entries(cap, 4);
        assert_eq!(p.small.items.len(), 2, "small's entries");
        assert_eq!(p.main.items.len(), cap - 2, "main's entries");
    }

    #[test]
    fn stale_items_are_skipped_and_a_key_evicted_early_returns_to_main() {
        let (store, mut p) = (Model::default(), S3Fifo::new());
        store.0.borrow_mut().insert(1, (2, 0, 5)); // id 1 was replaced by id 2
        p.push(1, 1, 5, 1);
        p.push(1, 2, 5, 1);
        assert_eq!(p.evict(100, &store), Some(5));
        assert!(store.0.borrow().is_empty());
        assert_eq!(p.evict(100, &store), None);
        p.push(1, 3, 5, 1); // in ghost: straight to main
        assert_eq!((p.small.items.len(), p.main.items.len()), (0, 1));
    }

    #[test]
    fn an_entry_locked_by_another_thread_is_passed_over_not_waited_for() {
        let (store, mut p) = (Model::default(), S3Fifo::new());
        for k in 0..4u32 {
            store.0.borrow_mut().insert(k, (u64::from(k), 0, 1));
            p.push(k, u64::from(k), 1, u64::from(k));
        }
        store.1.borrow_mut().insert(0);
        assert_eq!(p.evict(1, &store), Some(1));
        assert!(store.freq(&0, 0).is_some(), "the busy entry stays");
        assert!(store.freq(&1, 1).is_none(), "the next one goes");
        // All busy: nothing is evicted, and the call returns.
        store.1.borrow_mut().extend([2, 3]);
        assert_eq!(p.evict(1, &store), None);
        assert_eq!(p.len(), 3, "still queued");
        // Free again: evicted in turn.
        store.1.borrow_mut().clear();
        assert_eq!(p.evict(1, &store), Some(1));
        assert_eq!(p.len(), 2);
    }

    #[test]
    fn ghost_keeps_the_last_bound_hashes() {
        let mut ghost = S3Fifo::<u32>::new().ghost;
        assert!(!ghost.contains(42));
        ghost.insert(42, 64);
        assert!(ghost.contains(42) && !ghost.contains(43));
        // 63 more: 42 is still among the last 64; one more ages it out.
        for h in 1000..1063u64 {
            ghost.insert(h.wrapping_mul(0x9e37_79b9_7f4a_7c15), 64);
        }
        assert!(ghost.contains(42));
        ghost.insert(7, 64);
        assert!(!ghost.contains(42));
        // Growing keeps what is live.
        for h in 0..10_000u64 {
            ghost.insert(h.wrapping_mul(0x9e37_79b9_7f4a_7c15), 4096);
        }
        let kept = (9_000..10_000u64)
            .filter(|h| ghost.contains(h.wrapping_mul(0x9e37_79b9_7f4a_7c15)))
            .count();
        assert!(kept > 950, "{kept} of the last 1000 kept");
    }

    #[test]
    fn stale_items_of_a_rewritten_key_are_dropped() {
        let (store, mut p) = (Model::default(), S3Fifo::new());
        for id in 0..100 {
            store.0.borrow_mut().insert(7, (id, 0, 1));
            p.push(7, id, 1, 7);
        }
        p.retain_live(&store);
        assert_eq!(p.len(), 1);
        assert_eq!(p.small.bytes, 1);
    }

    #[test]
    fn stale_items_of_huge_weights_do_not_overflow_a_queues_sum() {
        // A key rewritten with weights near the largest capacity
        // (`isize::MAX`) leaves stale items whose weights, summed, passed
        // `usize::MAX` at the third (an overflow panic in debug builds).
        let (store, mut p) = (Model::default(), S3Fifo::new());
        let huge = isize::MAX as usize;
        for id in 0..4 {
            store.0.borrow_mut().insert(7, (id, 0, huge));
            p.push(7, id, huge, 7);
        }
        assert_eq!(p.small.bytes, 4 * huge as u128);
        assert_eq!(p.evict(huge, &store), Some(huge));
        assert_eq!((p.len(), p.small.bytes), (0, 0));
    }
}
