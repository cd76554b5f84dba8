//! Every default way to retire a value books its real size
//! (`ReclaimSize`), and the opt-ins book what they are told.

use rcu_reclaim::{reclaim_size, Config, Rcu, RcuCell, ReclaimSize};

const KIB64: usize = 64 << 10;
const VEC: usize = std::mem::size_of::<Vec<u8>>();

fn on_demand() -> Rcu {
    Rcu::new(Config::new().on_demand()).unwrap()
}

/// Runs `retire` on an on-demand domain and returns the bytes it booked.
fn booked(retire: impl FnOnce(&Rcu)) -> usize {
    let rcu = on_demand();
    retire(&rcu);
    let bytes = rcu.pending_bytes();
    rcu.barrier();
    assert_eq!(rcu.pending_bytes(), 0);
    bytes
}

#[allow(clippy::box_collection)] // RcuCell and defer_drop take a Box
fn buffer() -> Box<Vec<u8>> {
    Box::new(vec![0u8; KIB64])
}

#[test]
fn a_64_kib_vec_books_64_kib_however_it_is_retired() {
    let want = KIB64 + VEC;
    assert_eq!(
        booked(|rcu| rcu.defer_drop(buffer())),
        want,
        "Rcu::defer_drop"
    );
    assert_eq!(
        booked(|rcu| rcu.try_defer_drop(buffer()).unwrap()),
        want,
        "Rcu::try_defer_drop"
    );
    assert_eq!(
        booked(|rcu| RcuCell::new_in(rcu, Some(buffer())).store(buffer())),
        want,
        "RcuCell::store"
    );
    assert_eq!(
        booked(|rcu| {
            let cell = RcuCell::new_in(rcu, Some(buffer()));
            cell.replace(buffer()).unwrap().defer_drop();
        }),
        want,
        "RcuCell::replace + Retired::defer_drop"
    );
    assert_eq!(
        booked(|rcu| RcuCell::new_in(rcu, Some(buffer()))
            .take()
            .unwrap()
            .defer_drop()),
        want,
        "RcuCell::take + Retired::defer_drop"
    );
    assert_eq!(
        booked(|rcu| {
            RcuCell::new_in(rcu, Some(buffer())).update(|_| Some(buffer()));
        }),
        want,
        "RcuCell::update"
    );
    assert_eq!(
        booked(|rcu| {
            let cell = RcuCell::new_in(rcu, Some(buffer()));
            let guard = rcu.read_lock();
            let seen = cell.load(&guard);
            if let Ok(Some(old)) = cell.compare_exchange(seen, Some(buffer()), &guard) {
                old.defer_drop();
            }
        }),
        want,
        "RcuCell::compare_exchange + Retired::defer_drop"
    );
}

#[test]
fn the_opt_ins_book_what_they_are_told() {
    assert_eq!(booked(|rcu| rcu.defer_drop_sized(buffer(), 10)), 10);
    assert_eq!(
        booked(|rcu| RcuCell::new_in(rcu, Some(buffer()))
            .take()
            .unwrap()
            .defer_drop_sized(7)),
        7
    );
    assert_eq!(
        booked(|rcu| {
            RcuCell::new_in(rcu, Some(buffer())).store_weighed(buffer(), |old| old.len() / 2)
        }),
        KIB64 / 2
    );
    // An empty cell retires nothing, and does not weigh.
    assert_eq!(
        booked(|rcu| RcuCell::new_in(rcu, None).store_weighed(buffer(), |_| unreachable!())),
        0
    );
}

struct Page {
    title: String,
    body: Vec<u8>,
    tags: Vec<String>,
    views: u64,
}
reclaim_size!(Page { title, body, tags });

struct Blob(Vec<u8>, u32);
reclaim_size!(Blob { 0 });

#[test]
fn a_struct_opts_in_with_the_macro() {
    let p = Page {
        title: String::from("home"),
        body: vec![0; KIB64],
        tags: vec![String::from("a"), String::from("bc")],
        views: 1,
    };
    let tags = 2 * std::mem::size_of::<String>() + 3;
    let want = std::mem::size_of::<Page>() + 4 + KIB64 + tags;
    assert_eq!(p.views, 1);
    assert_eq!(p.reclaim_size(), want);
    assert_eq!(booked(|rcu| rcu.defer_drop(Box::new(p))), want);
    let b = Blob(vec![0; 100], 0);
    assert_eq!(b.1, 0);
    assert_eq!(b.reclaim_size(), std::mem::size_of::<Blob>() + 100);
    // In containers too.
    let pages = vec![Blob(vec![0; 10], 0), Blob(vec![0; 20], 0)];
    assert_eq!(
        pages.reclaim_size(),
        VEC + 2 * std::mem::size_of::<Blob>() + 30
    );
}

