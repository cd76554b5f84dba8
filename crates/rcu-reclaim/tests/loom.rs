//! Loom models of the read-side / grace-period protocol.
//!
//! ```text
//! RUSTFLAGS="--cfg loom" cargo test -p rcu-reclaim --release --test loom
//! ```
//!
//! Under loom the domain runs the mb flavor (loom cannot model `membarrier`):
//! the memb flavor is the same protocol with the reader's fences supplied by
//! the writer's `membarrier`, so the model covers the ordering argument of
//! both.
#![cfg(loom)]

use loom::sync::atomic::{AtomicU64, Ordering};
use loom::thread;
use rcu_reclaim::{Config, Cookie, Rcu, RcuCell, ReadGuard};

#[path = "common/loom_mutant.rs"]
mod loom_mutant;
use loom_mutant::{mutant_fails, mutation_fails};

const POISON: u64 = u64::MAX;

struct Obj {
    value: AtomicU64,
}

impl Obj {
    fn boxed(v: u64) -> Box<Obj> {
        Box::new(Obj {
            value: AtomicU64::new(v),
        })
    }
}

/// A reader that started before `synchronize()` returned never observes the
/// object the writer poisons after it.
#[test]
fn reader_never_sees_an_object_poisoned_after_synchronize() {
    loom::model(|| {
        let rcu = Rcu::new(Config::new()).unwrap();
        let cell = loom::sync::Arc::new(RcuCell::new_in(&rcu, Some(Obj::boxed(1))));
        let (r, c) = (rcu.clone(), cell.clone());
        let reader = thread::spawn(move || {
            let g = r.read_lock();
            if let Some(obj) = c.load(&g) {
                let v = obj.value.load(Ordering::Relaxed);
                assert_ne!(
                    v, POISON,
                    "reader saw an object poisoned after its grace period"
                );
            }
            drop(g);
        });
        // The writer on a thread of its own, as in every model here:
        // racing from the model's main thread, it met the reader in few
        // interleavings (322 here, 1533 now; BENCHMARKS.md, "Re-run with
        // every racing side on a spawned thread").
        let writer = thread::spawn(move || {
            let old = cell.replace(Obj::boxed(2)).unwrap();
            rcu.synchronize();
            // SAFETY: a grace period elapsed after the unlink.
            let old = unsafe { old.into_box_unchecked() };
            old.value.store(POISON, Ordering::Relaxed);
            drop(old);
        });
        writer.join().unwrap();
        reader.join().unwrap();
    });
}

/// An object whose word is a loom `UnsafeCell`: loom reports any read of
/// it that a later write is not ordered after ("Causality violation"),
/// whether or not the read would have seen the write. (A word that is an
/// atomic shows only what a load returns, and loom never lets a load
/// return a store that comes later in its execution: the poison of an
/// atomic word is missed however weak the ordering that should have kept
/// the reader's load before it.)
struct Data {
    word: loom::cell::UnsafeCell<u64>,
}

// SAFETY: the word is read by readers and written by the writer only in
// the orders the RCU protocol under test enforces; loom checks every
// access against that order.
unsafe impl Sync for Data {}

impl Data {
    fn boxed(v: u64) -> Box<Data> {
        Box::new(Data {
            word: loom::cell::UnsafeCell::new(v),
        })
    }

    fn check(&self) {
        // SAFETY: the access is checked by loom (the point of the model).
        let v = self.word.with(|p| unsafe { *p });
        assert_ne!(
            v, POISON,
            "a reader saw an object poisoned after its grace period"
        );
    }

    /// The writer's poison, once the object is its own again.
    fn poison(&self) {
        // SAFETY: checked by loom: ordered after every reader's access
        // unless the protocol (or the mutant) is broken.
        self.word.with_mut(|p| unsafe { *p = POISON });
    }
}

