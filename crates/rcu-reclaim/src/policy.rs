//! The callback engine's policy in one place: its knobs (`Params`, set
//! through `Config`) and every rule that reads them, as pure functions.
//! The engine (`callbacks/mod.rs`), fast mode (`fast_mode.rs`) and
//! `run_callbacks` (`pressure.rs`) gather the facts and apply these rules;
//! changing the pace, the overload marks, the batch limit, the producer
//! window, the throttle or fast mode's hysteresis means changing this file.
//!
//! * **Pace.** A shard asks for a grace period at once when hurried
//!   (`call_hurry`, overload, barrier), pressured, holding `pace_bytes`
//!   bytes or `lazy_batch` entries not yet assigned one; otherwise once its
//!   oldest entry has waited `lazy_delay` (the kernel's lazy RCU, for a
//!   trickle). A thread's bulk page goes to its shard once it holds
//!   `pace_bytes` in at least [`PAGE_MIN_OBJECTS`] objects (or four times
//!   that in fewer), or [`PAGE_HANDOFF_OBJECTS`] objects of a 32nd of it,
//!   or is full, so memory, not only time and count, sets the pace
//!   ([`page_due_by_pace`]); it goes early, asking for a grace period, with
//!   a 32nd of `pace_bytes` once no grace period has started for
//!   [`early_page_quiet`] (150 µs; 15 µs where a start costs a fence, and
//!   40 `membarrier`s' time for a page of half the pace), or, while they
//!   start more often, once it is [`EARLY_PAGE_AGE_MS`] old. Retiring
//!   threads start grace periods at most every [`retirer_gp_min_interval`].
//! * **Reader fences.** A memb domain's readers fence, and its grace
//!   periods skip `membarrier`, while `membarrier` would take over
//!   [`FENCE_READS_ON_SHARE`] of a CPU ([`fence_reads`]).
//! * **Overload.** A shard over `qhimark` is overloaded until under
//!   `qlowmark`; a domain whose backlog is over `qovld` expedites.
//! * **Batches.** A worker runs `max(blimit, pending >> 7)` callbacks at a
//!   time (the kernel's `blimit` and `rcu_divisor`), all of them under
//!   overload or fast mode.
//! * **Fast mode.** In force while a pressure signal is held and for
//!   [`FAST_MODE_HOLD_GPS`] grace periods after the last ends; grace
//!   periods are expedited only while the pressured backlog holds
//!   `fast_min_bytes`.
//! * **Who frees.** Workers, unless the domain opts in to
//!   `retiring_thread_frees`: then a thread that keeps handing pages to its
//!   shard frees them within `producer_window` of its last hand-off.
//! * **Throttle.** A thread handing its shard a page while more than
//!   [`THROTTLE_PAGES`] pages wait ready to free, or queueing a callback
//!   while more than [`CALL_THROTTLE`] callbacks wait ready to run, yields
//!   to the worker for at most [`THROTTLE_MAX_WAIT`].
//! * **Pressure throttle.** While a pressure signal is held, a thread
//!   handing off a page while the shards hold more than
//!   `pressure_throttle_bytes` waits (outside read-side sections) until
//!   they hold half that, for at most [`PRESSURE_THROTTLE_MAX_WAIT`]
//!   ([`PRESSURE_THROTTLE_MAX_WAIT_FAR_OVER`] from over twice that,
//!   [`PRESSURE_THROTTLE_MAX_WAIT_STALLED`] from over four times).
//! * **Held-up wait.** A thread handing off a page, no pressure signal
//!   held, while a grace period has been in progress for
//!   `held_up_after` and the shards hold more than `held_up_bytes` naps
//!   until it ends, for at most [`HELD_UP_MAX_WAIT`], once per grace
//!   period ([`held_up_waits`]): its reader is not running, and garbage
//!   retired meanwhile could not be freed.
//! * **Headroom.** Under a memory limit the domain knows, a thread
//!   handing off a page while the shards hold more than
//!   [`headroom_allowance`] (half of what would take the usage to the
//!   limit's medium mark) waits, signal or not, until they hold half that,
//!   for at most [`HEADROOM_MAX_WAIT`].
//! * **`run_callbacks`.** What reclaim's call does at each priority.

use std::time::{Duration, Instant};

/// Tuning of the callback engine (set through [`Config`](crate::Config)).
#[derive(Clone, Debug)]
pub(crate) struct Params {
    pub(crate) lazy_delay: Duration,
    pub(crate) lazy_batch: usize,
    /// See [`Config::pace_bytes`](crate::Config::pace_bytes).
    pub(crate) pace_bytes: usize,
    pub(crate) qhimark: usize,
    pub(crate) qlowmark: usize,
    pub(crate) qovld: usize,
    pub(crate) blimit: usize,
    pub(crate) workers_per_node: usize,
    /// One worker per CPU, pinned to it, instead of `workers_per_node` per node.
    pub(crate) worker_per_cpu: bool,
    pub(crate) fast_min_bytes: usize,
    /// See [`Config::pressure_throttle_bytes`](crate::Config::pressure_throttle_bytes).
    pub(crate) pressure_throttle_bytes: usize,
    /// See [`Config::held_up_bytes`](crate::Config::held_up_bytes).
    pub(crate) held_up_bytes: usize,
    /// See [`Config::held_up_after`](crate::Config::held_up_after).
    pub(crate) held_up_after: Duration,
    /// See [`Config::producer_window`](crate::Config::producer_window).
    pub(crate) producer_window: Duration,
    /// See [`Config::retiring_thread_frees`](crate::Config::retiring_thread_frees).
    pub(crate) retiring_thread_frees: bool,
    /// See [`Config::max_pending_bytes`](crate::Config::max_pending_bytes):
    /// `usize::MAX` for none, else at least [`HEADROOM_FLOOR`].
    pub(crate) max_pending_bytes: usize,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            lazy_delay: Duration::from_millis(50),
            lazy_batch: 1000,
            pace_bytes: DEFAULT_PACE_BYTES,
            qhimark: 10_000,
            qlowmark: 100,
            qovld: 20_000,
            blimit: 10,
            workers_per_node: 1,
            worker_per_cpu: false,
            fast_min_bytes: 1 << 20,
            pressure_throttle_bytes: DEFAULT_PRESSURE_THROTTLE_BYTES,
            held_up_bytes: DEFAULT_HELD_UP_BYTES,
            held_up_after: DEFAULT_HELD_UP_AFTER,
            producer_window: Duration::from_millis(5),
            retiring_thread_frees: false,
            max_pending_bytes: usize::MAX,
        }
    }
}

/// Bytes not yet assigned a grace period that make a shard ask for one at
/// once, and a thread's bulk page go to its shard (chosen by measurement:
/// see BENCHMARKS.md, "Lean by default" and "Forty-sixth session"). At 64
/// KiB a page of the cache bench's 1–64 KiB values went after about eight
/// of them, and its evicted values waited a mean 1.2 MiB; at 16 KiB, 0.7
/// MiB, one thread's update-heavy bench held half the mean garbage (0.02
/// MiB against crossbeam-epoch's 0.04), with updates and gets as fast in
/// runs alternated nine times (the cache 0.75× quick_cache against 0.72×,
/// within the noise). At 8 KiB the cache held more (1.0 MiB): its pages'
/// hand-offs, two values each, came faster than grace periods.
pub(crate) const DEFAULT_PACE_BYTES: usize = 16 << 10;

