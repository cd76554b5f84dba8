//! Callgrind driver for `RcuCache`: one thread replays the cache bench's
//! workload (`rcu-reclaim bench --scenario cache`: Zipf(0.99) over 100 000
//! keys, 1–64 KiB values by key, 64 MiB capacity, 90 % gets, 10 % inserts,
//! a get that misses inserts) for N operations, so that
//! `valgrind --tool=callgrind` can count what a get and an insert cost.
//!
//! ```text
//! cargo build --release -p rcu-reclaim --example callgrind_cache
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.cache \
//!     target/release/examples/callgrind_cache 400000
//! callgrind_annotate --inclusive=yes /tmp/cg.cache | grep -E 'cache_get|cache_insert'
//! ```
//!
//! `callgrind_cache N ahash` hashes the keys with ahash
//! (`RcuCacheBuilder::hasher`) instead of std's SipHash.
//!
//! Each get runs in `cache_get` and each insert in `cache_insert` (both
//! `#[inline(never)]`; the value is built before `cache_insert`, so its
//! allocation and fill are not counted): their inclusive instructions over
//! the calls the driver prints are the instructions per get and per
//! insert. The evicted values are freed by the domain's worker, on its
//! thread, outside both. The cache fills within its first few thousand
//! inserts: over 400 000 operations the filling is a small share.

use std::hint::black_box;
use std::process::ExitCode;

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

use rcu_reclaim::RcuCache;

const KEYS: usize = 100_000;
const CAPACITY: usize = 64 << 20;

/// splitmix64's finalizer.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A key's value size: 1–64 KiB, fixed per key.
fn size_of_key(key: u64) -> usize {
    (1 << 10) + (mix(key ^ 0x5eed) % (63 << 10)) as usize
}

#[inline(never)]
fn cache_get<S: BuildHasher>(cache: &RcuCache<u64, Vec<u8>, S>, key: u64) -> Option<u8> {
    let guard = cache.domain().read_lock();
    cache.get(&key, &guard).map(|v| v[0])
}

#[inline(never)]
fn cache_insert<S: BuildHasher>(cache: &RcuCache<u64, Vec<u8>, S>, key: u64, value: Vec<u8>) {
    cache.insert(key, value);
}

fn main() -> ExitCode {
    let n: u64 = match std::env::args().nth(1).map(|s| s.parse()) {
        Some(Ok(n)) => n,
        _ => {
            eprintln!("usage: callgrind_cache OPERATIONS [ahash]");
            return ExitCode::FAILURE;
        }
    };
    match std::env::args().nth(2).as_deref() {
        None => replay(n, RandomState::new()),
        Some("ahash") => replay(n, ahash::RandomState::new()),
        Some(other) => {
            eprintln!("callgrind_cache: unknown hasher {other:?} (only ahash)");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

/// Replays `n` operations on a cache whose keys `hasher` hashes.
fn replay<S: BuildHasher + Send + Sync + 'static>(n: u64, hasher: S) {
    // Zipf(0.99) by inverse CDF; ranks scattered over the keys.
    let mut sum = 0.0;
    let mut cdf: Vec<f64> = (1..=KEYS)
        .map(|r| {
            sum += 1.0 / (r as f64).powf(0.99);
            sum
        })
        .collect();
    cdf.iter_mut().for_each(|c| *c /= sum);
    let cache = RcuCache::builder()
        .max_bytes(CAPACITY)
        .hasher(hasher)
        .build();
    let (mut gets, mut hits, mut inserts) = (0u64, 0u64, 0u64);
    let mut state = 19u64;
    for _ in 0..n {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let r = mix(state);
        let u = (r >> 11) as f64 / (1u64 << 53) as f64;
        let rank = cdf.partition_point(|&c| c < u).min(KEYS - 1);
        let key = mix(rank as u64) % KEYS as u64;
        if mix(r) % 100 < 90 {
            gets += 1;
            if black_box(cache_get(&cache, key)).is_some() {
                hits += 1;
                continue;
            }
        }
        inserts += 1;
        cache_insert(&cache, key, vec![key as u8; size_of_key(key)]);
    }
    println!(
        "{n} operations: {gets} gets ({hits} hits, ratio {:.3}), {inserts} inserts",
        hits as f64 / gets.max(1) as f64
    );
}
