//! Churn that must not grow: thousands of short-lived threads, each
//! registering, retiring with `call` and `defer_drop` inside a section
//! (some nested in the global domain too), and exiting; thousands of
//! domains made and dropped, with work queued, by one thread. Every
//! callback runs, slots are reused and each domain's threads end, so
//! neither memory nor the thread count grows. A binary of its own: its
//! RSS and thread counts would see other tests running beside it (an
//! 18 MiB rise once, in a loaded full-suite run, when these lived among
//! the panic probes).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use rcu_reclaim::{Config, Rcu};

fn rss_kib() -> usize {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find(|l| l.starts_with("VmRSS"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn many_short_lived_threads_lose_nothing_and_do_not_grow() {
    let rcu = Rcu::new(Config::new()).unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    let wave = |n: usize| {
        for _ in 0..n / 8 {
            let hs: Vec<_> = (0..8)
                .map(|k| {
                    let rcu = rcu.clone();
                    let ran = ran.clone();
                    thread::spawn(move || {
                        let g = rcu.read_lock();
                        let r = ran.clone();
                        rcu.call(move || {
                            r.fetch_add(1, Ordering::SeqCst);
                        });
                        rcu.defer_drop(Box::new(vec![0u8; 100]));
                        drop(g);
                        if k == 0 {
                            // leave the section nested in the global domain too
                            let _g = Rcu::global().read_lock();
                            Rcu::global().defer_drop(Box::new(vec![1u8; 100]));
                        }
                    })
                })
                .collect();
            for h in hs {
                h.join().unwrap();
            }
        }
    };
    wave(2000);
    rcu.barrier();
    let base = rss_kib();
    wave(8000);
    rcu.barrier();
    Rcu::global().barrier();
    let after = rss_kib();
    assert_eq!(ran.load(Ordering::SeqCst), 10000);
    eprintln!("RSS after 2000 threads: {base} KiB; after 10000: {after} KiB");
    assert!(after < base + 16 * 1024, "RSS grew {base} -> {after} KiB");
}

fn threads_now() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

#[test]
fn thousands_of_domains_on_one_thread_do_not_grow() {
    let ran = Arc::new(AtomicUsize::new(0));
    let round = |n: usize| {
        for i in 0..n {
            let rcu = Rcu::new(if i % 2 == 0 {
                Config::new()
            } else {
                Config::new().on_demand()
            })
            .unwrap();
            let g = rcu.read_lock();
            let r = ran.clone();
            rcu.call(move || {
                r.fetch_add(1, Ordering::SeqCst);
            });
            rcu.defer_drop(Box::new(vec![0u8; 256]));
            drop(g);
            if i % 3 == 0 {
                rcu.synchronize();
            }
            // dropped with work queued
        }
    };
    round(300);
    let (base_rss, base_threads) = (rss_kib(), threads_now());
    round(1500);
    thread::sleep(Duration::from_millis(200));
    let (rss, threads) = (rss_kib(), threads_now());
    eprintln!("domains: RSS {base_rss} -> {rss} KiB, threads {base_threads} -> {threads}");
    assert_eq!(ran.load(Ordering::SeqCst), 1800);
    assert!(
        threads <= base_threads + 4,
        "threads {base_threads} -> {threads}"
    );
    assert!(rss < base_rss + 16 * 1024, "RSS {base_rss} -> {rss} KiB");
}
