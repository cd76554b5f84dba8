//! The readers and writers of a torture run (the kernel's
//! `rcu_torture_reader` and `rcu_torture_writer`).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rcu_reclaim::QsbrThread;

use super::ledger::{queue_on, Action, Via};
use super::{Shared, UpdateMode, PIPE_LEN};

/// Reads per batch between looks at the stop flag and the shared read count.
const BATCH: u64 = 1024;
/// Batches between a reader's yields.
const YIELD_EVERY: u32 = 16;

/// A small, fast generator (xorshift64*), one per thread.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub(crate) fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A value in `0..n` (`n > 0`).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What one reader saw: the "Reader Pipe" and "Reader Batch" histograms and
/// the elements it found not fully initialised.
#[derive(Clone, Copy, Default)]
pub(crate) struct ReadCounts {
    pub(crate) pipe: [u64; PIPE_LEN + 1],
    pub(crate) batch: [u64; PIPE_LEN + 1],
    pub(crate) mb_errors: u64,
}

impl ReadCounts {
    pub(crate) fn merge(&mut self, other: &ReadCounts) {
        for i in 0..=PIPE_LEN {
            self.pipe[i] += other.pipe[i];
            self.batch[i] += other.batch[i];
        }
        self.mb_errors += other.mb_errors;
    }

    pub(crate) fn reads(&self) -> u64 {
        self.pipe.iter().sum()
    }
}

/// One read-side section: load the current element, check it, optionally
/// linger (`delay`), then record its pipe stage and the grace periods that
/// completed meanwhile.
#[inline(always)]
pub(crate) fn read_once(sh: &Shared, counts: &mut ReadCounts, delay: impl FnOnce()) {
    let guard = sh.rcu.read_lock();
    let started = sh.rcu.completed_grace_periods();
    check_current(sh, counts, started, delay);
    drop(guard);
}

/// The body of a read: the caller holds a section (a guard, or an online
/// QSBR registration's guard) that began when `started` grace periods had
/// completed. Loads the current element, checks it, lingers (`delay`),
/// then records its pipe stage and the grace periods completed since
/// `started`.
#[inline(always)]
fn check_current(sh: &Shared, counts: &mut ReadCounts, started: u64, delay: impl FnOnce()) {
    // SAFETY: `current` always points into the ring's pool, which lives as
    // long as `sh`; elements are never deallocated during the run.
    let e = unsafe { &*sh.ring.current.load(Ordering::Acquire) };
    counts.mb_errors += u64::from(!e.intact());
    delay();
    let pipe = e.pipe.load(Ordering::Relaxed).min(PIPE_LEN);
    let completed = sh.rcu.completed_grace_periods().wrapping_sub(started);
    counts.pipe[pipe] += 1;
    counts.batch[(completed as usize).min(PIPE_LEN)] += 1;
}

/// A QSBR reader's registration, and the grace periods completed when its
/// current section began: at its last quiescent state, or when it last
/// came online. An online QSBR thread is in one section from one report to
/// the next, so its reads' "Reader Batch" counts from there, not from the
/// guard (the stricter check: a grace period that began after the report
/// must wait for the next one).
pub(crate) struct QsbrReader {
    thread: QsbrThread,
    since: u64,
}

impl QsbrReader {
    /// Registers the calling thread (online).
    pub(crate) fn register(sh: &Shared) -> QsbrReader {
        let thread = sh.rcu.register_qsbr_thread();
        // Read after the registration's fence: a grace period that began
        // before it may end under this section, one that begins after
        // waits for the next report.
        let since = sh.rcu.completed_grace_periods();
        QsbrReader { thread, since }
    }

    /// One read under a [`QsbrGuard`](rcu_reclaim::QsbrGuard).
    #[inline(always)]
    pub(crate) fn read(&self, sh: &Shared, counts: &mut ReadCounts, delay: impl FnOnce()) {
        // Nothing read under the guard outlives it (`check_current` keeps
        // no reference), and no quiescent state can be reported meanwhile.
        let _guard = self.thread.read_lock();
        check_current(sh, counts, self.since, delay);
    }

    /// Reports a quiescent state: a new section begins.
    #[inline(always)]
    pub(crate) fn quiescent_state(&mut self, sh: &Shared) {
        self.thread.quiescent_state();
        self.since = sh.rcu.completed_grace_periods();
    }

    /// Runs `f` offline ([`QsbrThread::offline_while`]), then online: a
    /// new section begins.
    pub(crate) fn offline_while<R>(&mut self, sh: &Shared, f: impl FnOnce() -> R) -> R {
        let r = self.thread.offline_while(f);
        self.since = sh.rcu.completed_grace_periods();
        r
    }

