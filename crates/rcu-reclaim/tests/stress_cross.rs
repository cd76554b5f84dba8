//! Cross-feature storms: a memb (or mb) domain and a QSBR domain at once,
//! each with cells, a map and a cache, readers in both (QSBR threads going
//! offline, online and exiting online; memb reader threads coming and
//! going), writers on every retire path with values of many shapes (some
//! retire a child into the other domain from their destructor, some take
//! a lock, some panic), a thread flapping pressure (guards and synthetic
//! source events), another running barriers, grace periods, polled
//! cookies, collects and reclaim, and a budget over the values' bytes.
//! Readers verify every value's magic and checksum; at the end each value
//! was dropped exactly once, every panic is accounted for, and both
//! domains' backlogs are 0 after barriers.
//!
//! Each test runs for well under a few seconds on 2 cores;
//! `RCU_RECLAIM_LONG_STRESS=<seconds>` runs longer storms.

mod common;
mod xstress;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rcu_reclaim::pressure::NodeMask;
use rcu_reclaim::reclaim::{MemoryBudget, Reclaimer};
use rcu_reclaim::sources::{Level, SyntheticSource};
use rcu_reclaim::{Config, Flavor, Rcu, RcuCache, RcuCell, RcuHashMap, ReadSection};

use xstress::{
    drain_all, quiet_planned_panics, storm_time, tolerate, Kind, PVal, Rng, Tracker, Watchdog,
    PLANNED,
};

const CELLS: usize = 4;
const MAP_KEYS: u64 = 256;
const CACHE_KEYS: u64 = 1024;
const CACHE_BYTES: usize = 96 << 10;

/// One domain's structures.
struct Side {
    rcu: Rcu,
    other: Rcu,
    qsbr: bool,
    cells: Vec<RcuCell<PVal>>,
    map: RcuHashMap<u64, PVal>,
    cache: RcuCache<u64, PVal>,
    events: Mutex<mpsc::Sender<Level>>,
    reclaimer: Arc<Reclaimer>,
}

/// Counts shared by the threads.
#[derive(Default)]
struct Counts {
    /// Planned panics caught by the test's own threads.
    tolerated: AtomicU64,
    /// Planned panics reported to the domains' hooks.
    hooked: AtomicU64,
    /// Messages of unplanned panics reported to the hooks (an assertion in
    /// a hook would be caught and logged by the domain, not fail the test).
    unplanned: Mutex<Vec<String>>,
    /// Closures (update, get_or_insert_with, make, read, call) that
    /// panicked as planned.
    closure_panics: AtomicU64,
    reads: AtomicU64,
    writes: AtomicU64,
    polls_done: AtomicU64,
    ooms: AtomicU64,
    threads_spawned: AtomicU64,
    /// The longest and the total time of each write op, in microseconds.
    op_max_us: [AtomicU64; 22],
    op_total_us: [AtomicU64; 22],
}

struct Storm {
    t: Arc<Tracker>,
    c: Counts,
    lock: Arc<Mutex<u64>>,
    stop: AtomicBool,
    /// One in this many values panics when dropped (0: none).
    panic_one_in: u64,
    /// Whether closures may panic.
    closures_panic: bool,
}

fn side(rcu: &Rcu, other: &Rcu, budget: Option<&Arc<MemoryBudget>>) -> Side {
    let qsbr = rcu.flavor() == Flavor::Qsbr;
    let (events, source) = SyntheticSource::new();
    let reclaimer = match budget {
        Some(b) => b.reclaimer().clone(),
        None => Arc::new(Reclaimer::new(rcu)),
    };
    let mut builder = RcuCache::builder()
        .rcu(rcu)
        .max_bytes(CACHE_BYTES)
        .shards(if qsbr { 1 } else { 4 })
        .pressure_source(Box::new(source))
        .regrow_after(Duration::from_millis(5));
    builder = match budget {
        Some(b) => builder.budget(b),
        None => builder.reclaimer(&reclaimer),
    };
    let cache = builder.build();
    Side {
        rcu: rcu.clone(),
        other: other.clone(),
        qsbr,
        cells: (0..CELLS).map(|_| RcuCell::new_in(rcu, None)).collect(),
        map: RcuHashMap::with_capacity_in(4, rcu),
        cache,
        events: Mutex::new(events),
        reclaimer,
    }
}

