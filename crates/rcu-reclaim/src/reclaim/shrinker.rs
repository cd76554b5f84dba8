//! The shrinker interface, after the kernel's `struct shrinker`.

use crate::pressure::NodeMask;

/// Objects scanned per `scan` call (the kernel's `SHRINK_BATCH`).
///
/// ```
/// assert_eq!(rcu_reclaim::reclaim::SHRINK_BATCH, 128);
/// ```
pub const SHRINK_BATCH: usize = 128;

/// Batches in a row that free nothing after which one shrinker's turn in
/// a pass ends (the rest of its scan target is deferred as usual). The
/// scan arithmetic trusts `count`: a shrinker that counts `usize::MAX`
/// objects and frees none would otherwise be called about 2^50 times. A
/// second-chance cache whose first sweep frees nothing gets 131,072
/// objects' worth of batches before its turn ends, and its next turn
/// continues the sweep.
pub(crate) const FRUITLESS_BATCHES: usize = 1024;

/// Objects one shrinker may scan in one turn of [`Reclaimer::shrink`]
/// (16 Mi; at priority 2, a quarter of a cache of 64 Mi objects): the
/// scan arithmetic trusts `count`, and a shrinker that counts `usize::MAX`
/// (an underflowed `len - n`, say) and reports freeing what it is asked
/// would otherwise be called about 2^55 times in one turn, holding the
/// caller (a pressure monitor, whose drop then waits) for ever. The rest
/// of the target is dropped: the next call counts again.
///
/// [`Reclaimer::shrink`]: super::Reclaimer::shrink
pub(crate) const MAX_SCAN_PER_TURN: usize = 1 << 24;

/// What reclaim asks of a shrinker, and what the shrinker reports back.
///
/// ```
/// use rcu_reclaim::pressure::NodeMask;
/// use rcu_reclaim::reclaim::ShrinkControl;
/// let ctl = ShrinkControl::new(NodeMask::all(), 12, 128);
/// assert_eq!(ctl.nr_to_scan(), 128);
/// ```
#[derive(Clone, Debug)]
pub struct ShrinkControl {
    nodemask: NodeMask,
    priority: u8,
    nr_to_scan: usize,
    nr_scanned: usize,
    stop: bool,
}

impl ShrinkControl {
    /// A request to scan `nr_to_scan` objects on `nodemask`'s nodes at
    /// `priority` (12 gentle .. 0 desperate).
    ///
    /// ```
    /// let ctl = rcu_reclaim::reclaim::ShrinkControl::new(rcu_reclaim::pressure::NodeMask::node(0), 3, 64);
    /// assert_eq!(ctl.priority(), 3);
    /// ```
    pub fn new(nodemask: NodeMask, priority: u8, nr_to_scan: usize) -> Self {
        ShrinkControl {
            nodemask,
            priority,
            nr_to_scan,
            nr_scanned: nr_to_scan,
            stop: false,
        }
    }

    /// The nodes to reclaim from.
    ///
    /// ```
    /// let ctl = rcu_reclaim::reclaim::ShrinkControl::new(rcu_reclaim::pressure::NodeMask::node(1), 12, 1);
    /// assert!(ctl.nodemask().contains(1));
    /// ```
    pub fn nodemask(&self) -> &NodeMask {
        &self.nodemask
    }

    /// The reclaim priority (12 gentle .. 0 desperate).
    ///
    /// ```
    /// assert_eq!(rcu_reclaim::reclaim::ShrinkControl::new(rcu_reclaim::pressure::NodeMask::all(), 0, 1).priority(), 0);
    /// ```
    pub fn priority(&self) -> u8 {
        self.priority
    }

    /// How many objects to scan in this call.
    ///
    /// ```
    /// assert_eq!(rcu_reclaim::reclaim::ShrinkControl::new(rcu_reclaim::pressure::NodeMask::all(), 0, 7).nr_to_scan(), 7);
    /// ```
    pub fn nr_to_scan(&self) -> usize {
        self.nr_to_scan
    }

    /// Reports that only `n` objects were scanned (for example, the rest
    /// were busy); the remainder is carried to the next reclaim call.
    ///
    /// ```
    /// let mut ctl = rcu_reclaim::reclaim::ShrinkControl::new(rcu_reclaim::pressure::NodeMask::all(), 12, 128);
    /// ctl.set_scanned(100);
    /// assert_eq!(ctl.scanned(), 100);
    /// ```
    pub fn set_scanned(&mut self, n: usize) {
        self.nr_scanned = n.min(self.nr_to_scan);
    }

    /// Objects reported scanned (defaults to `nr_to_scan`).
    ///
    /// ```
    /// assert_eq!(rcu_reclaim::reclaim::ShrinkControl::new(rcu_reclaim::pressure::NodeMask::all(), 12, 9).scanned(), 9);
    /// ```
    pub fn scanned(&self) -> usize {
        self.nr_scanned
    }

