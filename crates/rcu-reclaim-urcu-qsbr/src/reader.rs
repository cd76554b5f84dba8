//! The QSBR read side: registration, quiescent states, offline/online,
//! `synchronize_rcu` and the polled API, over a per-thread
//! [`QsbrThread`] registration of the domain.

use std::cell::{Cell, RefCell};
use std::os::raw::c_int;

use rcu_reclaim::QsbrThread;

use crate::rcu;

/// The calling thread's state in the drop-in.
struct Me {
    /// The thread's registration (`rcu_register_thread`), online or not.
    /// Dropped (so unregistered) at thread exit if the thread did not
    /// unregister.
    reg: RefCell<Option<QsbrThread>>,
    /// Sections entered by `rcu_read_lock` while not online: real
    /// read-side sections of the domain, which `rcu_read_unlock` ends.
    raw: Cell<u32>,
    /// Across `call_rcu_before_fork` .. `after_fork_*`: whether the thread
    /// was registered (and online) before the fork.
    fork_saved: Cell<Option<bool>>,
}

thread_local! {
    static ME: Me = const {
        Me {
            reg: RefCell::new(None),
            raw: Cell::new(0),
            fork_saved: Cell::new(None),
        }
    };
    /// Whether this thread has written `ME` yet. No destructor, so reading
    /// it allocates nothing: `ME` has one, registered (with an allocation)
    /// on its first use, and a query from a signal handler that interrupted
    /// `malloc` on a thread that never registered (`rcu_read_ongoing`)
    /// waited on `malloc`'s lock for good (an audit: 5 runs of 5). The
    /// queries answer "not registered, no section" without touching `ME`.
    static ME_USED: Cell<bool> = const { Cell::new(false) };
}

/// Whether this thread may have state in `ME` (see `ME_USED`).
fn me_used() -> bool {
    ME_USED.with(Cell::get)
}

/// Notes that this thread is about to write `ME`.
fn mark_me_used() {
    ME_USED.with(|u| u.set(true));
}

/// Runs `f` on the thread's registration (`None`: not registered, or the
/// thread is exiting and its state is gone). Never held across a wait.
fn with_reg<R>(f: impl FnOnce(Option<&QsbrThread>) -> R) -> R {
    if !me_used() {
        return f(None);
    }
    let mut f = Some(f);
    let r = ME.try_with(|me| match me.reg.try_borrow() {
        Ok(reg) => (f.take().expect("called once"))(reg.as_ref()),
        Err(_) => (f.take().expect("called once"))(None),
    });
    match r {
        Ok(r) => r,
        Err(_) => (f.take().expect("not called when the state is gone"))(None),
    }
}

/// Whether the thread is registered and online (its liburcu reader block,
/// which a program built with `_LGPL_SOURCE` writes itself, says so).
pub(crate) fn online() -> bool {
    with_reg(|t| t.is_some()) && crate::lgpl::online()
}

/// Whether the thread is inside a section entered while not online.
pub(crate) fn in_raw_section() -> bool {
    me_used() && ME.try_with(|me| me.raw.get() > 0).unwrap_or(false)
}

/// Runs `f` (a wait for grace periods) with the thread offline if it is
/// online, and puts it back online after (also if `f` unwinds).
pub(crate) fn offline_while<R>(f: impl FnOnce() -> R) -> R {
    /// What goes back online after the wait: the reader block, the
    /// registration's own flag.
    struct BackOnline(bool, bool);
    impl Drop for BackOnline {
        fn drop(&mut self) {
            if self.1 {
                with_reg(|t| {
                    if let Some(t) = t {
                        t.thread_online_unchecked();
                    }
                });
            }
            if self.0 {
                crate::lgpl::go_online();
            }
        }
    }
    let block_online = online();
    if block_online {
        crate::lgpl::go_offline();
    }
    let reg_online = with_reg(|t| match t {
        Some(t) if t.is_online() => {
            // SAFETY: the thread waits for a grace period: liburcu's
            // contract for these calls is that it holds no reference read
            // in an earlier section (they are quiescent states).
            unsafe { t.thread_offline_unchecked() };
            true
        }
        _ => false,
    });
    let _back = BackOnline(block_online, reg_online);
    f()
}

