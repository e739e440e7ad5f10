//! Types shared by ScaledObject and ScaledJob: triggers, authentication references and the
//! status building blocks (conditions, per-metric health and activity).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::CompactMap;
use super::shared_text::SharedText;

/// One entry of `spec.triggers`: a scaler type and its metadata.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScaleTriggers {
    /// Scaler type, e.g. `rabbitmq`, `kafka`, `prometheus`.
    #[serde(rename = "type")]
    #[schemars(length(min = 1))]
    pub type_: String,
    /// Optional name, unique within the object; used by `scalingModifiers` formulas and as the
    /// `scaler` metric label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Whether HPA requests are answered from the value the polling loop holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_cached_metrics: Option<bool>,
    /// Scaler-specific settings; `<key>FromEnv` keys read the scale target's env.
    pub metadata: CompactMap<String>,
    /// The (Cluster)TriggerAuthentication supplying secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication_ref: Option<AuthenticationRef>,
    /// `AverageValue` (default), `Value`, or `Utilization` (cpu and memory only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric_type: Option<String>,
}

/// `triggers[].authenticationRef`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthenticationRef {
    /// Name of the TriggerAuthentication (same namespace) or ClusterTriggerAuthentication.
    pub name: String,
    /// `TriggerAuthentication` (default) or `ClusterTriggerAuthentication`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// The kinds an `authenticationRef` may name.
pub const AUTHENTICATION_REF_KINDS: [&str; 2] =
    ["TriggerAuthentication", "ClusterTriggerAuthentication"];

impl AuthenticationRef {
    /// The referenced kind, defaulting as KEDA does.
    pub fn kind_or_default(&self) -> &str {
        match self.kind.as_deref() {
            None | Some("") => AUTHENTICATION_REF_KINDS[0],
            Some(kind) => kind,
        }
    }
}

// Its texts are shared (`SharedText`): every cached object repeats the same few.
/// A status condition as KEDA writes it (no `lastTransitionTime`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Condition type: `Ready`, `Active`, `Fallback`, `Paused`, `HPAActive`.
    #[serde(rename = "type")]
    pub type_: SharedText,
    /// `True`, `False` or `Unknown`.
    pub status: SharedText,
    /// Machine-readable reason, e.g. `ScaledObjectReady`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<SharedText>,
    /// Human-readable detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<SharedText>,
}

/// `status.scaleTargetGVKR`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct GroupVersionKindResource {
    /// API group (empty for the core group).
    pub group: String,
    /// API version.
    pub version: String,
    /// Kind.
    pub kind: String,
    /// Plural resource name.
    pub resource: String,
}

/// `status.health[metric]`: consecutive failures of one metric, tracked when fallback is set.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthStatus {
    /// Consecutive failed reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number_of_failures: Option<i32>,
    /// `Happy` or `Failing`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// `status.triggersActivity[metric]`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TriggerActivityStatus {
    /// Whether the trigger was active at the last poll.
    pub is_active: bool,
}
