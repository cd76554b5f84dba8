//! [`RcuHashMap`]: a concurrent hash map whose lookups take no lock and
//! whose removed entries are freed through the domain, sizes booked.
//!
//! ```
//! use rcu_reclaim::RcuHashMap;
//! let map = RcuHashMap::new();
//! map.insert("apple", 3);
//! map.insert("pear", 5);
//! let guard = map.domain().read_lock();
//! assert_eq!(map.get("apple", &guard), Some(&3));
//! map.remove("apple"); // freed after a grace period
//! assert_eq!(map.get("apple", &guard), None);
//! ```
//!
//! # A map, or a table in a cell?
//!
//! `RcuHashMap` is for entries that change one at a time (a cache, a
//! session table, routes added and withdrawn one by one): each write
//! touches one key, and a reader sees each key's latest value. A table
//! that is replaced as a whole (a routing table or a configuration
//! reloaded from a file) is better held in an
//! [`RcuCell`](crate::RcuCell)`<HashMap<..>>`: readers see the old table or
//! the new one, never a mix of the two, and the old table is freed as one
//! value after a grace period.
//!
//! ```
//! use std::collections::HashMap;
//! use rcu_reclaim::RcuCell;
//! let routes = RcuCell::new(HashMap::from([(10u32, "eth0")]));
//! routes.store(Box::new(HashMap::from([(10, "eth1"), (20, "eth0")]))); // whole table
//! let g = routes.domain().read_lock();
//! assert_eq!(routes.load(&g).unwrap()[&20], "eth0");
//! ```
//!
//! # Design
//!
//! **One list, many shortcuts** (the split-ordered list of Shalev and
//! Shavit, as in liburcu's `rculfhash`). Every entry is one allocation (a
//! `Node`: sort key, next pointer, key, value) in a single
//! singly linked list sorted by the *bit-reversed* hash. Bit reversal makes
//! the keys of bucket `b` of a table of `n` buckets (`hash % n == b`) a
//! contiguous run of the list, for every power of two `n`, and a *dummy*
//! link (no key, an even sort key) heads each run. The dummies live in
//! arrays, one per *level* (buckets `[0, 64)`, then `[64, 128)`,
//! `[128, 256)`, ...: each doubling adds one), as liburcu's `rculfhash`
//! keeps them, and the bucket table is an immutable list of those arrays:
//! a lookup computes its dummy's address from the bucket number and reads
//! it, with no pointer to its dummy to load first.
//!
//! **Readers** ([`get`](RcuHashMap::get), [`iter`](RcuHashMap::iter)) load
//! the current table, jump to their bucket's dummy and walk forward until
//! the sort key passes theirs: acquire loads only, no lock, no write to
//! shared memory. The read-side section keeps everything they can reach
//! allocated.
//!
//! **Writers** lock one of 64 *stripes*, chosen by the hash's low bits.
//! Every table has at least 64 buckets, so all the list a writer walks and
//! changes (from its bucket's dummy to its key's place) lies in its
//! stripe's range of the list: writers of different stripes never touch
//! the same link, and a writer can start from any table, even one just
//! replaced. Inserting links a new node after its predecessor (Release);
//! replacing links a new node in the old one's place; removing points the
//! predecessor past the node. An unlinked node keeps its `next`, so a
//! reader standing on it walks on, and it is handed to
//! [`Rcu::defer_drop_sized`](crate::Rcu::defer_drop_sized) with its size:
//! `size_of` the node plus its key's and value's heap
//! ([`ReclaimSize::heap_size`], or the map's weigher).
//!
//! **Resizing never moves an entry**, so readers never stop and never miss
//! a key that stays present. Doubling (when there are more entries than
//! buckets) links a new dummy into the middle of every bucket, one stripe
//! at a time under that stripe's lock, and only then publishes the bigger
//! table; a reader on the old table walks over the new dummies. Halving
//! (when fewer than an eighth of the buckets hold entries, down to the
//! initial size) publishes the smaller table first, then unlinks the
//! dummies it no longer names, under their stripe locks; a writer reads the
//! table only after taking its stripe lock, so none starts from an unlinked
//! dummy. Old tables and unlinked dummies (the top level's array) are freed through the domain,
//! after a grace period, like entries. One thread resizes at a time (the
//! one whose insert or remove crossed the threshold; the others go on).
//!
//! This design over the alternatives: copying the bucket array with its
//! chains needs `K: Clone` or a second allocation per entry (a link
//! pointing to the entry); relinking an entry's chain pointer into a new
//! table, as the kernel's `rhashtable` does, needs "nulls" markers and
//! restarts in readers. Here a lookup follows one pointer per element, and
//! a resize costs one dummy (16 bytes) per new bucket, in one allocation.
//!
//! # Guarantees
//! A lookup that runs while a key is present throughout finds it, during
//! any number of resizes. Each write to one key is atomic (readers see the
//! old value or the new one); [`len`](RcuHashMap::len) is exact whenever
//! no write is running, and [`clear`](RcuHashMap::clear) empties one
//! stripe at a time.

