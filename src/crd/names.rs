//! Names KEDA users, dashboards and tools depend on: annotations, labels, the finalizer,
//! condition types and reasons, Event reasons and the owned HPA's name. Spelled exactly as KEDA
//! spells them (`reference/keda.md` §1, §2.12) so existing manifests and alerts keep working.

/// API group of the autoscaling resources.
pub const GROUP: &str = "keda.sh";
/// API version of the autoscaling resources.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` of the autoscaling resources.
pub const API_VERSION: &str = "keda.sh/v1alpha1";

/// Finalizer put on ScaledObjects, ScaledJobs and (Cluster)TriggerAuthentications.
pub const FINALIZER: &str = "finalizer.keda.sh";
/// Field manager for server-side apply of the objects tidescale owns.
pub const FIELD_MANAGER: &str = "tidescale-operator";

/// Label the operator puts on every ScaledObject; the external-metric selector.
pub const LABEL_SCALED_OBJECT_NAME: &str = "scaledobject.keda.sh/name";
/// Label on Jobs created for a ScaledJob.
pub const LABEL_SCALED_JOB_NAME: &str = "scaledjob.keda.sh/name";

/// Annotation pausing a ScaledObject or ScaledJob (any value but `false` pauses).
pub const ANNOTATION_PAUSED: &str = "autoscaling.keda.sh/paused";
/// Annotation pausing a ScaledObject at a fixed replica count.
pub const ANNOTATION_PAUSED_REPLICAS: &str = "autoscaling.keda.sh/paused-replicas";
/// Annotation forbidding scale-in while keeping scale-out.
pub const ANNOTATION_PAUSED_SCALE_IN: &str = "autoscaling.keda.sh/paused-scale-in";
/// Annotation forbidding scale-out while keeping scale-in.
pub const ANNOTATION_PAUSED_SCALE_OUT: &str = "autoscaling.keda.sh/paused-scale-out";
/// Annotation treating a ScaledObject as active whatever its triggers say.
pub const ANNOTATION_FORCE_ACTIVATION: &str = "autoscaling.keda.sh/force-activation";
/// Annotation adopting an existing HPA named in `horizontalPodAutoscalerConfig.name`.
pub const ANNOTATION_TRANSFER_HPA_OWNERSHIP: &str = "scaledobject.keda.sh/transfer-hpa-ownership";
/// Annotation (on an HPA) skipping the "workload already managed by an HPA" check.
pub const ANNOTATION_VALIDATE_HPA_OWNERSHIP: &str = "validations.keda.sh/hpa-ownership";
/// Annotation listing ScaledObject labels not copied to the HPA (comma-separated).
pub const ANNOTATION_HPA_EXCLUDED_LABELS: &str = "scaledobject.keda.sh/hpa-excluded-labels";
/// Annotation listing ScaledJob labels not copied to its Jobs (comma-separated).
pub const ANNOTATION_JOB_EXCLUDED_LABELS: &str = "scaledjob.keda.sh/job-excluded-labels";
/// Annotation recording the ScaledJob generation a Job was created from.
pub const ANNOTATION_SCALED_JOB_GENERATION: &str = "scaledjob.keda.sh/generation";

/// Prefix of the owned HPA's default name.
pub const HPA_NAME_PREFIX: &str = "keda-hpa-";
/// External metric name used when `scalingModifiers` combines triggers.
pub const COMPOSITE_METRIC_NAME: &str = "composite-metric";
/// Longest name Kubernetes accepts for a label value, and KEDA for SO and HPA names.
pub const MAX_NAME_LENGTH: usize = 63;

/// The HPA name KEDA derives for a ScaledObject that does not configure one.
pub fn default_hpa_name(scaled_object: &str) -> String {
    format!("{HPA_NAME_PREFIX}{scaled_object}")
}

/// Condition types on ScaledObject and ScaledJob status.
pub mod condition {
    /// The object's spec and triggers are valid and the HPA exists.
    pub const READY: &str = "Ready";
    /// At least one trigger is active.
    pub const ACTIVE: &str = "Active";
    /// Fallback replicas are in use because a metric keeps failing.
    pub const FALLBACK: &str = "Fallback";
    /// Scaling is paused by annotation.
    pub const PAUSED: &str = "Paused";
    /// Mirrors the owned HPA's `ScalingActive` condition.
    pub const HPA_ACTIVE: &str = "HPAActive";
}

