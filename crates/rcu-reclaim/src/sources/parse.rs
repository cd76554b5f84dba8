//! Parsers for the kernel files pressure sources read. Each returns a
//! clear error for malformed input and never panics. The parsers are
//! crate-private (their property tests are `parse_props.rs`); the data
//! types they fill are public.

use std::fmt;

/// A line of a file did not have the expected form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ParseError {
    /// What was being parsed.
    pub(crate) what: &'static str,
    /// Why it failed.
    pub(crate) reason: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot parse {}: {}", self.what, self.reason)
    }
}

impl std::error::Error for ParseError {}

fn err(what: &'static str, reason: impl Into<String>) -> ParseError {
    ParseError {
        what,
        reason: reason.into(),
    }
}

/// One line of a PSI file: the share of time some (or all) tasks stalled.
///
/// ```
/// use rcu_reclaim::stats::PsiLine;
/// let line = PsiLine::default();
/// assert_eq!((line.avg10, line.total_us), (0.0, 0));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct PsiLine {
    /// Percent over the last 10 s.
    pub avg10: f64,
    /// Percent over the last 60 s.
    pub avg60: f64,
    /// Percent over the last 300 s.
    pub avg300: f64,
    /// Total stall time in microseconds.
    pub total_us: u64,
}

/// `/proc/pressure/memory` or a cgroup v2 `memory.pressure`: what a
/// [`PressureSource`](super::PressureSource) with PSI behind it reports, and
/// what [`MonitorStats::psi`](super::MonitorStats::psi) holds.
///
/// ```
/// use rcu_reclaim::stats::PsiStats;
/// let s = PsiStats::default();
/// assert_eq!(s.some.avg10, 0.0);
/// assert!(s.full.is_none());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct PsiStats {
    /// Some tasks stalled.
    pub some: PsiLine,
    /// All tasks stalled (absent on old kernels' CPU files).
    pub full: Option<PsiLine>,
}

impl PsiStats {
    /// Parses the file's text.
    pub(crate) fn parse(text: &str) -> Result<PsiStats, ParseError> {
        const WHAT: &str = "a PSI file (some/full avg10= avg60= avg300= total=)";
        let mut some = None;
        let mut full = None;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let mut fields = line.split_whitespace();
            let kind = fields.next().unwrap_or_default();
            let mut l = PsiLine::default();
            // One bit per field: a repeated field must not stand in for a
            // missing one.
            let mut seen = 0u8;
            for field in fields {
                let (k, v) = field
                    .split_once('=')
                    .ok_or_else(|| err(WHAT, format!("field {field:?} has no '='")))?;
                let bad = || err(WHAT, format!("bad value in {field:?}"));
                // A share of time: finite and not negative.
                let pct = |v: &str| {
                    v.parse::<f64>()
                        .ok()
                        .filter(|x| x.is_finite() && *x >= 0.0)
                        .ok_or_else(bad)
                };
                let bit = match k {
                    "avg10" => {
                        l.avg10 = pct(v)?;
                        1
                    }
                    "avg60" => {
                        l.avg60 = pct(v)?;
                        2
                    }
                    "avg300" => {
                        l.avg300 = pct(v)?;
                        4
                    }
                    "total" => {
                        l.total_us = v.parse().map_err(|_| bad())?;
                        8
                    }
                    _ => continue,
                };
                if seen & bit != 0 {
                    return Err(err(WHAT, format!("line {line:?} repeats field {k:?}")));
                }
                seen |= bit;
            }
            if seen != 15 {
                return Err(err(WHAT, format!("line {line:?} lacks a field")));
            }
            match kind {
                "some" => some = Some(l),
                "full" => full = Some(l),
                other => return Err(err(WHAT, format!("unknown line kind {other:?}"))),
            }
        }
        Ok(PsiStats {
            some: some.ok_or_else(|| err(WHAT, "no 'some' line"))?,
            full,
        })
    }
}

