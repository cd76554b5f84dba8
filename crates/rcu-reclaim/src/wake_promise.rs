//! The grace-period thread's promise to look at the callback queues again by
//! a given time, which lets a thread that has just buffered work skip the
//! wake-up (a futex wake and a context switch) when the look is coming
//! anyway.
//!
//! The pairing is store-buffering with a `SeqCst` fence on each side:
//!
//! * the grace-period thread, before each look, clears the promise, fences,
//!   then reads the threads' buffers ([`WakePromise::clear_before_look`]);
//! * a thread that buffered work stores it, fences, then reads the promise
//!   ([`WakePromise::must_kick_for`]).
//!
//! So either the thread sees the promise cleared and kicks, or the look sees
//! the work. A promise it does see was made after an earlier look, and is
//! kept by a later one, which clears it first. The loom model below checks
//! both cases.

use std::sync::atomic::Ordering;

use crate::sync::{fence, AtomicU64};

/// When the grace-period thread will next look without being asked, on the
/// `epoch_ms` clock, or 0 while no promise stands (it is looking, or sleeps
/// with no deadline).
#[derive(Default)]
pub(crate) struct WakePromise {
    by_ms: AtomicU64,
}

impl WakePromise {
    /// Called by the grace-period thread before each look: no promise
    /// stands until the next `promise`.
    pub(crate) fn clear_before_look(&self) {
        self.by_ms.store(0, Ordering::SeqCst);
        fence(Ordering::SeqCst);
    }

    /// Called by the grace-period thread after a look: it will look again
    /// by `by_ms` (the end of its timed sleep, or now when it runs a grace
    /// period and looks again right after).
    pub(crate) fn promise(&self, by_ms: u64) {
        self.by_ms.store(by_ms.max(1), Ordering::SeqCst);
    }

    /// Whether a thread that has just published work due at `due_ms` must
    /// kick the grace-period thread: unless a promise to look by then
    /// stands. Call after publishing the work.
    pub(crate) fn must_kick_for(&self, due_ms: u64) -> bool {
        fence(Ordering::SeqCst);
        let by = self.by_ms.load(Ordering::SeqCst);
        by == 0 || by > due_ms
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_promise_covers_work_due_at_or_after_it() {
        let p = WakePromise::default();
        assert!(p.must_kick_for(10), "no promise yet");
        p.promise(10);
        assert!(!p.must_kick_for(10));
        assert!(!p.must_kick_for(11));
        assert!(p.must_kick_for(9), "due before the promised look");
        p.clear_before_look();
        assert!(p.must_kick_for(100));
    }
}

/// Loom models of the pairing, with the threads' buffer as one flag.
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::atomic::AtomicBool;
    use loom::sync::Arc;
    use loom::thread;

    /// A thread that publishes work due at 10 and returns whether it kicked.
    fn publisher(promise: &Arc<WakePromise>, work: &Arc<AtomicBool>) -> thread::JoinHandle<bool> {
        let (p, w) = (promise.clone(), work.clone());
        thread::spawn(move || {
            w.store(true, Ordering::Relaxed);
            p.must_kick_for(10)
        })
    }

    /// The grace-period thread sleeps on a promise due before the work;
    /// it wakes (timer) and looks while a thread publishes work. Either the
    /// look sees the work or the thread kicks.
    #[test]
    fn a_look_after_a_promise_sees_the_work_or_the_thread_kicks() {
        loom::model(|| {
            let promise = Arc::new(WakePromise::default());
            let work = Arc::new(AtomicBool::new(false));
            promise.promise(5);
            let publisher = publisher(&promise, &work);
            // The look on a thread of its own (racing from the model's main
            // thread, a side meets the other in few interleavings).
            let (p, w) = (promise.clone(), work.clone());
            let look = thread::spawn(move || {
                p.clear_before_look();
                w.load(Ordering::Relaxed)
            });
            let seen = look.join().unwrap();
            let kicked = publisher.join().unwrap();
            assert!(seen || kicked, "work published but neither seen nor kicked");
        });
    }

    /// A whole cycle: look, promise, sleep, look again. The work must be
    /// seen by one of the looks, or kicked.
    #[test]
    fn work_is_seen_by_some_look_or_kicked() {
        loom::model(|| {
            let promise = Arc::new(WakePromise::default());
            let work = Arc::new(AtomicBool::new(false));
            let publisher = publisher(&promise, &work);
            let (p, w) = (promise.clone(), work.clone());
            let looks = thread::spawn(move || {
                p.clear_before_look();
                let first = w.load(Ordering::Relaxed);
                p.promise(7); // sleeps until 7, before the work's due time
                p.clear_before_look();
                (first, w.load(Ordering::Relaxed))
            });
            let (first, second) = looks.join().unwrap();
            let kicked = publisher.join().unwrap();
            assert!(first || second || kicked, "the work was lost");
        });
    }
}
