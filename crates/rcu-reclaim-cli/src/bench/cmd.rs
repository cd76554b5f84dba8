//! `rcu-reclaim bench`: its flags, the interleaved runs, and the output
//! (tables or JSON, and the plot).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use super::cache::cgroup::CgroupReport;
use super::cache::cmd::CacheArgs;
use super::cache::report::CacheScenarioReport;
use super::cache::CacheWorkload;
use super::report::{self, ScenarioReport};
use super::run::{self, RunResult, Workload};
use super::{crossbeam::Crossbeam, ours_polled::OursPolled, seize::Seize};
use crate::args::{self, Int};
use crate::dcache::{Backend, Ours, OursCollect, OursInline, OursQsbr};
use crate::stdout::outln;

/// The workloads `bench` can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// 99 % lookups.
    ReadMostly,
    /// 50 % lookups, 50 % updates.
    UpdateHeavy,
    /// update-heavy with bigger payloads under a memory budget, to which
    /// only rcu-reclaim reacts.
    Budget,
    /// Not in the default set: caches of large values (1-64 KiB) on a
    /// Zipf key trace, 90 % gets, a miss inserts (cache-aside):
    /// rcu-reclaim's RcuCache, moka and quick_cache at the same byte
    /// capacity, and papaya (a map with no bound, stopped by a memory
    /// guard at 4 x the capacity). 20 % of each run is warm-up.
    Cache,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::ReadMostly => "read-mostly",
            Scenario::UpdateHeavy => "update-heavy",
            Scenario::Budget => "budget",
            Scenario::Cache => "cache",
        }
    }
}

/// The bench's flags.
#[derive(Args)]
pub struct BenchArgs {
    /// Scenarios to run (repeat the flag for several). Default:
    /// read-mostly, update-heavy and budget.
    #[arg(long, value_enum)]
    scenario: Vec<Scenario>,
    /// Seconds each backend runs per scenario, split over the rounds (0.2
    /// to 3600; or with a unit: 500ms, 30s, 2m, 1m30s).
    #[arg(long, default_value = "6", allow_hyphen_values = true, value_parser = args::SECS)]
    duration: f64,
    /// Rounds: every backend runs once per round, in a rotating order, so
    /// drift in the machine's speed lands on all of them (1 to 100; each
    /// run gets at least 0.05 s). Before the first round, every backend
    /// runs once untimed for a tenth of a run (0.05 to 0.5 s), so that
    /// none pays alone for the process's cold start.
    #[arg(long, default_value_t = 3, allow_hyphen_values = true,
          value_parser = Int::<u16>::new(1, 100))]
    rounds: u16,
    /// Worker threads, each mixing lookups and updates (1 to 64). Default:
    /// one per CPU.
    #[arg(long, allow_hyphen_values = true,
          value_parser = Int::<u16>::new(1, args::MAX_THREADS))]
    threads: Option<u16>,
    /// Distinct keys (100 to 10000000).
    #[arg(long, default_value_t = 50_000, allow_hyphen_values = true,
          value_parser = Int::<u64>::new(100, 10_000_000))]
    keys: u64,
    /// Smallest payload in read-mostly and update-heavy (1 B to 16M).
    #[arg(long, default_value = "32", allow_hyphen_values = true, value_parser = args::PAYLOAD)]
    payload_min: usize,
    /// Largest payload in read-mostly and update-heavy (at least
    /// --payload-min, at most 16M).
    #[arg(long, default_value = "512", allow_hyphen_values = true, value_parser = args::PAYLOAD)]
    payload_max: usize,
    /// The budget rcu-reclaim reclaims against in the budget scenario, e.g.
    /// 64M or 1.5G (16M to 64G; K, M, G and T are powers of 1024).
    #[arg(long, default_value = "64M", allow_hyphen_values = true, value_parser = args::BUDGET)]
    budget: usize,
    /// Smallest payload in the budget scenario (1 B to 16M).
    #[arg(long, default_value = "1K", allow_hyphen_values = true, value_parser = args::PAYLOAD)]
    budget_payload_min: usize,
    /// Largest payload in the budget scenario (at least
    /// --budget-payload-min, at most 16M and an eighth of --budget).
    #[arg(long, default_value = "8K", allow_hyphen_values = true, value_parser = args::PAYLOAD)]
    budget_payload_max: usize,
    /// Backends to run (repeat the flag for several; rcu-reclaim always
    /// runs, as the ratios are against it: in the cache scenario, its
    /// RcuCache). The cache scenario's: moka, quick_cache and papaya,
    /// rcu-reclaim-collect, and the opt-in rcu-reclaim-ahash (RcuCache
    /// with quick_cache's hasher, ahash, instead of std's SipHash)
    /// (default: all but the opt-in one). The others': rcu-reclaim-qsbr (a QSBR domain: free
    /// read sections, a quiescent state after every operation),
    /// crossbeam-epoch, seize, liburcu-memb and liburcu-qsbr (with
    /// --features liburcu), rcu-reclaim-collect (each thread calls
    /// Rcu::collect after every update, outside the update's lock: it
    /// frees its own ready garbage), and the opt-in rcu-reclaim-inline (a domain with
    /// Config::retiring_thread_frees: the retiring thread frees ready
    /// garbage itself) and rcu-reclaim-polled (frees on the retiring thread
    /// through the polled grace-period API). Default: all but the two
    /// opt-in ones.
    #[arg(long)]
    backend: Vec<String>,
    /// Where to write the plot (SVG); its directory must exist.
    #[arg(
        long,
        default_value = "rcu-reclaim-bench.svg",
        conflicts_with = "no_plot"
    )]
    plot: PathBuf,
    /// Do not write the plot.
    #[arg(long)]
    no_plot: bool,
    /// Also print, under each table, the project's performance targets for
    /// that scenario (e.g. rcu-reclaim's updates/s against crossbeam-epoch's)
    /// and whether this run met them. --json always has them, under
    /// "targets" in each scenario.
    #[arg(long)]
    targets: bool,
    /// Print JSON instead of the tables.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    cache: CacheArgs,
    /// The cache scenario's flags given on the command line (see
    /// [`cache_flags_given`]).
    #[arg(skip)]
    cache_flags: Vec<String>,
    /// The other scenarios' own flags given on the command line (see
    /// [`scenario_flags_given`]).
    #[arg(skip)]
    scenario_flags: Vec<&'static str>,
}

