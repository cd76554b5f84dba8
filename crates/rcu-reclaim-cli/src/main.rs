//! `rcu-reclaim`: the command-line front of the rcu-reclaim library.
//!
//! `info` reports what the library detected on this machine (flavor,
//! membarrier, CPUs) and runs a quick grace-period check; `demo` runs the
//! dentry-cache workload unaware and aware of memory pressure, side by side;
//! `bench` runs that workload on rcu-reclaim, crossbeam-epoch, seize and
//! (with the `liburcu` feature) liburcu, interleaved, and compares them.

mod args;
mod bench;
mod dcache;
mod demo;
mod rng;
#[cfg(test)]
mod size_proptest;
mod stdout;
mod torture;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::stdout::{errln, out, outln};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use rcu_reclaim::reclaim::AccountingAlloc;
use rcu_reclaim::{Config, Flavor, Rcu};
use serde::Serialize;

#[global_allocator]
static ALLOC: AccountingAlloc = AccountingAlloc::system();

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
    Demo(demo::cmd::DemoArgs),
    /// Torture test in the style of the kernel's rcutorture: SUCCESS (exit 0)
    /// or FAILURE (exit 1).
    ///
    /// Readers check the pipe stage of what they read while writers retire
    /// elements through every kind of grace period, with optional floods,
    /// pressure flapping, churn and injected faults.
    Torture(torture::TortureArgs),
    /// Compare rcu-reclaim with crossbeam-epoch, seize and liburcu, side by
    /// side.
    ///
    /// The dentry-cache workload (or `--scenario cache`) on each backend,
    /// interleaved: throughput, read latency, peak memory and garbage.
    /// liburcu's backends need a build with `--features liburcu`.
    Bench(bench::cmd::BenchArgs),
    /// Report the flavor this machine gets, the pressure source and cgroup
    /// limit it would use, and time a few grace periods.
    Info {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Grace periods to time (1 to 1000000).
        #[arg(long, default_value_t = 1000, allow_hyphen_values = true,
              value_parser = args::Int::<u32>::new(1, 1_000_000))]
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
    /// The same in a few words, for the text output: the file and the
    /// reason's first clause (the whole chain of cgroup v1 and v2 lookups,
    /// and the library's fallback, are for `--json`).
    #[serde(skip)]
    cgroup_limit_why: Option<String>,
    stats: rcu_reclaim::stats::Stats,
}

fn mean_ns(n: u32, mut f: impl FnMut()) -> u64 {
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    (start.elapsed() / n).as_nanos() as u64
}

/// The column where `info`'s values start, and its widest line: every line
/// stays under 100 characters, but for one holding a single longer word.
const INFO_COLUMN: usize = 26;
const INFO_WIDTH: usize = 99;

/// `text` cut at spaces into lines of at most `width` characters; a word
/// longer than that (a cgroup file's path) gets a line of its own, whole, so
/// that it can be copied.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line: Vec<char> = Vec::new();
    for word in text.split_whitespace() {
        let mut word: Vec<char> = word.chars().collect();
        loop {
            let gap = usize::from(!line.is_empty());
            if line.len() + gap + word.len() <= width {
                if gap == 1 {
                    line.push(' ');
                }
                line.append(&mut word);
                break;
            }
            if line.is_empty() {
                lines.push(word.into_iter().collect());
                break;
            } else {
                lines.push(std::mem::take(&mut line).into_iter().collect());
            }
        }
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line.into_iter().collect());
    }
    lines
}

/// One of `info`'s fields: the label, then the value from [`INFO_COLUMN`],
/// wrapped under itself.
fn info_field(label: &str, value: &str) -> String {
    let mut out = String::new();
    for (i, line) in wrap(value, INFO_WIDTH - INFO_COLUMN).iter().enumerate() {
        let label = if i == 0 { label } else { "" };
        out += &format!("{label:<INFO_COLUMN$}{line}\n");
    }
    out
}

/// `info`'s text: every label ends at one column, no line reaches 100
/// characters (--json has the same fields, unwrapped).
fn info_text(info: &Info) -> String {
    let n = info.grace_periods;
    let mut out = format!("rcu-reclaim {}\n", info.version);
    out += &info_field("flavor:", &info.flavor.to_string());
    out += &info_field("membarrier:", &info.membarrier);
    out += &info_field("cpus:", &info.cpus.to_string());
    let mean = |ns: u64| {
        format!(
            "{:?} mean over {n}, no reader in a section (the fast path)",
            Duration::from_nanos(ns)
        )
    };
    out += &info_field("synchronize():", &mean(info.synchronize_mean_ns));
    out += &info_field(
        "synchronize_expedited():",
        &mean(info.synchronize_expedited_mean_ns),
    );
    out += &info_field(
        "grace periods completed:",
        &info.stats.gp_completed.to_string(),
    );
    out += &info_field("pressure source:", &info.pressure_source);
    for p in &info.pressure_passed_over {
        out += &info_field("  passed over:", p);
    }
    let cgroup = match (&info.cgroup_limit, &info.cgroup_limit_why) {
        (Some(limit), _) => format!("{limit} bytes"),
        (None, why) => format!(
            "none ({}; --json gives the whole reason)",
            why.as_deref().unwrap_or("?")
        ),
    };
    out += &info_field("cgroup memory limit:", &cgroup);
    out
}

