//! An RCU-aware `MemoryBudget` bounds its domain's garbage: near its
//! `high` watermark, retiring threads wait for garbage over half the room
//! left below `high` (at least one reclaim step, 256 KiB for a 64 MiB
//! budget), as a cgroup's limit bounds it; the bound goes with the budget,
//! and one the caller set stays. A budget made while another bound is set
//! waits in line, and takes over when that one goes.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rcu_reclaim::reclaim::{MemoryBudget, Reclaimer};
use rcu_reclaim::{Config, Rcu, RcuCell};

const MIB: usize = 1 << 20;

/// A budget of 64 MiB on `rcu` whose usage reads `used`.
fn budget(rcu: &Rcu, used: &Arc<AtomicUsize>, rcu_loop: bool) -> MemoryBudget {
    let reclaimer = Arc::new(Reclaimer::new(rcu).rcu_loop(rcu_loop));
    let used = used.clone();
    MemoryBudget::new(64 * MIB, reclaimer, move || used.load(Ordering::SeqCst))
}

/// Twenty stores of 512 KiB behind a reader held for 300 ms, with usage
/// at the budget's `high`: the writer waits at the bound (a reclaim step
/// and a value or two) instead of leaving 10 MiB waiting, and the budget's
/// going removes the bound. The same stores in a domain whose budget's
/// reclaimer is not RCU-aware all wait for the reader.
#[test]
fn near_high_a_writer_waits_at_the_budgets_bound() {
    let most = |rcu_loop: bool| {
        let rcu = Rcu::new(Config::new()).unwrap();
        let used = Arc::new(AtomicUsize::new(0));
        let b = budget(&rcu, &used, rcu_loop);
        assert_eq!(rcu.garbage_bounded(), rcu_loop);
        used.store(b.watermarks().high, Ordering::SeqCst);
        // The bound reads the usage the budget read last.
        assert_eq!(b.usage(), b.watermarks().high);
        let cell = RcuCell::new_in(&rcu, Box::new(vec![0u8; 512 << 10]));
        let hold = Duration::from_millis(300);
        let (most, _) = common::stores_behind_a_reader(&rcu, &cell, 512 << 10, 20, hold);
        let waits = rcu.stats().headroom_waits;
        drop(b);
        assert!(!rcu.garbage_bounded(), "the bound outlived its budget");
        drop(cell);
        rcu.barrier();
        assert_eq!(rcu.pending_bytes(), 0);
        (most, waits)
    };
    let (bounded, waits) = most(true);
    assert!(waits >= 1, "no wait at the bound, {bounded} bytes waited");
    assert!(
        bounded <= 256 * 1024 + 3 * (512 << 10),
        "{bounded} bytes waited past the budget's bound"
    );
    let (unbounded, waits) = most(false);
    assert_eq!(waits, 0);
    assert!(
        unbounded >= 8 * MIB,
        "{unbounded} bytes waited with no bound"
    );
}

/// Well below `high` the allowance is half the room left, and nothing
/// waits: a budget costs writers nothing while memory is plentiful.
#[test]
fn far_below_high_nothing_waits() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let used = Arc::new(AtomicUsize::new(8 * MIB));
    let b = budget(&rcu, &used, true);
    assert_eq!(b.usage(), 8 * MIB);
    let cell = RcuCell::new_in(&rcu, Box::new(vec![0u8; 512 << 10]));
    let hold = Duration::from_millis(100);
    common::stores_behind_a_reader(&rcu, &cell, 512 << 10, 20, hold);
    assert_eq!(rcu.stats().headroom_waits, 0);
    drop(cell);
    drop(b);
    rcu.barrier();
}

/// A bound the caller set first stays, through the budget and after it.
#[test]
fn a_bound_set_before_the_budget_stays() {
    let rcu = Rcu::new(Config::new()).unwrap();
    rcu.bound_garbage(85 * MIB, || Some(10 * MIB));
    let used = Arc::new(AtomicUsize::new(0));
    let b = budget(&rcu, &used, true);
    assert!(rcu.garbage_bounded());
    drop(b);
    assert!(
        rcu.garbage_bounded(),
        "the budget removed the caller's bound"
    );
    rcu.unbound_garbage();
}

/// One set after the budget's replaces it, and the budget's going does
/// not remove it.
#[test]
fn a_bound_set_after_the_budget_replaces_it_and_stays() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let used = Arc::new(AtomicUsize::new(0));
    let b = budget(&rcu, &used, true);
    rcu.bound_garbage(85 * MIB, || Some(10 * MIB));
    drop(b);
    assert!(
        rcu.garbage_bounded(),
        "the budget removed the caller's bound"
    );
    rcu.unbound_garbage();
    assert!(!rcu.garbage_bounded());
}

