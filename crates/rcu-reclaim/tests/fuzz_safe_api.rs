//! A randomized, seed-reproducible soundness fuzzer over the safe public
//! API: several threads each run a random program (drawn from a seeded
//! generator) of reads, writes, retirements, callbacks, grace-period waits,
//! barriers, pressure signals and reclaim, over domains of every flavor
//! (QSBR, mb, memb and the global one), cells, maps and caches (one of
//! them shrunk by a memory budget's reclaimer).
//!
//! Every value carries a magic word, a checksum and a heap payload that its
//! `Drop` overwrites (poison) before freeing, and counts its drops: a reader
//! that sees a freed value fails with the seed, and at the end (after
//! `barrier()` on every domain) each value must have been dropped exactly
//! once (a leak or a double drop fails, with the seed).
//!
//! Threads start and exit mid-run (some with garbage pending, some while
//! registered as QSBR readers, some with a read-side section still open in
//! a thread-local at exit); readers hold references across `yield_now`,
//! spins and short sleeps, nested and across domains; another thread flaps
//! pressure mode and runs reclaim; another waits for grace periods and
//! barriers. Waits follow one order of domains (a thread inside a section of
//! domain `i` waits only for domains above `i`), so that no run deadlocks by
//! the fuzzer's own fault.
//!
//! The short variant runs in `cargo test` (a few seconds). The long one:
//!
//! ```sh
//! RCU_FUZZ_SECS=600 cargo test --release -p rcu-reclaim --test fuzz_safe_api -- --ignored --nocapture
//! ```
//!
//! More threads than cores find more (`RCU_FUZZ_THREADS=8`; the deadlock
//! that `tests/callback_fallback_wait.rs` pins down showed within a few
//! hundred seeds that way, under AddressSanitizer within 130).
//!
//! `RCU_FUZZ_HANG_DUMP=<dir>` writes every thread's stack (gdb) there
//! when a seed hangs. `RCU_FUZZ_SEED=<n>` replays one seed (the seed is printed on a failure),
//! `RCU_FUZZ_SEED0=<n>` starts the sweep elsewhere, `RCU_FUZZ_THREADS`,
//! `RCU_FUZZ_OPS` and `RCU_FUZZ_WAVES` size a run; `RCU_FUZZ_PANICS=1` (the
//! long variant's default) makes one destructor in 64 that RCU runs panic. `RCU_FUZZ_MUTANT=1` checks
//! the fuzzer itself: it then frees unlinked values without waiting for a
//! grace period, and a sweep must fail (a reader sees poison).

mod common;
use common::StopOnDrop;

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rcu_reclaim::pages::without_page_allocation;
use rcu_reclaim::pressure::NodeMask;
use rcu_reclaim::reclaim::{MemoryBudget, Reclaimer};
use rcu_reclaim::sources::{Level, SyntheticSource};
use rcu_reclaim::topology::Topology;
use rcu_reclaim::{
    Config, Flavor, QsbrThread, Rcu, RcuCache, RcuCell, RcuHashMap, ReadGuard, ReadSection,
    ReclaimSize, Retired,
};

const ALIVE: u64 = 0xA11C_E0A1_1CE0_A11C;
const POISON: u64 = 0xDEAD_DEAD_DEAD_DEAD;
const SALT: u64 = 0x9E37_79B9_7F4A_7C15;

/// xorshift64*.
#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        let mut r = Rng(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1);
        r.next();
        r
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }
    fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}

/// One run's bookkeeping: drop counts by id, live bytes, errors.
struct Ctx {
    seed: u64,
    next_id: AtomicUsize,
    drops: Vec<AtomicU8>,
    live_bytes: AtomicUsize,
    errors: Mutex<Vec<String>>,
    failed: AtomicBool,
    /// See `Plan::panics`.
    panicky: bool,
    /// See `Plan::mutant`.
    mutant: bool,
}

impl Ctx {
    fn error(&self, msg: String) {
        self.failed.store(true, Ordering::SeqCst);
        let mut e = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        if e.len() < 32 {
            e.push(msg);
        }
    }
}

/// A value that turns to poison when dropped. `A`: whether it declares
/// `DROPS_ANYWHERE` (freed on the retiring thread) or not (on a worker).
struct P<const A: bool> {
    magic: AtomicU64,
    id: u64,
    key: u64,
    sum: AtomicU64,
    payload: Box<[AtomicU64]>,
    ctx: Arc<Ctx>,
}

type PA = P<true>;
type PB = P<false>;

fn checksum(id: u64, key: u64) -> u64 {
    id.wrapping_mul(SALT) ^ key.rotate_left(17) ^ 0x5555
}

impl<const A: bool> P<A> {
    fn new(ctx: &Arc<Ctx>, key: u64, rng: &mut Rng) -> Box<P<A>> {
        let id = ctx.next_id.fetch_add(1, Ordering::Relaxed) as u64;
        assert!(
            (id as usize) < ctx.drops.len(),
            "seed {}: raise the id limit",
            ctx.seed
        );
        // Now and then too heavy for a cache's cap (refused, or retired at
        // once by get_or_insert_with while the caller reads it).
        let len = if rng.chance(20) {
            2048 + rng.below(4096) as usize
        } else {
            1 + rng.below(48) as usize
        };
        ctx.live_bytes.fetch_add(len * 8 + 64, Ordering::Relaxed);
        Box::new(P {
            magic: AtomicU64::new(ALIVE),
            id,
            key,
            sum: AtomicU64::new(checksum(id, key)),
            payload: (0..len as u64)
                .map(|i| AtomicU64::new(id ^ (i << 40)))
                .collect(),
            ctx: ctx.clone(),
        })
    }

    /// Panics (with the seed) if the value was dropped or is not `key`'s.
    fn check(&self, key: Option<u64>, what: &str) {
        let magic = self.magic.load(Ordering::SeqCst);
        let sum = self.sum.load(Ordering::SeqCst);
        // The payload only behind a good header (freed, its pointer may be
        // the allocator's).
        let ok_payload = magic == ALIVE
            && sum == checksum(self.id, self.key)
            && !self.payload.is_empty()
            && self
                .payload
                .iter()
                .enumerate()
                .all(|(i, w)| w.load(Ordering::Relaxed) == self.id ^ ((i as u64) << 40));
        if !ok_payload {
            // The seed from a static: a freed value's `ctx` is garbage.
            panic!(
                "seed {}: a reader saw a freed value ({what}): magic {magic:#x} sum {sum:#x}",
                SEED.load(Ordering::Relaxed)
            );
        }
        if let Some(k) = key {
            if self.key != k {
                let msg = format!(
                    "seed {}: {what}: value {} has key {}, looked up {k}",
                    self.ctx.seed, self.id, self.key
                );
                self.ctx.error(msg.clone());
                panic!("{msg}");
            }
        }
    }
}

