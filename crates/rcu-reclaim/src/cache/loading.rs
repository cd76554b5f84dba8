//! Loads in flight: threads that miss the same key in
//! [`read_or_insert_with`](super::RcuCache::read_or_insert_with) make its
//! value once. The first to miss makes it (outside any lock or read-side
//! section); the others wait for that load to end, then look again (moka's
//! `get_with`). Keyed by the key's hash: two keys whose hashes collide
//! share a turn, and the one whose value was not made looks again and
//! takes the next. A thread that holds a turn (its `make` runs) never
//! waits for another's: two `make`s that each read the key the other
//! makes (of one cache or two) would wait for each other for ever.

use std::cell::Cell;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crossbeam_utils::CachePadded;

/// Shards of the table of loads in flight, by hash.
const SHARDS: usize = 16;

/// One load in flight: `ended` set and notified when it ends, to
/// whether its value was made and inserted (not abandoned by a panic): a
/// waiter that still misses the key after a made value makes its own
/// rather than wait again (see [`Begin::Waited`]).
struct Loading {
    ended: Mutex<Option<bool>>,
    woken: Condvar,
    /// The process whose thread loads: in a child forked meanwhile that
    /// thread does not exist, and the load never ends.
    pid: u32,
}

/// The loads in flight of a shard: each with the hash it makes.
type InFlight = Mutex<Vec<(u64, Arc<Loading>)>>;

/// The loads in flight of one cache.
pub(crate) struct Loads {
    shards: [CachePadded<InFlight>; SHARDS],
}

thread_local! {
    /// The turns this thread holds now (of any cache): inside a `make`,
    /// a miss waits for no other load.
    static HELD: Cell<usize> = const { Cell::new(0) };
}

/// Whether a miss may wait for another thread's load: not inside a
/// read-side section of any domain (the cache's, or another's: the `make`
/// waited for may wait for a grace period of it, which waits for this
/// thread, for ever; an online QSBR registration is such a section), not
/// inside a callback (the `make` may call `barrier`, which waits for it),
/// and not under one of the crate's locks (a `get_or_insert_with` loader
/// holds its map's stripe, which the `make` may write).
pub(crate) fn may_wait_for_a_load() -> bool {
    !crate::reader::in_any_section()
        && !crate::callbacks::in_callback()
        && crate::reclaim::reclaim_allowed()
}

/// What [`Loads::begin`] found.
pub(crate) enum Begin<'a> {
    /// This thread makes the value; the turn ends (waking the waiters)
    /// when it is dropped.
    Turn(Turn<'a>),
    /// Another thread's load of this hash ended: look again. `made`: that
    /// load made and inserted its value; a waiter that misses even so (the
    /// value was evicted at once, not cached at all for being heavier
    /// than the capacity, or the load was of another key of the same hash)
    /// makes its own without waiting again. Waiting for the next turn
    /// instead serialized the `make`s of a value that is never cached:
    /// 8 threads' `make`s of 5 ms ran one at a time, and a call waited
    /// through up to 22 of them (112 ms), more the more threads came.
    Waited { made: bool },
    /// This thread holds a turn already (a `make` that reads a cache):
    /// make this value too, without a turn or a wait.
    Alone,
}

/// This thread's turn to make the value of a hash.
pub(crate) struct Turn<'a> {
    loads: &'a Loads,
    hash: u64,
    loading: Arc<Loading>,
    /// The value was made and inserted ([`made`](Turn::made)).
    made: bool,
}

