//! The wait for readers: a grace period's scan of the slots, which spins,
//! yields, then parks on a futex that the reader's outermost unlock wakes
//! (normal mode) or keeps yielding (expedited), and the abandoned slots
//! whose threads are gone.

use std::hint::spin_loop;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{bump, GracePeriods, WaitMode};
use crate::reader::{Registry, Slot};
use crate::sync::{lock, ord_for_loom, thread};

/// Busy-wait rounds before a waiter starts yielding.
pub(super) const SPIN_ROUNDS: u32 = 100;
/// Yield rounds (after spinning) before a normal waiter parks.
pub(super) const YIELD_ROUNDS: u32 = 20;

/// Under loom (no clock), how often a yielding waiter checks for stalls.
/// Elsewhere an expedited waiter, which never parks, reads the clock at
/// every yield: on an oversubscribed CPU one yield can take a whole time
/// slice, and 1024 of them outlasted the stalls they were meant to catch.
const STALL_CHECK_YIELDS: u32 = 1024;

/// After a normal waiter's first park on a slot, it sleeps this long,
/// doubling up to `PARK_BACKOFF_MAX`, between looks (see `wait_for_readers`).
#[cfg(not(loom))]
const PARK_BACKOFF_MIN: Duration = Duration::from_micros(20);
#[cfg(not(loom))]
const PARK_BACKOFF_MAX: Duration = Duration::from_millis(1);

/// The longest a waiter parks on the foreign futex word before it looks
/// again: a wake-up that never comes (see `park_on_foreign`) costs this.
#[cfg(not(loom))]
const FOREIGN_PARK_MAX: Duration = Duration::from_millis(10);
/// How often a waiter looks whether the thread of an abandoned slot (one
/// that exited inside a section) is gone yet: its thread-local destructors
/// usually take microseconds.
#[cfg(not(loom))]
const ABANDONED_LOOK: Duration = Duration::from_micros(200);
/// How often a waiter looks again at a slot whose thread is gone inside a
/// guard's section (never ended: see `reap_if_exited`).
#[cfg(not(loom))]
const ABANDONED_FOR_GOOD_LOOK: Duration = Duration::from_millis(100);

/// How long an expedited waiter yields to a reader still in its section
/// before it parks as a normal waiter does (woken by the reader's exit):
/// one that yielded for as long as a reader stayed in its section (a reader
/// held up for seconds under memory pressure, which expedites) kept the
/// grace-period thread at 87 % of a core. Longer than a time slice or two,
/// so that a reader merely preempted on a busy machine is yielded to, not
/// parked on (a park makes every reader's exit wake the waiter through a
/// system call; 2 ms looked slower in update-heavy on two cores).
#[cfg(not(loom))]
const EXPEDITED_YIELD_FOR: Duration = Duration::from_millis(20);

/// Whether an expedited waiter still yields (see [`EXPEDITED_YIELD_FOR`]).
#[cfg(not(loom))]
fn expedited_yields(w: &ReaderWait) -> bool {
    w.started.elapsed() < EXPEDITED_YIELD_FOR
}

#[cfg(loom)]
fn expedited_yields(_: &ReaderWait) -> bool {
    true
}

/// Whether a QSBR waiter past its [`SPIN_ROUNDS`] still spins (see
/// [`QSBR_SPIN_FOR`]): until it has waited that long, then never again in
/// this grace period.
#[cfg(not(loom))]
fn qsbr_spins(w: &mut ReaderWait) -> bool {
    if w.spun {
        return false;
    }
    if w.rounds % QSBR_SPIN_CLOCK_ROUNDS != 0 || w.started.elapsed() < QSBR_SPIN_FOR {
        return true;
    }
    w.spun = true;
    false
}

#[cfg(loom)]
fn qsbr_spins(_: &mut ReaderWait) -> bool {
    false
}

/// How long a QSBR waiter spins on a thread that has not reported before
/// it parks (it spins [`SPIN_ROUNDS`] rounds at least). A QSBR thread moves
/// on only at its next quiescent state, so a park costs the report a
/// futex wake and the waiter a wake-up. Spinning a fixed number of rounds
/// (about 5 µs) parked most waits on threads that report every 10 µs, and
/// with 4 and 8 such threads on 16 cores `synchronize` took 1.13–1.29×
/// liburcu-qsbr's mean, whose waiter scans every late reader 100 times
/// (longer, the more readers) before it parks. Threads that report every
/// 10 µs are then waited for without a park; one that reports rarely costs
/// the waiter this much CPU, once per grace period.
#[cfg(not(loom))]
const QSBR_SPIN_FOR: Duration = Duration::from_micros(25);
/// A QSBR waiter spinning for [`QSBR_SPIN_FOR`] reads the clock once per
/// this many rounds.
#[cfg(not(loom))]
const QSBR_SPIN_CLOCK_ROUNDS: u32 = 16;

