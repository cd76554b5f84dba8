//! seize: hyaline-style reference-counted batches. A thread's retired
//! objects collect in a local batch (32 by default); a full batch is
//! attached to every active thread's reservation list and freed when the
//! last of those threads leaves its critical section.

use std::sync::atomic::{AtomicPtr, Ordering};

use seize::{Collector, Guard as _, LocalGuard};

use super::Contender;
use crate::dcache::{Backend, Node};

/// A private collector, so nothing of one run survives into the next.
pub struct Seize {
    collector: Collector,
}

impl Seize {
    pub fn new() -> Seize {
        Seize {
            collector: Collector::new(),
        }
    }
}

/// seize's reclaimer for a retired version.
///
/// # Safety
/// `node` came from `Node::boxed` and seize found it unreachable.
unsafe fn reclaim_node(node: *mut Node, _: &Collector) {
    // SAFETY: the function's contract.
    unsafe { Node::free(node) }
}

impl Backend for Seize {
    const NAME: &'static str = "seize";
    type Local<'a> = ();
    type Guard<'a> = LocalGuard<'a>;

    fn local(&self) {}

    #[inline]
    fn pin<'a>(&'a self, _: &'a ()) -> LocalGuard<'a> {
        self.collector.enter()
    }

    #[inline]
    fn load<'g>(&self, guard: &'g LocalGuard<'_>, slot: &'g AtomicPtr<Node>) -> Option<&'g Node> {
        let p = guard.protect(slot, Ordering::Acquire);
        // SAFETY: a non-null pointer in a slot came from `Node::boxed`;
        // seize keeps what `protect` loaded valid until the guard is dropped.
        unsafe { p.as_ref() }
    }

    unsafe fn retire(&self, guard: &LocalGuard<'_>, node: *mut Node, _bytes: usize) {
        // SAFETY: the caller guarantees `node` is unlinked and retired
        // once; seize frees it only after every guard that could have
        // protected it is gone.
        unsafe { guard.defer_retire(node, reclaim_node) };
    }

    fn flush(&self, guard: &LocalGuard<'_>) {
        guard.flush();
    }

    /// Dropping the collector frees everything still retired.
    fn finish(self) {
        drop(self.collector);
    }
}

impl Contender for Seize {}
