//! The cache's garbage allowance: evicted and replaced entries wait for a
//! grace period and a free, and once the domain's backlog passes an eighth
//! of what the cache holds, an insert frees it itself (an expedited grace
//! period, then what it made ready), one insert at a time.

use std::hash::{BuildHasher, Hash};
use std::sync::atomic::Ordering;

use super::RcuCache;

impl<K, V, S> RcuCache<K, V, S>
where
    K: Hash + Eq + Clone + Send + 'static,
    V: Send + 'static,
    S: BuildHasher,
{
    /// After an insert's evictions in shard `hash`: counts what they
    /// retired, and frees the domain's backlog once it passes the cache's
    /// allowance.
    pub(super) fn free_backlog_if_due(&self, hash: u64) {
        let inner = &*self.inner;
        // Evicted and replaced entries wait for a grace period and a free.
        // Once the domain's backlog passes the cache's garbage allowance
        // (writers evicting faster than grace periods end: a reader
        // preempted inside its section holds them up), the inserting
        // thread frees it itself, as direct reclaim does: an expedited
        // grace period, then what it made ready, here. A small backlog is
        // also a fast one: the allocator hands the next insert memory
        // freed moments ago, still in the CPU's caches, where a backlog of
        // the whole capacity had it cycle through cold memory (inserts of
        // 32 KiB values ran 4x longer in `memset`). Looked at once per
        // quarter of the allowance retired by this cache: the backlog's
        // total walks the threads, and a domain shared with other garbage
        // must not make every insert expedite.
        // An eighth of what the cache holds, not of its cap: a cache capped
        // at 1 GiB that a 100 MiB container keeps at 60 MiB must not let
        // 128 MiB of evicted entries wait (at least 1 MiB, or the cap).
        let held = inner.policy.bytes().max(GARBAGE_FLOOR);
        let allowance = garbage_allowance(held.min(inner.cap.max()));
        // Counted per shard, and added to the cache's count once a shard
        // holds its share of half a look's worth: the cache's count,
        // written by every writer, is then written once per that share,
        // not at every eviction. At most half a look's worth waits in the
        // shards' counts, and the cache's looks at the other half: a look
        // still comes once a quarter of the allowance is retired.
        let half_look = allowance / GARBAGE_LOOKS / 2;
        let shard = inner.policy.of(hash);
        let counted = shard.retired.load(Ordering::Relaxed);
        if counted <= half_look / inner.policy.count() {
            return;
        }
        shard.retired.fetch_sub(counted, Ordering::Relaxed);
        let retired = inner
            .retired_since_look
            .fetch_add(counted, Ordering::Relaxed)
            .saturating_add(counted);
        if retired <= half_look {
            return;
        }
        inner
            .retired_since_look
            .fetch_sub(retired, Ordering::Relaxed);
        let rcu = inner.map.domain();
        let pending = rcu.pending_bytes();
        let qsbr = rcu.flavor() == crate::Flavor::Qsbr;
        /// Once per cache, and on standard error at most one line a second
        /// for all caches (a program making short-lived caches printed one
        /// line per cache: 252 in a second).
        static BACKLOG_WARNINGS: crate::sys::LoudThrottle = crate::sys::LoudThrottle::new();
        if qsbr && pending > QSBR_WARN_TIMES * allowance && rcu.in_read_section() {
            // Inserting between quiescent states is how QSBR works, but a
            // backlog this far past the allowance means this thread (or
            // another) reports too seldom.
            if !inner.backlog_warned.swap(true, Ordering::Relaxed) {
                BACKLOG_WARNINGS.warn_loud(&format!(
                    "rcu-reclaim: an RcuCache write (insert or get_or_insert_with) on an online QSBR \
                     thread found {pending} \
                     bytes waiting to be freed (the cache allows {allowance}): nothing is freed \
                     until every online thread has reported a quiescent state; call \
                     quiescent_state() between events, and put threads that wait or sleep \
                     offline (offline_while)"
                ));
            }
        }
        if pending > allowance && !qsbr && rcu.in_read_section() {
            // No grace period can end while this thread's section lasts:
            // say so once, since the backlog grows as long as inserts come
            // from inside sections (on QSBR, between quiescent states, the
            // documented way of that flavor).
            if !inner.backlog_warned.swap(true, Ordering::Relaxed) {
                BACKLOG_WARNINGS.warn_loud(&format!(
                    "rcu-reclaim: an RcuCache write (insert or get_or_insert_with) inside a \
                     read-side section found {pending} \
                     bytes waiting to be freed (the cache allows {allowance}): no grace period \
                     can end while the section lasts, so nothing is freed; insert outside \
                     sections (drop the guard first), or use read_or_insert_with instead of \
                     get_or_insert_with"
                ));
            }
        }
        if pending > allowance && !crate::reclaim::reclaim_allowed() {
            // Under one of the crate's locks: a write made in the closure
            // of another map's or cache's write (`get_or_insert_with`'s
            // loader filling a second-level cache), which holds that map's
            // stripe. A grace period of this domain could wait for a
            // reader of it blocked on that very stripe, for ever (before,
            // such a loader and a reader of this domain writing the first
            // cache deadlocked). Left to a later insert, as direct reclaim
            // is (`MemoryBudget::check`).
            return;
        }
        if pending > allowance {
            // One insert at a time frees the backlog: with many writers,
            // each waiting for its own expedited grace period queued them
            // all on the domain's grace-period lock (16 threads of the
            // cache bench waited there 16 % of their time) for frees that
            // one run makes. The others go on inserting unless the backlog
            // is past `BACKLOG_HARD_TIMES` its allowance: then they help,
            // so a runner that cannot keep up still bounds it.
            let run = BacklogRun::claim(&inner.backlog_runner);
            if run.is_none() && within_hard_backlog(pending, allowance) {
                return;
            }
            // Wanting the excess: this thread's own buffered page (where
            // its evictions went) is flushed first, and one expedited
            // grace period is worth it.
            let mask = crate::pressure::NodeMask::all();
            rcu.run_callbacks_for(&mask, GARBAGE_RUN_PRIORITY, pending - allowance);
        }
    }
}

