//! A shard: one CPU's segmented callback list and queue of sealed bulk
//! pages, under its lock, with lock-free mirrors of its totals.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering};

use crossbeam_utils::CachePadded;
use std::time::{Duration, Instant};

use super::segcblist::{Entry, SegCbList};
use super::BulkPage;
use crate::clock::epoch_ms;
use crate::policy;
use crate::sync::Mutex;

#[derive(Default)]
pub(super) struct ShardState {
    pub(super) list: SegCbList,
    /// Sealed pages, each waiting for its own cookie.
    pub(super) pages: VecDeque<BulkPage>,
    /// The highest cookie of any page queued here since the shard began
    /// (not lowered when pages leave: only pages whose cookie is done do).
    /// Not done, it is a queued page's; done, every queued page's is.
    pub(super) pages_max_cookie: u64,
    pub(super) page_objects: usize,
    pub(super) page_bytes: usize,
    /// Pages (from the front) whose grace period has been asked for.
    pub(super) pages_requested: usize,
    pub(super) spare: Vec<BulkPage>,
    /// When the oldest entry not yet assigned a grace period was queued.
    pub(super) since: Option<Instant>,
    pub(super) hurry: bool,
    pub(super) overloaded: bool,
    /// When a thread last handed its own full page to this shard (it frees
    /// ready pages as it does: see `Params::producer_window`).
    pub(super) last_handoff: Option<Instant>,
    /// That thread frees only plain pages (values that drop anywhere; the
    /// default): pages are left to it only while the front one is plain.
    pub(super) producer_plain_only: bool,
}

impl ShardState {
    pub(super) fn totals(&self) -> (usize, usize) {
        (
            self.list.len() + self.page_objects,
            self.list.bytes() + self.page_bytes,
        )
    }

    /// Queues a sealed page, keeping the totals and `pages_max_cookie`.
    pub(super) fn push_page(&mut self, page: BulkPage) {
        self.page_objects += page.len();
        self.page_bytes += page.bytes();
        self.pages_max_cookie = self.pages_max_cookie.max(page.cookie);
        self.pages.push_back(page);
    }

    /// Queues a page whose grace period has already elapsed (what a drain
    /// left) at the front, where it is ready at once.
    pub(super) fn push_ready_front(&mut self, page: BulkPage) {
        self.page_objects += page.len();
        self.page_bytes += page.bytes();
        self.pages_requested += 1;
        self.pages.push_front(page);
    }

    /// Whether the front page's grace period has completed (whether or not
    /// the shard asked for one: a page is sealed with a cookie, and any
    /// grace period that reaches it makes the page safe to free).
    pub(super) fn pages_ready(&self, seq: u64) -> bool {
        self.pages.front().is_some_and(|p| seq >= p.cookie)
    }

    /// Moves up to `max` pages whose grace period has elapsed from the
    /// front to `out`, keeping the totals.
    pub(super) fn take_ready_pages(&mut self, seq: u64, max: usize, out: &mut Vec<BulkPage>) {
        let mut taken = 0;
        while taken < max && self.pages_ready(seq) {
            out.push(self.pop_front_page().expect("front exists"));
            taken += 1;
        }
    }

    /// Takes the front page off the queue, keeping the totals.
    pub(super) fn pop_front_page(&mut self) -> Option<BulkPage> {
        let p = self.pages.pop_front()?;
        self.pages_requested = self.pages_requested.saturating_sub(1);
        self.page_objects -= p.len();
        self.page_bytes -= p.bytes();
        Some(p)
    }

    /// The front page, if its grace period has elapsed and its values drop
    /// anywhere (what a retiring thread's drain may take), keeping the
    /// totals; with the ready plain pages behind it moved onto it while it
    /// holds fewer than [`policy::DRAIN_MERGE_BELOW`] objects and they fit
    /// (their emptied pages kept as spares).
    ///
    /// A drain frees at most the rest of its page at a step and takes the
    /// next page at the step after, so pages of a few large values each (a
    /// page goes once it holds four times the pace, 64 KiB, in any number
    /// of objects: two values of 32 KiB) came out at one page a retire, as
    /// fast as a retiring thread hands them in, and a backlog left by one
    /// slow grace period never went down.
    pub(super) fn take_ready_plain(&mut self, seq: u64) -> Option<BulkPage> {
        self.front_ready_plain(seq)?;
        let mut page = self.pop_front_page()?;
        while page.len() < policy::DRAIN_MERGE_BELOW
            && self
                .front_ready_plain(seq)
                .is_some_and(|p| page.len() + p.len() <= super::bulk::capacity())
        {
            let mut next = self
                .pop_front_page()
                .expect("a front page, looked at above");
            page.absorb(&mut next);
            self.keep_spare(next);
        }
        Some(page)
    }

