//! A thread's registrations: the thread-local list of its slots (one per
//! domain it has read in, handed back at thread exit), the fast-path cache
//! that `read_lock` looks at, late slots for sections taken after the
//! list was destroyed, and the queries on them (`nesting_in`,
//! `own_slot_in`, `unregister`).

use std::cell::{Cell, RefCell};
use std::ptr;
use std::sync::atomic::Ordering;

use super::{current_owner, current_pid, AbandonedExit, Owner, Registry, Slot, OWES_THROTTLE};
use crate::sync::{fence, lock, mutated_for_loom, ord_for_loom, Arc};

#[cfg(not(loom))]
mod late_exit;

/// A thread's claim on a slot of one domain; gives it back at thread exit.
struct Registration {
    domain_id: u64,
    registry: Arc<Registry>,
    slot: *const Slot,
}

impl Drop for Registration {
    fn drop(&mut self) {
        // SAFETY: `self.registry` keeps the slot alive, and this thread owns it.
        let slot = unsafe { &*self.slot };
        // The thread's foreign counter (a thread-local of its own) is let
        // go with the registration, before the thread's memory is.
        #[cfg(not(loom))]
        {
            slot.foreign.detach();
            // A grace period parked on the foreign futex for this counter
            // is woken by nothing else.
            self.registry.wake_foreign_writer();
        }
        let_go(slot, &self.registry);
    }
}

/// Lets this thread's `slot` of `registry` go as the thread exits (its
/// registration's drop, or a late slot's at thread exit): handed back if
/// no section of it is open, else abandoned with the section open.
pub(super) fn let_go(slot: &Slot, registry: &Registry) {
    let abandoned = slot.nest.get() != 0;
    let raw_only = slot.nest.get() & !OWES_THROTTLE == slot.raw_nest.get();
    if abandoned {
        // The thread exits inside a section: a guard lives in a
        // thread-local destroyed after this one (and may still read),
        // a guard was leaked, or a raw section never ended. The section
        // stays open: a guard dropped later ends it (it holds the
        // slot). A guard's section (`nest` counts more than the raw
        // ones) is never ended otherwise: a leaked guard lends
        // `&'static T`, which may have been sent to a thread that
        // still reads it. Raw sections alone lend no reference to safe
        // code: a grace period that finds such a slot abandoned looks
        // whether the thread is gone, and then stops waiting for it
        // (`GracePeriods::reap_if_exited`). The slot is not handed
        // back now: a guard dropped later on this thread still writes
        // `nest`, which must never be another thread's. The last such
        // drop hands it back (`abandoned_exit`, set below).
        // Not under the owner lock: stall checks take it with the
        // domain's grace-period lock held.
        // A guard kept in a thread-local destroyed after this one is
        // not a mistake: it drops in a moment, so only `tracing` hears
        // of it. A leaked one is reported loudly by the first grace
        // period that finds its thread gone (`GracePeriods::
        // report_stall`); a raw section never unlocked is a bug.
        let name = lock(&slot.owner).name.clone();
        let depth = slot.nest.get() & !OWES_THROTTLE;
        if raw_only {
            crate::sys::warn_loud(&format!(
                "rcu-reclaim: thread {name} is exiting inside {depth} read_lock_raw() \
                     section(s) it never unlocked; grace periods wait until the thread is gone. \
                     Call read_unlock_raw() (rcu_read_unlock() in C) before the thread exits"
            ));
        } else {
            tracing::debug!(
                thread = %name,
                depth,
                "rcu-reclaim: a thread is exiting inside a read-side section; grace \
                 periods wait until its guard drops (a ReadGuard kept in a thread-local \
                 drops in a moment; a leaked one holds them for good and is reported)"
            );
        }
    }
    #[cfg(not(loom))]
    if crate::sync::holds_fork_locks() {
        // This thread holds the domain stopped for fork() (a `ForkGuard`
        // leaked with `mem::forget`, never resolved): its own buffer's
        // lock among the rest, so handing its page on would wait on
        // itself. The page stays, and so does the slot (never reused: its
        // buffer stays locked).
        crate::sys::warn_loud(
            "rcu-reclaim: a thread is exiting while it holds a domain stopped for fork() (a \
             ForkGuard from prepare_fork() that was leaked, never resolved with parent() or \
             child()): the domain stays stopped for good, and this thread's deferred work \
             is never run. Resolve or drop the guard before the thread exits",
        );
        slot.abandoned.store(true, Ordering::Relaxed);
        return;
    }
    slot.orphan_buffered_page(registry);
    if abandoned {
        slot.raw_only.store(raw_only, Ordering::Relaxed);
        slot.abandoned.store(true, Ordering::Relaxed);
        // A guard's section: the guard's drop hands the slot back when
        // the last section ends (a raw section is never ended on this
        // thread again: its unlock would find no registration). The
        // throttle bit routes that exit to `flagged_exit`, which reads
        // whether a wait was really owed from `abandoned_exit` (no
        // section of this thread can come to owe one any more: its
        // retires no longer find this slot).
        if !raw_only {
            let n = slot.nest.get();
            slot.abandoned_exit.set(AbandonedExit::Release {
                owed: n & OWES_THROTTLE != 0,
            });
            slot.nest.set(n | OWES_THROTTLE);
        }
        // Against a writer parking on the slot (it raises `waiter`,
        // then its barrier, then looks at `abandoned`).
        if !mutated_for_loom("reader.let_go.fence") {
            fence(Ordering::SeqCst);
        }
        // A writer parked on this slot looks again, now polling.
        registry.wake_writer();
    } else {
        slot.in_use.store(
            false,
            ord_for_loom("reader.let_go.release", Ordering::Release),
        );
    }
}

