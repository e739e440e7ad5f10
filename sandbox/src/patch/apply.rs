//! Server-side apply and `managedFields` bookkeeping (`spec/kubernetes.md` §5.6).
//!
//! Each write records which leaf fields its manager set: Apply writes own exactly the fields of
//! their applied configuration, Update writes (PUT, PATCH, create) take ownership of the fields
//! they changed. An apply that would change a field another manager owns fails with 409 naming
//! that manager, unless `force=true` moves ownership; fields a manager applied before and omits
//! now are removed when nobody else owns them.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use super::fields::{self, Path, Step};
use super::strategic;
use crate::error::{ApiError, Cause};
use crate::store::meta;

/// Who writes, how, and when.
#[derive(Debug, Clone)]
pub struct Manager<'a> {
    /// The field manager name.
    pub name: &'a str,
    /// `apiVersion` the write used.
    pub api_version: &'a str,
    /// `status` or `scale` for subresource writes.
    pub subresource: Option<&'a str>,
    /// `metav1.Time` of the write.
    pub time: &'a str,
}

fn entries(obj: &Value) -> Vec<Value> {
    obj.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn set_entries(obj: &mut Value, list: Vec<Value>) {
    let list: Vec<Value> = list
        .into_iter()
        .filter(|e| e["fieldsV1"].as_object().is_some_and(|m| !m.is_empty()))
        .collect();
    let m = meta::metadata_mut(obj);
    if list.is_empty() {
        m.remove("managedFields");
    } else {
        m.insert("managedFields".into(), Value::Array(list));
    }
}

fn is_entry(e: &Value, mgr: &Manager<'_>, operation: &str) -> bool {
    e["manager"] == mgr.name
        && e["operation"] == operation
        && e.get("subresource").and_then(Value::as_str) == mgr.subresource
}

fn entry(mgr: &Manager<'_>, operation: &str, paths: &BTreeSet<Path>) -> Value {
    let mut e = json!({"manager": mgr.name, "operation": operation, "apiVersion": mgr.api_version,
        "time": mgr.time, "fieldsType": "FieldsV1", "fieldsV1": fields::encode(paths)});
    if let Some(sub) = mgr.subresource {
        e["subresource"] = json!(sub);
    }
    e
}

fn leaves_for(sub: Option<&str>) -> fn(&Value) -> BTreeSet<Path> {
    if sub == Some("status") {
        fields::status_leaves
    } else {
        fields::leaves
    }
}

/// Records an Update-operation write: the manager takes the fields that changed.
pub fn record_update(old: Option<&Value>, new: &mut Value, mgr: &Manager<'_>) {
    let empty = json!({});
    let mut changed = fields::changed(old.unwrap_or(&empty), new, leaves_for(mgr.subresource));
    if old.is_none() {
        changed = leaves_for(mgr.subresource)(new);
    }
    if changed.is_empty() {
        return;
    }
    let mut list = entries(new);
    let mut mine = BTreeSet::new();
    for e in &mut list {
        let mut owned = fields::decode(&e["fieldsV1"]);
        if is_entry(e, mgr, "Update") {
            mine = owned;
            continue;
        }
        owned.retain(|p| !changed.contains(p));
        e["fieldsV1"] = fields::encode(&owned);
    }
    list.retain(|e| !is_entry(e, mgr, "Update"));
    mine.extend(changed);
    list.push(entry(mgr, "Update", &mine));
    set_entries(new, list);
}

/// Applies `applied` for `mgr` on top of `current` (`None` = create), with `force` semantics.
pub fn server_side_apply(
    current: Option<&Value>,
    applied: &Value,
    mgr: &Manager<'_>,
    force: bool,
) -> Result<Value, ApiError> {
    let applied_paths = leaves_for(mgr.subresource)(applied);
    let base = current.cloned().unwrap_or_else(|| json!({}));
    let mut list = entries(&base);
    let conflicts = resolve_conflicts(&mut list, &base, applied, &applied_paths, mgr, force);
    if !conflicts.is_empty() {
        return Err(conflict_error(&conflicts));
    }
    let previously: BTreeSet<Path> = list
        .iter()
        .find(|e| is_entry(e, mgr, "Apply"))
        .map(|e| fields::decode(&e["fieldsV1"]))
        .unwrap_or_default();
    let others: BTreeSet<Path> = list
        .iter()
        .filter(|e| !is_entry(e, mgr, "Apply"))
        .flat_map(|e| fields::decode(&e["fieldsV1"]))
        .collect();
    let mut result = base.clone();
    for dropped in previously
        .difference(&applied_paths)
        .filter(|p| !others.contains(*p))
    {
        remove_at(&mut result, dropped);
    }
    let mut patch = applied.clone();
    if let Some(m) = patch.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("managedFields");
        m.remove("resourceVersion");
    }
    let mut result = strategic::apply(&result, &patch)?;
    list.retain(|e| !is_entry(e, mgr, "Apply"));
    list.push(entry(mgr, "Apply", &applied_paths));
    set_entries(&mut result, list);
    Ok(result)
}

