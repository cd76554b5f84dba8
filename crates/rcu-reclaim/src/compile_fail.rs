//! Programs that must not compile: a reference handed out under a
//! read-side section kept past its end, a section's handle sent where
//! its thread cannot follow, a value a deferred drop could outlive.
//! Built only by `cargo test --doc` (`cfg(doctest)`); the items' own docs
//! hold the common cases, this module the ones a reviewer found missing.
//! Each block names the error it must fail with; a nightly rustdoc
//! (`cargo +nightly test -p rcu-reclaim --doc compile_fail`) checks it,
//! so that a block failing for another reason (a typo, an API rename)
//! fails the test (a stable one checks only that the block fails).
//!
//! # References out of a write's closure
//!
//! `remove_if`'s predicate sees a value the call may free:
//!
//! ```compile_fail,E0521
//! let map = rcu_reclaim::RcuHashMap::new();
//! map.insert(1u32, String::from("a"));
//! let mut seen: Option<&String> = None;
//! map.remove_if(&1, |v| {
//!     seen = Some(v);
//!     true
//! });
//! println!("{seen:?}");
//! ```
//!
//! nor does `retain`'s:
//!
//! ```compile_fail,E0521
//! let map = rcu_reclaim::RcuHashMap::new();
//! map.insert(1u32, String::from("a"));
//! let mut seen: Vec<&String> = vec![];
//! map.retain(|_, v| {
//!     seen.push(v);
//!     false
//! });
//! println!("{seen:?}");
//! ```
//!
//! `RcuCell::update`'s closure sees the value it replaces:
//!
//! ```compile_fail,E0521
//! let cell = rcu_reclaim::RcuCell::new(String::from("a"));
//! let mut seen: Option<&String> = None;
//! cell.update(|old| {
//!     seen = old;
//!     Some(Box::new(String::new()))
//! });
//! println!("{seen:?}");
//! ```
//!
//! and `store_weighed`'s weigher the value it retires:
//!
//! ```compile_fail,E0521
//! let cell = rcu_reclaim::RcuCell::new(String::from("a"));
//! let mut seen: Option<&String> = None;
//! cell.store_weighed(Box::new(String::new()), |old| {
//!     seen = Some(old);
//!     0
//! });
//! println!("{seen:?}");
//! ```
//!
//! A cache's weigher cannot keep what it weighs:
//!
//! ```compile_fail,E0521
//! use std::sync::Mutex;
//! static KEEP: Mutex<Option<&'static String>> = Mutex::new(None);
//! let cache = rcu_reclaim::RcuCache::builder()
//!     .weigher(|_: &u32, v: &String| {
//!         *KEEP.lock().unwrap() = Some(v);
//!         1
//!     })
//!     .build();
//! cache.insert(1u32, String::new());
//! ```
//!
//! # References past a section's end
//!
//! A borrow of a `Retired` ends when it is turned back into a `Box`:
//!
//! ```compile_fail,E0505
//! let cell = rcu_reclaim::RcuCell::new(String::from("a"));
//! let old = cell.take().unwrap();
//! let s: &String = &old;
//! drop(old.try_into_box());
//! println!("{s}");
//! ```
//!
//! A cell that lives for ever still lends for the guard's life alone:
//!
//! ```compile_fail,E0597
//! use rcu_reclaim::{Rcu, RcuCell};
//! let cell: &'static RcuCell<u32> = Box::leak(Box::new(RcuCell::new(1)));
//! let g = Rcu::global().read_lock();
//! let r: &'static u32 = cell.load(&g).unwrap();
//! drop(g);
//! println!("{r}");
//! ```
//!
//! nor can a `compare_exchange` error, which holds the current value,
//! leave for another thread:
//!
//! ```compile_fail,E0597
//! let cell: &'static rcu_reclaim::RcuCell<u32> =
//!     Box::leak(Box::new(rcu_reclaim::RcuCell::new(1)));
//! let g = cell.domain().read_lock();
//! let e = cell.compare_exchange(None, None, &g).unwrap_err();
//! std::thread::spawn(move || println!("{:?}", e.current));
//! ```
//!
//! nor does an item of a map's iterator outlive the guard the iterator
//! borrowed:
//!
//! ```compile_fail,E0505
//! let map = rcu_reclaim::RcuHashMap::new();
//! map.insert(1u32, String::from("a"));
//! let g = map.domain().read_lock();
//! let first = map.iter(&g).next().unwrap().1;
//! drop(g);
//! println!("{first}");
//! ```
//!
//! A reference kept in a struct of the caller's lives no longer than the
//! guard it was read under:
//!
//! ```compile_fail,E0597
//! use rcu_reclaim::{Rcu, RcuCell};
//! struct Holder<'a> {
//!     value: &'a u32,
//! }
//! let cell = RcuCell::new(1u32);
//! let holder;
//! {
//!     let g = Rcu::global().read_lock();
//!     holder = Holder { value: cell.load(&g).unwrap() }; // error: `g` does not live long enough
//! }
//! println!("{}", holder.value);
//! ```
//!
//! nor can it be published in a cell of `'static` references, whose
//! readers would find it after the section (and the value) ended:
//!
//! ```compile_fail,E0597
//! use rcu_reclaim::{Rcu, RcuCell};
//! let src = RcuCell::new(1u32);
//! let dst: RcuCell<&'static u32> = RcuCell::new(&0);
//! let g = Rcu::global().read_lock();
//! dst.store(Box::new(src.load(&g).unwrap())); // error: `src` does not live long enough
//! ```
//!
//! and the owner's `get_mut` waits until no reference read under a guard
//! is alive:
//!
//! ```compile_fail,E0502
//! let mut cell = rcu_reclaim::RcuCell::new(1u32);
//! let g = cell.domain().read_lock();
//! let r = cell.load(&g).unwrap();
//! *cell.get_mut().unwrap() = 2; // error: `cell` is also borrowed as immutable
//! println!("{r}");
//! ```
//!
//! # QSBR: nothing from a section outlives a quiescent state
//!
//! Not the current value of a failed `compare_exchange`:
//!
//! ```compile_fail,E0502
//! use rcu_reclaim::{Config, Flavor, Rcu, RcuCell};
//! let rcu = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
//! let cell = RcuCell::new_in(&rcu, Some(Box::new(1u32)));
//! let mut t = rcu.register_qsbr_thread();
//! let g = t.read_lock();
//! let e = cell.compare_exchange(None, Some(Box::new(2)), &g).unwrap_err();
//! t.quiescent_state();
//! println!("{:?}", e.current);
//! ```
//!
//! nor a map's `get_or_insert_with`:
//!
//! ```compile_fail,E0502
//! use rcu_reclaim::{Config, Flavor, Rcu, RcuHashMap};
//! let rcu = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
//! let map = RcuHashMap::new_in(&rcu);
//! let mut t = rcu.register_qsbr_thread();
//! let g = t.read_lock();
//! let v = map.get_or_insert_with(1u32, || 1u32, &g);
//! t.quiescent_state();
//! println!("{v}");
//! ```
//!
//! A moved `QsbrGuard` still borrows its registration:
//!
//! ```compile_fail,E0505
//! use rcu_reclaim::{Config, Flavor, Rcu, RcuCell};
//! let rcu = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
//! let cell = RcuCell::new_in(&rcu, Some(Box::new(1u32)));
//! let t = rcu.register_qsbr_thread();
//! let g = t.read_lock();
//! let g2 = g;
//! let r = cell.load(&g2).unwrap();
//! let t2 = t.thread_offline();
//! println!("{r}");
//! drop(t2);
//! ```
//!
//! A guard of a registration made for one statement lends for that
//! statement alone:
//!
//! ```compile_fail,E0716
//! use rcu_reclaim::{Config, Flavor, Rcu, RcuCell};
//! let rcu = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
//! let cell = RcuCell::new_in(&rcu, Some(Box::new(1u32)));
//! let r = cell.load(&rcu.register_qsbr_thread().read_lock()).unwrap();
//! println!("{r}");
//! ```
//!
//! and nothing read inside `offline_while` comes out of it:
//!
//! ```compile_fail,E0515
//! use rcu_reclaim::{Config, Flavor, Rcu, RcuCell};
//! let rcu = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
//! let cell = RcuCell::new_in(&rcu, Some(Box::new(1u32)));
//! let mut t = rcu.register_qsbr_thread();
//! let t2 = rcu.register_qsbr_thread();
//! let r = t.offline_while(|| cell.load(&t2.read_lock()));
//! println!("{r:?}");
//! ```
//!
//! nor a guard kept in a struct of the caller's:
//!
//! ```compile_fail,E0502
//! use rcu_reclaim::{Config, Flavor, QsbrGuard, Rcu, RcuCell};
//! struct Holder<'a> {
//!     g: QsbrGuard<'a>,
//! }
//! let rcu = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
//! let cell = RcuCell::new_in(&rcu, Some(Box::new(1u32)));
//! let mut t = rcu.register_qsbr_thread();
//! let h = Holder { g: t.read_lock() };
//! let r = cell.load(&h.g).unwrap();
//! t.quiescent_state();
//! println!("{r}");
//! ```
//!
//! nor a registration shared through an `Rc`, which `Rc::get_mut` would
//! report through:
//!
//! ```compile_fail,E0502
//! use rcu_reclaim::{Config, Flavor, Rcu, RcuCell};
//! let rcu = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
//! let cell = RcuCell::new_in(&rcu, Some(Box::new(1u32)));
//! let mut t = std::rc::Rc::new(rcu.register_qsbr_thread());
//! let g = t.read_lock();
//! let r = cell.load(&g).unwrap();
//! std::rc::Rc::get_mut(&mut t).unwrap().quiescent_state();
//! println!("{r}");
//! ```
//!
//! nor one leaked (`&'static mut`), whose guard lends for as long as the
//! cell lives:
//!
//! ```compile_fail,E0502
//! use rcu_reclaim::{Config, Flavor, QsbrThread, Rcu, RcuCell};
//! let rcu = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
//! let cell: &'static RcuCell<u32> = Box::leak(Box::new(RcuCell::new_in(&rcu, Some(Box::new(1)))));
//! let t: &'static mut QsbrThread = Box::leak(Box::new(rcu.register_qsbr_thread()));
//! let g = t.read_lock();
//! let r: &'static u32 = cell.load(Box::leak(Box::new(g))).unwrap();
//! t.quiescent_state();
//! println!("{r}");
//! ```
//!
//! nor a registration swapped for another while its guard lends (the
//! other one then dropped):
//!
//! ```compile_fail,E0502
//! use rcu_reclaim::{Config, Flavor, Rcu, RcuCell};
//! let rcu = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
//! let cell = RcuCell::new_in(&rcu, Some(Box::new(1u32)));
//! let mut a = rcu.register_qsbr_thread();
//! let mut b = rcu.register_qsbr_thread();
//! let g = a.read_lock();
//! let r = cell.load(&g).unwrap();
//! std::mem::swap(&mut a, &mut b);
//! drop(b);
//! println!("{r}");
//! ```
//!
//! nor an item of a map's walk:
//!
//! ```compile_fail,E0502
//! use rcu_reclaim::{Config, Flavor, Rcu, RcuHashMap};
//! let rcu = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
//! let map = RcuHashMap::new_in(&rcu);
//! map.insert(1u32, String::from("x"));
//! let mut t = rcu.register_qsbr_thread();
//! let g = t.read_lock();
//! let (_, v) = map.iter(&g).next().unwrap();
//! t.quiescent_state();
//! println!("{v}");
//! ```
//!
//! nor one handed to a scoped thread while the registering thread
//! reports:
//!
//! ```compile_fail,E0502
//! use rcu_reclaim::{Config, Flavor, Rcu, RcuCell};
//! let rcu = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
//! let cell = RcuCell::new_in(&rcu, Some(Box::new(1u32)));
//! let mut t = rcu.register_qsbr_thread();
//! let g = t.read_lock();
//! let r = cell.load(&g).unwrap();
//! std::thread::scope(|s| {
//!     s.spawn(|| println!("{r}"));
//!     t.quiescent_state();
//! });
//! ```
//!
//! A registration kept in a thread-local lends nothing out of `with`:
//!
//! ```compile_fail,E0515
//! use std::cell::RefCell;
//! use std::sync::OnceLock;
//! use rcu_reclaim::{Config, Flavor, QsbrThread, Rcu, RcuCell};
//! thread_local! {
//!     static T: RefCell<Option<QsbrThread>> = const { RefCell::new(None) };
//! }
//! static CELL: OnceLock<RcuCell<u32>> = OnceLock::new();
//! let rcu = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
//! let _ = CELL.set(RcuCell::new_in(&rcu, Some(Box::new(1))));
//! T.with(|t| *t.borrow_mut() = Some(rcu.register_qsbr_thread()));
//! let r: &'static u32 = T.with(|t| {
//!     let b = t.borrow();
//!     let g = b.as_ref().unwrap().read_lock();
//!     CELL.get().unwrap().load(&g).unwrap()
//! });
//! T.with(|t| t.borrow_mut().as_mut().unwrap().quiescent_state());
//! println!("{r}");
//! ```
//!
//! # Handles that stay on their thread
//!
//! A `ReadGuard` is the section of the thread that took it, even in an
//! `Arc`:
//!
//! ```compile_fail,E0277
//! let g = std::sync::Arc::new(rcu_reclaim::Rcu::global().read_lock());
//! std::thread::spawn(move || drop(g));
//! ```
//!
//! an offline QSBR registration is its thread's too:
//!
//! ```compile_fail,E0277
//! use rcu_reclaim::{Config, Flavor, Rcu};
//! let rcu = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
//! let t = rcu.register_qsbr_thread().thread_offline();
//! std::thread::scope(|s| {
//!     s.spawn(|| {
//!         let _ = t.domain();
//!     });
//! });
//! ```
//!
//! a QSBR guard, though `Copy`, cannot be handed to another thread (a
//! scoped one included) to load under:
//!
//! ```compile_fail,E0277
//! use rcu_reclaim::{Config, Flavor, Rcu, RcuCell};
//! let rcu = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
//! let cell = RcuCell::new_in(&rcu, Some(Box::new(1u32)));
//! let t = rcu.register_qsbr_thread();
//! let g = t.read_lock();
//! std::thread::scope(|s| {
//!     s.spawn(move || println!("{:?}", cell.load(&g)));
//! });
//! ```
//!
//! not even one of a leaked registration, whose `'static` borrow
//! satisfies `thread::spawn` (only `!Sync` keeps it home):
//!
//! ```compile_fail,E0277
//! use rcu_reclaim::{Config, Flavor, QsbrThread, Rcu};
//! let rcu = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
//! let t: &'static QsbrThread = Box::leak(Box::new(rcu.register_qsbr_thread()));
//! let g = t.read_lock();
//! std::thread::spawn(move || drop(g)); // error: `QsbrThreadStaysOnItsThread` cannot be shared
//! ```
//!
//! and a map's iterator, which holds a guard's borrow, is not shared
//! with another thread:
//!
//! ```compile_fail,E0277
//! let map = rcu_reclaim::RcuHashMap::new();
//! map.insert(1u32, 1u32);
//! let g = map.domain().read_lock();
//! let it = map.iter(&g);
//! std::thread::scope(|s| {
//!     s.spawn(|| {
//!         let _ = &it;
//!     });
//! });
//! ```
//!
//! # Values that a deferred drop could outlive
//!
//! A map with a weigher of its own still drops its values on another
//! thread, so they are `Send`:
//!
//! ```compile_fail,E0599
//! use std::collections::hash_map::RandomState;
//! use std::rc::Rc;
//! let m: rcu_reclaim::RcuHashMap<u32, Rc<u32>> =
//!     rcu_reclaim::RcuHashMap::with_weigher_in(16, RandomState::new(), rcu_reclaim::Rcu::global(), |_, _| 0);
//! m.insert(1, Rc::new(1));
//! ```
//!
//! and so are its keys, which it drops there too:
//!
//! ```compile_fail,E0599
//! use std::rc::Rc;
//! let m: rcu_reclaim::RcuHashMap<Rc<u32>, u32> = rcu_reclaim::RcuHashMap::new();
//! m.insert(Rc::new(1), 1); // error: `Rc<u32>: Send` is not satisfied
//! ```
//!
//! and a cache of `&'static str` is not one of shorter-lived strings,
//! which it could drop after they are gone:
//!
//! ```compile_fail
//! use rcu_reclaim::RcuCache;
//! fn shorten<'a>(c: &'a RcuCache<u32, &'static str>) -> &'a RcuCache<u32, &'a str> {
//!     c // error: lifetime may not live long enough
//! }
//! ```
//!
//! # Code the library runs on its own threads
//!
//! A shrinker runs on whichever thread reclaims, so it is `Send` and
//! `Sync`:
//!
//! ```compile_fail,E0277
//! use std::rc::Rc;
//! use std::sync::Arc;
//! use rcu_reclaim::reclaim::{Reclaimer, Scanned, ShrinkControl, Shrinker};
//! struct Counts(Rc<u32>);
//! impl Shrinker for Counts { // error: `Rc<u32>` cannot be shared between threads safely
//!     fn count(&self, _: &ShrinkControl) -> usize { 0 }
//!     fn scan(&self, _: &mut ShrinkControl) -> Scanned { Scanned::default() }
//! }
//! let reclaimer = Reclaimer::new(rcu_reclaim::Rcu::global());
//! reclaimer.register(Arc::new(Counts(Rc::new(1))));
//! ```
//!
//! and so are the closures the library keeps and calls from any thread:
//! the OOM handler,
//!
//! ```compile_fail,E0277
//! let reclaimer = rcu_reclaim::reclaim::Reclaimer::new(rcu_reclaim::Rcu::global());
//! let seen = std::rc::Rc::new(std::cell::Cell::new(0));
//! reclaimer.set_oom_handler(move |_| seen.set(seen.get() + 1)); // error: `Rc<Cell<i32>>` cannot be sent
//! ```
//!
//! the callback-panic hook,
//!
//! ```compile_fail,E0277
//! let log = std::rc::Rc::new(std::cell::RefCell::new(Vec::<String>::new()));
//! let _ = rcu_reclaim::Config::new()
//!     .on_callback_panic(move |msg| log.borrow_mut().push(msg.into())); // error: `Rc<..>` cannot be sent
//! ```
//!
//! and a cache's weigher (the shrinker weighs on the reclaiming thread):
//!
//! ```compile_fail,E0277
//! let unit = std::rc::Rc::new(1usize);
//! let cache = rcu_reclaim::RcuCache::builder()
//!     .weigher(move |_: &u32, _: &u32| *unit) // error: `Rc<usize>` cannot be sent
//!     .build();
//! cache.insert(1, 1);
//! ```
//!
//! # `reclaim_size!` spelled as an `impl` block
//!
//! A generic struct's parameters go in brackets; `impl<T>`, the spelling
//! of an `impl` block that a new user writes first, failed with "expected
//! identifier, found `<`", naming neither the macro's form nor the fix. It
//! is refused with an error that shows the bracket form (no error code: a
//! `compile_error!`):
//!
//! ```compile_fail
//! struct Node<T> { value: T }
//! rcu_reclaim::reclaim_size!(impl<T: rcu_reclaim::ReclaimSize> Node<T> { value });
//! ```
//!
//! (the same with `; drops_anywhere`):
//!
//! ```compile_fail
//! struct Node<T> { value: T }
//! rcu_reclaim::reclaim_size!(impl<T: rcu_reclaim::ReclaimSize> Node<T> { value }; drops_anywhere);
//! ```
//!
//! # `#[derive(ReclaimSize)]`
//!
//! A field whose type has no `ReclaimSize` (one error, at the field's
//! type, whose note names `#[reclaim_size(skip)]`):
//!
//! ```compile_fail,E0277
//! struct Handle(u32);
//! #[derive(rcu_reclaim::ReclaimSize)]
//! struct Conn {
//!     name: String,
//!     handle: Handle, // error: `Handle` does not implement `ReclaimSize`
//! }
//! ```
//!
//! in an enum's variant too:
//!
//! ```compile_fail,E0277
//! struct Handle(u32);
//! #[derive(rcu_reclaim::ReclaimSize)]
//! enum Conn {
//!     Open(String, Handle), // error: `Handle` does not implement `ReclaimSize`
//!     Closed,
//! }
//! ```
//!
//! A `ManuallyDrop` (or `MaybeUninit`) field, which the value's drop does
//! not drop (an error at the field that names `#[reclaim_size(skip)]`;
//! crossbeam-epoch's Treiber node, as a port first derives it):
//!
//! ```compile_fail
//! use std::mem::ManuallyDrop;
//! use std::sync::atomic::AtomicPtr;
//! #[derive(rcu_reclaim::ReclaimSize)]
//! struct Node<T> {
//!     data: ManuallyDrop<T>, // error: a `ManuallyDrop` field is not dropped with the value
//!     next: AtomicPtr<Node<T>>,
//! }
//! ```
//!
//! A union, whose live field is not known:
//!
//! ```compile_fail
//! #[derive(rcu_reclaim::ReclaimSize)]
//! union Bits { // error: `#[derive(ReclaimSize)]` does not support unions
//!     int: u32,
//!     float: f32,
//! }
//! ```
//!
//! An attribute it does not know:
//!
//! ```compile_fail
//! #[derive(rcu_reclaim::ReclaimSize)]
//! #[reclaim_size(drop_anywhere)] // error: unknown `reclaim_size` attribute
//! struct Route {
//!     prefix: String,
//! }
//! ```
//!
//! `drops_anywhere` on a field (it is said of the whole type):
//!
//! ```compile_fail
//! #[derive(rcu_reclaim::ReclaimSize)]
//! struct Route {
//!     #[reclaim_size(drops_anywhere)] // error: `drops_anywhere` goes on the type
//!     prefix: String,
//! }
//! ```
//!
//! and `skip` on the type (it is said of a field):
//!
//! ```compile_fail
//! #[derive(rcu_reclaim::ReclaimSize)]
//! #[reclaim_size(skip)] // error: `skip` goes on a field, not on the type
//! struct Route {
//!     prefix: String,
//! }
//! ```
//!
//! nor on an enum's variant, where it was ignored (the variant's fields
//! were counted all the same); `skip` goes on each of its fields:
//!
//! ```compile_fail
//! struct Handle(u32);
//! #[derive(rcu_reclaim::ReclaimSize)]
//! enum Conn {
//!     #[reclaim_size(skip)] // error: `reclaim_size` does not go on a variant
//!     Open(String, Handle),
//!     Closed,
//! }
//! ```
//!
//! A flag given a value (the error names the flag, not a missing comma):
//!
//! ```compile_fail
//! #[derive(rcu_reclaim::ReclaimSize)]
//! struct Route {
//!     #[reclaim_size(skip = true)] // error: `skip` takes no value
//!     prefix: String,
//! }
//! ```
//!
//! A field of a `#[repr(packed)]` struct that is not `Copy` (the derive
//! copies each field out, a packed field being possibly unaligned; an
//! error at the field's type that names `#[reclaim_size(skip)]`, where
//! rustc's E0793 at the derive named neither the cause nor the fix):
//!
//! ```compile_fail,E0277
//! #[derive(rcu_reclaim::ReclaimSize)]
//! #[repr(C, packed)]
//! struct Header {
//!     kind: u8,
//!     name: String, // error: `#[derive(ReclaimSize)]` cannot read a field of type `String`
//! }
//! ```
//!
//! A cache weighed by `ReclaimSize` refuses a `Weak` (`SHARED`: the last
//! one keeps the allocation alive), as it refuses an `Arc`:
//!
//! ```compile_fail
//! use std::sync::Arc;
//! let owner = Arc::new(vec![0u8; 1 << 16]);
//! let cache = rcu_reclaim::RcuCache::builder().max_bytes(1 << 20).build();
//! cache.insert(1u32, Arc::downgrade(&owner)); // error: weighed by its pointer
//! ```
//!
//! A cache weighed by `ReclaimSize` refuses a derived value with an `Arc`
//! field (`SHARED`), as it refuses the `Arc` itself (E0080, as the cache's
//! code is generated):
//!
//! ```compile_fail
//! use std::sync::Arc;
//! #[derive(rcu_reclaim::ReclaimSize)]
//! struct Snapshot {
//!     version: u64,
//!     data: Arc<Vec<u8>>,
//! }
//! let cache = rcu_reclaim::RcuCache::builder().max_bytes(1 << 20).build();
//! cache.insert(1u32, Snapshot { version: 1, data: Arc::new(vec![0; 1 << 16]) });
//! ```
