//! `rcu-reclaim demo`: its arguments, the runs (in this process, or each in
//! its own memory cgroup), the progress bar, and the table, JSON and plot.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::args::{self, Int};
use crate::demo::{self, DemoConfig, Side, SideReport};
use crate::stdout::{out, outln};

const MIB: usize = 1 << 20;

/// `--payload-max` may be at most this fraction of a budget: a cache of a
/// handful of entries, each a large share of the budget, only reclaims.
const MIN_ENTRIES_PER_BUDGET: usize = 8;

/// The demo's flags.
#[derive(Args)]
pub struct DemoArgs {
    /// Seconds per side (0.2 to 3600; or with a unit: 500ms, 30s, 2m, 1m30s).
    #[arg(long, default_value = "15", allow_hyphen_values = true, value_parser = args::SECS)]
    duration: f64,
    /// Memory budget the process reclaims against, e.g. 256M, 1.5G or
    /// 512MiB (16M to 64G; at most --cgroup-limit; K, M, G and T are powers of
    /// 1024). Default 96M, or 3/4 of --cgroup-limit (at least 16M: under a
    /// limit of about 24M the budget is the whole limit).
    #[arg(long, allow_hyphen_values = true, value_parser = args::BUDGET)]
    budget: Option<usize>,
    /// A budget for the unaware run alone (16M to 64G), e.g. 2G: its
    /// throughput when it is not short of memory, to compare with the aware
    /// run under --budget.
    #[arg(long, allow_hyphen_values = true, value_parser = args::UNAWARE_BUDGET)]
    unaware_budget: Option<usize>,
    /// Also run each side in a child process inside a fresh memory cgroup
    /// with this hard limit (16M to 64G), so the kernel's OOM killer judges.
    #[arg(long, allow_hyphen_values = true, value_parser = args::CGROUP_LIMIT)]
    cgroup_limit: Option<usize>,
    /// Reader threads (1 to 64). Default: the CPUs left by the writers (at
    /// least 1): more busy threads than CPUs preempt readers inside their
    /// sections and stretch every grace period.
    #[arg(long, allow_hyphen_values = true,
          value_parser = Int::<u16>::new(1, args::MAX_THREADS))]
    readers: Option<u16>,
    /// Writer threads (1 to 64).
    #[arg(long, default_value_t = 1, allow_hyphen_values = true,
          value_parser = Int::<u16>::new(1, args::MAX_THREADS))]
    writers: u16,
    /// Distinct keys (100 to 100000000).
    #[arg(long, default_value_t = 20_000, allow_hyphen_values = true,
          value_parser = Int::<u64>::new(100, 100_000_000))]
    keys: u64,
    /// Smallest payload, e.g. 1K (1 B to 16M).
    #[arg(long, default_value = "1K", allow_hyphen_values = true, value_parser = args::PAYLOAD)]
    payload_min: usize,
    /// Largest payload, e.g. 64K (at least --payload-min; at most 16M and an
    /// eighth of each budget: 12M under the default 96M budget).
    #[arg(long, default_value = "64K", allow_hyphen_values = true, value_parser = args::PAYLOAD)]
    payload_max: usize,
    /// Which runs: both (default), unaware or aware.
    #[arg(long, value_enum, default_value_t = Side::Both)]
    side: Side,
    /// Where to write the plot (SVG); its directory must exist.
    #[arg(
        long,
        default_value = "rcu-reclaim-demo.svg",
        conflicts_with = "no_plot"
    )]
    plot: PathBuf,
    /// Do not write the plot.
    #[arg(long)]
    no_plot: bool,
    /// Print JSON instead of the table.
    #[arg(long)]
    json: bool,
    /// Internal: run one side and stream JSON lines (used by --cgroup-limit).
    #[arg(long, hide = true)]
    child: bool,
    /// Whether --plot was given on the command line (not its default),
    /// which `--child` refuses ([`DemoArgs::set_plot_given`]).
    #[arg(skip)]
    plot_given: bool,
}

impl DemoArgs {
    /// Records whether --plot was given on the command line.
    pub fn set_plot_given(&mut self, matches: &clap::ArgMatches) {
        self.plot_given =
            matches.value_source("plot") == Some(clap::parser::ValueSource::CommandLine);
    }

    /// Checks `cfg` against the memory this process can get now
    /// ([`check_room`]); a `--child` run is checked by its parent.
    pub fn check_room(&self, cfg: &DemoConfig) -> Result<(), String> {
        if self.child {
            return Ok(());
        }
        check_room(cfg, Room::of_this_process().as_ref())
    }

