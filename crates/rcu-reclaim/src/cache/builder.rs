//! [`RcuCacheBuilder`]: one builder that ties a cache to memory.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::marker::PhantomData;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use super::entry::{entry_heap, HeapSize, Weigher};
use super::shards::Shards;
use super::shrink::{CacheShrinker, Cap};
use super::{Inner, RcuCache};
use crate::domain::Rcu;
use crate::map::RcuHashMap;
use crate::reclaim::{MemoryBudget, Reclaimer};
use crate::sources::{PressureMonitor, PressureSource};

/// The capacity of a cache built with neither `max_bytes` nor a budget.
const DEFAULT_MAX_BYTES: usize = 64 << 20;

/// How long pressure events keep RCU in fast mode after the last one.
const QUIET: Duration = Duration::from_secs(2);

/// Builds an [`RcuCache`]: its capacity, its domain, and what ties it to
/// memory. Every setting is optional.
///
/// | call | effect |
/// |---|---|
/// | [`max_bytes`](RcuCacheBuilder::max_bytes) | the capacity in accounted bytes (default: the budget's `high` watermark, else 64 MiB) |
/// | [`budget`](RcuCacheBuilder::budget) | registers the cache's shrinker with the budget's reclaimer, and checks the budget after each insert: above its watermarks, reclaim shrinks the cache |
/// | [`reclaimer`](RcuCacheBuilder::reclaimer) | registers the shrinker with a reclaimer of your own |
/// | [`auto_pressure`](RcuCacheBuilder::auto_pressure) | the kernel's pressure signals (PSI, cgroup v2, cgroup v1, RSS over the budget's `low`) shrink the cache |
/// | [`pressure_source`](RcuCacheBuilder::pressure_source) | the same with a source of your choice |
/// | [`rcu`](RcuCacheBuilder::rcu) | the domain (default: the reclaimer's, else the global one) |
/// | [`weigher`](RcuCacheBuilder::weigher) | how entries are weighed (default [`HeapSize`]) |
/// | [`hasher`](RcuCacheBuilder::hasher) | how keys are hashed (default std's `RandomState`) |
/// | [`regrow_after`](RcuCacheBuilder::regrow_after) | how long the capacity stays lowered after a shrink (default 1 s) |
/// | [`shards`](RcuCacheBuilder::shards) | how many shards the eviction policy is split into (default: two per CPU, each at least 1 MiB of the capacity) |
///
/// ```
/// use std::sync::Arc;
/// use rcu_reclaim::reclaim::{AccountingAlloc, MemoryBudget, Reclaimer};
/// use rcu_reclaim::{Rcu, RcuCache};
///
/// let budget = Arc::new(MemoryBudget::new(
///     1 << 30,
///     Arc::new(Reclaimer::new(Rcu::global())),
///     AccountingAlloc::live_bytes,
/// ));
/// let cache: RcuCache<u64, Vec<u8>> = RcuCache::builder()
///     .max_bytes(64 << 20)
///     .budget(&budget)
///     .build();
/// assert_eq!(budget.reclaimer().stats().calls, 0);
/// # drop(cache);
/// ```
#[must_use = "a builder makes no cache until `.build()` is called"]
pub struct RcuCacheBuilder<K, V, W = HeapSize, S = RandomState> {
    max_bytes: Option<usize>,
    rcu: Option<Rcu>,
    budget: Option<Arc<MemoryBudget>>,
    reclaimer: Option<Arc<Reclaimer>>,
    auto_pressure: bool,
    source: Option<Box<dyn PressureSource>>,
    weigher: W,
    hasher: S,
    regrow_after: Duration,
    shards: Option<usize>,
    _types: PhantomData<fn(K, V)>,
}

impl<K, V> RcuCacheBuilder<K, V> {
    /// The defaults (see the table above); the same as
    /// [`RcuCache::builder`].
    ///
    /// ```
    /// let cache: rcu_reclaim::RcuCache<u8, u8> = rcu_reclaim::RcuCacheBuilder::new().build();
    /// assert_eq!(cache.max_bytes(), 64 << 20);
    /// ```
    pub fn new() -> Self {
        RcuCacheBuilder {
            max_bytes: None,
            rcu: None,
            budget: None,
            reclaimer: None,
            auto_pressure: false,
            source: None,
            weigher: HeapSize,
            hasher: RandomState::new(),
            regrow_after: Duration::from_secs(1),
            shards: None,
            _types: PhantomData,
        }
    }
}

