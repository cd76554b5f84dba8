//! Independent stress, churn: short-lived threads that register, retire
//! and exit (or unregister) while others wait for grace periods and
//! barriers; QSBR threads going online, offline and away; forks while
//! threads retire (memb, mb, QSBR); panicking callbacks and drops. Poison
//! checks and exact drop counting as in `stress_storms.rs`.
//!
//! `RCU_ISTRESS_MS` sets the storm length per test (default 1200 ms).

mod common;
mod istress;

use common::StopOnDrop;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use istress::{Tracker, Val};

use rcu_reclaim::pressure::NodeMask;
use rcu_reclaim::{Config, Flavor, Rcu, RcuCell};

/// Short-lived threads register, read, retire (leaving partly filled bulk
/// pages behind) and exit, while others run barrier/synchronize/collect and
/// flap pressure.
fn thread_churn(config: Config, what: &str) {
    let Some(rcu) = istress::domain_or_skip(config) else {
        return;
    };
    let t = Tracker::new();
    let stop = Arc::new(AtomicBool::new(false));
    let cells = istress::cells(&rcu, &t, 4);
    let threads = Arc::new(AtomicUsize::new(0));
    let mut handles = vec![];
    for s in 0..3u64 {
        let (rcu, cells, stop, t, threads) = (
            rcu.clone(),
            cells.clone(),
            stop.clone(),
            t.clone(),
            threads.clone(),
        );
        handles.push(thread::spawn(move || {
            let mut i = s;
            while !stop.load(Ordering::Relaxed) && !t.full() {
                istress::step(&mut i);
                let seed = i >> 33;
                let (rcu, cells, t) = (rcu.clone(), cells.clone(), t.clone());
                thread::spawn(move || {
                    let n = (seed % 300) as usize;
                    {
                        let g = rcu.read_lock();
                        for c in cells.iter() {
                            if let Some(v) = c.load(&g) {
                                v.check();
                            }
                        }
                        if seed % 5 == 0 {
                            // Retire while inside a section.
                            rcu.defer_drop(Val::new(&t));
                        }
                    }
                    for k in 0..n {
                        match (seed as usize + k) % 4 {
                            0 => rcu.defer_drop(Val::new(&t)),
                            1 => rcu.defer_drop_sized(Val::new(&t), 77),
                            2 => cells[k % 4].store(Val::new(&t)),
                            _ => {
                                let v = Val::new(&t);
                                rcu.call(move || drop(v));
                            }
                        }
                    }
                    match seed % 7 {
                        0 => rcu.synchronize(),
                        1 => {
                            let _ = rcu.collect();
                        }
                        2 => {
                            // Exit inside a raw section (ended at exit).
                            rcu.read_lock_raw();
                            rcu.defer_drop(Val::new(&t));
                        }
                        _ => {}
                    }
                })
                .join()
                .unwrap();
                threads.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    {
        let (rcu, cells, stop) = (rcu.clone(), cells.clone(), stop.clone());
        handles.push(thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let g = rcu.read_lock();
                for c in cells.iter() {
                    if let Some(v) = c.load(&g) {
                        v.check();
                    }
                }
                drop(g);
                thread::yield_now();
            }
        }));
    }
    {
        let (rcu, stop) = (rcu.clone(), stop.clone());
        handles.push(thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let p = (i % 4 == 0).then(|| rcu.pressure_start_all());
                match i % 5 {
                    0 => rcu.barrier(),
                    1 => rcu.synchronize(),
                    2 => {
                        let _ = rcu.collect();
                    }
                    3 => {
                        let _ = rcu.run_callbacks(&NodeMask::all(), (i % 13) as u8);
                    }
                    _ => thread::sleep(Duration::from_micros(300)),
                }
                drop(p);
            }
        }));
    }
    istress::storm_then_join(&stop, handles);
    println!(
        "{what}: {} threads, {} values",
        threads.load(Ordering::Relaxed),
        t.next.load(Ordering::Relaxed)
    );
    rcu.barrier();
    assert_eq!(rcu.pending(), 0, "{what}: pending after barrier");
    assert_eq!(
        rcu.pending_bytes(),
        0,
        "{what}: pending_bytes after barrier"
    );
    drop(cells);
    istress::assert_settled(&rcu);
    drop(rcu);
    t.check_all_dropped(what);
}

