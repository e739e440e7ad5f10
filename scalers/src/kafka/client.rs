//! The librdkafka side of the Kafka scaler: shared clients and the offset reads of spec §3.4
//! steps 1–2.
//!
//! librdkafka binds the consumer group to the handle (`group.id`) and rdkafka 0.39 has no
//! admin call for a group's offsets, so committed offsets need a handle configured with the
//! group that never subscribes (it joins nothing, it only sends OffsetFetch). Everything else
//! (metadata, watermarks) goes through one group-less handle per endpoint. The pool therefore
//! holds, per (bootstrap servers, security settings): one shared client, plus one handle per
//! distinct consumer group, both reference counted across all triggers.
//!
//! librdkafka calls block: each runs on `spawn_blocking`, is given the remaining time of the
//! poll's deadline, and is also wrapped in a tokio timeout.

use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use secrecy::{ExposeSecret, SecretString};

use super::TYPE;
use super::lag::PartitionOffsets;
use super::params::PartitionLimitation;
use crate::ScalerError;
use crate::pool::{Pool, Shared};

/// Extra time allowed on top of a librdkafka timeout before the tokio guard gives up.
const GUARD_MARGIN: Duration = Duration::from_millis(250);

/// librdkafka properties that identify a connection: servers plus security settings. Values may
/// be secrets, so they are held as such and never printed.
#[derive(Clone)]
pub(crate) struct ClientKey {
    /// `bootstrap.servers`, comma-joined in the trigger's order.
    pub servers: String,
    /// Security properties (`security.protocol`, `sasl.*`, `ssl.*`), sorted by name.
    pub props: Vec<(&'static str, SecretString)>,
}

impl ClientKey {
    /// A comparable form; only used for pool lookups, never printed.
    fn identity(&self) -> (&str, Vec<(&'static str, &str)>) {
        (
            &self.servers,
            self.props
                .iter()
                .map(|(k, v)| (*k, v.expose_secret()))
                .collect(),
        )
    }

    fn config(&self, group: Option<&str>, timeout: Duration) -> ClientConfig {
        let mut cfg = ClientConfig::new();
        let ms = timeout.as_millis().max(1).to_string();
        cfg.set("bootstrap.servers", &self.servers)
            // Watermarks must be the high watermark, not the last stable offset (Sarama reads
            // ListOffsets v0/v1, which has no isolation level).
            .set("isolation.level", "read_uncommitted")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("socket.timeout.ms", ms.as_str())
            .set("log.connection.close", "false");
        if let Some(group) = group {
            cfg.set("group.id", group);
        }
        for (k, v) in &self.props {
            cfg.set(*k, v.expose_secret());
        }
        cfg
    }

    /// librdkafka echoes bad values in its errors; strip any secret before it reaches a message.
    fn redact(&self, message: String) -> String {
        self.props.iter().fold(message, |m, (_, v)| {
            let v = v.expose_secret();
            if v.len() >= 3 {
                m.replace(v, "<redacted>")
            } else {
                m
            }
        })
    }
}

impl std::fmt::Debug for ClientKey {
    // Property values may be secrets: show the names only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.props.iter().map(|(k, _)| *k).collect();
        f.debug_struct("ClientKey")
            .field("servers", &self.servers)
            .field("props", &names)
            .finish()
    }
}

impl PartialEq for ClientKey {
    fn eq(&self, other: &Self) -> bool {
        self.identity() == other.identity()
    }
}

impl Eq for ClientKey {}

impl Hash for ClientKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.identity().hash(state);
    }
}

/// A pooled librdkafka handle. Destroying it blocks (it closes the group queue and joins
/// librdkafka's threads), so that happens on a blocking thread.
pub(crate) struct Handle {
    consumer: Arc<BaseConsumer>,
    servers: String,
}

impl Drop for Handle {
    fn drop(&mut self) {
        let consumer = Arc::clone(&self.consumer);
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn_blocking(move || drop(consumer));
            }
            Err(_) => drop(consumer),
        }
    }
}

type GroupKey = (ClientKey, String);

/// Group-less clients: one per (servers, security settings).
static CLIENTS: LazyLock<Arc<Pool<ClientKey, Handle>>> = LazyLock::new(|| Arc::new(Pool::new()));
/// Group-bound handles: one per (servers, security settings, consumer group).
static GROUPS: LazyLock<Arc<Pool<GroupKey, Handle>>> = LazyLock::new(|| Arc::new(Pool::new()));

