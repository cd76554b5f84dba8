//! The bucket table (an array of shortcuts into the list: the dummy that
//! heads each bucket), the writers' stripe locks, and the two resizes:
//! doubling links a dummy into the middle of every bucket before the new
//! table is published; halving publishes the smaller table first and then
//! unlinks the dummies it no longer names.

use std::ptr::NonNull;

use super::list::{self, Link};
use crate::sync::{lock, Locked, Mutex};

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

/// A dummy's address in a table. Tables are immutable once published.
struct Head(NonNull<Link>);

// SAFETY: a `Head` is an address the table never dereferences or frees
// itself (the list owns the dummies); sharing or sending it moves no data.
unsafe impl Send for Head {}
// SAFETY: as above.
unsafe impl Sync for Head {}

/// A bucket table: `heads[b]` is the dummy heading bucket `b`; the number
/// of buckets is a power of two, at least [`STRIPES`].
pub(super) struct Table {
    heads: Box<[Head]>,
}

impl Table {
    /// A table of `buckets` buckets with a new list of its dummies, empty
    /// of entries.
    pub(super) fn with_new_list(buckets: usize) -> Box<Table> {
        debug_assert!(buckets.is_power_of_two() && buckets >= STRIPES);
        let heads: Box<[Head]> = (0..buckets).map(|b| Head(Link::dummy(b))).collect();
        let mut order: Vec<usize> = (0..buckets).collect();
        order.sort_unstable_by_key(|&b| list::dummy_sort(b));
        for pair in order.windows(2) {
            // SAFETY: the dummies are new and not yet shared; linking them
            // in sort order makes the list.
            unsafe {
                list::link_between(
                    heads[pair[0]].0,
                    std::ptr::null_mut(),
                    heads[pair[1]].0.as_ptr(),
                )
            };
        }
        Box::new(Table { heads })
    }

    /// The number of buckets.
    #[inline]
    pub(super) fn buckets(&self) -> usize {
        self.heads.len()
    }

    /// The dummy heading the bucket of `hash`.
    #[inline]
    pub(super) fn head(&self, hash: u64) -> NonNull<Link> {
        self.heads[hash as usize & (self.heads.len() - 1)].0
    }

    /// The dummy heading bucket `bucket`.
    #[inline]
    pub(super) fn bucket(&self, bucket: usize) -> NonNull<Link> {
        self.heads[bucket].0
    }

    /// The bytes freed when the table is dropped (not its dummies).
    pub(super) fn bytes(&self) -> usize {
        std::mem::size_of::<Table>() + std::mem::size_of_val::<[Head]>(&self.heads)
    }

    /// A table of twice the buckets over the same list: a dummy for each
    /// new bucket `b + n` is linked after the dummy of `b`, under `b`'s
    /// stripe lock, before the table is returned for publishing. Readers
    /// and writers of the other stripes go on meanwhile; a reader on the
    /// old table walks over the new dummies.
    ///
    /// # Safety
    /// `self` is the map's current table, its dummies all linked, and the
    /// caller holds the map's resize lock (no other resize runs).
    pub(super) unsafe fn doubled(&self, stripes: &Stripes) -> Box<Table> {
        let n = self.buckets();
        let mut heads: Vec<Head> = self.heads.iter().map(|h| Head(h.0)).collect();
        heads.extend((n..2 * n).map(|b| Head(Link::dummy(b))));
        for stripe in 0..STRIPES {
            let _locked = stripes.lock(stripe);
            for b in (n + stripe..2 * n).step_by(STRIPES) {
                // SAFETY: the new dummy is ours until linked; its parent
                // (bucket `b - n`, same stripe) is linked and only this
                // stripe's lock holder writes in its range.
                unsafe { list::link_dummy(heads[b - n].0, heads[b].0) };
            }
        }
        Box::new(Table {
            heads: heads.into_boxed_slice(),
        })
    }

    /// A table of half the buckets over the same list. Nothing is
    /// unlinked: after publishing it, the caller unlinks the upper half's
    /// dummies with [`unlink_upper_half`](Table::unlink_upper_half).
    pub(super) fn halved(&self) -> Box<Table> {
        let n = self.buckets() / 2;
        debug_assert!(n >= STRIPES);
        Box::new(Table {
            heads: self.heads[..n].iter().map(|h| Head(h.0)).collect(),
        })
    }

