//! What rcu-reclaim's own machinery cost during a run: grace periods and
//! `membarrier` calls per second and what each took, the CPU time of its grace-period thread
//! and callback workers (read from `/proc/self/task`), and the writers'
//! waits for held-up grace periods, so a faster pace is weighed against
//! what it spends.

use serde::{Deserialize, Serialize};

/// Counters of a domain at one moment.
#[derive(Clone, Copy, Debug, Default)]
pub struct EngineSample {
    pub grace_periods: u64,
    /// Of those, run in expedited mode.
    pub expedited_gps: u64,
    pub membarriers: u64,
    /// Grace periods started with a fence instead of `membarrier`, the
    /// readers fencing (`Stats::fenced_gps`).
    pub fenced_gps: u64,
    /// Their time so far, in microseconds.
    pub membarrier_us: u64,
    /// CPU time (clock ticks) of the domain's grace-period thread so far.
    pub gp_thread_ticks: u64,
    /// CPU time (clock ticks) of its callback workers so far.
    pub worker_ticks: u64,
    /// Writers' waits for held-up grace periods so far, and their time (µs).
    pub held_up_waits: u64,
    pub held_up_wait_us: u64,
}

impl EngineSample {
    /// The counters of a domain from its stats `s`, and its threads' CPU
    /// time from `/proc`.
    pub fn take(s: &rcu_reclaim::stats::Stats) -> EngineSample {
        let (gp_thread_ticks, worker_ticks) = thread_ticks(s.domain);
        EngineSample {
            grace_periods: s.gp_completed,
            expedited_gps: s.expedited_gps,
            membarriers: s.membarriers,
            fenced_gps: s.fenced_gps,
            membarrier_us: s.membarrier_us,
            gp_thread_ticks,
            worker_ticks,
            held_up_waits: s.held_up_waits,
            held_up_wait_us: s.held_up_wait_us,
        }
    }
}

/// The engine's cost over a run.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct EngineReport {
    pub grace_periods_per_sec: f64,
    /// Of those, expedited (a writer or a reclaimer waiting for one).
    pub expedited_per_sec: f64,
    pub membarriers_per_sec: f64,
    /// Grace periods per second that started with a fence instead of
    /// `membarrier`, the readers fencing (adaptive reader fences).
    #[serde(default)]
    pub fenced_gps_per_sec: f64,
    /// `membarrier` calls per MiB retired.
    pub membarriers_per_retired_mib: f64,
    /// What one `membarrier` call took on average, in µs (an interrupt to
    /// every CPU running one of the process's threads: dearer in a virtual
    /// machine).
    #[serde(default)]
    pub membarrier_us_each: f64,
    /// The callers' time in `membarrier`, % of one CPU.
    #[serde(default)]
    pub membarrier_cpu_pct: f64,
    /// The grace-period thread's CPU time, % of one CPU.
    pub gp_thread_cpu_pct: f64,
    /// The callback workers' CPU time together, % of one CPU.
    pub workers_cpu_pct: f64,
    /// Writers' waits for held-up grace periods per second.
    pub held_up_waits_per_sec: f64,
    /// Their time, % of one thread's time.
    pub held_up_wait_pct: f64,
}

impl EngineReport {
    /// From samples taken at the start and the end of a run of `secs`
    /// seconds that retired `retired` bytes.
    pub fn between(a: &EngineSample, b: &EngineSample, secs: f64, retired: u64) -> EngineReport {
        let secs = secs.max(1e-9);
        let per_s = |x: u64, y: u64| y.saturating_sub(x) as f64 / secs;
        let cpu = |x: u64, y: u64| 100.0 * y.saturating_sub(x) as f64 / clock_ticks() / secs;
        let membarriers = b.membarriers.saturating_sub(a.membarriers) as f64;
        EngineReport {
            grace_periods_per_sec: per_s(a.grace_periods, b.grace_periods),
            expedited_per_sec: per_s(a.expedited_gps, b.expedited_gps),
            membarriers_per_sec: per_s(a.membarriers, b.membarriers),
            fenced_gps_per_sec: per_s(a.fenced_gps, b.fenced_gps),
            membarriers_per_retired_mib: if retired > 0 {
                membarriers / (retired as f64 / (1 << 20) as f64)
            } else {
                0.0
            },
            membarrier_us_each: if membarriers > 0.0 {
                b.membarrier_us.saturating_sub(a.membarrier_us) as f64 / membarriers
            } else {
                0.0
            },
            membarrier_cpu_pct: per_s(a.membarrier_us, b.membarrier_us) / 1e4,
            gp_thread_cpu_pct: cpu(a.gp_thread_ticks, b.gp_thread_ticks),
            workers_cpu_pct: cpu(a.worker_ticks, b.worker_ticks),
            held_up_waits_per_sec: per_s(a.held_up_waits, b.held_up_waits),
            held_up_wait_pct: per_s(a.held_up_wait_us, b.held_up_wait_us) / 1e4,
        }
    }

    /// The mean of `reports` (one per round).
    pub fn mean(reports: &[EngineReport]) -> Option<EngineReport> {
        let n = reports.len() as f64;
        (!reports.is_empty()).then(|| {
            let m = |f: fn(&EngineReport) -> f64| reports.iter().map(f).sum::<f64>() / n;
            EngineReport {
                grace_periods_per_sec: m(|r| r.grace_periods_per_sec),
                expedited_per_sec: m(|r| r.expedited_per_sec),
                membarriers_per_sec: m(|r| r.membarriers_per_sec),
                fenced_gps_per_sec: m(|r| r.fenced_gps_per_sec),
                membarriers_per_retired_mib: m(|r| r.membarriers_per_retired_mib),
                membarrier_us_each: m(|r| r.membarrier_us_each),
                membarrier_cpu_pct: m(|r| r.membarrier_cpu_pct),
                gp_thread_cpu_pct: m(|r| r.gp_thread_cpu_pct),
                workers_cpu_pct: m(|r| r.workers_cpu_pct),
                held_up_waits_per_sec: m(|r| r.held_up_waits_per_sec),
                held_up_wait_pct: m(|r| r.held_up_wait_pct),
            }
        })
    }
}

