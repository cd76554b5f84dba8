//! Foreign readers: per-thread counters outside the library that follow
//! liburcu's memb read-side protocol (what C built with `_LGPL_SOURCE`
//! inlines), attached with `Rcu::attach_foreign_reader`. Grace periods
//! must wait for their sections, on every flavor, and let go of a counter
//! when its thread's registration ends.

mod common;
use common::StopOnDrop;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use rcu_reclaim::Rcu;

/// liburcu's nesting mask for this word size (`URCU_GP_CTR_NEST_MASK`).
const NEST_MASK: usize = (1 << (usize::BITS / 2)) - 1;

thread_local! {
    /// A thread's liburcu-style reader block: what `urcu_memb_reader.ctr` is.
    static BLOCK: AtomicUsize = const { AtomicUsize::new(0) };
}

/// `rcu_read_lock` as liburcu inlines it for the memb and mb flavors
/// (liburcu's `_urcu_memb_read_lock`: the flavor's fence always, which is
/// right for both).
fn foreign_lock(gp: &AtomicUsize) {
    BLOCK.with(|b| {
        let tmp = b.load(Ordering::Relaxed);
        if tmp & NEST_MASK == 0 {
            b.store(gp.load(Ordering::Relaxed), Ordering::Relaxed);
            std::sync::atomic::fence(Ordering::SeqCst);
        } else {
            b.store(tmp + 1, Ordering::Relaxed);
        }
    });
}

/// `rcu_read_unlock` as liburcu inlines it.
fn foreign_unlock() {
    BLOCK.with(|b| {
        let tmp = b.load(Ordering::Relaxed);
        if tmp & NEST_MASK == 1 {
            std::sync::atomic::fence(Ordering::SeqCst);
            b.store(tmp - 1, Ordering::Relaxed);
            std::sync::atomic::fence(Ordering::SeqCst);
        } else {
            b.store(tmp - 1, Ordering::Relaxed);
        }
    });
}

fn attach(rcu: &Rcu) {
    // SAFETY: the block is this thread's thread-local, alive until the
    // thread's registration ends (it is detached there at the latest).
    BLOCK.with(|b| unsafe { rcu.attach_foreign_reader(b) });
}

fn gp_word() -> &'static AtomicUsize {
    Box::leak(Box::new(AtomicUsize::new(1)))
}

#[test]
fn synchronize_waits_for_a_foreign_section_that_began_before_it() {
    for rcu in common::domains() {
        let gp = gp_word();
        // SAFETY: only the domain writes `gp` from now on.
        unsafe { rcu.publish_foreign_gp_word(gp) };
        let entered = Arc::new(Barrier::new(2));
        let ended = Arc::new(AtomicBool::new(false));
        let reader = {
            let (rcu, entered, ended) = (rcu.clone(), entered.clone(), ended.clone());
            thread::spawn(move || {
                attach(&rcu);
                foreign_lock(gp);
                foreign_lock(gp); // nested
                assert!(rcu.foreign_reader_in_section());
                entered.wait();
                thread::sleep(Duration::from_millis(100));
                foreign_unlock();
                thread::sleep(Duration::from_millis(20));
                ended.store(true, Ordering::SeqCst);
                foreign_unlock();
                assert!(!rcu.foreign_reader_in_section());
            })
        };
        entered.wait();
        rcu.synchronize();
        assert!(
            ended.load(Ordering::SeqCst),
            "{} flavor: synchronize returned inside a foreign section that began before it",
            rcu.flavor()
        );
        reader.join().unwrap();
        // Ended and detached (the thread is gone): nothing holds this one.
        rcu.synchronize();
    }
}

#[test]
fn a_foreign_section_holds_up_deferred_frees_and_callbacks() {
    let rcu = Rcu::new(Default::default()).unwrap();
    let gp = gp_word();
    // SAFETY: only the domain writes `gp`.
    unsafe { rcu.publish_foreign_gp_word(gp) };
    let entered = Arc::new(Barrier::new(2));
    let release = Arc::new(AtomicBool::new(false));
    let ran = Arc::new(AtomicU64::new(0));
    let reader = {
        let (rcu, entered, release) = (rcu.clone(), entered.clone(), release.clone());
        thread::spawn(move || {
            attach(&rcu);
            foreign_lock(gp);
            entered.wait();
            while !release.load(Ordering::SeqCst) {
                thread::sleep(Duration::from_millis(1));
            }
            foreign_unlock();
        })
    };
    entered.wait();
    // Lets the reader go however the test ends.
    let _release = StopOnDrop(&release);
    let r = ran.clone();
    rcu.call(move || {
        r.fetch_add(1, Ordering::SeqCst);
    });
    // A polled grace period cannot complete while the section is open.
    let cookie = rcu.start_poll();
    thread::sleep(Duration::from_millis(100));
    assert!(
        !rcu.poll(&cookie),
        "a polled grace period ended inside a foreign section"
    );
    assert_eq!(
        ran.load(Ordering::SeqCst),
        0,
        "a callback ran inside a foreign section"
    );
    release.store(true, Ordering::SeqCst);
    rcu.barrier();
    assert_eq!(ran.load(Ordering::SeqCst), 1);
    assert!(rcu.poll(&cookie));
    reader.join().unwrap();
}

