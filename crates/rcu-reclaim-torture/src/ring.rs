//! The ring of torture elements (the kernel's `rcu_tortures[]` and its
//! freelist): a fixed pool, one element current at a time, every retired
//! element walking down a pipe of [`PIPE_LEN`] stages, one per grace period,
//! before it goes back on the freelist.
//!
//! The pool is never freed while the run lasts, so a reader that is handed
//! an element too early reads valid memory and the checks below catch it,
//! instead of undefined behaviour: `mbtest` is zero on a free element, and
//! `check` is `!version` on a fully initialised one.

use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::lock;

use super::PIPE_LEN;

/// Written over `check` when an element is freed.
const POISON: u64 = 0x6b6b_6b6b_6b6b_6b6b;

/// One element of the ring, alone on its cache line.
#[repr(align(64))]
pub(crate) struct Element {
    /// Stages walked since removal (0 while current; 1 once removed; +1 per
    /// grace period after that).
    pub(crate) pipe: AtomicUsize,
    /// 1 while allocated, 0 while on the freelist.
    pub(crate) mbtest: AtomicU32,
    pub(crate) version: AtomicU64,
    /// `!version` once initialised; `POISON` once freed.
    pub(crate) check: AtomicU64,
}

impl Element {
    fn free() -> Self {
        Element {
            pipe: AtomicUsize::new(0),
            mbtest: AtomicU32::new(0),
            version: AtomicU64::new(0),
            check: AtomicU64::new(POISON),
        }
    }

    /// Whether a reader sees a fully initialised, allocated element.
    #[inline]
    pub(crate) fn intact(&self) -> bool {
        self.mbtest.load(Ordering::Relaxed) != 0
            && self.check.load(Ordering::Relaxed) == !self.version.load(Ordering::Relaxed)
    }
}

/// The pool, its freelist and the writer-side pipe counters.
pub(crate) struct Ring {
    elems: Box<[Element]>,
    free: Mutex<Vec<usize>>,
    /// The element readers load (always a member of `elems`).
    pub(crate) current: AtomicPtr<Element>,
    /// Elements that reached stage `i` (the "Free-Block Circulation" line).
    wcount: [AtomicU64; PIPE_LEN + 1],
    pub(crate) allocated: AtomicU64,
    pub(crate) freed: AtomicU64,
    /// Allocations that found the freelist empty.
    pub(crate) alloc_failures: AtomicU64,
    /// Elements freed twice, advanced after being freed, or found in use on
    /// the freelist.
    pub(crate) circulation_errors: AtomicU64,
    next_version: AtomicU64,
}

impl Ring {
    /// A pool of `size` (at least 2) elements; element 0 is current.
    pub(crate) fn new(size: usize) -> Ring {
        let elems: Box<[Element]> = (0..size.max(2)).map(|_| Element::free()).collect();
        let ring = Ring {
            free: Mutex::new((1..elems.len()).rev().collect()),
            current: AtomicPtr::new(std::ptr::null_mut()),
            elems,
            wcount: std::array::from_fn(|_| AtomicU64::new(0)),
            allocated: AtomicU64::new(0),
            freed: AtomicU64::new(0),
            alloc_failures: AtomicU64::new(0),
            circulation_errors: AtomicU64::new(0),
            next_version: AtomicU64::new(1),
        };
        ring.init(0);
        let first = std::ptr::from_ref(&ring.elems[0]).cast_mut();
        ring.current.store(first, Ordering::Release);
        ring
    }

    pub(crate) fn size(&self) -> usize {
        self.elems.len()
    }

    #[cfg(test)]
    pub(crate) fn elem(&self, idx: usize) -> &Element {
        &self.elems[idx]
    }

    fn index_of(&self, e: *const Element) -> usize {
        // SAFETY: every pointer handed out by the ring points into `elems`.
        let off = unsafe { e.offset_from(self.elems.as_ptr()) };
        usize::try_from(off).expect("element of this ring")
    }

