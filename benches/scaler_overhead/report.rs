//! The markdown tables printed to stdout and the same figures as JSON
//! (`target/bench-results/scaler_overhead.json`). A missed target is shown (✗), never an error.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde_json::{Value, json};

use crate::backend::ConnSnapshot;
use crate::measure::{Plan, RAW, SCALER, Summary};

/// Issue 3's targets for scaler / raw.
pub const P50_MAX: f64 = 1.10;
/// See [`P50_MAX`].
pub const P99_MAX: f64 = 1.25;
/// See [`P50_MAX`].
pub const CPU_MAX: f64 = 1.20;

/// Everything measured for one backend.
pub struct BackendResult {
    /// `rabbitmq`, `prometheus`, `kafka`.
    pub name: &'static str,
    /// One per variant; [`RAW`] and [`SCALER`] first.
    pub summaries: Vec<Summary>,
    /// Connections after the warm-up.
    pub before: ConnSnapshot,
    /// Connections after the measured calls.
    pub after: ConnSnapshot,
    /// Wall time of warm-up plus measurement.
    pub elapsed: Duration,
}

/// A variant / raw for latency p50, p99 and CPU per call.
#[derive(Debug, Clone, Copy)]
struct Ratios {
    p50: f64,
    p99: f64,
    cpu: f64,
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(f64::MIN_POSITIVE)
}

/// Ratios of the figures pooled over the whole run.
fn pooled(variant: &Summary, raw: &Summary) -> Ratios {
    Ratios {
        p50: ratio(variant.p50, raw.p50),
        p99: ratio(variant.p99, raw.p99),
        cpu: ratio(variant.cpu_per_call, raw.cpu_per_call),
    }
}

/// Ratios per round ([`crate::measure::ROUNDS`]).
fn per_round(variant: &Summary, raw: &Summary) -> Vec<Ratios> {
    variant
        .rounds
        .iter()
        .zip(&raw.rounds)
        .map(|(v, r)| Ratios {
            p50: ratio(v.p50, r.p50),
            p99: ratio(v.p99, r.p99),
            cpu: ratio(v.cpu_per_call, r.cpu_per_call),
        })
        .collect()
}

/// The reported ratios: the median of the per-round ratios.
fn ratios(variant: &Summary, raw: &Summary) -> Ratios {
    let rounds = per_round(variant, raw);
    let median = |f: fn(&Ratios) -> f64| {
        let mut v: Vec<f64> = rounds.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };
    Ratios {
        p50: median(|r| r.p50),
        p99: median(|r| r.p99),
        cpu: median(|r| r.cpu),
    }
}

fn us(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e6)
}

fn mark(ratio: f64, max: f64) -> String {
    format!("{ratio:.2} {}", if ratio <= max { "✓" } else { "✗" })
}

/// The machine's 1-minute load average at the start and the end of the run (2 cores here: a
/// load well above 2 means other work competed for the CPUs and tails will be noisy).
#[derive(Debug, Clone, Copy, Default)]
pub struct Load {
    /// Before the first backend.
    pub start: Option<f64>,
    /// After the last backend.
    pub end: Option<f64>,
}

