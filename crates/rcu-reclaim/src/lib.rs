//! # rcu-reclaim
//!
//! Read-copy-update for Rust whose deferred reclamation answers memory
//! pressure.
//!
//! Readers enter a read-side section with [`Rcu::read_lock`] — on the default
//! *memb* flavor a load, a store, a compiler fence and a look at one flag
//! (a fence as well while grace periods come thousands of times a second:
//! [`Config::adaptive_reader_fences`]) — and load
//! [`RcuCell`]s inside it. Writers publish new versions with
//! [`RcuCell::store`], which frees the old one once a grace period has
//! elapsed: every section that could have seen it has ended.
//!
//! ```
//! use rcu_reclaim::{Rcu, RcuCell};
//!
//! let config = RcuCell::new(vec!["10.0.0.1"]);
//! let rcu = Rcu::global();
//!
//! // Reader: as cheap as a plain load.
//! let guard = rcu.read_lock();
//! let servers = config.load(&guard).unwrap();
//! assert_eq!(servers[0], "10.0.0.1");
//! drop(guard);
//!
//! // Writer: publish; the old version is freed after a grace period.
//! config.store(Box::new(vec!["10.0.0.2"]));
//! ```
//!
//! A struct or an enum of your own derives [`ReclaimSize`](derive@ReclaimSize),
//! so that the bytes a retire frees are counted (see
//! [which call to pick](#retiring-a-value-which-call-to-pick)): the derive
//! counts the heap of every field, a field added later included.
//!
//! ```
//! use std::collections::HashMap;
//! use rcu_reclaim::{RcuCell, ReclaimSize};
//!
//! #[derive(ReclaimSize)]
//! struct AppConfig {
//!     upstreams: Vec<String>,
//!     limits: HashMap<String, u64>,
//!     port: u16,
//! }
//!
//! let config = RcuCell::new(AppConfig { upstreams: vec![], limits: HashMap::new(), port: 80 });
//! config.store(Box::new(AppConfig { upstreams: vec!["a".into()], limits: HashMap::new(), port: 81 }));
//! ```
//!
//! To wait for the grace period yourself, [`RcuCell::replace`] hands the
//! old value back as a [`Retired`], and [`Retired::into_box`] waits for
//! the grace period when needed (outside any read-side section).
//!
//! ## Retiring a value: which call to pick
//! Every way to retire memory ends the same way (freed after a grace
//! period); they differ in what the caller holds, whether it may block,
//! and how the freed bytes are counted for reclaim. The default calls book
//! the value's [`ReclaimSize::reclaim_size`] (the value and the heap it
//! owns: 64 KiB + 24 B for a 64 KiB `Vec<u8>`), so reclaim and pressure see
//! what a grace period will free; a type without [`ReclaimSize`] does not
//! compile with them. An unknown or custom size is an opt-in: the `_sized`
//! and `_weighed` calls book what they are told. A struct or an enum gets
//! `ReclaimSize` from [`#[derive(ReclaimSize)]`](derive@ReclaimSize) (or
//! [`reclaim_size!`], or a manual impl).
//!
//! | you have | call | books |
//! |---|---|---|
//! | an [`RcuCell`] to update | [`RcuCell::store`]: publish and retire the old value in one call; never blocks, except while garbage piles up behind a grace period (a bounded wait: see [`Config::held_up_bytes`], under memory pressure [`Config::pressure_throttle_bytes`], under a memory limit [`Rcu::bound_garbage`], and with a cap of your own [`Config::max_pending_bytes`]; [`locking`] lists every wait) | the old value's `reclaim_size()` |
//! | the same, a type without `ReclaimSize` or a custom size | [`RcuCell::store_weighed`] | `weigh(&old)` |
//! | the same, and may block | [`RcuCell::store_sync`]: waits for the grace period and frees before returning, no backlog | nothing (nothing is queued) |
//! | the same, from several writers without a lock, the new value made from the old | [`RcuCell::update`]: read-copy-update in one call (a [`RcuCell::compare_exchange`] loop that runs the closure again when another writer published first) | the old value's `reclaim_size()` |
//! | the old value in hand ([`RcuCell::replace`], [`RcuCell::take`]; it derefs to the value) | [`Retired::defer_drop`]; [`Retired::into_box`] (waits only if needed) | `reclaim_size()`; nothing |
//! | the same, a custom size | [`Retired::defer_drop_sized`] | the bytes given |
//! | a value unlinked from a structure of your own (a pointer from `Box::into_raw`, in an `AtomicPtr`) | [`Rcu::defer_drop_raw`] (`unsafe`: it is unlinked and handed over); not a `Box` rebuilt from it, which claims a uniqueness the readers still holding it deny ([a whole example](#a-structure-of-your-own)) | `reclaim_size()` |
//! | a `Box` in hand, to drop after a grace period | [`Rcu::defer_drop`]: no allocation per object (two words in a 4 KiB bulk page) | `reclaim_size()` |
//! | the same, a type without `ReclaimSize` or a custom size | [`Rcu::defer_drop_sized`] (`size_of::<T>()` for the inline bytes only) | the bytes given |
//! | a path that must never block | [`Rcu::try_defer_drop`], [`Rcu::try_defer_drop_sized`]: hand the value back when no page can be had | `reclaim_size()`; the bytes given |
//! | work other than a drop | [`Rcu::call`]: any `FnOnce` after a grace period, buffered in the thread's bulk page as `defer_drop` is (no allocation when it captures at most a pointer, one otherwise); [`Rcu::call_sized`]: the same, queued on the CPU's shard at once | 0; the bytes given |
//! | a callback someone waits for | [`Rcu::call_hurry`]: asks for a grace period now instead of the lazy batch | 0 |
//! | to wait for everything queued | [`Rcu::barrier`]: before unloading, shutting down (what is queued at process exit is not run), or checking a backlog | |
//!
//! ```
//! use rcu_reclaim::{Config, Rcu, RcuCell};
//! let rcu = Rcu::new(Config::new().on_demand()).unwrap();
//! let cell = RcuCell::new_in(&rcu, Some(Box::new(vec![0u8; 64 << 10])));
//! cell.store(Box::new(Vec::new()));
//! assert_eq!(rcu.pending_bytes(), (64 << 10) + 24);
//! rcu.barrier();
//! ```
//!
//! `defer_drop` *is* the bulk variant: objects are batched per thread in
//! pages ([`pages`]), so there is no separate bulk call.
//!
//! **Where the memory is freed.** The default calls also tell the engine
//! whether the value *drops anywhere* ([`drops_anywhere`]: no drop glue,
//! or [`ReclaimSize::DROPS_ANYWHERE`], which `String`, `Vec`, `Box`,
//! `Option`, tuples and the std maps declare when their elements do, and
//! `#[reclaim_size(drops_anywhere)]` beside the derive declares for a type
//! whose own `Drop`, if any, takes no lock, and whose fields all drop
//! anywhere). Ready values of such types are freed
//! by the thread that keeps retiring them, where they were allocated and
//! while its cache still holds them; anything else goes to a worker thread,
//! since its destructor might take a lock the retiring caller holds. The
//! `_sized` and `_weighed` calls assume the worst unless the type has no
//! drop glue. A thread can also free all of its garbage at its safe points
//! with [`Rcu::collect`].
//!
//! ```
//! use rcu_reclaim::{drops_anywhere, RcuCell, ReclaimSize};
//! #[derive(ReclaimSize)]
//! #[reclaim_size(drops_anywhere)]
//! struct Route { prefix: String, hops: Vec<u32> }
//! assert!(drops_anywhere::<Route>());
//! let table = RcuCell::new(Route { prefix: "10.0.0.0/8".into(), hops: vec![1, 2] });
//! table.store(Box::new(Route { prefix: "10.0.0.0/8".into(), hops: vec![3] }));
//! ```
//!
//! ## A structure of your own
//!
//! A linked structure whose readers run lock-free and whose writers
//! serialise on a lock: readers follow `AtomicPtr` links inside a
//! section; a writer unlinks a node and retires it with
//! [`Rcu::defer_drop_raw`] (not a `Box` rebuilt from it, which would claim
//! a uniqueness that readers still holding it deny); the structure's own
//! `Drop`, which no reader can overlap (it has `&mut self`), frees what is
//! left at once. The links need no attribute: an `AtomicPtr` counts as
//! its pointer alone (what it points to is retired on its own).
//!
//! ```
//! use std::sync::atomic::{AtomicPtr, Ordering};
//! use std::sync::Mutex;
//! use rcu_reclaim::{Rcu, ReadSection, ReclaimSize};
//!
//! #[derive(ReclaimSize)]
//! #[reclaim_size(drops_anywhere)]
//! struct Node {
//!     key: u64,
//!     value: String,
//!     next: AtomicPtr<Node>,
//! }
//!
//! struct List { head: AtomicPtr<Node>, writer: Mutex<()> }
//!
//! impl List {
//!     fn get<'g>(&'g self, key: u64, section: &'g impl ReadSection) -> Option<&'g str> {
//!         // A section of another domain would not hold back this one's frees.
//!         assert_eq!(section.domain().id(), Rcu::global().id(), "a guard of Rcu::global()");
//!         let mut p = self.head.load(Ordering::Acquire);
//!         // SAFETY: nodes reachable inside the section are freed only after
//!         // a grace period, which the section holds back.
//!         while let Some(n) = unsafe { p.as_ref() } {
//!             if n.key == key {
//!                 return Some(&n.value);
//!             }
//!             p = n.next.load(Ordering::Acquire);
//!         }
//!         None
//!     }
//!     fn push(&self, key: u64, value: String) {
//!         let _w = self.writer.lock().unwrap();
//!         let next = AtomicPtr::new(self.head.load(Ordering::Relaxed));
//!         let node = Box::into_raw(Box::new(Node { key, value, next }));
//!         self.head.store(node, Ordering::Release); // publish
//!     }
//!     fn remove(&self, key: u64) -> bool {
//!         let _w = self.writer.lock().unwrap();
//!         let mut link = &self.head;
//!         // SAFETY: only writers unlink, and this one holds the lock.
//!         while let Some(n) = unsafe { link.load(Ordering::Relaxed).as_ref() } {
//!             if n.key == key {
//!                 let p = link.load(Ordering::Relaxed);
//!                 link.store(n.next.load(Ordering::Relaxed), Ordering::Release); // unlink
//!                 // SAFETY: from `Box::into_raw`, unlinked, not used again here.
//!                 unsafe { Rcu::global().defer_drop_raw(p) };
//!                 return true;
//!             }
//!             link = &n.next;
//!         }
//!         false
//!     }
//! }
//!
//! impl Drop for List {
//!     fn drop(&mut self) {
//!         let mut p = *self.head.get_mut();
//!         while !p.is_null() {
//!             // SAFETY: `&mut self`: no reader or writer is left.
//!             let mut node = unsafe { Box::from_raw(p) };
//!             p = *node.next.get_mut();
//!         }
//!     }
//! }
//!
//! let list = List { head: AtomicPtr::default(), writer: Mutex::new(()) };
//! std::thread::scope(|s| {
//!     s.spawn(|| {
//!         for k in 0..1000 {
//!             list.push(k, format!("v{k}"));
//!             if k % 2 == 1 {
//!                 assert!(list.remove(k - 1));
//!             }
//!         }
//!     });
//!     s.spawn(|| {
//!         for k in 0..1000 {
//!             let guard = Rcu::global().read_lock();
//!             if let Some(v) = list.get(k, &guard) {
//!                 assert_eq!(v, format!("v{k}"));
//!             }
//!         }
//!     });
//! });
//! let guard = Rcu::global().read_lock();
//! assert_eq!(list.get(999, &guard), Some("v999"));
//! assert_eq!(list.get(0, &guard), None);
//! ```
//!
//! ## Coming from arc-swap, crossbeam-epoch or liburcu
//!
//! | there | here |
//! |---|---|
//! | `ArcSwap::from_pointee(v)`; `ArcSwapOption` | [`RcuCell::new`]`(v)`; an [`RcuCell`] can be empty too ([`RcuCell::default`], [`RcuCell::take`]), so [`RcuCell::load`] returns an `Option` |
//! | `ArcSwap::load` | [`RcuCell::load`] inside [`Rcu::read_lock`]: a `&T` tied to the guard, no reference count touched; [`RcuCell::read`]`(\|v\| ..)` for one read in one call |
//! | `ArcSwap::store(Arc::new(v))` | [`RcuCell::store`]`(Box::new(v))`: the old value is freed after a grace period |
//! | `ArcSwap::swap(new)` (the old `Arc` back) | [`RcuCell::replace`]: the old value back as a [`Retired`], which derefs to it and frees it a grace period later when dropped (waiting if need be) or given to [`Retired::defer_drop`] |
//! | `ArcSwap::rcu(\|old\| new)` | [`RcuCell::update`]`(\|old: Option<&T>\| Some(Box::new(new)))`: the closure may run more than once; it returns how many times it ran, not the old value |
//! | `ArcSwap::compare_and_swap` | [`RcuCell::compare_exchange`] (under a guard) |
//! | a `static` `ArcSwap` (`ArcSwapOption::const_empty()`, or in a `Lazy`) | no `const` constructor (a cell holds a handle to its domain): a `static CONFIG: LazyLock<RcuCell<T>>` (or a `OnceLock` and `get_or_init`) |
//! | `ArcSwap::map`, `Access` (a component sees one field of the snapshot) | none: hand the component the `&RcuCell<T>` and a projection `fn(&T) -> &U`, applied to what [`RcuCell::load`] returns |
//! | `ArcSwap::load_full` (a snapshot kept across `.await` or a long call) | an `RcuCell<Arc<T>>` and [`RcuCell::load_cloned`] (or `Arc::clone` of what `load` returns): a guard is `!Send`, and while it lives it holds back every grace period |
//! | `crossbeam_epoch::pin()` | [`Rcu::read_lock`] (a [`ReadGuard`]) |
//! | `Atomic<T>` and `Shared<'g, T>` | [`RcuCell<T>`], or an `AtomicPtr<T>` of your own read under a guard |
//! | `Atomic::swap` then `Guard::defer_destroy(old)` (copy, update, publish, retire) | [`RcuCell::store`], which does both; [`RcuCell::update`] for several writers without a lock |
//! | `Owned::new(v)`; `Atomic::load`, `swap`, `compare_exchange` | `Box::into_raw(Box::new(v))`; the `AtomicPtr`'s own calls, with the same orderings (no guard argument: the section is what protects) |
//! | `Shared::tag`, `with_tag`, `Atomic::fetch_or` on tag bits (a Harris-Michael list's mark) | none: keep the mark in the `AtomicPtr`'s low bits yourself (`p.map_addr(\|a\| a \| 1)`), masked off before the pointer is dereferenced or retired |
//! | `Shared::as_ref`, `deref` | `unsafe { ptr.as_ref() }`, valid while the section that loaded the pointer lasts |
//! | `Guard::defer_destroy(shared)` | `unsafe {` [`Rcu::defer_drop_raw`]`(ptr) }` for a value readers may still hold ([`Rcu::defer_drop_raw_sized`] for a type without [`ReclaimSize`], naming its bytes); [`Rcu::defer_drop`] for a `Box` you own |
//! | `Guard::defer(closure)` | [`Rcu::call`]: the closure runs on a worker thread or a thread calling [`Rcu::collect`] or [`Rcu::barrier`] (by default never inside a retiring call), so it may take locks the retiring thread holds; [`Rcu::call_sized`] for a closure that owns memory, so that pressure and reclaim count it |
//! | `Guard::flush` | [`Rcu::collect`], called where the thread holds no lock: frees, on this thread, the garbage of its CPU whose grace period has ended |
//! | repinning and `Guard::flush` until the garbage is gone | [`Rcu::barrier`]: returns once everything queued before it has run |
//! | `Collector::new()` | [`Rcu::new`] (a domain with its own grace periods, workers and backlog); [`Rcu::global`] is the default one |
//! | liburcu: `rcu_read_lock()` / `rcu_read_unlock()` | [`Rcu::read_lock`] / dropping its [`ReadGuard`]; [`Rcu::read_lock_raw`] / [`Rcu::read_unlock_raw`] where a section cannot be a scope |
//! | `rcu_register_thread()` / `rcu_unregister_thread()` | nothing: a thread registers at its first section and leaves at exit ([`Rcu::register_thread`], [`Rcu::unregister_thread`] to do it earlier) |
//! | `rcu_dereference(p)` | [`RcuCell::load`], or `AtomicPtr::load(Acquire)` inside a section |
//! | `rcu_assign_pointer(p, v)`; `rcu_xchg_pointer`; `rcu_cmpxchg_pointer` | [`RcuCell::store`] (which also retires the old value); [`RcuCell::replace`]; [`RcuCell::compare_exchange`] (or the `AtomicPtr`'s `store(Release)`, `swap`, `compare_exchange`) |
//! | `synchronize_rcu()` | [`Rcu::synchronize`] (panics, naming the call, inside a section of the same domain); [`Rcu::synchronize_expedited`] |
//! | `call_rcu(&head, func)` (with `caa_container_of` and `free`) | [`Rcu::defer_drop`] or [`Rcu::defer_drop_raw`] for a free; [`Rcu::call`] for other work: a closure, no `rcu_head` embedded in the value |
//! | `defer_rcu(fct, p)` | [`Rcu::call`] (never waits for a grace period itself, unlike `defer_rcu` when its queue is full) |
//! | `rcu_barrier()` | [`Rcu::barrier`] |
//! | `start_poll_synchronize_rcu()` / `poll_state_synchronize_rcu()` | [`Rcu::start_poll`] / [`Rcu::poll`] (a [`Cookie`]) |
//! | `create_all_cpu_call_rcu_data()` | [`Config::worker_per_cpu`] |
//! | urcu-qsbr: `rcu_register_thread()`, `rcu_quiescent_state()`, `rcu_thread_offline()` / `rcu_thread_online()` | [`Rcu::register_qsbr_thread`] on a [`Flavor::Qsbr`] domain, [`QsbrThread::quiescent_state`], [`QsbrThread::thread_offline`] / [`QsbrOfflineThread::thread_online`] (or [`QsbrThread::offline_while`]); see [`qsbr`] |
//!
//! C and C++ programs need no port: this workspace's `rcu-reclaim-urcu`
//! and `rcu-reclaim-urcu-qsbr` crates build drop-ins for liburcu's memb
//! and QSBR flavors (`liburcu-memb.so.8`, `liburcu-qsbr.so.8`) on the
//! global domain.
//!
//! liburcu's pattern (read under `rcu_read_lock`, publish with
//! `rcu_xchg_pointer`, free with `call_rcu`, drain with `rcu_barrier`) is
//! then:
//!
//! ```
//! use rcu_reclaim::{Rcu, RcuCell};
//!
//! let rcu = Rcu::global();
//! let routes = RcuCell::new(vec!["10.0.0.1"]);
//! {
//!     let guard = rcu.read_lock(); // rcu_read_lock()
//!     let r = routes.load(&guard).unwrap(); // rcu_dereference()
//!     assert_eq!(r[0], "10.0.0.1");
//! } // rcu_read_unlock()
//! let old = routes.replace(Box::new(vec!["10.0.0.2"])).unwrap(); // rcu_xchg_pointer()
//! assert_eq!(old[0], "10.0.0.1"); // still readable: readers may hold it
//! old.defer_drop(); // call_rcu(&old->head, free_routes)
//! rcu.synchronize(); // synchronize_rcu(): no section that saw the old value is left
//! rcu.barrier(); // rcu_barrier(): the old value is freed
//! ```
//!
//! ```
//! use std::sync::Arc;
//! use rcu_reclaim::{Rcu, RcuCell};
//!
//! let config = RcuCell::new(Arc::new(String::from("v1")));
//! // As `ArcSwap::load_full`: an owned snapshot to keep past the section.
//! let snapshot: Arc<String> = {
//!     let guard = Rcu::global().read_lock();
//!     Arc::clone(config.load(&guard).unwrap())
//! };
//! // The same in one call:
//! assert!(Arc::ptr_eq(&snapshot, &config.load_cloned().unwrap()));
//! config.store(Box::new(Arc::new(String::from("v2"))));
//! assert_eq!(*snapshot, "v1");
//! ```
//!
//! A configuration in a `static`, as arc-swap's is often kept:
//!
//! ```
//! use std::sync::LazyLock;
//! use rcu_reclaim::{Rcu, RcuCell};
//!
//! // arc-swap: static CONFIG: Lazy<ArcSwap<Vec<String>>> = Lazy::new(..);
//! static CONFIG: LazyLock<RcuCell<Vec<String>>> =
//!     LazyLock::new(|| RcuCell::new(vec!["10.0.0.1".into()]));
//!
//! CONFIG.update(|old| {
//!     let mut next = old.cloned().unwrap_or_default();
//!     next.push("10.0.0.2".into());
//!     Some(Box::new(next))
//! }); // CONFIG.rcu(|old| ..)
//! let guard = Rcu::global().read_lock(); // CONFIG.load()
//! assert_eq!(CONFIG.load(&guard).map(Vec::len), Some(2));
//! ```
//!
//! crossbeam-epoch's Treiber stack, ported: the node's element is moved
//! out before the node is retired, so the node owns no heap (a generic
//! struct's parameters go in brackets in [`reclaim_size!`]), and `pop`
//! runs inside a section, which keeps the head it read (and its `next`)
//! from being freed and reused under its `compare_exchange`:
//!
//! ```
//! use std::mem::ManuallyDrop;
//! use std::ptr;
//! use std::sync::atomic::{AtomicPtr, Ordering::{Acquire, Relaxed, Release}};
//! use rcu_reclaim::{reclaim_size, Rcu};
//!
//! struct Node<T> { data: ManuallyDrop<T>, next: AtomicPtr<Node<T>> }
//! reclaim_size!(impl[T] Node<T> {}); // `data` is moved out first
//!
//! pub struct Stack<T> { head: AtomicPtr<Node<T>> }
//!
//! impl<T: Send + 'static> Stack<T> {
//!     pub fn push(&self, t: T) {
//!         // crossbeam: Owned::new(Node { .. })
//!         let n = Box::into_raw(Box::new(Node { data: ManuallyDrop::new(t), next: AtomicPtr::default() }));
//!         loop {
//!             let head = self.head.load(Relaxed);
//!             // SAFETY: `n` is not published yet: this thread owns it.
//!             unsafe { (*n).next.store(head, Relaxed) };
//!             if self.head.compare_exchange(head, n, Release, Relaxed).is_ok() {
//!                 return;
//!             }
//!         }
//!     }
//!     pub fn pop(&self) -> Option<T> {
//!         let _guard = Rcu::global().read_lock(); // crossbeam: epoch::pin()
//!         loop {
//!             let head = self.head.load(Acquire);
//!             // SAFETY: a node reachable inside the section is not freed before it ends.
//!             let h = unsafe { head.as_ref() }?;
//!             let next = h.next.load(Relaxed);
//!             if self.head.compare_exchange(head, next, Relaxed, Relaxed).is_ok() {
//!                 // SAFETY: this thread unlinked `head`: it alone moves the element
//!                 // out and retires the node (crossbeam: guard.defer_destroy(head)).
//!                 unsafe {
//!                     let data = ManuallyDrop::into_inner(ptr::read(&h.data));
//!                     Rcu::global().defer_drop_raw(head);
//!                     return Some(data);
//!                 }
//!             }
//!         }
//!     }
//! }
//!
//! impl<T> Drop for Stack<T> {
//!     fn drop(&mut self) {
//!         let mut p = *self.head.get_mut();
//!         while !p.is_null() {
//!             // SAFETY: `&mut self`: no reader or writer is left, and a node
//!             // still linked holds its element (`pop` unlinks before it moves out).
//!             let mut n = unsafe { Box::from_raw(p) };
//!             unsafe { ManuallyDrop::drop(&mut n.data) };
//!             p = *n.next.get_mut();
//!         }
//!     }
//! }
//!
//! let stack = Stack { head: AtomicPtr::default() };
//! std::thread::scope(|s| {
//!     for t in 0..2 {
//!         let stack = &stack;
//!         s.spawn(move || {
//!             for i in 0..1000 {
//!                 stack.push(format!("{t}-{i}"));
//!                 if i % 2 == 0 {
//!                     assert!(stack.pop().is_some());
//!                 }
//!             }
//!         });
//!     }
//! });
//! let mut left = 0;
//! while stack.pop().is_some() {
//!     left += 1;
//! }
//! assert_eq!(left, 1000);
//! ```
//!
//! A retired `Arc` books only its pointer ([`ReclaimSize`] for `Arc`: its
//! drop frees the pointee only if it was the last owner), so
//! [`RcuCell::store`] of an `RcuCell<Arc<T>>` hides a large pointee from
//! pressure and reclaim. Where the cell holds the only long-lived owner,
//! book the pointee with [`RcuCell::store_weighed`]:
//!
//! ```
//! use std::sync::Arc;
//! use rcu_reclaim::{Config, Rcu, RcuCell, ReclaimSize};
//!
//! let rcu = Rcu::new(Config::new().on_demand()).unwrap();
//! let table = RcuCell::new_in(&rcu, Box::new(Arc::new(vec![0u8; 1 << 20])));
//! table.store(Box::new(Arc::new(vec![1u8; 1 << 20])));
//! assert_eq!(rcu.pending_bytes(), 8); // the pointer only: 1 MiB unseen
//! // The pointee too, while no snapshot shares it:
//! let weigh = |old: &Arc<Vec<u8>>| {
//!     let pointee = if Arc::strong_count(old) == 1 { old.as_ref().reclaim_size() } else { 0 };
//!     old.reclaim_size() + pointee
//! };
//! table.store_weighed(Box::new(Arc::new(vec![2u8; 1 << 20])), weigh);
//! assert_eq!(rcu.pending_bytes(), 8 + 8 + (24 + (1 << 20)));
//! rcu.barrier();
//! ```
//!
//! ## Bounding memory
//! A cache of large values is where a program's memory goes. An
//! [`RcuCache`] bounds it three ways, in one builder, and frees what it
//! evicts through RCU, a grace period later (readers holding an evicted
//! value keep reading it until their section ends):
//!
//! * **its own cap**, [`max_bytes`](RcuCacheBuilder::max_bytes): entries
//!   are weighed by their real sizes ([`ReclaimSize`]: a 64 KiB `Vec<u8>`
//!   weighs 64 KiB, plus the entry's overhead; shared values, `Arc` or
//!   `Rc`, take a [`weigher`](RcuCacheBuilder::weigher), as the default
//!   refuses them at compile time) and evicted by S3-FIFO, a policy picked
//!   by measured hit ratio (see [`cache`]);
//! * **the process's budget**, [`budget`](RcuCacheBuilder::budget): a
//!   [`MemoryBudget`](reclaim::MemoryBudget) with watermarks over what
//!   the process uses (here the [`AccountingAlloc`](reclaim::AccountingAlloc)'s
//!   count, or a cgroup's, see [`sources::budget_from_cgroup`]); the cache
//!   registers its shrinker with the budget's reclaimer, so over the
//!   watermarks reclaim evicts from it, before it would declare
//!   out-of-memory;
//! * **the machine's pressure**, [`auto_pressure`](RcuCacheBuilder::auto_pressure):
//!   PSI, cgroup v2 or v1 events, or RSS over the budget's `low` watermark,
//!   and under a cgroup limit the cgroup's usage polled against it
//!   ([`sources::auto_pressure`]) shrink the cache by an eighth (medium) or
//!   half (critical) per event, at least one entry, and RCU frees the
//!   evicted entries at once.
//!   The poll runs every 20 ms (on cgroup v1 the kernel also signals each
//!   crossing of 85 % and 95 % of the limit at once): in a container, a
//!   program that can fill its limit faster than the cache shrinks, or
//!   that shares it with another large allocator, gives the cache a budget
//!   from [`sources::budget_from_cgroup`] too, checked on every insert.
//!
//! After a shrink the cache stays at what was left for a second
//! ([`regrow_after`](RcuCacheBuilder::regrow_after)); then it grows back
//! to its cap in steps, doubling every quarter second. Byte counts are `usize` throughout.
//!
//! What waits for a grace period is bounded as well: in a cgroup with a
//! memory limit, a domain served by [`sources::auto_pressure`] (a cache's
//! `auto_pressure` included) or by a budget from
//! [`sources::budget_from_cgroup`] makes a thread that retires while its
//! garbage is over half of the room left below 85 % of the limit wait for
//! that garbage to be freed, with or without a pressure signal
//! ([`Rcu::bound_garbage`], [`sources::bound_garbage_by_cgroup`]): a reader
//! preempted in its section on a loaded machine no longer lets writers of
//! large values pile garbage up to the limit. A [`MemoryBudget`](reclaim::MemoryBudget)
//! whose reclaimer is RCU-aware (the default) bounds its domain's garbage
//! the same way, by its own usage: near its `high` watermark a retiring
//! thread waits for garbage over half the room left below `high` (at least
//! one reclaim step, 256 KiB for budgets up to 64 MiB), since each byte
//! waiting there is a byte of live entries reclaim would evict instead.
//! With no limit to read (a
//! plain host, no monitor), [`Config::max_pending_bytes`] caps a domain's
//! garbage at a size of your choosing, with the same wait. Work whose memory the domain
//! cannot weigh (closures given to [`Rcu::call`], a queue of your own) is
//! held back by count instead, from the moment [`Rcu::memory_state`] says
//! memory is short.
//!
//! Freed entries go back to the allocator, which keeps much of that memory
//! for later allocations: the process's resident size (and its cgroup's
//! usage) falls when glibc gives pages back to the kernel. The pressure
//! monitor and a budget's reclaim ask it to (`malloc_trim`) after they
//! free; a program that empties a cache with no pressure signalled (a
//! `clear` followed by [`Rcu::barrier`]) and wants its resident size down
//! at once calls `libc::malloc_trim(0)` itself.
//!
//! ```
//! use std::sync::Arc;
//! use rcu_reclaim::reclaim::{AccountingAlloc, MemoryBudget, Reclaimer};
//! use rcu_reclaim::{Rcu, RcuCache};
//!
//! // The accounting allocator counts the bytes the process uses; without
//! // it, `AccountingAlloc::live_bytes` reads 0 and the budget never reclaims.
//! #[global_allocator]
//! static ALLOC: AccountingAlloc = AccountingAlloc::system();
//!
//! fn main() {
//!     // The process may use 1 GiB, as the accounting allocator counts it.
//!     let reclaimer = Arc::new(Reclaimer::new(Rcu::global()));
//!     let budget = Arc::new(MemoryBudget::new(1 << 30, reclaimer, AccountingAlloc::live_bytes));
//!
//!     let cache = RcuCache::builder()
//!         .max_bytes(64 << 20) // at most 64 MiB of entries
//!         .budget(&budget) // less when the process nears its budget
//!         .auto_pressure() // and when the machine or the cgroup is short
//!         .build();
//!
//!     // Cache-aside: on a miss the page is made and cached outside any
//!     // read-side section, so the insert can free what it evicts itself.
//!     let len = cache.read_or_insert_with(7u64, || vec![0u8; 64 << 10], |page| page.len());
//!     assert_eq!(len, 64 << 10);
//!     let guard = cache.domain().read_lock();
//!     assert_eq!(cache.get(&7, &guard).map(Vec::len), Some(64 << 10));
//!     assert!(cache.bytes() >= 64 << 10 && cache.bytes() <= cache.max_bytes());
//! }
//! ```
//!
//! Under pressure the cache shrinks and the domain frees what it evicted
//! within a grace period ([`Rcu::pending_bytes`] counts it meanwhile):
//!
//! ```
//! use std::sync::Arc;
//! use rcu_reclaim::pressure::NodeMask;
//! use rcu_reclaim::reclaim::Reclaimer;
//! use rcu_reclaim::{Config, Rcu, RcuCache};
//!
//! let rcu = Rcu::new(Config::new()).unwrap();
//! let reclaimer = Arc::new(Reclaimer::new(&rcu));
//! let cache = RcuCache::builder().max_bytes(64 << 20).reclaimer(&reclaimer).build();
//! for key in 0..256u32 {
//!     cache.insert(key, vec![0u8; 64 << 10]); // 16 MiB
//! }
//! let before = cache.bytes();
//! // What a budget over its watermarks asks: 8 MiB back.
//! let done = reclaimer.reclaim(8 << 20, &NodeMask::all()).unwrap();
//! assert!(done.freed_bytes >= 8 << 20, "{done:?}");
//! assert!(cache.bytes() <= before - (8 << 20));
//! rcu.barrier();
//! assert_eq!(rcu.pending_bytes(), 0);
//! ```
//!
//! `examples/bounded_cache.rs` is the same in a program:
//! `cargo run -p rcu-reclaim --example bounded_cache`.
//!
//! ## Grace periods
//! * [`Rcu::synchronize`] waits for pre-existing readers; concurrent callers
//!   share one grace period.
//! * [`Rcu::synchronize_expedited`] never parks, for the lowest latency.
//! * The polled API, [`Rcu::get_state`], [`Rcu::start_poll`], [`Rcu::poll`]
//!   and [`Rcu::cond_synchronize`], waits without blocking.
//!
//! ## Quiescent-state-based reading (QSBR)
//! For threads that loop over events (packet and DNS servers, tracers), a
//! domain of the [`Flavor::Qsbr`] flavor makes read-side sections free: a
//! thread registers ([`Rcu::register_qsbr_thread`]), reads under
//! [`QsbrThread::read_lock`] (no instruction at all), and reports a
//! [`quiescent_state`](QsbrThread::quiescent_state) between events, when it
//! holds no reference; it goes offline
//! ([`offline_while`](QsbrThread::offline_while),
//! [`thread_offline`](QsbrThread::thread_offline)) before it blocks. A grace
//! period waits until every online registered thread has reported once;
//! offline and departed threads never hold it up. The borrow checker keeps
//! a reference from outliving its section: a guard borrows the
//! registration, and reporting takes it mutably. Everything above the read
//! side (callbacks, `defer_drop`, `barrier`, accounting, pressure,
//! reclaim) works unchanged, with one limit under memory pressure: a writer
//! cannot force a thread to report. Pressure expedites the domain's own
//! side (grace periods start at once and spin rather than sleep, pages are
//! flushed, ready work runs on the reclaiming thread), and
//! [`Rcu::late_readers`] and the stall warning name the threads that are
//! late; a grace period still lasts until the slowest online thread
//! reports. See [`qsbr`].
//!
//! ```
//! use rcu_reclaim::{Config, Flavor, Rcu, RcuCell};
//! let rcu = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
//! let routes = RcuCell::new_in(&rcu, Some(Box::new(vec![1u32, 2])));
//! let mut thread = rcu.register_qsbr_thread();
//! for _event in 0..2 {
//!     let guard = thread.read_lock(); // free
//!     assert_eq!(routes.load(&guard).unwrap().len(), 2);
//!     thread.quiescent_state(); // nothing from the section is held (the guard is Copy: no drop)
//! }
//! routes.store(Box::new(vec![3])); // the old one is freed after a grace period
//! thread.offline_while(|| rcu.barrier()); // waits: offline meanwhile
//! ```
//!
//! ## Misuse
//! Waiting for a grace period inside a read-side section of the same domain
//! would never return; it panics instead, naming the call. A reader that holds
//! up a grace period longer than [`Config::stall_timeout`] is reported once,
//! with its thread name, through `tracing` (or standard error, without a
//! subscriber) and [`Stats::stalls_reported`](stats::Stats::stalls_reported).
//! No safe call can end a section early: raw sections ([`Rcu::read_lock_raw`])
//! are counted apart from guards.
//!
//! [`locking`] says where callbacks, destructors and shrinkers run, which
//! calls may wait for what, and the library's lock order: what a program
//! may hold around each call.
//!
//! ## Modules
//! The crate root holds what every user needs: [`Rcu`] (a domain),
//! [`ReadGuard`], [`RcuCell`] and [`Retired`], [`RcuHashMap`], [`RcuCache`]
//! and [`RcuCacheBuilder`], [`Config`],
//! [`Error`], [`Flavor`], [`Cookie`], the QSBR registration and guard
//! ([`QsbrThread`], [`QsbrOfflineThread`], [`QsbrGuard`], with
//! [`ReadSection`] over both kinds of guard and [`LateReader`]), and
//! [`ReclaimSize`], the trait and its derive (at the root because
//! retiring a value with [`Rcu::defer_drop`] asks for it). The
//! rest is grouped by concept:
//!
//! | module | for |
//! |---|---|
//! | [`map`] | [`RcuHashMap`] (re-exported at the root): a concurrent hash map with lock-free lookups under a guard, resizing without stopping readers; removed entries are freed through the domain with their sizes |
//! | [`cache`] | [`RcuCache`] (re-exported at the root): a cache bounded in bytes on the map, S3-FIFO eviction, a shrinker, and the builder that ties it to a budget and to pressure; [`cache::Weigher`] |
//! | [`qsbr`] | the QSBR flavor's model, its borrow rules, and what pressure can and cannot do there |
//! | [`pressure`] | telling RCU that memory is short ([`pressure::PressureGuard`]) and running its backlog now ([`Rcu::run_callbacks`]) |
//! | [`reclaim`] | shrinkers, the priority loop, a memory budget with watermarks, the accounting allocator |
//! | [`sources`] | kernel pressure signals (PSI, cgroup v1/v2, RSS) and the monitor thread that feeds them to RCU |
//! | [`stats`] | every counter snapshot: the domain's, reclaim's, the budget's, the monitor's |
//! | [`pages`] | the bulk pages deferred drops live in, and their allocator |
//! | [`fork`] | keeping a domain usable in a `fork()`ed child |
//! | [`topology`] | CPUs and NUMA nodes, detected or synthetic |
//! | [`locking`] | documentation only: where code runs, what may block, the lock order |
//!
//! ## Features
//! * `derive` (on by default): [`#[derive(ReclaimSize)]`](derive@ReclaimSize),
//!   from the `rcu-reclaim-derive` crate.
//! * `serde`: `serde::Serialize` for the stats snapshots and reports.
//! * `testing`: test hooks, **not for production**:
//!   `topology::override_current_cpu` and `Config::simulate_no_membarrier`.
//! * `liburcu`: the benches' comparison with liburcu (needs liburcu-dev).
//!
//! ## Design
//! The crate follows the Linux kernel's discussion of RCU and the OOM killer
//! (May 2020): RCU counts its backlog in callbacks and bytes, enters a fast
//! mode under memory pressure ([`Rcu::pressure_start`]), and reclaim runs or
//! waits for what its shrinkers queued ([`Rcu::run_callbacks`]) before it
//! declares out-of-memory ([`reclaim::Reclaimer`]).

