//! The callback engine: per-CPU shards of segmented callback lists and bulk
//! pages, the grace periods that retire them, and the workers that run them.
//!
//! * `call` queues a boxed closure on the current CPU's shard.
//! * `defer_drop` appends two words to the thread's own bulk page; a full
//!   page is sealed with a grace-period cookie and handed to the shard.
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
//!   and drop ready pages, yielding between batches. Callbacks and deferred
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

mod api;
pub(crate) mod bulk;
mod drain;
#[cfg(not(loom))]
mod fork;
pub(crate) mod local;
mod segcblist;
mod throttle;
mod worker;

use crate::sync::{catch_panic, run_each_caught};
use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use crate::clock::epoch_ms;
pub(crate) use crate::policy::Params;
use crate::policy::{self, Pace, ShardFacts, SPARE_PAGES};

#[cfg(not(loom))]
pub(crate) use api::pay_owed_throttle;
pub use api::without_page_allocation;
pub(crate) use bulk::{bump_relaxed, drop_box, BulkPage};
pub use bulk::{PageAllocator, SystemPageAllocator, BULK_PAGE_SIZE};
#[cfg(not(loom))]
pub(crate) use fork::EngineLocks;
pub(crate) use local::LocalBuffer;
use segcblist::{Entry, SegCbList};
pub(crate) use throttle::one_call;
pub(crate) use worker::Workers;
#[cfg(not(loom))]
pub(crate) use worker::WorkersForkHeld;

use crate::fast_mode::Pressure;
use crate::gp::{GracePeriods, WaitMode};
use std::sync::Arc;

use crate::sync::{lock, try_lock, Mutex};
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

#[derive(Default)]
struct ShardState {
    list: SegCbList,
    /// Sealed pages, each waiting for its own cookie.
    pages: VecDeque<BulkPage>,
    /// The highest cookie of any page queued here since the shard began
    /// (not lowered when pages leave: only pages whose cookie is done do).
    /// Not done, it is a queued page's; done, every queued page's is.
    pages_max_cookie: u64,
    page_objects: usize,
    page_bytes: usize,
    /// Pages (from the front) whose grace period has been asked for.
    pages_requested: usize,
    spare: Vec<BulkPage>,
    /// When the oldest entry not yet assigned a grace period was queued.
    since: Option<Instant>,
    hurry: bool,
    overloaded: bool,
    /// When a thread last handed its own full page to this shard (it frees
    /// ready pages as it does: see `Params::producer_window`).
    last_handoff: Option<Instant>,
    /// That thread frees only plain pages (values that drop anywhere; the
    /// default): pages are left to it only while the front one is plain.
    producer_plain_only: bool,
}

impl ShardState {
    fn totals(&self) -> (usize, usize) {
        (
            self.list.len() + self.page_objects,
            self.list.bytes() + self.page_bytes,
        )
    }

    /// Queues a sealed page, keeping the totals and `pages_max_cookie`.
    fn push_page(&mut self, page: BulkPage) {
        self.page_objects += page.len();
        self.page_bytes += page.bytes();
        self.pages_max_cookie = self.pages_max_cookie.max(page.cookie);
        self.pages.push_back(page);
    }

    /// Queues a page whose grace period has already elapsed (what a drain
    /// left) at the front, where it is ready at once.
    fn push_ready_front(&mut self, page: BulkPage) {
        self.page_objects += page.len();
        self.page_bytes += page.bytes();
        self.pages_requested += 1;
        self.pages.push_front(page);
    }

    /// Whether the front page's grace period has completed (whether or not
    /// the shard asked for one: a page is sealed with a cookie, and any
    /// grace period that reaches it makes the page safe to free).
    fn pages_ready(&self, seq: u64) -> bool {
        self.pages.front().is_some_and(|p| seq >= p.cookie)
    }

    /// Moves up to `max` pages whose grace period has elapsed from the
    /// front to `out`, keeping the totals.
    fn take_ready_pages(&mut self, seq: u64, max: usize, out: &mut Vec<BulkPage>) {
        let mut taken = 0;
        while taken < max && self.pages_ready(seq) {
            out.push(self.pop_front_page().expect("front exists"));
            taken += 1;
        }
    }

    /// Takes the front page off the queue, keeping the totals.
    fn pop_front_page(&mut self) -> Option<BulkPage> {
        let p = self.pages.pop_front()?;
        self.pages_requested = self.pages_requested.saturating_sub(1);
        self.page_objects -= p.len();
        self.page_bytes -= p.bytes();
        Some(p)
    }

