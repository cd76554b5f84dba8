//! Audit probes: panic safety and teardown of the core (panicking
//! callbacks, deferred drops, hooks, shrinkers, OOM handlers, page
//! allocators and update closures; panics inside sections; dropping
//! domains while other threads wait; retiring from thread-local
//! destructors; thousands of threads and domains). Each counts what ran
//! and runs under a watchdog that aborts the process on a hang.

mod common;
use common::StopOnDrop;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rcu_reclaim::pressure::NodeMask;
use rcu_reclaim::reclaim::{
    reclaim_allowed, MemoryBudget, Reclaimer, Scanned, ShrinkControl, Shrinker,
};
use rcu_reclaim::{Config, Rcu, RcuCell, ReclaimSize};

struct Watchdog(Arc<AtomicBool>);
fn watchdog(name: &'static str, secs: u64) -> Watchdog {
    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    thread::spawn(move || {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(secs) {
            if d.load(Ordering::Acquire) {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        eprintln!("HANG: {name} did not finish in {secs}s");
        std::process::abort();
    });
    Watchdog(done)
}
impl Drop for Watchdog {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

fn quiet() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let s = format!("{info}");
            if s.contains("PROBE-DELIBERATE") {
                return;
            }
            prev(info);
        }));
    });
}

/// A panic payload whose Drop panics too.
struct BombPayload;
impl Drop for BombPayload {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("PROBE-DELIBERATE payload drop");
        }
    }
}

fn domains() -> Vec<(&'static str, Rcu)> {
    vec![
        ("default", Rcu::new(Config::new()).unwrap()),
        ("on_demand", Rcu::new(Config::new().on_demand()).unwrap()),
        (
            "qsbr",
            Rcu::new(Config::new().flavor(rcu_reclaim::Flavor::Qsbr)).unwrap(),
        ),
    ]
}

// ---------------------------------------------------------------------
// 1. Panicking callbacks: nothing lost, reported, workers survive.

#[test]
fn panicking_callbacks_lose_nothing_and_are_reported() {
    quiet();
    let _w = watchdog("panicking_callbacks", 90);
    for (name, _) in domains() {
        let hooked = Arc::new(AtomicUsize::new(0));
        let h = hooked.clone();
        let cfg = match name {
            "default" => Config::new(),
            "on_demand" => Config::new().on_demand(),
            _ => Config::new().flavor(rcu_reclaim::Flavor::Qsbr),
        };
        let rcu = Rcu::new(cfg.on_callback_panic(move |_| {
            h.fetch_add(1, Ordering::SeqCst);
        }))
        .unwrap();
        let ran = Arc::new(AtomicUsize::new(0));
        let mut expect_ok = 0;
        let mut expect_panic = 0;
        for round in 0..3 {
            for i in 0..3000usize {
                let ran = ran.clone();
                let kind = i % 5;
                let panics = i % 7 == 3;
                if panics {
                    expect_panic += 1;
                } else {
                    expect_ok += 1;
                }
                let f = move || {
                    if panics {
                        if i % 2 == 0 {
                            std::panic::panic_any(BombPayload);
                        }
                        panic!("PROBE-DELIBERATE callback {i}");
                    }
                    ran.fetch_add(1, Ordering::SeqCst);
                };
                match kind {
                    0 | 1 => rcu.call(f),
                    2 => rcu.call_sized(f, 64),
                    3 => rcu.call_hurry(f),
                    _ => rcu.call(f),
                }
            }
            if round == 1 {
                // Let workers run, not barrier.
                let t = Instant::now();
                while ran.load(Ordering::SeqCst) < expect_ok && t.elapsed() < Duration::from_secs(5)
                {
                    if name == "on_demand" {
                        break;
                    }
                    thread::sleep(Duration::from_millis(5));
                }
            }
            rcu.barrier();
            assert_eq!(
                ran.load(Ordering::SeqCst),
                expect_ok,
                "{name} round {round}: lost callbacks"
            );
            assert_eq!(
                hooked.load(Ordering::SeqCst),
                expect_panic,
                "{name} round {round}: hook count"
            );
            assert_eq!(rcu.stats().callback_panics as usize, expect_panic, "{name}");
            assert_eq!(rcu.pending(), 0);
        }
    }
}

