//! Misuse is a clear panic or report, never a hang.

use std::io::Write;
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::Duration;

use rcu_reclaim::{Config, Rcu, RcuCell};

#[test]
#[should_panic(expected = "synchronize() called inside a read-side critical section")]
fn synchronize_inside_a_section_panics() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let _g = rcu.read_lock();
    rcu.synchronize();
}

#[test]
#[should_panic(expected = "synchronize_expedited() called inside a read-side critical section")]
fn synchronize_expedited_inside_a_section_panics() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let _g = rcu.read_lock();
    let _nested = rcu.read_lock();
    rcu.synchronize_expedited();
}

#[test]
#[should_panic(expected = "cond_synchronize() called inside a read-side critical section")]
fn cond_synchronize_inside_a_section_panics() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let c = rcu.get_state();
    let _g = rcu.read_lock();
    rcu.cond_synchronize(c);
}

#[test]
#[should_panic(expected = "RcuCell::store_sync() called inside a read-side critical section")]
fn store_sync_inside_a_section_panics() {
    let cell = RcuCell::new(1);
    let _g = cell.domain().read_lock();
    cell.store_sync(Box::new(2));
}

#[test]
#[should_panic(expected = "Retired value was dropped inside a read-side section")]
fn dropping_retired_inside_a_section_panics() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let cell = RcuCell::new_in(&rcu, Some(Box::new(1)));
    let _g = rcu.read_lock();
    drop(cell.replace(Box::new(2)));
}

#[test]
#[should_panic(expected = "ReadGuard of domain")]
fn loading_with_another_domains_guard_panics() {
    let a = Rcu::new(Config::new()).unwrap();
    let b = Rcu::new(Config::new()).unwrap();
    let cell = RcuCell::new_in(&a, Some(Box::new(1)));
    let g = b.read_lock();
    let _ = cell.load(&g);
}

#[test]
#[should_panic(expected = "Cookie of domain")]
fn polling_another_domains_cookie_panics() {
    let a = Rcu::new(Config::new()).unwrap();
    let b = Rcu::new(Config::new()).unwrap();
    let c = a.get_state();
    b.poll(&c);
}

/// The panic leaves the domain usable: the section still ends on unwind.
#[test]
fn domain_works_after_a_misuse_panic() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let r = rcu.clone();
    let res = thread::spawn(move || {
        let _g = r.read_lock();
        r.synchronize();
    })
    .join();
    assert!(res.is_err());
    rcu.synchronize();
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_stalled_reader_is_reported_once_with_its_thread_name() {
    let captured = Captured::default();
    let sink = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);

    let rcu = Rcu::new(Config::new().stall_timeout(Duration::from_millis(100))).unwrap();
    let (ready_tx, ready_rx) = mpsc::channel();
    let r = rcu.clone();
    let reader = thread::Builder::new()
        .name("slow-reader".into())
        .spawn(move || {
            let _g = r.read_lock();
            ready_tx.send(()).unwrap();
            thread::sleep(Duration::from_millis(600));
        })
        .unwrap();
    ready_rx.recv().unwrap();
    rcu.synchronize(); // waits ~600 ms: one stall, reported once
    reader.join().unwrap();

    let stats = rcu.stats();
    assert_eq!(stats.stalls_reported, 1, "{stats:?}");
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert_eq!(log.matches("reader stall").count(), 1, "{log}");
    assert!(log.contains("slow-reader"), "{log}");

    // An expedited grace period (never parks) reports stalls too.
    let (ready_tx, ready_rx) = mpsc::channel();
    let r = rcu.clone();
    let reader = thread::Builder::new()
        .name("slow-reader-2".into())
        .spawn(move || {
            let _g = r.read_lock();
            ready_tx.send(()).unwrap();
            thread::sleep(Duration::from_millis(400));
        })
        .unwrap();
    ready_rx.recv().unwrap();
    rcu.synchronize_expedited();
    reader.join().unwrap();
    assert_eq!(rcu.stats().stalls_reported, 2);
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(log.contains("slow-reader-2"), "{log}");
}

#[test]
fn a_short_reader_is_not_reported() {
    let rcu = Rcu::new(Config::new().stall_timeout(Duration::from_secs(5))).unwrap();
    let r = rcu.clone();
    let (tx, rx) = mpsc::channel();
    let h = thread::spawn(move || {
        let _g = r.read_lock();
        tx.send(()).unwrap();
        thread::sleep(Duration::from_millis(50));
    });
    rx.recv().unwrap();
    rcu.synchronize();
    h.join().unwrap();
    assert_eq!(rcu.stats().stalls_reported, 0);
}
