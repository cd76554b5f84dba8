//! The binary's arguments: good ones work, bad ones exit 2 with a message.

use std::path::PathBuf;
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rcu-reclaim"))
}

/// Runs the binary with `args`, which must succeed (stderr is shown if it
/// does not), and parses its standard output as JSON.
fn run_json(args: &[&str]) -> serde_json::Value {
    let out = bin().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A plot path of this test process in the temp directory.
fn temp_plot(command: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "rcu-reclaim-{command}-test-{}.svg",
        std::process::id()
    ))
}

/// Each argument list exits 2 with a message containing its needle, and no
/// panic.
fn usage_errors(cases: &[(&[&str], &str)]) {
    for (args, needle) in cases {
        let out = bin().args(*args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn info_json_parses_and_reports_the_flavor() {
    let v = run_json(&["info", "--json", "--grace-periods", "10"]);
    let flavor = v["flavor"].as_str().unwrap();
    assert!(flavor == "memb" || flavor == "mb");
    assert!(v["stats"]["gp_completed"].as_u64().unwrap() >= 20);
    assert!(!v["pressure_source"].as_str().unwrap().is_empty());
    assert!(v["cgroup_limit"].is_u64() || v["cgroup_limit_error"].is_string());
}

#[test]
fn info_text_runs() {
    let out = bin()
        .args(["info", "--grace-periods", "5"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("flavor:"));
}

#[test]
fn bad_arguments_exit_2_naming_the_problem() {
    usage_errors(&[
        (&["info", "--grace-periods", "0"][..], "--grace-periods"),
        (&["info", "--grace-periods", "lots"][..], "--grace-periods"),
        (&["frobnicate"][..], "frobnicate"),
        (&[][..], "Usage"),
    ]);
}

#[test]
fn a_short_demo_shows_the_aware_run_within_budget_and_the_unaware_one_holding_more_in_rcu() {
    let plot = temp_plot("demo");
    let v = run_json(&[
        "demo",
        "--duration",
        "1.5",
        "--budget",
        "48M",
        "--keys",
        "4000",
        "--readers",
        "2",
        "--json",
        "--plot",
        plot.to_str().unwrap(),
    ]);
    let budget = v["config"]["budget"].as_u64().unwrap();
    let (unaware, aware) = (&v["unaware"], &v["aware"]);
    assert_eq!(aware["oom_events"].as_u64(), Some(0), "{aware}");
    assert!(aware["peak_memory"].as_u64().unwrap() <= budget, "{aware}");
    // The bytes waiting in RCU, averaged over the run's 50 ms samples: the
    // peak is a single sample, too noisy for a 1.5 s run of a debug build.
    let mean_pending = |side: &serde_json::Value| {
        let s = side["samples"].as_array().unwrap();
        s.iter()
            .map(|x| x["pending"].as_f64().unwrap())
            .sum::<f64>()
            / s.len().max(1) as f64
    };
    assert!(
        mean_pending(unaware) > mean_pending(aware),
        "unaware {unaware}\naware {aware}"
    );
    assert!(!aware["samples"].as_array().unwrap().is_empty());
    assert!(aware["reads_per_sec"].as_f64().unwrap() > 0.0);
    assert!(unaware["updates_per_sec"].as_f64().unwrap() > 0.0);
    // Hits per second agree with the reads and the hit ratio.
    let hits = |s: &serde_json::Value| {
        let (r, h) = (
            s["reads_per_sec"].as_f64().unwrap(),
            s["hits_per_sec"].as_f64().unwrap(),
        );
        assert!(
            (h - r * s["cache_hit_ratio"].as_f64().unwrap()).abs() <= 1e-6 * r + 1.0,
            "{s}"
        );
        h
    };
    assert!(hits(aware) > 0.0);
    hits(unaware);
    let svg = std::fs::read_to_string(&plot).expect("the plot was written");
    let _ = std::fs::remove_file(&plot);
    assert!(svg.contains("<svg") && svg.contains("aware: heap in use"));
}

/// `--cgroup-limit`: each side in its own memory cgroup, judged by the
/// kernel. Skipped (with the reason) where cgroups cannot be created.
#[test]
fn the_cgroup_demo_keeps_the_aware_child_alive_under_a_hard_limit() {
    let out = bin()
        .args([
            "demo",
            "--duration",
            "2",
            "--cgroup-limit",
            "112M",
            "--budget",
            "64M",
            "--keys",
            "4000",
            "--readers",
            "1",
            "--json",
            "--no-plot",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = out.id();
    let out = out.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && err.contains("--cgroup-limit:") {
        println!("skipped: {err}");
        return;
    }
    assert!(out.status.success(), "{err}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let limit = v["config"]["cgroup_limit"].as_u64().unwrap();
    let (unaware, aware) = (&v["unaware"], &v["aware"]);
    let cg = &aware["cgroup"];
    assert_eq!(cg["oom_killed"], false, "{cg}");
    assert_eq!(cg["oom_kills"], 0, "{cg}");
    assert_eq!(cg["exit"], "exit code 0", "{cg}");
    assert!(cg["peak_usage"].as_u64().unwrap() <= limit, "{cg}");
    assert_eq!(aware["oom_events"], 0, "{aware}");
    assert!(aware["samples"].as_array().unwrap().len() >= 10);
    // The unaware child either died at the hands of the OOM killer or
    // ended with more of its memory waiting in RCU.
    let ucg = &unaware["cgroup"];
    assert!(
        ucg["oom_killed"] == true
            || unaware["peak_pending_bytes"].as_u64() > aware["peak_pending_bytes"].as_u64(),
        "unaware {unaware}\naware {aware}"
    );
    // Both cgroups were removed.
    let name = format!("rcu-reclaim-demo-{pid}-");
    let left: Vec<String> = ["/sys/fs/cgroup", "/sys/fs/cgroup/memory"]
        .iter()
        .flat_map(|root| walk(std::path::Path::new(root), 4))
        .filter(|p| p.contains(&name))
        .collect();
    assert!(left.is_empty(), "cgroups left behind: {left:?}");
}

/// Directories under `dir`, `depth` levels deep.
fn walk(dir: &std::path::Path, depth: usize) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            out.push(e.path().display().to_string());
            if depth > 1 {
                out.extend(walk(&e.path(), depth - 1));
            }
        }
    }
    out
}

#[test]
fn demo_rejects_bad_sizes_naming_the_flag() {
    usage_errors(&[
        (&["demo", "--budget", "12Q"][..], "--budget"),
        (&["demo", "--budget", "1M"][..], "16M to 64G"),
        (&["demo", "--duration", "0"][..], "--duration"),
        (&["demo", "--readers", "0"][..], "--readers"),
        (&["demo", "--cgroup-limit", "1M"][..], "--cgroup-limit"),
        (
            &["demo", "--cgroup-limit", "100M", "--budget", "200M"][..],
            "must not exceed --cgroup-limit",
        ),
        (&["demo", "--side", "sideways"][..], "--side"),
        (
            &["demo", "--cgroup-limit", "100M", "--unaware-budget", "1G"][..],
            "--unaware-budget",
        ),
        (&["demo", "--child"][..], "--side"),
        (
            &["demo", "--payload-min", "2M", "--payload-max", "1M"][..],
            "--payload-max",
        ),
    ]);
}

/// A short bench (debug build): every backend runs every scenario, reports
/// throughput, and frees every byte it retired.
#[test]
fn a_short_bench_reports_every_backend_and_loses_no_garbage() {
    let plot = temp_plot("bench");
    let v = run_json(&[
        "bench",
        "--duration",
        "0.2",
        "--rounds",
        "2",
        "--keys",
        "2000",
        "--budget",
        "16M",
        "--threads",
        "2",
        "--json",
        "--plot",
        plot.to_str().unwrap(),
    ]);
    let names: Vec<&str> = v["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_str().unwrap())
        .collect();
    assert_eq!(&names[..3], ["rcu-reclaim", "crossbeam-epoch", "seize"]);
    let scenarios = v["scenarios"].as_array().unwrap();
    let scenario_names: Vec<&str> = scenarios
        .iter()
        .map(|s| s["scenario"].as_str().unwrap())
        .collect();
    assert_eq!(scenario_names, ["read-mostly", "update-heavy", "budget"]);
    for s in scenarios {
        let backends = s["backends"].as_array().unwrap();
        assert_eq!(backends.len(), names.len(), "{s}");
        for b in backends {
            let tag = format!("{} / {}", s["scenario"], b["backend"]);
            assert!(b["reads_per_sec"].as_f64().unwrap() > 0.0, "{tag}");
            assert!(b["updates_per_sec"].as_f64().unwrap() > 0.0, "{tag}");
            assert_eq!(b["rounds"].as_array().unwrap().len(), 2, "{tag}");
            let retired = b["retired_bytes"].as_u64().unwrap();
            assert!(retired > 0, "{tag}");
            assert_eq!(retired, b["freed_bytes"].as_u64().unwrap(), "{tag}");
            assert_eq!(b["balanced"], true, "{tag}");
            assert!(b["peak_garbage"].as_u64().unwrap() > 0, "{tag}");
            assert!(b["latency_samples"].as_u64().unwrap() > 0, "{tag}");
            assert!(
                b["read_p50_ns"].as_u64().unwrap() <= b["read_p99_ns"].as_u64().unwrap(),
                "{tag}"
            );
        }
        // Ratios are against rcu-reclaim, which is 1 against itself.
        assert_eq!(backends[0]["vs_rcu_reclaim"]["reads_per_sec"], 1.0);
    }
    // Only rcu-reclaim reacts to the budget, and it reports how.
    let budget = &scenarios[2]["backends"];
    assert!(budget[0]["pressure"]["gp_wait_probes"].as_u64().unwrap() > 0);
    assert!(budget[1]["pressure"].is_null());
    let svg = std::fs::read_to_string(&plot).expect("the plot was written");
    let _ = std::fs::remove_file(&plot);
    assert!(svg.contains("<svg") && svg.contains("garbage over time"));
}

#[test]
fn bench_rejects_bad_arguments_naming_the_flag() {
    usage_errors(&[
        (&["bench", "--duration", "0"][..], "--duration"),
        (&["bench", "--rounds", "0"][..], "--rounds"),
        (
            &["bench", "--duration", "1", "--rounds", "50"][..],
            "--rounds",
        ),
        (&["bench", "--threads", "0"][..], "--threads"),
        (&["bench", "--keys", "5"][..], "--keys"),
        (&["bench", "--budget", "1M"][..], "16M to 64G"),
        (&["bench", "--scenario", "write-only"][..], "--scenario"),
        (
            &["bench", "--payload-min", "2K", "--payload-max", "1K"][..],
            "--payload-max",
        ),
        (
            &[
                "bench",
                "--budget-payload-min",
                "2M",
                "--budget-payload-max",
                "1M",
            ][..],
            "--budget-payload-max",
        ),
    ]);
}
