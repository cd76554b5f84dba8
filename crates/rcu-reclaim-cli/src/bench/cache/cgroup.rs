//! The cache scenario under `--cgroup-limit`: each backend runs in a child
//! process inside a fresh memory cgroup with a hard limit, beside a hog
//! thread ([`super::hog`]) that grows to the limit less the capacity (and
//! a margin) and shrinks again. The kernel's OOM killer is the judge: a
//! cache that cannot give memory back is killed when the hog peaks, unless
//! its capacity was set low enough in advance; rcu-reclaim's answers the
//! cgroup's budget. The fixed caches run at the capacity and at a quarter
//! of it.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::run::CacheRun;
use super::CacheWorkload;
use crate::args::show_size;
use crate::demo::cgroup_side::{
    catch_interrupts, describe_exit, interrupted, join_cgroup_at_exec, MemCgroup,
};

/// What `bench --scenario cache` still does without --cgroup-limit.
const WITHOUT: &str = "the caches then run side by side in this process, without the hog";

/// What the hog leaves the cache besides its capacity: the process's own
/// memory (traces, threads, allocator) and some slack.
pub const MARGIN: usize = 32 << 20;

/// The hog's peak under `limit` for a cache of `capacity`, or why the limit
/// is too small.
pub fn hog_peak(limit: usize, capacity: usize) -> Result<usize, String> {
    let room = capacity + MARGIN;
    match limit.checked_sub(room) {
        Some(peak) if peak >= 64 << 20 => Ok(peak),
        _ => Err(format!(
            "--cgroup-limit {} leaves no room for the hog: give at least {} (the capacity, \
             {}, + {} for the process + a 64M hog)",
            show_size(limit),
            show_size(room + (64 << 20)),
            show_size(capacity),
            show_size(MARGIN),
        )),
    }
}

/// How one child's run ended.
#[derive(Debug)]
pub struct CgroupRun {
    /// Its figures, if it finished.
    pub run: Option<CacheRun>,
    pub exit: String,
    pub oom_killed: bool,
    /// The cgroup's peak usage, where the kernel reports it.
    pub peak_usage: Option<usize>,
    /// Seconds from its start to its end.
    pub secs: f64,
    pub version: &'static str,
}

