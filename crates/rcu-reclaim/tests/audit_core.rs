//! Independent audit of the core contracts: readers never see freed values,
//! no callback or deferred drop is lost or run twice, nothing hangs, and
//! misuse is refused clearly. Every test runs under a watchdog: a test that
//! outlives it prints `HANG` with the process id and then (with
//! `AUDIT_HANG_PAUSE=1`) sleeps so that gdb can attach, else aborts.

mod common;
use common::StopOnDrop;

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use rcu_reclaim::{reclaim_size, Config, Flavor, Rcu, RcuCell};

// ---------------------------------------------------------------------
// Watchdog

struct Watchdog(Arc<AtomicBool>);

fn watchdog(name: &'static str, secs: u64) -> Watchdog {
    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    thread::Builder::new()
        .name(format!("watchdog-{name}"))
        .spawn(move || {
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(secs) {
                if d.load(Ordering::Acquire) {
                    return;
                }
                thread::sleep(Duration::from_millis(50));
            }
            eprintln!(
                "HANG: {name} did not finish in {secs}s; pid {}",
                std::process::id()
            );
            if std::env::var_os("AUDIT_HANG_PAUSE").is_some() {
                thread::sleep(Duration::from_secs(600));
            }
            std::process::abort();
        })
        .unwrap();
    Watchdog(done)
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

// ---------------------------------------------------------------------
// Poisoned values and drop books

const LIVE: u64 = 0x5AFE_5AFE_5AFE_5AFE;
const DEAD: u64 = 0xDEAD_DEAD_DEAD_DEAD;

/// Drop counts per id, for every book in the process.
struct Book {
    made: AtomicUsize,
    drops: Mutex<HashMap<u64, u32>>,
    doubles: AtomicUsize,
}

impl Book {
    fn new() -> Arc<Book> {
        Arc::new(Book {
            made: AtomicUsize::new(0),
            drops: Mutex::new(HashMap::new()),
            doubles: AtomicUsize::new(0),
        })
    }
    fn dropped(&self, id: u64) {
        let mut d = self.drops.lock().unwrap();
        let n = d.entry(id).or_insert(0);
        *n += 1;
        if *n > 1 {
            self.doubles.fetch_add(1, Ordering::Relaxed);
        }
    }
    fn dropped_count(&self) -> usize {
        self.drops.lock().unwrap().len()
    }
    fn assert_exactly_once(&self, what: &str) {
        let made = self.made.load(Ordering::SeqCst);
        let d = self.drops.lock().unwrap();
        assert_eq!(
            self.doubles.load(Ordering::SeqCst),
            0,
            "{what}: a value dropped twice"
        );
        let missing: Vec<u64> = (0..made as u64)
            .filter(|id| !d.contains_key(id))
            .take(10)
            .collect();
        assert!(
            missing.is_empty(),
            "{what}: {} of {made} values never dropped (e.g. {missing:?})",
            made - d.len()
        );
        assert_eq!(d.len(), made, "{what}: drops of unknown ids");
    }
}

struct Val {
    magic: AtomicU64,
    id: u64,
    payload: [u64; 4],
    book: Arc<Book>,
}
reclaim_size!(Val {});

impl Val {
    fn new(book: &Arc<Book>) -> Box<Val> {
        let id = book.made.fetch_add(1, Ordering::SeqCst) as u64;
        Box::new(Val {
            magic: AtomicU64::new(LIVE),
            id,
            payload: [id; 4],
            book: book.clone(),
        })
    }
    #[track_caller]
    fn check(&self) {
        let m = self.magic.load(Ordering::SeqCst);
        assert_eq!(m, LIVE, "a reader saw a freed value (magic {m:#x})");
        assert!(
            self.payload.iter().all(|&p| p == self.id),
            "a reader saw a torn value"
        );
    }
}

impl Drop for Val {
    fn drop(&mut self) {
        let was = self.magic.swap(DEAD, Ordering::SeqCst);
        assert_eq!(was, LIVE, "a value dropped twice");
        self.payload = [u64::MAX; 4];
        self.book.dropped(self.id);
    }
}

fn flavors() -> Vec<(&'static str, Rcu)> {
    let mut v = vec![("mb", Rcu::new(Config::new().flavor(Flavor::Mb)).unwrap())];
    if let Ok(r) = Rcu::new(Config::new().flavor(Flavor::Memb)) {
        v.push(("memb", r));
    }
    v.push((
        "mb-on-demand",
        Rcu::new(Config::new().flavor(Flavor::Mb).on_demand()).unwrap(),
    ));
    v.push((
        "mb-frees-on-retire",
        Rcu::new(Config::new().flavor(Flavor::Mb).retiring_thread_frees(true)).unwrap(),
    ));
    v
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

// ---------------------------------------------------------------------
// A. Readers never see freed memory, with every write call in the API.

fn writer_step(cell: &RcuCell<Val>, rcu: &Rcu, book: &Arc<Book>, i: u64) {
    match i % 10 {
        0 => cell.store(Val::new(book)),
        1 => {
            cell.update(|old| {
                if let Some(o) = old {
                    o.check();
                }
                Some(Val::new(book))
            });
        }
        2 => {
            let g = rcu.read_lock();
            let cur = cell.load(&g);
            match cell.compare_exchange(cur, Some(Val::new(book)), &g) {
                Ok(Some(old)) => old.defer_drop(),
                Ok(None) => {}
                Err(_lost) => {}
            }
        }
        3 => {
            let g = rcu.read_lock();
            let cur = cell.load(&g);
            // Dropped inside the section: deferred, never waited for.
            let _ = cell.compare_exchange(cur, Some(Val::new(book)), &g).is_ok();
        }
        4 => {
            if let Some(old) = cell.replace(Val::new(book)) {
                old.defer_drop();
            }
        }
        5 => {
            // Dropping a Retired outside a section waits for a grace period.
            drop(cell.replace(Val::new(book)));
        }
        6 => {
            if let Some(old) = cell.replace(Val::new(book)) {
                let b = old.into_box();
                b.check();
            }
        }
        7 => cell.store_sync(Val::new(book)),
        8 => {
            if let Some(old) = cell.take() {
                old.defer_drop_sized(64);
            }
            cell.store_weighed(Val::new(book), |_| 128);
        }
        _ => {
            if let Some(old) = cell.replace(Val::new(book)) {
                let mut old = old;
                loop {
                    match old.try_into_box() {
                        Ok(b) => {
                            b.check();
                            break;
                        }
                        Err(o) => {
                            old = o;
                            // try_into_box has asked for the grace period.
                            rcu.collect();
                            thread::yield_now();
                        }
                    }
                }
            }
            rcu.collect();
        }
    }
}

#[test]
fn readers_never_see_a_freed_value_under_every_write_call() {
    let _w = watchdog("readers_never_see", 120);
    for (name, rcu) in flavors() {
        eprintln!("flavor {name}");
        let book = Book::new();
        let cell = Arc::new(RcuCell::new_in(&rcu, Some(Val::new(&book))));
        let stop = Arc::new(AtomicBool::new(false));
        let reads = Arc::new(AtomicU64::new(0));
        let mut hs = vec![];
        for r in 0..2 {
            let (cell, stop, reads, rcu) = (cell.clone(), stop.clone(), reads.clone(), rcu.clone());
            hs.push(thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let g = rcu.read_lock();
                    if let Some(v) = cell.load(&g) {
                        v.check();
                        // Long enough for a writer to retire it meanwhile.
                        if n % 64 == r {
                            thread::yield_now();
                        }
                        v.check();
                        let g2 = rcu.read_lock(); // nested
                        if let Some(v2) = cell.load(&g2) {
                            v2.check();
                        }
                        drop(g2);
                        v.check();
                    }
                    drop(g);
                    n += 1;
                }
                reads.fetch_add(n, Ordering::Relaxed);
            }));
        }
        for w in 0..2u64 {
            let (cell, stop, book, rcu) = (cell.clone(), stop.clone(), book.clone(), rcu.clone());
            hs.push(thread::spawn(move || {
                let mut i = w * 5;
                while !stop.load(Ordering::Relaxed) {
                    writer_step(&cell, &rcu, &book, i);
                    i += 1;
                }
            }));
        }
        thread::sleep(ms(1500));
        stop.store(true, Ordering::Relaxed);
        eprintln!("{name}: stopping");
        for h in hs {
            h.join().unwrap();
        }
        eprintln!("{name}: joined");
        drop(Arc::try_unwrap(cell).ok().expect("cell still shared"));
        rcu.barrier();
        book.assert_exactly_once(name);
        assert!(
            reads.load(Ordering::Relaxed) > 100,
            "{name}: readers starved"
        );
    }
}

