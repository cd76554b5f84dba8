//! The synchronisation primitives the crate is built on, swapped for loom's
//! model-checked versions under `--cfg loom` (as crossbeam-epoch does).

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{
    fence, AtomicBool, AtomicI32, AtomicPtr, AtomicU64, AtomicUsize,
};
#[cfg(loom)]
pub(crate) use loom::sync::{Arc, Mutex, MutexGuard};
#[cfg(loom)]
pub(crate) use loom::thread;

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{
    fence, AtomicBool, AtomicI32, AtomicPtr, AtomicU64, AtomicUsize,
};
#[cfg(not(loom))]
pub(crate) use std::sync::{Arc, Mutex, MutexGuard};
#[cfg(not(loom))]
pub(crate) use std::thread;

/// Runs `f`, catching a panic, as `catch_unwind` does, but never lets the
/// caught panic's payload unwind either: a payload is the user's value
/// (`std::panic::panic_any`), and its `Drop` may panic too. Dropped by the
/// caller, such a payload unwound out of the very code that caught the
/// first panic (a callback batch, losing the callbacks after it; a
/// barrier; the global allocator). Here its drop is caught in turn, and a
/// payload of that second panic is leaked, not dropped. `Err` carries the
/// first panic's message, if it has one of text.
pub(crate) fn catch_panic<R>(f: impl FnOnce() -> R) -> Result<R, Option<String>> {
    use std::panic::{catch_unwind, AssertUnwindSafe};
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => Ok(r),
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned());
            drop_payload(payload);
            Err(msg)
        }
    }
}

/// Runs `report`, a `tracing` event (or `sys::error_loud`) that reports a
/// caught panic of the program's code, catching a panic of the subscriber,
/// which is the program's code too: unwinding from the report undid what
/// the catch protected (a background thread ended, the rest of a callback
/// batch was lost, a panic left the global allocator).
pub(crate) fn report_caught(report: impl FnOnce()) {
    let _ = catch_panic(report);
}

/// Runs `f`, the program's code called from where no panic may leave (a
/// destructor, which may run while its thread unwinds or at thread exit,
/// where a second panic aborts the process): a panic is caught and
/// reported loudly as `describe` words it from the panic's message.
#[cfg(not(loom))]
pub(crate) fn run_reporting_panic(f: impl FnOnce(), describe: impl FnOnce(&str) -> String) {
    if let Err(msg) = catch_panic(f) {
        report_caught(|| {
            crate::sys::error_loud(&describe(msg.as_deref().unwrap_or("(no message)")));
        });
    }
}

/// Runs `run` on each of `items` as [`catch_panic`] would run each alone,
/// with one `catch_unwind` for a run of them rather than one per item
/// (about a fifth of a 64-byte deferred free's instructions went to
/// entering and leaving it): a panic ends the run at the item that
/// panicked, `on_panic` gets its message, and the next run starts with the
/// item after it, so none is skipped and none runs twice. Returns how many
/// panicked.
pub(crate) fn run_each_caught<T>(
    mut items: impl Iterator<Item = T>,
    mut run: impl FnMut(T),
    mut on_panic: impl FnMut(Option<String>),
) -> usize {
    let mut panics = 0;
    loop {
        match catch_panic(|| items.by_ref().for_each(&mut run)) {
            Ok(()) => return panics,
            Err(msg) => {
                panics += 1;
                on_panic(msg);
            }
        }
    }
}

/// Drops a caught panic's payload that will not be resumed (the user's
/// value), without letting a panic of its own `Drop` unwind: that second
/// payload is leaked.
pub(crate) fn drop_payload(payload: Box<dyn std::any::Any + Send>) {
    use std::panic::{catch_unwind, AssertUnwindSafe};
    if let Err(again) = catch_unwind(AssertUnwindSafe(move || drop(payload))) {
        std::mem::forget(again);
    }
}

