//! Headless deferred drops in page-sized bulk arrays (the kernel's
//! `kvfree_rcu_bulk_data`): two words per object — its pointer and its drop
//! function — and no allocation per object. Callbacks queued with `call`
//! ride in the same pages: a closure no larger than a pointer is stored in
//! the entry's first word, with a function that runs it; a larger one is
//! boxed and the entry holds the box.
//!
//! Each thread fills a page of its own (its `LocalBuffer`, in `local.rs`).
//! A full or stolen page is sealed with a
//! grace-period cookie and handed to a shard; once the cookie completes, the
//! objects are dropped straight from the page, without a callback.

use crate::sync::run_each_caught;
use std::alloc::Layout;
use std::mem::MaybeUninit;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};

use std::sync::Arc;

/// Bytes in one bulk page.
///
/// ```
/// // One page holds a few hundred deferred drops (a pointer and a function each).
/// assert_eq!(rcu_reclaim::pages::BULK_PAGE_SIZE, 4096);
/// ```
pub const BULK_PAGE_SIZE: usize = 4096;

/// A page entry's word: the object's pointer, or a small callback's
/// captures stored inline (`Rcu::call`), whose bytes need not all be
/// initialised (padding), hence `MaybeUninit`.
pub(crate) type Word = MaybeUninit<*mut ()>;

/// What a page entry is, which says where it may run and how it is counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A value that drops anywhere (`drops_anywhere`): dropping it takes
    /// no lock and waits for nothing, so a retiring thread may do it.
    Plain,
    /// A value whose drop may take a lock: run by a worker, or by a thread
    /// at its safe point (`collect`), as callbacks are.
    Drop,
    /// A callback queued with `call` whose captures fit in the word: run as
    /// `Drop` values are, and counted as a callback.
    Call,
}

impl Kind {
    /// `Plain` when `plain`, else `Drop`.
    #[inline]
    pub(crate) fn of(plain: bool) -> Kind {
        if plain {
            Kind::Plain
        } else {
            Kind::Drop
        }
    }
}

/// One deferred drop: the object and the function that drops it.
#[derive(Clone, Copy)]
pub(crate) struct Deferred {
    ptr: Word,
    drop: unsafe fn(Word),
}

impl Deferred {
    /// Drops the object.
    ///
    /// # Safety
    /// As [`BulkPage::push`]'s contract: its grace period has elapsed, and
    /// this entry is run once (it has left every page).
    pub(crate) unsafe fn run(self) {
        // SAFETY: per the contract.
        unsafe { (self.drop)(self.ptr) }
    }
}

const HEADER: usize = 2 * std::mem::size_of::<usize>();
const CAPACITY: usize = (BULK_PAGE_SIZE - HEADER) / std::mem::size_of::<Deferred>();

#[repr(C)]
struct PageData {
    len: usize,
    bytes: usize,
    entries: [MaybeUninit<Deferred>; CAPACITY],
}

const _: () = assert!(std::mem::size_of::<PageData>() <= BULK_PAGE_SIZE);

