//! A cache's own calls made from inside its closures and its
//! weigher (`clear`, `remove`, `insert` from a `get_or_insert_with`
//! loader, which holds the key's stripe): each is refused with a panic,
//! and the cache keeps every entry queued, so a later quiet `clear`
//! empties it to 0 bytes. The panic names the caller's line, as the map's
//! do (it pointed inside `src/cache`).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};

static WHERE: Mutex<Vec<String>> = Mutex::new(Vec::new());

use rcu_reclaim::{Config, Rcu, RcuCache};

#[test]
fn clear_insert_and_remove_from_a_loader_leave_the_cache_whole() {
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if let Some(at) = info.location() {
            WHERE.lock().unwrap().push(at.file().to_string());
        }
        prev(info);
    }));
    let rcu = Rcu::new(Config::new()).unwrap();
    let cache: Arc<RcuCache<u64, Vec<u8>>> = Arc::new(
        RcuCache::builder()
            .max_bytes(1 << 20)
            .shards(4)
            .rcu(&rcu)
            .build(),
    );
    for k in 0..500 {
        cache.insert(k, vec![0; 100]);
    }
    let (len, bytes) = (cache.len(), cache.bytes());
    for (i, what) in ["clear", "insert", "remove", "insert_other", "remove_other"]
        .iter()
        .enumerate()
    {
        let g = rcu.read_lock();
        let c = cache.clone();
        let r = catch_unwind(AssertUnwindSafe(|| {
            cache
                .get_or_insert_with(
                    10_000 + i as u64,
                    || {
                        match *what {
                            "clear" => c.clear(),
                            "insert" => {
                                c.insert(10_000 + i as u64, vec![1]);
                            }
                            "remove" => {
                                c.remove(&(10_000 + i as u64));
                            }
                            "insert_other" => {
                                c.insert(20_000, vec![1]);
                            }
                            _ => {
                                c.remove(&3);
                            }
                        }
                        vec![2; 10]
                    },
                    &g,
                )
                .len()
        }));
        drop(g);
        assert!(
            r.is_err(),
            "{what}: a write from the loader was let through"
        );
        let at = WHERE.lock().unwrap().pop().unwrap_or_default();
        assert!(
            at.ends_with("tests/cache_reentry.rs"),
            "{what}: the panic points at {at}"
        );
        assert_eq!(cache.len(), len, "{what}: entries changed");
        assert_eq!(cache.bytes(), bytes, "{what}: bytes changed");
    }
    cache.clear();
    assert_eq!((cache.len(), cache.bytes()), (0, 0));
}
