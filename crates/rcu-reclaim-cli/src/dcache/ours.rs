//! rcu-reclaim, the library this project builds, as the table's backend.
//! Readers take `Rcu::read_lock` (memb flavor: a load, a store and a
//! compiler fence); retired versions go into the thread's bulk page with
//! `defer_drop_sized`, and the domain's grace-period thread and callback
//! workers free them. `demo` runs the table on it; `bench` measures it
//! against the other schemes (and adds its reaction to a memory budget).

use rcu_reclaim::{Config, Rcu, ReadGuard};

use super::{Backend, Node};

/// A fresh domain per table. `INLINE`: the opt-in bench backend
/// `rcu-reclaim-inline`, a domain with `Config::retiring_thread_frees`
/// (the retiring thread frees its shard's ready pages itself).
pub struct Ours<const INLINE: bool = false> {
    rcu: Rcu,
}

/// The `rcu-reclaim-inline` backend.
pub type OursInline = Ours<true>;

impl<const INLINE: bool> Ours<INLINE> {
    /// A new domain (default settings but `INLINE`).
    pub fn new() -> Result<Ours<INLINE>, String> {
        Rcu::new(Config::new().retiring_thread_frees(INLINE))
            .map(|rcu| Ours { rcu })
            .map_err(|e| format!("cannot create an rcu-reclaim domain: {e}"))
    }

    /// The domain: for its statistics, pending bytes, and a `Reclaimer`.
    pub fn rcu(&self) -> &Rcu {
        &self.rcu
    }
}

impl<const INLINE: bool> Backend for Ours<INLINE> {
    const NAME: &'static str = if INLINE {
        "rcu-reclaim-inline"
    } else {
        "rcu-reclaim"
    };
    type Local<'a> = ();
    type Guard<'a> = ReadGuard<'a>;

    fn local(&self) {}

    #[inline]
    fn pin<'a>(&'a self, _: &'a ()) -> ReadGuard<'a> {
        self.rcu.read_lock()
    }

    unsafe fn retire(&self, _: &ReadGuard<'_>, node: *mut Node, bytes: usize) {
        // SAFETY: the caller guarantees `node` came from `Node::boxed`, is
        // unlinked and retired once; the domain drops it only after a grace
        // period, when no section that could have loaded it remains.
        let node = unsafe { Box::from_raw(node) };
        self.rcu.defer_drop_sized(node, bytes);
    }

    fn finish(self) {
        self.rcu.barrier();
    }
}
