//! The examples' command-line arguments: a bad one (not a number, out of
//! range, an unknown word, one too many) is refused with a message that
//! names it and what is accepted, and the example exits with status 2,
//! rather than running with its default in its place (`churn_garbage
//! 1,5` ran for 3 s) or panicking with a backtrace (`churn_garbage -1`,
//! a negative duration).
#![allow(dead_code)] // each example uses some of these

use std::fmt::Display;
use std::ops::RangeInclusive;
use std::str::FromStr;

/// One example's arguments (after its name), and its usage line.
pub struct Args {
    prog: &'static str,
    usage: &'static str,
    args: Vec<String>,
}

impl Args {
    /// This process's arguments; `usage` lists them, for the message.
    pub fn from_env(prog: &'static str, usage: &'static str) -> Args {
        Args::from(prog, usage, std::env::args().skip(1).collect())
    }

    pub fn from(prog: &'static str, usage: &'static str, args: Vec<String>) -> Args {
        Args { prog, usage, args }
    }

    /// The `i`th argument (from 0), if given.
    pub fn get(&self, i: usize) -> Option<&str> {
        self.args.get(i).map(String::as_str)
    }

    /// The `i`th argument, `name`, as a number in `range` (`default` if
    /// not given).
    pub fn number<T>(&self, i: usize, name: &str, range: RangeInclusive<T>, default: T) -> T
    where
        T: FromStr + PartialOrd + Display,
    {
        self.parsed(i, name, &range, default)
            .unwrap_or_else(|e| self.fail(&e))
    }

    /// As [`number`](Args::number), in the result (for tests).
    pub fn parsed<T>(
        &self,
        i: usize,
        name: &str,
        range: &RangeInclusive<T>,
        default: T,
    ) -> Result<T, String>
    where
        T: FromStr + PartialOrd + Display,
    {
        let Some(s) = self.get(i) else {
            return Ok(default);
        };
        match s.trim().parse::<T>() {
            Ok(n) if range.contains(&n) => Ok(n),
            _ => Err(format!(
                "{name} must be a number from {} to {}, not {s:?}",
                range.start(),
                range.end()
            )),
        }
    }

    /// The `i`th argument, `name`, one of `words` (`default` if not given).
    pub fn word(
        &self,
        i: usize,
        name: &str,
        words: &[&'static str],
        default: &'static str,
    ) -> &'static str {
        let Some(s) = self.get(i) else {
            return default;
        };
        words.iter().copied().find(|w| *w == s).unwrap_or_else(|| {
            self.fail(&format!(
                "{name} must be one of {}, not {s:?}",
                words.join(", ")
            ))
        })
    }

    /// Refuses arguments past the first `n`.
    pub fn at_most(&self, n: usize) {
        if let Some(extra) = self.args.get(n) {
            self.fail(&format!("unexpected argument {extra:?}"));
        }
    }

    /// Says what is wrong and how the example is used, and exits (2).
    pub fn fail(&self, msg: &str) -> ! {
        eprintln!("{}: {msg}\nusage: {} {}", self.prog, self.prog, self.usage);
        std::process::exit(2)
    }
}

/// A number of seconds an example runs for: finite, above 0, at most an
/// hour (`Duration::from_secs_f64` panicked on a negative or NaN one).
pub const SECS: RangeInclusive<f64> = 0.001..=3600.0;

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Args {
        Args::from("t", "", v.iter().map(|s| s.to_string()).collect())
    }

    /// Malformed or out-of-range numbers are refused, naming the
    /// argument and the range; a missing one is the default.
    #[test]
    fn bad_numbers_are_refused_not_defaulted() {
        for bad in ["1,5", "x", "", "-1", "nan", "inf", "1e9", "0"] {
            let e = args(&[bad]).parsed(0, "SECS", &SECS, 3.0).unwrap_err();
            assert!(e.contains("SECS") && e.contains("3600"), "{e}");
        }
        for bad in ["-1", "1.5", "3x", "300"] {
            assert!(args(&[bad])
                .parsed(0, "ROUNDS", &(1..=100usize), 3)
                .is_err());
        }
        assert_eq!(args(&["0.5"]).parsed(0, "SECS", &SECS, 3.0), Ok(0.5));
        assert_eq!(args(&[]).parsed(0, "SECS", &SECS, 3.0), Ok(3.0));
        assert_eq!(args(&["7"]).parsed(0, "ROUNDS", &(1..=100usize), 3), Ok(7));
    }
}
