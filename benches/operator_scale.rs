//! The operator at scale (issue 5's benchmark; `reference/performance.md` §6.2, T3–T6, T11 and
//! T1's overhead): N ScaledObjects (10,000; 1,000 with `--quick`) with one cheap trigger each
//! at `pollingInterval: 1`, against the sandbox, in one run, as ratios and counts against an
//! idle baseline measured in the same run.
//!
//! - The sandbox (API server + simulated controllers) runs in this process on a runtime of its
//!   own (two threads; the Prometheus stand-in and the meters keep the main one); the operator runs
//!   as a **separate process** (the `tidescale` binary cargo built for this bench) with a
//!   kubeconfig to it, so its CPU and RSS come from `/proc/<pid>`.
//! - Each object targets its own Deployment (at 0) and has a `prometheus` trigger against a
//!   Prometheus stand-in served here (axum): one instant-vector sample per query, the value
//!   settable per object, and the time of each object's first query recorded.
//! - Phases: (1) the operator on an empty cluster: idle CPU and RSS; (2) N Deployments and N
//!   ScaledObjects written into the sandbox's store, then a fresh operator: time until every
//!   object was polled once (a cold start: labels, finalizers, HPAs and status are all written);
//!   (3) once a [`SETTLE_WINDOW`] passes without API writes, steady state over [`STEADY`]:
//!   CPU cores, RSS per object over the baseline, poll lateness p99
//!   (`tidescale_scaling_poll_lateness_seconds`, bucket bound), API requests per second by kind
//!   (`tidescale_api_requests_total`, watches excluded); (4) activation: the answer of K objects
//!   flips 0 → 1 at random instants; overhead = time the `/scale` write is committed in the
//!   sandbox's store (an in-process subscription) − time of the object's
//!   first query after the flip (the wait for the next poll is not the operator's cost);
//!   (5) a restart of the operator: time until every object is polled again (the warm start:
//!   everything exists already).
//!
//! Output: a markdown table with KEDA's published figures next to ours, and JSON in
//! `target/bench-results/operator_scale.json`; the operator's log in `operator_scale.log` there.
//! Run: `scripts/bench operator_scale [-- --quick]` or `cargo bench --bench operator_scale`.
//! Knob: `TIDESCALE_BENCH_OBJECTS` overrides N. Not pinned to CPUs (the sandbox, the fake and
//! the operator share the machine's cores): absolute CPU is an upper bound for the operator.

#[path = "operator_scale/fake.rs"]
mod fake;
#[path = "operator_scale/meter.rs"]
mod meter;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rand::Rng;
use serde_json::json;
use tidescale::dev::DevCluster;
use tidescale_sandbox::controllers::ControllerConfig;
use tidescale_sandbox::{Credentials, GroupResource, SandboxConfig, WriteOptions};

use crate::fake::Fake;
use crate::meter::{Sample, Scrape, free_addr, percentile};

/// Namespace of the bench's objects.
const NAMESPACE: &str = "bench";
/// Steady-state measuring window.
const STEADY: Duration = Duration::from_secs(30);
/// Idle-baseline measuring window.
const IDLE: Duration = Duration::from_secs(10);
/// A window without API writes that ends the start-up.
const SETTLE_WINDOW: Duration = Duration::from_secs(5);
/// Bound on waiting for the start-up's writes to end.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Bound on waiting for every object to be polled.
const ALL_POLLED_TIMEOUT: Duration = Duration::from_secs(600);

/// The sandbox (API server and the simulated controllers of N Deployments) runs on a runtime of
/// its own: on the bench's runtime it starved the Prometheus stand-in and the meters, and
/// 10,000 objects stalled there before the operator was the bottleneck.
fn main() -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = |name: &str| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(name)
            .enable_all()
            .build()
    };
    let sandbox = runtime("sandbox")?;
    let result = runtime("bench")?.block_on(run(sandbox.handle().clone()));
    sandbox.shutdown_timeout(Duration::from_secs(5));
    result
}

