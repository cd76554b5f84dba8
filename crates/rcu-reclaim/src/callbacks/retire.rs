//! A retire's path into this thread's bulk page: the fast push (inlined
//! into every `defer_drop`, `call` and store), the hand-off of a page that
//! is due to its shard, the drain's steps that free ready values on the
//! retiring thread, and the kicks that keep the grace-period thread
//! looking.

use std::cell::Cell;

use super::api::NO_PAGE_ALLOC;
use super::bulk::{Kind, Word};
use super::drain::DrainLook;
use super::local::{FastPush, Popped};
use super::{bump_relaxed, in_callback, BulkPage};
use crate::clock::epoch_ms;
use crate::domain::Rcu;
use crate::policy;

/// How long this thread's bulk page, holding `count` objects, has held its
/// first object, in milliseconds. `0` (no clock read) when the page has no
/// object, when its age is not due a look ([`policy::age_look_due`]), and
/// always under loom, whose executions a clock would make differ.
fn page_age_ms(local: &super::local::LocalBuffer, count: usize) -> usize {
    if cfg!(loom) || !policy::age_look_due(count) {
        return 0;
    }
    match local.since_ms.load(std::sync::atomic::Ordering::Relaxed) {
        0 => 0,
        since => epoch_ms().saturating_sub(since),
    }
}

/// Whether a page just pushed to, holding `count` objects of `held`
/// bytes, needs nothing more: no advance point, and neither full nor due
/// by its pace (`page_due_by_pace`: a page below a 32nd of the page's
/// pace, `pace()` (`Callbacks::page_pace`), or below
/// `PAGE_HANDOFF_OBJECTS` and that pace, is not), which
/// `try_push_entry_rest` would answer too (`Ok`), in a few compares.
/// The pace is read only past the count's checks (an atomic load, which
/// the compiler does not move into the branch: read before them, it cost
/// two instructions at every advance point, 50,000 in 200,000 retires).
#[inline(always)]
fn settled(pace: impl FnOnce() -> usize, count: usize, held: usize) -> bool {
    count % policy::RETIRES_PER_ADVANCE != 0 && count < super::bulk::capacity() && {
        let pace = pace();
        held < pace / policy::EARLY_PAGE_DIVISOR
            || count < policy::PAGE_HANDOFF_OBJECTS && held < pace
    }
}

impl Rcu {
    /// Pushes one entry, `run(ptr)`, into this thread's bulk page (a
    /// deferred drop, or a small callback stored inline), handing the page
    /// on when it is due. `Err` hands `ptr` back, not queued.
    ///
    /// # Safety
    /// `run(ptr)` is sound to call exactly once, on any thread, after a
    /// grace period; on `Err` it is the caller's again.
    // Always inlined, as the generic path it serves was: with `run` and
    // `kind` known at each call site, the page's bookkeeping folds away
    // (not inlined, it cost 25 instructions more per deferred drop).
    #[inline(always)]
    pub(super) unsafe fn try_push_entry(
        &self,
        ptr: Word,
        run: unsafe fn(Word),
        bytes: usize,
        kind: Kind,
        may_wait: bool,
    ) -> Result<(), Word> {
        let bytes = policy::booked(bytes);
        let slot = self.current_slot();
        // SAFETY: `current_slot` returns this thread's slot, alive while the
        // thread is registered (for as long as this call runs).
        let local = unsafe { &(*slot).local };
        // SAFETY: this thread owns the slot; `run(ptr)` is sound once,
        // after a grace period, on any thread (our contract); `kind` only
        // says where it may run.
        let fast = unsafe { local.try_push_fast(self.flavor(), ptr, run, bytes, kind) };
        match fast {
            // Most retires: pushed, no drain step, no advance point, and
            // the page not due (see `settled`), with nothing else in this
            // frame (a retire that goes on calls out of line).
            FastPush {
                pushed: Some((count, held)),
                drain_due: false,
            } if settled(|| self.inner().callbacks.page_pace(), count, held) => Ok(()),
            // SAFETY: as for this function; the buffer is still marked
            // busy for this call.
            FastPush {
                pushed,
                drain_due: true,
            } => unsafe {
                self.retire_with_drain_step(
                    local,
                    pushed.is_some(),
                    ptr,
                    run,
                    bytes,
                    kind,
                    may_wait,
                )
            },
            // SAFETY: as for this function; `pushed` says whether
            // `try_push_fast` just pushed this entry.
            FastPush { pushed, .. } => unsafe {
                self.try_push_entry_rest(local, pushed.is_some(), ptr, run, bytes, kind, may_wait)
            },
        }
    }

