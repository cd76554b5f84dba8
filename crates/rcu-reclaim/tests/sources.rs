//! Pressure sources and the monitor.

mod common;

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use rcu_reclaim::sources::{
    Level, PressureMonitor, PressureSource, PsiTrigger, RssSource, SourceError, SyntheticSource,
};
use rcu_reclaim::{Config, Rcu};

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < Duration::from_secs(10), "timed out: {what}");
        thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn a_synthetic_source_drives_the_monitor_deterministically() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let (tx, source) = SyntheticSource::new();
    // The quiet window must outlast any gap between the events below that a
    // loaded machine makes (this thread descheduled across a 10 ms sleep):
    // with 100 ms, such a gap once in a while ended the episode early (3
    // runs in 40 on a loaded 2-core machine; once in 40 even with 1 s).
    let monitor = PressureMonitor::start(&rcu, Box::new(source), Duration::from_secs(2), None);
    assert_eq!(rcu.pressure(), 0);
    tx.send(Level::Medium).unwrap();
    wait_until("pressure raised", || rcu.pressure() == 1);
    assert!(rcu.in_fast_mode());
    // More events within the quiet window extend the same episode.
    for _ in 0..5 {
        tx.send(Level::Critical).unwrap();
        thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(rcu.pressure(), 1);
    wait_until("pressure ended after the quiet window", || {
        rcu.pressure() == 0
    });
    let s = monitor.stats();
    assert_eq!((s.events, s.critical, s.episodes), (6, 5, 1), "{s:?}");
    assert!(!s.active);
    tx.send(Level::Low).unwrap();
    wait_until("a second episode", || monitor.stats().episodes == 2);
    drop(monitor);
    assert_eq!(rcu.pressure(), 0, "dropping the monitor ends the signal");
}

struct Broken;

impl PressureSource for Broken {
    fn describe(&self) -> String {
        "broken".into()
    }
    fn wait(&mut self, _: Duration) -> Result<Option<Level>, SourceError> {
        Err(SourceError {
            file: "/nonexistent/memory.pressure".into(),
            reason: "gone".into(),
            fallback: None,
        })
    }
}

#[test]
fn a_failing_source_is_reported_and_retried_not_fatal() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let monitor = PressureMonitor::start(&rcu, Box::new(Broken), Duration::from_millis(5), None);
    wait_until("errors counted", || monitor.stats().errors >= 2);
    let e = monitor.stats().last_error.unwrap();
    assert!(
        e.contains("/nonexistent/memory.pressure") && e.contains("gone"),
        "{e}"
    );
    assert!(!e.contains("falling back"), "{e}");
}

#[test]
fn psi_trigger_errors_name_the_file() {
    let e = PsiTrigger::open(
        "/nonexistent/pressure",
        Duration::from_millis(100),
        Duration::from_secs(2),
    )
    .unwrap_err();
    assert!(e.to_string().starts_with("/nonexistent/pressure: "), "{e}");
    // A memory pressure file that does not exist names where they are.
    let e = PsiTrigger::open(
        "/nonexistent/memory.pressure",
        Duration::from_millis(100),
        Duration::from_secs(2),
    )
    .unwrap_err();
    assert!(
        e.reason
            .contains("no such file: give /proc/pressure/memory"),
        "{e}"
    );
    let e = PsiTrigger::open(
        "/proc/pressure/memory",
        Duration::from_secs(3),
        Duration::from_secs(2),
    )
    .unwrap_err();
    assert!(e.reason.contains("stall <= window"), "{e}");
}

