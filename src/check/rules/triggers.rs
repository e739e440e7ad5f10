//! Trigger rules shared by ScaledObject and ScaledJob, and the seam where each scaler's own
//! metadata validation plugs in.

use std::collections::BTreeSet;

use crate::check::report::{Problem, Problems};
use crate::crd::{AUTHENTICATION_REF_KINDS, ScaleTriggers};

/// Scalers whose values come from the metrics server, not from tidescale.
pub const RESOURCE_SCALERS: [&str; 2] = ["cpu", "memory"];
/// Scalers that may not use `useCachedMetrics`.
const NO_CACHED_METRICS: [&str; 3] = ["cpu", "memory", "cron"];
/// `triggers[].metricType` values.
const METRIC_TYPES: [&str; 3] = ["AverageValue", "Value", "Utilization"];

/// One trigger, with what a metadata validator needs to know about where it sits.
#[derive(Debug)]
pub struct TriggerContext<'a> {
    /// Name of the ScaledObject or ScaledJob.
    pub object_name: &'a str,
    /// Position in `spec.triggers`.
    pub index: usize,
    /// The trigger.
    pub trigger: &'a ScaleTriggers,
    /// Whether the trigger belongs to a ScaledJob.
    pub scaled_job: bool,
}

impl TriggerContext<'_> {
    /// JSON path of the trigger, e.g. `.spec.triggers[2]`.
    pub fn path(&self) -> String {
        format!(".spec.triggers[{}]", self.index)
    }
}

/// Validates a trigger's scaler-specific metadata. The scalers plug in here; `check` runs the
/// same parser the operator runs.
pub trait TriggerValidator {
    /// Problems with the trigger's `metadata` (and what it refers to).
    fn validate(&self, trigger: &TriggerContext<'_>) -> Vec<Problem>;
}

/// Validates no metadata: only the generic trigger rules apply.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoTriggerValidation;

impl TriggerValidator for NoTriggerValidation {
    fn validate(&self, _trigger: &TriggerContext<'_>) -> Vec<Problem> {
        Vec::new()
    }
}

/// The generic trigger rules, then the scaler's own.
pub fn check_triggers(
    triggers: &[ScaleTriggers],
    object_name: &str,
    scaled_job: bool,
    validator: &dyn TriggerValidator,
    problems: &mut Problems,
) {
    let mut names = BTreeSet::new();
    for (index, trigger) in triggers.iter().enumerate() {
        let context = TriggerContext {
            object_name,
            index,
            trigger,
            scaled_job,
        };
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
        problems.extend(validator.validate(&context));
    }
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
