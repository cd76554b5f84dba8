//! `Rcu::in_read_section()` in a signal handler while its thread changes
//! its registrations: a handler that landed inside that bookkeeping (a
//! thread-local list borrowed mutably) panicked on its `borrow()` ("RefCell
//! already mutably borrowed"), and the panic, which cannot unwind out of
//! an `extern "C"` handler, aborted the process. Two windows: a QSBR
//! registration going offline and online (the list of online
//! registrations; 5 of 5 runs aborted within 0.3 s before the fix), and a
//! thread alternating sections between two domains (its list of
//! registrations, looked up on each miss of its one-domain cache; 3 of 3
//! runs aborted). `PROBE_SECS` (default 2) per test.
//!
//! Its own test binary: the handler is process-wide.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use rcu_reclaim::{Config, Flavor, Rcu};

static RCU: std::sync::OnceLock<Rcu> = std::sync::OnceLock::new();
static HANDLED: AtomicU64 = AtomicU64::new(0);

fn rcu() -> &'static Rcu {
    RCU.get_or_init(|| Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap())
}

extern "C" fn handler(_: libc::c_int) {
    let _ = std::hint::black_box(rcu().in_read_section());
    HANDLED.fetch_add(1, Ordering::Relaxed);
}

/// Runs `step` in a loop on a thread (after `setup`, before any signal)
/// while another thread sends it `SIGUSR1` over and over, for
/// `PROBE_SECS`; returns how many steps ran and signals were handled.
fn under_signals<S: 'static>(
    setup: impl FnOnce() -> S + Send + 'static,
    mut step: impl FnMut(&mut S) + Send + 'static,
) -> (u64, u64) {
    rcu();
    // SAFETY: a zeroed sigaction with only the handler set is valid; the
    // handler only asks whether its thread is in a section, and counts.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = handler as extern "C" fn(libc::c_int) as usize;
        libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut());
    }
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let s2 = stop.clone();
    let worker = thread::spawn(move || {
        let mut state = setup();
        // Touches this thread's registrations before any signal lands.
        let _ = rcu().in_read_section();
        // SAFETY: pthread_self has no precondition.
        tx.send(unsafe { libc::pthread_self() }).unwrap();
        let mut steps = 0u64;
        while !s2.load(Ordering::Relaxed) {
            step(&mut state);
            steps += 1;
        }
        steps
    });
    let tid = rx.recv().unwrap();
    let s3 = stop.clone();
    let before = HANDLED.load(Ordering::Relaxed);
    let signaler = thread::spawn(move || {
        while !s3.load(Ordering::Relaxed) {
            // SAFETY: the worker outlives this thread (joined after it).
            unsafe { libc::pthread_kill(tid, libc::SIGUSR1) };
            for _ in 0..100 {
                std::hint::spin_loop();
            }
        }
    });
    let secs = std::env::var("PROBE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    signaler.join().unwrap();
    let steps = worker.join().unwrap();
    (steps, HANDLED.load(Ordering::Relaxed) - before)
}

#[test]
fn a_handler_asks_while_its_thread_changes_its_registrations() {
    a_handler_asks_while_its_thread_goes_offline_and_online();
    a_handler_asks_while_its_thread_alternates_between_two_domains();
}

fn a_handler_asks_while_its_thread_goes_offline_and_online() {
    let (steps, handled) = under_signals(
        || Some(rcu().register_qsbr_thread()),
        |t| {
            let off = t.take().unwrap().thread_offline();
            let mut on = off.thread_online();
            on.quiescent_state();
            *t = Some(on);
        },
    );
    eprintln!("{steps} flips, {handled} signals handled");
    assert!(
        steps > 0 && handled > 0,
        "no signal landed during the flips"
    );
}

/// Run after the test above, not beside it: one worker at a time gets
/// the signals (and the CPUs).
fn a_handler_asks_while_its_thread_alternates_between_two_domains() {
    let (steps, handled) = under_signals(
        || {
            let other = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
            drop(rcu().read_lock());
            drop(other.read_lock());
            other
        },
        |other| {
            // Each read_lock misses the one-domain cache and looks its
            // registration up in the list.
            drop(rcu().read_lock());
            drop(other.read_lock());
        },
    );
    eprintln!("{steps} alternations, {handled} signals handled");
    assert!(
        steps > 0 && handled > 0,
        "no signal landed during the alternations"
    );
}
