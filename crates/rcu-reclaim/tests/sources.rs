//! Pressure sources and the monitor.

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use rcu_reclaim::{
    Config, Level, PressureMonitor, PressureSource, PsiTrigger, Rcu, RssSource, SourceError,
    SyntheticSource,
};

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
    let monitor = PressureMonitor::start(&rcu, Box::new(source), Duration::from_millis(100), None);
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
    assert!(e.contains("no fallback"), "{e}");
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
