//! The bucket table (an array of shortcuts into the list: the dummy that
//! heads each bucket), the writers' stripe locks, and the two resizes:
//! doubling links a dummy into the middle of every bucket before the new
//! table is published; halving publishes the smaller table first and then
//! unlinks the dummies it no longer names.

use std::ptr::NonNull;

use super::list::{self, Link};
use crate::domain::Rcu;
use crate::lock_holder::{Holder, HolderMark};
use crate::sync::{try_lock, Locked, Mutex};

/// Writers' locks, by the low bits of the hash. Every table has at least
/// this many buckets, so each bucket, and each range of the list a writer
/// walks, belongs to one stripe.
#[cfg(not(loom))]
pub(super) const STRIPES: usize = 64;
/// Fewer stripes under loom, to keep the model small.
#[cfg(loom)]
pub(super) const STRIPES: usize = 2;

/// `log2(STRIPES)`: the top bits of a sort key that name its stripe's range.
pub(super) const STRIPE_BITS: u32 = STRIPES.trailing_zeros();

/// The most levels a table can have: level 0 holds buckets `[0, STRIPES)`,
/// level `k >= 1` holds `[STRIPES << (k - 1), STRIPES << k)`, and a table
/// has at most `2^(usize::BITS - 2)` buckets.
const LEVELS: usize = (usize::BITS - 2 - STRIPE_BITS + 1) as usize;

/// The number of buckets (dummies) of level `level`.
#[inline]
fn level_len(level: usize) -> usize {
    STRIPES << level.saturating_sub(1)
}

/// The first bucket of level `level`.
#[inline]
fn level_start(level: usize) -> usize {
    if level == 0 {
        0
    } else {
        STRIPES << (level - 1)
    }
}

/// A new level of unlinked dummies, one allocation, for the buckets of
/// level `level`: its first dummy.
fn new_level(level: usize) -> NonNull<Link> {
    let start = level_start(level);
    let dummies: Box<[Link]> = (start..start + level_len(level)).map(Link::dummy).collect();
    // `Box<[Link]>` of a non-zero length is never dangling.
    NonNull::new(Box::into_raw(dummies).cast::<Link>()).expect("a level is never empty")
}

/// The dummies of one level, owned: dropping it frees them (after a grace
/// period, once they are unlinked: see [`Table::unlink_upper_half`]).
///
/// A raw pointer, not a `Box`, until the drop: readers that entered before
/// the grace period may still walk these dummies through shared
/// references, and a `Box` made meanwhile (moved around, retired) would
/// assert unique access to memory they read (Miri's Stacked Borrows
/// reported the deallocation, through a tag that such a read had
/// invalidated, as undefined behaviour).
pub(super) struct Level {
    dummies: NonNull<[Link]>,
}

// SAFETY: a `Level` owns its array (no table names it any more) and only
// frees it; `Link`s are atomics, which any thread may drop.
unsafe impl Send for Level {}

impl Level {
    /// The bytes freed with it.
    pub(super) fn bytes(&self) -> usize {
        self.dummies.len() * std::mem::size_of::<Link>()
    }
}

impl Drop for Level {
    fn drop(&mut self) {
        // SAFETY: the array came from `Box::into_raw` in `new_level` with
        // this length, is owned by this `Level` alone, and is dropped once,
        // after the grace period that followed its unlinking (no reader
        // reaches it any more).
        drop(unsafe { Box::from_raw(self.dummies.as_ptr()) });
    }
}

/// A bucket table: bucket `b` is headed by a dummy of level
/// `b`'s level; the number of buckets is a power of two, at least
/// [`STRIPES`]. The dummies sit in arrays, one per level, so that a lookup
/// reaches its bucket's dummy in one step from the table (its address is
/// computed, not loaded: one cache miss fewer than an array of pointers to
/// separately allocated dummies). A table names its levels' arrays but
/// does not own them: a resize's new table shares them with the old one,
/// and the map frees them ([`Table::free_levels`],
/// [`Table::unlink_upper_half`]). Tables are immutable once published.
pub(super) struct Table {
    buckets: usize,
    /// For each level in use, its array's address less its first bucket
    /// (wrapping: the address bucket 0 would have in it), so that bucket
    /// `b`'s dummy is at `base[level_of(b)] + b`; null past them.
    base: [*mut Link; LEVELS],
}

