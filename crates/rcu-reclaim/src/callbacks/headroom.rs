//! The bound on garbage under a memory limit: a domain that knows the
//! limit of the cgroup it runs in (and how to read its usage) keeps the
//! garbage waiting for grace periods within what the cgroup has left.
//!
//! A thread handing off a page while the shards hold more than the
//! allowance (`policy::headroom_allowance`: half of what would take the
//! usage to its medium mark, were everything else to stay) waits, outside
//! read-side sections, for grace periods to end and the garbage to be
//! freed, until the shards hold half the allowance, for at most
//! `policy::HEADROOM_MAX_WAIT` per hand-off. Unlike the pressure throttle,
//! it needs no pressure signal, and so no monitor thread that gets a CPU
//! in time: on a loaded machine a reader preempted inside its section
//! held a grace period up while two writers of 1 MiB values piled 64 MiB
//! of garbage in 160 ms, and the cgroup's OOM killer acted before the
//! monitor had read the usage once.
//!
//! The usage is read by the retiring thread itself (a `pread` of the
//! cgroup's usage file, half a microsecond), only while the shards hold
//! more than `policy::HEADROOM_FLOOR`, and at most every
//! `policy::HEADROOM_READ_EVERY_MS` (every millisecond while over the
//! allowance).
//!
//! The same reads give the domain's memory state (`Rcu::memory_state`:
//! plenty, short from three quarters of the mark, over the mark), with
//! the usage projected a few milliseconds ahead at the pace it grew; it
//! is read a millisecond old at most when asked for, by one thread at a
//! time, never waiting for the limit's lock (the liburcu drop-in asks
//! from `call_rcu`, which a signal handler may call). Work the domain
//! cannot weigh is held back by it: `call`s that book no bytes, and the
//! drop-in's `call_rcu` heads.

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use super::Callbacks;
use crate::clock::epoch_ms;
use crate::policy::{self, MemoryState};

/// The limit's lock (`HeadroomState::limit`): a std mutex, one of those
/// held across `fork()`; loom's under loom, so that its models see a read
/// of a limit race that limit's replacement (`tests/loom.rs`).
#[cfg(not(loom))]
type LimitLock = std::sync::Mutex<Limits>;
#[cfg(loom)]
type LimitLock = loom::sync::Mutex<Limits>;

/// The limit's lock, held.
#[cfg(not(loom))]
type LimitGuard<'a> = std::sync::MutexGuard<'a, Limits>;
#[cfg(loom)]
type LimitGuard<'a> = loom::sync::MutexGuard<'a, Limits>;

/// The limit that bounds the garbage, and the budgets' limits waiting
/// for it to go (under the limit's lock).
#[derive(Default)]
pub(crate) struct Limits {
    /// The limit that bounds the garbage now.
    current: Option<Arc<Headroom>>,
    /// `MemoryBudget`s' limits bound while another limit was in place,
    /// first come first: as the current limit goes, the first still alive
    /// takes its place. A program that replaced its budget
    /// (`budget = MemoryBudget::new(..)`, the new one made before the old
    /// one is dropped) was left with no bound at all.
    waiting: Vec<Weak<Headroom>>,
}

impl Limits {
    /// Takes the first waiting limit still alive out of the line.
    fn next_waiting(&mut self) -> Option<Arc<Headroom>> {
        while !self.waiting.is_empty() {
            if let Some(next) = self.waiting.remove(0).upgrade() {
                return Some(next);
            }
        }
        None
    }
}

/// Takes the limit's lock.
#[cfg(not(loom))]
fn lock_limit(m: &LimitLock) -> LimitGuard<'_> {
    crate::sync::lock_std(m)
}

/// Takes the limit's lock if it is free.
#[cfg(not(loom))]
fn try_lock_limit(m: &LimitLock) -> Option<LimitGuard<'_>> {
    crate::sync::try_lock_std(m)
}

/// Takes the limit's lock.
#[cfg(loom)]
fn lock_limit(m: &LimitLock) -> LimitGuard<'_> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Takes the limit's lock if it is free.
#[cfg(loom)]
fn try_lock_limit(m: &LimitLock) -> Option<LimitGuard<'_>> {
    match m.try_lock() {
        Ok(g) => Some(g),
        Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
        Err(std::sync::TryLockError::WouldBlock) => None,
    }
}