#[test]
fn qsbr_readers_never_see_a_freed_value() {
    let _w = watchdog("qsbr_readers", 60);
    let rcu = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
    let book = Book::new();
    let cell = Arc::new(RcuCell::new_in(&rcu, Some(Val::new(&book))));
    let stop = Arc::new(AtomicBool::new(false));
    let mut hs = vec![];
    for _ in 0..2 {
        let (cell, stop, rcu) = (cell.clone(), stop.clone(), rcu.clone());
        hs.push(thread::spawn(move || {
            let mut me = rcu.register_qsbr_thread();
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) {
                {
                    let g = me.read_lock();
                    if let Some(v) = cell.load(&g) {
                        v.check();
                        thread::yield_now();
                        v.check();
                    }
                }
                me.quiescent_state();
                n += 1;
                if n % 100 == 0 {
                    me.offline_while(|| thread::sleep(Duration::from_micros(200)));
                }
            }
        }));
    }
    for w in 0..2u64 {
        let (cell, stop, book, rcu) = (cell.clone(), stop.clone(), book.clone(), rcu.clone());
        hs.push(thread::spawn(move || {
            let mut i = w * 5;
            while !stop.load(Ordering::Relaxed) {
                writer_step(&cell, &rcu, &book, i);
                i += 1;
            }
        }));
    }
    thread::sleep(ms(1500));
    stop.store(true, Ordering::Relaxed);
    for h in hs {
        h.join().unwrap();
    }
    drop(Arc::try_unwrap(cell).ok().unwrap());
    rcu.barrier();
    book.assert_exactly_once("qsbr");
}

// ---------------------------------------------------------------------
// B. Every callback and deferred drop queued before a barrier has run
// exactly once when it returns, under a storm of producers, concurrent
// barriers, pressure flapping, collect and run_callbacks.

struct Counted {
    id: u64,
    slots: Arc<Vec<AtomicU8>>,
}
reclaim_size!(Counted {});
impl Drop for Counted {
    fn drop(&mut self) {
        self.slots[self.id as usize].fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn a_barrier_sees_everything_queued_before_it_run_exactly_once() {
    let _w = watchdog("barrier_exactly_once", 180);
    for (name, rcu) in flavors() {
        const PER: u64 = 30_000;
        const PRODUCERS: u64 = 3;
        let slots: Arc<Vec<AtomicU8>> =
            Arc::new((0..PER * PRODUCERS).map(|_| AtomicU8::new(0)).collect());
        // Per producer: every id below the mark has been queued.
        let marks: Arc<Vec<AtomicU64>> =
            Arc::new((0..PRODUCERS).map(|_| AtomicU64::new(0)).collect());
        let stop = Arc::new(AtomicBool::new(false));
        let mut hs = vec![];
        for p in 0..PRODUCERS {
            let (rcu, slots, marks) = (rcu.clone(), slots.clone(), marks.clone());
            hs.push(thread::spawn(move || {
                for k in 0..PER {
                    let id = p * PER + k;
                    let s = slots.clone();
                    let in_section = k % 7 == 0;
                    let g = in_section.then(|| rcu.read_lock());
                    match k % 8 {
                        0 => rcu.call(move || {
                            s[id as usize].fetch_add(1, Ordering::SeqCst);
                        }),
                        1 => rcu.call_sized(
                            move || {
                                s[id as usize].fetch_add(1, Ordering::SeqCst);
                            },
                            100,
                        ),
                        2 => rcu.call_hurry(move || {
                            s[id as usize].fetch_add(1, Ordering::SeqCst);
                        }),
                        3 => rcu.defer_drop(Box::new(Counted { id, slots: s })),
                        4 => rcu.defer_drop_sized(Box::new(Counted { id, slots: s }), 4096),
                        5 => {
                            if let Err(b) = rcu.try_defer_drop(Box::new(Counted { id, slots: s })) {
                                rcu.defer_drop(b);
                            }
                        }
                        6 => unsafe {
                            rcu.defer_drop_raw(Box::into_raw(Box::new(Counted { id, slots: s })))
                        },
                        _ => {
                            let cell = RcuCell::new_in(
                                &rcu,
                                Some(Box::new(Counted {
                                    id,
                                    slots: s.clone(),
                                })),
                            );
                            // Dropping a cell drops its value (now: no reader can hold it).
                            drop(cell);
                        }
                    }
                    drop(g);
                    marks[p as usize].store(k + 1, Ordering::SeqCst);
                    if k % 5000 == 4999 {
                        rcu.collect();
                    }
                }
            }));
        }
        // Barrier checkers.
        let failures = Arc::new(Mutex::new(Vec::<String>::new()));
        for _ in 0..2 {
            let (rcu, slots, marks, stop, failures) = (
                rcu.clone(),
                slots.clone(),
                marks.clone(),
                stop.clone(),
                failures.clone(),
            );
            hs.push(thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let snap: Vec<u64> = marks.iter().map(|m| m.load(Ordering::SeqCst)).collect();
                    rcu.barrier();
                    for p in 0..PRODUCERS {
                        for k in 0..snap[p as usize] {
                            let n = slots[(p * PER + k) as usize].load(Ordering::SeqCst);
                            if n != 1 {
                                failures.lock().unwrap().push(format!(
                                    "after a barrier, item {p}/{k} ran {n} times (mark {})",
                                    snap[p as usize]
                                ));
                                return;
                            }
                        }
                    }
                    thread::sleep(ms(5));
                }
            }));
        }
        // Pressure flapping and reclaim hooks.
        {
            let (rcu, stop) = (rcu.clone(), stop.clone());
            hs.push(thread::spawn(move || {
                let mut i = 0u32;
                while !stop.load(Ordering::SeqCst) {
                    let g = rcu.pressure_start_all();
                    thread::sleep(Duration::from_micros(300));
                    drop(g);
                    let mask = rcu_reclaim::pressure::NodeMask::all();
                    let _ = rcu.run_callbacks(&mask, (i % 13) as u8);
                    i += 1;
                    thread::sleep(Duration::from_micros(700));
                }
            }));
        }
        let _stop = StopOnDrop(&stop);
        let producers: Vec<_> = hs.drain(..PRODUCERS as usize).collect();
        for h in producers {
            h.join().unwrap();
        }
        rcu.barrier();
        stop.store(true, Ordering::SeqCst);
        for h in hs {
            h.join().unwrap();
        }
        let f = failures.lock().unwrap();
        assert!(f.is_empty(), "{name}: {:?}", &f[..f.len().min(5)]);
        let bad: Vec<(usize, u8)> = slots
            .iter()
            .enumerate()
            .map(|(i, s)| (i, s.load(Ordering::SeqCst)))
            .filter(|&(_, n)| n != 1)
            .take(10)
            .collect();
        assert!(
            bad.is_empty(),
            "{name}: items not run exactly once after the final barrier: {bad:?}"
        );
        assert_eq!(rcu.pending(), 0, "{name}: pending after the final barrier");
        assert_eq!(
            rcu.pending_bytes(),
            0,
            "{name}: pending_bytes after the final barrier"
        );
    }
}

// ---------------------------------------------------------------------
// C. Callbacks that queue callbacks, and a barrier / synchronize inside one.

fn hooked(msgs: &Arc<Mutex<Vec<String>>>) -> Config {
    let m = msgs.clone();
    Config::new().on_callback_panic(move |s| m.lock().unwrap().push(s.to_string()))
}

