//! The reclaim loop: shrinkers by priority, RCU after each pass, a barrier
//! before declaring out-of-memory.

use std::cell::Cell;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use super::report::{OomReport, OutOfMemory, PriorityStats, ReclaimStats, Reclaimed};
use super::shrinker::{
    scan_target, Scanned, ShrinkControl, Shrinker, FRUITLESS_BATCHES, MAX_SCAN_PER_TURN,
    SHRINK_BATCH,
};
use crate::domain::Rcu;
use crate::pressure::NodeMask;
use crate::sync::{lock, Mutex, NO_RECLAIM};

/// Runs `f` with direct reclaim forbidden on this thread (the kernel's
/// `memalloc_noreclaim_save`): code holding locks a shrinker needs uses it
/// so that reclaim triggered on its thread can never wait for itself.
/// [`Reclaimer::reclaim`] marks its own thread the same way, so allocations
/// inside shrinkers and callbacks never recurse into reclaim.
///
/// ```
/// use rcu_reclaim::reclaim::{no_reclaim, reclaim_allowed};
/// assert!(reclaim_allowed());
/// no_reclaim(|| assert!(!reclaim_allowed()));
/// ```
pub fn no_reclaim<R>(f: impl FnOnce() -> R) -> R {
    crate::sync::with_flag(&NO_RECLAIM, f)
}

/// Whether reclaim may run on this thread (it is not reclaiming already and
/// has not forbidden it with [`no_reclaim`]).
///
/// ```
/// assert!(rcu_reclaim::reclaim::reclaim_allowed());
/// ```
pub fn reclaim_allowed() -> bool {
    !NO_RECLAIM.with(Cell::get)
}

/// Identifies a registered shrinker.
///
/// ```
/// use std::sync::Arc;
/// use rcu_reclaim::reclaim::{Reclaimer, Scanned, ShrinkControl, Shrinker};
/// struct Empty;
/// impl Shrinker for Empty {
///     fn count(&self, _: &ShrinkControl) -> usize { 0 }
///     fn scan(&self, _: &mut ShrinkControl) -> Scanned { Scanned::default() }
/// }
/// let reclaimer = Reclaimer::new(rcu_reclaim::Rcu::global());
/// let a = reclaimer.register(Arc::new(Empty));
/// let b = reclaimer.register(Arc::new(Empty));
/// assert_ne!(a, b);
/// assert!(reclaimer.unregister(a));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ShrinkerId(u64);

struct Registered {
    id: u64,
    /// `None` once unregistered: a pass holds a clone only while it calls
    /// it ([`Registered::enter`]), so `unregister` drops the last one the
    /// reclaimer had.
    shrinker: Mutex<Option<Arc<dyn Shrinker>>>,
    /// Passes calling it now (see `enter`), and the process they run in:
    /// the process id in the high 32 bits, the count in the low ones.
    /// `unregister` waits for none in its own process: in a child made by
    /// `fork()`, a pass that was calling it on another thread of the parent
    /// does not exist and never ends, so its count is not the child's.
    calls: AtomicU64,
    /// The shrinker's name, for `unregister`'s warning once it is gone.
    name: String,
    /// Scan work carried to the next call (the kernel's `nr_deferred`).
    deferred: AtomicUsize,
}

impl Registered {
    /// The shrinker for one pass's calls, unless it was unregistered; the
    /// pass's calls count as in progress until the guard drops.
    fn enter(&self) -> Option<InCall<'_>> {
        let pid = u64::from(std::process::id());
        let held = lock(&self.shrinker);
        let shrinker = held.as_ref()?.clone();
        // Under the lock, so `unregister` (which takes the shrinker under
        // it, then waits for `calls` to fall to 0) sees this call. Counted
        // afresh in a process other than the one that counted so far (a
        // forked child: the parent's passes are not in it).
        let _ = self
            .calls
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |w| {
                Some(if w >> 32 == pid { w + 1 } else { pid << 32 | 1 })
            });
        drop(held);
        Some(InCall {
            reg: self,
            pid,
            shrinker: Some(shrinker),
        })
    }

    /// Whether a pass of this process calls it now.
    fn called_here(&self) -> bool {
        let w = self.calls.load(Ordering::SeqCst);
        w >> 32 == u64::from(std::process::id()) && w & u64::from(u32::MAX) != 0
    }
}

