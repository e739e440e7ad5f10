//! Small accessors for `metadata` on untyped JSON objects.
//!
//! The server never deserializes objects into typed structs (it must store any CRD verbatim),
//! so these helpers are the one place that knows where names, resourceVersions, finalizers and
//! owner references live.

use serde_json::{Map, Value};

/// `metadata.<field>` as a string, if present.
pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

/// `metadata.name` (empty if absent).
pub fn name(obj: &Value) -> &str {
    meta_str(obj, "name").unwrap_or_default()
}

/// `metadata.namespace`, if non-empty.
pub fn namespace(obj: &Value) -> Option<&str> {
    meta_str(obj, "namespace").filter(|s| !s.is_empty())
}

/// `metadata.resourceVersion` parsed as the global counter; `None` if absent or empty.
pub fn resource_version(obj: &Value) -> Option<&str> {
    meta_str(obj, "resourceVersion").filter(|s| !s.is_empty())
}

/// `metadata.uid`.
pub fn uid(obj: &Value) -> Option<&str> {
    meta_str(obj, "uid").filter(|s| !s.is_empty())
}

/// The mutable `metadata` map, created if missing or not an object.
pub fn metadata_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.is_object() {
        *obj = Value::Object(Map::new());
    }
    let map = obj.as_object_mut().expect("just made an object");
    let meta = map
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    meta.as_object_mut().expect("just made an object")
}

/// `metadata.finalizers` as strings.
pub fn finalizers(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Adds a finalizer if absent.
pub fn add_finalizer(obj: &mut Value, finalizer: &str) {
    let meta = metadata_mut(obj);
    let list = meta
        .entry("finalizers")
        .or_insert_with(|| Value::Array(vec![]));
    if let Some(list) = list.as_array_mut()
        && !list.iter().any(|f| f == finalizer)
    {
        list.push(Value::String(finalizer.to_owned()));
    }
}

/// Removes a finalizer (and the list when it becomes empty).
pub fn remove_finalizer(obj: &mut Value, finalizer: &str) {
    let meta = metadata_mut(obj);
    if let Some(list) = meta.get_mut("finalizers").and_then(Value::as_array_mut) {
        list.retain(|f| f != finalizer);
        if list.is_empty() {
            meta.remove("finalizers");
        }
    }
}

/// Whether `metadata.deletionTimestamp` is set.
pub fn is_deleting(obj: &Value) -> bool {
    meta_str(obj, "deletionTimestamp").is_some()
}

/// `metadata.labels` as pairs.
pub fn labels(obj: &Value) -> Option<&Map<String, Value>> {
    obj.get("metadata")?.get("labels")?.as_object()
}

/// `metadata.ownerReferences` entries.
pub fn owner_references(obj: &Value) -> &[Value] {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// Looks up a dotted path (`.spec.replicas` or `spec.replicas`) in an object.
pub fn dotted<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    path.trim_start_matches('.')
        .split('.')
        .filter(|s| !s.is_empty())
        .try_fold(obj, |v, k| v.get(k))
}

/// Sets a dotted path, creating intermediate objects.
pub fn set_dotted(obj: &mut Value, path: &str, value: Value) {
    let mut cur = obj;
    let keys: Vec<&str> = path
        .trim_start_matches('.')
        .split('.')
        .filter(|s| !s.is_empty())
        .collect();
    let Some((last, parents)) = keys.split_last() else {
        return;
    };
    for key in parents {
        if !cur.is_object() {
            *cur = Value::Object(Map::new());
        }
        cur = cur
            .as_object_mut()
            .expect("just made an object")
            .entry(*key)
            .or_insert_with(|| Value::Object(Map::new()));
    }
    if !cur.is_object() {
        *cur = Value::Object(Map::new());
    }
    cur.as_object_mut()
        .expect("just made an object")
        .insert((*last).to_owned(), value);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dotted_paths_read_and_write_nested_fields() {
        let mut obj = json!({"spec": {"replicas": 2}});
        assert_eq!(dotted(&obj, ".spec.replicas"), Some(&json!(2)));
        set_dotted(&mut obj, ".status.replicas", json!(3));
        assert_eq!(obj["status"]["replicas"], 3);
    }

    #[test]
    fn finalizers_are_added_once_and_removed_with_the_list() {
        let mut obj = json!({"metadata": {"name": "a"}});
        add_finalizer(&mut obj, "x");
        add_finalizer(&mut obj, "x");
        assert_eq!(finalizers(&obj), vec!["x"]);
        remove_finalizer(&mut obj, "x");
        assert!(obj["metadata"].get("finalizers").is_none());
    }
}
