//! Parsing and validation of RabbitMQ trigger metadata (spec/scalers.md §2.1–§2.2).
//!
//! Key-level problems (types, missing keys) are joined, as KEDA's typed config does; then the
//! cross-field rules run in KEDA's order and the first failure wins.

use std::collections::BTreeMap;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use super::{TYPE, config_error};
use crate::metadata::{AUTH, AUTH_ENV, META, META_AUTH, META_AUTH_ENV, Params};
use crate::{MetricType, ScalerConfig, ScalerError, external_metric_type};

/// What the metric measures (`mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Message count.
    QueueLength,
    /// Publish rate (msg/s).
    MessageRate,
    /// Deliver + get rate (msg/s).
    DeliverGetRate,
    /// Publish rate over deliver rate.
    PublishedToDeliveredRatio,
    /// Seconds to drain the queue at the current rates.
    ExpectedQueueConsumptionTime,
}

impl Mode {
    const ALL: [(&'static str, Mode); 5] = [
        ("QueueLength", Mode::QueueLength),
        ("MessageRate", Mode::MessageRate),
        ("DeliverGetRate", Mode::DeliverGetRate),
        ("PublishedToDeliveredRatio", Mode::PublishedToDeliveredRatio),
        (
            "ExpectedQueueConsumptionTime",
            Mode::ExpectedQueueConsumptionTime,
        ),
    ];

    fn parse(s: &str) -> Option<Mode> {
        Self::ALL
            .iter()
            .find(|(name, _)| *name == s)
            .map(|(_, m)| *m)
    }
}

/// The resolved protocol (`auto` is resolved from the `host` scheme at parse time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// AMQP 0-9-1 passive declare.
    Amqp,
    /// Management HTTP API.
    Http,
}

/// OAuth2 client-credentials settings (from `TriggerAuthentication.spec.oauth2`).
#[derive(Debug, Clone)]
pub struct OAuth {
    /// `oauthTokenURI`.
    pub token_uri: String,
    /// `clientID`.
    pub client_id: String,
    /// `clientSecret`.
    pub client_secret: SecretString,
    /// `scopes` / `scope`.
    pub scopes: Vec<String>,
    /// `endpointParams`: extra form parameters (URL-encoded query string).
    pub endpoint_params: Option<String>,
}

/// A parsed and validated RabbitMQ trigger. Secrets are [`SecretString`]s.
#[derive(Debug, Clone)]
pub struct Trigger {
    /// `host`; may embed credentials.
    pub host: SecretString,
    /// `queueName`.
    pub queue_name: String,
    /// `mode` (resolved, including the deprecated `queueLength`).
    pub mode: Mode,
    /// `value`: the target.
    pub value: f64,
    /// `activationValue`.
    pub activation_value: f64,
    /// `protocol`, resolved.
    pub protocol: Protocol,
    /// `vhostName`.
    pub vhost_name: Option<String>,
    /// `useRegex`.
    pub use_regex: bool,
    /// `excludeUnacknowledged`.
    pub exclude_unacknowledged: bool,
    /// `pageSize`.
    pub page_size: i64,
    /// `operation` (checked at poll time, as KEDA does).
    pub operation: String,
    /// `timeout`; `None` means the global default.
    pub timeout: Option<Duration>,
    /// `unsafeSsl`.
    pub unsafe_ssl: bool,
    /// `username` + `password`, given together.
    pub credentials: Option<(SecretString, SecretString)>,
    /// `tls=enable`.
    pub tls: bool,
    /// `ca` (PEM).
    pub ca: Option<String>,
    /// `cert` + `key` (PEM).
    pub client_cert: Option<(String, SecretString)>,
    /// `keyPassword`.
    pub key_password: Option<SecretString>,
    /// `workloadIdentityResource`.
    pub workload_identity_resource: Option<String>,
    /// OAuth2 client credentials.
    pub oauth: Option<OAuth>,
    /// `triggers[].metricType`.
    pub metric_type: MetricType,
}

/// Everything read from the maps before cross-field validation.
struct Raw {
    host: Option<SecretString>,
    queue_name: Option<String>,
    mode: Option<String>,
    value: Option<f64>,
    activation_value: f64,
    queue_length: Option<f64>,
    protocol: String,
    vhost_name: Option<String>,
    use_regex: bool,
    exclude_unacknowledged: bool,
    page_size: i64,
    operation: String,
    timeout: Option<Duration>,
    unsafe_ssl: bool,
    username: Option<SecretString>,
    password: Option<SecretString>,
    tls: String,
    ca: Option<String>,
    cert: Option<String>,
    key: Option<SecretString>,
    key_password: Option<SecretString>,
    workload_identity_resource: Option<String>,
    token_uri: Option<String>,
    client_id: Option<String>,
    client_secret: Option<SecretString>,
    scopes: Option<Vec<String>>,
    endpoint_params: Option<String>,
}