/// The process's CPU time so far, user and system, in seconds (every
/// thread: the bench's, the engine's, its own sampler).
pub fn process_cpu_secs() -> (f64, f64) {
    // SAFETY: an all-zero `rusage` is a valid value of that plain C struct.
    let mut r: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `r` is a valid, writable `rusage`; RUSAGE_SELF needs nothing else.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut r) } != 0 {
        return (0.0, 0.0);
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (secs(r.ru_utime), secs(r.ru_stime))
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// CPU ticks (user + system) of domain `id`'s grace-period thread and of
/// its workers, summed over `/proc/self/task`. Threads are told apart by
/// name: `rcu-gp-<id>` and `rcu-cb-<id>-…`.
fn thread_ticks(id: u64) -> (u64, u64) {
    let (gp_name, cb_prefix) = (format!("rcu-gp-{id}"), format!("rcu-cb-{id}-"));
    let (mut gp, mut cb) = (0, 0);
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return (0, 0);
    };
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let Some((name, ticks)) = parse_stat(&stat) else {
            continue;
        };
        if name == gp_name {
            gp += ticks;
        } else if name.starts_with(&cb_prefix) {
            cb += ticks;
        }
    }
    (gp, cb)
}

/// The name and user + system ticks from a `/proc/<pid>/task/<tid>/stat`
/// line: `tid (name) state ppid … utime stime …` (utime and stime are the
/// 14th and 15th fields; the name may hold spaces and parentheses).
fn parse_stat(stat: &str) -> Option<(&str, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?;
    let mut rest = stat.get(close + 1..)?.split_whitespace();
    // Fields 3..=13 come before utime.
    let utime: u64 = rest.nth(11)?.parse().ok()?;
    let stime: u64 = rest.next()?.parse().ok()?;
    Some((name, utime + stime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_give_name_and_ticks() {
        let line = "4242 (rcu-cb-3-c1) S 1 1 1 0 -1 4194624 10 0 0 0 17 5 0 0 20 0 1 0 99 0 0";
        assert_eq!(parse_stat(line), Some(("rcu-cb-3-c1", 22)));
        let odd = "7 (a) b (c)) R 1 1 1 0 -1 0 0 0 0 0 3 4 0 0";
        assert_eq!(parse_stat(odd), Some(("a) b (c)", 7)));
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) S 1"), None);
    }

    #[test]
    fn reports_are_rates_over_the_run() {
        let a = EngineSample::default();
        let b = EngineSample {
            grace_periods: 200,
            expedited_gps: 30,
            membarriers: 100,
            fenced_gps: 60,
            membarrier_us: 1_500,
            gp_thread_ticks: 0,
            worker_ticks: 0,
            held_up_waits: 10,
            held_up_wait_us: 20_000,
        };
        let r = EngineReport::between(&a, &b, 2.0, 50 << 20);
        assert_eq!(r.grace_periods_per_sec, 100.0);
        assert_eq!(r.expedited_per_sec, 15.0);
        assert_eq!(r.membarriers_per_sec, 50.0);
        assert_eq!(r.fenced_gps_per_sec, 30.0);
        assert_eq!(r.membarriers_per_retired_mib, 2.0);
        // 1.5 ms in 100 calls over 2 s: 15 µs each, 0.075 % of a CPU.
        assert_eq!(r.membarrier_us_each, 15.0);
        assert!((r.membarrier_cpu_pct - 0.075).abs() < 1e-12);
        assert_eq!(r.held_up_waits_per_sec, 5.0);
        // 20 ms of waits in 2 s: 1 % of one thread's time.
        assert_eq!(r.held_up_wait_pct, 1.0);
        let m = EngineReport::mean(&[r.clone(), EngineReport::default()]).unwrap();
        assert_eq!(m.grace_periods_per_sec, 50.0);
        assert!(EngineReport::mean(&[]).is_none());
    }

    #[test]
    fn threads_are_found_by_name_and_their_cpu_time_counted() {
        use std::sync::mpsc;
        let (busy_tx, busy_rx) = mpsc::channel();
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let t = std::thread::Builder::new()
            .name("rcu-gp-987654".into())
            .spawn(move || {
                // Burn CPU until this thread has two ticks of its own.
                let start = std::time::Instant::now();
                let mut x = 0u64;
                loop {
                    for i in 0..100_000u64 {
                        x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
                    }
                    let mine = std::fs::read_to_string("/proc/thread-self/stat")
                        .ok()
                        .and_then(|s| parse_stat(&s).map(|(_, t)| t))
                        .unwrap_or(0);
                    if mine >= 2 || start.elapsed().as_secs() > 20 {
                        break;
                    }
                }
                busy_tx.send(()).unwrap();
                let _ = done_rx.recv();
            })
            .unwrap();
        busy_rx.recv().unwrap();
        let (gp, cb) = thread_ticks(987654);
        done_tx.send(()).unwrap();
        t.join().unwrap();
        assert!(gp >= 2, "the grace-period thread's ticks: {gp}");
        assert_eq!(cb, 0, "no worker of that domain exists");
    }
}
