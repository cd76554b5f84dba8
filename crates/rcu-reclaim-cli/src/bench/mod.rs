//! `rcu-reclaim bench`: the dentry-cache workload on several reclamation
//! schemes, side by side.
//!
//! A [`Backend`] supplies what an RCU-style hash table needs from its
//! reclamation scheme: a per-thread handle, a read-side section (guard),
//! loading and publishing a bucket's pointer, and retiring the unlinked
//! version (freed once no reader can hold it). [`table::Table`] is the hash
//! table, generic over the backend; [`run`] drives one timed run of one
//! backend; [`cmd`] interleaves the runs and reports.
//!
//! Garbage is counted the same way for every backend: the table adds a
//! version's bytes to [`RETIRED`] when it retires it, and the version's
//! `Drop` (which runs wherever the backend frees it) adds them to
//! [`FREED`]. Bytes retired but not yet freed are the garbage.

pub mod cmd;
mod crossbeam;
mod engine;
mod ours;
mod ours_polled;
mod plot;
mod report;
mod run;
mod seize;
mod table;
#[cfg(feature = "liburcu")]
mod urcu;

use serde::Serialize;
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam_utils::CachePadded;

use crate::workload::Entry;

/// Bytes retired by the table (the run in progress; runs never overlap).
pub static RETIRED: CachePadded<AtomicU64> = CachePadded::new(AtomicU64::new(0));
/// Bytes of retired versions that have been freed.
pub static FREED: CachePadded<AtomicU64> = CachePadded::new(AtomicU64::new(0));

/// The highest garbage seen right after a retire (where it peaks).
pub static PEAK_GARBAGE: CachePadded<AtomicU64> = CachePadded::new(AtomicU64::new(0));

/// Zeroes the counters for a new run.
pub fn reset_counters() {
    RETIRED.store(0, Ordering::SeqCst);
    FREED.store(0, Ordering::SeqCst);
    PEAK_GARBAGE.store(0, Ordering::SeqCst);
}

/// Bytes retired and not yet freed, now.
pub fn garbage_now() -> u64 {
    // FREED first: it never passes RETIRED, so reading it first keeps the
    // difference from going negative.
    let freed = FREED.load(Ordering::Acquire);
    RETIRED.load(Ordering::Acquire).saturating_sub(freed)
}

/// A bucket's entries, keys inline.
pub type Chain = Vec<(u64, Arc<Entry>)>;

/// liburcu's `struct rcu_head` (two pointers), embedded first in every
/// version so that liburcu's `call_rcu` can queue it without allocating, as
/// a C user of liburcu embeds it. The other backends leave it untouched.
#[repr(C)]
pub struct RcuHead {
    _next: *mut RcuHead,
    _func: *const (),
}

/// One published version of a bucket: what readers load and writers retire.
#[repr(C)]
pub struct Node {
    /// Must stay the first field (the liburcu backend casts back from it).
    /// Written by liburcu while readers may still hold `&Node`, hence the
    /// `UnsafeCell`.
    head: UnsafeCell<RcuHead>,
    pub chain: Chain,
    /// Bytes this version alone keeps alive, set when it is retired (0 for
    /// a version freed without being retired, at the end of a run).
    retired_bytes: AtomicUsize,
}

// SAFETY: `head` holds no data of its own: liburcu links it into its
// call_rcu list once the node is retired, and the node is then owned by
// that list until freed; everything else in a node is Send + Sync.
unsafe impl Send for Node {}
// SAFETY: readers share nodes only through `&Node` and never touch `head`;
// only liburcu writes it, after the node was unlinked and retired.
unsafe impl Sync for Node {}

impl Node {
    /// A new, unpublished version holding `chain`.
    pub fn boxed(chain: Chain) -> *mut Node {
        Box::into_raw(Box::new(Node {
            head: UnsafeCell::new(RcuHead {
                _next: std::ptr::null_mut(),
                _func: std::ptr::null(),
            }),
            chain,
            retired_bytes: AtomicUsize::new(0),
        }))
    }

    /// Records the bytes the node frees (before it is handed to a backend).
    pub fn set_retired_bytes(&self, bytes: usize) {
        self.retired_bytes.store(bytes, Ordering::Relaxed);
    }

    /// The node's own bytes (the box and the chain's buffer).
    pub fn own_bytes(&self) -> usize {
        std::mem::size_of::<Node>()
            + self.chain.capacity() * std::mem::size_of::<(u64, Arc<Entry>)>()
    }

    /// Frees a node.
    ///
    /// # Safety
    /// `node` came from [`Node::boxed`], and no reader can reach it any more.
    pub unsafe fn free(node: *mut Node) {
        // SAFETY: the caller's contract.
        drop(unsafe { Box::from_raw(node) });
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let bytes = *self.retired_bytes.get_mut();
        if bytes > 0 {
            FREED.fetch_add(bytes as u64, Ordering::Release);
        }
    }
}

/// A reclamation scheme, as the table uses it.
pub trait Backend: Send + Sync + Sized + 'static {
    /// The name in reports.
    const NAME: &'static str;
    /// A thread's handle (a registration, a participant), made once per
    /// thread with [`local`](Backend::local).
    type Local<'a>
    where
        Self: 'a;
    /// A read-side section: pointers loaded under it stay valid until it ends.
    type Guard<'a>
    where
        Self: 'a;

    /// The calling thread's handle.
    fn local(&self) -> Self::Local<'_>;

    /// Enters a read-side section.
    fn pin<'a>(&'a self, local: &'a Self::Local<'_>) -> Self::Guard<'a>;

    /// Loads a bucket's pointer under `guard`.
    fn load<'g>(&self, _guard: &'g Self::Guard<'_>, slot: &'g AtomicPtr<Node>) -> Option<&'g Node> {
        // SAFETY: a non-null pointer in a slot came from `Node::boxed` and
        // was published with Release; it is freed only after being
        // unlinked and retired, and the backend frees retired nodes only
        // once every section that could have loaded them (this one
        // included) has ended.
        unsafe { slot.load(Ordering::Acquire).as_ref() }
    }

    /// Publishes `new` in `slot`; returns the version it replaced.
    fn publish(
        &self,
        _guard: &Self::Guard<'_>,
        slot: &AtomicPtr<Node>,
        new: *mut Node,
    ) -> *mut Node {
        slot.swap(new, Ordering::AcqRel)
    }

    /// Frees `node` once no reader can hold it. Its `retired_bytes` are set.
    ///
    /// # Safety
    /// `node` came from [`Node::boxed`], was unlinked, and is retired once.
    unsafe fn retire(&self, guard: &Self::Guard<'_>, node: *mut Node, bytes: usize);

    /// Pushes what this thread has retired towards being freed, where the
    /// backend has such a call (crossbeam's and seize's `flush`). Each
    /// worker calls it once, as it stops, so nothing stays in its buffers.
    fn flush(&self, _guard: &Self::Guard<'_>) {}

    /// Frees everything retired; every thread's handle is gone.
    fn finish(self);

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
        _table: &Arc<table::Table<Self>>,
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