/// Counters of the Kafka pools for one `bootstrap.servers` string, for tests and telemetry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Shared group-less clients (one per distinct security setting).
    pub clients: usize,
    /// Group-bound handles (one per distinct consumer group on those clients).
    pub group_handles: usize,
}

/// Pool counters for the clients whose `bootstrap.servers` equals `servers` (as written in the
/// trigger, comma-joined).
pub fn pool_stats(servers: &str) -> PoolStats {
    let matching =
        |handles: Vec<Arc<Handle>>| handles.iter().filter(|h| h.servers == servers).count();
    PoolStats {
        clients: matching(CLIENTS.clients()),
        group_handles: matching(GROUPS.clients()),
    }
}

/// One trigger's share of a pooled client and group handle. Released on [`Lease::release`] or
/// drop, whichever comes first.
pub(crate) struct Lease {
    key: ClientKey,
    group: String,
    client: Shared<ClientKey, Handle>,
    group_handle: Shared<GroupKey, Handle>,
    /// The topic's partitions (after `partitionLimitation`) and when they were read.
    partitions: std::sync::Mutex<Option<CachedPartitions>>,
}

/// A topic's partitions and when they were read.
type CachedPartitions = (Instant, Vec<(String, i32)>);

/// How long a topic's partition list is reused before it is described again. Describing it on
/// every poll doubles the cost of a poll (benches/scaler_overhead); partitions are added
/// rarely, and any failed poll forgets the list, as Sarama's metadata cache does.
const PARTITIONS_TTL: Duration = Duration::from_secs(30);

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("servers", &self.key.servers)
            .field("group", &self.group)
            .finish()
    }
}

fn create(key: &ClientKey, group: Option<&str>, timeout: Duration) -> Result<Handle, ScalerError> {
    let consumer = key
        .config(group, timeout)
        .create::<BaseConsumer>()
        .map_err(|e| ScalerError::Config {
            scaler: TYPE,
            message: key.redact(format!("kafka client configuration rejected: {e}")),
        })?;
    Ok(Handle {
        consumer: Arc::new(consumer),
        servers: key.servers.clone(),
    })
}

/// Take a share of the client for `key` and of the handle for `group`, creating them if needed.
/// Creating a handle does no network I/O; reachability is checked by the caller.
pub(crate) fn acquire(
    key: &ClientKey,
    group: &str,
    timeout: Duration,
) -> Result<Lease, ScalerError> {
    let client = CLIENTS.acquire(key, || create(key, None, timeout))?;
    let group_key = (key.clone(), group.to_owned());
    // On error `client` is dropped, which gives its share back.
    let group_handle = GROUPS.acquire(&group_key, || create(key, Some(group), timeout))?;
    Ok(Lease {
        key: key.clone(),
        group: group.to_owned(),
        client,
        group_handle,
        partitions: std::sync::Mutex::new(None),
    })
}

/// Why a librdkafka read failed: the endpoint (counts towards its backoff) or the answer.
enum CallError {
    Transport(String),
    Answer(String),
}

impl Lease {
    /// Give this trigger's share back; the last share destroys the handles. Idempotent.
    pub(crate) fn release(&self) {
        self.group_handle.release();
        self.client.release();
    }

    /// Run `f` unless the endpoint backs off. Transport failures extend the endpoint's
    /// backoff (kept by the pool, so it outlives a scaler whose construction failed); any
    /// answer from the brokers, even an error, ends it.
    async fn guarded<T, F>(&self, timeout: Duration, f: F) -> Result<T, ScalerError>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T, CallError> + Send + 'static,
    {
        if let Err(left) = CLIENTS.check_backoff(&self.key) {
            return Err(backend(format!(
                "kafka brokers {} are backing off after failures, next attempt in {left:?}",
                self.key.servers
            )));
        }
        let result = blocking(timeout, f).await;
        CLIENTS.record(&self.key, !matches!(result, Err(CallError::Transport(_))));
        match result {
            Ok(v) => Ok(v),
            Err(CallError::Answer(m)) => Err(backend(m)),
            Err(CallError::Transport(m)) => Err(backend(self.key.redact(m))),
        }
    }

    /// Check that the cluster answers (spec §3.3: construction fails when the broker is down).
    pub(crate) async fn check_reachable(
        &self,
        topic: Option<&str>,
        timeout: Duration,
    ) -> Result<(), ScalerError> {
        let client = Arc::clone(&self.client.client().consumer);
        let topic = topic.map(str::to_owned);
        let servers = self.key.servers.clone();
        self.guarded(timeout, move || {
            client
                .fetch_metadata(topic.as_deref(), timeout)
                .map(|_| ())
                .map_err(|e| {
                    CallError::Transport(format!("cannot reach kafka brokers {servers}: {e}"))
                })
        })
        .await
    }