// 1b. Panicking hook + panicking callback.
#[test]
fn a_panicking_hook_loses_nothing() {
    quiet();
    let _w = watchdog("panicking_hook", 60);
    let rcu = Rcu::new(Config::new().on_callback_panic(|_| {
        std::panic::panic_any(BombPayload);
    }))
    .unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    for i in 0..5000usize {
        let ran = ran.clone();
        rcu.call(move || {
            if i % 10 == 0 {
                panic!("PROBE-DELIBERATE {i}");
            }
            ran.fetch_add(1, Ordering::SeqCst);
        });
    }
    rcu.barrier();
    assert_eq!(ran.load(Ordering::SeqCst), 4500);
}

// ---------------------------------------------------------------------
// 2. Deferred drops whose Drop panics.

static DROPS: AtomicUsize = AtomicUsize::new(0);
struct Grenade(usize, Vec<u8>);
impl Drop for Grenade {
    fn drop(&mut self) {
        DROPS.fetch_add(1, Ordering::SeqCst);
        if self.0 % 3 == 0 {
            panic!("PROBE-DELIBERATE grenade {}", self.0);
        }
    }
}
impl ReclaimSize for Grenade {
    fn reclaim_size(&self) -> usize {
        std::mem::size_of::<Self>() + self.1.capacity()
    }
}

static ADROPS: AtomicUsize = AtomicUsize::new(0);
struct AnyGrenade(usize);
impl Drop for AnyGrenade {
    fn drop(&mut self) {
        ADROPS.fetch_add(1, Ordering::SeqCst);
        if self.0 % 3 == 0 {
            panic!("PROBE-DELIBERATE anygrenade {}", self.0);
        }
    }
}
impl ReclaimSize for AnyGrenade {
    const DROPS_ANYWHERE: bool = true;
    fn reclaim_size(&self) -> usize {
        8
    }
}

#[test]
fn deferred_drops_that_panic_are_each_dropped_once_then_domain_drop() {
    quiet();
    let _w = watchdog("grenades", 90);
    let before = DROPS.load(Ordering::SeqCst);
    let abefore = ADROPS.load(Ordering::SeqCst);
    let n = 20_000;
    {
        let rcu = Rcu::new(Config::new().retiring_thread_frees(true)).unwrap();
        thread::scope(|s| {
            for t in 0..2 {
                let rcu = &rcu;
                s.spawn(move || {
                    for i in 0..n / 2 {
                        let k = t * n + i;
                        rcu.defer_drop(Box::new(Grenade(k, vec![0; 16])));
                        rcu.defer_drop(Box::new(AnyGrenade(k)));
                        if i % 1000 == 0 {
                            let cell = RcuCell::new_in(rcu, Box::new(AnyGrenade(3)));
                            cell.store(Box::new(AnyGrenade(3)));
                            cell.store(Box::new(AnyGrenade(4)));
                            // cell dropped here: drops its value at once (&mut)
                            let r = catch_unwind(AssertUnwindSafe(|| drop(cell)));
                            let _ = r;
                        }
                    }
                });
            }
        });
        // Drop the domain with everything still queued.
    }
    let got = DROPS.load(Ordering::SeqCst) - before;
    assert_eq!(got, n, "Grenade drops");
    let agot = ADROPS.load(Ordering::SeqCst) - abefore;
    // n AnyGrenades + per 1000: 3 values in cells (2 stored-over, 1 at drop)
    assert_eq!(agot, n + (n / 2 / 1000) * 2 * 3, "AnyGrenade drops");
}

// ---------------------------------------------------------------------
// 3. Panics inside read-side sections.

#[test]
fn panics_inside_nested_guards_end_the_sections() {
    quiet();
    let _w = watchdog("nested_guards", 60);
    for (name, rcu) in domains() {
        let r = catch_unwind(AssertUnwindSafe(|| {
            let _a = rcu.read_lock();
            let _b = rcu.read_lock();
            let _c = Rcu::global().read_lock();
            let _d = rcu.read_lock();
            panic!("PROBE-DELIBERATE in section");
        }));
        assert!(r.is_err());
        assert!(!rcu.in_read_section(), "{name}");
        assert_eq!(rcu.read_depth(), 0, "{name}");
        assert!(!Rcu::global().in_read_section());
        rcu.synchronize();
        Rcu::global().synchronize();
        // A guard dropped out of order by a panic in another guard's scope.
        let r = catch_unwind(AssertUnwindSafe(|| {
            let a = rcu.read_lock();
            let b = rcu.read_lock();
            drop(a);
            let _c = rcu.read_lock();
            drop(b);
            panic!("PROBE-DELIBERATE");
        }));
        assert!(r.is_err());
        assert_eq!(rcu.read_depth(), 0, "{name}");
        rcu.synchronize();
        rcu.barrier();
    }
}

