//! Callbacks that retire, write and queue more callbacks while barriers,
//! `run_callbacks` and a pressure signal race them; per-node pressure with
//! retiring threads moving between CPUs.

use super::*;

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
    let _stop = StopOnDrop(&stop);
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
        let _stop = StopOnDrop(&stop);
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
