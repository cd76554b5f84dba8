//! The dentry-cache hash table that `demo` and `bench` both run, generic
//! over the reclamation scheme that frees its old versions.
//!
//! A [`Backend`] supplies what an RCU-style hash table needs from its
//! reclamation scheme: a per-thread handle, a read-side section (guard),
//! loading and publishing a bucket's pointer, and retiring the unlinked
//! version (freed once no reader can hold it). [`Table`] is the hash table
//! and its shrinker; [`Node`] one published version of a bucket;
//! [`Ours`] the rcu-reclaim backend (the one `demo` runs; `bench` adds the
//! others).
//!
//! Garbage is counted the same way for every backend ([`garbage`]): the
//! table adds a version's bytes to [`RETIRED`] when it retires it, and the
//! version's `Drop` (which runs wherever the backend frees it) adds them to
//! [`FREED`]. Bytes retired but not yet freed are the garbage.

mod garbage;
mod node;
mod ours;
mod table;

use std::sync::atomic::{AtomicPtr, Ordering};

pub use garbage::{garbage_now, reset_counters, FREED, PEAK_GARBAGE, RETIRED};
#[cfg(feature = "liburcu")]
pub use node::RcuHead;
pub use node::{Chain, Entry, Node};
pub use ours::{Mode, Ours, OursCollect, OursInline, OursQsbr};
pub use table::Table;

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
    /// bench worker calls it once, as it stops, so nothing stays in its
    /// buffers.
    fn flush(&self, _guard: &Self::Guard<'_>) {}

    /// A point in a thread's loop where it holds no lock and no section
    /// (after each update): a backend that frees at safe points does so
    /// here (`Rcu::collect`).
    fn safe_point(&self, _local: &Self::Local<'_>) {}

    /// A point in a thread's loop between two operations (after every
    /// lookup and every update), where it holds no reference from a
    /// section: a quiescent-state-based backend reports a quiescent state
    /// here (`QsbrThread::quiescent_state`). Takes the handle mutably, so
    /// no guard of it can be alive.
    fn quiescent_state(&self, _local: &mut Self::Local<'_>) {}

    /// Runs `f`, which may block or wait for a grace period (a memory
    /// budget's direct reclaim), on a thread that holds no section: a
    /// quiescent-state-based backend puts the thread offline around it.
    fn offline_while<R>(&self, _local: &mut Self::Local<'_>, f: impl FnOnce() -> R) -> R {
        f()
    }

    /// Frees everything retired; every thread's handle is gone.
    fn finish(self);
}
