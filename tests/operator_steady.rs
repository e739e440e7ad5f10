//! Steady state costs no API calls (design.md §4.3, issue 5): once a ScaledObject has settled —
//! idle at zero, or active with messages held in the queue — its polls (every second here)
//! make no request to the Kubernetes API at all: the target's replicas come from a watch, the
//! object from the controller's cache, and `lastActiveTime` is persisted at most once every
//! `cooldownPeriod / 4`. Measured with `tidescale_api_requests_total`, which counts every
//! request of the operator's client; watches are long-lived streams and not counted as calls.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::cluster::{self, Cluster, eventually};
use common::rabbitmq::{Broker, amqp_url};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::api::Api;
use tidescale::crd::ScaledObject;

/// How long a settled object is watched for API calls (5 polls at pollingInterval 1).
const WINDOW: Duration = Duration::from_secs(5);

/// `{labels} → count` of `tidescale_api_requests_total`, watches left out.
fn api_calls(cluster: &Cluster) -> BTreeMap<String, u64> {
    let mut calls = cluster.api_requests();
    calls.retain(|labels, _| !labels.contains("verb=\"watch\""));
    calls
}

/// The requests made between two snapshots.
fn made_between(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    after
        .iter()
        .filter_map(|(labels, n)| {
            let delta = n - before.get(labels).copied().unwrap_or(0);
            (delta > 0).then(|| (labels.clone(), delta))
        })
        .collect()
}

/// When the loop last recorded a value for the object (advances once per poll).
fn last_poll(cluster: &Cluster, metric: &str) -> Option<k8s_openapi::jiff::Timestamp> {
    cluster
        .telemetry
        .values
        .get("shop", "orders", metric)
        .map(|r| r.timestamp)
}

async fn replicas(client: &kube::Client) -> i32 {
    let api: Api<Deployment> = Api::namespaced(client.clone(), "shop");
    api.get("orders")
        .await
        .ok()
        .and_then(|d| d.spec.and_then(|s| s.replicas))
        .unwrap_or(-1)
}

fn condition(so: &ScaledObject, type_: &str) -> Option<String> {
    so.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.to_string())
}

/// Over [`WINDOW`], the object is polled and the operator makes no API request.
async fn assert_no_api_calls(cluster: &Cluster, metric: &str, phase: &str) {
    let first_poll = last_poll(cluster, metric);
    let before = api_calls(cluster);
    tokio::time::sleep(WINDOW).await;
    let made = made_between(&before, &api_calls(cluster));
    assert!(
        last_poll(cluster, metric) > first_poll,
        "{phase}: the object was not polled during the window"
    );
    assert!(
        made.is_empty(),
        "{phase}: {WINDOW:?} of polls made API calls: {made:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settled_objects_are_polled_without_api_calls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let queue = format!("tidescale-e2e-steady-{}", std::process::id());
    let broker = Broker::new(&queue).await;
    let metric = format!("s0-rabbitmq-{queue}");
    let cluster = cluster::start().await;
    cluster.namespace("shop").await;
    cluster.deployment("shop", "orders", 0).await;
    cluster.create::<ScaledObject>(&format!("apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {{name: orders, namespace: shop}}\nspec:\n  scaleTargetRef: {{name: orders}}\n  pollingInterval: 1\n  cooldownPeriod: 300\n  triggers:\n    - type: rabbitmq\n      metadata: {{queueName: {queue}, mode: QueueLength, value: '5', host: '{}'}}\n", amqp_url())).await;
    let scaled_objects: Api<ScaledObject> = Api::namespaced(cluster.client.clone(), "shop");

    // Idle at zero.
    eventually("Ready and not Active", Duration::from_secs(20), || async {
        let so = scaled_objects.get("orders").await.ok()?;
        let idle = condition(&so, "Ready").as_deref() == Some("True")
            && condition(&so, "Active").as_deref() == Some("False");
        idle.then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_no_api_calls(&cluster, &metric, "idle at 0").await;
    assert_eq!(replicas(&cluster.client).await, 0);

    // Active, with the messages held in the queue.
    broker.publish(12).await;
    eventually("the target at 1", Duration::from_secs(10), || async {
        (replicas(&cluster.client).await == 1).then_some(())
    })
    .await;
    let active = eventually("Active=True", Duration::from_secs(10), || async {
        let so = scaled_objects.get("orders").await.ok()?;
        (condition(&so, "Active").as_deref() == Some("True")).then_some(so)
    })
    .await;
    assert!(
        active
            .status
            .as_ref()
            .and_then(|s| s.last_active_time.as_ref())
            .is_some(),
        "the activation persisted lastActiveTime"
    );
    // The HPA (sandbox sync period 15 s) sees the target at 1 and changes its status, which
    // the operator mirrors into HPAActive: a real change, so wait for it before measuring.
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(cluster.client.clone(), "shop");
    eventually(
        "the HPA to see 1 replica",
        Duration::from_secs(30),
        || async {
            let hpa = hpas.get("keda-hpa-orders").await.ok()?;
            (hpa.status?.current_replicas == Some(1)).then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_no_api_calls(&cluster, &metric, "active at 1").await;
    assert_eq!(replicas(&cluster.client).await, 1, "still scaled out");

    let scale_writes: u64 = api_calls(&cluster)
        .iter()
        .filter(|(labels, _)| labels.contains("verb=\"patch\"") && labels.contains("/scale\""))
        .map(|(_, n)| n)
        .sum();
    assert_eq!(scale_writes, 1, "one /scale write for one transition");
    broker.delete().await;
    cluster.shutdown().await;
}
