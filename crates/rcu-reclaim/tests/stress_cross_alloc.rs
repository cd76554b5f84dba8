//! A budget enforced on every allocation (`AccountingAlloc::enforce`)
//! while caches on a memb and a QSBR domain churn ten times their
//! capacity, their shrinkers reclaim, and readers hold one section across
//! thousands of loads. Values of many types: tracked values that poison
//! themselves, a `drops_anywhere` blob freed by the retiring thread
//! (`retiring_thread_frees`), zero-sized values in a map and a cell, a
//! `Box<dyn Trait>` cache weighed by a closure, `Arc`s. After two rounds
//! each value was dropped exactly once, the backlogs are 0, and the
//! allocator's live bytes did not grow from the first round to the second
//! (nothing the library allocates leaks).
//!
//! One test in this binary: the allocator's count is process-wide.

mod common;
mod xstress;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use rcu_reclaim::pressure::NodeMask;
use rcu_reclaim::reclaim::{AccountingAlloc, MemoryBudget, Reclaimer};
use rcu_reclaim::{Config, Flavor, Rcu, RcuCache, RcuCell, RcuHashMap};

use xstress::{drain_all, storm_time, Kind, PVal, Rng, Tracker, Watchdog};

#[global_allocator]
static ALLOC: AccountingAlloc = AccountingAlloc::system();

/// Blobs made and dropped (a blob drops anywhere: it counts in statics).
static BLOBS_MADE: AtomicUsize = AtomicUsize::new(0);
static BLOBS_DROPPED: AtomicUsize = AtomicUsize::new(0);
static BLOB_BAD: AtomicUsize = AtomicUsize::new(0);

const BLOB_LIVE: u64 = 0xB10B_B10B_B10B_B10B;

/// A buffer whose first word is its key and the rest the key's low byte;
/// its `Drop` takes no lock, so the retiring thread may free it.
struct Blob {
    magic: u64,
    key: u64,
    data: Vec<u8>,
}

rcu_reclaim::reclaim_size!(Blob { data }; drops_anywhere);

impl Blob {
    fn new(key: u64, len: usize) -> Blob {
        BLOBS_MADE.fetch_add(1, Ordering::SeqCst);
        Blob {
            magic: BLOB_LIVE,
            key,
            data: vec![key as u8; len],
        }
    }
    fn check(&self, key: u64) -> bool {
        // SAFETY: a live reference; volatile so a freed value is not
        // assumed unchanged.
        let magic = unsafe { std::ptr::read_volatile(&self.magic) };
        let ok = magic == BLOB_LIVE
            && self.key == key
            && self.data.first().map_or(true, |&b| b == key as u8)
            && self.data.last().map_or(true, |&b| b == key as u8);
        if !ok {
            BLOB_BAD.fetch_add(1, Ordering::SeqCst);
        }
        ok
    }
}

impl Drop for Blob {
    fn drop(&mut self) {
        if self.magic != BLOB_LIVE {
            BLOB_BAD.fetch_add(1, Ordering::SeqCst);
        }
        // SAFETY: ours to drop.
        unsafe { std::ptr::write_volatile(&mut self.magic, 0) };
        BLOBS_DROPPED.fetch_add(1, Ordering::SeqCst);
    }
}

/// A trait object for the QSBR cache.
trait Payload: Send + Sync {
    fn key(&self) -> u64;
    fn bytes(&self) -> usize;
    fn check(&self, key: u64) -> bool;
}

impl Payload for PVal {
    fn key(&self) -> u64 {
        self.key
    }
    fn bytes(&self) -> usize {
        self.size()
    }
    fn check(&self, key: u64) -> bool {
        PVal::check(self, Some(key))
    }
}

impl Payload for Blob {
    fn key(&self) -> u64 {
        self.key
    }
    fn bytes(&self) -> usize {
        self.data.capacity()
    }
    fn check(&self, key: u64) -> bool {
        Blob::check(self, key)
    }
}

type Dyn = Box<dyn Payload>;

struct World {
    memb: Rcu,
    qsbr: Rcu,
    t: Arc<Tracker>,
    /// Tracked values, weighed by their `ReclaimSize`, tied to the budget.
    vals: RcuCache<u64, PVal>,
    /// Blobs freed by the retiring thread.
    blobs: RcuCache<u64, Blob>,
    /// Trait objects weighed by a closure, on the QSBR domain.
    dyns: RcuCache<String, Dyn>,
    zst_map: RcuHashMap<u64, ()>,
    zst_cell: RcuCell<()>,
    arcs: RcuCell<Arc<Vec<u64>>>,
    q_reclaimer: Arc<Reclaimer>,
    budget: Arc<MemoryBudget>,
    stop: AtomicBool,
    reads: AtomicU64,
    writes: AtomicU64,
    zst_drops: Arc<AtomicUsize>,
}

const CAP: usize = 2 << 20;
const KEYS: u64 = 4096;

