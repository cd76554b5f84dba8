//! `rcu_register_thread` calls the drop-ins ignored (the thread was
//! registered already; liburcu asserts), so that the `rcu_unregister_thread`
//! that pairs with each is ignored too. A callback that registers the
//! call_rcu thread and then unregisters it otherwise unregistered that
//! thread itself, and grace periods stopped waiting for the inlined
//! sections of the callbacks after it.

use std::cell::Cell;

std::thread_local! {
    /// Registrations ignored on this thread and not yet paired with an
    /// unregistration. No destructor (usable from signal handlers and
    /// other thread-locals' destructors).
    static IGNORED: Cell<u32> = const { Cell::new(0) };
}

/// Records that `rcu_register_thread` was ignored on this thread.
///
/// ```
/// use rcu_reclaim_urcu_common::ignored_registrations::{ignored, take_one};
/// ignored();
/// assert!(take_one()); // the unregistration that pairs with it
/// assert!(!take_one()); // a real one
/// ```
pub fn ignored() {
    let _ = IGNORED.try_with(|n| n.set(n.get().saturating_add(1)));
}

/// Whether this `rcu_unregister_thread` pairs with an ignored registration
/// (and is to be ignored as well, saying so); counts it off.
///
/// ```
/// use rcu_reclaim_urcu_common::ignored_registrations::take_one;
/// assert!(!take_one());
/// ```
pub fn take_one() -> bool {
    let paired = IGNORED
        .try_with(|n| {
            let k = n.get();
            n.set(k.saturating_sub(1));
            k > 0
        })
        .unwrap_or(false);
    if paired {
        eprintln!(
            "[error] rcu-reclaim-urcu: rcu_unregister_thread() pairs with an rcu_register_thread() \
             that was ignored (the thread was registered already); ignored too: the thread stays \
             registered"
        );
    }
    paired
}
