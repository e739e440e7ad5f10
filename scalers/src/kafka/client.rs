//! The Kafka scaler's pooled clients and the offset reads of spec §3.4 steps 1–2.
//!
//! Per (bootstrap servers, security settings) the pool holds ONE shared entry: a group-less
//! librdkafka client (metadata and high watermarks, see `reads.rs`) and, for plaintext and
//! SASL PLAIN/SCRAM-SHA-256/SCRAM-SHA-512 without TLS (`sasl.rs`), the shared broker connections of `conn.rs`, which read committed offsets of ANY consumer group
//! with OffsetFetch. So 1,000 triggers with 1,000 distinct groups cost one librdkafka instance
//! and one TCP connection per broker for offsets, not 1,001 instances.
//!
//! TLS, OAUTHBEARER and GSSAPI triggers keep the older path: committed offsets through a
//! librdkafka handle whose `group.id` is the group (it never subscribes, it only sends
//! OffsetFetch), one per distinct group, reference counted in a second pool. librdkafka already
//! implements those; TLS on the raw path (tokio-rustls) is future work.
//!
//! librdkafka calls block: each runs on `spawn_blocking`, is given the remaining time of the
//! poll's deadline, and is also wrapped in a tokio timeout. Raw-protocol requests are async
//! and bounded by the same deadline.

use std::future::Future;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use secrecy::{ExposeSecret, SecretString};

use super::TYPE;
use super::conn::Brokers;
use super::lag::PartitionOffsets;
use super::params::PartitionLimitation;
use super::reads::{self, CallError, OffsetMap, Offsets, Parts, blocking, remaining};
use super::sasl::{Mechanism, SaslAuth};
use super::wire::WireError;
use crate::ScalerError;
use crate::pool::{Pool, Shared};

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

    /// `Some` when the raw-protocol offset path can serve this key: no TLS, and no SASL or
    /// SASL PLAIN/SCRAM (whose credentials it returns).
    fn shared_auth(&self) -> Option<Option<SaslAuth>> {
        let get = |name: &str| {
            self.props
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.clone())
        };
        let protocol = get("security.protocol")?;
        match (protocol.expose_secret(), self.props.len()) {
            ("plaintext", 1) => Some(None),
            ("sasl_plaintext", 4) => Some(Some(SaslAuth {
                mechanism: Mechanism::from_librdkafka(get("sasl.mechanism")?.expose_secret())?,
                username: get("sasl.username")?,
                password: get("sasl.password")?,
            })),
            _ => None,
        }
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

/// A pooled librdkafka handle, plus (on a plaintext group-less client) the shared broker
/// connections for committed offsets. Destroying the librdkafka handle blocks (it closes the
/// group queue and joins librdkafka's threads), so that happens on a blocking thread.
pub(crate) struct Handle {
    consumer: Arc<BaseConsumer>,
    servers: String,
    brokers: Option<Arc<Brokers>>,
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
/// Group-bound handles of TLS/SASL triggers: one per (servers, security settings, group).
static GROUPS: LazyLock<Arc<Pool<GroupKey, Handle>>> = LazyLock::new(|| Arc::new(Pool::new()));

/// Counters of the Kafka pools for one `bootstrap.servers` string, for tests and telemetry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Shared group-less clients (one per distinct security setting).
    pub clients: usize,
    /// Group-bound librdkafka handles (TLS/SASL triggers only: one per distinct group).
    pub group_handles: usize,
    /// Open TCP connections of the shared committed-offset path (plaintext).
    pub connections: usize,
    /// TCP connections that path has opened since its client was created.
    pub connections_opened: u64,
}

/// Pool counters for the clients whose `bootstrap.servers` equals `servers` (as written in the
/// trigger, comma-joined).
pub fn pool_stats(servers: &str) -> PoolStats {
    let matching = |handles: Vec<Arc<Handle>>| -> Vec<Arc<Handle>> {
        handles
            .into_iter()
            .filter(|h| h.servers == servers)
            .collect()
    };
    let clients = matching(CLIENTS.clients());
    let brokers = || clients.iter().filter_map(|h| h.brokers.as_ref());
    PoolStats {
        clients: clients.len(),
        group_handles: matching(GROUPS.clients()).len(),
        connections: brokers().map(|b| b.open_connections()).sum(),
        connections_opened: brokers().map(|b| b.connections_opened()).sum(),
    }
}

