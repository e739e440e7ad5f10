//! Parsing and validation of an `azure-servicebus` trigger (spec/scalers.md §4.1–4.2).

use regex::Regex;

use super::TYPE;
use super::auth::ConnectionString;
use crate::metadata::{AUTH_ENV, Params};
use crate::{MetricSpec, MetricType, ScalerConfig, ScalerError, external_metric_type, naming};

/// What to count.
#[derive(Debug, Clone)]
pub enum Entity {
    /// `queueName`; with `useRegex`, every queue whose whole name matches.
    Queue {
        /// The name, or the pattern as written.
        name: String,
        /// `^(?:pattern)$` when `useRegex`.
        pattern: Option<Regex>,
    },
    /// `topicName` + `subscriptionName`; with `useRegex` the subscription is a pattern.
    Subscription {
        /// `topicName` (always literal).
        topic: String,
        /// `subscriptionName`, or the pattern as written.
        name: String,
        /// `^(?:pattern)$` when `useRegex`.
        pattern: Option<Regex>,
    },
}

/// `operation`: how counts of several matching entities combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Operation {
    /// Sum of the counts.
    #[default]
    Sum,
    /// Largest count (0 when nothing matched).
    Max,
    /// Integer mean (0 when nothing matched).
    Avg,
}

impl Operation {
    /// Combine counts as KEDA does.
    pub fn apply(self, counts: &[i64]) -> i64 {
        let sum = counts.iter().fold(0i64, |a, c| a.saturating_add(*c));
        match self {
            Operation::Sum => sum,
            Operation::Max => counts.iter().copied().fold(0, i64::max),
            Operation::Avg => i64::try_from(counts.len())
                .ok()
                .filter(|n| *n > 0)
                .map_or(0, |n| sum / n),
        }
    }
}

/// `cloud` as KEDA's `ParseEnvironmentProperty` reads it (only used with workload identity).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cloud {
    /// A named cloud with a known Service Bus suffix.
    Known(&'static str),
    /// `Private`: the suffix is `endpointSuffix`.
    Private(String),
    /// `AzureStackCloud`: the suffix comes from the file named by `AZURE_ENVIRONMENT_FILEPATH`.
    Stack,
}

/// How requests are authorised.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// A namespace connection string (`connection`).
    Connection(ConnectionString),
    /// `podIdentity.provider: azure-workload`.
    Workload {
        /// `namespace` (no suffix).
        namespace: String,
        /// `cloud` / `endpointSuffix`.
        cloud: Cloud,
    },
}

/// A parsed, validated `azure-servicebus` trigger.
#[derive(Debug, Clone)]
pub struct Trigger {
    /// The queue or subscription(s) to count.
    pub entity: Entity,
    /// `messageCount`: the target.
    pub message_count: i64,
    /// `activationMessageCount`.
    pub activation_message_count: i64,
    /// `operation`.
    pub operation: Operation,
    /// Connection string or workload identity.
    pub credentials: Credentials,
    /// `s<i>-azure-servicebus-…`.
    pub metric_name: String,
    /// `metricType`.
    pub metric_type: MetricType,
}

impl Trigger {
    /// The one metric: integer target `messageCount`.
    pub fn metric_spec(&self) -> MetricSpec {
        MetricSpec {
            metric_name: self.metric_name.clone(),
            target: self.message_count as f64,
            target_is_integer: true,
            metric_type: self.metric_type,
            activation_threshold: self.activation_message_count as f64,
        }
    }
}

/// Parse and validate an `azure-servicebus` trigger without any I/O (used by `tidescale check`).
pub fn parse(cfg: &ScalerConfig) -> Result<Trigger, ScalerError> {
    let mut p = Params::new(cfg, TYPE);
    let message_count = p.key("messageCount").int().unwrap_or(5);
    let activation_message_count = p.key("activationMessageCount").int().unwrap_or(0);
    let operation = match p
        .key("operation")
        .one_of(&["sum", "max", "avg"])
        .string()
        .as_deref()
    {
        Some("max") => Operation::Max,
        Some("avg") => Operation::Avg,
        _ => Operation::Sum,
    };
    let use_regex = p.key("useRegex").bool().unwrap_or(false);
    let entity = parse_entity(&mut p, use_regex);
    let credentials = parse_credentials(&mut p);
    // Joined with the other problems rather than returned alone.
    let metric_type = external_metric_type(cfg, TYPE).unwrap_or_else(|e| {
        p.invalid(match e {
            ScalerError::Config { message, .. } => message,
            other => other.to_string(),
        });
        MetricType::default()
    });
    p.finish()?;
    let (Some(entity), Some(credentials)) = (entity, credentials) else {
        // parse_entity/parse_credentials record an error whenever they return None.
        return Err(ScalerError::Config {
            scaler: TYPE,
            message: "invalid trigger".into(),
        });
    };
    let detail = match (&entity, use_regex) {
        (Entity::Queue { .. }, true) => "azure-servicebus-queue-regex".to_owned(),
        (Entity::Subscription { .. }, true) => "azure-servicebus-topic-regex".to_owned(),
        (Entity::Queue { name, .. }, false) => format!("azure-servicebus-{name}"),
        (Entity::Subscription { topic, .. }, false) => format!("azure-servicebus-{topic}"),
    };
    Ok(Trigger {
        entity,
        message_count,
        activation_message_count,
        operation,
        credentials,
        metric_name: naming::metric_name(cfg.trigger_index, &detail),
        metric_type,
    })
}

