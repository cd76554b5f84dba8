//! `call_rcu`'s paths: the default crdp and a thread's own without a
//! section, a per-CPU one inside it; oldest-first invocation.

use super::*;
use rcu_reclaim::Rcu;
use std::sync::Mutex;

#[test]
fn push_back_waits_outside_sections_yields_inside_and_online_qsbr_threads_owe_it() {
    use PushBack::*;
    // (crdp thread, in a section, online QSBR) -> action
    let cases = [
        ((false, false, false), Wait),
        ((false, true, false), Yield),
        ((false, false, true), Owe),
        ((false, true, true), Owe),
        ((true, false, false), None),
        ((true, true, false), None),
        ((true, false, true), None),
    ];
    for ((crdp, section, online), want) in cases {
        assert_eq!(
            push_back_action(crdp, section, online),
            want,
            "crdp thread {crdp}, in a section {section}, online {online}"
        );
    }
}

/// A QSBR-like flavor whose state each test thread sets: online or
/// not, inside a section it cannot leave or not; it counts the waits
/// made offline.
struct Toy;
thread_local! {
    static TOY_ONLINE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static TOY_SECTION: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static TOY_OFFLINE_WAITS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    /// Whether the thread was marked busy (inside `call_rcu`, for a
    /// handler's) at each offline wait.
    static TOY_BUSY_WHILE_OFFLINE: std::cell::Cell<bool> = const { std::cell::Cell::new(true) };
}
impl Flavor for Toy {
    fn rcu() -> &'static Rcu {
        Rcu::global()
    }
    fn in_read_section() -> bool {
        TOY_SECTION.get()
    }
    fn offline_while<R>(f: impl FnOnce() -> R) -> R {
        TOY_OFFLINE_WAITS.set(TOY_OFFLINE_WAITS.get() + 1);
        TOY_BUSY_WHILE_OFFLINE.set(TOY_BUSY_WHILE_OFFLINE.get() && in_call_rcu());
        f()
    }
    fn online() -> bool {
        TOY_ONLINE.get()
    }
}

unsafe extern "C" fn ignore(_: *mut RcuHead) {}