// SAFETY: a `Table` holds addresses of dummies, which are shared through
// the list (atomic `next`, immutable `sort`); the table never writes
// through them, and frees them only in `free_levels`, whose caller owns
// the list.
unsafe impl Send for Table {}
// SAFETY: as above; a published table is never written.
unsafe impl Sync for Table {}

impl Table {
    /// A table of `buckets` buckets with a new list of its dummies, empty
    /// of entries.
    #[track_caller]
    pub(super) fn with_new_list(buckets: usize) -> Box<Table> {
        debug_assert!(buckets.is_power_of_two() && buckets >= STRIPES);
        // The levels together hold `buckets` dummies. Checked before the
        // first level is allocated: a table no allocation could hold panics
        // at once (as a `Vec` of that many would), instead of allocating
        // and filling ever larger levels until one fails and aborts.
        let bytes = buckets.checked_mul(std::mem::size_of::<Link>());
        assert!(
            bytes.is_some_and(|bytes| bytes <= isize::MAX as usize),
            "capacity overflow: an RcuHashMap of {buckets} buckets"
        );
        // One that fits the address space but not the machine would fill
        // its memory level by level until the OOM killer came.
        if let (Some(bytes), Some(memory)) = (bytes, physical_memory()) {
            assert!(
                bytes <= memory,
                "rcu-reclaim: an RcuHashMap of {buckets} buckets needs {bytes} bytes for them, \
                 more than this machine's memory ({memory} bytes); ask for a smaller capacity \
                 (the map grows as entries come)"
            );
        }
        let mut table = Box::new(Table {
            buckets,
            base: [std::ptr::null_mut(); LEVELS],
        });
        let used = level_of(buckets - 1) + 1;
        for (level, base) in table.base[..used].iter_mut().enumerate() {
            *base = new_level(level).as_ptr().wrapping_sub(level_start(level));
        }
        // The dummies in sort order (`list::dummy_sort`, their bits
        // reversed): the `i`-th is bucket `i` with its `log2(buckets)` bits
        // reversed, so no list of them is built or sorted.
        let bits = buckets.trailing_zeros();
        let nth = |i: usize| ((i as u64).reverse_bits() >> (u64::BITS - bits)) as usize;
        debug_assert!(buckets < 2 || list::dummy_sort(nth(0)) < list::dummy_sort(nth(1)));
        for i in 1..buckets {
            // SAFETY: the dummies are new and not yet shared; linking them
            // in sort order makes the list.
            unsafe {
                list::link_between(
                    table.bucket(nth(i - 1)),
                    std::ptr::null_mut(),
                    table.bucket(nth(i)).as_ptr(),
                )
            };
        }
        table
    }

    /// The number of buckets.
    #[inline]
    pub(super) fn buckets(&self) -> usize {
        self.buckets
    }

    /// The dummy heading the bucket of `hash`.
    #[inline]
    pub(super) fn head(&self, hash: u64) -> NonNull<Link> {
        // SAFETY: masked below `buckets` (a power of two, not zero).
        unsafe { self.dummy(hash as usize & (self.buckets - 1)) }
    }

    /// The dummy heading bucket `bucket` (`< buckets()`).
    #[inline]
    pub(super) fn bucket(&self, bucket: usize) -> NonNull<Link> {
        assert!(bucket < self.buckets, "bucket {bucket} of {}", self.buckets);
        // SAFETY: checked just above.
        unsafe { self.dummy(bucket) }
    }

    /// The dummy of bucket `bucket`.
    ///
    /// # Safety
    /// `bucket < buckets()`.
    #[inline]
    unsafe fn dummy(&self, bucket: usize) -> NonNull<Link> {
        // `bucket < buckets`, so its level is in use and
        // `bucket - level_start(level) < level_len(level)`: the address is
        // inside the level's array (the wrapping offsets cancel out), and
        // not null.
        let level = level_of(bucket);
        // SAFETY: as above.
        unsafe { NonNull::new_unchecked(self.base[level].wrapping_add(bucket)) }
    }

