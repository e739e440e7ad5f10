//! The RabbitMQ worker: `basic.consume` on one queue with a prefetch window, one message at a
//! time, `basic.ack` after the simulated work.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `RABBITMQ_URL` | required | `amqp://user:pass@host:5672/vhost` (or `amqps://`) |
//! | `QUEUE` | required | queue to consume; declared durable if it does not exist |
//! | `PREFETCH` | `1` | unacknowledged messages the broker may hand this worker |
//! | `WORK_MS` | `500` | simulated work per message |
//!
//! The ScaledObject's `rabbitmq` trigger reads the same queue's depth, so more workers start
//! when messages pile up and scale back to zero when the queue is drained.

use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{Common, Progress, env_parse, env_required, simulate_work};

/// Connecting gives up after this long (the pod restarts and tries again).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// The worker's settings.
#[derive(Clone)]
pub struct Config {
    /// AMQP URI, credentials included (never logged).
    pub url: String,
    /// Queue to consume.
    pub queue: String,
    /// `basic.qos` prefetch count.
    pub prefetch: u16,
    /// Shared settings.
    pub common: Common,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("url", &"<redacted>")
            .field("queue", &self.queue)
            .field("prefetch", &self.prefetch)
            .field("common", &self.common)
            .finish()
    }
}

impl Config {
    /// Read `RABBITMQ_URL`, `QUEUE`, `PREFETCH` and `WORK_MS`.
    pub fn from_env() -> anyhow::Result<Self> {
        Ok(Self {
            url: env_required("RABBITMQ_URL")?,
            queue: env_required("QUEUE")?,
            prefetch: env_parse("PREFETCH", 1)?,
            common: Common::from_env()?,
        })
    }
}

/// Consume until `shutdown` fires or the broker closes the connection.
pub async fn run(
    config: &Config,
    shutdown: CancellationToken,
    progress: Progress,
) -> anyhow::Result<()> {
    let props = ConnectionProperties::default()
        .with_connection_name("tidescale-sample-rabbitmq-worker".into());
    let connection = tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect(&config.url, props))
        .await
        .context("connecting to RabbitMQ timed out")?
        .context("connecting to RabbitMQ (check RABBITMQ_URL)")?;
    let channel = connection
        .create_channel()
        .await
        .context("opening an AMQP channel")?;
    channel
        .basic_qos(config.prefetch, BasicQosOptions::default())
        .await
        .context("setting the prefetch count")?;
    channel
        .queue_declare(
            config.queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .with_context(|| format!("declaring queue {}", config.queue))?;
    let mut consumer = channel
        .basic_consume(
            config.queue.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .with_context(|| format!("consuming from queue {}", config.queue))?;
    info!(queue = %config.queue, prefetch = config.prefetch, work_ms = config.common.work.as_millis() as u64, "consuming");

    loop {
        let delivery = tokio::select! {
            () = shutdown.cancelled() => break,
            next = consumer.next() => next,
        };
        let Some(delivery) = delivery else {
            warn!("the broker ended the consumer");
            break;
        };
        let delivery = delivery.context("receiving a delivery")?;
        simulate_work(config.common.work).await;
        delivery
            .acker
            .ack(BasicAckOptions::default())
            .await
            .context("acknowledging a delivery")?;
        progress.done();
        info!(
            delivery_tag = delivery.delivery_tag,
            bytes = delivery.data.len(),
            processed = progress.processed(),
            "processed message"
        );
    }
    // Unacknowledged prefetched messages go back to the queue when the channel closes.
    let _ = channel.close(200, "worker stopping".into()).await;
    let _ = connection.close(200, "worker stopping".into()).await;
    info!(processed = progress.processed(), "rabbitmq worker drained");
    Ok(())
}
