//! `tidescale operator`: the in-cluster process. Watches ScaledObjects (and the HPAs it owns),
//! reconciles each into an HPA and a registration with the one scheduler that polls triggers
//! and scales targets between zero and the minimum.
//!
//! With `--leader-elect` several replicas run and a Lease ([`leader`]) picks the one that runs
//! the controller and the scheduler; the others only keep their caches warm (and serve or
//! forward metric reads), and start the controller when they win the Lease.

pub mod client;
mod inputs;
pub mod leader;
mod leader_args;
mod ready;
pub mod watch_backoff;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::api::Api;
use kube::runtime::{Controller, WatchStreamExt, reflector, watcher};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::adapter::AdapterArgs;
use crate::adapter::service::AdapterInputs;
use crate::controller::events::Events;
use crate::controller::reconcile::{Context, error_policy, reconcile};
use crate::crd::ScaledObject;
use crate::scaling::poll::Handles;
use crate::scaling::scheduler::Scheduler;
use crate::scaling::store::MetricStore;
use crate::telemetry::{DEFAULT_LOG_FILTER, LogFormat, Metrics, Readiness, init_logging, serve};
use watch_backoff::{errors_logged, watch};

pub use leader::{Leadership, LeadershipWatch};
pub use leader_args::{ConfigError, DEFAULT_LEASE_NAME, LeaderElectionArgs, LeaseConfig};

/// Most reconciles in flight at once.
const MAX_RECONCILES: u16 = 128;
/// Most polls in flight at once.
const MAX_POLLS_IN_FLIGHT: usize = 256;

/// Flags of `tidescale operator`.
#[derive(Debug, Clone, clap::Args)]
pub struct OperatorArgs {
    /// Only watch ScaledObjects in this namespace (all namespaces when unset).
    #[arg(long, env = "WATCH_NAMESPACE", value_name = "NAMESPACE")]
    pub watch_namespace: Option<String>,
    /// Namespace of the Secrets and ConfigMaps that ClusterTriggerAuthentications name.
    #[arg(
        long,
        env = "KEDA_CLUSTER_OBJECT_NAMESPACE",
        default_value = "keda",
        value_name = "NAMESPACE"
    )]
    pub cluster_object_namespace: String,
    /// Upper bound of one scaler query, in milliseconds (KEDA's KEDA_HTTP_DEFAULT_TIMEOUT).
    #[arg(
        long,
        env = "KEDA_HTTP_DEFAULT_TIMEOUT",
        default_value_t = 3000,
        value_name = "MS"
    )]
    pub scaler_timeout_ms: u64,
    /// Threads of the scaling loop's own runtime (the scheduler, every poll and the scaler
    /// connections they open). One polls ~20,000 objects a second of a cheap HTTP trigger;
    /// raise it for more, or for scalers that spend CPU per poll.
    #[arg(
        long,
        env = "TIDESCALE_POLL_THREADS",
        default_value_t = 1,
        value_parser = clap::value_parser!(u16).range(1..=256),
        value_name = "N"
    )]
    pub poll_threads: u16,
}

/// Flags of the `tidescale operator` process: what it serves besides reconciling.
#[derive(Debug, Clone, clap::Args)]
pub struct ProcessArgs {
    /// Where `/metrics` is served (Prometheus text format, KEDA's metric families).
    #[arg(
        long,
        env = "TIDESCALE_METRICS_BIND_ADDRESS",
        default_value = "0.0.0.0:8080",
        value_name = "ADDR"
    )]
    pub metrics_bind_address: SocketAddr,
    /// Where `/healthz` and `/readyz` are served.
    #[arg(
        long,
        env = "TIDESCALE_HEALTH_PROBE_BIND_ADDRESS",
        default_value = "0.0.0.0:8081",
        value_name = "ADDR"
    )]
    pub health_probe_bind_address: SocketAddr,
    /// Log filter, e.g. `info` or `info,tidescale=debug` (`RUST_LOG` overrides it).
    #[arg(long, env = "TIDESCALE_LOG_LEVEL", default_value = DEFAULT_LOG_FILTER, value_name = "FILTER")]
    pub log_level: String,
    /// Log line format.
    #[arg(long, env = "TIDESCALE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Plain)]
    pub log_format: LogFormat,
}