/// A pass's calls of one shrinker in progress (see [`Registered::enter`]).
struct InCall<'a> {
    reg: &'a Registered,
    /// The process that counted it (see `Registered::calls`).
    pid: u64,
    shrinker: Option<Arc<dyn Shrinker>>,
}

impl std::ops::Deref for InCall<'_> {
    type Target = dyn Shrinker;
    fn deref(&self) -> &(dyn Shrinker + 'static) {
        &**self.shrinker.as_ref().expect("held until drop")
    }
}

impl Drop for InCall<'_> {
    fn drop(&mut self) {
        // The pass's clone goes first: once `calls` is 0, the reclaimer
        // holds no reference to an unregistered shrinker.
        drop(self.shrinker.take());
        // Only from the count it was added to: a call the forking thread
        // was in at the fork ends in the child, where that count is void.
        let pid = self.pid;
        let _ = self
            .reg
            .calls
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |w| {
                (w >> 32 == pid && w & u64::from(u32::MAX) != 0).then(|| w - 1)
            });
    }
}

/// The longest `unregister` waits for a pass calling the shrinker.
const UNREGISTER_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

type OomHandler = Arc<dyn Fn(&OomReport) + Send + Sync>;

/// Memory reclaim over registered shrinkers, closing the loop with RCU:
/// after each priority pass it asks RCU to run what its shrinkers queued
/// ([`Rcu::run_callbacks`]), and before giving up it waits for RCU.
///
/// ```
/// use std::sync::Arc;
/// use rcu_reclaim::Rcu;
/// use rcu_reclaim::pressure::NodeMask;
/// use rcu_reclaim::reclaim::{Reclaimer, Scanned, ShrinkControl, Shrinker};
/// struct Nothing;
/// impl Shrinker for Nothing {
///     fn count(&self, _: &ShrinkControl) -> usize { 0 }
///     fn scan(&self, _: &mut ShrinkControl) -> Scanned { Scanned::default() }
/// }
/// let reclaimer = Reclaimer::new(Rcu::global());
/// reclaimer.register(Arc::new(Nothing));
/// reclaimer.set_oom_handler(|report| eprintln!("{report}"));
/// assert!(reclaimer.reclaim(1 << 20, &NodeMask::all()).is_err());
/// assert!(reclaimer.reclaim(0, &NodeMask::all()).is_ok());
/// ```
pub struct Reclaimer {
    rcu: Rcu,
    rcu_aware: bool,
    shrinkers: Mutex<Vec<Arc<Registered>>>,
    next_id: AtomicU64,
    oom_handler: Mutex<Option<OomHandler>>,
    stats: Mutex<ReclaimStats>,
}

impl Reclaimer {
    /// A reclaimer that works with `rcu`.
    ///
    /// ```
    /// let r = rcu_reclaim::reclaim::Reclaimer::new(rcu_reclaim::Rcu::global());
    /// assert_eq!(r.stats().calls, 0);
    /// ```
    pub fn new(rcu: &Rcu) -> Self {
        Reclaimer {
            rcu: rcu.clone(),
            rcu_aware: true,
            shrinkers: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(1),
            oom_handler: Mutex::new(None),
            stats: Mutex::new(ReclaimStats {
                by_priority: vec![PriorityStats::default(); 13],
                ..ReclaimStats::default()
            }),
        }
    }

    /// With `false`, reclaim never calls RCU — the kernel before the fix
    /// discussed in 2020, kept for comparison: what shrinkers queue for RCU stays queued,
    /// reclaim escalates and declares out-of-memory while memory sits in RCU.
    ///
    /// ```
    /// let r = rcu_reclaim::reclaim::Reclaimer::new(rcu_reclaim::Rcu::global()).rcu_loop(false);
    /// # drop(r);
    /// ```
    pub fn rcu_loop(mut self, enabled: bool) -> Self {
        self.rcu_aware = enabled;
        self
    }

    /// Whether reclaim closes the loop with RCU (see [`rcu_loop`](Reclaimer::rcu_loop)).
    ///
    /// ```
    /// let r = rcu_reclaim::reclaim::Reclaimer::new(rcu_reclaim::Rcu::global());
    /// assert!(r.rcu_loop_enabled());
    /// ```
    pub fn rcu_loop_enabled(&self) -> bool {
        self.rcu_aware
    }