/// A guard's section against `synchronize`, on a `Data` object: the
/// section's exit (`unlock`, the guard's drop in the protocol) must order
/// the section's read of the old object before the writer's poison, which
/// follows its scan's acquire of the slot's `0`.
fn guard_exit_model(unlock: fn(ReadGuard<'_>)) {
    loom::model(move || {
        let rcu = Rcu::new(Config::new()).unwrap();
        let cell = loom::sync::Arc::new(RcuCell::new_in(&rcu, Some(Data::boxed(1))));
        let (r, c) = (rcu.clone(), cell.clone());
        let reader = thread::spawn(move || {
            let g = r.read_lock();
            if let Some(d) = c.load(&g) {
                d.check();
            }
            unlock(g);
        });
        let writer = thread::spawn(move || {
            let old = cell.replace(Data::boxed(2)).unwrap();
            rcu.synchronize();
            // SAFETY: a grace period elapsed after the unlink.
            unsafe { old.into_box_unchecked() }.poison();
        });
        writer.join().unwrap();
        reader.join().unwrap();
    });
}

#[test]
fn a_guards_exit_orders_its_reads_before_the_free() {
    guard_exit_model(|g| drop(g));
}

/// The writer read before (its thread is a registered reader), and is
/// outside its sections as it synchronizes: the grace period passes over
/// its own slot, which its later sections follow in program order, but
/// not over a reader that registers meanwhile: that one is waited for, or
/// its section sees the unlink.
#[test]
fn a_writer_that_reads_passes_over_its_own_slot_but_not_another_readers() {
    loom::model(move || {
        let rcu = Rcu::new(Config::new()).unwrap();
        let cell = loom::sync::Arc::new(RcuCell::new_in(&rcu, Some(Data::boxed(1))));
        let (r, c) = (rcu.clone(), cell.clone());
        let reader = thread::spawn(move || {
            let g = r.read_lock();
            if let Some(d) = c.load(&g) {
                d.check();
            }
        });
        let writer = thread::spawn(move || {
            if let Some(d) = cell.load(&rcu.read_lock()) {
                d.check();
            }
            let old = cell.replace(Data::boxed(2)).unwrap();
            rcu.synchronize();
            // SAFETY: a grace period elapsed after the unlink.
            unsafe { old.into_box_unchecked() }.poison();
            if let Some(d) = cell.load(&rcu.read_lock()) {
                d.check();
            }
        });
        writer.join().unwrap();
        reader.join().unwrap();
    });
}

/// Mutation check: a section ended with a relaxed store of its slot's `0`
/// (`reader::section_exit_relaxed`, built only under loom) is not ordered
/// before the writer that reads it: the model fails. (Every other model
/// here that reads through a guard reads an atomic word, and passes it.)
#[test]
fn mutation_a_guard_unlocked_with_a_relaxed_store_fails_the_model() {
    mutant_fails(
        "mutant_guard_unlocked_with_a_relaxed_store",
        &["Causality violation"],
    );
}

#[test]
#[ignore = "a mutant that must fail; run (and checked to fail) by \
            mutation_a_guard_unlocked_with_a_relaxed_store_fails_the_model"]
fn mutant_guard_unlocked_with_a_relaxed_store() {
    guard_exit_model(|g| g.unlock_relaxed_for_loom_mutation());
}

/// A writer's `compare_exchange` (inside its own section, as it must be)
/// against a reader: a reader that loads the new value sees it as it was
/// made, after the writer's section began (so that section's entry fence
/// does not release it): the exchange's Release publishes it (the
/// mutation `cell.exchange.release_half`, in `CAUGHT` below, takes it
/// away and fails the model).
#[test]
fn a_value_published_by_compare_exchange_is_seen_as_it_was_made() {
    loom::model(move || {
        let rcu = Rcu::new(Config::new()).unwrap();
        let cell = loom::sync::Arc::new(RcuCell::new_in(&rcu, Some(Data::boxed(1))));
        let (r, c) = (rcu.clone(), cell.clone());
        let reader = thread::spawn(move || {
            let g = r.read_lock();
            if let Some(d) = c.load(&g) {
                d.check();
            }
        });
        let writer = thread::spawn(move || {
            let g = rcu.read_lock();
            let current = cell.load(&g);
            let old = cell
                .compare_exchange(current, Some(Data::boxed(2)), &g)
                .ok()
                .flatten();
            drop(g);
            // Waits for a grace period, then frees the old value.
            drop(old);
        });
        writer.join().unwrap();
        reader.join().unwrap();
    });
}

/// The model above as a function of the domain, for the reader-fence
/// mutation below (the object freed once the reader is done: the poison
/// is the check).
fn poison_model(make: fn() -> Rcu) {
    loom::model(move || {
        let rcu = make();
        let cell = loom::sync::Arc::new(RcuCell::new_in(&rcu, Some(Obj::boxed(1))));
        let (r, c) = (rcu.clone(), cell.clone());
        let reader = thread::spawn(move || {
            let g = r.read_lock();
            if let Some(obj) = c.load(&g) {
                assert_ne!(obj.value.load(Ordering::Relaxed), POISON, "poisoned");
            }
            drop(g);
        });
        let writer = thread::spawn(move || {
            let old = cell.replace(Obj::boxed(2)).unwrap();
            rcu.synchronize();
            // SAFETY: a grace period elapsed after the unlink.
            let old = unsafe { old.into_box_unchecked() };
            old.value.store(POISON, Ordering::Relaxed);
            old
        });
        let old = writer.join().unwrap();
        // Freed after the reader is done, so that a mutant's reader sees
        // the poison (an assertion) rather than loom's freed object.
        reader.join().unwrap();
        drop(old);
    });
}

/// Reader fences (`reader_fences.rs`): a domain whose grace periods skip
/// `membarrier` relies on the fence its readers issue when the domain's
/// flag says so (under loom every domain is in that state). The model
/// passes with the flag set, as the domain leaves it ...
#[test]
fn readers_that_fence_by_the_flag_are_protected() {
    poison_model(|| Rcu::new(Config::new()).unwrap());
}

/// ... and fails when the flag is cleared under the same grace periods:
/// the readers' fence, chosen by the flag, is what protects them.
#[test]
fn mutation_readers_unfenced_under_fenced_grace_periods_fails_the_model() {
    mutant_fails(
        "mutant_readers_unfenced_under_fenced_grace_periods",
        &["poisoned", "Causality violation"],
    );
}

#[test]
#[ignore = "a mutant that must fail; run (and checked to fail) by \
            mutation_readers_unfenced_under_fenced_grace_periods_fails_the_model"]
fn mutant_readers_unfenced_under_fenced_grace_periods() {
    poison_model(|| {
        let rcu = Rcu::new(Config::new()).unwrap();
        rcu.unfence_readers_for_loom_mutation();
        rcu
    });
}

/// The same with a polled cookie completed by another thread's grace period:
/// the freeing thread never ran one itself.
#[test]
fn polled_cookie_completed_by_another_thread_protects_readers() {
    loom::model(|| {
        let rcu = Rcu::new(Config::new()).unwrap();
        let cell = loom::sync::Arc::new(RcuCell::new_in(&rcu, Some(Obj::boxed(1))));
        let (r, c) = (rcu.clone(), cell.clone());
        let reader = thread::spawn(move || {
            let g = r.read_lock();
            if let Some(obj) = c.load(&g) {
                assert_ne!(obj.value.load(Ordering::Relaxed), POISON);
            }
        });
        let writer = thread::spawn(move || {
            let r2 = rcu.clone();
            let old = cell.replace(Obj::boxed(2)).unwrap();
            let gp = thread::spawn(move || r2.synchronize());
            if let Ok(old) = old.try_into_box() {
                // The other thread's grace period covered the unlink.
                old.value.store(POISON, Ordering::Relaxed);
            }
            gp.join().unwrap();
        });
        writer.join().unwrap();
        reader.join().unwrap();
    });
}

/// The model above on a `Data` object, with the cookie taken after the
/// unlink while another thread's `synchronize` runs (started before it,
/// so the snapshot's fence matters: a grace period already past its
/// barrier must not count for the cookie), then polled (`poll`): a poll
/// that says the grace period is over must order the readers' sections
/// that grace period waited for before the caller's free.
fn polled_model(grace_period: fn(&Rcu), poll: fn(&Rcu, &Cookie) -> bool) {
    // Three threads, and polls in a loop: bound 2 keeps it to seconds.
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(2);
    builder.check(move || {
        let rcu = Rcu::new(Config::new()).unwrap();
        let cell = loom::sync::Arc::new(RcuCell::new_in(&rcu, Some(Data::boxed(1))));
        let (r, c) = (rcu.clone(), cell.clone());
        let reader = thread::spawn(move || {
            let g = r.read_lock();
            if let Some(d) = c.load(&g) {
                d.check();
            }
        });
        let r2 = rcu.clone();
        let gp = thread::spawn(move || grace_period(&r2));
        let writer = thread::spawn(move || {
            let old = cell.replace(Data::boxed(2)).unwrap();
            let cookie = rcu.get_state();
            // Polled a few times, yielding between (a single poll does not
            // see the other thread's grace period end within the preemption
            // bound; an unbounded loop runs past loom's branch limit).
            for _ in 0..4 {
                if poll(&rcu, &cookie) {
                    // SAFETY: a grace period that started after the unlink ended.
                    unsafe { old.into_box_unchecked() }.poison();
                    break;
                }
                thread::yield_now();
            }
        });
        writer.join().unwrap();
        gp.join().unwrap();
        reader.join().unwrap();
    });
}

#[test]
fn a_polled_cookie_orders_the_sections_it_waited_for_before_the_free() {
    polled_model(Rcu::synchronize, Rcu::poll);
}

/// The same with the other thread's grace period expedited: its
/// `wait_for_seq` tries the no-reader fast path first itself
/// (`complete_if_no_reader`, whose fence this one needs), where
/// `synchronize` tries `complete_now_if_no_reader`.
#[test]
fn a_polled_cookie_orders_the_sections_an_expedited_grace_period_waited_for() {
    polled_model(Rcu::synchronize_expedited, Rcu::poll);
}

/// The polled model with a reader that takes a section, hands its slot
/// back (`unregister_thread`) and takes another section (claiming a slot
/// again, the one it gave back if no other thread took it): the slot's
/// release and re-claim fall anywhere in the other thread's no-reader try
/// (`complete_now_if_no_reader`: mark, fence, scan of `in_use`). A slot
/// seen free by the scan is claimed again only before a fence that the
/// second section's read follows, so either the scan sees it claimed or
/// that read sees the unlink.
#[test]
fn a_slot_given_back_and_claimed_again_is_never_taken_for_quiescent() {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(2);
    builder.check(|| {
        let rcu = Rcu::new(Config::new()).unwrap();
        let cell = loom::sync::Arc::new(RcuCell::new_in(&rcu, Some(Data::boxed(1))));
        let (r, c) = (rcu.clone(), cell.clone());
        let reader = thread::spawn(move || {
            if let Some(d) = c.load(&r.read_lock()) {
                d.check();
            }
            assert!(r.unregister_thread());
            if let Some(d) = c.load(&r.read_lock()) {
                d.check();
            }
        });
        let r2 = rcu.clone();
        let gp = thread::spawn(move || r2.synchronize());
        let writer = thread::spawn(move || {
            let old = cell.replace(Data::boxed(2)).unwrap();
            let cookie = rcu.get_state();
            for _ in 0..4 {
                if rcu.poll(&cookie) {
                    // SAFETY: a grace period that started after the unlink ended.
                    unsafe { old.into_box_unchecked() }.poison();
                    break;
                }
                thread::yield_now();
            }
        });
        writer.join().unwrap();
        gp.join().unwrap();
        reader.join().unwrap();
    });
}

/// Mutation check: a poll whose load of the sequence is relaxed
/// (`GracePeriods::done_relaxed`, built only under loom) does not acquire
/// the other thread's grace period: the model fails.
#[test]
fn mutation_a_relaxed_poll_fails_the_model() {
    mutant_fails("mutant_relaxed_poll", &["Causality violation"]);
}

#[test]
#[ignore = "a mutant that must fail; run (and checked to fail) by \
            mutation_a_relaxed_poll_fails_the_model"]
fn mutant_relaxed_poll() {
    polled_model(Rcu::synchronize, Rcu::poll_relaxed_for_loom_mutation);
}

/// The grace periods', read side's, `RcuCell`'s and the map's orderings
/// (the library's `sync::LOOM_MUTATION_SITES`), each weakened in turn, and
/// a model here that fails with it (BENCHMARKS.md, "Memory orderings,
/// mutated one at a time"). The sites not listed survive every model, each
/// explained there.
const CAUGHT: &[(&str, &str)] = &[
    (
        "gp.slot_quiescent.acquire",
        "a_guards_exit_orders_its_reads_before_the_free",
    ),
    (
        "gp.snapshot.fence",
        "qsbr::a_registration_during_a_no_reader_try_is_waited_for_or_sees_the_unlink",
    ),
    (
        "gp.done.acquire",
        "qsbr::a_registration_during_a_no_reader_try_is_waited_for_or_sees_the_unlink",
    ),
    (
        "gp.complete_if_no_reader.fence",
        "qsbr::a_registration_during_an_expedited_no_reader_try_is_waited_for_or_sees_the_unlink",
    ),
    (
        "gp.complete.release",
        "qsbr::a_registration_during_a_no_reader_try_is_waited_for_or_sees_the_unlink",
    ),
    (
        "reader.claim.head_acquire",
        "map::a_present_key_is_found_while_the_table_doubles",
    ),
    (
        "reader.claim.push.release_half",
        "nested_reader_is_protected_until_outermost_unlock",
    ),
    (
        "reader.for_each_slot.head_acquire",
        "nested_reader_is_protected_until_outermost_unlock",
    ),
    (
        "reader.any_claimed.acquire",
        "a_guards_exit_orders_its_reads_before_the_free",
    ),
    (
        "reader.let_go.release",
        "map::a_present_key_is_found_while_the_table_doubles",
    ),
    (
        "reader.snapshot.fence",
        "a_guards_exit_orders_its_reads_before_the_free",
    ),
    (
        "reader.section_exit.release",
        "a_guards_exit_orders_its_reads_before_the_free",
    ),
    (
        "reader.qsbr_online.fence",
        "qsbr::a_quiescent_state_orders_the_sections_around_it",
    ),
    (
        "cell.load.acquire",
        "nested_reader_is_protected_until_outermost_unlock",
    ),
    (
        "cell.swap_out.release_half",
        "nested_reader_is_protected_until_outermost_unlock",
    ),
    (
        "cell.exchange.release_half",
        "a_value_published_by_compare_exchange_is_seen_as_it_was_made",
    ),
    (
        "map.search_by.acquire",
        "map::an_inserted_value_is_seen_as_it_was_made",
    ),
    (
        "map.publish.release",
        "map::an_inserted_value_is_seen_as_it_was_made",
    ),
];

#[test]
fn each_caught_mutation_of_the_read_side_fails_its_model() {
    for (site, model) in CAUGHT {
        mutation_fails(
            model,
            site,
            &["Causality violation", "poisoned", "missed", "assertion"],
        );
    }
}

/// Poisons its object when dropped, as a free would.
struct PoisonOnDrop(loom::sync::Arc<Obj>);
rcu_reclaim::reclaim_size!(PoisonOnDrop {});

impl Drop for PoisonOnDrop {
    fn drop(&mut self) {
        self.0.value.store(POISON, Ordering::Relaxed);
    }
}

/// A retiring thread that drives grace periods itself (`try_advance` at
/// each page hand-off, never waiting) and frees what they made ready never
/// frees an object under a reader that could still hold it. `pace_bytes(1)`
/// hands each deferred object's page off at once; the second retire
/// completes the first's grace period if the reader allows it, then frees.
#[test]
fn grace_periods_driven_by_the_retiring_thread_protect_readers() {
    loom::model(|| {
        let rcu = Rcu::new(
            Config::new()
                .topology(rcu_reclaim::topology::Topology::synthetic(1, 1))
                .pace_bytes(1)
                .retiring_thread_frees(true),
        )
        .unwrap();
        let shared = loom::sync::Arc::new(Obj {
            value: AtomicU64::new(1),
        });
        let slot = loom::sync::Arc::new(loom::sync::atomic::AtomicBool::new(true));
        let (r, s, o) = (rcu.clone(), slot.clone(), shared.clone());
        let reader = thread::spawn(move || {
            let g = r.read_lock();
            // "Published" while the flag is set: the object may be read.
            if s.load(Ordering::Acquire) {
                assert_ne!(
                    o.value.load(Ordering::Relaxed),
                    POISON,
                    "a retiring thread freed an object under a reader"
                );
            }
            drop(g);
        });
        // Unlink, then retire; a second retire drives the grace period on.
        let (r, o) = (rcu.clone(), shared.clone());
        let writer = thread::spawn(move || {
            slot.store(false, Ordering::Release);
            r.defer_drop(Box::new(PoisonOnDrop(o)));
            r.defer_drop(Box::new(0u8));
            r.defer_drop(Box::new(0u8));
        });
        writer.join().unwrap();
        reader.join().unwrap();
        rcu.barrier();
        assert_eq!(shared.value.load(Ordering::Relaxed), POISON);
    });
}

/// Nested sections: the grace period waits for the outermost unlock.
#[test]
fn nested_reader_is_protected_until_outermost_unlock() {
    loom::model(|| {
        let rcu = Rcu::new(Config::new()).unwrap();
        let cell = loom::sync::Arc::new(RcuCell::new_in(&rcu, Some(Obj::boxed(1))));
        let (r, c) = (rcu.clone(), cell.clone());
        let reader = thread::spawn(move || {
            let outer = r.read_lock();
            let seen = {
                let inner = r.read_lock();
                let p = c.load(&inner).map(|o| o as *const Obj);
                drop(inner);
                p
            };
            if let Some(p) = seen {
                // Still inside `outer`: the object must be intact.
                // SAFETY: `outer` keeps the object alive.
                let v = unsafe { (*p).value.load(Ordering::Relaxed) };
                assert_ne!(v, POISON);
            }
            drop(outer);
        });
        let writer = thread::spawn(move || {
            let old = cell.replace(Obj::boxed(2)).unwrap();
            let old = old.into_box();
            old.value.store(POISON, Ordering::Relaxed);
        });
        writer.join().unwrap();
        reader.join().unwrap();
    });
}

mod callbacks {
    use super::*;
    use loom::sync::atomic::AtomicUsize;
    use loom::sync::Arc;
    use rcu_reclaim::topology::Topology;

    fn domain() -> Rcu {
        Rcu::new(Config::new().topology(Topology::synthetic(1, 1))).unwrap()
    }

    /// Each thread's barrier runs every callback that thread queued before
    /// it, whatever the other thread does meanwhile; at the end every
    /// callback has run exactly once.
    #[test]
    fn barrier_runs_what_was_queued_before_it_exactly_once() {
        loom::model(|| {
            let rcu = domain();
            let a = Arc::new(AtomicUsize::new(0));
            let b = Arc::new(AtomicUsize::new(0));
            let (r, a2) = (rcu.clone(), a.clone());
            let t = thread::spawn(move || {
                let a3 = a2.clone();
                r.call(move || {
                    a3.fetch_add(1, Ordering::Relaxed);
                });
                r.barrier();
                assert_eq!(a2.load(Ordering::Relaxed), 1);
            });
            // On a thread of its own, as `t` (see
            // `stealing_a_page_from_a_busy_owner_loses_nothing`).
            let (r, b2) = (rcu.clone(), b.clone());
            let u = thread::spawn(move || {
                let b3 = b2.clone();
                r.call(move || {
                    b3.fetch_add(1, Ordering::Relaxed);
                });
                r.barrier();
                assert_eq!(b2.load(Ordering::Relaxed), 1);
            });
            u.join().unwrap();
            t.join().unwrap();
            rcu.barrier();
            assert_eq!(a.load(Ordering::Relaxed), 1);
            assert_eq!(b.load(Ordering::Relaxed), 1);
        });
    }

    struct Counted(Arc<AtomicUsize>);
    rcu_reclaim::reclaim_size!(Counted {});
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A barrier that steals a thread's bulk page while the owner is adding
    /// to it (the busy/steal handshake): nothing is lost or dropped twice,
    /// and loom checks the page is never accessed by both at once. (Thread
    /// exit is covered by the std tests: loom runs thread-local destructors
    /// outside its model.)
    #[test]
    fn stealing_a_page_from_a_busy_owner_loses_nothing() {
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = Some(3);
        builder.check(|| {
            let rcu = domain();
            let drops = Arc::new(AtomicUsize::new(0));
            let done = Arc::new(AtomicUsize::new(0));
            let (r, d, done2) = (rcu.clone(), drops.clone(), done.clone());
            let owner = thread::spawn(move || {
                r.defer_drop(Box::new(Counted(d.clone()))); // installs the page
                r.defer_drop(Box::new(Counted(d))); // fast path
                done2.store(1, Ordering::Release);
                // Stay alive: thread exit is modelled separately.
                while done2.load(Ordering::Acquire) != 2 {
                    thread::yield_now();
                }
            });
            // Races with the owner's pushes, on a thread of its own: run
            // on the model's main thread, it met the owner in few
            // interleavings, and the model caught none of the mutations
            // below.
            let r = rcu.clone();
            thread::spawn(move || r.barrier()).join().unwrap();
            while done.load(Ordering::Acquire) != 1 {
                thread::yield_now();
            }
            rcu.barrier();
            assert_eq!(drops.load(Ordering::Relaxed), 2, "{:?}", rcu.stats());
            assert_eq!(rcu.pending(), 0);
            done.store(2, Ordering::Release);
            owner.join().unwrap();
        });
    }

    /// The page's handshake, each of its orderings weakened in turn (the
    /// library's `sync::LOOM_MUTATION_SITES`): the model above fails. (The
    /// drain's sites are checked by the library's own loom models, in
    /// `callbacks/local.rs`.)
    #[test]
    fn mutations_of_the_page_handshake_fail_the_model() {
        for site in [
            "try_push.owner_fence",
            "try_push.steal_acquire",
            "try_push.busy_release",
            "with_owner_out.barrier",
            "with_owner_out.busy_acquire",
        ] {
            mutation_fails(
                "callbacks::stealing_a_page_from_a_busy_owner_loses_nothing",
                site,
                &["Causality violation"],
            );
        }
    }
}

/// The QSBR flavor's quiescent-state protocol: a registered thread reads
/// in free sections and reports quiescent states (or goes offline); a
/// writer unlinks, waits for a grace period, then writes the old object.
/// The object's word is a loom `UnsafeCell`, so loom reports any read of
/// it that the writer's write is not ordered after ("Causality
/// violation"), whether or not the read would have seen the write.
mod qsbr {
    use super::*;
    use loom::sync::Arc;
    use rcu_reclaim::topology::Topology;
    use rcu_reclaim::{Flavor, QsbrThread};

    fn domain() -> Rcu {
        Rcu::new(
            Config::new()
                .flavor(Flavor::Qsbr)
                .topology(Topology::synthetic(1, 1)),
        )
        .unwrap()
    }

    /// Reader: registers (comes online), reads in a section, reports with
    /// `report`, reads in a second section, unregisters. Writer: unlinks,
    /// `synchronize`, poisons the old object. A report that comes too early
    /// lets the poison race the first section's read; one whose counter
    /// load is not an acquire lets the second section's read race it.
    fn report_model(report: fn(&mut QsbrThread)) {
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = builder.preemption_bound.or(Some(3));
        builder.check(move || {
            let rcu = domain();
            let cell = Arc::new(RcuCell::new_in(&rcu, Some(Data::boxed(1))));
            let (r, c) = (rcu.clone(), cell.clone());
            let reader = thread::spawn(move || {
                let mut t = r.register_qsbr_thread();
                if let Some(d) = c.load(&t.read_lock()) {
                    d.check();
                }
                report(&mut t);
                if let Some(d) = c.load(&t.read_lock()) {
                    d.check();
                }
            });
            let writer = thread::spawn(move || {
                let old = cell.replace(Data::boxed(2)).unwrap();
                rcu.synchronize();
                // SAFETY: a grace period elapsed after the unlink.
                let old = unsafe { old.into_box_unchecked() };
                // SAFETY: checked by loom: ordered after every reader's access
                // unless the protocol (or the mutant) is broken.
                old.word.with_mut(|p| unsafe { *p = POISON });
                drop(old);
            });
            writer.join().unwrap();
            reader.join().unwrap();
        });
    }

    #[test]
    fn a_quiescent_state_orders_the_sections_around_it() {
        report_model(QsbrThread::quiescent_state);
    }

    /// Mutation check: a quiescent state reported without the fence before
    /// its store (`reader::qsbr_report_without_fence_a`, built only under
    /// loom) is not ordered after the section it ends: the model fails.
    #[test]
    fn mutation_a_report_without_its_first_fence_fails_the_model() {
        super::mutant_fails(
            "qsbr::mutant_report_without_its_first_fence",
            &["Causality violation"],
        );
    }

    #[test]
    #[ignore = "a mutant that must fail; run (and checked to fail) by \
                mutation_a_report_without_its_first_fence_fails_the_model"]
    fn mutant_report_without_its_first_fence() {
        report_model(QsbrThread::quiescent_state_without_fence_for_loom_mutation);
    }

    /// Mutation check on the user's side: a reference kept past the
    /// quiescent state (smuggled out of its section through a raw pointer;
    /// the borrow rules forbid it in safe code) is a report that comes too
    /// early: the model fails.
    #[test]
    fn mutation_a_reference_used_after_its_quiescent_state_fails_the_model() {
        super::mutant_fails(
            "qsbr::mutant_reference_used_after_its_quiescent_state",
            &["Causality violation"],
        );
    }

    #[test]
    #[ignore = "a mutant that must fail; run (and checked to fail) by \
                mutation_a_reference_used_after_its_quiescent_state_fails_the_model"]
    fn mutant_reference_used_after_its_quiescent_state() {
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = builder.preemption_bound.or(Some(3));
        builder.check(|| {
            let rcu = domain();
            let cell = Arc::new(RcuCell::new_in(&rcu, Some(Data::boxed(1))));
            let (r, c) = (rcu.clone(), cell.clone());
            let reader = thread::spawn(move || {
                let mut t = r.register_qsbr_thread();
                let p = c.load(&t.read_lock()).map(|d| d as *const Data);
                t.quiescent_state();
                if let Some(p) = p {
                    // SAFETY: none: this is the bug the model must catch.
                    unsafe { (*p).check() };
                }
            });
            let writer = thread::spawn(move || {
                let old = cell.replace(Data::boxed(2)).unwrap();
                rcu.synchronize();
                // SAFETY: a grace period elapsed after the unlink.
                let old = unsafe { old.into_box_unchecked() };
                // SAFETY: checked by loom: ordered after every reader's access
                // unless the protocol (or the mutant) is broken.
                old.word.with_mut(|p| unsafe { *p = POISON });
                drop(old);
            });
            writer.join().unwrap();
            reader.join().unwrap();
        });
    }

    /// The polled model of `tests/loom.rs` with a QSBR thread that
    /// registers (claims a slot, comes online) while another thread runs
    /// `synchronize` (`grace_period`), whose no-reader try may scan the
    /// slots at any point of the registration: a registration the scan
    /// misses is online only after the fence in `qsbr_online`, so its
    /// section sees the unlink; one it sees starts a grace period that
    /// waits for the thread's report (here: its unregistration).
    fn registration_polled_model(grace_period: fn(&Rcu)) {
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = Some(2);
        builder.check(move || {
            let rcu = domain();
            let cell = Arc::new(RcuCell::new_in(&rcu, Some(Data::boxed(1))));
            let (r, c) = (rcu.clone(), cell.clone());
            let reader = thread::spawn(move || {
                let t = r.register_qsbr_thread();
                if let Some(d) = c.load(&t.read_lock()) {
                    d.check();
                }
            });
            let r2 = rcu.clone();
            let gp = thread::spawn(move || grace_period(&r2));
            let writer = thread::spawn(move || {
                let old = cell.replace(Data::boxed(2)).unwrap();
                let cookie = rcu.get_state();
                for _ in 0..4 {
                    if rcu.poll(&cookie) {
                        // SAFETY: a grace period that started after the unlink ended.
                        unsafe { old.into_box_unchecked() }.poison();
                        break;
                    }
                    thread::yield_now();
                }
            });
            writer.join().unwrap();
            gp.join().unwrap();
            reader.join().unwrap();
        });
    }

    #[test]
    fn a_registration_during_a_no_reader_try_is_waited_for_or_sees_the_unlink() {
        registration_polled_model(Rcu::synchronize);
    }

    #[test]
    fn a_registration_during_an_expedited_no_reader_try_is_waited_for_or_sees_the_unlink() {
        registration_polled_model(Rcu::synchronize_expedited);
    }

    /// Offline and back online: a grace period may end while the thread is
    /// offline, and a section after it comes back online sees the unlink.
    #[test]
    fn offline_then_online_orders_the_sections_around_it() {
        report_model(|t| {
            let off = std::mem::replace(t, t.domain().register_qsbr_thread()).thread_offline();
            // The registration taken as a placeholder above is dropped here
            // (going away online is allowed); `off` comes back online.
            *t = off.thread_online();
        });
    }
}

mod map {
    use super::*;
    use loom::sync::Arc;
    use rcu_reclaim::topology::Topology;
    use rcu_reclaim::RcuHashMap;
    use std::collections::hash_map::DefaultHasher;
    use std::hash::BuildHasherDefault;

    /// A hasher without random keys: loom replays each execution.
    type Fixed = BuildHasherDefault<DefaultHasher>;

    fn map(rcu: &Rcu) -> Arc<RcuHashMap<u64, PoisonOnDrop, Fixed>> {
        Arc::new(RcuHashMap::with_capacity_and_hasher_in(
            0,
            Fixed::default(),
            rcu,
        ))
    }

    /// A domain, the object every value poisons when dropped, and an empty
    /// map, for `body` under loom (preemption bound 2: the resize models
    /// are large).
    fn check_resize(
        body: impl Fn(Rcu, Arc<Obj>, Arc<RcuHashMap<u64, PoisonOnDrop, Fixed>>) + Sync + Send + 'static,
    ) {
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = Some(2);
        builder.check(move || {
            let rcu = Rcu::new(Config::new().topology(Topology::synthetic(1, 1))).unwrap();
            let shared = Arc::new(Obj {
                value: AtomicU64::new(1),
            });
            let map = map(&rcu);
            body(rcu, shared, map);
        });
    }

    /// A reader that finds an entry while a writer removes it never sees
    /// its value dropped: the map retires it through the domain.
    #[test]
    fn a_removed_value_is_not_dropped_under_a_reader() {
        loom::model(|| {
            let rcu = Rcu::new(Config::new().topology(Topology::synthetic(1, 1))).unwrap();
            let shared = Arc::new(Obj {
                value: AtomicU64::new(1),
            });
            let map = map(&rcu);
            map.insert(1, PoisonOnDrop(shared.clone()));
            let (r, m) = (rcu.clone(), map.clone());
            let reader = thread::spawn(move || {
                let g = r.read_lock();
                if let Some(v) = m.get(&1, &g) {
                    assert_ne!(v.0.value.load(Ordering::Relaxed), POISON);
                }
            });
            let (r, m) = (rcu.clone(), map.clone());
            let writer = thread::spawn(move || {
                assert!(m.remove(&1));
                r.barrier();
            });
            writer.join().unwrap();
            assert_eq!(shared.value.load(Ordering::Relaxed), POISON);
            reader.join().unwrap();
        });
    }

    /// A value whose word is a loom `UnsafeCell` written as it is made (by
    /// the inserting thread): loom reports a reader's read of it that the
    /// making is not ordered before.
    struct Made(loom::cell::UnsafeCell<u64>);
    rcu_reclaim::reclaim_size!(Made {});

    // SAFETY: the word is written only when the value is made, before it
    // is published; loom checks every read against that write.
    unsafe impl Sync for Made {}

    type Insert = fn(&RcuHashMap<u64, Made, Fixed>, u64, Made) -> bool;

    /// A reader that finds an entry while another thread inserts it sees
    /// the entry as it was made: the link's Release store, acquired by the
    /// reader's walk, publishes the node's key and value. (The models
    /// above read values made before the reader started, which pass with
    /// the link relaxed.) The domain's sections do not fence
    /// (`Rcu::unfenced_sections_for_loom`), as a memb domain's do not
    /// between its grace periods' `membarrier`s: a fence at the entry of
    /// the insert's own section, after the value was made, would release
    /// it with the relaxed link (and loom makes each `SeqCst` fence acquire
    /// everything before every earlier one). The inserting thread
    /// registers before the value is made, for its registration's fence
    /// too. Nothing is freed, so grace periods (unsound without
    /// `membarrier`, which loom lacks) play no part.
    fn insert_model(insert: Insert) {
        loom::model(move || {
            let rcu = Rcu::new(Config::new().topology(Topology::synthetic(1, 1))).unwrap();
            rcu.unfenced_sections_for_loom();
            let map: Arc<RcuHashMap<u64, Made, Fixed>> = Arc::new(
                RcuHashMap::with_capacity_and_hasher_in(0, Fixed::default(), &rcu),
            );
            let (r, m) = (rcu.clone(), map.clone());
            let reader = thread::spawn(move || {
                let g = r.read_lock();
                if let Some(v) = m.get(&1, &g) {
                    // SAFETY: checked by loom (the point of the model).
                    assert_eq!(v.0.with(|p| unsafe { *p }), 7);
                }
            });
            // The inserting thread registers before the value is made.
            let (r, m) = (rcu.clone(), map.clone());
            let writer = thread::spawn(move || {
                drop(r.read_lock());
                assert!(insert(&m, 1, Made(loom::cell::UnsafeCell::new(7))));
            });
            writer.join().unwrap();
            reader.join().unwrap();
        });
    }

    #[test]
    fn an_inserted_value_is_seen_as_it_was_made() {
        insert_model(RcuHashMap::insert);
    }

    /// Mutation check: an insert that links its node with a relaxed store
    /// (`list::with_relaxed_links`, built only under loom) publishes a
    /// value the reader's read is not ordered after: the model fails.
    #[test]
    fn mutation_an_insert_linked_relaxed_fails_the_model() {
        super::mutant_fails(
            "map::mutant_insert_linked_relaxed",
            &["Causality violation"],
        );
    }

    #[test]
    #[ignore = "a mutant that must fail; run (and checked to fail) by \
                mutation_an_insert_linked_relaxed_fails_the_model"]
    fn mutant_insert_linked_relaxed() {
        insert_model(RcuHashMap::insert_relaxed_for_loom_mutation);
    }

    /// An insert over a present key (the new node put in the old one's
    /// place by `unlink`): a reader that finds the key sees the old value,
    /// made before it started, or the new one as it was made. The rest as
    /// in `insert_model`.
    fn replace_model(insert: Insert) {
        loom::model(move || {
            let rcu = Rcu::new(Config::new().topology(Topology::synthetic(1, 1))).unwrap();
            rcu.unfenced_sections_for_loom();
            let map: Arc<RcuHashMap<u64, Made, Fixed>> = Arc::new(
                RcuHashMap::with_capacity_and_hasher_in(0, Fixed::default(), &rcu),
            );
            map.insert(1, Made(loom::cell::UnsafeCell::new(5)));
            let (r, m) = (rcu.clone(), map.clone());
            let reader = thread::spawn(move || {
                let g = r.read_lock();
                let v = m.get(&1, &g).expect("key 1 missed");
                // SAFETY: checked by loom (the point of the model).
                let v = v.0.with(|p| unsafe { *p });
                assert!(v == 5 || v == 7, "{v}");
            });
            let (r, m) = (rcu.clone(), map.clone());
            let writer = thread::spawn(move || {
                drop(r.read_lock());
                assert!(!insert(&m, 1, Made(loom::cell::UnsafeCell::new(7))));
            });
            writer.join().unwrap();
            reader.join().unwrap();
        });
    }

    #[test]
    fn a_replacing_value_is_seen_as_it_was_made() {
        replace_model(RcuHashMap::insert);
    }

    /// Mutation check: the replacing node put in place with a relaxed
    /// store (`list::with_relaxed_links`, as above): the model fails.
    #[test]
    fn mutation_a_replace_linked_relaxed_fails_the_model() {
        super::mutant_fails(
            "map::mutant_replace_linked_relaxed",
            &["Causality violation"],
        );
    }

    #[test]
    #[ignore = "a mutant that must fail; run (and checked to fail) by \
                mutation_a_replace_linked_relaxed_fails_the_model"]
    fn mutant_replace_linked_relaxed() {
        replace_model(RcuHashMap::insert_relaxed_for_loom_mutation);
    }

    /// A key present throughout is found while another insert doubles the
    /// table (its dummies linked under the stripe locks, then published).
    #[test]
    fn a_present_key_is_found_while_the_table_doubles() {
        check_resize(|rcu, shared, map| {
            let before = map.capacity();
            for k in 0..before as u64 {
                map.insert(k, PoisonOnDrop(shared.clone()));
            }
            let (r, m) = (rcu.clone(), map.clone());
            let reader = thread::spawn(move || {
                let g = r.read_lock();
                for k in 0..before as u64 {
                    assert!(m.get(&k, &g).is_some(), "key {k} missed");
                }
            });
            let (m, s) = (map.clone(), shared.clone());
            let writer = thread::spawn(move || {
                m.insert(before as u64, PoisonOnDrop(s));
            });
            writer.join().unwrap();
            assert_eq!(map.capacity(), 2 * before);
            reader.join().unwrap();
        });
    }

    /// A key present throughout is found while a remove halves the table
    /// (the smaller table published, then the top level's dummies unlinked
    /// under the stripe locks and their array retired), and the retired
    /// level is freed only after the reader's section.
    #[test]
    fn a_present_key_is_found_while_the_table_halves() {
        check_resize(|rcu, shared, map| {
            let min = map.capacity();
            // Grow to 8 times the initial size: 1 key left is then under an
            // eighth, and the last remove halves.
            let mut k = 1;
            while map.capacity() < 8 * min {
                map.insert(k, PoisonOnDrop(shared.clone()));
                k += 1;
            }
            let big = map.capacity();
            for j in 2..k - 1 {
                assert!(map.remove(&j));
            }
            assert_eq!(map.capacity(), big);
            let (r, m) = (rcu.clone(), map.clone());
            let reader = thread::spawn(move || {
                let g = r.read_lock();
                let v = m.get(&1, &g).expect("key 1 missed");
                assert_ne!(v.0.value.load(Ordering::Relaxed), POISON);
            });
            let m = map.clone();
            let writer = thread::spawn(move || {
                assert!(m.remove(&(k - 1)));
            });
            writer.join().unwrap();
            assert!(map.capacity() < big);
            reader.join().unwrap();
            rcu.barrier();
        });
    }
}

/// The bound on garbage under a memory limit (`Rcu::bound_garbage`, and a
/// `MemoryBudget`'s own bound): a thread reads the limit's usage (as
/// `memory_state` does, and a retire over the allowance) outside the
/// limit's lock, and stores the allowance and memory state it makes of it
/// under the lock, only if that limit is still the one set. A limit
/// removed (or replaced) meanwhile keeps what its removal stored: no
/// allowance (or its replacement's floor) and `Plenty`. Left out, a read
/// of the removed limit bounded the garbage again, by a limit no one set.
mod headroom {
    use super::*;
    use rcu_reclaim::pressure::MemoryState;

    #[test]
    fn a_read_of_a_removed_limit_leaves_the_garbage_unbounded() {
        loom::model(|| {
            let rcu = Rcu::new(Config::new()).unwrap();
            // Over the mark: a read makes the state `OverMark`, and an
            // allowance of the limit's floor.
            rcu.bound_garbage(64 << 20, || Some(80 << 20));
            let r = rcu.clone();
            let reader = thread::spawn(move || {
                let _ = r.memory_state();
            });
            let r = rcu.clone();
            let remover = thread::spawn(move || r.unbound_garbage());
            reader.join().unwrap();
            remover.join().unwrap();
            assert!(
                !rcu.garbage_bounded(),
                "a read of the removed limit bounded the garbage again"
            );
            assert_eq!(rcu.memory_state(), MemoryState::Plenty);
        });
    }

    /// The model fails with the check left out.
    #[test]
    fn the_model_fails_without_the_check_for_the_same_limit() {
        mutation_fails(
            "headroom::a_read_of_a_removed_limit_leaves_the_garbage_unbounded",
            "headroom.refresh.same_limit",
            &["bounded the garbage again"],
        );
    }
}
