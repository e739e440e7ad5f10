//! Kafka: consumer-group lag of one 3-partition topic on librdkafka's in-process mock cluster.
//!
//! Raw: `committed_offsets` for the group (OffsetFetch) then `offsets_for_times(End)` for the
//! topic's partitions (ListOffsets, the high watermarks), on two handles the bench holds,
//! configured like the scaler's (group-bound and group-less); lag = Σ (watermark − committed).
//! librdkafka's calls block, so an async program — the operator, or any raw client living in
//! one — must run them off the runtime: the baseline makes both in one `spawn_blocking`, as the
//! scaler does. The same calls made directly on the caller's thread (blocking the runtime, which
//! a service cannot do) are reported too, for reference.
//!
//! Scaler: a `kafka` trigger on the same topic and group. With `TIDESCALE_BENCH_BREAKDOWN=1` a
//! diagnostic variant adds the topic Metadata request to the baseline (the scaler makes it once
//! per 30 s).
//!
//! The mock broker runs in this process: its thread (`rdk:mock`) is metered separately so that
//! the CPU figures compare client-side work only.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, DefaultProducerContext, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tidescale_scalers::Scaler;
use tidescale_scalers::kafka::pool_stats;

use crate::backend::{self, CALL_TIMEOUT, ConnSnapshot};
use crate::measure::Subject;
use crate::meter::{self, NamedThread};

const TOPIC: &str = "bench-orders";
const GROUP: &str = "bench-group";
/// Records per partition, and the group's committed offsets: lag 4 + 3 + 0 = 7, under the
/// scaler's cap of `lagThreshold` (10) × partitions.
const MESSAGES: [i64; 3] = [5, 3, 2];
const COMMITTED: [i64; 3] = [1, 0, 2];

type Cluster = MockCluster<'static, DefaultProducerContext>;

/// The mock cluster, the raw handles and the scaler.
pub struct Kafka {
    scaler: Box<dyn Scaler>,
    metric: String,
    client: Arc<BaseConsumer>,
    group: Arc<BaseConsumer>,
    partitions: TopicPartitionList,
    servers: String,
    broker_port: u16,
    broker_thread: NamedThread,
    breakdown: bool,
    // Last: dropped after every handle that talks to it.
    _cluster: Cluster,
}

impl Kafka {
    /// Start the mock cluster, fill the topic, commit the group's offsets, build both sides.
    pub async fn setup(breakdown: bool) -> Result<Self> {
        let cluster = MockCluster::new(1).context("starting the librdkafka mock cluster")?;
        cluster
            .create_topic(TOPIC, MESSAGES.len() as i32, 1)
            .context("creating the topic on the mock cluster")?;
        let servers = cluster.bootstrap_servers();
        let broker_port = servers
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .ok_or_else(|| anyhow!("unexpected mock bootstrap servers {servers:?}"))?;
        let broker_thread = NamedThread::find("rdk:mock")?;
        let setup_servers = servers.clone();
        blocking("filling the mock topic", move || fill(&setup_servers)).await?;
        let cfg = backend::scaler_config(
            "kafka",
            &[
                ("bootstrapServers", &servers),
                ("consumerGroup", GROUP),
                ("topic", TOPIC),
            ],
        );
        let (scaler, metric) = backend::build(&cfg).await?;
        let mut partitions = TopicPartitionList::new();
        for p in 0..MESSAGES.len() as i32 {
            partitions.add_partition(TOPIC, p);
        }
        Ok(Self {
            scaler,
            metric,
            client: Arc::new(consumer(&servers, None)?),
            group: Arc::new(consumer(&servers, Some(GROUP))?),
            partitions,
            servers,
            broker_port,
            broker_thread,
            breakdown,
            _cluster: cluster,
        })
    }

    /// Give the scaler's pooled handles back; the rest is dropped with `self`.
    pub async fn teardown(self) {
        if let Err(e) = self.scaler.close().await {
            eprintln!("warning: closing the kafka scaler: {e}");
        }
        let Self {
            scaler,
            client,
            group,
            _cluster: cluster,
            ..
        } = self;
        drop(scaler);
        // Destroying librdkafka handles blocks while their threads stop; the cluster goes last.
        let _ = tokio::task::spawn_blocking(move || drop((client, group))).await;
        drop(cluster);
    }

    /// The raw lag: OffsetFetch then ListOffsets, directly on this thread.
    fn raw(&self) -> Result<f64> {
        raw_lag(&self.group, &self.client, &self.partitions)
    }

    /// The raw lag as an async program must read it: both calls in one `spawn_blocking`.
    async fn raw_off_runtime(&self) -> Result<f64> {
        let (group, client) = (Arc::clone(&self.group), Arc::clone(&self.client));
        let partitions = self.partitions.clone();
        blocking("committed + watermarks", move || {
            raw_lag(&group, &client, &partitions)
        })
        .await
    }

    /// Diagnostic: the baseline plus the topic Metadata request.
    async fn raw_with_metadata(&self) -> Result<f64> {
        let client = Arc::clone(&self.client);
        blocking("metadata", move || metadata(&client)).await?;
        self.raw_off_runtime().await
    }
}

fn raw_lag(
    group: &BaseConsumer,
    client: &BaseConsumer,
    partitions: &TopicPartitionList,
) -> Result<f64> {
    let committed = committed(group, partitions)?;
    let watermarks = watermarks(client, partitions)?;
    Ok(lag(&committed, &watermarks))
}

