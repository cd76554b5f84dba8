//! Helpers shared by the integration tests.
#![allow(dead_code)] // each test crate uses its own subset

use std::sync::mpsc;
use std::thread;

use rcu_reclaim::{Config, Flavor, Rcu};

/// A domain of each flavor this machine offers (mb always; memb where
/// `membarrier` registers).
pub fn domains() -> Vec<Rcu> {
    let mut v = vec![Rcu::new(Config::new().flavor(Flavor::Mb)).unwrap()];
    if let Ok(memb) = Rcu::new(Config::new().flavor(Flavor::Memb)) {
        v.push(memb);
    }
    v
}

/// Holds a read-side section of `rcu` on another thread until the returned
/// sender fires (or is dropped).
pub fn hold_reader(rcu: &Rcu) -> (mpsc::Sender<()>, thread::JoinHandle<()>) {
    let (ready_tx, ready_rx) = mpsc::channel();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let r = rcu.clone();
    let h = thread::spawn(move || {
        let _g = r.read_lock();
        ready_tx.send(()).unwrap();
        let _ = stop_rx.recv();
    });
    ready_rx.recv().unwrap();
    (stop_tx, h)
}