/// Per-thread registrations, one per domain this thread has read in.
pub(super) struct Registrations {
    list: RefCell<Vec<Registration>>,
}

impl Drop for Registrations {
    fn drop(&mut self) {
        // Forget the fast-path cache first: the slots are being handed back.
        let _ = CACHE.try_with(Cache::clear);
        self.list.get_mut().clear();
    }
}

/// The fast-path cache: the domain this thread read in last and its slot.
struct Cache {
    domain_id: Cell<u64>,
    slot: Cell<*const Slot>,
}

impl Cache {
    /// Names `slot` as this thread's in the domain numbered `id`.
    fn set(&self, id: u64, slot: *const Slot) {
        self.domain_id.set(id);
        self.slot.set(slot);
    }

    /// Names no domain.
    fn clear(&self) {
        self.set(0, ptr::null());
    }
}

/// Names `slot` in this thread's cache as its slot in the domain `id`.
fn cache_set(id: u64, slot: *const Slot) {
    CACHE.with(|c| c.set(id, slot));
}

/// Clears this thread's cache (its registrations are being let go).
fn cache_clear() {
    let _ = CACHE.try_with(Cache::clear);
}

/// Clears this thread's cache if it names `slot` (being handed back). The
/// cache has no destructor: reachable even while the thread exits.
pub(super) fn cache_forget(slot: &Slot) {
    let _ = CACHE.try_with(|c| {
        if ptr::eq(c.slot.get(), slot) {
            c.clear();
        }
    });
}

#[cfg(not(loom))]
thread_local! {
    static CACHE: Cache = const {
        Cache { domain_id: Cell::new(0), slot: Cell::new(ptr::null()) }
    };
    pub(super) static REGISTRATIONS: Registrations = const {
        Registrations { list: RefCell::new(Vec::new()) }
    };
    /// Whether this thread has used `REGISTRATIONS` (or `QSBR_ONLINE`)
    /// yet. No destructor, so reading it allocates nothing: a thread-local
    /// with one registers that destructor on its first use, which
    /// allocates, and a query from a signal handler that interrupted
    /// `malloc` on a thread that never registered (`in_read_section`, the
    /// drop-in's `rcu_read_ongoing`) waited on `malloc`'s lock for good.
    /// Such queries answer "none" without touching them.
    static TOUCHED: Cell<bool> = const { Cell::new(false) };
}