    /// Read committed offsets and high watermarks of the partitions to evaluate (§3.4 steps 1–2).
    ///
    /// The whole poll runs in one blocking task: a hand-off per request costs more than the
    /// request itself on a nearby broker.
    pub(crate) async fn fetch_offsets(
        &self,
        topic: Option<&str>,
        limitation: &PartitionLimitation,
        timeout: Duration,
    ) -> Result<Vec<PartitionOffsets>, ScalerError> {
        let deadline = Instant::now() + timeout;
        let client = Arc::clone(&self.client.client().consumer);
        let group = Arc::clone(&self.group_handle.client().consumer);
        let cached = topic.and_then(|_| self.cached_partitions());
        let (topic_name, limitation) = (topic.map(str::to_owned), limitation.clone());
        let read = self
            .guarded(timeout, move || {
                let tpl = match (cached, topic_name) {
                    (Some(partitions), _) => partition_list(&partitions),
                    (None, Some(t)) => topic_partitions(&client, &t, &limitation, deadline)?,
                    (None, None) => group_topics(&client, &group, deadline)?,
                };
                let committed = read_committed(&group, tpl.clone(), deadline)?;
                let watermarks = read_watermarks(&client, tpl.clone(), deadline)?;
                Ok((tpl, committed, watermarks))
            })
            .await;
        match read {
            Ok((tpl, committed, watermarks)) => {
                if topic.is_some() {
                    self.remember_partitions(&tpl);
                }
                join_offsets(&tpl, &committed, &watermarks)
            }
            Err(e) => {
                self.remember_partitions(&TopicPartitionList::new());
                Err(e)
            }
        }
    }

    /// The cached partition list, if it is still fresh.
    fn cached_partitions(&self) -> Option<Vec<(String, i32)>> {
        let cache = self.partitions.lock().ok()?;
        let (read_at, partitions) = cache.as_ref()?;
        (read_at.elapsed() < PARTITIONS_TTL).then(|| partitions.clone())
    }

    /// Cache `tpl` as the topic's partitions; an empty list clears the cache.
    fn remember_partitions(&self, tpl: &TopicPartitionList) {
        let partitions: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_owned(), e.partition()))
            .collect();
        if let Ok(mut cache) = self.partitions.lock() {
            *cache = (!partitions.is_empty()).then(|| (Instant::now(), partitions));
        }
    }
}

fn partition_list(partitions: &[(String, i32)]) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    for (topic, partition) in partitions {
        tpl.add_partition(topic, *partition);
    }
    tpl
}

fn backend(message: String) -> ScalerError {
    ScalerError::Backend {
        scaler: TYPE,
        message,
    }
}

fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// Run a blocking librdkafka call, bounded by `timeout` (plus a margin so librdkafka's own
/// timeout fires first and gives the better message).
async fn blocking<T, F>(timeout: Duration, f: F) -> Result<T, CallError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, CallError> + Send + 'static,
{
    match tokio::time::timeout(timeout + GUARD_MARGIN, tokio::task::spawn_blocking(f)).await {
        Ok(Ok(result)) => result,
        Ok(Err(join)) => Err(CallError::Answer(format!("kafka call failed: {join}"))),
        Err(_) => Err(CallError::Transport(format!(
            "kafka call timed out after {timeout:?}"
        ))),
    }
}

/// Describe `topic` and keep the partitions allowed by `partitionLimitation`.
fn topic_partitions(
    client: &BaseConsumer,
    topic: &str,
    limitation: &PartitionLimitation,
    deadline: Instant,
) -> Result<TopicPartitionList, CallError> {
    drain_events(client);
    let md = client
        .fetch_metadata(Some(topic), remaining(deadline))
        .map_err(|e| CallError::Transport(format!("error describing topics: {e}")))?;
    let [t] = md.topics() else {
        let n = md.topics().len();
        return Err(CallError::Answer(format!(
            "expected only 1 topic metadata, got {n}"
        )));
    };
    if let Some(err) = t.error() {
        return Err(CallError::Answer(format!(
            "error describing topic {topic}: {err:?}"
        )));
    }
    let mut tpl = TopicPartitionList::new();
    for p in t.partitions().iter().filter(|p| limitation.allows(p.id())) {
        tpl.add_partition(topic, p.id());
    }
    if tpl.count() == 0 {
        return Err(CallError::Answer(format!(
            "expected at least one active partition within the topic '{topic}'"
        )));
    }
    Ok(tpl)
}

