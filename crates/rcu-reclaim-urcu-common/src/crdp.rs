//! The `call_rcu_data`s: each a queue of heads (linked through the heads
//! themselves) and the thread that waits for their grace period and invokes
//! them a batch at a time (paused across fork, stopped on free), and their
//! registry: every live one, the default, the per-CPU and per-thread
//! choices, and liburcu's `struct rcu_head`.

use std::os::raw::c_int;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, TryLockError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rcu_reclaim::pressure::MemoryState;
use rcu_reclaim::Rcu;

use crate::Flavor;

/// liburcu's `struct rcu_head`: a `cds_wfcq_node` (one pointer) then `func`.
#[repr(C)]
pub struct RcuHead {
    pub(crate) next: *mut RcuHead,
    pub(crate) func: Option<RcuFunc>,
}

/// A callback: `void (*func)(struct rcu_head *head)`.
pub type RcuFunc = unsafe extern "C" fn(*mut RcuHead);

const _: () = assert!(std::mem::size_of::<RcuHead>() == 16);

/// A thread's call_rcu state, in one thread-local (in a shared library
/// each costs a `__tls_get_addr`, and `call_rcu` needs both).
pub(crate) struct Caller {
    /// `set_thread_call_rcu_data`'s per-thread choice (no reference held).
    pub(crate) crdp: std::cell::Cell<*const CallRcuData>,
    /// Whether the thread is inside `call_rcu` or `rcu_barrier`, which may
    /// hold locks (creating the default crdp, push-back, waking a crdp
    /// thread): a `call_rcu` from a signal handler that interrupted one of
    /// them must take none.
    pub(crate) busy: std::cell::Cell<bool>,
}

thread_local! {
    /// This thread's [`Caller`] (no destructor: it lasts as long as the
    /// thread).
    pub(crate) static CALLER: Caller = const {
        Caller {
            crdp: std::cell::Cell::new(ptr::null()),
            busy: std::cell::Cell::new(false),
        }
    };
    /// On a crdp's own thread: that crdp.
    pub(crate) static WORKER_OF: std::cell::Cell<*const CallRcuData> = const { std::cell::Cell::new(ptr::null()) };
}

/// Every live crdp (each entry holds a reference); the lock is liburcu's
/// `call_rcu_mutex`, held across fork.
pub(crate) static ALL: Mutex<Vec<Arc<CallRcuData>>> = Mutex::new(Vec::new());
/// Every crdp `call_rcu_data_free` has freed and that may still be
/// reached, kept allocated and flagged [`CallRcuData::dead`], with a
/// cookie of a grace period started after it died: a thread that still
/// has one installed (liburcu's caller must uninstall it everywhere first;
/// its `call_rcu` then uses freed memory) finds it dead and goes to the
/// default, its stray heads handed over (see [`sweep_dead`]). One that no
/// thread has installed, with nothing queued, a grace period after it died
/// (when no `call_rcu` that read it from the per-CPU table can still hold
/// it) is let go ([`prune_dead`]): a program that makes and frees a crdp
/// per short-lived thread kept 250 bytes per cycle for good before.
pub(crate) static DEAD: Mutex<Vec<(Arc<CallRcuData>, rcu_reclaim::Cookie)>> =
    Mutex::new(Vec::new());
/// Chains pushed on a crdp already dead (see `CallRcuData::push_chain`), not
/// yet swept: [`sweep_dead`], which every `rcu_barrier` runs, scans
/// [`DEAD`] only when this is not 0. A program that creates and frees a
/// crdp per short-lived thread gathers thousands of dead ones, and the
/// scan made each barrier slower as they piled up (0.5 ms after 100,000).
static STRAYS: AtomicUsize = AtomicUsize::new(0);

/// [`STRAYS`] now, for tests.
#[cfg(test)]
pub(crate) fn strays() -> usize {
    STRAYS.load(Ordering::Relaxed)
}

/// The freed crdps still kept, for tests.
#[cfg(test)]
pub(crate) fn dead_kept() -> usize {
    DEAD.lock().unwrap_or_else(|p| p.into_inner()).len()
}

/// The pthread key whose destructor uninstalls a thread's crdp when the
/// thread ends: a thread may end with its own still set (liburcu asks only
/// that no thread uses a crdp when it is freed, and an ended thread uses
/// none), and its count in [`CallRcuData::installs`] would keep the crdp
/// allocated once freed. A key, not a Rust thread-local: glibc runs those
/// before the program's own key destructors, which may still look the
/// crdp up (`get_thread_call_rcu_data`) to free it. `None`: no key could
/// be made (the count then stays, as before).
fn uninstall_key() -> Option<libc::pthread_key_t> {
    static KEY: OnceLock<Option<libc::pthread_key_t>> = OnceLock::new();
    *KEY.get_or_init(|| {
        let mut key: libc::pthread_key_t = 0;
        // SAFETY: a valid out-pointer and a destructor of the right type.
        (unsafe { libc::pthread_key_create(&mut key, Some(uninstall_at_exit)) } == 0).then_some(key)
    })
}

/// Rounds of key destructors this one waits through before it
/// uninstalls: glibc runs up to `PTHREAD_DESTRUCTOR_ITERATIONS` (4)
/// rounds, each over the keys in the order they were made, so a key the
/// program made after this one has its destructor run in the first round
/// with the crdp still set.
const UNINSTALL_ROUND: usize = 4;

/// The key's destructor: re-arms itself for the next round (its value
/// counts the rounds) until [`UNINSTALL_ROUND`], then uninstalls.
unsafe extern "C" fn uninstall_at_exit(value: *mut libc::c_void) {
    let round = value as usize;
    if round < UNINSTALL_ROUND {
        if let Some(key) = uninstall_key() {
            // SAFETY: our key; a non-null value makes glibc run another
            // round (a failure leaves the crdp installed: the count stays).
            unsafe { libc::pthread_setspecific(key, (round + 1) as *const libc::c_void) };
            return;
        }
    }
    install_for_thread(ptr::null());
}

/// Arms [`uninstall_key`] for the calling thread (on its first install).
fn uninstall_at_thread_exit() {
    let Some(key) = uninstall_key() else {
        return;
    };
    // SAFETY: our key; the value is a round count, never dereferenced.
    unsafe {
        if libc::pthread_getspecific(key).is_null() {
            libc::pthread_setspecific(key, 1 as *const libc::c_void);
        }
    }
}

/// Sets this thread's `set_thread_call_rcu_data` choice to `new` (null:
/// none), counting the threads each crdp is installed for
/// ([`CallRcuData::installs`]), which keep a freed one allocated; the
/// thread's end uninstalls it.
pub(crate) fn install_for_thread(new: *const CallRcuData) {
    let Ok(old) = CALLER.try_with(|c| c.crdp.replace(new)) else {
        return;
    };
    if ptr::eq(old, new) {
        return;
    }
    if !new.is_null() {
        uninstall_at_thread_exit();
    }
    // SAFETY: `new` is null or a live crdp: liburcu's contract for
    // `set_thread_call_rcu_data`, and the library's own calls pass one
    // they hold.
    if let Some(n) = unsafe { new.as_ref() } {
        n.installs.fetch_add(1, Ordering::Relaxed);
    }
    // SAFETY: `old` was installed here and counted, which kept it
    // allocated (`prune_dead` lets go only of uninstalled ones).
    if let Some(o) = unsafe { old.as_ref() } {
        // Release: what this thread did with it comes before its drop.
        o.installs.fetch_sub(1, Ordering::Release);
    }
}

/// Lets go of the freed crdps nothing can reach any more (see [`DEAD`]).
pub(crate) fn prune_dead<F: Flavor>() {
    let rcu = F::rcu();
    let mut gone = Vec::new();
    {
        let mut dead = DEAD.lock().unwrap_or_else(|p| p.into_inner());
        dead.retain(|(c, cookie)| {
            let unreachable = c.installs.load(Ordering::Acquire) == 0
                && c.incoming.load(Ordering::Acquire).is_null()
                && rcu.poll(cookie);
            if unreachable {
                gone.push(c.clone());
            }
            !unreachable
        });
    }
    // Dropped outside the lock.
    drop(gone);
}
/// The default crdp (a reference held by `ALL`).
pub(crate) static DEFAULT: AtomicPtr<CallRcuData> = AtomicPtr::new(ptr::null_mut());
/// Heads queued by a `call_rcu` made from a signal handler that interrupted
/// a `call_rcu` or `rcu_barrier` of its own thread, which may hold a lock
/// the normal path takes (newest first, linked through `next`): the
/// interrupted call hands them to the default crdp before it returns.
static ORPHANS: AtomicPtr<RcuHead> = AtomicPtr::new(ptr::null_mut());

/// Pushes `head` (its `func` set) on [`ORPHANS`]: lock-free, so safe in a
/// signal handler.
///
/// # Safety
/// `head` is valid and the caller's until it is invoked.
pub(crate) unsafe fn push_orphan(head: *mut RcuHead) {
    let mut top = ORPHANS.load(Ordering::Relaxed);
    loop {
        // SAFETY: the head is the caller's until the exchange publishes it.
        unsafe { (*head).next = top };
        match ORPHANS.compare_exchange_weak(top, head, Ordering::AcqRel, Ordering::Relaxed) {
            Ok(_) => return,
            Err(t) => top = t,
        }
    }
}

/// Whether [`ORPHANS`] holds heads.
#[inline]
pub(crate) fn has_orphans() -> bool {
    !ORPHANS.load(Ordering::Acquire).is_null()
}

/// Takes every head of [`ORPHANS`], if any.
pub(crate) fn take_orphans() -> Option<Chain> {
    // Every call_rcu asks on its way out: a load of a line no one writes
    // but a signal handler, not a swap that every thread's calls would
    // bounce between their CPUs.
    if !has_orphans() {
        return None;
    }
    let newest = ORPHANS.swap(ptr::null_mut(), Ordering::AcqRel);
    if newest.is_null() {
        return None;
    }
    // SAFETY: the swap made the chain ours alone; each head is valid until
    // invoked (the C caller's promise).
    Some(unsafe { chain_of(newest, 0) })
}