#[test]
fn psi_trigger_on_this_machine_widens_a_refused_window() {
    let path = Path::new("/proc/pressure/memory");
    if !path.exists() {
        println!(
            "skipped: {} does not exist (kernel without PSI)",
            path.display()
        );
        return;
    }
    match PsiTrigger::open(path, Duration::from_millis(150), Duration::from_secs(1)) {
        Ok(mut t) => {
            // Accepted as asked, or widened to the nearest multiple of 2 s.
            assert!(t.window() == Duration::from_secs(1) || t.window() == Duration::from_secs(2));
            println!("using {}", t.describe());
            // No memory pressure here: a short wait times out.
            assert!(t.wait(Duration::from_millis(20)).is_ok());
        }
        Err(e) => println!("skipped: PSI triggers unavailable here: {e}"),
    }
}

#[test]
fn rss_source_compares_against_its_threshold() {
    let mut over = RssSource::new(1 << 20, Duration::from_millis(1));
    let rss = over.rss().unwrap();
    assert!(rss > 1 << 20);
    assert!(over.wait(Duration::from_millis(10)).unwrap().is_some());
    let mut under = RssSource::new(rss * 100, Duration::from_millis(1));
    assert_eq!(under.wait(Duration::from_millis(10)).unwrap(), None);
    assert!(under.describe().contains("/proc/self/statm"));
}

#[test]
fn cgroup_v2_reads_its_files_or_names_what_is_missing() {
    match rcu_reclaim::sources::CgroupV2::for_this_process() {
        Ok(cg) => {
            assert!(cg.current().unwrap() > 0);
            let _ = cg.max().unwrap();
            let _ = cg.events().unwrap();
            println!(
                "cgroup v2 at {}: limit {:?}",
                cg.dir().display(),
                cg.budget_limit().unwrap()
            );
        }
        Err(e) => {
            let msg = e.to_string();
            println!("skipped: no cgroup v2 memory controller here: {msg}");
            assert!(
                msg.contains("/proc/self/cgroup") || msg.contains("memory.current"),
                "{msg}"
            );
        }
    }
}

#[test]
fn auto_pressure_picks_a_source_and_reports_what_it_passed_over() {
    let monitor = rcu_reclaim::sources::auto_pressure(1 << 40);
    let s = monitor.stats();
    println!("source: {}; passed over: {:?}", s.source, s.passed_over);
    assert!(!s.source.is_empty());
    if Path::new("/proc/pressure/memory").exists() && s.source.starts_with("PSI") {
        // A PSI source reports the averages at each quiet tick.
        wait_until("PSI figures", || monitor.stats().psi.is_some());
    } else {
        assert!(
            !s.passed_over.is_empty(),
            "a fallback was chosen, so something was passed over"
        );
    }
}

#[test]
fn a_budget_from_this_processs_cgroup_or_a_clear_error() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let r = std::sync::Arc::new(rcu_reclaim::reclaim::Reclaimer::new(&rcu));
    match rcu_reclaim::sources::budget_from_cgroup(r) {
        Ok(b) => println!("budget from the cgroup: {} bytes", b.limit()),
        Err(e) => {
            let msg = e.to_string();
            println!("no cgroup limit here: {msg}");
            assert!(msg.contains("memory"), "{msg}");
            // What `CgroupV2::open` tells a caller who gave it a directory
            // ("give one") is no advice for a call that takes none.
            assert!(
                !msg.contains("give one") && !msg.contains("give a cgroup"),
                "{msg}"
            );
        }
    }
}

