//! RabbitMQ scaler (`rabbitmq`): queue length, message rates and derived figures of one queue
//! (or of every queue matching a regex), read by AMQP passive declare or from the management
//! HTTP API (spec/scalers.md §2; upstream API: <https://www.rabbitmq.com/docs/http-api-reference>).
//!
//! | key | req | default | source | meaning |
//! |---|---|---|---|---|
//! | `host` | yes | – | M,A,E | `amqp[s]://user:pass@host:port/vhost` or `http[s]://user:pass@host:port/<prefix…>/<vhost>` |
//! | `queueName` | yes | – | M | queue name; a regex when `useRegex=true` |
//! | `mode` | no | `QueueLength` (with `value` 20) | M | `QueueLength`, `MessageRate`, `DeliverGetRate`, `PublishedToDeliveredRatio`, `ExpectedQueueConsumptionTime` |
//! | `value` | with `mode` | – | M | target (float; 0 counts as unset) |
//! | `activationValue` | no | 0 | M | active when the metric is strictly greater |
//! | `queueLength` | no | – | M | deprecated: `mode=QueueLength` + `value` |
//! | `protocol` | no | `auto` | M,A | `auto` (by `host` scheme), `amqp`, `http` |
//! | `vhostName` | no | from `host` | M,A | overrides the vhost of `host` |
//! | `useRegex` | no | false | M | HTTP only: `queueName` is a regex |
//! | `excludeUnacknowledged` | no | false | M | HTTP only: count ready messages only |
//! | `pageSize` | no | 100 | M | ≥ 1; regex page size |
//! | `operation` | no | `sum` | M | `sum`, `max`, `avg` over regex matches (checked at poll) |
//! | `timeout` | no | global | M | HTTP only; Go duration or integer ms |
//! | `unsafeSsl` | no | false | M | skip server certificate verification |
//! | `username`, `password` | no | – | A,E | together; replace the userinfo of `host` |
//! | `tls` | no | `disable` | A | `enable`: use `ca`/`cert`/`key` |
//! | `ca`, `cert`, `key`, `keyPassword` | no | – | A | PEM; `cert` and `key` together |
//! | `workloadIdentityResource` | no | – | A | Azure AD audience (HTTP only; needs `podIdentity.provider: azure-workload`): its token is sent as `Authorization: Bearer` |
//! | `oauthTokenURI`, `clientID`, `clientSecret`, `scopes`/`scope`, `endpointParams` | no | – | A | OAuth2 client credentials (HTTP only) |
//!
//! Sources: M = trigger metadata, A = TriggerAuthentication params, E = target env via
//! `<key>FromEnv`. Auth-only keys are secrets and never appear in messages.
//!
//! Metric `s<i>-rabbitmq-<queryEscape(queueName)>`, a milli target of `value`. AMQP connections
//! are shared per (URI, TLS) through [`crate::pool::amqp`]; HTTP clients per origin through
//! [`crate::pool::http`].

mod amqp;
mod http;
mod params;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};

use crate::naming::{self, is_active};
use crate::pool::Shared;
use crate::pool::amqp::{AmqpEndpoint, AmqpKey};
use crate::pool::http::TlsSettings;
use crate::{MetricSpec, MetricsAndActivity, Scaler, ScalerConfig, ScalerError};

pub use params::{Mode, Protocol, Trigger, parse};

/// The KEDA trigger type.
pub const TYPE: &str = "rabbitmq";

/// The figures one poll reads: message count and the two rates.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct QueueInfo {
    /// Messages (ready + unacked, or ready only with `excludeUnacknowledged`; ready on AMQP).
    pub messages: i64,
    /// `message_stats.publish_details.rate`.
    pub publish_rate: f64,
    /// `message_stats.deliver_get_details.rate`.
    pub deliver_rate: f64,
}