    /// The first dummy of level `level` (in use).
    fn first(&self, level: usize) -> *mut Link {
        self.base[level].wrapping_add(level_start(level))
    }

    /// The bytes freed when the table is dropped (not its dummies).
    pub(super) fn bytes(&self) -> usize {
        std::mem::size_of::<Table>()
    }

    /// A table of twice the buckets over the same list: a dummy for each
    /// new bucket `b + n` (a new level) is linked after the dummy of `b`,
    /// under `b`'s stripe lock, before the table is returned for
    /// publishing. Readers and writers of the other stripes go on
    /// meanwhile; a reader on the old table walks over the new dummies.
    ///
    /// # Safety
    /// `self` is the map's current table, its dummies all linked, and the
    /// caller holds the map's resize lock (no other resize runs).
    pub(super) unsafe fn doubled(&self, stripes: &Locking<'_>) -> Box<Table> {
        let n = self.buckets;
        let mut base = self.base;
        // The new level's first bucket is `n`.
        base[level_of(n)] = new_level(level_of(n)).as_ptr().wrapping_sub(n);
        let next = Box::new(Table {
            buckets: 2 * n,
            base,
        });
        for stripe in 0..STRIPES {
            let _locked = stripes.stripe(stripe);
            for b in (n + stripe..2 * n).step_by(STRIPES) {
                // SAFETY: the new dummy is ours until linked; its parent
                // (bucket `b - n`, same stripe) is linked and only this
                // stripe's lock holder writes in its range.
                unsafe { list::link_dummy(next.bucket(b - n), next.bucket(b)) };
            }
        }
        next
    }

    /// A table of half the buckets over the same list. Nothing is
    /// unlinked: after publishing it, the caller unlinks the upper half's
    /// dummies with [`unlink_upper_half`](Table::unlink_upper_half).
    pub(super) fn halved(&self) -> Box<Table> {
        let n = self.buckets / 2;
        debug_assert!(n >= STRIPES);
        let mut base = self.base;
        base[level_of(n)] = std::ptr::null_mut();
        Box::new(Table { buckets: n, base })
    }

    /// Unlinks the dummies of this table's upper half (its top level),
    /// each under its stripe lock, and returns them, to be freed after a
    /// grace period.
    ///
    /// # Safety
    /// The caller holds the resize lock and has published a table of half
    /// this one's buckets (from [`halved`](Table::halved)), so no writer
    /// that takes a stripe lock from now on starts at these dummies. It
    /// calls this once per halving.
    pub(super) unsafe fn unlink_upper_half(&self, stripes: &Locking<'_>) -> Level {
        let n = self.buckets / 2;
        for stripe in 0..STRIPES {
            let _locked = stripes.stripe(stripe);
            for b in (n + stripe..2 * n).step_by(STRIPES) {
                // SAFETY: under the stripe lock; the parent stays linked
                // (it is in the published table) and precedes the dummy.
                unsafe { list::unlink_dummy(self.bucket(b - n), self.bucket(b)) };
            }
        }
        let level = level_of(n);
        // The level's array, from `new_level` (`Box::into_raw` of
        // `level_len(level)` dummies); no published table names it any
        // more, and the caller takes it once. Owned as a raw pointer until
        // it is freed (see `Level`).
        let dummies = std::ptr::slice_from_raw_parts_mut(self.first(level), level_len(level));
        Level {
            dummies: NonNull::new(dummies).expect("a level is never empty"),
        }
    }

    /// Frees the dummies of every level in use.
    ///
    /// # Safety
    /// The caller owns the list (the map is being dropped) and this is its
    /// current table: its levels are exactly the dummies left.
    pub(super) unsafe fn free_levels(&self) {
        for level in 0..=level_of(self.buckets - 1) {
            // SAFETY: the caller's contract; each level, from `new_level`,
            // is freed once.
            drop(unsafe {
                Box::from_raw(std::ptr::slice_from_raw_parts_mut(
                    self.first(level),
                    level_len(level),
                ))
            });
        }
    }
}

