//! The flags' values: sizes, whole numbers and seconds, each checked against
//! its flag's range, and the plot's path. Every message names the flag, says
//! what is wrong with the value and what would do.
//!
//! The numeric flags take values that start with '-' (clap's
//! `allow_hyphen_values`), so that `--duration -1` is answered "must be
//! positive" rather than "unexpected argument '-1'"; a flag given where a
//! value belongs (`--budget --json`) is answered "missing its value".

use std::ffi::OsStr;
use std::fs::OpenOptions;
use std::io::ErrorKind as IoErrorKind;
use std::marker::PhantomData;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use clap::builder::TypedValueParser;
use clap::error::ErrorKind;
use clap::{Arg, Command};

/// The flag as the user typed it, e.g. `--budget`.
fn flag_name(arg: Option<&Arg>) -> String {
    arg.and_then(Arg::get_long)
        .map_or_else(|| "the value".to_string(), |l| format!("--{l}"))
}

/// A usage error (exit code 2) with clap's usage line and help hint.
fn usage_error(cmd: &Command, message: String) -> clap::Error {
    clap::Error::raw(ErrorKind::ValueValidation, message).format(&mut cmd.clone())
}

/// `rest` (what follows a leading '-') is a number: the value is negative.
fn is_numeric(rest: &str) -> bool {
    rest.starts_with(|c: char| c.is_ascii_digit() || c == '.') || rest.parse::<f64>().is_ok()
}

/// `rest` (what follows a leading '-') is a zero: digits that are all 0,
/// with an optional fraction of zeros (`0`, `0.0`, `.0`).
fn is_zero(rest: &str) -> bool {
    let (whole, fraction) = rest.split_once('.').unwrap_or((rest, ""));
    whole.len() + fraction.len() > 0 && whole.bytes().chain(fraction.bytes()).all(|b| b == b'0')
}

/// Why a text is not a size (see [`parse_size`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SizeError {
    /// Not a number with an optional unit.
    NotASize,
    /// A number with a unit this parser does not know.
    UnknownUnit,
    /// A number with a minus sign.
    Negative,
    /// Starts with '-' but is no number: a flag where the value belongs.
    Flag,
    /// 0 bytes, after rounding down to a whole byte.
    Zero,
    /// More than `usize::MAX` bytes.
    Overflow,
    /// A number of bytes with a fraction (`1.5`, `2.5B`): no unit makes
    /// it whole (it was rounded down: `--payload-min 1.5` was 1 byte).
    Fraction,
}

/// The unit's power of two: "" and B are bytes; K, M, G and T, alone or
/// with B or iB, in any case, are 2^10, 2^20, 2^30 and 2^40.
fn unit_shift(unit: &str) -> Option<u32> {
    let u = unit.to_ascii_lowercase();
    let (letter, rest) = match u.as_bytes() {
        [] => return Some(0),
        [b'b'] => return Some(0),
        [letter, rest @ ..] => (*letter, rest),
    };
    let shift = match letter {
        b'k' => 10,
        b'm' => 20,
        b'g' => 30,
        b't' => 40,
        _ => return None,
    };
    matches!(rest, b"" | b"b" | b"ib").then_some(shift)
}

/// The number and the unit of a trimmed size, e.g. ("1.5", "GiB") for
/// "1.5 GiB": the unit is the trailing ASCII letters, the number what comes
/// before them, less the whitespace between.
fn split_unit(t: &str) -> (&str, &str) {
    let number = t.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    (number.trim_end(), &t[number.len()..])
}