/// Many loads under one section, every reference kept and checked again
/// before the section ends.
fn read_side<G: ReadSection>(s: &Side, g: &G, rng: &mut Rng, st: &Storm, n: usize) {
    let mut held: Vec<(&PVal, Option<u64>)> = Vec::with_capacity(n);
    for _ in 0..n {
        match rng.below(5) {
            0 | 1 => {
                let c = &s.cells[rng.below(CELLS as u64) as usize];
                if let Some(v) = c.load(g) {
                    v.check(None);
                    held.push((v, None));
                }
            }
            2 => {
                let k = rng.below(MAP_KEYS);
                if let Some(v) = s.map.get(&k, g) {
                    v.check(Some(k));
                    held.push((v, Some(k)));
                }
            }
            3 => {
                let k = rng.below(CACHE_KEYS);
                if let Some(v) = s.cache.get(&k, g) {
                    v.check(Some(k));
                    held.push((v, Some(k)));
                }
            }
            _ => {
                for (k, v) in s.map.iter(g).take(8) {
                    v.check(Some(*k));
                    held.push((v, Some(*k)));
                }
            }
        }
    }
    thread::yield_now();
    for (v, k) in held {
        v.check(k);
    }
    st.c.reads.fetch_add(n as u64, Ordering::Relaxed);
}

fn value(s: &Side, st: &Storm, key: u64, rng: &mut Rng) -> PVal {
    PVal::any_of(&st.t, key, rng.next(), &s.other, &st.lock, st.panic_one_in)
}

fn closure_panics(st: &Storm, rng: &mut Rng) -> bool {
    st.closures_panic && rng.below(64) == 0
}

/// A closure's planned panic, counted where it happens (a closure that
/// would have panicked may never run).
fn closure_panic(st: &Storm, what: &str) -> ! {
    st.c.closure_panics.fetch_add(1, Ordering::SeqCst);
    panic!("{PLANNED} ({what})");
}

