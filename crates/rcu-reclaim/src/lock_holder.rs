//! Which thread holds a map's or cache's writer lock, so that a wait for
//! it in a forked child can tell a holder that does not exist there.
//!
//! `fork()` copies only the calling thread. A thread of the parent that
//! held an `RcuHashMap` stripe (or an `RcuCache` policy lock) at the fork
//! left it held for good in the child, and `Rcu::prepare_fork` does not
//! stop those writers (the domain does not know its maps). A child's
//! write to the same stripe waited for ever; in a child that
//! `ForkGuard::child` made ready it could not even give up, since a
//! closure of the child's own threads (a slow `get_or_insert_with`
//! loader) may hold a stripe as long.
//!
//! So each holder writes its thread's token (a number, unique in the
//! process, taken at the thread's first write) next to the lock once it
//! has it, and clears it before it lets go. A `pthread_atfork` handler,
//! registered with the first token, notes in each child the tokens
//! handed out before the fork, and the forking thread's own. A wait in a
//! child that finds the lock held under an earlier token of another
//! thread knows its holder is gone: no live thread writes that token,
//! and only the holder clears it. A holder caught at the fork between
//! taking the lock and writing its token (or between clearing it and
//! letting go) leaves the word clear, and the wait goes on as before,
//! saying so.
//!
//! The cost to a writer: a thread-local read and two stores to a word on
//! the lock's own line.

#[cfg(not(loom))]
use std::cell::Cell;
#[cfg(not(loom))]
use std::sync::atomic::{AtomicU64, Ordering};

/// The token of the thread holding a lock (0: none known).
#[derive(Default)]
pub(crate) struct Holder {
    #[cfg(not(loom))]
    token: AtomicU64,
}

/// Marks its lock's [`Holder`] as held by this thread until dropped
/// (declared before the lock's guard in a struct, it is dropped first).
pub(crate) struct HolderMark<'a> {
    #[cfg(not(loom))]
    holder: &'a Holder,
    #[cfg(loom)]
    _holder: std::marker::PhantomData<&'a Holder>,
}

impl Holder {
    /// Records this thread as the holder; the caller has just taken the
    /// lock this word belongs to.
    #[inline]
    pub(crate) fn mark(&self) -> HolderMark<'_> {
        #[cfg(not(loom))]
        {
            self.token.store(own_token(), Ordering::Relaxed);
            HolderMark { holder: self }
        }
        #[cfg(loom)]
        HolderMark {
            _holder: std::marker::PhantomData,
        }
    }

    /// Whether the lock is held by a thread that does not exist in this
    /// process: one of the parent's, caught holding it at a fork.
    #[cfg(not(loom))]
    pub(crate) fn gone(&self) -> bool {
        token_gone(self.token.load(Ordering::Relaxed))
    }
}

impl Drop for HolderMark<'_> {
    #[inline]
    fn drop(&mut self) {
        #[cfg(not(loom))]
        self.holder.token.store(0, Ordering::Relaxed);
    }
}

/// The last token handed out.
#[cfg(not(loom))]
static LAST_TOKEN: AtomicU64 = AtomicU64::new(0);
/// In a forked child: every token up to this one was handed out before
/// the latest fork (0: this process was not forked since the first).
#[cfg(not(loom))]
static FORKED_AFTER: AtomicU64 = AtomicU64::new(0);
/// The token of the thread that forked (the only one of the parent's
/// threads that exists in the child; 0 if it had none).
#[cfg(not(loom))]
static FORKER: AtomicU64 = AtomicU64::new(0);

#[cfg(not(loom))]
std::thread_local! {
    /// This thread's token (0 until its first write).
    static TOKEN: Cell<u64> = const { Cell::new(0) };
}

/// This thread's token, taken at its first call.
#[cfg(not(loom))]
#[inline]
fn own_token() -> u64 {
    // A thread being torn down (a write from a thread-local's drop) gets
    // no token: 0, as an unmarked lock.
    TOKEN
        .try_with(|t| match t.get() {
            0 => new_token(t),
            token => token,
        })
        .unwrap_or(0)
}

#[cfg(not(loom))]
#[cold]
fn new_token(t: &Cell<u64>) -> u64 {
    static AT_FORK: std::sync::Once = std::sync::Once::new();
    AT_FORK.call_once(|| {
        // SAFETY: registers a handler with no preconditions; it runs in
        // the child only, on the forking thread, and does no more than
        // atomic loads and stores and a read of a const-initialised
        // thread-local (async-signal-safe).
        let rc = unsafe { libc::pthread_atfork(None, None, Some(in_forked_child)) };
        // Without it (ENOMEM) no holder is ever found gone: waits in a
        // child behave as they did before this module.
        debug_assert_eq!(rc, 0, "pthread_atfork failed");
    });
    let token = LAST_TOKEN.fetch_add(1, Ordering::Relaxed) + 1;
    t.set(token);
    token
}

/// The child's side of a fork (see the module docs).
#[cfg(not(loom))]
extern "C" fn in_forked_child() {
    FORKED_AFTER.store(LAST_TOKEN.load(Ordering::Relaxed), Ordering::Relaxed);
    let forker = TOKEN.try_with(Cell::get).unwrap_or(0);
    FORKER.store(forker, Ordering::Relaxed);
}

/// Whether `token`, read from a held lock's [`Holder`], is a thread's
/// that does not exist in this process.
#[cfg(not(loom))]
fn token_gone(token: u64) -> bool {
    token != 0
        && token <= FORKED_AFTER.load(Ordering::Relaxed)
        && token != FORKER.load(Ordering::Relaxed)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_of_a_live_thread_is_not_gone() {
        let h = Holder::default();
        assert!(!h.gone(), "an unheld lock");
        let mark = h.mark();
        assert!(!h.gone(), "held by this thread");
        drop(mark);
        assert_eq!(h.token.load(Ordering::Relaxed), 0, "the mark's drop clears");
        let other = std::thread::scope(|s| s.spawn(own_token).join().unwrap());
        assert_ne!(other, own_token());
        h.token.store(other, Ordering::Relaxed);
        assert!(!h.gone(), "no fork since: the other thread may live");
    }

    #[test]
    fn tokens_before_a_fork_are_gone_but_the_forkers() {
        let (mine, before) = (own_token(), LAST_TOKEN.load(Ordering::Relaxed) + 1);
        // What a fork's child sees, with `before` handed out earlier to a
        // thread that did not come along (the handler, called here as the
        // child would; no test here forks, and the values are restored).
        let other = std::thread::scope(|s| s.spawn(own_token).join().unwrap());
        assert!(other >= before);
        let saved = (
            FORKED_AFTER.load(Ordering::Relaxed),
            FORKER.load(Ordering::Relaxed),
        );
        in_forked_child();
        assert!(token_gone(other), "a thread of the parent");
        assert!(!token_gone(mine), "the forking thread itself");
        assert!(!token_gone(0), "a lock with no holder noted");
        let after = std::thread::scope(|s| s.spawn(own_token).join().unwrap());
        assert!(!token_gone(after), "a thread of the child");
        FORKED_AFTER.store(saved.0, Ordering::Relaxed);
        FORKER.store(saved.1, Ordering::Relaxed);
    }
}