#[test]
fn a_panic_in_a_section_on_another_thread_holds_nothing_up() {
    quiet();
    let _w = watchdog("thread_panic_in_section", 60);
    let rcu = Rcu::new(Config::new()).unwrap();
    let cell = Arc::new(RcuCell::new_in(&rcu, Box::new(1u64)));
    let ran = Arc::new(AtomicUsize::new(0));
    for i in 0..50 {
        let rcu2 = rcu.clone();
        let cell2 = cell.clone();
        let ran2 = ran.clone();
        let h = thread::spawn(move || {
            let g = rcu2.read_lock();
            let _g2 = rcu2.read_lock();
            assert!(cell2.load(&g).is_some());
            let r2 = ran2.clone();
            rcu2.call(move || {
                r2.fetch_add(1, Ordering::SeqCst);
            });
            cell2.store(Box::new(i));
            panic!("PROBE-DELIBERATE thread in section");
        });
        assert!(h.join().is_err());
    }
    rcu.synchronize();
    rcu.barrier();
    assert_eq!(ran.load(Ordering::SeqCst), 50);
}

// ---------------------------------------------------------------------
// 4. Panics inside RcuCell::update closures.

#[test]
fn a_panic_in_update_leaves_the_cell_usable() {
    quiet();
    let _w = watchdog("update_panic", 60);
    let rcu = Rcu::new(Config::new()).unwrap();
    let a = RcuCell::new_in(&rcu, Box::new(1u64));
    let b = RcuCell::new_in(&rcu, Box::new(10u64));
    for _ in 0..20 {
        let r = catch_unwind(AssertUnwindSafe(|| {
            a.update(|_| {
                b.update(|_| -> Option<Box<u64>> { panic!("PROBE-DELIBERATE update") });
                None
            })
        }));
        assert!(r.is_err());
        assert!(!rcu.in_read_section());
    }
    // Both cells accept writes, including from an update of the other.
    a.update(|v| Some(Box::new(v.unwrap() + 1)));
    b.store(Box::new(11));
    a.update(|v| {
        b.update(|w| Some(Box::new(w.unwrap() + 1)));
        Some(Box::new(v.unwrap() + 1))
    });
    let g = rcu.read_lock();
    assert_eq!(*a.load(&g).unwrap(), 3);
    assert_eq!(*b.load(&g).unwrap(), 12);
    drop(g);
    rcu.synchronize();
    rcu.barrier();
}

// ---------------------------------------------------------------------
// 5. Panicking shrinker / OOM handler on the caller's thread.

struct PanickyShrinker {
    panics: AtomicBool,
    scans: AtomicUsize,
}
impl Shrinker for PanickyShrinker {
    fn count(&self, _: &ShrinkControl) -> usize {
        100
    }
    fn scan(&self, ctl: &mut ShrinkControl) -> Scanned {
        self.scans.fetch_add(1, Ordering::SeqCst);
        if self.panics.load(Ordering::SeqCst) {
            panic!("PROBE-DELIBERATE shrinker");
        }
        let n = ctl.nr_to_scan();
        Scanned {
            freed: n,
            bytes: n * 1024,
        }
    }
}

#[test]
fn a_shrinker_panicking_in_a_direct_call_leaves_the_thread_able_to_reclaim() {
    quiet();
    let _w = watchdog("shrinker_direct", 60);
    let rcu = Rcu::new(Config::new()).unwrap();
    let reclaimer = Reclaimer::new(&rcu);
    let s = Arc::new(PanickyShrinker {
        panics: AtomicBool::new(true),
        scans: AtomicUsize::new(0),
    });
    let id = reclaimer.register(s.clone());
    let r = catch_unwind(AssertUnwindSafe(|| reclaimer.shrink(2)));
    eprintln!(
        "shrink with panicking shrinker: {:?}",
        r.as_ref().map(|_| ()).map_err(|_| "panicked")
    );
    assert!(
        reclaim_allowed(),
        "after shrink: thread left marked no-reclaim"
    );
    let r = catch_unwind(AssertUnwindSafe(|| {
        reclaimer.reclaim(1 << 20, &NodeMask::all())
    }));
    eprintln!(
        "reclaim with panicking shrinker: {:?}",
        r.as_ref().map(|_| ()).map_err(|_| "panicked")
    );
    assert!(
        reclaim_allowed(),
        "after reclaim: thread left marked no-reclaim"
    );
    s.panics.store(false, Ordering::SeqCst);
    let done = reclaimer.shrink(2);
    assert!(done.freed_bytes > 0, "{done:?}");
    // unregister must not wait for a call count a panic left behind.
    let t = Instant::now();
    assert!(reclaimer.unregister(id));
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "unregister waited {:?}",
        t.elapsed()
    );
    // synchronize/barrier work (clock suspension restored)
    rcu.synchronize();
    rcu.barrier();
}