    fn error(&self) {
        self.circulation_errors.fetch_add(1, Ordering::Relaxed);
    }

    fn init(&self, idx: usize) {
        let e = &self.elems[idx];
        if e.mbtest.load(Ordering::Relaxed) != 0 {
            self.error();
        }
        let v = self.next_version.fetch_add(1, Ordering::Relaxed);
        e.pipe.store(0, Ordering::Relaxed);
        e.version.store(v, Ordering::Relaxed);
        e.check.store(!v, Ordering::Relaxed);
        e.mbtest.store(1, Ordering::Relaxed);
    }

    /// A fresh element off the freelist, initialised but not yet published.
    pub(crate) fn alloc(&self) -> Option<usize> {
        let Some(idx) = lock(&self.free).pop() else {
            self.alloc_failures.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        self.init(idx);
        self.allocated.fetch_add(1, Ordering::Relaxed);
        Some(idx)
    }

    /// Makes `idx` current and retires the element it replaces (its first
    /// stage, taken at once as in the kernel); returns the retired index.
    pub(crate) fn publish(&self, idx: usize) -> usize {
        let new = std::ptr::from_ref(&self.elems[idx]).cast_mut();
        // Release: the initialisation above is visible to a reader that
        // loads the pointer (Acquire).
        let old = self.current.swap(new, Ordering::AcqRel);
        let old = self.index_of(old);
        self.advance(old);
        old
    }

    /// One stage of `idx`'s pipe (the kernel's `rcu_torture_pipe_update_one`):
    /// frees it at the end of the pipe and returns `true` then.
    pub(crate) fn advance(&self, idx: usize) -> bool {
        let e = &self.elems[idx];
        if e.mbtest.load(Ordering::Relaxed) == 0 {
            // Advanced after being freed: count it and leave it alone.
            self.error();
            return true;
        }
        let i = e.pipe.load(Ordering::Relaxed);
        self.wcount[i.min(PIPE_LEN)].fetch_add(1, Ordering::Relaxed);
        e.pipe.store(i + 1, Ordering::Relaxed);
        if i + 1 < PIPE_LEN {
            return false;
        }
        if e.mbtest.swap(0, Ordering::Relaxed) == 0 {
            self.error();
        }
        e.check.store(POISON, Ordering::Relaxed);
        self.freed.fetch_add(1, Ordering::Relaxed);
        lock(&self.free).push(idx);
        true
    }

    /// Elements on the freelist.
    pub(crate) fn free_count(&self) -> usize {
        lock(&self.free).len()
    }

    /// The "Free-Block Circulation" counts.
    pub(crate) fn circulation(&self) -> [u64; PIPE_LEN + 1] {
        std::array::from_fn(|i| self.wcount[i].load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_element_walks_the_pipe_and_comes_back() {
        let ring = Ring::new(4);
        assert_eq!(ring.free_count(), 3);
        let idx = ring.alloc().unwrap();
        let old = ring.publish(idx);
        assert_eq!(old, 0);
        assert_eq!(ring.elem(0).pipe.load(Ordering::Relaxed), 1);
        assert!(ring.elem(0).intact());
        for _ in 1..PIPE_LEN - 1 {
            assert!(!ring.advance(old));
        }
        assert!(ring.advance(old));
        assert!(!ring.elem(0).intact());
        assert_eq!(ring.free_count(), 3);
        let c = ring.circulation();
        assert!(c[..PIPE_LEN].iter().all(|&n| n == 1), "{c:?}");
        assert_eq!(c[PIPE_LEN], 0);
        assert_eq!(ring.circulation_errors.load(Ordering::Relaxed), 0);
        // A second walk of a freed element is caught.
        ring.advance(old);
        assert_eq!(ring.circulation_errors.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn an_empty_freelist_is_counted() {
        let ring = Ring::new(2);
        assert!(ring.alloc().is_some());
        assert!(ring.alloc().is_none());
        assert_eq!(ring.alloc_failures.load(Ordering::Relaxed), 1);
    }
}