/// Parse and validate `cfg` without any I/O.
pub fn parse(cfg: &ScalerConfig) -> Result<Trigger, ScalerError> {
    let metric_type = external_metric_type(cfg, TYPE)?;
    let raw = read(cfg)?;
    let trigger = validate(raw, metric_type)?;
    // After KEDA's checks (their order is part of the contract): the Azure AD audience is
    // only usable with an Azure workload identity to get tokens from.
    let provider = cfg.pod_identity.as_ref().map(|i| i.provider.trim());
    // `tidescale check` without the TriggerAuthentication cannot know its podIdentity.
    let identity_unknown = cfg.pod_identity.is_none() && cfg.unresolved.any_auth_param;
    if trigger.workload_identity_resource.is_some()
        && provider != Some("azure-workload")
        && !identity_unknown
    {
        return Err(config_error(
            "authParams \"workloadIdentityResource\" needs podIdentity provider azure-workload",
        ));
    }
    Ok(trigger)
}

fn read(cfg: &ScalerConfig) -> Result<Raw, ScalerError> {
    let mut p = Params::new(cfg, TYPE);
    let raw = Raw {
        host: p.key("host").sources(META_AUTH_ENV).required().secret(),
        queue_name: p.key("queueName").required().string(),
        mode: p.key("mode").string(),
        value: p.key("value").float(),
        activation_value: p.key("activationValue").float().unwrap_or(0.0),
        queue_length: p.key("queueLength").float(),
        protocol: p
            .key("protocol")
            .sources(META_AUTH)
            .string()
            .unwrap_or_else(|| "auto".into()),
        vhost_name: p.key("vhostName").sources(META_AUTH).string(),
        use_regex: p.key("useRegex").bool().unwrap_or(false),
        exclude_unacknowledged: p.key("excludeUnacknowledged").bool().unwrap_or(false),
        page_size: p.key("pageSize").int().unwrap_or(100),
        operation: p.key("operation").string().unwrap_or_else(|| "sum".into()),
        timeout: p.key("timeout").sources(META).duration(),
        unsafe_ssl: p.key("unsafeSsl").bool().unwrap_or(false),
        username: p.key("username").sources(AUTH_ENV).secret(),
        password: p.key("password").sources(AUTH_ENV).secret(),
        tls: p
            .key("tls")
            .sources(AUTH)
            .string()
            .unwrap_or_else(|| "disable".into()),
        ca: p.key("ca").sources(AUTH).string(),
        cert: p.key("cert").sources(AUTH).string(),
        key: p.key("key").sources(AUTH).secret(),
        key_password: p.key("keyPassword").sources(AUTH).secret(),
        workload_identity_resource: p.key("workloadIdentityResource").sources(AUTH).string(),
        token_uri: p.key("oauthTokenURI").sources(AUTH).string(),
        client_id: p.key("clientID").sources(AUTH).string(),
        client_secret: p.key("clientSecret").sources(AUTH).secret(),
        scopes: p.key("scopes").alias("scope").sources(AUTH).list(),
        endpoint_params: p.key("endpointParams").sources(AUTH).string(),
    };
    p.finish()?;
    Ok(raw)
}

/// KEDA's `Validate`, in its order; the first failure wins.
fn validate(raw: Raw, metric_type: MetricType) -> Result<Trigger, ScalerError> {
    let fail = |m: &str| Err(config_error(m));
    check_single_keys(&raw)?;
    let credentials = match (raw.username, raw.password) {
        (Some(user), Some(pass)) => Some((user, pass)),
        (None, None) => None,
        _ => return fail("username and password must be given together"),
    };
    let host = raw.host.ok_or_else(|| config_error("missing host"))?;
    let protocol = resolve_protocol(&raw.protocol, host.expose_secret())?;
    if protocol == Protocol::Amqp && raw.workload_identity_resource.is_some() {
        return fail("workload identity is not supported for the AMQP protocol");
    }
    let oauth = oauth(
        protocol,
        credentials.is_some() || raw.workload_identity_resource.is_some(),
        (raw.token_uri, raw.client_id, raw.client_secret),
        raw.scopes,
        raw.endpoint_params,
    )?;
    if raw.use_regex && protocol != Protocol::Http {
        return fail("configure useRegex only with the http protocol");
    }
    if raw.exclude_unacknowledged && protocol != Protocol::Http {
        return fail("configure excludeUnacknowledged=true only with the http protocol");
    }
    let (mode, value) = resolve_mode(raw.mode.as_deref(), raw.value, raw.queue_length)?;
    if mode != Mode::QueueLength && protocol != Protocol::Http {
        return Err(config_error(format!(
            "protocol amqp not supported; must be HTTP to use trigger mode {mode:?}"
        )));
    }
    if protocol == Protocol::Amqp && raw.timeout.is_some_and(|t| !t.is_zero()) {
        return fail("AMQP protocol doesn't support custom timeouts");
    }
    Ok(Trigger {
        host,
        queue_name: raw.queue_name.unwrap_or_default(),
        mode,
        value,
        activation_value: raw.activation_value,
        protocol,
        vhost_name: raw.vhost_name,
        use_regex: raw.use_regex,
        exclude_unacknowledged: raw.exclude_unacknowledged,
        page_size: raw.page_size,
        operation: raw.operation,
        timeout: raw.timeout,
        unsafe_ssl: raw.unsafe_ssl,
        credentials,
        tls: raw.tls == "enable",
        ca: raw.ca,
        client_cert: raw.cert.zip(raw.key),
        key_password: raw.key_password,
        workload_identity_resource: raw.workload_identity_resource,
        oauth,
        metric_type,
    })
}

