//! [`RcuCache`]: a concurrent cache bounded in bytes whose lookups take no
//! lock, and that gives memory back under pressure: evicted entries are
//! freed through the domain after a grace period, their sizes booked.
//!
//! ```
//! use rcu_reclaim::RcuCache;
//! let cache: RcuCache<u64, Vec<u8>> = RcuCache::builder().max_bytes(1 << 20).build();
//! for i in 0..100 {
//!     cache.insert(i, vec![0; 64 << 10]); // 100 × 64 KiB into 1 MiB
//! }
//! assert!(cache.bytes() <= cache.max_bytes());
//! let guard = cache.domain().read_lock();
//! assert!(cache.get(&99, &guard).is_some()); // the newest stay
//! ```
//!
//! See the crate's guide, ["Bounding memory"](crate#bounding-memory), for
//! a cache tied to a [`MemoryBudget`] and to
//! the kernel's pressure signals.
//!
//! # Coming from moka or quick_cache
//!
//! | there | here |
//! |---|---|
//! | `Cache::builder().max_capacity(n)` with a weigher; quick_cache's `Cache::with_weighter` | [`RcuCache::builder`]`().`[`max_bytes`](RcuCacheBuilder::max_bytes)`(n)`: always bytes, not entries, weighed by [`ReclaimSize`](crate::ReclaimSize) or a [`weigher`](RcuCacheBuilder::weigher) of yours, plus [`RcuCache::ENTRY_OVERHEAD`] per entry |
//! | `get(&k) -> Option<V>` (a clone) | [`get`](RcuCache::get)`(&k, &guard) -> Option<&V>`, no clone, valid while the guard lives; `.cloned()` for an owned value to keep |
//! | `get_with(k, init)`, `get_or_insert_with` (concurrent misses of a key run `init` once; the other callers wait for it) | [`read_or_insert_with`](RcuCache::read_or_insert_with) (`init` runs once, outside any read-side section and lock; the other callers wait for it, then read what it cached), [`get_or_insert_with`](RcuCache::get_or_insert_with) (`init` runs once too, under the caller's guard and the key's stripe lock, which the other callers wait on) |
//! | `insert`, `invalidate` / `remove`, `invalidate_all` / `clear` | [`insert`](RcuCache::insert), [`remove`](RcuCache::remove), [`clear`](RcuCache::clear): what leaves is freed a grace period later |
//! | `entry_count`, `weighted_size` | [`len`](RcuCache::len), [`bytes`](RcuCache::bytes) |
//! | expiry (`time_to_live`, `time_to_idle`) | none: keep a timestamp in the value and [`remove_if`](RcuCache::remove_if) or [`retain`](RcuCache::retain) |
//!
//! ```
//! use rcu_reclaim::RcuCache;
//! let cache: RcuCache<u64, String> = RcuCache::builder().max_bytes(1 << 20).build();
//! cache.insert(1, "one".to_string());
//! // moka's `get`: an owned clone, the guard dropped at the end of the statement.
//! let owned: Option<String> = cache.get(&1, &cache.domain().read_lock()).cloned();
//! assert_eq!(owned.as_deref(), Some("one"));
//! cache.remove(&1);
//! assert!(cache.get(&1, &cache.domain().read_lock()).is_none());
//! ```
//!
//! # Design
//! The entries live in an [`RcuHashMap`]; each carries
//! its weight and a 2-bit frequency. A hit ([`get`](RcuCache::get)) is the
//! map's lookup (acquire loads, no lock) plus a relaxed load of the
//! frequency and, while it is below its cap, a relaxed store: no lock, no
//! allocation, no shared counter.
//!
//! Writers ([`insert`](RcuCache::insert),
//! [`get_or_insert_with`](RcuCache::get_or_insert_with)) hash the key once,
//! add the entry's weight to the cache's bytes, write the map (its stripe
//! lock), then take the lock of the key's *policy shard* to queue the key
//! (with its hash: the policy never hashes again) and evict until the
//! bytes are back under the capacity. The policy is split by key hash into
//! shards ([`shards`](RcuCacheBuilder::shards): by default two per CPU,
//! each at least 1 MiB of the capacity), each with its own S3-FIFO queues,
//! lock and share of the capacity, so writers of different keys evict side
//! by side; a writer evicts from its own shard, and from the others when
//! its own is already small (the capacity is the whole cache's: an entry
//! heavier than a share is cached like any other). Sharding costs no hit
//! ratio in the simulation below (0.653 at 4 shards, 0.651 at 32).
//! Eviction removes an entry from the map only if it is still the one
//! queued (its id), and the map retires it through the domain with its
//! size: readers that hold it keep reading it until their sections end.
//! Readers never wait for eviction, nor eviction for readers.
//!
//! An insert that replaces an entry of the same weight takes over the old
//! entry's id and frequency: its queue item stays valid where it is, so
//! the write queues nothing and, unless the cache is over its capacity,
//! takes no policy lock. A replacement of another weight gets a
//! new id and a new queue item, and also keeps the frequency: rewriting a
//! hot key does not make it look like a new one.
//!
//! An entry weighs `ENTRY_OVERHEAD` (its map node: key, value, id,
//! weight, frequency and link) plus its weigher's bytes ([`HeapSize`] by
//! default: the heap its key and value own, per
//! [`ReclaimSize`](crate::ReclaimSize)); exactly what the map books when
//! it retires the entry. An entry heavier than the capacity is not cached
//! (and the key's older value, if cached, is removed: it would be stale).
//! The node counts against `max_bytes` as memory does: 80 bytes for a
//! `u64` key and a `Vec<u8>` value, so a cache of 64–256-byte values
//! holds about a third fewer entries than a cache that counts values only
//! (quick_cache with `value.len() + 8` as its weight, in the bench: at
//! 4 MiB its hit ratio was 0.863 against this cache's 0.829, with 11.6
//! MiB of heap against 10.0). Size such a cache by the memory it may use.
//!
//! # The eviction policy, by measured hit ratio
//! S3-FIFO (`src/cache/policy.rs`): a small FIFO for new keys, a main one run as
//! a CLOCK with a 2-bit counter, and a ghost of keys evicted early. Chosen
//! over CLOCK by the simulation in this module's tests (`cache::sim`,
//! deterministic): a Zipf(0.99) trace over 100 000 keys, values of 1–64
//! KiB (uniform per key), cache-aside inserts on a miss, capacity 64 MiB
//! (2 % of the 3.2 GiB of distinct data); the same code drives each
//! policy over a model store. Hit ratios over 2 M requests after a 200 k
//! warm-up (`cargo test --release -p rcu-reclaim --lib cache::sim --
//! --ignored --nocapture`, 5 s; the debug test `cache::sim::s3fifo_beats_clock_and_random_on_a_zipf_trace`
//! runs 200 k requests and checks the order):
//!
//! | policy | hit ratio |
//! |---|---|
//! | random eviction (baseline) | 0.527 |
//! | FIFO | 0.527 |
//! | CLOCK (1 bit) | 0.578 |
//! | CLOCK, 2-bit counter | 0.590 |
//! | S3-FIFO, small a tenth of the capacity (the paper's) | 0.647 |
//! | S3-FIFO, small a thirty-second | 0.652 |
//! | S3-FIFO, small a sixty-fourth, promote on one read | 0.653 |
//! | **S3-FIFO**, small a hundred-and-twenty-eighth, promote on one read | **0.654** |
//! | the same in 4 shards (the cache's eviction, `shards.rs`) | 0.653 |
//! | the same in 32 shards | 0.652 |
//!
//! S3-FIFO is 6 points above CLOCK with the same 2-bit counter and 12
//! above random eviction; for reference, quick_cache (also S3-FIFO-like)
//! measured 0.650 and moka (W-TinyLFU) 0.608 on such a trace (the bench's
//! `cache` scenario). The smaller small queue also wins at skews 0.7
//! (0.280 against 0.272 at a tenth) and 1.2 (0.879 against 0.875), and keeps the
//! memory of the values it evicts warm for the next insert
//! (`SMALL_SHARE` in `src/cache/policy.rs`).
//! S3-FIFO keeps the one-hit wonders that dominate such a trace out of the
//! main queue; CLOCK lets each of them push out an entry that is read
//! again before its bit can save it. W-TinyLFU would need a frequency
//! sketch written on every hit, a shared write on the read path this cache
//! avoids. Both policies cost readers the same (one relaxed store at most).
//!
//! # Bounds
//! [`bytes`](RcuCache::bytes) counts every entry in the map. When a write
//! returns, `bytes() <= capacity_bytes()`, except for the entries that
//! other writers have added and not yet queued (at most one per write in
//! flight). The capacity is [`max_bytes`](RcuCache::max_bytes), or less
//! for a while after memory pressure shrank the cache (see
//! [`capacity_bytes`](RcuCache::capacity_bytes)). Memory an eviction
//! retires is freed a grace period later; until then the domain counts it
//! in [`Rcu::pending_bytes`](crate::Rcu::pending_bytes), and inserts keep
//! that backlog near an eighth of `max_bytes` (at least 1 MiB), within
//! twice that (see [`insert`](RcuCache::insert)). The policy's
//! queues are not counted: a clone of the key, an id and a weight per
//! entry (at most twice the entries plus 1024, counting those of replaced
//! or removed entries not yet dropped), and the ghost's hashes (16 bytes a
//! slot, two to four slots per entry).
//!
//! # Under pressure
//! Tied to a [`Reclaimer`] (directly, through
//! a [`MemoryBudget`], or by
//! [`auto_pressure`](RcuCacheBuilder::auto_pressure)), the cache registers
//! a [`Shrinker`](crate::reclaim::Shrinker) that evicts by the same policy
//! and [frees via RCU](crate::reclaim::Shrinker::frees_via_rcu). After a
//! shrink, the capacity stays at what was left until
//! [`regrow_after`](RcuCacheBuilder::regrow_after) (1 s by default) passes
//! without another: then the cache grows back to `max_bytes` in steps,
//! doubling every quarter of that time.
//!
//! # Keys, weighers and values that misbehave
//! A key's `Hash`, `Eq` and `Clone` and the weigher run only in the calls
//! given that key or value ([`insert`](RcuCache::insert),
//! [`get`](RcuCache::get), [`remove`](RcuCache::remove), ...), never
//! under a policy shard's lock: should one panic, that call panics and the
//! cache is left as it was (a `get_or_insert_with` closure likewise).
//! Eviction, [`clear`](RcuCache::clear) and the shrinker find an entry by
//! the hash it was filed under and its unique id, not by its key, so a
//! key whose `Eq` panics or lies (not reflexive, a `Clone` unequal to its
//! original, a `Hash` that changes) is still evicted and cleared, and the
//! cache keeps its bound; lookups of such a key may miss, as in std's
//! `HashMap`. A key or value whose `Drop` panics is dropped once all the
//! same: evicted entries drop after their grace period as the domain's
//! deferred frees, whose panics are caught and reported (see
//! [`Config::on_callback_panic`](crate::Config::on_callback_panic)), and
//! the panic of a queued key's clone as it leaves its queue reaches the
//! call that dropped it (a writer, `clear`, a reclaim pass), the cache
//! still usable. Those clones are dropped with no lock of the cache held,
//! so a key's `Drop` may even write to the cache.

