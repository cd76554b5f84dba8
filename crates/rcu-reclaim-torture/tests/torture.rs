//! Short torture runs (`rcu_reclaim_torture`) with each option and each
//! injected fault, about 20 s of torture in all; a deliberately broken RCU
//! must fail. Longer runs: `rcu-reclaim torture --all --duration 600` (see
//! README).

use std::time::Duration;

use rcu_reclaim::{Config, Flavor, Rcu};
use rcu_reclaim_torture::{
    self as torture, Fault, TortureConfig, TortureReport, UpdateMode, PIPE_LEN,
};

fn config(ms: u64) -> TortureConfig {
    let mut c = TortureConfig::new();
    c.duration = Duration::from_millis(ms);
    c
}

/// Runs `c` and checks what every successful run must show.
fn run_ok(c: &TortureConfig) -> TortureReport {
    torture::silence_injected_panics();
    let r = torture::run(c).unwrap();
    assert!(r.success(), "{r}");
    assert!(r.to_string().ends_with("End of test: SUCCESS\n"), "{r}");
    assert!(r.reads > 0 && r.stats.gp_completed > 0, "{r}");
    assert_eq!(r.reader_pipe[2..].iter().sum::<u64>(), 0, "{r}");
    assert_eq!(r.reader_batch[2..].iter().sum::<u64>(), 0, "{r}");
    assert_eq!(r.reader_pipe.iter().sum::<u64>(), r.reads);
    assert_eq!(r.callbacks_queued, r.callbacks_run, "{r}");
    assert_eq!(
        (r.mb_errors, r.barrier_errors, r.callbacks_early),
        (0, 0, 0)
    );
    assert!(r.barrier_rounds > 0, "{r}");
    // Every retired element walked the whole pipe and came back.
    let c = r.free_block_circulation;
    assert!(
        c[..PIPE_LEN].iter().all(|&n| n == c[0]) && c[PIPE_LEN] == 0,
        "{r}"
    );
    assert_eq!(r.elements_not_returned, 0);
    r
}

#[test]
fn plain_runs_succeed_on_each_flavor() {
    let mut c = config(1500);
    c.flavor = Some(Flavor::Mb);
    assert_eq!(run_ok(&c).flavor, Flavor::Mb);
    if Rcu::new(Config::new().flavor(Flavor::Memb)).is_ok() {
        c.flavor = Some(Flavor::Memb);
        c.readers = 3;
        c.writers = 2;
        assert_eq!(run_ok(&c).flavor, Flavor::Memb);
    }
    // Two writers: one a registered QSBR thread (offline while it waits),
    // one unregistered.
    c.flavor = Some(Flavor::Qsbr);
    c.readers = 3;
    c.writers = 2;
    assert_eq!(run_ok(&c).flavor, Flavor::Qsbr);
}

#[test]
fn qsbr_readers_with_everything_at_once() {
    // QSBR readers that report, go offline and wait for grace periods; a
    // QSBR staller that reports nothing for twice the stall timeout; churn
    // threads that exit online.
    let mut c = TortureConfig::everything(Duration::from_secs(2));
    c.flavor = Some(Flavor::Qsbr);
    let r = run_ok(&c);
    assert_eq!(r.flavor, Flavor::Qsbr);
    assert!(r.churned_threads > 0 && r.stall_episodes > 0, "{r}");
    assert!(r.stats.stalls_reported >= 1, "{r}");
}

#[test]
fn each_update_mode_alone_walks_the_pipe() {
    for mode in UpdateMode::ALL {
        let mut c = config(500);
        c.modes = vec![mode];
        let r = run_ok(&c);
        let (m, n) = r.updates.iter().find(|(m, _)| *m == mode).copied().unwrap();
        assert!(n > 0, "{m}: {r}");
        assert!(r.free_block_circulation[PIPE_LEN - 1] > 0, "{m}: {r}");
    }
}