fn blob_len(key: u64, r: u64) -> usize {
    // About 5 KiB on average: 4096 keys are ten times the cap.
    (key as usize % 8 + (r as usize % 4)) << 10
}

fn reader(w: &World, r: u64) {
    let mut rng = Rng::new(r);
    let mut reg = w.qsbr.register_qsbr_thread();
    while !w.stop.load(Ordering::Relaxed) {
        {
            // One section, thousands of loads, every reference kept.
            let g = w.memb.read_lock();
            let mut held_v: Vec<(&PVal, u64)> = Vec::new();
            let mut held_b: Vec<(&Blob, u64)> = Vec::new();
            for _ in 0..2000 {
                let k = rng.below(KEYS);
                if let Some(v) = w.vals.get(&k, &g) {
                    v.check(Some(k));
                    held_v.push((v, k));
                }
                if let Some(b) = w.blobs.get(&k, &g) {
                    b.check(k);
                    held_b.push((b, k));
                }
                let _ = w.zst_map.get(&k, &g);
            }
            let _ = w.zst_cell.load(&g);
            for (v, k) in held_v {
                v.check(Some(k));
            }
            for (b, k) in held_b {
                b.check(k);
            }
            w.reads.fetch_add(2000, Ordering::Relaxed);
        }
        {
            let g = reg.read_lock();
            let mut held: Vec<(&Dyn, u64)> = Vec::new();
            for _ in 0..500 {
                let k = rng.below(KEYS);
                if let Some(d) = w.dyns.get(format!("k{k}").as_str(), &g) {
                    d.check(k);
                    held.push((d, k));
                }
                if let Some(a) = w.arcs.load(&g) {
                    assert!(a.iter().all(|&x| x == a[0]), "an Arc's contents changed");
                }
            }
            for (d, k) in held {
                assert_eq!(d.key(), k);
                d.check(k);
            }
            w.reads.fetch_add(500, Ordering::Relaxed);
        }
        reg.quiescent_state();
        if rng.below(16) == 0 {
            reg.offline_while(|| thread::sleep(Duration::from_micros(100)));
        }
    }
}

fn writer(w: &World, r: u64) {
    let mut rng = Rng::new(r);
    while !w.stop.load(Ordering::Relaxed) && !w.t.nearly_full() {
        let k = rng.below(KEYS);
        match rng.below(10) {
            0..=2 => {
                let v = PVal::new(&w.t, k, Kind::Bytes(vec![0; blob_len(k, rng.next())]));
                w.vals.insert(k, v);
            }
            3..=5 => {
                w.blobs.insert(k, Blob::new(k, blob_len(k, rng.next())));
            }
            6 => {
                let (t, n) = (&w.t, rng.next());
                w.blobs.read_or_insert_with(
                    k,
                    || Blob::new(k, blob_len(k, n)),
                    |b| {
                        b.check(k);
                    },
                );
                let g = w.memb.read_lock();
                w.vals
                    .get_or_insert_with(k, || PVal::plain_of(t, k, n), &g)
                    .check(Some(k));
            }
            7 => {
                let d: Dyn = if rng.below(2) == 0 {
                    Box::new(Blob::new(k, blob_len(k, rng.next())))
                } else {
                    Box::new(PVal::plain_of(&w.t, k, rng.next()))
                };
                w.dyns.insert(format!("k{k}"), d);
            }
            8 => {
                let zd = w.zst_drops.clone();
                w.zst_map.insert(k % 64, ());
                w.zst_map.remove(&(k % 64 + 1));
                w.zst_cell.store(Box::new(()));
                w.memb.call(move || {
                    zd.fetch_add(1, Ordering::Relaxed);
                });
                let v = rng.next();
                w.arcs.store(Box::new(Arc::new(vec![v; 32])));
            }
            _ => {
                w.vals.remove(&k);
                w.blobs.remove(&k);
                w.dyns.remove(format!("k{k}").as_str());
            }
        }
        w.writes.fetch_add(1, Ordering::Relaxed);
    }
}

fn reclaimer_thread(w: &World) {
    let mut rng = Rng::new(3);
    while !w.stop.load(Ordering::Relaxed) {
        match rng.below(6) {
            0 => {
                let _ = w.budget.reclaimer().shrink(rng.below(13) as u8);
            }
            1 => {
                let _ = w.budget.reclaimer().reclaim(256 << 10, &NodeMask::all());
            }
            2 => {
                let _ = w.q_reclaimer.reclaim(256 << 10, &NodeMask::all());
            }
            3 => {
                let _p = w.memb.pressure_start_all();
                let _q = w.qsbr.pressure_start_all();
                thread::sleep(Duration::from_micros(500));
            }
            4 => w.qsbr.synchronize(),
            _ => w.memb.barrier(),
        }
        thread::sleep(Duration::from_micros(200));
    }
}