mod backlog;
mod builder;
mod entry;
mod evict;
mod loading;
mod policy;
mod shards;
mod shrink;
#[cfg(test)]
mod sim;

pub use builder::RcuCacheBuilder;
pub use entry::{HeapSize, Weigher};

use crossbeam_utils::CachePadded;
use std::borrow::Borrow;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::domain::Rcu;
#[cfg(doc)]
use crate::guard::ReadGuard;
use crate::guard::ReadSection;
use crate::map::RcuHashMap;
use crate::reclaim::{MemoryBudget, Reclaimer, ShrinkerId};
use crate::sources::PressureMonitor;
use entry::{fresh_id, Entry};
use evict::MapStore;
use shards::Shards;
use shrink::Cap;

/// A concurrent cache bounded in bytes, with lock-free lookups under a
/// [`ReadGuard`] and S3-FIFO eviction; evicted entries are freed through
/// its [`Rcu`] domain after a grace period. Under memory pressure (a
/// budget's watermarks, PSI, cgroup or RSS events) its shrinker evicts
/// more. Made by [`RcuCache::builder`]; see the [module docs](self).
///
/// ```
/// use rcu_reclaim::RcuCache;
/// let cache = RcuCache::builder().max_bytes(64 << 20).build();
/// cache.insert("config".to_string(), vec![1u8, 2, 3]);
/// let guard = cache.domain().read_lock();
/// assert_eq!(cache.get("config", &guard).map(Vec::len), Some(3));
/// ```
///
/// Dropping the cache frees its entries before the drop returns (no
/// reader can still hold one), waiting for a reclaim pass that is scanning
/// it on another thread; entries it evicted earlier are the domain's, so
/// `drop(cache); rcu.barrier()` frees everything. Dropped inside an RCU
/// callback, a read-side section of its domain or reclaim, where that pass
/// may be waiting for the dropping thread, it does not wait: the pass frees
/// the entries when it finishes, on its own thread.
///
/// A reference does not outlive its section:
///
/// ```compile_fail,E0597
/// let cache = rcu_reclaim::RcuCache::builder().max_bytes(1 << 20).build();
/// cache.insert(1u32, 1u32);
/// let r = {
///     let guard = cache.domain().read_lock();
///     cache.get(&1, &guard).unwrap() // error: `guard` does not live long enough
/// };
/// println!("{r}");
/// ```
///
/// nor the cache, which may be the last to hold its entries:
///
/// ```compile_fail,E0505
/// let cache = rcu_reclaim::RcuCache::builder().build();
/// cache.insert(1u32, 1u32);
/// let guard = rcu_reclaim::Rcu::global().read_lock();
/// let v = cache.get(&1, &guard).unwrap();
/// drop(cache); // error: cannot move out of `cache` because it is borrowed
/// println!("{v}");
/// ```
///
/// Its keys and values are `Send` and `Sync` (readers on any thread share
/// them, writers and the shrinker on any thread evict them):
///
/// ```compile_fail,E0277
/// let cache = rcu_reclaim::RcuCache::builder().build();
/// cache.insert(1u32, std::rc::Rc::new(1u32)); // error: `Rc<u32>` cannot be sent between threads safely
/// ```
///
/// ```compile_fail,E0277
/// let cache = rcu_reclaim::RcuCache::builder().build();
/// cache.insert(1u32, std::cell::Cell::new(1u32)); // error: `Cell<u32>` cannot be shared between threads safely
/// ```
pub struct RcuCache<K, V, S = RandomState> {
    inner: Arc<Inner<K, V, S>>,
    budget: Option<Arc<MemoryBudget>>,
    registered: Option<(Arc<Reclaimer>, ShrinkerId)>,
    monitor: Option<PressureMonitor>,
}

