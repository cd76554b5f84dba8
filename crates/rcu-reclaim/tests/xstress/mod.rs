//! Shared by the cross-feature stress tests (`stress_cross*.rs`): values of
//! many shapes that carry a magic word and a checksum readers verify,
//! destructors that poison them and count each drop by id, some of which
//! retire into another domain, take a lock or panic; a watchdog that
//! prints the state and fails the test on a hang.

#![allow(dead_code)]

use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::thread;
use std::time::{Duration, Instant};

use rcu_reclaim::{Rcu, ReclaimSize};

pub const ALIVE: u64 = 0xC0FF_EE00_C0FF_EE00;
pub const POISON: u64 = 0xDEAD_F00D_DEAD_F00D;
/// What the panicking destructors, callbacks and closures say.
pub const PLANNED: &str = "xstress: planned panic";

/// Every value made and how often each was dropped.
pub struct Tracker {
    /// 0: never made; 1: live; 2: dropped once; more: dropped again.
    states: Vec<AtomicU8>,
    next: AtomicUsize,
    /// Values alive now.
    pub live: AtomicUsize,
    /// Bytes of the values alive now (their `reclaim_size`).
    pub live_bytes: AtomicUsize,
    /// Drops of a value already poisoned, or of an id already dropped.
    pub bad_drops: AtomicUsize,
    /// Reads that saw poison or a wrong checksum.
    pub bad_reads: AtomicUsize,
    /// Destructors that panicked as planned.
    pub drop_panics: AtomicUsize,
    /// The first bad read or drop, described.
    pub first_bad: Mutex<Option<String>>,
}

impl Tracker {
    pub fn new(capacity: usize) -> Arc<Tracker> {
        Arc::new(Tracker {
            states: (0..capacity).map(|_| AtomicU8::new(0)).collect(),
            next: AtomicUsize::new(0),
            live: AtomicUsize::new(0),
            live_bytes: AtomicUsize::new(0),
            bad_drops: AtomicUsize::new(0),
            bad_reads: AtomicUsize::new(0),
            drop_panics: AtomicUsize::new(0),
            first_bad: Mutex::new(None),
        })
    }

    /// Whether few ids are left: writers stop making values.
    pub fn nearly_full(&self) -> bool {
        self.next.load(Ordering::Relaxed) + 4096 >= self.states.len()
    }

    pub fn made(&self) -> usize {
        self.next.load(Ordering::SeqCst).min(self.states.len())
    }

    fn bad(&self, what: String) {
        let mut first = self.first_bad.lock().unwrap_or_else(|e| e.into_inner());
        if first.is_none() {
            *first = Some(what);
        }
    }

    /// Every value made was dropped exactly once, and no read saw poison.
    pub fn assert_clean(&self, what: &str) {
        let made = self.made();
        let (never, twice, first_never) = crate::common::drop_tally(&self.states[..made]);
        assert_eq!(
            (
                never,
                twice,
                self.bad_drops.load(Ordering::SeqCst),
                self.bad_reads.load(Ordering::SeqCst),
                self.live.load(Ordering::SeqCst),
                self.live_bytes.load(Ordering::SeqCst),
            ),
            (0, 0, 0, 0, 0, 0),
            "{what}: {made} values made; (never dropped, dropped twice, bad drops, bad reads, \
             live, live bytes); first never dropped: {first_never:?}; first bad: {:?}",
            self.first_bad.lock().unwrap_or_else(|e| e.into_inner())
        );
    }
}

/// What a value holds besides its header.
pub enum Kind {
    /// Nothing.
    Plain,
    /// `len` bytes, each the id's low byte.
    Bytes(Vec<u8>),
    /// `"v{id}"`.
    Text(String),
    /// The id, shared.
    Shared(Arc<u64>),
    /// A closure that returns the id.
    Dyn(Box<dyn Fn() -> u64 + Send + Sync>),
    /// A child value its destructor retires into `rcu` with `defer_drop`.
    Retires(Rcu, Option<Box<PVal>>),
    /// A child value its destructor hands to `rcu.call`.
    Calls(Rcu, Option<Box<PVal>>),
    /// Its destructor takes this lock and counts.
    Locked(Arc<Mutex<u64>>),
    /// Its destructor panics (after counting its drop).
    Panics,
}

