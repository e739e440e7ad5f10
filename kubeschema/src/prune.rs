//! Pruning: fields the schema does not declare are removed, as kube-apiserver does on write,
//! and reported, as strict field validation (`kubectl apply --validate=strict`) does.
//!
//! `apiVersion`, `kind` and `metadata` are implied at the root and under
//! `x-kubernetes-embedded-resource`; `x-kubernetes-preserve-unknown-fields` keeps undeclared
//! fields (declared ones are still walked).

use serde_json::{Map, Value};

use crate::{FieldPath, schema};

const IMPLIED_RESOURCE_FIELDS: [&str; 3] = ["apiVersion", "kind", "metadata"];

/// Remove every undeclared field from `obj` and return the paths removed, in document order.
pub fn prune_unknown_fields(schema: &Value, obj: &mut Value) -> Vec<FieldPath> {
    let mut removed = Vec::new();
    prune(schema, obj, &FieldPath::root(), true, &mut removed);
    removed
}

fn prune(
    schema: &Value,
    obj: &mut Value,
    path: &FieldPath,
    resource: bool,
    out: &mut Vec<FieldPath>,
) {
    match obj {
        Value::Object(map) => prune_object(schema, map, path, resource, out),
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    let embedded = schema::embedded_resource(item_schema);
                    prune(item_schema, item, &path.index(i), embedded, out);
                }
            }
        }
        _ => {}
    }
}

fn prune_object(
    schema: &Value,
    map: &mut Map<String, Value>,
    path: &FieldPath,
    resource: bool,
    out: &mut Vec<FieldPath>,
) {
    let properties = schema::properties(schema);
    if let Some(value_schema) = schema::additional_properties(schema) {
        for (key, value) in map.iter_mut() {
            let embedded = schema::embedded_resource(value_schema);
            prune(value_schema, value, &path.map_key(key), embedded, out);
        }
        return;
    }
    let keep_unknown = schema::preserves_unknown_fields(schema);
    let keys: Vec<String> = map.keys().cloned().collect();
    for key in keys {
        let declared = properties.and_then(|p| p.get(&key));
        match declared {
            Some(prop_schema) => {
                if let Some(value) = map.get_mut(&key) {
                    let embedded = schema::embedded_resource(prop_schema);
                    prune(prop_schema, value, &path.key(&key), embedded, out);
                }
            }
            None if keep_unknown => {}
            None if resource && IMPLIED_RESOURCE_FIELDS.contains(&key.as_str()) => {}
            None => {
                map.remove(&key);
                out.push(path.key(&key));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn undeclared_fields_are_removed_and_reported() {
        let schema = json!({"type": "object", "properties": {
            "spec": {"type": "object", "properties": {
                "a": {"type": "integer"},
                "meta": {"type": "object", "additionalProperties": {"type": "string"}},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                "items": {"type": "array", "items": {"type": "object", "properties": {
                    "name": {"type": "string"}}}}}}}});
        let mut obj = json!({"apiVersion": "v1", "kind": "K", "metadata": {"name": "x"},
            "spec": {"a": 1, "b": 2, "meta": {"k": "v"}, "free": {"anything": 1},
                "items": [{"name": "n", "extra": true}]}, "status": {}});
        let removed: Vec<String> = prune_unknown_fields(&schema, &mut obj)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(removed, ["spec.b", "spec.items[0].extra", "status"]);
        assert_eq!(obj["spec"]["free"], json!({"anything": 1}));
        assert_eq!(obj["metadata"], json!({"name": "x"}));
    }
}
