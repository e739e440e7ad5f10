//! KEDA-compatible scalers for tidescale.
//!
//! A *scaler* turns one ScaledObject trigger (`type` + `metadata` + resolved auth and env) into
//! one or more external metrics and an activity flag. This crate holds the trait every scaler
//! implements, the plain-data configuration it is built from, the registry that maps KEDA `type`
//! strings to builders, and the shared clients that keep one connection per backend endpoint.
//!
//! It knows nothing of Kubernetes clients or HTTP servers: the operator resolves Secrets and env
//! and hands plain maps in; the metrics adapter reads values the operator already holds.
//!
//! The behavioural contract (keys, lookup order, defaults, formulas) is
//! `shared/spec/scalers.md`; each scaler module starts with its key table.
//!
//! Entry points for the rest of tidescale:
//! - [`build_scaler`]: parse, validate and take pooled clients; then poll with
//!   [`Scaler::metrics_and_activity`] and release with [`Scaler::close`].
//! - [`parse_only`]: the same parsing and validation without any I/O (`tidescale check`).
//! - [`naming::milli_quantity`] / [`naming::target_quantity`]: values and targets as Kubernetes
//!   quantities; [`naming::metric_name`] / [`naming::strip_prefix`]: `s<index>-…` names.
//! - [`metadata::Params`]: the typed metadata engine every scaler parses with.
//! - [`pool`]: shared clients per endpoint, their counters and per-endpoint backoff.

#![warn(missing_docs)]

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

pub mod metadata;
pub mod naming;
pub mod pool;

#[cfg(feature = "prometheus")]
pub mod aws_sts;
#[cfg(any(
    feature = "azure-servicebus",
    feature = "prometheus",
    feature = "rabbitmq"
))]
pub mod azure_ad;
#[cfg(feature = "azure-servicebus")]
pub mod azure_servicebus;
#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg(feature = "prometheus")]
pub mod prometheus;
#[cfg(feature = "rabbitmq")]
pub mod rabbitmq;
#[cfg(feature = "prometheus")]
pub mod sigv4;

/// The default timeout of every backend call: KEDA's `KEDA_HTTP_DEFAULT_TIMEOUT` (3000 ms).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(3000);

/// How the HPA compares a metric with its target (`triggers[].metricType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MetricType {
    /// `target.averageValue`: the value is divided by the number of replicas (KEDA's default).
    #[default]
    AverageValue,
    /// `target.value`: the value is compared as is.
    Value,
    /// `target.averageUtilization`: only for the `cpu` and `memory` scalers.
    Utilization,
}

impl MetricType {
    /// The Kubernetes spelling (`AverageValue`, `Value`, `Utilization`).
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::AverageValue => "AverageValue",
            MetricType::Value => "Value",
            MetricType::Utilization => "Utilization",
        }
    }
}

/// Everything a scaler is built from. Plain data: no clients, no Kubernetes types, so tests
/// build it from map literals.
#[derive(Clone, Default)]
pub struct ScalerConfig {
    /// Namespace of the ScaledObject or ScaledJob.
    pub namespace: String,
    /// Name of the ScaledObject or ScaledJob.
    pub name: String,
    /// 0-based position of the trigger in `spec.triggers`; the `s<index>-` metric prefix.
    pub trigger_index: usize,
    /// KEDA `type` string, e.g. `rabbitmq`.
    pub trigger_type: String,
    /// Optional trigger `name` (used in formulas and metric labels).
    pub trigger_name: Option<String>,
    /// `triggers[].metadata`, verbatim.
    pub metadata: BTreeMap<String, String>,
    /// Parameters resolved from the (Cluster)TriggerAuthentication. May hold secrets: never
    /// printed (see the `Debug` impl).
    pub auth_params: BTreeMap<String, String>,
    /// Env of the scale target's container, for `<key>FromEnv` lookups. May hold secrets.
    pub resolved_env: BTreeMap<String, String>,
    /// Pod identity provider from the TriggerAuthentication (`none`, `azure-workload`, …).
    pub pod_identity: Option<PodIdentity>,
    /// `triggers[].metricType`; `None` means the trigger did not set it (AverageValue).
    pub metric_type: Option<MetricType>,
    /// Upper bound for every backend call made by this scaler.
    pub timeout: Duration,
    /// Values that exist but are not known here: `tidescale check` on a bundle that lacks the
    /// Secret or TriggerAuthentication a value comes from. Empty in the operator.
    pub unresolved: Unresolved,
}

/// Auth params and env vars that exist but whose values are not known offline.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Unresolved {
    /// Auth params with unknown values.
    pub auth_params: std::collections::BTreeSet<String>,
    /// Any auth param may exist (the TriggerAuthentication itself is not known).
    pub any_auth_param: bool,
    /// Env vars with unknown values.
    pub env: std::collections::BTreeSet<String>,
    /// Any env var may exist (an `envFrom` source or the workload is not known).
    pub any_env: bool,
}