/// A value readers verify: magic, id, checksum and contents.
pub struct PVal {
    magic: u64,
    id: u64,
    sum: u64,
    /// A key it was made for (maps and caches check it).
    pub key: u64,
    kind: Kind,
    size: usize,
    tracker: Arc<Tracker>,
}

fn checksum(id: u64, key: u64) -> u64 {
    (id ^ 0x9E37_79B9_7F4A_7C15)
        .wrapping_mul(0xBF58_476D_1CE4_E5B9)
        .rotate_left(17)
        ^ key
}

impl PVal {
    pub fn new(t: &Arc<Tracker>, key: u64, kind: Kind) -> PVal {
        let id = t.next.fetch_add(1, Ordering::Relaxed);
        assert!(
            id < t.states.len(),
            "xstress: tracker full: raise its capacity"
        );
        let kind = match kind {
            Kind::Bytes(len) => Kind::Bytes(vec![id as u8; len.len()]),
            Kind::Text(_) => Kind::Text(format!("v{id}")),
            Kind::Shared(_) => Kind::Shared(Arc::new(id as u64)),
            Kind::Dyn(_) => {
                let id = id as u64;
                Kind::Dyn(Box::new(move || id))
            }
            k => k,
        };
        let mut v = PVal {
            magic: ALIVE,
            id: id as u64,
            sum: checksum(id as u64, key),
            key,
            kind,
            size: 0,
            tracker: t.clone(),
        };
        v.size = v.compute_size();
        t.states[id].store(1, Ordering::Relaxed);
        t.live.fetch_add(1, Ordering::Relaxed);
        t.live_bytes.fetch_add(v.size, Ordering::Relaxed);
        v
    }

    /// A value of a kind picked by `r` (never one that retires or panics).
    pub fn plain_of(t: &Arc<Tracker>, key: u64, r: u64) -> PVal {
        let kind = match r % 6 {
            0 => Kind::Plain,
            1 => Kind::Bytes(vec![0; (r as usize >> 8) % 2048]),
            2 => Kind::Text(String::new()),
            3 => Kind::Shared(Arc::new(0)),
            4 => Kind::Dyn(Box::new(|| 0)),
            _ => Kind::Bytes(vec![0; if (r >> 20) % 64 == 0 { 64 << 10 } else { 16 }]),
        };
        PVal::new(t, key, kind)
    }

    /// A value of any kind picked by `r`: one in `panic_one_in` panics when
    /// dropped (0: none); some retire a child into `other` or take `lock`.
    pub fn any_of(
        t: &Arc<Tracker>,
        key: u64,
        r: u64,
        other: &Rcu,
        lock: &Arc<Mutex<u64>>,
        panic_one_in: u64,
    ) -> PVal {
        if panic_one_in != 0 && (r >> 32) % panic_one_in == 0 {
            return PVal::new(t, key, Kind::Panics);
        }
        match (r >> 8) % 10 {
            0 => PVal::new(
                t,
                key,
                Kind::Retires(
                    other.clone(),
                    Some(Box::new(PVal::plain_of(t, key, r >> 12))),
                ),
            ),
            1 => PVal::new(
                t,
                key,
                Kind::Calls(
                    other.clone(),
                    Some(Box::new(PVal::plain_of(t, key, r >> 12))),
                ),
            ),
            2 => PVal::new(t, key, Kind::Locked(lock.clone())),
            _ => PVal::plain_of(t, key, r >> 4),
        }
    }

    fn compute_size(&self) -> usize {
        std::mem::size_of::<Self>()
            + match &self.kind {
                Kind::Bytes(b) => b.capacity(),
                Kind::Text(s) => s.capacity(),
                Kind::Shared(_) => 8 + 16,
                Kind::Dyn(_) => 8,
                _ => 0,
            }
    }

    /// The bytes this value reports (its `reclaim_size`).
    pub fn size(&self) -> usize {
        self.size
    }

