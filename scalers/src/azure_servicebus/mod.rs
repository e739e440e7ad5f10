//! `azure-servicebus`: active messages of a Service Bus queue or topic subscription
//! (spec/scalers.md §4), read from the management REST API (Atom XML over HTTPS).
//!
//! The value is `CountDetails/ActiveMessageCount` (dead-lettered, scheduled and transfer
//! messages excluded), or its `sum`/`max`/`avg` over every entity matching a regex; the
//! trigger is active when the value exceeds `activationMessageCount`.
//!
//! | key | src | required | default | meaning |
//! |---|---|---|---|---|
//! | `queueName` | M | either this… | – | queue (a regex with `useRegex`) |
//! | `topicName` + `subscriptionName` | M | …or these | – | subscription (the subscription is a regex with `useRegex`) |
//! | `messageCount` | M | no | 5 | target per replica (integer) |
//! | `activationMessageCount` | M | no | 0 | activation threshold |
//! | `useRegex` | M | no | false | match names with `^(?:re)$` |
//! | `operation` | M | no | `sum` | `sum`, `max`, `avg` over matches |
//! | `connection` | A,E | without pod identity | – | namespace connection string (auth-only: never plain metadata) |
//! | `namespace` | M | with `azure-workload` | – | namespace name without suffix |
//! | `cloud` / `endpointSuffix` | M | no / with `Private` | `AzurePublicCloud` | workload identity only |
//!
//! Auth: a SAS token signed from the connection string, or with `podIdentity.provider:
//! azure-workload` an Azure AD token from the federated workload-identity flow. The
//! `azure_messaging_servicebus` crate is not used: it has no management operations and cannot
//! count messages (environment.md). API: <https://learn.microsoft.com/rest/api/servicebus/>.

mod atom;
mod auth;
mod params;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};

use crate::azure_ad::{TokenSource, WorkloadIdentity, read_small_file};
use crate::pool::http::{self, HttpClient, HttpKey, TlsSettings};
use crate::pool::{Shared, effective_timeout};
use crate::{MetricSpec, MetricsAndActivity, Scaler, ScalerConfig, ScalerError, naming};
use atom::{EntityReply, Kind};
use auth::{ConnectionString, SERVICE_BUS_SCOPE};

pub use auth::sas_token;
pub use params::{Cloud, Credentials, Entity, Operation, Trigger, parse};

/// The KEDA trigger type.
pub const TYPE: &str = "azure-servicebus";
/// Management API version sent with every request.
pub const API_VERSION: &str = "2021-05";
/// Page size of regex listings (`$top`).
pub const PAGE_SIZE: usize = 100;
/// Listing stops after this many pages even if the service keeps answering.
const MAX_PAGES: usize = 1000;

/// Path characters left as they are; everything else is percent-encoded (`/` stays: entity
/// paths are hierarchical).
const PATH: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

/// Hooks for tests and unusual deployments; [`build`] uses the defaults.
#[derive(Clone, Default)]
pub struct Options {
    /// Extra CA certificate (PEM) trusted besides the system roots, for Service Bus and the
    /// token endpoint. Verification is never switched off.
    pub ca_pem: Option<String>,
    /// The `AZURE_*` variables of workload identity (`AZURE_CLIENT_ID`, `AZURE_TENANT_ID`,
    /// `AZURE_AUTHORITY_HOST`, `AZURE_FEDERATED_TOKEN_FILE`, `AZURE_ENVIRONMENT_FILEPATH`);
    /// `None` reads the process env.
    pub env: Option<BTreeMap<String, String>>,
    /// `host[:port]` to use instead of `<namespace>.<suffix>` for workload identity.
    pub fqdn: Option<String>,
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let env = self.env.as_ref().map(|e| e.keys().collect::<Vec<_>>());
        f.debug_struct("Options")
            .field("ca_pem", &self.ca_pem.is_some())
            .field("env", &env)
            .field("fqdn", &self.fqdn)
            .finish()
    }
}

/// Build with default [`Options`]: no I/O beyond creating (or sharing) the HTTP client.
pub async fn build(cfg: &ScalerConfig) -> Result<Box<dyn Scaler>, ScalerError> {
    build_with(cfg, Options::default()).await
}

