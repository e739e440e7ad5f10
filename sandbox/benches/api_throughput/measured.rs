//! One measured scenario (a row of the table) and the helper that times concurrent requests.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::StreamExt;
use serde_json::{Value, json};

use crate::fixture::REQUEST_TIMEOUT;
use crate::stats::{Latency, ms, rate};

/// Which client path a row measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// kube-rs over the sandbox's HTTPS listener.
    Http,
    /// The in-process `Store` API.
    InProcess,
}

impl Path {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "kube-rs/HTTPS",
            Self::InProcess => "in-process Store",
        }
    }
}

/// The figures of one scenario.
#[derive(Debug, Clone)]
pub struct Measured {
    /// `create`, `list (full)`, …
    pub scenario: &'static str,
    pub path: Path,
    /// Requests (or store calls) made.
    pub ops: usize,
    /// Objects written or returned.
    pub objects: usize,
    /// Wall time of all ops.
    pub elapsed: Duration,
    /// Per-op latency.
    pub latency: Option<Latency>,
}

impl Measured {
    pub fn ops_per_s(&self) -> f64 {
        rate(self.ops, self.elapsed)
    }

    pub fn objects_per_s(&self) -> f64 {
        rate(self.objects, self.elapsed)
    }

    pub fn json(&self) -> Value {
        json!({
            "scenario": self.scenario,
            "path": self.path.as_str(),
            "ops": self.ops,
            "objects": self.objects,
            "elapsed_ms": ms(self.elapsed),
            "ops_per_s": self.ops_per_s(),
            "objects_per_s": self.objects_per_s(),
            "latency": self.latency.map(|l| l.json()),
        })
    }
}

/// Runs `op(0..n)` with at most `concurrency` in flight, each bounded by [`REQUEST_TIMEOUT`].
/// Returns the wall time and every op's latency; the first failure fails the whole run.
pub async fn timed_concurrently<F, Fut>(
    n: usize,
    concurrency: usize,
    op: F,
) -> Result<(Duration, Vec<Duration>)>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let start = Instant::now();
    let results: Vec<Result<Duration>> = futures::stream::iter(0..n)
        .map(|i| {
            let fut = op(i);
            async move {
                let t = Instant::now();
                tokio::time::timeout(REQUEST_TIMEOUT, fut)
                    .await
                    .with_context(|| format!("op {i} took longer than {REQUEST_TIMEOUT:?}"))??;
                Ok(t.elapsed())
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let elapsed = start.elapsed();
    let latencies = results.into_iter().collect::<Result<Vec<_>>>()?;
    Ok((elapsed, latencies))
}