/// Parses a size: a decimal number (digits, optionally with a fraction,
/// e.g. `1.5`; an optional leading '+'), then optionally whitespace and a
/// unit: B (bytes), K, M, G or T, alone or followed by B or iB, in any case
/// (all powers of 1024: `1.5G` = `1.5 GiB` = 1610612736 bytes). Surrounding
/// whitespace is ignored. The value is rounded down to a whole byte and
/// must be at least 1 byte and fit a usize; a number of bytes (no unit, or
/// B) must be whole (`1.5` is refused, not taken as 1 byte).
pub(crate) fn parse_size(s: &str) -> Result<usize, SizeError> {
    let t = s.trim();
    if let Some(rest) = t.strip_prefix('-') {
        return Err(if is_numeric(rest) {
            SizeError::Negative
        } else if rest.is_empty() {
            SizeError::NotASize
        } else {
            SizeError::Flag
        });
    }
    let (number, unit) = split_unit(t);
    let number = number.strip_prefix('+').unwrap_or(number);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.len() + fraction.len() == 0
        || !whole
            .bytes()
            .chain(fraction.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return Err(SizeError::NotASize);
    }
    let shift = unit_shift(unit).ok_or(SizeError::UnknownUnit)?;
    // Exactly: double the decimal digits `shift` times, then drop the
    // fraction's digits (rounding down).
    let mut digits: Vec<u8> = whole
        .bytes()
        .chain(fraction.bytes())
        .map(|b| b - b'0')
        .collect();
    for _ in 0..shift {
        let mut carry = 0;
        for d in digits.iter_mut().rev() {
            let x = *d * 2 + carry;
            *d = x % 10;
            carry = x / 10;
        }
        if carry > 0 {
            digits.insert(0, carry);
        }
    }
    let mut bytes: usize = 0;
    for &d in &digits[..digits.len() - fraction.len()] {
        bytes = bytes
            .checked_mul(10)
            .and_then(|b| b.checked_add(usize::from(d)))
            .ok_or(SizeError::Overflow)?;
    }
    if shift == 0 && fraction.bytes().any(|b| b != b'0') {
        return Err(SizeError::Fraction);
    }
    if bytes == 0 {
        return Err(SizeError::Zero);
    }
    Ok(bytes)
}

/// The units, for messages.
const UNITS: &str = "K, M, G or T (or KB/KiB, MB/MiB, GB/GiB, TB/TiB; all powers of 1024)";

impl SizeError {
    /// What is wrong with `s`, quoting it.
    fn problem(self, s: &str) -> String {
        match self {
            SizeError::NotASize => format!("{s:?} is not a size"),
            SizeError::UnknownUnit => {
                format!("{s:?} has an unknown unit {:?}", split_unit(s.trim()).1)
            }
            SizeError::Negative => format!("{s:?} is negative"),
            SizeError::Flag => format!("{s:?} is a flag, not a size"),
            SizeError::Zero if s.contains('.') => format!("{s:?} rounds down to 0 bytes"),
            SizeError::Zero => format!("{s:?} is 0 bytes"),
            SizeError::Overflow => format!("{s:?} overflows"),
            SizeError::Fraction => format!("{s:?} is a fraction of a byte"),
        }
    }
}

