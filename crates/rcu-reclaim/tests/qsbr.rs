//! The QSBR flavor: registered threads read for free and report quiescent
//! states; grace periods wait for online threads only; everything above the
//! read side (callbacks, deferred drops, barrier, accounting, pressure,
//! `run_callbacks`) works on it.

mod common;

use common::eventually;

use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use rcu_reclaim::pressure::{NodeMask, RunAction};
use rcu_reclaim::{Config, Flavor, QsbrThread, Rcu, RcuCell};

fn qsbr() -> Rcu {
    Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap()
}

fn qsbr_on_demand() -> Rcu {
    Rcu::new(Config::new().flavor(Flavor::Qsbr).on_demand()).unwrap()
}

/// A thread registered in `rcu` that reports a quiescent state about every
/// 10 µs until stopped.
struct Reporter {
    stop: Arc<AtomicBool>,
    handle: Option<thread::JoinHandle<u64>>,
}

impl Reporter {
    fn start(rcu: &Rcu) -> Reporter {
        let stop = Arc::new(AtomicBool::new(false));
        let (s, r) = (stop.clone(), rcu.clone());
        let (tx, rx) = mpsc::channel();
        let handle = thread::Builder::new()
            .name("qsbr-reporter".into())
            .spawn(move || {
                let mut t = r.register_qsbr_thread();
                tx.send(()).unwrap();
                let mut reports = 0u64;
                while !s.load(Ordering::Relaxed) {
                    t.quiescent_state();
                    reports += 1;
                    let until = Instant::now() + Duration::from_micros(10);
                    while Instant::now() < until {
                        std::hint::spin_loop();
                    }
                }
                reports
            })
            .unwrap();
        rx.recv().unwrap();
        Reporter {
            stop,
            handle: Some(handle),
        }
    }

    fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take().unwrap().join().unwrap()
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// A thread registered in `rcu` that stays online without reporting until
/// told to (`release`), then reports and exits.
fn silent_online_thread(rcu: &Rcu, name: &str) -> (mpsc::Sender<()>, thread::JoinHandle<()>) {
    let (ready_tx, ready_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let r = rcu.clone();
    let h = thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let mut t = r.register_qsbr_thread();
            ready_tx.send(()).unwrap();
            let _ = go_rx.recv();
            t.quiescent_state();
        })
        .unwrap();
    ready_rx.recv().unwrap();
    (go_tx, h)
}

#[test]
fn a_grace_period_waits_for_an_online_thread_until_it_reports() {
    let rcu = qsbr();
    let cell = Arc::new(RcuCell::new_in(&rcu, Some(Box::new(1u64))));
    let (loaded_tx, loaded_rx) = mpsc::channel();
    let (check_tx, check_rx) = mpsc::channel::<()>();
    let (r, c) = (rcu.clone(), cell.clone());
    let reader = thread::spawn(move || {
        let mut t = r.register_qsbr_thread();
        let guard = t.read_lock();
        let v = c.load(&guard).unwrap();
        loaded_tx.send(()).unwrap();
        check_rx.recv().unwrap();
        assert_eq!(*v, 1, "the value read before the grace period is intact");
        let _ = guard;
        t.quiescent_state();
        // Stay online and keep reporting: the next grace periods need it.
        for _ in 0..1000 {
            t.quiescent_state();
            thread::sleep(Duration::from_micros(100));
        }
    });
    loaded_rx.recv().unwrap();
    let old = cell.replace(Box::new(2)).unwrap();
    let cookie = rcu.start_poll();
    // `late_readers` is empty until the grace-period thread has begun the
    // grace period start_poll asked for: wait for it (a fixed 50 ms sleep
    // was sometimes too short for a loaded machine to schedule it).
    assert!(
        eventually(Duration::from_secs(20), || rcu
            .late_readers()
            .iter()
            .any(|l| l.qsbr)),
        "the online thread never showed as late: {:?}",
        rcu.late_readers()
    );
    thread::sleep(Duration::from_millis(20));
    assert!(
        !rcu.poll(&cookie),
        "a grace period ended while an online thread had not reported"
    );
    check_tx.send(()).unwrap();
    assert!(eventually(Duration::from_secs(10), || rcu.poll(&cookie)));
    assert_eq!(*old.into_box(), 1);
    reader.join().unwrap();
}

#[test]
fn offline_threads_never_block_a_grace_period() {
    let rcu = qsbr();
    let (ready_tx, ready_rx) = mpsc::channel();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let r = rcu.clone();
    // Three ways offline: the consuming one, the closure, the unchecked one.
    let h = thread::spawn(move || {
        let offline = r.register_qsbr_thread().thread_offline();
        let mut t2 = r.register_qsbr_thread();
        let mut t3 = r.register_qsbr_thread();
        // SAFETY: no guard of `t3` is taken or used while it is offline.
        unsafe { t3.thread_offline_unchecked() };
        // A report does not put an offline thread back online.
        t3.quiescent_state();
        assert!(
            !t3.is_online(),
            "quiescent_state put an offline thread online"
        );
        t2.offline_while(|| {
            ready_tx.send(()).unwrap();
            let _ = stop_rx.recv();
        });
        drop(offline);
    });
    ready_rx.recv().unwrap();
    let start = Instant::now();
    for _ in 0..20 {
        rcu.synchronize();
    }
    rcu.synchronize_expedited();
    let c = rcu.start_poll();
    assert!(eventually(Duration::from_secs(10), || rcu.poll(&c)));
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    assert!(rcu.late_readers().is_empty());
    stop_tx.send(()).unwrap();
    h.join().unwrap();
}

