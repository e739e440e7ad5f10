//! Structural-schema defaulting, pruning and validation of Kubernetes objects, the way
//! kube-apiserver applies a CustomResourceDefinition's `openAPIV3Schema` to custom resources.
//!
//! Shared by `tidescale check` (offline validation of manifests) and the sandbox control plane
//! (422 Invalid on create/update), so both reject the same objects with the same words.
//!
//! Hand-written on purpose: general JSON-Schema crates neither apply `default`s, nor prune
//! unknown fields the way the API server does (`x-kubernetes-preserve-unknown-fields`,
//! `x-kubernetes-embedded-resource`, implicit `apiVersion`/`kind`/`metadata` at the root), nor
//! word errors as kube-apiserver does (`spec.x: Invalid value: -1: spec.x in body should be
//! greater than or equal to 0`). CEL rules (`x-kubernetes-validations`) are not evaluated here;
//! callers that need a rule implement it themselves.

mod defaults;
mod error;
mod path;
mod prune;
mod schema;
mod validate;

pub use defaults::apply_defaults;
pub use error::{ErrorKind, FieldError};
pub use path::{FieldPath, Segment};
pub use prune::prune_unknown_fields;
pub use validate::validate;

use serde_json::Value;

/// Apply defaults, report (and remove) unknown fields, then validate: what the API server does
/// with a custom resource on create under `fieldValidation=Strict`.
///
/// Returns every problem found; an empty list means the object is valid as defaulted.
pub fn default_prune_validate(schema: &Value, obj: &mut Value) -> Vec<FieldError> {
    apply_defaults(schema, obj);
    let mut errors: Vec<FieldError> = prune_unknown_fields(schema, obj)
        .into_iter()
        .map(FieldError::unknown_field)
        .collect();
    errors.extend(validate(schema, obj));
    errors
}
