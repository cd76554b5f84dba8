//! Cross-module stress and misuse tests, on the public API only: callbacks
//! that retire and write into cells and maps while barriers race them,
//! domains made and dropped while other threads hold their handles,
//! sections and registrations, several flavors read at once with nested
//! sections, cells under contention with pressure and `run_callbacks`
//! beside them, map walks across resizes, and a cache under a budget and
//! a flapping pressure signal. Every value checks it is read only while
//! alive (a poison word its `Drop` overwrites) and every test counts drops
//! exactly at quiescence.

use std::collections::HashSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use rcu_reclaim::pressure::NodeMask;
use rcu_reclaim::reclaim::{MemoryBudget, Reclaimer};
use rcu_reclaim::{reclaim_size, Config, Flavor, Rcu, RcuCache, RcuCell, RcuHashMap};

const ALIVE: u64 = 0xA11C_E0F0_0D15_EA5E;
const DEAD: u64 = 0xDEAD_DEAD_DEAD_DEAD;

/// One slot of counters per test (the tests of this file run in parallel).
const SLOTS: usize = 24;
static CREATED: [AtomicUsize; SLOTS] = [const { AtomicUsize::new(0) }; SLOTS];
static DROPPED: [AtomicUsize; SLOTS] = [const { AtomicUsize::new(0) }; SLOTS];
static POISON_READS: [AtomicUsize; SLOTS] = [const { AtomicUsize::new(0) }; SLOTS];

const S_CHAIN_CUSTOM: usize = 0;
const S_CHAIN_GLOBAL: usize = 1;
const S_LIFECYCLE: usize = 2;
const S_LIFECYCLE_OTHER: usize = 3;
const S_FLAVORS: usize = 4;
const S_CELL: usize = 5;
const S_MAP: usize = 6;
const S_CACHE: usize = 7;
const S_STATS: usize = 8;
const S_CYCLE: usize = 9;
const S_NO_PAGE: usize = 10;
const S_QSBR_CELL: usize = 11;
const S_LAST: usize = 12;
const S_NODES: usize = 13;
const S_CACHE_LIFE: usize = 14;
const S_BARRIER: usize = 15;
const S_QSBR_MAP: usize = 16;

/// A value that knows whether it is alive: reading it after its drop
/// (before the allocator reuses the memory, which is when a
/// use-after-free is most likely to show) counts a poison read.
struct Tracked {
    magic: AtomicU64,
    slot: u8,
    value: u64,
    payload: Vec<u8>,
}
reclaim_size!(Tracked { payload });

impl Tracked {
    fn new(slot: usize, value: u64, payload: usize) -> Tracked {
        CREATED[slot].fetch_add(1, Ordering::Relaxed);
        Tracked {
            magic: AtomicU64::new(ALIVE),
            slot: slot as u8,
            value,
            payload: vec![value as u8; payload],
        }
    }

    /// The value, after checking the poison word.
    #[track_caller]
    fn check(&self) -> u64 {
        let m = self.magic.load(Ordering::Relaxed);
        if m != ALIVE {
            POISON_READS[self.slot as usize % SLOTS].fetch_add(1, Ordering::Relaxed);
            panic!("read a dropped value (magic {m:#x})");
        }
        if let Some(&b) = self.payload.first() {
            assert_eq!(b, self.value as u8, "payload overwritten");
        }
        self.value
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        let m = self.magic.swap(DEAD, Ordering::Relaxed);
        assert_eq!(m, ALIVE, "a value dropped twice");
        DROPPED[self.slot as usize].fetch_add(1, Ordering::Relaxed);
    }
}

/// The same, declared to drop anywhere (its drop only counts): freed by
/// retiring threads as well as by workers.
struct Plain(Tracked);
reclaim_size!(Plain { 0 }; drops_anywhere);

fn live(slot: usize) -> isize {
    CREATED[slot].load(Ordering::SeqCst) as isize - DROPPED[slot].load(Ordering::SeqCst) as isize
}

/// Waits (at most `secs`) until `f` holds, returning whether it did.
fn eventually(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if f() {
            return true;
        }
        if start.elapsed() > Duration::from_secs(secs) {
            return false;
        }
        thread::sleep(Duration::from_millis(2));
    }
}

/// The books of a domain nobody else uses, once every thread has stopped
/// and a barrier ran: nothing pending, and everything queued has run.
#[track_caller]
fn assert_quiescent_books(rcu: &Rcu) {
    rcu.barrier();
    let s = rcu.stats();
    assert_eq!(rcu.pending(), 0, "pending after barrier: {s:?}");
    assert_eq!(rcu.pending_bytes(), 0, "pending bytes after barrier: {s:?}");
    assert_eq!(s.pending, 0);
    assert_eq!(s.pending_bytes, 0);
    assert_eq!(
        s.callbacks_queued + s.deferred_drops,
        s.invoked,
        "queued {} + deferred {} != invoked {} (fallbacks {})",
        s.callbacks_queued,
        s.deferred_drops,
        s.invoked,
        s.fallback_syncs
    );
}

// ---------------------------------------------------------------------
// Callbacks that retire, write and queue more callbacks, with barriers,
// run_callbacks and a pressure signal racing them.
// ---------------------------------------------------------------------

const DEPTH: usize = 6;

struct ChainCtx {
    slot: usize,
    ran: Vec<AtomicU8>,
    done: AtomicUsize,
    barrier_refused: AtomicUsize,
    cell: RcuCell<Tracked>,
    map: RcuHashMap<u64, Tracked>,
}

fn chain_step(rcu: Rcu, ctx: Arc<ChainCtx>, root: usize, depth: usize) {
    let id = root * DEPTH + depth;
    let before = ctx.ran[id].fetch_add(1, Ordering::SeqCst);
    assert_eq!(before, 0, "callback {id} ran twice");
    assert!(Rcu::in_callback(), "a callback runs marked as one");
    let slot = ctx.slot;
    match (root + depth) % 8 {
        0 => rcu.defer_drop(Box::new(Tracked::new(slot, id as u64, 64))),
        1 => ctx.cell.store(Box::new(Tracked::new(slot, id as u64, 32))),
        2 => {
            ctx.map
                .insert(id as u64 % 97, Tracked::new(slot, id as u64, 16));
        }
        3 => {
            ctx.map.remove(&(id as u64 % 97));
        }
        4 => {
            // Documented: barrier() panics inside a callback (of any domain).
            let r = catch_unwind(AssertUnwindSafe(|| rcu.barrier()));
            assert!(r.is_err(), "barrier() inside a callback must refuse");
            ctx.barrier_refused.fetch_add(1, Ordering::Relaxed);
        }
        5 => {
            // A callback must not wait for a grace period (Rcu::in_callback's
            // docs); it polls one instead.
            assert!(!rcu.in_read_section());
            let cookie = rcu.start_poll();
            let _ = rcu.poll(&cookie);
        }
        6 => rcu.defer_drop(Box::new(Plain(Tracked::new(slot, id as u64, 8)))),
        _ => {
            let _ = ctx.cell.update(|old| {
                Some(Box::new(Tracked::new(
                    slot,
                    old.map_or(0, Tracked::check),
                    8,
                )))
            });
        }
    }
    ctx.done.fetch_add(1, Ordering::SeqCst);
    if depth + 1 < DEPTH {
        let r2 = rcu.clone();
        let next = move || chain_step(r2, ctx, root, depth + 1);
        match root % 3 {
            0 => rcu.call(next),
            1 => rcu.call_hurry(next),
            _ => rcu.call_sized(next, 100),
        }
    }
}

