//! A plain guard on a QSBR domain, held by a registered thread
//! across its own quiescent-state report / offline / online transitions.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use rcu_reclaim::{Config, Flavor, Rcu, RcuCell};

mod common;
use common::poison::{Word, ALIVE};

fn writer(rcu: &Rcu, cell: &Arc<RcuCell<Word>>, done: &Arc<AtomicBool>) -> thread::JoinHandle<()> {
    let (c, d, r) = (cell.clone(), done.clone(), rcu.clone());
    thread::spawn(move || {
        let old = c.replace(Word::alive());
        r.synchronize();
        drop(old); // frees it: a grace period has elapsed
        d.store(true, Ordering::SeqCst);
    })
}

/// A QSBR domain, a cell of it holding a live word, and the flag
/// `writer` sets once it has freed that word.
fn qsbr_domain_and_cell() -> (Rcu, Arc<RcuCell<Word>>, Arc<AtomicBool>) {
    let rcu = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
    let cell = Arc::new(RcuCell::new_in(&rcu, Some(Word::alive())));
    (rcu, cell, Arc::new(AtomicBool::new(false)))
}

/// The word read under the plain guard was neither freed (`freed`: the
/// writer's flag) nor poisoned (`seen`) while the guard was held.
fn assert_not_freed(freed: bool, seen: u64) {
    assert!(
        !freed && seen == ALIVE,
        "freed under a plain guard: done {freed}, value {seen:#x}"
    );
}

#[test]
fn plain_guard_across_quiescent_state() {
    let (rcu, cell, done) = qsbr_domain_and_cell();
    let mut me = rcu.register_qsbr_thread();
    let g = rcu.read_lock();
    let v = cell.load(&g).unwrap();
    let w = writer(&rcu, &cell, &done);
    for _ in 0..200 {
        me.quiescent_state();
        thread::sleep(Duration::from_millis(1));
    }
    let freed = done.load(Ordering::SeqCst);
    let seen = v.get();
    drop(g);
    w.join().unwrap();
    assert_not_freed(freed, seen);
}

#[test]
fn plain_guard_across_offline_online() {
    let (rcu, cell, done) = qsbr_domain_and_cell();
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
    let seen = v.get();
    drop(g);
    w.join().unwrap();
    assert_not_freed(freed, seen);
}

#[test]
fn plain_guard_then_register_and_drop_registration() {
    let (rcu, cell, done) = qsbr_domain_and_cell();
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
    let seen = v.get();
    drop(g);
    w.join().unwrap();
    assert_not_freed(freed, seen);
}
