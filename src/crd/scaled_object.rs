//! `ScaledObject` (`keda.sh/v1alpha1`, short name `so`): scales a workload with a `/scale`
//! subresource between zero (or `idleReplicaCount`) and `maxReplicaCount` from its triggers.
//! Fields, defaults and bounds are KEDA's (`reference/keda.md` §1.1).

use std::collections::BTreeMap;

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscalerBehavior;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::CompactMap;
use super::common::{
    Condition, GroupVersionKindResource, HealthStatus, ScaleTriggers, TriggerActivityStatus,
};
use super::names;

/// Default `pollingInterval`, seconds.
pub const DEFAULT_POLLING_INTERVAL: i32 = 30;
/// Default `cooldownPeriod`, seconds.
pub const DEFAULT_COOLDOWN_PERIOD: i32 = 300;
/// Default `maxReplicaCount`.
pub const DEFAULT_MAX_REPLICA_COUNT: i32 = 100;

/// Spec of a ScaledObject.
#[allow(
    clippy::duplicated_attributes,
    reason = "kube-derive takes one printcolumn(...) per column; each repeats `type_`"
)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "keda.sh",
    version = "v1alpha1",
    kind = "ScaledObject",
    namespaced,
    shortname = "so",
    status = "ScaledObjectStatus",
    printcolumn(
        name = "ScaleTargetKind",
        type_ = "string",
        json_path = ".status.scaleTargetKind"
    ),
    printcolumn(
        name = "ScaleTargetName",
        type_ = "string",
        json_path = ".spec.scaleTargetRef.name"
    ),
    printcolumn(name = "Min", type_ = "integer", json_path = ".spec.minReplicaCount"),
    printcolumn(name = "Max", type_ = "integer", json_path = ".spec.maxReplicaCount"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Active",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Active\")].status"
    ),
    printcolumn(
        name = "Fallback",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Fallback\")].status"
    ),
    printcolumn(
        name = "Paused",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Paused\")].status"
    ),
    printcolumn(
        name = "Triggers",
        type_ = "string",
        json_path = ".status.triggersTypes"
    ),
    printcolumn(
        name = "Authentications",
        type_ = "string",
        json_path = ".status.authenticationsTypes"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScaledObjectSpec {
    /// The workload to scale; any kind with a `/scale` subresource.
    pub scale_target_ref: ScaleTarget,
    /// Seconds between two polls of the triggers.
    #[serde(default = "default_polling_interval")]
    #[schemars(range(min = 1))]
    pub polling_interval: i32,
    /// Seconds after creation before a never-active object may scale in.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub initial_cooldown_period: i32,
    /// Seconds since the last activity before scaling to zero (or idle).
    #[serde(default = "default_cooldown_period")]
    #[schemars(range(min = 0))]
    pub cooldown_period: i32,
    /// Replicas while no trigger is active; must be below `minReplicaCount`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub idle_replica_count: Option<i32>,
    /// Lower bound; 0 lets tidescale scale the workload to zero.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub min_replica_count: i32,
    /// Upper bound, copied to the HPA's `maxReplicas`.
    #[serde(default = "default_max_replica_count")]
    #[schemars(range(min = 1))]
    pub max_replica_count: i32,
    /// HPA settings, restore-on-delete and scaling modifiers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advanced: Option<AdvancedConfig>,
    /// The event sources; at least one.
    #[schemars(length(min = 1))]
    pub triggers: Vec<ScaleTriggers>,
    /// Replicas to run while metrics keep failing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<Fallback>,
}

fn default_polling_interval() -> i32 {
    DEFAULT_POLLING_INTERVAL
}

fn default_cooldown_period() -> i32 {
    DEFAULT_COOLDOWN_PERIOD
}

fn default_max_replica_count() -> i32 {
    DEFAULT_MAX_REPLICA_COUNT
}

/// `spec.scaleTargetRef`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScaleTarget {
    /// API version of the target; `apps/v1` when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Kind of the target; `Deployment` when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Name of the target, in the ScaledObject's namespace.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Container whose env feeds `<key>FromEnv`; the first container when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_source_container_name: Option<String>,
}

impl ScaleTarget {
    /// `apiVersion`, defaulting to `apps/v1` as KEDA does.
    pub fn api_version_or_default(&self) -> &str {
        self.api_version
            .as_deref()
            .filter(|v| !v.is_empty())
            .unwrap_or("apps/v1")
    }

