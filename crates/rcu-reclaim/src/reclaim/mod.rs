//! Memory reclaim: shrinkers, the priority loop that closes the loop with
//! RCU, and the out-of-memory path that waits for RCU before giving up.
//! Reclaim talks to RCU only through its public API
//! ([`Rcu::run_callbacks`](crate::Rcu::run_callbacks),
//! [`Rcu::barrier`](crate::Rcu::barrier), the backlog queries).

mod accounting;
mod budget;
mod reclaimer;
mod shrinker;

pub use accounting::AccountingAlloc;
pub use budget::{BudgetStats, MemoryBudget, Watermarks};
pub use reclaimer::{
    no_reclaim, reclaim_allowed, OomReport, OutOfMemory, PriorityStats, ReclaimStats, Reclaimed,
    Reclaimer, ShrinkerId,
};
pub use shrinker::{scan_target, Scanned, ShrinkControl, Shrinker, SHRINK_BATCH};