#[test]
fn floods_go_past_qhimark() {
    let mut c = config(1500);
    c.flood = true;
    c.qhimark = 500;
    let r = run_ok(&c);
    assert!(r.floods > 0 && r.stats.overload_events > 0, "{r}");
    assert!(r.callbacks_queued >= 1000, "{r}");
}

#[test]
fn pressure_flapping_enters_fast_mode() {
    let mut c = config(1500);
    c.pressure_hz = 200.0;
    let r = run_ok(&c);
    assert!(r.flaps > 0 && r.stats.fast_mode_entries > 0, "{r}");
}

#[test]
fn a_garbage_bound_near_its_mark_makes_retires_wait_on_each_flavor() {
    // Writers and readers retire beside a thread that books 4 MiB each time
    // the bound's usage goes near its mark: their hand-offs wait (online
    // QSBR writers owe the wait and pay it at a quiescent state), nothing
    // is freed early, and every callback still runs.
    for flavor in [Flavor::Memb, Flavor::Qsbr] {
        let mut c = config(1500);
        c.flavor = Some(flavor);
        c.writers = 2;
        c.garbage_bound = true;
        let r = run_ok(&c);
        assert!(r.bound_flips > 0, "{flavor:?}: {r}");
        assert!(r.stats.headroom_waits > 0, "{flavor:?}: {r}");
        assert!(
            r.to_string().contains("garbage bound: near its mark"),
            "{r}"
        );
    }
}

#[test]
fn a_pressure_rate_near_zero_holds_one_long_signal_instead_of_panicking() {
    // 0.5 / hz seconds is past what a Duration holds: the flapping thread
    // panicked converting it, and the run ended in FAILURE.
    let mut c = config(300);
    c.pressure_hz = 1e-300;
    let r = run_ok(&c);
    assert!(r.flaps <= 1, "{r}");
}

#[test]
fn churn_and_reader_delays() {
    let mut c = config(1500);
    c.churn = true;
    c.reader_stalls = true;
    let r = run_ok(&c);
    assert!(r.churned_threads > 0, "{r}");
}

#[test]
fn synthetic_multi_node_topology_with_floods_and_pressure() {
    let mut c = config(1500);
    c.nodes = 4;
    c.cpus_per_node = 2;
    c.flood = true;
    c.qhimark = 500;
    c.pressure_hz = 100.0;
    let r = run_ok(&c);
    assert_eq!(r.stats.shards.len(), 8);
    assert!(
        r.stats.overload_events > 0 && r.stats.fast_mode_entries > 0,
        "{r}"
    );
}

#[test]
fn panicking_callbacks_are_caught_and_the_rest_run() {
    let mut c = config(1000);
    c.faults = vec![Fault::CallbackPanic];
    let r = run_ok(&c);
    assert!(r.panics_injected > 0, "{r}");
    assert_eq!(r.stats.callback_panics, r.panics_injected);
    assert_eq!(r.panic_hook_calls, r.panics_injected);
}

#[test]
fn failed_page_allocations_fall_back_to_synchronize() {
    let mut c = config(1000);
    c.faults = vec![Fault::PageAllocFailure];
    c.modes = vec![UpdateMode::Defer, UpdateMode::Call];
    let r = run_ok(&c);
    assert!(r.page_alloc_failures > 0, "{r}");
    assert_eq!(r.stats.fallback_syncs, r.page_alloc_failures);
}

#[test]
fn threads_exiting_with_queued_callbacks_lose_none() {
    let mut c = config(1000);
    c.faults = vec![Fault::ExitingThreads];
    c.churn = true;
    let r = run_ok(&c);
    assert!(r.exited_with_callbacks > 0 && r.churned_threads > 0, "{r}");
}