#[cfg(not(loom))]
mod crossed;
mod iter;
mod list;
mod table;
mod write;

pub use iter::Iter;
pub(crate) use write::{StripeBusy, Unlinked};

use std::borrow::Borrow;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::atomic::Ordering;

use crossbeam_utils::CachePadded;

use crate::domain::Rcu;
use crate::guard::ReadSection;
use crate::size::ReclaimSize;
use crate::sync::{ord_for_loom, AtomicPtr, AtomicUsize, Mutex};
use list::{key_sort, Node, Search};
use table::{Stripes, Table, STRIPES};

/// The debug builds' check of a hash a caller passes with its key: a key
/// hashed twice (by the caller, then by the check) hashed differently.
pub(crate) const HASH_CHANGED: &str =
    "the key's `Hash` gave two hashes for one key (a `Hash` impl \
     must hash a key alike every time, and agree with its `Eq`)";

/// What a map's `PhantomData` stands for (see its `_owns`).
type Owns<K, V> = (Box<Node<K, V>>, *const (), fn(K, V) -> (K, V));

/// A concurrent hash map with lock-free lookups under a [`ReadGuard`](crate::ReadGuard) (or any [`ReadSection`]);
/// removed and replaced entries are freed through its [`Rcu`] domain
/// after a grace period, booking their real size. See the
/// [module docs](self) for the design.
///
/// Lookups return references tied to both the guard and the map, so no
/// entry can be used after the section ends or the map is dropped. Writers
/// take one of 64 stripe locks (never held by readers) and do not wait for
/// grace periods, so every call is usable inside a read-side section.
///
/// ```
/// use rcu_reclaim::{Config, Rcu, RcuHashMap};
/// let rcu = Rcu::new(Config::new().on_demand()).unwrap();
/// let map: RcuHashMap<u32, Vec<u8>> = RcuHashMap::new_in(&rcu);
/// map.insert(1, vec![0; 4096]);
/// map.insert(1, vec![1; 16]); // the 4 KiB value is retired, not freed yet
/// assert!(rcu.pending_bytes() >= 4096);
/// rcu.barrier(); // now it is
/// assert_eq!(rcu.pending_bytes(), 0);
/// ```
///
/// A reference does not outlive its section:
///
/// ```compile_fail,E0597
/// let map = rcu_reclaim::RcuHashMap::new();
/// map.insert(1, 1);
/// let r = {
///     let guard = map.domain().read_lock();
///     map.get(&1, &guard).unwrap() // error: `guard` does not live long enough
/// };
/// println!("{r}");
/// ```
///
/// On a QSBR domain, a registered thread reads under its free
/// [`QsbrGuard`](crate::QsbrGuard) (any [`ReadSection`] will do), and a
/// reference cannot be kept across the thread's next quiescent state:
///
/// ```
/// use rcu_reclaim::{Config, Flavor, Rcu, RcuHashMap};
/// let rcu = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
/// let map = RcuHashMap::new_in(&rcu);
/// let mut thread = rcu.register_qsbr_thread();
/// map.insert(1, "one");
/// assert_eq!(map.get(&1, &thread.read_lock()), Some(&"one"));
/// thread.quiescent_state();
/// ```
///
/// ```compile_fail,E0502
/// use rcu_reclaim::{Config, Flavor, Rcu, RcuHashMap};
/// let rcu = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
/// let map = RcuHashMap::new_in(&rcu);
/// let mut thread = rcu.register_qsbr_thread();
/// map.insert(1, "one");
/// let guard = thread.read_lock();
/// let r = map.get(&1, &guard).unwrap();
/// thread.quiescent_state(); // error: `thread` is borrowed by the guard
/// println!("{r}");
/// ```
///
/// A reference does not outlive the map either:
///
/// ```compile_fail,E0505
/// let map = rcu_reclaim::RcuHashMap::new();
/// map.insert(1, 1);
/// let guard = rcu_reclaim::Rcu::global().read_lock();
/// let r = map.get(&1, &guard).unwrap();
/// drop(map); // error: cannot move out of `map` because it is borrowed
/// println!("{r}");
/// ```
///
/// It is `Send` and `Sync` only when its keys and values are; a map of
/// `Cell` values stays on its thread:
///
/// ```compile_fail,E0277
/// let map: rcu_reclaim::RcuHashMap<u32, std::cell::Cell<u32>> = rcu_reclaim::RcuHashMap::new();
/// std::thread::spawn(move || drop(map)); // error: `Cell<u32>` cannot be shared between threads safely
/// ```
///
/// and one of `Rc` values is not shared:
///
/// ```compile_fail,E0277
/// fn shared<T: Sync>(_: &T) {}
/// let map: rcu_reclaim::RcuHashMap<u32, std::rc::Rc<u32>> = rcu_reclaim::RcuHashMap::new();
/// shared(&map); // error: `Rc<u32>` cannot be shared between threads safely
/// ```
///
/// It is invariant in its keys and values: a map of `&'static str` cannot
/// pass for a map of shorter-lived strings, into which a caller could then
/// insert one that readers would find after it died:
///
/// ```compile_fail
/// use rcu_reclaim::RcuHashMap;
/// fn shorten<'a>(m: &'a RcuHashMap<u32, &'static str>) -> &'a RcuHashMap<u32, &'a str> {
///     m // error: lifetime may not live long enough
/// }
/// ```
pub struct RcuHashMap<K, V, S = RandomState> {
    /// The current table; replaced only by a holder of `resize`.
    table: AtomicPtr<Table>,
    /// The current table's bucket count, for the resize checks.
    buckets: AtomicUsize,
    stripes: Stripes,
    /// Held by the one thread resizing.
    resize: Mutex<()>,
    /// Entries in the map. On its own cache line: every write changes it,
    /// and every lookup reads `table`, `hasher` and `rcu` (sharing a line
    /// with it, each insert took that line from the readers' caches).
    len: CachePadded<AtomicUsize>,
    /// The table never halves below this many buckets.
    min_buckets: usize,
    hasher: S,
    /// Heap bytes of an entry's key and value, booked when it is retired.
    weigh: fn(&K, &V) -> usize,
    /// Dropping an entry takes no lock and waits for nothing (the key and
    /// value drop anywhere): retiring writers free ready entries themselves.
    drops_anywhere: bool,
    rcu: Rcu,
    /// Owns the nodes; `*const ()` leaves `Send`/`Sync` to the impls below;
    /// `fn(K, V) -> (K, V)` keeps the map invariant in `K` and `V` on its
    /// own (readers get `&V` while writers store new values: a covariant
    /// map would let a value of a shorter lifetime in), not only through
    /// `weigh`.
    _owns: PhantomData<Owns<K, V>>,
}