async fn run(sandbox: tokio::runtime::Handle) -> Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    let objects: usize = match std::env::var("TIDESCALE_BENCH_OBJECTS") {
        Ok(n) => n.parse().context("TIDESCALE_BENCH_OBJECTS")?,
        Err(_) if quick => 1_000,
        Err(_) => 10_000,
    };
    let flips = (objects / 10).clamp(1, 100);
    let results = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-results");
    std::fs::create_dir_all(&results)?;
    println!("operator_scale: {objects} ScaledObjects at pollingInterval 1, {flips} activations");

    let fake = Fake::start(objects).await?;
    let dev = sandbox
        .spawn(DevCluster::start(
            // A cold start writes ~8 events per object: a watcher that falls 16,384 behind (the
            // default) relists all N objects, over and over at N = 10,000.
            SandboxConfig {
                history_capacity: (objects * 8).max(tidescale_sandbox::store::DEFAULT_HISTORY),
                ..SandboxConfig::default()
            },
            ControllerConfig::default(),
        ))
        .await??;
    // The adapter keeps its serving certificate in a Secret of its own namespace.
    create_namespace(&dev, "keda")?;
    let kubeconfig = results.join("operator_scale.kubeconfig");
    let admin = Credentials::Token(dev.sandbox.admin_token().to_owned());
    dev.sandbox.write_kubeconfig(&kubeconfig, &admin)?;
    let log = results.join("operator_scale.log");
    let launcher = Launcher {
        kubeconfig,
        log,
        started: 0.into(),
    };

    // (1) Idle baseline.
    let mut idle = launcher.spawn()?;
    idle.wait_serving().await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (idle_cores, idle_rss) = idle.cpu_and_rss(IDLE).await?;
    idle.stop();
    println!("idle: {idle_cores:.4} cores, {idle_rss} KiB RSS");

    // (2) N objects, then a cold start.
    let created = Instant::now();
    create_objects(&dev, objects, fake.addr)?;
    println!(
        "created {objects} Deployments + ScaledObjects in {:?}",
        created.elapsed()
    );
    fake.reset_first_polls();
    let mut operator = launcher.spawn()?;
    let (cold_start, polled) = fake.wait_all_polled(ALL_POLLED_TIMEOUT).await;
    println!("cold start: {polled} of {objects} polled after {cold_start:?}");
    let requests = operator
        .scrape()
        .await?
        .api_requests_since(&Scrape::default());
    println!("cold start requests: {requests:?}");
    let settled = operator.wait_settled().await?;
    println!("start-up writes done {settled:?} after the first round of polls");

    // (3) Steady state.
    let before = operator.scrape().await?;
    let queries_before = fake.queries();
    let (cores, rss) = operator.cpu_and_rss(STEADY).await?;
    let after = operator.scrape().await?;
    let polls_per_second = (fake.queries() - queries_before) as f64 / STEADY.as_secs_f64();
    let requests = after.api_requests_since(&before);
    let writes = requests.writes() as f64 / STEADY.as_secs_f64();
    let reads = requests.reads() as f64 / STEADY.as_secs_f64();
    let lateness_p99 = after.lateness_p99_since(&before);
    let per_object_kib = (rss.saturating_sub(idle_rss)) as f64 / objects as f64;
    println!(
        "steady: {cores:.3} cores, {rss} KiB, {polls_per_second:.0} polls/s, {writes:.2} writes/s, {reads:.2} reads/s, lateness p99 ≤ {lateness_p99:?} ({requests:?})"
    );

    // (4) Activation overhead.
    let (overhead, latency) = activations(&dev, &fake, objects, flips).await?;
    println!(
        "activation: latency p50 {:?} p99 {:?}; overhead p50 {:?} p99 {:?}",
        percentile(&latency, 0.5),
        percentile(&latency, 0.99),
        percentile(&overhead, 0.5),
        percentile(&overhead, 0.99)
    );
    // In activation order: whether the slowest come first (a connection opened after the
    // quiet steady state) or anywhere (the machine).
    let slowest = meter::slowest(&overhead, 5);
    println!("activation: slowest overheads (index, ms): {slowest:?}");
    operator.stop();

    // (5) Warm restart.
    fake.reset_first_polls();
    let mut restarted = launcher.spawn()?;
    let (warm_start, polled) = fake.wait_all_polled(ALL_POLLED_TIMEOUT).await;
    println!("warm restart: {polled} of {objects} polled after {warm_start:?}");
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (_, warm_rss) = restarted.cpu_and_rss(Duration::from_secs(1)).await?;
    restarted.stop();
    let warm_kib = warm_rss.saturating_sub(idle_rss) as f64 / objects as f64;
    println!("warm restart: all polled after {warm_start:?}; {warm_rss} KiB RSS");

    let sample = Sample {
        objects,
        idle_cores,
        idle_rss_kib: idle_rss,
        cores,
        rss_kib: rss,
        per_object_kib,
        warm_per_object_kib: warm_kib,
        polls_per_second,
        writes_per_second: writes,
        reads_per_second: reads,
        lateness_p99,
        overhead_p50: percentile(&overhead, 0.5),
        overhead_p99: percentile(&overhead, 0.99),
        latency_p99: percentile(&latency, 0.99),
        activations: overhead.len(),
        cold_start,
        warm_start,
    };
    sample.print_table();
    std::fs::write(
        results.join("operator_scale.json"),
        serde_json::to_string_pretty(&sample.to_json())?,
    )?;
    sandbox.spawn(dev.shutdown()).await?;
    Ok(())
}