#[test]
fn retired_derefs_to_the_value() {
    let cell = RcuCell::new(vec![1, 2, 3]);
    let old = cell.replace(Box::new(vec![4])).unwrap();
    assert_eq!(old.len(), 3);
    assert_eq!(&*old, &[1, 2, 3]);
    // A reader that loaded it before the unlink still sees the same value.
    let guard = cell.domain().read_lock();
    assert_eq!(cell.load(&guard), Some(&vec![4]));
    drop(guard);
    assert_eq!(*old.into_box(), vec![1, 2, 3]);
}

#[test]
fn the_default_cell_is_empty_in_the_global_domain() {
    let cell: RcuCell<String> = RcuCell::default();
    assert_eq!(cell.domain().id(), Rcu::global().id());
    assert!(cell.load(&cell.domain().read_lock()).is_none());
    cell.store(Box::new(String::from("x")));
    assert_eq!(cell.load(&cell.domain().read_lock()).unwrap(), "x");
}

#[test]
fn drops_anywhere_follows_the_elements_and_the_declaration() {
    use rcu_reclaim::drops_anywhere;
    use std::collections::HashMap;
    use std::sync::Arc;
    // No drop glue, or std containers of such values.
    assert!(drops_anywhere::<[u64; 8]>());
    assert!(drops_anywhere::<String>());
    assert!(drops_anywhere::<Vec<Option<Box<[u8]>>>>());
    assert!(drops_anywhere::<HashMap<String, Vec<u32>>>());
    assert!(drops_anywhere::<(String, u64, Box<str>)>());
    // A pointee with drop glue behind a shared pointer: its last drop runs it.
    assert!(!drops_anywhere::<Arc<String>>());
    assert!(!drops_anywhere::<Vec<Arc<String>>>());

    // A struct's own declaration, checked against the fields it names.
    struct Plain {
        name: String,
        hops: Vec<u32>,
    }
    rcu_reclaim::reclaim_size!(Plain { name, hops }; drops_anywhere);
    assert!(drops_anywhere::<Plain>());
    struct Shared {
        name: String,
        owner: Arc<String>,
    }
    rcu_reclaim::reclaim_size!(Shared { name, owner }; drops_anywhere);
    assert!(
        !drops_anywhere::<Shared>(),
        "a named field that does not drop anywhere"
    );
    // Undeclared: a struct with drop glue is not assumed to.
    struct Undeclared {
        name: String,
    }
    rcu_reclaim::reclaim_size!(Undeclared { name });
    assert!(!drops_anywhere::<Undeclared>());
    let _ = (
        Plain {
            name: String::new(),
            hops: vec![],
        }
        .hops,
        Shared {
            name: String::new(),
            owner: Arc::default(),
        }
        .name,
        Undeclared {
            name: String::new(),
        }
        .name,
    );
}

/// `reclaim_size!(impl[..] ..)` on generic structs: sizes as for a plain
/// struct, and `drops_anywhere` only where every named field's type does.
#[test]
fn reclaim_size_takes_generic_structs() {
    use rcu_reclaim::{drops_anywhere, reclaim_size, ReclaimSize};
    struct Pair<A, B> {
        a: A,
        b: B,
    }
    reclaim_size!(impl[A: ReclaimSize, B: ReclaimSize] Pair<A, B> { a, b }; drops_anywhere);
    struct Plain<T> {
        items: Vec<T>,
        _n: u64,
    }
    reclaim_size!(impl[T: ReclaimSize] Plain<T> { items });
    let p = Pair {
        a: String::from("abc"),
        b: vec![1u32; 4],
    };
    assert_eq!(
        p.reclaim_size(),
        size_of::<Pair<String, Vec<u32>>>() + 3 + 16
    );
    assert!(drops_anywhere::<Pair<String, Vec<u32>>>());
    assert!(!drops_anywhere::<Pair<String, std::sync::Arc<String>>>());
    let q = Plain {
        items: vec![7u64; 3],
        _n: 0,
    };
    assert_eq!(q.reclaim_size(), size_of::<Plain<u64>>() + 24);
}