    /// The front page, if its grace period has elapsed and its values drop
    /// anywhere.
    fn front_ready_plain(&self, seq: u64) -> Option<&BulkPage> {
        self.pages
            .front()
            .filter(|p| p.is_plain() && seq >= p.cookie)
    }

    /// Keeps an emptied page as a spare, up to [`policy::SPARE_PAGES`]
    /// (else it is freed).
    pub(super) fn keep_spare(&mut self, page: BulkPage) {
        if self.spare.len() < policy::SPARE_PAGES {
            self.spare.push(page);
        }
    }

    /// Pages at the front whose grace period has elapsed (counted up to
    /// `max`): work for a worker, which no section can hold up.
    pub(super) fn ready_pages(&self, seq: u64, max: usize) -> usize {
        self.pages
            .iter()
            .take(max)
            .take_while(|p| seq >= p.cookie)
            .count()
    }

    /// How much longer ready pages are left to the thread that hands pages
    /// to this shard (within `window` of its last hand-off); `None` once a
    /// worker should free them.
    pub(super) fn left_to_producer(&self, now: Instant, window: Duration) -> Option<Duration> {
        if self.producer_plain_only && !self.pages.front().is_some_and(BulkPage::is_plain) {
            // It would stop at this page: a worker frees it (and what
            // follows, lest the shard wait behind it).
            return None;
        }
        policy::left_to_producer(self.last_handoff, now, window)
    }

    /// How much longer the thread that hands pages to this shard has its
    /// window (`window` after its last hand-off), whatever the front page
    /// is: once a worker has freed a front page that
    /// [`left_to_producer`](Self::left_to_producer) sent to it, the ready
    /// plain pages behind it are left to that thread again until then.
    pub(super) fn producer_window_left(&self, now: Instant, window: Duration) -> Option<Duration> {
        policy::left_to_producer(self.last_handoff, now, window)
    }

    /// The sequence value at which the oldest page or callback becomes
    /// ready (0: something already is; `u64::MAX`: nothing waits).
    pub(super) fn ready_at(&self) -> u64 {
        let page = self.pages.front().map(|p| p.cookie);
        page.into_iter()
            .chain(self.list.earliest_gp())
            .min()
            .unwrap_or(u64::MAX)
    }

    /// Entries not yet assigned a grace period, and their bytes.
    pub(super) fn unrequested(&self) -> (usize, usize) {
        self.pages.iter().skip(self.pages_requested).fold(
            (self.list.next_len(), self.list.next_bytes()),
            |(n, b), p| (n + p.len(), b + p.bytes()),
        )
    }
}

pub(crate) struct Shard {
    pub(super) state: Mutex<ShardState>,
    /// Held while running this shard's ready entries: one runner at a time
    /// keeps queue order, and `barrier` takes it to wait for a running batch.
    /// It holds the runner's lists, reused from batch to batch.
    pub(super) invoke: Mutex<InvokeLists>,
    pub(super) count: AtomicUsize,
    pub(super) bytes: AtomicUsize,
    /// Bytes taken off the shard to be freed (its runner's batch and
    /// pages, a thread's own inline free: whoever holds `invoke`; not a
    /// deferred drop a thread runs itself after a grace period,
    /// `Callbacks::run_inline`) and not freed yet: no longer
    /// queued, still memory. The garbage bounds count them
    /// (`Callbacks::shard_bytes`), so a runner preempted in the middle of
    /// its batch holds writers back as the queue did.
    pub(super) running_bytes: AtomicUsize,
    /// The sequence value at which the shard's oldest entry becomes ready
    /// (`u64::MAX`: nothing waits), for `collect`'s lock-free look. A hint:
    /// a stale value costs a look or a delay, never an early free.
    pub(super) ready_at: AtomicU64,
    /// When (`epoch_ms`) a thread last called `Rcu::collect` on this
    /// shard; 0: never. Ready pages are left to such a
    /// thread for `producer_window`, as to a `retiring_thread_frees` one.
    pub(super) collected_ms: AtomicUsize,
    /// What the shard's runner is doing, for a throttled thread that
    /// stops waiting for a runner stuck on one item (`Callbacks::runner_stuck`).
    pub(super) runner: CachePadded<RunnerMark>,
}

