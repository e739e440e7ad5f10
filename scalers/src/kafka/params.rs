//! Parsing and validation of a `kafka` trigger (spec/scalers.md §3.1–3.2), and the mapping of
//! its security settings to librdkafka properties.

use std::collections::BTreeMap;
use std::sync::LazyLock;
use std::time::Duration;

use regex::Regex;
use secrecy::SecretString;

use super::TYPE;
use super::client::ClientKey;
use super::lag::{LagRules, OffsetResetPolicy};
use crate::metadata::{AUTH, META, META_AUTH, META_ENV, Params};
use crate::{
    DEFAULT_TIMEOUT, MetricSpec, MetricType, ScalerConfig, ScalerError, external_metric_type,
    naming,
};

/// SASL settings, one variant per mechanism; secrets stay in [`SecretString`].
#[derive(Debug, Clone, Default)]
pub enum Sasl {
    /// No SASL.
    #[default]
    None,
    /// `plaintext`, `scram_sha256`, `scram_sha512`: username and password.
    Password {
        /// librdkafka `sasl.mechanism` (`PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`).
        mechanism: &'static str,
        /// `username`.
        username: String,
        /// `password`.
        password: SecretString,
    },
    /// `oauthbearer` with `saslTokenProvider=bearer`: OAuth2 client credentials.
    OAuthBearer {
        /// `username`: the client id.
        client_id: String,
        /// `password`: the client secret.
        client_secret: SecretString,
        /// `oauthTokenEndpointUri`.
        token_endpoint: String,
        /// `scopes`, split on `,`.
        scopes: Vec<String>,
        /// `oauthExtensions`, `k=v` pairs.
        extensions: BTreeMap<String, String>,
    },
    /// `oauthbearer` with `saslTokenProvider=aws_msk_iam`.
    AwsMskIam {
        /// `awsRegion`.
        region: String,
    },
    /// `gssapi` (Kerberos).
    Gssapi {
        /// `username`.
        username: String,
        /// `kerberosServiceName` (default `kafka`).
        service_name: String,
    },
}

/// TLS and SASL settings of a trigger: what decides which pooled client it shares.
#[derive(Debug, Clone, Default)]
pub struct Security {
    /// `tls=enable`.
    pub tls: bool,
    /// `unsafeSsl`: skip server certificate verification.
    pub unsafe_ssl: bool,
    /// `ca` (PEM).
    pub ca: Option<SecretString>,
    /// `cert` (PEM).
    pub cert: Option<SecretString>,
    /// `key` (PEM).
    pub key: Option<SecretString>,
    /// `keyPassword`.
    pub key_password: Option<SecretString>,
    /// SASL mechanism and credentials.
    pub sasl: Sasl,
}

/// A parsed, validated `kafka` trigger.
#[derive(Debug, Clone)]
pub struct Trigger {
    /// `bootstrapServers`.
    pub bootstrap_servers: Vec<String>,
    /// `consumerGroup`.
    pub consumer_group: String,
    /// `topic`; `None` means every topic the group has committed offsets for.
    pub topic: Option<String>,
    /// `partitionLimitation` as inclusive ranges; empty means all partitions.
    pub partition_limitation: PartitionLimitation,
    /// `activationLagThreshold`.
    pub activation_lag_threshold: i64,
    /// Lag threshold and the lag-shaping flags.
    pub rules: LagRules,
    /// `fullMetadata`.
    pub full_metadata: bool,
    /// `version` (validated Sarama version string).
    pub version: String,
    /// TLS and SASL.
    pub security: Security,
    /// `s<i>-kafka-<topic>` or `s<i>-kafka-<group>-topics`.
    pub metric_name: String,
    /// `metricType`.
    pub metric_type: MetricType,
    /// Bound on every broker call of one poll.
    pub timeout: Duration,
}

/// `partitionLimitation`: inclusive ranges, kept unexpanded so `0-2147483647` costs nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionLimitation(pub Vec<(i32, i32)>);

