//! `rcu-reclaim torture`: the torture test (the `rcu-reclaim-torture` crate)
//! from the command line. Exit code 0 on SUCCESS, 1 on FAILURE, 2 on bad
//! flags.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use rcu_reclaim::Flavor;
use rcu_reclaim_torture::{self as torture, Fault, TortureConfig, UpdateMode};

use crate::args::{self, Int};
use crate::stdout::{errln, out, outln};

#[derive(Args, Debug)]
pub struct TortureArgs {
    /// Seconds to run (0.2 to 86400), or with a unit: 500ms, 30s, 10m, 1h30m, 24h.
    #[arg(long, default_value = "10", allow_hyphen_values = true, value_parser = args::TORTURE_SECS)]
    duration: f64,
    /// Reader threads (1 to 256).
    #[arg(long, default_value_t = 2, allow_hyphen_values = true,
          value_parser = Int::<u16>::new(1, 256))]
    readers: u16,
    /// Writer threads (1 to 64).
    #[arg(long, default_value_t = 1, allow_hyphen_values = true,
          value_parser = Int::<u16>::new(1, 64))]
    writers: u16,
    /// Flavor: auto (detect), memb, mb or qsbr (readers are registered QSBR
    /// threads that report quiescent states and go offline now and then).
    #[arg(long, default_value = "auto", value_parser = parse_flavor)]
    flavor: FlavorArg,
    /// Update modes the writers rotate through, comma-separated: sync, exp,
    /// poll, call, defer (default: all; a mode given twice runs once).
    #[arg(long, value_delimiter = ',', value_parser = parse_mode)]
    modes: Vec<UpdateMode>,
    /// Mean pause between a writer's updates, in microseconds (0 to 1000000).
    #[arg(long, default_value_t = 100, allow_hyphen_values = true,
          value_parser = Int::<u32>::new(0, 1_000_000))]
    writer_delay_us: u32,
    /// Callback floods: bursts of 2 × qhimark callbacks every 100 ms.
    #[arg(long)]
    flood: bool,
    /// The domain's qhimark (100 to 1000000; default 10000, or 2000 with --all).
    #[arg(long, allow_hyphen_values = true, value_parser = Int::<u32>::new(100, 1_000_000))]
    qhimark: Option<u32>,
    /// Pressure signals raised and dropped per second (0 = off, up to 10000;
    /// 50 with --all).
    #[arg(long, allow_hyphen_values = true, value_parser = args::HZ)]
    pressure_hz: Option<f64>,
    /// A garbage bound (Rcu::bound_garbage) whose usage jumps near its mark
    /// every 5 ms while 4 MiB is retired: retiring threads wait for their
    /// garbage (on with --all; the run fails if none ever waited).
    #[arg(long)]
    garbage_bound: bool,
    /// Thread churn: short-lived readers start and exit throughout the run.
    #[arg(long)]
    churn: bool,
    /// Random delays inside reader sections.
    #[arg(long)]
    reader_stalls: bool,
    /// Synthetic topology: NUMA nodes (0 = this machine's; 1 to 64; 2 with --all).
    #[arg(long, allow_hyphen_values = true, value_parser = Int::<u16>::new(0, 64))]
    nodes: Option<u16>,
    /// Synthetic topology: CPUs per node (1 to 64; default 2). Needs a
    /// synthetic topology: --nodes 1 or more, or --all.
    #[arg(long, allow_hyphen_values = true, value_parser = Int::<u16>::new(1, 64))]
    cpus_per_node: Option<u16>,
    /// Faults to inject, comma-separated: panic, alloc, exit, stall, or all.
    #[arg(long, value_delimiter = ',', value_parser = parse_fault)]
    faults: Vec<FaultArg>,
    /// Stall timeout in milliseconds (10 to 60000; default 1000, or 200 with --all).
    #[arg(long, allow_hyphen_values = true, value_parser = Int::<u32>::new(10, 60_000))]
    stall_timeout_ms: Option<u32>,
    /// Every option and every fault (flood, pressure flapping, a garbage
    /// bound, churn, reader stalls, 2x2 topology, all faults); other flags
    /// still apply.
    #[arg(long)]
    all: bool,
    /// A deliberately broken RCU (writers free without grace periods), to
    /// see the checks catch it: the run must end in FAILURE.
    #[arg(long)]
    busted: bool,
    /// Seed of the threads' random choices (0 to 18446744073709551615).
    #[arg(long, default_value_t = 0x5eed, allow_hyphen_values = true,
          value_parser = Int::<u64>::new(0, u64::MAX))]
    seed: u64,
    /// Print the report as JSON instead of text.
    #[arg(long)]
    json: bool,
    /// No progress lines on stderr, nor the library's warnings (about the
    /// stalls and faults the run injects on purpose; the report counts
    /// them)
    #[arg(long)]
    quiet: bool,
}

#[derive(Clone, Copy, Debug)]
pub struct FlavorArg(Option<Flavor>);

#[derive(Clone, Debug)]
pub struct FaultArg(Vec<Fault>);