    /// Checks the flags against each other; the message names the flag.
    pub fn config(&self) -> Result<DemoConfig, String> {
        self.config_on(std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    /// [`config`](Self::config) on a machine of `cpus` CPUs.
    fn config_on(&self, cpus: usize) -> Result<DemoConfig, String> {
        if self.payload_max < self.payload_min {
            return Err(format!(
                "--payload-max ({}) must be at least --payload-min ({}): raise --payload-max \
                 or lower --payload-min",
                args::show_size(self.payload_max),
                args::show_size(self.payload_min)
            ));
        }
        let budget = match (self.budget, self.cgroup_limit) {
            (Some(b), Some(l)) if b > l => {
                return Err(format!(
                    "--budget ({}) must not exceed --cgroup-limit ({}): lower --budget or \
                     raise --cgroup-limit (or drop --budget: 3/4 of the limit)",
                    args::show_size(b),
                    args::show_size(l)
                ))
            }
            (Some(b), _) => b,
            (None, Some(l)) => (l / 4 * 3).max(MIN_BUDGET),
            (None, None) => 96 * MIB,
        };
        for (flag, b) in [
            ("--budget", Some(budget)),
            ("--unaware-budget", self.unaware_budget),
        ] {
            match b {
                Some(b) if self.payload_max > b / MIN_ENTRIES_PER_BUDGET => {
                    return Err(format!(
                        "--payload-max ({}) must be at most an eighth of {flag} ({}): a cache \
                         of a few entries that each fill a large share of the budget would do \
                         nothing but reclaim; lower --payload-max or raise {flag}",
                        args::show_size(self.payload_max),
                        args::show_size(b)
                    ))
                }
                _ => {}
            }
        }
        if let (Some(u), Some(l)) = (self.unaware_budget, self.cgroup_limit) {
            if u > l {
                return Err(format!(
                    "--unaware-budget ({}) must not exceed --cgroup-limit ({}): lower \
                     --unaware-budget or raise --cgroup-limit",
                    args::show_size(u),
                    args::show_size(l)
                ));
            }
        }
        // The unaware run alone, under its own budget: --budget, the aware
        // run's, would be ignored without a word.
        if !self.child
            && self.unaware_budget.is_some()
            && self.budget.is_some()
            && self.side == Side::Unaware
        {
            return Err(
                "--side unaware runs under --unaware-budget, and --budget is the aware run's: \
                 drop --budget, or give --side both"
                    .into(),
            );
        }
        if !self.child && self.unaware_budget.is_some() && self.side == Side::Aware {
            return Err(
                "--unaware-budget sets the unaware run's budget, and --side aware \
                        runs only the aware one: drop --unaware-budget, or give --side both"
                    .into(),
            );
        }
        // --child is what --cgroup-limit runs in each side's cgroup: it
        // streams JSON lines and writes no table, JSON report or plot, so
        // these flags given by hand with it were ignored without a word.
        if self.child {
            let given = [
                ("--cgroup-limit", self.cgroup_limit.is_some()),
                ("--unaware-budget", self.unaware_budget.is_some()),
                ("--json", self.json),
                ("--plot", self.plot_given),
                ("--no-plot", self.no_plot),
            ];
            if let Some((flag, _)) = given.iter().find(|(_, given)| *given) {
                return Err(format!(
                    "--child is internal (one side's run in a child of --cgroup-limit, which \
                     streams JSON lines) and ignores {flag}: drop --child; to run each side in \
                     a memory cgroup, run `rcu-reclaim demo --cgroup-limit SIZE`"
                ));
            }
        }
        if self.child && self.side == Side::Both {
            return Err("--child runs one side: give --side unaware or --side aware".into());
        }
        if !self.child && !self.no_plot {
            args::check_plot_path(&self.plot)?;
        }
        let readers = self
            .readers
            .map_or(cpus.saturating_sub(self.writers.into()).max(1), usize::from);
        if self.cgroup_limit.is_some() && !self.child {
            args::check_child_threads(
                "--readers",
                readers,
                "each side",
                "the CPUs left by the writers",
            )?;
        }
        Ok(DemoConfig {
            duration: Duration::from_secs_f64(self.duration),
            budget,
            unaware_budget: self.unaware_budget,
            cgroup_limit: self.cgroup_limit,
            readers,
            writers: self.writers.into(),
            keys: self.keys,
            payload_min: self.payload_min,
            payload_max: self.payload_max,
        })
    }
}

#[derive(Serialize)]
struct DemoOutput<'a> {
    config: &'a DemoConfig,
    #[serde(skip_serializing_if = "Option::is_none")]
    unaware: Option<&'a SideReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aware: Option<&'a SideReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    plot: Option<&'a PathBuf>,
}

fn bar(cfg: &DemoConfig, aware: bool, json: bool) -> ProgressBar {
    if json {
        return ProgressBar::hidden();
    }
    let ms = cfg.duration.as_millis() as u64;
    let bar = ProgressBar::new(ms);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>8} [{bar:30}] {percent:>3}%  {msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(demo::mode_name(aware));
    bar
}

/// The memory this process can get: the least of its cgroup's limit and
/// the machine's available memory, with where each figure came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Room {
    /// Bytes.
    pub bytes: usize,
    /// What sets it, for the message: "this process's cgroup memory limit
    /// (FILE)" or "the memory available now (/proc/meminfo)".
    pub what: String,
}