/// Enters a read-side section. Free on an online thread (it is in one
/// until its next quiescent state); on a thread that is not registered or
/// is offline (a bug in liburcu), a real section of the domain.
#[no_mangle]
pub extern "C" fn urcu_qsbr_read_lock() {
    if online() {
        return;
    }
    rcu().read_lock_raw();
    mark_me_used();
    if ME.try_with(|me| me.raw.set(me.raw.get() + 1)).is_err() {
        // The thread is exiting: nothing to count in; the unlock ends the
        // domain's raw section all the same.
    }
}

/// Leaves the innermost read-side section: ends a section entered while
/// not online, else does nothing (an online thread's section lasts until
/// its next quiescent state).
#[no_mangle]
pub extern "C" fn urcu_qsbr_read_unlock() {
    let raw = ME
        .try_with(|me| {
            let n = me.raw.get();
            if n > 0 {
                me.raw.set(n - 1);
            }
            n > 0
        })
        .unwrap_or(true);
    if raw {
        let _ = rcu().read_unlock_raw();
    }
}

/// 1 if the thread is online or inside a section entered while not
/// online, else 0 (liburcu returns its nonzero reader counter online).
#[no_mangle]
pub extern "C" fn urcu_qsbr_read_ongoing() -> c_int {
    c_int::from(online() || in_raw_section())
}

/// Reports a quiescent state: the thread holds no reference read before
/// the call. Two loads and a compare when no grace period waits for it;
/// when one does, it also pays a push-back its `call_rcu`s owed
/// ([`pay_owed_push_back`](crate::lgpl::pay_owed_push_back)).
/// Nothing on a thread that is not registered. On an offline thread it
/// puts the thread online, as liburcu's does (it stores the grace-period
/// counter, which is what being online is): an event loop that comes back
/// from a blocking wait this way reads protected. (Before, the thread
/// stayed offline, and a grace period freed what it then read.)
#[no_mangle]
pub extern "C" fn urcu_qsbr_quiescent_state() {
    // The reader block stands for the registration in grace periods (and
    // wakes a writer parked on it, as liburcu's).
    if with_reg(|t| t.is_some()) && !crate::lgpl::quiescent_state() {
        urcu_qsbr_thread_online();
    }
}

/// Puts the thread offline: no grace period waits for it until
/// `rcu_thread_online`. Nothing if it is not registered or offline. Then,
/// offline, pays a push-back its `call_rcu`s owed while it was online
/// ([`pay_owed_push_back`](crate::lgpl::pay_owed_push_back)).
#[no_mangle]
pub extern "C" fn urcu_qsbr_thread_offline() {
    with_reg(|t| {
        if let Some(t) = t {
            crate::lgpl::go_offline();
            // SAFETY: liburcu's contract for `rcu_thread_offline`: the
            // thread holds no reference read in a section until it is
            // online again.
            unsafe { t.thread_offline_unchecked() };
        }
    });
    if rcu_reclaim_urcu_common::call_rcu::owes_push_back() {
        crate::lgpl::pay_owed_push_back();
    }
}

/// Puts the thread back online. Nothing if it is not registered or
/// online.
#[no_mangle]
pub extern "C" fn urcu_qsbr_thread_online() {
    with_reg(|t| {
        if let Some(t) = t {
            t.thread_online_unchecked();
            crate::lgpl::go_online();
        }
    });
}

/// Registers the calling thread as a reader; it starts online. A second
/// call only puts it online (liburcu's last step; liburcu asserts), saying
/// so, and the `rcu_unregister_thread` that pairs with it is ignored.
#[no_mangle]
pub extern "C" fn urcu_qsbr_register_thread() {
    rcu_reclaim_urcu_common::keeping_errno(|| {
        rcu_reclaim_urcu_common::with_signals_blocked(register_thread)
    });
}

/// `urcu_qsbr_register_thread`'s body, run with signals blocked (see
/// `with_signals_blocked`).
fn register_thread() {
    let rcu = rcu();
    mark_me_used();
    let _ = ME.try_with(|me| {
        // Never borrowed across a call out of this module: the borrow
        // cannot fail, and nothing may unwind into C if it did.
        let Ok(mut reg) = me.reg.try_borrow_mut() else {
            return;
        };
        match reg.as_ref() {
            Some(t) => {
                // liburcu asserts (or, built without assertions, corrupts
                // its registry).
                eprintln!(
                    "[error] rcu-reclaim-urcu: rcu_register_thread() called on a thread that is \
                     already registered; it is only put online (call rcu_unregister_thread() \
                     before registering again)"
                );
                t.thread_online_unchecked();
                crate::lgpl::go_online();
                rcu_reclaim_urcu_common::ignored_registrations::ignored();
            }
            None => {
                // Publish the inlined readers' words first, while this
                // thread is not yet online: publishing takes the
                // grace-period lock, and a grace period in progress that
                // waits for this thread, once online, held it for ever
                // (until the stall timeout: `test_urcu_qsbr 2 2 1` took
                // 21 s about one run in ten).
                crate::lgpl::install();
                let t = rcu.register_qsbr_thread();
                crate::lgpl::attach(&t);
                *reg = Some(t);
            }
        }
    });
    // Sets up the thread-local of a push-back its `call_rcu`s may owe
    // here, where signals are blocked: set up first inside a signal
    // handler's `call_rcu`, its destructor's registration may call
    // `calloc`, which hangs for good if the handler interrupted `malloc`.
    let _ = rcu_reclaim_urcu_common::call_rcu::owes_push_back();
}

