//! A coarse process clock for page ages and the grace-period thread's
//! promises.

use std::time::Instant;

/// Milliseconds since the first call in this process (a coarse clock for
/// page ages; 0 is never returned, so 0 can mean "empty").
pub(crate) fn epoch_ms() -> usize {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as usize + 1
}