impl<const A: bool> Drop for P<A> {
    fn drop(&mut self) {
        let magic = self.magic.swap(POISON, Ordering::SeqCst);
        self.sum.store(0, Ordering::SeqCst);
        for w in self.payload.iter() {
            w.store(POISON, Ordering::Relaxed);
        }
        let prev = self.ctx.drops[self.id as usize].fetch_add(1, Ordering::SeqCst);
        if magic != ALIVE || prev != 0 {
            self.ctx.error(format!(
                "seed {}: value {} dropped twice (magic {magic:#x}, earlier drops {prev})",
                self.ctx.seed, self.id
            ));
        }
        self.ctx
            .live_bytes
            .fetch_sub(self.payload.len() * 8 + 64, Ordering::Relaxed);
        // Now and then a destructor that RCU runs panics (after its value
        // is counted and poisoned): the rest of its batch must still run,
        // each once.
        if self.ctx.panicky
            && self.id.wrapping_mul(SALT) >> 58 == 0
            && Rcu::in_callback()
            && !thread::panicking()
        {
            COUNT[PANICS].fetch_add(1, Ordering::Relaxed);
            panic!("{INTENTIONAL} (value {})", self.id);
        }
    }
}

/// The message of the panics that `Ctx::panicky` destructors raise.
const INTENTIONAL: &str = "fuzz_safe_api: an intentional panic in a destructor run by RCU";

/// Silences the intentional panics (others still print).
fn quiet_intentional_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let next = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let msg = info
                .payload()
                .downcast_ref::<String>()
                .map(String::as_str)
                .unwrap_or("");
            if !msg.starts_with(INTENTIONAL) {
                next(info);
            }
        }));
    });
}

impl<const A: bool> ReclaimSize for P<A> {
    const DROPS_ANYWHERE: bool = A;
    fn reclaim_size(&self) -> usize {
        std::mem::size_of::<Self>() + self.payload.len() * 8
    }
}

/// Something a reader checks again later.
trait Check {
    fn recheck(&self);
}

impl<const A: bool> Check for P<A> {
    fn recheck(&self) {
        self.check(None, "held across a pause");
    }
}

/// Coverage counters over a sweep (what the programs reached).
static COUNT: [AtomicU64; 12] = [const { AtomicU64::new(0) }; 12];
const RECHECKS: usize = 0;
const FALLBACK: usize = 1;
const EXIT_HOLDERS: usize = 2;
const THROTTLES: usize = 3;
const FAST_MODE: usize = 4;
const TRY_BOX: usize = 5;
const FENCE_SWITCHES: usize = 6;
const FALLBACK_SYNCS: usize = 7;
const HELD_UP: usize = 8;
const PANICS: usize = 9;
const BUDGET_RECLAIMS: usize = 10;
const RECLAIM_PASSES: usize = 11;
const NAMES: [&str; 12] = [
    "rechecks of held values",
    "configs refused",
    "sections open at thread exit",
    "pressure throttles",
    "fast-mode entries",
    "try_into_box successes",
    "reader-fence switches",
    "no-page fallbacks",
    "held-up waits",
    "destructors that panicked",
    "budget reclaims (background + direct)",
    "reclaim passes (shrinkers run)",
];

/// The seed running (for messages that cannot trust a value's fields).
static SEED: AtomicU64 = AtomicU64::new(0);

const QSBR: usize = 0;
const GLOBAL: usize = 3;
const NDOM: usize = 4;
const CELLS: usize = 3;

/// One domain's structures.
struct Slot {
    rcu: Rcu,
    cells_a: Vec<RcuCell<PA>>,
    cells_b: Vec<RcuCell<PB>>,
    map: RcuHashMap<u64, PA>,
    map_b: RcuHashMap<u64, PB>,
    cache: Option<RcuCache<u64, PA>>,
}

struct World {
    ctx: Arc<Ctx>,
    slots: Vec<Slot>,
    budget: Arc<MemoryBudget>,
    reclaimers: Vec<Arc<Reclaimer>>,
    /// The key space of maps and caches: small (contention) or large
    /// (tables that grow and shrink while readers walk them).
    keys: u64,
    /// End the run by dropping the domains with work still queued (their
    /// `Drop` runs it) rather than after barriers.
    drop_without_barrier: bool,
    events: Mutex<mpsc::Sender<Level>>,
    stop: AtomicBool,
}

/// A domain's configuration, each knob at its default or drawn small (to
/// reach the paces, overload, throttle and fast-mode paths with little
/// garbage).
fn config(rng: &mut Rng, flavor: Flavor, on_demand: &mut bool) -> Config {
    let mut c = Config::new().flavor(flavor).on_callback_panic(|msg| {
        if !msg.contains(INTENTIONAL) {
            eprintln!("{msg}");
        }
    });
    if rng.chance(80) {
        // No background pace (the knobs below may bring some back).
        c = c.on_demand();
        *on_demand = true;
    }
    let maybe = |rng: &mut Rng| rng.chance(350);
    if maybe(rng) {
        c = c.lazy_delay(Duration::from_micros(1 + rng.below(5000)));
    }
    if maybe(rng) {
        c = c.retiring_thread_frees(true);
    }
    if maybe(rng) {
        c = c.producer_window(Duration::from_micros(rng.below(2000)));
    }
    if maybe(rng) {
        c = c.lazy_batch(1 + rng.below(64) as usize);
    }
    if maybe(rng) {
        c = c.pace_bytes(1 + rng.below(8192) as usize);
    }
    if maybe(rng) {
        c = c
            .qhimark(20 + rng.below(200) as usize)
            .qlowmark(1 + rng.below(10) as usize);
    }
    if maybe(rng) {
        c = c.qovld(50 + rng.below(500) as usize);
    }
    if maybe(rng) {
        c = c.blimit(1 + rng.below(20) as usize);
    }
    if maybe(rng) {
        c = c.fast_min_bytes(rng.below(4096) as usize);
    }
    if maybe(rng) {
        c = c.pressure_throttle_bytes(1024 + rng.below(64 << 10) as usize);
    }
    if maybe(rng) {
        c = c
            .held_up_bytes(1024 + rng.below(64 << 10) as usize)
            .held_up_after(Duration::from_micros(100 + rng.below(2000)));
    }
    if maybe(rng) {
        c = c.topology(Topology::synthetic(
            1 + rng.below(2) as usize,
            1 + rng.below(3) as usize,
        ));
    }
    if maybe(rng) {
        c = c.worker_per_cpu(true);
    } else if maybe(rng) {
        c = c.workers_per_node(1 + rng.below(3) as usize);
    }
    if maybe(rng) {
        c = c.adaptive_reader_fences(false);
    }
    if maybe(rng) {
        c = c.simulate_membarrier_cost(Duration::from_micros(rng.below(30)));
    }
    c
}