#[test]
fn a_thread_that_exits_online_does_not_block_later_grace_periods() {
    let rcu = qsbr();
    // Drops its registration online at the end of its closure.
    let r = rcu.clone();
    thread::spawn(move || {
        let t = r.register_qsbr_thread();
        assert!(t.is_online());
        let _g = t.read_lock();
    })
    .join()
    .unwrap();
    // Unwinds while online.
    let r = rcu.clone();
    let panicked = thread::spawn(move || {
        let _t = r.register_qsbr_thread();
        panic!("reader dies online");
    })
    .join();
    assert!(panicked.is_err());
    // Keeps its registration in a thread-local (as a C ABI does), dropped
    // as the thread exits.
    thread_local! {
        static REG: std::cell::RefCell<Option<QsbrThread>> = const { std::cell::RefCell::new(None) };
    }
    let r = rcu.clone();
    thread::spawn(move || {
        REG.with(|reg| *reg.borrow_mut() = Some(r.register_qsbr_thread()));
    })
    .join()
    .unwrap();
    for _ in 0..5 {
        rcu.synchronize();
    }
    assert_eq!(rcu.stats().registered_readers, 0, "{:?}", rcu.stats());
}

/// Safe code may leak an online registration (`mem::forget`, or
/// `Box::leak`, whose guards lend `&'static T` that may reach other
/// threads); its thread then exits. The registration stays online for
/// good, and the late reader is named (tests/soundness.rs has a reference
/// from such a registration outlive its thread).
#[test]
fn a_registration_forgotten_online_holds_grace_periods_up_after_its_thread_exits() {
    let rcu = qsbr();
    let r = rcu.clone();
    thread::Builder::new()
        .name("leaks-its-registration".into())
        .spawn(move || std::mem::forget(r.register_qsbr_thread()))
        .unwrap()
        .join()
        .unwrap();
    assert!(
        common::grace_periods_held_up(&rcu, Duration::from_millis(300)),
        "a grace period put a leaked registration offline"
    );
    let late = rcu.late_readers();
    assert_eq!(late.len(), 1, "{late:?}");
    assert_eq!(late[0].name, "leaks-its-registration");
    assert!(late[0].qsbr);
    std::mem::forget(rcu); // dropping it would wait for good
}

#[test]
fn synchronize_completes_while_an_online_thread_reports_every_10us() {
    let rcu = qsbr();
    let reporters = [Reporter::start(&rcu), Reporter::start(&rcu)];
    let start = Instant::now();
    let before = rcu.completed_grace_periods();
    for _ in 0..50 {
        rcu.synchronize();
    }
    assert!(rcu.completed_grace_periods() >= before + 50);
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
    for r in reporters {
        assert!(r.stop() > 0);
    }
}

#[test]
fn concurrent_synchronize_callers_share_grace_periods() {
    let rcu = qsbr();
    let (go, holder) = silent_online_thread(&rcu, "qsbr-holder");
    // Start a grace period the holder blocks.
    let first = rcu.start_poll();
    assert!(eventually(Duration::from_secs(5), || !rcu
        .late_readers()
        .is_empty()));
    let before = rcu.completed_grace_periods();
    let calls = rcu.stats().synchronize_calls;
    let waiters: Vec<_> = (0..4)
        .map(|_| {
            let r = rcu.clone();
            thread::spawn(move || r.synchronize())
        })
        .collect();
    // Every caller takes its snapshot while the first grace period is held
    // up: wait until each has called in (a fixed 30 ms sleep let a loaded
    // machine release the holder first; a caller that snapshots while the
    // shared grace period runs needs a third).
    assert!(
        eventually(Duration::from_secs(20), || rcu.stats().synchronize_calls
            >= calls + 4),
        "the callers never called synchronize: {:?}",
        rcu.stats()
    );
    thread::sleep(Duration::from_millis(20));
    assert!(!rcu.poll(&first));
    go.send(()).unwrap();
    holder.join().unwrap();
    for w in waiters {
        w.join().unwrap();
    }
    assert!(rcu.poll(&first));
    // The one in progress, then one more shared by the four callers.
    let ran = rcu.completed_grace_periods() - before;
    assert!(ran <= 2, "four callers ran {ran} grace periods");
}

#[test]
fn polled_api_works_on_qsbr() {
    let rcu = qsbr();
    let reporter = Reporter::start(&rcu);
    let c = rcu.get_state();
    assert!(!rcu.poll(&c));
    rcu.cond_synchronize(c);
    assert!(rcu.poll(&c));
    let c = rcu.start_poll();
    assert!(eventually(Duration::from_secs(10), || rcu.poll(&c)));
    // From an online thread: start_poll never blocks, and the thread's own
    // reports complete the cookie.
    let mut t = rcu.register_qsbr_thread();
    let c = rcu.start_poll();
    assert!(eventually(Duration::from_secs(10), || {
        t.quiescent_state();
        rcu.poll(&c)
    }));
    let c = rcu.get_state();
    t.offline_while(|| rcu.cond_synchronize(c));
    assert!(rcu.poll(&c));
    reporter.stop();
}

