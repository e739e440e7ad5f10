//! Prometheus scaler (`prometheus`): the value of one PromQL instant query (spec/scalers.md §5;
//! upstream API: <https://prometheus.io/docs/prometheus/latest/querying/api/#instant-queries>).
//!
//! | key | req | default | source | meaning |
//! |---|---|---|---|---|
//! | `serverAddress` | yes | – | M | base URL; `/api/v1/query` is appended |
//! | `query` | yes | – | M | PromQL; must yield one sample |
//! | `threshold` | yes | – | M | target (float, milli quantity) |
//! | `activationThreshold` | no | 0 | M | active when the value is strictly greater |
//! | `namespace` | no | – | M | appended unescaped as `&namespace=` (Thanos tenancy) |
//! | `queryParameters` | no | – | M | `k=v,k=v`, appended query-escaped |
//! | `customHeaders` | no | – | M | `k=v,k=v`, sent as request headers |
//! | `ignoreNullValues` | no | true | M | empty result / NaN / Inf count as 0 instead of failing |
//! | `unsafeSsl` | no | false | M | skip server certificate verification (not with `tls`/`ca`) |
//! | `timeout` | no | global | M | Go duration or integer ms |
//! | `awsRegion` | no | – | M,A | Amazon Managed Prometheus: SigV4-sign queries for this region |
//! | `identityOwner` | no | `pod` | M | `pod` or `operator`: `operator` signs with the operator's AWS credentials (`AWS_ACCESS_KEY_ID`…, else IRSA web identity) |
//! | `awsAccessKeyID` / `awsAccessKeyId`, `awsSecretAccessKey`, `awsSessionToken` | with `awsRegion` | – | A | SigV4 credentials |
//! | `awsRoleArn` | no | – | A | STS `AssumeRole` of this role, with the keys above or else the operator's identity; queries are signed with the temporary credentials |
//! | `cloud` | no | `AzurePublicCloud` | M | Azure managed Prometheus scope: `AzurePublicCloud`, `AzureUSGovernmentCloud`, `AzureChinaCloud`, `Private` |
//! | `azureManagedPrometheusResourceURL` | with `cloud: Private` | – | M | the AAD scope used as is |
//! | `authModes` / `authMode` | no | – | M,A | list of `apiKey, basic, tls, bearer, custom, oauth`; at most one of bearer/basic/oauth |
//! | `bearerToken` / `token` | with `bearer` | – | A | `Authorization: Bearer …` |
//! | `username` / `password` | with `basic` | – | A | HTTP Basic (password may be empty) |
//! | `cert`, `key`, `ca` | with `tls` | – | A | client certificate (PEM); `ca` optional |
//! | `customAuthHeader`, `customAuthValue` | with `custom` | – | A | one extra header |
//!
//! Sources: M = trigger metadata, A = TriggerAuthentication params. `metricName` is an ignored
//! legacy key. `apiKey` and `oauth` pass validation but are never applied (as in KEDA).
//!
//! Without `authModes`, the cloud transports of [`cloud`] apply: `podIdentity.provider:
//! azure-workload` (Azure AD bearer), `gcp` (metadata-server bearer) or `awsRegion` (SigV4;
//! `podIdentity.provider: aws`/`aws-eks` uses the operator's keys or IRSA, see [`crate::aws_sts`]).
//!
//! Metric `s<i>-prometheus`. HTTP clients are shared per origin and TLS settings through
//! [`crate::pool::http`].

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use reqwest::header::HeaderName;
use reqwest::{RequestBuilder, Url};
use secrecy::{ExposeSecret, SecretString};

use crate::metadata::{AUTH, META_AUTH, Params};
use crate::naming::{self, is_active, query_escape};
use crate::pool::Shared;
use crate::pool::http::{HttpClient, HttpKey, TlsSettings};
use crate::{
    MetricSpec, MetricType, MetricsAndActivity, Scaler, ScalerConfig, ScalerError,
    external_metric_type,
};