/// Finds fields of other managers the apply would change; with `force`, takes them over.
fn resolve_conflicts(
    list: &mut [Value],
    base: &Value,
    applied: &Value,
    applied_paths: &BTreeSet<Path>,
    mgr: &Manager<'_>,
    force: bool,
) -> Vec<(String, String)> {
    let mut conflicts = vec![];
    for e in list.iter_mut().filter(|e| !is_entry(e, mgr, "Apply")) {
        let mut owned = fields::decode(&e["fieldsV1"]);
        let clashing: Vec<Path> = owned
            .iter()
            .filter(|p| {
                applied_paths.contains(*p)
                    && fields::value_at(base, p) != fields::value_at(applied, p)
            })
            .cloned()
            .collect();
        if clashing.is_empty() {
            continue;
        }
        if force {
            owned.retain(|p| !clashing.contains(p));
            e["fieldsV1"] = fields::encode(&owned);
        } else {
            let who = describe(e);
            conflicts.extend(clashing.iter().map(|p| (who.clone(), fields::display(p))));
        }
    }
    conflicts
}

fn describe(e: &Value) -> String {
    let mut who = format!("\"{}\"", e["manager"].as_str().unwrap_or_default());
    if let Some(sub) = e.get("subresource").and_then(Value::as_str) {
        who.push_str(&format!(" with subresource \"{sub}\""));
    }
    format!(
        "{who} using {}",
        e["apiVersion"].as_str().unwrap_or_default()
    )
}

fn conflict_error(conflicts: &[(String, String)]) -> ApiError {
    let message = match conflicts {
        [(who, field)] => format!("Apply failed with 1 conflict: conflict with {who}: {field}"),
        many => {
            let lines: Vec<String> = many.iter().map(|(_, f)| format!("- {f}")).collect();
            format!(
                "Apply failed with {} conflicts: conflicts with {}:\n{}",
                many.len(),
                many[0].0,
                lines.join("\n")
            )
        }
    };
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|(who, field)| {
            let c = Cause::new(
                "FieldManagerConflict",
                field,
                format!("conflict with {who}"),
            );
            json!({"reason": c.reason, "message": c.message, "field": c.field})
        })
        .collect();
    ApiError::conflict_with(message).with_details(json!({"causes": causes}))
}

/// Removes the value at a path (object field, keyed list item or set member).
fn remove_at(obj: &mut Value, path: &[Step]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = obj;
    for step in parents {
        let next = match step {
            Step::Field(f) => cur.get_mut(f),
            Step::Key(k) => {
                let key: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
                cur.as_array_mut().and_then(|a| {
                    a.iter_mut()
                        .find(|i| key.iter().all(|(kk, kv)| i.get(kk) == Some(kv)))
                })
            }
            Step::Value(_) => None,
        };
        let Some(next) = next else { return };
        cur = next;
    }
    match last {
        Step::Field(f) => {
            if let Some(m) = cur.as_object_mut() {
                m.remove(f);
            }
        }
        Step::Key(k) => {
            let key: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
            if let Some(a) = cur.as_array_mut() {
                a.retain(|i| !key.iter().all(|(kk, kv)| i.get(kk) == Some(kv)));
            }
        }
        Step::Value(v) => {
            let want: Value = serde_json::from_str(v).unwrap_or(Value::Null);
            if let Some(a) = cur.as_array_mut() {
                a.retain(|i| *i != want);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mgr(name: &str) -> Manager<'_> {
        Manager {
            name,
            api_version: "apps/v1",
            subresource: None,
            time: "2024-05-01T12:00:00Z",
        }
    }

    #[test]
    fn apply_conflicts_with_another_managers_field_unless_forced() {
        let applied = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {"replicas": 2}});
        let first = server_side_apply(None, &applied, &mgr("alice"), false).unwrap();
        let mut other = applied.clone();
        other["spec"]["replicas"] = json!(5);
        let err = server_side_apply(Some(&first), &other, &mgr("bob"), false).unwrap_err();
        assert_eq!(err.code, 409);
        assert_eq!(
            err.message,
            "Apply failed with 1 conflict: conflict with \"alice\" using apps/v1: .spec.replicas"
        );
        let forced = server_side_apply(Some(&first), &other, &mgr("bob"), true).unwrap();
        assert_eq!(forced["spec"]["replicas"], 5);
        let owners: Vec<&str> = forced["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["manager"].as_str().unwrap())
            .collect();
        assert_eq!(owners, vec!["bob"]);
    }

    #[test]
    fn fields_dropped_from_an_apply_are_removed() {
        let applied = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}});
        let first = server_side_apply(None, &applied, &mgr("alice"), false).unwrap();
        let smaller = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}});
        let second = server_side_apply(Some(&first), &smaller, &mgr("alice"), false).unwrap();
        assert_eq!(second["data"], json!({"a": "1"}));
    }

    #[test]
    fn updates_take_ownership_of_changed_fields() {
        let applied = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {"replicas": 2}});
        let old = server_side_apply(None, &applied, &mgr("alice"), false).unwrap();
        let mut new = old.clone();
        new["spec"]["replicas"] = json!(4);
        record_update(
            Some(&old),
            &mut new,
            &Manager {
                subresource: Some("scale"),
                ..mgr("kubectl")
            },
        );
        let err = server_side_apply(Some(&new), &applied, &mgr("alice"), false).unwrap_err();
        assert!(
            err.message
                .contains("conflict with \"kubectl\" with subresource \"scale\""),
            "{}",
            err.message
        );
    }
}
