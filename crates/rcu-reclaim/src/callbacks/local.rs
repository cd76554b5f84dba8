//! A thread's own buffer in one domain (it lives in the thread's reader
//! slot): the bulk page it fills with deferred drops, and its *drain*, a
//! ready page it frees a few objects per retire (`drain.rs`).
//!
//! The owner uses both without atomic read-modify-writes: it marks itself
//! busy with a plain store and a compiler fence, as a reader marks a
//! section, and a thread that wants the page or the drain (barrier, the
//! grace-period thread's lazy flush, domain drop) raises `steal`, issues
//! the writer's barrier and waits for the owner to leave.

use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::bulk::{BulkPage, Deferred, Kind, Word};
use crate::flavor::{reader_fence, Flavor};
use crate::sync::{lock, mutated_for_loom, ord_for_loom, AtomicBool, Mutex, UnsafeCell};

#[cfg(not(loom))]
thread_local! {
    /// The buffer whose page this thread's page allocator is allocating
    /// (`LocalBuffer::while_allocating`; null: none). The allocator is the
    /// user's code, run by a retire that holds that buffer's lock: a call
    /// from it that takes the lock again is refused. No destructor: read
    /// from retires at any point of the thread's exit.
    static ALLOCATING_FOR: std::cell::Cell<*const LocalBuffer> =
        const { std::cell::Cell::new(std::ptr::null()) };
}

/// The panic of `LocalBuffer::refuse_if_allocating_here`.
#[cfg(not(loom))]
#[cold]
#[inline(never)]
#[track_caller]
fn allocator_reentered(what: &str) -> ! {
    panic!(
        "rcu-reclaim: {what} called from inside the domain's page allocator \
         (Config::page_allocator) while it allocates a page for a retire on this same thread; \
         that retire holds the thread's buffer of deferred drops, which this call needs: it \
         would wait for itself for ever. From the allocator, only retire into the domain \
         (defer_drop, call); make this call after the retire has returned"
    )
}

/// The most objects one retire takes from its drain. (A drain at this
/// step takes it at every retire; below it, `DRAIN_EVERY` steps at every
/// `DRAIN_EVERY`-th, up to this many.) Small: `Popped` holds that many
/// on every retiring call's stack, and the compiler zeroes it there (at
/// 32 entries, a 520-byte `memset` per retire: 49 instructions).
const STEP_MAX: usize = crate::policy::DRAIN_STEP_HURRY;

/// Whether a retire that finds `count` objects on its thread's page takes
/// from its drain: every `DRAIN_EVERY`-th (the count runs 0, 1, 2, ... from
/// each fresh page, so every residue comes round).
#[inline]
pub(crate) fn drain_point(count: usize) -> bool {
    count % crate::policy::DRAIN_EVERY == 0
}

/// A ready page being freed in steps by its thread.
#[derive(Default)]
pub(crate) struct Drain {
    page: Option<BulkPage>,
    /// Objects taken from the front of the page so far.
    pos: usize,
    /// Objects to take per retire (taken `DRAIN_EVERY` retires' worth at
    /// a time).
    step: usize,
}

impl Drain {
    /// A drain of `page` (ready), taking `step` objects per retire.
    pub(crate) fn new(page: BulkPage, step: usize) -> Drain {
        Drain {
            page: Some(page),
            pos: 0,
            step: step.clamp(1, STEP_MAX),
        }
    }

    /// Objects it takes per retire (for tests).
    #[cfg(all(test, not(loom)))]
    pub(crate) fn step(&self) -> usize {
        self.step
    }

    /// Objects not yet taken.
    pub(crate) fn left(&self) -> usize {
        self.page.as_ref().map_or(0, |p| p.len() - self.pos)
    }

    /// The page's bytes while any object is left on it.
    pub(crate) fn bytes(&self) -> usize {
        match &self.page {
            Some(p) if self.pos < p.len() => p.bytes(),
            _ => 0,
        }
    }

    /// Whether a retire that finds `count` objects on its thread's page
    /// takes from this drain: at every [`drain_point`], or at every retire
    /// while it hurries.
    #[inline]
    pub(crate) fn due(&self, count: usize) -> bool {
        self.step >= STEP_MAX || drain_point(count)
    }

    /// Objects one taking takes: `DRAIN_EVERY` steps, at most `STEP_MAX`.
    #[inline]
    fn batch(&self) -> usize {
        (self.step * crate::policy::DRAIN_EVERY).min(STEP_MAX)
    }

    /// Takes up to [`batch`](Self::batch) objects into `out` (empty);
    /// returns how many are left.
    #[inline]
    pub(crate) fn pop_into(&mut self, out: &mut Popped) -> usize {
        let Some(page) = &self.page else {
            return 0;
        };
        let left = page.entries(self.pos..page.len());
        let n = left.len().min(self.batch());
        out.fill(&left[..n]);
        self.pos += n;
        left.len() - n
    }

    /// What is left of the page (the objects taken so far forgotten), and
    /// how many were taken; the drain is empty afterwards.
    pub(crate) fn take(&mut self) -> Option<(BulkPage, usize)> {
        let page = self.page.take()?;
        Some((page, std::mem::take(&mut self.pos)))
    }
}

/// Objects a retire took from its drain, to run once the handshake is over.
///
/// `None` until a step takes some: made with uninitialised items alone (an
/// array of `MaybeUninit`s, or one `MaybeUninit` array), every retire
/// zeroed all 128 bytes of them (ten instructions a deferred drop, though
/// a step is taken at one retire in four at most); `None` is one store.
pub(crate) struct Popped {
    items: Option<MaybeUninit<[Deferred; STEP_MAX]>>,
    len: usize,
}

impl Default for Popped {
    #[inline(always)]
    fn default() -> Self {
        Popped {
            items: None,
            len: 0,
        }
    }
}