#[test]
fn a_panicking_oom_handler_in_a_direct_call() {
    quiet();
    let _w = watchdog("oom_direct", 60);
    let rcu = Rcu::new(Config::new()).unwrap();
    let reclaimer = Reclaimer::new(&rcu);
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    reclaimer.set_oom_handler(move |_| {
        c.fetch_add(1, Ordering::SeqCst);
        panic!("PROBE-DELIBERATE oom handler");
    });
    for _ in 0..3 {
        let r = catch_unwind(AssertUnwindSafe(|| {
            reclaimer.reclaim(1 << 30, &NodeMask::all())
        }));
        eprintln!(
            "oom handler panicked: reclaim -> {}",
            if r.is_err() { "unwound" } else { "returned" }
        );
        assert!(
            reclaim_allowed(),
            "thread left no-reclaim after an OOM handler panic"
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(reclaimer.stats().ooms, 3);
}

#[test]
fn a_panicking_oom_handler_and_shrinker_under_a_budget() {
    quiet();
    let _w = watchdog("oom_budget", 90);
    let rcu = Rcu::new(Config::new()).unwrap();
    let reclaimer = Arc::new(Reclaimer::new(&rcu));
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    reclaimer.set_oom_handler(move |_| {
        c.fetch_add(1, Ordering::SeqCst);
        std::panic::panic_any(BombPayload);
    });
    let s = Arc::new(PanickyShrinker {
        panics: AtomicBool::new(true),
        scans: AtomicUsize::new(0),
    });
    reclaimer.register(s.clone());
    let used = Arc::new(AtomicUsize::new(0));
    let u = used.clone();
    let budget = MemoryBudget::new(64 << 20, reclaimer.clone(), move || {
        u.load(Ordering::SeqCst)
    });
    // Over min: check reclaims directly on this thread.
    used.store(63 << 20, Ordering::SeqCst);
    for _ in 0..5 {
        let r = catch_unwind(AssertUnwindSafe(|| budget.check()));
        eprintln!(
            "budget.check over min -> {:?}",
            r.as_ref().map_err(|_| "unwound")
        );
        assert!(reclaim_allowed());
    }
    thread::sleep(Duration::from_millis(300));
    used.store(0, Ordering::SeqCst);
    // the background reclaimer still answers afterwards
    s.panics.store(false, Ordering::SeqCst);
    used.store(56 << 20, Ordering::SeqCst);
    let t = Instant::now();
    let before = s.scans.load(Ordering::SeqCst);
    while s.scans.load(Ordering::SeqCst) == before && t.elapsed() < Duration::from_secs(10) {
        let _ = budget.check();
        thread::sleep(Duration::from_millis(10));
    }
    assert!(
        s.scans.load(Ordering::SeqCst) > before,
        "background reclaim dead"
    );
    eprintln!("budget stats {:?}", budget.stats());
    drop(budget);
}

// ---------------------------------------------------------------------
// 6. Callbacks that wait: synchronize / barrier / call from inside.

#[test]
fn callbacks_that_wait_or_queue() {
    quiet();
    let _w = watchdog("callbacks_wait", 90);
    let msgs = Arc::new(Mutex::new(Vec::<String>::new()));
    let m = msgs.clone();
    let rcu =
        Rcu::new(Config::new().on_callback_panic(move |s| m.lock().unwrap().push(s.to_string())))
            .unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    for i in 0..200 {
        let r2 = rcu.clone();
        let ran2 = ran.clone();
        rcu.call(move || {
            match i % 4 {
                0 => r2.synchronize(),
                1 => {
                    let ran3 = ran2.clone();
                    r2.call(move || {
                        ran3.fetch_add(1, Ordering::SeqCst);
                    });
                }
                2 => r2.barrier(), // documented to panic
                _ => {
                    let c = r2.start_poll();
                    r2.cond_synchronize(c);
                }
            }
            ran2.fetch_add(1, Ordering::SeqCst);
        });
    }
    rcu.barrier();
    rcu.barrier();
    let m = msgs.lock().unwrap();
    eprintln!("{} panics; first: {:?}", m.len(), m.first());
    // 200 - 50 barrier callbacks + 50 nested calls
    assert_eq!(ran.load(Ordering::SeqCst), 150 + 50, "msgs {:?}", m.first());
    assert_eq!(m.len(), 50);
    assert!(m[0].contains("barrier"), "{}", m[0]);
}

// ---------------------------------------------------------------------
// 7. Teardown of a private domain while other threads use clones.

#[test]
fn dropping_handles_while_others_wait_in_barrier_and_synchronize() {
    quiet();
    let _w = watchdog("teardown_waits", 120);
    for round in 0..20 {
        let rcu = Rcu::new(if round % 2 == 0 {
            Config::new()
        } else {
            Config::new().on_demand()
        })
        .unwrap();
        let ran = Arc::new(AtomicUsize::new(0));
        let queued = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let mut hs = Vec::new();
        for t in 0..4 {
            let rcu = rcu.clone();
            let ran = ran.clone();
            let queued = queued.clone();
            let stop = stop.clone();
            hs.push(thread::spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) || i < 100 {
                    let r = ran.clone();
                    queued.fetch_add(1, Ordering::SeqCst);
                    rcu.call(move || {
                        r.fetch_add(1, Ordering::SeqCst);
                    });
                    match (t + i) % 4 {
                        0 => rcu.synchronize(),
                        1 if i % 16 == 0 => rcu.barrier(),
                        2 => {
                            let g = rcu.read_lock();
                            thread::yield_now();
                            drop(g);
                        }
                        _ => {}
                    }
                    i += 1;
                }
                // exits holding nothing; its clone drops here (maybe last)
            }));
        }
        let _stop = StopOnDrop(&stop);
        thread::sleep(Duration::from_millis(20));
        drop(rcu);
        stop.store(true, Ordering::Relaxed);
        for h in hs {
            h.join().unwrap();
        }
        // The last handle ran everything before returning.
        assert_eq!(
            ran.load(Ordering::SeqCst),
            queued.load(Ordering::SeqCst),
            "round {round}"
        );
    }
}