impl Room {
    /// This process's room now; `None` if neither figure can be read.
    pub fn of_this_process() -> Option<Room> {
        let cgroup = rcu_reclaim::sources::CgroupUsageSource::for_this_process()
            .ok()
            .map(|c| Room {
                bytes: c.limit(),
                what: format!(
                    "this process's cgroup memory limit, beside {}",
                    c.file().display()
                ),
            });
        let available = crate::bench::cache::cmd::mem_available().map(|bytes| Room {
            bytes,
            what: "the memory available now, MemAvailable in /proc/meminfo".into(),
        });
        [cgroup, available]
            .into_iter()
            .flatten()
            .min_by_key(|r| r.bytes)
    }
}

/// The least budget (and cgroup limit) the flags take.
const MIN_BUDGET: usize = 16 * MIB;

/// What a demo holds beyond the bytes its budget counts: the binary,
/// stacks and tables.
const PROGRAM_BYTES: usize = 16 * MIB;

/// What a run under `budget` may hold at its peak, beyond the budget the
/// accounting allocator counts: the allocator's own overhead and
/// fragmentation (an eighth), and [`PROGRAM_BYTES`].
fn peak_for(budget: usize) -> usize {
    budget
        .saturating_add(budget / 8)
        .saturating_add(PROGRAM_BYTES)
}

/// The largest budget whose [`peak_for`] fits in `room` bytes, rounded
/// down to a MiB.
fn largest_budget_within(room: usize) -> usize {
    room.saturating_sub(PROGRAM_BYTES) / 9 * 8 / MIB * MIB
}

/// Refuses a demo that the memory it can get (`room`) would not hold: the
/// kernel would kill it, printing nothing (the table comes at the end).
/// Under `--cgroup-limit`, each side's cgroup sits below this process's,
/// so that limit is what must fit; without it, the budgets themselves.
pub fn check_room(cfg: &DemoConfig, room: Option<&Room>) -> Result<(), String> {
    let Some(room) = room else { return Ok(()) };
    let show = args::show_size;
    let (flag, needed, value) = match (cfg.cgroup_limit, cfg.unaware_budget) {
        (Some(limit), _) => ("--cgroup-limit", limit, limit),
        (None, Some(u)) if u > cfg.budget => ("--unaware-budget", peak_for(u), u),
        (None, _) => ("--budget", peak_for(cfg.budget), cfg.budget),
    };
    // A table too small to fill the budget never reaches it: every key at
    // the largest payload, and as much again waiting for grace periods.
    let table = usize::try_from(cfg.keys)
        .unwrap_or(usize::MAX)
        .saturating_mul(cfg.payload_max)
        .saturating_mul(2);
    if needed.min(peak_for(table)) <= room.bytes {
        return Ok(());
    }
    let (fits, why) = if cfg.cgroup_limit.is_some() {
        let why = format!(
            "each side's cgroup sits below this process's, which has {} ({}): the kernel \
             would kill the whole demo, not the side under test",
            args::show_size_about(room.bytes),
            room.what
        );
        // Rounded down to a MiB, as the budget's advice is: a limit in
        // kibibytes reads as a figure nobody would type.
        (room.bytes / MIB * MIB, why)
    } else {
        let why = format!(
            "a run under it peaks at about {} (the budget, the allocator's overhead and the \
             program), more than {} ({}): the kernel would kill the demo before it printed \
             anything",
            args::show_size_about(needed),
            args::show_size_about(room.bytes),
            room.what
        );
        (largest_budget_within(room.bytes), why)
    };
    let advice = if fits >= MIN_BUDGET {
        format!("lower {flag} to {} or less", show(fits))
    } else {
        "free some memory, or run it where more is free".into()
    };
    Err(format!(
        "{flag} ({}) does not fit: {why}; {advice}",
        show(value)
    ))
}