impl Popped {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The objects taken.
    pub(crate) fn items(&self) -> impl Iterator<Item = Deferred> + '_ {
        let taken: &[Deferred] = match &self.items {
            // SAFETY: `fill` wrote the first `len` items (at most
            // `STEP_MAX`) when it made `items` `Some`.
            Some(items) => unsafe {
                std::slice::from_raw_parts(items.as_ptr().cast::<Deferred>(), self.len)
            },
            None => &[],
        };
        taken.iter().copied()
    }

    /// Holds `ds` (at most `STEP_MAX`; `self` is empty).
    ///
    /// The usual taking (`DRAIN_EVERY` steps of one) is copied at a length
    /// known to the compiler, a few moves inline; any other length out of
    /// line. At a length known only at run time the copy was a call to
    /// `memcpy` at every fourth retire (2 % of a 64-byte `defer_drop`
    /// loop's time, perf), and a second arm of a known length inline was
    /// merged back into that call.
    #[inline]
    fn fill(&mut self, ds: &[Deferred]) {
        debug_assert_eq!(self.len, 0);
        let n = ds.len().min(STEP_MAX);
        let items = self.items.insert(MaybeUninit::uninit());
        let (src, dst) = (ds.as_ptr(), items.as_mut_ptr().cast::<Deferred>());
        if n == crate::policy::DRAIN_EVERY {
            // SAFETY: `DRAIN_EVERY` is `n` here, which is at most
            // `ds.len()` (the source is valid for it) and at most
            // `STEP_MAX` (the array holds it); `ds` (a page's entries)
            // does not overlap this value. (`Deferred` is `Copy`: the
            // caller moves the drain past the entries copied, which run
            // once, from here.)
            unsafe { std::ptr::copy_nonoverlapping(src, dst, crate::policy::DRAIN_EVERY) };
        } else {
            // SAFETY: as above, for `n` (at most `ds.len()` and
            // `STEP_MAX`), which is `copy_entries`' contract.
            unsafe { copy_entries(src, dst, n) };
        }
        self.len = n;
    }
}

/// Copies `n` entries from `src` to `dst`, out of line (see
/// [`Popped::fill`]).
///
/// # Safety
/// As `std::ptr::copy_nonoverlapping(src, dst, n)`.
#[inline(never)]
unsafe fn copy_entries(src: *const Deferred, dst: *mut Deferred, n: usize) {
    // SAFETY: per the contract.
    unsafe { std::ptr::copy_nonoverlapping(src, dst, n) };
}

