//! The owned HPA (`reference/keda.md` §2.3): named `keda-hpa-<name>` (or as configured),
//! `minReplicas = max(minReplicaCount, 1)`, behavior copied (with `Disabled` select policies
//! while scale-in or scale-out is paused), one External metric per trigger metric (selected
//! by the `scaledobject.keda.sh/name` label) or a single `composite-metric` with scaling
//! modifiers, labels and annotations as KEDA sets them, and the ScaledObject as controller.
//!
//! Also the pure rules around an HPA that already exists: whether this ScaledObject owns it,
//! whether it may adopt it (`scaledobject.keda.sh/transfer-hpa-ownership`), and the
//! `HPAActive` condition mirrored from the HPA's `ScalingActive` condition (KEDA #7914).

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, ExternalMetricSource, HPAScalingRules, HorizontalPodAutoscaler,
    HorizontalPodAutoscalerBehavior, HorizontalPodAutoscalerSpec, MetricIdentifier,
    MetricSpec as HpaMetricSpec, MetricTarget,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use tidescale_scalers::naming::{milli_quantity, target_quantity};
use tidescale_scalers::{MetricSpec, MetricType};
use tracing::info;

use super::reconcile::{Context, Error, bounded};
use super::status::{current_status, set_condition_to};
use super::target::{Target, within_api_timeout};
use crate::crd::names::{
    ANNOTATION_HPA_EXCLUDED_LABELS, ANNOTATION_PAUSED_SCALE_IN, ANNOTATION_PAUSED_SCALE_OUT,
    ANNOTATION_TRANSFER_HPA_OWNERSHIP, API_VERSION, COMPOSITE_METRIC_NAME,
    LABEL_SCALED_OBJECT_NAME, MAX_NAME_LENGTH, reason,
};
use crate::crd::names::{FIELD_MANAGER, condition};
use crate::crd::{ModifierMetricType, ScaledObject, ScalingModifiers};

/// `app.kubernetes.io/managed-by` on owned HPAs; KEDA's value, kept so selectors keep working.
pub const MANAGED_BY: &str = "keda-operator";

/// The resolved scale target the HPA points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetRef {
    /// e.g. `apps/v1`.
    pub api_version: String,
    /// e.g. `Deployment`.
    pub kind: String,
    /// Object name.
    pub name: String,
}

/// The HPA tidescale wants for `so`, given its target and its triggers' metrics in order.
pub fn desired_hpa(
    so: &ScaledObject,
    target: &TargetRef,
    metrics: &[MetricSpec],
    version: &str,
) -> HorizontalPodAutoscaler {
    let name = so.hpa_name();
    HorizontalPodAutoscaler {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: so.metadata.namespace.clone(),
            labels: Some(labels(so, &name, version)),
            annotations: so.metadata.annotations.clone().filter(|a| !a.is_empty()),
            owner_references: owner_reference(so).map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        spec: Some(HorizontalPodAutoscalerSpec {
            min_replicas: Some(so.hpa_min_replicas()),
            max_replicas: so.spec.max_replica_count,
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some(target.api_version.clone()),
                kind: target.kind.clone(),
                name: target.name.clone(),
            },
            metrics: Some(hpa_metrics(so, metrics)),
            behavior: behavior(so),
        }),
        status: None,
    }
}