/// `tidescale operator`: reconciling flags and process flags.
#[derive(Debug, Clone, clap::Args)]
pub struct OperatorCommand {
    /// What to reconcile and how.
    #[command(flatten)]
    pub operator: OperatorArgs,
    /// What the process serves.
    #[command(flatten)]
    pub process: ProcessArgs,
    /// Leader election among replicas.
    #[command(flatten)]
    pub leader_election: LeaderElectionArgs,
    /// The metrics adapter.
    #[command(flatten)]
    pub adapter: AdapterArgs,
}

/// What the loop shares with the servers: metrics, readiness and the metric values.
#[derive(Clone, Default)]
pub struct Telemetry {
    /// KEDA's metric families.
    pub metrics: Arc<Metrics>,
    /// `/readyz`.
    pub readiness: Readiness,
    /// The values the loop finds, which the metrics adapter serves.
    pub values: MetricStore,
    /// Who leads (always this process without `--leader-elect`); followers forward metric
    /// reads to `leader_endpoint`.
    pub leadership: LeadershipWatch,
}

/// Run the operator with the ambient kube config (in-cluster or `$KUBECONFIG`) until SIGTERM
/// or Ctrl-C, serving `/metrics`, `/healthz` and `/readyz`.
pub async fn run(command: OperatorCommand) -> anyhow::Result<()> {
    let OperatorCommand {
        operator,
        process,
        leader_election,
        adapter,
    } = command;
    init_logging(&process.log_level, process.log_format)?;
    let adapter_address = (!adapter.disable_adapter).then_some(adapter.adapter_bind_address);
    let lease = leader_election
        .config(&adapter.pod_namespace, adapter_address)
        .map_err(|e| anyhow::anyhow!("invalid leader election settings: {e}"))?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = client::infer().await?;
    let cancel = CancellationToken::new();
    let stop = cancel.clone();
    tokio::spawn(async move {
        crate::dev::shutdown_signal().await.ok();
        stop.cancel();
    });
    let telemetry = Telemetry::default();
    let metrics_server = serve(
        process.metrics_bind_address,
        Arc::clone(&telemetry.metrics),
        telemetry.readiness.clone(),
        cancel.clone(),
    )
    .await?;
    let probe_server = serve(
        process.health_probe_bind_address,
        Arc::clone(&telemetry.metrics),
        telemetry.readiness.clone(),
        cancel.clone(),
    )
    .await?;
    info!(metrics = %metrics_server.local_addr(), probes = %probe_server.local_addr(), "serving telemetry");
    let adapter_server = if adapter.disable_adapter {
        None
    } else {
        let inputs = AdapterInputs {
            store: telemetry.values.clone(),
            readiness: telemetry.readiness.clone(),
            leadership: lease.is_some().then(|| telemetry.leadership.subscribe()),
        };
        Some(
            crate::adapter::service::start(&adapter, client.clone(), inputs, cancel.clone())
                .await?,
        )
    };
    match lease {
        Some(lease) => run_with_leader_election(client, operator, lease, telemetry, cancel).await,
        None => run_with_client(client, operator, telemetry, cancel).await,
    }
    metrics_server.stopped().await;
    probe_server.stopped().await;
    if let Some(server) = adapter_server {
        server.stopped().await;
    }
    Ok(())
}

