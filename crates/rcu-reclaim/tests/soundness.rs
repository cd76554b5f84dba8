//! Regression tests for soundness and liveness defects found by misuse
//! programs: each failed (or hung) before its fix.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::Duration;

use rcu_reclaim::{Config, Rcu, RcuCell};

mod common;
use common::StopOnDrop;

/// Long enough for an unblocked writer to finish many times over.
const BLOCKED: Duration = Duration::from_millis(300);
/// Generous bound for something that must happen (slow CI, valgrind).
const SOON: Duration = Duration::from_secs(20);

/// The panic hook is process-wide: tests that silence it take turns.
static QUIET: Mutex<()> = Mutex::new(());

/// Runs `f` with the process's panic output silenced (expected panics).
fn quietly<R>(f: impl FnOnce() -> R) -> R {
    let _turn = QUIET.lock().unwrap_or_else(|p| p.into_inner());
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let r = f();
    std::panic::set_hook(hook);
    r
}

/// Whether a `store_sync` on another thread is held up by this thread's
/// section: it must not finish within `BLOCKED`. Returns the receiver that
/// reports when it does finish.
fn writer_waits(cell: &Arc<RcuCell<u64>>, value: u64) -> mpsc::Receiver<()> {
    let (tx, rx) = mpsc::channel();
    let c = cell.clone();
    thread::spawn(move || {
        c.store_sync(Box::new(value));
        let _ = tx.send(());
    });
    assert!(
        rx.recv_timeout(BLOCKED).is_err(),
        "a writer's grace period completed while this thread's section was open"
    );
    rx
}

/// A raw unlock can end only a raw section, never a guard's: the guard's
/// value stays protected, and the nesting count never goes below zero (so
/// later sections on the thread still protect).
#[test]
fn a_raw_unlock_cannot_end_a_guards_section() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let cell = Arc::new(RcuCell::new_in(&rcu, Some(Box::new(7u64))));

    let g = rcu.read_lock();
    let v = cell.load(&g).unwrap();
    assert!(!rcu.read_unlock_raw(), "no raw section is open");
    assert!(rcu.in_read_section());
    let done = writer_waits(&cell, 8);
    assert_eq!(*v, 7);
    drop(g);
    done.recv_timeout(SOON)
        .expect("the writer finishes once the guard drops");
    assert!(!rcu.in_read_section());

    // The count did not wrap: a new section protects again.
    let g = rcu.read_lock();
    assert_eq!(*cell.load(&g).unwrap(), 8);
    let done = writer_waits(&cell, 9);
    drop(g);
    done.recv_timeout(SOON).unwrap();
}

/// Raw sections and guards interleave in any order; the section lasts while
/// either kind is open.
#[test]
fn raw_sections_and_guards_interleave() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let cell = Arc::new(RcuCell::new_in(&rcu, Some(Box::new(1u64))));

    rcu.read_lock_raw();
    let g = rcu.read_lock();
    assert!(rcu.read_unlock_raw());
    assert!(!rcu.read_unlock_raw(), "the guard's level is not a raw one");
    let done = writer_waits(&cell, 2);
    drop(g);
    done.recv_timeout(SOON).unwrap();

    let g = rcu.read_lock();
    rcu.read_lock_raw();
    drop(g);
    assert!(rcu.in_read_section());
    let done = writer_waits(&cell, 3);
    assert!(rcu.read_unlock_raw());
    done.recv_timeout(SOON).unwrap();
    assert!(!rcu.in_read_section());
}

/// After a thread exited inside a section: grace periods complete, its
/// slot is not counted as registered, and a new thread registers and reads.
fn slot_abandoned_and_domain_usable(rcu: &Rcu) {
    rcu.synchronize();
    assert_eq!(rcu.stats().registered_readers, 0);
    let r = rcu.clone();
    thread::spawn(move || {
        let _g = r.read_lock();
        assert_eq!(r.stats().registered_readers, 1);
    })
    .join()
    .unwrap();
    rcu.synchronize();
}

/// No slot of `rcu` is claimed: a grace period completes at once, without
/// the writer's barrier (a claimed slot, even a quiescent one, costs one).
fn assert_no_slot_claimed(rcu: &Rcu) {
    rcu.synchronize();
    let before = rcu.stats().membarriers;
    rcu.synchronize();
    assert_eq!(
        rcu.stats().membarriers,
        before,
        "a slot of an exited thread is still claimed: {:?}",
        rcu.stats()
    );
}

/// A thread that exits inside raw sections only (never unlocked) releases
/// grace periods once it is gone, and its slot is not handed to another
/// thread (a late unlock on the exiting thread must never touch a slot
/// someone else owns).
#[test]
#[cfg_attr(
    miri,
    ignore = "Miri cannot tell that a thread has exited (no tgkill, no /proc)"
)]
fn a_thread_exiting_inside_a_raw_section_abandons_its_slot() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let r = rcu.clone();
    thread::spawn(move || r.read_lock_raw()).join().unwrap();
    slot_abandoned_and_domain_usable(&rcu);
}

/// A value whose drop poisons it, to see a reference read after the free.
struct Poisoned(std::sync::atomic::AtomicU64);

const ALIVE: u64 = 0x600d_600d_600d_600d;

impl Drop for Poisoned {
    fn drop(&mut self) {
        self.0.store(0xdead_dead_dead_dead, Ordering::SeqCst);
    }
}

/// Whether a writer replacing `cell`'s value (and freeing the old one) is
/// held up: it must not finish within `BLOCKED`. The writer runs on a
/// thread of its own, left blocked for good when it is.
fn freeing_is_held_up(cell: &'static RcuCell<Poisoned>) -> bool {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let old = cell.replace(Box::new(Poisoned(ALIVE.into()))).unwrap();
        drop(old.into_box());
        let _ = tx.send(());
    });
    rx.recv_timeout(BLOCKED).is_err()
}

/// A guard leaked (`Box::leak`) lends a `&'static T`, which safe code may
/// send to another thread (`&T` is `Send` for `T: Sync`). The reading
/// thread then exits: its section must still hold grace periods up, for
/// good. Before: a grace period ended the section of a thread that was
/// gone, and the value was freed under the other thread's reference (it
/// read freed memory).
/// A domain of `config` and a cell in it holding a live value, both
/// leaked: what a `&'static` reference from a leaked section needs.
fn leaked_cell(config: Config) -> (&'static Rcu, &'static RcuCell<Poisoned>) {
    let rcu: &'static Rcu = Box::leak(Box::new(Rcu::new(config).unwrap()));
    let cell = Box::leak(Box::new(RcuCell::new_in(
        rcu,
        Some(Box::new(Poisoned(ALIVE.into()))),
    )));
    (rcu, cell)
}