    /// Registers a shrinker; allowed at any time, from any thread, also
    /// while reclaim runs (a running pass keeps its snapshot).
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use rcu_reclaim::{pressure::*, reclaim::*, sources::*, stats::*, *};
    /// # struct S;
    /// # impl Shrinker for S { fn count(&self, _: &ShrinkControl) -> usize { 0 } fn scan(&self, _: &mut ShrinkControl) -> Scanned { Scanned::default() } }
    /// let r = Reclaimer::new(Rcu::global());
    /// let id = r.register(Arc::new(S));
    /// assert!(r.unregister(id));
    /// ```
    ///
    /// A shrinker runs on any thread until it is unregistered, so it
    /// borrows nothing short-lived:
    ///
    /// ```compile_fail,E0597
    /// use std::sync::{Arc, Mutex};
    /// use rcu_reclaim::reclaim::{Reclaimer, Scanned, ShrinkControl, Shrinker};
    /// struct Borrowing<'a>(&'a Mutex<Vec<u8>>);
    /// impl Shrinker for Borrowing<'_> {
    ///     fn count(&self, _: &ShrinkControl) -> usize { 0 }
    ///     fn scan(&self, _: &mut ShrinkControl) -> Scanned { Scanned::default() }
    /// }
    /// let reclaimer = Reclaimer::new(rcu_reclaim::Rcu::global());
    /// let local = Mutex::new(vec![0u8; 16]);
    /// reclaimer.register(Arc::new(Borrowing(&local))); // error: `local` does not live long enough
    /// ```
    pub fn register(&self, shrinker: Arc<dyn Shrinker>) -> ShrinkerId {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        lock(&self.shrinkers).push(Arc::new(Registered {
            id,
            name: shrinker.name().to_string(),
            shrinker: Mutex::new(Some(shrinker)),
            calls: AtomicU64::new(0),
            deferred: AtomicUsize::new(0),
        }));
        ShrinkerId(id)
    }

    /// Unregisters a shrinker; returns whether it was registered. Once it
    /// returns, no pass calls the shrinker again and the reclaimer holds no
    /// reference to it: it waits for the calls of a pass already running
    /// (on another thread) to end. So `drop(cache); rcu.barrier()` frees
    /// everything the cache held, even with a reclaim pass in flight. Do
    /// not call it while holding a lock the shrinker's `count` or `scan`
    /// takes (the kernel's `unregister_shrinker` has the same rule): it
    /// waits one second at most, then warns naming the shrinker and
    /// returns, the pass left to finish with it. Called
    /// inside reclaim (from a shrinker, or a destructor reclaim runs),
    /// inside an RCU callback, or inside a read-side section of the
    /// reclaimer's domain (an online QSBR thread included), where the pass
    /// may be waiting for this very thread, it does not wait: a pass
    /// already running may go on calling the shrinker until its turn in
    /// that pass ends (a turn is many batches), and keeps it alive until
    /// then. In a child made by `fork()`, a pass that was
    /// calling it on another thread of the parent is not in the child and
    /// is not waited for.
    ///
    /// ```
    /// let r = rcu_reclaim::reclaim::Reclaimer::new(rcu_reclaim::Rcu::global());
    /// # use std::sync::Arc; use rcu_reclaim::{pressure::*, reclaim::*, sources::*, stats::*, *};
    /// # struct S;
    /// # impl Shrinker for S { fn count(&self, _: &ShrinkControl) -> usize { 0 } fn scan(&self, _: &mut ShrinkControl) -> Scanned { Scanned::default() } }
    /// let id = r.register(Arc::new(S));
    /// assert!(r.unregister(id));
    /// assert!(!r.unregister(id));
    /// ```
    pub fn unregister(&self, id: ShrinkerId) -> bool {
        let removed = {
            let mut list = lock(&self.shrinkers);
            let at = list.iter().position(|r| r.id == id.0);
            at.map(|i| list.remove(i))
        };
        let Some(reg) = removed else {
            return false;
        };
        // Dropped outside the lock: it may be the last reference.
        let taken = lock(&reg.shrinker).take();
        drop(taken);
        // Not where the pass could be waiting for this thread: inside
        // reclaim or a callback, or inside a read-side section of the domain
        // (a scan that finds no bulk page waits for a grace period).
        if reclaim_allowed() && !Rcu::in_callback() && !self.rcu.in_read_section() {
            let start = Instant::now();
            let mut spins = 0u32;
            while reg.called_here() {
                if start.elapsed() >= UNREGISTER_WAIT {
                    // Never a hang: most likely this thread holds a lock
                    // the scan waits for. Say so, and leave the pass to
                    // finish with the shrinker (it keeps it alive).
                    let msg = format!(
                        "rcu-reclaim: Reclaimer::unregister waited {UNREGISTER_WAIT:?} for a \
                         reclaim pass still calling shrinker '{}' on another thread and \
                         returns without it: the pass may go on calling it until its turn ends; if this thread \
                         holds a lock the shrinker's count or scan takes, release it before \
                         unregistering (or dropping its cache)",
                        reg.name
                    );
                    crate::sys::warn_loud(&msg);
                    break;
                }
                spins += 1;
                if spins < 64 {
                    std::thread::yield_now();
                } else {
                    std::thread::sleep(std::time::Duration::from_micros(50));
                }
            }
        }
        true
    }

