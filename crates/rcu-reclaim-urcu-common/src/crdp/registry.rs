//! The registry of crdps: every live one (`ALL`, liburcu's
//! `call_rcu_mutex`), those freed but maybe still reached (`DEAD`), the
//! default, the per-CPU and per-thread choices, and which one a `call_rcu`
//! on this thread uses.

use super::*;

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
pub(super) static STRAYS: AtomicUsize = AtomicUsize::new(0);

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