#[test]
fn callback_trees_and_a_barrier_inside_a_callback_lose_nothing() {
    let _w = watchdog("callback_trees", 60);
    let msgs = Arc::new(Mutex::new(vec![]));
    let rcu = Rcu::new(hooked(&msgs)).unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    fn spawn_tree(rcu: &Rcu, depth: u32, ran: &Arc<AtomicUsize>) {
        let (r2, ran2) = (rcu.clone(), ran.clone());
        rcu.call(move || {
            ran2.fetch_add(1, Ordering::SeqCst);
            if depth > 0 {
                spawn_tree(&r2, depth - 1, &ran2);
                spawn_tree(&r2, depth - 1, &ran2);
            }
        });
    }
    for _ in 0..4 {
        spawn_tree(&rcu, 8, &ran); // 511 callbacks each
    }
    // A callback that calls barrier on its own domain: refused (panic,
    // caught and reported), and the callbacks around it still run.
    let r2 = rcu.clone();
    let ran2 = ran.clone();
    rcu.call(move || {
        ran2.fetch_add(1, Ordering::SeqCst);
        r2.barrier();
    });
    let expected = 4 * 511 + 1;
    let start = Instant::now();
    loop {
        rcu.barrier();
        if ran.load(Ordering::SeqCst) >= expected && rcu.pending() == 0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "trees did not finish: {}",
            ran.load(Ordering::SeqCst)
        );
    }
    assert_eq!(ran.load(Ordering::SeqCst), expected);
    let m = msgs.lock().unwrap();
    assert_eq!(m.len(), 1, "one panic reported: {m:?}");
    assert!(
        m[0].contains("barrier"),
        "the panic names barrier: {}",
        m[0]
    );
    assert_eq!(rcu.stats().callback_panics, 1);
}

#[test]
fn synchronize_and_polls_inside_a_callback_complete() {
    let _w = watchdog("sync_in_callback", 60);
    let rcu = Rcu::new(Config::new()).unwrap();
    let done = Arc::new(AtomicUsize::new(0));
    for i in 0..20 {
        let (r, d) = (rcu.clone(), done.clone());
        rcu.call(move || {
            let c = r.get_state();
            match i % 4 {
                0 => r.synchronize(),
                1 => r.synchronize_expedited(),
                2 => r.cond_synchronize(c),
                _ => {
                    let c = r.start_poll();
                    while !r.poll(&c) {
                        thread::yield_now();
                    }
                }
            }
            d.fetch_add(1, Ordering::SeqCst);
        });
    }
    rcu.barrier();
    assert_eq!(done.load(Ordering::SeqCst), 20);
}

// ---------------------------------------------------------------------
// D. Panicking destructors on every path, including the retiring thread's
// own frees of types that drop anywhere.

struct Bomb {
    id: u64,
    book: Arc<Book>,
}
reclaim_size!(Bomb {}; drops_anywhere);
impl Drop for Bomb {
    fn drop(&mut self) {
        self.book.dropped(self.id);
        if self.id % 3 == 0 {
            panic!("bomb {} went off", self.id);
        }
    }
}

#[test]
fn panicking_drops_on_the_retiring_thread_are_caught_and_lose_nothing() {
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !info.to_string().contains("went off") {
            prev(info);
        }
    }));
    let _w = watchdog("panicking_drops_retiring", 90);
    for frees in [false, true] {
        let msgs = Arc::new(Mutex::new(vec![]));
        let rcu = Rcu::new(hooked(&msgs).retiring_thread_frees(frees)).unwrap();
        let book = Book::new();
        let cell = RcuCell::new_in(&rcu, None::<Box<Bomb>>);
        let mut escaped = 0;
        for round in 0..20_000u64 {
            let id = book.made.fetch_add(1, Ordering::SeqCst) as u64;
            let b = Box::new(Bomb {
                id,
                book: book.clone(),
            });
            let r = catch_unwind(AssertUnwindSafe(|| match round % 3 {
                0 => cell.store(b),
                1 => rcu.defer_drop(b),
                _ => {
                    if let Some(old) = cell.replace(b) {
                        old.defer_drop();
                    }
                }
            }));
            if r.is_err() {
                escaped += 1;
            }
        }
        // The cell's own last value is dropped inline (as a Box would be).
        let last_panicked = catch_unwind(AssertUnwindSafe(|| drop(cell))).is_err() as u64;
        rcu.barrier();
        assert_eq!(
            escaped, 0,
            "frees={frees}: a panicking deferred drop escaped from a retiring call"
        );
        book.assert_exactly_once(&format!("bombs, frees={frees}"));
        let panics = rcu.stats().callback_panics;
        assert_eq!(
            panics + last_panicked,
            20_000 / 3 + 1,
            "frees={frees}: every panic counted"
        );
        assert!(msgs.lock().unwrap().iter().all(|m| m.contains("went off")));
    }
}

// ---------------------------------------------------------------------
// E. Dropping a domain: everything queued by any thread runs first, even
// what another live thread still buffers.

#[test]
fn dropping_a_domain_runs_what_other_live_threads_still_buffer() {
    let _w = watchdog("drop_domain_buffered", 60);
    for round in 0..20 {
        let rcu = Rcu::new(Config::new().lazy_delay(Duration::from_secs(3600))).unwrap();
        let book = Book::new();
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let (r, b) = (rcu.clone(), book.clone());
        let h = thread::spawn(move || {
            for i in 0..(round * 7 + 3) {
                if i % 2 == 0 {
                    r.defer_drop(Val::new(&b));
                } else {
                    let v = Val::new(&b);
                    r.call(move || drop(v));
                }
            }
            drop(r);
            tx.send(()).unwrap();
            let _ = stop_rx.recv(); // stays alive, its page still buffered
        });
        rx.recv().unwrap();
        drop(rcu); // the last handle
        book.assert_exactly_once(&format!(
            "round {round}: after the domain's last handle dropped"
        ));
        stop_tx.send(()).unwrap();
        h.join().unwrap();
    }
}

#[test]
fn the_last_handle_dropped_by_a_thread_local_destructor_at_exit() {
    let _w = watchdog("last_handle_in_tls", 60);
    struct Holder(Option<(Rcu, Arc<RcuCell<Val>>, Arc<Book>)>);
    impl Drop for Holder {
        fn drop(&mut self) {
            let (rcu, cell, book) = self.0.take().unwrap();
            {
                let g = rcu.read_lock();
                if let Some(v) = cell.load(&g) {
                    v.check();
                }
            }
            cell.store(Val::new(&book));
            rcu.defer_drop(Val::new(&book));
            let v = Val::new(&book);
            rcu.call(move || drop(v));
            drop(cell);
            drop(rcu); // the last handle, in a TLS destructor at exit
        }
    }
    thread_local! {
        static H: std::cell::RefCell<Holder> = const { std::cell::RefCell::new(Holder(None)) };
    }
    let mut books = vec![];
    for _ in 0..30 {
        let rcu = Rcu::new(Config::new()).unwrap();
        let book = Book::new();
        let cell = Arc::new(RcuCell::new_in(&rcu, Some(Val::new(&book))));
        let b = book.clone();
        thread::spawn(move || {
            // A read first registers this thread with the domain.
            {
                let g = rcu.read_lock();
                cell.load(&g).unwrap().check();
            }
            rcu.defer_drop(Val::new(&b));
            H.with(|h| h.borrow_mut().0 = Some((rcu, cell, b)));
        })
        .join()
        .unwrap();
        books.push(book);
    }
    for (i, b) in books.iter().enumerate() {
        // The cell's last value goes when the cell drops; everything else
        // at the domain's drop.
        b.assert_exactly_once(&format!("domain {i}"));
    }
}

// ---------------------------------------------------------------------
// F. Domains created and dropped in a loop from many threads, and many
// domains alive at once.

#[test]
fn domains_created_and_dropped_by_many_threads_lose_nothing() {
    let _w = watchdog("domain_churn", 180);
    let book = Book::new();
    // A long-lived reader that is handed every domain in turn.
    let (dtx, drx) = std::sync::mpsc::channel::<(Rcu, Arc<RcuCell<Val>>)>();
    let reader = thread::spawn(move || {
        for (rcu, cell) in drx {
            let g = rcu.read_lock();
            if let Some(v) = cell.load(&g) {
                v.check();
            }
            drop(g);
            rcu.defer_drop(Box::new(0u64));
        }
    });
    let mut hs = vec![];
    for t in 0..4u64 {
        let (book, dtx) = (book.clone(), dtx.clone());
        hs.push(thread::spawn(move || {
            for i in 0..40u64 {
                let cfg = match (t + i) % 5 {
                    0 => Config::new().flavor(Flavor::Mb),
                    1 => Config::new(),
                    2 => Config::new().on_demand(),
                    3 => Config::new().worker_per_cpu(true),
                    _ => Config::new().flavor(Flavor::Qsbr),
                };
                let rcu = Rcu::new(cfg).unwrap();
                let cell = Arc::new(RcuCell::new_in(&rcu, Some(Val::new(&book))));
                if rcu.flavor() == Flavor::Qsbr {
                    let mut me = rcu.register_qsbr_thread();
                    cell.load(&me.read_lock()).unwrap().check();
                    me.quiescent_state();
                    cell.store(Val::new(&book));
                    drop(me);
                } else {
                    dtx.send((rcu.clone(), cell.clone())).unwrap();
                    for _ in 0..5 {
                        cell.store(Val::new(&book));
                        let v = Val::new(&book);
                        rcu.call(move || v.check());
                        rcu.defer_drop(Val::new(&book));
                    }
                }
                match i % 3 {
                    0 => rcu.barrier(),
                    1 => rcu.synchronize(),
                    _ => {}
                }
                drop(cell);
                drop(rcu);
            }
        }));
    }
    drop(dtx);
    for h in hs {
        h.join().unwrap();
    }
    reader.join().unwrap();
    // Every domain is gone now: all its values must be dropped.
    book.assert_exactly_once("domain churn");
}

