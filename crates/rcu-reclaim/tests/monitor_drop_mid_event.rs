//! Dropping a `PressureMonitor`, or a cache that runs one, while its source
//! fires events at about 1 kHz and writers insert; dropping every handle of
//! a domain (and the caches, maps and cells on it) while a monitor on it
//! is mid-event. Every wait has a deadline; every value is dropped once.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rcu_reclaim::reclaim::{MemoryBudget, Reclaimer};
use rcu_reclaim::sources::{Level, PressureMonitor, SyntheticSource};
use rcu_reclaim::{Config, Rcu, RcuCache, RcuCell, RcuHashMap};

use common::{within, StopOnDrop};

const MAGIC: u64 = 0x0ddb_a110_ddba_1100;

#[derive(Default)]
struct Book {
    made: AtomicU64,
    dropped: AtomicU64,
    bad: AtomicU64,
}

struct Val {
    magic: u64,
    book: Arc<Book>,
    _pad: Vec<u8>,
}
rcu_reclaim::reclaim_size!(Val { _pad });

impl Val {
    fn new(book: &Arc<Book>) -> Val {
        book.made.fetch_add(1, Ordering::Relaxed);
        Val {
            magic: MAGIC,
            book: book.clone(),
            _pad: vec![1; 256],
        }
    }
}

impl Drop for Val {
    fn drop(&mut self) {
        if std::hint::black_box(self.magic) != MAGIC {
            self.book.bad.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.magic = 0;
        self.book.dropped.fetch_add(1, Ordering::Relaxed);
    }
}

/// Fires `Medium`/`Critical` at about 1 kHz until `stop`.
fn firer(tx: Sender<Level>, stop: Arc<AtomicBool>) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let l = if i % 3 == 0 {
                Level::Critical
            } else {
                Level::Medium
            };
            if tx.send(l).is_err() {
                return;
            }
            i += 1;
            thread::sleep(Duration::from_millis(1));
        }
    })
}

fn settle(rcu: &Rcu, book: &Book, what: &str) {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        rcu.barrier();
        let (m, d) = (
            book.made.load(Ordering::Relaxed),
            book.dropped.load(Ordering::Relaxed),
        );
        if m == d {
            break;
        }
        assert!(Instant::now() < end, "{what}: {d} of {m} dropped");
        thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(book.bad.load(Ordering::Relaxed), 0, "{what}: poisoned drop");
    assert_eq!(rcu.pending(), 0, "{what}: pending");
}

#[test]
fn monitors_and_caches_dropped_while_events_fire_and_writers_insert() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let book = Arc::new(Book::default());
    let end = Instant::now() + Duration::from_millis(1200);
    let mut rounds = 0;
    while Instant::now() < end {
        rounds += 1;
        let stop = Arc::new(AtomicBool::new(false));
        // A cache with its own source, and a standalone monitor shrinking
        // it through a shared budget's reclaimer.
        let reclaimer = Arc::new(Reclaimer::new(&rcu));
        let budget = Arc::new(MemoryBudget::new(1 << 30, reclaimer.clone(), || 0));
        let (ctx, csrc) = SyntheticSource::new();
        let cache: Arc<RcuCache<u64, Val>> = Arc::new(
            RcuCache::builder()
                .rcu(&rcu)
                .max_bytes(256 << 10)
                .pressure_source(Box::new(csrc))
                .build(),
        );
        let shared: Arc<RcuCache<u64, Val>> = Arc::new(
            RcuCache::builder()
                .max_bytes(256 << 10)
                .budget(&budget)
                .build(),
        );
        // The system's own source (PSI, cgroup or RSS), not fired here.
        let auto: Arc<RcuCache<u64, Val>> = Arc::new(
            RcuCache::builder()
                .rcu(&rcu)
                .max_bytes(64 << 10)
                .auto_pressure()
                .build(),
        );
        let (mtx, msrc) = SyntheticSource::new();
        let monitor = PressureMonitor::start(
            &rcu,
            Box::new(msrc),
            Duration::from_millis(1),
            Some(budget.clone()),
        );
        let mut threads = vec![firer(ctx, stop.clone()), firer(mtx, stop.clone())];
        for w in 0..2u64 {
            let (cache, shared, auto, book, stop) = (
                cache.clone(),
                shared.clone(),
                auto.clone(),
                book.clone(),
                stop.clone(),
            );
            threads.push(thread::spawn(move || {
                let mut k = w;
                while !stop.load(Ordering::Relaxed) {
                    cache.insert(k % 512, Val::new(&book));
                    shared.insert(k % 512, Val::new(&book));
                    auto.insert(k % 512, Val::new(&book));
                    k += 2;
                }
            }));
        }
        let _stop = StopOnDrop(&stop);
        thread::sleep(Duration::from_millis(30));
        // Drop the monitor, then the caches, while events and inserts go on.
        within(Duration::from_secs(5), "dropping the monitor", move || {
            drop(monitor)
        });
        let c = cache;
        within(
            Duration::from_secs(5),
            "dropping a monitored cache",
            move || drop(c),
        );
        let a = auto;
        within(
            Duration::from_secs(5),
            "dropping an auto_pressure cache",
            move || drop(a),
        );
        let s = shared;
        within(
            Duration::from_secs(5),
            "dropping a budgeted cache",
            move || drop(s),
        );
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            t.join().unwrap();
        }
        drop(budget);
        drop(reclaimer);
        settle(&rcu, &book, "round");
        assert_eq!(rcu.pressure(), 0, "a dropped monitor left its signal");
    }
    println!(
        "{rounds} rounds, {} values",
        book.made.load(Ordering::Relaxed)
    );
}

