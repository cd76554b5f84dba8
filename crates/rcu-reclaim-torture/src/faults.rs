//! The torture's side loads and injected faults: callback floods, pressure
//! flapping, barrier checks, thread churn, threads that exit with queued
//! callbacks, a reader stalled past the stall timeout, and a page allocator
//! that fails.

use std::alloc::Layout;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rcu_reclaim::pages::{PageAllocator, SystemPageAllocator};

use super::ledger::{queue_on, Action, Via, INJECTED_PANIC};
use super::threads::{qsbr_read_loop, read_loop, read_once, QsbrReader, ReadCounts, Rng};
use super::{Fault, Shared};

/// A page allocator that fails every `every`-th call, counting its failures.
pub(crate) struct FailingPages {
    every: u64,
    pub(crate) calls: AtomicU64,
    pub(crate) failures: AtomicU64,
}

impl FailingPages {
    pub(crate) fn new(every: u64) -> Self {
        FailingPages {
            every: every.max(1),
            calls: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }
    }
}

// SAFETY: every page it hands out comes from `SystemPageAllocator`.
unsafe impl PageAllocator for FailingPages {
    fn allocate(&self, layout: Layout) -> Option<NonNull<u8>> {
        if self.calls.fetch_add(1, Ordering::Relaxed) % self.every == 0 {
            self.failures.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        SystemPageAllocator.allocate(layout)
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: pages this allocator handed out came from `SystemPageAllocator`
        // with the same layout (the caller's contract).
        unsafe { SystemPageAllocator.deallocate(ptr, layout) }
    }
}

/// Makes the process's panic hook skip the torture's injected callback
/// panics (they are expected, caught and counted) and pass every other
/// panic on to the hook that was installed before (later calls do nothing).
/// Call it before [`run`](super::run) in a program that injects
/// [`Fault::CallbackPanic`] and does not want a message per injected panic.
///
/// ```
/// rcu_reclaim_torture::silence_injected_panics();
/// ```
pub fn silence_injected_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<&str>() != Some(&INJECTED_PANIC) {
                previous(info);
            }
        }));
    });
}

/// Sleeps up to `d`, in slices, returning early once the run stops.
fn nap(sh: &Shared, d: Duration) {
    let until = Instant::now() + d;
    while !sh.stop.load(Ordering::Relaxed) {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        thread::sleep(left.min(Duration::from_millis(20)));
    }
}

/// Bursts of `2 × qhimark` callbacks on one (random) CPU every 100 ms,
/// pushing its shard past `qhimark`; one in each burst panics when that
/// fault is injected. Inside a read-side section, a deferred drop that finds
/// no page queues a callback instead of waiting.
pub(crate) fn flood(sh: Arc<Shared>) {
    let mut rng = Rng::new(sh.cfg.seed ^ 0xf100d);
    let burst = 2 * sh.cfg.qhimark;
    let panics = sh.cfg.has(Fault::CallbackPanic);
    while !sh.stop.load(Ordering::Relaxed) {
        let cpu = sh.random_cpu(&mut rng);
        // Queued inside a read-side section, none of the burst can run
        // before it is all queued: the shard surely goes past qhimark.
        let section = sh.rcu.read_lock();
        for i in 0..burst {
            let via = match i % 16 {
                0 => Via::Defer,
                1 => Via::Sized,
                _ => Via::Call,
            };
            queue_on(&sh, cpu, via, Action::Nothing);
        }
        if panics {
            sh.counters.panics_injected.fetch_add(1, Ordering::Relaxed);
            queue_on(&sh, cpu, Via::Call, Action::Panic);
        }
        drop(section);
        sh.counters.floods.fetch_add(1, Ordering::Relaxed);
        nap(&sh, Duration::from_millis(100));
    }
}

/// Raises and drops pressure `pressure_hz` times a second, on a random node
/// or on all of them.
pub(crate) fn flap(sh: Arc<Shared>) {
    let mut rng = Rng::new(sh.cfg.seed ^ 0xf1a9);
    // A rate near 0 makes a half period past what a `Duration` (or an
    // `Instant` plus it) holds; a day (the CLI's longest run) is as good.
    const LONGEST: Duration = Duration::from_secs(86_400);
    let half =
        Duration::try_from_secs_f64(0.5 / sh.cfg.pressure_hz).map_or(LONGEST, |d| d.min(LONGEST));
    let nodes = sh.rcu.topology().nodes() as u64;
    while !sh.stop.load(Ordering::Relaxed) {
        let guard = if rng.below(4) == 0 {
            sh.rcu.pressure_start_all()
        } else {
            sh.rcu.pressure_start(rng.below(nodes) as usize)
        };
        nap(&sh, half);
        drop(guard);
        sh.counters.flaps.fetch_add(1, Ordering::Relaxed);
        nap(&sh, half);
    }
}