/// Runs `weigh`, the user's sizing of a value about to be retired (a
/// [`ReclaimSize`](crate::ReclaimSize) impl or a weigher), catching a
/// panic so that the caller can still retire the value, booking
/// `fallback` bytes, before it resumes the panic (the payload returned).
/// Unwinding straight out of a retiring call lost the value: one handed
/// over raw leaked; an unlinked one was dropped as the unwind went, on this
/// thread after a blocking grace period (under the caller's locks, which
/// its `Drop` may take), or leaked inside a read-side section.
pub(crate) fn weigh_caught(
    fallback: usize,
    weigh: impl FnOnce() -> usize,
) -> (usize, Option<Box<dyn std::any::Any + Send>>) {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(weigh)) {
        Ok(bytes) => (bytes, None),
        Err(panic) => (fallback, Some(panic)),
    }
}

thread_local! {
    /// Set while this thread may not enter memory reclaim: it is reclaiming
    /// already, holds one of the crate's locks, or runs inside `no_reclaim`.
    pub(crate) static NO_RECLAIM: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

#[cfg(not(loom))]
std::thread_local! {
    /// How many stripe locks of maps this thread holds (nested map writes:
    /// `map::table::Held`). Kept here, below the domain, so that a wait's
    /// misuse panic can name the write whose section it is in. No
    /// destructor: usable by writes in other thread-locals' destructors.
    pub(crate) static MAP_WRITE_DEPTH: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    /// How many `RcuCell::update` closures run on this thread
    /// (`cell::updating`), likewise. No destructor.
    pub(crate) static CELL_UPDATE_DEPTH: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Whether this thread runs code that a map (or cache) write runs under
/// its key's lock, inside the read-side section that write holds
/// (`update`'s `f`, `remove_if`'s `pred`, `get_or_insert_with`'s `f`, a
/// key's `Hash` or `Eq`): for the misuse panic of a wait there.
pub(crate) fn in_map_write() -> bool {
    #[cfg(not(loom))]
    {
        MAP_WRITE_DEPTH.get() > 0
    }
    #[cfg(loom)]
    {
        false
    }
}

/// Whether an `RcuCell::update` closure runs on this thread (inside the
/// read-side section its update holds): for the misuse panic of a wait
/// there.
pub(crate) fn in_cell_update() -> bool {
    #[cfg(not(loom))]
    {
        CELL_UPDATE_DEPTH.get() > 0
    }
    #[cfg(loom)]
    {
        false
    }
}

/// A held lock of the crate. While any is held the thread is marked
/// no-reclaim, so an allocation made under the lock can never enter direct
/// reclaim, which may need the same lock (the kernel's `GFP_NOFS` idea).
pub(crate) struct Locked<'a, T> {
    guard: MutexGuard<'a, T>,
    prev: bool,
}

impl<T> std::ops::Deref for Locked<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> std::ops::DerefMut for Locked<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

impl<T> Drop for Locked<'_, T> {
    fn drop(&mut self) {
        NO_RECLAIM.with(|c| c.set(self.prev));
    }
}

fn mark<T>(guard: MutexGuard<'_, T>) -> Locked<'_, T> {
    Locked {
        guard,
        prev: NO_RECLAIM.with(|c| c.replace(true)),
    }
}

/// Several held locks of the crate, taken in list order and released in
/// the reverse order (a `Vec` would drop them first to last, and leave the
/// no-reclaim mark of the second-taken lock behind).
#[cfg(not(loom))]
pub(crate) struct LockedAll<'a, T>(Vec<ForkHeld<'a, T>>);

#[cfg(not(loom))]
impl<'a, T> LockedAll<'a, T> {
    pub(crate) fn new(held: Vec<ForkHeld<'a, T>>) -> Self {
        LockedAll(held)
    }

    /// The locks' contents, in the order they were taken.
    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = &mut ForkHeld<'a, T>> {
        self.0.iter_mut()
    }
}

