//! Headless deferred drops in page-sized bulk arrays (the kernel's
//! `kvfree_rcu_bulk_data`): two words per object — its pointer and its drop
//! function — and no allocation per object.
//!
//! Each thread fills a page of its own ([`LocalBuffer`], kept in its reader
//! slot) without atomic read-modify-writes: the owner marks itself busy with
//! a plain store and a compiler fence, as a reader marks a section, and a
//! thread that wants the page (barrier, the grace-period thread's lazy
//! flush, domain drop) raises `steal`, issues the writer's barrier and waits
//! for the owner to leave. A full or stolen page is sealed with a
//! grace-period cookie and handed to a shard; once the cookie completes, the
//! objects are dropped straight from the page, without a callback.

use std::alloc::Layout;
use std::mem::MaybeUninit;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::NonNull;
use std::sync::atomic::{compiler_fence, AtomicUsize, Ordering};

use crate::flavor::Flavor;
use std::sync::Arc;

use crate::sync::{fence, lock, AtomicBool, Mutex, UnsafeCell};

/// Bytes in one bulk page.
pub const BULK_PAGE_SIZE: usize = 4096;

#[derive(Clone, Copy)]
struct Deferred {
    ptr: *mut (),
    drop: unsafe fn(*mut ()),
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
/// waiting for a grace period and dropping at once, and `try_defer_drop`
/// hands the object back.
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
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemPageAllocator;

// SAFETY: pages come from the global allocator with the layout asked for.
unsafe impl PageAllocator for SystemPageAllocator {
    fn allocate(&self, layout: Layout) -> Option<NonNull<u8>> {
        // SAFETY: the layout has a non-zero size (a page).
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

    pub(crate) fn is_full(&self) -> bool {
        self.len() == CAPACITY
    }

    /// Whether dropping the page's objects takes no lock and waits for
    /// nothing (every one was pushed as `plain`).
    pub(crate) fn is_plain(&self) -> bool {
        self.plain
    }

    /// Records `ptr` for dropping with `drop`; `plain`: dropping it takes
    /// no lock and waits for nothing (`drops_anywhere`), so a retiring
    /// thread may run it. The page must not be full.
    ///
    /// # Safety
    /// `drop(ptr)` must be sound to call exactly once, on any thread, after
    /// a grace period (`plain` affects only where it runs, not soundness).
    pub(crate) unsafe fn push(
        &mut self,
        ptr: *mut (),
        drop: unsafe fn(*mut ()),
        bytes: usize,
        plain: bool,
    ) {
        self.plain &= plain;
        // SAFETY: the page is owned by `self`; `len < CAPACITY` per the contract.
        let d = unsafe { self.data.as_mut() };
        debug_assert!(d.len < CAPACITY);
        d.entries[d.len] = MaybeUninit::new(Deferred { ptr, drop });
        d.len += 1;
        d.bytes += bytes;
    }

    /// Drops every object (its grace period has elapsed), handing the
    /// payload of each drop function that panicked to `on_panic`; returns
    /// how many panicked. The page is empty afterwards.
    pub(crate) fn drop_objects_with(
        &mut self,
        on_panic: &mut dyn FnMut(Box<dyn std::any::Any + Send>),
    ) -> usize {
        // SAFETY: the page is owned by `self`.
        let d = unsafe { self.data.as_mut() };
        let mut panics = 0;
        for e in &d.entries[..d.len] {
            // SAFETY: entries below `len` were initialised by `push`.
            let e = unsafe { e.assume_init() };
            // SAFETY: `push`'s contract: the grace period has elapsed and
            // each entry is dropped once (len is reset below).
            if let Err(payload) = catch_unwind(AssertUnwindSafe(|| unsafe { (e.drop)(e.ptr) })) {
                panics += 1;
                on_panic(payload);
            }
        }
        d.len = 0;
        d.bytes = 0;
        self.plain = true;
        panics
    }

    /// [`drop_objects_with`](Self::drop_objects_with), discarding panic
    /// payloads (for pages no domain reports on: tests and fork children).
    #[cfg(test)]
    pub(crate) fn drop_objects(&mut self) -> usize {
        self.drop_objects_with(&mut drop)
    }
}

impl Drop for BulkPage {
    fn drop(&mut self) {
        // Objects still on the page are leaked rather than dropped early;
        // every path that discards a page empties it first.
        if self.len() != 0 {
            tracing::error!(
                objects = self.len(),
                "rcu-reclaim: a bulk page was discarded with objects on it; they are leaked"
            );
        }
        // SAFETY: `data` came from `self.alloc` with this layout.
        unsafe { self.alloc.deallocate(self.data.cast(), Self::layout()) };
    }
}

/// Drops a `Box<T>` from its raw pointer.
///
/// # Safety
/// `p` came from `Box::<T>::into_raw` and is not used afterwards.
pub(crate) unsafe fn drop_box<T>(p: *mut ()) {
    // SAFETY: per the contract.
    drop(unsafe { Box::from_raw(p.cast::<T>()) });
}

/// A thread's page of deferred drops in one domain (lives in its reader slot).
#[derive(Default)]
pub(crate) struct LocalBuffer {
    busy: AtomicBool,
    steal: AtomicBool,
    page: UnsafeCell<Option<BulkPage>>,
    /// Serialises stealers and the owner's slow path.
    lock: Mutex<()>,
    /// Objects and bytes on the page, for backlog queries (relaxed; plain
    /// std atomics even under loom: they are statistics, not part of the
    /// handshake, which the loom model below checks on its own).
    pub(crate) count: AtomicUsize,
    pub(crate) bytes: AtomicUsize,
    /// When the page got its first object (ms since `epoch_ms`'s origin), or 0.
    pub(crate) since_ms: AtomicUsize,
}

// SAFETY: `page` is accessed only by the owning thread while `busy` is set and
// `steal` is clear (the fast path), or by a holder of `lock` that has either
// seen `busy` clear after raising `steal` (a stealer) or is the owner itself
// (the slow path, during which no stealer can run); the other fields are
// atomics or a mutex.
unsafe impl Sync for LocalBuffer {}
// SAFETY: the page is `Send` and the rest are atomics and a mutex.
unsafe impl Send for LocalBuffer {}

impl LocalBuffer {
    /// The owner's fast path: buffers the object if the page has room and no
    /// stealer is active. `false` sends the caller to the slow path.
    ///
    /// # Safety
    /// Called only by the thread that owns the slot holding this buffer;
    /// `drop(ptr)` as in [`BulkPage::push`].
    #[inline]
    pub(crate) unsafe fn try_push(
        &self,
        flavor: Flavor,
        ptr: *mut (),
        drop: unsafe fn(*mut ()),
        bytes: usize,
        plain: bool,
    ) -> bool {
        self.busy.store(true, Ordering::Relaxed);
        owner_fence(flavor);
        if self.steal.load(Ordering::Acquire) {
            self.busy.store(false, Ordering::Release);
            return false;
        }
        let pushed = self.page.with_mut(|p| {
            // SAFETY: owner, busy, no stealer (see the `Sync` impl).
            match unsafe { &mut *p } {
                Some(page) if !page.is_full() => {
                    // SAFETY: the page has room; `drop(ptr)` per our contract.
                    unsafe { page.push(ptr, drop, bytes, plain) };
                    true
                }
                _ => false,
            }
        });
        if pushed {
            // Only the owner writes these outside a steal (which resets them
            // while the owner is excluded): a load and a store, no RMW.
            bump_relaxed(&self.count, 1);
            bump_relaxed(&self.bytes, bytes);
        }
        self.busy.store(false, Ordering::Release);
        pushed
    }

