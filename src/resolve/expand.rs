//! Kubernetes `$(VAR)` expansion in container env values: a reference to a variable defined
//! earlier is replaced, `$$` escapes a `$`, and anything else is kept literally.

use super::{Resolved, ValueMap};

/// Expand `$(VAR)` references in `text` against `defined`. A reference to an unknown value
/// makes the whole result unknown.
pub fn expand(text: &str, defined: &ValueMap) -> Resolved {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(escaped) = after.strip_prefix('$') {
            out.push('$');
            rest = escaped;
        } else if let Some((name, tail)) = after.strip_prefix('(').and_then(|r| r.split_once(')')) {
            match defined.get(name) {
                Some(Resolved::Known(value)) => out.push_str(value),
                Some(Resolved::Unknown) => return Resolved::Unknown,
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = tail;
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Resolved::Known(out)
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    fn defined() -> ValueMap {
        let mut map = ValueMap::default();
        map.insert("HOST", Resolved::Known("rabbit".into()));
        map.insert("PASS", Resolved::Unknown);
        map
    }

    #[rstest]
    #[case::plain("amqp://x", "amqp://x")]
    #[case::reference("amqp://$(HOST):5672", "amqp://rabbit:5672")]
    #[case::undefined_kept("$(NOPE)/x", "$(NOPE)/x")]
    #[case::escaped("$$(HOST)", "$(HOST)")]
    #[case::double_dollar("a$$b", "a$b")]
    #[case::lone_dollar("cost $5", "cost $5")]
    #[case::unterminated("$(HOST", "$(HOST")]
    #[case::trailing_dollar("x$", "x$")]
    fn expands_like_kubelet(#[case] text: &str, #[case] expected: &str) {
        assert_eq!(expand(text, &defined()), Resolved::Known(expected.into()));
    }

    #[test]
    fn unknown_reference_makes_the_value_unknown() {
        assert_eq!(expand("amqp://u:$(PASS)@h", &defined()), Resolved::Unknown);
    }
}
