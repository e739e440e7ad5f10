//! Shared broker connections for committed offsets: OffsetFetch for ANY consumer group over
//! one TCP connection per broker per (bootstrap servers, security settings).
//!
//! Why: librdkafka binds a consumer group to a handle (`group.id`) and rdkafka 0.39 has no
//! ListConsumerGroupOffsets, so reading a group's offsets through rdkafka costs one librdkafka
//! instance (threads, buffers, a connection per broker) per distinct group — KEDA's per-trigger
//! client problem again. OffsetFetch itself names the group in the request, so one connection
//! to the group's coordinator serves every group. [`Brokers`] is that connection manager:
//!
//! * FindCoordinator (v2) on a bootstrap server, answer cached per group and forgotten on
//!   NOT_COORDINATOR / COORDINATOR_NOT_AVAILABLE or a transport failure; then OffsetFetch (v4)
//!   to the coordinator (one retry after a coordinator move).
//! * Connections are keyed by `host:port` as the brokers advertise them (the bootstrap list
//!   should use the same spelling, as it does on the mock cluster and usually in Kubernetes).
//! * One request at a time per connection: the connection is taken out of its slot for the
//!   exchange and put back only after a complete, matching answer. A timeout, an I/O error,
//!   a wrong correlation id or an oversized answer drops it (closing the socket), so a
//!   connection never carries half a response into the next request; the next call reconnects.
//! * Every step (waiting for the slot, connect, write, read) is bounded by the poll's deadline.
//!
//! * SASL PLAIN and SCRAM-SHA-256/512 (`sasl.rs`) authenticate each connection once, right
//!   after ApiVersions, so SASL triggers share connections exactly as plaintext ones do.
//! * TLS (`tls=enable`, with or without SASL) wraps each socket in tokio-rustls (ring provider)
//!   before the first request: the rustls config is built once per client (`client.rs`, from
//!   `ca`/`cert`/`key`/`keyPassword`/`unsafeSsl` via `pool::http::rustls_config`), SNI and
//!   certificate name checks use the broker host as advertised, and the TCP connect plus the
//!   handshake are bounded by the same deadline as every other step. A handshake failure is a
//!   [`WireError::Tls`] naming the broker and rustls' reason, never any key material.
//!
//! OAUTHBEARER/GSSAPI triggers, and TLS settings rustls cannot load (e.g. a legacy encrypted
//! PEM key), keep the per-group librdkafka handle (`client.rs`).

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::rustls::pki_types::ServerName;

use super::sasl::{self, Mechanism, SaslAuth, Scram};
use super::wire::{self, Committed, MAX_RESPONSE, WireError};
use crate::pool::lock;

/// Coordinator addresses remembered per client before the cache starts over.
const MAX_CACHED_COORDINATORS: usize = 16_384;

/// Connection counters of one [`Brokers`].
#[derive(Debug, Default)]
struct Counters {
    open: AtomicUsize,
    opened: AtomicU64,
}

/// A broker socket: plain TCP, or TCP wrapped in TLS.
enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The TLS side of a [`Brokers`]: the connector, built once per client.
#[derive(Clone)]
pub(crate) struct Tls(TlsConnector);

impl Tls {
    pub(crate) fn new(config: ClientConfig) -> Self {
        Self(TlsConnector::from(Arc::new(config)))
    }
}

/// The host of `host:port` (IPv6 literals in brackets), for SNI and certificate checks.
fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// One open broker connection. Dropping it closes the socket and updates the counters.
struct Conn {
    addr: String,
    stream: Stream,
    next_id: i32,
    counters: Arc<Counters>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.counters.open.fetch_sub(1, Ordering::Relaxed);
    }
}

type Slot = Arc<tokio::sync::Mutex<Option<Conn>>>;

/// The shared connections of one (bootstrap servers, security settings) key.
pub(crate) struct Brokers {
    bootstrap: Vec<String>,
    slots: Mutex<HashMap<String, Slot>>,
    coordinators: Mutex<HashMap<String, String>>,
    counters: Arc<Counters>,
    /// SASL credentials every new connection authenticates with.
    sasl: Option<SaslAuth>,
    /// TLS every new connection is wrapped in.
    tls: Option<Tls>,
}

impl std::fmt::Debug for Brokers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Brokers")
            .field("bootstrap", &self.bootstrap)
            .field("tls", &self.tls.is_some())
            .field("sasl", &self.sasl.as_ref().map(|a| a.mechanism))
            .field("open", &self.open_connections())
            .finish()
    }
}