/// A cache stays consistent when a panic unwinds through one of its calls
/// (a panicking weigher or `get_or_insert_with` closure leaves it as it
/// was; its locks ignore poisoning); only its `dyn` weigher and budget
/// kept the compiler from seeing that.
///
/// ```
/// let cache = rcu_reclaim::RcuCache::builder().build();
/// let r = std::panic::catch_unwind(|| {
///     let guard = cache.domain().read_lock();
///     cache.get_or_insert_with(1u32, || -> u32 { panic!("loader fails") }, &guard);
/// });
/// assert!(r.is_err());
/// assert!(cache.insert(1, 2));
/// ```
impl<K: std::panic::RefUnwindSafe, V: std::panic::RefUnwindSafe, S: std::panic::RefUnwindSafe>
    std::panic::UnwindSafe for RcuCache<K, V, S>
{
}

/// See the [`UnwindSafe`](std::panic::UnwindSafe) impl.
impl<K: std::panic::RefUnwindSafe, V: std::panic::RefUnwindSafe, S: std::panic::RefUnwindSafe>
    std::panic::RefUnwindSafe for RcuCache<K, V, S>
{
}

/// What the cache's shrinker shares with it.
pub(crate) struct Inner<K, V, S = RandomState> {
    map: RcuHashMap<K, Entry<V>, S>,
    /// The policy, in shards by key hash (`shards.rs`), each with its
    /// lock and the accounted bytes of its entries: writers queue and
    /// evict under their key's shard's lock; readers never take one, the
    /// shrinker only tries them.
    policy: Shards<K>,
    /// Bytes evicted or replaced since an insert last looked at the
    /// domain's backlog (it looks once per quarter of its allowance),
    /// added from the shards' own counts ([`Shards::retired`]); on a line
    /// of its own, away from the capacity and weigher every insert reads.
    retired_since_look: CachePadded<AtomicUsize>,
    /// An insert inside a read-side section found the backlog over the
    /// allowance (warned once per cache).
    backlog_warned: std::sync::atomic::AtomicBool,
    /// An insert is freeing the domain's backlog (`BacklogRun`): others
    /// leave it to that one while the backlog is within
    /// [`BACKLOG_HARD_TIMES`](backlog::BACKLOG_HARD_TIMES) its allowance.
    backlog_runner: std::sync::atomic::AtomicBool,
    /// The loads of `read_or_insert_with` in flight (`loading.rs`).
    loads: loading::Loads,
    cap: Cap,
    weigher: Box<dyn Weigher<K, V>>,
}

impl<K, V> RcuCache<K, V> {
    /// A builder; see [`RcuCacheBuilder`].
    ///
    /// ```
    /// let cache: rcu_reclaim::RcuCache<u32, String> =
    ///     rcu_reclaim::RcuCache::builder().max_bytes(1 << 20).build();
    /// assert_eq!(cache.max_bytes(), 1 << 20);
    /// ```
    pub fn builder() -> RcuCacheBuilder<K, V> {
        RcuCacheBuilder::new()
    }
}

impl<K, V, S> RcuCache<K, V, S> {
    /// Bytes each entry weighs besides its weigher's: the size of its map
    /// node (key, value, the cache's bookkeeping and the list link).
    ///
    /// ```
    /// use rcu_reclaim::RcuCache;
    /// let overhead = RcuCache::<u64, Vec<u8>>::ENTRY_OVERHEAD;
    /// assert!(overhead >= 8 + 24);
    /// let cache = RcuCache::builder().max_bytes(1 << 20).build();
    /// cache.insert(1u64, vec![0u8; 1000]);
    /// assert_eq!(cache.bytes(), overhead + 1000);
    /// ```
    pub const ENTRY_OVERHEAD: usize = RcuHashMap::<K, Entry<V>>::NODE_SIZE;

