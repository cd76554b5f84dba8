//! Helpers shared by the integration tests.
#![allow(dead_code)] // each test crate uses its own subset

use std::sync::mpsc;
use std::thread;

use rcu_reclaim::{Config, Flavor, Rcu};

pub mod poison;
pub mod rng;

/// Sets its flag when dropped, on a panic too: a stop flag that helper
/// threads loop on is set however the controlling code ends.
///
/// Made (`let _stop = StopOnDrop(&stop);`) in the thread or `thread::scope`
/// body that would set the flag, before the work that may panic: a failed
/// assertion there then unwinds through the guard, the helpers see the flag
/// and end, and the scope or `join` returns, so the test fails instead of
/// hanging. Dropped at the end of its block; where the helpers must stop
/// earlier (before a `join` in the same block, or checks that need them
/// stopped), store the flag there too, or `drop` the guard.
pub struct StopOnDrop<'a>(pub &'a std::sync::atomic::AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The environment variable `name` parsed as a `T` (a test's knob for a
/// longer run: `FORK_ROUNDS`, `RCU_STRESS_SECS`, ...), else `default`.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A domain of each flavor this machine offers (mb always; memb where
/// `membarrier` registers).
pub fn domains() -> Vec<Rcu> {
    let mut v = vec![Rcu::new(Config::new().flavor(Flavor::Mb)).unwrap()];
    if let Ok(memb) = Rcu::new(Config::new().flavor(Flavor::Memb)) {
        v.push(memb);
    }
    v
}

/// One walk of `map` under a fresh guard: each key below `fixed` (keys
/// that stay in the map while others come and go) is seen exactly once;
/// `check` looks at every entry the walk meets.
pub fn walk_sees_each_fixed_key_once<V: Send + 'static>(
    map: &rcu_reclaim::RcuHashMap<u64, V>,
    fixed: u64,
    check: impl Fn(u64, &V),
) {
    let g = map.domain().read_lock();
    let mut seen = vec![0u8; fixed as usize];
    for (k, v) in map.iter(&g) {
        check(*k, v);
        if *k < fixed {
            seen[*k as usize] += 1;
        }
    }
    assert!(seen.iter().all(|&n| n == 1), "a walk saw {seen:?}");
}

/// Whether no grace period of `rcu` ends within `wait`: one is asked for
/// (`start_poll`), then looked at once `wait` has passed.
pub fn grace_periods_held_up(rcu: &Rcu, wait: std::time::Duration) -> bool {
    let cookie = rcu.start_poll();
    thread::sleep(wait);
    !rcu.poll(&cookie)
}

/// The grace periods the calling thread's retires completed
/// (`Stats::retirer_gps`) while `retire(i)` ran for each `i` below `n`,
/// each after a busy wait of `apart` (a spin, not a sleep: a sleep lasts a
/// scheduler tick or more, and the thread would look at its page far less
/// often than the test means).
pub fn retirer_gps_over(
    rcu: &Rcu,
    n: u64,
    apart: std::time::Duration,
    mut retire: impl FnMut(u64),
) -> u64 {
    let before = rcu.stats().retirer_gps;
    for i in 0..n {
        let spin = std::time::Instant::now();
        while spin.elapsed() < apart {
            std::hint::spin_loop();
        }
        retire(i);
    }
    rcu.stats().retirer_gps - before
}

