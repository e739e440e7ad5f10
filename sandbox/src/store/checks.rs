//! Preconditions and predicates of the store's write path: namespace state, resourceVersion
//! and UID preconditions, pending finalizers, no-op detection.

use serde_json::Value;

use super::{DeleteOptions, GroupResource, ResourceInfo, State, key, meta};
use crate::error::ApiError;

/// Namespaced creates need an existing namespace that is not terminating.
pub(super) fn check_namespace_open(st: &State, ns: &str) -> Result<(), ApiError> {
    let namespaces = GroupResource::new("", "namespaces");
    let found = st
        .objects
        .get(&namespaces)
        .and_then(|m| m.get(&key(None, ns)));
    match found {
        None => Err(ApiError::not_found(&namespaces, ns)),
        Some(n) if meta::is_deleting(n) => Err(ApiError::forbidden(format!(
            "unable to create new content in namespace {ns} because it is being terminated"
        ))),
        Some(_) => Ok(()),
    }
}

pub(super) fn check_preconditions(
    gr: &GroupResource,
    info: &ResourceInfo,
    old: &Value,
    new: &Value,
) -> Result<(), ApiError> {
    let name = meta::name(old);
    match meta::resource_version(new) {
        Some(rv) if Some(rv) != meta::resource_version(old) => {
            return Err(ApiError::conflict(gr, name));
        }
        None if info.is_custom() => {
            return Err(ApiError::invalid(
                &info.kind,
                &info.group,
                name,
                vec![crate::error::Cause::new(
                    "FieldValueInvalid",
                    "metadata.resourceVersion",
                    "Invalid value: 0x0: must be specified for an update",
                )],
            ));
        }
        _ => {}
    }
    if let Some(uid) = meta::uid(new)
        && Some(uid) != meta::uid(old)
    {
        return Err(ApiError::conflict_with(format!(
            "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
            meta::uid(old).unwrap_or_default()
        )));
    }
    Ok(())
}

pub(super) fn check_delete_preconditions(
    gr: &GroupResource,
    name: &str,
    old: &Value,
    opts: &DeleteOptions,
) -> Result<(), ApiError> {
    if let Some(uid) = &opts.precondition_uid
        && Some(uid.as_str()) != meta::uid(old)
    {
        return Err(ApiError::conflict_with(format!(
            "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
            meta::uid(old).unwrap_or_default()
        )));
    }
    if let Some(rv) = &opts.precondition_rv
        && Some(rv.as_str()) != meta::resource_version(old)
    {
        return Err(ApiError::conflict(gr, name));
    }
    Ok(())
}

/// Finalizers that still hold the object (namespaces also wait for `spec.finalizers`).
pub fn has_pending_finalizers(obj: &Value) -> bool {
    let spec_finalizers = obj
        .pointer("/spec/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty())
        && obj.get("kind").and_then(Value::as_str) == Some("Namespace");
    !meta::finalizers(obj).is_empty() || spec_finalizers
}

/// The object without fields that change on every write, for no-op detection.
pub(super) fn strip_volatile(obj: &Value) -> Value {
    let mut obj = obj.clone();
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
        m.remove("managedFields");
    }
    obj
}