// ---------------------------------------------------------------------
// 8. Retiring from thread-local destructors at thread exit.

static TLS_RAN: AtomicUsize = AtomicUsize::new(0);
/// The tests that count `TLS_RAN` and `TLS_DROPPED` run one at a time.
static TLS_SERIAL: Mutex<()> = Mutex::new(());
static TLS_DROPPED: AtomicUsize = AtomicUsize::new(0);

struct Counted;
impl Drop for Counted {
    fn drop(&mut self) {
        TLS_DROPPED.fetch_add(1, Ordering::SeqCst);
    }
}
impl ReclaimSize for Counted {
    fn reclaim_size(&self) -> usize {
        8
    }
}

struct Retirer(Option<Rcu>);
impl Drop for Retirer {
    fn drop(&mut self) {
        let g = Rcu::global();
        g.call(|| {
            TLS_RAN.fetch_add(1, Ordering::SeqCst);
        });
        g.defer_drop(Box::new(Counted));
        let _s = g.read_lock();
        if let Some(r) = &self.0 {
            r.call(|| {
                TLS_RAN.fetch_add(1, Ordering::SeqCst);
            });
            r.defer_drop(Box::new(Counted));
            let _s2 = r.read_lock();
            r.call_sized(
                || {
                    TLS_RAN.fetch_add(1, Ordering::SeqCst);
                },
                16,
            );
        }
    }
}

thread_local! {
    static EARLY: std::cell::RefCell<Option<Retirer>> = const { std::cell::RefCell::new(None) };
    static LATE: std::cell::RefCell<Option<Retirer>> = const { std::cell::RefCell::new(None) };
}