/// `bytes` in the largest unit that divides it, e.g. 16M, 64G or 1 B.
pub(crate) fn show_size(bytes: usize) -> String {
    for (shift, unit) in [(40, "T"), (30, "G"), (20, "M"), (10, "K")] {
        if bytes >= 1 << shift && bytes % (1 << shift) == 0 {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    format!("{bytes} B")
}

/// `bytes` where an exact figure is not needed (memory the machine has,
/// say): in the largest unit it reaches, with one decimal unless whole
/// ("22.8G", "16M"); `show_size` gives a value a flag accepts instead.
pub(crate) fn show_size_about(bytes: usize) -> String {
    for (shift, unit) in [(40, "T"), (30, "G"), (20, "M"), (10, "K")] {
        if bytes >= 1 << shift {
            let v = format!("{:.1}", bytes as f64 / (1u64 << shift) as f64);
            return format!("{}{unit}", v.strip_suffix(".0").unwrap_or(&v));
        }
    }
    format!("{bytes} B")
}

/// A size flag's range and meaning: its value parser.
#[derive(Clone, Copy, Debug)]
pub struct Size {
    /// What the size is, for messages: "budget", "cgroup limit", ...
    what: &'static str,
    min: usize,
    max: usize,
    /// A good value, for messages.
    example: &'static str,
}

/// `--budget`: 16M to 64G.
pub const BUDGET: Size = Size {
    what: "budget",
    min: 16 << 20,
    max: 64 << 30,
    example: "256M",
};
/// `--unaware-budget`.
pub const UNAWARE_BUDGET: Size = Size {
    what: "unaware budget",
    example: "2G",
    ..BUDGET
};
/// `--cgroup-limit`.
pub const CGROUP_LIMIT: Size = Size {
    what: "cgroup limit",
    example: "512M",
    ..BUDGET
};
/// Any size at all, for the property tests of the messages.
#[cfg(test)]
pub(crate) const ANY_SIZE: Size = Size {
    what: "size",
    min: 1,
    max: usize::MAX,
    example: "256M",
};
/// The payload flags: 1 B to 16M.
pub const PAYLOAD: Size = Size {
    what: "payload",
    min: 1,
    max: 16 << 20,
    example: "4K",
};

/// `--cache-capacity` of the bench's cache scenario: 1M to 64G.
pub const CACHE_CAPACITY: Size = Size {
    what: "cache capacity",
    min: 1 << 20,
    max: 64 << 30,
    example: "64M",
};
/// `--cache-value-min` and `--cache-value-max`: 1 B to 16M.
pub const CACHE_VALUE: Size = Size {
    what: "value size",
    example: "4K",
    ..PAYLOAD
};

impl Size {
    /// The value of `flag` given as `s`, or the message.
    pub(crate) fn check(&self, flag: &str, s: &str) -> Result<usize, String> {
        let (what, example) = (self.what, self.example);
        let (min, max) = (show_size(self.min), show_size(self.max));
        let range = format!("the {what} must be {min} to {max}");
        let problem = |e: SizeError| e.problem(s);
        match parse_size(s) {
            Ok(v) if v < self.min => {
                let bare = split_unit(s.trim()).1.is_empty();
                let hint = if bare {
                    format!(" (a number without a unit is bytes: {v} B; add one, e.g. {flag} {example})")
                } else {
                    String::new()
                };
                Err(format!("{flag} {s:?} is too small: {range}{hint}"))
            }
            Ok(v) if v > self.max => Err(format!("{flag} {s:?} is too large: {range}")),
            Ok(v) => Ok(v),
            Err(SizeError::Negative) => Err(format!("{flag} must be positive, not {s:?}: {range}")),
            Err(SizeError::Flag) => Err(format!(
                "{flag} is missing its value ({s:?} is a flag): give a size, e.g. {flag} {example}"
            )),
            Err(e @ SizeError::Zero) => Err(format!("{flag} {}: {range}", problem(e))),
            Err(e @ SizeError::Fraction) => Err(format!(
                "{flag} {}: a number without a unit is bytes, which must be whole; give a \
                 unit for a fraction, e.g. {flag} 1.5K ({range})",
                problem(e)
            )),
            Err(e @ SizeError::Overflow) => Err(format!(
                "{flag} {}: the largest {what} is {max} ({min} to {max})",
                problem(e)
            )),
            Err(e @ SizeError::UnknownUnit) => Err(format!(
                "{flag} {}: use {UNITS}, e.g. {flag} {example} or {flag} 1.5G",
                problem(e)
            )),
            Err(e @ SizeError::NotASize) => Err(format!(
                "{flag} {}: give a number and a unit, e.g. {flag} {example} or {flag} 1.5G \
                 ({range})",
                problem(e)
            )),
        }
    }
}

impl TypedValueParser for Size {
    type Value = usize;

    fn parse_ref(
        &self,
        cmd: &Command,
        arg: Option<&Arg>,
        value: &OsStr,
    ) -> Result<usize, clap::Error> {
        self.check(&flag_name(arg), &value.to_string_lossy())
            .map_err(|m| usage_error(cmd, m))
    }
}

/// A whole-number flag's range: its value parser, for `T` = u16, u32, u64.
pub struct Int<T> {
    lo: u64,
    hi: u64,
    t: PhantomData<fn() -> T>,
}

impl<T> Clone for Int<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Int<T> {}

impl<T> Int<T> {
    /// `lo` to `hi`, both included.
    pub const fn new(lo: u64, hi: u64) -> Self {
        Int {
            lo,
            hi,
            t: PhantomData,
        }
    }

    /// The value of `flag` given as `s`, or the message.
    pub(crate) fn check(&self, flag: &str, s: &str) -> Result<u64, String> {
        let (lo, hi) = (self.lo, self.hi);
        let mut t = s.trim();
        // `-0` is 0, which a range from 0 takes.
        if let Some(rest) = t.strip_prefix('-').filter(|r| lo == 0 && is_zero(r)) {
            t = rest;
        }
        if let Some(rest) = t.strip_prefix('-') {
            if is_numeric(rest) {
                return Err(if lo == 0 {
                    format!("{flag} must not be negative ({lo} to {hi}), not {t}")
                } else {
                    format!("{flag} must be positive ({lo} to {hi}), not {t}")
                });
            }
            if !rest.is_empty() {
                return Err(format!(
                    "{flag} is missing its value ({t:?} is a flag): give a number from {lo} to {hi}"
                ));
            }
        }
        let digits = t.strip_prefix('+').unwrap_or(t);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "{flag} must be a whole number from {lo} to {hi}, not {s:?}"
            ));
        }
        match digits.parse::<u64>() {
            Ok(v) if v < lo => Err(format!("{flag} must be {lo} to {hi}; {t} is too small")),
            Ok(v) if v <= hi => Ok(v),
            // Too large, or too large for a u64.
            _ => Err(format!("{flag} must be {lo} to {hi}; {t} is too large")),
        }
    }
}

