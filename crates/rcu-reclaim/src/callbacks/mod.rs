//! The callback engine: per-CPU shards of segmented callback lists and bulk
//! pages, the grace periods that retire them, and the workers that run them.
//!
//! * `defer_drop` appends two words to the thread's own bulk page; a full
//!   page is sealed with a grace-period cookie and handed to the shard.
//!   `call` appends its closure the same way (stored in the entry when it
//!   fits in a pointer, else boxed); `call_sized` with bytes and
//!   `call_hurry` queue a boxed closure on the current CPU's shard.
//! * A thread's page goes to its shard when full or when it holds
//!   `pace_bytes`; a shard that then holds a batch or `pace_bytes` not yet
//!   assigned a grace period gets one at once, and the handing thread moves
//!   grace periods on itself without waiting (`GracePeriods::try_advance`:
//!   it completes the one in progress if every reader has moved on, and
//!   starts the next), so garbage waits about one page of retires, not for
//!   the grace-period thread to be scheduled.
//! * The grace-period thread (`gp_thread.rs`) decides when shards need a
//!   grace period — by the pace above, lazily for a trickle (once its
//!   oldest entry has waited `lazy_delay`), at once for `call_hurry`,
//!   overload or barrier — runs it, advances the lists and wakes the
//!   workers (one per node, or one pinned per CPU with `worker_per_cpu`).
//! * Workers run ready callbacks in batches of `max(blimit, pending >> 7)`
//!   and one ready page per batch, yielding between batches. Callbacks and deferred
//!   drops never run inside a retiring call (`call`, `defer_drop`,
//!   `RcuCell::store`), as the kernel never runs them inside `call_rcu`:
//!   a caller may hold a lock that some destructor takes. The exception is
//!   a page of values that drop anywhere (`drops_anywhere`: no drop glue,
//!   or `ReclaimSize::DROPS_ANYWHERE`): a thread that hands its shard such
//!   pages frees the shard's ready ones in steps, a few objects per retire
//!   (`drain.rs`), and they are left to it while it keeps handing them
//!   off, as below. Only where the
//!   domain opts in (`retiring_thread_frees`), a thread that keeps handing
//!   full pages to a shard drops that shard's ready pages itself, eight per
//!   hand-off, on the core that allocated the objects; a worker takes them
//!   under pressure or `producer_window` (5 ms) after that thread's last
//!   hand-off.
//! * `barrier` flushes every thread's page, waits for a grace period covering
//!   everything queued, and runs what is ready itself.

//!
//! The files: `api.rs` (the domain's retiring calls), `shard.rs` (one
//! CPU's list and pages), `segcblist.rs`, `bulk.rs`, `local.rs` and
//! `drain.rs` (the containers), `plan.rs` (which shards need a grace
//! period), `flush.rs` (threads' pages into the shards), `invoke.rs`
//! (running what is ready), `barrier.rs`, `throttle.rs` (holding back
//! producers), `worker.rs` and `fork.rs`.

mod api;
mod barrier;
pub(crate) mod bulk;
mod drain;
mod flush;
#[cfg(not(loom))]
mod fork;
mod headroom;
mod invoke;
pub(crate) mod local;
mod plan;
mod retire;
mod retire_waits;
mod segcblist;
mod shard;
mod throttle;
mod worker;

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use crate::policy;
pub(crate) use crate::policy::Params;

pub use api::without_page_allocation;
pub(crate) use bulk::{bump_relaxed, drop_box, BulkPage};
pub use bulk::{PageAllocator, SystemPageAllocator, BULK_PAGE_SIZE};
#[cfg(not(loom))]
pub(crate) use fork::EngineLocks;
#[cfg_attr(loom, allow(unused_imports))]
pub(crate) use headroom::Headroom;
#[cfg(not(loom))]
pub(crate) use local::HeldForFork;
pub(crate) use local::LocalBuffer;
#[cfg(not(loom))]
pub(crate) use retire_waits::pay_owed_throttle;
use segcblist::Entry;
use shard::{InvokeLists, Shard, ShardState};
pub(crate) use throttle::one_call;
pub(crate) use worker::Workers;
#[cfg(not(loom))]
pub(crate) use worker::WorkersForkHeld;

use crate::fast_mode::Pressure;
use crate::gp::{GracePeriods, WaitMode};
use std::sync::Arc;

use crate::sync::{lock, try_lock};
use crate::topology::Topology;

/// The domain as the engine's threads see it: its number, its grace
/// periods and its engine. The workers and the grace-period thread hold it
/// weakly (`Weak<dyn EngineHost>`), so the engine never names the domain's
/// own type; the domain's inner state implements it.
pub(crate) trait EngineHost: Send + Sync + 'static {
    /// The domain's number.
    fn id(&self) -> u64;
    /// Its grace periods.
    fn gp(&self) -> &GracePeriods;
    /// Its callback engine.
    fn callbacks(&self) -> &Callbacks;
}