    /// Tells reclaim to stop calling this shrinker in this pass (the
    /// kernel's `SHRINK_STOP`): a lock it needs is held elsewhere, so it
    /// took it with `try_lock` and failed. What it did not scan is deferred.
    ///
    /// ```
    /// let mut ctl = rcu_reclaim::reclaim::ShrinkControl::new(rcu_reclaim::pressure::NodeMask::all(), 12, 128);
    /// ctl.stop();
    /// assert!(ctl.stopped());
    /// ```
    pub fn stop(&mut self) {
        self.stop = true;
        self.nr_scanned = 0;
    }

    /// Whether the shrinker asked to stop.
    ///
    /// ```
    /// assert!(!rcu_reclaim::reclaim::ShrinkControl::new(rcu_reclaim::pressure::NodeMask::all(), 12, 1).stopped());
    /// ```
    pub fn stopped(&self) -> bool {
        self.stop
    }
}

/// What one `scan` call freed.
///
/// ```
/// let s = rcu_reclaim::reclaim::Scanned { freed: 10, bytes: 10_240 };
/// assert_eq!(s.bytes / s.freed, 1024);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Scanned {
    /// Objects freed (or, for a shrinker that frees via RCU, queued).
    pub freed: usize,
    /// Their bytes.
    pub bytes: usize,
}

/// A cache that can give memory back, as the kernel's shrinkers do.
///
/// Shrinkers must not block on locks that a thread allocating memory may
/// hold: take them with `try_lock` and call [`ShrinkControl::stop`] when
/// that fails, so reclaim can never deadlock on them.
///
/// ```
/// use std::sync::Mutex;
/// use rcu_reclaim::reclaim::{Scanned, ShrinkControl, Shrinker};
/// struct Cache(Mutex<Vec<Vec<u8>>>);
/// impl Shrinker for Cache {
///     fn count(&self, _: &ShrinkControl) -> usize {
///         self.0.try_lock().map_or(0, |c| c.len())
///     }
///     fn scan(&self, ctl: &mut ShrinkControl) -> Scanned {
///         let Ok(mut cache) = self.0.try_lock() else {
///             ctl.stop();
///             return Scanned::default();
///         };
///         let n = ctl.nr_to_scan().min(cache.len());
///         let bytes = cache.drain(..n).map(|v| v.capacity()).sum();
///         Scanned { freed: n, bytes }
///     }
/// }
/// ```
pub trait Shrinker: Send + Sync {
    /// Objects that could be freed now on `ctl`'s nodes.
    ///
    /// ```
    /// # use std::sync::Mutex;
    /// # use rcu_reclaim::pressure::NodeMask;
    /// # use rcu_reclaim::reclaim::{Scanned, ShrinkControl, Shrinker};
    /// # struct Pool(Mutex<Vec<Vec<u8>>>);
    /// # impl Shrinker for Pool {
    /// #     fn count(&self, _: &ShrinkControl) -> usize {
    /// #         self.0.try_lock().map_or(0, |p| p.len())
    /// #     }
    /// #     fn scan(&self, ctl: &mut ShrinkControl) -> Scanned {
    /// #         let Ok(mut pool) = self.0.try_lock() else {
    /// #             ctl.stop();
    /// #             return Scanned::default();
    /// #         };
    /// #         let n = ctl.nr_to_scan().min(pool.len());
    /// #         let bytes = pool.drain(..n).map(|v| v.capacity()).sum();
    /// #         Scanned { freed: n, bytes }
    /// #     }
    /// # }
    /// let pool = Pool(Mutex::new(vec![vec![0u8; 1024]; 10]));
    /// let ctl = ShrinkControl::new(NodeMask::all(), 12, 128);
    /// assert_eq!(pool.count(&ctl), 10);
    /// ```
    fn count(&self, ctl: &ShrinkControl) -> usize;

    /// Frees up to `ctl.nr_to_scan()` objects.
    ///
    /// ```
    /// # use std::sync::Mutex;
    /// # use rcu_reclaim::pressure::NodeMask;
    /// # use rcu_reclaim::reclaim::{Scanned, ShrinkControl, Shrinker};
    /// # struct Pool(Mutex<Vec<Vec<u8>>>);
    /// # impl Shrinker for Pool {
    /// #     fn count(&self, _: &ShrinkControl) -> usize {
    /// #         self.0.try_lock().map_or(0, |p| p.len())
    /// #     }
    /// #     fn scan(&self, ctl: &mut ShrinkControl) -> Scanned {
    /// #         let Ok(mut pool) = self.0.try_lock() else {
    /// #             ctl.stop();
    /// #             return Scanned::default();
    /// #         };
    /// #         let n = ctl.nr_to_scan().min(pool.len());
    /// #         let bytes = pool.drain(..n).map(|v| v.capacity()).sum();
    /// #         Scanned { freed: n, bytes }
    /// #     }
    /// # }
    /// let pool = Pool(Mutex::new(vec![vec![0u8; 1024]; 10]));
    /// let mut ctl = ShrinkControl::new(NodeMask::all(), 12, 4);
    /// assert_eq!(pool.scan(&mut ctl), Scanned { freed: 4, bytes: 4096 });
    /// assert_eq!(pool.0.lock().unwrap().len(), 6);
    /// ```
    fn scan(&self, ctl: &mut ShrinkControl) -> Scanned;

