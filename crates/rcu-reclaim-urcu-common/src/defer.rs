//! The `defer_rcu` family, as liburcu does it: each thread that defers owns
//! a queue of 4,096 `(fct, p)` pairs (no allocation per call). A full queue
//! is flushed on the deferring thread: one grace period, then every entry
//! runs there, so a flood is held back by its own frees. A defer thread
//! ("urcu-defer") flushes every queue 100 ms after it is woken by work, and
//! `rcu_defer_barrier` flushes them all on the caller. Flushes are
//! serialized by one lock (liburcu's `rcu_defer_mutex`), held across fork.
//!
//! Where liburcu would deadlock or crash, this module does not: a queue is
//! created on first use (liburcu requires `rcu_defer_register_thread`), a
//! thread that exits without unregistering leaves its queue to the defer
//! thread, and a `defer_rcu` that cannot flush its full queue (inside a
//! read-side section, or from a callback of a flush on the same thread)
//! hands that one call to the domain's callback engine instead.

use std::cell::{Cell, RefCell, UnsafeCell};
use std::ffi::c_void;
use std::os::raw::c_int;
use std::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crate::Flavor;

/// A deferred function: `void (*fct)(void *p)`.
pub type DeferFunc = unsafe extern "C" fn(*mut c_void);

/// liburcu's `DEFER_QUEUE_SIZE`: entries a thread's queue holds.
pub(crate) const QUEUE_SIZE: usize = 1 << 12;

/// How long the defer thread, woken by work, lets entries gather before it
/// flushes every queue (liburcu's defer thread polls 100 ms).
const GATHER: Duration = Duration::from_millis(100);

/// A thread looks at its domain's memory state (`Rcu::memory_state`: a
/// cgroup's limit, a pressure signal) each time its queue reaches a
/// multiple of this many entries, and flushes its own queue there, as it
/// does a full one, once it holds [`OVER_FLUSH_AT`] while usage is over
/// the limit's mark. liburcu's queue of 4,096 entries per thread knows
/// nothing of memory: four threads deferring the frees of 16 KiB objects
/// hold 256 MiB, and were OOM-killed in a 100 MiB cgroup (liburcu too);
/// now they keep to 66 MiB there. Flushing at 2,048 entries while memory
/// is merely short (over three quarters of the mark) cost a flood of 4 KiB
/// objects, which keeps to 65 MiB anyway, 2.5x its rate (6.2 to 2.5 M
/// calls/s), so it is not done.
const MEMORY_LOOK_EVERY: usize = 32;
/// See [`MEMORY_LOOK_EVERY`]: the flush mark over the limit's mark.
const OVER_FLUSH_AT: usize = 128;

#[derive(Clone, Copy)]
struct Entry {
    fct: DeferFunc,
    p: *mut c_void,
}

impl Entry {
    /// Runs the deferred call.
    ///
    /// # Safety
    /// A grace period has passed since `defer_rcu(fct, p)`, and the entry
    /// runs once.
    unsafe fn run(self) {
        // SAFETY: per the contract above and `defer_rcu`'s.
        unsafe { (self.fct)(self.p) }
    }
}

/// One thread's queue: a ring of [`QUEUE_SIZE`] entries between `tail` (the
/// next to run) and `head` (the next free), both counting up forever.
struct Queue {
    /// Written only by the owner thread, after the entry it publishes.
    head: AtomicUsize,
    /// Written only under [`FLUSH`], after the entry it frees was read.
    tail: AtomicUsize,
    /// The owner left (exited or could not unregister in place): whoever
    /// flushes next drains it and drops it from [`QUEUES`].
    orphan: AtomicBool,
    slots: Box<[UnsafeCell<Option<Entry>>]>,
}

// SAFETY: a slot is written by the owner only while it lies outside
// [tail, head) (the owner saw `tail` pass it, Acquire, and `tail` is stored,
// Release, after the slot was read), and read under `FLUSH` only inside
// [tail, head) (after reading `head`, Acquire, which the owner stored,
// Release, after writing the slot). The entries are handed from the
// deferring thread to the one that runs them, as `defer_rcu`'s contract
// allows.
unsafe impl Sync for Queue {}
// SAFETY: as above.
unsafe impl Send for Queue {}

