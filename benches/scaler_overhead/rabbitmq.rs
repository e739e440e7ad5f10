//! RabbitMQ: AMQP passive `queue.declare` of one queue.
//!
//! Raw: `Channel::queue_declare(passive)` on a channel of a lapin connection the bench opens
//! itself. Scaler: a `rabbitmq` trigger on the same queue, whose pooled connection and reused
//! channels are warm after the warm-up. Connections are counted three ways: sockets of this
//! process to the AMQP port, the scaler pool's counters, and the broker's own list (management
//! API `/api/connections`, matched by our local ports).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use lapin::options::{QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties};
use reqwest::Url;
use serde::Deserialize;
use tidescale_scalers::Scaler;
use tidescale_scalers::pool::{amqp, mask_userinfo};

use crate::backend::{self, CALL_TIMEOUT, ConnSnapshot, env_or, timed};
use crate::measure::Subject;
use crate::meter;

const AMQP_ENV: &str = "TIDESCALE_TEST_RABBITMQ_AMQP";
const HTTP_ENV: &str = "TIDESCALE_TEST_RABBITMQ_HTTP";
/// How long the broker's connection list may lag behind the sockets.
const LISTING_LAG: Duration = Duration::from_secs(12);
/// The raw connection's `connection_name`, so it is recognisable in the management UI.
const RAW_CONNECTION_NAME: &str = "tidescale-bench-raw";

/// The raw channel, the scaler, and what is needed to count connections and clean up.
pub struct RabbitMq {
    connection: Connection,
    channel: Channel,
    queue: String,
    scaler: Box<dyn Scaler>,
    metric: String,
    amqp_port: u16,
    mgmt: Management,
}

impl RabbitMq {
    /// Connect the raw client, declare a fresh queue and build the scaler on it.
    pub async fn setup() -> Result<Self> {
        let amqp_url = env_or(AMQP_ENV, "amqp://guest:guest@127.0.0.1:5672/%2f");
        let mgmt = Management::new(&env_or(HTTP_ENV, "http://guest:guest@127.0.0.1:15672"))?;
        mgmt.check().await?;
        let amqp_port = Url::parse(&amqp_url)
            .with_context(|| format!("{AMQP_ENV} is not a URL"))?
            .port()
            .unwrap_or(5672);
        let props =
            ConnectionProperties::default().with_connection_name(RAW_CONNECTION_NAME.into());
        let connection = timed("AMQP connect", Connection::connect(&amqp_url, props))
            .await
            .with_context(|| {
                format!(
                    "RabbitMQ AMQP is not reachable at {} (set {AMQP_ENV}; scripts/services start)",
                    mask_userinfo(&amqp_url)
                )
            })?;
        let channel = timed("AMQP channel.open", connection.create_channel()).await?;
        let queue = format!("tidescale-bench-{}", std::process::id());
        let declare = channel.queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        );
        timed("AMQP queue.declare (create)", declare).await?;
        let cfg = backend::scaler_config("rabbitmq", &[("host", &amqp_url), ("queueName", &queue)]);
        let (scaler, metric) = backend::build(&cfg).await?;
        Ok(Self {
            connection,
            channel,
            queue,
            scaler,
            metric,
            amqp_port,
            mgmt,
        })
    }

    /// Delete the queue and close both connections (best effort, errors are printed).
    pub async fn teardown(self) {
        let delete = self
            .channel
            .queue_delete(self.queue.as_str().into(), QueueDeleteOptions::default());
        if let Err(e) = timed("AMQP queue.delete", delete).await {
            eprintln!("warning: could not delete queue {}: {e:#}", self.queue);
        }
        if let Err(e) = self.scaler.close().await {
            eprintln!("warning: closing the rabbitmq scaler: {e}");
        }
        let close = self.connection.close(200, "bench done".into());
        let _ = timed("AMQP connection.close", close).await;
    }

    async fn raw(&self) -> Result<f64> {
        let options = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        let declare =
            self.channel
                .queue_declare(self.queue.as_str().into(), options, FieldTable::default());
        let queue = timed("AMQP passive queue.declare", declare).await?;
        Ok(f64::from(queue.message_count()))
    }
}

impl Subject for RabbitMq {
    fn variants(&self) -> &[&'static str] {
        &["raw lapin queue_declare(passive)", "scaler rabbitmq (amqp)"]
    }

    async fn call(&self, variant: usize) -> Result<f64> {
        match variant {
            0 => self.raw().await,
            _ => backend::poll(self.scaler.as_ref(), &self.metric).await,
        }
    }

    async fn connections(&self) -> Result<ConnSnapshot> {
        let sockets = meter::connections_to(self.amqp_port)?;
        let broker_view = self.mgmt.connections_from(&sockets).await?;
        let mut snapshot = ConnSnapshot {
            sockets,
            ..ConnSnapshot::default()
        };
        snapshot
            .detail
            .insert("scaler_pool_connections_opened", amqp::connections_opened());
        let open = amqp::connections_open().await;
        snapshot
            .detail
            .insert("scaler_pool_connections_open", open as u64);
        snapshot.detail.insert("broker_view", broker_view);
        Ok(snapshot)
    }
}

/// The management API, for the broker's view of our connections.
struct Management {
    client: reqwest::Client,
    base: Url,
}

#[derive(Deserialize)]
struct ConnectionRow {
    #[serde(default)]
    peer_port: Option<u16>,
}

impl Management {
    fn new(base: &str) -> Result<Self> {
        let base = Url::parse(base).with_context(|| format!("{HTTP_ENV} is not a URL"))?;
        let tls = tidescale_scalers::pool::http::rustls_config(&Default::default())
            .map_err(|e| anyhow!("TLS setup: {e}"))?;
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(CALL_TIMEOUT)
            .build()
            .context("building the management API client")?;
        Ok(Self { client, base })
    }

    async fn get(&self, path: &str) -> Result<reqwest::Response> {
        let url = self.base.join(path).context("management API URL")?;
        let response = timed("RabbitMQ management GET", self.client.get(url).send())
            .await
            .with_context(|| {
                format!(
                    "RabbitMQ management API is not reachable at {} (set {HTTP_ENV}; \
                     scripts/services start)",
                    mask_userinfo(self.base.as_str())
                )
            })?;
        response
            .error_for_status()
            .with_context(|| format!("RabbitMQ management API {path}"))
    }

    async fn check(&self) -> Result<()> {
        self.get("/api/overview").await.map(drop)
    }

    /// How many connections the broker lists whose peer port is one of `local_ports`, waiting
    /// up to [`LISTING_LAG`] for all of them: the management API learns of connections from
    /// periodic stats events, seconds late (environment.md).
    async fn connections_from(&self, local_ports: &BTreeSet<u16>) -> Result<u64> {
        let deadline = Instant::now() + LISTING_LAG;
        loop {
            let listed = self.listed(local_ports).await?;
            if listed >= local_ports.len() as u64 || Instant::now() >= deadline {
                return Ok(listed);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn listed(&self, local_ports: &BTreeSet<u16>) -> Result<u64> {
        let response = self.get("/api/connections?columns=peer_port").await?;
        let rows: Vec<ConnectionRow> = timed("reading /api/connections", response.json()).await?;
        let ours = rows
            .iter()
            .filter_map(|r| r.peer_port)
            .filter(|p| local_ports.contains(p))
            .count();
        Ok(ours as u64)
    }
}