/// A page that holds `pace_bytes` goes to its shard once it also holds
/// this many objects, or [`PAGE_BYTES_FACTOR`] times `pace_bytes`
/// ([`page_due_by_pace`]). Each hand-off costs a lock, the shard's cache
/// lines pulled from the grace-period thread's core, and often a grace
/// period: about 1,500 instructions with the next page's fetch. With the
/// default pace (16 KiB) and 8 objects, a cache of 1–4 KiB values handed
/// a page off every 8 inserts instead of every 26 or so at 64 KiB, and
/// made 4 % fewer gets a second (0.641× quick_cache against 0.667×, the
/// means of seven alternated runs); at 32 objects, a page of values over
/// 512 bytes goes at four times the pace, as at 64 KiB (0.680×), and
/// smaller objects still go at 16 KiB, which halved one thread's
/// update-heavy garbage (BENCHMARKS.md, "Forty-sixth session"). A page of
/// large values goes at 64 KiB whatever its count: two of the cache
/// bench's 1–64 KiB values, whose garbage that cut from 1.2 to 0.7 MiB.
pub(crate) const PAGE_MIN_OBJECTS: usize = 32;

/// See [`PAGE_MIN_OBJECTS`]: a page of large values goes at this many
/// times `pace_bytes` whatever its count (64 KiB by default).
pub(crate) const PAGE_BYTES_FACTOR: usize = 4;

/// A page goes to its shard once it holds this many objects, half its
/// capacity of 255, if they hold a 32nd of `pace_bytes` (the early page's
/// 512 bytes; a page of tiny objects, little memory, still waits to be full):
/// small objects then wait half as long for their page to fill. In the
/// update-heavy bench (32–512 B values, 1–2 M retires a second per
/// thread) a page of 255 took about 200 µs to fill, a quarter of the
/// garbage's life; at 128 the mean garbage fell by 13–25 % for 2–5 % of
/// the updates' throughput (BENCHMARKS.md, "Where a cache insert's time
/// goes, and a page of at least eight objects, at most 128").
pub(crate) const PAGE_HANDOFF_OBJECTS: usize = 128;

/// The least time between two grace periods a retiring thread starts
/// itself (`try_advance`): each costs a `membarrier` (IPIs to every CPU
/// running the process), and with large objects the byte pace asks for
/// one every few retires (a cache churning 32 KiB values spent a fifth of
/// its time in them). At most 10,000 a second: garbage waits at most this
/// much longer than the grace period itself.
pub(crate) const RETIRER_GP_MIN_INTERVAL: Duration = Duration::from_micros(100);

/// [`RETIRER_GP_MIN_INTERVAL`] where a grace period starts with a fence,
/// not a `membarrier`: a memb domain whose readers fence
/// (`reader_fences.rs`), an mb domain, or a QSBR domain (whose grace
/// periods also wait for every online thread's report). Such a start
/// costs its thread a fence and a scan of the reader slots, so the
/// spacing that saves `membarrier`s only made garbage wait: a cache
/// churning 1–64 KiB values
/// (the bench's cache scenario) held a mean 2.7 MiB of evicted values
/// at 9,000 grace periods a second, and its inserts' `memset`s wrote to
/// memory that had left the CPU's caches; at 10 µs, 1.3 MiB at
/// 45,000–50,000 a second, and 4–16 % more gets a second in runs
/// alternated with the old spacing (BENCHMARKS.md, "Forty-second
/// session"). At 5 µs hardly less garbage: a page of large values then
/// waits for its thread to fill it.
pub(crate) const RETIRER_GP_MIN_INTERVAL_FENCED: Duration = Duration::from_micros(10);

/// What starting a grace period now would cost its thread
/// (`GracePeriods::start_cost`), for the retiring threads' pace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StartCost {
    /// A fence (an mb or QSBR domain, or a memb domain whose readers
    /// fence).
    Fence,
    /// A `membarrier`, each recently costing this many nanoseconds
    /// ([`membarrier_recent_ns`], or the mean since the domain was made
    /// where that is higher: what [`fence_reads`] weighs; `None`: none
    /// timed yet).
    Membarrier(Option<u64>),
}

/// Where a grace period's start costs a `membarrier`, retiring threads
/// space their starts ([`retirer_gp_min_interval`], [`early_page_quiet`])
/// at least this many times the recent cost of one (or its mean, where
/// that is higher: what [`fence_reads`] weighs), within each spacing's
/// bounds: below their tops, starts take at most a 40th (2.5 %) of a CPU,
/// half the share at which readers switch to fences
/// ([`FENCE_READS_ON_SHARE`]).
/// Where a `membarrier` is cheap, no other CPU runs one of the process's
/// threads to interrupt (one thread retiring: 1.1 µs each here), and the
/// fixed 150 µs spell held garbage 1.5–2.1× crossbeam-epoch's peak in the
/// update-heavy bench at one thread; where it is dear (3–20 µs, other
/// CPUs running readers) the spacing stays at its upper bound.
pub(crate) const MEMBARRIER_SPACING_PER_COST: u64 = 40;

/// The spacing [`MEMBARRIER_SPACING_PER_COST`] gives for `membarrier`s of
/// `ns_each`, within `[least, most]` (`most` while none has been timed).
fn membarrier_spacing(ns_each: Option<u64>, least: Duration, most: Duration) -> Duration {
    ns_each.map_or(most, |ns| {
        Duration::from_nanos(ns.saturating_mul(MEMBARRIER_SPACING_PER_COST)).clamp(least, most)
    })
}

/// The recent cost of a `membarrier` that the pace weighs
/// ([`StartCost`]), after one more took `ns`, from `recent` (0 before the
/// first): an average that weighs the new one an eighth, counting it at
/// most twice the average, so one slow call (its thread preempted inside
/// it) moves the pace little, while a lasting rise doubles it within six
/// calls. Never 0 once one has been timed, and a dearer call raises it by
/// a nanosecond at least: in integer eighths an average of 1–3 ns (a first
/// call timed by a clock coarser than it) gained nothing from any call,
/// and held the pace at its closest for good.
pub(crate) fn membarrier_recent_ns(recent: u64, ns: u64) -> u64 {
    let next = if recent == 0 {
        ns
    } else {
        let next = recent - recent / 8 + ns.min(recent.saturating_mul(2)) / 8;
        if ns > recent {
            next.max(recent.saturating_add(1))
        } else {
            next
        }
    };
    next.max(1)
}

/// The least time between two grace periods retiring threads start:
/// [`RETIRER_GP_MIN_INTERVAL_FENCED`] where a start costs a fence; where it
/// costs a `membarrier`, [`MEMBARRIER_SPACING_PER_COST`] times its recent
/// cost, from that up to [`RETIRER_GP_MIN_INTERVAL`].
pub(crate) fn retirer_gp_min_interval(cost: StartCost) -> Duration {
    match cost {
        StartCost::Fence => RETIRER_GP_MIN_INTERVAL_FENCED,
        StartCost::Membarrier(ns) => {
            membarrier_spacing(ns, RETIRER_GP_MIN_INTERVAL_FENCED, RETIRER_GP_MIN_INTERVAL)
        }
    }
}

/// The least time between two normal grace periods the grace-period thread
/// starts (expedited ones, for pressure, overload or a poll, are never held
/// back). Back to back, a 16-thread cache churning 32 KiB values had it
/// run 35,000 grace periods a second: 71 % of a CPU, a `membarrier` (an
/// IPI to every CPU running the process) every 28 µs, and every shard's
/// lock taken by each look, on a machine whose CPUs all ran the cache's
/// threads. Spaced, the thread took 6-13 % of a CPU and the cache's gets
/// rose by about a tenth (BENCHMARKS.md, "The grace-period thread's
/// pace"). Garbage waits at most this much longer for a grace period than
/// it would back to back; retiring threads keep the same spacing
/// ([`RETIRER_GP_MIN_INTERVAL`]).
pub(crate) const GP_THREAD_MIN_INTERVAL: Duration = Duration::from_micros(200);