/// Where a trigger's committed offsets come from.
enum GroupReader {
    /// Shared connections of the trigger's client (plaintext or SASL PLAIN/SCRAM).
    Shared(Arc<Brokers>),
    /// A librdkafka handle bound to the group (TLS, OAUTHBEARER, GSSAPI).
    Handle(Shared<GroupKey, Handle>),
}

/// One trigger's share of a pooled client (and, for TLS/SASL, of a group handle). Released on
/// [`Lease::release`] or drop, whichever comes first.
pub(crate) struct Lease {
    key: ClientKey,
    group: String,
    client: Shared<ClientKey, Handle>,
    reader: GroupReader,
    /// The topic's partitions (after `partitionLimitation`) and when they were read.
    partitions: std::sync::Mutex<Option<CachedPartitions>>,
}

/// A topic's partitions and when they were read.
type CachedPartitions = (Instant, Parts);

/// How long a topic's partition list is reused before it is described again. Describing it on
/// every poll doubles the cost of a poll (benches/scaler_overhead); partitions are added
/// rarely, and any failed poll forgets the list, as Sarama's metadata cache does.
const PARTITIONS_TTL: Duration = Duration::from_secs(30);

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("servers", &self.key.servers)
            .field("group", &self.group)
            .field(
                "shared_offsets",
                &matches!(self.reader, GroupReader::Shared(_)),
            )
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
    let brokers = match (group, key.shared_auth()) {
        (None, Some(auth)) => Some(Arc::new(Brokers::new(&key.servers, auth))),
        _ => None,
    };
    Ok(Handle {
        consumer: Arc::new(consumer),
        servers: key.servers.clone(),
        brokers,
    })
}

/// Take a share of the client for `key` (and, for TLS/SASL, of the handle for `group`),
/// creating them if needed. No network I/O; reachability is checked by the caller.
pub(crate) fn acquire(
    key: &ClientKey,
    group: &str,
    timeout: Duration,
) -> Result<Lease, ScalerError> {
    let client = CLIENTS.acquire(key, || create(key, None, timeout))?;
    let reader = match &client.client().brokers {
        Some(brokers) => GroupReader::Shared(Arc::clone(brokers)),
        None => {
            let group_key = (key.clone(), group.to_owned());
            // On error `client` is dropped, which gives its share back.
            GroupReader::Handle(GROUPS.acquire(&group_key, || create(key, Some(group), timeout))?)
        }
    };
    Ok(Lease {
        key: key.clone(),
        group: group.to_owned(),
        client,
        reader,
        partitions: std::sync::Mutex::new(None),
    })
}

/// A raw-protocol failure as a read failure (transport or answer, for the backoff).
fn wire_error(e: WireError) -> CallError {
    let message = format!("error listing consumer group offsets: {e}");
    if e.is_transport() {
        CallError::Transport(message)
    } else if let WireError::Partition { .. } = e {
        CallError::Answer(e.to_string())
    } else {
        CallError::Answer(message)
    }
}

impl Lease {
    /// Give this trigger's share back; the last share destroys the handles (and closes the
    /// shared connections). Idempotent.
    pub(crate) fn release(&self) {
        if let GroupReader::Handle(h) = &self.reader {
            h.release();
        }
        self.client.release();
    }

    /// Run `read` unless the endpoint backs off. Transport failures extend the endpoint's
    /// backoff (kept by the pool, so it outlives a scaler whose construction failed); any
    /// answer from the brokers, even an error, ends it.
    async fn guarded<T>(
        &self,
        timeout: Duration,
        read: impl Future<Output = Result<T, CallError>>,
    ) -> Result<T, ScalerError> {
        if let Err(left) = CLIENTS.check_backoff(&self.key) {
            return Err(backend(format!(
                "kafka brokers {} are backing off after failures, next attempt in {left:?}",
                self.key.servers
            )));
        }
        // Every step has its own deadline; this is the safety net over the whole read.
        let result = match tokio::time::timeout(timeout + Duration::from_millis(500), read).await {
            Ok(r) => r,
            Err(_) => Err(CallError::Transport(format!(
                "kafka call timed out after {timeout:?}"
            ))),
        };
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
        let read = blocking(timeout, move || {
            client
                .fetch_metadata(topic.as_deref(), timeout)
                .map(|_| ())
                .map_err(|e| {
                    CallError::Transport(format!("cannot reach kafka brokers {servers}: {e}"))
                })
        });
        self.guarded(timeout, read).await
    }