/// Marks `REGISTRATIONS` and `QSBR_ONLINE` as possibly in use on this
/// thread (before either is first touched).
#[cfg(not(loom))]
pub(super) fn touch_registrations() {
    let _ = TOUCHED.try_with(|t| t.set(true));
}

/// Whether this thread may have a registration (see `TOUCHED`).
#[cfg(not(loom))]
pub(super) fn registrations_touched() -> bool {
    TOUCHED.try_with(Cell::get).unwrap_or(true)
}

/// Whether the calling thread's thread-locals are still alive, for
/// [`current_owner`]: `std::thread::current` is
/// destroyed with them (by std's own pthread key destructor), and asking
/// for it after that, from a pthread key destructor of a C program's that
/// runs later, panics. `REGISTRATIONS` answers: touched here on the
/// thread's first ask, before std's handle, it is destroyed before it,
/// and only a thread that never asked can find it alive (set up afresh)
/// during its exit.
#[cfg(not(loom))]
pub(super) fn thread_locals_alive() -> bool {
    touch_registrations();
    REGISTRATIONS.try_with(|_| ()).is_ok()
}

#[cfg(loom)]
pub(super) fn touch_registrations() {}

#[cfg(loom)]
pub(super) fn thread_locals_alive() -> bool {
    true
}

#[cfg(loom)]
pub(super) fn registrations_touched() -> bool {
    true
}

#[cfg(loom)]
loom::thread_local! {
    static CACHE: Cache = Cache { domain_id: Cell::new(0), slot: Cell::new(ptr::null()) };
    pub(super) static REGISTRATIONS: Registrations = Registrations { list: RefCell::new(Vec::new()) };
}

/// Returns this thread's slot in the domain numbered `id` (whose registry
/// is `registry`), registering the thread on first use.
#[inline]
pub(crate) fn current_slot(id: u64, registry: &Arc<Registry>) -> *const Slot {
    // One compare on the fast path: the cache names a domain (ids start at
    // 1; 0 is none) only together with that domain's slot, never null. (A
    // separate null check made the compiler merge both tests into a
    // branch-free sequence: 3 more instructions per read pair.)
    CACHE.with(|c| {
        if c.domain_id.get() == id {
            c.slot.get()
        } else {
            current_slot_slow(id, registry)
        }
    })
}

#[cold]
fn current_slot_slow(id: u64, registry: &Arc<Registry>) -> *const Slot {
    // Allocations below happen while the thread's registration list is
    // borrowed: they must not enter direct reclaim, which reads it.
    touch_registrations();
    let found = crate::sync::with_flag(&crate::sync::NO_RECLAIM, || {
        REGISTRATIONS.try_with(|regs| {
            // Borrowed already: this is a signal handler that interrupted
            // the thread's own registration (a C program's handler taking
            // a section): it takes a late slot, handed back when its raw
            // section ends, rather than panicking inside the handler.
            let Ok(mut list) = regs.list.try_borrow_mut() else {
                return ptr::null();
            };
            list.retain(|r| r.domain_id == id || r.registry.alive.load(Ordering::Relaxed));
            if let Some(r) = list.iter().find(|r| r.domain_id == id) {
                return r.slot;
            }
            let registry = registry.clone();
            let slot = registry.claim();
            // Orders the claim before this thread's first section: a grace
            // period that finds no slot claimed skips its barrier and its
            // wait (`GracePeriods::complete_if_no_reader`), so this section
            // must see what was unlinked before that grace period's scan.
            if !mutated_for_loom("reader.current_slot_slow.fence") {
                fence(Ordering::SeqCst);
            }
            let owner = current_owner();
            // SAFETY: the slot was just claimed by this thread and is kept alive
            // by `registry`, which the registration holds.
            let s = unsafe { &*slot };
            *lock(&s.owner) = owner;
            s.stall_reported.store(0, Ordering::Relaxed);
            // The thread's first registration: its exit lets the list go
            // even where `REGISTRATIONS` was first set up by a destructor
            // that runs after the thread's thread-locals (see
            // `late_exit::drain_registrations`).
            #[cfg(not(loom))]
            if list.is_empty() {
                late_exit::arm();
            }
            list.push(Registration {
                domain_id: id,
                registry,
                slot,
            });
            slot
        })
    });
    match found {
        Ok(slot) if !slot.is_null() => {
            cache_set(id, slot);
            slot
        }
        _ => late_slot(id, registry),
    }
}

