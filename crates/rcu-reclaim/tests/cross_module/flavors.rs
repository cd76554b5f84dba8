//! Mixed flavors in one process: nested sections in every order, and
//! grace-period waits of one domain inside another's section.

use super::*;

// ---------------------------------------------------------------------
// Mixed flavors in one process: nested sections in every order, and
// grace-period waits of one domain inside another's section.
// ---------------------------------------------------------------------

#[test]
fn mixed_flavors_nested_sections_and_cross_domain_waits() {
    let memb = Rcu::new(Config::new()).unwrap();
    let mb = Rcu::new(Config::new().flavor(Flavor::Mb)).unwrap();
    let qsbr = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
    let global = Rcu::global().clone();
    // Ordered: a wait of domain i happens only inside sections of domains
    // after i (QSBR last: an online registration is one long section), so
    // no two threads wait for each other's domains.
    let domains = [global.clone(), memb.clone(), mb.clone(), qsbr.clone()];
    let cells: Arc<Vec<RcuCell<Tracked>>> = Arc::new(
        domains
            .iter()
            .map(|d| RcuCell::new_in(d, Some(Box::new(Tracked::new(S_FLAVORS, 0, 16)))))
            .collect(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicUsize::new(0));
    let mut threads = Vec::new();
    for t in 0..2usize {
        let (domains, cells, stop, reads) =
            (domains.clone(), cells.clone(), stop.clone(), reads.clone());
        threads.push(thread::spawn(move || {
            let mut me = domains[3].register_qsbr_thread();
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                // Nested guards of the three non-QSBR domains, in an order
                // that changes every time, inside the QSBR section.
                let order: [usize; 3] = match (i + t) % 6 {
                    0 => [0, 1, 2],
                    1 => [0, 2, 1],
                    2 => [1, 0, 2],
                    3 => [1, 2, 0],
                    4 => [2, 0, 1],
                    _ => [2, 1, 0],
                };
                {
                    let q = me.read_lock();
                    let g0 = domains[order[0]].read_lock();
                    let g1 = domains[order[1]].read_lock();
                    let g1b = domains[order[1]].read_lock(); // nested, same domain
                    let g2 = domains[order[2]].read_lock();
                    let guards = [(&g0, order[0]), (&g1, order[1]), (&g2, order[2])];
                    for (g, d) in guards {
                        cells[d].load(g).map(Tracked::check);
                    }
                    cells[order[1]].load(&g1b).map(Tracked::check);
                    cells[3].load(&q).map(Tracked::check);
                    drop(g1);
                    cells[order[1]].load(&g1b).map(Tracked::check);
                    if i % 64 == 0 {
                        // Inside every non-QSBR section: nothing may wait.
                        for d in &domains[..3] {
                            assert!(!d.try_synchronize());
                        }
                        assert!(
                            !domains[3].try_synchronize(),
                            "an online QSBR thread is in a section"
                        );
                    }
                    drop(g2);
                    drop(g0);
                    drop(g1b);
                    reads.fetch_add(1, Ordering::Relaxed);
                }
                if i % 16 == 0 {
                    // Online in QSBR (a section of domain 3) and inside a
                    // section of domain 2: waiting for domains 0 and 1 is
                    // allowed (they never wait for this thread).
                    let g2 = domains[2].read_lock();
                    domains[(i / 16) % 2].synchronize();
                    cells[2].load(&g2).map(Tracked::check);
                    drop(g2);
                    // Documented misuse: waiting for the QSBR domain while
                    // online in it panics rather than wait for itself.
                    if i % 256 == 0 {
                        let r = catch_unwind(AssertUnwindSafe(|| domains[3].synchronize()));
                        assert!(r.is_err());
                    }
                    me.synchronize(); // goes offline for the wait
                }
                me.quiescent_state();
                i += 1;
            }
        }));
    }
    // Writers: each stores into every domain; waits of a domain only
    // inside sections of later domains.
    for w in 0..2usize {
        let (domains, cells, stop) = (domains.clone(), cells.clone(), stop.clone());
        threads.push(thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for d in 0..4 {
                    cells[d].store(Box::new(Tracked::new(S_FLAVORS, i, 16)));
                }
                if i % 8 == 0 {
                    let g = domains[2].read_lock();
                    domains[w].synchronize_expedited();
                    drop(g);
                    let cookie = domains[3].start_poll();
                    domains[3].cond_synchronize(cookie); // not in any section
                }
                if i % 32 == 0 {
                    let old = cells[1].replace(Box::new(Tracked::new(S_FLAVORS, i, 16)));
                    let g = domains[2].read_lock();
                    // Dropping a Retired of domain 1 inside a section of
                    // domain 2 waits for domain 1's grace period only.
                    drop(old);
                    drop(g);
                }
                i += 1;
            }
        }));
    }
    thread::sleep(Duration::from_secs(4));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    assert!(reads.load(Ordering::Relaxed) > 0);
    drop(cells);
    for d in &domains[1..] {
        assert_quiescent_books(d);
    }
    global.barrier();
    assert_eq!(live(S_FLAVORS), 0);
    assert_eq!(POISON_READS[S_FLAVORS].load(Ordering::SeqCst), 0);
}