/// A budget replaced by assignment (`b = MemoryBudget::new(..)`: the new
/// budget is made while the old one still bounds the domain, which then
/// goes) bounds the garbage with the new one's bound: near its `high`, a
/// writer waits at it. The new budget found the old one's bound in place
/// and was left with none once it went, for good.
#[test]
fn a_budget_made_to_replace_another_takes_over_its_bound() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let used = Arc::new(AtomicUsize::new(0));
    let mut b = budget(&rcu, &used, true);
    assert!(rcu.garbage_bounded() && b.limit() == 64 * MIB);
    b = budget(&rcu, &used, true);
    assert!(
        rcu.garbage_bounded(),
        "the replaced budget took the bound with it, and its replacement set none"
    );
    used.store(b.watermarks().high, Ordering::SeqCst);
    assert_eq!(b.usage(), b.watermarks().high);
    let cell = RcuCell::new_in(&rcu, Box::new(vec![0u8; 512 << 10]));
    let hold = Duration::from_millis(300);
    let (most, _) = common::stores_behind_a_reader(&rcu, &cell, 512 << 10, 20, hold);
    assert!(
        rcu.stats().headroom_waits >= 1,
        "no wait at the new budget's bound, {most} bytes waited"
    );
    assert!(
        most <= 256 * 1024 + 3 * (512 << 10),
        "{most} bytes waited past the new budget's bound"
    );
    drop(b);
    assert!(!rcu.garbage_bounded(), "the bound outlived its budget");
    drop(cell);
    rcu.barrier();
}

/// Budgets wait in line for the bound, first come first, and one that
/// goes while it waits leaves the line: with three, dropping the second
/// and then the first leaves the third's bound, and dropping it, none.
#[test]
fn budgets_take_the_bound_in_turn() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let used = Arc::new(AtomicUsize::new(0));
    let first = budget(&rcu, &used, true);
    let second = budget(&rcu, &used, true);
    let third = budget(&rcu, &used, true);
    drop(second);
    assert!(rcu.garbage_bounded());
    drop(first);
    assert!(
        rcu.garbage_bounded(),
        "the waiting budgets' bounds were lost"
    );
    // The third's bound: near its `high`, a writer waits.
    used.store(third.watermarks().high, Ordering::SeqCst);
    assert_eq!(third.usage(), third.watermarks().high);
    let cell = RcuCell::new_in(&rcu, Box::new(vec![0u8; 512 << 10]));
    common::stores_behind_a_reader(&rcu, &cell, 512 << 10, 8, Duration::from_millis(100));
    assert!(
        rcu.stats().headroom_waits >= 1,
        "no wait at the third's bound"
    );
    drop(third);
    assert!(!rcu.garbage_bounded(), "a dropped budget's bound stayed");
    drop(cell);
    rcu.barrier();
}

/// A bound the caller sets over a budget's sends the budget's to wait;
/// removing the caller's brings the budget's back, and `unbound_garbage`
/// does not remove a budget's own bound (it goes with the budget).
#[test]
fn the_budgets_bound_comes_back_when_the_callers_goes() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let used = Arc::new(AtomicUsize::new(0));
    let b = budget(&rcu, &used, true);
    rcu.bound_garbage(85 * MIB, || Some(10 * MIB));
    rcu.unbound_garbage();
    assert!(
        rcu.garbage_bounded(),
        "the budget's bound did not come back after the caller's went"
    );
    rcu.unbound_garbage();
    assert!(
        rcu.garbage_bounded(),
        "unbound_garbage removed a live budget's own bound"
    );
    drop(b);
    assert!(!rcu.garbage_bounded());
}

/// With a pace far above the bound (`on_demand`), a thread's page still
/// goes at a sixteenth of the bound's allowance, the budget's small floor
/// included: 64 KiB values near `high` keep within the floor and a value
/// or two, where pages of eight such values (512 KiB, over a 256 KiB
/// allowance) were held from the bound's sight.
#[test]
fn a_large_pace_keeps_to_the_budgets_bound() {
    let rcu = Rcu::new(Config::new().on_demand()).unwrap();
    let used = Arc::new(AtomicUsize::new(0));
    let b = budget(&rcu, &used, true);
    used.store(b.watermarks().high, Ordering::SeqCst);
    assert_eq!(b.usage(), b.watermarks().high);
    let cell = RcuCell::new_in(&rcu, Box::new(vec![0u8; 64 << 10]));
    let hold = Duration::from_millis(300);
    let (most, _) = common::stores_behind_a_reader(&rcu, &cell, 64 << 10, 64, hold);
    assert!(
        most <= (256 << 10) + 3 * (64 << 10),
        "{most} bytes waited past the budget's bound of 256 KiB"
    );
    drop(b);
    drop(cell);
    rcu.barrier();
}

