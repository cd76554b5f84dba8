//! The writers of [`RcuHashMap`]: each takes its key's stripe lock inside
//! a read-side section, changes the list, and retires what it unlinked
//! after releasing the lock; an insert or remove that crosses a load
//! threshold then resizes the table (see the [module docs](super)).

use std::any::Any;
use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};
use std::mem::size_of;
use std::ptr::NonNull;
use std::sync::atomic::Ordering;

use super::list::{self, key_sort, Link, Node, Search};
use super::table::{nested_now, Locking, Stripes, Table, STRIPES, STRIPE_BITS};
use super::{RcuHashMap, HASH_CHANGED};
use crate::guard::ReadSection;
use crate::sync::{drop_payload, fence, mutated_for_loom, ord_for_loom, try_lock, weigh_caught};

impl<K, V, S> RcuHashMap<K, V, S>
where
    K: Hash + Eq + Send + 'static,
    V: Send + 'static,
    S: BuildHasher,
{
    /// Runs `f` with the dummy heading the bucket of `hash`, inside a
    /// read-side section and with the hash's stripe locked.
    #[track_caller]
    fn locked<R>(&self, hash: u64, f: impl FnOnce(NonNull<Link>) -> R) -> R {
        waited(self.locked_if(hash, true, f))
    }

    /// [`locked`](Self::locked), or, unless `wait`, `Err(StripeBusy)`
    /// without running `f` if another thread holds the stripe.
    #[track_caller]
    fn locked_if<R>(
        &self,
        hash: u64,
        wait: bool,
        f: impl FnOnce(NonNull<Link>) -> R,
    ) -> Result<R, StripeBusy> {
        let _section = self.rcu.read_lock();
        let stripe = Stripes::of(hash);
        let _locked = if wait {
            self.stripes.lock(stripe, &self.rcu)
        } else {
            self.stripes.try_lock(stripe).ok_or(StripeBusy)?
        };
        // Read after the lock: a halving publishes its table before it
        // unlinks dummies under this lock, so this table's are linked.
        let table = self.table.load(ord_for_loom(
            "map.locked_if.table_acquire",
            Ordering::Acquire,
        ));
        // SAFETY: as in `find`: the section keeps the table allocated.
        Ok(f(unsafe { (*table).head(hash) }))
    }

    /// Counts an entry about to be linked. Called under its stripe lock,
    /// before the entry is visible: a writer that then removes it (after
    /// taking that lock) subtracts only what was added, so `len` never
    /// wraps below zero, not even for a moment.
    #[inline]
    fn count_new_entry(&self) {
        self.len.fetch_add(1, Ordering::Relaxed);
    }

    /// Uncounts `n` entries just unlinked, under their stripe lock: with
    /// [`count_new_entry`](Self::count_new_entry), `len` never exceeds the
    /// keys present plus those being linked under a lock right now.
    #[inline]
    fn uncount_entries(&self, n: usize) {
        self.len.fetch_sub(n, Ordering::Relaxed);
    }

    /// Hands an unlinked node to the domain, booking its size. Should the
    /// weigher (or a `ReclaimSize` impl) panic, the node is still handed
    /// over, booking its `size_of` alone, and the panic goes on.
    fn retire(&self, node: NonNull<Node<K, V>>) {
        if let Err(panic) = self.retire_catching(node) {
            std::panic::resume_unwind(panic);
        }
    }

    /// [`retire`](Self::retire), returning the weigher's panic instead of
    /// unwinding with it: the node is retired either way. (Before, a
    /// panicking weigher leaked the node, and a `clear` leaked every entry
    /// after it, all of them already uncounted.)
    fn retire_catching(&self, node: NonNull<Node<K, V>>) -> Result<(), Box<dyn Any + Send>> {
        let (heap, panic) = {
            // SAFETY: unlinked by this thread and not yet handed on; shared
            // with readers only, who never write it.
            let n = unsafe { node.as_ref() };
            weigh_caught(0, || (self.weigh)(&n.key, &n.value))
        };
        let bytes = size_of::<Node<K, V>>().saturating_add(heap);
        // SAFETY: from `Box::into_raw`, and unlinked under its stripe lock,
        // so no new reader can reach it; the deferred drop waits for the
        // readers that did. Handed over as a raw pointer, not a `Box`:
        // those readers still hold `&Node`, which a `Box` (unique) would
        // invalidate.
        unsafe { self.rcu.defer_drop_raw_as(node, bytes, self.drops_anywhere) };
        panic.map_or(Ok(()), Err)
    }

    /// Inserts `value` for `key`: `true` if the key was new, `false` if it
    /// replaced a value (as `HashMap::insert` keeps the old key, this keeps
    /// the new one). The old entry is dropped after a grace period, its
    /// size booked. To read the old value, use
    /// [`update`](RcuHashMap::update). (An [`RcuCache`](crate::RcuCache)'s
    /// `insert` returns whether the value was cached instead.)
    ///
    /// ```
    /// let map = rcu_reclaim::RcuHashMap::new();
    /// assert!(map.insert(1, "a"));
    /// assert!(!map.insert(1, "b"));
    /// assert_eq!(map.get(&1, &map.domain().read_lock()), Some(&"b"));
    /// ```
    ///
    /// A replaced entry is dropped later, maybe on another thread, so keys
    /// and values are `Send`:
    ///
    /// ```compile_fail,E0277
    /// let map = rcu_reclaim::RcuHashMap::new();
    /// map.insert(1, std::rc::Rc::new(1)); // error: `Rc<i32>` cannot be sent between threads safely
    /// ```
    ///
    /// and `'static`, as they may be dropped after everything they borrow:
    ///
    /// ```compile_fail,E0597
    /// let x = 1u32;
    /// let map = rcu_reclaim::RcuHashMap::new();
    /// map.insert(1, &x); // error: `x` does not live long enough
    /// ```
    #[track_caller]
    pub fn insert(&self, key: K, value: V) -> bool {
        let hash = self.hash(&key);
        let sort = key_sort(hash);
        // Freed with its key and value should the search panic (the key's
        // `Eq`) or the lock refuse a nested write, until it is linked. In
        // this frame, not the closure's: a panic then drops them once the
        // lock is released, so a `Drop` that writes to this map does not
        // panic again while unwinding (which aborts the process).
        let mut new = Some(Unpublished(Node::new(sort, key, value)));
        let replaced = self.locked(hash, |head| {
            let unpublished = new.as_ref().expect("linked once");
            // SAFETY: `new` is ours and unlinked; its key is never written.
            let key = unsafe { &unpublished.0.as_ref().key };
            // SAFETY: `head` is the current table's dummy for `hash`, read
            // inside the section and under the stripe lock.
            let found = unsafe { list::search::<K, V, K>(head, sort, key) };
            let new = new.take().expect("linked once").into_linked();
            match found {
                Search::Found { prev, node } => {
                    // SAFETY: found under the lock; `new` becomes the list's.
                    unsafe { list::unlink(prev, node.cast(), Some(Node::link(new))) };
                    Some(node)
                }
                Search::Absent { prev, next } => {
                    self.count_new_entry();
                    // SAFETY: as above.
                    unsafe { list::link_between(prev, next, Node::link(new)) };
                    None
                }
            }
        });
        match replaced {
            Some(old) => {
                self.retire(old);
                false
            }
            None => {
                self.grow_if_needed();
                true
            }
        }
    }

    /// The mutation check of the loom model of an insert: `insert` with
    /// the new node linked by a relaxed store, which no longer publishes
    /// its key and value to a reader that finds it. Never use it: the
    /// model must fail with it.
    #[cfg(loom)]
    #[doc(hidden)]
    pub fn insert_relaxed_for_loom_mutation(&self, key: K, value: V) -> bool {
        list::with_relaxed_links(|| self.insert(key, value))
    }

    /// Removes `key`: `true` if it was present. The entry is dropped after
    /// a grace period, its size booked; readers that found it keep reading
    /// it until then.
    ///
    /// ```
    /// let map = rcu_reclaim::RcuHashMap::new();
    /// map.insert(String::from("k"), vec![1, 2]);
    /// let guard = map.domain().read_lock();
    /// let v = map.get("k", &guard).unwrap();
    /// assert!(map.remove("k"));
    /// assert_eq!(v, &[1, 2]); // still valid inside the section
    /// assert!(!map.remove("k"));
    /// ```
    #[track_caller]
    pub fn remove<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.remove_if(key, |_| true)
    }

    /// Removes `key` if `pred` accepts its value: `true` if it removed it.
    /// `pred` runs under the key's stripe lock (so it must not write to
    /// this map), and no other write to the key runs meanwhile: a cache
    /// evicts with it the entry it examined, never a newer one that
    /// replaced it. As `update`'s `f`, `pred` runs inside a read-side
    /// section the write holds: it must not wait for a grace period. The
    /// entry is dropped after a grace period, its size booked.
    ///
    /// # Panics
    /// If called from a closure that another write of this map runs under
    /// its lock (`pred`, `update`'s `f`, `get_or_insert_with`'s `f`): that
    /// would deadlock. The same holds for every write of the map, and for
    /// a write nested more than 32 deep in other maps' closures (the
    /// thread can check no further). A write that such a closure makes to
    /// *another* map or cache waits for its key's lock as long as another
    /// thread holds it, unless that thread waits in turn, from a closure
    /// of its own, for a lock this one holds (two threads writing each
    /// other's maps from their closures): one of them then panics, naming
    /// the deadlock, and its locks are released as it unwinds. Make such
    /// writes after the call returns, or nest maps in the same order on
    /// every thread.
    ///
    /// ```
    /// let map = rcu_reclaim::RcuHashMap::new();
    /// map.insert("k", 1);
    /// assert!(!map.remove_if("k", |v| *v == 2));
    /// assert!(map.remove_if("k", |v| *v == 1));
    /// assert!(map.is_empty());
    /// ```
    #[track_caller]
    pub fn remove_if<Q>(&self, key: &Q, pred: impl FnOnce(&V) -> bool) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.remove_if_hashed(self.hash(key), key, pred)
    }

    /// Keeps only the entries for which `f` returns `true`: each entry
    /// present for the whole call is offered to `f` once, and removed (as
    /// by [`remove_if`](Self::remove_if): dropped after a grace period, its
    /// size booked) if `f` says `false`. An entry inserted or replaced
    /// meanwhile may or may not be offered; one that `f` kept and another
    /// thread replaced stays replaced. For a routing table, say: drop every
    /// route through a next hop that went down. As std's `retain`, it calls
    /// neither the keys' `Hash` nor their `Eq`: every entry is offered,
    /// whatever they do.
    ///
    /// The walk is one read-side section of the map's domain (grace
    /// periods wait for it), and `f` runs as `remove_if`'s `pred` does,
    /// under the entry's lock: it must not wait for a grace period nor
    /// write to this map.
    ///
    /// # Panics
    /// As [`remove_if`](Self::remove_if), if `f` writes to this map or the
    /// call is made from a closure that another write of this map runs.
    ///
    /// ```
    /// let routes = rcu_reclaim::RcuHashMap::new();
    /// for (prefix, hop) in [("10.0.0.0/8", 1), ("10.1.0.0/16", 2), ("192.168.0.0/16", 1)] {
    ///     routes.insert(prefix, hop);
    /// }
    /// routes.retain(|_, hop| *hop != 1); // next hop 1 went down
    /// let guard = routes.domain().read_lock();
    /// let left: Vec<_> = routes.iter(&guard).collect();
    /// assert_eq!(left, [(&"10.1.0.0/16", &2)]);
    /// ```
    #[track_caller]
    pub fn retain(&self, mut f: impl FnMut(&K, &V) -> bool) {
        self.retain_filed(|_, key, value| f(key, value));
    }

    /// [`retain`](Self::retain), whose `f` is also given the hash each
    /// entry is filed under: its key's hash with the top bit set (the
    /// list's sort key drops that bit; see `list::hash_of_sort`), found
    /// without calling the key's `Hash`. For a caller that books its
    /// removals by hash (a cache's policy shard, which ignores that bit).
    #[track_caller]
    pub(crate) fn retain_filed(&self, mut f: impl FnMut(u64, &K, &V) -> bool) {
        let guard = self.rcu.read_lock();
        let mut walk = self.iter(&guard);
        while let Some(node) = walk.next_node() {
            // Found again by its address under its stripe's lock, not by
            // its key (as std's `retain`, which calls neither `Hash` nor
            // `Eq`): a key not equal to itself (NaN-like) or hashed anew
            // at each call was never offered, and in debug builds the
            // latter panicked. The section keeps the node allocated, so
            // no other entry can take its address meanwhile; an entry
            // replaced since the walk reached it is not offered (it was
            // not present for the whole call).
            let hash = list::hash_of_sort(node.sort());
            let is = |n: &Node<K, V>| std::ptr::eq(n, node);
            drop(waited(self.unlink_matching(
                hash,
                is,
                |value| !f(hash, &node.key, value),
                true,
            )));
        }
    }

    /// [`remove_if`](Self::remove_if) for a key whose
    /// [`hash`](RcuHashMap::hash) the caller has.
    #[track_caller]
    pub(crate) fn remove_if_hashed<Q>(
        &self,
        hash: u64,
        key: &Q,
        pred: impl FnOnce(&V) -> bool,
    ) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        // Dropped at once: retired here.
        self.unlink_if_hashed(hash, key, pred).is_some()
    }

    /// [`remove_if_hashed`](Self::remove_if_hashed), but the entry is
    /// retired only when the returned handle drops: a caller that removes
    /// under its own lock (a cache's policy) retires after releasing it, so
    /// the retire's work (a few ready frees, `free` taking the allocator's
    /// locks) does not lengthen that lock's hold.
    #[track_caller]
    pub(crate) fn unlink_if_hashed<Q>(
        &self,
        hash: u64,
        key: &Q,
        pred: impl FnOnce(&V) -> bool,
    ) -> Option<Unlinked<'_, K, V, S>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        debug_assert_eq!(hash, self.hash(key), "{HASH_CHANGED}");
        waited(self.unlink_matching(hash, |n| n.key.borrow() == key, pred, true))
    }

    /// Unlinks the first entry filed under `hash` that `is` accepts, found
    /// without calling the key's `Eq` or `Hash` (see
    /// [`get_hashed_by`](RcuHashMap::get_hashed_by)); retired when the
    /// handle drops, as with [`unlink_if_hashed`](Self::unlink_if_hashed).
    /// `is` runs under the hash's stripe lock.
    #[track_caller]
    pub(crate) fn unlink_hashed_by(
        &self,
        hash: u64,
        mut is: impl FnMut(&V) -> bool,
    ) -> Option<Unlinked<'_, K, V, S>> {
        waited(self.unlink_matching(hash, |n| is(&n.value), |_| true, true))
    }

    /// [`unlink_hashed_by`](Self::unlink_hashed_by) without waiting for
    /// the hash's stripe: `Err(StripeBusy)` if another thread holds it. For
    /// a caller holding a lock of its own that the stripe's holder may be
    /// waiting for (a cache evicting under its policy shard's lock, while
    /// a `get_or_insert_with` closure holds the stripe and writes to a map
    /// whose writer waits for that shard lock: a deadlock, were it to wait).
    #[track_caller]
    pub(crate) fn try_unlink_hashed_by(
        &self,
        hash: u64,
        mut is: impl FnMut(&V) -> bool,
    ) -> Result<Option<Unlinked<'_, K, V, S>>, StripeBusy> {
        self.unlink_matching(hash, |n| is(&n.value), |_| true, false)
    }

    /// Unlinks the first entry filed under `hash` that `is` picks, if
    /// `pred` accepts its value.
    #[track_caller]
    fn unlink_matching(
        &self,
        hash: u64,
        is: impl FnMut(&Node<K, V>) -> bool,
        pred: impl FnOnce(&V) -> bool,
        wait: bool,
    ) -> Result<Option<Unlinked<'_, K, V, S>>, StripeBusy> {
        let removed = self.locked_if(hash, wait, |head| {
            // SAFETY: as in `insert`.
            match unsafe { list::search_by::<K, V>(head, key_sort(hash), is) } {
                Search::Found { prev, node } => {
                    // SAFETY: linked, under the lock; a published value is
                    // never written.
                    if !pred(unsafe { &node.as_ref().value }) {
                        return None;
                    }
                    // SAFETY: found under the lock.
                    unsafe { list::unlink(prev, node.cast(), None) };
                    self.uncount_entries(1);
                    Some(node)
                }
                Search::Absent { .. } => None,
            }
        })?;
        let Some(removed) = removed else {
            return Ok(None);
        };
        // Owned first: should the shrink unwind, the node is still retired.
        let unlinked = Unlinked {
            map: self,
            node: removed,
        };
        self.shrink_if_needed();
        Ok(Some(unlinked))
    }

    /// The value of `key`, inserting `f()` first if the key is absent.
    /// `f` runs at most once, and only if its value is inserted; it runs
    /// under the key's stripe lock, so it must not write to this map
    /// (reading it is fine), and inside `guard`'s section, so it must not
    /// wait for a grace period.
    ///
    /// # Panics
    /// If `guard` belongs to another domain than the map; if `f` writes to
    /// this map (`insert`, `remove`, `update`, ...), in that write, which
    /// would otherwise deadlock; if `f` writes to another map or cache
    /// whose key's lock another thread holds while it waits for this one
    /// (see [`remove_if`](Self::remove_if)).
    ///
    /// ```
    /// let map = rcu_reclaim::RcuHashMap::new();
    /// let guard = map.domain().read_lock();
    /// assert_eq!(map.get_or_insert_with(1, || "new", &guard), &"new");
    /// assert_eq!(map.get_or_insert_with(1, || unreachable!(), &guard), &"new");
    /// ```
    ///
    /// The value lives no longer than the section:
    ///
    /// ```compile_fail,E0505
    /// let map = rcu_reclaim::RcuHashMap::new();
    /// let guard = map.domain().read_lock();
    /// let v = map.get_or_insert_with(1, || 1, &guard);
    /// drop(guard); // error: cannot move out of `guard` because it is borrowed
    /// println!("{v}");
    /// ```
    #[track_caller]
    pub fn get_or_insert_with<'g, G: ReadSection>(
        &'g self,
        key: K,
        f: impl FnOnce() -> V,
        guard: &'g G,
    ) -> &'g V {
        self.get_or_insert_with_hashed(self.hash(&key), key, f, guard)
    }

    /// [`get_or_insert_with`](Self::get_or_insert_with) for a key whose
    /// [`hash`](RcuHashMap::hash) the caller has.
    #[track_caller]
    pub(crate) fn get_or_insert_with_hashed<'g, G: ReadSection>(
        &'g self,
        hash: u64,
        key: K,
        f: impl FnOnce() -> V,
        guard: &'g G,
    ) -> &'g V {
        self.check_guard(guard);
        let node = match self.find_hashed(hash, &key) {
            Some(node) => node,
            None => {
                let sort = key_sort(hash);
                // The key and `f`, unless an entry takes them, are dropped
                // in this frame with the lock released (see
                // `update_hashed`), also when the search (the key's `Eq`)
                // or `f` panics.
                let (mut key, mut f) = (Some(key), Some(f));
                let (node, added) = self.locked(hash, |head| {
                    let k = key.as_ref().expect("taken once");
                    // SAFETY: as in `insert`.
                    match unsafe { list::search::<K, V, K>(head, sort, k) } {
                        Search::Found { node, .. } => (node, false),
                        Search::Absent { prev, next } => {
                            let value = f.take().expect("called once")();
                            let new = Node::new(sort, key.take().expect("taken once"), value);
                            self.count_new_entry();
                            // SAFETY: as in `insert`.
                            unsafe { list::link_between(prev, next, Node::link(new)) };
                            (new, true)
                        }
                    }
                });
                drop((key, f));
                if added {
                    self.grow_if_needed();
                }
                node
            }
        };
        // SAFETY: linked while the guard's section ran, so freed no earlier
        // than a grace period after the section; see `get`.
        unsafe { &(*node.as_ptr()).value }
    }

    /// Sets the value of `key` to what `f` makes of the current one
    /// (`None` if absent): `Some(v)` inserts or replaces, `None` removes.
    /// Atomic for the key: `f` runs under the key's stripe lock (so it must
    /// not write to this map: such a write panics, where it would
    /// deadlock; a write to another map or cache from `f` panics if it
    /// closes a deadlock, see [`remove_if`](Self::remove_if)),
    /// and no other write to the key runs meanwhile. `f` also runs inside
    /// a read-side section the write holds: it must not wait for a grace
    /// period or for callbacks (`synchronize`, `barrier`, `store_sync`,
    /// `Retired::into_box`), which panics, naming this call. The panic
    /// covers the map's own domain only: a wait for a grace period of
    /// another domain is not refused, and deadlocks, silently, once a
    /// reader of that domain writes a key of this stripe (it waits for the
    /// lock `f` holds, the grace period for it).
    /// Returns whether the key is present afterwards. A replaced or removed
    /// entry is dropped after a grace period, its size booked.
    ///
    /// ```
    /// let map = rcu_reclaim::RcuHashMap::new();
    /// let add = |n: u64| move |old: Option<&u64>| Some(old.copied().unwrap_or(0) + n);
    /// map.update("hits", add(1));
    /// map.update("hits", add(2));
    /// assert_eq!(map.get("hits", &map.domain().read_lock()), Some(&3));
    /// assert!(!map.update("hits", |_| None)); // removed
    /// assert!(map.is_empty());
    /// ```
    ///
    /// `f` sees the current value under the lock only: it cannot keep it,
    /// which may be freed once the call returns:
    ///
    /// ```compile_fail,E0521
    /// let map = rcu_reclaim::RcuHashMap::new();
    /// map.insert(1, String::from("one"));
    /// let mut seen: Option<&String> = None;
    /// map.update(1, |old| {
    ///     seen = old; // error: borrowed data escapes outside of closure
    ///     None
    /// });
    /// println!("{seen:?}");
    /// ```
    #[track_caller]
    pub fn update<F>(&self, key: K, f: F) -> bool
    where
        F: FnOnce(Option<&V>) -> Option<V>,
    {
        self.update_hashed(self.hash(&key), key, f)
    }

    /// [`update`](Self::update) for a key whose [`hash`](RcuHashMap::hash)
    /// the caller has.
    #[track_caller]
    pub(crate) fn update_hashed<F>(&self, hash: u64, key: K, f: F) -> bool
    where
        F: FnOnce(Option<&V>) -> Option<V>,
    {
        debug_assert_eq!(hash, self.hash(&key), "{HASH_CHANGED}");
        let sort = key_sort(hash);
        // A key that no entry takes stays in this frame and is dropped
        // after the lock's scope: its `Drop` is the caller's code, and one
        // that wrote to this map under the lock was refused as a write from
        // `f` (or, when the search or `f` panicked, panicked again while
        // unwinding, which aborts the process).
        let (mut key, mut f) = (Some(key), Some(f));
        let (old, present, added) = self.locked(hash, |head| {
            let mut f = |v| f.take().expect("called once")(v);
            let k = key.as_ref().expect("taken once");
            // SAFETY: as in `insert`.
            match unsafe { list::search::<K, V, K>(head, sort, k) } {
                Search::Found { prev, node } => {
                    // SAFETY: linked, under the lock; its value is never
                    // written after publication.
                    let old = unsafe { &node.as_ref().value };
                    match f(Some(old)) {
                        Some(v) => {
                            let k = key.take().expect("taken once");
                            let new = Node::link(Node::new(sort, k, v));
                            // SAFETY: as in `insert`.
                            unsafe { list::unlink(prev, node.cast(), Some(new)) };
                            (Some(node), true, false)
                        }
                        None => {
                            // SAFETY: as in `insert`.
                            unsafe { list::unlink(prev, node.cast(), None) };
                            self.uncount_entries(1);
                            (Some(node), false, false)
                        }
                    }
                }
                Search::Absent { prev, next } => match f(None) {
                    Some(v) => {
                        let new = Node::new(sort, key.take().expect("taken once"), v);
                        self.count_new_entry();
                        // SAFETY: as in `insert`.
                        unsafe { list::link_between(prev, next, Node::link(new)) };
                        (None, true, true)
                    }
                    None => (None, false, false),
                },
            }
        });
        if let Some(old) = old {
            // Owned first (should the shrink unwind, it is still retired),
            // retired after the shrink (its retire unwinds if the weigher
            // panics).
            let old = Unlinked {
                map: self,
                node: old,
            };
            if !present {
                self.shrink_if_needed();
            }
            drop(old);
        } else if added {
            self.grow_if_needed();
        }
        // Last: the write is done whatever its `Drop` does.
        drop((key, f));
        present
    }

    /// Removes every entry, one stripe at a time (an entry inserted
    /// meanwhile may stay). Each is dropped after a grace period, its size
    /// booked.
    ///
    /// ```
    /// let map = rcu_reclaim::RcuHashMap::new();
    /// for i in 0..100 {
    ///     map.insert(i, i);
    /// }
    /// map.clear();
    /// assert!(map.is_empty());
    /// assert!(map.iter(&map.domain().read_lock()).next().is_none());
    /// ```
    #[track_caller]
    pub fn clear(&self) {
        // Owned as they are unlinked: retired even if a stripe's wait
        // unwinds midway (a crossed write's deadlock panic).
        let mut removed: Vec<Unlinked<'_, K, V, S>> = Vec::new();
        {
            let _section = self.rcu.read_lock();
            for stripe in 0..STRIPES {
                let _locked = self.stripes.lock(stripe, &self.rcu);
                let table = self
                    .table
                    .load(ord_for_loom("map.clear.table_acquire", Ordering::Acquire));
                // SAFETY: as in `locked`; bucket `stripe` (< STRIPES) heads
                // the stripe's range of the list, whose lock we hold.
                let unlinked = unsafe { list::unlink_range((*table).bucket(stripe), STRIPE_BITS) };
                self.uncount_entries(unlinked.len());
                removed.extend(unlinked.into_iter().map(|link| Unlinked {
                    map: self,
                    node: link.cast(),
                }));
            }
        }
        // Every entry is retired even if the weigher panics on some: the
        // first panic goes on once they all are.
        let mut first_panic = None;
        // One call: under memory pressure its retires wait 1 s in all at
        // most, not each its own bound.
        crate::callbacks::one_call(|| {
            for unlinked in removed {
                if let Err(panic) = self.retire_catching(unlinked.into_node()) {
                    match first_panic {
                        None => first_panic = Some(panic),
                        Some(_) => drop_payload(panic),
                    }
                }
            }
        });
        self.shrink_if_needed();
        if let Some(panic) = first_panic {
            std::panic::resume_unwind(panic);
        }
    }

    fn grow_if_needed(&self) {
        if self.load_resizes_to() == Some(true) {
            self.resize();
        }
    }

    fn shrink_if_needed(&self) {
        if self.load_resizes_to() == Some(false) {
            self.resize();
        }
    }

    /// [`resize_to`](Self::resize_to) for the published size and count.
    fn load_resizes_to(&self) -> Option<bool> {
        let n = self.buckets.load(Ordering::Relaxed);
        self.resize_to(n, self.len.load(Ordering::Relaxed))
    }

    /// Whether a table of `n` buckets holding `len` entries doubles
    /// (`Some(true)`), halves (`Some(false)`) or stays.
    fn resize_to(&self, n: usize, len: usize) -> Option<bool> {
        if len > n && n < 1 << (usize::BITS - 2) {
            Some(true)
        } else if n > self.min_buckets && len < n / 8 {
            Some(false)
        } else {
            None
        }
    }

    /// Doubles or halves the table until the load fits. If another thread
    /// is resizing, leaves it to that one, which looks at the load again
    /// once it has let go of the lock: with the fences, either it sees the
    /// count this thread changed, or this thread's `try_lock` comes after
    /// its unlock and succeeds. (Without that second look, a request made
    /// while the resizer was deciding to stop was lost until the next
    /// write, and a map emptied then stayed at its largest size.)
    fn resize(&self) {
        loop {
            if !mutated_for_loom("map.resize.fence_before") {
                fence(Ordering::SeqCst);
            }
            let Some(resizing) = try_lock(&self.resize) else {
                return;
            };
            if nested_now() {
                // Inside another map's closure, a wait for a stripe could
                // close a deadlock, and a panic in the middle of a resize
                // would leave it half done: every stripe at once or none,
                // the resize left to a later write then.
                let Some(all) = self.stripes.try_lock_all() else {
                    return;
                };
                self.resize_locked(&Locking::AllHeld(&all));
            } else {
                self.resize_locked(&Locking::EachInTurn(&self.stripes, &self.rcu));
            }
            drop(resizing);
            if !mutated_for_loom("map.resize.fence_after") {
                fence(Ordering::SeqCst);
            }
            if self.load_resizes_to().is_none() {
                return;
            }
        }
    }

    /// [`resize`](Self::resize)'s work, under the resize lock.
    fn resize_locked(&self, stripes: &Locking<'_>) {
        loop {
            let current = self.table.load(ord_for_loom(
                "map.resize_locked.table_acquire",
                Ordering::Acquire,
            ));
            // SAFETY: only a holder of the resize lock replaces (and
            // retires) the table, so the current one stays allocated.
            let table = unsafe { &*current };
            let n = table.buckets();
            let len = self.len.load(Ordering::Relaxed);
            let (next, unlinked) = match self.resize_to(n, len) {
                Some(true) => {
                    // SAFETY: the current table, under the resize lock.
                    let next = unsafe { table.doubled(stripes) };
                    self.publish(next);
                    (n * 2, None)
                }
                Some(false) => {
                    self.publish(table.halved());
                    // SAFETY: the halved table is published, under the
                    // resize lock, and this table is halved once (it is
                    // retired next).
                    let level = unsafe { table.unlink_upper_half(stripes) };
                    (n / 2, Some(level))
                }
                None => return,
            };
            self.buckets.store(next, Ordering::Relaxed);
            // SAFETY: replaced above (so non-null and live); readers that
            // loaded it are in sections the deferred drop waits for, and
            // read it only (`&Table`): handed over as a raw pointer, since
            // a `Box` would claim it unique under them.
            unsafe {
                let bytes = (*current).bytes();
                let old = std::ptr::NonNull::new_unchecked(current);
                self.rcu
                    .defer_drop_raw_as(old, bytes, !std::mem::needs_drop::<Table>());
            }
            if let Some(level) = unlinked {
                // Unlinked under their stripe locks and named by no
                // published table: readers that walked onto them are in
                // sections the deferred drop waits for.
                let bytes = level.bytes();
                self.rcu.defer_drop_sized(Box::new(level), bytes);
            }
        }
    }

    fn publish(&self, table: Box<Table>) {
        self.table.store(
            Box::into_raw(table),
            ord_for_loom("map.publish_table.release", Ordering::Release),
        );
    }
}

