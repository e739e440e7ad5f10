use std::collections::BTreeMap;
use std::time::Duration;

use rstest::rstest;
use secrecy::ExposeSecret;

use super::*;

fn cfg(meta: &[(&str, &str)], auth: &[(&str, &str)], env: &[(&str, &str)]) -> ScalerConfig {
    let map = |kv: &[(&str, &str)]| -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    ScalerConfig {
        metadata: map(meta),
        auth_params: map(auth),
        resolved_env: map(env),
        ..ScalerConfig::default()
    }
}

fn err(p: Params<'_>) -> String {
    p.finish().expect_err("expected an error").to_string()
}

#[rstest]
#[case::metadata_first(&[("host", "m")], &[("host", "a")], &[], Some(("m", Source::Metadata)))]
#[case::auth_when_metadata_absent(&[], &[("host", "a")], &[], Some(("a", Source::Auth)))]
#[case::empty_metadata_is_absent(&[("host", "  ")], &[("host", "a")], &[], Some(("a", Source::Auth)))]
#[case::env_via_from_env(&[("hostFromEnv", "H")], &[], &[("H", " e ")], Some(("e", Source::Env)))]
#[case::env_var_missing(&[("hostFromEnv", "H")], &[], &[], None)]
#[case::alias_in_same_source(&[("hosts", "x")], &[("host", "a")], &[], Some(("x", Source::Metadata)))]
#[case::nothing(&[], &[], &[], None)]
fn lookup_follows_source_order_then_aliases(
    #[case] meta: &[(&str, &str)],
    #[case] auth: &[(&str, &str)],
    #[case] env: &[(&str, &str)],
    #[case] expected: Option<(&str, Source)>,
) {
    let c = cfg(meta, auth, env);
    let mut p = Params::new(&c, "t");
    let found = p.key("host").alias("hosts").sources(META_AUTH_ENV).found();
    assert_eq!(
        found.as_ref().map(|f| (f.value.as_str(), f.source)),
        expected
    );
    p.finish().expect("no errors");
}

#[rstest]
#[case::metadata_only(META, "missing required parameter \"host\" in [triggerMetadata]")]
#[case::all_sources(
    META_AUTH_ENV,
    "missing required parameter \"host\" in [triggerMetadata authParams resolvedEnv]"
)]
fn missing_required_names_key_and_sources(#[case] sources: &'static [Source], #[case] msg: &str) {
    let c = cfg(&[], &[], &[]);
    let mut p = Params::new(&c, "t");
    assert_eq!(p.key("host").sources(sources).required().string(), None);
    assert_eq!(err(p), format!("t: {msg}"));
}

#[rstest]
#[case::go_true("true", Some(true))]
#[case::go_t("t", Some(true))]
#[case::go_one("1", Some(true))]
#[case::go_upper("TRUE", Some(true))]
#[case::go_title("False", Some(false))]
#[case::go_f("F", Some(false))]
#[case::yes_is_invalid("yes", None)]
#[case::mixed_case_invalid("tRuE", None)]
fn bool_follows_go_parse_bool(#[case] raw: &str, #[case] expected: Option<bool>) {
    assert_eq!(parse_bool(raw), expected);
}

#[rstest]
#[case::plain("42", Some(42))]
#[case::negative("-7", Some(-7))]
#[case::fraction("1.5", None)]
#[case::exponent("1e3", None)]
#[case::plus("+1", None)]
#[case::leading_zero("01", None)]
#[case::overflow("9223372036854775808", None)]
#[case::word("ten", None)]
fn int_is_a_json_integer(#[case] raw: &str, #[case] expected: Option<i64>) {
    assert_eq!(parse_int(raw), expected);
}

#[rstest]
#[case::integer("2", Some(2.0))]
#[case::fraction("1.5", Some(1.5))]
#[case::exponent("1e3", Some(1000.0))]
#[case::negative("-0.25", Some(-0.25))]
#[case::leading_dot(".5", None)]
#[case::trailing_dot("5.", None)]
#[case::plus("+1", None)]
#[case::nan("NaN", None)]
#[case::inf("Inf", None)]
#[case::out_of_range("1e400", None)]
fn float_is_a_json_number(#[case] raw: &str, #[case] expected: Option<f64>) {
    assert_eq!(parse_float(raw), expected);
}

#[rstest]
#[case::go_ms("300ms", Some(Duration::from_millis(300)))]
#[case::go_compound("1m30s", Some(Duration::from_secs(90)))]
#[case::go_fraction("1.5s", Some(Duration::from_millis(1500)))]
#[case::go_hours("2h", Some(Duration::from_secs(7200)))]
#[case::go_micro("5us", Some(Duration::from_micros(5)))]
#[case::go_zero("0", Some(Duration::ZERO))]
#[case::integer_ms("2500", Some(Duration::from_millis(2500)))]
#[case::negative_go("-1s", None)]
#[case::negative_ms("-5", None)]
#[case::bad_unit("5 seconds", None)]
#[case::fraction_no_unit("1.5", None)]
#[case::empty_unit_number("s", None)]
fn duration_is_go_or_integer_ms(#[case] raw: &str, #[case] expected: Option<Duration>) {
    assert_eq!(parse_duration(raw), expected);
}