/// Resident set size in bytes from `/proc/self/statm` (second field, in
/// pages).
pub(crate) fn parse_statm(text: &str, page_size: u64) -> Result<u64, ParseError> {
    const WHAT: &str = "/proc/self/statm";
    let rss = text
        .split_whitespace()
        .nth(1)
        .ok_or_else(|| err(WHAT, "fewer than two fields"))?;
    let pages: u64 = rss
        .parse()
        .map_err(|_| err(WHAT, format!("bad page count {rss:?}")))?;
    pages
        .checked_mul(page_size)
        .ok_or_else(|| err(WHAT, "page count overflows"))
}

/// A byte count from a cgroup file: a number, or `max` (no limit). cgroup
/// v1 writes "no limit" as a number near 2^63, which also reads as `None`,
/// as does a number too large for a `u64`.
pub(crate) fn parse_cgroup_bytes(text: &str) -> Result<Option<u64>, ParseError> {
    let t = text.trim();
    if t == "max" || (t.len() > 19 && t.bytes().all(|b| b.is_ascii_digit())) {
        return Ok(None);
    }
    let v: u64 = t.parse().map_err(|_| {
        err(
            "a cgroup byte count",
            format!("{t:?} is neither a number nor 'max'"),
        )
    })?;
    Ok((v < 1 << 62).then_some(v))
}

/// The memory cgroup of this process, from `/proc/self/cgroup`
/// ([`CgroupPaths::for_this_process`]).
///
/// ```
/// use rcu_reclaim::sources::CgroupPaths;
/// let p = CgroupPaths::for_this_process().unwrap();
/// println!("v1 memory: {:?}, v2: {:?}", p.v1_memory, p.v2);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct CgroupPaths {
    /// Path within the v1 memory hierarchy, if the process is in one.
    pub v1_memory: Option<String>,
    /// Path within the v2 unified hierarchy.
    pub v2: Option<String>,
}

impl CgroupPaths {
    /// Parses the file's text (`id:controllers:path` lines).
    pub(crate) fn parse(text: &str) -> Result<CgroupPaths, ParseError> {
        let mut p = CgroupPaths::default();
        for line in text.lines().filter(|l| !l.is_empty()) {
            let mut parts = line.splitn(3, ':');
            let (Some(_id), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(err(
                    "/proc/self/cgroup",
                    format!("line {line:?} is not id:controllers:path"),
                ));
            };
            if ctrls.is_empty() {
                p.v2 = Some(path.to_string());
            } else if ctrls.split(',').any(|c| c == "memory") {
                p.v1_memory = Some(path.to_string());
            }
        }
        Ok(p)
    }
}

/// Counters of a cgroup v2 `memory.events` file (also the `oom_kill` line
/// of cgroup v1's `memory.oom_control`): [`CgroupV2::events`](super::CgroupV2::events)
/// or [`MemoryEvents::read`].
///
/// ```no_run
/// let e = rcu_reclaim::sources::MemoryEvents::read("/sys/fs/cgroup/memory.events").unwrap();
/// println!("throttled {} times, {} OOM kills", e.high, e.oom_kill);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct MemoryEvents {
    /// Times usage went over `memory.low` protection.
    pub low: u64,
    /// Times usage went over `memory.high` (throttled).
    pub high: u64,
    /// Times usage hit `memory.max`.
    pub max: u64,
    /// OOM situations.
    pub oom: u64,
    /// Processes killed by the OOM killer.
    pub oom_kill: u64,
}

