//! Fast mode's state: pressure signals counted per NUMA node, and fast mode
//! held for two grace periods after the last one ends (the hysteresis).
//! The rules are in `policy.rs`; this file counts and applies them.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::policy;
use crate::sync::{lock, Mutex};

/// Per-domain pressure state.
pub(crate) struct Pressure {
    per_node: Box<[AtomicUsize]>,
    total: AtomicUsize,
    /// Fast mode lasts until this many grace periods have completed (two
    /// after the last pressure ended).
    fast_until_gp: AtomicU64,
    /// Fast mode as last observed (for enter/exit accounting).
    fast: AtomicBool,
    since: Mutex<Option<Instant>>,
    pub(crate) entries: AtomicU64,
    pub(crate) exits: AtomicU64,
    pub(crate) fast_ns: AtomicU64,
}

impl Pressure {
    pub(crate) fn new(nodes: usize) -> Self {
        Pressure {
            per_node: (0..nodes).map(|_| AtomicUsize::new(0)).collect(),
            total: AtomicUsize::new(0),
            fast_until_gp: AtomicU64::new(0),
            fast: AtomicBool::new(false),
            since: Mutex::new(None),
            entries: AtomicU64::new(0),
            exits: AtomicU64::new(0),
            fast_ns: AtomicU64::new(0),
        }
    }

    /// Whether `node` is under pressure now.
    pub(crate) fn on_node(&self, node: usize) -> bool {
        self.per_node[node % self.per_node.len()].load(Ordering::Relaxed) > 0
    }

    pub(crate) fn total(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    pub(crate) fn count_on(&self, node: usize) -> usize {
        self.per_node[node % self.per_node.len()].load(Ordering::Relaxed)
    }

    /// Whether fast mode is in force, given the grace periods completed;
    /// records entering and leaving.
    pub(crate) fn observe(&self, completed: u64) -> bool {
        let fast = policy::fast_mode(
            self.total(),
            completed,
            self.fast_until_gp.load(Ordering::Relaxed),
        );
        if fast != self.fast.load(Ordering::Relaxed) {
            let mut since = lock(&self.since);
            if fast && !self.fast.swap(true, Ordering::Relaxed) {
                *since = Some(Instant::now());
                self.entries.fetch_add(1, Ordering::Relaxed);
                tracing::info!("rcu-reclaim: memory pressure, entering fast mode");
            } else if !fast && self.fast.swap(false, Ordering::Relaxed) {
                let spent = since.take().map_or(Duration::ZERO, |t| t.elapsed());
                self.fast_ns
                    .fetch_add(spent.as_nanos() as u64, Ordering::Relaxed);
                self.exits.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    fast_ms = spent.as_millis() as u64,
                    "rcu-reclaim: leaving fast mode"
                );
            }
        }
        fast
    }

    /// Counts a pressure signal on `node` (already within range), or on
    /// every node; returns whether it is the only one held now (so the
    /// caller re-plans at once), and whether fast mode was off before it.
    pub(crate) fn start(&self, node: Option<usize>, completed: u64) -> (bool, bool) {
        for c in self.counts(node) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        if self.total.fetch_add(1, Ordering::AcqRel) == 0 {
            let was_fast = self.fast.load(Ordering::Relaxed);
            self.observe(completed);
            return (true, !was_fast);
        }
        (false, false)
    }

    /// Ends a signal counted by `start`; after the last one, fast mode lasts
    /// two more grace periods (`completed`: those completed now).
    pub(crate) fn end(&self, node: Option<usize>, completed: u64) {
        for c in self.counts(node) {
            c.fetch_sub(1, Ordering::Relaxed);
        }
        if self.total.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.fast_until_gp
                .store(policy::fast_until(completed), Ordering::Relaxed);
        }
    }

    /// The per-node counts a signal on `node` (or on every node) moves.
    fn counts(&self, node: Option<usize>) -> &[AtomicUsize] {
        match node {
            Some(n) => std::slice::from_ref(&self.per_node[n]),
            None => &self.per_node,
        }
    }

    /// Nodes counted (the domain's topology).
    pub(crate) fn nodes(&self) -> usize {
        self.per_node.len()
    }

    /// Holds the fast-mode clock still across `fork()`.
    #[cfg(not(loom))]
    pub(crate) fn lock_for_fork(&self) -> crate::sync::ForkHeld<'_, Option<Instant>> {
        crate::sync::lock_for_fork(&self.since)
    }

    /// Time spent in fast mode so far, including the current stretch.
    pub(crate) fn fast_time(&self) -> Duration {
        let done = Duration::from_nanos(self.fast_ns.load(Ordering::Relaxed));
        done + lock(&self.since).map_or(Duration::ZERO, |t| t.elapsed())
    }
}