impl Queue {
    fn new() -> Queue {
        Queue {
            head: AtomicUsize::new(0),
            tail: AtomicUsize::new(0),
            orphan: AtomicBool::new(false),
            slots: (0..QUEUE_SIZE).map(|_| UnsafeCell::new(None)).collect(),
        }
    }

    /// Entries queued and not yet run (`tail` read first: it never passes
    /// `head`, which only grows).
    fn len(&self) -> usize {
        let tail = self.tail.load(Ordering::Acquire);
        self.head.load(Ordering::Acquire).wrapping_sub(tail)
    }

    /// Appends `e` and returns how many entries the queue then holds, or
    /// `None` if it is full. Owner only.
    fn try_push(&self, e: Entry) -> Option<usize> {
        let head = self.head.load(Ordering::Relaxed);
        let len = head.wrapping_sub(self.tail.load(Ordering::Acquire));
        if len >= QUEUE_SIZE {
            return None;
        }
        // SAFETY: the owner is the only writer, and the slot is outside
        // [tail, head), so nobody reads it (see `impl Sync for Queue`).
        unsafe { *self.slots[head % QUEUE_SIZE].get() = Some(e) };
        self.head.store(head.wrapping_add(1), Ordering::Release);
        Some(len + 1)
    }

    /// Runs the entries before `upto` (a `head` read before the grace
    /// period the caller waited for), oldest first, freeing each slot before
    /// its entry runs. Returns how many ran.
    fn run_to(&self, upto: usize, _flush: &FlushGuard) -> usize {
        let mut tail = self.tail.load(Ordering::Relaxed);
        let mut n = 0;
        // `upto` may lag behind `tail` when another flush ran further.
        while (upto.wrapping_sub(tail) as isize) > 0 {
            // SAFETY: the slot lies in [tail, head) and `FLUSH` is held
            // (see `impl Sync for Queue`).
            let e = unsafe { (*self.slots[tail % QUEUE_SIZE].get()).take() };
            tail = tail.wrapping_add(1);
            self.tail.store(tail, Ordering::Release);
            if let Some(e) = e {
                // SAFETY: a grace period passed since it was queued (the
                // caller's promise); taken from the slot, it runs once.
                unsafe { e.run() };
                n += 1;
            }
        }
        n
    }
}

/// Every queue, owned or orphaned (briefly locked: never across a grace
/// period or a callback).
static QUEUES: Mutex<Vec<Arc<Queue>>> = Mutex::new(Vec::new());
/// liburcu's `rcu_defer_mutex`: held by whoever flushes, across the grace
/// period and the callbacks; taken before [`QUEUES`] and [`FLUSHER`]. A
/// QSBR thread waits for it offline (its holder may be waiting for a grace
/// period): every `flush_lock` is inside `F::offline_while`.
static FLUSH: Mutex<()> = Mutex::new(());
/// The defer thread: whether it runs; it sleeps on [`WAKE`] while
/// [`SLEEPING`].
static FLUSHER: Mutex<bool> = Mutex::new(false);
static WAKE: Condvar = Condvar::new();
static SLEEPING: AtomicBool = AtomicBool::new(false);
/// Calls handed to the engine (see the module doc) not yet run.
static FALLBACK: AtomicUsize = AtomicUsize::new(0);