/// The mark of the torture's garbage bound (`TortureConfig::garbage_bound`).
pub(crate) const BOUND_MARK: usize = 64 << 20;

/// The garbage bound's side load: every 5 ms the usage the bound reads
/// jumps to 1 MiB under its mark (the allowance falls to its 2 MiB floor)
/// and this thread retires 4 MiB, booked, in eight values of 512 KiB that
/// drop anywhere (through its drain: a few bytes each in fact), so its
/// hand-offs, and the writers' and readers' beside them, wait for the
/// garbage; 2 ms later the usage falls back to nothing (no bound) for 3 ms.
pub(crate) fn bound(sh: Arc<Shared>) {
    const BOOKED: usize = 512 << 10;
    while !sh.stop.load(Ordering::Relaxed) {
        // Counted as it goes near: the retires below may wait up to a
        // second each behind a stalled reader.
        sh.bound_usage
            .store(BOUND_MARK - (1 << 20), Ordering::Relaxed);
        sh.counters.bound_flips.fetch_add(1, Ordering::Relaxed);
        for i in 0..8u64 {
            sh.rcu.defer_drop_sized(Box::new([i; 4]), BOOKED);
        }
        nap(&sh, Duration::from_millis(2));
        sh.bound_usage.store(0, Ordering::Relaxed);
        nap(&sh, Duration::from_millis(3));
    }
}

/// Every 20 ms: queue callbacks and deferred drops on every CPU of the
/// topology, from this thread and from a helper thread, then `barrier()`;
/// any of them not yet run when it returns is a barrier error (the
/// kernel's `rcu_torture_barrier`).
pub(crate) fn barrier_test(sh: Arc<Shared>) {
    let (ask, asked) = mpsc::channel::<(Arc<AtomicUsize>, mpsc::Sender<usize>)>();
    let helper_sh = sh.clone();
    let helper = thread::Builder::new()
        .name("rcu-torture-barrier-helper".into())
        .spawn(move || {
            let cpus = helper_sh.rcu.topology().cpus();
            for (count, done) in asked {
                for cpu in 0..cpus {
                    let c = Action::Count(count.clone());
                    queue_on(&helper_sh, Some(cpu), Via::Defer, c);
                }
                let _ = done.send(cpus);
            }
        })
        .expect("spawn a thread");
    let cpus = sh.rcu.topology().cpus();
    let mut rng = Rng::new(sh.cfg.seed ^ 0xba22);
    // Without floods, the panics are injected here, every other round.
    let panics = sh.cfg.has(Fault::CallbackPanic) && !sh.cfg.flood;
    let mut round = 0u64;
    while !sh.stop.load(Ordering::Relaxed) {
        round += 1;
        if panics && round % 2 == 0 {
            sh.counters.panics_injected.fetch_add(1, Ordering::Relaxed);
            queue_on(&sh, None, Via::Call, Action::Panic);
        }
        let count = Arc::new(AtomicUsize::new(0));
        let (done_tx, done_rx) = mpsc::channel();
        let _ = ask.send((count.clone(), done_tx));
        let mut queued = 0;
        for cpu in 0..cpus {
            let via = [Via::Call, Via::Hurry, Via::Defer][rng.below(3) as usize];
            queue_on(&sh, Some(cpu), via, Action::Count(count.clone()));
            queued += 1;
        }
        queued += done_rx.recv().unwrap_or(0);
        sh.rcu.barrier();
        let ran = count.load(Ordering::Relaxed);
        if ran < queued {
            sh.counters.barrier_errors.fetch_add(1, Ordering::Relaxed);
        }
        sh.counters.barrier_rounds.fetch_add(1, Ordering::Relaxed);
        nap(&sh, Duration::from_millis(20));
    }
    drop(ask);
    let _ = helper.join();
}