/// What `reap_if_exited` did with an abandoned slot.
#[cfg(not(loom))]
enum Reap {
    /// Its thread is gone and it held raw sections only: ended. Or its
    /// last guard handed it back meanwhile: no longer abandoned.
    Ended,
    /// Its thread still runs its thread-local destructors.
    NotYet,
    /// Its thread is gone inside a guard's section: only that guard's (or
    /// registration's) drop ends it, never a grace period.
    Never,
}

/// A waiter's progress through one grace period's readers (kept across
/// the sleeps it takes without `gp_lock`).
pub(super) struct ReaderWait {
    /// The readers' counter value the grace period waits for.
    pub(super) new: u64,
    /// When this waiter began waiting for it (for stall reports).
    started: Instant,
    rounds: u32,
    /// A QSBR waiter has spun for [`QSBR_SPIN_FOR`]: it parks from now on.
    spun: bool,
    /// The slot waited for last (its address), and the waits spent parked
    /// or asleep on it.
    slot: usize,
    parks: u32,
}

impl ReaderWait {
    pub(super) fn new(new: u64) -> Self {
        ReaderWait {
            new,
            started: Instant::now(),
            rounds: 0,
            spun: false,
            slot: 0,
            parks: 0,
        }
    }
}

/// Whether `slot`'s reader is outside any section, or began its section
/// after the readers' counter reached `new` (so it cannot hold anything the
/// grace period waiting for `new` protects).
pub(super) fn slot_quiescent(slot: &Slot, new: u64) -> bool {
    let v = slot
        .ctr
        .load(ord_for_loom("gp.slot_quiescent.acquire", Ordering::Acquire));
    #[cfg(not(loom))]
    match slot.foreign.verdict(new) {
        crate::foreign::Verdict::Slot => {}
        crate::foreign::Verdict::HeldUp => return false,
        crate::foreign::Verdict::Quiescent => return true,
    }
    v == 0 || v >= new
}