    /// Unlinks the dummies of this table's upper half, each under its
    /// stripe lock, and returns them for freeing after a grace period.
    ///
    /// # Safety
    /// The caller holds the resize lock and has published a table of half
    /// this one's buckets (from [`halved`](Table::halved)), so no writer
    /// that takes a stripe lock from now on starts at these dummies.
    pub(super) unsafe fn unlink_upper_half(&self, stripes: &Stripes) -> Vec<NonNull<Link>> {
        let n = self.buckets() / 2;
        let mut out = Vec::with_capacity(n);
        for stripe in 0..STRIPES {
            let _locked = stripes.lock(stripe);
            for b in (n + stripe..2 * n).step_by(STRIPES) {
                // SAFETY: under the stripe lock; the parent stays linked
                // (it is in the published table) and precedes the dummy.
                unsafe { list::unlink_dummy(self.heads[b - n].0, self.heads[b].0) };
                out.push(self.heads[b].0);
            }
        }
        out
    }
}

/// The writers' locks, one per stripe ([`STRIPES`]).
pub(super) struct Stripes(Box<[Mutex<()>]>);

impl Stripes {
    pub(super) fn new() -> Self {
        Stripes((0..STRIPES).map(|_| Mutex::new(())).collect())
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
    #[inline]
    #[track_caller]
    pub(super) fn lock(&self, stripe: usize) -> StripeLocked<'_> {
        let held = Held::enter(self);
        StripeLocked {
            _locked: lock(&self.0[stripe]),
            _held: held,
        }
    }
}

/// A stripe lock held; see [`Stripes::lock`].
pub(super) struct StripeLocked<'a> {
    // Declared first: unlocked before this thread's mark is taken back.
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

/// The nested writes whose maps a thread keeps; deeper ones are not
/// checked (never a false alarm, only a missed one).
#[cfg(not(loom))]
const NESTED: usize = 8;

#[cfg(not(loom))]
std::thread_local! {
    /// How many stripes of maps this thread holds (nested writes). No
    /// destructor: usable by writes in other thread-locals' destructors.
    static DEPTH: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    /// The maps (`Stripes` addresses) of the first [`NESTED`] of them, one
    /// cell each, so a write reads and writes one word, not the array.
    static HOLDING: [std::cell::Cell<usize>; NESTED] =
        const { [const { std::cell::Cell::new(0) }; NESTED] };
}

impl Held {
    #[track_caller]
    fn enter(stripes: &Stripes) -> Held {
        // Not under loom: its threads share one OS thread's locals.
        #[cfg(not(loom))]
        {
            let me = stripes as *const Stripes as usize;
            let depth = DEPTH.get();
            let held = HOLDING.with(|maps| maps[..depth.min(NESTED)].iter().any(|m| m.get() == me));
            if held {
                panic!(
                    "RcuHashMap: a closure run under one of the map's locks \
                     (`get_or_insert_with`, `update`, `remove_if`, or `RcuCache::get_or_insert_with`) \
                     wrote to the same map or cache, which would deadlock; \
                     make that write after the call returns"
                );
            }
            if depth < NESTED {
                HOLDING.with(|maps| maps[depth].set(me));
            }
            DEPTH.set(depth + 1);
        }
        #[cfg(loom)]
        let _ = stripes;
        Held { _private: () }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        // Stripe locks are released in the reverse order of taking them:
        // this one is the innermost.
        #[cfg(not(loom))]
        {
            let depth = DEPTH.get() - 1;
            if depth < NESTED {
                HOLDING.with(|maps| maps[depth].set(0));
            }
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
    fn doubling_and_halving_keep_the_list_sorted_and_complete() {
        let stripes = Stripes::new();
        let t = Table::with_new_list(STRIPES);
        let head = t.bucket(0);
        assert_eq!(sorts(head).len(), STRIPES);
        // SAFETY: single-threaded; `t` is current.
        let big = unsafe { t.doubled(&stripes) };
        let s = sorts(head);
        assert_eq!(s.len(), 2 * STRIPES);
        assert!(s.windows(2).all(|w| w[0] < w[1]));
        let small = big.halved();
        // SAFETY: single-threaded; `small` stands for the published table.
        let gone = unsafe { big.unlink_upper_half(&stripes) };
        assert_eq!(gone.len(), STRIPES);
        assert_eq!(sorts(head).len(), STRIPES);
        assert_eq!(small.buckets(), STRIPES);
        for d in gone {
            // SAFETY: unlinked and unreachable.
            unsafe { list::free::<(), ()>(d) };
        }
        // SAFETY: the test owns the list.
        unsafe { list::free_all::<(), ()>(head) };
    }
}
