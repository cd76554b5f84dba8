//! `Config::max_pending_bytes`: a cap on the garbage waiting for grace
//! periods, with no pressure signal, memory limit or usage function. A
//! writer that retires behind a reader holding every grace period up
//! waits at the cap instead of piling garbage up, and goes on once the
//! reader has left.

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use rcu_reclaim::{Config, Rcu, RcuCell};

mod common;

const MIB: usize = 1 << 20;

/// Bytes one 1 MiB store retires (the `Vec`'s buffer and its header).
const VALUE: usize = MIB + 24;

/// `stores` stores of 1 MiB into a cell of `rcu` while a reader holds
/// grace periods up for `hold`; returns the most garbage seen after a
/// store, and how long the stores took.
fn stores_behind_a_reader(rcu: &Rcu, stores: u8, hold: Duration) -> (usize, Duration) {
    let cell = RcuCell::new_in(rcu, Box::new(vec![0u8; MIB]));
    let (most, took) = common::stores_behind_a_reader(rcu, &cell, MIB, stores, hold);
    drop(cell);
    rcu.barrier();
    assert_eq!(rcu.pending_bytes(), 0, "{:?}", rcu.stats());
    (most, took)
}

/// [`stores_behind_a_reader`], checking that the garbage kept within
/// `bound` and a value or two (the thread's own page, and the value being
/// retired); returns the most seen.
fn keeps_within(rcu: &Rcu, bound: usize, stores: u8, hold: Duration) -> usize {
    let (most, _) = stores_behind_a_reader(rcu, stores, hold);
    assert!(
        most <= bound + 2 * VALUE,
        "{most} bytes waited, over {bound}: {:?}",
        rcu.stats()
    );
    most
}

/// With a cap of 8 MiB, 40 stores of 1 MiB behind a reader that stays in
/// its section for 300 ms keep the garbage within the cap and a value or
/// two (the thread's own page, and the value being retired): the writer
/// waits at the cap until the reader leaves. Without the cap the same
/// stores leave all 40 MiB waiting, so the test shows the cap at work.
#[test]
fn a_writer_behind_a_held_up_grace_period_waits_at_the_cap() {
    let hold = Duration::from_millis(300);
    let capped = Rcu::new(Config::new().max_pending_bytes(8 * MIB)).unwrap();
    let (most, took) = stores_behind_a_reader(&capped, 40, hold);
    assert!(
        most <= 8 * MIB + 2 * VALUE,
        "{most} bytes waited, over the 8 MiB cap: {:?}",
        capped.stats()
    );
    assert!(capped.stats().headroom_waits >= 1, "{:?}", capped.stats());
    // The writer waited for the reader (it could not have stored 40 MiB
    // under the cap otherwise), not for each wait's bound of 1 s.
    assert!(took >= hold / 2, "took {took:?}");
    assert!(took < Duration::from_secs(20), "took {took:?}");

    let uncapped = Rcu::new(Config::new()).unwrap();
    let (most, _) = stores_behind_a_reader(&uncapped, 40, hold);
    assert!(most >= 30 * MIB, "only {most} bytes waited without a cap");
}

/// The cap bounds the garbage where a memory limit would allow more: a
/// domain bounded at a 100 MiB mark with 10 MiB in use (an allowance of
/// 45 MiB) and capped at 4 MiB keeps to the cap. The limit's bound still
/// holds where it is the smaller one.
#[test]
fn the_smaller_of_the_cap_and_a_memory_limits_bound_holds() {
    let hold = Duration::from_millis(200);
    let rcu = Rcu::new(Config::new().max_pending_bytes(4 * MIB)).unwrap();
    rcu.bound_garbage(100 * MIB, || Some(10 * MIB));
    keeps_within(&rcu, 4 * MIB, 24, hold);

    // Removing the limit leaves the cap.
    rcu.unbound_garbage();
    keeps_within(&rcu, 4 * MIB, 24, hold);

    // A limit whose allowance is under the cap: its floor of 2 MiB holds.
    let rcu = Rcu::new(Config::new().max_pending_bytes(64 * MIB)).unwrap();
    rcu.bound_garbage(100 * MIB, || Some(99 * MIB));
    keeps_within(&rcu, 2 * MIB, 24, hold);
}