    /// The domain whose grace periods protect the cache's entries: take
    /// read guards from it.
    ///
    /// ```
    /// let cache: rcu_reclaim::RcuCache<u8, u8> = rcu_reclaim::RcuCache::builder().build();
    /// assert_eq!(cache.domain().id(), rcu_reclaim::Rcu::global().id());
    /// ```
    pub fn domain(&self) -> &Rcu {
        self.inner.map.domain()
    }

    /// The number of entries.
    ///
    /// ```
    /// let cache = rcu_reclaim::RcuCache::builder().build();
    /// cache.insert(1, 1);
    /// cache.insert(1, 2);
    /// assert_eq!(cache.len(), 1);
    /// ```
    pub fn len(&self) -> usize {
        self.inner.map.len()
    }

    /// Whether the cache holds no entry.
    ///
    /// ```
    /// let cache: rcu_reclaim::RcuCache<u8, u8> = rcu_reclaim::RcuCache::builder().build();
    /// assert!(cache.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The accounted bytes of the entries held: each weighs
    /// [`ENTRY_OVERHEAD`](RcuCache::ENTRY_OVERHEAD) plus its weigher's
    /// bytes. Evicted entries leave this count at once; their memory is
    /// the domain's ([`Rcu::pending_bytes`]) until a grace period ends.
    ///
    /// An [`insert`](RcuCache::insert) counts and publishes its entry
    /// first and evicts after, so while several threads insert at once the
    /// count may pass [`capacity_bytes`](RcuCache::capacity_bytes) for a
    /// moment, by about one entry per inserting thread (three threads
    /// inserting 1 MiB values into an 8 MiB cache were seen 1 MiB over);
    /// it is back under it once the inserts have returned. Size a memory
    /// limit with that margin, besides the domain's backlog.
    ///
    /// ```
    /// let cache = rcu_reclaim::RcuCache::builder().max_bytes(1 << 20).build();
    /// cache.insert(1u8, vec![0u8; 4096]);
    /// assert!(cache.bytes() >= 4096);
    /// ```
    pub fn bytes(&self) -> usize {
        self.inner.policy.bytes()
    }

    /// The configured capacity in bytes.
    ///
    /// ```
    /// let cache: rcu_reclaim::RcuCache<u8, u8> =
    ///     rcu_reclaim::RcuCache::builder().max_bytes(4096).build();
    /// assert_eq!(cache.max_bytes(), 4096);
    /// ```
    pub fn max_bytes(&self) -> usize {
        self.inner.cap.max()
    }

    /// The capacity now: [`max_bytes`](RcuCache::max_bytes), or, after the
    /// shrinker evicted under memory pressure, what the cache held then,
    /// until [`regrow_after`](RcuCacheBuilder::regrow_after) passes with no
    /// further shrink.
    ///
    /// ```
    /// let cache: rcu_reclaim::RcuCache<u8, u8> =
    ///     rcu_reclaim::RcuCache::builder().max_bytes(4096).build();
    /// assert_eq!(cache.capacity_bytes(), 4096); // no pressure yet
    /// ```
    pub fn capacity_bytes(&self) -> usize {
        self.inner.cap.get()
    }
}

impl<K, V, S> RcuCache<K, V, S>
where
    K: Hash + Eq,
    S: BuildHasher,
{
    /// The value of `key`, valid while both the guard and the borrow of
    /// the cache last. Takes no lock and allocates nothing; a hit sets the
    /// entry's frequency with a relaxed store.
    ///
    /// # Panics
    /// If `guard` belongs to another domain than the cache.
    ///
    /// ```
    /// let cache = rcu_reclaim::RcuCache::builder().build();
    /// cache.insert(String::from("k"), 1u32);
    /// let guard = cache.domain().read_lock();
    /// assert_eq!(cache.get("k", &guard), Some(&1));
    /// assert_eq!(cache.get("x", &guard), None);
    /// ```
    #[inline]
    #[track_caller]
    pub fn get<'g, Q, G: ReadSection>(&'g self, key: &Q, guard: &'g G) -> Option<&'g V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.check_guard(guard);
        let entry = self.inner.map.get(key, guard)?;
        entry.touch();
        Some(&entry.value)
    }

    /// Whether `key` is cached, without counting as a use of it (unlike
    /// [`get`](RcuCache::get), it leaves the entry's standing with the
    /// eviction policy as it was). Takes no lock.
    ///
    /// # Panics
    /// If `guard` belongs to another domain than the cache.
    ///
    /// ```
    /// let cache = rcu_reclaim::RcuCache::builder().build();
    /// cache.insert(String::from("k"), vec![0u8; 16]);
    /// let guard = cache.domain().read_lock();
    /// assert!(cache.contains_key("k", &guard));
    /// assert!(!cache.contains_key("x", &guard));
    /// ```
    #[inline]
    #[track_caller]
    pub fn contains_key<Q, G: ReadSection>(&self, key: &Q, guard: &G) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.check_guard(guard);
        self.inner.map.contains_key(key, guard)
    }

    /// The cached entries, as `(&K, &V)` in no particular order (to dump,
    /// persist or inspect a cache), valid while the guard and the borrow of
    /// the cache last. Takes no lock, and, as
    /// [`contains_key`](RcuCache::contains_key), counts as no use of the
    /// entries: a walk leaves their standing with the eviction policy as
    /// it was. A walk beside writers sees what
    /// [`RcuHashMap::iter`](crate::RcuHashMap::iter) does (see
    /// [`map::Iter`](crate::map::Iter)).
    ///
    /// # Panics
    /// If `guard` belongs to another domain than the cache.
    ///
    /// ```
    /// let cache = rcu_reclaim::RcuCache::builder().max_bytes(1 << 20).build();
    /// cache.insert(1u32, vec![0u8; 100]);
    /// cache.insert(2u32, vec![0u8; 200]);
    /// let guard = cache.domain().read_lock();
    /// let total: usize = cache.iter(&guard).map(|(_, page)| page.len()).sum();
    /// assert_eq!(total, 300);
    /// ```
    ///
    /// The entries live no longer than the section:
    ///
    /// ```compile_fail,E0505
    /// let cache = rcu_reclaim::RcuCache::builder().build();
    /// cache.insert(1u32, 1u32);
    /// let guard = cache.domain().read_lock();
    /// let (k, v) = cache.iter(&guard).next().unwrap();
    /// drop(guard); // error: cannot move out of `guard` because it is borrowed
    /// println!("{k} {v}");
    /// ```
    #[track_caller]
    pub fn iter<'g, G: ReadSection>(
        &'g self,
        guard: &'g G,
    ) -> impl Iterator<Item = (&'g K, &'g V)> + 'g {
        self.check_guard(guard);
        self.inner
            .map
            .iter(guard)
            .map(|(k, entry)| (k, &entry.value))
    }

    /// Panics, naming the cache and the fix, if `guard` belongs to another
    /// domain than the cache (the map below checks too, but its message
    /// names a map the caller never made).
    #[inline]
    #[track_caller]
    fn check_guard(&self, guard: &impl ReadSection) {
        let ours = self.domain().id();
        let theirs = guard.domain().id();
        assert!(
            theirs == ours,
            "rcu-reclaim: RcuCache used with a guard of domain {theirs} on a cache of domain \
             {ours}; take the guard from cache.domain().read_lock() (or the domain's QsbrThread)"
        );
    }
}