#[test]
fn thread_churn_memb() {
    thread_churn(Config::new(), "memb");
}

#[test]
fn thread_churn_mb() {
    thread_churn(Config::new().flavor(Flavor::Mb), "mb");
}

#[test]
fn thread_churn_retiring_frees() {
    thread_churn(
        Config::new()
            .retiring_thread_frees(true)
            .lazy_delay(Duration::from_millis(2)),
        "retiring frees",
    );
}

/// QSBR: readers go online/offline, short-lived registered threads retire
/// and exit (online or offline), while grace periods and barriers run.
#[test]
fn qsbr_churn() {
    let rcu = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
    let t = Tracker::new();
    let stop = Arc::new(AtomicBool::new(false));
    let cells = istress::cells(&rcu, &t, 4);
    let mut handles = vec![];
    for r in 0..2u64 {
        let (rcu, cells, stop) = (rcu.clone(), cells.clone(), stop.clone());
        handles.push(thread::spawn(move || {
            let mut th = rcu.register_qsbr_thread();
            let mut i = r;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                {
                    let g = th.read_lock();
                    for c in cells.iter() {
                        if let Some(v) = c.load(&g) {
                            v.check();
                        }
                    }
                }
                match i % 50 {
                    0 => th.offline_while(|| thread::sleep(Duration::from_micros(100))),
                    1 => {
                        let off = th.thread_offline();
                        thread::yield_now();
                        th = off.thread_online();
                    }
                    2 => th.synchronize(),
                    _ => th.quiescent_state(),
                }
            }
        }));
    }
    let churned = Arc::new(AtomicUsize::new(0));
    for s in 0..2u64 {
        let (rcu, cells, stop, t, churned) = (
            rcu.clone(),
            cells.clone(),
            stop.clone(),
            t.clone(),
            churned.clone(),
        );
        handles.push(thread::spawn(move || {
            let mut i = s;
            while !stop.load(Ordering::Relaxed) && !t.full() {
                istress::step(&mut i);
                let seed = i >> 33;
                let (rcu, cells, t) = (rcu.clone(), cells.clone(), t.clone());
                thread::spawn(move || {
                    let mut th = rcu.register_qsbr_thread();
                    for k in 0..(seed % 200) as usize {
                        {
                            let g = th.read_lock();
                            if let Some(v) = cells[k % 4].load(&g) {
                                v.check();
                            }
                        }
                        match k % 3 {
                            0 => rcu.defer_drop(Val::new(&t)),
                            1 => cells[k % 4].store(Val::new(&t)),
                            _ => {
                                let v = Val::new(&t);
                                rcu.call(move || drop(v));
                            }
                        }
                        th.quiescent_state();
                    }
                    match seed % 4 {
                        0 => drop(th),
                        1 => drop(th.thread_offline()),
                        2 => th.offline_while(|| rcu.barrier()),
                        _ => {
                            let off = th.thread_offline();
                            rcu.synchronize();
                            drop(off);
                        }
                    }
                })
                .join()
                .unwrap();
                churned.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    {
        // An unregistered thread: waits and barriers.
        let (rcu, stop, t, cells) = (rcu.clone(), stop.clone(), t.clone(), cells.clone());
        handles.push(thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) && !t.full() {
                i += 1;
                let p = (i % 3 == 0).then(|| rcu.pressure_start_all());
                match i % 6 {
                    0 => rcu.barrier(),
                    1 => rcu.synchronize(),
                    2 => {
                        let c = rcu.start_poll();
                        rcu.cond_synchronize(c);
                    }
                    3 => cells[(i % 4) as usize].store(Val::new(&t)),
                    4 => {
                        let _ = rcu.run_callbacks(&NodeMask::all(), (i % 13) as u8);
                    }
                    _ => rcu.synchronize_expedited(),
                }
                drop(p);
            }
        }));
    }
    istress::storm_then_join(&stop, handles);
    println!(
        "qsbr: {} threads, {} values",
        churned.load(Ordering::Relaxed),
        t.next.load(Ordering::Relaxed)
    );
    istress::assert_settled(&rcu);
    drop(cells);
    istress::assert_settled(&rcu);
    drop(rcu);
    t.check_all_dropped("qsbr");
}

/// Fork from a multi-threaded process while other threads retire; the
/// child uses the domain and checks its queue drains.
fn fork_while_retiring(flavor: Flavor) {
    let rcu = Rcu::new(Config::new().flavor(flavor)).unwrap();
    let t = Tracker::new();
    let stop = Arc::new(AtomicBool::new(false));
    let cell = Arc::new(RcuCell::new_in(&rcu, Some(Val::new(&t))));
    let mut handles = vec![];
    if flavor == Flavor::Qsbr {
        // Online QSBR readers, some of them online (mid-section) at the fork.
        for _ in 0..2 {
            let (rcu, stop, cell) = (rcu.clone(), stop.clone(), cell.clone());
            handles.push(thread::spawn(move || {
                let mut th = rcu.register_qsbr_thread();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    {
                        let g = th.read_lock();
                        if let Some(v) = cell.load(&g) {
                            v.check();
                        }
                    }
                    if i % 2 == 0 {
                        th.quiescent_state();
                    }
                    if i % 500 == 0 {
                        th.offline_while(|| thread::sleep(Duration::from_micros(100)));
                    }
                }
            }));
        }
    }
    for w in 0..3u64 {
        let (rcu, stop, t, cell) = (rcu.clone(), stop.clone(), t.clone(), cell.clone());
        handles.push(thread::spawn(move || {
            let mut i = w;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                match i % 5 {
                    0 => cell.store(Val::new(&t)),
                    1 => rcu.defer_drop(Val::new(&t)),
                    2 => {
                        let v = Val::new(&t);
                        rcu.call(move || drop(v));
                    }
                    3 => {
                        let g = rcu.read_lock();
                        if let Some(v) = cell.load(&g) {
                            v.check();
                        }
                        // Sometimes still inside at the fork.
                        if i % 1000 == 3 {
                            thread::sleep(Duration::from_micros(200));
                        }
                    }
                    _ => {
                        if i % 100 == 4 {
                            let _p = rcu.pressure_start_all();
                            rcu.synchronize();
                        }
                    }
                }
                if i % 256 == 0 {
                    thread::yield_now();
                }
            }
        }));
    }
    let _stop = StopOnDrop(&stop);
    for round in 0..15 {
        thread::sleep(Duration::from_millis(20));
        let (rcu2, t2, cell2) = (rcu.clone(), t.clone(), cell.clone());
        let status = common::forked_child_status(&rcu, move || {
            for k in 0..2000 {
                match k % 3 {
                    0 => rcu2.defer_drop(Val::new(&t2)),
                    1 => cell2.store(Val::new(&t2)),
                    _ => {
                        let v = Val::new(&t2);
                        rcu2.call(move || drop(v));
                    }
                }
            }
            {
                let g = rcu2.read_lock();
                if let Some(v) = cell2.load(&g) {
                    v.check();
                }
            }
            rcu2.synchronize();
            rcu2.barrier();
            let (n, b, bad) = (
                rcu2.pending(),
                rcu2.pending_bytes(),
                t2.bad_drops.load(Ordering::SeqCst),
            );
            if (n, b, bad) != (0, 0, 0) {
                eprintln!("child: pending {n}, pending_bytes {b}, bad drops {bad}");
                let st = rcu2.stats();
                let shards: usize = st.shards.iter().map(|s| s.pending).sum();
                eprintln!(
                    "child: shards hold {shards}; live {}; registered {}",
                    t2.live.load(Ordering::SeqCst),
                    st.registered_readers
                );
                thread::sleep(Duration::from_millis(50));
                rcu2.barrier();
                eprintln!("child: after another barrier: pending {}", rcu2.pending());
                return false;
            }
            true
        });
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "round {round}: child status {status}"
        );
    }
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().unwrap();
    }
    rcu.barrier();
    assert_eq!(rcu.pending(), 0);
    drop(cell);
    istress::assert_settled(&rcu);
    drop(rcu);
    t.check_all_dropped("fork");
}