impl<T> TypedValueParser for Int<T>
where
    T: TryFrom<u64> + Clone + Send + Sync + 'static,
{
    type Value = T;

    fn parse_ref(&self, cmd: &Command, arg: Option<&Arg>, value: &OsStr) -> Result<T, clap::Error> {
        let flag = flag_name(arg);
        let v = self
            .check(&flag, &value.to_string_lossy())
            .map_err(|m| usage_error(cmd, m))?;
        T::try_from(v).map_err(|_| {
            usage_error(
                cmd,
                format!(
                    "{flag} must be {} to {}; {v} is too large",
                    self.lo, self.hi
                ),
            )
        })
    }
}

/// A flag that takes a number with a fraction (seconds, a rate): its value
/// parser.
#[derive(Clone, Copy, Debug)]
pub struct Float {
    lo: f64,
    hi: f64,
    /// The range with its unit, e.g. "0.2 to 3600 seconds".
    range: &'static str,
    /// Seconds: a value may carry a unit (`500ms`, `30s`, `2m`, `1h`), or
    /// several, largest first (`1m30s`).
    time: bool,
}

/// The most threads --readers and --writers of demo, and --threads of
/// bench, take.
pub const MAX_THREADS: u64 = 64;

/// Under --cgroup-limit, `what` (each side, each cache) runs in a child
/// given the count of threads as `flag`, which takes at most
/// [`MAX_THREADS`]; `n` is that count, `default` how its default is made.
/// A default past the most (one per CPU on a machine of more CPUs) made
/// every child refuse it, and the run measured nothing.
pub(crate) fn check_child_threads(
    flag: &str,
    n: usize,
    what: &str,
    default: &str,
) -> Result<(), String> {
    if u64::try_from(n).unwrap_or(u64::MAX) <= MAX_THREADS {
        return Ok(());
    }
    Err(format!(
        "--cgroup-limit runs {what} in a child that takes at most {MAX_THREADS} {flag}, and the \
         default here is {n} ({default}): give {flag} {MAX_THREADS} or fewer"
    ))
}

/// `--duration` of demo and bench.
pub const SECS: Float = Float {
    lo: 0.2,
    hi: 3600.0,
    range: "0.2 to 3600 seconds",
    time: true,
};

/// `--duration` of torture.
pub const TORTURE_SECS: Float = Float {
    hi: 86_400.0,
    range: "0.2 to 86400 seconds",
    ..SECS
};

/// torture's `--pressure-hz`.
pub const HZ: Float = Float {
    lo: 0.0,
    hi: 10_000.0,
    range: "0 (off) to 10000 Hz",
    time: false,
};

/// `--zipf` of the bench's cache scenario.
pub const ZIPF: Float = Float {
    lo: 0.0,
    hi: 3.0,
    range: "0 (uniform) to 3",
    time: false,
};

impl Float {
    /// The least value the flag takes.
    pub(crate) const fn least(&self) -> f64 {
        self.lo
    }