/// How long the grace-period thread waits before it starts a normal grace
/// period, its last having started `since_last` ago (`None`: it has run
/// none yet): what is left of [`GP_THREAD_MIN_INTERVAL`], or nothing.
pub(crate) fn gp_thread_gap(since_last: Option<Duration>) -> Option<Duration> {
    let left = GP_THREAD_MIN_INTERVAL.checked_sub(since_last?)?;
    (!left.is_zero()).then_some(left)
}

/// Reader fences (`reader_fences.rs`): a memb domain
/// switches its readers to fences, and its grace periods from `membarrier`
/// to a fence, once its grace periods' `membarrier`s would take this share
/// of a CPU (in parts per 10,000: 5 %), and back under a quarter of it.
/// Each `membarrier` also interrupts every CPU running one of the
/// process's threads, readers included (in a virtual machine, through the
/// hypervisor), while a fence costs a reader 2-10 ns per section, which
/// no count here sees: a reader doing ten million sections a second pays
/// 2-10 % of its CPU. So the mark is high enough that only dear
/// `membarrier`s (3-20 µs in the virtual machines measured: 2,500-17,000
/// grace periods a second) at rates the pace allows switch; where one
/// takes a microsecond, the mark would need 50,000 a second, more than
/// the pace allows. See BENCHMARKS.md, "Reader fences".
pub(crate) const FENCE_READS_ON_SHARE: u64 = 500;

/// The `membarrier` cost assumed before a domain has timed one.
pub(crate) const MEMBARRIER_NS_GUESS: u64 = 5_000;

/// Whether a memb domain's readers should fence (see
/// [`FENCE_READS_ON_SHARE`]): `on` whether they do now, `gps` grace periods
/// started in the last `elapsed_us`, each `membarrier` costing
/// `membarrier_ns_each` (`None`: none timed yet).
pub(crate) fn fence_reads(
    on: bool,
    gps: u64,
    elapsed_us: u64,
    membarrier_ns_each: Option<u64>,
) -> bool {
    let each = membarrier_ns_each.unwrap_or(MEMBARRIER_NS_GUESS);
    // In parts per 10,000 of one CPU: gps × each ns over elapsed µs × 1000.
    let share = gps.saturating_mul(each).saturating_mul(10) / elapsed_us.max(1);
    let mark = if on {
        FENCE_READS_ON_SHARE / 4
    } else {
        FENCE_READS_ON_SHARE
    };
    share >= mark
}

/// A retiring thread tries to complete the grace period in progress
/// (`GracePeriods::try_complete_in_progress`: a look at the readers, no
/// wait, no new grace period) every this many retires between hand-offs,
/// so its garbage need not wait for its next hand-off (as crossbeam-epoch
/// tries to advance its epoch every 128 pins), and looks whether its page
/// is due early ([`page_due_early`]). At 32 (with pages going early at an
/// eighth of the pace), a read-mostly load's garbage waited for its
/// thread's next look: 4.6–5.0× crossbeam-epoch's mean garbage, against
/// 2.3–3.1× at 8 with a 32nd of the pace, at the same throughput (see
/// BENCHMARKS.md, "A page goes early sooner").
pub(crate) const RETIRES_PER_ADVANCE: usize = 8;

/// A thread's bulk page holding at least `pace_bytes / EARLY_PAGE_DIVISOR`
/// goes to its shard early, and asks for a grace period, when none has
/// been started by a retiring thread for [`early_page_quiet`]
/// ([`page_due_early`]).
pub(crate) const EARLY_PAGE_DIVISOR: usize = 32;

/// See [`EARLY_PAGE_DIVISOR`]: at most one early grace period about every
/// this long, so a moderate retire rate costs at most some 5,000
/// `membarrier`s a second.
pub(crate) const EARLY_PAGE_QUIET: Duration = Duration::from_micros(150);

/// [`EARLY_PAGE_QUIET`] where a grace period starts with a fence, not a
/// `membarrier` (as for [`RETIRER_GP_MIN_INTERVAL_FENCED`]): the spacing
/// that saves `membarrier`s only made garbage wait. Two threads' update-heavy
/// and read-mostly bench loads run in fence mode on two cores; at 150 µs
/// they started some 7,000 grace periods a second and held a mean 0.13–0.18
/// and 0.06–0.08 MiB of garbage (1.4–1.7× and 2.3–3.0× crossbeam-epoch's);
/// at 15 µs, 48,000–59,000 and 18,000–22,000 a second, 0.04–0.07 and 0.03
/// MiB (0.4–0.7× and 1.2×), with updates and reads as fast or faster. At
/// 30 µs, 0.07–0.10 MiB in update-heavy (BENCHMARKS.md, "Forty-third
/// session").
pub(crate) const EARLY_PAGE_QUIET_FENCED: Duration = Duration::from_micros(15);

/// A page holding at least `pace_bytes / CHEAP_EARLY_PAGE_DIVISOR` (8
/// KiB by default) goes early after the spacing cheap `membarrier`s allow
/// ([`MEMBARRIER_SPACING_PER_COST`]); a page holding less waits the full
/// [`EARLY_PAGE_QUIET`]. Only a thread retiring over about 200 MB/s fills
/// it within that spell: one thread's update-heavy bench (380 MB/s)
/// started about 13,000 grace periods a second instead of 6,600, and held
/// a peak of 0.067 MiB of garbage in the median round (at most 0.082;
/// crossbeam-epoch's is 0.078) instead of 0.114 (at most 0.139), at
/// 0.91–0.96× the updates a second (1.02× crossbeam-epoch's against 1.06×
/// in the last alternation; measured at the pace of 64 KiB then). Any page
/// of 2 KiB (the early page's least then)
/// going after the short spell, one thread's read-mostly load (50 MB/s)
/// started 9,800 a second instead of 5,700, for garbage already under
/// crossbeam-epoch's; at a quarter of the pace (16 KiB), update-heavy held
/// 0.045 MiB at 0.88–0.95× the updates
/// (BENCHMARKS.md, "Forty-fourth session").
pub(crate) const CHEAP_EARLY_PAGE_DIVISOR: usize = 2;

/// How long no retiring thread may have started a grace period before a
/// page holding `bytes` goes early ([`page_due_early`]):
/// [`EARLY_PAGE_QUIET_FENCED`] where a start costs a fence; where it costs
/// a `membarrier`, [`MEMBARRIER_SPACING_PER_COST`] times its recent cost
/// (from that up to [`EARLY_PAGE_QUIET`]) for a page holding
/// [`CHEAP_EARLY_PAGE_DIVISOR`]'s share of the pace, [`EARLY_PAGE_QUIET`]
/// for less.
pub(crate) fn early_page_quiet(p: &Params, bytes: usize, cost: StartCost) -> Duration {
    match cost {
        StartCost::Fence => EARLY_PAGE_QUIET_FENCED,
        StartCost::Membarrier(ns) if bytes >= p.pace_bytes / CHEAP_EARLY_PAGE_DIVISOR => {
            membarrier_spacing(ns, EARLY_PAGE_QUIET_FENCED, EARLY_PAGE_QUIET)
        }
        StartCost::Membarrier(_) => EARLY_PAGE_QUIET,
    }
}