#[test]
fn retiring_from_thread_local_destructors_at_exit() {
    quiet();
    let _serial = TLS_SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let _w = watchdog("tls_retire", 90);
    let rcu = Rcu::new(Config::new()).unwrap();
    let threads = 200;
    let r0 = TLS_RAN.load(Ordering::SeqCst);
    let d0 = TLS_DROPPED.load(Ordering::SeqCst);
    for i in 0..threads {
        let rcu = rcu.clone();
        thread::spawn(move || {
            // Touch the library first in one order, later in the other, so
            // its own thread-locals are registered before / after ours.
            if i % 2 == 0 {
                let _ = rcu.read_lock();
                Rcu::global().call(|| {});
                EARLY.with(|e| *e.borrow_mut() = Some(Retirer(Some(rcu.clone()))));
            } else {
                LATE.with(|e| *e.borrow_mut() = Some(Retirer(Some(rcu.clone()))));
                let _ = rcu.read_lock();
                Rcu::global().call(|| {});
                rcu.call(|| {});
            }
        })
        .join()
        .unwrap();
    }
    Rcu::global().barrier();
    rcu.barrier();
    // each thread: global call + private call + private call_sized = 3 runs; 2 drops
    assert_eq!(TLS_RAN.load(Ordering::SeqCst) - r0, threads * 3);
    assert_eq!(TLS_DROPPED.load(Ordering::SeqCst) - d0, threads * 2);
    // The private domain handle dropped from a thread-local: drop ours last
    // while one thread holds the last clone in its TLS.
    let ran_before = TLS_RAN.load(Ordering::SeqCst);
    let h = {
        let rcu = rcu.clone();
        thread::spawn(move || {
            LATE.with(|e| *e.borrow_mut() = Some(Retirer(Some(rcu))));
            thread::sleep(Duration::from_millis(50));
        })
    };
    drop(rcu);
    h.join().unwrap();
    Rcu::global().barrier();
    assert_eq!(TLS_RAN.load(Ordering::SeqCst) - ran_before, 3);
}

// ---------------------------------------------------------------------
// 10. A thread that exits inside a leaked section: clear report, no hang.

#[test]
fn a_leaked_guard_on_an_exited_thread_is_reported() {
    quiet();
    let _w = watchdog("leaked_guard", 60);
    let rcu = Rcu::new(Config::new().stall_timeout(Duration::from_millis(300))).unwrap();
    {
        let rcu = rcu.clone();
        thread::spawn(move || {
            std::mem::forget(rcu.read_lock());
        })
        .join()
        .unwrap();
    }
    let ran = Arc::new(AtomicBool::new(false));
    let r = ran.clone();
    rcu.call(move || r.store(true, Ordering::SeqCst));
    // A synchronize would wait forever: try one with a bound.
    let stalls_before = rcu.stats().stalls_reported;
    let rcu2 = rcu.clone();
    let h = thread::spawn(move || rcu2.synchronize());
    thread::sleep(Duration::from_secs(2));
    eprintln!(
        "synchronize finished: {}; stalls {} -> {}",
        h.is_finished(),
        stalls_before,
        rcu.stats().stalls_reported
    );
    assert!(
        rcu.stats().stalls_reported > stalls_before || h.is_finished(),
        "silent hang"
    );
    std::mem::forget(h);
    // Dropping the last handle must return (documented).
    let t = Instant::now();
    drop(rcu);
    assert!(t.elapsed() < Duration::from_secs(5));
}

// ---------------------------------------------------------------------
// 11. A page allocator that panics while a retire needs a page.

struct PanickyPages(AtomicBool, AtomicUsize);
// SAFETY: forwards to the system allocator, or panics without returning.
unsafe impl rcu_reclaim::pages::PageAllocator for PanickyPages {
    fn allocate(&self, layout: std::alloc::Layout) -> Option<std::ptr::NonNull<u8>> {
        self.1.fetch_add(1, Ordering::SeqCst);
        if self.0.load(Ordering::SeqCst) {
            panic!("PROBE-DELIBERATE page allocator");
        }
        rcu_reclaim::pages::SystemPageAllocator.allocate(layout)
    }
    unsafe fn deallocate(&self, ptr: std::ptr::NonNull<u8>, layout: std::alloc::Layout) {
        unsafe { rcu_reclaim::pages::SystemPageAllocator.deallocate(ptr, layout) }
    }
}

struct Watched(Arc<AtomicBool>);
impl Drop for Watched {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}
impl ReclaimSize for Watched {
    fn reclaim_size(&self) -> usize {
        8
    }
}