/// The flags of the dentry-cache scenarios, each with the scenarios that
/// use it: given for a run of none of them, a flag is refused, naming it,
/// as the cache scenario's are.
const SCENARIO_FLAGS: [(&str, &str, &[Scenario]); 6] = [
    (
        "keys",
        "--keys",
        &[
            Scenario::ReadMostly,
            Scenario::UpdateHeavy,
            Scenario::Budget,
        ],
    ),
    (
        "payload_min",
        "--payload-min",
        &[Scenario::ReadMostly, Scenario::UpdateHeavy],
    ),
    (
        "payload_max",
        "--payload-max",
        &[Scenario::ReadMostly, Scenario::UpdateHeavy],
    ),
    ("budget", "--budget", &[Scenario::Budget]),
    (
        "budget_payload_min",
        "--budget-payload-min",
        &[Scenario::Budget],
    ),
    (
        "budget_payload_max",
        "--budget-payload-max",
        &[Scenario::Budget],
    ),
];

/// Of [`SCENARIO_FLAGS`], those that `matches` (bench's) got from the
/// command line, as typed (`--keys`).
pub fn scenario_flags_given(matches: &clap::ArgMatches) -> Vec<&'static str> {
    use clap::parser::ValueSource;
    SCENARIO_FLAGS
        .iter()
        .filter(|(id, _, _)| matches.value_source(id) == Some(ValueSource::CommandLine))
        .map(|&(_, flag, _)| flag)
        .collect()
}

/// The cache scenario's flags that `matches` (bench's) got from the
/// command line, as typed (`--zipf`), but for the hidden ones and
/// --cgroup-limit, which has its own message.
pub fn cache_flags_given(matches: &clap::ArgMatches) -> Vec<String> {
    use clap::parser::ValueSource;
    CacheArgs::augment_args(clap::Command::new("bench"))
        .get_arguments()
        .filter(|a| !a.is_hide_set() && a.get_id() != "cgroup_limit")
        .filter(|a| {
            matches
                .try_contains_id(a.get_id().as_str())
                .unwrap_or(false)
                && matches.value_source(a.get_id().as_str()) == Some(ValueSource::CommandLine)
        })
        .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
        .collect()
}

