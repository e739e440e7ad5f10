//! Trigger rules shared by ScaledObject and ScaledJob, and the seam where each scaler's own
//! metadata validation plugs in.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::PodSpec;
use serde::Serialize;

use crate::check::report::{Problem, Problems};
use crate::crd::{AUTHENTICATION_REF_KINDS, ScaleTriggers};

/// Scalers whose values come from the metrics server, not from tidescale.
pub const RESOURCE_SCALERS: [&str; 2] = ["cpu", "memory"];
/// Scalers that may not use `useCachedMetrics`.
const NO_CACHED_METRICS: [&str; 3] = ["cpu", "memory", "cron"];
/// `triggers[].metricType` values.
const METRIC_TYPES: [&str; 3] = ["AverageValue", "Value", "Utilization"];

/// Where a trigger's `<key>FromEnv` values come from.
#[derive(Debug, Clone, Copy)]
pub enum EnvSource<'a> {
    /// A ScaledObject's `scaleTargetRef`: the workload's pod template, found by kind and name.
    Target {
        /// `apiVersion` of the target (defaulted).
        api_version: &'a str,
        /// `kind` of the target (defaulted).
        kind: &'a str,
        /// Name of the target.
        name: &'a str,
        /// `envSourceContainerName`.
        container: Option<&'a str>,
    },
    /// A ScaledJob's own Job template.
    JobTemplate {
        /// The template's pod spec, when it has one.
        pod: Option<&'a PodSpec>,
        /// `envSourceContainerName`.
        container: Option<&'a str>,
    },
}

/// One trigger, with what a metadata validator needs to know about where it sits.
#[derive(Debug)]
pub struct TriggerContext<'a> {
    /// Namespace of the ScaledObject or ScaledJob.
    pub namespace: &'a str,
    /// Name of the ScaledObject or ScaledJob.
    pub object_name: &'a str,
    /// Position in `spec.triggers`.
    pub index: usize,
    /// The trigger.
    pub trigger: &'a ScaleTriggers,
    /// Whether the trigger belongs to a ScaledJob.
    pub scaled_job: bool,
    /// Where `<key>FromEnv` values come from.
    pub env_source: EnvSource<'a>,
}

impl TriggerContext<'_> {
    /// JSON path of the trigger, e.g. `.spec.triggers[2]`.
    pub fn path(&self) -> String {
        format!(".spec.triggers[{}]", self.index)
    }
}

/// One metric a valid trigger will expose, as `tidescale check --output json` reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricReport {
    /// Position of the trigger in `spec.triggers`.
    pub trigger_index: usize,
    /// The trigger's `type`.
    pub trigger_type: String,
    /// The external metric name the HPA will query.
    pub metric_name: String,
    /// The HPA target, as a Kubernetes quantity.
    pub target: String,
    /// `AverageValue` or `Value`.
    pub metric_type: String,
    /// The trigger is active above this value, when the scaler has such a threshold.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activation_threshold: Option<f64>,
}

/// Validates a trigger's scaler-specific metadata. The scalers plug in here; `check` runs the
/// same parser the operator runs.
pub trait TriggerValidator {
    /// The metrics the trigger exposes, or what is wrong with its `metadata` (and what it
    /// refers to).
    fn validate(&self, trigger: &TriggerContext<'_>) -> Result<Vec<MetricReport>, Vec<Problem>>;
}

/// Validates no metadata: only the generic trigger rules apply.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoTriggerValidation;

impl TriggerValidator for NoTriggerValidation {
    fn validate(&self, _trigger: &TriggerContext<'_>) -> Result<Vec<MetricReport>, Vec<Problem>> {
        Ok(Vec::new())
    }
}

/// Where a set of triggers sits: its object and env source.
#[derive(Debug, Clone, Copy)]
pub struct TriggerOwner<'a> {
    /// Namespace of the object.
    pub namespace: &'a str,
    /// Name of the object.
    pub name: &'a str,
    /// Whether the object is a ScaledJob.
    pub scaled_job: bool,
    /// Where `<key>FromEnv` values come from.
    pub env_source: EnvSource<'a>,
}

/// The generic trigger rules, then the scaler's own; returns the metrics of valid triggers.
pub fn check_triggers(
    triggers: &[ScaleTriggers],
    owner: TriggerOwner<'_>,
    validator: &dyn TriggerValidator,
    problems: &mut Problems,
) -> Vec<MetricReport> {
    let mut names = BTreeSet::new();
    let mut metrics = Vec::new();
    for (index, trigger) in triggers.iter().enumerate() {
        let context = TriggerContext {
            namespace: owner.namespace,
            object_name: owner.name,
            index,
            trigger,
            scaled_job: owner.scaled_job,
            env_source: owner.env_source,
        };
        let scaled_job = owner.scaled_job;
        let path = context.path();
        if let Some(name) = trigger.name.as_deref().filter(|n| !n.is_empty())
            && !names.insert(name)
        {
            let message =
                format!("triggerName {name:?} is defined multiple times, but it must be unique");
            problems.add(format!("{path}.name"), message);
        }
        if trigger.use_cached_metrics == Some(true)
            && NO_CACHED_METRICS.contains(&trigger.type_.as_str())
        {
            let message = format!(
                "property \"useCachedMetrics\" is not supported for {:?} scaler",
                trigger.type_
            );
            problems.add(format!("{path}.useCachedMetrics"), message);
        }
        check_metric_type(trigger, &path, scaled_job, problems);
        check_authentication_ref(trigger, &path, problems);
        match validator.validate(&context) {
            Ok(reports) => metrics.extend(reports),
            Err(found) => problems.extend(found),
        }
    }
    metrics
}

fn check_metric_type(
    trigger: &ScaleTriggers,
    path: &str,
    scaled_job: bool,
    problems: &mut Problems,
) {
    let Some(metric_type) = trigger.metric_type.as_deref().filter(|m| !m.is_empty()) else {
        return;
    };
    let path = format!("{path}.metricType");
    if scaled_job {
        problems.add(
            path,
            "metricType is not supported for ScaledJob triggers: Jobs are not scaled by an HPA",
        );
    } else if !METRIC_TYPES.contains(&metric_type) {
        let message = format!(
            "Unsupported value: {metric_type:?}: supported values: \"AverageValue\", \"Value\", \"Utilization\""
        );
        problems.add(path, message);
    } else if metric_type == "Utilization" && !RESOURCE_SCALERS.contains(&trigger.type_.as_str()) {
        problems.add(
            path,
            "'Utilization' metric type is unsupported for external metrics, allowed values are 'Value' or 'AverageValue'",
        );
    }
}

fn check_authentication_ref(trigger: &ScaleTriggers, path: &str, problems: &mut Problems) {
    let Some(auth) = &trigger.authentication_ref else {
        return;
    };
    if auth.name.trim().is_empty() {
        problems.add(
            format!("{path}.authenticationRef.name"),
            "Required value: name the (Cluster)TriggerAuthentication",
        );
    }
    let kind = auth.kind_or_default();
    if !AUTHENTICATION_REF_KINDS.contains(&kind) {
        let message = format!(
            "Unsupported value: {kind:?}: supported values: \"TriggerAuthentication\", \"ClusterTriggerAuthentication\""
        );
        problems.add(format!("{path}.authenticationRef.kind"), message);
    }
}
