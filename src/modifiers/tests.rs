//! Tests for the formula engine: one table of expr-lang behaviours (values, syntax errors,
//! unknown names, types, nil handling, division by zero), limits, and a fuzz-style property that
//! no input panics.

use super::{Formula, FormulaError};
use proptest::prelude::*;
use rstest::rstest;
use std::collections::BTreeMap;

/// The trigger names every case may use. `absent` is known but has no value (a failed trigger
/// that is not even in the map), `c` failed (nil).
const KNOWN: &[&str] = &["a", "b", "c", "lag", "queue_1", "absent"];

fn env() -> BTreeMap<String, Option<f64>> {
    [
        ("a", Some(3.0)),
        ("b", Some(4.0)),
        ("c", None),
        ("lag", Some(1500.0)),
        ("queue_1", Some(10.0)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

#[derive(Debug, Clone, Copy)]
enum Want {
    /// Compiles and evaluates to this number.
    Num(f64),
    /// Compiles and evaluates to NaN.
    Nan,
    /// Compiles (uses `??`) and evaluates to nil.
    Nil,
    /// Syntax error at this column, with this text in the message.
    Syntax(usize, &'static str),
    /// Unknown names, in order, the first at this column.
    Unknown(&'static [&'static str], usize),
    /// Unknown function.
    UnknownFn(&'static str),
    /// Type error mentioning this text.
    Type(&'static str),
    /// The dry run (every trigger -1) fails with this text.
    DryRun(&'static str),
    /// Compiles, but evaluating with `env()` fails with this text.
    Eval(&'static str),
}

#[rstest]
// --- literals
#[case::int_literal("42", Want::Num(42.0))]
#[case::float_literal("2.5", Want::Num(2.5))]
#[case::underscore_separators("1_000_000", Want::Num(1e6))]
#[case::exponent("1e3 + 2.5e-1", Want::Num(1000.25))]
#[case::leading_dot(".5 * 4", Want::Num(2.0))]
#[case::hex_literal("0x1F", Want::Num(31.0))]
// --- precedence and associativity (expr-lang's table)
#[case::mul_before_add("1 + 2 * 3", Want::Num(7.0))]
#[case::parentheses("(1 + 2) * 3", Want::Num(9.0))]
#[case::sub_is_left_associative("10 - 4 - 3", Want::Num(3.0))]
#[case::div_is_left_associative("64 / 4 / 2", Want::Num(8.0))]
#[case::pow_is_right_associative("2 ** 3 ** 2", Want::Num(512.0))]
#[case::caret_is_pow("2 ^ 10", Want::Num(1024.0))]
#[case::unary_minus_is_looser_than_pow("-2 ** 2", Want::Num(-4.0))]
#[case::unary_minus_is_tighter_than_mul("-a * 2", Want::Num(-6.0))]
#[case::unary_plus("+a", Want::Num(3.0))]
#[case::not_is_tighter_than_eq("!true == false ? 1 : 0", Want::Num(1.0))]
#[case::and_is_tighter_than_or("true || false && false ? 1 : 0", Want::Num(1.0))]
// --- arithmetic semantics
#[case::int_division_gives_float("7 / 2", Want::Num(3.5))]
#[case::modulo_on_ints("7 % 3", Want::Num(1.0))]
#[case::modulo_keeps_dividend_sign("-7 % 3", Want::Num(-1.0))]
#[case::int_overflow_wraps_like_go("9223372036854775807 + 1", Want::Num(-9.223_372_036_854_776e18))]
#[case::float_division_by_zero_is_inf("a / 0", Want::Num(f64::INFINITY))]
#[case::negative_division_by_zero("-a / 0", Want::Num(f64::NEG_INFINITY))]
#[case::zero_by_zero_is_nan("0 / 0", Want::Nan)]
// --- trigger names
#[case::sum_of_triggers("a + b", Want::Num(7.0))]
#[case::average_of_triggers("(a + b) / 2", Want::Num(3.5))]
#[case::name_with_underscore_and_digit("queue_1 * 2", Want::Num(20.0))]
#[case::whitespace_and_newlines("  a\n +\tb ", Want::Num(7.0))]
// --- conditions
#[case::ternary("lag > 1_000 ? lag : 0", Want::Num(1500.0))]
#[case::nested_ternary_is_right_nested("a > 5 ? 1 : b > 3 ? 2 : 3", Want::Num(2.0))]
#[case::word_operators("a > 1 and not (b < 1) or false ? 1 : 0", Want::Num(1.0))]
#[case::chained_comparison_true("1 < a <= 3 ? 1 : 0", Want::Num(1.0))]
#[case::chained_comparison_false("1 < a < 3 ? 1 : 0", Want::Num(0.0))]
#[case::int_equals_float("a == 3 ? 1 : 0", Want::Num(1.0))]
#[case::short_ternary("false ?: 5", Want::Num(5.0))]
#[case::and_short_circuits_the_failed_side("false && c > 1 ? 1 : 2", Want::Num(2.0))]
// --- builtins
#[case::abs("abs(-a)", Want::Num(3.0))]
#[case::ceil("ceil(a / 2)", Want::Num(2.0))]
#[case::floor("floor(7 / 2)", Want::Num(3.0))]
#[case::round_half_away_from_zero("round(2.5) + round(-2.5)", Want::Num(0.0))]
#[case::round_half_up("round(2.5)", Want::Num(3.0))]
#[case::max_of_three("max(a, b, 1)", Want::Num(4.0))]
#[case::min_of_two("min(a, b)", Want::Num(3.0))]
#[case::int_truncates_toward_zero("int(7.9) + int(-7.9)", Want::Num(0.0))]
#[case::float_then_divide("float(3) / 2", Want::Num(1.5))]
#[case::modulo_after_int("int(lag) % 7", Want::Num(2.0))]
// --- nil (failed triggers) and ??
#[case::coalesce_takes_default_for_nil("c ?? 7", Want::Num(7.0))]
#[case::coalesce_keeps_a_value("a ?? 7", Want::Num(3.0))]
#[case::coalesce_chain("c ?? nil ?? 5", Want::Num(5.0))]
#[case::coalesce_inside_sum("(c ?? 0) + a", Want::Num(3.0))]
#[case::coalesce_binds_tighter_than_plus("a + c ?? 1", Want::Num(4.0))]
#[case::name_missing_from_values_is_nil("absent ?? 9", Want::Num(9.0))]
#[case::nil_result_is_kept_with_coalesce("c ?? nil", Want::Nil)]
#[case::nil_check_without_coalesce("c == nil ? 5 : c", Want::Num(5.0))]
#[case::nil_in_arithmetic_fails("c + 1", Want::Eval("mismatched types nil and int"))]
#[case::nil_result_without_coalesce_fails("max(c)", Want::Eval("result is nil"))]
#[case::nil_in_comparison_fails("c > 1 ? 1 : 0", Want::Eval("mismatched types nil and int"))]
// --- syntax errors: column and what was expected
#[case::empty("", Want::Syntax(1, "expected an operand"))]
#[case::dangling_operator("a +", Want::Syntax(4, "found end of formula"))]
#[case::unclosed_parenthesis(
    "(a + b",
    Want::Syntax(7, "expected ')' to close the '(' at column 1")
)]
#[case::unmatched_close("a)", Want::Syntax(2, "')' without a matching '('"))]
#[case::single_equals("a = b", Want::Syntax(3, "comparison is '=='"))]
#[case::two_operands("a b", Want::Syntax(3, "expected an operator"))]
#[case::coalesce_mixed_with_plus("c ?? 0 + 1", Want::Syntax(8, "cannot be mixed"))]
#[case::ternary_without_colon(
    "a > 1 ? 2",
    Want::Syntax(10, "expected ':' for the '?' at column 7")
)]
#[case::bad_number("12ab", Want::Syntax(3, "bad number syntax"))]
#[case::bad_exponent("1e + 1", Want::Syntax(1, "invalid float literal"))]
#[case::integer_too_large("99999999999999999999", Want::Syntax(1, "too large"))]
#[case::member_access("a.b", Want::Syntax(2, "member access is not supported"))]
#[case::string_literal("\"x\"", Want::Syntax(1, "strings are not supported"))]
#[case::call_missing_comma("max(a b)", Want::Syntax(7, "expected ')' or ','"))]
// --- names and functions
#[case::unknown_name("a + bogus", Want::Unknown(&["bogus"], 5))]
#[case::unknown_names_once_each("x + y * x", Want::Unknown(&["x", "y"], 1))]
#[case::names_are_case_sensitive("A + b", Want::Unknown(&["A"], 1))]
#[case::unknown_function("sqrt(a)", Want::UnknownFn("sqrt"))]
#[case::trigger_is_not_a_function("a(1)", Want::UnknownFn("a"))]
// --- types (triggers are float64, as in KEDA's environment)
#[case::modulo_on_a_trigger(
    "a % 2",
    Want::Type("invalid operation: % (mismatched types float64 and int)")
)]
#[case::number_as_condition(
    "a ? 1 : 2",
    Want::Type("non-bool expression (type float64) used as condition")
)]
#[case::bool_result("a > b", Want::Type("must produce a number, but produces bool"))]
#[case::nil_result("nil", Want::Type("produces nil"))]
#[case::and_on_numbers("a && b ? 1 : 0", Want::Type("mismatched types float64 and float64"))]
#[case::bool_equals_number("true == 1 ? 1 : 0", Want::Type("mismatched types bool and int"))]
#[case::too_many_arguments("abs(a, b)", Want::Type("too many arguments to call abs"))]
#[case::no_arguments("max()", Want::Type("not enough arguments to call max"))]
#[case::bool_argument("abs(a > 1)", Want::Type("invalid argument for abs (type bool)"))]
// --- the dry run KEDA does with every trigger at -1
#[case::dry_run_integer_divide_by_zero("int(a) % 0", Want::DryRun("integer divide by zero"))]
#[case::dry_run_takes_the_negative_branch(
    "a > 0 ? 1 : 1 % 0",
    Want::DryRun("integer divide by zero")
)]
fn formula_behaves_like_expr_lang(#[case] src: &str, #[case] want: Want) {
    let compiled = Formula::compile(src, KNOWN);
    let got = compiled.clone().and_then(|f| f.eval(&env()));
    match want {
        Want::Num(x) => assert_eq!(got, Ok(Some(x)), "{src}"),
        Want::Nan => assert!(matches!(got, Ok(Some(v)) if v.is_nan()), "{src}: {got:?}"),
        Want::Nil => assert_eq!(got, Ok(None), "{src}"),
        Want::Eval(text) => {
            assert!(compiled.is_ok(), "{src} should compile: {compiled:?}");
            assert!(
                matches!(&got, Err(FormulaError::Eval { message, .. }) if message.contains(text)),
                "{src}: {got:?}"
            );
        }
        Want::Syntax(col, text) => assert!(
            matches!(&compiled, Err(FormulaError::Syntax { column, message })
                if *column == col && message.contains(text)),
            "{src}: {compiled:?}"
        ),
        Want::Unknown(names, col) => assert!(
            matches!(&compiled, Err(FormulaError::UnknownNames { names: n, column, .. })
                if n == names && *column == col),
            "{src}: {compiled:?}"
        ),
        Want::UnknownFn(name) => assert!(
            matches!(&compiled, Err(FormulaError::UnknownFunction { name: n, .. }) if n == name),
            "{src}: {compiled:?}"
        ),
        Want::Type(text) => assert!(
            matches!(&compiled, Err(FormulaError::Type { message, .. }) if message.contains(text)),
            "{src}: {compiled:?}"
        ),
        Want::DryRun(text) => assert!(
            matches!(&compiled, Err(FormulaError::DryRun(e)) if e.to_string().contains(text)),
            "{src}: {compiled:?}"
        ),
    }
}

