//! The split-ordered list that holds every entry of a map: one singly
//! linked list sorted by bit-reversed hash, with a *dummy* link heading
//! each bucket. Entries never move between lists, so a resize only adds or
//! removes dummies (see the [module docs](super)).
//!
//! Everything here works on raw pointers; the callers (`map/mod.rs`,
//! `map/table.rs`) supply the two guarantees each function asks for: the
//! links walked are protected by a read-side section, and a writer holds
//! the stripe lock of the range it changes.

use std::borrow::Borrow;
use std::marker::PhantomData;
use std::ptr::{self, NonNull};
use std::sync::atomic::Ordering;

use crate::sync::{ord_for_loom, AtomicPtr};

/// What every element of the list starts with: its place in the order and
/// the next element. A dummy is a bare `Link`; an entry is a [`Node`],
/// whose first field is its `Link`.
#[repr(C)]
pub(super) struct Link {
    /// The sort key: [`key_sort`] for an entry (odd), [`dummy_sort`] for a
    /// dummy (even).
    pub(super) sort: u64,
    /// The next element, or null at the end of the list.
    pub(super) next: AtomicPtr<Link>,
}

/// An entry: a [`Link`] followed by the key and the value, one allocation.
#[repr(C)]
pub(super) struct Node<K, V> {
    link: Link,
    pub(super) key: K,
    pub(super) value: V,
}

/// The sort key of an entry whose key hashes to `hash`: the hash
/// bit-reversed, so that the buckets of a table of any power-of-two size
/// are contiguous runs of the list, with the lowest bit set to keep it
/// apart from (and after) the dummy heading its bucket.
#[inline]
pub(super) fn key_sort(hash: u64) -> u64 {
    hash.reverse_bits() | 1
}

/// A hash that files an entry of sort key `sort` where its own hash did:
/// the same sort key, stripe and bucket at every table size (its hash with
/// the top bit, which [`key_sort`] drops, set). For a writer that finds an
/// entry again by its node, without calling its key's `Hash`.
#[inline]
pub(super) fn hash_of_sort(sort: u64) -> u64 {
    sort.reverse_bits()
}

/// The sort key of the dummy that heads bucket `bucket` (even: its lowest
/// bit is the bucket's top bit, 0 for any table smaller than 2^63).
#[inline]
pub(super) fn dummy_sort(bucket: usize) -> u64 {
    (bucket as u64).reverse_bits()
}

impl Link {
    /// A new, unlinked dummy for `bucket` (dummies live in their table's
    /// level arrays, not in allocations of their own).
    pub(super) fn dummy(bucket: usize) -> Link {
        Link {
            sort: dummy_sort(bucket),
            next: AtomicPtr::new(ptr::null_mut()),
        }
    }
}

/// Whether `sort` is a dummy's sort key.
#[inline]
pub(super) fn is_dummy(sort: u64) -> bool {
    sort & 1 == 0
}

impl<K, V> Node<K, V> {
    /// A new, unlinked entry.
    pub(super) fn new(sort: u64, key: K, value: V) -> NonNull<Node<K, V>> {
        NonNull::from(Box::leak(Box::new(Node {
            link: Link {
                sort,
                next: AtomicPtr::new(ptr::null_mut()),
            },
            key,
            value,
        })))
    }

    /// The node's link, as the list points to it (same address, same
    /// provenance: the whole node).
    #[inline]
    pub(super) fn link(node: NonNull<Node<K, V>>) -> *mut Link {
        node.as_ptr().cast()
    }

    /// The entry's sort key.
    #[inline]
    pub(super) fn sort(&self) -> u64 {
        self.link.sort
    }
}

/// Where a key is in the list, or where it would go.
pub(super) enum Search<K, V> {
    /// The entry holding the key and the element before it.
    Found {
        prev: NonNull<Link>,
        node: NonNull<Node<K, V>>,
    },
    /// The key is absent; it belongs between `prev` and `next`.
    Absent {
        prev: NonNull<Link>,
        next: *mut Link,
    },
}

