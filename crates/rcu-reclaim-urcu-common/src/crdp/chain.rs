//! A chain of `call_rcu` heads, linked through the heads themselves.

use super::*;

/// A chain of heads linked through `next`, newest first, with its count
/// and the bytes its sized calls declared. The C caller owns each head and
/// promised (by calling `call_rcu`) to leave it alone until `func` runs.
pub(crate) struct Chain {
    pub(super) newest: *mut RcuHead,
    pub(super) oldest: *mut RcuHead,
    pub(crate) len: u64,
    pub(crate) bytes: usize,
}
// SAFETY: the heads are handed from the queueing thread to the thread that
// invokes them, never used by two threads at once.
unsafe impl Send for Chain {}

impl Chain {
    pub(super) fn is_empty(&self) -> bool {
        self.newest.is_null()
    }
}

/// Reverses the chain whose newest head is `newest` into oldest-first
/// order (as liburcu invokes them); returns its oldest head and its
/// length. One pass over heads a flood's batch finds cold; the invoking
/// pass is the only other.
///
/// # Safety
/// The chain is the caller's alone and every head of it is valid.
pub(super) unsafe fn reverse_counting(newest: *mut RcuHead) -> (*mut RcuHead, u64) {
    let mut len = 0;
    let mut prev = ptr::null_mut();
    let mut cur = newest;
    while !cur.is_null() {
        len += 1;
        // SAFETY: per the contract.
        unsafe {
            let next = (*cur).next;
            (*cur).next = prev;
            prev = cur;
            cur = next;
        }
    }
    (prev, len)
}

/// The chain whose newest head is `newest` (NULL: empty), counted, with
/// the `bytes` its heads declared.
///
/// # Safety
/// The chain is the caller's alone and every head of it is valid.
pub(super) unsafe fn chain_of(newest: *mut RcuHead, bytes: usize) -> Chain {
    let (mut len, mut oldest, mut cur) = (0, ptr::null_mut(), newest);
    let mut cycle = CycleCheck::new(newest);
    while !cur.is_null() {
        len += 1;
        oldest = cur;
        // SAFETY: per the contract.
        cur = unsafe { (*cur).next };
        if cycle.came_back(cur) {
            // SAFETY: per the contract; the chain is the caller's.
            let (last, distinct) = unsafe { cut_cycle(newest) };
            report_queued_twice(last);
            return Chain {
                newest,
                oldest: last,
                len: distinct,
                bytes,
            };
        }
    }
    Chain {
        newest,
        oldest,
        len,
        bytes,
    }
}

/// Brent's cycle check along a chain: `mark` is the head at the last
/// power of two, and a walk that comes back to it is going round a cycle
/// (a head queued twice, see `cut_cycle`), which it would for ever.
pub(super) struct CycleCheck {
    mark: *mut RcuHead,
    power: u64,
    since: u64,
}

impl CycleCheck {
    /// A check of the walk that starts at `first`.
    pub(super) fn new(first: *mut RcuHead) -> Self {
        CycleCheck {
            mark: first,
            power: 1,
            since: 0,
        }
    }

    /// Whether the walk, one step on to `cur`, came back to a head it had
    /// passed: it runs into a cycle.
    pub(super) fn came_back(&mut self, cur: *mut RcuHead) -> bool {
        self.since += 1;
        if cur == self.mark {
            return true;
        }
        if self.since == self.power {
            (self.mark, self.power, self.since) = (cur, self.power * 2, 0);
        }
        false
    }
}

/// The next head of `h`.
///
/// # Safety
/// `h` is a valid head of a chain the caller owns.
unsafe fn next_of(h: *mut RcuHead) -> *mut RcuHead {
    // SAFETY: per the contract.
    unsafe { (*h).next }
}

