//! The parts of an `autoscaling/v2` HorizontalPodAutoscaler spec the algorithm reads, parsed
//! leniently from JSON (`spec/kubernetes.md` §3.7, §3.9, §3.11).
//!
//! Quantities stay raw JSON here and are read with [`milli_value_json`] where they are used, so
//! a garbage target fails that one metric (as an invalid metric) rather than the whole HPA.

use serde::Deserialize;
use serde_json::Value;

use crate::controllers::quantity::milli_value_json;
use crate::controllers::selector::LabelSelector;

/// Default scale-up policies (§3.7).
const DEFAULT_UP_PODS: i32 = 4;
/// Default scale-up/-down percent policy value (§3.7).
const DEFAULT_PERCENT: i32 = 100;
/// Utilization target of the API's default metric (§3.5).
const DEFAULT_CPU_PERCENT: i32 = 80;
/// Default policy period in seconds (§3.7).
const DEFAULT_PERIOD: i32 = 15;

/// `spec` of an HPA.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HpaSpec {
    /// The object to scale.
    pub scale_target_ref: TargetRef,
    /// Lower bound (API default 1).
    #[serde(default)]
    pub min_replicas: Option<i32>,
    /// Upper bound.
    pub max_replicas: i32,
    /// The metrics; empty means the API default CPU 80 % (§3.5).
    #[serde(default)]
    pub metrics: Vec<MetricSpec>,
    /// Scaling behaviour; `None` selects the legacy path (§3.6).
    #[serde(default)]
    pub behavior: Option<Behavior>,
    /// `autoscaling/v1`'s only metric, for HPAs written through the v1 API (versions share
    /// storage in the sandbox).
    #[serde(default, rename = "targetCPUUtilizationPercentage")]
    pub target_cpu_utilization_percentage: Option<i32>,
}

impl HpaSpec {
    /// `minReplicas` with its API default.
    pub fn min(&self) -> i32 {
        self.min_replicas.unwrap_or(1)
    }

    /// The metrics with the API default applied: CPU `averageUtilization: 80`.
    pub fn effective_metrics(&self) -> Vec<MetricSpec> {
        if !self.metrics.is_empty() {
            return self.metrics.clone();
        }
        let percent = self
            .target_cpu_utilization_percentage
            .unwrap_or(DEFAULT_CPU_PERCENT);
        vec![MetricSpec {
            kind: "Resource".to_owned(),
            resource: Some(ResourceSource {
                name: "cpu".to_owned(),
                container: None,
                target: Target {
                    kind: "Utilization".to_owned(),
                    average_utilization: Some(percent),
                    ..Target::default()
                },
            }),
            ..MetricSpec::default()
        }]
    }
}

/// `scaleTargetRef`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetRef {
    /// `group/version` or `version`; only the group is used (§3.2).
    #[serde(default)]
    pub api_version: String,
    /// Kind of the target.
    pub kind: String,
    /// Name of the target.
    pub name: String,
}

impl TargetRef {
    /// The API group of the target (`""` for core).
    pub fn group(&self) -> &str {
        self.api_version
            .split_once('/')
            .map_or("", |(group, _)| group)
    }
}

/// One `spec.metrics[]` entry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricSpec {
    /// `Object`, `Pods`, `Resource`, `ContainerResource` or `External`.
    #[serde(rename = "type")]
    pub kind: String,
    /// External source.
    pub external: Option<ExternalSource>,
    /// Object source.
    pub object: Option<ObjectSource>,
    /// Pods source.
    pub pods: Option<PodsSource>,
    /// Resource source.
    pub resource: Option<ResourceSource>,
    /// ContainerResource source.
    pub container_resource: Option<ResourceSource>,
}

/// `MetricIdentifier`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct MetricId {
    /// Metric name.
    pub name: String,
    /// Metric label selector.
    #[serde(default)]
    pub selector: Option<LabelSelector>,
}

/// `MetricTarget`; quantities stay raw JSON.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    /// `Utilization`, `Value` or `AverageValue` (not consulted by the algorithm).
    #[serde(rename = "type", default)]
    pub kind: String,
    /// Total value target.
    pub value: Option<Value>,
    /// Per-pod value target.
    pub average_value: Option<Value>,
    /// Percent of request.
    pub average_utilization: Option<i32>,
}

/// External metric source.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ExternalSource {
    /// Which metric.
    pub metric: MetricId,
    /// Its target.
    pub target: Target,
}

/// Object metric source.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectSource {
    /// The object the metric describes.
    pub described_object: TargetRef,
    /// Which metric.
    pub metric: MetricId,
    /// Its target.
    pub target: Target,
}

/// Pods metric source.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PodsSource {
    /// Which metric.
    pub metric: MetricId,
    /// Its target (averageValue only).
    pub target: Target,
}

/// Resource / ContainerResource metric source.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ResourceSource {
    /// Resource name (`cpu`, `memory`).
    pub name: String,
    /// Container name (ContainerResource only).
    #[serde(default)]
    pub container: Option<String>,
    /// Its target.
    pub target: Target,
}

/// A parsed target in milli-units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetValue {
    /// `target.value`, milli.
    Value(i64),
    /// `target.averageValue`, milli.
    AverageValue(i64),
    /// `target.averageUtilization`, percent.
    Utilization(i32),
}

impl Target {
    /// The target the controller uses: `averageValue` first, then `value`, then utilization
    /// (the `type` string is not consulted, §3.3). Non-positive or unparseable → `None`.
    pub fn parse(&self) -> Option<TargetValue> {
        let positive = |m: i64| (m > 0).then_some(m);
        if let Some(v) = &self.average_value {
            return milli_value_json(v)
                .ok()
                .and_then(positive)
                .map(TargetValue::AverageValue);
        }
        if let Some(v) = &self.value {
            return milli_value_json(v)
                .ok()
                .and_then(positive)
                .map(TargetValue::Value);
        }
        self.average_utilization
            .filter(|u| *u > 0)
            .map(TargetValue::Utilization)
    }
}