#[test]
fn a_reference_from_a_leaked_guard_outlives_its_thread_safely() {
    let (rcu, cell) = leaked_cell(Config::new());
    let value: &'static Poisoned = thread::spawn(move || {
        let guard: &'static rcu_reclaim::ReadGuard<'static> = Box::leak(Box::new(rcu.read_lock()));
        cell.load(guard).unwrap()
    })
    .join()
    .unwrap();
    assert!(
        freeing_is_held_up(cell),
        "the value was freed under a reference from a leaked guard"
    );
    assert_eq!(value.0.load(Ordering::SeqCst), ALIVE);
    assert_eq!(rcu.stats().registered_readers, 0, "the slot is not counted");
    // Reported at once (its thread is gone, nothing can end the section),
    // not after the 21 s stall timeout, and once only. (Miri cannot tell
    // that a thread has exited: no tgkill.)
    if !cfg!(miri) {
        thread::sleep(BLOCKED);
        assert_eq!(rcu.stats().stalls_reported, 1, "{:?}", rcu.stats());
    }
}

/// Dropping the last handle of a domain that a thread left inside a
/// guard's section as it exited returns (no grace period can end, so the
/// pending callbacks are never run, rather than run under a reference the
/// guard lent). Before the fix above, the grace period ended that section;
/// with it alone, the drop waited for good.
#[test]
fn dropping_a_domain_left_inside_a_section_by_an_exited_thread_returns() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let r = rcu.clone();
    thread::spawn(move || std::mem::forget(r.read_lock()))
        .join()
        .unwrap();
    let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let r = ran.clone();
    rcu.call(move || r.store(true, Ordering::SeqCst));
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        drop(rcu);
        let _ = tx.send(());
    });
    rx.recv_timeout(SOON)
        .expect("dropping the domain waited for a section no grace period can end");
    thread::sleep(BLOCKED);
    assert!(
        !ran.load(Ordering::SeqCst),
        "a callback ran without a grace period"
    );
}

/// As above, with a leaked online QSBR registration and a leaked guard of
/// it: the registration stays online once its thread is gone.
#[test]
fn a_reference_from_a_leaked_qsbr_registration_outlives_its_thread_safely() {
    use rcu_reclaim::{Flavor, QsbrGuard, QsbrThread};
    let (rcu, cell) = leaked_cell(Config::new().flavor(Flavor::Qsbr));
    let value: &'static Poisoned = thread::spawn(move || {
        let thread: &'static QsbrThread = Box::leak(Box::new(rcu.register_qsbr_thread()));
        let guard: &'static QsbrGuard<'static> = Box::leak(Box::new(thread.read_lock()));
        cell.load(guard).unwrap()
    })
    .join()
    .unwrap();
    assert!(
        freeing_is_held_up(cell),
        "the value was freed under a reference from a leaked QSBR registration"
    );
    assert_eq!(value.0.load(Ordering::SeqCst), ALIVE);
}

/// A guard kept in a thread-local that is destroyed after the thread's
/// reader registration: its late drop finds the abandoned slot, not a slot
/// handed to another thread, and never takes the nesting count below zero
/// (before: the count wrapped, or a debug build aborted in the destructor).
#[test]
fn a_guard_outliving_the_registration_drops_cleanly() {
    use rcu_reclaim::ReadGuard;
    use std::cell::RefCell;
    thread_local! {
        static HELD: RefCell<Option<ReadGuard<'static>>> = const { RefCell::new(None) };
    }
    let rcu: &'static Rcu = Box::leak(Box::new(Rcu::new(Config::new()).unwrap()));
    thread::spawn(move || {
        // Touched first, so destroyed last (thread-local destructors run in
        // reverse order of first use): after the registration.
        HELD.with(|_| {});
        let g = rcu.read_lock();
        HELD.with(|h| *h.borrow_mut() = Some(g));
    })
    .join()
    .expect("the exiting thread's destructors ran without panicking");
    slot_abandoned_and_domain_usable(rcu);
    // Not a mistake: no stall is reported for it.
    assert_eq!(rcu.stats().stalls_reported, 0, "{:?}", rcu.stats());
}

/// Threads that exit with a guard kept in a thread-local leave no slot
/// claimed once those guards drop: a grace period with no reader left
/// completes at once, without the writer's barrier (before: each such
/// thread's slot stayed claimed for good, so every later grace period of
/// the domain paid the barrier and the scan, and thread churn grew the
/// registry without bound).
#[test]
fn threads_exiting_with_a_guard_in_a_thread_local_give_their_slots_back() {
    use rcu_reclaim::ReadGuard;
    use std::cell::RefCell;
    thread_local! {
        static HELD: RefCell<Option<ReadGuard<'static>>> = const { RefCell::new(None) };
    }
    let rcu: &'static Rcu = Box::leak(Box::new(Rcu::new(Config::new()).unwrap()));
    // The measure holds: a domain no thread reads in issues no barrier.
    assert_no_slot_claimed(rcu);
    for _ in 0..20 {
        thread::spawn(move || {
            HELD.with(|_| {}); // destroyed after the registration
            let outer = rcu.read_lock();
            let inner = rcu.read_lock();
            HELD.with(|h| *h.borrow_mut() = Some(outer));
            drop(inner);
        })
        .join()
        .unwrap();
    }
    assert_no_slot_claimed(rcu);
    assert_eq!(rcu.stats().registered_readers, 0);
    assert_eq!(rcu.stats().stalls_reported, 0);
    slot_abandoned_and_domain_usable(rcu);
}