/// In a forked child the budget's `rcu-kswapd` does not exist, and the
/// usage its bound saw last is never read again: the bound reads none
/// there. It read the parent's last read before, for good: a child whose
/// usage fell to nothing stayed `Short` (at `high` in the parent), and its
/// writers bounded by a reclaim step, however long it ran.
#[test]
fn in_a_forked_child_the_budgets_bound_reads_no_frozen_usage() {
    use rcu_reclaim::pressure::MemoryState;
    let rcu = Rcu::new(Config::new()).unwrap();
    let used = Arc::new(AtomicUsize::new(0));
    let b = budget(&rcu, &used, true);
    let limit = Duration::from_secs(5);
    used.store(b.watermarks().high, Ordering::SeqCst);
    assert_eq!(b.usage(), b.watermarks().high);
    assert!(common::eventually(limit, || rcu.memory_state() == MemoryState::Short));
    let (u, r) = (used.clone(), rcu.clone());
    let code = common::in_forked_child(&rcu, move || {
        // Nothing here reads the usage again (no `rcu-kswapd`, no check).
        u.store(0, Ordering::SeqCst);
        let plenty = common::eventually(limit, || r.memory_state() == MemoryState::Plenty);
        if !plenty {
            eprintln!("child: {:?} for good", r.memory_state());
        }
        plenty
    });
    assert_eq!(code, 0, "the child's bound kept the parent's last usage");
    // In the parent `rcu-kswapd` reads it every 10 ms.
    used.store(0, Ordering::SeqCst);
    assert!(common::eventually(limit, || rcu.memory_state() == MemoryState::Plenty));
    drop(b);
    assert!(!rcu.garbage_bounded());
}

/// A wait at a budget's bound that runs out says it is the budget's:
/// near its `high` watermark, not a memory limit the program never set
/// (the report read "near its memory limit" for every bound but the cap).
#[test]
fn a_wait_at_the_budgets_bound_that_runs_out_names_the_budget() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let used = Arc::new(AtomicUsize::new(0));
    let b = budget(&rcu, &used, true);
    used.store(b.watermarks().high, Ordering::SeqCst);
    assert_eq!(b.usage(), b.watermarks().high);
    let cell = RcuCell::new_in(&rcu, Box::new(vec![0u8; MIB]));
    // A reader that stays: the wait at the bound runs its second out.
    let (stop, reader) = common::hold_reader(&rcu);
    let log = common::Captured::default();
    {
        let _logged = log.on_this_thread();
        cell.store(Box::new(vec![1u8; MIB]));
    }
    stop.send(()).unwrap();
    reader.join().unwrap();
    drop(cell);
    drop(b);
    rcu.barrier();
    let text = log.text();
    assert!(
        text.contains("near the high watermark of its MemoryBudget"),
        "the report did not name the budget: {text}"
    );
    assert!(
        !text.contains("memory limit"),
        "the report spoke of a memory limit: {text}"
    );
}

/// Budgets made and dropped in any order, with the caller's bound set and
/// removed among them, while two writers retire counted values (some at
/// a budget's `high`, where they wait at its bound): no hang, every value
/// dropped once, and with every budget gone and the caller's bound
/// removed, no bound left; while any budget lives, one bounds the domain.
#[test]
#[cfg_attr(miri, ignore = "many threads and megabytes")]
fn budgets_and_bounds_churned_under_writers_leave_the_right_bound() {
    use std::sync::atomic::AtomicBool;
    let rcu = Rcu::new(Config::new()).unwrap();
    let used = Arc::new(AtomicUsize::new(0));
    let drops = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    struct Counted(Arc<AtomicUsize>, #[allow(dead_code)] Vec<u8>);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
    let writers: Vec<_> = (0..2)
        .map(|_| {
            let (r, d, stop) = (rcu.clone(), drops.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    r.defer_drop_sized(Box::new(Counted(d.clone(), vec![0u8; 64 << 10])), 64 << 10);
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let mut budgets: Vec<MemoryBudget> = Vec::new();
    let mut callers = false;
    for _ in 0..200 {
        match next(5) {
            0 | 1 if budgets.len() < 4 => {
                let b = budget(&rcu, &used, true);
                used.store(b.watermarks().high * next(2) as usize, Ordering::SeqCst);
                budgets.push(b);
            }
            0..=2 if !budgets.is_empty() => {
                budgets.remove(next(budgets.len() as u64) as usize);
            }
            3 => {
                rcu.bound_garbage(85 * MIB, || Some(10 * MIB));
                callers = true;
            }
            _ => {
                rcu.unbound_garbage();
                callers = false;
            }
        }
        assert_eq!(
            rcu.garbage_bounded(),
            callers || !budgets.is_empty(),
            "{} budgets alive, the caller's bound {}",
            budgets.len(),
            if callers { "set" } else { "removed" }
        );
    }
    budgets.clear();
    rcu.unbound_garbage();
    assert!(!rcu.garbage_bounded(), "a bound outlived its budget");
    stop.store(true, Ordering::Relaxed);
    let written: usize = writers.into_iter().map(|w| w.join().unwrap()).sum();
    rcu.barrier();
    assert_eq!(drops.load(Ordering::Relaxed), written);
    assert_eq!(rcu.pending_bytes(), 0);
}