fn round(w: &World, what: &'static str) {
    w.stop.store(false, Ordering::SeqCst);
    thread::scope(|s| {
        for r in 0..2 {
            s.spawn(move || reader(w, 10 + r));
        }
        for r in 0..2 {
            s.spawn(move || writer(w, 20 + r));
        }
        s.spawn(|| reclaimer_thread(w));
        thread::sleep(storm_time(1200));
        w.stop.store(true, Ordering::SeqCst);
    });
    assert!(
        w.vals.bytes() <= w.vals.max_bytes() && w.blobs.bytes() <= w.blobs.max_bytes(),
        "{what}: a cache over its cap"
    );
    w.vals.clear();
    w.blobs.clear();
    w.dyns.clear();
    w.zst_map.clear();
    if let Some(r) = w.zst_cell.take() {
        r.defer_drop();
    }
    if let Some(r) = w.arcs.take() {
        r.defer_drop();
    }
    drain_all(&[&w.memb, &w.qsbr], &w.t, what);
    w.t.assert_clean(what);
    assert_eq!(
        (
            BLOBS_MADE.load(Ordering::SeqCst),
            BLOB_BAD.load(Ordering::SeqCst)
        ),
        (BLOBS_DROPPED.load(Ordering::SeqCst), 0),
        "{what}: blobs (made, bad) vs (dropped, 0)"
    );
}

#[test]
fn an_enforced_budget_with_caches_churning_ten_times_their_cap_on_two_flavors() {
    let memb = Rcu::new(Config::new().retiring_thread_frees(true)).unwrap();
    let qsbr = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
    let t = Tracker::new(1 << 21);
    let reclaimer = Arc::new(Reclaimer::new(&memb));
    let ooms = Arc::new(AtomicU64::new(0));
    let o = ooms.clone();
    reclaimer.set_oom_handler(move |_| {
        o.fetch_add(1, Ordering::Relaxed);
    });
    let base = AccountingAlloc::live_bytes();
    let budget = Arc::new(MemoryBudget::new(
        base + (3 << 20),
        reclaimer,
        AccountingAlloc::live_bytes,
    ));
    let q_reclaimer = Arc::new(Reclaimer::new(&qsbr));
    let w = World {
        vals: RcuCache::builder()
            .rcu(&memb)
            .max_bytes(CAP)
            .shards(2)
            .budget(&budget)
            .build(),
        blobs: RcuCache::builder()
            .rcu(&memb)
            .max_bytes(CAP)
            .budget(&budget)
            .build(),
        dyns: RcuCache::builder()
            .rcu(&qsbr)
            .max_bytes(CAP)
            .reclaimer(&q_reclaimer)
            .weigher(|k: &String, v: &Dyn| k.capacity() + v.bytes())
            .build(),
        zst_map: RcuHashMap::new_in(&memb),
        zst_cell: RcuCell::new_in(&memb, Box::new(())),
        arcs: RcuCell::new_in(&qsbr, None),
        memb: memb.clone(),
        qsbr: qsbr.clone(),
        t: t.clone(),
        q_reclaimer,
        budget: budget.clone(),
        stop: AtomicBool::new(false),
        reads: AtomicU64::new(0),
        writes: AtomicU64::new(0),
        zst_drops: Arc::new(AtomicUsize::new(0)),
    };
    static W: OnceLock<Mutex<()>> = OnceLock::new();
    let _one = W.get_or_init(|| Mutex::new(())).lock();
    assert!(
        AccountingAlloc::enforce(budget.clone()).is_ok(),
        "another budget is enforced in this process"
    );
    let state = {
        let (memb, qsbr, budget) = (memb.clone(), qsbr.clone(), budget.clone());
        move || {
            format!(
                "live {} KiB; memb {}/{} {:?}; qsbr {}/{} late {:?}; budget {:?}",
                AccountingAlloc::live_bytes() >> 10,
                memb.pending(),
                memb.pending_bytes(),
                memb.stats(),
                qsbr.pending(),
                qsbr.pending_bytes(),
                qsbr.late_readers(),
                budget.stats()
            )
        }
    };
    let watchdog = Watchdog::arm("enforced budget", Duration::from_secs(120), state);
    let start = Instant::now();
    round(&w, "round 1");
    let after_one = AccountingAlloc::live_bytes();
    round(&w, "round 2");
    let after_two = AccountingAlloc::live_bytes();
    drop(watchdog);
    eprintln!(
        "enforced budget: {:?}; {} reads, {} writes, {} values, {} blobs; live after round 1 \
         {} KiB, after round 2 {} KiB; {} ooms; {:?}",
        start.elapsed(),
        w.reads.load(Ordering::Relaxed),
        w.writes.load(Ordering::Relaxed),
        t.made(),
        BLOBS_MADE.load(Ordering::Relaxed),
        after_one >> 10,
        after_two >> 10,
        ooms.load(Ordering::Relaxed),
        budget.stats()
    );
    assert!(
        after_two <= after_one + (512 << 10),
        "the process's live bytes grew from {after_one} after round 1 to {after_two} after \
         round 2 with everything freed: a leak"
    );
    assert!(w.vals.is_empty() && w.blobs.is_empty() && w.dyns.is_empty());
}
