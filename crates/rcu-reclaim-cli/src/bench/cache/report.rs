//! The cache scenario's figures: per backend over all rounds, ratios to
//! rcu-reclaim's RcuCache, its targets, and the text table.

use serde::Serialize;

use super::run::{CacheRun, GarbageSamples, MemSample, Stopped};
use super::CacheWorkload;
use crate::bench::report::{median, percentile, ratio, Target};

/// One round's figures for one backend.
#[derive(Clone, Debug, Serialize)]
pub struct CacheRound {
    pub gets_per_sec: f64,
    pub inserts_per_sec: f64,
    pub hit_ratio: f64,
}

/// A backend's figures against the first column's (rcu-reclaim's).
#[derive(Clone, Debug, Default, Serialize)]
pub struct CacheRatios {
    /// Medians over rounds of the ratio within each round (the rounds
    /// both were measured in; 0 if none).
    pub gets_per_sec: f64,
    pub inserts_per_sec: f64,
    /// Its hit ratio minus rcu-reclaim's (a difference, not a ratio).
    pub hit_ratio_points: f64,
    pub get_p99: f64,
    pub peak_rss: f64,
}

/// One backend over all rounds.
#[derive(Clone, Debug, Serialize)]
pub struct CacheBackendReport {
    pub backend: String,
    /// Whether it holds its bytes under the capacity.
    pub bounded: bool,
    /// Seconds measured over all rounds (0: the memory guard stopped
    /// every round during its warm-up).
    pub measured_secs: f64,
    pub gets_per_sec: f64,
    /// Every insert: the trace's and the cache-aside ones.
    pub inserts_per_sec: f64,
    /// Of those, the cache-aside ones (after a miss).
    pub fills_per_sec: f64,
    pub hit_ratio: f64,
    pub get_p50_ns: u32,
    pub get_p99_ns: u32,
    pub latency_samples: usize,
    /// The process's CPU time per second measured, user and system (in
    /// CPUs: 2.0 is two CPUs busy all the time).
    pub cpu_user: f64,
    pub cpu_sys: f64,
    /// Highest RSS above the run's start, over all rounds (10 ms samples).
    pub peak_rss: u64,
    /// Highest heap in use above the run's start (the accounting
    /// allocator), over all rounds.
    pub peak_accounted: usize,
    /// rcu-reclaim: bytes retired and not yet freed, over the measured
    /// time of every round (10 ms samples): mean and highest (none for the
    /// others, which free an evicted value as its last handle drops).
    pub garbage_mean: Option<f64>,
    pub garbage_peak: Option<usize>,
    /// The cache's own count of its bytes at the end of the last round
    /// (none: it does not count them).
    pub bytes_held: Option<usize>,
    pub entries: usize,
    /// Hits that returned another key's value (must be 0).
    pub wrong_values: u64,
    /// The rounds the memory guard stopped, and where.
    pub stopped: Vec<(usize, Stopped)>,
    pub vs_rcu_reclaim: CacheRatios,
    pub rounds: Vec<CacheRound>,
    /// The first round's memory samples.
    pub samples: Vec<MemSample>,
    /// rcu-reclaim: what its engine spent, mean over rounds.
    pub engine: Option<crate::bench::EngineReport>,
}

/// The cache scenario.
#[derive(Clone, Debug, Serialize)]
pub struct CacheScenarioReport {
    pub scenario: String,
    pub workload: CacheWorkload,
    pub seconds_per_run: f64,
    pub warmup_seconds: f64,
    pub rounds: usize,
    pub backends: Vec<CacheBackendReport>,
    pub targets: Vec<Target>,
}

fn per_sec(n: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        n as f64 / secs
    } else {
        0.0
    }
}

