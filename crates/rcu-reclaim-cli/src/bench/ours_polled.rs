//! rcu-reclaim used through its polled grace-period API, freeing on the
//! retiring thread: each thread keeps its retired versions in a FIFO with
//! the cookie `get_state()` gave at retire time, frees those whose cookie
//! `poll()` reports complete, and asks for a grace period (`start_poll`)
//! every 32 retires. Frees then happen on the thread that allocated, as
//! crossbeam-epoch and seize do them. Opt-in (`--backend
//! rcu-reclaim-polled`): an experiment for BENCHMARKS.md, not the default
//! way the library frees.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;

use rcu_reclaim::{Config, Cookie, Rcu, ReadGuard};

use super::Contender;
use crate::dcache::{Backend, Node};

/// A fresh domain per run.
pub struct OursPolled {
    rcu: Rcu,
}

impl OursPolled {
    pub fn new() -> Result<OursPolled, String> {
        Rcu::new(Config::new())
            .map(|rcu| OursPolled { rcu })
            .map_err(|e| format!("cannot create an rcu-reclaim domain: {e}"))
    }
}

/// Retires between two requests for a grace period.
const KICK_EVERY: u32 = 32;

/// A thread's retired versions, oldest first.
pub struct PolledLocal<'a> {
    rcu: &'a Rcu,
    queue: RefCell<VecDeque<(Cookie, *mut Node, usize)>>,
    since_kick: Cell<u32>,
}

impl Drop for PolledLocal<'_> {
    /// What is still waiting goes to the domain's ordinary deferred drop.
    fn drop(&mut self) {
        for (_, node, bytes) in self.queue.get_mut().drain(..) {
            // SAFETY: the node is live until its grace period.
            debug_assert_eq!(
                rcu_reclaim::ReclaimSize::reclaim_size(unsafe { &*node }),
                bytes
            );
            // SAFETY: each node came from `Box::into_raw`, was unlinked and
            // retired once (it is in this queue only); deferring its drop
            // keeps it alive for a grace period, and by pointer, as readers
            // may still hold it.
            unsafe { self.rcu.defer_drop_raw(node) };
        }
    }
}

/// A read-side section, with the thread's queue for `retire`.
pub struct PolledGuard<'a> {
    _section: ReadGuard<'a>,
    local: &'a PolledLocal<'a>,
}

impl Backend for OursPolled {
    const NAME: &'static str = "rcu-reclaim-polled";
    type Local<'a> = PolledLocal<'a>;
    type Guard<'a> = PolledGuard<'a>;

    fn local(&self) -> PolledLocal<'_> {
        PolledLocal {
            rcu: &self.rcu,
            queue: RefCell::new(VecDeque::new()),
            since_kick: Cell::new(0),
        }
    }

    #[inline]
    fn pin<'a>(&'a self, local: &'a PolledLocal<'_>) -> PolledGuard<'a> {
        PolledGuard {
            _section: self.rcu.read_lock(),
            local,
        }
    }

    unsafe fn retire(&self, guard: &PolledGuard<'_>, node: *mut Node, bytes: usize) {
        let local = guard.local;
        let mut queue = local.queue.borrow_mut();
        queue.push_back((self.rcu.get_state(), node, bytes));
        let kicks = local.since_kick.get() + 1;
        if kicks >= KICK_EVERY {
            self.rcu.start_poll();
            local.since_kick.set(0);
        } else {
            local.since_kick.set(kicks);
        }
        while let Some(&(cookie, old, _)) = queue.front() {
            if !self.rcu.poll(&cookie) {
                break;
            }
            queue.pop_front();
            // SAFETY: a full grace period has elapsed since `old` was
            // unlinked (its cookie is complete), so no section can still
            // hold it; it was retired once.
            unsafe { Node::free(old) };
        }
    }

    fn finish(self) {
        self.rcu.barrier();
    }
}

impl Contender for OursPolled {}