/// Unregisters the calling thread (offline first, so no grace period waits
/// for it). Nothing if it is not registered. A push-back its `call_rcu`s
/// owed while it was online is paid first, offline ([`pay_owed_push_back`](crate::lgpl::pay_owed_push_back):
/// unregistering is a quiescent point), outside the signal mask.
#[no_mangle]
pub extern "C" fn urcu_qsbr_unregister_thread() {
    rcu_reclaim_urcu_common::keeping_errno(|| {
        if rcu_reclaim_urcu_common::call_rcu::owes_push_back() {
            crate::lgpl::pay_owed_push_back();
        }
        rcu_reclaim_urcu_common::with_signals_blocked(unregister_thread)
    });
}

/// `urcu_qsbr_unregister_thread`'s body, run with signals blocked.
fn unregister_thread() {
    if rcu_reclaim_urcu_common::ignored_registrations::take_one() {
        return;
    }
    let reg = ME
        .try_with(|me| me.reg.try_borrow_mut().ok().and_then(|mut r| r.take()))
        .ok()
        .flatten();
    if reg.is_some() {
        crate::lgpl::unregistering();
    } else if ME.try_with(|_| ()).is_ok() {
        // liburcu asserts (or unlinks a node it never linked).
        eprintln!(
            "[error] rcu-reclaim-urcu: rcu_unregister_thread() called on a thread that is not \
             registered (no rcu_register_thread() before it); ignored"
        );
    }
    // Its drop detaches the block.
    drop(reg);
}

/// Waits until every online registered thread has reported a quiescent
/// state (or gone offline) since the call began; an online caller is
/// offline meanwhile, as in liburcu.
#[no_mangle]
pub extern "C" fn urcu_qsbr_synchronize_rcu() {
    // Between `call_rcu_before_fork` and its `after_fork_*`, where
    // liburcu's grace periods run (its hooks pause only the call_rcu
    // threads), the domain is let go for the wait (before: a panic in the
    // domain, which held it stopped, and an abort).
    rcu_reclaim_urcu_common::keeping_errno(|| {
        rcu_reclaim_urcu_common::fork::domain_resumed_for::<crate::Qsbr, _>(|| {
            let rcu = rcu();
            without_raw_sections("synchronize_rcu", || offline_while(|| rcu.synchronize()));
        })
    });
}

/// Runs `f` (a wait for a grace period) with the thread's sections entered
/// while not online ended, and enters them again after, saying so: such a
/// section would make the wait wait for itself. liburcu-qsbr gives it no
/// protection at all (its `rcu_read_lock` is empty, or only checks in
/// debug builds), and its `synchronize_rcu` returns: so does this one.
pub(crate) fn without_raw_sections<R>(what: &str, f: impl FnOnce() -> R) -> R {
    let n = if me_used() {
        ME.try_with(|me| me.raw.replace(0)).unwrap_or(0)
    } else {
        0
    };
    if n > 0 {
        eprintln!(
            "[error] rcu-reclaim-urcu: {what}() called inside rcu_read_lock() on a thread that \
             is not online (offline or not registered), whose section liburcu-qsbr does not \
             protect: the section ends for the wait and starts again after it, so what it read \
             before may be freed. Call rcu_read_unlock() first, or register the thread and keep \
             it online."
        );
    }
    /// Counts the sections again once they are entered again (also if `f`
    /// unwinds).
    struct Recount(u32);
    impl Drop for Recount {
        fn drop(&mut self) {
            let n = self.0;
            let _ = ME.try_with(|me| me.raw.set(me.raw.get() + n));
        }
    }
    let _recount = Recount(n);
    rcu_reclaim_urcu_common::with_raw_sections_ended(rcu(), n as usize, f)
}