#[cfg(not(loom))]
thread_local! {
    /// The addresses of the mutexes this thread holds across `fork()` (a
    /// `ForkGuard`'s): locking one again would wait for itself.
    static FORK_HELD: std::cell::RefCell<Vec<usize>> = const { std::cell::RefCell::new(Vec::new()) };
    /// Whether `FORK_HELD` is non-empty (the check `lock` makes).
    static FORKING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A crate lock held across `fork()` by a `ForkGuard`: while it is, taking
/// it again on this thread panics with a message instead of deadlocking.
#[cfg(not(loom))]
pub(crate) struct ForkHeld<'a, T> {
    held: Locked<'a, T>,
    addr: usize,
}

#[cfg(not(loom))]
impl<T> std::ops::Deref for ForkHeld<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.held
    }
}

#[cfg(not(loom))]
impl<T> std::ops::DerefMut for ForkHeld<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.held
    }
}

#[cfg(not(loom))]
impl<T> Drop for ForkHeld<'_, T> {
    fn drop(&mut self) {
        // Before the lock itself is released (fields drop after this).
        let _ = FORK_HELD.try_with(|h| {
            let mut h = h.borrow_mut();
            if let Some(i) = h.iter().rposition(|&a| a == self.addr) {
                h.swap_remove(i);
            }
            let still = !h.is_empty();
            let _ = FORKING.try_with(|f| f.set(still));
        });
    }
}

/// Locks `m` to hold it across `fork()` (see [`ForkHeld`]).
#[cfg(not(loom))]
pub(crate) fn lock_for_fork<T>(m: &Mutex<T>) -> ForkHeld<'_, T> {
    let held = lock(m);
    let addr = m as *const Mutex<T> as usize;
    FORK_HELD.with(|h| h.borrow_mut().push(addr));
    FORKING.with(|f| f.set(true));
    ForkHeld { held, addr }
}

/// Whether this thread holds locks of a domain stopped for `fork()` (a
/// `ForkGuard` alive on it, or leaked).
#[cfg(not(loom))]
#[inline]
pub(crate) fn holds_fork_locks() -> bool {
    FORKING.with(std::cell::Cell::get)
}

#[cfg(not(loom))]
#[cold]
#[inline(never)]
fn check_not_fork_held(addr: usize) {
    // `try_with`: at the thread's exit the list may be gone already (a
    // guard leaked on this thread); `Registrations`' drop does not lock
    // then (`reader::let_go`).
    if FORK_HELD
        .try_with(|h| h.borrow().contains(&addr))
        .unwrap_or(false)
    {
        panic!(
            "rcu-reclaim: this thread holds the domain stopped for fork() (a ForkGuard from \
             prepare_fork()), and this call would wait for it. Call fork() and resolve the \
             guard with parent() or child() before using the domain again"
        );
    }
}

#[cfg(not(loom))]
impl<T> Drop for LockedAll<'_, T> {
    fn drop(&mut self) {
        while let Some(last) = self.0.pop() {
            drop(last);
        }
    }
}

/// Locks `m`, ignoring poisoning: every structure the crate guards with a
/// mutex stays consistent even if a holder panicked (the holder never leaves
/// it half-updated), so a poisoned lock is safe to keep using.
pub(crate) fn lock<T>(m: &Mutex<T>) -> Locked<'_, T> {
    #[cfg(not(loom))]
    if holds_fork_locks() {
        check_not_fork_held(m as *const Mutex<T> as usize);
    }
    if let Some(held) = try_lock(m) {
        return held;
    }
    #[cfg(not(loom))]
    if let Some(f) = ForkedWaits::current().filter(|f| f.forked()) {
        return lock_within(m, FORKED_WAIT, |waited| {
            f.stuck("a lock of the domain", waited)
        });
    }
    mark(match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    })
}

/// As [`lock`], without waiting: `None` if the lock is held.
pub(crate) fn try_lock<T>(m: &Mutex<T>) -> Option<Locked<'_, T>> {
    match m.try_lock() {
        Ok(g) => Some(mark(g)),
        Err(std::sync::TryLockError::Poisoned(p)) => Some(mark(p.into_inner())),
        Err(std::sync::TryLockError::WouldBlock) => None,
    }
}

