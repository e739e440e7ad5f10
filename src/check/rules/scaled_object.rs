//! ScaledObject rules of KEDA's admission webhook (`reference/keda.md` §2.10, §2.6, §2.7).

use super::DEFAULT_NAMESPACE;
use super::triggers::{
    self, EnvSource, MetricReport, RESOURCE_SCALERS, TriggerOwner, TriggerValidator,
};
use crate::check::report::Problems;
use crate::crd::names::MAX_NAME_LENGTH;
use crate::crd::{FallbackBehavior, ScaledObject, ScalingModifiers};

/// Every ScaledObject rule; returns the metrics of its valid triggers.
pub fn scaled_object(
    so: &ScaledObject,
    validator: &dyn TriggerValidator,
    problems: &mut Problems,
) -> Vec<MetricReport> {
    let name = so.metadata.name.as_deref().unwrap_or_default();
    check_names(so, name, problems);
    check_replica_bounds(so, problems);
    let target = &so.spec.scale_target_ref;
    let owner = TriggerOwner {
        namespace: so
            .metadata
            .namespace
            .as_deref()
            .unwrap_or(DEFAULT_NAMESPACE),
        name,
        scaled_job: false,
        env_source: EnvSource::Target {
            api_version: target.api_version_or_default(),
            kind: target.kind_or_default(),
            name: &target.name,
            container: target.env_source_container_name.as_deref(),
        },
    };
    let metrics = triggers::check_triggers(&so.spec.triggers, owner, validator, problems);
    check_resource_only(so, problems);
    check_fallback(so, problems);
    if let Some(modifiers) = so
        .spec
        .advanced
        .as_ref()
        .and_then(|a| a.scaling_modifiers.as_ref())
    {
        check_scaling_modifiers(so, modifiers, problems);
    }
    metrics
}

/// The object name is a label value on the HPA, and the HPA's name must fit a label too.
fn check_names(so: &ScaledObject, name: &str, problems: &mut Problems) {
    if name.len() > MAX_NAME_LENGTH {
        let message = format!(
            "Invalid value: {name:?}: must be no more than {MAX_NAME_LENGTH} characters (it is used as a label value)"
        );
        problems.add(".metadata.name", message);
    }
    let hpa_name = so.hpa_name();
    if hpa_name.len() > MAX_NAME_LENGTH {
        let custom = so
            .spec
            .advanced
            .as_ref()
            .and_then(|a| a.horizontal_pod_autoscaler_config.as_ref())
            .and_then(|c| c.name.as_deref())
            .is_some_and(|n| !n.is_empty());
        let path = if custom {
            ".spec.advanced.horizontalPodAutoscalerConfig.name"
        } else {
            ".metadata.name"
        };
        let message = format!(
            "the HPA name {hpa_name:?} is longer than {MAX_NAME_LENGTH} characters; \
             shorten the name or set advanced.horizontalPodAutoscalerConfig.name"
        );
        problems.add(path, message);
    }
}

fn check_replica_bounds(so: &ScaledObject, problems: &mut Problems) {
    let (min, max) = (so.spec.min_replica_count, so.spec.max_replica_count);
    if min > max {
        problems.add(
            ".spec.minReplicaCount",
            format!("MinReplicaCount={min} must not be greater than MaxReplicaCount={max}"),
        );
    }
    if let Some(idle) = so.spec.idle_replica_count
        && idle >= min
    {
        problems.add(
            ".spec.idleReplicaCount",
            format!("IdleReplicaCount={idle} must be less than MinReplicaCount={min}"),
        );
    }
}

fn is_resource_trigger(trigger_type: &str) -> bool {
    RESOURCE_SCALERS.contains(&trigger_type)
}

/// cpu and memory cannot wake a workload from zero: they read the workload's own pods.
fn check_resource_only(so: &ScaledObject, problems: &mut Problems) {
    let only_resource = so
        .spec
        .triggers
        .iter()
        .all(|t| is_resource_trigger(&t.type_));
    if only_resource && so.spec.min_replica_count == 0 {
        problems.add(
            ".spec.minReplicaCount",
            "scaledobject has only cpu/memory triggers AND minReplica is 0 (scale to zero doesn't work in this case)",
        );
    }
}

fn check_fallback(so: &ScaledObject, problems: &mut Problems) {
    let Some(fallback) = &so.spec.fallback else {
        return;
    };
    let modifiers = so
        .spec
        .advanced
        .as_ref()
        .and_then(|a| a.scaling_modifiers.as_ref());
    let has_formula = modifiers
        .and_then(|m| m.formula.as_deref())
        .is_some_and(|f| !f.trim().is_empty());
    if fallback.behavior == FallbackBehavior::ScalingModifiers && !has_formula {
        problems.add(
            ".spec.fallback.behavior",
            "behavior \"scalingModifiers\" requires spec.advanced.scalingModifiers.formula",
        );
    }
    let usable = so.spec.triggers.iter().any(|t| {
        !is_resource_trigger(&t.type_)
            && matches!(
                t.metric_type.as_deref(),
                None | Some("") | Some("AverageValue") | Some("Value")
            )
    });
    if !usable && !has_formula {
        problems.add(
            ".spec.fallback",
            "fallback needs at least one trigger that is not cpu or memory and uses metricType AverageValue or Value",
        );
    }
}

fn check_scaling_modifiers(
    so: &ScaledObject,
    modifiers: &ScalingModifiers,
    problems: &mut Problems,
) {
    let base = ".spec.advanced.scalingModifiers";
    let formula = modifiers
        .formula
        .as_deref()
        .map(str::trim)
        .filter(|f| !f.is_empty());
    let Some(formula) = formula else {
        if modifiers.target.is_some() || modifiers.activation_target.is_some() {
            problems.add(
                format!("{base}.formula"),
                "Required value: scalingModifiers need a formula",
            );
        }
        return;
    };
    match modifiers.target.as_deref().map(str::trim) {
        None | Some("") => problems.add(
            format!("{base}.target"),
            "Required value: a formula needs a target",
        ),
        Some(target) => match target.parse::<f64>() {
            Ok(t) if t.is_finite() && t > 0.0 => {}
            Ok(_) => problems.add(
                format!("{base}.target"),
                format!("Invalid value: {target:?}: target must be greater than 0"),
            ),
            Err(_) => problems.add(
                format!("{base}.target"),
                format!("Invalid value: {target:?}: must be a number, e.g. \"10\""),
            ),
        },
    }
    if let Some(activation) = modifiers
        .activation_target
        .as_deref()
        .map(str::trim)
        .filter(|a| !a.is_empty())
        && !activation.parse::<f64>().is_ok_and(f64::is_finite)
    {
        problems.add(
            format!("{base}.activationTarget"),
            format!("Invalid value: {activation:?}: must be a number"),
        );
    }
    check_formula(so, formula, problems);
}

/// The formula compiles over the named non-resource triggers (KEDA dry-runs it the same way).
fn check_formula(so: &ScaledObject, formula: &str, problems: &mut Problems) {
    let names: Vec<&str> = so
        .spec
        .triggers
        .iter()
        .filter(|t| !is_resource_trigger(&t.type_))
        .filter_map(|t| t.name.as_deref())
        .filter(|n| !n.is_empty())
        .collect();
    if let Err(e) = crate::modifiers::Formula::compile(formula, &names) {
        problems.add(".spec.advanced.scalingModifiers.formula", e.to_string());
    }
}
