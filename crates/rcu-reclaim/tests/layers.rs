//! The library's files import only downward: every `crate::` or `super::`
//! path in a file's code (comments and doc links aside) names a file of its
//! own layer or a lower one, and no files
//! import each other in a cycle. The layers are `LAYERS` below (and
//! docs/ARCHITECTURE.md); a file not listed there fails the test too, so
//! a new file must be given its place.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// Bottom to top. A file may import files of its own layer (without a
/// cycle) or of the layers before it.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "leaves",
        &[
            "sync.rs",
            "sys.rs",
            "topology.rs",
            "flavor.rs",
            "clock.rs",
            "wake_promise.rs",
            "fast_mode.rs",
            "policy.rs",
            "locking.rs",
            "size.rs",
            "foreign.rs",
            "reader_fences.rs",
            "unprepared_fork.rs",
            "lock_holder.rs",
        ],
    ),
    (
        "bulk pages",
        &[
            "callbacks/bulk.rs",
            "callbacks/local.rs",
            "callbacks/segcblist.rs",
        ],
    ),
    ("readers", &["reader/"]),
    ("grace periods", &["gp/"]),
    (
        "callback engine",
        &[
            "callbacks/mod.rs",
            "callbacks/shard.rs",
            "callbacks/plan.rs",
            "callbacks/flush.rs",
            "callbacks/invoke.rs",
            "callbacks/barrier.rs",
            "callbacks/drain.rs",
            "callbacks/throttle.rs",
            "callbacks/worker.rs",
            "callbacks/fork.rs",
            "callbacks/headroom.rs",
        ],
    ),
    ("grace-period thread", &["gp_thread.rs"]),
    ("domain", &["domain.rs", "config.rs"]),
    (
        "public API",
        &[
            "guard.rs",
            "qsbr.rs",
            "raw.rs",
            "synchronize.rs",
            "callbacks/api.rs",
            "callbacks/retire.rs",
            "callbacks/retire_waits.rs",
            "cell.rs",
            "retired.rs",
            "pressure.rs",
            "fork.rs",
            "pages.rs",
        ],
    ),
    ("reclaim", &["reclaim/"]),
    ("sources", &["sources/"]),
    // `Rcu::stats`, and the public `stats` module that lists every snapshot
    // (its own and those of reclaim and sources): on top, so it can name them.
    ("stats", &["stats.rs"]),
    // The data structures built on the public API (`RcuHashMap`, and
    // `RcuCache` on it, with reclaim and sources): on top, users of the
    // domain like any program.
    ("containers", &["map/", "cache/"]),
    // Doc tests alone (`cfg(doctest)`): programs that must not compile,
    // written against the public API like any user's.
    ("compile-fail doc tests", &["compile_fail.rs"]),
];

/// The layer of `file` (a path under `src/`), by exact name or folder.
fn layer_of(file: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, files)| {
        files
            .iter()
            .any(|f| *f == file || (f.ends_with('/') && file.starts_with(f)))
    })
}

/// Every `.rs` file under `dir` but unit-test files (`tests.rs`), as paths
/// relative to `root` with `/`.
fn rust_files(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for entry in fs::read_dir(dir).expect("read src/") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(root, &path, out);
        } else if path.extension().is_some_and(|e| e == "rs")
            // A module's unit tests in a file of their own (`mod tests;`):
            // tests are not structure.
            && path.file_name().is_some_and(|n| n != "tests.rs")
        {
            let rel = path.strip_prefix(root).unwrap().to_string_lossy();
            out.push(rel.replace('\\', "/"));
        }
    }
}

/// The module path of a file: `callbacks/mod.rs` is `callbacks`.
fn module_of(file: &str) -> Vec<String> {
    let mut parts: Vec<String> = file
        .trim_end_matches(".rs")
        .split('/')
        .map(str::to_string)
        .collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
}

/// The identifier path at the start of `s` (`a::b::C`), as segments.
fn path_at(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = s;
    loop {
        let len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        if len == 0 {
            break;
        }
        out.push(rest[..len].to_string());
        rest = &rest[len..];
        match rest.strip_prefix("::") {
            Some(r) if r.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') => rest = r,
            _ => break,
        }
    }
    out
}

/// The items of a `{ ... }` group at the start of `s`, split at top-level
/// commas (each item's own path, before any nested group).
fn group_items(s: &str) -> Vec<Vec<String>> {
    let mut depth = 0;
    let mut items = Vec::new();
    let mut start = 1;
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    items.push(path_at(s[start..i].trim()));
                    break;
                }
            }
            ',' if depth == 1 => {
                items.push(path_at(s[start..i].trim()));
                start = i + 1;
            }
            _ => {}
        }
    }
    items
}