/// Reads the usage a limit is measured by, in bytes (`None`: unreadable).
pub(crate) type UsageReader = Box<dyn Fn() -> Option<usize> + Send + Sync>;

/// A memory limit the garbage must fit in: the usage at which its cgroup
/// is under pressure (its medium watermark), and how to read the usage.
pub(crate) struct Headroom {
    /// Usage past which the cgroup is under pressure.
    pub(crate) mark: usize,
    pub(crate) usage: UsageReader,
    /// The least allowance, and the garbage below which the usage is not
    /// read (`policy::HEADROOM_FLOOR`, or a budget's reclaim step).
    pub(crate) floor: usize,
    /// Where the domain is when a wait at this limit is reported
    /// (`Callbacks::headroom_why`): near its memory limit, or a budget's
    /// `high`.
    pub(crate) near: &'static str,
    /// A `MemoryBudget`'s: it waits in line while another limit is set
    /// (`Callbacks::bind_budget_headroom`), and takes over when that one
    /// goes.
    budget: bool,
}

/// [`Headroom::near`] for a memory limit (`Rcu::bound_garbage`, a cgroup's).
const NEAR_LIMIT: &str = "near its memory limit";

impl Headroom {
    pub(crate) fn new(mark: usize, usage: UsageReader) -> Headroom {
        Headroom {
            mark,
            usage,
            floor: policy::HEADROOM_FLOOR,
            near: NEAR_LIMIT,
            budget: false,
        }
    }

    /// A `MemoryBudget`'s limit: as `new`, allowing at least `floor`
    /// bytes (at least 1), its waits reported as `near` it.
    pub(crate) fn for_budget(
        mark: usize,
        usage: UsageReader,
        floor: usize,
        near: &'static str,
    ) -> Headroom {
        Headroom {
            mark,
            usage,
            floor: floor.max(1),
            near,
            budget: true,
        }
    }
}

/// No usage read yet (`HeadroomState::last_usage`).
const UNREAD: usize = usize::MAX;

/// The allowance while the usage cannot be read: nothing waits (the
/// usage is read again at the usual pace).
const UNKNOWN: usize = usize::MAX - 1;

/// The engine's bound (see the module docs).
pub(crate) struct HeadroomState {
    /// The shards' bytes allowed at the last read; `usize::MAX` while no
    /// limit is known (the common case costs one load per hand-off).
    allow: AtomicUsize,
    /// `epoch_ms()` of the last read of the limit's usage (0: never).
    read_ms: AtomicUsize,
    /// The limit's `MemoryState` at that read, as a `u8` (`Plenty` before
    /// the first read, or when the usage cannot be read).
    state: AtomicU8,
    /// The usage at that read (`UNREAD`: none, or it could not be read),
    /// from which the next read projects the usage's growth.
    last_usage: AtomicUsize,
    /// The limit; `allow` and `state` are stored under it (a read of the
    /// usage, outside it, stores nothing for a limit replaced meanwhile).
    limit: LimitLock,
    /// `Config::max_pending_bytes` (`usize::MAX`: none; else at least
    /// `policy::HEADROOM_FLOOR`): `allow` never exceeds it, limit or not.
    cap: usize,
    /// The limit's floor (`Headroom::floor`; `policy::HEADROOM_FLOOR`
    /// without one): garbage up to it never waits, nor reads the usage.
    floor: AtomicUsize,
    /// `Config::pace_bytes`, of which `page_pace` is the page's share.
    pace_bytes: usize,
    /// The pace of a thread's bulk page (`policy::limit_page_pace`):
    /// `pace_bytes`, at most a sixteenth of `allow` (and never under a
    /// sixteenth of the limit's `floor`), stored with `allow`. The
    /// bound is looked at only as a page is handed off: a page kept by a
    /// pace far above the allowance (`on_demand`'s, or `pace_bytes(usize::MAX)`,
    /// whose page goes once it holds 255 values of any size) kept its
    /// garbage out of its sight. Read by every retire (the fast path's
    /// `settled`).
    page_pace: AtomicUsize,
}

