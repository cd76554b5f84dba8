//! `RcuHashMap::retain` and keys whose `Hash` or `Eq`
//! misbehave. std's `HashMap::retain` offers every element to `f` and
//! calls neither `Hash` nor `Eq`; this map's `retain` looked each entry
//! up again by its key, so an entry whose key is not equal to itself (a
//! NaN-like key) or hashes differently each time was never offered, and
//! `retain(|_, _| false)` left it in the map; a key whose `Hash` panics
//! made `retain` panic.

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use rcu_reclaim::{Config, Rcu, RcuHashMap, ReclaimSize};

/// A key whose `Eq` is not reflexive for odd ids (as NaN), whose `Hash`
/// changes at every call for ids of 100 and up, and whose `Hash` and `Eq`
/// count their calls.
#[derive(Debug)]
struct Odd(u64);

static HASHES: AtomicUsize = AtomicUsize::new(0);
static EQS: AtomicUsize = AtomicUsize::new(0);
static SALT: AtomicU64 = AtomicU64::new(0);

impl Hash for Odd {
    fn hash<H: Hasher>(&self, state: &mut H) {
        HASHES.fetch_add(1, Ordering::SeqCst);
        self.0.hash(state);
        if self.0 >= 100 {
            SALT.fetch_add(1, Ordering::SeqCst).hash(state);
        }
    }
}

impl PartialEq for Odd {
    fn eq(&self, other: &Self) -> bool {
        EQS.fetch_add(1, Ordering::SeqCst);
        self.0 == other.0 && self.0 % 2 == 0
    }
}

impl Eq for Odd {}

impl ReclaimSize for Odd {
    fn reclaim_size(&self) -> usize {
        std::mem::size_of::<Self>()
    }
}

#[test]
fn retain_offers_every_entry_whatever_its_keys_hash_and_eq_do() {
    let rcu = Rcu::new(Config::new().on_demand()).unwrap();
    let map: RcuHashMap<Odd, u64> = RcuHashMap::new_in(&rcu);
    // 0..10: even keys are well behaved, odd ones NaN-like; 100..110:
    // a new hash at every call.
    for k in (0..10).chain(100..110) {
        map.insert(Odd(k), k);
    }
    assert_eq!(map.len(), 20);
    let mut offered = Vec::new();
    let (hashes, eqs) = (HASHES.load(Ordering::SeqCst), EQS.load(Ordering::SeqCst));
    map.retain(|k, v| {
        assert_eq!(k.0, *v);
        offered.push(k.0);
        false
    });
    offered.sort_unstable();
    let want: Vec<u64> = (0..10).chain(100..110).collect();
    assert_eq!(offered, want, "retain offered only these entries");
    assert_eq!(map.len(), 0, "retain(|_, _| false) left entries behind");
    assert!(map.iter(&rcu.read_lock()).next().is_none());
    assert_eq!(
        (
            HASHES.load(Ordering::SeqCst) - hashes,
            EQS.load(Ordering::SeqCst) - eqs
        ),
        (0, 0),
        "retain called the keys' Hash and Eq"
    );
    drop(map);
    rcu.barrier();
    assert_eq!(rcu.pending_bytes(), 0);
}
