//! What the three backends share: the timeout of every network call, the scaler config and
//! poll, service addresses from env, and the connection snapshot each backend reports.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use tidescale_scalers::{Scaler, ScalerConfig};

/// Upper bound of every network call the bench makes, raw or through a scaler (KEDA's default
/// HTTP timeout, as the scalers use).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// An env var, or `default` when it is unset or blank.
pub fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// Run `future` within [`CALL_TIMEOUT`]; a timeout is an error naming `what`.
pub async fn timed<T, E>(what: &str, future: impl Future<Output = Result<T, E>>) -> Result<T>
where
    E: std::error::Error + Send + Sync + 'static,
{
    tokio::time::timeout(CALL_TIMEOUT, future)
        .await
        .map_err(|_| anyhow!("{what} timed out after {CALL_TIMEOUT:?}"))?
        .with_context(|| format!("{what} failed"))
}

/// The config of one trigger, as the operator would hand it to `build_scaler`.
pub fn scaler_config(trigger_type: &str, metadata: &[(&str, &str)]) -> ScalerConfig {
    ScalerConfig {
        namespace: "bench".into(),
        name: "scaler-overhead".into(),
        trigger_type: trigger_type.into(),
        metadata: metadata
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        timeout: CALL_TIMEOUT,
        ..ScalerConfig::default()
    }
}

/// Build a scaler and return it with the name of its (only) metric.
pub async fn build(cfg: &ScalerConfig) -> Result<(Box<dyn Scaler>, String)> {
    let scaler = tidescale_scalers::build_scaler(cfg)
        .await
        .with_context(|| format!("building the {} scaler", cfg.trigger_type))?;
    let metric = scaler
        .metric_specs()
        .first()
        .map(|s| s.metric_name.clone())
        .ok_or_else(|| anyhow!("the {} scaler exposes no metric", cfg.trigger_type))?;
    Ok((scaler, metric))
}

/// One poll through the scaler abstraction: the first value it reports.
pub async fn poll(scaler: &dyn Scaler, metric: &str) -> Result<f64> {
    let m = scaler.metrics_and_activity(metric).await?;
    m.values
        .first()
        .copied()
        .ok_or_else(|| anyhow!("{} scaler returned no value", scaler.scaler_type()))
}

/// The connections of this process to one backend at one instant.
#[derive(Debug, Clone, Default)]
pub struct ConnSnapshot {
    /// Local ports of this process's established TCP connections to the backend (the raw
    /// client's and the scaler pool's together).
    pub sockets: BTreeSet<u16>,
    /// Backend-specific counters (scaler pool stats, the broker's own view).
    pub detail: BTreeMap<&'static str, u64>,
}