/// cgroup v2 `memory.events` watching, on a directory of fake files (this
/// machine has no v2 memory controller; the parsing and the counting are
/// what is tested).
#[test]
fn cgroup_v2_events_turn_counter_increases_into_levels() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("fake-cgroup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |high: u64, max: u64| {
        std::fs::write(
            dir.join("memory.events"),
            format!("low 0\nhigh {high}\nmax {max}\noom 0\noom_kill 0\n"),
        )
        .unwrap()
    };
    std::fs::write(dir.join("memory.current"), "1000\n").unwrap();
    std::fs::write(dir.join("memory.max"), "max\n").unwrap();
    std::fs::write(dir.join("memory.high"), "2000\n").unwrap();
    write(0, 0);
    let cg = rcu_reclaim::sources::CgroupV2::open(&dir).unwrap();
    assert_eq!(cg.current().unwrap(), 1000);
    assert_eq!(cg.budget_limit().unwrap(), Some(2000));
    let mut src = rcu_reclaim::sources::CgroupV2Events::new(cg, Duration::from_millis(1)).unwrap();
    assert_eq!(src.wait(Duration::from_millis(5)).unwrap(), None);
    write(3, 0);
    assert_eq!(
        src.wait(Duration::from_millis(50)).unwrap(),
        Some(Level::Medium)
    );
    write(3, 1);
    assert_eq!(
        src.wait(Duration::from_millis(50)).unwrap(),
        Some(Level::Critical)
    );
    assert_eq!(src.wait(Duration::from_millis(5)).unwrap(), None);
    std::fs::write(dir.join("memory.events"), "high nope\n").unwrap();
    let e = src.wait(Duration::from_millis(50)).unwrap_err();
    assert!(e.to_string().contains("memory.events"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A source that fails on every call, or returns at once without waiting:
/// the monitor backs off (failures) and keeps to its tick (returns), where
/// it used to retry in a loop (923 warnings a second at a 1 ms tick; 76 M
/// calls a second for a source that never waits).
#[test]
fn a_monitor_backs_off_a_failing_source_and_never_spins_on_a_hasty_one() {
    use rcu_reclaim::sources::{Level, PressureMonitor, PressureSource, SourceError};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    struct Counted {
        calls: Arc<AtomicU64>,
        fail: bool,
    }
    impl PressureSource for Counted {
        fn describe(&self) -> String {
            "counted".into()
        }
        fn wait(&mut self, _: Duration) -> Result<Option<Level>, SourceError> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            if self.fail {
                Err(SourceError {
                    file: "/nonexistent".into(),
                    reason: "always fails".into(),
                    fallback: None,
                })
            } else {
                Ok(None)
            }
        }
    }
    let rcu = Rcu::new(Config::new()).unwrap();
    for fail in [true, false] {
        let calls = Arc::new(AtomicU64::new(0));
        let source = Counted {
            calls: calls.clone(),
            fail,
        };
        // A 1 ms quiet time: a 1 ms tick.
        let began = Instant::now();
        let monitor =
            PressureMonitor::start(&rcu, Box::new(source), Duration::from_millis(1), None);
        thread::sleep(Duration::from_millis(500));
        let start = Instant::now();
        drop(monitor);
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "drop waited out a backoff"
        );
        let n = calls.load(Ordering::Relaxed);
        // The monitor ran for `ran`: 0.5 s, or longer where this thread's
        // sleep overran on a loaded machine (a fixed bound of 600 calls
        // then counted ticks that the 0.5 s did not allow for).
        let ran = began.elapsed().as_millis() as u64;
        // Failing: 1, 2, 4, ... ms apart (at most 2 s), about ten calls in
        // 0.5 s; hasty: at most one per 1 ms tick.
        let most = if fail { 30 + ran / 2000 } else { ran + 2 };
        assert!(n <= most, "fail {fail}: {n} calls in {ran} ms");
        assert!(n >= 2, "fail {fail}: the source was not polled ({n})");
    }
}

#[test]
fn a_psi_window_beyond_the_kernels_limit_is_an_error_not_an_overflow() {
    for window in [
        Duration::from_secs(11),
        Duration::from_secs(60),
        Duration::MAX,
    ] {
        let e = PsiTrigger::open("/proc/pressure/memory", Duration::from_secs(1), window)
            .expect_err("refused");
        assert!(e.reason.contains("500 ms to 10 s"), "{window:?}: {e}");
    }
}