#[test]
fn a_panicking_page_allocator_never_frees_under_a_reader() {
    quiet();
    let _w = watchdog("panicky_pages", 60);
    let pages = Arc::new(PanickyPages(AtomicBool::new(true), AtomicUsize::new(0)));
    let rcu = Rcu::new(Config::new().page_allocator(pages.clone())).unwrap();
    for how in 0..4 {
        let freed = Arc::new(AtomicBool::new(false));
        let cell = Arc::new(RcuCell::new_in(&rcu, Box::new(Watched(freed.clone()))));
        // A reader holds the current value.
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let reader = {
            let rcu = rcu.clone();
            let cell = cell.clone();
            let freed = freed.clone();
            thread::spawn(move || {
                let g = rcu.read_lock();
                let _v = cell.load(&g).unwrap();
                tx.send(()).unwrap();
                done_rx.recv().unwrap();
                // still in the section: the value must not be freed yet
                let early = freed.load(Ordering::SeqCst);
                drop(g);
                early
            })
        };
        rx.recv().unwrap();
        let before = pages.1.load(Ordering::SeqCst);
        // Retire the old value on a fresh thread (no page yet).
        let rcu2 = rcu.clone();
        let cell2 = cell.clone();
        let r = thread::spawn(move || {
            catch_unwind(AssertUnwindSafe(|| match how {
                0 => cell2.store(Box::new(Watched(Arc::new(AtomicBool::new(false))))),
                1 => {
                    let old = cell2.replace(Box::new(Watched(Arc::new(AtomicBool::new(false)))));
                    old.unwrap().defer_drop();
                }
                2 => {
                    cell2.update(|_| Some(Box::new(Watched(Arc::new(AtomicBool::new(false))))));
                }
                _ => {
                    let w = Box::new(Watched(Arc::new(AtomicBool::new(false))));
                    rcu2.call(move || drop(w));
                }
            }))
            .is_err()
        })
        .join()
        .unwrap();
        let early_now = freed.load(Ordering::SeqCst);
        done_tx.send(()).unwrap();
        let early = reader.join().unwrap();
        eprintln!(
            "how {how}: allocator called {} times, retire unwound: {r}, freed while read: {}",
            pages.1.load(Ordering::SeqCst) - before,
            early || early_now
        );
        assert!(
            !(early || early_now),
            "how {how}: value freed under a live reader"
        );
    }
    pages.0.store(false, Ordering::SeqCst);
    rcu.barrier();
}

#[test]
fn a_thread_retires_again_after_its_page_allocator_panicked() {
    quiet();
    let _w = watchdog("panicky_pages_again", 60);
    let pages = Arc::new(PanickyPages(AtomicBool::new(true), AtomicUsize::new(0)));
    let rcu = Rcu::new(Config::new().page_allocator(pages.clone())).unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    let (rcu2, ran2, pages2) = (rcu.clone(), ran.clone(), pages.clone());
    thread::spawn(move || {
        let r = catch_unwind(AssertUnwindSafe(|| rcu2.call(|| {})));
        assert!(r.is_err());
        pages2.0.store(false, Ordering::SeqCst);
        for _ in 0..2000 {
            let r = ran2.clone();
            rcu2.call(move || {
                r.fetch_add(1, Ordering::SeqCst);
            });
            rcu2.defer_drop(Box::new(vec![0u8; 10]));
        }
        rcu2.barrier();
        let g = rcu2.read_lock();
        drop(g);
    })
    .join()
    .unwrap();
    rcu.barrier();
    assert_eq!(ran.load(Ordering::SeqCst), 2000);
    assert_eq!(rcu.pending(), 0);
}

// ---------------------------------------------------------------------
// 12. Panicking work run on the caller's thread by collect / run_callbacks
//     / reclaim.

static CDROPS: AtomicUsize = AtomicUsize::new(0);
struct CGrenade(usize);
impl Drop for CGrenade {
    fn drop(&mut self) {
        CDROPS.fetch_add(1, Ordering::SeqCst);
        if self.0 % 5 == 0 {
            panic!("PROBE-DELIBERATE cgrenade");
        }
    }
}
impl ReclaimSize for CGrenade {
    const DROPS_ANYWHERE: bool = true;
    fn reclaim_size(&self) -> usize {
        64
    }
}