/// Thread churn: short-lived readers, one after another, each reading for
/// 1 to 20 ms; with [`Fault::ExitingThreads`] each also queues callbacks and
/// a partly filled page of deferred drops right before it exits.
pub(crate) fn churn(sh: Arc<Shared>) {
    let mut rng = Rng::new(sh.cfg.seed ^ 0xc4u64);
    let exiting = sh.cfg.has(Fault::ExitingThreads);
    while !sh.stop.load(Ordering::Relaxed) {
        let life = Duration::from_micros(1_000 + rng.below(19_000));
        let seed = rng.next();
        let s = sh.clone();
        let h = thread::Builder::new()
            .name("rcu-torture-churn".into())
            .spawn(move || {
                let until = Instant::now() + life;
                let stop = || s.stop.load(Ordering::Relaxed) || Instant::now() >= until;
                // A QSBR reader exits with its registration online.
                let counts = if s.qsbr() {
                    qsbr_read_loop(&s, seed, stop)
                } else {
                    read_loop(&s, seed, stop)
                };
                s.merge_reads(&counts);
                if exiting {
                    queue_and_exit(&s, seed);
                }
            })
            .expect("spawn a thread");
        let _ = h.join();
        sh.counters.churned.fetch_add(1, Ordering::Relaxed);
    }
}

/// Queues callbacks and deferred drops without waiting for any of them.
fn queue_and_exit(sh: &Arc<Shared>, seed: u64) {
    let mut rng = Rng::new(seed);
    for _ in 0..8 {
        let via = [Via::Call, Via::Hurry, Via::Sized][rng.below(3) as usize];
        queue_on(sh, sh.random_cpu(&mut rng), via, Action::Nothing);
    }
    // Fewer than a page holds: the page stays with the thread until it exits.
    for _ in 0..1 + rng.below(100) {
        queue_on(sh, None, Via::Defer, Action::Nothing);
    }
    sh.counters
        .exited_with_callbacks
        .fetch_add(1, Ordering::Relaxed);
}

/// Threads that only queue callbacks and exit ([`Fault::ExitingThreads`]).
pub(crate) fn exiters(sh: Arc<Shared>) {
    let mut rng = Rng::new(sh.cfg.seed ^ 0xe817);
    while !sh.stop.load(Ordering::Relaxed) {
        let seed = rng.next();
        let s = sh.clone();
        let h = thread::Builder::new()
            .name("rcu-torture-exiter".into())
            .spawn(move || queue_and_exit(&s, seed))
            .expect("spawn a thread");
        let _ = h.join();
        nap(&sh, Duration::from_millis(2));
    }
}

/// [`Fault::ReaderStall`]: a reader that holds one section for at least
/// twice the stall timeout ([`hold_until_reported`]), then checks the
/// element it loaded was not freed meanwhile (its pipe stage goes into the
/// "Reader Pipe" histogram like any read).
/// On a QSBR domain the reader is a registered thread, offline between
/// episodes, that comes online and reports no quiescent state for twice
/// the stall timeout (the stall warning must name it).
pub(crate) fn staller(sh: Arc<Shared>) {
    let timeout = sh.cfg.stall_timeout;
    let mut qsbr = sh.qsbr().then(|| QsbrReader::register(&sh));
    while !sh.stop.load(Ordering::Relaxed) {
        match qsbr.as_mut() {
            Some(r) => r.offline_while(&sh, || nap(&sh, timeout)),
            None => nap(&sh, timeout),
        }
        if sh.stop.load(Ordering::Relaxed) {
            break;
        }
        let mut counts = ReadCounts::default();
        let stall = || hold_until_reported(&sh, timeout);
        match qsbr.as_mut() {
            Some(r) => {
                r.read(&sh, &mut counts, stall);
                r.quiescent_state(&sh);
            }
            None => read_once(&sh, &mut counts, stall),
        }
        sh.merge_reads(&counts);
        sh.counters.stall_episodes.fetch_add(1, Ordering::Relaxed);
    }
}

/// The inside of a stalled section: asks for a grace period as it begins
/// (`start_poll` never blocks), so one comes to wait on this reader however
/// slowly the writers run, then holds the section for twice `timeout`, and
/// on until a stall has been reported since it began, up to ten times
/// `timeout`. Under valgrind another reader (the flood's section of
/// thousands of `call`s) can hold the grace period in progress for longer
/// than the stall timeout, so the one this reader blocks may begin late; a
/// fixed stall of twice the timeout then ended before the warning was due.
/// A stall detector that never reports still fails the run: the section
/// gives up after ten timeouts and the report finds nothing reported.
fn hold_until_reported(sh: &Shared, timeout: Duration) {
    let began = Instant::now();
    let reported = sh.rcu.stats().stalls_reported;
    sh.rcu.start_poll();
    thread::sleep(timeout * 2);
    while began.elapsed() < timeout * 10
        && !sh.stop.load(Ordering::Relaxed)
        && sh.rcu.stats().stalls_reported == reported
    {
        thread::sleep(timeout / 4);
    }
}