/// Run the operator alone (no leader election) on `client` until `cancel` fires; ready once
/// the ScaledObject cache synced and every object found then was polled once.
pub async fn run_with_client(
    client: kube::Client,
    args: OperatorArgs,
    telemetry: Telemetry,
    cancel: CancellationToken,
) {
    // Every API request counted (`tidescale_api_requests_total`), and sent from this runtime.
    let client = crate::telemetry::api_requests::counting(client, Arc::clone(&telemetry.metrics));
    telemetry.leadership.publish(Leadership {
        is_leader: true,
        holder: None,
        leader_endpoint: None,
    });
    telemetry.metrics.set_leader(true);
    let cache = ready::Cache::spawn(scaled_objects_api(&client, &args), &cancel);
    let first_round = telemetry.readiness.clone();
    run_controller(client, args, telemetry, cancel, cache, first_round).await;
}

/// Run one replica of several on `client` until `cancel` fires: compete for `lease`, run the
/// controller and the scheduler only while leading, stop them promptly when leadership is
/// lost (polls still in flight are dropped before they write), and on `cancel` stop them and
/// then release the Lease so a standby takes over at once.
///
/// Ready once the ScaledObject cache synced; a replica that leads from the start is ready only
/// after its first round of polls (see [`run_with_client`]).
pub async fn run_with_leader_election(
    client: kube::Client,
    args: OperatorArgs,
    lease: LeaseConfig,
    telemetry: Telemetry,
    cancel: CancellationToken,
) {
    // Every API request counted, and sent from this runtime (see `api_requests`).
    let client = crate::telemetry::api_requests::counting(client, Arc::clone(&telemetry.metrics));
    let first_round = Readiness::new();
    let cache = ready::Cache::spawn(scaled_objects_api(&client, &args), &cancel);
    let readiness = tokio::spawn(ready::follower_or_leader(
        cache.clone(),
        telemetry.leadership.subscribe(),
        first_round.clone(),
        telemetry.readiness.clone(),
        cancel.clone(),
    ));
    let mut elector =
        leader::LeaderElector::new(client.clone(), lease, telemetry.leadership.clone());
    let election = {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            elector.run(&cancel).await;
            elector
        })
    };
    let mut leadership = telemetry.leadership.subscribe();
    let mut term: Option<(CancellationToken, tokio::task::JoinHandle<()>)> = None;
    loop {
        let leading = leadership.borrow_and_update().is_leader;
        telemetry.metrics.set_leader(leading);
        if leading && term.is_none() {
            info!("leading: starting the controller and the scheduler");
            let stop = cancel.child_token();
            let task = tokio::spawn(run_controller(
                client.clone(),
                args.clone(),
                telemetry.clone(),
                stop.clone(),
                cache.clone(),
                first_round.clone(),
            ));
            term = Some((stop, task));
        } else if !leading && let Some((stop, task)) = term.take() {
            info!("not leading: stopping the controller and the scheduler");
            stop.cancel();
            let _ = task.await;
        }
        tokio::select! {
            () = cancel.cancelled() => break,
            changed = leadership.changed() => if changed.is_err() { break },
        }
    }
    // Stop writing before letting anyone else lead.
    if let Some((stop, task)) = term.take() {
        stop.cancel();
        let _ = task.await;
    }
    match election.await {
        Ok(mut elector) => elector.release().await,
        Err(error) => warn!(error = %error, "leader election task failed"),
    }
    telemetry.metrics.set_leader(false);
    let _ = readiness.await;
}

/// What the controller's cache keeps of a ScaledObject: everything but `managedFields`, which
/// nothing here reads and which (field sets of every writer, status included) were the larger
/// part of a cached object.
fn slim(object: &mut ScaledObject) {
    object.metadata.managed_fields = None;
}

fn scaled_objects_api(client: &kube::Client, args: &OperatorArgs) -> Api<ScaledObject> {
    match &args.watch_namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    }
}

