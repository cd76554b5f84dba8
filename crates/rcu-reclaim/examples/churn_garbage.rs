//! Peak garbage during a sustained churn: ours vs crossbeam-epoch.
//!
//! ```text
//! cargo run --release -p rcu-reclaim --example churn_garbage [seconds]
//! ```
//!
//! A counting global allocator measures live heap bytes. One writer
//! replaces a 1 KiB value in a shared pointer as fast as it can and defers
//! the old one; two readers read it in short sections. Peak live bytes minus
//! the steady live set is the garbage waiting to be freed.

#[path = "support/args.rs"]
mod args;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator and only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded contract.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

type Payload = [u8; 1024];

/// Runs `writer_step` (one update) as fast as possible for `secs` with two
/// readers running `read`; returns (updates/s, peak garbage bytes).
fn churn(
    secs: f64,
    read: impl Fn() + Send + Sync + 'static,
    mut writer_step: impl FnMut(),
) -> (f64, usize) {
    let read = Arc::new(read);
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (read, stop) = (read.clone(), stop.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    read();
                }
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(50));
    let base = LIVE.load(Ordering::Relaxed);
    let mut peak = base;
    let start = Instant::now();
    let mut updates = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        for _ in 0..64 {
            writer_step();
        }
        updates += 64;
        peak = peak.max(LIVE.load(Ordering::Relaxed));
    }
    let rate = updates as f64 / start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().unwrap();
    }
    (rate, peak.saturating_sub(base))
}

fn main() {
    let args = args::Args::from_env("churn_garbage", "[SECONDS: 0.001 to 3600, default 3]");
    let secs: f64 = args.number(0, "SECONDS", args::SECS, 3.0);
    args.at_most(1);

    let rcu = rcu_reclaim::Rcu::new(rcu_reclaim::Config::new()).unwrap();
    let cell = Arc::new(rcu_reclaim::RcuCell::new_in(
        &rcu,
        Some(Box::new([0u8; 1024])),
    ));
    let (r2, c2) = (rcu.clone(), cell.clone());
    let ours = churn(
        secs,
        move || {
            let g = r2.read_lock();
            std::hint::black_box(c2.load(&g).map(|p| p[0]));
        },
        || cell.store(Box::new([1u8; 1024])),
    );
    let st = rcu.stats();
    eprintln!(
        "ours: {} grace periods ({} parks), {} pages freed, {} lazy flushes",
        st.gp_completed, st.writer_parks, st.pages_freed, st.lazy_flushes
    );
    rcu.barrier();
    drop(cell);

    use crossbeam_epoch::{self as epoch, Atomic, Owned};
    let shared: Arc<Atomic<Payload>> = Arc::new(Atomic::new([0u8; 1024]));
    let s2 = shared.clone();
    let cb = churn(
        secs,
        move || {
            let g = epoch::pin();
            // SAFETY: loaded under a pin; the pointer is valid until unpinned.
            std::hint::black_box(unsafe { s2.load(Ordering::Acquire, &g).as_ref() }.map(|p| p[0]));
        },
        || {
            let g = epoch::pin();
            let old = shared.swap(Owned::new([1u8; 1024]), Ordering::AcqRel, &g);
            // SAFETY: `old` is unlinked; readers pinned now finish before it is freed.
            unsafe { g.defer_destroy(old) };
        },
    );

    println!("| library | updates/s | peak garbage |");
    println!("|---|---|---|");
    for (name, (rate, peak)) in [
        ("rcu-reclaim (RcuCell::store)", ours),
        ("crossbeam-epoch", cb),
    ] {
        println!(
            "| {name} | {:.2} M | {:.1} MiB |",
            rate / 1e6,
            peak as f64 / (1 << 20) as f64
        );
    }
    println!(
        "ratio of peak garbage, ours / crossbeam: {:.2}",
        ours.1 as f64 / cb.1.max(1) as f64
    );
}
