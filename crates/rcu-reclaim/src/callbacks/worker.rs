//! Worker threads: one per CPU, pinned to it, serving that CPU's shard (the
//! default, named `rcu-cb-<domain>-c<cpu>`), or `workers_per_node` per NUMA
//! node serving the node's shards (`rcu-cb-<domain>-n<node>.<k>`); each runs
//! ready callbacks and pages in batches, yielding between batches. Started
//! on first use; stopped with the domain.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::thread::{self, JoinHandle, ThreadId};
use std::time::{Duration, Instant};

use super::EngineHost;
use crate::sync::lock_std as lock;

/// How long a worker runs batches before yielding the CPU.
const YIELD_SLICE: Duration = Duration::from_millis(1);

/// How long `pause` waits for workers to park between its warnings.
const PAUSE_WARN_AFTER: Duration = Duration::from_secs(5);

#[derive(Default)]
struct NodeState {
    work: bool,
    shutdown: bool,
    /// Set by `pause` (before `fork()`): workers park holding no lock.
    pause: bool,
    /// Workers of the node that are running, and how many are parked.
    running: usize,
    parked: usize,
}

#[derive(Default)]
struct Node {
    state: Mutex<NodeState>,
    wake: Condvar,
    /// Signalled when a worker parks for `pause`.
    parked: Condvar,
    /// `state.pause`, readable without the lock: a worker running batches
    /// checks it between them.
    pausing: AtomicBool,
}

