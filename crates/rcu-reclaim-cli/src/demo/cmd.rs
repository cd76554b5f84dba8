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
    /// Seconds per side (0.2 to 3600; or with a unit: 500ms, 30s, 2m).
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
    #[arg(long, allow_hyphen_values = true, value_parser = Int::<u16>::new(1, 64))]
    readers: Option<u16>,
    /// Writer threads (1 to 64).
    #[arg(long, default_value_t = 1, allow_hyphen_values = true,
          value_parser = Int::<u16>::new(1, 64))]
    writers: u16,
    /// Distinct keys (100 to 100000000).
    #[arg(long, default_value_t = 20_000, allow_hyphen_values = true,
          value_parser = Int::<u64>::new(100, 100_000_000))]
    keys: u64,
    /// Smallest payload, e.g. 1K (1 B to 16M).
    #[arg(long, default_value = "1K", allow_hyphen_values = true, value_parser = args::PAYLOAD)]
    payload_min: usize,
    /// Largest payload, e.g. 64K (at least --payload-min, at most 16M).
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
}

impl DemoArgs {
    /// Checks the flags against each other; the message names the flag.
    pub fn config(&self) -> Result<DemoConfig, String> {
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
            (None, Some(l)) => (l / 4 * 3).max(16 * MIB),
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
        if !self.child && self.unaware_budget.is_some() && self.side == Side::Aware {
            return Err(
                "--unaware-budget sets the unaware run's budget, and --side aware \
                        runs only the aware one: drop --unaware-budget, or give --side both"
                    .into(),
            );
        }
        if self.child && self.side == Side::Both {
            return Err("--child runs one side: give --side unaware or --side aware".into());
        }
        if !self.child && !self.no_plot {
            args::check_plot_path(&self.plot)?;
        }
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let readers = self
            .readers
            .map_or(cpus.saturating_sub(self.writers.into()).max(1), usize::from);
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
            None => demo::run_side(&cfg, aware, &mut on_sample),
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
    plot_error.map_or(Ok(()), Err)
}