fn lock<T>(m: &'static Mutex<T>) -> MutexGuard<'static, T> {
    crate::fork_window::lock_outside(
        m,
        "A defer_rcu call that needs the queue list (the thread's first defer_rcu or \
         rcu_defer_register_thread, ...)",
    )
}

thread_local! {
    /// This thread holds [`FLUSH`] (its callbacks run under it).
    static FLUSHING: Cell<bool> = const { Cell::new(false) };
    static MINE: Mine = const { Mine(RefCell::new(None)) };
}

/// [`FLUSH`], held by this thread.
pub(crate) struct FlushGuard(#[allow(dead_code)] MutexGuard<'static, ()>);

impl Drop for FlushGuard {
    fn drop(&mut self) {
        FLUSHING.with(|f| f.set(false));
    }
}

/// Takes [`FLUSH`], or `None` if this thread holds it already (a callback
/// of its flush, which waiting for it would deadlock).
fn flush_lock() -> Option<FlushGuard> {
    if FLUSHING.with(|f| f.replace(true)) {
        return None;
    }
    // A callback on a crdp thread (`rcu_defer_barrier` in a `call_rcu`
    // callback) says it waits here: `call_rcu_before_fork`, which holds
    // the lock while it waits for that thread to pause, lets it go.
    Some(FlushGuard(crate::crdp::waiting_for_flush(|| lock(&FLUSH))))
}

/// Takes [`FLUSH`] if no one holds it, without waiting: for an online QSBR
/// thread, which must not wait for it online (its holder may wait for a
/// grace period that this thread holds up).
fn try_flush_lock() -> Option<FlushGuard> {
    if FLUSHING.with(|f| f.get()) {
        return None;
    }
    let guard = crate::crdp::try_lock(&FLUSH)?;
    FLUSHING.with(|f| f.set(true));
    Some(FlushGuard(guard))
}

/// For an online QSBR thread's barrier or unregistration: whether it can
/// return at once, online, as liburcu's does when nothing is queued (its
/// grace period is skipped, so the call is no quiescent state). True when
/// the flush lock was free (no flush is running entries it took out of
/// a queue) and `empty` says, under it, that nothing waits. Otherwise
/// the caller goes offline and waits, as before: going offline even for
/// an empty barrier was a quiescent state liburcu's caller never passes,
/// and a grace period could end under its references.
fn nothing_queued_online<F: Flavor>(empty: impl FnOnce() -> bool) -> bool {
    if !F::online() {
        return false;
    }
    let Some(flush) = try_flush_lock() else {
        return false;
    };
    let nothing = FALLBACK.load(Ordering::Acquire) == 0 && empty();
    drop(flush);
    nothing
}

/// This thread's queue; at thread exit it is left to the defer thread.
struct Mine(RefCell<Option<Arc<Queue>>>);

impl Drop for Mine {
    fn drop(&mut self) {
        if let Some(q) = self.0.get_mut().take() {
            orphan(&q);
        }
    }
}

fn orphan(q: &Queue) {
    q.orphan.store(true, Ordering::Release);
    wake_flusher();
}

/// The calling thread's queue, created (and the defer thread started) on
/// first use.
fn register<F: Flavor>(mine: &Mine) -> Arc<Queue> {
    if let Some(q) = &*mine.0.borrow() {
        return q.clone();
    }
    let q = Arc::new(Queue::new());
    lock(&QUEUES).push(q.clone());
    *mine.0.borrow_mut() = Some(q.clone());
    start_flusher::<F>();
    q
}

/// Whether the calling thread may wait for a grace period here.
fn may_flush<F: Flavor>() -> bool {
    !FLUSHING.with(|f| f.get()) && !F::in_read_section()
}

/// Waits for a grace period and runs what `q` holds, on the caller.
fn flush_one<F: Flavor>(q: &Queue, flush: &FlushGuard) {
    let head = q.head.load(Ordering::Acquire);
    if head != q.tail.load(Ordering::Relaxed) {
        // The caller is offline (QSBR): see `F::offline_while` at each.
        F::rcu().synchronize();
        q.run_to(head, flush);
    }
}

/// liburcu's `rcu_defer_barrier` body: one grace period for what every
/// queue holds now, then all of it runs on the caller; drained orphans are
/// dropped. Returns how many entries ran.
fn flush_all<F: Flavor>(flush: &FlushGuard) -> usize {
    let queues: Vec<(Arc<Queue>, usize)> = lock(&QUEUES)
        .iter()
        .map(|q| (q.clone(), q.head.load(Ordering::Acquire)))
        .collect();
    let mut ran = 0;
    if queues
        .iter()
        .any(|(q, h)| *h != q.tail.load(Ordering::Relaxed))
    {
        // The caller is offline (QSBR): see `F::offline_while` at each.
        F::rcu().synchronize();
        ran = queues.iter().map(|(q, h)| q.run_to(*h, flush)).sum();
    }
    lock(&QUEUES).retain(|q| !(q.orphan.load(Ordering::Acquire) && q.len() == 0));
    ran
}

/// Hands one call to the domain's engine (a full queue that cannot be
/// flushed here, or a thread whose queue is already gone at its exit).
fn fallback<F: Flavor>(e: Entry) {
    struct Deferred(Entry);
    // SAFETY: `defer_rcu`'s contract: `p` is handed over to `fct`, which
    // may run on another thread after a grace period.
    unsafe impl Send for Deferred {}
    let d = Deferred(e);
    FALLBACK.fetch_add(1, Ordering::Relaxed);
    F::rcu().call(move || {
        let d = d;
        // SAFETY: the engine runs it once, after a grace period.
        unsafe { d.0.run() };
        FALLBACK.fetch_sub(1, Ordering::Release);
    });
}

/// Queues `e` on the caller's queue, flushing it first if it is full and
/// the caller may wait; false if it could not be queued.
fn push<F: Flavor>(mine: &Mine, e: Entry) -> bool {
    let mut queued = None;
    if let Ok(b) = mine.0.try_borrow() {
        if let Some(q) = &*b {
            match q.try_push(e) {
                Some(len) if len % MEMORY_LOOK_EVERY != 0 => return true,
                Some(len) => queued = Some((q.clone(), len)),
                None => {}
            }
        }
    }
    if let Some((q, len)) = queued {
        // Outside the queue's borrow: the flush runs callbacks, which may
        // unregister this thread.
        flush_if_over_mark::<F>(&q, len);
        return true;
    }
    let q = register::<F>(mine);
    if q.try_push(e).is_some() {
        return true;
    }
    // A crdp thread never waits for the flush lock: `call_rcu_before_fork`
    // holds it while it waits for the crdps to park.
    if crate::call_rcu::on_crdp_thread() || !may_flush::<F>() {
        return false;
    }
    // Offline (QSBR) while it waits for the lock too: its holder may be
    // waiting for a grace period.
    F::offline_while(|| {
        let Some(flush) = flush_lock() else {
            return false;
        };
        flush_one::<F>(&q, &flush);
        q.try_push(e).is_some()
    })
}

/// After a push that left `len` entries in the caller's queue `q` (a
/// multiple of [`MEMORY_LOOK_EVERY`]): flushes it on the caller, as a full
/// queue is, if it holds [`OVER_FLUSH_AT`] and usage is over the limit's
/// mark
/// (where the caller may wait: not inside a read-side section, a defer
/// callback, nor on a `call_rcu` thread).
#[cold]
fn flush_if_over_mark<F: Flavor>(q: &Queue, len: usize) {
    use rcu_reclaim::pressure::MemoryState;
    let due = len >= OVER_FLUSH_AT && crate::call_rcu::memory_state::<F>() == MemoryState::OverMark;
    if !due || crate::call_rcu::on_crdp_thread() || !may_flush::<F>() {
        return;
    }
    F::offline_while(|| {
        if let Some(flush) = flush_lock() {
            flush_one::<F>(q, &flush);
        }
    });
}

/// Runs `fct(p)` after a grace period: on this thread when its queue of
/// 4,096 fills (after waiting for a grace period there), else on the defer
/// thread or whichever thread calls `rcu_defer_barrier`.
///
/// # Safety
/// `fct` may be called with `p` on another thread after a grace period.
pub unsafe fn defer_rcu<F: Flavor>(fct: DeferFunc, p: *mut c_void) {
    let e = Entry { fct, p };
    if MINE.try_with(|m| push::<F>(m, e)).unwrap_or(false) {
        wake_flusher();
    } else {
        fallback::<F>(e);
    }
}

/// Creates the calling thread's queue (done on first `defer_rcu` anyway);
/// 0, also when it has one.
pub fn register_thread<F: Flavor>() -> c_int {
    let _ = MINE.try_with(register::<F>);
    0
}

/// Runs what the thread deferred (after a grace period, on the caller) and
/// drops its queue. Inside a read-side section or a defer callback, where
/// it cannot wait, it prints an error and leaves the queue to the defer
/// thread.
pub fn unregister_thread<F: Flavor>() {
    let Some(q) = MINE.try_with(|m| m.0.borrow_mut().take()).ok().flatten() else {
        return;
    };
    if may_flush::<F>() && nothing_queued_online::<F>(|| q.len() == 0) {
        lock(&QUEUES).retain(|x| !Arc::ptr_eq(x, &q));
        return;
    }
    let flushed = may_flush::<F>()
        && F::offline_while(|| {
            let Some(flush) = flush_lock() else {
                return false;
            };
            flush_one::<F>(&q, &flush);
            lock(&QUEUES).retain(|x| !Arc::ptr_eq(x, &q));
            true
        });
    if !flushed {
        misuse::<F>(
            "rcu_defer_unregister_thread",
            "its queue is left to the defer thread",
        );
        orphan(&q);
    }
}

fn misuse<F: Flavor>(what: &str, then: &str) {
    let place = if crate::fork_window::forking_here() {
        "between call_rcu_before_fork() and call_rcu_after_fork_parent() / _child(), which \
         hold the defer_rcu flush for the fork"
    } else if F::in_read_section() {
        "within RCU read-side critical section"
    } else {
        "from a defer_rcu callback"
    };
    eprintln!("[error] rcu-reclaim-urcu: {what}() called {place}; {then}.");
}

/// Waits until everything deferred before the call, by any thread, has run
/// (on the caller, after one grace period).
pub fn barrier<F: Flavor>() {
    if !may_flush::<F>() {
        return misuse::<F>("rcu_defer_barrier", "it returns at once");
    }
    if nothing_queued_online::<F>(|| lock(&QUEUES).iter().all(|q| q.len() == 0)) {
        return;
    }
    F::offline_while(|| {
        let Some(flush) = flush_lock() else {
            return misuse::<F>("rcu_defer_barrier", "it returns at once");
        };
        flush_all::<F>(&flush);
        drop(flush);
        if FALLBACK.load(Ordering::Acquire) != 0 {
            if rcu_reclaim::Rcu::in_callback() {
                // Run by the engine itself (deferred from a defer_rcu
                // callback while the queues were full): its barrier would
                // wait for this callback.
                return misuse::<F>(
                    "rcu_defer_barrier",
                    "the calls deferred with it run after it returns",
                );
            }
            let _ = crate::no_unwind(|| F::rcu().barrier());
        }
    })
}

/// Runs what this thread deferred (after a grace period, on the caller).
pub fn barrier_thread<F: Flavor>() {
    if !may_flush::<F>() {
        return misuse::<F>("rcu_defer_barrier_thread", "it returns at once");
    }
    let mine_empty = || {
        MINE.try_with(|m| m.0.borrow().as_ref().map_or(true, |q| q.len() == 0))
            .unwrap_or(true)
    };
    if nothing_queued_online::<F>(mine_empty) {
        return;
    }
    F::offline_while(|| {
        let Some(flush) = flush_lock() else {
            return misuse::<F>("rcu_defer_barrier_thread", "it returns at once");
        };
        if let Some(q) = MINE.try_with(|m| m.0.borrow().clone()).ok().flatten() {
            flush_one::<F>(&q, &flush);
        }
    })
}

/// Entries deferred and not yet run, in every queue (and handed to the
/// engine, which counts those itself).
pub fn pending() -> usize {
    lock(&QUEUES).iter().map(|q| q.len()).sum()
}

/// For a reclaimer (`rcu_reclaim_run_callbacks`): flushes every queue on
/// the caller, unless it may not wait here. Returns how many ran.
pub fn drain_here<F: Flavor>() -> usize {
    if !may_flush::<F>() {
        return 0;
    }
    F::offline_while(|| match flush_lock() {
        Some(flush) => flush_all::<F>(&flush),
        None => 0,
    })
}

/// Starts the defer thread unless it runs.
fn start_flusher<F: Flavor>() {
    let mut started = lock(&FLUSHER);
    if *started {
        return;
    }
    // Signals blocked for good there, as in the call_rcu threads: a
    // program's handler never runs inside the flusher's locks.
    crate::with_signals_blocked(|| {
        std::thread::Builder::new()
            .name("urcu-defer".into())
            .spawn(flusher::<F>)
    })
    .unwrap_or_else(|e| crate::die(&format!("cannot start the defer thread: {e}")));
    *started = true;
}

/// Wakes the defer thread if it sleeps; cheap otherwise.
fn wake_flusher() {
    // Pairs with the fence in `flusher`: either it sees this work, or this
    // sees it asleep.
    fence(Ordering::SeqCst);
    if SLEEPING.load(Ordering::Relaxed) && SLEEPING.swap(false, Ordering::Relaxed) {
        let _g = lock(&FLUSHER);
        WAKE.notify_one();
    }
}

/// liburcu's defer thread: sleeps until there is work, lets it gather for
/// [`GATHER`], then flushes every queue.
fn flusher<F: Flavor>() {
    loop {
        SLEEPING.store(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        let work = lock(&QUEUES)
            .iter()
            .any(|q| q.len() != 0 || q.orphan.load(Ordering::Acquire));
        if work {
            SLEEPING.store(false, Ordering::Relaxed);
        } else {
            let mut g = lock(&FLUSHER);
            while SLEEPING.load(Ordering::Relaxed) {
                g = WAKE.wait(g).unwrap_or_else(|p| p.into_inner());
            }
        }
        std::thread::sleep(GATHER);
        if let Some(flush) = flush_lock() {
            flush_all::<F>(&flush);
        }
    }
}

/// What `call_rcu_before_fork` holds across `fork()`: no flush is under way
/// and the defer thread holds nothing.
pub(crate) struct ForkHeld {
    // Dropped in this order.
    flusher: MutexGuard<'static, bool>,
    queues: MutexGuard<'static, Vec<Arc<Queue>>>,
    _flush: FlushGuard,
}

/// Before `fork()`, first of all: the flush lock (a flush under way may
/// wait for a grace period, and its callbacks may use `call_rcu`, so before
/// the crdps are paused). `None` from a defer callback, which holds it.
pub(crate) fn before_fork() -> Option<FlushGuard> {
    flush_lock()
}

impl ForkHeld {
    /// Before `fork()`, once the crdp threads are parked (their callbacks
    /// may create queues and wake the defer thread): the rest.
    pub(crate) fn new(flush: FlushGuard) -> ForkHeld {
        ForkHeld {
            queues: lock(&QUEUES),
            flusher: lock(&FLUSHER),
            _flush: flush,
        }
    }

    pub(crate) fn parent(self) {}

    /// In the child, where only the forking thread lives: the other
    /// threads' queues are orphans (the next flush runs them, as liburcu's
    /// child runs them at its next barrier), and a new defer thread starts.
    pub(crate) fn child<F: Flavor>(mut self) {
        let mine = MINE
            .try_with(|m| m.0.borrow().as_ref().map(Arc::as_ptr))
            .ok()
            .flatten();
        for q in self.queues.iter() {
            if Some(Arc::as_ptr(q)) != mine {
                q.orphan.store(true, Ordering::Release);
            }
        }
        let any = !self.queues.is_empty();
        *self.flusher = false;
        SLEEPING.store(false, Ordering::Relaxed);
        drop(self);
        if any {
            start_flusher::<F>();
        }
    }
}

/// What C cannot reach: the cases where liburcu would deadlock or crash.
#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    use crate::TestMemb as Memb;

    fn urcu_memb_read_lock() {
        Memb::rcu().read_lock_raw();
    }
    fn urcu_memb_read_unlock() {
        assert!(Memb::rcu().read_unlock_raw());
    }
    unsafe fn urcu_memb_defer_rcu(fct: DeferFunc, p: *mut c_void) {
        // SAFETY: the caller's contract.
        unsafe { defer_rcu::<Memb>(fct, p) }
    }
    fn urcu_memb_defer_barrier() {
        barrier::<Memb>()
    }
    fn urcu_memb_defer_barrier_thread() {
        barrier_thread::<Memb>()
    }
    fn urcu_memb_defer_unregister_thread() {
        unregister_thread::<Memb>()
    }

    /// `p` points to a counter: counts the run.
    unsafe extern "C" fn count(p: *mut c_void) {
        // SAFETY: every test passes a live `AtomicU32`.
        unsafe { &*p.cast::<AtomicU32>() }.fetch_add(1, Ordering::Relaxed);
    }

    fn counters(n: usize) -> &'static [AtomicU32] {
        Box::leak((0..n).map(|_| AtomicU32::new(0)).collect())
    }

    fn defer_all(c: &'static [AtomicU32]) {
        for x in c {
            // SAFETY: `count` with a leaked counter.
            unsafe { urcu_memb_defer_rcu(count, ptr(x)) };
        }
    }

    fn ptr(x: &AtomicU32) -> *mut c_void {
        (x as *const AtomicU32).cast_mut().cast()
    }

    fn all_once(c: &[AtomicU32]) -> bool {
        c.iter().all(|x| x.load(Ordering::Relaxed) == 1)
    }

    #[test]
    fn full_queue_inside_a_read_side_section_never_waits() {
        let c = counters(QUEUE_SIZE + 100);
        urcu_memb_read_lock();
        defer_all(c);
        // Nothing could run before the section ends.
        assert!(c.iter().all(|x| x.load(Ordering::Relaxed) == 0));
        urcu_memb_read_unlock();
        urcu_memb_defer_barrier();
        assert!(all_once(c));
        urcu_memb_defer_unregister_thread();
    }

    #[test]
    fn the_defer_thread_blocks_the_programs_signals() {
        let c = counters(10);
        defer_all(c);
        urcu_memb_defer_barrier();
        assert!(all_once(c));
        crate::assert_threads_block_signals("urcu-defer");
    }

    #[test]
    fn thread_exit_without_unregister_leaves_the_queue_to_be_drained() {
        let c = counters(100);
        let queue = std::thread::spawn(move || {
            defer_all(c);
            MINE.with(|m| Arc::downgrade(m.0.borrow().as_ref().unwrap()))
        })
        .join()
        .unwrap();
        urcu_memb_defer_barrier();
        assert!(all_once(c));
        // The drained orphan was dropped (flushes hold clones only under
        // the flush lock).
        let _flush = flush_lock().unwrap();
        assert!(queue.upgrade().is_none());
    }

    static REENTRANT: AtomicU32 = AtomicU32::new(0);
    const CAP: u32 = 3 * QUEUE_SIZE as u32;

    /// Defers two more of itself per run for the first `CAP` runs, and
    /// calls the barriers (which must return, not wait for themselves).
    unsafe extern "C" fn again(_: *mut c_void) {
        if REENTRANT.fetch_add(1, Ordering::Relaxed) < CAP {
            // SAFETY: `again` ignores its argument.
            unsafe {
                urcu_memb_defer_rcu(again, std::ptr::null_mut());
                urcu_memb_defer_rcu(again, std::ptr::null_mut());
            }
        }
        urcu_memb_defer_barrier();
        urcu_memb_defer_barrier_thread();
    }

    #[test]
    fn callbacks_that_defer_and_call_barriers_do_not_deadlock() {
        std::thread::spawn(|| {
            // SAFETY: `again` ignores its argument.
            unsafe { urcu_memb_defer_rcu(again, std::ptr::null_mut()) };
            // Each barrier runs what the previous one's callbacks queued.
            while pending_of_this_test() != 0 {
                urcu_memb_defer_barrier();
            }
            urcu_memb_defer_unregister_thread();
        })
        .join()
        .unwrap();
        assert_eq!(REENTRANT.load(Ordering::Relaxed), 1 + 2 * CAP);
    }

    /// Nothing of `again` is left queued anywhere (other tests' entries
    /// may be).
    fn pending_of_this_test() -> u32 {
        let runs = REENTRANT.load(Ordering::Relaxed);
        // 1 initial + 2 per run up to the cap.
        let queued = 1 + 2 * runs.min(CAP);
        queued - runs
    }

    #[test]
    fn a_forked_child_runs_what_was_queued_before_the_fork() {
        let c = counters(50);
        defer_all(c);
        crate::fork::before_fork::<Memb>();
        // SAFETY: fork has no preconditions; the child only runs the
        // after-fork hook, the barrier, and `_exit`.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            crate::fork::after_fork_child::<Memb>();
            urcu_memb_defer_barrier();
            let code = if all_once(c) { 0 } else { 1 };
            // SAFETY: leaves the child without running the parent's
            // atexit handlers or the test harness.
            unsafe { libc::_exit(code) };
        }
        crate::fork::after_fork_parent::<Memb>();
        assert!(pid > 0);
        let mut status = 0;
        // SAFETY: waits for our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
        urcu_memb_defer_barrier();
        assert!(all_once(c));
        urcu_memb_defer_unregister_thread();
    }
}