    /// The front page, if its grace period has elapsed and its values drop
    /// anywhere (what a retiring thread's drain may take), keeping the totals.
    fn take_ready_plain(&mut self, seq: u64) -> Option<BulkPage> {
        if !self.pages_ready(seq) || !self.pages.front().is_some_and(BulkPage::is_plain) {
            return None;
        }
        self.pop_front_page()
    }

    /// Pages at the front whose grace period has elapsed (counted up to
    /// `max`): work for a worker, which no section can hold up.
    fn ready_pages(&self, seq: u64, max: usize) -> usize {
        self.pages
            .iter()
            .take(max)
            .take_while(|p| seq >= p.cookie)
            .count()
    }

    /// How much longer ready pages are left to the thread that hands pages
    /// to this shard (within `window` of its last hand-off); `None` once a
    /// worker should free them.
    fn left_to_producer(&self, now: Instant, window: Duration) -> Option<Duration> {
        if self.producer_plain_only && !self.pages.front().is_some_and(BulkPage::is_plain) {
            // It would stop at this page: a worker frees it (and what
            // follows, lest the shard wait behind it).
            return None;
        }
        policy::left_to_producer(self.last_handoff, now, window)
    }

    /// The sequence value at which the oldest page or callback becomes
    /// ready (0: something already is; `u64::MAX`: nothing waits).
    fn ready_at(&self) -> u64 {
        let page = self.pages.front().map(|p| p.cookie);
        page.into_iter()
            .chain(self.list.earliest_gp())
            .min()
            .unwrap_or(u64::MAX)
    }

    /// Entries not yet assigned a grace period, and their bytes.
    fn unrequested(&self) -> (usize, usize) {
        self.pages.iter().skip(self.pages_requested).fold(
            (self.list.next_len(), self.list.next_bytes()),
            |(n, b), p| (n + p.len(), b + p.bytes()),
        )
    }
}

pub(crate) struct Shard {
    state: Mutex<ShardState>,
    /// Held while running this shard's ready entries: one runner at a time
    /// keeps queue order, and `barrier` takes it to wait for a running batch.
    /// It holds the runner's lists, reused from batch to batch.
    invoke: Mutex<InvokeLists>,
    count: AtomicUsize,
    bytes: AtomicUsize,
    /// The sequence value at which the shard's oldest entry becomes ready
    /// (`u64::MAX`: nothing waits), for `collect`'s lock-free look. A hint:
    /// a stale value costs a look or a delay, never an early free.
    ready_at: AtomicU64,
    /// When (`epoch_ms`) a thread last called `Rcu::collect` on this
    /// shard; 0: never. Ready pages are left to such a
    /// thread for `producer_window`, as to a `retiring_thread_frees` one.
    collected_ms: AtomicUsize,
}

/// What a batch takes from its shard to run: callbacks and pages. Kept in
/// the shard's `invoke` lock and reused rather than freed after each batch:
/// a list of 80 pages is 2 KiB, over glibc's per-thread cache sizes, and
/// grown last it sits at the top of the heap, where freeing it leaves a
/// free chunk of 64 KiB or more, and glibc then consolidates every
/// fast-bin chunk first. Those chunks are the objects the batch has just
/// freed, so each batch paid for merging thousands of them, and the
/// allocations after it came from the merged chunk on glibc's slow path
/// (`defer_profile` under callgrind: 19 of its 20 `malloc_consolidate`
/// calls came from dropping the page list).
#[derive(Default)]
pub(crate) struct InvokeLists {
    batch: Vec<Entry>,
    pages: Vec<BulkPage>,
}

impl InvokeLists {
    /// Lists longer than this are freed after their batch, not kept: a
    /// shard that once ran a huge backlog does not hold its lists for good.
    const KEEP_AT_MOST: usize = 4096;

    /// Frees lists grown past [`KEEP_AT_MOST`](Self::KEEP_AT_MOST) (they
    /// are empty: `run_entries` drained them).
    fn trim(&mut self) {
        if self.batch.capacity() > Self::KEEP_AT_MOST {
            self.batch = Vec::new();
        }
        if self.pages.capacity() > Self::KEEP_AT_MOST {
            self.pages = Vec::new();
        }
    }
}

impl Shard {
    fn new() -> Self {
        Shard {
            state: Mutex::new(ShardState::default()),
            invoke: Mutex::new(InvokeLists::default()),
            count: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            ready_at: AtomicU64::new(u64::MAX),
            collected_ms: AtomicUsize::new(0),
        }
    }

    /// Mirrors the shard's totals and its first readiness for lock-free
    /// queries.
    fn publish(&self, st: &ShardState) {
        let (n, b) = st.totals();
        self.count.store(n, Ordering::Relaxed);
        self.bytes.store(b, Ordering::Relaxed);
        self.ready_at.store(st.ready_at(), Ordering::Relaxed);
    }

