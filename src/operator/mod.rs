//! `tidescale operator`: the in-cluster process. Watches ScaledObjects (and the HPAs it owns),
//! reconciles each into an HPA and a registration with the one scheduler that polls triggers
//! and scales targets between zero and the minimum.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::api::Api;
use kube::runtime::{Controller, watcher};
use tokio_util::sync::CancellationToken;
use tracing::info;

use std::net::SocketAddr;

use crate::controller::events::Events;
use crate::controller::reconcile::{Context, error_policy, reconcile};
use crate::crd::ScaledObject;
use crate::scaling::scheduler::Scheduler;
use crate::scaling::store::MetricStore;
use crate::telemetry::{DEFAULT_LOG_FILTER, LogFormat, Metrics, Readiness, init_logging, serve};

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
}

/// Run the operator with the ambient kube config (in-cluster or `$KUBECONFIG`) until SIGTERM
/// or Ctrl-C, serving `/metrics`, `/healthz` and `/readyz`.
pub async fn run(command: OperatorCommand) -> anyhow::Result<()> {
    let OperatorCommand { operator, process } = command;
    init_logging(&process.log_level, process.log_format)?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = kube::Client::try_default()
        .await
        .map_err(|e| anyhow::anyhow!("connecting to the Kubernetes API: {e}"))?;
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
    run_with_client(client, operator, telemetry, cancel).await;
    metrics_server.stopped().await;
    probe_server.stopped().await;
    Ok(())
}

/// Run the operator on `client` until `cancel` fires; ready once the ScaledObject cache synced.
pub async fn run_with_client(
    client: kube::Client,
    args: OperatorArgs,
    telemetry: Telemetry,
    cancel: CancellationToken,
) {
    let scaled_objects: Api<ScaledObject> = match &args.watch_namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    };
    let hpas: Api<HorizontalPodAutoscaler> = match &args.watch_namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    };
    let controller = Controller::new(scaled_objects, watcher::Config::default())
        .owns(hpas, watcher::Config::default());
    let context = Arc::new(Context {
        client: client.clone(),
        objects: controller.store(),
        scheduler: Scheduler::start(MAX_POLLS_IN_FLIGHT, cancel.clone()),
        cluster_object_namespace: args.cluster_object_namespace,
        scaler_timeout: Duration::from_millis(args.scaler_timeout_ms),
        registered: Mutex::default(),
        events: Events::new(client.clone()),
        metrics: Arc::clone(&telemetry.metrics),
        store: telemetry.values.clone(),
    });
    let synced = controller.store();
    let readiness = telemetry.readiness.clone();
    tokio::spawn(async move {
        if synced.wait_until_ready().await.is_ok() {
            readiness.set_ready();
        }
    });
    info!(
        namespace = args.watch_namespace.as_deref().unwrap_or("<all>"),
        "operator started"
    );
    controller
        .graceful_shutdown_on(cancel.cancelled_owned())
        .run(reconcile, error_policy, context)
        .for_each(|_| futures::future::ready(()))
        .await;
    info!("operator stopped");
}