    /// Records a bad read (and returns false) if the value was freed or
    /// is not `key`'s (`None`: any key).
    pub fn check(&self, key: Option<u64>) -> bool {
        // SAFETY: `self` is a live reference; the volatile reads only keep
        // the compiler from assuming the words unchanged since creation.
        let (magic, id, sum, k) = unsafe {
            (
                ptr::read_volatile(&self.magic),
                ptr::read_volatile(&self.id),
                ptr::read_volatile(&self.sum),
                ptr::read_volatile(&self.key),
            )
        };
        let mut ok = magic == ALIVE && sum == checksum(id, k) && key.map_or(true, |key| key == k);
        if ok {
            ok = match &self.kind {
                Kind::Bytes(b) => [0, b.len() / 2, b.len().wrapping_sub(1)]
                    .iter()
                    .all(|&i| b.get(i).map_or(true, |&x| x == id as u8)),
                Kind::Text(s) => *s == format!("v{id}"),
                Kind::Shared(a) => **a == id,
                Kind::Dyn(f) => f() == id,
                Kind::Retires(_, Some(c)) | Kind::Calls(_, Some(c)) => c.check(Some(k)),
                Kind::Retires(_, None) | Kind::Calls(_, None) => false,
                Kind::Plain | Kind::Locked(_) | Kind::Panics => true,
            };
        }
        if !ok {
            self.tracker.bad_reads.fetch_add(1, Ordering::SeqCst);
            self.tracker.bad(format!(
                "a read of id {id} key {k} (wanted {key:?}): magic {magic:#x}, checksum {}",
                sum == checksum(id, k)
            ));
        }
        ok
    }
}

impl Drop for PVal {
    fn drop(&mut self) {
        let t = self.tracker.clone();
        // SAFETY: as in `check`; `self` is ours to drop.
        let magic = unsafe { ptr::read_volatile(&self.magic) };
        if magic != ALIVE {
            t.bad_drops.fetch_add(1, Ordering::SeqCst);
            t.bad(format!("a drop of id {} saw magic {magic:#x}", self.id));
            return;
        }
        // SAFETY: as above.
        unsafe {
            ptr::write_volatile(&mut self.magic, POISON);
            ptr::write_volatile(&mut self.sum, 0);
        }
        let prev = t.states[self.id as usize].fetch_add(1, Ordering::SeqCst);
        if prev != 1 {
            t.bad_drops.fetch_add(1, Ordering::SeqCst);
            t.bad(format!("id {} dropped in state {prev}", self.id));
        }
        t.live.fetch_sub(1, Ordering::SeqCst);
        t.live_bytes.fetch_sub(self.size, Ordering::SeqCst);
        match &mut self.kind {
            Kind::Retires(rcu, child) => rcu.defer_drop(child.take().unwrap()),
            Kind::Calls(rcu, child) => {
                let child = child.take().unwrap();
                rcu.call(move || drop(child));
            }
            Kind::Locked(m) => *m.lock().unwrap_or_else(|e| e.into_inner()) += 1,
            Kind::Panics => {
                t.drop_panics.fetch_add(1, Ordering::SeqCst);
                panic!("{PLANNED} (a destructor)");
            }
            _ => {}
        }
    }
}

impl ReclaimSize for PVal {
    fn reclaim_size(&self) -> usize {
        self.size
    }
}

/// A small fast generator.
pub struct Rng(pub u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Keeps the planned panics off standard error (others still print).
/// Planned panics on one thread: raised (seen by the panic hook), caught
/// by [`tolerate`], reported to a domain's hook ([`tally_hooked`]).
#[derive(Default, Clone, Debug)]
pub struct ThreadTally {
    pub name: String,
    pub raised: u64,
    pub caught: u64,
    pub hooked: u64,
}

static TALLIES: Mutex<Vec<(thread::ThreadId, ThreadTally)>> = Mutex::new(Vec::new());

fn tally(f: impl FnOnce(&mut ThreadTally)) {
    let me = thread::current();
    let mut all = TALLIES.lock().unwrap_or_else(|e| e.into_inner());
    let i = match all.iter().position(|(id, _)| *id == me.id()) {
        Some(i) => i,
        None => {
            let name = me.name().unwrap_or("<unnamed>").to_owned();
            all.push((
                me.id(),
                ThreadTally {
                    name,
                    ..Default::default()
                },
            ));
            all.len() - 1
        }
    };
    f(&mut all[i].1);
}

/// Counts a planned panic reported to a domain's `on_callback_panic` hook
/// (which runs on the thread that caught it).
pub fn tally_hooked() {
    tally(|t| t.hooked += 1);
}

/// The threads (of every test in this process) on which planned panics
/// were raised but not all caught by [`tolerate`] or reported to a hook:
/// where a lost panic went.
pub fn unaccounted_panics() -> Vec<ThreadTally> {
    let all = TALLIES.lock().unwrap_or_else(|e| e.into_inner());
    all.iter()
        .filter(|(_, t)| t.raised != t.caught + t.hooked)
        .map(|(_, t)| t.clone())
        .collect()
}

pub fn quiet_planned_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let msg = info
                .payload()
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| info.payload().downcast_ref::<&str>().copied())
                .unwrap_or("");
            if msg.contains(PLANNED) {
                tally(|t| t.raised += 1);
            }
            if !msg.contains(PLANNED) {
                if std::env::var_os("XSTRESS_BT").is_some() {
                    eprintln!("{}", std::backtrace::Backtrace::force_capture());
                }
                prev(info);
            }
        }));
    });
}

