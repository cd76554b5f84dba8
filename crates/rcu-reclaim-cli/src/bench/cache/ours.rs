//! rcu-reclaim's own cache, `RcuCache`, as the cache scenario runs it: what
//! a user writes (`RcuCache::builder().max_bytes(..).build()`, the global
//! domain, a read guard per get), with its default weigher (an entry's
//! heap bytes plus its map node, `RcuCache::ENTRY_OVERHEAD`). Two columns:
//! `rcu-reclaim`, the calls alone, and `rcu-reclaim-collect`, each insert
//! followed by `Rcu::collect()` (no lock is held there), as the crate's
//! README asks of a thread that updates in a loop: the thread then frees
//! the values its evictions retired itself, a grace period later, instead
//! of leaving them to the domain's worker; and `rcu-reclaim-ahash`, the
//! calls alone with keys hashed by ahash (`RcuCacheBuilder::hasher`),
//! quick_cache's default hasher, instead of std's SipHash.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::Arc;

use rcu_reclaim::reclaim::Reclaimer;
use rcu_reclaim::sources::budget_from_cgroup;
use rcu_reclaim::{Rcu, RcuCache};

use super::{CacheUnderTest, CacheWorkload};

/// `RcuCache<u64, Vec<u8>, S>`: lookups under a read guard, no lock;
/// S3-FIFO eviction; evicted values freed a grace period later. `COLLECT`:
/// each insert is followed by `Rcu::collect()`.
pub struct Ours<const COLLECT: bool = false, S = RandomState>(RcuCache<u64, Vec<u8>, S>);

/// `rcu-reclaim-collect`.
pub type OursCollect = Ours<true>;

/// `rcu-reclaim-ahash`.
pub type OursAhash = Ours<false, ahash::RandomState>;

/// A key hasher the bench builds `Ours` with.
pub trait KeyHasher: BuildHasher + Send + Sync + 'static {
    /// The backend's name with this hasher, if not std's.
    const NAME: Option<&'static str>;
    /// A hasher with fresh random keys.
    fn make() -> Self;
}

impl KeyHasher for RandomState {
    const NAME: Option<&'static str> = None;
    fn make() -> Self {
        RandomState::new()
    }
}

impl KeyHasher for ahash::RandomState {
    const NAME: Option<&'static str> = Some("rcu-reclaim-ahash");
    fn make() -> Self {
        ahash::RandomState::new()
    }
}

impl<const COLLECT: bool, S: KeyHasher> CacheUnderTest for Ours<COLLECT, S> {
    const NAME: &'static str = match S::NAME {
        Some(name) => name,
        None if COLLECT => "rcu-reclaim-collect",
        None => "rcu-reclaim",
    };
    const BOUNDED: bool = true;

    /// Under `--cgroup-limit`, also tied to the cgroup's budget
    /// (`budget_from_cgroup`: its limit, its usage), which then evicts from
    /// it when the cgroup fills.
    fn new(w: &CacheWorkload) -> Result<Self, String> {
        let builder = RcuCache::builder().max_bytes(w.capacity).hasher(S::make());
        if w.cgroup_limit.is_none() {
            return Ok(Ours(builder.build()));
        }
        let reclaimer = Arc::new(Reclaimer::new(Rcu::global()));
        let budget = budget_from_cgroup(reclaimer).map_err(|e| e.to_string())?;
        Ok(Ours(builder.budget(&Arc::new(budget)).build()))
    }

    fn get(&self, key: u64) -> Option<u8> {
        let guard = self.0.domain().read_lock();
        self.0.get(&key, &guard).map(|v| v[0])
    }

    fn insert(&self, key: u64, size: usize) {
        self.0.insert(key, vec![key as u8; size]);
        if COLLECT {
            Rcu::global().collect();
        }
    }

    fn bytes(&self) -> Option<usize> {
        Some(self.0.bytes())
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn garbage(&self) -> Option<usize> {
        Some(self.0.domain().pending_bytes())
    }

    fn engine(&self) -> Option<crate::bench::engine::EngineSample> {
        Some(crate::bench::engine::EngineSample::take(
            &self.0.domain().stats(),
        ))
    }

    /// Drops the cache, then waits until the values it retired are freed.
    fn finish(self) {
        drop(self);
        Rcu::global().barrier();
    }
}
