//! Turning the runs into figures: per backend over all rounds, ratios to
//! rcu-reclaim, its targets, and the text table.

use serde::Serialize;

use super::run::{RunResult, Sample, Workload};
use super::PressureReport;

/// One round's figures for one backend.
#[derive(Clone, Debug, Serialize)]
pub struct Round {
    pub reads_per_sec: f64,
    pub updates_per_sec: f64,
    pub peak_garbage: u64,
}

/// A backend's figures relative to rcu-reclaim's (backend / rcu-reclaim).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Ratios {
    /// Medians over rounds of the ratio within each round.
    pub reads_per_sec: f64,
    pub updates_per_sec: f64,
    /// Ratios of the peaks over all rounds.
    pub peak_garbage: f64,
    pub peak_memory: f64,
    /// Ratio of the mean garbage over all rounds' samples.
    pub mean_garbage: f64,
}

/// One backend over all rounds of a scenario.
#[derive(Clone, Debug, Serialize)]
pub struct BackendReport {
    pub backend: String,
    pub reads_per_sec: f64,
    pub updates_per_sec: f64,
    /// Highest heap in use above the run's start, over all rounds.
    pub peak_memory: usize,
    /// Highest bytes retired but not yet freed, over all rounds.
    pub peak_garbage: u64,
    /// Mean of the 10 ms garbage samples.
    pub mean_garbage: f64,
    /// Bytes retired per second.
    pub retire_rate: f64,
    pub read_p50_ns: u32,
    pub read_p99_ns: u32,
    pub latency_samples: usize,
    /// The process's CPU time per second of the runs, user and system (in
    /// CPUs: 2.0 is two CPUs busy all the time).
    pub cpu_user: f64,
    pub cpu_sys: f64,
    pub cache_hit_ratio: f64,
    pub retired_bytes: u64,
    pub freed_bytes: u64,
    /// Every retired byte was freed by the end of each run.
    pub balanced: bool,
    /// Entries evicted by the shrinker (rcu-reclaim under a budget).
    pub evicted: u64,
    pub vs_rcu_reclaim: Ratios,
    pub rounds: Vec<Round>,
    /// rcu-reclaim under a budget: its reclaim, summed over rounds (the
    /// grace-period wait: mean over rounds).
    pub pressure: Option<PressureReport>,
    /// rcu-reclaim: its engine's cost, mean over rounds.
    pub engine: Option<super::EngineReport>,
    /// The first round's samples.
    pub samples: Vec<Sample>,
}

/// One of the bench's targets, measured.
#[derive(Clone, Debug, Serialize)]
pub struct Target {
    pub what: String,
    pub value: f64,
    pub goal: String,
    pub met: bool,
}

/// One scenario.
#[derive(Clone, Debug, Serialize)]
pub struct ScenarioReport {
    pub scenario: String,
    pub workload: Workload,
    pub seconds_per_run: f64,
    pub rounds: usize,
    pub backends: Vec<BackendReport>,
    pub targets: Vec<Target>,
}

pub(crate) fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The median over rounds of `f(x) / f(ours)`, each round's ratio taken
/// in that round. A round where rcu-reclaim did nothing (`f(ours)` is 0: a
/// short round on a loaded machine can give its threads no time) has no
/// ratio and is left out; it used to count as 0 and halve the median of
/// two rounds, rcu-reclaim's against itself included.
fn round_ratio(x: &[Round], ours: &[Round], f: fn(&Round) -> f64) -> f64 {
    median(
        x.iter()
            .zip(ours)
            .filter(|(_, o)| f(o) > 0.0)
            .map(|(x, o)| f(x) / f(o))
            .collect(),
    )
}

pub(crate) fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        0.0
    }
}