pub mod cloud;
mod response;

pub use response::parse_response;

/// The KEDA trigger type.
pub const TYPE: &str = "prometheus";
/// Values allowed in `authModes`.
pub const AUTH_MODES: &[&str] = &["apiKey", "basic", "tls", "bearer", "custom", "oauth"];

/// The one auth header applied, in KEDA's precedence: bearer, else basic, else custom.
#[derive(Debug, Clone)]
pub enum AuthHeader {
    /// `Authorization: Bearer <token>`.
    Bearer(SecretString),
    /// HTTP Basic.
    Basic(String, SecretString),
    /// A header named by `customAuthHeader` with value `customAuthValue`.
    Custom(String, SecretString),
}

/// A parsed and validated Prometheus trigger.
#[derive(Debug, Clone)]
pub struct Trigger {
    /// `serverAddress`.
    pub server_address: String,
    /// `query`.
    pub query: String,
    /// `threshold`.
    pub threshold: f64,
    /// `activationThreshold`.
    pub activation_threshold: f64,
    /// `namespace`.
    pub namespace: Option<String>,
    /// `queryParameters`.
    pub query_parameters: BTreeMap<String, String>,
    /// `customHeaders`.
    pub custom_headers: BTreeMap<String, String>,
    /// `ignoreNullValues`.
    pub ignore_null_values: bool,
    /// `timeout`; `None` means the global default.
    pub timeout: Option<Duration>,
    /// `awsRegion`.
    pub aws_region: Option<String>,
    /// The cloud transport (only without `authModes`).
    pub cloud: cloud::Cloud,
    /// The auth header, if an auth mode asks for one.
    pub auth: Option<AuthHeader>,
    /// TLS settings of the client (client cert and CA, or `unsafeSsl`).
    pub tls: TlsSettings,
    /// `triggers[].metricType`.
    pub metric_type: MetricType,
}

/// Parse and validate `cfg` without any I/O.
pub fn parse(cfg: &ScalerConfig) -> Result<Trigger, ScalerError> {
    let metric_type = external_metric_type(cfg, TYPE)?;
    let mut p = Params::new(cfg, TYPE);
    let server_address = p.key("serverAddress").required().string();
    let query = p.key("query").required().string();
    let threshold = p.key("threshold").required().float();
    let activation_threshold = p.key("activationThreshold").float().unwrap_or(0.0);
    let namespace = p.key("namespace").string();
    let query_parameters = p.key("queryParameters").map().unwrap_or_default();
    let custom_headers = p.key("customHeaders").map().unwrap_or_default();
    let ignore_null_values = p.key("ignoreNullValues").bool().unwrap_or(true);
    let unsafe_ssl = p.key("unsafeSsl").bool().unwrap_or(false);
    let timeout = p.key("timeout").duration();
    let aws_region = p.key("awsRegion").sources(META_AUTH).string();
    let modes = p
        .key("authModes")
        .alias("authMode")
        .sources(META_AUTH)
        .one_of(AUTH_MODES)
        .list()
        .unwrap_or_default();
    let (auth, tls) = auth(&mut p, &modes, unsafe_ssl);
    let cloud = if modes.is_empty() {
        cloud::parse(&mut p, aws_region.clone())
    } else {
        cloud::Cloud::None
    };
    check_headers(&mut p, &custom_headers);
    p.finish()?;
    Ok(Trigger {
        server_address: server_address.unwrap_or_default(),
        query: query.unwrap_or_default(),
        threshold: threshold.unwrap_or_default(),
        activation_threshold,
        namespace,
        query_parameters,
        custom_headers,
        ignore_null_values,
        timeout,
        aws_region,
        cloud,
        auth,
        tls,
        metric_type,
    })
}

