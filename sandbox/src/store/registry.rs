//! Which resources the sandbox serves, and how each behaves.
//!
//! A [`ResourceInfo`] is the server-side twin of a discovery entry: names, scope, served versions,
//! subresources, and the few behaviour switches the store needs (does a spec change bump
//! `generation`? does a PUT need a resourceVersion?). The built-in table mirrors kube-apiserver
//! 1.32 for the kinds tidescale touches; CRDs add and remove entries at run time through
//! [`Registry::sync_crd`], which is why the registry is shared behind a lock.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use serde_json::Value;

use super::GroupResource;

/// Where a resource's scale subresource reads and writes (CRD `subresources.scale`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScalePaths {
    /// Dotted path of the desired replicas, e.g. `.spec.replicas`.
    pub spec_replicas: String,
    /// Dotted path of the observed replicas, e.g. `.status.replicas`.
    pub status_replicas: String,
    /// Dotted path of the serialized label selector, if any.
    pub label_selector: Option<String>,
}

/// Per-version data of a custom resource: schema and printer columns.
#[derive(Debug, Clone, Default)]
pub struct CrdVersion {
    /// Version name (`v1alpha1`).
    pub name: String,
    /// `schema.openAPIV3Schema`, if given.
    pub schema: Option<Value>,
    /// `additionalPrinterColumns`.
    pub printer_columns: Vec<Value>,
}

/// Everything the server knows about one resource (one group + plural).
#[derive(Debug, Clone)]
pub struct ResourceInfo {
    /// API group, `""` for core.
    pub group: String,
    /// Served versions, preferred first.
    pub versions: Vec<String>,
    /// Plural resource name (`deployments`).
    pub plural: String,
    /// Singular name (`deployment`).
    pub singular: String,
    /// Kind (`Deployment`).
    pub kind: String,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
    /// kubectl short names.
    pub short_names: Vec<String>,
    /// Categories (`all`).
    pub categories: Vec<String>,
    /// Has a `/status` subresource.
    pub status: bool,
    /// Has a `/scale` subresource, and where it points.
    pub scale: Option<ScalePaths>,
    /// Spec changes bump `metadata.generation`.
    pub generation: bool,
    /// Stored objects (false for review-style resources that are only created and answered).
    pub stored: bool,
    /// Custom resource data; `None` for built-in kinds (which also enables strategic merge).
    pub crd: Option<Vec<CrdVersion>>,
}

impl ResourceInfo {
    /// The `(group, plural)` key.
    pub fn group_resource(&self) -> GroupResource {
        GroupResource::new(&self.group, &self.plural)
    }

    /// `apiVersion` for a version of this resource (`apps/v1`, or `v1` for core).
    pub fn api_version(&self, version: &str) -> String {
        if self.group.is_empty() {
            version.to_owned()
        } else {
            format!("{}/{version}", self.group)
        }
    }

    /// The preferred (storage) version.
    pub fn preferred_version(&self) -> &str {
        self.versions.first().map_or("v1", String::as_str)
    }

    /// Whether the resource is a custom resource.
    pub fn is_custom(&self) -> bool {
        self.crd.is_some()
    }

    /// Verbs for discovery.
    pub fn verbs(&self) -> Vec<&'static str> {
        if !self.stored {
            return vec!["create"];
        }
        vec![
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ]
    }

    /// The CRD data of one version, if this is a custom resource serving it.
    pub fn crd_version(&self, version: &str) -> Option<&CrdVersion> {
        self.crd.as_ref()?.iter().find(|v| v.name == version)
    }
}

/// Compact row of the built-in table: group, versions, plural, singular, kind, namespaced,
/// short names, categories, status, scale, generation.
type Row = (
    &'static str,
    &'static [&'static str],
    &'static str,
    &'static str,
    &'static str,
    bool,
    &'static [&'static str],
    &'static [&'static str],
    bool,
    bool,
    bool,
);

const ALL: &[&str] = &["all"];