/// One write on `s` by a thread that holds no section of it (`online`:
/// an online QSBR registration of `s`, whose section it is in; such a
/// writer never waits for a grace period of `s`).
fn write_once<G: ReadSection>(s: &Side, st: &Storm, rng: &mut Rng, g: Option<&G>) {
    let key = rng.below(CACHE_KEYS);
    let mk = key % MAP_KEYS;
    let cell = &s.cells[rng.below(CELLS as u64) as usize];
    let ck = 1 << 40 | rng.below(1 << 20);
    let op = rng.below(22);
    let start = Instant::now();
    tolerate(&st.c.tolerated, || match op {
        0 => {
            let _held = st.lock.lock().unwrap_or_else(|e| e.into_inner());
            cell.store(Box::new(value(s, st, ck, rng)));
        }
        1 => {
            let v = value(s, st, ck, rng);
            let mut v = Some(v);
            cell.update(|old| {
                if let Some(o) = old {
                    o.check(None);
                }
                // A retry makes a new value: the rejected one is dropped.
                Some(Box::new(
                    v.take().unwrap_or_else(|| PVal::plain_of(&st.t, ck, 1)),
                ))
            });
        }
        2 => {
            let new = Box::new(value(s, st, ck, rng));
            let r = match g {
                Some(g) => cell
                    .compare_exchange(cell.load(g), Some(new), g)
                    .map(|r| r.map(|r| r.defer_drop())),
                None => {
                    let g = s.rcu.read_lock();
                    let r = cell.compare_exchange(cell.load(&g), Some(new), &g);
                    let r = r.map(|r| r.map(|r| r.defer_drop())).map_err(|e| e.new);
                    drop(r);
                    Ok(None)
                }
            };
            drop(r.map_err(|e| e.new));
        }
        3 => {
            let _held = st.lock.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(r) = cell.replace(Box::new(value(s, st, ck, rng))) {
                r.check(None);
                r.defer_drop();
            }
        }
        4 => {
            if let Some(r) = cell.take() {
                let n = r.size();
                r.defer_drop_sized(n);
            }
        }
        5 if g.is_none() && rng.below(8) == 0 => {
            // Waits for a grace period (or not, if one already passed).
            if let Some(r) = cell.replace(Box::new(value(s, st, ck, rng))) {
                let b = r.into_box();
                b.check(None);
            }
        }
        6 => {
            let _held = st.lock.lock().unwrap_or_else(|e| e.into_inner());
            s.rcu.defer_drop(Box::new(value(s, st, ck, rng)));
        }
        7 => {
            let v = value(s, st, ck, rng);
            let panics = closure_panics(st, rng);
            if panics {
                // A callback always runs: counted here.
                st.c.closure_panics.fetch_add(1, Ordering::SeqCst);
            }
            let hurry = rng.below(16) == 0;
            let f = move || {
                v.check(None);
                drop(v);
                if panics {
                    panic!("{PLANNED} (a callback)");
                }
            };
            if hurry {
                s.rcu.call_hurry(f);
            } else {
                s.rcu.call(f);
            }
        }
        8 => {
            if let Err(b) = s.rcu.try_defer_drop(Box::new(value(s, st, ck, rng))) {
                drop(b);
            }
        }
        9 => {
            s.map.insert(mk, value(s, st, mk, rng));
        }
        10 => {
            s.map.remove(&mk);
        }
        11 => {
            let panics = closure_panics(st, rng);
            let v = value(s, st, mk, rng);
            s.map.update(mk, |old| {
                if let Some(o) = old {
                    o.check(Some(mk));
                }
                if panics {
                    drop(v);
                    closure_panic(st, "map update");
                }
                (old.is_none() || rng.below(4) != 0).then_some(v)
            });
        }
        12 => {
            s.map.remove_if(&mk, |v| v.check(Some(mk)) && key % 2 == 0);
        }
        13 => {
            let panics = closure_panics(st, rng);
            let f = || {
                if panics {
                    closure_panic(st, "map get_or_insert_with");
                }
                value(s, st, mk, rng)
            };
            match g {
                Some(g) => {
                    s.map.get_or_insert_with(mk, f, g).check(Some(mk));
                }
                None => {
                    let g = s.rcu.read_lock();
                    s.map.get_or_insert_with(mk, f, &g).check(Some(mk));
                }
            }
        }
        14 | 15 => {
            s.cache.insert(key, value(s, st, key, rng));
        }
        16 => {
            let panics = closure_panics(st, rng);
            let f = || {
                if panics {
                    closure_panic(st, "cache get_or_insert_with");
                }
                value(s, st, key, rng)
            };
            match g {
                Some(g) => {
                    s.cache.get_or_insert_with(key, f, g).check(Some(key));
                }
                None => {
                    let g = s.rcu.read_lock();
                    s.cache.get_or_insert_with(key, f, &g).check(Some(key));
                }
            }
        }
        17 => {
            let make_panics = closure_panics(st, rng);
            let read_panics = closure_panics(st, rng);
            // `make` owns no value: if `read` panics while `make` is
            // unused, unwinding drops `make`, and a value that panics
            // when dropped would abort the process.
            s.cache.read_or_insert_with(
                key,
                || {
                    if make_panics {
                        closure_panic(st, "cache make");
                    }
                    // On a miss `read` sees the new value before it is
                    // cached: if `read` panics, unwinding drops it.
                    if read_panics {
                        PVal::plain_of(&st.t, key, rng.next())
                    } else {
                        value(s, st, key, rng)
                    }
                },
                |v| {
                    v.check(Some(key));
                    if read_panics {
                        closure_panic(st, "cache read");
                    }
                },
            );
        }
        18 => {
            s.cache.remove(&key);
        }
        19 if rng.below(256) == 0 => s.cache.clear(),
        20 if rng.below(256) == 0 => s.map.clear(),
        _ => {
            // A large value now and then.
            let big = PVal::new(&st.t, ck, Kind::Bytes(vec![0; 256 << 10]));
            let _held = st.lock.lock().unwrap_or_else(|e| e.into_inner());
            cell.store(Box::new(big));
        }
    });
    let took = start.elapsed().as_micros() as u64;
    st.c.op_max_us[op as usize].fetch_max(took, Ordering::Relaxed);
    st.c.op_total_us[op as usize].fetch_add(took, Ordering::Relaxed);
    st.c.writes.fetch_add(1, Ordering::Relaxed);
}

