//! Independent stress, accounting: `barrier` covers everything retired
//! before it (each thread checks its own values, drains flushed at once
//! included); the byte and object totals (`bytes_freed`, `invoked`,
//! `pending`, `pending_bytes`) come out exact; the polled API never frees
//! under a reader; a page allocator refusing half its requests loses
//! nothing.
//!
//! `RCU_ISTRESS_MS` sets the storm length per test (default 1200 ms).

mod common;
mod istress;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use istress::{Tracker, Val};

use rcu_reclaim::pressure::NodeMask;
use rcu_reclaim::{Config, Flavor, Rcu, RcuCell};

/// `barrier` waits for every callback and deferred drop queued before it,
/// by this thread, while other threads retire, collect, run callbacks and
/// flap pressure (so pages move into other threads' drains and workers).
fn barrier_covers_everything(config: Config, what: &'static str) {
    let Some(rcu) = istress::domain_or_skip(config) else {
        return;
    };
    let t = Tracker::new();
    let stop = Arc::new(AtomicBool::new(false));
    let cell = Arc::new(RcuCell::new_in(&rcu, Some(Val::new(&t))));
    let barriers = Arc::new(AtomicUsize::new(0));
    let mut handles = vec![];
    for w in 0..3u64 {
        let (rcu, stop, t, cell, barriers) = (
            rcu.clone(),
            stop.clone(),
            t.clone(),
            cell.clone(),
            barriers.clone(),
        );
        handles.push(thread::spawn(move || {
            let mut round = w;
            while !stop.load(Ordering::Relaxed) && !t.full() {
                round += 1;
                let first = t.next.load(Ordering::Relaxed);
                let n = 1 + (round * 37 % 700) as usize;
                let queue = {
                    let (rcu, t) = (rcu.clone(), t.clone());
                    move || {
                        let mut mine = Vec::with_capacity(n);
                        for k in 0..n {
                            let v = Val::new(&t);
                            mine.push(v.id);
                            match (k + round as usize) % 5 {
                                0 | 1 => rcu.defer_drop(v),
                                2 => {
                                    rcu.call(move || drop(v));
                                }
                                3 => rcu.defer_drop_sized(v, 10),
                                _ => {
                                    if let Err(v) = rcu.try_defer_drop(v) {
                                        rcu.defer_drop(v);
                                    }
                                }
                            }
                        }
                        mine
                    }
                };
                // Every fourth round queues from a thread that exits at once
                // (its partly filled page is orphaned).
                let mine = if round % 4 == 0 {
                    thread::spawn(queue).join().unwrap()
                } else {
                    queue()
                };
                if round % 3 == 0 {
                    let _ = rcu.collect();
                }
                rcu.barrier();
                barriers.fetch_add(1, Ordering::Relaxed);
                for id in mine {
                    let s = t.states[id].load(Ordering::SeqCst);
                    assert_eq!(
                        s, 2,
                        "{what}: value {id} (of {n} queued from {first}) not dropped after \
                         barrier (state {s})"
                    );
                }
                if round % 7 == 0 {
                    cell.store(Val::new(&t));
                }
            }
        }));
    }
    {
        let (rcu, stop, t) = (rcu.clone(), stop.clone(), t.clone());
        handles.push(thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) && !t.full() {
                i += 1;
                let p = (i % 2 == 0).then(|| rcu.pressure_start_all());
                for _ in 0..20 {
                    rcu.defer_drop(Val::new(&t));
                }
                match i % 4 {
                    0 => {
                        let _ = rcu.collect();
                    }
                    1 => {
                        let _ = rcu.run_callbacks(&NodeMask::all(), (i % 13) as u8);
                    }
                    2 => {
                        let _ = rcu.run_callbacks_for(&NodeMask::all(), 0, 5);
                    }
                    _ => thread::sleep(Duration::from_micros(200)),
                }
                drop(p);
            }
        }));
    }
    istress::storm_then_join(&stop, handles);
    println!(
        "{what}: {} barriers, {} values",
        barriers.load(Ordering::Relaxed),
        t.next.load(Ordering::Relaxed)
    );
    istress::assert_settled(&rcu);
    drop(cell);
    drop(rcu);
    t.check_all_dropped(what);
}

#[test]
fn barrier_covers_everything_memb() {
    barrier_covers_everything(Config::new(), "memb");
}

#[test]
fn barrier_covers_everything_retiring_frees() {
    barrier_covers_everything(
        Config::new()
            .retiring_thread_frees(true)
            .lazy_delay(Duration::from_millis(1)),
        "retiring frees",
    );
}

#[test]
fn barrier_covers_everything_qsbr() {
    barrier_covers_everything(Config::new().flavor(Flavor::Qsbr), "qsbr");
}