/// The same as [`RcuCacheBuilder::new`].
///
/// ```
/// let b: rcu_reclaim::RcuCacheBuilder<u8, u8> = Default::default();
/// assert_eq!(b.build().max_bytes(), 64 << 20);
/// ```
impl<K, V> Default for RcuCacheBuilder<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K, V, W, S> RcuCacheBuilder<K, V, W, S> {
    /// The capacity in accounted bytes (see [`RcuCache::bytes`]), at most
    /// `isize::MAX` (no heap holds more; a larger value is taken as that,
    /// so the cache's byte counts cannot overflow). With
    /// [`auto_pressure`](RcuCacheBuilder::auto_pressure) and no budget,
    /// under a cgroup memory limit, it is held to 80 % of that limit
    /// ([`RcuCache::max_bytes`] tells what was kept).
    ///
    /// Entries are weighed by [`ReclaimSize`](crate::ReclaimSize) unless a
    /// [`weigher`](RcuCacheBuilder::weigher) is given. Keys or values that
    /// hold an `Arc` or `Rc` need one: `ReclaimSize` counts the pointer,
    /// not what it keeps alive, and the default weigher refuses them at
    /// compile time ([`HeapSize`]). The refusal is an
    /// error of `cargo build` (E0080, evaluated as the cache's code is
    /// generated), which `cargo check` and editors do not show; its
    /// message names the weigher to write.
    ///
    /// ```
    /// let cache: rcu_reclaim::RcuCache<u8, u8> =
    ///     rcu_reclaim::RcuCache::builder().max_bytes(1 << 20).build();
    /// assert_eq!(cache.max_bytes(), 1 << 20);
    /// let huge: rcu_reclaim::RcuCache<u8, u8> =
    ///     rcu_reclaim::RcuCache::builder().max_bytes(usize::MAX).build();
    /// assert_eq!(huge.max_bytes(), isize::MAX as usize);
    /// ```
    ///
    /// Every entry weighs at least [`RcuCache::ENTRY_OVERHEAD`] bytes
    /// besides its value's heap: a capacity below that (`max_bytes(0)`,
    /// say) makes a cache that holds nothing, every insert refused, which
    /// is one way to turn caching off:
    ///
    /// ```
    /// let off: rcu_reclaim::RcuCache<u8, u8> = rcu_reclaim::RcuCache::builder().max_bytes(0).build();
    /// assert!(!off.insert(1, 1));
    /// assert!(off.is_empty());
    /// ```
    pub fn max_bytes(mut self, bytes: usize) -> Self {
        self.max_bytes = Some(bytes.min(isize::MAX as usize));
        self
    }

    /// The domain whose grace periods free the cache's entries.
    ///
    /// # Panics
    /// In [`build`](RcuCacheBuilder::build), if a budget or reclaimer of
    /// another domain is given too (reclaim would not see what the cache
    /// frees).
    ///
    /// ```
    /// use rcu_reclaim::{Config, Rcu, RcuCache};
    /// let rcu = Rcu::new(Config::new()).unwrap();
    /// let cache: RcuCache<u8, u8> = RcuCache::builder().rcu(&rcu).build();
    /// assert_eq!(cache.domain().id(), rcu.id());
    /// ```
    pub fn rcu(mut self, rcu: &Rcu) -> Self {
        self.rcu = Some(rcu.clone());
        self
    }

    /// Ties the cache to `budget`: its shrinker is registered with the
    /// budget's reclaimer (so the budget's background and direct reclaim
    /// evict from it), each insert then [checks](MemoryBudget::check) the
    /// budget, and the domain defaults to the reclaimer's.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use rcu_reclaim::reclaim::{MemoryBudget, Reclaimer};
    /// use rcu_reclaim::{Rcu, RcuCache};
    /// let budget = Arc::new(MemoryBudget::new(1 << 30, Arc::new(Reclaimer::new(Rcu::global())), || 0));
    /// let cache: RcuCache<u8, u8> = RcuCache::builder().budget(&budget).build();
    /// assert_eq!(cache.max_bytes(), budget.watermarks().high);
    /// ```
    pub fn budget(mut self, budget: &Arc<MemoryBudget>) -> Self {
        self.budget = Some(budget.clone());
        self
    }