#[test]
fn a_routing_table_of_std_types_sizes_itself() {
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};
    use std::path::PathBuf;
    use std::time::{Duration, Instant};
    const { assert!(<(Ipv4Addr, SocketAddr, IpAddr) as ReclaimSize>::PLAIN) };
    const { assert!(<(Duration, Instant, std::num::NonZeroU64) as ReclaimSize>::PLAIN) };
    const { assert!(<std::sync::atomic::AtomicU64 as ReclaimSize>::PLAIN) };
    let path = PathBuf::with_capacity(300);
    assert_eq!(
        path.reclaim_size(),
        std::mem::size_of::<PathBuf>() + path.capacity()
    );
    let c = std::ffi::CString::new("abc").unwrap();
    assert_eq!(
        c.reclaim_size(),
        std::mem::size_of::<std::ffi::CString>() + 4
    );
    // The map a routing table would declare, with no weigher.
    let rcu = on_demand();
    let routes: rcu_reclaim::RcuHashMap<Ipv4Addr, PathBuf> = rcu_reclaim::RcuHashMap::new_in(&rcu);
    let key = Ipv4Addr::new(10, 0, 0, 1);
    routes.insert(key, PathBuf::with_capacity(1000));
    let before = rcu.pending_bytes();
    routes.remove(&key);
    assert!(
        rcu.pending_bytes() - before >= 1000,
        "the removed path's heap is booked"
    );
    rcu.barrier();
}

/// A connection tracking table keyed by the 5-tuple (source and
/// destination addresses and ports, protocol) and tuples up to std's 12:
/// tuples had `ReclaimSize` only up to 4, and the error for a 5-tuple key
/// offered `reclaim_size!` and the derive, which a tuple (a type of no
/// crate of the program's) can take neither of.
#[test]
fn a_conntrack_table_keyed_by_the_5_tuple_sizes_itself() {
    use std::net::IpAddr;
    use std::net::Ipv4Addr;
    type FiveTuple = (IpAddr, u16, IpAddr, u16, u8);
    const { assert!(<FiveTuple as ReclaimSize>::PLAIN) };
    const { assert!(!<(u8, u8, u8, u8, u8, u8, u8, u8, u8, u8, u8, String) as ReclaimSize>::PLAIN) };
    const { assert!(<(u8, u8, u8, u8, u8, std::sync::Arc<u8>) as ReclaimSize>::SHARED) };
    let twelve = (
        0u8,
        1u16,
        2u32,
        3u64,
        4i8,
        5i16,
        6i32,
        7i64,
        'x',
        true,
        1.5f64,
        String::from("abc"),
    );
    assert_eq!(twelve.reclaim_size(), std::mem::size_of_val(&twelve) + 3);
    assert!(rcu_reclaim::drops_anywhere::<(u8, u8, u8, u8, String)>());
    let rcu = on_demand();
    let table: rcu_reclaim::RcuHashMap<FiveTuple, Vec<u8>> = rcu_reclaim::RcuHashMap::new_in(&rcu);
    let a = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    let b = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
    table.insert((a, 40000, b, 443, 6), vec![0u8; 1000]);
    let before = rcu.pending_bytes();
    assert!(table.remove(&(a, 40000, b, 443, 6)));
    assert!(
        rcu.pending_bytes() - before >= 1000,
        "the removed entry's heap is booked"
    );
    rcu.barrier();
}