#[test]
fn many_domains_alive_at_once() {
    let _w = watchdog("many_domains", 120);
    let book = Book::new();
    let domains: Vec<Rcu> = (0..256).map(|_| Rcu::new(Config::new()).unwrap()).collect();
    let cells: Vec<RcuCell<Val>> = domains
        .iter()
        .map(|d| RcuCell::new_in(d, Some(Val::new(&book))))
        .collect();
    // One thread enters sections of all of them at once (nested).
    {
        let guards: Vec<_> = domains.iter().map(|d| d.read_lock()).collect();
        for (c, g) in cells.iter().zip(&guards) {
            c.load(g).unwrap().check();
        }
        // A grace period of one domain does not wait for sections of others,
        // but this thread is inside all of them: try_synchronize refuses.
        assert!(!domains[0].try_synchronize());
    }
    for (d, c) in domains.iter().zip(&cells) {
        c.store(Val::new(&book));
        let v = Val::new(&book);
        d.call(move || drop(v));
    }
    drop(cells);
    drop(domains);
    book.assert_exactly_once("256 domains");
}

// ---------------------------------------------------------------------
// G. Threads exiting inside sections or with queued work; guards kept in
// thread-locals; reads in thread-local destructors.

#[test]
fn threads_exiting_with_queued_work_and_tls_guards_lose_nothing_and_hang_nothing() {
    let _w = watchdog("exiting_threads", 120);
    let rcu = Rcu::new(Config::new()).unwrap();
    let book = Book::new();
    let cell = Arc::new(RcuCell::new_in(&rcu, Some(Val::new(&book))));
    struct TlsReader(Option<(Rcu, Arc<RcuCell<Val>>, Arc<Book>)>);
    impl Drop for TlsReader {
        fn drop(&mut self) {
            if let Some((rcu, cell, book)) = self.0.take() {
                let g = rcu.read_lock();
                if let Some(v) = cell.load(&g) {
                    v.check();
                }
                rcu.defer_drop(Val::new(&book));
                drop(g);
                cell.store(Val::new(&book));
            }
        }
    }
    thread_local! {
        static R: std::cell::RefCell<TlsReader> = const { std::cell::RefCell::new(TlsReader(None)) };
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (cell, book, stop) = (cell.clone(), book.clone(), stop.clone());
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                cell.store(Val::new(&book));
                thread::yield_now();
            }
        })
    };
    let _stop = StopOnDrop(&stop);
    let mut hs = vec![];
    for t in 0..400u32 {
        let (rcu, cell, book) = (rcu.clone(), cell.clone(), book.clone());
        hs.push(thread::spawn(move || {
            R.with(|r| r.borrow_mut().0 = Some((rcu.clone(), cell.clone(), book.clone())));
            for _ in 0..(t % 5) {
                rcu.defer_drop(Val::new(&book));
                let v = Val::new(&book);
                rcu.call(move || v.check());
            }
            let g = rcu.read_lock();
            let v = cell.load(&g).unwrap();
            v.check();
            thread::yield_now();
            v.check();
            if t % 4 == 0 {
                // Exit with the guard still held: leaked by forget is for
                // good; dropping it at unwind ends the section.
                drop(g);
            } else {
                drop(g);
            }
        }));
        if hs.len() > 8 {
            hs.remove(0).join().unwrap();
        }
    }
    for h in hs {
        h.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    rcu.synchronize();
    drop(Arc::try_unwrap(cell).ok().unwrap());
    rcu.barrier();
    book.assert_exactly_once("exiting threads");
}

#[test]
fn a_thread_panicking_inside_a_section_with_queued_work_holds_nothing_up() {
    let _w = watchdog("panic_in_section", 60);
    let rcu = Rcu::new(Config::new()).unwrap();
    let book = Book::new();
    for _ in 0..50 {
        let (r, b) = (rcu.clone(), book.clone());
        let res = thread::spawn(move || {
            let _g = r.read_lock();
            let _g2 = r.read_lock();
            r.defer_drop(Val::new(&b));
            let v = Val::new(&b);
            r.call(move || drop(v));
            panic!("reader dies inside its section");
        })
        .join();
        assert!(res.is_err());
    }
    rcu.synchronize();
    rcu.barrier();
    book.assert_exactly_once("panicking readers");
}

// ---------------------------------------------------------------------
// H. Polled cookies.

#[test]
fn polled_cookies_complete_without_anyone_waiting_and_agree_with_synchronize() {
    let _w = watchdog("cookies", 60);
    for (name, rcu) in flavors() {
        // start_poll alone finishes.
        for _ in 0..50 {
            let c = rcu.start_poll();
            let t = Instant::now();
            while !rcu.poll(&c) {
                assert!(
                    t.elapsed() < Duration::from_secs(10),
                    "{name}: start_poll never completed"
                );
                thread::sleep(Duration::from_micros(100));
            }
        }
        // A cookie taken inside a section does not complete while it is held.
        let g = rcu.read_lock();
        let c = rcu.start_poll();
        let (r2, c2) = (rcu.clone(), c);
        let waiter = thread::spawn(move || {
            r2.cond_synchronize(c2);
            assert!(r2.poll(&c2));
        });
        thread::sleep(ms(50));
        assert!(
            !rcu.poll(&c),
            "{name}: a cookie completed under a section that began before it"
        );
        assert!(
            !waiter.is_finished(),
            "{name}: cond_synchronize returned under an older reader"
        );
        drop(g);
        waiter.join().unwrap();
        // get_state before synchronize is complete after.
        let c = rcu.get_state();
        rcu.synchronize();
        assert!(rcu.poll(&c));
        // Completed cookies stay completed.
        for _ in 0..100 {
            rcu.synchronize_expedited();
        }
        assert!(rcu.poll(&c));
    }
}

#[test]
fn a_cookie_of_a_dropped_domain_is_refused_by_a_new_one() {
    let _w = watchdog("stale_cookie", 30);
    let old = Rcu::new(Config::new()).unwrap();
    let c = old.get_state();
    drop(old);
    let new = Rcu::new(Config::new()).unwrap();
    let r = catch_unwind(AssertUnwindSafe(|| new.poll(&c)));
    let msg = r.expect_err("a stale cookie was accepted");
    let msg = msg.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("Cookie"), "{msg}");
}

// ---------------------------------------------------------------------
// I. Misuse inside a section: synchronize, barrier, store_sync, prepare_fork
// all refuse clearly; the domain keeps working after each.

fn panic_msg(r: std::thread::Result<()>) -> String {
    match r {
        Ok(()) => panic!("expected a panic"),
        Err(e) => e
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default(),
    }
}