/// Runs `f`, a wait for the `defer_rcu` flush lock, with the calling
/// thread's crdp (if it is a crdp's thread, inside a callback) marked as
/// waiting for it: `call_rcu_before_fork` holds that lock while it waits
/// for the crdp threads to pause, and lets it go for a callback waiting
/// for it (see [`CallRcuData::pause`]).
pub(crate) fn waiting_for_flush<R>(f: impl FnOnce() -> R) -> R {
    let me = WORKER_OF.with(|t| t.get());
    if me.is_null() {
        return f();
    }
    // SAFETY: the calling thread's own crdp, which its thread holds a
    // reference to as long as it runs.
    let crdp = unsafe { &*me };
    crdp.set_waiting_for_flush(true);
    let r = f();
    crdp.set_waiting_for_flush(false);
    r
}

/// Held while a chain of heads is between two queues (taken from the
/// orphan stack or a freed crdp, not yet pushed on another), and by
/// `call_rcu_before_fork` across `fork()`, taken last: a chain in a
/// thread's hands at the fork is in no queue the child can see, and the
/// thread that held it is not in the child (10 heads of 350,000 were lost
/// so, 1 run in 6 of a C stress that forks every 3 ms beside signal
/// handlers queueing). A holder takes only the two crdps' queue and state
/// locks, and waits for no grace period.
static HANDOFF: Mutex<()> = Mutex::new(());
/// Set while `call_rcu_before_fork` takes or holds [`HANDOFF`]: a
/// `call_rcu` that finds it held then leaves its chain where it is
/// ([`try_handing_off`]).
static FORKING: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// This thread holds [`HANDOFF`] (no destructor).
    static HANDING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the calling thread may run a hand-off without [`HANDOFF`]: it
/// holds it already (the forking thread inside its fork window, or a
/// signal handler that interrupted a hand-off), and would wait for itself.
fn holds_handoffs() -> bool {
    crate::fork_window::forking_here() || HANDING.try_with(|h| h.get()).unwrap_or(false)
}

/// [`HANDOFF`] held by this thread, flagged in [`HANDING`].
struct Handing(#[allow(dead_code)] MutexGuard<'static, ()>);

impl Handing {
    fn new(held: MutexGuard<'static, ()>) -> Handing {
        let _ = HANDING.try_with(|h| h.set(true));
        Handing(held)
    }
}

impl Drop for Handing {
    fn drop(&mut self) {
        let _ = HANDING.try_with(|h| h.set(false));
    }
}

/// [`HANDOFF`] for the calling thread, once no other hand-off holds it;
/// `None` while a fork holds it or waits to take it.
fn lock_unless_forking() -> Option<Handing> {
    loop {
        match HANDOFF.try_lock() {
            Ok(held) => return Some(Handing::new(held)),
            Err(TryLockError::Poisoned(p)) => return Some(Handing::new(p.into_inner())),
            Err(TryLockError::WouldBlock) => {
                // SeqCst: `hold_handoffs` sets it before it waits for the
                // lock, so no caller waits for a fork it cannot see.
                if FORKING.load(Ordering::SeqCst) {
                    return None;
                }
                std::thread::yield_now();
            }
        }
    }
}

/// Runs `f`, which moves a chain of heads from one queue to another, with
/// [`HANDOFF`] held: never across a fork. Waits for a fork under way,
/// except `in_section` (inside a read-side section: a free made there),
/// where the fork's thread may wait for this very section (a
/// `synchronize_rcu` in its window): `f` then runs without the lock, and
/// a child forked while it runs may miss that chain. For calls that a
/// signal handler does not make (a free, a barrier's sweep).
pub(crate) fn handing_off<R>(in_section: bool, f: impl FnOnce() -> R) -> R {
    if holds_handoffs() {
        return f();
    }
    let _held = if in_section {
        lock_unless_forking()
    } else {
        Some(Handing::new(lock(&HANDOFF)))
    };
    f()
}

/// [`handing_off`] for `call_rcu`, which a signal handler may make while
/// its thread holds a lock `fork()` needs (`malloc`'s): while a fork
/// holds [`HANDOFF`] it runs nothing and returns `false` (the chain stays
/// where it is: the orphan stack, which the fork's child takes over and
/// its parent hands on after it); while another hand-off does, it waits.
/// Its caller is marked busy (`call_rcu`'s `Busy`): a handler that
/// interrupts the hand-off queues aside instead of waiting for the lock
/// its own thread holds.
pub(crate) fn try_handing_off(f: impl FnOnce()) -> bool {
    if holds_handoffs() {
        f();
        return true;
    }
    match lock_unless_forking() {
        Some(_held) => {
            f();
            true
        }
        None => false,
    }
}

/// Waits until no chain is between two queues and no fork holds the
/// hand-offs (for `rcu_barrier`, offline, outside any section).
pub(crate) fn wait_for_handoffs() {
    if !holds_handoffs() {
        drop(lock(&HANDOFF));
    }
}

/// [`HANDOFF`], held by `call_rcu_before_fork` across the fork; dropped
/// by the `after_fork_*` hook.
pub(crate) struct HandoffsHeld(#[allow(dead_code)] MutexGuard<'static, ()>);

impl Drop for HandoffsHeld {
    fn drop(&mut self) {
        // Before the lock is let go: a `call_rcu` that then finds it held
        // waits a moment for it instead of leaving its chain aside.
        FORKING.store(false, Ordering::SeqCst);
    }
}

/// Takes [`HANDOFF`] for a fork (see [`HandoffsHeld`]).
pub(crate) fn hold_handoffs() -> HandoffsHeld {
    FORKING.store(true, Ordering::SeqCst);
    HandoffsHeld(lock(&HANDOFF))
}

/// Per-CPU choices (no references held: liburcu's caller frees them).
pub(crate) static PER_CPU: OnceLock<Box<[AtomicPtr<CallRcuData>]>> = OnceLock::new();

pub(crate) fn all() -> MutexGuard<'static, Vec<Arc<CallRcuData>>> {
    crate::fork_window::lock_outside(
        &ALL,
        "A call that needs the call_rcu_data list (the call_rcu that creates the default one, \
         create_call_rcu_data, create_all_cpu_call_rcu_data, call_rcu_data_free, ...)",
    )
}

/// [`ALL`] if no other thread holds it (a poisoned one as it is).
pub(crate) fn try_all() -> Option<MutexGuard<'static, Vec<Arc<CallRcuData>>>> {
    try_lock(&ALL)
}

pub(crate) fn per_cpu() -> &'static [AtomicPtr<CallRcuData>] {
    PER_CPU.get_or_init(|| {
        // SAFETY: sysconf has no preconditions.
        let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) }.max(1) as usize;
        (0..n).map(|_| AtomicPtr::new(ptr::null_mut())).collect()
    })
}

/// Bounds `rcu` by the memory limit of the process's cgroup, if one sets
/// a limit and nothing bound it before (`sources::bound_garbage_by_cgroup`),
/// once per process: what `call_rcu`'s push-back and
/// `rcu_reclaim_memory_state` judge memory by.
pub(crate) fn bound_by_cgroup(rcu: &Rcu) {
    static BOUND: std::sync::Once = std::sync::Once::new();
    BOUND.call_once(|| {
        if !rcu.garbage_bounded() {
            let _ = rcu_reclaim::sources::bound_garbage_by_cgroup(rcu);
        }
    });
}

/// The default crdp, created on first use.
pub(crate) fn default_crdp<F: Flavor>() -> Arc<CallRcuData> {
    let p = DEFAULT.load(Ordering::Acquire);
    if !p.is_null() {
        // SAFETY: the default crdp is never freed (only replaced in a forked
        // child, under `ALL`, where no thread uses the old one any more).
        return unsafe { clone_raw(p) };
    }
    let mut all = all();
    let p = DEFAULT.load(Ordering::Acquire);
    if !p.is_null() {
        // SAFETY: as above.
        return unsafe { clone_raw(p) };
    }
    install_default::<F>(&mut all)
}

/// Creates the default crdp; the caller holds `ALL`.
pub(crate) fn install_default<F: Flavor>(all: &mut Vec<Arc<CallRcuData>>) -> Arc<CallRcuData> {
    let crdp = CallRcuData::spawn(F::rcu(), -1, ThreadHooks::of::<F>());
    all.push(crdp.clone());
    DEFAULT.store(Arc::as_ptr(&crdp).cast_mut(), Ordering::Release);
    crdp
}

/// A new reference to a crdp known by its C pointer.
///
/// # Safety
/// `p` came from `Arc::as_ptr`/`into_raw` of a crdp that is still alive.
pub(crate) unsafe fn clone_raw(p: *const CallRcuData) -> Arc<CallRcuData> {
    // SAFETY: per the contract, the count is at least one.
    unsafe {
        Arc::increment_strong_count(p);
        Arc::from_raw(p)
    }
}

/// The crdp `call_rcu` would use now: the thread's, the CPU's, the default
/// (created if need be). Called inside a read-side section (liburcu's
/// contract for per-CPU ones), where the crdp stays alive.
pub(crate) fn current_crdp<F: Flavor>() -> *const CallRcuData {
    let p = chosen_crdp();
    if p.is_null() {
        Arc::as_ptr(&default_crdp::<F>())
    } else {
        p
    }
}

/// [`current_crdp`] without creating the default: null when the thread
/// has none, its CPU has none and no default exists yet. `call_rcu` uses
/// it so that a thread or per-CPU crdp takes a callback without the
/// default's creation, which allocates and takes `ALL`: a `call_rcu` from
/// a signal handler that interrupted `malloc` must not allocate.
pub(crate) fn chosen_crdp() -> *const CallRcuData {
    let t = live_own(CALLER.with(|c| c.crdp.get()));
    if !t.is_null() {
        return t;
    }
    if let Some(table) = PER_CPU.get() {
        // SAFETY: sched_getcpu has no preconditions.
        let cpu = unsafe { libc::sched_getcpu() };
        if let Some(slot) = usize::try_from(cpu).ok().and_then(|c| table.get(c)) {
            let p = slot.load(Ordering::Acquire);
            // SAFETY: as above.
            if !p.is_null() && !unsafe { &*p }.dead.load(Ordering::Acquire) {
                return p;
            }
        }
    }
    DEFAULT.load(Ordering::Acquire)
}

