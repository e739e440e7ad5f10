//! The owned HPA (`reference/keda.md` §2.3): named `keda-hpa-<name>` (or as configured),
//! `minReplicas = max(minReplicaCount, 1)`, behavior copied (with `Disabled` select policies
//! while scale-in or scale-out is paused), one External metric per trigger metric (selected
//! by the `scaledobject.keda.sh/name` label) or a single `composite-metric` with scaling
//! modifiers, labels and annotations as KEDA sets them, and the ScaledObject as controller.

use std::collections::BTreeMap;

use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, ExternalMetricSource, HPAScalingRules, HorizontalPodAutoscaler,
    HorizontalPodAutoscalerBehavior, HorizontalPodAutoscalerSpec, MetricIdentifier,
    MetricSpec as HpaMetricSpec, MetricTarget,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use tidescale_scalers::naming::{milli_quantity, target_quantity};
use tidescale_scalers::{MetricSpec, MetricType};

use crate::crd::names::{
    ANNOTATION_HPA_EXCLUDED_LABELS, ANNOTATION_PAUSED_SCALE_IN, ANNOTATION_PAUSED_SCALE_OUT,
    API_VERSION, COMPOSITE_METRIC_NAME, LABEL_SCALED_OBJECT_NAME, MAX_NAME_LENGTH,
};
use crate::crd::{ModifierMetricType, ScaledObject, ScalingModifiers};

/// `app.kubernetes.io/managed-by` on owned HPAs; KEDA's value, kept so selectors keep working.
pub const MANAGED_BY: &str = "keda-operator";

/// The resolved scale target the HPA points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetRef {
    /// e.g. `apps/v1`.
    pub api_version: String,
    /// e.g. `Deployment`.
    pub kind: String,
    /// Object name.
    pub name: String,
}

/// The HPA tidescale wants for `so`, given its target and its triggers' metrics in order.
pub fn desired_hpa(
    so: &ScaledObject,
    target: &TargetRef,
    metrics: &[MetricSpec],
    version: &str,
) -> HorizontalPodAutoscaler {
    let name = so.hpa_name();
    HorizontalPodAutoscaler {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: so.metadata.namespace.clone(),
            labels: Some(labels(so, &name, version)),
            annotations: so.metadata.annotations.clone().filter(|a| !a.is_empty()),
            owner_references: owner_reference(so).map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        spec: Some(HorizontalPodAutoscalerSpec {
            min_replicas: Some(so.hpa_min_replicas()),
            max_replicas: so.spec.max_replica_count,
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some(target.api_version.clone()),
                kind: target.kind.clone(),
                name: target.name.clone(),
            },
            metrics: Some(hpa_metrics(so, metrics)),
            behavior: behavior(so),
        }),
        status: None,
    }
}