// SAFETY: the map owns keys and values that readers on other threads
// borrow (`&K`, `&V`: needs `Sync`) and that writers on other threads
// unlink and hand to the domain, which drops them on its threads (needs
// `Send`); the hasher is used from every thread.
unsafe impl<K: Send + Sync, V: Send + Sync, S: Send + Sync> Send for RcuHashMap<K, V, S> {}
// SAFETY: as above.
unsafe impl<K: Send + Sync, V: Send + Sync, S: Send + Sync> Sync for RcuHashMap<K, V, S> {}

/// The default weigher: the key's and the value's [`ReclaimSize::heap_size`].
fn heap_of<K: ReclaimSize, V: ReclaimSize>(key: &K, value: &V) -> usize {
    key.heap_size() + value.heap_size()
}

#[cfg(not(loom))]
impl<K: ReclaimSize, V: ReclaimSize> RcuHashMap<K, V> {
    /// An empty map of the global domain.
    ///
    /// ```
    /// let map: rcu_reclaim::RcuHashMap<String, u64> = rcu_reclaim::RcuHashMap::new();
    /// assert!(map.is_empty());
    /// ```
    pub fn new() -> Self {
        Self::new_in(Rcu::global())
    }

    /// An empty map of the global domain that holds `capacity` entries
    /// before its table first grows (and never shrinks below that).
    ///
    /// # Panics
    /// If the table for `capacity` entries would need more bytes than
    /// `usize` counts ("capacity overflow", as `Vec::with_capacity`) or
    /// than the machine has memory: the message names the size. Ask for
    /// less; the map grows as entries come.
    ///
    /// ```
    /// let map: rcu_reclaim::RcuHashMap<u32, u32> = rcu_reclaim::RcuHashMap::with_capacity(1000);
    /// assert!(map.capacity() >= 1000);
    /// ```
    #[track_caller]
    pub fn with_capacity(capacity: usize) -> Self {
        Self::with_capacity_in(capacity, Rcu::global())
    }
}

