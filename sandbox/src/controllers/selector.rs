//! Label selectors: the `LabelSelector` object, its string form (`spec/kubernetes.md` §1.7),
//! matching, and Go's `%+v` rendering that kube-controller-manager puts in HPA messages.
//!
//! The HPA turns each External metric's selector into a `labelSelector` query parameter and
//! counts ready pods with the scale subresource's selector string; the simulated
//! ReplicaSet controller matches pods with its `spec.selector`. All three need the same rules.

use std::collections::BTreeMap;

use serde::Deserialize;
use thiserror::Error;

/// A label selector string that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("unable to parse label selector {selector:?}: {detail}")]
pub struct SelectorError {
    /// The offending selector text.
    pub selector: String,
    /// What was wrong.
    pub detail: &'static str,
}

/// `metav1.LabelSelector` (JSON shape).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    /// Equality requirements.
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
    /// Set-based requirements.
    #[serde(default)]
    pub match_expressions: Vec<Expression>,
}

/// One `matchExpressions` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Expression {
    /// Label key.
    pub key: String,
    /// `In`, `NotIn`, `Exists` or `DoesNotExist`.
    pub operator: String,
    /// Values for `In`/`NotIn`.
    #[serde(default)]
    pub values: Vec<String>,
}

/// One parsed requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
    Greater(String, i64),
    Less(String, i64),
}

/// A parsed selector; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector(Vec<Requirement>);

impl LabelSelector {
    /// The canonical string form: requirements sorted by key, joined by `,` (§1.7).
    pub fn to_query(&self) -> String {
        let mut parts: Vec<(String, String)> = self
            .match_labels
            .iter()
            .map(|(k, v)| (k.clone(), format!("{k}={v}")))
            .collect();
        for e in &self.match_expressions {
            let mut values = e.values.clone();
            values.sort();
            let text = match e.operator.as_str() {
                "In" => format!("{} in ({})", e.key, values.join(",")),
                "NotIn" => format!("{} notin ({})", e.key, values.join(",")),
                "Exists" => e.key.clone(),
                "DoesNotExist" => format!("!{}", e.key),
                other => format!("{} {other} ({})", e.key, values.join(",")),
            };
            parts.push((e.key.clone(), text));
        }
        // Stable sort by key, as labels.Requirements are sorted in apimachinery.
        parts.sort_by(|a, b| a.0.cmp(&b.0));
        parts
            .into_iter()
            .map(|(_, t)| t)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Go's `%+v` of a `*metav1.LabelSelector`, used verbatim in HPA messages (§1.5, §3.8).
    pub fn go_string(selector: Option<&LabelSelector>) -> String {
        let Some(s) = selector else {
            return "nil".to_owned();
        };
        let labels: String = s
            .match_labels
            .iter()
            .map(|(k, v)| format!("{k}: {v},"))
            .collect();
        let exprs: String = s
            .match_expressions
            .iter()
            .map(|e| {
                format!(
                    "LabelSelectorRequirement{{Key:{},Operator:{},Values:[{}],}},",
                    e.key,
                    e.operator,
                    e.values.join(" ")
                )
            })
            .collect();
        format!(
            "&LabelSelector{{MatchLabels:map[string]string{{{labels}}},\
             MatchExpressions:[]LabelSelectorRequirement{{{exprs}}},}}"
        )
    }
}

impl Selector {
    /// Parses the string grammar of §1.7 (also `==`, `>` and `<`). Empty = everything.
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        let err = |detail| SelectorError {
            selector: text.to_owned(),
            detail,
        };
        let mut reqs = Vec::new();
        for raw in split_top_level(text).map_err(err)? {
            let part = raw.trim();
            if part.is_empty() {
                if text.trim().is_empty() {
                    continue;
                }
                return Err(err("empty requirement"));
            }
            reqs.push(parse_requirement(part).ok_or_else(|| err("invalid requirement"))?);
        }
        Ok(Self(reqs))
    }

    /// Whether a label set satisfies every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|r| match r {
            Requirement::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::DoesNotExist(k) => !labels.contains_key(k),
            Requirement::Greater(k, n) => number(labels, k).is_some_and(|v| v > *n),
            Requirement::Less(k, n) => number(labels, k).is_some_and(|v| v < *n),
        })
    }

    /// Whether this is the match-everything selector.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn number(labels: &BTreeMap<String, String>, key: &str) -> Option<i64> {
    labels.get(key)?.parse().ok()
}