/// The same under churn: threads that read through a guard kept in a
/// thread-local (in its destructor, after the registration is gone) while
/// a writer replaces the value and other threads claim the slots handed
/// back; no reader ever sees a dropped value.
#[test]
fn slots_handed_back_by_late_guards_never_end_another_threads_section() {
    use rcu_reclaim::ReadGuard;
    use std::cell::RefCell;
    use std::sync::atomic::AtomicBool;
    const ALIVE: u64 = 0xA11CE;
    struct Checked(std::sync::atomic::AtomicU64);
    impl Drop for Checked {
        fn drop(&mut self) {
            self.0.store(0xDEAD, Ordering::SeqCst);
        }
    }
    impl rcu_reclaim::ReclaimSize for Checked {
        fn reclaim_size(&self) -> usize {
            std::mem::size_of::<Self>()
        }
    }
    static RCU: std::sync::OnceLock<Rcu> = std::sync::OnceLock::new();
    static CELL: std::sync::OnceLock<RcuCell<Checked>> = std::sync::OnceLock::new();
    static BAD: AtomicUsize = AtomicUsize::new(0);
    struct Holder(Option<ReadGuard<'static>>);
    impl Drop for Holder {
        fn drop(&mut self) {
            if let Some(g) = &self.0 {
                let v = CELL.get().unwrap().load(g).unwrap();
                for _ in 0..200 {
                    if v.0.load(Ordering::SeqCst) != ALIVE {
                        BAD.fetch_add(1, Ordering::SeqCst);
                    }
                    std::hint::spin_loop();
                }
            }
        }
    }
    thread_local! {
        static HELD: RefCell<Holder> = const { RefCell::new(Holder(None)) };
    }
    let rcu = RCU.get_or_init(|| Rcu::new(Config::new()).unwrap());
    let cell = CELL.get_or_init(|| {
        RcuCell::new_in(
            rcu,
            Some(Box::new(Checked(std::sync::atomic::AtomicU64::new(ALIVE)))),
        )
    });
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                cell.store(Box::new(Checked(std::sync::atomic::AtomicU64::new(ALIVE))));
                thread::yield_now();
            }
        })
    };
    let _stop = StopOnDrop(&stop);
    let rounds = if cfg!(miri) { 3 } else { 150 };
    let churners: Vec<_> = (0..2)
        .map(|_| {
            thread::spawn(move || {
                for i in 0..rounds {
                    thread::spawn(move || {
                        HELD.with(|_| {}); // destroyed after the registration
                        let g = RCU.get().unwrap().read_lock();
                        if i % 2 == 0 {
                            // Also a plain section on the same thread.
                            let _ = CELL.get().unwrap().load(&g);
                        }
                        HELD.with(|h| h.borrow_mut().0 = Some(g));
                    })
                    .join()
                    .unwrap();
                }
            })
        })
        .collect();
    for c in churners {
        c.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert_eq!(
        BAD.load(Ordering::SeqCst),
        0,
        "a late reader saw a dropped value"
    );
    rcu.barrier();
    assert_eq!(rcu.stats().registered_readers, 0);
    assert_no_slot_claimed(rcu);
}

/// Threads whose thread-local destructors read through a guard or retire
/// after the thread's registration is gone (a late slot: a thread-local
/// flushing into a shared map at thread exit takes one) leave no slot
/// claimed, and lose nothing they retired.
#[test]
fn guards_taken_after_the_registration_leave_no_slot_claimed() {
    static DROPPED: AtomicUsize = AtomicUsize::new(0);
    struct Counted;
    impl Drop for Counted {
        fn drop(&mut self) {
            DROPPED.fetch_add(1, Ordering::SeqCst);
        }
    }
    impl rcu_reclaim::ReclaimSize for Counted {
        fn reclaim_size(&self) -> usize {
            0
        }
    }
    struct Flush(&'static Rcu);
    impl Drop for Flush {
        fn drop(&mut self) {
            let g = self.0.read_lock();
            let inner = self.0.read_lock();
            drop(g);
            drop(inner);
            let _again = self.0.read_lock();
            self.0.defer_drop(Box::new(Counted));
        }
    }
    thread_local! {
        static FLUSH: std::cell::RefCell<Option<Flush>> = const { std::cell::RefCell::new(None) };
    }
    let rcu: &'static Rcu = Box::leak(Box::new(Rcu::new(Config::new()).unwrap()));
    for _ in 0..20 {
        thread::spawn(move || {
            FLUSH.with(|_| {}); // destroyed after the registration
            drop(rcu.read_lock());
            FLUSH.with(|f| *f.borrow_mut() = Some(Flush(rcu)));
        })
        .join()
        .unwrap();
    }
    assert_no_slot_claimed(rcu);
    rcu.barrier();
    assert_eq!(DROPPED.load(Ordering::SeqCst), 20, "a late retire was lost");
    slot_abandoned_and_domain_usable(rcu);
}

/// Raw sections of two domains, correctly paired, in a thread-local
/// destructor that runs after the thread's registrations: each unlock ends
/// its own domain's section, whatever the order, and the section is seen
/// (before: the second domain's late slot made the first's unlock claim a
/// fresh slot and return `false`, leaving the first section open for good
/// and every later grace period of that domain waiting).
#[test]
fn late_raw_sections_of_two_domains_each_end() {
    use std::sync::OnceLock;
    static A: OnceLock<Rcu> = OnceLock::new();
    static B: OnceLock<Rcu> = OnceLock::new();
    static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());
    struct Late(bool);
    impl Drop for Late {
        fn drop(&mut self) {
            let (a, b) = (A.get().unwrap(), B.get().unwrap());
            a.read_lock_raw();
            b.read_lock_raw();
            let in_a = a.in_read_section();
            let (first, second) = if self.0 { (b, a) } else { (a, b) };
            let u1 = first.read_unlock_raw();
            let u2 = second.read_unlock_raw();
            SEEN.lock().unwrap().push(format!(
                "in A {in_a}, unlocks {u1} {u2}, after: A {} B {}",
                a.in_read_section(),
                b.in_read_section()
            ));
        }
    }
    thread_local! {
        static LATE: std::cell::RefCell<Option<Late>> = const { std::cell::RefCell::new(None) };
    }
    let a = A.get_or_init(|| Rcu::new(Config::new()).unwrap());
    let b = B.get_or_init(|| Rcu::new(Config::new()).unwrap());
    for nested in [true, false] {
        thread::spawn(move || {
            LATE.with(|l| *l.borrow_mut() = Some(Late(nested))); // destroyed after the registrations
            drop(A.get().unwrap().read_lock());
            drop(B.get().unwrap().read_lock());
        })
        .join()
        .unwrap();
        for d in [a, b] {
            let (tx, rx) = mpsc::channel();
            let d2 = d.clone();
            thread::spawn(move || {
                d2.synchronize();
                let _ = tx.send(());
            });
            assert!(
                rx.recv_timeout(SOON).is_ok(),
                "a grace period waits for a section that was ended: {:?}",
                SEEN.lock().unwrap()
            );
        }
    }
    assert_eq!(
        *SEEN.lock().unwrap(),
        ["in A true, unlocks true true, after: A false B false"; 2],
    );
}

