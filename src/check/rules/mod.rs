//! Cross-field rules KEDA's admission webhook enforces that need no cluster
//! (`reference/keda.md` §2.10, `spec/scalers.md` §1.1): replica bounds, idle replicas, fallback,
//! trigger names and options, scaling modifiers, name lengths, auth-source consistency.
//!
//! Each rule reads the typed, defaulted object and adds problems at the JSON path a user edits.

mod auth;
mod scaled_object;
mod triggers;

pub use auth::trigger_authentication;
pub use scaled_object::scaled_object;
pub use triggers::{
    EnvSource, MetricReport, NoTriggerValidation, TriggerContext, TriggerOwner, TriggerValidator,
};

use super::report::Problems;
use crate::crd::ScaledJob;

/// Rules for a ScaledJob: KEDA validates only its triggers (metricType does not apply to Jobs).
pub fn scaled_job(
    sj: &ScaledJob,
    validator: &dyn TriggerValidator,
    problems: &mut Problems,
) -> Vec<MetricReport> {
    let owner = TriggerOwner {
        namespace: sj
            .metadata
            .namespace
            .as_deref()
            .unwrap_or(DEFAULT_NAMESPACE),
        name: sj.metadata.name.as_deref().unwrap_or_default(),
        scaled_job: true,
        env_source: EnvSource::JobTemplate {
            pod: sj.spec.job_target_ref.template.spec.as_ref(),
            container: sj.spec.env_source_container_name.as_deref(),
        },
    };
    let metrics = triggers::check_triggers(&sj.spec.triggers, owner, validator, problems);
    if let Some(percentage) = sj
        .spec
        .scaling_strategy
        .as_ref()
        .and_then(|s| s.custom_scaling_running_job_percentage.as_deref())
        && percentage
            .trim()
            .parse::<f64>()
            .map_or(true, |p| !p.is_finite())
    {
        problems.add(
            ".spec.scalingStrategy.customScalingRunningJobPercentage",
            format!("Invalid value: {percentage:?}: must be a number, e.g. \"0.5\""),
        );
    }
    metrics
}

/// The namespace of an object that names none, as kubectl applies it.
pub const DEFAULT_NAMESPACE: &str = "default";
