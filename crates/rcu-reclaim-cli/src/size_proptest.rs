//! Property tests for `parse_size`: a decimal count of bytes, optionally
//! followed by one unit letter K, M or G (either case, powers of 1024), with
//! surrounding whitespace ignored. Zero and overflow are errors; every error
//! message quotes the input.

use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::TestCaseError;

use crate::parse_size;

/// The accepted unit suffixes and their multipliers.
const UNITS: &[(&str, usize)] = &[
    ("", 1),
    ("K", 1 << 10),
    ("k", 1 << 10),
    ("M", 1 << 20),
    ("m", 1 << 20),
    ("G", 1 << 30),
    ("g", 1 << 30),
];

/// Checks that `s` is rejected with a non-empty message that quotes it.
fn check_rejected(s: &str) -> Result<(), TestCaseError> {
    match parse_size(s) {
        Ok(v) => Err(TestCaseError::fail(format!("{s:?} accepted as {v}"))),
        Err(msg) => {
            prop_assert!(!msg.trim().is_empty(), "empty error for {s:?}");
            prop_assert!(
                msg.contains(&format!("{s:?}")),
                "{msg:?} does not quote {s:?}"
            );
            Ok(())
        }
    }
}

/// What `parse_size` should return for `s`, computed independently: an
/// optional '+', digits and at most one K/M/G letter, after trimming, whose
/// value is non-zero and fits a usize.
fn expected(s: &str) -> Option<usize> {
    let t = s.trim();
    let (t, mult) = match t.as_bytes().last()?.to_ascii_uppercase() {
        b'K' => (&t[..t.len() - 1], 1u128 << 10),
        b'M' => (&t[..t.len() - 1], 1 << 20),
        b'G' => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    let digits = t.strip_prefix('+').unwrap_or(t);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let v = digits.parse::<u128>().ok()?.checked_mul(mult)?;
    usize::try_from(v).ok().filter(|&v| v > 0)
}

proptest! {
    // Proves n with each accepted suffix (and surrounding whitespace) parses to n times the multiplier.
    #[test]
    fn size_with_each_suffix_round_trips(
        n in 1usize..=1 << 20,
        (unit, mult) in select(UNITS),
        pad in "[ \t\n]{0,2}",
    ) {
        prop_assert_eq!(parse_size(&format!("{pad}{n}{unit}{pad}")), Ok(n * mult));
    }

    // Proves for any usize n and suffix the result is n*multiplier when it fits and is non-zero, else an Err.
    #[test]
    fn size_is_exact_or_an_error_for_any_count(
        n in prop_oneof![
            any::<usize>(),
            Just(0usize),
            1usize..1 << 24,
            (usize::MAX >> 30)..=(usize::MAX >> 10) + 1,
        ],
        (unit, mult) in select(UNITS),
    ) {
        let s = format!("{n}{unit}");
        match n.checked_mul(mult).filter(|&v| v > 0) {
            Some(v) => prop_assert_eq!(parse_size(&s), Ok(v)),
            None => check_rejected(&s)?,
        }
    }

    // Proves a count that itself overflows usize (with or without suffix) is an Err, not a panic or wrap.
    #[test]
    fn size_overflowing_count_is_an_error(
        digits in "[1-9][0-9]{20,40}",
        (unit, _) in select(UNITS),
    ) {
        check_rejected(&format!("{digits}{unit}"))?;
    }

    // Proves near-miss forms (IEC/SI suffixes, decimals, signs, inner spaces, double or unknown units) are Errs quoting the input.
    #[test]
    fn size_near_misses_are_errors(
        n in 0usize..100_000,
        form in select(&[
            "{n}KiB", "{n}MiB", "{n}GiB", "{n}KB", "{n}mb", "{n}T", "{n}B", "{n}b", "{n}KK",
            "{n} K", "{n}.5G", "-{n}K", "-{n}", "0x{n}", "{n}_000", "{n}e3", "K{n}", "{n}K ",
            "{n}\u{41a}", "{n}\u{ff2b}", "", " ", "K", "+", "+K", "--{n}", "{n}k{n}",
        ][..]),
    ) {
        let s = form.replace("{n}", &n.to_string());
        // "{n}K " is valid (trailing space is trimmed) unless n is zero.
        prop_assume!(form != "{n}K " || n == 0);
        check_rejected(&s)?;
    }

    // Proves arbitrary text never panics, gets exactly the value of the documented form, and is otherwise an Err quoting it.
    #[test]
    fn size_arbitrary_text_never_panics(
        s in prop_oneof![any::<String>(), "[ +0-9KkMmGgBiT.\t-]{0,12}"],
    ) {
        match parse_size(&s) {
            Ok(v) => prop_assert_eq!(Some(v), expected(&s), "{:?} accepted", s),
            Err(_) => {
                prop_assert_eq!(expected(&s), None, "{:?} rejected", s);
                check_rejected(&s)?;
            }
        }
    }

    // Proves arbitrary bytes decoded lossily never panic, parse as the documented form would, and errors quote the input.
    #[test]
    fn size_arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..32)) {
        let s = String::from_utf8_lossy(&b).into_owned();
        prop_assert_eq!(parse_size(&s).ok(), expected(&s), "{:?}", s);
        if parse_size(&s).is_err() {
            check_rejected(&s)?;
        }
    }
}
