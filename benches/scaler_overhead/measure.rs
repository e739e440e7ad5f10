//! The interleaved runner: every variant of one backend (raw call, scaler call, and any
//! diagnostic variants) runs in blocks of `block` sequential calls, round-robin, with the
//! starting variant rotated each round (A B, B A, A B, …). Machine drift (other builds on the
//! two cores, CPU frequency, the broker's own housekeeping) then hits every variant alike, and
//! only the ratios between variants of the same run are meaningful (performance.md §6).
//!
//! Per call the wall-clock latency is recorded; per block the process CPU time is read before
//! and after, so CPU per call is exact over the run even though single calls are too short for
//! the clock. CPU spent by an in-process backend (the Kafka mock broker thread) is split off
//! so that the client-side cost is compared, as it is for the out-of-process services. Sockets
//! to the backend are listed around every block, so a connection opened during a block is
//! charged to the variant that ran it.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::backend::ConnSnapshot;
use crate::meter::{connections_to, process_cpu};

/// Something to measure: a backend with its raw client call and its scaler call.
pub(crate) trait Subject {
    /// Variant names. Index [`RAW`] is the raw client call, [`SCALER`] the scaler call; any
    /// further ones are diagnostics that explain the difference.
    fn variants(&self) -> &[&'static str];

    /// Make one call of `variant` and return the metric value it read.
    async fn call(&self, variant: usize) -> Result<f64>;

    /// CPU time used so far by threads that are the backend itself rather than its client
    /// (only the in-process Kafka mock broker); zero for out-of-process services.
    fn backend_cpu(&self) -> Result<Duration> {
        Ok(Duration::ZERO)
    }

    /// The backend's TCP port: new connections to it are counted per block.
    fn port(&self) -> u16;

    /// This process's connections to the backend now.
    async fn connections(&self) -> Result<ConnSnapshot>;
}

/// Index of the raw client call in [`Subject::variants`].
pub const RAW: usize = 0;
/// Index of the scaler call in [`Subject::variants`].
pub const SCALER: usize = 1;

/// How many calls to make.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Unrecorded calls per variant first (connections, channels, caches warm up).
    pub warmup: usize,
    /// Recorded calls per variant.
    pub iterations: usize,
    /// Sequential calls of one variant before switching to the next.
    pub block: usize,
}

/// The figures of one variant over a run.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Variant name.
    pub name: &'static str,
    /// Recorded calls.
    pub calls: usize,
    /// The metric value every call returned.
    pub value: f64,
    /// Median latency.
    pub p50: Duration,
    /// 99th percentile latency (nearest rank).
    pub p99: Duration,
    /// Mean latency.
    pub mean: Duration,
    /// Client-side process CPU per call (backend threads excluded).
    pub cpu_per_call: Duration,
    /// CPU per call of in-process backend threads (the Kafka mock broker), zero otherwise.
    pub backend_cpu_per_call: Duration,
    /// Connections to the backend that appeared during this variant's blocks.
    pub new_connections: usize,
}

#[derive(Default)]
struct Samples {
    latencies: Vec<Duration>,
    cpu: Duration,
    backend_cpu: Duration,
    new_connections: usize,
}

/// Run the interleaved blocks after [`warm_up`], checking every call reads `value`.
pub async fn measure<S: Subject>(subject: &S, plan: Plan, value: f64) -> Result<Vec<Summary>> {
    let names = subject.variants();
    let mut samples: Vec<Samples> = names
        .iter()
        .map(|_| Samples {
            latencies: Vec::with_capacity(plan.iterations),
            ..Samples::default()
        })
        .collect();
    let block = plan.block.max(1);
    let rounds = plan.iterations.div_ceil(block);
    for round in 0..rounds {
        let len = block.min(plan.iterations - round * block);
        for k in 0..names.len() {
            let variant = (round + k) % names.len();
            run_block(subject, variant, len, value, &mut samples[variant]).await?;
        }
    }
    Ok(names
        .iter()
        .zip(samples)
        .map(|(name, s)| summarize(name, value, s))
        .collect())
}

/// `calls` unrecorded calls per variant, interleaved; returns the value they agree on.
pub async fn warm_up<S: Subject>(subject: &S, calls: usize) -> Result<f64> {
    let names = subject.variants();
    let mut values = vec![f64::NAN; names.len()];
    for _ in 0..calls.max(1) {
        for (variant, slot) in values.iter_mut().enumerate() {
            *slot = subject
                .call(variant)
                .await
                .with_context(|| format!("warm-up call of {:?} failed", names[variant]))?;
        }
    }
    let raw = values[RAW];
    for (name, v) in names.iter().zip(&values) {
        if *v != raw {
            bail!(
                "{name:?} read {v} but {:?} read {raw}: the variants do not measure the same \
                 thing",
                names[RAW]
            );
        }
    }
    Ok(raw)
}

async fn run_block<S: Subject>(
    subject: &S,
    variant: usize,
    len: usize,
    expected: f64,
    out: &mut Samples,
) -> Result<()> {
    let name = subject.variants()[variant];
    // Sockets are listed outside the CPU window: reading /proc is not the call's cost.
    let sockets_before = connections_to(subject.port())?;
    let (cpu_before, backend_before) = (process_cpu()?, subject.backend_cpu()?);
    for _ in 0..len {
        let start = Instant::now();
        let value = subject
            .call(variant)
            .await
            .with_context(|| format!("{name:?} call failed"))?;
        out.latencies.push(start.elapsed());
        if value != expected {
            bail!("{name:?} read {value} after reading {expected} during warm-up");
        }
    }
    let backend = subject.backend_cpu()?.saturating_sub(backend_before);
    let total = process_cpu()?.saturating_sub(cpu_before);
    out.cpu += total.saturating_sub(backend);
    out.backend_cpu += backend;
    let sockets_after = connections_to(subject.port())?;
    out.new_connections += sockets_after.difference(&sockets_before).count();
    Ok(())
}

fn summarize(name: &'static str, value: f64, mut s: Samples) -> Summary {
    s.latencies.sort_unstable();
    let calls = s.latencies.len();
    let per_call = |d: Duration| d / u32::try_from(calls.max(1)).unwrap_or(u32::MAX);
    let total: Duration = s.latencies.iter().sum();
    Summary {
        name,
        calls,
        value,
        p50: percentile(&s.latencies, 0.50),
        p99: percentile(&s.latencies, 0.99),
        mean: per_call(total),
        cpu_per_call: per_call(s.cpu),
        backend_cpu_per_call: per_call(s.backend_cpu),
        new_connections: s.new_connections,
    }
}

/// Nearest-rank percentile of sorted samples; zero for none.
fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}
