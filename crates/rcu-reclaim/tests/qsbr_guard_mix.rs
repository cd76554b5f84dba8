//! A plain guard on a QSBR domain, held by a registered thread
//! across its own quiescent-state report / offline / online transitions.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use rcu_reclaim::{Config, Flavor, Rcu, RcuCell, ReclaimSize};

const ALIVE: u64 = 0xA11C_E0A1_1CE0_A11C;

struct V(AtomicU64);
impl Drop for V {
    fn drop(&mut self) {
        self.0.store(0xDEAD, Ordering::SeqCst);
    }
}
impl ReclaimSize for V {
    fn reclaim_size(&self) -> usize {
        8
    }
}

fn writer(rcu: &Rcu, cell: &Arc<RcuCell<V>>, done: &Arc<AtomicBool>) -> thread::JoinHandle<()> {
    let (c, d, r) = (cell.clone(), done.clone(), rcu.clone());
    thread::spawn(move || {
        let old = c.replace(Box::new(V(AtomicU64::new(ALIVE))));
        r.synchronize();
        drop(old); // frees it: a grace period has elapsed
        d.store(true, Ordering::SeqCst);
    })
}

#[test]
fn plain_guard_across_quiescent_state() {
    let rcu = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
    let cell = Arc::new(RcuCell::new_in(
        &rcu,
        Some(Box::new(V(AtomicU64::new(ALIVE)))),
    ));
    let done = Arc::new(AtomicBool::new(false));
    let mut me = rcu.register_qsbr_thread();
    let g = rcu.read_lock();
    let v = cell.load(&g).unwrap();
    let w = writer(&rcu, &cell, &done);
    for _ in 0..200 {
        me.quiescent_state();
        thread::sleep(Duration::from_millis(1));
    }
    let freed = done.load(Ordering::SeqCst);
    let seen = v.0.load(Ordering::SeqCst);
    drop(g);
    w.join().unwrap();
    assert!(
        !freed && seen == ALIVE,
        "freed under a plain guard: done {freed}, value {seen:#x}"
    );
}

#[test]
fn plain_guard_across_offline_online() {
    let rcu = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
    let cell = Arc::new(RcuCell::new_in(
        &rcu,
        Some(Box::new(V(AtomicU64::new(ALIVE)))),
    ));
    let done = Arc::new(AtomicBool::new(false));
    let off = rcu.register_qsbr_thread().thread_offline();
    let g = rcu.read_lock();
    let v = cell.load(&g).unwrap();
    let mut me = off.thread_online();
    let w = writer(&rcu, &cell, &done);
    for _ in 0..100 {
        me.quiescent_state();
        let off = me.thread_offline();
        thread::sleep(Duration::from_millis(1));
        me = off.thread_online();
    }
    let freed = done.load(Ordering::SeqCst);
    let seen = v.0.load(Ordering::SeqCst);
    drop(g);
    w.join().unwrap();
    assert!(
        !freed && seen == ALIVE,
        "freed under a plain guard: done {freed}, value {seen:#x}"
    );
}

#[test]
fn plain_guard_then_register_and_drop_registration() {
    let rcu = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
    let cell = Arc::new(RcuCell::new_in(
        &rcu,
        Some(Box::new(V(AtomicU64::new(ALIVE)))),
    ));
    let done = Arc::new(AtomicBool::new(false));
    let g = rcu.read_lock();
    let v = cell.load(&g).unwrap();
    let w = writer(&rcu, &cell, &done);
    for _ in 0..100 {
        let mut me = rcu.register_qsbr_thread();
        me.quiescent_state();
        drop(me);
        thread::sleep(Duration::from_millis(1));
    }
    let freed = done.load(Ordering::SeqCst);
    let seen = v.0.load(Ordering::SeqCst);
    drop(g);
    w.join().unwrap();
    assert!(
        !freed && seen == ALIVE,
        "freed under a plain guard: done {freed}, value {seen:#x}"
    );
}
