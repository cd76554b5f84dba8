//! `Topology::synthetic` with counts whose product overflows panics with a
//! message naming the call, instead of an arithmetic overflow (debug) or a
//! wrapped, empty topology (release).

use rcu_reclaim::topology::Topology;

#[test]
fn synthetic_with_an_overflowing_product_names_the_problem() {
    for (nodes, per) in [(usize::MAX, 2), (1 << 32, 1 << 32)] {
        let err = std::panic::catch_unwind(|| Topology::synthetic(nodes, per))
            .expect_err("an overflowing topology must be refused");
        let msg = err
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        assert!(msg.contains("Topology::synthetic"), "{msg}");
    }
}
