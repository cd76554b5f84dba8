//! The simulation behind the cache's policy choice (the table in the
//! [module docs](super)): each policy runs a Zipf(0.99) trace over 100 000
//! keys with values of 1–64 KiB and a 64 MiB capacity (sizes in KiB, so no
//! memory is spent), cache-aside: a miss inserts the key. Deterministic.
//! S3-FIFO is the cache's own policy code over a model store; the others
//! are models of the same size.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};

use super::policy::{Busy, S3Fifo, Store, MAX_FREQ};
use super::shards::evict_floor;

const KEYS: usize = 100_000;
const CAPACITY_KIB: usize = 64 << 10;

/// splitmix64: a deterministic stream of pseudo-random words.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Keys `0..n` drawn with probability proportional to `1 / (rank+1)^s`;
/// ranks are scattered over the key space so popularity and size are
/// independent.
struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    fn new(n: usize, s: f64) -> Self {
        let mut sum = 0.0;
        let mut cdf: Vec<f64> = (1..=n)
            .map(|r| {
                sum += 1.0 / (r as f64).powf(s);
                sum
            })
            .collect();
        for c in &mut cdf {
            *c /= sum;
        }
        Zipf { cdf }
    }

    fn sample(&self, rng: &mut Rng) -> u32 {
        let u = rng.unit();
        let rank = self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1);
        // A fixed permutation-like scatter of ranks over keys.
        (mix(rank as u64) % self.cdf.len() as u64) as u32
    }
}

/// A key's value size in KiB, 1..=64, fixed per key.
fn kib(key: u32) -> usize {
    1 + (mix(u64::from(key) ^ 0x5eed) % 64) as usize
}

/// A cache under simulation.
trait Policy {
    /// A lookup: whether it hit (and the policy's bookkeeping of a hit).
    fn get(&mut self, key: u32) -> bool;
    /// A miss's insert.
    fn insert(&mut self, key: u32, weight: usize);
}

/// Entries by key: (id, freq, weight), and the bytes held.
#[derive(Default)]
struct Model {
    entries: RefCell<HashMap<u32, (u64, u8, usize)>>,
    bytes: Cell<usize>,
    next_id: Cell<u64>,
}

impl Model {
    fn hit(&self, key: u32, max_freq: u8) -> bool {
        match self.entries.borrow_mut().get_mut(&key) {
            Some(e) => {
                e.1 = (e.1 + 1).min(max_freq);
                true
            }
            None => false,
        }
    }

    fn add(&self, key: u32, weight: usize) -> u64 {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        self.entries.borrow_mut().insert(key, (id, 0, weight));
        self.bytes.set(self.bytes.get() + weight);
        id
    }
}

impl Model {
    fn freq(&self, key: &u32, id: u64) -> Option<u8> {
        let m = self.entries.borrow();
        m.get(key).filter(|e| e.0 == id).map(|e| e.1)
    }

    fn set_freq(&self, key: &u32, id: u64, freq: u8) {
        if let Some(e) = self.entries.borrow_mut().get_mut(key).filter(|e| e.0 == id) {
            e.1 = freq;
        }
    }

    fn remove(&self, key: &u32, id: u64) -> Option<usize> {
        let mut m = self.entries.borrow_mut();
        let w = m.get(key).filter(|e| e.0 == id)?.2;
        m.remove(key);
        self.bytes.set(self.bytes.get() - w);
        Some(w)
    }
}

impl Store<u32> for Model {
    fn visit(&self, key: &u32, _: u64, id: u64, next: impl FnOnce(u8) -> Option<u8>) -> Option<u8> {
        let freq = self.freq(key, id)?;
        if let Some(f) = next(freq) {
            self.set_freq(key, id, f);
        }
        Some(freq)
    }

    fn remove(&self, key: &u32, _: u64, id: u64) -> Result<Option<usize>, Busy> {
        Ok(Model::remove(self, key, id))
    }
}

/// The cache's S3-FIFO code over the model.
#[derive(Default)]
struct S3 {
    model: Model,
    queues: Option<S3Fifo<u32>>,
}

impl Policy for S3 {
    fn get(&mut self, key: u32) -> bool {
        self.model.hit(key, MAX_FREQ)
    }

    fn insert(&mut self, key: u32, weight: usize) {
        let queues = self.queues.get_or_insert_with(S3Fifo::new);
        let id = self.model.add(key, weight);
        // The store's hash of the key: any well-mixed one.
        queues.push(key, id, weight, mix(u64::from(key)));
        while self.model.bytes.get() > CAPACITY_KIB {
            if queues.evict(CAPACITY_KIB, &self.model).is_none() {
                break;
            }
        }
    }
}