impl Brokers {
    /// Connection manager for the comma-separated `servers`, authenticating with `sasl`;
    /// connects lazily.
    pub(crate) fn new(servers: &str, sasl: Option<SaslAuth>) -> Self {
        Self {
            bootstrap: servers
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            slots: Mutex::new(HashMap::new()),
            coordinators: Mutex::new(HashMap::new()),
            counters: Arc::new(Counters::default()),
            sasl,
            tls: None,
        }
    }

    /// Wrap every connection in TLS with `tls`.
    pub(crate) fn with_tls(mut self, tls: Tls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// TCP connections open right now.
    pub(crate) fn open_connections(&self) -> usize {
        self.counters.open.load(Ordering::Relaxed)
    }

    /// TCP connections opened since this manager was created.
    pub(crate) fn connections_opened(&self) -> u64 {
        self.counters.opened.load(Ordering::Relaxed)
    }

    /// Committed offsets of `group` for `partitions` (−1 where nothing is committed).
    pub(crate) async fn committed(
        &self,
        group: &str,
        partitions: &[(String, i32)],
        deadline: Instant,
    ) -> Result<Committed, WireError> {
        if partitions.is_empty() {
            return Ok(Committed::new());
        }
        let body = wire::offset_fetch_request(group, partitions)?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let addr = self.coordinator(group, deadline).await?;
            let reply = self
                .call(&addr, wire::OFFSET_FETCH, 4, &body, deadline)
                .await
                .and_then(|reply| wire::decode_offset_fetch(&reply));
            match reply {
                Err(WireError::Kafka { code: 15 | 16, .. }) if attempt == 1 => {
                    self.forget_coordinator(group);
                }
                Err(e) => {
                    if e.is_transport() {
                        self.forget_coordinator(group);
                    }
                    return Err(e);
                }
                Ok(committed) => return Ok(committed),
            }
        }
    }

    fn forget_coordinator(&self, group: &str) {
        lock(&self.coordinators).remove(group);
    }