    /// Whether a thread called `Rcu::collect` on this shard within `window`.
    fn collector_recent(&self, window: Duration) -> bool {
        let at = self.collected_ms.load(Ordering::Relaxed);
        at != 0 && epoch_ms().saturating_sub(at) as u128 <= window.as_millis()
    }
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

fn add(c: &AtomicU64, n: usize) {
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
    /// grace-period thread should be woken, and the shard.
    pub(crate) fn enqueue(
        &self,
        f: Box<dyn FnOnce() + Send>,
        bytes: usize,
        hurry: bool,
    ) -> (bool, usize) {
        add(&self.counters.calls, 1);
        let cpu = self.current_shard();
        let shard = &self.shards[cpu];
        let mut st = lock(&shard.state);
        let was_idle = st.since.is_none();
        st.list.enqueue(Entry::call(f, bytes));
        if was_idle {
            st.since = Some(Instant::now());
        }
        st.hurry |= hurry;
        let kick = self.after_enqueue(&mut st, was_idle, bytes);
        shard.publish(&st);
        (kick || hurry, cpu)
    }

    /// Overload, batch and byte checks after queueing `added_bytes`;
    /// returns whether to kick.
    fn after_enqueue(&self, st: &mut ShardState, was_idle: bool, added_bytes: usize) -> bool {
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
        policy::kick_after_enqueue(
            &self.params,
            kick,
            st.overloaded,
            unrequested,
            (unrequested_bytes, added_bytes),
        )
    }

    /// Seals a full (or stolen, or orphaned) page and hands it to the
    /// current shard. `producer`: the page's own thread, which frees the
    /// shard's ready pages after this (see `Params::producer_window`). Returns
    /// whether to kick the grace-period thread.
    pub(crate) fn hand_off(&self, gp: &GracePeriods, page: BulkPage, producer: bool) -> bool {
        match self.hand_off_as(gp, page, producer, false, false, true) {
            Ok((kick, _, _)) => kick,
            Err(_) => unreachable!("a hand-off that waits for the lock takes the page"),
        }
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
        let wait = page.is_full();
        self.hand_off_as(gp, page, producer, true, early, wait)
    }

    /// `wait`: wait for the shard's lock (else `Err` hands the page back
    /// if it is held).
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
        add(&self.counters.deferred_drops, page.len());
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
        // The page's own thread weighs the idle shard's kick itself (see
        // `hand_off_own`).
        let kick = self.after_enqueue(&mut st, was_idle && !own, added);
        shard.publish(&st);
        let (unrequested, unrequested_bytes) = st.unrequested();
        let due = st.hurry
            || collecting
            || early
            || policy::batch_full(&self.params, unrequested, unrequested_bytes);
        let target = if own && due {
            self.request_all(gp, &mut st);
            Self::needed_all(gp, &st)
        } else {
            None
        };
        Ok((kick || due, own && was_idle, target))
    }

    /// The sequence value that completes the shard's waiting callbacks and
    /// its first `pages` pages, if any is still needed.
    fn needed(gp: &GracePeriods, st: &ShardState, pages: usize) -> Option<u64> {
        st.list
            .needed_gp()
            .into_iter()
            .chain(st.pages.iter().take(pages).map(|p| p.cookie))
            .filter(|&t| !gp.done(t))
            .max()
    }

