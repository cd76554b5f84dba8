//! `QsbrThread::synchronize` misused: the panic names the mistake, the fix
//! and the caller's line (not a line inside the library), and leaves the
//! registration online, as its type says.
//!
//! Its own test binary: the panic hook that records where a panic was
//! raised is process-wide.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};

use rcu_reclaim::{Config, Flavor, Rcu};

/// The panic hook is process-wide: the tests take turns.
static TURN: Mutex<()> = Mutex::new(());

/// Runs `f`, which must panic, and returns its message and the file of
/// the line the panic names.
fn panic_of(f: impl FnOnce()) -> (String, String) {
    let _turn = TURN.lock().unwrap_or_else(|p| p.into_inner());
    let file = Arc::new(Mutex::new(String::new()));
    let seen = file.clone();
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if let Some(at) = info.location() {
            *seen.lock().unwrap() = at.file().to_string();
        }
    }));
    let r = catch_unwind(AssertUnwindSafe(f));
    std::panic::set_hook(hook);
    let p = r.expect_err("the misuse did not panic");
    let msg = p
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    let file = file.lock().unwrap().clone();
    (msg, file)
}

fn qsbr() -> Rcu {
    Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap()
}

#[test]
fn a_second_online_registration_is_named_at_the_callers_line() {
    let rcu = qsbr();
    let mut a = rcu.register_qsbr_thread();
    let b = rcu.register_qsbr_thread();
    let (msg, file) = panic_of(|| a.synchronize());
    assert!(
        msg.contains("QsbrThread::synchronize()") && msg.contains("other QsbrThread"),
        "the message names the call and the other registration: {msg}"
    );
    // It must not advise the very call that panicked.
    assert!(!msg.contains("or use QsbrThread::synchronize()"), "{msg}");
    assert!(
        file.ends_with("qsbr_synchronize_misuse.rs"),
        "the panic names the caller's line, not {file}"
    );
    assert!(a.is_online());
    // With the other one offline, the same call waits and returns.
    let b = b.thread_offline();
    a.synchronize();
    assert!(a.is_online());
    drop(b);
}

#[test]
fn a_guard_section_on_a_qsbr_thread_is_named_at_the_callers_line() {
    let rcu = qsbr();
    let mut a = rcu.register_qsbr_thread();
    let guard = rcu.read_lock();
    let (msg, file) = panic_of(|| a.synchronize());
    assert!(
        msg.contains("QsbrThread::synchronize()") && msg.contains("Drop the ReadGuard"),
        "{msg}"
    );
    assert!(
        file.ends_with("qsbr_synchronize_misuse.rs"),
        "the panic names the caller's line, not {file}"
    );
    drop(guard);
    assert!(a.is_online(), "back online after the panic");
    a.synchronize();
}