/// A stripe lock held by another thread, where the caller would not wait.
#[derive(Debug)]
pub(crate) struct StripeBusy;

/// The result of a call that waited for its stripe (never busy).
fn waited<R>(r: Result<R, StripeBusy>) -> R {
    match r {
        Ok(r) => r,
        Err(StripeBusy) => unreachable!("a waiting lock is never busy"),
    }
}

/// A new node not yet linked: dropping it frees the node, its key and its
/// value (a panic before the link leaks nothing).
struct Unpublished<K, V>(NonNull<Node<K, V>>);

impl<K, V> Unpublished<K, V> {
    /// The node, about to be linked: from now on the list owns it.
    fn into_linked(self) -> NonNull<Node<K, V>> {
        let node = self.0;
        std::mem::forget(self);
        node
    }
}

impl<K, V> Drop for Unpublished<K, V> {
    fn drop(&mut self) {
        // SAFETY: from `Node::new` (`Box::leak`), never linked, so no one
        // else can reach it.
        drop(unsafe { Box::from_raw(self.0.as_ptr()) });
    }
}

/// An entry unlinked from its map and not yet retired: no new reader can
/// reach it, and dropping the handle hands it to the domain (its size
/// booked), which frees it after the readers that found it. Holding it
/// only delays that grace period's start.
pub(crate) struct Unlinked<'m, K, V, S>
where
    K: Hash + Eq + Send + 'static,
    V: Send + 'static,
    S: BuildHasher,
{
    map: &'m RcuHashMap<K, V, S>,
    node: NonNull<Node<K, V>>,
}

impl<K, V, S> Unlinked<'_, K, V, S>
where
    K: Hash + Eq + Send + 'static,
    V: Send + 'static,
    S: BuildHasher,
{
    /// The node, for the caller to retire.
    fn into_node(self) -> NonNull<Node<K, V>> {
        let node = self.node;
        std::mem::forget(self);
        node
    }
}

impl<K, V, S> Drop for Unlinked<'_, K, V, S>
where
    K: Hash + Eq + Send + 'static,
    V: Send + 'static,
    S: BuildHasher,
{
    fn drop(&mut self) {
        if let Err(panic) = self.map.retire_catching(self.node) {
            // Never a second panic while one unwinds (an abort).
            if std::thread::panicking() {
                drop_payload(panic);
            } else {
                std::panic::resume_unwind(panic);
            }
        }
    }
}