/// As [`lock`], for a wait that may never end (a holder that does not
/// exist in a forked child): tries, yielding then
/// napping, and once `limit` has passed without the lock returns what
/// `stuck` makes of the time waited (it panics, naming the cause and the
/// fix).
#[cfg(not(loom))]
#[cold]
#[track_caller]
pub(crate) fn lock_within<'a, T>(
    m: &'a Mutex<T>,
    limit: std::time::Duration,
    stuck: impl FnOnce(std::time::Duration) -> Locked<'a, T>,
) -> Locked<'a, T> {
    retry_within(|| try_lock(m), limit, stuck)
}

/// Tries `attempt`, yielding then napping, until it succeeds or `limit`
/// has passed; then returns what `stuck` makes of the time waited.
#[cfg(not(loom))]
pub(crate) fn retry_within<G>(
    mut attempt: impl FnMut() -> Option<G>,
    limit: std::time::Duration,
    stuck: impl FnOnce(std::time::Duration) -> G,
) -> G {
    let start = std::time::Instant::now();
    let mut tries = 0u32;
    loop {
        if let Some(held) = attempt() {
            return held;
        }
        let waited = start.elapsed();
        if waited >= limit {
            return stuck(waited);
        }
        tries += 1;
        if tries < 64 {
            std::thread::yield_now();
        } else {
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
    }
}

/// How long a process forked without `Rcu::prepare_fork` waits for a
/// lock or a flag of a domain that a thread of its parent may have held at
/// the fork (such a thread does not exist here, so it is never released)
/// before it says so ([`ForkedFrom::stuck`]).
#[cfg(not(loom))]
pub(crate) const FORKED_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

#[cfg(not(loom))]
thread_local! {
    /// See [`ForkedWaits`].
    static FORKED_FROM: std::cell::Cell<Option<ForkedFrom>> =
        const { std::cell::Cell::new(None) };
}

/// A domain's call that gives up on its waits if it runs in a process
/// forked from the domain's without `Rcu::prepare_fork` (see
/// [`ForkedWaits`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ForkedFrom {
    /// The domain's number and the process it belongs to.
    pub(crate) domain: u64,
    pub(crate) home: u32,
    /// The call, for the panic.
    pub(crate) what: &'static str,
}

impl ForkedFrom {
    /// Whether this process is not the domain's (forked from it without
    /// `prepare_fork`, or `ForkGuard::child` not called yet): a system
    /// call, so asked only once a wait blocks.
    #[cfg(not(loom))]
    pub(crate) fn forked(&self) -> bool {
        self.home != std::process::id()
    }

    /// The panic of a wait that cannot end: `which` has been held for
    /// `waited`, most likely by a thread of the parent.
    #[cfg(not(loom))]
    #[cold]
    #[inline(never)]
    pub(crate) fn stuck(self, which: &str, waited: std::time::Duration) -> ! {
        panic!(
            "rcu-reclaim: {} of domain {} cannot proceed in process {}, forked from process {} \
             without Rcu::prepare_fork(): {which} has been held for {waited:?}, most likely by \
             a thread of the parent that does not exist here, so it is never released. Call \
             rcu.prepare_fork() before fork() and ForkGuard::child() in the child (parent() in \
             the parent); on the liburcu drop-in, call_rcu_before_fork() before fork() and \
             call_rcu_after_fork_child() in the child",
            self.what,
            self.domain,
            std::process::id(),
            self.home,
        )
    }
}

