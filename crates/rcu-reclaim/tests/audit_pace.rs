//! Audit of the retiring threads' grace-period pace (a start every 10 µs
//! where it costs a fence, 40 times a `membarrier`'s recent cost where that
//! is cheap, early pages after 15 µs; QSBR paced as fences): retiring
//! threads that start and complete grace periods themselves, as fast as
//! the pace lets them, while readers hold sections across many of them.
//!
//! Each flavor and mode (mb; memb with `membarrier`; memb whose readers
//! fence, armed and switching; memb with cheap `membarrier`s, spaced
//! closest; QSBR) is run with values that poison themselves on drop, both
//! kinds (dropped by a worker, and plain values dropped by the retiring
//! thread's drain), retired outside and inside the retiring thread's own
//! sections and from callbacks; readers check every value they hold,
//! nested and across long sections. Then the retiring threads stop (exit,
//! go offline, or stay online and report) and everything they retired
//! must be freed without a barrier.
//!
//! `AUDIT_PACE_SECS` (default 1) sets how long each domain runs.

mod common;
use common::poison::{Drops, Val, ALIVE};
use common::{env_or, eventually, within, StopOnDrop};

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rcu_reclaim::{Config, Flavor, Rcu, RcuCell, ReclaimSize};

/// How long garbage may take to be freed once its threads stop (the
/// grace-period thread's lazy flush and fallback looks are milliseconds;
/// this is for a loaded CI machine).
const FREED_WITHIN: Duration = Duration::from_secs(20);

/// A plain value (dropped anywhere: by the retiring thread's drain) whose
/// word turns to poison when dropped.
struct Plain {
    magic: AtomicU64,
    dropped: Arc<AtomicUsize>,
}

impl Plain {
    fn new(dropped: &Arc<AtomicUsize>) -> Box<Plain> {
        Box::new(Plain {
            magic: AtomicU64::new(ALIVE),
            dropped: dropped.clone(),
        })
    }

    fn check(&self) {
        assert_eq!(
            self.magic.load(Ordering::Relaxed),
            ALIVE,
            "a reader saw a plain value freed"
        );
    }
}

impl Drop for Plain {
    fn drop(&mut self) {
        self.magic.store(common::poison::POISON, Ordering::Relaxed);
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }
}

impl ReclaimSize for Plain {
    const DROPS_ANYWHERE: bool = true;
    // Booked larger than it is, so pages go early and by the pace often.
    fn reclaim_size(&self) -> usize {
        512
    }
}

struct Shared {
    rcu: Rcu,
    val: RcuCell<Val>,
    plain: RcuCell<Plain>,
    drops: Arc<Drops>,
    plain_made: AtomicUsize,
    plain_dropped: Arc<AtomicUsize>,
    stop: AtomicBool,
    /// Lets the idle writer's thread exit.
    release: AtomicBool,
    /// Writers pause now and then, for two of the fence policy's 20 ms
    /// windows, so a memb domain's readers switch to fences and back.
    gaps: bool,
    began: Instant,
}

/// Values each writer makes at most (the drop tally's room).
const MAX_PER_WRITER: usize = 400_000;

/// Stores a writer makes inside one section of its own, every 64th turn.
const RETIRES_IN_SECTION: u64 = 48;

fn spin(n: u32) {
    for _ in 0..n {
        std::hint::spin_loop();
    }
}

/// A writer: stores (so retires) both kinds, some inside its own section,
/// some from a callback.
fn writer(s: &Arc<Shared>, key: u64, first: bool) {
    let mut i = 0u64;
    while !s.stop.load(Ordering::Relaxed) && (i as usize) < MAX_PER_WRITER {
        // 60 ms of writes, then 60 ms with one grace period in the middle:
        // a window of the fence policy with one grace period switches the
        // readers back to `membarrier`, and the next burst to fences.
        let phase = s.began.elapsed().as_millis() % 120;
        if s.gaps && phase >= 60 {
            thread::sleep(Duration::from_millis(120 - phase as u64) / 2);
            if first {
                s.rcu.synchronize();
            }
            let phase = s.began.elapsed().as_millis() % 120;
            if phase >= 60 {
                thread::sleep(Duration::from_millis(120 - phase as u64));
            }
            continue;
        }
        match i % 128 {
            // A retire inside the retiring thread's own section: the grace
            // period it may start waits for that section.
            // What it loaded before, retired at the first store, must
            // outlive the hand-offs (and their grace periods) of the stores
            // after it in the same section.
            0 => {
                let g = s.rcu.read_lock();
                let (old, old_plain) = (s.val.load(&g), s.plain.load(&g));
                for _ in 0..RETIRES_IN_SECTION {
                    s.val.store(Box::new(Val::new(&s.drops, key)));
                    s.plain_made.fetch_add(1, Ordering::Relaxed);
                    s.plain.store(Plain::new(&s.plain_dropped));
                    if let Some(v) = old {
                        v.check(key);
                    }
                    if let Some(p) = old_plain {
                        p.check();
                    }
                }
                i += RETIRES_IN_SECTION - 1;
            }
            // A retire from a callback (a worker's, or a barrier's).
            64 => {
                let s2 = s.clone();
                let v = Box::new(Val::new(&s.drops, key));
                s.rcu.call(move || s2.val.store(v));
            }
            _ => {
                s.val.store(Box::new(Val::new(&s.drops, key)));
                s.plain_made.fetch_add(1, Ordering::Relaxed);
                s.plain.store(Plain::new(&s.plain_dropped));
            }
        }
        if i % 7 == 0 {
            spin(200);
        }
        i += 1;
    }
}

