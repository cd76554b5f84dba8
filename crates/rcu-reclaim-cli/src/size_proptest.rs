//! Property tests for `parse_size`: a decimal number (digits, optionally
//! with a fraction such as `1.5` or `.5`, and an optional leading '+'),
//! then optionally whitespace and a unit: B (bytes), or K, M, G or T alone
//! or followed by B or iB, in any case (all powers of 1024), with
//! surrounding whitespace ignored. The value is rounded down to a whole
//! byte; 0 bytes and overflow are errors, and every error message quotes
//! the input.

use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::TestCaseError;

use crate::args::{parse_size, SizeError, ANY_SIZE, BUDGET};

/// The accepted unit spellings (the tests vary their case) and their powers
/// of two.
const UNITS: &[(&str, u32)] = &[
    ("", 0),
    ("B", 0),
    ("K", 10),
    ("KB", 10),
    ("KiB", 10),
    ("M", 20),
    ("MB", 20),
    ("MiB", 20),
    ("G", 30),
    ("GB", 30),
    ("GiB", 30),
    ("T", 40),
    ("TB", 40),
    ("TiB", 40),
];

/// `unit` with the case of its i-th letter flipped where bit i of `mask` is
/// set.
fn recase(unit: &str, mask: u8) -> String {
    unit.chars()
        .enumerate()
        .map(|(i, c)| {
            if mask >> i & 1 == 1 {
                if c.is_ascii_uppercase() {
                    c.to_ascii_lowercase()
                } else {
                    c.to_ascii_uppercase()
                }
            } else {
                c
            }
        })
        .collect()
}

