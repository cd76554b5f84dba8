//! A real memory cgroup (v1, as on this machine): a child process under a
//! 100 MiB limit fills an RCU-freed cache, then writes through the page
//! cache until the kernel reclaims. The kernel's `memory.pressure_level`
//! events arrive, RCU enters fast mode and the budget's reclaimer evicts the
//! cache through RCU; the child is never OOM-killed.
//!
//! Where cgroups cannot be created (not mounted, no permission), the test
//! says why and passes without running.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;
use common::{RcuCache, StopOnDrop, ENTRY};
use rcu_reclaim::reclaim::Reclaimer;
use rcu_reclaim::sources::{budget_from_cgroup, CgroupV1Source, PressureMonitor, V1_MEMORY_ROOT};
use rcu_reclaim::{Config, Rcu};

const CHILD: &str = "RCU_RECLAIM_CGROUP_CHILD";
const TEST: &str = "cgroup_v1_page_cache_pressure_drives_fast_mode_without_evicting_the_cache";
const MIB: usize = 1 << 20;
/// Removes the test cgroup when the parent is done (after the child exits).
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for _ in 0..50 {
            if fs::remove_dir(&self.0).is_ok() || !self.0.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("could not remove {}", self.0.display());
    }
}

/// A 40 MiB cache in a 100 MiB cgroup v1, then 300 MiB written through the
/// page cache: the kernel's `memory.pressure_level` events put RCU in fast
/// mode, and a `budget_from_cgroup` budget, which leaves the inactive page
/// cache out of its usage, keeps the cache (counting the page cache, it
/// evicted the whole cache: 13 reclaims, 0 MiB left).
#[test]
fn cgroup_v1_page_cache_pressure_drives_fast_mode_without_evicting_the_cache() {
    if let Some(dir) = std::env::var_os(CHILD) {
        child(Path::new(&dir));
        return;
    }
    let root = Path::new(V1_MEMORY_ROOT);
    if !root.join("cgroup.procs").exists() {
        println!(
            "skipped: no cgroup v1 memory hierarchy at {}",
            root.display()
        );
        return;
    }
    let dir = root.join(format!("rcu-reclaim-test-{}", std::process::id()));
    if let Err(e) = fs::create_dir(&dir) {
        println!(
            "skipped: cannot create {} ({e}); run as root to test real cgroups",
            dir.display()
        );
        return;
    }
    let _cleanup = Cleanup(dir.clone());
    fs::write(dir.join("memory.limit_in_bytes"), (100 * MIB).to_string()).unwrap();

    let out = run_child(
        TEST,
        (CHILD, dir.as_os_str()),
        &dir,
        Duration::from_secs(120),
    );
    let status = out.status;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    let oom = fs::read_to_string(dir.join("memory.oom_control")).unwrap_or_default();
    let killed = oom
        .lines()
        .any(|l| l.starts_with("oom_kill ") && !l.ends_with(" 0"));
    assert!(!killed, "the child was OOM-killed: {oom}\n{stderr}");
    assert!(
        status.success(),
        "child failed: {status}\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("CHILD OK"), "{stdout}\n{stderr}");
}

/// Held while a child runs: one child at a time. Each child fills its own
/// 100 MiB cgroup and has its monitor race the fill; run side by side (the
/// harness runs this file's tests in parallel), a dozen of them on two
/// CPUs starved each other's monitors, and one in a CI run was OOM-killed
/// at a peak that alone it keeps 3-5 MiB under the limit.
static ONE_CHILD_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs this test binary's `test` alone in a child process with `env`
/// set, moved into the cgroup `dir`; its output once it has exited (killed
/// after `limit`). Children run one at a time ([`ONE_CHILD_AT_A_TIME`]).
fn run_child(
    test: &str,
    env: (&str, &std::ffi::OsStr),
    dir: &Path,
    limit: Duration,
) -> std::process::Output {
    // A test that failed while holding it poisons it; the others go on.
    let _alone = ONE_CHILD_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(env.0, env.1)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The child waits until it is in the cgroup (`wait_to_be_moved`).
    fs::write(dir.join("cgroup.procs"), child.id().to_string()).unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("the child did not finish in {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

/// In a child of `run_child`: waits until the parent has moved this
/// process into the cgroup whose path ends with `name`.
fn wait_to_be_moved(name: &str) {
    let t = Instant::now();
    while !fs::read_to_string("/proc/self/cgroup")
        .unwrap()
        .contains(name)
    {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "never moved into {name}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn child(dir: &Path) {
    wait_to_be_moved(&dir.file_name().unwrap().to_string_lossy());
    let rcu = Rcu::new(Config::new()).unwrap();
    let source = CgroupV1Source::for_this_process().unwrap();
    let limit = source.limit().unwrap().expect("the parent set a limit");
    let cache = RcuCache::new(&rcu, 0);
    let reclaimer = Arc::new(Reclaimer::new(&rcu));
    reclaimer.set_oom_handler(|_| {});
    reclaimer.register(cache.clone());
    // Sized and measured by the cgroup itself.
    let budget = Arc::new(budget_from_cgroup(reclaimer.clone()).unwrap());
    assert_eq!(budget.limit(), limit);
    let monitor = PressureMonitor::start(
        &rcu,
        Box::new(source),
        Duration::from_millis(500),
        Some(budget.clone()),
    );

    // 40 MiB of cache, then 300 MiB written through the page cache: the
    // kernel has to reclaim page cache inside the cgroup, and says so.
    for i in 0..(40 * MIB / ENTRY) {
        cache.entries.lock().unwrap().push(vec![i as u8; ENTRY]);
    }
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("cgroup-fill-{}", std::process::id()));
    let mut file = fs::File::create(&path).unwrap();
    let chunk = vec![7u8; MIB];
    let t = Instant::now();
    let charge = || -> usize {
        fs::read_to_string(dir.join("memory.usage_in_bytes"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    // The most the budget counted, and the cgroup's charge then.
    let (mut counted, mut charged) = (0, 0);
    for i in 0..300 {
        file.write_all(&chunk).unwrap();
        let now = budget.usage();
        if now >= counted {
            (counted, charged) = (now, charge());
        }
        // Written back every 16 MiB: the page cache the kernel must
        // reclaim is clean. Dirty pages in a cgroup v1 wait for writeback
        // (which has no throttle there), and a slow disk then had the
        // child OOM-killed before any reclaim could help.
        if i % 16 == 15 {
            file.sync_data().unwrap();
        }
        if monitor.stats().events > 0 && rcu.stats().fast_mode_entries > 0 {
            break;
        }
    }
    drop(file);
    let _ = fs::remove_file(&path);
    // Give the monitor a moment to act on what the kernel said.
    while (monitor.stats().events == 0 || rcu.stats().fast_mode_entries == 0)
        && t.elapsed() < Duration::from_secs(20)
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    // The budget leaves the cgroup's inactive page cache out of its usage
    // (the kernel reclaims it before any OOM): what it counted, while the
    // page cache filled the cgroup, was the cache and the process, under
    // its watermarks.
    let m = monitor.stats();
    let r = reclaimer.stats();
    let s = rcu.stats();
    println!(
        "limit {} MiB; the budget counted at most {} MiB (charged {} MiB then); pressure events {} ({} \
         critical) in {} episodes; fast mode entered {}x; reclaim calls {}; cache left {} MiB; \
         RCU freed {} MiB",
        limit / MIB,
        counted / MIB,
        charged / MIB,
        m.events,
        m.critical,
        m.episodes,
        s.fast_mode_entries,
        r.calls,
        cache.entries.lock().unwrap().len() * ENTRY / MIB,
        s.bytes_freed as usize / MIB,
    );
    assert!(m.events > 0, "no memory.pressure_level event arrived");
    assert!(s.fast_mode_entries > 0, "RCU never entered fast mode");
    // Below `min` (where the budget reclaims directly): the page cache,
    // which filled the cgroup to its limit, is left out. (Not "below
    // `high`": the kernel moves some written pages to its active list,
    // which the budget counts, as a working set does: 82 MiB of a 99 MiB
    // charge in one run in ten of the whole file, the cache whole.)
    assert!(
        counted < budget.watermarks().min,
        "the budget counted {counted} bytes of {charged} charged: page cache counted as ours"
    );
    let left = cache.entries.lock().unwrap().len() * ENTRY;
    assert!(
        left >= 20 * MIB,
        "the budget evicted the cache ({} MiB of 40 left) for the page cache",
        left / MIB
    );
    println!("CHILD OK");
}

const ANCESTOR_CHILD: &str = "RCU_RECLAIM_CGROUP_ANCESTOR_CHILD";
const ANCESTOR_TEST: &str = "a_budget_takes_the_limit_of_the_nearest_limited_ancestor";

/// A process in a cgroup without a limit of its own, under a parent
/// limited to 256 MiB (as a container's limit often sits on a parent): its
/// budget is the parent's limit, measured by the parent's usage.
#[test]
fn a_budget_takes_the_limit_of_the_nearest_limited_ancestor() {
    if let Some(name) = std::env::var_os(ANCESTOR_CHILD) {
        wait_to_be_moved(&name.to_string_lossy());
        let r = Arc::new(Reclaimer::new(Rcu::global()));
        let budget = budget_from_cgroup(r).expect("the parent's limit");
        println!("CHILD LIMIT {}", budget.limit());
        return;
    }
    let root = Path::new(V1_MEMORY_ROOT);
    let outer = root.join(format!("rcu-reclaim-test-anc-{}", std::process::id()));
    if !root.join("cgroup.procs").exists() || fs::create_dir(&outer).is_err() {
        println!("skipped: cannot create a cgroup under {}", root.display());
        return;
    }
    let _outer = Cleanup(outer.clone());
    fs::write(outer.join("memory.limit_in_bytes"), (256 * MIB).to_string()).unwrap();
    let inner = outer.join("inner");
    fs::create_dir(&inner).unwrap();
    let _inner = Cleanup(inner.clone());
    let name = format!("{}/inner", outer.file_name().unwrap().to_string_lossy());
    let env = (ANCESTOR_CHILD, std::ffi::OsStr::new(&name));
    let out = run_child(ANCESTOR_TEST, env, &inner, Duration::from_secs(60));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("CHILD LIMIT {}", 256 * MIB)),
        "{stdout}\n{stderr}"
    );
}

/// Removing a watched cgroup signals every notification registered on it:
/// reported as the source's error, not as critical pressure.
#[test]
fn a_removed_cgroup_is_an_error_not_critical_pressure() {
    use rcu_reclaim::sources::PressureSource;
    let root = Path::new(V1_MEMORY_ROOT);
    let dir = root.join(format!("rcu-reclaim-test-rm-{}", std::process::id()));
    if !root.join("cgroup.procs").exists() || fs::create_dir(&dir).is_err() {
        println!("skipped: cannot create a cgroup under {}", root.display());
        return;
    }
    let mut source = CgroupV1Source::open(&dir).unwrap();
    fs::remove_dir(&dir).unwrap();
    let first = source.wait(Duration::from_secs(5));
    let e = first.expect_err("the removal was taken for pressure");
    assert!(e.reason.contains("the cgroup was removed"), "{e}");
}

const AUTO_CHILD: &str = "RCU_RECLAIM_CGROUP_AUTO_CHILD";
const AUTO_TEST: &str = "an_auto_pressure_cache_survives_filling_past_its_cgroup_limit";

/// A cache of 64 KiB values with `max_bytes` far above its cgroup's
/// 100 MiB limit and `auto_pressure()` (no budget) is filled with 200 MiB:
/// the monitor watches the cgroup's usage against its limit, so the cache
/// shrinks before the OOM killer acts, and what it evicted goes back to
/// the kernel. It was OOM-killed in every run: auto_pressure picked the
/// machine-wide /proc/pressure/memory, which a cgroup's limit never stirs,
/// and the v1 memory.pressure_level events do not come either (anonymous
/// memory without swap is OOM-killed without being scanned).
#[test]
fn an_auto_pressure_cache_survives_filling_past_its_cgroup_limit() {
    if let Some(name) = std::env::var_os(AUTO_CHILD) {
        wait_to_be_moved(&name.to_string_lossy());
        let cache: rcu_reclaim::RcuCache<u64, Vec<u8>> = rcu_reclaim::RcuCache::builder()
            .max_bytes(1 << 30)
            .auto_pressure()
            .build();
        // Memory past the cgroup's limit is never free: the capacity is
        // held to 80 % of it.
        assert_eq!(cache.capacity_bytes(), 80 * MIB);
        // 200 MiB at about 100 MiB/s: the monitor reads the usage every
        // 20 ms, so it sees each 2 MiB of growth (a program that fills
        // memory faster than its monitor polls needs a budget, which
        // checks on every insert: budget_from_cgroup).
        for i in 0..(200 * MIB / (64 << 10)) as u64 {
            let mut v = vec![0u8; 64 << 10];
            for b in v.iter_mut().step_by(4096) {
                *b = i as u8 | 1; // touch every page
            }
            cache.insert(i, v);
            std::thread::sleep(Duration::from_micros(500));
        }
        // The monitor trims the heap as it shrinks the cache; a last
        // event may still be on its way.
        std::thread::sleep(Duration::from_millis(300));
        let usage: usize = fs::read_to_string(
            Path::new(V1_MEMORY_ROOT)
                .join(name)
                .join("memory.usage_in_bytes"),
        )
        .unwrap()
        .trim()
        .parse()
        .unwrap();
        println!(
            "CHILD OK: cache {} MiB, cgroup usage {} MiB",
            cache.bytes() / MIB,
            usage / MIB
        );
        // What the cache evicted is no longer held by the allocator.
        assert!(
            usage < cache.bytes() + 32 * MIB,
            "the cgroup still charges {} MiB for a cache of {} MiB",
            usage / MIB,
            cache.bytes() / MIB
        );
        return;
    }
    in_a_100_mib_cgroup("auto", AUTO_TEST, AUTO_CHILD);
}

const BUDGET_CHILD: &str = "RCU_RECLAIM_CGROUP_BUDGET_CHILD";
const BUDGET_TEST: &str = "a_cgroup_budget_reclaims_to_high_without_emptying_the_cache";

/// A cache tied to `budget_from_cgroup` under a 100 MiB cgroup, filled
/// with 200 MiB of 64 KiB values: reclaim brings the cgroup's usage back to
/// the budget's `high` and keeps the rest of the cache. It emptied the
/// cache: the values it evicted went back to glibc's free lists, not to
/// the kernel, so the cgroup's usage never fell, and reclaim evicted step
/// after step until nothing was left.
#[test]
fn a_cgroup_budget_reclaims_to_high_without_emptying_the_cache() {
    if let Some(name) = std::env::var_os(BUDGET_CHILD) {
        wait_to_be_moved(&name.to_string_lossy());
        let (budget, cache) = cache_on_a_cgroup_budget();
        for i in 0..(200 * MIB / (64 << 10)) as u64 {
            let mut v = vec![0u8; 64 << 10];
            for b in v.iter_mut().step_by(4096) {
                *b = i as u8 | 1; // touch every page
            }
            cache.insert(i, v);
        }
        println!(
            "CHILD OK: cache {} MiB of a {} MiB budget; {:?}",
            cache.bytes() / MIB,
            budget.limit() / MIB,
            budget.stats()
        );
        assert!(
            cache.bytes() > budget.limit() / 4,
            "reclaim left {} bytes in the cache",
            cache.bytes()
        );
        return;
    }
    in_a_100_mib_cgroup("budget", BUDGET_TEST, BUDGET_CHILD);
}

const HEAVY_CHILD: &str = "RCU_RECLAIM_CGROUP_HEAVY_CHILD";
const HEAVY_TEST: &str = "a_cgroup_budget_evicts_heavy_values_by_the_step_not_the_whole_cache";

/// As `a_cgroup_budget_reclaims_to_high_without_emptying_the_cache`, with
/// values of 64 KiB..1 MiB: once the cache has filled to the budget,
/// reclaim keeps it over half the limit (the usage back at `high`, 80 %). Each of the budget's steps (1.5 MiB) evicted a
/// batch of 128 values, 46 to 58 MiB, the whole cache: it was emptied
/// again and again with the cgroup's usage far under `high`.
#[test]
fn a_cgroup_budget_evicts_heavy_values_by_the_step_not_the_whole_cache() {
    if let Some(name) = std::env::var_os(HEAVY_CHILD) {
        wait_to_be_moved(&name.to_string_lossy());
        let (budget, cache) = cache_on_a_cgroup_budget();
        // The least the cache held once it had first reached 60 MiB.
        let (mut full, mut least) = (false, usize::MAX);
        let mut filled = 0;
        for i in 0u64.. {
            // 64 KiB..1 MiB, mixed
            let h = common::rng::mix(i + 1);
            let len = (64 + h % (1024 - 63)) as usize * 1024;
            if filled + len > 300 * MIB {
                break;
            }
            filled += len;
            let mut v = vec![0u8; len];
            for b in v.iter_mut().step_by(4096) {
                *b = i as u8 | 1; // touch every page
            }
            cache.insert(i, v);
            full |= cache.bytes() >= 60 * MIB;
            if full {
                least = least.min(cache.bytes());
            }
        }
        println!(
            "CHILD OK: cache {} MiB, at least {} MiB once full, of a {} MiB budget; {:?}",
            cache.bytes() / MIB,
            least / MIB,
            budget.limit() / MIB,
            budget.stats()
        );
        assert!(full, "the cache never reached 60 MiB");
        assert!(
            least > budget.limit() / 2,
            "reclaim left {least} bytes in the cache ({:?})",
            budget.stats()
        );
        return;
    }
    in_a_100_mib_cgroup("heavy", HEAVY_TEST, HEAVY_CHILD);
}

const WARNED_CHILD: &str = "RCU_RECLAIM_CGROUP_WARNED_CHILD";
const WARNED_TEST: &str = "caches_that_the_cgroup_limit_would_kill_first_are_warned_about";

/// In a 100 MiB cgroup, a cache tied to a 1 GiB budget (the kernel's OOM
/// killer acts before the budget reclaims) and one of 1 GiB with neither a
/// budget nor a pressure source are each warned about, on standard error
/// (no `tracing` subscriber), naming the fix; a cache well under the limit
/// is not. Both were silent: a helper's program filling them was killed.
#[test]
fn caches_that_the_cgroup_limit_would_kill_first_are_warned_about() {
    if let Some(name) = std::env::var_os(WARNED_CHILD) {
        wait_to_be_moved(&name.to_string_lossy());
        let reclaimer = Arc::new(Reclaimer::new(Rcu::global()));
        let budget = Arc::new(rcu_reclaim::reclaim::MemoryBudget::new(
            1 << 30,
            reclaimer,
            || 0,
        ));
        let _budgeted: rcu_reclaim::RcuCache<u64, Vec<u8>> =
            rcu_reclaim::RcuCache::builder().budget(&budget).build();
        let _big: rcu_reclaim::RcuCache<u64, Vec<u8>> =
            rcu_reclaim::RcuCache::builder().max_bytes(1 << 30).build();
        let _small: rcu_reclaim::RcuCache<u64, Vec<u8>> =
            rcu_reclaim::RcuCache::builder().max_bytes(8 << 20).build();
        println!("CHILD OK");
        return;
    }
    let Some(stderr) = in_a_100_mib_cgroup("warned", WARNED_TEST, WARNED_CHILD) else {
        return;
    };
    assert!(
        stderr.contains("more than this process's cgroup memory limit")
            && stderr.contains("budget_from_cgroup"),
        "{stderr}"
    );
    assert!(
        stderr.contains("with no budget and no pressure source")
            && stderr.contains(".auto_pressure()"),
        "{stderr}"
    );
    assert!(!stderr.contains("max_bytes 8388608"), "{stderr}");
}

/// Runs `test` again as a child (with `child_env` set to the cgroup's
/// name) in a fresh 100 MiB cgroup v1, and checks that it survived and
/// said `CHILD OK`; returns its standard error; skips (`None`), saying why,
/// where no cgroup can be made.
fn in_a_100_mib_cgroup(tag: &str, test: &str, child_env: &str) -> Option<String> {
    let root = Path::new(V1_MEMORY_ROOT);
    let dir = root.join(format!("rcu-reclaim-test-{tag}-{}", std::process::id()));
    if !root.join("cgroup.procs").exists() || fs::create_dir(&dir).is_err() {
        println!(
            "skipped: cannot create a cgroup under {} (no cgroup v1 memory hierarchy, or not \
             root)",
            root.display()
        );
        return None;
    }
    let _cleanup = Cleanup(dir.clone());
    fs::write(dir.join("memory.limit_in_bytes"), (100 * MIB).to_string()).unwrap();
    let name = dir.file_name().unwrap().to_os_string();
    let out = run_child(test, (child_env, &name), &dir, Duration::from_secs(60));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    // How close it came: the cgroup's peak usage.
    if let Ok(peak) = fs::read_to_string(dir.join("memory.max_usage_in_bytes")) {
        if let Ok(peak) = peak.trim().parse::<usize>() {
            println!(
                "{tag}: peak usage {:.1} MiB of 100",
                peak as f64 / MIB as f64
            );
        }
    }
    let oom = fs::read_to_string(dir.join("memory.oom_control")).unwrap_or_default();
    assert!(
        out.status.success(),
        "{}: {oom}\n{stdout}\n{stderr}",
        out.status
    );
    assert!(stdout.contains("CHILD OK"), "{stdout}\n{stderr}");
    Some(stderr.into_owned())
}

const MANY_CHILD: &str = "RCU_RECLAIM_CGROUP_MANY_CHILD";
const MANY_TEST: &str = "many_threads_storing_at_full_speed_keep_to_their_cgroup_limit";

#[path = "../benches/support/many_writers.rs"]
mod many_writers;

/// 64 threads on this machine's few CPUs each read one cell and store a
/// 64-byte value into it at full speed for 3 s, beside `auto_pressure`:
/// the worker that frees the values gets a CPU rarely, and its frees wait
/// for glibc's arena locks held by preempted threads; the cgroup's
/// allowance must still bound the garbage. (A guard: this debug build
/// peaks at 21-66 MiB. The release build of `examples/cgroup_fill many`,
/// 256 threads in a 256 MiB cgroup, was OOM-killed in 5 runs of 5 before
/// the waits over the allowance grew patient with a worker's pauses near
/// the limit, `policy::headroom_stuck_ms`; `garbage_bound_wait.rs` has the
/// test that failed before it.)
#[test]
fn many_threads_storing_at_full_speed_keep_to_their_cgroup_limit() {
    if let Some(name) = std::env::var_os(MANY_CHILD) {
        wait_to_be_moved(&name.to_string_lossy());
        let _monitor = rcu_reclaim::sources::auto_pressure(256 * MIB);
        let cell = std::sync::Arc::new(rcu_reclaim::RcuCell::new(many_writers::Checked::new(0, 0)));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writers = many_writers::spawn(64, &cell, &stop);
        std::thread::sleep(Duration::from_secs(3));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let stores: u64 = writers.into_iter().map(|w| w.join().unwrap()).sum();
        rcu_reclaim::Rcu::global().barrier();
        println!("CHILD OK: {stores} stores");
        return;
    }
    in_a_100_mib_cgroup("many", MANY_TEST, MANY_CHILD);
}

const CROSSING_CHILD: &str = "RCU_RECLAIM_CGROUP_CROSSING_CHILD";
const CROSSING_TEST: &str = "a_crossing_of_a_usage_mark_is_signalled_by_the_kernel";

/// On cgroup v1 the kernel signals when usage crosses a mark (usage
/// thresholds through `cgroup.event_control`): a `CgroupUsageSource` that
/// reads the usage only every 10 s reports a medium event as soon as the
/// process fills past 85 % of its limit. A poll alone saw such a crossing
/// up to 20 ms late (30 MB at the speed of a thread filling fresh
/// memory), and `auto_pressure` caches filled at full speed were
/// OOM-killed in 1 to 2 runs of 5.
#[test]
fn a_crossing_of_a_usage_mark_is_signalled_by_the_kernel() {
    use rcu_reclaim::sources::{CgroupUsageSource, Level, PressureSource};
    if let Some(name) = std::env::var_os(CROSSING_CHILD) {
        wait_to_be_moved(&name.to_string_lossy());
        let usage_file = Path::new(V1_MEMORY_ROOT)
            .join(&name)
            .join("memory.usage_in_bytes");
        let mut source = CgroupUsageSource::new(&usage_file, 100 * MIB, Duration::from_secs(10));
        assert!(source.signals_crossings(), "{}", source.describe());
        // auto_pressure's monitor (PSI or cgroup v1 events, and the usage)
        // wakes on the same signal.
        let monitor = rcu_reclaim::sources::auto_pressure(usize::MAX);
        let watched = monitor.stats().source;
        assert!(
            watched.contains("the kernel's signal of a crossing"),
            "{watched}"
        );
        // The first read: far under the marks.
        assert_eq!(source.wait(Duration::from_millis(1)).unwrap(), None);
        let first_read = Instant::now();
        let mut held = vec![0u8; 90 * MIB];
        for b in held.iter_mut().step_by(4096) {
            *b = 1; // charged page by page
        }
        let event = source.wait(Duration::from_millis(500)).unwrap();
        // Within a second of the first read only the kernel's signal can
        // have woken the source (its next read is a second on).
        if first_read.elapsed() < Duration::from_millis(900) {
            assert_eq!(event, Some(Level::Medium), "{}", source.describe());
        }
        while monitor.stats().events == 0 {
            assert!(
                first_read.elapsed() < Duration::from_secs(10),
                "{:?}",
                monitor.stats()
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        std::hint::black_box(&held);
        println!(
            "CHILD OK: {event:?} {:?} after the first read; monitor {:?}",
            first_read.elapsed(),
            monitor.stats()
        );
        return;
    }
    // Another file than a cgroup's usage takes no thresholds.
    let other = std::env::temp_dir().join(format!("rcu-reclaim-usage-{}", std::process::id()));
    fs::write(&other, "1\n").unwrap();
    assert!(!CgroupUsageSource::new(&other, MIB, Duration::from_secs(1)).signals_crossings());
    fs::remove_file(&other).unwrap();
    in_a_100_mib_cgroup("crossing", CROSSING_TEST, CROSSING_CHILD);
}

const HOG_CHILD: &str = "RCU_RECLAIM_CGROUP_HOG_CHILD";
const HOG_TEST: &str = "an_auto_pressure_cache_beside_a_growing_hog_survives";

/// An `auto_pressure` cache (capped at 1 GiB, no budget) kept full by a
/// filler thread in a 100 MiB cgroup, beside a hog that grows to 60 MiB
/// in 2 MiB steps every 20 ms and frees it, five times: the cache gives the
/// hog room each time. It was OOM-killed in 9 of 12 runs: its backlog
/// allowance was an eighth of its 1 GiB cap, and a second halving 50 ms
/// after the first stayed charged to the cgroup (glibc's free lists)
/// until the monitor's next trim, 100 ms after the last.
#[test]
fn an_auto_pressure_cache_beside_a_growing_hog_survives() {
    if let Some(name) = std::env::var_os(HOG_CHILD) {
        wait_to_be_moved(&name.to_string_lossy());
        let cache: Arc<rcu_reclaim::RcuCache<u64, Vec<u8>>> = Arc::new(
            rcu_reclaim::RcuCache::builder()
                .max_bytes(1 << 30)
                .auto_pressure()
                .build(),
        );
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (c, s) = (cache.clone(), stop.clone());
        let filler = std::thread::spawn(move || {
            let mut i = 0u64;
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                let key = i % 2000;
                if c.get(&key, &c.domain().read_lock()).is_none() {
                    let mut v = vec![0u8; 64 << 10];
                    for b in v.iter_mut().step_by(4096) {
                        *b = i as u8 | 1; // touch every page
                    }
                    c.insert(key, v);
                }
                i += 1;
                if i % 64 == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        });
        for cycle in 0..5 {
            let mut hog = Vec::new();
            for _ in 0..30 {
                let mut v = vec![0u8; 2 * MIB];
                for b in v.iter_mut().step_by(4096) {
                    *b = 1;
                }
                hog.push(v);
                std::thread::sleep(Duration::from_millis(20));
            }
            println!(
                "cycle {cycle}: hog 60 MiB, cache {} MiB",
                cache.bytes() / MIB
            );
            drop(hog);
            std::thread::sleep(Duration::from_millis(1200));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        filler.join().unwrap();
        println!("CHILD OK: cache {} MiB", cache.bytes() / MIB);
        return;
    }
    in_a_100_mib_cgroup("hog", HOG_TEST, HOG_CHILD);
}

const WRITERS_CHILD: &str = "RCU_RECLAIM_CGROUP_WRITERS_CHILD";
const WRITERS_TEST: &str = "writers_that_never_check_the_budget_survive_its_pressure";

/// In a 100 MiB cgroup with 50 MiB held, two writers store 1 MiB values
/// into an `RcuCell` at full speed (and retire 256 KiB ones) beside two
/// readers, under `auto_pressure_for` a cgroup budget, and never call
/// `MemoryBudget::check`: once the pressure source puts the domain in fast
/// mode, the writers wait for their garbage (the pressure throttle), so
/// what waits for a grace period cannot fill the cgroup. Without the
/// throttle up to 28 MiB waited for grace periods that the grace-period
/// thread, short of CPU, could not run, and the child was OOM-killed in 3
/// runs of 3.
#[test]
fn writers_that_never_check_the_budget_survive_its_pressure() {
    if let Some(name) = std::env::var_os(WRITERS_CHILD) {
        wait_to_be_moved(&name.to_string_lossy());
        let budget = Arc::new(budget_from_cgroup(Arc::new(Reclaimer::new(Rcu::global()))).unwrap());
        let _monitor = rcu_reclaim::sources::auto_pressure_for(&budget);
        let _live: Vec<Vec<u8>> = (0..50).map(|i| touched(i, MIB)).collect();
        let cell = Arc::new(rcu_reclaim::RcuCell::new(touched(0, MIB)));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (c, s) = (cell.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut n = 0u64;
                    while !s.load(std::sync::atomic::Ordering::Relaxed) {
                        let g = Rcu::global().read_lock();
                        n += c.load(&g).map_or(0, |v| u64::from(v[4096]));
                    }
                    n
                })
            })
            .collect();
        let _stop = StopOnDrop(&stop);
        let writers: Vec<_> = (0..2u64)
            .map(|w| {
                let c = cell.clone();
                std::thread::spawn(move || {
                    for i in 0..1500u64 {
                        c.store(Box::new(touched(i * 2 + w, MIB)));
                        if i % 2 == 0 {
                            Rcu::global().defer_drop(Box::new(touched(i, 256 << 10)));
                        }
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for r in readers {
            r.join().unwrap();
        }
        let s = Rcu::global().stats();
        println!(
            "CHILD OK: {} pressure throttles, {} ms waiting",
            s.pressure_throttles,
            s.pressure_throttle_us / 1000
        );
        return;
    }
    in_a_100_mib_cgroup("writers", WRITERS_TEST, WRITERS_CHILD);
}

const BOUND_CHILD: &str = "RCU_RECLAIM_CGROUP_BOUND_CHILD";
const BOUND_TEST: &str =
    "writers_behind_a_stalled_reader_keep_to_the_cgroup_limit_without_a_signal";

/// Two writers store 1 MiB values beside 40 MiB of live data in a 100 MiB
/// cgroup, while a reader holds its section for 150 ms every 200 ms (as a
/// reader preempted on a loaded machine does), with no pressure monitor:
/// the garbage is bounded by the cgroup's limit (`bound_garbage_by_cgroup`)
/// and the writers wait for it, so the usage stays under the limit's
/// medium mark. Without the bound the child was OOM-killed (set
/// `RCU_RECLAIM_CGROUP_UNBOUND=1` to see it): a monitor reads the usage
/// every 20 ms at best, from a thread that, on a loaded machine, may not
/// get a CPU, and two writers had piled 64 MiB of garbage in 160 ms.
#[test]
fn writers_behind_a_stalled_reader_keep_to_the_cgroup_limit_without_a_signal() {
    if let Some(name) = std::env::var_os(BOUND_CHILD) {
        let name = name.to_string_lossy().into_owned();
        wait_to_be_moved(&name);
        let rcu = Rcu::global();
        if std::env::var_os("RCU_RECLAIM_CGROUP_UNBOUND").is_none() {
            let limit = rcu_reclaim::sources::bound_garbage_by_cgroup(rcu).unwrap();
            assert_eq!(limit, 100 * MIB);
        }
        let _live: Vec<Vec<u8>> = (0..40).map(|i| touched(i, MIB)).collect();
        let cell = Arc::new(rcu_reclaim::RcuCell::new(touched(0, MIB)));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (c, s) = (cell.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !s.load(std::sync::atomic::Ordering::Relaxed) {
                    let g = Rcu::global().read_lock();
                    n += c.load(&g).map_or(0, |v| u64::from(v[4096]));
                    std::thread::sleep(Duration::from_millis(150));
                    drop(g);
                    std::thread::sleep(Duration::from_millis(50));
                }
                n
            })
        };
        let _stop = StopOnDrop(&stop);
        let writers: Vec<_> = (0..2u64)
            .map(|w| {
                let c = cell.clone();
                std::thread::spawn(move || {
                    let start = Instant::now();
                    let mut i = 0;
                    while start.elapsed() < Duration::from_secs(2) {
                        c.store(Box::new(touched(i * 2 + w, MIB)));
                        i += 1;
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        reader.join().unwrap();
        let peak = peak_usage(&name);
        let s = rcu.stats();
        println!(
            "CHILD OK: peak usage {} MiB, {} waits, {} ms waiting",
            peak / MIB,
            s.headroom_waits,
            s.headroom_wait_us / 1000
        );
        assert!(s.headroom_waits > 0, "{s:?}");
        // 85 MiB is the medium mark; the values being written and the
        // allocator's slack come on top of the garbage the bound counts.
        assert!(peak < 90 * MIB, "peak usage {} MiB", peak / MIB);
        return;
    }
    in_a_100_mib_cgroup("bound", BOUND_TEST, BOUND_CHILD);
}

/// `len` bytes with every page touched (charged to the cgroup).
fn touched(seed: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    for b in v.iter_mut().step_by(4096) {
        *b = seed as u8 | 1;
    }
    v
}

const CALLS_CHILD: &str = "RCU_RECLAIM_CGROUP_CALLS_CHILD";
const CALLS_TEST: &str = "a_flood_of_calls_that_book_no_bytes_keeps_to_the_cgroup_limit";
const HEAVY_CALLS_CHILD: &str = "RCU_RECLAIM_CGROUP_HEAVY_CALLS_CHILD";
const HEAVY_CALLS_TEST: &str =
    "a_flood_of_heavy_calls_that_book_no_bytes_keeps_to_the_cgroup_limit";

/// Four threads queue, for 2 s, `call` closures that each own 4 KiB (and
/// book none) in a 100 MiB cgroup, with `auto_pressure` kept alive: the
/// entries outstanding (most in the worker's hands) are bounded by their
/// count while the usage is over the limit's mark or a signal is held, and
/// the callers wait for them. Before, neither the pressure throttle nor
/// the bound under the limit (both count bytes) waited, and the child was
/// OOM-killed within 0.4-3 s in every run.
#[test]
fn a_flood_of_calls_that_book_no_bytes_keeps_to_the_cgroup_limit() {
    if let Some(name) = std::env::var_os(CALLS_CHILD) {
        flood_of_calls(&name.to_string_lossy(), 4096);
        return;
    }
    in_a_100_mib_cgroup("calls", CALLS_TEST, CALLS_CHILD);
}

/// The same with closures that own 64 KiB each: a thread's page of calls
/// (252 entries, 16 MiB of such closures) went to its shard only when
/// full, and the bound looks at the backlog per page handed off: killed
/// in every run. While memory is short a page of calls now goes at 16
/// entries, and over the limit's mark 256 outstanding make callers wait.
#[test]
fn a_flood_of_heavy_calls_that_book_no_bytes_keeps_to_the_cgroup_limit() {
    if let Some(name) = std::env::var_os(HEAVY_CALLS_CHILD) {
        flood_of_calls(&name.to_string_lossy(), 64 << 10);
        return;
    }
    in_a_100_mib_cgroup("heavy-calls", HEAVY_CALLS_TEST, HEAVY_CALLS_CHILD);
}

/// The child of the two tests above, in the cgroup `name`: four threads
/// queue closures owning `bytes` each for 2 s.
fn flood_of_calls(name: &str, bytes: usize) {
    wait_to_be_moved(name);
    let rcu = Rcu::global();
    let _monitor = rcu_reclaim::sources::auto_pressure(512 << 20);
    let ws: Vec<_> = (0..4u64)
        .map(|w| {
            std::thread::spawn(move || {
                let start = Instant::now();
                let mut i = 0u64;
                while start.elapsed() < Duration::from_secs(2) {
                    let v = touched(i ^ w, bytes);
                    Rcu::global().call(move || drop(v));
                    i += 1;
                }
            })
        })
        .collect();
    for w in ws {
        w.join().unwrap();
    }
    rcu.barrier();
    let peak = peak_usage(name);
    let s = rcu.stats();
    println!(
        "CHILD OK: peak usage {} MiB, {} backlog waits, {} ms waiting",
        peak / MIB,
        s.call_backlog_waits,
        s.call_backlog_wait_us / 1000
    );
    // The bound must have engaged, unless the flood never came near the
    // limit (a machine too loaded to queue fast enough: 56 MiB at most
    // under a load average of 25 on two CPUs), where it had no need to.
    if peak < 3 * 100 * MIB / 4 {
        println!(
            "the flood peaked at {} MiB, under the mark: no wait needed",
            peak / MIB
        );
    } else {
        assert!(s.call_backlog_waits > 0, "{s:?}");
    }
}

/// A cache of up to 1 GiB tied to a budget from this process's cgroup
/// (whose reclaimer declares out-of-memory quietly).
fn cache_on_a_cgroup_budget() -> (
    Arc<rcu_reclaim::reclaim::MemoryBudget>,
    rcu_reclaim::RcuCache<u64, Vec<u8>>,
) {
    let reclaimer = Arc::new(Reclaimer::new(Rcu::global()));
    reclaimer.set_oom_handler(|_| {});
    let budget = Arc::new(budget_from_cgroup(reclaimer).unwrap());
    let cache = rcu_reclaim::RcuCache::builder()
        .max_bytes(1 << 30)
        .budget(&budget)
        .build();
    (budget, cache)
}

/// The highest usage of the cgroup v1 `name` so far.
fn peak_usage(name: &str) -> usize {
    fs::read_to_string(
        Path::new(V1_MEMORY_ROOT)
            .join(name)
            .join("memory.max_usage_in_bytes"),
    )
    .unwrap()
    .trim()
    .parse()
    .unwrap()
}
