//! The `/scale` subresource (`spec/kubernetes.md` §4): an `autoscaling/v1` Scale view of any
//! resource with replicas, read from and written to the paths its [`ScalePaths`] name.

use serde_json::{Value, json};

use crate::controllers::selector::LabelSelector;
use crate::error::{ApiError, Cause};
use crate::patch::{PatchKind, apply_patch};
use crate::store::registry::ScalePaths;
use crate::store::{ResourceInfo, meta};

fn paths(info: &ResourceInfo) -> Result<&ScalePaths, ApiError> {
    info.scale.as_ref().ok_or_else(ApiError::no_route)
}

/// The Scale of an object.
pub fn to_scale(info: &ResourceInfo, obj: &Value) -> Result<Value, ApiError> {
    let p = paths(info)?;
    let spec = meta::dotted(obj, &p.spec_replicas)
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let status = meta::dotted(obj, &p.status_replicas)
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let selector = match &p.label_selector {
        Some(path) => meta::dotted(obj, path)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        None => obj
            .pointer("/spec/selector")
            .and_then(|s| serde_json::from_value::<LabelSelector>(s.clone()).ok())
            .map(|s| s.to_query())
            .unwrap_or_default(),
    };
    let m = obj.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let mut metadata = json!({"name": m["name"], "uid": m["uid"], "resourceVersion": m["resourceVersion"],
                              "creationTimestamp": m["creationTimestamp"]});
    if let Some(ns) = m.get("namespace") {
        metadata["namespace"] = ns.clone();
    }
    let spec_doc = if spec == 0 {
        json!({})
    } else {
        json!({"replicas": spec})
    };
    let mut status_doc = json!({"replicas": status});
    if !selector.is_empty() {
        status_doc["selector"] = json!(selector);
    }
    Ok(
        json!({"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": metadata, "spec": spec_doc, "status": status_doc}),
    )
}

/// The object after writing a Scale to it (`PUT .../scale`). Validates the replicas and carries
/// the Scale's resourceVersion over as precondition.
pub fn apply_scale(info: &ResourceInfo, obj: &Value, scale: &Value) -> Result<Value, ApiError> {
    let p = paths(info)?;
    let replicas = scale.pointer("/spec/replicas").cloned().unwrap_or(json!(0));
    if replicas.as_i64().is_none_or(|r| r < 0) {
        let cause = Cause::new(
            "FieldValueInvalid",
            "spec.replicas",
            format!("Invalid value: {replicas}: must be greater than or equal to 0"),
        );
        return Err(ApiError::invalid(
            "Scale",
            "autoscaling",
            meta::name(obj),
            vec![cause],
        ));
    }
    let mut new = obj.clone();
    meta::set_dotted(&mut new, &p.spec_replicas, replicas);
    let rv = meta::resource_version(scale).map(str::to_owned);
    let m = meta::metadata_mut(&mut new);
    // Without a version the write is unconditional for built-in kinds; the store rejects it
    // for custom resources, as kube-apiserver does.
    match rv {
        Some(rv) => m.insert("resourceVersion".into(), json!(rv)),
        None => m.remove("resourceVersion"),
    };
    Ok(new)
}

/// The object after patching its Scale (`PATCH .../scale`).
pub fn patch_scale(
    info: &ResourceInfo,
    obj: &Value,
    kind: PatchKind,
    patch: &Value,
) -> Result<Value, ApiError> {
    let scale = to_scale(info, obj)?;
    let kind = match kind {
        // Applying to a Scale only ever sets spec.replicas: a merge is the same thing here.
        PatchKind::Apply { .. } => PatchKind::Merge,
        other => other,
    };
    let patched = apply_patch(kind, false, &scale, patch)?;
    let mut new = apply_scale(info, obj, &patched)?;
    if meta::resource_version(patch).is_none() {
        let rv = meta::resource_version(obj).unwrap_or_default().to_owned();
        meta::metadata_mut(&mut new).insert("resourceVersion".into(), json!(rv));
    }
    Ok(new)
}
