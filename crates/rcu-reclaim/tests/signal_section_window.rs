//! A signal handler that takes a section while its thread is between the
//! outermost `section_enter`'s slot store and its nesting count's
//! increment: the handler's section is outermost too, and its exit cleared
//! the slot under the interrupted section, which a grace period then did
//! not wait for (a reader saw poison: mb in 2.5 s, memb in reader-fence
//! mode in 19 s, before the fix). `PROBE_FLAVOR` (mb, the default; memb;
//! memb-fenced) and `PROBE_SECS` (default 3). And a handler's sections on
//! a registered thread interrupting `malloc`.

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

/// Installs `handler` for `sig` (the handlers here only take sections,
/// load and count).
fn install(sig: libc::c_int, handler: extern "C" fn(libc::c_int)) {
    // SAFETY: a zeroed `sigaction` with only the handler set is valid;
    // the handlers are async-signal-safe on registered threads.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = handler as usize;
        libc::sigaction(sig, &sa, std::ptr::null_mut());
    }
}

/// Sends `sig` to thread `tid` over and over until `stop`; `tid` must
/// outlive the returned thread (join it first).
fn signal_until(
    tid: libc::pthread_t,
    sig: libc::c_int,
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            // SAFETY: the caller keeps `tid` alive until this thread ends.
            unsafe { libc::pthread_kill(tid, sig) };
            for _ in 0..200 {
                std::hint::spin_loop();
            }
        }
    })
}

/// A thread that allocates and frees at full speed until `stop` (after
/// registering in `register`'s domain, if given, before anything else),
/// and its pthread id, for the signaller. Returns its allocation count.
fn allocating_thread(
    register: Option<Rcu>,
    stop: Arc<AtomicBool>,
) -> (thread::JoinHandle<usize>, libc::pthread_t) {
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let h = thread::spawn(move || {
        if let Some(rcu) = register {
            rcu.register_thread();
        }
        // SAFETY: no preconditions.
        tid_tx.send(unsafe { libc::pthread_self() }).unwrap();
        let mut kept: Vec<Vec<u8>> = Vec::new();
        let mut i = 0usize;
        while !stop.load(Ordering::Relaxed) {
            kept.push(vec![i as u8; 16 + i % 4000]);
            if kept.len() > 64 {
                kept.swap_remove(i % 64);
            }
            i += 1;
        }
        i
    });
    (h, tid_rx.recv().unwrap())
}

