//! Defaulting, as kube-apiserver's registered defaulters do it for the kinds the sandbox serves.
//!
//! Only defaults that clients observe are reproduced (`spec/kubernetes.md` §5.9): a Deployment
//! read back has `replicas: 1` and a rolling-update strategy, a Secret has `type: Opaque` and no
//! `stringData`, a Namespace is `Active`, an installed CRD reports `Established`. Custom
//! resources get their schema defaults ([`crate::admission::validate`] holds the schema glue).

use base64::Engine;
use serde_json::{Value, json};

use crate::store::ResourceInfo;

/// Sets `pointer` to `value` unless it already holds a non-null value, creating parents.
fn default_at(obj: &mut Value, pointer: &str, value: Value) {
    if obj.pointer(pointer).is_some_and(|v| !v.is_null()) {
        return;
    }
    let keys: Vec<&str> = pointer.trim_start_matches('/').split('/').collect();
    let mut cur = obj;
    for key in &keys[..keys.len() - 1] {
        let Some(map) = cur.as_object_mut() else {
            return;
        };
        cur = map.entry(*key).or_insert_with(|| json!({}));
        if cur.is_null() {
            *cur = json!({});
        }
    }
    if let Some(map) = cur.as_object_mut() {
        map.insert(keys[keys.len() - 1].to_owned(), value);
    }
}

/// Applies the defaults of `info`'s kind; returns the unknown fields pruned from a custom
/// resource.
pub fn apply(info: &ResourceInfo, obj: &mut Value) -> Vec<String> {
    match (info.group.as_str(), info.plural.as_str()) {
        ("", "namespaces") => {
            default_at(obj, "/spec/finalizers", json!(["kubernetes"]));
            default_at(obj, "/status/phase", json!("Active"));
        }
        ("", "secrets") => secret(obj),
        ("", "services") => default_at(obj, "/spec/type", json!("ClusterIP")),
        ("apps", "deployments") => {
            default_at(obj, "/spec/replicas", json!(1));
            default_at(obj, "/spec/revisionHistoryLimit", json!(10));
            default_at(obj, "/spec/progressDeadlineSeconds", json!(600));
            default_at(obj, "/spec/strategy/type", json!("RollingUpdate"));
            if obj.pointer("/spec/strategy/type") == Some(&json!("RollingUpdate")) {
                default_at(obj, "/spec/strategy/rollingUpdate/maxSurge", json!("25%"));
                default_at(
                    obj,
                    "/spec/strategy/rollingUpdate/maxUnavailable",
                    json!("25%"),
                );
            }
        }
        ("apps", "replicasets" | "statefulsets") => default_at(obj, "/spec/replicas", json!(1)),
        ("batch", "jobs") => {
            default_at(obj, "/spec/parallelism", json!(1));
            default_at(obj, "/spec/backoffLimit", json!(6));
            if obj.pointer("/spec/completions").is_none()
                && obj.pointer("/spec/parallelism") == Some(&json!(1))
            {
                default_at(obj, "/spec/completions", json!(1));
            }
        }
        ("autoscaling", "horizontalpodautoscalers")
            if obj.get("apiVersion") != Some(&json!("autoscaling/v1")) =>
        {
            default_at(obj, "/spec/minReplicas", json!(1));
        }
        ("apiextensions.k8s.io", "customresourcedefinitions") => crd_status(obj),
        _ => {}
    }
    if let Some(versions) = &info.crd {
        let version = obj["apiVersion"]
            .as_str()
            .and_then(|v| v.rsplit('/').next())
            .unwrap_or_default()
            .to_owned();
        if let Some(schema) = versions
            .iter()
            .find(|v| v.name == version)
            .and_then(|v| v.schema.as_ref())
        {
            return super::validate::apply_schema_defaults(schema, obj);
        }
    }
    vec![]
}

/// `stringData` is merged into `data` (winning on conflict) and never stored.
fn secret(obj: &mut Value) {
    default_at(obj, "/type", json!("Opaque"));
    let Some(map) = obj.as_object_mut() else {
        return;
    };
    let Some(Value::Object(string_data)) = map.remove("stringData") else {
        return;
    };
    let data = map.entry("data").or_insert_with(|| json!({}));
    if !data.is_object() {
        *data = json!({});
    }
    let engine = base64::engine::general_purpose::STANDARD;
    for (k, v) in string_data {
        let text = v.as_str().unwrap_or_default().to_owned();
        data[k] = json!(engine.encode(text));
    }
}

/// An installed CRD is accepted and established at once (no controller delay to simulate).
fn crd_status(obj: &mut Value) {
    let names = obj
        .pointer("/spec/names")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let stored: Vec<Value> = obj
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .map(|vs| {
            vs.iter()
                .filter(|v| v["storage"] == json!(true))
                .map(|v| v["name"].clone())
                .collect()
        })
        .unwrap_or_default();
    let now = obj
        .pointer("/metadata/creationTimestamp")
        .cloned()
        .unwrap_or(Value::Null);
    let condition = |t: &str, reason: &str, message: &str| json!({"type": t, "status": "True", "lastTransitionTime": now, "reason": reason, "message": message});
    obj["status"] = json!({
        "acceptedNames": names,
        "storedVersions": stored,
        "conditions": [
            condition("NamesAccepted", "NoConflicts", "no conflicts found"),
            condition("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        ],
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{GroupResource, Registry};

    fn info(group: &str, plural: &str) -> std::sync::Arc<ResourceInfo> {
        Registry::default()
            .get(&GroupResource::new(group, plural))
            .unwrap()
    }

    #[test]
    fn secret_string_data_is_merged_into_data_and_dropped() {
        let mut s =
            json!({"metadata": {"name": "s"}, "stringData": {"a": "hi"}, "data": {"b": "eA=="}});
        apply(&info("", "secrets"), &mut s);
        assert_eq!(s["data"]["a"], "aGk=");
        assert_eq!(s["type"], "Opaque");
        assert!(s.get("stringData").is_none());
    }

    #[test]
    fn deployment_gets_replicas_and_rolling_update_defaults() {
        let mut d = json!({"metadata": {"name": "d"}, "spec": {}});
        apply(&info("apps", "deployments"), &mut d);
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
    }
}