    /// The value of `flag` given as `s`, or the message.
    pub(crate) fn check(&self, flag: &str, s: &str) -> Result<f64, String> {
        let range = self.range;
        let mut t = s.trim();
        // `-0` is 0, which a range from 0 takes.
        if let Some(rest) = t.strip_prefix('-').filter(|r| self.lo == 0.0 && is_zero(r)) {
            t = rest;
        }
        if let Some(rest) = t.strip_prefix('-') {
            if is_numeric(rest) {
                return Err(if self.lo == 0.0 {
                    format!("{flag} must not be negative ({range}), not {t}")
                } else {
                    format!("{flag} must be positive ({range}), not {t}")
                });
            }
            if !rest.is_empty() {
                return Err(format!(
                    "{flag} is missing its value ({t:?} is a flag): give {range}"
                ));
            }
        }
        if t.is_empty() {
            return Err(format!("{flag} is missing its value: give {range}"));
        }
        // A time may carry a unit: `500ms`, `30s`, `2m`, `1h` (`1.5 s` too).
        let (number, scale) = match self.time {
            true => split_time_unit(t),
            false => (t, 1.0),
        };
        // A time's unit, named where a number did not parse (`15S`).
        let units = if self.time {
            " (a unit may follow: ms, s, m, min, h)"
        } else {
            ""
        };
        // Or several, largest first: `1m30s`, `1h 30m`.
        let parsed = match number.parse::<f64>().map(|v| v * scale) {
            Err(_) if self.time => compound_time(t).ok_or(()),
            other => other.map_err(|_| ()),
        };
        match parsed {
            Ok(v) if v.is_nan() => Err(format!(
                "{flag} must be a number, {range}{units}, not {s:?}"
            )),
            Ok(v) if v < self.lo => Err(format!("{flag} must be {range}; {t} is too small")),
            Ok(v) if v > self.hi => Err(format!("{flag} must be {range}; {t} is too large")),
            Ok(v) => Ok(v),
            Err(()) => Err(format!(
                "{flag} must be a number, {range}{units}, not {s:?}"
            )),
        }
    }
}

/// A time of two or more parts, each a number with its unit, largest unit
/// first, spaces between them allowed (`1m30s`, `1h 30m`, `2m 0.5s`), in
/// seconds; `None` if `t` is not one.
fn compound_time(t: &str) -> Option<f64> {
    let (mut total, mut parts, mut last_scale) = (0.0, 0, f64::INFINITY);
    let mut rest = t.trim();
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..digits].parse().ok()?;
        let after = rest[digits..].trim_start();
        let letters = after
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(after.len());
        // A unit in every part, each smaller than the last.
        let scale = time_unit(&after[..letters])?;
        if scale >= last_scale {
            return None;
        }
        total += number * scale;
        parts += 1;
        last_scale = scale;
        rest = after[letters..].trim_start();
    }
    (parts >= 2).then_some(total)
}

/// A time's units and their factors to seconds, longest first where one
/// ends another (`ms` before `s`, `min` before `m`).
const TIME_UNITS: [(&str, f64); 5] = [
    ("ms", 0.001),
    ("min", 60.0),
    ("s", 1.0),
    ("m", 60.0),
    ("h", 3600.0),
];

/// The factor to seconds of time unit `unit`, in any case (`30S`, `2MIN`:
/// a time's units are unambiguous); `None` for another word.
fn time_unit(unit: &str) -> Option<f64> {
    TIME_UNITS
        .iter()
        .find(|(u, _)| u.eq_ignore_ascii_case(unit))
        .map(|&(_, scale)| scale)
}

/// A time's number and its unit's factor to seconds (`ms`, `s`, `m`,
/// `min`, `h`; none: seconds).
fn split_time_unit(t: &str) -> (&str, f64) {
    for (unit, scale) in TIME_UNITS {
        let cut = t.len().saturating_sub(unit.len());
        if t.is_char_boundary(cut) && t[cut..].eq_ignore_ascii_case(unit) {
            let number = t[..cut].trim_end();
            if is_numeric(number) {
                return (number, scale);
            }
        }
    }
    (t, 1.0)
}

impl TypedValueParser for Float {
    type Value = f64;

    fn parse_ref(
        &self,
        cmd: &Command,
        arg: Option<&Arg>,
        value: &OsStr,
    ) -> Result<f64, clap::Error> {
        self.check(&flag_name(arg), &value.to_string_lossy())
            .map_err(|m| usage_error(cmd, m))
    }
}