#[test]
fn fork_while_retiring_memb() {
    fork_while_retiring(Flavor::Memb);
}

#[test]
fn fork_while_retiring_mb() {
    fork_while_retiring(Flavor::Mb);
}

#[test]
fn fork_while_retiring_qsbr() {
    fork_while_retiring(Flavor::Qsbr);
}

#[test]
fn thread_churn_no_membarrier_tiny_stall() {
    thread_churn(
        Config::new()
            .simulate_no_membarrier(true)
            .stall_timeout(Duration::from_millis(1)),
        "no membarrier",
    );
}

/// Threads register, retire (filling pages and drains), and hand their slot
/// back with `unregister_thread` over and over, while others retire, run
/// barriers and flap pressure; every value queued before a thread's own
/// `barrier` has been dropped when it returns.
fn unregister_churn(config: Config, what: &'static str) {
    let rcu = Rcu::new(config).unwrap();
    let t = Tracker::new();
    let stop = Arc::new(AtomicBool::new(false));
    let cell = Arc::new(RcuCell::new_in(&rcu, Some(Val::new(&t))));
    let mut handles = vec![];
    for w in 0..3u64 {
        let (rcu, stop, t, cell) = (rcu.clone(), stop.clone(), t.clone(), cell.clone());
        handles.push(thread::spawn(move || {
            let mut round = w;
            while !stop.load(Ordering::Relaxed) && !t.full() {
                round += 1;
                rcu.register_thread();
                let n = (round * 53 % 2500) as usize;
                let mut mine = Vec::with_capacity(n);
                for k in 0..n {
                    let v = Val::new(&t);
                    mine.push(v.id);
                    match k % 3 {
                        0 => rcu.defer_drop(v),
                        1 => {
                            let g = rcu.read_lock();
                            if let Some(c) = cell.load(&g) {
                                c.check();
                            }
                            rcu.defer_drop_sized(v, 1);
                        }
                        _ => {
                            let old = cell.replace(v).unwrap();
                            mine.pop();
                            mine.push(old.id);
                            old.defer_drop();
                        }
                    }
                }
                assert!(rcu.unregister_thread(), "{what}: unregister refused");
                if round % 2 == 0 {
                    rcu.barrier();
                    for id in mine {
                        assert_eq!(
                            t.states[id].load(Ordering::SeqCst),
                            2,
                            "{what}: {id} not dropped after unregister + barrier"
                        );
                    }
                    // barrier registered us again: hand it back.
                    rcu.unregister_thread();
                }
            }
        }));
    }
    {
        let (rcu, stop) = (rcu.clone(), stop.clone());
        handles.push(thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let p = (i % 2 == 0).then(|| rcu.pressure_start_all());
                match i % 3 {
                    0 => rcu.barrier(),
                    1 => {
                        let _ = rcu.run_callbacks(&NodeMask::all(), (i % 13) as u8);
                    }
                    _ => thread::sleep(Duration::from_micros(300)),
                }
                drop(p);
            }
        }));
    }
    istress::storm_then_join(&stop, handles);
    istress::assert_settled(&rcu);
    println!("{what}: {} values", t.next.load(Ordering::Relaxed));
    drop(cell);
    drop(rcu);
    t.check_all_dropped(what);
}

