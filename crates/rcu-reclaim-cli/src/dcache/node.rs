//! What the table holds: entries, a bucket's chain of them, and the
//! published versions of a bucket ([`Node`]) that readers load and writers
//! retire.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::garbage::FREED;

/// One cached entry's payload (its key lives in the bucket's chain).
pub struct Entry {
    /// The cached bytes (a lookup reads the first).
    pub payload: Vec<u8>,
}

impl Entry {
    /// Bytes an entry in a chain keeps alive: the `Arc`'s allocation (two
    /// counts and the entry) and the payload buffer.
    pub fn bytes(&self) -> usize {
        2 * std::mem::size_of::<usize>() + std::mem::size_of::<Entry>() + self.payload.capacity()
    }
}

/// A bucket's entries, each with its key inline so a lookup compares keys
/// without touching the entries it passes over.
pub type Chain = Vec<(u64, Arc<Entry>)>;

/// liburcu's `struct rcu_head` (two pointers), embedded first in every
/// version so that liburcu's `call_rcu` can queue it without allocating, as
/// a C user of liburcu embeds it. The other backends leave it untouched.
#[repr(C)]
pub struct RcuHead {
    _next: *mut RcuHead,
    _func: *const (),
}

/// One published version of a bucket: what readers load and writers retire.
#[repr(C)]
pub struct Node {
    /// Must stay the first field (the liburcu backend casts back from it).
    /// Written by liburcu while readers may still hold `&Node`, hence the
    /// `UnsafeCell`.
    pub head: UnsafeCell<RcuHead>,
    /// The bucket's entries in this version.
    pub chain: Chain,
    /// Bytes this version alone keeps alive, set when it is retired (0 for
    /// a version freed without being retired, at the end of a run).
    retired_bytes: AtomicUsize,
}

// SAFETY: `head` holds no data of its own: liburcu links it into its
// call_rcu list once the node is retired, and the node is then owned by
// that list until freed; everything else in a node is Send + Sync.
unsafe impl Send for Node {}
// SAFETY: readers share nodes only through `&Node` and never touch `head`;
// only liburcu writes it, after the node was unlinked and retired.
unsafe impl Sync for Node {}

impl Node {
    /// A new, unpublished version holding `chain`.
    pub fn boxed(chain: Chain) -> *mut Node {
        Box::into_raw(Box::new(Node {
            head: UnsafeCell::new(RcuHead {
                _next: std::ptr::null_mut(),
                _func: std::ptr::null(),
            }),
            chain,
            retired_bytes: AtomicUsize::new(0),
        }))
    }

    /// Records the bytes the node frees (before it is handed to a backend).
    pub fn set_retired_bytes(&self, bytes: usize) {
        self.retired_bytes.store(bytes, Ordering::Relaxed);
    }

    /// The node's own bytes (the box and the chain's buffer).
    pub fn own_bytes(&self) -> usize {
        std::mem::size_of::<Node>()
            + self.chain.capacity() * std::mem::size_of::<(u64, Arc<Entry>)>()
    }

    /// Frees a node.
    ///
    /// # Safety
    /// `node` came from [`Node::boxed`], and no reader can reach it any more.
    pub unsafe fn free(node: *mut Node) {
        // SAFETY: the caller's contract.
        drop(unsafe { Box::from_raw(node) });
    }
}

/// A retired version books the bytes it alone keeps alive (set by
/// [`Node::set_retired_bytes`] before it is retired). Its drop bumps an
/// atomic counter and drops the chain (`Arc` decrements and, for the
/// entries only it held, their payload buffers): it takes no lock and waits
/// for nothing, so rcu-reclaim may free ready versions on the thread that
/// retires, where they were allocated.
impl rcu_reclaim::ReclaimSize for Node {
    const DROPS_ANYWHERE: bool = true;
    fn reclaim_size(&self) -> usize {
        self.retired_bytes.load(Ordering::Relaxed)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let bytes = *self.retired_bytes.get_mut();
        if bytes > 0 {
            FREED.fetch_add(bytes as u64, Ordering::Release);
        }
    }
}