fn callback_chains(rcu: Rcu, slot: usize, roots: usize) {
    let ctx = Arc::new(ChainCtx {
        slot,
        ran: (0..roots * DEPTH).map(|_| AtomicU8::new(0)).collect(),
        done: AtomicUsize::new(0),
        barrier_refused: AtomicUsize::new(0),
        cell: RcuCell::new_in(&rcu, Some(Box::new(Tracked::new(slot, 0, 8)))),
        map: RcuHashMap::new_in(&rcu),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let mut helpers = Vec::new();
    // Barriers and collects racing the chains.
    {
        let (rcu, stop) = (rcu.clone(), stop.clone());
        helpers.push(thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                rcu.barrier();
                rcu.collect();
            }
        }));
    }
    // run_callbacks at every priority, outside any section.
    {
        let (rcu, stop) = (rcu.clone(), stop.clone());
        helpers.push(thread::spawn(move || {
            let mut p = 12u8;
            while !stop.load(Ordering::Relaxed) {
                rcu.run_callbacks(&NodeMask::all(), p);
                p = if p == 0 { 12 } else { p - 1 };
                thread::yield_now();
            }
        }));
    }
    // A flapping pressure signal.
    {
        let (rcu, stop) = (rcu.clone(), stop.clone());
        helpers.push(thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let g = rcu.pressure_start_all();
                thread::sleep(Duration::from_micros(300));
                g.end();
                thread::sleep(Duration::from_micros(300));
            }
        }));
    }
    // Readers of the cell and the map, checking for poison.
    {
        let (rcu, stop, ctx) = (rcu.clone(), stop.clone(), ctx.clone());
        helpers.push(thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let g = rcu.read_lock();
                if let Some(v) = ctx.cell.load(&g) {
                    v.check();
                }
                for (_, v) in ctx.map.iter(&g) {
                    v.check();
                }
            }
        }));
    }
    // The roots, from two threads.
    let mut starters = Vec::new();
    for t in 0..2 {
        let (rcu, ctx) = (rcu.clone(), ctx.clone());
        starters.push(thread::spawn(move || {
            for root in (t..roots).step_by(2) {
                let (r2, c2) = (rcu.clone(), ctx.clone());
                rcu.call(move || chain_step(r2, c2, root, 0));
                if root % 16 == 0 {
                    rcu.barrier();
                }
            }
        }));
    }
    for s in starters {
        s.join().unwrap();
    }
    let total = roots * DEPTH;
    let finished = eventually(30, || {
        rcu.barrier();
        ctx.done.load(Ordering::SeqCst) == total
    });
    stop.store(true, Ordering::Relaxed);
    for h in helpers {
        h.join().unwrap();
    }
    assert!(
        finished,
        "only {} of {total} callbacks ran",
        ctx.done.load(Ordering::SeqCst)
    );
    for (id, r) in ctx.ran.iter().enumerate() {
        assert_eq!(
            r.load(Ordering::SeqCst),
            1,
            "callback {id} ran {} times",
            r.load(Ordering::SeqCst)
        );
    }
    assert!(ctx.barrier_refused.load(Ordering::SeqCst) > 0);
    // Everything still queued is a retire of the chains: once it has run,
    // only the cell's value and the map's entries are alive.
    rcu.barrier();
    let held = 1 + ctx.map.len() as isize;
    assert_eq!(live(slot), held);
    let ctx = Arc::into_inner(ctx).expect("no callback holds the context any more");
    drop(ctx);
    rcu.barrier();
    assert_eq!(live(slot), 0, "values leaked or dropped twice");
    assert_eq!(POISON_READS[slot].load(Ordering::SeqCst), 0);
}

#[test]
fn callback_chains_retire_write_and_race_barriers_custom_domain() {
    let rcu = Rcu::new(Config::new()).unwrap();
    callback_chains(rcu.clone(), S_CHAIN_CUSTOM, 400);
    assert_quiescent_books(&rcu);
    let s = rcu.stats();
    assert_eq!(
        s.callback_panics, 0,
        "the refused barriers were caught in the callbacks"
    );
}

#[test]
fn callback_chains_retire_write_and_race_barriers_global_domain() {
    callback_chains(Rcu::global().clone(), S_CHAIN_GLOBAL, 300);
}

/// A callback run by `run_callbacks` that a thread calls inside one of its
/// sections (documented: it then runs only what is ready) is still inside
/// that section: a grace-period wait of the same domain there panics (a
/// callback must not wait for one), and the panic, caught and reported to
/// `on_callback_panic`, says that the section is the caller's, not the
/// callback's own guard.
#[test]
fn run_callbacks_inside_a_section_with_a_synchronizing_callback() {
    use rcu_reclaim::topology::{override_current_cpu, Topology};
    use std::sync::mpsc;
    let messages = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let m2 = messages.clone();
    // One node of two CPUs: one worker, kept busy on CPU 0's shard below
    // so that what CPU 1's shard holds waits for this thread.
    let rcu = Rcu::new(
        Config::new()
            .topology(Topology::synthetic(1, 2))
            .on_callback_panic(move |msg| m2.lock().unwrap().push(msg.to_string())),
    )
    .unwrap();
    let (release, blocked) = mpsc::channel::<()>();
    let started = Arc::new(AtomicBool::new(false));
    override_current_cpu(Some(0));
    {
        let started = started.clone();
        rcu.call_hurry(move || {
            started.store(true, Ordering::SeqCst);
            let _ = blocked.recv_timeout(Duration::from_secs(20));
        });
    }
    assert!(
        eventually(10, || started.load(Ordering::SeqCst)),
        "the worker never ran the blocker"
    );
    override_current_cpu(Some(1));
    let outcome = Arc::new(AtomicUsize::new(0)); // +1: refused, +1000: waited
    for i in 0..20 {
        let (r2, o2) = (rcu.clone(), outcome.clone());
        rcu.call_hurry(move || {
            if i % 2 == 0 {
                // try_synchronize refuses inside a section of the domain.
                if r2.try_synchronize() {
                    o2.fetch_add(1000, Ordering::SeqCst);
                } else {
                    o2.fetch_add(1, Ordering::SeqCst);
                }
            } else {
                r2.synchronize();
                o2.fetch_add(1000, Ordering::SeqCst);
            }
        });
    }
    override_current_cpu(None);
    // Let their grace period pass, then run them from inside a section.
    let cookie = rcu.start_poll();
    assert!(eventually(10, || rcu.poll(&cookie)));
    let mut ran_here = 0;
    {
        let _g = rcu.read_lock();
        for p in [12u8, 6, 0] {
            ran_here += rcu.run_callbacks(&NodeMask::all(), p).invoked;
        }
    }
    release.send(()).unwrap();
    rcu.barrier();
    let o = outcome.load(Ordering::SeqCst);
    let panics = rcu.stats().callback_panics as usize;
    assert_eq!(
        ran_here, 20,
        "run_callbacks ran CPU 1's ready callbacks here"
    );
    // Inside the section: the even ones refused, the odd ones panicked.
    assert_eq!((o, panics), (10, 10), "every callback ran exactly once");
    let messages = messages.lock().unwrap();
    assert_eq!(messages.len(), 10);
    for msg in messages.iter() {
        assert!(
            msg.contains("inside an RCU callback") && msg.contains("call()"),
            "the misuse panic names the callback, not a guard of its own: {msg}"
        );
    }
    drop(messages);
    assert_quiescent_books(&rcu);
}

// ---------------------------------------------------------------------
// Domains made and dropped while other threads hold their handles,
// sections, QSBR registrations, cells, maps and caches; values whose drop
// writes into another domain; a map value owning a cell of its own domain.
// ---------------------------------------------------------------------

/// A value whose drop writes into a cell and a map of another domain.
struct CrossWriter {
    inner: Tracked,
    other_cell: Arc<RcuCell<Tracked>>,
    other_map: Arc<RcuHashMap<u64, Tracked>>,
}
reclaim_size!(CrossWriter { inner });

impl Drop for CrossWriter {
    fn drop(&mut self) {
        let v = self.inner.check();
        self.other_cell
            .store(Box::new(Tracked::new(S_LIFECYCLE_OTHER, v, 8)));
        self.other_map
            .insert(v % 31, Tracked::new(S_LIFECYCLE_OTHER, v, 8));
        if v % 3 == 0 {
            self.other_map.remove(&(v % 31));
        }
    }
}

/// A map value that owns a cell of the map's own domain (so the domain's
/// handle is held by something the domain itself frees).
struct Node {
    cell: RcuCell<Tracked>,
    tag: Tracked,
}
reclaim_size!(Node { tag });