#[test]
fn a_reader_stalled_past_the_timeout_is_reported_and_nothing_is_freed_early() {
    let mut c = config(1000);
    c.faults = vec![Fault::ReaderStall];
    c.stall_timeout = Duration::from_millis(100);
    let r = run_ok(&c);
    assert!(r.stall_episodes > 0, "{r}");
    assert!(r.stats.stalls_reported >= 1, "{r}");
}

#[test]
fn everything_at_once() {
    let r = run_ok(&TortureConfig::everything(Duration::from_secs(3)));
    assert!(r.panics_injected > 0 && r.page_alloc_failures > 0, "{r}");
    assert!(r.exited_with_callbacks > 0 && r.stall_episodes > 0, "{r}");
}

#[test]
fn a_busted_rcu_fails() {
    let mut c = config(1000);
    c.busted = true;
    c.reader_stalls = true;
    let r = torture::run(&c).unwrap();
    assert!(!r.success(), "{r}");
    assert!(r.to_string().ends_with("End of test: FAILURE\n"), "{r}");
    assert!(
        r.reader_pipe[2..].iter().sum::<u64>() + r.mb_errors > 0,
        "{r}"
    );
}

#[test]
fn a_busted_rcu_fails_with_qsbr_readers() {
    let mut c = config(700);
    c.flavor = Some(Flavor::Qsbr);
    c.busted = true;
    c.reader_stalls = true;
    let r = torture::run(&c).unwrap();
    assert!(!r.success(), "{r}");
    assert!(
        r.reader_pipe[2..].iter().sum::<u64>() + r.mb_errors > 0,
        "{r}"
    );
}

#[test]
fn invalid_configs_name_the_field() {
    type Break = fn(&mut TortureConfig);
    let cases: [(Break, &str); 5] = [
        (|c| c.readers = 0, "readers"),
        (|c| c.modes.clear(), "modes"),
        (|c| c.qhimark = 5, "qhimark"),
        (|c| c.pressure_hz = -1.0, "pressure_hz"),
        (
            |c| {
                c.faults = vec![Fault::ReaderStall];
                c.duration = Duration::from_millis(100);
            },
            "stall",
        ),
    ];
    for (break_it, needle) in cases {
        let mut c = config(100);
        break_it(&mut c);
        let e = torture::run(&c).unwrap_err().to_string();
        assert!(e.contains(needle), "{needle}: {e}");
    }
}

/// Sets its flag when dropped, on a panic too: threads that loop until the
/// flag is set end however the test that made them ends.
struct StopOnDrop<'a>(&'a std::sync::atomic::AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Regression (found by `rcu-reclaim torture`, whose stalled readers went
/// unreported now and then): an expedited waiter counted 1024 yields between
/// stall checks, and on an oversubscribed CPU each yield can last a time
/// slice, so the stall ended before any check. It now reads the clock at
/// every yield. (Not in `misuse.rs`: its log-capturing stall test must be
/// the only one there to hit the stall warning.)
#[test]
fn an_expedited_wait_reports_a_stall_on_an_oversubscribed_machine() {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    let hogs: Vec<_> = (0..2 * cpus)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            })
        })
        .collect();
    let _stop = StopOnDrop(&stop);
    let rcu = Rcu::new(Config::new().stall_timeout(Duration::from_millis(50))).unwrap();
    for round in 1..=3 {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let r = rcu.clone();
        let reader = std::thread::spawn(move || {
            let _g = r.read_lock();
            ready_tx.send(()).unwrap();
            // Hold the section until the stall is reported (at least five
            // stall timeouts; more while the hogs keep the writer off the
            // CPU), so a loaded machine cannot end the wait unreported.
            let start = std::time::Instant::now();
            std::thread::sleep(Duration::from_millis(250));
            while r.stats().stalls_reported < round && start.elapsed() < Duration::from_secs(30) {
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        ready_rx.recv().unwrap();
        rcu.synchronize_expedited();
        reader.join().unwrap();
        assert_eq!(rcu.stats().stalls_reported, round);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for h in hogs {
        h.join().unwrap();
    }
}