#[test]
fn waits_inside_sections_refuse_naming_the_fix() {
    let _w = watchdog("waits_in_sections", 60);
    let rcu = Rcu::new(Config::new()).unwrap();
    let cell = RcuCell::new_in(&rcu, Some(Box::new(1u64)));
    type Misuse = Box<dyn Fn(&Rcu, &RcuCell<u64>)>;
    let misuses: Vec<(&str, Misuse)> = vec![
        (
            "synchronize",
            Box::new(|r: &Rcu, _: &RcuCell<u64>| r.synchronize()),
        ),
        (
            "synchronize_expedited",
            Box::new(|r: &Rcu, _: &RcuCell<u64>| r.synchronize_expedited()),
        ),
        ("barrier", Box::new(|r: &Rcu, _: &RcuCell<u64>| r.barrier())),
        (
            "store_sync",
            Box::new(|_: &Rcu, c: &RcuCell<u64>| c.store_sync(Box::new(2))),
        ),
        (
            "prepare_fork",
            Box::new(|r: &Rcu, _: &RcuCell<u64>| drop(r.prepare_fork())),
        ),
        (
            "into_box",
            Box::new(|_: &Rcu, c: &RcuCell<u64>| {
                drop(c.replace(Box::new(3)).map(|o| o.into_box()))
            }),
        ),
    ];
    for (name, f) in &misuses {
        // Plain guard, nested guard, raw section, and a guard in a closure.
        for how in 0..3 {
            let r = catch_unwind(AssertUnwindSafe(|| match how {
                0 => {
                    let _g = rcu.read_lock();
                    f(&rcu, &cell);
                }
                1 => {
                    let _g = rcu.read_lock();
                    let _g2 = rcu.read_lock();
                    f(&rcu, &cell);
                }
                _ => {
                    rcu.read_lock_raw();
                    let r = catch_unwind(AssertUnwindSafe(|| f(&rcu, &cell)));
                    assert!(rcu.read_unlock_raw());
                    if let Err(e) = r {
                        std::panic::resume_unwind(e);
                    }
                }
            }));
            let msg = panic_msg(r);
            assert!(msg.contains("rcu-reclaim"), "{name}/{how}: {msg}");
            assert!(
                !rcu.in_read_section(),
                "{name}/{how}: the section survived the unwind"
            );
        }
        // Still works.
        rcu.synchronize();
        rcu.barrier();
    }
    assert!(*cell.load(&rcu.read_lock()).unwrap() > 0);
}

// ---------------------------------------------------------------------
// J. Guards in scoped threads: a reference read under a guard used by a
// scoped thread while the guard lives.

#[test]
fn a_reference_shared_with_a_scoped_thread_stays_valid_while_the_guard_lives() {
    let _w = watchdog("scoped_share", 60);
    let rcu = Rcu::new(Config::new()).unwrap();
    let book = Book::new();
    let cell = RcuCell::new_in(&rcu, Some(Val::new(&book)));
    let stop = AtomicBool::new(false);
    thread::scope(|s| {
        let _stop = StopOnDrop(&stop);
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                cell.store(Val::new(&book));
            }
        });
        for _ in 0..200 {
            let g = rcu.read_lock();
            let v = cell.load(&g).unwrap();
            thread::scope(|s2| {
                s2.spawn(|| {
                    // Looks at the value while the writer replaces it and
                    // retires more after it: 100 looks, yielding between
                    // them so that the writer and the workers run. On a
                    // loaded machine each yield can give away whole time
                    // slices (100 took seconds, and 200 rounds outlived the
                    // watchdog), so a round may end sooner: after 20 ms
                    // of looks during which the writer made 8 more values.
                    let made = book.made.load(Ordering::SeqCst);
                    let start = Instant::now();
                    for look in 0.. {
                        v.check();
                        if look == 100
                            || (start.elapsed() >= ms(20)
                                && book.made.load(Ordering::SeqCst) >= made + 8)
                        {
                            break;
                        }
                        thread::yield_now();
                    }
                });
            });
            v.check();
            drop(g);
        }
    });
    drop(cell);
    rcu.barrier();
    book.assert_exactly_once("scoped");
}

// ---------------------------------------------------------------------
// K. Fork, with and without prepare_fork.

#[test]
fn fork_with_prepare_while_other_threads_read_and_retire() {
    let _w = watchdog("fork_prepared", 120);
    let rcu = Rcu::new(Config::new()).unwrap();
    let book = Book::new();
    let cell = Arc::new(RcuCell::new_in(&rcu, Some(Val::new(&book))));
    let stop = Arc::new(AtomicBool::new(false));
    let mut hs = vec![];
    for t in 0..2 {
        let (rcu, cell, book, stop) = (rcu.clone(), cell.clone(), book.clone(), stop.clone());
        hs.push(thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let g = rcu.read_lock();
                cell.load(&g).unwrap().check();
                if t == 0 {
                    rcu.defer_drop(Val::new(&book)); // retire inside a section
                    let v = Val::new(&book);
                    rcu.call(move || v.check());
                } else {
                    thread::sleep(Duration::from_micros(50)); // often in a section at the fork
                }
                drop(g);
                if t == 1 {
                    cell.store(Val::new(&book));
                }
            }
        }));
    }
    let _stop = StopOnDrop(&stop);
    let ran_in_child = Arc::new(AtomicUsize::new(0));
    for _ in 0..10 {
        thread::sleep(ms(20));
        let guard = rcu.prepare_fork();
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // A child that hangs prints where, before the parent's 20 s
            // run out (an AddressSanitizer run on two loaded cores saw
            // one hang once, without a trace).
            // SAFETY: as in `in_child`.
            unsafe {
                libc::signal(
                    libc::SIGALRM,
                    hung_child_backtrace as extern "C" fn(libc::c_int) as libc::sighandler_t,
                );
                libc::alarm(18);
            }
            guard.child();
            let code = catch_unwind(AssertUnwindSafe(|| {
                let r2 = ran_in_child.clone();
                rcu.call(move || {
                    r2.fetch_add(1, Ordering::SeqCst);
                });
                {
                    let g = rcu.read_lock();
                    cell.load(&g).unwrap().check();
                }
                cell.store(Val::new(&book));
                rcu.synchronize();
                rcu.barrier();
                if ran_in_child.load(Ordering::SeqCst) != 1 {
                    return 3;
                }
                0
            }))
            .unwrap_or(2);
            unsafe { libc::_exit(code) };
        }
        guard.parent();
        assert!(pid > 0);
        let mut status = 0;
        let t = Instant::now();
        loop {
            let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
            if r == pid {
                break;
            }
            if t.elapsed() > Duration::from_secs(20) {
                eprintln!("HANG: forked child {pid} did not exit in 20s");
                thread::sleep(Duration::from_secs(
                    if std::env::var_os("AUDIT_HANG_PAUSE").is_some() {
                        300
                    } else {
                        0
                    },
                ));
                unsafe { libc::kill(pid, libc::SIGKILL) };
                panic!("forked child hung");
            }
            thread::sleep(ms(10));
        }
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "child status {status:#x}"
        );
    }
    stop.store(true, Ordering::Relaxed);
    for h in hs {
        h.join().unwrap();
    }
    drop(Arc::try_unwrap(cell).ok().unwrap());
    rcu.barrier();
    book.assert_exactly_once("fork parent");
}

// ---------------------------------------------------------------------
// L. A domain's drop while other threads still call barrier/synchronize
// through clones, and pressure guards outliving the domain.

#[test]
fn pressure_guards_and_cookies_outliving_their_domain() {
    let _w = watchdog("outliving", 30);
    let rcu = Rcu::new(Config::new()).unwrap();
    let p = rcu.pressure_start_all();
    let p2 = rcu.pressure_start(0);
    let c = rcu.start_poll();
    rcu.call(|| {});
    drop(rcu);
    drop(p);
    p2.end();
    let _ = c;
}

#[test]
fn concurrent_barriers_synchronizes_and_drops_of_clones() {
    let _w = watchdog("concurrent_clones", 90);
    let book = Book::new();
    for _ in 0..30 {
        let rcu = Rcu::new(Config::new()).unwrap();
        let mut hs = vec![];
        for t in 0..4 {
            let (r, b) = (rcu.clone(), book.clone());
            hs.push(thread::spawn(move || {
                for i in 0..50 {
                    let v = Val::new(&b);
                    r.call(move || v.check());
                    r.defer_drop(Val::new(&b));
                    match (t + i) % 4 {
                        0 => r.barrier(),
                        1 => r.synchronize(),
                        2 => r.synchronize_expedited(),
                        _ => {
                            r.collect();
                        }
                    }
                }
                drop(r);
            }));
        }
        drop(rcu); // maybe not the last handle
        for h in hs {
            h.join().unwrap();
        }
    }
    book.assert_exactly_once("clones");
}

// ---------------------------------------------------------------------
// M. Reentrancy: deferred drops that retire into, synchronize on, or drop
// other domains, and QSBR registrations made inside callbacks.