#[test]
fn unregister_churn_memb() {
    unregister_churn(Config::new(), "memb");
}

#[test]
fn unregister_churn_retiring_frees() {
    unregister_churn(
        Config::new()
            .retiring_thread_frees(true)
            .producer_window(Duration::from_millis(50)),
        "retiring frees",
    );
}

#[test]
fn unregister_churn_mb_lazy() {
    unregister_churn(
        Config::new()
            .flavor(Flavor::Mb)
            .lazy_delay(Duration::from_micros(100)),
        "mb lazy",
    );
}

/// Leaves the bombs' panics out of the output (the hook is process-wide:
/// every other panic still goes to the default hook).
fn silence_bombs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let msg = info.payload().downcast_ref::<&str>().copied().unwrap_or("");
            if !msg.contains("bomb") {
                default(info);
            }
        }));
    });
}

/// A value whose drop panics (after being counted as dropped).
struct Bomb(#[allow(dead_code)] Box<Val>, bool);

impl Drop for Bomb {
    fn drop(&mut self) {
        if self.1 {
            panic!("bomb");
        }
    }
}

impl rcu_reclaim::ReclaimSize for Bomb {
    const DROPS_ANYWHERE: bool = true;
    fn reclaim_size(&self) -> usize {
        64
    }
}

/// Callbacks and deferred drops panic now and then, on workers, in
/// barriers, in run_callbacks and on retiring threads: each panic is
/// reported once, no other callback is lost, every value is dropped once.
fn panic_storm(config: Config, what: &'static str) {
    silence_bombs();
    let hooked = Arc::new(AtomicU64::new(0));
    let h2 = hooked.clone();
    let rcu = Rcu::new(config.on_callback_panic(move |_| {
        h2.fetch_add(1, Ordering::Relaxed);
    }))
    .unwrap();
    let t = Tracker::new();
    let stop = Arc::new(AtomicBool::new(false));
    let bombs = Arc::new(AtomicU64::new(0));
    let mut handles = vec![];
    for w in 0..3u64 {
        let (rcu, stop, t, bombs) = (rcu.clone(), stop.clone(), t.clone(), bombs.clone());
        handles.push(thread::spawn(move || {
            let mut i = w;
            let mut b = 0u64;
            while !stop.load(Ordering::Relaxed) && !t.full() {
                i += 1;
                let boom = i % 97 == 0;
                b += u64::from(boom);
                match i % 4 {
                    0 => rcu.defer_drop(Box::new(Bomb(Val::new(&t), boom))),
                    1 => {
                        let v = Val::new(&t);
                        rcu.call(move || {
                            let _v = v;
                            if boom {
                                panic!("callback bomb");
                            }
                        });
                    }
                    2 => rcu.defer_drop_sized(Box::new(Bomb(Val::new(&t), boom)), 10),
                    _ => {
                        let g = rcu.read_lock();
                        rcu.defer_drop(Box::new(Bomb(Val::new(&t), boom)));
                        drop(g);
                    }
                }
                if i % 500 == 0 {
                    rcu.barrier();
                }
            }
            bombs.fetch_add(b, Ordering::Relaxed);
        }));
    }
    {
        let (rcu, stop) = (rcu.clone(), stop.clone());
        handles.push(thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let _p = (i % 2 == 0).then(|| rcu.pressure_start_all());
                let _ = rcu.run_callbacks(&NodeMask::all(), (i % 13) as u8);
                let _ = rcu.collect();
                thread::sleep(Duration::from_micros(200));
            }
        }));
    }
    istress::storm_then_join(&stop, handles);
    rcu.barrier();
    let s = rcu.stats();
    assert_eq!(s.pending, 0);
    assert_eq!(s.pending_bytes, 0);
    let b = bombs.load(Ordering::Relaxed);
    assert_eq!(s.callback_panics, b, "{what}: panics counted");
    assert_eq!(hooked.load(Ordering::Relaxed), b, "{what}: panics hooked");
    println!(
        "{what}: {} values, {b} bombs",
        t.next.load(Ordering::Relaxed)
    );
    drop(rcu);
    t.check_all_dropped(what);
}

#[test]
fn panic_storm_memb() {
    panic_storm(Config::new(), "memb");
}

#[test]
fn panic_storm_retiring_frees() {
    panic_storm(Config::new().retiring_thread_frees(true), "retiring frees");
}
