//! Strategic merge patch for built-in kinds (`application/strategic-merge-patch+json`).
//!
//! Hand-written because no Rust crate implements it: the semantics come from Go struct tags
//! (`patchStrategy:"merge" patchMergeKey:"name"`) that exist only in Kubernetes' Go types. The
//! sandbox carries the merge keys of the fields clients actually patch (containers, env, ports,
//! volumes, conditions, owner references, finalizers) and the directives kubectl emits
//! (`$patch: replace|delete|merge`, `$setElementOrder/<list>`, `$deleteFromPrimitiveList/<list>`,
//! `$retainKeys`). Lists without a merge key are replaced wholesale, like merge patch.

use serde_json::{Map, Value};

use crate::error::ApiError;

/// The merge key of a list field, by field name; `None` = replace the list.
pub fn merge_key(field: &str, items: &[Value]) -> Option<&'static str> {
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets" => Some("name"),
        "volumeMounts" => Some("mountPath"),
        "ports" => {
            let container = items.iter().any(|i| i.get("containerPort").is_some());
            Some(if container { "containerPort" } else { "port" })
        }
        "conditions" => Some("type"),
        "ownerReferences" => Some("uid"),
        "hostAliases" => Some("ip"),
        "volumeDevices" => Some("devicePath"),
        _ => None,
    }
}

/// Lists of scalars merged as sets.
fn is_primitive_set(field: &str) -> bool {
    field == "finalizers"
}

/// Applies a strategic merge patch to `target`.
pub fn apply(target: &Value, patch: &Value) -> Result<Value, ApiError> {
    match merge_value(Some(target), patch)? {
        Some(v) => Ok(v),
        None => Err(ApiError::bad_request("the patch deletes the whole object")),
    }
}

/// Merges `patch` into `target`; `None` means "delete this value".
fn merge_value(target: Option<&Value>, patch: &Value) -> Result<Option<Value>, ApiError> {
    let Value::Object(patch_map) = patch else {
        return Ok(Some(patch.clone()));
    };
    match patch_map.get("$patch").and_then(Value::as_str) {
        Some("replace") => return Ok(Some(Value::Object(without_directives(patch_map)))),
        Some("delete") => return Ok(None),
        Some("merge") | None => {}
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "unknown patch type: {other}"
            )));
        }
    }
    let mut result = match target {
        Some(Value::Object(m)) => m.clone(),
        _ => Map::new(),
    };
    if let Some(keep) = patch_map.get("$retainKeys").and_then(Value::as_array) {
        result.retain(|k, _| keep.iter().any(|r| r == k) || patch_map.contains_key(k));
    }
    for (key, value) in patch_map {
        if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/") {
            let remove = value.as_array().cloned().unwrap_or_default();
            if let Some(Value::Array(items)) = result.get_mut(field) {
                items.retain(|i| !remove.contains(i));
            }
            continue;
        }
        if key.starts_with('$') {
            continue;
        }
        let merged = match value {
            Value::Null => None,
            Value::Array(items) => Some(merge_list(key, result.get(key), items)?),
            _ => merge_value(result.get(key), value)?,
        };
        match merged {
            Some(v) => result.insert(key.clone(), v),
            None => result.remove(key),
        };
    }
    for (key, order) in patch_map {
        if let (Some(field), Some(order)) =
            (key.strip_prefix("$setElementOrder/"), order.as_array())
            && let Some(Value::Array(items)) = result.get_mut(field)
        {
            reorder(field, items, order);
        }
    }
    Ok(Some(Value::Object(result)))
}

fn without_directives(map: &Map<String, Value>) -> Map<String, Value> {
    map.iter()
        .filter(|(k, _)| !k.starts_with('$'))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn merge_list(field: &str, target: Option<&Value>, patch: &[Value]) -> Result<Value, ApiError> {
    let current: Vec<Value> = target
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if is_primitive_set(field) {
        let mut out = current;
        for item in patch {
            if !out.contains(item) {
                out.push(item.clone());
            }
        }
        return Ok(Value::Array(out));
    }
    let Some(key) = merge_key(field, patch) else {
        return Ok(Value::Array(patch.to_vec()));
    };
    if patch
        .iter()
        .any(|p| p.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        let items = patch
            .iter()
            .filter(|p| p.get("$patch").is_none())
            .cloned()
            .collect();
        return Ok(Value::Array(items));
    }
    let mut out = current;
    for item in patch {
        let id = item.get(key);
        let pos = id.and_then(|id| out.iter().position(|o| o.get(key) == Some(id)));
        match (pos, merge_value(pos.map(|p| &out[p]), item)?) {
            (Some(p), Some(v)) => out[p] = v,
            (Some(p), None) => {
                out.remove(p);
            }
            (None, Some(v)) => out.push(v),
            (None, None) => {}
        }
    }
    Ok(Value::Array(out))
}

/// Orders `items` as `$setElementOrder` says; items it does not mention keep their place at
/// the end.
fn reorder(field: &str, items: &mut Vec<Value>, order: &[Value]) {
    let key = merge_key(field, items);
    let id_of = |v: &Value| -> Value {
        key.and_then(|k| v.get(k).cloned())
            .unwrap_or_else(|| v.clone())
    };
    let mut sorted = Vec::with_capacity(items.len());
    for wanted in order {
        let wanted_id = id_of(wanted);
        if let Some(pos) = items.iter().position(|i| id_of(i) == wanted_id) {
            sorted.push(items.remove(pos));
        }
    }
    sorted.append(items);
    *items = sorted;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn containers_merge_by_name_and_env_by_name() {
        let target = json!({"spec": {"containers": [
            {"name": "app", "image": "a:1", "env": [{"name": "X", "value": "1"}]},
            {"name": "side", "image": "s:1"}]}});
        let patch = json!({"spec": {"containers": [
            {"name": "app", "image": "a:2", "env": [{"name": "Y", "value": "2"}]}]}});
        let out = apply(&target, &patch).unwrap();
        assert_eq!(out["spec"]["containers"][0]["image"], "a:2");
        assert_eq!(
            out["spec"]["containers"][0]["env"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        assert_eq!(out["spec"]["containers"][1]["name"], "side");
    }

    #[test]
    fn patch_directives_delete_replace_and_primitive_list_removal() {
        let target = json!({"metadata": {"finalizers": ["a", "b"]}, "spec": {"containers": [{"name": "app"}, {"name": "side"}]}});
        let patch = json!({
            "metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]},
            "spec": {"containers": [{"name": "side", "$patch": "delete"}]}});
        let out = apply(&target, &patch).unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!(["b"]));
        assert_eq!(out["spec"]["containers"], json!([{"name": "app"}]));
        let replace = json!({"spec": {"$patch": "replace", "x": 1}});
        assert_eq!(apply(&target, &replace).unwrap()["spec"], json!({"x": 1}));
    }

    #[test]
    fn lists_without_a_merge_key_are_replaced_and_null_deletes() {
        let target = json!({"spec": {"args": ["a", "b"], "keep": 1, "drop": 2}});
        let out = apply(&target, &json!({"spec": {"args": ["c"], "drop": null}})).unwrap();
        assert_eq!(out, json!({"spec": {"args": ["c"], "keep": 1}}));
    }
}
