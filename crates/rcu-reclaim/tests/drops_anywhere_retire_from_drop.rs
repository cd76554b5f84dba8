//! Values declared `drops_anywhere` whose `Drop` retires more values into
//! the same domain (`defer_drop`, `call`): a retiring thread frees ready
//! ones a few per retire (its drain), and a retire made from inside such a
//! drop ran the next drain step nested inside it, and so on, one drop
//! inside another, until the stack overflowed (the process aborted). Each
//! value must still be dropped exactly once and the backlog reach 0.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rcu_reclaim::{drops_anywhere, Config, Rcu, RcuCell};

static MADE: AtomicUsize = AtomicUsize::new(0);
static DROPPED: AtomicUsize = AtomicUsize::new(0);

/// A node whose drop retires a smaller one (and sometimes hands one to
/// `call`); its drop takes no lock, as `drops_anywhere` asks.
struct Node {
    rcu: Option<Rcu>,
    depth: u32,
    data: Vec<u8>,
}

rcu_reclaim::reclaim_size!(Node { data }; drops_anywhere);

impl Node {
    fn new(rcu: &Rcu, depth: u32) -> Node {
        MADE.fetch_add(1, Ordering::SeqCst);
        Node {
            rcu: Some(rcu.clone()),
            depth,
            data: vec![depth as u8; 64],
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        assert!(self.data.iter().all(|&b| b == self.depth as u8), "poison");
        DROPPED.fetch_add(1, Ordering::SeqCst);
        let rcu = self.rcu.take().expect("dropped once");
        if self.depth > 0 {
            rcu.defer_drop(Box::new(Node::new(&rcu, self.depth - 1)));
            if self.depth % 2 == 0 {
                let r2 = rcu.clone();
                rcu.call(move || drop(Node::new(&r2, 0)));
            }
        }
    }
}

fn storm_time() -> Duration {
    match std::env::var("RCU_RECLAIM_LONG_STRESS") {
        Ok(s) => Duration::from_secs(s.parse().unwrap_or(30)),
        Err(_) => Duration::from_millis(500),
    }
}

#[test]
fn drops_anywhere_values_that_retire_from_their_drop_do_not_nest_without_bound() {
    assert!(drops_anywhere::<Node>());
    for (what, config) in [
        ("default", Config::new()),
        (
            "retiring_thread_frees",
            Config::new().retiring_thread_frees(true),
        ),
        (
            "on_demand, retiring_thread_frees",
            Config::new().on_demand().retiring_thread_frees(true),
        ),
    ] {
        let rcu = Rcu::new(config).unwrap();
        let cell = RcuCell::new_in(&rcu, Box::new(Node::new(&rcu, 3)));
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < storm_time() {
            cell.store(Box::new(Node::new(&rcu, 3)));
            rcu.defer_drop(Box::new(Node::new(&rcu, 2)));
            n += 1;
            if n % 1024 == 0 {
                rcu.collect();
            }
        }
        drop(cell);
        for _ in 0..50 {
            rcu.barrier();
            if rcu.pending() == 0 && MADE.load(Ordering::SeqCst) == DROPPED.load(Ordering::SeqCst) {
                break;
            }
        }
        assert_eq!(
            (rcu.pending(), rcu.pending_bytes()),
            (0, 0),
            "{what}: backlog"
        );
        assert_eq!(
            MADE.load(Ordering::SeqCst),
            DROPPED.load(Ordering::SeqCst),
            "{what}: made vs dropped"
        );
        eprintln!("{what}: {n} stores");
    }
}
