//! `Config` knobs at their extremes (`Duration::ZERO`, a nanosecond,
//! `Duration::MAX`, 0 and `usize::MAX` bytes and counts): each is either
//! refused by `Rcu::new` with an error naming the knob, or works. Working
//! means that every wait the knob times (a reader held up past the stall
//! timeout, a writer held up behind a grace period, a thread that stops
//! retiring, pressure) still ends, and that no queued callback or deferred
//! drop is lost. A deadline computed as `now + knob` that overflowed
//! killed the grace-period thread once (`huge_lazy_delay.rs`): a dead
//! thread shows here as a `within` timeout.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use rcu_reclaim::{Config, Error, Flavor, Rcu, RcuCell};

mod common;
use common::{within, Counted, CountedPlain};

const LIMIT: Duration = Duration::from_secs(20);

/// Retires through every path while another thread holds a section open
/// for a while, under pressure and without, then waits for all of it.
fn exercise(rcu: &Rcu) {
    let drops = Arc::new(AtomicUsize::new(0));
    let cell = Arc::new(RcuCell::new_in(rcu, Box::new(Counted(drops.clone()))));
    // A reader that holds grace periods up while the writer retires.
    let (loaded_tx, loaded_rx) = mpsc::channel();
    let (end_tx, end_rx) = mpsc::channel::<()>();
    let reader = {
        let cell = cell.clone();
        thread::spawn(move || {
            let domain = cell.domain().clone();
            let guard = domain.read_lock();
            assert!(cell.load(&guard).is_some());
            loaded_tx.send(()).unwrap();
            let _ = end_rx.recv_timeout(Duration::from_millis(50));
        })
    };
    loaded_rx.recv().unwrap();
    let mut retired = 0;
    for i in 0..300 {
        cell.store(Box::new(Counted(drops.clone())));
        rcu.defer_drop(Box::new(CountedPlain(drops.clone())));
        retired += 2;
        if i == 150 {
            drop(end_tx.clone());
        }
    }
    drop(end_tx);
    reader.join().unwrap();
    {
        let _pressure = rcu.pressure_start_all();
        for _ in 0..300 {
            cell.store(Box::new(Counted(drops.clone())));
            retired += 1;
        }
    }
    // The thread stops retiring: what it left is the background's to free.
    thread::sleep(Duration::from_millis(20));
    let ran = Arc::new(AtomicUsize::new(0));
    for _ in 0..10 {
        let ran = ran.clone();
        rcu.call(move || {
            ran.fetch_add(1, Ordering::SeqCst);
        });
    }
    let (tx, rx) = mpsc::channel();
    rcu.call_hurry(move || tx.send(()).unwrap());
    rx.recv().unwrap();
    rcu.synchronize();
    rcu.synchronize_expedited();
    rcu.barrier();
    assert_eq!(ran.load(Ordering::SeqCst), 10, "a callback was lost");
    assert_eq!(
        drops.load(Ordering::SeqCst),
        retired,
        "a deferred drop was lost"
    );
    assert_eq!((rcu.pending(), rcu.pending_bytes()), (0, 0));
}