/// An online QSBR thread whose `call_rcu` finds the backlog over the
/// mark owes the wait, and pays it at a quiescent point outside any
/// section it cannot leave (offline, waiting while the backlog stays
/// over the mark, once per owed call at most); inside one it keeps the
/// debt. Before, it was not held back at all.
#[test]
fn an_online_qsbr_thread_owes_the_push_back_and_pays_it_outside_sections() {
    let rcu: &'static Rcu = Box::leak(Box::new(
        Rcu::new(rcu_reclaim::Config::new()).expect("a domain"),
    ));
    let crdp = crate::crdp::CallRcuData::spawn(rcu, -1, crate::crdp::ThreadHooks::NONE);
    // A reader of the domain holds up every grace period until told to
    // leave: the batch in hand waits, the backlog behind it stays.
    let (entered_tx, entered) = std::sync::mpsc::channel();
    let (leave, leave_rx) = std::sync::mpsc::channel::<()>();
    let reader = std::thread::spawn(move || {
        let _g = rcu.read_lock();
        entered_tx.send(()).unwrap();
        let _ = leave_rx.recv();
    });
    entered.recv().unwrap();
    let n = crate::crdp::PUSH_BACK_AT as usize + 2;
    let heads: &'static mut [RcuHead] = (0..n)
        .map(|_| RcuHead {
            next: std::ptr::null_mut(),
            func: Some(ignore),
        })
        .collect::<Vec<_>>()
        .leak();
    let (first, rest) = heads.split_first_mut().unwrap();
    crdp.push(first, 0);
    while crdp.taken_now() == 0 {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let over = rest.iter_mut().map(|h| crdp.push(h, 0)).last();
    assert_eq!(over, Some(true), "the backlog is over the mark");
    assert!(crdp.over_mark_now());

    std::thread::spawn(move || {
        TOY_ONLINE.set(true);
        assert!(!owes_push_back());
        push_back::<Toy>(crdp.clone());
        push_back::<Toy>(crdp.clone());
        assert!(owes_push_back(), "online: the wait is owed");
        assert_eq!(
            TOY_OFFLINE_WAITS.get(),
            0,
            "call_rcu put the thread offline"
        );

        // Inside a section the batch waits for: kept.
        TOY_SECTION.set(true);
        pay_owed_push_back::<Toy>();
        assert!(owes_push_back(), "paid inside a section");
        assert_eq!(TOY_OFFLINE_WAITS.get(), 0);
        TOY_SECTION.set(false);

        // In a signal handler that interrupted the thread's own
        // call_rcu (which may hold the crdp's lock): kept.
        CALLER.with(|c| c.busy.set(true));
        pay_owed_push_back::<Toy>();
        assert!(owes_push_back(), "paid inside call_rcu");
        assert_eq!(TOY_OFFLINE_WAITS.get(), 0);
        CALLER.with(|c| c.busy.set(false));

        // At a quiescent state: offline, one wait per owed call while
        // the backlog stays over the mark (it does: the grace period
        // is held up), so two waits of a millisecond at least.
        TOY_SECTION.set(false);
        let t = std::time::Instant::now();
        pay_owed_push_back::<Toy>();
        let waited = t.elapsed();
        assert!(!owes_push_back(), "the debt was not paid");
        assert_eq!(TOY_OFFLINE_WAITS.get(), 1, "not paid offline");
        assert!(
            TOY_BUSY_WHILE_OFFLINE.get(),
            "the payment waits holding the crdp's lock: a handler's call_rcu \
             there must see the thread busy (and leave its head as an orphan)"
        );
        assert!(!in_call_rcu(), "still marked busy after the payment");
        assert!(
            waited >= 2 * crate::crdp::PUSH_BACK_WAIT,
            "paid {waited:?}, not a wait for each call"
        );
        // Nothing owed: nothing paid.
        pay_owed_push_back::<Toy>();
        assert_eq!(TOY_OFFLINE_WAITS.get(), 1);

        // A debt dropped (before a fork) is not paid.
        push_back::<Toy>(crdp.clone());
        forget_owed_push_back();
        assert!(!owes_push_back());

        // Offline, the thread waits at once and owes nothing.
        TOY_ONLINE.set(false);
        push_back::<Toy>(crdp.clone());
        assert!(!owes_push_back());
        assert_eq!(TOY_OFFLINE_WAITS.get(), 2);

        leave.send(()).unwrap();
        reader.join().unwrap();
        crdp.wait_drained();
        assert_eq!(crdp.backlog().0, 0);
        crdp.stop(false);
    })
    .join()
    .unwrap();
}

use crate::TestMemb as Memb;

/// A C node with its `rcu_head` first; its callback logs `id`.
#[repr(C)]
struct Node {
    head: RcuHead,
    id: usize,
    log: &'static Mutex<Vec<usize>>,
}

unsafe extern "C" fn log_and_free(head: *mut RcuHead) {
    // SAFETY: every head queued here is the first field of a boxed
    // `Node`, handed over by `queue_nodes` and invoked once.
    let node = unsafe { Box::from_raw(head.cast::<Node>()) };
    node.log.lock().unwrap().push(node.id);
}

fn queue_nodes(ids: std::ops::Range<usize>, log: &'static Mutex<Vec<usize>>) {
    for id in ids {
        let node = Box::into_raw(Box::new(Node {
            head: RcuHead {
                next: ptr::null_mut(),
                func: None,
            },
            id,
            log,
        }));
        // SAFETY: the node is ours to hand over until its callback.
        unsafe { queue::<Memb>(node.cast::<RcuHead>(), log_and_free, 0) };
    }
}

/// A node whose callback (set) logs `id` in `log`, for a test to push
/// by hand.
fn logged_node(id: usize, log: &'static Mutex<Vec<usize>>) -> *mut Node {
    Box::into_raw(Box::new(Node {
        head: RcuHead {
            next: ptr::null_mut(),
            func: Some(log_and_free),
        },
        id,
        log,
    }))
}

fn new_log() -> &'static Mutex<Vec<usize>> {
    Box::leak(Box::new(Mutex::new(Vec::new())))
}

