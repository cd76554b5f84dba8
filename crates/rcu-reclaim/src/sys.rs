//! Thin wrappers over the Linux system calls the crate needs: `membarrier`
//! (the writer's half of the memb flavor), `futex` (parking a writer until a
//! reader leaves its section) and `gettid` (naming stalled readers).

use std::io;
use std::sync::atomic::AtomicI32;
use std::time::Duration;

const MEMBARRIER_CMD_QUERY: libc::c_int = 0;
const MEMBARRIER_CMD_PRIVATE_EXPEDITED: libc::c_int = 1 << 3;
const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_int = 1 << 4;

#[cfg(not(miri))]
fn membarrier(cmd: libc::c_int) -> io::Result<libc::c_long> {
    // SAFETY: membarrier takes two integer arguments (cmd, flags) and touches
    // no memory of ours; an unknown command fails with EINVAL.
    let r = unsafe { libc::syscall(libc::SYS_membarrier, cmd, 0 as libc::c_int) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Miri has no `membarrier`: the query offers the expedited command and
/// every other command is a SeqCst fence on the calling thread only. That
/// alone is not the kernel's barrier on every thread, so under Miri the
/// memb flavor's readers issue a real fence too (`flavor::reader_fence`),
/// as the mb flavor's do: the pairing Miri checks is then the mb one.
#[cfg(miri)]
fn membarrier(cmd: libc::c_int) -> io::Result<libc::c_long> {
    if cmd == MEMBARRIER_CMD_QUERY {
        return Ok(libc::c_long::from(MEMBARRIER_CMD_PRIVATE_EXPEDITED));
    }
    std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
    Ok(0)
}

/// Asks the kernel for `MEMBARRIER_CMD_PRIVATE_EXPEDITED` and registers the
/// process for it. `Err` says why it cannot be used.
pub(crate) fn membarrier_register() -> Result<(), String> {
    let supported = membarrier(MEMBARRIER_CMD_QUERY)
        .map_err(|e| format!("membarrier(MEMBARRIER_CMD_QUERY) failed: {e}"))?;
    if supported & libc::c_long::from(MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0 {
        return Err(format!(
            "the kernel does not offer MEMBARRIER_CMD_PRIVATE_EXPEDITED (supported mask {supported:#x}; Linux 4.14 or later is needed)"
        ));
    }
    membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED)
        .map(|_| ())
        .map_err(|e| format!("membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) failed: {e}"))
}

/// Executes a full memory barrier on every running thread of this process.
pub(crate) fn membarrier_private_expedited() {
    if let Err(e) = membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) {
        // The domain registered the process before choosing the memb flavor,
        // and the kernel promises the command succeeds once registered.
        // Continuing without the barrier would let readers see freed memory.
        panic!("rcu-reclaim: membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) failed after registration: {e}; the memb flavor cannot continue safely (create the domain with Flavor::Mb)");
    }
}

/// Sleeps while `*word == expected`, for at most `timeout`.
pub(crate) fn futex_wait(word: &AtomicI32, expected: i32, timeout: Duration) {
    futex_wait_op(
        word,
        libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
        expected,
        timeout,
    );
}

/// [`futex_wait`] on a word that other code wakes with a plain (not
/// process-private) `FUTEX_WAKE`, as liburcu's inlined read side does.
pub(crate) fn futex_wait_shared(word: &AtomicI32, expected: i32, timeout: Duration) {
    futex_wait_op(word, libc::FUTEX_WAIT, expected, timeout);
}

fn futex_wait_op(word: &AtomicI32, op: libc::c_int, expected: i32, timeout: Duration) {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `word` is a live, aligned 32-bit atomic for the duration of the
    // call and `ts` outlives it; FUTEX_WAIT only reads both. Spurious wake-ups,
    // EAGAIN and EINTR are all handled by the caller re-checking its condition.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            op,
            expected,
            &ts as *const libc::timespec,
        );
    }
}

/// Wakes every thread sleeping in [`futex_wait`] on `word`.
pub(crate) fn futex_wake_all(word: &AtomicI32) {
    // SAFETY: `word` is a live, aligned 32-bit atomic; FUTEX_WAKE only uses
    // its address as a key.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            i32::MAX,
        );
    }
}