/// `spec.podIdentity` of a TriggerAuthentication, passed through to scalers that use it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodIdentity {
    /// `provider`: `none`, `azure-workload`, `gcp`, `aws`, `aws-eks`.
    pub provider: String,
    /// `identityId` (Azure client id), if set.
    pub identity_id: Option<String>,
    /// `identityTenantId`, if set.
    pub identity_tenant_id: Option<String>,
    /// `identityAuthorityHost`, if set.
    pub identity_authority_host: Option<String>,
}

impl fmt::Debug for ScalerConfig {
    // Auth params and env may hold secrets: show only their keys.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScalerConfig")
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .field("trigger_index", &self.trigger_index)
            .field("trigger_type", &self.trigger_type)
            .field("trigger_name", &self.trigger_name)
            .field("metadata", &self.metadata)
            .field("auth_params", &self.auth_params.keys().collect::<Vec<_>>())
            .field(
                "resolved_env",
                &self.resolved_env.keys().collect::<Vec<_>>(),
            )
            .field("pod_identity", &self.pod_identity)
            .field("metric_type", &self.metric_type)
            .field("timeout", &self.timeout)
            .field("unresolved", &self.unresolved)
            .finish()
    }
}

/// One metric a scaler exposes to the HPA: name and target.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricSpec {
    /// External metric name, `s<index>-<detail>`, already normalised.
    pub metric_name: String,
    /// The HPA target (value or average value, per `metric_type`).
    pub target: f64,
    /// Whether the target is a plain integer quantity or a milli quantity (spec/scalers.md §1.5).
    pub target_is_integer: bool,
    /// How the HPA compares the metric with the target.
    pub metric_type: MetricType,
    /// The trigger is active when the raw value is strictly greater than this.
    pub activation_threshold: f64,
}

/// The result of one poll of one metric.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsAndActivity {
    /// The values to report (usually one). Raw: clamping of NaN/Inf/negatives happens when
    /// they are formatted as quantities.
    pub values: Vec<f64>,
    /// `raw value > activation threshold` (or the scaler's own rule).
    pub active: bool,
}

/// A pollable scaler. Built by [`build_scaler`] from a [`ScalerConfig`].
#[async_trait]
pub trait Scaler: Send + Sync + fmt::Debug {
    /// The KEDA `type` string of this scaler, for labels and logs.
    fn scaler_type(&self) -> &'static str;

    /// The metrics this scaler exposes; pure, computed from parsed metadata.
    fn metric_specs(&self) -> Vec<MetricSpec>;

    /// Query the backend for `metric_name` (one of [`Scaler::metric_specs`]).
    async fn metrics_and_activity(
        &self,
        metric_name: &str,
    ) -> Result<MetricsAndActivity, ScalerError>;

    /// Release what this scaler holds (its share of pooled connections).
    async fn close(&self) -> Result<(), ScalerError> {
        Ok(())
    }
}

/// Everything that can go wrong building or polling a scaler.
///
/// Messages never contain secret values: they name keys and sources, not values of auth params.
#[derive(Debug, thiserror::Error)]
pub enum ScalerError {
    /// The trigger `type` is not a known (or compiled-in) scaler.
    #[error("unknown trigger type {trigger_type:?}, known types are: {known}")]
    UnknownTrigger {
        /// What the trigger said.
        trigger_type: String,
        /// The compiled-in types, comma-separated.
        known: String,
    },
    /// Metadata, auth or env did not parse or validate; joined messages, one per problem.
    #[error("{scaler}: {message}")]
    Config {
        /// The scaler type.
        scaler: &'static str,
        /// One or more problems, `; `-joined, each naming key and source.
        message: String,
    },
    /// The backend could not be queried (connection, timeout, HTTP status, protocol).
    #[error("{scaler}: {message}")]
    Backend {
        /// The scaler type.
        scaler: &'static str,
        /// What failed, without secrets.
        message: String,
    },
    /// `metric_name` is not one this scaler exposes.
    #[error("{scaler}: no metric named {metric_name:?}")]
    UnknownMetric {
        /// The scaler type.
        scaler: &'static str,
        /// The name asked for.
        metric_name: String,
    },
    /// Nothing is wrong with what is known, but required keys come from values that are not
    /// known offline ([`ScalerConfig::unresolved`]), so the scaler's own checks did not run.
    #[error(
        "{scaler}: not fully checked offline: the value of {keys} comes from an object the input does not hold"
    )]
    Unresolved {
        /// The scaler type.
        scaler: &'static str,
        /// The keys, comma-separated.
        keys: String,
    },
}

impl ScalerError {
    /// Configuration errors wait for a spec change; everything else is retried with backoff.
    pub fn is_config(&self) -> bool {
        matches!(
            self,
            ScalerError::UnknownTrigger { .. } | ScalerError::Config { .. }
        )
    }

    /// A fixed label per variant, for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            ScalerError::UnknownTrigger { .. } => "unknown_trigger",
            ScalerError::Config { .. } => "config",
            ScalerError::Backend { .. } => "backend",
            ScalerError::UnknownMetric { .. } => "unknown_metric",
            ScalerError::Unresolved { .. } => "unresolved",
        }
    }
}