/// A shard's runner's progress (a hint: races between observers only
/// delay or hasten a throttled thread's decision to stop waiting).
#[derive(Default)]
pub(crate) struct RunnerMark {
    /// Bumped before each callback and each deferred drop a runner starts.
    pub(super) progress: AtomicUsize,
    /// Whether a runner is inside a batch.
    pub(super) running: AtomicBool,
    /// The `progress` a throttled thread last saw, and when (`epoch_ms`).
    pub(super) seen: AtomicUsize,
    pub(super) seen_ms: AtomicUsize,
    /// The runner's thread id (`gettid`), set as a batch starts.
    pub(super) tid: AtomicI32,
    /// When (`epoch_ms`) a throttled thread last looked whether the runner
    /// is blocked, and what it found (a look reads procfs: at most one a
    /// millisecond).
    pub(super) looked_ms: AtomicUsize,
    pub(super) blocked: AtomicBool,
}

thread_local! {
    /// The calling thread's id, for `RunnerMark::start`.
    static TID: i32 = crate::sys::gettid();
}

impl RunnerMark {
    /// Counts one more item started (only a shard's runner writes it).
    #[inline]
    pub(crate) fn bump(&self) {
        let p = self.progress.load(Ordering::Relaxed);
        self.progress.store(p.wrapping_add(1), Ordering::Relaxed);
    }

    /// Marks a batch started on the calling thread.
    pub(super) fn start(&self) {
        let tid = TID.try_with(|t| *t).unwrap_or(0);
        self.tid.store(tid, Ordering::Relaxed);
        self.running.store(true, Ordering::Relaxed);
    }

    /// Whether a runner is stuck by `now_ms`: on one item for
    /// `patience_ms` or more (`policy::WORKER_STUCK_MS`, or
    /// `policy::headroom_stuck_ms`: no item started since a look at least
    /// that long ago; every look that finds progress notes it), and
    /// asleep in the kernel (on a lock, say), where that can be read: a
    /// runner that only lost its CPU, as on a loaded machine, is waited
    /// for (a throttled thread's naps give it the CPU back).
    pub(super) fn stuck(&self, now_ms: usize, patience_ms: usize) -> bool {
        if !self.running.load(Ordering::Relaxed) {
            return false;
        }
        let p = self.progress.load(Ordering::Relaxed);
        if self.seen.load(Ordering::Relaxed) != p || self.seen_ms.load(Ordering::Relaxed) == 0 {
            self.seen.store(p, Ordering::Relaxed);
            self.seen_ms.store(now_ms, Ordering::Relaxed);
            return false;
        }
        if !policy::worker_stuck(self.seen_ms.load(Ordering::Relaxed), now_ms, patience_ms) {
            return false;
        }
        if self.looked_ms.load(Ordering::Relaxed) != now_ms {
            self.looked_ms.store(now_ms, Ordering::Relaxed);
            let blocked = crate::sys::thread_blocked(self.tid.load(Ordering::Relaxed));
            self.blocked
                .store(blocked.unwrap_or(true), Ordering::Relaxed);
        }
        self.blocked.load(Ordering::Relaxed)
    }
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
    pub(super) batch: Vec<Entry>,
    pub(super) pages: Vec<BulkPage>,
}

impl InvokeLists {
    /// Lists longer than this are freed after their batch, not kept: a
    /// shard that once ran a huge backlog does not hold its lists for good.
    pub(super) const KEEP_AT_MOST: usize = 4096;

    /// Frees lists grown past [`KEEP_AT_MOST`](Self::KEEP_AT_MOST) (they
    /// are empty: `run_entries` drained them).
    pub(super) fn trim(&mut self) {
        if self.batch.capacity() > Self::KEEP_AT_MOST {
            self.batch = Vec::new();
        }
        if self.pages.capacity() > Self::KEEP_AT_MOST {
            self.pages = Vec::new();
        }
    }
}

impl Shard {
    pub(super) fn new() -> Self {
        Shard {
            state: Mutex::new(ShardState::default()),
            invoke: Mutex::new(InvokeLists::default()),
            count: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            running_bytes: AtomicUsize::new(0),
            ready_at: AtomicU64::new(u64::MAX),
            collected_ms: AtomicUsize::new(0),
            runner: CachePadded::new(RunnerMark::default()),
        }
    }