impl ForkedFrom {
    /// The panic of a write to a map or cache whose lock `which` (its
    /// key's stripe, a cache's policy shard) has been held for `waited`
    /// in a process forked without `Rcu::prepare_fork`: most likely by a
    /// thread of the parent that was writing at the fork. Unlike
    /// [`stuck`](Self::stuck), it does not offer `prepare_fork` as the
    /// whole fix: that does not stop those writers.
    #[cfg(not(loom))]
    #[cold]
    #[inline(never)]
    #[track_caller]
    pub(crate) fn stuck_on_writers_lock(self, which: &str, waited: std::time::Duration) -> ! {
        panic!(
            "rcu-reclaim: {} of domain {} cannot proceed in process {}, forked from process {} \
             without Rcu::prepare_fork(): {which} has been held for {waited:?}, most likely by \
             a thread of the parent that was writing to the same map or cache at the fork; \
             that thread does not exist here, so the lock is never released. Fork only while \
             no thread writes the maps and caches that the child writes, or write in the \
             child only to maps and caches made after the fork; and call rcu.prepare_fork() \
             before fork() and ForkGuard::child() in the child (parent() in the parent) so \
             that the domain itself works there (it does not stop the writers of maps and \
             caches)",
            self.what,
            self.domain,
            std::process::id(),
            self.home,
        )
    }

    /// The panic of a write to a map or cache whose lock `which` is held
    /// by a thread of the parent (`lock_holder.rs` tells): it does not
    /// exist here, so the lock is never released. `prepared`: the domain
    /// was made ready with `ForkGuard::child` (which does not stop the
    /// writers of maps and caches either).
    #[cfg(not(loom))]
    #[cold]
    #[inline(never)]
    #[track_caller]
    pub(crate) fn writers_lock_holder_gone(self, which: &str, prepared: bool) -> ! {
        let how = if prepared {
            "Rcu::prepare_fork() and ForkGuard::child() make the domain itself work in the \
             child; they do not stop the writers of maps and caches"
        } else {
            "call rcu.prepare_fork() before fork() and ForkGuard::child() in the child \
             (parent() in the parent) so that the domain itself works there (it does not stop \
             the writers of maps and caches)"
        };
        panic!(
            "rcu-reclaim: {} of domain {} cannot proceed in process {}, forked from process {}: \
             {which} is held by a thread of the parent that was writing to the same map or \
             cache at the fork; that thread does not exist here, so the lock is never \
             released. Fork only while no thread writes the maps and caches that the child \
             writes, or write in the child only to maps and caches made after the fork; {how}",
            self.what,
            self.domain,
            std::process::id(),
            // SAFETY: getppid has no preconditions.
            unsafe { libc::getppid() },
        )
    }
}

/// While alive, every [`lock`] this thread waits for, and its waits on
/// other threads' retires (`callbacks::local`), give up after
/// [`FORKED_WAIT`] with a panic naming `Rcu::prepare_fork`, in a process
/// forked from the domain's without it ([`ForkedFrom::forked`], looked at
/// once a wait blocks). Set by the calls that take locks and flags of
/// every thread (`barrier`, the flushes, `stats`): in such a process, a
/// thread of the parent caught holding one at the fork does not exist and
/// never lets go (before: such a child's `barrier` or `stats()`
/// hung, silently, in 5 of 40 forks of a busy parent).
pub(crate) struct ForkedWaits {
    #[cfg(not(loom))]
    before: Option<ForkedFrom>,
}

impl ForkedWaits {
    /// Makes this thread's waits give up as above for the call `f`
    /// (`GracePeriods::fork_check`).
    pub(crate) fn scope(f: ForkedFrom) -> ForkedWaits {
        #[cfg(not(loom))]
        {
            let before = FORKED_FROM.try_with(|c| c.replace(Some(f))).ok().flatten();
            ForkedWaits { before }
        }
        #[cfg(loom)]
        {
            let _ = f;
            ForkedWaits {}
        }
    }

    /// The call in force on this thread, if any.
    #[cfg(not(loom))]
    pub(crate) fn current() -> Option<ForkedFrom> {
        FORKED_FROM.try_with(std::cell::Cell::get).ok().flatten()
    }
}

