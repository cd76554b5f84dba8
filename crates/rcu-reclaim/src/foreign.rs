//! Readers outside this library that follow one of liburcu's read-side
//! protocols: C code built with `_LGPL_SOURCE` inlines liburcu's read side,
//! which never calls into the library. The drop-ins (`rcu-reclaim-urcu`,
//! `rcu-reclaim-urcu-qsbr`) hand a domain a grace-period word the inlined
//! code reads (`Rcu::publish_foreign_gp_word`, in `raw.rs`) and, per
//! registered thread, the counter it writes (`Rcu::attach_foreign_reader`,
//! `QsbrThread::attach_foreign_counter`); every grace period then also
//! waits for such a counter. The grace-period word mirrors the domain's
//! reader counter: each grace period that bumps the counter stores it, as
//! an *epoch*, at the point where the domain's own readers see the new
//! value.
//!
//! * **memb** (`rcu_read_lock` copies the word into the thread's counter at
//!   its outermost lock, counts nesting in the counter's low half, and
//!   clears the nesting at its outermost unlock): the word holds the epoch
//!   in its high half above liburcu's `URCU_GP_COUNT` (1). A counter holds
//!   up the grace period waiting for reader counter `new` while its nesting
//!   is not 0 and its epoch is before `new`'s: as a slot of this domain
//!   does while it reads neither 0 nor at least `new`. It stands beside the
//!   thread's slot (both must let the grace period end).
//! * **QSBR** (a quiescent state copies the word into the counter, going
//!   offline stores 0, going online copies the word): the word is the epoch
//!   times two plus liburcu's `URCU_QSBR_GP_ONLINE` (1). A counter holds up
//!   the grace period waiting for `new` while it is online (not 0) with an
//!   epoch before `new`'s. It stands for the thread's QSBR slot, whose own
//!   counter the inlined quiescent states never update.
//!
//! The reader's copy, its fences and the writer's barrier are the ones the
//! domain's own readers use (`reader::section_enter`, `reader::qsbr_report`),
//! so the same argument makes them safe. Epochs are compared modulo their
//! width: a grace period in progress holds new ones back, so two epochs in
//! play are never half the range apart. A grace period held up by a
//! foreign counter parks on the domain's foreign futex word as liburcu's
//! writers do (`GracePeriods::park_on_foreign`), or polls without one.

use std::sync::atomic::{AtomicI32, AtomicPtr, AtomicUsize, Ordering};

/// Bits of a liburcu memb reader word below the epoch: the nesting count.
const SHIFT: u32 = usize::BITS / 2;

/// The nesting count of a memb reader word (liburcu's
/// `URCU_GP_CTR_NEST_MASK`), and the memb epoch's width.
const NEST_MASK: usize = (1 << SHIFT) - 1;

/// The QSBR epoch's width: a word above its online bit.
const QSBR_MASK: usize = usize::MAX >> 1;

/// The grace-period word for reader counter `ctr`: for memb, its epoch
/// (the counter's low half) above a nesting of 1 (`URCU_GP_COUNT`); for
/// QSBR, its epoch times two plus the online bit (`URCU_QSBR_GP_ONLINE`).
pub(crate) fn gp_word(ctr: u64, qsbr: bool) -> usize {
    if qsbr {
        ((ctr as usize & QSBR_MASK) << 1) | 1
    } else {
        ((ctr as usize & NEST_MASK) << SHIFT) | 1
    }
}

/// Whether epoch `epoch` is before `new`'s, both of width `mask`.
fn before(epoch: usize, new: u64, mask: usize) -> bool {
    let behind = (new as usize & mask).wrapping_sub(epoch) & mask;
    behind != 0 && behind <= mask / 2
}

/// Whether a foreign reader word `v` holds up the grace period waiting for
/// reader counter `new` (see the module docs).
fn holds_up(v: usize, new: u64, qsbr: bool) -> bool {
    if qsbr {
        v != 0 && before(v >> 1, new, QSBR_MASK)
    } else {
        v & NEST_MASK != 0 && before(v >> SHIFT, new, NEST_MASK)
    }
}

/// What a slot's foreign counter says of a grace period.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// None is attached, or it lets the grace period end beside the
    /// slot's own counter (memb).
    Slot,
    /// It holds the grace period up.
    HeldUp,
    /// It lets the grace period end, and stands for the slot's own
    /// counter (QSBR).
    Quiescent,
}

/// A slot's foreign counter, if one is attached.
#[derive(Debug, Default)]
pub(crate) struct ForeignReader {
    /// The counter (a C thread's liburcu reader block), or null.
    ctr: AtomicPtr<AtomicUsize>,
    /// Whether it follows the QSBR protocol (else memb's).
    qsbr: std::sync::atomic::AtomicBool,
    /// QSBR: the block's `waiting` flag (a writer that parks raises it; the
    /// thread's next quiescent state wakes it), or null.
    waiting: AtomicPtr<AtomicI32>,
    /// Grace-period scans reading `ctr` now: a detach waits for them, so
    /// no scan reads a block after its thread let it go.
    scans: AtomicUsize,
}

