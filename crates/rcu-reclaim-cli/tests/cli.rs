//! The binary's arguments: good ones work, bad ones exit 2 with a message.

use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rcu-reclaim"))
}

#[test]
fn info_json_parses_and_reports_the_flavor() {
    let out = bin()
        .args(["info", "--json", "--grace-periods", "10"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
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
    for (args, needle) in [
        (&["info", "--grace-periods", "0"][..], "--grace-periods"),
        (&["info", "--grace-periods", "lots"][..], "--grace-periods"),
        (&["frobnicate"][..], "frobnicate"),
        (&[][..], "Usage"),
    ] {
        let out = bin().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn a_short_demo_shows_the_aware_run_within_budget_and_the_unaware_one_holding_more_in_rcu() {
    let out = bin()
        .args([
            "demo",
            "--duration",
            "1.5",
            "--budget",
            "48M",
            "--keys",
            "4000",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let budget = v["config"]["budget"].as_u64().unwrap();
    let (unaware, aware) = (&v["unaware"], &v["aware"]);
    assert_eq!(aware["oom_events"].as_u64(), Some(0), "{aware}");
    assert!(aware["peak_memory"].as_u64().unwrap() <= budget, "{aware}");
    // The bytes waiting in RCU, averaged over the run's 50 ms samples: the
    // peak is a single sample, too noisy for a 1.5 s run of a debug build.
    let mean_pending = |side: &serde_json::Value| {
        let s = side["samples"].as_array().unwrap();
        s.iter().map(|x| x[2].as_f64().unwrap()).sum::<f64>() / s.len().max(1) as f64
    };
    assert!(
        mean_pending(unaware) > mean_pending(aware),
        "unaware {unaware}\naware {aware}"
    );
    assert!(!aware["samples"].as_array().unwrap().is_empty());
}

#[test]
fn demo_rejects_bad_sizes_naming_the_flag() {
    for (args, needle) in [
        (&["demo", "--budget", "12Q"][..], "--budget"),
        (&["demo", "--budget", "1M"][..], "16M to 64G"),
        (&["demo", "--duration", "0"][..], "--duration"),
        (&["demo", "--readers", "0"][..], "--readers"),
        (
            &["demo", "--payload-min", "2M", "--payload-max", "1M"][..],
            "--payload-max",
        ),
    ] {
        let out = bin().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}
