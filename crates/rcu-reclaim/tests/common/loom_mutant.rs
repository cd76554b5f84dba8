//! The loom models' mutation checks: runs an ignored test (a mutant of a
//! model) in a child process and checks that the model fails it. A child,
//! because a model that panics leaves loom objects to be dropped outside
//! the model, which aborts the process. Included by `tests/loom.rs` and
//! `tests/loom_fence_protocol.rs` (`#[path]`).

/// Runs the ignored test `name` and checks that it fails, its output
/// showing one of `signs` (loom's "Causality violation", or the model's
/// own assertion).
pub fn mutant_fails(name: &str, signs: &[&str]) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--ignored", "--test-threads=1"])
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("running 1 test"), "{text}");
    assert!(
        !out.status.success(),
        "the mutant {name} passed the model:\n{text}"
    );
    assert!(
        signs.iter().any(|s| text.contains(s)),
        "the mutant {name} failed for another reason:\n{text}"
    );
}

/// Runs the model `name` (a test that passes as it is) with the loom
/// mutation `site` on (`RCU_LOOM_MUTATE`: the library's
/// `sync::LOOM_MUTATION_SITES`) and checks that it fails, its output
/// showing one of `signs`.
#[allow(dead_code)] // `tests/loom_fence_protocol.rs` has no such site
pub fn mutation_fails(name: &str, site: &str, signs: &[&str]) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--test-threads=1"])
        .env("RCU_LOOM_MUTATE", site)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("running 1 test"), "{text}");
    assert!(
        !out.status.success(),
        "the model {name} passed with the mutation {site}:\n{text}"
    );
    assert!(
        signs.iter().any(|s| text.contains(s)),
        "the model {name} failed with the mutation {site} for another reason:\n{text}"
    );
}
