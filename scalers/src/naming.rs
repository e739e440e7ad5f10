//! External metric names (spec/scalers.md §1.4), Go-compatible URL escaping, activation, and
//! Kubernetes Quantity formatting of metric values and targets (spec/kubernetes.md §1.8).
//!
//! Values are formatted the way KEDA does: the float is rounded to 3 decimals (milli precision)
//! and the result is emitted as a canonical DecimalSI quantity (`1.5` → `1500m`, `2000` → `2k`).
//! NaN, ±Inf and negative values become `0`. The decimal text of the float is canonicalised as a
//! digit string, so huge values never overflow an integer.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// The external metric name `s<index>-<normalised detail>`.
pub fn metric_name(trigger_index: usize, detail: &str) -> String {
    format!("s{trigger_index}-{}", normalize(detail))
}

/// KEDA's normalisation: each of `/ . : % ( )` becomes `-`; nothing else changes.
pub fn normalize(detail: &str) -> String {
    detail.replace(['/', '.', ':', '%', '(', ')'], "-")
}

/// The detail part of `metric_name` when it carries the prefix `s<index>-`, else `None`.
pub fn strip_prefix(trigger_index: usize, metric_name: &str) -> Option<&str> {
    let (prefix, rest) = metric_name.split_once('-')?;
    (prefix.strip_prefix('s')? == trigger_index.to_string()).then_some(rest)
}

/// What Go's `url.QueryEscape` leaves alone: ASCII alphanumerics and `-_.~`.
const QUERY_ESCAPE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Go `url.QueryEscape`: space → `+`, everything but `[A-Za-z0-9-_.~]` percent-encoded.
pub fn query_escape(s: &str) -> String {
    // Encode spaces as %20 first, then swap: a literal '+' is itself encoded as %2B.
    utf8_percent_encode(s, QUERY_ESCAPE)
        .to_string()
        .replace("%20", "+")
}

/// KEDA's activation rule: strictly greater than the threshold, on the raw value.
pub fn is_active(value: f64, activation_threshold: f64) -> bool {
    value > activation_threshold
}

/// A reported metric value or a "milli target": rounded to milli precision, canonical
/// DecimalSI; NaN, ±Inf and negatives are `0`.
///
/// ```
/// use tidescale_scalers::naming::milli_quantity;
/// assert_eq!(milli_quantity(1.5), "1500m");
/// assert_eq!(milli_quantity(2.0), "2");
/// assert_eq!(milli_quantity(f64::NAN), "0");
/// ```
pub fn milli_quantity(value: f64) -> String {
    if !value.is_finite() || value <= 0.0 {
        return "0".to_owned();
    }
    if let Some(millis) = whole_millis(value) {
        return canonical_decimal(&millis.to_string(), -3);
    }
    // Rust prints the exact decimal expansion rounded to 3 places, as Go's FormatFloat does.
    let text = format!("{value:.3}");
    let digits: String = text.chars().filter(char::is_ascii_digit).collect();
    canonical_decimal(&digits, -3)
}

/// `value` in thousandths when it is the double nearest a whole number of them (queue lengths,
/// halves, most targets): its exact expansion then rounds to that number at 3 places, and
/// the integer is printed without the exact (Dragon4) float formatting that `{:.3}` needs —
/// on the path of every metrics read.
///
/// Below 10¹² half an ulp is under 10⁻⁴, far inside the ±5·10⁻⁴ that rounding to 3 places
/// allows, so the shortcut can never disagree with the exact expansion; above, or for any
/// other value, `None`.
fn whole_millis(value: f64) -> Option<u64> {
    const LIMIT: f64 = 1e12;
    if !(0.0..LIMIT).contains(&value) {
        return None;
    }
    let millis = (value * 1000.0).round();
    // The cast is exact: 0 ≤ millis ≤ 10¹⁵ < 2⁵³.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let whole = millis as u64;
    #[allow(clippy::cast_precision_loss)]
    let nearest = whole as f64 / 1000.0;
    (nearest == value).then_some(whole)
}

/// An "integer target" (Kafka lag, Service Bus count…) as a canonical DecimalSI quantity.
pub fn int_quantity(value: i64) -> String {
    let digits = value.unsigned_abs().to_string();
    let text = canonical_decimal(&digits, 0);
    if value < 0 { format!("-{text}") } else { text }
}

