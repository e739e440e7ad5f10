//! Kubernetes `resource.Quantity` reading and writing, limited to what the controllers need:
//! `MilliValue()` of any quantity string and the canonical DecimalSI form of a milli value
//! (`spec/kubernetes.md` §1.8).
//!
//! The HPA works exclusively in int64 milli-units (§3.3). Metric values come from adapters we
//! do not control, so parsing must never panic: garbage is an error, and magnitudes beyond
//! i64 saturate instead of overflowing (the newest upstream behaviour).

use thiserror::Error;

/// Why a quantity string could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum QuantityError {
    /// The string is empty (after trimming).
    #[error("quantity is empty")]
    Empty,
    /// The numeric part is malformed.
    #[error("quantity {0:?} has no valid number")]
    Number(String),
    /// The suffix is none of the binary SI, decimal SI or exponent forms.
    #[error("quantity {0:?} has an unknown suffix")]
    Suffix(String),
}

/// Significant digits kept while parsing; later digits cannot change a milli value that fits
/// in i64 except through rounding, which [`milli_value`] handles with a sticky flag.
const MAX_DIGITS: usize = 36;

/// A parsed quantity: `sign × digits × 10^exp10 × 2^exp2`.
struct Parsed {
    negative: bool,
    digits: i128,
    exp10: i32,
    exp2: u32,
    /// Non-zero digits were dropped beyond [`MAX_DIGITS`].
    inexact: bool,
}

/// `MilliValue()` of a quantity string: `ceil(v × 1000)`, saturating at the i64 bounds.
pub fn milli_value(input: &str) -> Result<i64, QuantityError> {
    let p = parse(input)?;
    Ok(to_milli(&p))
}

/// `MilliValue()` of a JSON quantity: a string or a bare number (§1.8 decoder rules).
pub fn milli_value_json(value: &serde_json::Value) -> Result<i64, QuantityError> {
    match value {
        serde_json::Value::String(s) => milli_value(s),
        serde_json::Value::Number(n) => milli_value(&n.to_string()),
        other => Err(QuantityError::Number(other.to_string())),
    }
}

fn parse(input: &str) -> Result<Parsed, QuantityError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(QuantityError::Empty);
    }
    let (negative, rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let number_len = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(number_len);
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    if (int_part.is_empty() && frac_part.is_empty()) || frac_part.contains('.') {
        return Err(QuantityError::Number(input.to_owned()));
    }
    let (exp10_suffix, exp2) =
        suffix_exponents(suffix).ok_or_else(|| QuantityError::Suffix(input.to_owned()))?;
    let mut digits: i128 = 0;
    let mut count = 0usize;
    let mut exp10: i32 = 0;
    let mut inexact = false;
    for (i, c) in int_part.chars().chain(frac_part.chars()).enumerate() {
        let d = i128::from(c as u8 - b'0');
        let in_fraction = i >= int_part.len();
        if count < MAX_DIGITS {
            if digits != 0 || d != 0 {
                count += 1;
            }
            digits = digits * 10 + d;
            if in_fraction {
                exp10 -= 1;
            }
        } else if in_fraction {
            inexact |= d != 0;
        } else {
            // An integer part longer than MAX_DIGITS: keep the magnitude, drop the digit.
            exp10 = exp10.saturating_add(1);
            inexact |= d != 0;
        }
    }
    Ok(Parsed {
        negative,
        digits,
        exp10: exp10.saturating_add(exp10_suffix),
        exp2,
        inexact,
    })
}

/// Decimal and binary exponents for a suffix, `None` if the suffix is invalid.
fn suffix_exponents(suffix: &str) -> Option<(i32, u32)> {
    let decimal = match suffix {
        "n" => Some(-9),
        "u" => Some(-6),
        "m" => Some(-3),
        "" => Some(0),
        "k" => Some(3),
        "M" => Some(6),
        "G" => Some(9),
        "T" => Some(12),
        "P" => Some(15),
        "E" => Some(18),
        _ => None,
    };
    if let Some(e) = decimal {
        return Some((e, 0));
    }
    let binary = match suffix {
        "Ki" => Some(10),
        "Mi" => Some(20),
        "Gi" => Some(30),
        "Ti" => Some(40),
        "Pi" => Some(50),
        "Ei" => Some(60),
        _ => None,
    };
    if let Some(b) = binary {
        return Some((0, b));
    }
    let exponent = suffix.strip_prefix(['e', 'E'])?;
    let valid = !exponent.is_empty()
        && exponent
            .trim_start_matches(['+', '-'])
            .chars()
            .all(|c| c.is_ascii_digit())
        && exponent.len() - exponent.trim_start_matches(['+', '-']).len() <= 1;
    if !valid {
        return None;
    }
    // Absurd exponents saturate; the value then saturates or rounds to the smallest unit.
    Some((
        exponent
            .parse::<i32>()
            .unwrap_or(if exponent.starts_with('-') {
                -10_000
            } else {
                10_000
            }),
        0,
    ))
}