#[test]
fn synchronize_through_the_registration_goes_offline_for_the_wait() {
    let rcu = qsbr();
    let cell = RcuCell::new_in(&rcu, Some(Box::new(1)));
    let mut t = rcu.register_qsbr_thread();
    let reporter = Reporter::start(&rcu);
    assert!(rcu.in_read_section());
    let old = cell.replace(Box::new(2)).unwrap();
    t.synchronize();
    assert!(t.is_online());
    assert!(rcu.poll(&old.cookie()));
    assert_eq!(cell.load(&t.read_lock()), Some(&2));
    drop(old);
    reporter.stop();
}

#[test]
#[should_panic(expected = "online in the same QSBR domain")]
fn rcu_synchronize_on_an_online_thread_panics_instead_of_waiting_for_itself() {
    let rcu = qsbr();
    let _t = rcu.register_qsbr_thread();
    rcu.synchronize();
}

#[test]
#[should_panic(expected = "online in the same QSBR domain")]
fn barrier_on_an_online_thread_panics_instead_of_waiting_for_itself() {
    let rcu = qsbr();
    let _t = rcu.register_qsbr_thread();
    rcu.barrier();
}

/// Dropping a `Retired` early on an online thread panics (it would wait
/// for the thread's own quiescent state), naming the QSBR fix. Before: the
/// message told the user to drop a ReadGuard the thread does not have.
#[test]
#[should_panic(
    expected = "The thread is online in this QSBR domain: drop the Retired inside \
                           QsbrThread::offline_while(|| ...) or after QsbrThread::synchronize()"
)]
fn dropping_a_retired_early_on_an_online_thread_names_the_qsbr_fix() {
    let rcu = qsbr_on_demand();
    let cell = RcuCell::new_in(&rcu, Some(Box::new(1u64)));
    let _thread = rcu.register_qsbr_thread();
    drop(cell.replace(Box::new(2)));
}

#[test]
#[should_panic(expected = "register_qsbr_thread() on a domain of the mb flavor")]
fn registering_on_another_flavor_panics() {
    let rcu = Rcu::new(Config::new().flavor(Flavor::Mb)).unwrap();
    let _t = rcu.register_qsbr_thread();
}

#[test]
#[should_panic(expected = "RcuCell::load with a guard (ReadGuard or QsbrGuard) of domain")]
fn a_qsbr_guard_of_another_domain_is_refused() {
    let (a, b) = (qsbr(), qsbr());
    let cell = RcuCell::new_in(&a, Some(Box::new(1)));
    let t = b.register_qsbr_thread();
    let _ = cell.load(&t.read_lock());
}

#[test]
fn guard_sections_work_on_a_qsbr_domain_from_any_thread() {
    let rcu = qsbr();
    let (ready_tx, ready_rx) = mpsc::channel();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let r = rcu.clone();
    let h = thread::spawn(move || {
        let _g = r.read_lock();
        ready_tx.send(()).unwrap();
        let _ = stop_rx.recv();
    });
    ready_rx.recv().unwrap();
    let c = rcu.start_poll();
    thread::sleep(Duration::from_millis(30));
    assert!(
        !rcu.poll(&c),
        "a grace period ended under a guard's section"
    );
    stop_tx.send(()).unwrap();
    h.join().unwrap();
    assert!(eventually(Duration::from_secs(10), || rcu.poll(&c)));
    // A registered thread may hold a guard section too, and report under
    // it: the guard still holds grace periods up.
    let mut t = rcu.register_qsbr_thread();
    let g = rcu.read_lock();
    let c = rcu.start_poll();
    for _ in 0..20 {
        t.quiescent_state();
        thread::sleep(Duration::from_millis(1));
    }
    assert!(!rcu.poll(&c));
    drop(g);
    assert!(eventually(Duration::from_secs(10), || {
        t.quiescent_state();
        rcu.poll(&c)
    }));
}

struct Counted {
    drops: Arc<AtomicUsize>,
    _payload: [u64; 4],
}
rcu_reclaim::reclaim_size!(Counted {});