/// Wakes one thread sleeping in [`futex_wait_shared`] on `word` (a
/// plain, not process-private, `FUTEX_WAKE`, as liburcu's readers issue).
pub(crate) fn futex_wake_shared(word: &AtomicI32) {
    // SAFETY: `word` is a live, aligned 32-bit atomic; FUTEX_WAKE only uses
    // its address as a key.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, 1);
    }
}

/// The kernel's id of the calling thread.
pub(crate) fn gettid() -> i32 {
    // SAFETY: gettid has no arguments and cannot fail.
    unsafe { libc::gettid() }
}

/// Whether `file` lies on procfs or a cgroup file system (v1 or v2): the
/// kernel files that pressure triggers and notifications are written to,
/// as opposed to a regular file that a wrong path names (writing a trigger
/// there would overwrite it and never fire).
#[cfg(miri)]
pub(crate) fn on_kernel_fs(_file: &std::fs::File) -> bool {
    // Miri has no `fstatfs` (nor procfs or cgroup file systems to find).
    false
}

/// See the Miri version above.
#[cfg(not(miri))]
pub(crate) fn on_kernel_fs(file: &std::fs::File) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: `st` is written by the call; the descriptor is open.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid descriptor and a valid `statfs` to fill.
    if unsafe { libc::fstatfs(file.as_raw_fd(), &mut st) } != 0 {
        return false;
    }
    [
        libc::PROC_SUPER_MAGIC,
        libc::CGROUP_SUPER_MAGIC,
        libc::CGROUP2_SUPER_MAGIC,
    ]
    .contains(&st.f_type)
}

/// Whether thread `tid` of this process has exited (`tgkill` with signal
/// 0 checks without sending; `ESRCH`: no such thread in this process;
/// where a seccomp filter refuses the call, `/proc/self/task/<tid>` is
/// looked for instead). A thread still running its thread-local
/// destructors has not exited.
pub(crate) fn thread_exited(tid: i32) -> bool {
    // Miri has neither `tgkill` nor `/proc`: every thread is taken to run
    // still, the answer that never ends a section early (an exited thread's
    // raw sections then hold grace periods up, as a live thread's would).
    #[cfg(miri)]
    {
        let _ = tid;
        false
    }
    #[cfg(not(miri))]
    thread_exited_os(tid)
}

#[cfg(not(miri))]
fn thread_exited_os(tid: i32) -> bool {
    // SAFETY: signal 0 sends nothing; the call only looks the thread up.
    let r = unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, 0) };
    if r == 0 {
        return false;
    }
    match io::Error::last_os_error().raw_os_error() {
        Some(libc::ESRCH) => true,
        _ => !std::path::Path::new(&format!("/proc/self/task/{tid}")).exists(),
    }
}

/// The name of thread `tid` of this process (`/proc/self/task/<tid>/comm`),
/// for a report that names it; `None` where that cannot be read (no
/// procfs, the thread gone, Miri).
pub(crate) fn thread_name(tid: i32) -> Option<String> {
    #[cfg(miri)]
    {
        let _ = tid;
        None
    }
    #[cfg(not(miri))]
    {
        let comm = std::fs::read_to_string(format!("/proc/self/task/{tid}/comm")).ok()?;
        Some(comm.trim_end().to_string())
    }
}

/// Whether thread `tid` of this process is blocked (asleep in the kernel:
/// state `S` or `D` in `/proc/self/task/<tid>/stat`, as on a futex), not
/// running or waiting for a CPU; `None` where that cannot be read (no
/// procfs, Miri).
pub(crate) fn thread_blocked(tid: i32) -> Option<bool> {
    #[cfg(miri)]
    {
        let _ = tid;
        None
    }
    #[cfg(not(miri))]
    {
        let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
        // The state follows the command name, which is in parentheses and
        // may itself hold spaces or parentheses.
        let state = stat
            .get(stat.rfind(')')? + 1..)?
            .split_whitespace()
            .next()?;
        Some(matches!(state, "S" | "D"))
    }
}