fn storm(what: &'static str, short_ms: u64, panic_one_in: u64, closures_panic: bool) {
    quiet_planned_panics();
    let c = Arc::new(Counts::default());
    let hook = |c: &Arc<Counts>| {
        let c = c.clone();
        move |msg: &str| {
            if msg.contains(PLANNED) {
                c.hooked.fetch_add(1, Ordering::SeqCst);
                xstress::tally_hooked();
            } else {
                c.unplanned.lock().unwrap().push(msg.to_owned());
            }
        }
    };
    let memb = Rcu::new(Config::new().on_callback_panic(hook(&c))).unwrap();
    let qsbr = Rcu::new(
        Config::new()
            .flavor(Flavor::Qsbr)
            .on_callback_panic(hook(&c)),
    )
    .unwrap();
    let st = Arc::new(Storm {
        t: Tracker::new(1 << 22),
        c: Counts::default(),
        lock: Arc::new(Mutex::new(0)),
        stop: AtomicBool::new(false),
        panic_one_in,
        closures_panic,
    });
    let t2 = st.t.clone();
    let reclaimer = Arc::new(Reclaimer::new(&memb));
    let c2 = c.clone();
    reclaimer.set_oom_handler(move |_| {
        c2.ooms.fetch_add(1, Ordering::Relaxed);
    });
    let budget = Arc::new(MemoryBudget::new(4 << 20, reclaimer, move || {
        t2.live_bytes.load(Ordering::Relaxed)
    }));
    let m = Arc::new(side(&memb, &qsbr, Some(&budget)));
    let q = Arc::new(side(&qsbr, &memb, None));

    let state = {
        let (st, c, memb, qsbr) = (st.clone(), c.clone(), memb.clone(), qsbr.clone());
        move || {
            format!(
                "reads {} writes {} live {} threads {} hooked {} tolerated {}; memb pending \
                 {}/{} {:?}; qsbr pending {}/{} late {:?} {:?}",
                st.c.reads.load(Ordering::Relaxed),
                st.c.writes.load(Ordering::Relaxed),
                st.t.live.load(Ordering::Relaxed),
                st.c.threads_spawned.load(Ordering::Relaxed),
                c.hooked.load(Ordering::Relaxed),
                st.c.tolerated.load(Ordering::Relaxed),
                memb.pending(),
                memb.pending_bytes(),
                memb.stats(),
                qsbr.pending(),
                qsbr.pending_bytes(),
                qsbr.late_readers(),
                qsbr.stats(),
            )
        }
    };
    let watchdog = Watchdog::arm(what, Duration::from_secs(120), state);

    let mut threads = Vec::new();
    // QSBR readers that also read the memb side, go offline and online,
    // and exit online now and then (a new one takes over).
    for r in 0..2u64 {
        let (m, q, st) = (m.clone(), q.clone(), st.clone());
        threads.push(thread::spawn(move || {
            let mut gen = 0u64;
            while !st.stop.load(Ordering::Relaxed) {
                gen += 1;
                st.c.threads_spawned.fetch_add(1, Ordering::Relaxed);
                let (m, q, st) = (m.clone(), q.clone(), st.clone());
                thread::spawn(move || {
                    let mut rng = Rng::new(r << 32 | gen);
                    let mut reg = q.rcu.register_qsbr_thread();
                    let life = 200 + rng.below(2000);
                    for i in 0..life {
                        if st.stop.load(Ordering::Relaxed) {
                            break;
                        }
                        {
                            let g = reg.read_lock();
                            read_side(&q, &g, &mut rng, &st, 16);
                            if i % 4 == 0 {
                                // A write from inside the section.
                                write_once(&q, &st, &mut rng, Some(&g));
                            }
                        }
                        if i % 8 == 0 {
                            let g = m.rcu.read_lock();
                            read_side(&m, &g, &mut rng, &st, 16);
                        }
                        reg.quiescent_state();
                        match rng.below(64) {
                            0 => reg.offline_while(|| thread::sleep(Duration::from_micros(50))),
                            1 => {
                                let off = reg.thread_offline();
                                thread::yield_now();
                                reg = off.thread_online();
                            }
                            2 => {
                                // Writes on the memb side, offline here.
                                reg.offline_while(|| {
                                    write_once::<rcu_reclaim::ReadGuard>(&m, &st, &mut rng, None)
                                });
                            }
                            _ => {}
                        }
                    }
                    // Exits online.
                })
                .join()
                .unwrap();
            }
        }));
    }
    // memb readers: threads that come and go.
    {
        let (m, q, st) = (m.clone(), q.clone(), st.clone());
        threads.push(thread::spawn(move || {
            let mut gen = 0u64;
            while !st.stop.load(Ordering::Relaxed) {
                gen += 1;
                st.c.threads_spawned.fetch_add(1, Ordering::Relaxed);
                let (m, q, st) = (m.clone(), q.clone(), st.clone());
                thread::spawn(move || {
                    let mut rng = Rng::new(99 << 32 | gen);
                    for _ in 0..rng.below(300) {
                        let g = m.rcu.read_lock();
                        read_side(&m, &g, &mut rng, &st, 32);
                        drop(g);
                        if rng.below(8) == 0 {
                            // A QSBR read by a thread registered just for it.
                            let reg = q.rcu.register_qsbr_thread();
                            read_side(&q, &reg.read_lock(), &mut rng, &st, 8);
                        }
                    }
                })
                .join()
                .unwrap();
            }
        }));
    }
    // Writers: each side from an unregistered thread.
    for (i, s) in [m.clone(), q.clone()].into_iter().enumerate() {
        let st = st.clone();
        threads.push(thread::spawn(move || {
            let mut rng = Rng::new(1000 + i as u64);
            while !st.stop.load(Ordering::Relaxed) && !st.t.nearly_full() {
                write_once::<rcu_reclaim::ReadGuard>(&s, &st, &mut rng, None);
            }
        }));
    }
    // Pressure flapping: guards on both domains and source events for both
    // caches, every 1 to 3 ms.
    {
        let (m, q, st) = (m.clone(), q.clone(), st.clone());
        threads.push(thread::spawn(move || {
            let mut rng = Rng::new(7);
            let mut guards = Vec::new();
            while !st.stop.load(Ordering::Relaxed) {
                for s in [&m, &q] {
                    let level = match rng.below(3) {
                        0 => Level::Low,
                        1 => Level::Medium,
                        _ => Level::Critical,
                    };
                    let _ = s.events.lock().unwrap().send(level);
                }
                match rng.below(4) {
                    0 => guards.push(m.rcu.pressure_start_all()),
                    1 => guards.push(q.rcu.pressure_start_all()),
                    2 => guards.push(m.rcu.pressure_start(rng.below(4) as usize)),
                    _ => drop(guards.pop()),
                }
                if guards.len() > 4 {
                    guards.clear();
                }
                thread::sleep(Duration::from_micros(1000 + rng.below(2000)));
            }
        }));
    }
    // Grace periods, barriers, collects, polled cookies and reclaim.
    {
        let (m, q, st, budget) = (m.clone(), q.clone(), st.clone(), budget.clone());
        threads.push(thread::spawn(move || {
            let mut rng = Rng::new(11);
            let mut polled: Vec<(rcu_reclaim::Retired<PVal>, rcu_reclaim::Cookie, Rcu)> =
                Vec::new();
            while !st.stop.load(Ordering::Relaxed) {
                let s = if rng.below(2) == 0 { &m } else { &q };
                match rng.below(12) {
                    0 => s.rcu.synchronize(),
                    1 => s.rcu.barrier(),
                    2 => {
                        s.rcu.collect();
                    }
                    3 => {
                        let c = s.rcu.get_state();
                        s.rcu.cond_synchronize(c);
                    }
                    4 => {
                        let c = s.rcu.start_poll();
                        let deadline = Instant::now() + Duration::from_secs(30);
                        while !s.rcu.poll(&c) {
                            assert!(
                                Instant::now() < deadline,
                                "a polled grace period never ended"
                            );
                            thread::sleep(Duration::from_micros(200));
                        }
                    }
                    5 => {
                        // A value taken out by replace, freed by hand once
                        // its polled grace period has ended.
                        let cell = &s.cells[rng.below(CELLS as u64) as usize];
                        let v = PVal::plain_of(&st.t, 1 << 41, rng.next());
                        let old = {
                            let _held = st.lock.lock().unwrap_or_else(|e| e.into_inner());
                            cell.replace(Box::new(v))
                        };
                        if let Some(r) = old {
                            let c = r.cookie();
                            s.rcu.start_poll();
                            polled.push((r, c, s.rcu.clone()));
                        }
                    }
                    6 => {
                        let _ = s.reclaimer.reclaim(64 << 10, &NodeMask::all());
                    }
                    7 => {
                        let _ = budget.check();
                    }
                    8 => {
                        let _ = s.rcu.run_callbacks(&NodeMask::all(), rng.below(13) as u8);
                    }
                    9 if !s.qsbr => s.rcu.synchronize_expedited(),
                    10 => {
                        let _ = s.rcu.try_synchronize();
                    }
                    _ => thread::sleep(Duration::from_micros(300)),
                }
                let mut i = 0;
                while i < polled.len() {
                    let (r, c, d) = &polled[i];
                    if d.poll(c) {
                        assert!(
                            r.is_safe(),
                            "poll said the grace period ended, is_safe did not"
                        );
                        let (r, _, _) = polled.swap_remove(i);
                        match r.try_into_box() {
                            Ok(b) => {
                                b.check(None);
                                tolerate(&st.c.tolerated, || drop(b));
                            }
                            Err(_) => {
                                panic!("try_into_box refused a value whose cookie polled true")
                            }
                        }
                        st.c.polls_done.fetch_add(1, Ordering::Relaxed);
                    } else {
                        i += 1;
                    }
                }
            }
            for (r, _, _) in polled {
                tolerate(&st.c.tolerated, || drop(r.into_box()));
            }
        }));
    }

    thread::sleep(storm_time(short_ms));
    st.stop.store(true, Ordering::SeqCst);
    let stopping = Instant::now();
    for h in threads {
        h.join().unwrap();
    }
    // Tear down: structures first (their contents are retired), then the
    // budget, then drain both domains.
    // Panicking values go through the domains (whose workers catch the
    // panics), not through the structures' own drops on this thread.
    for s in [&m, &q] {
        for cell in &s.cells {
            if let Some(r) = cell.take() {
                r.defer_drop();
            }
        }
        s.map.clear();
        s.cache.clear();
    }
    let m = Arc::into_inner(m).expect("the memb side is still shared");
    let q = Arc::into_inner(q).expect("the qsbr side is still shared");
    drop(m);
    drop(q);
    drop(budget);
    drain_all(&[&memb, &qsbr], &st.t, what);
    st.t.assert_clean(what);
    let planned = st.t.drop_panics.load(Ordering::SeqCst)
        + st.c.closure_panics.load(Ordering::SeqCst) as usize;
    let unplanned = c.unplanned.lock().unwrap().clone();
    assert!(
        unplanned.is_empty(),
        "{what}: unplanned panics reported to the hooks: {unplanned:?}"
    );
    let seen = (c.hooked.load(Ordering::SeqCst) + st.c.tolerated.load(Ordering::SeqCst)) as usize;
    assert_eq!(
        seen,
        planned,
        "{what}: planned panics (destructors {} + closures {}) vs seen (hooked {} + caught {}); \
         threads where a raised panic was neither caught nor hooked: {:?}; memb {:?}; qsbr {:?}",
        st.t.drop_panics.load(Ordering::SeqCst),
        st.c.closure_panics.load(Ordering::SeqCst),
        c.hooked.load(Ordering::SeqCst),
        st.c.tolerated.load(Ordering::SeqCst),
        xstress::unaccounted_panics(),
        memb.stats(),
        qsbr.stats(),
    );
    drop(watchdog);
    eprintln!("{what}: teardown took {:?}", stopping.elapsed());
    if std::env::var_os("XSTRESS_VERBOSE").is_some() {
        for op in 0..22 {
            eprintln!(
                "{what}: op {op}: max {} us, total {} us",
                st.c.op_max_us[op].load(Ordering::Relaxed),
                st.c.op_total_us[op].load(Ordering::Relaxed)
            );
        }
    }
    eprintln!(
        "{what}: {} reads, {} writes, {} values, {} panics, {} polled frees, {} reader threads, {} ooms",
        st.c.reads.load(Ordering::Relaxed),
        st.c.writes.load(Ordering::Relaxed),
        st.t.made(),
        planned,
        st.c.polls_done.load(Ordering::Relaxed),
        st.c.threads_spawned.load(Ordering::Relaxed),
        c.ooms.load(Ordering::Relaxed),
    );
}

