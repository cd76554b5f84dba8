//! How an [`RcuCache`](super::RcuCache) answers memory pressure: its
//! shrinker, and the capacity that stays lowered for a while after a
//! shrink and then grows back.

use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Weak;
use std::time::{Duration, Instant};

use super::Inner;
use crate::reclaim::{Scanned, ShrinkControl, Shrinker};

/// The capacity of a cache: `max`, or lower after a shrink until
/// `regrow_after` passes without another.
pub(crate) struct Cap {
    max: usize,
    now: AtomicUsize,
    /// When the last shrink ended, in milliseconds since `born`.
    shrunk_at: AtomicU64,
    born: Instant,
    regrow_after: Duration,
}

impl Cap {
    pub(crate) fn new(max: usize, regrow_after: Duration) -> Self {
        Cap {
            max,
            now: AtomicUsize::new(max),
            shrunk_at: AtomicU64::new(0),
            born: Instant::now(),
            regrow_after,
        }
    }

    pub(crate) fn max(&self) -> usize {
        self.max
    }

    /// The capacity now (reads the clock only while it is lowered).
    pub(crate) fn get(&self) -> usize {
        let now = self.now.load(Ordering::Relaxed);
        if now < self.max {
            let since = self
                .millis()
                .saturating_sub(self.shrunk_at.load(Ordering::Relaxed));
            if u128::from(since) >= self.regrow_after.as_millis() {
                self.now.store(self.max, Ordering::Relaxed);
                return self.max;
            }
        }
        now
    }

    /// A shrink left `bytes`: hold the cache there for a while.
    pub(crate) fn lower_to(&self, bytes: usize) {
        self.shrunk_at.store(self.millis(), Ordering::Relaxed);
        self.now.fetch_min(bytes, Ordering::Relaxed);
    }

    fn millis(&self) -> u64 {
        u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// The shrinker a cache registers with its reclaimer. It holds the cache
/// weakly: a dropped cache counts nothing.
pub(crate) struct CacheShrinker<K, V, S>(pub(crate) Weak<Inner<K, V, S>>);

impl<K, V, S> Shrinker for CacheShrinker<K, V, S>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Send + Sync + 'static,
    S: BuildHasher + Send + Sync + 'static,
{
    fn count(&self, _: &ShrinkControl) -> usize {
        self.0.upgrade().map_or(0, |inner| inner.map.len())
    }

    /// Evicts up to `nr_to_scan` entries by the cache's policy (entries
    /// read since they were last examined get their second chance, as
    /// always), and holds the capacity at what is left. Tries the policy
    /// lock and stops if a writer holds it.
    fn scan(&self, ctl: &mut ShrinkControl) -> Scanned {
        let Some(inner) = self.0.upgrade() else {
            ctl.set_scanned(0);
            return Scanned::default();
        };
        // Tried, never waited for: the holder may be this very thread (an
        // allocation under the lock that entered reclaim), or a writer
        // waiting for the reclaim this pass is part of. A writer holds it
        // only for one insert's eviction, so a few tries usually win it.
        let mut policy = None;
        for attempt in 0..POLICY_LOCK_TRIES {
            match inner.policy.try_lock() {
                Ok(p) => {
                    policy = Some(p);
                    break;
                }
                Err(std::sync::TryLockError::Poisoned(_)) => break,
                Err(std::sync::TryLockError::WouldBlock) if attempt < POLICY_LOCK_SPINS => {
                    std::hint::spin_loop()
                }
                Err(std::sync::TryLockError::WouldBlock) => std::thread::yield_now(),
            }
        }
        let Some(mut policy) = policy else {
            ctl.stop();
            return Scanned::default();
        };
        let (freed, bytes, unlinked) = inner.evict(&mut policy, 0, ctl.nr_to_scan());
        // Lowered before an insert can take the lock and refill what was
        // evicted.
        inner.cap.lower_to(inner.bytes.load(Ordering::Relaxed));
        drop(policy);
        drop(unlinked);
        ctl.set_scanned(freed);
        Scanned { freed, bytes }
    }

    fn frees_via_rcu(&self) -> bool {
        true
    }

    fn name(&self) -> &str {
        "RcuCache"
    }
}

/// Tries of the policy lock per scan (the first `POLICY_LOCK_SPINS` spin,
/// the rest yield) before the pass gives up on this cache.
const POLICY_LOCK_TRIES: u32 = 64;
const POLICY_LOCK_SPINS: u32 = 32;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_capacity_grows_back_after_a_quiet_spell() {
        let cap = Cap::new(1000, Duration::from_millis(20));
        cap.lower_to(300);
        assert_eq!(cap.get(), 300);
        cap.lower_to(500); // never raised by a shrink
        assert_eq!(cap.get(), 300);
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(cap.get(), 1000);
    }
}