/// How soon the grace-period thread looks at a grace period that a
/// retiring thread started and left in progress (it finishes it if that
/// thread has stopped retiring). Long against the time between a busy
/// thread's hand-offs: at 2 ms the grace-period thread woke a thousand
/// times a second in the update-heavy bench and ran a fifth of the grace
/// periods itself, holding `gp_lock` against the retiring threads (25,000–
/// 45,000 failed `try_advance` a second) and taking their CPU while they
/// were inside sections: 140 grace periods a second lasted over a
/// millisecond, and garbage waited for them. At 5 ms it runs almost none.
pub(crate) const RETIRER_FALLBACK_MS: u64 = 5;

/// Ready pages a thread frees per page it hands off, where the domain lets
/// retiring threads free (`retiring_thread_frees`).
pub(crate) const INLINE_FREE_PAGES: usize = 8;

/// Objects a retiring thread frees from its drain (a ready page of values
/// that drop anywhere: `callbacks/drain.rs`) per retire while more ready
/// pages wait behind it, ready since an earlier grace period's end than
/// the last ([`drain_step_for`]): twice what it adds, so a backlog
/// shrinks, in steps short enough that a retire inside a read-side section
/// holds up no grace period.
pub(crate) const DRAIN_STEP: usize = 2;
const _: () = assert!(
    DRAIN_STEP >= 2,
    "a drain behind its shard's ready pages must outpace the one object a retire adds"
);

/// The drain's step when no other page waited ready as it took its page,
/// or the last grace period's end made its page ready ([`drain_step_for`]:
/// it is not behind): one free per retire, so each allocation finds the
/// memory the last free gave back (glibc's per-thread cache holds seven
/// chunks a size: two frees per retire overflowed it every other retire,
/// and 64-byte retires took 27 ns instead of 25).
pub(crate) const DRAIN_STEP_KEEPING_UP: usize = 1;

/// A thread takes its drain's objects at every this-many-th retire (its
/// page's count a multiple of it), this many steps at once (a hurrying
/// drain, [`DRAIN_STEP_HURRY`], at every retire): the same frees per
/// retire, one entry into the drop machinery (the in-callback mark, the
/// unwind guard, the count `barrier` waits for) per four. Four frees after
/// four allocations still fit glibc's per-thread cache (seven chunks a
/// size), so a step of one keeps each allocation on the memory the last
/// free gave back; at eight, every eighth allocation would miss it.
pub(crate) const DRAIN_EVERY: usize = 4;
const _: () = assert!(
    DRAIN_STEP * DRAIN_EVERY <= DRAIN_STEP_HURRY,
    "a drain behind a backlog takes its steps whole (at most a hurrying step at once)"
);

/// A ready page that a retiring thread's drain takes with fewer objects
/// than this takes the ready pages of values that drop anywhere behind it
/// too, as far as they fit (`Shard::take_ready_plain`): pages of a few
/// large values each otherwise came out at one a retire, no faster than
/// they came in. Pages of small values (32 objects or more when they pass
/// the pace) are not merged, only those handed off early with few.
pub(crate) const DRAIN_MERGE_BELOW: usize = 16;

/// The drain's step while the shard holds [`THROTTLE_PAGES`] ready pages
/// or more (after a grace period held up by a long reader).
pub(crate) const DRAIN_STEP_HURRY: usize = 8;

/// The drain's step for a page taken while `ready_backlog` more pages wait
/// ready on the shard (counted up to [`THROTTLE_PAGES`]), `latest`: the
/// page became ready as the last grace period ended, so it and the pages
/// behind it are that grace period's, and the drain is not behind the
/// grace periods: one free per retire ([`DRAIN_STEP_KEEPING_UP`]) under
/// [`THROTTLE_PAGES`], as [`drain_step`] says otherwise (a page that
/// became ready at an earlier end is behind).
///
/// Grace periods end a few pages apart (a retiring thread starts one at
/// most every [`retirer_gp_min_interval`]: some four pages of 64-byte
/// objects), and each readies those pages at once. Stepping two per retire
/// through them, the drain emptied before the next end and the thread
/// allocated with nothing freed for a page's worth of retires or more:
/// 26–36 % of a 64-byte `defer_drop` loop's allocations (a `barrier`
/// every 10,000) found glibc's per-thread cache empty (and as many frees
/// found it full), and took the arena's fast bins (a locked exchange and
/// a cold line each); one per retire through the grace period's pages,
/// 6–10 %, most at the `barrier`s, and the loop took 33–46 ns a retire
/// of CPU time instead of 35–54 in alternated runs. Its mean garbage held
/// (one thread's update-heavy bench: 16–20 KiB against 18–19). A drain
/// behind the grace periods (pages of an earlier end still wait) still
/// steps two.
pub(crate) fn drain_step_for(ready_backlog: usize, latest: bool) -> usize {
    if latest && ready_backlog < THROTTLE_PAGES {
        DRAIN_STEP_KEEPING_UP
    } else {
        drain_step(ready_backlog)
    }
}

/// The drain's step for a page taken while `ready_backlog` more pages wait
/// ready on the shard (counted up to [`THROTTLE_PAGES`]), ready since an
/// earlier grace period's end than the last ([`drain_step_for`]).
pub(crate) fn drain_step(ready_backlog: usize) -> usize {
    match ready_backlog {
        0 => DRAIN_STEP_KEEPING_UP,
        n if n >= THROTTLE_PAGES => DRAIN_STEP_HURRY,
        _ => DRAIN_STEP,
    }
}

/// The most bytes one retired object or callback books (1 TiB): what a
/// caller claims beyond it (a weigher returning `usize::MAX`, say) is
/// booked as this much, so that no sum of booked bytes (a page's, a
/// shard's, the domain's) can overflow short of 16 million such claims in
/// flight at once. An overflow panicked in a debug build inside a thread's
/// bulk-page push, leaving its buffer marked as owned, and the next
/// `barrier` or domain drop waited for it for ever.
pub(crate) const MAX_BOOKED_BYTES: usize = 1 << 40;

/// `bytes` as booked: at most [`MAX_BOOKED_BYTES`]. Inline: the generic
/// retiring calls are compiled in the caller's crate, which cannot inline
/// it otherwise.
#[inline]
pub(crate) fn booked(bytes: usize) -> usize {
    bytes.min(MAX_BOOKED_BYTES)
}

/// Empty pages kept per shard so the fast path never allocates (kernel: 5).
pub(crate) const SPARE_PAGES: usize = 64;

/// Grace periods that fast mode outlasts the last pressure signal.
pub(crate) const FAST_MODE_HOLD_GPS: u64 = 2;

/// Pages a safe point (`Rcu::collect`) frees at most per call: about 2,000
/// objects, so one call stays short.
pub(crate) const COLLECT_PAGES: usize = 8;

/// A collecting thread marks its shard (`producer_window` starts again)
/// on its first `Rcu::collect` and on every this-many-th after: a clock
/// read is dearer than the rest of the call.
pub(crate) const COLLECT_MARK_EVERY: u32 = 16;

/// While the oldest garbage's grace period is pending, `Rcu::collect`
/// tries to move it on (`try_advance`: `gp_lock` and a scan of the
/// readers) on every this-many-th call.
pub(crate) const COLLECT_ADVANCE_EVERY: u32 = 8;

/// Ready pages a shard may hold before a thread handing it a page waits
/// for the worker.
pub(crate) const THROTTLE_PAGES: usize = 16;

/// Ready callbacks on a shard above which a thread queueing one waits for
/// the worker (the producer throttle for `Rcu::call`; a page's worth of
/// objects times `THROTTLE_PAGES`, as for pages).
pub(crate) const CALL_THROTTLE: usize = THROTTLE_PAGES * 255;

/// The longest a retiring thread waits for the worker per page it hands off.
pub(crate) const THROTTLE_MAX_WAIT: Duration = Duration::from_millis(2);

