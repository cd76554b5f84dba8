//! How an [`RcuCache`](super::RcuCache) answers memory pressure: its
//! shrinker, and the capacity that stays lowered for a while after a
//! shrink and then grows back.

use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, TryLockError, Weak};
use std::time::{Duration, Instant};

use super::Inner;
use crate::reclaim::{Scanned, ShrinkControl, Shrinker};

/// The capacity of a cache: `max`, or lower after a shrink until
/// `regrow_after` passes without another; then it grows back in steps,
/// doubling (from at least a sixteenth of `max`) every quarter of
/// `regrow_after`, so that a cache refilled at full speed gives the
/// pressure signal time to come again before it is back at `max` (in one
/// jump, an audit's cache refilled 16 MiB in 60 ms in a cgroup whose
/// allocator still held what the shrink had freed, and was OOM-killed).
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
            let at = self.millis();
            let quiet = u64::try_from(self.regrow_after.as_millis()).unwrap_or(u64::MAX);
            let shrunk_at = self.shrunk_at.load(Ordering::Relaxed);
            if at.saturating_sub(shrunk_at) >= quiet {
                self.grow_step(now, shrunk_at, at, quiet);
                return self.now.load(Ordering::Relaxed);
            }
        }
        now
    }

    /// One step of regrowth from `now`, the capacity `get` saw with the
    /// shrink stamp `shrunk_at`, at `at` ms (`quiet`: the regrowth wait).
    fn grow_step(&self, now: usize, shrunk_at: u64, at: u64, quiet: u64) {
        let next = now.saturating_mul(2).max(self.max / 16).min(self.max);
        if self
            .now
            .compare_exchange(now, next, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        // The next step a quarter of the quiet time on, unless a shrink
        // stamped its time meanwhile: that restarts the whole wait, and a
        // plain store here overwrote it (the lowered capacity grew back a
        // quarter of the quiet time after that shrink, not all of it).
        let stamped = if next < self.max {
            self.shrunk_at
                .compare_exchange(
                    shrunk_at,
                    at.saturating_sub(quiet - quiet / 4),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        } else {
            self.shrunk_at.load(Ordering::Relaxed) == shrunk_at
        };
        if !stamped {
            // A shrink came between the look and the step, one that left
            // at least this capacity (so its `fetch_min` did not stop the
            // step): the step is taken back, as that shrink's wait
            // restarts (before, the capacity doubled just after it).
            self.now.fetch_min(now, Ordering::Relaxed);
        }
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
        // Each shard's lock tried, never waited for (`try_lock_queues`),
        // up to `nr_to_scan` entries spread over the shards.
        let last = inner.policy.count() - 1;
        let Some((freed, bytes)) = inner.evict_across(0, ctl.nr_to_scan(), true, last) else {
            ctl.stop();
            return Scanned::default();
        };
        // Lowered to what is left, so inserts do not refill what was
        // evicted.
        inner.cap.lower_to(inner.policy.bytes());
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

/// A shard's queues for a reclaim pass, tried, never waited for: the
/// holder may be this very thread (an allocation under the lock that
/// entered reclaim), or a writer waiting for the reclaim this pass is part
/// of. A writer holds it only for one insert's eviction, so a few tries
/// usually win it: [`POLICY_LOCK_TRIES`], the first
/// [`POLICY_LOCK_SPINS`] spinning, the rest yielding. `None`: busy.
///
/// A poisoned lock is taken like any other, as the writers' `lock_std`
/// takes it: the queues stay consistent whatever panicked under it (no
/// key's code runs there now: eviction finds entries by id, and drops the
/// keys it is done with after the lock), and refusing it made the
/// shrinker skip that shard for the rest of the cache's life, so reclaim
/// declared out-of-memory over a cache full of evictable entries.
pub(crate) fn try_lock_queues<T>(m: &Mutex<T>) -> Option<MutexGuard<'_, T>> {
    for attempt in 0..POLICY_LOCK_TRIES {
        match m.try_lock() {
            Ok(held) => return Some(held),
            Err(TryLockError::Poisoned(held)) => return Some(held.into_inner()),
            Err(TryLockError::WouldBlock) if attempt < POLICY_LOCK_SPINS => std::hint::spin_loop(),
            Err(TryLockError::WouldBlock) => std::thread::yield_now(),
        }
    }
    None
}

/// Tries of a shard's lock per scan (see [`try_lock_queues`]).
const POLICY_LOCK_TRIES: u32 = 64;
/// Of [`POLICY_LOCK_TRIES`], those that spin before the rest yield.
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
        // Back in steps: doubled, then doubled again a quarter of the
        // quiet time later, up to the cap.
        assert_eq!(cap.get(), 600);
        let start = Instant::now();
        let mut seen = vec![600];
        while cap.get() < 1000 {
            assert!(start.elapsed() < Duration::from_secs(10), "{seen:?}");
            std::thread::sleep(Duration::from_millis(1));
            if seen.last() != Some(&cap.get()) {
                seen.push(cap.get());
            }
        }
        assert_eq!(seen, [600, 1000]);
    }

    /// A shrink that comes between `get`'s look and its step, leaving at
    /// least the capacity it saw, takes the step back: the capacity stays
    /// where the shrink held it (before, it doubled just after it).
    #[test]
    fn a_shrink_during_a_regrowth_step_takes_the_step_back() {
        let cap = Cap::new(1000, Duration::from_millis(20));
        cap.lower_to(300);
        std::thread::sleep(Duration::from_millis(30));
        // `get`'s look: the capacity and the stamp, the wait over.
        let (now, shrunk_at, at) = (
            cap.now.load(Ordering::Relaxed),
            cap.shrunk_at.load(Ordering::Relaxed),
            cap.millis(),
        );
        assert!(at - shrunk_at >= 20);
        cap.lower_to(500); // a shrink that could not evict below 500
        cap.grow_step(now, shrunk_at, at, 20);
        assert_eq!(cap.now.load(Ordering::Relaxed), 300);
        assert_eq!(cap.get(), 300, "the shrink's wait restarted");
    }

    #[test]
    fn a_capacity_shrunk_far_grows_back_from_a_sixteenth() {
        let cap = Cap::new(1600, Duration::ZERO);
        cap.lower_to(0);
        let steps: Vec<usize> = (0..6).map(|_| cap.get()).collect();
        assert_eq!(steps, [100, 200, 400, 800, 1600, 1600]);
    }
}