fn info(json: bool, grace_periods: u32) -> Result<(), String> {
    let rcu = Rcu::global();
    let membarrier = Rcu::new(Config::new().flavor(Flavor::Memb))
        .map_or_else(|e| e.to_string(), |_| "available".to_string());
    let normal = mean_ns(grace_periods, || rcu.synchronize());
    let expedited = mean_ns(grace_periods, || rcu.synchronize_expedited());
    let monitor = rcu_reclaim::sources::auto_pressure(usize::MAX);
    let source = monitor.stats();
    drop(monitor);
    let cgroup_limit = rcu_reclaim::sources::budget_from_cgroup(std::sync::Arc::new(
        rcu_reclaim::reclaim::Reclaimer::new(rcu),
    ))
    .map(|b| b.limit() as u64);
    let info = Info {
        pressure_source: source.source,
        pressure_passed_over: source.passed_over,
        cgroup_limit: cgroup_limit.as_ref().ok().copied(),
        cgroup_limit_why: cgroup_limit.as_ref().err().map(|e| {
            let first = e.reason.split(" (").next().unwrap_or_default();
            format!("{first}, as {} says", e.file.display())
        }),
        cgroup_limit_error: cgroup_limit.err().map(|e| e.to_string()),
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
        outln!("{text}");
    } else {
        out!("{}", info_text(&info));
    }
    Ok(())
}