/// Starts `tidescale operator` processes against the sandbox.
struct Launcher {
    kubeconfig: PathBuf,
    log: PathBuf,
    /// Operators started so far.
    started: std::sync::atomic::AtomicUsize,
}

impl Launcher {
    fn spawn(&self) -> Result<Operator> {
        let metrics = free_addr()?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut command = Command::new(env!("CARGO_BIN_EXE_tidescale"));
        // The second one is the operator at scale (the first measures the idle baseline).
        if self
            .started
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            == 1
        {
            command.envs(scale_operator_env());
        }
        let child = command
            .arg("operator")
            .args(["--metrics-bind-address", &metrics.to_string()])
            .args(["--health-probe-bind-address", &free_addr()?.to_string()])
            .args(["--log-level", "warn"])
            .env("KUBECONFIG", &self.kubeconfig)
            .env("TIDESCALE_ADAPTER_BIND_ADDRESS", free_addr()?.to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting tidescale operator")?;
        Ok(Operator {
            child,
            metrics: format!("http://{metrics}/metrics"),
            http: reqwest::Client::new(),
        })
    }
}

/// `TIDESCALE_BENCH_SCALE_OPERATOR_ENV`: `KEY=VALUE` pairs (whitespace-separated) for the
/// operator of the cold start and steady state only, e.g. heaptrack's
/// `LD_PRELOAD=/usr/lib/heaptrack/libheaptrack_preload.so DUMP_HEAPTRACK_OUTPUT=<fifo>` (with
/// `heaptrack_interpret < <fifo>` reading, and a build `--features system-allocator`).
fn scale_operator_env() -> Vec<(String, String)> {
    let pairs = std::env::var("TIDESCALE_BENCH_SCALE_OPERATOR_ENV").unwrap_or_default();
    pairs
        .split_whitespace()
        .filter_map(|pair| pair.split_once('='))
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect()
}

/// One operator process.
struct Operator {
    child: Child,
    metrics: String,
    http: reqwest::Client,
}

impl Operator {
    async fn wait_serving(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.scrape().await.is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("the operator did not serve /metrics within 30 s (see operator_scale.log)")
    }

    /// Wait until a window of [`SETTLE_WINDOW`] passes without API writes (the start-up's status
    /// writes wait for the watch to catch up, and can trail the first round of polls), at most
    /// [`SETTLE_TIMEOUT`]; then the steady state begins. Returns how long it took.
    async fn wait_settled(&self) -> Result<Duration> {
        let started = Instant::now();
        let mut before = self.scrape().await?;
        while started.elapsed() < SETTLE_TIMEOUT {
            tokio::time::sleep(SETTLE_WINDOW).await;
            let after = self.scrape().await?;
            if after.api_requests_since(&before).writes() == 0 {
                break;
            }
            before = after;
        }
        Ok(started.elapsed())
    }

    async fn scrape(&self) -> Result<Scrape> {
        let response = self.http.get(&self.metrics).send().await?;
        Ok(Scrape::parse(&response.error_for_status()?.text().await?))
    }

    /// CPU cores used over `window`, and RSS (KiB) at its end.
    async fn cpu_and_rss(&self, window: Duration) -> Result<(f64, u64)> {
        let pid = self.child.id();
        let (cpu0, t0) = (meter::cpu_seconds(pid)?, Instant::now());
        tokio::time::sleep(window).await;
        let cores = (meter::cpu_seconds(pid)? - cpu0) / t0.elapsed().as_secs_f64();
        Ok((cores, meter::rss_kib(pid)?))
    }

    /// SIGTERM, as the kubelet stops a pod (and so a heap profiler in the process gets to
    /// write its data); SIGKILL after 10 s.
    fn stop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.stop();
    }
}