/// `own`, this thread's installed crdp (or null), if it is live; one
/// another thread freed while it was installed here (a misuse) is
/// uninstalled, said once ([`freed_while_installed`]), and null is
/// returned: the call goes where it would without it.
pub(crate) fn live_own(own: *const CallRcuData) -> *const CallRcuData {
    // SAFETY: installed here, so counted in its `installs`: a freed one
    // stays allocated (in `DEAD`) while any thread has it installed
    // (`prune_dead`).
    if !own.is_null() && unsafe { &*own }.dead.load(Ordering::Acquire) {
        freed_while_installed();
        return ptr::null();
    }
    own
}

/// This thread's installed crdp was freed (by another thread, while it
/// was installed here): said once per thread and uninstalled; what
/// reached it after its hand-over goes to the default at the next
/// barrier or free ([`sweep_dead`]).
#[cold]
fn freed_while_installed() {
    install_for_thread(ptr::null());
    eprintln!(
        "[error] rcu-reclaim-urcu: call_rcu() on a thread whose call_rcu_data was freed by \
         call_rcu_data_free() while still installed for it; this thread now uses the default \
         call_rcu_data (call set_thread_call_rcu_data(NULL) on every thread using one before \
         freeing it)"
    );
    // Not swept here: a sweep hands heads over under a crdp's batch
    // lock, whose holder may wait for a grace period that this thread,
    // inside `call_rcu` (online, for QSBR), holds up. The next barrier
    // sweeps, offline, as does the next free.
}

/// Hands what reached a freed crdp after its hand-over (a `call_rcu` that
/// picked it just before it was marked dead) to the default crdp; every
/// `rcu_barrier` does so first, so none is left behind.
pub(crate) fn sweep_dead<F: Flavor>() {
    if STRAYS.load(Ordering::Relaxed) == 0 {
        return;
    }
    sweep_dead_counted::<F>();
}

/// [`sweep_dead`] once a stray was counted: one sweep at a time, so that
/// two do not both take off the same count (a stray counted meanwhile
/// then went unswept), and a barrier that finds a sweep running waits
/// for its hand-over.
#[cold]
fn sweep_dead_counted<F: Flavor>() {
    static SWEEP: Mutex<()> = Mutex::new(());
    let _one = lock(&SWEEP);
    // Acquire: a push counted here is seen by the scan below (it came
    // before its count). One counted later stays counted for the next.
    let strays = STRAYS.load(Ordering::Acquire);
    if strays == 0 {
        return;
    }
    sweep_dead_now::<F>();
    STRAYS.fetch_sub(strays, Ordering::Relaxed);
}

/// [`sweep_dead`]'s scan.
#[cold]
fn sweep_dead_now<F: Flavor>() {
    // Copied out: `DEAD` is held only for a moment, never across another
    // lock (the default's creation takes `ALL`, which fork holds).
    let stray: Vec<Arc<CallRcuData>> = DEAD
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter(|(c, _)| !c.incoming.load(Ordering::Acquire).is_null())
        .map(|(c, _)| c.clone())
        .collect();
    if stray.is_empty() {
        return;
    }
    let default = default_crdp::<F>();
    for crdp in stray {
        crdp.hand_over(&default, false);
    }
}

/// A chain of heads linked through `next`, newest first, with its count
/// and the bytes its sized calls declared. The C caller owns each head and
/// promised (by calling `call_rcu`) to leave it alone until `func` runs.
pub(crate) struct Chain {
    newest: *mut RcuHead,
    oldest: *mut RcuHead,
    pub(crate) len: u64,
    pub(crate) bytes: usize,
}
// SAFETY: the heads are handed from the queueing thread to the thread that
// invokes them, never used by two threads at once.
unsafe impl Send for Chain {}

impl Chain {
    fn is_empty(&self) -> bool {
        self.newest.is_null()
    }
}

/// Reverses the chain whose newest head is `newest` into oldest-first
/// order (as liburcu invokes them); returns its oldest head and its
/// length. One pass over heads a flood's batch finds cold; the invoking
/// pass is the only other.
///
/// # Safety
/// The chain is the caller's alone and every head of it is valid.
unsafe fn reverse_counting(newest: *mut RcuHead) -> (*mut RcuHead, u64) {
    let mut len = 0;
    let mut prev = ptr::null_mut();
    let mut cur = newest;
    while !cur.is_null() {
        len += 1;
        // SAFETY: per the contract.
        unsafe {
            let next = (*cur).next;
            (*cur).next = prev;
            prev = cur;
            cur = next;
        }
    }
    (prev, len)
}

/// The chain whose newest head is `newest` (NULL: empty), counted, with
/// the `bytes` its heads declared.
///
/// # Safety
/// The chain is the caller's alone and every head of it is valid.
unsafe fn chain_of(newest: *mut RcuHead, bytes: usize) -> Chain {
    let (mut len, mut oldest, mut cur) = (0, ptr::null_mut(), newest);
    // Brent's cycle check: `mark` is the head at the last power of two,
    // and a walk that comes back to it is going round a cycle (a head
    // queued twice, see `cut_cycle`), which it would for ever.
    let (mut mark, mut power, mut since) = (newest, 1u64, 0u64);
    while !cur.is_null() {
        len += 1;
        oldest = cur;
        // SAFETY: per the contract.
        cur = unsafe { (*cur).next };
        since += 1;
        if cur == mark {
            // SAFETY: per the contract; the chain is the caller's.
            let (last, distinct) = unsafe { cut_cycle(newest) };
            report_queued_twice(last);
            return Chain {
                newest,
                oldest: last,
                len: distinct,
                bytes,
            };
        }
        if since == power {
            (mark, power, since) = (cur, power * 2, 0);
        }
    }
    Chain {
        newest,
        oldest,
        len,
        bytes,
    }
}

/// The next head of `h`.
///
/// # Safety
/// `h` is a valid head of a chain the caller owns.
unsafe fn next_of(h: *mut RcuHead) -> *mut RcuHead {
    // SAFETY: per the contract.
    unsafe { (*h).next }
}

/// Cuts the cycle that the chain from `first` runs into, so that the chain
/// holds each of its heads once, and returns its last head (the one whose
/// `next` it cleared) and how many heads it holds.
///
/// A head queued twice before its callback ran (`call_rcu` with a head
/// already queued) makes one: its second push links it above heads pushed
/// after its first, whose oldest links back to it. (Its first `next`, the
/// heads queued before it, is lost: they never run, as with liburcu,
/// whose queue loses heads silently too.) A chain with no cycle is only
/// counted.
///
/// # Safety
/// The chain is the caller's alone and each of its heads is valid.
unsafe fn cut_cycle(first: *mut RcuHead) -> (*mut RcuHead, u64) {
    // SAFETY (every `next_of` below): the heads are reached along the
    // chain, which the caller owns.
    // Brent: the cycle's length, `lambda`.
    let (mut power, mut lambda) = (1u64, 1u64);
    let (mut tortoise, mut hare) = (first, unsafe { next_of(first) });
    while tortoise != hare {
        if hare.is_null() {
            return unsafe { chain_end(first) };
        }
        if power == lambda {
            (tortoise, power, lambda) = (hare, power * 2, 0);
        }
        hare = unsafe { next_of(hare) };
        lambda += 1;
    }
    // The cycle's first head, `mu` heads from `first`: walk two pointers
    // `lambda` apart until they meet there.
    let (mut start, mut ahead) = (first, first);
    for _ in 0..lambda {
        ahead = unsafe { next_of(ahead) };
    }
    let mut mu = 0;
    while start != ahead {
        (start, ahead, mu) = unsafe { (next_of(start), next_of(ahead), mu + 1) };
    }
    let mut last = start;
    for _ in 1..lambda {
        last = unsafe { next_of(last) };
    }
    // SAFETY: as above.
    unsafe { (*last).next = ptr::null_mut() };
    (last, mu + lambda)
}

/// The last head of the chain from `first` (no cycle), and its length.
///
/// # Safety
/// As [`cut_cycle`].
unsafe fn chain_end(first: *mut RcuHead) -> (*mut RcuHead, u64) {
    let (mut last, mut len, mut cur) = (first, 0, first);
    while !cur.is_null() {
        (last, len) = (cur, len + 1);
        // SAFETY: per the contract.
        cur = unsafe { next_of(cur) };
    }
    (last, len)
}

/// Says, once per process, that a queue of `call_rcu` heads had a cycle:
/// a head queued twice (`head`: the cycle's last, near that head).
fn report_queued_twice(head: *mut RcuHead) {
    static SAID: AtomicBool = AtomicBool::new(false);
    if !SAID.swap(true, Ordering::Relaxed) {
        eprintln!(
            "[error] rcu-reclaim-urcu: an rcu_head was passed to call_rcu() again before its \
             callback ran (near head {head:p}): the call_rcu queue it went into was corrupted. \
             Each head still reachable in it runs once, but the heads queued there before that \
             head's first call_rcu() may never run, and rcu_barrier() then stops waiting for \
             that queue once it is empty. Pass a head to call_rcu() again only once its \
             callback has started"
        );
    }
}

/// Invokes a chain from `oldest` along `next`, each head once.
///
/// # Safety
/// The chain is the caller's alone and every head of it is valid until
/// invoked (the C caller's promise).
unsafe fn invoke_oldest_first(oldest: *mut RcuHead, invoked: &AtomicU64) {
    let mut cur = oldest;
    let mut n = invoked.load(Ordering::Relaxed);
    while !cur.is_null() {
        // Before each callback (a plain store: only one invoker at a
        // time, under `batch`), for `push_back`'s stall check.
        n += 1;
        invoked.store(n, Ordering::Relaxed);
        // SAFETY: per the contract; `next` is read before `func`, which may
        // free the head, runs exactly once, here.
        unsafe {
            let head = cur;
            cur = (*head).next;
            if let Some(f) = (*head).func {
                f(head);
            }
        }
    }
}