/// What [`LocalBuffer::try_push_fast`] did.
#[derive(Clone, Copy)]
pub(crate) struct FastPush {
    /// Pushed: the page's count and bytes now. `None`: not pushed (no
    /// page, a full one, a stealer, or the page allocator re-entered),
    /// the slow path's.
    pub(crate) pushed: Option<(usize, usize)>,
    /// The drain is due a step: the buffer is still marked busy for
    /// [`LocalBuffer::finish_drain_step`].
    pub(crate) drain_due: bool,
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
    /// The page was due to go to its shard but found the shard's lock held
    /// (a retire never waits for it until the page is full): the next lazy
    /// flush takes it whatever its age, in case its thread retires no more.
    /// (A hint, as `count`: a plain std atomic even under loom.)
    pub(crate) refused: std::sync::atomic::AtomicBool,
    /// The owner is in the page allocator, inside its slow path (under
    /// `lock`): a retire that the allocator makes on this thread finds no
    /// page here and takes the fallback instead of locking again. (Only the
    /// owner reads and writes it: a plain std atomic even under loom.)
    pub(crate) allocating: std::sync::atomic::AtomicBool,
    /// A ready page the owner frees a few objects per retire (`drain.rs`),
    /// under the same handshake as `page`.
    drain: UnsafeCell<Drain>,
    /// Objects left in the drain, and the drain page's bytes while any is
    /// left (relaxed; statistics, as `count`).
    /// (The count and `dropping` are loom's atomics under loom: `barrier`
    /// relies on their ordering, which the model below checks.)
    pub(crate) drain_count: crate::sync::AtomicUsize,
    pub(crate) drain_bytes: AtomicUsize,
    /// When the drain got its page (`epoch_ms`), or 0.
    pub(crate) drain_since_ms: AtomicUsize,
    /// Objects the owner has taken from its drain and is dropping now: a
    /// `barrier` that steals the drain waits for them.
    pub(crate) dropping: crate::sync::AtomicUsize,
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
    ///
    /// With the push, at every `DRAIN_EVERY`-th retire ([`drain_point`]),
    /// it takes up to that many of the drain's steps of objects (at every
    /// retire while the drain hurries: `Drain::due`) from its drain into
    /// `popped` (counted in `dropping`): the caller runs them,
    /// then calls [`dropped`](Self::dropped), if `may_pop()`, asked only
    /// when the drain holds something (the caller says no from inside a
    /// callback or a deferred drop, the drain's included: a value that
    /// drops anywhere may retire more from its `Drop`, and each such retire
    /// running the next drain step nested the drops one inside another
    /// until the stack overflowed).
    ///
    /// In two halves, as a retire calls them: [`try_push_fast`] (inlined
    /// into it) and, when the drain is due, [`finish_drain_step`] (out of
    /// line, in the caller's).
    ///
    /// [`try_push_fast`]: Self::try_push_fast
    /// [`finish_drain_step`]: Self::finish_drain_step
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) unsafe fn try_push(
        &self,
        flavor: Flavor,
        ptr: Word,
        drop: unsafe fn(Word),
        bytes: usize,
        kind: Kind,
        may_pop: impl FnOnce() -> bool,
        popped: &mut Popped,
    ) -> bool {
        // SAFETY: per our contract.
        let fast = unsafe { self.try_push_fast(flavor, ptr, drop, bytes, kind) };
        if fast.drain_due {
            // SAFETY: `try_push_fast` answered `drain_due`, on this (the
            // owner's) thread, just now.
            unsafe { self.finish_drain_step(may_pop(), popped) };
        }
        fast.pushed.is_some()
    }

    /// The first half of [`try_push`](Self::try_push), inlined into every
    /// retire: the handshake and the push. When the drain is due a step
    /// (`drain_due`), the buffer is left marked busy (owned) for the caller
    /// to go on with [`finish_drain_step`], which takes the step and ends
    /// the handshake: out of line, the step's copy of its objects
    /// (`Popped`, 144 bytes) and its calls are not in every retire's frame.
    ///
    /// # Safety
    /// As for `try_push`; on `drain_due`, the caller calls
    /// `finish_drain_step` before anything else touches this buffer.
    ///
    /// [`finish_drain_step`]: Self::finish_drain_step
    #[inline(always)]
    pub(crate) unsafe fn try_push_fast(
        &self,
        flavor: Flavor,
        ptr: Word,
        drop: unsafe fn(Word),
        bytes: usize,
        kind: Kind,
    ) -> FastPush {
        const REFUSED: FastPush = FastPush {
            pushed: None,
            drain_due: false,
        };
        if self.allocating.load(std::sync::atomic::Ordering::Relaxed) {
            // Re-entered from the page allocator: the page is the slow
            // path's (see `allocating`).
            return REFUSED;
        }
        self.busy.store(true, Ordering::Relaxed);
        if !mutated_for_loom("try_push.owner_fence") {
            owner_fence(flavor);
        }
        if self
            .steal
            .load(ord_for_loom("try_push.steal_acquire", Ordering::Acquire))
        {
            self.busy.store(
                false,
                ord_for_loom("try_push.busy_release_refused", Ordering::Release),
            );
            return REFUSED;
        }
        // Whether the drain takes a step, on the count before this push.
        let drain_due = self.drain_count.load(Ordering::Relaxed) > 0 && {
            let count = self.count.load(Ordering::Relaxed);
            // SAFETY: owner, busy, no stealer (see the `Sync` impl).
            self.drain.with_mut(|d| unsafe { (*d).due(count) })
        };
        let pushed = self.page.with_mut(|p| {
            // SAFETY: owner, busy, no stealer (see the `Sync` impl).
            match unsafe { &mut *p } {
                Some(page) if !page.is_full() => {
                    // SAFETY: the page has room; `drop(ptr)` per our contract.
                    unsafe { page.push(ptr, drop, bytes, kind) };
                    true
                }
                _ => false,
            }
        });
        let pushed = pushed.then(|| {
            // Only the owner writes these outside a steal (which resets them
            // while the owner is excluded): a load and a store, no RMW.
            let count = self.count.load(Ordering::Relaxed).wrapping_add(1);
            self.count.store(count, Ordering::Relaxed);
            let held = self.bytes.load(Ordering::Relaxed).wrapping_add(bytes);
            self.bytes.store(held, Ordering::Relaxed);
            (count, held)
        });
        if !drain_due {
            self.busy.store(
                false,
                ord_for_loom("try_push.busy_release", Ordering::Release),
            );
        }
        FastPush { pushed, drain_due }
    }

    /// The second half of [`try_push`](Self::try_push), after
    /// [`try_push_fast`](Self::try_push_fast) answered `drain_due` (and
    /// left the buffer marked busy): takes the drain's step into `popped`
    /// if `may_pop`, and ends the handshake.
    ///
    /// # Safety
    /// Right after `try_push_fast` answered `drain_due`, on the owner's
    /// thread.
    #[inline]
    pub(crate) unsafe fn finish_drain_step(&self, may_pop: bool, popped: &mut Popped) {
        if may_pop {
            // SAFETY: owner, busy, no stealer (see the `Sync` impl).
            let left = self.drain.with_mut(|d| unsafe { (*d).pop_into(popped) });
            let d = self.dropping.load(Ordering::Relaxed);
            self.dropping
                .store(d.wrapping_add(popped.len()), Ordering::Relaxed);
            // Release: see `Callbacks::barrier`.
            self.drain_count.store(
                left,
                ord_for_loom("try_push.drain_count_release", Ordering::Release),
            );
        }
        self.busy.store(
            false,
            ord_for_loom("try_push.busy_release", Ordering::Release),
        );
    }

    /// Runs `f` (the owner's call into the page allocator) marked as
    /// `allocating`, unmarked again even if it panics.
    pub(crate) fn while_allocating<R>(&self, f: impl FnOnce() -> R) -> R {
        struct Unmark<'a>(&'a std::sync::atomic::AtomicBool, *const LocalBuffer);
        impl Drop for Unmark<'_> {
            fn drop(&mut self) {
                self.0.store(false, std::sync::atomic::Ordering::Relaxed);
                #[cfg(not(loom))]
                let _ = ALLOCATING_FOR.try_with(|a| a.set(self.1));
            }
        }
        self.allocating
            .store(true, std::sync::atomic::Ordering::Relaxed);
        #[cfg(not(loom))]
        let before = ALLOCATING_FOR
            .try_with(|a| a.replace(self))
            .unwrap_or(std::ptr::null());
        #[cfg(loom)]
        let before = std::ptr::null();
        let _unmark = Unmark(&self.allocating, before);
        f()
    }

    /// Refuses, with a panic that says so, to go on with `what` on the
    /// thread whose page allocator is allocating this buffer's page (see
    /// `ALLOCATING_FOR`): the retire that called the allocator holds the
    /// buffer's lock, and `what` would wait for it for ever (before: the
    /// thread hung, silently). Called before anything is changed.
    pub(crate) fn refuse_if_allocating_here(&self, what: &str) {
        #[cfg(not(loom))]
        if ALLOCATING_FOR
            .try_with(|a| std::ptr::eq(a.get(), self))
            .unwrap_or(false)
        {
            allocator_reentered(what);
        }
        #[cfg(loom)]
        let _ = what;
    }

    /// The buffer's lock, refused (a panic) on the thread whose page
    /// allocator is allocating this buffer's page, which holds it (and,
    /// as every lock, given up on in a process forked without
    /// `prepare_fork`: see `sync::ForkedWaits`).
    fn lock_buffer(&self) -> crate::sync::Locked<'_, ()> {
        self.refuse_if_allocating_here(
            "a call that takes this thread's buffer of deferred drops (barrier(), \
             run_callbacks(), Reclaimer::reclaim(), prepare_fork())",
        );
        lock(&self.lock)
    }

    /// The owner's drain, taken whole to be dropped by the owner itself
    /// (see `Callbacks::finish_own_drain`): its objects not yet taken are
    /// counted in `dropping` before the drain shows empty, so a `barrier`
    /// that finds it empty waits for their drops. The owner calls
    /// [`dropped`](Self::dropped) with that count once they have run.
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn take_drain_to_drop(&self) -> Option<(BulkPage, usize)> {
        self.with_drain_owner(|drain| {
            let taken = drain.take();
            if let Some((page, done)) = &taken {
                let d = self.dropping.load(Ordering::Relaxed);
                self.dropping
                    .store(d.wrapping_add(page.len() - done), Ordering::Relaxed);
            }
            taken
        })
    }

    /// After running what [`try_push`](Self::try_push) popped (`n` objects).
    pub(crate) fn dropped(&self, n: usize) {
        if n == 0 {
            return;
        }
        // Release: a barrier that reads the count back to zero sees the
        // drops' effects.
        let left = self.dropping.load(Ordering::Relaxed).wrapping_sub(n);
        self.dropping
            .store(left, ord_for_loom("dropped.release", Ordering::Release));
    }

    /// Runs `f` with exclusive access to the drain, as its owner.
    pub(crate) fn with_drain_owner<R>(&self, f: impl FnOnce(&mut Drain) -> R) -> R {
        let _held = self.lock_buffer();
        // SAFETY: as `with_page_owner`.
        let r = self.drain.with_mut(|d| f(unsafe { &mut *d }));
        self.publish_drain();
        r
    }

    /// Takes the drain from whichever thread owns it, as `steal` takes the
    /// page, and passes `f` what is left of its page and how many of its
    /// objects were taken (dropped, or being dropped: see `dropping`),
    /// still under the buffer's lock, so a concurrent `barrier` finds the
    /// objects either here or where `f` put them, never in between.
    pub(crate) fn steal_drain<R>(
        &self,
        barrier: impl Fn(),
        f: impl FnOnce(Option<(BulkPage, usize)>) -> R,
    ) -> R {
        self.with_owner_out(barrier, || {
            // SAFETY: the owner is kept out (see `with_owner_out`).
            let taken = self.drain.with_mut(|d| unsafe { (*d).take() });
            self.publish_drain();
            f(taken)
        })
    }

    /// `barrier`'s look at this buffer (`Callbacks::barrier`): once it
    /// returns, every object the drain held when the look began has been
    /// dropped, or is on a shard, where `steal_drain` (the barrier's
    /// `steal_drain_to_shard`, called if the drain holds anything) put it.
    ///
    /// After the buffer's lock: a drain filled under it is seen, and so is
    /// one taken meanwhile (it went to a shard under the lock). The count
    /// is stored with Release after the owner counts what it pops (or
    /// takes whole) in `dropping`, so a drain read as emptied shows its
    /// drops in flight, and the wait covers them.
    pub(crate) fn wait_out_drain(&self, steal_drain: impl FnOnce()) {
        self.wait_for_handoff();
        if self.drain_count.load(ord_for_loom(
            "barrier.drain_count_acquire",
            Ordering::Acquire,
        )) > 0
        {
            steal_drain();
        }
        self.wait_for_drops();
    }

    /// Waits until objects the owner took from its drain have been dropped.
    pub(crate) fn wait_for_drops(&self) {
        spin_until(|| {
            self.dropping
                .load(ord_for_loom("wait_for_drops.acquire", Ordering::Acquire))
                == 0
        });
    }

    /// Mirrors the drain for lazy queries; under the buffer's lock.
    fn publish_drain(&self) {
        // SAFETY: under the buffer's lock, so no stealer runs; the owner's
        // fast path only reads `left` and pops, both excluded while the
        // lock's holder is the owner or a stealer has raised `steal`.
        let (left, bytes) = self.drain.with_mut(|d| {
            let d = unsafe { &*d };
            (d.left(), d.bytes())
        });
        if left == 0 {
            self.drain_since_ms.store(0, Ordering::Relaxed);
        }
        self.drain_count.store(
            left,
            ord_for_loom("publish_drain.release", Ordering::Release),
        );
        self.drain_bytes.store(bytes, Ordering::Relaxed);
    }

    /// The stealer's half of the handshake: under the buffer's lock, raises
    /// `steal`, issues `barrier` (the domain's writer barrier: membarrier
    /// for memb, a fence for mb) and waits for the owner to leave its fast
    /// path, then runs `f`. The owner, seeing `steal`, takes the slow path,
    /// which needs the lock: `f` has the page and the drain to itself.
    fn with_owner_out<R>(&self, barrier: impl Fn(), f: impl FnOnce() -> R) -> R {
        let _held = self.lock_buffer();
        self.steal.store(true, Ordering::Relaxed);
        if !mutated_for_loom("with_owner_out.barrier") {
            barrier();
        }
        spin_until(|| {
            !self.busy.load(ord_for_loom(
                "with_owner_out.busy_acquire",
                Ordering::Acquire,
            ))
        });
        let r = f();
        self.steal.store(
            false,
            ord_for_loom("with_owner_out.steal_release", Ordering::Release),
        );
        r
    }

    /// Runs `f` with exclusive access to the page, as its owner (slow path).
    pub(crate) fn with_page_owner<R>(&self, f: impl FnOnce(&mut Option<BulkPage>) -> R) -> R {
        let _held = self.lock_buffer();
        // SAFETY: holding `lock` as the owner: no stealer runs, and the owner
        // is not on its fast path (it is here).
        self.page.with_mut(|p| f(unsafe { &mut *p }))
    }

    /// Takes the page from whichever thread owns it and passes it to `f`,
    /// still under the buffer's lock, so a concurrent `barrier` finds the
    /// page either here or where `f` put it, never in between. `barrier` is
    /// the domain's writer barrier (membarrier for memb, a fence for mb).
    pub(crate) fn steal<R>(&self, barrier: impl Fn(), f: impl FnOnce(Option<BulkPage>) -> R) -> R {
        self.with_owner_out(barrier, || {
            // SAFETY: `steal` is raised and the owner was seen outside its
            // fast path after our barrier, so it will see `steal` and take
            // the slow path, which needs `lock`, which we hold.
            let page = self.page.with_mut(|p| unsafe { (*p).take() });
            self.reset_counts();
            f(page)
        })
    }

    /// In the child after `fork()`, for a buffer whose owner thread does not
    /// exist there: takes its page. `Err` if the owner was inside the
    /// buffer's lock or fast path at the fork, when the page's state is
    /// unknown (it is then left alone, and the slot never reused).
    ///
    /// `held_out`: the forking thread held this buffer across the fork
    /// with its owner kept out ([`try_hold_for_fork`](Self::try_hold_for_fork)),
    /// so the page and the drain are whole whatever `busy` says (an owner
    /// that had just raised it, seen `steal` and not yet lowered it, was
    /// about to leave them alone).
    #[cfg(not(loom))]
    pub(crate) fn take_in_child(&self, held_out: bool) -> Result<Option<BulkPage>, ()> {
        // The owner's drops in flight (if any) never finish here, and the
        // drain's state is unknown if it was inside its fast path: its
        // objects are then leaked, as the page's are.
        self.dropping.store(0, Ordering::Relaxed);
        let Some(_held) = crate::sync::try_lock(&self.lock) else {
            self.drain_count.store(0, Ordering::Relaxed);
            self.drain_bytes.store(0, Ordering::Relaxed);
            return Err(());
        };
        if !held_out && self.busy.load(Ordering::Acquire) {
            self.drain_count.store(0, Ordering::Relaxed);
            self.drain_bytes.store(0, Ordering::Relaxed);
            return Err(());
        }
        // SAFETY: the owner does not exist in this process (only the thread
        // that called fork() does, and it is not the owner), and we hold the
        // lock, so nothing else touches the page.
        let page = self.page.with_mut(|p| unsafe { (*p).take() });
        self.reset_counts();
        // The owner may have been caught between emptying its drain on its
        // fast path (which stores the count, 0, but leaves the bytes) and
        // republishing it (`refill_drain`, which it never reaches here):
        // the drain's bytes would stay in `pending_bytes` for ever, with no
        // object behind them. Publish what the drain really holds.
        self.publish_drain();
        Ok(page)
    }

    /// Another thread's buffer, held across `fork()` if its lock is free
    /// now (`None` if not: a stealer or its owner's slow path has it, and
    /// the child then leaves its page alone, as `take_in_child` says): its
    /// `steal` raised, so the owner takes its slow path, which waits for
    /// the lock, from its next retire on. [`HeldForFork::wait_owner_out`]
    /// then waits out a retire already on its fast path. Never waits
    /// itself: `prepare_fork` calls it holding the domain's other locks,
    /// which a slow path holding this lock may be waiting for.
    #[cfg(not(loom))]
    pub(crate) fn try_hold_for_fork(&self) -> Option<HeldForFork<'_>> {
        let held = crate::sync::try_lock(&self.lock)?;
        self.steal.store(true, Ordering::Relaxed);
        Some(HeldForFork {
            buf: self,
            _held: held,
        })
    }

    /// Holds the buffer's lock across `fork()` (the forking thread's own
    /// buffer: see `Rcu::prepare_fork`).
    #[cfg(not(loom))]
    pub(crate) fn lock_for_fork(&self) -> crate::sync::ForkHeld<'_, ()> {
        self.refuse_if_allocating_here("prepare_fork()");
        crate::sync::lock_for_fork(&self.lock)
    }

    /// Waits until no stealer or slow-path owner holds the buffer: one that
    /// has emptied the page (its counts read 0) has then handed it on.
    pub(crate) fn wait_for_handoff(&self) {
        drop(self.lock_buffer());
    }

    pub(crate) fn reset_counts(&self) {
        self.count.store(0, Ordering::Relaxed);
        self.bytes.store(0, Ordering::Relaxed);
        self.since_ms.store(0, Ordering::Relaxed);
        self.refused.store(false, Ordering::Relaxed);
    }
}