/// One section of a reader: short, nested, or long (across many of the
/// retiring threads' grace periods), checking what it loaded throughout.
fn read_once(s: &Shared, key: u64, i: u64) {
    let g = s.rcu.read_lock();
    let v = s.val.load(&g);
    let p = s.plain.load(&g);
    let check = || {
        if let Some(v) = v {
            v.check(key);
        }
        if let Some(p) = p {
            p.check();
        }
    };
    check();
    if i % 3 == 0 {
        let inner = s.rcu.read_lock();
        if let Some(v) = s.val.load(&inner) {
            v.check(key);
        }
        drop(inner);
        check();
    }
    if i % 256 == 0 {
        // Long: some hundreds of µs, many retiring threads' spacings.
        let until = Instant::now() + Duration::from_micros(200);
        while Instant::now() < until {
            check();
            spin(50);
        }
    }
    check();
}

fn domains() -> Vec<(&'static str, Rcu)> {
    let mut v = vec![("mb", Rcu::new(Config::new().flavor(Flavor::Mb)).unwrap())];
    let memb = |c: Config| Rcu::new(c.flavor(Flavor::Memb)).ok();
    if let Some(r) = memb(Config::new()) {
        v.push(("memb", r));
    }
    // Dear `membarrier`s: readers switch to fences (and back, in the gaps
    // between rounds), and starts are paced as fences.
    if let Some(r) = memb(Config::new().simulate_membarrier_cost(Duration::from_micros(100))) {
        v.push(("memb, readers fencing", r));
    }
    // Cheap ones, never fencing: starts 10 µs apart with `membarrier`s.
    if let Some(r) = memb(
        Config::new()
            .adaptive_reader_fences(false)
            .simulate_membarrier_cost(Duration::ZERO),
    ) {
        v.push(("memb, cheap membarrier", r));
    }
    v
}

/// Runs writers and readers on `rcu` for `secs`, then stops them all
/// (their threads exit, leaving their pages to the domain) and checks that
/// everything they retired is freed without a barrier.
fn run(name: &str, rcu: Rcu, run_for: Duration) {
    let s = Arc::new(Shared {
        val: RcuCell::new_in(&rcu, None),
        plain: RcuCell::new_in(&rcu, None),
        drops: Drops::new(2 * MAX_PER_WRITER + MAX_PER_WRITER / 32),
        plain_made: AtomicUsize::new(0),
        plain_dropped: Arc::new(AtomicUsize::new(0)),
        stop: AtomicBool::new(false),
        release: AtomicBool::new(false),
        gaps: name.contains("fencing"),
        began: Instant::now(),
        rcu,
    });
    let key = 7;
    let stopper = StopOnDrop(&s.stop);
    let threads: Vec<_> = (0..2)
        .map(|w| {
            let s = s.clone();
            thread::spawn(move || {
                writer(&s, key, w == 0);
                // The first writer's thread exits (its page goes to the
                // domain); the other stays, idle, until what both retired
                // has been freed: its page and drain are taken from it.
                if w == 1 {
                    while !s.release.load(Ordering::Relaxed) {
                        thread::sleep(Duration::from_millis(1));
                    }
                }
            })
        })
        .chain(std::iter::once({
            let s = s.clone();
            thread::spawn(move || {
                let mut i = 0;
                while !s.stop.load(Ordering::Relaxed) {
                    read_once(&s, key, i);
                    i += 1;
                }
            })
        }))
        .collect();
    let start = Instant::now();
    while start.elapsed() < run_for && !threads.iter().any(|t| t.is_finished()) {
        thread::sleep(Duration::from_millis(10));
    }
    drop(stopper);
    let releaser = StopOnDrop(&s.release);
    let [first, idle, reader] = <[_; 3]>::try_from(threads).ok().unwrap();
    first.join().unwrap();
    reader.join().unwrap();
    let stats = s.rcu.stats();
    eprintln!(
        "{name}: {} values retired, {} grace periods by retiring threads, {} fenced, {} in all, \
         {} switches to fences",
        s.plain_made.load(Ordering::Relaxed) * 2,
        stats.retirer_gps,
        stats.fenced_gps,
        s.rcu.completed_grace_periods(),
        stats.reader_fence_switches
    );
    assert!(
        stats.retirer_gps > 0,
        "{name}: no retiring thread's grace period: {stats:?}"
    );
    // The callbacks' stores are retires too: wait for them to have run.
    let rcu = s.rcu.clone();
    let waited = Instant::now();
    let freed = eventually(FREED_WITHIN, || rcu.pending() == 0);
    eprintln!("{name}: freed in {:?}", waited.elapsed());
    assert!(
        freed,
        "{name}: {} retired values still pending {FREED_WITHIN:?} after their threads stopped \
         (one exited, one idle), with no barrier: {:?}",
        rcu.pending(),
        rcu.stats()
    );
    drop(releaser);
    idle.join().unwrap();
    // The last callback's closure may still be being dropped.
    assert!(eventually(FREED_WITHIN, || Arc::strong_count(&s) == 1));
    let s = Arc::into_inner(s).expect("every thread joined, every callback run");
    let Shared {
        val,
        plain,
        drops,
        plain_made,
        plain_dropped,
        ..
    } = s;
    drop(val);
    drop(plain);
    rcu.barrier();
    drops.assert_each_dropped_once();
    assert_eq!(
        plain_dropped.load(Ordering::Relaxed),
        plain_made.load(Ordering::Relaxed),
        "{name}: plain values made and dropped"
    );
}