    /// `kind`, defaulting to `Deployment` as KEDA does.
    pub fn kind_or_default(&self) -> &str {
        self.kind
            .as_deref()
            .filter(|k| !k.is_empty())
            .unwrap_or("Deployment")
    }
}

/// `spec.advanced`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AdvancedConfig {
    /// Name and behavior of the owned HPA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub horizontal_pod_autoscaler_config: Option<HorizontalPodAutoscalerConfig>,
    /// On deletion, set the target back to `status.originalReplicaCount`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub restore_to_original_replica_count: bool,
    /// Combine named triggers into one `composite-metric` with a formula.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaling_modifiers: Option<ScalingModifiers>,
}

/// `spec.advanced.horizontalPodAutoscalerConfig`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HorizontalPodAutoscalerConfig {
    /// HPA name; `keda-hpa-<name>` when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Copied verbatim into the HPA's `spec.behavior`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behavior: Option<HorizontalPodAutoscalerBehavior>,
}

/// `spec.advanced.scalingModifiers`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScalingModifiers {
    /// expr-lang expression over trigger names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub formula: Option<String>,
    /// Target of the composite metric, a float > 0 written as a string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The composite metric is active above this value (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activation_target: Option<String>,
    /// `AverageValue` (default) or `Value`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric_type: Option<ModifierMetricType>,
}

/// Metric types allowed for the composite metric.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ModifierMetricType {
    /// `target.averageValue`.
    #[default]
    AverageValue,
    /// `target.value`.
    Value,
}

/// `spec.fallback`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Fallback {
    /// Consecutive failures of a metric before fallback applies.
    #[schemars(range(min = 0))]
    pub failure_threshold: i32,
    /// Replicas to run while in fallback.
    #[schemars(range(min = 0))]
    pub replicas: i32,
    /// How `replicas` combine with the current replica count.
    #[serde(default)]
    pub behavior: FallbackBehavior,
}

/// `spec.fallback.behavior`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum FallbackBehavior {
    /// Always `fallback.replicas`.
    #[default]
    Static,
    /// Keep the current replica count.
    CurrentReplicas,
    /// The larger of current and fallback replicas.
    CurrentReplicasIfHigher,
    /// The smaller of current and fallback replicas.
    CurrentReplicasIfLower,
    /// Feed failed triggers to the formula as nil.
    ScalingModifiers,
}

/// Status of a ScaledObject, written by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScaledObjectStatus {
    /// e.g. `apps/v1.Deployment`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_target_kind: Option<String>,
    /// The resolved group, version, kind and resource of the target.
    #[serde(
        rename = "scaleTargetGVKR",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub scale_target_gvkr: Option<GroupVersionKindResource>,
    /// Replicas of the target before tidescale first scaled it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_replica_count: Option<i32>,
    /// When a trigger was last active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_active_time: Option<Time>,
    /// External metric names served for this object.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_metric_names: Vec<String>,
    /// Resource (cpu/memory) metric names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resource_metric_names: Vec<String>,
    /// Name of the composite scaler when modifiers are used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub composite_scaler_name: Option<String>,
    /// Ready, Active, Fallback, Paused, HPAActive.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Per-metric failure counts (when fallback is configured).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub health: BTreeMap<String, HealthStatus>,
    /// Per-metric activity at the last poll.
    #[serde(default, skip_serializing_if = "CompactMap::is_empty")]
    pub triggers_activity: CompactMap<TriggerActivityStatus>,
    /// Replica count set by `paused-replicas`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_replica_count: Option<i32>,
    /// Name of the owned HPA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hpa_name: Option<String>,
    /// Comma-separated trigger types.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub triggers_types: Option<String>,
    /// Comma-separated authentication references.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentications_types: Option<String>,
}

impl ScaledObject {
    /// The owned HPA's name: the configured one, else `keda-hpa-<name>`.
    pub fn hpa_name(&self) -> String {
        self.spec
            .advanced
            .as_ref()
            .and_then(|a| a.horizontal_pod_autoscaler_config.as_ref())
            .and_then(|c| c.name.clone())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| {
                names::default_hpa_name(&self.metadata.name.clone().unwrap_or_default())
            })
    }

    /// The HPA's `minReplicas`: `max(minReplicaCount, 1)`, since the HPA cannot hold zero.
    pub fn hpa_min_replicas(&self) -> i32 {
        self.spec.min_replica_count.max(1)
    }
}