impl HeadroomState {
    /// No limit yet; the garbage capped at `Params::max_pending_bytes`
    /// (`usize::MAX`: no cap), a page's pace by it (`policy::page_pace`:
    /// a cap is at least `policy::HEADROOM_FLOOR`).
    pub(crate) fn new(p: &policy::Params) -> Self {
        let cap = p.max_pending_bytes;
        HeadroomState {
            allow: AtomicUsize::new(cap),
            read_ms: AtomicUsize::new(0),
            state: AtomicU8::new(MemoryState::Plenty as u8),
            last_usage: AtomicUsize::new(UNREAD),
            limit: LimitLock::new(Limits::default()),
            cap,
            floor: AtomicUsize::new(policy::HEADROOM_FLOOR),
            pace_bytes: p.pace_bytes,
            page_pace: AtomicUsize::new(policy::limit_page_pace(
                p.pace_bytes,
                cap,
                policy::HEADROOM_FLOOR,
            )),
        }
    }

    /// Sets the allowance, and the page's pace with it (stored only when
    /// it changes: every retire reads it, and a read of the usage every
    /// millisecond would otherwise take its line from them each time).
    fn store_allow(&self, allow: usize) {
        self.allow.store(allow, Ordering::Relaxed);
        let floor = self.floor.load(Ordering::Relaxed);
        let pace = policy::limit_page_pace(self.pace_bytes, allow, floor);
        if self.page_pace.load(Ordering::Relaxed) != pace {
            self.page_pace.store(pace, Ordering::Relaxed);
        }
    }

    fn state(&self) -> MemoryState {
        match self.state.load(Ordering::Relaxed) {
            s if s == MemoryState::OverMark as u8 => MemoryState::OverMark,
            s if s == MemoryState::Short as u8 => MemoryState::Short,
            _ => MemoryState::Plenty,
        }
    }
}

impl Callbacks {
    /// Bounds the garbage by `limit` from now on (the caller's or a
    /// cgroup's). A budget's limit it replaces waits in line, first, and
    /// takes over again when this one is removed. `None` removes such a
    /// limit, and the first budget's limit waiting, if any, takes its
    /// place; a budget's limit stays (it goes with its budget).
    pub(crate) fn set_headroom(&self, limit: Option<Headroom>) {
        let mut limits = lock_limit(&self.headroom.limit);
        // The current limit, if it is a budget's.
        let budgets = limits
            .current
            .as_ref()
            .filter(|c| c.budget)
            .map(Arc::downgrade);
        let limit = match limit {
            Some(l) => {
                if let Some(budgets) = budgets {
                    limits.waiting.insert(0, budgets);
                }
                Some(Arc::new(l))
            }
            None if budgets.is_some() => return,
            None => limits.next_waiting(),
        };
        self.replace_headroom(limits, limit);
    }

    /// Bounds the garbage by a budget's `limit` (`Headroom::for_budget`)
    /// if no limit does; else `limit` waits in line (a budget's bound
    /// gives way to one the caller set, to a cgroup's, and to an earlier
    /// budget's) and takes over when the limits before it go
    /// ([`clear_headroom_if`](Self::clear_headroom_if)).
    pub(crate) fn bind_budget_headroom(&self, limit: &Arc<Headroom>) {
        let mut limits = lock_limit(&self.headroom.limit);
        if limits.current.is_some() {
            limits.waiting.push(Arc::downgrade(limit));
        } else {
            self.replace_headroom(limits, Some(limit.clone()));
        }
    }

    /// Removes a budget's `limit`, as the budget goes: if it bounds the
    /// garbage, the first limit waiting in line takes its place (none:
    /// no bound); else it leaves the line. With `only_if_free`, only if
    /// the limit's lock is free (in a forked child, where its holder may
    /// not exist).
    pub(crate) fn clear_headroom_if(&self, limit: &Arc<Headroom>, only_if_free: bool) {
        let limits = if only_if_free {
            try_lock_limit(&self.headroom.limit)
        } else {
            Some(lock_limit(&self.headroom.limit))
        };
        let Some(mut limits) = limits else { return };
        if limits
            .current
            .as_ref()
            .is_some_and(|l| Arc::ptr_eq(l, limit))
        {
            let next = limits.next_waiting();
            self.replace_headroom(limits, next);
        } else {
            limits
                .waiting
                .retain(|w| !std::ptr::eq(w.as_ptr(), Arc::as_ptr(limit)));
        }
    }