impl Drop for Counted {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn call_defer_drop_barrier_and_pending_bytes_work_on_qsbr() {
    let rcu = qsbr_on_demand();
    let reporter = Reporter::start(&rcu);
    let mut t = rcu.register_qsbr_thread();
    let drops = Arc::new(AtomicUsize::new(0));
    let called = Arc::new(AtomicUsize::new(0));
    // Enough for several bulk pages (a page holds a few hundred objects).
    const N: usize = if cfg!(miri) { 600 } else { 2000 };
    for _ in 0..N {
        rcu.defer_drop(Box::new(Counted {
            drops: drops.clone(),
            _payload: [0; 4],
        }));
    }
    let c2 = called.clone();
    rcu.call_sized(
        move || {
            c2.fetch_add(1, Ordering::Relaxed);
        },
        1000,
    );
    let each = std::mem::size_of::<Counted>();
    assert_eq!(rcu.pending(), N + 1);
    assert_eq!(rcu.pending_bytes(), N * each + 1000);
    // Nothing can run before this online thread reports.
    assert_eq!(drops.load(Ordering::Relaxed), 0);
    t.offline_while(|| rcu.barrier());
    assert_eq!(drops.load(Ordering::Relaxed), N);
    assert_eq!(called.load(Ordering::Relaxed), 1);
    assert_eq!(rcu.pending(), 0);
    assert_eq!(rcu.pending_bytes(), 0);
    assert!(rcu.bytes_freed() >= (N * each + 1000) as u64);
    // RcuCell::store (deferred drop of the old value) from the online thread.
    let cell = RcuCell::new_in(&rcu, Some(Box::new(vec![0u8; 4096])));
    cell.store(Box::new(vec![1u8; 16]));
    assert_eq!(rcu.pending_bytes(), 4096 + 24);
    t.offline_while(|| rcu.barrier());
    assert_eq!(rcu.pending_bytes(), 0);
    reporter.stop();
}

#[test]
fn callbacks_run_on_their_own_once_online_threads_report() {
    // The default pace: the grace-period thread and the workers do it all.
    let rcu = Rcu::new(
        Config::new()
            .flavor(Flavor::Qsbr)
            .lazy_delay(Duration::from_millis(5)),
    )
    .unwrap();
    let reporter = Reporter::start(&rcu);
    let drops = Arc::new(AtomicUsize::new(0));
    for _ in 0..100 {
        rcu.defer_drop(Box::new(Counted {
            drops: drops.clone(),
            _payload: [0; 4],
        }));
    }
    assert!(eventually(Duration::from_secs(10), || drops
        .load(Ordering::Relaxed)
        == 100));
    reporter.stop();
}

#[test]
fn pressure_and_run_callbacks_work_on_qsbr() {
    let rcu = qsbr_on_demand();
    let reporter = Reporter::start(&rcu);
    let all = NodeMask::all();
    // Expedited at a middle priority, once the backlog is worth it.
    rcu.defer_drop_sized(Box::new(vec![0u8; 4 << 20]), 4 << 20);
    let guard = rcu.pressure_start_all();
    assert!(rcu.in_fast_mode());
    // Pressure flushes the threads' pages to the shards.
    assert!(eventually(Duration::from_secs(10), || rcu
        .pending_on(&all)
        .1
        >= 4 << 20
        || rcu.pending_bytes() == 0));
    let report = rcu.run_callbacks(&all, 3);
    // A worker the signal woke may have taken the page first: then the
    // call finds less than the backlog that an expedited grace period is
    // worth, and only runs what is ready (or finds nothing at all). The
    // shards' count drops when the worker takes the entry, their bytes
    // once it has freed it: the call may find no entry while the 4 MiB
    // are still counted (Miri's schedule found that one).
    assert!(
        matches!(report.action, RunAction::Expedited | RunAction::Barrier)
            || (report.pending_before.1 < 4 << 20
                && matches!(report.action, RunAction::InvokedReady | RunAction::Nothing))
            || (report.pending_before.0 == 0 && report.action == RunAction::Nothing),
        "{report:?}"
    );
    assert!(
        eventually(Duration::from_secs(10), || rcu.pending_bytes() == 0),
        "{:?}",
        rcu.stats()
    );
    // Priority 0: a barrier on the caller's thread. Under pressure a worker
    // may free the value first (the report counts what the call ran), so
    // the domain's count says it was freed. (The pending count reads 0 once
    // a worker has taken the 4 MiB page, before it has dropped it and
    // counted its bytes: wait for that first.)
    rcu.barrier();
    let before = rcu.bytes_freed();
    rcu.defer_drop_sized(Box::new(vec![0u8; 1 << 20]), 1 << 20);
    let report = rcu.run_callbacks(&all, 0);
    // A worker may also take the page before the call looks (it then
    // finds nothing pending): wait for that worker to count its bytes.
    if report.action == RunAction::Nothing && report.pending_before == (0, 0) {
        rcu.barrier();
    } else {
        assert_eq!(report.action, RunAction::Barrier, "{report:?}");
    }
    assert!(report.bytes_freed <= 1 << 20, "{report:?}");
    assert_eq!(rcu.bytes_freed() - before, 1 << 20);
    drop(guard);
    // From an online thread: run_callbacks never waits for itself, it only
    // runs what is ready.
    let t = rcu.register_qsbr_thread();
    rcu.defer_drop_sized(Box::new(vec![0u8; 1 << 20]), 1 << 20);
    let report = rcu.run_callbacks(&all, 0);
    assert_eq!(report.action, RunAction::InvokedReady, "{report:?}");
    let t = t.thread_offline();
    let report = rcu.run_callbacks(&all, 0);
    assert_eq!(report.action, RunAction::Barrier, "{report:?}");
    assert_eq!(rcu.pending_bytes(), 0);
    drop(t);
    reporter.stop();
}

#[test]
fn under_pressure_the_late_thread_is_named() {
    let rcu = qsbr_on_demand();
    let (go, h) = silent_online_thread(&rcu, "qsbr-late");
    rcu.defer_drop_sized(Box::new(vec![0u8; 1 << 20]), 1 << 20);
    let _pressure = rcu.pressure_start_all();
    let c = rcu.start_poll();
    assert!(eventually(Duration::from_secs(5), || rcu
        .late_readers()
        .iter()
        .any(|l| l.name == "qsbr-late" && l.qsbr && l.tid > 0)));
    assert!(!rcu.poll(&c));
    // Nothing pressure does frees the backlog while the thread is late.
    let report = rcu.run_callbacks(&NodeMask::all(), 12);
    assert_eq!(report.bytes_freed, 0);
    go.send(()).unwrap();
    h.join().unwrap();
    rcu.barrier();
    assert_eq!(rcu.pending_bytes(), 0);
}

#[test]
fn a_stall_warning_names_the_thread_that_has_not_reported() {
    let captured = common::Captured::default();
    let _default = captured.on_this_thread();
    // `tracing` caches each call site's interest process-wide, and a site
    // first reached by two threads at once (the other tests of this binary
    // report stalls too) can stay cached as "never": the stall was
    // counted and its line lost, 8 runs in 20 on a loaded machine. Then
    // the site is registered, the cache rebuilt, and a second stall logs.
    for attempt in 0..2 {
        if attempt > 0 {
            tracing::callsite::rebuild_interest_cache();
        }
        stall_once();
        if captured.text().contains("qsbr-sleeper") {
            break;
        }
    }
    let log = captured.text();
    assert!(log.contains("qsbr-sleeper"), "{log}");
    assert!(log.contains("has not reported a quiescent state"), "{log}");
}

/// A grace period of a fresh QSBR domain held up past its stall timeout
/// by an online thread named `qsbr-sleeper`, reported once.
fn stall_once() {
    // On demand: no grace-period thread takes the wait over (and reports
    // the stall to its own subscriber, not this thread's) while
    // `synchronize` sleeps between looks, as one did on a loaded machine.
    let rcu = Rcu::new(
        Config::new()
            .flavor(Flavor::Qsbr)
            .on_demand()
            .stall_timeout(Duration::from_millis(100)),
    )
    .unwrap();
    let (go, h) = silent_online_thread(&rcu, "qsbr-sleeper");
    let r = thread::spawn(move || {
        thread::sleep(Duration::from_millis(400));
        go.send(()).unwrap();
    });
    rcu.synchronize();
    r.join().unwrap();
    h.join().unwrap();
    let stalls = rcu.stats().stalls_reported;
    if cfg!(miri) {
        // Under Miri's slow clock, with the binary's other tests sharing
        // the interpreter, the sleeper can also hold a second grace period
        // past the timeout between its quiescent state and its exit: a
        // second stall, of another section, reported once too.
        assert!((1..=2).contains(&stalls), "{stalls}");
    } else {
        // Once per stall, however many looks find it past the timeout.
        assert_eq!(stalls, 1);
    }
}

// ---------------------------------------------------------------------------
// Poison stress.

const MAGIC: u64 = 0x5153_4252_4f4b_4159;
const POISON: u64 = 0xDEAD_BEEF_DEAD_BEEF;

/// A value that poisons itself when dropped (volatile: the writes reach
/// memory though the value is being freed).
struct Poisoned {
    magic: u64,
    words: [u64; 6],
}

rcu_reclaim::reclaim_size!(Poisoned {});

impl Poisoned {
    fn new(g: u64) -> Box<Self> {
        Box::new(Poisoned {
            magic: MAGIC,
            words: [g; 6],
        })
    }