fn plain<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Loads {
    pub(crate) fn new() -> Self {
        Loads {
            shards: std::array::from_fn(|_| CachePadded::new(Mutex::new(Vec::new()))),
        }
    }

    fn shard(&self, hash: u64) -> &InFlight {
        // The high bits: the map's buckets use the low ones.
        &self.shards[(hash >> 60) as usize % SHARDS]
    }

    /// Takes the turn to make the value of `hash`, or waits for the thread
    /// that has it to end its load.
    pub(crate) fn begin(&self, hash: u64) -> Begin<'_> {
        if HELD.try_with(Cell::get).unwrap_or(1) > 0 {
            return Begin::Alone;
        }
        let pid = crate::reader::current_pid();
        let mut shard = plain(self.shard(hash));
        // Loads of a parent's threads, in a child forked while they ran:
        // nobody ends them here.
        shard.retain(|(_, l)| l.pid == pid);
        if let Some((_, other)) = shard.iter().find(|(h, _)| *h == hash) {
            let other = other.clone();
            drop(shard);
            let mut ended = plain(&other.ended);
            loop {
                if let Some(made) = *ended {
                    return Begin::Waited { made };
                }
                ended = other.woken.wait(ended).unwrap_or_else(|p| p.into_inner());
            }
        }
        let loading = Arc::new(Loading {
            ended: Mutex::new(None),
            woken: Condvar::new(),
            pid,
        });
        shard.push((hash, loading.clone()));
        drop(shard);
        let _ = HELD.try_with(|h| h.set(h.get() + 1));
        Begin::Turn(Turn {
            loads: self,
            hash,
            loading,
            made: false,
        })
    }

    /// Loads in flight (for tests).
    #[cfg(test)]
    pub(crate) fn in_flight(&self) -> usize {
        self.shards.iter().map(|s| plain(s).len()).sum()
    }
}

impl Turn<'_> {
    /// Ends the load with its value made and inserted (see
    /// [`Begin::Waited`]).
    pub(crate) fn made(mut self) {
        self.made = true;
    }
}

impl Drop for Turn<'_> {
    /// Ends the load (also when `make` or the insert panicked): takes it
    /// out of the table and wakes its waiters, who look again.
    fn drop(&mut self) {
        let _ = HELD.try_with(|h| h.set(h.get().saturating_sub(1)));
        {
            let mut shard = plain(self.loads.shard(self.hash));
            if let Some(i) = shard
                .iter()
                .position(|(_, l)| Arc::ptr_eq(l, &self.loading))
            {
                shard.swap_remove(i);
            }
        }
        *plain(&self.loading.ended) = Some(self.made);
        self.loading.woken.notify_all();
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// A turn taken and ended (also by a panic) leaves nothing in flight;
    /// a thread that holds a turn takes no other (nor waits); a second
    /// thread waits for the turn's end and is told to look again.
    #[test]
    fn turns_end_whole_and_wake_their_waiters() {
        let loads = Loads::new();
        let Begin::Turn(turn) = loads.begin(7) else {
            panic!("no turn on an empty table")
        };
        assert_eq!(loads.in_flight(), 1);
        assert!(matches!(loads.begin(7), Begin::Alone));
        assert!(matches!(loads.begin(8), Begin::Alone));
        std::thread::scope(|s| {
            let waiter = s.spawn(|| matches!(loads.begin(7), Begin::Waited { made: false }));
            std::thread::sleep(std::time::Duration::from_millis(20));
            drop(turn);
            assert!(waiter.join().unwrap());
        });
        // A load that made its value tells its waiters so.
        let Begin::Turn(turn) = loads.begin(7) else {
            panic!("no turn on an empty table")
        };
        std::thread::scope(|s| {
            let waiter = s.spawn(|| matches!(loads.begin(7), Begin::Waited { made: true }));
            std::thread::sleep(std::time::Duration::from_millis(20));
            turn.made();
            assert!(waiter.join().unwrap());
        });
        assert_eq!(loads.in_flight(), 0);
        let r = std::panic::catch_unwind(|| {
            let _turn = loads.begin(9);
            panic!("make failed");
        });
        assert!(r.is_err());
        assert_eq!(loads.in_flight(), 0);
        assert!(matches!(loads.begin(9), Begin::Turn(_)));
    }
}