/// Every knob at its extremes, alone; a refusal must name the knob.
#[test]
fn every_knob_at_its_extremes_is_refused_by_name_or_works() {
    let d = [Duration::ZERO, Duration::from_nanos(1), Duration::MAX];
    let n = [0, 1, usize::MAX];
    let mut configs: Vec<(String, &'static str, Config)> = Vec::new();
    for v in d {
        configs.push((
            format!("lazy_delay({v:?})"),
            "lazy_delay",
            Config::new().lazy_delay(v),
        ));
        configs.push((
            format!("stall_timeout({v:?})"),
            "stall_timeout",
            Config::new().stall_timeout(v),
        ));
        configs.push((
            format!("held_up_after({v:?})"),
            "held_up_after",
            Config::new().held_up_after(v),
        ));
        configs.push((
            format!("producer_window({v:?})"),
            "producer_window",
            Config::new().producer_window(v),
        ));
    }
    for v in n {
        configs.push((
            format!("lazy_batch({v})"),
            "lazy_batch",
            Config::new().lazy_batch(v),
        ));
        configs.push((
            format!("pace_bytes({v})"),
            "pace_bytes",
            Config::new().pace_bytes(v),
        ));
        configs.push((format!("qhimark({v})"), "qhimark", Config::new().qhimark(v)));
        configs.push((
            format!("qlowmark({v})"),
            "qlowmark",
            Config::new().qlowmark(v),
        ));
        configs.push((format!("qovld({v})"), "qovld", Config::new().qovld(v)));
        configs.push((format!("blimit({v})"), "blimit", Config::new().blimit(v)));
        configs.push((
            format!("fast_min_bytes({v})"),
            "fast_min_bytes",
            Config::new().fast_min_bytes(v),
        ));
        configs.push((
            format!("pressure_throttle_bytes({v})"),
            "pressure_throttle_bytes",
            Config::new().pressure_throttle_bytes(v),
        ));
        configs.push((
            format!("held_up_bytes({v})"),
            "held_up_bytes",
            Config::new().held_up_bytes(v),
        ));
        configs.push((
            format!("max_pending_bytes({v})"),
            "max_pending_bytes",
            Config::new().max_pending_bytes(v),
        ));
        configs.push((
            format!("workers_per_node({v})"),
            "workers_per_node",
            Config::new().workers_per_node(v),
        ));
    }
    for flavor in [Flavor::Memb, Flavor::Mb, Flavor::Qsbr] {
        for (name, knob, config) in &configs {
            let what = format!("{flavor:?} {name}");
            match Rcu::new(config.clone().flavor(flavor)) {
                Err(Error::InvalidConfig(msg)) => {
                    assert!(
                        msg.contains(knob),
                        "{what}: refused without naming it: {msg}"
                    )
                }
                Err(Error::MembarrierUnavailable { .. }) => {}
                Err(e) => panic!("{what}: unexpected error: {e}"),
                Ok(rcu) => within(LIMIT, &what.clone(), move || exercise(&rcu)),
            }
        }
    }
}

/// Every wait-timing knob at `Duration::MAX` and every byte and count
/// threshold at its most permissive at once; then every throttle at its
/// strictest at once.
#[test]
fn all_knobs_at_once_work() {
    let lax = Config::new()
        .lazy_delay(Duration::MAX)
        .stall_timeout(Duration::MAX)
        .held_up_after(Duration::MAX)
        .producer_window(Duration::MAX)
        .lazy_batch(usize::MAX)
        .pace_bytes(usize::MAX)
        .qhimark(usize::MAX)
        .qovld(usize::MAX)
        .blimit(usize::MAX)
        .fast_min_bytes(usize::MAX)
        .pressure_throttle_bytes(usize::MAX)
        .held_up_bytes(usize::MAX)
        .max_pending_bytes(usize::MAX);
    let strict = Config::new()
        .lazy_delay(Duration::ZERO)
        .stall_timeout(Duration::from_nanos(1))
        .held_up_after(Duration::ZERO)
        .producer_window(Duration::ZERO)
        .lazy_batch(1)
        .pace_bytes(1)
        .qhimark(1)
        .qlowmark(0)
        .qovld(1)
        .blimit(1)
        .fast_min_bytes(0)
        .pressure_throttle_bytes(0)
        .held_up_bytes(0)
        .max_pending_bytes(0)
        .retiring_thread_frees(true);
    for flavor in [Flavor::Memb, Flavor::Mb, Flavor::Qsbr] {
        for (name, config) in [("lax", &lax), ("strict", &strict)] {
            let what = format!("{flavor:?} {name}");
            let rcu = Rcu::new(config.clone().flavor(flavor)).expect(&what);
            within(LIMIT, &what, move || exercise(&rcu));
        }
    }
}