/// Another thread's buffer held across `fork()` by `prepare_fork`
/// ([`LocalBuffer::try_hold_for_fork`]): its lock, with `steal` raised,
/// lowered again when this drops (before the lock is released).
#[cfg(not(loom))]
pub(crate) struct HeldForFork<'a> {
    buf: &'a LocalBuffer,
    _held: crate::sync::Locked<'a, ()>,
}

#[cfg(not(loom))]
impl HeldForFork<'_> {
    /// After the domain's writer barrier (issued once for every held
    /// buffer): waits until the owner is off its fast path. It then sees
    /// `steal` at its next retire and waits for the lock; a retire's fast
    /// path takes no lock and waits for nothing, so this ends.
    pub(crate) fn wait_owner_out(&self) {
        spin_until(|| !self.buf.busy.load(Ordering::Acquire));
    }

    /// The buffer held.
    pub(crate) fn buffer(&self) -> *const LocalBuffer {
        self.buf
    }
}

#[cfg(not(loom))]
impl Drop for HeldForFork<'_> {
    fn drop(&mut self) {
        // Before the lock (a field) is released.
        self.buf.steal.store(false, Ordering::Release);
    }
}

/// Spins, then yields, until `done`: another thread's retire in progress
/// (`busy`) or its drops (`dropping`). In a process forked without
/// `Rcu::prepare_fork` (see `sync::ForkedWaits`) that thread may not exist
/// here: after `sync::FORKED_WAIT` this panics, naming the fix.
fn spin_until(done: impl Fn() -> bool) {
    let mut spins = 0u32;
    // Whether the waits give up (`sync::ForkedWaits`), and since when:
    // looked at once, when the spinning ends.
    #[cfg(not(loom))]
    #[allow(clippy::option_option)]
    let mut forked: Option<Option<(crate::sync::ForkedFrom, std::time::Instant)>> = None;
    while !done() {
        spins += 1;
        if !cfg!(loom) && spins < 64 {
            std::hint::spin_loop();
        } else {
            #[cfg(not(loom))]
            {
                let look = || {
                    crate::sync::ForkedWaits::current()
                        .filter(|f| f.forked())
                        .map(|f| (f, std::time::Instant::now()))
                };
                if let Some((f, since)) = *forked.get_or_insert_with(look) {
                    let waited = since.elapsed();
                    if waited >= crate::sync::FORKED_WAIT {
                        f.stuck("a thread's retire or drops in progress", waited);
                    }
                }
            }
            crate::sync::thread::yield_now();
        }
    }
}