/// `Ok` when `asked` is `served`, the one metric a single-metric scaler exposes.
pub fn ensure_metric(scaler: &'static str, served: &str, asked: &str) -> Result<(), ScalerError> {
    if asked == served {
        Ok(())
    } else {
        Err(ScalerError::UnknownMetric {
            scaler,
            metric_name: asked.to_owned(),
        })
    }
}

/// The trigger types compiled into this build, alphabetically.
pub const COMPILED_TYPES: &[&str] = &[
    #[cfg(feature = "azure-servicebus")]
    "azure-servicebus",
    #[cfg(feature = "kafka")]
    "kafka",
    #[cfg(feature = "prometheus")]
    "prometheus",
    #[cfg(feature = "rabbitmq")]
    "rabbitmq",
];

fn unknown_trigger(cfg: &ScalerConfig) -> ScalerError {
    ScalerError::UnknownTrigger {
        trigger_type: cfg.trigger_type.clone(),
        known: COMPILED_TYPES.join(", "),
    }
}

/// Build the scaler for one trigger: parse and validate its metadata, then take its share of the
/// pooled backend client (which may connect, as KEDA does at construction for AMQP).
///
/// One alphabetical `match`; each arm exists only when its feature is compiled in.
pub async fn build_scaler(cfg: &ScalerConfig) -> Result<Box<dyn Scaler>, ScalerError> {
    match cfg.trigger_type.as_str() {
        #[cfg(feature = "azure-servicebus")]
        azure_servicebus::TYPE => azure_servicebus::build(cfg).await,
        #[cfg(feature = "kafka")]
        kafka::TYPE => kafka::build(cfg).await,
        #[cfg(feature = "prometheus")]
        prometheus::TYPE => prometheus::build(cfg).await,
        #[cfg(feature = "rabbitmq")]
        rabbitmq::TYPE => rabbitmq::build(cfg).await,
        _ => Err(unknown_trigger(cfg)),
    }
}

/// Parse and validate one trigger without any I/O, returning the metrics it would expose.
///
/// This is the same parser [`build_scaler`] uses, so `tidescale check` validates triggers
/// offline exactly as the operator would.
pub fn parse_only(cfg: &ScalerConfig) -> Result<Vec<MetricSpec>, ScalerError> {
    match cfg.trigger_type.as_str() {
        #[cfg(feature = "azure-servicebus")]
        azure_servicebus::TYPE => azure_servicebus::parse(cfg).map(|t| vec![t.metric_spec()]),
        #[cfg(feature = "kafka")]
        kafka::TYPE => kafka::parse(cfg).map(|t| vec![t.metric_spec()]),
        #[cfg(feature = "prometheus")]
        prometheus::TYPE => prometheus::parse(cfg).map(|t| vec![t.metric_spec(cfg.trigger_index)]),
        #[cfg(feature = "rabbitmq")]
        rabbitmq::TYPE => rabbitmq::parse(cfg).map(|t| vec![t.metric_spec(cfg.trigger_index)]),
        _ => Err(unknown_trigger(cfg)),
    }
}

/// The `metricType` of a trigger for an external scaler: unset means `AverageValue`, and
/// `Utilization` is rejected (spec/scalers.md §1.5).
pub fn external_metric_type(
    cfg: &ScalerConfig,
    scaler: &'static str,
) -> Result<MetricType, ScalerError> {
    match cfg.metric_type.unwrap_or_default() {
        MetricType::Utilization => Err(ScalerError::Config {
            scaler,
            message: "'Utilization' metric type is unsupported for external metrics, allowed \
                      values are 'Value' or 'AverageValue'"
                .to_owned(),
        }),
        other => Ok(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unknown_trigger_lists_compiled_types() {
        let cfg = ScalerConfig {
            trigger_type: "nope".into(),
            ..ScalerConfig::default()
        };
        let err = build_scaler(&cfg).await.expect_err("unknown type");
        assert!(err.is_config());
        let message = err.to_string();
        assert!(
            message.starts_with("unknown trigger type \"nope\""),
            "{message}"
        );
        for known in COMPILED_TYPES {
            assert!(message.contains(known), "{message}");
        }
        assert_eq!(
            parse_only(&cfg).expect_err("unknown").kind(),
            "unknown_trigger"
        );
    }

    #[test]
    fn utilization_is_rejected_for_external_scalers() {
        let cfg = ScalerConfig {
            metric_type: Some(MetricType::Utilization),
            ..ScalerConfig::default()
        };
        let err = external_metric_type(&cfg, "x").expect_err("utilization");
        assert!(
            err.to_string()
                .contains("'Utilization' metric type is unsupported")
        );
        let cfg = ScalerConfig::default();
        assert_eq!(
            external_metric_type(&cfg, "x").expect("default"),
            MetricType::AverageValue
        );
    }
}
