//! Sandbox control-plane throughput (issue 4: "the sandbox is not the bottleneck").
//!
//! Later load tests drive tidescale's operator against the sandbox; this bench records how much
//! the sandbox itself can take, so a load test that gets close to these figures knows it is
//! measuring the sandbox rather than the operator. Everything is measured in ONE run on
//! loopback (performance.md §6: 2 cores, compare ratios within a run, not absolute numbers
//! across hosts), each scenario on a fresh sandbox, with kube-rs — the operator's client —
//! over the sandbox's real HTTPS listener:
//!
//! 1. **create**: 10,000 ConfigMaps (~0.5 KiB each) POSTed with 16 requests in flight;
//! 2. **list**: 10,000 objects in the namespace; full lists (no limit) and paginated walks
//!    (`limit=500`, following `continue`), latency per list request, every walk count-checked;
//! 3. **patch**: 10,000 merge patches, 16 in flight;
//! 4. **watch fan-out**: 1, 10 and 100 watches on the 10,000-object collection, then 1,000
//!    merge patches from one sequential writer; delivery latency (PATCH sent → event received,
//!    p50/p99 over all watchers), events/s delivered, and a check that every watcher saw every
//!    update exactly once (see `api_throughput/fanout.rs`);
//! 5. **baseline**: create / patch / full list through the in-process `Store` API, so the
//!    ratio in-process ÷ kube-rs shows what HTTP, TLS, auth and serde cost.
//!
//! List and watch scenarios fill the store in-process (setup, not measured). kube-rs opens one
//! HTTP/1.1 connection per concurrent request; a warm-up opens the pool before timing.
//!
//! Output: markdown tables on stdout, JSON in `target/bench-results/sandbox_api.json`.
//! Run: `cargo bench -p tidescale-sandbox --bench api_throughput`. Knobs (env):
//! `TIDESCALE_BENCH_OBJECTS` (10000), `TIDESCALE_BENCH_UPDATES` (1000),
//! `TIDESCALE_BENCH_WATCHERS` (`1,10,100`); scenario names after `--` (`in-process`, `create`,
//! `patch`, `list`, `watch`) run only those. Every request and wait is bounded by a timeout.
//! Exit status is non-zero only when setup fails (sandbox, client, a request erroring or a
//! list returning the wrong count, which would make the figures meaningless) or when a watcher
//! lost events — a correctness bug of the sandbox.

#[path = "api_throughput/fanout.rs"]
mod fanout;
#[path = "api_throughput/fixture.rs"]
mod fixture;
#[path = "api_throughput/http.rs"]
mod http;
#[path = "api_throughput/inproc.rs"]
mod inproc;
#[path = "api_throughput/measured.rs"]
mod measured;
#[path = "api_throughput/report.rs"]
mod report;
#[path = "api_throughput/stats.rs"]
mod stats;

use std::future::Future;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use serde_json::{Value, json};

use crate::fanout::Fanout;
use crate::fixture::Fixture;
use crate::measured::Measured;
use crate::report::Results;

/// Full lists per run (p99 of 20 samples is their maximum).
const LIST_ROUNDS: usize = 20;
/// Paginated walks per run (20 pages each at 10,000 objects).
const PAGE_WALKS: usize = 5;
/// Page size of the paginated list.
const PAGE_LIMIT: u32 = 500;
/// Bound on one scenario, setup included.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(120);

/// The sizes of a run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub objects: usize,
    pub updates: usize,
    pub watchers: Vec<usize>,
    /// Scenario names from the command line (`in-process create patch list watch`); empty = all.
    pub only: Vec<String>,
}

impl Plan {
    fn from_env() -> Result<Self> {
        let watchers = std::env::var("TIDESCALE_BENCH_WATCHERS")
            .unwrap_or_else(|_| "1,10,100".to_owned())
            .split(',')
            .map(|w| {
                w.trim()
                    .parse::<usize>()
                    .context("TIDESCALE_BENCH_WATCHERS")
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            objects: env_usize("TIDESCALE_BENCH_OBJECTS", 10_000)?.max(1),
            updates: env_usize("TIDESCALE_BENCH_UPDATES", 1_000)?.max(1),
            watchers,
            // cargo bench passes `--bench`; anything else not starting with `-` selects.
            only: std::env::args()
                .skip(1)
                .filter(|a| !a.starts_with('-'))
                .collect(),
        })
    }