/// Cuts the cycle that the chain from `first` runs into, so that the chain
/// holds each of its heads once, and returns its last head (the one whose
/// `next` it cleared) and how many heads it holds.
///
/// A head queued twice before its callback ran (`call_rcu` with a head
/// already queued) makes one: its second push links it above heads pushed
/// after its first, whose oldest links back to it. (Its first `next`, the
/// heads queued before it, is lost: they never run, as with liburcu,
/// whose queue loses heads silently too.) A chain with no cycle is only
/// counted.
///
/// # Safety
/// The chain is the caller's alone and each of its heads is valid.
pub(super) unsafe fn cut_cycle(first: *mut RcuHead) -> (*mut RcuHead, u64) {
    // SAFETY (every `next_of` below): the heads are reached along the
    // chain, which the caller owns.
    // Brent: the cycle's length, `lambda`.
    let (mut power, mut lambda) = (1u64, 1u64);
    let (mut tortoise, mut hare) = (first, unsafe { next_of(first) });
    while tortoise != hare {
        if hare.is_null() {
            return unsafe { chain_end(first) };
        }
        if power == lambda {
            (tortoise, power, lambda) = (hare, power * 2, 0);
        }
        hare = unsafe { next_of(hare) };
        lambda += 1;
    }
    // The cycle's first head, `mu` heads from `first`: walk two pointers
    // `lambda` apart until they meet there.
    let (mut start, mut ahead) = (first, first);
    for _ in 0..lambda {
        ahead = unsafe { next_of(ahead) };
    }
    let mut mu = 0;
    while start != ahead {
        (start, ahead, mu) = unsafe { (next_of(start), next_of(ahead), mu + 1) };
    }
    let mut last = start;
    for _ in 1..lambda {
        last = unsafe { next_of(last) };
    }
    // SAFETY: as above.
    unsafe { (*last).next = ptr::null_mut() };
    (last, mu + lambda)
}

/// The last head of the chain from `first` (no cycle), and its length.
///
/// # Safety
/// As [`cut_cycle`].
unsafe fn chain_end(first: *mut RcuHead) -> (*mut RcuHead, u64) {
    let (mut last, mut len, mut cur) = (first, 0, first);
    while !cur.is_null() {
        (last, len) = (cur, len + 1);
        // SAFETY: per the contract.
        cur = unsafe { next_of(cur) };
    }
    (last, len)
}

/// Says, once per process, that a queue of `call_rcu` heads had a cycle:
/// a head queued twice (`head`: the cycle's last, near that head).
pub(super) fn report_queued_twice(head: *mut RcuHead) {
    static SAID: AtomicBool = AtomicBool::new(false);
    if !SAID.swap(true, Ordering::Relaxed) {
        eprintln!(
            "[error] rcu-reclaim-urcu: an rcu_head was passed to call_rcu() again before its \
             callback ran (near head {head:p}): the call_rcu queue it went into was corrupted. \
             Each head still reachable in it runs once, but the heads queued there before that \
             head's first call_rcu() may never run, and rcu_barrier() then stops waiting for \
             that queue once it is empty. Pass a head to call_rcu() again only once its \
             callback has started"
        );
    }
}

/// Invokes a chain from `oldest` along `next`, each head once.
///
/// # Safety
/// The chain is the caller's alone and every head of it is valid until
/// invoked (the C caller's promise).
pub(super) unsafe fn invoke_oldest_first(oldest: *mut RcuHead, invoked: &AtomicU64) {
    let mut cur = oldest;
    let mut n = invoked.load(Ordering::Relaxed);
    while !cur.is_null() {
        // Before each callback (a plain store: only one invoker at a
        // time, under `batch`), for `push_back`'s stall check.
        n += 1;
        invoked.store(n, Ordering::Relaxed);
        // SAFETY: per the contract; `next` is read before `func`, which may
        // free the head, runs exactly once, here.
        unsafe {
            let head = cur;
            cur = (*head).next;
            if let Some(f) = (*head).func {
                f(head);
            }
        }
    }
}