/// A cap under 2 MiB is taken as 2 MiB (smaller garbage never waits), and
/// a cap of 0 is that too, not a domain whose every retire waits.
#[test]
fn a_cap_under_two_mib_is_two_mib() {
    for cap in [0, 1, 64 << 10] {
        let rcu = Rcu::new(Config::new().max_pending_bytes(cap)).unwrap();
        let most = keeps_within(&rcu, 2 * MIB, 12, Duration::from_millis(150));
        assert!(
            most >= MIB,
            "cap {cap}: {most} bytes waited: every retire waited"
        );
    }
}

/// The cap holds whatever the pace: with `on_demand` (a pace of half the
/// address space) or `pace_bytes(usize::MAX)`, a thread's page of 1 MiB
/// values went to its shard only once full (255 values), and the cap,
/// looked at only as a page is handed off, never saw them: 40 stores
/// behind a reader left all 40 MiB waiting over a 4 MiB cap. A page now
/// goes once it holds a sixteenth of the cap in 32 values, or a quarter
/// of it in fewer.
#[test]
fn the_cap_holds_with_a_pace_above_it() {
    for config in [
        Config::new().on_demand(),
        Config::new().pace_bytes(usize::MAX),
        Config::new().pace_bytes(64 * MIB),
    ] {
        let rcu = Rcu::new(config.max_pending_bytes(4 * MIB)).unwrap();
        keeps_within(&rcu, 4 * MIB, 40, Duration::from_millis(300));
    }
}

/// On a QSBR domain, an online writer that reports quiescent states
/// between its stores keeps to the cap while another online thread never
/// reports (holding every grace period up): with no grace period begun,
/// its quiescent states report nothing, and they pay the wait its retires
/// owed anyway (offline meanwhile). Before, only a quiescent state that
/// reported paid: the writer piled 200 MiB over a 4 MiB cap in 3 s.
#[test]
fn an_online_qsbr_writer_keeps_to_the_cap_behind_a_thread_that_never_reports() {
    let rcu = Rcu::new(
        Config::new()
            .flavor(rcu_reclaim::Flavor::Qsbr)
            .max_pending_bytes(4 * MIB),
    )
    .unwrap();
    let cell = RcuCell::new_in(&rcu, Box::new(vec![0u8; MIB]));
    let hold = Duration::from_millis(1500);
    let (online, is_online) = mpsc::channel();
    let silent = {
        let rcu = rcu.clone();
        thread::spawn(move || {
            let thread = rcu.register_qsbr_thread();
            online.send(()).unwrap();
            thread::sleep(hold);
            drop(thread);
        })
    };
    is_online.recv().unwrap();
    let mut writer = rcu.register_qsbr_thread();
    let start = Instant::now();
    let mut most = 0;
    let mut stores = 0;
    while start.elapsed() < hold && stores < 100 {
        cell.store(Box::new(vec![1u8; MIB]));
        writer.quiescent_state();
        stores += 1;
        most = most.max(rcu.pending_bytes());
    }
    drop(writer);
    silent.join().unwrap();
    assert!(
        most <= 4 * MIB + 3 * VALUE,
        "{most} bytes waited after {stores} stores, over the 4 MiB cap: {:?}",
        rcu.stats()
    );
    assert!(rcu.stats().headroom_waits >= 1, "{:?}", rcu.stats());
    drop(cell);
    rcu.barrier();
    assert_eq!(rcu.pending_bytes(), 0);
}

/// A wait at the cap that runs out behind an online QSBR thread that never
/// reports says what ends that hold: a quiescent state (an online QSBR
/// thread has no section to keep short). The report said only "keep
/// read-side sections short".
#[test]
fn a_wait_held_up_by_a_qsbr_thread_says_to_report_quiescent_states() {
    let rcu = Rcu::new(
        Config::new()
            .flavor(rcu_reclaim::Flavor::Qsbr)
            .max_pending_bytes(2 * MIB),
    )
    .unwrap();
    let cell = RcuCell::new_in(&rcu, Box::new(vec![0u8; 4 * MIB]));
    let (online, is_online) = mpsc::channel();
    let (done, finish) = mpsc::channel::<()>();
    let silent = {
        let rcu = rcu.clone();
        thread::spawn(move || {
            let thread = rcu.register_qsbr_thread();
            online.send(()).unwrap();
            let _ = finish.recv();
            drop(thread);
        })
    };
    is_online.recv().unwrap();
    let log = common::Captured::default();
    {
        let _logged = log.on_this_thread();
        // Over the cap behind the silent thread: the wait runs its bound
        // out and is reported (never inside a section: this thread is
        // not registered).
        cell.store(Box::new(vec![1u8; 4 * MIB]));
    }
    done.send(()).unwrap();
    silent.join().unwrap();
    drop(cell);
    rcu.barrier();
    let text = log.text();
    assert!(
        text.contains("online QSBR thread") && text.contains("quiescent states regularly"),
        "the report did not say to report quiescent states: {text}"
    );
    assert!(
        !text.contains("keep read-side sections short"),
        "the report spoke of sections a QSBR thread does not have: {text}"
    );
}

