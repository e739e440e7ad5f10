//! The Kafka scaler's pooled clients and the offset reads of spec §3.4 steps 1–2.
//!
//! Per (bootstrap servers, security settings) the pool holds ONE shared entry: a group-less
//! librdkafka client (metadata and high watermarks, see `reads.rs`) and, for plaintext, SASL
//! PLAIN/SCRAM-SHA-256/SCRAM-SHA-512 (`sasl.rs`) and TLS with or without those (tokio-rustls,
//! `conn.rs`), the shared broker connections of `conn.rs`, which read committed offsets of ANY
//! consumer group with OffsetFetch. So 1,000 triggers with 1,000 distinct groups cost one
//! librdkafka instance and one connection per broker for offsets, not 1,001 instances.
//!
//! The pool key holds every security property (CA, client certificate and key, passwords), so
//! triggers with different TLS material never share a client; its `Debug` shows property
//! names and short SHA-256 fingerprints of the CA and certificate, never values.
//!
//! OAUTHBEARER and GSSAPI triggers, and TLS material rustls cannot load (a key encrypted other
//! than as PKCS#8, which OpenSSL still reads), keep the older path: committed offsets through
//! a librdkafka handle whose `group.id` is the group (it never subscribes, it only sends
//! OffsetFetch), one per distinct group, reference counted in a second pool.
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
use super::conn::Tls;
use super::lag::PartitionOffsets;
use super::params::PartitionLimitation;
use super::reads::{self, CallError, OffsetMap, Offsets, Parts, blocking, remaining};
use super::sasl::{Mechanism, SaslAuth};
use super::wire::WireError;
use crate::ScalerError;
use crate::pool::http::{TlsSettings, rustls_config};
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

    /// `Some` when the raw-protocol offset path can serve this key: no SASL or SASL
    /// PLAIN/SCRAM (whose credentials it returns), with or without TLS (whose settings it
    /// returns). Any other property (OAUTHBEARER, GSSAPI) means `None`.
    fn shared_security(&self) -> Option<SharedSecurity> {
        let mut protocol = None;
        let (mut mechanism, mut username, mut password) = (None, None, None);
        let mut tls = TlsSettings::default();
        let text = |v: &SecretString| Some(v.expose_secret().to_owned());
        for (k, v) in &self.props {
            match *k {
                "security.protocol" => protocol = Some(v.expose_secret()),
                "sasl.mechanism" => {
                    mechanism = Some(Mechanism::from_librdkafka(v.expose_secret())?);
                }
                "sasl.username" => username = Some(v.clone()),
                "sasl.password" => password = Some(v.clone()),
                "ssl.ca.pem" => tls.ca = text(v),
                "ssl.certificate.pem" => tls.cert = text(v),
                "ssl.key.pem" => tls.key = text(v),
                "ssl.key.password" => tls.key_password = text(v),
                "enable.ssl.certificate.verification" => {
                    tls.unsafe_ssl = v.expose_secret() == "false";
                }
                // Always set together with the line above (`unsafeSsl`).
                "ssl.endpoint.identification.algorithm" => {}
                _ => return None,
            }
        }
        let (with_tls, with_sasl) = match protocol? {
            "plaintext" => (false, false),
            "sasl_plaintext" => (false, true),
            "ssl" => (true, false),
            "sasl_ssl" => (true, true),
            _ => return None,
        };
        let sasl = match (with_sasl, mechanism, username, password) {
            (false, None, None, None) => None,
            (true, Some(mechanism), Some(username), Some(password)) => Some(SaslAuth {
                mechanism,
                username,
                password,
            }),
            _ => return None,
        };
        if !with_tls && tls != TlsSettings::default() {
            return None;
        }
        Some(SharedSecurity {
            sasl,
            tls: with_tls.then_some(tls),
        })
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

/// What the shared offset connections of a key need: SASL credentials and TLS settings.
struct SharedSecurity {
    sasl: Option<SaslAuth>,
    tls: Option<TlsSettings>,
}

/// A short SHA-256 fingerprint of a public PEM (CA, certificate), to tell keys apart in logs.
fn fingerprint(pem: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, pem.as_bytes());
    digest.as_ref()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl std::fmt::Debug for ClientKey {
    // Property values may be secrets: names only, plus fingerprints of the public PEMs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let props: Vec<String> = self
            .props
            .iter()
            .map(|(k, v)| match *k {
                "ssl.ca.pem" | "ssl.certificate.pem" => {
                    format!("{k}=sha256:{}", fingerprint(v.expose_secret()))
                }
                _ => (*k).to_owned(),
            })
            .collect();
        f.debug_struct("ClientKey")
            .field("servers", &self.servers)
            .field("props", &props)
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
/// Group-bound handles of OAUTHBEARER triggers (and TLS keys rustls cannot load): one per
/// (servers, security settings, group).
static GROUPS: LazyLock<Arc<Pool<GroupKey, Handle>>> = LazyLock::new(|| Arc::new(Pool::new()));

/// Counters of the Kafka pools for one `bootstrap.servers` string, for tests and telemetry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Shared group-less clients (one per distinct security setting).
    pub clients: usize,
    /// Group-bound librdkafka handles (OAUTHBEARER, unloadable TLS keys: one per group).
    pub group_handles: usize,
    /// Open connections of the shared committed-offset path (plaintext, SASL, TLS).
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
    /// Shared connections of the trigger's client (plaintext or TLS, SASL PLAIN/SCRAM or none).
    Shared(Arc<Brokers>),
    /// A librdkafka handle bound to the group (OAUTHBEARER, GSSAPI, TLS rustls cannot load).
    Handle(Shared<GroupKey, Handle>),
}

/// One trigger's share of a pooled client (and, off the shared path, of a group handle).
/// Released on [`Lease::release`] or drop, whichever comes first.
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
    let brokers = match group {
        None => shared_brokers(key),
        Some(_) => None,
    };
    Ok(Handle {
        consumer: Arc::new(consumer),
        servers: key.servers.clone(),
        brokers,
    })
}

/// The shared offset connections for `key`, if the raw path can serve it. TLS material that
/// librdkafka accepted (it has already built its client) but rustls cannot load keeps the
/// per-group librdkafka path; the reason names the parameter, never its value.
pub(super) fn shared_brokers(key: &ClientKey) -> Option<Arc<Brokers>> {
    let security = key.shared_security()?;
    let brokers = Brokers::new(&key.servers, security.sasl);
    let brokers = match security.tls {
        None => brokers,
        Some(tls) => match rustls_config(&tls) {
            Ok(config) => brokers.with_tls(Tls::new(config)),
            Err(reason) => {
                tracing::info!(
                    servers = %key.servers,
                    %reason,
                    "kafka: TLS settings not usable by the shared offset connections; \
                     reading committed offsets with one librdkafka handle per consumer group"
                );
                return None;
            }
        },
    };
    Some(Arc::new(brokers))
}

/// Take a share of the client for `key` (and, off the shared path, of the handle for `group`),
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

    /// The shared path: partitions and watermarks through the shared librdkafka client,
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