#[test]
fn readers_never_see_what_retiring_threads_free_at_their_pace_and_nothing_is_stranded() {
    let secs: f64 = env_or("AUDIT_PACE_SECS", 1.0);
    for (name, rcu) in domains() {
        within(
            Duration::from_secs_f64(secs) + 2 * FREED_WITHIN,
            name,
            move || run(name, rcu, Duration::from_secs_f64(secs)),
        );
    }
}

/// QSBR, paced as fences: an online thread retires (reporting after each
/// store) while another online thread holds what it loaded across many
/// reports of the retiring thread; then the retiring thread stops, staying
/// online and reporting now and then, or going offline, and what it
/// retired is freed without a barrier either way.
#[test]
fn qsbr_online_retiring_threads_free_nothing_early_and_strand_nothing() {
    let secs: f64 = env_or("AUDIT_PACE_SECS", 1.0);
    for stay_online in [true, false] {
        let rcu = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
        let drops = Drops::new(MAX_PER_WRITER + 64);
        let plain_dropped = Arc::new(AtomicUsize::new(0));
        let val = Arc::new(RcuCell::new_in(&rcu, None::<Box<Val>>));
        let plain = Arc::new(RcuCell::new_in(&rcu, None::<Box<Plain>>));
        let stop_writing = Arc::new(AtomicBool::new(false));
        let stop_all = Arc::new(AtomicBool::new(false));
        let (idle_tx, idle_rx) = std::sync::mpsc::channel();
        let key = 3;
        let writer = {
            let (rcu, drops, plain_dropped, val, plain) = (
                rcu.clone(),
                drops.clone(),
                plain_dropped.clone(),
                val.clone(),
                plain.clone(),
            );
            let (stop_writing, stop_all) = (stop_writing.clone(), stop_all.clone());
            thread::spawn(move || {
                let mut t = rcu.register_qsbr_thread();
                let mut made = 0;
                while !stop_writing.load(Ordering::Relaxed) && made < MAX_PER_WRITER {
                    {
                        // Retires on an online thread, inside its guard;
                        // what it loaded before outlives the stores after.
                        let g = t.read_lock();
                        let (old, old_plain) = (val.load(&g), plain.load(&g));
                        let n = if made % 64 == 0 { 32 } else { 1 };
                        for _ in 0..n {
                            val.store(Box::new(Val::new(&drops, key)));
                            plain.store(Plain::new(&plain_dropped));
                            made += 1;
                            if let Some(v) = old {
                                v.check(key);
                            }
                            if let Some(p) = old_plain {
                                p.check();
                            }
                        }
                    }
                    t.quiescent_state();
                    if made % 7 == 0 {
                        spin(200);
                    }
                }
                idle_tx.send(made).unwrap();
                if stay_online {
                    // Online, reporting now and then.
                    while !stop_all.load(Ordering::Relaxed) {
                        thread::sleep(Duration::from_millis(1));
                        t.quiescent_state();
                    }
                } else {
                    let off = t.thread_offline();
                    while !stop_all.load(Ordering::Relaxed) {
                        thread::sleep(Duration::from_millis(1));
                    }
                    drop(off);
                }
            })
        };
        let reader = {
            let (rcu, val, plain, stop_all) =
                (rcu.clone(), val.clone(), plain.clone(), stop_all.clone());
            thread::spawn(move || {
                let mut t = rcu.register_qsbr_thread();
                let mut i = 0u64;
                while !stop_all.load(Ordering::Relaxed) {
                    {
                        let g = t.read_lock();
                        let v = val.load(&g);
                        let p = plain.load(&g);
                        let hold = if i % 16 == 0 { 300 } else { 5 };
                        let until = Instant::now() + Duration::from_micros(hold);
                        while Instant::now() < until {
                            if let Some(v) = v {
                                v.check(key);
                            }
                            if let Some(p) = p {
                                p.check();
                            }
                            spin(50);
                        }
                    }
                    t.quiescent_state();
                    i += 1;
                }
            })
        };
        let stop_guard = StopOnDrop(&stop_all);
        thread::sleep(Duration::from_secs_f64(secs));
        stop_writing.store(true, Ordering::Relaxed);
        let made = idle_rx
            .recv_timeout(FREED_WITHIN)
            .expect("the writer stops");
        assert!(made > 0);
        // The retiring thread's page and what it handed off: freed while it
        // idles (online and reporting, or offline) and the reader goes on.
        let waited = Instant::now();
        let freed = eventually(FREED_WITHIN, || {
            // The cells' current values are never retired.
            rcu.pending() == 0
        });
        eprintln!(
            "qsbr, stay_online {stay_online}: freed in {:?}",
            waited.elapsed()
        );
        assert!(
            freed,
            "stay_online {stay_online}: {} pending {FREED_WITHIN:?} after the retiring thread \
             stopped: {:?}",
            rcu.pending(),
            rcu.stats()
        );
        drop(stop_guard);
        writer.join().unwrap();
        reader.join().unwrap();
        // How many the online retiring thread completed itself depends on
        // both threads running (each grace period waits for both reports):
        // thousands a second on an idle machine, a few on a loaded one.
        eprintln!(
            "qsbr, stay_online {stay_online}: {} grace periods by the retiring thread, {} in all",
            rcu.stats().retirer_gps,
            rcu.completed_grace_periods()
        );
        drop(Arc::into_inner(val).unwrap());
        drop(Arc::into_inner(plain).unwrap());
        rcu.barrier();
        drops.assert_each_dropped_once();
        assert_eq!(plain_dropped.load(Ordering::Relaxed), made);
    }
}

