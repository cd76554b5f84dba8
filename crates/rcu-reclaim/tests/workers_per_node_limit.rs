//! An absurd `workers_per_node` is a config error, not a process abort:
//! `usize::MAX` used to be accepted, and the first `call` spawned threads
//! until the process ran out of memory and aborted inside a library thread.

use rcu_reclaim::{Config, Error, Rcu};

#[test]
fn workers_per_node_of_usize_max_is_rejected() {
    match Rcu::new(Config::new().workers_per_node(usize::MAX)) {
        Err(Error::InvalidConfig(msg)) => assert!(msg.contains("workers_per_node"), "{msg}"),
        Err(e) => panic!("unexpected error: {e}"),
        Ok(rcu) => {
            // Before the fix: the process aborts here.
            rcu.call(|| {});
            rcu.barrier();
            panic!("workers_per_node(usize::MAX) was accepted");
        }
    }
}