/// What a safe point (`Callbacks::collect`) did.
pub(crate) enum Collected {
    /// Ran this many callbacks and objects (maybe none: nothing waited, or
    /// someone else runs the shard).
    Ran(usize),
    /// The oldest entry's grace period is still in progress (this call may
    /// have started it): someone must finish it if this thread stops.
    Waiting,
}

/// Counters of the engine (relaxed; for stats only).
#[derive(Default)]
pub(crate) struct CbCounters {
    pub(crate) throttles: AtomicU64,
    pub(crate) pressure_throttles: AtomicU64,
    pub(crate) pressure_throttle_us: AtomicU64,
    pub(crate) held_up_waits: AtomicU64,
    pub(crate) held_up_wait_us: AtomicU64,
    pub(crate) headroom_waits: AtomicU64,
    pub(crate) headroom_wait_us: AtomicU64,
    pub(crate) call_backlog_waits: AtomicU64,
    pub(crate) call_backlog_wait_us: AtomicU64,
    pub(crate) calls: AtomicU64,
    pub(crate) deferred_drops: AtomicU64,
    pub(crate) invoked: AtomicU64,
    pub(crate) bytes_freed: AtomicU64,
    pub(crate) pages_freed: AtomicU64,
    pub(crate) fallback_syncs: AtomicU64,
    pub(crate) panics: AtomicU64,
    pub(crate) overload_events: AtomicU64,
    pub(crate) overload_expedited: AtomicU64,
    pub(crate) barriers: AtomicU64,
    pub(crate) lazy_flushes: AtomicU64,
    pub(crate) page_steals: AtomicU64,
}

pub(super) fn add(c: &AtomicU64, n: usize) {
    c.fetch_add(n as u64, Ordering::Relaxed);
}

/// Called with the message of a panicking callback.
pub(crate) type PanicHook = Arc<dyn Fn(&str) + Send + Sync>;

pub(crate) struct Callbacks {
    pub(crate) topology: Topology,
    shards: Box<[CachePadded<Shard>]>,
    pub(crate) params: Params,
    pub(crate) alloc: Arc<dyn PageAllocator>,
    pub(crate) counters: CbCounters,
    pub(crate) workers: Workers,
    pub(crate) pressure: Pressure,
    panic_hook: Option<PanicHook>,
    /// Set while the total backlog is over `qovld`.
    overloaded: AtomicBool,
    /// The bound on garbage under a memory limit (`headroom.rs`).
    headroom: headroom::HeadroomState,
    /// Set once a thread was told that it retires inside its own section
    /// while memory is short (`Rcu::warn_retiring_in_own_section`).
    pub(crate) own_section_warned: AtomicBool,
}

/// For the engine's tests: a reader that holds a section of `rcu` (in
/// place when this returns) until it is told to go, then `ms` longer.
#[cfg(all(test, not(loom)))]
fn reader_held_until_go(
    rcu: &crate::Rcu,
    ms: u64,
) -> (std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>) {
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let r = rcu.clone();
    let reader = std::thread::spawn(move || {
        let _section = r.read_lock();
        held_tx.send(()).unwrap();
        go_rx.recv().unwrap();
        std::thread::sleep(Duration::from_millis(ms));
    });
    held_rx.recv().unwrap();
    (go_tx, reader)
}

#[cfg(not(loom))]
thread_local! {
    /// Set while this thread runs RCU callbacks.
    static IN_CALLBACK: Cell<bool> = const { Cell::new(false) };
}

// Loom threads share one OS thread: per-thread state must be loom's.
#[cfg(loom)]
loom::thread_local! {
    static IN_CALLBACK: Cell<bool> = Cell::new(false);
}

/// Whether the calling thread is running an RCU callback.
#[inline]
pub(crate) fn in_callback() -> bool {
    IN_CALLBACK.with(Cell::get)
}

/// What the grace-period thread should do next.
pub(crate) struct GpPlan {
    /// The sequence value to run grace periods up to.
    pub(crate) target: Option<u64>,
    pub(crate) mode: WaitMode,
    /// When lazily queued entries become due, if any wait.
    pub(crate) next_deadline: Option<Duration>,
}

impl Callbacks {
    pub(crate) fn new(
        topology: Topology,
        params: Params,
        alloc: Arc<dyn PageAllocator>,
        panic_hook: Option<PanicHook>,
    ) -> Self {
        let shards = (0..topology.cpus())
            .map(|_| CachePadded::new(Shard::new()))
            .collect();
        let workers = Workers::new(
            Self::worker_groups(&topology, params.worker_per_cpu),
            params.workers_per_node,
            params.worker_per_cpu,
        );
        let headroom = headroom::HeadroomState::new(&params);
        Callbacks {
            pressure: Pressure::new(topology.nodes()),
            topology,
            shards,
            params,
            alloc,
            counters: CbCounters::default(),
            workers,
            panic_hook,
            overloaded: AtomicBool::new(false),
            own_section_warned: AtomicBool::new(false),
            headroom,
        }
    }

    pub(crate) fn shards(&self) -> usize {
        self.shards.len()
    }