#[test]
fn domains_dropped_while_threads_hold_handles_sections_and_containers() {
    let other = Rcu::new(Config::new()).unwrap();
    let other_cell = Arc::new(RcuCell::new_in(&other, None));
    let other_map = Arc::new(RcuHashMap::new_in(&other));
    let flavors = [Flavor::Memb, Flavor::Mb, Flavor::Qsbr];
    let start = Instant::now();
    let mut rounds = 0u64;
    while rounds < 12 || (rounds < 60 && start.elapsed() < Duration::from_secs(6)) {
        let flavor = flavors[rounds as usize % 3];
        let config = if rounds % 2 == 0 {
            Config::new().flavor(flavor)
        } else {
            Config::new().flavor(flavor).on_demand()
        };
        let rcu = match Rcu::new(config) {
            Ok(r) => r,
            Err(e) if flavor == Flavor::Memb => {
                eprintln!("memb unavailable here ({e}); skipping that flavor");
                rounds += 1;
                continue;
            }
            Err(e) => panic!("{e}"),
        };
        let cell = Arc::new(RcuCell::new_in(
            &rcu,
            Some(Box::new(Tracked::new(S_LIFECYCLE, 1, 32))),
        ));
        let map: Arc<RcuHashMap<u64, Node>> = Arc::new(RcuHashMap::new_in(&rcu));
        let cache: Arc<RcuCache<u64, Vec<u8>>> =
            Arc::new(RcuCache::builder().rcu(&rcu).max_bytes(64 << 10).build());
        for k in 0..8u64 {
            map.insert(
                k,
                Node {
                    cell: RcuCell::new_in(&rcu, Some(Box::new(Tracked::new(S_LIFECYCLE, k, 8)))),
                    tag: Tracked::new(S_LIFECYCLE, k, 8),
                },
            );
        }
        let go = Arc::new(Barrier::new(4));
        let dropped_main = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        // A reader: a guard (or, on QSBR, an online registration) held
        // across the main thread's drop of its handles.
        {
            let (rcu, cell, map, go, dropped_main) = (
                rcu.clone(),
                cell.clone(),
                map.clone(),
                go.clone(),
                dropped_main.clone(),
            );
            threads.push(thread::spawn(move || {
                let read = |cell: &RcuCell<Tracked>, map: &RcuHashMap<u64, Node>, n: &mut u64| {
                    let check = |c: Option<&Tracked>| c.map(Tracked::check);
                    let _ = check(cell.load(&rcu.read_lock()));
                    let g = rcu.read_lock();
                    for (_, node) in map.iter(&g) {
                        node.tag.check();
                        if let Some(t) = node.cell.load(&g) {
                            t.check();
                        }
                        *n += 1;
                    }
                };
                let mut n = 0;
                if rcu.flavor() == Flavor::Qsbr {
                    let mut me = rcu.register_qsbr_thread();
                    go.wait();
                    while !dropped_main.load(Ordering::Acquire) {
                        {
                            let g = me.read_lock();
                            if let Some(t) = cell.load(&g) {
                                t.check();
                            }
                            for (_, node) in map.iter(&g) {
                                node.tag.check();
                                let _ = node.cell.load(&g).map(Tracked::check);
                            }
                        }
                        me.quiescent_state();
                    }
                    for _ in 0..50 {
                        {
                            let g = me.read_lock();
                            let _ = cell.load(&g).map(Tracked::check);
                        }
                        me.quiescent_state();
                    }
                    drop(me); // unregisters; may hold the last handle
                } else {
                    go.wait();
                    let g = rcu.read_lock();
                    let held = g.domain().clone();
                    while !dropped_main.load(Ordering::Acquire) {
                        read(&cell, &map, &mut n);
                    }
                    drop(g);
                    drop(held);
                    read(&cell, &map, &mut n);
                }
                drop(rcu);
            }));
        }
        // A writer: stores, map writes and callbacks holding handles.
        {
            let (rcu, cell, map, go, oc, om) = (
                rcu.clone(),
                cell.clone(),
                map.clone(),
                go.clone(),
                other_cell.clone(),
                other_map.clone(),
            );
            threads.push(thread::spawn(move || {
                go.wait();
                for i in 0..200u64 {
                    cell.store(Box::new(Tracked::new(S_LIFECYCLE, i, 16)));
                    let k = i % 12;
                    if i % 5 == 0 {
                        map.remove(&k);
                    } else {
                        map.insert(
                            k,
                            Node {
                                cell: RcuCell::new_in(
                                    &rcu,
                                    Some(Box::new(Tracked::new(S_LIFECYCLE, i, 8))),
                                ),
                                tag: Tracked::new(S_LIFECYCLE, i, 8),
                            },
                        );
                    }
                    if i % 20 == 0 {
                        rcu.defer_drop(Box::new(CrossWriter {
                            inner: Tracked::new(S_LIFECYCLE, i, 4),
                            other_cell: oc.clone(),
                            other_map: om.clone(),
                        }));
                    }
                    if i % 25 == 0 {
                        // A callback holding a handle of the domain: maybe
                        // its last, dropped inside the callback.
                        let r2 = rcu.clone();
                        let t = Tracked::new(S_LIFECYCLE, i, 4);
                        rcu.call(move || {
                            t.check();
                            drop(t);
                            drop(r2);
                        });
                    }
                }
            }));
        }
        // A cache user.
        {
            let (cache, go) = (cache.clone(), go.clone());
            threads.push(thread::spawn(move || {
                go.wait();
                for i in 0..300u64 {
                    cache.insert(i % 40, vec![i as u8; 1024 + (i as usize % 7) * 512]);
                    let g = cache.domain().read_lock();
                    if let Some(v) = cache.get(&(i % 40), &g) {
                        assert!(v.iter().all(|&b| b == v[0]));
                    }
                }
                drop(cache);
            }));
        }
        go.wait();
        thread::sleep(Duration::from_millis(1));
        // The main thread lets go of everything while the others run.
        drop(cell);
        drop(map);
        drop(cache);
        drop(rcu);
        dropped_main.store(true, Ordering::Release);
        for t in threads {
            t.join().unwrap();
        }
        rounds += 1;
    }
    // Every domain's last handle is gone: each ran (or handed to a
    // short-lived thread) everything it held.
    let ok = eventually(20, || live(S_LIFECYCLE) == 0);
    assert!(
        ok,
        "{} values of dropped domains never dropped",
        live(S_LIFECYCLE)
    );
    drop(other_cell);
    drop(other_map);
    other.barrier();
    assert_eq!(live(S_LIFECYCLE_OTHER), 0);
    assert_eq!(POISON_READS[S_LIFECYCLE].load(Ordering::SeqCst), 0);
    assert_quiescent_books(&other);
}

/// A map value owning a cell of the same domain, and cells owning values
/// that own cells: dropping the map drops them all, once, through the
/// domain, while the domain itself is dropped right after.
#[test]
fn cycles_of_containers_in_one_domain_are_freed_once() {
    struct Inner {
        cell: RcuCell<Tracked>,
    }
    reclaim_size!(Inner {});
    struct Outer(RcuCell<Inner>);
    reclaim_size!(Outer {});
    for round in 0..30u64 {
        let rcu = Rcu::new(if round % 2 == 0 {
            Config::new()
        } else {
            Config::new().on_demand()
        })
        .unwrap();
        let map: RcuHashMap<u64, Outer> = RcuHashMap::new_in(&rcu);
        for k in 0..50u64 {
            let inner = Inner {
                cell: RcuCell::new_in(&rcu, Some(Box::new(Tracked::new(S_CYCLE, k, 8)))),
            };
            map.insert(k, Outer(RcuCell::new_in(&rcu, Some(Box::new(inner)))));
        }
        // Replace some inner values, retiring cells that own cells.
        for k in 0..50u64 {
            let g = rcu.read_lock();
            let outer = &map.get(&k, &g).unwrap().0;
            let inner = outer.load(&g).unwrap();
            inner.cell.load(&g).unwrap().check();
            if k % 2 == 0 {
                inner
                    .cell
                    .store(Box::new(Tracked::new(S_CYCLE, k + 100, 8)));
            }
            drop(g);
            if k % 3 == 0 {
                let inner = Inner {
                    cell: RcuCell::new_in(&rcu, Some(Box::new(Tracked::new(S_CYCLE, k + 200, 8)))),
                };
                map.get_or_insert_with(k, || unreachable!(), &rcu.read_lock())
                    .0
                    .store(Box::new(inner));
            }
            if k % 7 == 0 {
                map.remove(&k);
            }
        }
        if round % 3 == 0 {
            rcu.barrier();
        }
        drop(map);
        if round % 2 == 1 {
            // On demand, the entries' cells hold the domain's last handles
            // and nothing frees them unless asked (documented in `Rcu`'s
            // `Drop`): a barrier runs them, and the last handle's drop
            // then runs what dropping the cells retired.
            rcu.clone().barrier();
        }
        drop(rcu); // the last handle may be the containers' (held until freed)
        let ok = eventually(10, || live(S_CYCLE) == 0);
        assert!(ok, "round {round}: {} values never dropped", live(S_CYCLE));
    }
    assert_eq!(POISON_READS[S_CYCLE].load(Ordering::SeqCst), 0);
}

// ---------------------------------------------------------------------
// Mixed flavors in one process: nested sections in every order, and
// grace-period waits of one domain inside another's section.
// ---------------------------------------------------------------------