impl GracePeriods {
    /// Waits until every slot reads `0` or at least `w.new`, or, in normal
    /// mode once this grace period has parked, until the next look is due:
    /// returns how long to sleep first (the caller sleeps without
    /// `gp_lock`, then calls again). `None`: every reader has moved on.
    pub(super) fn wait_for_readers(
        &self,
        registry: &Registry,
        w: &mut ReaderWait,
        mode: WaitMode,
    ) -> Option<Duration> {
        let new = w.new;
        let quiescent = |slot: &Slot| slot_quiescent(slot, new);
        // A QSBR thread moves on only at its next quiescent state, which
        // wakes a parked writer: a yield there only gives the CPU away for
        // a time slice on a busy machine (p99 of 12-19 ms against
        // liburcu-qsbr's 19 us, which spins then parks).
        let qsbr = self.registry.flavor == crate::Flavor::Qsbr;
        let yield_rounds = if qsbr { 0 } else { YIELD_ROUNDS };
        let mut pause: Option<Duration> = None;
        registry.for_each_slot(|slot| {
            // Parks once per slot: any reader's outermost unlock (or QSBR
            // report) wakes a parked writer, so a slot held in a long
            // section while others come and go would cost a `membarrier`
            // (and the readers a futex wake) per wake-up. After that, sleep
            // and look again.
            if pause.is_none() && !quiescent(slot) && w.slot != slot as *const Slot as usize {
                w.slot = slot as *const Slot as usize;
                w.parks = 0;
            }
            while pause.is_none() && !quiescent(slot) {
                // A thread that exited inside a section (see
                // `reap_if_exited`): polled, never parked on, as no section
                // exit of a gone thread will wake this waiter.
                #[cfg(not(loom))]
                if slot.abandoned.load(Ordering::Relaxed) {
                    match self.reap_if_exited(slot) {
                        Reap::Ended => {}
                        Reap::NotYet => {
                            self.check_stall(slot, w.started);
                            pause = Some(ABANDONED_LOOK);
                        }
                        // Only a drop on a gone thread could end it: look
                        // again at the stall checks' pace.
                        // Reported at once, not after the stall timeout:
                        // nothing can end this section any more.
                        Reap::Never => {
                            self.report_stall(slot, w.started.elapsed(), Duration::ZERO);
                            pause = Some(ABANDONED_FOR_GOOD_LOOK);
                        }
                    }
                    continue;
                }
                w.rounds = w.rounds.saturating_add(1);
                if !cfg!(loom) && (w.rounds <= SPIN_ROUNDS || (qsbr && qsbr_spins(w))) {
                    spin_loop();
                    continue;
                }
                if cfg!(loom)
                    || (mode == WaitMode::Expedited && expedited_yields(w))
                    || w.rounds <= SPIN_ROUNDS + yield_rounds
                {
                    if w.rounds % STALL_CHECK_YIELDS == 0
                        || (!cfg!(loom) && mode == WaitMode::Expedited)
                    {
                        self.check_stall(slot, w.started);
                    }
                    if cfg!(loom) {
                        thread::yield_now();
                        continue;
                    }
                    // Yield without `gp_lock` (the caller drops it): a
                    // waiter descheduled at its yield on a busy machine
                    // held the lock for a time slice, so no retiring
                    // thread's `try_advance` could complete the grace
                    // period meanwhile; under overload (expedited) that
                    // cut them to a few hundred a second and kept the
                    // backlog overloaded.
                    pause = Some(Duration::ZERO);
                    continue;
                }
                #[cfg(not(loom))]
                {
                    let backoff =
                        (PARK_BACKOFF_MIN * (1u32 << w.parks.min(6))).min(PARK_BACKOFF_MAX);
                    if slot.foreign.verdict(new) == crate::foreign::Verdict::HeldUp {
                        // A foreign counter (C built with `_LGPL_SOURCE`):
                        // its inlined code wakes no one here, the
                        // drop-in's own calls do. Parked each round, for
                        // the backoff at most: woken at once by the
                        // drop-in's report, polled for the inlined one.
                        if !self.park_on_foreign(
                            registry,
                            slot,
                            new,
                            &quiescent,
                            w.started,
                            FOREIGN_PARK_MAX,
                        ) {
                            self.park_on(registry, slot, &quiescent, w.started, backoff);
                        }
                    } else if w.parks == 0 {
                        self.park_on(registry, slot, &quiescent, w.started, Duration::MAX);
                    } else {
                        let limit = self.check_stall(slot, w.started);
                        pause = Some(backoff.min(limit));
                    }
                }
                w.parks = w.parks.saturating_add(1);
            }
        });
        pause
    }

    /// With `gp_lock` held, for a slot whose thread exited inside a
    /// section (abandoned, its section open: a guard kept in a
    /// thread-local destroyed after the thread's registration, a leaked
    /// guard or online QSBR registration, a raw section never unlocked).
    ///
    /// Inside raw sections only, once the thread is gone no code of it can
    /// read any more, and safe code got no reference from a raw section,
    /// so the section is ended here (the slot stays abandoned, never
    /// reused): [`Reap::Ended`]. While the thread still runs its
    /// thread-local destructors, a guard there may still read:
    /// [`Reap::NotYet`].
    ///
    /// A guard's section (not `Slot::raw_only`) is never ended here, even
    /// once the thread is gone ([`Reap::Never`]): a leaked guard (or
    /// registration) lends `&'static T`, and `&T` is `Send` for `T: Sync`,
    /// so another thread may still read what was loaded under it (it read
    /// freed memory when this ended the section). Such a slot holds grace
    /// periods up for good, as a leaked guard does on a live thread; the
    /// stall warning names the thread.
    #[cfg(not(loom))]
    fn reap_if_exited(&self, slot: &Slot) -> Reap {
        // Held throughout: a guard's last drop hands an abandoned slot
        // back under this lock (`reader::release_abandoned`), and another
        // thread may claim it at once; the section ended here must be the
        // gone thread's, never the new owner's.
        let owner = lock(&slot.owner);
        if !slot.abandoned.load(Ordering::Relaxed) {
            // Handed back meanwhile: an ordinary slot again (the caller
            // looks at it afresh).
            return Reap::Ended;
        }
        if !crate::sys::thread_exited(owner.tid) {
            return Reap::NotYet;
        }
        if !slot.raw_only.load(Ordering::Relaxed) {
            return Reap::Never;
        }
        slot.ctr
            .store(0, ord_for_loom("gp.reap.release", Ordering::Release));
        Reap::Ended
    }