/// Checks, before a run, that the plot can be written at `path`: its
/// directory exists and takes a new file (or the file exists and can be
/// written). Leaves nothing behind.
pub fn check_plot_path(path: &Path) -> Result<(), String> {
    let shown = path.display();
    if path.as_os_str().is_empty() {
        return Err("--plot needs a file name, e.g. --plot plot.svg (or give --no-plot)".into());
    }
    if path.is_dir() {
        return Err(format!(
            "--plot {shown} is a directory: give a file in it, e.g. --plot {}",
            path.join("plot.svg").display()
        ));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let fix = "create it, or give --plot a path in another directory (or give --no-plot)";
    match std::fs::metadata(dir) {
        Err(e) if e.kind() == IoErrorKind::NotFound => {
            return Err(format!(
                "--plot {shown}: the directory {} does not exist; {fix}",
                dir.display()
            ))
        }
        Err(e) => {
            return Err(format!(
                "--plot {shown}: cannot reach the directory {}: {e}; {fix}",
                dir.display()
            ))
        }
        Ok(m) if !m.is_dir() => {
            return Err(format!(
                "--plot {shown}: {} is not a directory; give --plot a path in a directory \
                 (or give --no-plot)",
                dir.display()
            ))
        }
        Ok(_) => {}
    }
    let fix = "give --plot a path in a writable directory (or give --no-plot)";
    if path.exists() {
        // Opened without truncating: the old plot stays until the new one;
        // and without blocking: a named pipe that no process reads would
        // block the open for ever (ENXIO instead).
        return OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map(drop)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ENXIO) => format!(
                    "--plot {shown} is a named pipe that no process reads; start its reader \
                     first, or {fix}"
                ),
                _ => format!("--plot {shown}: cannot write the file: {e}; {fix}"),
            });
    }
    // A symbolic link to a file not made yet (or to nowhere): writing the
    // plot follows it, where the probe below, which follows no link, met
    // the link and said "File exists" (refusing a link it could write,
    // and naming the directory for one it could not).
    if let Ok(target) = std::fs::read_link(path) {
        return match OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
        {
            Ok(f) => {
                drop(f);
                // The file the probe made at the end of the links.
                if let Ok(made) = path.canonicalize() {
                    let _ = std::fs::remove_file(made);
                }
                Ok(())
            }
            Err(e) => Err(format!(
                "--plot {shown} is a symbolic link to {}, which cannot be created: {e}; give \
                 --plot another path, or point the link where a file can be made (or give \
                 --no-plot)",
                target.display()
            )),
        };
    }
    match OpenOptions::new().write(true).create_new(true).open(path) {
        Ok(f) => {
            drop(f);
            let _ = std::fs::remove_file(path);
            Ok(())
        }
        Err(e) => Err(format!(
            "--plot {shown}: cannot create the file (in {}): {e}; {fix}",
            dir.display()
        )),
    }
}