/// A child forked (prepared) while retiring threads drive grace periods at
/// their pace, one of them maybe left in progress and the pace's clock
/// just set: the child's own retires, at the same pace, are freed without
/// a barrier, and its readers never see them freed.
#[test]
fn a_forked_child_retires_at_the_pace_and_strands_nothing() {
    for (name, rcu) in domains() {
        let drops = Drops::new(4 * MAX_PER_WRITER);
        let cell = Arc::new(RcuCell::new_in(&rcu, None::<Box<Val>>));
        let stop = Arc::new(AtomicBool::new(false));
        let stopper = StopOnDrop(&stop);
        let storm = {
            let (cell, drops, stop) = (cell.clone(), drops.clone(), stop.clone());
            thread::spawn(move || {
                let mut made = 0;
                while !stop.load(Ordering::Relaxed) && made < 2 * MAX_PER_WRITER {
                    cell.store(Box::new(Val::new(&drops, 1)));
                    made += 1;
                }
            })
        };
        thread::sleep(Duration::from_millis(50));
        let status = common::in_forked_child(&rcu, || {
            let child_drops = Drops::new(100_000);
            let mine = RcuCell::new_in(&rcu, None::<Box<Val>>);
            for i in 0..100_000u64 {
                let g = rcu.read_lock();
                if let Some(v) = mine.load(&g) {
                    v.check(2);
                }
                drop(g);
                mine.store(Box::new(Val::new(&child_drops, 2)));
                if i % 1000 == 0 {
                    let g = rcu.read_lock();
                    let v = mine.load(&g);
                    mine.store(Box::new(Val::new(&child_drops, 2)));
                    // Across many of its own hand-offs' grace periods.
                    for _ in 0..200 {
                        mine.store(Box::new(Val::new(&child_drops, 2)));
                        if let Some(v) = v {
                            v.check(2);
                        }
                    }
                }
            }
            // The child's retires, and the parent's pages it inherited.
            eventually(Duration::from_secs(10), || rcu.pending() == 0)
        });
        assert_eq!(status, 0, "{name}: the child's garbage was not all freed");
        drop(stopper);
        storm.join().unwrap();
        drop(Arc::into_inner(cell).unwrap());
        rcu.barrier();
        drops.assert_each_dropped_once();
    }
}
