//! Maps walked while their tables grow and shrink, loader races, and
//! loaders that write each other's structures.

use super::*;

// ---------------------------------------------------------------------
// A map walked while its table grows and shrinks, and get_or_insert_with
// races.
// ---------------------------------------------------------------------

#[test]
fn map_iteration_across_resizes_and_loader_races() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let map: Arc<RcuHashMap<u64, Tracked>> = Arc::new(RcuHashMap::with_capacity_in(4, &rcu));
    const STABLE: u64 = 64;
    for k in 0..STABLE {
        map.insert(k, Tracked::new(S_MAP, k << 32, 0));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let gen = Arc::new(AtomicU64::new(1));
    let mut threads = Vec::new();
    // Two writers grow the table with a wave of keys and shrink it again.
    for w in 0..2u64 {
        let (map, stop, gen) = (map.clone(), stop.clone(), gen.clone());
        threads.push(thread::spawn(move || {
            let base = 1_000_000 * (w + 1);
            let mut waves = 0;
            while !stop.load(Ordering::Relaxed) || waves < 2 {
                let n = 1500 + (waves % 3) * 500;
                for k in 0..n {
                    let g = gen.fetch_add(1, Ordering::Relaxed);
                    map.insert(base + k, Tracked::new(S_MAP, g, 0));
                }
                for k in 0..n {
                    if k % 3 == 0 {
                        // remove and insert again: a new entry for the key
                        map.remove(&(base + k));
                        let g = gen.fetch_add(1, Ordering::Relaxed);
                        map.insert(base + k, Tracked::new(S_MAP, g, 0));
                    }
                }
                for k in 0..n {
                    map.remove(&(base + k));
                }
                map.retain(|k, _| *k < 1_000_000 || *k % 2 == 0);
                waves += 1;
            }
        }));
    }
    // Walkers.
    let walks = Arc::new(AtomicUsize::new(0));
    for _ in 0..2 {
        let (rcu, map, stop, walks) = (rcu.clone(), map.clone(), stop.clone(), walks.clone());
        threads.push(thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let g = rcu.read_lock();
                let mut stable_seen = vec![0u32; STABLE as usize];
                let mut entries = HashSet::new();
                for (k, v) in map.iter(&g) {
                    let val = v.check();
                    assert!(
                        entries.insert((*k, val)),
                        "entry ({k}, {val}) yielded twice in one walk"
                    );
                    if *k < STABLE {
                        assert_eq!(val, *k << 32, "a stable key's value changed");
                        stable_seen[*k as usize] += 1;
                    }
                }
                for (k, n) in stable_seen.iter().enumerate() {
                    assert_eq!(*n, 1, "stable key {k} yielded {n} times in one walk");
                }
                for k in (0..STABLE).step_by(7) {
                    assert_eq!(map.get(&k, &g).map(Tracked::check), Some(k << 32));
                }
                walks.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // Loader races: four threads get_or_insert_with the same fresh keys.
    let loads = Arc::new(AtomicUsize::new(0));
    let inserted_keys = 400u64;
    let race = Arc::new(Barrier::new(4));
    let mut racers = Vec::new();
    for _ in 0..4 {
        let (rcu, map, loads, race) = (rcu.clone(), map.clone(), loads.clone(), race.clone());
        racers.push(thread::spawn(move || {
            race.wait();
            for k in 0..inserted_keys {
                let key = 10_000 + k;
                let g = rcu.read_lock();
                let v = map.get_or_insert_with(
                    key,
                    || {
                        loads.fetch_add(1, Ordering::SeqCst);
                        Tracked::new(S_MAP, key, 0)
                    },
                    &g,
                );
                assert_eq!(v.check(), key);
            }
        }));
    }
    let _stop = StopOnDrop(&stop);
    for r in racers {
        r.join().unwrap();
    }
    assert_eq!(
        loads.load(Ordering::SeqCst),
        inserted_keys as usize,
        "get_or_insert_with ran its loader other than once per inserted key"
    );
    thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    assert!(walks.load(Ordering::Relaxed) > 0);
    // Quiescent: len agrees with a walk, and with what is alive.
    let g = rcu.read_lock();
    let walked = map.iter(&g).count();
    drop(g);
    assert_eq!(map.len(), walked);
    assert_eq!(walked as u64, STABLE + inserted_keys);
    rcu.barrier();
    assert_eq!(live(S_MAP), walked as isize);
    drop(map);
    assert_quiescent_books(&rcu);
    assert_eq!(live(S_MAP), 0);
    assert_eq!(POISON_READS[S_MAP].load(Ordering::SeqCst), 0);
}

/// The same walk on a QSBR domain: online walkers that report between
/// walks, writers that are registered and report between writes (and one
/// that is not registered at all), and tables retired across resizes.
#[test]
fn qsbr_map_iteration_across_resizes() {
    let rcu = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
    let map: Arc<RcuHashMap<u64, Tracked>> = Arc::new(RcuHashMap::with_capacity_in(4, &rcu));
    const STABLE: u64 = 32;
    for k in 0..STABLE {
        map.insert(k, Tracked::new(S_QSBR_MAP, k << 32, 0));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for w in 0..2u64 {
        let (rcu, map, stop) = (rcu.clone(), map.clone(), stop.clone());
        threads.push(thread::spawn(move || {
            let mut me = (w == 0).then(|| rcu.register_qsbr_thread());
            let base = 1_000_000 * (w + 1);
            let mut waves = 0;
            while !stop.load(Ordering::Relaxed) || waves < 2 {
                for k in 0..1200 {
                    let val = ((waves as u64) << 40) | (base + k);
                    map.insert(base + k, Tracked::new(S_QSBR_MAP, val, 0));
                    if let Some(me) = &mut me {
                        me.quiescent_state();
                    }
                }
                for k in 0..1200 {
                    map.remove(&(base + k));
                    if let Some(me) = &mut me {
                        if k % 8 == 0 {
                            me.quiescent_state();
                        }
                    }
                }
                if let Some(me) = &mut me {
                    me.quiescent_state();
                    rcu.collect();
                }
                waves += 1;
            }
        }));
    }
    let walks = Arc::new(AtomicUsize::new(0));
    for _ in 0..2 {
        let (rcu, map, stop, walks) = (rcu.clone(), map.clone(), stop.clone(), walks.clone());
        threads.push(thread::spawn(move || {
            let mut me = rcu.register_qsbr_thread();
            while !stop.load(Ordering::Relaxed) {
                {
                    let g = me.read_lock();
                    let mut stable = vec![0u32; STABLE as usize];
                    let mut seen = HashSet::new();
                    for (k, v) in map.iter(&g) {
                        let val = v.check();
                        // A key re-inserted by a later wave may be yielded
                        // once per entry (documented), never one entry twice.
                        assert!(
                            seen.insert((*k, val)),
                            "entry ({k}, {val:#x}) yielded twice"
                        );
                        if *k < STABLE {
                            assert_eq!(val, *k << 32);
                            stable[*k as usize] += 1;
                        } else {
                            assert_eq!(val & ((1 << 40) - 1), *k);
                        }
                    }
                    assert!(stable.iter().all(|&n| n == 1), "stable keys: {stable:?}");
                }
                me.quiescent_state();
                walks.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    assert!(walks.load(Ordering::Relaxed) > 0);
    assert_eq!(map.len(), STABLE as usize);
    rcu.barrier();
    assert_eq!(live(S_QSBR_MAP), STABLE as isize);
    drop(map);
    assert_quiescent_books(&rcu);
    assert_eq!(live(S_QSBR_MAP), 0);
    assert_eq!(POISON_READS[S_QSBR_MAP].load(Ordering::SeqCst), 0);
}

/// Two threads whose loaders write each other's structures (a map's
/// `get_or_insert_with` inserting into a cache, the cache's inserting into
/// the map), with removals beside: the documented lock-order deadlock is
/// broken by a panic in one write, never a hang, and both structures stay
/// consistent (lengths, bytes) after the unwinds.
#[test]
fn crossed_loaders_between_a_map_and_a_cache() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let map: Arc<RcuHashMap<u64, Vec<u8>>> = Arc::new(RcuHashMap::new_in(&rcu));
    let cache: Arc<RcuCache<u64, Vec<u8>>> =
        Arc::new(RcuCache::builder().rcu(&rcu).max_bytes(64 << 10).build());
    let go = Arc::new(Barrier::new(2));
    let mut threads = Vec::new();
    for t in 0..2u64 {
        let (rcu, map, cache, go) = (rcu.clone(), map.clone(), cache.clone(), go.clone());
        threads.push(thread::spawn(move || {
            go.wait();
            let mut panics = 0;
            let start = Instant::now();
            let mut i = 0u64;
            while i < 5000 || (i < 20_000 && start.elapsed() < Duration::from_secs(2)) {
                i += 1;
                let k = i % 8;
                let r = catch_unwind(AssertUnwindSafe(|| {
                    let g = rcu.read_lock();
                    if t == 0 {
                        let v = map.get_or_insert_with(
                            k,
                            || {
                                cache.insert(k, vec![1u8; 2048]);
                                vec![0u8; 16]
                            },
                            &g,
                        );
                        assert!(v.len() == 16 && v.iter().all(|&b| b == v[0]));
                    } else {
                        let v = cache.get_or_insert_with(
                            k,
                            || {
                                map.insert(k, vec![2u8; 16]);
                                vec![3u8; 2048]
                            },
                            &g,
                        );
                        assert!(v.len() == 2048 && v.iter().all(|&b| b == v[0]));
                    }
                }));
                if let Err(e) = r {
                    let msg = e
                        .downcast_ref::<String>()
                        .map(String::as_str)
                        .or_else(|| e.downcast_ref::<&str>().copied())
                        .unwrap_or("");
                    assert!(msg.contains("deadlock"), "unexpected panic: {msg}");
                    panics += 1;
                }
                if i % 3 == 0 {
                    if t == 0 {
                        map.remove(&k);
                    } else {
                        cache.remove(&k);
                    }
                }
            }
            panics
        }));
    }
    let mut panics = 0;
    for t in threads {
        panics += t.join().unwrap();
    }
    eprintln!("{panics} writes broke a deadlock");
    let g = rcu.read_lock();
    assert_eq!(map.len(), map.iter(&g).count());
    let cached = (0..8).filter(|k| cache.contains_key(k, &g)).count();
    drop(g);
    assert_eq!(cache.len(), cached);
    assert_eq!(
        cache.bytes(),
        cached * (2048 + RcuCache::<u64, Vec<u8>>::ENTRY_OVERHEAD)
    );
    cache.clear();
    assert_eq!((cache.len(), cache.bytes()), (0, 0));
    drop((map, cache));
    assert_quiescent_books(&rcu);
}