/// The owner's half of the busy/steal handshake (mirrors the read side).
#[inline]
fn owner_fence(flavor: Flavor) {
    reader_fence(flavor);
}

/// The owner's fast push of `p`, a boxed `u64` booked as 8 plain bytes,
/// its drain free to pop into `popped`: what both test modules push.
///
/// # Safety
/// `p` is from `Box::<u64>::into_raw`, not queued yet.
#[cfg(test)]
unsafe fn push_u64(buf: &LocalBuffer, p: *mut (), popped: &mut Popped) -> bool {
    // SAFETY: per the contract, `drop_box::<u64>` drops `p` once.
    unsafe {
        buf.try_push(
            Flavor::Mb,
            super::bulk::word(p),
            super::bulk::drop_box::<u64>,
            8,
            Kind::Plain,
            || true,
            popped,
        )
    }
}

/// Loom model of the busy/steal handshake on its own (the domain-level
/// models in `tests/loom.rs` cover call and barrier).
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::callbacks::bulk::{drop_box, word, PageAllocator, SystemPageAllocator};
    use crate::sync::fence;
    use loom::sync::atomic::AtomicUsize as LoomUsize;
    use loom::thread;
    use std::sync::Arc;

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
                    let mut popped = Popped::default();
                    if !unsafe { push_u64(&b2, p, &mut popped) } {
                        b2.with_page_owner(|page| {
                            let page = page.get_or_insert_with(|| {
                                BulkPage::allocate(&a2).expect("system pages")
                            });
                            // SAFETY: as above; a fresh or stolen-and-replaced page has room.
                            unsafe { page.push(word(p), drop_box::<u64>, 8, Kind::Plain) };
                        });
                    }
                }
            });
            let (b3, d2) = (buf.clone(), dropped.clone());
            // A thread of its own, as in every model here (see
            // `a_drain_emptied_by_a_retire_is_waited_for_by_a_barrier`).
            let stealer = thread::spawn(move || {
                b3.steal(
                    || fence(Ordering::SeqCst),
                    |page| {
                        if let Some(mut page) = page {
                            d2.fetch_add(page.len(), Ordering::Relaxed);
                            page.drop_objects();
                        }
                    },
                );
            });
            stealer.join().unwrap();
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

    /// The handshake's orderings, each weakened in turn (an Acquire or
    /// Release made Relaxed, a fence left out: `sync::LOOM_MUTATION_SITES`),
    /// and the model here that fails each. Each runs in a child process
    /// (a failing model aborts its own), with `RCU_LOOM_MUTATE` naming the
    /// site. The sites not listed survive every model, being redundant:
    /// `try_push.busy_release_refused` (the owner wrote nothing since its
    /// fence, which releases what it wrote before) and the barrier's
    /// markers (plain std atomics under loom; elsewhere the barrier's last
    /// pass takes every shard's `invoke` lock after the marker ran under
    /// it, which orders the callbacks before it on its own).
    const CAUGHT: &[(&str, &str)] = &[
        (
            "try_push.owner_fence",
            "owner_pushes_and_stealer_takes_never_overlap",
        ),
        (
            "try_push.steal_acquire",
            "owner_pushes_and_stealer_takes_never_overlap",
        ),
        (
            "try_push.busy_release",
            "owner_pushes_and_stealer_takes_never_overlap",
        ),
        (
            "with_owner_out.barrier",
            "owner_pushes_and_stealer_takes_never_overlap",
        ),
        (
            "with_owner_out.busy_acquire",
            "owner_pushes_and_stealer_takes_never_overlap",
        ),
        (
            "with_owner_out.steal_release",
            "owner_pushes_and_stealer_takes_never_overlap",
        ),
        ("dropped.release", "a_stolen_drain_leaves_no_drop_in_flight"),
        (
            "wait_for_drops.acquire",
            "a_stolen_drain_leaves_no_drop_in_flight",
        ),
        (
            "publish_drain.release",
            "a_drain_its_owner_drops_whole_is_waited_for_by_a_barrier",
        ),
        (
            "try_push.drain_count_release",
            "a_drain_emptied_by_a_retire_is_waited_for_by_a_barrier",
        ),
        (
            "barrier.drain_count_acquire",
            "a_drain_emptied_by_a_retire_is_waited_for_by_a_barrier",
        ),
    ];

    #[test]
    fn each_mutation_of_the_handshake_fails_a_model() {
        for (site, model) in CAUGHT {
            let name = format!("callbacks::local::loom_tests::{model}");
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args([name.as_str(), "--exact", "--test-threads=1"])
                .env("RCU_LOOM_MUTATE", site)
                .env("RUST_BACKTRACE", "0")
                .output()
                .unwrap();
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(text.contains("running 1 test"), "{site}: {text}");
            assert!(
                !out.status.success(),
                "the mutation {site} passed the model {model}:\n{text}"
            );
            assert!(
                [
                    "Causality violation",
                    "the barrier went on",
                    "still being dropped",
                    "assertion",
                ]
                .iter()
                .any(|sign| text.contains(sign)),
                "the mutation {site} failed {model} for another reason:\n{text}"
            );
        }
    }

    /// A value that counts its drops.
    struct Counted(loom::sync::Arc<LoomUsize>);

    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A buffer whose drain holds two ready `Counted` values (one taken
    /// per step), and their drop count.
    fn buffer_with_counted_drain(
        alloc: &Arc<dyn PageAllocator>,
    ) -> (loom::sync::Arc<LocalBuffer>, loom::sync::Arc<LoomUsize>) {
        let drops = loom::sync::Arc::new(LoomUsize::new(0));
        let buf = loom::sync::Arc::new(LocalBuffer::default());
        let mut ready = BulkPage::allocate(alloc).expect("system pages");
        for _ in 0..2 {
            let p = Box::into_raw(Box::new(Counted(drops.clone()))).cast::<()>();
            // SAFETY: from `Box::into_raw`, dropped once by whoever takes
            // the drain.
            unsafe { ready.push(word(p), drop_box::<Counted>, 8, Kind::Plain) };
        }
        buf.with_drain_owner(|d| *d = Drain::new(ready, 1));
        (buf, drops)
    }

    /// A drain its owner takes whole to drop itself (a thread about to wait
    /// over a garbage bound) against `barrier`'s look at the buffer: the
    /// barrier finds the drain (and takes it) or finds it empty with its
    /// objects counted in `dropping`, so once it has waited for the drops,
    /// every object that was in the drain has been dropped, once.
    #[test]
    fn a_drain_its_owner_drops_whole_is_waited_for_by_a_barrier() {
        loom::model(|| {
            let alloc: Arc<dyn PageAllocator> = Arc::new(SystemPageAllocator);
            let (buf, drops) = buffer_with_counted_drain(&alloc);
            let b2 = buf.clone();
            let owner = thread::spawn(move || {
                if let Some((mut page, done)) = b2.take_drain_to_drop() {
                    page.forget_front(done);
                    let n = page.len();
                    page.drop_objects();
                    b2.dropped(n);
                }
            });
            let (b3, d3) = (buf.clone(), drops.clone());
            let barrier = thread::spawn(move || {
                barrier_look(&b3);
                assert_eq!(
                    d3.load(Ordering::SeqCst),
                    2,
                    "the barrier went on while the drain's objects were being dropped"
                );
            });
            barrier.join().unwrap();
            owner.join().unwrap();
            assert_eq!(drops.load(Ordering::SeqCst), 2);
        });
    }

    /// `barrier`'s look at a thread's buffer (`Callbacks::barrier`, through
    /// `wait_out_drain`), a steal dropping what is left of the drain at
    /// once (the barrier puts it on a shard and runs it there).
    fn barrier_look(buf: &LocalBuffer) {
        buf.wait_out_drain(|| {
            if let Some((mut rest, done)) =
                buf.steal_drain(|| fence(Ordering::SeqCst), |taken| taken)
            {
                rest.forget_front(done);
                rest.drop_objects();
            }
        });
    }

    /// A retire whose drain step takes the drain's last objects (the
    /// owner's fast path: the pop counted in `dropping`, then the count
    /// stored 0) against `barrier`'s look at the buffer: the barrier finds
    /// the objects in the drain (and takes them), or finds the drain
    /// emptied and waits for their drops. Either way, once the look is
    /// over, every object that was in the drain has been dropped, once.
    /// (The drain's count read 0 without the pop's `dropping` behind it,
    /// the barrier returned with the objects still being dropped.)
    #[test]
    fn a_drain_emptied_by_a_retire_is_waited_for_by_a_barrier() {
        loom::model(|| {
            let alloc: Arc<dyn PageAllocator> = Arc::new(SystemPageAllocator);
            let (buf, drops) = buffer_with_counted_drain(&alloc);
            buf.with_page_owner(|p| *p = BulkPage::allocate(&alloc));
            let (b2, a2) = (buf.clone(), alloc.clone());
            let owner = thread::spawn(move || {
                let mut popped = Popped::default();
                let p = Box::into_raw(Box::new(7u64)).cast::<()>();
                // SAFETY: from `Box::into_raw`; the page holding it is
                // emptied below.
                if !unsafe { push_u64(&b2, p, &mut popped) } {
                    b2.with_page_owner(|page| {
                        let page = page
                            .get_or_insert_with(|| BulkPage::allocate(&a2).expect("system pages"));
                        // SAFETY: as above.
                        unsafe { page.push(word(p), drop_box::<u64>, 8, Kind::Plain) };
                    });
                }
                for d in popped.items() {
                    // SAFETY: popped from a ready page, once.
                    unsafe { d.run() };
                }
                b2.dropped(popped.len());
            });
            // On a thread of its own: loom explored few interleavings of
            // the model's main thread with the owner (8 here, none with the
            // barrier after the owner's step), and missed both mutations of
            // the count's pairing (`sync::LOOM_MUTATION_SITES`).
            let (b3, d3) = (buf.clone(), drops.clone());
            let barrier = thread::spawn(move || {
                barrier_look(&b3);
                assert_eq!(
                    d3.load(Ordering::SeqCst),
                    2,
                    "the barrier went on while the drain's objects were being dropped"
                );
            });
            barrier.join().unwrap();
            owner.join().unwrap();
            buf.with_page_owner(|page| {
                if let Some(mut page) = page.take() {
                    page.drop_objects();
                }
            });
            buf.with_drain_owner(|d| {
                if let Some((mut rest, done)) = d.take() {
                    rest.forget_front(done);
                    rest.drop_objects();
                }
            });
            assert_eq!(drops.load(Ordering::SeqCst), 2);
        });
    }

    /// The drain's half of the handshake: after a stealer has taken the
    /// drain and waited for the owner's drops, every object that left the
    /// drain before the steal has been dropped (what `barrier` promises),
    /// and each object is dropped once, by the owner or by the stealer.
    #[test]
    fn a_stolen_drain_leaves_no_drop_in_flight() {
        loom::model(|| {
            let alloc: Arc<dyn PageAllocator> = Arc::new(SystemPageAllocator);
            let (buf, drops) = buffer_with_counted_drain(&alloc);
            buf.with_page_owner(|p| *p = BulkPage::allocate(&alloc));
            let (b2, a2) = (buf.clone(), alloc.clone());
            let owner = thread::spawn(move || {
                let mut popped = Popped::default();
                let p = Box::into_raw(Box::new(7u64)).cast::<()>();
                // SAFETY: from `Box::into_raw`; the page holding it is
                // emptied below.
                let pushed = unsafe { push_u64(&b2, p, &mut popped) };
                if !pushed {
                    b2.with_page_owner(|page| {
                        let page = page
                            .get_or_insert_with(|| BulkPage::allocate(&a2).expect("system pages"));
                        // SAFETY: as above.
                        unsafe { page.push(word(p), drop_box::<u64>, 8, Kind::Plain) };
                    });
                }
                for d in popped.items() {
                    // SAFETY: popped from a ready page, once.
                    unsafe { d.run() };
                }
                b2.dropped(popped.len());
            });
            let (b3, d3) = (buf.clone(), drops.clone());
            let stealer = thread::spawn(move || {
                let stolen = b3.steal_drain(|| fence(Ordering::SeqCst), |taken| taken);
                b3.wait_for_drops();
                let taken = stolen.as_ref().map_or(0, |(_, done)| *done);
                assert!(
                    d3.load(Ordering::SeqCst) >= taken,
                    "an object taken from the drain was still being dropped"
                );
                if let Some((mut rest, done)) = stolen {
                    rest.forget_front(done);
                    rest.drop_objects();
                }
            });
            stealer.join().unwrap();
            owner.join().unwrap();
            buf.with_drain_owner(|d| {
                if let Some((mut rest, done)) = d.take() {
                    rest.forget_front(done);
                    rest.drop_objects();
                }
            });
            buf.with_page_owner(|page| {
                if let Some(mut page) = page.take() {
                    page.drop_objects();
                }
            });
            assert_eq!(drops.load(Ordering::SeqCst), 2);
        });
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::callbacks::bulk::{drop_box, word, PageAllocator, SystemPageAllocator};
    use crate::policy::{DRAIN_EVERY, DRAIN_STEP, DRAIN_STEP_HURRY, DRAIN_STEP_KEEPING_UP};
    use std::sync::Arc;

    /// A drain of `n` boxed `u64`s at `step`, beside an empty bulk page.
    fn buffer_with_drain(alloc: &Arc<dyn PageAllocator>, n: usize, step: usize) -> LocalBuffer {
        let buf = LocalBuffer::default();
        let mut ready = BulkPage::allocate(alloc).expect("system pages");
        for i in 0..n {
            let p = Box::into_raw(Box::new(i as u64)).cast::<()>();
            // SAFETY: from `Box::into_raw`, dropped once by the drain.
            unsafe { ready.push(word(p), drop_box::<u64>, 8, Kind::Plain) };
        }
        buf.with_drain_owner(|d| *d = Drain::new(ready, step));
        buf.with_page_owner(|p| *p = BulkPage::allocate(alloc));
        buf
    }

    /// Retires `retires` boxed `u64`s into `buf` as its owner, running what
    /// each takes from the drain; returns how many each retire took.
    fn retire(buf: &LocalBuffer, retires: usize) -> Vec<usize> {
        (0..retires)
            .map(|_| {
                let mut popped = Popped::default();
                let p = Box::into_raw(Box::new(7u64)).cast::<()>();
                // SAFETY: `p` is from `Box::into_raw`, not queued yet.
                let pushed = unsafe { push_u64(buf, p, &mut popped) };
                assert!(pushed, "the page has room");
                let n = popped.len();
                for d in popped.items() {
                    // SAFETY: popped from a ready page, once.
                    unsafe { d.run() };
                }
                buf.dropped(n);
                n
            })
            .collect()
    }

    fn empty(buf: &LocalBuffer) {
        buf.with_page_owner(|page| {
            if let Some(mut page) = page.take() {
                page.drop_objects();
            }
        });
        buf.with_drain_owner(|d| {
            if let Some((mut rest, done)) = d.take() {
                rest.forget_front(done);
                rest.drop_objects();
            }
        });
    }

    /// A drain's objects go `DRAIN_EVERY` steps at a time, at every
    /// `DRAIN_EVERY`-th retire (so four frees follow four allocations and
    /// glibc's thread cache recycles them), and at every retire while it
    /// hurries; the rate per retire is its step either way.
    #[test]
    fn a_drain_takes_its_steps_together_at_every_fourth_retire_unless_it_hurries() {
        let alloc: Arc<dyn PageAllocator> = Arc::new(SystemPageAllocator);
        let retires = 4 * DRAIN_EVERY;
        for (step, per_take, every) in [
            (DRAIN_STEP_KEEPING_UP, DRAIN_EVERY, DRAIN_EVERY),
            (DRAIN_STEP, DRAIN_STEP * DRAIN_EVERY, DRAIN_EVERY),
            (DRAIN_STEP_HURRY, DRAIN_STEP_HURRY, 1),
        ] {
            let buf = buffer_with_drain(&alloc, 200, step);
            let taken = retire(&buf, retires);
            for (i, n) in taken.iter().enumerate() {
                let want = if i % every == 0 { per_take } else { 0 };
                assert_eq!(*n, want, "step {step}, retire {i}: {taken:?}");
            }
            assert_eq!(taken.iter().sum::<usize>(), step * retires, "step {step}");
            assert_eq!(
                buf.drain_count.load(Ordering::Relaxed),
                200 - step * retires
            );
            assert_eq!(buf.dropping.load(Ordering::Relaxed), 0);
            empty(&buf);
        }
    }

    /// A drain taken whole by its owner (a thread about to wait for its
    /// garbage drops it itself) shows empty at once, with what it had left
    /// counted in `dropping` until the owner has dropped it: a `barrier`
    /// that finds the drain empty waits for those drops.
    #[test]
    fn a_drain_taken_whole_by_its_owner_counts_its_rest_as_dropping() {
        let alloc: Arc<dyn PageAllocator> = Arc::new(SystemPageAllocator);
        let buf = buffer_with_drain(&alloc, 50, DRAIN_STEP);
        let popped: usize = retire(&buf, DRAIN_EVERY).iter().sum();
        assert!(popped > 0 && popped < 50);
        let (mut page, done) = buf.take_drain_to_drop().expect("the drain holds a page");
        assert_eq!(done, popped);
        assert_eq!(buf.drain_count.load(Ordering::Relaxed), 0);
        assert_eq!(buf.drain_bytes.load(Ordering::Relaxed), 0);
        assert_eq!(buf.dropping.load(Ordering::Relaxed), 50 - popped);
        page.forget_front(done);
        assert_eq!(page.drop_objects(), 0);
        buf.dropped(50 - popped);
        assert_eq!(buf.dropping.load(Ordering::Relaxed), 0);
        assert!(buf.take_drain_to_drop().is_none(), "taken once");
        empty(&buf);
    }

    /// The last objects of a drain go at its next point, however few.
    #[test]
    fn a_drain_short_of_a_batch_goes_whole() {
        let alloc: Arc<dyn PageAllocator> = Arc::new(SystemPageAllocator);
        let buf = buffer_with_drain(&alloc, DRAIN_EVERY - 1, DRAIN_STEP_KEEPING_UP);
        let taken = retire(&buf, DRAIN_EVERY + 1);
        assert_eq!(taken[0], DRAIN_EVERY - 1, "{taken:?}");
        assert_eq!(taken.iter().sum::<usize>(), DRAIN_EVERY - 1);
        assert_eq!(buf.drain_count.load(Ordering::Relaxed), 0);
        empty(&buf);
    }
}