    /// The shards each worker group serves: one CPU each, or a node's.
    fn worker_groups(topology: &Topology, per_cpu: bool) -> Vec<Vec<usize>> {
        if per_cpu {
            (0..topology.cpus()).map(|c| vec![c]).collect()
        } else {
            (0..topology.nodes())
                .map(|n| topology.cpus_of(n).to_vec())
                .collect()
        }
    }

    /// The worker group that serves shard `cpu`.
    fn worker_group(&self, cpu: usize) -> usize {
        if self.params.worker_per_cpu {
            cpu
        } else {
            self.topology.node_of(cpu)
        }
    }

    pub(crate) fn current_shard(&self) -> usize {
        self.topology.current_cpu()
    }

    /// Queues a callback on the current CPU's shard; returns whether the
    /// grace-period thread should be woken, and the shard. `deferred`: it
    /// is a deferred drop's no-page fallback, counted as a deferred drop
    /// (not in `Stats::callbacks_queued`, which counts `call*`).
    pub(crate) fn enqueue(
        &self,
        f: Box<dyn FnOnce() + Send>,
        bytes: usize,
        hurry: bool,
        deferred: bool,
    ) -> (bool, usize) {
        if deferred {
            add(&self.counters.deferred_drops, 1);
        } else {
            add(&self.counters.calls, 1);
        }
        let cpu = self.current_shard();
        let shard = &self.shards[cpu];
        let mut st = lock(&shard.state);
        let was_idle = st.since.is_none();
        st.list.enqueue(Entry::call(f, bytes));
        if was_idle {
            st.since = Some(Instant::now());
        }
        st.hurry |= hurry;
        let (kick, _) = self.after_enqueue(&mut st, was_idle, bytes);
        shard.publish(&st);
        (kick || hurry, cpu)
    }

    /// Overload, batch and byte checks after queueing `added_bytes`;
    /// returns whether to kick, and the shard's entries not yet assigned a
    /// grace period with their bytes (`unrequested`: a walk of its pages,
    /// which a hand-off needs again).
    fn after_enqueue(
        &self,
        st: &mut ShardState,
        was_idle: bool,
        added_bytes: usize,
    ) -> (bool, (usize, usize)) {
        let (count, _) = st.totals();
        let mut kick = was_idle;
        if policy::shard_overloads(&self.params, count) && !st.overloaded {
            st.overloaded = true;
            add(&self.counters.overload_events, 1);
            tracing::debug!(
                count,
                "rcu-reclaim: shard over qhimark, starting a grace period at once"
            );
            kick = true;
        }
        // Overload cancels the lazy delay for everything queued meanwhile.
        st.hurry |= st.overloaded;
        let (unrequested, unrequested_bytes) = st.unrequested();
        let kick = policy::kick_after_enqueue(
            &self.params,
            kick,
            st.overloaded,
            unrequested,
            (unrequested_bytes, added_bytes),
        );
        (kick, (unrequested, unrequested_bytes))
    }

    /// Seals a page that is not the caller's own (stolen from its thread,
    /// or orphaned by one that exited), or the caller's own handed on early
    /// (reclaim, which then waits for a grace period itself), and hands it
    /// to the current shard. `adopted`: a stolen or orphaned page, which
    /// goes early (see `hand_off_as`): it asks for a grace period at the
    /// next plan. Returns whether to kick the grace-period thread.
    pub(crate) fn hand_off(&self, gp: &GracePeriods, page: BulkPage, adopted: bool) -> bool {
        match self.hand_off_as(gp, page, false, false, adopted, true) {
            Ok((kick, _, _)) => kick,
            Err(_) => unreachable!("a hand-off that waits for the lock takes the page"),
        }
    }

    /// Hands the page `local` buffers, if any, to the current shard, by
    /// its owner (outside its fast path). Under the buffer's lock, as a
    /// full page is handed off, so a concurrent `barrier` finds the page
    /// there or on the shard. Returns whether the grace-period thread must
    /// be woken.
    pub(crate) fn hand_off_buffered(&self, gp: &GracePeriods, local: &LocalBuffer) -> bool {
        local.with_page_owner(|page| match page.take() {
            Some(p) => {
                local.reset_counts();
                self.hand_off(gp, p, false)
            }
            None => false,
        })
    }

