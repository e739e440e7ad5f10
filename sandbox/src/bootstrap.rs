//! Objects every kube-apiserver creates at start: the `extension-apiserver-authentication`
//! ConfigMap and the bootstrap RBAC policy that charts bind to.
//!
//! Extension API servers (the metrics adapter) are installed with a RoleBinding to
//! `kube-system/extension-apiserver-authentication-reader` and a ClusterRoleBinding to
//! `system:auth-delegator`; operators bind to `admin`/`edit`/`view`-style roles. Without these
//! roles the bindings would point at nothing and a chart that works on a real cluster would be
//! forbidden here.

use serde_json::{Value, json};

use crate::pki::Pki;
use crate::store::{GroupResource, Store, WriteOptions};

fn create(store: &Store, group: &str, resource: &str, obj: Value) {
    // Fresh store, valid objects: creation cannot fail; a restart keeps the existing ones.
    let _ = store.create(
        &GroupResource::new(group, resource),
        obj,
        &WriteOptions::default(),
    );
}

/// Publishes the authentication ConfigMap, as kube-apiserver writes it.
fn authentication_config(store: &Store, pki: &Pki) {
    create(
        store,
        "",
        "configmaps",
        json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "extension-apiserver-authentication", "namespace": "kube-system"},
        "data": {
            "client-ca-file": pki.client_ca.cert_pem,
            "requestheader-client-ca-file": pki.front_proxy_ca.cert_pem,
            "requestheader-allowed-names": "[\"front-proxy-client\"]",
            "requestheader-username-headers": "[\"X-Remote-User\"]",
            "requestheader-group-headers": "[\"X-Remote-Group\"]",
            "requestheader-extra-headers-prefix": "[\"X-Remote-Extra-\"]",
            "requestheader-uid-headers": "[\"X-Remote-Uid\"]",
        }}),
    );
}

const RBAC: &str = "rbac.authorization.k8s.io";

fn cluster_role(store: &Store, name: &str, labels: Value, rules: Value) {
    create(
        store,
        RBAC,
        "clusterroles",
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": name, "labels": labels}, "rules": rules}),
    );
}

fn aggregated_role(store: &Store, name: &str, label: &str) {
    create(
        store,
        RBAC,
        "clusterroles",
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": name, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}},
        "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {label: "true"}}]}, "rules": []}),
    );
}

fn cluster_binding(store: &Store, name: &str, role: &str, subject: Value) {
    create(
        store,
        RBAC,
        "clusterrolebindings",
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": name}, "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": role}, "subjects": [subject]}),
    );
}

/// The bootstrap roles charts and controllers bind to.
fn rbac(store: &Store) {
    let defaults = json!({"kubernetes.io/bootstrapping": "rbac-defaults"});
    cluster_role(
        store,
        "cluster-admin",
        defaults.clone(),
        json!([
        {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}, {"nonResourceURLs": ["*"], "verbs": ["*"]}]),
    );
    cluster_binding(
        store,
        "cluster-admin",
        "cluster-admin",
        json!({"apiGroup": RBAC, "kind": "Group", "name": "system:masters"}),
    );
    cluster_role(
        store,
        "system:auth-delegator",
        defaults.clone(),
        json!([
        {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]},
        {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"], "verbs": ["create"]}]),
    );
    for (name, label) in [
        ("admin", "aggregate-to-admin"),
        ("edit", "aggregate-to-edit"),
        ("view", "aggregate-to-view"),
    ] {
        aggregated_role(store, name, &format!("rbac.authorization.k8s.io/{label}"));
    }
    let all = json!([
        "",
        "apps",
        "batch",
        "autoscaling",
        "coordination.k8s.io",
        "events.k8s.io"
    ]);
    let read = json!(["get", "list", "watch"]);
    let write = json!(["create", "delete", "deletecollection", "patch", "update"]);
    cluster_role(
        store,
        "system:aggregate-to-view",
        json!({"rbac.authorization.k8s.io/aggregate-to-view": "true", "rbac.authorization.k8s.io/aggregate-to-edit": "true", "rbac.authorization.k8s.io/aggregate-to-admin": "true"}),
        json!([{"apiGroups": all, "resources": ["*"], "verbs": read}]),
    );
    cluster_role(
        store,
        "system:aggregate-to-edit",
        json!({"rbac.authorization.k8s.io/aggregate-to-edit": "true", "rbac.authorization.k8s.io/aggregate-to-admin": "true"}),
        json!([{"apiGroups": all, "resources": ["*"], "verbs": write}]),
    );
    cluster_role(
        store,
        "system:aggregate-to-admin",
        json!({"rbac.authorization.k8s.io/aggregate-to-admin": "true"}),
        json!([{"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles", "rolebindings"], "verbs": ["*"]}]),
    );
    controller_roles(store);
}

/// kube-controller-manager's HPA role and binding, and the authentication reader Role.
fn controller_roles(store: &Store) {
    let defaults = json!({"kubernetes.io/bootstrapping": "rbac-defaults"});
    cluster_role(
        store,
        "system:controller:horizontal-pod-autoscaler",
        defaults,
        json!([
        {"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers/status"], "verbs": ["update"]},
        {"apiGroups": ["*"], "resources": ["*/scale"], "verbs": ["get", "update"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
        {"apiGroups": ["metrics.k8s.io"], "resources": ["pods"], "verbs": ["list"]},
        {"apiGroups": ["custom.metrics.k8s.io", "external.metrics.k8s.io"], "resources": ["*"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch", "update"]}]),
    );
    cluster_binding(
        store,
        "system:controller:horizontal-pod-autoscaler",
        "system:controller:horizontal-pod-autoscaler",
        json!({"kind": "ServiceAccount", "name": "horizontal-pod-autoscaler", "namespace": "kube-system"}),
    );
    create(
        store,
        RBAC,
        "roles",
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "extension-apiserver-authentication-reader", "namespace": "kube-system"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["extension-apiserver-authentication"], "verbs": ["get", "list", "watch"]}]}),
    );
}

/// The local APIServices kube-apiserver registers for its own group-versions (`v1.apps`, …).
fn local_apiservices(store: &Store) {
    for info in store.registry().all().iter().filter(|i| !i.is_custom()) {
        for version in &info.versions {
            let group = &info.group;
            let name = if group.is_empty() {
                version.clone()
            } else {
                format!("{version}.{group}")
            };
            create(
                store,
                "apiregistration.k8s.io",
                "apiservices",
                json!({"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
                "metadata": {"name": name, "labels": {"kube-aggregator.kubernetes.io/automanaged": "onstart"}},
                "spec": {"group": group, "version": version, "groupPriorityMinimum": 18000, "versionPriority": 15, "service": null}}),
            );
        }
    }
}

/// Creates everything a fresh API server has.
pub fn install(store: &Store, pki: &Pki) {
    authentication_config(store, pki);
    rbac(store);
    local_apiservices(store);
}
