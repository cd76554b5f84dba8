//! Shared by the independent stress tests: values that poison themselves
//! when dropped and a tracker that counts each value's drops.

#![allow(dead_code)]

use std::ptr;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rcu_reclaim::ReclaimSize;

pub const LIVE: u64 = 0x5AFE_5AFE_5AFE_5AFE;
pub const POISON: u64 = 0xDEAD_BEEF_DEAD_BEEF;
pub const CAPACITY: usize = 1 << 22;

/// Which values exist and how often each was dropped.
pub struct Tracker {
    /// 0: never made; 1: live; 2: dropped once; more: dropped again.
    pub states: Vec<AtomicU8>,
    pub next: AtomicUsize,
    pub live: AtomicUsize,
    pub bad_drops: AtomicUsize,
}

impl Tracker {
    pub fn new() -> Arc<Tracker> {
        Arc::new(Tracker {
            states: (0..CAPACITY).map(|_| AtomicU8::new(0)).collect(),
            next: AtomicUsize::new(0),
            live: AtomicUsize::new(0),
            bad_drops: AtomicUsize::new(0),
        })
    }

    pub fn full(&self) -> bool {
        self.next.load(Ordering::Relaxed) >= CAPACITY - (1 << 16)
    }

    /// Every value made was dropped exactly once.
    pub fn check_all_dropped(&self, what: &str) {
        let made = self.next.load(Ordering::SeqCst).min(CAPACITY);
        let mut not_dropped = 0;
        let mut twice = 0;
        for s in &self.states[..made] {
            match s.load(Ordering::SeqCst) {
                2 => {}
                1 => not_dropped += 1,
                _ => twice += 1,
            }
        }
        assert_eq!(
            (not_dropped, twice, self.bad_drops.load(Ordering::SeqCst)),
            (0, 0, 0),
            "{what}: {made} made; (never dropped, dropped twice, poisoned drops)"
        );
        assert_eq!(self.live.load(Ordering::SeqCst), 0, "{what}: live count");
    }
}

pub struct Val {
    pub id: usize,
    magic: u64,
    words: [u64; 4],
    tracker: Arc<Tracker>,
}

impl Val {
    pub fn new(t: &Arc<Tracker>) -> Box<Val> {
        let id = t.next.fetch_add(1, Ordering::Relaxed);
        assert!(id < CAPACITY, "tracker full");
        t.states[id].store(1, Ordering::Relaxed);
        t.live.fetch_add(1, Ordering::Relaxed);
        Box::new(Val {
            id,
            magic: LIVE,
            words: [id as u64; 4],
            tracker: t.clone(),
        })
    }

    pub fn unboxed(t: &Arc<Tracker>) -> Val {
        *Val::new(t)
    }

    /// Panics if the value was freed (poisoned) or is torn.
    pub fn check(&self) {
        // SAFETY: the caller holds a read-side section protecting `self`.
        let magic = unsafe { ptr::read_volatile(&self.magic) };
        assert_eq!(magic, LIVE, "reader saw a dropped value (id {})", self.id);
        for w in &self.words {
            // SAFETY: as above.
            let v = unsafe { ptr::read_volatile(w) };
            assert_eq!(v, self.id as u64, "torn value");
        }
    }
}

impl Drop for Val {
    fn drop(&mut self) {
        // SAFETY: `self.magic` is a valid exclusive place.
        let magic = unsafe { ptr::read_volatile(&self.magic) };
        if magic != LIVE {
            self.tracker.bad_drops.fetch_add(1, Ordering::SeqCst);
            return;
        }
        // SAFETY: as above.
        unsafe { ptr::write_volatile(&mut self.magic, POISON) };
        for w in self.words.iter_mut() {
            // SAFETY: as above.
            unsafe { ptr::write_volatile(w, POISON) };
        }
        let prev = self.tracker.states[self.id].fetch_add(1, Ordering::SeqCst);
        if prev != 1 {
            self.tracker.bad_drops.fetch_add(1, Ordering::SeqCst);
        }
        self.tracker.live.fetch_sub(1, Ordering::SeqCst);
    }
}

impl ReclaimSize for Val {
    const DROPS_ANYWHERE: bool = true;
    fn reclaim_size(&self) -> usize {
        std::mem::size_of::<Val>()
    }
}

