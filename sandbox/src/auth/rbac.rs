//! RBAC authorization over the Roles, ClusterRoles and bindings in the store.
//!
//! The rules are evaluated per request from the current objects, like kube-apiserver's RBAC
//! authorizer (which reads from an informer cache): verbs, apiGroups, resources with
//! `resource/subresource` and `*`, resourceNames, nonResourceURLs with trailing `*`, and
//! ClusterRole aggregation by label selector. `system:masters` bypasses RBAC, and the
//! bootstrap roles every cluster has are built in: `system:public-info-viewer` (health and
//! version for everyone) and `system:discovery` + self access reviews for authenticated users.

use serde_json::Value;

use super::UserInfo;
use crate::error::ApiError;
use crate::store::{GroupResource, Store, meta};

/// What a request wants to do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attributes {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`, or an
    /// HTTP verb in lower case for non-resource requests.
    pub verb: String,
    /// True for resource requests.
    pub resource_request: bool,
    /// API group.
    pub group: String,
    /// Resource (plural).
    pub resource: String,
    /// Subresource.
    pub subresource: String,
    /// Object name (empty for collections).
    pub name: String,
    /// Namespace (empty for cluster scope).
    pub namespace: String,
    /// Request path (non-resource requests).
    pub path: String,
}

/// Paths anyone may read.
const PUBLIC_PATHS: &[&str] = &["/healthz", "/livez", "/readyz", "/version", "/version/"];