    /// Runs `f` with exclusive access to the page, as its owner (slow path).
    pub(crate) fn with_page_owner<R>(&self, f: impl FnOnce(&mut Option<BulkPage>) -> R) -> R {
        let _held = lock(&self.lock);
        // SAFETY: holding `lock` as the owner: no stealer runs, and the owner
        // is not on its fast path (it is here).
        self.page.with_mut(|p| f(unsafe { &mut *p }))
    }

    /// Takes the page from whichever thread owns it and passes it to `f`,
    /// still under the buffer's lock, so a concurrent `barrier` finds the
    /// page either here or where `f` put it, never in between. `barrier` is
    /// the domain's writer barrier (membarrier for memb, a fence for mb).
    pub(crate) fn steal<R>(&self, barrier: impl Fn(), f: impl FnOnce(Option<BulkPage>) -> R) -> R {
        let _held = lock(&self.lock);
        self.steal.store(true, Ordering::Relaxed);
        barrier();
        let mut spins = 0u32;
        while self.busy.load(Ordering::Acquire) {
            spins += 1;
            if !cfg!(loom) && spins < 64 {
                std::hint::spin_loop();
            } else {
                crate::sync::thread::yield_now();
            }
        }
        // SAFETY: `steal` is raised and the owner was seen outside its fast
        // path after our barrier, so it will see `steal` and take the slow
        // path, which needs `lock`, which we hold.
        let page = self.page.with_mut(|p| unsafe { (*p).take() });
        self.reset_counts();
        let r = f(page);
        self.steal.store(false, Ordering::Release);
        r
    }