    /// The coordinator of `group`, cached, else asked of the bootstrap servers in turn.
    async fn coordinator(&self, group: &str, deadline: Instant) -> Result<String, WireError> {
        if let Some(addr) = lock(&self.coordinators).get(group) {
            return Ok(addr.clone());
        }
        let body = wire::find_coordinator_request(group)?;
        let mut last = WireError::NoBrokers;
        for server in &self.bootstrap {
            match self
                .call(server, wire::FIND_COORDINATOR, 2, &body, deadline)
                .await
            {
                Ok(reply) => {
                    let addr = wire::decode_find_coordinator(&reply)?;
                    let mut cache = lock(&self.coordinators);
                    // Groups of deleted triggers stay cached; a bound keeps churn from growing
                    // the map forever (a cleared entry costs one FindCoordinator).
                    if cache.len() >= MAX_CACHED_COORDINATORS {
                        cache.clear();
                    }
                    cache.insert(group.to_owned(), addr.clone());
                    return Ok(addr);
                }
                Err(e) if e.is_transport() => last = e,
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }

    fn slot(&self, addr: &str) -> Slot {
        Arc::clone(lock(&self.slots).entry(addr.to_owned()).or_default())
    }

    /// One request/response exchange with `addr` over its shared connection.
    async fn call(
        &self,
        addr: &str,
        api_key: i16,
        version: i16,
        body: &[u8],
        deadline: Instant,
    ) -> Result<Vec<u8>, WireError> {
        let slot = self.slot(addr);
        let mut guard = timeout_at(deadline, slot.lock())
            .await
            .map_err(|_| timed_out(addr))?;
        let mut conn = match guard.take() {
            Some(conn) => conn,
            None => {
                let security = (self.sasl.as_ref(), self.tls.as_ref());
                Conn::open(addr, &self.counters, security, deadline).await?
            }
        };
        // On error (or if this future is dropped) `conn` is dropped here: the socket closes.
        let reply = conn.round_trip(api_key, version, body, deadline).await?;
        *guard = Some(conn);
        Ok(reply)
    }
}

fn timed_out(addr: &str) -> WireError {
    WireError::Timeout {
        addr: addr.to_owned(),
    }
}

impl Conn {
    /// Connect (and shake hands, with TLS), then check the broker supports the versions this
    /// path sends and authenticate (with SASL).
    async fn open(
        addr: &str,
        counters: &Arc<Counters>,
        (auth, tls): (Option<&SaslAuth>, Option<&Tls>),
        deadline: Instant,
    ) -> Result<Self, WireError> {
        let tcp = timeout_at(deadline, TcpStream::connect(addr))
            .await
            .map_err(|_| timed_out(addr))?
            .map_err(|source| WireError::Io {
                addr: addr.to_owned(),
                source,
            })?;
        // Best effort: a request is one small write, Nagle would only delay it.
        let _ = tcp.set_nodelay(true);
        let stream = match tls {
            None => Stream::Plain(tcp),
            Some(tls) => Stream::Tls(Box::new(handshake(addr, tls, tcp, deadline).await?)),
        };
        counters.open.fetch_add(1, Ordering::Relaxed);
        counters.opened.fetch_add(1, Ordering::Relaxed);
        let mut conn = Self {
            addr: addr.to_owned(),
            stream,
            next_id: 0,
            counters: Arc::clone(counters),
        };
        let reply = conn
            .round_trip(wire::API_VERSIONS, 0, &[], deadline)
            .await?;
        let ranges = wire::decode_api_versions(&reply)?;
        let sasl_apis = [
            (sasl::SASL_HANDSHAKE, "SaslHandshake", 1),
            (sasl::SASL_AUTHENTICATE, "SaslAuthenticate", 0),
        ];
        let needed = wire::REQUIRED
            .into_iter()
            .chain(auth.into_iter().flat_map(|_| sasl_apis));
        for (key, api, version) in needed {
            if !ranges
                .iter()
                .any(|r| r.key == key && r.min <= version && version <= r.max)
            {
                return Err(WireError::Unsupported {
                    addr: addr.to_owned(),
                    api,
                    version,
                });
            }
        }
        if let Some(auth) = auth {
            conn.authenticate(auth, deadline).await?;
        }
        Ok(conn)
    }

    /// SaslHandshake, then the mechanism's SaslAuthenticate exchanges.
    async fn authenticate(&mut self, auth: &SaslAuth, deadline: Instant) -> Result<(), WireError> {
        let addr = self.addr.clone();
        let fail = |reason: String| WireError::Sasl {
            addr: addr.clone(),
            mechanism: auth.mechanism.name(),
            reason,
        };
        let request = sasl::handshake_request(auth.mechanism)?;
        let reply = self
            .round_trip(sasl::SASL_HANDSHAKE, 1, &request, deadline)
            .await?;
        sasl::decode_handshake(&reply)?;
        if auth.mechanism == Mechanism::Plain {
            self.sasl_step(auth, &sasl::plain_message(auth), deadline)
                .await?;
            return Ok(());
        }
        let (mut scram, first) = Scram::start(auth, sasl::client_nonce().map_err(fail)?);
        let server_first = self.sasl_step(auth, first.as_bytes(), deadline).await?;
        let server_first = String::from_utf8(server_first)
            .map_err(|_| fail("server-first message is not UTF-8".into()))?;
        let last = scram.client_final(&server_first).map_err(fail)?;
        let server_final = self.sasl_step(auth, last.as_bytes(), deadline).await?;
        scram
            .verify(&String::from_utf8_lossy(&server_final))
            .map_err(fail)
    }

    /// One SaslAuthenticate v0 exchange; a broker error becomes [`WireError::Sasl`].
    async fn sasl_step(
        &mut self,
        auth: &SaslAuth,
        bytes: &[u8],
        deadline: Instant,
    ) -> Result<Vec<u8>, WireError> {
        let request = sasl::authenticate_request(bytes)?;
        let reply = self
            .round_trip(sasl::SASL_AUTHENTICATE, 0, &request, deadline)
            .await?;
        sasl::decode_authenticate(&reply)?.map_err(|code| WireError::Sasl {
            addr: self.addr.clone(),
            mechanism: auth.mechanism.name(),
            reason: wire::error_name(code),
        })
    }

    /// Send one request and read its answer (the body after the correlation id).
    async fn round_trip(
        &mut self,
        api_key: i16,
        version: i16,
        body: &[u8],
        deadline: Instant,
    ) -> Result<Vec<u8>, WireError> {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1) & i32::MAX;
        let request = wire::frame(api_key, version, id, body)?;
        let addr = self.addr.clone();
        let mut reply = timeout_at(deadline, self.exchange(&request))
            .await
            .map_err(|_| timed_out(&addr))??;
        let mut r = wire::Reader::new(&reply);
        let got = r.i32("correlation id")?;
        if got != id {
            return Err(WireError::Correlation { want: id, got });
        }
        Ok(reply.split_off(4))
    }

    /// Write `request`, read one size-prefixed answer of at most [`MAX_RESPONSE`] bytes.
    async fn exchange(&mut self, request: &[u8]) -> Result<Vec<u8>, WireError> {
        let io = |source| WireError::Io {
            addr: self.addr.clone(),
            source,
        };
        self.stream.write_all(request).await.map_err(io)?;
        // TLS may hold the last record back until flushed (a no-op on plain TCP).
        self.stream.flush().await.map_err(io)?;
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size).await.map_err(io)?;
        let size = i32::from_be_bytes(size);
        let len = usize::try_from(size)
            .ok()
            .filter(|n| (4..=MAX_RESPONSE).contains(n))
            .ok_or(WireError::TooLarge(i64::from(size)))?;
        let mut reply = vec![0u8; len];
        self.stream.read_exact(&mut reply).await.map_err(io)?;
        Ok(reply)
    }
}