/// Bytes on the shards above which, while a pressure signal is held, a
/// thread handing off a page waits for them to be freed (chosen by
/// measurement: see BENCHMARKS.md, "Writers wait under pressure").
pub(crate) const DEFAULT_PRESSURE_THROTTLE_BYTES: usize = 8 << 20;

/// Default of [`Config::held_up_bytes`](crate::Config::held_up_bytes).
pub(crate) const DEFAULT_HELD_UP_BYTES: usize = 512 << 10;

/// Default of [`Config::held_up_after`](crate::Config::held_up_after):
/// several times a grace period's usual length (about 150 µs with two
/// threads updating on two cores).
pub(crate) const DEFAULT_HELD_UP_AFTER: Duration = Duration::from_micros(500);

/// The longest a retiring thread waits under pressure per page it hands
/// off, while the shards hold at most twice the throttle's bytes.
pub(crate) const PRESSURE_THROTTLE_MAX_WAIT: Duration = Duration::from_millis(10);

/// The longest such a wait lasts while the shards hold more than twice the
/// throttle's bytes (the kernel's `balance_dirty_pages` pauses up to 200 ms
/// the further dirty pages are over their limit).
pub(crate) const PRESSURE_THROTTLE_MAX_WAIT_FAR_OVER: Duration = Duration::from_millis(100);

/// The longest such a wait lasts while the shards hold more than four
/// times the throttle's bytes: a reader that stays in its section holds
/// every free up, and a writer that went on after 100 ms still filled a
/// 100 MiB cgroup behind a section held for 3 s.
pub(crate) const PRESSURE_THROTTLE_MAX_WAIT_STALLED: Duration = Duration::from_secs(1);

/// How long one callback or destructor (or a page of them) may run on a
/// worker before a throttled thread stops waiting for it: past this, the
/// item is taken to be blocked (on a lock the waiting thread may hold: a
/// value whose `Drop` takes a lock the writer retires under), so a wait
/// for the worker cannot end sooner than its bound and only delays the
/// writer. Retiring 3,000 values of 64 KiB under pressure under such a lock
/// took 9–43 s when every wait ran to its bound (10 ms to 1 s).
pub(crate) const WORKER_STUCK_MS: usize = 5;

/// As [`WORKER_STUCK_MS`], for a thread waiting over a memory limit's
/// allowance (`headroom.rs`) while memory is `state`: the nearer the
/// limit, the longer, for there the OOM killer is what a wait given up
/// lets in. Near a limit a runner asleep in the kernel for 5 ms is most
/// often not blocked on a lock the waiting thread holds: its frees wait
/// for glibc's arena locks (held by threads that lost their CPU) or for
/// the cgroup's reclaim. 256 threads storing at full speed on 2 cores in
/// a 256 MiB cgroup gave up their waits on such pauses and were
/// OOM-killed in nearly every run. A writer that retires under a lock its
/// values' `Drop` takes pays this at each retire that finds the runner
/// newly blocked, so the patience stays short while memory is plentiful.
pub(crate) fn headroom_stuck_ms(state: MemoryState) -> usize {
    match state {
        MemoryState::Plenty => WORKER_STUCK_MS,
        MemoryState::Short => HEADROOM_STUCK_SHORT_MS,
        MemoryState::OverMark => HEADROOM_STUCK_OVER_MARK_MS,
    }
}

/// [`headroom_stuck_ms`] while memory is short.
pub(crate) const HEADROOM_STUCK_SHORT_MS: usize = 100;

/// [`headroom_stuck_ms`] over the limit's mark.
pub(crate) const HEADROOM_STUCK_OVER_MARK_MS: usize = 500;

/// Whether a runner seen on its current item at `seen_ms` (0: never seen)
/// is stuck at `now_ms`, for a waiter that allows it `patience_ms`
/// ([`WORKER_STUCK_MS`], [`headroom_stuck_ms`]).
pub(crate) fn worker_stuck(seen_ms: usize, now_ms: usize, patience_ms: usize) -> bool {
    seen_ms != 0 && now_ms.saturating_sub(seen_ms) >= patience_ms
}

/// How long a thread waiting under pressure sleeps between looks (it gives
/// its CPU to the grace-period thread and the workers).
pub(crate) const PRESSURE_THROTTLE_NAP: Duration = Duration::from_micros(50);

/// Whether a thread handing off a page while `signals` pressure signals
/// are held and the shards hold `shard_bytes` waits for them to be freed.
pub(crate) fn pressure_throttles(p: &Params, signals: usize, shard_bytes: usize) -> bool {
    signals > 0 && shard_bytes > p.pressure_throttle_bytes
}

/// The most a call that retires many values (a map's `clear`, a cache
/// insert's evictions) waits under pressure in all, whatever its hand-offs.
pub(crate) const PRESSURE_THROTTLE_PER_CALL: Duration = Duration::from_secs(1);

/// How long a thread that starts waiting under pressure while the shards
/// hold `shard_bytes` may wait at most: longer the further over it is, so
/// writers that outrun stalled grace periods slow to their pace.
pub(crate) fn pressure_throttle_max_wait(p: &Params, shard_bytes: usize) -> Duration {
    if shard_bytes / 4 > p.pressure_throttle_bytes {
        PRESSURE_THROTTLE_MAX_WAIT_STALLED
    } else if shard_bytes / 2 > p.pressure_throttle_bytes {
        PRESSURE_THROTTLE_MAX_WAIT_FAR_OVER
    } else {
        PRESSURE_THROTTLE_MAX_WAIT
    }
}

/// Whether a thread waiting under pressure may go on: the pressure ended,
/// or the shards hold half the throttle's bytes or less.
pub(crate) fn pressure_throttle_done(p: &Params, signals: usize, shard_bytes: usize) -> bool {
    signals == 0 || shard_bytes <= p.pressure_throttle_bytes / 2
}

/// Whether a thread handing off a page (no pressure signal held) waits
/// for the grace period in progress: it has lasted `age` (`None`: none is
/// in progress, or a wait already ran to its bound on it), over
/// `held_up_after`, while the shards hold more than `held_up_bytes`
/// (`shard_bytes`, asked only for a grace period that old). A
/// grace period that long is held up by a reader that is not running (on
/// a machine with fewer cores than runnable threads, one preempted inside
/// its section): the writer, which would retire at full speed meanwhile
/// and nothing could be freed, gives its CPU away until it ends.
pub(crate) fn held_up_waits(
    p: &Params,
    age: Option<Duration>,
    shard_bytes: impl FnOnce() -> usize,
) -> bool {
    matches!(age, Some(a) if a >= p.held_up_after) && shard_bytes() > p.held_up_bytes
}

/// The most a held-up wait lasts (about a scheduler's time slice): a
/// reader still in its section then is not merely preempted, and no
/// thread waits on that grace period again.
pub(crate) const HELD_UP_MAX_WAIT: Duration = Duration::from_millis(2);

/// The least garbage a memory limit allows before retiring threads wait
/// for it ([`headroom_allowance`]): below it the usage is never read. A
/// `MemoryBudget`'s own bound sets a floor of its own (its reclaim step),
/// as its usage is a cheap read of its own.
pub(crate) const HEADROOM_FLOOR: usize = 2 << 20;

/// How often a retiring thread reads the usage while the shards hold more
/// than [`HEADROOM_FLOOR`] and no more than the allowance: the rest of the
/// process may have grown meanwhile. Over the allowance, every
/// millisecond.
pub(crate) const HEADROOM_READ_EVERY_MS: usize = 5;

