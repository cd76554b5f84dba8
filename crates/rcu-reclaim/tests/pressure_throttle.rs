//! The pressure throttle: while a pressure signal is held, a thread that
//! retires faster than its garbage is freed waits for it (at most 10 ms per
//! page it hands off, 100 ms over twice the mark, 1 s over four times, 1 s
//! per call that retires many), never inside a read-side section (which
//! pays when it ends), never without pressure.

use std::time::{Duration, Instant};

mod common;
use common::hold_reader;

use rcu_reclaim::{Config, Rcu};

const THROTTLE: usize = 1 << 20;
const VALUE: usize = 512 << 10;
/// What one retired value books: its buffer and the `Vec` itself.
const BOOKED: usize = VALUE + std::mem::size_of::<Vec<u8>>();

fn domain() -> Rcu {
    Rcu::new(Config::new().pressure_throttle_bytes(THROTTLE)).unwrap()
}

/// Retires `n` values of `VALUE` bytes (each makes its thread's page go to
/// the shard at once); returns the longest single call.
fn retire(rcu: &Rcu, n: usize) -> Duration {
    (0..n)
        .map(|i| {
            let t = Instant::now();
            rcu.defer_drop(Box::new(vec![i as u8; VALUE]));
            t.elapsed()
        })
        .max()
        .unwrap()
}

#[test]
fn under_pressure_a_writer_waits_for_its_garbage_but_only_briefly_behind_a_reader() {
    let rcu = domain();
    let (release, reader) = hold_reader(&rcu);
    let pressure = rcu.pressure_start_all();
    // No grace period can end: past the throttle's 1 MiB, every hand-off
    // waits its 10 ms (100 ms past 2 MiB) and goes on.
    let longest = retire(&rcu, 8);
    let s = rcu.stats();
    assert!(
        s.pressure_throttles >= 4,
        "8 values of 512 KiB under pressure, a 1 MiB throttle and no grace period: {} waits",
        s.pressure_throttles
    );
    assert!(
        s.pressure_throttle_us >= s.pressure_throttles * 10_000,
        "each wait lasts until its bound (10 ms at least) when nothing can be freed: {} \
         waits, {} µs",
        s.pressure_throttles,
        s.pressure_throttle_us
    );
    assert!(
        s.pressure_throttle_us >= 100_000,
        "past twice the throttle (2 MiB) a wait lasts 100 ms: {} µs in all",
        s.pressure_throttle_us
    );
    assert!(
        longest < Duration::from_secs(5),
        "a retire waited {longest:?} behind a reader"
    );
    assert_eq!(
        rcu.pending_bytes(),
        8 * BOOKED,
        "nothing is lost or freed early"
    );
    drop(release);
    reader.join().unwrap();
    pressure.end();
    rcu.barrier();
    assert_eq!(rcu.stats().bytes_freed, 8 * BOOKED as u64);
}

#[test]
fn inside_a_read_side_section_a_writer_waits_when_the_section_ends() {
    let rcu = domain();
    // Another thread's reader holds grace periods up past the section's
    // end, so the garbage is still there when the payment looks (else a
    // grace period could end and a worker free it between the two, and
    // the payment would rightly owe nothing: 1 run in 200).
    let (release, reader) = hold_reader(&rcu);
    let pressure = rcu.pressure_start_all();
    {
        let _outer = rcu.read_lock();
        {
            let _section = rcu.read_lock();
            // Its own section holds every grace period up: a wait here
            // would wait for itself. 1.5 MiB, over the 1 MiB mark (a
            // payment waits 10 ms).
            retire(&rcu, 3);
            assert_eq!(rcu.stats().pressure_throttles, 0);
            assert_eq!(rcu.read_depth(), 2);
        }
        // A nested section's end is not the section's end.
        assert_eq!(rcu.stats().pressure_throttles, 0);
        assert!(rcu.in_read_section());
    }
    // The outermost guard's drop ended the section, then waited once (the
    // writers that retire inside sections, as `compare_exchange` needs,
    // filled a cgroup before).
    assert!(!rcu.in_read_section());
    assert_eq!(rcu.stats().pressure_throttles, 1);
    // The next section owes nothing.
    drop(rcu.read_lock());
    assert_eq!(rcu.stats().pressure_throttles, 1);
    drop(release);
    reader.join().unwrap();
    pressure.end();
    rcu.barrier();
    assert_eq!(rcu.pending_bytes(), 0);
}

