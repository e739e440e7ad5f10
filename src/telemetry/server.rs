//! The operator's plain-HTTP endpoints: `/metrics` for Prometheus, `/healthz` and `/readyz`
//! for the kubelet.
//!
//! KEDA serves metrics on `:8080` and the probes on `:8081` (`--metrics-bind-address`,
//! `--health-probe-bind-address`). [`router`] carries all three routes, so calling [`serve`]
//! once per address reproduces that layout, and one address is enough in tests. Readiness is a
//! flag the operator raises once its watches have synced: until then the kubelet keeps the pod
//! out of Services and a rolling update waits, while liveness stays green.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use tracing::{info, warn};

use super::metrics::{CONTENT_TYPE, Metrics};

/// Upper bound of one request; a scrape only encodes in-memory values.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether the operator is ready to serve; cloned into whoever decides. Starts not ready.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// A handle that reports not ready until [`Readiness::set_ready`].
    pub fn new() -> Self {
        Self::default()
    }

    /// From now on `/readyz` answers 200.
    pub fn set_ready(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// From now on `/readyz` answers 503 again (e.g. while shutting down).
    pub fn set_not_ready(&self) {
        self.0.store(false, Ordering::Release);
    }

    /// Whether [`Readiness::set_ready`] was called (and not undone).
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// What the handlers read.
#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    readiness: Readiness,
}

/// The routes `/metrics`, `/healthz` and `/readyz`, with tracing and a request timeout.
pub fn router(metrics: Arc<Metrics>, readiness: Readiness) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(TraceLayer::new_for_http())
        .with_state(AppState { metrics, readiness })
}

async fn metrics_handler(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        state.metrics.render(),
    )
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<AppState>) -> (StatusCode, &'static str) {
    if state.readiness.is_ready() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

/// A running telemetry server.
#[derive(Debug)]
pub struct TelemetryServer {
    local_addr: SocketAddr,
    task: JoinHandle<()>,
}

impl TelemetryServer {
    /// The address actually bound (the real port when asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Waits until the server has drained after the shutdown token fired.
    pub async fn stopped(self) {
        if let Err(error) = self.task.await {
            warn!(error = %error, "telemetry server task failed");
        }
    }
}

/// Binds `addr` (port 0 picks a free port) and serves [`router`] on it in a background task
/// until `shutdown` fires, then finishes in-flight requests. Fails only if binding fails.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> anyhow::Result<TelemetryServer> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("binding the telemetry server to {addr}: {e}"))?;
    let local_addr = listener.local_addr()?;
    let app = router(metrics, readiness);
    let task = tokio::spawn(async move {
        info!(address = %local_addr, "telemetry server started");
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
        if let Err(error) = served {
            warn!(address = %local_addr, error = %error, "telemetry server failed");
        }
        info!(address = %local_addr, "telemetry server stopped");
    });
    Ok(TelemetryServer { local_addr, task })
}
