//! `ScaledJob` (`keda.sh/v1alpha1`, short name `sj`): runs one Kubernetes Job per unit of
//! pending work instead of scaling a long-running workload (`reference/keda.md` §1.2, §2.9).

use k8s_openapi::api::batch::v1::JobSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Condition, ScaleTriggers};
use super::scaled_object::{DEFAULT_MAX_REPLICA_COUNT, DEFAULT_POLLING_INTERVAL};

/// Default `successfulJobsHistoryLimit` and `failedJobsHistoryLimit`.
pub const DEFAULT_JOBS_HISTORY_LIMIT: i32 = 100;

/// Spec of a ScaledJob.
#[allow(
    clippy::duplicated_attributes,
    reason = "kube-derive takes one printcolumn(...) per column; each repeats `type_`"
)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "keda.sh",
    version = "v1alpha1",
    kind = "ScaledJob",
    namespaced,
    shortname = "sj",
    status = "ScaledJobStatus",
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
pub struct ScaledJobSpec {
    /// Template of every Job created; `restartPolicy` defaults to `OnFailure`.
    pub job_target_ref: JobSpec,
    /// Seconds between two polls of the triggers.
    #[serde(default = "default_polling_interval")]
    #[schemars(range(min = 1))]
    pub polling_interval: i32,
    /// Completed Jobs kept.
    #[serde(default = "default_history_limit")]
    #[schemars(range(min = 0))]
    pub successful_jobs_history_limit: i32,
    /// Failed Jobs kept.
    #[serde(default = "default_history_limit")]
    #[schemars(range(min = 0))]
    pub failed_jobs_history_limit: i32,
    /// Container whose env feeds `<key>FromEnv`; the first container when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_source_container_name: Option<String>,
    /// Jobs always kept running or pending.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub min_replica_count: i32,
    /// Most Jobs running at once.
    #[serde(default = "default_max_replica_count")]
    #[schemars(range(min = 1))]
    pub max_replica_count: i32,
    /// Deprecated spelling of `rollout.strategy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_strategy: Option<String>,
    /// What happens to running Jobs when the spec changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Rollout>,
    /// How many Jobs to create for the pending work.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaling_strategy: Option<ScalingStrategy>,
    /// The event sources; at least one.
    #[schemars(length(min = 1))]
    pub triggers: Vec<ScaleTriggers>,
}

fn default_polling_interval() -> i32 {
    DEFAULT_POLLING_INTERVAL
}

fn default_history_limit() -> i32 {
    DEFAULT_JOBS_HISTORY_LIMIT
}

fn default_max_replica_count() -> i32 {
    DEFAULT_MAX_REPLICA_COUNT
}

/// `spec.rollout`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rollout {
    /// `default`/`immediate` delete outdated Jobs; `gradual` lets them finish.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<RolloutStrategy>,
    /// Delete propagation for outdated Jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub propagation_policy: Option<PropagationPolicy>,
}

/// `spec.rollout.strategy`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum RolloutStrategy {
    /// Same as `immediate`.
    Default,
    /// Let running Jobs finish.
    Gradual,
    /// Delete Jobs from an older generation.
    Immediate,
}

/// `spec.rollout.propagationPolicy`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum PropagationPolicy {
    /// Delete pods before the Job.
    Foreground,
    /// Delete the Job, then its pods.
    Background,
}

/// `spec.scalingStrategy`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScalingStrategy {
    /// `default`, `custom`, `accurate` or `eager`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<JobScalingStrategy>,
    /// `custom`: subtracted from the queue length.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_scaling_queue_length_deduction: Option<i32>,
    /// `custom`: share of running Jobs counted against the queue, a float as a string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_scaling_running_job_percentage: Option<String>,
    /// Pod conditions that mark a Job as no longer pending.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_pod_conditions: Vec<String>,
    /// How several triggers combine: `max` (default), `min`, `avg`, `sum`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multiple_scalers_calculation: Option<MultipleScalersCalculation>,
}

/// `spec.scalingStrategy.strategy`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum JobScalingStrategy {
    /// Queue length minus running Jobs.
    Default,
    /// With deduction and running-job percentage.
    Custom,
    /// Accounts for pending Jobs.
    Accurate,
    /// Fills up to the maximum.
    Eager,
}

/// `spec.scalingStrategy.multipleScalersCalculation`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum MultipleScalersCalculation {
    /// Smallest demand.
    Min,
    /// Largest demand.
    Max,
    /// Mean demand.
    Avg,
    /// Summed demand.
    Sum,
}

/// Status of a ScaledJob.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScaledJobStatus {
    /// When a trigger was last active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_active_time: Option<Time>,
    /// Ready, Active, Paused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// `"true"` while paused.
    #[serde(rename = "Paused", default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<String>,
    /// Comma-separated trigger types.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub triggers_types: Option<String>,
    /// Comma-separated authentication references.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentications_types: Option<String>,
}