/// The controller and the scheduler until `cancel` fires, returning only once no poll runs
/// anymore; raises `first_round` once `cache` synced and every object found then was
/// reconciled and polled once.
async fn run_controller(
    client: kube::Client,
    args: OperatorArgs,
    telemetry: Telemetry,
    cancel: CancellationToken,
    cache: ready::Cache,
    first_round: Readiness,
) {
    let scaled_objects = scaled_objects_api(&client, &args);
    let hpas: Api<HorizontalPodAutoscaler> = match &args.watch_namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    };
    let sources = Arc::new(crate::controller::secrets::SourceIndex::default());
    // Bounded reconciles: 10,000 objects at start must not all hit the API server at once
    // (a thundering herd of timeouts and retries; benches/operator_scale.rs).
    // One stream per watch, each with its own backoff (watch_backoff.rs): a relisting or
    // failing watch does not pause the others.
    let (objects, writer) = reflector::store();
    let stream = inputs::changed_inputs(
        watch(
            scaled_objects,
            watcher::Config::default().page_size(ready::PAGE_SIZE),
        )
        .modify(slim)
        .reflect(writer),
    );
    let hpa_index = crate::controller::hpa_index::HpaIndex::default();
    let index = hpa_index.clone();
    let hpa_events = watch(hpas, watcher::Config::default())
        .inspect(move |event| {
            if let Ok(event) = event {
                index.apply(event);
            }
        })
        .touched_objects();
    let controller = Controller::for_stream(errors_logged(stream, "scaledobjects"), objects)
        .owns_stream(errors_logged(hpa_events, "horizontalpodautoscalers"))
        .with_config(kube::runtime::controller::Config::default().concurrency(MAX_RECONCILES));
    let controller =
        crate::controller::secrets::watch_sources(controller, &client, &args, &sources);
    let poll_runtime = match crate::scaling::runtime::poll_runtime(args.poll_threads.into()) {
        Ok(runtime) => runtime,
        Err(error) => {
            warn!(error = %error, "cannot start the poll runtime; polling on the main one");
            tokio::runtime::Handle::current()
        }
    };
    let scheduler = Scheduler::start_on(&poll_runtime, MAX_POLLS_IN_FLIGHT, cancel.clone());
    let handles = Arc::new(Handles {
        client: client.clone(),
        objects: controller.store(),
        timeout: Duration::from_millis(args.scaler_timeout_ms),
        events: Events::new(client.clone()),
        metrics: Arc::clone(&telemetry.metrics),
        store: telemetry.values.clone(),
        targets: crate::scaling::replicas::TargetCache::new(
            client.clone(),
            args.watch_namespace.clone(),
            cancel.clone(),
        ),
    });
    let context = Arc::new(Context {
        handles,
        scheduler: scheduler.clone(),
        cluster_object_namespace: args.cluster_object_namespace,
        registered: Mutex::default(),
        sources,
        kinds: Default::default(),
        hpas: hpa_index,
    });
    let reconciled = ready::Reconciled::default();
    let gate_stop = cancel.child_token();
    let gate = tokio::spawn(ready::first_round(
        cache,
        reconciled.clone(),
        scheduler.clone(),
        first_round,
        gate_stop.clone(),
    ));
    info!(
        namespace = args.watch_namespace.as_deref().unwrap_or("<all>"),
        "operator started"
    );
    controller
        .graceful_shutdown_on(cancel.clone().cancelled_owned())
        .run(reconcile, error_policy, context)
        .for_each(|result| {
            reconciled.record(&result);
            futures::future::ready(())
        })
        .await;
    gate_stop.cancel();
    let _ = gate.await;
    // Polls in flight were dropped when `cancel` fired; once this returns none can write.
    scheduler.stopped().await;
    info!("operator stopped");
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_operator_command_line_has_no_clashing_flags() {
        crate::cli::Cli::command().debug_assert();
        let cli = <crate::cli::Cli as clap::Parser>::try_parse_from([
            "tidescale",
            "operator",
            "--leader-elect",
            "--pod-namespace=ops",
            "--leader-election-retry-period=1s",
        ]);
        let Ok(crate::cli::Command::Operator(command)) = cli.map(|c| c.command) else {
            panic!("parses");
        };
        assert!(command.leader_election.leader_elect);
        assert_eq!(command.adapter.pod_namespace, "ops");
    }
}
