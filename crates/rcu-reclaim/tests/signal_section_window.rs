//! A signal handler that takes a section while its thread is between the
//! outermost `section_enter`'s slot store and its nesting count's
//! increment: the handler's section is outermost too, and its exit cleared
//! the slot under the interrupted section, which a grace period then did
//! not wait for (a reader saw poison: mb in 2.5 s, memb in reader-fence
//! mode in 19 s, before the fix). `PROBE_FLAVOR` (mb, the default; memb;
//! memb-fenced) and `PROBE_SECS` (default 3).

mod common;
use common::poison::{Drops, Val};

use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rcu_reclaim::{Config, Flavor, Rcu};

static RCU: std::sync::OnceLock<Rcu> = std::sync::OnceLock::new();
static HANDLED: AtomicU64 = AtomicU64::new(0);

extern "C" fn handler(_: libc::c_int) {
    let rcu = RCU.get().unwrap();
    rcu.read_lock_raw();
    rcu.read_unlock_raw();
    HANDLED.fetch_add(1, Ordering::Relaxed);
}

#[test]
fn a_signal_handler_section_inside_section_enter_leaves_the_section_protected() {
    let config = match std::env::var("PROBE_FLAVOR").as_deref() {
        Ok("memb") => Config::new()
            .flavor(Flavor::Memb)
            .adaptive_reader_fences(false),
        // Memb in reader-fence mode (grace periods back to back switch it).
        Ok("memb-fenced") => Config::new()
            .flavor(Flavor::Memb)
            .simulate_membarrier_cost(Duration::from_micros(300)),
        _ => Config::new().flavor(Flavor::Mb),
    };
    let rcu = Rcu::new(config).unwrap();
    RCU.set(rcu.clone()).ok().unwrap();
    let drops = Drops::new(1); // counts unchecked: ids past it are ignored
    let p = Arc::new(AtomicPtr::new(Box::into_raw(Box::new(Val::new(&drops, 1)))));
    // SAFETY: installing a handler that only takes a raw section.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = handler as extern "C" fn(libc::c_int) as usize;
        libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut());
    }
    let stop = Arc::new(AtomicBool::new(false));
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let reader = {
        let (rcu, p, stop) = (rcu.clone(), p.clone(), stop.clone());
        thread::spawn(move || {
            // SAFETY: no preconditions.
            tid_tx.send(unsafe { libc::pthread_self() }).unwrap();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let g = rcu.read_lock();
                let v = p.load(Ordering::Acquire);
                for _ in 0..2000 {
                    std::hint::spin_loop();
                }
                // SAFETY: loaded inside the section, still open.
                unsafe { &*v }.check(1);
                drop(g);
                n += 1;
            }
            n
        })
    };
    let tid = tid_rx.recv().unwrap();
    let signaller = {
        let stop = stop.clone();
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                // SAFETY: the reader thread outlives this loop (joined after it).
                unsafe { libc::pthread_kill(tid, libc::SIGUSR1) };
                for _ in 0..200 {
                    std::hint::spin_loop();
                }
            }
        })
    };
    let secs: u64 = std::env::var("PROBE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let end = Instant::now() + Duration::from_secs(secs);
    let mut writes = 0u64;
    while Instant::now() < end && !reader.is_finished() {
        let old = p.swap(
            Box::into_raw(Box::new(Val::new(&drops, 1))),
            Ordering::AcqRel,
        );
        rcu.synchronize();
        // SAFETY: unlinked, and a grace period has passed.
        drop(unsafe { Box::from_raw(old) });
        writes += 1;
    }
    stop.store(true, Ordering::Relaxed);
    signaller.join().unwrap();
    let r = reader.join();
    eprintln!(
        "writes {writes}, signals handled {}, reader fences {}",
        HANDLED.load(Ordering::Relaxed),
        rcu.stats().reader_fences
    );
    r.unwrap();
}