/// liburcu's exit hook (called at its unload): nothing to tear down here.
#[no_mangle]
pub extern "C" fn urcu_qsbr_exit() {}

pub use rcu_reclaim_urcu_common::poll::UrcuGpPollState;

/// Starts a grace period if needed and returns a snapshot to poll (0.14).
/// Never waits: an online caller stays online.
#[no_mangle]
pub extern "C" fn urcu_qsbr_start_poll_synchronize_rcu() -> UrcuGpPollState {
    rcu_reclaim_urcu_common::keeping_errno(|| rcu_reclaim_urcu_common::poll::start(rcu()))
}

/// Whether a grace period has elapsed since `state` was taken (0.14).
#[no_mangle]
pub extern "C" fn urcu_qsbr_poll_state_synchronize_rcu(state: UrcuGpPollState) -> bool {
    rcu_reclaim_urcu_common::poll::done(rcu(), state)
}

/// Before the fork: the registration is dropped (the domain cannot be
/// stopped for the fork with the caller online, and its slot would not
/// survive the child's reset), remembering whether it was online. A
/// push-back the thread owes is dropped unpaid: no wait here, and its
/// `call_rcu` thread is not the child's.
pub(crate) fn before_fork() {
    rcu_reclaim_urcu_common::call_rcu::forget_owed_push_back();
    if !me_used() {
        return;
    }
    let _ = ME.try_with(|me| {
        if let Ok(mut reg) = me.reg.try_borrow_mut() {
            if let Some(t) = reg.take() {
                me.fork_saved.set(Some(crate::lgpl::online()));
                crate::lgpl::unregistering();
                drop(t);
            }
        }
    });
}

/// After the fork, in the parent and in the child: the registration dropped
/// by [`before_fork`] is taken again, online or offline as it was.
pub(crate) fn after_fork() {
    if !me_used() {
        return;
    }
    let Some(was_online) = ME.try_with(|me| me.fork_saved.take()).ok().flatten() else {
        return;
    };
    urcu_qsbr_register_thread();
    if !was_online {
        urcu_qsbr_thread_offline();
    }
}

