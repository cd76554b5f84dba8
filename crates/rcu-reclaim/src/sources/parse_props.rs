//! Property tests for the kernel-file parsers in `sources/parse.rs` (unit
//! tests: the parsers are crate-private):
//! `PsiStats::parse`, `parse_statm`, `parse_cgroup_bytes`,
//! `CgroupPaths::parse` and `MemoryEvents::parse`.
//!
//! Three families of properties:
//! * no parser panics, on arbitrary text, on arbitrary bytes decoded lossily
//!   and on near-valid files (valid files with fields dropped, duplicated,
//!   swapped or replaced by huge, negative, NaN/inf or whitespace tokens);
//! * well-formed files generated from random values parse back to exactly
//!   those values;
//! * malformed input gives an `Err` naming what was parsed, with a
//!   non-empty message.

use super::parse::{
    parse_cgroup_bytes, parse_statm, CgroupPaths, MemoryEvents, ParseError, PsiLine, PsiStats,
};
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::TestCaseError;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

const PSI_WHAT: &str = "a PSI file (some/full avg10= avg60= avg300= total=)";
const STATM_WHAT: &str = "/proc/self/statm";
const BYTES_WHAT: &str = "a cgroup byte count";
const CGROUP_WHAT: &str = "/proc/self/cgroup";
const EVENTS_WHAT: &str = "memory.events";

/// Page sizes `parse_statm` is tried with, including the degenerate ones.
const PAGE_SIZES: &[u64] = &[0, 1, 4096, 16384, 65536, 1 << 32, u64::MAX];

/// The cutoff at or above which `parse_cgroup_bytes` reads a number as "no
/// limit" (cgroup v1 writes "no limit" as a number near 2^63).
const UNLIMITED_FROM: u64 = 1 << 62;

/// Checks that `e` is a well-formed error about `what`.
fn check_err(e: &ParseError, what: &str) -> Result<(), TestCaseError> {
    prop_assert_eq!(e.what, what, "error names the wrong input: {}", e);
    prop_assert!(!e.reason.trim().is_empty(), "empty reason: {:?}", e);
    let shown = e.to_string();
    prop_assert!(!shown.trim().is_empty());
    prop_assert!(
        shown.contains(e.what),
        "{shown:?} does not name {:?}",
        e.what
    );
    prop_assert!(shown.contains(&e.reason), "{shown:?} lacks the reason");
    Ok(())
}

/// Runs every parser on `text`; none may panic, and each error must be
/// well-formed and name the right input. Results that are `Ok` are checked
/// against what can be derived from the text directly.
fn all_parsers(text: &str) -> Result<(), TestCaseError> {
    match PsiStats::parse(text) {
        Ok(s) => {
            // A successful parse needs a line whose first word is "some", and
            // a `full` value needs a "full" line.
            let kinds: Vec<&str> = text
                .lines()
                .filter_map(|l| l.split_whitespace().next())
                .collect();
            prop_assert!(
                kinds.contains(&"some"),
                "{text:?} parsed without a some line"
            );
            prop_assert_eq!(s.full.is_some(), kinds.contains(&"full"));
        }
        Err(e) => check_err(&e, PSI_WHAT)?,
    }
    for &page in PAGE_SIZES {
        match parse_statm(text, page) {
            Ok(bytes) => {
                let pages: u64 = text.split_whitespace().nth(1).unwrap().parse().unwrap();
                prop_assert_eq!(Some(bytes), pages.checked_mul(page));
            }
            Err(e) => check_err(&e, STATM_WHAT)?,
        }
    }
    match parse_cgroup_bytes(text) {
        Ok(Some(v)) => {
            prop_assert!(v < UNLIMITED_FROM);
            prop_assert_eq!(text.trim().parse::<u64>(), Ok(v));
        }
        Ok(None) => {
            let t = text.trim();
            let beyond_u64 = t.len() > 19 && t.bytes().all(|b| b.is_ascii_digit());
            prop_assert!(
                t == "max" || beyond_u64 || t.parse::<u64>().is_ok_and(|v| v >= UNLIMITED_FROM),
                "{text:?} read as no limit"
            );
        }
        Err(e) => {
            check_err(&e, BYTES_WHAT)?;
            let quoted = format!("{:?}", text.trim());
            prop_assert!(e.reason.contains(&quoted), "{e} does not quote {quoted}");
        }
    }
    match CgroupPaths::parse(text) {
        Ok(p) => {
            // Every path reported must come from some line of the text.
            for path in p.v1_memory.iter().chain(p.v2.iter()) {
                prop_assert!(text.lines().any(|l| l.ends_with(path.as_str())));
            }
        }
        Err(e) => check_err(&e, CGROUP_WHAT)?,
    }
    match MemoryEvents::parse(text) {
        Ok(_) => {}
        Err(e) => check_err(&e, EVENTS_WHAT)?,
    }
    Ok(())
}