    /// Puts `limit` in `current`'s place (the limit's lock, held), lets go
    /// of the lock, and then drops the old limit: what the old reader owns
    /// may retire through this domain as it drops, and a retire over the
    /// allowance takes the lock.
    fn replace_headroom(&self, mut current: LimitGuard<'_>, limit: Option<Arc<Headroom>>) {
        let on = limit.is_some();
        let floor = limit.as_ref().map_or(policy::HEADROOM_FLOOR, |l| l.floor);
        self.headroom.floor.store(floor, Ordering::Relaxed);
        let old = std::mem::replace(&mut current.current, limit);
        self.headroom.read_ms.store(0, Ordering::Relaxed);
        self.headroom.last_usage.store(UNREAD, Ordering::Relaxed);
        self.headroom
            .state
            .store(MemoryState::Plenty as u8, Ordering::Relaxed);
        // The least allowance until the first read (which the next
        // hand-off over it makes: the limit was never read). Never less: a
        // thread that finds another reading uses it meanwhile, and waits
        // until the shards hold half of it (at 0 it waited its full bound
        // for an empty domain). Stored under the lock, as a read's
        // allowance is (`refresh_limit`), so that a read of the replaced
        // limit still in flight cannot overwrite it.
        self.headroom.store_allow(if on {
            floor.min(self.headroom.cap)
        } else {
            self.headroom.cap
        });
        drop(current);
        drop(old);
    }

