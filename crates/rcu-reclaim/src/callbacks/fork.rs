//! The callback engine's locks, held across `fork()` (by `Rcu::prepare_fork`).

use super::headroom::HeadroomForkHeld;
use super::{BulkPage, Callbacks, InvokeLists, LocalBuffer, ShardState};
use crate::sync::{lock_for_fork, ForkHeld, LockedAll};

/// Every shard's locks, the forking thread's bulk-page buffer, the
/// orphaned pages and the garbage bound's (`headroom.rs`, a leaf, last),
/// in the order the engine takes them (`invoke` before
/// `gp_lock` before a buffer before `orphans` before `state`:
/// `flush_locals` hands orphaned pages to shards holding `orphans`). Fields
/// drop in declaration order, the reverse of the order they were taken in,
/// and each list of locks is released from its last lock to its first
/// (each `Locked` restores the thread's no-reclaim mark on drop, so only
/// the reverse order leaves the mark as it was before the fork).
pub(crate) struct EngineLocks<'a> {
    /// The garbage bound's lock, a leaf taken last.
    _headroom: HeadroomForkHeld<'a>,
    _states: LockedAll<'a, ShardState>,
    pub(crate) orphans: ForkHeld<'a, Vec<BulkPage>>,
    _own_buffer: ForkHeld<'a, ()>,
    _gp: ForkHeld<'a, ()>,
    _invoke: LockedAll<'a, InvokeLists>,
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
        gp_lock: impl FnOnce() -> ForkHeld<'a, ()>,
        own_buffer: &'a LocalBuffer,
    ) -> EngineLocks<'a> {
        let invoke = LockedAll::new(
            self.shards
                .iter()
                .map(|s| lock_for_fork(&s.invoke))
                .collect(),
        );
        let gp = gp_lock();
        let own_buffer = own_buffer.lock_for_fork();
        let orphans = lock_for_fork(orphans);
        let states = LockedAll::new(
            self.shards
                .iter()
                .map(|s| lock_for_fork(&s.state))
                .collect(),
        );
        let headroom = self.lock_headroom_for_fork();
        EngineLocks {
            _headroom: headroom,
            _states: states,
            orphans,
            _own_buffer: own_buffer,
            _gp: gp,
            _invoke: invoke,
        }
    }
}