/// Sums a backend's runs (`runs[round]`).
fn summarize(name: &str, runs: &[RunResult]) -> BackendReport {
    let secs: f64 = runs.iter().map(|r| r.secs).sum::<f64>().max(1e-9);
    let reads: u64 = runs.iter().map(|r| r.reads).sum();
    let updates: u64 = runs.iter().map(|r| r.updates).sum();
    let hits: u64 = runs.iter().map(|r| r.hits).sum();
    let retired: u64 = runs.iter().map(|r| r.retired).sum();
    let freed: u64 = runs.iter().map(|r| r.freed).sum();
    let mut lat: Vec<u32> = runs
        .iter()
        .flat_map(|r| r.latencies.iter().copied())
        .collect();
    lat.sort_unstable();
    let all: Vec<&Sample> = runs.iter().flat_map(|r| r.samples.iter()).collect();
    let pressure = runs.iter().filter_map(|r| r.pressure.as_ref()).fold(
        None::<(PressureReport, usize)>,
        |acc, p| {
            let (mut s, n) = acc.unwrap_or_default();
            s.direct_reclaims += p.direct_reclaims;
            s.background_reclaims += p.background_reclaims;
            s.reclaim_passes += p.reclaim_passes;
            s.rcu_waits += p.rcu_waits;
            s.grace_periods += p.grace_periods;
            s.expedited_grace_periods += p.expedited_grace_periods;
            s.fast_mode_ms += p.fast_mode_ms;
            s.gp_wait_mean_ns += p.gp_wait_mean_ns;
            s.gp_wait_probes += p.gp_wait_probes;
            Some((s, n + 1))
        },
    );
    BackendReport {
        backend: name.to_string(),
        reads_per_sec: reads as f64 / secs,
        updates_per_sec: updates as f64 / secs,
        peak_memory: runs.iter().map(|r| r.peak_memory).max().unwrap_or(0),
        peak_garbage: runs.iter().map(|r| r.peak_garbage).max().unwrap_or(0),
        mean_garbage: all.iter().map(|s| s.garbage as f64).sum::<f64>() / all.len().max(1) as f64,
        retire_rate: retired as f64 / secs,
        read_p50_ns: percentile(&lat, 0.50),
        read_p99_ns: percentile(&lat, 0.99),
        latency_samples: lat.len(),
        cpu_user: runs.iter().map(|r| r.cpu_user_secs).sum::<f64>() / secs,
        cpu_sys: runs.iter().map(|r| r.cpu_sys_secs).sum::<f64>() / secs,
        cache_hit_ratio: hits as f64 / reads.max(1) as f64,
        retired_bytes: retired,
        freed_bytes: freed,
        balanced: runs.iter().all(|r| r.retired == r.freed),
        evicted: runs.iter().map(|r| r.evicted).sum(),
        vs_rcu_reclaim: Ratios::default(),
        rounds: runs
            .iter()
            .map(|r| Round {
                reads_per_sec: r.reads as f64 / r.secs.max(1e-9),
                updates_per_sec: r.updates as f64 / r.secs.max(1e-9),
                peak_garbage: r.peak_garbage,
            })
            .collect(),
        pressure: pressure.map(|(mut s, n)| {
            s.gp_wait_mean_ns /= n as f64;
            s
        }),
        engine: super::EngineReport::mean(
            &runs
                .iter()
                .filter_map(|r| r.engine.clone())
                .collect::<Vec<_>>(),
        ),
        samples: runs.first().map(|r| r.samples.clone()).unwrap_or_default(),
    }
}

/// The scenario's report from `runs[backend][round]`; `names[0]` must be
/// rcu-reclaim.
pub fn scenario(
    name: &str,
    workload: &Workload,
    names: &[&str],
    runs: &[Vec<RunResult>],
) -> ScenarioReport {
    let mut backends: Vec<BackendReport> = names
        .iter()
        .zip(runs)
        .map(|(n, r)| summarize(n, r))
        .collect();
    let ours = backends[0].clone();
    for b in &mut backends {
        b.vs_rcu_reclaim = Ratios {
            reads_per_sec: round_ratio(&b.rounds, &ours.rounds, |r| r.reads_per_sec),
            updates_per_sec: round_ratio(&b.rounds, &ours.rounds, |r| r.updates_per_sec),
            peak_garbage: ratio(b.peak_garbage as f64, ours.peak_garbage as f64),
            peak_memory: ratio(b.peak_memory as f64, ours.peak_memory as f64),
            mean_garbage: ratio(b.mean_garbage, ours.mean_garbage),
        };
    }
    let targets = targets(name, &backends);
    ScenarioReport {
        scenario: name.to_string(),
        workload: workload.clone(),
        seconds_per_run: workload.duration.as_secs_f64(),
        rounds: runs.first().map_or(0, Vec::len),
        backends,
        targets,
    }
}

