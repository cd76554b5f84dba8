//! The callback engine's locks, held across `fork()` (see `crate::fork`).

use super::{BulkPage, Callbacks, ShardState};
use crate::sync::{lock, Locked};

/// Every shard's locks and the orphaned pages, in the order the engine
/// takes them (`invoke` before `state`). Fields drop in declaration order,
/// the reverse of the order they were taken in.
/// (Each `Locked` restores the thread's no-reclaim mark on drop, so the
/// reverse order also keeps the mark right.)
pub(crate) struct EngineLocks<'a> {
    pub(crate) orphans: Locked<'a, Vec<BulkPage>>,
    _states: Vec<Locked<'a, ShardState>>,
    _gp: Locked<'a, ()>,
    _invoke: Vec<Locked<'a, ()>>,
}

impl Callbacks {
    /// Takes every lock a thread can hold while queueing or running
    /// callbacks, so none is held by a thread that will not exist in a
    /// forked child. The domain's `gp_lock` is taken in between by the caller
    /// through `gp_lock`: a callback running under `invoke` may wait for
    /// a grace period, and a grace period never waits for a shard lock.
    pub(crate) fn lock_for_fork<'a>(
        &'a self,
        orphans: &'a crate::sync::Mutex<Vec<BulkPage>>,
        gp_lock: impl FnOnce() -> Locked<'a, ()>,
    ) -> EngineLocks<'a> {
        let invoke = self.shards.iter().map(|s| lock(&s.invoke)).collect();
        let gp = gp_lock();
        let states = self.shards.iter().map(|s| lock(&s.state)).collect();
        let orphans = lock(orphans);
        EngineLocks {
            orphans,
            _states: states,
            _gp: gp,
            _invoke: invoke,
        }
    }
}
