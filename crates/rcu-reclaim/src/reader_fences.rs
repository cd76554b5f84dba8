//! Adaptive reader fences: a memb domain whose grace periods come so often
//! that their `membarrier`s cost more than fences would, switches its
//! readers to fences and its grace periods to a fence of their own, and
//! switches back once grace periods are rare again.
//!
//! The mode is a flag of the domain's registry (`Registry::fence_reads`).
//! An outermost read-side entry stores its snapshot of the readers' counter
//! in its slot, then loads the flag and, if it is set, issues a full fence
//! (`reader::section_enter`). An mb or QSBR domain (and any domain under
//! Miri or loom, which have no `membarrier`) holds the flag set for good,
//! so the read side tests the flag instead of the flavor: a compare with a
//! memory operand and a branch.
//!
//! # Why a grace period in fence mode may skip `membarrier`
//!
//! A grace period that starts while fence mode is **armed** issues a
//! `SeqCst` fence where it would have issued `membarrier`, then bumps the
//! counter and scans the slots, as the mb flavor does. Armed means: the
//! flag was set, and a `membarrier` was issued after it, by an earlier
//! grace period's start. Take a reader whose section is open during such a
//! grace period `G`:
//!
//! * If its load of the flag (after its slot store, in program order) saw
//!   it set, it fenced before its section's loads: the mb flavor's argument
//!   (store-fence-load on each side) holds, so either `G`'s scan sees the
//!   slot, or the section sees everything unlinked before `G`.
//! * If that load saw the flag clear, it came before the `membarrier` `M`
//!   issued after the flag was set: `M` makes every thread of the process
//!   run a full barrier (or be descheduled, which is one) once the flag is
//!   visible, and a load after that barrier sees it. So the reader's slot
//!   store, earlier in program order than that load, was visible to every
//!   thread when `M` returned, which was before `G` started (`M` came from
//!   an earlier grace period; grace periods start one at a time under
//!   `gp_lock`). `G`'s scan then sees the slot (or its later `0`, whose
//!   `Release` orders the section's loads before it), and its snapshot,
//!   taken before `M`, is below what `G` waits for.
//!
//! The flag is set and cleared only by a grace period's start, under
//! `gp_lock`, after the grace period before it has completed. Setting it,
//! that start still issues `membarrier` (which arms the mode); clearing it
//! disarms at once, and every start after it issues `membarrier`, which
//! covers readers whether they fence or not. Loading the flag *after* the
//! slot store is what makes the second case hold: a reader that loaded it
//! before its store could load it clear, be interrupted by `M`, and store
//! its slot after `M`, unfenced.
//!
//! What stays on `membarrier` in fence mode: a writer parking on a reader
//! (the reader's exit pairs a compiler fence with it), a steal of a
//! thread's page of deferred drops (the owner's buffer pairs the same
//! way), and a domain with foreign readers (C built with liburcu's
//! `_LGPL_SOURCE`, whose inlined read side knows nothing of the flag):
//! such a domain never enters the mode, and one that gains foreign readers
//! leaves it (`GracePeriods::publish_foreign_word`: `membarrier` first,
//! then the flag cleared, as a grace period that started with a fence may
//! be in progress then; the other order is unsound on Arm, see there).
//!
//! # When
//!
//! `policy::fence_reads` decides once per [`WINDOW_US`] of grace periods,
//! from their rate and the mean cost of this domain's `membarrier`s
//! (`Stats::membarrier_us`): fence mode when `membarrier` would take more
//! than `policy::FENCE_READS_ON_SHARE` of a CPU, back to `membarrier`
//! under a quarter of that.

use std::sync::atomic::{AtomicBool as StdAtomicBool, AtomicU64 as StdAtomicU64, Ordering};

use crate::sync::AtomicBool;

/// How often (in µs of grace periods) the mode is decided again.
pub(crate) const WINDOW_US: u64 = 20_000;

/// The mode's state, kept by a domain's grace periods. Every field is
/// written only under `gp_lock`, so relaxed atomics suffice.
pub(crate) struct ReaderFences {
    /// Off for good (`Config::adaptive_reader_fences(false)`), or the flag
    /// is set for good (mb, QSBR): nothing to decide.
    fixed: bool,
    /// The flag is set and a `membarrier` has been issued since: a grace
    /// period may start with a fence.
    armed: StdAtomicBool,
    /// When the current window began (µs on the domain's clock), and the
    /// grace periods started in it.
    window_start_us: StdAtomicU64,
    window_gps: StdAtomicU64,
    /// Grace periods started with a fence instead of `membarrier`, and
    /// times the mode was switched on.
    pub(crate) fenced_gps: StdAtomicU64,
    pub(crate) switches_on: StdAtomicU64,
}