impl Drop for ForkedWaits {
    fn drop(&mut self) {
        #[cfg(not(loom))]
        let _ = FORKED_FROM.try_with(|c| c.set(self.before));
    }
}

/// A SeqCst fence placed right after this thread *acquired a lock* (a
/// successful atomic read-modify-write), with [`fence_before_rmw`] right
/// before the acquisition: on x86 and x86-64 every read-modify-write is a
/// locked instruction, which no earlier store and no later load passes
/// (the Intel SDM's and AMD APM's memory-ordering rules: loads and stores
/// are not reordered with locked instructions), so the pair costs no
/// instruction (the kernel's `smp_mb__after_atomic()`, a compiler barrier
/// on x86). Elsewhere, and under loom and Miri, a real `fence(SeqCst)`:
/// both model the language's memory model, not x86's, and there a lock's
/// acquiring read-modify-write is no fence, so the scan after it could
/// read a reader's slot from before the reader's own SeqCst fence
/// (`flavor::reader_fence`) and end a grace period
/// under it: a use-after-free the hardware never allows, reported as one.
#[inline(always)]
pub(crate) fn fence_after_lock() {
    #[cfg(all(not(loom), not(miri), any(target_arch = "x86", target_arch = "x86_64")))]
    std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
    #[cfg(not(all(not(loom), not(miri), any(target_arch = "x86", target_arch = "x86_64"))))]
    fence(std::sync::atomic::Ordering::SeqCst);
}

/// The other half of [`fence_after_lock`]: keeps the compiler from sinking
/// the caller's earlier stores past the locked instruction (an acquire may
/// let them move after it), so the hardware orders them. No instruction.
#[inline(always)]
pub(crate) fn fence_before_rmw() {
    std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
}

/// [`lock_std`] that never waits: `None` while another holder has it (on
/// this thread, maybe, under a signal handler that interrupted it).
pub(crate) fn try_lock_std<T>(m: &std::sync::Mutex<T>) -> Option<std::sync::MutexGuard<'_, T>> {
    match m.try_lock() {
        Ok(g) => Some(g),
        Err(std::sync::TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
        Err(std::sync::TryLockError::WouldBlock) => None,
    }
}

/// [`lock`] for the std mutexes that pair with a `Condvar` (in the
/// background threads): a plain guard, not marked, for `Condvar::wait`.
/// Their critical sections must not allocate.
///
/// In a call that gives up on its waits in a process forked without
/// `Rcu::prepare_fork` ([`ForkedWaits`]), a lock held past [`FORKED_WAIT`]
/// is given up on as [`lock`] gives up: a retire that woke a worker waited
/// for ever in such a child on the workers' lock, which a thread of the
/// parent held at the fork.
pub(crate) fn lock_std<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The background threads' state is held across `fork()` too.
    #[cfg(not(loom))]
    if FORKING.with(std::cell::Cell::get) {
        check_not_fork_held(m as *const std::sync::Mutex<T> as usize);
    }
    if let Some(held) = try_lock_std(m) {
        return held;
    }
    #[cfg(not(loom))]
    if let Some(f) = ForkedWaits::current().filter(|f| f.forked()) {
        return lock_std_within(m, FORKED_WAIT, |waited| {
            f.stuck("a lock of the domain's background threads", waited)
        });
    }
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// [`lock_within`] for the std mutexes of [`lock_std`].
#[cfg(not(loom))]
#[cold]
pub(crate) fn lock_std_within<'a, T>(
    m: &'a std::sync::Mutex<T>,
    limit: std::time::Duration,
    stuck: impl FnOnce(std::time::Duration) -> std::sync::MutexGuard<'a, T>,
) -> std::sync::MutexGuard<'a, T> {
    retry_within(|| try_lock_std(m), limit, stuck)
}