fn labels(so: &ScaledObject, hpa_name: &str, version: &str) -> BTreeMap<String, String> {
    let so_name = so.metadata.name.clone().unwrap_or_default();
    let excluded: Vec<&str> = so
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_HPA_EXCLUDED_LABELS))
        .map(|list| list.split(',').map(str::trim).collect())
        .unwrap_or_default();
    let mut labels: BTreeMap<String, String> = so
        .metadata
        .labels
        .iter()
        .flatten()
        .filter(|(key, _)| !excluded.contains(&key.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let trimmed: String = hpa_name.chars().take(MAX_NAME_LENGTH).collect();
    labels.insert("app.kubernetes.io/name".into(), trimmed);
    labels.insert("app.kubernetes.io/version".into(), version.into());
    labels.insert("app.kubernetes.io/part-of".into(), so_name);
    labels.insert("app.kubernetes.io/managed-by".into(), MANAGED_BY.into());
    labels
}

fn owner_reference(so: &ScaledObject) -> Option<OwnerReference> {
    Some(OwnerReference {
        api_version: API_VERSION.into(),
        kind: "ScaledObject".into(),
        name: so.metadata.name.clone()?,
        uid: so.metadata.uid.clone()?,
        controller: Some(true),
        block_owner_deletion: Some(true),
    })
}

/// External metrics in trigger order, or the composite metric when modifiers combine them.
fn hpa_metrics(so: &ScaledObject, metrics: &[MetricSpec]) -> Vec<HpaMetricSpec> {
    let so_name = so.metadata.name.clone().unwrap_or_default();
    let modifiers = so
        .spec
        .advanced
        .as_ref()
        .and_then(|a| a.scaling_modifiers.as_ref());
    match modifiers.filter(|m| m.formula.as_deref().is_some_and(|f| !f.trim().is_empty())) {
        Some(modifiers) => vec![composite_metric(&so_name, modifiers)],
        None => metrics
            .iter()
            .map(|spec| external_metric(&so_name, spec))
            .collect(),
    }
}

fn external_metric(so_name: &str, spec: &MetricSpec) -> HpaMetricSpec {
    let quantity = Quantity(target_quantity(spec));
    external(
        so_name,
        &spec.metric_name,
        spec.metric_type == MetricType::Value,
        quantity,
    )
}

fn composite_metric(so_name: &str, modifiers: &ScalingModifiers) -> HpaMetricSpec {
    // `check` and the controller reject a missing or non-positive target before this runs.
    let target = modifiers
        .target
        .as_deref()
        .and_then(|t| t.trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    let value = modifiers.metric_type == Some(ModifierMetricType::Value);
    external(
        so_name,
        COMPOSITE_METRIC_NAME,
        value,
        Quantity(milli_quantity(target)),
    )
}

fn external(so_name: &str, metric_name: &str, value: bool, quantity: Quantity) -> HpaMetricSpec {
    let selector = LabelSelector {
        match_labels: Some(BTreeMap::from([(
            LABEL_SCALED_OBJECT_NAME.to_owned(),
            so_name.to_owned(),
        )])),
        match_expressions: None,
    };
    let target = if value {
        MetricTarget {
            type_: "Value".into(),
            value: Some(quantity),
            ..MetricTarget::default()
        }
    } else {
        MetricTarget {
            type_: "AverageValue".into(),
            average_value: Some(quantity),
            ..MetricTarget::default()
        }
    };
    HpaMetricSpec {
        type_: "External".into(),
        external: Some(ExternalMetricSource {
            metric: MetricIdentifier {
                name: metric_name.to_owned(),
                selector: Some(selector),
            },
            target,
        }),
        ..HpaMetricSpec::default()
    }
}

/// The configured behavior, with `selectPolicy: Disabled` in a direction that is paused.
fn behavior(so: &ScaledObject) -> Option<HorizontalPodAutoscalerBehavior> {
    let configured = so
        .spec
        .advanced
        .as_ref()
        .and_then(|a| a.horizontal_pod_autoscaler_config.as_ref())
        .and_then(|c| c.behavior.clone());
    let annotations = so.metadata.annotations.as_ref();
    let paused = |key: &str| {
        annotations
            .and_then(|a| a.get(key))
            .is_some_and(|v| v != "false")
    };
    let (pause_in, pause_out) = (
        paused(ANNOTATION_PAUSED_SCALE_IN),
        paused(ANNOTATION_PAUSED_SCALE_OUT),
    );
    if !pause_in && !pause_out {
        return configured;
    }
    let mut behavior = configured.unwrap_or_default();
    let disable = |rules: &mut Option<HPAScalingRules>| {
        rules
            .get_or_insert_with(HPAScalingRules::default)
            .select_policy = Some("Disabled".into());
    };
    if pause_in {
        disable(&mut behavior.scale_down);
    }
    if pause_out {
        disable(&mut behavior.scale_up);
    }
    Some(behavior)
}

/// Whether `hpa` names `so` as an owner (by uid when both have one, else by kind and name as
/// KEDA's webhook compares).
pub fn owned_by(hpa: &HorizontalPodAutoscaler, so: &ScaledObject) -> bool {
    let name = so.metadata.name.as_deref().unwrap_or_default();
    hpa.metadata.owner_references.iter().flatten().any(|o| {
        o.kind == "ScaledObject"
            && match so.metadata.uid.as_deref() {
                Some(uid) if !o.uid.is_empty() => o.uid == uid,
                _ => o.name == name,
            }
    })
}

/// What to do with an HPA that already carries the name `so` wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Existing {
    /// Ours (or none): apply as usual.
    Owned,
    /// Someone else's, and the transfer annotation asks to adopt it.
    Adopt,
    /// Someone else's: not touched; the ScaledObject is not ready, for this reason.
    Conflict(String),
}

/// Decide about `hpa`, found under the name `so` wants for its HPA. `target_kind` is the
/// resolved target as `group/version.Kind` (e.g. `apps/v1.Deployment`). The conflict message is
/// KEDA's webhook text when the HPA scales the same workload.
pub fn existing(hpa: &HorizontalPodAutoscaler, so: &ScaledObject, target_kind: &str) -> Existing {
    if owned_by(hpa, so) {
        return Existing::Owned;
    }
    let hpa_name = hpa.metadata.name.clone().unwrap_or_default();
    let transfer = so
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_TRANSFER_HPA_OWNERSHIP))
        .is_some_and(|v| v == "true");
    let configured = so
        .spec
        .advanced
        .as_ref()
        .and_then(|a| a.horizontal_pod_autoscaler_config.as_ref())
        .and_then(|c| c.name.as_deref())
        == Some(hpa_name.as_str());
    if transfer && configured {
        return Existing::Adopt;
    }
    let hint = format!(
        "set the annotation {ANNOTATION_TRANSFER_HPA_OWNERSHIP}: \"true\" and \
         spec.advanced.horizontalPodAutoscalerConfig.name: {hpa_name} to adopt it"
    );
    let workload = &so.spec.scale_target_ref.name;
    let same_target = hpa
        .spec
        .as_ref()
        .is_some_and(|s| s.scale_target_ref.name == *workload);
    Existing::Conflict(if same_target {
        format!(
            "the workload '{workload}' of type '{target_kind}' is already managed by the hpa \
             '{hpa_name}'; {hint}"
        )
    } else {
        format!("the hpa '{hpa_name}' already exists and is not owned by this ScaledObject; {hint}")
    })
}