/// Where bulk pages come from. Inject one with
/// [`Config::page_allocator`](crate::Config::page_allocator) to observe or
/// fail page allocations: when it returns `None`, `defer_drop` falls back to
/// waiting for a grace period and dropping at once, `call` to queueing its
/// callback on the shard, and `try_defer_drop` hands the object back.
/// `allocate` runs on a retiring thread inside its buffer's lock; a retire
/// it makes into the same domain on that thread takes the same fallback.
///
/// # Safety
/// The library writes deferred drops into the pages it is given, so an
/// implementation must return from `allocate` either `None` or a pointer to
/// memory valid for reads and writes of `layout.size()` bytes, aligned to
/// `layout.align()`, used by nothing else until it is passed back to
/// `deallocate` (as [`GlobalAlloc`](std::alloc::GlobalAlloc) promises).
/// Forwarding to another allocator, as below, keeps that promise. A safe
/// `impl` is refused, so safe code cannot hand the library a dangling page:
///
/// ```compile_fail,E0200
/// use std::{alloc::Layout, ptr::NonNull};
/// struct Dangling;
/// impl rcu_reclaim::pages::PageAllocator for Dangling {
///     fn allocate(&self, _: Layout) -> Option<NonNull<u8>> { Some(NonNull::dangling()) }
///     unsafe fn deallocate(&self, _: NonNull<u8>, _: Layout) {}
/// }
/// ```
///
/// ```
/// use std::alloc::Layout;
/// use std::ptr::NonNull;
/// use rcu_reclaim::pages::{PageAllocator, SystemPageAllocator};
/// /// Never has memory: every deferred drop takes the fallback.
/// struct NoPages;
/// // SAFETY: `allocate` never returns memory.
/// unsafe impl PageAllocator for NoPages {
///     fn allocate(&self, _layout: Layout) -> Option<NonNull<u8>> { None }
///     unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
///         // SAFETY: never called, since `allocate` never succeeds.
///         unsafe { SystemPageAllocator.deallocate(ptr, layout) }
///     }
/// }
/// ```
pub unsafe trait PageAllocator: Send + Sync + 'static {
    /// Memory for one page of `layout`, or `None` when none can be had.
    fn allocate(&self, layout: Layout) -> Option<NonNull<u8>>;

    /// Returns a page.
    ///
    /// # Safety
    /// `ptr` came from `allocate` on this allocator with the same `layout`
    /// and is not used afterwards.
    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout);
}

/// Pages from the global allocator (the default).
///
/// ```
/// use std::alloc::Layout;
/// use rcu_reclaim::pages::{PageAllocator, SystemPageAllocator};
/// let layout = Layout::from_size_align(4096, 8).unwrap();
/// let p = SystemPageAllocator.allocate(layout).unwrap();
/// // SAFETY: `p` came from `allocate` with `layout`.
/// unsafe { SystemPageAllocator.deallocate(p, layout) };
/// // A zero-sized layout has no memory to give (the global allocator
/// // must never be asked for one).
/// assert!(SystemPageAllocator.allocate(Layout::new::<()>()).is_none());
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemPageAllocator;

// SAFETY: pages come from the global allocator with the layout asked for.
unsafe impl PageAllocator for SystemPageAllocator {
    fn allocate(&self, layout: Layout) -> Option<NonNull<u8>> {
        // A safe call: anyone may ask for a zero-sized layout, which the
        // global allocator must never be given.
        if layout.size() == 0 {
            return None;
        }
        // SAFETY: the layout's size is not zero (checked above).
        NonNull::new(unsafe { std::alloc::alloc(layout) })
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: the caller guarantees `ptr` came from `alloc(layout)`.
        unsafe { std::alloc::dealloc(ptr.as_ptr(), layout) }
    }
}

/// One page of deferred drops.
pub(crate) struct BulkPage {
    data: NonNull<PageData>,
    alloc: Arc<dyn PageAllocator>,
    /// Grace-period sequence value after which the objects may be dropped
    /// (set when the page is sealed).
    pub(crate) cookie: u64,
    /// Every object on the page drops anywhere (no drop glue, or its type
    /// declares `ReclaimSize::DROPS_ANYWHERE`): dropping them takes no lock
    /// and waits for nothing, so a retiring thread may do it.
    plain: bool,
    /// How many of the entries are callbacks (`Kind::Call`).
    calls: usize,
}

// SAFETY: the page owns its objects, which are all `Send` (enforced by
// `defer_drop`'s bounds); the raw pointers are only dereferenced by whoever
// holds the page.
unsafe impl Send for BulkPage {}

impl BulkPage {
    fn layout() -> Layout {
        Layout::new::<PageData>()
    }