fn world(seed: u64, max_ids: usize, plan: &Plan) -> World {
    let ctx = Arc::new(Ctx {
        seed,
        next_id: AtomicUsize::new(0),
        drops: (0..max_ids).map(|_| AtomicU8::new(0)).collect(),
        live_bytes: AtomicUsize::new(0),
        errors: Mutex::new(Vec::new()),
        failed: AtomicBool::new(false),
        panicky: plan.panics,
        mutant: plan.mutant,
    });
    let mut rng = Rng::new(seed ^ 0xD0D0);
    let mut on_demand = false;
    let mut make = |flavor| {
        Rcu::new(config(&mut rng, flavor, &mut on_demand))
            .or_else(|e| {
                COUNT[FALLBACK].fetch_add(1, Ordering::Relaxed);
                if std::env::var_os("RCU_FUZZ_VERBOSE").is_some() {
                    eprintln!("seed {seed}: config refused: {e}");
                }
                Rcu::new(Config::new().flavor(flavor))
            })
            .or_else(|_| Rcu::new(Config::new().flavor(Flavor::Mb)))
            .unwrap()
    };
    let qsbr = make(Flavor::Qsbr);
    let mb = make(Flavor::Mb);
    let memb = make(Flavor::Memb);
    let doms = [qsbr, mb, memb, Rcu::global().clone()];
    let r2 = Arc::new(Reclaimer::new(&doms[2]));
    r2.set_oom_handler(|_| {});
    let r0 = Arc::new(Reclaimer::new(&doms[QSBR]));
    r0.set_oom_handler(|_| {});
    let usage_ctx = ctx.clone();
    let limit = 256 << 10;
    let budget = Arc::new(MemoryBudget::new(limit, r2.clone(), move || {
        usage_ctx.live_bytes.load(Ordering::Relaxed)
    }));
    // Only domains with a background pace can be dropped with work still
    // queued: callbacks holding a clone of their own domain keep it alive.
    let drop_without_barrier = !on_demand && rng.chance(300);
    let (events, source) = SyntheticSource::new();
    let mut source = Some(source);
    let mut slots = Vec::new();
    for (d, rcu) in doms.into_iter().enumerate() {
        let cells_a = (0..CELLS)
            .map(|i| RcuCell::new_in(&rcu, Some(P::new(&ctx, i as u64, &mut rng))))
            .collect();
        let cells_b = (0..CELLS)
            .map(|i| RcuCell::new_in(&rcu, Some(P::new(&ctx, i as u64, &mut rng))))
            .collect();
        let cache = match d {
            2 => Some(RcuCache::builder().rcu(&rcu).budget(&budget).build()),
            QSBR => Some(
                RcuCache::builder()
                    .rcu(&rcu)
                    .reclaimer(&r0)
                    .max_bytes(64 << 10)
                    .build(),
            ),
            // Shrunk by a pressure monitor's events (the flapper sends
            // them), regrowing soon after.
            1 => Some(
                RcuCache::builder()
                    .rcu(&rcu)
                    .max_bytes(16 << 10)
                    .shards(1 + rng.below(4) as usize)
                    .regrow_after(Duration::from_millis(1 + rng.below(20)))
                    .pressure_source(Box::new(source.take().unwrap()))
                    .build(),
            ),
            _ => None,
        };
        slots.push(Slot {
            map: RcuHashMap::new_in(&rcu),
            map_b: RcuHashMap::new_in(&rcu),
            rcu,
            cells_a,
            cells_b,
            cache,
        });
    }
    World {
        ctx,
        slots,
        budget,
        reclaimers: vec![r0, r2],
        keys: [8, 24, 24, 600, 3000][rng.below(5) as usize],
        drop_without_barrier,
        events: Mutex::new(events),
        stop: AtomicBool::new(false),
    }
}

/// What a worker thread holds: its QSBR registration and stashed retirees.
struct Me {
    rng: Rng,
    qsbr: Option<QsbrThread>,
    stash_a: Vec<Retired<PA>>,
    stash_b: Vec<Retired<PB>>,
}

/// The domains a thread is inside a section of (bit `d`), an online QSBR
/// registration counting as a section of the QSBR domain.
#[derive(Clone, Copy)]
struct Held(u8);

impl Held {
    fn with(self, d: usize) -> Held {
        Held(self.0 | 1 << d)
    }
    fn has(self, d: usize) -> bool {
        self.0 & (1 << d) != 0
    }
    /// Whether the thread may wait for a grace period of `d` (never inside
    /// a section of `d`, only for domains above every held one).
    fn may_block(self, d: usize) -> bool {
        self.0 == 0 || (!self.has(d) && (self.0 >> d) == 0)
    }
    /// Whether a write to `d` that waits for its grace periods outside `d`'s
    /// sections (and defers inside them) may run.
    fn may_write(self, d: usize) -> bool {
        self.has(d) || self.may_block(d)
    }
}

fn pause(rng: &mut Rng) {
    match rng.below(10) {
        0..=3 => {}
        4..=6 => thread::yield_now(),
        7 | 8 => {
            for _ in 0..rng.below(2000) {
                std::hint::spin_loop();
            }
        }
        _ => thread::sleep(Duration::from_micros(rng.below(300))),
    }
}

/// The refs a reader holds, checked again after pauses.
type Refs = Vec<*const dyn Check>;

fn hold<T: Check + 'static>(refs: &mut Refs, v: &T) {
    refs.push(v as &dyn Check as *const dyn Check);
}

fn recheck_all(refs: &Refs) {
    COUNT[RECHECKS].fetch_add(refs.len() as u64, Ordering::Relaxed);
    for &r in refs {
        // SAFETY: every pointer in `refs` came from a reference whose guard
        // (or QSBR section) is still open: the value must still be alive,
        // which is exactly what the fuzzer checks.
        unsafe { (*r).recheck() };
    }
}

