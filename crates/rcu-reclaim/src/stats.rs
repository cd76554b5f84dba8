//! Counters and snapshots of a domain's state.

use std::sync::atomic::Ordering;

use serde::Serialize;

use crate::domain::{Flavor, Rcu};

/// A snapshot of a domain's counters, serializable with serde.
///
/// ```
/// let rcu = rcu_reclaim::Rcu::global();
/// rcu.synchronize();
/// let stats = rcu.stats();
/// assert!(stats.gp_completed >= 1);
/// let json = serde_json::to_string(&stats).unwrap();
/// assert!(json.contains("\"flavor\""));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Stats {
    /// The domain's id.
    pub domain: u64,
    /// The flavor chosen at creation.
    pub flavor: Flavor,
    /// The raw grace-period sequence (`completed << 2 | in_progress`).
    pub gp_seq: u64,
    /// Grace periods completed.
    pub gp_completed: u64,
    /// Whether a grace period is running now.
    pub gp_in_progress: bool,
    /// Calls to `synchronize`, `cond_synchronize` (when it had to wait) and
    /// the blocking `RcuCell`/`Retired` helpers.
    pub synchronize_calls: u64,
    /// Calls to `synchronize_expedited`.
    pub expedited_calls: u64,
    /// Waits that were satisfied by a grace period another caller ran.
    pub shared_waits: u64,
    /// Grace periods run in normal mode (may park).
    pub normal_gps: u64,
    /// Grace periods run in expedited mode (never park).
    pub expedited_gps: u64,
    /// Times a writer parked waiting for a reader.
    pub writer_parks: u64,
    /// Reader stalls reported (once per stall).
    pub stalls_reported: u64,
    /// Grace periods requested through `start_poll`.
    pub poll_requests: u64,
    /// Threads currently registered as readers.
    pub registered_readers: usize,
}

impl Rcu {
    /// A snapshot of this domain's counters.
    ///
    /// ```
    /// use rcu_reclaim::{Config, Flavor, Rcu};
    /// let rcu = Rcu::new(Config::new().flavor(Flavor::Mb)).unwrap();
    /// drop(rcu.read_lock());
    /// let s = rcu.stats();
    /// assert_eq!(s.flavor, Flavor::Mb);
    /// assert_eq!(s.registered_readers, 1);
    /// ```
    pub fn stats(&self) -> Stats {
        let gp = &self.inner().gp;
        let c = &gp.counters;
        let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let seq = gp.seq();
        Stats {
            domain: self.id(),
            flavor: self.flavor(),
            gp_seq: seq,
            gp_completed: seq >> 2,
            gp_in_progress: seq & 3 != 0,
            synchronize_calls: get(&c.synchronize_calls),
            expedited_calls: get(&c.expedited_calls),
            shared_waits: get(&c.shared),
            normal_gps: get(&c.normal_gps),
            expedited_gps: get(&c.expedited_gps),
            writer_parks: get(&c.writer_parks),
            stalls_reported: get(&c.stalls_reported),
            poll_requests: get(&c.poll_requests),
            registered_readers: self.registry().registered(),
        }
    }
}