    /// A fresh, empty page, or `None` if the allocator has none.
    pub(crate) fn allocate(alloc: &Arc<dyn PageAllocator>) -> Option<BulkPage> {
        let p = alloc.allocate(Self::layout())?.cast::<PageData>();
        // SAFETY: `p` is a fresh allocation of `PageData`'s layout; the
        // header is initialised here and the entries are `MaybeUninit`.
        unsafe {
            std::ptr::addr_of_mut!((*p.as_ptr()).len).write(0);
            std::ptr::addr_of_mut!((*p.as_ptr()).bytes).write(0);
        }
        Some(BulkPage {
            data: p,
            alloc: alloc.clone(),
            cookie: 0,
            plain: true,
            calls: 0,
        })
    }

    fn data(&self) -> &PageData {
        // SAFETY: `data` is a live allocation owned by this page.
        unsafe { self.data.as_ref() }
    }

    pub(crate) fn len(&self) -> usize {
        self.data().len
    }

    pub(crate) fn bytes(&self) -> usize {
        self.data().bytes
    }

    /// How many entries are callbacks queued with `call` (the rest are
    /// deferred drops).
    pub(crate) fn calls(&self) -> usize {
        self.calls
    }

    pub(crate) fn is_full(&self) -> bool {
        // `>=`, not `==` (never more): the push's index check after it
        // then folds into this one.
        self.len() >= CAPACITY
    }

    /// Whether dropping the page's objects takes no lock and waits for
    /// nothing (every one was pushed as `plain`).
    pub(crate) fn is_plain(&self) -> bool {
        self.plain
    }

    /// Marks the page as one no thread takes into its drain (as if one of
    /// its objects did not drop anywhere): only a worker or a thread holding
    /// its shard's `invoke` lock frees it. For what is left of a drain taken
    /// from its thread, which a `barrier` must find on its shard.
    pub(crate) fn keep_off_drains(&mut self) {
        self.plain = false;
    }

    /// Records `ptr` for dropping with `drop`; `kind` says where it may run
    /// (a `Kind::Plain` entry takes no lock and waits for nothing, so a
    /// retiring thread may run it) and how it is counted. The page must not
    /// be full.
    ///
    /// # Safety
    /// `drop(ptr)` must be sound to call exactly once, on any thread, after
    /// a grace period (`kind` affects only where it runs, not soundness).
    #[inline(always)]
    pub(crate) unsafe fn push(
        &mut self,
        ptr: Word,
        drop: unsafe fn(Word),
        bytes: usize,
        kind: Kind,
    ) {
        self.plain &= kind == Kind::Plain;
        // SAFETY: the page is owned by `self`; `len < CAPACITY` per the contract.
        let d = unsafe { self.data.as_mut() };
        debug_assert!(d.len < CAPACITY);
        d.entries[d.len] = MaybeUninit::new(Deferred { ptr, drop });
        d.len += 1;
        d.bytes += bytes;
        if kind == Kind::Call {
            self.calls += 1;
        }
    }

    /// Moves every object of `other` to the end of this page, leaving
    /// `other` empty: for two ready pages of values that drop anywhere
    /// (no callbacks) whose objects fit in one. The objects' grace periods
    /// have elapsed, so this page's cookie (the earlier) stays.
    pub(crate) fn absorb(&mut self, other: &mut BulkPage) {
        // SAFETY: both pages are owned (`&mut`), and distinct allocations.
        let (d, o) = unsafe { (self.data.as_mut(), other.data.as_mut()) };
        assert!(
            d.len + o.len <= CAPACITY && self.calls == 0 && other.calls == 0,
            "absorb: pages of plain objects that fit in one"
        );
        // Entries below `len` are initialised; copied, then forgotten on
        // `other` (its `len` set to 0), so each is dropped once.
        d.entries[d.len..d.len + o.len].copy_from_slice(&o.entries[..o.len]);
        d.len += o.len;
        d.bytes += o.bytes;
        self.plain &= other.plain;
        o.len = 0;
        o.bytes = 0;
        other.plain = true;
    }