/// The auth header and TLS settings for `modes`, recording missing secrets in `p`.
fn auth(
    p: &mut Params<'_>,
    modes: &[String],
    unsafe_ssl: bool,
) -> (Option<AuthHeader>, TlsSettings) {
    let has = |m: &str| modes.iter().any(|x| x == m);
    let exclusive = ["bearer", "basic", "oauth"]
        .iter()
        .filter(|m| has(m))
        .count();
    if exclusive > 1 {
        p.invalid("authModes may hold only one of bearer, basic and oauth");
    }
    let pod_identity = p
        .config()
        .pod_identity
        .as_ref()
        .map(|i| i.provider.as_str());
    if !modes.is_empty() && pod_identity.is_some_and(|provider| provider != "none") {
        p.invalid("pod identity cannot be enabled with other auth types");
    }
    (auth_header(p, &has), tls_settings(p, modes, unsafe_ssl))
}

/// The header of the first of bearer, basic and custom that `has` enables.
fn auth_header(p: &mut Params<'_>, has: &dyn Fn(&str) -> bool) -> Option<AuthHeader> {
    let mut auth = None;
    if has("bearer") {
        let token = p.key("bearerToken").alias("token").sources(AUTH).secret();
        match token {
            Some(t) => auth = Some(AuthHeader::Bearer(t)),
            None => {
                p.invalid("bearerToken (or token) is required in authParams for authModes bearer")
            }
        }
    } else if has("basic") {
        let user = p.key("username").sources(AUTH).string();
        // The password may legitimately be empty.
        let pass = p.key("password").sources(AUTH).secret();
        match user {
            Some(u) => auth = Some(AuthHeader::Basic(u, pass.unwrap_or_default())),
            None => p.invalid("username is required in authParams for authModes basic"),
        }
    }
    if has("custom") {
        let header = p.key("customAuthHeader").sources(AUTH).string();
        let value = p.key("customAuthValue").sources(AUTH).secret();
        match (header, value) {
            (Some(h), Some(v)) if auth.is_none() => auth = Some(AuthHeader::Custom(h, v)),
            (Some(_), Some(_)) => {}
            _ => p.invalid(
                "customAuthHeader and customAuthValue are required in authParams for authModes \
                 custom",
            ),
        }
    }
    auth
}

/// The client's TLS settings: client certificate and CA with `tls`, else `unsafeSsl`.
fn tls_settings(p: &mut Params<'_>, modes: &[String], unsafe_ssl: bool) -> TlsSettings {
    let ca = p.key("ca").sources(AUTH).string();
    let tls_mode = modes.iter().any(|m| m == "tls");
    let (cert, key) = if tls_mode {
        let cert = p.key("cert").sources(AUTH).string();
        let key = p.key("key").sources(AUTH).secret();
        if cert.is_none() || key.is_none() {
            p.invalid("cert and key are required in authParams for authModes tls");
        }
        (cert, key.map(|k| k.expose_secret().to_owned()))
    } else {
        (None, None)
    };
    // KEDA builds a dedicated transport (which ignores unsafeSsl) only when an auth mode is set
    // and TLS material is asked for; otherwise `ca` is ignored.
    if !modes.is_empty() && (ca.is_some() || tls_mode) {
        TlsSettings {
            unsafe_ssl: false,
            ca,
            cert,
            key,
            key_password: None,
        }
    } else {
        TlsSettings {
            unsafe_ssl,
            ..TlsSettings::default()
        }
    }
}

/// Header names and values must be valid HTTP, or every request would fail.
fn check_headers(p: &mut Params<'_>, headers: &BTreeMap<String, String>) {
    use reqwest::header::{HeaderName, HeaderValue};
    for (name, value) in headers {
        if HeaderName::from_bytes(name.as_bytes()).is_err() || HeaderValue::from_str(value).is_err()
        {
            p.invalid(format!(
                "parameter \"customHeaders\" entry {name:?} is not a valid HTTP header"
            ));
        }
    }
}