/// Runs the demo as the arguments say.
pub fn run(args: &DemoArgs, cfg: DemoConfig) -> Result<(), String> {
    if args.child {
        return crate::demo::cgroup_side::child_main(&cfg, args.side == Side::Aware);
    }
    let mut sides = Vec::new();
    for &aware in args.side.runs() {
        let bar = bar(&cfg, aware, args.json);
        let mut on_sample = |s: &demo::Sample| {
            bar.set_position(s.ms);
            bar.set_message(format!(
                "heap {:>4} MiB, pending in RCU {:>4} MiB",
                s.mem / MIB,
                s.pending / MIB
            ));
        };
        let side = match cfg.cgroup_limit {
            Some(limit) => {
                crate::demo::cgroup_side::run_in_cgroup(&cfg, aware, limit, &mut on_sample)?
            }
            None => {
                let side = demo::run_side(&cfg, aware, &mut on_sample)?;
                // The next side starts from what the kernel holds, not on
                // top of what glibc kept of this one's frees (its arenas'
                // free chunks): both sides in one process peaked at 1.7x
                // the budget's RSS, each alone at the budget plus 25 MiB.
                // SAFETY: malloc_trim has no preconditions.
                unsafe { libc::malloc_trim(0) };
                side
            }
        };
        match &side.cgroup {
            Some(c) if c.oom_killed => {
                bar.abandon_with_message("killed by the kernel's OOM killer")
            }
            Some(c) if !c.exit.starts_with("exit code 0") => {
                bar.abandon_with_message(c.exit.clone())
            }
            _ => bar.finish_with_message("done"),
        }
        sides.push(side);
    }
    // A plot that cannot be written still leaves the results printed.
    let plot = (!args.no_plot).then_some(&args.plot);
    let plot_error = plot.and_then(|path| crate::demo::plot::write_svg(path, &cfg, &sides).err());
    let plot = plot.filter(|_| plot_error.is_none());
    if args.json {
        let out = DemoOutput {
            config: &cfg,
            unaware: sides.iter().find(|s| s.mode == "unaware"),
            aware: sides.iter().find(|s| s.mode == "aware"),
            plot,
        };
        let text = serde_json::to_string_pretty(&out).map_err(|e| e.to_string())?;
        outln!("{text}");
    } else {
        out!("{}", demo::table(&cfg, &sides));
        if let Some(path) = plot {
            outln!("\nplot: {}", path.display());
        }
    }
    if let Some(e) = plot_error {
        return Err(e);
    }
    // A side killed before its first sample measured nothing (the table's
    // note says why): not a successful run.
    let unstarted = demo::unstarted_sides(&sides);
    if !unstarted.is_empty() {
        let which = match unstarted.as_slice() {
            [one] => format!("the {one} side was"),
            _ => "both sides were".to_string(),
        };
        return Err(format!(
            "{which} killed before the first sample, so nothing was compared; give \
             --cgroup-limit 128M or more"
        ));
    }
    // A side whose child ended otherwise before its first sample (its own
    // error, which it printed above, or a signal) measured nothing either.
    let failed = demo::failed_sides(&sides);
    if !failed.is_empty() {
        let each: Vec<String> = failed
            .iter()
            .map(|(mode, exit)| format!("the {mode} side's child ended ({exit})"))
            .collect();
        let its = if failed.len() == 1 { "its" } else { "their" };
        return Err(format!(
            "{} before {its} first sample, so nothing was compared (a message of the child's, \
             if any, is above)",
            each.join(" and ")
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        demo: DemoArgs,
    }

    fn cfg(argv: &[&str]) -> DemoConfig {
        let argv = ["demo", "--no-plot"]
            .into_iter()
            .chain(argv.iter().copied());
        Cli::parse_from(argv).demo.config().unwrap()
    }

    fn room(mib: usize) -> Room {
        Room {
            bytes: mib * MIB,
            what: "this process's cgroup memory limit, beside x".into(),
        }
    }

    /// On a machine of more CPUs than --readers takes (here 96), the
    /// default readers under --cgroup-limit are refused, naming the flag:
    /// each side's child was given --readers 95 and refused it, and the
    /// demo printed a table of zeros and exited 0.
    #[test]
    fn default_readers_past_what_the_cgroup_child_takes_are_refused() {
        let parse = |argv: &[&str]| {
            Cli::parse_from(["demo", "--no-plot"].iter().chain(argv.iter()).copied()).demo
        };
        let e = parse(&["--cgroup-limit", "256M"])
            .config_on(96)
            .unwrap_err();
        assert_eq!(
            e,
            "--cgroup-limit runs each side in a child that takes at most 64 --readers, and the \
             default here is 95 (the CPUs left by the writers): give --readers 64 or fewer"
        );
        // Its advice is taken; without the cgroup the default stands.
        let ok = parse(&["--cgroup-limit", "256M", "--readers", "64"]).config_on(96);
        assert_eq!(ok.map(|c| c.readers), Ok(64));
        assert_eq!(parse(&[]).config_on(96).map(|c| c.readers), Ok(95));
        assert_eq!(
            parse(&["--cgroup-limit", "256M", "--writers", "32"])
                .config_on(96)
                .map(|c| c.readers),
            Ok(64)
        );
    }

    #[test]
    fn a_budget_the_room_holds_runs() {
        assert_eq!(check_room(&cfg(&[]), Some(&room(128))), Ok(()));
        assert_eq!(check_room(&cfg(&["--budget", "512M"]), None), Ok(()));
        // 96M: a peak of 96 + 12 + 16 MiB.
        assert_eq!(check_room(&cfg(&[]), Some(&room(124))), Ok(()));
    }

    #[test]
    fn a_budget_over_the_room_is_refused_naming_the_flag_the_room_and_what_fits() {
        let e = check_room(&cfg(&["--budget", "512M"]), Some(&room(384))).unwrap_err();
        assert!(e.starts_with("--budget (512M) does not fit"), "{e}");
        assert!(
            e.contains("more than 384M (this process's cgroup memory limit"),
            "{e}"
        );
        assert!(e.contains("lower --budget to 327M or less"), "{e}");
        // Its advice is itself accepted.
        assert_eq!(
            check_room(&cfg(&["--budget", "327M"]), Some(&room(384))),
            Ok(())
        );
        assert!(check_room(&cfg(&["--budget", "328M"]), Some(&room(384))).is_err());
        // The unaware budget, when larger, is the one that must fit.
        let e = check_room(&cfg(&["--unaware-budget", "2G"]), Some(&room(384))).unwrap_err();
        assert!(e.starts_with("--unaware-budget (2G) does not fit"), "{e}");
        // Too little room for any budget says so.
        let e = check_room(&cfg(&["--budget", "16M"]), Some(&room(20))).unwrap_err();
        assert!(
            e.ends_with("free some memory, or run it where more is free"),
            "{e}"
        );
    }

    #[test]
    fn a_table_too_small_to_fill_the_budget_runs_whatever_the_budget() {
        let small = ["--keys", "100", "--payload-max", "2K"];
        let c = cfg(&[&small[..], &["--budget", "32G"]].concat());
        assert_eq!(check_room(&c, Some(&room(64))), Ok(()));
        // 100 000 keys of up to 64K can fill it: refused.
        let c = cfg(&["--keys", "100000", "--budget", "32G"]);
        assert!(check_room(&c, Some(&room(64))).is_err());
    }

    #[test]
    fn a_cgroup_limit_over_the_room_is_refused() {
        let c = cfg(&["--cgroup-limit", "1G", "--budget", "100M"]);
        let e = check_room(&c, Some(&room(512))).unwrap_err();
        assert!(e.starts_with("--cgroup-limit (1G) does not fit"), "{e}");
        assert!(e.contains("lower --cgroup-limit to 512M or less"), "{e}");
        assert_eq!(check_room(&c, Some(&room(1024))), Ok(()));
        // Room that is no whole number of MiB (MemAvailable rarely is):
        // the advice is rounded down to a MiB, not shown in kibibytes.
        let odd = Room {
            bytes: 512 * MIB + 700 * 1024,
            what: "the memory available now".into(),
        };
        let e = check_room(&c, Some(&odd)).unwrap_err();
        assert!(e.contains("lower --cgroup-limit to 512M or less"), "{e}");
    }
}