    /// Entries `range` (below `len`), still on the page.
    pub(crate) fn entries(&self, range: std::ops::Range<usize>) -> &[Deferred] {
        let d = self.data();
        let init = &d.entries[..d.len];
        let part = &init[range];
        // SAFETY: entries below `len` were initialised by `push`, and
        // `MaybeUninit<Deferred>` has `Deferred`'s layout.
        unsafe { &*(part as *const [MaybeUninit<Deferred>] as *const [Deferred]) }
    }

    /// Forgets the first `done` objects (a drain has dropped them) and moves
    /// the rest to the front; returns the objects and bytes forgotten. A
    /// page does not record each object's bytes: a part gets its share of
    /// them (all of them when `done` is every object), so the parts of a
    /// page always add up to its bytes.
    pub(crate) fn forget_front(&mut self, done: usize) -> (usize, usize) {
        // SAFETY: the page is owned by `self`.
        let d = unsafe { self.data.as_mut() };
        let done = done.min(d.len);
        let bytes = if done == d.len {
            d.bytes
        } else {
            (d.bytes as u128 * done as u128 / d.len as u128) as usize
        };
        d.entries.copy_within(done..d.len, 0);
        d.len -= done;
        d.bytes -= bytes;
        // Only plain pages are drained, and they hold no callbacks.
        debug_assert_eq!(self.calls, 0);
        if d.len == 0 {
            self.plain = true;
        }
        (done, bytes)
    }

    /// Drops every object (its grace period has elapsed), calling
    /// `starting` before each (the runner's progress mark), handing the
    /// message of each drop function that panicked to `on_panic`; returns
    /// how many panicked. The page is empty afterwards.
    pub(crate) fn drop_objects_with(
        &mut self,
        starting: impl Fn(),
        on_panic: &mut dyn FnMut(Option<String>),
    ) -> usize {
        // SAFETY: the page is owned by `self`.
        let d = unsafe { self.data.as_mut() };
        let panics = run_each_caught(
            d.entries[..d.len].iter(),
            |e| {
                starting();
                // SAFETY: entries below `len` were initialised by `push`;
                // per `push`'s contract the grace period has elapsed, and
                // each entry is dropped once (`run_each_caught` runs each
                // once; len is reset below).
                unsafe { e.assume_init().run() }
            },
            on_panic,
        );
        d.len = 0;
        d.bytes = 0;
        self.calls = 0;
        self.plain = true;
        panics
    }

    /// [`drop_objects_with`](Self::drop_objects_with), discarding panic
    /// payloads (for pages no domain reports on: tests and fork children).
    #[cfg(test)]
    pub(crate) fn drop_objects(&mut self) -> usize {
        self.drop_objects_with(|| {}, &mut |_| {})
    }
}

impl Drop for BulkPage {
    fn drop(&mut self) {
        // Objects still on the page are leaked rather than dropped early;
        // every path that discards a page empties it first.
        if self.len() != 0 {
            crate::sys::error_loud(&format!(
                "rcu-reclaim: a bulk page was discarded with {} objects on it; they are leaked",
                self.len()
            ));
        }
        // SAFETY: `data` came from `self.alloc` with this layout.
        unsafe { self.alloc.deallocate(self.data.cast(), Self::layout()) };
    }
}

/// Drops a `Box<T>` from its raw pointer.
///
/// # Safety
/// `p` holds a pointer from `Box::<T>::into_raw`, not used afterwards.
pub(crate) unsafe fn drop_box<T>(p: Word) {
    // SAFETY: per the contract (an initialised pointer from `into_raw`).
    drop(unsafe { Box::from_raw(p.assume_init().cast::<T>()) });
}

