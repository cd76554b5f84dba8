//! What a cache stores per key, and how it weighs it.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

use super::policy::MAX_FREQ;
use crate::size::ReclaimSize;

/// The value of a cache's map: the user's value, the id that names this
/// insertion (a replacement gets a new one), its weight, and the
/// frequency readers raise.
pub(crate) struct Entry<V> {
    pub(crate) value: V,
    pub(crate) id: u64,
    /// Bytes accounted to the entry: its map node plus `heap`.
    pub(crate) weight: usize,
    /// The weigher's bytes: what the map books besides the node.
    pub(crate) heap: usize,
    freq: AtomicU8,
}

/// Ids a thread takes from the shared counter at a time.
const ID_BLOCK: u64 = 1 << 10;

/// A new entry id, unique in the process: each thread hands out ids from
/// a block of [`ID_BLOCK`] it takes from one shared counter, so an insert
/// writes no shared cache line for its id.
pub(crate) fn fresh_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    thread_local! {
        /// This thread's next id and the end of its block.
        static BLOCK: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
    }
    BLOCK
        .try_with(|b| {
            let (mut next, mut end) = b.get();
            if next == end {
                next = NEXT.fetch_add(ID_BLOCK, Ordering::Relaxed);
                end = next + ID_BLOCK;
            }
            b.set((next + 1, end));
            next
        })
        // A thread past its TLS teardown takes one id at a time.
        .unwrap_or_else(|_| NEXT.fetch_add(1, Ordering::Relaxed))
}

impl<V> Entry<V> {
    pub(crate) fn new(value: V, id: u64, heap: usize, node: usize) -> Self {
        Entry {
            value,
            id,
            weight: node.saturating_add(heap),
            heap,
            freq: AtomicU8::new(0),
        }
    }

    /// A reader's hit: one relaxed load, and a relaxed store only while
    /// the counter is below its cap (a hot entry's line stays shared).
    /// Racing hits may count once; the policy needs no more.
    #[inline]
    pub(crate) fn touch(&self) {
        let f = self.freq.load(Ordering::Relaxed);
        if f < MAX_FREQ {
            self.freq.store(f + 1, Ordering::Relaxed);
        }
    }

    pub(crate) fn freq(&self) -> u8 {
        self.freq.load(Ordering::Relaxed)
    }

    pub(crate) fn set_freq(&self, f: u8) {
        self.freq.store(f, Ordering::Relaxed);
    }
}

/// The map's weigher for entries: the bytes the cache's weigher gave.
pub(crate) fn entry_heap<K, V>(_: &K, entry: &Entry<V>) -> usize {
    entry.heap
}

/// How an [`RcuCache`](super::RcuCache) weighs an entry: the bytes its key
/// and value own beyond their inline size (the cache adds its per-entry
/// overhead, [`RcuCache::ENTRY_OVERHEAD`](super::RcuCache::ENTRY_OVERHEAD)).
/// [`HeapSize`], the default, asks [`ReclaimSize`]; any
/// `Fn(&K, &V) -> usize + Send + Sync` closure is one too (see
/// [`RcuCacheBuilder::weigher`](super::RcuCacheBuilder::weigher)).
///
/// ```
/// use rcu_reclaim::cache::{HeapSize, Weigher};
/// let body = vec![0u8; 4096];
/// assert_eq!(HeapSize.weigh(&String::from("key"), &body), 3 + 4096);
/// let by_len = |_: &u32, v: &Vec<u8>| v.len();
/// assert_eq!(by_len.weigh(&1, &body), 4096);
/// ```
pub trait Weigher<K, V>: Send + Sync + 'static {
    /// The heap bytes of `key` and `value`.
    ///
    /// ```
    /// use rcu_reclaim::cache::Weigher;
    /// struct Fixed;
    /// impl Weigher<u32, [u8; 16]> for Fixed {
    ///     fn weigh(&self, _: &u32, _: &[u8; 16]) -> usize {
    ///         0 // all inline: only the entry's overhead counts
    ///     }
    /// }
    /// assert_eq!(Fixed.weigh(&1, &[0; 16]), 0);
    /// ```
    fn weigh(&self, key: &K, value: &V) -> usize;

    /// Whether dropping a key and a value takes no lock and waits for
    /// nothing ([`ReclaimSize::DROPS_ANYWHERE`]): the cache's writers then
    /// free evicted entries themselves once their grace period has passed,
    /// where they were allocated, instead of a worker on another core.
    /// By default only when neither has drop glue; [`HeapSize`] says it
    /// when the key and value types do.
    ///
    /// ```
    /// use rcu_reclaim::cache::{HeapSize, Weigher};
    /// assert!(Weigher::<u64, Vec<u8>>::drops_anywhere(&HeapSize));
    /// let by_len = |_: &u32, v: &Vec<u8>| v.len();
    /// assert!(!by_len.drops_anywhere());
    /// ```
    fn drops_anywhere(&self) -> bool {
        !std::mem::needs_drop::<K>() && !std::mem::needs_drop::<V>()
    }
}