#[test]
fn mixed_flavors_nested_sections_and_cross_domain_waits() {
    let memb = Rcu::new(Config::new()).unwrap();
    let mb = Rcu::new(Config::new().flavor(Flavor::Mb)).unwrap();
    let qsbr = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
    let global = Rcu::global().clone();
    // Ordered: a wait of domain i happens only inside sections of domains
    // after i (QSBR last: an online registration is one long section), so
    // no two threads wait for each other's domains.
    let domains = [global.clone(), memb.clone(), mb.clone(), qsbr.clone()];
    let cells: Arc<Vec<RcuCell<Tracked>>> = Arc::new(
        domains
            .iter()
            .map(|d| RcuCell::new_in(d, Some(Box::new(Tracked::new(S_FLAVORS, 0, 16)))))
            .collect(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicUsize::new(0));
    let mut threads = Vec::new();
    for t in 0..2usize {
        let (domains, cells, stop, reads) =
            (domains.clone(), cells.clone(), stop.clone(), reads.clone());
        threads.push(thread::spawn(move || {
            let mut me = domains[3].register_qsbr_thread();
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                // Nested guards of the three non-QSBR domains, in an order
                // that changes every time, inside the QSBR section.
                let order: [usize; 3] = match (i + t) % 6 {
                    0 => [0, 1, 2],
                    1 => [0, 2, 1],
                    2 => [1, 0, 2],
                    3 => [1, 2, 0],
                    4 => [2, 0, 1],
                    _ => [2, 1, 0],
                };
                {
                    let q = me.read_lock();
                    let g0 = domains[order[0]].read_lock();
                    let g1 = domains[order[1]].read_lock();
                    let g1b = domains[order[1]].read_lock(); // nested, same domain
                    let g2 = domains[order[2]].read_lock();
                    let guards = [(&g0, order[0]), (&g1, order[1]), (&g2, order[2])];
                    for (g, d) in guards {
                        cells[d].load(g).map(Tracked::check);
                    }
                    cells[order[1]].load(&g1b).map(Tracked::check);
                    cells[3].load(&q).map(Tracked::check);
                    drop(g1);
                    cells[order[1]].load(&g1b).map(Tracked::check);
                    if i % 64 == 0 {
                        // Inside every non-QSBR section: nothing may wait.
                        for d in &domains[..3] {
                            assert!(!d.try_synchronize());
                        }
                        assert!(
                            !domains[3].try_synchronize(),
                            "an online QSBR thread is in a section"
                        );
                    }
                    drop(g2);
                    drop(g0);
                    drop(g1b);
                    reads.fetch_add(1, Ordering::Relaxed);
                }
                if i % 16 == 0 {
                    // Online in QSBR (a section of domain 3) and inside a
                    // section of domain 2: waiting for domains 0 and 1 is
                    // allowed (they never wait for this thread).
                    let g2 = domains[2].read_lock();
                    domains[(i / 16) % 2].synchronize();
                    cells[2].load(&g2).map(Tracked::check);
                    drop(g2);
                    // Documented misuse: waiting for the QSBR domain while
                    // online in it panics rather than wait for itself.
                    if i % 256 == 0 {
                        let r = catch_unwind(AssertUnwindSafe(|| domains[3].synchronize()));
                        assert!(r.is_err());
                    }
                    me.synchronize(); // goes offline for the wait
                }
                me.quiescent_state();
                i += 1;
            }
        }));
    }
    // Writers: each stores into every domain; waits of a domain only
    // inside sections of later domains.
    for w in 0..2usize {
        let (domains, cells, stop) = (domains.clone(), cells.clone(), stop.clone());
        threads.push(thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for d in 0..4 {
                    cells[d].store(Box::new(Tracked::new(S_FLAVORS, i, 16)));
                }
                if i % 8 == 0 {
                    let g = domains[2].read_lock();
                    domains[w].synchronize_expedited();
                    drop(g);
                    let cookie = domains[3].start_poll();
                    domains[3].cond_synchronize(cookie); // not in any section
                }
                if i % 32 == 0 {
                    let old = cells[1].replace(Box::new(Tracked::new(S_FLAVORS, i, 16)));
                    let g = domains[2].read_lock();
                    // Dropping a Retired of domain 1 inside a section of
                    // domain 2 waits for domain 1's grace period only.
                    drop(old);
                    drop(g);
                }
                i += 1;
            }
        }));
    }
    thread::sleep(Duration::from_secs(4));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    assert!(reads.load(Ordering::Relaxed) > 0);
    drop(cells);
    for d in &domains[1..] {
        assert_quiescent_books(d);
    }
    global.barrier();
    assert_eq!(live(S_FLAVORS), 0);
    assert_eq!(POISON_READS[S_FLAVORS].load(Ordering::SeqCst), 0);
}

// ---------------------------------------------------------------------
// A cell under contention: update and compare_exchange from many threads,
// a pressure signal toggling and run_callbacks from another thread.
// ---------------------------------------------------------------------

#[test]
fn cell_contention_with_pressure_and_run_callbacks() {
    for flavor in [Flavor::Memb, Flavor::Mb] {
        let Ok(rcu) = Rcu::new(Config::new().flavor(flavor)) else {
            continue;
        };
        let cell = Arc::new(RcuCell::new_in(
            &rcu,
            Some(Box::new(Tracked::new(S_CELL, 0, 256))),
        ));
        let stop = Arc::new(AtomicBool::new(false));
        let increments = Arc::new(AtomicU64::new(0));
        let mut threads = Vec::new();
        for w in 0..4usize {
            let (rcu, cell, increments) = (rcu.clone(), cell.clone(), increments.clone());
            threads.push(thread::spawn(move || {
                let start = Instant::now();
                let mut i = 0usize;
                while i < 1500 || start.elapsed() < Duration::from_secs(2) {
                    i += 1;
                    if w % 2 == 0 {
                        cell.update(|old| {
                            let v = old.map_or(0, Tracked::check);
                            Some(Box::new(Tracked::new(S_CELL, v + 1, 256 + i % 512)))
                        });
                    } else {
                        loop {
                            let g = rcu.read_lock();
                            let cur = cell.load(&g);
                            let v = cur.map_or(0, Tracked::check);
                            let new = Box::new(Tracked::new(S_CELL, v + 1, 256 + i % 512));
                            match cell.compare_exchange(cur, Some(new), &g) {
                                Ok(Some(old)) => {
                                    if i % 2 == 0 {
                                        old.defer_drop();
                                    } // else dropped in the section: deferred
                                    break;
                                }
                                Ok(None) => unreachable!("the cell is never emptied"),
                                Err(e) => {
                                    if let Some(c) = e.current {
                                        c.check();
                                    }
                                    drop(e.new); // never published: dropped at once
                                }
                            }
                        }
                    }
                    increments.fetch_add(1, Ordering::Relaxed);
                    if i % 64 == 0 {
                        rcu.collect();
                    }
                }
            }));
        }
        let mut helpers = Vec::new();
        {
            let (rcu, stop) = (rcu.clone(), stop.clone());
            helpers.push(thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let g = rcu.pressure_start_all();
                    thread::sleep(Duration::from_micros(200));
                    drop(g);
                    thread::yield_now();
                }
            }));
        }
        {
            let (rcu, stop) = (rcu.clone(), stop.clone());
            helpers.push(thread::spawn(move || {
                let mut p = 0u8;
                while !stop.load(Ordering::Relaxed) {
                    let r = rcu.run_callbacks(&NodeMask::all(), p);
                    let _ = r;
                    p = (p + 3) % 13;
                    thread::sleep(Duration::from_micros(100));
                }
            }));
        }
        {
            let (rcu, stop, cell) = (rcu.clone(), stop.clone(), cell.clone());
            helpers.push(thread::spawn(move || {
                let mut last = 0;
                while !stop.load(Ordering::Relaxed) {
                    let g = rcu.read_lock();
                    let v = cell.load(&g).map_or(0, Tracked::check);
                    assert!(v >= last, "the cell went back from {last} to {v}");
                    last = v;
                }
            }));
        }
        for t in threads {
            t.join().unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        for h in helpers {
            h.join().unwrap();
        }
        let total = increments.load(Ordering::SeqCst);
        assert!(total >= 4 * 1500);
        assert_eq!(
            cell.load(&rcu.read_lock()).map(Tracked::check),
            Some(total),
            "an update was lost"
        );
        rcu.barrier();
        assert_eq!(
            live(S_CELL),
            1,
            "exactly the cell's value is alive after barrier"
        );
        drop(cell);
        assert_quiescent_books(&rcu);
        assert_eq!(live(S_CELL), 0);
    }
    assert_eq!(POISON_READS[S_CELL].load(Ordering::SeqCst), 0);
}