#[test]
fn deferred_drops_that_use_other_domains() {
    let _w = watchdog("drops_use_other_domains", 60);
    let a = Rcu::new(Config::new()).unwrap();
    let b = Rcu::new(Config::new()).unwrap();
    let book = Book::new();
    struct Cross {
        other: Rcu,
        book: Arc<Book>,
        depth: u32,
    }
    reclaim_size!(Cross {});
    impl Drop for Cross {
        fn drop(&mut self) {
            // In a callback of one domain: wait on another, retire into it.
            self.other.synchronize();
            self.other.defer_drop(Val::new(&self.book));
            if self.depth > 0 {
                let me = Rcu::new(Config::new()).unwrap();
                me.defer_drop(Box::new(Cross {
                    other: self.other.clone(),
                    book: self.book.clone(),
                    depth: self.depth - 1,
                }));
                // `me` dropped here, inside a callback: its drain moves to a thread.
            }
        }
    }
    for i in 0..40 {
        let (x, y) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
        x.defer_drop(Box::new(Cross {
            other: y.clone(),
            book: book.clone(),
            depth: i % 3,
        }));
    }
    let start = Instant::now();
    while book.dropped_count() < book.made.load(Ordering::SeqCst) || a.pending() + b.pending() > 0 {
        a.barrier();
        b.barrier();
        assert!(start.elapsed() < Duration::from_secs(30));
        thread::sleep(ms(5));
    }
    drop(a);
    drop(b);
    thread::sleep(ms(200));
    book.assert_exactly_once("cross-domain drops");
}

static GLOBAL_BOOK: OnceLock<Arc<Book>> = OnceLock::new();

#[test]
fn the_global_domain_under_mixed_use() {
    let _w = watchdog("global", 60);
    let book = GLOBAL_BOOK.get_or_init(Book::new).clone();
    let cell = Arc::new(RcuCell::new(*Val::new(&book)));
    let stop = Arc::new(AtomicBool::new(false));
    let mut hs = vec![];
    for t in 0..3u64 {
        let (cell, book, stop) = (cell.clone(), book.clone(), stop.clone());
        hs.push(thread::spawn(move || {
            let rcu = Rcu::global();
            let mut i = t;
            while !stop.load(Ordering::Relaxed) {
                if t == 0 {
                    let g = rcu.read_lock();
                    if let Some(v) = cell.load(&g) {
                        v.check();
                    }
                } else {
                    writer_step(&cell, rcu, &book, i);
                    i += 1;
                }
            }
        }));
    }
    thread::sleep(ms(1000));
    stop.store(true, Ordering::Relaxed);
    for h in hs {
        h.join().unwrap();
    }
    drop(Arc::try_unwrap(cell).ok().unwrap());
    Rcu::global().barrier();
    book.assert_exactly_once("global");
}

// ---------------------------------------------------------------------
// N. Registration calls inside sections; guards of unregistered threads on
// a QSBR domain.

#[test]
fn unregister_thread_inside_a_section_refuses_and_the_section_still_protects() {
    let _w = watchdog("unregister_in_section", 30);
    let rcu = Rcu::new(Config::new()).unwrap();
    let g = rcu.read_lock();
    assert!(
        !rcu.unregister_thread(),
        "unregister_thread inside a section did something"
    );
    assert!(rcu.in_read_section());
    let (r2, done) = (rcu.clone(), Arc::new(AtomicBool::new(false)));
    let d2 = done.clone();
    let h = thread::spawn(move || {
        r2.synchronize();
        d2.store(true, Ordering::SeqCst);
    });
    thread::sleep(ms(100));
    assert!(
        !done.load(Ordering::SeqCst),
        "synchronize did not wait for a section after unregister_thread"
    );
    drop(g);
    h.join().unwrap();
    // raw section too
    rcu.read_lock_raw();
    assert!(!rcu.unregister_thread());
    assert!(rcu.read_unlock_raw());
    assert!(rcu.unregister_thread());
}

#[test]
fn plain_guards_of_unregistered_threads_protect_on_a_qsbr_domain() {
    let _w = watchdog("qsbr_plain_guard", 60);
    let rcu = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
    let book = Book::new();
    let cell = Arc::new(RcuCell::new_in(&rcu, Some(Val::new(&book))));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (cell, book, stop, rcu) = (cell.clone(), book.clone(), stop.clone(), rcu.clone());
        thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                writer_step(&cell, &rcu, &book, i);
                i += 1;
            }
        })
    };
    let _stop = StopOnDrop(&stop);
    for _ in 0..2000 {
        let g = rcu.read_lock();
        if let Some(v) = cell.load(&g) {
            v.check();
            thread::yield_now();
            v.check();
        }
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    drop(Arc::try_unwrap(cell).ok().unwrap());
    rcu.barrier();
    book.assert_exactly_once("qsbr plain guards");
}

// ---------------------------------------------------------------------
// O. Fork misuse: a child that drops its ForkGuard without child(); a
// child that forks again; a child that panics before child().

/// Forks; in the child runs `f` under a 15 s alarm and exits with its
/// code (a panic: 101). Returns the child's wait status.
fn in_child(
    rcu: &Rcu,
    prepared: bool,
    f: impl FnOnce(Option<rcu_reclaim::fork::ForkGuard<'_>>) -> i32,
) -> i32 {
    let guard = prepared.then(|| rcu.prepare_fork());
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        // A child that hangs prints where, when its alarm goes off.
        // SAFETY: installs a handler for the child's own alarm (the
        // library's threads block every signal, so it runs on this one);
        // `alarm` has no memory effects.
        unsafe {
            libc::signal(
                libc::SIGALRM,
                hung_child_backtrace as extern "C" fn(libc::c_int) as libc::sighandler_t,
            );
            libc::alarm(20);
        }
        let code = catch_unwind(AssertUnwindSafe(|| f(guard))).unwrap_or(101);
        unsafe { libc::_exit(code) };
    }
    if let Some(g) = guard {
        g.parent();
    }
    let mut status = 0;
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    status
}

/// A forked child's `SIGALRM` handler: writes the hung thread's backtrace
/// to stderr (past the test harness's capture, which the child's exit
/// would lose) and exits as the alarm would have ended it. Not
/// async-signal-safe (it allocates); the child is hung anyway, and a
/// failure here still fails the test.
extern "C" fn hung_child_backtrace(_: libc::c_int) {
    let trace = format!(
        "forked child hung; its backtrace:\n{}\n",
        std::backtrace::Backtrace::force_capture()
    );
    // SAFETY: writes `trace`'s bytes to fd 2, then ends the process.
    unsafe {
        libc::write(2, trace.as_ptr().cast(), trace.len());
        libc::signal(libc::SIGALRM, libc::SIG_DFL);
        libc::raise(libc::SIGALRM);
    }
}

fn describe(status: i32) -> String {
    if libc::WIFEXITED(status) {
        format!("exit {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        let s = libc::WTERMSIG(status);
        format!(
            "signal {s}{}",
            if s == libc::SIGALRM {
                " (hung: alarm)"
            } else {
                ""
            }
        )
    } else {
        format!("status {status:#x}")
    }
}

/// Finding: `ForkGuard::parent()` called in the child (instead of
/// `child()`) was accepted silently, leaving a domain whose background
/// threads do not exist: a `start_poll` cookie never completed and queued
/// callbacks ran only at a barrier. `child()` called in the parent panics;
/// `parent()` in the child now does too, naming `child()`.
#[test]
fn fork_guard_parent_called_in_the_child_panics_naming_child() {
    let _w = watchdog("parent_in_child", 60);
    let rcu = Rcu::new(Config::new()).unwrap();
    rcu.call(|| {});
    rcu.synchronize();
    let status = in_child(&rcu, true, |g| {
        let r = catch_unwind(AssertUnwindSafe(|| g.unwrap().parent()));
        match r {
            Ok(()) => 3, // accepted silently
            Err(e) => {
                let m = e.downcast_ref::<String>().cloned().unwrap_or_default();
                if m.contains("child()") {
                    0
                } else {
                    4
                }
            }
        }
    });
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "parent() in the child was not refused naming child(): {}",
        describe(status)
    );
    // The parent's domain still works.
    rcu.barrier();
}

/// A child that drops its guard without `child()` (warned) still never
/// hangs in `synchronize` or `barrier`.
#[test]
fn a_child_that_drops_its_fork_guard_without_child_does_not_hang() {
    let _w = watchdog("fork_guard_dropped_in_child", 120);
    let rcu = Rcu::new(Config::new()).unwrap();
    rcu.call(|| {});
    rcu.synchronize();
    for what in 0..2 {
        let status = in_child(&rcu, true, |g| {
            drop(g); // forgot child(): warned
            let ran = Arc::new(AtomicBool::new(false));
            let r2 = ran.clone();
            rcu.call(move || r2.store(true, Ordering::SeqCst));
            if what == 0 {
                rcu.synchronize();
                0
            } else {
                rcu.barrier();
                if ran.load(Ordering::SeqCst) {
                    0
                } else {
                    3
                }
            }
        });
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "case {what}: {}",
            describe(status)
        );
    }
}