#[derive(Default)]
struct State {
    /// Heads invoked (by the thread or a reclaimer): `rcu_barrier` waits for
    /// it to catch up with `queued`.
    done: u64,
    stop: bool,
    /// With `stop`: the thread stops without taking what is queued into a
    /// last batch (the freeing caller is inside a read-side section, which
    /// that batch's grace period would wait for while the caller waits for
    /// the thread).
    stop_now: bool,
    stopped: bool,
    /// Freed (or lost in a fork): what it still held went to the default,
    /// and is counted in `done` here.
    freed: bool,
    /// Once freed: the crdp that took what it still held, and that crdp's
    /// `queued` once it held it. `rcu_barrier` waits for that crdp to get
    /// there too: the heads it counted here may have been handed over
    /// rather than invoked.
    handed: Option<(Arc<CallRcuData>, u64)>,
    pause: bool,
    paused: bool,
    /// The thread is inside a callback that waits for the other crdps
    /// (`rcu_barrier` from a callback): it invokes nothing until they
    /// drain. Another crdp's thread doing the same skips this one rather
    /// than wait for it: each would wait for the other for ever.
    waiting_in_callback: bool,
    /// A batch ran into a cycle (a head queued twice, `cut_cycle`): heads
    /// counted as queued may never run, so `done` may never reach a
    /// barrier's count; barriers stop waiting once the queue is empty.
    lost_heads: bool,
    /// The thread is inside a callback that waits for the `defer_rcu`
    /// flush lock, which `call_rcu_before_fork` holds while it waits for
    /// the thread to pause: it cannot pause until it gets the lock.
    waiting_for_flush: bool,
    handle: Option<JoinHandle<()>>,
}

/// How often a barrier looks whether a queue that lost heads is empty
/// (`State::lost_heads`).
const LOST_HEADS_LOOK: Duration = Duration::from_millis(5);

/// How long the thread, woken from idle, lets callbacks gather before it
/// waits for their grace period (liburcu polls every 10 ms). Under memory
/// pressure it does not wait, and its grace periods are expedited.
const GATHER: Duration = Duration::from_millis(5);

/// Push-back: over this many heads queued on one crdp and not yet taken
/// into a batch, `call_rcu` waits for the batch in hand to be invoked, or
/// [`PUSH_BACK_WAIT`] at most, so a flood cannot outrun the thread that
/// frees. The next batch fills while the one in hand waits for its grace
/// period, so a crdp holds about twice this at most (about 80 bytes a head
/// in a typical node: about 8 MB).
///
/// Chosen by measurement (BENCHMARKS.md, "The push-back mark"): at 10,000
/// (the engine's `qhimark`) callers that the thread keeps up with were
/// held back every grace period, and liburcu's own lock-free queue
/// benchmark (`call_rcu` per dequeue) dequeued 0.7–0.8× liburcu's rate
/// while its queue held twice liburcu's memory; at 100,000 a batch no
/// longer stays in the caches and a hash-table flood slowed. At 50,000
/// both run faster than liburcu in no more memory.
pub(crate) const PUSH_BACK_AT: u64 = 50_000;
/// The push-back mark while memory is short for the domain
/// ([`Rcu::memory_state`] `Short`: a pressure signal, or the usage of the
/// process's memory cgroup over three quarters of its mark, 85 % of the
/// limit; [`CallRcuData::spawn`] bounds the domain by that limit). A
/// callback's memory is the caller's, which the library cannot weigh: at
/// the ordinary marks four threads queueing heads of 4 KiB objects held
/// 200–400 MB and were OOM-killed in a 100 MiB cgroup, as with liburcu.
pub(crate) const PUSH_BACK_AT_SHORT: u64 = 4_096;
/// The push-back mark while the cgroup's usage is over its mark
/// ([`Rcu::memory_state`] `OverMark`): a flood of heads of 16 KiB objects
/// was killed with [`PUSH_BACK_AT_SHORT`] alone (64 MiB a batch).
pub(crate) const PUSH_BACK_AT_OVER: u64 = 256;
/// How often a push looks at the domain's memory state (see
/// `CallRcuData::memory_state`): 64 heads are a few microseconds of a
/// flood, against the millisecond between reads of the usage.
const MEMORY_LOOK_EVERY: u64 = 64;
/// The longest one `call_rcu` waits: a bound, not a dependency, so a caller
/// holding a lock that a callback takes is never deadlocked (and, while
/// memory is plenty, waits once: see `CallRcuData::push_back`).
pub(crate) const PUSH_BACK_WAIT: Duration = Duration::from_millis(1);

/// What a crdp's thread calls to be a reader of its flavor, as liburcu's
/// `call_rcu` thread is: [`Flavor::register_callback_thread`] and the
/// online/offline pair around each batch's invocation.
#[derive(Clone, Copy)]
pub(crate) struct ThreadHooks {
    register: fn(),
    online: fn(),
    offline: fn(),
    /// Whether the thread is in a read-side section it could not leave
    /// for a wait ([`Flavor::in_read_section`]): after a batch, offline,
    /// one a callback left open.
    in_section: fn() -> bool,
}

impl ThreadHooks {
    /// The hooks of the flavor `F`.
    pub(crate) fn of<F: Flavor>() -> ThreadHooks {
        ThreadHooks {
            register: F::register_callback_thread,
            online: F::callback_thread_online,
            offline: F::callback_thread_offline,
            in_section: F::in_read_section,
        }
    }

    /// No hooks: the thread takes a slot of its domain only.
    #[cfg(test)]
    pub(crate) const NONE: ThreadHooks = ThreadHooks {
        register: || {},
        online: || {},
        offline: || {},
        in_section: || false,
    };
}

/// liburcu's `struct call_rcu_data`: a queue of heads and the thread that
/// waits for their grace period and invokes them, a whole batch at a time.
/// (liburcu's `URCU_CALL_RCU_RT` flag, a worker that polls instead of
/// sleeping, is accepted and behaves like the default.)
pub struct CallRcuData {
    /// The domain whose grace periods the thread waits for.
    rcu: &'static Rcu,
    /// Heads queued and not yet taken by a batch: a stack linked through
    /// `RcuHead::next` (`call_rcu` pushes, the thread takes it whole).
    incoming: AtomicPtr<RcuHead>,
    /// Heads ever queued here (`rcu_barrier` and the backlog).
    queued: AtomicU64,
    /// Heads taken out of `incoming` (into a batch, or moved to another
    /// crdp), for `call_rcu`'s push-back check: `queued - taken` is what
    /// waits to be taken. Counted when a batch is taken, before its grace
    /// period, so callers fill the next batch meanwhile.
    taken: AtomicU64,
    /// Bytes declared by sized calls not yet invoked.
    bytes: AtomicUsize,
    /// Of `bytes`, those of the heads in `incoming`: a sized push and the
    /// taking of a batch hold this lock, so a batch knows its bytes.
    incoming_bytes: Mutex<usize>,
    /// The thread waits on `wake` for heads; `call_rcu` signals it only then.
    sleeping: AtomicBool,
    /// The domain's `MemoryState` at the last look (`over_mark`), as a
    /// `u8`.
    memory: AtomicU8,
    /// Freed by `call_rcu_data_free` (kept in [`DEAD`]): never chosen again.
    pub(crate) dead: AtomicBool,
    /// Threads that have it installed (`set_thread_call_rcu_data`, and its
    /// own thread): while any does, a freed one stays allocated.
    pub(crate) installs: AtomicUsize,
    /// Claimed by the `call_rcu_data_free` that frees it (under `ALL`).
    pub(crate) freeing: AtomicBool,
    /// Callbacks begun by invocations of batches, ever (each counted as it
    /// begins); with `invoking`, whether a batch's invocation moves.
    invoked: AtomicU64,
    /// A batch is being invoked.
    invoking: AtomicBool,
    /// A batch waits for its grace period (`run_batch_locked`): a thread
    /// inside a read-side section that waits for it to pause waits for
    /// ever (see [`pause`](Self::pause)).
    awaiting_gp: AtomicBool,
    /// `invoked + 1` when a push-back wait ran out while the invocation
    /// in hand did not begin one callback (0: none): callers do not wait
    /// again until it does (see [`push_back`](Self::push_back)).
    stalled_at: AtomicU64,
    cpu_affinity: c_int,
    /// What the thread calls to be a reader of the flavor.
    hooks: ThreadHooks,
    pub(crate) tid: OnceLock<libc::pthread_t>,
    /// The process whose thread this is: a child forked without the fork
    /// hooks has none (see `wait_done_or_stuck`).
    pid: u32,
    state: Mutex<State>,
    wake: Condvar,
    /// Signalled when `done` grows, or the thread pauses or stops.
    progress: Condvar,
    /// Held while a batch is taken, waits for its grace period and is
    /// invoked (by the thread, or by `drain_here` on a caller's), and by
    /// `hand_over`: batches complete in the order they were taken, so
    /// `done` reaches a count only once every head queued before that
    /// count has run, which `rcu_barrier` relies on. (A batch run on a
    /// caller's thread beside an older one in the thread's hands let a
    /// barrier count its newer heads for the older ones and return early.)
    batch: Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// `m` if no other holder has it (a poisoned one as it is), without
/// waiting.
pub(crate) fn try_lock<T>(m: &Mutex<T>) -> Option<MutexGuard<'_, T>> {
    match m.try_lock() {
        Ok(held) => Some(held),
        Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    }
}

/// How long [`CallRcuData::pause`] lets a call_rcu thread wait
/// for one grace period before it ends the process: the grace period
/// waits for the caller's own section, unless it had started before that
/// section did and only another reader holds it up.
const PAUSE_IN_SECTION_LIMIT: Duration = Duration::from_secs(2);

fn wait<'a>(cv: &Condvar, g: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
    cv.wait(g).unwrap_or_else(|p| p.into_inner())
}

