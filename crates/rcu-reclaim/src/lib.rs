//! # rcu-reclaim
//!
//! Read-copy-update for Rust whose deferred reclamation answers memory
//! pressure.
//!
//! Readers enter a read-side section with [`Rcu::read_lock`] — on the default
//! *memb* flavor a load, a store and a compiler fence — and load
//! [`RcuCell`]s inside it. Writers publish new versions with
//! [`RcuCell::replace`] and free the old ones once a grace period has
//! elapsed: every section that could have seen them has ended.
//!
//! ```
//! use rcu_reclaim::{Rcu, RcuCell};
//!
//! let config = RcuCell::new(vec!["10.0.0.1"]);
//! let rcu = Rcu::global();
//!
//! // Reader: as cheap as a plain load.
//! let guard = rcu.read_lock();
//! let servers = config.load(&guard).unwrap();
//! assert_eq!(servers[0], "10.0.0.1");
//! drop(guard);
//!
//! // Writer: publish, then free the old version after a grace period.
//! let old = config.replace(Box::new(vec!["10.0.0.2"])).unwrap();
//! rcu.synchronize();
//! drop(old.into_box());
//! ```
//!
//! ## Grace periods
//! * [`Rcu::synchronize`] waits for pre-existing readers; concurrent callers
//!   share one grace period.
//! * [`Rcu::synchronize_expedited`] never parks, for the lowest latency.
//! * The polled API, [`Rcu::get_state`], [`Rcu::start_poll`], [`Rcu::poll`]
//!   and [`Rcu::cond_synchronize`], waits without blocking.
//!
//! ## Misuse
//! Waiting for a grace period inside a read-side section of the same domain
//! would never return; it panics instead, naming the call. A reader that holds
//! up a grace period longer than [`Config::stall_timeout`] is reported once,
//! with its thread name, through `tracing` (or standard error, without a
//! subscriber) and [`Stats::stalls_reported`]. No safe call can end a
//! section early: raw sections ([`Rcu::read_lock_raw`]) are counted apart
//! from guards.
//!
//! [`locking`] says where callbacks, destructors and shrinkers run, which
//! calls may wait for what, and the library's lock order: what a program
//! may hold around each call.
//!
//! ## Design
//! The crate follows the Linux kernel's discussion of RCU and the OOM killer
//! (May 2020): RCU counts its backlog in callbacks and bytes, enters a fast
//! mode under memory pressure ([`Rcu::pressure_start`]), and reclaim runs or
//! waits for what its shrinkers queued ([`Rcu::run_callbacks`]) before it
//! declares out-of-memory ([`Reclaimer`]).

#![warn(missing_docs)]
// Under loom the membarrier/futex paths and the grace-period thread are not built.
#![cfg_attr(loom, allow(dead_code, unused_imports))]

#[cfg(not(target_os = "linux"))]
compile_error!(
    "rcu-reclaim supports Linux only: its read side relies on membarrier(2) (or fences), its \
     writers on futex(2), and its topology and pressure sources on /proc and /sys. Build it \
     for a Linux target (e.g. x86_64-unknown-linux-gnu)."
);

mod callbacks;
mod cell;
mod clock;
mod domain;
mod fast_mode;
mod flavor;
#[cfg(not(loom))]
mod fork;
mod gp;
#[cfg(not(loom))]
mod gp_thread;
mod guard;
pub mod locking;
mod policy;
mod pressure;
mod raw;
mod reader;
mod reclaim;
mod sources;
mod stats;
mod sync;
mod synchronize;
mod sys;
mod topology;
mod wake_promise;

pub use callbacks::{
    without_page_allocation, PageAllocator, ReclaimSize, SystemPageAllocator, BULK_PAGE_SIZE,
};
pub use cell::{RcuCell, Retired};
pub use domain::{Config, Error, Flavor, Rcu};
#[cfg(not(loom))]
pub use fork::ForkGuard;
pub use guard::ReadGuard;
pub use pressure::{NodeMask, PressureGuard, RunAction, RunReport};
pub use reclaim::{
    no_reclaim, reclaim_allowed, scan_target, AccountingAlloc, BudgetStats, MemoryBudget,
    OomReport, OutOfMemory, PriorityStats, ReclaimStats, Reclaimed, Reclaimer, Scanned,
    ShrinkControl, Shrinker, ShrinkerId, Watermarks, SHRINK_BATCH,
};
#[cfg(not(loom))]
pub use sources::auto_pressure;
pub use sources::{
    budget_from_cgroup, parse_cgroup_bytes, parse_statm, CgroupPaths, CgroupV1Source, CgroupV2,
    CgroupV2Events, Level, MemoryEvents, MonitorStats, ParseError, PressureMonitor, PressureSource,
    PsiLine, PsiStats, PsiTrigger, RssSource, SourceError, SyntheticSource, V1_MEMORY_ROOT,
    V2_ROOT,
};
pub use stats::{ShardStats, Stats};
pub use synchronize::Cookie;
pub use topology::{override_current_cpu, Topology};

/// The README's examples, compiled and run as doc tests (the build script
/// finds the README, in a checkout or in a package).
#[cfg(all(doctest, readme_doctests))]
#[doc = include_str!(env!("RCU_RECLAIM_README"))]
pub struct ReadmeDoctests;