/// The level of bucket `bucket`: 0 below [`STRIPES`], else one more than
/// the doublings from `STRIPES` to its top bit.
#[inline]
fn level_of(bucket: usize) -> usize {
    (usize::BITS - (bucket >> STRIPE_BITS).leading_zeros()) as usize
}

/// The machine's physical memory in bytes, where the system says.
fn physical_memory() -> Option<usize> {
    #[cfg(any(miri, loom))]
    {
        None
    }
    #[cfg(not(any(miri, loom)))]
    {
        // SAFETY: `sysconf` reads system constants; no memory is passed.
        let (pages, page) = unsafe {
            (
                libc::sysconf(libc::_SC_PHYS_PAGES),
                libc::sysconf(libc::_SC_PAGESIZE),
            )
        };
        let pages = usize::try_from(pages).ok()?;
        let page = usize::try_from(page).ok()?;
        Some(pages.saturating_mul(page))
    }
}

/// The writers' locks, one per stripe ([`STRIPES`]), packed: eight to a
/// cache line, each with the token of its holder (`lock_holder.rs`: how a
/// wait in a forked child tells a holder that does not exist there).
/// Padding each to a line of its own (8 KiB per map instead of 256
/// bytes) made no measurable difference to a 16-thread cache
/// (BENCHMARKS.md, twenty-second session).
pub(super) struct Stripes(Box<[Stripe]>);

/// One stripe's lock and its holder.
pub(super) struct Stripe {
    lock: Mutex<()>,
    holder: Holder,
}

impl Stripes {
    pub(super) fn new() -> Self {
        Stripes(
            (0..STRIPES)
                .map(|_| Stripe {
                    lock: Mutex::new(()),
                    holder: Holder::default(),
                })
                .collect(),
        )
    }

    /// The stripe of `hash`.
    #[inline]
    pub(super) fn of(hash: u64) -> usize {
        hash as usize & (STRIPES - 1)
    }

    /// Locks stripe `stripe` (the holder is marked no-reclaim, as with
    /// every lock of the crate).
    ///
    /// # Panics
    /// If this thread already holds one of these stripes: a closure that a
    /// write runs under its key's lock (`get_or_insert_with`, `update`,
    /// `remove_if`, a cache's `get_or_insert_with`) wrote to the same map,
    /// which would otherwise deadlock, silently, on the same stripe or on
    /// another thread's write going the other way.
    ///
    /// Or if this write runs inside a closure of another map's write (the
    /// thread holds that map's stripe) and waits for this stripe in a
    /// cycle of such waits: another thread holds it and, from a closure of
    /// its own, waits for a stripe this thread holds (two threads writing
    /// each other's maps from their closures; see [`super::crossed`]). The
    /// panic unwinds this thread's closures and releases its stripes, so
    /// the other goes on. A wait that closes no cycle lasts as long as the
    /// lock is held.
    ///
    /// Or in a process forked from the one `rcu`, the map's domain, lives
    /// in without
    /// `Rcu::prepare_fork`, once the wait has lasted
    /// [`FORKED_WAIT`](crate::sync::FORKED_WAIT): a thread of the parent,
    /// caught mid-write at the fork, holds the stripe, most likely, and
    /// does not exist here (see `GracePeriods::lock_written`, which also
    /// says why a child of a prepared fork only warns). Looked at
    /// only once the try-lock has failed: an uncontended write pays
    /// nothing for it.
    #[inline]
    #[track_caller]
    pub(super) fn lock(&self, stripe: usize, rcu: &Rcu) -> StripeLocked<'_> {
        let Stripe { lock: m, holder } = &self.0[stripe];
        let (held, nested) = Held::enter(self, m);
        let locked = if nested {
            lock_nested(m, holder, rcu)
        } else if let Some(locked) = try_lock(m) {
            locked
        } else {
            rcu.inner().gp.lock_written(m, holder, WRITE, STRIPE_LOCK)
        };
        StripeLocked {
            _mark: holder.mark(),
            _locked: locked,
            _held: held,
        }
    }

    /// [`lock`](Stripes::lock) without waiting: `None` if another thread
    /// holds the stripe (panics as `lock` does if this thread does).
    #[track_caller]
    pub(super) fn try_lock(&self, stripe: usize) -> Option<StripeLocked<'_>> {
        let Stripe { lock: m, holder } = &self.0[stripe];
        let (held, _) = Held::enter(self, m);
        let locked = try_lock(m)?;
        Some(StripeLocked {
            _mark: holder.mark(),
            _locked: locked,
            _held: held,
        })
    }

    /// Every stripe, if none is held now (`None` otherwise, none kept):
    /// how a resize made inside another map's closure takes them, as one
    /// that waited for a stripe there could be part of a deadlock.
    pub(super) fn try_lock_all(&self) -> Option<AllStripes<'_>> {
        let mut all = AllStripes(Vec::with_capacity(STRIPES));
        for stripe in self.0.iter() {
            let locked = try_lock(&stripe.lock)?;
            all.0.push((stripe.holder.mark(), locked));
        }
        Some(all)
    }
}