/// The TLS handshake on a connected socket, bounded by `deadline`. SNI and the certificate
/// name check use the broker's host as written in `addr`.
async fn handshake(
    addr: &str,
    tls: &Tls,
    tcp: TcpStream,
    deadline: Instant,
) -> Result<TlsStream<TcpStream>, WireError> {
    let fail = |reason: String| WireError::Tls {
        addr: addr.to_owned(),
        reason,
    };
    let name = ServerName::try_from(host_of(addr).to_owned())
        .map_err(|_| fail("the broker host is not a valid TLS server name".into()))?;
    timeout_at(deadline, tls.0.connect(name, tcp))
        .await
        .map_err(|_| timed_out(addr))?
        // rustls' reason (e.g. "invalid peer certificate: UnknownIssuer") names no secret.
        .map_err(|e| fail(e.to_string()))
}

#[cfg(test)]
#[path = "conn_sasl_tests.rs"]
mod sasl_tests;

#[cfg(test)]
#[path = "conn_tls_tests.rs"]
mod tls_tests;

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::net::TcpListener;

    use super::*;

    /// A fake broker that answers every request with `reply` (raw bytes, size prefix included).
    async fn fake_broker(reply: Vec<u8>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let reply = reply.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    while s.read(&mut buf).await.is_ok_and(|n| n > 0) {
                        if s.write_all(&reply).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    async fn committed_from(reply: Vec<u8>) -> Result<Committed, WireError> {
        let addr = fake_broker(reply).await;
        let b = Brokers::new(&addr, None);
        let deadline = Instant::now() + Duration::from_millis(500);
        let out = b.committed("g", &[("t".into(), 0)], deadline).await;
        assert_eq!(
            b.open_connections(),
            0,
            "a failed exchange closes its connection"
        );
        out
    }

    #[tokio::test]
    async fn oversized_answer_is_an_error_and_closes_the_connection() {
        let mut reply = i32::MAX.to_be_bytes().to_vec();
        reply.extend_from_slice(&[0; 16]);
        let err = committed_from(reply).await.unwrap_err();
        assert!(matches!(err, WireError::TooLarge(_)), "{err}");
    }

    #[tokio::test]
    async fn wrong_correlation_id_is_an_error() {
        let mut reply = 8i32.to_be_bytes().to_vec();
        reply.extend_from_slice(&[0, 0, 0, 42, 0, 0, 0, 0]);
        let err = committed_from(reply).await.unwrap_err();
        assert!(matches!(err, WireError::Correlation { .. }), "{err}");
    }

    #[tokio::test]
    async fn broker_without_the_needed_versions_is_refused() {
        // ApiVersions v0 answer with correlation id 0, no error and an empty API list.
        let mut reply = 10i32.to_be_bytes().to_vec();
        reply.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        let err = committed_from(reply).await.unwrap_err();
        assert!(
            err.to_string()
                .contains("does not support FindCoordinator v2"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn silent_broker_times_out_at_the_deadline() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let b = Brokers::new(&addr, None);
        let start = Instant::now();
        let deadline = start + Duration::from_millis(300);
        let err = b.committed("g", &[("t".into(), 0)], deadline).await;
        assert!(matches!(err, Err(WireError::Timeout { .. })), "{err:?}");
        assert!(start.elapsed() < Duration::from_millis(600));
        assert_eq!(b.open_connections(), 0);
        drop(listener);
    }
}