/// Every test below changes process-wide crdp choices: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

#[test]
fn the_default_crdp_runs_every_head_once_oldest_first() {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let log = new_log();
    queue_nodes(0..3 * crate::crdp::PUSH_BACK_AT as usize, log);
    barrier::<Memb>();
    let got = log.lock().unwrap().clone();
    assert_eq!(got.len(), 3 * crate::crdp::PUSH_BACK_AT as usize);
    // Each batch runs oldest first, and batches run in order.
    assert!(got.windows(2).all(|w| w[0] < w[1]), "out of order");
}

#[test]
fn a_threads_own_crdp_takes_its_heads() {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let crdp = create_call_rcu_data::<Memb>(0, -1);
    set_thread_call_rcu_data(crdp);
    assert_eq!(get_call_rcu_data::<Memb>(), crdp);
    let log = new_log();
    queue_nodes(0..100, log);
    // SAFETY: `crdp` is live.
    let thread = unsafe { get_call_rcu_thread(crdp) };
    set_thread_call_rcu_data(ptr::null_mut());
    barrier::<Memb>();
    assert_eq!(*log.lock().unwrap(), (0..100).collect::<Vec<_>>());
    Memb::rcu().synchronize();
    // SAFETY: uninstalled a grace period ago; created above, freed once.
    unsafe { call_rcu_data_free::<Memb>(crdp) };
    // SAFETY: pthread_self has no preconditions.
    assert_ne!(thread, unsafe { libc::pthread_self() });
}

#[test]
fn call_rcu_threads_block_the_programs_signals() {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let crdp = create_call_rcu_data::<Memb>(0, -1);
    crate::assert_threads_block_signals("urcu-call-rcu");
    Memb::rcu().synchronize();
    // SAFETY: never installed; created above, freed once.
    unsafe { call_rcu_data_free::<Memb>(crdp) };
}

/// A crdp freed while another thread still has it installed (a misuse:
/// liburcu's `call_rcu` there then uses freed memory, and crashed or
/// lost the callbacks): that thread's next `call_rcu` goes to the
/// default, and every callback runs by the barrier.
#[test]
fn a_crdp_freed_while_installed_elsewhere_loses_nothing() {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let crdp = create_call_rcu_data::<Memb>(0, -1) as usize;
    let log = new_log();
    let (installed, freed) = (
        Arc::new(std::sync::Barrier::new(2)),
        Arc::new(std::sync::Barrier::new(2)),
    );
    let (i, f) = (installed.clone(), freed.clone());
    let user = std::thread::spawn(move || {
        set_thread_call_rcu_data(crdp as *mut CallRcuData);
        queue_nodes(0..1, log);
        i.wait();
        f.wait();
        queue_nodes(1..100, log);
        barrier::<Memb>();
    });
    installed.wait();
    Memb::rcu().synchronize();
    // SAFETY (of the test): created above and freed once; still
    // installed on `user`, which is the misuse under test.
    unsafe { call_rcu_data_free::<Memb>(crdp as *mut CallRcuData) };
    freed.wait();
    user.join().unwrap();
    assert_eq!(*log.lock().unwrap(), (0..100).collect::<Vec<_>>());
}

/// A head that lands on a crdp after `call_rcu_data_free` took its
/// queue (a `call_rcu` that chose it just before) is counted as a
/// stray, and the next barrier hands it to the default; with no stray,
/// a barrier does not scan the freed crdps at all (thousands of
/// create/free cycles made every barrier slower).
#[test]
fn a_head_pushed_on_a_freed_crdp_is_swept_by_the_next_barrier() {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    for _ in 0..200 {
        let c = create_call_rcu_data::<Memb>(0, -1);
        // SAFETY: created above, never installed, freed once.
        unsafe { call_rcu_data_free::<Memb>(c) };
    }
    barrier::<Memb>();
    assert_eq!(crate::crdp::strays(), 0, "freeing alone leaves no stray");
    let crdp = create_call_rcu_data::<Memb>(0, -1);
    // SAFETY: a live crdp of ours; it stays allocated once freed.
    let kept = unsafe { crate::crdp::clone_raw(crdp) };
    // SAFETY: created above, never installed, freed once.
    unsafe { call_rcu_data_free::<Memb>(crdp) };
    let log = new_log();
    let node = logged_node(7, log);
    // As a `call_rcu` that chose it before it died would.
    kept.push(node.cast::<RcuHead>(), 0);
    assert_eq!(crate::crdp::strays(), 1, "the late head was not counted");
    barrier::<Memb>();
    assert_eq!(*log.lock().unwrap(), vec![7], "the late head did not run");
    assert_eq!(crate::crdp::strays(), 0);
}

