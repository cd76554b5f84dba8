//! The domain's grace-period thread: runs grace periods that
//! [`Rcu::start_poll`] asked for, so polled waiters make progress without
//! anyone calling `synchronize`. Started on first request; stopped when the
//! domain is dropped.

use std::sync::{Arc, Condvar, Mutex, Weak};
use std::thread::{self, JoinHandle, ThreadId};

use crate::domain::{Inner, Rcu};
use crate::sync::lock;

#[derive(Default)]
struct State {
    /// Highest sequence value asked for.
    requested: u64,
    shutdown: bool,
    handle: Option<JoinHandle<()>>,
    thread: Option<ThreadId>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

#[derive(Default)]
pub(crate) struct GpThread {
    shared: Arc<Shared>,
}

impl GpThread {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Asks for grace periods until the sequence reaches `target`.
    pub(crate) fn request(&self, rcu: &Rcu, target: u64) {
        let mut st = lock(&self.shared.state);
        if st.shutdown {
            return;
        }
        st.requested = st.requested.max(target);
        if st.handle.is_none() {
            let shared = self.shared.clone();
            let weak = Arc::downgrade(rcu.inner());
            let spawned = thread::Builder::new()
                .name(format!("rcu-gp-{}", rcu.id()))
                .spawn(move || run(&shared, &weak));
            match spawned {
                Ok(h) => {
                    st.thread = Some(h.thread().id());
                    st.handle = Some(h);
                }
                Err(e) => {
                    // No thread: run the grace period here instead, so the
                    // cookie still completes; a later request tries again.
                    drop(st);
                    tracing::warn!(error = %e, "rcu-reclaim: cannot start the grace-period thread; running the grace period on the caller");
                    rcu.wait_for_seq_normal(target);
                    return;
                }
            }
        }
        self.shared.wake.notify_one();
    }

    /// Stops the thread; joins it unless called from it.
    pub(crate) fn shutdown(&self) {
        let handle = {
            let mut st = lock(&self.shared.state);
            st.shutdown = true;
            self.shared.wake.notify_one();
            if st.thread == Some(thread::current().id()) {
                None // the thread dropped the last handle itself; it returns next
            } else {
                st.handle.take()
            }
        };
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

fn run(shared: &Shared, domain: &Weak<Inner>) {
    loop {
        let requested = {
            let st = lock(&shared.state);
            if st.shutdown {
                return;
            }
            st.requested
        };
        let Some(inner) = domain.upgrade() else {
            return;
        };
        if !inner.gp.done(requested) {
            Rcu::from_inner(inner).wait_for_seq_normal(requested);
            continue;
        }
        // Dropped outside the lock: it may be the last handle, whose drop
        // calls `shutdown`.
        drop(inner);
        let st = lock(&shared.state);
        if !st.shutdown && st.requested == requested {
            drop(shared.wake.wait(st));
        }
    }
}
