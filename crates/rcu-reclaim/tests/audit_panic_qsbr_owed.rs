//! A QSBR registration that owes a budget's direct reclaim (a check over
//! `min` while online) pays it as it is dropped. The payment runs the
//! program's code (here a shrinker that panics): dropped while the thread
//! unwinds, or by a thread-local's destructor at thread exit, a panic out
//! of it aborted the process ("panic in a destructor during cleanup",
//! "thread local panicked on drop"). Each scenario runs in a child process
//! (this binary again), so an abort fails the test instead of the run.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use rcu_reclaim::reclaim::{MemoryBudget, Reclaimer, Scanned, ShrinkControl, Shrinker};
use rcu_reclaim::{Config, Flavor, Rcu};

struct Panicky(AtomicBool);
impl Shrinker for Panicky {
    fn count(&self, _: &ShrinkControl) -> usize {
        100
    }
    fn scan(&self, ctl: &mut ShrinkControl) -> Scanned {
        if self.0.load(Ordering::SeqCst) {
            panic!("shrinker panics (deliberate)");
        }
        Scanned {
            freed: ctl.nr_to_scan(),
            bytes: 0,
        }
    }
}

fn scenario(mode: &str) {
    let rcu = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
    let reclaimer = Arc::new(Reclaimer::new(&rcu));
    let shrinker = Arc::new(Panicky(AtomicBool::new(false)));
    reclaimer.register(shrinker.clone());
    let used = Arc::new(AtomicUsize::new(0));
    let u = used.clone();
    static USAGE_PANICS: AtomicBool = AtomicBool::new(false);
    let budget = MemoryBudget::new(64 << 20, reclaimer, move || {
        if USAGE_PANICS.load(Ordering::SeqCst) {
            panic!("the usage function panics (deliberate)");
        }
        u.load(Ordering::SeqCst)
    });
    if mode == "guard" {
        // The owed reclaim is paid where any section that owes the
        // pressure throttle ends: here a guard of another domain, dropped
        // as the thread unwinds.
        let _thread = rcu.register_qsbr_thread();
        used.store(63 << 20, Ordering::SeqCst);
        budget.check(); // owed
        let other = Rcu::new(Config::new().on_demand()).unwrap();
        let _pressure = other.pressure_start_all();
        let r = catch_unwind(AssertUnwindSafe(|| {
            let _g = other.read_lock();
            for _ in 0..400 {
                other.defer_drop_sized(Box::new(vec![0u8; 64 << 10]), 64 << 10);
            }
            USAGE_PANICS.store(true, Ordering::SeqCst);
            panic!("user code panics inside a guard (deliberate)");
        }));
        USAGE_PANICS.store(false, Ordering::SeqCst);
        println!("caught: {}", r.is_err());
        println!("SURVIVED");
        return;
    }
    if mode == "tls" {
        thread_local! {
            static REG: std::cell::RefCell<Option<rcu_reclaim::QsbrThread>> =
                const { std::cell::RefCell::new(None) };
        }
        let (rcu2, used2, shrinker2) = (rcu.clone(), used.clone(), shrinker.clone());
        let budget = Arc::new(budget);
        let b2 = budget.clone();
        let joined = std::thread::spawn(move || {
            REG.with(|r| *r.borrow_mut() = Some(rcu2.register_qsbr_thread()));
            used2.store(63 << 20, Ordering::SeqCst);
            b2.check();
            shrinker2.0.store(true, Ordering::SeqCst);
            // exits: the registration drops in the thread-local's destructor
        })
        .join();
        println!("joined: {}", joined.is_ok());
        println!("SURVIVED");
        return;
    }
    let r = catch_unwind(AssertUnwindSafe(|| {
        let thread = rcu.register_qsbr_thread();
        used.store(63 << 20, Ordering::SeqCst); // over min
        budget.check(); // owed: online QSBR thread
        shrinker.0.store(true, Ordering::SeqCst);
        match mode {
            // The thread's own code panics; the registration drops in the unwind.
            "unwind" => panic!("user code panics while online (deliberate)"),
            // Dropped normally.
            _ => drop(thread),
        }
    }));
    println!("caught: {}", r.is_err());
    println!("SURVIVED");
}

#[test]
fn child_scenario() {
    if let Ok(mode) = std::env::var("AUDIT_QSBR_OWED") {
        scenario(&mode);
    }
}

fn run_child(mode: &str) -> (Option<i32>, String) {
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new("timeout")
        .arg("60")
        .arg(exe)
        .args([
            "child_scenario",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("AUDIT_QSBR_OWED", mode)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code(), text)
}

#[test]
fn an_owed_reclaim_whose_shrinker_panics_in_an_unwind_does_not_abort() {
    let (code, text) = run_child("unwind");
    assert!(
        text.contains("SURVIVED"),
        "the process died (exit {code:?}):\n{text}"
    );
}

#[test]
fn an_owed_reclaim_whose_shrinker_panics_in_a_plain_drop_is_caught() {
    let (code, text) = run_child("drop");
    assert!(
        text.contains("SURVIVED"),
        "the process died (exit {code:?}):\n{text}"
    );
}

#[test]
fn an_owed_reclaim_whose_shrinker_panics_in_a_thread_local_destructor_does_not_abort() {
    let (code, text) = run_child("tls");
    assert!(
        text.contains("SURVIVED"),
        "the process died (exit {code:?}):\n{text}"
    );
}

#[test]
fn an_owed_reclaim_paid_by_a_guard_dropped_in_an_unwind_does_not_abort() {
    let (code, text) = run_child("guard");
    assert!(
        text.contains("SURVIVED"),
        "the process died (exit {code:?}):\n{text}"
    );
}
