//! A segmented callback list, after the kernel's `rcu_segcblist`.
//!
//! Four segments in queue order:
//! * `DONE`: past their grace period, ready to invoke;
//! * `WAIT`: waiting for the grace period tagged on the segment;
//! * `NEXT_READY`: waiting for a later grace period (its tag);
//! * `NEXT`: newly queued, not yet assigned a grace period.
//!
//! `accelerate` assigns `NEXT` the grace period a snapshot taken now would
//! need; `advance` moves the segments whose grace period has completed to
//! `DONE`. Entries keep queue order through every move, so a callback queued
//! after another is never invoked before it — what `barrier` relies on.

use std::collections::VecDeque;

/// One queued callback, or a barrier's marker.
pub(crate) struct Entry {
    pub(crate) f: Box<dyn FnOnce() + Send>,
    pub(crate) bytes: usize,
    /// A barrier's marker: not a callback of the user's, not counted.
    marker: bool,
}

impl Entry {
    pub(crate) fn call(f: Box<dyn FnOnce() + Send>, bytes: usize) -> Entry {
        Entry {
            f,
            bytes,
            marker: false,
        }
    }

    /// A marker `barrier` queues behind everything on a shard (the kernel's
    /// `rcu_barrier` entrains one callback per CPU): once it has run, so
    /// has every entry queued on that shard before it, since entries keep
    /// queue order. Counted nowhere: `pending` and `invoked` are the user's.
    pub(crate) fn marker(f: Box<dyn FnOnce() + Send>) -> Entry {
        Entry {
            f,
            bytes: 0,
            marker: true,
        }
    }

    /// Callbacks this entry counts as: 1, or 0 for a marker.
    pub(crate) fn count(&self) -> usize {
        usize::from(!self.marker)
    }

    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    #[cfg(test)]
    pub(crate) fn invoke_for_test(self) {
        (self.f)();
    }
}

const DONE: usize = 0;
const WAIT: usize = 1;
const NEXT_READY: usize = 2;
const NEXT: usize = 3;

#[derive(Default)]
pub(crate) struct SegCbList {
    segs: [VecDeque<Entry>; 4],
    /// Grace-period sequence value each of `WAIT`/`NEXT_READY` waits for.
    tags: [u64; 4],
    counts: [usize; 4],
    bytes: [usize; 4],
}

impl SegCbList {
    pub(crate) fn enqueue(&mut self, e: Entry) {
        self.counts[NEXT] += e.count();
        self.bytes[NEXT] += e.bytes();
        self.segs[NEXT].push_back(e);
    }

    /// Moves all of segment `from` to the end of segment `to`.
    fn splice(&mut self, from: usize, to: usize) {
        if self.segs[to].is_empty() {
            self.segs.swap(from, to);
        } else {
            let moved = std::mem::take(&mut self.segs[from]);
            self.segs[to].extend(moved);
        }
        self.counts[to] += std::mem::take(&mut self.counts[from]);
        self.bytes[to] += std::mem::take(&mut self.bytes[from]);
    }

    /// Assigns the `NEXT` entries to the grace period `snap` (a snapshot
    /// taken after they were queued). Returns whether anything was assigned.
    pub(crate) fn accelerate(&mut self, snap: u64) -> bool {
        if self.segs[NEXT].is_empty() {
            return false;
        }
        if !self.segs[NEXT_READY].is_empty() {
            if self.tags[NEXT_READY] == snap {
                self.splice(NEXT, NEXT_READY);
            } else if self.segs[WAIT].is_empty() {
                self.splice(NEXT_READY, WAIT);
                self.tags[WAIT] = self.tags[NEXT_READY];
                self.splice(NEXT, NEXT_READY);
                self.tags[NEXT_READY] = snap;
            } else {
                // Both waiting segments are taken: wait for the later of the
                // two grace periods (always safe: waiting longer never frees early).
                self.splice(NEXT, NEXT_READY);
                self.tags[NEXT_READY] = self.tags[NEXT_READY].max(snap);
            }
        } else if !self.segs[WAIT].is_empty() && self.tags[WAIT] == snap {
            self.splice(NEXT, WAIT);
        } else {
            self.splice(NEXT, NEXT_READY);
            self.tags[NEXT_READY] = snap;
        }
        true
    }

    /// Moves every segment whose grace period has completed (`seq` reached
    /// its tag) to `DONE`.
    pub(crate) fn advance(&mut self, seq: u64) {
        if !self.segs[WAIT].is_empty() && seq >= self.tags[WAIT] {
            self.splice(WAIT, DONE);
        }
        if !self.segs[NEXT_READY].is_empty() {
            if seq >= self.tags[NEXT_READY] && self.segs[WAIT].is_empty() {
                self.splice(NEXT_READY, DONE);
            } else if self.segs[WAIT].is_empty() {
                self.splice(NEXT_READY, WAIT);
                self.tags[WAIT] = self.tags[NEXT_READY];
            }
        }
    }

    /// The latest grace period a waiting segment needs, if any.
    pub(crate) fn needed_gp(&self) -> Option<u64> {
        [WAIT, NEXT_READY]
            .into_iter()
            .filter(|&s| !self.segs[s].is_empty())
            .map(|s| self.tags[s])
            .max()
    }