/// Formats hundredths as the kernel does: two decimals.
fn hundredths(h: u32) -> String {
    format!("{}.{:02}", h / 100, h % 100)
}

/// One PSI line's values: avg10, avg60, avg300 in hundredths of a percent,
/// and the total.
type PsiValues = (u32, u32, u32, u64);

fn psi_values() -> impl Strategy<Value = PsiValues> {
    (0u32..=10_000, 0u32..=10_000, 0u32..=10_000, any::<u64>())
}

fn psi_fields((a10, a60, a300, total): PsiValues) -> Vec<String> {
    vec![
        format!("avg10={}", hundredths(a10)),
        format!("avg60={}", hundredths(a60)),
        format!("avg300={}", hundredths(a300)),
        format!("total={total}"),
    ]
}

fn psi_line(kind: &str, v: PsiValues) -> String {
    format!("{kind} {}", psi_fields(v).join(" "))
}

fn psi_text(some: PsiValues, full: Option<PsiValues>, newline: bool) -> String {
    let mut t = psi_line("some", some);
    if let Some(f) = full {
        t.push('\n');
        t.push_str(&psi_line("full", f));
    }
    if newline {
        t.push('\n');
    }
    t
}

/// A well-formed PSI file.
fn psi_file() -> impl Strategy<Value = String> {
    (
        psi_values(),
        proptest::option::of(psi_values()),
        any::<bool>(),
    )
        .prop_map(|(s, f, nl)| psi_text(s, f, nl))
}

/// A well-formed statm file: seven counts, mostly of realistic size.
fn statm_file() -> impl Strategy<Value = String> {
    let count = prop_oneof![3 => 0u64..1 << 24, 1 => any::<u64>()];
    (proptest::collection::vec(count, 7), any::<bool>()).prop_map(|(v, nl)| {
        let mut t = v.iter().map(u64::to_string).collect::<Vec<_>>().join(" ");
        if nl {
            t.push('\n');
        }
        t
    })
}

/// A well-formed cgroup byte-count file.
fn bytes_file() -> impl Strategy<Value = String> {
    (
        prop_oneof![
            any::<u64>().prop_map(|v| v.to_string()),
            (0u64..1 << 40).prop_map(|v| v.to_string()),
            Just("max".to_string()),
            Just("9223372036854771712".to_string()),
        ],
        any::<bool>(),
    )
        .prop_map(|(t, nl)| if nl { t + "\n" } else { t })
}

const CONTROLLERS: &[&str] = &[
    "memory",
    "cpu",
    "cpuacct",
    "blkio",
    "pids",
    "devices",
    "freezer",
    "net_cls",
    "net_prio",
    "hugetlb",
    "perf_event",
    "rdma",
    "misc",
    "cpuset",
    "name=systemd",
    "memoryx",
    "name=memory",
];

/// A cgroup path: '/'-separated segments that may contain ':' and spaces,
/// but no line breaks.
fn cgroup_path() -> impl Strategy<Value = String> {
    proptest::collection::vec("[a-zA-Z0-9._@:= -]{0,12}", 0..5)
        .prop_map(|segs| format!("/{}", segs.join("/")))
}

