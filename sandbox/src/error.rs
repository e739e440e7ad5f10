//! The one error type of the sandbox: a Kubernetes `metav1.Status` failure.
//!
//! Every layer (store, patching, HTTP routing, auth) returns [`ApiError`] so that whatever goes
//! wrong ends up on the wire exactly as kube-apiserver would phrase it (`spec/kubernetes.md`
//! §5.8): same HTTP code, same `reason`, same message shape, `details` with the resource and
//! causes. Clients (kube-rs, kubectl) branch on `reason` and `code`, so those must be right.

use serde_json::{Value, json};

use crate::store::GroupResource;

/// A field-level cause inside a `422 Invalid` or `409 Conflict` Status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    /// `FieldValueInvalid`, `FieldValueRequired`, `FieldManagerConflict`, …
    pub reason: String,
    /// Human text, e.g. `Invalid value: -1: must be greater than or equal to 0`.
    pub message: String,
    /// Dotted field path, e.g. `spec.replicas`.
    pub field: String,
}

impl Cause {
    /// Builds a cause from its three parts.
    pub fn new(reason: &str, field: &str, message: impl Into<String>) -> Self {
        Self {
            reason: reason.to_owned(),
            message: message.into(),
            field: field.to_owned(),
        }
    }
}

/// A failed API request, rendered as a `metav1.Status` with the matching HTTP code.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{reason} ({code}): {message}")]
pub struct ApiError {
    /// HTTP status code, equal to the Status `code`.
    pub code: u16,
    /// The Status `reason` (`NotFound`, `Conflict`, `Invalid`, …).
    pub reason: &'static str,
    /// The Status `message`.
    pub message: String,
    /// The Status `details`, if any.
    pub details: Option<Value>,
}

fn details(gr: &GroupResource, name: &str) -> Value {
    json!({"name": name, "group": gr.group, "kind": gr.resource})
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    /// Attaches `details` to the error.
    #[must_use]
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// 400 BadRequest.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }
    /// 401 Unauthorized.
    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }
    /// 403 Forbidden with a free-form message.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "Forbidden", message)
    }
    /// 404 NotFound for a named object: `deployments.apps "web" not found`.
    pub fn not_found(gr: &GroupResource, name: &str) -> Self {
        Self::new(404, "NotFound", format!("{gr} \"{name}\" not found"))
            .with_details(details(gr, name))
    }
    /// 404 NotFound for a path that names nothing the server serves.
    pub fn no_route() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
        .with_details(json!({}))
    }
    /// 405 MethodNotAllowed.
    pub fn method_not_allowed(method: &str) -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            format!("the server does not allow this method on the requested resource ({method})"),
        )
    }
    /// 406 NotAcceptable.
    pub fn not_acceptable(accept: &str) -> Self {
        Self::new(
            406,
            "NotAcceptable",
            format!(
                "only the following media types are accepted: application/json, application/yaml (got {accept})"
            ),
        )
    }
    /// 409 AlreadyExists.
    pub fn already_exists(gr: &GroupResource, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{gr} \"{name}\" already exists"),
        )
        .with_details(details(gr, name))
    }
    /// 409 Conflict on a stale resourceVersion.
    pub fn conflict(gr: &GroupResource, name: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!("Operation cannot be fulfilled on {gr} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"),
        )
        .with_details(details(gr, name))
    }
    /// 409 Conflict with a custom message (preconditions, apply conflicts).
    pub fn conflict_with(message: impl Into<String>) -> Self {
        Self::new(409, "Conflict", message)
    }
    /// 410 Expired (Gone): a resourceVersion or continue token older than the history.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }
    /// 504 Timeout for a watch from a resourceVersion the server has not reached yet.
    pub fn too_large_resource_version(requested: u64, current: u64) -> Self {
        let message = format!("Too large resource version: {requested}, current: {current}");
        Self::new(504, "Timeout", message.clone()).with_details(
            json!({"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}], "retryAfterSeconds": 1}),
        )
    }
    /// 415 UnsupportedMediaType.
    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf (got {content_type})"
            ),
        )
    }
    /// 422 Invalid: `Deployment.apps "web" is invalid: spec.replicas: Invalid value: …`.
    pub fn invalid(kind: &str, group: &str, name: &str, causes: Vec<Cause>) -> Self {
        let qualified = if group.is_empty() {
            kind.to_owned()
        } else {
            format!("{kind}.{group}")
        };
        let texts: Vec<String> = causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        let summary = match texts.as_slice() {
            [one] => one.clone(),
            many => format!("[{}]", many.join(", ")),
        };
        let causes: Vec<Value> = causes
            .iter()
            .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
            .collect();
        Self::new(
            422,
            "Invalid",
            format!("{qualified} \"{name}\" is invalid: {summary}"),
        )
        .with_details(json!({"name": name, "group": group, "kind": kind, "causes": causes}))
    }
    /// 422 Invalid for a JSON patch whose operations cannot be applied.
    pub fn invalid_patch(message: impl Into<String>) -> Self {
        Self::new(422, "Invalid", message)
    }
    /// 500 InternalError.
    pub fn internal(message: impl Into<String>) -> Self {
        let message = message.into();
        Self::new(
            500,
            "InternalError",
            format!("Internal error occurred: {message}"),
        )
        .with_details(json!({"causes": [{"message": message}]}))
    }
    /// 503 ServiceUnavailable.
    pub fn service_unavailable(message: impl Into<String>) -> Self {
        Self::new(503, "ServiceUnavailable", message)
    }

    /// The `metav1.Status` body of this error.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": self.message, "reason": self.reason, "code": self.code,
        });
        if let Some(details) = &self.details {
            status["details"] = details.clone();
        }
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_names_the_group_qualified_resource() {
        let err = ApiError::not_found(&GroupResource::new("apps", "deployments"), "web");
        assert_eq!(err.message, "deployments.apps \"web\" not found");
        let core = ApiError::not_found(&GroupResource::new("", "configmaps"), "x");
        assert_eq!(core.to_status()["message"], "configmaps \"x\" not found");
        assert_eq!(core.to_status()["code"], 404);
    }

    #[test]
    fn invalid_lists_several_causes_in_brackets() {
        let causes = vec![
            Cause::new("FieldValueInvalid", "spec.a", "Invalid value: 1: bad"),
            Cause::new("FieldValueRequired", "spec.b", "Required value"),
        ];
        let err = ApiError::invalid("Foo", "example.com", "f", causes);
        assert_eq!(
            err.message,
            "Foo.example.com \"f\" is invalid: [spec.a: Invalid value: 1: bad, spec.b: Required value]"
        );
        assert_eq!(err.to_status()["details"]["causes"][1]["field"], "spec.b");
    }
}
