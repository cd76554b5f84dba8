//! `rcu-reclaim`: the command-line front of the rcu-reclaim library.
//!
//! `info` reports what the library detected on this machine (flavor,
//! membarrier, CPUs) and runs a quick grace-period check. The demo, torture
//! and bench commands arrive with the issues that build them.

mod demo;
mod workload;

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use rcu_reclaim::{AccountingAlloc, Config, Flavor, Rcu};
use serde::Serialize;

#[global_allocator]
static ALLOC: AccountingAlloc = AccountingAlloc::system();

/// Parses a size such as `256M`, `1G`, `512K` or `1048576`.
fn parse_size(s: &str) -> Result<usize, String> {
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

fn parse_budget(s: &str) -> Result<usize, String> {
    let v = parse_size(s)?;
    if !(16 << 20..=64 << 30).contains(&v) {
        return Err(format!(
            "{s:?} is out of range: the budget must be 16M to 64G"
        ));
    }
    Ok(v)
}

fn parse_payload(s: &str) -> Result<usize, String> {
    let v = parse_size(s)?;
    if v > 16 << 20 {
        return Err(format!(
            "{s:?} is out of range: payloads must be 1 B to 16M"
        ));
    }
    Ok(v)
}

fn parse_secs(s: &str) -> Result<f64, String> {
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
    Demo {
        /// Seconds per side (0.2 to 3600).
        #[arg(long, default_value = "15", value_parser = parse_secs)]
        duration: f64,
        /// Memory budget, e.g. 256M or 1G (16M to 64G).
        #[arg(long, default_value = "96M", value_parser = parse_budget)]
        budget: usize,
        /// Reader threads (1 to 64).
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
        readers: u16,
        /// Writer threads (1 to 64).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
        writers: u16,
        /// Distinct keys (100 to 100000000).
        #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(100..=100_000_000))]
        keys: u64,
        /// Smallest payload, e.g. 1K (1 B to 16M).
        #[arg(long, default_value = "1K", value_parser = parse_payload)]
        payload_min: usize,
        /// Largest payload, e.g. 64K (at least --payload-min, at most 16M).
        #[arg(long, default_value = "64K", value_parser = parse_payload)]
        payload_max: usize,
        /// Which runs: both (default), unaware or aware.
        #[arg(long, value_enum, default_value_t = demo::Side::Both)]
        side: demo::Side,
        /// Print JSON instead of the table.
        #[arg(long)]
        json: bool,
    },
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

#[derive(Serialize)]
struct DemoOutput<'a> {
    config: &'a demo::DemoConfig,
    #[serde(skip_serializing_if = "Option::is_none")]
    unaware: Option<&'a demo::SideReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aware: Option<&'a demo::SideReport>,
}

fn run_demo(cfg: demo::DemoConfig, side: demo::Side, json: bool) -> Result<(), String> {
    let mut sides = Vec::new();
    for &aware in side.runs() {
        let label = if aware { "aware  " } else { "unaware" };
        let progress = |f: f64| {
            if !json {
                let done = (f.clamp(0.0, 1.0) * 30.0) as usize;
                eprint!(
                    "\r{label} [{}{}] {:3.0}%",
                    "#".repeat(done),
                    " ".repeat(30 - done),
                    f * 100.0
                );
                let _ = std::io::stderr().flush();
            }
        };
        sides.push(demo::run_side(&cfg, aware, &progress));
        if !json {
            eprintln!();
        }
    }
    if json {
        let out = DemoOutput {
            config: &cfg,
            unaware: sides.iter().find(|s| s.mode == "unaware"),
            aware: sides.iter().find(|s| s.mode == "aware"),
        };
        println!(
            "{}",
            serde_json::to_string_pretty(&out).map_err(|e| e.to_string())?
        );
    } else {
        print!("{}", demo::table(&cfg, &sides));
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo {
            duration,
            budget,
            readers,
            writers,
            keys,
            payload_min,
            payload_max,
            side,
            json,
        } => {
            if payload_max < payload_min {
                eprintln!(
                    "error: --payload-max ({payload_max} B) must be at least --payload-min ({payload_min} B)"
                );
                return ExitCode::from(2);
            }
            run_demo(
                demo::DemoConfig {
                    duration: Duration::from_secs_f64(duration),
                    budget,
                    readers: readers.into(),
                    writers: writers.into(),
                    keys,
                    payload_min,
                    payload_max,
                },
                side,
                json,
            )
        }
        Command::Info {
            json,
            grace_periods,
        } => info(json, grace_periods),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rcu-reclaim: {e}");
            ExitCode::FAILURE
        }
    }
}