/// The longest a thread waits for its garbage per hand-off under a memory
/// limit: as long as the pressure throttle waits behind a stalled grace
/// period. A writer that went on after 2 ms (the held-up wait) piled 64 MiB
/// of 1 MiB values in 160 ms behind a preempted reader.
pub(crate) const HEADROOM_MAX_WAIT: Duration = PRESSURE_THROTTLE_MAX_WAIT_STALLED;

/// Entries outstanding (handed to the shards and not yet run: waiting for
/// a grace period, ready, or in a worker's hands) past which a thread
/// queueing a `call`, which books no bytes, waits while a pressure signal
/// is held or the usage is over a memory limit's mark (see
/// `Callbacks::wait_for_call_backlog`): 4,096 closures owning 4 KiB each
/// are 16 MiB. Without it, four threads queueing such closures in a
/// 100 MiB cgroup were OOM-killed within 0.4 s, with 15 k of 18 k entries
/// ready but not yet run by the worker.
pub(crate) const CALL_BACKLOG: u64 = 4096;

/// The same mark while the usage is over the limit's mark itself
/// (`MemoryState::OverMark`): four threads queueing closures that owned
/// 16 KiB each (64 MiB at `CALL_BACKLOG`) were OOM-killed in a 100 MiB
/// cgroup within 0.3 s with `CALL_BACKLOG` alone.
pub(crate) const CALL_BACKLOG_OVER: u64 = 256;

/// How far ahead `Rcu::memory_state` looks: the usage projected
/// `USAGE_LOOKAHEAD_MS` ahead at the pace it grew since the last read.
pub(crate) const USAGE_LOOKAHEAD_MS: usize = 8;

/// The usage `USAGE_LOOKAHEAD_MS` after a read of `usage`, at the pace it
/// grew from `before` (the read `age_ms` earlier; `None`: no earlier
/// read, or it was long ago, a second or more); never below `usage`.
pub(crate) fn usage_ahead(usage: usize, before: Option<usize>, age_ms: usize) -> usize {
    match before {
        Some(b) if usage > b && (1..1000).contains(&age_ms) => {
            usage.saturating_add(((usage - b) / age_ms).saturating_mul(USAGE_LOOKAHEAD_MS))
        }
        _ => usage,
    }
}

/// The entries a thread's page of `call`s that book no bytes holds at most
/// while memory is short (`Callbacks::memory_short_cached`), against a
/// full page's 252: no pace sees them (they weigh nothing), and the call
/// backlog's bound looks at them once per page handed off. Four threads'
/// pages of closures owning 64 KiB each held 63 MiB before a hand-off
/// let the bound see one.
pub(crate) const CALL_PAGE_WHEN_SHORT: usize = 16;

/// The entries outstanding past which a `call` that books no bytes waits
/// in memory state `state` (`None`: it never waits).
pub(crate) fn call_backlog_mark(state: MemoryState) -> Option<u64> {
    match state {
        MemoryState::Plenty => None,
        MemoryState::Short => Some(CALL_BACKLOG),
        MemoryState::OverMark => Some(CALL_BACKLOG_OVER),
    }
}

/// How short memory is for a domain (`Rcu::memory_state`), from a pressure
/// signal or the usage of a memory limit the domain knows
/// (`Rcu::bound_garbage`).
///
/// ```
/// use rcu_reclaim::pressure::MemoryState;
/// assert!(MemoryState::Plenty < MemoryState::Short);
/// assert!(MemoryState::Short < MemoryState::OverMark);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MemoryState {
    /// No pressure signal, and the usage (if a limit is known) under three
    /// quarters of the limit's mark.
    Plenty,
    /// A pressure signal is held, or the usage is over three quarters of
    /// the mark (64 MiB of a 100 MiB cgroup, whose mark is 85 MiB): work
    /// whose memory the domain cannot weigh is held back from here.
    Short,
    /// The usage is over the mark itself: the limit is near.
    OverMark,
}

/// The state a memory limit whose medium mark is `mark` is in at `usage`.
/// Short from three quarters of the mark: at the mark itself four threads'
/// flood of `call`s peaked at 85 MiB and was OOM-killed in 1 run of 10 on
/// a loaded machine: the backlog held back is not booked in bytes, so the
/// wait starts with room to spare.
pub(crate) fn memory_state(mark: usize, usage: usize) -> MemoryState {
    if usage > mark {
        MemoryState::OverMark
    } else if usage > mark - mark / 4 {
        MemoryState::Short
    } else {
        MemoryState::Plenty
    }
}

/// The longest that wait lasts per hand-off (a page of calls): 10 ms, or
/// 100 ms while over four times `CALL_BACKLOG` or over the limit's mark
/// (the pressure throttle's bounds).
pub(crate) fn call_backlog_max_wait(backlog: u64, state: MemoryState) -> Duration {
    if backlog > 4 * CALL_BACKLOG || state == MemoryState::OverMark {
        PRESSURE_THROTTLE_MAX_WAIT_FAR_OVER
    } else {
        PRESSURE_THROTTLE_MAX_WAIT
    }
}

/// The garbage (bytes on the shards) a domain under a memory limit may
/// hold: half of what would take the usage to `mark` (the limit's medium
/// watermark) were the rest of the process to stay as it was when `usage`
/// (which counts `garbage`) was read; at least `floor` (the limit's:
/// [`HEADROOM_FLOOR`], or a budget's reclaim step).
pub(crate) fn headroom_allowance(mark: usize, usage: usize, garbage: usize, floor: usize) -> usize {
    let rest = usage.saturating_sub(garbage);
    (mark.saturating_sub(rest) / 2).max(floor)
}

/// Whether a thread handing off a page waits for `garbage` to be freed
/// under a memory limit that allows `allow`.
pub(crate) fn headroom_waits(allow: usize, garbage: usize) -> bool {
    garbage > allow
}

/// Whether such a wait is over: the shards hold half the allowance.
pub(crate) fn headroom_wait_done(allow: usize, garbage: usize) -> bool {
    garbage <= allow / 2
}

/// Whether the usage is read anew, `age_ms` after the last read, by a
/// thread that finds the shards `over` the allowance or not.
pub(crate) fn headroom_reads(over: bool, age_ms: usize) -> bool {
    age_ms >= if over { 1 } else { HEADROOM_READ_EVERY_MS }
}

/// Whether a shard holding `count` entries becomes overloaded.
pub(crate) fn shard_overloads(p: &Params, count: usize) -> bool {
    count > p.qhimark
}

/// Whether an overloaded shard holding `count` entries is no longer.
pub(crate) fn shard_overload_ends(p: &Params, count: usize) -> bool {
    count < p.qlowmark
}

/// Whether a domain whose backlog is `total` entries is overloaded (its
/// grace periods are then expedited, and every shard asks for one).
pub(crate) fn domain_overloaded(p: &Params, total: usize) -> bool {
    total > p.qovld
}

/// Whether queueing `added_bytes` on a shard must wake the grace-period
/// thread: `kick` (the shard was idle, or just overloaded), or the entry
/// completed a batch or crossed the byte mark, or it is the first new one
/// of an overloaded shard. `unrequested` and `unrequested_bytes` count the
/// entry.
pub(crate) fn kick_after_enqueue(
    p: &Params,
    kick: bool,
    overloaded: bool,
    unrequested: usize,
    (unrequested_bytes, added_bytes): (usize, usize),
) -> bool {
    let crossed = unrequested_bytes >= p.pace_bytes
        && unrequested_bytes.saturating_sub(added_bytes) < p.pace_bytes;
    kick || crossed || unrequested == p.lazy_batch || overloaded && unrequested == 1
}