    /// A retire whose drain is due a step (one in `DRAIN_EVERY`), out of
    /// line: the step's objects taken in the buffer's handshake (begun by
    /// `try_push_fast`, which pushed the entry if `pushed_fast`, ended
    /// here), then dropped, and the page's checks.
    ///
    /// # Safety
    /// As for `try_push_entry`; `local` is this thread's buffer in the
    /// domain, for which `try_push_fast` just answered `drain_due` (the
    /// buffer still marked busy for this call).
    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn retire_with_drain_step(
        &self,
        local: &super::LocalBuffer,
        pushed_fast: bool,
        ptr: Word,
        run: unsafe fn(Word),
        bytes: usize,
        kind: Kind,
        may_wait: bool,
    ) -> Result<(), Word> {
        let mut popped = Popped::default();
        // No drain step from inside a callback or a deferred drop (see
        // `try_push`).
        let may_pop = !super::in_callback();
        // SAFETY: `try_push_fast` answered `drain_due`, on this (the
        // owner's) thread, just now.
        unsafe { local.finish_drain_step(may_pop, &mut popped) };
        if popped.len() > 0 {
            // A step of this thread's drain (see `drain.rs`): ready values
            // that drop anywhere, freed a few per retire.
            let cbs = &self.inner().callbacks;
            cbs.run_popped(local, &popped);
            if local.drain_count.load(std::sync::atomic::Ordering::Relaxed) == 0 {
                self.refill_own_drain(local);
            }
        }
        // Read again: the drops may have retired more.
        let count = local.count.load(std::sync::atomic::Ordering::Relaxed);
        let held = local.bytes.load(std::sync::atomic::Ordering::Relaxed);
        if pushed_fast && settled(|| self.inner().callbacks.page_pace(), count, held) {
            return Ok(());
        }
        // SAFETY: as for this function; `pushed_fast` says whether the
        // entry is on the page.
        unsafe { self.try_push_entry_rest(local, pushed_fast, ptr, run, bytes, kind, may_wait) }
    }

    /// The rest of [`try_push_entry`](Rcu::try_push_entry), out of line:
    /// the checks at an advance point and of a page that may be due, and
    /// the slow path.
    ///
    /// # Safety
    /// As for `try_push_entry`; `local` is this thread's buffer in the
    /// domain; `pushed_fast`: this entry is on its page.
    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn try_push_entry_rest(
        &self,
        local: &super::LocalBuffer,
        pushed_fast: bool,
        ptr: Word,
        run: unsafe fn(Word),
        bytes: usize,
        kind: Kind,
        may_wait: bool,
    ) -> Result<(), Word> {
        let plain = kind == Kind::Plain;
        let inner = self.inner();
        let cbs = &inner.callbacks;
        // A full page, or one holding `pace_bytes`, goes to the shard now,
        // with the object that filled it (the pace is by memory, not only
        // by count).
        let count = local.count.load(std::sync::atomic::Ordering::Relaxed);
        let bytes_held = local.bytes.load(std::sync::atomic::Ordering::Relaxed);
        // Every `RETIRES_PER_ADVANCE` retires: a page with a few KiB goes
        // early if no grace period has started for a while (a look at the
        // clock: for a page of small objects, every fourth such point).
        let advance_point = count % policy::RETIRES_PER_ADVANCE == 0;
        // The quiet look and the page's age (asked for when the look finds
        // no quiet spell) share one clock reading, opened by the look
        // (which is asked only for a page holding enough bytes): the age
        // read the clock a second time at more than half of these looks
        // (some 4,000 reads of 28,000 for 200,000 64-byte retires).
        let mut reading = None;
        let early = advance_point
            && policy::quiet_look_due(count, bytes_held)
            && policy::page_due_early(
                &cbs.params,
                bytes_held,
                || {
                    reading = Some(crate::clock::one_reading());
                    inner
                        .gp
                        .retirer_quiet_for()
                        .map(|q| (q, inner.gp.start_cost()))
                },
                || page_age_ms(local, count),
            );
        drop(reading);
        // Calls that book no bytes, which no pace sees: while memory is
        // short, their page goes at `CALL_PAGE_WHEN_SHORT` entries, for the
        // call backlog's bound (looked at per hand-off) to see them.
        // Looked at where the early page is (every `RETIRES_PER_ADVANCE`
        // retires; a branch on the others), and handed off as one: its
        // shard is due at once.
        #[cfg(not(loom))]
        let short_calls = advance_point
            && kind == Kind::Call
            && bytes == 0
            && count >= policy::CALL_PAGE_WHEN_SHORT
            && cbs.memory_short_cached();
        #[cfg(loom)]
        let short_calls = false;
        let early = early || short_calls;
        if pushed_fast
            && !early
            && count < super::bulk::capacity()
            && !policy::page_due_by_pace(cbs.page_pace(), bytes_held, count)
        {
            if advance_point
                && inner.gp.try_complete_in_progress()
                && plain
                && local.drain_count.load(std::sync::atomic::Ordering::Relaxed) == 0
            {
                self.refill_own_drain(local);
            }
            return Ok(());
        }
        // SAFETY: as for this function (the same contract, passed on).
        unsafe { self.push_entry_slow(local, ptr, run, bytes, kind, may_wait, pushed_fast, early) }
    }

