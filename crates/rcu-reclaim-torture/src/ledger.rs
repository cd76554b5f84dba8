//! Every callback and deferred drop the torture queues is booked here when
//! queued and again when it runs, so a lost, doubled or early callback shows:
//! counts and a checksum of ids must match after the final barrier, and each
//! one checks, when it runs, that a grace period has elapsed since it was
//! queued.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use rcu_reclaim::topology::override_current_cpu;
use rcu_reclaim::Cookie;

use super::Shared;

/// The message of every injected panic (filtered by
/// [`silence_injected_panics`](super::silence_injected_panics)).
pub(crate) const INJECTED_PANIC: &str = "rcu-torture: injected callback panic";

/// Spreads ids over 64 bits so that a lost and a doubled callback cannot
/// cancel out in the checksum.
fn mix(id: u64) -> u64 {
    let mut z = id.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[derive(Default)]
pub(crate) struct Ledger {
    next_id: AtomicU64,
    pub(crate) queued: AtomicU64,
    queued_sum: AtomicU64,
    pub(crate) run: AtomicU64,
    run_sum: AtomicU64,
    /// Callbacks that ran before a grace period had elapsed since queueing.
    pub(crate) early: AtomicU64,
}

/// One booked callback: its id and the grace-period state when queued.
pub(crate) struct Ticket {
    id: u64,
    cookie: Cookie,
}

impl Ledger {
    fn issue(&self, sh: &Shared) -> Ticket {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.queued.fetch_add(1, Ordering::Relaxed);
        self.queued_sum.fetch_add(mix(id), Ordering::Relaxed);
        Ticket {
            id,
            cookie: sh.rcu.get_state(),
        }
    }

    fn redeem(&self, sh: &Shared, t: &Ticket) {
        if !sh.rcu.poll(&t.cookie) {
            self.early.fetch_add(1, Ordering::Relaxed);
        }
        self.run.fetch_add(1, Ordering::Relaxed);
        self.run_sum.fetch_add(mix(t.id), Ordering::Relaxed);
    }

    /// Whether everything booked has run exactly once (counts and checksum).
    pub(crate) fn settled(&self) -> bool {
        self.queued.load(Ordering::Relaxed) == self.run.load(Ordering::Relaxed)
            && self.queued_sum.load(Ordering::Relaxed) == self.run_sum.load(Ordering::Relaxed)
    }
}

/// What a booked callback does when it runs.
pub(crate) enum Action {
    Nothing,
    /// Counts itself (barrier rounds).
    Count(Arc<AtomicUsize>),
    /// Advances a ring element one stage and re-queues it the same way
    /// until the end of the pipe.
    Pipe(usize),
    /// Panics after being booked (the injected fault).
    Panic,
}

/// How a booked callback is queued.
#[derive(Clone, Copy)]
pub(crate) enum Via {
    Call,
    Hurry,
    Sized,
    Defer,
}

fn perform(sh: &Arc<Shared>, ticket: &Ticket, action: Action, via: Via) {
    sh.ledger.redeem(sh, ticket);
    match action {
        Action::Nothing => {}
        Action::Count(c) => {
            c.fetch_add(1, Ordering::Relaxed);
        }
        Action::Pipe(idx) => {
            if !sh.ring.advance(idx) {
                queue(sh, via, Action::Pipe(idx));
            }
        }
        Action::Panic => std::panic::panic_any(INJECTED_PANIC),
    }
}

/// A deferred drop whose drop runs the action. With `ANYWHERE` its type
/// declares that it drops anywhere (its drop takes no lock the retiring
/// thread holds: atomics, a re-queue, an injected panic), so retiring
/// threads free ready tokens themselves; without it, only workers, barrier
/// and reclaim do. Half the tokens go each way, in runs.
struct Token<const ANYWHERE: bool> {
    sh: Arc<Shared>,
    ticket: Ticket,
    action: Option<Action>,
}

// Owns no heap of its own (the `Arc` is shared): its inline bytes.
impl<const ANYWHERE: bool> rcu_reclaim::ReclaimSize for Token<ANYWHERE> {
    const DROPS_ANYWHERE: bool = ANYWHERE;
    fn reclaim_size(&self) -> usize {
        std::mem::size_of::<Self>()
    }
}

impl<const ANYWHERE: bool> Drop for Token<ANYWHERE> {
    fn drop(&mut self) {
        if let Some(a) = self.action.take() {
            perform(&self.sh, &self.ticket, a, Via::Defer);
        }
    }
}

/// Books and queues `action` through `via`.
pub(crate) fn queue(sh: &Arc<Shared>, via: Via, action: Action) {
    let ticket = sh.ledger.issue(sh);
    let s = sh.clone();
    let rcu = &sh.rcu;
    match via {
        Via::Call => rcu.call(move || perform(&s, &ticket, action, via)),
        Via::Hurry => rcu.call_hurry(move || perform(&s, &ticket, action, via)),
        Via::Sized => rcu.call_sized(move || perform(&s, &ticket, action, via), 64),
        // Runs of 1024 tickets each way, so that whole bulk pages are
        // plain (a page holding any other token is not).
        Via::Defer if (ticket.id >> 10) % 2 == 0 => rcu.defer_drop(Box::new(Token::<true> {
            sh: s,
            ticket,
            action: Some(action),
        })),
        Via::Defer => rcu.defer_drop(Box::new(Token::<false> {
            sh: s,
            ticket,
            action: Some(action),
        })),
    }
}

/// As [`queue`], acting as if on CPU `cpu` of the domain's topology.
pub(crate) fn queue_on(sh: &Arc<Shared>, cpu: Option<usize>, via: Via, action: Action) {
    if cpu.is_some() {
        override_current_cpu(cpu);
    }
    queue(sh, via, action);
    if cpu.is_some() {
        override_current_cpu(None);
    }
}

#[cfg(test)]
mod tests {
    use super::mix;

    #[test]
    fn ids_mix_apart() {
        assert_ne!(mix(1).wrapping_add(mix(2)), mix(0).wrapping_add(mix(3)));
        assert_ne!(mix(0), 0);
    }
}