impl<K: ReclaimSize, V: ReclaimSize> RcuHashMap<K, V> {
    /// An empty map of domain `rcu`.
    ///
    /// ```
    /// use rcu_reclaim::{Config, Rcu, RcuHashMap};
    /// let rcu = Rcu::new(Config::new()).unwrap();
    /// let map: RcuHashMap<u32, String> = RcuHashMap::new_in(&rcu);
    /// assert_eq!(map.domain().id(), rcu.id());
    /// ```
    pub fn new_in(rcu: &Rcu) -> Self {
        Self::with_capacity_in(0, rcu)
    }

    /// An empty map of domain `rcu` that holds `capacity` entries before
    /// its table first grows.
    ///
    /// # Panics
    /// As [`with_capacity`](RcuHashMap::with_capacity).
    ///
    /// ```
    /// use rcu_reclaim::{Rcu, RcuHashMap};
    /// let map: RcuHashMap<u32, u32> = RcuHashMap::with_capacity_in(100, Rcu::global());
    /// assert!(map.capacity() >= 100);
    /// ```
    #[track_caller]
    pub fn with_capacity_in(capacity: usize, rcu: &Rcu) -> Self {
        Self::with_capacity_and_hasher_in(capacity, RandomState::new(), rcu)
    }
}

#[cfg(not(loom))]
impl<K: ReclaimSize, V: ReclaimSize, S> RcuHashMap<K, V, S> {
    /// An empty map of the global domain hashing with `hasher` (as
    /// `HashMap::with_hasher`): a faster hasher than std's SipHash where
    /// keys are trusted, e.g. the `ahash` or `foldhash` crates'.
    ///
    /// ```
    /// use std::hash::{BuildHasherDefault, DefaultHasher};
    /// use rcu_reclaim::RcuHashMap;
    /// let map = RcuHashMap::with_hasher(BuildHasherDefault::<DefaultHasher>::default());
    /// map.insert("10.0.0.0/8", 1u32);
    /// assert_eq!(map.get("10.0.0.0/8", &map.domain().read_lock()), Some(&1));
    /// ```
    pub fn with_hasher(hasher: S) -> Self {
        Self::with_capacity_and_hasher(0, hasher)
    }

    /// An empty map of the global domain that holds `capacity` entries
    /// before its table first grows, hashing with `hasher` (as
    /// `HashMap::with_capacity_and_hasher`).
    ///
    /// ```
    /// use std::hash::{BuildHasherDefault, DefaultHasher};
    /// use rcu_reclaim::RcuHashMap;
    /// let hasher = BuildHasherDefault::<DefaultHasher>::default();
    /// let map: RcuHashMap<u32, u32, _> = RcuHashMap::with_capacity_and_hasher(1000, hasher);
    /// assert!(map.capacity() >= 1000);
    /// ```
    #[track_caller]
    pub fn with_capacity_and_hasher(capacity: usize, hasher: S) -> Self {
        Self::with_capacity_and_hasher_in(capacity, hasher, Rcu::global())
    }
}

impl<K: ReclaimSize, V: ReclaimSize, S> RcuHashMap<K, V, S> {
    /// An empty map of domain `rcu` hashing with `hasher`.
    ///
    /// ```
    /// use std::hash::BuildHasherDefault;
    /// use std::collections::hash_map::DefaultHasher;
    /// use rcu_reclaim::{Rcu, RcuHashMap};
    /// let hasher = BuildHasherDefault::<DefaultHasher>::default();
    /// let map = RcuHashMap::with_capacity_and_hasher_in(0, hasher, Rcu::global());
    /// map.insert(1u8, 2u8);
    /// assert_eq!(map.len(), 1);
    /// ```
    #[track_caller]
    pub fn with_capacity_and_hasher_in(capacity: usize, hasher: S, rcu: &Rcu) -> Self {
        let anywhere = crate::drops_anywhere::<K>() && crate::drops_anywhere::<V>();
        Self::with_weigher_as(capacity, hasher, rcu, heap_of::<K, V>, anywhere)
    }
}