/// A slot for a thread whose registrations were already destroyed: a
/// section or a retire from a destructor that runs after them (another
/// thread-local's, a pthread key's, an `atexit` handler's: C programs
/// built for liburcu take sections and unregister there). It is kept in
/// the cache (which has no destructor) and handed back when its outermost
/// raw section ends ([`release_if_late`]) or the thread unregisters, else
/// when the thread exits (a pthread key's destructor, which glibc runs
/// after every thread-local's: [`late_exit`]). One late slot per domain:
/// the cache holds one at a time, and a section of another domain taken
/// inside this one's finds it again through `late_exit`'s list.
#[cold]
fn late_slot(id: u64, registry: &Arc<Registry>) -> *const Slot {
    // This thread's late slot of the domain, if the cache lost it to
    // another domain's: a section open in it must be found again.
    #[cfg(not(loom))]
    if let Some(slot) = late_exit::find(id) {
        cache_set(id, slot);
        return slot;
    }
    let slot = registry.claim();
    // As in `current_slot_slow`: the claim before the first section.
    if !mutated_for_loom("reader.late_slot.fence") {
        fence(Ordering::SeqCst);
    }
    // SAFETY: the slot was just claimed by this thread; `registry` (the
    // domain's, alive while the caller's `&Rcu` is) keeps it alive.
    let s = unsafe { &*slot };
    // Not `current_owner`: the thread's `std::thread::current` may be gone.
    *lock(&s.owner) = Owner {
        name: "<exiting thread>".to_string(),
        #[cfg(not(loom))]
        tid: crate::sys::gettid(),
        #[cfg(loom)]
        tid: 0,
        pid: current_pid(),
    };
    s.stall_reported.store(0, Ordering::Relaxed);
    s.late.set(true);
    #[cfg(not(loom))]
    late_exit::remember(id, registry, slot);
    cache_set(id, slot);
    slot
}

/// After a raw section of `registry`'s domain ended on `slot`: hands a late
/// slot (see [`late_slot`]) back once no section of it is open.
#[inline]
pub(crate) fn release_if_late(registry: &Registry, slot: &Slot) {
    if slot.late.get() {
        release_late(slot, registry);
    }
}

/// As [`release_if_late`], after `raw_exit` ended a raw section on `slot`,
/// which was this thread's late slot of the domain numbered `id` when
/// that section began to end: ending it may have paid a wait it owed,
/// and that wait runs user code (a `bound_garbage` usage reader, a
/// shrinker's scan) that may call `unregister_thread`, which hands the
/// slot back at once, for another thread to claim as its own late slot.
/// The slot is looked at again only if it is still this thread's: listed
/// as its late slot, or named by its cache (which names only its own).
#[cold]
pub(crate) fn release_if_still_late(id: u64, registry: &Registry, slot: *const Slot) {
    #[cfg(not(loom))]
    let listed = late_exit::find(id).is_some_and(|s| ptr::eq(s, slot));
    #[cfg(loom)]
    let listed = false;
    let cached = CACHE
        .try_with(|c| c.domain_id.get() == id && ptr::eq(c.slot.get(), slot))
        .unwrap_or(false);
    if listed || cached {
        // SAFETY: this thread's slot (listed or cached: both forget a slot
        // before it goes back), alive while `registry` is.
        release_if_late(registry, unsafe { &*slot });
    }
}