/// Walks from `start` to the entry whose sort key is `sort` and whose key
/// equals `key`.
///
/// # Safety
/// `start` must be a dummy of a table of this map whose bucket holds
/// `sort`, and the caller must be in a read-side section of the map's
/// domain begun before `start` was loaded (every link reached stays
/// allocated for as long as it lasts). Entries on the walk must be
/// `Node<K, V>`s.
#[inline]
pub(super) unsafe fn search<K, V, Q>(start: NonNull<Link>, sort: u64, key: &Q) -> Search<K, V>
where
    K: Borrow<Q>,
    Q: Eq + ?Sized,
{
    // SAFETY: the caller's contract, which is `search_by`'s.
    unsafe { search_by(start, sort, |node: &Node<K, V>| node.key.borrow() == key) }
}

/// As [`search`], for the first entry of sort key `sort` that `is` picks
/// (the cache finds its entries by id: no call of the key's `Eq`).
///
/// # Safety
/// As [`search`].
#[inline]
pub(super) unsafe fn search_by<K, V>(
    start: NonNull<Link>,
    sort: u64,
    mut is: impl FnMut(&Node<K, V>) -> bool,
) -> Search<K, V> {
    let mut prev = start;
    loop {
        // SAFETY: `prev` is `start` or a link read from the list inside the
        // caller's section, so it is still allocated (see the contract).
        let next = unsafe { prev.as_ref() }
            .next
            .load(ord_for_loom("map.search_by.acquire", Ordering::Acquire));
        let Some(cur) = NonNull::new(next) else {
            return Search::Absent { prev, next };
        };
        // SAFETY: as for `prev`; published with Release after its fields
        // were written, and read here with Acquire.
        let cur_sort = unsafe { cur.as_ref() }.sort;
        if cur_sort > sort {
            return Search::Absent { prev, next };
        }
        if cur_sort == sort {
            // An odd sort key is an entry's: the link is the first field of
            // a `Node<K, V>` and `cur` carries the whole node's provenance.
            let node = cur.cast::<Node<K, V>>();
            // SAFETY: as above; the node's key and value are never written
            // after it was published.
            if is(unsafe { node.as_ref() }) {
                return Search::Found { prev, node };
            }
        }
        prev = cur;
    }
}

/// Links `new` between `prev` and `next` (as a [`Search::Absent`] found
/// them).
///
/// # Safety
/// The caller holds the stripe lock of the range `prev` is in, took
/// `prev`/`next` from a search under that lock, and `new` is unlinked and
/// owned by the caller; from here on it belongs to the list.
#[inline]
pub(super) unsafe fn link_between(prev: NonNull<Link>, next: *mut Link, new: *mut Link) {
    // SAFETY: `new` is the caller's, not yet visible to anyone.
    unsafe { (*new).next.store(next, Ordering::Relaxed) };
    // SAFETY: `prev` is linked and only this lock's holder writes its
    // `next`; Release publishes `new`'s fields with it.
    unsafe { prev.as_ref() }.next.store(new, publish());
}

/// The order of a store that links a node in (Release), or under loom,
/// while a mutation check asks for it, Relaxed (`with_relaxed_links`).
#[inline(always)]
fn publish() -> Ordering {
    #[cfg(loom)]
    if RELAXED_LINKS.with(std::cell::Cell::get) {
        return Ordering::Relaxed;
    }
    ord_for_loom("map.publish.release", Ordering::Release)
}

#[cfg(loom)]
loom::thread_local! {
    /// Whether this thread's links (and replacements) are published with a
    /// relaxed store: the loom model's mutation check, set only around
    /// `RcuHashMap::insert_relaxed_for_loom_mutation`.
    static RELAXED_LINKS: std::cell::Cell<bool> = std::cell::Cell::new(false);
}