impl<K, V, S> RcuHashMap<K, V, S> {
    /// An empty map whose retired entries book `size_of` their node plus
    /// `weigh(&key, &value)` bytes: the opt-in for keys or values without
    /// [`ReclaimSize`], or a size of the caller's choosing (`|_, _| 0`
    /// books the node only).
    ///
    /// `weigh` runs as an entry is retired, after the write that unlinked
    /// it is done. Should it panic (or, with the default weigher, a
    /// [`ReclaimSize`] impl), the entry is retired all the same, booking
    /// the node's size alone, and the panic then reaches the caller of
    /// that write (a [`clear`](RcuHashMap::clear) retires every entry it
    /// removed first): nothing leaks and the map stays usable.
    ///
    /// ```
    /// use std::collections::hash_map::RandomState;
    /// use rcu_reclaim::{Config, Rcu, RcuHashMap};
    /// struct Blob(Vec<u8>); // no ReclaimSize
    /// let rcu = Rcu::new(Config::new().on_demand()).unwrap();
    /// let map = RcuHashMap::with_weigher_in(0, RandomState::new(), &rcu, |_k: &u32, v: &Blob| {
    ///     v.0.capacity()
    /// });
    /// map.insert(7, Blob(vec![0; 1000]));
    /// map.remove(&7);
    /// assert!(rcu.pending_bytes() >= 1000);
    /// rcu.barrier();
    /// ```
    #[track_caller]
    pub fn with_weigher_in(
        capacity: usize,
        hasher: S,
        rcu: &Rcu,
        weigh: fn(&K, &V) -> usize,
    ) -> Self {
        let anywhere = !std::mem::needs_drop::<K>() && !std::mem::needs_drop::<V>();
        Self::with_weigher_as(capacity, hasher, rcu, weigh, anywhere)
    }

    /// As `with_weigher_in`; `drops_anywhere`: dropping a key and a value
    /// takes no lock and waits for nothing (see
    /// [`ReclaimSize::DROPS_ANYWHERE`]), so writers free ready entries.
    #[track_caller]
    pub(crate) fn with_weigher_as(
        capacity: usize,
        hasher: S,
        rcu: &Rcu,
        weigh: fn(&K, &V) -> usize,
        drops_anywhere: bool,
    ) -> Self {
        // At most the largest table (2^62 buckets on 64 bits): a capacity
        // whose next power of two is past it, or overflows, asks for that.
        let buckets = capacity
            .checked_next_power_of_two()
            .unwrap_or(usize::MAX)
            .clamp(STRIPES, 1 << (usize::BITS - 2));
        RcuHashMap {
            table: AtomicPtr::new(Box::into_raw(Table::with_new_list(buckets))),
            buckets: AtomicUsize::new(buckets),
            stripes: Stripes::new(),
            resize: Mutex::new(()),
            len: CachePadded::new(AtomicUsize::new(0)),
            min_buckets: buckets,
            hasher,
            weigh,
            drops_anywhere,
            rcu: rcu.clone(),
            _owns: PhantomData,
        }
    }

    /// The bytes one entry takes besides its key's and value's heap: the
    /// size of its node (key, value and link), which the map books with
    /// the weigher's bytes when it retires the entry.
    pub(crate) const NODE_SIZE: usize = std::mem::size_of::<Node<K, V>>();

    /// The domain whose grace periods protect this map.
    ///
    /// ```
    /// let map: rcu_reclaim::RcuHashMap<u8, u8> = rcu_reclaim::RcuHashMap::new();
    /// assert_eq!(map.domain().id(), rcu_reclaim::Rcu::global().id());
    /// ```
    pub fn domain(&self) -> &Rcu {
        &self.rcu
    }

    /// The number of entries (exact when no write is running).
    ///
    /// ```
    /// let map = rcu_reclaim::RcuHashMap::new();
    /// map.insert('a', 1);
    /// map.insert('a', 2);
    /// assert_eq!(map.len(), 1);
    /// ```
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Whether the map holds no entry.
    ///
    /// ```
    /// let map = rcu_reclaim::RcuHashMap::new();
    /// assert!(map.is_empty());
    /// map.insert(1, ());
    /// assert!(!map.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many entries the map holds before its table next doubles (its
    /// bucket count: the table grows past one entry per bucket).
    ///
    /// ```
    /// let map = rcu_reclaim::RcuHashMap::new();
    /// let before = map.capacity();
    /// for i in 0..=before {
    ///     map.insert(i, i);
    /// }
    /// assert_eq!(map.capacity(), 2 * before);
    /// ```
    pub fn capacity(&self) -> usize {
        self.buckets.load(Ordering::Relaxed)
    }

