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
    /// The open reading as [`epoch_ms`] (0: not worked out yet). Apart
    /// from `READING`, whose every [`now`] copies it in and out.
    static READING_MS: Cell<usize> = const { Cell::new(0) };
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
            READING_MS.set(0);
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
        READING_MS.set(0);
    }
}

impl Drop for OneReading {
    fn drop(&mut self) {
        if self.outermost {
            READING.with(|r| r.set((false, None)));
            READING_MS.set(0);
        }
    }
}

/// While alive, [`now`] reads the clock at every call again, even inside a
/// [`OneReading`] opened further out (restored when this drops): for code
/// that may run long or wait (reclaim, entered from an allocation in a
/// retire's slow path), whose own pace must not see a frozen clock.
pub(crate) struct Suspended {
    saved: (bool, Option<Instant>),
    saved_ms: usize,
}

/// Suspends this thread's [`OneReading`], if one is open; see [`Suspended`].
pub(crate) fn suspend() -> Suspended {
    Suspended {
        saved: READING.with(|r| r.replace((false, None))),
        saved_ms: READING_MS.replace(0),
    }
}

impl Drop for Suspended {
    fn drop(&mut self) {
        READING.with(|r| r.set(self.saved));
        READING_MS.set(self.saved_ms);
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
/// page ages; 0 is never returned, so 0 can mean "empty"). Inside a
/// [`OneReading`], worked out once from its reading: a retire's slow path
/// asks for it four or five times (the fresh page, the drain, the kicks,
/// the fallback look), about 80 instructions each.
pub(crate) fn epoch_ms() -> usize {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    // Not under loom: its threads share one OS thread's locals.
    if cfg!(loom) || !READING.with(|r| r.get().0) {
        return ms_since(start, Instant::now());
    }
    match READING_MS.get() {
        0 => {
            let ms = ms_since(start, now());
            READING_MS.set(ms);
            ms
        }
        ms => ms,
    }
}

/// [`epoch_ms`] at `now`, the epoch being `start` (at least 1).
fn ms_since(start: Instant, now: Instant) -> usize {
    let d = now.saturating_duration_since(start);
    // `as_millis`, without its `u128`.
    (d.as_secs() as usize)
        .saturating_mul(1000)
        .saturating_add(d.subsec_millis() as usize)
        .saturating_add(1)
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
    fn epoch_ms_inside_a_reading_is_its_reading() {
        let before = epoch_ms();
        assert!(before >= 1);
        let reading = one_reading();
        let first = epoch_ms();
        assert!(first >= before);
        let at = now();
        std::thread::sleep(Duration::from_millis(3));
        assert_eq!(epoch_ms(), first, "worked out once per reading");
        assert_eq!(now(), at, "from the same reading as `now`");
        {
            let _s = suspend();
            assert!(epoch_ms() > first, "suspended: the clock afresh");
            let _nested = one_reading();
            assert!(epoch_ms() > first, "a reading opened inside is its own");
        }
        assert_eq!(epoch_ms(), first, "the outer reading is back");
        reading.refresh();
        let second = epoch_ms();
        assert!(second > first, "a refresh reads the clock again");
        drop(reading);
        std::thread::sleep(Duration::from_millis(2));
        assert!(epoch_ms() > second, "closed: fresh readings again");
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