/// Splits on commas that are not inside parentheses.
fn split_top_level(text: &str) -> Result<Vec<&str>, &'static str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        if !(0..=1).contains(&depth) {
            return Err("unbalanced parentheses");
        }
    }
    if depth != 0 {
        return Err("unbalanced parentheses");
    }
    parts.push(&text[start..]);
    Ok(parts)
}

fn parse_requirement(part: &str) -> Option<Requirement> {
    if let Some(key) = part.strip_prefix('!') {
        return valid_key(key.trim()).map(|k| Requirement::DoesNotExist(k.to_owned()));
    }
    for (op, negate) in [(" notin ", true), (" in ", false)] {
        if let Some((key, values)) = part.split_once(op) {
            let values = values.trim().strip_prefix('(')?.strip_suffix(')')?;
            let values: Vec<String> = values.split(',').map(|v| v.trim().to_owned()).collect();
            let key = valid_key(key.trim())?.to_owned();
            return Some(if negate {
                Requirement::NotIn(key, values)
            } else {
                Requirement::In(key, values)
            });
        }
    }
    for op in ["!=", "==", "=", ">", "<"] {
        if let Some((key, value)) = part.split_once(op) {
            let key = valid_key(key.trim())?.to_owned();
            let value = value.trim().to_owned();
            return match op {
                "!=" => Some(Requirement::NotIn(key, vec![value])),
                ">" => Some(Requirement::Greater(key, value.parse().ok()?)),
                "<" => Some(Requirement::Less(key, value.parse().ok()?)),
                _ => Some(Requirement::In(key, vec![value])),
            };
        }
    }
    valid_key(part).map(|k| Requirement::Exists(k.to_owned()))
}

fn valid_key(key: &str) -> Option<&str> {
    let ok = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    ok.then_some(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn selector_query_string_matches_spec_example() {
        let s: LabelSelector = serde_json::from_value(json!({
            "matchLabels": {"queue": "orders"},
            "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "canary"]}]
        }))
        .unwrap();
        assert_eq!(s.to_query(), "env in (canary,prod),queue=orders");
    }

    #[test]
    fn selector_go_string_matches_hpa_messages() {
        let s: LabelSelector =
            serde_json::from_value(json!({"matchLabels": {"queue": "orders"}})).unwrap();
        assert_eq!(
            LabelSelector::go_string(Some(&s)),
            "&LabelSelector{MatchLabels:map[string]string{queue: orders,},\
             MatchExpressions:[]LabelSelectorRequirement{},}"
        );
        assert_eq!(LabelSelector::go_string(None), "nil");
    }

    #[rstest]
    #[case::empty_matches_all("", &[("a", "b")], true)]
    #[case::equals("app=web", &[("app", "web")], true)]
    #[case::double_equals("app==web", &[("app", "web")], true)]
    #[case::equals_mismatch("app=web", &[("app", "db")], false)]
    #[case::not_equals_missing_key("app!=web", &[], true)]
    #[case::in_set("env in (a,b)", &[("env", "b")], true)]
    #[case::notin_missing_key("env notin (a,b)", &[], true)]
    #[case::exists("env", &[("env", "x")], true)]
    #[case::does_not_exist("!env", &[("env", "x")], false)]
    #[case::greater("n>5", &[("n", "7")], true)]
    #[case::conjunction("app=web, tier=fe", &[("app", "web"), ("tier", "be")], false)]
    fn selector_matches(#[case] text: &str, #[case] l: &[(&str, &str)], #[case] expect: bool) {
        assert_eq!(Selector::parse(text).unwrap().matches(&labels(l)), expect);
    }

    proptest::proptest! {
        #[test]
        fn selector_parsing_never_panics_and_canonical_form_parses(input in "\\PC{0,40}", key in "[a-z]{1,8}", value in "[a-z0-9]{0,8}") {
            let _ = Selector::parse(&input);
            let s = LabelSelector { match_labels: BTreeMap::from([(key.clone(), value.clone())]), match_expressions: vec![] };
            let parsed = Selector::parse(&s.to_query()).unwrap();
            proptest::prop_assert!(parsed.matches(&BTreeMap::from([(key, value)])));
        }
    }

    #[rstest]
    #[case::unbalanced("env in (a,b")]
    #[case::dangling_comma("a=b,")]
    #[case::bad_key("a b=c")]
    #[case::non_numeric_gt("n>x")]
    #[case::close_first(")a(")]
    fn selector_rejects_garbage(#[case] text: &str) {
        assert!(Selector::parse(text).is_err());
    }
}