/// Sums a backend's runs (`runs[round]`).
fn summarize(name: &str, bounded: bool, runs: &[CacheRun]) -> CacheBackendReport {
    let secs: f64 = runs.iter().map(|r| r.secs).sum();
    let sum = |f: fn(&CacheRun) -> u64| runs.iter().map(f).sum::<u64>();
    let cpu_per_sec = |f: fn(&CacheRun) -> f64| {
        let cpu: f64 = runs.iter().map(f).sum();
        if secs > 0.0 {
            cpu / secs
        } else {
            0.0
        }
    };
    let (gets, hits) = (sum(|r| r.gets), sum(|r| r.hits));
    let (puts, fills) = (sum(|r| r.puts), sum(|r| r.fills));
    let mut lat: Vec<u32> = runs
        .iter()
        .flat_map(|r| r.latencies.iter().copied())
        .collect();
    lat.sort_unstable();
    let last = runs.last();
    let garbage = runs
        .iter()
        .filter_map(|r| r.garbage)
        .reduce(GarbageSamples::merge);
    CacheBackendReport {
        backend: name.to_string(),
        bounded,
        measured_secs: secs,
        gets_per_sec: per_sec(gets, secs),
        inserts_per_sec: per_sec(puts + fills, secs),
        fills_per_sec: per_sec(fills, secs),
        hit_ratio: ratio(hits as f64, gets as f64),
        get_p50_ns: percentile(&lat, 0.50),
        get_p99_ns: percentile(&lat, 0.99),
        latency_samples: lat.len(),
        cpu_user: cpu_per_sec(|r| r.cpu_user_secs),
        cpu_sys: cpu_per_sec(|r| r.cpu_sys_secs),
        peak_rss: runs.iter().map(|r| r.peak_rss).max().unwrap_or(0),
        peak_accounted: runs.iter().map(|r| r.peak_accounted).max().unwrap_or(0),
        garbage_mean: garbage.map(|g| g.mean()),
        garbage_peak: garbage.map(|g| g.peak),
        bytes_held: last.and_then(|r| r.bytes_held),
        entries: last.map_or(0, |r| r.entries),
        wrong_values: sum(|r| r.wrong_values),
        stopped: runs
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.stopped.map(|s| (i + 1, s)))
            .collect(),
        vs_rcu_reclaim: CacheRatios::default(),
        rounds: runs
            .iter()
            .map(|r| CacheRound {
                gets_per_sec: per_sec(r.gets, r.secs),
                inserts_per_sec: per_sec(r.puts + r.fills, r.secs),
                hit_ratio: ratio(r.hits as f64, r.gets as f64),
            })
            .collect(),
        samples: runs.first().map(|r| r.samples.clone()).unwrap_or_default(),
        engine: crate::bench::EngineReport::mean(
            &runs
                .iter()
                .filter_map(|r| r.engine.clone())
                .collect::<Vec<_>>(),
        ),
    }
}

/// The scenario's report from `runs[backend][round]` of the backends
/// `names` (name, bounded), the first the one the ratios are against.
pub fn scenario(
    workload: &CacheWorkload,
    names: &[(&str, bool)],
    runs: &[Vec<CacheRun>],
) -> CacheScenarioReport {
    let mut backends: Vec<CacheBackendReport> = names
        .iter()
        .zip(runs)
        .map(|(&(n, bounded), r)| summarize(n, bounded, r))
        .collect();
    if let Some(first) = backends.first().cloned() {
        for b in &mut backends {
            // Rounds where either was stopped before it was measured
            // are left out.
            let per_round = |f: fn(&CacheRound) -> f64| {
                median(
                    b.rounds
                        .iter()
                        .zip(&first.rounds)
                        .filter(|(x, o)| f(x) > 0.0 && f(o) > 0.0)
                        .map(|(x, o)| ratio(f(x), f(o)))
                        .collect(),
                )
            };
            b.vs_rcu_reclaim = CacheRatios {
                gets_per_sec: per_round(|r| r.gets_per_sec),
                inserts_per_sec: per_round(|r| r.inserts_per_sec),
                hit_ratio_points: b.hit_ratio - first.hit_ratio,
                get_p99: ratio(f64::from(b.get_p99_ns), f64::from(first.get_p99_ns)),
                peak_rss: ratio(b.peak_rss as f64, first.peak_rss as f64),
            };
        }
    }
    let targets = targets(&backends);
    CacheScenarioReport {
        scenario: "cache".into(),
        workload: workload.clone(),
        seconds_per_run: workload.duration.as_secs_f64(),
        warmup_seconds: workload.warmup.as_secs_f64(),
        rounds: runs.first().map_or(0, Vec::len),
        backends,
        targets,
    }
}

