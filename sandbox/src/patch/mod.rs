//! The four PATCH flavours (`spec/kubernetes.md` §5.6) and [`Store::patch`].
//!
//! JSON patch and merge patch come from the `json-patch` crate; strategic merge and server-side
//! apply are hand-written ([`strategic`], [`apply`], [`fields`]) because nothing else implements
//! them. A patch is always applied to the latest stored object and committed with that object's
//! resourceVersion as precondition, retrying on a lost race, so patches never lose updates and
//! never need a resourceVersion from the client (one the patch sets is a precondition, see
//! [`precondition`]).

pub mod apply;
pub mod fields;
pub mod strategic;

use serde_json::Value;

use crate::error::ApiError;
use crate::store::{GroupResource, ResourceInfo, Store, Subresource, WriteOptions, meta};

/// Attempts before a patch racing with other writers gives up with 409.
const PATCH_RETRIES: usize = 5;

/// A PATCH content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    /// `application/json-patch+json` (RFC 6902).
    Json,
    /// `application/merge-patch+json` (RFC 7386).
    Merge,
    /// `application/strategic-merge-patch+json` (built-in kinds only).
    Strategic,
    /// `application/apply-patch+yaml` (server-side apply).
    Apply {
        /// `?force=true`.
        force: bool,
    },
}

impl PatchKind {
    /// The patch kind of a Content-Type header; 415 for anything else.
    pub fn from_content_type(content_type: &str) -> Result<Self, ApiError> {
        let media = content_type.split(';').next().unwrap_or_default().trim();
        match media {
            "application/json-patch+json" => Ok(Self::Json),
            "application/merge-patch+json" => Ok(Self::Merge),
            "application/strategic-merge-patch+json" => Ok(Self::Strategic),
            "application/apply-patch+yaml"
            | "application/apply-patch+json"
            | "application/apply-patch+cbor" => Ok(Self::Apply { force: false }),
            other => Err(ApiError::unsupported_media_type(other)),
        }
    }
}

/// kube-apiserver's JSON patch (evanphx/json-patch) treats `test` of `null` on an absent path
/// as passing; clients rely on it (kube-runtime's finalizer helper tests
/// `/metadata/finalizers == null` before adding the first one). The `json-patch` crate fails
/// such a test, so those operations are dropped before applying.
fn without_null_tests_of_absent_paths(
    ops: json_patch::Patch,
    current: &Value,
) -> json_patch::Patch {
    let kept = ops
        .0
        .into_iter()
        .filter(|op| match op {
            json_patch::PatchOperation::Test(test) => {
                !(test.value.is_null() && current.pointer(test.path.as_str()).is_none())
            }
            _ => true,
        })
        .collect();
    json_patch::Patch(kept)
}

/// Computes the patched object (not for apply, which needs field ownership).
pub fn apply_patch(
    kind: PatchKind,
    custom: bool,
    current: &Value,
    patch: &Value,
) -> Result<Value, ApiError> {
    match kind {
        PatchKind::Json => {
            let ops: json_patch::Patch = serde_json::from_value(patch.clone())
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            let ops = without_null_tests_of_absent_paths(ops, current);
            let mut doc = current.clone();
            json_patch::patch(&mut doc, &ops).map_err(|e| {
                ApiError::invalid_patch(format!(
                    "the server rejected our request due to an error in our request: {e}"
                ))
            })?;
            Ok(doc)
        }
        PatchKind::Merge => {
            let mut doc = current.clone();
            json_patch::merge(&mut doc, patch);
            Ok(doc)
        }
        PatchKind::Strategic if custom => Err(ApiError::unsupported_media_type(
            "application/strategic-merge-patch+json is not supported for custom resources",
        )),
        PatchKind::Strategic => strategic::apply(current, patch),
        PatchKind::Apply { .. } => Err(ApiError::internal(
            "apply patches go through server_side_apply",
        )),
    }
}

/// The object after applying one patch to `current`, with managedFields updated.
fn patched(
    info: &ResourceInfo,
    kind: PatchKind,
    current: &Value,
    patch: &Value,
    mgr: &apply::Manager<'_>,
) -> Result<Value, ApiError> {
    match kind {
        PatchKind::Apply { force } => apply::server_side_apply(Some(current), patch, mgr, force),
        _ => {
            let mut new = apply_patch(kind, info.is_custom(), current, patch)?;
            apply::record_update(Some(current), &mut new, mgr);
            Ok(new)
        }
    }
}

/// The resourceVersion a patch demands of the stored object, as kube-apiserver compares the
/// patched object's version with the stored one (`spec/kubernetes.md` §5.5): the one the body
/// sets (merge, strategic and apply patches), or one a JSON patch's operations leave on the
/// object. `None`: unconditional, applied to whatever is latest.
pub fn precondition(
    kind: PatchKind,
    patch: &Value,
    current: &Value,
    new: &Value,
) -> Option<String> {
    match kind {
        PatchKind::Json => meta::resource_version(new)
            .filter(|rv| Some(*rv) != meta::resource_version(current))
            .map(str::to_owned),
        _ => meta::resource_version(patch).map(str::to_owned),
    }
}

