//! `rcu-reclaim`: the command-line front of the rcu-reclaim library.
//!
//! `info` reports what the library detected on this machine (flavor,
//! membarrier, CPUs) and runs a quick grace-period check; `demo` runs the
//! dentry-cache workload unaware and aware of memory pressure, side by side;
//! `bench` runs that workload on rcu-reclaim, crossbeam-epoch, seize and
//! (with the `liburcu` feature) liburcu, interleaved, and compares them.

mod bench;
mod cgroup_side;
mod demo;
mod demo_cmd;
mod plot;
#[cfg(test)]
mod size_proptest;
mod torture;
mod workload;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use rcu_reclaim::{AccountingAlloc, Config, Flavor, Rcu};
use serde::Serialize;

#[global_allocator]
static ALLOC: AccountingAlloc = AccountingAlloc::system();

/// Parses a size such as `256M`, `1G`, `512K` or `1048576`.
pub(crate) fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m: usize = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                _ => {
                    return Err(format!(
                        "unknown unit {c:?} in {s:?}; use K, M or G (e.g. 256M)"
                    ))
                }
            };
            (&t[..i], m)
        }
        _ => (t, 1),
    };
    let n: usize = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size; use a number with K, M or G (e.g. 256M, 1G)"))?;
    n.checked_mul(mult)
        .filter(|&v| v > 0)
        .ok_or_else(|| format!("{s:?} must be between 1 byte and 16 EiB"))
}

pub(crate) fn parse_budget(s: &str) -> Result<usize, String> {
    let v = parse_size(s)?;
    if !(16 << 20..=64 << 30).contains(&v) {
        return Err(format!(
            "{s:?} is out of range: the budget must be 16M to 64G"
        ));
    }
    Ok(v)
}

pub(crate) fn parse_payload(s: &str) -> Result<usize, String> {
    let v = parse_size(s)?;
    if v > 16 << 20 {
        return Err(format!(
            "{s:?} is out of range: payloads must be 1 B to 16M"
        ));
    }
    Ok(v)
}

pub(crate) fn parse_secs(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(0.2..=3600.0).contains(&v) {
        return Err(format!("{s:?} is out of range: 0.2 to 3600 seconds"));
    }
    Ok(v)
}

#[derive(Parser)]
#[command(
    name = "rcu-reclaim",
    version,
    about = "RCU for Rust whose deferred reclamation answers memory pressure"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The dentry-cache workload under a memory budget, unaware of pressure
    /// and then aware, side by side.
    Demo(demo_cmd::DemoArgs),
    /// Torture test in the style of the kernel's rcutorture: readers check
    /// the pipe stage of what they read while writers retire elements through
    /// every kind of grace period, with optional floods, pressure flapping,
    /// churn and injected faults. Ends with SUCCESS (exit 0) or FAILURE (exit 1).
    Torture(torture::TortureArgs),
    /// The dentry-cache workload on rcu-reclaim, crossbeam-epoch, seize and
    /// liburcu (built with --features liburcu), interleaved: throughput,
    /// read latency, peak memory and garbage, side by side.
    Bench(bench::cmd::BenchArgs),
    /// Report the flavor this machine gets, the pressure source and cgroup
    /// limit it would use, and time a few grace periods.
    Info {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Grace periods to time (1 to 1000000).
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        grace_periods: u32,
    },
}

#[derive(Serialize)]
struct Info {
    version: &'static str,
    flavor: Flavor,
    /// "available", or why membarrier cannot be used.
    membarrier: String,
    cpus: usize,
    grace_periods: u32,
    synchronize_mean_ns: u64,
    synchronize_expedited_mean_ns: u64,
    /// The pressure source `auto_pressure` picks here, and what it passed over.
    pressure_source: String,
    pressure_passed_over: Vec<String>,
    /// The memory limit of this process's cgroup...
    cgroup_limit: Option<u64>,
    /// ...or why there is none.
    cgroup_limit_error: Option<String>,
    stats: rcu_reclaim::Stats,
}

fn mean_ns(n: u32, mut f: impl FnMut()) -> u64 {
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    (start.elapsed() / n).as_nanos() as u64
}

fn info(json: bool, grace_periods: u32) -> Result<(), String> {
    let rcu = Rcu::global();
    let membarrier = Rcu::new(Config::new().flavor(Flavor::Memb))
        .map_or_else(|e| e.to_string(), |_| "available".to_string());
    let normal = mean_ns(grace_periods, || rcu.synchronize());
    let expedited = mean_ns(grace_periods, || rcu.synchronize_expedited());
    let monitor = rcu_reclaim::auto_pressure(u64::MAX);
    let source = monitor.stats();
    drop(monitor);
    let cgroup_limit =
        rcu_reclaim::budget_from_cgroup(std::sync::Arc::new(rcu_reclaim::Reclaimer::new(rcu)))
            .map(|b| b.limit() as u64)
            .map_err(|e| e.to_string());
    let info = Info {
        pressure_source: source.source,
        pressure_passed_over: source.passed_over,
        cgroup_limit: cgroup_limit.as_ref().ok().copied(),
        cgroup_limit_error: cgroup_limit.err(),
        version: env!("CARGO_PKG_VERSION"),
        flavor: rcu.flavor(),
        membarrier,
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        grace_periods,
        synchronize_mean_ns: normal,
        synchronize_expedited_mean_ns: expedited,
        stats: rcu.stats(),
    };
    if json {
        let text = serde_json::to_string_pretty(&info).map_err(|e| e.to_string())?;
        println!("{text}");
    } else {
        println!("rcu-reclaim {}", info.version);
        println!("flavor:                 {}", info.flavor);
        println!("membarrier:             {}", info.membarrier);
        println!("cpus:                   {}", info.cpus);
        println!(
            "synchronize():          {:?} mean over {grace_periods}",
            Duration::from_nanos(normal)
        );
        println!(
            "synchronize_expedited: {:?} mean over {grace_periods}",
            Duration::from_nanos(expedited)
        );
        println!("grace periods completed: {}", info.stats.gp_completed);
        println!("pressure source:        {}", info.pressure_source);
        for p in &info.pressure_passed_over {
            println!("  passed over:          {p}");
        }
        match (&info.cgroup_limit, &info.cgroup_limit_error) {
            (Some(limit), _) => println!("cgroup memory limit:    {limit} bytes"),
            (None, e) => println!(
                "cgroup memory limit:    none ({})",
                e.as_deref().unwrap_or("?")
            ),
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => match args.config() {
            Ok(cfg) => demo_cmd::run(&args, cfg),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        },
        Command::Bench(args) => match args.workloads() {
            Ok(w) => bench::cmd::run(&args, w),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        },
        Command::Info {
            json,
            grace_periods,
        } => info(json, grace_periods),
        Command::Torture(args) => return torture::main(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rcu-reclaim: {e}");
            ExitCode::FAILURE
        }
    }
}
