//! The objects an input holds besides keda.sh ones — workloads, Secrets, ConfigMaps — so
//! `check` can resolve a trigger's env and auth params exactly as the operator would. What the
//! input does not hold is unknown, not missing: a partial bundle is not an error.

use std::collections::BTreeMap;

use base64::Engine;
use k8s_openapi::api::core::v1::PodSpec;
use serde_json::Value;

use crate::crd::TriggerAuthenticationSpec;
use crate::resolve::{Lookup, ObjectMaps};

use super::rules::DEFAULT_NAMESPACE;

/// A workload by API group, kind, namespace and name.
type WorkloadKey = (String, String, String, String);

/// Everything in the input a trigger may refer to.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// Pod templates of workloads (`spec.template.spec`).
    workloads: BTreeMap<WorkloadKey, PodSpec>,
    /// Secrets and ConfigMaps; anything not held is unknown.
    pub objects: ObjectMaps,
    /// TriggerAuthentication specs by namespace and name.
    trigger_auths: BTreeMap<(String, String), TriggerAuthenticationSpec>,
    /// ClusterTriggerAuthentication specs by name.
    cluster_trigger_auths: BTreeMap<String, TriggerAuthenticationSpec>,
}

impl Default for Bundle {
    fn default() -> Self {
        Self {
            workloads: BTreeMap::new(),
            objects: ObjectMaps::new(Lookup::Unknown),
            trigger_auths: BTreeMap::new(),
            cluster_trigger_auths: BTreeMap::new(),
        }
    }
}

impl Bundle {
    /// Index every document; documents that are not well-formed objects are ignored here
    /// (checking reports them).
    pub fn from_documents<'a>(documents: impl IntoIterator<Item = &'a Value>) -> Self {
        let mut bundle = Bundle::default();
        for doc in documents {
            bundle.add(doc);
        }
        bundle
    }

    fn add(&mut self, doc: &Value) {
        let (Some(api_version), Some(kind), Some(name)) = (
            doc.get("apiVersion").and_then(Value::as_str),
            doc.get("kind").and_then(Value::as_str),
            doc.pointer("/metadata/name").and_then(Value::as_str),
        ) else {
            return;
        };
        let namespace = doc
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or(DEFAULT_NAMESPACE);
        let key = (namespace.to_owned(), name.to_owned());
        match (api_version, kind) {
            ("v1", "Secret") => {
                self.objects.secrets.insert(key, secret_data(doc));
            }
            ("v1", "ConfigMap") => {
                self.objects
                    .config_maps
                    .insert(key, string_map(doc.get("data")));
            }
            ("keda.sh/v1alpha1", "TriggerAuthentication") => {
                if let Some(spec) = auth_spec(doc) {
                    self.trigger_auths.insert(key, spec);
                }
            }
            ("keda.sh/v1alpha1", "ClusterTriggerAuthentication") => {
                if let Some(spec) = auth_spec(doc) {
                    self.cluster_trigger_auths.insert(name.to_owned(), spec);
                }
            }
            _ => {
                let template = doc.pointer("/spec/template/spec").cloned();
                if let Some(pod) = template.and_then(|t| serde_json::from_value::<PodSpec>(t).ok())
                {
                    let group = api_group(api_version).to_owned();
                    self.workloads
                        .insert((group, kind.to_owned(), key.0, key.1), pod);
                }
            }
        }
    }

    /// The pod template of workload `kind`/`name` in `namespace`, if the input holds it.
    pub fn workload(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Option<&PodSpec> {
        let key = (
            api_group(api_version).to_owned(),
            kind.to_owned(),
            namespace.to_owned(),
            name.to_owned(),
        );
        self.workloads.get(&key)
    }

    /// A TriggerAuthentication's spec, if the input holds it.
    pub fn trigger_auth(&self, namespace: &str, name: &str) -> Option<&TriggerAuthenticationSpec> {
        self.trigger_auths
            .get(&(namespace.to_owned(), name.to_owned()))
    }

    /// A ClusterTriggerAuthentication's spec, if the input holds it.
    pub fn cluster_trigger_auth(&self, name: &str) -> Option<&TriggerAuthenticationSpec> {
        self.cluster_trigger_auths.get(name)
    }
}

/// The group of an `apiVersion` (`apps/v1` → `apps`, `v1` → the core group `""`).
fn api_group(api_version: &str) -> &str {
    api_version.split_once('/').map_or("", |(group, _)| group)
}

fn auth_spec(doc: &Value) -> Option<TriggerAuthenticationSpec> {
    serde_json::from_value(doc.get("spec")?.clone()).ok()
}

fn string_map(value: Option<&Value>) -> BTreeMap<String, String> {
    value
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
        .collect()
}

/// A Secret's `data` (base64, decoded; non-UTF-8 values are left out) overlaid with
/// `stringData`, which wins, as the API server merges them.
fn secret_data(doc: &Value) -> BTreeMap<String, String> {
    let engine = base64::engine::general_purpose::STANDARD;
    let mut data: BTreeMap<String, String> = string_map(doc.get("data"))
        .into_iter()
        .filter_map(|(k, v)| Some((k, String::from_utf8(engine.decode(v.trim()).ok()?).ok()?)))
        .collect();
    data.extend(string_map(doc.get("stringData")));
    data
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::resolve::Objects;

    #[test]
    fn indexes_workloads_secrets_config_maps_and_auths() {
        let docs = [
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "w", "namespace": "shop"},
                "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}}),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "shop"},
                "data": {"a": "aGVsbG8=", "b": "!!"}, "stringData": {"c": "plain"}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"k": "v"}}),
            json!({"apiVersion": "keda.sh/v1alpha1", "kind": "TriggerAuthentication", "metadata": {"name": "ta", "namespace": "shop"},
                "spec": {"secretTargetRef": [{"parameter": "host", "name": "s", "key": "a"}]}}),
            json!({"apiVersion": "keda.sh/v1alpha1", "kind": "ClusterTriggerAuthentication", "metadata": {"name": "cta"}, "spec": {}}),
        ];
        let bundle = Bundle::from_documents(&docs);
        assert!(
            bundle
                .workload("apps/v1", "Deployment", "shop", "w")
                .is_some()
        );
        assert!(
            bundle
                .workload("apps/v1", "StatefulSet", "shop", "w")
                .is_none()
        );
        let secret = bundle.objects.secret("shop", "s");
        let expected = BTreeMap::from([
            ("a".to_owned(), "hello".to_owned()),
            ("c".to_owned(), "plain".to_owned()),
        ]);
        assert_eq!(secret, Lookup::Found(expected));
        assert!(matches!(
            bundle.objects.config_map("default", "cm"),
            Lookup::Found(_)
        ));
        assert_eq!(bundle.objects.secret("shop", "elsewhere"), Lookup::Unknown);
        assert!(bundle.trigger_auth("shop", "ta").is_some());
        assert!(bundle.cluster_trigger_auth("cta").is_some());
    }
}