#[cold]
fn release_late(slot: &Slot, registry: &Registry) {
    if slot.nest.get() != 0 {
        return;
    }
    cache_forget(slot);
    slot.late.set(false);
    // Kept until the slot is handed back: it may hold the last reference
    // to the registry, which owns the slot.
    #[cfg(not(loom))]
    let _listed = late_exit::forget(slot);
    // As a registration does at thread exit (`Registration::drop`).
    slot.orphan_buffered_page(registry);
    slot.in_use.store(
        false,
        ord_for_loom("reader.release_late.release", Ordering::Release),
    );
}

/// This thread's slot in the domain numbered `id` (its cache, else its
/// registrations), or null.
pub(crate) fn own_slot_cached_in(id: u64) -> *const Slot {
    let cached = CACHE.with(|c| (c.domain_id.get() == id).then(|| c.slot.get()));
    let slot = cached.unwrap_or_else(|| own_slot_in(id));
    // A late slot the cache lost to another domain's (see `late_slot`).
    #[cfg(not(loom))]
    if slot.is_null() {
        return late_exit::find(id).unwrap_or(ptr::null());
    }
    slot
}

/// The slots [`mark_waiting`] marked; unmarked when dropped.
#[cfg(not(loom))]
pub(crate) struct WaitMarks {
    slots: [*const Slot; 4],
    len: usize,
}

#[cfg(not(loom))]
impl Drop for WaitMarks {
    fn drop(&mut self) {
        for &slot in &self.slots[..self.len] {
            // SAFETY: this thread's slots, marked by `mark_waiting` on this
            // thread, which cannot let its registrations go while it waits.
            unsafe { (*slot).waiting_on.store(0, Ordering::Relaxed) };
        }
    }
}

/// Marks this thread's sections of other domains than the one numbered
/// `id` (up to four) as waiting for a grace period of that one, until the
/// marks are dropped: a stall report of such a section then says what its
/// thread waits for (two threads, each inside a section of one domain and
/// waiting for the other's grace period, wait for good). Cheap next to a
/// wait: a walk over the thread's registrations.
#[cfg(not(loom))]
pub(crate) fn mark_waiting(id: u64) -> WaitMarks {
    let mut marks = WaitMarks {
        slots: [ptr::null(); 4],
        len: 0,
    };
    let _ = REGISTRATIONS.try_with(|regs| {
        let Ok(list) = regs.list.try_borrow() else {
            return;
        };
        for r in list.iter().filter(|r| r.domain_id != id) {
            if marks.len == marks.slots.len() {
                break;
            }
            // SAFETY: a registered slot of this thread, alive while the
            // registration is (this thread's, kept for this call).
            let slot = unsafe { &*r.slot };
            if slot.nest.get() & !OWES_THROTTLE > 0 {
                slot.waiting_on.store(id, Ordering::Relaxed);
                marks.slots[marks.len] = r.slot;
                marks.len += 1;
            }
        }
    });
    marks
}

/// Whether this thread is inside a guard's, a raw or a foreign (liburcu
/// inline) section of any domain (for `qsbr_slots::in_any_section`, which
/// adds online QSBR registrations). A thread-local that cannot be read
/// (the thread exiting) answers yes.
#[cfg(not(loom))]
pub(super) fn in_any_guarded_section() -> bool {
    if !registrations_touched() {
        return false;
    }
    REGISTRATIONS
        .try_with(|regs| {
            regs.list.try_borrow().map_or(true, |list| {
                list.iter().any(|r| {
                    // SAFETY: a registered slot of this thread, alive while
                    // its registration (in this list) is.
                    let slot = unsafe { &*r.slot };
                    slot.nest.get() & !OWES_THROTTLE > 0 || slot.foreign.in_section()
                })
            })
        })
        .unwrap_or(true)
}

/// This thread's nesting depth in the domain numbered `id`.
pub(crate) fn nesting_in(id: u64) -> u64 {
    let slot = own_slot_cached_in(id);
    if slot.is_null() {
        0
    } else {
        // SAFETY: a slot found in this thread's cache or registrations is
        // owned by this thread and kept alive by its registration.
        unsafe { (*slot).nest.get() & !OWES_THROTTLE }
    }
}

