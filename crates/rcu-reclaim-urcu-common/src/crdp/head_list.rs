//! A batch's heads listed newest first, so that invoking them oldest first
//! reads each one ahead of its callback.
//!
//! `call_rcu` pushes heads on a stack (newest first), and liburcu invokes
//! them oldest first. Reversing the stack in place and then invoking it
//! walked a flood's batch twice, each time one cache miss per head, as
//! each `next` is known only once its head is read: under liburcu's
//! `test_urcu_hash` (4 readers and 4 writers on two cores) the `call_rcu`
//! threads spent their time in those two walks, fell behind, and the
//! backlog grew to 130 MB in 6 s, against 18 MB for liburcu-qsbr, whose
//! queue is first-in first-out. Listed, the batch is walked once along
//! `next`; the invocation then goes down the list and asks for each head
//! [`AHEAD`] heads before its callback runs.

use super::*;

/// How many heads ahead of its callback the invocation asks for a head.
const AHEAD: usize = 16;

/// The longest list kept between batches (8 bytes a head): a longer one,
/// for a flood's batch, is given back after it.
const KEEP: usize = 4096;

/// A batch's heads, newest first (empty between batches, its room kept).
#[derive(Default)]
pub(super) struct HeadList(Vec<*mut RcuHead>);

// SAFETY: it holds heads only from `collect` to the end of
// `invoke_oldest_first`, under the crdp's `batch` lock; like a `Chain`'s,
// they are handed from the queueing thread to the invoking one, never used
// by two threads at once.
unsafe impl Send for HeadList {}

impl HeadList {
    /// Lists the chain from `newest` along `next`; returns how many heads
    /// it holds. `None`, the list left empty (with no more room than
    /// [`KEEP`]), if the chain runs into a cycle
    /// (a head queued twice: see `cut_cycle`) or the list cannot grow.
    ///
    /// # Safety
    /// The chain is the caller's alone and every head of it is valid.
    pub(super) unsafe fn collect(&mut self, newest: *mut RcuHead) -> Option<u64> {
        self.0.clear();
        let (mut cur, mut cycle) = (newest, CycleCheck::new(newest));
        while !cur.is_null() {
            if self.0.len() == self.0.capacity()
                && self.0.try_reserve(self.0.len().max(64)).is_err()
            {
                self.empty();
                return None;
            }
            self.0.push(cur);
            // SAFETY: per the contract.
            cur = unsafe { (*cur).next };
            if cycle.came_back(cur) {
                // What it grew to for this chain is given back, as after a
                // listed batch: the batch goes on without the list.
                self.empty();
                return None;
            }
        }
        Some(self.0.len() as u64)
    }

    /// Invokes the listed heads oldest first, each once, counting each in
    /// `invoked` before its callback; leaves the list empty.
    ///
    /// # Safety
    /// The listed heads are the caller's alone and each is valid until
    /// invoked (the C caller's promise).
    pub(super) unsafe fn invoke_oldest_first(&mut self, invoked: &AtomicU64) {
        let mut n = invoked.load(Ordering::Relaxed);
        for i in (0..self.0.len()).rev() {
            if let Some(ahead) = i.checked_sub(AHEAD) {
                prefetch(self.0[ahead]);
            }
            // Before each callback (a plain store: only one invoker at a
            // time, under `batch`), for `push_back`'s stall check.
            n += 1;
            invoked.store(n, Ordering::Relaxed);
            let head = self.0[i];
            // SAFETY: per the contract; `func` runs exactly once, here, and
            // may free the head, which is not read after.
            unsafe {
                if let Some(f) = (*head).func {
                    f(head);
                }
            }
        }
        self.empty();
    }

    /// Empties the list, giving back the room a flood's batch grew it to
    /// past [`KEEP`].
    fn empty(&mut self) {
        self.0.clear();
        if self.0.capacity() > KEEP {
            self.0.shrink_to(KEEP);
        }
    }

    /// Whether the list is empty, keeping no more room than [`KEEP`].
    #[cfg(test)]
    pub(super) fn is_empty_keeping_at_most_its_room(&self) -> bool {
        self.0.is_empty() && self.0.capacity() <= KEEP
    }
}

/// Asks for the cache line of `head` (a hint: nothing where the target has
/// no stable prefetch instruction).
#[inline(always)]
fn prefetch(head: *const RcuHead) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint; it never faults, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(head.cast())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = head;
}
