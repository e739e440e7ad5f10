//! Field sets: which leaf fields of an object a manager owns, in `managedFields` `FieldsV1` form.
//!
//! Server-side apply needs three operations on field sets: compute the set an object (or an
//! applied configuration) specifies, compute the set a write changed, and convert to and from
//! the nested `{"f:spec":{"f:replicas":{}}}` encoding. Lists of objects with a merge key are
//! keyed (`k:{"name":"app"}`), lists of scalars are sets (`v:"x"`), other lists are atomic.
//! Hand-written: this is Kubernetes' structured-merge-diff, which has no Rust port.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use super::strategic::merge_key;

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Step {
    /// `f:<name>`: an object field.
    Field(String),
    /// `k:<json>`: a list item identified by its merge key (serialized JSON object).
    Key(String),
    /// `v:<json>`: a set member.
    Value(String),
}

/// A path from the object root to a field.
pub type Path = Vec<Step>;

/// Leaf paths an object specifies (`apiVersion`, `kind`, name and namespace excluded).
pub fn leaves(obj: &Value) -> BTreeSet<Path> {
    let mut out = BTreeSet::new();
    if let Value::Object(map) = obj {
        for (k, v) in map {
            if k == "apiVersion" || k == "kind" || k == "status" {
                continue;
            }
            if k == "metadata" {
                for (mk, mv) in v.as_object().into_iter().flatten() {
                    if matches!(
                        mk.as_str(),
                        "labels" | "annotations" | "finalizers" | "ownerReferences"
                    ) {
                        walk(
                            mv,
                            mk,
                            vec![Step::Field(k.clone()), Step::Field(mk.clone())],
                            &mut out,
                        );
                    }
                }
                continue;
            }
            walk(v, k, vec![Step::Field(k.clone())], &mut out);
        }
    }
    out
}

/// Leaf paths of a status-only write.
pub fn status_leaves(obj: &Value) -> BTreeSet<Path> {
    let mut out = BTreeSet::new();
    if let Some(status) = obj.get("status") {
        walk(
            status,
            "status",
            vec![Step::Field("status".into())],
            &mut out,
        );
    }
    out
}

fn walk(value: &Value, field: &str, path: Path, out: &mut BTreeSet<Path>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                let mut p = path.clone();
                p.push(Step::Field(k.clone()));
                walk(v, k, p, out);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            if let Some(key) =
                merge_key(field, items).filter(|k| items.iter().all(|i| i.get(*k).is_some()))
            {
                for item in items {
                    let mut p = path.clone();
                    p.push(Step::Key(json!({key: item[key]}).to_string()));
                    let mut inner = BTreeSet::new();
                    walk(item, "", p.clone(), &mut inner);
                    if inner.is_empty() {
                        out.insert(p);
                    }
                    out.extend(inner);
                }
            } else if items.iter().all(|i| !i.is_object() && !i.is_array()) {
                for item in items {
                    let mut p = path.clone();
                    p.push(Step::Value(item.to_string()));
                    out.insert(p);
                }
            } else {
                out.insert(path);
            }
        }
        _ => {
            out.insert(path);
        }
    }
}

/// The value at a path, if present.
pub fn value_at<'a>(obj: &'a Value, path: &[Step]) -> Option<&'a Value> {
    let mut cur = obj;
    for step in path {
        cur = match step {
            Step::Field(f) => cur.get(f)?,
            Step::Key(k) => {
                let key: Map<String, Value> = serde_json::from_str(k).ok()?;
                cur.as_array()?
                    .iter()
                    .find(|i| key.iter().all(|(kk, kv)| i.get(kk) == Some(kv)))?
            }
            Step::Value(v) => {
                let want: Value = serde_json::from_str(v).ok()?;
                cur.as_array()?.iter().find(|i| **i == want)?
            }
        };
    }
    Some(cur)
}

/// Paths whose value differs between two objects (present in either).
pub fn changed(
    old: &Value,
    new: &Value,
    leaves_of: fn(&Value) -> BTreeSet<Path>,
) -> BTreeSet<Path> {
    let mut all = leaves_of(old);
    all.extend(leaves_of(new));
    all.into_iter()
        .filter(|p| value_at(old, p) != value_at(new, p))
        .collect()
}

/// Encodes paths as `FieldsV1`.
pub fn encode(paths: &BTreeSet<Path>) -> Value {
    let mut root = Map::new();
    for path in paths {
        let mut cur = &mut root;
        for (i, step) in path.iter().enumerate() {
            let key = match step {
                Step::Field(f) => format!("f:{f}"),
                Step::Key(k) => format!("k:{k}"),
                Step::Value(v) => format!("v:{v}"),
            };
            let entry = cur.entry(key).or_insert_with(|| json!({}));
            if i + 1 < path.len()
                && matches!(path[i + 1], Step::Field(_))
                && matches!(step, Step::Key(_))
            {
                entry
                    .as_object_mut()
                    .expect("objects only")
                    .entry(".")
                    .or_insert_with(|| json!({}));
            }
            cur = entry.as_object_mut().expect("objects only");
        }
    }
    Value::Object(root)
}

/// Decodes `FieldsV1` into leaf paths.
pub fn decode(fields: &Value) -> BTreeSet<Path> {
    let mut out = BTreeSet::new();
    decode_into(fields, Vec::new(), &mut out);
    out
}

fn decode_into(fields: &Value, path: Path, out: &mut BTreeSet<Path>) {
    let Some(map) = fields.as_object() else {
        return;
    };
    let children: Vec<(&String, &Value)> = map.iter().filter(|(k, _)| *k != ".").collect();
    if children.is_empty() {
        if !path.is_empty() {
            out.insert(path);
        }
        return;
    }
    for (k, v) in children {
        let step = if let Some(f) = k.strip_prefix("f:") {
            Step::Field(f.to_owned())
        } else if let Some(key) = k.strip_prefix("k:") {
            Step::Key(key.to_owned())
        } else if let Some(val) = k.strip_prefix("v:") {
            Step::Value(val.to_owned())
        } else {
            continue;
        };
        let mut p = path.clone();
        p.push(step);
        decode_into(v, p, out);
    }
}

/// Renders a path as kube-apiserver does in conflict messages: `.spec.replicas`.
pub fn display(path: &[Step]) -> String {
    path.iter()
        .map(|s| match s {
            Step::Field(f) => format!(".{f}"),
            Step::Key(k) => format!(
                "[{}]",
                k.trim_start_matches('{')
                    .trim_end_matches('}')
                    .replace('"', "")
            ),
            Step::Value(v) => format!("[{v}]"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip_through_fieldsv1() {
        let obj = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x", "labels": {"a": "b"}},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "app", "image": "i"}]}}}});
        let paths = leaves(&obj);
        let encoded = encode(&paths);
        assert_eq!(encoded["f:spec"]["f:replicas"], json!({}));
        assert!(encoded["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"app\"}"]["f:image"].is_object());
        assert_eq!(decode(&encoded), paths);
        assert_eq!(
            display(&[Step::Field("spec".into()), Step::Field("replicas".into())]),
            ".spec.replicas"
        );
    }
}