    /// Runs `f` offline the other way: [`QsbrThread::thread_offline`]
    /// consumes the registration, [`QsbrOfflineThread::thread_online`]
    /// gives it back. A new section begins.
    ///
    /// [`QsbrOfflineThread::thread_online`]: rcu_reclaim::QsbrOfflineThread::thread_online
    pub(crate) fn thread_offline_for(mut self, sh: &Shared, f: impl FnOnce()) -> Self {
        let offline = self.thread.thread_offline();
        f();
        self.thread = offline.thread_online();
        self.since = sh.rcu.completed_grace_periods();
        self
    }

    /// Waits for a grace period with the thread offline meanwhile
    /// ([`QsbrThread::synchronize`]).
    pub(crate) fn synchronize(&mut self, sh: &Shared) {
        self.thread.synchronize();
        self.since = sh.rcu.completed_grace_periods();
    }
}

/// Reads per quiescent state, drawn per batch: mostly one (a report after
/// every read), sometimes a section that spans many reads.
const QS_SPANS: [u64; 8] = [1, 1, 1, 1, 2, 7, 64, 1024];

/// Reads until `stop()` says so, in batches; adds to the shared read count
/// as it goes and returns the histograms.
pub(crate) fn read_loop(sh: &Shared, seed: u64, stop: impl Fn() -> bool) -> ReadCounts {
    let mut counts = ReadCounts::default();
    let mut rng = Rng::new(seed);
    let stalls = sh.cfg.reader_stalls;
    // Reads until the next random stall.
    let mut countdown = rng.below(1 << 16) + 1;
    let mut batches = 0u32;
    while !stop() {
        // Let writers and the domain's threads in now and then: on a machine
        // with as many readers as cores they would otherwise wait for the
        // scheduler to preempt a reader.
        batches = batches.wrapping_add(1);
        if batches % YIELD_EVERY == 0 {
            thread::yield_now();
        }
        if stalls {
            for _ in 0..BATCH {
                countdown -= 1;
                if countdown == 0 {
                    countdown = rng.below(1 << 17) + 1;
                    let r = rng.next();
                    read_once(sh, &mut counts, || stall(r));
                } else {
                    read_once(sh, &mut counts, || {});
                }
            }
        } else {
            for _ in 0..BATCH {
                read_once(sh, &mut counts, || {});
            }
        }
        sh.reads_progress.fetch_add(BATCH, Ordering::Relaxed);
    }
    counts
}

/// A random delay inside a section (the kernel's `rcu_read_delay`): mostly
/// a short spin, sometimes a yield, rarely a sleep of a few milliseconds.
fn stall(r: u64) {
    match r % 64 {
        0 => thread::sleep(Duration::from_micros(500 + (r >> 8) % 4_500)),
        1..=8 => thread::yield_now(),
        _ => {
            let until = Instant::now() + Duration::from_nanos(1_000 + (r >> 8) % 20_000);
            while Instant::now() < until {
                std::hint::spin_loop();
            }
        }
    }
}

/// As [`read_loop`], on a QSBR domain: the thread registers a
/// [`QsbrThread`], reads under its guards, and reports quiescent states
/// between reads (after every read, or after a few, or many). Once a batch
/// or so it goes offline for a yield or a short sleep (both ways of going
/// offline), or waits for a grace period offline
/// ([`QsbrThread::synchronize`]). It drops its registration online as it
/// returns, as a thread that exits online does.
pub(crate) fn qsbr_read_loop(sh: &Shared, seed: u64, stop: impl Fn() -> bool) -> ReadCounts {
    let mut counts = ReadCounts::default();
    let mut rng = Rng::new(seed);
    let stalls = sh.cfg.reader_stalls;
    let mut countdown = rng.below(1 << 16) + 1;
    let mut batches = 0u32;
    let mut reader = QsbrReader::register(sh);
    while !stop() {
        batches = batches.wrapping_add(1);
        if batches % YIELD_EVERY == 0 {
            // Online across the yield: a section may be preempted.
            thread::yield_now();
        }
        let span = QS_SPANS[rng.below(QS_SPANS.len() as u64) as usize];
        let mut left = span;
        for _ in 0..BATCH {
            if stalls {
                countdown -= 1;
            }
            if countdown == 0 {
                countdown = rng.below(1 << 17) + 1;
                let r = rng.next();
                reader.read(sh, &mut counts, || stall(r));
            } else {
                reader.read(sh, &mut counts, || {});
            }
            left -= 1;
            if left == 0 {
                left = span;
                reader.quiescent_state(sh);
            }
        }
        sh.reads_progress.fetch_add(BATCH, Ordering::Relaxed);
        match rng.below(256) {
            0..=3 => reader = reader.thread_offline_for(sh, thread::yield_now),
            4..=5 => {
                let nap = Duration::from_micros(rng.below(200));
                reader.offline_while(sh, || thread::sleep(nap));
            }
            6 => reader.synchronize(sh),
            _ => {}
        }
    }
    counts
}

