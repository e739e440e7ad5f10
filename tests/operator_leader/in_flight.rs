//! A poll still waiting for its backend when the leader loses its Lease writes nothing: the
//! backend (a local Prometheus stand-in) holds the first query until the operator has stepped
//! down, then answers a value that would activate the target. No `/scale` write may follow.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, PostParams};
use tidescale::crd::ScaledObject;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use super::*;

const NS: &str = "inflight";
const LEASE: &str = "inflight";

/// A Prometheus that counts queries, says when one arrived, and answers only once released.
#[derive(Clone)]
struct HeldBackend {
    queries: Arc<AtomicUsize>,
    arrived: Arc<Notify>,
    released: watch::Receiver<bool>,
}

async fn query(State(backend): State<HeldBackend>) -> String {
    backend.queries.fetch_add(1, Ordering::SeqCst);
    backend.arrived.notify_one();
    let mut released = backend.released.clone();
    let _ = released.wait_for(|released| *released).await;
    r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1700000000,"10"]}]}}"#.to_owned()
}

/// Serve the held backend on a local port; its address and the switch that releases answers.
async fn held_backend() -> (String, HeldBackend, watch::Sender<bool>) {
    let (release, released) = watch::channel(false);
    let backend = HeldBackend {
        queries: Arc::default(),
        arrived: Arc::default(),
        released,
    };
    let app = Router::new()
        .route("/api/v1/query", get(query))
        .with_state(backend.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (address, backend, release)
}

/// Write the Lease over to `thief` for a minute, as another replica taking over would.
async fn steal_lease(api: &Api<Lease>) {
    eventually("the lease taken over", Duration::from_secs(5), || async {
        let mut lease = api.get(LEASE).await.ok()?;
        let spec = lease.spec.get_or_insert_default();
        spec.holder_identity = Some("thief".into());
        spec.lease_duration_seconds = Some(60);
        api.replace(LEASE, &PostParams::default(), &lease)
            .await
            .ok()
            .map(|_| ())
    })
    .await;
}

async fn replicas(client: &kube::Client) -> i32 {
    let api: Api<Deployment> = Api::namespaced(client.clone(), NS);
    let deployment = api.get("orders").await.expect("the deployment");
    deployment.spec.and_then(|s| s.replicas).unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_in_flight_when_leadership_is_lost_does_not_scale() {
    let (address, backend, release) = held_backend().await;
    let dev = cluster().await;
    let client = dev.client().await.expect("client");
    create_namespace(&client, NS).await;
    create::<Deployment>(&client, &orders_deployment(NS)).await;

    let telemetry = Telemetry::default();
    let cancel = CancellationToken::new();
    // Queries may take long: only the loss of leadership may end this one.
    let args = tidescale::operator::OperatorArgs {
        scaler_timeout_ms: 30_000,
        poll_threads: 1,
        ..dev_operator_args()
    };
    let task = tokio::spawn(run_with_leader_election(
        dev.client().await.expect("client"),
        args,
        lease_config(LEASE, "a"),
        telemetry.clone(),
        cancel.clone(),
    ));
    let leads = || telemetry.leadership.current().is_leader;
    eventually("leading", Duration::from_secs(5), || async {
        leads().then_some(())
    })
    .await;
    create::<ScaledObject>(&client, &format!("apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {{name: orders, namespace: {NS}}}\nspec:\n  scaleTargetRef: {{name: orders}}\n  pollingInterval: 1\n  triggers:\n    - type: prometheus\n      metadata: {{serverAddress: '{address}', query: 'sum(orders)', threshold: '5'}}\n")).await;
    tokio::time::timeout(Duration::from_secs(15), backend.arrived.notified())
        .await
        .expect("the first poll queries the backend");

    steal_lease(&Api::namespaced(client.clone(), NAMESPACE)).await;
    eventually("stepped down", Duration::from_secs(5), || async {
        (!leads()).then_some(())
    })
    .await;
    // The held query now answers 10 (> activation 0): a poll still running would scale 0→1.
    release.send(true).expect("release the backend");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(replicas(&client).await, 0, "a /scale write after the term");
    assert_eq!(
        backend.queries.load(Ordering::SeqCst),
        1,
        "no poll after leadership was lost"
    );
    assert!(!leads(), "the thief's lease is still valid");
    cancel.cancel();
    task.await.expect("stops");
    dev.shutdown().await;
}