fn loads<G: ReadSection>(w: &World, d: usize, g: &G, rng: &mut Rng, refs: &mut Refs) {
    let s = &w.slots[d];
    for _ in 0..1 + rng.below(4) {
        match rng.below(7) {
            0 => {
                if let Some(v) = s.cells_a[rng.below(CELLS as u64) as usize].load(g) {
                    v.check(None, "cell load");
                    hold(refs, v);
                }
            }
            1 => {
                if let Some(v) = s.cells_b[rng.below(CELLS as u64) as usize].load(g) {
                    v.check(None, "cell load");
                    hold(refs, v);
                }
            }
            2 => {
                let k = rng.below(w.keys);
                if let Some(v) = s.map.get(&k, g) {
                    v.check(Some(k), "map get");
                    hold(refs, v);
                }
            }
            3 => {
                let k = rng.below(w.keys);
                if let Some(v) = s.map_b.get(&k, g) {
                    v.check(Some(k), "map get");
                    hold(refs, v);
                }
            }
            4 => {
                // A walk that now and then writes the map it walks (its own
                // section: the writes retire, never free).
                let writes = rng.chance(300);
                for (k, v) in s.map.iter(g).take(1 + rng.below(64) as usize) {
                    v.check(Some(*k), "map iter");
                    hold(refs, v);
                    if writes {
                        match rng.below(4) {
                            0 => {
                                s.map.remove(k);
                            }
                            1 => {
                                let k2 = rng.below(w.keys);
                                s.map.insert(k2, *P::new(&w.ctx, k2, rng));
                            }
                            2 => {
                                s.map.insert(*k, *P::new(&w.ctx, *k, rng));
                            }
                            _ => {}
                        }
                        v.check(Some(*k), "map iter after a write");
                    }
                }
            }
            5 => {
                if let Some(c) = &s.cache {
                    let k = rng.below(w.keys);
                    if let Some(v) = c.get(&k, g) {
                        v.check(Some(k), "cache get");
                        hold(refs, v);
                    }
                }
            }
            _ => {
                if let Some(c) = &s.cache {
                    let k = rng.below(w.keys);
                    let mut r2 = rng.clone();
                    let v = c.get_or_insert_with(k, || *P::new(&w.ctx, k, &mut r2), g);
                    v.check(Some(k), "cache get_or_insert_with");
                    hold(refs, v);
                }
            }
        }
    }
}

/// A compare-and-exchange inside the section `g` of `d`.
fn cas<G: ReadSection, const A: bool>(
    w: &World,
    cell: &RcuCell<P<A>>,
    g: &G,
    rng: &mut Rng,
    refs: &mut Refs,
) {
    let cur = cell.load(g);
    if let Some(v) = cur {
        v.check(None, "cas current");
    }
    let expect = if rng.chance(100) { None } else { cur };
    let new = if rng.chance(100) {
        None
    } else {
        Some(P::new(&w.ctx, rng.below(CELLS as u64), rng))
    };
    match cell.compare_exchange(expect, new, g) {
        Ok(old) => {
            if let Some(old) = old {
                match rng.below(3) {
                    0 => drop(old), // inside the section: deferred
                    1 => old.defer_drop(),
                    _ => match old.try_into_box() {
                        Ok(b) => {
                            // Unlinked inside this very section: no grace
                            // period can have elapsed since.
                            let msg = format!(
                                "seed {}: try_into_box gave back value {} unlinked inside the \
                                 caller's own section",
                                w.ctx.seed, b.id
                            );
                            w.ctx.error(msg.clone());
                            std::mem::forget(b);
                            panic!("{msg}");
                        }
                        Err(old) => old.defer_drop(),
                    },
                }
            }
        }
        Err(e) => {
            if let Some(v) = e.current {
                v.check(None, "cas error current");
                hold(refs, v);
            }
            drop(e.new);
        }
    }
}

/// Writes that may run inside the sections `held` (never waiting on a
/// domain whose section is held below another).
#[allow(clippy::too_many_arguments)]
fn inner_write<G: ReadSection>(
    w: &World,
    me_qsbr: bool,
    held: Held,
    gd: usize,
    d: usize,
    g: &G,
    rng: &mut Rng,
    refs: &mut Refs,
) {
    let s = &w.slots[d];
    let ctx = &w.ctx;
    match rng.below(10) {
        // A compare-and-exchange needs a guard of the cell's domain.
        0 if d == gd => cas(
            w,
            &s.cells_a[rng.below(CELLS as u64) as usize],
            g,
            rng,
            refs,
        ),
        1 if d == gd => cas(
            w,
            &s.cells_b[rng.below(CELLS as u64) as usize],
            g,
            rng,
            refs,
        ),
        0 | 1 => {}
        2 => s.rcu.defer_drop(P::<true>::new(ctx, 0, rng)),
        // Without bulk pages (as reclaim runs): the fallback waits for a
        // grace period outside `d`'s sections, queues a callback inside.
        3 if held.may_write(d) && rng.chance(300) => {
            let v = P::<false>::new(ctx, 0, rng);
            without_page_allocation(|| s.rcu.defer_drop(v));
        }
        3 => s.rcu.defer_drop(P::<false>::new(ctx, 0, rng)),
        4 => {
            let v = P::<false>::new(ctx, 7, rng);
            // A callback retires into this domain or another one (a chain
            // the final barriers follow).
            let rcu = w.slots[rng.below(NDOM as u64) as usize].rcu.clone();
            let ctx2 = ctx.clone();
            let mut r2 = Rng::new(rng.next());
            let f = move || {
                v.check(Some(7), "callback's own value");
                if r2.chance(300) {
                    rcu.defer_drop(P::<true>::new(&ctx2, 0, &mut r2));
                } else if r2.chance(100) {
                    rcu.call(move || drop(v));
                    return;
                }
                drop(v);
            };
            match rng.below(3) {
                0 => s.rcu.call(f),
                1 => s.rcu.call_sized(f, 1 + rng.below(100_000) as usize),
                _ => s.rcu.call_hurry(f),
            }
        }
        5 => {
            let _ = s.rcu.try_defer_drop(P::<false>::new(ctx, 0, rng));
        }
        _ => {
            // Writes that may wait for the written domain's grace periods.
            let online_qsbr_writing_qsbr = me_qsbr && d == QSBR;
            if !held.may_write(d) && !online_qsbr_writing_qsbr {
                return;
            }
            let _ = held;
            let k = rng.below(w.keys);
            match rng.below(9) {
                5 => {
                    s.cells_a[rng.below(CELLS as u64) as usize].update(|old| {
                        if let Some(o) = old {
                            o.check(None, "update inside a section");
                        }
                        Some(P::new(ctx, 6, &mut Rng::new(k)))
                    });
                }
                6 => s.cells_b[rng.below(CELLS as u64) as usize]
                    .store_weighed(P::new(ctx, 6, rng), |v| v.payload.len() * 8),
                7 if d == gd => {
                    let mut r2 = rng.clone();
                    let v = s.map.get_or_insert_with(k, || *P::new(ctx, k, &mut r2), g);
                    v.check(Some(k), "map get_or_insert_with");
                    hold(refs, v);
                }
                0 => s.cells_a[rng.below(CELLS as u64) as usize].store(P::new(
                    ctx,
                    rng.below(CELLS as u64),
                    rng,
                )),
                1 => {
                    s.map.insert(k, *P::new(ctx, k, rng));
                }
                2 => {
                    s.map_b.remove(&k);
                }
                3 => {
                    if let Some(c) = &s.cache {
                        c.insert(k, *P::new(ctx, k, rng));
                    }
                }
                4 => {
                    s.map.update(k, |old| {
                        if let Some(o) = old {
                            o.check(Some(k), "map update");
                        }
                        Some(*P::new(ctx, k, &mut Rng::new(k)))
                    });
                }
                _ => {
                    let cell = &s.cells_b[rng.below(CELLS as u64) as usize];
                    if let Some(old) = cell.replace(P::new(ctx, 1, rng)) {
                        old.defer_drop();
                    }
                }
            }
        }
    }
}

