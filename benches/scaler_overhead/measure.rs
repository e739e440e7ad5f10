//! The interleaved runner: every variant of one backend (raw call, scaler call, and any
//! diagnostic variants) runs in blocks of `block` sequential calls, round-robin, with the
//! starting variant rotated each round (A B, B A, A B, …). Machine drift (other builds on the
//! two cores, CPU frequency, the broker's own housekeeping) then hits every variant alike, and
//! only the ratios between variants of the same run are meaningful (performance.md §6).
//!
//! Per call the wall-clock latency is recorded; per block the process CPU time is read before
//! and after, so CPU per call is exact over the run even though single calls are too short for
//! the clock. CPU spent by an in-process backend (the Kafka mock broker thread) is split off
//! so that the client-side cost is compared, as it is for the out-of-process services. The
//! process's sockets are listed around every block (from `/proc/self/fd`, cheap, unlike
//! `/proc/net/tcp`), so a connection opened during a block is charged to the variant that ran it.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::backend::ConnSnapshot;
use crate::meter::{process_cpu, socket_inodes};

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
    /// Sockets this process opened during this variant's blocks (only one backend runs at a
    /// time, so these are connections to it).
    pub new_connections: usize,
    /// The same figures per consecutive fifth of the run ([`ROUNDS`]), for per-round ratios.
    pub rounds: Vec<RoundFigures>,
}

/// Latency and CPU of one variant within one round of the run.
#[derive(Debug, Clone, Copy)]
pub struct RoundFigures {
    /// Median latency in the round.
    pub p50: Duration,
    /// 99th percentile latency in the round.
    pub p99: Duration,
    /// Client-side CPU per call in the round.
    pub cpu_per_call: Duration,
}

/// The run is cut into this many consecutive rounds; the reported ratios are the median of the
/// per-round ratios (performance.md §6.0: "A/B/A/B (5 rounds); report the median of per-round
/// ratios"), which a burst of load from outside the bench cannot move the way it moves pooled
/// figures.
pub const ROUNDS: usize = 5;

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
    // samples[variant][round]
    let mut samples: Vec<Vec<Samples>> = names
        .iter()
        .map(|_| (0..ROUNDS).map(|_| Samples::default()).collect())
        .collect();
    let block = plan.block.max(1);
    let blocks = plan.iterations.div_ceil(block);
    for b in 0..blocks {
        let len = block.min(plan.iterations - b * block);
        let round = b * ROUNDS / blocks;
        for k in 0..names.len() {
            // Rotate who goes first, so no variant always follows the same one.
            let variant = (b + k) % names.len();
            run_block(subject, variant, len, value, &mut samples[variant][round]).await?;
        }
    }
    Ok(names
        .iter()
        .zip(samples)
        .map(|(name, rounds)| summarize(name, value, rounds))
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
    let sockets_before = socket_inodes()?;
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
    let sockets_after = socket_inodes()?;
    out.new_connections += sockets_after.difference(&sockets_before).count();
    Ok(())
}

fn summarize(name: &'static str, value: f64, rounds: Vec<Samples>) -> Summary {
    let figures: Vec<(RoundFigures, Samples)> = rounds.into_iter().map(round_figures).collect();
    let mut pooled = Samples::default();
    for (_, s) in &figures {
        pooled.latencies.extend_from_slice(&s.latencies);
        pooled.cpu += s.cpu;
        pooled.backend_cpu += s.backend_cpu;
        pooled.new_connections += s.new_connections;
    }
    let rounds = figures.iter().map(|(f, _)| *f).collect();
    let (all, pooled) = round_figures(pooled);
    let calls = pooled.latencies.len();
    let total: Duration = pooled.latencies.iter().sum();
    Summary {
        name,
        calls,
        value,
        p50: all.p50,
        p99: all.p99,
        mean: per_call(total, calls),
        cpu_per_call: all.cpu_per_call,
        backend_cpu_per_call: per_call(pooled.backend_cpu, calls),
        new_connections: pooled.new_connections,
        rounds,
    }
}

/// Sort the latencies and compute the round figures; the samples are handed back.
fn round_figures(mut s: Samples) -> (RoundFigures, Samples) {
    s.latencies.sort_unstable();
    let f = RoundFigures {
        p50: percentile(&s.latencies, 0.50),
        p99: percentile(&s.latencies, 0.99),
        cpu_per_call: per_call(s.cpu, s.latencies.len()),
    };
    (f, s)
}

fn per_call(total: Duration, calls: usize) -> Duration {
    total / u32::try_from(calls.max(1)).unwrap_or(u32::MAX)
}

/// Nearest-rank percentile of sorted samples; zero for none.
fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}