fn to_milli(p: &Parsed) -> i64 {
    if p.digits == 0 && !p.inexact {
        return 0;
    }
    let saturated = if p.negative { i64::MIN } else { i64::MAX };
    let Some(mut magnitude) = p.digits.checked_mul(1i128 << p.exp2.min(100)) else {
        return saturated;
    };
    let exp = p.exp10.saturating_add(3);
    let mut remainder = p.inexact;
    if exp >= 0 {
        for _ in 0..exp {
            match magnitude.checked_mul(10) {
                Some(m) if m <= i128::from(i64::MAX) + 1 => magnitude = m,
                _ => return saturated,
            }
        }
    } else {
        for _ in 0..exp.unsigned_abs().min(60) {
            remainder |= magnitude % 10 != 0;
            magnitude /= 10;
        }
        if exp.unsigned_abs() > 60 {
            remainder |= magnitude != 0;
            magnitude = 0;
        }
    }
    // MilliValue rounds towards +inf: up for positive values, truncation for negative ones.
    let signed = if p.negative {
        -magnitude
    } else {
        magnitude + i128::from(remainder)
    };
    i64::try_from(signed).unwrap_or(saturated)
}

/// Canonical DecimalSI text of a milli value, as `NewMilliQuantity(v, DecimalSI).String()`.
pub fn format_milli(milli: i64) -> String {
    if milli == 0 {
        return "0".to_owned();
    }
    let negative = milli < 0;
    let mut mantissa = i128::from(milli).unsigned_abs();
    let mut exp: i32 = -3;
    while mantissa % 10 == 0 {
        mantissa /= 10;
        exp += 1;
    }
    // Go's truncated remainder: bring the exponent down to a multiple of three.
    match exp % 3 {
        1 | -2 => {
            mantissa *= 10;
            exp -= 1;
        }
        2 | -1 => {
            mantissa *= 100;
            exp -= 2;
        }
        _ => {}
    }
    let suffix = match exp {
        -3 => "m",
        0 => "",
        3 => "k",
        6 => "M",
        9 => "G",
        12 => "T",
        15 => "P",
        _ => "E",
    };
    let sign = if negative { "-" } else { "" };
    format!("{sign}{mantissa}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case::plain_integer("35", 35_000)]
    #[case::decimal_fraction("1.5", 1_500)]
    #[case::milli_suffix("1500m", 1_500)]
    #[case::nano_rounds_up("1n", 1)]
    #[case::negative_rounds_towards_inf("-1.5m", -1)]
    #[case::kilo("12k", 12_000_000)]
    #[case::binary("2Ki", 2_048_000)]
    #[case::binary_fraction("1.5Ki", 1_536_000)]
    #[case::exponent("1e3", 1_000_000)]
    #[case::signed_exponent("1.5e+06", 1_500_000_000)]
    #[case::negative_exponent("1E-3", 1)]
    #[case::leading_dot(".5", 500)]
    #[case::trailing_dot("5.", 5_000)]
    #[case::plus_sign("+2", 2_000)]
    #[case::zero_with_suffix("0Ki", 0)]
    #[case::whitespace(" 7 ", 7_000)]
    #[case::saturates_high("99999999999999999999999E", i64::MAX)]
    #[case::saturates_low("-99999999999999999999999E", i64::MIN)]
    #[case::huge_exponent("1e999999999999", i64::MAX)]
    #[case::tiny_exponent("1e-999999", 1)]
    #[case::long_fraction("0.0000000000000000000000000000000000000000001", 1)]
    fn quantity_milli_value_parses(#[case] input: &str, #[case] milli: i64) {
        assert_eq!(milli_value(input), Ok(milli));
    }

    #[rstest]
    #[case::empty("")]
    #[case::only_sign("-")]
    #[case::only_dot(".")]
    #[case::two_dots("1.2.3")]
    #[case::micro_sign("5µ")]
    #[case::unknown_suffix("5q")]
    #[case::nan("NaN")]
    #[case::infinity("Inf")]
    #[case::bare_exponent("1e")]
    #[case::double_sign_exponent("1e+-3")]
    #[case::words("lots")]
    fn quantity_garbage_is_an_error(#[case] input: &str) {
        assert!(milli_value(input).is_err(), "{input:?} should not parse");
    }

    #[rstest]
    #[case::zero(0, "0")]
    #[case::milli(1_500, "1500m")]
    #[case::whole(2_000, "2")]
    #[case::thousand(1_000_000, "1k")]
    #[case::not_round(1_500_000, "1500")]
    #[case::twelve_k(12_000_000, "12k")]
    #[case::hundred_milli(100, "100m")]
    #[case::negative(-1_500, "-1500m")]
    #[case::max(i64::MAX, "9223372036854775807m")]
    #[case::min(i64::MIN, "-9223372036854775808m")]
    fn quantity_formats_canonically(#[case] milli: i64, #[case] text: &str) {
        assert_eq!(format_milli(milli), text);
    }

    proptest::proptest! {
        #[test]
        fn quantity_parsing_never_panics_and_canonical_text_round_trips(input in "\\PC{0,24}", milli in proptest::num::i64::ANY) {
            let _ = milli_value(&input);
            proptest::prop_assert_eq!(milli_value(&format_milli(milli)), Ok(milli));
        }
    }

    #[test]
    fn quantity_json_accepts_numbers_and_strings() {
        assert_eq!(milli_value_json(&serde_json::json!(0.5)), Ok(500));
        assert_eq!(milli_value_json(&serde_json::json!("30")), Ok(30_000));
        assert!(milli_value_json(&serde_json::json!(null)).is_err());
    }
}
