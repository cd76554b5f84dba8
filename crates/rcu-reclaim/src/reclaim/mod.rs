//! Memory reclaim: shrinkers, the priority loop that closes the loop with
//! RCU, and the out-of-memory path that waits for RCU before giving up.
//!
//! * [`Shrinker`]: a cache that can give memory back (`count`, `scan`,
//!   with a [`ShrinkControl`]); [`scan_target`] is the kernel's arithmetic
//!   for how much one pass asks of it, in batches of [`SHRINK_BATCH`].
//! * [`Reclaimer`]: shrinkers by priority, 12 (gentle) to 0 (desperate).
//!   After each pass it asks RCU to run what the shrinkers queued
//!   ([`Rcu::run_callbacks_for`](crate::Rcu::run_callbacks_for)); before
//!   it declares [`OutOfMemory`] (with an [`OomReport`]) it waits for RCU
//!   ([`Rcu::barrier`](crate::Rcu::barrier)).
//! * [`MemoryBudget`]: a byte limit with [`Watermarks`], a kswapd-like
//!   thread and direct reclaim; [`AccountingAlloc`] is a global allocator
//!   that counts bytes for it and can enforce it.
//! * [`no_reclaim`] / [`reclaim_allowed`]: mark code that must not recurse
//!   into reclaim.
//!
//! Use it when a program holds caches that could shrink, and wants memory
//! it retired through RCU counted and freed before it gives up. Reclaim
//! talks to RCU only through `Rcu`'s public methods, so a reclaimer of your
//! own can do the same.
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use rcu_reclaim::pressure::NodeMask;
//! use rcu_reclaim::reclaim::{Reclaimer, Scanned, ShrinkControl, Shrinker};
//! use rcu_reclaim::Rcu;
//!
//! /// A cache whose entries are retired through RCU when it shrinks.
//! struct Cache(Mutex<Vec<Box<[u8; 1024]>>>);
//! impl Shrinker for Cache {
//!     fn count(&self, _: &ShrinkControl) -> usize {
//!         self.0.try_lock().map_or(0, |c| c.len())
//!     }
//!     fn scan(&self, ctl: &mut ShrinkControl) -> Scanned {
//!         let Ok(mut cache) = self.0.try_lock() else {
//!             ctl.stop();
//!             return Scanned::default();
//!         };
//!         let n = ctl.nr_to_scan().min(cache.len());
//!         for entry in cache.drain(..n) {
//!             Rcu::global().defer_drop_sized(entry, 1024);
//!         }
//!         Scanned { freed: n, bytes: n * 1024 }
//!     }
//!     fn frees_via_rcu(&self) -> bool {
//!         true
//!     }
//! }
//!
//! let cache = Arc::new(Cache(Mutex::new((0..256).map(|_| Box::new([0; 1024])).collect())));
//! let reclaimer = Reclaimer::new(Rcu::global());
//! reclaimer.register(cache.clone());
//! let done = reclaimer.reclaim(64 << 10, &NodeMask::all()).unwrap();
//! assert!(done.freed_bytes >= 64 << 10);
//! ```

mod accounting;
mod budget;
mod budget_bound;
mod reclaimer;
mod report;
mod shrinker;

pub use accounting::AccountingAlloc;
pub use budget::{BudgetError, BudgetStats, MemoryBudget, Watermarks};
pub use reclaimer::{no_reclaim, reclaim_allowed, Reclaimer, ShrinkerId};
pub use report::{OomReport, OutOfMemory, PriorityStats, ReclaimStats, Reclaimed};
pub use shrinker::{scan_target, Scanned, ShrinkControl, Shrinker, SHRINK_BATCH};