/// The cache's S3-FIFO code in `n` shards by hash, evicting as the cache
/// does (`queue_and_evict`, `evict_across`): from the writer's shard down
/// to its floor (`evict_floor`), then from the shards above their share,
/// then any; `cap` in the trace's units.
struct S3Sharded {
    model: Model,
    queues: Vec<S3Fifo<u32>>,
    bytes: Vec<usize>,
    cap: usize,
}

impl S3Sharded {
    fn new(n: usize, cap: usize) -> Self {
        S3Sharded {
            model: Model::default(),
            queues: (0..n).map(|_| S3Fifo::new()).collect(),
            bytes: vec![0; n],
            cap,
        }
    }

    /// Evicts from shard `i` while `over` says so.
    fn evict_from(&mut self, i: usize, over: impl Fn(&Self) -> bool) {
        let share = self.cap / self.queues.len();
        while over(self) {
            match self.queues[i].evict(share, &self.model) {
                Some(w) => self.bytes[i] -= w,
                None => break,
            }
        }
    }
}

impl Policy for S3Sharded {
    fn get(&mut self, key: u32) -> bool {
        self.model.hit(key, MAX_FREQ)
    }

    fn insert(&mut self, key: u32, weight: usize) {
        let n = self.queues.len();
        let hash = mix(u64::from(key));
        let own = ((hash >> 40) as usize) % n;
        let id = self.model.add(key, weight);
        self.queues[own].push(key, id, weight, hash);
        self.bytes[own] += weight;
        let (cap, share) = (self.cap, self.cap / n);
        let total = |me: &Self| me.model.bytes.get();
        let floor = evict_floor(share);
        self.evict_from(own, |me| total(me) > cap && me.bytes[own] > floor);
        for pass in 0..2 {
            for k in 1..=n {
                let i = (own + k) % n;
                self.evict_from(i, |me| {
                    total(me) > cap && (pass == 1 || me.bytes[i] > share)
                });
            }
        }
    }
}

/// CLOCK with a counter up to `max_freq` (0: FIFO), as a queue of keys.
struct Clock {
    model: Model,
    queue: VecDeque<(u32, u64)>,
    max_freq: u8,
}

impl Clock {
    fn new(max_freq: u8) -> Self {
        Clock {
            model: Model::default(),
            queue: VecDeque::new(),
            max_freq,
        }
    }
}

impl Policy for Clock {
    fn get(&mut self, key: u32) -> bool {
        self.model.hit(key, self.max_freq)
    }

    fn insert(&mut self, key: u32, weight: usize) {
        let id = self.model.add(key, weight);
        self.queue.push_back((key, id));
        while self.model.bytes.get() > CAPACITY_KIB {
            let Some((k, id)) = self.queue.pop_front() else {
                break;
            };
            match self.model.freq(&k, id) {
                Some(f) if f > 0 => {
                    self.model.set_freq(&k, id, f - 1);
                    self.queue.push_back((k, id));
                }
                Some(_) => drop(self.model.remove(&k, id)),
                None => {}
            }
        }
    }
}

/// Evicts a uniformly random entry.
struct Random {
    model: Model,
    keys: Vec<u32>,
    rng: Rng,
}

impl Policy for Random {
    fn get(&mut self, key: u32) -> bool {
        self.model.hit(key, 0)
    }

    fn insert(&mut self, key: u32, weight: usize) {
        self.model.add(key, weight);
        self.keys.push(key);
        while self.model.bytes.get() > CAPACITY_KIB && !self.keys.is_empty() {
            let i = (self.rng.next() % self.keys.len() as u64) as usize;
            let k = self.keys.swap_remove(i);
            let id = self.model.entries.borrow()[&k].0;
            self.model.remove(&k, id);
        }
    }
}

/// The hit ratio of `policy` over `requests` requests after `warmup`.
fn hit_ratio(policy: &mut dyn Policy, zipf: &Zipf, warmup: usize, requests: usize) -> f64 {
    hit_ratio_sized(policy, zipf, warmup, requests, kib)
}

/// [`hit_ratio`] with each key's weight from `size`.
fn hit_ratio_sized(
    policy: &mut dyn Policy,
    zipf: &Zipf,
    warmup: usize,
    requests: usize,
    size: fn(u32) -> usize,
) -> f64 {
    let mut rng = Rng(42);
    let mut hits = 0;
    for i in 0..warmup + requests {
        let key = zipf.sample(&mut rng);
        if policy.get(key) {
            hits += usize::from(i >= warmup);
        } else {
            policy.insert(key, size(key));
        }
    }
    hits as f64 / requests as f64
}

/// A key's value size in bytes, 64..=256, fixed per key (with the entry's
/// overhead, as the cache weighs it, about 100 bytes more).
fn small_bytes(key: u32) -> usize {
    100 + 64 + (mix(u64::from(key) ^ 0x5eed) % 193) as usize
}

/// A key's value size in bytes, 1..=64 KiB.
fn large_bytes(key: u32) -> usize {
    kib(key) << 10
}