/// Runs `f` (an insert, for the loom model's mutation check) with this
/// thread's links published relaxed: a reader that finds the new node
/// does not acquire its fields. The model must fail.
#[cfg(loom)]
pub(super) fn with_relaxed_links<R>(f: impl FnOnce() -> R) -> R {
    RELAXED_LINKS.with(|r| r.set(true));
    let out = f();
    RELAXED_LINKS.with(|r| r.set(false));
    out
}

/// Unlinks `old` (which follows `prev`), putting `new` in its place if
/// given. `old` keeps its `next`, so a reader standing on it walks on.
///
/// # Safety
/// As [`link_between`], with `old` the link right after `prev`. The caller
/// then owns `old` and frees it only after a grace period.
#[inline]
pub(super) unsafe fn unlink(prev: NonNull<Link>, old: NonNull<Link>, new: Option<*mut Link>) {
    // SAFETY: `old` is linked (after `prev`) and protected by the lock.
    let after = unsafe { old.as_ref() }.next.load(Ordering::Relaxed);
    let replacement = match new {
        Some(new) => {
            // SAFETY: `new` is the caller's, not yet visible to anyone.
            unsafe { (*new).next.store(after, Ordering::Relaxed) };
            new
        }
        None => after,
    };
    // SAFETY: as in `link_between`.
    unsafe { prev.as_ref() }.next.store(replacement, publish());
}

/// Links the unlinked dummy `dummy` into place after `parent`, the dummy of
/// the bucket it splits off from.
///
/// # Safety
/// As [`link_between`], with `parent` linked and before `dummy`'s place.
pub(super) unsafe fn link_dummy(parent: NonNull<Link>, dummy: NonNull<Link>) {
    // SAFETY: the dummy is the caller's until linked.
    let sort = unsafe { dummy.as_ref() }.sort;
    let mut prev = parent;
    loop {
        // SAFETY: links from `parent` on are in the locked range.
        let next = unsafe { prev.as_ref() }
            .next
            .load(ord_for_loom("map.link_dummy.acquire", Ordering::Acquire));
        match NonNull::new(next) {
            // SAFETY: as above.
            Some(cur) if unsafe { cur.as_ref() }.sort < sort => prev = cur,
            // SAFETY: the caller's contract.
            _ => return unsafe { link_between(prev, next, dummy.as_ptr()) },
        }
    }
}

/// Unlinks the dummy `dummy`, found by walking from `parent`.
///
/// # Safety
/// As [`unlink`]: the caller holds the lock of `dummy`'s range, `parent`
/// is linked and before `dummy`, and frees `dummy` after a grace period.
pub(super) unsafe fn unlink_dummy(parent: NonNull<Link>, dummy: NonNull<Link>) {
    let mut prev = parent;
    loop {
        // SAFETY: links from `parent` on are in the locked range.
        let next = unsafe { prev.as_ref() }
            .next
            .load(ord_for_loom("map.unlink_dummy.acquire", Ordering::Acquire));
        let cur = NonNull::new(next).expect("a linked dummy is reachable from its parent");
        if cur == dummy {
            // SAFETY: the caller's contract.
            return unsafe { unlink(prev, dummy, None) };
        }
        prev = cur;
    }
}

/// Frees `link` if it is an entry (a `Node<K, V>`, by its sort key); a
/// dummy belongs to its table's level array and is left alone.
///
/// # Safety
/// The caller owns `link` (unlinked, and no reader can reach it any more,
/// or the whole list is being dropped), and entries are `Node<K, V>`s.
pub(super) unsafe fn free_entry<K, V>(link: NonNull<Link>) {
    // SAFETY: the caller owns it; an entry came from `Box::leak` of a
    // `Node<K, V>` (same address as its link).
    unsafe {
        if !is_dummy(link.as_ref().sort) {
            drop(Box::from_raw(link.as_ptr().cast::<Node<K, V>>()));
        }
    }
}