/// The write, in the panic (or warning) of a wait for a stripe after a
/// fork ([`Stripes::lock`]).
const WRITE: &str = "a write to an RcuHashMap (or to the RcuCache built on it)";
/// The lock, likewise.
const STRIPE_LOCK: &str = "its key's lock (one of the map's stripe locks)";

/// Every stripe of a map, held (see [`Stripes::try_lock_all`]).
/// (Each holder's mark before its lock: cleared before the unlock.)
pub(super) struct AllStripes<'a>(Vec<(HolderMark<'a>, Locked<'a, ()>)>);

impl Drop for AllStripes<'_> {
    fn drop(&mut self) {
        // In the reverse order of taking them: each guard restores the
        // no-reclaim mark it found.
        while let Some(locked) = self.0.pop() {
            drop(locked);
        }
    }
}

/// How a resize takes the stripe of each bucket it links or unlinks.
pub(super) enum Locking<'a> {
    /// Each stripe in turn, waiting for it (with the map's domain, for
    /// [`Stripes::lock`]'s check after a fork).
    EachInTurn(&'a Stripes, &'a Rcu),
    /// All of them, held already ([`Stripes::try_lock_all`]).
    AllHeld(&'a AllStripes<'a>),
}

impl Locking<'_> {
    /// Stripe `stripe`, locked for the caller's scope (nothing to lock if
    /// all are held).
    fn stripe(&self, stripe: usize) -> Option<StripeLocked<'_>> {
        match self {
            Locking::EachInTurn(stripes, rcu) => Some(stripes.lock(stripe, rcu)),
            Locking::AllHeld(all) => {
                debug_assert_eq!(all.0.len(), STRIPES);
                None
            }
        }
    }
}

/// Locks `m` for a write nested in another map's closure (see
/// [`Stripes::lock`]): the stripes this thread holds are those of its
/// writes in progress, the innermost (this one, `m`) excepted.
#[cfg(not(loom))]
#[cold]
#[track_caller]
fn lock_nested<'a>(m: &'a Mutex<()>, holder: &Holder, rcu: &Rcu) -> Locked<'a, ()> {
    let depth = DEPTH.get();
    let mut holds = [0usize; NESTED];
    LOCKS.with(|locks| {
        for (h, l) in holds.iter_mut().zip(&locks[..depth - 1]) {
            *h = l.get();
        }
    });
    super::crossed::lock_nested(m, holder, &holds[..depth - 1], rcu, WRITE, STRIPE_LOCK)
}

#[cfg(loom)]
fn lock_nested<'a>(m: &'a Mutex<()>, holder: &Holder, rcu: &Rcu) -> Locked<'a, ()> {
    let _ = (rcu, holder);
    crate::sync::lock(m)
}