impl MemoryEvents {
    /// Parses the file's text (`name value` lines; unknown names ignored).
    pub(crate) fn parse(text: &str) -> Result<MemoryEvents, ParseError> {
        let mut e = MemoryEvents::default();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let (k, v) = line.split_once(' ').ok_or_else(|| {
                err(
                    "memory.events",
                    format!("line {line:?} is not 'name value'"),
                )
            })?;
            let v: u64 = v
                .trim()
                .parse()
                .map_err(|_| err("memory.events", format!("bad count in {line:?}")))?;
            match k {
                "low" => e.low = v,
                "high" => e.high = v,
                "max" => e.max = v,
                "oom" => e.oom = v,
                "oom_kill" => e.oom_kill = v,
                _ => {}
            }
        }
        Ok(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_psi_is_an_error_not_a_panic() {
        for bad in [
            "",
            "some",
            "some avg10=x avg60=0 avg300=0 total=0",
            "some avg10=0 avg60=0 avg300=0",
            "weird avg10=0 avg60=0 avg300=0 total=0",
            "some avg10 avg60=0 avg300=0 total=0",
            "full avg10=0.00 avg60=0.00 avg300=0.00 total=1",
        ] {
            assert!(PsiStats::parse(bad).is_err(), "{bad:?}");
        }
        let ok = PsiStats::parse("some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n").unwrap();
        assert!(ok.full.is_none());
    }

    #[test]
    fn statm_and_cgroup_files_parse_or_fail_clearly() {
        assert!(parse_statm("1 x", 4096).is_err());
        assert!(parse_statm(&format!("1 {}", u64::MAX), 4096).is_err());
        assert!(parse_cgroup_bytes("").is_err());
        assert!(parse_cgroup_bytes("-5").is_err());
        let e = parse_cgroup_bytes("12x").unwrap_err();
        assert!(e.to_string().contains("neither a number nor 'max'"), "{e}");
        // Beyond any limit, even beyond a u64: no limit.
        assert_eq!(parse_cgroup_bytes("9223372036854771712\n"), Ok(None));
        assert_eq!(parse_cgroup_bytes("99999999999999999999999"), Ok(None));
        assert_eq!(parse_cgroup_bytes("268435456"), Ok(Some(268_435_456)));
        assert!(CgroupPaths::parse("1:cpu").is_err());
        let p = CgroupPaths::parse("4:memory,cpu:/x\n").unwrap();
        assert_eq!(p.v1_memory.as_deref(), Some("/x"));
        assert_eq!(p.v2, None);
        assert!(MemoryEvents::parse("oom").is_err());
        assert_eq!(
            MemoryEvents::parse("future 9\noom_kill 2")
                .unwrap()
                .oom_kill,
            2
        );
    }

    #[test]
    fn well_formed_files_parse() {
        let s = PsiStats::parse(
            "some avg10=1.50 avg60=0.20 avg300=0.00 total=1234\n\
             full avg10=0.00 avg60=0.00 avg300=0.00 total=10\n",
        )
        .unwrap();
        assert_eq!(s.some.avg10, 1.5);
        assert_eq!(s.full.unwrap().total_us, 10);
        assert!(PsiStats::parse("nonsense").is_err());
        assert_eq!(
            parse_statm("765 400 373 5 0 123 0\n", 4096).unwrap(),
            400 * 4096
        );
        assert!(parse_statm("", 4096).is_err());
        assert_eq!(parse_cgroup_bytes("104857600\n").unwrap(), Some(100 << 20));
        assert_eq!(parse_cgroup_bytes("max\n").unwrap(), None);
        assert_eq!(parse_cgroup_bytes("9223372036854771712").unwrap(), None);
        assert!(parse_cgroup_bytes("lots").is_err());
        let p = CgroupPaths::parse("4:memory:/jobs/a\n0::/jobs/a\n").unwrap();
        assert_eq!(p.v1_memory.as_deref(), Some("/jobs/a"));
        assert_eq!(p.v2.as_deref(), Some("/jobs/a"));
        assert!(CgroupPaths::parse("garbage").is_err());
        let e = MemoryEvents::parse("low 0\nhigh 3\nmax 1\noom 0\noom_kill 0\n").unwrap();
        assert_eq!((e.high, e.max), (3, 1));
        assert!(MemoryEvents::parse("high x").is_err());
    }

    #[test]
    #[cfg_attr(miri, ignore = "reads /proc, which Miri does not have")]
    fn this_machines_files_parse() {
        if let Ok(t) = std::fs::read_to_string("/proc/pressure/memory") {
            PsiStats::parse(&t).unwrap();
        }
        if let Ok(t) = std::fs::read_to_string("/proc/self/cgroup") {
            CgroupPaths::parse(&t).unwrap();
        }
        let t = std::fs::read_to_string("/proc/self/statm").unwrap();
        assert!(parse_statm(&t, 4096).unwrap() > 0);
    }
}
