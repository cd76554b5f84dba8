//! Writes nested in other maps' closures, and the deadlocks they can make.
//!
//! A closure that a map's write runs under one of its stripe locks
//! (`update`, `get_or_insert_with`, `remove_if`, a cache's
//! `get_or_insert_with`) may write to another map, which takes one of its
//! own stripe locks while the first is held. Two threads doing so in
//! opposite orders deadlock. A nested write that finds its stripe taken
//! records its wait in a registry (the stripe locks its thread holds, the
//! one it wants) and looks, every [`CYCLE_LOOK`], for a cycle of such waits
//! that comes back to it: each thread in it holds the lock the next one
//! wants, so none can go on. It panics then, naming the deadlock; the
//! unwind releases its thread's stripes, so the others go on.
//!
//! A wait that closes no cycle lasts as long as the lock is held: another
//! thread's slow closure (a `get_or_insert_with` loader that takes
//! seconds) is not a deadlock, and is waited for. A wait longer than
//! [`LONG_WAIT`] is reported once (a cycle through a lock this crate does
//! not see, the user's own mutex, cannot be told from a slow closure).
//!
//! Why a snapshot's cycle is a real deadlock: a thread registers only
//! while it waits, and takes its entry out right after it gets the lock,
//! before it can release anything, so every lock an entry says it holds is
//! held by that thread for as long as the entry is there. In a cycle, each
//! member wants a lock another member's entry holds, so none of them has
//! got what it wants, and none ever will.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex as StdMutex;
use std::time::{Duration, Instant};

use crate::domain::Rcu;
use crate::sync::{lock_std, try_lock, Locked, Mutex, FORKED_WAIT};

/// How often a waiting nested write looks for a cycle.
const CYCLE_LOOK: Duration = Duration::from_millis(10);
/// How long a nested write waits before it says so (once).
pub(super) const LONG_WAIT: Duration = Duration::from_secs(10);
/// The nap between tries, after the first yields.
const NAP: Duration = Duration::from_micros(200);

/// One nested write waiting for a stripe lock.
struct Wait {
    /// This wait's number (unique in the process).
    id: u64,
    /// The stripe locks (their addresses) its thread holds.
    holds: Vec<usize>,
    /// The stripe lock it waits for.
    wants: usize,
}

/// Every nested write waiting for a stripe lock now.
static WAITS: StdMutex<Vec<Wait>> = StdMutex::new(Vec::new());
/// The next [`Wait::id`].
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A wait's entry in [`WAITS`], taken out when dropped (the lock got, or
/// the thread unwinding from the deadlock's panic).
struct Registered(u64);

impl Registered {
    fn new(holds: &[usize], wants: usize) -> Registered {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        lock_std(&WAITS).push(Wait {
            id,
            holds: holds.to_vec(),
            wants,
        });
        Registered(id)
    }

    /// The number of threads in a cycle of waits through this one (itself
    /// included), if there is one and this is the wait that breaks it:
    /// the latest to begin, so that one thread of the cycle panics, not
    /// all of them.
    fn breaks_a_cycle(&self) -> Option<usize> {
        let waits = lock_std(&WAITS);
        let me = waits.iter().position(|w| w.id == self.0)?;
        let cycle = cycle_through(&waits, me)?;
        let latest = cycle.iter().map(|&i| waits[i].id).max()?;
        (latest == self.0).then_some(cycle.len())
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        lock_std(&WAITS).retain(|w| w.id != self.0);
    }
}

/// The cycle of waits (their indices, `me` first) that comes back to
/// `waits[me]`: follows each wanted lock to the wait whose thread holds it.
fn cycle_through(waits: &[Wait], me: usize) -> Option<Vec<usize>> {
    let mut cycle = vec![me];
    loop {
        let wants = waits[*cycle.last()?].wants;
        let holder = waits.iter().position(|w| w.holds.contains(&wants))?;
        if holder == me {
            return Some(cycle);
        }
        // A cycle that does not come back here: its own members find it.
        if cycle.contains(&holder) {
            return None;
        }
        cycle.push(holder);
    }
}