    /// What a wait over the allowance `allow` is for, as its reports say:
    /// the domain's cap (`Config::max_pending_bytes`) where that is the
    /// allowance, else the limit that bounds it (its `near`: a memory
    /// limit, or a `MemoryBudget`'s `high`, which a program with no memory
    /// limit set was told it was near). Never waits for the limit's lock
    /// (its holder is replacing it: a memory limit, then).
    #[cfg(not(loom))]
    pub(crate) fn headroom_why(&self, allow: usize) -> &'static str {
        if allow == self.headroom.cap {
            return "with its garbage over Config::max_pending_bytes";
        }
        try_lock_limit(&self.headroom.limit)
            .and_then(|l| l.current.as_ref().map(|l| l.near))
            .unwrap_or(NEAR_LIMIT)
    }

    /// The pace of this domain's threads' bulk pages
    /// (`policy::page_due_by_pace`): `Config::pace_bytes`, at most a
    /// sixteenth of the cap, and less under a limit whose allowance is
    /// small (see `HeadroomState::page_pace`).
    #[inline(always)]
    pub(crate) fn page_pace(&self) -> usize {
        self.headroom.page_pace.load(Ordering::Relaxed)
    }

    /// Whether a limit or a cap (`Config::max_pending_bytes`) bounds the
    /// garbage.
    pub(crate) fn has_headroom(&self) -> bool {
        self.headroom.allow.load(Ordering::Relaxed) != usize::MAX
    }

    /// Reads the limit's usage anew, and sets the allowance and the
    /// memory state from it, when the last read is older than
    /// `policy::HEADROOM_READ_EVERY_MS` (a millisecond when `over`). One
    /// thread reads at a time; the others go on with the last read's
    /// figures meanwhile.
    fn refresh_limit(&self, over: bool) {
        let now = epoch_ms();
        let last = self.headroom.read_ms.load(Ordering::Relaxed);
        // 0: never read (the clock counts from the process's start).
        if last != 0 && !policy::headroom_reads(over, now.saturating_sub(last)) {
            return;
        }
        // Not from inside a usage reader on this thread: one that asks its
        // domain's memory state (or retires over the allowance) a
        // millisecond into its read read again, and again, until the
        // stack overflowed and the process aborted.
        #[cfg(not(loom))]
        if READING.with(std::cell::Cell::get) {
            return;
        }
        if self
            .headroom
            .read_ms
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        // Never waits for the lock: a signal handler that interrupted its
        // holder on this thread (the liburcu drop-in's `call_rcu` looks at
        // the memory state) would wait for ever; the last read serves.
        let Some(limit) = try_lock_limit(&self.headroom.limit).and_then(|l| l.current.clone())
        else {
            return;
        };
        let usage = self.read_usage(&limit);
        // Unknown: nothing waits until a read (in a few ms) tells.
        let allow = usage
            .map_or(UNKNOWN, |u| {
                policy::headroom_allowance(limit.mark, u, self.shard_bytes(), limit.floor)
            })
            .min(self.headroom.cap);
        // The state by the usage a few milliseconds ahead, at the pace it
        // grew since the last read: work held back by count (callbacks of
        // 64 KiB) fills a cgroup faster than reads a millisecond apart see.
        let before = self.headroom.last_usage.load(Ordering::Relaxed);
        let state = usage.map_or(MemoryState::Plenty, |u| {
            let age = now.saturating_sub(last);
            let ahead = policy::usage_ahead(u, (before != UNREAD).then_some(before), age);
            policy::memory_state(limit.mark, ahead)
        });
        let Some(held) = try_lock_limit(&self.headroom.limit) else {
            return;
        };
        // Only for the limit read: one replaced or removed meanwhile keeps
        // what its replacement stored (`tests/loom.rs`, `headroom`).
        if held
            .current
            .as_ref()
            .is_some_and(|l| Arc::ptr_eq(l, &limit))
            || crate::sync::mutated_for_loom("headroom.refresh.same_limit")
        {
            self.headroom.store_allow(allow);
            self.headroom.state.store(state as u8, Ordering::Relaxed);
            self.headroom
                .last_usage
                .store(usage.unwrap_or(UNREAD), Ordering::Relaxed);
        }
    }

    /// The limit's usage now, by the user's reader, which runs on a
    /// retiring thread, maybe inside a `Drop` (where a panic escaping
    /// would abort): a panic is caught and reported, and reads as `None`.
    fn read_usage(&self, limit: &Headroom) -> Option<usize> {
        #[cfg(not(loom))]
        let _reading = Reading::enter();
        match crate::sync::catch_panic(|| (limit.usage)()) {
            Ok(usage) => usage,
            Err(msg) => {
                static REPORTS: crate::sys::LoudThrottle = crate::sys::LoudThrottle::new();
                REPORTS.warn_loud(&format!(
                    "rcu-reclaim: the usage reader of Rcu::bound_garbage panicked ({}); the \
                     garbage is not bounded until it returns a value: a reader must not panic",
                    msg.as_deref().unwrap_or("no message")
                ));
                None
            }
        }
    }

    /// How short memory is: the known limit's state by the last read or
    /// a new one, a millisecond old at most (see `refresh_limit`; a usage
    /// that cannot be read is `Plenty`), and at least `Short` while a
    /// pressure signal is held. Without a limit or a signal: two loads.
    /// Its callers hold back work the domain cannot weigh, which grows
    /// faster than garbage: four threads queueing 64 KiB objects through
    /// the liburcu drop-in's `call_rcu` fill 100 MiB in about 4 ms.
    pub(crate) fn memory_state(&self) -> MemoryState {
        let limit = if self.has_headroom() {
            self.refresh_limit(true);
            self.headroom.state()
        } else {
            MemoryState::Plenty
        };
        if self.pressure.total() > 0 {
            limit.max(MemoryState::Short)
        } else {
            limit
        }
    }

    /// Whether memory was short at the last look (a pressure signal held,
    /// or the last read of a known limit's usage not `Plenty`), without
    /// reading the usage: for the retire's fast path. Two loads.
    #[inline]
    pub(crate) fn memory_short_cached(&self) -> bool {
        self.pressure.total() > 0
            || (self.has_headroom() && self.headroom.state() != MemoryState::Plenty)
    }

    /// The allowance, if the shards hold more than it now: reads the
    /// usage anew when the last read is older than
    /// `policy::HEADROOM_READ_EVERY_MS` (or a millisecond, while over).
    pub(crate) fn over_headroom(&self) -> Option<usize> {
        self.over_headroom_with(0)
    }

    /// As [`over_headroom`](Callbacks::over_headroom), counting `own`
    /// bytes besides the shards' (what the calling thread holds in its
    /// page and drain, which no worker frees while it waits).
    pub(crate) fn over_headroom_with(&self, own: usize) -> Option<usize> {
        if self.headroom.allow.load(Ordering::Relaxed) == usize::MAX {
            return None;
        }
        let garbage = self.shard_bytes() + own;
        if garbage <= self.headroom.floor.load(Ordering::Relaxed) {
            return None;
        }
        let over = garbage > self.headroom.allow.load(Ordering::Relaxed);
        self.refresh_limit(over);
        let allow = self.headroom.allow.load(Ordering::Relaxed);
        policy::headroom_waits(allow, garbage).then_some(allow)
    }

    /// For a thread about to wait over the bound (outside read-side
    /// sections, callbacks and reclaim): when what it holds itself (its
    /// buffered page, and ready values in its drain) would take the
    /// garbage over the allowance, it frees its drain now and hands its
    /// page to its shard, where the wait sees it. Left with the thread,
    /// they were freed only at its next retires or after
    /// `producer_window`: a thread whose retire took its own 4 MiB value
    /// into its drain as the grace period ended found the shards under the
    /// bound, did not wait, and returned holding it. Then `wait_for_headroom`
    /// waits if the shards are still over; `kick` wakes the grace-period
    /// thread. Returns whether the thread waited or freed its own garbage
    /// (counted in `Stats::headroom_waits` either way, once).
    #[cfg(not(loom))]
    pub(crate) fn bound_own_garbage(
        &self,
        gp: &crate::gp::GracePeriods,
        local: &super::LocalBuffer,
        kick: &dyn Fn(),
    ) -> bool {
        let own = local.bytes.load(Ordering::Relaxed) + local.drain_bytes.load(Ordering::Relaxed);
        let gave_up = (own > 0 && self.over_headroom_with(own).is_some()).then(|| {
            let start = std::time::Instant::now();
            if local.drain_count.load(Ordering::Relaxed) > 0 {
                self.finish_own_drain(local, self.current_shard());
            }
            if self.hand_off_buffered(gp, local) {
                kick();
            }
            start.elapsed()
        });
        let waited = self.wait_for_headroom(gp, kick);
        if let (Some(took), false) = (gave_up, waited) {
            // Counted as a wait, with its time (at least a microsecond).
            super::add(&self.counters.headroom_waits, 1);
            let us = usize::try_from(took.as_micros()).unwrap_or(usize::MAX);
            super::add(&self.counters.headroom_wait_us, us.max(1));
        }
        gave_up.is_some() || waited
    }
}