impl CallRcuData {
    /// A crdp and its thread. The first one a process spawns bounds the
    /// domain by the memory limit of the process's cgroup, if one sets a
    /// limit (`sources::bound_garbage_by_cgroup`), so that the push-back
    /// knows when memory is short ([`PUSH_BACK_AT_SHORT`]).
    pub(crate) fn spawn(
        rcu: &'static Rcu,
        cpu_affinity: c_int,
        hooks: ThreadHooks,
    ) -> Arc<CallRcuData> {
        bound_by_cgroup(rcu);
        let crdp = Arc::new(CallRcuData {
            rcu,
            incoming: AtomicPtr::new(ptr::null_mut()),
            queued: AtomicU64::new(0),
            taken: AtomicU64::new(0),
            bytes: AtomicUsize::new(0),
            incoming_bytes: Mutex::new(0),
            sleeping: AtomicBool::new(false),
            memory: AtomicU8::new(MemoryState::Plenty as u8),
            dead: AtomicBool::new(false),
            installs: AtomicUsize::new(0),
            freeing: AtomicBool::new(false),
            invoked: AtomicU64::new(0),
            invoking: AtomicBool::new(false),
            awaiting_gp: AtomicBool::new(false),
            stalled_at: AtomicU64::new(0),
            cpu_affinity,
            hooks,
            tid: OnceLock::new(),
            pid: std::process::id(),
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            progress: Condvar::new(),
            batch: Mutex::new(()),
        });
        let me = crdp.clone();
        // Started with every signal blocked, which it keeps: a handler of
        // the program's on this thread could interrupt it holding its own
        // locks (its `call_rcu` would queue here and wait for `state`, held
        // by the thread it interrupted: seen with SIGALRM every 100 µs), or
        // run before the thread's runtime is set up (Rust aborts: "current
        // thread handle already set"). Process-directed signals go to the
        // program's threads instead.
        let handle = crate::with_signals_blocked(|| {
            std::thread::Builder::new()
                .name("urcu-call-rcu".into())
                .spawn(move || me.run())
        })
        .unwrap_or_else(|e| crate::die(&format!("cannot start a call_rcu thread: {e}")));
        use std::os::unix::thread::JoinHandleExt;
        let _ = crdp.tid.set(handle.as_pthread_t());
        lock(&crdp.state).handle = Some(handle);
        crdp
    }

    /// The thread: take what was queued, wait for a grace period, invoke
    /// it; park for fork; stop on free. As liburcu's `call_rcu_thread`, it
    /// looks at the stop request only after a batch: asked to stop while
    /// idle, it first takes what is queued and runs it; asked while it runs
    /// a batch, it finishes that batch and stops, leaving what was queued
    /// behind it for `hand_over`.
    fn run(self: Arc<Self>) {
        if self.cpu_affinity >= 0 {
            set_affinity(self.cpu_affinity);
        }
        self.rcu.register_thread();
        // A reader of the flavor, as liburcu's thread (offline, for QSBR,
        // but while it invokes a batch): the callbacks' sections are
        // waited for however they are entered.
        (self.hooks.register)();
        // As liburcu: callbacks that queue callbacks use this crdp (until
        // the thread ends, whatever a callback installed instead).
        struct Uninstall;
        impl Drop for Uninstall {
            fn drop(&mut self) {
                install_for_thread(ptr::null());
            }
        }
        install_for_thread(Arc::as_ptr(&self));
        let _uninstall = Uninstall;
        WORKER_OF.with(|t| t.set(Arc::as_ptr(&self)));
        loop {
            {
                let mut st = lock(&self.state);
                if st.pause {
                    st.paused = true;
                    self.progress.notify_all();
                    while st.pause {
                        st = wait(&self.wake, st);
                    }
                    st.paused = false;
                    continue;
                }
                if st.stop && st.stop_now {
                    st.stopped = true;
                    self.progress.notify_all();
                    return;
                }
            }
            if !self.incoming.load(Ordering::Acquire).is_null() {
                self.run_batch();
            }
            let mut st = lock(&self.state);
            if st.stop {
                // What was queued since the batch was taken stays queued
                // (the freeing caller hands it to the default crdp).
                st.stopped = true;
                self.progress.notify_all();
                return;
            }
            // A pause asked for while the batch ran (its notification
            // went to no waiter) is answered at the top of the loop, not
            // slept through: `pause` (before fork) would wait for good.
            if st.pause {
                continue;
            }
            if self.incoming.load(Ordering::Acquire).is_null() {
                // Pairs with `push_chain` and `wake_if_sleeping`: the
                // store and load here and the push's exchange and load
                // of `sleeping` are all SeqCst, so in their single
                // order either the push's exchange comes before this
                // load (which sees its head), or this store comes
                // before the push's load (which sees `sleeping`).
                self.sleeping.store(true, Ordering::SeqCst);
                if self.incoming.load(Ordering::SeqCst).is_null() {
                    st = wait(&self.wake, st);
                }
                self.sleeping.store(false, Ordering::Relaxed);
                let idle_wake = !st.pause && !st.stop;
                drop(st);
                if idle_wake && !self.rcu.in_fast_mode() {
                    std::thread::sleep(GATHER);
                }
            }
        }
    }

    /// Takes what is queued, waits for its grace period and invokes it on
    /// the calling thread, after any batch taken before it (`batch`);
    /// returns how many heads, and their bytes.
    fn run_batch(&self) -> (usize, usize) {
        let _in_order = lock(&self.batch);
        self.run_batch_locked(Some(self.hooks))
    }

    /// [`run_batch`](Self::run_batch) with `batch` held; on the crdp's own
    /// thread, with its `hooks` (online while it invokes the batch).
    fn run_batch_locked(&self, hooks: Option<ThreadHooks>) -> (usize, usize) {
        let (newest, bytes) = self.take_raw();
        if newest.is_null() {
            return (0, 0);
        }
        // SAFETY: the taken heads are ours alone, each valid until invoked.
        let (mut oldest, mut n) = unsafe { reverse_counting(newest) };
        if n > 1 && oldest == newest {
            // Reversed in place, a chain that runs into a cycle (a head
            // queued twice) comes back to its newest head, so a longer
            // chain cannot end there; reversed, it still runs into one
            // (`cut_cycle`). Its heads run once each, newest first.
            // SAFETY: as above.
            let (last, distinct) = unsafe { cut_cycle(oldest) };
            report_queued_twice(last);
            (oldest, n) = (newest, distinct);
            lock(&self.state).lost_heads = true;
            self.progress.notify_all();
        }
        self.taken.fetch_add(n, Ordering::Relaxed);
        let rcu = self.rcu;
        self.awaiting_gp.store(true, Ordering::Relaxed);
        if rcu.in_fast_mode() {
            rcu.synchronize_expedited();
        } else {
            rcu.synchronize();
        }
        self.awaiting_gp.store(false, Ordering::Relaxed);
        if let Some(h) = hooks {
            (h.online)();
        }
        self.invoking.store(true, Ordering::Relaxed);
        // SAFETY: as above; `reverse_counting` linked them oldest first.
        unsafe { invoke_oldest_first(oldest, &self.invoked) };
        self.invoking.store(false, Ordering::Relaxed);
        if let Some(h) = hooks {
            (h.offline)();
            // The batch began outside any section (its `synchronize` would
            // have refused one): a section open now is one a callback left
            // open, which every later grace period would wait for, this
            // thread's next batch included (liburcu hangs without a word).
            if (h.in_section)() {
                crate::die(
                    "a call_rcu callback returned inside a read-side critical section \
                     (an rcu_read_lock() without its rcu_read_unlock()): every grace period \
                     would wait for the call_rcu thread for ever. Balance the callback's \
                     rcu_read_lock() and rcu_read_unlock()",
                );
            }
        }
        self.bytes.fetch_sub(bytes, Ordering::Relaxed);
        self.count_done(n);
        (n as usize, bytes)
    }

    fn count_done(&self, n: u64) {
        let mut st = lock(&self.state);
        st.done += n;
        self.progress.notify_all();
    }

    /// Queues `head` (its `func` set), declaring `bytes`. Lock-free unless
    /// `bytes` is not 0; wakes the thread only if it sleeps.
    #[inline]
    pub(crate) fn push(&self, head: *mut RcuHead, bytes: usize) -> bool {
        if self.incoming.load(Ordering::Relaxed) == head {
            // Queued already and not yet taken: pushed again, it would
            // link to itself, and its batch would run it for ever.
            static SAID: AtomicBool = AtomicBool::new(false);
            if !SAID.swap(true, Ordering::Relaxed) {
                eprintln!(
                    "[error] rcu-reclaim-urcu: call_rcu() called with an rcu_head ({head:p}) \
                     that is already queued, its callback not yet run: this call is ignored \
                     (liburcu's queue would be corrupted). Pass a head to call_rcu() again \
                     only once its callback has started"
                );
            }
            return false;
        }
        let queued = self.queued.fetch_add(1, Ordering::Relaxed) + 1;
        if bytes == 0 {
            self.push_chain(head, head);
        } else {
            let mut acc = lock(&self.incoming_bytes);
            *acc += bytes;
            self.bytes.fetch_add(bytes, Ordering::Relaxed);
            self.push_chain(head, head);
        }
        self.wake_if_sleeping();
        self.over_mark(queued.saturating_sub(self.taken.load(Ordering::Relaxed)))
    }

    /// Whether `waiting` heads not yet taken into a batch are over the
    /// push-back mark: [`PUSH_BACK_AT`], or [`PUSH_BACK_AT_SHORT`] or
    /// [`PUSH_BACK_AT_OVER`] while memory is short.
    #[inline]
    fn over_mark(&self, waiting: u64) -> bool {
        waiting > PUSH_BACK_AT_OVER
            && (waiting > PUSH_BACK_AT
                || match self.memory_state(waiting) {
                    MemoryState::OverMark => true,
                    MemoryState::Short => waiting > PUSH_BACK_AT_SHORT,
                    MemoryState::Plenty => false,
                })
    }

