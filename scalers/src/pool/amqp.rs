//! One AMQP connection per (URI with host, vhost and credentials; TLS settings), shared by
//! every RabbitMQ trigger that names it, with channels reused between polls.
//!
//! Passive `queue.declare` is how a queue's ready count is read. A missing queue makes the
//! broker close the channel (404 NOT_FOUND), so a channel goes back to the idle list only after
//! a successful declare; a failed one is thrown away and the connection stays up. A broken
//! connection is dropped and re-opened on the next poll, gated by the endpoint's backoff.
//!
//! `amqps` goes through the same rustls setup as the HTTP clients ([`super::http::rustls_config`]:
//! ring, system roots plus `ca`, client certificate, `unsafeSsl`) via a custom lapin transport,
//! because lapin's own TLS options cannot skip verification.

use std::convert::Infallible;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_rs::TokioRuntime;
use lapin::options::QueueDeclareOptions;
use lapin::tcp::{AsyncTcpStream, RustlsConnector};
use lapin::types::FieldTable;
use lapin::uri::{AMQPScheme, AMQPUri};
use lapin::{Channel, Connection, ConnectionProperties};
use tokio::sync::Mutex;

use super::http::{TlsSettings, rustls_config};
use super::{Pool, Shared, effective_timeout, mask_userinfo};

/// At most this many declares run at once on one connection (each on its own channel), and
/// as many idle channels are kept for reuse: a thousand triggers polling together queue up
/// briefly instead of opening a thousand channels.
pub const MAX_CHANNELS: usize = 16;
/// The `connection_name` client property. KEDA names a connection after its ScaledObject; a
/// shared connection serves many, so it carries the product name.
pub const CONNECTION_NAME: &str = "tidescale";

/// Pool key: the full AMQP URI (credentials included, hence never printed) and TLS material.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct AmqpKey {
    /// `amqp[s]://user:pass@host:port/vhost`, already rewritten for `vhostName`/credentials.
    pub uri: String,
    /// TLS settings for `amqps` (the same rustls setup as HTTP clients: CA, client
    /// certificate, `unsafeSsl`).
    pub tls: TlsSettings,
}

impl fmt::Debug for AmqpKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmqpKey")
            .field("uri", &mask_userinfo(&self.uri))
            .field("tls", &self.tls)
            .finish()
    }
}

/// A shared AMQP connection, opened lazily; its backoff is kept by the pool.
pub struct AmqpEndpoint {
    key: AmqpKey,
    tls: Arc<RustlsConnector>,
    state: Mutex<State>,
    in_flight: tokio::sync::Semaphore,
}

#[derive(Default)]
struct State {
    connection: Option<Arc<Connection>>,
    idle: Vec<Channel>,
}

/// Why an AMQP call failed. Messages have credentials masked.
#[derive(Debug, thiserror::Error)]
pub enum AmqpError {
    /// The endpoint failed recently; no attempt was made.
    #[error("endpoint is backing off after failures, next attempt in {0:?}")]
    BackingOff(Duration),
    /// The call did not finish within the timeout.
    #[error("{0} timed out after {1:?}")]
    Timeout(&'static str, Duration),
    /// The broker or the socket reported an error.
    #[error("{0} failed: {1}")]
    Broker(&'static str, String),
}

static POOL: LazyLock<Arc<Pool<AmqpKey, AmqpEndpoint>>> =
    LazyLock::new(|| Arc::new(Pool::with_on_empty(AmqpEndpoint::shut_down)));
static CONNECTS: AtomicU64 = AtomicU64::new(0);

/// The process-wide AMQP pool (for stats).
pub fn pool() -> &'static Arc<Pool<AmqpKey, AmqpEndpoint>> {
    &POOL
}

/// AMQP connections opened so far by this process (successful handshakes).
pub fn connections_opened() -> u64 {
    CONNECTS.load(Ordering::Relaxed)
}

/// AMQP connections currently open across the pool.
pub async fn connections_open() -> usize {
    let mut open = 0;
    for endpoint in POOL.clients() {
        let state = endpoint.state.lock().await;
        open += usize::from(
            state
                .connection
                .as_ref()
                .is_some_and(|c| c.status().connected()),
        );
    }
    open
}

/// Take a share of the endpoint for `key` (no I/O: the connection opens on first use). Fails
/// only when the TLS settings are unusable (bad PEM).
pub fn acquire(key: &AmqpKey) -> Result<Shared<AmqpKey, AmqpEndpoint>, String> {
    POOL.acquire(key, || AmqpEndpoint::new(key))
}

impl AmqpEndpoint {
    fn new(key: &AmqpKey) -> Result<Self, String> {
        let config = rustls_config(&key.tls)?;
        Ok(Self {
            key: key.clone(),
            tls: Arc::new(RustlsConnector::from(Arc::new(config))),
            state: Mutex::new(State::default()),
            in_flight: tokio::sync::Semaphore::new(MAX_CHANNELS),
        })
    }

    /// Make sure the connection is open (KEDA connects at scaler construction).
    pub async fn connect(&self, timeout: Duration) -> Result<(), AmqpError> {
        let deadline = Deadline::after(timeout);
        let mut state = deadline
            .run("connect", async {
                Ok::<_, Infallible>(self.state.lock().await)
            })
            .await?;
        self.connection(&mut state, deadline).await.map(drop)
    }