impl<K, V, S> RcuCache<K, V, S>
where
    K: Hash + Eq + Clone + Send + 'static,
    V: Send + 'static,
    S: BuildHasher,
{
    /// Caches `value` for `key`, replacing (and retiring) the old value,
    /// then evicts until the cache is back under its capacity. A
    /// replacement keeps the old entry's standing with the eviction policy:
    /// its frequency and, at the same weight, its place in the queues (it
    /// then queues nothing). Returns whether the value was taken in:
    /// `true` once it is published (like any new entry, it may be the very
    /// one the eviction after it takes, S3-FIFO evicting new entries that
    /// were never read first, so `true` does not promise that a later
    /// `get` finds it); `false`, dropping the value at once and removing
    /// the key's older value (it would be stale), if the entry alone weighs
    /// more than the capacity
    /// ([`capacity_bytes`](RcuCache::capacity_bytes): [`max_bytes`](RcuCache::max_bytes),
    /// or less for a while after a shrink) (unlike
    /// [`RcuHashMap::insert`](crate::RcuHashMap::insert), whose `bool` says
    /// whether the key was new). Tied to a budget, it then
    /// [checks](crate::reclaim::MemoryBudget::check) the budget, as
    /// allocating code does. The cache allows the domain a backlog of
    /// entries waiting to be freed of an eighth of what it holds (at least
    /// 1 MiB, at most `max_bytes`); each time it has evicted or replaced a
    /// quarter of that, an insert looks at the backlog, and past the
    /// allowance (writers evicting faster than grace periods end) it frees
    /// the backlog itself before it returns: an
    /// expedited grace period, then the domain's ready destructors and
    /// callbacks, on this thread. One insert at a time does so; the others
    /// return at once unless the backlog is past twice the allowance, when
    /// they free it too. So, as with a budget, do not insert while
    /// holding a lock that a deferred `Drop` of the domain takes. Inside a
    /// read-side section (a guard, or an online QSBR thread) that grace
    /// period cannot end, so the insert leaves the backlog as it is (and,
    /// the first time, warns, naming the fix: through `tracing`, or on
    /// standard error with no subscriber): on a
    /// QSBR domain the backlog is bounded by how often threads report
    /// quiescent states, not by this allowance (an online thread's insert
    /// warns, once, when the backlog passes four times the allowance).
    /// Made from a closure that another map's or cache's write runs under
    /// its lock (a `get_or_insert_with` loader filling this cache), or
    /// wherever reclaim is not allowed ([`no_reclaim`](crate::reclaim::no_reclaim)),
    /// it leaves the backlog to a later insert too: its grace period could
    /// wait for a reader of this domain that waits for that lock.
    ///
    /// ```
    /// let cache = rcu_reclaim::RcuCache::builder().max_bytes(10_000).build();
    /// assert!(cache.insert(1u32, vec![0u8; 100]));
    /// assert!(!cache.insert(2u32, vec![0u8; 20_000])); // too big to cache
    /// assert_eq!(cache.len(), 1);
    /// // Nor is a stale value kept for a key whose new value is refused:
    /// assert!(!cache.insert(1u32, vec![1u8; 20_000]));
    /// assert!(cache.get(&1, &cache.domain().read_lock()).is_none());
    /// ```
    #[track_caller]
    pub fn insert(&self, key: K, value: V) -> bool {
        let inner = &*self.inner;
        let heap = inner.weigher.weigh(&key, &value);
        let weight = Self::ENTRY_OVERHEAD.saturating_add(heap);
        // The capacity now: after a shrink it stays lowered for a while,
        // and an entry heavier than that would only be evicted again, with
        // every other entry before it.
        if weight > inner.cap.get() {
            // The key's cached value, if any, is older than this one:
            // readers must not find it after this insert returns.
            self.remove(&key);
            return false;
        }
        let hash = inner.map.hash(&key);
        let queued = key.clone();
        let (mut id, mut replaced) = (0, None);
        inner.map.update_hashed(hash, key, |old| {
            // Under the key's stripe lock: `old` stays in the map, and no
            // other write can remove it, until this entry replaces it.
            let (entry_id, freq) = match old {
                Some(o) if o.weight == weight => (o.id, o.freq()),
                Some(o) => (fresh_id(), o.freq()),
                None => (fresh_id(), 0),
            };
            // Counted before the entry is visible, so a writer that
            // replaces or evicts it never subtracts what was not added.
            inner
                .policy
                .rebook(hash, old.map_or(0, |o| o.weight), weight);
            id = entry_id;
            replaced = old.map(|o| (o.weight, o.id == entry_id));
            let entry = Entry::new(value, entry_id, heap, Self::ENTRY_OVERHEAD);
            entry.set_freq(freq);
            Some(entry)
        });
        let push = match replaced {
            Some((old_weight, kept)) => {
                inner.policy.retired(hash, old_weight);
                // Same id: the old entry's queue item stands for this one.
                (!kept).then_some(queued)
            }
            None => Some(queued),
        };
        self.queue_and_evict(hash, push.map(|key| (key, id, weight)));
        true
    }

    /// Cache-aside for values that are costly to make: `read` runs on the
    /// value of `key`, made by `make` and cached first on a miss. Unlike
    /// [`get_or_insert_with`](RcuCache::get_or_insert_with), `make` runs
    /// outside any read-side section and any lock, and the insert after it
    /// as [`insert`](RcuCache::insert) does (so it keeps the domain's
    /// backlog within the cache's allowance, freeing it itself past it):
    /// the call to use for large values made by several threads. On a miss,
    /// `read` sees the value just made, before it is shared. Returns what
    /// `read` returns. Call it outside read-side sections of the cache's
    /// domain, as `insert`.
    ///
    /// Threads that miss the same key at once make its value once, as
    /// moka's `get_with` does: the first makes it, the others wait for
    /// that `make` and its insert to end, then read the value cached (a
    /// `make` that panics ends its turn, and the next waiter makes the
    /// value; a value not cached after all, evicted at once or heavier
    /// than the capacity, each waiter makes itself, without waiting
    /// again). A `make` may read caches, this one and its own key
    /// included: a miss inside a `make` waits for no other thread's (two
    /// `make`s that each missed the other's key would wait for each other
    /// for ever), it makes the value itself. As with any loader that
    /// others wait for, a `make` must not wait for a lock that another
    /// caller may hold while it calls this for the same key. Inside a read-side
    /// section of the cache's domain a miss does not wait for another
    /// thread's `make` (its insert may wait for grace periods that the
    /// section holds up): it makes the value itself. So does a miss inside
    /// a read-side section of any other domain (an online QSBR thread's
    /// included), inside a callback, or under one of the crate's locks
    /// (a `get_or_insert_with` loader): the `make` waited for may wait for
    /// that section's grace period, for that callback (`barrier`), or for
    /// that lock.
    ///
    /// On a hit, `read` runs inside a read-side section of the cache's
    /// domain (only the section keeps the cached value alive while it
    /// reads): like `get_or_insert_with`'s `f`, it must not wait for a
    /// grace period (`synchronize`, `barrier`, `store_sync` panic there),
    /// and while it runs no grace period of the domain ends. On a miss it
    /// runs in no section. So keep `read` short and free of such waits, or
    /// a call that works on a cold cache panics once the key is cached.
    ///
    /// ```
    /// let cache = rcu_reclaim::RcuCache::builder().max_bytes(1 << 20).build();
    /// let len = cache.read_or_insert_with(7u32, || vec![1u8; 4096], |page| page.len());
    /// assert_eq!(len, 4096);
    /// // Cached now: `make` is not called again.
    /// let sum = cache.read_or_insert_with(7, || unreachable!(), |page| page.iter().map(|&b| b as u32).sum::<u32>());
    /// assert_eq!(sum, 4096);
    /// // On a miss `read` runs in no section; on a hit, in one.
    /// let rcu = cache.domain().clone();
    /// assert!(!cache.read_or_insert_with(8, || vec![0u8; 1], |_| rcu.in_read_section()));
    /// assert!(cache.read_or_insert_with(8, || unreachable!(), |_| rcu.in_read_section()));
    /// ```
    ///
    /// `read` sees the value for the call only: it cannot hand it out,
    /// since the value may be evicted and freed once the call returns:
    ///
    /// ```compile_fail
    /// let cache = rcu_reclaim::RcuCache::builder().build();
    /// let s: &String = cache.read_or_insert_with(1u32, || String::from("v"), |v| v); // error: lifetime may not live long enough
    /// ```
    pub fn read_or_insert_with<R>(
        &self,
        key: K,
        make: impl FnOnce() -> V,
        read: impl FnOnce(&V) -> R,
    ) -> R {
        let hash = self.inner.map.hash(&key);
        let mut made_elsewhere = false;
        let turn = loop {
            {
                let guard = self.domain().read_lock();
                if let Some(value) = self.get(&key, &guard) {
                    return read(value);
                }
            }
            if made_elsewhere || !loading::may_wait_for_a_load() {
                break None;
            }
            match self.inner.loads.begin(hash) {
                loading::Begin::Waited { made } => {
                    made_elsewhere = made;
                    continue;
                }
                loading::Begin::Alone => break None,
                loading::Begin::Turn(turn) => {
                    // A load that ended between the miss above and this
                    // turn may have cached it.
                    let guard = self.domain().read_lock();
                    if let Some(value) = self.get(&key, &guard) {
                        return read(value);
                    }
                    break Some(turn);
                }
            }
        };
        let value = make();
        let out = read(&value);
        self.insert(key, value);
        if let Some(turn) = turn {
            turn.made();
        }
        out
    }

    /// The value of `key`, inserting `f()` first on a miss (the
    /// cache-aside pattern in one call). `f` runs at most once, under the
    /// key's stripe lock of the map (so it must not write to this cache;
    /// other writers of that stripe wait for it). A value inserted here may
    /// be evicted at once if the cache is full of more valuable entries,
    /// and one heavier than the capacity ([`capacity_bytes`](RcuCache::capacity_bytes)) is not
    /// cached (as [`insert`](RcuCache::insert) refuses it; no other entry
    /// is evicted for it); the reference stays valid while the guard lasts.
    ///
    /// `f`, and the evictions the insert makes, run inside the caller's
    /// read-side section, which no grace period can end while they run, so
    /// the insert cannot free the domain's backlog itself as
    /// [`insert`](RcuCache::insert) does. For large values made by
    /// several threads, an allocation waiting on the allocator's lock keeps
    /// that section open: in the crate's `cache_aside_backlog` example (2
    /// threads, 1-64 KiB values, a 64 MiB cache, 2 cores) the backlog
    /// averaged 22-59 MiB, against 3 MiB with
    /// [`read_or_insert_with`](RcuCache::read_or_insert_with), which makes
    /// and inserts outside the section (and ran 1.8 times as many
    /// operations a second there). Prefer it for large values.
    ///
    /// # Panics
    /// If `guard` belongs to another domain than the cache; if `f` writes
    /// to this cache (`insert`, `remove`, `get_or_insert_with`), in that
    /// write, which would otherwise deadlock; if `f` writes to another
    /// cache or map whose key's lock another thread holds while it waits
    /// for this one (two threads writing each other's caches from these
    /// closures would otherwise wait for each other for ever: see
    /// [`RcuHashMap::remove_if`](crate::RcuHashMap::remove_if)).
    ///
    /// ```
    /// let cache = rcu_reclaim::RcuCache::builder().build();
    /// let guard = cache.domain().read_lock();
    /// let v = cache.get_or_insert_with(7u32, || "loaded".to_string(), &guard);
    /// assert_eq!(v, "loaded");
    /// assert_eq!(cache.get_or_insert_with(7, || unreachable!(), &guard), "loaded");
    /// ```
    ///
    /// The value lives no longer than the section:
    ///
    /// ```compile_fail,E0505
    /// let cache = rcu_reclaim::RcuCache::builder().build();
    /// let guard = cache.domain().read_lock();
    /// let v = cache.get_or_insert_with(1u32, || 1u32, &guard);
    /// drop(guard); // error: cannot move out of `guard` because it is borrowed
    /// println!("{v}");
    /// ```
    #[track_caller]
    pub fn get_or_insert_with<'g, G: ReadSection>(
        &'g self,
        key: K,
        f: impl FnOnce() -> V,
        guard: &'g G,
    ) -> &'g V {
        self.check_guard(guard);
        let inner = &*self.inner;
        let hash = inner.map.hash(&key);
        if let Some(entry) = inner.map.get_hashed(hash, &key, guard) {
            entry.touch();
            return &entry.value;
        }
        let queued = key.clone();
        let mut made = None;
        // The loaded value waits here while it is weighed: should the
        // weigher panic, it drops in this frame, after the stripe lock
        // (its `Drop` may write to this cache).
        let mut loaded = None;
        let entry = inner.map.get_or_insert_with_hashed(
            hash,
            key,
            || {
                let heap = inner.weigher.weigh(&queued, loaded.insert(f()));
                let value = loaded.take().expect("just loaded");
                let mut entry = Entry::new(value, fresh_id(), heap, Self::ENTRY_OVERHEAD);
                if entry.weight > inner.cap.get() {
                    // Too heavy to cache (as `insert` refuses it): in the
                    // map only until removed below, weighing nothing, so
                    // neither it nor a write that replaces or removes it
                    // meanwhile changes the bytes, and no other entry is
                    // evicted for it.
                    made = Some((entry.id, entry.weight, false));
                    entry.weight = 0;
                } else {
                    inner.policy.rebook(hash, 0, entry.weight);
                    made = Some((entry.id, entry.weight, true));
                }
                entry
            },
            guard,
        );
        match made {
            Some((id, weight, true)) => self.queue_and_evict(hash, Some((queued, id, weight))),
            Some((id, weight, false)) => {
                // Retired at once (unless replaced meanwhile: another id);
                // the guard's section keeps it readable for the caller.
                // By id, as eviction finds entries: not the key's `Eq`.
                if inner.map.unlink_hashed_by(hash, |e| e.id == id).is_some() {
                    inner.policy.retired(hash, weight);
                }
            }
            None => entry.touch(),
        }
        &entry.value
    }

    /// Removes `key`: `true` if it was cached. The entry is freed after a
    /// grace period; readers that found it keep reading it until then.
    ///
    /// ```
    /// let cache = rcu_reclaim::RcuCache::builder().build();
    /// cache.insert("k", 1);
    /// assert!(cache.remove("k"));
    /// assert!(!cache.remove("k"));
    /// assert_eq!(cache.bytes(), 0);
    /// ```
    #[track_caller]
    pub fn remove<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.remove_if(key, |_| true)
    }

    /// Removes `key` if `pred` accepts its cached value: `true` if it
    /// removed it (moka's `invalidate` with a condition, for a value found
    /// stale). `pred` runs under the key's lock, so no other write to the
    /// key runs meanwhile: a value replaced since the caller looked is
    /// judged, never removed unseen. As [`RcuHashMap::remove_if`](crate::RcuHashMap::remove_if)'s
    /// `pred`, it must not write to this cache nor wait for a grace period.
    ///
    /// # Panics
    /// If `pred` writes to this cache (that would deadlock), naming the
    /// mistake.
    ///
    /// ```
    /// let cache = rcu_reclaim::RcuCache::builder().build();
    /// cache.insert("page", (7u64, vec![0u8; 100])); // (version, body)
    /// assert!(!cache.remove_if("page", |(version, _)| *version < 7));
    /// assert!(cache.remove_if("page", |(version, _)| *version < 8));
    /// assert!(cache.is_empty());
    /// assert_eq!(cache.bytes(), 0);
    /// ```
    #[track_caller]
    pub fn remove_if<Q>(&self, key: &Q, pred: impl FnOnce(&V) -> bool) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let inner = &*self.inner;
        let hash = inner.map.hash(key);
        let mut weight = 0;
        let removed = inner.map.remove_if_hashed(hash, key, |e| {
            let remove = pred(&e.value);
            if remove {
                weight = e.weight;
            }
            remove
        });
        inner.policy.rebook(hash, weight, 0);
        removed
    }

    /// Keeps only the entries for which `f` returns `true` (to drop every
    /// page of a file that changed, say): each entry cached for the whole
    /// call is offered to `f` once, under its key's lock, and removed if
    /// `f` says `false`, freed after a grace period. An entry inserted or
    /// replaced meanwhile may or may not be offered. Offering an entry is
    /// no use of it: the eviction policy sees the kept ones as it did.
    /// `f` runs as [`RcuHashMap::retain`](crate::RcuHashMap::retain)'s
    /// does: it must not write to this cache nor wait for a grace period.
    ///
    /// # Panics
    /// If `f` writes to this cache (that would deadlock), naming the
    /// mistake.
    ///
    /// ```
    /// let cache = rcu_reclaim::RcuCache::builder().build();
    /// for (path, page) in [("a.txt", 0u32), ("a.txt.1", 1), ("b.txt", 0)] {
    ///     cache.insert((path, page), vec![0u8; 4096]);
    /// }
    /// cache.retain(|(path, _), _| !path.starts_with("a.txt"));
    /// assert_eq!(cache.len(), 1);
    /// assert!(cache.contains_key(&("b.txt", 0), &cache.domain().read_lock()));
    /// ```
    #[track_caller]
    pub fn retain(&self, mut f: impl FnMut(&K, &V) -> bool) {
        let inner = &*self.inner;
        // Booked by the hash the entry is filed under, not by hashing its
        // key again: that ran the key's `Hash` (the user's code) under the
        // stripe lock, in a call given no key; one that panicked made
        // `retain` panic, one that changed since the insert took the
        // bytes off another shard's count. The filed hash has its top bit
        // set, which the shards ignore (`shards::shard_of`).
        inner.map.retain_filed(|hash, key, e| {
            let keep = f(key, &e.value);
            if !keep {
                inner.policy.rebook(hash, e.weight, 0);
            }
            keep
        });
    }

    /// Removes every entry whose insert has returned; each is freed after
    /// a grace period.
    ///
    /// ```
    /// let cache = rcu_reclaim::RcuCache::builder().build();
    /// for i in 0..100 {
    ///     cache.insert(i, i);
    /// }
    /// cache.clear();
    /// assert!(cache.is_empty());
    /// assert_eq!(cache.bytes(), 0);
    /// ```
    #[track_caller]
    pub fn clear(&self) {
        /// Queues again what a clear has not removed when a key's `Drop`
        /// panics under it (its item leaving the queue), so those entries
        /// can still be evicted.
        struct Requeue<'a, K> {
            policy: &'a Shards<K>,
            rcu: &'a Rcu,
            queued: std::collections::VecDeque<(K, u64, usize, u64)>,
        }
        impl<K> Drop for Requeue<'_, K> {
            fn drop(&mut self) {
                for (key, id, weight, hash) in self.queued.drain(..) {
                    (self.policy.of(hash))
                        .lock_queues(self.rcu)
                        .push(key, id, weight, hash);
                }
            }
        }
        let mut rest = Requeue {
            policy: &self.inner.policy,
            rcu: self.domain(),
            queued: self
                .inner
                .policy
                .iter()
                .flat_map(|shard| shard.lock_queues(self.domain()).drain())
                .collect(),
        };
        let guard = self.domain().read_lock();
        let store = MapStore::new(&self.inner, &guard);
        while let Some(&(_, id, _, hash)) = rest.queued.front() {
            // No shard lock held here: it waits for the stripe.
            let _ = store.take(hash, id, true);
            rest.queued.pop_front();
            // Retired as it goes: a clear of a large cache holds no list.
            store.retire_unlinked();
        }
    }

    /// Queues an entry of `hash` just written (`(key, id, weight)`;
    /// `None`: a replacement that kept its id, already queued) in its
    /// shard and, should the cache be over its capacity, evicts from that
    /// shard, down to seven eighths of its share at most, then from the
    /// shards above their share (see `shards.rs`); then checks the budget (with no
    /// cache lock held). With nothing to queue and the cache within its
    /// capacity, it takes no lock.
    fn queue_and_evict(&self, hash: u64, item: Option<(K, u64, usize)>) {
        // One call: under memory pressure its evictions' retires wait 1 s
        // in all at most, not each its own bound.
        crate::callbacks::one_call(|| self.queue_and_evict_in_one_call(hash, item));
    }

    /// `queue_and_evict`'s body.
    fn queue_and_evict_in_one_call(&self, hash: u64, item: Option<(K, u64, usize)>) {
        let inner = &*self.inner;
        let shards = &inner.policy;
        let cap = inner.cap.get();
        if item.is_some() || shards.bytes() > cap {
            let shard = shards.of(hash);
            let floor = shards.floor(cap);
            let mut queues = shard.lock_queues(inner.map.domain());
            if let Some((key, id, weight)) = item {
                queues.push(key, id, weight, hash);
            }
            let over = || shards.bytes() > cap && shard.bytes.load(Ordering::Relaxed) > floor;
            let (_, evicted, unlinked) = inner.evict(shard, &mut queues, over, usize::MAX);
            shard.retired_add(evicted);
            // The map's count (a line every writer writes) is read only
            // once the queues are past the slack.
            let queued = queues.len();
            let stale = (queued > STALE_SLACK
                && queued > 2 * (inner.map.len() / shards.count()) + STALE_SLACK)
                .then(|| {
                    let guard = inner.map.domain().read_lock();
                    let store = MapStore::of_shard(inner, &guard, shard);
                    queues.retain_live(&store);
                    store.into_unlocked()
                });
            drop(queues);
            // Retired, and the stale keys dropped, with the shard's lock
            // released.
            drop(unlinked);
            drop(stale);
            if shards.bytes() > cap {
                // This shard is down to its floor: the shards above their
                // share make room.
                let last = shards.index(hash);
                if let Some((_, evicted)) = inner.evict_across(cap, usize::MAX, false, last) {
                    inner.policy.retired(hash, evicted);
                }
            }
        }
        if let Some(budget) = &self.budget {
            budget.check();
        }
        self.free_backlog_if_due(hash);
    }
}