/// Starts one of the library's own threads (grace periods, callback
/// workers, the pressure monitor, `rcu-kswapd`) with every signal blocked,
/// as a library's helper threads should be: a signal meant for the program
/// (a `SIGALRM` timer, a `SIGUSR1` that its handler answers with a
/// `call_rcu`) then lands on one of the program's threads, never inside
/// the library's own critical sections, where a handler that queues work
/// or takes a read-side section would wait for a lock the interrupted code
/// holds. The new thread inherits the mask; the caller's is restored.
/// Faults (`SIGSEGV`, `SIGBUS`) still end the process as before.
/// Each also notes its kernel thread id while it runs ([`helper_state`]).
pub(crate) fn spawn_quiet<F, T>(
    builder: std::thread::Builder,
    f: F,
) -> io::Result<std::thread::JoinHandle<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    with_signals_blocked(|| {
        builder.spawn(move || {
            let _noted = HelperTid::note();
            f()
        })
    })
}

/// A running helper thread's entry: its `ThreadId`, its kernel thread id,
/// and whether it is waiting for a grace period ([`helper_state`]).
type HelperEntry = (
    std::thread::ThreadId,
    i32,
    std::sync::Arc<std::sync::atomic::AtomicBool>,
);

/// The library's running helper threads' kernel thread ids, by
/// `ThreadId` (a handful at most).
static HELPER_TIDS: std::sync::Mutex<Vec<HelperEntry>> = std::sync::Mutex::new(Vec::new());

thread_local! {
    /// On a helper thread, its entry's grace-period-wait flag.
    static HELPER_GP_WAIT: std::cell::RefCell<Option<std::sync::Arc<std::sync::atomic::AtomicBool>>> =
        const { std::cell::RefCell::new(None) };
}

/// A helper thread's entry in [`HELPER_TIDS`], removed as the thread ends.
/// The list's lock is only tried, a hundred times: in a child forked
/// while another thread held it, it stays held for good, and a helper
/// started there goes unnoted (its drop then waits for it as for one
/// asleep) rather than wait. A `ThreadId` is never reused, so an entry
/// left behind misleads nothing.
struct HelperTid(std::thread::ThreadId);

/// Runs `f` on [`HELPER_TIDS`] if its lock can be had within a hundred
/// tries.
fn with_helper_tids(f: impl FnOnce(&mut Vec<HelperEntry>)) {
    for _ in 0..100 {
        if let Ok(mut tids) = HELPER_TIDS.try_lock() {
            f(&mut tids);
            return;
        }
        std::thread::yield_now();
    }
}

impl HelperTid {
    fn note() -> HelperTid {
        let id = std::thread::current().id();
        let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let _ = HELPER_GP_WAIT.try_with(|f| *f.borrow_mut() = Some(flag.clone()));
        with_helper_tids(|tids| tids.push((id, gettid(), flag)));
        HelperTid(id)
    }
}

impl Drop for HelperTid {
    fn drop(&mut self) {
        with_helper_tids(|tids| tids.retain(|(id, _, _)| *id != self.0));
    }
}

/// What a running helper thread (started with [`spawn_quiet`]) is doing,
/// for a thread that joins it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HelperState {
    /// On a CPU or waiting for one.
    Runnable,
    /// Asleep in a wait for a grace period ([`note_grace_period_wait`]),
    /// which readers end, not the program's code.
    GracePeriodWait,
    /// Asleep elsewhere (maybe on a lock the joining thread holds), or not
    /// known: ended, unnoted, or `/proc` unreadable.
    Other,
}

/// What the running helper thread `id` is doing (one look at its entry in
/// [`HELPER_TIDS`], then at its `/proc` state).
pub(crate) fn helper_state(id: std::thread::ThreadId) -> HelperState {
    let mut entry = None;
    with_helper_tids(|tids| {
        entry = tids
            .iter()
            .find(|(t, _, _)| *t == id)
            .map(|(_, tid, w)| (*tid, w.load(std::sync::atomic::Ordering::Acquire)));
    });
    match entry {
        Some((_, true)) => HelperState::GracePeriodWait,
        Some((tid, false)) if thread_blocked(tid) == Some(false) => HelperState::Runnable,
        _ => HelperState::Other,
    }
}

/// Runs `f`, a wait for a grace period, noting it on a helper thread (the
/// flag [`helper_state`] reads); elsewhere just `f`. Nested waits keep the
/// outer one's note.
pub(crate) fn note_grace_period_wait<R>(f: impl FnOnce() -> R) -> R {
    let set = |on: bool| {
        HELPER_GP_WAIT
            .try_with(|w| {
                w.borrow()
                    .as_ref()
                    .is_some_and(|w| w.swap(on, std::sync::atomic::Ordering::AcqRel) != on)
            })
            .unwrap_or(false)
    };
    /// Clears the note this wait set, also if `f` unwinds.
    struct Clear<F: Fn(bool) -> bool>(bool, F);
    impl<F: Fn(bool) -> bool> Drop for Clear<F> {
        fn drop(&mut self) {
            if self.0 {
                (self.1)(false);
            }
        }
    }
    let _clear = Clear(set(true), set);
    f()
}