/// Whether `h`'s thread ends within `limit` (a thread stuck on `malloc`'s
/// lock in a handler never does: a join would hang).
fn finished_within<T>(h: &thread::JoinHandle<T>, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while !h.is_finished() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    h.is_finished()
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
    install(libc::SIGUSR1, handler);
    let stop = Arc::new(AtomicBool::new(false));
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let reader = {
        let (rcu, p, stop) = (rcu.clone(), p.clone(), stop.clone());
        thread::spawn(move || {
            // Registered before the first signal can come: a handler's
            // first section on an unregistered thread registers it, which
            // allocates (and `send` may be inside `malloc`).
            rcu.register_thread();
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
    let signaller = signal_until(tid, libc::SIGUSR1, stop.clone());
    let secs: u64 = common::env_or("PROBE_SECS", 3);
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
    // The last version: no reader is left (LeakSanitizer counted it).
    // SAFETY: from `Box::into_raw`, and the only thread that read it has
    // been joined.
    drop(unsafe { Box::from_raw(p.swap(std::ptr::null_mut(), Ordering::AcqRel)) });
}

static ALLOC_RCU: std::sync::OnceLock<(Rcu, rcu_reclaim::RcuCell<u64>)> =
    std::sync::OnceLock::new();
static ALLOC_HANDLED: AtomicU64 = AtomicU64::new(0);

extern "C" fn reading_handler(_: libc::c_int) {
    let (rcu, cell) = ALLOC_RCU.get().unwrap();
    let outer = rcu.read_lock();
    let inner = rcu.read_lock();
    assert_eq!(cell.load(&inner).copied(), Some(7));
    drop(inner);
    drop(outer);
    ALLOC_HANDLED.fetch_add(1, Ordering::Relaxed);
}

/// A handler that takes sections (a guard, a nested one, `RcuCell::load`)
/// on a thread registered beforehand, while that thread allocates and
/// frees at full speed and a writer retires: no section of a registered
/// thread allocates or takes a lock, so a handler that interrupted
/// `malloc` never waits on `malloc`'s lock (an unregistered thread's first
/// section registers it, which allocates: the `locking` module's "Signal
/// handlers" says to register first). Hung, before, in 3 of 3 runs of an
/// audit's program whose threads were not registered.
#[test]
fn a_handlers_sections_on_a_registered_thread_never_wait_on_malloc() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let cell = rcu_reclaim::RcuCell::new_in(&rcu, Box::new(7u64));
    ALLOC_RCU.set((rcu.clone(), cell)).ok().unwrap();
    install(libc::SIGUSR2, reading_handler);
    let stop = Arc::new(AtomicBool::new(false));
    let (allocator, tid) = allocating_thread(Some(rcu.clone()), stop.clone());
    let signaller = signal_until(tid, libc::SIGUSR2, stop.clone());
    let (rcu_w, cell) = ALLOC_RCU.get().map(|(r, c)| (r, c)).unwrap();
    let end = Instant::now() + Duration::from_secs(2);
    while Instant::now() < end {
        // Retires (its old value waits for the handlers' sections).
        cell.store(Box::new(7));
        rcu_w.defer_drop(Box::new([0u8; 64]));
    }
    // A thread stuck in `malloc`'s lock never sees `stop`: the join
    // below would hang, so look first.
    stop.store(true, Ordering::Relaxed);
    signaller.join().unwrap();
    assert!(
        finished_within(&allocator, Duration::from_secs(20)),
        "the allocating thread did not finish: a handler's section waited on malloc's lock"
    );
    let allocs = allocator.join().unwrap();
    let handled = ALLOC_HANDLED.load(Ordering::Relaxed);
    eprintln!("allocations {allocs}, handler sections {handled}");
    assert!(handled > 0, "no signal was handled");
    drop(rcu);
}

static QUERY_RCU: std::sync::OnceLock<Rcu> = std::sync::OnceLock::new();
static QUERIES: AtomicU64 = AtomicU64::new(0);

extern "C" fn querying_handler(_: libc::c_int) {
    let rcu = QUERY_RCU.get().unwrap();
    assert!(!rcu.in_read_section());
    QUERIES.fetch_add(1, Ordering::Relaxed);
}

/// `in_read_section()` in a handler that interrupted `malloc` on a thread
/// that never registered anywhere: it answers `false` without touching the
/// thread's registrations, whose first use registers a destructor, which
/// allocates (the C drop-in's `rcu_read_ongoing()` on such threads hung in
/// 5 runs of 5 before). Short-lived threads that allocate, signalled while
/// they do.
#[test]
fn in_read_section_in_a_handler_on_a_thread_never_registered_allocates_nothing() {
    let rcu = Rcu::new(Config::new()).unwrap();
    QUERY_RCU.set(rcu).ok().unwrap();
    install(libc::SIGURG, querying_handler);
    // A handler stuck on `malloc`'s lock can take the test thread with it
    // (an arena they share): a watchdog that needs no allocation ends the
    // process, saying why, rather than leave the test hanging.
    static DONE: AtomicBool = AtomicBool::new(false);
    thread::spawn(|| {
        let start = Instant::now();
        while !DONE.load(Ordering::Relaxed) {
            if start.elapsed() > Duration::from_secs(60) {
                let m = b"in_read_section in a handler hung on malloc's lock (60 s)\n";
                // SAFETY: writes a static buffer to stderr, then exits.
                unsafe {
                    libc::write(2, m.as_ptr().cast(), m.len());
                    libc::_exit(3);
                }
            }
            thread::sleep(Duration::from_millis(100));
        }
    });
    for _ in 0..40 {
        let stop = Arc::new(AtomicBool::new(false));
        let (worker, tid) = allocating_thread(None, stop.clone());
        let signaller = signal_until(tid, libc::SIGURG, stop.clone());
        thread::sleep(Duration::from_millis(20));
        stop.store(true, Ordering::Relaxed);
        signaller.join().unwrap();
        assert!(
            finished_within(&worker, Duration::from_secs(20)),
            "a thread never registered did not finish: a handler's in_read_section() waited \
             on malloc's lock"
        );
        worker.join().unwrap();
    }
    DONE.store(true, Ordering::Relaxed);
    assert!(QUERIES.load(Ordering::Relaxed) > 0, "no signal was handled");
}