/// A crdp made and freed per short-lived thread (installed there,
/// uninstalled before the free, as liburcu asks) is let go once
/// nothing can reach it: the freed ones kept stay few however many
/// cycles run. One freed while still installed is kept until its
/// thread lets go of it.
#[test]
fn freed_crdps_that_nothing_reaches_are_let_go() {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    for i in 0..300 {
        let crdp = create_call_rcu_data::<Memb>(0, -1) as usize;
        std::thread::spawn(move || {
            set_thread_call_rcu_data(crdp as *mut CallRcuData);
            queue_nodes(i..i + 1, new_log());
            set_thread_call_rcu_data(ptr::null_mut());
        })
        .join()
        .unwrap();
        // SAFETY: created above, uninstalled, freed once.
        unsafe { call_rcu_data_free::<Memb>(crdp as *mut CallRcuData) };
    }
    barrier::<Memb>();
    let kept = crate::crdp::dead_kept();
    assert!(kept <= 4, "{kept} freed crdps kept after 300 cycles");

    // Freed while installed on a thread that goes on: kept, and let go
    // once that thread uninstalls it.
    let crdp = create_call_rcu_data::<Memb>(0, -1) as usize;
    let (installed_tx, installed_rx) = std::sync::mpsc::channel();
    let (freed_tx, freed_rx) = std::sync::mpsc::channel::<()>();
    let user = std::thread::spawn(move || {
        set_thread_call_rcu_data(crdp as *mut CallRcuData);
        installed_tx.send(()).unwrap();
        freed_rx.recv().unwrap();
        set_thread_call_rcu_data(ptr::null_mut());
    });
    installed_rx.recv().unwrap();
    // SAFETY (of the test): created above and freed once; still
    // installed on `user`, the misuse kept allocated for.
    unsafe { call_rcu_data_free::<Memb>(crdp as *mut CallRcuData) };
    Memb::rcu().synchronize();
    crate::crdp::prune_dead::<Memb>();
    let held = crate::crdp::dead_kept();
    assert!(held >= 1, "a crdp installed on a live thread was let go");
    freed_tx.send(()).unwrap();
    user.join().unwrap();
    Memb::rcu().synchronize();
    crate::crdp::prune_dead::<Memb>();
    assert!(
        crate::crdp::dead_kept() < held,
        "not let go once uninstalled"
    );

    // Installed on threads that end without uninstalling it, then
    // freed: the threads' ends uninstalled it, so it is let go.
    let before = crate::crdp::dead_kept();
    for i in 0..50 {
        let crdp = create_call_rcu_data::<Memb>(0, -1) as usize;
        std::thread::spawn(move || {
            set_thread_call_rcu_data(crdp as *mut CallRcuData);
            queue_nodes(i..i + 1, new_log());
        })
        .join()
        .unwrap();
        // SAFETY: created above; the thread that used it has ended.
        unsafe { call_rcu_data_free::<Memb>(crdp as *mut CallRcuData) };
    }
    Memb::rcu().synchronize();
    crate::crdp::prune_dead::<Memb>();
    let kept = crate::crdp::dead_kept();
    assert!(
        kept <= before + 4,
        "{} of 50 crdps freed after their threads ended kept",
        kept - before
    );
}