impl Trigger {
    /// The one metric this trigger exposes: `s<i>-prometheus`, milli target `threshold`.
    pub fn metric_spec(&self, trigger_index: usize) -> MetricSpec {
        MetricSpec {
            metric_name: naming::metric_name(trigger_index, "prometheus"),
            target: self.threshold,
            target_is_integer: false,
            metric_type: self.metric_type,
            activation_threshold: self.activation_threshold,
        }
    }

    /// `GET {serverAddress}/api/v1/query?query=…&time=…[&namespace=…][&k=v…]`.
    pub fn query_url(&self, now: SystemTime) -> String {
        format!(
            "{}/api/v1/query?{}",
            self.server_address,
            self.query_string(now)
        )
    }

    /// `query=…&time=…[&namespace=…][&k=v…]`.
    fn query_string(&self, now: SystemTime) -> String {
        let mut url = format!(
            "query={}&time={}",
            query_escape(&self.query),
            humantime::format_rfc3339_seconds(now)
        );
        if let Some(ns) = &self.namespace {
            // Unescaped, as KEDA does.
            url.push_str(&format!("&namespace={ns}"));
        }
        for (k, v) in &self.query_parameters {
            url.push_str(&format!("&{}={}", query_escape(k), query_escape(v)));
        }
        url
    }
}

/// `{serverAddress}/api/v1/query` parsed, unless it carries a query or fragment.
fn query_base(trigger: &Trigger) -> Option<Url> {
    Url::parse(&format!("{}/api/v1/query", trigger.server_address))
        .ok()
        .filter(|base| base.query().is_none() && base.fragment().is_none())
}

/// The query URL at `now`: what parsing [`Trigger::query_url`] gives, built on `base` when
/// there is one.
fn query_url(base: Option<&Url>, trigger: &Trigger, now: SystemTime) -> Result<Url, String> {
    match base {
        Some(base) => {
            let mut url = base.clone();
            url.set_query(Some(&trigger.query_string(now)));
            Ok(url)
        }
        None => Url::parse(&trigger.query_url(now)).map_err(|e| format!("invalid query URL: {e}")),
    }
}

