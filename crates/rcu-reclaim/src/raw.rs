//! Guard-less read-side sections, explicit thread registration and
//! grace-period numbers, for foreign-function interfaces (the liburcu C ABI
//! in `rcu-reclaim-urcu`), where a section begins and ends in separate calls;
//! and foreign reader counters, for C whose read side never calls in (built
//! with liburcu's `_LGPL_SOURCE`: see `foreign.rs`).

use std::sync::atomic::AtomicUsize;

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
    /// Registering allocates, so a thread on which a signal handler may
    /// take a section of this domain registers first, before the signal
    /// can arrive: a handler's first section on an unregistered thread
    /// that interrupted `malloc` would wait on `malloc`'s lock for good
    /// (see [Signal handlers](crate::locking#signal-handlers)).
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
    /// thread goes on using the thread's slot after them), and inside the
    /// domain's [`PageAllocator`](crate::pages::PageAllocator) called from
    /// a retire on this thread (which holds the slot's buffer meanwhile).
    /// A later `read_lock` registers the thread again.
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

/// Readers outside the library that follow liburcu's read-side protocols
/// (C built with `_LGPL_SOURCE`): see `foreign.rs`.
#[cfg(not(loom))]
impl Rcu {
    /// Hands the domain the grace-period word that foreign readers copy:
    /// on a memb or mb domain, liburcu's `urcu_memb_gp.ctr`, which the
    /// outermost inlined `rcu_read_lock` copies (see
    /// [`attach_foreign_reader`](Rcu::attach_foreign_reader)); on a QSBR
    /// domain, `urcu_qsbr_gp.ctr`, which an inlined quiescent state copies
    /// (see [`QsbrThread::attach_foreign_counter`](crate::QsbrThread::attach_foreign_counter)).
    /// From now on each grace period stores its epoch there, in that
    /// flavor's encoding. For C ABI drop-ins; a second call replaces the
    /// word.
    ///
    /// # Safety
    ///
    /// No one else writes `word` from now on.
    ///
    /// ```
    /// use std::sync::atomic::AtomicUsize;
    /// static GP_WORD: AtomicUsize = AtomicUsize::new(1);
    /// let rcu = rcu_reclaim::Rcu::new(Default::default()).unwrap();
    /// // SAFETY: only the domain writes GP_WORD.
    /// unsafe { rcu.publish_foreign_gp_word(&GP_WORD) };
    /// rcu.synchronize();
    /// ```
    pub unsafe fn publish_foreign_gp_word(&self, word: &'static AtomicUsize) {
        self.inner().gp.publish_foreign_word(word);
    }

    /// Hands the domain the futex word through which foreign readers wake
    /// a waiting grace period (liburcu's `urcu_memb_gp.futex`,
    /// `urcu_qsbr_gp.futex`): a grace period held up by a foreign counter
    /// then parks on it as liburcu's does (it stores -1, raises the
    /// counter's `waiting` flag for QSBR, and sleeps until a reader that
    /// sees -1 stores 0 and wakes it) instead of polling.
    ///
    /// # Safety
    ///
    /// Only the domain and readers following liburcu's wake-up protocol
    /// write `futex`.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicI32, AtomicUsize};
    /// static GP_WORD: AtomicUsize = AtomicUsize::new(1);
    /// static GP_FUTEX: AtomicI32 = AtomicI32::new(0);
    /// let rcu = rcu_reclaim::Rcu::new(Default::default()).unwrap();
    /// unsafe {
    ///     rcu.publish_foreign_gp_word(&GP_WORD);
    ///     rcu.publish_foreign_futex(&GP_FUTEX);
    /// }
    /// rcu.synchronize();
    /// ```
    pub unsafe fn publish_foreign_futex(&self, futex: &'static std::sync::atomic::AtomicI32) {
        self.registry().foreign_futex.store(
            std::ptr::from_ref(futex).cast_mut(),
            std::sync::atomic::Ordering::Release,
        );
    }

    /// Attaches `ctr`, a reader counter of the calling thread kept outside
    /// this library by code that follows liburcu's memb read-side protocol
    /// (C built with `_LGPL_SOURCE`: its `rcu_read_lock` copies the word
    /// given to [`publish_foreign_gp_word`](Rcu::publish_foreign_gp_word)
    /// into `ctr` at the outermost lock and counts nesting in its low
    /// half), to the thread's registration (registering the thread if it
    /// is not): every grace period then waits for the sections `ctr` says
    /// began before it (woken through the word given to
    /// [`publish_foreign_futex`](Rcu::publish_foreign_futex), else polling).
    /// Replaces a counter attached before.
    ///
    /// # Safety
    ///
    /// `ctr` stays valid until [`detach_foreign_reader`](Rcu::detach_foreign_reader)
    /// returns on this thread, or the thread's registration ends
    /// ([`unregister_thread`](Rcu::unregister_thread), or thread exit),
    /// whichever comes first: a thread-local of the calling thread will do.
    /// The domain's grace-period word was published
    /// ([`publish_foreign_gp_word`](Rcu::publish_foreign_gp_word)) before
    /// the counter's first section: only that keeps a memb domain off
    /// adaptive reader fences (`Config::adaptive_reader_fences`), whose
    /// grace periods skip the `membarrier` that a foreign reader's
    /// compiler barrier relies on.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// static GP_WORD: AtomicUsize = AtomicUsize::new(1);
    /// static READER: AtomicUsize = AtomicUsize::new(0);
    /// let rcu = rcu_reclaim::Rcu::new(Default::default()).unwrap();
    /// unsafe {
    ///     rcu.publish_foreign_gp_word(&GP_WORD);
    ///     rcu.attach_foreign_reader(&READER);
    /// }
    /// // A section, as liburcu's inlined rcu_read_lock/unlock run it:
    /// READER.store(GP_WORD.load(Ordering::Relaxed), Ordering::Relaxed);
    /// assert!(rcu.foreign_reader_in_section());
    /// READER.store(READER.load(Ordering::Relaxed) - 1, Ordering::Release);
    /// rcu.synchronize(); // waited for nothing: the section has ended
    /// rcu.detach_foreign_reader();
    /// ```
    pub unsafe fn attach_foreign_reader(&self, ctr: *const AtomicUsize) {
        let slot = self.current_slot();
        // SAFETY: `current_slot` returns this thread's live slot.
        unsafe { &(*slot).foreign }.attach(ctr, false, std::ptr::null());
    }

    /// Detaches the calling thread's foreign reader counter, if any, and
    /// waits until no grace period reads it; the thread's registration
    /// stays. Its registration's end (unregistering, or thread exit) does
    /// the same.
    ///
    /// ```
    /// let rcu = rcu_reclaim::Rcu::new(Default::default()).unwrap();
    /// rcu.detach_foreign_reader(); // none attached: nothing to do
    /// ```
    pub fn detach_foreign_reader(&self) {
        // SAFETY: this thread's slot, alive while it is registered.
        if let Some(slot) = unsafe { crate::reader::own_slot_in(self.id()).as_ref() } {
            slot.foreign.detach();
            self.registry().wake_foreign_writer();
        }
    }

    /// Whether the calling thread's foreign reader counter is inside a
    /// section (`false` if none is attached).
    ///
    /// ```
    /// let rcu = rcu_reclaim::Rcu::new(Default::default()).unwrap();
    /// assert!(!rcu.foreign_reader_in_section());
    /// ```
    pub fn foreign_reader_in_section(&self) -> bool {
        crate::reader::foreign_in_section(self.id())
    }
}