/// What C cannot compare with liburcu: the cases where liburcu asserts,
/// deadlocks or leaves a reader unprotected.
#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::c_void;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn read_lock_on_an_unregistered_thread_is_a_real_section() {
        urcu_qsbr_read_lock();
        assert!(in_raw_section());
        assert_eq!(urcu_qsbr_read_ongoing(), 1);
        let done = Arc::new(AtomicBool::new(false));
        let d = done.clone();
        let writer = std::thread::spawn(move || {
            urcu_qsbr_synchronize_rcu();
            d.store(true, Ordering::SeqCst);
        });
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            !done.load(Ordering::SeqCst),
            "a grace period ended under the section"
        );
        urcu_qsbr_read_unlock();
        writer.join().unwrap();
        assert!(done.load(Ordering::SeqCst));
        assert_eq!(urcu_qsbr_read_ongoing(), 0);
    }

    #[test]
    fn an_online_thread_reads_for_free_and_synchronizes_offline() {
        std::thread::spawn(|| {
            urcu_qsbr_register_thread();
            urcu_qsbr_read_lock();
            assert!(!in_raw_section(), "online: no section to enter");
            urcu_qsbr_read_unlock();
            urcu_qsbr_synchronize_rcu(); // would wait for itself online
            assert_eq!(urcu_qsbr_read_ongoing(), 1, "back online");
            urcu_qsbr_register_thread(); // twice: still one registration
            urcu_qsbr_unregister_thread(); // pairs with the ignored one
            assert_eq!(urcu_qsbr_read_ongoing(), 1, "still registered");
            urcu_qsbr_unregister_thread();
            assert_eq!(urcu_qsbr_read_ongoing(), 0);
            urcu_qsbr_unregister_thread(); // not registered: nothing
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_thread_that_exits_online_does_not_block_later_grace_periods() {
        std::thread::spawn(|| {
            urcu_qsbr_register_thread();
            urcu_qsbr_quiescent_state();
        })
        .join()
        .unwrap();
        urcu_qsbr_synchronize_rcu();
    }

    static OWED_RAN: AtomicU32 = AtomicU32::new(0);

    unsafe extern "C" fn count_owed(_: *mut rcu_reclaim_urcu_common::RcuHead) {
        OWED_RAN.fetch_add(1, Ordering::Relaxed);
    }

    /// Queues heads (leaked) on the calling thread's crdp until a
    /// `call_rcu` owes the push-back; returns how many it queued.
    fn call_rcu_until_owed() -> u32 {
        const MOST: usize = 400_000;
        // `struct rcu_head` is two words, written by `call_rcu`.
        let heads: &'static mut [[usize; 2]] = vec![[0usize; 2]; MOST].leak();
        for (i, h) in heads.iter_mut().enumerate() {
            let head = std::ptr::from_mut(h).cast::<rcu_reclaim_urcu_common::RcuHead>();
            // SAFETY: a leaked head, as wide and aligned as liburcu's
            // `rcu_head`, handed over for good.
            unsafe { crate::common::call_rcu(head, Some(count_owed)) };
            if rcu_reclaim_urcu_common::call_rcu::owes_push_back() {
                return i as u32 + 1;
            }
        }
        panic!("{MOST} call_rcu on an online thread never owed the push-back");
    }

    /// An online thread's `call_rcu` over the push-back mark owes the wait
    /// (it returns at once: the batch waits for this very thread, which
    /// never reports meanwhile) and pays it at its next quiescent state,
    /// or as it goes offline or unregisters; inside a section taken while
    /// it was offline it keeps the debt. Before, it owed nothing and was
    /// never held back.
    #[test]
    fn an_online_thread_owes_the_push_back_and_pays_it_at_quiescent_points() {
        use rcu_reclaim_urcu_common::call_rcu::owes_push_back;
        std::thread::spawn(|| {
            urcu_qsbr_register_thread();
            let own = crate::common::create_call_rcu_data(0, -1);
            crate::common::set_thread_call_rcu_data(own);
            let mut queued = 0;

            // At a quiescent state (its slow path: the owing call moved
            // the thread's block back a grace period).
            queued += call_rcu_until_owed();
            assert_eq!(
                urcu_qsbr_read_ongoing(),
                1,
                "call_rcu put the thread offline"
            );
            urcu_qsbr_quiescent_state();
            assert!(!owes_push_back(), "not paid at the quiescent state");
            assert_eq!(urcu_qsbr_read_ongoing(), 1, "not back online");

            // Going offline.
            queued += call_rcu_until_owed();
            urcu_qsbr_thread_offline();
            assert!(!owes_push_back(), "not paid going offline");
            urcu_qsbr_thread_online();

            // Inside a section taken while offline: kept, then paid at the
            // first quiescent state after it.
            urcu_qsbr_thread_offline();
            urcu_qsbr_read_lock();
            urcu_qsbr_thread_online();
            queued += call_rcu_until_owed();
            urcu_qsbr_quiescent_state();
            assert!(owes_push_back(), "paid inside a section");
            urcu_qsbr_read_unlock();
            // No `call_rcu` in between moves the block back: the refused
            // payment did, so this quiescent state pays even when no grace
            // period waits (before, 1 CI run in about 20 failed here).
            urcu_qsbr_quiescent_state();
            assert!(!owes_push_back(), "not paid once the section ended");

            // Unregistering.
            queued += call_rcu_until_owed();
            crate::common::set_thread_call_rcu_data(std::ptr::null_mut());
            urcu_qsbr_unregister_thread();
            assert!(!owes_push_back(), "not paid at unregistration");

            crate::common::barrier();
            assert_eq!(
                OWED_RAN.load(Ordering::Relaxed),
                queued,
                "a callback was lost"
            );
            // SAFETY: installed nowhere any more, and a grace period
            // (the barrier's) has passed since.
            unsafe { crate::common::call_rcu_data_free(own) };
        })
        .join()
        .unwrap();
    }

    /// Reports (with `report`) and moves the calling thread's block back
    /// (`report_due`), until a move back was not beaten by a grace period
    /// starting (other tests run some).
    fn move_back_after(report: impl Fn()) {
        for _ in 0..10_000 {
            report();
            crate::lgpl::report_due();
            if crate::lgpl::moved_back() {
                return;
            }
        }
        panic!("the block was never moved back");
    }

    /// A thread whose quiescent states are inlined (built with
    /// `_LGPL_SOURCE`) never takes the library's slow path, so its debt is
    /// never paid there: each `call_rcu` that owed moved its block back
    /// again (`report_due`), and it held up nearly every grace period
    /// (liburcu's `test_urcu_hash`: grace periods of about a second, 600 MB
    /// of backlog). Once an inlined quiescent state is seen to have moved
    /// the block past a move back, the thread is moved back no more; one
    /// whose quiescent states call the library is moved back as before.
    #[test]
    fn a_thread_whose_quiescent_states_are_inlined_is_moved_back_once_only() {
        use crate::lgpl::{block, found_inlined, inlined_quiescent_state, report_due};
        std::thread::spawn(|| {
            urcu_qsbr_register_thread();
            // Quiescent states through the library: moved back each time.
            for _ in 0..3 {
                move_back_after(|| urcu_qsbr_quiescent_state());
                urcu_qsbr_quiescent_state();
                report_due();
                assert!(!found_inlined(), "a library call taken for inlined code");
            }
            // One inlined quiescent state past a move back.
            move_back_after(|| urcu_qsbr_quiescent_state());
            inlined_quiescent_state();
            report_due();
            assert!(found_inlined(), "not found inlined");
            for _ in 0..100 {
                inlined_quiescent_state();
                let reported = block();
                report_due();
                assert_eq!(block(), reported, "moved back again");
            }
            urcu_qsbr_unregister_thread();
        })
        .join()
        .unwrap();
    }

    /// Whether a thread's quiescent states are inlined is a property of
    /// the code that registered it: a thread found inlined, unregistered,
    /// then registered again (a pool thread that ran code built with
    /// `_LGPL_SOURCE`, then other code) is moved back again. Before, the
    /// finding outlived the registration, and the thread's library
    /// quiescent states never took the slow path to pay a push-back unless
    /// a grace period happened to wait.
    #[test]
    fn a_thread_found_inlined_is_moved_back_again_once_registered_again() {
        use crate::lgpl::{found_inlined, inlined_quiescent_state, report_due};
        std::thread::spawn(|| {
            urcu_qsbr_register_thread();
            move_back_after(|| urcu_qsbr_quiescent_state());
            inlined_quiescent_state();
            report_due();
            assert!(found_inlined(), "not found inlined");
            urcu_qsbr_unregister_thread();

            urcu_qsbr_register_thread();
            assert!(!found_inlined(), "found inlined before any move back");
            move_back_after(|| urcu_qsbr_quiescent_state());
            urcu_qsbr_quiescent_state();
            report_due();
            assert!(!found_inlined(), "a library call taken for inlined code");
            urcu_qsbr_unregister_thread();
        })
        .join()
        .unwrap();
    }

    /// A signal handler's `call_rcu` that owes, run between the library's
    /// own write of the block and its record of it, does not take that
    /// write for inlined code (the thread would never be moved back
    /// again), nor moves the block back under it.
    #[test]
    fn an_owing_call_inside_the_librarys_own_write_of_the_block_changes_nothing() {
        use crate::lgpl::{
            block, found_inlined, library_quiescent_state_interrupted_by, moved_back, report_due,
        };
        std::thread::spawn(|| {
            urcu_qsbr_register_thread();
            move_back_after(|| urcu_qsbr_quiescent_state());
            let mut during = 0;
            library_quiescent_state_interrupted_by(|| {
                report_due();
                during = block();
            });
            assert!(
                !found_inlined(),
                "the library's write taken for inlined code"
            );
            assert_eq!(block(), during, "moved back under the write");
            assert!(!moved_back());
            urcu_qsbr_unregister_thread();
        })
        .join()
        .unwrap();
    }

    static RAN: AtomicU32 = AtomicU32::new(0);

    unsafe extern "C" fn count(_: *mut c_void) {
        RAN.fetch_add(1, Ordering::Relaxed);
    }

    /// liburcu-qsbr deadlocks here: an online thread blocked on its defer
    /// mutex holds up the grace period that the mutex's holder waits for.
    #[test]
    fn online_threads_deferring_concurrently_do_not_deadlock() {
        const THREADS: u32 = 3;
        const EACH: u32 = 3 * 4096;
        let threads: Vec<_> = (0..THREADS)
            .map(|_| {
                std::thread::spawn(|| {
                    urcu_qsbr_register_thread();
                    for i in 0..EACH {
                        // SAFETY: `count` ignores its argument.
                        unsafe { crate::common::defer_rcu(Some(count), std::ptr::null_mut()) };
                        if i % 64 == 0 {
                            urcu_qsbr_quiescent_state();
                        }
                    }
                    crate::common::defer_barrier_thread();
                    crate::common::defer_unregister_thread();
                    urcu_qsbr_unregister_thread();
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        crate::common::defer_barrier();
        assert_eq!(RAN.load(Ordering::Relaxed), THREADS * EACH);
    }
}