/// Hooks for tests and unusual deployments; [`build`] uses the defaults.
#[derive(Clone, Default)]
pub struct Options {
    /// Extra CA certificate (PEM) trusted for cloud token endpoints (Azure AD).
    pub token_ca_pem: Option<String>,
    /// The operator's `AZURE_*`, `AWS_*` and `GCE_METADATA_HOST` variables; `None` reads the
    /// process env.
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

/// A Prometheus trigger with its share of a pooled HTTP client.
#[derive(Debug)]
pub struct PrometheusScaler {
    trigger: Trigger,
    spec: MetricSpec,
    timeout: Duration,
    client: Shared<HttpKey, HttpClient>,
    cloud: Option<cloud::CloudAuth>,
    /// `{serverAddress}/api/v1/query`, parsed once: parsing the whole URL each poll (host
    /// normalisation included) was ~6 % of the operator's CPU at 10,000 polls/s. `None` when
    /// `serverAddress` carries a query or fragment: then the URL is parsed whole each time.
    query_base: Option<Url>,
}

/// Parse `cfg` and take a pooled HTTP client (no request is made).
pub async fn build(cfg: &ScalerConfig) -> Result<Box<dyn Scaler>, ScalerError> {
    build_with(cfg, Options::default()).await
}

/// Build with explicit [`Options`].
pub async fn build_with(
    cfg: &ScalerConfig,
    options: Options,
) -> Result<Box<dyn Scaler>, ScalerError> {
    let trigger = parse(cfg)?;
    let config = |message: String| ScalerError::Config {
        scaler: TYPE,
        message,
    };
    let env = options.env.unwrap_or_else(|| {
        std::env::vars()
            .filter(|(k, _)| {
                k.starts_with("AZURE_") || k.starts_with("AWS_") || k == "GCE_METADATA_HOST"
            })
            .collect()
    });
    let token_tls = TlsSettings {
        ca: options.token_ca_pem,
        ..TlsSettings::default()
    };
    let cloud = cloud::connect(&trigger.cloud, cfg.pod_identity.as_ref(), &env, &token_tls)
        .map_err(config)?;
    let url = Url::parse(&trigger.server_address).map_err(|e| {
        config(format!(
            "parameter \"serverAddress\" is not a valid URL: {e}"
        ))
    })?;
    let client = crate::pool::http::acquire(&url, &trigger.tls).map_err(config)?;
    let spec = trigger.metric_spec(cfg.trigger_index);
    Ok(Box::new(PrometheusScaler {
        query_base: query_base(&trigger),
        timeout: trigger.timeout.unwrap_or(cfg.timeout),
        trigger,
        spec,
        client,
        cloud,
    }))
}

impl PrometheusScaler {
    /// Run the query and return the raw value (spec §5.3).
    async fn query(&self) -> Result<f64, ScalerError> {
        let backend = |message: String| ScalerError::Backend {
            scaler: TYPE,
            message,
        };
        let deadline = Instant::now() + crate::pool::effective_timeout(self.timeout);
        let url = query_url(self.query_base.as_ref(), &self.trigger, SystemTime::now())
            .map_err(backend)?;
        let reqwest = self.client.client().reqwest();
        let request = reqwest.get(url);
        let request = match &self.trigger.auth {
            None => request,
            Some(AuthHeader::Bearer(t)) => request.bearer_auth(t.expose_secret()),
            Some(AuthHeader::Basic(u, p)) => request.basic_auth(u, Some(p.expose_secret())),
            Some(AuthHeader::Custom(h, v)) => request.header(h, v.expose_secret()),
        };
        let mut request = request
            .build()
            .map_err(|e| backend(e.without_url().to_string()))?;
        // Cloud transports wrap the request last in KEDA: their header wins over a custom one.
        if let Some(cloud) = &self.cloud {
            cloud
                .authorize(&mut request, deadline)
                .await
                .map_err(backend)?;
        }
        // Custom headers go first in KEDA and the auth header then overrides one of the same
        // name: here, a custom header is added only where auth did not set it.
        for (k, v) in &self.trigger.custom_headers {
            let (Ok(name), Ok(value)) = (HeaderName::from_bytes(k.as_bytes()), v.parse()) else {
                continue; // rejected at parse time; unreachable
            };
            request.headers_mut().entry(name).or_insert(value);
        }
        let request = RequestBuilder::from_parts(reqwest.clone(), request);
        // Without a token step the whole budget is the query's (and its timeout message names
        // the configured value); otherwise what the token step left.
        let budget = match &self.cloud {
            None => self.timeout,
            Some(_) => deadline.saturating_duration_since(Instant::now()),
        };
        if budget.is_zero() && self.cloud.is_some() {
            return Err(backend("prometheus query timed out".to_owned()));
        }
        let (status, body) = self
            .client
            .client()
            .send(request, budget)
            .await
            .map_err(|e| backend(e.to_string()))?;
        if status.as_u16() == 401
            && let Some(cloud) = &self.cloud
        {
            cloud.rejected().await;
        }
        if !status.is_success() {
            let body: String = body.chars().take(512).collect();
            return Err(backend(format!(
                "prometheus query api returned error. status: {} response: {body}",
                status.as_u16()
            )));
        }
        parse_response(&body, self.trigger.ignore_null_values).map_err(backend)
    }
}

#[async_trait]
impl Scaler for PrometheusScaler {
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
        let value = self.query().await?;
        Ok(MetricsAndActivity {
            values: vec![value],
            active: is_active(value, self.trigger.activation_threshold),
        })
    }

    async fn close(&self) -> Result<(), ScalerError> {
        self.client.release();
        Ok(())
    }
}

#[cfg(test)]
mod tests;