fn wait<'a, T>(cv: &Condvar, g: std::sync::MutexGuard<'a, T>) -> std::sync::MutexGuard<'a, T> {
    match cv.wait(g) {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

#[derive(Default)]
struct Threads {
    handles: Vec<JoinHandle<()>>,
    ids: Vec<ThreadId>,
    started: bool,
    stopped: bool,
}

pub(crate) struct Workers {
    /// Set once the threads were started (or could not be): the fast check.
    started: AtomicBool,
    /// One entry per group of shards (a CPU, or a node).
    nodes: Arc<[Node]>,
    /// The shards of each group.
    groups: Arc<[Vec<usize>]>,
    /// Pin each group's workers to its CPU (groups of one CPU).
    pin: bool,
    per_node: usize,
    threads: Mutex<Threads>,
}

impl Workers {
    /// `groups[g]`: the shards group `g`'s workers serve; `pin`: pin each
    /// group's workers to the CPU of its one shard.
    pub(crate) fn new(groups: Vec<Vec<usize>>, per_node: usize, pin: bool) -> Self {
        Workers {
            started: AtomicBool::new(false),
            nodes: (0..groups.len()).map(|_| Node::default()).collect(),
            groups: groups.into(),
            pin,
            per_node: per_node.max(1),
            threads: Mutex::new(Threads::default()),
        }
    }

    /// Starts the workers if they are not running yet.
    pub(crate) fn ensure_started<H: EngineHost>(&self, inner: &Arc<H>) {
        if self.started.load(Ordering::Acquire) {
            return;
        }
        let mut t = self.lock_threads(inner.gp());
        self.started.store(true, Ordering::Release);
        if t.started || t.stopped {
            return;
        }
        t.started = true;
        for node in 0..self.nodes.len() {
            for k in 0..self.per_node {
                let nodes = self.nodes.clone();
                let groups = self.groups.clone();
                let pin = self.pin.then(|| groups[node].first().copied()).flatten();
                let domain: Weak<dyn EngineHost> = Arc::downgrade(inner) as Weak<H>;
                // Counted before the thread starts, so `pause` never misses it.
                lock(&self.nodes[node].state).running += 1;
                // Under `threads` (a std lock, unmarked): no direct
                // reclaim from the spawn's allocations.
                let spawned = crate::sync::with_flag(&crate::sync::NO_RECLAIM, || {
                    let name = if pin.is_some() {
                        format!("rcu-cb-{}-c{node}", inner.id())
                    } else {
                        format!("rcu-cb-{}-n{node}.{k}", inner.id())
                    };
                    crate::sys::spawn_quiet(thread::Builder::new().name(name), move || {
                        if let Some(cpu) = pin {
                            pin_to_cpu(cpu);
                        }
                        run(&nodes[node], &groups[node], &domain)
                    })
                });
                match spawned {
                    Ok(h) => {
                        t.ids.push(h.thread().id());
                        t.handles.push(h);
                    }
                    // Callbacks still run: the grace-period thread, barrier and
                    // domain drop invoke them too.
                    Err(e) => {
                        lock(&self.nodes[node].state).running -= 1;
                        crate::sys::warn_loud(&format!(
                            "rcu-reclaim: cannot start a callback worker on node {node}: {e}; \
                             the grace-period thread, barrier and the domain's drop run \
                             callbacks instead"
                        ))
                    }
                }
            }
        }
    }

    /// Takes `threads` for [`ensure_started`](Self::ensure_started). A
    /// `ForkGuard` holds it from `prepare_fork` until it is resolved, so
    /// the first retire of a domain waits for the guard: after
    /// [`FORK_GUARD_WAIT`](crate::gp::FORK_GUARD_WAIT) it says that the
    /// guard was never resolved (a guard leaked with `mem::forget` stops
    /// the domain for good), as a grace period's wait does, and waits on.
    /// It waited in silence before. The guard's own thread panics instead
    /// (`lock`).
    fn lock_threads(&self, gp: &crate::gp::GracePeriods) -> std::sync::MutexGuard<'_, Threads> {
        #[cfg(not(loom))]
        if !crate::sync::holds_fork_locks() {
            if let Some(t) = crate::sync::try_lock_std(&self.threads) {
                return t;
            }
            if gp.held_for_fork() {
                return crate::sync::lock_std_within(
                    &self.threads,
                    crate::gp::FORK_GUARD_WAIT,
                    |waited| {
                        gp.warn_fork_guard_unresolved(
                            "a retire starting the callback workers",
                            waited,
                        );
                        lock(&self.threads)
                    },
                );
            }
        }
        #[cfg(loom)]
        let _ = gp;
        lock(&self.threads)
    }

    /// Tells `node`'s workers that a shard has work ready.
    pub(crate) fn wake(&self, node: usize) {
        let n = &self.nodes[node];
        lock(&n.state).work = true;
        n.wake.notify_one();
    }

    /// Whether `node`'s workers have been told of work they have not
    /// started on yet.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn work_requested(&self, node: usize) -> bool {
        lock(&self.nodes[node].state).work
    }

    /// Parks every worker where it holds no lock (before `fork()`); returns
    /// once all running workers are parked. A worker parks between
    /// batches, so a callback or deferred `Drop` that never returns (one
    /// waiting for a lock the forking thread holds) keeps it from parking:
    /// every `PAUSE_WARN_AFTER` the wait says so on standard error, naming
    /// the likely cause, rather than hanging in silence.
    pub(crate) fn pause(&self) {
        let start = Instant::now();
        let mut warned = 0u32;
        for n in self.nodes.iter() {
            let mut st = lock(&n.state);
            st.pause = true;
            n.pausing.store(true, Ordering::Relaxed);
            n.wake.notify_all();
            while st.parked < st.running && !st.shutdown {
                st = match n.parked.wait_timeout(st, PAUSE_WARN_AFTER) {
                    Ok((g, _)) => g,
                    Err(p) => p.into_inner().0,
                };
                let waited = start.elapsed();
                if waited >= PAUSE_WARN_AFTER * (warned + 1) {
                    warned += 1;
                    crate::sys::warn_loud(&format!(
                        "rcu-reclaim: prepare_fork() has waited {} s for a callback worker to \
                         park: a callback or deferred Drop has not returned. If it waits for a \
                         lock the forking thread holds, prepare_fork() never returns: call it \
                         without holding any lock that a callback or deferred Drop takes",
                        waited.as_secs()
                    ));
                }
            }
        }
    }

    /// Lets paused workers run again (in the parent after `fork()`).
    pub(crate) fn resume(&self) {
        for n in self.nodes.iter() {
            lock(&n.state).pause = false;
            n.pausing.store(false, Ordering::Relaxed);
            n.wake.notify_all();
        }
    }

    /// Holds the workers' state across `fork()` (after `pause`): a thread
    /// that wakes a worker takes its group's lock for a moment, and one
    /// caught holding it at the fork would leave it held for ever in the
    /// child, whose `reset_in_child` then never returned. `threads` first,
    /// as `ensure_started` takes them.
    #[cfg(not(loom))]
    pub(crate) fn hold_for_fork(&self) -> WorkersForkHeld<'_> {
        use crate::sync::{lock_for_fork, LockedAll};
        let threads = lock_for_fork(&self.threads);
        let nodes = LockedAll::new(self.nodes.iter().map(|n| lock_for_fork(&n.state)).collect());
        WorkersForkHeld {
            workers: self,
            nodes,
            threads,
        }
    }
}

/// The workers' state, held across `fork()` ([`Workers::hold_for_fork`]).
/// Fields drop in declaration order, the reverse of the order they were
/// taken in: the groups' locks, then `threads`.
#[cfg(not(loom))]
pub(crate) struct WorkersForkHeld<'a> {
    workers: &'a Workers,
    nodes: crate::sync::LockedAll<'a, NodeState>,
    threads: crate::sync::ForkHeld<'a, Threads>,
}

#[cfg(not(loom))]
impl WorkersForkHeld<'_> {
    /// In the child after `fork()`: the workers do not exist there. Forget
    /// them (their handles are leaked), so `ensure_started` starts new ones;
    /// the new workers look at every shard once.
    pub(crate) fn reset_in_child(&mut self) {
        let t = &mut *self.threads;
        for h in t.handles.drain(..) {
            std::mem::forget(h);
        }
        t.ids.clear();
        t.started = false;
        self.workers.started.store(false, Ordering::Release);
        for (n, st) in self.workers.nodes.iter().zip(self.nodes.iter_mut()) {
            st.pause = false;
            n.pausing.store(false, Ordering::Relaxed);
            st.running = 0;
            st.parked = 0;
            st.work = true;
        }
    }
}

