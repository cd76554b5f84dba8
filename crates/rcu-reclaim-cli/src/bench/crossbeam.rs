//! crossbeam-epoch: epoch-based reclamation. Each thread registers a
//! participant with a private collector; retired versions go into the
//! thread's bag of deferred functions (64 per bag), sealed with the epoch
//! and freed once the global epoch has advanced twice past it. Collection
//! runs inline, every 128 pins.

use crossbeam_epoch::{Collector, Guard, LocalHandle};

use super::Contender;
use crate::dcache::{Backend, Node};

/// A private collector, so nothing of one run survives into the next.
pub struct Crossbeam {
    collector: Collector,
}

impl Crossbeam {
    pub fn new() -> Crossbeam {
        Crossbeam {
            collector: Collector::new(),
        }
    }
}

impl Backend for Crossbeam {
    const NAME: &'static str = "crossbeam-epoch";
    type Local<'a> = LocalHandle;
    type Guard<'a> = Guard;

    fn local(&self) -> LocalHandle {
        self.collector.register()
    }

    #[inline]
    fn pin<'a>(&'a self, local: &'a LocalHandle) -> Guard {
        local.pin()
    }

    unsafe fn retire(&self, guard: &Guard, node: *mut Node, _bytes: usize) {
        // SAFETY: the caller guarantees `node` is unlinked and retired
        // once; crossbeam runs the closure only after every guard pinned
        // before this call is gone, so no reader still holds it.
        unsafe { guard.defer_unchecked(move || Node::free(node)) };
    }

    fn flush(&self, guard: &Guard) {
        guard.flush();
    }

    /// Dropping the collector, once every handle is gone, runs every
    /// deferred function still queued.
    fn finish(self) {
        drop(self.collector);
    }
}

impl Contender for Crossbeam {}
