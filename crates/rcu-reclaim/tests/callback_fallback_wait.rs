//! A deferred drop made by a callback that `run_callbacks` (reclaim's
//! hook) runs: page allocation is forbidden there, and the no-page
//! fallback waited for a grace period of the domain retired into, inside
//! the callback. A thread inside a section of that domain (or online on
//! it, QSBR) that waits in a barrier of the callback's domain then waited
//! for good. Found by `tests/fuzz_safe_api.rs` (seed 300130, eight threads, under
//! AddressSanitizer: an online QSBR thread stalled for over 21 s).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use rcu_reclaim::pressure::NodeMask;
use rcu_reclaim::{Config, Flavor, Rcu};

/// Domain `m` (on demand) holds a ready callback that retires a value into
/// `x`. `run_callbacks` runs it on one thread while another, inside `x`'s
/// section (`hold`), waits in `m.barrier()`: both must return.
fn probe(x: Rcu, hold: impl FnOnce(&Rcu) -> Box<dyn std::any::Any> + Send + 'static) {
    let m = Rcu::new(Config::new().flavor(Flavor::Mb).on_demand()).unwrap();
    let ran = Arc::new(AtomicBool::new(false));
    {
        let (x2, ran) = (x.clone(), ran.clone());
        m.call(move || {
            x2.defer_drop(Box::new([7u64; 4]));
            ran.store(true, Ordering::SeqCst);
        });
    }
    m.synchronize(); // the callback is ready

    let (inside_tx, inside_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (done_tx, done_rx) = mpsc::channel();
    {
        let (x, m) = (x.clone(), m.clone());
        thread::spawn(move || {
            let section = hold(&x);
            inside_tx.send(()).unwrap();
            go_rx.recv().unwrap();
            m.barrier(); // allowed: a section of another domain
            drop(section);
            done_tx.send(()).unwrap();
        });
    }
    inside_rx.recv().unwrap();

    let (ret_tx, ret_rx) = mpsc::channel();
    {
        let m = m.clone();
        thread::spawn(move || {
            let report = m.run_callbacks(&NodeMask::all(), 0);
            ret_tx.send(report.invoked).unwrap();
        });
    }
    thread::sleep(Duration::from_millis(200)); // run_callbacks runs the callback
    go_tx.send(()).unwrap();
    let returned = ret_rx.recv_timeout(Duration::from_secs(10));
    let barrier_done = done_rx.recv_timeout(Duration::from_secs(10));
    assert!(
        returned.is_ok() && barrier_done.is_ok() && ran.load(Ordering::SeqCst),
        "deadlock: run_callbacks returned {returned:?}, barrier returned {}: the callback's \
         defer_drop waited (no page) for a grace period of the domain retired into, which waits \
         for the thread that waits in the barrier for that callback",
        barrier_done.is_ok()
    );
    x.barrier();
    assert!(x.pending() == 0);
}

#[test]
fn a_callback_retiring_into_a_qsbr_domain_does_not_wait_for_its_online_threads() {
    let q = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
    probe(q, |q| {
        Box::new(q.register_qsbr_thread().thread_offline().thread_online())
    });
}

#[test]
fn a_callback_retiring_into_another_domain_does_not_wait_for_its_readers() {
    let x = Rcu::new(Config::new().flavor(Flavor::Mb)).unwrap();
    // A raw section: a guard would borrow `x` across the thread's calls.
    probe(x, |x| {
        x.read_lock_raw();
        struct Unlock(Rcu);
        impl Drop for Unlock {
            fn drop(&mut self) {
                assert!(self.0.read_unlock_raw());
            }
        }
        Box::new(Unlock(x.clone()))
    });
}
