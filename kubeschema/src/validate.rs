//! Validation of a (defaulted, pruned) object against a structural schema, with
//! kube-openapi's messages: `spec.x in body should be greater than or equal to 0`.
//!
//! Covered keywords: `type` (with `nullable`, `x-kubernetes-int-or-string`), `enum`,
//! `required`, `properties`, `additionalProperties`, `items`, `minimum`/`maximum` (and their
//! `exclusive*` flags), `minLength`/`maxLength`, `pattern`, `minItems`/`maxItems`,
//! `minProperties`/`maxProperties`, and `x-kubernetes-list-type: set` uniqueness.

use serde_json::{Map, Value};

use crate::{FieldError, FieldPath, schema};

/// Every problem in `obj`, in document order.
pub fn validate(schema: &Value, obj: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    check(schema, obj, &FieldPath::root(), &mut errors);
    errors
}

fn check(schema: &Value, value: &Value, path: &FieldPath, out: &mut Vec<FieldError>) {
    if value.is_null() {
        if !schema::nullable(schema) && schema.get("type").is_some() && !path.is_root() {
            out.push(type_error(schema, value, path));
        }
        return;
    }
    if !type_matches(schema, value) {
        out.push(type_error(schema, value, path));
        return;
    }
    check_enum(schema, value, path, out);
    match value {
        Value::Object(map) => check_object(schema, map, path, out),
        Value::Array(items) => check_array(schema, items, path, out),
        Value::String(s) => check_string(schema, s, value, path, out),
        Value::Number(_) => check_number(schema, value, path, out),
        Value::Bool(_) | Value::Null => {}
    }
}

fn type_matches(schema: &Value, value: &Value) -> bool {
    if schema::int_or_string(schema) {
        return value.is_string() || is_integer(value);
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        Some("string") => value.is_string(),
        Some("integer") => is_integer(value),
        Some("number") => value.is_number(),
        Some("boolean") => value.is_boolean(),
        _ => true,
    }
}

/// JSON numbers without a fraction are integers, as Go's decoder sees `1.0`.
fn is_integer(value: &Value) -> bool {
    match value {
        Value::Number(n) => {
            n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        _ => false,
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) if is_integer(value) => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_error(schema: &Value, value: &Value, path: &FieldPath) -> FieldError {
    let expected = if schema::int_or_string(schema) {
        "integer or string".to_owned()
    } else {
        schema
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_owned()
    };
    let actual = type_name(value);
    FieldError::invalid(
        path.clone(),
        &Value::String(actual.to_owned()),
        format!("{path} in body must be of type {expected}: \"{actual}\""),
    )
}

fn check_enum(schema: &Value, value: &Value, path: &FieldPath, out: &mut Vec<FieldError>) {
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        out.push(FieldError::not_supported(path.clone(), value, allowed));
    }
}

fn check_object(
    schema: &Value,
    map: &Map<String, Value>,
    path: &FieldPath,
    out: &mut Vec<FieldError>,
) {
    if let Some(required) = schema.get("required").and_then(Value::as_array) {
        for key in required.iter().filter_map(Value::as_str) {
            if map.get(key).is_none_or(Value::is_null) {
                out.push(FieldError::required(path.key(key)));
            }
        }
    }
    count_bounds(schema, map.len(), "properties", path, out);
    let properties = schema::properties(schema);
    let additional = schema::additional_properties(schema);
    for (key, value) in map {
        if let Some(prop_schema) = properties.and_then(|p| p.get(key)) {
            check(prop_schema, value, &path.key(key), out);
        } else if let Some(value_schema) = additional {
            check(value_schema, value, &path.map_key(key), out);
        }
    }
}

fn check_array(schema: &Value, items: &[Value], path: &FieldPath, out: &mut Vec<FieldError>) {
    count_bounds(schema, items.len(), "items", path, out);
    if schema.get("x-kubernetes-list-type").and_then(Value::as_str) == Some("set") {
        for (i, item) in items.iter().enumerate() {
            if items[..i].contains(item) {
                out.push(FieldError::invalid(path.index(i), item, "Duplicate value"));
            }
        }
    }
    if let Some(item_schema) = schema.get("items") {
        for (i, item) in items.iter().enumerate() {
            check(item_schema, item, &path.index(i), out);
        }
    }
}

fn check_string(
    schema: &Value,
    s: &str,
    value: &Value,
    path: &FieldPath,
    out: &mut Vec<FieldError>,
) {
    let chars = s.chars().count() as f64;
    if let Some(min) = schema::number(schema, "minLength").filter(|min| chars < *min) {
        out.push(FieldError::invalid(
            path.clone(),
            value,
            format!("{path} in body should be at least {min} chars long"),
        ));
    }
    if let Some(max) = schema::number(schema, "maxLength").filter(|max| chars > *max) {
        out.push(FieldError::invalid(
            path.clone(),
            value,
            format!("{path} in body should be at most {max} chars long"),
        ));
    }
    if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
        // An uncompilable pattern is the schema author's problem, not the object's.
        if let Ok(re) = regex::Regex::new(pattern)
            && !re.is_match(s)
        {
            out.push(FieldError::invalid(
                path.clone(),
                value,
                format!("{path} in body should match '{pattern}'"),
            ));
        }
    }
}

