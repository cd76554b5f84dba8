//! What a section or an online QSBR registration owes: a retire that the
//! pressure throttle would have made wait where it cannot (inside a
//! section, which the grace period waits for) records the debt, and the
//! section's end, or the registration's next quiescent state,
//! pays it through the domain's hook (`Registry::pay_owed`).

use std::cell::Cell;
use std::ptr;

use super::Registry;

/// How many domains' QSBR debts a thread keeps apart (see `OWED_QSBR`).
const OWED_QSBR_DOMAINS: usize = 4;

thread_local! {
    /// The registries (of domains; null: none) in which an online QSBR
    /// registration of this thread retired while the pressure throttle
    /// would have made it wait: each pays when its registration next goes
    /// offline (at a quiescent state, `thread_offline`,
    /// `offline_while`). One per domain: with a single entry, a thread
    /// online in two QSBR domains lost one domain's debt when it retired
    /// into the other before reporting (its throttle waits went unpaid:
    /// 221 waits alone, 131 beside a second domain). Past
    /// `OWED_QSBR_DOMAINS` domains owing at once, the first entry is
    /// replaced, as the single one was.
    static OWED_QSBR: [Cell<*const Registry>; OWED_QSBR_DOMAINS] =
        const { [const { Cell::new(ptr::null()) }; OWED_QSBR_DOMAINS] };
}

/// Who pays an owed pressure-throttle wait (the domain's hook,
/// [`Registry::pay_owed`]).
#[cfg(not(loom))]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Payer {
    /// The outermost exit of a guard or raw section.
    SectionEnd,
    /// An online QSBR registration, put offline for the wait by its
    /// caller (the domain's marks still say online).
    QsbrOffline,
}

/// Records that an online QSBR registration of this thread in the domain
/// of `registry` owes the pressure throttle.
/// Returns whether it owed already (since its last payment).
pub(crate) fn owe_throttle_qsbr(registry: &Registry) -> bool {
    OWED_QSBR
        .try_with(|owed| {
            if owed.iter().any(|o| ptr::eq(o.get(), registry)) {
                return true;
            }
            owed.iter()
                .find(|o| o.get().is_null())
                .unwrap_or(&owed[0])
                .set(registry);
            false
        })
        .unwrap_or(false)
}

#[cfg(not(loom))]
thread_local! {
    /// Work an online QSBR registration of this thread owes besides the
    /// pressure throttle (a budget's direct reclaim), run when it pays.
    static OWED_WORK: Cell<Option<fn()>> = const { Cell::new(None) };
}

/// Records that this thread owes `work`, to run where its online QSBR
/// registration pays the pressure throttle (`qsbr_slots::owe_at_quiescent_state`).
#[cfg(not(loom))]
pub(crate) fn owe_work(work: fn()) {
    let _ = OWED_WORK.try_with(|w| w.set(Some(work)));
}

/// The work this thread owes (see `owe_at_quiescent_state`), taken.
#[cfg(not(loom))]
pub(crate) fn take_owed_work() -> Option<fn()> {
    OWED_WORK.try_with(Cell::take).ok().flatten()
}

/// Whether this thread owes the pressure throttle in the domain of
/// `registry` as a QSBR thread; clears it.
pub(crate) fn take_owed_qsbr(registry: &Registry) -> bool {
    OWED_QSBR
        .try_with(|owed| {
            owed.iter()
                .find(|o| ptr::eq(o.get(), registry))
                .is_some_and(|o| {
                    o.set(ptr::null());
                    true
                })
        })
        .unwrap_or(false)
}

#[cfg(all(test, not(loom)))]
mod owed_qsbr_tests {
    use super::{owe_throttle_qsbr, take_owed_qsbr};
    use crate::{Config, Flavor, Rcu};

    /// A thread online in two QSBR domains owes each one's pressure
    /// throttle apart: a retire into the second before the thread reports
    /// in the first replaced the first one's debt, whose wait then went
    /// unpaid (a loop retiring into both under pressure paid 20–40% of the
    /// first domain's waits that it paid alone).
    #[test]
    fn each_domain_keeps_its_own_qsbr_debt() {
        let a = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
        let b = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
        assert!(!owe_throttle_qsbr(a.registry()), "a owed nothing yet");
        assert!(!owe_throttle_qsbr(b.registry()), "b owed nothing yet");
        assert!(owe_throttle_qsbr(a.registry()), "a still owes beside b");
        assert!(take_owed_qsbr(a.registry()), "a pays its own debt");
        assert!(!take_owed_qsbr(a.registry()), "once");
        assert!(take_owed_qsbr(b.registry()), "b's debt is kept");
        assert!(!take_owed_qsbr(b.registry()), "once");
    }
}