    /// The earliest sequence value at which some waiting entry becomes
    /// ready: `Some(0)` if some already is, `None` if nothing waits.
    pub(crate) fn earliest_gp(&self) -> Option<u64> {
        if !self.segs[DONE].is_empty() {
            return Some(0);
        }
        [WAIT, NEXT_READY]
            .into_iter()
            .filter(|&s| !self.segs[s].is_empty())
            .map(|s| self.tags[s])
            .min()
    }

    /// Takes up to `max` entries (counted as callbacks) from the front of `DONE`.
    pub(crate) fn take_done(&mut self, max: usize, out: &mut Vec<Entry>) {
        let mut taken = 0;
        while taken < max {
            let Some(e) = self.segs[DONE].pop_front() else {
                break;
            };
            taken += e.count();
            self.counts[DONE] -= e.count();
            self.bytes[DONE] -= e.bytes();
            out.push(e);
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.counts.iter().sum()
    }

    pub(crate) fn bytes(&self) -> usize {
        self.bytes.iter().sum()
    }

    pub(crate) fn done_len(&self) -> usize {
        self.counts[DONE]
    }

    /// Callbacks whose grace period has completed at `seq` (in `DONE`, or
    /// in a waiting segment that `advance(seq)` would move there).
    pub(crate) fn ready_len(&self, seq: u64) -> usize {
        let waiting_ready = |s: usize| {
            if !self.segs[s].is_empty() && seq >= self.tags[s] {
                self.counts[s]
            } else {
                0
            }
        };
        self.counts[DONE] + waiting_ready(WAIT) + waiting_ready(NEXT_READY)
    }

    pub(crate) fn next_len(&self) -> usize {
        self.counts[NEXT]
    }

    pub(crate) fn next_bytes(&self) -> usize {
        self.bytes[NEXT]
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.segs.iter().all(VecDeque::is_empty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn entry(log: &Arc<Mutex<Vec<u32>>>, id: u32) -> Entry {
        let log = log.clone();
        Entry::call(Box::new(move || log.lock().unwrap().push(id)), 8)
    }

    fn run_done(l: &mut SegCbList) {
        let mut out = Vec::new();
        l.take_done(usize::MAX, &mut out);
        for e in out {
            e.invoke_for_test();
        }
    }

    #[test]
    fn entries_wait_for_their_grace_period_and_keep_order() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut l = SegCbList::default();
        l.enqueue(entry(&log, 1));
        l.enqueue(entry(&log, 2));
        assert!(l.accelerate(8)); // need seq 8
        l.enqueue(entry(&log, 3));
        assert!(l.accelerate(12)); // need seq 12
        assert_eq!(l.needed_gp(), Some(12));
        l.enqueue(entry(&log, 4)); // still in NEXT
        assert_eq!((l.len(), l.bytes(), l.next_len()), (4, 32, 1));
        l.advance(4);
        assert_eq!(l.done_len(), 0);
        l.advance(8);
        assert_eq!(l.done_len(), 2);
        run_done(&mut l);
        assert_eq!(*log.lock().unwrap(), vec![1, 2]);
        l.advance(12);
        run_done(&mut l);
        assert_eq!(*log.lock().unwrap(), vec![1, 2, 3]);
        // NEXT is never advanced without a grace-period assignment.
        l.advance(1000);
        assert_eq!(l.len(), 1);
        assert!(l.accelerate(1004));
        l.advance(1004);
        run_done(&mut l);
        assert_eq!(*log.lock().unwrap(), vec![1, 2, 3, 4]);
        assert!(l.is_empty());
        assert_eq!(l.bytes(), 0);
    }

    #[test]
    fn a_third_snapshot_merges_into_the_later_segment() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut l = SegCbList::default();
        l.enqueue(entry(&log, 1));
        l.accelerate(4);
        l.enqueue(entry(&log, 2));
        l.accelerate(8);
        l.enqueue(entry(&log, 3));
        l.accelerate(12); // both waiting segments in use: joins NEXT_READY, tag 12
        l.advance(8);
        run_done(&mut l);
        assert_eq!(*log.lock().unwrap(), vec![1], "entry 2 now waits for 12");
        l.advance(12);
        run_done(&mut l);
        assert_eq!(*log.lock().unwrap(), vec![1, 2, 3]);
    }

    #[test]
    fn same_snapshot_merges() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut l = SegCbList::default();
        l.enqueue(entry(&log, 1));
        l.accelerate(8);
        l.enqueue(entry(&log, 2));
        l.accelerate(8);
        assert_eq!(l.needed_gp(), Some(8));
        l.advance(8);
        assert_eq!(l.done_len(), 2);
    }

    #[test]
    fn take_done_respects_the_batch_limit() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut l = SegCbList::default();
        for i in 0..10 {
            l.enqueue(entry(&log, i));
        }
        l.accelerate(4);
        l.advance(4);
        let mut out = Vec::new();
        l.take_done(3, &mut out);
        assert_eq!(out.len(), 3);
        assert_eq!(l.len(), 7);
        for e in out {
            e.invoke_for_test();
        }
        assert_eq!(*log.lock().unwrap(), vec![0, 1, 2]);
        run_done(&mut l);
    }
}
