//! `prepare_fork` + `fork()` while other threads are mid-storm: writers
//! retiring through `RcuCell::store`, `defer_drop` and `RcuCache::insert`,
//! readers inside sections, a thread flapping pressure (directly and
//! through a `SyntheticSource` feeding a `PressureMonitor`). The child uses
//! every API under a watchdog (`alarm`); the parent's storm finishes with
//! every value dropped exactly once.

mod common;
use common::StopOnDrop;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rcu_reclaim::sources::{Level, PressureMonitor, SyntheticSource};
use rcu_reclaim::{Config, Rcu, RcuCache, RcuCell};

const MAGIC: u64 = 0x5afe_c0de_5afe_c0de;
const POISON: u64 = 0xdead_dead_dead_dead;
const IDS: usize = 8 << 20;

/// Counts every drop by id; a second drop or a drop of a poisoned value
/// is recorded.
struct Book {
    made: AtomicU64,
    dropped: Vec<AtomicU8>,
    twice: AtomicU64,
    bad: AtomicU64,
}

struct Val {
    magic: u64,
    id: usize,
    book: Arc<Book>,
}
rcu_reclaim::reclaim_size!(Val {});

impl Val {
    fn new(book: &Arc<Book>) -> Val {
        let id = book.made.fetch_add(1, Ordering::Relaxed) as usize;
        assert!(id < IDS, "too many values");
        Val {
            magic: MAGIC,
            id,
            book: book.clone(),
        }
    }
    fn ok(&self) -> bool {
        std::hint::black_box(self.magic) == MAGIC
    }
}