fn labels(so: &ScaledObject, hpa_name: &str, version: &str) -> BTreeMap<String, String> {
    let so_name = so.metadata.name.clone().unwrap_or_default();
    let excluded: Vec<&str> = so
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_HPA_EXCLUDED_LABELS))
        .map(|list| list.split(',').map(str::trim).collect())
        .unwrap_or_default();
    let mut labels: BTreeMap<String, String> = so
        .metadata
        .labels
        .iter()
        .flatten()
        .filter(|(key, _)| !excluded.contains(&key.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let trimmed: String = hpa_name.chars().take(MAX_NAME_LENGTH).collect();
    labels.insert("app.kubernetes.io/name".into(), trimmed);
    labels.insert("app.kubernetes.io/version".into(), version.into());
    labels.insert("app.kubernetes.io/part-of".into(), so_name);
    labels.insert("app.kubernetes.io/managed-by".into(), MANAGED_BY.into());
    labels
}

fn owner_reference(so: &ScaledObject) -> Option<OwnerReference> {
    Some(OwnerReference {
        api_version: API_VERSION.into(),
        kind: "ScaledObject".into(),
        name: so.metadata.name.clone()?,
        uid: so.metadata.uid.clone()?,
        controller: Some(true),
        block_owner_deletion: Some(true),
    })
}

/// External metrics in trigger order, or the composite metric when modifiers combine them.
fn hpa_metrics(so: &ScaledObject, metrics: &[MetricSpec]) -> Vec<HpaMetricSpec> {
    let so_name = so.metadata.name.clone().unwrap_or_default();
    let modifiers = so
        .spec
        .advanced
        .as_ref()
        .and_then(|a| a.scaling_modifiers.as_ref());
    match modifiers.filter(|m| m.formula.as_deref().is_some_and(|f| !f.trim().is_empty())) {
        Some(modifiers) => vec![composite_metric(&so_name, modifiers)],
        None => metrics
            .iter()
            .map(|spec| external_metric(&so_name, spec))
            .collect(),
    }
}

fn external_metric(so_name: &str, spec: &MetricSpec) -> HpaMetricSpec {
    let quantity = Quantity(target_quantity(spec));
    external(
        so_name,
        &spec.metric_name,
        spec.metric_type == MetricType::Value,
        quantity,
    )
}

fn composite_metric(so_name: &str, modifiers: &ScalingModifiers) -> HpaMetricSpec {
    // `check` and the controller reject a missing or non-positive target before this runs.
    let target = modifiers
        .target
        .as_deref()
        .and_then(|t| t.trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    let value = modifiers.metric_type == Some(ModifierMetricType::Value);
    external(
        so_name,
        COMPOSITE_METRIC_NAME,
        value,
        Quantity(milli_quantity(target)),
    )
}

fn external(so_name: &str, metric_name: &str, value: bool, quantity: Quantity) -> HpaMetricSpec {
    let selector = LabelSelector {
        match_labels: Some(BTreeMap::from([(
            LABEL_SCALED_OBJECT_NAME.to_owned(),
            so_name.to_owned(),
        )])),
        match_expressions: None,
    };
    let target = if value {
        MetricTarget {
            type_: "Value".into(),
            value: Some(quantity),
            ..MetricTarget::default()
        }
    } else {
        MetricTarget {
            type_: "AverageValue".into(),
            average_value: Some(quantity),
            ..MetricTarget::default()
        }
    };
    HpaMetricSpec {
        type_: "External".into(),
        external: Some(ExternalMetricSource {
            metric: MetricIdentifier {
                name: metric_name.to_owned(),
                selector: Some(selector),
            },
            target,
        }),
        ..HpaMetricSpec::default()
    }
}

/// The configured behavior, with `selectPolicy: Disabled` in a direction that is paused.
fn behavior(so: &ScaledObject) -> Option<HorizontalPodAutoscalerBehavior> {
    let configured = so
        .spec
        .advanced
        .as_ref()
        .and_then(|a| a.horizontal_pod_autoscaler_config.as_ref())
        .and_then(|c| c.behavior.clone());
    let annotations = so.metadata.annotations.as_ref();
    let paused = |key: &str| {
        annotations
            .and_then(|a| a.get(key))
            .is_some_and(|v| v != "false")
    };
    let (pause_in, pause_out) = (
        paused(ANNOTATION_PAUSED_SCALE_IN),
        paused(ANNOTATION_PAUSED_SCALE_OUT),
    );
    if !pause_in && !pause_out {
        return configured;
    }
    let mut behavior = configured.unwrap_or_default();
    let disable = |rules: &mut Option<HPAScalingRules>| {
        rules
            .get_or_insert_with(HPAScalingRules::default)
            .select_policy = Some("Disabled".into());
    };
    if pause_in {
        disable(&mut behavior.scale_down);
    }
    if pause_out {
        disable(&mut behavior.scale_up);
    }
    Some(behavior)
}

#[cfg(test)]
#[path = "hpa_tests.rs"]
mod tests;