    /// Violations seen reading it.
    fn check(&self) -> u64 {
        // SAFETY: valid for reads while the section lasts.
        let magic = unsafe { ptr::read_volatile(&self.magic) };
        // SAFETY: as above.
        let first = unsafe { ptr::read_volatile(&self.words[0]) };
        let mut bad = u64::from(magic != MAGIC);
        for w in &self.words {
            // SAFETY: as above.
            bad += u64::from(unsafe { ptr::read_volatile(w) } != first);
        }
        bad
    }
}

impl Drop for Poisoned {
    fn drop(&mut self) {
        // SAFETY: exclusive references to the value's own fields.
        unsafe {
            ptr::write_volatile(&mut self.magic, POISON);
            for w in self.words.iter_mut() {
                ptr::write_volatile(w, POISON);
            }
        }
    }
}

#[test]
fn poison_stress() {
    let secs: f64 = common::env_or("RCU_STRESS_SECS", 1.0);
    let duration = Duration::from_secs_f64(secs);
    let rcu = Rcu::new(
        Config::new()
            .flavor(Flavor::Qsbr)
            .lazy_delay(Duration::from_millis(1))
            .pace_bytes(4096),
    )
    .unwrap();
    let cells: Arc<Vec<RcuCell<Poisoned>>> = Arc::new(
        (0..4)
            .map(|i| RcuCell::new_in(&rcu, Some(Poisoned::new(i))))
            .collect(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let violations = Arc::new(AtomicU64::new(0));
    let reads = Arc::new(AtomicU64::new(0));
    let mut handles = vec![];
    for id in 0..3u64 {
        let (cells, stop, violations, reads, rcu) = (
            cells.clone(),
            stop.clone(),
            violations.clone(),
            reads.clone(),
            rcu.clone(),
        );
        handles.push(thread::spawn(move || {
            let mut t = rcu.register_qsbr_thread();
            let (mut n, mut bad) = (0u64, 0u64);
            let mut round = 0u64;
            while !stop.load(Ordering::Relaxed) {
                {
                    let g = t.read_lock();
                    // Hold several references across the loop body.
                    let held: Vec<&Poisoned> = cells.iter().filter_map(|c| c.load(&g)).collect();
                    for _ in 0..8 {
                        for p in &held {
                            bad += p.check();
                            n += 1;
                        }
                    }
                }
                t.quiescent_state();
                round += 1;
                match (round + id) % 64 {
                    // Now and then offline for a while, three ways.
                    0 => t.offline_while(|| thread::sleep(Duration::from_micros(50))),
                    16 => {
                        let off = t.thread_offline();
                        thread::yield_now();
                        t = off.thread_online();
                    }
                    32 if id == 0 => {
                        // Re-register: the old registration goes away online.
                        t = rcu.register_qsbr_thread();
                    }
                    _ => {}
                }
            }
            violations.fetch_add(bad, Ordering::Relaxed);
            reads.fetch_add(n, Ordering::Relaxed);
        }));
    }
    // Writers: one retires with defer_drop (bulk pages), one with
    // synchronize, one through a registration of its own.
    for w in 0..3u64 {
        let (cells, stop, rcu) = (cells.clone(), stop.clone(), rcu.clone());
        handles.push(thread::spawn(move || {
            let mut g = 1000 * (w + 1);
            let mut t = (w == 2).then(|| rcu.register_qsbr_thread());
            while !stop.load(Ordering::Relaxed) {
                g += 1;
                let cell = &cells[(g % 4) as usize];
                match w {
                    0 => cell.store(Poisoned::new(g)),
                    1 => {
                        let old = cell.replace(Poisoned::new(g)).unwrap();
                        rcu.synchronize();
                        drop(old.into_box());
                    }
                    _ => {
                        let t = t.as_mut().unwrap();
                        let old = cell.replace(Poisoned::new(g)).unwrap();
                        if g % 2 == 0 {
                            old.defer_drop();
                        } else {
                            t.synchronize();
                            drop(old.into_box());
                        }
                        t.quiescent_state();
                    }
                }
            }
        }));
    }
    thread::sleep(duration);
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().unwrap();
    }
    rcu.barrier();
    let (v, n) = (
        violations.load(Ordering::Relaxed),
        reads.load(Ordering::Relaxed),
    );
    assert_eq!(v, 0, "{v} poisoned or torn reads out of {n}");
    // Miri's virtual second holds far fewer rounds and grace periods.
    let (min_reads, min_gps) = if cfg!(miri) { (100, 2) } else { (1000, 10) };
    assert!(n > min_reads, "only {n} reads");
    assert!(rcu.completed_grace_periods() > min_gps, "{:?}", rcu.stats());
    assert_eq!(rcu.pending(), 0);
}

#[test]
fn the_map_and_the_cache_read_under_a_qsbr_guard_and_free_after_quiescent_states() {
    let rcu = qsbr_on_demand();
    let map = rcu_reclaim::RcuHashMap::new_in(&rcu);
    let cache = rcu_reclaim::RcuCache::builder()
        .rcu(&rcu)
        .max_bytes(64 << 10)
        .build();
    let drops = Arc::new(AtomicUsize::new(0));
    let mut t = rcu.register_qsbr_thread();
    for k in 0..100u32 {
        map.insert(
            k,
            Counted {
                drops: drops.clone(),
                _payload: [u64::from(k); 4],
            },
        );
        cache.insert(k, vec![k as u8; 4096]);
    }
    {
        let g = t.read_lock();
        assert!(map.get(&7, &g).is_some());
        assert!(map.contains_key(&99, &g));
        assert_eq!(map.iter(&g).count(), 100);
        let v = cache.get_or_insert_with(1000, || vec![9u8; 16], &g);
        assert_eq!(v[0], 9);
        let hit = cache.get(&1000, &g).map(|v| v.len());
        assert_eq!(hit, Some(16));
        // Removed under the guard: still readable until a quiescent state.
        let r = map.get(&5, &g).unwrap();
        assert!(map.remove(&5));
        assert_eq!(r._payload[0], 5);
    }
    assert_eq!(
        drops.load(Ordering::Relaxed),
        0,
        "freed before a quiescent state"
    );
    t.quiescent_state();
    map.clear();
    drop(cache);
    // Offline, the thread holds nothing and may wait for the grace periods.
    let off = t.thread_offline();
    rcu.barrier();
    assert_eq!(drops.load(Ordering::Relaxed), 100);
    assert_eq!(rcu.pending_bytes(), 0);
    drop(off);
}

/// A budget over its limit on this thread, whose usage function panics on
/// this thread once `USAGE_PANICS` is set (other threads, the background
/// reclaimer's, see no usage): a check on an online QSBR thread owes the
/// direct reclaim, which then runs, and panics, where the thread pays it.
fn owing_budget(rcu: &Rcu) -> rcu_reclaim::reclaim::MemoryBudget {
    use rcu_reclaim::reclaim::{MemoryBudget, Reclaimer};
    const LIMIT: usize = 64 << 20;
    let me = thread::current().id();
    let budget = MemoryBudget::new(LIMIT, Arc::new(Reclaimer::new(rcu)), move || {
        if thread::current().id() != me {
            0
        } else if USAGE_PANICS.with(|p| p.get()) {
            panic!("the usage function panics");
        } else {
            LIMIT
        }
    });
    assert!(budget.check());
    assert_eq!(
        budget.stats().deferred_in_section,
        1,
        "owed, not run online"
    );
    budget
}

thread_local! {
    static USAGE_PANICS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether a value read under `thread`'s guard stays alive while another
/// thread replaces it and waits for a grace period: before, a registration
/// whose owed reclaim panicked read with its slot offline, and the other
/// thread freed the value under the reader's reference.
fn reads_are_protected(rcu: &Rcu, thread: &QsbrThread) -> bool {
    let drops = common::poison::Drops::new(2);
    let cell = Arc::new(RcuCell::new_in(
        rcu,
        Some(Box::new(common::poison::Val::new(&drops, 0))),
    ));
    let guard = thread.read_lock();
    let value = cell.load(&guard).unwrap();
    value.check(0);
    let (c, r) = (cell.clone(), rcu.clone());
    let (d2, done) = (drops.clone(), Arc::new(AtomicBool::new(false)));
    let done2 = done.clone();
    let writer = thread::spawn(move || {
        drop(c.replace(Box::new(common::poison::Val::new(&d2, 1))));
        r.synchronize();
        r.barrier();
        done2.store(true, Ordering::SeqCst);
    });
    thread::sleep(Duration::from_millis(200));
    // Only the count is looked at: reading a freed value would be the bug.
    let protected = drops.dropped(0) == 0 && !done.load(Ordering::SeqCst);
    if protected {
        value.check(0);
    }
    // Let the writer finish: this thread stays offline until it has (its
    // `barrier` waits for grace periods too; a thread back online before
    // that, joining it, held them up for good under Miri's slow clock).
    // Without `&mut`: the test keeps the guard's borrow until here.
    let _ = value;
    // SAFETY: no reference read under the thread's guards is used after
    // this point (the last use is above).
    unsafe { thread.thread_offline_unchecked() };
    let joined = writer.join();
    thread.thread_online_unchecked();
    joined.unwrap();
    protected
}

/// A panic in work the thread pays as it goes offline (a budget's owed
/// direct reclaim: the usage function, a shrinker, the OOM handler) left
/// `offline_while` before it armed its way back online: the `QsbrThread`
/// said online but its slot was offline, so after the caught panic its
/// guards protected nothing (a writer freed a value under its reader).
#[test]
fn a_panic_paying_owed_reclaim_in_offline_while_leaves_the_thread_online() {
    let rcu = qsbr_on_demand();
    let mut thread = rcu.register_qsbr_thread();
    let _budget = owing_budget(&rcu);
    USAGE_PANICS.with(|p| p.set(true));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        thread.offline_while(|| ());
    }));
    USAGE_PANICS.with(|p| p.set(false));
    assert!(r.is_err(), "the usage function's panic reaches the caller");
    assert!(
        reads_are_protected(&rcu, &thread),
        "a guard of the thread protected nothing after the panic"
    );
    assert!(thread.is_online());
    assert!(rcu.in_read_section(), "the domain's marks lost the thread");
    thread.quiescent_state();
}