/// The bench's targets for the scenario, as ours / theirs.
fn targets(scenario: &str, b: &[BackendReport]) -> Vec<Target> {
    let find = |n: &str| b.iter().find(|x| x.backend == n);
    let mut out = Vec::new();
    // ours / theirs = 1 / (theirs / ours).
    let mut push = |other: &str, what: &str, f: fn(&Ratios) -> f64, goal: f64, at_least: bool| {
        if let Some(x) = find(other) {
            let value = ratio(1.0, f(&x.vs_rcu_reclaim));
            let met = if at_least {
                value >= goal
            } else {
                value > 0.0 && value <= goal
            };
            let op = if at_least { ">=" } else { "<=" };
            out.push(Target {
                what: format!("{what} / {other}'s"),
                value,
                goal: format!("{op} {goal}"),
                met,
            });
        }
    };
    match scenario {
        "read-mostly" => {
            push("liburcu-memb", "reads/s", |r| r.reads_per_sec, 1.0, true);
            push("crossbeam-epoch", "reads/s", |r| r.reads_per_sec, 1.2, true);
            push(
                "crossbeam-epoch",
                "mean garbage",
                |r| r.mean_garbage,
                4.0,
                false,
            );
        }
        "update-heavy" => {
            push(
                "crossbeam-epoch",
                "updates/s",
                |r| r.updates_per_sec,
                1.0,
                true,
            );
            push("seize", "updates/s", |r| r.updates_per_sec, 1.0, true);
            push(
                "crossbeam-epoch",
                "peak garbage",
                |r| r.peak_garbage,
                1.0,
                false,
            );
            push(
                "crossbeam-epoch",
                "mean garbage",
                |r| r.mean_garbage,
                4.0,
                false,
            );
        }
        "budget" => {
            if let Some(p) = b[0].pressure.as_ref() {
                let floor = b[0].retire_rate * p.gp_wait_mean_ns / 1e9;
                let value = ratio(b[0].peak_garbage as f64, floor);
                out.push(Target {
                    what: format!(
                        "peak garbage / (retire rate x mean grace-period wait = {:.2} MiB)",
                        floor / MIB
                    ),
                    value,
                    goal: "<= 2".into(),
                    met: floor > 0.0 && value <= 2.0,
                });
            }
        }
        _ => {}
    }
    out
}

const MIB: f64 = (1 << 20) as f64;

