use rcu_reclaim::{Rcu, RcuCell};
#[test]
fn smoke() {
    let rcu = Rcu::global();
    let cell = RcuCell::new(5u64);
    {
        let g = rcu.read_lock();
        assert_eq!(cell.load(&g), Some(&5));
    }
    let old = cell.replace(Box::new(6)).unwrap();
    assert_eq!(*old.into_box(), 5);
    let c = rcu.start_poll();
    let t = std::time::Instant::now();
    while !rcu.poll(&c) { std::thread::yield_now(); assert!(t.elapsed().as_secs() < 5); }
    println!("{:?}", rcu.stats());
}