    /// Mirrors the shard's totals and its first readiness for lock-free
    /// queries.
    pub(super) fn publish(&self, st: &ShardState) {
        let (n, b) = st.totals();
        self.count.store(n, Ordering::Relaxed);
        self.bytes.store(b, Ordering::Relaxed);
        self.ready_at.store(st.ready_at(), Ordering::Relaxed);
    }

    /// Whether a thread called `Rcu::collect` on this shard within `window`.
    pub(super) fn collector_recent(&self, window: Duration) -> bool {
        let at = self.collected_ms.load(Ordering::Relaxed);
        at != 0 && epoch_ms().saturating_sub(at) as u128 <= window.as_millis()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::super::bulk::{capacity, drop_box, word, Kind, PageAllocator, SystemPageAllocator};
    use super::*;
    use std::sync::Arc;

    static DROPS: AtomicUsize = AtomicUsize::new(0);
    struct Counted;
    impl Drop for Counted {
        fn drop(&mut self) {
            DROPS.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A sealed page of `n` objects of 1,000 bytes each, `kind`, for
    /// grace period `cookie`.
    fn page(alloc: &Arc<dyn PageAllocator>, n: usize, kind: Kind, cookie: u64) -> BulkPage {
        let mut page = BulkPage::allocate(alloc).unwrap();
        for _ in 0..n {
            let p = word(Box::into_raw(Box::new(Counted)).cast::<()>());
            // SAFETY: from `Box::into_raw`, dropped once by the page.
            unsafe { page.push(p, drop_box::<Counted>, 1_000, kind) };
        }
        page.cookie = cookie;
        page
    }

    /// Ready plain pages of a few objects each come out merged (a drain
    /// then frees them at its usual steps, not one page a retire), up to
    /// `DRAIN_MERGE_BELOW` objects; a page of another kind, one not ready
    /// and one that does not fit stop the merge; the totals and the
    /// objects are kept, the emptied pages go to the spares.
    #[test]
    fn ready_plain_pages_of_few_objects_come_out_merged() {
        let alloc: Arc<dyn PageAllocator> = Arc::new(SystemPageAllocator);
        let mut st = ShardState::default();
        for _ in 0..10 {
            st.push_page(page(&alloc, 2, Kind::Plain, 4));
        }
        st.push_page(page(&alloc, 1, Kind::Drop, 4));
        st.push_page(page(&alloc, 2, Kind::Plain, 4));
        st.push_page(page(&alloc, 2, Kind::Plain, 8));
        st.push_page(page(&alloc, capacity() - 1, Kind::Plain, 8));
        let before = DROPS.load(Ordering::SeqCst);

        // 2 + 2 + ... until 16 objects: eight pages merged into one.
        let mut first = st.take_ready_plain(4).unwrap();
        assert_eq!((first.len(), first.bytes()), (16, 16_000));
        assert!(first.is_plain());
        assert_eq!(st.spare.len(), 7);
        assert_eq!(
            st.totals(),
            (
                4 + 1 + 2 + 2 + capacity() - 1,
                4_000 + 1_000 + 2_000 + 2_000 + (capacity() - 1) * 1_000
            )
        );
        // The last two plain pages, up to the page that drops elsewhere.
        let mut second = st.take_ready_plain(4).unwrap();
        assert_eq!(second.len(), 4);
        assert!(
            st.take_ready_plain(4).is_none(),
            "the front page is not plain"
        );
        let mut other = st.pop_front_page().unwrap();
        // Ready at 4, the page behind it only at 8: not merged.
        let mut alone = st.take_ready_plain(4).unwrap();
        assert_eq!(alone.len(), 2);
        // At 8: a page that does not fit is not merged.
        let mut small = st.take_ready_plain(8).unwrap();
        assert_eq!(small.len(), 2);
        assert_eq!(st.pages.len(), 1);
        let mut rest = st.pop_front_page().unwrap();
        assert_eq!(st.totals(), (0, 0));

        // Every object dropped once, by whichever page holds it (a page
        // dropped with objects on it would leak them).
        let mut n = 0;
        for p in [
            &mut first,
            &mut second,
            &mut other,
            &mut alone,
            &mut small,
            &mut rest,
        ] {
            n += p.len();
            assert_eq!(p.drop_objects(), 0);
        }
        assert_eq!(n, 10 * 2 + 1 + 2 + 2 + capacity() - 1);
        assert_eq!(DROPS.load(Ordering::SeqCst) - before, n);
    }
}
