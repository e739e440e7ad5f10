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

use crate::controller::events::Events;
use crate::controller::reconcile::{Context, error_policy, reconcile};
use crate::crd::ScaledObject;
use crate::scaling::scheduler::Scheduler;

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

/// Run the operator with the ambient kube config (in-cluster or `$KUBECONFIG`) until SIGTERM
/// or Ctrl-C.
pub async fn run(args: OperatorArgs) -> anyhow::Result<()> {
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
    run_with_client(client, args, cancel).await;
    Ok(())
}

/// Run the operator on `client` until `cancel` fires.
pub async fn run_with_client(client: kube::Client, args: OperatorArgs, cancel: CancellationToken) {
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