#[test]
fn a_raw_section_pays_at_its_unlock() {
    let rcu = domain();
    // As above: the garbage outlives the section's end.
    let (release, reader) = hold_reader(&rcu);
    let pressure = rcu.pressure_start_all();
    rcu.read_lock_raw();
    retire(&rcu, 3);
    assert_eq!(rcu.stats().pressure_throttles, 0);
    assert!(rcu.read_unlock_raw());
    let s = rcu.stats();
    assert_eq!(s.pressure_throttles, 1, "waits: {s:?}");
    assert!(
        s.pressure_throttle_us >= 10_000,
        "a payment with nothing freeable waits its 10 ms bound: {s:?}"
    );
    drop(release);
    reader.join().unwrap();
    pressure.end();
    rcu.barrier();
    assert_eq!(rcu.pending_bytes(), 0);
}

#[test]
fn an_online_qsbr_writer_pays_when_it_goes_offline() {
    let rcu = Rcu::new(
        Config::new()
            .flavor(rcu_reclaim::Flavor::Qsbr)
            .pressure_throttle_bytes(THROTTLE),
    )
    .unwrap();
    // Another online thread holds grace periods up until told to report a
    // quiescent state, so nothing is freed before a payment looks (else,
    // on a loaded machine, the garbage could be freed between this thread
    // going offline and its payment, which then rightly owes nothing: the
    // test failed 6 times in 150 runs beside two CPU hogs).
    let (report, holder) = {
        let (online_tx, online_rx) = std::sync::mpsc::channel();
        let (report, reports) = std::sync::mpsc::channel::<()>();
        let r = rcu.clone();
        let holder = std::thread::spawn(move || {
            let mut online = r.register_qsbr_thread();
            online_tx.send(()).unwrap();
            while reports.recv().is_ok() {
                online.quiescent_state();
                online_tx.send(()).unwrap();
            }
        });
        online_rx.recv().unwrap();
        (report, (holder, online_rx))
    };
    let mut me = rcu.register_qsbr_thread();
    let pressure = rcu.pressure_start_all();
    let cell = rcu_reclaim::RcuCell::new_in(&rcu, Some(Box::new(vec![0u8; VALUE])));
    // 1.5 MiB retired, over the 1 MiB mark: a payment waits 10 ms.
    for i in 0..3u8 {
        cell.store(Box::new(vec![i; VALUE])); // online: cannot wait here
    }
    assert_eq!(rcu.stats().pressure_throttles, 0);
    me.offline_while(|| ());
    assert_eq!(rcu.stats().pressure_throttles, 1);
    // Once more, paid at a quiescent state that reports: the grace period
    // in progress ends (the holder reports), and the next one, which waits
    // for both threads, covers what is retired now.
    let completed = rcu.stats().gp_completed;
    report.send(()).unwrap();
    holder.1.recv().unwrap();
    let until = |what: &str, done: &dyn Fn() -> bool| {
        let t = Instant::now();
        while !done() {
            assert!(t.elapsed() < Duration::from_secs(20), "{what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    };
    until("the held grace period never ended", &|| {
        rcu.stats().gp_completed > completed
    });
    for i in 0..3u8 {
        cell.store(Box::new(vec![i; VALUE]));
    }
    let _started = rcu.start_poll();
    until("no grace period started", &|| rcu.stats().gp_in_progress);
    me.quiescent_state();
    assert_eq!(rcu.stats().pressure_throttles, 2);
    pressure.end();
    drop(report);
    holder.0.join().unwrap();
    me.offline_while(|| rcu.barrier());
}

#[test]
fn without_pressure_a_writer_never_waits() {
    let rcu = domain();
    let (release, reader) = hold_reader(&rcu);
    retire(&rcu, 8);
    assert_eq!(rcu.stats().pressure_throttles, 0);
    drop(release);
    reader.join().unwrap();
    rcu.barrier();
    assert_eq!(rcu.pending_bytes(), 0);
}

#[test]
fn the_throttle_can_be_turned_off() {
    let rcu = Rcu::new(Config::new().pressure_throttle_bytes(usize::MAX)).unwrap();
    let (release, reader) = hold_reader(&rcu);
    let pressure = rcu.pressure_start_all();
    retire(&rcu, 8);
    assert_eq!(rcu.stats().pressure_throttles, 0);
    drop(release);
    reader.join().unwrap();
    pressure.end();
    rcu.barrier();
}

#[test]
fn once_grace_periods_can_end_a_waiting_writer_sees_its_garbage_freed() {
    let rcu = domain();
    let pressure = rcu.pressure_start_all();
    // Nothing holds grace periods up: the writer's waits end when the
    // shards are back at half the throttle, well before their bound.
    retire(&rcu, 64);
    let s = rcu.stats();
    assert!(
        s.bytes_freed >= 32 * BOOKED as u64,
        "under pressure most of 64 retired values are freed while the writer retires: {} bytes",
        s.bytes_freed
    );
    pressure.end();
    rcu.barrier();
    assert_eq!(rcu.stats().bytes_freed, 64 * BOOKED as u64);
}

#[test]
fn try_defer_drop_never_waits_under_pressure() {
    let rcu = domain();
    let (release, reader) = hold_reader(&rcu);
    let pressure = rcu.pressure_start_all();
    for i in 0..8u8 {
        assert!(rcu.try_defer_drop(Box::new(vec![i; VALUE])).is_ok());
    }
    assert_eq!(rcu.stats().pressure_throttles, 0);
    // `defer_drop` of the same would wait.
    retire(&rcu, 1);
    assert_eq!(rcu.stats().pressure_throttles, 1);
    drop(release);
    reader.join().unwrap();
    pressure.end();
    rcu.barrier();
    assert_eq!(rcu.pending_bytes(), 0);
}

#[test]
fn one_clear_waits_a_second_in_all_behind_a_reader() {
    let rcu = domain();
    let map = rcu_reclaim::RcuHashMap::new_in(&rcu);
    for i in 0..64u32 {
        map.insert(i, vec![i as u8; VALUE]);
    }
    let (release, reader) = hold_reader(&rcu);
    let pressure = rcu.pressure_start_all();
    let t = Instant::now();
    // 32 MiB behind a reader that holds every grace period up: each
    // hand-off past 4 MiB would wait its 1 s (a minute and more); the
    // call waits 1 s in all.
    map.clear();
    let took = t.elapsed();
    let s = rcu.stats();
    assert!(
        s.pressure_throttle_us <= 1_500_000,
        "one clear waited {} µs in {} waits",
        s.pressure_throttle_us,
        s.pressure_throttles
    );
    assert!(took < Duration::from_secs(5), "clear took {took:?}");
    assert!(map.is_empty());
    drop(release);
    reader.join().unwrap();
    pressure.end();
    rcu.barrier();
    assert_eq!(rcu.pending_bytes(), 0);
}

#[test]
fn a_qsbr_thread_with_a_second_online_registration_never_waits_for_itself() {
    let rcu = Rcu::new(
        Config::new()
            .flavor(rcu_reclaim::Flavor::Qsbr)
            .pressure_throttle_bytes(THROTTLE),
    )
    .unwrap();
    let mut a = rcu.register_qsbr_thread();
    let b = rcu.register_qsbr_thread(); // online: holds every grace period up
    let pressure = rcu.pressure_start_all();
    let cell = rcu_reclaim::RcuCell::new_in(&rcu, Some(Box::new(vec![0u8; VALUE])));
    for i in 0..8u8 {
        cell.store(Box::new(vec![i; VALUE])); // online: owes the throttle
    }
    let t = Instant::now();
    a.quiescent_state(); // would pay, but `b` keeps this thread in a section
    let waited = t.elapsed();
    assert!(
        waited < Duration::from_millis(500),
        "a quiescent state waited {waited:?} for a grace period its own thread holds up"
    );
    assert_eq!(rcu.stats().pressure_throttles, 0);
    pressure.end();
    drop(b);
    a.offline_while(|| rcu.barrier());
}

/// A value whose `Drop` takes `DROP_LOCK`, as a value that unregisters
/// itself from a table under the table's lock does.
struct LocksOnDrop(Vec<u8>);

static DROP_LOCK: std::sync::Mutex<u64> = std::sync::Mutex::new(0);

impl Drop for LocksOnDrop {
    fn drop(&mut self) {
        *DROP_LOCK.lock().unwrap() += 1;
    }
}

impl rcu_reclaim::ReclaimSize for LocksOnDrop {
    fn reclaim_size(&self) -> usize {
        std::mem::size_of::<Self>() + self.0.capacity()
    }
}

/// Retiring under a lock that the values' `Drop` takes, under pressure:
/// the worker that would free the garbage waits for that lock, so a wait
/// for it frees nothing. Each wait ran to its bound (100 ms to 1 s: 3
/// threads storing 1,000 values of 64 KiB took 53–93 s against 37–46 ms
/// without the lock); now a wait stops once the worker has spent
/// `WORKER_STUCK_MS` (5 ms) on one page of destructors.
#[test]
fn a_writer_holding_a_lock_its_values_drop_takes_does_not_wait_out_every_bound() {
    let rcu = domain();
    let pressure = rcu.pressure_start_all();
    let cell = std::sync::Arc::new(rcu_reclaim::RcuCell::new_in(
        &rcu,
        Some(Box::new(LocksOnDrop(vec![0; VALUE]))),
    ));
    // Three writers: one of them holds the lock nearly all the time.
    let writers: Vec<_> = (0..3)
        .map(|_| {
            let cell = cell.clone();
            std::thread::spawn(move || {
                for i in 0..100u8 {
                    let _held = DROP_LOCK.lock().unwrap();
                    cell.store(Box::new(LocksOnDrop(vec![i; 64 << 10])));
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let s = rcu.stats();
    assert!(
        s.pressure_throttle_us < 2_000_000,
        "{} waits took {} ms in all (over 2 s): each ran to its bound, for a worker blocked on the \
         lock the writer holds",
        s.pressure_throttles,
        s.pressure_throttle_us / 1000
    );
    pressure.end();
    rcu.barrier();
    assert_eq!(rcu.pending_bytes(), 0);
}

/// `call_sized` books its bytes on the shard at once: under pressure a
/// flood of them waits as `defer_drop`'s does (before: never throttled, so
/// four threads of them outran a 100 MiB cgroup's pressure signal).
#[test]
fn call_sized_waits_under_pressure_as_defer_drop_does() {
    let rcu = domain();
    let (release, reader) = hold_reader(&rcu);
    let pressure = rcu.pressure_start_all();
    let start = Instant::now();
    for i in 0..8 {
        let v = vec![i as u8; VALUE];
        rcu.call_sized(move || drop(v), VALUE);
    }
    let s = rcu.stats();
    assert!(
        s.pressure_throttles >= 4,
        "8 callbacks of 512 KiB under pressure, a 1 MiB throttle and no grace period: {} waits",
        s.pressure_throttles
    );
    assert!(start.elapsed() < Duration::from_secs(10));
    drop(release);
    reader.join().unwrap();
    pressure.end();
    rcu.barrier();
    assert_eq!(rcu.pending_bytes(), 0, "nothing is lost");
}
