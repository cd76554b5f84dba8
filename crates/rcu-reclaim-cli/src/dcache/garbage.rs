//! The table's garbage counters: bytes retired, bytes of retired versions
//! freed, and the peak of their difference. Global, because a version's
//! `Drop` adds to them wherever its backend frees it; `bench` zeroes them
//! before each run (runs never overlap), `demo` reads RCU's own figure.

use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_utils::CachePadded;

/// Bytes retired by the table (the run in progress; runs never overlap).
pub static RETIRED: CachePadded<AtomicU64> = CachePadded::new(AtomicU64::new(0));
/// Bytes of retired versions that have been freed.
pub static FREED: CachePadded<AtomicU64> = CachePadded::new(AtomicU64::new(0));

/// The highest garbage seen right after a retire (where it peaks).
pub static PEAK_GARBAGE: CachePadded<AtomicU64> = CachePadded::new(AtomicU64::new(0));

/// Zeroes the counters for a new run.
pub fn reset_counters() {
    RETIRED.store(0, Ordering::SeqCst);
    FREED.store(0, Ordering::SeqCst);
    PEAK_GARBAGE.store(0, Ordering::SeqCst);
}

/// Bytes retired and not yet freed, now.
pub fn garbage_now() -> u64 {
    // FREED first: it never passes RETIRED, so reading it first keeps the
    // difference from going negative.
    let freed = FREED.load(Ordering::Acquire);
    RETIRED.load(Ordering::Acquire).saturating_sub(freed)
}