    /// The entries, as `(&K, &V)` in no particular order, valid while the
    /// guard and the borrow of the map last. See [`Iter`] for what a walk
    /// that runs beside writers sees.
    ///
    /// # Panics
    /// If `guard` belongs to another domain than the map.
    ///
    /// ```
    /// let map = rcu_reclaim::RcuHashMap::new();
    /// map.insert("a", 1);
    /// map.insert("b", 2);
    /// let guard = map.domain().read_lock();
    /// assert_eq!(map.iter(&guard).map(|(_, v)| v).sum::<i32>(), 3);
    /// ```
    ///
    /// The entries live no longer than the section:
    ///
    /// ```compile_fail,E0505
    /// let map = rcu_reclaim::RcuHashMap::new();
    /// map.insert(1, 1);
    /// let guard = map.domain().read_lock();
    /// let (k, v) = map.iter(&guard).next().unwrap();
    /// drop(guard); // error: cannot move out of `guard` because it is borrowed
    /// println!("{k} {v}");
    /// ```
    #[track_caller]
    pub fn iter<'g, G: ReadSection>(&'g self, guard: &'g G) -> Iter<'g, K, V> {
        self.check_guard(guard);
        let table = self
            .table
            .load(ord_for_loom("map.iter.table_acquire", Ordering::Acquire));
        // SAFETY: a table is freed only a grace period after a newer one is
        // published, and the guard's section began before this load; its
        // bucket 0 is the list's first dummy, never unlinked; the section
        // and the borrow of the map last for `'g`.
        unsafe { Iter::new((*table).bucket(0)) }
    }

    #[inline]
    #[track_caller]
    fn check_guard(&self, guard: &impl ReadSection) {
        assert!(
            guard.domain().id() == self.rcu.id(),
            "rcu-reclaim: RcuHashMap used with a guard (ReadGuard or QsbrGuard) of {} on a map of {}; \
             take the guard from map.domain().read_lock() (or the domain's QsbrThread)",
            Rcu::name_of(guard.domain().id()),
            Rcu::name_of(self.rcu.id())
        );
    }
}