    /// The domain's memory state: while the last look found plenty, looked
    /// at again by every [`MEMORY_LOOK_EVERY`]th head only (`waiting`
    /// counts heads one by one); while memory is short, by every head, so
    /// that callers stop waiting as soon as it is no longer. Under a
    /// memory limit a look reads the clock (the usage is read again once a
    /// millisecond old): at every head, a flood of small callbacks in a
    /// limited cgroup ran 10–20 % slower; looking only every 64th head
    /// while short, a flood of 16 KiB objects waited on for up to 64 ms
    /// after the usage went back under the mark (5× slower).
    #[inline]
    fn memory_state(&self, waiting: u64) -> MemoryState {
        let plenty = self.memory.load(Ordering::Relaxed) == MemoryState::Plenty as u8;
        if plenty && waiting % MEMORY_LOOK_EVERY != 0 {
            return MemoryState::Plenty;
        }
        let state = self.rcu.memory_state();
        self.memory.store(state as u8, Ordering::Relaxed);
        state
    }

    /// Whether the heads queued and not yet taken into a batch are over the
    /// push-back mark now (as `push` judges it).
    pub(crate) fn over_mark_now(&self) -> bool {
        let queued = self.queued.load(Ordering::Relaxed);
        self.over_mark(queued.saturating_sub(self.taken.load(Ordering::Relaxed)))
    }

    /// Push-back, when `push` said the backlog is over the mark: waits for
    /// the batch in hand to be invoked (the thread then takes the next at
    /// once) or [`PUSH_BACK_WAIT`]. The caller is outside
    /// any read-side section (the batch waits for readers) and is no crdp
    /// thread (it would wait for itself, or for a crdp waiting for it).
    ///
    /// While memory is plenty, a wait that ran out while the batch in hand
    /// did not begin one more callback (one blocked, on a lock the caller
    /// holds, say) is not made again until it does: the waits could not
    /// help it, and a flood under the callbacks' own lock waited 1 ms a
    /// call (200,000 calls: 110 s; liburcu 15 ms). While memory is short
    /// the waits go on, as a bound on the flood's rate.
    pub(crate) fn push_back(&self) {
        let st = lock(&self.state);
        if st.pause || st.stop || st.freed {
            return;
        }
        let plenty = self.memory.load(Ordering::Relaxed) == MemoryState::Plenty as u8;
        let invoked = self.invoked.load(Ordering::Relaxed);
        let stalled = || {
            plenty
                && self.invoking.load(Ordering::Relaxed)
                && self.invoked.load(Ordering::Relaxed) == invoked
        };
        if stalled() && self.stalled_at.load(Ordering::Relaxed) == invoked + 1 {
            return;
        }
        let done = st.done;
        let (st, waited) = self
            .progress
            .wait_timeout_while(st, PUSH_BACK_WAIT, |st| st.done == done)
            .unwrap_or_else(|p| p.into_inner());
        if waited.timed_out() && st.done == done && stalled() {
            self.stalled_at.store(invoked + 1, Ordering::Relaxed);
        }
    }