/// Writes a drawn plot to `path`. (plotters' file backend drops its
/// buffered writer unflushed, so a plot under 8 KiB that failed to write,
/// to a full disk or `/dev/full`, was reported as written.)
pub fn write_plot(path: &Path, svg: &str) -> Result<(), String> {
    std::fs::write(path, svg).map_err(|e| {
        format!(
            "cannot write the plot {}: {e}; give --plot a writable file, or --no-plot",
            path.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_show_in_their_largest_exact_unit() {
        assert_eq!(show_size(16 << 20), "16M");
        assert_eq!(show_size(64 << 30), "64G");
        assert_eq!(show_size(1), "1 B");
        assert_eq!(show_size(1536), "1536 B");
        assert_eq!(show_size(3 << 40), "3T");
        assert_eq!(show_size_about(23_866_536 << 10), "22.8G");
        assert_eq!(show_size_about(16 << 20), "16M");
        assert_eq!(show_size_about(1536), "1.5K");
        assert_eq!(show_size_about(100), "100 B");
        assert_eq!(show_size_about((23 << 30) - (1 << 20)), "23G");
    }

    #[test]
    fn each_size_flag_names_its_own_meaning() {
        let cases = [
            (BUDGET, "--budget", "the budget must be 16M to 64G"),
            (
                UNAWARE_BUDGET,
                "--unaware-budget",
                "the unaware budget must be 16M to 64G",
            ),
            (
                CGROUP_LIMIT,
                "--cgroup-limit",
                "the cgroup limit must be 16M to 64G",
            ),
            (PAYLOAD, "--payload-max", "the payload must be 1 B to 16M"),
        ];
        for (size, flag, range) in cases {
            let e = size.check(flag, "100G").unwrap_err();
            assert!(e.contains(range) && e.starts_with(flag), "{e}");
            assert!(e.contains("\"100G\" is too large"), "{e}");
        }
        let e = BUDGET.check("--budget", "1M").unwrap_err();
        assert!(
            e.contains("\"1M\" is too small") && e.contains("16M to 64G"),
            "{e}"
        );
        assert!(!e.contains("without a unit"), "{e}");
        // A bare number is bytes: said, with an example, when too small.
        let e = BUDGET.check("--budget", "15").unwrap_err();
        assert!(
            e.contains("without a unit is bytes: 15 B") && e.contains("--budget 256M"),
            "{e}"
        );
        assert_eq!(BUDGET.check("--budget", "1.5G"), Ok(3 << 29));
        assert_eq!(PAYLOAD.check("--payload-min", "1"), Ok(1));
        // A fraction of a byte is refused (`1.5` was taken as 1 byte);
        // with a unit a fraction is exact where it can be.
        for s in ["1.5", "1.5B", " 2.25 ", "0.5", "+1.01b"] {
            let e = PAYLOAD.check("--payload-min", s).unwrap_err();
            assert!(
                e.starts_with("--payload-min") && e.contains("fraction of a byte"),
                "{e}"
            );
        }
        assert_eq!(PAYLOAD.check("--payload-min", "1.5K"), Ok(1536));
        assert_eq!(PAYLOAD.check("--payload-min", "2.0"), Ok(2));
        assert_eq!(PAYLOAD.check("--payload-min", "2.000B"), Ok(2));
    }

    #[test]
    fn integers_say_their_range_for_every_kind_of_bad_value() {
        let readers = Int::<u16>::new(1, 64);
        let range = "--readers must be 1 to 64";
        for (s, problem) in [
            (
                "100000000000000000000",
                "100000000000000000000 is too large",
            ),
            ("65", "65 is too large"),
            ("0", "0 is too small"),
        ] {
            assert_eq!(
                readers.check("--readers", s),
                Err(format!("{range}; {problem}"))
            );
        }
        assert_eq!(
            readers.check("--readers", "-3"),
            Err("--readers must be positive (1 to 64), not -3".into())
        );
        assert_eq!(
            readers.check("--readers", "lots"),
            Err("--readers must be a whole number from 1 to 64, not \"lots\"".into())
        );
        assert_eq!(
            readers.check("--readers", "1.5"),
            Err("--readers must be a whole number from 1 to 64, not \"1.5\"".into())
        );
        assert_eq!(
            readers.check("--readers", "--json"),
            Err(
                "--readers is missing its value (\"--json\" is a flag): give a number from 1 to 64"
                    .into()
            )
        );
        assert_eq!(readers.check("--readers", "64"), Ok(64));
        assert_eq!(readers.check("--readers", "+7"), Ok(7));
        let nodes = Int::<u16>::new(0, 64);
        assert_eq!(
            nodes.check("--nodes", "-1"),
            Err("--nodes must not be negative (0 to 64), not -1".into())
        );
        assert_eq!(nodes.check("--nodes", "0"), Ok(0));
        // -0 is 0: taken where 0 is, refused where it is not.
        assert_eq!(nodes.check("--nodes", "-0"), Ok(0));
        assert_eq!(
            readers.check("--readers", "-0"),
            Err("--readers must be positive (1 to 64), not -0".into())
        );
        let seed = Int::<u64>::new(0, u64::MAX);
        assert_eq!(seed.check("--seed", &u64::MAX.to_string()), Ok(u64::MAX));
        assert!(seed
            .check("--seed", "18446744073709551616")
            .unwrap_err()
            .ends_with("18446744073709551616 is too large"));
    }

    #[test]
    fn seconds_and_rates_say_their_range() {
        assert_eq!(
            SECS.check("--duration", "-1"),
            Err("--duration must be positive (0.2 to 3600 seconds), not -1".into())
        );
        assert_eq!(
            SECS.check("--duration", "-.5"),
            Err("--duration must be positive (0.2 to 3600 seconds), not -.5".into())
        );
        assert_eq!(
            SECS.check("--duration", "0"),
            Err("--duration must be 0.2 to 3600 seconds; 0 is too small".into())
        );
        assert_eq!(
            SECS.check("--duration", "inf"),
            Err("--duration must be 0.2 to 3600 seconds; inf is too large".into())
        );
        assert_eq!(
            SECS.check("--duration", "NaN"),
            Err("--duration must be a number, 0.2 to 3600 seconds (a unit may follow: ms, s, m, min, h), not \"NaN\"".into())
        );
        assert_eq!(
            SECS.check("--duration", "soon"),
            Err("--duration must be a number, 0.2 to 3600 seconds (a unit may follow: ms, s, m, min, h), not \"soon\"".into())
        );
        assert_eq!(
            SECS.check("--duration", "--json"),
            Err(
                "--duration is missing its value (\"--json\" is a flag): give 0.2 to 3600 seconds"
                    .into()
            )
        );
        assert_eq!(SECS.check("--duration", "1.5"), Ok(1.5));
        // With a unit, as the README writes durations.
        assert_eq!(SECS.check("--duration", "1s"), Ok(1.0));
        assert_eq!(SECS.check("--duration", "1.5 s"), Ok(1.5));
        assert_eq!(SECS.check("--duration", "500ms"), Ok(0.5));
        assert_eq!(SECS.check("--duration", "2m"), Ok(120.0));
        assert_eq!(SECS.check("--duration", "2min"), Ok(120.0));
        assert_eq!(TORTURE_SECS.check("--duration", "24h"), Ok(86_400.0));
        // In any case, as sizes are.
        assert_eq!(SECS.check("--duration", "30S"), Ok(30.0));
        assert_eq!(SECS.check("--duration", "500MS"), Ok(0.5));
        assert_eq!(SECS.check("--duration", "2Min"), Ok(120.0));
        assert_eq!(TORTURE_SECS.check("--duration", "1H"), Ok(3600.0));
        // Several parts, largest first.
        assert_eq!(SECS.check("--duration", "1m30s"), Ok(90.0));
        assert_eq!(SECS.check("--duration", "1m 30s"), Ok(90.0));
        assert_eq!(TORTURE_SECS.check("--duration", "1h30m"), Ok(5400.0));
        assert_eq!(SECS.check("--duration", "1s500ms"), Ok(1.5));
        for bad in ["30s1m", "1m1m", "1m30", "1m30x", "m30s", "1m-30s"] {
            assert!(SECS.check("--duration", bad).is_err(), "{bad} was taken");
        }
        // Empty (`--duration=`): missing, not "not a number".
        assert_eq!(
            SECS.check("--duration", ""),
            Err("--duration is missing its value: give 0.2 to 3600 seconds".into())
        );
        assert_eq!(
            SECS.check("--duration", "2h"),
            Err("--duration must be 0.2 to 3600 seconds; 2h is too large".into())
        );
        assert_eq!(
            SECS.check("--duration", "3 parsecs"),
            Err("--duration must be a number, 0.2 to 3600 seconds (a unit may follow: ms, s, m, min, h), not \"3 parsecs\"".into())
        );
        assert_eq!(TORTURE_SECS.check("--duration", "86400"), Ok(86_400.0));
        assert_eq!(
            HZ.check("--pressure-hz", "-2"),
            Err("--pressure-hz must not be negative (0 (off) to 10000 Hz), not -2".into())
        );
        assert_eq!(HZ.check("--pressure-hz", "0"), Ok(0.0));
        // -0 is 0: taken where 0 is, refused where it is not.
        assert_eq!(HZ.check("--pressure-hz", "-0"), Ok(0.0));
        assert_eq!(ZIPF.check("--zipf", "-0.0"), Ok(0.0));
        assert_eq!(
            ZIPF.check("--zipf", "-0.01"),
            Err("--zipf must not be negative (0 (uniform) to 3), not -0.01".into())
        );
        assert_eq!(
            SECS.check("--duration", "-0"),
            Err("--duration must be positive (0.2 to 3600 seconds), not -0".into())
        );
    }

    #[test]
    fn the_plot_path_is_checked_before_a_run() {
        let e = check_plot_path(Path::new("/no/such/dir/x.svg")).unwrap_err();
        assert!(
            e.starts_with("--plot /no/such/dir/x.svg: the directory /no/such/dir does not exist"),
            "{e}"
        );
        let dir = std::env::temp_dir();
        let e = check_plot_path(&dir).unwrap_err();
        assert!(e.contains("is a directory"), "{e}");
        let file = dir.join(format!("rcu-reclaim-args-test-{}", std::process::id()));
        std::fs::write(&file, "x").unwrap();
        let e = check_plot_path(&file.join("x.svg")).unwrap_err();
        assert!(e.contains("is not a directory"), "{e}");
        // An existing file is checked, not truncated.
        assert_eq!(check_plot_path(&file), Ok(()));
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "x");
        std::fs::remove_file(&file).unwrap();
        // A new file is probed and removed.
        assert_eq!(check_plot_path(&file), Ok(()));
        assert!(!file.exists());
        assert!(check_plot_path(Path::new("")).is_err());
        // A link to a file not made yet: probed through the link, and the
        // file it made removed (the link stays).
        let link = dir.join(format!("rcu-reclaim-args-link-{}", std::process::id()));
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert_eq!(check_plot_path(&link), Ok(()));
        assert!(!file.exists());
        assert!(link.symlink_metadata().is_ok());
        std::fs::remove_file(&link).unwrap();
    }
}
