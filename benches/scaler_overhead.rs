//! Per-scaler query overhead (performance.md §6.4 (d); issue 3's target: scaler / raw p50 ≤ 1.10,
//! p99 ≤ 1.25, CPU ≤ 1.2).
//!
//! For RabbitMQ (AMQP passive declare), Prometheus (instant query) and Kafka (consumer-group
//! lag on librdkafka's in-process mock cluster), this compares the *raw* client call, made on a
//! warm connection the bench holds itself, with the *scaler* call (`metrics_and_activity` on a
//! scaler built once, whose pooled connection is warm). Both read the same value from the same
//! server, so the difference is what the scaler path adds: the pool lookups and locks, the
//! timeouts and backoff bookkeeping, request building, parsing and, for Kafka, the extra
//! metadata request and the hops through `spawn_blocking`.
//!
//! Why interleaved: on a shared two-core machine absolute times drift within seconds (other
//! builds, CPU frequency, the broker's housekeeping). Running raw and scaler in alternating
//! small blocks (A B, B A, …) exposes both to the same drift, so their *ratio* is stable even
//! when the absolute figures are not; only ratios from one run are reported as results
//! (performance.md §6).
//!
//! Measured per variant: latency p50/p99 (per call, wall clock), process CPU per call
//! (`CLOCK_PROCESS_CPUTIME_ID` around each block; the in-process Kafka broker thread excluded),
//! and this process's connections to the backend after warm-up and after the run (sockets from
//! `/proc`, plus the scaler pools' counters and RabbitMQ's own connection list) — a warm scaler
//! must open no connection per poll.
//!
//! Run with `scripts/bench` (starts the services) or `cargo bench --bench scaler_overhead
//! [-- rabbitmq|prometheus|kafka …]` with the services' env. Knobs (env):
//! `TIDESCALE_BENCH_ITERATIONS` (5000 recorded calls per variant), `TIDESCALE_BENCH_WARMUP`
//! (200), `TIDESCALE_BENCH_BLOCK` (50 calls per block), `TIDESCALE_BENCH_BREAKDOWN=1` (diagnostic
//! Kafka variants that split the scaler's overhead). Exits non-zero only when a service cannot
//! be set up; missed targets show as ✗ in the table and `false` in the JSON.

#[path = "scaler_overhead/backend.rs"]
mod backend;
#[path = "scaler_overhead/kafka.rs"]
mod kafka;
#[path = "scaler_overhead/measure.rs"]
mod measure;
#[path = "scaler_overhead/meter.rs"]
mod meter;
#[path = "scaler_overhead/prometheus.rs"]
mod prometheus;
#[path = "scaler_overhead/rabbitmq.rs"]
mod rabbitmq;
#[path = "scaler_overhead/report.rs"]
mod report;

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::measure::{Plan, Subject};
use crate::report::BackendResult;

const BACKENDS: [&str; 3] = ["rabbitmq", "prometheus", "kafka"];

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("scaler_overhead: setup failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<()> {
    let selected = selected_backends()?;
    let plan = plan_from_env()?;
    let wants = |name: &str| selected.iter().any(|s| s == name);
    let mut load = report::Load {
        start: meter::load_average(),
        end: None,
    };
    // The external services are set up first, so an unreachable one fails before any run.
    let rabbit = match wants("rabbitmq") {
        true => Some(rabbitmq::RabbitMq::setup().await?),
        false => None,
    };
    let prom = match wants("prometheus") {
        true => Some(prometheus::Prometheus::setup().await?),
        false => None,
    };
    let mut results = Vec::new();
    if let Some(subject) = rabbit {
        let result = measure_backend("rabbitmq", &subject, plan).await;
        subject.teardown().await;
        results.push(result?);
    }
    if let Some(subject) = prom {
        let result = measure_backend("prometheus", &subject, plan).await;
        subject.teardown().await;
        results.push(result?);
    }
    if wants("kafka") {
        let subject = kafka::Kafka::setup(flag("TIDESCALE_BENCH_BREAKDOWN")).await?;
        let result = measure_backend("kafka", &subject, plan).await;
        subject.teardown().await;
        results.push(result?);
    }
    load.end = meter::load_average();
    report::print(&results, plan, load);
    let path = report::json_path();
    report::write_json(&path, &results, plan, load)?;
    println!("\nJSON: {}", path.display());
    Ok(())
}

/// Warm up, snapshot connections, run the interleaved blocks, snapshot again.
async fn measure_backend<S: Subject>(
    name: &'static str,
    subject: &S,
    plan: Plan,
) -> Result<BackendResult> {
    eprintln!(
        "scaler_overhead: {name}: {} variants …",
        subject.variants().len()
    );
    let start = Instant::now();
    let value = measure::warm_up(subject, plan.warmup)
        .await
        .with_context(|| format!("{name}: warm-up"))?;
    let before = subject.connections().await?;
    let summaries = measure::measure(subject, plan, value)
        .await
        .with_context(|| format!("{name}: measurement"))?;
    let after = subject.connections().await?;
    let elapsed = start.elapsed();
    eprintln!(
        "scaler_overhead: {name}: done in {:.1} s",
        elapsed.as_secs_f64()
    );
    Ok(BackendResult {
        name,
        summaries,
        before,
        after,
        elapsed,
    })
}

/// Backends named on the command line (all when none); cargo's own `--bench` flag is ignored.
fn selected_backends() -> Result<Vec<String>> {
    let named: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if let Some(unknown) = named.iter().find(|n| !BACKENDS.contains(&n.as_str())) {
        bail!(
            "unknown backend {unknown:?}; known: {}",
            BACKENDS.join(", ")
        );
    }
    Ok(match named.is_empty() {
        true => BACKENDS.iter().map(|b| (*b).to_owned()).collect(),
        false => named,
    })
}

fn plan_from_env() -> Result<Plan> {
    Ok(Plan {
        warmup: number("TIDESCALE_BENCH_WARMUP", 200)?,
        iterations: number("TIDESCALE_BENCH_ITERATIONS", 5000)?.max(1),
        block: number("TIDESCALE_BENCH_BLOCK", 50)?.max(1),
    })
}

fn number(var: &str, default: usize) -> Result<usize> {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .with_context(|| format!("{var}={v:?} is not a number")),
        _ => Ok(default),
    }
}

fn flag(var: &str) -> bool {
    std::env::var(var).is_ok_and(|v| matches!(v.trim(), "1" | "true" | "yes"))
}