#[test]
fn a_domain_dropped_while_its_monitor_is_mid_event() {
    let book = Arc::new(Book::default());
    let end = Instant::now() + Duration::from_millis(1200);
    let mut rounds = 0;
    while Instant::now() < end {
        rounds += 1;
        let rcu = Rcu::new(Config::new()).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let reclaimer = Arc::new(Reclaimer::new(&rcu));
        let cache: Arc<RcuCache<u64, Val>> = Arc::new(
            RcuCache::builder()
                .max_bytes(128 << 10)
                .reclaimer(&reclaimer)
                .build(),
        );
        let map: Arc<RcuHashMap<u64, Val>> = Arc::new(RcuHashMap::new_in(&rcu));
        let cell = Arc::new(RcuCell::new_in(&rcu, Some(Box::new(Val::new(&book)))));
        let (mtx, msrc) = SyntheticSource::new();
        let monitor = PressureMonitor::start(&rcu, Box::new(msrc), Duration::from_millis(1), None);
        let (ctx, csrc) = SyntheticSource::new();
        let own: RcuCache<u64, Val> = RcuCache::builder()
            .rcu(&rcu)
            .max_bytes(128 << 10)
            .pressure_source(Box::new(csrc))
            .build();
        let fire = Arc::new(AtomicBool::new(false));
        let firers = vec![firer(mtx, fire.clone()), firer(ctx, fire.clone())];
        let mut threads = Vec::new();
        {
            let (rcu, cache, map, cell, book, stop) = (
                rcu.clone(),
                cache.clone(),
                map.clone(),
                cell.clone(),
                book.clone(),
                stop.clone(),
            );
            threads.push(thread::spawn(move || {
                let mut k = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    cache.insert(k % 256, Val::new(&book));
                    map.insert(k % 256, Val::new(&book));
                    cell.store(Box::new(Val::new(&book)));
                    rcu.defer_drop(Box::new(Val::new(&book)));
                    k += 1;
                }
            }));
        }
        let _stop = StopOnDrop(&stop);
        for k in 0..64 {
            own.insert(k, Val::new(&book));
        }
        thread::sleep(Duration::from_millis(20));
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            t.join().unwrap();
        }
        // Everything but the monitor goes while events keep coming; the
        // monitor holds the last handle, and its drop runs what is queued.
        within(
            Duration::from_secs(5),
            "dropping the domain's handles",
            move || drop((cache, map, cell, own, reclaimer, rcu)),
        );
        within(
            Duration::from_secs(5),
            "dropping the last monitor",
            move || drop(monitor),
        );
        fire.store(true, Ordering::Relaxed);
        for t in firers {
            t.join().unwrap();
        }
        let (m, d) = (
            book.made.load(Ordering::Relaxed),
            book.dropped.load(Ordering::Relaxed),
        );
        assert_eq!(m, d, "round {rounds}: {d} of {m} dropped with the domain");
        assert_eq!(book.bad.load(Ordering::Relaxed), 0, "poisoned drop");
    }
    let (m, d) = (
        book.made.load(Ordering::Relaxed),
        book.dropped.load(Ordering::Relaxed),
    );
    assert_eq!(m, d, "{d} of {m} dropped");
    println!("{rounds} rounds, {m} values");
}