/// The same on a QSBR domain: online registered writers (updating and
/// compare-exchanging between quiescent states), unregistered writers,
/// a registered reader, a pressure signal and `run_callbacks` beside them.
#[test]
fn qsbr_cell_contention_online_and_unregistered_writers() {
    let rcu = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
    let cell = Arc::new(RcuCell::new_in(
        &rcu,
        Some(Box::new(Tracked::new(S_QSBR_CELL, 0, 128))),
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let increments = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    for w in 0..4usize {
        let (rcu, cell, increments) = (rcu.clone(), cell.clone(), increments.clone());
        threads.push(thread::spawn(move || {
            let mut me = (w < 2).then(|| rcu.register_qsbr_thread());
            let start = Instant::now();
            let mut i = 0usize;
            while i < 1000 || start.elapsed() < Duration::from_secs(2) {
                i += 1;
                match &mut me {
                    Some(me) if i % 2 == 0 => loop {
                        let g = me.read_lock();
                        let cur = cell.load(&g);
                        let v = cur.map_or(0, Tracked::check);
                        let new = Box::new(Tracked::new(S_QSBR_CELL, v + 1, 64 + i % 256));
                        if cell.compare_exchange(cur, Some(new), &g).is_ok() {
                            break;
                        }
                    },
                    _ => {
                        cell.update(|old| {
                            let v = old.map_or(0, Tracked::check);
                            Some(Box::new(Tracked::new(S_QSBR_CELL, v + 1, 64 + i % 256)))
                        });
                    }
                }
                increments.fetch_add(1, Ordering::Relaxed);
                if let Some(me) = &mut me {
                    me.quiescent_state();
                    if i % 100 == 0 {
                        me.offline_while(|| thread::sleep(Duration::from_micros(50)));
                    }
                }
                if i % 32 == 0 {
                    rcu.collect();
                }
            }
        }));
    }
    let mut helpers = Vec::new();
    {
        let (rcu, stop) = (rcu.clone(), stop.clone());
        helpers.push(thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let g = rcu.pressure_start_all();
                thread::sleep(Duration::from_micros(200));
                drop(g);
                thread::yield_now();
            }
        }));
    }
    {
        let (rcu, stop) = (rcu.clone(), stop.clone());
        helpers.push(thread::spawn(move || {
            let mut p = 0u8;
            while !stop.load(Ordering::Relaxed) {
                rcu.run_callbacks(&NodeMask::all(), p);
                p = (p + 5) % 13;
                thread::sleep(Duration::from_micros(100));
            }
        }));
    }
    {
        let (rcu, stop, cell) = (rcu.clone(), stop.clone(), cell.clone());
        helpers.push(thread::spawn(move || {
            let mut me = rcu.register_qsbr_thread();
            let mut last = 0;
            while !stop.load(Ordering::Relaxed) {
                let v = cell.load(&me.read_lock()).map_or(0, Tracked::check);
                assert!(v >= last, "the cell went back from {last} to {v}");
                last = v;
                me.quiescent_state();
            }
        }));
    }
    for t in threads {
        t.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for h in helpers {
        h.join().unwrap();
    }
    let total = increments.load(Ordering::SeqCst);
    let mut me = rcu.register_qsbr_thread();
    assert_eq!(cell.load(&me.read_lock()).map(Tracked::check), Some(total));
    me.quiescent_state();
    drop(me);
    rcu.barrier();
    assert_eq!(live(S_QSBR_CELL), 1);
    drop(cell);
    assert_quiescent_books(&rcu);
    assert_eq!(live(S_QSBR_CELL), 0);
    assert_eq!(POISON_READS[S_QSBR_CELL].load(Ordering::SeqCst), 0);
}

/// Last handles dropped where the drop cannot wait: inside another
/// domain's callback (with callbacks, deferred drops and a cell's values
/// pending, on a lazy or an on-demand domain), and inside a raw section on
/// a thread that then exits without unlocking it (documented: the work
/// goes to a short-lived thread, done once the section ends).
#[test]
fn last_handles_dropped_in_callbacks_and_raw_sections() {
    let mut expect = 0;
    for round in 0..40 {
        let a = Rcu::new(Config::new()).unwrap();
        let b = Rcu::new(if round % 2 == 0 {
            Config::new()
        } else {
            Config::new().flavor(Flavor::Mb).on_demand()
        })
        .unwrap();
        for i in 0..10 {
            b.defer_drop(Box::new(Tracked::new(S_LAST, i, 8)));
            let t = Tracked::new(S_LAST, i, 8);
            b.call(move || drop(t));
        }
        let c = RcuCell::new_in(&b, Some(Box::new(Tracked::new(S_LAST, 0, 8))));
        c.store(Box::new(Tracked::new(S_LAST, 1, 8)));
        expect += 22;
        a.call(move || {
            assert!(Rcu::in_callback());
            drop(c);
            drop(b); // the last handle, inside a callback of another domain
        });
        if round % 3 == 0 {
            a.barrier();
        }
        drop(a);
    }
    for _ in 0..10 {
        let b = Rcu::new(Config::new()).unwrap();
        for i in 0..10 {
            b.defer_drop(Box::new(Tracked::new(S_LAST, i, 8)));
        }
        expect += 10;
        thread::spawn(move || {
            b.read_lock_raw();
            drop(b); // inside its own raw section, never unlocked
        })
        .join()
        .unwrap();
    }
    assert_eq!(CREATED[S_LAST].load(Ordering::SeqCst), expect);
    assert!(
        eventually(20, || live(S_LAST) == 0),
        "{} values of dropped domains never dropped",
        live(S_LAST)
    );
}

/// A synthetic topology (4 nodes of 2 CPUs), threads that move between
/// CPUs while they retire (their buffered page goes to whichever shard
/// they are on), pressure raised and dropped per node, and `run_callbacks`
/// on one node at a time: nothing is lost or run twice, the per-node
/// backlogs add up to the total at quiescence, and the books balance.
#[test]
fn per_node_pressure_and_run_callbacks_with_migrating_retirers() {
    use rcu_reclaim::topology::{override_current_cpu, Topology};
    for per_cpu in [false, true] {
        let rcu = Rcu::new(
            Config::new()
                .topology(Topology::synthetic(4, 2))
                .worker_per_cpu(per_cpu)
                .retiring_thread_frees(per_cpu),
        )
        .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let calls_ran = Arc::new(AtomicUsize::new(0));
        let calls_made = Arc::new(AtomicUsize::new(0));
        let mut threads = Vec::new();
        for w in 0..3usize {
            let (rcu, calls_ran, calls_made) = (rcu.clone(), calls_ran.clone(), calls_made.clone());
            threads.push(thread::spawn(move || {
                let cell = RcuCell::new_in(&rcu, Some(Box::new(Tracked::new(S_NODES, 0, 8))));
                let start = Instant::now();
                let mut i = 0usize;
                while i < 3000 || start.elapsed() < Duration::from_secs(2) {
                    i += 1;
                    if i % 37 == 0 {
                        override_current_cpu(Some((i / 37 + w) % 8));
                    }
                    match i % 5 {
                        0 => rcu.defer_drop(Box::new(Tracked::new(S_NODES, i as u64, 32))),
                        1 => rcu.defer_drop(Box::new(Plain(Tracked::new(S_NODES, i as u64, 16)))),
                        2 => {
                            let r = calls_ran.clone();
                            let t = Tracked::new(S_NODES, i as u64, 8);
                            calls_made.fetch_add(1, Ordering::Relaxed);
                            if i % 2 == 0 {
                                rcu.call(move || {
                                    t.check();
                                    r.fetch_add(1, Ordering::Relaxed);
                                });
                            } else {
                                rcu.call_sized(
                                    move || {
                                        t.check();
                                        r.fetch_add(1, Ordering::Relaxed);
                                    },
                                    4096,
                                );
                            }
                        }
                        3 => cell.store(Box::new(Tracked::new(S_NODES, i as u64, 64))),
                        _ => {
                            let g = rcu.read_lock();
                            cell.load(&g).map(Tracked::check);
                            rcu.defer_drop(Box::new(Tracked::new(S_NODES, i as u64, 8)));
                        }
                    }
                    if i % 101 == 0 {
                        rcu.collect();
                    }
                }
                override_current_cpu(None);
                drop(cell);
            }));
        }
        let mut helpers = Vec::new();
        {
            let (rcu, stop) = (rcu.clone(), stop.clone());
            helpers.push(thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let a = rcu.pressure_start(n % 4);
                    let b = rcu.pressure_start((n + 1) % 4);
                    thread::sleep(Duration::from_micros(300));
                    drop(a);
                    thread::sleep(Duration::from_micros(100));
                    b.end();
                    n += 1;
                }
            }));
        }
        {
            let (rcu, stop) = (rcu.clone(), stop.clone());
            helpers.push(thread::spawn(move || {
                let mut n = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let mask = NodeMask::node(n % 4).with((n + 2) % 4);
                    let (count, bytes) = rcu.pending_on(&mask);
                    let _ = (count, bytes);
                    rcu.run_callbacks(&mask, (n % 13) as u8);
                    n += 1;
                    thread::sleep(Duration::from_micros(200));
                }
            }));
        }
        for t in threads {
            t.join().unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        for h in helpers {
            h.join().unwrap();
        }
        // Quiescent: the per-node and per-CPU backlogs add up.
        let total = rcu.pending();
        let by_node: usize = (0..4).map(|n| rcu.pending_on_node(n)).sum();
        let by_cpu: usize = (0..8).map(|c| rcu.pending_on_cpu(c)).sum();
        assert_eq!(by_node, by_cpu, "per-node and per-CPU backlogs disagree");
        assert!(by_node <= total, "shards hold {by_node}, total {total}");
        assert_quiescent_books(&rcu);
        for n in 0..4 {
            assert_eq!(rcu.pending_on_node(n), 0);
            assert_eq!(rcu.pending_bytes_on_node(n), 0);
        }
        assert_eq!(
            calls_ran.load(Ordering::SeqCst),
            calls_made.load(Ordering::SeqCst)
        );
        assert_eq!(live(S_NODES), 0, "values leaked or dropped twice");
    }
    assert_eq!(POISON_READS[S_NODES].load(Ordering::SeqCst), 0);
}