/// The `HPAActive` condition KEDA derives from the HPA's `ScalingActive` condition: True
/// (`HPAActive`) when scaling is active; True (`ScalingDisabled`) while the target is at zero,
/// since tidescale handles 0↔1 itself; otherwise False (`HPAMetricsUnavailable`) with the HPA's
/// reason and message. `None` while the HPA has not reported `ScalingActive` yet: it cannot be
/// observed, which is not the same as healthy.
pub fn hpa_active(hpa: &HorizontalPodAutoscaler) -> Option<(&'static str, &'static str, String)> {
    let condition = hpa
        .status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "ScalingActive")?;
    let hpa_reason = condition.reason.clone().unwrap_or_default();
    let message = condition.message.clone().unwrap_or_default();
    Some(match condition.status.as_str() {
        "True" => ("True", reason::HPA_ACTIVE, String::new()),
        _ if hpa_reason == reason::SCALING_DISABLED => ("True", reason::SCALING_DISABLED, message),
        _ if message.is_empty() => ("False", reason::HPA_METRICS_UNAVAILABLE, hpa_reason),
        _ => (
            "False",
            reason::HPA_METRICS_UNAVAILABLE,
            format!("{hpa_reason}: {message}"),
        ),
    })
}

// --- Applying it: reads and writes of the owned HPA, on behalf of reconcile ---

/// The HPA `name` in the object's namespace, if it exists.
pub(super) async fn read(
    so: &ScaledObject,
    ctx: &Context,
    name: &str,
) -> Result<Option<HorizontalPodAutoscaler>, Error> {
    let namespace = so.metadata.namespace.as_deref().unwrap_or_default();
    let api: Api<HorizontalPodAutoscaler> = Api::namespaced(ctx.handles.client.clone(), namespace);
    bounded("read the HPA", api.get_opt(name)).await
}

/// Create or update the owned HPA, adopting an existing one when the transfer annotation asks
/// for it, and delete the previous one after a rename. Returns the problem when an HPA of that
/// name belongs to someone else (nothing is written then).
pub(super) async fn ensure(
    so: &ScaledObject,
    ctx: &Context,
    target: &Target,
    specs: &[tidescale_scalers::MetricSpec],
) -> Result<Option<String>, Error> {
    let name = so.hpa_name();
    let target_ref = TargetRef {
        api_version: target.resource.api_version.clone(),
        kind: target.resource.kind.clone(),
        name: target.name.clone(),
    };
    let mut hpa = desired_hpa(so, &target_ref, specs, env!("CARGO_PKG_VERSION"));
    hpa.metadata.managed_fields = None;
    let shape = super::hpa_index::shape(&hpa.metadata, hpa.spec.as_ref());
    if ctx.hpas.has_shape(&target.namespace, &name, shape) {
        // Already as it would be applied, owner reference included: nothing to read or write.
        delete_renamed_hpa(so, ctx, &name).await?;
        return Ok(None);
    }
    let api: Api<HorizontalPodAutoscaler> =
        Api::namespaced(ctx.handles.client.clone(), &target.namespace);
    let value = serde_json::json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": hpa.metadata, "spec": hpa.spec});
    if ctx.hpas.seems_absent(&target.namespace, &name) {
        // Create it without reading first (on a cold start, one request per object less). Not
        // forced: should an HPA of that name have appeared since the watch's last word, a field
        // another manager set differently is a conflict (409), and the read below decides.
        match apply(&api, &name, &value, false).await {
            Ok(()) => {
                delete_renamed_hpa(so, ctx, &name).await?;
                return Ok(None);
            }
            Err(Error::Api {
                source: kube::Error::Api(status),
                ..
            }) if status.code == 409 => {}
            Err(error) => return Err(error),
        }
    }
    if let Some(found) = read(so, ctx, &name).await? {
        match existing(&found, so, &target.kind_label()) {
            Existing::Owned => {}
            Existing::Conflict(problem) => return Ok(Some(problem)),
            Existing::Adopt => {
                // Take the whole object over, as KEDA's Update does: the user's spec, labels
                // and annotations are replaced, and this ScaledObject becomes its controller.
                let mut adopted = hpa.clone();
                adopted.metadata.resource_version = found.metadata.resource_version.clone();
                let params = kube::api::PostParams {
                    field_manager: Some(FIELD_MANAGER.to_owned()),
                    ..Default::default()
                };
                bounded("adopt the HPA", api.replace(&name, &params, &adopted)).await?;
                info!(namespace = %target.namespace, scaled_object = so.metadata.name.as_deref().unwrap_or_default(), hpa = %name, "HPA ownership transferred");
            }
        }
    }
    apply(&api, &name, &value, true).await?;
    delete_renamed_hpa(so, ctx, &name).await?;
    Ok(None)
}