/// Whether this thread is inside the closure of a map's write (it holds
/// one of that map's stripes).
pub(super) fn nested_now() -> bool {
    #[cfg(not(loom))]
    {
        DEPTH.get() > 0
    }
    #[cfg(loom)]
    {
        false
    }
}

/// A stripe lock held; see [`Stripes::lock`].
pub(super) struct StripeLocked<'a> {
    // Declared first: the holder's token is cleared before the unlock.
    _mark: HolderMark<'a>,
    // Then: unlocked before this thread's mark is taken back.
    _locked: Locked<'a, ()>,
    _held: Held,
}

/// Marks the thread as holding a stripe of one map (by the address of its
/// `Stripes`) until dropped. Writes nest (a closure run under one map's
/// lock may write to another map, whose closure may write to a third...),
/// so the thread keeps the maps of all its writes in progress, innermost
/// last, and a write to any of them panics, not only to the innermost.
pub(super) struct Held {
    _private: (),
}

/// The nested writes a thread may have in progress: a deeper one panics
/// (it could not be checked, and an unchecked write to a map the thread
/// already holds would deadlock).
#[cfg(not(loom))]
pub(super) const NESTED: usize = 32;

#[cfg(not(loom))]
std::thread_local! {
    /// The maps (`Stripes` addresses) of the first [`NESTED`] of them, one
    /// cell each, so a write reads and writes one word, not the array.
    static HOLDING: [std::cell::Cell<usize>; NESTED] =
        const { [const { std::cell::Cell::new(0) }; NESTED] };
    /// The stripe locks (addresses) of the same writes, for the crossed
    /// waits' registry (`super::crossed`).
    static LOCKS: [std::cell::Cell<usize>; NESTED] =
        const { [const { std::cell::Cell::new(0) }; NESTED] };
}

/// How many stripes of maps this thread holds (nested writes), in a
/// thread-local of `sync`, where the domain's misuse panic reads it.
#[cfg(not(loom))]
use crate::sync::MAP_WRITE_DEPTH as DEPTH;