/// Whether a shard with `unrequested` entries holding `unrequested_bytes`
/// (not yet assigned a grace period) asks for one now: a whole batch, or
/// enough bytes.
pub(crate) fn batch_full(p: &Params, unrequested: usize, unrequested_bytes: usize) -> bool {
    unrequested >= p.lazy_batch || unrequested_bytes >= p.pace_bytes
}

/// Objects smaller than this on average make a page of small objects
/// ([`quiet_look_due`]).
pub(crate) const SMALL_OBJECT_BYTES: usize = 128;

/// At an advance point of a page holding `count` objects of `bytes`:
/// whether to read the clock for [`page_due_early`]. Every advance point
/// for a page of objects of [`SMALL_OBJECT_BYTES`] or more on average;
/// every fourth for smaller ones, whose retires come fast and whose early
/// page frees little: the clock read was 6 % of a 64-byte `defer_drop`
/// loop's time (perf), for a page that goes early at a 32nd of the pace
/// either way.
pub(crate) fn quiet_look_due(count: usize, bytes: usize) -> bool {
    bytes >= count.saturating_mul(SMALL_OBJECT_BYTES) || count % (4 * RETIRES_PER_ADVANCE) == 0
}

/// Whether a thread's bulk page holding `bytes` goes to its shard early,
/// and asks for a grace period at once, when `quiet` (called only if the
/// bytes are enough) says how long ago a retiring thread last started a
/// grace period, at least [`early_page_quiet`] (with what a start
/// would cost; `None`: one is in progress), or, while grace periods come
/// often, when `age_ms` (called only then) says the page has held its
/// first object for [`EARLY_PAGE_AGE_MS`].
///
/// The byte pace alone lets a moderate retire rate wait: at 80 MiB/s a
/// thread filled `pace_bytes` (64 KiB then) in 0.8 ms, and in the read-mostly
/// bench garbage lived about 1.2 ms on average (crossbeam-epoch's 0.2 ms).
/// A fast one is unaffected: its grace periods already start every
/// 100–150 µs. With many threads each retiring moderately, other threads
/// start grace periods that often, so no page ever found a quiet spell and
/// each waited to fill: at 16 threads the read-mostly bench's garbage
/// lived 2.2 ms on average (4.3–4.9× crossbeam-epoch's mean garbage). Its
/// page joins those grace periods once it is a millisecond old.
pub(crate) fn page_due_early(
    p: &Params,
    bytes: usize,
    quiet: impl FnOnce() -> Option<(Duration, StartCost)>,
    age_ms: impl FnOnce() -> usize,
) -> bool {
    bytes >= p.pace_bytes / EARLY_PAGE_DIVISOR
        && match quiet() {
            Some((q, cost)) if q >= early_page_quiet(p, bytes, cost) => true,
            _ => age_ms() >= EARLY_PAGE_AGE_MS,
        }
}

/// At an advance point of a page holding `count` objects, past the quiet
/// look: whether to read the clock for the page's age ([`page_due_early`]).
/// Every fourth advance point: while grace periods come often (one is in
/// progress most of the time) the age is what reads the clock, and a
/// thread retiring a million objects a second would read it at every
/// eighth retire for a page that fills long before it is a millisecond
/// old. A slow thread's page goes at most 32 retires late.
pub(crate) fn age_look_due(count: usize) -> bool {
    count % (4 * RETIRES_PER_ADVANCE) == 0
}

/// See [`page_due_early`]: a page at least this old (on the millisecond
/// clock, so between this and one more millisecond) goes early while grace
/// periods come often.
pub(crate) const EARLY_PAGE_AGE_MS: usize = 1;

/// Whether a thread's bulk page holding `count` objects of `bytes` goes
/// to its shard before it is full: [`PAGE_HANDOFF_OBJECTS`] objects of a
/// 32nd of `pace_bytes`, or `pace_bytes` in at least [`PAGE_MIN_OBJECTS`]
/// objects, or [`PAGE_BYTES_FACTOR`] times that.
///
/// By the page's pace, `pace` ([`limit_page_pace`]): `pace_bytes` unless
/// a bound on the garbage (a cap, `max_pending_bytes`, or a memory
/// limit's allowance) makes it less.
pub(crate) fn page_due_by_pace(pace: usize, bytes: usize, count: usize) -> bool {
    count >= PAGE_HANDOFF_OBJECTS && bytes >= pace / EARLY_PAGE_DIVISOR
        || bytes >= pace
            && (count >= PAGE_MIN_OBJECTS || bytes >= pace.saturating_mul(PAGE_BYTES_FACTOR))
}

/// A page's pace is at most this share of `Config::max_pending_bytes`
/// ([`page_pace`]): a page then goes once it holds a sixteenth of the cap
/// in [`PAGE_MIN_OBJECTS`] objects, or a quarter of it
/// ([`PAGE_BYTES_FACTOR`] times that) in fewer. The cap is looked at only
/// as a page is handed off, so a page that never went (a pace of
/// `usize::MAX`, or `on_demand`'s half of it, holds up to 255 objects of
/// any size) kept its garbage out of the cap's sight: 40 stores of 1 MiB
/// left 40 MiB waiting over a 4 MiB cap. At the cap's least (2 MiB,
/// [`HEADROOM_FLOOR`]) the share is 128 KiB, over the default pace.
pub(crate) const CAP_PAGE_DIVISOR: usize = 16;

/// The pace of a thread's bulk page for a domain's `pace_bytes` and
/// `max_pending_bytes` (`usize::MAX`: no cap): the pace, at most a
/// [`CAP_PAGE_DIVISOR`]th of the cap.
pub(crate) fn page_pace(pace_bytes: usize, max_pending_bytes: usize) -> usize {
    pace_bytes.min(max_pending_bytes / CAP_PAGE_DIVISOR)
}

/// The pace of a thread's bulk page under a bound on the garbage that
/// allows `allow` bytes now (`usize::MAX`: none; the cap,
/// `max_pending_bytes`, or a memory limit's allowance, which changes with
/// each read of its usage): [`page_pace`] of the allowance, taken as at
/// least the bound's `floor` (a limit's, [`HEADROOM_FLOOR`] or a budget's
/// reclaim step of 256 KiB or more; a cap is at least `HEADROOM_FLOOR`),
/// so that no bound makes a page go under the default pace (16 KiB, a
/// sixteenth of 256 KiB). A memory limit is looked at, as the cap is,
/// only as a page is handed off: with a pace of `usize::MAX` 60 stores of
/// 1 MiB left 60 MiB waiting over an allowance of 2 MiB, and pages of
/// eight 64 KiB values over a budget's 256 KiB.
pub(crate) fn limit_page_pace(pace_bytes: usize, allow: usize, floor: usize) -> usize {
    page_pace(pace_bytes, allow.max(floor))
}

/// What the pace says of one shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pace {
    /// Ask for a grace period now.
    Due,
    /// Not yet: its oldest entry is due after this long.
    Wait(Duration),
    /// Nothing queued that waits for the pace.
    Idle,
}

/// A shard's facts the pace looks at.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ShardFacts {
    /// `call_hurry` or overload asked for speed.
    pub(crate) hurry: bool,
    pub(crate) overloaded: bool,
    /// Its node is under pressure and the domain in fast mode.
    pub(crate) pressured: bool,
    /// How long its oldest entry not yet assigned a grace period waited.
    pub(crate) age: Option<Duration>,
    /// Entries not yet assigned a grace period.
    pub(crate) unrequested: usize,
    /// Their bytes.
    pub(crate) unrequested_bytes: usize,
}

