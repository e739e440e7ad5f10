//! Trigger metadata validated by the scalers' own parser (`tidescale_scalers::parse_only`),
//! with env and auth params resolved from the input the way the operator resolves them from
//! the cluster. Nothing is printed from resolved values: they may be secrets.

use std::cell::RefCell;

use k8s_openapi::api::core::v1::PodSpec;
use tidescale_scalers::naming::target_quantity;
use tidescale_scalers::{DEFAULT_TIMEOUT, ScalerError};

use super::bundle::Bundle;
use super::report::Problem;
use super::rules::{EnvSource, MetricReport, TriggerContext, TriggerValidator};
use crate::resolve::{
    AuthContext, ResolvedAuth, ResolvedEnv, TriggerSite, resolve_auth, resolve_env, scaler_config,
};

/// Triggers whose values come from the metrics server: the HPA reads them directly.
const RESOURCE_TRIGGERS: [&str; 2] = ["cpu", "memory"];

/// Validates triggers through the scalers, resolving what they refer to from a [`Bundle`].
#[derive(Debug)]
pub struct ScalerValidator<'a> {
    /// The objects the input holds.
    pub bundle: &'a Bundle,
    /// Where ClusterTriggerAuthentication Secrets live (KEDA's cluster-object namespace).
    pub cluster_object_namespace: &'a str,
    /// Triggers that could not be fully checked offline, since [`ScalerValidator::take_notes`].
    notes: RefCell<Vec<Problem>>,
}

impl TriggerValidator for ScalerValidator<'_> {
    fn validate(&self, ctx: &TriggerContext<'_>) -> Result<Vec<MetricReport>, Vec<Problem>> {
        if RESOURCE_TRIGGERS.contains(&ctx.trigger.type_.as_str()) {
            return Ok(Vec::new());
        }
        let (pod, container) = self.env_pod(ctx);
        let env = match pod {
            Some(pod) => resolve_env(ctx.namespace, pod, container, &self.bundle.objects)
                .map_err(|e| vec![Problem::new(env_path(ctx), e.to_string())])?,
            None => ResolvedEnv {
                open: true,
                ..ResolvedEnv::default()
            },
        };
        let auth = self.auth(ctx, pod)?;
        let site = TriggerSite {
            namespace: ctx.namespace,
            name: ctx.object_name,
            index: ctx.index,
        };
        let cfg = scaler_config(site, ctx.trigger, &env, &auth, DEFAULT_TIMEOUT);
        match tidescale_scalers::parse_only(&cfg) {
            Ok(specs) => Ok(specs
                .iter()
                .map(|spec| MetricReport {
                    trigger_index: ctx.index,
                    trigger_type: ctx.trigger.type_.clone(),
                    metric_name: spec.metric_name.clone(),
                    target: target_quantity(spec),
                    metric_type: spec.metric_type.as_str().to_owned(),
                    activation_threshold: Some(spec.activation_threshold),
                })
                .collect()),
            Err(e @ ScalerError::Unresolved { .. }) => {
                self.notes
                    .borrow_mut()
                    .push(Problem::new(ctx.path(), e.to_string()));
                Ok(Vec::new())
            }
            Err(e) => Err(vec![Problem::new(metadata_path(ctx, &e), e.to_string())]),
        }
    }
}

impl<'a> ScalerValidator<'a> {
    /// A validator over `bundle`.
    pub fn new(bundle: &'a Bundle, cluster_object_namespace: &'a str) -> Self {
        Self {
            bundle,
            cluster_object_namespace,
            notes: RefCell::default(),
        }
    }

    /// The triggers noted as not fully checked since the last call.
    pub fn take_notes(&self) -> Vec<Problem> {
        self.notes.take()
    }

    /// The pod template `<key>FromEnv` reads, when the input holds it.
    fn env_pod(&self, ctx: &TriggerContext<'a>) -> (Option<&'a PodSpec>, Option<&'a str>) {
        match ctx.env_source {
            EnvSource::Target {
                api_version,
                kind,
                name,
                container,
            } => (
                self.bundle.workload(api_version, kind, ctx.namespace, name),
                container,
            ),
            EnvSource::JobTemplate { pod, container } => (pod, container),
        }
    }

    /// The trigger's auth params; open (anything may be present) when the input does not hold
    /// the referenced (Cluster)TriggerAuthentication.
    fn auth(
        &self,
        ctx: &TriggerContext<'_>,
        pod: Option<&PodSpec>,
    ) -> Result<ResolvedAuth, Vec<Problem>> {
        let Some(reference) = &ctx.trigger.authentication_ref else {
            return Ok(ResolvedAuth::default());
        };
        let cluster_scoped = reference.kind_or_default() == "ClusterTriggerAuthentication";
        let (spec, namespace) = if cluster_scoped {
            (
                self.bundle.cluster_trigger_auth(&reference.name),
                self.cluster_object_namespace,
            )
        } else {
            (
                self.bundle.trigger_auth(ctx.namespace, &reference.name),
                ctx.namespace,
            )
        };
        let Some(spec) = spec else {
            return Ok(ResolvedAuth {
                open: true,
                ..ResolvedAuth::default()
            });
        };
        let auth_ctx = AuthContext {
            namespace,
            cluster_scoped,
            target_namespace: ctx.namespace,
            target_pod: pod,
        };
        resolve_auth(spec, auth_ctx, &self.bundle.objects).map_err(|e| {
            vec![Problem::new(
                format!("{}.authenticationRef", ctx.path()),
                e.to_string(),
            )]
        })
    }
}

fn env_path(ctx: &TriggerContext<'_>) -> String {
    match ctx.env_source {
        EnvSource::Target { .. } => ".spec.scaleTargetRef".to_owned(),
        EnvSource::JobTemplate { .. } => ".spec.jobTargetRef.template".to_owned(),
    }
}

/// Where a scaler's complaint belongs: the trigger's `type` when it is unknown, else its
/// `metadata`.
fn metadata_path(ctx: &TriggerContext<'_>, error: &ScalerError) -> String {
    match error {
        ScalerError::UnknownTrigger { .. } => format!("{}.type", ctx.path()),
        _ => format!("{}.metadata", ctx.path()),
    }
}