/// A (possibly nested) read-side section of a random domain.
fn read_op(w: &World, me: &Me, rng: &mut Rng, held: Held, refs: &mut Refs, depth: u32) {
    // Nest only into domains at or above the highest held one (the wait
    // order), or any when nothing blocks inside.
    let d = rng.below(NDOM as u64) as usize;
    let online = me.qsbr.as_ref().is_some_and(QsbrThread::is_online);
    let base = refs.len();
    if d == QSBR && online && rng.chance(600) {
        let q = me.qsbr.as_ref().unwrap();
        let g = q.read_lock();
        body(w, me, rng, held.with(d), d, &g, refs, depth);
    } else {
        let g: ReadGuard<'_> = w.slots[d].rcu.read_lock();
        body(w, me, rng, held.with(d), d, &g, refs, depth);
        recheck_all(refs);
        drop(g);
    }
    refs.truncate(base);
}

#[allow(clippy::too_many_arguments)]
fn body<G: ReadSection>(
    w: &World,
    me: &Me,
    rng: &mut Rng,
    held: Held,
    d: usize,
    g: &G,
    refs: &mut Refs,
    depth: u32,
) {
    let online = me.qsbr.as_ref().is_some_and(QsbrThread::is_online);
    assert!(
        w.slots[d].rcu.in_read_section(),
        "seed {}: in_read_section() false inside a section",
        w.ctx.seed
    );
    loads(w, d, g, rng, refs);
    for _ in 0..rng.below(4) {
        match rng.below(8) {
            0..=2 => {
                let t = rng.below(NDOM as u64) as usize;
                // Writes inside a section go to this domain's structures or
                // to a domain the thread could wait for.
                let t = if held.may_write(t) { t } else { d };
                inner_write(w, online, held, d, t, g, rng, refs);
            }
            3 if depth < 3 => read_op(w, me, rng, held, refs, depth + 1),
            4 => {
                // Wait for a grace period of a domain above every held one.
                let t = rng.below(NDOM as u64) as usize;
                if held.may_block(t) && !(t == QSBR && online) {
                    match rng.below(3) {
                        0 => w.slots[t].rcu.synchronize(),
                        1 => w.slots[t].rcu.synchronize_expedited(),
                        _ => w.slots[t].rcu.barrier(),
                    }
                }
            }
            5 => {
                let _ = w.slots[d].rcu.collect();
            }
            _ => pause(rng),
        }
        recheck_all(refs);
    }
    pause(rng);
    recheck_all(refs);
    loads(w, d, g, rng, refs);
    recheck_all(refs);
}