    /// Passive-declare `queue` and return its ready-message count, all within `timeout`.
    pub async fn message_count(&self, queue: &str, timeout: Duration) -> Result<u32, AmqpError> {
        let deadline = Deadline::after(timeout);
        // The semaphore is never closed, so acquiring can only wait.
        let _permit = deadline
            .run("channel wait", self.in_flight.acquire())
            .await?;
        let channel = self.take_channel(deadline).await?;
        let options = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        let declare = channel.queue_declare(queue.into(), options, FieldTable::default());
        let result = deadline
            .run("queue.declare", declare)
            .await
            .map(|q| q.message_count());
        // Only a channel that just succeeded is known to be open; NOT_FOUND closed the others.
        if result.is_ok() {
            let mut state = self.state.lock().await;
            if state.idle.len() < MAX_CHANNELS {
                state.idle.push(channel);
                return result;
            }
        }
        close_channel(channel).await;
        result
    }

    /// An idle open channel, or a new one on the (re)opened connection.
    async fn take_channel(&self, deadline: Deadline) -> Result<Channel, AmqpError> {
        let mut state = deadline
            .run("channel wait", async {
                Ok::<_, Infallible>(self.state.lock().await)
            })
            .await?;
        while let Some(channel) = state.idle.pop() {
            if channel.status().connected() {
                return Ok(channel);
            }
        }
        let connection = self.connection(&mut state, deadline).await?;
        drop(state);
        let opened = deadline
            .run("channel.open", connection.create_channel())
            .await;
        if opened.is_err() {
            self.forget(&connection).await;
        }
        opened
    }

    /// A connection that reports itself open but cannot open a channel is dead (its I/O task
    /// is gone, e.g. its runtime stopped, or the peer vanished without a close): forget it so
    /// the next call reconnects instead of timing out again and again.
    async fn forget(&self, connection: &Arc<Connection>) {
        let mut state = self.state.lock().await;
        if state
            .connection
            .as_ref()
            .is_some_and(|current| Arc::ptr_eq(current, connection))
        {
            state.connection = None;
            state.idle.clear();
        }
    }

    /// The open connection, re-opening it (within the backoff) when it is gone or broken.
    async fn connection(
        &self,
        state: &mut State,
        deadline: Deadline,
    ) -> Result<Arc<Connection>, AmqpError> {
        if let Some(connection) = &state.connection {
            if connection.status().connected() {
                return Ok(Arc::clone(connection));
            }
            // Broken: forget it and its channels; dropping the last handle closes the socket.
            state.connection = None;
            state.idle.clear();
        }
        POOL.check_backoff(&self.key)
            .map_err(AmqpError::BackingOff)?;
        let properties =
            ConnectionProperties::default().with_connection_name(CONNECTION_NAME.into());
        let uri: AMQPUri = self.key.uri.parse().map_err(|e: String| {
            AmqpError::Broker(
                "connect",
                format!("invalid AMQP URI: {}", mask_userinfo(&e)),
            )
        })?;
        let tls = Arc::clone(&self.tls);
        // lapin's own TLS setup cannot skip verification; this transport uses our rustls config.
        let transport = async move |uri: AMQPUri, runtime: TokioRuntime| {
            let authority = &uri.authority;
            let addrs = runtime.to_socket_addrs((authority.host.clone(), authority.port));
            let stream = AsyncTcpStream::connect(&runtime, addrs).await?;
            Ok(match uri.scheme {
                AMQPScheme::AMQP => stream,
                AMQPScheme::AMQPS => stream.into_rustls(&tls, &authority.host).await?,
            })
        };
        let connect =
            Connection::connector(uri, TokioRuntime::tokio_current(), transport, properties);
        let result = deadline.run("connect", connect).await.map(Arc::new);
        if let Ok(connection) = &result {
            CONNECTS.fetch_add(1, Ordering::Relaxed);
            state.connection = Some(Arc::clone(connection));
        }
        POOL.record(&self.key, result.is_ok());
        result
    }
}

/// One poll's time budget: every step runs until the same instant, so the whole call is
/// bounded by the configured timeout rather than each step separately.
#[derive(Clone, Copy)]
struct Deadline {
    at: tokio::time::Instant,
    timeout: Duration,
}

impl Deadline {
    fn after(timeout: Duration) -> Self {
        let timeout = effective_timeout(timeout);
        Self {
            at: tokio::time::Instant::now() + timeout,
            timeout,
        }
    }

    /// Run `step` until the deadline; errors name the step, with credentials masked.
    async fn run<T, E: fmt::Display>(
        self,
        step: &'static str,
        future: impl Future<Output = Result<T, E>>,
    ) -> Result<T, AmqpError> {
        match tokio::time::timeout_at(self.at, future).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(AmqpError::Broker(step, mask_userinfo(&e.to_string()))),
            Err(_) => Err(AmqpError::Timeout(step, self.timeout)),
        }
    }
}

impl AmqpEndpoint {
    /// The last share is gone: close the connection politely, in the background when a
    /// runtime is there (dropping the last handle closes the socket anyway).
    fn shut_down(endpoint: Arc<Self>) {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let (connection, channels) = {
                    let mut state = endpoint.state.lock().await;
                    (state.connection.take(), std::mem::take(&mut state.idle))
                };
                drop(channels);
                if let Some(connection) = connection {
                    let close = connection.close(200, "tidescale scaler closed".into());
                    let _ = tokio::time::timeout(Duration::from_secs(2), close).await;
                }
            });
        }
    }
}

async fn close_channel(channel: Channel) {
    if channel.status().connected() {
        let close = channel.close(200, "".into());
        // Best effort: the channel is dropped either way.
        let _ = tokio::time::timeout(Duration::from_secs(1), close).await;
    }
}