    /// Registers the cache's shrinker with `reclaimer` (with a budget, the
    /// budget's reclaimer is used instead; they must then be the same).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use rcu_reclaim::pressure::NodeMask;
    /// use rcu_reclaim::reclaim::Reclaimer;
    /// use rcu_reclaim::{Rcu, RcuCache};
    /// let reclaimer = Arc::new(Reclaimer::new(Rcu::global()));
    /// let cache = RcuCache::builder().reclaimer(&reclaimer).build();
    /// for i in 0..100u32 {
    ///     cache.insert(i, vec![0u8; 1000]);
    /// }
    /// reclaimer.reclaim(50_000, &NodeMask::all()).unwrap();
    /// assert!(cache.len() < 100);
    /// ```
    pub fn reclaimer(mut self, reclaimer: &Arc<Reclaimer>) -> Self {
        self.reclaimer = Some(reclaimer.clone());
        self
    }

    /// Shrinks the cache on the kernel's memory-pressure signals: the
    /// cache owns a monitor with the best source available (as
    /// [`auto_pressure`](crate::sources::auto_pressure): PSI, cgroup v2,
    /// cgroup v1, then RSS above the budget's `low` watermark, or never
    /// without a budget; under a cgroup limit, with the cgroup's usage
    /// polled against it). A medium event evicts an eighth of the cache, a
    /// critical one half, at least one entry ([`Reclaimer::shrink`]), with a budget its
    /// other caches too. Without a budget or reclaimer, the cache makes a
    /// reclaimer of its own.
    ///
    /// Under a cgroup memory limit, without a [`budget`](RcuCacheBuilder::budget),
    /// the cache's capacity is held to 80 % of that limit (where a budget
    /// from the cgroup keeps usage): memory past the limit is never free,
    /// and a cache filled at full speed towards it can outrun the pressure
    /// signal. With other memory in the cgroup growing fast too, tie the
    /// cache to [`sources::budget_from_cgroup`](crate::sources::budget_from_cgroup)
    /// as well: its check on every insert reclaims before the limit is
    /// reached.
    ///
    /// The monitor is a thread of its own per cache (and, under a cgroup
    /// limit, a read of the cgroup's usage every 20 ms), which dropping the
    /// cache stops and joins (at once: see
    /// [`PressureMonitor`]): a program with
    /// many caches builds them with one [`budget`](RcuCacheBuilder::budget)
    /// and without `auto_pressure`, and starts one monitor for all of them
    /// with [`sources::auto_pressure_for`](crate::sources::auto_pressure_for).
    ///
    /// ```
    /// let cache: rcu_reclaim::RcuCache<u64, Vec<u8>> = rcu_reclaim::RcuCache::builder()
    ///     .max_bytes(1 << 30)
    ///     .auto_pressure()
    ///     .build();
    /// # drop(cache);
    /// ```
    pub fn auto_pressure(mut self) -> Self {
        self.auto_pressure = true;
        self
    }

    /// As [`auto_pressure`](RcuCacheBuilder::auto_pressure), with
    /// `source` (a [`SyntheticSource`](crate::sources::SyntheticSource) in
    /// tests, a [`PsiTrigger`](crate::sources::PsiTrigger) of your
    /// settings...).
    ///
    /// ```
    /// use std::time::Duration;
    /// use rcu_reclaim::sources::{Level, SyntheticSource};
    /// use rcu_reclaim::RcuCache;
    /// let (events, source) = SyntheticSource::new();
    /// let cache = RcuCache::builder().pressure_source(Box::new(source)).build();
    /// for i in 0..64u32 {
    ///     cache.insert(i, vec![0u8; 1000]);
    /// }
    /// events.send(Level::Critical).unwrap(); // evicts half
    /// while cache.len() > 32 {
    ///     std::thread::sleep(Duration::from_millis(1));
    /// }
    /// ```
    pub fn pressure_source(mut self, source: Box<dyn PressureSource>) -> Self {
        self.source = Some(source);
        self
    }