/// The std wrappers a cache's or a table's values hold (a cached
/// `Result`, a per-entry `Mutex`, a lazily filled `OnceLock`, a heap of
/// timers) size themselves, so a derived value holding them compiles and
/// books their heap.
#[test]
fn std_wrappers_in_values_size_themselves() {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    use std::sync::{Mutex, OnceLock, RwLock};

    #[derive(ReclaimSize)]
    #[reclaim_size(drops_anywhere)]
    struct Entry {
        page: Result<Vec<u8>, String>,
        hits: Mutex<Vec<u32>>,
        meta: RwLock<String>,
        parsed: OnceLock<Vec<u8>>,
        timers: BinaryHeap<Reverse<u64>>,
        gen: std::num::Wrapping<u32>,
    }
    let e = Entry {
        page: Ok(vec![0; KIB64]),
        hits: Mutex::new(Vec::with_capacity(4)),
        meta: RwLock::new(String::with_capacity(10)),
        parsed: OnceLock::new(),
        timers: BinaryHeap::with_capacity(2),
        gen: std::num::Wrapping(0),
    };
    e.parsed.set(vec![0; 100]).unwrap();
    let want = std::mem::size_of::<Entry>() + KIB64 + 16 + 10 + 100 + 16;
    assert_eq!(e.reclaim_size(), want);
    const {
        assert!(rcu_reclaim::drops_anywhere::<Entry>());
        assert!(!<Entry as ReclaimSize>::SHARED && !<Entry as ReclaimSize>::PLAIN);
        assert!(<Result<u8, u16> as ReclaimSize>::PLAIN && <Mutex<u64> as ReclaimSize>::PLAIN);
        assert!(<Result<u8, std::sync::Arc<str>> as ReclaimSize>::SHARED);
        assert!(<Mutex<Option<std::sync::Arc<u8>>> as ReclaimSize>::SHARED);
    }
    let err: Result<Vec<u8>, String> = Err(String::with_capacity(7));
    assert_eq!(err.heap_size(), 7);
    // A mutex held while its value is weighed is not waited for.
    let m = Mutex::new(vec![0u8; 32]);
    let held = m.lock().unwrap();
    assert_eq!(m.reclaim_size(), std::mem::size_of::<Mutex<Vec<u8>>>());
    drop(held);
    assert_eq!(m.heap_size(), 32);
    // Booked in full by the default retire.
    let bytes = booked(|rcu| {
        let cell = RcuCell::new_in(rcu, Box::new(e));
        cell.store(Box::new(Entry {
            page: Err(String::new()),
            hits: Mutex::new(Vec::new()),
            meta: RwLock::new(String::new()),
            parsed: OnceLock::new(),
            timers: BinaryHeap::new(),
            gen: std::num::Wrapping(1),
        }));
    });
    assert_eq!(bytes, want);
    // A negative cache: values are `Result`s, with no weigher.
    let cache: rcu_reclaim::RcuCache<u32, Result<Vec<u8>, String>> =
        rcu_reclaim::RcuCache::builder().rcu(&on_demand()).build();
    assert!(cache.insert(1, Ok(vec![0; 1000])));
    assert!(cache.insert(2, Err("not found".into())));
    assert!(cache.bytes() >= 1000 + 9);
}