fn parse_flavor(s: &str) -> Result<FlavorArg, String> {
    match s {
        "auto" => Ok(FlavorArg(None)),
        "memb" => Ok(FlavorArg(Some(Flavor::Memb))),
        "mb" => Ok(FlavorArg(Some(Flavor::Mb))),
        "qsbr" => Ok(FlavorArg(Some(Flavor::Qsbr))),
        _ => Err(format!("unknown flavor {s:?}; use auto, memb, mb or qsbr")),
    }
}

fn parse_mode(s: &str) -> Result<UpdateMode, String> {
    s.trim().parse()
}

fn parse_fault(s: &str) -> Result<FaultArg, String> {
    match s.trim() {
        "all" => Ok(FaultArg(Fault::ALL.to_vec())),
        f => f
            .parse()
            .map(|f| FaultArg(vec![f]))
            .map_err(|e: String| format!("{e}, or all")),
    }
}

impl TortureArgs {
    fn config(&self) -> TortureConfig {
        let mut c = if self.all {
            TortureConfig::everything(Duration::ZERO)
        } else {
            TortureConfig::new()
        };
        c.duration = Duration::from_secs_f64(self.duration);
        c.readers = self.readers.into();
        c.writers = self.writers.into();
        c.flavor = self.flavor.0;
        if !self.modes.is_empty() {
            // A repeat would only print twice in the header.
            c.modes = once_each(self.modes.iter().copied());
        }
        c.writer_delay = Duration::from_micros(self.writer_delay_us.into());
        c.flood |= self.flood;
        if let Some(q) = self.qhimark {
            c.qhimark = q as usize;
        }
        if let Some(hz) = self.pressure_hz {
            c.pressure_hz = hz;
        }
        c.garbage_bound |= self.garbage_bound;
        c.churn |= self.churn;
        c.reader_stalls |= self.reader_stalls;
        if let Some(n) = self.nodes {
            c.nodes = n.into();
        }
        if let Some(n) = self.cpus_per_node {
            c.cpus_per_node = n.into();
        }
        if !self.faults.is_empty() {
            c.faults = once_each(self.faults.iter().flat_map(|f| f.0.iter().copied()));
        }
        if let Some(ms) = self.stall_timeout_ms {
            c.stall_timeout = Duration::from_millis(ms.into());
        }
        c.seed = self.seed;
        c.busted = self.busted;
        c
    }
}

/// `items` in the order first given, each once (`--modes`, `--faults`).
fn once_each<T: PartialEq>(items: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut once = Vec::new();
    for item in items {
        if !once.contains(&item) {
            once.push(item);
        }
    }
    once
}

/// Runs the torture; the process's exit code.
pub fn main(args: TortureArgs) -> ExitCode {
    let config = args.config();
    if args.cpus_per_node.is_some() && config.nodes == 0 {
        errln!(
            "error: --cpus-per-node sets the synthetic topology's CPUs per node, and this run \
             uses the machine's own topology (no --nodes, or --nodes 0): add --nodes 1 or more \
             (or --all, which has 2), or drop --cpus-per-node"
        );
        return ExitCode::from(2);
    }
    if config.has(Fault::ReaderStall) && config.duration < config.stall_timeout * 3 {
        let least = config.stall_timeout * 3;
        errln!(
            "error: the stall fault (--faults stall, also in --faults all and --all) needs a \
             --duration of at least three stall timeouts (3 x --stall-timeout-ms = {least:?}), \
             not {:?}: give --duration {} or more, a shorter --stall-timeout-ms, or leave the \
             stall fault out",
            config.duration,
            least.as_secs_f64()
        );
        return ExitCode::from(2);
    }
    if let Err(e) = config.validate() {
        errln!("error: {e} (see rcu-reclaim torture --help)");
        return ExitCode::from(2);
    }
    if config.has(Fault::CallbackPanic) {
        torture::silence_injected_panics();
    }
    let quiet = args.quiet || args.json;
    if quiet {
        silence_library_warnings();
    }
    let every = if config.duration >= Duration::from_secs(60) {
        10
    } else {
        1
    };
    let result = torture::run_with_progress(&config, |p| {
        let secs = p.elapsed.as_secs();
        if !quiet && secs % every == 0 {
            errln!(
                "rcu-torture: {secs:>5} s: {:.3e} reads, {} updates, {} grace periods",
                p.reads as f64,
                p.updates,
                p.grace_periods
            );
        }
    });
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            errln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => outln!("{text}"),
            Err(e) => {
                errln!("error: cannot serialize the report: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        out!("{report}");
    }
    if report.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Drops every `tracing` event: installed for `--quiet` and `--json`, it
/// keeps the library's warnings (a reader stall report per injected
/// stall, a panic report per injected callback panic) off standard error,
/// where they would otherwise go with no subscriber installed. The report
/// still counts them, from the domain's stats.
struct Discard;

impl tracing::Subscriber for Discard {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        false
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, _: &tracing::Event<'_>) {}
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

fn silence_library_warnings() {
    // Fails only if a subscriber is already installed: then it decides.
    let _ = tracing::subscriber::set_global_default(Discard);
}
