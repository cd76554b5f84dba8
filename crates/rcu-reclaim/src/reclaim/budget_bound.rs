//! A budget's bound on its domain's garbage: reclaim brings the usage
//! down to the budget's `high` watermark, and every byte that waits for a
//! grace period past it is a byte of live entries its shrinkers must
//! evict instead. So an RCU-aware [`MemoryBudget`](super::MemoryBudget)
//! holds its domain's garbage to half the room left below `high`, and at
//! least one reclaim step (the engine's garbage bound, as a cgroup's
//! limit sets it, with the budget's usage and a smaller floor). While
//! usage is well below `high` the allowance is large and nothing waits.
//!
//! In `rcu-reclaim bench --scenario budget` (64 MiB, two writers of
//! 1–8 KiB values on two cores) the peak garbage fell from 3.9–4.6 MiB to
//! 0.67–1.03 (2.2–3.4× the retire rate times the mean grace-period wait on
//! a quiet machine, 1.3–1.8× on a loaded one), the mean from 0.55 to 0.18,
//! at the same update rate; bounded at `low` instead, the peak was
//! 1.6–3.0 MiB.
//!
//! Retiring threads read the usage the budget last read (its checks and
//! `rcu-kswapd`'s looks, every 10 ms at most apart), never the budget's
//! usage function itself: that function is the caller's, and a retire may
//! run under the caller's locks. In a forked child, which has no
//! `rcu-kswapd`, the bound reads no usage at all (nothing waits at it). A
//! bound the caller, a cgroup or another budget set on the domain first
//! stays, and the budget's waits in line until it goes; one the caller or
//! a cgroup sets later replaces the budget's, which waits in line again
//! (`Rcu::unbound_garbage` removes only the caller's).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::callbacks::Headroom;
use crate::domain::Rcu;

/// No usage read yet.
const UNREAD: usize = usize::MAX;

/// The usage the budget read last, for its bound's reader.
pub(super) struct SeenUsage {
    usage: AtomicUsize,
    /// The process whose `rcu-kswapd` reads the usage (the budget's).
    pid: u32,
}

impl SeenUsage {
    pub(super) fn new() -> Arc<SeenUsage> {
        Arc::new(SeenUsage {
            usage: AtomicUsize::new(UNREAD),
            pid: std::process::id(),
        })
    }

    /// Records a read of the budget's usage.
    pub(super) fn saw(&self, usage: usize) {
        self.usage.store(usage.min(UNREAD - 1), Ordering::Relaxed);
    }

    /// The last read, if any; none in a forked child, where the budget's
    /// `rcu-kswapd` does not exist: the read the child inherited stayed
    /// for good (a usage at `high` held its memory state at `Short`, and
    /// its writers to the bound of a reclaim step, however far the usage
    /// fell), where the bound counts on reads 10 ms apart at most.
    fn last(&self) -> Option<usize> {
        if std::process::id() != self.pid {
            return None;
        }
        match self.usage.load(Ordering::Relaxed) {
            UNREAD => None,
            u => Some(u),
        }
    }
}

/// The bound a budget set on its domain, removed with the budget.
pub(super) struct BudgetBound {
    rcu: Rcu,
    headroom: Arc<Headroom>,
}

impl BudgetBound {
    /// Bounds `rcu`'s garbage by `mark` (the budget's `high`), with the
    /// usage `seen` last and at least `floor` bytes allowed, while no
    /// other bound is set: one set first (the caller's, a cgroup's, an
    /// earlier budget's) stays, and this one takes over as it goes.
    pub(super) fn bind(rcu: &Rcu, mark: usize, floor: usize, seen: Arc<SeenUsage>) -> BudgetBound {
        let headroom = Arc::new(Headroom::for_budget(
            mark,
            Box::new(move || seen.last()),
            floor,
            "near the high watermark of its MemoryBudget",
        ));
        rcu.inner().callbacks.bind_budget_headroom(&headroom);
        BudgetBound {
            rcu: rcu.clone(),
            headroom,
        }
    }

    /// Removes the bound (the next in line takes over, if it bounds the
    /// garbage), or takes it out of the line.
    pub(super) fn release(self) {
        self.rcu
            .inner()
            .callbacks
            .clear_headroom_if(&self.headroom, false);
    }

    /// As `release`, in a forked child: only if the limit's lock is free
    /// (a parent thread may have held it at the fork).
    pub(super) fn release_in_child(self) {
        self.rcu
            .inner()
            .callbacks
            .clear_headroom_if(&self.headroom, true);
    }
}