    /// Called with the report when reclaim gives up (default: log it with
    /// `tracing::error!`). The handler may drop caches, shed load or abort.
    ///
    /// ```
    /// let r = rcu_reclaim::reclaim::Reclaimer::new(rcu_reclaim::Rcu::global());
    /// r.set_oom_handler(|report| eprintln!("{report}"));
    /// ```
    pub fn set_oom_handler(&self, handler: impl Fn(&OomReport) + Send + Sync + 'static) {
        *lock(&self.oom_handler) = Some(Arc::new(handler));
    }

    /// The domain this reclaimer calls.
    ///
    /// ```
    /// let r = rcu_reclaim::reclaim::Reclaimer::new(rcu_reclaim::Rcu::global());
    /// assert_eq!(r.rcu().id(), rcu_reclaim::Rcu::global().id());
    /// ```
    pub fn rcu(&self) -> &Rcu {
        &self.rcu
    }

    /// A snapshot of the counters.
    ///
    /// ```
    /// let r = rcu_reclaim::reclaim::Reclaimer::new(rcu_reclaim::Rcu::global());
    /// assert_eq!(r.stats().by_priority.len(), 13);
    /// ```
    pub fn stats(&self) -> ReclaimStats {
        lock(&self.stats).clone()
    }

    /// Frees at least `target_bytes` from `nodemask`'s nodes, or reports
    /// out-of-memory. Priority 12 down to 0: each shrinker scans
    /// [`scan_target`] objects in batches of [`SHRINK_BATCH`] (work it could
    /// not do is deferred to the next call); after each pass, when the RCU
    /// loop is on, RCU runs what is ready and what it freed counts; it waits
    /// for an expedited grace period only once the bytes it holds on those
    /// nodes could meet what is still wanted (so one reclaim waits about
    /// once, not at every priority), and at priority 0 runs a barrier on
    /// those nodes ([`Rcu::run_callbacks`] describes the actions). Before
    /// giving up, if RCU holds bytes, a barrier. Runs with this thread
    /// marked as reclaiming (the kernel's `PF_MEMALLOC`): a
    /// nested call returns at once. `defer_drop` in a shrinker may still take
    /// a bulk page (4 KiB holding up to 255 objects), as the kernel's
    /// `kvfree_rcu` does from reclaim: the page lets reclaim free far more
    /// than it costs, where waiting for a grace period per evicted object
    /// would stall the allocating thread.
    ///
    /// Called inside a read-side section of the reclaimer's domain (a
    /// guard, or an online QSBR thread), or from a callback, it cannot
    /// wait for a grace period, which would wait for this thread: it frees
    /// what shrinkers free and what RCU already has ready, and reports
    /// out-of-memory if that falls short, even while RCU holds the bytes
    /// (the [`OomReport`]'s `rcu_pending` says how many, and its
    /// `reclaimed.waited_for_rcu` is `false`). Reclaim outside sections (for a QSBR
    /// thread, through `QsbrThread::offline_while`) where that matters.
    ///
    /// ```
    /// let r = rcu_reclaim::reclaim::Reclaimer::new(rcu_reclaim::Rcu::global());
    /// let done = r.reclaim(0, &rcu_reclaim::pressure::NodeMask::all()).unwrap();
    /// assert_eq!(done.freed_bytes, 0);
    /// ```
    pub fn reclaim(
        &self,
        target_bytes: usize,
        nodemask: &NodeMask,
    ) -> Result<Reclaimed, OutOfMemory> {
        self.reclaim_until(target_bytes, nodemask, &|| false, true, &|| ())
    }