    /// How long the capacity stays at what a shrink left before it grows
    /// back (default 1 s; each shrink restarts it). It then grows in
    /// steps, doubling (from at least a sixteenth of `max_bytes`) every
    /// quarter of this time, up to `max_bytes`, so that pressure that
    /// comes again finds the cache on its way up, not back at its cap.
    ///
    /// ```
    /// use std::time::Duration;
    /// let cache: rcu_reclaim::RcuCache<u8, u8> =
    ///     rcu_reclaim::RcuCache::builder().regrow_after(Duration::from_secs(10)).build();
    /// # drop(cache);
    /// ```
    pub fn regrow_after(mut self, quiet: Duration) -> Self {
        self.regrow_after = quiet;
        self
    }

    /// Splits the eviction policy into `n` shards by key hash (rounded up
    /// to a power of two, at most 64; 0 is taken as 1), each with its own lock and an equal
    /// share of the capacity: writers of keys in different shards evict
    /// side by side. By default two per CPU, as many as leave each shard
    /// at least 1 MiB of the capacity (a cache under 2 MiB has one). One
    /// shard evicts exactly by S3-FIFO's order over the whole cache; more
    /// shards evict by it within each. The capacity holds for the cache
    /// as a whole either way (each insert evicts back under it once its
    /// entry is published: see [`RcuCache::bytes`] for the moment between).
    ///
    /// What a shard costs in hit ratio depends on how many entries its
    /// share holds, so set the count yourself when your entries are much
    /// smaller or larger than the default assumes. In the crate's
    /// simulation (Zipf 0.99), a share of about 30 entries of 1–64 KiB
    /// cost 0.8 points against one shard, 8 entries 2 points; entries of
    /// 64–256 B lost at most 0.3 points down to shares of 16 KiB (60
    /// entries). Many writers on few shards wait for each other: a 4 MiB
    /// cache of small values written by 16 threads ran 1.8× as many gets a
    /// second in 64 shards as in its default 4, at the same hit ratio.
    ///
    /// ```
    /// let cache = rcu_reclaim::RcuCache::builder()
    ///     .max_bytes(4 << 20)
    ///     .shards(1) // one lock, one order of eviction
    ///     .build();
    /// for i in 0..10_000u32 {
    ///     cache.insert(i, vec![0u8; 1024]);
    /// }
    /// assert!(cache.bytes() <= 4 << 20);
    /// ```
    pub fn shards(mut self, n: usize) -> Self {
        self.shards = Some(n);
        self
    }

    /// Weighs entries with `weigher`: the heap bytes of a key and its
    /// value (the cache adds [`RcuCache::ENTRY_OVERHEAD`]). For types
    /// without [`ReclaimSize`](crate::ReclaimSize), or sizes of your
    /// choosing. Any [`Weigher`] goes, so a closure
    /// must name both parameter types (`|_: &u32, v: &Page| ..`): with
    /// one left out, the compiler cannot infer the closure's signature
    /// and says "implementation of `FnOnce` is not general enough".
    ///
    /// ```
    /// struct Page(Box<[u8; 4096]>); // no ReclaimSize
    /// let cache = rcu_reclaim::RcuCache::builder()
    ///     .max_bytes(1 << 20)
    ///     .weigher(|_: &u32, _: &Page| 4096)
    ///     .build();
    /// cache.insert(1, Page(Box::new([0; 4096])));
    /// assert!(cache.bytes() >= 4096);
    /// ```
    pub fn weigher<W2>(self, weigher: W2) -> RcuCacheBuilder<K, V, W2, S> {
        self.with(|_, hasher| (weigher, hasher))
    }

    /// Hashes keys with `hasher` (default: std's [`RandomState`], SipHash
    /// with random keys, which resists hash flooding by keys an attacker
    /// chooses). A faster hasher (e.g. the `foldhash` or `ahash` crates')
    /// makes lookups and inserts cheaper where keys are trusted: the hash
    /// is most of a hit's instructions (`examples/callgrind_cache`, a
    /// `u64` key: 173 instructions per hit with SipHash, 96 with ahash).
    /// The eviction policy uses the same hash.
    ///
    /// ```
    /// use std::hash::{BuildHasherDefault, DefaultHasher};
    /// let cache = rcu_reclaim::RcuCache::builder()
    ///     .max_bytes(1 << 20)
    ///     .hasher(BuildHasherDefault::<DefaultHasher>::default())
    ///     .build();
    /// cache.insert(7u64, vec![1u8; 100]);
    /// let guard = cache.domain().read_lock();
    /// assert_eq!(cache.get(&7, &guard).map(Vec::len), Some(100));
    /// ```
    pub fn hasher<S2>(self, hasher: S2) -> RcuCacheBuilder<K, V, W, S2> {
        self.with(|weigher, _| (weigher, hasher))
    }