impl Drop for Val {
    fn drop(&mut self) {
        if !self.ok() {
            self.book.bad.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.magic = POISON;
        if self.book.dropped[self.id].fetch_add(1, Ordering::Relaxed) != 0 {
            self.book.twice.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn wait_until(deadline: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    while Instant::now() < end {
        if f() {
            return true;
        }
        thread::sleep(Duration::from_millis(1));
    }
    f()
}

/// The child's checks: every API of the domain, a cache and a monitor.
fn child_checks(
    rcu: &Rcu,
    cell: &RcuCell<Val>,
    cache: &RcuCache<u64, Val>,
    book: &Arc<Book>,
) -> u8 {
    // A value read under another thread's section before the fork is not
    // used: only what this thread reads now.
    {
        let g = rcu.read_lock();
        if let Some(v) = cell.load(&g) {
            if !v.ok() {
                return 2;
            }
        }
        for k in 0..64u64 {
            if let Some(v) = cache.get(&k, &g) {
                if !v.ok() {
                    return 3;
                }
            }
        }
    }
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    rcu.call(move || {
        r.fetch_add(1, Ordering::SeqCst);
    });
    rcu.defer_drop(Box::new(Val::new(book)));
    cell.store(Box::new(Val::new(book)));
    rcu.synchronize();
    rcu.barrier();
    if ran.load(Ordering::SeqCst) != 1 {
        return 4;
    }
    // A new cache on the domain, with its own source.
    let (tx, src) = SyntheticSource::new();
    let fresh: RcuCache<u64, Vec<u8>> = RcuCache::builder()
        .rcu(rcu)
        .max_bytes(1 << 20)
        .pressure_source(Box::new(src))
        .build();
    for k in 0..64u64 {
        fresh.insert(k, vec![k as u8; 1000]);
    }
    {
        let g = rcu.read_lock();
        if fresh.get(&7, &g).map(|v| v[0]) != Some(7) {
            return 5;
        }
    }
    tx.send(Level::Critical).unwrap();
    if !wait_until(Duration::from_secs(5), || fresh.len() <= 32) {
        return 6;
    }
    drop(fresh);
    // A new monitor on the domain.
    let (tx, src) = SyntheticSource::new();
    let m = PressureMonitor::start(rcu, Box::new(src), Duration::from_millis(5), None);
    tx.send(Level::Critical).unwrap();
    if !wait_until(Duration::from_secs(5), || m.stats().events == 1) {
        return 7;
    }
    drop(m);
    rcu.barrier();
    if rcu.pending() != 0 {
        return 8;
    }
    0
}

#[test]
fn a_child_forked_mid_storm_uses_every_api_and_the_parent_drops_everything_once() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let book = Arc::new(Book {
        made: AtomicU64::new(0),
        dropped: (0..IDS).map(|_| AtomicU8::new(0)).collect(),
        twice: AtomicU64::new(0),
        bad: AtomicU64::new(0),
    });
    let cell = Arc::new(RcuCell::new_in(&rcu, Some(Box::new(Val::new(&book)))));
    let (ptx, psrc) = SyntheticSource::new();
    let cache: Arc<RcuCache<u64, Val>> = Arc::new(
        RcuCache::builder()
            .rcu(&rcu)
            .max_bytes(64 * 1024)
            .pressure_source(Box::new(psrc))
            .build(),
    );
    let (mtx, msrc) = SyntheticSource::new();
    let monitor = PressureMonitor::start(&rcu, Box::new(msrc), Duration::from_millis(2), None);
    let stop = Arc::new(AtomicBool::new(false));
    let bad_reads = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    // Writers.
    for w in 0..3u64 {
        let (rcu, cell, cache, book, stop) = (
            rcu.clone(),
            cell.clone(),
            cache.clone(),
            book.clone(),
            stop.clone(),
        );
        threads.push(thread::spawn(move || {
            let mut k = w;
            while !stop.load(Ordering::Relaxed) {
                // Keep ids for the children (and the counters bounded).
                if book.made.load(Ordering::Relaxed) as usize > IDS - 4096 {
                    thread::sleep(Duration::from_millis(1));
                    continue;
                }
                match k % 3 {
                    0 => cell.store(Box::new(Val::new(&book))),
                    1 => rcu.defer_drop(Box::new(Val::new(&book))),
                    _ => {
                        cache.insert(k % 64, Val::new(&book));
                    }
                }
                k += 1;
                if k % 256 == 0 {
                    thread::yield_now();
                }
            }
        }));
    }
    // Readers.
    for _ in 0..2 {
        let (rcu, cell, cache, stop, bad) = (
            rcu.clone(),
            cell.clone(),
            cache.clone(),
            stop.clone(),
            bad_reads.clone(),
        );
        threads.push(thread::spawn(move || {
            let mut k = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let g = rcu.read_lock();
                for _ in 0..16 {
                    if let Some(v) = cell.load(&g) {
                        if !v.ok() {
                            bad.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    if let Some(v) = cache.get(&(k % 64), &g) {
                        if !v.ok() {
                            bad.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    k += 1;
                }
            }
        }));
    }
    // Pressure flapper: direct signals and events to both sources.
    {
        let (rcu, stop) = (rcu.clone(), stop.clone());
        threads.push(thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let g = rcu.pressure_start_all();
                let level = if i % 4 == 0 {
                    Level::Critical
                } else {
                    Level::Medium
                };
                let _ = mtx.send(level);
                let _ = ptx.send(level);
                thread::sleep(Duration::from_micros(300));
                drop(g);
                thread::sleep(Duration::from_micros(200));
                i += 1;
            }
        }));
    }
    let _stop = StopOnDrop(&stop);
    let deadline = Instant::now() + Duration::from_millis(1500);
    let mut forks = 0;
    let mut failure = None;
    while Instant::now() < deadline && failure.is_none() {
        thread::sleep(Duration::from_millis(5));
        forks += 1;
        let guard = rcu.prepare_fork();
        // SAFETY: the child uses this crate and `_exit`s, under an alarm;
        // the domain was prepared for the fork.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            // SAFETY: a watchdog: a hang ends the child with SIGALRM.
            unsafe { libc::alarm(10) };
            guard.child();
            let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                child_checks(&rcu, &cell, &cache, &book)
            }))
            .unwrap_or(100);
            // SAFETY: ends the child without running the parent's destructors.
            unsafe { libc::_exit(i32::from(code)) };
        }
        guard.parent();
        let start = Instant::now();
        let mut status = 0;
        loop {
            // SAFETY: polls our own child.
            if unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } == pid {
                if libc::WIFSIGNALED(status) {
                    failure = Some(format!(
                        "fork {forks}: child killed by signal {}",
                        libc::WTERMSIG(status)
                    ));
                } else if libc::WEXITSTATUS(status) != 0 {
                    failure = Some(format!(
                        "fork {forks}: child failed check {}",
                        libc::WEXITSTATUS(status)
                    ));
                }
                break;
            }
            if start.elapsed() > Duration::from_secs(15) {
                // SAFETY: kills and reaps our own child.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                    libc::waitpid(pid, &mut status, 0);
                }
                failure = Some(format!("fork {forks}: the child hung past its alarm"));
                break;
            }
            thread::sleep(Duration::from_millis(1));
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    drop(monitor);
    assert_eq!(failure, None);
    // Drop everything still held, then wait for the domain to free it all.
    drop(cache);
    drop(Arc::try_unwrap(cell).ok().expect("the cell is shared"));
    let done = wait_until(Duration::from_secs(10), || {
        rcu.barrier();
        rcu.pending() == 0
    });
    assert!(done, "pending {} after the storm", rcu.pending());
    let made = book.made.load(Ordering::Relaxed) as usize;
    let dropped = book.dropped[..made]
        .iter()
        .filter(|d| d.load(Ordering::Relaxed) == 1)
        .count();
    assert_eq!(book.twice.load(Ordering::Relaxed), 0, "dropped twice");
    assert_eq!(book.bad.load(Ordering::Relaxed), 0, "poisoned drop");
    assert_eq!(bad_reads.load(Ordering::Relaxed), 0, "poisoned read");
    assert_eq!(
        dropped,
        made,
        "{} of {made} values never dropped",
        made - dropped
    );
    println!("{forks} forks, {made} values");
}