    /// As `hand_off`, by the page's own thread (`own`), which then drives
    /// the grace period itself: when the shard is due (a batch, or
    /// `pace_bytes`), its entries are assigned a grace period at once and
    /// the sequence value that completes them is returned with the kick.
    /// The thread frees the shard's ready pages after this when the domain
    /// lets it (`retiring_thread_frees`), or, by default, plain ones when
    /// it hands off a plain page. `early`: the page goes early
    /// (`policy::page_due_early`), and the shard is due whatever it holds.
    ///
    /// A page that is not full goes only if the shard's lock is free at
    /// once (`Err` hands it back, to keep filling and try again at the
    /// next retire): the caller may be inside a read-side section, and
    /// waiting there for a lock held by a background thread that lost its
    /// CPU held every grace period up for milliseconds (the update-heavy
    /// bench's peaks of garbage). A full page waits for the lock.
    ///
    /// `Ok((kick, idle, target))`: `idle` says the shard was idle, so the
    /// grace-period thread must look within the lazy delay; the caller
    /// kicks for that only if the thread has not promised to look by then
    /// (a kick at every hand-off to an idle shard woke it every 10 µs for
    /// 64-byte values).
    pub(crate) fn hand_off_own(
        &self,
        gp: &GracePeriods,
        page: BulkPage,
        early: bool,
    ) -> Result<(bool, bool, Option<u64>), BulkPage> {
        let producer = self.params.retiring_thread_frees || page.is_plain();
        // A full page waits for the shard's lock; so does any due page
        // under a garbage bound, which sees only what the shards hold (a
        // page kept here on a held lock left a 4 MiB value outside it).
        let wait = page.is_full() || self.has_headroom();
        self.hand_off_as(gp, page, producer, true, early, wait)
    }

    /// `wait`: wait for the shard's lock (else `Err` hands the page back
    /// if it is held). `early`: the shard is due whatever it holds (its
    /// `hurry`): the page's own thread asks for the grace period here,
    /// the grace-period thread at its next plan for a page adopted from
    /// its thread.
    fn hand_off_as(
        &self,
        gp: &GracePeriods,
        mut page: BulkPage,
        producer: bool,
        own: bool,
        early: bool,
        wait: bool,
    ) -> Result<(bool, bool, Option<u64>), BulkPage> {
        if page.len() == 0 {
            self.recycle(self.current_shard(), page);
            return Ok((false, false, None));
        }
        let shard = &self.shards[self.current_shard()];
        let locked = if wait {
            Some(lock(&shard.state))
        } else {
            try_lock(&shard.state)
        };
        let Some(mut st) = locked else {
            return Err(page);
        };
        // Under the lock: a concurrent `barrier` that found the page gone
        // from the thread finds it on the shard with its cookie.
        page.cookie = gp.snapshot();
        add(&self.counters.deferred_drops, page.len() - page.calls());
        add(&self.counters.calls, page.calls());
        // A shard whose thread frees at its safe points (`collect`) gets
        // its pages' grace period at once: that thread is waiting to free.
        let collecting = shard.collector_recent(self.params.producer_window);
        // Frees every kind of page, or (the default's own plain page) only
        // plain ones.
        let frees_all = (producer && self.params.retiring_thread_frees) || collecting;
        let producer = producer || collecting;
        let was_idle = st.since.is_none();
        if was_idle || producer {
            let now = crate::clock::now();
            if was_idle {
                st.since = Some(now);
            }
            if producer {
                st.last_handoff = Some(now);
                st.producer_plain_only = !frees_all;
            }
        }
        let added = page.bytes();
        st.push_page(page);
        // An early page makes the shard due. For a page adopted from its
        // thread (taken by a lazy flush, after waiting its lazy delay
        // there, or left by a thread that exited) no later retire of that
        // thread will carry it along, and a shard's own lazy delay after
        // the one it waited would make a trickle wait twice as long (with
        // a long `lazy_delay`, an exited thread's last few objects waited
        // for the next flush, then that delay again): the next plan gives
        // it a grace period.
        st.hurry |= early;
        // The page's own thread weighs the idle shard's kick itself (see
        // `hand_off_own`).
        let (kick, (unrequested, unrequested_bytes)) =
            self.after_enqueue(&mut st, was_idle && !own, added);
        shard.publish(&st);
        let due = st.hurry
            || collecting
            || policy::batch_full(&self.params, unrequested, unrequested_bytes);
        let target = if own && due {
            self.request_all(gp, &mut st);
            Self::needed_all(gp, &st)
        } else {
            None
        };
        Ok((kick || due, own && was_idle, target))
    }

    /// Whether the domain's backlog is over `qovld` (as last planned).
    pub(crate) fn is_overloaded(&self) -> bool {
        self.overloaded.load(Ordering::Relaxed)
    }

    /// Whether shard `cpu` has pages whose grace period has elapsed that
    /// are not left to the thread handing it pages (see `has_ready`).
    /// A retiring thread asks this, possibly inside a read-side section:
    /// it does not wait for the shard's lock, and answers `true` (wake the
    /// worker, which looks itself) while another thread holds it.
    pub(crate) fn worker_has_pages(&self, gp: &GracePeriods, cpu: usize) -> bool {
        try_lock(&self.shards[cpu].state)
            .map_or(true, |st| self.pages_for_worker(&st, cpu, gp.seq()))
    }

    /// Wakes the worker that serves shard `cpu`.
    pub(crate) fn wake_worker(&self, cpu: usize) {
        self.workers.wake(self.worker_group(cpu));
    }