/// The scenario as a text table (its targets: [`target_lines`]).
pub fn table(s: &ScenarioReport) -> String {
    let w = &s.workload;
    let mut out = format!(
        "{}: {} % reads, {} threads, {} keys, payload {}-{} B{}, {} rounds x {:.1} s per backend\n",
        s.scenario,
        w.read_permille as f64 / 10.0,
        w.threads,
        w.keys,
        w.payload_min,
        w.payload_max,
        w.budget.map_or(String::new(), |b| format!(
            ", budget {:.0} MiB (rcu-reclaim only)",
            b as f64 / MIB
        )),
        s.rounds,
        s.seconds_per_run,
    );
    type Cell = fn(&BackendReport) -> String;
    fn engine(b: &BackendReport, f: impl Fn(&super::EngineReport) -> String) -> String {
        b.engine.as_ref().map_or_else(|| "-".to_string(), f)
    }
    let rows: [(&str, Cell); 18] = [
        ("reads/s", |b| format!("{:.2} M", b.reads_per_sec / 1e6)),
        ("  x rcu-reclaim", |b| {
            format!("{:.2}", b.vs_rcu_reclaim.reads_per_sec)
        }),
        ("updates/s", |b| format!("{:.1} k", b.updates_per_sec / 1e3)),
        ("  x rcu-reclaim", |b| {
            format!("{:.2}", b.vs_rcu_reclaim.updates_per_sec)
        }),
        ("read p50 / p99", |b| {
            format!("{} / {} ns", b.read_p50_ns, b.read_p99_ns)
        }),
        ("CPUs user / sys", |b| {
            format!("{:.1} / {:.1}", b.cpu_user, b.cpu_sys)
        }),
        ("peak garbage", |b| {
            format!("{:.2} MiB", b.peak_garbage as f64 / MIB)
        }),
        ("  x rcu-reclaim", |b| {
            format!("{:.2}", b.vs_rcu_reclaim.peak_garbage)
        }),
        ("mean garbage", |b| {
            format!("{:.2} MiB", b.mean_garbage / MIB)
        }),
        ("peak memory", |b| {
            format!("{:.1} MiB", b.peak_memory as f64 / MIB)
        }),
        ("retired MiB/s", |b| format!("{:.1}", b.retire_rate / MIB)),
        ("retired == freed", |b| {
            if b.balanced { "yes" } else { "NO" }.to_string()
        }),
        ("grace periods/s", |b| {
            engine(b, |e| format!("{:.0}", e.grace_periods_per_sec))
        }),
        ("membarriers/s", |b| {
            engine(b, |e| format!("{:.0}", e.membarriers_per_sec))
        }),
        ("fenced grace periods/s", |b| {
            engine(b, |e| format!("{:.0}", e.fenced_gps_per_sec))
        }),
        ("  each / CPU", |b| {
            engine(b, |e| {
                format!(
                    "{:.1} us / {:.1} %",
                    e.membarrier_us_each, e.membarrier_cpu_pct
                )
            })
        }),
        ("gp / worker CPU", |b| {
            engine(b, |e| {
                format!("{:.0} % / {:.0} %", e.gp_thread_cpu_pct, e.workers_cpu_pct)
            })
        }),
        ("held-up waits/s", |b| {
            engine(b, |e| {
                format!(
                    "{:.0} ({:.1} %)",
                    e.held_up_waits_per_sec, e.held_up_wait_pct
                )
            })
        }),
    ];
    out += &format!("{:<20}", "");
    for b in &s.backends {
        out += &format!(" {:>18}", b.backend);
    }
    out.push('\n');
    for (name, f) in rows {
        out += &format!("{name:<20}");
        for b in &s.backends {
            out += &format!(" {:>18}", f(b));
        }
        out.push('\n');
    }
    if let Some(p) = s.backends.first().and_then(|b| b.pressure.as_ref()) {
        out += &format!(
            "rcu-reclaim reclaim: {} direct / {} background, {} passes ({} waited for RCU), \
             {} grace periods ({} expedited), {} ms in fast mode, mean grace-period wait {:.0} us ({} probes), {} entries evicted\n",
            p.direct_reclaims,
            p.background_reclaims,
            p.reclaim_passes,
            p.rcu_waits,
            p.grace_periods,
            p.expedited_grace_periods,
            p.fast_mode_ms,
            p.gp_wait_mean_ns / 1e3,
            p.gp_wait_probes,
            s.backends[0].evicted,
        );
    }
    if let Some(p) = s.backends.first().and_then(|b| b.pressure.as_ref()) {
        let floor = s.backends[0].retire_rate * p.gp_wait_mean_ns / 1e9;
        out += &format!(
            "rcu-reclaim garbage floor (retire rate x mean grace-period wait): {:.2} MiB; \
             mean garbage = {:.2} x floor, peak = {:.2} x floor\n",
            floor / MIB,
            ratio(s.backends[0].mean_garbage, floor),
            ratio(s.backends[0].peak_garbage as f64, floor),
        );
    }
    out
}

/// The scenario's targets, one line each (`bench --targets`).
pub fn target_lines(s: &ScenarioReport) -> String {
    lines(&s.targets)
}