/// A thread registered as a reader of a domain, outside its sections,
/// until dropped. A thread that retires while no other thread reads
/// completes its grace periods at once, without a barrier or a pace:
/// tests of the pace keep one of these alive, as a program with readers
/// on other threads has.
pub struct IdleReader {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl IdleReader {
    pub fn new(rcu: &Rcu) -> Self {
        let (ready_tx, ready_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let r = rcu.clone();
        let thread = thread::spawn(move || {
            drop(r.read_lock());
            ready_tx.send(()).unwrap();
            let _ = stop_rx.recv();
        });
        ready_rx.recv().unwrap();
        IdleReader {
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }
}

impl Drop for IdleReader {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Holds a read-side section of `rcu` on another thread until the returned
/// sender fires (or is dropped).
pub fn hold_reader(rcu: &Rcu) -> (mpsc::Sender<()>, thread::JoinHandle<()>) {
    let (ready_tx, ready_rx) = mpsc::channel();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let r = rcu.clone();
    let h = thread::spawn(move || {
        let _g = r.read_lock();
        ready_tx.send(()).unwrap();
        let _ = stop_rx.recv();
    });
    ready_rx.recv().unwrap();
    (stop_tx, h)
}

/// A thread that enters a read-side section of `rcu`, says so, stays in
/// it for `hold`, and leaves (returned once it is inside).
pub fn reader_holding(rcu: &Rcu, hold: std::time::Duration) -> thread::JoinHandle<()> {
    let rcu = rcu.clone();
    let (entered, inside) = mpsc::channel();
    let reader = thread::spawn(move || {
        let guard = rcu.read_lock();
        entered.send(()).unwrap();
        thread::sleep(hold);
        drop(guard);
    });
    inside.recv().unwrap();
    reader
}

/// `stores` stores of a `value`-byte `Vec<u8>` into `cell` (of `rcu`)
/// while a reader holds grace periods up for `hold`; returns, once the
/// reader has left, the most garbage (`pending_bytes`) seen after a
/// store, and how long the stores took.
pub fn stores_behind_a_reader(
    rcu: &Rcu,
    cell: &rcu_reclaim::RcuCell<Vec<u8>>,
    value: usize,
    stores: u8,
    hold: std::time::Duration,
) -> (usize, std::time::Duration) {
    let reader = reader_holding(rcu, hold);
    let start = std::time::Instant::now();
    let mut most = 0;
    for i in 1..=stores {
        cell.store(Box::new(vec![i; value]));
        most = most.max(rcu.pending_bytes());
    }
    let took = start.elapsed();
    reader.join().unwrap();
    (most, took)
}

/// Bytes per entry of [`RcuCache`].
pub const ENTRY: usize = 64 << 10;

/// A cache of `ENTRY`-sized buffers whose shrinker frees through RCU
/// (`defer_drop`), as a dentry cache does.
pub struct RcuCache {
    pub rcu: Rcu,
    pub entries: std::sync::Mutex<Vec<Vec<u8>>>,
}

impl RcuCache {
    /// A cache of `n` entries.
    pub fn new(rcu: &Rcu, n: usize) -> std::sync::Arc<Self> {
        std::sync::Arc::new(RcuCache {
            rcu: rcu.clone(),
            entries: std::sync::Mutex::new((0..n).map(|_| vec![7u8; ENTRY]).collect()),
        })
    }
}

impl rcu_reclaim::reclaim::Shrinker for RcuCache {
    fn count(&self, _: &rcu_reclaim::reclaim::ShrinkControl) -> usize {
        self.entries.try_lock().map_or(0, |e| e.len())
    }
    fn scan(&self, ctl: &mut rcu_reclaim::reclaim::ShrinkControl) -> rcu_reclaim::reclaim::Scanned {
        let Ok(mut entries) = self.entries.try_lock() else {
            ctl.stop();
            return rcu_reclaim::reclaim::Scanned::default();
        };
        let n = ctl.nr_to_scan().min(entries.len());
        let mut bytes = 0;
        for e in entries.drain(..n) {
            bytes += e.capacity();
            self.rcu.defer_drop(Box::new(e));
        }
        ctl.set_scanned(n);
        rcu_reclaim::reclaim::Scanned { freed: n, bytes }
    }
    fn frees_via_rcu(&self) -> bool {
        true
    }
    fn name(&self) -> &str {
        "rcu-cache"
    }
}

/// A value that counts its drops (booking its inline size; it does not
/// drop anywhere, so a worker frees it).
pub struct Counted(pub std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl rcu_reclaim::ReclaimSize for Counted {
    fn reclaim_size(&self) -> usize {
        std::mem::size_of::<Self>()
    }
}

/// The text of a caught panic's payload (`""` if it is neither a `&str`
/// nor a `String`).
pub fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

/// Runs `f`, which must panic on this thread, and returns its message
/// and the file and line the panic names (what `#[track_caller]` moves
/// to the caller). The panic hook is process-wide: callers take turns, and
/// panics of other threads meanwhile are passed to the hook before.
pub fn panic_site(f: impl FnOnce()) -> (String, String, u32) {
    use std::sync::{Arc, Mutex};
    static TURN: Mutex<()> = Mutex::new(());
    let _turn = TURN.lock().unwrap_or_else(|p| p.into_inner());
    let me = std::thread::current().id();
    let site = Arc::new(Mutex::new((String::new(), 0)));
    let seen = site.clone();
    let before = Arc::new(std::panic::take_hook());
    let others = before.clone();
    std::panic::set_hook(Box::new(move |info| match info.location() {
        Some(at) if std::thread::current().id() == me => {
            *seen.lock().unwrap() = (at.file().to_string(), at.line());
        }
        _ => others(info),
    }));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    drop(std::panic::take_hook());
    let before = Arc::try_unwrap(before).unwrap_or_else(|_| panic!("hook still shared"));
    std::panic::set_hook(before);
    let payload = r.expect_err("the call did not panic");
    let (file, line) = site.lock().unwrap().clone();
    (panic_text(&*payload), file, line)
}

/// A value that drops anywhere (`reclaim_size!(..; drops_anywhere)`: a
/// retiring thread may free it) and counts its drops.
pub struct CountedPlain(pub std::sync::Arc<std::sync::atomic::AtomicUsize>);

rcu_reclaim::reclaim_size!(CountedPlain {}; drops_anywhere);

impl Drop for CountedPlain {
    fn drop(&mut self) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Runs `child` in a forked child of a process whose domain was prepared
/// for the fork; the child's exit status (killed, and a failure, if it
/// hangs for 20 s; a failure if it dies of a signal).
pub fn in_forked_child(rcu: &Rcu, child: impl FnOnce() -> bool) -> i32 {
    let status = forked_child_status(rcu, child);
    assert!(libc::WIFEXITED(status), "the child died: status {status}");
    libc::WEXITSTATUS(status)
}

/// Held across a test's `fork()` and around a panic a test raises on
/// purpose ([`deliberate_panic`]): a panic holds the standard library's
/// panic-hook and backtrace locks while its message is written, and a
/// child forked meanwhile inherits them held, so a panic in the child (an
/// expected misuse panic) then waits for good in its hook.
pub static FORK_OR_PANIC: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs `f`, which panics on purpose, never while a test of this binary
/// forks (see [`FORK_OR_PANIC`]).
pub fn deliberate_panic<R>(
    f: impl FnOnce() -> R + std::panic::UnwindSafe,
) -> std::thread::Result<R> {
    let _turn = FORK_OR_PANIC.lock().unwrap_or_else(|p| p.into_inner());
    std::panic::catch_unwind(f)
}

/// `fork()`, never while a test of this binary panics on purpose (see
/// [`FORK_OR_PANIC`]); the child must run only the test's code and
/// `_exit`.
pub fn fork() -> libc::pid_t {
    let _turn = FORK_OR_PANIC.lock().unwrap_or_else(|p| p.into_inner());
    // SAFETY: the caller's child runs only its test's code and `_exit`s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    pid
}

/// As [`in_forked_child`], but the child's raw wait status, whether it
/// exited or died of a signal.
pub fn forked_child_status(rcu: &Rcu, child: impl FnOnce() -> bool) -> i32 {
    let guard = rcu.prepare_fork();
    // The child runs only this crate's code and `_exit`s; the domain was
    // prepared for the fork.
    let pid = fork();
    if pid == 0 {
        guard.child();
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(child)).unwrap_or(false);
        // SAFETY: ends the child without running the parent's destructors.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    guard.parent();
    child_status(pid)
}

/// The raw wait status of forked child `pid`, once it ends (killed, and a
/// failure, if it hangs for 20 s).
pub fn child_status(pid: libc::pid_t) -> i32 {
    let start = std::time::Instant::now();
    let mut status = 0;
    loop {
        // SAFETY: polls our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            break;
        }
        if start.elapsed() > std::time::Duration::from_secs(20) {
            // SAFETY: kills and reaps our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            panic!("the child hung");
        }
        thread::sleep(std::time::Duration::from_millis(5));
    }
    status
}

/// A shrinker's scan of a cache that holds `used` bytes in objects of
/// `unit` bytes: frees as many objects as it is asked for (at most all),
/// lowering `used`, and says so.
pub fn free_units(
    used: &std::sync::atomic::AtomicUsize,
    unit: usize,
    ctl: &rcu_reclaim::reclaim::ShrinkControl,
) -> rcu_reclaim::reclaim::Scanned {
    use std::sync::atomic::Ordering;
    let n = ctl.nr_to_scan().min(used.load(Ordering::SeqCst) / unit);
    used.fetch_sub(n * unit, Ordering::SeqCst);
    rcu_reclaim::reclaim::Scanned {
        freed: n,
        bytes: n * unit,
    }
}

/// Call before installing a thread's own subscriber (`set_default`,
/// `with_default`) in a test binary whose other tests log from other
/// threads: keeps a second dispatcher alive for the whole process, so that
/// tracing-core (0.1.36) never takes its one-dispatcher shortcut. With a
/// single dispatcher registered, a callsite first reached on a thread with
/// no subscriber caches `Interest::never` (tokio-rs/tracing#3611), and the
/// library's warnings never reach the subscriber of the thread that wants
/// them: a stall report from another test's thread first made a test
/// whose subscriber panics on that report wait for good.
pub fn two_dispatchers_at_least() {
    static KEEP: std::sync::OnceLock<tracing::Dispatch> = std::sync::OnceLock::new();
    KEEP.get_or_init(|| tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default()));
}

/// A `tracing` subscriber that panics on every event of its level (safe
/// code may install one), unless its thread is already unwinding.
pub struct PanicsOn(pub tracing::Level);

impl tracing::Subscriber for PanicsOn {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        if *event.metadata().level() == self.0 && !std::thread::panicking() {
            panic!("the subscriber panics on a {} event (deliberate)", self.0);
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// A tracing writer that keeps what the library logs (its stall reports),
/// for tests that read them back.
#[derive(Clone, Default)]
pub struct Captured(pub std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Captured {
    /// Keeps what the library logs on this thread until the guard drops.
    pub fn on_this_thread(&self) -> tracing::subscriber::DefaultGuard {
        two_dispatchers_at_least();
        let sink = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .with_ansi(false)
            // No timestamps: the tests never read them, and they read the
            // wall clock, which Miri's isolation refuses.
            .without_time()
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    /// What was logged so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Runs `rcu.synchronize()` on a new thread whose stall reports go to the
/// returned log; waits until one is reported (at most 10 s).
pub fn stall_report_of_a_synchronize(rcu: &Rcu) -> String {
    let captured = Captured::default();
    let sink = captured.clone();
    let waiter = rcu.clone();
    // Left waiting if the grace period never ends (a caller in a forked
    // child `_exit`s; others end the stall, and the thread returns).
    std::thread::spawn(move || {
        let _default = sink.on_this_thread();
        waiter.synchronize();
    });
    // The count goes up before the report is formatted and written: wait
    // for the report itself (a fixed 50 ms after the count was sometimes
    // too short on a loaded machine, and the log read empty).
    let start = std::time::Instant::now();
    loop {
        let log = captured.text();
        if log.contains("reader stall") || start.elapsed() > std::time::Duration::from_secs(10) {
            return log;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs `f` on a thread and fails (rather than hangs) if it has not
/// finished within `limit`, naming `what`; a panic in `f` fails the
/// caller with it.
pub fn within<T: Send + 'static>(
    limit: std::time::Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    let h = thread::spawn(move || {
        let v = f();
        let _ = tx.send(());
        v
    });
    match rx.recv_timeout(limit) {
        Ok(()) => h.join().unwrap(),
        Err(mpsc::RecvTimeoutError::Disconnected) => match h.join() {
            Ok(v) => v,
            Err(p) => std::panic::resume_unwind(p),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: still running after {limit:?}"),
    }
}

/// The drop tally of values whose states are 1 (made) or 2 (dropped once),
/// anything else dropped more than once: how many were never dropped, how
/// many twice or more, and the first never dropped.
pub fn drop_tally(states: &[std::sync::atomic::AtomicU8]) -> (usize, usize, Option<usize>) {
    let (mut never, mut twice, mut first_never) = (0, 0, None);
    for (id, s) in states.iter().enumerate() {
        match s.load(std::sync::atomic::Ordering::SeqCst) {
            2 => {}
            1 => {
                never += 1;
                first_never.get_or_insert(id);
            }
            _ => twice += 1,
        }
    }
    (never, twice, first_never)
}

/// Polls `f` (every millisecond) for up to `limit`; whether it held.
pub fn eventually(limit: std::time::Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        thread::sleep(std::time::Duration::from_millis(1));
    }
    f()
}