/// The targets for RcuCache (the first column, when it is
/// rcu-reclaim): its gets/s at least quick_cache's, its get p99 at most
/// quick_cache's, its hit ratio at most 2 points below the better of
/// moka's and quick_cache's.
pub fn targets(b: &[CacheBackendReport]) -> Vec<Target> {
    let mut out = Vec::new();
    let Some(ours) = b.first().filter(|o| o.backend == "rcu-reclaim") else {
        return out;
    };
    let find = |n: &str| b.iter().find(|x| x.backend == n);
    if let Some(q) = find("quick_cache") {
        let value = ratio(1.0, q.vs_rcu_reclaim.gets_per_sec);
        out.push(Target {
            what: "gets/s / quick_cache's".into(),
            value,
            goal: ">= 1".into(),
            met: value >= 1.0,
        });
        let value = ratio(1.0, q.vs_rcu_reclaim.get_p99);
        out.push(Target {
            what: "get p99 / quick_cache's".into(),
            value,
            goal: "<= 1".into(),
            met: value > 0.0 && value <= 1.0,
        });
    }
    let best = ["moka", "quick_cache"]
        .iter()
        .filter_map(|n| find(n))
        .max_by(|x, y| x.hit_ratio.total_cmp(&y.hit_ratio));
    if let Some(best) = best {
        let value = ours.hit_ratio - best.hit_ratio;
        out.push(Target {
            what: format!("hit ratio - {}'s", best.backend),
            value,
            goal: ">= -0.02".into(),
            met: value >= -0.02,
        });
    }
    out
}

const MIB: f64 = (1 << 20) as f64;

use crate::args::show_size as human;

/// A ratio, or "-" where there was none to take.
fn ratio_cell(r: f64) -> String {
    if r > 0.0 {
        format!("{r:.2}")
    } else {
        "-".into()
    }
}