fn check_number(schema: &Value, value: &Value, path: &FieldPath, out: &mut Vec<FieldError>) {
    let Some(n) = value.as_f64() else { return };
    if let Some(min) = schema::number(schema, "minimum") {
        let exclusive = schema::flag(schema, "exclusiveMinimum");
        if n < min || (exclusive && n == min) {
            let op = if exclusive {
                "greater than"
            } else {
                "greater than or equal to"
            };
            out.push(FieldError::invalid(
                path.clone(),
                value,
                format!("{path} in body should be {op} {}", fmt_num(min)),
            ));
        }
    }
    if let Some(max) = schema::number(schema, "maximum") {
        let exclusive = schema::flag(schema, "exclusiveMaximum");
        if n > max || (exclusive && n == max) {
            let op = if exclusive {
                "less than"
            } else {
                "less than or equal to"
            };
            out.push(FieldError::invalid(
                path.clone(),
                value,
                format!("{path} in body should be {op} {}", fmt_num(max)),
            ));
        }
    }
}

/// `min<Noun>`/`max<Noun>` for `items` and `properties` (`minItems`, `maxProperties`, …).
fn count_bounds(
    schema: &Value,
    count: usize,
    noun: &str,
    path: &FieldPath,
    out: &mut Vec<FieldError>,
) {
    let capitalised = if noun == "items" {
        "Items"
    } else {
        "Properties"
    };
    let value = Value::from(count);
    let count = count as f64;
    if let Some(min) = schema::number(schema, &format!("min{capitalised}")).filter(|m| count < *m) {
        let detail = format!(
            "{path} in body should have at least {} {noun}",
            fmt_num(min)
        );
        out.push(FieldError::invalid(path.clone(), &value, detail));
    }
    if let Some(max) = schema::number(schema, &format!("max{capitalised}")).filter(|m| count > *m) {
        let detail = format!("{path} in body should have at most {} {noun}", fmt_num(max));
        out.push(FieldError::invalid(path.clone(), &value, detail));
    }
}

fn fmt_num(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        n.to_string()
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;
    use serde_json::json;

    use super::*;

    fn schema() -> Value {
        json!({"type": "object", "properties": {"spec": {"type": "object",
            "required": ["name", "triggers"],
            "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 5, "pattern": "^[a-z]+$"},
                "min": {"type": "integer", "minimum": 0},
                "max": {"type": "integer", "minimum": 1, "maximum": 10},
                "ratio": {"type": "number", "minimum": 0, "exclusiveMinimum": true},
                "mode": {"type": "string", "enum": ["a", "b"]},
                "flag": {"type": "boolean"},
                "port": {"x-kubernetes-int-or-string": true},
                "opt": {"type": "string", "nullable": true},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
                "triggers": {"type": "array", "minItems": 1, "items": {"type": "object",
                    "required": ["type"], "properties": {"type": {"type": "string"}}}}}}}})
    }

    #[rstest]
    #[case::valid(json!({"name": "ab", "triggers": [{"type": "x"}], "port": "http", "opt": null}), &[])]
    #[case::integer_float_is_integer(json!({"name": "ab", "triggers": [{"type": "x"}], "min": 1.0}), &[])]
    #[case::required(json!({"triggers": [{}]}), &[
        "spec.name: Required value", "spec.triggers[0].type: Required value"])]
    #[case::min_items(json!({"name": "a", "triggers": []}), &[
        "spec.triggers: Invalid value: 0: spec.triggers in body should have at least 1 items"])]
    #[case::minimum(json!({"name": "a", "triggers": [{"type": "x"}], "min": -1}), &[
        "spec.min: Invalid value: -1: spec.min in body should be greater than or equal to 0"])]
    #[case::maximum(json!({"name": "a", "triggers": [{"type": "x"}], "max": 11}), &[
        "spec.max: Invalid value: 11: spec.max in body should be less than or equal to 10"])]
    #[case::exclusive_minimum(json!({"name": "a", "triggers": [{"type": "x"}], "ratio": 0}), &[
        "spec.ratio: Invalid value: 0: spec.ratio in body should be greater than 0"])]
    #[case::wrong_type(json!({"name": "a", "triggers": [{"type": "x"}], "min": "3"}), &[
        "spec.min: Invalid value: \"string\": spec.min in body must be of type integer: \"string\""])]
    #[case::not_nullable(json!({"name": "a", "triggers": [{"type": "x"}], "flag": null}), &[
        "spec.flag: Invalid value: \"null\": spec.flag in body must be of type boolean: \"null\""])]
    #[case::enumeration(json!({"name": "a", "triggers": [{"type": "x"}], "mode": "c"}), &[
        "spec.mode: Unsupported value: \"c\": supported values: \"a\", \"b\""])]
    #[case::lengths(json!({"name": "", "triggers": [{"type": "x"}]}), &[
        "spec.name: Invalid value: \"\": spec.name in body should be at least 1 chars long",
        "spec.name: Invalid value: \"\": spec.name in body should match '^[a-z]+$'"])]
    #[case::max_length(json!({"name": "abcdef", "triggers": [{"type": "x"}]}), &[
        "spec.name: Invalid value: \"abcdef\": spec.name in body should be at most 5 chars long"])]
    #[case::map_values(json!({"name": "a", "triggers": [{"type": "x"}], "labels": {"k": 1}}), &[
        "spec.labels[k]: Invalid value: \"integer\": spec.labels[k] in body must be of type string: \"integer\""])]
    #[case::set_duplicates(json!({"name": "a", "triggers": [{"type": "x"}], "tags": ["x", "x"]}), &[
        "spec.tags[1]: Invalid value: \"x\": Duplicate value"])]
    #[case::int_or_string(json!({"name": "a", "triggers": [{"type": "x"}], "port": true}), &[
        "spec.port: Invalid value: \"boolean\": spec.port in body must be of type integer or string: \"boolean\""])]
    fn validation_messages(#[case] spec: Value, #[case] expected: &[&str]) {
        let errors: Vec<String> = validate(&schema(), &json!({"spec": spec}))
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(errors, expected);
    }
}