impl Workers {
    /// Stops every worker and joins those that are not the calling thread.
    pub(crate) fn shutdown(&self) {
        for n in self.nodes.iter() {
            lock(&n.state).shutdown = true;
            n.wake.notify_all();
        }
        let (handles, ids) = {
            let mut t = lock(&self.threads);
            t.stopped = true;
            (std::mem::take(&mut t.handles), std::mem::take(&mut t.ids))
        };
        let me = thread::current().id();
        for (h, id) in handles.into_iter().zip(ids) {
            if id != me {
                let _ = h.join();
            }
        }
    }
}

/// Pins the calling thread to `cpu`, if the process may run there.
fn pin_to_cpu(cpu: usize) {
    // SAFETY: `cpu_set_t` is plain data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid set; 0 is the calling thread.
    if unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) } != 0 {
        return;
    }
    // SAFETY: `set` is a valid set; CPU_ISSET checks the index against its size.
    if cpu >= libc::CPU_SETSIZE as usize || !unsafe { libc::CPU_ISSET(cpu, &set) } {
        return;
    }
    // SAFETY: as above.
    unsafe {
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(cpu, &mut set);
    }
    // SAFETY: `set` is a valid set; 0 is the calling thread. Failure leaves
    // the thread unpinned, which is only slower.
    let _ = unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) };
}

fn run(node_slot: &Node, cpus: &[usize], domain: &Weak<dyn EngineHost>) {
    struct Running<'a>(&'a Node);
    impl Drop for Running<'_> {
        fn drop(&mut self) {
            lock(&self.0.state).running -= 1;
            self.0.parked.notify_all();
        }
    }
    let _running = Running(node_slot);
    // Workers never enter direct reclaim: reclaim may wait for the batch
    // this worker runs (callbacks run under the shard's `invoke` lock,
    // which marks the thread anyway).
    crate::sync::NO_RECLAIM.with(|c| c.set(true));
    loop {
        {
            let mut st = lock(&node_slot.state);
            loop {
                if st.shutdown {
                    return;
                }
                if st.pause {
                    st.parked += 1;
                    node_slot.parked.notify_all();
                    st = wait(&node_slot.wake, st);
                    st.parked -= 1;
                } else if st.work {
                    break;
                } else {
                    st = wait(&node_slot.wake, st);
                }
            }
            st.work = false;
        }
        let Some(inner) = domain.upgrade() else {
            return;
        };
        let cbs = inner.callbacks();
        let mut slice = Instant::now();
        loop {
            let mut ran = false;
            for &cpu in cpus {
                if cbs.has_ready(inner.gp(), cpu) {
                    cbs.invoke_for_worker(inner.gp(), cpu, Some(cbs.params.blimit));
                    ran = true;
                    // A `pause` (for `fork()`) waits for this worker to
                    // park: under a steady stream of ready work this loop
                    // would never end, so park between batches, holding no
                    // lock, and look at the shards again after the resume.
                    if node_slot.pausing.load(Ordering::Relaxed) {
                        lock(&node_slot.state).work = true;
                        ran = false;
                        break;
                    }
                    // Between batches, give the CPU away once per slice
                    // (the kernel's cond_resched()): yielding after every
                    // batch lets busy threads starve the worker, and the
                    // garbage it should free piles up.
                    if slice.elapsed() >= YIELD_SLICE {
                        thread::yield_now();
                        slice = Instant::now();
                    }
                }
            }
            if !ran {
                break;
            }
        }
        // May be the last handle: the domain's drop then runs here.
        drop(inner);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use crate::{Config, Rcu};

    /// In a child forked without `prepare_fork` while a thread of the
    /// parent held a worker group's lock, a retire that wakes that group
    /// (its producer throttle) gives up within seconds, naming the fix,
    /// as the domain's other locks do; it waited for ever (an
    /// AddressSanitizer run of `audit_core` on two loaded cores caught a
    /// child there, in `Workers::wake` under `throttle_producer`).
    #[test]
    #[cfg_attr(miri, ignore = "Miri cannot fork")]
    fn waking_workers_in_a_child_forked_unprepared_gives_up_on_a_held_lock() {
        let rcu = Rcu::new(Config::new()).unwrap();
        let inner = rcu.inner().clone();
        let held = inner.clone();
        crate::unprepared_fork::child_gives_up(
            move |wait| {
                let _st = super::lock(&held.callbacks.workers.nodes[0].state);
                wait();
            },
            || {
                // As a retire sets it up (`Rcu::try_push_entry`).
                let _forked = crate::sync::ForkedWaits::scope(inner.gp.fork_check("a retire"));
                inner.callbacks.workers.wake(0);
            },
            &["a retire"],
        );
        rcu.barrier();
    }
}