/// As above, for the reclaim paid at a quiescent state that reports: the
/// slot was put offline for the payment and the domain's marks cleared,
/// and neither came back when the payment panicked.
#[test]
fn a_panic_paying_owed_reclaim_at_a_quiescent_state_leaves_the_thread_online() {
    let rcu = qsbr_on_demand();
    let mut thread = rcu.register_qsbr_thread();
    let budget = owing_budget(&rcu);
    USAGE_PANICS.with(|p| p.set(true));
    let _cookie = rcu.start_poll();
    let start = Instant::now();
    let mut panicked = false;
    while !panicked {
        assert!(start.elapsed() < Duration::from_secs(10), "never paid");
        panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            thread.quiescent_state();
        }))
        .is_err();
        thread::yield_now();
    }
    USAGE_PANICS.with(|p| p.set(false));
    assert_eq!(budget.stats().owed_reclaims, 1);
    assert!(
        reads_are_protected(&rcu, &thread),
        "a guard of the thread protected nothing after the panic"
    );
    assert!(thread.is_online());
    assert!(rcu.in_read_section(), "the domain's marks lost the thread");
    thread.quiescent_state();
}

/// Dropping a registration that owes a reclaim whose payment panics still
/// unregisters it: the slot is handed back (before, the panic left the
/// drop before the release, and the slot stayed claimed for good). The
/// panic is reported, not unwound out of the drop: a registration is also
/// dropped while its thread unwinds, or by a thread-local's destructor,
/// where a panic out of it aborted the process
/// (`tests/audit_panic_qsbr_owed.rs`).
#[test]
fn a_panic_paying_owed_reclaim_as_the_registration_drops_still_unregisters() {
    let rcu = qsbr_on_demand();
    let before = rcu.stats().registered_readers;
    let thread = rcu.register_qsbr_thread();
    let _budget = owing_budget(&rcu);
    USAGE_PANICS.with(|p| p.set(true));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(thread)));
    USAGE_PANICS.with(|p| p.set(false));
    assert!(
        r.is_ok(),
        "the usage function's panic unwound out of the registration's drop"
    );
    assert!(!rcu.in_read_section());
    assert_eq!(
        rcu.stats().registered_readers,
        before,
        "the slot stayed claimed"
    );
    rcu.synchronize();
}