/// A writer op outside any section (except an online QSBR registration).
fn write_op(w: &World, me: &mut Me, rng: &mut Rng) {
    let online = me.qsbr.as_ref().is_some_and(QsbrThread::is_online);
    let held = if online { Held(0).with(QSBR) } else { Held(0) };
    let d = rng.below(NDOM as u64) as usize;
    let s = &w.slots[d];
    let ctx = &w.ctx;
    let can_block = held.may_block(d);
    match rng.below(16) {
        0 => {
            let cell = &s.cells_a[rng.below(CELLS as u64) as usize];
            let old = cell.replace(P::new(ctx, 2, rng));
            if let Some(old) = old {
                retire_a(w, me, d, old, can_block, rng);
            }
        }
        1 => {
            let cell = &s.cells_a[rng.below(CELLS as u64) as usize];
            if let Some(old) = cell.take() {
                retire_a(w, me, d, old, can_block, rng);
            }
        }
        2 if can_block => {
            s.cells_b[rng.below(CELLS as u64) as usize].store_sync(P::new(ctx, 3, rng));
        }
        3 => {
            let cell = &s.cells_b[rng.below(CELLS as u64) as usize];
            if let Some(old) = cell.replace(P::new(ctx, 4, rng)) {
                if can_block && rng.chance(300) {
                    drop(old); // waits for a grace period
                } else {
                    me.stash_b.push(old);
                }
            }
        }
        4 => {
            s.cells_a[rng.below(CELLS as u64) as usize].update(|old| {
                if let Some(o) = old {
                    o.check(None, "cell update");
                }
                if rng.chance(100) {
                    None
                } else {
                    Some(P::new(ctx, 5, &mut Rng::new(9)))
                }
            });
        }
        5 => {
            let k = rng.below(w.keys);
            match rng.below(6) {
                0 => {
                    s.map.insert(k, *P::new(ctx, k, rng));
                }
                1 => {
                    s.map.remove(&k);
                }
                2 => {
                    let keep = rng.next();
                    s.map.retain(|k, v| {
                        v.check(Some(*k), "retain");
                        (k ^ keep) & 3 != 0
                    });
                }
                3 => {
                    s.map_b.insert(k, *P::new(ctx, k, rng));
                }
                4 => {
                    let p = rng.chance(500);
                    s.map_b.remove_if(&k, |v| {
                        v.check(Some(k), "remove_if");
                        p
                    });
                }
                _ if rng.chance(100) => s.map_b.clear(),
                _ => {}
            }
        }
        6 => {
            if let Some(c) = &s.cache {
                let k = rng.below(w.keys);
                match rng.below(5) {
                    0 | 1 => {
                        c.insert(k, *P::new(ctx, k, rng));
                    }
                    2 => {
                        c.remove(&k);
                    }
                    3 => {
                        let mut r2 = rng.clone();
                        c.read_or_insert_with(
                            k,
                            || *P::new(ctx, k, &mut r2),
                            |v| v.check(Some(k), "read_or_insert_with"),
                        );
                    }
                    _ if rng.chance(50) => c.clear(),
                    _ => {}
                }
            }
        }
        7 if held.may_write(d) && rng.chance(300) => {
            let v = P::<true>::new(ctx, 0, rng);
            without_page_allocation(|| s.rcu.defer_drop(v));
        }
        7 => s.rcu.defer_drop(P::<false>::new(ctx, 0, rng)),
        8 => {
            let _ = s.rcu.collect();
        }
        9 if can_block => match rng.below(5) {
            0 => s.rcu.synchronize(),
            1 => s.rcu.synchronize_expedited(),
            2 => s.rcu.barrier(),
            3 => {
                let c = s.rcu.get_state();
                s.rcu.cond_synchronize(c);
            }
            _ => {
                let c = s.rcu.start_poll();
                let t = Instant::now();
                while !s.rcu.poll(&c) {
                    if t.elapsed() > Duration::from_secs(20) {
                        panic!("seed {}: start_poll's grace period never ended", ctx.seed);
                    }
                    if let Some(q) = me.qsbr.as_mut() {
                        q.quiescent_state();
                    }
                    thread::yield_now();
                }
            }
        },
        9 if d == QSBR && online => {
            let q = me.qsbr.as_mut().unwrap();
            if rng.chance(500) {
                q.synchronize();
            } else {
                let rcu = &s.rcu;
                q.offline_while(|| rcu.barrier());
            }
        }
        10 => {
            // Stashed retirees: free the ready ones, or wait.
            if rng.chance(500) {
                let mut keep = Vec::new();
                for r in me.stash_b.drain(..) {
                    if r.is_safe() {
                        let b = r.try_into_box().unwrap_or_else(|_| {
                            panic!("seed {}: is_safe but try_into_box refused", ctx.seed)
                        });
                        b.check(None, "stashed ready");
                    } else {
                        keep.push(r);
                    }
                }
                me.stash_b = keep;
            } else if let Some(r) = me.stash_a.pop() {
                r.defer_drop();
            }
        }
        11 => {
            let g = s.rcu.pressure_start_all();
            for _ in 0..rng.below(8) {
                s.rcu.defer_drop(P::<true>::new(ctx, 0, rng));
            }
            pause(rng);
            g.end();
        }
        12 if !online || rng.chance(100) => {
            let _ = w.budget.check();
        }
        _ => {
            let mut refs = Refs::new();
            read_op(w, me, rng, held, &mut refs, 0);
        }
    }
}

/// What happens to an unlinked value of domain `d`.
fn retire_a(w: &World, me: &mut Me, d: usize, old: Retired<PA>, can_block: bool, rng: &mut Rng) {
    let rcu = &w.slots[d].rcu;
    if w.ctx.mutant {
        // The fuzzer's self-check: free without a grace period.
        // SAFETY: none; readers may hold it (RCU_FUZZ_MUTANT only).
        drop(unsafe { old.into_box_unchecked() });
        return;
    }
    match rng.below(6) {
        0 => old.defer_drop(),
        1 => old.defer_drop_sized(1 + rng.below(1 << 20) as usize),
        2 if can_block => {
            let b = old.into_box();
            b.check(None, "into_box");
        }
        3 => match old.try_into_box() {
            Ok(b) => {
                COUNT[TRY_BOX].fetch_add(1, Ordering::Relaxed);
                b.check(None, "try_into_box")
            }
            Err(old) => me.stash_a.push(old),
        },
        4 if can_block => {
            let c = old.cookie();
            // A cookie of the unlink asks for no grace period itself.
            let _ = rcu.start_poll();
            let t = Instant::now();
            while !rcu.poll(&c) {
                if let Some(q) = me.qsbr.as_mut() {
                    q.quiescent_state(); // another thread's wait may need it
                }
                if t.elapsed() > Duration::from_secs(20) {
                    panic!("seed {}: a polled grace period never ended", w.ctx.seed);
                }
                thread::yield_now();
            }
            match old.try_into_box() {
                Ok(b) => b.check(None, "after poll"),
                Err(_) => panic!(
                    "seed {}: poll(cookie) said the grace period ended, try_into_box refused",
                    w.ctx.seed
                ),
            }
        }
        _ => me.stash_a.push(old),
    }
}

/// A read-side section on the global domain kept in a thread-local, ended
/// by the thread's exit: its values must stay alive until then.
struct ExitHolder {
    refs: Refs,
    guard: Option<ReadGuard<'static>>,
    /// An online QSBR registration that never reports again.
    qsbr: Option<QsbrThread>,
    /// The domain `guard` borrows (boxed: it outlives the guard).
    rcu: Option<Box<Rcu>>,
}

impl Drop for ExitHolder {
    fn drop(&mut self) {
        thread::sleep(Duration::from_micros(500));
        recheck_all(&self.refs);
        self.guard.take();
        self.qsbr.take();
        self.rcu.take();
    }
}

thread_local! {
    static AT_EXIT: RefCell<Option<ExitHolder>> = const { RefCell::new(None) };
}