impl PartitionLimitation {
    /// No limitation: every partition is evaluated.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `partition` is evaluated.
    pub fn allows(&self, partition: i32) -> bool {
        self.is_empty() || self.0.iter().any(|&(a, b)| (a..=b).contains(&partition))
    }
}

impl Trigger {
    /// The one metric: integer target `lagThreshold`.
    pub fn metric_spec(&self) -> MetricSpec {
        MetricSpec {
            metric_name: self.metric_name.clone(),
            target: self.rules.lag_threshold as f64,
            target_is_integer: true,
            metric_type: self.metric_type,
            activation_threshold: self.activation_lag_threshold as f64,
        }
    }
}

/// Parse and validate a `kafka` trigger without any I/O (used by `tidescale check`).
pub fn parse(cfg: &ScalerConfig) -> Result<Trigger, ScalerError> {
    let mut p = Params::new(cfg, TYPE);
    let servers = p
        .key("bootstrapServers")
        .sources(META_ENV)
        .required()
        .list();
    let group = p.key("consumerGroup").sources(META_ENV).required().string();
    let topic = p.key("topic").sources(META_ENV).string();
    let partition_limitation = limitation_key(&mut p, topic.is_some());
    let rules = parse_rules(&mut p);
    let activation_lag_threshold = p.key("activationLagThreshold").int().unwrap_or(0);
    if activation_lag_threshold < 0 {
        p.invalid("\"activationLagThreshold\" must be non-negative number");
    }
    let full_metadata = p.key("fullMetadata").bool().unwrap_or(true);
    let version = version_key(&mut p);
    validate_flags(&mut p, &rules, topic.is_some(), full_metadata);
    let security = parse_security(&mut p);
    let metric_type = external_metric_type(cfg, TYPE).unwrap_or_else(|e| {
        p.invalid(config_message(e));
        MetricType::default()
    });
    p.finish()?;
    let (Some(bootstrap_servers), Some(consumer_group)) = (servers, group) else {
        // finish() already failed for a missing required key; this is unreachable in practice.
        let message = "missing bootstrapServers or consumerGroup".into();
        return Err(ScalerError::Config {
            scaler: TYPE,
            message,
        });
    };
    let detail = match &topic {
        Some(t) => format!("kafka-{t}"),
        None => format!("kafka-{consumer_group}-topics"),
    };
    Ok(Trigger {
        bootstrap_servers,
        consumer_group,
        topic,
        partition_limitation,
        activation_lag_threshold,
        rules,
        full_metadata,
        version,
        security,
        metric_name: naming::metric_name(cfg.trigger_index, &detail),
        metric_type,
        timeout: if cfg.timeout.is_zero() {
            DEFAULT_TIMEOUT
        } else {
            cfg.timeout
        },
    })
}

/// The text of a config error from a shared helper, to join it with ours.
fn config_message(e: ScalerError) -> String {
    match e {
        ScalerError::Config { message, .. } => message,
        other => other.to_string(),
    }
}

/// `partitionLimitation`; KEDA drops it (with a log line) when there is no topic.
fn limitation_key(p: &mut Params<'_>, has_topic: bool) -> PartitionLimitation {
    if !has_topic {
        return PartitionLimitation::default();
    }
    let Some(raw) = p.key("partitionLimitation").string() else {
        return PartitionLimitation::default();
    };
    parse_limitation(&raw).unwrap_or_else(|e| {
        p.invalid(e);
        PartitionLimitation::default()
    })
}

/// `version` (default `1.0.0`), validated as Sarama would.
fn version_key(p: &mut Params<'_>) -> String {
    let version = p
        .key("version")
        .string()
        .unwrap_or_else(|| "1.0.0".to_owned());
    if !valid_version(&version) {
        p.invalid(format!(
            "error parsing kafka version: invalid version `{version}`"
        ));
    }
    version
}