/// Checks that `s` is rejected, and that the message a flag gives for it is
/// non-empty and quotes it.
fn check_rejected(s: &str) -> Result<(), TestCaseError> {
    if let Ok(v) = parse_size(s) {
        return Err(TestCaseError::fail(format!("{s:?} accepted as {v}")));
    }
    match ANY_SIZE.check("--size", s) {
        Ok(v) => Err(TestCaseError::fail(format!(
            "{s:?} accepted by a flag as {v}"
        ))),
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

/// What `parse_size` should return for `s`, computed independently of it:
/// after trimming, an optional '+', digits with at most one '.', optional
/// whitespace and one of the [`UNITS`] in any case; a number of bytes
/// (no unit, or B) must be whole; the value rounded down must be non-zero
/// and fit a usize.
fn expected(s: &str) -> Option<usize> {
    let t = s.trim();
    let number = t.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = t[number.len()..].to_ascii_lowercase();
    let shift = UNITS
        .iter()
        .find(|(u, _)| u.to_ascii_lowercase() == unit)?
        .1;
    let number = number.trim_end();
    let number = number.strip_prefix('+').unwrap_or(number);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    if !whole
        .chars()
        .chain(fraction.chars())
        .all(|c| c.is_ascii_digit())
    {
        return None;
    }
    if shift == 0 && fraction.bytes().any(|b| b != b'0') {
        return None;
    }
    let mut w: u128 = 0;
    for b in whole.bytes() {
        w = w.checked_mul(10)?.checked_add(u128::from(b - b'0'))?;
    }
    let w = w.checked_mul(1 << shift)?;
    // floor(0.f * 2^shift) depends on the first `shift` digits of f alone:
    // with f' those digits, 0.f' * 2^shift = f' / 5^shift is a multiple of
    // 5^-shift, and the digits after them add less than 10^-shift * 2^shift
    // = 5^-shift. So: long division of f' (padded to `shift` digits) by
    // 5^shift.
    let divisor = 5u128.pow(shift);
    let (mut q, mut r) = (0u128, 0u128);
    let digits = fraction.bytes().map(|b| u128::from(b - b'0'));
    for d in digits.chain(std::iter::repeat(0)).take(shift as usize) {
        r = r * 10 + d;
        q = q * 10 + r / divisor;
        r %= divisor;
    }
    usize::try_from(w.checked_add(q)?).ok().filter(|&v| v > 0)
}

#[test]
fn examples_of_the_documented_forms() {
    let cases: &[(&str, usize)] = &[
        ("1.5G", 3 << 29),
        ("1.5 GiB", 3 << 29),
        ("1.5gb", 3 << 29),
        ("  +.5K ", 512),
        ("2.5k", 2560),
        ("1tb", 1 << 40),
        ("512B", 512),
        ("2.0", 2),
        ("3.00B", 3),
        ("256M", 256 << 20),
        ("256 mib", 256 << 20),
        // 2^-30 GiB, written out exactly: one byte.
        ("0.000000000931322574615478515625G", 1),
        ("0.000000000931322574615478515624G", 0),
    ];
    for &(s, v) in cases {
        let want = if v == 0 { Err(SizeError::Zero) } else { Ok(v) };
        assert_eq!(parse_size(s), want, "{s:?}");
        assert_eq!(expected(s), (v > 0).then_some(v), "{s:?}");
    }
    for (s, e) in [
        ("12Q", SizeError::UnknownUnit),
        ("1PiB", SizeError::UnknownUnit),
        ("1e3", SizeError::NotASize),
        ("1.5e", SizeError::UnknownUnit),
        ("abc", SizeError::NotASize),
        ("1.5.5G", SizeError::NotASize),
        ("1 . 5G", SizeError::NotASize),
        ("-5M", SizeError::Negative),
        ("-.5", SizeError::Negative),
        ("--json", SizeError::Flag),
        ("0", SizeError::Zero),
        ("0.5", SizeError::Fraction),
        ("1.9", SizeError::Fraction),
        ("1.5b", SizeError::Fraction),
        ("16777216T", SizeError::Overflow),
        ("99999999999999999999G", SizeError::Overflow),
    ] {
        assert_eq!(parse_size(s), Err(e), "{s:?}");
        assert_eq!(expected(s), None, "{s:?}");
    }
    // (2^24 - 1) TiB plus floor(0.999999999999 * 2^40) = 2^40 - 2 bytes.
    assert_eq!(parse_size("16777215.999999999999T"), Ok(usize::MAX - 1));
}

proptest! {
    // Proves n with each accepted unit spelling, in any case, with or without a space before it and surrounding whitespace, parses to n times the unit.
    #[test]
    fn size_with_each_unit_round_trips(
        n in 1usize..=1 << 20,
        (unit, shift) in select(UNITS),
        mask in any::<u8>(),
        sep in select(&["", " ", "\t"][..]),
        pad in "[ \t\n]{0,2}",
    ) {
        let sep = if unit.is_empty() { "" } else { sep };
        let s = format!("{pad}{n}{sep}{}{pad}", recase(unit, mask));
        prop_assert_eq!(parse_size(&s), Ok(n << shift), "{:?}", s);
    }

    // Proves for any usize n and unit the result is n * unit when that fits and is non-zero, else an Err.
    #[test]
    fn size_is_exact_or_an_error_for_any_count(
        n in prop_oneof![
            any::<usize>(),
            Just(0usize),
            1usize..1 << 24,
            (usize::MAX >> 40)..=(usize::MAX >> 10) + 1,
        ],
        (unit, shift) in select(UNITS),
    ) {
        let s = format!("{n}{unit}");
        let v = (n as u128) << shift;
        match usize::try_from(v).ok().filter(|&v| v > 0) {
            Some(v) => prop_assert_eq!(parse_size(&s), Ok(v)),
            None => check_rejected(&s)?,
        }
    }

    // Proves a decimal n.f with any unit is floor(n.f * unit), computed here with integers, or an Err when that is 0 or a fraction of a byte (no unit).
    #[test]
    fn size_with_a_fraction_rounds_down_to_a_byte(
        n in 0u64..1 << 20,
        f in "[0-9]{1,12}",
        (unit, shift) in select(UNITS),
        sep in select(&["", " "][..]),
    ) {
        let s = format!("{n}.{f}{sep}{unit}");
        let scale = 10u128.pow(f.len() as u32);
        let exact = (u128::from(n) * scale + f.parse::<u128>().unwrap()) << shift;
        let v = (exact / scale) as usize;
        if v == 0 || shift == 0 && exact % scale != 0 {
            check_rejected(&s)?;
        } else {
            prop_assert_eq!(parse_size(&s), Ok(v), "{:?}", s);
        }
    }

    // Proves rounding is exact where it is closest: m / 2^k of a unit of 2^k bytes, written out in full, is m bytes, and one in its last digit less is m - 1 (an Err for m = 1).
    #[test]
    fn size_rounds_down_exactly_at_whole_bytes(
        m in 1u128..10_000,
        (unit, shift) in select(&UNITS[2..]),
    ) {
        // m / 2^k = m * 5^k / 10^k.
        let digits = (m * 5u128.pow(shift)).to_string();
        let k = shift as usize;
        let digits = format!("{digits:0>width$}", width = k + 1);
        let (whole, fraction) = digits.split_at(digits.len() - k);
        let s = format!("{whole}.{fraction}{unit}");
        prop_assert_eq!(parse_size(&s), Ok(m as usize), "{:?}", s);
        let below = (m * 5u128.pow(shift) - 1).to_string();
        let below = format!("{below:0>width$}", width = k + 1);
        let (whole, fraction) = below.split_at(below.len() - k);
        let s = format!("{whole}.{fraction}{unit}");
        if m == 1 {
            check_rejected(&s)?;
        } else {
            prop_assert_eq!(parse_size(&s), Ok(m as usize - 1), "{:?}", s);
        }
    }

    // Proves a count that itself overflows usize (with or without unit, with or without a fraction) is an Err that says so, not a panic or wrap.
    #[test]
    fn size_overflowing_count_is_an_error(
        digits in "[1-9][0-9]{20,40}",
        fraction in select(&["", ".5", ".999"][..]),
        (unit, _) in select(UNITS),
    ) {
        let s = format!("{digits}{fraction}{unit}");
        check_rejected(&s)?;
        prop_assert_eq!(parse_size(&s), Err(SizeError::Overflow));
        let msg = BUDGET.check("--budget", &s).unwrap_err();
        prop_assert!(msg.contains("overflows: the largest budget is 64G"), "{}", msg);
    }

    // Proves near-miss forms (unknown or doubled units, signs, exponents, hex, separators, misplaced or repeated dots and spaces) are Errs quoting the input.
    #[test]
    fn size_near_misses_are_errors(
        n in 0usize..100_000,
        form in select(&[
            "{n}KK", "{n}Ki", "{n}KiBB", "{n}kibi", "{n}iB", "{n}P", "{n}PiB", "{n}EB",
            "{n}Kb s", "{n}K B", "{n}K iB", "{n}..5G", "{n}.5.5G", "{n},5G", "{n}. 5G",
            "{n} .5G", "-{n}.5K", "-{n}K", "-{n}", "0x{n}", "{n}_000", "{n}e3", "K{n}",
            "{n}\u{41a}", "{n}\u{ff2b}", "{n}k{n}", "{n}-K", "++{n}", "+-{n}", "{n}K+",
            "", " ", ".", "K", "+", "+K", "B", "--{n}", "-", ".G",
        ][..]),
    ) {
        check_rejected(&form.replace("{n}", &n.to_string()))?;
    }

    // Proves arbitrary text never panics, gets exactly the value of the documented form, and is otherwise an Err quoting it.
    #[test]
    fn size_arbitrary_text_never_panics(
        s in prop_oneof![any::<String>(), "[ +0-9KkMmGgTtBbIi.\t-]{0,14}"],
    ) {
        match parse_size(&s) {
            Ok(v) => {
                prop_assert_eq!(Some(v), expected(&s), "{:?} accepted", s);
                prop_assert_eq!(ANY_SIZE.check("--size", &s), Ok(v));
            }
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

    // Proves the budget flag takes exactly the sizes from 16M to 64G, and otherwise says its range (or that the value overflows, naming the largest budget).
    #[test]
    fn budget_is_a_size_from_16m_to_64g(
        n in 0u64..200_000,
        fraction in select(&["", ".5", ".25"][..]),
        (unit, _) in select(&UNITS[..9]),
    ) {
        let s = format!("{n}{fraction}{unit}");
        match (expected(&s), BUDGET.check("--budget", &s)) {
            (Some(v), Ok(got)) => {
                prop_assert_eq!(got, v);
                prop_assert!((16 << 20..=64 << 30).contains(&v), "{} accepted", v);
            }
            (v, Err(msg)) => {
                prop_assert!(!v.is_some_and(|v| (16 << 20..=64 << 30).contains(&v)), "{:?}", msg);
                prop_assert!(msg.starts_with("--budget "), "{}", msg);
                prop_assert!(msg.contains("the budget must be 16M to 64G"), "{}", msg);
            }
            (None, Ok(got)) => prop_assert!(false, "{:?} accepted as {}", s, got),
        }
    }
}