    /// [`needed`](Self::needed) for all the shard's pages, without walking
    /// them: a grace period that completes one cookie completes every
    /// lower one, so the highest cookie not yet done is the highest queued
    /// (`pages_max_cookie`) or none. Every retiring thread's hand-off asks
    /// this, and a shard may hold thousands of pages.
    fn needed_all(gp: &GracePeriods, st: &ShardState) -> Option<u64> {
        st.list
            .needed_gp()
            .into_iter()
            .chain(Some(st.pages_max_cookie))
            .filter(|&t| !gp.done(t))
            .max()
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
            if st.spare.len() < SPARE_PAGES {
                st.spare.push(page);
            }
        }
    }

    /// Takes every thread's buffered page (and pages of exited threads) into
    /// the shards. With `older_than`, only pages buffered at least that long;
    /// returns whether to kick, and when the next younger page comes due.
    pub(crate) fn flush_locals(
        &self,
        gp: &GracePeriods,
        older_than: Option<Duration>,
    ) -> (bool, Option<Duration>) {
        let mut kick = false;
        let mut next_due: Option<usize> = None;
        let now_ms = epoch_ms();
        let min_age =
            older_than.map_or(0, |d| usize::try_from(d.as_millis()).unwrap_or(usize::MAX));
        gp.registry().for_each_slot(|slot| {
            let local = &slot.local;
            if local.drain_count.load(Ordering::Relaxed) > 0 {
                // A drain its thread has not finished (it stopped retiring,
                // or exited: the drain stays in its slot) goes back to a
                // shard as a ready page, for a worker or the barrier. Also
                // from an abandoned slot (its thread exited inside a
                // section, which leaves the drain behind): the slot is
                // never reused, so nothing else would ever free it, and a
                // dropped domain would wait for it forever. (A forked
                // child's slot whose buffer was caught locked has its
                // drain count zeroed, so its lock is never taken here.)
                let since = local.drain_since_ms.load(Ordering::Relaxed);
                let due =
                    policy::drain_due_ms(&self.params, since).min(since.saturating_add(min_age));
                if older_than.is_some() && now_ms < due {
                    let left = due - now_ms;
                    next_due = Some(next_due.map_or(left, |d| d.min(left)));
                } else if self.steal_drain_to_shard(gp, local, self.current_shard()) {
                    kick = true;
                }
            }
            if slot.abandoned.load(Ordering::Relaxed) {
                // Its thread is gone and its page was handed on, or (in a
                // forked child) its buffer was caught locked: skip it.
                return;
            }
            if local.count.load(Ordering::Relaxed) == 0 {
                if older_than.is_none() {
                    // A stealer or the owner resets the counts before
                    // handing the page to a shard, holding the buffer's
                    // lock throughout: wait for it, so that a barrier finds
                    // the page on its shard (found by the torture test).
                    local.wait_for_handoff();
                }
                return;
            }
            let since = local.since_ms.load(Ordering::Relaxed);
            let age = now_ms.saturating_sub(since);
            if older_than.is_some() && age < min_age {
                // A page its thread found due but could not hand on (its
                // shard's lock was held) goes now, whatever its age, unless
                // the shard it would go to is held now: the hand-off below
                // waits for that lock holding the thread's buffer, and the
                // thread's next retire would wait behind it.
                let left = if !local.refused.load(Ordering::Relaxed) {
                    min_age - age
                } else if try_lock(&self.shards[self.current_shard()].state).is_none() {
                    policy::RETIRER_FALLBACK_MS as usize
                } else {
                    0
                };
                if left > 0 {
                    next_due = Some(next_due.map_or(left, |d| d.min(left)));
                    return;
                }
            }
            local.steal(
                || gp.writer_barrier(),
                |page| {
                    if let Some(page) = page {
                        add(&self.counters.page_steals, 1);
                        if older_than.is_some() {
                            add(&self.counters.lazy_flushes, 1);
                        }
                        kick |= self.hand_off(gp, page, false);
                    }
                },
            );
        });
        {
            // After the slots: a thread exiting meanwhile moves its page
            // here under its buffer's lock, which the walk above waited for.
            // Held while handing off, so `barrier` never misses a page in transit.
            let mut orphans = lock(&gp.registry().orphans);
            for page in orphans.drain(..) {
                kick |= self.hand_off(gp, page, false);
            }
        }
        (kick, next_due.map(|ms| Duration::from_millis(ms as u64)))
    }

    /// Objects buffered in threads' pages, and their bytes.
    fn local_totals(&self, gp: &GracePeriods) -> (usize, usize) {
        let (mut n, mut b) = (0, 0);
        gp.registry().for_each_slot(|slot| {
            let local = &slot.local;
            n += local.count.load(Ordering::Relaxed) + local.drain_count.load(Ordering::Relaxed);
            b += local.bytes.load(Ordering::Relaxed) + local.drain_bytes.load(Ordering::Relaxed);
        });
        for page in lock(&gp.registry().orphans).iter() {
            n += page.len();
            b += page.bytes();
        }
        (n, b)
    }

    /// Callbacks and deferred drops not yet run, and their bytes.
    pub(crate) fn pending(&self, gp: &GracePeriods) -> (usize, usize) {
        let (mut n, mut b) = self.local_totals(gp);
        for s in self.shards.iter() {
            n += s.count.load(Ordering::Relaxed);
            b += s.bytes.load(Ordering::Relaxed);
        }
        (n, b)
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

    /// Decides which shards need a grace period now (the lazy rules) and
    /// assigns them one. Called by the grace-period thread.
    pub(crate) fn plan(&self, gp: &GracePeriods) -> GpPlan {
        let fast = self.pressure.observe(gp.completed());
        // Under pressure, buffered pages go to their shards at once. Not in
        // the hysteresis after it (fast, but no node pressured): no shard
        // asks for a grace period then, so a page taken from its thread
        // would only wait on a shard, and every fresh page's kick would
        // bring the thread back to take the next (a steal, with its
        // membarrier, per object or two).
        let pressured_any = fast && (0..self.topology.nodes()).any(|n| self.pressure.on_node(n));
        let older_than = policy::flush_pages_older_than(&self.params, pressured_any);
        let (_, local_due) = self.flush_locals(gp, older_than);
        let (total, _) = self.pending(gp);
        let mut overloaded = policy::domain_overloaded(&self.params, total);
        if overloaded {
            self.note_overload(total);
        } else {
            self.overloaded.store(false, Ordering::Relaxed);
        }
        // Fast mode on pressured nodes: no lazy delay; expedite only while
        // their backlog is worth it (see `pressure.rs`).
        let pressured_bytes: usize = (0..self.topology.nodes())
            .filter(|&n| fast && self.pressure.on_node(n))
            .map(|n| self.pending_on_node(n).1)
            .sum();
        let now = Instant::now();
        let mut target: Option<u64> = None;
        let mut deadline: Option<Duration> = local_due;
        // What the shards hold as the loop sees them: threads hand pages
        // to their shards while it runs, so the loop may request a grace
        // period for more than `total` counted.
        let mut on_shards = 0;
        for (cpu, shard) in self.shards.iter().enumerate() {
            let mut st = lock(&shard.state);
            on_shards += st.totals().0;
            let pressured = fast && self.pressure.on_node(self.topology.node_of(cpu));
            let (unrequested, unrequested_bytes) = st.unrequested();
            let facts = ShardFacts {
                hurry: st.hurry,
                overloaded: st.overloaded,
                pressured,
                age: st.since.map(|t| now.saturating_duration_since(t)),
                unrequested,
                unrequested_bytes,
            };
            match policy::shard_pace(&self.params, overloaded, facts) {
                Pace::Due => self.request_all(gp, &mut st),
                Pace::Wait(left) => deadline = Some(deadline.map_or(left, |d| d.min(left))),
                Pace::Idle => {}
            }
            if !pressured && st.pages_ready(gp.seq()) {
                // Look again when a worker should take them (`after_gp`).
                if let Some(left) = st.left_to_producer(now, self.params.producer_window) {
                    deadline = Some(deadline.map_or(left, |d| d.min(left)));
                }
            }
            target = target.max(Self::needed(gp, &st, st.pages_requested));
        }
        // A backlog over `qovld` that grew in during the loop: the grace
        // period just requested for it is expedited too (else it would be
        // seen only once that grace period had ended, with nothing left to
        // expedite).
        if !overloaded && target.is_some() && policy::domain_overloaded(&self.params, on_shards) {
            overloaded = true;
            self.note_overload(on_shards);
        }
        let expedite = policy::expedite(&self.params, overloaded, fast, pressured_bytes);
        GpPlan {
            target,
            mode: if expedite {
                WaitMode::Expedited
            } else {
                WaitMode::Normal
            },
            next_deadline: deadline,
        }
    }

    /// Marks the domain overloaded (a backlog of `total` over `qovld`),
    /// counting and reporting each time it goes over.
    fn note_overload(&self, total: usize) {
        if !self.overloaded.swap(true, Ordering::Relaxed) {
            add(&self.counters.overload_expedited, 1);
            tracing::debug!(
                total,
                "rcu-reclaim: backlog over qovld, expediting grace periods"
            );
        }
    }

    /// Assigns a grace period to everything on the shards `cpus`; returns
    /// the sequence value that completes them all, if any is still needed.
    pub(crate) fn request_cpus(&self, gp: &GracePeriods, cpus: &[usize]) -> Option<u64> {
        let mut target = None;
        for &cpu in cpus {
            let mut st = lock(&self.shards[cpu].state);
            self.request_all(gp, &mut st);
            target = target.max(Self::needed_all(gp, &st));
        }
        target
    }

    /// Whether any thread holds a page of deferred drops not yet on a shard.
    pub(crate) fn has_local_pages(&self, gp: &GracePeriods) -> bool {
        self.local_totals(gp).0 > 0
    }

    /// Assigns a grace period to everything in the shard that has none.
    fn request_all(&self, gp: &GracePeriods, st: &mut ShardState) {
        // The snapshot is taken under the shard lock, after every entry in
        // NEXT was queued (and so after its object was unlinked).
        st.list.accelerate(gp.snapshot());
        st.pages_requested = st.pages.len();
        st.since = None;
        st.hurry = false;
    }

    /// After a grace period (or a plan that needed none): advance every
    /// shard and wake the workers of shards with something ready (ready
    /// pages of a shard a thread is still handing pages to are left to that
    /// thread for `producer_window`; `plan` times the look after it).
    pub(crate) fn after_gp(&self, gp: &GracePeriods) {
        let seq = gp.seq();
        let now = Instant::now();
        for (cpu, shard) in self.shards.iter().enumerate() {
            let pressured = self.pressure.on_node(self.topology.node_of(cpu));
            let ready = {
                let mut st = lock(&shard.state);
                st.list.advance(seq);
                // Ready pages go to a worker under pressure, or once the
                // thread that hands pages to the shard has stopped.
                st.list.done_len() > 0
                    || (st.pages_ready(seq)
                        && (pressured
                            || st
                                .left_to_producer(now, self.params.producer_window)
                                .is_none()))
            };
            if ready {
                self.workers.wake(self.worker_group(cpu));
            }
        }
    }

    /// Runs up to `limit` ready callbacks of shard `cpu` on this thread, and
    /// drops its ready pages. Returns (callbacks and objects run, bytes).
    pub(crate) fn invoke_ready(
        &self,
        gp: &GracePeriods,
        cpu: usize,
        limit: Option<usize>,
    ) -> (usize, usize) {
        let mut lists = lock(&self.shards[cpu].invoke);
        self.invoke_locked(&mut lists, gp, cpu, limit, usize::MAX)
    }

    /// As `invoke_ready(.., None)`, but skips a shard someone is running
    /// (`None`): reclaim never waits for a worker, and a callback that calls
    /// `run_callbacks` does not deadlock on its own shard.
    pub(crate) fn try_invoke_ready(&self, gp: &GracePeriods, cpu: usize) -> Option<(usize, usize)> {
        let mut lists = try_lock(&self.shards[cpu].invoke)?;
        Some(self.invoke_locked(&mut lists, gp, cpu, None, usize::MAX))
    }

    /// A safe point of the calling thread (`Rcu::collect`): drives the
    /// grace period the shard's oldest entry waits for (`try_advance`,
    /// which never waits) and runs what shard `cpu` has ready, here — up to
    /// `policy::COLLECT_PAGES` pages and as many callbacks as a worker's
    /// batch — unless nothing waits (a lock-free look) or someone else is
    /// running the shard. Marks the shard as freed by its own thread, so
    /// pages handed to it are left to that thread for `producer_window`
    /// rather than woken a worker for.
    pub(crate) fn collect(&self, gp: &GracePeriods, cpu: usize, tick: u32) -> Collected {
        let shard = &self.shards[cpu];
        // This shard's garbage is freed here from now on. The clock is
        // read on the thread's first call and every `COLLECT_MARK_EVERY`th
        // after, and the line written only when the millisecond changed.
        if tick % policy::COLLECT_MARK_EVERY == 0 {
            let now = epoch_ms();
            if shard.collected_ms.load(Ordering::Relaxed) != now {
                shard.collected_ms.store(now, Ordering::Relaxed);
            }
        }
        let at = shard.ready_at.load(Ordering::Relaxed);
        if at == u64::MAX {
            return Collected::Ran(0);
        }
        if !gp.done(at) {
            // Drive the grace period the oldest entry waits for (never
            // waits: completes the one in progress if its readers have
            // moved on, and starts the next if still needed), on every
            // `COLLECT_ADVANCE_EVERY`th call: each try takes `gp_lock` and
            // scans the readers.
            if tick % policy::COLLECT_ADVANCE_EVERY != 0 {
                return Collected::Ran(0);
            }
            if !gp.try_advance(at) {
                return Collected::Waiting;
            }
        }
        let Some(mut lists) = try_lock(&shard.invoke) else {
            return Collected::Ran(0);
        };
        Collected::Ran(
            self.invoke_locked(&mut lists, gp, cpu, None, policy::COLLECT_PAGES)
                .0,
        )
    }

    /// The body of `invoke_ready`; the caller holds the shard's `invoke`
    /// lock, which holds `lists`.
    fn invoke_locked(
        &self,
        lists: &mut InvokeLists,
        gp: &GracePeriods,
        cpu: usize,
        limit: Option<usize>,
        max_pages: usize,
    ) -> (usize, usize) {
        let shard = &self.shards[cpu];
        let fast = self.pressure.on_node(self.topology.node_of(cpu));
        {
            let mut st = lock(&shard.state);
            let seq = gp.seq();
            st.list.advance(seq);
            let unlimited = st.overloaded || fast;
            let limit = policy::batch_limit(&self.params, limit, unlimited, st.list.len());
            st.list.take_done(limit, &mut lists.batch);
            st.take_ready_pages(seq, max_pages, &mut lists.pages);
            if st.overloaded && policy::shard_overload_ends(&self.params, st.totals().0) {
                st.overloaded = false;
            }
            shard.publish(&st);
        }
        self.run_entries(cpu, lists)
    }

    /// Frees up to `max_pages` pages of shard `cpu` whose grace period has
    /// completed, on the calling thread (the kernel frees such pages
    /// directly, without a callback). Called by `defer_drop` after handing
    /// off a full page where the domain opts in (`retiring_thread_frees`),
    /// so a thread that produces garbage also frees what is ready, on the
    /// core that allocated it. (By default a thread frees only values that
    /// drop anywhere, in steps: `drain.rs`.) If a worker, a barrier or
    /// another thread is running the shard, wakes the node's worker
    /// instead: the holder may be a thread preempted in the middle of its
    /// own inline free, and ready pages left to threads that keep failing
    /// here piled up to 93 MiB in a 2-second run (2 threads on 2 cores).
    pub(crate) fn free_ready_pages(&self, gp: &GracePeriods, cpu: usize, max_pages: usize) {
        let shard = &self.shards[cpu];
        let Some(mut lists) = try_lock(&shard.invoke) else {
            self.workers.wake(self.worker_group(cpu));
            return;
        };
        {
            let mut st = lock(&shard.state);
            st.take_ready_pages(gp.seq(), max_pages, &mut lists.pages);
            if lists.pages.is_empty() {
                return;
            }
            shard.publish(&st);
        }
        self.run_entries(cpu, &mut lists);
    }

    /// Runs callbacks and drops pages taken from shard `cpu` (whose `invoke`
    /// lock the caller holds), leaving `lists` empty for the next batch.
    /// Returns (callbacks and objects run, bytes).
    fn run_entries(&self, cpu: usize, lists: &mut InvokeLists) -> (usize, usize) {
        let (mut n, mut bytes, mut panics) = (0, 0, 0);
        let was = IN_CALLBACK.with(|c| c.replace(true));
        panics += run_each_caught(
            lists.batch.drain(..),
            |e| {
                n += e.count();
                bytes += e.bytes;
                (e.f)();
            },
            |msg| self.report_panic(msg),
        );
        for mut page in lists.pages.drain(..) {
            n += page.len();
            bytes += page.bytes();
            panics += page.drop_objects_with(&mut |msg| self.report_panic(msg));
            add(&self.counters.pages_freed, 1);
            self.recycle(cpu, page);
        }
        lists.trim();
        IN_CALLBACK.with(|c| c.set(was));
        add(&self.counters.invoked, n);
        add(&self.counters.bytes_freed, bytes);
        add(&self.counters.panics, panics);
        (n, bytes)
    }

    /// Reports a caught panic of a callback or deferred drop (`msg`: its
    /// message, from [`catch_panic`]).
    pub(crate) fn report_panic(&self, msg: Option<String>) {
        let msg = msg.unwrap_or_else(|| "<non-string panic payload>".to_string());
        tracing::error!(panic = %msg, "rcu-reclaim: an RCU callback panicked; the remaining callbacks still run");
        if let Some(hook) = &self.panic_hook {
            // A panicking hook must not unwind out of the batch: the
            // callbacks after this one would be lost.
            if catch_panic(|| hook(&msg)).is_err() {
                tracing::error!("rcu-reclaim: the on_callback_panic hook itself panicked");
            }
        }
    }

    /// Runs `drop` (a deferred drop the caller's thread runs itself, after
    /// a grace period it waited for) as a one-entry batch of `run_entries`:
    /// counted as invoked, a panic reported as any callback's is.
    pub(crate) fn run_inline(&self, bytes: usize, drop: impl FnOnce() + Send + 'static) {
        let mut lists = InvokeLists {
            batch: vec![Entry::call(Box::new(drop), bytes)],
            pages: Vec::new(),
        };
        self.run_entries(self.current_shard(), &mut lists);
    }

    /// Whether shard `cpu` has work for its worker: ready callbacks, or
    /// ready pages that are not left to the thread that frees its own
    /// (within `producer_window` of its last hand-off, unless pressured; as
    /// `after_gp` decides).
    pub(crate) fn has_ready(&self, gp: &GracePeriods, cpu: usize) -> bool {
        let seq = gp.seq();
        let mut st = lock(&self.shards[cpu].state);
        st.list.advance(seq);
        st.list.done_len() > 0 || self.pages_for_worker(&st, cpu, seq)
    }

    /// Whether the shard has ready pages that are not left to its producer.
    fn pages_for_worker(&self, st: &ShardState, cpu: usize, seq: u64) -> bool {
        st.pages_ready(seq) && !self.pages_left_to_producer(st, cpu)
    }

    /// Whether the shard's ready pages are left to the thread handing it
    /// pages (it frees its own: `retiring_thread_frees` or `Rcu::collect`)
    /// for now: within `producer_window` of its last hand-off, and no
    /// pressure on the shard's node.
    fn pages_left_to_producer(&self, st: &ShardState, cpu: usize) -> bool {
        !self.pressure.on_node(self.topology.node_of(cpu))
            && st
                .left_to_producer(crate::clock::now(), self.params.producer_window)
                .is_some()
    }

    /// As `invoke_ready`, for the shard's worker: pages left to their
    /// producer (see `has_ready`) stay for it; a worker running anyway
    /// (woken for callbacks, or for another shard) does not take them.
    pub(crate) fn invoke_for_worker(
        &self,
        gp: &GracePeriods,
        cpu: usize,
        limit: Option<usize>,
    ) -> (usize, usize) {
        let mut lists = lock(&self.shards[cpu].invoke);
        let max_pages = if self.pages_left_to_producer(&lock(&self.shards[cpu].state), cpu) {
            0
        } else {
            usize::MAX
        };
        self.invoke_locked(&mut lists, gp, cpu, limit, max_pages)
    }

    /// Waits until everything queued before the call, by any thread, has run.
    ///
    /// Pages are sealed with their cookie, so one wait for the latest covers
    /// them. Callbacks are not: a concurrent `accelerate` (another thread's
    /// hand-off, the grace-period thread's plan) may merge newer entries
    /// into the segment holding older ones and raise its grace period past
    /// the one waited for. So a marker goes behind everything on each shard
    /// (the kernel's `rcu_barrier` entrains a callback per CPU), and the
    /// barrier waits, runs what is ready and looks again until every marker
    /// has run (entries keep queue order, so everything before it has too).
    pub(crate) fn barrier(&self, gp: &GracePeriods) {
        add(&self.counters.barriers, 1);
        self.flush_locals(gp, None);
        let markers: Vec<Arc<AtomicBool>> = self
            .shards
            .iter()
            .map(|shard| {
                let ran = Arc::new(AtomicBool::new(false));
                let r = ran.clone();
                let mut st = lock(&shard.state);
                st.list.enqueue(Entry::marker(Box::new(move || {
                    r.store(true, Ordering::Release)
                })));
                ran
            })
            .collect();
        loop {
            let mut target = 0;
            for shard in self.shards.iter() {
                let mut st = lock(&shard.state);
                self.request_all(gp, &mut st);
                target = target.max(Self::needed_all(gp, &st).unwrap_or(0));
            }
            if target > 0 {
                gp.wait_for_seq(target, WaitMode::Normal);
            }
            for cpu in 0..self.shards.len() {
                // Everything queued before is now ready (or running on a
                // worker, which holds `invoke` until its batch ends), unless
                // its segment's grace period was raised meanwhile.
                self.invoke_ready(gp, cpu, None);
            }
            if markers.iter().all(|m| m.load(Ordering::Acquire)) {
                break;
            }
        }
        // Threads' drains may have taken ready pages meanwhile (none queued
        // before this barrier is left on a shard now, but for what is left
        // of drains taken from their threads, which no drain takes back):
        // take what they hold, and wait for the objects their threads are
        // dropping.
        let cpu = self.current_shard();
        gp.registry().for_each_slot(|slot| {
            if slot.abandoned.load(Ordering::Relaxed) {
                return;
            }
            // After the buffer's lock: a drain filled under it is seen, and
            // so is one taken meanwhile (it went to a shard under the
            // lock). The count is stored with release after the owner
            // counts what it pops in `dropping`, so a drain read as emptied
            // shows its drops in flight.
            slot.local.wait_for_handoff();
            if slot.local.drain_count.load(Ordering::Acquire) > 0 {
                self.steal_drain_to_shard(gp, &slot.local, cpu);
            }
            slot.local.wait_for_drops();
        });
        // Drains taken from their threads (by this barrier, by another, or
        // by a lazy flush, before the walk above reached their buffers)
        // are ready pages on shards now: run them, or wait for the thread
        // running them (it holds `invoke`).
        for cpu in 0..self.shards.len() {
            self.invoke_ready(gp, cpu, None);
        }
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
                .pace_bytes(64 << 10),
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
                // 128 KiB in 8 objects: due by the pace at the 8th.
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
}