/// In a process forked without `Rcu::prepare_fork`, the domain's
/// grace-period thread and workers do not exist, and a wait at the cap
/// runs out at every retire: its report says so and names the fix. It
/// said "the grace-period thread and workers could not keep up".
#[test]
#[cfg_attr(miri, ignore = "Miri cannot fork")]
fn a_wait_in_a_child_forked_unprepared_names_prepare_fork() {
    let rcu = Rcu::new(Config::new().max_pending_bytes(2 * MIB)).unwrap();
    // A reader on another thread, whose slot the child inherits: the
    // child's retires then wait for a grace period instead of completing
    // their own at once.
    let _reader = common::IdleReader::new(&rcu);
    let cell = RcuCell::new_in(&rcu, Box::new(vec![0u8; 4 * MIB]));
    // The domain's threads are running before the fork.
    cell.store(Box::new(vec![1u8; 4 * MIB]));
    rcu.barrier();
    let pid = common::fork();
    if pid == 0 {
        let log = common::Captured::default();
        let named = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _logged = log.on_this_thread();
            cell.store(Box::new(vec![2u8; 4 * MIB]));
        })) {
            Ok(()) => {
                let text = log.text();
                text.contains("without Rcu::prepare_fork()") && text.contains("ForkGuard::child()")
            }
            // A lock of the domain that one of its threads held at the
            // fork: the store gives up on it, naming the fix as well.
            Err(e) => common::panic_text(&*e).contains("prepare_fork"),
        };
        if !named {
            eprintln!("the child's report: {}", log.text());
        }
        // SAFETY: ends the child without running the parent's destructors.
        unsafe { libc::_exit(if named { 0 } else { 3 }) };
    }
    let status = common::child_status(pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the child's report at the cap did not name prepare_fork: status {status}"
    );
}

/// Takes the lock it holds as it drops.
struct TakesLock(std::sync::Arc<std::sync::Mutex<()>>, mpsc::Sender<()>);

impl Drop for TakesLock {
    fn drop(&mut self) {
        self.1.send(()).unwrap();
        drop(self.0.lock().unwrap());
    }
}

/// A value a thread drops itself after a grace period (`defer_drop` with
/// no bulk page to be had: here, page allocation forbidden on it) is no
/// garbage the cap waits for: the cap counts what waits for a grace period
/// and what a runner frees, and a runner stuck on a lock the waiting
/// thread holds is given up on, but no waiting thread sees such a drop.
/// One that takes a lock a writer holds while retiring kept that writer
/// waiting its full second at the cap at every hand-off, for 64 MiB it
/// booked that could not be freed before the writer let go of the lock.
#[test]
fn a_drop_a_thread_runs_itself_is_not_waited_for_at_the_cap() {
    let rcu = Rcu::new(Config::new().max_pending_bytes(4 * MIB)).unwrap();
    let lock = std::sync::Arc::new(std::sync::Mutex::new(()));
    let held = lock.lock().unwrap();
    let (dropping_tx, dropping_rx) = mpsc::channel();
    let dropper = {
        let (rcu, lock) = (rcu.clone(), lock.clone());
        thread::spawn(move || {
            // No page: a grace period, then dropped on this thread.
            rcu_reclaim::pages::without_page_allocation(|| {
                rcu.defer_drop_sized(Box::new(TakesLock(lock, dropping_tx)), 64 * MIB);
            });
        })
    };
    dropping_rx.recv().unwrap();
    // A 1 MiB value goes to the shards at once (the cap's page pace), its
    // hand-off looks at the cap: 1 MiB waits for a grace period.
    rcu.defer_drop(Box::new(vec![7u8; MIB]));
    let waits = rcu.stats().headroom_waits;
    drop(held);
    dropper.join().unwrap();
    assert_eq!(waits, 0, "a retire waited at the cap for a drop it held up");
    rcu.barrier();
    assert_eq!(rcu.pending_bytes(), 0);
}
