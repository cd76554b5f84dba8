//! Direct reclaim from an allocation runs the caller's shrinkers: a panic
//! in one must not unwind out of the global allocator (undefined
//! behaviour); the allocation proceeds.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rcu_reclaim::reclaim::{
    AccountingAlloc, MemoryBudget, Reclaimer, Scanned, ShrinkControl, Shrinker,
};
use rcu_reclaim::{Config, Rcu};

#[global_allocator]
static ALLOC: AccountingAlloc = AccountingAlloc::system();

struct Panics(Arc<AtomicUsize>);

impl Shrinker for Panics {
    fn count(&self, _: &ShrinkControl) -> usize {
        1 << 20
    }
    fn scan(&self, _: &mut ShrinkControl) -> Scanned {
        self.0.fetch_add(1, Ordering::SeqCst);
        panic!("this shrinker panics");
    }
}

#[test]
fn a_shrinker_panicking_under_an_allocation_never_unwinds_out_of_the_allocator() {
    let rcu = Rcu::new(Config::new().on_demand()).unwrap();
    let reclaimer = Arc::new(Reclaimer::new(&rcu));
    let scans = Arc::new(AtomicUsize::new(0));
    reclaimer.register(Arc::new(Panics(scans.clone())));
    let limit = AccountingAlloc::live_bytes() + (64 << 20);
    let budget = Arc::new(MemoryBudget::new(
        limit,
        reclaimer,
        AccountingAlloc::live_bytes,
    ));
    AccountingAlloc::enforce(budget.clone()).unwrap();
    // Past `min`: the allocating thread reclaims directly, and the
    // shrinker panics inside the allocator.
    let big = std::panic::catch_unwind(|| vec![1u8; 80 << 20].len());
    assert_eq!(big.ok(), Some(80 << 20), "the allocation proceeds");
    assert!(scans.load(Ordering::SeqCst) >= 1, "the shrinker was asked");
    assert!(budget.stats().direct_reclaims >= 1);
}