/// A path naming a regular file (a wrong path, a copy) is refused before
/// anything is written to it.
#[test]
fn a_regular_file_is_no_pressure_source_and_is_left_untouched() {
    use rcu_reclaim::sources::CgroupV1Source;
    let dir = std::env::temp_dir().join(format!("rcu-reclaim-fake-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let psi = dir.join("memory");
    std::fs::write(&psi, "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n").unwrap();
    for name in ["memory.pressure_level", "cgroup.event_control"] {
        std::fs::write(dir.join(name), "original\n").unwrap();
    }
    let e = PsiTrigger::open(&psi, Duration::from_millis(500), Duration::from_secs(2))
        .expect_err("a regular file accepted as a PSI file");
    assert!(e.reason.contains("not a file of /proc"), "{e}");
    let e = CgroupV1Source::open(&dir).expect_err("a plain directory accepted as a cgroup");
    assert!(
        e.reason.contains("not a file of a cgroup file system"),
        "{e}"
    );
    assert!(std::fs::read_to_string(&psi)
        .unwrap()
        .starts_with("some avg10"));
    assert_eq!(
        std::fs::read_to_string(dir.join("cgroup.event_control")).unwrap(),
        "original\n"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A child forked while a monitor holds a pressure signal has no monitor
/// thread: dropping the monitor there neither panics nor hangs (it used to
/// join a thread that does not exist, and panic), and it ends the signal
/// the monitor held, which otherwise kept the child in fast mode forever.
#[test]
fn dropping_a_monitor_in_a_forked_child_ends_its_signal_without_panicking() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let (tx, source) = SyntheticSource::new();
    let monitor = PressureMonitor::start(&rcu, Box::new(source), Duration::from_secs(60), None);
    tx.send(Level::Critical).unwrap();
    wait_until("the monitor holds a signal", || rcu.pressure() == 1);
    let code = common::in_forked_child(&rcu, || {
        let held = rcu.pressure();
        drop(monitor);
        println!(
            "child: pressure {held} before the drop, {} after",
            rcu.pressure()
        );
        held == 1 && rcu.pressure() == 0
    });
    assert_eq!(code, 0, "the child failed (see its output)");
    drop(tx);
}

/// A monitor whose thread cannot be started (the user's process limit is
/// reached) says so in its stats instead of looking like a quiet one.
/// Needs root, to switch the forked child to an unprivileged user (root
/// ignores RLIMIT_NPROC).
#[test]
fn a_monitor_that_cannot_start_its_thread_reports_why() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("skipped: needs root to run a child as an unprivileged user under RLIMIT_NPROC");
        return;
    }
    let rcu = Rcu::new(Config::new()).unwrap();
    let code = common::in_forked_child(&rcu, || {
        let limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: plain system calls on this (single-threaded) child.
        let dropped = unsafe {
            libc::setgid(65534) == 0
                && libc::setuid(65534) == 0
                && libc::setrlimit(libc::RLIMIT_NPROC, &limit) == 0
        };
        if !dropped || thread::Builder::new().spawn(|| ()).is_ok() {
            println!("child: could not make thread creation fail; nothing to check");
            return true;
        }
        let (_tx, source) = SyntheticSource::new();
        let monitor = PressureMonitor::start(&rcu, Box::new(source), Duration::from_secs(1), None);
        let s = monitor.stats();
        println!("child: {s:?}");
        s.errors == 1
            && s.last_error
                .is_some_and(|e| e.contains("cannot start the monitor thread"))
    });
    assert_eq!(code, 0, "the child failed (see its output)");
}

/// A PSI trigger is written into the file it opens: any file but a memory
/// pressure file is refused before anything is written (a cgroup v1
/// `memory.force_empty` given by mistake emptied the cgroup's page cache,
/// and the open succeeded).
#[test]
fn a_psi_trigger_is_written_into_memory_pressure_files_alone() {
    use rcu_reclaim::sources::PsiTrigger;
    let dir = std::env::temp_dir().join(format!("rcu-reclaim-psi-names-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for name in [
        "memory.force_empty",
        "cgroup.event_control",
        "statm",
        "pressure",
    ] {
        let path = dir.join(name);
        std::fs::write(&path, "original\n").unwrap();
        let e = PsiTrigger::open(&path, Duration::from_millis(500), Duration::from_secs(2))
            .err()
            .unwrap_or_else(|| panic!("{name} accepted"));
        assert!(e.reason.contains("not a memory pressure file"), "{e}");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "original\n",
            "{name} written"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
    // The file of the report, in a real (empty) cgroup v1 memory cgroup,
    // where the old checks let it through: root and a v1 hierarchy only.
    let cg = Path::new("/sys/fs/cgroup/memory")
        .join(format!("rcu-reclaim-psi-names-{}", std::process::id()));
    if std::fs::create_dir(&cg).is_err() {
        println!("skipped the cgroup file: no cgroup v1 memory hierarchy, or not root");
        return;
    }
    let e = PsiTrigger::open(
        cg.join("memory.force_empty"),
        Duration::from_millis(500),
        Duration::from_secs(2),
    )
    .err();
    std::fs::remove_dir(&cg).unwrap();
    let e = e.expect("memory.force_empty accepted as a PSI file");
    assert!(e.reason.contains("not a memory pressure file"), "{e}");
}

/// The kernel's CPU, I/O and IRQ pressure files take PSI triggers too, but
/// their stalls are not memory pressure: refused, naming the right files.
#[test]
fn a_psi_trigger_on_another_resource_is_refused() {
    use rcu_reclaim::sources::PsiTrigger;
    for path in [
        "/proc/pressure/cpu",
        "/proc/pressure/io",
        "/sys/fs/cgroup/x/io.pressure",
    ] {
        let e = PsiTrigger::open(path, Duration::from_millis(500), Duration::from_secs(2))
            .err()
            .unwrap_or_else(|| panic!("{path} accepted"));
        assert!(e.reason.contains("another resource"), "{e}");
        assert!(e.reason.contains("/proc/pressure/memory"), "{e}");
    }
}

/// An unprivileged process refused a pressure file is told who may
/// register notifications, not only "permission denied".
#[test]
fn a_refused_pressure_file_says_who_may_register() {
    use rcu_reclaim::sources::{CgroupV1Source, PsiTrigger};
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("skipped: needs root to run a child as an unprivileged user");
        return;
    }
    let v1 = std::path::Path::new("/sys/fs/cgroup/memory/memory.pressure_level").exists();
    let psi = std::path::Path::new("/proc/pressure/memory").exists();
    if !v1 && !psi {
        println!("skipped: neither a cgroup v1 memory controller nor PSI here");
        return;
    }
    let rcu = Rcu::new(Config::new()).unwrap();
    let code = common::in_forked_child(&rcu, || {
        // SAFETY: plain system calls on this (single-threaded) child.
        if unsafe { libc::setgid(65534) != 0 || libc::setuid(65534) != 0 } {
            println!("child: could not drop privileges; nothing to check");
            return true;
        }
        let says_who = |e: &rcu_reclaim::sources::SourceError| {
            println!("child: {e}");
            !e.reason.contains("Permission denied") || e.reason.contains("run as root")
        };
        let v1_ok = !v1
            || CgroupV1Source::open("/sys/fs/cgroup/memory")
                .err()
                .is_none_or(|e| says_who(&e));
        let psi_ok = !psi
            || PsiTrigger::open(
                "/proc/pressure/memory",
                Duration::from_millis(500),
                Duration::from_secs(2),
            )
            .err()
            .is_none_or(|e| says_who(&e));
        v1_ok && psi_ok
    });
    assert_eq!(code, 0, "the child failed (see its output)");
}

/// A cgroup v2 path that is missing or names a file is reported as such,
/// not as a directory without the memory controller.
#[test]
fn a_cgroup_v2_path_that_is_no_directory_is_named_as_such() {
    use rcu_reclaim::sources::CgroupV2;
    let file = std::env::temp_dir().join(format!("rcu-reclaim-v2-file-{}", std::process::id()));
    std::fs::write(&file, "not a cgroup\n").unwrap();
    let e = CgroupV2::open(&file).unwrap_err();
    assert!(e.reason.contains("is not a directory"), "{e}");
    std::fs::remove_file(&file).unwrap();
    let e = CgroupV2::open("/nonexistent/cgroup").unwrap_err();
    assert!(e.reason.contains("does not exist"), "{e}");
    // An existing directory that is no cgroup.
    let e = CgroupV2::open(std::env::temp_dir()).unwrap_err();
    assert!(e.reason.contains("is not a cgroup v2 directory"), "{e}");
    // A cgroup (it has cgroup.controllers) without the file: no memory
    // controller.
    let dir = std::env::temp_dir().join(format!("rcu-reclaim-v2-dir-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("cgroup.controllers"), "cpu io\n").unwrap();
    let e = CgroupV2::open(&dir).unwrap_err();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(e.reason.contains("memory controller is not enabled"), "{e}");
}

/// Its first `wait` says critical, its second panics, the rest are quiet.
struct PanicsOnce(u32);

impl PressureSource for PanicsOnce {
    fn describe(&self) -> String {
        "panics-once".into()
    }
    fn wait(&mut self, timeout: Duration) -> Result<Option<Level>, SourceError> {
        self.0 += 1;
        match self.0 {
            1 => Ok(Some(Level::Critical)),
            2 => panic!("the source fails"),
            _ => {
                thread::sleep(timeout);
                Ok(None)
            }
        }
    }
}

#[test]
fn a_source_that_panics_is_a_failing_source_and_its_signal_ends() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let monitor = PressureMonitor::start(
        &rcu,
        Box::new(PanicsOnce(0)),
        Duration::from_millis(20),
        None,
    );
    // The panic neither ends the monitor's thread with the signal held
    // (the domain under pressure for the monitor's lifetime) nor goes
    // unreported.
    wait_until("the signal ends after the source panicked", || {
        let s = monitor.stats();
        s.episodes == 1 && !s.active && rcu.pressure() == 0
    });
    let s = monitor.stats();
    assert_eq!(s.errors, 1, "{s:?}");
    let e = s.last_error.unwrap();
    assert!(
        e.contains("panics-once") && e.contains("the source fails"),
        "{e}"
    );
}

#[test]
fn a_budget_usage_that_panics_on_an_event_leaves_the_monitor_watching() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use rcu_reclaim::reclaim::{MemoryBudget, Reclaimer};

    let rcu = Rcu::new(Config::new()).unwrap();
    let panicked = AtomicBool::new(false);
    // Over `min` (the event's check reclaims directly), and its first call
    // on the monitor's thread panics.
    let budget = Arc::new(MemoryBudget::new(
        1 << 20,
        Arc::new(Reclaimer::new(&rcu)),
        move || {
            if thread::current().name() == Some("rcu-pressure")
                && !panicked.swap(true, Ordering::SeqCst)
            {
                panic!("the usage function fails");
            }
            0
        },
    ));
    let (tx, source) = SyntheticSource::new();
    let monitor = PressureMonitor::start(
        &rcu,
        Box::new(source),
        Duration::from_millis(20),
        Some(budget),
    );
    tx.send(Level::Medium).unwrap();
    wait_until("the panic is reported", || monitor.stats().errors == 1);
    assert!(monitor
        .stats()
        .last_error
        .unwrap()
        .contains("the usage function fails"));
    wait_until("the first signal ends", || rcu.pressure() == 0);
    // Still watching: the next event raises the signal again.
    tx.send(Level::Medium).unwrap();
    wait_until("a second episode", || monitor.stats().episodes == 2);
    wait_until("the second signal ends", || rcu.pressure() == 0);
}

/// A monitor dropped where its thread cannot be joined (in a callback, as
/// when it belongs to a value freed through RCU) still ends its pressure
/// signal before the drop returns: no signal outlives its monitor.
#[test]
fn a_monitor_dropped_in_a_callback_ends_its_signal_at_once() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let (tx, source) = SyntheticSource::new();
    let monitor = PressureMonitor::start(&rcu, Box::new(source), Duration::from_secs(60), None);
    tx.send(Level::Critical).unwrap();
    wait_until("pressure raised", || rcu.pressure() == 1);
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let r = rcu.clone();
    rcu.call(move || {
        drop(monitor);
        done_tx.send(r.pressure()).unwrap();
    });
    rcu.barrier();
    assert_eq!(
        done_rx.recv().unwrap(),
        0,
        "the signal outlived the monitor's drop"
    );
    drop(tx);
}

/// A usage file that reads "max" (or a count no machine holds) is a limit
/// file given by mistake: an error naming the file and the right one.
/// Before: a usage of `usize::MAX`, critical pressure on every poll, and
/// no error.
#[test]
fn a_usage_file_that_reads_unlimited_is_an_error() {
    use rcu_reclaim::sources::CgroupUsageSource;
    let dir = std::env::temp_dir().join(format!("rcu-reclaim-usage-max-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for text in ["max\n", "9223372036854771712\n", "123456789012345678901\n"] {
        let file = dir.join("memory.current");
        std::fs::write(&file, text).unwrap();
        let src = CgroupUsageSource::new(&file, 1 << 20, Duration::ZERO);
        let e = src
            .usage()
            .err()
            .unwrap_or_else(|| panic!("{text:?} read as a usage"));
        assert!(e.file.ends_with("memory.current"), "{e}");
        assert!(e.reason.contains("not a usage"), "{e}");
    }
    std::fs::write(dir.join("memory.current"), "4096\n").unwrap();
    let src = CgroupUsageSource::new(dir.join("memory.current"), 1 << 20, Duration::ZERO);
    assert_eq!(src.usage().unwrap(), 4096);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A limit of 0 bytes would put every usage over it: refused, naming the
/// fix.
#[test]
#[should_panic(expected = "CgroupUsageSource::new with a limit of 0 bytes")]
fn a_usage_source_with_a_limit_of_zero_is_refused() {
    let _ = rcu_reclaim::sources::CgroupUsageSource::new("/nonexistent", 0, Duration::ZERO);
}

/// A level prints as the kernel names it (and as `serde` writes it), for
/// a program that logs the events its own source reports.
#[test]
fn a_level_displays_as_the_kernel_and_serde_name_it() {
    for (level, name) in [
        (Level::Low, "low"),
        (Level::Medium, "medium"),
        (Level::Critical, "critical"),
    ] {
        assert_eq!(level.to_string(), name);
        assert_eq!(
            serde_json::to_string(&level).unwrap(),
            format!("\"{name}\"")
        );
    }
}

/// A source of the caller's that holds a handle of its domain is dropped
/// before the monitor's drop returns, as when that drop joined the
/// thread: the caller's handle is then the last, and dropping it runs the
/// domain's callbacks. The monitor's drop returned before its thread had
/// dropped the source (for the PSI trigger's 10-20 ms close): the source's
/// handle was the last one, let go later on the monitor's thread, and the
/// callback had not run when the caller's "last" handle was dropped.
#[test]
fn a_source_that_holds_its_domain_is_dropped_before_the_monitor_drop_returns() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    /// Reads the domain it serves; closing what it watches takes a while
    /// (as a PSI trigger's close takes the kernel 10-20 ms).
    struct OfTheDomain {
        _rcu: Rcu,
    }
    impl PressureSource for OfTheDomain {
        fn describe(&self) -> String {
            "of the domain".into()
        }
        fn wait(&mut self, timeout: Duration) -> Result<Option<Level>, SourceError> {
            thread::sleep(timeout.min(Duration::from_millis(1)));
            Ok(None)
        }
    }
    impl Drop for OfTheDomain {
        fn drop(&mut self) {
            thread::sleep(Duration::from_millis(50));
        }
    }
    let rcu = Rcu::new(Config::new()).unwrap();
    let monitor = PressureMonitor::start(
        &rcu,
        Box::new(OfTheDomain { _rcu: rcu.clone() }),
        Duration::from_millis(5),
        None,
    );
    let ran = Arc::new(AtomicBool::new(false));
    let flag = ran.clone();
    rcu.call(move || flag.store(true, Ordering::SeqCst));
    thread::sleep(Duration::from_millis(10));
    drop(monitor);
    // The last handle: its drop runs what is queued before returning.
    drop(rcu);
    assert!(
        ran.load(Ordering::SeqCst),
        "the domain's last handle was the source's, still held by the monitor's thread"
    );
}

/// A source of the caller's whose `describe` and (hidden) `wake_also_on`
/// panic still gets a monitor, which starts, names it as best it can and
/// stops when dropped (the start panicked before).
#[test]
fn a_source_that_panics_when_described_or_given_a_waker_is_still_monitored() {
    struct Rude;
    impl PressureSource for Rude {
        fn describe(&self) -> String {
            panic!("no description")
        }
        fn wait(&mut self, timeout: Duration) -> Result<Option<Level>, SourceError> {
            std::thread::sleep(timeout.min(Duration::from_millis(5)));
            Ok(None)
        }
        fn wake_also_on(&mut self, _: Option<std::os::fd::RawFd>) -> bool {
            panic!("no waker")
        }
    }
    let rcu = Rcu::new(Config::new()).unwrap();
    let monitor = PressureMonitor::start(&rcu, Box::new(Rude), Duration::from_millis(10), None);
    assert!(
        monitor.stats().source.contains("describe() panicked"),
        "{}",
        monitor.stats().source
    );
    drop(monitor);
}

/// A source that waits in `poll(2)` on the monitor's waker, as the
/// library's own do, and whose close takes 1.5 s (the kernel closing a
/// PSI trigger on a busy machine, say).
struct SlowToClose {
    also: Option<std::os::fd::RawFd>,
}

impl PressureSource for SlowToClose {
    fn describe(&self) -> String {
        "slow to close".into()
    }

    fn wait(&mut self, timeout: Duration) -> Result<Option<Level>, SourceError> {
        let ms = timeout.as_millis().min(1000) as libc::c_int;
        let mut fds: Vec<libc::pollfd> = self
            .also
            .iter()
            .map(|&fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: `fds` is a valid array of `fds.len()` pollfds; the
        // monitor keeps the waker open while this source may poll it.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        Ok(None)
    }

    fn wake_also_on(&mut self, fd: Option<std::os::fd::RawFd>) -> bool {
        self.also = fd;
        true
    }
}

impl Drop for SlowToClose {
    fn drop(&mut self) {
        thread::sleep(Duration::from_millis(1500));
    }
}

/// A monitor's drop that waits past its bound only because other dropped
/// monitors' threads are still closing their sources says that, not that
/// the program's code holds the thread (before, its warning blamed a
/// shrinker, the OOM handler or a lock the dropping thread holds).
#[test]
fn a_drop_held_by_slow_closes_says_so() {
    let captured = common::Captured::default();
    let _log = captured.on_this_thread();
    let rcu = Rcu::new(Config::new()).unwrap();
    // More monitors than may be left closing: the last drops wait.
    for _ in 0..6 {
        let source = SlowToClose { also: None };
        let monitor =
            PressureMonitor::start(&rcu, Box::new(source), Duration::from_millis(100), None);
        drop(monitor);
    }
    let text = captured.text();
    assert!(
        text.contains("to close its pressure source") && text.contains("other monitors' threads"),
        "no report naming the closes: {text:?}"
    );
    assert!(!text.contains("still running the program's code"), "{text}");
}