    /// In the child after `fork()`, for a buffer whose owner thread does not
    /// exist there: takes its page. `Err` if the owner was inside the
    /// buffer's lock or fast path at the fork, when the page's state is
    /// unknown (it is then left alone, and the slot never reused).
    #[cfg(not(loom))]
    pub(crate) fn take_in_child(&self) -> Result<Option<BulkPage>, ()> {
        let _held = crate::sync::try_lock(&self.lock).ok_or(())?;
        if self.busy.load(Ordering::Acquire) {
            return Err(());
        }
        // SAFETY: the owner does not exist in this process (only the thread
        // that called fork() does, and it is not the owner), and we hold the
        // lock, so nothing else touches the page.
        let page = self.page.with_mut(|p| unsafe { (*p).take() });
        self.reset_counts();
        Ok(page)
    }

    /// Holds the buffer's lock across `fork()` (the forking thread's own
    /// buffer: see `Rcu::prepare_fork`).
    #[cfg(not(loom))]
    pub(crate) fn lock_for_fork(&self) -> crate::sync::ForkHeld<'_, ()> {
        crate::sync::lock_for_fork(&self.lock)
    }

    /// Waits until no stealer or slow-path owner holds the buffer: one that
    /// has emptied the page (its counts read 0) has then handed it on.
    pub(crate) fn wait_for_handoff(&self) {
        drop(lock(&self.lock));
    }

    pub(crate) fn reset_counts(&self) {
        self.count.store(0, Ordering::Relaxed);
        self.bytes.store(0, Ordering::Relaxed);
        self.since_ms.store(0, Ordering::Relaxed);
    }
}

/// Adds `n` to a counter only one thread writes at a time.
#[inline]
pub(crate) fn bump_relaxed(c: &AtomicUsize, n: usize) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

/// The owner's half of the busy/steal handshake (mirrors the read side).
#[inline]
fn owner_fence(flavor: Flavor) {
    match flavor {
        Flavor::Memb => compiler_fence(Ordering::SeqCst),
        Flavor::Mb | Flavor::Qsbr => fence(Ordering::SeqCst),
    }
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
            let p = Box::into_raw(Box::new(Counted)).cast::<()>();
            // SAFETY: `p` is from `Box::into_raw` and dropped once below.
            unsafe { page.push(p, drop_box::<Counted>, 1, false) };
        }
        assert!(page.is_full());
        assert_eq!(page.bytes(), capacity());
        let before = DROPS.load(Ordering::SeqCst);
        assert_eq!(page.drop_objects(), 0);
        assert_eq!(DROPS.load(Ordering::SeqCst) - before, capacity());
        assert_eq!(page.len(), 0);
    }
}

/// Loom model of the busy/steal handshake on its own (the domain-level
/// models in `tests/loom.rs` cover call and barrier).
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::atomic::AtomicUsize as LoomUsize;
    use loom::thread;

    #[test]
    fn owner_pushes_and_stealer_takes_never_overlap() {
        loom::model(|| {
            let alloc: Arc<dyn PageAllocator> = Arc::new(SystemPageAllocator);
            let buf = loom::sync::Arc::new(LocalBuffer::default());
            buf.with_page_owner(|p| *p = BulkPage::allocate(&alloc));
            let dropped = loom::sync::Arc::new(LoomUsize::new(0));
            let (b2, a2) = (buf.clone(), alloc.clone());
            let owner = thread::spawn(move || {
                for _ in 0..2 {
                    let p = Box::into_raw(Box::new(7u64)).cast::<()>();
                    // SAFETY: `p` is from `Box::into_raw`, dropped once by
                    // whoever ends up holding the page.
                    if !unsafe { b2.try_push(Flavor::Mb, p, drop_box::<u64>, 8, true) } {
                        b2.with_page_owner(|page| {
                            let page = page.get_or_insert_with(|| {
                                BulkPage::allocate(&a2).expect("system pages")
                            });
                            // SAFETY: as above; a fresh or stolen-and-replaced page has room.
                            unsafe { page.push(p, drop_box::<u64>, 8, true) };
                        });
                    }
                }
            });
            let d2 = dropped.clone();
            buf.steal(
                || fence(Ordering::SeqCst),
                |page| {
                    if let Some(mut page) = page {
                        d2.fetch_add(page.len(), Ordering::Relaxed);
                        page.drop_objects();
                    }
                },
            );
            owner.join().unwrap();
            buf.with_page_owner(|page| {
                if let Some(mut page) = page.take() {
                    dropped.fetch_add(page.len(), Ordering::Relaxed);
                    page.drop_objects();
                }
            });
            assert_eq!(dropped.load(Ordering::Relaxed), 2);
        });
    }
}