/// The scenario as a text table, with a line per run the guard stopped.
pub fn table(s: &CacheScenarioReport) -> String {
    let w = &s.workload;
    let mut out = format!(
        "cache: {} % gets (a miss inserts: cache-aside), {} threads, {} keys, Zipf {}, \
         values {}-{}, capacity {}, {} rounds x {:.1} s (after {:.1} s warm-up) per backend\n",
        w.get_percent,
        w.threads,
        w.keys,
        w.zipf,
        human(w.value_min),
        human(w.value_max),
        human(w.capacity),
        s.rounds,
        s.seconds_per_run,
        s.warmup_seconds,
    );
    let ours = s.backends.first().map_or("", |b| b.backend.as_str());
    let x = format!("  x {ours}");
    type Cell = fn(&CacheBackendReport) -> String;
    let rows: [(&str, Cell); 14] = [
        ("gets/s", |b| format!("{:.3} M", b.gets_per_sec / 1e6)),
        (&x, |b| ratio_cell(b.vs_rcu_reclaim.gets_per_sec)),
        ("inserts/s", |b| format!("{:.1} k", b.inserts_per_sec / 1e3)),
        (&x, |b| ratio_cell(b.vs_rcu_reclaim.inserts_per_sec)),
        ("hit ratio", |b| format!("{:.3}", b.hit_ratio)),
        ("get p50 / p99", |b| {
            format!("{} / {} ns", b.get_p50_ns, b.get_p99_ns)
        }),
        ("CPUs user / sys", |b| {
            format!("{:.1} / {:.1}", b.cpu_user, b.cpu_sys)
        }),
        ("peak RSS", |b| {
            format!("{:.1} MiB", b.peak_rss as f64 / MIB)
        }),
        (&x, |b| format!("{:.2}", b.vs_rcu_reclaim.peak_rss)),
        ("peak heap", |b| {
            format!("{:.1} MiB", b.peak_accounted as f64 / MIB)
        }),
        ("garbage mean / peak", |b| {
            match (b.garbage_mean, b.garbage_peak) {
                (Some(mean), Some(peak)) => {
                    format!("{:.1} / {:.1} MiB", mean / MIB, peak as f64 / MIB)
                }
                _ => "n/a".into(),
            }
        }),
        ("bytes held (own)", |b| {
            b.bytes_held
                .map_or("uncounted".into(), |n| format!("{:.1} MiB", n as f64 / MIB))
        }),
        ("bounds its bytes", |b| {
            if b.bounded { "yes" } else { "no" }.to_string()
        }),
        ("guard stopped it", |b| {
            let top = b.stopped.iter().map(|(_, s)| s.rss).max();
            top.map_or("-".into(), |rss| {
                format!(
                    "{}/{} at {:.0} MiB",
                    b.stopped.len(),
                    b.rounds.len(),
                    rss as f64 / MIB
                )
            })
        }),
    ];
    out += &format!("{:<20}", "");
    for b in &s.backends {
        out += &format!(" {:>16}", b.backend);
    }
    out.push('\n');
    // Rows of measured figures, for a backend never measured: "-".
    let measured = |name: &str| {
        !name.starts_with("peak")
            && !name.starts_with("bytes")
            && !name.starts_with("bounds")
            && !name.starts_with("guard")
    };
    for (name, f) in rows {
        out += &format!("{name:<20}");
        for b in &s.backends {
            let cell = if b.measured_secs > 0.0 || !measured(name) {
                f(b)
            } else {
                "-".into()
            };
            out += &format!(" {cell:>16}");
        }
        out.push('\n');
    }
    for b in &s.backends {
        for (round, st) in &b.stopped {
            let kind = if b.bounded {
                "its RSS passed the memory guard"
            } else {
                "unbounded"
            };
            out += &format!(
                "{}: {kind}: stopped at {:.0} MiB after {:.2} s (round {round}; memory guard {})\n",
                b.backend,
                st.rss as f64 / MIB,
                st.after_secs,
                human(w.memory_guard),
            );
        }
        if let Some(e) = &b.engine {
            out += &format!(
                "{} engine: {:.0} grace periods/s ({:.0} expedited, {:.0} fenced), {:.0} \
                 membarriers/s ({:.1} us each, {:.1} % of a CPU), gp / worker CPU {:.0} % / \
                 {:.0} %\n",
                b.backend,
                e.grace_periods_per_sec,
                e.expedited_per_sec,
                e.fenced_gps_per_sec,
                e.membarriers_per_sec,
                e.membarrier_us_each,
                e.membarrier_cpu_pct,
                e.gp_thread_cpu_pct,
                e.workers_cpu_pct,
            );
        }
        if b.wrong_values > 0 {
            out += &format!(
                "{}: {} hits returned another key's value\n",
                b.backend, b.wrong_values
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::cache::trace::tests::workload;

    fn run(gets: u64, hits: u64, secs: f64, p99: u32, stopped: bool) -> CacheRun {
        CacheRun {
            secs,
            gets,
            hits,
            puts: gets / 9,
            fills: gets - hits,
            latencies: vec![p99 / 2; 98].into_iter().chain([p99, p99]).collect(),
            peak_rss: 64 << 20,
            stopped: stopped.then_some(Stopped {
                rss: 300 << 20,
                after_secs: 0.5,
            }),
            ..CacheRun::default()
        }
    }

    #[test]
    fn the_table_shows_cpu_time_per_second_and_the_engines_cost() {
        let mut ours = run(1000, 600, 2.0, 100, false);
        ours.cpu_user_secs = 3.0;
        ours.cpu_sys_secs = 1.0;
        ours.engine = Some(crate::bench::EngineReport {
            grace_periods_per_sec: 9000.0,
            expedited_per_sec: 12.0,
            membarriers_per_sec: 9001.0,
            fenced_gps_per_sec: 3.0,
            membarrier_us_each: 14.5,
            membarrier_cpu_pct: 13.1,
            gp_thread_cpu_pct: 2.0,
            ..Default::default()
        });
        let other = run(1000, 600, 2.0, 100, false);
        let s = scenario(
            &workload(),
            &[("rcu-reclaim", true), ("quick_cache", true)],
            &[vec![ours], vec![other]],
        );
        assert!((s.backends[0].cpu_user - 1.5).abs() < 1e-9);
        let text = table(&s);
        let line = text
            .lines()
            .find(|l| l.starts_with("CPUs user / sys"))
            .unwrap();
        assert!(
            line.contains("1.5 / 0.5") && line.ends_with("0.0 / 0.0"),
            "{line}"
        );
        assert!(
            text.contains(
                "rcu-reclaim engine: 9000 grace periods/s (12 expedited, 3 fenced), 9001 \
                 membarriers/s (14.5 us each, 13.1 % of a CPU), gp / worker CPU 2 % / 0 %"
            ),
            "{text}"
        );
        assert!(!text.contains("quick_cache engine"), "{text}");
    }

    #[test]
    fn ratios_are_against_the_first_column_and_targets_say_whether_they_are_met() {
        let runs = vec![
            vec![
                run(2000, 1300, 1.0, 100, false),
                run(4000, 2600, 2.0, 100, false),
            ],
            vec![
                run(1000, 660, 1.0, 400, false),
                run(2000, 1320, 2.0, 400, false),
            ],
            vec![
                run(4000, 2700, 1.0, 50, false),
                run(8000, 5400, 2.0, 50, false),
            ],
            // Stopped during its warm-up: nothing measured.
            vec![run(0, 0, 0.0, 0, true), run(0, 0, 0.0, 0, true)],
        ];
        let names = [
            ("rcu-reclaim", true),
            ("moka", true),
            ("quick_cache", true),
            ("papaya", false),
        ];
        let s = scenario(&workload(), &names, &runs);
        let b = &s.backends;
        assert_eq!(b[0].vs_rcu_reclaim.gets_per_sec, 1.0);
        assert!((b[1].vs_rcu_reclaim.gets_per_sec - 0.5).abs() < 1e-9);
        assert!((b[2].vs_rcu_reclaim.gets_per_sec - 2.0).abs() < 1e-9);
        assert!((b[0].hit_ratio - 0.65).abs() < 1e-9);
        assert!((b[2].vs_rcu_reclaim.hit_ratio_points - 0.025).abs() < 1e-9);
        assert_eq!(b[2].get_p99_ns, 50);
        assert_eq!(b[3].stopped.len(), 2);
        let t = &s.targets;
        assert_eq!(t.len(), 3, "{t:?}");
        assert!((t[0].value - 0.5).abs() < 1e-9 && !t[0].met, "{t:?}");
        assert!((t[1].value - 2.0).abs() < 1e-9 && !t[1].met, "{t:?}");
        // quick_cache's 0.675 is the better; ours is 2.5 points below.
        assert!(t[2].what.contains("quick_cache") && !t[2].met, "{t:?}");
        let text = table(&s);
        assert!(text.contains("papaya: unbounded: stopped at 300 MiB after 0.50 s (round 1"));
        assert!(text
            .lines()
            .any(|l| l.starts_with("hit ratio") && l.contains("0.650")));
        // papaya was never measured: its figures are "-", its memory shown.
        for row in ["gets/s", "hit ratio", "get p50 / p99"] {
            let line = text.lines().find(|l| l.starts_with(row)).unwrap();
            assert!(line.ends_with(" -"), "{line}");
        }
        let line = text
            .lines()
            .find(|l| l.starts_with("guard stopped it"))
            .unwrap();
        assert!(line.ends_with("2/2 at 300 MiB"), "{line}");
        assert_eq!(b[3].vs_rcu_reclaim.gets_per_sec, 0.0);
        // Without rcu-reclaim first, no targets are invented.
        let s = scenario(&workload(), &names[1..], &runs[1..]);
        assert!(s.targets.is_empty());
        assert!(table(&s).contains("  x moka"));
    }
}