impl<K, V, S> RcuHashMap<K, V, S>
where
    K: Hash + Eq,
    S: BuildHasher,
{
    /// The hash the map files `key` under (its hasher's): what the
    /// `*_hashed` calls take, so that a caller who needs the hash too (the
    /// cache, for its policy) computes it once.
    #[inline]
    pub(crate) fn hash<Q: Hash + ?Sized>(&self, key: &Q) -> u64 {
        self.hasher.hash_one(key)
    }

    /// The node holding `key`. The caller is in a read-side section of the
    /// map's domain, which keeps the node allocated.
    #[inline]
    fn find<Q>(&self, key: &Q) -> Option<NonNull<Node<K, V>>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.find_hashed(self.hash(key), key)
    }

    /// [`find`](Self::find) for a key whose [`hash`](Self::hash) the caller
    /// has.
    #[inline]
    fn find_hashed<Q>(&self, hash: u64, key: &Q) -> Option<NonNull<Node<K, V>>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        debug_assert_eq!(hash, self.hash(key), "{HASH_CHANGED}");
        let table = self.table.load(ord_for_loom(
            "map.find_hashed.table_acquire",
            Ordering::Acquire,
        ));
        // SAFETY: the caller's section began before this load, and a table
        // is freed only a grace period after a newer one is published; its
        // dummy for `hash` heads the run `hash` sorts into, and the section
        // keeps every link reachable from it allocated.
        match unsafe { list::search((*table).head(hash), key_sort(hash), key) } {
            Search::Found { node, .. } => Some(node),
            Search::Absent { .. } => None,
        }
    }

    /// The value of `key`, valid while both the guard and the borrow of
    /// the map last. Takes no lock.
    ///
    /// # Panics
    /// If `guard` belongs to another domain than the map.
    ///
    /// ```
    /// let map = rcu_reclaim::RcuHashMap::new();
    /// map.insert(String::from("k"), 1);
    /// let guard = map.domain().read_lock();
    /// assert_eq!(map.get("k", &guard), Some(&1));
    /// assert_eq!(map.get("x", &guard), None);
    /// ```
    #[inline]
    #[track_caller]
    pub fn get<'g, Q, G: ReadSection>(&'g self, key: &Q, guard: &'g G) -> Option<&'g V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.check_guard(guard);
        let node = self.find(key)?;
        // SAFETY: found inside the guard's section, freed no earlier than a
        // grace period after it is unlinked; the borrow of the map keeps it
        // from being dropped; a published value is never written.
        Some(unsafe { &(*node.as_ptr()).value })
    }

    /// The value of the first entry filed under `hash` (the map's hash of
    /// its key, as [`hash`](Self::hash) made it when the entry was
    /// written) that `is` accepts, found without calling the key's `Eq` or
    /// `Hash`: the cache looks its queued entries up by their ids, so a key
    /// whose `Eq` panics, or is not reflexive, is still found and evicted.
    /// Takes no lock.
    #[inline]
    #[track_caller]
    pub(crate) fn get_hashed_by<'g, G: ReadSection>(
        &'g self,
        hash: u64,
        mut is: impl FnMut(&V) -> bool,
        guard: &'g G,
    ) -> Option<&'g V> {
        self.check_guard(guard);
        let table = self.table.load(ord_for_loom(
            "map.get_hashed_by.table_acquire",
            Ordering::Acquire,
        ));
        // SAFETY: as in `find_hashed`.
        let found = unsafe {
            list::search_by::<K, V>((*table).head(hash), key_sort(hash), |n| is(&n.value))
        };
        match found {
            // SAFETY: as in `get`.
            Search::Found { node, .. } => Some(unsafe { &(*node.as_ptr()).value }),
            Search::Absent { .. } => None,
        }
    }

    /// [`get`](Self::get) for a key whose [`hash`](Self::hash) the caller
    /// has (the cache's policy keeps its keys' hashes).
    #[inline]
    #[track_caller]
    pub(crate) fn get_hashed<'g, Q, G: ReadSection>(
        &'g self,
        hash: u64,
        key: &Q,
        guard: &'g G,
    ) -> Option<&'g V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.check_guard(guard);
        let node = self.find_hashed(hash, key)?;
        // SAFETY: as in `get`.
        Some(unsafe { &(*node.as_ptr()).value })
    }

    /// Whether the map holds `key`. Takes no lock.
    ///
    /// # Panics
    /// If `guard` belongs to another domain than the map.
    ///
    /// ```
    /// let map = rcu_reclaim::RcuHashMap::new();
    /// map.insert(3, "three");
    /// let guard = map.domain().read_lock();
    /// assert!(map.contains_key(&3, &guard));
    /// ```
    #[inline]
    #[track_caller]
    pub fn contains_key<Q, G: ReadSection>(&self, key: &Q, guard: &G) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.check_guard(guard);
        self.find(key).is_some()
    }
}

/// An empty map of the global domain, with the hasher's default (as
/// `HashMap`'s `Default`).
///
/// ```
/// use std::hash::{BuildHasherDefault, DefaultHasher};
/// let map: rcu_reclaim::RcuHashMap<u32, String> = Default::default();
/// assert!(map.is_empty());
/// let fixed: rcu_reclaim::RcuHashMap<u32, u32, BuildHasherDefault<DefaultHasher>> =
///     Default::default();
/// assert!(fixed.is_empty());
/// ```
#[cfg(not(loom))]
impl<K: ReclaimSize, V: ReclaimSize, S: Default> Default for RcuHashMap<K, V, S> {
    fn default() -> Self {
        Self::with_hasher(S::default())
    }
}

/// A map of the global domain holding the pairs (a later pair replaces an
/// earlier one of the same key, as in `HashMap`), for a table built at
/// start-up; for a map of another domain, [`new_in`](RcuHashMap::new_in)
/// then [`extend`](Extend::extend).
///
/// ```
/// use std::net::Ipv4Addr;
/// use rcu_reclaim::RcuHashMap;
/// let routes: RcuHashMap<Ipv4Addr, &str> = [
///     (Ipv4Addr::new(10, 0, 0, 1), "eth0"),
///     (Ipv4Addr::new(10, 0, 0, 2), "eth1"),
/// ]
/// .into_iter()
/// .collect();
/// assert_eq!(routes.len(), 2);
///
/// // With another hasher, as `HashMap` collects with one (its `Default`):
/// use std::hash::{BuildHasherDefault, DefaultHasher};
/// let fixed: RcuHashMap<u8, u8, BuildHasherDefault<DefaultHasher>> =
///     (0..10u8).map(|i| (i, i)).collect();
/// assert_eq!(fixed.len(), 10);
/// ```
#[cfg(not(loom))]
impl<K, V, S> FromIterator<(K, V)> for RcuHashMap<K, V, S>
where
    K: ReclaimSize + Hash + Eq + Send + 'static,
    V: ReclaimSize + Send + 'static,
    S: BuildHasher + Default,
{
    fn from_iter<I: IntoIterator<Item = (K, V)>>(pairs: I) -> Self {
        let mut map = Self::with_hasher(S::default());
        map.extend(pairs);
        map
    }
}