/// A trace's value sizes: their range's name and each key's size.
type Sizes = (&'static str, fn(u32) -> usize);

/// One row of [`shard_table`]: the sizes' name, the capacity, and
/// `(shards, hit ratio)` for each count.
type ShardRow = (&'static str, usize, Vec<(usize, f64)>);

/// S3-FIFO's hit ratio by shard count: for each value-size range and
/// capacity (bytes), `(shards, hit ratio)` for each count in `counts`.
fn shard_table(warmup: usize, requests: usize, counts: &[usize]) -> Vec<ShardRow> {
    let zipf = Zipf::new(KEYS, 0.99);
    let cases: [(Sizes, usize); 4] = [
        (("1-64 KiB", large_bytes), 64 << 20),
        (("1-64 KiB", large_bytes), 4 << 20),
        (("64-256 B", small_bytes), 4 << 20),
        (("64-256 B", small_bytes), 1 << 20),
    ];
    cases
        .iter()
        .map(|&((sizes, size), cap)| {
            let row = counts
                .iter()
                .map(|&n| {
                    let mut p = S3Sharded::new(n, cap);
                    (n, hit_ratio_sized(&mut p, &zipf, warmup, requests, size))
                })
                .collect();
            (sizes, cap, row)
        })
        .collect()
}

/// Every policy's hit ratio, by name.
fn run_all(warmup: usize, requests: usize) -> Vec<(&'static str, f64)> {
    let zipf = Zipf::new(KEYS, 0.99);
    let random = Random {
        model: Model::default(),
        keys: Vec::new(),
        rng: Rng(7),
    };
    let mut policies: Vec<(&'static str, Box<dyn Policy>)> = vec![
        ("random", Box::new(random)),
        ("fifo", Box::new(Clock::new(0))),
        ("clock", Box::new(Clock::new(1))),
        ("clock2", Box::new(Clock::new(MAX_FREQ))),
        ("s3fifo", Box::<S3>::default()),
        ("s3fifo-4-shards", Box::new(S3Sharded::new(4, CAPACITY_KIB))),
        (
            "s3fifo-32-shards",
            Box::new(S3Sharded::new(32, CAPACITY_KIB)),
        ),
    ];
    policies
        .iter_mut()
        .map(|(name, p)| (*name, hit_ratio(p.as_mut(), &zipf, warmup, requests)))
        .collect()
}

#[test]
fn s3fifo_beats_clock_and_random_on_a_zipf_trace() {
    let ratios: HashMap<_, _> = run_all(100_000, 200_000).into_iter().collect();
    println!("{ratios:?}");
    assert!(ratios["s3fifo"] > ratios["random"] + 0.03, "{ratios:?}");
    assert!(ratios["s3fifo"] > ratios["clock"], "{ratios:?}");
}

/// What a shard's share costs depends on the entries it holds: with the
/// bench's 1-64 KiB values, shares of `shards::MIN_SHARE` (the least the
/// builder gives a shard by default, about 32 entries) cost under a point
/// of hit ratio against one shard, a quarter of it over a point.
#[test]
fn the_default_least_share_costs_under_a_point_with_large_values() {
    let zipf = Zipf::new(KEYS, 0.99);
    for cap in [64 << 20, 4 << 20] {
        let ratio = |n| {
            hit_ratio_sized(
                &mut S3Sharded::new(n, cap),
                &zipf,
                50_000,
                100_000,
                large_bytes,
            )
        };
        let one = ratio(1);
        let least = ratio(cap / super::shards::MIN_SHARE);
        let quarter = ratio(4 * cap / super::shards::MIN_SHARE);
        assert!(
            least > one - 0.01,
            "{cap}: {one:.3} in one shard, {least:.3} in shares of MIN_SHARE"
        );
        assert!(
            quarter < one - 0.01,
            "{cap}: {one:.3} in one shard, {quarter:.3} in quarter shares"
        );
    }
}

/// Hit ratio by shard count (release: about 20 s).
#[test]
#[ignore]
fn shard_share_table() {
    let counts = [1, 4, 16, 64];
    println!(
        "| values | capacity | {} |",
        counts.map(|n| format!("{n} shards")).join(" | ")
    );
    for (sizes, cap, row) in shard_table(200_000, 1_000_000, &counts) {
        let cells: Vec<String> = row
            .iter()
            .map(|(n, r)| format!("{r:.3} ({} KiB shares)", (cap / n) >> 10))
            .collect();
        println!("| {sizes} | {} MiB | {} |", cap >> 20, cells.join(" | "));
    }
}

/// The numbers in the module docs (release: about 5 s).
#[test]
#[ignore]
fn policy_table() {
    for (name, ratio) in run_all(200_000, 2_000_000) {
        println!("| {name} | {ratio:.3} |");
    }
}