/// The metric and activity for `mode` (spec/scalers.md §2.5), with `a` the activation value.
pub fn evaluate(mode: Mode, info: QueueInfo, a: f64) -> MetricsAndActivity {
    let n = info.messages as f64;
    let (p, d) = (info.publish_rate, info.deliver_rate);
    let (value, active) = match mode {
        Mode::QueueLength => (n, is_active(n, a)),
        Mode::MessageRate => (p, is_active(p, a) || is_active(n, a)),
        Mode::DeliverGetRate => (d, is_active(d, a)),
        Mode::PublishedToDeliveredRatio => {
            let stalled = p > 0.0 && d == 0.0;
            let v = if p <= 0.0 {
                0.0
            } else if stalled {
                a
            } else {
                p / d
            };
            (v, is_active(v, a) || stalled)
        }
        Mode::ExpectedQueueConsumptionTime => {
            let stalled = d == 0.0 && n > 0.0;
            let v = if n == 0.0 {
                0.0
            } else if d == 0.0 {
                a
            } else {
                (p - d) / d + n / d
            };
            (v, is_active(v, a) || stalled)
        }
    };
    MetricsAndActivity {
        values: vec![value],
        active,
    }
}

impl Trigger {
    /// The one metric this trigger exposes: `s<i>-rabbitmq-<queryEscape(queueName)>`,
    /// normalised, with the milli target `value`.
    pub fn metric_spec(&self, trigger_index: usize) -> MetricSpec {
        let detail = format!("rabbitmq-{}", naming::query_escape(&self.queue_name));
        MetricSpec {
            metric_name: naming::metric_name(trigger_index, &detail),
            target: self.value,
            target_is_integer: false,
            metric_type: self.metric_type,
            activation_threshold: self.activation_value,
        }
    }
}

/// How a built scaler reaches the broker.
#[derive(Debug)]
enum Backend {
    Amqp(Shared<AmqpKey, AmqpEndpoint>),
    Http(http::Api),
}

/// A RabbitMQ trigger with its share of a pooled client.
#[derive(Debug)]
pub struct RabbitMqScaler {
    trigger: Trigger,
    spec: MetricSpec,
    timeout: Duration,
    backend: Backend,
}

/// Hooks for tests and unusual deployments; [`build`] uses the defaults.
#[derive(Clone, Default)]
pub struct Options {
    /// Extra CA certificate (PEM) trusted for the Azure AD token endpoint.
    pub token_ca_pem: Option<String>,
    /// The operator's `AZURE_*` workload-identity variables; `None` reads the process env.
    pub env: Option<BTreeMap<String, String>>,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let env = self.env.as_ref().map(|e| e.keys().collect::<Vec<_>>());
        f.debug_struct("Options")
            .field("token_ca_pem", &self.token_ca_pem.is_some())
            .field("env", &env)
            .finish()
    }
}

/// Parse `cfg`, take a pooled client and, for AMQP, make sure the connection is up (as KEDA
/// does at construction).
pub async fn build(cfg: &ScalerConfig) -> Result<Box<dyn Scaler>, ScalerError> {
    build_with(cfg, Options::default()).await
}

/// Build with explicit [`Options`].
pub async fn build_with(
    cfg: &ScalerConfig,
    options: Options,
) -> Result<Box<dyn Scaler>, ScalerError> {
    let trigger = parse(cfg)?;
    let timeout = trigger.timeout.unwrap_or(cfg.timeout);
    let backend = match trigger.protocol {
        Protocol::Amqp => {
            let shared = crate::pool::amqp::acquire(&amqp::key(&trigger)?).map_err(config_error)?;
            shared
                .client()
                .connect(timeout)
                .await
                .map_err(backend_error)?;
            Backend::Amqp(shared)
        }
        Protocol::Http => Backend::Http(http::Api::new(
            &trigger,
            azure_source(&trigger, cfg, options)?,
        )?),
    };
    Ok(Box::new(RabbitMqScaler {
        spec: trigger.metric_spec(cfg.trigger_index),
        trigger,
        timeout,
        backend,
    }))
}