/// `offline_while` and `synchronize` on a thread put offline with
/// `thread_offline_unchecked` leave it offline, as liburcu's
/// `synchronize_rcu` leaves an offline caller (and as `is_online`'s docs
/// say: offline until `thread_online_unchecked`). Before, they put it
/// online on the way out: a thread that went on believing it was offline
/// and blocked held every grace period up.
#[test]
fn offline_while_and_synchronize_leave_an_unchecked_offline_thread_offline() {
    let rcu = qsbr_on_demand();
    let mut thread = rcu.register_qsbr_thread();
    // SAFETY: no guard of the thread is taken or used while it is offline.
    unsafe { thread.thread_offline_unchecked() };
    thread.synchronize();
    assert!(!thread.is_online(), "synchronize put the thread online");
    assert!(!rcu.in_read_section());
    thread.offline_while(|| ());
    assert!(!thread.is_online(), "offline_while put the thread online");
    // Until it completes, not a fixed time: under Miri's slow clock a
    // grace period can take longer than 100 ms with no thread holding it.
    let cookie = rcu.start_poll();
    assert!(
        eventually(Duration::from_secs(20), || rcu.poll(&cookie)),
        "an offline thread held a grace period up"
    );
    thread.thread_online_unchecked();
    assert!(thread.is_online());
    thread.offline_while(|| assert!(!rcu.in_read_section()));
    assert!(thread.is_online(), "an online thread comes back online");
}