/// The sites whose ordering the loom mutation audit weakens, one at a
/// time: the callbacks engine's handshake (BENCHMARKS.md, "The callbacks
/// handshake's orderings, mutated"), then the grace periods, the read
/// side, `RcuCell` and the map ("Memory orderings, mutated one at a
/// time"): an Acquire or Release made Relaxed, or a fence left out.
#[cfg(loom)]
pub(crate) const LOOM_MUTATION_SITES: &[&str] = &[
    "try_push.owner_fence",
    "try_push.steal_acquire",
    "try_push.busy_release_refused",
    "try_push.drain_count_release",
    "try_push.busy_release",
    "dropped.release",
    "wait_for_drops.acquire",
    "publish_drain.release",
    "with_owner_out.barrier",
    "with_owner_out.busy_acquire",
    "with_owner_out.steal_release",
    "barrier.marker_release",
    "barrier.marker_acquire",
    "barrier.drain_count_acquire",
    // The grace periods, the read side, `RcuCell` and the map (BENCHMARKS.md,
    // "Memory orderings, mutated one at a time"); an `AcqRel` has two
    // sites, one for each half left out.
    "gp.slot_quiescent.acquire",
    "gp.seq.acquire",
    "gp.snapshot.fence",
    "gp.snapshot.acquire",
    "gp.done.acquire",
    "gp.complete_if_no_reader.fence",
    "gp.start_barrier.fence",
    "gp.complete.release",
    "gp.reap.release",
    "gp.park_on_foreign.acquire",
    "gp.holdouts.acquire",
    "reader.claim.head_acquire",
    "reader.claim.in_use_acquire",
    "reader.claim.next_acquire",
    "reader.claim.push_head_acquire",
    "reader.claim.push.release_half",
    "reader.claim.push.acquire_half",
    "reader.for_each_slot.head_acquire",
    "reader.for_each_slot.next_acquire",
    "reader.any_claimed.acquire",
    "reader.any_section_left_open.acquire",
    "reader.wake_foreign_writer.acquire",
    "reader.wake_foreign_writer.fence",
    "reader.let_go.fence",
    "reader.let_go.release",
    "reader.current_slot_slow.fence",
    "reader.late_slot.fence",
    "reader.release_late.release",
    "reader.snapshot.fence",
    "reader.section_exit.release",
    "reader.section_exit.fence",
    "reader.flagged_exit.release",
    "reader.flagged_exit.fence",
    "reader.release_abandoned.release",
    "reader.qsbr_online.fence",
    "reader.qsbr_offline.fence_before",
    "reader.qsbr_offline.release",
    "reader.qsbr_offline.fence_after",
    "reader.qsbr_report.fence_a",
    "reader.qsbr_report.release",
    "reader.qsbr_report.fence_b",
    "reader.qsbr_release.release",
    "reader.slot_drop.fence",
    "reader.in_section_after_registrations.acquire",
    "cell.load.acquire",
    "cell.swap_out.release_half",
    "cell.swap_out.acquire_half",
    "cell.exchange.release_half",
    "cell.exchange.acquire_half",
    "map.iter.next_acquire",
    "map.search_by.acquire",
    "map.publish.release",
    "map.link_dummy.acquire",
    "map.unlink_dummy.acquire",
    "map.unlink_range.acquire",
    "map.iter.table_acquire",
    "map.find_hashed.table_acquire",
    "map.get_hashed_by.table_acquire",
    "map.locked_if.table_acquire",
    "map.clear.table_acquire",
    "map.resize.fence_before",
    "map.resize.fence_after",
    "map.resize_locked.table_acquire",
    "map.publish_table.release",
    // Not an ordering: the check that a read of a memory limit's usage
    // stores its allowance only for the limit still set (a lock protocol).
    "headroom.refresh.same_limit",
];