#![warn(missing_docs)]
// Under loom the membarrier/futex paths and the grace-period thread are not built.
#![cfg_attr(loom, allow(dead_code, unused_imports))]

#[cfg(not(target_os = "linux"))]
compile_error!(
    "rcu-reclaim supports Linux only: its read side relies on membarrier(2) (or fences), its \
     writers on futex(2), and its topology and pressure sources on /proc and /sys. Build it \
     for a Linux target (e.g. x86_64-unknown-linux-gnu)."
);

#[cfg(not(loom))]
pub mod cache;
mod callbacks;
mod cell;
mod clock;
#[cfg(doctest)]
mod compile_fail;
mod config;
mod domain;
mod fast_mode;
mod flavor;
#[cfg(not(loom))]
mod foreign;
#[cfg(not(loom))]
pub mod fork;
mod gp;
#[cfg(not(loom))]
mod gp_thread;
mod guard;
mod lock_holder;
pub mod locking;
pub mod map;
pub mod pages;
mod policy;
pub mod pressure;
pub mod qsbr;
mod raw;
mod reader;
mod reader_fences;
pub mod reclaim;
mod retired;
mod size;
pub mod sources;
pub mod stats;
mod sync;
mod synchronize;
mod sys;
pub mod topology;
#[cfg(all(test, not(loom)))]
mod unprepared_fork;
mod wake_promise;

