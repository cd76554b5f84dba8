//! The `call_rcu_data`s: each a queue of heads past their grace period and
//! the thread that invokes them (paused across fork, stopped on free), and
//! their registry: every live one, the default, the per-CPU and per-thread
//! choices, and liburcu's `struct rcu_head`.

use std::collections::VecDeque;
use std::os::raw::c_int;
use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;

use crate::rcu;

/// liburcu's `struct rcu_head`: a `cds_wfcq_node` (one pointer) then `func`.
#[repr(C)]
pub struct RcuHead {
    pub(crate) next: *mut RcuHead,
    pub(crate) func: Option<RcuFunc>,
}

/// A callback: `void (*func)(struct rcu_head *head)`.
pub type RcuFunc = unsafe extern "C" fn(*mut RcuHead);

const _: () = assert!(std::mem::size_of::<RcuHead>() == 16);

thread_local! {
    /// `set_thread_call_rcu_data`'s per-thread choice (no reference held).
    pub(crate) static THREAD_CRDP: std::cell::Cell<*const CallRcuData> = const { std::cell::Cell::new(ptr::null()) };
    /// On a crdp's own thread: that crdp.
    pub(crate) static WORKER_OF: std::cell::Cell<*const CallRcuData> = const { std::cell::Cell::new(ptr::null()) };
}

/// Every live crdp (each entry holds a reference); the lock is liburcu's
/// `call_rcu_mutex`, held across fork.
pub(crate) static ALL: Mutex<Vec<Arc<CallRcuData>>> = Mutex::new(Vec::new());
/// The default crdp (a reference held by `ALL`).
pub(crate) static DEFAULT: AtomicPtr<CallRcuData> = AtomicPtr::new(ptr::null_mut());
/// Per-CPU choices (no references held: liburcu's caller frees them).
pub(crate) static PER_CPU: OnceLock<Box<[AtomicPtr<CallRcuData>]>> = OnceLock::new();

pub(crate) fn all() -> MutexGuard<'static, Vec<Arc<CallRcuData>>> {
    ALL.lock().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn per_cpu() -> &'static [AtomicPtr<CallRcuData>] {
    PER_CPU.get_or_init(|| {
        // SAFETY: sysconf has no preconditions.
        let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) }.max(1) as usize;
        (0..n).map(|_| AtomicPtr::new(ptr::null_mut())).collect()
    })
}

/// The default crdp, created on first use.
pub(crate) fn default_crdp() -> Arc<CallRcuData> {
    let p = DEFAULT.load(Ordering::Acquire);
    if !p.is_null() {
        // SAFETY: the default crdp is never freed (only replaced in a forked
        // child, where the old one is kept alive by the trampolines).
        return unsafe { clone_raw(p) };
    }
    let mut all = all();
    let p = DEFAULT.load(Ordering::Acquire);
    if !p.is_null() {
        // SAFETY: as above.
        return unsafe { clone_raw(p) };
    }
    install_default(&mut all)
}