/// Two threads freeing one crdp at once (a double free): one frees
/// it, the other is refused; neither takes the reference twice (with
/// freed crdps released, that was a use after free).
#[test]
fn a_crdp_freed_twice_at_once_is_freed_once() {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    for _ in 0..50 {
        let crdp = create_call_rcu_data::<Memb>(0, -1) as usize;
        let go = Arc::new(std::sync::Barrier::new(2));
        let frees: Vec<_> = (0..2)
            .map(|_| {
                let go = go.clone();
                std::thread::spawn(move || {
                    go.wait();
                    // SAFETY (of the test): the double free under test.
                    unsafe { call_rcu_data_free::<Memb>(crdp as *mut CallRcuData) };
                })
            })
            .collect();
        for f in frees {
            f.join().unwrap();
        }
        Memb::rcu().synchronize();
        crate::crdp::prune_dead::<Memb>();
    }
    assert!(crate::crdp::dead_kept() <= 2);
}

/// A thread whose crdp another thread freed while it was installed
/// queues its next call on the default at once (said once), not on the
/// freed one until some barrier swept it.
#[test]
fn a_thread_whose_crdp_was_freed_under_it_moves_to_the_default() {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let crdp = create_call_rcu_data::<Memb>(0, -1) as usize;
    let (installed_tx, installed_rx) = std::sync::mpsc::channel();
    let (freed_tx, freed_rx) = std::sync::mpsc::channel::<()>();
    let log = new_log();
    let user = std::thread::spawn(move || {
        set_thread_call_rcu_data(crdp as *mut CallRcuData);
        installed_tx.send(()).unwrap();
        freed_rx.recv().unwrap();
        queue_nodes(0..10, log);
        let still = get_thread_call_rcu_data().is_null();
        (still, crate::crdp::strays())
    });
    installed_rx.recv().unwrap();
    // SAFETY (of the test): created above and freed once; still
    // installed on `user`, the misuse under test.
    unsafe { call_rcu_data_free::<Memb>(crdp as *mut CallRcuData) };
    freed_tx.send(()).unwrap();
    let (still, strays) = user.join().unwrap();
    assert!(still, "the freed crdp is still installed");
    assert_eq!(strays, 0, "heads went to the freed crdp");
    Memb::rcu().synchronize();
    // The default's thread runs them without any barrier's sweep.
    let start = std::time::Instant::now();
    while log.lock().unwrap().len() < 10 {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "the heads did not run without a barrier"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

#[test]
fn call_rcu_before_fork_waits_for_a_chain_being_handed_over() {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    use std::sync::atomic::AtomicBool;
    use std::sync::Barrier;
    static MOVED: AtomicBool = AtomicBool::new(false);
    let started = std::sync::Arc::new(Barrier::new(2));
    let s = started.clone();
    // A thread with a chain in its hands: taken from one queue, not
    // yet on the other, for 200 ms.
    let mover = std::thread::spawn(move || {
        crate::crdp::handing_off(false, || {
            s.wait();
            std::thread::sleep(std::time::Duration::from_millis(200));
            MOVED.store(true, Ordering::SeqCst);
        })
    });
    started.wait();
    crate::fork::before_fork::<Memb>();
    // A fork here would copy the chain only if it was pushed.
    let moved = MOVED.load(Ordering::SeqCst);
    crate::fork::after_fork_parent::<Memb>();
    mover.join().unwrap();
    assert!(
        moved,
        "call_rcu_before_fork returned with a chain between two queues"
    );
    // The forking thread, in its window, hands chains over itself
    // (the child's rebuild does) without waiting for itself.
    crate::fork::before_fork::<Memb>();
    let ran = crate::crdp::handing_off(false, || true);
    crate::fork::after_fork_parent::<Memb>();
    assert!(ran);
}

#[test]
fn a_handlers_heads_wait_aside_during_a_fork_and_the_parent_hands_them_on() {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let log = new_log();
    // Made before: a handler's call_rcu must not have to make it.
    get_default_call_rcu_data::<Memb>();
    crate::fork::before_fork::<Memb>();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // A head a handler's `call_rcu` left on the orphan stack (its
        // thread was inside another call), then that call's way out,
        // which must not wait for the fork: the fork may wait for a
        // lock the interrupted code holds (`malloc`'s).
        let node = logged_node(7, log);
        // SAFETY: the node is ours to hand over until its callback.
        unsafe { crate::crdp::push_orphan(node.cast::<RcuHead>()) };
        deliver_orphans::<Memb>();
        let _ = tx.send(has_orphans());
    });
    let left_aside = rx.recv_timeout(std::time::Duration::from_secs(10));
    crate::fork::after_fork_parent::<Memb>();
    assert_eq!(
        left_aside,
        Ok(true),
        "a call_rcu's hand-off during a fork waited for it, or took the heads"
    );
    // The parent's hook handed them on.
    assert!(!has_orphans());
    barrier::<Memb>();
    assert_eq!(*log.lock().unwrap(), vec![7]);
}

