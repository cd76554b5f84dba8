//! The loom models' mutation checks: runs an ignored test (a mutant of a
//! model) in a child process and checks that the model fails it. A child,
//! because a model that panics leaves loom objects to be dropped outside
//! the model, which aborts the process. Included by `tests/loom.rs` and
//! `tests/loom_fence_protocol.rs` (`#[path]`).

/// Runs the ignored test `name` and checks that it fails, its output
/// showing one of `signs` (loom's "Causality violation", or the model's
/// own assertion).
pub fn mutant_fails(name: &str, signs: &[&str]) {
    fails(name, true, None, signs, &format!("the mutant {name}"));
}

/// Runs the model `name` (a test that passes as it is) with the loom
/// mutation `site` on (`RCU_LOOM_MUTATE`: the library's
/// `sync::LOOM_MUTATION_SITES`) and checks that it fails, its output
/// showing one of `signs`.
#[allow(dead_code)] // `tests/loom_fence_protocol.rs` has no such site
pub fn mutation_fails(name: &str, site: &str, signs: &[&str]) {
    fails(
        name,
        false,
        Some(site),
        signs,
        &format!("the model {name} with the mutation {site}"),
    );
}

/// Runs the test `name` (`ignored`: an ignored one) in a child, with the
/// mutation `site` on if any, and checks that it fails showing one of
/// `signs`; `what` names the run in the failure.
fn fails(name: &str, ignored: bool, site: Option<&str>, signs: &[&str], what: &str) {
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args([name, "--exact", "--test-threads=1"])
        .env("RUST_BACKTRACE", "0");
    if ignored {
        cmd.arg("--ignored");
    }
    if let Some(site) = site {
        cmd.env("RCU_LOOM_MUTATE", site);
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("running 1 test"), "{text}");
    assert!(!out.status.success(), "{what} passed:\n{text}");
    assert!(
        signs.iter().any(|s| text.contains(s)),
        "{what} failed for another reason:\n{text}"
    );
}