// ---------------------------------------------------------------------
// A map walked while its table grows and shrinks, and get_or_insert_with
// races.
// ---------------------------------------------------------------------

#[test]
fn map_iteration_across_resizes_and_loader_races() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let map: Arc<RcuHashMap<u64, Tracked>> = Arc::new(RcuHashMap::with_capacity_in(4, &rcu));
    const STABLE: u64 = 64;
    for k in 0..STABLE {
        map.insert(k, Tracked::new(S_MAP, k << 32, 0));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let gen = Arc::new(AtomicU64::new(1));
    let mut threads = Vec::new();
    // Two writers grow the table with a wave of keys and shrink it again.
    for w in 0..2u64 {
        let (map, stop, gen) = (map.clone(), stop.clone(), gen.clone());
        threads.push(thread::spawn(move || {
            let base = 1_000_000 * (w + 1);
            let mut waves = 0;
            while !stop.load(Ordering::Relaxed) || waves < 2 {
                let n = 1500 + (waves % 3) * 500;
                for k in 0..n {
                    let g = gen.fetch_add(1, Ordering::Relaxed);
                    map.insert(base + k, Tracked::new(S_MAP, g, 0));
                }
                for k in 0..n {
                    if k % 3 == 0 {
                        // remove and insert again: a new entry for the key
                        map.remove(&(base + k));
                        let g = gen.fetch_add(1, Ordering::Relaxed);
                        map.insert(base + k, Tracked::new(S_MAP, g, 0));
                    }
                }
                for k in 0..n {
                    map.remove(&(base + k));
                }
                map.retain(|k, _| *k < 1_000_000 || *k % 2 == 0);
                waves += 1;
            }
        }));
    }
    // Walkers.
    let walks = Arc::new(AtomicUsize::new(0));
    for _ in 0..2 {
        let (rcu, map, stop, walks) = (rcu.clone(), map.clone(), stop.clone(), walks.clone());
        threads.push(thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let g = rcu.read_lock();
                let mut stable_seen = vec![0u32; STABLE as usize];
                let mut entries = HashSet::new();
                for (k, v) in map.iter(&g) {
                    let val = v.check();
                    assert!(
                        entries.insert((*k, val)),
                        "entry ({k}, {val}) yielded twice in one walk"
                    );
                    if *k < STABLE {
                        assert_eq!(val, *k << 32, "a stable key's value changed");
                        stable_seen[*k as usize] += 1;
                    }
                }
                for (k, n) in stable_seen.iter().enumerate() {
                    assert_eq!(*n, 1, "stable key {k} yielded {n} times in one walk");
                }
                for k in (0..STABLE).step_by(7) {
                    assert_eq!(map.get(&k, &g).map(Tracked::check), Some(k << 32));
                }
                walks.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // Loader races: four threads get_or_insert_with the same fresh keys.
    let loads = Arc::new(AtomicUsize::new(0));
    let inserted_keys = 400u64;
    let race = Arc::new(Barrier::new(4));
    let mut racers = Vec::new();
    for _ in 0..4 {
        let (rcu, map, loads, race) = (rcu.clone(), map.clone(), loads.clone(), race.clone());
        racers.push(thread::spawn(move || {
            race.wait();
            for k in 0..inserted_keys {
                let key = 10_000 + k;
                let g = rcu.read_lock();
                let v = map.get_or_insert_with(
                    key,
                    || {
                        loads.fetch_add(1, Ordering::SeqCst);
                        Tracked::new(S_MAP, key, 0)
                    },
                    &g,
                );
                assert_eq!(v.check(), key);
            }
        }));
    }
    for r in racers {
        r.join().unwrap();
    }
    assert_eq!(
        loads.load(Ordering::SeqCst),
        inserted_keys as usize,
        "get_or_insert_with ran its loader other than once per inserted key"
    );
    thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    assert!(walks.load(Ordering::Relaxed) > 0);
    // Quiescent: len agrees with a walk, and with what is alive.
    let g = rcu.read_lock();
    let walked = map.iter(&g).count();
    drop(g);
    assert_eq!(map.len(), walked);
    assert_eq!(walked as u64, STABLE + inserted_keys);
    rcu.barrier();
    assert_eq!(live(S_MAP), walked as isize);
    drop(map);
    assert_quiescent_books(&rcu);
    assert_eq!(live(S_MAP), 0);
    assert_eq!(POISON_READS[S_MAP].load(Ordering::SeqCst), 0);
}

/// The same walk on a QSBR domain: online walkers that report between
/// walks, writers that are registered and report between writes (and one
/// that is not registered at all), and tables retired across resizes.
#[test]
fn qsbr_map_iteration_across_resizes() {
    let rcu = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
    let map: Arc<RcuHashMap<u64, Tracked>> = Arc::new(RcuHashMap::with_capacity_in(4, &rcu));
    const STABLE: u64 = 32;
    for k in 0..STABLE {
        map.insert(k, Tracked::new(S_QSBR_MAP, k << 32, 0));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for w in 0..2u64 {
        let (rcu, map, stop) = (rcu.clone(), map.clone(), stop.clone());
        threads.push(thread::spawn(move || {
            let mut me = (w == 0).then(|| rcu.register_qsbr_thread());
            let base = 1_000_000 * (w + 1);
            let mut waves = 0;
            while !stop.load(Ordering::Relaxed) || waves < 2 {
                for k in 0..1200 {
                    let val = ((waves as u64) << 40) | (base + k);
                    map.insert(base + k, Tracked::new(S_QSBR_MAP, val, 0));
                    if let Some(me) = &mut me {
                        me.quiescent_state();
                    }
                }
                for k in 0..1200 {
                    map.remove(&(base + k));
                    if let Some(me) = &mut me {
                        if k % 8 == 0 {
                            me.quiescent_state();
                        }
                    }
                }
                if let Some(me) = &mut me {
                    me.quiescent_state();
                    rcu.collect();
                }
                waves += 1;
            }
        }));
    }
    let walks = Arc::new(AtomicUsize::new(0));
    for _ in 0..2 {
        let (rcu, map, stop, walks) = (rcu.clone(), map.clone(), stop.clone(), walks.clone());
        threads.push(thread::spawn(move || {
            let mut me = rcu.register_qsbr_thread();
            while !stop.load(Ordering::Relaxed) {
                {
                    let g = me.read_lock();
                    let mut stable = vec![0u32; STABLE as usize];
                    let mut seen = HashSet::new();
                    for (k, v) in map.iter(&g) {
                        let val = v.check();
                        // A key re-inserted by a later wave may be yielded
                        // once per entry (documented), never one entry twice.
                        assert!(
                            seen.insert((*k, val)),
                            "entry ({k}, {val:#x}) yielded twice"
                        );
                        if *k < STABLE {
                            assert_eq!(val, *k << 32);
                            stable[*k as usize] += 1;
                        } else {
                            assert_eq!(val & ((1 << 40) - 1), *k);
                        }
                    }
                    assert!(stable.iter().all(|&n| n == 1), "stable keys: {stable:?}");
                }
                me.quiescent_state();
                walks.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    assert!(walks.load(Ordering::Relaxed) > 0);
    assert_eq!(map.len(), STABLE as usize);
    rcu.barrier();
    assert_eq!(live(S_QSBR_MAP), STABLE as isize);
    drop(map);
    assert_quiescent_books(&rcu);
    assert_eq!(live(S_QSBR_MAP), 0);
    assert_eq!(POISON_READS[S_QSBR_MAP].load(Ordering::SeqCst), 0);
}

// ---------------------------------------------------------------------
// A cache under a budget, with a pressure signal flapping fast.
// ---------------------------------------------------------------------

/// A cache value that counts its drops and checks it is alive when read.
struct Blob(Tracked);

#[test]
fn cache_with_budget_under_flapping_pressure() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let usage = Arc::new(AtomicUsize::new(0));
    let u2 = usage.clone();
    let reclaimer = Arc::new(Reclaimer::new(&rcu));
    let budget = Arc::new(MemoryBudget::new(4 << 20, reclaimer, move || {
        u2.load(Ordering::Relaxed)
    }));
    const MAX: usize = 2 << 20;
    let cache: Arc<RcuCache<u64, Blob>> = Arc::new(
        RcuCache::builder()
            .rcu(&rcu)
            .max_bytes(MAX)
            .budget(&budget)
            .weigher(|_k: &u64, v: &Blob| v.0.payload.len())
            .regrow_after(Duration::from_millis(20))
            .build(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    const WRITERS: usize = 2;
    const MAX_ENTRY: usize = 16 << 10;
    let mut threads = Vec::new();
    for w in 0..WRITERS as u64 {
        let (cache, usage, rcu) = (cache.clone(), usage.clone(), rcu.clone());
        threads.push(thread::spawn(move || {
            let start = Instant::now();
            let mut i = 0u64;
            while i < 3000 || start.elapsed() < Duration::from_secs(3) {
                i += 1;
                let key = (i * 7 + w) % 600;
                let len = 1024 + (i as usize * 613) % (MAX_ENTRY - 1024);
                cache.insert(key, Blob(Tracked::new(S_CACHE, key, len)));
                // The budget's usage: what the cache holds and what waits
                // to be freed, doubled now and then to cross its marks.
                let doubled = if i % 100 < 10 { 2 } else { 1 };
                usage.store(
                    (cache.bytes() + rcu.pending_bytes()) * doubled,
                    Ordering::Relaxed,
                );
                if i % 97 == 0 {
                    cache.remove(&key);
                }
            }
        }));
    }
    let mut helpers = Vec::new();
    {
        let (rcu, stop) = (rcu.clone(), stop.clone());
        helpers.push(thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let g = rcu.pressure_start_all();
                thread::sleep(Duration::from_micros(50));
                drop(g);
                thread::sleep(Duration::from_micros(50));
            }
        }));
    }
    // Readers that hold entries for a while and check them at the end.
    for r in 0..2u64 {
        let (rcu, cache, stop) = (rcu.clone(), cache.clone(), stop.clone());
        helpers.push(thread::spawn(move || {
            let mut i = r;
            while !stop.load(Ordering::Relaxed) {
                let g = rcu.read_lock();
                let held: Vec<&Blob> = (0..40)
                    .filter_map(|k| cache.get(&((i + k) % 600), &g))
                    .collect();
                for b in &held {
                    b.0.check();
                }
                thread::sleep(Duration::from_micros(200));
                for b in &held {
                    assert_eq!(b.0.check() % 600, b.0.value % 600);
                    assert!(b
                        .0
                        .payload
                        .iter()
                        .step_by(512)
                        .all(|&x| x == b.0.value as u8));
                }
                drop(g);
                i += 40;
            }
        }));
    }
    // A sampler of the cache's bound.
    {
        let (cache, stop) = (cache.clone(), stop.clone());
        helpers.push(thread::spawn(move || {
            let mut worst = 0;
            while !stop.load(Ordering::Relaxed) {
                let b = cache.bytes();
                worst = worst.max(b);
                // Writes in flight may each have added an entry not yet
                // queued (the documented slack).
                let slack = WRITERS * (MAX_ENTRY + RcuCache::<u64, Blob>::ENTRY_OVERHEAD);
                assert!(
                    b <= MAX + slack,
                    "cache holds {b} bytes, max {MAX} + slack {slack}"
                );
                thread::sleep(Duration::from_micros(100));
            }
            assert!(worst > 0);
        }));
    }
    for t in threads {
        t.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for h in helpers {
        h.join().unwrap();
    }
    assert!(
        cache.bytes() <= cache.capacity_bytes(),
        "over capacity at quiescence"
    );
    rcu.barrier();
    assert_eq!(rcu.pending_bytes(), 0);
    assert_eq!(live(S_CACHE), cache.len() as isize);
    drop(cache);
    drop(budget);
    assert_quiescent_books(&rcu);
    assert_eq!(live(S_CACHE), 0);
    assert_eq!(POISON_READS[S_CACHE].load(Ordering::SeqCst), 0);
}

/// A deferred drop that finds no bulk page outside a section waits for a
/// grace period and drops the value at once: it is counted as run, so it
/// must be counted as deferred too, or the books (and the call backlog's
/// count of outstanding entries, `queued - invoked`) drift by one each time.
#[test]
fn no_page_fallback_is_booked_as_deferred() {
    let rcu = Rcu::new(Config::new()).unwrap();
    for i in 0..50u64 {
        rcu_reclaim::pages::without_page_allocation(|| {
            rcu.defer_drop(Box::new(Tracked::new(S_NO_PAGE, i, 8)));
        });
        let g = rcu.read_lock(); // inside a section: a small callback instead
        rcu_reclaim::pages::without_page_allocation(|| {
            rcu.defer_drop(Box::new(Tracked::new(S_NO_PAGE, i, 8)));
        });
        drop(g);
    }
    assert_quiescent_books(&rcu);
    assert!(rcu.stats().fallback_syncs > 0);
    assert_eq!(live(S_NO_PAGE), 0);
}

/// Two threads whose loaders write each other's structures (a map's
/// `get_or_insert_with` inserting into a cache, the cache's inserting into
/// the map), with removals beside: the documented lock-order deadlock is
/// broken by a panic in one write, never a hang, and both structures stay
/// consistent (lengths, bytes) after the unwinds.
#[test]
fn crossed_loaders_between_a_map_and_a_cache() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let map: Arc<RcuHashMap<u64, Vec<u8>>> = Arc::new(RcuHashMap::new_in(&rcu));
    let cache: Arc<RcuCache<u64, Vec<u8>>> =
        Arc::new(RcuCache::builder().rcu(&rcu).max_bytes(64 << 10).build());
    let go = Arc::new(Barrier::new(2));
    let mut threads = Vec::new();
    for t in 0..2u64 {
        let (rcu, map, cache, go) = (rcu.clone(), map.clone(), cache.clone(), go.clone());
        threads.push(thread::spawn(move || {
            go.wait();
            let mut panics = 0;
            let start = Instant::now();
            let mut i = 0u64;
            while i < 5000 || (i < 20_000 && start.elapsed() < Duration::from_secs(2)) {
                i += 1;
                let k = i % 8;
                let r = catch_unwind(AssertUnwindSafe(|| {
                    let g = rcu.read_lock();
                    if t == 0 {
                        let v = map.get_or_insert_with(
                            k,
                            || {
                                cache.insert(k, vec![1u8; 2048]);
                                vec![0u8; 16]
                            },
                            &g,
                        );
                        assert!(v.len() == 16 && v.iter().all(|&b| b == v[0]));
                    } else {
                        let v = cache.get_or_insert_with(
                            k,
                            || {
                                map.insert(k, vec![2u8; 16]);
                                vec![3u8; 2048]
                            },
                            &g,
                        );
                        assert!(v.len() == 2048 && v.iter().all(|&b| b == v[0]));
                    }
                }));
                if let Err(e) = r {
                    let msg = e
                        .downcast_ref::<String>()
                        .map(String::as_str)
                        .or_else(|| e.downcast_ref::<&str>().copied())
                        .unwrap_or("");
                    assert!(msg.contains("deadlock"), "unexpected panic: {msg}");
                    panics += 1;
                }
                if i % 3 == 0 {
                    if t == 0 {
                        map.remove(&k);
                    } else {
                        cache.remove(&k);
                    }
                }
            }
            panics
        }));
    }
    let mut panics = 0;
    for t in threads {
        panics += t.join().unwrap();
    }
    eprintln!("{panics} writes broke a deadlock");
    let g = rcu.read_lock();
    assert_eq!(map.len(), map.iter(&g).count());
    let cached = (0..8).filter(|k| cache.contains_key(k, &g)).count();
    drop(g);
    assert_eq!(cache.len(), cached);
    assert_eq!(
        cache.bytes(),
        cached * (2048 + RcuCache::<u64, Vec<u8>>::ENTRY_OVERHEAD)
    );
    cache.clear();
    assert_eq!((cache.len(), cache.bytes()), (0, 0));
    drop((map, cache));
    assert_quiescent_books(&rcu);
}

/// Caches tied to a budget and a pressure monitor fed at high frequency,
/// made and dropped over and over in a domain of their own: dropped on the
/// main thread, inside a callback of another domain, and inside a section
/// of their own domain (where the monitor's and the shrinker's drops do
/// not wait, as documented). Every value is freed once, nothing hangs.
#[test]
fn caches_with_budgets_and_monitors_dropped_in_callbacks_and_sections() {
    use rcu_reclaim::sources::{Level, SyntheticSource};
    let other = Rcu::new(Config::new()).unwrap();
    for round in 0..12u64 {
        let rcu = Rcu::new(Config::new()).unwrap();
        let usage = Arc::new(AtomicUsize::new(0));
        let u2 = usage.clone();
        let reclaimer = Arc::new(Reclaimer::new(&rcu));
        reclaimer.set_oom_handler(|_| {});
        let budget = Arc::new(MemoryBudget::new(1 << 20, reclaimer, move || {
            u2.load(Ordering::Relaxed)
        }));
        let (tx, src) = SyntheticSource::new();
        let cache: Arc<RcuCache<u64, Blob>> = Arc::new(
            RcuCache::builder()
                .rcu(&rcu)
                .max_bytes(512 << 10)
                .budget(&budget)
                .pressure_source(Box::new(src))
                .weigher(|_k: &u64, v: &Blob| v.0.payload.len())
                .regrow_after(Duration::from_millis(5))
                .build(),
        );
        let stop = Arc::new(AtomicBool::new(false));
        let signaller = {
            let stop = stop.clone();
            thread::spawn(move || {
                let mut n = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let level = [Level::Low, Level::Medium, Level::Critical][n as usize % 3];
                    if tx.send(level).is_err() {
                        break;
                    }
                    n += 1;
                    thread::sleep(Duration::from_micros(200));
                }
            })
        };
        let writers: Vec<_> = (0..2u64)
            .map(|w| {
                let (cache, usage, rcu) = (cache.clone(), usage.clone(), rcu.clone());
                thread::spawn(move || {
                    for i in 0..400u64 {
                        let key = (i * 3 + w) % 97;
                        cache.insert(
                            key,
                            Blob(Tracked::new(
                                S_CACHE_LIFE,
                                key,
                                2048 + (i as usize % 5) * 1024,
                            )),
                        );
                        usage.store(cache.bytes() * 2 + rcu.pending_bytes(), Ordering::Relaxed);
                        let g = rcu.read_lock();
                        if let Some(b) = cache.get(&((key + 1) % 97), &g) {
                            b.0.check();
                        }
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        match round % 3 {
            0 => {
                drop(cache);
                drop(budget);
            }
            1 => {
                other.call(move || {
                    drop(cache);
                    drop(budget);
                });
                other.barrier();
            }
            _ => {
                let r2 = rcu.clone();
                let g = r2.read_lock();
                drop(cache);
                drop(budget);
                drop(g);
            }
        }
        stop.store(true, Ordering::Relaxed);
        signaller.join().unwrap();
        drop(rcu);
        assert!(
            eventually(20, || live(S_CACHE_LIFE) == 0),
            "round {round}: {} values never freed",
            live(S_CACHE_LIFE)
        );
    }
    assert_eq!(POISON_READS[S_CACHE_LIFE].load(Ordering::SeqCst), 0);
}

/// `barrier` waits for everything queued before it by any thread: a
/// callback, deferred drop or cell store that another thread made (still
/// in its buffered page, on a shard, or taken by a worker) before telling
/// the barrier's caller has run when the barrier returns, while the
/// pressure signal flaps, `run_callbacks` runs beside it, and the
/// retiring threads move between CPUs of a synthetic topology.
#[test]
fn barrier_covers_what_other_threads_queued_before_it() {
    use rcu_reclaim::topology::{override_current_cpu, Topology};
    use std::sync::mpsc;
    let rcu = Rcu::new(Config::new().topology(Topology::synthetic(2, 2))).unwrap();
    const N: usize = 4000;
    let flags: Arc<Vec<AtomicU8>> = Arc::new((0..N).map(|_| AtomicU8::new(0)).collect());
    let (tx, rx) = mpsc::channel::<(usize, usize)>();
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for w in 0..3usize {
        let (rcu, flags, tx) = (rcu.clone(), flags.clone(), tx.clone());
        threads.push(thread::spawn(move || {
            for i in (w..N).step_by(3) {
                if i % 13 == 0 {
                    override_current_cpu(Some(i % 4));
                }
                let f = flags.clone();
                match i % 3 {
                    0 => rcu.call(move || {
                        assert_eq!(f[i].fetch_add(1, Ordering::SeqCst), 0);
                    }),
                    1 => {
                        let t = Tracked::new(S_BARRIER, i as u64, 8);
                        rcu.call_hurry(move || {
                            t.check();
                            assert_eq!(f[i].fetch_add(1, Ordering::SeqCst), 0);
                        })
                    }
                    _ => {
                        // A deferred drop: its drop marks the flag.
                        struct Mark(Arc<Vec<AtomicU8>>, usize);
                        reclaim_size!(Mark {});
                        impl Drop for Mark {
                            fn drop(&mut self) {
                                assert_eq!(self.0[self.1].fetch_add(1, Ordering::SeqCst), 0);
                            }
                        }
                        rcu.defer_drop(Box::new(Mark(f, i)));
                    }
                }
                tx.send((i, w)).unwrap();
                if i % 4 == 0 {
                    // Let barriers interleave with the queueing.
                    thread::sleep(Duration::from_micros(50));
                }
            }
            override_current_cpu(None);
        }));
    }
    drop(tx);
    let mut helpers = Vec::new();
    {
        let (rcu, stop) = (rcu.clone(), stop.clone());
        helpers.push(thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let g = rcu.pressure_start(0);
                thread::sleep(Duration::from_micros(150));
                drop(g);
                rcu.run_callbacks(&NodeMask::all(), 8);
                thread::sleep(Duration::from_micros(150));
            }
        }));
    }
    let mut checked = 0;
    let mut batch = Vec::new();
    while let Ok(first) = rx.recv() {
        batch.push(first);
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        rcu.barrier();
        for (i, w) in batch.drain(..) {
            assert_eq!(
                flags[i].load(Ordering::SeqCst),
                1,
                "item {i} of thread {w}, queued before the barrier, had not run after it"
            );
            checked += 1;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads.into_iter().chain(helpers) {
        t.join().unwrap();
    }
    assert_eq!(checked, N);
    assert!(rcu.stats().barriers > 10, "{:?}", rcu.stats());
    assert_quiescent_books(&rcu);
    assert_eq!(live(S_BARRIER), 0);
}

// ---------------------------------------------------------------------
// Stats at quiescence: every retire path, counted.
// ---------------------------------------------------------------------

#[test]
fn stats_books_balance_after_barrier_for_every_retire_path() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let before = rcu.stats();
    assert_eq!(before.invoked, 0);
    let ran = Arc::new(AtomicUsize::new(0));
    let mut booked: u64 = 0;
    let threads: Vec<_> = (0..3)
        .map(|t| {
            let (rcu, ran) = (rcu.clone(), ran.clone());
            thread::spawn(move || {
                let mut booked = 0u64;
                let first = Box::new(Tracked::new(S_STATS, 0, 100));
                let mut cell_size =
                    (std::mem::size_of::<Tracked>() + first.payload.capacity()) as u64;
                let cell = RcuCell::new_in(&rcu, Some(first));
                for i in 0..2000usize {
                    match i % 7 {
                        0 => {
                            let r = ran.clone();
                            rcu.call(move || {
                                r.fetch_add(1, Ordering::Relaxed);
                            });
                        }
                        1 => {
                            let r = ran.clone();
                            rcu.call_sized(
                                move || {
                                    r.fetch_add(1, Ordering::Relaxed);
                                },
                                1000,
                            );
                            booked += 1000;
                        }
                        2 => {
                            let v = Box::new(Tracked::new(S_STATS, i as u64, 10 + i % 300));
                            booked +=
                                (std::mem::size_of::<Tracked>() + v.payload.capacity()) as u64;
                            rcu.defer_drop(v);
                        }
                        3 => {
                            rcu.defer_drop_sized(Box::new(Tracked::new(S_STATS, i as u64, 5)), 777);
                            booked += 777;
                        }
                        4 => {
                            let v = Box::new(Plain(Tracked::new(S_STATS, i as u64, 40)));
                            booked +=
                                (std::mem::size_of::<Plain>() + v.0.payload.capacity()) as u64;
                            if let Err(v) = rcu.try_defer_drop(v) {
                                booked -=
                                    (std::mem::size_of::<Plain>() + v.0.payload.capacity()) as u64;
                                drop(v);
                            }
                        }
                        5 => {
                            let v = Box::new(Tracked::new(S_STATS, i as u64, 64 + i % 100));
                            let size =
                                (std::mem::size_of::<Tracked>() + v.payload.capacity()) as u64;
                            // Retired::defer_drop books the old value's reclaim_size.
                            cell.replace(v).unwrap().defer_drop();
                            booked += std::mem::replace(&mut cell_size, size);
                        }
                        _ => {
                            let _g = rcu.read_lock();
                            rcu.call_hurry({
                                let r = ran.clone();
                                move || {
                                    r.fetch_add(1, Ordering::Relaxed);
                                }
                            });
                        }
                    }
                    if i % 500 == 0 && t == 0 {
                        let _p = rcu.pressure_start_all();
                        rcu.run_callbacks(&NodeMask::all(), 0);
                    }
                }
                // Dropping the cell drops its value at once (no reader can
                // hold it: a load borrows the cell): not through the domain.
                let _ = cell_size;
                drop(cell);
                booked
            })
        })
        .collect();
    for t in threads {
        booked += t.join().unwrap();
    }
    assert_quiescent_books(&rcu);
    let s = rcu.stats();
    let calls = (0..2000).filter(|i| matches!(i % 7, 0 | 1 | 6)).count() * 3;
    assert_eq!(ran.load(Ordering::SeqCst), calls);
    assert_eq!(s.callbacks_queued, calls as u64, "{s:?}");
    assert_eq!(s.bytes_freed, booked, "bytes freed != bytes booked");
    assert_eq!(live(S_STATS), 0);
}