/// A `/proc/self/cgroup` line: (hierarchy id, controllers, path). An empty
/// controller list is the v2 line.
type CgroupLine = (u32, Vec<&'static str>, String);

fn cgroup_line() -> impl Strategy<Value = CgroupLine> {
    (
        0u32..20,
        prop_oneof![
            1 => Just(Vec::new()),
            4 => proptest::sample::subsequence(CONTROLLERS, 1..4),
        ],
        cgroup_path(),
    )
}

fn cgroup_text(lines: &[CgroupLine], newline: bool) -> String {
    let mut t = lines
        .iter()
        .map(|(id, ctrls, path)| format!("{id}:{}:{path}", ctrls.join(",")))
        .collect::<Vec<_>>()
        .join("\n");
    if newline {
        t.push('\n');
    }
    t
}

fn cgroup_file() -> impl Strategy<Value = String> {
    (
        proptest::collection::vec(cgroup_line(), 0..8),
        any::<bool>(),
    )
        .prop_map(|(lines, nl)| cgroup_text(&lines, nl))
}

const EVENT_KEYS: &[&str] = &["low", "high", "max", "oom", "oom_kill"];

/// memory.events lines: each known key at most once, with unknown keys mixed
/// in, shuffled.
fn events_lines() -> impl Strategy<Value = Vec<(String, u64)>> {
    (
        proptest::collection::vec(proptest::option::of(any::<u64>()), 5),
        proptest::collection::vec(("[a-z_]{1,16}", any::<u64>()), 0..4),
    )
        .prop_map(|(known, unknown)| {
            let mut lines: Vec<(String, u64)> = EVENT_KEYS
                .iter()
                .zip(known)
                .filter_map(|(k, v)| v.map(|v| (k.to_string(), v)))
                .collect();
            lines.extend(
                unknown
                    .into_iter()
                    .filter(|(k, _)| !EVENT_KEYS.contains(&k.as_str())),
            );
            lines
        })
        .prop_shuffle()
}

fn events_text(lines: &[(String, u64)], newline: bool) -> String {
    let mut t = lines
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join("\n");
    if newline {
        t.push('\n');
    }
    t
}

fn events_file() -> impl Strategy<Value = String> {
    (events_lines(), any::<bool>()).prop_map(|(l, nl)| events_text(&l, nl))
}

// ---------------------------------------------------------------------------
// Mutations that turn a valid file into a near-valid one
// ---------------------------------------------------------------------------

/// Tokens that tend to break parsers: huge, negative, non-finite, empty,
/// whitespace and separator tokens.
const WEIRD: &[&str] = &[
    "",
    "0",
    "-1",
    "-0",
    "+5",
    "-0.50",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999999999999",
    "4611686018427387904",
    "9223372036854775807",
    "1e309",
    "NaN",
    "nan",
    "inf",
    "-inf",
    "infinity",
    "0x10",
    "1_000",
    "1.5",
    ".",
    "=",
    "==",
    "avg10=",
    "=1",
    "avg10=NaN",
    "avg60=-inf",
    "total=-1",
    "total=18446744073709551616",
    "some",
    "full",
    "max",
    "memory",
    ":",
    "::",
    "0::",
    ",",
    " ",
    "  ",
    "\t",
    "\n",
    "\r",
    "\r\n",
    "\n\n",
    "\u{a0}",
    "\u{3000}",
    "\0",
    "é",
    "\u{1F600}",
    "\u{FFFD}",
];

#[derive(Clone, Debug)]
enum Mutation {
    Drop(usize),
    Duplicate(usize),
    Swap(usize, usize),
    Replace(usize, &'static str),
    Insert(usize, &'static str),
    /// Replaces what follows '=' (or the whole token if it has none).
    ReplaceValue(usize, &'static str),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::Drop),
        any::<usize>().prop_map(Mutation::Duplicate),
        (any::<usize>(), any::<usize>()).prop_map(|(i, j)| Mutation::Swap(i, j)),
        (any::<usize>(), select(WEIRD)).prop_map(|(i, w)| Mutation::Replace(i, w)),
        (any::<usize>(), select(WEIRD)).prop_map(|(i, w)| Mutation::Insert(i, w)),
        (any::<usize>(), select(WEIRD)).prop_map(|(i, w)| Mutation::ReplaceValue(i, w)),
    ]
}

/// Splits `s` into alternating runs of whitespace and non-whitespace.
fn tokenize(s: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut last_ws = None;
    for c in s.chars() {
        let ws = c.is_whitespace();
        match out.last_mut() {
            Some(t) if last_ws == Some(ws) => t.push(c),
            _ => out.push(c.to_string()),
        }
        last_ws = Some(ws);
    }
    out
}

fn mutate(text: &str, muts: &[Mutation], strip_newline: bool) -> String {
    let mut toks = tokenize(text);
    for m in muts {
        let n = toks.len();
        match *m {
            Mutation::Insert(i, w) => toks.insert(i % (n + 1), w.to_string()),
            _ if n == 0 => {}
            Mutation::Drop(i) => {
                toks.remove(i % n);
            }
            Mutation::Duplicate(i) => {
                let t = toks[i % n].clone();
                toks.insert(i % n, t);
            }
            Mutation::Swap(i, j) => toks.swap(i % n, j % n),
            Mutation::Replace(i, w) => toks[i % n] = w.to_string(),
            Mutation::ReplaceValue(i, w) => {
                let t = &mut toks[i % n];
                *t = match t.split_once('=') {
                    Some((k, _)) => format!("{k}={w}"),
                    None => w.to_string(),
                };
            }
        }
    }
    let mut out = toks.concat();
    if strip_newline {
        while out.ends_with('\n') {
            out.pop();
        }
    }
    out
}

fn near_valid(file: impl Strategy<Value = String>) -> impl Strategy<Value = String> {
    (
        file,
        proptest::collection::vec(mutation(), 1..5),
        any::<bool>(),
    )
        .prop_map(|(f, m, strip)| mutate(&f, &m, strip))
}

/// Arbitrary bytes, decoded lossily.
fn lossy_bytes() -> impl Strategy<Value = String> {
    proptest::collection::vec(any::<u8>(), 0..200)
        .prop_map(|b| String::from_utf8_lossy(&b).into_owned())
}

// ---------------------------------------------------------------------------
// No panics
// ---------------------------------------------------------------------------

proptest! {
    // Proves no parser panics on arbitrary Unicode text, and any error is well-formed.
    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        all_parsers(&text)?;
    }

    // Proves no parser panics on text built from the parsers' own alphabet (digits, keys, separators).
    #[test]
    fn alphabet_soup_never_panics(
        text in "(some|full|avg10|avg60|avg300|total|max|memory|oom|[0-9]{1,25}|[=:, .\t\n-]){0,30}"
    ) {
        all_parsers(&text)?;
    }

    // Proves no parser panics on arbitrary bytes decoded lossily from UTF-8.
    #[test]
    fn arbitrary_bytes_never_panic(text in lossy_bytes()) {
        all_parsers(&text)?;
    }

    // Proves no parser panics on mutated PSI files (dropped/duplicated/weird fields).
    #[test]
    fn near_valid_psi_never_panics(text in near_valid(psi_file())) {
        all_parsers(&text)?;
    }

    // Proves no parser panics on mutated statm files, including huge and negative counts.
    #[test]
    fn near_valid_statm_never_panics(text in near_valid(statm_file())) {
        all_parsers(&text)?;
    }

    // Proves no parser panics on mutated cgroup byte counts.
    #[test]
    fn near_valid_cgroup_bytes_never_panics(text in near_valid(bytes_file())) {
        all_parsers(&text)?;
    }

    // Proves no parser panics on mutated /proc/self/cgroup files.
    #[test]
    fn near_valid_cgroup_paths_never_panics(text in near_valid(cgroup_file())) {
        all_parsers(&text)?;
    }

    // Proves no parser panics on mutated memory.events files.
    #[test]
    fn near_valid_memory_events_never_panics(text in near_valid(events_file())) {
        all_parsers(&text)?;
    }
}

// ---------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------

fn check_psi_line(got: PsiLine, want: PsiValues) -> Result<(), TestCaseError> {
    let (a10, a60, a300, total) = want;
    prop_assert_eq!(got.avg10, f64::from(a10) / 100.0);
    prop_assert_eq!(got.avg60, f64::from(a60) / 100.0);
    prop_assert_eq!(got.avg300, f64::from(a300) / 100.0);
    prop_assert_eq!(got.total_us, total);
    Ok(())
}

proptest! {
    // Proves a kernel-format PSI file (two-decimal averages, any u64 total) parses back to its values.
    #[test]
    fn psi_round_trips(
        some in psi_values(),
        full in proptest::option::of(psi_values()),
        newline in any::<bool>(),
    ) {
        let s = PsiStats::parse(&psi_text(some, full, newline)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        check_psi_line(s.some, some)?;
        prop_assert_eq!(s.full.is_some(), full.is_some());
        if let (Some(got), Some(want)) = (s.full, full) {
            check_psi_line(got, want)?;
        }
    }

    // Proves PSI fields may come in any order, with unknown fields, blank lines and any spacing.
    #[test]
    fn psi_round_trips_with_reordered_fields_and_spacing(
        some in psi_values(),
        full in psi_values(),
        order in Just(vec![0usize, 1, 2, 3]).prop_shuffle(),
        extra in proptest::collection::vec("[a-z]{1,8}=[a-z0-9.]{0,8}", 0..3),
        sep in "[ \t]{1,3}",
        blank in "[ \t]{0,3}",
        full_first in any::<bool>(),
    ) {
        let line = |kind: &str, v: PsiValues| {
            let f = psi_fields(v);
            let mut fields: Vec<String> = order.iter().map(|&i| f[i].clone()).collect();
            fields.extend(extra.iter().filter(|e| {
                !["avg10", "avg60", "avg300", "total"].contains(&e.split_once('=').unwrap().0)
            }).cloned());
            format!("{sep}{kind}{sep}{}{sep}", fields.join(&sep))
        };
        let (a, b) = (line("some", some), line("full", full));
        let text = if full_first {
            format!("{b}\n{blank}\n{a}")
        } else {
            format!("{a}\n{blank}\n{b}\n")
        };
        let s = PsiStats::parse(&text).map_err(|e| TestCaseError::fail(format!("{text:?}: {e}")))?;
        check_psi_line(s.some, some)?;
        check_psi_line(s.full.unwrap(), full)?;
    }

    // Proves statm yields the second field times the page size, or Err (not a panic) on overflow.
    #[test]
    fn statm_round_trips_or_reports_overflow(
        counts in proptest::collection::vec(any::<u64>(), 2..8),
        rss in prop_oneof![any::<u64>(), 0u64..1 << 30, (u64::MAX >> 16)..=u64::MAX],
        page in prop_oneof![select(PAGE_SIZES), any::<u64>()],
        newline in any::<bool>(),
    ) {
        let mut fields: Vec<String> = counts.iter().map(u64::to_string).collect();
        fields[1] = rss.to_string();
        let mut text = fields.join(" ");
        if newline {
            text.push('\n');
        }
        match rss.checked_mul(page) {
            Some(bytes) => prop_assert_eq!(parse_statm(&text, page), Ok(bytes)),
            None => check_err(&parse_statm(&text, page).unwrap_err(), STATM_WHAT)?,
        }
    }

    // Proves a cgroup byte count reads back as itself below 2^62, as "no limit" from 2^62 and for "max".
    #[test]
    fn cgroup_bytes_round_trip(
        v in prop_oneof![any::<u64>(), 0u64..1 << 40, (UNLIMITED_FROM - 10)..(UNLIMITED_FROM + 10)],
        pad in "[ \t\n]{0,3}",
        max in any::<bool>(),
    ) {
        if max {
            prop_assert_eq!(parse_cgroup_bytes(&format!("{pad}max{pad}")), Ok(None));
        } else {
            let want = (v < UNLIMITED_FROM).then_some(v);
            prop_assert_eq!(parse_cgroup_bytes(&format!("{pad}{v}{pad}")), Ok(want));
        }
    }

    // Proves /proc/self/cgroup yields the path of the last v1 line naming "memory" and of the last v2 line.
    #[test]
    fn cgroup_paths_round_trip(
        lines in proptest::collection::vec(cgroup_line(), 0..8),
        newline in any::<bool>(),
    ) {
        let text = cgroup_text(&lines, newline);
        let want_v1 = lines.iter().rev().find(|(_, c, _)| c.contains(&"memory")).map(|l| l.2.clone());
        let want_v2 = lines.iter().rev().find(|(_, c, _)| c.is_empty()).map(|l| l.2.clone());
        let p = CgroupPaths::parse(&text).map_err(|e| TestCaseError::fail(format!("{text:?}: {e}")))?;
        prop_assert_eq!(p.v1_memory, want_v1);
        prop_assert_eq!(p.v2, want_v2);
    }

    // Proves memory.events lines in any order, with unknown keys mixed in, parse back to their counts (absent = 0).
    #[test]
    fn memory_events_round_trip(lines in events_lines(), newline in any::<bool>()) {
        let text = events_text(&lines, newline);
        let e = MemoryEvents::parse(&text).map_err(|e| TestCaseError::fail(format!("{text:?}: {e}")))?;
        let get = |k: &str| lines.iter().find(|(n, _)| n == k).map_or(0, |l| l.1);
        prop_assert_eq!(e.low, get("low"));
        prop_assert_eq!(e.high, get("high"));
        prop_assert_eq!(e.max, get("max"));
        prop_assert_eq!(e.oom, get("oom"));
        prop_assert_eq!(e.oom_kill, get("oom_kill"));
    }
}

// ---------------------------------------------------------------------------
// Errors are values
// ---------------------------------------------------------------------------

/// A value no numeric parser accepts.
fn junk_value() -> impl Strategy<Value = String> {
    prop_oneof![
        select(&["", "x", "-1", "1x", "0x10", "1 2", "--", "+", "1,5", "max!"][..])
            .prop_map(str::to_string),
        "[a-zA-Z_!?]{1,8}",
        "-[0-9]{1,5}",
        "[1-9][0-9]{20,29}",
    ]
}

proptest! {
    // Proves a PSI line lacking any one of its four fields is an Err naming the PSI file.
    #[test]
    fn psi_missing_field_is_an_error(some in psi_values(), drop in 0usize..4, full in any::<bool>()) {
        let mut f = psi_fields(some);
        f.remove(drop);
        let mut text = format!("some {}", f.join(" "));
        if full {
            text = format!("{}\n{text}", psi_line("full", some));
        }
        check_err(&PsiStats::parse(&text).unwrap_err(), PSI_WHAT)?;
    }

    // Proves a PSI line that repeats one field but lacks another is rejected (the field count is not fooled).
    #[test]
    fn psi_repeated_field_does_not_stand_in_for_a_missing_one(
        some in psi_values(),
        drop in 0usize..4,
        dup in 0usize..3,
    ) {
        let f = psi_fields(some);
        let dup = (drop + 1 + dup) % 4;
        let mut kept: Vec<String> = (0..4).filter(|&i| i != drop).map(|i| f[i].clone()).collect();
        kept.push(f[dup].clone());
        let text = format!("some {}\n", kept.join(" "));
        match PsiStats::parse(&text) {
            Ok(s) => {
                let msg = format!("{text:?} lacks {:?} yet parsed as {s:?}", f[drop]);
                return Err(TestCaseError::fail(msg));
            }
            Err(e) => check_err(&e, PSI_WHAT)?,
        }
    }

    // Proves a bad PSI value, a field without '=', an unknown line kind or a missing some line is an Err.
    #[test]
    fn psi_malformed_is_an_error(
        some in psi_values(),
        field in 0usize..4,
        junk in junk_value(),
        how in 0u8..4,
    ) {
        let mut f = psi_fields(some);
        let text = match how {
            0 => {
                let key = f[field].split_once('=').unwrap().0.to_string();
                f[field] = format!("{key}={junk}");
                format!("some {}", f.join(" "))
            }
            1 => {
                f[field] = f[field].replace('=', "");
                format!("some {}", f.join(" "))
            }
            2 => format!("{} {}\n{}", junk.replace(char::is_whitespace, "").replace(['s', 'f'], "q") + "k", f.join(" "), psi_line("some", some)),
            _ => psi_line("full", some),
        };
        // Values that happen to be valid shares of time (finite, not
        // negative) are accepted; NaN, infinities and negatives are not.
        let still_valid = how == 0
            && field < 3
            && junk.trim() == junk
            && junk.parse::<f64>().is_ok_and(|x| x.is_finite() && x >= 0.0);
        prop_assume!(!still_valid);
        check_err(&PsiStats::parse(&text).unwrap_err(), PSI_WHAT)?;
    }

    // Proves statm with fewer than two fields or a bad second field is an Err naming statm.
    #[test]
    fn statm_malformed_is_an_error(
        first in any::<u64>(),
        junk in junk_value(),
        rest in proptest::collection::vec(any::<u64>(), 0..5),
        short in any::<bool>(),
        page in select(PAGE_SIZES),
    ) {
        let text = if short {
            format!("  {first}\n")
        } else {
            let rest: Vec<String> = rest.iter().map(u64::to_string).collect();
            format!("{first} {junk} {}", rest.join(" "))
        };
        // A junk value with a space splits into two fields; the first may be a number.
        prop_assume!(short || text.split_whitespace().nth(1).map_or(true, |t| t.parse::<u64>().is_err()));
        check_err(&parse_statm(&text, page).unwrap_err(), STATM_WHAT)?;
    }

    // Proves anything but digits or "max" (after trimming) is an Err naming the cgroup byte count and quoting the input (digits beyond a u64 read as no limit).
    #[test]
    fn cgroup_bytes_malformed_is_an_error(junk in junk_value(), pad in "[ \n]{0,2}") {
        prop_assume!(junk != "max");
        prop_assume!(junk.is_empty() || !junk.bytes().all(|b| b.is_ascii_digit()));
        let text = format!("{pad}{junk}{pad}");
        let e = parse_cgroup_bytes(&text).unwrap_err();
        check_err(&e, BYTES_WHAT)?;
        prop_assert!(e.reason.contains(&format!("{:?}", text.trim())), "{e}");
    }

    // Proves a /proc/self/cgroup line with fewer than two ':' is an Err naming the file, wherever it appears.
    #[test]
    fn cgroup_paths_malformed_is_an_error(
        lines in proptest::collection::vec(cgroup_line(), 0..4),
        bad in "[a-z0-9/ ,=]{1,20}(:[a-z0-9/ ,=]{0,20})?",
        at in any::<usize>(),
    ) {
        let mut text: Vec<String> = lines.iter().map(|(id, c, p)| format!("{id}:{}:{p}", c.join(","))).collect();
        text.insert(at % (text.len() + 1), bad);
        let text = text.join("\n");
        check_err(&CgroupPaths::parse(&text).unwrap_err(), CGROUP_WHAT)?;
    }

    // Proves a memory.events line without a space or with a non-u64 count is an Err naming the file.
    #[test]
    fn memory_events_malformed_is_an_error(
        lines in events_lines(),
        key in "[a-z_]{1,10}",
        junk in junk_value(),
        no_space in any::<bool>(),
        at in any::<usize>(),
    ) {
        let bad = if no_space { format!("{key}\t7") } else { format!("{key} {junk}") };
        prop_assume!(no_space || junk.trim().parse::<u64>().is_err());
        let mut text: Vec<String> = lines.iter().map(|(k, v)| format!("{k} {v}")).collect();
        text.insert(at % (text.len() + 1), bad);
        let text = text.join("\n");
        check_err(&MemoryEvents::parse(&text).unwrap_err(), EVENTS_WHAT)?;
    }
}
