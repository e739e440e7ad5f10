//! Structural defaulting: a missing property whose schema has a `default` gets that default,
//! recursively, as kube-apiserver does on read and on write. A `null` in a field that is not
//! `nullable` counts as missing (the API server prunes such nulls before defaulting).

use serde_json::{Map, Value};

use crate::schema;

/// Fill in every schema default that `obj` lacks.
pub fn apply_defaults(schema: &Value, obj: &mut Value) {
    match obj {
        Value::Object(map) => default_object(schema, map),
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for item in items {
                    apply_defaults(item_schema, item);
                }
            }
        }
        _ => {}
    }
}

fn default_object(schema: &Value, map: &mut Map<String, Value>) {
    if let Some(properties) = schema::properties(schema) {
        for (key, prop_schema) in properties {
            let missing = match map.get(key) {
                None => true,
                Some(Value::Null) => !schema::nullable(prop_schema),
                Some(_) => false,
            };
            if missing {
                match prop_schema.get("default") {
                    Some(default) => {
                        map.insert(key.clone(), default.clone());
                    }
                    None => continue,
                }
            }
            if let Some(value) = map.get_mut(key) {
                apply_defaults(prop_schema, value);
            }
        }
    }
    if let Some(value_schema) = schema::additional_properties(schema) {
        for value in map.values_mut() {
            apply_defaults(value_schema, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn defaults_fill_missing_fields_recursively() {
        let schema = json!({"type": "object", "properties": {
        "spec": {"type": "object", "default": {}, "properties": {
            "pollingInterval": {"type": "integer", "default": 30},
            "fallback": {"type": "object", "properties": {
                "behavior": {"type": "string", "default": "static"}}},
            "triggers": {"type": "array", "items": {"type": "object", "properties": {
                "kind": {"type": "string", "default": "TriggerAuthentication"}}}}
        }}}});
        let mut obj = json!({"spec": {"fallback": {}, "triggers": [{}, {"kind": "X"}]}});
        apply_defaults(&schema, &mut obj);
        assert_eq!(
            obj,
            json!({"spec": {"pollingInterval": 30, "fallback": {"behavior": "static"},
                "triggers": [{"kind": "TriggerAuthentication"}, {"kind": "X"}]}})
        );
        let mut empty = json!({});
        apply_defaults(&schema, &mut empty);
        assert_eq!(empty, json!({"spec": {"pollingInterval": 30}}));
    }

    #[test]
    fn null_counts_as_missing_unless_nullable() {
        let schema = json!({"type": "object", "properties": {
            "a": {"type": "integer", "default": 1},
            "b": {"type": "integer", "default": 2, "nullable": true}}});
        let mut obj = json!({"a": null, "b": null});
        apply_defaults(&schema, &mut obj);
        assert_eq!(obj, json!({"a": 1, "b": null}));
    }
}
