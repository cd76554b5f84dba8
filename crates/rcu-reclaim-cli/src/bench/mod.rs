//! `rcu-reclaim bench`: the dentry-cache workload on several reclamation
//! schemes, side by side.
//!
//! The table and the backend contract are [`crate::dcache`]'s, shared with
//! `demo`; a [`Contender`] is a backend as the bench runs it (its engine's
//! counters, its reaction to a budget). This module adds the other
//! schemes (crossbeam-epoch, seize, liburcu, rcu-reclaim's polled API);
//! [`run`] drives one timed run of one backend; [`cmd`] interleaves the
//! runs and reports. Garbage is counted by the table
//! ([`crate::dcache::RETIRED`] and [`crate::dcache::FREED`]), the same way
//! for every backend.

pub mod cache;
pub mod cmd;
mod crossbeam;
mod engine;
mod ours;
mod ours_polled;
pub(crate) mod plot;
mod report;
mod run;
mod seize;
#[cfg(feature = "liburcu")]
mod urcu;

use serde::Serialize;
use std::sync::Arc;

use crate::dcache::{Backend, Table};

/// A backend as the bench runs it. Only rcu-reclaim overrides the
/// defaults: it has engine threads to account for and reacts to memory
/// pressure.
pub trait Contender: Backend {
    /// The reclamation engine's counters now (grace periods, `membarrier`
    /// calls, its threads' CPU time), where the backend has its own
    /// threads to account for (rcu-reclaim).
    fn engine(&self) -> Option<engine::EngineSample> {
        None
    }

    /// Makes the table answer a memory budget of `limit` bytes (`usage`
    /// reports the bytes in use). Only rcu-reclaim reacts to memory
    /// pressure; the others return `None` and run unbounded.
    fn budget(
        _table: &Arc<Table<Self>>,
        _limit: usize,
        _usage: Arc<dyn Fn() -> usize + Send + Sync>,
    ) -> Option<Budget> {
        None
    }
}

/// What rcu-reclaim's reaction to the budget did during one run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PressureReport {
    pub direct_reclaims: u64,
    pub background_reclaims: u64,
    pub reclaim_passes: u64,
    /// Reclaim passes that waited for RCU to free what it held.
    pub rcu_waits: u64,
    pub grace_periods: u64,
    pub expedited_grace_periods: u64,
    pub fast_mode_ms: u64,
    /// Mean time from an arbitrary moment until a full grace period has
    /// elapsed: what a version retired at that moment waits, at least.
    pub gp_wait_mean_ns: f64,
    pub gp_wait_probes: u64,
}

pub use engine::EngineReport;

/// A backend's reaction to a memory budget.
pub struct Budget {
    /// What the writers call every 16 updates, as an allocator would.
    pub check: Arc<dyn Fn() + Send + Sync>,
    /// Stops reacting and reports (the threads have stopped).
    pub finish: Box<dyn FnOnce() -> PressureReport>,
}
