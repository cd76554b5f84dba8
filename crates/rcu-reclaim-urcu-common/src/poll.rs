//! liburcu 0.14's polled grace-period API, shared by both drop-ins (each
//! exports it under its flavor's names).

use std::os::raw::c_ulong;

use rcu_reclaim::Rcu;

/// liburcu 0.14's `struct urcu_gp_poll_state`.
///
/// ```
/// let s = rcu_reclaim_urcu_common::poll::start(rcu_reclaim::Rcu::global());
/// rcu_reclaim::Rcu::global().synchronize();
/// assert!(rcu_reclaim_urcu_common::poll::done(rcu_reclaim::Rcu::global(), s));
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct UrcuGpPollState {
    /// The grace-period sequence value that completes the snapshot.
    pub grace_period_id: c_ulong,
}

const _: () = assert!(
    std::mem::size_of::<c_ulong>() == 8,
    "liburcu's grace_period_id must hold a u64"
);

/// `start_poll_synchronize_rcu`: starts a grace period if needed and
/// returns a snapshot to poll. Never waits.
///
/// ```
/// let s = rcu_reclaim_urcu_common::poll::start(rcu_reclaim::Rcu::global());
/// assert!(s.grace_period_id > 0);
/// ```
pub fn start(rcu: &Rcu) -> UrcuGpPollState {
    UrcuGpPollState {
        grace_period_id: rcu.start_poll().seq() as c_ulong,
    }
}

/// `poll_state_synchronize_rcu`: whether a grace period has elapsed since
/// `state` was taken.
///
/// ```
/// use rcu_reclaim_urcu_common::poll;
/// let rcu = rcu_reclaim::Rcu::global();
/// let s = poll::start(rcu);
/// rcu.synchronize();
/// assert!(poll::done(rcu, s));
/// ```
#[allow(clippy::unnecessary_cast)] // c_ulong is u64 here, not everywhere
pub fn done(rcu: &Rcu, state: UrcuGpPollState) -> bool {
    // `unsigned long` is 64 bits on every target the library builds for
    // (see the assertion above).
    rcu.poll_seq(state.grace_period_id as u64)
}