pub fn storm_ms() -> Duration {
    let ms: u64 = std::env::var("RCU_ISTRESS_MS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1200);
    Duration::from_millis(ms)
}

/// Lets the storm's threads run for [`storm_ms`], then stops them (`stop`)
/// and joins them (a panic in one fails the test).
pub fn storm_then_join(
    stop: &std::sync::atomic::AtomicBool,
    handles: Vec<std::thread::JoinHandle<()>>,
) {
    std::thread::sleep(storm_ms());
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for h in handles {
        h.join().unwrap();
    }
}

/// After `barrier`, nothing is left queued in `rcu`, in objects or bytes.
pub fn assert_settled(rcu: &rcu_reclaim::Rcu) {
    rcu.barrier();
    assert_eq!(rcu.pending(), 0);
    assert_eq!(rcu.pending_bytes(), 0);
}

/// After `barrier`: nothing pending, and what ran since `before` is
/// exactly what was queued (`entries` objects and callbacks, `booked`
/// bytes). Returns the stats read after the barrier.
pub fn assert_exact_totals(
    rcu: &rcu_reclaim::Rcu,
    before: &rcu_reclaim::stats::Stats,
    booked: u64,
    entries: u64,
    what: &str,
) -> rcu_reclaim::stats::Stats {
    rcu.barrier();
    let after = rcu.stats();
    assert_eq!(after.pending, 0, "{what}: objects pending after barrier");
    assert_eq!(
        after.pending_bytes, 0,
        "{what}: bytes pending after barrier"
    );
    assert_eq!(
        after.bytes_freed - before.bytes_freed,
        booked,
        "{what}: bytes freed against bytes booked"
    );
    assert_eq!(
        after.invoked - before.invoked,
        entries,
        "{what}: run against queued"
    );
    after
}

/// A synthetic pressure source that tells the test when its monitor has
/// acted on every event sent: the monitor asks for the next event only
/// after it has handled the last one, so once every sender is gone and the
/// monitor finds the channel closed, no shrink is left in flight.
pub struct DrainedSource {
    closed: Arc<std::sync::atomic::AtomicBool>,
    rx: std::sync::mpsc::Receiver<rcu_reclaim::sources::Level>,
}

/// The sender, the source, and a handle that waits for the drain.
pub fn drained_source() -> (
    std::sync::mpsc::Sender<rcu_reclaim::sources::Level>,
    Box<DrainedSource>,
    Drained,
) {
    let (tx, rx) = std::sync::mpsc::channel();
    let closed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    (
        tx,
        Box::new(DrainedSource {
            closed: closed.clone(),
            rx,
        }),
        Drained(closed),
    )
}

impl rcu_reclaim::sources::PressureSource for DrainedSource {
    fn describe(&self) -> String {
        "synthetic (drained)".into()
    }

    fn wait(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<rcu_reclaim::sources::Level>, rcu_reclaim::sources::SourceError> {
        use std::sync::mpsc::RecvTimeoutError;
        match self.rx.recv_timeout(timeout) {
            Ok(level) => Ok(Some(level)),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => {
                self.closed.store(true, Ordering::SeqCst);
                std::thread::sleep(timeout);
                Ok(None)
            }
        }
    }
}

/// Waits until a [`DrainedSource`]'s monitor has handled every event.
pub struct Drained(Arc<std::sync::atomic::AtomicBool>);

impl Drained {
    /// Every sender must be dropped first; panics after 60 s.
    pub fn wait(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !self.0.load(Ordering::SeqCst) {
            assert!(
                std::time::Instant::now() < deadline,
                "the pressure monitor did not reach the end of its events within 60 s"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// A domain with `config`, or `None` after saying why the test is skipped
/// (a configuration this machine cannot give, e.g. no `membarrier`).
pub fn domain_or_skip(config: rcu_reclaim::Config) -> Option<rcu_reclaim::Rcu> {
    match rcu_reclaim::Rcu::new(config) {
        Ok(r) => Some(r),
        Err(e) => {
            println!("skipped: {e}");
            None
        }
    }
}

/// `n` cells of `rcu`, each holding a fresh value of `t`.
pub fn cells(
    rcu: &rcu_reclaim::Rcu,
    t: &Arc<Tracker>,
    n: usize,
) -> Arc<Vec<Arc<rcu_reclaim::RcuCell<Val>>>> {
    Arc::new(
        (0..n)
            .map(|_| Arc::new(rcu_reclaim::RcuCell::new_in(rcu, Some(Val::new(t)))))
            .collect(),
    )
}

/// Advances `x` one step of the storms' key stream (Knuth's MMIX linear
/// congruential generator); callers take its high bits.
pub fn step(x: &mut u64) {
    *x = x
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
}