/// What a grace period's start issues as its writer barrier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StartBarrier {
    /// The flavor's barrier (`membarrier` for memb).
    Flavor,
    /// A full fence: fence mode is armed.
    Fence,
}

impl ReaderFences {
    /// The mode of a new domain: `fixed_on` for a domain whose readers
    /// always fence (the flag starts set),
    /// `adaptive` whether a memb domain may switch.
    pub(crate) fn new(fixed_on: bool, adaptive: bool) -> Self {
        ReaderFences {
            fixed: fixed_on || !adaptive,
            armed: StdAtomicBool::new(false),
            window_start_us: StdAtomicU64::new(0),
            window_gps: StdAtomicU64::new(0),
            fenced_gps: StdAtomicU64::new(0),
            switches_on: StdAtomicU64::new(0),
        }
    }

    /// With `gp_lock` held, at a grace period's start (`now_us` on the
    /// domain's clock; `membarrier_ns_each` the mean cost so far, if any
    /// was issued; `foreign` whether the domain has foreign readers):
    /// counts it, decides the mode at the end of a window (setting or
    /// clearing the flag), and says which barrier to issue. A
    /// caller told [`StartBarrier::Flavor`] calls
    /// [`issued_membarrier`](Self::issued_membarrier) after it.
    pub(crate) fn at_start(
        &self,
        fence_reads: &AtomicBool,
        now_us: u64,
        membarrier_ns_each: Option<u64>,
        foreign: bool,
    ) -> StartBarrier {
        if self.fixed {
            return StartBarrier::Flavor;
        }
        let on = fence_reads.load(Ordering::Relaxed);
        let gps = self.window_gps.load(Ordering::Relaxed) + 1;
        let start = self.window_start_us.load(Ordering::Relaxed);
        let elapsed = now_us.saturating_sub(start);
        let want = if foreign {
            Some(false)
        } else if start == 0 || elapsed >= WINDOW_US {
            let want =
                start != 0 && crate::policy::fence_reads(on, gps, elapsed, membarrier_ns_each);
            self.window_start_us.store(now_us.max(1), Ordering::Relaxed);
            self.window_gps.store(0, Ordering::Relaxed);
            Some(want)
        } else {
            self.window_gps.store(gps, Ordering::Relaxed);
            None
        };
        match want {
            Some(true) if !on => {
                fence_reads.store(true, Ordering::Relaxed);
                self.switches_on.fetch_add(1, Ordering::Relaxed);
                // Armed by this start's `membarrier` (issued_membarrier).
                StartBarrier::Flavor
            }
            Some(false) if on => {
                self.disarm(fence_reads);
                StartBarrier::Flavor
            }
            _ if on && self.armed.load(Ordering::Relaxed) => {
                self.fenced_gps.fetch_add(1, Ordering::Relaxed);
                StartBarrier::Fence
            }
            _ => StartBarrier::Flavor,
        }
    }

    /// With `gp_lock` held, after a `membarrier` issued once `at_start` had
    /// decided: with the flag set, fence mode is armed from now on.
    pub(crate) fn issued_membarrier(&self, fence_reads: &AtomicBool) {
        if !self.fixed && fence_reads.load(Ordering::Relaxed) {
            self.armed.store(true, Ordering::Relaxed);
        }
    }

    /// With `gp_lock` held: leaves fence mode (the flag cleared, disarmed);
    /// every grace period from now on issues `membarrier`.
    pub(crate) fn disarm(&self, fence_reads: &AtomicBool) {
        if self.fixed {
            return;
        }
        fence_reads.store(false, Ordering::Relaxed);
        self.armed.store(false, Ordering::Relaxed);
    }

    /// Whether a memb domain's readers fence now because its grace periods
    /// switched them (never for a domain whose readers fence for good).
    pub(crate) fn switched_on(&self, fence_reads: &AtomicBool) -> bool {
        !self.fixed && fence_reads.load(Ordering::Relaxed)
    }

    /// Whether fence mode is armed: a grace period started now would start
    /// with a fence, not a `membarrier`, unless its own
    /// [`at_start`](Self::at_start) switches the mode (the retiring
    /// threads' pace reads it: under `gp_lock`, before that call, in
    /// `try_advance`; without it, a relaxed load that may be stale, in the
    /// early-page look of `try_push_entry`). A hint for the pace only:
    /// nothing that orders readers reads it.
    pub(crate) fn armed_now(&self) -> bool {
        !self.fixed && self.armed.load(Ordering::Relaxed)
    }