/// Runs `f` with every signal blocked on the calling thread, restoring
/// its mask after, also if `f` unwinds: threads it starts inherit the
/// full mask ([`spawn_quiet`]; the liburcu drop-ins' threads and
/// registrations use it too). Two `pthread_sigmask` calls; under Miri,
/// which has none, just `f`.
#[doc(hidden)]
pub fn with_signals_blocked<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(miri)]
    {
        f()
    }
    #[cfg(not(miri))]
    {
        /// Restores the caller's mask.
        struct Restore(libc::sigset_t);
        impl Drop for Restore {
            fn drop(&mut self) {
                // SAFETY: `self.0` is the mask `pthread_sigmask` returned.
                unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.0, std::ptr::null_mut()) };
            }
        }
        // SAFETY: `sigset_t` is plain data; `sigfillset` and
        // `pthread_sigmask` get valid pointers (SIGKILL and SIGSTOP, which
        // cannot be blocked, are left out by the kernel silently).
        let old = unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut old);
            old
        };
        let _restore = Restore(old);
        f()
    }
}

/// Prints `msg` on standard error when no `tracing` subscriber is
/// installed (the caller has logged it through `tracing` already): as the
/// kernel prints its stall warnings whatever the log level, a warning that
/// names a stall or a misuse is never silent for want of a subscriber.
///
/// Written with one `write(2)` of its own, not `eprintln!`: some of these
/// warnings are raised while a thread exits (its thread-locals being
/// destroyed) or inside the global allocator, where the standard error
/// handle's lock and buffer are not to be relied on.
pub(crate) fn eprint_if_unobserved(msg: &str) {
    if tracing::dispatcher::get_default(|d| d.is::<tracing::subscriber::NoSubscriber>()) {
        for part in [msg.as_bytes(), b"\n"] {
            // SAFETY: writes `part`'s initialised bytes to fd 2; a short
            // or failed write only loses (part of) the message.
            let _ = unsafe { libc::write(2, part.as_ptr().cast(), part.len()) };
        }
    }
}

/// A `tracing` warning that names a misuse or a failure the user must
/// act on, also printed on standard error when no subscriber is installed
/// (see [`eprint_if_unobserved`]).
pub(crate) fn warn_loud(msg: &str) {
    tracing::warn!("{msg}");
    eprint_if_unobserved(msg);
}

/// As [`warn_loud`], for an error (something was lost or not started).
pub(crate) fn error_loud(msg: &str) {
    tracing::error!("{msg}");
    eprint_if_unobserved(msg);
}

/// An error that may repeat many times a second (an out-of-memory report
/// per allocation that reclaim could not satisfy): every one goes to
/// `tracing`, but standard error gets at most one a second, saying how
/// many it held back (a program a helper wrote printed 10,354 such lines
/// in 15 s).
pub(crate) struct LoudThrottle {
    /// `clock::epoch_ms` of the last line printed (0: none yet).
    last_ms: std::sync::atomic::AtomicUsize,
    /// Reports held back since.
    held: std::sync::atomic::AtomicUsize,
}