/// Locks `m` for a write nested in another map's closure, its thread
/// holding the stripe locks `holds`: waits as long as it is held, and
/// panics if the wait closes a cycle of such waits (a lock-order
/// deadlock; see the module docs). In a forked child it panics at once
/// if `holder` says a thread of the parent holds `m` (it does not exist
/// there). After a fork, once it has waited
/// [`FORKED_WAIT`], it does what an outer write's wait does there
/// (`GracePeriods::lock_written`, with `rcu`, the map's domain, and
/// `what` and `which`, the write and the lock, for the message): in a
/// child forked without `prepare_fork` it panics, and in one that
/// `ForkGuard::child` made ready it warns and waits on.
#[cold]
#[track_caller]
pub(super) fn lock_nested<'a>(
    m: &'a Mutex<()>,
    holder: &crate::lock_holder::Holder,
    holds: &[usize],
    rcu: &Rcu,
    what: &'static str,
    which: &str,
) -> Locked<'a, ()> {
    for _ in 0..64 {
        if let Some(held) = try_lock(m) {
            return held;
        }
        std::thread::yield_now();
    }
    // In a forked child, a holder that does not exist here never lets go.
    rcu.inner().gp.unless_holder_gone(what, which, holder);
    let start = Instant::now();
    let entry = Registered::new(holds, m as *const Mutex<()> as usize);
    let mut looked = start;
    let mut reported = false;
    let mut fork_looked = false;
    loop {
        if let Some(held) = try_lock(m) {
            drop(entry);
            return held;
        }
        std::thread::sleep(NAP);
        if !fork_looked && start.elapsed() >= FORKED_WAIT {
            fork_looked = true;
            let gp = &rcu.inner().gp;
            let f = gp.fork_check(what);
            if f.forked() {
                drop(entry);
                f.stuck_on_writers_lock(which, start.elapsed());
            }
            if gp.adopted_in_child() {
                gp.writers_lock_waited(f, which, start.elapsed());
            }
        }
        if looked.elapsed() < CYCLE_LOOK {
            continue;
        }
        looked = Instant::now();
        if let Some(threads) = entry.breaks_a_cycle() {
            drop(entry);
            panic!(
                "RcuHashMap: deadlock: a write made inside the closure of another map's or \
                 cache's write (`get_or_insert_with`, `update`, `remove_if`, `retain`, \
                 `RcuCache::get_or_insert_with`, which run it under one of their locks) waits \
                 for one of this map's locks, held by another thread that waits, from a closure \
                 of its own, for a lock this thread holds ({threads} threads, each waiting for \
                 the next: a lock-order deadlock). This write panics to break it; its thread's \
                 locks are released as it unwinds. Make such writes after the outer call \
                 returns, or nest maps in the same order on every thread"
            );
        }
        if !reported && start.elapsed() >= LONG_WAIT {
            reported = true;
            crate::sys::warn_loud(&format!(
                "rcu-reclaim: RcuHashMap: a write made inside the closure of another map's or \
                 cache's write has waited {} s for one of this map's locks: another thread's \
                 closure holds it that long (a slow get_or_insert_with loader?), or the two \
                 wait for each other through a lock of your own, which no check here can see. \
                 Still waiting",
                LONG_WAIT.as_secs()
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait(id: u64, holds: &[usize], wants: usize) -> Wait {
        Wait {
            id,
            holds: holds.to_vec(),
            wants,
        }
    }

    #[test]
    fn two_threads_each_holding_what_the_other_wants_are_a_cycle() {
        let waits = [wait(1, &[10], 20), wait(2, &[20], 10)];
        assert_eq!(cycle_through(&waits, 0), Some(vec![0, 1]));
        assert_eq!(cycle_through(&waits, 1), Some(vec![1, 0]));
    }

    #[test]
    fn a_chain_that_ends_at_a_running_thread_is_no_cycle() {
        // 30 is held by a thread that waits for nothing (no entry).
        let waits = [wait(1, &[10], 20), wait(2, &[20], 30)];
        assert_eq!(cycle_through(&waits, 0), None);
        assert_eq!(cycle_through(&waits, 1), None);
    }

    #[test]
    fn a_cycle_of_three_through_deeper_nesting_is_found() {
        let waits = [
            wait(1, &[10, 11], 20),
            wait(2, &[20], 30),
            wait(3, &[5, 30], 11),
        ];
        assert_eq!(cycle_through(&waits, 0), Some(vec![0, 1, 2]));
    }

    #[test]
    fn a_thread_waiting_on_a_cycle_it_is_not_in_leaves_it_to_them() {
        let waits = [wait(1, &[1], 10), wait(2, &[10], 20), wait(3, &[20], 10)];
        assert_eq!(cycle_through(&waits, 0), None);
        assert_eq!(cycle_through(&waits, 1), Some(vec![1, 2]));
    }
}
