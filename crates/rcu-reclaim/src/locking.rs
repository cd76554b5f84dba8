//! # Where your code runs, what blocks, and the lock order
//!
//! RCU runs code you hand it — callbacks, destructors of deferred drops,
//! shrinkers, hooks — on threads and at times you do not choose, and some
//! of its calls wait for other threads. This page says exactly where, so a
//! program can hold its own locks around these calls without deadlocking.
//! Every rule below is backed by a test that hung before it held.
//!
//! ## Where your code runs
//!
//! | your code | runs on | holding |
//! |---|---|---|
//! | a callback ([`Rcu::call`](crate::Rcu::call)), a deferred drop | a worker (`rcu-cb-<domain>-n<node>.<k>`), or a thread inside [`barrier`](crate::Rcu::barrier), [`run_callbacks`](crate::Rcu::run_callbacks) / reclaim, or the drop of a domain's last handle | its shard's run lock: the thread is marked no-reclaim, so allocations in it never enter direct reclaim; and whatever read-side sections that thread is in (`run_callbacks` and reclaim run ready callbacks inside a section of their own domain; `barrier` and a last handle's drop, inside another domain's), so a callback should not wait for a grace period: on a worker the wait completes (holding up the node's other callbacks), but inside the caller's section of the same domain `synchronize` panics, naming that section, and of another domain it may wait for good |
//! | a deferred drop of a type that drops anywhere ([`drops_anywhere`](crate::drops_anywhere): no drop glue, or [`ReclaimSize::DROPS_ANYWHERE`](crate::ReclaimSize::DROPS_ANYWHERE)) | also inside `defer_drop`, [`RcuCell::store`](crate::RcuCell::store) and [`Retired::defer_drop`](crate::Retired::defer_drop) on the retiring thread (such a drop takes no lock and waits for nothing) | as above |
//! | the same, with [`Config::retiring_thread_frees`](crate::Config::retiring_thread_frees) | also inside `defer_drop`, [`RcuCell::store`](crate::RcuCell::store) and [`Retired::defer_drop`](crate::Retired::defer_drop) on the retiring thread | as above |
//! | the value's own destructor in `defer_drop`'s fallback (no bulk page could be had) | the retiring thread, after a grace period | nothing |
//! | [`Shrinker::scan`](crate::reclaim::Shrinker::scan) / `count` | the thread that reclaims: `rcu-kswapd`, an allocating thread over the budget's `min` (direct reclaim), `rcu-pressure`, or a caller of [`Reclaimer::reclaim`](crate::reclaim::Reclaimer::reclaim) | the budget's reclaim turn; marked no-reclaim |
//! | the OOM handler | the thread that reclaimed | the budget's reclaim turn |
//! | [`Config::on_callback_panic`](crate::Config::on_callback_panic) | the thread that ran the callback | as the callback |
//! | a [`PageAllocator`](crate::pages::PageAllocator) | a retiring thread | that thread's bulk-page buffer lock: a retire it makes into the same domain on that thread (`defer_drop*`, `call`) takes the no-page fallback |
//! | an [`RcuCache`](crate::RcuCache)'s weigher | the inserting thread: with no lock for [`insert`](crate::RcuCache::insert); for [`get_or_insert_with`](crate::RcuCache::get_or_insert_with), with `f`, as the map's closure below | as said |
//! | the closure of [`RcuHashMap::update`](crate::RcuHashMap::update) or [`get_or_insert_with`](crate::RcuHashMap::get_or_insert_with), and the key's `Eq` in any map write | the calling thread | a read-side section of the map's domain (so it cannot wait for a grace period: that panics) and the key's stripe lock, marked no-reclaim: it must not use the same map (that panics); it may write to another map, whose key's lock it then waits for, and if two threads so wait for each other's locks, one panics, naming the deadlock |
//!
//! Retiring calls ([`call`](crate::Rcu::call), `defer_drop*`,
//! `RcuCell::store`, `Retired::defer_drop`) never run a callback or a
//! destructor that might take a lock by default, as the kernel never runs
//! callbacks inside `call_rcu`: they may be made while holding any lock.
//! (They do drop values whose type drops anywhere: a wrong
//! `DROPS_ANYWHERE` declaration is the one way to break this.)
//!
//! ## What may wait for what
//!
//! | call | may wait for | so, never while holding |
//! |---|---|---|
//! | [`synchronize`](crate::Rcu::synchronize), `synchronize_expedited`, `cond_synchronize`, [`RcuCell::store_sync`](crate::RcuCell::store_sync), dropping a [`Retired`](crate::Retired) | every read-side section that began before it | a read-side section of the domain (panics), or a lock a reader holds inside its section |
//! | [`barrier`](crate::Rcu::barrier), dropping a domain's last handle | the above, and every callback queued before it (run on the caller or by workers) | a section (panics), a callback (panics; the last handle's drain moves to a thread), or a lock any callback or deferred `Drop` takes (a wait for a callback still running after [`Config::stall_timeout`](crate::Config::stall_timeout) is reported, naming its thread) |
//! | [`run_callbacks`](crate::Rcu::run_callbacks), [`Reclaimer::reclaim`](crate::reclaim::Reclaimer::reclaim) | a grace period and running callbacks, except inside a section or a callback, where they only run what is ready and never wait | a lock a callback or deferred `Drop` takes |
//! | an allocation under [`AccountingAlloc::enforce`](crate::reclaim::AccountingAlloc::enforce), [`MemoryBudget::check`](crate::reclaim::MemoryBudget::check) over `min` | direct reclaim (as `Reclaimer::reclaim`), and at most one second for a reclaim already running; inside a section of the budget's domain it never reclaims and never waits | a lock a shrinker blocks on, or a callback or deferred `Drop` takes: wrap such code in [`no_reclaim`](crate::reclaim::no_reclaim) (the kernel's `GFP_NOFS`) |
//! | [`prepare_fork`](crate::Rcu::prepare_fork) | the domain's threads to park (a worker parks between batches, once the callback or deferred `Drop` it is running returns); other threads' retires on their fast path to leave it, and, for about 10 ms at most, their slow paths (it lets its locks go and tries again; then it forks without that thread's page) | a section or a callback (both panic); a lock any callback or deferred `Drop` takes (the wait warns every 5 s); until its `ForkGuard` is resolved, any call on the same thread that would take one of the locks it holds panics, naming the guard; and, until then, a lock that another thread may hold while it retires (`call`, `defer_drop*`, stores, map and cache writes: those retires wait for the guard); it does not wait for map or cache writers to leave their locks (see *Forks and the maps' locks*) |
//! | [`Reclaimer::unregister`](crate::reclaim::Reclaimer::unregister), dropping an [`RcuCache`](crate::RcuCache) tied to a reclaimer, budget or pressure | a reclaim pass on another thread to finish calling the shrinker (its `count` or `scan`), for one second at most (then it warns, naming the shrinker, and returns); not inside reclaim, a callback or a section of the reclaimer's domain, where it does not wait | a lock the shrinker's `count` or `scan` takes |
//! | dropping a [`MemoryBudget`](crate::reclaim::MemoryBudget) or [`PressureMonitor`](crate::sources::PressureMonitor) (an [`RcuCache`](crate::RcuCache)'s `auto_pressure` included) | its thread to stop, which may be running a shrinker's `count` or `scan`, the OOM handler, the budget's usage function or the pressure source, for one second at most while that thread is asleep in the kernel (then it warns, naming the thread, and returns, the thread left to stop on its own), up to 30 s while it is on a CPU or waiting for one (a loaded machine's) or asleep in a wait for a grace period (which readers end, not the dropping thread); not on that thread, in a callback or in a section of its domain, where it is left to stop on its own at once | a lock that code takes |
//! | [`call`](crate::Rcu::call) | what `defer_drop*` may wait for (below): a callback is buffered in the thread's bulk page as a deferred drop is | as below |
//! | `call_sized` with bytes, `call_hurry` | when its CPU's shard holds more than 4,080 callbacks ready to run, the worker, for at most 2 ms per call (not in a callback or in reclaim) | — (bounded: a worker stuck on a lock the caller holds costs a delay, and no wait starts once the worker has spent 5 ms on one callback, asleep) |
//! | `defer_drop*`, `RcuCell::store`, `Retired::defer_drop` | a bulk page's allocation; a grace period only when no page can be had (never inside a section or an RCU callback); when its CPU's shard holds more than 16 pages ready to free, the worker, for at most 2 ms per page handed off (not in a callback or in reclaim); and, under memory pressure with more than `Config::pressure_throttle_bytes` (8 MiB) waiting, grace periods and the workers, for at most 10 ms per page (100 ms over twice that, 1 s over four times; not in a callback or in reclaim; a read-side section of the same domain, a foreign one excepted, waits when it ends instead (one of another domain waits in place, and holds that domain's grace periods up meanwhile), a QSBR registration when it next goes offline or reports a quiescent state; never `try_defer_drop`); and, with more than `Config::held_up_bytes` (512 KiB) waiting behind a grace period in progress for over `held_up_after` (500 µs), that grace period, for at most 2 ms, once per grace period (as the pressure wait: not in a callback or reclaim, paid at a section's end); and, in a domain whose garbage is bounded ([`Rcu::bound_garbage`](crate::Rcu::bound_garbage), which [`sources::auto_pressure`](crate::sources::auto_pressure) and [`sources::budget_from_cgroup`](crate::sources::budget_from_cgroup) set under a cgroup memory limit) while the garbage is over half of the room left below the mark, or in a domain with [`Config::max_pending_bytes`](crate::Config::max_pending_bytes) while it is over that cap, grace periods and the workers, for at most 1 s per retire, with or without a pressure signal (outside read-side sections; `Stats::headroom_waits`) | — (the waits are bounded or need no lock; a lock held across the call that a reader takes inside its section makes the pressure wait run its full bound; one that a deferred `Drop` or callback takes ends each wait once the worker has spent 5 ms on that item asleep in the kernel, which warns; the wait over a memory limit's allowance, 100 ms while memory is short and 500 ms over the limit's mark, as a free near the limit may sleep that long) |
//! | [`RcuHashMap`](crate::RcuHashMap) writes (`insert`, `remove`, `update`, `get_or_insert_with`, `clear`) | another write to the same stripe (one bucket's walk, or a resize linking that stripe's dummies), then what `defer_drop*` may wait for, with no map lock held (a resize holds only its own lock, which other writers try-lock; made inside another map's closure, it takes every stripe at once, without waiting, or leaves the resize to a later write); in a forked child, a stripe held by a thread of the parent panics at once; else a stripe wait lasting 2 s panics (forked without `prepare_fork`) or warns and waits on (a child `ForkGuard::child` made ready): see *Forks and the maps' locks* below | a lock your code in the map's closures takes |
//! | [`RcuCache`](crate::RcuCache) writes (`insert`, `get_or_insert_with`, `remove`, `clear`) | the map's write (above); then the cache's policy lock, held while the key is queued and entries are evicted (map writes under it, which never wait for a stripe: a busy entry is passed over; after a fork, a wait for it does what a stripe's does); then, with a budget, [`MemoryBudget::check`](crate::reclaim::MemoryBudget::check), with no cache lock held | a lock your weigher or `f` takes; a lock that code under 1 or 2 takes, when tied to a budget (the check may reclaim directly) |
//! | `read_lock`, `read_unlock_raw`, `start_poll`, `poll`, `pending*`, `RcuHashMap`'s `get`, `contains_key` and `iter`, `RcuCache`'s `get`, `len` and `bytes` | nothing | — |
//! | `stats` | each shard's queue lock and fast mode's clock, in turn, for a few loads each (no wait of the library's holds them longer) | — |
//!
//! A reader that holds up a grace period longer than
//! [`Config::stall_timeout`](crate::Config::stall_timeout) is reported with
//! its thread name, through `tracing` and on standard error when no
//! subscriber is installed: a wait on a reader is never silent.
//!
//! ## Signal handlers
//!
//! A signal handler may take a read-side section
//! ([`read_lock`](crate::Rcu::read_lock), a guard's
//! [`RcuCell::load`](crate::RcuCell::load), a map's `get`), nested in a
//! section of the thread it interrupted or not, **on a thread already
//! registered in that domain**: by
//! [`register_thread`](crate::Rcu::register_thread), or by any earlier
//! section of that domain on the thread. A thread's first section
//! registers it, and registering allocates: a handler that interrupted
//! `malloc` on an unregistered thread would wait for good on `malloc`'s
//! own lock. So register each thread a handler may run on (at its start,
//! before the signal can arrive), as liburcu asks of `rcu_register_thread`.
//! Nothing else is async-signal-safe: `call`, `defer_drop*`, stores and
//! the waits allocate or take locks. The library's own threads run with
//! every signal blocked, so a handler never runs on them.
//!
//! ```
//! let rcu = rcu_reclaim::Rcu::global();
//! // At the start of every thread whose signals may run a handler that reads:
//! rcu.register_thread();
//! // ...then, in the handler, a section costs what it costs anywhere:
//! let guard = rcu.read_lock();
//! drop(guard);
//! ```
//!
//! ## The lock order
//!
//! Inside the library, locks are taken only in this order (a lock may be
//! taken while holding only locks above it):
//!
//! 1. a budget's reclaim turn (`MemoryBudget`, one reclaim at a time; a
//!    direct reclaimer waits at most one second for it);
//! 2. a shard's run lock, held while its callbacks run (by index; a second
//!    one only with a try-lock);
//! 3. the domain's grace-period lock (whoever runs a grace period holds it
//!    while it waits for readers; a read-side section takes no lock);
//! 4. a thread's bulk-page buffer lock;
//! 5. the domain's list of pages left by exited threads;
//! 6. a shard's queue state (by index);
//! 7. leaves, taken alone: a reader slot's owner name, the pressure clock,
//!    the grace-period thread's state, the workers' thread list (then a
//!    node's state), a budget's wake-up
//!    state, a monitor's counters, a reclaimer's shrinker list.
//!
//! A retiring call, often made inside a read-side section, waits for none
//! of these held by a background thread: it takes a shard's queue state
//! (6) only with a try-lock until its page is full (a page that is due
//! keeps filling and goes at a later retire), and it asks the running
//! grace-period thread for work by ringing a futex doorbell, without its
//! state lock. A section blocked on a lock whose holder had lost its CPU
//! held every grace period up for milliseconds.
//!
//! An [`RcuHashMap`](crate::RcuHashMap)'s locks (its resize lock, then
//! one of its stripe locks) sit with your locks, above 3–7. An
//! [`RcuCache`](crate::RcuCache)'s policy lock sits above its map's: a
//! writer evicts under it, and its map writes try-lock the stripes (an
//! entry whose stripe another thread holds, a `get_or_insert_with`
//! closure that may wait for this policy lock through a map of yours, is
//! passed over, never waited for) and take the resize lock. Its shrinker
//! (under 1) only try-locks it and reports a stop,
//! and a write releases it before checking the budget, so direct reclaim
//! never runs under it.
//!
//! Your locks sit below 1 and 2 (shrinkers and callbacks take them) and
//! above 3–7 (every retiring call may take those, none of which runs your
//! code). The rules in the tables above follow: never wait on 1, 2 or a
//! grace period while holding a lock that code under 1 or 2 takes.
//! Shrinkers take their locks with a try-lock and report what they could
//! not scan, as the kernel's do, so reclaim never waits for a lock held by
//! the thread it reclaims for. `prepare_fork` takes 2, 3, the forking
//! thread's own 4, 5 and 6 in that order and holds them across `fork()`;
//! in the child, another thread's buffer caught locked (its thread does
//! not exist there) is skipped for ever, its page leaked. In a child
//! forked *without* `prepare_fork`, where a thread of the parent may have
//! held any of these at the fork (and does not exist there), the
//! grace-period lock, the shards' run locks, and every lock and other
//! thread's retire that `barrier`, a flush or `stats` waits for are given
//! up on after 2 s with a panic naming `prepare_fork`, rather than waited
//! for in silence. (The locks of maps and caches, which `prepare_fork`
//! does not take: *Forks and the maps' locks*, below.)
//!
//! The library's background threads — the grace-period thread
//! (`rcu-gp-<domain>`) and the workers — never enter direct reclaim, and
//! no thread allocates under a lock that direct reclaim could need.
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use rcu_reclaim::Rcu;
//!
//! // A deferred destructor that takes a lock the retiring thread holds:
//! // fine, retiring calls never run other objects' destructors.
//! struct Entry(Arc<Mutex<u64>>);
//! rcu_reclaim::reclaim_size!(Entry {}); // its inline bytes (the Arc is shared)
//! impl Drop for Entry {
//!     fn drop(&mut self) {
//!         *self.0.lock().unwrap() += 1;
//!     }
//! }
//! let rcu = Rcu::new(Default::default()).unwrap();
//! let freed = Arc::new(Mutex::new(0));
//! {
//!     let _held = freed.lock().unwrap();
//!     for _ in 0..10_000 {
//!         rcu.defer_drop(Box::new(Entry(freed.clone())));
//!     }
//! } // release the lock before waiting for the destructors:
//! rcu.barrier();
//! assert_eq!(*freed.lock().unwrap(), 10_000);
//! ```
//!
//! ## Forks and the maps' locks
//!
//! `prepare_fork` does not take the locks of an
//! [`RcuHashMap`](crate::RcuHashMap) or an [`RcuCache`](crate::RcuCache):
//! the domain does not know its maps, and a writer holds its key's stripe
//! (a cache's writer, its policy lock) with no lock of the domain, around
//! its walk and its link or unlink, and the closure that `update` or
//! `get_or_insert_with` runs under it (its retire comes after, with no
//! map lock, and is what waits for a `ForkGuard`). So a fork, prepared or
//! not, can
//! catch another thread of the parent holding one, mid-write; that thread
//! does not exist in the child, and the lock is never released there.
//! Reads take no lock and are unaffected; a child's write that needs that
//! lock cannot proceed. A write checks for this only once its try-lock
//! has failed:
//!
//! - each holder notes its thread beside the lock (a token, two stores
//!   per write) and clears it before it lets go; a wait in a forked
//!   child, prepared or not, that finds the lock held by a thread of the
//!   parent panics at once, saying so and naming the fix;
//! - a holder caught at the fork before it noted itself is not known:
//!   in a child forked *without* `prepare_fork`, a wait for a stripe or a
//!   policy lock gives up after 2 s with a panic that says so and names
//!   the fix (a closure of the child's own threads that held the lock as
//!   long would be taken for the same: such a child's domain is not
//!   prepared anyway, as with the domain's own locks in *The lock order*);
//!   in a child that `ForkGuard::child`
//!   made ready, where the holder may as well be a closure of the child's
//!   own threads that runs that long (a slow `get_or_insert_with`
//!   loader), the wait says so after 2 s, once, on standard error (and
//!   through `tracing`), and waits on.
//!
//! The fix: fork only while no thread writes the maps and caches that the
//! child will write, or write in the child only to maps and caches made
//! after the fork (reading the others is fine).