/// With no `topic`: every partition of every topic the group has committed an offset for.
fn group_topics(
    client: &BaseConsumer,
    group: &BaseConsumer,
    deadline: Instant,
) -> Result<TopicPartitionList, CallError> {
    drain_events(client);
    let md = client
        .fetch_metadata(None, remaining(deadline))
        .map_err(|e| CallError::Transport(format!("error listing topics: {e}")))?;
    let mut all = TopicPartitionList::new();
    for t in md.topics().iter().filter(|t| t.error().is_none()) {
        for p in t.partitions() {
            all.add_partition(t.name(), p.id());
        }
    }
    if all.count() == 0 {
        return Ok(all);
    }
    let committed = read_committed(group, all, deadline)?;
    let topics: BTreeSet<&str> = committed
        .iter()
        .filter(|(_, c)| **c >= 0)
        .map(|((t, _), _)| t.as_str())
        .collect();
    let mut tpl = TopicPartitionList::new();
    for t in md.topics().iter().filter(|t| topics.contains(t.name())) {
        for p in t.partitions() {
            tpl.add_partition(t.name(), p.id());
        }
    }
    Ok(tpl)
}

/// OffsetFetch for `tpl`; a partition with nothing committed reads as −1.
fn read_committed(
    group: &BaseConsumer,
    tpl: TopicPartitionList,
    deadline: Instant,
) -> Result<HashMap<(String, i32), i64>, CallError> {
    drain_events(group);
    if tpl.count() == 0 {
        return Ok(HashMap::new());
    }
    let reply = group
        .committed_offsets(tpl, remaining(deadline))
        .map_err(|e| CallError::Transport(format!("error listing consumer group offsets: {e}")))?;
    let mut out = HashMap::new();
    for e in reply.elements() {
        if let Err(err) = e.error() {
            return Err(CallError::Answer(format!(
                "error listing consumer group offsets for partition {} of topic {}: {err}",
                e.partition(),
                e.topic()
            )));
        }
        // Anything but a real offset (librdkafka's INVALID for "nothing committed") reads as -1.
        let c = match e.offset() {
            Offset::Offset(o) if o >= 0 => o,
            _ => -1,
        };
        out.insert((e.topic().to_owned(), e.partition()), c);
    }
    Ok(out)
}

/// High watermarks in one librdkafka call: ListOffsets with timestamp −1, which librdkafka
/// batches per partition leader and sends in parallel.
fn read_watermarks(
    client: &BaseConsumer,
    mut tpl: TopicPartitionList,
    deadline: Instant,
) -> Result<HashMap<(String, i32), i64>, CallError> {
    if tpl.count() == 0 {
        return Ok(HashMap::new());
    }
    tpl.set_all_offsets(Offset::End)
        .map_err(|e| CallError::Answer(format!("kafka offset request: {e}")))?;
    let reply = client
        .offsets_for_times(tpl, remaining(deadline))
        .map_err(|e| CallError::Transport(format!("error listing offsets: {e}")))?;
    let mut out = HashMap::new();
    for e in reply.elements() {
        if let Err(err) = e.error() {
            return Err(CallError::Answer(format!(
                "error listing offsets for partition {} of topic {}: {err}",
                e.partition(),
                e.topic()
            )));
        }
        if let Offset::Offset(o) = e.offset() {
            out.insert((e.topic().to_owned(), e.partition()), o);
        }
    }
    Ok(out)
}

/// A handle that is never polled would queue error and log events forever (a broker that
/// flaps produces one per reconnect); drain them on every use.
fn drain_events(consumer: &BaseConsumer) {
    for _ in 0..1000 {
        if consumer.poll(Duration::ZERO).is_none() {
            return;
        }
    }
}

fn join_offsets(
    tpl: &TopicPartitionList,
    committed: &HashMap<(String, i32), i64>,
    watermarks: &HashMap<(String, i32), i64>,
) -> Result<Vec<PartitionOffsets>, ScalerError> {
    let mut out = Vec::with_capacity(tpl.count());
    for e in tpl.elements() {
        let k = (e.topic().to_owned(), e.partition());
        let Some(&c) = committed.get(&k) else {
            return Err(backend(format!(
                "error finding offset block for topic {} and partition {}",
                k.0, k.1
            )));
        };
        out.push(PartitionOffsets {
            topic: k.0.clone(),
            partition: k.1,
            committed: c,
            high_watermark: watermarks.get(&k).copied(),
        });
    }
    Ok(out)
}