/// The std ranges, `Bound`, `Pin` of the std pointers, `LinkedList` and
/// the `Weak`s had no `ReclaimSize`: a value holding one (a lease's span
/// of ids, a range of keys, a pinned buffer, a tree's parent link) did not
/// derive it, and the error offered the derive and `reclaim_size!`, which
/// a std type takes neither of. Each counts what the type it stands for
/// does: a range its ends, `Pin<Box<T>>` as `Box<T>`, `Pin<Arc<T>>` and a
/// `Weak` the pointer only.
#[test]
fn ranges_pins_linked_lists_and_weaks_size_themselves() {
    use rcu_reclaim::drops_anywhere;
    use std::collections::LinkedList;
    use std::ops::{Bound, Range, RangeFrom, RangeFull, RangeInclusive, RangeTo, RangeToInclusive};
    use std::pin::Pin;
    use std::sync::{Arc, Weak};

    #[derive(ReclaimSize)]
    #[reclaim_size(drops_anywhere)]
    struct Lease {
        ids: Range<u64>,
        keys: RangeInclusive<String>,
        from: RangeFrom<String>,
        to: RangeTo<u32>,
        to_incl: RangeToInclusive<String>,
        all: RangeFull,
        lower: Bound<String>,
        buffer: Pin<Box<[u8; 100]>>,
        pending: LinkedList<String>,
        owner: Weak<Vec<u8>>,
    }
    let owner = Arc::new(vec![0u8; KIB64]);
    let lease = Lease {
        ids: 0..10,
        keys: String::from("a")..=String::from("zz"),
        from: String::from("abc")..,
        to: ..7,
        to_incl: ..=String::with_capacity(4),
        all: ..,
        lower: Bound::Excluded(String::from("12345")),
        buffer: Box::pin([0u8; 100]),
        pending: ["x", "yz"].map(String::from).into(),
        owner: Arc::downgrade(&owner),
    };
    let node = size_of::<String>() + 2 * size_of::<usize>();
    let heap = (1 + 2) + 3 + 4 + 5 + 100 + (2 * node + 3);
    assert_eq!(lease.reclaim_size(), size_of::<Lease>() + heap);
    assert_eq!((lease.ids.end, lease.to.end, lease.all), (10, 7, RangeFull));
    // A Weak owns none of the value's bytes, nor its heap.
    assert!(lease.owner.upgrade().is_some());
    let local = std::rc::Rc::new(String::from("kept by its Rc"));
    let weak = std::rc::Rc::downgrade(&local);
    assert_eq!(weak.reclaim_size(), size_of::<std::rc::Weak<String>>());
    assert_eq!(Some(weak).heap_size(), 0);
    const {
        // A Weak keeps its allocation alive after the last Arc: shared,
        // as an Arc is, so a cache weighed by ReclaimSize refuses it.
        assert!(<Lease as ReclaimSize>::SHARED && !<Lease as ReclaimSize>::PLAIN);
        assert!(<Weak<u8> as ReclaimSize>::SHARED && <Weak<u8> as ReclaimSize>::PLAIN);
        assert!(<Pin<Arc<u8>> as ReclaimSize>::SHARED && <Pin<Arc<u8>> as ReclaimSize>::PLAIN);
        assert!(!<Pin<Box<u8>> as ReclaimSize>::PLAIN && !<Pin<Box<u8>> as ReclaimSize>::SHARED);
        assert!(<(Range<u8>, RangeInclusive<i64>, RangeFull, Bound<u32>) as ReclaimSize>::PLAIN);
        assert!(!<Range<String> as ReclaimSize>::PLAIN && !<LinkedList<u8> as ReclaimSize>::PLAIN);
        assert!(
            <Range<Arc<u8>> as ReclaimSize>::SHARED && <LinkedList<Arc<u8>> as ReclaimSize>::SHARED
        );
    }
    // Dropped anywhere where their contents are; a Weak's drop never drops
    // the value (below), a pinned Arc's last drop does, as an Arc's.
    assert!(drops_anywhere::<Lease>());
    assert!(drops_anywhere::<Weak<String>>() && drops_anywhere::<std::rc::Weak<Vec<u8>>>());
    assert!(drops_anywhere::<Pin<Box<String>>>() && drops_anywhere::<LinkedList<Vec<u8>>>());
    assert!(!drops_anywhere::<Pin<Arc<String>>>() && drops_anywhere::<Pin<Arc<[u8]>>>());
    assert!(!drops_anywhere::<Range<Locked>>() && !drops_anywhere::<LinkedList<Locked>>());
    assert!(!drops_anywhere::<Pin<Box<Locked>>>() && !drops_anywhere::<Bound<Locked>>());

    // Booked in full by the default retire, the Weak as its pointer.
    let want = lease.reclaim_size();
    assert_eq!(booked(|rcu| rcu.defer_drop(Box::new(lease))), want);
    assert_eq!(Arc::strong_count(&owner), 1);
}

/// A value whose `Drop` takes a lock: declares nothing.
struct Locked(Vec<u8>);
impl Drop for Locked {
    fn drop(&mut self) {
        eprintln!("{}", self.0.len()); // stderr's lock
    }
}
reclaim_size!(Locked { 0 });

/// Why a `Weak` drops anywhere whatever its value: the value's `Drop` runs
/// at the last `Arc`'s drop; the last `Weak`'s only frees the allocation.
#[test]
fn a_weaks_drop_never_drops_the_value() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    struct Counted;
    impl Drop for Counted {
        fn drop(&mut self) {
            DROPS.fetch_add(1, Ordering::SeqCst);
        }
    }
    let strong = Arc::new(Counted);
    let weak = Arc::downgrade(&strong);
    drop(strong);
    assert_eq!(DROPS.load(Ordering::SeqCst), 1, "the last Arc's drop");
    drop(weak); // the last pointer of any kind: frees the allocation
    assert_eq!(DROPS.load(Ordering::SeqCst), 1, "not the Weak's");
    let rc = std::rc::Rc::new(Counted);
    let weak = std::rc::Rc::downgrade(&rc);
    drop(rc);
    drop(weak);
    assert_eq!(DROPS.load(Ordering::SeqCst), 2);
    // Retired through RCU, and freed after its grace period.
    let strong = Arc::new(Counted);
    let weak = Arc::downgrade(&strong);
    drop(strong);
    assert_eq!(
        booked(|rcu| rcu.defer_drop(Box::new(weak))),
        size_of::<std::sync::Weak<Counted>>()
    );
    assert_eq!(DROPS.load(Ordering::SeqCst), 3);
}