    /// The same settings with the weigher and hasher `swap` makes of the
    /// current ones (the two settings that change the builder's type).
    fn with<W2, S2>(self, swap: impl FnOnce(W, S) -> (W2, S2)) -> RcuCacheBuilder<K, V, W2, S2> {
        let (weigher, hasher) = swap(self.weigher, self.hasher);
        RcuCacheBuilder {
            max_bytes: self.max_bytes,
            rcu: self.rcu,
            budget: self.budget,
            reclaimer: self.reclaimer,
            auto_pressure: self.auto_pressure,
            source: self.source,
            weigher,
            hasher,
            regrow_after: self.regrow_after,
            shards: self.shards,
            _types: PhantomData,
        }
    }

    /// The cache.
    ///
    /// # Panics
    /// If the domain given to [`rcu`](RcuCacheBuilder::rcu), the budget's
    /// reclaimer and the reclaimer given are not all of one domain, or
    /// the budget's reclaimer is not the reclaimer given; if both
    /// [`auto_pressure`](RcuCacheBuilder::auto_pressure) and
    /// [`pressure_source`](RcuCacheBuilder::pressure_source) were called
    /// (the cache watches one source).
    ///
    /// ```
    /// let cache = rcu_reclaim::RcuCache::builder().max_bytes(1 << 20).build();
    /// cache.insert(1u32, String::from("one"));
    /// assert_eq!(cache.len(), 1);
    /// ```
    #[track_caller]
    pub fn build(self) -> RcuCache<K, V, S>
    where
        K: Hash + Eq + Send + Sync + 'static,
        V: Send + Sync + 'static,
        W: Weigher<K, V>,
        S: BuildHasher + Send + Sync + 'static,
    {
        let RcuCacheBuilder {
            max_bytes,
            rcu,
            budget,
            reclaimer,
            auto_pressure,
            source,
            weigher,
            hasher,
            regrow_after,
            shards,
            _types,
        } = self;
        assert!(
            !(auto_pressure && source.is_some()),
            "rcu-reclaim: RcuCacheBuilder given both auto_pressure() and pressure_source(); the \
             cache watches one source: keep pressure_source() for that source, or \
             auto_pressure() for the best one the system offers"
        );
        let reclaimer = match (budget.as_ref().map(|b| b.reclaimer()), reclaimer) {
            (Some(of_budget), Some(given)) => {
                assert!(
                    Arc::ptr_eq(of_budget, &given),
                    "rcu-reclaim: RcuCacheBuilder given a budget and another reclaimer than \
                     the budget's; give one of them (the budget registers the cache with its \
                     own reclaimer)"
                );
                Some(given)
            }
            (of_budget, given) => of_budget.cloned().or(given),
        };
        let rcu = rcu
            .or_else(|| reclaimer.as_ref().map(|r| r.rcu().clone()))
            .unwrap_or_else(|| Rcu::global().clone());
        if let Some(r) = &reclaimer {
            assert!(
                r.rcu().id() == rcu.id(),
                "rcu-reclaim: RcuCacheBuilder given domain {} and a reclaimer (or budget) of \
                 domain {}; the cache must free through the domain its reclaimer runs: leave \
                 out rcu() (the cache then takes the reclaimer's domain), or make the reclaimer \
                 with Reclaimer::new(&rcu) on the domain given to rcu()",
                rcu.id(),
                r.rcu().id()
            );
        }
        let monitored = auto_pressure || source.is_some();
        let reclaimer = reclaimer.or_else(|| monitored.then(|| Arc::new(Reclaimer::new(&rcu))));
        let max = max_bytes.unwrap_or_else(|| {
            budget
                .as_ref()
                .map_or(DEFAULT_MAX_BYTES, |b| b.watermarks().high)
                .min(isize::MAX as usize)
        });
        let max = warn_if_past_the_cgroup_limit(max, budget.as_deref(), monitored, auto_pressure);
        let inner = Arc::new(Inner {
            map: RcuHashMap::with_weigher_as(
                0,
                hasher,
                &rcu,
                entry_heap::<K, V>,
                weigher.drops_anywhere(),
            ),
            policy: Shards::new(shards.unwrap_or_else(|| {
                let cpus = std::thread::available_parallelism().map_or(1, usize::from);
                Shards::<K>::default_count(max, cpus)
            })),
            retired_since_look: crossbeam_utils::CachePadded::new(AtomicUsize::new(0)),
            backlog_warned: std::sync::atomic::AtomicBool::new(false),
            backlog_runner: std::sync::atomic::AtomicBool::new(false),
            loads: super::loading::Loads::new(),
            cap: Cap::new(max, regrow_after),
            weigher: Box::new(weigher),
        });
        let registered = reclaimer.map(|r| {
            let id = r.register(Arc::new(CacheShrinker(Arc::downgrade(&inner))));
            (r, id)
        });
        let shrinks = registered.as_ref().map(|(r, _)| r.clone());
        let monitor = match source {
            Some(source) => Some(PressureMonitor::start_linked(
                &rcu,
                source,
                QUIET,
                budget.clone(),
                shrinks,
            )),
            None if auto_pressure => {
                let rss = budget.as_ref().map_or(usize::MAX, |b| b.watermarks().low);
                Some(crate::sources::auto_pressure_in(
                    &rcu,
                    rss,
                    budget.clone(),
                    shrinks,
                ))
            }
            None => None,
        };
        if registered.is_none() {
            crate::sources::UNSHRUNK_CACHES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        RcuCache {
            inner,
            budget,
            registered,
            monitor,
        }
    }
}

impl<K, V, W, S> fmt::Debug for RcuCacheBuilder<K, V, W, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RcuCacheBuilder")
            .field("max_bytes", &self.max_bytes)
            .field("budget", &self.budget)
            .field("auto_pressure", &self.auto_pressure)
            .field("regrow_after", &self.regrow_after)
            .field("shards", &self.shards)
            .finish_non_exhaustive()
    }
}

