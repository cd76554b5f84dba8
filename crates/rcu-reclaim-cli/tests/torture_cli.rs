//! `rcu-reclaim torture`: exit 0 and SUCCESS on a good run, 1 and FAILURE
//! on a busted RCU, 2 with a message naming the flag on bad input.

use std::process::Command;

fn torture(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_rcu-reclaim"))
        .arg("torture")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn a_short_run_with_every_option_succeeds() {
    let out = torture(&["--duration", "1.5", "--all", "--quiet"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("Reader Pipe:") && text.contains("Reader Batch:"));
    assert!(text.contains("Free-Block Circulation:"));
    assert!(text.ends_with("End of test: SUCCESS\n"), "{text}");
    // Injected panics are expected and silenced.
    assert!(!String::from_utf8_lossy(&out.stderr).contains("injected"));
}

/// `--quiet` keeps the library's stall reports, one per injected stall,
/// off standard error; the report still counts them.
#[test]
fn quiet_keeps_the_injected_stalls_reports_off_stderr() {
    let out = torture(&[
        "--duration",
        "1",
        "--faults",
        "stall",
        "--stall-timeout-ms",
        "100",
        "--quiet",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("stalls injected"), "{text}");
    assert!(!text.contains("stalls injected 0"), "{text}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("reader stall"), "{err}");
}

#[test]
fn a_qsbr_run_succeeds() {
    let out = torture(&["--duration", "0.5", "--flavor", "qsbr", "--quiet"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("flavor qsbr"), "{text}");
    assert!(text.ends_with("End of test: SUCCESS\n"), "{text}");
}

#[test]
fn json_report_parses() {
    let out = torture(&["--duration", "0.5", "--json", "--modes", "call,defer"]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["reads"].as_u64().unwrap() > 0);
    assert_eq!(v["reader_pipe"].as_array().unwrap().len(), 11);
    assert!(v["failures"].as_array().unwrap().is_empty());
    assert_eq!(v["config"]["modes"], serde_json::json!(["call", "defer"]));
}

#[test]
fn a_busted_rcu_exits_1() {
    let out = torture(&[
        "--duration",
        "0.5",
        "--busted",
        "--reader-stalls",
        "--quiet",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.ends_with("End of test: FAILURE\n"), "{text}");
}

#[test]
fn bad_flags_exit_2_naming_the_flag() {
    for (args, needle) in [
        (&["--readers", "0"][..], "--readers"),
        (&["--duration", "0.01"], "0.2 to 86400"),
        (&["--modes", "sync,fast"], "sync, exp, poll, call or defer"),
        (&["--faults", "oom"], "panic, alloc, exit or stall"),
        (&["--flavor", "tree"], "auto, memb, mb or qsbr"),
        (&["--pressure-hz", "1e9"], "10000"),
        (&["--qhimark", "10"], "--qhimark"),
        // Ignored before: the run used the machine's topology, silently.
        (
            &["--cpus-per-node", "4", "--duration", "0.2"],
            "--cpus-per-node sets the synthetic topology's CPUs per node",
        ),
        (
            &["--cpus-per-node", "4", "--nodes", "0", "--duration", "0.2"],
            "add --nodes 1 or more",
        ),
        (
            &[
                "--faults",
                "stall",
                "--duration",
                "1",
                "--stall-timeout-ms",
                "1000",
            ],
            "needs a --duration of at least three stall timeouts (3 x --stall-timeout-ms = \
             3s), not 1s: give --duration 3 or more",
        ),
        (
            &["--all", "--duration", "0.5"],
            "needs a --duration of at least three stall timeouts (3 x --stall-timeout-ms = \
             600ms), not 500ms: give --duration 0.6 or more",
        ),
    ] {
        let out = torture(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// `--cpus-per-node` shapes the synthetic topology that `--nodes` asks for.
#[test]
fn cpus_per_node_applies_with_nodes() {
    let out = torture(&[
        "--duration",
        "0.2",
        "--nodes",
        "2",
        "--cpus-per-node",
        "3",
        "--quiet",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("topology 2x3"), "{text}");
}

/// A mode given twice runs (and is listed) once, as a fault given twice
/// is; the header gives a run under a second in hundredths (`0.25s`, not
/// `0.3s`).
#[test]
fn a_repeated_mode_is_listed_once() {
    let out = torture(&["--duration", "0.25", "--modes", "sync,sync,call", "--quiet"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("modes sync,call "), "{text}");
    let secs = text
        .split("duration ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_default();
    let decimals = secs.trim_end_matches('s').split('.').nth(1).map(str::len);
    assert_eq!(decimals, Some(2), "{secs:?} in {text}");
}