    /// Whether what `scan` frees is only queued for RCU (`call`,
    /// `defer_drop`) — the `SHRINKER_KFREE_RCU` flag the 2020 kernel
    /// discussion proposed. Reclaim then counts it as in flight, not
    /// freed, until RCU reports it freed.
    ///
    /// ```
    /// # use std::sync::Mutex;
    /// # use rcu_reclaim::pressure::NodeMask;
    /// # use rcu_reclaim::reclaim::{Scanned, ShrinkControl, Shrinker};
    /// # struct Pool(Mutex<Vec<Vec<u8>>>);
    /// # impl Shrinker for Pool {
    /// #     fn count(&self, _: &ShrinkControl) -> usize {
    /// #         self.0.try_lock().map_or(0, |p| p.len())
    /// #     }
    /// #     fn scan(&self, ctl: &mut ShrinkControl) -> Scanned {
    /// #         let Ok(mut pool) = self.0.try_lock() else {
    /// #             ctl.stop();
    /// #             return Scanned::default();
    /// #         };
    /// #         let n = ctl.nr_to_scan().min(pool.len());
    /// #         let bytes = pool.drain(..n).map(|v| v.capacity()).sum();
    /// #         Scanned { freed: n, bytes }
    /// #     }
    /// # }
    /// let pool = Pool(Mutex::new(vec![vec![0u8; 1024]; 10]));
    /// assert!(!pool.frees_via_rcu()); // its scan drops the buffers at once
    /// ```
    fn frees_via_rcu(&self) -> bool {
        false
    }

    /// Cost of re-creating an object (the kernel's `seeks`, default 2);
    /// 0 means "free half of what is freeable at every pass".
    ///
    /// ```
    /// # use std::sync::Mutex;
    /// # use rcu_reclaim::pressure::NodeMask;
    /// # use rcu_reclaim::reclaim::{Scanned, ShrinkControl, Shrinker};
    /// # struct Pool(Mutex<Vec<Vec<u8>>>);
    /// # impl Shrinker for Pool {
    /// #     fn count(&self, _: &ShrinkControl) -> usize {
    /// #         self.0.try_lock().map_or(0, |p| p.len())
    /// #     }
    /// #     fn scan(&self, ctl: &mut ShrinkControl) -> Scanned {
    /// #         let Ok(mut pool) = self.0.try_lock() else {
    /// #             ctl.stop();
    /// #             return Scanned::default();
    /// #         };
    /// #         let n = ctl.nr_to_scan().min(pool.len());
    /// #         let bytes = pool.drain(..n).map(|v| v.capacity()).sum();
    /// #         Scanned { freed: n, bytes }
    /// #     }
    /// # }
    /// let pool = Pool(Mutex::new(vec![vec![0u8; 1024]; 10]));
    /// assert_eq!(pool.seeks(), 2);
    /// ```
    fn seeks(&self) -> usize {
        2
    }

    /// A name for reports (by default the type's name).
    ///
    /// ```
    /// # use std::sync::Mutex;
    /// # use rcu_reclaim::pressure::NodeMask;
    /// # use rcu_reclaim::reclaim::{Scanned, ShrinkControl, Shrinker};
    /// # struct Pool(Mutex<Vec<Vec<u8>>>);
    /// # impl Shrinker for Pool {
    /// #     fn count(&self, _: &ShrinkControl) -> usize {
    /// #         self.0.try_lock().map_or(0, |p| p.len())
    /// #     }
    /// #     fn scan(&self, ctl: &mut ShrinkControl) -> Scanned {
    /// #         let Ok(mut pool) = self.0.try_lock() else {
    /// #             ctl.stop();
    /// #             return Scanned::default();
    /// #         };
    /// #         let n = ctl.nr_to_scan().min(pool.len());
    /// #         let bytes = pool.drain(..n).map(|v| v.capacity()).sum();
    /// #         Scanned { freed: n, bytes }
    /// #     }
    /// # }
    /// let pool = Pool(Mutex::new(vec![vec![0u8; 1024]; 10]));
    /// assert!(pool.name().ends_with("Pool"));
    /// ```
    fn name(&self) -> &str {
        std::any::type_name::<Self>()
    }
}

/// How many objects one reclaim pass scans (the kernel's `do_shrink_slab`):
/// `(freeable >> priority) * 4 / seeks` (or `freeable / 2` with no seeks)
/// plus the work deferred by earlier passes, at most twice what is freeable.
///
/// ```
/// use rcu_reclaim::reclaim::scan_target;
/// assert_eq!(scan_target(4096, 12, 2, 0), 2);
/// assert_eq!(scan_target(4096, 0, 2, 0), 8192);
/// assert_eq!(scan_target(100, 12, 2, 40), 40);
/// ```
pub fn scan_target(freeable: usize, priority: u8, seeks: usize, deferred: usize) -> usize {
    let delta = (freeable >> priority.min(12))
        .saturating_mul(4)
        .checked_div(seeks)
        .unwrap_or(freeable / 2);
    deferred
        .saturating_add(delta)
        .min(freeable.saturating_mul(2))
}