/// Warns (loudly: see `sys::warn_loud`) when the process's cgroup memory
/// limit comes before what would make this cache give memory back: a
/// budget over the limit (the kernel's OOM killer acts first), or, with no
/// budget and no pressure source, a capacity at or over it (the cache alone
/// could fill the cgroup). Nothing is said where no cgroup sets a limit.
///
/// Returns the capacity to use: with `auto_pressure` and no budget, at
/// most the `high` watermark of the cgroup's limit (80 %, where a budget
/// from the cgroup would keep usage): memory past the limit is never free,
/// and a cache filled at full speed towards it outran the pressure
/// signal (OOM-killed in 3 runs of 5 with a capacity of twice the limit,
/// 1 of 4 at 96 %, none at 80 %).
fn warn_if_past_the_cgroup_limit(
    max: usize,
    budget: Option<&MemoryBudget>,
    monitored: bool,
    auto_pressure: bool,
) -> usize {
    let Ok(cgroup) = crate::sources::cgroup_limit() else {
        return max;
    };
    let (limit, file) = (cgroup.limit, cgroup.limit_file.display());
    if auto_pressure && budget.is_none() {
        let high = crate::reclaim::Watermarks::from_limit(limit).high;
        if max > high {
            tracing::info!(
                max,
                high,
                "rcu-reclaim: an auto_pressure cache's capacity is held to 80 % of the cgroup's \
                 memory limit"
            );
            return high;
        }
    }
    match budget {
        Some(b) if b.limit() > limit => crate::sys::warn_loud(&format!(
            "rcu-reclaim: an RcuCache tied to a MemoryBudget of {} bytes, more than this \
             process's cgroup memory limit of {limit} bytes ({file}): the cgroup's OOM killer \
             acts before the budget reclaims; size the budget from the cgroup \
             (rcu_reclaim::sources::budget_from_cgroup) or give it a limit below the cgroup's",
            b.limit()
        )),
        None if !monitored && max >= limit => crate::sys::warn_loud(&format!(
            "rcu-reclaim: an RcuCache of max_bytes {max} with no budget and no pressure source, \
             in a cgroup with a memory limit of {limit} bytes ({file}): filled, the cache alone \
             gets the process OOM-killed; give .max_bytes(..) well under the limit, or \
             .auto_pressure() or .budget(..) so that pressure shrinks it"
        )),
        _ => {}
    }
    max
}
