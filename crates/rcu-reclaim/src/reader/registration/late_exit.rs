//! Late slots (see `late_slot`) still claimed when their thread exits go
//! back then: each is listed under a pthread key whose destructor glibc
//! runs once the thread's thread-local destructors are done (and runs
//! again, up to `PTHREAD_DESTRUCTOR_ITERATIONS` rounds, for a value set
//! by another key's destructor). Before this list, every thread that
//! took a section or retired from such a destructor left its slot
//! claimed for good: the registry grew with thread churn, and no later
//! grace period of the domain could skip its barrier.

use std::ffi::c_void;
use std::ptr;
use std::sync::OnceLock;

use super::{cache_forget, let_go};
use crate::reader::{Registry, Slot};
use crate::sync::Arc;

/// This thread's late slots still claimed: the domain's id, its
/// registry, the slot.
type Listed = Vec<(u64, Arc<Registry>, *const Slot)>;

/// The key (made if `create`), or `None` if none was made yet, or if
/// the process ran out of them (late slots then stay claimed at
/// thread exit, and one per domain is not guaranteed).
fn key(create: bool) -> Option<libc::pthread_key_t> {
    static KEY: OnceLock<Option<libc::pthread_key_t>> = OnceLock::new();
    if !create {
        return KEY.get().copied().flatten();
    }
    *KEY.get_or_init(|| {
        let mut key: libc::pthread_key_t = 0;
        // SAFETY: `key` is a valid place for the new key, and the
        // destructor has the signature pthread calls it with.
        let rc = unsafe { libc::pthread_key_create(&mut key, Some(at_thread_exit)) };
        (rc == 0).then_some(key)
    })
}

/// This thread's list, created if `create` (null if none or if it
/// could not be stored).
fn listed(create: bool) -> *mut Listed {
    let Some(key) = key(create) else {
        return ptr::null_mut();
    };
    // SAFETY: `key` is a live key; the value is this thread's.
    let list = unsafe { libc::pthread_getspecific(key) }.cast::<Listed>();
    if !list.is_null() || !create {
        return list;
    }
    let list = Box::into_raw(Box::new(Listed::new()));
    // SAFETY: as above; on success the value is freed by
    // `at_thread_exit` (or never, on a thread that does not exit).
    if unsafe { libc::pthread_setspecific(key, list.cast()) } != 0 {
        // SAFETY: `list` was just made by `Box::into_raw` and not stored.
        drop(unsafe { Box::from_raw(list) });
        return ptr::null_mut();
    }
    list
}

/// Lists `slot`, a late slot this thread has just claimed in
/// `registry`, the registry of the domain numbered `id`.
pub(super) fn remember(id: u64, registry: &Arc<Registry>, slot: *const Slot) {
    // SAFETY: this thread's list, reached only from this thread, and
    // not borrowed elsewhere during this call.
    if let Some(list) = unsafe { listed(true).as_mut() } {
        list.push((id, registry.clone(), slot));
    }
}

/// Makes sure the key's destructor runs at this thread's exit, for
/// [`drain_registrations`]: at the thread's first registration.
pub(super) fn arm() {
    let _ = listed(true);
}

/// At thread exit, after the thread-local destructors: the thread's
/// registrations, if `REGISTRATIONS` is still alive. It is, holding
/// them for good, where a destructor that runs after the thread-locals
/// (a C program's pthread key destructor taking a section or registering)
/// set it up afresh: its own destructor, registered then, never runs.
/// Each such thread's slot stayed claimed: the registry grew with every
/// one, and every later grace period scanned them all.
fn drain_registrations() {
    if !super::registrations_touched() {
        // Never set up on this thread: touching it here would do so.
        return;
    }
    let _ = super::REGISTRATIONS.try_with(|regs| {
        let Ok(mut list) = regs.list.try_borrow_mut() else {
            return;
        };
        let gone = std::mem::take(&mut *list);
        drop(list);
        if !gone.is_empty() {
            super::cache_clear();
        }
        drop(gone);
    });
}

/// This thread's late slot in the domain numbered `id`, if it has one.
pub(super) fn find(id: u64) -> Option<*const Slot> {
    // SAFETY: as in `remember`.
    let list = unsafe { listed(false).as_ref() }?;
    list.iter().find(|e| e.0 == id).map(|e| e.2)
}

/// Takes `slot` off this thread's list as it goes back; returns its
/// registry's reference, for the caller to drop once done with the slot.
pub(super) fn forget(slot: *const Slot) -> Option<Arc<Registry>> {
    // SAFETY: as in `remember`.
    let list = unsafe { listed(false).as_mut() }?;
    let i = list.iter().position(|e| ptr::eq(e.2, slot))?;
    Some(list.swap_remove(i).1)
}

/// The key's destructor: lets each listed slot go as a registration
/// does at thread exit (handed back, or abandoned with a section
/// still open).
unsafe extern "C" fn at_thread_exit(list: *mut c_void) {
    // SAFETY: the value was made by `Box::into_raw` in `listed`; glibc
    // cleared it before this call, so it is freed once, here.
    let list = unsafe { Box::from_raw(list.cast::<Listed>()) };
    for (_, registry, slot) in *list {
        // SAFETY: listed slots are this thread's and still claimed;
        // `registry` keeps them alive.
        let slot = unsafe { &*slot };
        cache_forget(slot);
        slot.late.set(false);
        let_go(slot, &registry);
    }
    drain_registrations();
}