    /// One pass of every shrinker at `priority` (12 gentle .. 0 desperate)
    /// with no byte target, the answer to a pressure event that says memory
    /// is short but not how much is wanted: each shrinker scans
    /// [`scan_target`] of its objects (at priority 4, an eighth of them;
    /// at 2, half), even fewer than [`SHRINK_BATCH`], and at least one
    /// (a share of a few objects rounds down to none, and a cache of a
    /// few large values would never shrink), and at most 16 Mi objects
    /// a call (a shrinker counting `usize::MAX` and reporting frees it
    /// does not make would otherwise keep the caller for ever). What they queue for
    /// RCU is left to RCU (its pressure signal, or the caller's
    /// [`Rcu::run_callbacks`]); never declares out-of-memory. A
    /// [`PressureMonitor`](crate::sources::PressureMonitor) linked to a
    /// budget or a reclaimer runs one per medium (4) or critical (2)
    /// event. A nested call (inside reclaim or [`no_reclaim`]) does
    /// nothing.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use rcu_reclaim::reclaim::{Reclaimer, Scanned, ShrinkControl, Shrinker};
    /// struct Cache(Mutex<Vec<u8>>);
    /// impl Shrinker for Cache {
    ///     fn count(&self, _: &ShrinkControl) -> usize {
    ///         self.0.lock().unwrap().len()
    ///     }
    ///     fn scan(&self, ctl: &mut ShrinkControl) -> Scanned {
    ///         let mut c = self.0.lock().unwrap();
    ///         let n = ctl.nr_to_scan().min(c.len());
    ///         let keep = c.len() - n;
    ///         c.truncate(keep);
    ///         Scanned { freed: n, bytes: n }
    ///     }
    /// }
    /// let cache = Arc::new(Cache(Mutex::new(vec![0; 64])));
    /// let reclaimer = Reclaimer::new(rcu_reclaim::Rcu::global());
    /// reclaimer.register(cache.clone());
    /// assert_eq!(reclaimer.shrink(2).freed_bytes, 32); // half
    /// assert_eq!(cache.0.lock().unwrap().len(), 32);
    /// ```
    pub fn shrink(&self, priority: u8) -> Reclaimed {
        let priority = priority.min(12);
        let mut done = Reclaimed {
            priority,
            ..Reclaimed::default()
        };
        if !reclaim_allowed() {
            lock(&self.stats).recursion_refused += 1;
            done.recursion_refused = true;
            return done;
        }
        let _clock = crate::clock::suspend();
        let shrinkers: Vec<Arc<Registered>> = lock(&self.shrinkers).clone();
        let mut pass = PriorityStats::default();
        no_reclaim(|| {
            let mask = NodeMask::all();
            for reg in &shrinkers {
                let Some(s) = reg.enter() else {
                    continue;
                };
                let freeable = s.count(&ShrinkControl::new(mask.clone(), priority, 0));
                // At least one object of a shrinker that has any: the
                // kernel's share rounds a small count down to nothing, and
                // a cache of a few large values (fewer than 4 entries at
                // priority 2, 16 at 4) never shrank for any event.
                let mut total = scan_target(freeable, priority, s.seeks(), 0)
                    .max(freeable.min(1))
                    .min(MAX_SCAN_PER_TURN);
                let mut fruitless = 0;
                while total > 0 {
                    let mut ctl =
                        ShrinkControl::new(mask.clone(), priority, total.min(SHRINK_BATCH));
                    let got = s.scan(&mut ctl);
                    fruitless = fruitless_after(fruitless, &got);
                    book_scan(s.frees_via_rcu(), got, &ctl, &mut done, &mut pass);
                    total -= ctl.scanned().min(total);
                    if ctl.stopped() || ctl.scanned() == 0 || fruitless >= FRUITLESS_BATCHES {
                        break;
                    }
                }
            }
        });
        lock(&self.stats).add_pass(priority, &pass);
        done
    }