    fn wants(&self, scenario: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|s| s == scenario)
    }

    pub fn json(&self) -> Value {
        json!({"objects": self.objects, "updates": self.updates, "watchers": self.watchers,
            "only": self.only,
            "concurrency": fixture::CONCURRENCY, "list_rounds": LIST_ROUNDS,
            "page_walks": PAGE_WALKS, "page_limit": PAGE_LIMIT})
    }
}

fn env_usize(name: &str, default: usize) -> Result<usize> {
    match std::env::var(name) {
        Ok(v) => v.trim().parse().with_context(|| format!("{name}={v}")),
        Err(_) => Ok(default),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    match run().await {
        Ok(0) => ExitCode::SUCCESS,
        Ok(lost) => {
            eprintln!("api_throughput: watchers lost {lost} events (sandbox correctness bug)");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("api_throughput: setup failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs every scenario; returns the number of lost watch events.
async fn run() -> Result<usize> {
    let plan = Plan::from_env()?;
    let start = Instant::now();
    let mut rows = Vec::new();
    if plan.wants("in-process") {
        rows.extend(bounded("in-process", in_process(&plan)).await?);
    }
    if plan.wants("create") {
        rows.push(bounded("create", http_create(&plan)).await?);
    }
    if plan.wants("patch") {
        rows.push(bounded("patch", http_patch(&plan)).await?);
    }
    if plan.wants("list") {
        rows.extend(bounded("list", http_list(&plan)).await?);
    }
    let mut fanouts = Vec::new();
    for &watchers in plan.watchers.iter().filter(|_| plan.wants("watch")) {
        fanouts.push(bounded("watch fan-out", fan_out(&plan, watchers)).await?);
    }
    let results = Results {
        plan,
        rows,
        fanout: fanouts,
        elapsed: start.elapsed(),
    };
    report::print(&results);
    let path = report::json_path();
    report::write_json(&path, &results)?;
    println!("\nJSON: {}", path.display());
    Ok(results.fanout.iter().map(Fanout::lost).sum())
}

/// Runs one scenario with a deadline, logging progress to stderr.
async fn bounded<T>(name: &str, scenario: impl Future<Output = Result<T>>) -> Result<T> {
    eprintln!("api_throughput: {name} …");
    tokio::time::timeout(SCENARIO_TIMEOUT, scenario)
        .await
        .map_err(|_| anyhow!("{name}: not done after {SCENARIO_TIMEOUT:?}"))?
        .with_context(|| name.to_owned())
}

/// Runs `body` on a fresh sandbox holding `populate` objects and stops the sandbox afterwards.
async fn on_fresh_sandbox<T>(
    populate: usize,
    body: impl AsyncFnOnce(&Fixture) -> Result<T>,
) -> Result<T> {
    let fixture = Fixture::start().await?;
    let result = async {
        fixture.populate(populate)?;
        fixture.warm_up().await?;
        body(&fixture).await
    }
    .await;
    fixture.stop().await;
    result
}

async fn in_process(plan: &Plan) -> Result<Vec<Measured>> {
    let n = plan.objects;
    on_fresh_sandbox(0, async |fx| {
        let store = fx.sandbox.store().clone();
        Ok(vec![
            inproc::create(store.clone(), n).await?,
            // Before the patches, so the objects are the same as in the HTTP list scenario.
            inproc::list_full(store.clone(), n, LIST_ROUNDS).await?,
            inproc::patch(store, n, n).await?,
        ])
    })
    .await
}

async fn http_create(plan: &Plan) -> Result<Measured> {
    on_fresh_sandbox(0, async |fx| http::create(&fx.api(), plan.objects).await).await
}

async fn http_patch(plan: &Plan) -> Result<Measured> {
    let n = plan.objects;
    on_fresh_sandbox(n, async |fx| http::patch(&fx.api(), n, n).await).await
}

async fn http_list(plan: &Plan) -> Result<Vec<Measured>> {
    let n = plan.objects;
    on_fresh_sandbox(n, async |fx| {
        let api = fx.api();
        Ok(vec![
            http::list_full(&api, n, LIST_ROUNDS).await?,
            http::list_paged(&api, n, PAGE_WALKS, PAGE_LIMIT).await?,
        ])
    })
    .await
}

async fn fan_out(plan: &Plan, watchers: usize) -> Result<Fanout> {
    let (n, updates) = (plan.objects, plan.updates);
    on_fresh_sandbox(n, async |fx| fanout::run(fx, n, watchers, updates).await).await
}
