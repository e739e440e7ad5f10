use std::collections::BTreeMap;

use rstest::rstest;

use super::*;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[rstest]
#[case::empty("", "")]
#[case::blank("   ", "")]
#[case::equals("queue=orders", "queue=orders")]
#[case::double_equals("queue==orders", "queue=orders")]
#[case::not_equals("queue!=orders", "queue!=orders")]
#[case::set("env in (prod,canary)", "env in (canary,prod)")]
#[case::set_no_spaces("env in(prod,canary)", "env in (canary,prod)")]
#[case::not_in("env notin ( prod , canary )", "env notin (canary,prod)")]
#[case::exists("env", "env")]
#[case::does_not_exist("!env", "!env")]
#[case::does_not_exist_spaced("! env", "!env")]
#[case::greater("replicas>5", "replicas>5")]
#[case::less("replicas < 5", "replicas<5")]
#[case::sorted_by_key("queue=orders,env in (prod)", "env=prod,queue=orders")]
#[case::prefixed_key("scaledobject.keda.sh/name=orders", "scaledobject.keda.sh/name=orders")]
#[case::empty_value("queue=", "queue=")]
#[case::keyword_value("queue=in", "queue=in")]
#[case::whitespace_everywhere(" a = b , c ", "a=b,c")]
#[case::hpa_wire_form(
    "env in (canary,prod),queue=orders",
    "env in (canary,prod),queue=orders"
)]
fn parses_and_prints_canonically(#[case] text: &str, #[case] canonical: &str) {
    let selector = Selector::parse(text).unwrap();
    assert_eq!(selector.to_string(), canonical);
    assert_eq!(Selector::parse(canonical).unwrap(), selector, "round trip");
}

#[rstest]
#[case::trailing_comma("a=b,")]
#[case::leading_comma(",a=b")]
#[case::double_comma("a=b,,c=d")]
#[case::missing_key("=b")]
#[case::bad_key_chars("a$=b")]
#[case::bad_key_edge("-a=b")]
#[case::bad_prefix("Foo.com/a=b")]
#[case::empty_name_after_prefix("foo.com/=b")]
#[case::long_key("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa=b")]
#[case::bad_value("a=b$")]
#[case::value_edge("a=b-")]
#[case::non_integer_greater("a>b")]
#[case::negative_bound_is_not_a_label_value("a<-5")]
#[case::missing_open("a in b")]
#[case::unclosed("a in (b,c")]
#[case::nested("a in ((b))")]
#[case::bang_with_op("!a=b")]
#[case::two_values("a=b c")]
#[case::only_bang("!")]
#[case::only_paren(")")]
#[case::missing_comma_in_set("a in (b c)")]
#[case::unicode_key("ä=b")]
fn rejects_malformed_text_with_a_message(#[case] text: &str) {
    let error = Selector::parse(text).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("unable to parse requirement: "),
        "{error}"
    );
}

#[rstest]
#[case::empty_matches_all("", &[], true)]
#[case::equals_hit("a=b", &[("a", "b")], true)]
#[case::equals_miss("a=b", &[("a", "c")], false)]
#[case::equals_absent("a=b", &[], false)]
#[case::not_equals_absent("a!=b", &[], true)]
#[case::not_equals_same("a!=b", &[("a", "b")], false)]
#[case::in_hit("a in (x,y)", &[("a", "y")], true)]
#[case::in_absent("a in (x,y)", &[], false)]
#[case::not_in_absent("a notin (x,y)", &[], true)]
#[case::not_in_hit("a notin (x,y)", &[("a", "x")], false)]
#[case::exists("a", &[("a", "")], true)]
#[case::exists_absent("a", &[("b", "1")], false)]
#[case::does_not_exist("!a", &[("b", "1")], true)]
#[case::does_not_exist_present("!a", &[("a", "1")], false)]
#[case::greater("n>5", &[("n", "6")], true)]
#[case::greater_equal("n>5", &[("n", "5")], false)]
#[case::greater_non_numeric_label("n>5", &[("n", "x")], false)]
#[case::less("n<5", &[("n", "-1")], true)]
#[case::conjunction("a=b,!c", &[("a", "b"), ("c", "d")], false)]
#[case::empty_set_holds_empty_value("a in ()", &[("a", "")], true)]
fn matches_labels(#[case] text: &str, #[case] pairs: &[(&str, &str)], #[case] expected: bool) {
    assert_eq!(
        Selector::parse(text).unwrap().matches(&labels(pairs)),
        expected
    );
}

#[rstest]
#[case::equals("scaledobject.keda.sh/name=orders,x=y", Some("orders"))]
#[case::single_in("scaledobject.keda.sh/name in (orders)", Some("orders"))]
#[case::several_in("scaledobject.keda.sh/name in (a,b)", None)]
#[case::not_equals("scaledobject.keda.sh/name!=orders", None)]
#[case::absent("x=y", None)]
fn required_value_finds_the_equality(#[case] text: &str, #[case] expected: Option<&str>) {
    let selector = Selector::parse(text).unwrap();
    assert_eq!(
        selector.required_value("scaledobject.keda.sh/name"),
        expected
    );
}