/// The quantity for a [`crate::MetricSpec`] target, honouring `target_is_integer`.
pub fn target_quantity(spec: &crate::MetricSpec) -> String {
    if spec.target_is_integer && spec.target.is_finite() {
        // Saturating float → int cast is the intended clamp for absurd targets.
        int_quantity(spec.target.round() as i64)
    } else {
        milli_quantity(spec.target)
    }
}

/// Canonical DecimalSI text of the non-negative value `digits × 10^exponent` (rule 2 of
/// spec/kubernetes.md §1.8): strip trailing zeros, align the exponent to a multiple of 3.
fn canonical_decimal(digits: &str, exponent: i32) -> String {
    let digits = digits.trim_start_matches('0');
    if digits.is_empty() {
        return "0".to_owned();
    }
    let mantissa = digits.trim_end_matches('0');
    // Fewer than 2^31 digits come out of any f64 or i64, so the cast cannot truncate.
    let mut exponent = exponent + (digits.len() - mantissa.len()) as i32;
    // One allocation, sized for the usual case (this runs on every metrics read).
    let mut text = String::with_capacity(mantissa.len() + 3);
    text.push_str(mantissa);
    // Go's truncated remainder: 1 and -2 need one more digit, 2 and -1 need two.
    let pad = match exponent % 3 {
        1 | -2 => 1,
        2 | -1 => 2,
        _ => 0,
    };
    text.extend(std::iter::repeat_n('0', pad));
    exponent -= pad as i32;
    // Beyond exa there is no suffix: keep `E` and carry the rest in the mantissa.
    if exponent > 18 {
        text.extend(std::iter::repeat_n('0', (exponent - 18) as usize));
        exponent = 18;
    }
    let suffix = match exponent {
        -9 => "n",
        -6 => "u",
        -3 => "m",
        3 => "k",
        6 => "M",
        9 => "G",
        12 => "T",
        15 => "P",
        18 => "E",
        // Milli input and integer input never go below -3; 0 needs no suffix.
        _ => "",
    };
    text.push_str(suffix);
    text
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[rstest]
    #[case::plain(0, "prometheus", "s0-prometheus")]
    #[case::slash(1, "rabbitmq-namespace%2Fname", "s1-rabbitmq-namespace-2Fname")]
    #[case::dots_and_colons(2, "kafka-a.b:c", "s2-kafka-a-b-c")]
    #[case::parens(3, "x(y)", "s3-x-y-")]
    #[case::keeps_case_spaces_commas(4, "Ab c,d?", "s4-Ab c,d?")]
    fn metric_name_prefixes_index_and_normalizes(
        #[case] index: usize,
        #[case] detail: &str,
        #[case] expected: &str,
    ) {
        assert_eq!(metric_name(index, detail), expected);
    }

    #[rstest]
    #[case::matches(1, "s1-rabbitmq-q", Some("rabbitmq-q"))]
    #[case::other_index(2, "s1-rabbitmq-q", None)]
    #[case::index_prefix_only(1, "s10-x", None)]
    #[case::no_dash(1, "s1", None)]
    fn strip_prefix_checks_the_index(
        #[case] index: usize,
        #[case] name: &str,
        #[case] expected: Option<&str>,
    ) {
        assert_eq!(strip_prefix(index, name), expected);
    }

    #[rstest]
    #[case::unreserved("aZ09-_.~", "aZ09-_.~")]
    #[case::space("a b", "a+b")]
    #[case::plus("a+b", "a%2Bb")]
    #[case::slash("ns/q", "ns%2Fq")]
    #[case::star("a*", "a%2A")]
    #[case::unicode("é", "%C3%A9")]
    fn query_escape_matches_go(#[case] input: &str, #[case] expected: &str) {
        assert_eq!(query_escape(input), expected);
    }

    #[rstest]
    #[case::above(5.0, 4.0, true)]
    #[case::equal_is_inactive(4.0, 4.0, false)]
    #[case::zero_default(0.0, 0.0, false)]
    #[case::tiny_above_zero(0.0001, 0.0, true)]
    #[case::negative_threshold(-0.5, -1.0, true)]
    #[case::nan(f64::NAN, 0.0, false)]
    fn activation_is_strictly_greater(
        #[case] value: f64,
        #[case] threshold: f64,
        #[case] expected: bool,
    ) {
        assert_eq!(is_active(value, threshold), expected);
    }

    #[rstest]
    #[case::one_and_a_half(1.5, "1500m")]
    #[case::two(2.0, "2")]
    #[case::one_milli(0.001, "1m")]
    #[case::half(0.5, "500m")]
    #[case::tenth(0.1, "100m")]
    #[case::below_milli_rounds_to_zero(0.0004, "0")]
    #[case::half_milli_rounds_up(0.0005, "1m")]
    #[case::thousand(1000.0, "1k")]
    #[case::fifteen_hundred(1500.0, "1500")]
    #[case::twelve_thousand(12000.0, "12k")]
    #[case::million_and_a_half(1.5e6, "1500k")]
    #[case::twenty(20.0, "20")]
    #[case::fraction_keeps_millis(12.345, "12345m")]
    #[case::zero(0.0, "0")]
    #[case::negative(-1.5, "0")]
    #[case::nan(f64::NAN, "0")]
    #[case::inf(f64::INFINITY, "0")]
    #[case::neg_inf(f64::NEG_INFINITY, "0")]
    #[case::exa(2e18, "2E")]
    #[case::beyond_exa(1e21, "1000E")]
    #[case::beyond_i64_millis(1e17, "100P")]
    fn milli_quantity_is_canonical(#[case] value: f64, #[case] expected: &str) {
        assert_eq!(milli_quantity(value), expected);
    }

    #[test]
    fn milli_quantity_of_max_float_is_all_digits() {
        // f64::MAX is an integer ending in 8: no suffix, 309 exact digits, no overflow.
        let text = milli_quantity(f64::MAX);
        assert_eq!(text.len(), 309);
        assert!(text.starts_with("17976931348623157") && text.bytes().all(|b| b.is_ascii_digit()));
    }

    /// The exact expansion rounded to 3 places, the one rule `milli_quantity` follows.
    fn exact_millis(value: f64) -> String {
        let digits: String = format!("{value:.3}")
            .chars()
            .filter(char::is_ascii_digit)
            .collect();
        canonical_decimal(&digits, -3)
    }

    proptest::proptest! {
        #[test]
        fn the_whole_millis_shortcut_agrees_with_the_exact_expansion(
            millis in 0u64..2_000_000_000_000_000,
            nudge in -2i64..=2,
            any in 0.0f64..2e12,
        ) {
            // Whole thousandths, and their neighbouring doubles (which must not take the
            // shortcut wrongly), and arbitrary values.
            #[allow(clippy::cast_precision_loss)]
            let whole = millis as f64 / 1000.0;
            let neighbour = f64::from_bits(whole.to_bits().saturating_add_signed(nudge));
            for value in [whole, neighbour, any] {
                proptest::prop_assert_eq!(milli_quantity(value), exact_millis(value), "{}", value);
            }
        }
    }

    #[rstest]
    #[case::five(5, "5")]
    #[case::thousand(1000, "1k")]
    #[case::ten_thousand_one(10001, "10001")]
    #[case::zero(0, "0")]
    #[case::negative(-2000, "-2k")]
    #[case::min(i64::MIN, "-9223372036854775808")]
    fn int_quantity_is_canonical(#[case] value: i64, #[case] expected: &str) {
        assert_eq!(int_quantity(value), expected);
    }

    #[rstest]
    #[case::milli(false, 0.5, "500m")]
    #[case::integer(true, 10.0, "10")]
    #[case::integer_rounds(true, 2.6, "3")]
    fn target_quantity_honours_kind(
        #[case] is_integer: bool,
        #[case] target: f64,
        #[case] expected: &str,
    ) {
        let spec = crate::MetricSpec {
            metric_name: "s0-x".into(),
            target,
            target_is_integer: is_integer,
            metric_type: crate::MetricType::AverageValue,
            activation_threshold: 0.0,
        };
        assert_eq!(target_quantity(&spec), expected);
    }
}