#[test]
fn a_child_may_fork_again_and_each_generation_runs_its_work() {
    let _w = watchdog("nested_fork", 120);
    let rcu = Rcu::new(Config::new()).unwrap();
    let book = Book::new();
    let cell = RcuCell::new_in(&rcu, Some(Val::new(&book)));
    let stop = Arc::new(AtomicBool::new(false));
    let bg = {
        let (rcu, stop, book) = (rcu.clone(), stop.clone(), book.clone());
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                rcu.defer_drop(Val::new(&book));
                let _g = rcu.read_lock();
                thread::sleep(Duration::from_micros(100));
            }
        })
    };
    let _stop = StopOnDrop(&stop);
    let status = in_child(&rcu, true, |g| {
        g.unwrap().child();
        cell.store(Val::new(&book));
        rcu.barrier();
        // Grandchild.
        let status = in_child(&rcu, true, |g| {
            g.unwrap().child();
            cell.store(Val::new(&book));
            let n = Arc::new(AtomicUsize::new(0));
            for _ in 0..100 {
                let n = n.clone();
                rcu.call(move || {
                    n.fetch_add(1, Ordering::SeqCst);
                });
            }
            rcu.barrier();
            if n.load(Ordering::SeqCst) == 100 {
                0
            } else {
                4
            }
        });
        if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
            0
        } else {
            eprintln!("grandchild: {}", describe(status));
            5
        }
    });
    stop.store(true, Ordering::Relaxed);
    bg.join().unwrap();
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child: {}",
        describe(status)
    );
    drop(cell);
    rcu.barrier();
    book.assert_exactly_once("nested fork parent");
}

#[test]
fn forking_with_the_global_domain_prepared_while_private_domains_are_busy() {
    let _w = watchdog("fork_global_private_busy", 120);
    let private = Rcu::new(Config::new()).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let bg = {
        let (p, stop) = (private.clone(), stop.clone());
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                p.call(|| {});
                let _g = p.read_lock();
                let _g2 = Rcu::global().read_lock();
                Rcu::global().defer_drop(Box::new([0u8; 64]));
            }
        })
    };
    let _stop = StopOnDrop(&stop);
    for _ in 0..5 {
        let status = in_child(Rcu::global(), true, |g| {
            g.unwrap().child();
            let n = Arc::new(AtomicUsize::new(0));
            let n2 = n.clone();
            Rcu::global().call(move || {
                n2.fetch_add(1, Ordering::SeqCst);
            });
            Rcu::global().barrier();
            if n.load(Ordering::SeqCst) != 1 {
                return 4;
            }
            // The private domain was not prepared. Its non-blocking calls
            // must not hang: they return, or (`stats`, on a lock a thread
            // of the parent held at the fork) panic within 2 s naming
            // prepare_fork. (Its synchronize waits for good on the reader
            // of the parent caught in a section, with a stall report naming
            // prepare_fork after 1 s: the library's documented choice,
            // tests/fork.rs, a_child_forked_without_prepare_fork_is_told_...)
            let r = catch_unwind(AssertUnwindSafe(|| {
                private.call(|| {});
                let c = private.start_poll();
                let _ = private.poll(&c);
                let _ = private.pending();
                let _ = private.stats();
            }));
            match r {
                Ok(()) => 0,
                Err(e) => {
                    let m = e
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    if m.contains("prepare_fork") {
                        0
                    } else {
                        eprintln!("unclear panic in the unprepared domain: {m}");
                        5
                    }
                }
            }
        });
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "child: {}",
            describe(status)
        );
    }
    stop.store(true, Ordering::Relaxed);
    bg.join().unwrap();
}

// ---------------------------------------------------------------------
// P. Panicking destructors at a domain's drop and in store_sync.

struct Grenade {
    id: u64,
    book: Arc<Book>,
}
reclaim_size!(Grenade {});
impl Drop for Grenade {
    fn drop(&mut self) {
        self.book.dropped(self.id);
        if self.id % 2 == 0 {
            panic!("grenade {} went off", self.id);
        }
    }
}

fn grenade(book: &Arc<Book>) -> Box<Grenade> {
    let id = book.made.fetch_add(1, Ordering::SeqCst) as u64;
    Box::new(Grenade {
        id,
        book: book.clone(),
    })
}

fn quiet_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !info.to_string().contains("went off") {
                prev(info);
            }
        }));
    });
}

#[test]
fn dropping_a_domain_whose_deferred_drops_panic_drops_all_and_does_not_panic() {
    let _w = watchdog("domain_drop_panicking", 60);
    quiet_panics();
    let book = Book::new();
    for on_demand in [false, true] {
        let cfg = if on_demand {
            Config::new().on_demand()
        } else {
            Config::new()
        };
        let rcu = Rcu::new(cfg).unwrap();
        for i in 0..500 {
            let g = grenade(&book);
            if i % 2 == 0 {
                rcu.defer_drop(g);
            } else {
                rcu.call(move || drop(g));
            }
        }
        let r = catch_unwind(AssertUnwindSafe(|| drop(rcu)));
        assert!(r.is_ok(), "dropping the domain panicked");
    }
    book.assert_exactly_once("grenades at the domain's drop");
}

#[test]
fn store_sync_whose_old_value_panics_leaves_the_cell_consistent() {
    let _w = watchdog("store_sync_panicking", 60);
    quiet_panics();
    let book = Book::new();
    let rcu = Rcu::new(Config::new()).unwrap();
    let cell = RcuCell::new_in(&rcu, Some(grenade(&book)));
    let mut panicked = 0;
    for _ in 0..50 {
        let new = grenade(&book);
        let new_id = new.id;
        if catch_unwind(AssertUnwindSafe(|| cell.store_sync(new))).is_err() {
            panicked += 1;
        }
        assert_eq!(
            cell.load(&rcu.read_lock()).map(|g| g.id),
            Some(new_id),
            "the new value is not published"
        );
        let r = catch_unwind(AssertUnwindSafe(|| {
            if let Some(old) = cell.replace(grenade(&book)) {
                drop(old.into_box());
            }
        }));
        if r.is_err() {
            panicked += 1;
        }
    }
    let _ = catch_unwind(AssertUnwindSafe(|| drop(cell)));
    rcu.barrier();
    assert!(panicked > 0);
    book.assert_exactly_once("store_sync grenades");
}

/// Finding: a child forked WITHOUT `prepare_fork` while a parent thread
/// held a shard's queue-state lock (inside `call`, `defer_drop`, a flush
/// or a barrier) found that lock held for ever. Waits on the grace-period
/// lock and on a shard's run lock panic there after 2 s naming
/// `prepare_fork` (tests/fork.rs, tests/fork_unprepared.rs); waits on the
/// queue-state lock (`barrier`, `stats`, ...) hung silently. Observed:
/// about 5 of 40 children hung, in `barrier` -> `flush_locals` ->
/// `LocalBuffer::wait_for_handoff` -> `lock_buffer` (a parent thread's
/// buffer lock), in `LocalBuffer::with_owner_out`'s `spin_until(!busy)`
/// (a parent thread caught on its retire fast path), and in `stats()` ->
/// `shard_snapshot` -> a shard's state lock (and `fast_mode`'s clock
/// lock). Fixed: those calls give up on every lock and every other
/// thread's retire after 2 s there, naming `prepare_fork`
/// (`sync::ForkedWaits`). Later (thirty-second session): the child's own
/// `call_sized`, `call_hurry` and a retire's page hand-off blocked on such
/// a lock for good (14 children of 30 hung in `Callbacks::enqueue`); they
/// give up the same way now. `UNPREPARED_FORKS` sets the forks (default
/// 12; each stuck child costs the test 2 s).
#[test]
fn an_unprepared_child_never_hangs_silently_on_a_shard_lock_held_at_the_fork() {
    let _w = watchdog("unprepared_shard_lock", 300);
    let rcu = Rcu::new(Config::new()).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let bgs: Vec<_> = (0..2)
        .map(|_| {
            let (r, stop) = (rcu.clone(), stop.clone());
            thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    r.call(|| {});
                    r.defer_drop(Box::new([0u8; 256]));
                    r.call_sized(|| {}, 4096);
                    r.call_hurry(|| {});
                    i += 1;
                    if i % 512 == 0 {
                        r.barrier();
                        let _ = r.stats();
                        let _ = r.collect();
                    }
                }
            })
        })
        .collect();
    let _stop = StopOnDrop(&stop);
    let forks: usize = std::env::var("UNPREPARED_FORKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    let mut outcomes = HashMap::<String, usize>::new();
    for _ in 0..forks {
        thread::sleep(ms(5));
        let status = in_child(&rcu, false, |_| {
            let r = catch_unwind(AssertUnwindSafe(|| {
                // Every write-side call, enough of them to hand pages off.
                for i in 0..8_000u64 {
                    match i % 4 {
                        0 => rcu.call(|| {}),
                        1 => rcu.call_sized(|| {}, 4096),
                        2 => rcu.call_hurry(|| {}),
                        _ => rcu.defer_drop(Box::new([0u8; 256])),
                    }
                    if i % 2_000 == 0 {
                        let _ = rcu.collect();
                    }
                }
                let _ = rcu.stats();
                rcu.barrier();
            }));
            match r {
                Ok(()) => 0,
                Err(e) => {
                    let m = e.downcast_ref::<String>().cloned().unwrap_or_default();
                    if m.contains("prepare_fork") {
                        0
                    } else {
                        eprintln!("unclear panic in the unprepared child: {m}");
                        6
                    }
                }
            }
        });
        *outcomes.entry(describe(status)).or_default() += 1;
    }
    stop.store(true, Ordering::Relaxed);
    for b in bgs {
        b.join().unwrap();
    }
    eprintln!("unprepared children: {outcomes:?}");
    assert_eq!(
        outcomes.get("exit 0"),
        Some(&forks),
        "unprepared children: {outcomes:?}"
    );
}

