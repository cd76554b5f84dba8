//! Configuration snapshots side by side: `RcuCell` against arc-swap's
//! `ArcSwap`, a crossbeam-epoch `Atomic` and a `RwLock<Arc<_>>`. Reader
//! threads load the current snapshot and check it while one writer
//! publishes new ones as fast as it can (the worst case for memory).
//! Each scheme runs once per round, in a rotating order; the table gives
//! reads/s, stores/s, a sampled read's p50/p99, and the garbage: snapshots
//! replaced but not yet freed (peak and mean of a sample every
//! millisecond), in objects and in bytes.
//!
//! ```text
//! cargo run --release -p rcu-reclaim --example snapshot_compare -- [secs] [rounds] [readers]
//! ```
//!
//! Defaults: 2 s per scheme and round, 3 rounds, one reader per CPU but
//! one (at least one). Each snapshot is 64 `u64`s (512 bytes of payload);
//! a reader that ever sees a freed or torn one panics.
//!
//! `rcu-reclaim` is what the README shows: `store` and nothing else;
//! `rcu-reclaim+collect` also calls `Rcu::collect` after each store, as
//! the README asks of a thread that updates in a loop.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use rcu_reclaim::{Rcu, RcuCell};

/// Payload words per snapshot.
const WORDS: usize = 64;
/// Snapshots alive (published or waiting to be freed).
static LIVE: AtomicUsize = AtomicUsize::new(0);
/// What a dropped snapshot's words are overwritten with.
const POISON: u64 = 0xDEAD_BEEF_DEAD_BEEF;

/// One configuration version: every word holds the version.
struct Snapshot {
    words: Vec<u64>,
}

impl Snapshot {
    fn new(version: u64) -> Snapshot {
        LIVE.fetch_add(1, Ordering::Relaxed);
        Snapshot {
            words: vec![version; WORDS],
        }
    }

    /// Reads the snapshot the way a reader uses it; panics if torn or freed.
    fn check(&self, i: usize) -> u64 {
        let first = self.words[0];
        let other = self.words[i % WORDS];
        assert!(
            first == other && first != POISON,
            "a reader saw a freed or torn snapshot"
        );
        first
    }
}

// Its words' buffer is booked; its `Drop` takes no lock, so the retiring
// thread may free it (as crossbeam-epoch's and arc-swap's writers do).
rcu_reclaim::reclaim_size!(Snapshot { words }; drops_anywhere);