#[test]
fn panicking_work_run_by_collect_run_callbacks_and_reclaim_loses_nothing() {
    quiet();
    let _w = watchdog("collect_run_reclaim", 90);
    let before = CDROPS.load(Ordering::SeqCst);
    let rcu = Rcu::new(Config::new().on_demand()).unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    let mut n = 0;
    let mut calls = 0;
    for round in 0..6 {
        for i in 0..3000 {
            rcu.defer_drop(Box::new(CGrenade(i)));
            n += 1;
            if i % 3 == 0 {
                let r = ran.clone();
                rcu.call(move || {
                    if i % 2 == 0 {
                        panic!("PROBE-DELIBERATE call");
                    }
                    r.fetch_add(1, Ordering::SeqCst);
                });
                calls += 1;
            }
        }
        rcu.synchronize();
        let r = catch_unwind(AssertUnwindSafe(|| match round % 3 {
            0 => {
                for _ in 0..50 {
                    rcu.collect();
                }
            }
            1 => {
                let _ = rcu.run_callbacks(&NodeMask::all(), 0);
            }
            _ => {
                let rec = Reclaimer::new(&rcu);
                let _ = rec.reclaim(1 << 30, &NodeMask::all());
            }
        }));
        assert!(r.is_ok(), "round {round}: unwound to the caller");
        assert!(!Rcu::in_callback(), "round {round}: left in callback");
        // the thread can still barrier
        rcu.barrier();
    }
    assert_eq!(CDROPS.load(Ordering::SeqCst) - before, n);
    assert_eq!(ran.load(Ordering::SeqCst), calls / 2);
    assert_eq!(rcu.pending(), 0);
}

#[test]
fn a_panicking_oom_handler_is_counted_by_the_budget_too() {
    quiet();
    let _w = watchdog("oom_count", 60);
    let rcu = Rcu::new(Config::new()).unwrap();
    let reclaimer = Arc::new(Reclaimer::new(&rcu));
    reclaimer.set_oom_handler(|_| panic!("PROBE-DELIBERATE oom"));
    let used = Arc::new(AtomicUsize::new(0));
    let u = used.clone();
    let budget = MemoryBudget::new(64 << 20, reclaimer.clone(), move || {
        u.load(Ordering::SeqCst)
    });
    used.store(63 << 20, Ordering::SeqCst);
    let r = catch_unwind(AssertUnwindSafe(|| budget.check()));
    used.store(0, Ordering::SeqCst);
    thread::sleep(Duration::from_millis(100));
    eprintln!(
        "check unwound: {}; reclaimer ooms {}, budget ooms {}",
        r.is_err(),
        reclaimer.stats().ooms,
        budget.stats().ooms
    );
    assert_eq!(
        budget.stats().ooms,
        reclaimer.stats().ooms,
        "budget undercounts"
    );
}

// ---------------------------------------------------------------------
// 14. QSBR registrations kept in thread-locals, threads exiting online,
//     retiring from the destructors.

thread_local! {
    static QREG: std::cell::RefCell<Option<rcu_reclaim::QsbrThread>> =
        const { std::cell::RefCell::new(None) };
}

#[test]
fn qsbr_threads_exiting_online_with_retires_in_destructors() {
    quiet();
    let _serial = TLS_SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let _w = watchdog("qsbr_tls", 90);
    let rcu = Rcu::new(Config::new().flavor(rcu_reclaim::Flavor::Qsbr)).unwrap();
    let r0 = TLS_RAN.load(Ordering::SeqCst);
    let d0 = TLS_DROPPED.load(Ordering::SeqCst);
    let n = 100;
    for i in 0..n {
        let rcu = rcu.clone();
        thread::spawn(move || {
            if i % 2 == 0 {
                QREG.with(|q| *q.borrow_mut() = Some(rcu.register_qsbr_thread()));
                LATE.with(|e| *e.borrow_mut() = Some(Retirer(Some(rcu.clone()))));
            } else {
                LATE.with(|e| *e.borrow_mut() = Some(Retirer(Some(rcu.clone()))));
                QREG.with(|q| *q.borrow_mut() = Some(rcu.register_qsbr_thread()));
            }
            rcu.call(|| {});
        })
        .join()
        .unwrap();
    }
    // No thread is left online: grace periods end.
    rcu.synchronize();
    rcu.barrier();
    Rcu::global().barrier();
    assert_eq!(TLS_RAN.load(Ordering::SeqCst) - r0, n * 3);
    assert_eq!(TLS_DROPPED.load(Ordering::SeqCst) - d0, n * 2);
}