    /// Publishes a chain on `incoming`. SeqCst (no dearer than Release on
    /// x86: a locked instruction either way), so that with
    /// `wake_if_sleeping`'s SeqCst load no fence is needed (see `run`).
    #[inline]
    fn push_chain(&self, newest: *mut RcuHead, oldest: *mut RcuHead) {
        let mut top = self.incoming.load(Ordering::Relaxed);
        loop {
            // SAFETY: the chain is the caller's until the exchange below
            // publishes it; `oldest` is its last head.
            unsafe { (*oldest).next = top };
            match self.incoming.compare_exchange_weak(
                top,
                newest,
                Ordering::SeqCst,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    // Dead already: `call_rcu_data_free` took its queue
                    // before this push (that take, AcqRel, came before
                    // this exchange, which acquired it, so the flag is
                    // seen) and the chain waits for `sweep_dead`, told so
                    // here. Pushed before the take, it was handed over with
                    // the rest (a count then only costs a scan).
                    if self.dead.load(Ordering::Relaxed) {
                        STRAYS.fetch_add(1, Ordering::Release);
                    }
                    return;
                }
                Err(t) => top = t,
            }
        }
    }

    /// After `push_chain`: signals the thread if it sleeps. No fence: the
    /// SeqCst load here, after `push_chain`'s SeqCst exchange, pairs with
    /// the thread's SeqCst store of `sleeping` and load of `incoming`.
    #[inline]
    fn wake_if_sleeping(&self) {
        if self.sleeping.load(Ordering::SeqCst) && self.sleeping.swap(false, Ordering::Relaxed) {
            let _st = lock(&self.state);
            self.wake.notify_one();
        }
    }

    /// Takes every queued head (the newest; NULL if none), with the bytes
    /// they declared.
    fn take_raw(&self) -> (*mut RcuHead, usize) {
        let acc = &mut *lock(&self.incoming_bytes);
        // AcqRel: a push after this swap acquires it, and with it the
        // `dead` flag `call_rcu_data_free` set before (see `push`).
        let newest = self.incoming.swap(ptr::null_mut(), Ordering::AcqRel);
        (newest, std::mem::take(acc))
    }

    /// Takes every queued head as a chain, counted, with its bytes.
    fn take(&self) -> Chain {
        let (newest, bytes) = self.take_raw();
        // SAFETY: the stack was just taken whole: its heads are ours.
        unsafe { chain_of(newest, bytes) }
    }

    /// Adds a chain taken from another crdp (freed, or lost in a fork);
    /// returns `queued` once it is counted: once `done` reaches that, the
    /// chain has been invoked.
    ///
    /// Counted after it is pushed: every head pushed before it was counted
    /// before its own push (`push`), so fewer than that many heads come
    /// before the chain's last, and the batches invoked in order cannot
    /// reach that count without it.
    pub(crate) fn adopt(&self, chain: Chain) -> u64 {
        if chain.is_empty() {
            return self.queued.load(Ordering::SeqCst);
        }
        if chain.bytes == 0 {
            // No bytes to book with the batch: no lock, as `push`.
            self.push_chain(chain.newest, chain.oldest);
        } else {
            let mut acc = lock(&self.incoming_bytes);
            *acc += chain.bytes;
            self.bytes.fetch_add(chain.bytes, Ordering::Relaxed);
            self.push_chain(chain.newest, chain.oldest);
        }
        let queued = self.queued.fetch_add(chain.len, Ordering::SeqCst) + chain.len;
        self.wake_if_sleeping();
        queued
    }

    /// Heads queued and not yet invoked, and their bytes.
    pub(crate) fn backlog(&self) -> (usize, usize) {
        let done = lock(&self.state).done;
        let queued = self.queued.load(Ordering::Relaxed);
        (
            queued.saturating_sub(done) as usize,
            self.bytes.load(Ordering::Relaxed),
        )
    }

    /// For a reclaimer: takes what is queued, waits for its grace period
    /// and invokes it on the calling thread; returns how many, and their
    /// bytes. Nothing while the thread is paused for a fork.
    pub(crate) fn drain_here(&self) -> (usize, usize) {
        if lock(&self.state).pause {
            return (0, 0);
        }
        // Only if no batch is in flight: the thread's, waiting for its
        // grace period, completes first anyway, and this caller need not
        // wait for it here (a barrier waits for it; reclaim moves on).
        let Some(_in_order) = try_lock(&self.batch) else {
            return (0, 0);
        };
        self.run_batch_locked(None)
    }

    /// Heads taken into batches so far.
    #[cfg(test)]
    pub(crate) fn taken_now(&self) -> u64 {
        self.taken.load(Ordering::Relaxed)
    }

    /// Heads ever queued here: once `done` reaches the count read before
    /// a wait, everything queued before it was invoked (or handed over).
    pub(crate) fn queued_now(&self) -> u64 {
        self.queued.load(Ordering::SeqCst)
    }

    /// Waits until everything queued before the call was invoked here,
    /// or handed over to another crdp when this one was freed: then
    /// returns that crdp and the count its `done` must reach (see
    /// [`wait_done_or_stuck`](Self::wait_done_or_stuck)).
    #[cfg(test)]
    pub(crate) fn wait_drained(&self) -> Option<(Arc<CallRcuData>, u64)> {
        self.wait_done_or_stuck(self.queued_now(), false).0
    }

    /// Marks this crdp's thread as waiting, inside a callback, for the
    /// other crdps (or no longer), and wakes their waiters to see it.
    pub(crate) fn set_waiting_in_callback(&self, waiting: bool) {
        let mut st = lock(&self.state);
        st.waiting_in_callback = waiting;
        self.progress.notify_all();
    }

    /// Waits until `done` reaches `target` (or the crdp was lost in a
    /// fork); returns where what it still held went, if it was freed.
    /// With `unless_stuck` (the caller is
    /// a crdp's thread inside a callback), it also stops waiting once this
    /// crdp's thread waits inside a callback too (the second result then
    /// says so): neither thread would invoke anything until the other did.
    pub(crate) fn wait_done_or_stuck(
        &self,
        target: u64,
        unless_stuck: bool,
    ) -> (Option<(Arc<CallRcuData>, u64)>, bool) {
        if self.pid != std::process::id() {
            // Forked without `call_rcu_before_fork` / `_after_fork_child`:
            // the thread stayed in the parent, and what was queued here
            // would wait for ever (liburcu hangs silently).
            crate::die(
                "rcu_barrier() in a child process forked without the fork hooks: the call_rcu \
                 threads stayed in the parent, so the callbacks queued here can never run; call \
                 call_rcu_before_fork() before fork(), then call_rcu_after_fork_parent() in the \
                 parent and call_rcu_after_fork_child() in the child",
            );
        }
        let mut st = lock(&self.state);
        // Not done when the thread stops: what it still holds is counted
        // done only by `hand_over`, with where it went.
        while st.done < target && !st.freed {
            if unless_stuck && st.waiting_in_callback {
                return (None, true);
            }
            if st.lost_heads {
                // No count to wait for: look every few milliseconds
                // whether the queue is empty and no batch is in hand.
                if self.drained() {
                    break;
                }
                st = self
                    .progress
                    .wait_timeout(st, LOST_HEADS_LOOK)
                    .map_or_else(|p| p.into_inner().0, |(g, _)| g);
                continue;
            }
            st = wait(&self.progress, st);
        }
        (st.handed.clone(), false)
    }

    /// Whether nothing is queued here and no batch is in hand (a look, for
    /// barriers once heads were lost: `State::lost_heads`).
    fn drained(&self) -> bool {
        self.incoming.load(Ordering::Acquire).is_null()
            && !self.invoking.load(Ordering::Relaxed)
            && !matches!(self.batch.try_lock(), Err(TryLockError::WouldBlock))
    }

    /// Stops the thread, as liburcu's `call_rcu_data_free` does: once it
    /// has finished the batch in hand or, idle, taken what is queued and
    /// run it (unless `now`: then it takes nothing more). What is still
    /// queued then stays queued (see `hand_over`). Returns once the thread
    /// has stopped, and `join`s it.
    pub(crate) fn stop(&self, now: bool) {
        let handle = {
            let mut st = lock(&self.state);
            st.stop = true;
            st.stop_now |= now;
            self.wake.notify_all();
            while !st.stopped {
                st = wait(&self.progress, st);
            }
            st.handle.take()
        };
        if let Some(h) = handle {
            let _ = h.join();
        }
    }

    /// For a caller that must not go offline (an online QSBR thread, whose
    /// every wait offline is a quiescent state): stops the thread as
    /// `stop(true)` does, online, unless it has a batch in hand (whose
    /// grace period such a caller holds up: liburcu's thread waits for it
    /// there, and liburcu's `call_rcu_data_free` for ever) or is paused for
    /// a fork. Returns whether it stopped; if not, the stop stays asked for
    /// and [`stop`](Self::stop), offline, finishes it.
    pub(crate) fn stop_if_idle(&self) -> bool {
        let mut st = lock(&self.state);
        st.stop = true;
        st.stop_now = true;
        self.wake.notify_all();
        loop {
            if st.stopped {
                let handle = st.handle.take();
                drop(st);
                if let Some(h) = handle {
                    let _ = h.join();
                }
                return true;
            }
            if st.paused || matches!(self.batch.try_lock(), Err(TryLockError::WouldBlock)) {
                return false;
            }
            // Between its look at `stop` and a batch: looked at again soon.
            st = self
                .progress
                .wait_timeout(st, Duration::from_millis(1))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Pauses the thread where it holds nothing (before fork). Returns
    /// `false`, the pause requested but not reached, if one of its
    /// callbacks waits for the `defer_rcu` flush lock (which the caller
    /// holds: the thread cannot get there until it has it).
    ///
    /// `caller_in_section`: the caller is inside a read-side section that
    /// grace periods wait for (`call_rcu_before_fork` there). A thread
    /// whose batch waits for its grace period then never pauses, since
    /// that grace period waits for the caller's section, and the caller
    /// waits for the thread. liburcu's hook waits for ever without a word;
    /// here, once the thread has waited [`PAUSE_IN_SECTION_LIMIT`] for one
    /// grace period, the process ends, saying why and what to change.
    pub(crate) fn pause(&self, caller_in_section: bool) -> bool {
        let mut st = lock(&self.state);
        st.pause = true;
        self.wake.notify_all();
        let mut awaiting_since: Option<Instant> = None;
        while !st.paused && !st.stopped {
            if st.waiting_for_flush {
                return false;
            }
            if !caller_in_section {
                st = wait(&self.progress, st);
                continue;
            }
            if !self.awaiting_gp.load(Ordering::Relaxed) {
                awaiting_since = None;
            } else if awaiting_since.get_or_insert_with(Instant::now).elapsed()
                >= PAUSE_IN_SECTION_LIMIT
            {
                crate::die(&format!(
                    "call_rcu_before_fork() was called inside a read-side critical section, \
                     and a call_rcu thread has waited {} s for a grace period that this \
                     section holds up: it cannot pause for the fork, and the fork would \
                     wait for it for ever. End the section (rcu_read_unlock()) before \
                     call_rcu_before_fork() and fork()",
                    PAUSE_IN_SECTION_LIMIT.as_secs()
                ));
            }
            st = self
                .progress
                .wait_timeout(st, Duration::from_millis(10))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        true
    }

    /// Waits until the thread's callback no longer waits for the
    /// `defer_rcu` flush lock (see [`pause`](Self::pause)).
    pub(crate) fn wait_not_waiting_for_flush(&self) {
        let mut st = lock(&self.state);
        while st.waiting_for_flush {
            st = wait(&self.progress, st);
        }
    }

    fn set_waiting_for_flush(&self, waiting: bool) {
        let mut st = lock(&self.state);
        st.waiting_for_flush = waiting;
        self.progress.notify_all();
    }

    pub(crate) fn resume(&self) {
        lock(&self.state).pause = false;
        self.wake.notify_all();
    }

    /// In a forked child, where the thread does not exist: marks the crdp
    /// freed and returns what it still held, for the new default crdp.
    ///
    /// Blocks on no lock of the crdp: another thread of the parent may have
    /// held one at the fork (a `call_rcu` caller waking the thread or held
    /// back holds `state`, a sized one `incoming_bytes`), and no thread
    /// releases it in the child. Such a crdp is left as it is (it is
    /// reachable from nothing once the caller rebuilt the registry; its
    /// thread's reference keeps it, and its handle, from being dropped).
    pub(crate) fn abandon_in_child(&self) -> Chain {
        if let Some(mut st) = try_lock(&self.state) {
            if let Some(h) = st.handle.take() {
                std::mem::forget(h); // the thread is the parent's
            }
            st.freed = true;
            st.stopped = true;
        }
        let bytes = match self.incoming_bytes.try_lock() {
            Ok(mut acc) => std::mem::take(&mut *acc),
            Err(TryLockError::Poisoned(p)) => std::mem::take(&mut *p.into_inner()),
            // A sized push was under way at the fork: what is queued here
            // declared, at most, every byte not yet invoked (the thread was
            // paused holding no batch).
            Err(TryLockError::WouldBlock) => self.bytes.load(Ordering::Relaxed),
        };
        let newest = self.incoming.swap(ptr::null_mut(), Ordering::Acquire);
        // SAFETY: the stack was just taken whole: its heads are ours.
        unsafe { chain_of(newest, bytes) }
    }

    /// Hands what a stopped crdp still holds over to `to` (which counts it
    /// as queued), then counts it as done here and marks this one freed,
    /// noting where it went: a barrier that counted those heads here
    /// follows them there (`wait_done_or_stuck`), so they cannot escape it.
    /// `in_section`: the caller is inside a read-side section (see
    /// [`handing_off`]).
    pub(crate) fn hand_over(&self, to: &Arc<CallRcuData>, in_section: bool) {
        // After a batch a caller's `drain_here` still runs: `freed` must
        // not let a barrier stop waiting here before that batch is done.
        let _in_order = lock(&self.batch);
        let (n, there) = handing_off(in_section, || {
            let chain = self.take();
            let n = chain.len;
            self.taken.fetch_add(n, Ordering::Relaxed);
            self.bytes.fetch_sub(chain.bytes, Ordering::Relaxed);
            (n, to.adopt(chain))
        });
        let mut st = lock(&self.state);
        st.done += n;
        st.freed = true;
        if n > 0 {
            st.handed = Some((to.clone(), there));
        }
        self.progress.notify_all();
    }
}

fn set_affinity(cpu: c_int) {
    // CPU_SET indexes a fixed set of CPU_SETSIZE bits (it panics past it).
    let bits = 8 * std::mem::size_of::<libc::cpu_set_t>();
    if usize::try_from(cpu).map_or(true, |c| c >= bits) {
        eprintln!(
            "[error] rcu-reclaim-urcu: cannot bind a call_rcu thread to CPU {cpu}: out of \
             range (0..{}); it runs unbound (pass a CPU number below the number of CPUs, or \
             -1 for none)",
            bits
        );
        return;
    }
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET and
    // sched_setaffinity get valid pointers to it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu as usize, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) != 0 {
            eprintln!(
                "[error] rcu-reclaim-urcu: cannot bind a call_rcu thread to CPU {cpu}: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::mpsc;

    static RAN: AtomicUsize = AtomicUsize::new(0);

    unsafe extern "C" fn count(_: *mut RcuHead) {
        RAN.fetch_add(1, Ordering::Relaxed);
    }

    fn heads(n: usize) -> &'static mut [RcuHead] {
        (0..n)
            .map(|_| RcuHead {
                next: ptr::null_mut(),
                func: Some(count),
            })
            .collect::<Vec<_>>()
            .leak()
    }

    /// Pushes `order` (indices into `hs`) as `push_chain` links a stack:
    /// each head's `next` is the head pushed before it. Returns the top.
    fn stack_of(hs: &mut [RcuHead], order: &[usize]) -> *mut RcuHead {
        let mut top: *mut RcuHead = ptr::null_mut();
        for &i in order {
            hs[i].next = top;
            top = &mut hs[i];
        }
        top
    }

    /// The heads of a chain from `first`, in order, as indices into `hs`.
    fn walk(hs: &[RcuHead], first: *mut RcuHead) -> Vec<usize> {
        let mut out = Vec::new();
        let mut cur = first;
        while !cur.is_null() {
            assert!(out.len() <= hs.len(), "still a cycle: {out:?}");
            out.push(hs.iter().position(|h| ptr::eq(h, cur)).unwrap());
            // SAFETY: a head of `hs`.
            cur = unsafe { (*cur).next };
        }
        out
    }

    /// Ten heads, of which are pushed 0, then 1, then `gap` others, then 1
    /// again, then one more; and the stack's top.
    fn pushed_twice(gap: usize) -> (&'static mut [RcuHead], *mut RcuHead) {
        let hs = heads(10);
        let mut order = vec![0, 1];
        order.extend(2..2 + gap);
        order.extend([1, 2 + gap]);
        let top = stack_of(hs, &order);
        (hs, top)
    }

    /// A head pushed again before it was taken makes a cycle; `chain_of`
    /// cuts it, so every head still reachable is in the chain once (the
    /// heads pushed before the head's first push are lost).
    #[test]
    fn chain_of_cuts_the_cycle_a_head_pushed_twice_makes() {
        for gap in [0, 1, 5] {
            let (hs, top) = pushed_twice(gap);
            // SAFETY: the heads are this test's.
            let chain = unsafe { chain_of(top, 0) };
            let got = walk(hs, chain.newest);
            let mut want = vec![2 + gap, 1];
            want.extend((2..2 + gap).rev());
            assert_eq!(got, want, "gap {gap}");
            assert_eq!(chain.len, want.len() as u64, "gap {gap}");
            assert!(
                ptr::eq(chain.oldest, &hs[*want.last().unwrap()]),
                "gap {gap}"
            );
        }
    }

    /// A chain with no cycle is untouched by the check.
    #[test]
    fn chain_of_leaves_a_chain_without_a_cycle_as_it_is() {
        for n in [1, 2, 3, 7, 64, 100] {
            let hs = heads(n);
            let order: Vec<_> = (0..n).collect();
            let top = stack_of(hs, &order);
            // SAFETY: the heads are this test's.
            let chain = unsafe { chain_of(top, 0) };
            assert_eq!(chain.len, n as u64);
            assert_eq!(walk(hs, chain.newest), (0..n).rev().collect::<Vec<_>>());
        }
    }

    /// Reversed in place, a chain running into a cycle comes back to its
    /// newest head (the batch's test for one), and `cut_cycle` then leaves
    /// each reachable head once.
    #[test]
    fn a_reversed_chain_with_a_cycle_ends_at_its_newest_and_is_cut() {
        for gap in [0, 1, 5] {
            let (hs, top) = pushed_twice(gap);
            // SAFETY: the heads are this test's.
            let (oldest, n) = unsafe { reverse_counting(top) };
            assert!(ptr::eq(oldest, top) && n > 1, "gap {gap}");
            // SAFETY: as above.
            let (_, distinct) = unsafe { cut_cycle(oldest) };
            let mut got = walk(hs, oldest);
            assert_eq!(distinct, got.len() as u64, "gap {gap}");
            got.sort_unstable();
            assert_eq!(got, (1..3 + gap).collect::<Vec<_>>(), "gap {gap}");
        }
    }

    static RAN_BEFORE_STOP: AtomicUsize = AtomicUsize::new(0);

    unsafe extern "C" fn count_before_stop(_: *mut RcuHead) {
        RAN_BEFORE_STOP.fetch_add(1, Ordering::Relaxed);
    }

    /// As liburcu's `call_rcu_data_free`: the thread, asked to stop while
    /// idle, first runs what is queued (before: it stopped at once, and
    /// everything went to the default crdp).
    #[test]
    fn a_thread_stopped_while_idle_runs_what_is_queued_first() {
        let rcu: &'static Rcu = Box::leak(Box::new(
            Rcu::new(rcu_reclaim::Config::new()).expect("a domain"),
        ));
        let crdp = CallRcuData::spawn(rcu, -1, ThreadHooks::NONE);
        let hs: &'static mut [RcuHead] = (0..3)
            .map(|_| RcuHead {
                next: ptr::null_mut(),
                func: Some(count_before_stop),
            })
            .collect::<Vec<_>>()
            .leak();
        for h in hs.iter_mut() {
            crdp.push(h, 0);
        }
        crdp.stop(false);
        assert_eq!(RAN_BEFORE_STOP.load(Ordering::Relaxed), 3);
        assert!(crdp.incoming.load(Ordering::Relaxed).is_null());
        assert_eq!(lock(&crdp.state).done, 3);
    }

    #[test]
    fn callers_fill_the_next_batch_while_one_waits_for_its_grace_period() {
        let rcu = Rcu::global();
        let crdp = CallRcuData::spawn(rcu, -1, ThreadHooks::NONE);
        // A reader holds up every grace period until told to leave.
        let (entered_tx, entered) = mpsc::channel();
        let (leave, leave_rx) = mpsc::channel::<()>();
        let reader = std::thread::spawn(move || {
            let _g = rcu.read_lock();
            entered_tx.send(()).unwrap();
            let _ = leave_rx.recv();
        });
        entered.recv().unwrap();
        // One batch of PUSH_BACK_AT heads, taken whole: queued while the
        // thread is paused, then resumed.
        let first = heads(PUSH_BACK_AT as usize);
        crdp.pause(false);
        for h in first.iter_mut() {
            assert!(!crdp.push(h, 0));
        }
        crdp.resume();
        while crdp.taken.load(Ordering::Relaxed) < PUSH_BACK_AT {
            std::thread::sleep(Duration::from_millis(1));
        }
        // That batch now waits for the reader: the next fills up to the
        // mark without push-back (counting the batch in hand, every one of
        // these would have been over it).
        let second = heads(PUSH_BACK_AT as usize + 1);
        let (last, rest) = second.split_last_mut().unwrap();
        for h in rest.iter_mut() {
            assert!(!crdp.push(h, 0), "held back while the next batch fills");
        }
        assert!(crdp.push(last, 0), "over the mark: push-back");
        assert_eq!(crdp.backlog().0, 2 * PUSH_BACK_AT as usize + 1);
        leave.send(()).unwrap();
        reader.join().unwrap();
        crdp.wait_drained();
        assert_eq!(crdp.backlog().0, 0);
        assert_eq!(RAN.load(Ordering::Relaxed), 2 * PUSH_BACK_AT as usize + 1);
        crdp.stop(false);
    }

    static RAN_PRESSURED: AtomicUsize = AtomicUsize::new(0);

    unsafe extern "C" fn count_pressured(_: *mut RcuHead) {
        RAN_PRESSURED.fetch_add(1, Ordering::Relaxed);
    }

    /// A head of `run`, leaked (the crdp links it until it runs).
    fn head(run: unsafe extern "C" fn(*mut RcuHead)) -> &'static mut RcuHead {
        Box::leak(Box::new(RcuHead {
            next: ptr::null_mut(),
            func: Some(run),
        }))
    }

    /// Pushes heads of `run` on the paused `crdp` until one is pushed back
    /// (the crdp looks at the memory state every `MEMORY_LOOK_EVERY`th
    /// head), and no more than that many: how many it pushed.
    fn push_until_held(crdp: &CallRcuData, run: unsafe extern "C" fn(*mut RcuHead)) -> usize {
        for n in 1..=MEMORY_LOOK_EVERY as usize {
            if crdp.push(head(run), 0) {
                return n;
            }
        }
        panic!("no push-back within {MEMORY_LOOK_EVERY} heads")
    }

    #[test]
    fn under_memory_pressure_callers_are_held_back_sooner() {
        // A domain of its own: pressure here leaves the other tests' alone.
        let rcu: &'static Rcu = Box::leak(Box::new(
            Rcu::new(rcu_reclaim::Config::new()).expect("a domain"),
        ));
        let crdp = CallRcuData::spawn(rcu, -1, ThreadHooks::NONE);
        crdp.pause(false);
        // Past the mark for short memory, without pressure: not held back.
        let mut n = PUSH_BACK_AT_SHORT as usize + 1;
        for _ in 0..n {
            assert!(
                !crdp.push(head(count_pressured), 0),
                "held back without pressure"
            );
        }
        let pressure = rcu.pressure_start_all();
        n += push_until_held(&crdp, count_pressured);
        pressure.end();
        crdp.resume();
        crdp.wait_drained();
        assert_eq!(crdp.backlog().0, 0);
        assert_eq!(RAN_PRESSURED.load(Ordering::Relaxed), n);
        // Pushed after the drain: a backlog of one again.
        assert!(!crdp.push(head(count_pressured), 0));
        crdp.wait_drained();
        assert_eq!(RAN_PRESSURED.load(Ordering::Relaxed), n + 1);
        crdp.stop(false);
    }

    static RAN_LIMITED: AtomicUsize = AtomicUsize::new(0);

    unsafe extern "C" fn count_limited(_: *mut RcuHead) {
        RAN_LIMITED.fetch_add(1, Ordering::Relaxed);
    }

    /// Under a memory limit the domain knows (as `spawn` sets from the
    /// process's cgroup): nothing held back while the usage is low, past
    /// 256 waiting heads while it is over the limit's mark, past 4,096
    /// while it is over three quarters of it; all of them run.
    #[test]
    fn near_a_memory_limit_callers_are_held_back_sooner_still() {
        let rcu: &'static Rcu = Box::leak(Box::new(
            Rcu::new(rcu_reclaim::Config::new()).expect("a domain"),
        ));
        let usage = Arc::new(AtomicUsize::new(10 << 20));
        let read = usage.clone();
        rcu.bound_garbage(80 << 20, move || Some(read.load(Ordering::Relaxed)));
        let crdp = CallRcuData::spawn(rcu, -1, ThreadHooks::NONE);
        // The usage is read again once a millisecond old.
        let set = |bytes: usize| {
            usage.store(bytes, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(2));
        };
        crdp.pause(false);
        let mut n = 2 * PUSH_BACK_AT_OVER as usize;
        for _ in 0..n {
            assert!(
                !crdp.push(head(count_limited), 0),
                "held back with plenty of memory"
            );
        }
        set(90 << 20);
        n += push_until_held(&crdp, count_limited);
        set(70 << 20);
        // Short: not held back until 4,096 wait.
        while n < PUSH_BACK_AT_SHORT as usize {
            assert!(
                !crdp.push(head(count_limited), 0),
                "short, {n} waiting: held back"
            );
            n += 1;
        }
        n += push_until_held(&crdp, count_limited);
        assert!(n > PUSH_BACK_AT_SHORT as usize);
        crdp.resume();
        crdp.wait_drained();
        assert_eq!(RAN_LIMITED.load(Ordering::Relaxed), n);
        crdp.stop(false);
    }
}