pub(crate) fn reader(sh: Arc<Shared>, n: usize) {
    let seed = sh.cfg.seed ^ (n as u64 + 1);
    let stop = || sh.stop.load(Ordering::Relaxed);
    let counts = if sh.qsbr() {
        qsbr_read_loop(&sh, seed, stop)
    } else {
        read_loop(&sh, seed, stop)
    };
    sh.merge_reads(&counts);
}

/// Waits for a grace period in `mode`'s way.
fn wait_gp(sh: &Shared, mode: UpdateMode, rng: &mut Rng) {
    let rcu = &sh.rcu;
    match mode {
        UpdateMode::Sync => rcu.synchronize(),
        UpdateMode::Expedited => rcu.synchronize_expedited(),
        UpdateMode::Poll if rng.below(4) == 0 => rcu.cond_synchronize(rcu.get_state()),
        UpdateMode::Poll => {
            let cookie = rcu.start_poll();
            while !rcu.poll(&cookie) {
                thread::sleep(Duration::from_micros(20));
            }
        }
        UpdateMode::Call | UpdateMode::Defer => unreachable!("asynchronous modes do not wait"),
    }
}

/// Replaces the current element in a rotation of update modes. Elements
/// retired in a waiting mode join this writer's list, which advances one
/// stage per grace period it waits for (the kernel's `rcu_tortures` list);
/// the others walk their pipe through callbacks or deferred drops.
///
/// On a QSBR domain, even-numbered writers are registered threads: online
/// while they publish and queue (which never waits), reporting a
/// quiescent state after each update, and offline while they wait for a
/// grace period (through [`QsbrThread::synchronize`] or `offline_while`)
/// or sleep. Odd-numbered ones are not registered.
pub(crate) fn writer(sh: Arc<Shared>, w: usize) {
    let mut rng = Rng::new(sh.cfg.seed ^ (0x1000 + w as u64));
    let modes = sh.cfg.modes.clone();
    let mut waiting: Vec<usize> = Vec::new();
    let mut k = w;
    let mut reg = (sh.qsbr() && w % 2 == 0).then(|| QsbrReader::register(&sh));
    // Runs `f` offline if the writer is registered.
    let offline = |reg: &mut Option<QsbrReader>, f: &mut dyn FnMut()| match reg {
        Some(r) => r.offline_while(&sh, f),
        None => f(),
    };
    while !sh.stop.load(Ordering::Relaxed) {
        let mode = modes[k % modes.len()];
        k += 1;
        let Some(new) = sh.ring.alloc() else {
            // The pool is out: let the pipes drain (the kernel's `rtaf`).
            offline(&mut reg, &mut || thread::sleep(Duration::from_micros(200)));
            continue;
        };
        let old = sh.ring.publish(new);
        sh.counters.updates[mode as usize].fetch_add(1, Ordering::Relaxed);
        match mode {
            _ if sh.cfg.busted => while !sh.ring.advance(old) {},
            UpdateMode::Call => {
                let via = [Via::Call, Via::Hurry, Via::Sized][rng.below(3) as usize];
                queue_on(&sh, sh.random_cpu(&mut rng), via, Action::Pipe(old));
            }
            UpdateMode::Defer => {
                queue_on(&sh, sh.random_cpu(&mut rng), Via::Defer, Action::Pipe(old));
            }
            _ => {
                waiting.push(old);
                match reg.as_mut() {
                    Some(r) if mode == UpdateMode::Sync && rng.below(2) == 0 => {
                        r.synchronize(&sh);
                    }
                    _ => offline(&mut reg, &mut || wait_gp(&sh, mode, &mut rng)),
                }
                waiting.retain(|&i| !sh.ring.advance(i));
            }
        }
        if let Some(r) = reg.as_mut() {
            r.quiescent_state(&sh);
        }
        let delay = sh.cfg.writer_delay;
        if !delay.is_zero() {
            let pause = delay.mul_f64(rng.below(2001) as f64 / 1000.0);
            offline(&mut reg, &mut || thread::sleep(pause));
        }
    }
    drop(reg);
    while !waiting.is_empty() {
        sh.rcu.synchronize();
        waiting.retain(|&i| !sh.ring.advance(i));
    }
}