    /// The rest of [`try_push_entry`](Rcu::try_push_entry), out of line:
    /// a page that is due (full, over its pace, or early), no page, or a
    /// fast push refused. Kept apart so the fast path's frame stays small
    /// (inlined, its registers were saved and restored at every retire).
    ///
    /// # Safety
    /// As for `try_push_entry`; `local` is this thread's buffer in the
    /// domain, and `pushed_fast` says whether `ptr` is already in its page.
    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn push_entry_slow(
        &self,
        local: &super::LocalBuffer,
        ptr: Word,
        run: unsafe fn(Word),
        bytes: usize,
        kind: Kind,
        may_wait: bool,
        pushed_fast: bool,
        early: bool,
    ) -> Result<(), Word> {
        let inner = self.inner();
        let cbs = &inner.callbacks;
        // The hand-off's locks, as in `enqueue`.
        let _forked = crate::sync::ForkedWaits::scope(inner.gp.fork_check("a retire"));
        let due = |p: &BulkPage| {
            early || p.is_full() || policy::page_due_by_pace(cbs.page_pace(), p.bytes(), p.len())
        };
        if local.allocating.load(std::sync::atomic::Ordering::Relaxed) {
            // Retired by the page allocator while this thread's slow path
            // is in it (holding the buffer's lock): no page for this one.
            return Err(ptr);
        }
        // The slow path: its parts share one clock reading (see `clock.rs`).
        let reading = crate::clock::one_reading();
        let mut kick = false;
        let mut handed_off = false;
        let mut handed_plain = false;
        let mut advance_to = None;
        let mut fresh_since = None;
        let mut refused = false;
        let mut idle_shard = false;
        let pushed = local.with_page_owner(|page| {
            let mut hand_off_if_due = |page: &mut Option<BulkPage>| {
                if page.as_ref().is_some_and(due) {
                    let due_page = page.take().expect("checked above");
                    let plain = due_page.is_plain();
                    match cbs.hand_off_own(&inner.gp, due_page, early) {
                        Ok((k, idle, target)) => {
                            idle_shard |= idle;
                            handed_plain |= plain;
                            local.reset_counts();
                            kick |= k;
                            advance_to = target;
                            handed_off = true;
                        }
                        // The shard's lock was held: the page (not full)
                        // keeps filling, and goes at a later retire, or,
                        // if this thread retires no more, at the
                        // grace-period thread's next look (marked refused:
                        // the lazy flush takes it whatever its age).
                        Err(back) => {
                            *page = Some(back);
                            local
                                .refused
                                .store(true, std::sync::atomic::Ordering::Relaxed);
                            refused = true;
                        }
                    }
                }
            };
            // A page left full (by a fast push, or before a steal's reset).
            hand_off_if_due(page);
            if !pushed_fast {
                if page.is_none() {
                    *page =
                        local.while_allocating(|| cbs.fresh_page(!NO_PAGE_ALLOC.with(Cell::get)));
                    if page.is_some() {
                        let now = epoch_ms();
                        local
                            .since_ms
                            .store(now, std::sync::atomic::Ordering::Relaxed);
                        fresh_since = Some(now);
                    }
                }
                let Some(p) = page else {
                    return false;
                };
                // SAFETY: the page has room (fresh, or not due hence not
                // full), and the contract of `run` holds as above.
                unsafe { p.push(ptr, run, bytes, kind) };
                bump_relaxed(&local.count, 1);
                bump_relaxed(&local.bytes, bytes);
                hand_off_if_due(page);
            }
            if page.is_none() {
                fresh_since = None;
            }
            true
        });
        if !pushed {
            if handed_off {
                // The page handed off above still needs its grace period
                // and a worker: the grace-period thread sees to both.
                self.start_background(true);
            }
            // Not queued: the caller's again.
            return Err(ptr);
        }
        if let Some(target) = advance_to {
            // Drive the grace period from here (never waits): one started
            // at the last hand-off usually completes now, so garbage waits
            // about one page's worth of retires, not for the grace-period
            // thread to be scheduled. That thread is asked only to look
            // within `RETIRER_FALLBACK_MS`, in case this thread stops here.
            // Reached: the page's grace period is over, and what frees it
            // (this thread's drain, or the worker woken below) needs no
            // grace-period thread either; a kick here woke that thread at
            // every hand-off to an idle shard (every 10 µs for 64-byte
            // values).
            let reached = inner.gp.try_advance(target);
            if !cbs.is_overloaded() {
                if !reached {
                    #[cfg(not(loom))]
                    inner.kthread.fallback_look(inner);
                }
                kick = false;
            }
        }
        if idle_shard && !kick {
            // The shard was idle: its pace (the lazy delay) needs the
            // grace-period thread to look by then, unless it has promised
            // to (it has, once asked for the fallback look above).
            kick = self.fresh_page_needs_kick(epoch_ms());
        }
        // The shard handed to, once (`sched_getcpu`), for the drain and the
        // throttle below.
        let cpu = if handed_off { cbs.current_shard() } else { 0 };
        if handed_off {
            if cbs.params.retiring_thread_frees {
                // Opted in: this thread frees its shard's ready pages, up
                // to `INLINE_FREE_PAGES` per page it hands off, so a
                // backlog left while a grace period was held up drains.
                // Outside the buffer's lock: the drops may defer more.
                cbs.free_ready_pages(&inner.gp, cpu, policy::INLINE_FREE_PAGES);
                // The drops may have run long.
                reading.refresh();
            } else if handed_plain || advance_to.is_some() {
                // Ready pages of plain values (no drop glue, or declared
                // `DROPS_ANYWHERE`) are freed by this thread, where they
                // were allocated, a few objects per retire (its drain: see
                // `drain.rs`): their drops take no lock and wait for
                // nothing. While this thread hands off plain pages, the
                // shard's plain ready pages are left to it for
                // `producer_window`; a worker takes the rest, and what is
                // left after that.
                kick |= self.fresh_drain_needs_kick(cbs.refill_drain(&inner.gp, local, cpu));
                if cbs.worker_has_pages(&inner.gp, cpu) {
                    cbs.wake_worker(cpu);
                }
            }
        }
        if let Some(since) = fresh_since {
            // Let the grace-period thread time this page's lazy flush (at
            // once under pressure), unless it will look in time anyway.
            kick |= self.fresh_page_needs_kick(since);
        }
        if refused {
            // A due page kept here (its shard's lock was held): the
            // grace-period thread hands it on within `RETIRER_FALLBACK_MS`
            // if this thread has not by then.
            #[cfg(not(loom))]
            inner.kthread.fallback_look(inner);
            #[cfg(loom)]
            {
                kick = true;
            }
        }
        self.start_background(kick);
        // The throttle below may wait.
        drop(reading);
        // Not in a callback (a worker waiting for its own node's worker),
        // nor in reclaim (which frees through RCU to make room: holding it
        // back would hold back the memory it is after). (Under loom only the
        // first wait is compiled in, which clippy would fold into this test.)
        #[cfg_attr(loom, allow(clippy::collapsible_if))]
        if handed_off && !in_callback() && !crate::sync::NO_RECLAIM.with(Cell::get) {
            if !cbs.params.retiring_thread_frees {
                cbs.throttle_producer(&inner.gp, cpu);
            }
            #[cfg(not(loom))]
            let bounded = may_wait && self.wait_for_headroom();
            #[cfg(not(loom))]
            let pressed = may_wait && self.wait_under_pressure();
            #[cfg(not(loom))]
            if !pressed && !bounded && may_wait && cbs.held_up(&inner.gp).is_some() {
                // No pressure, but a grace period held up by a reader that
                // is not running: the same wait, shorter (see
                // `Config::held_up_bytes`).
                self.wait_or_owe(
                    |kick| {
                        cbs.wait_held_up(&inner.gp, kick);
                        true
                    },
                    || true,
                );
            }
            // Callbacks that book no bytes, which none of the waits above
            // sees: bounded by their count under pressure or a limit.
            #[cfg(not(loom))]
            if may_wait && kind == Kind::Call && bytes == 0 {
                self.wait_for_call_backlog();
            }
        }
        #[cfg(loom)]
        let _ = may_wait;
        Ok(())
    }