/// Exact accounting: every byte booked by `defer_drop_sized`/`call_sized`/
/// `defer_drop` from several threads (with pressure, run_callbacks and
/// collect racing) shows up exactly once in `bytes_freed`, and every entry
/// once in `invoked`.
fn exact_accounting(config: Config, what: &'static str) {
    let Some(rcu) = istress::domain_or_skip(config) else {
        return;
    };
    let t = Tracker::new();
    let stop = Arc::new(AtomicBool::new(false));
    let booked = Arc::new(AtomicU64::new(0));
    let entries = Arc::new(AtomicU64::new(0));
    let before = rcu.stats();
    let mut handles = vec![];
    for w in 0..3u64 {
        let (rcu, stop, t, booked, entries) = (
            rcu.clone(),
            stop.clone(),
            t.clone(),
            booked.clone(),
            entries.clone(),
        );
        handles.push(thread::spawn(move || {
            let mut i = w;
            let (mut b, mut e) = (0u64, 0u64);
            while !stop.load(Ordering::Relaxed) && !t.full() {
                i += 1;
                let size = (i * 7919 % 5000) as usize;
                match i % 6 {
                    0 => rcu.defer_drop_sized(Val::new(&t), size),
                    1 => {
                        let v = Val::new(&t);
                        rcu.call_sized(move || drop(v), size);
                    }
                    2 => {
                        rcu.defer_drop(Val::new(&t));
                        b += std::mem::size_of::<Val>() as u64;
                        e += 1;
                        continue;
                    }
                    3 => {
                        if let Err(v) = rcu.try_defer_drop_sized(Val::new(&t), size) {
                            drop(v);
                            continue;
                        }
                    }
                    4 => {
                        // Inside a section: a full page's fallback cannot wait.
                        let _g = rcu.read_lock();
                        rcu.defer_drop_sized(Val::new(&t), size);
                    }
                    _ => {
                        let v = Val::new(&t);
                        rcu.call_hurry(move || drop(v));
                        e += 1;
                        continue;
                    }
                }
                b += size as u64;
                e += 1;
                if i % 1000 == 0 {
                    let _ = rcu.collect();
                }
            }
            booked.fetch_add(b, Ordering::Relaxed);
            entries.fetch_add(e, Ordering::Relaxed);
        }));
    }
    {
        let (rcu, stop) = (rcu.clone(), stop.clone());
        handles.push(thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let p = rcu.pressure_start_all();
                thread::sleep(Duration::from_micros(400));
                let _ = rcu.run_callbacks(&NodeMask::all(), (i % 13) as u8);
                drop(p);
                thread::sleep(Duration::from_micros(400));
                if i % 10 == 0 {
                    rcu.barrier();
                }
            }
        }));
    }
    istress::storm_then_join(&stop, handles);
    let after = istress::assert_exact_totals(
        &rcu,
        &before,
        booked.load(Ordering::Relaxed),
        entries.load(Ordering::Relaxed),
        what,
    );
    println!(
        "{what}: {} entries, {} bytes, {} fallback syncs",
        entries.load(Ordering::Relaxed),
        booked.load(Ordering::Relaxed),
        after.fallback_syncs
    );
    drop(rcu);
    t.check_all_dropped(what);
}

#[test]
fn exact_accounting_memb() {
    exact_accounting(Config::new(), "memb");
}

#[test]
fn exact_accounting_retiring_frees() {
    exact_accounting(Config::new().retiring_thread_frees(true), "retiring frees");
}

#[test]
fn exact_accounting_tiny_pages() {
    exact_accounting(
        Config::new()
            .qhimark(4)
            .qlowmark(1)
            .qovld(8)
            .lazy_batch(1)
            .pace_bytes(1),
        "tiny marks",
    );
}