fn worker(w: Arc<World>, seed: u64, ops: usize) {
    let mut rng = Rng::new(seed);
    let mut me = Me {
        rng: rng.clone(),
        qsbr: None,
        stash_a: Vec::new(),
        stash_b: Vec::new(),
    };
    if rng.chance(500) {
        me.qsbr = Some(w.slots[QSBR].rcu.register_qsbr_thread());
    }
    for _ in 0..ops {
        if w.stop.load(Ordering::Relaxed) {
            break;
        }
        write_op(&w, &mut me, &mut rng);
        if me.qsbr.is_some() {
            match rng.below(40) {
                0 => {
                    let off = me.qsbr.take().unwrap().thread_offline();
                    pause(&mut rng);
                    me.qsbr = Some(off.thread_online());
                }
                1 => {
                    // Unregister and register again.
                    me.qsbr = None;
                    me.qsbr = Some(w.slots[QSBR].rcu.register_qsbr_thread());
                }
                2 => {} // no report this time
                _ => me.qsbr.as_mut().unwrap().quiescent_state(),
            }
        }
    }
    let _ = me.rng.next();
    // Leave with garbage pending, a QSBR registration, stashed retirees, or
    // a section open in a thread-local.
    let exit = rng.below(4);
    let _kept = if exit == 3 {
        // Exit registered (and online) with stashed retirees: the
        // registration drops at the thread's end, so the retirees are
        // handed to a deferred drop first (dropping one waits).
        for r in me.stash_a.drain(..) {
            r.defer_drop();
        }
        for r in me.stash_b.drain(..) {
            r.defer_drop();
        }
        Some(me)
    } else {
        // Dropping the stashed retirees waits for grace periods: offline
        // first.
        drop(me.qsbr.take());
        drop(me);
        None
    };
    match exit {
        0 => {}
        1 => {
            let ctx = &w.ctx;
            for _ in 0..rng.below(20) {
                w.slots[rng.below(NDOM as u64) as usize]
                    .rcu
                    .defer_drop(P::<false>::new(ctx, 0, &mut rng));
            }
        }
        2 => {
            // A section (a guard, or an online QSBR registration) kept in a
            // thread-local: it ends only with the thread, after the
            // library's own thread-locals may be gone.
            let d = rng.below(NDOM as u64) as usize;
            let mut refs = Refs::new();
            let mut holder = ExitHolder {
                refs: Refs::new(),
                guard: None,
                qsbr: None,
                rcu: None,
            };
            if d == GLOBAL {
                let g = Rcu::global().read_lock();
                loads(&w, d, &g, &mut rng, &mut refs);
                holder.guard = Some(g);
            } else if d == QSBR && rng.chance(500) {
                let q = w.slots[d].rcu.register_qsbr_thread();
                loads(&w, d, &q.read_lock(), &mut rng, &mut refs);
                // The registration moves, online and never reporting: the
                // values read stay protected.
                holder.qsbr = Some(q);
            } else {
                let rcu = Box::new(w.slots[d].rcu.clone());
                let g = rcu.read_lock();
                loads(&w, d, &g, &mut rng, &mut refs);
                // SAFETY: the guard borrows the boxed `Rcu`, which does not
                // move with the box and is dropped after the guard (the
                // holder's `Drop`).
                holder.guard =
                    Some(unsafe { std::mem::transmute::<ReadGuard<'_>, ReadGuard<'static>>(g) });
                holder.rcu = Some(rcu);
            }
            holder.refs = refs;
            COUNT[EXIT_HOLDERS].fetch_add(1, Ordering::Relaxed);
            AT_EXIT.with(|h| *h.borrow_mut() = Some(holder));
        }
        _ => {}
    }
}

/// Flaps pressure on every domain and runs reclaim and the budget.
fn flapper(w: Arc<World>, seed: u64) {
    let mut rng = Rng::new(seed);
    let mut held = Vec::new();
    while !w.stop.load(Ordering::Relaxed) {
        let d = rng.below(NDOM as u64) as usize;
        let rcu = &w.slots[d].rcu;
        match rng.below(11) {
            0 | 1 => held.push(rcu.pressure_start_all()),
            2 => held.push(rcu.pressure_start(0)),
            3 | 4 if !held.is_empty() => {
                let i = rng.below(held.len() as u64) as usize;
                held.swap_remove(i).end();
            }
            5 => {
                let _ = rcu.run_callbacks(&NodeMask::all(), rng.below(13) as u8);
            }
            6 => {
                let r = &w.reclaimers[rng.below(2) as usize];
                let _ = r.reclaim(1 + rng.below(64 << 10) as usize, &NodeMask::all());
            }
            7 => {
                let r = &w.reclaimers[rng.below(2) as usize];
                let _ = r.shrink(rng.below(13) as u8);
            }
            8 => {
                let _ = w.budget.check();
            }
            9 => {
                let level = [Level::Low, Level::Medium, Level::Critical][rng.below(3) as usize];
                let _ = w.events.lock().unwrap().send(level);
            }
            _ => {}
        }
        pause(&mut rng);
        if held.len() > 6 {
            held.clear();
        }
    }
}

/// Waits for grace periods and barriers from outside any section.
fn syncer(w: Arc<World>, seed: u64) {
    let mut rng = Rng::new(seed);
    while !w.stop.load(Ordering::Relaxed) {
        let rcu = &w.slots[rng.below(NDOM as u64) as usize].rcu;
        match rng.below(5) {
            0 => rcu.synchronize(),
            1 => rcu.synchronize_expedited(),
            2 => rcu.barrier(),
            3 => {
                let _ = rcu.collect();
            }
            _ => thread::sleep(Duration::from_micros(rng.below(500))),
        }
    }
}

struct Plan {
    threads: usize,
    ops: usize,
    waves: usize,
    /// Destructors run by RCU panic now and then (`RCU_FUZZ_PANICS=1`, the
    /// long variant's default).
    panics: bool,
    /// The fuzzer's self-check (`RCU_FUZZ_MUTANT=1`): unlinked values are
    /// freed at once (unsafely); a sweep must then fail.
    mutant: bool,
}