/// What a thread-local's destructor saw while reading through a section
/// that outlived its thread's registration (see the two tests below).
struct LateRead {
    /// Set by the value's `Drop`.
    dropped: std::sync::atomic::AtomicBool,
    /// 1: the destructor holds a reference; 2: it saw the value alive
    /// after waiting; 3: it saw it dropped.
    stage: AtomicUsize,
}

impl LateRead {
    const fn new() -> Self {
        LateRead {
            dropped: std::sync::atomic::AtomicBool::new(false),
            stage: AtomicUsize::new(0),
        }
    }

    /// In the destructor, holding a reference: wait while a writer tries
    /// to free the value, then record whether it did.
    fn hold(&self) {
        self.stage.store(1, Ordering::SeqCst);
        thread::sleep(Duration::from_millis(300));
        let freed = self.dropped.load(Ordering::SeqCst);
        self.stage
            .store(if freed { 3 } else { 2 }, Ordering::SeqCst);
    }

    /// In the test: once the destructor holds its reference, replace the
    /// value with `store_sync`; the destructor must never see it dropped.
    ///
    /// Panics, rather than wait for good, if the destructor has not taken
    /// its reference within 60 s (the reader thread failed before it).
    fn replace_under_the_reader(&self, store_sync: impl FnOnce() + Send + 'static) {
        let t0 = std::time::Instant::now();
        while self.stage.load(Ordering::SeqCst) == 0 {
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "the reader thread's thread-local destructor never took its reference"
            );
            thread::yield_now();
        }
        let writer = thread::spawn(store_sync);
        writer.join().unwrap();
        assert_eq!(
            self.stage.load(Ordering::SeqCst),
            2,
            "the value was freed while a thread-local destructor read it"
        );
    }
}