fn parse_rules(p: &mut Params<'_>) -> LagRules {
    let lag_threshold = p.key("lagThreshold").int().unwrap_or(10);
    if lag_threshold <= 0 {
        p.invalid("\"lagThreshold\" must be positive number");
    }
    let offset_reset_policy = match p
        .key("offsetResetPolicy")
        .one_of(&["latest", "earliest"])
        .string()
        .as_deref()
    {
        Some("earliest") => OffsetResetPolicy::Earliest,
        _ => OffsetResetPolicy::Latest,
    };
    LagRules {
        lag_threshold,
        offset_reset_policy,
        allow_idle_consumers: p.key("allowIdleConsumers").bool().unwrap_or(false),
        exclude_persistent_lag: p.key("excludePersistentLag").bool().unwrap_or(false),
        scale_to_zero_on_invalid_offset: p
            .key("scaleToZeroOnInvalidOffset")
            .bool()
            .unwrap_or(false),
        limit_to_partitions_with_lag: p.key("limitToPartitionsWithLag").bool().unwrap_or(false),
        ensure_even_distribution: p
            .key("ensureEvenDistributionOfPartitions")
            .bool()
            .unwrap_or(false),
    }
}

fn validate_flags(p: &mut Params<'_>, r: &LagRules, has_topic: bool, full_metadata: bool) {
    if r.allow_idle_consumers && r.limit_to_partitions_with_lag {
        p.invalid("allowIdleConsumers and limitToPartitionsWithLag cannot be set simultaneously");
    }
    if r.limit_to_partitions_with_lag && !has_topic {
        p.invalid("topic must be specified when using limitToPartitionsWithLag");
    }
    if r.limit_to_partitions_with_lag && r.ensure_even_distribution {
        p.invalid("limitToPartitionsWithLag and ensureEvenDistributionOfPartitions cannot be set simultaneously");
    }
    if r.ensure_even_distribution && !has_topic {
        p.invalid("topic must be specified when using ensureEvenDistributionOfPartitions");
    }
    if !full_metadata && !has_topic {
        p.invalid("topic must be specified when using fullMetadata=false");
    }
}

/// `1,2,10-20,31`: integers and inclusive ranges (KEDA `ParseInt32List`).
fn parse_limitation(raw: &str) -> Result<PartitionLimitation, String> {
    let mut out = Vec::new();
    for part in raw.split(',') {
        let bounds: Vec<&str> = part.split('-').map(str::trim).collect();
        let num = |s: &str| {
            s.parse::<i32>()
                .map_err(|_| format!("invalid partition limitation: {}", part.trim()))
        };
        match bounds.as_slice() {
            [one] => {
                let n = num(one)?;
                out.push((n, n));
            }
            [a, b] => out.push((num(a)?, num(b)?)),
            _ => {
                return Err(format!(
                    "invalid partition limitation range: {}",
                    part.trim()
                ));
            }
        }
    }
    Ok(PartitionLimitation(out))
}

/// Sarama `ParseKafkaVersion`: `x.y.z`, or `0.x.y.z` before Kafka 1.0.
fn valid_version(v: &str) -> bool {
    static MODERN: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"^[1-9]\d*\.\d+\.\d+$").expect("static regex"));
    static LEGACY: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"^0\.\d+\.\d+\.\d+$").expect("static regex"));
    v.len() >= 5 && (MODERN.is_match(v) || LEGACY.is_match(v))
}

/// `tls`, its PEM material, and SASL. `tls` and `sasl` are read from metadata first.
fn parse_security(p: &mut Params<'_>) -> Security {
    let tls = p
        .key("tls")
        .sources(META_AUTH)
        .one_of(&["enable", "disable"])
        .string();
    let tls = tls.as_deref() == Some("enable");
    let unsafe_ssl = p.key("unsafeSsl").bool().unwrap_or(false);
    let (mut ca, mut cert, mut key, mut key_password) = (None, None, None, None);
    if tls {
        ca = p.key("ca").sources(AUTH).secret();
        cert = p.key("cert").sources(AUTH).secret();
        key = p.key("key").sources(AUTH).secret();
        key_password = p.key("keyPassword").sources(AUTH).secret();
        match (&cert, &key) {
            (Some(_), None) => p.invalid("key must be provided with cert"),
            (None, Some(_)) => p.invalid("cert must be provided with key"),
            _ => {}
        }
    }
    let sasl = parse_sasl(p, tls);
    Security {
        tls,
        unsafe_ssl,
        ca,
        cert,
        key,
        key_password,
        sasl,
    }
}