/// Server-side apply of `value` as the HPA `name`; `force` takes over fields other managers own.
async fn apply(
    api: &Api<HorizontalPodAutoscaler>,
    name: &str,
    value: &serde_json::Value,
    force: bool,
) -> Result<(), Error> {
    let mut params = PatchParams::apply(FIELD_MANAGER);
    params.force = force;
    bounded(
        "apply the HPA",
        api.patch(name, &params, &Patch::Apply(value)),
    )
    .await?;
    Ok(())
}

/// After a rename (`horizontalPodAutoscalerConfig.name` set, changed or removed), delete the HPA
/// `status.hpaName` names — only when this ScaledObject owns it.
async fn delete_renamed_hpa(so: &ScaledObject, ctx: &Context, current: &str) -> Result<(), Error> {
    let Some(previous) = so.status.as_ref().and_then(|s| s.hpa_name.as_deref()) else {
        return Ok(());
    };
    if previous == current {
        return Ok(());
    }
    let Some(old) = read(so, ctx, previous).await? else {
        return Ok(());
    };
    if !owned_by(&old, so) {
        return Ok(());
    }
    let namespace = so.metadata.namespace.as_deref().unwrap_or_default();
    let api: Api<HorizontalPodAutoscaler> = Api::namespaced(ctx.handles.client.clone(), namespace);
    match within_api_timeout(api.delete(previous, &Default::default())).await {
        Ok(_) => {
            info!(
                namespace,
                scaled_object = so.metadata.name.as_deref().unwrap_or_default(),
                from = previous,
                to = current,
                "HPA renamed"
            );
            Ok(())
        }
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(source) => Err(Error::Api {
            action: "delete the renamed HPA",
            source,
        }),
    }
}

/// Mirror the owned HPA's `ScalingActive` into `HPAActive` (KEDA #7914). The write carries the
/// object's resourceVersion so it never overwrites a poll's newer status; on a conflict the
/// next event (that newer write) brings the object back here.
pub(super) async fn observe(
    so: &ScaledObject,
    ctx: &Context,
    hpa: &HorizontalPodAutoscaler,
) -> Result<Action, Error> {
    let done = Action::await_change();
    let Some((state, reason, message)) = hpa_active(hpa) else {
        return Ok(done);
    };
    let mut status = current_status(so);
    if !set_condition_to(
        &mut status.conditions,
        condition::HPA_ACTIVE,
        state,
        reason,
        &message,
    ) {
        return Ok(done);
    }
    let namespace = so.metadata.namespace.as_deref().unwrap_or_default();
    let name = so.metadata.name.as_deref().unwrap_or_default();
    let api: Api<ScaledObject> = Api::namespaced(ctx.handles.client.clone(), namespace);
    let patch = Patch::Merge(serde_json::json!({
        "metadata": {"resourceVersion": so.metadata.resource_version},
        "status": status,
    }));
    match within_api_timeout(api.patch_status(name, &PatchParams::default(), &patch)).await {
        Ok(_) => {
            ctx.status_written(so);
            Ok(done)
        }
        Err(kube::Error::Api(status)) if status.code == 409 => {
            Ok(Action::requeue(Duration::from_secs(1)))
        }
        Err(source) => Err(Error::Api {
            action: "write the HPAActive condition",
            source,
        }),
    }
}

#[cfg(test)]
#[path = "hpa_tests.rs"]
mod tests;