/// Poison test for the polled API on every flavor: a writer replaces values
/// and frees the old one after `Retired::is_safe`, `cond_synchronize` on its
/// cookie, or `poll` of a `get_state` cookie taken after the unlink; readers
/// (guards, raw sections, QSBR registrations) must never see a freed value.
fn polled_poison(flavor: Flavor) {
    let rcu = Rcu::new(Config::new().flavor(flavor)).unwrap();
    let t = Tracker::new();
    let stop = Arc::new(AtomicBool::new(false));
    let cells: Arc<Vec<RcuCell<Val>>> = Arc::new(
        (0..3)
            .map(|_| RcuCell::new_in(&rcu, Some(Val::new(&t))))
            .collect(),
    );
    let mut handles = vec![];
    for r in 0..2u64 {
        let (rcu, cells, stop) = (rcu.clone(), cells.clone(), stop.clone());
        handles.push(thread::spawn(move || {
            let mut n = r;
            if flavor == Flavor::Qsbr {
                let mut th = rcu.register_qsbr_thread();
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    {
                        let g = th.read_lock();
                        for c in cells.iter() {
                            if let Some(v) = c.load(&g) {
                                v.check();
                                std::hint::spin_loop();
                                v.check();
                            }
                        }
                    }
                    if n % 3 == 0 {
                        th.quiescent_state();
                    }
                    if n % 1000 == 0 {
                        th.offline_while(thread::yield_now);
                    }
                }
            } else {
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    if n % 5 == 0 {
                        rcu.read_lock_raw();
                        let g = rcu.read_lock();
                        let v = cells[(n % 3) as usize].load(&g).map(|v| v as *const Val);
                        drop(g);
                        // Still inside the raw section.
                        if let Some(v) = v {
                            // SAFETY: the raw section protects it.
                            unsafe { (*v).check() };
                        }
                        assert!(rcu.read_unlock_raw());
                    } else {
                        let g = rcu.read_lock();
                        for c in cells.iter() {
                            if let Some(v) = c.load(&g) {
                                v.check();
                                std::hint::spin_loop();
                                v.check();
                            }
                        }
                    }
                    if n % 256 == 0 {
                        thread::yield_now();
                    }
                }
            }
        }));
    }
    for w in 0..2u64 {
        let (rcu, cells, stop, t) = (rcu.clone(), cells.clone(), stop.clone(), t.clone());
        handles.push(thread::spawn(move || {
            let mut i = w;
            while !stop.load(Ordering::Relaxed) && !t.full() {
                i += 1;
                let old = cells[(i % 3) as usize].replace(Val::new(&t)).unwrap();
                let freed = match i % 4 {
                    0 => {
                        // The unlink's cookie starts nothing: ask for a grace period.
                        let _ = rcu.start_poll();
                        while !old.is_safe() {
                            thread::yield_now();
                        }
                        old.try_into_box()
                            .unwrap_or_else(|_| panic!("is_safe said so"))
                    }
                    1 => {
                        rcu.cond_synchronize(old.cookie());
                        old.try_into_box()
                            .unwrap_or_else(|_| panic!("cond_synchronize waited"))
                    }
                    2 => {
                        let c = rcu.get_state();
                        let mut spins = 0u64;
                        while !rcu.poll(&c) {
                            spins += 1;
                            if spins % 64 == 0 {
                                // get_state starts nothing: ask for one.
                                let _ = rcu.start_poll();
                            }
                            thread::yield_now();
                        }
                        // SAFETY: a grace period began after the unlink and ended.
                        unsafe { old.into_box_unchecked() }
                    }
                    _ => {
                        let c = rcu.start_poll();
                        rcu.cond_synchronize(c);
                        // SAFETY: as above.
                        unsafe { old.into_box_unchecked() }
                    }
                };
                drop(freed); // poisons
            }
        }));
    }
    istress::storm_then_join(&stop, handles);
    println!("{flavor}: {} values", t.next.load(Ordering::Relaxed));
    drop(cells);
    rcu.barrier();
    drop(rcu);
    t.check_all_dropped("polled");
}

#[test]
fn polled_poison_memb() {
    polled_poison(Flavor::Memb);
}

#[test]
fn polled_poison_mb() {
    polled_poison(Flavor::Mb);
}

#[test]
fn polled_poison_qsbr() {
    polled_poison(Flavor::Qsbr);
}

/// A page allocator that refuses about half the requests.
struct FlakyPages {
    n: AtomicU64,
}

// SAFETY: every page it hands out comes from `SystemPageAllocator`.
unsafe impl rcu_reclaim::pages::PageAllocator for FlakyPages {
    fn allocate(&self, layout: std::alloc::Layout) -> Option<std::ptr::NonNull<u8>> {
        let n = self.n.fetch_add(1, Ordering::Relaxed);
        if (n.wrapping_mul(2654435761) >> 7) % 2 == 0 {
            return None;
        }
        rcu_reclaim::pages::SystemPageAllocator.allocate(layout)
    }
    unsafe fn deallocate(&self, ptr: std::ptr::NonNull<u8>, layout: std::alloc::Layout) {
        // SAFETY: forwarded from our caller; the page came from the system allocator.
        unsafe { rcu_reclaim::pages::SystemPageAllocator.deallocate(ptr, layout) }
    }
}