/// A pointer as a page entry's word.
#[inline]
pub(crate) fn word(p: *mut ()) -> Word {
    MaybeUninit::new(p)
}

/// Whether a callback of type `F` fits in a page entry's word (its size and
/// alignment at most a pointer's), so `call` stores it inline.
const fn fits_word<F>() -> bool {
    std::mem::size_of::<F>() <= std::mem::size_of::<Word>()
        && std::mem::align_of::<F>() <= std::mem::align_of::<Word>()
}

/// A callback as a page entry (`Kind::Call`): the word and the function
/// that runs what it holds once. A closure that fits in the word
/// (`fits_word`: one `Box`, `Arc` or reference, or none) is stored in it;
/// a larger one is boxed and the word holds the box. Take it back, if the
/// entry is never pushed, with [`call_back`].
#[inline]
pub(crate) fn call_entry<F: FnOnce() + Send + 'static>(f: F) -> (Word, unsafe fn(Word)) {
    if fits_word::<F>() {
        let mut w = Word::uninit();
        // SAFETY: `F` fits in the word's size and alignment, and the word
        // is ours to write.
        unsafe { w.as_mut_ptr().cast::<F>().write(f) };
        (w, run_word::<F>)
    } else {
        (word(Box::into_raw(Box::new(f)).cast()), run_box::<F>)
    }
}

/// The callback of an entry from [`call_entry::<F>`](call_entry) that was
/// not pushed, boxed.
///
/// # Safety
/// `w` came from `call_entry::<F>` and is used once, here, instead of
/// running it.
#[inline]
pub(crate) unsafe fn call_back<F: FnOnce() + Send + 'static>(w: Word) -> Box<dyn FnOnce() + Send> {
    if fits_word::<F>() {
        // SAFETY: per the contract, the word holds an `F`, read once.
        Box::new(unsafe { w.as_ptr().cast::<F>().read() })
    } else {
        // SAFETY: per the contract, the word holds the pointer from
        // `Box::into_raw`.
        unsafe { Box::from_raw(w.assume_init().cast::<F>()) }
    }
}

/// Runs the callback stored in `w` (a page entry of `Kind::Call`).
///
/// # Safety
/// `w` came from `call_entry::<F>` for an `F` that fits in it, and is run
/// once; `F` is `Send`, so any thread may run it.
unsafe fn run_word<F: FnOnce()>(w: Word) {
    // SAFETY: per the contract, the word holds an `F`, read once.
    let f = unsafe { w.as_ptr().cast::<F>().read() };
    f();
}

/// Runs the boxed callback whose pointer `w` holds (a page entry of
/// `Kind::Call` too large for the word).
///
/// # Safety
/// `w` holds a pointer from `Box::<F>::into_raw`, not used afterwards.
unsafe fn run_box<F: FnOnce()>(w: Word) {
    // SAFETY: per the contract (an initialised pointer from `into_raw`).
    let f = unsafe { Box::from_raw(w.assume_init().cast::<F>()) };
    f();
}

/// Adds `n` to a counter only one thread writes at a time.
#[inline]
pub(crate) fn bump_relaxed(c: &AtomicUsize, n: usize) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