/// N Deployments at 0 and N ScaledObjects, written straight into the store (setup, not
/// measured: the operator sees them through its list and watch like any other objects).
fn create_objects(
    dev: &DevCluster,
    objects: usize,
    prometheus: std::net::SocketAddr,
) -> Result<()> {
    let store = dev.sandbox.store();
    let options = WriteOptions::default();
    create_namespace(dev, NAMESPACE)?;
    let deployments = GroupResource::new("apps", "deployments");
    let scaled_objects = GroupResource::new("keda.sh", "scaledobjects");
    for i in 0..objects {
        let name = format!("d-{i}");
        let labels = json!({"app": name});
        store.create(
            &deployments,
            json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": name, "namespace": NAMESPACE},
                "spec": {"replicas": 0, "selector": {"matchLabels": labels},
                         "template": {"metadata": {"labels": labels},
                                      "spec": {"containers": [{"name": "app", "image": "app:1"}]}}}
            }),
            &options,
        )?;
        store.create(
            &scaled_objects,
            json!({
                "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
                "metadata": {"name": format!("so-{i}"), "namespace": NAMESPACE},
                "spec": {
                    "scaleTargetRef": {"name": name},
                    "pollingInterval": 1, "cooldownPeriod": 300,
                    "minReplicaCount": 0, "maxReplicaCount": 10,
                    "triggers": [{"type": "prometheus", "metadata": {
                        "serverAddress": format!("http://{prometheus}"),
                        "query": format!("bench_value{{object=\"{i}\"}}"),
                        "threshold": "10", "activationThreshold": "0"
                    }}]
                }
            }),
            &options,
        )?;
    }
    Ok(())
}

fn create_namespace(dev: &DevCluster, name: &str) -> Result<()> {
    let namespaces = GroupResource::new("", "namespaces");
    let namespace = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
    dev.sandbox
        .store()
        .create(&namespaces, namespace, &WriteOptions::default())?;
    Ok(())
}

/// Record every Deployment scaled above 0 (named `d-<index>`) as activated, as the commits arrive.
async fn record_commits(commits: &mut tidescale_sandbox::store::Subscription, seen: &Fake) {
    while let Some(Ok(event)) = commits.next().await {
        let object = &event.object;
        let scaled = object
            .pointer("/spec/replicas")
            .and_then(serde_json::Value::as_i64)
            .unwrap_or(0)
            > 0;
        let index = object
            .pointer("/metadata/name")
            .and_then(serde_json::Value::as_str)
            .and_then(|n| n.strip_prefix("d-"))
            .and_then(|n| n.parse::<usize>().ok());
        if let (true, Some(index)) = (scaled, index) {
            seen.scaled(index);
        }
    }
}

/// Flip `flips` objects' answers from 0 to 1 at random instants; per activation, the overhead
/// (write committed − first query after the flip) and the whole latency (write committed −
/// flip). Writes are seen on an in-process subscription to the sandbox's store, as the commit
/// happens: no HTTP watch, JSON or sandbox scheduling between the write and the meter, and
/// on a thread of its own (see [`record_commits`]).
async fn activations(
    dev: &DevCluster,
    fake: &Arc<Fake>,
    objects: usize,
    flips: usize,
) -> Result<(Vec<Duration>, Vec<Duration>)> {
    let deployments = GroupResource::new("apps", "deployments");
    let mut commits = dev
        .sandbox
        .store()
        .watch(&deployments, Some(NAMESPACE), None)
        .map_err(|e| anyhow::anyhow!("watching the store: {e:?}"))?;
    let seen = Arc::clone(fake);
    // The commits are timed on a thread of their own: on this process's main runtime the
    // Prometheus stand-in answers 10,000 queries a second, and a commit event waiting there
    // for a turn would be counted as the operator's overhead.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let timer = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let watch = std::thread::spawn(move || {
        timer.block_on(async move {
            tokio::select! {
                _ = stopped => {}
                () = record_commits(&mut commits, &seen) => {}
            }
        });
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    let chosen: Vec<usize> = (0..flips).map(|k| k * objects / flips).collect();
    for &index in &chosen {
        let pause = rand::rng().random_range(100..300);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        fake.flip(index);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline && !chosen.iter().all(|&i| fake.activation(i).is_some()) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stop.send(());
    let _ = tokio::task::spawn_blocking(move || watch.join()).await;
    let measured: Vec<_> = chosen.iter().filter_map(|&i| fake.activation(i)).collect();
    if measured.len() < chosen.len() {
        println!(
            "warning: {} of {} activations not seen within 20 s",
            chosen.len() - measured.len(),
            chosen.len()
        );
    }
    Ok(measured.into_iter().unzip())
}