/// Dropped: marks `LateRead::dropped` of its static.
struct Watched(&'static LateRead);

impl Drop for Watched {
    fn drop(&mut self) {
        self.0.dropped.store(true, Ordering::SeqCst);
    }
}

/// A guard kept in a thread-local destroyed after the thread's registration
/// still protects what its destructor reads: the section stays open until
/// the guard drops (before: the registration's teardown ended it, and a
/// writer freed the value under the reader).
#[test]
fn a_guard_outliving_the_registration_still_protects_its_reads() {
    use rcu_reclaim::ReadGuard;
    use std::cell::RefCell;
    static SEEN: LateRead = LateRead::new();
    static RCU: std::sync::OnceLock<Rcu> = std::sync::OnceLock::new();
    static CELL: std::sync::OnceLock<RcuCell<Watched>> = std::sync::OnceLock::new();
    struct Holder(Option<ReadGuard<'static>>);
    impl Drop for Holder {
        fn drop(&mut self) {
            if let Some(g) = &self.0 {
                let _value = CELL.get().unwrap().load(g).unwrap();
                SEEN.hold();
            }
        }
    }
    thread_local! {
        static HELD: RefCell<Holder> = const { RefCell::new(Holder(None)) };
    }
    let rcu = RCU.get_or_init(|| Rcu::new(Config::new()).unwrap());
    CELL.get_or_init(|| RcuCell::new_in(rcu, Some(Box::new(Watched(&SEEN)))));
    let reader = thread::spawn(move || {
        HELD.with(|_| {}); // destroyed after the registration
        let g = RCU.get().unwrap().read_lock();
        HELD.with(|h| h.borrow_mut().0 = Some(g));
    });
    SEEN.replace_under_the_reader(|| {
        CELL.get().unwrap().store_sync(Box::new(Watched(&SEEN)));
    });
    reader.join().unwrap();
    rcu.synchronize();
}

/// A raw section taken in a thread-local destructor that runs after the
/// thread's registration was destroyed (the liburcu drop-in's read lock in
/// a pthread key destructor or an `atexit` handler, which C programs use):
/// it gets a slot of its own that protects its reads and goes back when
/// the section ends, thread after thread (before: the read lock panicked,
/// which aborts a destructor, and a C caller).
#[test]
fn a_raw_section_after_the_registration_is_destroyed_protects_and_hands_its_slot_back() {
    static SEEN: LateRead = LateRead::new();
    static RCU: std::sync::OnceLock<Rcu> = std::sync::OnceLock::new();
    static CELL: std::sync::OnceLock<RcuCell<Watched>> = std::sync::OnceLock::new();
    /// Reads in its destructor, through a raw section (and, to load, a
    /// guard nested in it), while the test replaces the value if `watch`.
    struct LateReader {
        armed: bool,
        watch: bool,
    }
    impl Drop for LateReader {
        fn drop(&mut self) {
            if !self.armed {
                return;
            }
            let rcu = RCU.get().unwrap();
            rcu.read_lock_raw();
            rcu.read_lock_raw(); // nested
            assert!(rcu.in_read_section());
            let g = rcu.read_lock();
            let _value = CELL.get().unwrap().load(&g).unwrap();
            if self.watch {
                SEEN.hold();
            }
            drop(g);
            assert!(rcu.read_unlock_raw());
            assert!(rcu.read_unlock_raw());
            assert!(!rcu.in_read_section());
            assert!(!rcu.read_unlock_raw(), "unbalanced");
        }
    }
    thread_local! {
        static LATE: std::cell::RefCell<LateReader> = const {
            std::cell::RefCell::new(LateReader { armed: false, watch: false })
        };
    }
    let rcu = RCU.get_or_init(|| Rcu::new(Config::new()).unwrap());
    CELL.get_or_init(|| RcuCell::new_in(rcu, Some(Box::new(Watched(&SEEN)))));
    let spawn = |watch: bool| {
        thread::spawn(move || {
            LATE.with(|l| *l.borrow_mut() = LateReader { armed: true, watch }); // destroyed after the registration
            RCU.get().unwrap().register_thread();
        })
    };
    let reader = spawn(true);
    SEEN.replace_under_the_reader(|| {
        CELL.get().unwrap().store_sync(Box::new(Watched(&SEEN)));
    });
    reader.join().unwrap();
    for _ in 0..20 {
        spawn(false).join().unwrap();
        assert_eq!(rcu.stats().registered_readers, 0, "a late slot was kept");
    }
    rcu.synchronize();
}

/// The same for an online QSBR registration kept in a thread-local: it
/// stays online, and protects its reads, until it is dropped or its
/// thread is gone.
#[test]
fn a_qsbr_registration_outliving_its_threads_exit_still_protects_its_reads() {
    use rcu_reclaim::{Flavor, QsbrThread};
    use std::cell::RefCell;
    static SEEN: LateRead = LateRead::new();
    static RCU: std::sync::OnceLock<Rcu> = std::sync::OnceLock::new();
    static CELL: std::sync::OnceLock<RcuCell<Watched>> = std::sync::OnceLock::new();
    struct Holder(Option<QsbrThread>);
    impl Drop for Holder {
        fn drop(&mut self) {
            if let Some(t) = &self.0 {
                let g = t.read_lock();
                let _value = CELL.get().unwrap().load(&g).unwrap();
                SEEN.hold();
            }
        }
    }
    thread_local! {
        static HELD: RefCell<Holder> = const { RefCell::new(Holder(None)) };
    }
    let rcu = RCU.get_or_init(|| Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap());
    CELL.get_or_init(|| RcuCell::new_in(rcu, Some(Box::new(Watched(&SEEN)))));
    let reader = thread::spawn(move || {
        HELD.with(|_| {}); // destroyed after the library's own
        let t = RCU.get().unwrap().register_qsbr_thread();
        HELD.with(|h| h.borrow_mut().0 = Some(t));
    });
    SEEN.replace_under_the_reader(|| {
        CELL.get().unwrap().store_sync(Box::new(Watched(&SEEN)));
    });
    reader.join().unwrap();
    rcu.synchronize();
}

/// Dropping the last handle of a domain inside one of its (raw) sections,
/// with callbacks pending, returns at once; the callbacks run once the
/// section ends (here: when the thread exits). Before, it hung in the
/// drain's barrier, waiting for its own section.
#[test]
fn dropping_the_last_handle_inside_a_section_does_not_hang() {
    let (ran_tx, ran_rx) = mpsc::channel();
    let (dropped_tx, dropped_rx) = mpsc::channel();
    let rcu = Rcu::new(Config::new()).unwrap();
    let t = thread::spawn(move || {
        rcu.call(move || ran_tx.send(()).unwrap());
        rcu.defer_drop(Box::new([0u8; 64]));
        rcu.read_lock_raw();
        drop(rcu);
        dropped_tx.send(()).unwrap();
    });
    dropped_rx
        .recv_timeout(SOON)
        .expect("drop(last handle) inside a section returned");
    t.join().unwrap();
    ran_rx
        .recv_timeout(SOON)
        .expect("the callback ran after the section ended");
}

/// Every panicking deferred drop and callback reaches the hook with its own
/// message, and is counted (before: one generic report per bulk page).
#[test]
fn every_panic_reaches_the_hook_with_its_message() {
    struct Bomb(usize);
    rcu_reclaim::reclaim_size!(Bomb {});
    impl Drop for Bomb {
        fn drop(&mut self) {
            panic!("bomb {} went off", self.0);
        }
    }
    const DROPS: usize = 110;
    const CALLS: usize = 7;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let rcu = Rcu::new(Config::new().on_callback_panic(move |msg| {
        s.lock().unwrap().push(msg.to_string());
    }))
    .unwrap();
    let fine = Arc::new(AtomicUsize::new(0));
    quietly(|| {
        for i in 0..DROPS {
            rcu.defer_drop(Box::new(Bomb(i)));
        }
        for i in 0..CALLS {
            rcu.call(move || panic!("call {i} failed"));
        }
        let f = fine.clone();
        rcu.call(move || {
            f.fetch_add(1, Ordering::SeqCst);
        });
        rcu.barrier();
    });

    assert_eq!(fine.load(Ordering::SeqCst), 1, "the other callbacks ran");
    assert_eq!(rcu.stats().callback_panics, (DROPS + CALLS) as u64);
    let mut seen = seen.lock().unwrap().clone();
    seen.sort();
    let mut want: Vec<String> = (0..DROPS)
        .map(|i| format!("bomb {i} went off"))
        .chain((0..CALLS).map(|i| format!("call {i} failed")))
        .collect();
    want.sort();
    assert_eq!(seen, want);
}

/// A panicking hook does not lose the callbacks after the one that panicked.
#[test]
fn a_panicking_hook_loses_no_callbacks() {
    let rcu = Rcu::new(Config::new().on_callback_panic(|msg| panic!("hook saw {msg}"))).unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    quietly(|| {
        for i in 0..20 {
            let r = ran.clone();
            rcu.call(move || {
                r.fetch_add(1, Ordering::SeqCst);
                if i % 2 == 0 {
                    panic!("callback {i}");
                }
            });
        }
        rcu.barrier();
    });
    assert_eq!(ran.load(Ordering::SeqCst), 20);
    assert_eq!(rcu.stats().callback_panics, 10);
}

thread_local! {
    /// Set while this thread is inside a retiring call of the test below.
    static RETIRING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Counts its drops, and the drops that ran inside a retiring call.
struct Tracked {
    drops: Arc<AtomicUsize>,
    inside_retire: Arc<AtomicUsize>,
}
rcu_reclaim::reclaim_size!(Tracked {});

impl Drop for Tracked {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
        if RETIRING.with(|r| r.get()) {
            self.inside_retire.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// By default a retiring call (`defer_drop`, `RcuCell::store`)
/// never runs another object's destructor, so a caller may hold a lock that
/// a deferred `Drop` takes (before: the thread freed its shard's ready
/// pages after each hand-off, even with `producer_window(ZERO)`, and
/// deadlocked on such a lock). Workers free everything, with no barrier.
#[test]
fn retiring_calls_never_run_other_destructors_by_default() {
    let per_page = (rcu_reclaim::pages::BULK_PAGE_SIZE - 16) / 16;
    let rcu = Rcu::new(
        Config::new()
            .lazy_batch(per_page)
            .producer_window(Duration::ZERO),
    )
    .unwrap();
    let drops = Arc::new(AtomicUsize::new(0));
    let inside = Arc::new(AtomicUsize::new(0));
    let cell = RcuCell::new_in(&rcu, None::<Box<Tracked>>);
    let track = || Tracked {
        drops: drops.clone(),
        inside_retire: inside.clone(),
    };
    let retire = |f: &dyn Fn()| {
        RETIRING.with(|r| r.set(true));
        f();
        RETIRING.with(|r| r.set(false));
    };
    const ROUNDS: usize = 20;
    for _ in 0..ROUNDS {
        // A page and a bit: a hand-off, then its grace period, so the next
        // hand-off finds ready pages on the shard.
        for _ in 0..per_page + 1 {
            retire(&|| rcu.defer_drop(Box::new(track())));
        }
        rcu.synchronize();
        for _ in 0..per_page {
            retire(&|| cell.store(Box::new(track())));
        }
    }
    let want = ROUNDS * (2 * per_page + 1) - 1; // the cell keeps its last value
    let t0 = std::time::Instant::now();
    while drops.load(Ordering::SeqCst) < want - 2 * per_page && t0.elapsed() < SOON {
        thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(
        inside.load(Ordering::SeqCst),
        0,
        "destructors ran inside retiring calls: {:?}",
        rcu.stats()
    );
    assert!(
        drops.load(Ordering::SeqCst) >= want - 2 * per_page,
        "workers freed the handed-off pages without a barrier: {} of {want}",
        drops.load(Ordering::SeqCst)
    );
    rcu.barrier();
    assert_eq!(drops.load(Ordering::SeqCst), want);
}

/// `prepare_fork().parent()` leaves the thread's no-reclaim mark as it was:
/// the engine's per-shard locks are released last-taken first (before, with
/// two or more shards, the thread stayed marked and every later reclaim on
/// it was refused as recursion).
#[test]
fn a_fork_round_trip_leaves_reclaim_allowed() {
    use rcu_reclaim::reclaim::reclaim_allowed;
    use rcu_reclaim::topology::Topology;
    let rcu = Rcu::new(Config::new().topology(Topology::synthetic(2, 2))).unwrap();
    assert!(reclaim_allowed());
    rcu.prepare_fork().parent();
    assert!(reclaim_allowed(), "the fork guard left the thread marked");
    drop(rcu.prepare_fork());
    assert!(reclaim_allowed());
}

/// `prepare_fork` from inside a callback is a clear panic (before, it
/// waited for the very worker running it to park).
#[test]
fn prepare_fork_inside_a_callback_panics() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let (tx, rx) = mpsc::channel();
    let r = rcu.clone();
    quietly(|| {
        rcu.call_hurry(move || {
            let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                r.prepare_fork().parent();
            }));
            let msg = res.err().and_then(|p| {
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            });
            tx.send(msg).unwrap();
        });
        let msg = rx
            .recv_timeout(SOON)
            .expect("prepare_fork returned or panicked");
        assert!(
            msg.as_deref()
                .is_some_and(|m| m.contains("prepare_fork() called from inside an RCU callback")),
            "{msg:?}"
        );
    });
    rcu.barrier();
}

/// A thread that retires faster than the worker frees is held back (at
/// most 2 ms per page it hands off) instead of growing the backlog without
/// bound, and never waits for the worker unboundedly: here the worker is
/// stuck on a lock the retiring thread holds (a deferred `Drop` takes it),
/// and the thread still finishes; everything is freed once it lets go.
#[test]
fn a_fast_retiring_thread_is_throttled_but_never_blocked() {
    struct TakesLock(Arc<Mutex<()>>, Arc<AtomicUsize>);
    rcu_reclaim::reclaim_size!(TakesLock {});
    impl Drop for TakesLock {
        fn drop(&mut self) {
            drop(self.0.lock().unwrap());
            self.1.fetch_add(1, Ordering::SeqCst);
        }
    }
    let per_page = (rcu_reclaim::pages::BULK_PAGE_SIZE - 16) / 16;
    let rcu = Rcu::new(Config::new().lazy_batch(per_page)).unwrap();
    let lock = Arc::new(Mutex::new(()));
    let drops = Arc::new(AtomicUsize::new(0));
    const MAX_PAGES: usize = 1024;
    let (r, l, d) = (rcu.clone(), lock.clone(), drops.clone());
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        rcu_reclaim::topology::override_current_cpu(Some(0));
        let held = l.lock().unwrap();
        let mut pages = 0;
        while pages < MAX_PAGES && r.stats().producer_throttles == 0 {
            for _ in 0..per_page {
                r.defer_drop(Box::new(TakesLock(l.clone(), d.clone())));
            }
            pages += 1;
            if pages % 8 == 0 {
                // The pages handed off so far are ready after this (it runs
                // no callback, so it does not need the lock), once the
                // grace-period thread has seen them.
                r.synchronize();
                thread::sleep(Duration::from_millis(2));
            }
        }
        tx.send((pages, r.stats().producer_throttles)).unwrap();
        drop(held);
    });
    let (pages, throttles) = rx
        .recv_timeout(SOON)
        .expect("the retiring thread finished while the worker was stuck");
    assert!(
        throttles > 0,
        "{pages} pages of ready backlog never held the thread back"
    );
    rcu.barrier();
    assert_eq!(drops.load(Ordering::SeqCst), pages * per_page);
}