/// Runs `f`; a planned panic is counted in `panics`, any other one is
/// passed on.
pub fn tolerate<R>(panics: &AtomicU64, f: impl FnOnce() -> R) -> Option<R> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => Some(r),
        Err(e) => {
            let msg = e
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| e.downcast_ref::<&str>().copied())
                .unwrap_or("<not a string>")
                .to_owned();
            if msg.contains(PLANNED) {
                panics.fetch_add(1, Ordering::Relaxed);
                tally(|t| t.caught += 1);
                None
            } else {
                std::panic::resume_unwind(e)
            }
        }
    }
}

/// How long a storm runs: short by default, long with
/// `RCU_RECLAIM_LONG_STRESS` (seconds, default 30).
pub fn storm_time(short_ms: u64) -> Duration {
    match std::env::var("RCU_RECLAIM_LONG_STRESS") {
        Ok(s) => Duration::from_secs(s.parse().unwrap_or(30)),
        Err(_) => Duration::from_millis(short_ms),
    }
}

/// Fails the test (after printing `state()`) if it is not disarmed
/// within `limit`: a hang becomes a failure with the state to read.
pub struct Watchdog {
    done: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Watchdog {
    pub fn arm(
        what: &'static str,
        limit: Duration,
        state: impl Fn() -> String + Send + 'static,
    ) -> Watchdog {
        let done = Arc::new(AtomicBool::new(false));
        let d = done.clone();
        let thread = thread::spawn(move || {
            let start = Instant::now();
            while !d.load(Ordering::SeqCst) {
                if start.elapsed() > limit {
                    eprintln!("{what}: HUNG for {limit:?}; state: {}", state());
                    std::process::exit(99);
                }
                thread::sleep(Duration::from_millis(20));
            }
        });
        Watchdog {
            done,
            thread: Some(thread),
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.done.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Barriers on every domain until nothing is pending anywhere and every
/// value is gone (destructors that retire into a domain queue more work),
/// at most `rounds` times; then asserts the domains' backlogs are 0.
pub fn drain_all(domains: &[&Rcu], t: &Tracker, what: &str) {
    // Bounded by time, not by a count of barriers (which take microseconds
    // when nothing is queued): a structure dropped inside a callback leaves
    // a reclaim pass running on another thread to finish with it, and on a
    // loaded machine that thread may wait a while for a CPU before it lets
    // the structure's values go.
    //
    // Idle twice in a row, barriers between: the domains' counts are read
    // one after the other, not at one instant, so a callback of one domain
    // can queue into another that was already read as idle, and run its
    // drop (`live` already down) before its panic reaches the hook. The
    // second round of barriers waits for such a callback to end.
    let start = Instant::now();
    let deadline = start + Duration::from_secs(30);
    let mut idle_rounds = 0;
    while idle_rounds < 2 && Instant::now() < deadline {
        for d in domains {
            d.barrier();
        }
        let idle = domains
            .iter()
            .all(|d| d.pending() == 0 && d.pending_bytes() == 0)
            && t.live.load(Ordering::SeqCst) == 0;
        if idle {
            idle_rounds += 1;
        } else {
            idle_rounds = 0;
            thread::sleep(Duration::from_millis(1));
        }
    }
    if start.elapsed() > Duration::from_millis(200) {
        eprintln!(
            "{what}: the domains took {:?} to drain ({} values live)",
            start.elapsed(),
            t.live.load(Ordering::SeqCst)
        );
    }
    for d in domains {
        assert_eq!(
            (d.pending(), d.pending_bytes()),
            (0, 0),
            "{what}: domain {} still has work after barriers; {:?}",
            d.id(),
            d.stats()
        );
    }
}