fn main() -> ExitCode {
    let parsed = Cli::command()
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m).map(|cli| (cli, m)));
    let (cli, matches) = match parsed {
        Ok(parsed) => parsed,
        Err(e) => {
            let argv: Vec<String> = std::env::args_os()
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            if e.kind() == clap::error::ErrorKind::UnknownArgument {
                if let Some(msg) = missing_value(&argv) {
                    errln!("error: {msg}");
                    return ExitCode::from(2);
                }
            }
            // clap's exit() ignores a failed write: `--help > /dev/full`
            // would print nothing and still exit 0.
            if !e.use_stderr() {
                use std::io::Write;
                if let Err(io) = e.print().and_then(|()| std::io::stdout().flush()) {
                    stdout::exit_on(&io);
                }
                return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(1));
            }
            e.exit()
        }
    };
    let result = match cli.command {
        Command::Demo(mut args) => {
            if let Some(m) = matches.subcommand_matches("demo") {
                args.set_plot_given(m);
            }
            match args
                .config()
                .and_then(|cfg| args.check_room(&cfg).map(|()| cfg))
            {
                Ok(cfg) => demo::cmd::run(&args, cfg),
                Err(e) => {
                    errln!("error: {e}");
                    return ExitCode::from(2);
                }
            }
        }
        Command::Bench(mut args) => {
            if let Some(m) = matches.subcommand_matches("bench") {
                args.set_cache_flags_given(bench::cmd::cache_flags_given(m));
                args.set_scenario_flags_given(bench::cmd::scenario_flags_given(m));
            }
            match args.workloads() {
                Ok(w) => bench::cmd::run(&args, w),
                Err(e) => {
                    errln!("error: {e}");
                    return ExitCode::from(2);
                }
            }
        }
        Command::Info {
            json,
            grace_periods,
        } => info(json, grace_periods),
        Command::Torture(args) => return torture::main(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            errln!("rcu-reclaim: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The message for an option given no value because another option
/// follows it (`--budget --duration 5`): the numeric options accept values
/// that start with '-' (so that `--duration -1` is told it must be
/// positive), so clap takes `--duration` as the budget and then finds `5`
/// unexpected. `None` where `argv` has no such pair.
fn missing_value(argv: &[String]) -> Option<String> {
    let top = Cli::command();
    let sub = top.find_subcommand(argv.get(1)?)?;
    let long = |token: &str| {
        let name = token.strip_prefix("--")?.split('=').next()?;
        sub.get_arguments().find(|a| a.get_long() == Some(name))
    };
    argv[2..].windows(2).find_map(|pair| {
        let (opt, next) = (&pair[0], &pair[1]);
        let arg = long(opt).filter(|a| !opt.contains('=') && a.get_action().takes_values())?;
        if long(next).is_some() {
            return Some(format!(
                "{opt} is missing its value ({next:?} is an option of its own): give it one \
                 before {next}; rcu-reclaim {} --help says what it takes",
                argv[1]
            ));
        }
        // A value that starts with '-' (`--flavor -5`, `--plot -x.svg`),
        // which clap takes for an unknown option where the option does not
        // take such values (the numeric ones do, and say what is wrong).
        if next.starts_with('-') && next != "-" && next != "--" && !arg.is_allow_hyphen_values_set()
        {
            return Some(format!(
                "{opt} is missing its value ({next:?} starts with '-', so it was taken for an \
                 option): to give {opt} a value that starts with '-', write {opt}={next}; \
                 rcu-reclaim {} --help says what it takes",
                argv[1]
            ));
        }
        None
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_option_followed_by_another_is_missing_its_value() {
        let argv = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        let msg = missing_value(&argv("rcu-reclaim demo --cgroup-limit --duration 0.2")).unwrap();
        assert!(
            msg.starts_with("--cgroup-limit is missing its value"),
            "{msg}"
        );
        assert!(msg.contains("\"--duration\""), "{msg}");
        let msg = missing_value(&argv("rcu-reclaim bench --threads --duration 1")).unwrap();
        assert!(msg.starts_with("--threads is missing its value"), "{msg}");
        // A value that merely starts with '-', an option with '=', a flag
        // that takes no value, and an unknown subcommand are left to clap.
        assert_eq!(missing_value(&argv("rcu-reclaim demo --duration -1")), None);
        assert_eq!(
            missing_value(&argv("rcu-reclaim demo --budget=1G --duration 1")),
            None
        );
        assert_eq!(
            missing_value(&argv("rcu-reclaim demo --no-plot --duration 1")),
            None
        );
        assert_eq!(missing_value(&argv("rcu-reclaim nope --a --b")), None);
        // A value that starts with '-' where the option takes no such
        // values: the fix is the '=' form.
        let msg = missing_value(&argv("rcu-reclaim torture --flavor -5")).unwrap();
        assert!(
            msg.starts_with("--flavor is missing its value (\"-5\" starts with '-'"),
            "{msg}"
        );
        assert!(msg.contains("write --flavor=-5"), "{msg}");
        let msg = missing_value(&argv("rcu-reclaim demo --plot -x.svg")).unwrap();
        assert!(msg.contains("write --plot=-x.svg"), "{msg}");
        assert_eq!(missing_value(&argv("rcu-reclaim demo --no-plot -x")), None);
        assert_eq!(
            missing_value(&argv("rcu-reclaim demo --plot a.svg -x")),
            None
        );
        assert_eq!(missing_value(&argv("rcu-reclaim")), None);
    }

    #[test]
    fn wrap_cuts_at_spaces_and_keeps_long_words_whole() {
        assert_eq!(wrap("a bb ccc", 4), ["a bb", "ccc"]);
        assert_eq!(wrap("abcdefghij", 4), ["abcdefghij"]);
        assert_eq!(wrap("a abcdefghij b", 4), ["a", "abcdefghij", "b"]);
        assert_eq!(wrap("", 4), [""]);
        assert_eq!(wrap("µµµµµ x", 5), ["µµµµµ", "x"]);
    }

    #[test]
    fn info_aligns_every_value_and_keeps_lines_under_100_characters() {
        let long = "memory.limit_in_bytes: no cgroup sets a memory limit (cgroup v2: \
                    /sys/fs/cgroup/memory.current: missing: the memory controller is not \
                    enabled in this cgroup v2 directory; cgroup v1: unlimited); falling back \
                    to nothing: no budget is made (give MemoryBudget::new a limit of your own) /a/very/long/path/"
            .repeat(2)
            + &"x".repeat(150);
        let info = Info {
            version: "0.1.0",
            flavor: Flavor::Memb,
            membarrier: "available".into(),
            cpus: 2,
            grace_periods: 5,
            synchronize_mean_ns: 1560,
            synchronize_expedited_mean_ns: 623,
            pressure_source: "PSI trigger on /proc/pressure/memory (some 500ms per 2s)".into(),
            pressure_passed_over: vec!["cgroup v1: no memory controller".into()],
            cgroup_limit: None,
            cgroup_limit_error: Some(long.clone()),
            cgroup_limit_why: Some(long.clone()),
            stats: Rcu::global().stats(),
        };
        let text = info_text(&info);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "rcu-reclaim 0.1.0");
        for line in &lines[1..] {
            // Under 100 characters, but for a word longer than a line.
            let (_, words) = line.split_at(INFO_COLUMN);
            assert!(
                line.chars().count() < 100 || !words.contains(' '),
                "{line:?}"
            );
            let (label, value) = line.split_at(INFO_COLUMN);
            assert!(
                label.trim().is_empty() || label.trim_end().ends_with(':'),
                "{line:?}"
            );
            assert!(!value.starts_with(' '), "{line:?}");
        }
        assert!(
            text.contains(
                "\nsynchronize_expedited():  623ns mean over 5, no reader in a section (the fast \
                 path)\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("\n  passed over:            cgroup v1"),
            "{text}"
        );
        // The whole reason given is there, wrapped.
        let cgroup: String = text
            .split("cgroup memory limit:")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .collect();
        let want: String = format!("none ({long}; --json gives the whole reason)")
            .split_whitespace()
            .collect();
        assert_eq!(cgroup, want);
    }
}