impl Drop for Snapshot {
    fn drop(&mut self) {
        self.words.iter_mut().for_each(|w| *w = POISON);
        LIVE.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Bytes one snapshot holds on the heap (the `Vec`'s buffer and the box
/// or `Arc` around it, roughly).
const SNAPSHOT_BYTES: usize = WORDS * 8 + 24;

/// A snapshot cell as one scheme offers it.
trait Scheme: Send + Sync + 'static {
    const NAME: &'static str;
    fn new() -> Self;
    /// Loads the current snapshot and reads it (`check`).
    fn read(&self, i: usize) -> u64;
    /// Publishes `Snapshot::new(version)`; the replaced one is freed when
    /// the scheme says so.
    fn store(&self, version: u64);
    /// Waits until every replaced snapshot is freed (run after a round).
    fn settle(&self) {}
}

struct Ours<const COLLECT: bool>(RcuCell<Snapshot>);

impl<const COLLECT: bool> Scheme for Ours<COLLECT> {
    const NAME: &'static str = if COLLECT {
        "rcu-reclaim+collect"
    } else {
        "rcu-reclaim"
    };
    fn new() -> Self {
        Ours(RcuCell::new(Snapshot::new(0)))
    }
    fn read(&self, i: usize) -> u64 {
        let guard = Rcu::global().read_lock();
        self.0.load(&guard).map_or(0, |s| s.check(i))
    }
    fn store(&self, version: u64) {
        self.0.store(Box::new(Snapshot::new(version)));
        if COLLECT {
            Rcu::global().collect();
        }
    }
    fn settle(&self) {
        Rcu::global().barrier();
    }
}

struct Swap(arc_swap::ArcSwap<Snapshot>);

impl Scheme for Swap {
    const NAME: &'static str = "arc-swap";
    fn new() -> Self {
        Swap(arc_swap::ArcSwap::from_pointee(Snapshot::new(0)))
    }
    fn read(&self, i: usize) -> u64 {
        self.0.load().check(i)
    }
    fn store(&self, version: u64) {
        self.0.store(Arc::new(Snapshot::new(version)));
    }
}

struct Crossbeam(crossbeam_epoch::Atomic<Snapshot>);

impl Scheme for Crossbeam {
    const NAME: &'static str = "crossbeam-epoch";
    fn new() -> Self {
        Crossbeam(crossbeam_epoch::Atomic::new(Snapshot::new(0)))
    }
    fn read(&self, i: usize) -> u64 {
        let guard = crossbeam_epoch::pin();
        let p = self.0.load(Ordering::Acquire, &guard);
        // SAFETY: the cell always holds a snapshot; a replaced one is
        // destroyed only through `defer_destroy`, after every guard pinned
        // before its replacement (this one included) is dropped.
        unsafe { p.deref() }.check(i)
    }
    fn store(&self, version: u64) {
        let guard = crossbeam_epoch::pin();
        let old = self.0.swap(
            crossbeam_epoch::Owned::new(Snapshot::new(version)),
            Ordering::AcqRel,
            &guard,
        );
        // SAFETY: `old` was just unlinked by this swap, so no reader that
        // pins from now on can reach it, and it is destroyed once.
        unsafe { guard.defer_destroy(old) };
    }
    fn settle(&self) {
        // crossbeam-epoch has no barrier: repin and flush until its
        // garbage has been collected (a few epochs).
        for _ in 0..64 {
            crossbeam_epoch::pin().flush();
        }
    }
}

impl Drop for Crossbeam {
    fn drop(&mut self) {
        // SAFETY: `&mut self`: no reader or writer is left.
        drop(unsafe {
            std::mem::replace(&mut self.0, crossbeam_epoch::Atomic::null()).into_owned()
        });
    }
}

struct Locked(RwLock<Arc<Snapshot>>);

impl Scheme for Locked {
    const NAME: &'static str = "RwLock<Arc>";
    fn new() -> Self {
        Locked(RwLock::new(Arc::new(Snapshot::new(0))))
    }
    fn read(&self, i: usize) -> u64 {
        let snapshot = self.0.read().expect("no writer panics").clone();
        snapshot.check(i)
    }
    fn store(&self, version: u64) {
        let new = Arc::new(Snapshot::new(version));
        drop(std::mem::replace(
            &mut *self.0.write().expect("no reader panics"),
            new,
        ));
    }
}

/// What one run of one scheme measured.
#[derive(Default)]
struct RunOut {
    secs: f64,
    reads: u64,
    stores: u64,
    latencies: Vec<u32>,
    garbage_peak: usize,
    garbage_sum: usize,
    samples: usize,
}

/// One read in this many is timed.
const LATENCY_EVERY: usize = 128;

fn run<S: Scheme>(secs: f64, readers: usize) -> RunOut {
    let cell = Arc::new(S::new());
    let stop = Arc::new(AtomicBool::new(false));
    let start_line = Arc::new(Barrier::new(readers + 2));
    let mut handles = Vec::new();
    for r in 0..readers {
        let (cell, stop, start_line) = (cell.clone(), stop.clone(), start_line.clone());
        handles.push(thread::spawn(move || {
            let mut lat = Vec::with_capacity(1 << 16);
            let (mut i, mut sum) = (r, 0u64);
            start_line.wait();
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..LATENCY_EVERY - 1 {
                    sum = sum.wrapping_add(cell.read(i));
                    i += 1;
                }
                let t = Instant::now();
                sum = sum.wrapping_add(cell.read(i));
                lat.push(t.elapsed().as_nanos().min(u128::from(u32::MAX)) as u32);
                i += 1;
            }
            std::hint::black_box(sum);
            ((i - r) as u64, lat)
        }));
    }
    let writer = {
        let (cell, stop, start_line) = (cell.clone(), stop.clone(), start_line.clone());
        thread::spawn(move || {
            let mut version = 1u64;
            start_line.wait();
            while !stop.load(Ordering::Relaxed) {
                cell.store(version);
                version += 1;
            }
            version - 1
        })
    };
    let base = LIVE.load(Ordering::Relaxed);
    let mut out = RunOut::default();
    start_line.wait();
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < secs {
        thread::sleep(Duration::from_millis(1));
        // Published snapshots: one; the rest wait to be freed.
        let garbage = LIVE.load(Ordering::Relaxed).saturating_sub(base);
        out.garbage_peak = out.garbage_peak.max(garbage);
        out.garbage_sum += garbage;
        out.samples += 1;
    }
    stop.store(true, Ordering::Relaxed);
    out.secs = start.elapsed().as_secs_f64();
    for h in handles {
        let (reads, lat) = h.join().expect("a reader saw a freed or torn snapshot");
        out.reads += reads;
        out.latencies.extend(lat);
    }
    out.stores = writer.join().expect("the writer does not panic");
    cell.settle();
    drop(cell);
    out
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn arg<T: std::str::FromStr>(i: usize, default: T, what: &str) -> T {
    match std::env::args().nth(i) {
        None => default,
        Some(s) => s.parse().unwrap_or_else(|_| {
            eprintln!("snapshot_compare: {what} must be a number, got {s:?}");
            std::process::exit(2)
        }),
    }
}

fn main() {
    let secs: f64 = arg(1, 2.0, "secs");
    let rounds: usize = arg(2, 3, "rounds");
    let cpus = thread::available_parallelism().map_or(2, |n| n.get());
    let readers: usize = arg(3, cpus.saturating_sub(1).max(1), "readers");
    if !(secs > 0.0 && secs <= 3600.0) || rounds == 0 || readers == 0 || readers > 256 {
        eprintln!("snapshot_compare: want 0 < secs <= 3600, rounds >= 1, 1 <= readers <= 256");
        std::process::exit(2);
    }
    type RunFn = fn(f64, usize) -> RunOut;
    let schemes: [(&str, RunFn); 5] = [
        (Ours::<false>::NAME, run::<Ours<false>>),
        (Ours::<true>::NAME, run::<Ours<true>>),
        (Swap::NAME, run::<Swap>),
        (Crossbeam::NAME, run::<Crossbeam>),
        (Locked::NAME, run::<Locked>),
    ];
    let mut totals: Vec<RunOut> = schemes.iter().map(|_| RunOut::default()).collect();
    for round in 0..rounds {
        for k in 0..schemes.len() {
            let idx = (k + round) % schemes.len();
            let o = (schemes[idx].1)(secs, readers);
            let t = &mut totals[idx];
            t.secs += o.secs;
            t.reads += o.reads;
            t.stores += o.stores;
            t.latencies.extend(o.latencies);
            t.garbage_peak = t.garbage_peak.max(o.garbage_peak);
            t.garbage_sum += o.garbage_sum;
            t.samples += o.samples;
        }
    }
    println!(
        "{readers} reader(s) and 1 writer storing flat out, {rounds} round(s) x {secs} s, \
         snapshots of {} B",
        WORDS * 8
    );
    println!(
        "{:<20} {:>10} {:>10} {:>14} {:>15} {:>15}",
        "scheme", "reads/s", "stores/s", "read p50/p99", "garbage peak", "garbage mean"
    );
    for ((name, _), t) in schemes.iter().zip(totals.iter_mut()) {
        t.latencies.sort_unstable();
        let mean = t.garbage_sum as f64 / t.samples.max(1) as f64;
        println!(
            "{:<20} {:>9.2}M {:>9.1}k {:>6}/{:>5} ns {:>6} ({:>4} KiB) {:>6.0} ({:>4.0} KiB)",
            name,
            t.reads as f64 / t.secs / 1e6,
            t.stores as f64 / t.secs / 1e3,
            percentile(&t.latencies, 0.5),
            percentile(&t.latencies, 0.99),
            t.garbage_peak,
            t.garbage_peak * SNAPSHOT_BYTES / 1024,
            mean,
            mean * SNAPSHOT_BYTES as f64 / 1024.0,
        );
    }
}