/// The domain's backlog an insert lets pass before it frees it itself: an
/// eighth of the capacity (of what the cache holds, by the caller,
/// [`GARBAGE_SHARE`]), at least 1 MiB
/// ([`GARBAGE_FLOOR`]) but never more than the capacity. Chosen by
/// measurement (BENCHMARKS.md, "Retiring outside the policy lock, and a backlog an eighth of the capacity"):
/// at the whole capacity, the bench's cache held 64 MiB and its heap
/// reached 146 MiB, at an eighth 77 MiB and 14 % more gets a second; at a
/// thirty-second the expedited grace periods (6,000–8,000 a second) cost more
/// than the warmer memory gave.
pub(super) fn garbage_allowance(max_bytes: usize) -> usize {
    (max_bytes / GARBAGE_SHARE).max(max_bytes.min(GARBAGE_FLOOR))
}

/// See [`garbage_allowance`].
pub(super) const GARBAGE_SHARE: usize = 8;

/// While one insert frees the domain's backlog, the others leave it to
/// that one until the backlog passes this many times the allowance.
pub(super) const BACKLOG_HARD_TIMES: usize = 2;

/// Whether a backlog of `pending` bytes, over an `allowance`, may wait for
/// the insert already freeing it: within [`BACKLOG_HARD_TIMES`] the
/// allowance.
pub(super) fn within_hard_backlog(pending: usize, allowance: usize) -> bool {
    pending <= allowance.saturating_mul(BACKLOG_HARD_TIMES)
}

/// The claim of the insert that frees the domain's backlog (see
/// `queue_and_evict_in_one_call`); released on drop, a panic included.
pub(super) struct BacklogRun<'a>(&'a std::sync::atomic::AtomicBool);

impl<'a> BacklogRun<'a> {
    /// The claim, unless another insert holds it.
    pub(super) fn claim(flag: &'a std::sync::atomic::AtomicBool) -> Option<Self> {
        // A load first: while one runs, the others read a shared line
        // instead of writing it.
        (!flag.load(Ordering::Relaxed) && !flag.swap(true, Ordering::Acquire))
            .then_some(BacklogRun(flag))
    }
}

impl Drop for BacklogRun<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// On a QSBR domain, an insert by an online thread warns once the backlog
/// passes this many times the allowance (inserting between quiescent
/// states is that flavor's way; a backlog this far over is a thread that
/// reports too seldom).
pub(super) const QSBR_WARN_TIMES: usize = 4;

/// See [`garbage_allowance`].
pub(super) const GARBAGE_FLOOR: usize = 1 << 20;

/// An insert looks at the domain's backlog once this cache has retired
/// more than this fraction of its [`garbage_allowance`] since the last look.
pub(super) const GARBAGE_LOOKS: usize = 4;

/// The reclaim priority of an insert's run of the domain's backlog
/// (`run_callbacks_for`, wanting the excess over the capacity): an
/// expedited grace period, then what it made ready (priority 0 would also
/// flush every thread's buffered pages: a barrier).
pub(super) const GARBAGE_RUN_PRIORITY: u8 = 1;
