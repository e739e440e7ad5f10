//! CRD generation: kube-derive's output plus what it cannot express — KEDA's CEL rule on the
//! replica bounds — serialised as the YAML committed under `manifests/crds/`.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, ValidationRule,
};
use kube::CustomResourceExt;

use super::{ClusterTriggerAuthentication, ScaledJob, ScaledObject, TriggerAuthentication, names};

/// The kinds tidescale defines, in a fixed order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrdKind {
    /// `ScaledObject`.
    ScaledObject,
    /// `ScaledJob`.
    ScaledJob,
    /// `TriggerAuthentication`.
    TriggerAuthentication,
    /// `ClusterTriggerAuthentication`.
    ClusterTriggerAuthentication,
}

impl CrdKind {
    /// Every kind, in the order CRDs are printed.
    pub const ALL: [CrdKind; 4] = [
        CrdKind::ScaledObject,
        CrdKind::ScaledJob,
        CrdKind::TriggerAuthentication,
        CrdKind::ClusterTriggerAuthentication,
    ];

    /// The kind as written in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            CrdKind::ScaledObject => "ScaledObject",
            CrdKind::ScaledJob => "ScaledJob",
            CrdKind::TriggerAuthentication => "TriggerAuthentication",
            CrdKind::ClusterTriggerAuthentication => "ClusterTriggerAuthentication",
        }
    }

    /// The kind named `kind`, if tidescale defines it.
    pub fn from_kind(kind: &str) -> Option<CrdKind> {
        CrdKind::ALL.into_iter().find(|k| k.as_str() == kind)
    }

    /// File name under `manifests/crds/`, as KEDA names its CRD files.
    pub fn file_name(self) -> String {
        format!(
            "{}_{}.yaml",
            names::GROUP,
            crd_for_kind(self).spec.names.plural
        )
    }
}

/// The CRD of one kind.
pub fn crd_for_kind(kind: CrdKind) -> CustomResourceDefinition {
    match kind {
        CrdKind::ScaledObject => with_replica_bounds_rule(ScaledObject::crd()),
        CrdKind::ScaledJob => without_job_template_descriptions(ScaledJob::crd()),
        CrdKind::TriggerAuthentication => TriggerAuthentication::crd(),
        CrdKind::ClusterTriggerAuthentication => ClusterTriggerAuthentication::crd(),
    }
}

/// All CRDs, in [`CrdKind::ALL`] order.
pub fn all_crds() -> Vec<CustomResourceDefinition> {
    CrdKind::ALL.into_iter().map(crd_for_kind).collect()
}

/// The CRDs as one multi-document YAML stream.
pub fn crds_yaml() -> String {
    CrdKind::ALL
        .into_iter()
        .map(crd_yaml)
        .collect::<Vec<_>>()
        .join("---\n")
}

/// One CRD as a YAML document.
pub fn crd_yaml(kind: CrdKind) -> String {
    // Serialising a CRD built from our own types cannot fail: every map key is a string.
    serde_yaml_ng::to_string(&crd_for_kind(kind)).expect("CRD serialises to YAML")
}

/// KEDA's CEL rule: `minReplicaCount <= maxReplicaCount` (max defaulting to 100).
fn with_replica_bounds_rule(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    let rule = ValidationRule {
        rule: "!has(self.minReplicaCount) || self.minReplicaCount <= \
               (has(self.maxReplicaCount) ? self.maxReplicaCount : 100)"
            .to_owned(),
        message: Some("minReplicaCount must be less than or equal to maxReplicaCount".to_owned()),
        ..ValidationRule::default()
    };
    for version in &mut crd.spec.versions {
        let spec = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
            .and_then(|root| root.properties.as_mut())
            .and_then(|props| props.get_mut("spec"));
        if let Some(spec) = spec {
            spec.x_kubernetes_validations = Some(vec![rule.clone()]);
        }
    }
    crd
}

/// Drop the upstream field descriptions inside `spec.jobTargetRef` (the whole batch/v1 JobSpec).
///
/// With them the ScaledJob CRD is ~340 KB, over the 256 KB `last-applied-configuration`
/// annotation limit, and plain `kubectl apply` fails (KEDA tells users to apply with
/// `--server-side` for this reason). Without them it applies either way; `kubectl explain`
/// on Job fields is where those descriptions live anyway.
fn without_job_template_descriptions(crd: CustomResourceDefinition) -> CustomResourceDefinition {
    let mut value = serde_json::to_value(&crd).expect("CRD serialises to JSON");
    if let Some(versions) = value
        .pointer_mut("/spec/versions")
        .and_then(|v| v.as_array_mut())
    {
        for version in versions {
            let pointer = "/schema/openAPIV3Schema/properties/spec/properties/jobTargetRef";
            if let Some(job) = version.pointer_mut(pointer) {
                strip_descriptions(job);
                job["description"] = "Template of every Job created (batch/v1 JobSpec); \
                    `restartPolicy` defaults to `OnFailure`."
                    .into();
            }
        }
    }
    serde_json::from_value(value).expect("a CRD with fewer descriptions is still a CRD")
}

fn strip_descriptions(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            // Only a string is a description; an object under that key would be a property
            // named `description`.
            if map
                .get("description")
                .is_some_and(serde_json::Value::is_string)
            {
                map.remove("description");
            }
            map.values_mut().for_each(strip_descriptions);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(strip_descriptions),
        _ => {}
    }
}