#[test]
fn foreign_sections_under_churn_never_see_a_freed_value() {
    // Readers in foreign sections load a shared value and check it twice
    // across a yield; the writer swaps it, waits with `synchronize` and
    // poisons the old one. A grace period that ignored a foreign section
    // shows as poison.
    const LIVE: u64 = 0x5a5a_5a5a;
    const POISON: u64 = 0xdead_dead;
    let rcu = Rcu::new(Default::default()).unwrap();
    let gp = gp_word();
    // SAFETY: only the domain writes `gp`.
    unsafe { rcu.publish_foreign_gp_word(gp) };
    // Values are leaked on purpose: poisoned, never freed, so a premature
    // grace period reads poison rather than freed memory.
    let shared = Arc::new(std::sync::atomic::AtomicPtr::new(Box::into_raw(Box::new(
        AtomicU64::new(LIVE),
    ))));
    let stop = Arc::new(AtomicBool::new(false));
    let bad = Arc::new(AtomicU64::new(0));
    let reads = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let (rcu, shared, stop, bad, reads) = (
                rcu.clone(),
                shared.clone(),
                stop.clone(),
                bad.clone(),
                reads.clone(),
            );
            thread::spawn(move || {
                attach(&rcu);
                while !stop.load(Ordering::Relaxed) {
                    foreign_lock(gp);
                    // SAFETY: published values are never freed (above).
                    let v = unsafe { &*shared.load(Ordering::Acquire) };
                    let before = v.load(Ordering::Relaxed);
                    thread::yield_now();
                    let after = v.load(Ordering::Relaxed);
                    foreign_unlock();
                    if before != LIVE || after != LIVE {
                        bad.fetch_add(1, Ordering::Relaxed);
                    }
                    reads.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let _stop = StopOnDrop(&stop);
    while reads.load(Ordering::Relaxed) == 0 {
        thread::yield_now();
    }
    for _ in 0..2000 {
        let fresh = Box::into_raw(Box::new(AtomicU64::new(LIVE)));
        let old = shared.swap(fresh, Ordering::AcqRel);
        rcu.synchronize();
        // SAFETY: leaked above, never freed.
        unsafe { &*old }.store(POISON, Ordering::Relaxed);
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().unwrap();
    }
    assert!(reads.load(Ordering::Relaxed) > 0);
    assert_eq!(
        bad.load(Ordering::Relaxed),
        0,
        "a foreign section read a poisoned value"
    );
}

#[test]
fn a_thread_that_exits_attached_is_let_go() {
    let rcu = Rcu::new(Default::default()).unwrap();
    let gp = gp_word();
    // SAFETY: only the domain writes `gp`.
    unsafe { rcu.publish_foreign_gp_word(gp) };
    for _ in 0..50 {
        let rcu2 = rcu.clone();
        thread::spawn(move || {
            attach(&rcu2);
            foreign_lock(gp);
            foreign_unlock();
            // Exits attached, without detaching or unregistering.
        })
        .join()
        .unwrap();
        rcu.synchronize();
    }
    // Unregistering detaches too; a later section needs a new attach.
    attach(&rcu);
    assert!(rcu.unregister_thread());
    foreign_lock(gp);
    assert!(
        !rcu.foreign_reader_in_section(),
        "detached by unregister_thread"
    );
    rcu.synchronize(); // not held up by the unattached block
    foreign_unlock();
    rcu.detach_foreign_reader();
}

#[test]
fn a_qsbr_counter_stands_for_its_registration() {
    use rcu_reclaim::{Config, Flavor};
    let rcu = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
    let gp = gp_word();
    // SAFETY: only the domain writes `gp`.
    unsafe { rcu.publish_foreign_gp_word(gp) };
    let online = Arc::new(Barrier::new(2));
    let offline = Arc::new(Barrier::new(2));
    let reported = Arc::new(AtomicBool::new(false));
    let main_done = Arc::new(AtomicBool::new(false));
    let thread = {
        let (rcu, online, offline, reported, main_done) = (
            rcu.clone(),
            online.clone(),
            offline.clone(),
            reported.clone(),
            main_done.clone(),
        );
        thread::spawn(move || {
            let reg = rcu.register_qsbr_thread();
            BLOCK.with(|b| {
                // Online, as liburcu's inlined rcu_thread_online() leaves it.
                b.store(gp.load(Ordering::Relaxed), Ordering::SeqCst);
                // SAFETY: the block outlives the registration (dropped below).
                unsafe { reg.attach_foreign_counter(b, std::ptr::null()) };
            });
            online.wait();
            thread::sleep(Duration::from_millis(100));
            reported.store(true, Ordering::SeqCst);
            // An inlined quiescent state: the registration itself never
            // reports, yet grace periods end.
            BLOCK.with(|b| {
                std::sync::atomic::fence(Ordering::SeqCst);
                b.store(gp.load(Ordering::Relaxed), Ordering::SeqCst);
                std::sync::atomic::fence(Ordering::SeqCst);
            });
            // Offline, as the inlined rcu_thread_offline() leaves it: no
            // later grace period waits for the thread, though its
            // registration is still online.
            BLOCK.with(|b| b.store(0, Ordering::SeqCst));
            offline.wait();
            let start = std::time::Instant::now();
            while !main_done.load(Ordering::SeqCst) && start.elapsed() < Duration::from_secs(10) {
                thread::sleep(Duration::from_millis(1));
            }
            let waited_for = !main_done.load(Ordering::SeqCst);
            drop(reg);
            waited_for
        })
    };
    online.wait();
    rcu.synchronize();
    assert!(
        reported.load(Ordering::SeqCst),
        "a grace period ended before the foreign counter's quiescent state"
    );
    offline.wait();
    rcu.synchronize();
    main_done.store(true, Ordering::SeqCst);
    assert!(
        !thread.join().unwrap(),
        "a grace period waited for a thread whose foreign counter is offline"
    );
    rcu.synchronize();
}