/// The shared Azure AD token source for `workloadIdentityResource` (parse has checked that
/// the pod identity is `azure-workload`). No I/O.
fn azure_source(
    trigger: &Trigger,
    cfg: &ScalerConfig,
    options: Options,
) -> Result<Option<std::sync::Arc<crate::azure_ad::TokenSource>>, ScalerError> {
    let Some(resource) = &trigger.workload_identity_resource else {
        return Ok(None);
    };
    let env = options.env.unwrap_or_else(|| {
        std::env::vars()
            .filter(|(k, _)| k.starts_with("AZURE_"))
            .collect()
    });
    let pod = cfg.pod_identity.clone().unwrap_or_default();
    let identity = crate::azure_ad::WorkloadIdentity::resolve(&pod, &env).map_err(config_error)?;
    let tls = TlsSettings {
        ca: options.token_ca_pem,
        ..TlsSettings::default()
    };
    crate::azure_ad::TokenSource::shared(identity, &http::scoped_resource(resource), &tls)
        .map(Some)
        .map_err(config_error)
}

fn backend_error(e: impl std::fmt::Display) -> ScalerError {
    ScalerError::Backend {
        scaler: TYPE,
        message: crate::pool::mask_userinfo(&e.to_string()),
    }
}

fn config_error(message: impl Into<String>) -> ScalerError {
    ScalerError::Config {
        scaler: TYPE,
        message: message.into(),
    }
}

/// Parse `host` as a URL; the message never shows the value (it may hold a password).
fn host_url(trigger: &Trigger) -> Result<Url, ScalerError> {
    Url::parse(trigger.host.expose_secret())
        .map_err(|e| config_error(format!("parameter \"host\" is not a valid URL: {e}")))
}

/// The TLS settings of `tls`, `ca`, `cert`/`key` and `unsafeSsl`, for AMQP and HTTP alike.
pub(crate) fn tls_settings(trigger: &Trigger) -> TlsSettings {
    let secret = |s: &SecretString| s.expose_secret().to_owned();
    if !trigger.tls {
        return TlsSettings {
            unsafe_ssl: trigger.unsafe_ssl,
            ..TlsSettings::default()
        };
    }
    let (cert, key) = match &trigger.client_cert {
        Some((cert, key)) => (Some(cert.clone()), Some(secret(key))),
        None => (None, None),
    };
    TlsSettings {
        unsafe_ssl: trigger.unsafe_ssl,
        ca: trigger.ca.clone(),
        cert,
        key,
        key_password: trigger.key_password.as_ref().map(secret),
    }
}

#[async_trait]
impl Scaler for RabbitMqScaler {
    fn scaler_type(&self) -> &'static str {
        TYPE
    }

    fn metric_specs(&self) -> Vec<MetricSpec> {
        vec![self.spec.clone()]
    }

    async fn metrics_and_activity(
        &self,
        metric_name: &str,
    ) -> Result<MetricsAndActivity, ScalerError> {
        crate::ensure_metric(TYPE, &self.spec.metric_name, metric_name)?;
        let info = match &self.backend {
            Backend::Amqp(endpoint) => {
                let count = endpoint
                    .client()
                    .message_count(&self.trigger.queue_name, self.timeout)
                    .await
                    .map_err(backend_error)?;
                QueueInfo {
                    messages: i64::from(count),
                    ..QueueInfo::default()
                }
            }
            Backend::Http(api) => api.queue_info(&self.trigger, self.timeout).await?,
        };
        Ok(evaluate(
            self.trigger.mode,
            info,
            self.trigger.activation_value,
        ))
    }

    async fn close(&self) -> Result<(), ScalerError> {
        match &self.backend {
            Backend::Amqp(shared) => shared.release(),
            Backend::Http(api) => api.release(),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