/// The pace for one shard of a domain (`domain_overloaded`: see
/// [`domain_overloaded`]).
pub(crate) fn shard_pace(p: &Params, domain_overloaded: bool, s: ShardFacts) -> Pace {
    let due = s.hurry
        || s.overloaded
        || domain_overloaded
        || (s.pressured && s.age.is_some())
        || s.age.is_some_and(|a| a >= p.lazy_delay)
        || batch_full(p, s.unrequested, s.unrequested_bytes);
    match s.age {
        _ if due => Pace::Due,
        Some(a) => Pace::Wait(p.lazy_delay - a),
        None => Pace::Idle,
    }
}

/// Threads' partly filled pages this old go to their shards: the lazy
/// delay, or [`PRESSURE_PAGE_AGE`] (if shorter) while `pressured`. For
/// the grace-period thread's look, `pressured` is "any node is pressured",
/// not the hysteresis after pressure: no shard asks for a grace period
/// then, so a page taken from its thread would only wait on a shard.
pub(crate) fn page_flush_age(p: &Params, pressured: bool) -> Duration {
    if pressured {
        PRESSURE_PAGE_AGE.min(p.lazy_delay)
    } else {
        p.lazy_delay
    }
}

/// Under pressure, a thread's page goes to its shard at the grace-period
/// thread's first look once it is this old. Taking every page at every
/// look, however young, cost a `membarrier` per page and look: in the
/// bench's budget scenario on two cores, 4,900-5,200 a second, 13.5-15 %
/// of a CPU, for pages their threads were filling (a thread that retires
/// hands its page on itself once it is due). With this age: 850-910 a
/// second, 2 % of a CPU, the same updates and mean garbage 0.69-0.72 MiB
/// against 0.83-0.87 (BENCHMARKS.md, fortieth session).
pub(crate) const PRESSURE_PAGE_AGE: Duration = Duration::from_millis(1);

/// When a thread's fresh page, started at `since_ms` (on the `clock`), is
/// due to be flushed to its shard: after the lazy delay, or, while a
/// pressure signal is held, after [`PRESSURE_PAGE_AGE`] (then only a
/// grace-period thread about to look again anyway saves a wake-up).
pub(crate) fn page_due_ms(p: &Params, since_ms: usize, pressure_held: bool) -> usize {
    let delay = page_flush_age(p, pressure_held);
    let delay = usize::try_from(delay.as_millis()).unwrap_or(usize::MAX);
    since_ms.saturating_add(delay)
}

/// When a thread's drain (`callbacks/drain.rs`), filled at `since_ms`, is
/// taken from it if the thread has not emptied it (it stopped retiring):
/// after `producer_window`, as ready pages left to it go to a worker.
pub(crate) fn drain_due_ms(p: &Params, since_ms: usize) -> usize {
    let window = usize::try_from(p.producer_window.as_millis()).unwrap_or(usize::MAX);
    since_ms.saturating_add(window)
}

/// Whether grace periods run expedited: under overload, or in fast mode
/// while the pressured nodes' backlog is worth it.
pub(crate) fn expedite(
    p: &Params,
    domain_overloaded: bool,
    fast: bool,
    pressured_bytes: usize,
) -> bool {
    domain_overloaded || (fast && pressured_bytes >= p.fast_min_bytes)
}

/// How many ready callbacks a run may take: `asked` for a worker's batch
/// (at least `blimit` and `pending >> 7`), everything for others, and
/// everything under overload or fast mode.
pub(crate) fn batch_limit(
    p: &Params,
    asked: Option<usize>,
    unlimited: bool,
    pending: usize,
) -> usize {
    match asked {
        Some(_) if unlimited => usize::MAX,
        Some(l) => l.max(p.blimit).max(pending >> 7),
        None => usize::MAX,
    }
}

/// How many ready bulk pages a run may take: one for a worker's batch
/// (`asked`), so that it parks for `fork()` between pages and yields once
/// per slice (a page may hold 255 callbacks queued with `call`, each
/// running as long as it likes), everything for others, and everything
/// under overload or fast mode. `allowed` (0 while the shard's ready
/// pages are left to the thread handing it pages) caps it.
pub(crate) fn batch_pages(asked: Option<usize>, unlimited: bool, allowed: usize) -> usize {
    match asked {
        Some(_) if !unlimited => allowed.min(1),
        _ => allowed,
    }
}

/// How much longer a shard's ready pages are left to the thread that last
/// handed it a page (at `last_handoff`), or `None` once a worker should
/// free them.
pub(crate) fn left_to_producer(
    last_handoff: Option<Instant>,
    now: Instant,
    window: Duration,
) -> Option<Duration> {
    let since = now.saturating_duration_since(last_handoff?);
    window.checked_sub(since).filter(|d| !d.is_zero())
}

/// Whether a thread handing a shard a page while `ready_pages` wait ready
/// to free yields to the worker.
pub(crate) fn throttles(ready_pages: usize) -> bool {
    ready_pages > THROTTLE_PAGES
}

/// Whether a throttled thread may go on: the worker caught up by half.
pub(crate) fn throttle_done(ready_pages: usize) -> bool {
    ready_pages <= THROTTLE_PAGES / 2
}

/// Whether fast mode is in force: a signal is held, or fewer than
/// `fast_until` grace periods have completed.
pub(crate) fn fast_mode(signals: usize, completed: u64, fast_until: u64) -> bool {
    signals > 0 || completed < fast_until
}

/// Until when fast mode lasts after the last signal ends, `completed`
/// grace periods having completed then.
pub(crate) fn fast_until(completed: u64) -> u64 {
    completed + FAST_MODE_HOLD_GPS
}

/// How long the background reclaimer (`rcu-kswapd`) sleeps between looks
/// nobody asked for: 10 ms, so a budget nobody checks is still watched;
/// after `panics_in_a_row` looks that panicked (a shrinker, the OOM handler
/// or the usage function failing every time), twice as long per panic, up
/// to a second, so a broken callback is not run (and its panic message
/// printed) a hundred times a second. A request (`MemoryBudget::check`
/// over `low`) still wakes it at once.
pub(crate) fn kswapd_idle_wait(panics_in_a_row: u32) -> Duration {
    const IDLE: Duration = Duration::from_millis(10);
    const MOST: Duration = Duration::from_secs(1);
    IDLE.saturating_mul(1 << panics_in_a_row.min(7)).min(MOST)
}

/// Bytes pending on the nodes that make an expedited grace period worth it
/// at `priority` (12 gentle .. 0 desperate): 64 KiB << priority, so 4 MiB at
/// priority 6 and 64 KiB at priority 0.
pub(crate) fn expedite_threshold(priority: u8) -> usize {
    (64 << 10) << priority.min(12)
}

/// What `run_callbacks` does (see `Rcu::run_callbacks`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RunWork {
    /// Run what is already past its grace period.
    ReadyOnly,
    /// An expedited grace period, then run what it made ready.
    Expedite,
    /// Flush threads' pages and run everything (priority 0).
    Barrier,
}

/// The decision of `run_callbacks` at `priority`, with `pending_bytes` on
/// its nodes; `want`: the bytes a reclaimer still needs, if it says;
/// `may_wait`: not inside a read-side section or a callback.
pub(crate) fn run_work(
    may_wait: bool,
    priority: u8,
    pending_bytes: usize,
    want: Option<usize>,
) -> RunWork {
    let worth_a_grace_period = match want {
        Some(want) => pending_bytes >= want,
        None => priority < 10 && pending_bytes >= expedite_threshold(priority),
    };
    if !may_wait {
        RunWork::ReadyOnly
    } else if priority == 0 {
        RunWork::Barrier
    } else if worth_a_grace_period {
        RunWork::Expedite
    } else {
        RunWork::ReadyOnly
    }
}

#[cfg(test)]
mod tests;
