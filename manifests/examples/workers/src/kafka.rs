//! The Kafka worker: a `StreamConsumer` in a consumer group, one message at a time, the offset
//! committed after the simulated work (at-least-once; auto-commit is off).
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `KAFKA_BOOTSTRAP_SERVERS` | required | `host:9092[,host:9092…]` |
//! | `KAFKA_TOPIC` | required | topic to consume |
//! | `KAFKA_GROUP_ID` | required | consumer group (the ScaledObject's `consumerGroup`) |
//! | `KAFKA_OFFSET_RESET` | `earliest` | where a group without offsets starts |
//! | `KAFKA_CONFIG_<NAME>` | — | any librdkafka property: `KAFKA_CONFIG_SASL_MECHANISMS=PLAIN` sets `sasl.mechanisms` |
//! | `WORK_MS` | `500` | simulated work per message |
//!
//! Lag (what the `kafka` trigger measures) is the distance between the group's committed
//! offsets and the partitions' ends, so it falls as this worker commits.

use anyhow::Context;
use futures::StreamExt;
use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{Common, Progress, env_or, env_required, simulate_work};

/// Prefix of variables passed through to librdkafka.
const PASS_THROUGH_PREFIX: &str = "KAFKA_CONFIG_";

/// The worker's settings.
#[derive(Clone)]
pub struct Config {
    /// `bootstrap.servers`.
    pub bootstrap_servers: String,
    /// Topic to consume.
    pub topic: String,
    /// `group.id`.
    pub group_id: String,
    /// `auto.offset.reset`.
    pub offset_reset: String,
    /// Extra librdkafka properties (`sasl.password` among them, so never logged).
    pub extra: Vec<(String, String)>,
    /// Shared settings.
    pub common: Common,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: Vec<&str> = self.extra.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("Config")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("topic", &self.topic)
            .field("group_id", &self.group_id)
            .field("offset_reset", &self.offset_reset)
            .field("extra_keys", &keys)
            .field("common", &self.common)
            .finish()
    }
}

impl Config {
    /// Read the variables in the table above.
    pub fn from_env() -> anyhow::Result<Self> {
        Ok(Self {
            bootstrap_servers: env_required("KAFKA_BOOTSTRAP_SERVERS")?,
            topic: env_required("KAFKA_TOPIC")?,
            group_id: env_required("KAFKA_GROUP_ID")?,
            offset_reset: env_or("KAFKA_OFFSET_RESET", "earliest"),
            extra: pass_through(std::env::vars()),
            common: Common::from_env()?,
        })
    }

    /// The librdkafka configuration of the consumer.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap_servers)
            .set("group.id", &self.group_id)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", &self.offset_reset)
            .set("client.id", "tidescale-sample-kafka-worker");
        for (key, value) in &self.extra {
            config.set(key, value);
        }
        config
    }
}

/// `KAFKA_CONFIG_SASL_MECHANISMS=PLAIN` → `("sasl.mechanisms", "PLAIN")`.
pub fn pass_through(vars: impl Iterator<Item = (String, String)>) -> Vec<(String, String)> {
    let mut extra: Vec<(String, String)> = vars
        .filter_map(|(name, value)| {
            let key = name.strip_prefix(PASS_THROUGH_PREFIX)?;
            (!key.is_empty()).then(|| (key.to_ascii_lowercase().replace('_', "."), value))
        })
        .collect();
    extra.sort();
    extra
}

/// Consume until `shutdown` fires.
pub async fn run(
    config: &Config,
    shutdown: CancellationToken,
    progress: Progress,
) -> anyhow::Result<()> {
    let consumer: StreamConsumer = config
        .client_config()
        .create()
        .context("creating the Kafka consumer (check KAFKA_* variables)")?;
    consumer
        .subscribe(&[config.topic.as_str()])
        .with_context(|| format!("subscribing to topic {}", config.topic))?;
    info!(topic = %config.topic, group = %config.group_id, work_ms = config.common.work.as_millis() as u64, "consuming");
    {
        let mut stream = consumer.stream();
        loop {
            let message = tokio::select! {
                () = shutdown.cancelled() => break,
                next = stream.next() => next,
            };
            let Some(message) = message else {
                warn!("the consumer stream ended");
                break;
            };
            let message = match message {
                Ok(message) => message,
                Err(e) => {
                    // Broker hiccups surface here; librdkafka reconnects by itself.
                    warn!(error = %e, "kafka error while consuming");
                    continue;
                }
            };
            simulate_work(config.common.work).await;
            consumer
                .commit_message(&message, CommitMode::Sync)
                .context("committing the offset")?;
            progress.done();
            info!(
                partition = message.partition(),
                offset = message.offset(),
                bytes = message.payload().map_or(0, <[u8]>::len),
                processed = progress.processed(),
                "processed message"
            );
        }
    }
    consumer.unsubscribe();
    info!(processed = progress.processed(), "kafka worker drained");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pass_through_variables_become_librdkafka_properties() {
        let vars = [
            ("KAFKA_CONFIG_SASL_MECHANISMS", "PLAIN"),
            ("KAFKA_CONFIG_SECURITY_PROTOCOL", "SASL_SSL"),
            ("KAFKA_CONFIG_", "ignored"),
            ("KAFKA_TOPIC", "orders"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        assert_eq!(
            pass_through(vars),
            [
                ("sasl.mechanisms".to_owned(), "PLAIN".to_owned()),
                ("security.protocol".to_owned(), "SASL_SSL".to_owned()),
            ]
        );
    }
}