/// What `bench` will run: the dentry-cache scenarios' workloads, and the
/// cache scenario's.
pub struct Plan {
    dcache: Vec<(Scenario, Workload)>,
    cache: Option<CacheWorkload>,
}

/// The shortest run the rounds may cut a backend's time into.
const MIN_RUN: f64 = 0.05;

/// The most rounds `duration` seconds can be cut into, each at least
/// `least` seconds: 0.3 s makes 6 runs of 0.05 s, though 0.3 / 6 is a hair
/// under 0.05 in floating point (which once refused `--duration 0.3
/// --rounds 6`, and told `--duration 1.7 --rounds 34` to use at most 34).
fn most_rounds(duration: f64, least: f64) -> f64 {
    (duration / least * (1.0 + 1e-12)).floor()
}

impl BenchArgs {
    /// Records the cache scenario's flags given on the command line
    /// ([`cache_flags_given`]), which [`workloads`](Self::workloads)
    /// refuses without the cache scenario.
    pub fn set_cache_flags_given(&mut self, flags: Vec<String>) {
        self.cache_flags = flags;
    }

    /// Records the other scenarios' flags given on the command line
    /// ([`scenario_flags_given`]), which [`workloads`](Self::workloads)
    /// refuses when none of their scenarios runs.
    pub fn set_scenario_flags_given(&mut self, flags: Vec<&'static str>) {
        self.scenario_flags = flags;
    }

