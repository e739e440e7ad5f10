//! The markdown tables printed to stdout and the same figures as JSON
//! (`target/bench-results/sandbox_api.json`).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde_json::{Value, json};

use crate::Plan;
use crate::fanout::Fanout;
use crate::measured::{Measured, Path as ClientPath};
use crate::stats::{Latency, ms};

/// Everything one run measured.
pub struct Results {
    pub plan: Plan,
    pub rows: Vec<Measured>,
    pub fanout: Vec<Fanout>,
    pub elapsed: Duration,
}

/// HTTP vs in-process for one scenario measured both ways.
struct Overhead<'a> {
    scenario: &'a str,
    http: &'a Measured,
    in_process: &'a Measured,
}

impl Overhead<'_> {
    /// How many times more in-process calls than HTTP requests per second.
    fn throughput(&self) -> f64 {
        self.in_process.ops_per_s() / self.http.ops_per_s().max(f64::MIN_POSITIVE)
    }

    /// HTTP p50 / in-process p50.
    fn p50(&self) -> Option<f64> {
        let (h, i) = (self.http.latency?, self.in_process.latency?);
        Some(h.p50.as_secs_f64() / i.p50.as_secs_f64().max(f64::MIN_POSITIVE))
    }
}

fn overheads(rows: &[Measured]) -> Vec<Overhead<'_>> {
    let find = |s: &str, p| rows.iter().find(|r| r.scenario == s && r.path == p);
    let mut scenarios: Vec<&str> = Vec::new();
    for row in rows {
        if !scenarios.contains(&row.scenario) {
            scenarios.push(row.scenario);
        }
    }
    scenarios
        .into_iter()
        .filter_map(|s| {
            Some(Overhead {
                scenario: s,
                http: find(s, ClientPath::Http)?,
                in_process: find(s, ClientPath::InProcess)?,
            })
        })
        .collect()
}

fn lat(l: Option<Latency>, f: impl Fn(Latency) -> Duration) -> String {
    l.map_or_else(|| "–".to_owned(), |l| format!("{:.2}", ms(f(l))))
}

/// Prints the three tables.
pub fn print(r: &Results) {
    println!(
        "\n## Sandbox API throughput ({} objects, one run)\n",
        r.plan.objects
    );
    println!(
        "| scenario | client | ops | objects | wall s | ops/s | objects/s | p50 ms | p99 ms |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for m in &r.rows {
        println!(
            "| {} | {} | {} | {} | {:.2} | {:.0} | {:.0} | {} | {} |",
            m.scenario,
            m.path.as_str(),
            m.ops,
            m.objects,
            m.elapsed.as_secs_f64(),
            m.ops_per_s(),
            m.objects_per_s(),
            lat(m.latency, |l| l.p50),
            lat(m.latency, |l| l.p99),
        );
    }
    println!(
        "\n## HTTP/TLS/serde overhead (in-process ÷ kube-rs throughput; kube-rs ÷ in-process p50)\n"
    );
    println!("| scenario | in-process ops/s | kube-rs ops/s | throughput × | p50 × |");
    println!("|---|---:|---:|---:|---:|");
    for o in overheads(&r.rows) {
        println!(
            "| {} | {:.0} | {:.0} | {:.1} | {} |",
            o.scenario,
            o.in_process.ops_per_s(),
            o.http.ops_per_s(),
            o.throughput(),
            o.p50()
                .map_or_else(|| "–".to_owned(), |x| format!("{x:.1}")),
        );
    }
    println!(
        "\n## Watch fan-out ({} updates by one sequential writer; latency = PATCH sent → event received)\n",
        r.plan.updates
    );
    println!(
        "| watchers | events expected | received | lost | dup | open watches ms | writer updates/s | events/s delivered | p50 ms | p99 ms | max ms |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for f in &r.fanout {
        println!(
            "| {} | {} | {} | {} | {} | {:.0} | {:.0} | {:.0} | {} | {} | {} |",
            f.watchers,
            f.expected(),
            f.received,
            f.lost(),
            f.duplicates,
            ms(f.setup),
            f.writes_per_s(),
            f.events_per_s(),
            lat(f.latency, |l| l.p50),
            lat(f.latency, |l| l.p99),
            lat(f.latency, |l| l.max),
        );
    }
    for f in r.fanout.iter().filter(|f| !f.incomplete.is_empty()) {
        println!("\nLOST EVENTS with {} watchers:", f.watchers);
        f.incomplete
            .iter()
            .take(10)
            .for_each(|line| println!("- {line}"));
    }
    println!("\nTotal run: {:.1} s", r.elapsed.as_secs_f64());
}

/// Where the JSON goes: `$CARGO_TARGET_DIR` or the workspace's `target/`.
pub fn json_path() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
            manifest.parent().unwrap_or(manifest).join("target")
        });
    target.join("bench-results").join("sandbox_api.json")
}

/// Writes the figures as JSON to `path`.
pub fn write_json(path: &Path, r: &Results) -> Result<()> {
    let unix_time = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let overhead: Vec<Value> = overheads(&r.rows)
        .iter()
        .map(|o| json!({"scenario": o.scenario, "throughput_ratio": o.throughput(), "p50_ratio": o.p50()}))
        .collect();
    let doc = json!({
        "bench": "sandbox_api",
        "unix_time": unix_time,
        "plan": r.plan.json(),
        "elapsed_s": r.elapsed.as_secs_f64(),
        "scenarios": r.rows.iter().map(Measured::json).collect::<Vec<_>>(),
        "http_overhead": overhead,
        "watch_fanout": r.fanout.iter().map(Fanout::json).collect::<Vec<_>>(),
        "events_lost": r.fanout.iter().map(Fanout::lost).sum::<usize>(),
    });
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(&doc).context("encoding the results")?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
}