#[test]
fn per_cpu_crdps_take_the_heads_inside_a_section() {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    assert_eq!(create_all_cpu_call_rcu_data::<Memb>(0), 0);
    let log = new_log();
    queue_nodes(0..1000, log);
    barrier::<Memb>();
    let mut got = log.lock().unwrap().clone();
    // Heads queued from different CPUs may run in any order between
    // the crdps: every one ran, once.
    got.sort_unstable();
    assert_eq!(got, (0..1000).collect::<Vec<_>>());
    free_all_cpu_call_rcu_data::<Memb>();
    assert!((0..per_cpu().len() as c_int).all(|c| get_cpu_call_rcu_data(c).is_null()));
}

/// A C node with its `rcu_head` first; its callback sets its flag.
#[repr(C)]
struct Flagged {
    head: RcuHead,
    flag: &'static std::sync::atomic::AtomicBool,
}

unsafe extern "C" fn set_flag(head: *mut RcuHead) {
    // SAFETY: every head queued with this callback is the first field of
    // a boxed `Flagged`, handed over by the test below and invoked once.
    let node = unsafe { Box::from_raw(head.cast::<Flagged>()) };
    node.flag.store(true, Ordering::Release);
}

/// `rcu_barrier` against `call_rcu_data_free`: the callbacks a freed
/// crdp hands over to the default one are still covered by a barrier
/// that runs meanwhile (liburcu's contract: every callback queued
/// before the barrier has run when it returns). One thread creates a
/// crdp, queues a few callbacks on it and frees it, in a loop; another
/// notes how many were queued, calls `rcu_barrier` and checks that each
/// of them ran.
#[test]
fn a_barrier_covers_callbacks_handed_over_by_a_crdp_freed_meanwhile() {
    use std::time::{Duration, Instant};
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    const MAX: usize = 1 << 20;
    const PER_CRDP: usize = 16;
    let (flags, queued, done) = barrier_stress_state(MAX);
    let run_for = Duration::from_secs(3);
    let freer = std::thread::spawn(move || {
        let _done = StopOnDrop(done);
        let start = Instant::now();
        let mut next = 0;
        while start.elapsed() < run_for && next + PER_CRDP <= MAX {
            let crdp = create_call_rcu_data::<Memb>(0, -1);
            set_thread_call_rcu_data(crdp);
            for flag in &flags[next..next + PER_CRDP] {
                queue_flagged(flag);
            }
            next += PER_CRDP;
            queued.store(next, Ordering::Release);
            set_thread_call_rcu_data(ptr::null_mut());
            Memb::rcu().synchronize();
            // SAFETY: uninstalled a grace period ago; created above,
            // freed once.
            unsafe { call_rcu_data_free::<Memb>(crdp) };
        }
        done.store(true, Ordering::Release);
    });
    let barriers = barriers_until(done, queued, flags);
    freer.join().unwrap();
    barriers.check(queued, flags);
}

