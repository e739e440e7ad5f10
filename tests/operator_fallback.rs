//! Fallback end to end: a trigger whose backend is down, on a workload at zero. KEDA's HPA path
//! cannot help there (the HPA is disabled at zero), so the loop itself scales out to the
//! fallback replicas once failures pass the threshold, records health and the Fallback
//! condition, and never scales in because of the errors.

mod common;

use std::time::Duration;

use common::cluster::{self, eventually};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::Api;
use tidescale::crd::ScaledObject;

async fn replicas(client: &kube::Client) -> i32 {
    let api: Api<Deployment> = Api::namespaced(client.clone(), "shop");
    api.get("api")
        .await
        .ok()
        .and_then(|d| d.spec.and_then(|s| s.replicas))
        .unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_trigger_at_zero_scales_out_to_fallback_replicas() {
    // A port nothing listens on: every query fails fast.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let cluster = cluster::start().await;
    cluster.namespace("shop").await;
    cluster.deployment("shop", "api", 0).await;
    cluster.create::<ScaledObject>(&format!("apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {{name: api, namespace: shop}}\nspec:\n  scaleTargetRef: {{name: api}}\n  pollingInterval: 1\n  cooldownPeriod: 1\n  fallback: {{failureThreshold: 2, replicas: 3}}\n  triggers:\n    - type: prometheus\n      metadata: {{serverAddress: 'http://{dead}', query: 'up', threshold: '5', timeout: '300'}}\n")).await;

    eventually(
        "the target to scale out to the fallback replicas",
        Duration::from_secs(20),
        || async { (replicas(&cluster.client).await == 3).then_some(()) },
    )
    .await;
    let scaled_objects: Api<ScaledObject> = Api::namespaced(cluster.client.clone(), "shop");
    let so = eventually("Fallback=True", Duration::from_secs(10), || async {
        let so = scaled_objects.get("api").await.ok()?;
        let fallback = so
            .status
            .as_ref()?
            .conditions
            .iter()
            .find(|c| c.type_ == "Fallback")?
            .status
            .clone();
        (fallback == "True").then_some(so)
    })
    .await;
    let health = &so.status.unwrap().health["s0-prometheus"];
    assert_eq!(health.status.as_deref(), Some("Failing"));
    assert!(health.number_of_failures.unwrap() > 2);
    let served = cluster
        .telemetry
        .values
        .get("shop", "api", "s0-prometheus")
        .expect("a record");
    assert_eq!(
        (served.value, served.error),
        (15.0, None),
        "fallback serves 3 replicas × target 5"
    );
    // The errors continue well past the cooldown: nothing scales in because of them.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(replicas(&cluster.client).await, 3);
    cluster.shutdown().await;
}