/// Who is patching, for server-side apply and managedFields.
#[derive(Debug, Clone, Default)]
pub struct PatchContext {
    /// Field manager (required for apply).
    pub field_manager: Option<String>,
    /// `apiVersion` of the request path.
    pub api_version: String,
    /// `status` or `scale` when patching a subresource (scale is handled by the caller).
    pub subresource: Option<String>,
    /// Dry run and main-or-status target of the write.
    pub options: WriteOptions,
}

impl Store {
    /// Patches an object. Apply patches create the object when it does not exist.
    pub fn patch(
        &self,
        gr: &GroupResource,
        ns: Option<&str>,
        name: &str,
        kind: PatchKind,
        patch: &Value,
        ctx: &PatchContext,
    ) -> Result<Value, ApiError> {
        let info = self.info(gr)?;
        let time = self.now_string();
        let mgr = apply::Manager {
            name: ctx.field_manager.as_deref().unwrap_or("unknown"),
            api_version: &ctx.api_version,
            subresource: ctx.subresource.as_deref(),
            time: &time,
        };
        let apply_creates =
            matches!(kind, PatchKind::Apply { .. }) && ctx.options.subresource == Subresource::Main;
        for _ in 0..PATCH_RETRIES {
            let current = match self.get(gr, ns, name) {
                Ok(current) => current,
                Err(e) if e.code == 404 && apply_creates => {
                    let mut created = apply::server_side_apply(None, patch, &mgr, false)?;
                    if info.namespaced {
                        meta::metadata_mut(&mut created)
                            .insert("namespace".into(), Value::from(ns.unwrap_or_default()));
                    }
                    return self.create(gr, created, &ctx.options);
                }
                Err(e) => return Err(e),
            };
            let mut new = patched(&info, kind, &current, patch, &mgr)?;
            if meta::name(&new) != name || (info.namespaced && meta::namespace(&new) != ns) {
                return Err(ApiError::bad_request(
                    "the patch may not change the object's name or namespace",
                ));
            }
            let demanded = precondition(kind, patch, &current, &new);
            let expected = demanded
                .as_deref()
                .or_else(|| meta::resource_version(&current))
                .unwrap_or_default()
                .to_owned();
            meta::metadata_mut(&mut new).insert("resourceVersion".into(), Value::from(expected));
            match self.update(gr, new, &ctx.options) {
                // Lost a race with another writer (not an apply conflict): patch the new latest.
                Err(e)
                    if e.reason == "Conflict"
                        && demanded.is_none()
                        && e.details
                            .as_ref()
                            .is_some_and(|d| d.get("causes").is_none()) =>
                {
                    continue;
                }
                other => return other,
            }
        }
        Err(ApiError::conflict(gr, name))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn testing_null_on_an_absent_path_passes_as_in_kube_apiserver() {
        let current = json!({"metadata": {"name": "x"}});
        let patch = json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": ["finalizer.keda.sh"]}
        ]);
        let patched = apply_patch(PatchKind::Json, true, &current, &patch).expect("patch applies");
        assert_eq!(
            patched["metadata"]["finalizers"],
            json!(["finalizer.keda.sh"])
        );
    }

    #[test]
    fn a_version_the_patch_sets_is_its_precondition() {
        let current = json!({"metadata": {"name": "x", "resourceVersion": "7"}});
        let merge = json!({"metadata": {"resourceVersion": "5"}, "status": {"a": 1}});
        let new = apply_patch(PatchKind::Merge, true, &current, &merge).unwrap();
        let demanded = precondition(PatchKind::Merge, &merge, &current, &new);
        assert_eq!(demanded.as_deref(), Some("5"));
        let ops = json!([{"op": "replace", "path": "/metadata/resourceVersion", "value": "5"}]);
        let new = apply_patch(PatchKind::Json, true, &current, &ops).unwrap();
        let demanded = precondition(PatchKind::Json, &ops, &current, &new);
        assert_eq!(demanded.as_deref(), Some("5"));
        let untouched = json!([{"op": "add", "path": "/status", "value": {"a": 1}}]);
        let new = apply_patch(PatchKind::Json, true, &current, &untouched).unwrap();
        assert_eq!(
            precondition(PatchKind::Json, &untouched, &current, &new),
            None
        );
        let cleared = json!({"metadata": {"resourceVersion": null}});
        let new = apply_patch(PatchKind::Merge, true, &current, &cleared).unwrap();
        assert_eq!(
            precondition(PatchKind::Merge, &cleared, &current, &new),
            None,
            "null is unconditional"
        );
    }

    #[test]
    fn other_failed_tests_still_fail() {
        let current = json!({"metadata": {"finalizers": ["a"]}});
        let patch = json!([{"op": "test", "path": "/metadata/finalizers", "value": null}]);
        assert!(apply_patch(PatchKind::Json, true, &current, &patch).is_err());
        let patch = json!([{"op": "test", "path": "/metadata/name", "value": "y"}]);
        assert!(apply_patch(PatchKind::Json, true, &current, &patch).is_err());
    }
}