#[test]
fn compiled_formula_reports_its_names_and_nil_mode() {
    let f = Formula::compile("max(b, a) + (c ?? 0) + a", KNOWN).unwrap();
    assert_eq!(f.names(), ["b", "a", "c"]);
    assert!(f.keeps_nil());
    assert_eq!(f.source(), "max(b, a) + (c ?? 0) + a");
    assert!(!Formula::compile("a + b", KNOWN).unwrap().keeps_nil());
}

#[test]
fn unknown_name_message_lists_the_usable_names() {
    let err = Formula::compile("a + rabbit", &["a", "kafka"]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown name rabbit in formula (column 5); it can use the names of the ScaledObject's \
         non-cpu/memory triggers: a, kafka"
    );
}

#[test]
fn syntax_error_message_says_where_and_what_was_expected() {
    let err = Formula::compile("(a + ) * 2", &["a"]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "syntax error at column 6: expected an operand (a number, a trigger name, a function \
         call, '(' or a prefix operator), found ')'"
    );
}

#[test]
fn one_formula_evaluates_many_value_sets() {
    let f = Formula::compile(
        "(q1 ?? 0) + (q2 ?? 0) > 100 ? 100 : (q1 ?? 0) + (q2 ?? 0)",
        &["q1", "q2"],
    )
    .unwrap();
    let vals = |a: Option<f64>, b: Option<f64>| {
        BTreeMap::from([("q1".to_string(), a), ("q2".to_string(), b)])
    };
    assert_eq!(f.eval(&vals(Some(30.0), Some(20.0))), Ok(Some(50.0)));
    assert_eq!(f.eval(&vals(Some(300.0), None)), Ok(Some(100.0)));
    assert_eq!(f.eval(&vals(None, None)), Ok(Some(0.0)));
}