#[rustfmt::skip]
const BUILTIN: &[Row] = &[
    ("", &["v1"], "namespaces", "namespace", "Namespace", false, &["ns"], &[], true, false, false),
    ("", &["v1"], "pods", "pod", "Pod", true, &["po"], ALL, true, false, false),
    ("", &["v1"], "secrets", "secret", "Secret", true, &[], &[], false, false, false),
    ("", &["v1"], "configmaps", "configmap", "ConfigMap", true, &["cm"], &[], false, false, false),
    ("", &["v1"], "services", "service", "Service", true, &["svc"], ALL, true, false, false),
    ("", &["v1"], "events", "event", "Event", true, &["ev"], &[], false, false, false),
    ("", &["v1"], "endpoints", "endpoints", "Endpoints", true, &["ep"], &[], false, false, false),
    ("", &["v1"], "serviceaccounts", "serviceaccount", "ServiceAccount", true, &["sa"], &[], false, false, false),
    ("apps", &["v1"], "deployments", "deployment", "Deployment", true, &["deploy"], ALL, true, true, true),
    ("apps", &["v1"], "replicasets", "replicaset", "ReplicaSet", true, &["rs"], ALL, true, true, true),
    ("apps", &["v1"], "statefulsets", "statefulset", "StatefulSet", true, &["sts"], ALL, true, true, true),
    ("batch", &["v1"], "jobs", "job", "Job", true, &[], ALL, true, false, true),
    ("batch", &["v1"], "cronjobs", "cronjob", "CronJob", true, &["cj"], ALL, true, false, true),
    ("autoscaling", &["v2", "v1"], "horizontalpodautoscalers", "horizontalpodautoscaler", "HorizontalPodAutoscaler", true, &["hpa"], ALL, true, false, true),
    ("coordination.k8s.io", &["v1"], "leases", "lease", "Lease", true, &[], &[], false, false, false),
    ("policy", &["v1"], "poddisruptionbudgets", "poddisruptionbudget", "PodDisruptionBudget", true, &["pdb"], &[], true, false, true),
    ("networking.k8s.io", &["v1"], "networkpolicies", "networkpolicy", "NetworkPolicy", true, &["netpol"], &[], false, false, true),
    ("events.k8s.io", &["v1"], "events", "event", "Event", true, &["ev"], &[], false, false, false),
    ("rbac.authorization.k8s.io", &["v1"], "roles", "role", "Role", true, &[], &[], false, false, false),
    ("rbac.authorization.k8s.io", &["v1"], "clusterroles", "clusterrole", "ClusterRole", false, &[], &[], false, false, false),
    ("rbac.authorization.k8s.io", &["v1"], "rolebindings", "rolebinding", "RoleBinding", true, &[], &[], false, false, false),
    ("rbac.authorization.k8s.io", &["v1"], "clusterrolebindings", "clusterrolebinding", "ClusterRoleBinding", false, &[], &[], false, false, false),
    ("apiextensions.k8s.io", &["v1"], "customresourcedefinitions", "customresourcedefinition", "CustomResourceDefinition", false, &["crd", "crds"], &["api-extensions"], true, false, true),
    ("apiregistration.k8s.io", &["v1"], "apiservices", "apiservice", "APIService", false, &[], &["api-extensions"], true, false, false),
];

/// Review resources: created and answered, never stored.
const REVIEWS: &[(&str, &str, &str, &str, bool)] = &[
    (
        "authentication.k8s.io",
        "tokenreviews",
        "tokenreview",
        "TokenReview",
        false,
    ),
    (
        "authorization.k8s.io",
        "subjectaccessreviews",
        "subjectaccessreview",
        "SubjectAccessReview",
        false,
    ),
    (
        "authorization.k8s.io",
        "selfsubjectaccessreviews",
        "selfsubjectaccessreview",
        "SelfSubjectAccessReview",
        false,
    ),
    (
        "authorization.k8s.io",
        "localsubjectaccessreviews",
        "localsubjectaccessreview",
        "LocalSubjectAccessReview",
        true,
    ),
];

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn builtin_infos() -> Vec<ResourceInfo> {
    let replicas = ScalePaths {
        spec_replicas: ".spec.replicas".into(),
        status_replicas: ".status.replicas".into(),
        label_selector: None,
    };
    let mut infos: Vec<ResourceInfo> = BUILTIN
        .iter()
        .map(
            |&(
                group,
                versions,
                plural,
                singular,
                kind,
                namespaced,
                short,
                cats,
                status,
                scale,
                generation,
            )| ResourceInfo {
                group: group.into(),
                versions: strings(versions),
                plural: plural.into(),
                singular: singular.into(),
                kind: kind.into(),
                namespaced,
                short_names: strings(short),
                categories: strings(cats),
                status,
                scale: scale.then(|| replicas.clone()),
                generation,
                stored: true,
                crd: None,
            },
        )
        .collect();
    infos.extend(REVIEWS.iter().map(
        |&(group, plural, singular, kind, namespaced)| ResourceInfo {
            group: group.into(),
            versions: vec!["v1".into()],
            plural: plural.into(),
            singular: singular.into(),
            kind: kind.into(),
            namespaced,
            short_names: vec![],
            categories: vec![],
            status: false,
            scale: None,
            generation: false,
            stored: false,
            crd: None,
        },
    ));
    infos
}

/// The set of served resources, shared between the store and the HTTP layer.
#[derive(Debug)]
pub struct Registry {
    resources: RwLock<BTreeMap<GroupResource, Arc<ResourceInfo>>>,
}

impl Default for Registry {
    fn default() -> Self {
        let map = builtin_infos()
            .into_iter()
            .map(|i| (i.group_resource(), Arc::new(i)))
            .collect();
        Self {
            resources: RwLock::new(map),
        }
    }
}