#[cfg(not(loom))]
pub use cache::{RcuCache, RcuCacheBuilder};
pub use cell::{CompareExchangeError, RcuCell};
pub use domain::{Config, Error, Flavor, Rcu};
pub use guard::{ReadGuard, ReadSection};
pub use map::RcuHashMap;
pub use qsbr::{LateReader, QsbrGuard, QsbrOfflineThread, QsbrThread};
pub use retired::Retired;
#[doc(hidden)]
pub use size::field_drops_anywhere as __field_drops_anywhere;
#[doc(hidden)]
pub use size::field_shared as __field_shared;
#[doc(hidden)]
pub use size::{derive_field as __derive_field, DeriveField as __DeriveField};
#[doc(hidden)]
pub use size::{derive_packed_field as __derive_packed_field, PackedField as __PackedField};
pub use size::{drops_anywhere, ReclaimSize};

/// Derives [`ReclaimSize`](trait@ReclaimSize) for a struct or an enum:
/// its own size plus the [`heap_size`](ReclaimSize::heap_size) of
/// **every** field, so that a field added later is counted without being
/// listed anywhere. Each field's type must implement `ReclaimSize`.
///
/// ```
/// use std::collections::HashMap;
/// use rcu_reclaim::{RcuCell, ReclaimSize};
///
/// #[derive(ReclaimSize)]
/// struct Page {
///     title: String,
///     body: Vec<u8>,
///     links: HashMap<String, u32>,
///     views: u64,
/// }
/// let p = Page { title: "home".into(), body: vec![0; 1 << 16], links: HashMap::new(), views: 0 };
/// assert_eq!(p.reclaim_size(), std::mem::size_of::<Page>() + 4 + (1 << 16));
///
/// let page = RcuCell::new(p);
/// page.store(Box::new(Page { title: "new".into(), body: vec![], links: HashMap::new(), views: 1 }));
/// ```
///
/// An enum counts the fields of the variant the value is (a `match`):
///
/// ```
/// use rcu_reclaim::ReclaimSize;
/// #[derive(ReclaimSize)]
/// enum Value { Small(u64), Big(Vec<u8>), Text { body: String } }
/// assert_eq!(Value::Big(vec![0; 100]).reclaim_size(), std::mem::size_of::<Value>() + 100);
/// assert_eq!(Value::Small(7).reclaim_size(), std::mem::size_of::<Value>());
/// ```
///
/// What it declares besides the size:
///
/// * [`SHARED`](ReclaimSize::SHARED) when a field does (an `Arc`, an `Rc`
///   or a `Weak` in it: an [`RcuCache`] then asks for a weigher);
/// * [`PLAIN`](ReclaimSize::PLAIN) when every field is plain (owns no
///   heap) and none is skipped;
/// * [`DROPS_ANYWHERE`](ReclaimSize::DROPS_ANYWHERE) only when the type
///   says `#[reclaim_size(drops_anywhere)]`, your word that its own `Drop`,
///   if it has one, takes no lock and waits for no grace period; it is
///   then declared if every field drops anywhere too (checked for each
///   field, except skipped ones, which are your word).
///
/// ```
/// use std::sync::Arc;
/// use rcu_reclaim::{drops_anywhere, ReclaimSize};
///
/// #[derive(ReclaimSize)]
/// #[reclaim_size(drops_anywhere)]
/// struct Route { prefix: String, hops: Vec<u32> }
/// assert!(drops_anywhere::<Route>());
///
/// #[derive(ReclaimSize)]
/// struct Node { body: Vec<u8>, parent: Option<Arc<String>> }
/// assert!(<Node as ReclaimSize>::SHARED && !<Route as ReclaimSize>::SHARED);
///
/// #[derive(ReclaimSize)]
/// struct Point { x: f64, y: f64 }
/// assert!(<Point as ReclaimSize>::PLAIN);
/// ```
///
/// A field whose type does not implement `ReclaimSize` and owns no heap
/// memory (a link, a handle), or whose memory you count elsewhere, is
/// marked `#[reclaim_size(skip)]`: it is then counted by its inline bytes
/// alone (its part of `size_of` the type), never by what it points to.
///
/// ```
/// use std::sync::atomic::AtomicPtr;
/// use rcu_reclaim::ReclaimSize;
///
/// #[derive(ReclaimSize)]
/// #[reclaim_size(drops_anywhere)]
/// struct Node {
///     value: String,
///     #[reclaim_size(skip)] // a link: owns nothing
///     next: AtomicPtr<Node>,
/// }
/// let n = Node { value: "abc".into(), next: AtomicPtr::default() };
/// assert_eq!(n.reclaim_size(), std::mem::size_of::<Node>() + 3);
/// ```
///
/// A generic type gets a `ReclaimSize` bound on each field type that
/// names a type parameter (beside the bounds it has):
///
/// ```
/// use rcu_reclaim::ReclaimSize;
/// #[derive(ReclaimSize)]
/// struct Tagged<T> { tag: String, value: T }
/// let t = Tagged { tag: "v".into(), value: vec![0u8; 100] };
/// assert_eq!(t.reclaim_size(), std::mem::size_of::<Tagged<Vec<u8>>>() + 1 + 100);
/// ```
///
/// A type that holds itself (a tree of `Box<Self>` or `Vec<Self>`) is
/// counted at every level. Its fields that name the type stay out of the
/// constants, which would otherwise be defined by themselves: the type is
/// then not `PLAIN`, is `SHARED` only if such a field names `Arc`, `Rc` or
/// `Weak` (or another field is shared), and such a field drops anywhere on your
/// word, as a skipped one does. Two types that hold each other (`A` holds a
/// `Box<B>`, `B` an `Option<Box<A>>`) are still a cycle rustc rejects:
/// implement one of them by hand.
///
/// ```
/// use rcu_reclaim::ReclaimSize;
/// #[derive(ReclaimSize)]
/// enum Tree { Leaf(String), Node(Vec<Tree>) }
/// let t = Tree::Node(vec![Tree::Leaf("ab".into())]);
/// assert_eq!(t.reclaim_size(), 2 * std::mem::size_of::<Tree>() + 2);
/// ```
///
/// A `#[repr(packed)]` struct's fields may be unaligned, and a reference
/// to one is refused (E0793): the derive copies each field out instead,
/// so each field it counts must be `Copy` (a wire header of numbers and
/// byte arrays). A field that is not is a compile error that names the
/// fix: mark it `#[reclaim_size(skip)]` (its inline bytes only), or
/// remove `#[repr(packed)]`.
///
/// ```
/// use rcu_reclaim::{drops_anywhere, ReclaimSize};
/// #[derive(ReclaimSize, Clone, Copy)]
/// #[repr(C, packed)]
/// struct Header { kind: u8, len: u32, src: [u8; 4] }
/// let h = Header { kind: 1, len: 64, src: [10, 0, 0, 1] };
/// assert_eq!(h.reclaim_size(), std::mem::size_of::<Header>());
/// assert!(<Header as ReclaimSize>::PLAIN && drops_anywhere::<Header>());
///
/// #[derive(ReclaimSize)]
/// #[repr(packed)]
/// struct Tagged {
///     id: u64,
///     #[reclaim_size(skip)] // not `Copy`: counted by its inline bytes
///     name: String,
/// }
/// let t = Tagged { id: 1, name: String::from("abc") };
/// assert_eq!(t.reclaim_size(), std::mem::size_of::<Tagged>());
/// ```
///
/// The attributes: on the type, `#[reclaim_size(drops_anywhere)]` and
/// `#[reclaim_size(crate = "path")]` (where the crate is not
/// `::rcu_reclaim`: renamed in `Cargo.toml`, or re-exported by another);
/// on a field, `#[reclaim_size(skip)]`. Anything else is a compile error
/// that names them. A union does not derive `ReclaimSize` (which field is
/// live is not known): implement it by hand.
///
/// The derive comes with the `derive` feature, on by default. Without
/// it, or for the heapless form, [`reclaim_size!`] does the same for a
/// struct given its heap-owning fields by name.
#[cfg(feature = "derive")]
pub use rcu_reclaim_derive::ReclaimSize;
pub use synchronize::Cookie;
#[doc(hidden)]
pub use sys::with_signals_blocked as __with_signals_blocked;

/// The README's examples, compiled and run as doc tests (the build script
/// finds the README, in a checkout or in a package).
#[cfg(all(doctest, readme_doctests))]
#[doc = include_str!(env!("RCU_RECLAIM_README"))]
pub struct ReadmeDoctests;