/// One seed's run; panics (naming the seed) on any failure.
fn run_seed(seed: u64, plan: &Plan) {
    let max_ids = plan.threads * plan.waves * plan.ops * 40 + 10_000;
    SEED.store(seed, Ordering::Relaxed);
    // A hang anywhere (the final barriers included) names its seed.
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let watchdog = thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = done_rx.recv_timeout(Duration::from_secs(300))
        {
            eprintln!("seed {seed}: hung for 300 s; aborting");
            std::process::abort();
        }
    });
    let _watchdog = Watchdog(Some(done_tx), Some(watchdog));
    let w = Arc::new(world(seed, max_ids, plan));
    let mut rng = Rng::new(seed);
    let bg = [
        {
            let w = w.clone();
            let s = rng.next();
            thread::spawn(move || flapper(w, s))
        },
        {
            let w = w.clone();
            let s = rng.next();
            thread::spawn(move || syncer(w, s))
        },
    ];
    // Stops the background threads however the run ends (the deadline's
    // panic included).
    let stop_bg = StopOnDrop(&w.stop);
    let mut running = Vec::new();
    let mut spawned = 0;
    let total = plan.threads * plan.waves;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut panics = Vec::new();
    while spawned < total || !running.is_empty() {
        while running.len() < plan.threads && spawned < total {
            let w2 = w.clone();
            let s = rng.next();
            let ops = 1 + rng.below(plan.ops as u64) as usize;
            running.push(
                thread::Builder::new()
                    .name(format!("fuzz-{seed}-{spawned}"))
                    .spawn(move || worker(w2, s, ops))
                    .unwrap(),
            );
            spawned += 1;
        }
        let mut i = 0;
        while i < running.len() {
            if running[i].is_finished() {
                if let Err(e) = running.swap_remove(i).join() {
                    panics.push(e);
                    w.stop.store(true, Ordering::SeqCst);
                }
            } else {
                i += 1;
            }
        }
        if Instant::now() > deadline {
            if let Some(dir) = std::env::var_os("RCU_FUZZ_HANG_DUMP") {
                // Every thread's stack, for a diagnosis (needs gdb).
                let out = std::path::Path::new(&dir).join(format!("hang-{seed}.txt"));
                let _ = std::process::Command::new("gdb")
                    .args(["-p", &std::process::id().to_string(), "-batch"])
                    .args(["-ex", "thread apply all bt 40"])
                    .stdout(std::fs::File::create(&out).unwrap())
                    .status();
            }
            panic!("seed {seed}: the run did not finish in 120 s (a hang?)");
        }
        thread::sleep(Duration::from_micros(200));
    }
    w.stop.store(true, Ordering::SeqCst);
    drop(stop_bg); // its borrow of `w` ends before `Arc::into_inner`
    for t in bg {
        if let Err(e) = t.join() {
            panics.push(e);
        }
    }
    let w = Arc::into_inner(w).expect("every thread gone");
    let ctx = w.ctx.clone();
    let doms: Vec<Rcu> = w.slots.iter().map(|s| s.rcu.clone()).collect();
    let b = w.budget.stats();
    COUNT[BUDGET_RECLAIMS].fetch_add(b.background_runs + b.direct_reclaims, Ordering::Relaxed);
    for r in &w.reclaimers {
        COUNT[RECLAIM_PASSES].fetch_add(r.stats().passes, Ordering::Relaxed);
    }
    for d in &doms[..GLOBAL] {
        let st = d.stats();
        COUNT[THROTTLES].fetch_add(st.pressure_throttles, Ordering::Relaxed);
        COUNT[FAST_MODE].fetch_add(st.fast_mode_entries, Ordering::Relaxed);
        COUNT[FENCE_SWITCHES].fetch_add(st.reader_fence_switches, Ordering::Relaxed);
        COUNT[FALLBACK_SYNCS].fetch_add(st.fallback_syncs, Ordering::Relaxed);
        COUNT[HELD_UP].fetch_add(st.held_up_waits, Ordering::Relaxed);
    }
    let drop_without_barrier = w.drop_without_barrier;
    drop(w);
    if drop_without_barrier {
        let mut doms = doms;
        let global = doms.pop().expect("the global domain last");
        drop(doms); // the last handles but those queued callbacks hold
        let t = Instant::now();
        while ctx.live_bytes.load(Ordering::SeqCst) != 0 && t.elapsed() < Duration::from_secs(30) {
            global.barrier();
            thread::sleep(Duration::from_millis(1));
        }
    } else {
        // A callback may queue a deferred drop or a callback (a chain of
        // one, into any domain): a barrier waits for what was queued
        // before it, so a second round for those.
        for _ in 0..2 {
            for d in &doms {
                d.barrier();
            }
        }
        drop(doms);
    }
    let errors = ctx.errors.lock().unwrap().clone();
    if let Some(e) = panics.into_iter().next() {
        let msg = e
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        panic!("seed {seed}: a thread panicked: {msg}; errors: {errors:?}");
    }
    assert!(errors.is_empty(), "seed {seed}: {errors:?}");
    let made = ctx.next_id.load(Ordering::SeqCst);
    let mut bad = Vec::new();
    for (id, d) in ctx.drops[..made].iter().enumerate() {
        let n = d.load(Ordering::SeqCst);
        if n != 1 && bad.len() < 16 {
            bad.push((id, n));
        }
    }
    assert!(
        bad.is_empty(),
        "seed {seed}: values not dropped exactly once (id, drops): {bad:?} of {made}"
    );
    assert_eq!(
        ctx.live_bytes.load(Ordering::SeqCst),
        0,
        "seed {seed}: live bytes left"
    );
}

/// Stops a seed's watchdog when the seed ends (also by a panic).
struct Watchdog(Option<mpsc::Sender<()>>, Option<thread::JoinHandle<()>>);

impl Drop for Watchdog {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.1.take() {
            let _ = t.join();
        }
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn sweep(secs: u64, default_seeds: u64, mut plan: Plan, verbose: bool, panics: bool) {
    plan.mutant = env_or("RCU_FUZZ_MUTANT", 0u8) == 1;
    plan.panics = env_or("RCU_FUZZ_PANICS", u8::from(panics)) == 1;
    quiet_intentional_panics();
    if let Some(seed) = std::env::var("RCU_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        run_seed(seed, &plan);
        return;
    }
    let seed0: u64 = env_or("RCU_FUZZ_SEED0", 1);
    let t = Instant::now();
    let mut n = 0;
    while n < default_seeds || t.elapsed() < Duration::from_secs(secs) {
        let seed = seed0 + n;
        let t1 = Instant::now();
        run_seed(seed, &plan);
        if verbose {
            eprintln!("seed {seed}: ok in {:?}", t1.elapsed());
        }
        n += 1;
    }
    if verbose {
        eprintln!("{n} seeds from {seed0}");
        for (c, name) in COUNT.iter().zip(NAMES) {
            eprintln!("  {name}: {}", c.load(Ordering::Relaxed));
        }
    }
}

/// Seeds for about three seconds (`RCU_FUZZ_SHORT_SECS`), at least three:
/// part of `cargo test`.
#[test]
fn fuzz_short() {
    sweep(
        env_or("RCU_FUZZ_SHORT_SECS", 3),
        3,
        Plan {
            threads: env_or("RCU_FUZZ_THREADS", 3),
            ops: env_or("RCU_FUZZ_OPS", 200),
            waves: env_or("RCU_FUZZ_WAVES", 3),
            panics: false,
            mutant: false,
        },
        false,
        false,
    );
}

/// Seeds for `RCU_FUZZ_SECS` seconds (default 60); see the module docs.
#[test]
#[ignore = "long: RCU_FUZZ_SECS=600 cargo test --release --test fuzz_safe_api -- --ignored"]
fn fuzz_long() {
    sweep(
        env_or("RCU_FUZZ_SECS", 60),
        1,
        Plan {
            threads: env_or("RCU_FUZZ_THREADS", 4),
            ops: env_or("RCU_FUZZ_OPS", 400),
            waves: env_or("RCU_FUZZ_WAVES", 4),
            panics: false,
            mutant: false,
        },
        true,
        true,
    );
}