    /// An empty page from the current shard's spares, or a new one.
    /// An empty page: a spare from the current shard, or else (when
    /// `may_allocate`) a new one from the page allocator.
    pub(crate) fn fresh_page(&self, may_allocate: bool) -> Option<BulkPage> {
        let shard = &self.shards[self.current_shard()];
        // A retiring thread (maybe in a read-side section) does not wait
        // for the shard's lock: a new page costs less than that wait.
        if let Some(p) = try_lock(&shard.state).and_then(|mut st| st.spare.pop()) {
            return Some(p);
        }
        if may_allocate {
            BulkPage::allocate(&self.alloc)
        } else {
            None
        }
    }

    /// Keeps an emptied page as one of shard `cpu`'s spares, or frees it
    /// (the spares are full, or the shard's lock is held: a retiring thread
    /// recycles, maybe inside a read-side section, where it must not wait
    /// for a lock a background thread holds).
    fn recycle(&self, cpu: usize, page: BulkPage) {
        if let Some(mut st) = try_lock(&self.shards[cpu].state) {
            st.keep_spare(page);
        }
    }

    /// Callbacks and deferred drops not yet run, and their bytes.
    pub(crate) fn pending(&self, gp: &GracePeriods) -> (usize, usize) {
        // The exited threads' pages are behind a lock that the parent's
        // grace-period thread takes at every pass: in a child forked
        // without `prepare_fork` it may be held for ever, and is given up
        // on, naming the fix, as `stats()` does.
        let _forked = crate::sync::ForkedWaits::scope(gp.fork_check("pending()"));
        let (n, b) = self.local_totals(gp);
        let (sn, sb) = self.shard_totals();
        (n + sn, b + sb)
    }

    /// Callbacks and bytes queued on the shards.
    fn shard_totals(&self) -> (usize, usize) {
        self.shards.iter().fold((0, 0), |(n, b), s| {
            (
                n + s.count.load(Ordering::Relaxed),
                b + s.bytes.load(Ordering::Relaxed),
            )
        })
    }

    /// The bytes of [`pending`](Self::pending) without the exited threads'
    /// pages (whose list is behind a lock): for a stall report, made under
    /// the grace-period lock.
    pub(crate) fn pending_bytes_unlocked(&self, gp: &GracePeriods) -> usize {
        Self::slot_totals(gp).1 + self.shard_totals().1
    }

    /// Pending callbacks and bytes queued on `cpu`'s shard (folded into range).
    pub(crate) fn pending_on_cpu(&self, cpu: usize) -> (usize, usize) {
        let s = &self.shards[cpu % self.shards.len()];
        (
            s.count.load(Ordering::Relaxed),
            s.bytes.load(Ordering::Relaxed),
        )
    }

    /// Pending callbacks and bytes on the shards of `node`.
    pub(crate) fn pending_on_node(&self, node: usize) -> (usize, usize) {
        self.topology
            .cpus_of(node)
            .iter()
            .map(|&c| self.pending_on_cpu(c))
            .fold((0, 0), |(n, b), (n2, b2)| (n + n2, b + b2))
    }

    /// Per-shard totals and overload flags, for stats.
    pub(crate) fn shard_snapshot(&self, cpu: usize) -> (usize, usize, bool) {
        let st = lock(&self.shards[cpu].state);
        let (n, b) = st.totals();
        (n, b, st.overloaded)
    }