/// Whether this thread's foreign reader counter in the domain numbered
/// `id` (C built with `_LGPL_SOURCE`: see `foreign.rs`) is inside a
/// section (`false` if none is attached).
#[cfg(not(loom))]
pub(crate) fn foreign_in_section(id: u64) -> bool {
    // SAFETY: this thread's slot, alive while it is registered.
    unsafe { own_slot_in(id).as_ref() }.is_some_and(|slot| slot.foreign.in_section())
}

/// How many of this thread's sections in the domain numbered `id` are raw
/// ones (`Rcu::read_lock_raw`), for the misuse messages: a raw section
/// has no guard to drop.
pub(crate) fn raw_nesting_in(id: u64) -> u64 {
    let slot = own_slot_cached_in(id);
    if slot.is_null() {
        0
    } else {
        // SAFETY: as in `nesting_in`: the slot is this thread's, kept alive
        // by its registration.
        unsafe { (*slot).raw_nest.get() }
    }
}

/// Hands this thread's slot in the domain numbered `id` back now rather
/// than at thread exit; `false` (and nothing done) inside a read-side
/// section.
pub(crate) fn unregister(id: u64, registry: &Registry) -> bool {
    if nesting_in(id) > 0 || allocating_in(id) {
        return false;
    }
    let _ = CACHE.try_with(|c| {
        if c.domain_id.get() == id {
            // SAFETY: the cache holds this thread's slot of domain `id`,
            // kept alive by `registry` (the domain's).
            let slot = unsafe { &*c.slot.get() };
            if slot.late.get() {
                release_late(slot, registry);
                return;
            }
            c.clear();
        }
    });
    crate::sync::with_flag(&crate::sync::NO_RECLAIM, || {
        let _ = REGISTRATIONS.try_with(|regs| {
            let gone: Vec<Registration> = {
                let mut list = regs.list.borrow_mut();
                let (gone, keep) = list.drain(..).partition(|r| r.domain_id == id);
                *list = keep;
                gone
            };
            // Dropped outside the borrow: the drop takes the orphans lock.
            drop(gone);
        });
    });
    true
}

/// Whether this thread is in the page allocator of the domain numbered
/// `id`, from a retire's slow path that holds its slot's buffer (the
/// allocator is the user's code, and may call `unregister_thread`): its
/// registered slot or, past its registrations' teardown, the late slot
/// that the fast-path cache names.
fn allocating_in(id: u64) -> bool {
    let allocating = |slot: *const Slot| {
        // SAFETY: this thread's slot of domain `id` (registered, or the
        // cache's late one), alive while the thread holds it, which it
        // does for this call.
        unsafe { slot.as_ref() }.is_some_and(|s| s.local.allocating.load(Ordering::Relaxed))
    };
    let cached = CACHE
        .try_with(|c| (c.domain_id.get() == id).then(|| c.slot.get()))
        .ok()
        .flatten();
    allocating(own_slot_in(id)) || cached.is_some_and(allocating)
}

/// This thread's slot in the domain numbered `id`, or null if it is not
/// registered there.
///
/// Null too in a signal handler that interrupted this thread's own change
/// of its registrations (`current_slot_slow` registering it in another
/// domain, its list borrowed mutably): a `borrow()` there panicked, which
/// cannot unwind out of a handler, and aborted the process
/// (`Rcu::in_read_section` in a handler while its thread took its first
/// section of a domain, or alternated between two). The handler then sees
/// no section of this domain on the thread, as it sees none of a domain
/// the thread is registering in.
pub(crate) fn own_slot_in(id: u64) -> *const Slot {
    if !registrations_touched() {
        return ptr::null();
    }
    REGISTRATIONS
        .try_with(|regs| {
            regs.list.try_borrow().map_or(ptr::null(), |list| {
                list.iter()
                    .find(|r| r.domain_id == id)
                    .map_or(ptr::null(), |r| r.slot)
            })
        })
        .unwrap_or(ptr::null())
}
