//! Guard-less read-side sections, explicit thread registration and
//! grace-period numbers, for foreign-function interfaces (the liburcu C ABI
//! in `rcu-reclaim-urcu`), where a section begins and ends in separate calls.

use crate::domain::Rcu;

impl Rcu {
    /// Enters a read-side section without a guard; end it with
    /// [`read_unlock_raw`](Rcu::read_unlock_raw) on the same thread. Nests
    /// with guards and other raw sections, in any order. Prefer
    /// [`read_lock`](Rcu::read_lock) in Rust: a raw section that is never
    /// ended holds up every grace period until the thread exits (a leaked
    /// guard, for good: a reference read under it may outlive the thread).
    ///
    /// Raw sections are counted apart from guards, so no sequence of safe
    /// calls can end a [`ReadGuard`](crate::ReadGuard)'s section early.
    ///
    /// ```
    /// let rcu = rcu_reclaim::Rcu::global();
    /// rcu.read_lock_raw();
    /// assert!(rcu.in_read_section());
    /// assert!(rcu.read_unlock_raw());
    /// assert!(!rcu.in_read_section());
    /// ```
    #[inline]
    pub fn read_lock_raw(&self) {
        crate::guard::raw_enter(self);
    }

    /// Ends the innermost section entered with
    /// [`read_lock_raw`](Rcu::read_lock_raw) on this thread. Returns
    /// `false`, and does nothing, if the thread has no raw section open in
    /// this domain (an unbalanced unlock): in particular it never ends a
    /// section held by a [`ReadGuard`](crate::ReadGuard), which protects
    /// what it loaded until it is dropped.
    ///
    /// ```
    /// let rcu = rcu_reclaim::Rcu::global();
    /// assert!(!rcu.read_unlock_raw()); // nothing to end
    /// let guard = rcu.read_lock();
    /// assert!(!rcu.read_unlock_raw()); // the guard's section is not raw
    /// assert!(rcu.in_read_section());
    /// drop(guard);
    /// ```
    #[inline]
    pub fn read_unlock_raw(&self) -> bool {
        crate::guard::raw_exit(self)
    }

    /// Registers the calling thread as a reader now (it is otherwise
    /// registered by its first `read_lock`). Idempotent.
    ///
    /// ```
    /// let rcu = rcu_reclaim::Rcu::new(Default::default()).unwrap();
    /// rcu.register_thread();
    /// rcu.register_thread();
    /// assert_eq!(rcu.stats().registered_readers, 1);
    /// ```
    pub fn register_thread(&self) {
        self.current_slot();
    }

    /// Hands the calling thread's reader slot back now instead of at thread
    /// exit (its buffered deferred drops go to the domain). Returns `false`,
    /// and does nothing, inside a read-side section, and inside an RCU
    /// callback or deferred drop (a retire that frees ready values on its
    /// thread goes on using the thread's slot after them). A later
    /// `read_lock` registers the thread again.
    ///
    /// ```
    /// let rcu = rcu_reclaim::Rcu::new(Default::default()).unwrap();
    /// rcu.register_thread();
    /// assert!(rcu.unregister_thread());
    /// assert_eq!(rcu.stats().registered_readers, 0);
    /// ```
    pub fn unregister_thread(&self) -> bool {
        // A callback or destructor may run inside a call that holds this
        // thread's slot as its owner (a retire running ready values from
        // the thread's drain): handed back there, the slot could be claimed
        // by another thread while that call still uses it.
        if crate::callbacks::in_callback() {
            return false;
        }
        crate::reader::unregister(self.id(), self.registry())
    }

    /// Whether a full grace period has elapsed since a cookie whose
    /// [`seq`](crate::Cookie::seq) was `seq` was taken from this domain: the
    /// form of [`poll`](Rcu::poll) for callers that keep only the number
    /// (liburcu's `struct urcu_gp_poll_state`).
    ///
    /// ```
    /// let rcu = rcu_reclaim::Rcu::global();
    /// let seq = rcu.start_poll().seq();
    /// rcu.synchronize();
    /// assert!(rcu.poll_seq(seq));
    /// ```
    pub fn poll_seq(&self, seq: u64) -> bool {
        self.inner().gp.done(seq)
    }
}
