//! Sample queue consumers for tidescale's docs and demo: one small worker per design-card
//! backend (RabbitMQ over `lapin`, Kafka over `rdkafka`, Azure Service Bus over its REST API).
//!
//! Each worker reads its settings from the environment, takes one message at a time, simulates
//! `WORK_MS` of work, then acknowledges it (ack, offset commit, delete). On SIGTERM or Ctrl-C it
//! stops taking messages, finishes and acknowledges the one in hand, and exits 0, so scaling in
//! never loses or duplicates work that was already done. Logs go to stderr through `tracing`
//! (`RUST_LOG` filters, `LOG_FORMAT=json` for JSON lines).

pub mod kafka;
pub mod rabbitmq;
pub mod servicebus;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

/// Settings every worker shares.
#[derive(Debug, Clone)]
pub struct Common {
    /// Simulated processing time per message (`WORK_MS`, default 500).
    pub work: Duration,
}

impl Common {
    /// Read `WORK_MS` from the environment.
    pub fn from_env() -> anyhow::Result<Self> {
        let work_ms: u64 = env_parse("WORK_MS", 500)?;
        Ok(Self {
            work: Duration::from_millis(work_ms),
        })
    }
}

/// How many messages a worker has processed and acknowledged; cheap to clone and read from
/// another task (the tests watch it).
#[derive(Debug, Clone, Default)]
pub struct Progress(Arc<AtomicU64>);

impl Progress {
    /// Messages acknowledged so far.
    pub fn processed(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    fn done(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// The required variable `name`, trimmed; an error naming it when unset or empty.
pub fn env_required(name: &str) -> anyhow::Result<String> {
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => Ok(value.trim().to_owned()),
        _ => anyhow::bail!("environment variable {name} is required but not set"),
    }
}

/// The variable `name`, or `default` when unset or empty.
pub fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .map_or_else(|| default.to_owned(), |v| v.trim().to_owned())
}

/// The variable `name` parsed as `T`, or `default` when unset; an error naming it when it
/// does not parse.
pub fn env_parse<T>(name: &str, default: T) -> anyhow::Result<T>
where
    T: std::str::FromStr,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => value
            .trim()
            .parse()
            .with_context(|| format!("environment variable {name}={value:?} is not valid")),
        _ => Ok(default),
    }
}

/// Install the log subscriber: `RUST_LOG` (default `info`), plain text or `LOG_FORMAT=json`.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if env_or("LOG_FORMAT", "plain") == "json" {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}

/// A token cancelled on SIGTERM (what the kubelet sends on scale-in) or Ctrl-C.
pub fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested: finishing the message in hand");
        cancel.cancel();
    });
    token
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the worker");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}

/// The simulated work: sleep for `work`. Deliberately not cancelled by shutdown, so a message
/// that was started is finished and acknowledged.
pub async fn simulate_work(work: Duration) {
    tokio::time::sleep(work).await;
}

/// Install rustls' ring provider (the workspace's only one) before any TLS client is built.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Run a worker's `main`: logging, crypto provider, signals, then `run`; errors are printed
/// once with their chain and the process exits 1.
pub fn main_with<F, Fut>(name: &str, run: F) -> std::process::ExitCode
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    init_logging();
    install_crypto_provider();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("{name}: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let shutdown = shutdown_on_signals();
        run(shutdown).await
    });
    match result {
        Ok(()) => {
            tracing::info!("{name} stopped");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!("{name}: {e:#}");
            eprintln!("{name}: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