/// Paths after every occurrence of `prefix` (plain or as a `{}` group).
fn paths_after(text: &str, prefix: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for (i, _) in text.match_indices(prefix) {
        // Only whole path starts: `crate::`, not `some_crate::`.
        let before = text[..i].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let rest = &text[i + prefix.len()..];
        if rest.starts_with('{') {
            out.extend(group_items(rest));
        } else {
            out.push(path_at(rest));
        }
    }
    out
}

/// `text` up to its first test module (a `#[cfg(...test...)]` line right
/// before a `mod` line): tests are not structure.
fn without_test_modules(text: &str) -> &str {
    let mut offset = 0;
    let mut lines = text.split_inclusive('\n').peekable();
    while let Some(line) = lines.next() {
        let t = line.trim_start();
        if t.starts_with("#[cfg(")
            && t.contains("test")
            && lines
                .peek()
                .is_some_and(|n| n.trim_start().starts_with("mod "))
        {
            return &text[..offset];
        }
        offset += line.len();
    }
    text
}

/// `text` without its comment lines: a doc link (`[x](crate::reclaim::X)`)
/// documents, it does not depend, so a leaf may link to the API above it.
fn without_comments(text: &str) -> String {
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The files each file imports through `crate::` and `super::` paths
/// (unit-test modules left out: tests are not structure).
fn imports(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, src, &mut files);
    let modules: BTreeMap<Vec<String>, String> =
        files.iter().map(|f| (module_of(f), f.clone())).collect();
    let target = |path: &[String]| -> Option<&String> {
        (1..=path.len()).rev().find_map(|n| modules.get(&path[..n]))
    };
    let mut edges = BTreeMap::new();
    for file in &files {
        let text = fs::read_to_string(src.join(file)).expect("read a source file");
        let text = without_comments(without_test_modules(&text));
        let text = text.as_str();
        let module = module_of(file);
        let mut paths = paths_after(text, "crate::");
        for p in paths_after(text, "super::")
            .into_iter()
            .filter(|p| !p.is_empty())
        {
            let mut full = module[..module.len().saturating_sub(1)].to_vec();
            full.extend(p);
            paths.push(full);
        }
        let to: BTreeSet<String> = paths
            .iter()
            .filter_map(|p| target(p))
            .filter(|t| *t != file && t.as_str() != "lib.rs")
            .cloned()
            .collect();
        edges.insert(file.clone(), to);
    }
    edges
}

fn src_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every file has a layer, and imports only its own layer or lower ones.
#[test]
fn files_import_only_downward() {
    let edges = imports(&src_dir());
    let mut problems = Vec::new();
    for (file, to) in &edges {
        if file == "lib.rs" {
            continue;
        }
        let Some(mine) = layer_of(file) else {
            problems.push(format!(
                "src/{file} has no layer: add it to LAYERS in tests/layers.rs (and to \
                 docs/ARCHITECTURE.md)"
            ));
            continue;
        };
        for t in to {
            let Some(theirs) = layer_of(t) else { continue };
            if theirs > mine {
                problems.push(format!(
                    "src/{file} ({}) imports src/{t} ({}), a higher layer",
                    LAYERS[mine].0, LAYERS[theirs].0
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// No files import each other in a cycle (also within one layer).
#[test]
fn no_import_cycle() {
    let edges = imports(&src_dir());
    // Depth-first search with colours; a grey file met again closes a cycle.
    fn visit<'a>(
        f: &'a str,
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        colour: &mut BTreeMap<&'a str, u8>,
        stack: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        colour.insert(f, 1);
        stack.push(f);
        for t in edges.get(f).into_iter().flatten() {
            match colour.get(t.as_str()) {
                Some(1) => {
                    let at = stack.iter().position(|s| *s == t).unwrap();
                    let mut cycle: Vec<String> =
                        stack[at..].iter().map(|s| s.to_string()).collect();
                    cycle.push(t.clone());
                    return Some(cycle);
                }
                Some(_) => {}
                None => {
                    if let Some(c) = visit(t, edges, colour, stack) {
                        return Some(c);
                    }
                }
            }
        }
        stack.pop();
        colour.insert(f, 2);
        None
    }
    let mut colour = BTreeMap::new();
    for f in edges.keys() {
        if !colour.contains_key(f.as_str()) {
            let mut stack = Vec::new();
            if let Some(cycle) = visit(f, &edges, &mut colour, &mut stack) {
                panic!("import cycle: {}", cycle.join(" -> "));
            }
        }
    }
}

/// The checks see real imports: a known downward import is found, so an
/// upward one would be too.
#[test]
fn the_parser_finds_imports() {
    let edges = imports(&src_dir());
    assert!(
        edges["gp/mod.rs"].contains("reader/mod.rs"),
        "{:?}",
        edges["gp/mod.rs"]
    );
    assert!(edges["callbacks/mod.rs"].contains("gp/mod.rs"));
    assert!(edges["reader/mod.rs"].contains("callbacks/bulk.rs"));
    // `use crate::{a, b}` groups and `super::` paths count too.
    assert!(edges["callbacks/worker.rs"].contains("callbacks/mod.rs"));
}