    /// Whether nothing at all is queued or buffered.
    pub(crate) fn is_idle(&self, gp: &GracePeriods) -> bool {
        self.pending(gp).0 == 0
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::{BulkPage, Callbacks, Entry, InvokeLists, ShardState};
    use crate::sync::lock;
    use crate::{Config, Rcu};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// In a child forked without `prepare_fork` while a thread of the
    /// parent held the exited threads' pages (the grace-period thread
    /// takes their lock at every pass), `pending()` gives up on that lock
    /// within seconds, naming the fix, as `stats()` does; it waited for
    /// ever (a forked child in `audit_core` hung once in CI).
    #[test]
    #[cfg_attr(miri, ignore = "Miri cannot fork")]
    fn pending_in_a_child_forked_unprepared_does_not_hang_on_the_orphans_lock() {
        let rcu = Rcu::new(Config::new()).unwrap();
        let registry = rcu.inner().gp.registry().clone();
        crate::unprepared_fork::child_gives_up(
            move |wait| {
                let _orphans = lock(&registry.orphans);
                wait();
            },
            || {
                rcu.pending();
            },
            &["pending()"],
        );
        assert_eq!(rcu.pending(), 0);
    }

    /// What all of a shard's pages need, read from their highest cookie,
    /// is what walking them finds, whatever order the cookies were queued
    /// in and after the ready pages leave.
    #[test]
    fn the_highest_cookie_gives_what_all_pages_need() {
        let rcu = Rcu::new(Config::new().on_demand()).unwrap();
        let inner = rcu.inner();
        let (cbs, gp) = (&inner.callbacks, &inner.gp);
        let mut st = ShardState::default();
        let all = |st: &ShardState| Callbacks::needed(gp, st, st.pages.len());
        assert_eq!(Callbacks::needed_all(gp, &st), None);
        let done = gp.seq();
        let next = gp.snapshot();
        assert!(gp.done(done) && !gp.done(next));
        // Two threads may seal pages in one order and queue them in the
        // other: cookies need not rise along the queue.
        for cookie in [done, next + 8, next, done] {
            let mut page = BulkPage::allocate(&cbs.alloc).unwrap();
            page.cookie = cookie;
            st.push_page(page);
            assert_eq!(Callbacks::needed_all(gp, &st), all(&st), "{cookie}");
        }
        assert_eq!(Callbacks::needed_all(gp, &st), Some(next + 8));
        let mut ready = Vec::new();
        st.take_ready_pages(gp.seq(), usize::MAX, &mut ready);
        assert_eq!(ready.len(), 1, "only the front page is ready");
        assert_eq!(Callbacks::needed_all(gp, &st), all(&st));
    }

    /// A page due by the pace whose hand-off finds its shard's lock held
    /// stays with its thread (a retire never waits for the lock before its
    /// page is full); if the thread retires no more, the grace-period
    /// thread's next look takes it, not the lazy delay (a minute here).
    /// Found by Miri, whose scheduler held the lock at that retire for some
    /// seeds: the paced garbage waited for the lazy delay.
    #[test]
    #[cfg_attr(
        miri,
        ignore = "timing: holds every shard's lock across a thread's retires"
    )]
    fn a_due_page_refused_by_a_held_shard_goes_at_the_next_look() {
        let rcu = Rcu::new(
            Config::new()
                .lazy_delay(std::time::Duration::from_secs(60))
                .lazy_batch(1 << 30)
                .pace_bytes(32 << 10),
        )
        .unwrap();
        let inner = rcu.inner();
        let cbs = &inner.callbacks;
        let guards: Vec<_> = cbs.shards.iter().map(|s| lock(&s.state)).collect();
        let (retired_tx, retired_rx) = std::sync::mpsc::channel();
        let (end_tx, end_rx) = std::sync::mpsc::channel::<()>();
        let retirer = {
            let rcu = rcu.clone();
            std::thread::spawn(move || {
                // 128 KiB in 8 objects: due by four times the pace at the 8th.
                for _ in 0..8 {
                    rcu.defer_drop(Box::new(vec![0u8; 16 << 10]));
                }
                retired_tx.send(()).unwrap();
                // Registered, its page still here, and retiring no more.
                let _ = end_rx.recv();
            })
        };
        retired_rx.recv().unwrap();
        // (Not `stats()`, which takes the shards' locks held here.)
        assert_eq!(
            cbs.counters.deferred_drops.load(Ordering::Relaxed),
            0,
            "the shard's lock was held"
        );
        drop(guards);
        let start = std::time::Instant::now();
        while rcu.pending_bytes() != 0 {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(20),
                "the refused page waited for the lazy delay: {:?}",
                rcu.stats()
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        end_tx.send(()).unwrap();
        retirer.join().unwrap();
    }

    /// A batch's lists stay with the shard for the next batch (freeing them
    /// made glibc consolidate the objects the batch had just freed), empty;
    /// lists grown past `KEEP_AT_MOST` by a huge batch are freed.
    #[test]
    fn a_shards_batch_lists_are_kept_empty_and_huge_ones_freed() {
        let rcu = Rcu::new(Config::new().on_demand()).unwrap();
        let inner = rcu.inner();
        let cbs = &inner.callbacks;
        let run = |n: usize| {
            let ran = std::sync::Arc::new(AtomicUsize::new(0));
            {
                let mut st = lock(&cbs.shards[0].state);
                for _ in 0..n {
                    let ran = ran.clone();
                    let f: Box<dyn FnOnce() + Send> = Box::new(move || {
                        ran.fetch_add(1, Ordering::Relaxed);
                    });
                    st.list.enqueue(Entry::call(f, 8));
                }
                st.list.accelerate(inner.gp.snapshot());
            }
            rcu.synchronize();
            cbs.invoke_ready(&inner.gp, 0, Some(usize::MAX));
            assert_eq!(ran.load(Ordering::Relaxed), n, "every callback ran");
            let lists = lock(&cbs.shards[0].invoke);
            assert!(lists.batch.is_empty() && lists.pages.is_empty());
            lists.batch.capacity()
        };
        assert!(run(100) >= 100, "a batch's list is kept for the next one");
        assert_eq!(
            run(InvokeLists::KEEP_AT_MOST + 1),
            0,
            "a huge list is freed"
        );
    }

    /// Retires inside a read-side section never wait for a shard's lock
    /// until a page is full: here every shard is held (as by a background
    /// thread that lost its CPU while holding one), and 200 retires, each
    /// past the hand-off pace from the 128th on, still return; before, the
    /// 128th waited for the lock, holding every grace period up.
    #[test]
    #[cfg_attr(
        miri,
        ignore = "timing: Miri's clock runs with the interpreter, past the holder's 10 s"
    )]
    fn retires_do_not_wait_for_a_held_shard_until_their_page_is_full() {
        // The default pace: a page of 128 small objects is due.
        let rcu = Rcu::new(Config::new()).unwrap();
        let inner = rcu.inner().clone();
        let (held_tx, held_rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let holder = std::thread::spawn(move || {
            let cbs = &inner.callbacks;
            let guards: Vec<_> = cbs.shards.iter().map(|s| super::lock(&s.state)).collect();
            held_tx.send(()).unwrap();
            // Held until the retires are done, or for 10 s at most.
            let _ = done_rx.recv_timeout(std::time::Duration::from_secs(10));
            drop(guards);
        });
        held_rx.recv().unwrap();
        let retirer = {
            let rcu = rcu.clone();
            std::thread::spawn(move || {
                let start = std::time::Instant::now();
                let guard = rcu.read_lock();
                for i in 0..200u64 {
                    rcu.defer_drop(Box::new([i; 8]));
                }
                drop(guard);
                start.elapsed()
            })
        };
        let took = retirer.join().unwrap();
        let _ = done_tx.send(()); // the holder may have given up already
        holder.join().unwrap();
        assert!(
            took < std::time::Duration::from_secs(5),
            "200 retires took {took:?} while the shards were held"
        );
        rcu.barrier();
        assert_eq!(rcu.pending(), 0);
    }

    /// A thread that cannot free the shard's ready pages because someone
    /// holds the shard (maybe a thread preempted in its own inline free)
    /// hands the work to the node's worker instead of skipping it.
    #[test]
    fn a_busy_shard_sends_its_ready_pages_to_the_worker() {
        let rcu = Rcu::new(Config::new().on_demand()).unwrap();
        let inner = rcu.inner();
        let cbs = &inner.callbacks;
        assert!(!cbs.workers.work_requested(0), "no work yet");
        cbs.free_ready_pages(&inner.gp, 0, 2); // free shard, nothing ready
        assert!(!cbs.workers.work_requested(0));
        let held = crate::sync::lock(&cbs.shards[0].invoke);
        cbs.free_ready_pages(&inner.gp, 0, 2);
        drop(held);
        assert!(cbs.workers.work_requested(0));
    }

    /// A thread whose drain is empty and whose shard holds ready pages
    /// left to it (`producer_window` after its last hand-off) makes sure
    /// the grace-period thread looks once the window is over, even when
    /// its refill finds the shard's lock held: if the thread then stops
    /// retiring, a worker frees those pages. Before, only a refill that
    /// took a page asked for the look, and a thread that stopped just
    /// after a refill refused by a held lock stranded the pages until the
    /// next `barrier`.
    #[test]
    #[cfg_attr(miri, ignore = "timing: waits for the grace-period thread's look")]
    fn ready_pages_left_to_a_thread_whose_refill_found_the_shard_held_are_freed() {
        static DROPPED: AtomicUsize = AtomicUsize::new(0);
        struct Counted;
        impl Drop for Counted {
            fn drop(&mut self) {
                DROPPED.fetch_add(1, Ordering::SeqCst);
            }
        }
        const N: usize = 16;
        // No lazy look: only a kick or a promised look frees anything.
        let rcu = Rcu::new(Config::new().lazy_delay(std::time::Duration::from_secs(600))).unwrap();
        let inner = rcu.inner().clone();
        let (cbs, gp) = (&inner.callbacks, &inner.gp);
        // A ready page of values that drop anywhere on shard 0, handed off
        // just now by this thread (its producer).
        let mut page = BulkPage::allocate(&cbs.alloc).unwrap();
        for _ in 0..N {
            let p = super::bulk::word(Box::into_raw(Box::new(Counted)).cast());
            // SAFETY: from `Box::into_raw`, dropped once by whoever frees
            // the page (no reader ever saw it).
            unsafe { page.push(p, super::drop_box::<Counted>, 8, super::bulk::Kind::Plain) };
        }
        page.cookie = gp.seq(); // ready: no reader ever held these
        {
            let mut st = lock(&cbs.shards[0].state);
            st.push_page(page);
            st.last_handoff = Some(std::time::Instant::now());
            st.producer_plain_only = true;
            cbs.shards[0].publish(&st);
        }
        // This thread's drain is empty; its refill finds its shard held
        // (every shard: whichever CPU it runs on).
        // SAFETY: this thread's slot, alive while it is registered (the
        // whole test).
        let local = unsafe { &(*rcu.current_slot()).local };
        {
            let _held: Vec<_> = cbs.shards.iter().map(|s| lock(&s.state)).collect();
            rcu.refill_own_drain(local);
        }
        // The thread retires no more: a worker frees the page, no barrier.
        let start = std::time::Instant::now();
        while DROPPED.load(Ordering::SeqCst) < N
            && start.elapsed() < std::time::Duration::from_secs(5)
        {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let dropped = DROPPED.load(Ordering::SeqCst);
        rcu.barrier();
        assert_eq!(dropped, N, "the ready page was stranded: {:?}", rcu.stats());
    }

    /// A drain that takes a page made ready by the last grace period's end
    /// frees one object per retire, however many of that grace period's
    /// pages wait behind it (they came ready at once: stepping two per
    /// retire through them emptied the drain before the next end, and the
    /// thread then allocated with nothing freed); a page ready since an
    /// earlier end is behind, and the drain steps faster.
    #[test]
    fn a_drain_steps_one_through_the_last_grace_periods_pages_and_faster_behind() {
        // Pages of this many are taken one at a time (fewer are merged).
        const N: usize = crate::policy::DRAIN_MERGE_BELOW;
        let rcu = Rcu::new(Config::new().on_demand()).unwrap();
        let inner = rcu.inner().clone();
        let (cbs, gp) = (&inner.callbacks, &inner.gp);
        // SAFETY: this thread's slot, alive while it is registered (the
        // whole test).
        let local = unsafe { &(*rcu.current_slot()).local };
        let page_of = |cookie: u64| {
            let mut page = BulkPage::allocate(&cbs.alloc).unwrap();
            for i in 0..N {
                let p = super::bulk::word(Box::into_raw(Box::new(i)).cast());
                // SAFETY: from `Box::into_raw`, dropped once by whoever
                // frees the page (no reader ever saw it).
                unsafe { page.push(p, super::drop_box::<usize>, 8, super::bulk::Kind::Plain) };
            }
            page.cookie = cookie;
            page
        };
        // Three pages that the last grace period's end made ready (no
        // grace period in progress: the sequence is that end).
        let end = gp.seq();
        assert_eq!(crate::gp::last_end(end), end);
        {
            let mut st = lock(&cbs.shards[0].state);
            for _ in 0..3 {
                st.push_page(page_of(end));
            }
            cbs.shards[0].publish(&st);
        }
        let _ = cbs.refill_drain(gp, local, 0);
        assert_eq!(
            local.with_drain_owner(|d| (d.left(), d.step())),
            (N, crate::policy::DRAIN_STEP_KEEPING_UP),
            "two more of the same end behind it"
        );
        // Another grace period ends before the drain is through them: the
        // pages left are behind.
        rcu.synchronize();
        assert!(crate::gp::last_end(gp.seq()) > end);
        assert!(cbs.finish_own_drain(local, 0));
        let _ = cbs.refill_drain(gp, local, 0);
        assert_eq!(
            local.with_drain_owner(|d| (d.left(), d.step())),
            (N, crate::policy::drain_step(1)),
            "ready since an earlier end, one more behind it"
        );
        rcu.barrier();
        assert_eq!(rcu.pending(), 0);
    }

    /// Ready pages of a shard whose front page goes to a worker (a drain's
    /// rest, kept off drains) while the plain pages behind it are still in
    /// their producer's window: the worker frees the front page, finds the
    /// rest left to the producer, and the grace-period thread looks again
    /// when the window ends, so a producer that has stopped strands
    /// nothing. Before, its plan set no deadline (the front page sent the
    /// shard to the worker), and the plain pages stayed until the next
    /// `barrier` (`tests/plain_frees.rs`'s stopped-thread test under load).
    #[test]
    #[cfg_attr(miri, ignore = "timing: waits for the grace-period thread's look")]
    fn plain_pages_behind_a_front_page_for_the_worker_are_freed_after_the_window() {
        static DROPPED: AtomicUsize = AtomicUsize::new(0);
        struct Counted;
        impl Drop for Counted {
            fn drop(&mut self) {
                DROPPED.fetch_add(1, Ordering::SeqCst);
            }
        }
        const N: usize = 8;
        // No lazy look; a window the worker's first batch surely falls in.
        let rcu = Rcu::new(
            Config::new()
                .lazy_delay(std::time::Duration::from_secs(600))
                .producer_window(std::time::Duration::from_millis(300)),
        )
        .unwrap();
        let inner = rcu.inner().clone();
        let (cbs, gp) = (&inner.callbacks, &inner.gp);
        let page_of = |kind: super::bulk::Kind| {
            let mut page = BulkPage::allocate(&cbs.alloc).unwrap();
            for _ in 0..N {
                let p = super::bulk::word(Box::into_raw(Box::new(Counted)).cast());
                // SAFETY: from `Box::into_raw`, dropped once by whoever
                // frees the page (no reader ever saw it).
                unsafe { page.push(p, super::drop_box::<Counted>, 8, kind) };
            }
            page.cookie = gp.seq(); // ready: no reader ever held these
            page
        };
        {
            let mut st = lock(&cbs.shards[0].state);
            st.push_page(page_of(super::bulk::Kind::Drop));
            st.push_page(page_of(super::bulk::Kind::Plain));
            st.last_handoff = Some(std::time::Instant::now());
            st.producer_plain_only = true;
            cbs.shards[0].publish(&st);
        }
        cbs.workers.ensure_started(&inner);
        inner.kthread.kick(&inner);
        let start = std::time::Instant::now();
        while DROPPED.load(Ordering::SeqCst) < 2 * N
            && start.elapsed() < std::time::Duration::from_secs(5)
        {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let dropped = DROPPED.load(Ordering::SeqCst);
        rcu.barrier();
        assert_eq!(
            dropped,
            2 * N,
            "the plain page was stranded: {:?}",
            rcu.stats()
        );
    }
}