/// Whether the loom mutation audit weakens `site` in this run: the
/// environment variable `RCU_LOOM_MUTATE` names it (one of
/// [`LOOM_MUTATION_SITES`]; another name panics, so a typo mutates
/// nothing silently). Loom builds only: elsewhere, `false`.
#[cfg(loom)]
pub(crate) fn mutated_for_loom(site: &str) -> bool {
    static CHOSEN: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let chosen = CHOSEN.get_or_init(|| {
        let v = std::env::var("RCU_LOOM_MUTATE")
            .ok()
            .filter(|v| !v.is_empty());
        if let Some(v) = &v {
            assert!(
                LOOM_MUTATION_SITES.contains(&v.as_str()),
                "RCU_LOOM_MUTATE={v}: no such site (see sync::LOOM_MUTATION_SITES)"
            );
        }
        v
    });
    debug_assert!(LOOM_MUTATION_SITES.contains(&site), "{site}");
    chosen.as_deref() == Some(site)
}

/// Outside loom no site is ever mutated.
#[cfg(not(loom))]
#[inline(always)]
pub(crate) const fn mutated_for_loom(_site: &str) -> bool {
    false
}

/// `ord`, or `Relaxed` where the loom mutation audit weakens `site`
/// ([`mutated_for_loom`]); `ord` itself in every other build.
#[inline(always)]
pub(crate) fn ord_for_loom(
    site: &str,
    ord: std::sync::atomic::Ordering,
) -> std::sync::atomic::Ordering {
    if mutated_for_loom(site) {
        std::sync::atomic::Ordering::Relaxed
    } else {
        ord
    }
}

/// `AcqRel`, or one half of it alone where the loom mutation audit
/// weakens the other: `Acquire` where it weakens `release_site`, `Release`
/// where it weakens `acquire_site` ([`mutated_for_loom`]); `AcqRel` itself
/// in every other build.
#[inline(always)]
pub(crate) fn acq_rel_for_loom(
    release_site: &str,
    acquire_site: &str,
) -> std::sync::atomic::Ordering {
    if mutated_for_loom(release_site) {
        std::sync::atomic::Ordering::Acquire
    } else if mutated_for_loom(acquire_site) {
        std::sync::atomic::Ordering::Release
    } else {
        std::sync::atomic::Ordering::AcqRel
    }
}

/// `UnsafeCell` with loom's closure API, so code that hands out raw access
/// is checked by loom and compiles to a plain cell otherwise.
#[cfg(loom)]
pub(crate) use loom::cell::UnsafeCell;

#[cfg(not(loom))]
#[derive(Debug, Default)]
pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(loom))]
impl<T> UnsafeCell<T> {
    /// Runs `f` with a raw pointer to the value; the caller upholds the
    /// aliasing rules, as with `std::cell::UnsafeCell::get`.
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

/// Runs `f` with the thread-local flag `key` set, restoring its previous
/// value afterwards (also on unwind): the scoped per-thread marks such as
/// `without_page_allocation` and `no_reclaim`.
pub(crate) fn with_flag<R>(
    key: &'static std::thread::LocalKey<std::cell::Cell<bool>>,
    f: impl FnOnce() -> R,
) -> R {
    struct Restore(&'static std::thread::LocalKey<std::cell::Cell<bool>>, bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            self.0.with(|c| c.set(self.1));
        }
    }
    let _restore = Restore(key, key.with(|c| c.replace(true)));
    f()
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::run_each_caught;

    #[test]
    fn each_item_runs_once_whichever_panic() {
        // Panics at the first item, two in a row, and at the last: every
        // item runs exactly once, in order, and each panic is reported.
        let panicking = [0, 3, 4, 9];
        let mut ran = Vec::new();
        let mut messages = Vec::new();
        let panics = run_each_caught(
            0..10,
            |i| {
                ran.push(i);
                if panicking.contains(&i) {
                    panic!("item {i}");
                }
            },
            |msg| messages.push(msg),
        );
        assert_eq!(ran, (0..10).collect::<Vec<_>>());
        assert_eq!(panics, 4);
        let expected: Vec<_> = panicking
            .iter()
            .map(|i| Some(format!("item {i}")))
            .collect();
        assert_eq!(messages, expected);
        assert_eq!(run_each_caught(0..0, |_: i32| {}, |_| unreachable!()), 0);
    }
}