    /// Read committed offsets and high watermarks of the partitions to evaluate (§3.4 steps 1–2).
    pub(crate) async fn fetch_offsets(
        &self,
        topic: Option<&str>,
        limitation: &PartitionLimitation,
        timeout: Duration,
    ) -> Result<Vec<PartitionOffsets>, ScalerError> {
        let deadline = Instant::now() + timeout;
        let cached = topic.and_then(|_| self.cached_partitions());
        let read = match &self.reader {
            GroupReader::Shared(brokers) => {
                let read = self.read_shared(brokers, topic, limitation, cached, deadline);
                self.guarded(timeout, read).await
            }
            GroupReader::Handle(group) => {
                let client = Arc::clone(&self.client.client().consumer);
                let group = Arc::clone(&group.client().consumer);
                let (topic, limitation) = (topic.map(str::to_owned), limitation.clone());
                let read = blocking(timeout, move || {
                    let t = topic.as_deref();
                    reads::read_with_handle(&client, &group, t, &limitation, cached, deadline)
                });
                self.guarded(timeout, read).await
            }
        };
        match read {
            Ok((parts, committed, watermarks)) => {
                if topic.is_some() {
                    self.remember_partitions(&parts);
                }
                join_offsets(&parts, &committed, &watermarks)
            }
            Err(e) => {
                self.remember_partitions(&[]);
                Err(e)
            }
        }
    }

    /// The plaintext path: partitions and watermarks through the shared librdkafka client,
    /// committed offsets over the shared connections, the last two concurrently.
    async fn read_shared(
        &self,
        brokers: &Brokers,
        topic: Option<&str>,
        limitation: &PartitionLimitation,
        cached: Option<Parts>,
        deadline: Instant,
    ) -> Result<Offsets, CallError> {
        let client = &self.client.client().consumer;
        let wire_deadline = tokio::time::Instant::from_std(deadline);
        let (parts, committed) = match (cached, topic) {
            (Some(parts), _) => (parts, None),
            (None, Some(t)) => {
                let (c, t, l) = (Arc::clone(client), t.to_owned(), limitation.clone());
                let read = move || reads::topic_partitions(&c, &t, &l, deadline);
                (blocking(remaining(deadline), read).await?, None)
            }
            (None, None) => {
                let c = Arc::clone(client);
                let read = move || reads::all_partitions(&c, deadline);
                let all = blocking(remaining(deadline), read).await?;
                let committed = brokers.committed(&self.group, &all, wire_deadline).await;
                let committed = committed.map_err(wire_error)?;
                (reads::committed_topics(all, &committed), Some(committed))
            }
        };
        let (c, p) = (Arc::clone(client), parts.clone());
        let watermarks = blocking(remaining(deadline), move || {
            reads::read_watermarks(&c, &p, deadline)
        });
        let (committed, watermarks) = match committed {
            Some(committed) => (committed, watermarks.await?),
            None => {
                let committed = brokers.committed(&self.group, &parts, wire_deadline);
                let (committed, watermarks) = tokio::join!(committed, watermarks);
                (committed.map_err(wire_error)?, watermarks?)
            }
        };
        Ok((parts, committed, watermarks))
    }

    /// The cached partition list, if it is still fresh.
    fn cached_partitions(&self) -> Option<Parts> {
        let cache = self.partitions.lock().ok()?;
        let (read_at, partitions) = cache.as_ref()?;
        (read_at.elapsed() < PARTITIONS_TTL).then(|| partitions.clone())
    }

    /// Cache `parts` as the topic's partitions; an empty list clears the cache.
    fn remember_partitions(&self, parts: &[(String, i32)]) {
        if let Ok(mut cache) = self.partitions.lock() {
            *cache = (!parts.is_empty()).then(|| (Instant::now(), parts.to_vec()));
        }
    }
}

fn backend(message: String) -> ScalerError {
    ScalerError::Backend {
        scaler: TYPE,
        message,
    }
}

fn join_offsets(
    parts: &[(String, i32)],
    committed: &OffsetMap,
    watermarks: &OffsetMap,
) -> Result<Vec<PartitionOffsets>, ScalerError> {
    let mut out = Vec::with_capacity(parts.len());
    for k in parts {
        let Some(&c) = committed.get(k) else {
            return Err(backend(format!(
                "error finding offset block for topic {} and partition {}",
                k.0, k.1
            )));
        };
        out.push(PartitionOffsets {
            topic: k.0.clone(),
            partition: k.1,
            committed: c,
            high_watermark: watermarks.get(k).copied(),
        });
    }
    Ok(out)
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
