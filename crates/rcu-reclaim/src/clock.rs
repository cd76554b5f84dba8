//! The engine's clock: a coarse process clock for page ages and the
//! grace-period thread's promises, and one reading shared by the calls of
//! a retire's slow path.
//!
//! A retire that hands off its page asks the time of several parts (the
//! page's age, the shard's last hand-off, the retiring thread's grace-period
//! pace, the drain's age, the worker's window): five or six clock reads of
//! 20–40 ns each, for a path that never waits and lasts about a microsecond.
//! Inside a [`OneReading`] the first [`now`] reads the clock and the others
//! reuse it (a cache churning 32 KiB values spent 1.7 % of its time in the
//! clock, mostly there).

use std::cell::Cell;
use std::time::Instant;

std::thread_local! {
    /// Whether a [`OneReading`] is open on this thread, and its reading once
    /// taken. No destructor: usable from other thread-locals' destructors.
    static READING: Cell<(bool, Option<Instant>)> = const { Cell::new((false, None)) };
}

/// While alive, [`now`] on this thread returns one reading of the clock
/// (taken at its first call). Open it only around code that never waits
/// and runs no user code (a destructor or callback could run long); nested
/// ones share the outermost's reading.
pub(crate) struct OneReading {
    outermost: bool,
}

/// Opens a [`OneReading`] on this thread.
pub(crate) fn one_reading() -> OneReading {
    let outermost = READING.with(|r| {
        let (open, _) = r.get();
        if !open {
            r.set((true, None));
        }
        !open
    });
    OneReading { outermost }
}

impl OneReading {
    /// Forgets the reading taken so far (before code that may run long):
    /// the next [`now`] reads the clock again.
    pub(crate) fn refresh(&self) {
        READING.with(|r| r.set((true, None)));
    }
}

impl Drop for OneReading {
    fn drop(&mut self) {
        if self.outermost {
            READING.with(|r| r.set((false, None)));
        }
    }
}

/// While alive, [`now`] reads the clock at every call again, even inside a
/// [`OneReading`] opened further out (restored when this drops): for code
/// that may run long or wait (reclaim, entered from an allocation in a
/// retire's slow path), whose own pace must not see a frozen clock.
pub(crate) struct Suspended {
    saved: (bool, Option<Instant>),
}

/// Suspends this thread's [`OneReading`], if one is open; see [`Suspended`].
pub(crate) fn suspend() -> Suspended {
    Suspended {
        saved: READING.with(|r| r.replace((false, None))),
    }
}

impl Drop for Suspended {
    fn drop(&mut self) {
        READING.with(|r| r.set(self.saved));
    }
}

/// The time: a fresh reading, or inside a [`OneReading`] its one reading.
pub(crate) fn now() -> Instant {
    // Not under loom: its threads share one OS thread's locals.
    if cfg!(loom) {
        return Instant::now();
    }
    READING.with(|r| match r.get() {
        (true, Some(t)) => t,
        (true, None) => {
            let t = Instant::now();
            r.set((true, Some(t)));
            t
        }
        (false, _) => Instant::now(),
    })
}

/// How long ago `since` was, by [`now`] (0 if `since` is later than a
/// reading taken before it).
pub(crate) fn elapsed(since: Instant) -> std::time::Duration {
    now().saturating_duration_since(since)
}

/// Milliseconds since the first call in this process (a coarse clock for
/// page ages; 0 is never returned, so 0 can mean "empty").
pub(crate) fn epoch_ms() -> usize {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    elapsed(*START.get_or_init(Instant::now)).as_millis() as usize + 1
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn one_reading_is_shared_until_it_ends_or_is_refreshed() {
        let before = now();
        std::thread::sleep(Duration::from_millis(2));
        assert!(
            now() > before,
            "outside a reading each call reads the clock"
        );
        let reading = one_reading();
        let first = now();
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(now(), first);
        {
            let _inner = one_reading();
            assert_eq!(now(), first, "a nested reading shares the outer one");
        }
        assert_eq!(now(), first, "the nested one's end leaves it open");
        reading.refresh();
        let second = now();
        assert!(second > first);
        drop(reading);
        std::thread::sleep(Duration::from_millis(2));
        assert!(now() > second, "closed: fresh readings again");
        assert_eq!(elapsed(now() + Duration::from_secs(1)), Duration::ZERO);
    }

    #[test]
    fn a_suspension_reads_afresh_and_restores_the_reading() {
        let _reading = one_reading();
        let first = now();
        std::thread::sleep(Duration::from_millis(2));
        {
            let _s = suspend();
            let a = now();
            assert!(a > first);
            std::thread::sleep(Duration::from_millis(2));
            assert!(now() > a, "suspended: every call reads the clock");
            let _nested = one_reading();
            let b = now();
            assert_eq!(now(), b, "a reading opened inside is its own");
        }
        assert_eq!(now(), first, "the outer reading is back");
    }
}