impl Held {
    /// Marks this thread as holding stripe `m` of `stripes`; says whether
    /// it already held a stripe of another map (a nested write).
    #[track_caller]
    fn enter(stripes: &Stripes, m: &Mutex<()>) -> (Held, bool) {
        // Not under loom: its threads share one OS thread's locals.
        #[cfg(not(loom))]
        let nested = {
            let me = stripes as *const Stripes as usize;
            let depth = DEPTH.get();
            let held = HOLDING.with(|maps| maps[..depth].iter().any(|m| m.get() == me));
            if held {
                panic!(
                    "RcuHashMap: a closure run under one of the map's locks \
                     (`get_or_insert_with`, `update`, `remove_if`, `retain`, or \
                     `RcuCache::get_or_insert_with`) \
                     wrote to the same map or cache, which would deadlock; \
                     make that write after the call returns"
                );
            }
            if depth >= NESTED {
                panic!(
                    "RcuHashMap: {NESTED} writes are already in progress on this thread, each \
                     inside the closure of the one before (`get_or_insert_with`, `update`, \
                     `remove_if`, `retain`): a deeper write is refused rather than risk a deadlock; \
                     make the inner writes after the outer calls return"
                );
            }
            HOLDING.with(|maps| maps[depth].set(me));
            LOCKS.with(|locks| locks[depth].set(m as *const Mutex<()> as usize));
            DEPTH.set(depth + 1);
            depth > 0
        };
        #[cfg(loom)]
        let nested = {
            let _ = (stripes, m);
            false
        };
        (Held { _private: () }, nested)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        // Stripe locks are released in the reverse order of taking them:
        // this one is the innermost.
        #[cfg(not(loom))]
        {
            let depth = DEPTH.get() - 1;
            HOLDING.with(|maps| maps[depth].set(0));
            DEPTH.set(depth);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    /// The sort keys of the list from `head` on.
    fn sorts(head: NonNull<Link>) -> Vec<u64> {
        let mut out = Vec::new();
        let mut cur = Some(head);
        while let Some(l) = cur {
            // SAFETY: the test owns the list.
            let l = unsafe { l.as_ref() };
            out.push(l.sort);
            cur = NonNull::new(l.next.load(Ordering::Relaxed));
        }
        out
    }

    #[test]
    fn levels_place_every_bucket_in_its_own_dummy() {
        assert_eq!((level_of(0), level_of(STRIPES - 1)), (0, 0));
        assert_eq!((level_of(STRIPES), level_of(2 * STRIPES - 1)), (1, 1));
        assert_eq!(level_of(2 * STRIPES), 2);
        assert_eq!(level_of((1 << (usize::BITS - 2)) - 1), LEVELS - 1);
        let stripes = Stripes::new();
        let rcu = Rcu::new(Default::default()).unwrap();
        let mut tables = vec![Table::with_new_list(4 * STRIPES)];
        let head = tables[0].bucket(0);
        // Three doublings, then three halvings: at each size every
        // bucket's dummy is its own, distinct, and the list holds exactly
        // the table's dummies, in order.
        for step in 0..6 {
            let t = tables.last().unwrap();
            let n = t.buckets();
            let mut seen = std::collections::HashSet::new();
            for b in 0..n {
                let d = t.bucket(b);
                // SAFETY: the test owns the list; `t` names linked dummies.
                assert_eq!(unsafe { d.as_ref() }.sort, list::dummy_sort(b));
                assert!(seen.insert(d.as_ptr() as usize));
                assert_eq!(t.head(b as u64), d);
            }
            let s = sorts(head);
            assert_eq!(s.len(), n);
            assert!(s.windows(2).all(|w| w[0] < w[1]));
            let next = if step < 3 {
                // SAFETY: single-threaded; `t` is current.
                unsafe { t.doubled(&Locking::EachInTurn(&stripes, &rcu)) }
            } else {
                let small = t.halved();
                // SAFETY: single-threaded; `small` stands for the
                // published table; `t` is halved once.
                drop(unsafe { t.unlink_upper_half(&Locking::EachInTurn(&stripes, &rcu)) });
                small
            };
            tables.push(next);
        }
        let last = tables.last().unwrap();
        assert_eq!(last.buckets(), 4 * STRIPES);
        // SAFETY: the test owns the list; `last` names its dummies.
        unsafe {
            list::free_all::<(), ()>(head);
            last.free_levels();
        }
    }

    #[test]
    #[should_panic(expected = "bucket")]
    fn a_bucket_past_the_table_panics() {
        /// Frees the table's dummies as the panic unwinds.
        struct Owned(Box<Table>);
        impl Drop for Owned {
            fn drop(&mut self) {
                // SAFETY: the test owns the list, all dummies.
                unsafe { self.0.free_levels() }
            }
        }
        let t = Owned(Table::with_new_list(STRIPES));
        let _ = t.0.bucket(STRIPES);
    }

    #[test]
    fn doubling_and_halving_keep_the_list_sorted_and_complete() {
        let stripes = Stripes::new();
        let rcu = Rcu::new(Default::default()).unwrap();
        let t = Table::with_new_list(STRIPES);
        let head = t.bucket(0);
        assert_eq!(sorts(head).len(), STRIPES);
        // SAFETY: single-threaded; `t` is current.
        let big = unsafe { t.doubled(&Locking::EachInTurn(&stripes, &rcu)) };
        let s = sorts(head);
        assert_eq!(s.len(), 2 * STRIPES);
        assert!(s.windows(2).all(|w| w[0] < w[1]));
        let small = big.halved();
        // SAFETY: single-threaded; `small` stands for the published table.
        let gone = unsafe { big.unlink_upper_half(&Locking::EachInTurn(&stripes, &rcu)) };
        assert_eq!(gone.dummies.len(), STRIPES);
        assert_eq!(sorts(head).len(), STRIPES);
        assert_eq!(small.buckets(), STRIPES);
        drop(gone);
        // SAFETY: the test owns the list; `small` names its dummies.
        unsafe {
            list::free_all::<(), ()>(head);
            small.free_levels();
        }
    }
}