fn parse_sasl(p: &mut Params<'_>, tls: bool) -> Sasl {
    const MODES: &[&str] = &[
        "none",
        "plaintext",
        "scram_sha256",
        "scram_sha512",
        "oauthbearer",
        "gssapi",
    ];
    let mode = p.key("sasl").sources(META_AUTH).one_of(MODES).string();
    let mechanism = match mode.as_deref() {
        None | Some("none") => return Sasl::None,
        Some("plaintext") => "PLAIN",
        Some("scram_sha256") => "SCRAM-SHA-256",
        Some("scram_sha512") => "SCRAM-SHA-512",
        Some("oauthbearer") => return parse_oauth(p, tls),
        _ => return parse_gssapi(p),
    };
    let username = credential(p, "username", "no username given");
    let password = p.key("password").sources(AUTH).secret();
    if password.is_none() {
        p.invalid("no password given");
    }
    match password {
        Some(password) => Sasl::Password {
            mechanism,
            username,
            password,
        },
        None => Sasl::None,
    }
}

/// A required auth-only string with KEDA's own message when it is missing.
fn credential(p: &mut Params<'_>, key: &'static str, missing: &str) -> String {
    let value = p.key(key).sources(AUTH).string();
    if value.is_none() {
        p.invalid(missing);
    }
    value.unwrap_or_default()
}

fn parse_oauth(p: &mut Params<'_>, tls: bool) -> Sasl {
    let provider = p
        .key("saslTokenProvider")
        .sources(META_AUTH)
        .one_of(&["bearer", "aws_msk_iam"])
        .string();
    if provider.as_deref() == Some("aws_msk_iam") {
        if !tls {
            p.invalid("TLS is required for MSK");
        }
        let region = p.key("awsRegion").sources(META).string();
        if region.is_none() {
            p.invalid("no awsRegion given");
        }
        return Sasl::AwsMskIam {
            region: region.unwrap_or_default(),
        };
    }
    let client_id = credential(p, "username", "no username given");
    let client_secret = p.key("password").sources(AUTH).secret();
    if client_secret.is_none() {
        p.invalid("no password given");
    }
    let token_endpoint = credential(
        p,
        "oauthTokenEndpointUri",
        "no oauth token endpoint uri given",
    );
    let scopes = p.key("scopes").sources(AUTH).list().unwrap_or_default();
    let scopes = scopes.into_iter().filter(|s| !s.is_empty()).collect();
    let mut extensions = BTreeMap::new();
    if let Some(raw) = p.key("oauthExtensions").sources(AUTH).string() {
        for pair in raw.split(',') {
            match pair.split_once('=') {
                Some((k, v)) if !k.trim().is_empty() && !v.contains('=') => {
                    extensions.insert(k.trim().to_owned(), v.trim().to_owned());
                }
                _ => p.invalid("invalid OAuthBearer extension, must be of format key=value"),
            }
        }
    }
    let client_secret = client_secret.unwrap_or_else(|| SecretString::from(String::new()));
    Sasl::OAuthBearer {
        client_id,
        client_secret,
        token_endpoint,
        scopes,
        extensions,
    }
}

fn parse_gssapi(p: &mut Params<'_>) -> Sasl {
    let username = credential(p, "username", "no username given");
    let has_password = p.key("password").sources(AUTH).found().is_some();
    let has_keytab = p.key("keytab").sources(AUTH).found().is_some();
    if has_password == has_keytab {
        p.invalid(
            "exactly one of 'password' or 'keytab' must be provided for GSSAPI authentication",
        );
    }
    credential(p, "realm", "no realm given");
    credential(
        p,
        "kerberosConfig",
        "no Kerberos configuration file (kerberosConfig) given",
    );
    let service_name = p
        .key("kerberosServiceName")
        .sources(AUTH)
        .string()
        .unwrap_or_else(|| "kafka".into());
    p.key("kerberosDisableFAST").sources(AUTH).bool();
    Sasl::Gssapi {
        username,
        service_name,
    }
}

