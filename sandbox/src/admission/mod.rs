//! Admission: what the server does to an object between the request and the store.
//!
//! kube-apiserver runs, for every write, a fixed sequence: strip read-only metadata, set
//! server-owned fields, apply defaults, validate, decide `generation`. The store calls
//! [`prepare_create`] and [`prepare_update`] inside its write path so that in-process writers
//! (the simulated controllers) get the same treatment as HTTP clients. Kind-specific defaults
//! live in [`defaults`], validation in [`validate`].

pub mod defaults;
pub mod validate;

use serde_json::{Map, Value, json};

use crate::error::{ApiError, Cause};
use crate::store::meta;
use crate::store::{ResourceInfo, Subresource};

/// Characters kube-apiserver uses for `generateName` suffixes (no vowels, no confusables).
const NAME_CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// A 5-character random suffix for `generateName` and generated pod names.
pub fn random_suffix() -> String {
    let bytes = *uuid::Uuid::new_v4().as_bytes();
    bytes[..5]
        .iter()
        .map(|b| NAME_CHARS[usize::from(*b) % NAME_CHARS.len()] as char)
        .collect()
}

fn require_object(obj: &Value) -> Result<(), ApiError> {
    if obj.is_object() {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ))
    }
}

/// Fills `apiVersion` and `kind` when missing.
fn fill_type(info: &ResourceInfo, obj: &mut Value) {
    let map = obj.as_object_mut().expect("checked by require_object");
    map.entry("kind").or_insert_with(|| json!(info.kind));
    map.entry("apiVersion")
        .or_insert_with(|| json!(info.api_version(info.preferred_version())));
}

/// `fieldValidation=Strict`: unknown fields of a custom resource fail the request.
fn check_unknown(
    info: &ResourceInfo,
    obj: &Value,
    unknown: &[String],
    strict: bool,
) -> Result<(), ApiError> {
    if !strict || unknown.is_empty() {
        return Ok(());
    }
    let version = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .and_then(|v| v.rsplit('/').next())
        .unwrap_or_default();
    let fields: Vec<String> = unknown
        .iter()
        .map(|f| format!("unknown field \"{f}\""))
        .collect();
    Err(ApiError::bad_request(format!(
        "{kind} in version \"{version}\" cannot be handled as a {kind}: strict decoding error: {}",
        fields.join(", "),
        kind = info.kind
    )))
}

/// Prepares a new object: server-owned metadata, defaults, validation. `strict` rejects
/// unknown fields instead of dropping them.
pub fn prepare_create(
    info: &ResourceInfo,
    obj: &mut Value,
    now: &str,
    strict: bool,
) -> Result<(), ApiError> {
    require_object(obj)?;
    fill_type(info, obj);
    let namespaced = info.namespaced;
    let generation = info.generation;
    let m = meta::metadata_mut(obj);
    if m.get("resourceVersion")
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty())
    {
        return Err(ApiError::bad_request(
            "resourceVersion should not be set on objects to be created",
        ));
    }
    for field in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
        "selfLink",
        "resourceVersion",
    ] {
        m.remove(field);
    }
    if !namespaced {
        m.remove("namespace");
    }
    let name_empty = m
        .get("name")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty);
    if name_empty && let Some(prefix) = m.get("generateName").and_then(Value::as_str) {
        let generated = format!("{prefix}{}", random_suffix());
        m.insert("name".into(), json!(generated));
    }
    m.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
    m.insert("creationTimestamp".into(), json!(now));
    if generation {
        m.insert("generation".into(), json!(1));
    }
    let unknown = defaults::apply(info, obj);
    check_unknown(info, obj, &unknown, strict)?;
    validate::check(info, obj, None)
}

/// Computes the object a `PUT` stores, from the stored object and the request body.
pub fn prepare_update(
    info: &ResourceInfo,
    old: &Value,
    new: Value,
    sub: Subresource,
    strict: bool,
) -> Result<Value, ApiError> {
    require_object(&new)?;
    let mut result = match sub {
        Subresource::Status => {
            let mut result = old.clone();
            set_or_remove(&mut result, "status", new.get("status").cloned());
            result
        }
        Subresource::Main => {
            let mut result = new;
            fill_type(info, &mut result);
            keep_server_metadata(old, &mut result);
            if info.status {
                set_or_remove(&mut result, "status", old.get("status").cloned());
            }
            let unknown = defaults::apply(info, &mut result);
            check_unknown(info, &result, &unknown, strict)?;
            result
        }
    };
    if info.generation {
        let old_gen = old
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let bumped = if spec_changed(info, old, &result) {
            old_gen + 1
        } else {
            old_gen
        };
        meta::metadata_mut(&mut result).insert("generation".into(), json!(bumped));
    }
    if meta::is_deleting(old) {
        let added = meta::finalizers(&result)
            .into_iter()
            .any(|f| !meta::finalizers(old).contains(&f));
        if added {
            return Err(ApiError::invalid(
                &info.kind,
                &info.group,
                meta::name(old),
                vec![Cause::new(
                    "FieldValueForbidden",
                    "metadata.finalizers",
                    "Forbidden: no new finalizers can be added if the object is being deleted",
                )],
            ));
        }
    }
    validate::check(info, &result, Some(old))?;
    Ok(result)
}

fn set_or_remove(obj: &mut Value, field: &str, value: Option<Value>) {
    let map = obj.as_object_mut().expect("objects only");
    match value {
        Some(v) => map.insert(field.to_owned(), v),
        None => map.remove(field),
    };
}

/// Metadata clients cannot change with an update.
fn keep_server_metadata(old: &Value, new: &mut Value) {
    let old_meta = old
        .get("metadata")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let m = meta::metadata_mut(new);
    for field in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
        "namespace",
        "name",
    ] {
        match old_meta.get(field) {
            Some(v) => m.insert(field.to_owned(), v.clone()),
            None => m.remove(field),
        };
    }
    if !m.contains_key("managedFields")
        && let Some(mf) = old_meta.get("managedFields")
    {
        m.insert("managedFields".into(), mf.clone());
    }
}

/// Whether a write changes what `generation` tracks: everything but metadata (and status when
/// the resource has a status subresource).
pub fn spec_changed(info: &ResourceInfo, old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| -> Map<String, Value> {
        let mut m = v.as_object().cloned().unwrap_or_default();
        m.remove("metadata");
        m.remove("apiVersion");
        m.remove("kind");
        if info.status {
            m.remove("status");
        }
        m
    };
    strip(old) != strip(new)
}