    /// Whether a page started at `since_ms` needs a kick of the
    /// grace-period thread (see `GpThread::must_kick_for`).
    pub(super) fn fresh_page_needs_kick(&self, since_ms: usize) -> bool {
        #[cfg(not(loom))]
        {
            let inner = self.inner();
            let cbs = &inner.callbacks;
            let due = crate::policy::page_due_ms(&cbs.params, since_ms, cbs.pressure.total() > 0);
            inner.kthread.must_kick_for(due)
        }
        #[cfg(loom)]
        {
            let _ = since_ms;
            true
        }
    }

    /// Whether a drain just refilled (`look`, from `refill_drain`) needs a
    /// kick of the grace-period thread, which takes it from this thread if
    /// it stops retiring: reckoned from when the drain got its page (the
    /// clock read once for both), or from now.
    pub(super) fn fresh_drain_needs_kick(&self, look: DrainLook) -> bool {
        let since = match look {
            DrainLook::No => return false,
            DrainLook::From(since) => since,
            DrainLook::FromNow => epoch_ms(),
        };
        #[cfg(not(loom))]
        {
            let inner = self.inner();
            let due = crate::policy::drain_due_ms(&inner.callbacks.params, since);
            inner.kthread.must_kick_for(due)
        }
        #[cfg(loom)]
        {
            let _ = since;
            true
        }
    }