impl Subject for Kafka {
    fn variants(&self) -> &[&'static str] {
        const ALL: &[&str] = &[
            "raw rdkafka committed + watermarks (one spawn_blocking)",
            "scaler kafka",
            "raw on the calling thread (blocks the runtime)",
            "raw + metadata (spawn_blocking)",
        ];
        if self.breakdown { ALL } else { &ALL[..3] }
    }

    async fn call(&self, variant: usize) -> Result<f64> {
        match variant {
            0 => self.raw_off_runtime().await,
            1 => backend::poll(self.scaler.as_ref(), &self.metric).await,
            2 => self.raw(),
            _ => self.raw_with_metadata().await,
        }
    }

    fn backend_cpu(&self) -> Result<Duration> {
        self.broker_thread.cpu()
    }

    async fn connections(&self) -> Result<ConnSnapshot> {
        let mut snapshot = ConnSnapshot {
            sockets: meter::connections_to(self.broker_port)?,
            ..ConnSnapshot::default()
        };
        let stats = pool_stats(&self.servers);
        snapshot
            .detail
            .insert("scaler_pool_clients", stats.clients as u64);
        snapshot
            .detail
            .insert("scaler_pool_group_handles", stats.group_handles as u64);
        Ok(snapshot)
    }
}

/// A consumer configured like the scaler's pooled handles (`kafka/client.rs`), never subscribed.
fn consumer(servers: &str, group: Option<&str>) -> Result<BaseConsumer> {
    let mut cfg = base_config(servers);
    cfg.set("isolation.level", "read_uncommitted")
        .set("enable.auto.offset.store", "false")
        .set("log.connection.close", "false");
    if let Some(group) = group {
        cfg.set("group.id", group);
    }
    cfg.create().context("creating a raw Kafka consumer")
}

/// Every setup and raw handle: bounded socket timeouts, no auto commit.
fn base_config(servers: &str) -> ClientConfig {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", servers)
        .set("enable.auto.commit", "false")
        .set("socket.timeout.ms", CALL_TIMEOUT.as_millis().to_string());
    cfg
}

/// Produce [`MESSAGES`] and commit [`COMMITTED`] for [`GROUP`].
fn fill(servers: &str) -> Result<()> {
    let producer: BaseProducer = base_config(servers)
        .create()
        .context("creating the setup producer")?;
    for (p, n) in MESSAGES.iter().enumerate() {
        for _ in 0..*n {
            let record = BaseRecord::to(TOPIC)
                .partition(p as i32)
                .payload("m")
                .key("k");
            producer
                .send(record)
                .map_err(|(e, _)| anyhow!("enqueueing a record: {e}"))?;
        }
    }
    producer
        .flush(CALL_TIMEOUT)
        .context("flushing the setup producer")?;
    let committer = consumer(servers, Some(GROUP))?;
    let mut tpl = TopicPartitionList::new();
    for (p, o) in COMMITTED.iter().enumerate() {
        tpl.add_partition_offset(TOPIC, p as i32, Offset::Offset(*o))
            .context("building the commit")?;
    }
    committer
        .commit(&tpl, CommitMode::Sync)
        .context("committing the group's offsets")
}

fn metadata(client: &BaseConsumer) -> Result<()> {
    let md = client
        .fetch_metadata(Some(TOPIC), CALL_TIMEOUT)
        .context("Kafka Metadata")?;
    if md.topics().len() != 1 {
        bail!("expected metadata for one topic, got {}", md.topics().len());
    }
    Ok(())
}

fn committed(group: &BaseConsumer, partitions: &TopicPartitionList) -> Result<Vec<i64>> {
    let reply = group
        .committed_offsets(partitions.clone(), CALL_TIMEOUT)
        .context("Kafka OffsetFetch")?;
    offsets(&reply, "committed")
}

fn watermarks(client: &BaseConsumer, partitions: &TopicPartitionList) -> Result<Vec<i64>> {
    let mut request = partitions.clone();
    request
        .set_all_offsets(Offset::End)
        .context("building ListOffsets")?;
    let reply = client
        .offsets_for_times(request, CALL_TIMEOUT)
        .context("Kafka ListOffsets")?;
    offsets(&reply, "high watermark")
}

/// The offsets of `reply` by partition index; any error or non-offset is an error.
fn offsets(reply: &TopicPartitionList, what: &str) -> Result<Vec<i64>> {
    let mut out = vec![0; MESSAGES.len()];
    for e in reply.elements() {
        e.error()
            .with_context(|| format!("{what} of partition {}", e.partition()))?;
        let (Offset::Offset(o), Some(slot)) = (e.offset(), out.get_mut(e.partition() as usize))
        else {
            bail!("no {what} for partition {}", e.partition());
        };
        *slot = o;
    }
    Ok(out)
}

fn lag(committed: &[i64], watermarks: &[i64]) -> f64 {
    let total: i64 = committed.iter().zip(watermarks).map(|(c, hw)| hw - c).sum();
    total as f64
}

/// Run a blocking librdkafka call off the runtime, bounded by [`CALL_TIMEOUT`] plus a margin
/// (librdkafka's own timeouts fire first).
async fn blocking<T: Send + 'static>(
    what: &str,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    let margin = Duration::from_millis(500);
    let joined = tokio::time::timeout(CALL_TIMEOUT + margin, tokio::task::spawn_blocking(f))
        .await
        .map_err(|_| anyhow!("{what} timed out"))?;
    joined.with_context(|| format!("{what} panicked"))?
}