/// Queued items beyond twice the entries before stale ones are dropped.
const STALE_SLACK: usize = 1024;

/// Inserts each pair, as [`insert`](RcuCache::insert) does (evicting as
/// it goes). `insert` takes `&self`, so a cache shared between threads is
/// filled with a loop of `insert`s instead.
///
/// ```
/// use rcu_reclaim::RcuCache;
/// let mut cache: RcuCache<u32, Vec<u8>> = RcuCache::builder().max_bytes(1 << 20).build();
/// cache.extend((0..10u32).map(|i| (i, vec![0u8; 100])));
/// assert_eq!(cache.len(), 10);
/// ```
impl<K, V, S> Extend<(K, V)> for RcuCache<K, V, S>
where
    K: Hash + Eq + Clone + Send + 'static,
    V: Send + 'static,
    S: BuildHasher,
{
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, pairs: I) {
        for (key, value) in pairs {
            self.insert(key, value);
        }
    }
}

impl<K, V, S> Drop for RcuCache<K, V, S> {
    fn drop(&mut self) {
        // Stop the events first, then the shrinker. `unregister` waits for
        // a reclaim pass scanning the cache on another thread, so the last
        // reference to the cache's entries is this one, and they are freed
        // as `inner` drops (no reader can reach them any more), before the
        // drop returns; what was evicted earlier waits in the domain
        // (`drop(cache); rcu.barrier()` frees it all). Where it cannot wait
        // (inside reclaim, a callback or a read-side section), the pass
        // finishes with the cache and frees the entries when it lets go,
        // on its own thread.
        drop(self.monitor.take());
        match self.registered.take() {
            Some((reclaimer, id)) => {
                reclaimer.unregister(id);
            }
            None => {
                crate::sources::UNSHRUNK_CACHES.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

impl<K, V, S> fmt::Debug for RcuCache<K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RcuCache")
            .field("len", &self.len())
            .field("bytes", &self.bytes())
            .field("capacity_bytes", &self.capacity_bytes())
            .field("max_bytes", &self.max_bytes())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
