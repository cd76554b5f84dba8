//! 64 KiB pages cached in at most 4 MiB; less when PSI/cgroup/RSS say memory is short.
use rcu_reclaim::RcuCache;

fn main() {
    let cache = RcuCache::builder()
        .max_bytes(4 << 20)
        .auto_pressure()
        .build();
    let mut hits = 0;
    for i in 0..20_000u64 {
        let key = i % 1000 % (i % 200 + 1); // small keys are asked for most
        if cache.get(&key, &cache.domain().read_lock()).is_some() {
            hits += 1;
        } else {
            cache.insert(key, vec![0u8; 64 << 10]); // a miss: load, cache (no guard held)
        }
    }
    let (held, cap) = (cache.bytes() >> 10, cache.max_bytes() >> 10);
    println!(
        "{hits} hits of 20000; {} pages, {held} KiB held of {cap} KiB",
        cache.len()
    );
}