/// Runs the backend `name` with `capacity` in a child in a fresh cgroup of
/// `w.cgroup_limit`.
pub fn run_in_cgroup(name: &str, capacity: usize, w: &CacheWorkload) -> Result<CgroupRun, String> {
    let limit = w.cgroup_limit.ok_or("no --cgroup-limit")?;
    catch_interrupts();
    let cg = MemCgroup::create(
        &format!("rcu-reclaim-cache-{}-{name}", std::process::id()),
        limit,
        WITHOUT,
    )?;
    let procs = cg.procs()?;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let per_run = (w.duration + w.warmup).as_secs_f64();
    let mut cmd = Command::new(exe);
    cmd.args(["bench", "--scenario", "cache", "--no-plot", "--rounds", "1"])
        .args(["--cache-child", name])
        .args(["--duration", &per_run.to_string()])
        .args(["--threads", &w.threads.to_string()])
        .args(["--cache-keys", &w.keys.to_string()])
        .args(["--cache-capacity", &capacity.to_string()])
        .args(["--cache-value-min", &w.value_min.to_string()])
        .args(["--cache-value-max", &w.value_max.min(capacity).to_string()])
        .args(["--zipf", &w.zipf.to_string()])
        .args(["--cache-seed", &w.seed.to_string()])
        .args(["--cgroup-limit", &limit.to_string()])
        .args(["--cache-hog", &w.hog.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    join_cgroup_at_exec(&mut cmd, procs.as_raw_fd());
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start the {name} child: {e}"))?;
    drop(procs);
    let mut stdout = child.stdout.take().ok_or("the child has no stdout")?;
    let reader = thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    // Never hang: a child past its time (plus a minute) is killed.
    let deadline = start + w.duration + w.warmup + Duration::from_secs(60);
    let (status, timed_out) = loop {
        match child.try_wait() {
            Ok(Some(s)) => break (s, false),
            Ok(None) if Instant::now() > deadline || interrupted() => {
                let _ = child.kill();
                match child.wait() {
                    Ok(s) => break (s, !interrupted()),
                    Err(e) => return Err(format!("waiting for the {name} child: {e}")),
                }
            }
            Ok(None) => thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("waiting for the {name} child: {e}")),
        }
    };
    let secs = start.elapsed().as_secs_f64();
    let text = reader.join().unwrap_or_default();
    if interrupted() {
        drop(cg);
        return Err("interrupted: the child was stopped and its cgroup removed".into());
    }
    let oom_kills = cg.oom_kills();
    let killed = status.signal() == Some(libc::SIGKILL);
    let exit = describe_exit(status, timed_out, oom_kills);
    let run = status
        .success()
        .then(|| {
            text.lines()
                .find_map(|l| serde_json::from_str::<CacheRun>(l).ok())
        })
        .flatten();
    Ok(CgroupRun {
        run,
        exit,
        oom_killed: killed && oom_kills > 0,
        peak_usage: cg.peak(),
        secs,
        version: cg.version(),
    })
}

/// One backend at one capacity over the rounds.
#[derive(Clone, Debug, Serialize)]
pub struct CgroupEntry {
    /// Its column: the backend, with `@capacity` when not at the
    /// workload's capacity.
    pub column: String,
    pub backend: String,
    pub capacity: usize,
    pub runs: usize,
    /// Runs that finished (exit code 0).
    pub survived: usize,
    pub oom_killed: usize,
    /// How each run ended.
    pub exits: Vec<String>,
    /// The cgroup's highest peak over the runs.
    pub peak_usage: Option<usize>,
    /// Over the runs that finished.
    pub gets_per_sec: f64,
    pub hit_ratio: f64,
    pub hog_cycles: usize,
    /// Mean seconds a killed run lived.
    pub killed_after_secs: Option<f64>,
}

/// The cache scenario under a cgroup limit.
#[derive(Clone, Debug, Serialize)]
pub struct CgroupReport {
    pub scenario: String,
    pub workload: CacheWorkload,
    pub cgroup: String,
    pub limit: usize,
    pub hog_peak: usize,
    pub seconds_per_run: f64,
    pub rounds: usize,
    pub entries: Vec<CgroupEntry>,
}

/// The columns' report from `runs[entry][round]`.
pub fn report(
    w: &CacheWorkload,
    entries: &[(&str, usize)],
    runs: &[Vec<CgroupRun>],
) -> CgroupReport {
    let entries = entries
        .iter()
        .zip(runs)
        .map(|(&(name, capacity), runs)| {
            let done: Vec<&CacheRun> = runs.iter().filter_map(|r| r.run.as_ref()).collect();
            let secs: f64 = done.iter().map(|r| r.secs).sum();
            let gets: u64 = done.iter().map(|r| r.gets).sum();
            let hits: u64 = done.iter().map(|r| r.hits).sum();
            let killed: Vec<f64> = runs
                .iter()
                .filter(|r| r.run.is_none())
                .map(|r| r.secs)
                .collect();
            CgroupEntry {
                column: if capacity == w.capacity {
                    name.to_string()
                } else {
                    format!("{name}@{}", show_size(capacity))
                },
                backend: name.to_string(),
                capacity,
                runs: runs.len(),
                survived: done.len(),
                oom_killed: runs.iter().filter(|r| r.oom_killed).count(),
                exits: runs.iter().map(|r| r.exit.clone()).collect(),
                peak_usage: runs.iter().filter_map(|r| r.peak_usage).max(),
                gets_per_sec: if secs > 0.0 { gets as f64 / secs } else { 0.0 },
                hit_ratio: if gets > 0 {
                    hits as f64 / gets as f64
                } else {
                    0.0
                },
                hog_cycles: done.iter().map(|r| r.hog_cycles).sum(),
                killed_after_secs: (!killed.is_empty())
                    .then(|| killed.iter().sum::<f64>() / killed.len() as f64),
            }
        })
        .collect();
    CgroupReport {
        scenario: "cache".into(),
        workload: w.clone(),
        cgroup: runs
            .iter()
            .flatten()
            .next()
            .map_or("?", |r| r.version)
            .to_string(),
        limit: w.cgroup_limit.unwrap_or(0),
        hog_peak: w.hog,
        seconds_per_run: (w.duration + w.warmup).as_secs_f64(),
        rounds: runs.first().map_or(0, Vec::len),
        entries,
    }
}

/// The runs whose child exited with a code other than 0, each as "column
/// round N: exit code C": an error of the child's own (its message is
/// above the table: a usage error's 2, a panic's 101), not an outcome of
/// the memory limit (the OOM killer's SIGKILL, a run past its time), so
/// the bench fails. `None` where there is none.
pub fn failed_runs(entries: &[CgroupEntry]) -> Option<String> {
    let failed: Vec<String> = entries
        .iter()
        .flat_map(|e| {
            e.exits
                .iter()
                .enumerate()
                .filter(|(_, x)| x.starts_with("exit code ") && x.as_str() != "exit code 0")
                .map(move |(i, x)| format!("{} round {}: {x}", e.column, i + 1))
        })
        .collect();
    (!failed.is_empty()).then(|| {
        format!(
            "{} of the cache scenario's children failed on their own ({}), not by the memory \
             limit: their messages are above, and the table counts them as not survived",
            failed.len(),
            failed.join(", ")
        )
    })
}

const MIB: f64 = (1 << 20) as f64;

/// The report as a text table.
pub fn table(r: &CgroupReport) -> String {
    let w = &r.workload;
    let mut out = format!(
        "cache under a {} cgroup ({}) limit, a hog in the same process growing to {} and back: \
         {} threads, {} keys, Zipf {}, values {}-{}, {} rounds x {:.1} s per column\n",
        show_size(r.limit),
        r.cgroup,
        show_size(r.hog_peak),
        w.threads,
        w.keys,
        w.zipf,
        show_size(w.value_min),
        show_size(w.value_max),
        r.rounds,
        r.seconds_per_run,
    );
    type Cell = fn(&CgroupEntry) -> String;
    let rows: [(&str, Cell); 7] = [
        ("capacity", |e| show_size(e.capacity)),
        ("survived", |e| format!("{}/{}", e.survived, e.runs)),
        ("OOM-killed", |e| match e.killed_after_secs {
            Some(s) if e.oom_killed > 0 => format!("{} (~{s:.1} s in)", e.oom_killed),
            _ => e.oom_killed.to_string(),
        }),
        ("cgroup peak", |e| {
            e.peak_usage
                .map_or("?".into(), |p| format!("{:.0} MiB", p as f64 / MIB))
        }),
        ("gets/s (survivors)", |e| {
            if e.survived > 0 {
                format!("{:.3} M", e.gets_per_sec / 1e6)
            } else {
                "-".into()
            }
        }),
        ("hit ratio", |e| {
            if e.survived > 0 {
                format!("{:.3}", e.hit_ratio)
            } else {
                "-".into()
            }
        }),
        ("hog cycles, total", |e| e.hog_cycles.to_string()),
    ];
    out += &format!("{:<20}", "");
    for e in &r.entries {
        out += &format!(" {:>18}", e.column);
    }
    out.push('\n');
    for (name, f) in rows {
        out += &format!("{name:<20}");
        for e in &r.entries {
            out += &format!(" {:>18}", f(e));
        }
        out.push('\n');
    }
    for e in &r.entries {
        for (i, x) in e.exits.iter().enumerate() {
            if x != "exit code 0" {
                out += &format!("{} round {}: {x}\n", e.column, i + 1);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hog_leaves_the_capacity_and_a_margin() {
        assert_eq!(hog_peak(512 << 20, 64 << 20).unwrap(), 416 << 20);
        let e = hog_peak(128 << 20, 64 << 20).unwrap_err();
        assert!(e.contains("give at least 160M"), "{e}");
    }

    #[test]
    fn a_killed_run_counts_against_its_column() {
        let w = crate::bench::cache::trace::tests::workload();
        let done = CgroupRun {
            run: Some(CacheRun {
                secs: 1.0,
                gets: 1000,
                hits: 600,
                hog_cycles: 2,
                ..CacheRun::default()
            }),
            exit: "exit code 0".into(),
            oom_killed: false,
            peak_usage: Some(400 << 20),
            secs: 1.2,
            version: "v1",
        };
        let killed = CgroupRun {
            run: None,
            exit: "killed by the OOM killer".into(),
            oom_killed: true,
            peak_usage: Some(512 << 20),
            secs: 0.5,
            version: "v1",
        };
        let r = report(
            &CacheWorkload {
                cgroup_limit: Some(512 << 20),
                ..w
            },
            &[("moka", 64 << 20), ("moka", 16 << 20)],
            &[vec![killed], vec![done]],
        );
        assert_eq!(r.entries[0].column, "moka");
        assert_eq!(r.entries[1].column, "moka@16M");
        assert_eq!((r.entries[0].survived, r.entries[0].oom_killed), (0, 1));
        assert_eq!(r.entries[1].gets_per_sec, 1000.0);
        let text = table(&r);
        assert!(
            text.contains("moka round 1: killed by the OOM killer"),
            "{text}"
        );
        assert!(text
            .lines()
            .any(|l| l.starts_with("survived") && l.ends_with("1/1")));
        // The OOM killer's runs and the finished ones are results.
        assert_eq!(failed_runs(&r.entries), None);
    }

    /// A child that exited with a code other than 0 (its own usage error,
    /// a panic) failed on its own: the bench names it and fails, where it
    /// once exited 0 with a table where such columns had not survived.
    #[test]
    fn a_child_that_failed_on_its_own_fails_the_bench() {
        let w = crate::bench::cache::trace::tests::workload();
        let run = |exit: &str| CgroupRun {
            run: None,
            exit: exit.into(),
            oom_killed: false,
            peak_usage: None,
            secs: 0.1,
            version: "v1",
        };
        let r = report(
            &CacheWorkload {
                cgroup_limit: Some(512 << 20),
                ..w
            },
            &[("moka", 64 << 20), ("papaya", 64 << 20)],
            &[
                vec![run("exit code 2"), run("killed by signal 9")],
                vec![run("killed: ran past its time"), run("exit code 101")],
            ],
        );
        assert_eq!(
            failed_runs(&r.entries).as_deref(),
            Some(
                "2 of the cache scenario's children failed on their own (moka round 1: exit code \
                 2, papaya round 2: exit code 101), not by the memory limit: their messages are \
                 above, and the table counts them as not survived"
            )
        );
    }
}