fn strs(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn rule_allows(rule: &Value, a: &Attributes) -> bool {
    let verbs = strs(&rule["verbs"]);
    if !verbs.iter().any(|v| *v == "*" || *v == a.verb) {
        return false;
    }
    if !a.resource_request {
        return strs(&rule["nonResourceURLs"]).iter().any(|u| {
            *u == a.path || (u.ends_with('*') && a.path.starts_with(u.trim_end_matches('*')))
        });
    }
    let groups = strs(&rule["apiGroups"]);
    if !groups.iter().any(|g| *g == "*" || *g == a.group) {
        return false;
    }
    let combined = if a.subresource.is_empty() {
        a.resource.clone()
    } else {
        format!("{}/{}", a.resource, a.subresource)
    };
    let resources = strs(&rule["resources"]);
    let resource_ok = resources.iter().any(|r| {
        *r == "*"
            || *r == combined
            || (a.subresource.is_empty() && *r == a.resource)
            || (r.starts_with("*/") && r[2..] == a.subresource && !a.subresource.is_empty())
    });
    let names = strs(&rule["resourceNames"]);
    resource_ok && (names.is_empty() || names.contains(&a.name.as_str()))
}

fn subject_matches(subject: &Value, user: &UserInfo) -> bool {
    let name = subject["name"].as_str().unwrap_or_default();
    match subject["kind"].as_str() {
        Some("User") => name == user.name,
        Some("Group") => user.groups.iter().any(|g| g == name),
        Some("ServiceAccount") => {
            let ns = subject["namespace"].as_str().unwrap_or_default();
            user.name == format!("system:serviceaccount:{ns}:{name}")
        }
        _ => false,
    }
}

fn rules_of_cluster_role(store: &Store, name: &str) -> Vec<Value> {
    let gr = GroupResource::new("rbac.authorization.k8s.io", "clusterroles");
    let Ok(role) = store.get(&gr, None, name) else {
        return vec![];
    };
    let mut rules: Vec<Value> = role["rules"].as_array().cloned().unwrap_or_default();
    if let Some(selectors) = role
        .pointer("/aggregationRule/clusterRoleSelectors")
        .and_then(Value::as_array)
    {
        let (all, _) = store.list(&gr, None);
        for other in all.iter().filter(|o| meta::name(o) != name) {
            let labels = meta::labels(other);
            let selected = selectors.iter().any(|sel| {
                sel["matchLabels"].as_object().is_some_and(|want| {
                    want.iter()
                        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
                })
            });
            if selected {
                rules.extend(other["rules"].as_array().cloned().unwrap_or_default());
            }
        }
    }
    rules
}

fn role_rules(store: &Store, role_ref: &Value, namespace: Option<&str>) -> Vec<Value> {
    let name = role_ref["name"].as_str().unwrap_or_default();
    match (role_ref["kind"].as_str(), namespace) {
        (Some("ClusterRole"), _) => rules_of_cluster_role(store, name),
        (Some("Role"), Some(ns)) => store
            .get(
                &GroupResource::new("rbac.authorization.k8s.io", "roles"),
                Some(ns),
                name,
            )
            .ok()
            .and_then(|r| r["rules"].as_array().cloned())
            .unwrap_or_default(),
        _ => vec![],
    }
}

/// Decides a request; `Ok(reason)` if allowed.
/// The bootstrap policy every cluster has: masters may do anything, everyone may read health
/// and version, authenticated users may read discovery and review themselves.
fn bootstrap(user: &UserInfo, a: &Attributes) -> Option<String> {
    if user.is_master() {
        return Some("allowed by group system:masters".into());
    }
    if !a.resource_request && PUBLIC_PATHS.contains(&a.path.as_str()) {
        return Some("RBAC: allowed by ClusterRoleBinding \"system:public-info-viewer\"".into());
    }
    let authenticated = user.groups.iter().any(|g| g == "system:authenticated");
    let discovery = !a.resource_request
        && (a.path == "/api"
            || a.path == "/apis"
            || a.path.starts_with("/api/")
            || a.path.starts_with("/apis/")
            || a.path.starts_with("/openapi"));
    let self_review = a.resource_request
        && a.verb == "create"
        && a.group == "authorization.k8s.io"
        && matches!(
            a.resource.as_str(),
            "selfsubjectaccessreviews" | "selfsubjectrulesreviews"
        );
    (authenticated && (discovery || self_review))
        .then(|| "RBAC: allowed by ClusterRoleBinding \"system:discovery\"".into())
}

pub fn authorize(store: &Store, user: &UserInfo, a: &Attributes) -> Result<String, String> {
    if let Some(reason) = bootstrap(user, a) {
        return Ok(reason);
    }
    let rbac = "rbac.authorization.k8s.io";
    let (crbs, _) = store.list(&GroupResource::new(rbac, "clusterrolebindings"), None);
    for b in crbs
        .iter()
        .filter(|b| strs_subjects(b).iter().any(|s| subject_matches(s, user)))
    {
        if role_rules(store, &b["roleRef"], None)
            .iter()
            .any(|r| rule_allows(r, a))
        {
            return Ok(format!(
                "RBAC: allowed by ClusterRoleBinding \"{}\"",
                meta::name(b)
            ));
        }
    }
    if a.resource_request && !a.namespace.is_empty() {
        let (rbs, _) = store.list(
            &GroupResource::new(rbac, "rolebindings"),
            Some(&a.namespace),
        );
        for b in rbs
            .iter()
            .filter(|b| strs_subjects(b).iter().any(|s| subject_matches(s, user)))
        {
            if role_rules(store, &b["roleRef"], Some(&a.namespace))
                .iter()
                .any(|r| rule_allows(r, a))
            {
                return Ok(format!(
                    "RBAC: allowed by RoleBinding \"{}/{}\"",
                    a.namespace,
                    meta::name(b)
                ));
            }
        }
    }
    Err(String::new())
}

fn strs_subjects(binding: &Value) -> Vec<Value> {
    binding["subjects"].as_array().cloned().unwrap_or_default()
}

/// The 403 kube-apiserver returns for a denied request.
pub fn forbidden(user: &UserInfo, a: &Attributes) -> ApiError {
    if !a.resource_request {
        return ApiError::forbidden(format!(
            "forbidden: User \"{}\" cannot {} path \"{}\"",
            user.name, a.verb, a.path
        ));
    }
    let gr = GroupResource::new(&a.group, &a.resource);
    let object = if a.name.is_empty() {
        gr.to_string()
    } else {
        format!("{gr} \"{}\"", a.name)
    };
    let resource = if a.subresource.is_empty() {
        a.resource.clone()
    } else {
        format!("{}/{}", a.resource, a.subresource)
    };
    let scope = if a.namespace.is_empty() {
        "at the cluster scope".to_owned()
    } else {
        format!("in the namespace \"{}\"", a.namespace)
    };
    ApiError::forbidden(format!("{object} is forbidden: User \"{}\" cannot {} resource \"{resource}\" in API group \"{}\" {scope}", user.name, a.verb, a.group))
        .with_details(serde_json::json!({"name": a.name, "group": a.group, "kind": a.resource}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn attrs(verb: &str, resource: &str, sub: &str, name: &str) -> Attributes {
        Attributes {
            verb: verb.into(),
            resource_request: true,
            group: "apps".into(),
            resource: resource.into(),
            subresource: sub.into(),
            name: name.into(),
            namespace: "default".into(),
            path: String::new(),
        }
    }

    #[test]
    fn rules_match_verbs_subresources_and_names() {
        let rule = json!({"apiGroups": ["apps"], "resources": ["deployments", "deployments/scale"], "verbs": ["get", "update"], "resourceNames": ["web"]});
        assert!(rule_allows(&rule, &attrs("get", "deployments", "", "web")));
        assert!(rule_allows(
            &rule,
            &attrs("update", "deployments", "scale", "web")
        ));
        assert!(!rule_allows(&rule, &attrs("get", "deployments", "", "db")));
        assert!(!rule_allows(
            &rule,
            &attrs("delete", "deployments", "", "web")
        ));
        assert!(!rule_allows(
            &rule,
            &attrs("get", "deployments", "status", "web")
        ));
        let wildcard = json!({"apiGroups": ["*"], "resources": ["*/scale"], "verbs": ["*"]});
        assert!(rule_allows(
            &wildcard,
            &attrs("patch", "statefulsets", "scale", "x")
        ));
    }

    #[test]
    fn forbidden_messages_name_user_verb_resource_and_scope() {
        let user = UserInfo::new("jane", &[]);
        let err = forbidden(&user, &attrs("list", "deployments", "", ""));
        assert_eq!(
            err.message,
            "deployments.apps is forbidden: User \"jane\" cannot list resource \"deployments\" in API group \"apps\" in the namespace \"default\""
        );
    }
}
