//! Worker threads: `workers_per_node` per NUMA node (one by default), each
//! running the ready callbacks and pages of its node's shards in batches,
//! yielding between batches. Started on first use; stopped with the domain.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::thread::{self, JoinHandle, ThreadId};
use std::time::{Duration, Instant};

use crate::domain::Inner;
use crate::sync::lock_std as lock;

/// How long a worker runs batches before yielding the CPU.
const YIELD_SLICE: Duration = Duration::from_millis(1);

#[derive(Default)]
struct NodeState {
    work: bool,
    shutdown: bool,
}

#[derive(Default)]
struct Node {
    state: Mutex<NodeState>,
    wake: Condvar,
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
    nodes: Arc<[Node]>,
    per_node: usize,
    threads: Mutex<Threads>,
}

impl Workers {
    pub(crate) fn new(nodes: usize, per_node: usize) -> Self {
        Workers {
            started: AtomicBool::new(false),
            nodes: (0..nodes).map(|_| Node::default()).collect(),
            per_node: per_node.max(1),
            threads: Mutex::new(Threads::default()),
        }
    }

    /// Starts the workers if they are not running yet.
    pub(crate) fn ensure_started(&self, inner: &Arc<Inner>) {
        if self.started.load(Ordering::Acquire) {
            return;
        }
        let mut t = lock(&self.threads);
        self.started.store(true, Ordering::Release);
        if t.started || t.stopped {
            return;
        }
        t.started = true;
        for node in 0..self.nodes.len() {
            for k in 0..self.per_node {
                let nodes = self.nodes.clone();
                let domain = Arc::downgrade(inner);
                let spawned = thread::Builder::new()
                    .name(format!("rcu-cb-{}-n{node}.{k}", inner.id))
                    .spawn(move || run(&nodes[node], node, &domain));
                match spawned {
                    Ok(h) => {
                        t.ids.push(h.thread().id());
                        t.handles.push(h);
                    }
                    // Callbacks still run: the grace-period thread, barrier and
                    // domain drop invoke them too.
                    Err(e) => {
                        tracing::warn!(error = %e, node, "rcu-reclaim: cannot start a callback worker")
                    }
                }
            }
        }
    }

    /// Tells `node`'s workers that a shard has work ready.
    pub(crate) fn wake(&self, node: usize) {
        let n = &self.nodes[node];
        lock(&n.state).work = true;
        n.wake.notify_one();
    }

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

fn run(node_slot: &Node, node: usize, domain: &Weak<Inner>) {
    loop {
        {
            let mut st = lock(&node_slot.state);
            while !st.work && !st.shutdown {
                st = match node_slot.wake.wait(st) {
                    Ok(g) => g,
                    Err(p) => p.into_inner(),
                };
            }
            if st.shutdown {
                return;
            }
            st.work = false;
        }
        let Some(inner) = domain.upgrade() else {
            return;
        };
        let cbs = &inner.callbacks;
        let mut slice = Instant::now();
        loop {
            let mut ran = false;
            for &cpu in cbs.topology.cpus_of(node) {
                if cbs.has_ready(&inner, cpu) {
                    cbs.invoke_ready(&inner, cpu, Some(cbs.params.blimit));
                    ran = true;
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