    /// Refills this thread's emptied drain from its CPU's shard, making
    /// sure the grace-period thread will look in case the thread stops
    /// retiring before it empties the drain again (or with ready pages
    /// left to it on the shard: see `refill_drain`).
    pub(super) fn refill_own_drain(&self, local: &super::LocalBuffer) {
        let inner = self.inner();
        let cbs = &inner.callbacks;
        let look = cbs.refill_drain(&inner.gp, local, cbs.current_shard());
        if look != DrainLook::No {
            self.start_background(self.fresh_drain_needs_kick(look));
        }
    }

    /// Starts the grace-period thread and workers if needed, and wakes the
    /// grace-period thread when `kick`.
    pub(super) fn start_background(&self, kick: bool) {
        #[cfg(not(loom))]
        {
            let inner = self.inner();
            inner.callbacks.workers.ensure_started(inner);
            if kick {
                inner.kthread.kick(inner);
            }
        }
        #[cfg(loom)]
        let _ = kick;
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// The fast path's one check answers as the full checks would: a page
    /// `settled` is at no advance point, not full and not due by its pace,
    /// whatever the pace (the default's, small, huge as `on_demand`'s, or
    /// cut by a bound on the garbage: a cap, or a limit's allowance, small
    /// as a budget's step, or unknown).
    #[test]
    fn a_settled_page_is_neither_at_an_advance_point_nor_full_nor_due() {
        let paces = [0, 100, 4 << 10, 64 << 10, 1 << 20, usize::MAX / 2];
        let allows = [
            usize::MAX,
            usize::MAX - 1,
            256 << 10,
            policy::HEADROOM_FLOOR,
            64 << 20,
        ];
        for (pace, allow) in paces.into_iter().flat_map(|p| allows.map(|a| (p, a))) {
            let page_pace = policy::limit_page_pace(pace, allow, policy::HEADROOM_FLOOR);
            for count in 1..=super::super::bulk::capacity() {
                for per in [0, 1, 8, 16, 64, 100, 512, 4096, 1 << 20] {
                    let held = count * per;
                    if settled(|| page_pace, count, held) {
                        assert!(count % policy::RETIRES_PER_ADVANCE != 0);
                        assert!(count < super::super::bulk::capacity());
                        assert!(
                            !policy::page_due_by_pace(page_pace, held, count),
                            "{pace} {allow} {count} {held}"
                        );
                    }
                }
            }
        }
    }
}