impl ForeignReader {
    /// Runs `f` on the attached counter, its `waiting` flag (QSBR, if
    /// given) and whether it follows the QSBR protocol, as a scan that a
    /// detach waits for; `None` if none is attached.
    fn scan<R>(&self, f: impl FnOnce(&AtomicUsize, Option<&AtomicI32>, bool) -> R) -> Option<R> {
        if self.ctr.load(Ordering::Relaxed).is_null() {
            return None;
        }
        // Announce the scan before loading the pointer: `detach` clears it
        // before looking at `scans` (all SeqCst), so either this load sees
        // null or the detach waits for this scan.
        self.scans.fetch_add(1, Ordering::SeqCst);
        let p = self.ctr.load(Ordering::SeqCst);
        // SAFETY: non-null, so attached and not yet detached; `detach`
        // waits for this scan before its caller may let the block (and its
        // `waiting` flag) go.
        let r = unsafe { p.as_ref() }.map(|ctr| {
            // SAFETY: set with the counter, alive as long as its block.
            let waiting = unsafe { self.waiting.load(Ordering::Relaxed).as_ref() };
            f(ctr, waiting, self.qsbr.load(Ordering::Relaxed))
        });
        self.scans.fetch_sub(1, Ordering::Release);
        r
    }

    /// What the attached counter (if any) says of the grace period
    /// waiting for reader counter `new`.
    pub(crate) fn verdict(&self, new: u64) -> Verdict {
        self.scan(|ctr, _, qsbr| {
            if holds_up(ctr.load(Ordering::Acquire), new, qsbr) {
                Verdict::HeldUp
            } else if qsbr {
                Verdict::Quiescent
            } else {
                Verdict::Slot
            }
        })
        .unwrap_or(Verdict::Slot)
    }

    /// The attached counter's value (`None` if none is attached), for a
    /// stall report: a section of a C reader built with `_LGPL_SOURCE` (or
    /// a drop-in's registered thread) counts there, not in the slot.
    pub(crate) fn value(&self) -> Option<usize> {
        self.scan(|ctr, _, _| ctr.load(Ordering::Relaxed))
    }

    /// Whether the attached counter is inside a section (memb) or online
    /// (QSBR). Only the owning thread asks, before it detaches: the block
    /// is its own, and live.
    pub(crate) fn in_section(&self) -> bool {
        let p = self.ctr.load(Ordering::Relaxed);
        if p.is_null() {
            return false;
        }
        // SAFETY: as above.
        let v = unsafe { &*p }.load(Ordering::Relaxed);
        if self.qsbr.load(Ordering::Relaxed) {
            v != 0
        } else {
            v & NEST_MASK != 0
        }
    }

    /// Attaches `ctr`, following the QSBR protocol (with its `waiting`
    /// flag) or memb's (`waiting` null), in place of the counter attached
    /// before (detached first).
    pub(crate) fn attach(&self, ctr: *const AtomicUsize, qsbr: bool, waiting: *const AtomicI32) {
        self.detach();
        self.qsbr.store(qsbr, Ordering::Relaxed);
        self.waiting.store(waiting.cast_mut(), Ordering::Relaxed);
        self.ctr.store(ctr.cast_mut(), Ordering::SeqCst);
    }

    /// Raises the attached counter's `waiting` flag (QSBR), so that its
    /// thread's next quiescent state wakes a writer parked on the foreign
    /// futex word.
    pub(crate) fn raise_waiting(&self) {
        self.scan(|_, waiting, _| {
            if let Some(w) = waiting {
                w.store(1, Ordering::Relaxed);
            }
        });
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
    fn a_memb_section_holds_up_only_grace_periods_after_its_epoch() {
        let word = gp_word(5, false);
        assert_eq!(word & NEST_MASK, 1);
        // Outside a section (nesting 0): never.
        assert!(!holds_up(word - 1, 6, false));
        // Inside, copied at epoch 5: holds up the wait for 6, not for 5.
        assert!(holds_up(word, 6, false));
        assert!(holds_up(word + 2, 6, false)); // nested
        assert!(!holds_up(word, 5, false));
        assert!(!holds_up(gp_word(6, false), 6, false));
        // Across the epoch's wrap.
        let last = NEST_MASK as u64;
        assert!(holds_up(gp_word(last, false), last + 1, false));
        assert!(!holds_up(gp_word(last + 1, false), last + 1, false));
    }

    #[test]
    fn a_qsbr_counter_holds_up_grace_periods_while_online_on_an_old_epoch() {
        let word = gp_word(5, true);
        assert_eq!(word & 1, 1, "online bit");
        assert!(!holds_up(0, 6, true), "offline");
        assert!(holds_up(word, 6, true), "reported before the grace period");
        assert!(!holds_up(word, 5, true));
        assert!(!holds_up(gp_word(6, true), 6, true), "reported since");
        let last = QSBR_MASK as u64;
        assert!(holds_up(gp_word(last, true), last + 1, true));
        assert!(!holds_up(gp_word(last + 1, true), last + 1, true));
    }
}