/// Out-of-range node ids: a pressure signal wraps around (as CPUs do for
/// shards) instead of indexing out of bounds, and a node mask refuses an
/// id no Linux machine has, with a message, instead of allocating a bitmap
/// of 2^58 words.
#[test]
fn out_of_range_nodes_wrap_or_are_refused_clearly() {
    use rcu_reclaim::pressure::NodeMask;
    use rcu_reclaim::topology::Topology;
    let rcu = Rcu::new(Config::new().topology(Topology::synthetic(2, 1))).unwrap();
    let g = rcu.pressure_start(5);
    assert_eq!(rcu.pressure_on(1), 1);
    assert!(rcu.in_fast_mode());
    drop(g);
    assert_eq!(rcu.pressure(), 0);
    let refused = quietly(|| std::panic::catch_unwind(|| NodeMask::node(usize::MAX)));
    let msg = refused.unwrap_err();
    let msg = msg.downcast_ref::<String>().expect("a formatted message");
    assert!(
        msg.contains("NUMA node") && msg.contains("out of range"),
        "{msg}"
    );
    assert!(NodeMask::node(1023).contains(1023));
}

/// Extreme but valid config values (durations of `Duration::MAX`, huge
/// batches) never panic the domain's threads: callbacks still run at a
/// barrier and grace periods complete.
#[test]
fn extreme_config_values_keep_the_domain_working() {
    let rcu = Rcu::new(
        Config::new()
            .lazy_delay(Duration::MAX)
            .stall_timeout(Duration::MAX)
            .producer_window(Duration::MAX)
            .lazy_batch(usize::MAX)
            .qhimark(usize::MAX)
            .qovld(usize::MAX)
            .blimit(usize::MAX)
            .fast_min_bytes(usize::MAX),
    )
    .unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    for _ in 0..1000 {
        let r = ran.clone();
        rcu.call(move || {
            r.fetch_add(1, Ordering::SeqCst);
        });
        rcu.defer_drop(Box::new([0u8; 32]));
    }
    let _p = rcu.pressure_start_all();
    rcu.synchronize();
    rcu.synchronize_expedited();
    let c = rcu.start_poll();
    rcu.barrier();
    assert!(rcu.poll(&c));
    assert_eq!(ran.load(Ordering::SeqCst), 1000);
    assert_eq!(rcu.pending(), 0);
}

