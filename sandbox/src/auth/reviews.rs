//! `authentication.k8s.io/v1` TokenReview and `authorization.k8s.io/v1` (Self/Local)
//! SubjectAccessReview: the delegated-auth endpoints extension API servers (the metrics
//! adapter) call. They are answered from the same token table and RBAC rules the sandbox
//! itself enforces, and never stored.

use serde_json::{Value, json};

use super::rbac::{Attributes, authorize};
use super::{Authenticator, UserInfo};
use crate::error::ApiError;
use crate::store::Store;

/// Answers a review `POST`; `resource` is the plural (`tokenreviews`, …).
pub fn review(
    store: &Store,
    auth: &Authenticator,
    caller: &UserInfo,
    resource: &str,
    namespace: Option<&str>,
    body: Value,
) -> Result<Value, ApiError> {
    let spec = body.get("spec").cloned().unwrap_or_else(|| json!({}));
    let status = match resource {
        "tokenreviews" => token_review(auth, &spec),
        "subjectaccessreviews" => access_review(store, &spec_user(&spec), &spec, None)?,
        "localsubjectaccessreviews" => access_review(store, &spec_user(&spec), &spec, namespace)?,
        "selfsubjectaccessreviews" => access_review(store, caller, &spec, None)?,
        _ => return Err(ApiError::no_route()),
    };
    let mut out = body;
    out["metadata"] = json!({"creationTimestamp": null});
    out["status"] = status;
    Ok(out)
}

fn token_review(auth: &Authenticator, spec: &Value) -> Value {
    let token = spec["token"].as_str().unwrap_or_default();
    let audiences = spec
        .get("audiences")
        .cloned()
        .unwrap_or_else(|| json!(["https://kubernetes.default.svc.cluster.local"]));
    match auth.user_for_token(token) {
        Some(user) => {
            json!({"authenticated": true, "user": {"username": user.name, "uid": user.uid, "groups": user.groups}, "audiences": audiences})
        }
        None => json!({"authenticated": false, "user": {}, "error": "invalid bearer token"}),
    }
}

fn spec_user(spec: &Value) -> UserInfo {
    let groups: Vec<String> = spec["groups"]
        .as_array()
        .map(|g| {
            g.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    UserInfo {
        name: spec["user"].as_str().unwrap_or_default().to_owned(),
        uid: spec["uid"].as_str().unwrap_or_default().to_owned(),
        groups,
    }
}

fn access_review(
    store: &Store,
    user: &UserInfo,
    spec: &Value,
    namespace: Option<&str>,
) -> Result<Value, ApiError> {
    let attrs = if let Some(r) = spec.get("resourceAttributes") {
        let s = |k: &str| r[k].as_str().unwrap_or_default().to_owned();
        let ns = s("namespace");
        if let Some(path_ns) = namespace
            && !ns.is_empty()
            && ns != path_ns
        {
            return Err(ApiError::bad_request(
                "spec.resourceAttributes.namespace must match the namespace of the request",
            ));
        }
        Attributes {
            verb: s("verb"),
            resource_request: true,
            group: s("group"),
            resource: s("resource"),
            subresource: s("subresource"),
            name: s("name"),
            namespace: namespace.map_or(ns, str::to_owned),
            path: String::new(),
        }
    } else if let Some(n) = spec.get("nonResourceAttributes") {
        Attributes {
            verb: n["verb"].as_str().unwrap_or_default().to_owned(),
            path: n["path"].as_str().unwrap_or_default().to_owned(),
            ..Attributes::default()
        }
    } else {
        return Err(ApiError::bad_request(
            "exactly one of nonResourceAttributes or resourceAttributes must be specified",
        ));
    };
    Ok(match authorize(store, user, &attrs) {
        Ok(reason) => json!({"allowed": true, "reason": reason}),
        Err(_) => json!({"allowed": false}),
    })
}