#[test]
fn two_flavors_every_retire_path_under_flapping_pressure() {
    storm("two flavors", 1500, 0, false);
}

#[test]
fn two_flavors_with_panicking_destructors_and_closures() {
    storm("two flavors, panics", 1500, 97, true);
}

/// Caches (each with its own pressure source, fed critical and medium
/// events at about 1 kHz) and maps held in cells and swapped: the old ones
/// are dropped by the domains' workers, by a barrier on a writer, on an
/// online QSBR thread, inside a guard, and by the last handle going away,
/// while readers reach values through the cell, the map and the cache.
#[test]
fn caches_and_maps_swapped_in_cells_are_dropped_by_callbacks_and_sections() {
    quiet_planned_panics();
    type Cache = RcuCache<u64, PVal>;
    struct Bundle {
        cache: Cache,
        map: RcuHashMap<u64, PVal>,
        events: Mutex<mpsc::Sender<Level>>,
    }
    rcu_reclaim::reclaim_size!(Bundle {});
    let memb = Rcu::new(Config::new()).unwrap();
    let qsbr = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
    let t = Tracker::new(1 << 21);
    let lock = Arc::new(Mutex::new(0u64));
    let stop = Arc::new(AtomicBool::new(false));
    let bundle = |rcu: &Rcu, other: &Rcu, seed: u64| {
        let (events, source) = SyntheticSource::new();
        let cache: Cache = RcuCache::builder()
            .rcu(rcu)
            .max_bytes(32 << 10)
            .pressure_source(Box::new(source))
            .regrow_after(Duration::from_millis(1))
            .build();
        let map = RcuHashMap::with_capacity_in(2, rcu);
        let mut rng = Rng::new(seed);
        for k in 0..64 {
            cache.insert(k, PVal::any_of(&t, k, rng.next(), other, &lock, 0));
            map.insert(k, PVal::any_of(&t, k, rng.next(), other, &lock, 0));
        }
        Box::new(Bundle {
            cache,
            map,
            events: Mutex::new(events),
        })
    };
    let cells: Vec<Arc<RcuCell<Bundle>>> = [(&memb, &qsbr), (&qsbr, &memb)]
        .iter()
        .map(|(d, o)| Arc::new(RcuCell::new_in(d, bundle(d, o, 1))))
        .collect();
    let state = {
        let (memb, qsbr, t) = (memb.clone(), qsbr.clone(), t.clone());
        move || {
            format!(
                "live {}; memb {}/{} {:?}; qsbr {}/{} late {:?}",
                t.live.load(Ordering::Relaxed),
                memb.pending(),
                memb.pending_bytes(),
                memb.stats(),
                qsbr.pending(),
                qsbr.pending_bytes(),
                qsbr.late_readers(),
            )
        }
    };
    let watchdog = Watchdog::arm("swapped caches", Duration::from_secs(120), state);
    let swaps = AtomicU64::new(0);
    thread::scope(|s| {
        // Readers: memb guards and an online QSBR thread, through the cell.
        for r in 0..2u64 {
            let (cells, stop, qsbr, memb) = (&cells, &stop, &qsbr, &memb);
            s.spawn(move || {
                let mut rng = Rng::new(r);
                let mut reg = qsbr.register_qsbr_thread();
                while !stop.load(Ordering::Relaxed) {
                    let k = rng.below(64);
                    {
                        let g = memb.read_lock();
                        if let Some(b) = cells[0].load(&g) {
                            for _ in 0..16 {
                                if let Some(v) = b.cache.get(&k, &g) {
                                    v.check(Some(k));
                                }
                                if let Some(v) = b.map.get(&k, &g) {
                                    v.check(Some(k));
                                }
                            }
                            let _ = b.events.lock().unwrap().send(Level::Critical);
                        }
                    }
                    {
                        let g = reg.read_lock();
                        if let Some(b) = cells[1].load(&g) {
                            for _ in 0..16 {
                                if let Some(v) = b.cache.get(&k, &g) {
                                    v.check(Some(k));
                                }
                                if let Some(v) = b.map.get(&k, &g) {
                                    v.check(Some(k));
                                }
                            }
                            let _ = b.events.lock().unwrap().send(Level::Medium);
                        }
                    }
                    reg.quiescent_state();
                }
            });
        }
        // Event pumps at about 1 kHz into whatever bundles are current.
        {
            let (cells, stop, memb, qsbr) = (&cells, &stop, &memb, &qsbr);
            s.spawn(move || {
                let mut rng = Rng::new(5);
                while !stop.load(Ordering::Relaxed) {
                    for (cell, d) in cells.iter().zip([memb, qsbr]) {
                        let g = d.read_lock();
                        if let Some(b) = cell.load(&g) {
                            let level = if rng.below(2) == 0 {
                                Level::Critical
                            } else {
                                Level::Medium
                            };
                            let _ = b.events.lock().unwrap().send(level);
                        }
                    }
                    thread::sleep(Duration::from_micros(1000));
                }
            });
        }
        // Swappers: each retires the old bundle a different way.
        for (i, (d, o)) in [(&memb, &qsbr), (&qsbr, &memb)].into_iter().enumerate() {
            let (cells, stop, swaps, t, lock) = (&cells, &stop, &swaps, &t, &lock);
            let bundle = &bundle;
            s.spawn(move || {
                let mut rng = Rng::new(100 + i as u64);
                let cell = &cells[i];
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) && !t.nearly_full() {
                    n += 1;
                    let new = bundle(d, o, n);
                    match rng.below(5) {
                        0 => cell.store(new),
                        1 => {
                            if let Some(r) = cell.replace(new) {
                                r.defer_drop();
                            }
                            d.barrier();
                        }
                        2 if d.flavor() == Flavor::Qsbr => {
                            // Dropped by hand on a thread online in its
                            // domain, once its grace period has passed.
                            let old = cell.replace(new);
                            let mut reg = d.register_qsbr_thread();
                            let old = reg.offline_while(|| old.map(|r| r.into_box()));
                            let g = reg.read_lock();
                            let _ = cell.load(&g);
                            drop(old);
                        }
                        2 => {
                            // Dropped by hand inside a guard of its domain.
                            let old = cell.replace(new).map(|r| r.into_box());
                            let g = d.read_lock();
                            let _ = cell.load(&g);
                            drop(old);
                        }
                        3 => {
                            // Dropped by a callback of the other domain.
                            if let Some(r) = cell.replace(new) {
                                let b = r.into_box();
                                o.call(move || drop(b));
                            }
                        }
                        _ => {
                            // Keep the current bundle; churn inside it.
                            let g = d.read_lock();
                            if let Some(b) = cell.load(&g) {
                                for _ in 0..32 {
                                    let k = rng.below(64);
                                    b.cache
                                        .insert(k, PVal::any_of(t, k, rng.next(), o, lock, 0));
                                    b.map.insert(k, PVal::any_of(t, k, rng.next(), o, lock, 0));
                                }
                            }
                            drop(g);
                            drop(new);
                        }
                    }
                    swaps.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        thread::sleep(storm_time(1500));
        stop.store(true, Ordering::SeqCst);
    });
    for c in &cells {
        if let Some(r) = c.take() {
            r.defer_drop();
        }
    }
    drop(cells);
    drain_all(&[&memb, &qsbr], &t, "swapped caches");
    t.assert_clean("swapped caches");
    drop(watchdog);
    eprintln!(
        "swapped caches: {} swaps, {} values",
        swaps.load(Ordering::Relaxed),
        t.made()
    );
}