#[cfg(not(loom))]
thread_local! {
    /// Whether this thread is inside a usage reader (`read_usage`).
    static READING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Marks this thread as inside a usage reader until dropped (even by a
/// panic), restoring what it was.
#[cfg(not(loom))]
struct Reading(bool);

#[cfg(not(loom))]
impl Reading {
    fn enter() -> Reading {
        Reading(READING.with(|r| r.replace(true)))
    }
}

#[cfg(not(loom))]
impl Drop for Reading {
    fn drop(&mut self) {
        let was = self.0;
        let _ = READING.try_with(|r| r.set(was));
    }
}

/// The bound's lock, one of those held across `fork()`
/// (`Callbacks::lock_for_fork`): a thread binding or reading the bound at
/// the fork left it held for ever in the child, whose next bind, or retire
/// over the floor, waited for it.
#[cfg(not(loom))]
pub(super) type HeadroomForkHeld<'a> = crate::sync::ForkHeld<'a, Limits>;

#[cfg(not(loom))]
impl Callbacks {
    /// Takes the bound's lock for `fork()` (a leaf: nothing is locked
    /// under it, so it is taken last).
    pub(super) fn lock_headroom_for_fork(&self) -> HeadroomForkHeld<'_> {
        crate::sync::lock_for_fork(&self.headroom.limit)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use super::Headroom;
    use crate::{Config, Rcu};

    /// A domain under a mark of 64 MiB whose usage is `live` bytes and
    /// its garbage (the default pace: a page of 1 MiB values goes to its
    /// shard at once).
    fn limited(live: &Arc<AtomicUsize>) -> Rcu {
        let rcu = Rcu::new(Config::new()).unwrap();
        let live = live.clone();
        let inner = Arc::downgrade(rcu.inner());
        rcu.inner().callbacks.set_headroom(Some(Headroom::new(
            64 << 20,
            Box::new(move || {
                let inner = inner.upgrade()?;
                Some(live.load(Ordering::Relaxed) + inner.callbacks.pending(&inner.gp).1)
            }),
        )));
        rcu
    }

    /// Garbage over half the room left waits for a grace period (a
    /// reader that leaves 100 ms after the second batch starts); under
    /// it, none waits.
    #[test]
    #[cfg_attr(
        miri,
        ignore = "timing: a reader leaves after 100 ms of the interpreter's clock, which \
                  megabytes of writes outrun"
    )]
    fn garbage_over_the_room_left_waits_for_its_grace_period() {
        // 40 MiB live under a 64 MiB mark: 12 MiB of garbage allowed.
        let usage = Arc::new(AtomicUsize::new(40 << 20));
        let rcu = limited(&usage);
        let (go_tx, reader) = super::super::reader_held_until_go(&rcu, 100);
        // 8 MiB: within the allowance, no wait.
        for i in 0..8u8 {
            rcu.defer_drop_sized(Box::new(vec![i; 1 << 20]), 1 << 20);
        }
        assert_eq!(rcu.stats().headroom_waits, 0);
        // 8 more: over it, the next hand-off waits until the reader has
        // left and the garbage is freed.
        go_tx.send(()).unwrap();
        let t = std::time::Instant::now();
        for i in 0..8u8 {
            rcu.defer_drop_sized(Box::new(vec![i; 1 << 20]), 1 << 20);
        }
        let s = rcu.stats();
        assert!(s.headroom_waits >= 1, "{s:?}");
        assert!(
            t.elapsed() >= Duration::from_millis(50),
            "{:?}",
            t.elapsed()
        );
        assert!(rcu.pending_bytes() <= 12 << 20, "{}", rcu.pending_bytes());
        reader.join().unwrap();
        rcu.barrier();
        assert_eq!(rcu.pending_bytes(), 0);
    }

    /// A usage read anew lifts the bound: with the cgroup nearly empty the
    /// same garbage waits for nothing.
    #[test]
    fn room_left_is_read_anew_by_the_retiring_thread() {
        let usage = Arc::new(AtomicUsize::new(58 << 20));
        let rcu = limited(&usage);
        let inner = rcu.inner();
        let cbs = &inner.callbacks;
        assert!(cbs.has_headroom());
        // Before the first read, the floor: a thread that found another
        // reading waited with an allowance of 0, for its full bound.
        assert_eq!(
            cbs.headroom.allow.load(Ordering::Relaxed),
            crate::policy::HEADROOM_FLOOR
        );
        // Nothing waits: the shards hold no more than the floor.
        assert_eq!(cbs.over_headroom(), None);
        let guard = rcu.read_lock();
        for i in 0..4u8 {
            // Inside a section: owed, not waited.
            rcu.defer_drop_sized(Box::new(vec![i; 1 << 20]), 1 << 20);
        }
        assert!(rcu.pending_bytes() >= 4 << 20);
        // 58 MiB live: 3 MiB allowed (half of 64 - 58), 2.5 MiB if the
        // last page is still this thread's (counted as live).
        let allow = cbs.over_headroom();
        assert!(
            matches!(allow, Some(a) if (5 << 19..=3 << 20).contains(&a)),
            "{allow:?}"
        );
        usage.store(8 << 20, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(
            2 * crate::policy::HEADROOM_READ_EVERY_MS as u64,
        ));
        assert_eq!(cbs.over_headroom(), None, "read anew: 30 MiB allowed");
        drop(guard);
        cbs.set_headroom(None);
        assert!(!cbs.has_headroom());
        rcu.barrier();
    }

    /// A usage reader that panics bounds nothing and says so; the retire
    /// that ran it goes on (inside a `Drop` a panic escaping would abort).
    #[test]
    fn a_usage_reader_that_panics_is_reported_not_propagated() {
        let rcu = Rcu::new(Config::new()).unwrap();
        rcu.bound_garbage(64 << 20, || panic!("no usage here"));
        let guard = rcu.read_lock();
        let stderr = crate::sys::tests::stderr_of(|| {
            for i in 0..4u8 {
                rcu.defer_drop_sized(Box::new(vec![i; 1 << 20]), 1 << 20);
            }
            assert_eq!(rcu.inner().callbacks.over_headroom(), None);
        });
        assert!(stderr.contains("no usage here"), "{stderr}");
        drop(guard);
        rcu.barrier();
        assert_eq!(rcu.pending_bytes(), 0);
    }
}
