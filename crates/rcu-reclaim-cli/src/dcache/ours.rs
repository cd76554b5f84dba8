//! rcu-reclaim, the library this project builds, as the table's backend.
//! Readers take `Rcu::read_lock` (memb flavor: a load, a store and a
//! compiler fence); retired versions go into the thread's bulk page with
//! `defer_drop` (booking the bytes the version alone keeps alive); the
//! retiring thread frees ready versions (a node drops anywhere) and the
//! domain's grace-period thread and callback workers free the rest. `demo` runs the table on it; `bench` measures it
//! against the other schemes (and adds its reaction to a memory budget).

use rcu_reclaim::{Config, Flavor, QsbrGuard, QsbrThread, Rcu, ReadGuard};

use super::{Backend, Node};

/// How a backend frees: `DEFAULT` (workers), `INLINE` (the opt-in bench
/// backend `rcu-reclaim-inline`, a domain with
/// `Config::retiring_thread_frees`: the retiring thread frees its shard's
/// ready pages as it hands pages off) or `COLLECT` (`rcu-reclaim-collect`:
/// each bench thread calls `Rcu::collect` after every update, outside the
/// bucket's lock, as the crate's docs tell an update loop to).
pub type Mode = u8;
/// Workers free (the default domain).
pub const DEFAULT: Mode = 0;
/// `Config::retiring_thread_frees`.
pub const INLINE: Mode = 1;
/// `Rcu::collect` at the loop's safe point.
pub const COLLECT: Mode = 2;

/// A fresh domain per table, freeing as `MODE` says.
pub struct Ours<const MODE: Mode = DEFAULT> {
    rcu: Rcu,
}

/// The `rcu-reclaim-inline` backend.
pub type OursInline = Ours<INLINE>;
/// The `rcu-reclaim-collect` backend.
pub type OursCollect = Ours<COLLECT>;

impl<const MODE: Mode> Ours<MODE> {
    /// A new domain (default settings but `MODE`).
    pub fn new() -> Result<Ours<MODE>, String> {
        Rcu::new(Config::new().retiring_thread_frees(MODE == INLINE))
            .map(|rcu| Ours { rcu })
            .map_err(|e| format!("cannot create an rcu-reclaim domain: {e}"))
    }

    /// The domain: for its statistics, pending bytes, and a `Reclaimer`.
    pub fn rcu(&self) -> &Rcu {
        &self.rcu
    }
}

impl<const MODE: Mode> Backend for Ours<MODE> {
    const NAME: &'static str = match MODE {
        INLINE => "rcu-reclaim-inline",
        COLLECT => "rcu-reclaim-collect",
        _ => "rcu-reclaim",
    };
    type Local<'a> = ();
    type Guard<'a> = ReadGuard<'a>;

    fn local(&self) {}

    #[inline]
    fn pin<'a>(&'a self, _: &'a ()) -> ReadGuard<'a> {
        self.rcu.read_lock()
    }

    unsafe fn retire(&self, _: &ReadGuard<'_>, node: *mut Node, bytes: usize) {
        // Books `bytes` (the node's `ReclaimSize`, set by the table before
        // the retire) and lets the retiring thread free ready versions. By
        // pointer: readers may still hold the node, so no `Box` of it yet.
        // SAFETY: `node` is live until the grace period (caller's promise).
        debug_assert_eq!(
            rcu_reclaim::ReclaimSize::reclaim_size(unsafe { &*node }),
            bytes
        );
        // SAFETY: the caller guarantees `node` came from `Node::boxed`
        // (`Box::into_raw`), is unlinked and retired once; the domain drops
        // it only after a grace period, when no section that could have
        // loaded it remains.
        unsafe { self.rcu.defer_drop_raw(node) };
    }

    fn safe_point(&self, _: &()) {
        if MODE == COLLECT {
            self.rcu.collect();
        }
    }

    fn finish(self) {
        self.rcu.barrier();
    }
}

/// The `rcu-reclaim-qsbr` backend: a domain of the QSBR flavor. Each
/// thread's handle is its [`QsbrThread`] registration; a lookup's section
/// is its free guard (no instruction), and the thread reports a quiescent
/// state between operations ([`Backend::quiescent_state`]) and goes offline
/// for a budget's direct reclaim ([`Backend::offline_while`]). Retired
/// versions go into the thread's bulk page with `defer_drop`, as for
/// [`Ours`].
pub struct OursQsbr {
    rcu: Rcu,
}

impl OursQsbr {
    /// A new QSBR domain (default settings otherwise).
    pub fn new() -> Result<OursQsbr, String> {
        Rcu::new(Config::new().flavor(Flavor::Qsbr))
            .map(|rcu| OursQsbr { rcu })
            .map_err(|e| format!("cannot create an rcu-reclaim QSBR domain: {e}"))
    }

    /// The domain: for its statistics, pending bytes, and a `Reclaimer`.
    pub fn rcu(&self) -> &Rcu {
        &self.rcu
    }
}

impl Backend for OursQsbr {
    const NAME: &'static str = "rcu-reclaim-qsbr";
    type Local<'a> = QsbrThread;
    type Guard<'a> = QsbrGuard<'a>;

    fn local(&self) -> QsbrThread {
        self.rcu.register_qsbr_thread()
    }

    #[inline]
    fn pin<'a>(&'a self, local: &'a QsbrThread) -> QsbrGuard<'a> {
        local.read_lock()
    }

    unsafe fn retire(&self, _: &QsbrGuard<'_>, node: *mut Node, bytes: usize) {
        // Never waits, online: a failed page allocation queues a callback.
        // SAFETY: `node` is live until the grace period (caller's promise).
        debug_assert_eq!(
            rcu_reclaim::ReclaimSize::reclaim_size(unsafe { &*node }),
            bytes
        );
        // SAFETY: the caller guarantees `node` came from `Node::boxed`
        // (`Box::into_raw`), is unlinked and retired once; the domain drops
        // it only after a grace period, which waits for every online
        // thread's next quiescent state (none is reported while a guard is
        // alive: it borrows the registration, which `quiescent_state` takes
        // mutably).
        unsafe { self.rcu.defer_drop_raw(node) };
    }

    #[inline]
    fn quiescent_state(&self, local: &mut QsbrThread) {
        local.quiescent_state();
    }

    fn offline_while<R>(&self, local: &mut QsbrThread, f: impl FnOnce() -> R) -> R {
        local.offline_while(f)
    }

    fn finish(self) {
        // On the bench's main thread, which is not registered.
        self.rcu.barrier();
    }
}