/// Condition reasons, as KEDA sets them.
pub mod reason {
    /// Ready=True.
    pub const SCALED_OBJECT_READY: &str = "ScaledObjectReady";
    /// Ready=False: spec or triggers invalid.
    pub const SCALED_OBJECT_CHECK_FAILED: &str = "ScaledObjectCheckFailed";
    /// Ready=Unknown: some triggers failed while the object was active.
    pub const PARTIAL_TRIGGER_ERROR: &str = "PartialTriggerError";
    /// Ready=False: triggers failed and no fallback is configured.
    pub const TRIGGER_ERROR: &str = "TriggerError";
    /// Ready=False: the scale target's replicas could not be read.
    pub const ERROR_GETTING_CURRENT_REPLICAS: &str = "ErrorGettingCurrentReplicas";
    /// Ready=True on a ScaledJob.
    pub const SCALED_JOB_READY: &str = "ScaledJobReady";
    /// Active=True.
    pub const SCALER_ACTIVE: &str = "ScalerActive";
    /// Active=False.
    pub const SCALER_NOT_ACTIVE: &str = "ScalerNotActive";
    /// Active=False while the cooldown runs.
    pub const SCALER_COOLDOWN: &str = "ScalerCooldown";
    /// Initial Active condition.
    pub const UNKNOWN_STATE: &str = "UnknownState";
    /// Fallback=True.
    pub const FALLBACK_EXISTS: &str = "FallbackExists";
    /// Fallback=False.
    pub const NO_FALLBACK_FOUND: &str = "NoFallbackFound";
    /// Paused=True.
    pub const SCALED_OBJECT_PAUSED: &str = "ScaledObjectPaused";
    /// Paused=False.
    pub const SCALED_OBJECT_UNPAUSED: &str = "ScaledObjectUnpaused";
    /// HPAActive=True.
    pub const HPA_ACTIVE: &str = "HPAActive";
    /// HPAActive=True while the target sits at zero.
    pub const SCALING_DISABLED: &str = "ScalingDisabled";
    /// HPAActive=False when the HPA reports nothing usable.
    pub const HPA_METRICS_UNAVAILABLE: &str = "HPAMetricsUnavailable";
}

/// Kubernetes Event reasons, as KEDA records them (`pkg/eventreason`).
pub mod event {
    /// The ScaledObject became ready.
    pub const SCALED_OBJECT_READY: &str = "ScaledObjectReady";
    /// The ScaledObject failed validation.
    pub const SCALED_OBJECT_CHECK_FAILED: &str = "ScaledObjectCheckFailed";
    /// The ScaledObject could not be updated.
    pub const SCALED_OBJECT_UPDATE_FAILED: &str = "ScaledObjectUpdateFailed";
    /// The ScaledObject was deleted and cleaned up.
    pub const SCALED_OBJECT_DELETED: &str = "ScaledObjectDeleted";
    /// Scaling was paused.
    pub const SCALED_OBJECT_PAUSED: &str = "ScaledObjectPaused";
    /// Scaling was resumed.
    pub const SCALED_OBJECT_UNPAUSED: &str = "ScaledObjectUnpaused";
    /// Fallback replicas took over.
    pub const SCALED_OBJECT_FALLBACK_ACTIVATED: &str = "ScaledObjectFallbackActivated";
    /// Fallback replicas no longer apply.
    pub const SCALED_OBJECT_FALLBACK_DEACTIVATED: &str = "ScaledObjectFallbackDeactivated";
    /// The scale loop started.
    pub const SCALERS_STARTED: &str = "KEDAScalersStarted";
    /// The scale loop stopped.
    pub const SCALERS_STOPPED: &str = "KEDAScalersStopped";
    /// A scaler could not be built.
    pub const SCALER_FAILED: &str = "KEDAScalerFailed";
    /// A metric source failed during a poll.
    pub const METRIC_SOURCE_FAILED: &str = "KEDAMetricSourceFailed";
    /// The target was scaled up from zero (or idle).
    pub const SCALE_TARGET_ACTIVATED: &str = "KEDAScaleTargetActivated";
    /// The target was scaled down to zero (or idle).
    pub const SCALE_TARGET_DEACTIVATED: &str = "KEDAScaleTargetDeactivated";
    /// Scaling up from zero failed.
    pub const SCALE_TARGET_ACTIVATION_FAILED: &str = "KEDAScaleTargetActivationFailed";
    /// Scaling down to zero failed.
    pub const SCALE_TARGET_DEACTIVATION_FAILED: &str = "KEDAScaleTargetDeactivationFailed";
    /// Jobs were created for a ScaledJob.
    pub const JOBS_CREATED: &str = "KEDAJobsCreated";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hpa_name_follows_keda() {
        assert_eq!(default_hpa_name("orders"), "keda-hpa-orders");
    }
}
