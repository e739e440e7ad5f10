//! Accessors for the parts of an `openAPIV3Schema` node that defaulting, pruning and validation
//! read. Absent or mistyped keywords read as absent: a broken schema never panics.

use serde_json::{Map, Value};

/// `properties`, if the node declares any.
pub fn properties(schema: &Value) -> Option<&Map<String, Value>> {
    schema.get("properties").and_then(Value::as_object)
}

/// `additionalProperties` when it is a schema (a map of values of one shape).
pub fn additional_properties(schema: &Value) -> Option<&Value> {
    schema.get("additionalProperties").filter(|v| v.is_object())
}

/// `nullable: true`.
pub fn nullable(schema: &Value) -> bool {
    flag(schema, "nullable")
}

/// `x-kubernetes-preserve-unknown-fields: true`.
pub fn preserves_unknown_fields(schema: &Value) -> bool {
    flag(schema, "x-kubernetes-preserve-unknown-fields")
}

/// `x-kubernetes-embedded-resource: true`: `apiVersion`, `kind` and `metadata` are implied.
pub fn embedded_resource(schema: &Value) -> bool {
    flag(schema, "x-kubernetes-embedded-resource")
}

/// `x-kubernetes-int-or-string: true`.
pub fn int_or_string(schema: &Value) -> bool {
    flag(schema, "x-kubernetes-int-or-string")
}

/// A numeric keyword (`minimum`, `maxLength`, …).
pub fn number(schema: &Value, keyword: &str) -> Option<f64> {
    schema.get(keyword).and_then(Value::as_f64)
}

/// A boolean keyword, false when absent.
pub fn flag(schema: &Value, keyword: &str) -> bool {
    schema
        .get(keyword)
        .and_then(Value::as_bool)
        .unwrap_or(false)
}