/// Build with explicit [`Options`].
pub async fn build_with(
    cfg: &ScalerConfig,
    options: Options,
) -> Result<Box<dyn Scaler>, ScalerError> {
    let trigger = parse(cfg)?;
    let env = options.env.clone().unwrap_or_else(|| {
        std::env::vars()
            .filter(|(k, _)| k.starts_with("AZURE_"))
            .collect()
    });
    let tls = TlsSettings {
        ca: options.ca_pem.clone(),
        ..TlsSettings::default()
    };
    let (fqdn, authorizer) = match &trigger.credentials {
        Credentials::Connection(cs) => (cs.fqdn.clone(), Authorizer::Sas(cs.clone())),
        Credentials::Workload { namespace, cloud } => {
            let fqdn = match options.fqdn.clone() {
                Some(f) => f,
                None => format!(
                    "{namespace}.{}",
                    endpoint_suffix(cloud, &env, cfg.timeout).await?
                ),
            };
            let pod = cfg.pod_identity.clone().unwrap_or_default();
            let identity = WorkloadIdentity::resolve(&pod, &env).map_err(config)?;
            let source = TokenSource::shared(identity, SERVICE_BUS_SCOPE, &tls).map_err(config)?;
            (fqdn, Authorizer::Aad(source))
        }
    };
    let base = Url::parse(&format!("https://{fqdn}/"))
        .map_err(|_| config(format!("invalid service bus endpoint {fqdn:?}")))?;
    let client = http::acquire(&base, &tls).map_err(config)?;
    Ok(Box::new(ServiceBusScaler {
        trigger,
        fqdn,
        authorizer,
        client,
        timeout: cfg.timeout,
    }))
}

fn config(message: String) -> ScalerError {
    ScalerError::Config {
        scaler: TYPE,
        message,
    }
}

fn backend(message: String) -> ScalerError {
    ScalerError::Backend {
        scaler: TYPE,
        message,
    }
}

/// The Service Bus DNS suffix for workload identity.
async fn endpoint_suffix(
    cloud: &Cloud,
    env: &BTreeMap<String, String>,
    timeout: Duration,
) -> Result<String, ScalerError> {
    match cloud {
        Cloud::Known(suffix) => Ok((*suffix).to_owned()),
        Cloud::Private(suffix) => Ok(suffix.clone()),
        Cloud::Stack => {
            let path = env
                .get("AZURE_ENVIRONMENT_FILEPATH")
                .ok_or_else(|| config("AzureStackCloud needs AZURE_ENVIRONMENT_FILEPATH".into()))?;
            let text = read_small_file(path, timeout)
                .await
                .map_err(|e| config(format!("AzureStackCloud environment file: {e}")))?;
            let json: serde_json::Value = serde_json::from_str(&text)
                .map_err(|_| config("AzureStackCloud environment file is not JSON".into()))?;
            json.get("serviceBusEndpointSuffix")
                .and_then(|v| v.as_str())
                .map(|s| s.trim_start_matches('.').to_owned())
                .filter(|s| !s.is_empty())
                .ok_or_else(|| {
                    config(
                        "AzureStackCloud environment file has no serviceBusEndpointSuffix".into(),
                    )
                })
        }
    }
}

/// How each request is authorised.
enum Authorizer {
    /// SAS from a connection string, signed per request.
    Sas(ConnectionString),
    /// Azure AD bearer token from a source shared by every trigger with the same identity.
    Aad(Arc<TokenSource>),
}

/// A built Service Bus scaler.
struct ServiceBusScaler {
    trigger: Trigger,
    fqdn: String,
    authorizer: Authorizer,
    client: Shared<HttpKey, HttpClient>,
    timeout: Duration,
}

impl fmt::Debug for ServiceBusScaler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceBusScaler")
            .field("trigger", &self.trigger)
            .field("fqdn", &self.fqdn)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Scaler for ServiceBusScaler {
    fn scaler_type(&self) -> &'static str {
        TYPE
    }

    fn metric_specs(&self) -> Vec<MetricSpec> {
        vec![self.trigger.metric_spec()]
    }

    async fn metrics_and_activity(
        &self,
        metric_name: &str,
    ) -> Result<MetricsAndActivity, ScalerError> {
        crate::ensure_metric(TYPE, &self.trigger.metric_name, metric_name)?;
        let deadline = Instant::now() + effective_timeout(self.timeout);
        let value = self.count(deadline).await?;
        Ok(MetricsAndActivity {
            values: vec![value as f64],
            active: naming::is_active(value as f64, self.trigger.activation_message_count as f64),
        })
    }

    async fn close(&self) -> Result<(), ScalerError> {
        // The token source is shared with other triggers: it goes when its last holder drops.
        self.client.release();
        Ok(())
    }
}

impl ServiceBusScaler {
    /// The active message count (or the aggregate over regex matches).
    async fn count(&self, deadline: Instant) -> Result<i64, ScalerError> {
        match &self.trigger.entity {
            Entity::Queue {
                name,
                pattern: None,
            } => match self.entity(name, Kind::Queue, deadline).await? {
                EntityReply::Count(n) => Ok(n),
                EntityReply::Missing => Err(backend(format!("queue {name} doesn't exist"))),
            },
            Entity::Subscription {
                topic,
                name,
                pattern: None,
            } => {
                let path = format!("{topic}/Subscriptions/{name}");
                match self.entity(&path, Kind::Subscription, deadline).await? {
                    EntityReply::Count(n) => Ok(n),
                    EntityReply::Missing => Err(backend(format!(
                        "subscription {name} doesn't exist in topic {topic}"
                    ))),
                }
            }
            Entity::Queue {
                pattern: Some(re), ..
            } => {
                self.aggregate("$Resources/Queues", Kind::Queue, re, deadline)
                    .await
            }
            Entity::Subscription {
                topic,
                pattern: Some(re),
                ..
            } => {
                self.aggregate(
                    &format!("{topic}/Subscriptions"),
                    Kind::Subscription,
                    re,
                    deadline,
                )
                .await
            }
        }
    }