/// The default [`Weigher`]: `key.heap_size() + value.heap_size()`
/// ([`ReclaimSize::heap_size`]).
///
/// ```
/// use rcu_reclaim::cache::{HeapSize, Weigher};
/// assert_eq!(HeapSize.weigh(&7u64, &String::with_capacity(100)), 100);
/// ```
///
/// Keys and values that hold an `Arc`, an `Rc` or a `Weak` ([`ReclaimSize::SHARED`])
/// are refused at compile time: `ReclaimSize` counts such a pointer, not
/// the memory behind it, so the cache's byte capacity would bound nothing.
/// (`cargo build` reports it, E0080, as the cache's code is generated;
/// `cargo check` does not, and the error points into this crate: its
/// message names the weigher to write.) Such a cache names its weight,
/// with a closure that names both parameter types (`|_key, v: &Arc<..>|`
/// leaves the key's lifetime to inference, and the compiler answers
/// "implementation of `FnOnce` is not general enough"):
///
/// ```compile_fail
/// use std::sync::Arc;
/// let cache = rcu_reclaim::RcuCache::builder().max_bytes(8 << 20).build();
/// cache.insert(1u64, Arc::new(vec![0u8; 256 << 10])); // error: weighed by its pointer
/// ```
///
/// ```
/// use std::sync::Arc;
/// let cache = rcu_reclaim::RcuCache::builder()
///     .max_bytes(8 << 20)
///     .weigher(|_: &u64, v: &Arc<Vec<u8>>| v.len())
///     .build();
/// for k in 0..100 {
///     cache.insert(k, Arc::new(vec![0u8; 256 << 10]));
/// }
/// assert!(cache.bytes() <= 8 << 20);
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct HeapSize;

impl<K: ReclaimSize, V: ReclaimSize> Weigher<K, V> for HeapSize {
    fn drops_anywhere(&self) -> bool {
        crate::drops_anywhere::<K>() && crate::drops_anywhere::<V>()
    }
    fn weigh(&self, key: &K, value: &V) -> usize {
        const {
            assert!(
                !K::SHARED && !V::SHARED,
                "rcu-reclaim: an RcuCache whose keys or values hold an Arc or Rc cannot be \
                 weighed by ReclaimSize, which counts such a pointer and not the memory it keeps \
                 alive (the byte capacity would bound nothing); give the builder a weigher that \
                 counts it, naming both parameter types (the key's too, or the closure is not \
                 general enough), e.g. RcuCache::builder().weigher(|_: &u64, value: \
                 &Arc<Vec<u8>>| value.len())"
            )
        };
        key.heap_size().saturating_add(value.heap_size())
    }
}

impl<K, V, F> Weigher<K, V> for F
where
    F: Fn(&K, &V) -> usize + Send + Sync + 'static,
{
    fn weigh(&self, key: &K, value: &V) -> usize {
        self(key, value)
    }
}
