//! The held-up wait: with no pressure signal held, a thread that hands off a
//! page while a grace period has been in progress for longer than
//! `Config::held_up_after` and the shards hold more than
//! `Config::held_up_bytes` sleeps until that grace period ends, for at most
//! 2 ms, and no thread waits on a grace period again once a wait on it ran
//! out; never inside a read-side section (which pays when it ends).

use std::time::{Duration, Instant};

mod common;
use common::hold_reader;

use rcu_reclaim::{Config, Rcu};

const VALUE: usize = 64 << 10;

/// Retires `n` values of `VALUE` bytes (each fills its thread's page, which
/// goes to the shard at once).
fn retire(rcu: &Rcu, n: usize) {
    for i in 0..n {
        rcu.defer_drop(Box::new(vec![i as u8; VALUE]));
    }
}

/// Starts a grace period (which the held reader holds up) and lets it age
/// past `held_up_after` (500 µs by default).
fn held_up_grace_period(rcu: &Rcu) {
    let _cookie = rcu.start_poll();
    let t = Instant::now();
    while !rcu.stats().gp_in_progress {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "no grace period started"
        );
        std::thread::sleep(Duration::from_micros(100));
    }
    std::thread::sleep(Duration::from_millis(2));
}

/// Runs `body` on a domain of `config` behind a grace period that another
/// thread's reader holds up (under a pressure signal if `pressure`), then
/// lets the reader go and checks that everything retired is freed.
fn behind_a_reader(config: Config, pressure: bool, body: impl FnOnce(&Rcu)) {
    let rcu = Rcu::new(config).unwrap();
    let (release, reader) = hold_reader(&rcu);
    let signal = pressure.then(|| rcu.pressure_start_all());
    held_up_grace_period(&rcu);
    body(&rcu);
    drop(release);
    reader.join().unwrap();
    drop(signal);
    rcu.barrier();
    assert_eq!(rcu.pending_bytes(), 0, "everything retired is freed");
}

#[test]
fn a_writer_waits_once_for_a_grace_period_a_reader_holds_up() {
    behind_a_reader(Config::new(), false, |rcu| {
        // 2 MiB retired past the 512 KiB mark behind a grace period 2 ms
        // old: the first hand-off over the mark waits its 2 ms, in vain
        // (the reader stays), and then no one waits on that grace period
        // again.
        let t = Instant::now();
        retire(rcu, 32);
        let took = t.elapsed();
        let s = rcu.stats();
        assert_eq!(
            s.held_up_waits, 1,
            "one wait per held-up grace period: {s:?}"
        );
        assert!(
            s.held_up_wait_us >= 2_000,
            "a wait that nothing ends lasts its 2 ms bound: {s:?}"
        );
        assert!(
            took < Duration::from_secs(2),
            "32 retires took {took:?} behind a reader"
        );
        assert_eq!(s.pressure_throttles, 0, "no pressure, no pressure throttle");
        assert_eq!(
            rcu.pending_bytes(),
            32 * (VALUE + std::mem::size_of::<Vec<u8>>()),
            "nothing freed early, nothing lost"
        );
    });
}

#[test]
fn a_wait_ends_with_the_grace_period() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let (release, reader) = hold_reader(&rcu);
    held_up_grace_period(&rcu);
    // The reader leaves as soon as a writer waits for it (as a preempted
    // one would when it runs again).
    let watcher = {
        let rcu = rcu.clone();
        std::thread::spawn(move || {
            let t = Instant::now();
            while rcu.stats().held_up_waits == 0 && t.elapsed() < Duration::from_secs(20) {
                std::thread::yield_now();
            }
            drop(release);
        })
    };
    let completed = rcu.stats().gp_completed;
    retire(&rcu, 32);
    watcher.join().unwrap();
    reader.join().unwrap();
    let s = rcu.stats();
    assert!(s.held_up_waits >= 1, "no writer waited: {s:?}");
    if s.held_up_wait_us < 2_000 {
        // The wait ended before its bound: only the grace period's end
        // ends it early.
        assert!(
            s.gp_completed > completed,
            "the wait ended early but the held-up grace period did not: {s:?}"
        );
    } else {
        // The watcher got no CPU within the wait's 2 ms (a loaded
        // machine): the wait ran its bound, and the grace period ends once
        // the reader has left.
        let t = Instant::now();
        while rcu.stats().gp_completed <= completed {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "the held-up grace period never ended after its reader left: {:?}",
                rcu.stats()
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    rcu.barrier();
    assert_eq!(rcu.pending_bytes(), 0);
}

#[test]
fn inside_a_read_side_section_the_wait_is_paid_when_it_ends() {
    behind_a_reader(Config::new(), false, |rcu| {
        {
            let _section = rcu.read_lock();
            retire(rcu, 32);
            // Its own section holds every grace period up: it cannot wait.
            assert_eq!(rcu.stats().held_up_waits, 0);
        }
        let s = rcu.stats();
        assert_eq!(
            s.held_up_waits, 1,
            "paid once when the section ended: {s:?}"
        );
    });
}

#[test]
fn no_wait_under_the_mark_or_turned_off_and_the_pressure_throttle_first() {
    for (config, what) in [
        (Config::new().held_up_bytes(usize::MAX), "turned off"),
        (Config::new().held_up_bytes(4 << 20), "under the mark"),
        (
            Config::new().held_up_after(Duration::from_secs(3600)),
            "a grace period younger than held_up_after",
        ),
    ] {
        behind_a_reader(config, false, |rcu| {
            retire(rcu, 32);
            assert_eq!(rcu.stats().held_up_waits, 0, "{what}");
        });
    }
    // Under pressure the pressure throttle waits instead, over its mark,
    // and nothing under it: fast mode expedites grace periods (waiting as
    // well cost writers updates under a flapping signal).
    behind_a_reader(
        Config::new().pressure_throttle_bytes(1 << 20),
        true,
        |rcu| {
            retire(rcu, 32);
            let s = rcu.stats();
            assert_eq!(s.held_up_waits, 0, "under pressure: {s:?}");
            assert!(
                s.pressure_throttles > 0,
                "the pressure throttle waited: {s:?}"
            );
        },
    );
}

#[test]
fn qsbr_domains_do_not_wait() {
    // A QSBR grace period waits for every online thread's next report:
    // long as a rule, not a sign of a reader that is not running.
    let rcu = Rcu::new(Config::new().flavor(rcu_reclaim::Flavor::Qsbr)).unwrap();
    let (online_tx, online_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let holder = {
        let rcu = rcu.clone();
        std::thread::spawn(move || {
            let _online = rcu.register_qsbr_thread();
            online_tx.send(()).unwrap();
            let _ = stop_rx.recv();
        })
    };
    online_rx.recv().unwrap();
    held_up_grace_period(&rcu);
    retire(&rcu, 32);
    assert_eq!(rcu.stats().held_up_waits, 0);
    drop(stop_tx);
    holder.join().unwrap();
    rcu.barrier();
    assert_eq!(rcu.pending_bytes(), 0);
}