    /// The scenarios' workloads; the message names the flag at fault.
    pub fn workloads(&self) -> Result<Plan, String> {
        self.workloads_on(std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    /// [`workloads`](Self::workloads) on a machine of `cpus` CPUs.
    fn workloads_on(&self, cpus: usize) -> Result<Plan, String> {
        let per_run = self.duration / f64::from(self.rounds);
        if f64::from(self.rounds) > most_rounds(self.duration, MIN_RUN) {
            return Err(format!(
                "--rounds {} cuts --duration {} s into runs shorter than {MIN_RUN} s; \
                 use at most {} rounds or a longer --duration",
                self.rounds,
                self.duration,
                most_rounds(self.duration, MIN_RUN).max(1.0)
            ));
        }
        self.backends()?;
        self.cache_backends()?;
        if !self.no_plot {
            args::check_plot_path(&self.plot)?;
        }
        let threads = self.threads.map_or(cpus, usize::from);
        let scenarios = if self.scenario.is_empty() {
            vec![
                Scenario::ReadMostly,
                Scenario::UpdateHeavy,
                Scenario::Budget,
            ]
        } else {
            // Each once, in the order first named (`dedup` would keep a
            // scenario named twice with another between).
            let mut s: Vec<Scenario> = Vec::new();
            for &x in &self.scenario {
                if !s.contains(&x) {
                    s.push(x);
                }
            }
            s
        };
        // As the demo asks: entries that each fill a large share of the
        // budget would leave it nothing to do but reclaim.
        if scenarios.contains(&Scenario::Budget) && self.budget_payload_max > self.budget / 8 {
            return Err(format!(
                "--budget-payload-max ({}) must be at most an eighth of --budget ({}): a few \
                 entries that each fill a large share of the budget would do nothing but \
                 reclaim; lower --budget-payload-max or raise --budget",
                args::show_size(self.budget_payload_max),
                args::show_size(self.budget)
            ));
        }
        let cache = scenarios.contains(&Scenario::Cache);
        self.cache.check_internal(scenarios == [Scenario::Cache])?;
        // Under --cgroup-limit each cache's round runs in a child given
        // the round's time as its --duration, which takes no less than
        // args::SECS's least: a shorter round was refused by every child.
        if cache && self.cache.cgroup() && self.cache.child().is_none() {
            args::check_child_threads("--threads", threads, "each cache", "one per CPU")?;
        }
        let least = args::SECS.least();
        if cache
            && self.cache.cgroup()
            && self.cache.child().is_none()
            && f64::from(self.rounds) > most_rounds(self.duration, least)
        {
            let rounds = most_rounds(self.duration, least);
            return Err(format!(
                "--rounds {} cuts --duration {} s into rounds shorter than {least} s, and under \
                 --cgroup-limit each cache's round runs in a child that needs at least {least} \
                 s: {}give a --duration of at least {:.1} s",
                self.rounds,
                self.duration,
                if rounds >= 1.0 {
                    let s = if rounds == 1.0 { "" } else { "s" };
                    format!("use at most {rounds} round{s}, or ")
                } else {
                    String::new()
                },
                least * f64::from(self.rounds)
            ));
        }
        if self.cache.cgroup() && !cache {
            return Err(
                "--cgroup-limit of bench applies to the cache scenario: add --scenario cache \
                 (demo has its own --cgroup-limit)"
                    .into(),
            );
        }
        if let (false, Some(flag)) = (cache, self.cache_flags.first()) {
            return Err(format!(
                "{flag} applies to the cache scenario: add --scenario cache, or drop {flag}"
            ));
        }
        for &(_, flag, uses) in &SCENARIO_FLAGS {
            if self.scenario_flags.contains(&flag) && !uses.iter().any(|u| scenarios.contains(u)) {
                let names: Vec<_> = uses.iter().map(|u| u.name()).collect();
                return Err(format!(
                    "{flag} applies to the {} scenario{}: add --scenario {}, or drop {flag}",
                    names.join(", "),
                    if names.len() > 1 { "s" } else { "" },
                    names[0]
                ));
            }
        }
        // After the check above: a flag for a scenario that does not run
        // is named as such, not measured against the other bound's default.
        for (min, max, what) in [
            (self.payload_min, self.payload_max, "--payload"),
            (
                self.budget_payload_min,
                self.budget_payload_max,
                "--budget-payload",
            ),
        ] {
            if max < min {
                return Err(format!(
                    "{what}-max ({}) must be at least {what}-min ({}): raise {what}-max or \
                     lower {what}-min",
                    args::show_size(max),
                    args::show_size(min)
                ));
            }
        }
        let dcache_named: Vec<&str> = self
            .backend
            .iter()
            .map(String::as_str)
            .filter(|b| *b != <Ours>::NAME && !super::cache::cmd::available().contains(b))
            .collect();
        // rcu-reclaim runs in every scenario; the cache scenario's others
        // only there.
        if let Some(b) = self.backend.iter().find(|b| {
            super::cache::cmd::available().contains(&b.as_str())
                && !available().contains(&b.as_str())
        }) {
            if !cache {
                return Err(format!(
                    "--backend {b} runs only in the cache scenario: add --scenario cache"
                ));
            }
        }
        if !dcache_named.is_empty() && scenarios.iter().all(|s| *s == Scenario::Cache) {
            return Err(format!(
                "--backend {} {} in the cache scenario, which runs only its own backends ({}): \
                 drop {}, or add a scenario {} in, e.g. --scenario update-heavy",
                dcache_named.join(", --backend "),
                if dcache_named.len() > 1 {
                    "do not run"
                } else {
                    "does not run"
                },
                super::cache::cmd::available().join(", "),
                if dcache_named.len() > 1 { "them" } else { "it" },
                if dcache_named.len() > 1 {
                    "they run"
                } else {
                    "it runs"
                },
            ));
        }
        let base = Workload {
            read_permille: 0,
            threads,
            keys: self.keys,
            payload_min: self.payload_min,
            payload_max: self.payload_max,
            budget: None,
            duration: Duration::from_secs_f64(per_run),
        };
        let cache = if cache {
            Some(
                self.cache
                    .workload(threads, Duration::from_secs_f64(per_run))?,
            )
        } else {
            None
        };
        let dcache: Vec<(Scenario, Workload)> = scenarios
            .into_iter()
            .filter_map(|s| {
                let w = match s {
                    Scenario::ReadMostly => Workload {
                        read_permille: 990,
                        ..base.clone()
                    },
                    Scenario::UpdateHeavy => Workload {
                        read_permille: 500,
                        ..base.clone()
                    },
                    Scenario::Budget => Workload {
                        read_permille: 500,
                        payload_min: self.budget_payload_min,
                        payload_max: self.budget_payload_max,
                        budget: Some(self.budget),
                        ..base.clone()
                    },
                    // Its own workload: `cache` above.
                    Scenario::Cache => return None,
                };
                Some((s, w))
            })
            .collect();
        check_memory(&dcache, super::cache::cmd::mem_available())?;
        Ok(Plan { dcache, cache })
    }
}

/// Refuses a scenario whose table could outgrow the machine: every key
/// may come to hold a payload (crossbeam-epoch and seize have no budget, so
/// not even the budget scenario bounds them), and runs with 16 MiB payloads
/// took every byte of memory until the allocator aborted the process.
/// The table's full size must fit in half of `avail` (`None`: unknown, no
/// check), as the cache scenario's guard does.
fn check_memory(dcache: &[(Scenario, Workload)], avail: Option<usize>) -> Result<(), String> {
    let Some(avail) = avail else { return Ok(()) };
    for (s, w) in dcache {
        let mean = w.payload_min / 2 + w.payload_max / 2;
        let need = usize::try_from(w.keys)
            .unwrap_or(usize::MAX)
            .saturating_mul(mean.max(1));
        if need > avail / 2 {
            let payload = if *s == Scenario::Budget {
                "--budget-payload-max"
            } else {
                "--payload-max"
            };
            return Err(format!(
                "the {} scenario's table of --keys {} with payloads of {} on average may hold \
                 about {}, and about {} of memory is available (a run may use half): lower \
                 --keys (at most {} with these payloads) or {payload}",
                s.name(),
                w.keys,
                args::show_size_about(mean),
                args::show_size_about(need),
                args::show_size_about(avail),
                avail / 2 / mean.max(1),
            ));
        }
    }
    Ok(())
}

/// The backends this build has, rcu-reclaim first.
fn available() -> Vec<&'static str> {
    let v = vec![<Ours>::NAME, OursQsbr::NAME, Crossbeam::NAME, Seize::NAME];
    #[cfg(feature = "liburcu")]
    let v = {
        let mut v = v;
        v.push(super::urcu::Urcu::NAME);
        v.push(super::urcu::UrcuQsbr::NAME);
        v
    };
    let mut v = v;
    v.push(OursCollect::NAME);
    v.push(OursInline::NAME);
    v.push(OursPolled::NAME);
    v
}

impl BenchArgs {
    /// The backends `--backend` picks, rcu-reclaim first.
    fn backends(&self) -> Result<Vec<&'static str>, String> {
        let all = available();
        let cache = super::cache::cmd::available();
        for b in &self.backend {
            if !all.contains(&b.as_str()) && !cache.contains(&b.as_str()) {
                let hint = if b.starts_with("liburcu") || b.starts_with("urcu") {
                    if cfg!(feature = "liburcu") {
                        " (liburcu's backends are liburcu-memb and liburcu-qsbr)"
                    } else {
                        " (this build has no liburcu: build with --features liburcu, whose \
                         backends are liburcu-memb and liburcu-qsbr)"
                    }
                } else {
                    ""
                };
                return Err(format!(
                    "--backend {b:?} is not one of {}, or, in the cache scenario, {}{hint}",
                    all.join(", "),
                    cache
                        .iter()
                        .filter(|n| !all.contains(n))
                        .copied()
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        Ok(all
            .into_iter()
            .filter(|n| {
                let named = self.backend.iter().any(|b| b == n);
                let opt_in = [OursPolled::NAME, OursInline::NAME];
                let default = self.backend.is_empty() && !opt_in.contains(n);
                *n == <Ours>::NAME || named || default
            })
            .collect())
    }

    /// The cache scenario's backends that `--backend` picks, the one the
    /// ratios are against first.
    fn cache_backends(&self) -> Result<Vec<&'static str>, String> {
        let all = super::cache::cmd::available();
        let named: Vec<&'static str> = all
            .iter()
            .copied()
            .filter(|n| self.backend.iter().any(|b| b == n))
            .collect();
        if named.is_empty() {
            let opt_in = super::cache::cmd::OPT_IN;
            return Ok(all.into_iter().filter(|n| !opt_in.contains(n)).collect());
        }
        // The first (rcu-reclaim's RcuCache, when the build has it) always runs.
        Ok(all
            .iter()
            .copied()
            .enumerate()
            .filter(|&(i, n)| i == 0 || named.contains(&n))
            .map(|(_, n)| n)
            .collect())
    }
}

/// One run of the backend named `name`.
/// The untimed run each backend makes before the first round: a tenth of
/// a timed run, from [`MIN_RUN`] to half a second.
fn warm_up(w: &Workload) -> Workload {
    Workload {
        duration: (w.duration / 10)
            .clamp(Duration::from_secs_f64(MIN_RUN), Duration::from_millis(500)),
        ..w.clone()
    }
}

fn run_one(
    name: &str,
    w: &Workload,
    on_sample: &mut dyn FnMut(&run::Sample),
) -> Result<RunResult, String> {
    match name {
        <Ours>::NAME => run::run(<Ours>::new()?, w, on_sample),
        OursInline::NAME => run::run(OursInline::new()?, w, on_sample),
        OursCollect::NAME => run::run(OursCollect::new()?, w, on_sample),
        OursQsbr::NAME => run::run(OursQsbr::new()?, w, on_sample),
        Crossbeam::NAME => run::run(Crossbeam::new(), w, on_sample),
        Seize::NAME => run::run(Seize::new(), w, on_sample),
        OursPolled::NAME => run::run(OursPolled::new()?, w, on_sample),
        #[cfg(feature = "liburcu")]
        super::urcu::Urcu::NAME => run::run(super::urcu::Urcu::new()?, w, on_sample),
        #[cfg(feature = "liburcu")]
        super::urcu::UrcuQsbr::NAME => run::run(super::urcu::UrcuQsbr::new()?, w, on_sample),
        other => Err(format!("no backend named {other}")),
    }
}

/// A scenario's report in the JSON output.
#[derive(Serialize)]
#[serde(untagged)]
enum AnyReport<'a> {
    Dcache(&'a ScenarioReport),
    Cache(&'a CacheScenarioReport),
    CacheCgroup(&'a CgroupReport),
}

#[derive(Serialize)]
struct Output<'a> {
    backends: &'a [&'static str],
    /// The cache scenario's backends, when it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_backends: Option<&'a [&'static str]>,
    cpus: usize,
    scenarios: Vec<AnyReport<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    plot: Option<&'a PathBuf>,
}

fn bar(json: bool, len: u64, scenario: &str) -> ProgressBar {
    if json {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>13} [{bar:30}] {pos}/{len} runs  {msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(scenario.to_string());
    bar
}

/// Runs the bench as the arguments say.
pub fn run(args: &BenchArgs, plan: Plan) -> Result<(), String> {
    let names = args.backends()?;
    let mut reports = Vec::new();
    for (scenario, w) in &plan.dcache {
        let rounds = usize::from(args.rounds);
        let bar = bar(args.json, (rounds * names.len()) as u64, scenario.name());
        let mut runs: Vec<Vec<RunResult>> = names.iter().map(|_| Vec::new()).collect();
        // Whoever ran first paid for growing the process's heap (the
        // allocator's arenas, page faults on fresh pages) and later runs
        // reused it: a 1-thread run measured the first backend at 0.69x
        // the second, and at 1.04x once each had run before.
        let warm = warm_up(w);
        for name in &names {
            bar.set_message(format!("warm-up: {name}"));
            run_one(name, &warm, &mut |_| {})?;
        }
        for round in 0..rounds {
            // A B C D, then B C D A, ...: every backend runs in every
            // position, so drift and warm-up land on all of them.
            for i in 0..names.len() {
                let b = (round + i) % names.len();
                bar.set_message(format!("round {}: {}", round + 1, names[b]));
                let r = run_one(names[b], w, &mut |_| {})?;
                runs[b].push(r);
                bar.inc(1);
            }
        }
        bar.finish_and_clear();
        reports.push(report::scenario(scenario.name(), w, &names, &runs));
    }
    let cache_names = args.cache_backends()?;
    if let (Some(w), Some(name)) = (&plan.cache, args.cache.child()) {
        return super::cache::cmd::child_main(w, name);
    }
    let cgroup = match &plan.cache {
        Some(w) if args.cache.cgroup() => {
            let rounds = usize::from(args.rounds);
            let bar = bar(args.json, 0, Scenario::Cache.name());
            let r = super::cache::cmd::run_cgroup(w, &cache_names, rounds, &bar)?;
            bar.finish_and_clear();
            Some(r)
        }
        _ => None,
    };
    let cache = match &plan.cache {
        Some(_) if cgroup.is_some() => None,
        Some(w) => {
            let rounds = usize::from(args.rounds);
            let bar = bar(
                args.json,
                (rounds * cache_names.len()) as u64,
                Scenario::Cache.name(),
            );
            let r = super::cache::cmd::run(w, &cache_names, rounds, &bar)?;
            bar.finish_and_clear();
            Some(r)
        }
        None => None,
    };
    // A plot that cannot be written still leaves the results printed.
    let plot = (!args.no_plot).then_some(&args.plot);
    let plot_error = plot.and_then(|path| {
        let cache_row = cache
            .as_ref()
            .map(|c| move |row: &super::plot::Area<'_>| super::cache::plot::row(row, c));
        let extra = cache_row.as_ref().map(|f| f as super::plot::ExtraRow<'_>);
        super::plot::write_svg(path, &reports, extra).err()
    });
    let plot = plot.filter(|_| plot_error.is_none());
    if args.json {
        let mut scenarios: Vec<AnyReport<'_>> = reports.iter().map(AnyReport::Dcache).collect();
        scenarios.extend(cache.as_ref().map(AnyReport::Cache));
        scenarios.extend(cgroup.as_ref().map(AnyReport::CacheCgroup));
        let out = Output {
            backends: &names,
            cache_backends: plan.cache.as_ref().map(|_| &cache_names[..]),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            scenarios,
            plot,
        };
        let text = serde_json::to_string_pretty(&out).map_err(|e| e.to_string())?;
        outln!("{text}");
    } else {
        for r in &reports {
            let mut text = report::table(r);
            if args.targets {
                text += &report::target_lines(r);
            }
            outln!("{text}");
        }
        if let Some(c) = &cache {
            let mut text = super::cache::report::table(c);
            if args.targets {
                text += &report::lines(&c.targets);
            }
            outln!("{text}");
        }
        if let Some(c) = &cgroup {
            outln!("{}", super::cache::cgroup::table(c));
        }
        if let Some(path) = plot {
            outln!("plot: {}", path.display());
        }
    }
    if let Some(e) = plot_error {
        return Err(e);
    }
    // A child that failed on its own measured nothing: not a success.
    match cgroup
        .as_ref()
        .and_then(|c| super::cache::cgroup::failed_runs(&c.entries))
    {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn plan(argv: &[&str], cpus: usize) -> Result<Plan, String> {
        let argv = ["bench", "--no-plot"].iter().chain(argv.iter()).copied();
        Cli::parse_from(argv).bench.workloads_on(cpus)
    }

    /// On a machine of more CPUs than --threads takes (here 96), the cache
    /// scenario's default threads under --cgroup-limit are refused, naming
    /// the flag: each cache's child was given --threads 96 and refused it,
    /// and the bench printed a table where nothing survived and exited 0.
    #[test]
    fn default_threads_past_what_the_cgroup_child_takes_are_refused() {
        let cache = ["--scenario", "cache", "--cgroup-limit", "256M"];
        let e = plan(&cache, 96).err().unwrap();
        assert_eq!(
            e,
            "--cgroup-limit runs each cache in a child that takes at most 64 --threads, and the \
             default here is 96 (one per CPU): give --threads 64 or fewer"
        );
        // Its advice is taken; without the cgroup the default stands.
        let with_64 = [&cache[..], &["--threads", "64"]].concat();
        assert_eq!(plan(&with_64, 96).err(), None);
        let plan = plan(&["--scenario", "cache"], 96).unwrap();
        assert_eq!(plan.cache.map(|w| w.threads), Some(96));
    }

    /// The budget scenario's payloads are held to an eighth of the budget,
    /// as the demo's are (16M payloads in a 16M budget were accepted).
    #[test]
    fn budget_payloads_past_an_eighth_of_the_budget_are_refused() {
        let big = ["--budget", "16M", "--budget-payload-max", "16M"];
        let e = plan(&[&["--scenario", "budget"], &big[..]].concat(), 2)
            .err()
            .unwrap();
        assert!(
            e.starts_with("--budget-payload-max (16M) must be at most an eighth of --budget (16M)"),
            "{e}"
        );
        let fits = [
            "--scenario",
            "budget",
            "--budget",
            "16M",
            "--budget-payload-max",
            "2M",
            "--keys",
            "1000",
        ];
        assert_eq!(plan(&fits, 2).err(), None);
    }
}
