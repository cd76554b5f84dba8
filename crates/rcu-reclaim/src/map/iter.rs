//! Iteration over a map's entries under a read guard: a walk of the whole
//! split-ordered list that skips the dummies.

use std::fmt;
use std::iter::FusedIterator;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::atomic::Ordering;

use crate::sync::ord_for_loom;

use super::list::{is_dummy, Link, Node};

/// The entries of an [`RcuHashMap`](super::RcuHashMap), as `(&K, &V)`, in
/// no particular order; from [`iter`](super::RcuHashMap::iter).
///
/// Every entry present for the whole walk is yielded exactly once; an
/// entry inserted, replaced or removed meanwhile may or may not be. So a
/// key removed and inserted again during the walk may be yielded twice,
/// once for each of its entries (collect into a set, or walk while no
/// writer runs, where that matters). The
/// references live as long as the guard and the map's borrow.
///
/// ```
/// let map = rcu_reclaim::RcuHashMap::new();
/// map.insert(1, "one");
/// map.insert(2, "two");
/// let guard = map.domain().read_lock();
/// let mut keys: Vec<i32> = map.iter(&guard).map(|(k, _)| *k).collect();
/// keys.sort();
/// assert_eq!(keys, [1, 2]);
/// ```
///
/// It walks inside its thread's section, so it stays on that thread:
///
/// ```compile_fail,E0277
/// let map = rcu_reclaim::RcuHashMap::new();
/// map.insert(1, "one");
/// let guard = map.domain().read_lock();
/// let iter = map.iter(&guard);
/// std::thread::scope(|s| {
///     // error: `*const IterStaysWithItsSection` cannot be sent between threads safely
///     s.spawn(move || iter.count());
/// });
/// ```
pub struct Iter<'g, K, V> {
    next: NextLink,
    _entries: PhantomData<&'g (K, V)>,
    _not_send: PhantomData<*const IterStaysWithItsSection>,
}

/// Why an [`Iter`] is neither `Send` nor `Sync`: it walks the map inside
/// its thread's read-side section. The iterator holds a
/// `PhantomData<*const IterStaysWithItsSection>`, so the compiler's error
/// for sending one reads "`*const IterStaysWithItsSection` cannot be sent
/// between threads safely" rather than naming a private link type.
enum IterStaysWithItsSection {}

/// The next link of a walk. `Send`/`Sync` on its own so that the
/// compiler's error for sending an [`Iter`] names
/// [`IterStaysWithItsSection`].
#[derive(Clone, Copy)]
struct NextLink(*const Link);

// SAFETY: a `NextLink` is only ever inside an `Iter`, which is neither
// `Send` nor `Sync` (`IterStaysWithItsSection`).
unsafe impl Send for NextLink {}
// SAFETY: as above.
unsafe impl Sync for NextLink {}

impl<'g, K, V> Iter<'g, K, V> {
    /// An iterator from the list's first element on.
    ///
    /// # Safety
    /// `head` is the first dummy of a map's list whose entries are
    /// `Node<K, V>`, and the caller's read-side section and borrow of the
    /// map both last for `'g`.
    pub(super) unsafe fn new(head: NonNull<Link>) -> Self {
        Iter {
            next: NextLink(head.as_ptr()),
            _entries: PhantomData,
            _not_send: PhantomData,
        }
    }
}

impl<'g, K, V> Iterator for Iter<'g, K, V> {
    type Item = (&'g K, &'g V);

    fn next(&mut self) -> Option<Self::Item> {
        self.next_node().map(|node| (&node.key, &node.value))
    }
}

impl<'g, K, V> Iter<'g, K, V> {
    /// The next entry's node (for a walk that finds it again by its
    /// address, not by its key: `retain`).
    pub(super) fn next_node(&mut self) -> Option<&'g Node<K, V>> {
        loop {
            let cur = NonNull::new(self.next.0.cast_mut())?;
            // SAFETY: a link reached from the list inside the section the
            // iterator borrows (see `new`): not freed before it ends.
            let link = unsafe { cur.as_ref() };
            self.next = NextLink(
                link.next
                    .load(ord_for_loom("map.iter.next_acquire", Ordering::Acquire)),
            );
            if !is_dummy(link.sort) {
                // SAFETY: an entry's link is the first field of its
                // `Node<K, V>`, and `cur` carries the node's provenance; the
                // node lives as long as the section, its key and value are
                // never written after publication.
                return Some(unsafe { cur.cast().as_ref() });
            }
        }
    }
}

impl<K, V> FusedIterator for Iter<'_, K, V> {}

impl<K, V> fmt::Debug for Iter<'_, K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Iter").finish_non_exhaustive()
    }
}