/// Inserts each pair, as [`insert`](RcuHashMap::insert) does (a replaced
/// value is freed after a grace period). `insert` takes `&self`, so a map
/// shared between threads is filled with a loop of `insert`s instead.
///
/// ```
/// use rcu_reclaim::{Config, Rcu, RcuHashMap};
/// let rcu = Rcu::new(Config::new()).unwrap();
/// let mut map = RcuHashMap::new_in(&rcu);
/// map.extend((0..100u32).map(|i| (i, i * 2)));
/// assert_eq!(map.get(&7, &rcu.read_lock()), Some(&14));
/// ```
impl<K, V, S> Extend<(K, V)> for RcuHashMap<K, V, S>
where
    K: Hash + Eq + Send + 'static,
    V: Send + 'static,
    S: BuildHasher,
{
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, pairs: I) {
        for (key, value) in pairs {
            self.insert(key, value);
        }
    }
}

impl<K, V, S> Drop for RcuHashMap<K, V, S> {
    fn drop(&mut self) {
        let table = self.table.load(Ordering::Relaxed);
        // SAFETY: dropping needs ownership, and every reference a lookup
        // returned borrows the map, so no reader or writer is left. The
        // list holds every live entry and dummy once (retired ones were
        // unlinked and are the domain's); the table came from `Box::into_raw`.
        /// Frees the current table's dummies after the entries, even if
        /// an entry's drop unwinds.
        struct Levels(Box<Table>);
        impl Drop for Levels {
            fn drop(&mut self) {
                // SAFETY: the map is being dropped and this is its current
                // table, whose levels hold exactly the list's dummies.
                unsafe { self.0.free_levels() }
            }
        }
        unsafe {
            let table = Levels(Box::from_raw(table));
            list::free_all::<K, V>(table.0.bucket(0));
        }
    }
}

impl<K: fmt::Debug, V: fmt::Debug, S> fmt::Debug for RcuHashMap<K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let guard = self.rcu.read_lock();
        f.debug_map().entries(self.iter(&guard)).finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::domain::Config;
    use std::mem::size_of;

    fn map() -> (Rcu, RcuHashMap<u64, u64>) {
        let rcu = Rcu::new(Config::new().on_demand()).unwrap();
        let map = RcuHashMap::new_in(&rcu);
        (rcu, map)
    }

    #[test]
    fn grows_and_shrinks_back_to_its_initial_size() {
        let (rcu, map) = map();
        let initial = map.capacity();
        for i in 0..10 * initial as u64 {
            map.insert(i, i);
        }
        assert!(map.capacity() >= 10 * initial);
        {
            let guard = rcu.read_lock();
            for i in 0..10 * initial as u64 {
                assert_eq!(map.get(&i, &guard), Some(&i));
            }
            assert_eq!(map.iter(&guard).count(), 10 * initial);
        }
        for i in 0..10 * initial as u64 {
            assert!(map.remove(&i));
        }
        assert_eq!(map.capacity(), initial);
        assert!(map.is_empty());
        drop(map);
        rcu.barrier();
        assert_eq!(rcu.pending_bytes(), 0);
    }

    #[test]
    fn an_entry_books_its_node_and_its_heap() {
        let rcu = Rcu::new(Config::new().on_demand()).unwrap();
        let map: RcuHashMap<String, Vec<u8>> = RcuHashMap::new_in(&rcu);
        map.insert("key".into(), vec![0; 1000]);
        let (k, v) = {
            let g = rcu.read_lock();
            let (k, v) = map.iter(&g).next().unwrap();
            (k.capacity(), v.capacity())
        };
        map.remove("key");
        assert_eq!(
            rcu.pending_bytes(),
            size_of::<Node<String, Vec<u8>>>() + k + v
        );
        rcu.barrier();
    }

    #[test]
    fn a_guard_of_another_domain_panics() {
        let (_rcu, map) = map();
        let other = Rcu::new(Config::new()).unwrap();
        let guard = other.read_lock();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| map.get(&1, &guard)));
        assert!(r.is_err());
    }
}