/// With page allocation failing half the time, every fallback (waiting
/// in place, a callback inside a section, `try_defer_drop` handing back)
/// keeps exact counts, `barrier` still covers everything, and readers never
/// see a freed value.
fn flaky_pages(config: Config, what: &'static str) {
    let pages = Arc::new(FlakyPages {
        n: AtomicU64::new(0),
    });
    let rcu = Rcu::new(config.page_allocator(pages)).unwrap();
    let t = Tracker::new();
    let stop = Arc::new(AtomicBool::new(false));
    let booked = Arc::new(AtomicU64::new(0));
    let entries = Arc::new(AtomicU64::new(0));
    let cells: Arc<Vec<RcuCell<Val>>> = Arc::new(
        (0..3)
            .map(|_| RcuCell::new_in(&rcu, Some(Val::new(&t))))
            .collect(),
    );
    let before = rcu.stats();
    let mut handles = vec![];
    for w in 0..3u64 {
        let (rcu, stop, t, booked, entries, cells) = (
            rcu.clone(),
            stop.clone(),
            t.clone(),
            booked.clone(),
            entries.clone(),
            cells.clone(),
        );
        handles.push(thread::spawn(move || {
            let mut i = w;
            let (mut b, mut e) = (0u64, 0u64);
            let mut mine = Vec::new();
            while !stop.load(Ordering::Relaxed) && !t.full() {
                i += 1;
                let size = (i * 131 % 2000) as usize;
                let v = Val::new(&t);
                mine.push(v.id);
                match i % 6 {
                    0 => rcu.defer_drop_sized(v, size),
                    1 => {
                        let g = rcu.read_lock();
                        if let Some(c) = cells[(i % 3) as usize].load(&g) {
                            c.check();
                        }
                        rcu.defer_drop_sized(v, size);
                    }
                    2 => match rcu.try_defer_drop_sized(v, size) {
                        Ok(()) => {}
                        Err(v) => {
                            drop(v);
                            continue;
                        }
                    },
                    3 => {
                        rcu.call_sized(move || drop(v), size);
                    }
                    4 => {
                        let old = cells[(i % 3) as usize].replace(v).unwrap();
                        mine.pop();
                        mine.push(old.id);
                        old.defer_drop_sized(size);
                    }
                    _ => {
                        if rcu.without_page_allocation_probe() {
                            b += 8;
                            e += 1;
                        }
                        rcu.defer_drop_sized(v, size);
                    }
                }
                b += size as u64;
                e += 1;
                if i % 200 == 0 {
                    rcu.barrier();
                    for id in mine.drain(..) {
                        assert_eq!(t.states[id].load(Ordering::SeqCst), 2, "{what}: {id}");
                    }
                }
            }
            booked.fetch_add(b, Ordering::Relaxed);
            entries.fetch_add(e, Ordering::Relaxed);
        }));
    }
    {
        let (rcu, cells, stop) = (rcu.clone(), cells.clone(), stop.clone());
        handles.push(thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let g = rcu.read_lock();
                for c in cells.iter() {
                    if let Some(v) = c.load(&g) {
                        v.check();
                    }
                }
                drop(g);
                if i % 100 == 0 {
                    let _p = rcu.pressure_start_all();
                    let _ = rcu.run_callbacks(&NodeMask::all(), (i % 13) as u8);
                }
            }
        }));
    }
    istress::storm_then_join(&stop, handles);
    let after = istress::assert_exact_totals(
        &rcu,
        &before,
        booked.load(Ordering::Relaxed),
        entries.load(Ordering::Relaxed),
        what,
    );
    println!(
        "{what}: {} entries, {} fallback syncs",
        entries.load(Ordering::Relaxed),
        after.fallback_syncs
    );
    drop(cells);
    drop(rcu);
    t.check_all_dropped(what);
}

trait Probe {
    fn without_page_allocation_probe(&self) -> bool;
}

impl Probe for Rcu {
    fn without_page_allocation_probe(&self) -> bool {
        rcu_reclaim::pages::without_page_allocation(|| self.try_defer_drop(Box::new(1u64)).is_ok())
    }
}

#[test]
fn flaky_pages_memb() {
    flaky_pages(Config::new(), "memb");
}

#[test]
fn flaky_pages_retiring_frees() {
    flaky_pages(Config::new().retiring_thread_frees(true), "retiring frees");
}

#[test]
fn barrier_covers_everything_zero_knobs() {
    barrier_covers_everything(
        Config::new()
            .lazy_delay(Duration::ZERO)
            .producer_window(Duration::ZERO)
            .lazy_batch(1)
            .qhimark(1)
            .qlowmark(0)
            .blimit(1)
            .retiring_thread_frees(true),
        "zero knobs",
    );
}

#[test]
fn barrier_covers_everything_drains_flushed_at_once() {
    barrier_covers_everything(
        Config::new()
            .producer_window(Duration::ZERO)
            .lazy_delay(Duration::from_micros(200)),
        "drains flushed at once",
    );
}