/// A pressure source polled at an interval of `Duration::MAX` neither
/// panics nor returns early (before: `Instant + Duration::MAX` overflowed in
/// the monitor thread).
#[test]
#[cfg_attr(miri, ignore = "reads /proc/self/statm, which Miri does not have")]
fn a_source_with_an_endless_interval_does_not_panic() {
    use rcu_reclaim::sources::{PressureSource, RssSource};
    let mut src = RssSource::new(usize::MAX, Duration::MAX);
    assert!(src.wait(Duration::from_millis(1)).unwrap().is_none());
    assert!(src.wait(Duration::from_millis(1)).unwrap().is_none());
}

/// Using a domain on the thread that holds it stopped for `fork()` (a live
/// `ForkGuard`) is a clear panic, not a self-deadlock, and the domain works
/// again once the guard is gone (it is released on unwind).
#[test]
fn using_the_domain_while_holding_its_fork_guard_panics() {
    let rcu = Rcu::new(Config::new()).unwrap();
    type Use = dyn Fn(&Rcu);
    let attempts: [(&str, &Use); 6] = [
        ("call", &|r| r.call(|| {})),
        ("synchronize", &|r| r.synchronize()),
        ("barrier", &|r| r.barrier()),
        ("pending", &|r| {
            let _ = r.pending();
        }),
        ("stats", &|r| drop(r.stats())),
        ("prepare_fork", &|r| r.prepare_fork().parent()),
    ];
    for (what, f) in attempts {
        let res = quietly(|| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let _guard = rcu.prepare_fork();
                f(&rcu);
            }))
        });
        let msg = res.expect_err(what);
        let msg = msg
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| msg.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        assert!(msg.contains("ForkGuard"), "{what}: {msg}");
        // The guard was released on unwind: the domain works.
        rcu.call(|| {});
        rcu.synchronize();
        rcu.barrier();
    }
}

/// A value whose drop is recorded, so a test can tell whether it was
/// dropped while a reader still had it (without reading freed memory).
struct DropFlag(Arc<std::sync::atomic::AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// A reader inside a section holding the cell's value, until told to go:
/// it then says whether the value was dropped while it still held it.
fn reader_holding(
    cell: &Arc<RcuCell<DropFlag>>,
    dropped: &Arc<std::sync::atomic::AtomicBool>,
) -> (mpsc::Sender<()>, thread::JoinHandle<bool>) {
    let (inside_tx, inside_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (cell, dropped) = (cell.clone(), dropped.clone());
    let reader = thread::spawn(move || {
        let guard = cell.domain().read_lock();
        let value = cell.load(&guard).expect("a value");
        inside_tx.send(()).unwrap();
        go_rx.recv().unwrap();
        // Still inside the section that loaded `value`.
        let was_dropped = dropped.load(Ordering::SeqCst);
        if !was_dropped {
            assert!(!value.0.load(Ordering::SeqCst));
        }
        drop(guard);
        was_dropped
    });
    inside_rx.recv().unwrap();
    (go_tx, reader)
}

/// A `Retired` whose drop cannot wait for its grace period (the wait
/// panics: here the thread holds the domain stopped for `fork()`) leaks
/// the value rather than dropping it as the panic unwinds, under a reader
/// on another thread that still holds it (before, it was dropped there).
#[test]
fn a_retired_whose_wait_panics_leaks_its_value_rather_than_freeing_it_under_readers() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let dropped = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let cell = Arc::new(RcuCell::new_in(
        &rcu,
        Some(Box::new(DropFlag(dropped.clone()))),
    ));
    let (go_tx, reader) = reader_holding(&cell, &dropped);
    let old = cell.replace(None).expect("the value");
    let fork = rcu.prepare_fork();
    let res = quietly(|| std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(old))));
    fork.parent();
    assert!(
        res.is_err(),
        "dropping the Retired waited with the fork guard held"
    );
    go_tx.send(()).unwrap();
    assert!(
        !reader.join().unwrap(),
        "the Retired value was dropped before its grace period, under a reader"
    );
}

/// The no-page fallback of a deferred drop (wait for a grace period, then
/// drop) leaks the value if the wait panics, rather than dropping it as
/// the panic unwinds under a reader still holding it (before, it was
/// dropped there): the value of an `RcuCell` replaced with `store_weighed`
/// while bulk pages are refused, under a `tracing` subscriber that panics
/// on the stall report of the reader.
#[test]
fn a_deferred_drop_whose_fallback_wait_panics_leaks_its_value_rather_than_freeing_it() {
    use rcu_reclaim::pages::without_page_allocation;
    let rcu = Rcu::new(Config::new().stall_timeout(Duration::from_millis(20))).unwrap();
    let dropped = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let cell = Arc::new(RcuCell::new_in(
        &rcu,
        Some(Box::new(DropFlag(dropped.clone()))),
    ));
    let (go_tx, reader) = reader_holding(&cell, &dropped);
    // Else another test's stall report, logged first from a thread with no
    // subscriber, could keep the report here from reaching the subscriber that panics on warnings (`common::PanicsOn`),
    // and the wait would never end.
    common::two_dispatchers_at_least();
    let res = quietly(|| {
        tracing::subscriber::with_default(common::PanicsOn(tracing::Level::WARN), || {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                without_page_allocation(|| {
                    cell.store_weighed(Box::new(DropFlag(Arc::new(Default::default()))), |_| 8)
                })
            }))
        })
    });
    assert!(res.is_err(), "the fallback's wait did not panic");
    go_tx.send(()).unwrap();
    assert!(
        !reader.join().unwrap(),
        "a deferred drop dropped its value before its grace period, under a reader"
    );
}

