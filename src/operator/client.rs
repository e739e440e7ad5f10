//! The Kubernetes client: kube's own layer stack (what `kube::Client::try_from(config)`
//! builds), put together here only to bound its connection pool.
//!
//! Why by hand: kube-rs speaks HTTP/1.1, so every concurrent request holds a connection of
//! its own, and the hyper pool kube builds keeps each connection it ever opened, idle, for
//! 90 s, with no limit per host — and offers no setting for either. A cold start of 10,000
//! ScaledObjects (reconciles, the polls' first status writes and Events at once) opened
//! hundreds of connections with 20–60 KiB of buffers each, still held in steady state: ~2 KiB
//! per object of issue #5's budget of 10 (benches/operator_scale.rs). Here an idle connection
//! is closed after [`IDLE_TIMEOUT`], and at most [`MAX_IDLE_CONNECTIONS`] stay open.
//!
//! The same layers as kube's builder, in the same order: base URI, retry of the API server's
//! 429/503/504 answers (when `config.default_retry`), authentication (token refresh
//! included), extra headers (impersonation), and the connector's connect/read/write timeouts.
//! Left out: kube's debug-level HTTP tracing spans, and proxies and gzip (kube features this
//! crate does not enable).

use std::time::Duration;

use hyper_timeout::TimeoutConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use kube::client::ConfigExt;
use kube::client::retry::RetryPolicy;
use tower::retry::RetryLayer;
use tower::{BoxError, ServiceBuilder};

/// Idle connections the pool keeps to the API server: as many as the operator sends requests
/// at once (watches aside, which hold theirs while open), so a burst reuses its connections
/// instead of opening new ones, a TLS handshake each (closing all beyond 16 made a cold start
/// of 10,000 objects take 23 s instead of 6).
pub const MAX_IDLE_CONNECTIONS: usize = crate::telemetry::api_requests::MAX_REQUESTS_IN_FLIGHT;

/// How long an idle connection is kept for reuse: past a burst, the connections it needed go.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// A client for `config` (see the module docs for how it differs from kube's default).
pub fn from_config(config: kube::Config) -> kube::Result<kube::Client> {
    let mut connector = TimeoutConnector::new(config.rustls_https_connector()?);
    connector.set_connect_timeout(config.connect_timeout);
    connector.set_read_timeout(config.read_timeout);
    connector.set_write_timeout(config.write_timeout);
    connector.set_reset_reader_on_write(config.reset_reader_on_write);
    let pool = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(MAX_IDLE_CONNECTIONS)
        .pool_idle_timeout(IDLE_TIMEOUT)
        // Without a timer the pool closes an expired connection only when it looks for one
        // to reuse, and after a burst it never does.
        .pool_timer(TokioTimer::new())
        .build(connector);
    let retry = config
        .default_retry
        .then(|| RetryLayer::new(RetryPolicy::server_retry()));
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(retry)
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(BoxError::from)
        .service(pool);
    Ok(kube::Client::new(service, config.default_namespace))
}

/// A client from the environment (in-cluster service account, else `KUBECONFIG` or
/// `~/.kube/config`), as `kube::Client::try_default` finds it.
pub async fn infer() -> anyhow::Result<kube::Client> {
    let config = kube::Config::infer()
        .await
        .map_err(|e| anyhow::anyhow!("finding the Kubernetes API: {e}"))?;
    from_config(config).map_err(|e| anyhow::anyhow!("connecting to the Kubernetes API: {e}"))
}