    /// As [`reclaim`](Reclaimer::reclaim), for a caller whose real goal
    /// is `met()` (a [`MemoryBudget`](super::MemoryBudget): usage back at
    /// its `high` watermark): before declaring out-of-memory it asks, and
    /// if the goal was met meanwhile (memory freed that the booked bytes
    /// under-counted, or its owner freed) the call succeeds. So an OOM is
    /// declared, counted and handed to the handler once, as one event,
    /// and the budget counts the same event.
    ///
    /// With `trust_booked` false the bytes shrinkers report are no measure
    /// of success (a budget whose usage did not fall although reclaim
    /// booked its steps as met: a shrinker claims more than it frees):
    /// only `met()` ends the call early or makes it succeed, every
    /// shrinker is called at every priority (one that over-claims does not
    /// end the pass for the others), each evicting about `target_bytes`.
    ///
    /// `declared` runs once an out-of-memory is declared and counted,
    /// before the handler: the caller counts the event as its own there,
    /// since a handler that panics unwinds past the `Err` it would see.
    pub(crate) fn reclaim_until(
        &self,
        target_bytes: usize,
        nodemask: &NodeMask,
        met: &dyn Fn() -> bool,
        trust_booked: bool,
        declared: &dyn Fn(),
    ) -> Result<Reclaimed, OutOfMemory> {
        if !reclaim_allowed() {
            lock(&self.stats).recursion_refused += 1;
            return Ok(Reclaimed {
                recursion_refused: true,
                ..Reclaimed::default()
            });
        }
        // Reclaim waits and paces itself: not on a retire's frozen clock.
        let _clock = crate::clock::suspend();
        let start = Instant::now();
        let span = tracing::debug_span!("reclaim", target_bytes, rcu_aware = self.rcu_aware);
        let _entered = span.enter();
        let result = no_reclaim(|| self.reclaim_marked(target_bytes, nodemask, met, trust_booked));
        match &result {
            Ok(done) => tracing::debug!(
                freed = done.freed_bytes,
                by_rcu = done.freed_by_rcu_bytes,
                priority = done.priority,
                "rcu-reclaim: reclaim met its target"
            ),
            Err(_) => tracing::debug!("rcu-reclaim: reclaim gave up"),
        }
        let mut st = lock(&self.stats);
        st.calls += 1;
        st.time_us = st
            .time_us
            .saturating_add(u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX));
        if result.is_err() {
            st.ooms += 1;
        }
        drop(st);
        if result.is_err() {
            declared();
        }
        if let Err(OutOfMemory(report)) = &result {
            // The handler is the caller's code: run it with the handler's
            // lock released (a `match` on `lock(..).clone()` would hold the
            // guard for the whole match, so a handler that replaced itself,
            // or two threads' handlers that waited for each other, hung),
            // and still marked no-reclaim, so a handler that reclaims gets
            // `recursion_refused` instead of recursing into its own OOM.
            let handler = lock(&self.oom_handler).clone();
            no_reclaim(|| match handler {
                Some(h) => h(report),
                None => {
                    static REPORTS: crate::sys::LoudThrottle = crate::sys::LoudThrottle::new();
                    REPORTS.error_loud(&format!(
                        "rcu-reclaim: {report} (no OOM handler is set: \
                         Reclaimer::set_oom_handler takes this report, to shed load or to keep \
                         quiet)"
                    ));
                }
            });
        }
        result
    }

    fn reclaim_marked(
        &self,
        target: usize,
        mask: &NodeMask,
        met: &dyn Fn() -> bool,
        trust_booked: bool,
    ) -> Result<Reclaimed, OutOfMemory> {
        let mut done = Reclaimed {
            priority: 12,
            ..Reclaimed::default()
        };
        if target == 0 {
            return Ok(done);
        }
        let shrinkers: Vec<Arc<Registered>> = lock(&self.shrinkers).clone();
        // RCU's freed bytes are counted from here, not from after each
        // pass's shrinkers: a worker (or a retiring thread) may free what a
        // shrinker queued before this thread asks RCU to run it, and those
        // bytes were freed by this reclaim all the same.
        let rcu_start = self.rcu.bytes_freed();
        let rcu_freed_since = |done: &Reclaimed| {
            (self.rcu.bytes_freed().saturating_sub(rcu_start) as usize)
                .saturating_sub(done.freed_by_rcu_bytes)
        };
        let reached = |done: &Reclaimed| {
            if trust_booked {
                done.freed_bytes >= target
            } else {
                met()
            }
        };
        for priority in (0..=12u8).rev() {
            done.priority = priority;
            let mut pass = PriorityStats::default();
            for reg in &shrinkers {
                let own = !trust_booked;
                self.shrink_one(reg, mask, priority, target, own, &mut done, &mut pass);
                if trust_booked
                    && (done.freed_bytes >= target
                        || (self.rcu_aware
                            && done.freed_bytes.saturating_add(done.queued_via_rcu_bytes)
                                >= target))
                {
                    break;
                }
            }
            if self.rcu_aware && (!trust_booked || done.freed_bytes < target) {
                // Count what RCU really freed meanwhile, on this thread or
                // by its workers.
                let want = if trust_booked {
                    target - done.freed_bytes
                } else {
                    target
                };
                let report = self.rcu.run_callbacks_for(mask, priority, want);
                let freed = rcu_freed_since(&done).max(report.bytes_freed);
                done.freed_bytes = done.freed_bytes.saturating_add(freed);
                done.freed_by_rcu_bytes = done.freed_by_rcu_bytes.saturating_add(freed);
                pass.rcu_freed_bytes = pass.rcu_freed_bytes.saturating_add(freed as u64);
            }
            lock(&self.stats).add_pass(priority, &pass);
            if reached(&done) {
                return Ok(done);
            }
        }
        // Before giving up: wait for what is in flight in RCU.
        if self.rcu_aware
            && self.rcu.pending_bytes() > 0
            && !self.rcu.in_read_section()
            && !Rcu::in_callback()
        {
            self.rcu.barrier();
            done.waited_for_rcu = true;
            lock(&self.stats).rcu_waits += 1;
        }
        if self.rcu_aware {
            // What RCU freed since the last pass's count (the barrier, or
            // a worker that emptied the queue before the barrier was due).
            let freed = rcu_freed_since(&done);
            done.freed_bytes = done.freed_bytes.saturating_add(freed);
            done.freed_by_rcu_bytes = done.freed_by_rcu_bytes.saturating_add(freed);
            if trust_booked && done.freed_bytes >= target {
                return Ok(done);
            }
        }
        if met() {
            return Ok(done);
        }
        let ctl = ShrinkControl::new(mask.clone(), 0, 0);
        Err(OutOfMemory(OomReport {
            target_bytes: target,
            shrinkers: shrinkers
                .iter()
                .filter_map(|r| r.enter().map(|s| (s.name().to_string(), s.count(&ctl))))
                .collect(),
            rcu_pending: (self.rcu.pending(), self.rcu.pending_bytes()),
            reclaimed: done,
        }))
    }

    /// One shrinker at one priority (the kernel's `do_shrink_slab`); with
    /// `own`, it stops at about `target` bytes of its own, whatever the
    /// shrinkers before it booked.
    #[allow(clippy::too_many_arguments)]
    fn shrink_one(
        &self,
        reg: &Registered,
        mask: &NodeMask,
        priority: u8,
        target: usize,
        own: bool,
        done: &mut Reclaimed,
        pass: &mut PriorityStats,
    ) {
        let Some(s) = reg.enter() else {
            return;
        };
        let mut ctl = ShrinkControl::new(mask.clone(), priority, 0);
        let freeable = s.count(&ctl);
        if freeable == 0 {
            return;
        }
        // What this reclaim has evicted, each byte once: freed at once, or
        // queued for RCU (whether RCU has freed it since or not; what it
        // freed is in `freed_bytes` too, and was counted twice, so that
        // pieces sized by the bytes still wanted shrank to one object
        // while the target was far off).
        let in_hand = |done: &Reclaimed| {
            if self.rcu_aware {
                let direct = done.freed_bytes.saturating_sub(done.freed_by_rcu_bytes);
                direct.saturating_add(done.queued_via_rcu_bytes.max(done.freed_by_rcu_bytes))
            } else {
                done.freed_bytes
            }
        };
        let before = if own { in_hand(done) } else { 0 };
        let deferred = reg.deferred.swap(0, Ordering::Relaxed);
        let mut total = scan_target(freeable, priority, s.seeks(), deferred);
        let mut fruitless = 0;
        // What this call's scans evicted: the bytes an object weighs here.
        let mut seen = Scanned::default();
        'batches: while total >= SHRINK_BATCH || (total > 0 && total >= freeable) {
            // The kernel's batch of objects, scanned in pieces sized by the
            // bytes still wanted: `SHRINK_BATCH` objects of a cache of
            // 64 KiB..1 MiB values were 50 MiB, the whole cache, for a
            // budget's step of 1.5 MiB (each step emptied it again).
            let mut batch = total.min(SHRINK_BATCH);
            let mut got_in_batch = Scanned::default();
            while batch > 0 {
                let wanted = target.saturating_sub(in_hand(done) - before);
                let nr = piece_of_batch(batch, wanted, seen);
                ctl = ShrinkControl::new(mask.clone(), priority, nr);
                let got = s.scan(&mut ctl);
                seen.freed = seen.freed.saturating_add(got.freed);
                seen.bytes = seen.bytes.saturating_add(got.bytes);
                got_in_batch.freed = got_in_batch.freed.saturating_add(got.freed);
                got_in_batch.bytes = got_in_batch.bytes.saturating_add(got.bytes);
                book_scan(s.frees_via_rcu(), got, &ctl, done, pass);
                let scanned = ctl.scanned().min(batch);
                total -= scanned.min(total);
                batch -= scanned;
                // With the RCU loop on, what this call queued through RCU
                // will be freed by it (the pass ends with `run_callbacks`):
                // evict about the target and let a grace period free it,
                // in steps, rather than evict all the priority allows at
                // once and hold it all as garbage (the kernel's
                // SWAP_CLUSTER_MAX steps).
                if ctl.stopped() || scanned == 0 || in_hand(done) - before >= target {
                    break 'batches;
                }
            }
            fruitless = fruitless_after(fruitless, &got_in_batch);
            if fruitless >= FRUITLESS_BATCHES {
                break;
            }
        }
        reg.deferred
            .fetch_add(total.min(freeable.saturating_mul(2)), Ordering::Relaxed);
    }
}