/// `rcu_barrier` beside `rcu_reclaim_run_callbacks` (which runs a batch
/// of a crdp on the caller's thread): a batch run there must not let a
/// barrier count a newer batch's heads for an older batch still in the
/// crdp thread's hands. One thread floods `call_rcu` on the default
/// crdp, one loops over the run here, and the test thread notes how
/// many were queued, calls `rcu_barrier` and checks that each of them
/// ran.
#[test]
fn a_barrier_beside_runs_on_the_callers_thread_covers_every_older_callback() {
    use std::time::{Duration, Instant};
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    const MAX: usize = 1 << 22;
    let (flags, queued, done) = barrier_stress_state(MAX);
    let run_for = Duration::from_secs(3);
    let flooder = std::thread::spawn(move || {
        let _done = StopOnDrop(done);
        let start = Instant::now();
        let mut next = 0;
        while start.elapsed() < run_for && next < MAX {
            queue_flagged(&flags[next]);
            next += 1;
            queued.store(next, Ordering::Release);
        }
        done.store(true, Ordering::Release);
    });
    let runner = std::thread::spawn(move || {
        while !done.load(Ordering::Acquire) {
            wait_all_drained(true);
        }
    });
    let barriers = barriers_until(done, queued, flags);
    flooder.join().unwrap();
    runner.join().unwrap();
    barriers.check(queued, flags);
}

/// Queues a `call_rcu` of a boxed `Flagged` that sets `flag`.
fn queue_flagged(flag: &'static std::sync::atomic::AtomicBool) {
    let node = Box::into_raw(Box::new(Flagged {
        head: RcuHead {
            next: ptr::null_mut(),
            func: None,
        },
        flag,
    }));
    // SAFETY: the node is ours to hand over until its callback.
    unsafe { queue::<Memb>(node.cast::<RcuHead>(), set_flag, 0) };
}

/// Sets its flag when dropped, on a panic too: a producer that panics still
/// says it is done, so [`barriers_until`] (and a thread looping until
/// `done`) ends and the test fails instead of hanging.
struct StopOnDrop<'a>(&'a std::sync::atomic::AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A barrier stress test's shared state, leaked (the callbacks and
/// threads outlive any borrow): `max` flags, the count of callbacks
/// queued so far, and whether the producers are done.
fn barrier_stress_state(
    max: usize,
) -> (
    &'static [std::sync::atomic::AtomicBool],
    &'static std::sync::atomic::AtomicUsize,
    &'static std::sync::atomic::AtomicBool,
) {
    use std::sync::atomic::{AtomicBool, AtomicUsize};
    (
        Box::leak((0..max).map(|_| AtomicBool::new(false)).collect()),
        Box::leak(Box::new(AtomicUsize::new(0))),
        Box::leak(Box::new(AtomicBool::new(false))),
    )
}

/// What [`barriers_until`] saw: how many barriers, and for each that
/// returned early, the first callback it had not waited for and how
/// many were queued before it.
struct Barriers {
    count: u64,
    escaped: Vec<(usize, usize)>,
}

/// Calls `rcu_barrier` until `done`, each time noting how many
/// callbacks were `queued` before it and checking, once it returns,
/// that each of them has set its flag.
fn barriers_until(
    done: &std::sync::atomic::AtomicBool,
    queued: &std::sync::atomic::AtomicUsize,
    flags: &[std::sync::atomic::AtomicBool],
) -> Barriers {
    let (mut checked, mut count, mut escaped) = (0, 0u64, Vec::new());
    while !done.load(Ordering::Acquire) {
        let before = queued.load(Ordering::Acquire);
        barrier::<Memb>();
        count += 1;
        if let Some(i) = (checked..before).find(|&i| !flags[i].load(Ordering::Acquire)) {
            escaped.push((i, before));
        }
        checked = before;
    }
    Barriers { count, escaped }
}

impl Barriers {
    /// After the producers stopped: one more barrier runs every
    /// callback, and none of the barriers returned early.
    fn check(
        &self,
        queued: &std::sync::atomic::AtomicUsize,
        flags: &[std::sync::atomic::AtomicBool],
    ) {
        barrier::<Memb>();
        let total = queued.load(Ordering::Acquire);
        assert!(flags[..total].iter().all(|f| f.load(Ordering::Acquire)));
        assert!(
            self.escaped.is_empty(),
            "{} of {} barriers returned before a callback queued before them had run \
             (first: callback {} of the {} queued before it; {total} queued in all)",
            self.escaped.len(),
            self.count,
            self.escaped[0].0,
            self.escaped[0].1
        );
    }
}
