//! `QsbrThread::synchronize` misused: the panic names the mistake, the fix
//! and the caller's line (not a line inside the library), and leaves the
//! registration online, as its type says.
//!
//! Its own test binary: the panic hook that records where a panic was
//! raised is process-wide (`common::panic_site`).

use rcu_reclaim::{Config, Flavor, Rcu};

mod common;

fn qsbr() -> Rcu {
    Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap()
}

#[test]
fn a_second_online_registration_is_named_at_the_callers_line() {
    let rcu = qsbr();
    let mut a = rcu.register_qsbr_thread();
    let b = rcu.register_qsbr_thread();
    let (msg, file, _) = common::panic_site(|| a.synchronize());
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
    let (msg, file, _) = common::panic_site(|| a.synchronize());
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

/// `Rcu::synchronize` inside one registration's `offline_while` while a
/// second registration of the thread is online: the panic says that one is
/// still online, not only the `offline_while` advice already followed.
#[test]
fn a_wait_inside_offline_while_names_the_registration_still_online() {
    let rcu = qsbr();
    let mut a = rcu.register_qsbr_thread();
    let b = rcu.register_qsbr_thread();
    let (msg, _, _) = common::panic_site(|| a.offline_while(|| rcu.synchronize()));
    assert!(
        msg.contains("another registration's offline_while, this one is still online"),
        "{msg}"
    );
    let (msg, _, _) = common::panic_site(|| rcu.synchronize());
    assert!(
        msg.contains("2 QsbrThread registrations of this thread are online"),
        "{msg}"
    );
    drop(b);
    a.offline_while(|| rcu.synchronize());
}
