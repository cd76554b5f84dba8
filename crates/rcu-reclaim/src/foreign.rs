//! Readers outside this library that follow liburcu's *memb* read-side
//! protocol: C code built with `_LGPL_SOURCE` inlines liburcu's
//! `rcu_read_lock()`, which never calls into the library. It copies a
//! grace-period word the library owns into a per-thread counter of its own
//! (nesting counted in the low half), fences as the flavor asks, and clears
//! the nesting on its outermost `rcu_read_unlock()`. The drop-in
//! (`rcu-reclaim-urcu`) hands a domain both words (`Rcu::attach_foreign_reader`
//! and `Rcu::publish_foreign_gp_word`, in `raw.rs`), and every grace
//! period then also waits for such a counter:
//!
//! * the grace-period word mirrors the domain's reader counter: each grace
//!   period that bumps the counter stores it, as an *epoch*, in the word's
//!   high half, the low half holding liburcu's `URCU_GP_COUNT` (1), at the
//!   point where the domain's own readers see the new value;
//! * a foreign counter is quiescent for the grace period waiting for
//!   reader counter `new` when its nesting is 0, or its epoch (the word it
//!   copied at its outermost lock) is `new`'s or later, exactly as a slot
//!   of this domain is when it reads 0 or at least `new`.
//!
//! The reader's copy, its fence and the writer's barrier are the ones a
//! slot of this domain uses (`reader::section_enter`), so the same
//! argument makes them safe. Grace periods poll such a counter (a waiter
//! never parks on it: its unlock wakes no one here).

use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

/// Bits of a liburcu memb reader word below the epoch: the nesting count.
const SHIFT: u32 = usize::BITS / 2;

/// The nesting count of a reader word (liburcu's `URCU_GP_CTR_NEST_MASK`).
const NEST_MASK: usize = (1 << SHIFT) - 1;

/// The grace-period word for reader counter `ctr`: its epoch (the
/// counter's low half) above a nesting of 1 (`URCU_GP_COUNT`).
pub(crate) fn gp_word(ctr: u64) -> usize {
    ((ctr as usize & NEST_MASK) << SHIFT) | 1
}

/// Whether a foreign reader word `v` holds up the grace period waiting for
/// reader counter `new`: inside a section whose epoch is before `new`'s
/// (compared modulo the epoch's width: a grace period in progress holds
/// new ones back, so the two are never half the range apart).
fn holds_up(v: usize, new: u64) -> bool {
    if v & NEST_MASK == 0 {
        return false;
    }
    let behind = (new as usize & NEST_MASK).wrapping_sub(v >> SHIFT) & NEST_MASK;
    behind != 0 && behind <= NEST_MASK / 2
}

/// A slot's foreign counter, if one is attached.
#[derive(Debug, Default)]
pub(crate) struct ForeignReader {
    /// The counter (a C thread's liburcu reader block), or null.
    ctr: AtomicPtr<AtomicUsize>,
    /// Grace-period scans reading `ctr` now: a detach waits for them, so
    /// no scan reads a block after its thread let it go.
    scans: AtomicUsize,
}

impl ForeignReader {
    /// Whether the attached counter (if any) lets the grace period waiting
    /// for reader counter `new` end.
    pub(crate) fn quiescent(&self, new: u64) -> bool {
        if self.ctr.load(Ordering::Relaxed).is_null() {
            return true;
        }
        // Announce the scan before loading the pointer: `detach` clears it
        // before looking at `scans` (all SeqCst), so either this load sees
        // null or the detach waits for this scan.
        self.scans.fetch_add(1, Ordering::SeqCst);
        let p = self.ctr.load(Ordering::SeqCst);
        // SAFETY: non-null, so attached and not yet detached; `detach`
        // waits for this scan before its caller may let the block go.
        let quiet = p.is_null() || !holds_up(unsafe { &*p }.load(Ordering::Acquire), new);
        self.scans.fetch_sub(1, Ordering::Release);
        quiet
    }

    /// Whether the attached counter is inside a section. Only the owning
    /// thread asks, before it detaches: the block is its own, and live.
    pub(crate) fn in_section(&self) -> bool {
        let p = self.ctr.load(Ordering::Relaxed);
        // SAFETY: as above.
        !p.is_null() && unsafe { &*p }.load(Ordering::Relaxed) & NEST_MASK != 0
    }

    /// Attaches `ctr` in place of the counter attached before (detached
    /// first).
    pub(crate) fn attach(&self, ctr: *const AtomicUsize) {
        self.detach();
        self.ctr.store(ctr.cast_mut(), Ordering::SeqCst);
    }

    /// Detaches the counter and waits for the scans reading it.
    pub(crate) fn detach(&self) {
        if self
            .ctr
            .swap(std::ptr::null_mut(), Ordering::SeqCst)
            .is_null()
        {
            return;
        }
        while self.scans.load(Ordering::SeqCst) != 0 {
            std::hint::spin_loop();
        }
    }

    /// In a forked child, for a slot whose thread is not in the child:
    /// detaches (its block is that thread's, which the child lacks).
    pub(crate) fn reset_in_child(&self) {
        self.ctr.store(std::ptr::null_mut(), Ordering::Relaxed);
    }

    /// In a forked child, before any scan: forgets the scans in flight at
    /// the fork (their threads are not in the child; a detach would wait
    /// for them for ever).
    pub(crate) fn forget_scans_in_child(&self) {
        self.scans.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_section_holds_up_only_grace_periods_after_its_epoch() {
        let word = gp_word(5);
        assert_eq!(word & NEST_MASK, 1);
        // Outside a section (nesting 0): never.
        assert!(!holds_up(word - 1, 6));
        // Inside, copied at epoch 5: holds up the wait for 6, not for 5.
        assert!(holds_up(word, 6));
        assert!(holds_up(word + 2, 6)); // nested
        assert!(!holds_up(word, 5));
        assert!(!holds_up(gp_word(6), 6));
        // Across the epoch's wrap.
        let last = NEST_MASK as u64;
        assert!(holds_up(gp_word(last), last + 1));
        assert!(!holds_up(gp_word(last + 1), last + 1));
    }
}