// ---------------------------------------------------------------------
// Q. Reclaim hooks and collect inside the retiring reader's own section;
// retires under a pressure signal inside sections.

#[test]
fn reclaim_hooks_inside_a_section_never_free_what_it_reads() {
    let _w = watchdog("hooks_in_section", 120);
    for (name, rcu) in flavors() {
        let book = Book::new();
        let cell = RcuCell::new_in(&rcu, Some(Val::new(&book)));
        let mask = rcu_reclaim::pressure::NodeMask::all();
        for i in 0..300u32 {
            let g = rcu.read_lock();
            let v = cell.load(&g).unwrap();
            v.check();
            // Retire what this section reads, then drive every hook.
            cell.store(Val::new(&book));
            for _ in 0..20 {
                rcu.defer_drop(Val::new(&book));
            }
            let p = (i % 3 == 0).then(|| rcu.pressure_start_all());
            let _ = rcu.run_callbacks(&mask, (i % 13) as u8);
            let _ = rcu.run_callbacks_for(&mask, 0, usize::MAX);
            rcu.collect();
            let _ = rcu.start_poll();
            drop(p);
            v.check();
            drop(g);
        }
        drop(cell);
        rcu.barrier();
        book.assert_exactly_once(name);
    }
}

#[test]
fn retires_inside_sections_under_pressure_finish_and_protect() {
    let _w = watchdog("pressure_in_sections", 180);
    let rcu = Rcu::new(Config::new().pressure_throttle_bytes(64 << 10)).unwrap();
    let book = Book::new();
    let cell = Arc::new(RcuCell::new_in(&rcu, Some(Val::new(&book))));
    let _p = rcu.pressure_start_all();
    let stop = Arc::new(AtomicBool::new(false));
    let mut hs = vec![];
    for t in 0..3u64 {
        let (rcu, cell, book, stop) = (rcu.clone(), cell.clone(), book.clone(), stop.clone());
        hs.push(thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let g = rcu.read_lock();
                if let Some(v) = cell.load(&g) {
                    v.check();
                    if t != 0 {
                        // Big claimed sizes: the throttle engages.
                        rcu.defer_drop_sized(Val::new(&book), 256 << 10);
                        cell.store_weighed(Val::new(&book), |_| 256 << 10);
                    }
                    v.check();
                }
                drop(g); // pays an owed throttle wait here
                n += 1;
            }
            n
        }));
    }
    thread::sleep(ms(2000));
    stop.store(true, Ordering::Relaxed);
    let counts: Vec<u64> = hs.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(
        counts.iter().all(|&n| n > 10),
        "a thread made almost no progress: {counts:?}"
    );
    drop(Arc::try_unwrap(cell).ok().unwrap());
    rcu.barrier();
    book.assert_exactly_once("pressure in sections");
    eprintln!("pressure_throttles: {}", rcu.stats().pressure_throttles);
}

#[test]
fn init_global_after_use_is_refused_clearly() {
    let _w = watchdog("init_global", 30);
    let _ = Rcu::global().read_lock();
    match Rcu::init_global(Config::new()) {
        Ok(_) => panic!("init_global after the global domain was used succeeded"),
        Err(e) => {
            let s = e.to_string();
            assert!(!s.is_empty(), "empty error");
            eprintln!("init_global after use: {s}");
        }
    }
}

#[test]
fn fork_of_a_qsbr_domain_with_online_threads() {
    let _w = watchdog("fork_qsbr", 120);
    let rcu = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
    let book = Book::new();
    let cell = Arc::new(RcuCell::new_in(&rcu, Some(Val::new(&book))));
    let stop = Arc::new(AtomicBool::new(false));
    let bg = {
        let (rcu, cell, stop, book) = (rcu.clone(), cell.clone(), stop.clone(), book.clone());
        thread::spawn(move || {
            let mut me = rcu.register_qsbr_thread();
            while !stop.load(Ordering::Relaxed) {
                if let Some(v) = cell.load(&me.read_lock()) {
                    v.check();
                }
                rcu.defer_drop(Val::new(&book));
                thread::sleep(Duration::from_micros(50)); // online, not reporting
                me.quiescent_state();
            }
        })
    };
    let _stop = StopOnDrop(&stop);
    // The forking thread is online too (offline while forking is not
    // required by the API: prepare_fork refuses only sections).
    let mut me = rcu.register_qsbr_thread();
    for _ in 0..5 {
        me.quiescent_state();
        let status = me.offline_while(|| {
            in_child(&rcu, true, |g| {
                g.unwrap().child();
                cell.store(Val::new(&book));
                rcu.synchronize();
                rcu.barrier();
                0
            })
        });
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "child: {}",
            describe(status)
        );
    }
    drop(me);
    stop.store(true, Ordering::Relaxed);
    bg.join().unwrap();
    drop(Arc::try_unwrap(cell).ok().unwrap());
    rcu.barrier();
    book.assert_exactly_once("qsbr fork parent");
}

#[test]
fn waiting_writes_inside_callbacks_and_deferred_drops_complete() {
    let _w = watchdog("waits_in_callbacks", 120);
    for (name, rcu) in flavors() {
        let book = Book::new();
        let cell = Arc::new(RcuCell::new_in(&rcu, Some(Val::new(&book))));
        let done = Arc::new(AtomicUsize::new(0));
        for i in 0..60 {
            let (c, b, d, r) = (cell.clone(), book.clone(), done.clone(), rcu.clone());
            let f = move || {
                match i % 4 {
                    0 => c.store_sync(Val::new(&b)),
                    1 => drop(c.replace(Val::new(&b))), // waits for a grace period
                    2 => {
                        if let Some(o) = c.replace(Val::new(&b)) {
                            o.into_box().check();
                        }
                    }
                    _ => {
                        c.store(Val::new(&b));
                        r.synchronize_expedited();
                    }
                }
                d.fetch_add(1, Ordering::SeqCst);
            };
            if i % 2 == 0 {
                rcu.call(f);
            } else {
                rcu.call_hurry(f);
            }
        }
        // An on-demand domain runs plain `call`s only when asked (a
        // barrier): by design. Its `call_hurry`s run on their own.
        let target = if name.contains("on-demand") { 30 } else { 60 };
        let start = Instant::now();
        while done.load(Ordering::SeqCst) < target {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "{name}: callbacks that wait did not finish: {} of {target} ran",
                done.load(Ordering::SeqCst)
            );
            let g = rcu.read_lock();
            if let Some(v) = cell.load(&g) {
                v.check();
            }
            drop(g);
            thread::sleep(ms(1));
        }
        rcu.barrier();
        assert_eq!(done.load(Ordering::SeqCst), 60, "{name}");
        drop(Arc::try_unwrap(cell).ok().unwrap());
        rcu.barrier();
        book.assert_exactly_once(name);
    }
}
