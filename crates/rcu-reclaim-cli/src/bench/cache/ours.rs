//! rcu-reclaim's own cache, `RcuCache`, as the cache scenario runs it: what
//! a user writes (`RcuCache::builder().max_bytes(..).build()`, the global
//! domain, a read guard per get), with its default weigher (an entry's
//! heap bytes plus its map node, `RcuCache::ENTRY_OVERHEAD`). Two columns:
//! `rcu-reclaim`, the calls alone, and `rcu-reclaim-collect`, each insert
//! followed by `Rcu::collect()` (no lock is held there), as the crate's
//! README asks of a thread that updates in a loop: the thread then frees
//! the values its evictions retired itself, a grace period later, instead
//! of leaving them to the domain's worker.

use std::sync::Arc;

use rcu_reclaim::reclaim::Reclaimer;
use rcu_reclaim::sources::budget_from_cgroup;
use rcu_reclaim::{Rcu, RcuCache};

use super::{CacheUnderTest, CacheWorkload};

/// `RcuCache<u64, Vec<u8>>`: lookups under a read guard, no lock; S3-FIFO
/// eviction; evicted values freed a grace period later. `COLLECT`: each
/// insert is followed by `Rcu::collect()`.
pub struct Ours<const COLLECT: bool = false>(RcuCache<u64, Vec<u8>>);

/// `rcu-reclaim-collect`.
pub type OursCollect = Ours<true>;

impl<const COLLECT: bool> CacheUnderTest for Ours<COLLECT> {
    const NAME: &'static str = if COLLECT {
        "rcu-reclaim-collect"
    } else {
        "rcu-reclaim"
    };
    const BOUNDED: bool = true;

    /// Under `--cgroup-limit`, also tied to the cgroup's budget
    /// (`budget_from_cgroup`: its limit, its usage), which then evicts from
    /// it when the cgroup fills.
    fn new(w: &CacheWorkload) -> Result<Self, String> {
        let builder = RcuCache::builder().max_bytes(w.capacity);
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

    /// Drops the cache, then waits until the values it retired are freed.
    fn finish(self) {
        drop(self);
        Rcu::global().barrier();
    }
}