/// Steps 1–4 of KEDA's `Validate`: protocol, tls, cert/key pairing, page size.
fn check_single_keys(raw: &Raw) -> Result<(), ScalerError> {
    let message = if !matches!(raw.protocol.as_str(), "amqp" | "http" | "auto") {
        "the protocol has to be either `amqp`, `http`, or `auto`"
    } else if !matches!(raw.tls.as_str(), "enable" | "disable") {
        "incorrect value for TLS given: must be `enable` or `disable`"
    } else if raw.cert.is_some() != raw.key.is_some() {
        "both key and certificate must be provided"
    } else if raw.page_size < 1 {
        "pageSize should be 1 or greater"
    } else {
        return Ok(());
    };
    Err(config_error(message))
}

/// `auto` follows the `host` scheme (Go lowercases it when parsing the URL).
fn resolve_protocol(protocol: &str, host: &str) -> Result<Protocol, ScalerError> {
    match protocol {
        "amqp" => Ok(Protocol::Amqp),
        "http" => Ok(Protocol::Http),
        _ => {
            let scheme = host.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
            match scheme.as_deref() {
                Some("amqp" | "amqps") => Ok(Protocol::Amqp),
                Some("http" | "https") => Ok(Protocol::Http),
                _ => Err(config_error(
                    "unknown host URL scheme: expected amqp, amqps, http or https",
                )),
            }
        }
    }
}

type OAuthKeys = (Option<String>, Option<String>, Option<SecretString>);

fn oauth(
    protocol: Protocol,
    other_auth: bool,
    (token_uri, client_id, client_secret): OAuthKeys,
    scopes: Option<Vec<String>>,
    endpoint_params: Option<String>,
) -> Result<Option<OAuth>, ScalerError> {
    let any = token_uri.is_some() || client_id.is_some() || client_secret.is_some();
    if !any {
        return Ok(None);
    }
    let (Some(token_uri), Some(client_id), Some(client_secret)) =
        (token_uri, client_id, client_secret)
    else {
        return Err(config_error(
            "oauthTokenURI, clientID and clientSecret are all required for OAuth2",
        ));
    };
    if protocol == Protocol::Amqp {
        return Err(config_error(
            "OAuth2 is not supported for the AMQP protocol",
        ));
    }
    if other_auth {
        return Err(config_error(
            "OAuth2 cannot be combined with username/password or workload identity",
        ));
    }
    let scopes = scopes
        .unwrap_or_default()
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect();
    Ok(Some(OAuth {
        token_uri,
        client_id,
        client_secret,
        scopes,
        endpoint_params,
    }))
}

/// Mode and target from `mode`, `value` and the deprecated `queueLength` (0 counts as unset).
fn resolve_mode(
    mode: Option<&str>,
    value: Option<f64>,
    queue_length: Option<f64>,
) -> Result<(Mode, f64), ScalerError> {
    let value = value.filter(|v| *v != 0.0);
    let queue_length = queue_length.filter(|v| *v != 0.0);
    match (mode, value, queue_length) {
        (None, None, None) => Ok((Mode::QueueLength, 20.0)),
        (None, None, Some(length)) => Ok((Mode::QueueLength, length)),
        (_, _, Some(_)) => Err(config_error(
            "queueLength is deprecated; use mode and value",
        )),
        (None, _, None) => Err(config_error("mode must be specified")),
        (Some(_), None, None) => Err(config_error("value must be specified")),
        (Some(name), Some(value), None) => {
            let names: Vec<&str> = Mode::ALL.iter().map(|(n, _)| *n).collect();
            let mode = Mode::parse(name).ok_or_else(|| {
                config_error(format!(
                    "trigger mode {name} must be one of {}",
                    names.join(", ")
                ))
            })?;
            Ok((mode, value))
        }
    }
}

/// `endpointParams` as form pairs (it is a URL-encoded query string).
pub(super) fn endpoint_params(oauth: &OAuth) -> BTreeMap<String, String> {
    oauth
        .endpoint_params
        .as_deref()
        .map(|q| {
            q.split('&')
                .filter_map(|pair| pair.split_once('='))
                .map(|(k, v)| (decode(k), decode(v)))
                .collect()
        })
        .unwrap_or_default()
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(&s.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}