impl Registry {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<GroupResource, Arc<ResourceInfo>>> {
        // Every write is a single map insert/remove, so a poisoned lock still holds a valid map.
        self.resources.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The resource with this group and plural.
    pub fn get(&self, gr: &GroupResource) -> Option<Arc<ResourceInfo>> {
        self.read().get(gr).cloned()
    }

    /// The resource with this group, served version and plural.
    pub fn resolve(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceInfo>> {
        self.get(&GroupResource::new(group, plural))
            .filter(|i| i.versions.iter().any(|v| v == version))
    }

    /// All resources, in (group, plural) order.
    pub fn all(&self) -> Vec<Arc<ResourceInfo>> {
        self.read().values().cloned().collect()
    }

    /// The resource of a kind in a group (for apply-create and owner references).
    pub fn by_kind(&self, group: &str, kind: &str) -> Option<Arc<ResourceInfo>> {
        self.read()
            .values()
            .find(|i| i.group == group && i.kind == kind)
            .cloned()
    }

    /// Registers, replaces or (with `None`) removes the resource a CRD defines.
    pub fn sync_crd(&self, name: &str, crd: Option<&Value>) {
        let mut map = self.resources.write().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, i| !(i.is_custom() && format!("{}.{}", i.plural, i.group) == name));
        if let Some(info) = crd.and_then(info_from_crd) {
            map.insert(info.group_resource(), Arc::new(info));
        }
    }
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str()
}

fn str_list(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Builds the [`ResourceInfo`] of a CRD object; `None` if the CRD lacks required parts.
pub fn info_from_crd(crd: &Value) -> Option<ResourceInfo> {
    let spec = crd.get("spec")?;
    let names = spec.get("names")?;
    let all_versions: Vec<&Value> = spec.get("versions")?.as_array()?.iter().collect();
    let served: Vec<&Value> = all_versions
        .into_iter()
        .filter(|v| v["served"].as_bool() != Some(false))
        .collect();
    // Storage version first, then the rest in declaration order.
    let mut ordered = served.clone();
    ordered.sort_by_key(|v| v["storage"].as_bool() != Some(true));
    let first = *ordered.first()?;
    let scale = first.pointer("/subresources/scale").map(|s| ScalePaths {
        spec_replicas: s["specReplicasPath"]
            .as_str()
            .unwrap_or(".spec.replicas")
            .to_owned(),
        status_replicas: s["statusReplicasPath"]
            .as_str()
            .unwrap_or(".status.replicas")
            .to_owned(),
        label_selector: s["labelSelectorPath"].as_str().map(str::to_owned),
    });
    let versions = ordered
        .iter()
        .map(|v| CrdVersion {
            name: v["name"].as_str().unwrap_or_default().to_owned(),
            schema: v.pointer("/schema/openAPIV3Schema").cloned(),
            printer_columns: v["additionalPrinterColumns"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
        })
        .collect::<Vec<_>>();
    Some(ResourceInfo {
        group: str_at(spec, &["group"])?.to_owned(),
        versions: versions.iter().map(|v| v.name.clone()).collect(),
        plural: str_at(names, &["plural"])?.to_owned(),
        singular: str_at(names, &["singular"]).map_or_else(
            || str_at(names, &["kind"]).unwrap_or_default().to_lowercase(),
            str::to_owned,
        ),
        kind: str_at(names, &["kind"])?.to_owned(),
        namespaced: str_at(spec, &["scope"]) != Some("Cluster"),
        short_names: str_list(names.get("shortNames")),
        categories: str_list(names.get("categories")),
        status: first.pointer("/subresources/status").is_some(),
        scale,
        generation: true,
        stored: true,
        crd: Some(versions),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn crd_registers_and_unregisters_its_resource() {
        let registry = Registry::default();
        let crd = json!({"metadata": {"name": "widgets.example.com"}, "spec": {
            "group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "kind": "Widget", "shortNames": ["wd"]},
            "versions": [{"name": "v1", "served": true, "storage": true,
                          "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.size", "statusReplicasPath": ".status.size"}}}]}});
        registry.sync_crd("widgets.example.com", Some(&crd));
        let info = registry.resolve("example.com", "v1", "widgets").unwrap();
        assert_eq!(info.singular, "widget");
        assert!(info.status);
        assert_eq!(info.scale.as_ref().unwrap().spec_replicas, ".spec.size");
        registry.sync_crd("widgets.example.com", None);
        assert!(registry.resolve("example.com", "v1", "widgets").is_none());
    }

    #[test]
    fn hpa_is_served_in_two_versions() {
        let registry = Registry::default();
        assert!(
            registry
                .resolve("autoscaling", "v1", "horizontalpodautoscalers")
                .is_some()
        );
        assert!(
            registry
                .resolve("autoscaling", "v2", "horizontalpodautoscalers")
                .is_some()
        );
        assert!(
            registry
                .resolve("autoscaling", "v3", "horizontalpodautoscalers")
                .is_none()
        );
    }
}