fn parse_entity(p: &mut Params<'_>, use_regex: bool) -> Option<Entity> {
    let queue = p.key("queueName").string();
    let topic = p.key("topicName").string();
    let subscription = p.key("subscriptionName").string();
    let pattern = |p: &mut Params<'_>, name: &str, what: &str| -> Option<Regex> {
        if !use_regex {
            return None;
        }
        // Go's leftmost-longest match equal to the whole name is an anchored full match.
        Regex::new(&format!("^(?:{name})$"))
            .map_err(|_| p.invalid(format!("{what} is not a valid regular expression")))
            .ok()
    };
    match (queue, topic, subscription) {
        (Some(_), _, Some(_)) => p.invalid("subscription name provided with queue name"),
        (Some(_), Some(_), None) => p.invalid("both topic and queue name metadata provided"),
        (None, Some(_), None) => p.invalid("no subscription name provided with topic name"),
        (None, None, _) => p.invalid("no service bus entity type set"),
        (Some(name), None, None) => {
            let pattern = pattern(p, &name, "queueName");
            return Some(Entity::Queue { name, pattern });
        }
        (None, Some(topic), Some(name)) => {
            let pattern = pattern(p, &name, "subscriptionName");
            return Some(Entity::Subscription {
                topic,
                name,
                pattern,
            });
        }
    }
    None
}

fn parse_credentials(p: &mut Params<'_>) -> Option<Credentials> {
    let cfg = p.config();
    let provider = cfg
        .pod_identity
        .as_ref()
        .map(|pi| pi.provider.trim())
        .unwrap_or_default();
    match provider {
        "" | "none" => {
            let Some(raw) = p.key("connection").sources(AUTH_ENV).secret() else {
                p.invalid("no connection setting given");
                return None;
            };
            use secrecy::ExposeSecret;
            ConnectionString::parse(raw.expose_secret())
                .map_err(|e| {
                    p.invalid(format!(
                        "connection setting is not a valid Service Bus connection string: {e}"
                    ))
                })
                .ok()
                .map(Credentials::Connection)
        }
        "azure-workload" => {
            if cfg
                .pod_identity
                .as_ref()
                .and_then(|pi| pi.identity_id.as_deref())
                .is_some_and(|id| id.trim().is_empty())
            {
                p.invalid("identityId of podIdentity azure-workload must not be empty when set");
            }
            let namespace = p.key("namespace").string();
            if namespace.is_none() {
                p.invalid("namespace are required when using pod identity");
            }
            let cloud = parse_cloud(p)?;
            Some(Credentials::Workload {
                namespace: namespace?,
                cloud,
            })
        }
        other => {
            p.invalid(format!(
                "azure service bus doesn't support pod identity {other}"
            ));
            None
        }
    }
}

/// Public, US Government, China and German clouds and their Service Bus suffixes.
const CLOUDS: &[(&str, &str)] = &[
    ("AzurePublicCloud", "servicebus.windows.net"),
    ("AzureUSGovernmentCloud", "servicebus.usgovcloudapi.net"),
    ("AzureChinaCloud", "servicebus.chinacloudapi.cn"),
    ("AzureGermanCloud", "servicebus.cloudapi.de"),
];

fn parse_cloud(p: &mut Params<'_>) -> Option<Cloud> {
    let Some(cloud) = p.key("cloud").string() else {
        return Some(Cloud::Known(CLOUDS[0].1));
    };
    if cloud.eq_ignore_ascii_case("Private") {
        let suffix = p.key("endpointSuffix").string();
        if suffix.is_none() {
            p.invalid("endpointSuffix must be provided for Private cloud type");
        }
        return suffix.map(Cloud::Private);
    }
    if cloud.eq_ignore_ascii_case("AzureStackCloud") {
        return Some(Cloud::Stack);
    }
    match CLOUDS
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(&cloud))
    {
        Some((_, suffix)) => Some(Cloud::Known(suffix)),
        None => {
            p.invalid(format!("invalid cloud environment {cloud}"));
            None
        }
    }
}

#[cfg(test)]
#[path = "params_tests.rs"]
mod tests;