/// Page capacity in objects.
pub(crate) const fn capacity() -> usize {
    CAPACITY
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    static DROPS: AtomicUsize = AtomicUsize::new(0);
    struct Counted;
    impl Drop for Counted {
        fn drop(&mut self) {
            DROPS.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// `allocate` is a safe method of a public type: a zero-sized layout
    /// went to `std::alloc::alloc`, which is undefined behaviour (Miri:
    /// "creating allocation with size 0"; glibc's `malloc(0)` hands back a
    /// pointer that the caller then could not use).
    #[test]
    fn the_system_page_allocator_refuses_a_zero_sized_layout() {
        for align in [1, 8, 4096] {
            let layout = Layout::from_size_align(0, align).unwrap();
            assert!(SystemPageAllocator.allocate(layout).is_none());
        }
        let page = Layout::from_size_align(BULK_PAGE_SIZE, 8).unwrap();
        let p = SystemPageAllocator.allocate(page).unwrap();
        // SAFETY: from `allocate` with the same layout, not used again.
        unsafe { SystemPageAllocator.deallocate(p, page) };
    }

    #[test]
    fn a_page_holds_two_words_per_object_and_drops_them_once() {
        assert_eq!(
            std::mem::size_of::<Deferred>(),
            2 * std::mem::size_of::<usize>()
        );
        assert!(capacity() >= 250);
        let alloc: Arc<dyn PageAllocator> = Arc::new(SystemPageAllocator);
        let mut page = BulkPage::allocate(&alloc).unwrap();
        for _ in 0..capacity() {
            let p = word(Box::into_raw(Box::new(Counted)).cast::<()>());
            // SAFETY: `p` is from `Box::into_raw` and dropped once below.
            unsafe { page.push(p, drop_box::<Counted>, 1, Kind::Drop) };
        }
        assert!(page.is_full());
        assert_eq!(page.bytes(), capacity());
        let before = DROPS.load(Ordering::SeqCst);
        assert_eq!(page.drop_objects(), 0);
        assert_eq!(DROPS.load(Ordering::SeqCst) - before, capacity());
        assert_eq!(page.len(), 0);
    }

    /// A page of callbacks stored in their words (none captured; a padded
    /// pair; a `Box`) and boxed (larger than a word) beside a deferred
    /// drop: each runs once, with what it captured, and the page counts
    /// its callbacks.
    #[test]
    fn callbacks_ride_in_a_page_inline_or_boxed() {
        static RAN: AtomicUsize = AtomicUsize::new(0);
        fn push_call<F: FnOnce() + Send + 'static>(page: &mut BulkPage, f: F) {
            let (w, run) = call_entry(f);
            // SAFETY: `run` runs the callback `call_entry` stored once (below).
            unsafe { page.push(w, run, 0, Kind::Call) };
        }
        let alloc: Arc<dyn PageAllocator> = Arc::new(SystemPageAllocator);
        let mut page = BulkPage::allocate(&alloc).unwrap();
        let pair = (7u8, 0x1234_5678u32); // 3 bytes of padding
        let boxed = Box::new(41u64);
        let big = [3u64; 4];
        assert!(fits_word::<fn()>() && !fits_word::<[u64; 4]>());
        push_call(&mut page, || {
            RAN.fetch_add(1, Ordering::SeqCst);
        });
        push_call(&mut page, move || {
            let p = std::hint::black_box(pair);
            assert_eq!(p, (7, 0x1234_5678));
            RAN.fetch_add(1, Ordering::SeqCst);
        });
        push_call(&mut page, move || {
            assert_eq!(*boxed + 1, 42);
            RAN.fetch_add(1, Ordering::SeqCst);
        });
        push_call(&mut page, move || {
            assert_eq!(big.iter().sum::<u64>(), 12);
            RAN.fetch_add(1, Ordering::SeqCst);
        });
        // A value of its own (the other test counts `Counted` drops).
        struct Value;
        impl Drop for Value {
            fn drop(&mut self) {
                RAN.fetch_add(100, Ordering::SeqCst);
            }
        }
        let p = word(Box::into_raw(Box::new(Value)).cast());
        // SAFETY: from `Box::into_raw`, dropped once below.
        unsafe { page.push(p, drop_box::<Value>, 8, Kind::Drop) };
        assert_eq!((page.len(), page.calls(), page.bytes()), (5, 4, 8));
        assert!(!page.is_plain());
        assert_eq!(page.drop_objects(), 0);
        assert_eq!(RAN.load(Ordering::SeqCst), 104, "four callbacks and a drop");
        assert_eq!((page.len(), page.calls()), (0, 0));
        assert!(page.is_plain());
    }
}