    /// Parks until a reader leaves its section (or a stall check is due).
    #[cfg(not(loom))]
    fn park_on(
        &self,
        registry: &Registry,
        slot: &Slot,
        quiescent: &dyn Fn(&Slot) -> bool,
        started: Instant,
        at_most: Duration,
    ) {
        let timeout = self.check_stall(slot, started).min(at_most);
        registry.waiter.store(-1, Ordering::Relaxed);
        // Pairs with the reader's fence between clearing its slot and reading
        // `waiter`: either we see the slot cleared, or the reader sees -1 and
        // wakes us.
        self.writer_barrier();
        // Abandoned meanwhile (its thread exiting): polled instead.
        if quiescent(slot) || slot.abandoned.load(Ordering::Relaxed) {
            registry.waiter.store(0, Ordering::Relaxed);
            return;
        }
        bump(&self.counters.writer_parks);
        crate::sys::futex_wait(&registry.waiter, -1, timeout);
    }

    /// With `gp_lock` held, for a slot held up by its foreign counter:
    /// parks on the domain's foreign futex word as liburcu's writers do
    /// (-1 in the word, the counter's `waiting` flag raised for QSBR, the
    /// writer's barrier, a last look, then a wait that a reader seeing -1
    /// ends by storing 0 and waking it). Returns `false`, doing nothing, if
    /// the domain has no such word.
    #[cfg(not(loom))]
    fn park_on_foreign(
        &self,
        registry: &Registry,
        slot: &Slot,
        new: u64,
        quiescent: &dyn Fn(&Slot) -> bool,
        started: Instant,
        at_most: Duration,
    ) -> bool {
        let futex = registry.foreign_futex.load(ord_for_loom(
            "gp.park_on_foreign.acquire",
            Ordering::Acquire,
        ));
        if futex.is_null() {
            return false;
        }
        // SAFETY: a `&'static AtomicI32` (`Rcu::publish_foreign_futex`).
        let futex = unsafe { &*futex };
        // At most `at_most`: a wake-up can still be missed (the counter
        // detached by a thread's exit, or the foreign section ended before
        // the -1 below while the slot's own section holds on, whose end
        // wakes `registry.waiter`, not this word); then this polls.
        let timeout = self.check_stall(slot, started).min(at_most);
        futex.store(-1, Ordering::Relaxed);
        slot.foreign.raise_waiting();
        // Pairs with the reader's barrier between its counter's store and
        // its look at the word: either the look below sees the counter
        // moved on, or the reader sees -1 and wakes this writer.
        self.writer_barrier();
        // Not held up by the foreign counter any more (but maybe by the
        // slot's own section, whose end does not wake this word): the
        // caller's loop looks again instead of parking here.
        if quiescent(slot) || slot.foreign.verdict(new) != crate::foreign::Verdict::HeldUp {
            futex.store(0, Ordering::Relaxed);
            return true;
        }
        bump(&self.counters.writer_parks);
        crate::sys::futex_wait_shared(futex, -1, timeout);
        // Woken or timed out: no writer waits on the word now (the caller
        // holds `gp_lock`), so no reader's unlock need make a system call
        // to wake one (liburcu resets it the same way).
        futex.store(0, Ordering::Relaxed);
        true
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    pub(super) fn a_qsbr_waiter_spins_for_its_time_then_never_again_in_that_grace_period() {
        // Rounds past SPIN_ROUNDS at which the clock is read.
        let looks = SPIN_ROUNDS.next_multiple_of(QSBR_SPIN_CLOCK_ROUNDS);
        let mut w = ReaderWait::new(4);
        w.rounds = looks;
        assert!(qsbr_spins(&mut w), "a wait just begun spins on");
        w.started = Instant::now() - QSBR_SPIN_FOR;
        w.rounds = looks + 1;
        assert!(
            qsbr_spins(&mut w),
            "the clock is read once per clock rounds only"
        );
        w.rounds = looks + QSBR_SPIN_CLOCK_ROUNDS;
        assert!(!qsbr_spins(&mut w), "past its time it parks");
        w.started = Instant::now();
        for _ in 0..QSBR_SPIN_CLOCK_ROUNDS {
            w.rounds += 1;
            assert!(
                !qsbr_spins(&mut w),
                "once it has parked it parks from then on"
            );
        }
    }
}