impl Security {
    /// librdkafka properties for these settings, as the key of the shared client.
    ///
    /// Mechanisms librdkafka cannot do in-process (MSK IAM signing, Kerberos with per-trigger
    /// krb5.conf) are refused here with a config error rather than failing at poll time.
    pub(crate) fn client_key(&self, servers: &[String]) -> Result<ClientKey, ScalerError> {
        let secret = |s: &str| SecretString::from(s.to_owned());
        let mut props: Vec<(&'static str, SecretString)> = Vec::new();
        let protocol = match (self.tls, matches!(self.sasl, Sasl::None)) {
            (false, true) => "plaintext",
            (true, true) => "ssl",
            (false, false) => "sasl_plaintext",
            (true, false) => "sasl_ssl",
        };
        props.push(("security.protocol", secret(protocol)));
        if self.tls {
            self.tls_props(&mut props);
        }
        self.sasl_props(&mut props)?;
        props.sort_by(|a, b| a.0.cmp(b.0));
        Ok(ClientKey {
            servers: servers.join(","),
            props,
        })
    }

    /// `sasl.*` properties. librdkafka's OIDC method does the OAuth2 client-credentials flow
    /// itself (KEDA's `bearer` token provider).
    fn sasl_props(&self, props: &mut Vec<(&'static str, SecretString)>) -> Result<(), ScalerError> {
        let secret = |s: &str| SecretString::from(s.to_owned());
        match &self.sasl {
            Sasl::None => {}
            Sasl::Password {
                mechanism,
                username,
                password,
            } => {
                props.push(("sasl.mechanism", secret(mechanism)));
                props.push(("sasl.username", secret(username)));
                props.push(("sasl.password", password.clone()));
            }
            Sasl::OAuthBearer {
                client_id,
                client_secret,
                token_endpoint,
                scopes,
                extensions,
            } => {
                props.push(("sasl.mechanism", secret("OAUTHBEARER")));
                props.push(("sasl.oauthbearer.method", secret("oidc")));
                props.push(("sasl.oauthbearer.client.id", secret(client_id)));
                props.push(("sasl.oauthbearer.client.secret", client_secret.clone()));
                props.push((
                    "sasl.oauthbearer.token.endpoint.url",
                    secret(token_endpoint),
                ));
                if !scopes.is_empty() {
                    props.push(("sasl.oauthbearer.scope", secret(&scopes.join(" "))));
                }
                if !extensions.is_empty() {
                    let ext: Vec<String> =
                        extensions.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    props.push(("sasl.oauthbearer.extensions", secret(&ext.join(","))));
                }
            }
            Sasl::AwsMskIam { .. } => {
                return Err(unsupported(
                    "sasl oauthbearer with saslTokenProvider aws_msk_iam",
                ));
            }
            Sasl::Gssapi { .. } => return Err(unsupported("sasl gssapi")),
        }
        Ok(())
    }

    fn tls_props(&self, props: &mut Vec<(&'static str, SecretString)>) {
        let pem = [
            ("ssl.ca.pem", &self.ca),
            ("ssl.certificate.pem", &self.cert),
            ("ssl.key.pem", &self.key),
        ];
        for (name, value) in pem {
            if let Some(v) = value {
                props.push((name, v.clone()));
            }
        }
        if let Some(v) = &self.key_password {
            props.push(("ssl.key.password", v.clone()));
        }
        if self.unsafe_ssl {
            props.push((
                "enable.ssl.certificate.verification",
                SecretString::from("false"),
            ));
            props.push((
                "ssl.endpoint.identification.algorithm",
                SecretString::from("none"),
            ));
        }
    }
}

fn unsupported(what: &str) -> ScalerError {
    ScalerError::Config {
        scaler: TYPE,
        message: format!("{what} is not supported by tidescale's kafka client"),
    }
}

#[cfg(test)]
#[path = "params_tests.rs"]
mod tests;