/// Print the tables: ratios, connections, and the diagnostic variants if any.
pub fn print(results: &[BackendResult], plan: Plan, load: Load) {
    println!(
        "\n## Per-scaler query overhead (scaler / raw, same run; {} calls each, blocks of {}, \
         {} warm-up; ratios are the median of {} per-round ratios, latencies and CPU pooled)\n",
        plan.iterations,
        plan.block,
        plan.warmup,
        crate::measure::ROUNDS
    );
    println!(
        "| backend | p50 raw → scaler (µs) | p50 ratio ≤ {P50_MAX} | p99 raw → scaler (µs) | \
         p99 ratio ≤ {P99_MAX} | CPU/call raw → scaler (µs) | CPU ratio ≤ {CPU_MAX} |"
    );
    println!("|---|---|---|---|---|---|---|");
    for r in results {
        let (raw, scaler) = (&r.summaries[RAW], &r.summaries[SCALER]);
        let q = ratios(scaler, raw);
        println!(
            "| {} | {} → {} | {} | {} → {} | {} | {} → {} | {} |",
            r.name,
            us(raw.p50),
            us(scaler.p50),
            mark(q.p50, P50_MAX),
            us(raw.p99),
            us(scaler.p99),
            mark(q.p99, P99_MAX),
            us(raw.cpu_per_call),
            us(scaler.cpu_per_call),
            mark(q.cpu, CPU_MAX),
        );
    }
    let fmt = |l: Option<f64>| l.map_or("?".to_owned(), |l| format!("{l:.2}"));
    println!(
        "\nLoad average (1 min) {} → {} on {} CPUs.",
        fmt(load.start),
        fmt(load.end),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    print_connections(results);
    print_breakdown(results);
}

fn print_connections(results: &[BackendResult]) {
    println!("\n### Connections of this process to each backend (after warm-up → after run)\n");
    println!(
        "| backend | sockets (raw + scaler) | new during run | opened in raw / scaler blocks | \
         scaler pool / broker counters |"
    );
    println!("|---|---|---|---|---|");
    for r in results {
        let details: Vec<String> = r
            .before
            .detail
            .iter()
            .map(|(k, before)| {
                let after = r.after.detail.get(k).copied().unwrap_or_default();
                format!("{k} {before} → {after}")
            })
            .collect();
        println!(
            "| {} | {} → {} | {} | {} / {} | {} |",
            r.name,
            r.before.sockets.len(),
            r.after.sockets.len(),
            new_sockets(r),
            r.summaries[RAW].new_connections,
            r.summaries[SCALER].new_connections,
            details.join(", ")
        );
    }
}

fn print_breakdown(results: &[BackendResult]) {
    let with_extra: Vec<&BackendResult> =
        results.iter().filter(|r| r.summaries.len() > 2).collect();
    if with_extra.is_empty() {
        return;
    }
    println!("\n### Breakdown (every variant / raw, same interleaved run)\n");
    println!("| backend | variant | p50 µs | p99 µs | CPU/call µs | p50 × | p99 × | CPU × |");
    println!("|---|---|---|---|---|---|---|---|");
    for r in with_extra {
        let raw = &r.summaries[RAW];
        for s in &r.summaries {
            let q = ratios(s, raw);
            println!(
                "| {} | {} | {} | {} | {} | {:.2} | {:.2} | {:.2} |",
                r.name,
                s.name,
                us(s.p50),
                us(s.p99),
                us(s.cpu_per_call),
                q.p50,
                q.p99,
                q.cpu
            );
        }
    }
}

/// Sockets open after the run that were not open after the warm-up.
fn new_sockets(r: &BackendResult) -> usize {
    r.after.sockets.difference(&r.before.sockets).count()
}

/// Where the JSON goes: `$CARGO_TARGET_DIR` or the workspace's `target/`.
pub fn json_path() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("bench-results").join("scaler_overhead.json")
}

/// Write the figures as JSON to `path`.
pub fn write_json(path: &Path, results: &[BackendResult], plan: Plan, load: Load) -> Result<()> {
    let unix_time = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let doc = json!({
        "bench": "scaler_overhead",
        "unix_time": unix_time,
        "plan": {"warmup": plan.warmup, "iterations": plan.iterations, "block": plan.block},
        "targets": {"p50": P50_MAX, "p99": P99_MAX, "cpu": CPU_MAX},
        "load_average_1m": {"start": load.start, "end": load.end},
        "backends": results.iter().map(backend_json).collect::<Vec<_>>(),
    });
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(&doc).context("serializing the results")?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
}

fn backend_json(r: &BackendResult) -> Value {
    let raw = &r.summaries[RAW];
    let q = ratios(&r.summaries[SCALER], raw);
    json!({
        "name": r.name,
        "value": raw.value,
        "elapsed_s": r.elapsed.as_secs_f64(),
        "ratios": ratios_json(q),
        "pooled_ratios": ratios_json(pooled(&r.summaries[SCALER], raw)),
        "round_ratios": per_round(&r.summaries[SCALER], raw)
            .into_iter()
            .map(ratios_json)
            .collect::<Vec<_>>(),
        "pass": {"p50": q.p50 <= P50_MAX, "p99": q.p99 <= P99_MAX, "cpu": q.cpu <= CPU_MAX},
        "variants": r.summaries.iter().map(|s| summary_json(s, raw)).collect::<Vec<_>>(),
        "connections": {
            "after_warmup": snapshot_json(&r.before),
            "after_run": snapshot_json(&r.after),
            "new_sockets_during_run": new_sockets(r),
        },
    })
}

fn summary_json(s: &Summary, raw: &Summary) -> Value {
    let q = ratios(s, raw);
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    json!({
        "name": s.name,
        "calls": s.calls,
        "p50_us": us(s.p50),
        "p99_us": us(s.p99),
        "mean_us": us(s.mean),
        "cpu_per_call_us": us(s.cpu_per_call),
        "backend_cpu_per_call_us": us(s.backend_cpu_per_call),
        "connections_opened_in_its_blocks": s.new_connections,
        "vs_raw": ratios_json(q),
    })
}

fn ratios_json(q: Ratios) -> Value {
    json!({"p50": q.p50, "p99": q.p99, "cpu": q.cpu})
}

fn snapshot_json(s: &ConnSnapshot) -> Value {
    json!({
        "sockets": s.sockets.len(),
        "local_ports": s.sockets,
        "detail": s.detail,
    })
}