/// `spec.behavior`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Behavior {
    /// Scale-up rules.
    #[serde(default)]
    pub scale_up: Option<RulesSpec>,
    /// Scale-down rules.
    #[serde(default)]
    pub scale_down: Option<RulesSpec>,
}

/// `HPAScalingRules` as written (any field may be missing).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RulesSpec {
    /// Stabilization window in seconds.
    pub stabilization_window_seconds: Option<i32>,
    /// `Max`, `Min` or `Disabled`.
    pub select_policy: Option<String>,
    /// Policies; replace the defaults as a whole list.
    pub policies: Option<Vec<Policy>>,
    /// Per-direction tolerance (Quantity, e.g. `"0.05"`; §3.4).
    pub tolerance: Option<Value>,
}

/// One scaling policy.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    /// `Pods` or `Percent`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Amount of change.
    pub value: i32,
    /// Period the change is measured over.
    pub period_seconds: i32,
}

/// How to pick among policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelectPolicy {
    /// The biggest change.
    Max,
    /// The smallest change.
    Min,
    /// No scaling in this direction.
    Disabled,
}

/// Scaling rules after API defaulting (§3.7).
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    /// Stabilization window in seconds.
    pub window_seconds: i64,
    /// Policy selection.
    pub select: SelectPolicy,
    /// Policies.
    pub policies: Vec<Policy>,
    /// Tolerance override, if set and parseable.
    pub tolerance: Option<f64>,
}

impl Rules {
    /// The rules with defaults for one direction; `default_window` is the scale-down
    /// stabilization flag (`--horizontal-pod-autoscaler-downscale-stabilization`) or 0 for up.
    pub fn resolve(spec: Option<&RulesSpec>, up: bool, default_window: i64) -> Self {
        let default_policies = if up {
            vec![
                policy("Pods", DEFAULT_UP_PODS),
                policy("Percent", DEFAULT_PERCENT),
            ]
        } else {
            vec![policy("Percent", DEFAULT_PERCENT)]
        };
        let spec = spec.cloned().unwrap_or_default();
        Self {
            window_seconds: spec
                .stabilization_window_seconds
                .map_or(default_window, i64::from),
            select: match spec.select_policy.as_deref() {
                Some("Min") => SelectPolicy::Min,
                Some("Disabled") => SelectPolicy::Disabled,
                _ => SelectPolicy::Max,
            },
            policies: spec.policies.unwrap_or(default_policies),
            tolerance: spec
                .tolerance
                .as_ref()
                .and_then(|t| milli_value_json(t).ok())
                .filter(|m| *m >= 0)
                .map(|m| m as f64 / 1000.0),
        }
    }
}

fn policy(kind: &str, value: i32) -> Policy {
    Policy {
        kind: kind.to_owned(),
        value,
        period_seconds: DEFAULT_PERIOD,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hpa_spec_parses_the_spec_example_and_resolves_defaults() {
        let spec: HpaSpec = serde_json::from_value(json!({
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "worker"},
            "maxReplicas": 20,
            "metrics": [{"type": "External", "external": {
                "metric": {"name": "queue_depth", "selector": {"matchLabels": {"queue": "orders"}}},
                "target": {"type": "AverageValue", "averageValue": "30"}}}],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 120,
                "policies": [{"type": "Percent", "value": 50, "periodSeconds": 60}],
                "tolerance": "0.05"}}
        }))
        .unwrap();
        assert_eq!(spec.min(), 1);
        assert_eq!(spec.scale_target_ref.group(), "apps");
        let target = spec.metrics[0].external.as_ref().unwrap().target.parse();
        assert_eq!(target, Some(TargetValue::AverageValue(30_000)));
        let behavior = spec.behavior.as_ref().unwrap();
        let up = Rules::resolve(behavior.scale_up.as_ref(), true, 0);
        assert_eq!(up.policies.len(), 2);
        assert_eq!(up.select, SelectPolicy::Max);
        let down = Rules::resolve(behavior.scale_down.as_ref(), false, 300);
        assert_eq!(down.window_seconds, 120);
        assert_eq!(down.tolerance, Some(0.05));
    }

    #[test]
    fn hpa_spec_garbage_target_is_not_a_target() {
        let t = Target {
            value: Some(json!("lots")),
            ..Target::default()
        };
        assert_eq!(t.parse(), None);
        let zero = Target {
            average_value: Some(json!("0")),
            ..Target::default()
        };
        assert_eq!(zero.parse(), None);
    }

    #[test]
    fn hpa_spec_reads_the_autoscaling_v1_target() {
        let spec: HpaSpec = serde_json::from_value(json!({
            "scaleTargetRef": {"kind": "Deployment", "name": "w"}, "maxReplicas": 3,
            "targetCPUUtilizationPercentage": 50
        }))
        .unwrap();
        let m = spec.effective_metrics();
        assert_eq!(
            m[0].resource.as_ref().unwrap().target.parse(),
            Some(TargetValue::Utilization(50))
        );
    }

    #[test]
    fn hpa_spec_defaults_to_cpu_utilization() {
        let spec: HpaSpec = serde_json::from_value(json!({
            "scaleTargetRef": {"kind": "Deployment", "name": "w"}, "maxReplicas": 3
        }))
        .unwrap();
        let m = spec.effective_metrics();
        assert_eq!(m[0].kind, "Resource");
        assert_eq!(
            m[0].resource.as_ref().unwrap().target.parse(),
            Some(TargetValue::Utilization(80))
        );
    }
}