impl LoudThrottle {
    pub(crate) const fn new() -> LoudThrottle {
        LoudThrottle {
            last_ms: std::sync::atomic::AtomicUsize::new(0),
            held: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Reports `msg` as [`error_loud`] does, within the throttle.
    pub(crate) fn error_loud(&self, msg: &str) {
        tracing::error!("{msg}");
        self.eprint_within(msg);
    }

    /// Reports `msg` as [`warn_loud`] does, within the throttle.
    pub(crate) fn warn_loud(&self, msg: &str) {
        tracing::warn!("{msg}");
        self.eprint_within(msg);
    }

    /// Writes `msg` to standard error (without a `tracing` subscriber) if
    /// none was written in the last second, else counts it as held back.
    fn eprint_within(&self, msg: &str) {
        use std::sync::atomic::Ordering::Relaxed;
        let now = crate::clock::epoch_ms();
        let last = self.last_ms.load(Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= 1000;
        if !due
            || self
                .last_ms
                .compare_exchange(last, now, Relaxed, Relaxed)
                .is_err()
        {
            self.held.fetch_add(1, Relaxed);
            return;
        }
        match self.held.swap(0, Relaxed) {
            0 => eprint_if_unobserved(msg),
            held => eprint_if_unobserved(&format!(
                "{msg} ({held} more like it in the last {:.1} s not printed)",
                now.saturating_sub(last) as f64 / 1000.0
            )),
        }
    }
}

#[cfg(all(test, not(loom)))]
pub(crate) mod tests {
    use super::*;

    /// What `f` writes to standard error (fd 2, redirected to a pipe while
    /// it runs; other tests' lines written meanwhile land there too).
    pub(crate) fn stderr_of(f: impl FnOnce()) -> String {
        // One redirection at a time: two tests' would swap each other's.
        static REDIRECTED: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one = REDIRECTED.lock().unwrap_or_else(|e| e.into_inner());
        let mut fds = [0; 2];
        // SAFETY: plain syscalls on fds this test owns; fd 2 is restored
        // before the pipe is read.
        unsafe {
            assert_eq!(libc::pipe(fds.as_mut_ptr()), 0);
            let saved = libc::dup(2);
            assert!(saved >= 0);
            libc::dup2(fds[1], 2);
            f();
            libc::dup2(saved, 2);
            libc::close(saved);
            libc::close(fds[1]);
        }
        let mut out = Vec::new();
        // SAFETY: `fds[0]` is the pipe's read end, owned here from now on.
        let mut read_end =
            unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fds[0]) };
        std::io::Read::read_to_end(&mut read_end, &mut out).unwrap();
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    #[cfg_attr(miri, ignore = "Miri has no pipe nor dup2")]
    fn a_loud_warning_reaches_standard_error_without_a_subscriber() {
        let out = stderr_of(|| warn_loud("rcu-reclaim: test warning 7f3a"));
        assert!(
            out.contains("rcu-reclaim: test warning 7f3a\n"),
            "standard error got {out:?}"
        );
    }

    #[test]
    #[cfg_attr(miri, ignore = "Miri has no pipe nor dup2")]
    fn a_throttled_error_prints_once_a_second_counting_the_rest() {
        let throttle = LoudThrottle::new();
        let out = stderr_of(|| {
            for _ in 0..5 {
                throttle.error_loud("rcu-reclaim: test error 9c1e");
            }
        });
        assert_eq!(out.matches("test error 9c1e").count(), 1, "{out:?}");
        std::thread::sleep(Duration::from_millis(1100));
        let out = stderr_of(|| throttle.error_loud("rcu-reclaim: test error 9c1e"));
        assert!(out.contains("(4 more like it in the last"), "{out:?}");
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "Miri has no tgkill nor /proc: threads never read as exited"
    )]
    fn a_thread_is_seen_to_exit() {
        assert!(!thread_exited(gettid()), "this thread runs");
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            tx.send(gettid()).unwrap();
            stop_rx.recv().unwrap();
        });
        let tid = rx.recv().unwrap();
        assert!(!thread_exited(tid), "the thread runs");
        stop_tx.send(()).unwrap();
        t.join().unwrap();
        // The kernel releases the thread just after `join` returns.
        let start = std::time::Instant::now();
        while !thread_exited(tid) {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "tid {tid} still there"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Gives the allocator's free pages back to the kernel (glibc's
/// `malloc_trim`; elsewhere nothing): memory freed by `free` otherwise
/// stays charged to the process (its RSS, its cgroup's usage).
pub(crate) fn trim_heap() {
    // Miri has no `malloc_trim` (its allocator is its own).
    #[cfg(all(target_os = "linux", target_env = "gnu", not(miri)))]
    // SAFETY: malloc_trim has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// `bytes` for a message: "1.5 MiB", "64 KiB" or "512 B".
#[cfg_attr(loom, allow(dead_code))]
pub(crate) fn show_bytes(bytes: usize) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / f64::from(1u32 << 20))
    } else if bytes >= 1 << 10 {
        format!("{} KiB", bytes >> 10)
    } else {
        format!("{bytes} B")
    }
}