    /// Whether the domain's readers fence now.
    pub(crate) fn on(fence_reads: &AtomicBool) -> bool {
        fence_reads.load(Ordering::Relaxed)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    const BUSY: Option<u64> = Some(15_000); // 15 µs a membarrier

    /// Runs `gps` grace-period starts spread evenly over one window from
    /// `t0`; returns the barriers they were told to issue.
    fn window(m: &ReaderFences, ctr: &AtomicBool, t0: u64, gps: u64) -> Vec<StartBarrier> {
        (0..gps)
            .map(|i| {
                let b = m.at_start(ctr, t0 + i * WINDOW_US / gps, BUSY, false);
                if b == StartBarrier::Flavor {
                    m.issued_membarrier(ctr);
                }
                b
            })
            .collect()
    }

    #[test]
    fn frequent_grace_periods_switch_to_fences_after_one_membarrier() {
        let m = ReaderFences::new(false, true);
        let ctr = AtomicBool::new(false);
        // 200 in 20 ms: 10,000 a second, 15% of a CPU in membarrier.
        assert!(window(&m, &ctr, 1, 200)
            .iter()
            .all(|b| *b == StartBarrier::Flavor));
        assert!(!ReaderFences::on(&ctr));
        let next = window(&m, &ctr, 1 + WINDOW_US, 200);
        // The window's first start sets the flag and still issues
        // membarrier; every one after it fences.
        assert!(ReaderFences::on(&ctr));
        assert_eq!(next[0], StartBarrier::Flavor);
        assert!(next[1..].iter().all(|b| *b == StartBarrier::Fence));
        assert_eq!(m.switches_on.load(Ordering::Relaxed), 1);
        // What the retiring threads' pace reads: starts fence now.
        assert!(m.armed_now());
    }

    #[test]
    fn rare_grace_periods_switch_back_at_once() {
        let m = ReaderFences::new(false, true);
        let ctr = AtomicBool::new(false);
        window(&m, &ctr, 1, 200);
        window(&m, &ctr, 1 + WINDOW_US, 200);
        assert!(ReaderFences::on(&ctr));
        // Two in the next window: far under the mark.
        let rare = window(&m, &ctr, 1 + 2 * WINDOW_US, 2);
        assert_eq!(rare[0], StartBarrier::Fence, "decided at the window's end");
        let after = window(&m, &ctr, 1 + 3 * WINDOW_US, 2);
        assert!(!ReaderFences::on(&ctr));
        assert!(!m.armed_now(), "starts issue membarrier again");
        assert!(after.iter().all(|b| *b == StartBarrier::Flavor));
    }

    #[test]
    fn a_trickle_never_switches() {
        let m = ReaderFences::new(false, true);
        let ctr = AtomicBool::new(false);
        for w in 0..10 {
            let all = window(&m, &ctr, 1 + w * WINDOW_US, 5);
            assert!(all.iter().all(|b| *b == StartBarrier::Flavor));
        }
        assert!(!ReaderFences::on(&ctr));
    }

    #[test]
    fn foreign_readers_keep_membarrier_and_leave_fence_mode() {
        let m = ReaderFences::new(false, true);
        let ctr = AtomicBool::new(false);
        window(&m, &ctr, 1, 200);
        window(&m, &ctr, 1 + WINDOW_US, 200);
        assert!(ReaderFences::on(&ctr));
        assert_eq!(
            m.at_start(&ctr, 2 + 2 * WINDOW_US, BUSY, true),
            StartBarrier::Flavor
        );
        assert!(!ReaderFences::on(&ctr));
        m.issued_membarrier(&ctr);
        assert_eq!(
            m.at_start(&ctr, 3 + 2 * WINDOW_US, BUSY, true),
            StartBarrier::Flavor
        );
    }

    #[test]
    fn a_fixed_mode_never_changes_the_flag() {
        for (fixed_on, adaptive) in [(true, true), (false, false)] {
            let m = ReaderFences::new(fixed_on, adaptive);
            let ctr = AtomicBool::new(fixed_on);
            window(&m, &ctr, 1, 500);
            window(&m, &ctr, 1 + WINDOW_US, 500);
            assert_eq!(ctr.load(Ordering::Relaxed), fixed_on);
        }
    }
}
