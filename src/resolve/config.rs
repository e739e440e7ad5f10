//! The [`ScalerConfig`] of one trigger from its resolved env and auth params: built the same
//! way by the operator and by `tidescale check`, so both run the scaler's parser on the same
//! input (offline, what is unknown goes to `unresolved`; in the operator nothing is unknown).

use std::time::Duration;

use tidescale_scalers::{MetricType, PodIdentity, ScalerConfig, Unresolved};

use super::{ResolvedAuth, ResolvedEnv};
use crate::crd::{AuthPodIdentity, ScaleTriggers};

/// Where a trigger sits: its object and position.
#[derive(Debug, Clone, Copy)]
pub struct TriggerSite<'a> {
    /// Namespace of the ScaledObject or ScaledJob.
    pub namespace: &'a str,
    /// Its name.
    pub name: &'a str,
    /// Position of the trigger in `spec.triggers`.
    pub index: usize,
}

/// The scaler configuration of `trigger`.
pub fn scaler_config(
    site: TriggerSite<'_>,
    trigger: &ScaleTriggers,
    env: &ResolvedEnv,
    auth: &ResolvedAuth,
    timeout: Duration,
) -> ScalerConfig {
    ScalerConfig {
        namespace: site.namespace.to_owned(),
        name: site.name.to_owned(),
        trigger_index: site.index,
        trigger_type: trigger.type_.clone(),
        trigger_name: trigger.name.clone(),
        metadata: trigger
            .metadata
            .iter()
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect(),
        auth_params: auth.params.known(),
        resolved_env: env.values.known(),
        pod_identity: auth.pod_identity.as_ref().map(pod_identity),
        metric_type: metric_type(trigger.metric_type.as_deref()),
        timeout,
        unresolved: Unresolved {
            auth_params: auth.params.unknown(),
            any_auth_param: auth.open,
            env: env.values.unknown(),
            any_env: env.open,
        },
    }
}

/// `triggers[].metricType`; unset (or unknown, which `check` reports) leaves the default.
fn metric_type(value: Option<&str>) -> Option<MetricType> {
    match value {
        Some("Value") => Some(MetricType::Value),
        Some("Utilization") => Some(MetricType::Utilization),
        Some("AverageValue") => Some(MetricType::AverageValue),
        _ => None,
    }
}

fn pod_identity(identity: &AuthPodIdentity) -> PodIdentity {
    PodIdentity {
        provider: identity.provider.as_str().to_owned(),
        identity_id: identity.identity_id.clone(),
        identity_tenant_id: identity.identity_tenant_id.clone(),
        identity_authority_host: identity.identity_authority_host.clone(),
    }
}