/// The objects to scan next out of the `batch` left of a kernel batch,
/// for `wanted` bytes more, by what `seen` says this shrinker's scans
/// evicted so far in this call: a single object first, to learn the
/// weight; then as many as weigh `wanted` at the weight seen on average
/// (rounded down, at least one), but at most as many as were seen (so a
/// light first object does not size a piece of heavy ones); the whole
/// rest where the shrinker reports no bytes. A scan then overshoots its
/// target by about an object, not by a batch (128 objects).
fn piece_of_batch(batch: usize, wanted: usize, seen: Scanned) -> usize {
    if seen.freed == 0 {
        return 1.min(batch);
    }
    match seen.bytes / seen.freed {
        0 => batch,
        weight => (wanted / weight).clamp(1, seen.freed).min(batch),
    }
}

/// Batches in a row that freed nothing, after one that reported `got`
/// (see [`FRUITLESS_BATCHES`]).
fn fruitless_after(fruitless: usize, got: &super::shrinker::Scanned) -> usize {
    if got.freed == 0 && got.bytes == 0 {
        fruitless + 1
    } else {
        0
    }
}

/// Books one `scan` call's report in `done` and `pass`. Shrinkers are
/// the caller's code and may claim any count (`usize::MAX` bytes, say):
/// every sum saturates, so a wrong report never overflows a counter (a
/// panic in a debug build, a wrapped-around and far too small total in a
/// release one).
fn book_scan(
    via_rcu: bool,
    got: super::shrinker::Scanned,
    ctl: &ShrinkControl,
    done: &mut Reclaimed,
    pass: &mut PriorityStats,
) {
    let bytes64 = u64::try_from(got.bytes).unwrap_or(u64::MAX);
    if via_rcu {
        done.queued_via_rcu_bytes = done.queued_via_rcu_bytes.saturating_add(got.bytes);
        pass.queued_via_rcu_bytes = pass.queued_via_rcu_bytes.saturating_add(bytes64);
    } else {
        done.freed_bytes = done.freed_bytes.saturating_add(got.bytes);
        pass.freed_bytes = pass.freed_bytes.saturating_add(bytes64);
    }
    let scanned = u64::try_from(ctl.scanned()).unwrap_or(u64::MAX);
    pass.scanned = pass.scanned.saturating_add(scanned);
}

impl fmt::Debug for Reclaimer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reclaimer")
            .field("rcu_aware", &self.rcu_aware)
            .field("shrinkers", &lock(&self.shrinkers).len())
            .finish_non_exhaustive()
    }
}