/// `unregister_thread` from a destructor that a retire runs on the
/// retiring thread (a type declared to drop anywhere, freed from the
/// thread's drain) does nothing: the retire goes on using the thread's
/// slot as its owner afterwards, and a slot handed back there could be
/// claimed by another thread meanwhile, both then using its buffer as
/// owners without the handshake (before, the slot was handed back).
#[test]
fn unregister_thread_inside_a_deferred_drop_run_by_a_retire_does_nothing() {
    use std::cell::Cell;
    use std::sync::OnceLock;
    static DOMAIN: OnceLock<Rcu> = OnceLock::new();
    static HANDED_BACK_IN_RETIRE: AtomicUsize = AtomicUsize::new(0);
    static DROPS_IN_RETIRE: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static IN_RETIRE: Cell<bool> = const { Cell::new(false) };
    }
    struct Unregisters([u64; 4]);
    impl Drop for Unregisters {
        fn drop(&mut self) {
            std::hint::black_box(self.0);
            if IN_RETIRE.with(Cell::get) {
                DROPS_IN_RETIRE.fetch_add(1, Ordering::Relaxed);
                if DOMAIN.get().unwrap().unregister_thread() {
                    HANDED_BACK_IN_RETIRE.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
    impl rcu_reclaim::ReclaimSize for Unregisters {
        const DROPS_ANYWHERE: bool = true;
        fn reclaim_size(&self) -> usize {
            std::mem::size_of::<Self>()
        }
    }
    let rcu = DOMAIN.get_or_init(|| Rcu::new(Config::new().pace_bytes(4 << 10)).unwrap());
    thread::spawn(move || {
        for i in 0..100_000u64 {
            IN_RETIRE.with(|f| f.set(true));
            rcu.defer_drop(Box::new(Unregisters([i; 4])));
            IN_RETIRE.with(|f| f.set(false));
            if DROPS_IN_RETIRE.load(Ordering::Relaxed) >= 100 {
                break;
            }
        }
    })
    .join()
    .unwrap();
    rcu.barrier();
    assert!(
        DROPS_IN_RETIRE.load(Ordering::Relaxed) > 0,
        "no retire ran a deferred drop on its thread: {:?}",
        rcu.stats()
    );
    assert_eq!(
        HANDED_BACK_IN_RETIRE.load(Ordering::Relaxed),
        0,
        "a retire's deferred drop handed the retiring thread's slot back"
    );
}

/// A value of a structure built on `AtomicPtr`, retired with
/// `Rcu::defer_drop_raw` while a reader on another thread still holds
/// `&T` to it: the reader reads it intact until its section ends, it is
/// dropped once, and no `Box` is made of it before then (Miri checks the
/// aliasing: `.ci/miri` runs this test).
#[test]
fn a_value_retired_by_raw_pointer_stays_whole_under_a_live_reader() {
    use std::sync::atomic::{AtomicBool, AtomicPtr};

    struct Poisoned {
        word: u64,
        drops: Arc<AtomicUsize>,
    }
    impl Drop for Poisoned {
        fn drop(&mut self) {
            self.word = u64::MAX;
            self.drops.fetch_add(1, Ordering::SeqCst);
        }
    }
    rcu_reclaim::reclaim_size!(Poisoned {});

    let rcu = Rcu::new(Config::new().on_demand()).unwrap();
    let drops = Arc::new(AtomicUsize::new(0));
    let mk = |word| {
        Box::into_raw(Box::new(Poisoned {
            word,
            drops: drops.clone(),
        }))
    };
    let slot = Arc::new(AtomicPtr::new(mk(1)));
    let (loaded_tx, loaded_rx) = mpsc::channel();
    let retired = Arc::new(AtomicBool::new(false));
    let reader = {
        let (rcu, slot, retired) = (rcu.clone(), slot.clone(), retired.clone());
        thread::spawn(move || {
            let guard = rcu.read_lock();
            // SAFETY: published values are freed only after a grace period.
            let v: &Poisoned = unsafe { &*slot.load(Ordering::Acquire) };
            loaded_tx.send(()).unwrap();
            while !retired.load(Ordering::Acquire) {
                thread::yield_now();
            }
            let word = v.word; // after the retire, inside the section
            drop(guard);
            word
        })
    };
    loaded_rx.recv().unwrap();
    let rounds = if cfg!(miri) { 3 } else { 100 };
    for word in 2..rounds + 2 {
        let old = slot.swap(mk(word), Ordering::AcqRel);
        // SAFETY: from `Box::into_raw`, unlinked, not used again here.
        unsafe { rcu.defer_drop_raw(old) };
        if word == 2 {
            retired.store(true, Ordering::Release);
        }
    }
    assert_eq!(
        reader.join().unwrap(),
        1,
        "the reader saw its value dropped"
    );
    rcu.barrier();
    assert_eq!(drops.load(Ordering::SeqCst), rounds as usize);
    // SAFETY: the last version, which no reader can reach any more.
    drop(unsafe { Box::from_raw(slot.load(Ordering::Acquire)) });
}

#[test]
#[should_panic(expected = "the pointer is null")]
fn defer_drop_raw_of_a_null_pointer_panics_naming_it() {
    // SAFETY: the call refuses the pointer before using it.
    unsafe { Rcu::global().defer_drop_raw(std::ptr::null_mut::<u64>()) };
}

#[test]
#[should_panic(expected = "the pointer is null")]
fn defer_drop_raw_sized_of_a_null_pointer_panics_naming_it() {
    struct NoSize(#[allow(dead_code)] u64);
    // SAFETY: the call refuses the pointer before using it.
    unsafe { Rcu::global().defer_drop_raw_sized(std::ptr::null_mut::<NoSize>(), 8) };
}

/// `defer_drop_raw_sized` of a type without `ReclaimSize` (with drop
/// glue): books the bytes named, keeps the value alive under a reader
/// that loaded it before the unlink, and drops it once, after the grace
/// period.
#[test]
fn defer_drop_raw_sized_drops_once_after_the_readers() {
    struct Counted(Arc<AtomicUsize>);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let rcu = Rcu::new(Config::new().on_demand()).unwrap();
    let drops = Arc::new(AtomicUsize::new(0));
    let slot = std::sync::atomic::AtomicPtr::new(Box::into_raw(Box::new(Counted(drops.clone()))));
    let guard = rcu.read_lock();
    // SAFETY: published values are freed only after a grace period.
    let seen = unsafe { &*slot.load(Ordering::Acquire) };
    let old = slot.swap(std::ptr::null_mut(), Ordering::AcqRel);
    // SAFETY: from `Box::into_raw`, unlinked, not used again here.
    unsafe { rcu.defer_drop_raw_sized(old, 1000) };
    assert_eq!(rcu.pending_bytes(), 1000);
    assert_eq!(Arc::strong_count(&seen.0), 2, "dropped under a reader");
    drop(guard);
    rcu.barrier();
    assert_eq!(drops.load(Ordering::SeqCst), 1);
    assert_eq!(rcu.pending_bytes(), 0);
}