/// Creates the default crdp; the caller holds `ALL`.
pub(crate) fn install_default(all: &mut Vec<Arc<CallRcuData>>) -> Arc<CallRcuData> {
    let crdp = CallRcuData::spawn(-1);
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

/// The crdp `call_rcu` would use now: the thread's, the CPU's, the default.
/// Called inside a read-side section (liburcu's contract for per-CPU ones).
pub(crate) fn current_crdp() -> Arc<CallRcuData> {
    let t = THREAD_CRDP.with(|t| t.get());
    if !t.is_null() {
        // SAFETY: liburcu's contract: a crdp set for a thread stays alive
        // until the thread sets another.
        return unsafe { clone_raw(t) };
    }
    if let Some(table) = PER_CPU.get() {
        // SAFETY: sched_getcpu has no preconditions.
        let cpu = unsafe { libc::sched_getcpu() };
        if let Some(slot) = usize::try_from(cpu).ok().and_then(|c| table.get(c)) {
            let p = slot.load(Ordering::Acquire);
            if !p.is_null() {
                // SAFETY: liburcu's contract: a crdp removed from the table
                // is freed only after a grace period, and we are inside a
                // read-side section.
                return unsafe { clone_raw(p) };
            }
        }
    }
    default_crdp()
}

/// A queued head. The C caller owns the memory and promised (by calling
/// `call_rcu`) to leave it alone until `func` runs.
pub(crate) struct Head(pub(crate) *mut RcuHead, pub(crate) usize);
// SAFETY: the head is handed from the queueing thread to the thread that
// invokes it, never used by two threads at once.
unsafe impl Send for Head {}

impl Head {
    /// Invokes the callback.
    fn invoke(self) {
        // SAFETY: `call_rcu` stored `func` in the head, which the caller
        // keeps valid until `func` runs, exactly once, here.
        unsafe {
            if let Some(f) = (*self.0).func {
                f(self.0);
            }
        }
    }
}

#[derive(Default)]
struct State {
    queue: VecDeque<Head>,
    bytes: usize,
    /// Heads handed to this crdp, and heads invoked (by its thread or a
    /// reclaimer): `rcu_barrier` waits for `done` to catch up.
    handed: u64,
    done: u64,
    stop: bool,
    stopped: bool,
    /// Freed (or lost in a fork): heads go to the default crdp instead.
    freed: bool,
    pause: bool,
    paused: bool,
    handle: Option<JoinHandle<()>>,
}

/// liburcu's `struct call_rcu_data`: a queue and the thread that invokes it.
/// (liburcu's `URCU_CALL_RCU_RT` flag, a worker that polls instead of
/// sleeping, is accepted and behaves like the default.)
pub struct CallRcuData {
    cpu_affinity: c_int,
    pub(crate) tid: OnceLock<libc::pthread_t>,
    state: Mutex<State>,
    wake: Condvar,
    /// Signalled when `done` grows, or the thread pauses or stops.
    progress: Condvar,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn wait<'a>(cv: &Condvar, g: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
    cv.wait(g).unwrap_or_else(|p| p.into_inner())
}

impl CallRcuData {
    pub(crate) fn spawn(cpu_affinity: c_int) -> Arc<CallRcuData> {
        let crdp = Arc::new(CallRcuData {
            cpu_affinity,
            tid: OnceLock::new(),
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            progress: Condvar::new(),
        });
        let me = crdp.clone();
        let handle = std::thread::Builder::new()
            .name("urcu-call-rcu".into())
            .spawn(move || me.run())
            .unwrap_or_else(|e| crate::die(&format!("cannot start a call_rcu thread: {e}")));
        use std::os::unix::thread::JoinHandleExt;
        let _ = crdp.tid.set(handle.as_pthread_t());
        lock(&crdp.state).handle = Some(handle);
        crdp
    }

    /// The thread: invoke what is handed over, park for fork, stop on free.
    fn run(self: Arc<Self>) {
        if self.cpu_affinity >= 0 {
            set_affinity(self.cpu_affinity);
        }
        rcu().register_thread();
        // As liburcu: callbacks that queue callbacks use this crdp.
        THREAD_CRDP.with(|t| t.set(Arc::as_ptr(&self)));
        WORKER_OF.with(|t| t.set(Arc::as_ptr(&self)));
        let mut st = lock(&self.state);
        loop {
            if st.pause {
                st.paused = true;
                self.progress.notify_all();
                while st.pause {
                    st = wait(&self.wake, st);
                }
                st.paused = false;
                continue;
            }
            if !st.queue.is_empty() {
                let batch = std::mem::take(&mut st.queue);
                st.bytes = 0;
                drop(st);
                let n = batch.len() as u64;
                batch.into_iter().for_each(Head::invoke);
                st = lock(&self.state);
                st.done += n;
                self.progress.notify_all();
                continue;
            }
            if st.stop {
                st.stopped = true;
                self.progress.notify_all();
                return;
            }
            st = wait(&self.wake, st);
        }
    }

    /// Hands a head whose grace period has elapsed to this crdp (or, if it
    /// was freed, to the default one).
    pub(crate) fn hand(self: &Arc<Self>, head: Head) {
        let mut st = lock(&self.state);
        if st.freed {
            drop(st);
            return default_crdp().hand(head);
        }
        st.bytes += head.1;
        st.queue.push_back(head);
        st.handed += 1;
        self.wake.notify_one();
    }

    /// Heads handed over and not yet invoked, and their bytes.
    pub(crate) fn backlog(&self) -> (usize, usize) {
        let st = lock(&self.state);
        ((st.handed - st.done) as usize, st.bytes)
    }

    /// Invokes everything handed over so far on the calling thread (a
    /// reclaimer); returns how many, and their bytes.
    pub(crate) fn drain_here(&self) -> (usize, usize) {
        let (batch, bytes) = {
            let mut st = lock(&self.state);
            if st.pause {
                return (0, 0);
            }
            let bytes = std::mem::take(&mut st.bytes);
            (std::mem::take(&mut st.queue), bytes)
        };
        let n = batch.len();
        batch.into_iter().for_each(Head::invoke);
        lock(&self.state).done += n as u64;
        self.progress.notify_all();
        (n, bytes)
    }

    /// Waits until everything handed over before the call was invoked.
    pub(crate) fn wait_drained(&self) {
        let mut st = lock(&self.state);
        let target = st.handed;
        while st.done < target && !st.stopped && !st.freed {
            st = wait(&self.progress, st);
        }
    }

    /// Stops the thread after it has invoked its queue; `join` unless the
    /// thread is the caller.
    pub(crate) fn stop(&self) {
        let handle = {
            let mut st = lock(&self.state);
            st.stop = true;
            self.wake.notify_all();
            while !st.stopped {
                st = wait(&self.progress, st);
            }
            st.freed = true;
            st.handle.take()
        };
        if let Some(h) = handle {
            let _ = h.join();
        }
    }

    /// Pauses the thread where it invokes nothing (before fork).
    pub(crate) fn pause(&self) {
        let mut st = lock(&self.state);
        st.pause = true;
        self.wake.notify_all();
        while !st.paused && !st.stopped {
            st = wait(&self.progress, st);
        }
    }

    pub(crate) fn resume(&self) {
        lock(&self.state).pause = false;
        self.wake.notify_all();
    }

    /// In a forked child, where the thread does not exist: marks the crdp
    /// freed and returns what it still held, for the new default crdp.
    pub(crate) fn abandon_in_child(&self) -> VecDeque<Head> {
        let mut st = lock(&self.state);
        if let Some(h) = st.handle.take() {
            std::mem::forget(h); // the thread is the parent's
        }
        st.freed = true;
        st.stopped = true;
        st.bytes = 0;
        let q = std::mem::take(&mut st.queue);
        st.done += q.len() as u64;
        q
    }

    /// What a stopped crdp still holds.
    pub(crate) fn take_queue(&self) -> VecDeque<Head> {
        std::mem::take(&mut lock(&self.state).queue)
    }

    pub(crate) fn requeue(self: &Arc<Self>, heads: VecDeque<Head>) {
        heads.into_iter().for_each(|h| self.hand(h));
    }
}

fn set_affinity(cpu: c_int) {
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