/// Targets, one line each.
pub fn lines(targets: &[Target]) -> String {
    let mut out = String::new();
    for t in targets {
        out += &format!(
            "target: rcu-reclaim {} = {:.2} (goal {}): {}\n",
            t.what,
            t.value,
            t.goal,
            if t.met { "met" } else { "MISSED" }
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(name: &str, updates: &[f64], peak_garbage: u64) -> BackendReport {
        BackendReport {
            backend: name.into(),
            reads_per_sec: 0.0,
            updates_per_sec: 0.0,
            peak_memory: 1,
            peak_garbage,
            mean_garbage: 0.0,
            retire_rate: 0.0,
            read_p50_ns: 0,
            read_p99_ns: 0,
            latency_samples: 0,
            cpu_user: 0.0,
            cpu_sys: 0.0,
            cache_hit_ratio: 0.0,
            retired_bytes: 0,
            freed_bytes: 0,
            balanced: true,
            evicted: 0,
            vs_rcu_reclaim: Ratios::default(),
            rounds: updates
                .iter()
                .map(|&u| Round {
                    reads_per_sec: u,
                    updates_per_sec: u,
                    peak_garbage,
                })
                .collect(),
            pressure: None,
            engine: None,
            samples: Vec::new(),
        }
    }

    #[test]
    fn percentiles_and_medians() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.5), 51);
        assert_eq!(percentile(&v, 0.99), 99);
        assert_eq!(percentile(&[], 0.5), 0);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    #[test]
    fn a_round_where_rcu_reclaim_did_nothing_has_no_ratio() {
        let ours = backend("rcu-reclaim", &[0.0, 100.0], 1);
        let other = backend("seize", &[50.0, 200.0], 1);
        let r = |r: &Round| r.reads_per_sec;
        assert_eq!(round_ratio(&ours.rounds, &ours.rounds, r), 1.0);
        assert_eq!(round_ratio(&other.rounds, &ours.rounds, r), 2.0);
        // A round where the other did nothing is a ratio of 0.
        let idle = backend("seize", &[50.0, 0.0], 1);
        assert_eq!(round_ratio(&idle.rounds, &ours.rounds, r), 0.0);
        // No round with data: no ratio.
        let none = backend("rcu-reclaim", &[0.0, 0.0], 1);
        assert_eq!(round_ratio(&other.rounds, &none.rounds, r), 0.0);
    }

    #[test]
    fn targets_compare_rcu_reclaim_with_the_others_round_by_round() {
        // Round by round, ours is twice crossbeam's rate; its garbage is a
        // quarter of crossbeam's.
        let mut b = vec![
            backend("rcu-reclaim", &[200.0, 100.0, 400.0], 10),
            backend("crossbeam-epoch", &[100.0, 50.0, 200.0], 40),
            backend("seize", &[400.0, 200.0, 800.0], 5),
        ];
        let ours = b[0].clone();
        for x in &mut b {
            x.vs_rcu_reclaim = Ratios {
                reads_per_sec: round_ratio(&x.rounds, &ours.rounds, |r| r.reads_per_sec),
                updates_per_sec: round_ratio(&x.rounds, &ours.rounds, |r| r.updates_per_sec),
                peak_garbage: x.peak_garbage as f64 / ours.peak_garbage as f64,
                peak_memory: 1.0,
                // Ours holds 5x crossbeam-epoch's garbage on average.
                mean_garbage: if x.backend == "crossbeam-epoch" {
                    0.2
                } else {
                    1.0
                },
            };
        }
        let t = targets("update-heavy", &b);
        assert_eq!(t.len(), 4);
        assert!((t[0].value - 2.0).abs() < 1e-9 && t[0].met, "{t:?}");
        assert!((t[1].value - 0.5).abs() < 1e-9 && !t[1].met, "{t:?}");
        assert!((t[2].value - 0.25).abs() < 1e-9 && t[2].met, "{t:?}");
        assert!((t[3].value - 5.0).abs() < 1e-9 && !t[3].met, "{t:?}");
        assert!(t[3].what.contains("mean garbage") && t[3].goal == "<= 4");
        // No liburcu column: its target is left out, not invented.
        let t = targets("read-mostly", &b);
        assert_eq!(t.len(), 2);
        assert!(t[0].what.contains("crossbeam-epoch") && t[0].met);
        assert!(t[1].what.contains("mean garbage") && !t[1].met, "{t:?}");
    }
}