/// `collect()` on an online thread runs no callback there: a callback may
/// wait for a grace period of the domain (legitimate on a worker), which
/// on an online thread would wait for itself. Before, `collect()` ran such
/// callbacks here, where they panicked and their work was lost (1 to 20 of
/// 20 per run, by timing). Values that drop anywhere are still freed here.
#[test]
fn collect_on_an_online_thread_leaves_callbacks_that_may_wait_to_workers() {
    let rcu = qsbr();
    let mut t = rcu.register_qsbr_thread();
    let me = thread::current().id();
    let (here, done) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let cell = Arc::new(RcuCell::new_in(&rcu, Some(Box::new(0u32))));
    const ROUNDS: usize = 200;
    for i in 0..ROUNDS {
        let (r, c, here, done) = (rcu.clone(), cell.clone(), here.clone(), done.clone());
        rcu.call(move || {
            if thread::current().id() == me {
                here.fetch_add(1, Ordering::SeqCst);
            }
            if i % 2 == 0 {
                r.synchronize();
            } else {
                drop(c.replace(Box::new(i as u32)));
            }
            done.fetch_add(1, Ordering::SeqCst);
        });
        // Plain garbage too, which this thread may free.
        rcu.defer_drop(Box::new([i as u64; 8]));
        t.quiescent_state();
        rcu.collect();
    }
    let start = Instant::now();
    while done.load(Ordering::SeqCst) < ROUNDS && start.elapsed() < Duration::from_secs(30) {
        t.quiescent_state();
        rcu.collect();
        thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(
        here.load(Ordering::SeqCst),
        0,
        "a callback ran in collect()"
    );
    assert_eq!(
        done.load(Ordering::SeqCst),
        ROUNDS,
        "a callback's work was lost"
    );
    assert_eq!(rcu.stats().callback_panics, 0);
    t.offline_while(|| rcu.barrier());
    assert_eq!(rcu.pending(), 0);
}

/// A QSBR grace period starts with a fence, not a `membarrier`, so its
/// retiring threads pace their grace periods as an mb domain's do: a page
/// holding 2 KiB goes early after 15 µs without a start, not 150 µs. Here
/// the only online thread retires 512-byte values 5 µs apart and reports
/// a quiescent state after each, so each look at its page (every eight
/// retires, some 40 µs) finds 4 KiB on it: one look in two goes early
/// (199 of 400); with the old pace, one in four (100).
///
/// The count holds while the thread runs undisturbed for the attempt's
/// 16 ms or so. Beside the other tests of this binary on a loaded 2-core
/// machine its threads are preempted, and an attempt completed 70 or 97
/// (2 runs of the binary in 10 beside a busy loop), and beside three busy
/// loops ten attempts in a row could complete 35-135. So each attempt gets
/// a fresh domain, the attempts are spread over a second or more, and the
/// pace must show in one of `ATTEMPTS`; the old pace shows in none (a
/// build with the 150 µs spell: 7 to 135 in each of 150 attempts, most
/// 101-112).
#[test]
fn a_qsbr_thread_that_reports_often_paces_its_grace_periods_as_fences_allow() {
    const LOOKS: u64 = 400;
    const ATTEMPTS: usize = 40;
    let (mut seen, mut last) = (Vec::new(), None);
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            // Let a spell of load pass rather than measure within it.
            thread::sleep(Duration::from_millis(25));
        }
        let rcu = qsbr();
        rcu.barrier();
        let mut t = rcu.register_qsbr_thread();
        let by_retirer = common::retirer_gps_over(&rcu, LOOKS * 8, Duration::from_micros(5), |i| {
            rcu.defer_drop(Box::new(vec![i as u8; 512]));
            t.quiescent_state();
        });
        let stats = rcu.stats();
        drop(t);
        rcu.barrier();
        if by_retirer >= LOOKS * 3 / 8 {
            return;
        }
        seen.push(by_retirer);
        last = Some(stats);
    }
    panic!(
        "in none of {ATTEMPTS} attempts did the online thread complete {} grace periods in \
         {LOOKS} looks at its page about 40 µs apart: {seen:?}; the last: {last:?}",
        LOOKS * 3 / 8
    );
}
