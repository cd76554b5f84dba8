//! The lists an invoke fills with what it takes from a shard (callbacks,
//! pages), kept per thread and reused rather than freed after each batch.
//!
//! A list of 80 pages is 2 KiB, over glibc's per-thread cache sizes, and
//! grown last it sits at the top of the heap: freeing it merged it into
//! the top chunk, and a free that leaves a free chunk of 64 KiB or more
//! makes glibc consolidate every fast-bin chunk first. Those chunks are
//! the batch's objects the invoke has just freed, so each barrier or
//! worker batch paid for merging thousands of them, and the allocations
//! after it came from the merged chunk on glibc's slow path instead of
//! its fast bins (`defer_profile` under callgrind: `malloc_consolidate`,
//! 19 of its 20 calls, came from dropping the page list).

use std::cell::Cell;

use super::bulk::BulkPage;
use super::segcblist::Entry;

/// Lists longer than this are freed, not kept: a thread that once invoked a
/// huge backlog does not hold its list for good.
const KEEP_AT_MOST: usize = 4096;

/// An invoke's lists: taken from the thread's spares, handed back empty.
#[derive(Default)]
pub(crate) struct Scratch {
    pub(crate) batch: Vec<Entry>,
    pub(crate) pages: Vec<BulkPage>,
}

#[cfg(not(loom))]
thread_local! {
    static SPARE: Cell<Option<Scratch>> = const { Cell::new(None) };
}

// Loom threads share one OS thread: per-thread state must be loom's.
#[cfg(loom)]
loom::thread_local! {
    static SPARE: Cell<Option<Scratch>> = Cell::new(None);
}

impl Scratch {
    /// This thread's spare lists (empty), or new ones if a caller up the
    /// stack (an invoke that runs a callback that invokes) holds them.
    pub(crate) fn take() -> Scratch {
        SPARE
            .try_with(Cell::take)
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    /// Keeps the lists (emptied by the invoke) for the thread's next one.
    pub(crate) fn give_back(mut self) {
        debug_assert!(self.batch.is_empty() && self.pages.is_empty());
        // Nothing is left in them; should something be, it is dropped here
        // as it would have been with the lists.
        self.batch.clear();
        self.pages.clear();
        if self.batch.capacity() > KEEP_AT_MOST || self.pages.capacity() > KEEP_AT_MOST {
            return;
        }
        // During the thread's exit the slot may be gone: then they are
        // simply freed.
        let _ = SPARE.try_with(|s| s.set(Some(self)));
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn an_invokes_lists_are_reused_by_the_next_one_on_the_thread() {
        let mut s = Scratch::take();
        s.pages.reserve(80);
        let ptr = s.pages.as_ptr();
        s.give_back();
        let again = Scratch::take();
        assert_eq!(again.pages.as_ptr(), ptr, "the same list came back");
        assert!(again.pages.capacity() >= 80);
        // Taken while a caller up the stack holds them: fresh lists.
        let nested = Scratch::take();
        assert_eq!(nested.pages.capacity(), 0);
        nested.give_back();
        again.give_back();
    }

    #[test]
    fn huge_lists_are_not_kept() {
        let mut s = Scratch::take();
        s.batch.reserve(KEEP_AT_MOST + 1);
        s.give_back();
        assert_eq!(Scratch::take().batch.capacity(), 0);
    }
}