/// Unlinks every entry of the range that `head` (a range's first dummy)
/// starts, up to the next range's first dummy: the entries whose sort key
/// shares `head`'s top `range_bits` bits. Dummies stay. Returns the
/// unlinked entries.
///
/// # Safety
/// As [`unlink`], for every entry returned: the caller holds the range's
/// lock, and frees them only after a grace period.
pub(super) unsafe fn unlink_range(head: NonNull<Link>, range_bits: u32) -> Vec<NonNull<Link>> {
    // SAFETY: the first dummy of a range is never unlinked.
    let range = unsafe { head.as_ref() }.sort >> (64 - range_bits);
    let mut out = Vec::new();
    let mut prev = head;
    loop {
        // SAFETY: links from `head` on, up to the range's end, are in the
        // locked range.
        let next = unsafe { prev.as_ref() }
            .next
            .load(ord_for_loom("map.unlink_range.acquire", Ordering::Acquire));
        let Some(cur) = NonNull::new(next) else {
            return out;
        };
        // SAFETY: as above.
        let sort = unsafe { cur.as_ref() }.sort;
        if sort >> (64 - range_bits) != range {
            return out;
        }
        if is_dummy(sort) {
            prev = cur;
        } else {
            // SAFETY: the caller's contract; `prev` stays, so the walk goes
            // on from it.
            unsafe { unlink(prev, cur, None) };
            out.push(cur);
        }
    }
}

/// Frees every entry of the list from `head` on; the dummies, which it
/// reads on the way, are left to the table that owns them
/// (the table's `free_levels`, after this).
///
/// # Safety
/// The caller owns the list (no reader or writer can reach it any more),
/// and its entries are `Node<K, V>`s.
/// If a key's or value's `Drop` panics, the rest of the list is still
/// freed as the panic unwinds (as std's collections do; a second panic
/// aborts).
pub(super) unsafe fn free_all<K, V>(head: NonNull<Link>) {
    /// The links not yet freed: freed by its drop if one's drop unwinds.
    struct Rest<K, V>(Option<NonNull<Link>>, PhantomData<(K, V)>);

    impl<K, V> Rest<K, V> {
        fn free(&mut self) {
            while let Some(link) = self.0 {
                // SAFETY: owned by `free_all`'s caller, read before it is
                // freed; `self.0` moves past it first, so a panic in its
                // drop leaves only the links after it.
                self.0 = NonNull::new(unsafe { link.as_ref() }.next.load(Ordering::Relaxed));
                // SAFETY: `free_all`'s contract; each link is freed once.
                unsafe { free_entry::<K, V>(link) };
            }
        }
    }

    impl<K, V> Drop for Rest<K, V> {
        fn drop(&mut self) {
            self.free();
        }
    }

    Rest::<K, V>(Some(head), PhantomData).free();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_runs_after_their_dummy() {
        // In a table of 8 buckets, every hash of bucket 3 sorts after
        // dummy 3 and before the dummy that follows it in list order.
        let mut dummies: Vec<u64> = (0..8).map(dummy_sort).collect();
        dummies.sort_unstable();
        for hash in [3u64, 11, 19, 0xffff_fff3, u64::MAX - 4] {
            let s = key_sort(hash);
            let after = dummies.iter().rposition(|&d| d < s).unwrap();
            assert_eq!(dummies[after], dummy_sort((hash & 7) as usize));
        }
        assert!(is_dummy(dummy_sort(5)) && !is_dummy(key_sort(5)));
        // Splitting bucket 3 of 8 puts dummy 11 between dummy 3 and its
        // successor.
        assert!(dummy_sort(3) < dummy_sort(11));
        let succ = dummies.iter().find(|&&d| d > dummy_sort(3)).unwrap();
        assert!(dummy_sort(11) < *succ);
    }
}