#[test]
fn list_and_map_are_trimmed() {
    let c = cfg(
        &[("l", " a , b,c "), ("m", "k1 = v1, k2=v2"), ("r", "1, 3-5")],
        &[],
        &[],
    );
    let mut p = Params::new(&c, "t");
    assert_eq!(
        p.key("l").list(),
        Some(vec!["a".into(), "b".into(), "c".into()])
    );
    let map = p.key("m").map().expect("map");
    assert_eq!(map.get("k1").map(String::as_str), Some("v1"));
    assert_eq!(map.get("k2").map(String::as_str), Some("v2"));
    assert_eq!(p.key("r").int_range_list(), Some(vec![1, 3, 4, 5]));
    p.finish().expect("no errors");
}

#[rstest]
#[case::no_equals("a")]
#[case::two_equals("a=b=c")]
#[case::one_bad_of_two("a=b,c")]
fn map_elements_need_exactly_one_equals(#[case] raw: &str) {
    let c = cfg(&[("m", raw)], &[], &[]);
    let mut p = Params::new(&c, "t");
    assert_eq!(p.key("m").map(), None);
    assert!(err(p).contains("must be a list of key=value pairs"));
}

#[rstest]
#[case::single_ok("sum", true)]
#[case::list_ok("sum, max", true)]
#[case::one_bad("sum,median", false)]
#[case::case_sensitive("Sum", false)]
fn enum_checks_every_part(#[case] raw: &str, #[case] ok: bool) {
    let c = cfg(&[("operation", raw)], &[], &[]);
    let mut p = Params::new(&c, "t");
    let value = p.key("operation").one_of(&["sum", "max", "avg"]).string();
    assert_eq!(value.is_some(), ok);
    match p.finish() {
        Ok(()) => assert!(ok),
        Err(e) => assert_eq!(
            e.to_string(),
            format!(
                "t: parameter \"operation\" value {raw:?} (from triggerMetadata) must be one of \
                 [sum max avg]"
            )
        ),
    }
}

#[test]
fn errors_are_joined_and_name_key_source_and_expectation() {
    let c = cfg(&[("a", "x"), ("b", "1.5")], &[], &[]);
    let mut p = Params::new(&c, "t");
    let _ = p.key("a").bool();
    let _ = p.key("b").int();
    let _ = p.key("c").required().string();
    p.invalid("custom problem");
    assert_eq!(
        err(p),
        "t: parameter \"a\" value \"x\" (from triggerMetadata) must be a boolean (true or false); \
         parameter \"b\" value \"1.5\" (from triggerMetadata) must be an integer; \
         missing required parameter \"c\" in [triggerMetadata]; custom problem"
    );
}

#[rstest]
#[case::from_auth(&[], &[("password", "hunter2")], &[])]
#[case::from_env(&[("passwordFromEnv", "P")], &[], &[("P", "hunter2")])]
fn errors_never_quote_auth_or_env_values(
    #[case] meta: &[(&str, &str)],
    #[case] auth: &[(&str, &str)],
    #[case] env: &[(&str, &str)],
) {
    let c = cfg(meta, auth, env);
    let mut p = Params::new(&c, "t");
    let _ = p.key("password").sources(AUTH_ENV).int();
    let _ = p.key("password").sources(AUTH_ENV).one_of(&["x"]).string();
    let message = err(p);
    assert!(
        message.contains("parameter \"password\" (from "),
        "{message}"
    );
    assert!(!message.contains("hunter2"), "{message}");
}

#[test]
fn secrets_do_not_show_in_debug() {
    let c = cfg(&[], &[("token", "hunter2")], &[]);
    let p = Params::new(&c, "t");
    let found = p.lookup(&["token"], AUTH).expect("found");
    assert!(!format!("{found:?}").contains("hunter2"));
    let mut p = Params::new(&c, "t");
    let secret = p.key("token").sources(AUTH).secret().expect("secret");
    assert_eq!(secret.expose_secret(), "hunter2");
}

#[test]
fn removed_keys_fail_with_their_message() {
    let c = cfg(&[("old", "1")], &[], &[]);
    let mut p = Params::new(&c, "t");
    p.removed("old", "use \"new\" instead");
    p.removed("absent", "never shown");
    assert_eq!(
        err(p),
        "t: parameter \"old\" is deprecated and removed: use \"new\" instead"
    );
}