    async fn entity(
        &self,
        path: &str,
        kind: Kind,
        deadline: Instant,
    ) -> Result<EntityReply, ScalerError> {
        let body = self.get(path, "", deadline).await?;
        atom::entity(&body, kind).map_err(backend)
    }

    /// Page through a listing and combine the counts of the entities whose name matches.
    async fn aggregate(
        &self,
        path: &str,
        kind: Kind,
        re: &regex::Regex,
        deadline: Instant,
    ) -> Result<i64, ScalerError> {
        let mut counts = Vec::new();
        for page in 0..MAX_PAGES {
            let query = format!("&$skip={}&$top={PAGE_SIZE}", page * PAGE_SIZE);
            let body = self.get(path, &query, deadline).await?;
            let entries = atom::listing(&body, kind).map_err(backend)?;
            let len = entries.len();
            counts.extend(
                entries
                    .into_iter()
                    .filter(|(name, _)| re.is_match(name))
                    .map(|(_, c)| c),
            );
            if len < PAGE_SIZE {
                break;
            }
        }
        Ok(self.trigger.operation.apply(&counts))
    }

    /// `GET https://<fqdn>/<path>?api-version=…<query>`, authorised, within the deadline.
    async fn get(&self, path: &str, query: &str, deadline: Instant) -> Result<String, ScalerError> {
        let resource = format!("https://{}/{}", self.fqdn, utf8_percent_encode(path, PATH));
        let url = format!("{resource}?api-version={API_VERSION}{query}");
        let authorization = self.authorization(&resource, deadline).await?;
        let request = self
            .client
            .client()
            .reqwest()
            .get(&url)
            .header("Authorization", authorization.expose_secret());
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(backend(format!("request for {path} timed out")));
        }
        let (status, body) = self
            .client
            .client()
            .send(request, left)
            .await
            .map_err(|e| backend(format!("GET {path}: {e}")))?;
        if status.as_u16() == 401 {
            self.forget_token().await;
        }
        match status.as_u16() {
            200..=299 => Ok(body),
            429 => Err(backend(format!(
                "GET {path}: throttled by Service Bus (HTTP 429): {}",
                atom::error_detail(&body)
            ))),
            code => Err(backend(format!(
                "GET {path}: HTTP {code}: {}",
                atom::error_detail(&body)
            ))),
        }
    }

    async fn authorization(
        &self,
        resource: &str,
        deadline: Instant,
    ) -> Result<SecretString, ScalerError> {
        match &self.authorizer {
            Authorizer::Sas(cs) => Ok(cs.authorization(resource, SystemTime::now())),
            Authorizer::Aad(_) => {
                let token = self.aad_token(deadline).await?;
                Ok(SecretString::from(format!(
                    "Bearer {}",
                    token.expose_secret()
                )))
            }
        }
    }

    async fn forget_token(&self) {
        if let Authorizer::Aad(source) = &self.authorizer {
            source.forget().await;
        }
    }

    /// A cached Azure AD token from the shared source.
    async fn aad_token(&self, deadline: Instant) -> Result<SecretString, ScalerError> {
        let Authorizer::Aad(source) = &self.authorizer else {
            return Err(backend("no azure ad identity configured".into()));
        };
        source.token(deadline).await.map_err(backend)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[tokio::test]
    async fn endpoint_suffix_per_cloud() {
        let none = BTreeMap::new();
        let t = Duration::from_secs(1);
        let public = Cloud::Known("servicebus.windows.net");
        assert_eq!(
            endpoint_suffix(&public, &none, t).await.unwrap(),
            "servicebus.windows.net"
        );
        let private = Cloud::Private("sb.internal".into());
        assert_eq!(
            endpoint_suffix(&private, &none, t).await.unwrap(),
            "sb.internal"
        );
        let path = std::env::temp_dir().join(format!("tidescale-azs-{}.json", std::process::id()));
        std::fs::write(
            &path,
            r#"{"name":"AzureStackCloud","serviceBusEndpointSuffix":".servicebus.local"}"#,
        )
        .unwrap();
        let vars = env(&[("AZURE_ENVIRONMENT_FILEPATH", path.to_str().unwrap())]);
        assert_eq!(
            endpoint_suffix(&Cloud::Stack, &vars, t).await.unwrap(),
            "servicebus.local"
        );
        std::fs::write(&path, "{}").unwrap();
        let err = endpoint_suffix(&Cloud::Stack, &vars, t).await.unwrap_err();
        assert!(
            err.is_config() && err.to_string().contains("serviceBusEndpointSuffix"),
            "{err}"
        );
        std::fs::remove_file(&path).unwrap();
        let err = endpoint_suffix(&Cloud::Stack, &none, t).await.unwrap_err();
        assert!(
            err.to_string().contains("AZURE_ENVIRONMENT_FILEPATH"),
            "{err}"
        );
    }
}