#[rstest]
#[case::parentheses(format!("{}1{}", "(".repeat(2000), ")".repeat(2000)))]
#[case::unary_minus(format!("{}1", "-".repeat(4000)))]
#[case::not(format!("{}true", "!".repeat(4000)))]
#[case::long_left_chain(format!("{}1", "1+".repeat(2000)))]
#[case::long_right_chain(format!("{}1", "2**".repeat(1300)))]
#[case::nested_ternaries(format!("{}1", "true ? 1 : ".repeat(300)))]
#[case::nested_calls(format!("{}1{}", "abs(".repeat(800), ")".repeat(800)))]
fn deep_nesting_is_rejected_without_overflowing_the_stack(#[case] src: String) {
    assert!(
        src.len() <= super::MAX_FORMULA_LEN,
        "keep the case under the length limit"
    );
    let err = Formula::compile(&src, KNOWN).unwrap_err();
    assert!(matches!(err, FormulaError::TooDeep { .. }), "{err:?}");
}

#[test]
fn overlong_formula_is_rejected() {
    let src = "a + ".repeat(2000) + "a";
    assert!(matches!(
        Formula::compile(&src, KNOWN),
        Err(FormulaError::TooLong { len: 8001, .. })
    ));
}

#[test]
fn moderately_nested_formula_is_fine() {
    let src = format!("{}a{}", "(".repeat(60), " + 1)".repeat(60));
    assert_eq!(
        Formula::compile(&src, KNOWN).unwrap().eval(&env()),
        Ok(Some(63.0))
    );
}

proptest! {
    #[test]
    fn random_strings_never_panic(src in "\\PC{0,200}") {
        if let Ok(f) = Formula::compile(&src, KNOWN) {
            let _ = f.eval(&env());
        }
    }

    #[test]
    fn formula_like_strings_never_panic(
        src in "[abcx0-9_.eE+*/%^()?:!<>=&| ,-]{0,120}|(max|min|abs|int|float|nil|true|and|not|or|[ab?(),+*-]){0,60}",
        a in proptest::option::of(proptest::num::f64::ANY),
    ) {
        if let Ok(f) = Formula::compile(&src, KNOWN) {
            let mut values = env();
            values.insert("a".to_string(), a);
            let _ = f.eval(&values);
        }
    }

    #[test]
    fn sums_of_triggers_match_plain_arithmetic(x in -1e12f64..1e12, y in -1e12f64..1e12) {
        let f = Formula::compile("(x + y) * 2 - y", &["x", "y"]).unwrap();
        let values = BTreeMap::from([("x".to_string(), Some(x)), ("y".to_string(), Some(y))]);
        prop_assert_eq!(f.eval(&values), Ok(Some((x + y) * 2.0 - y)));
    }
}
