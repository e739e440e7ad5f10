//! Rows of KEDA's decision table (`reference/keda.md` §2.5, §1.1 annotations) end to end, with
//! the real RabbitMQ: `idleReplicaCount`, `initialCooldownPeriod`, each pause annotation set
//! and removed, `force-activation`, an invalid spec, and writers racing the operator. The pure
//! rows are table-tested in `src/scaling/decision_tests.rs`; these check the wiring.

mod common;

use std::time::{Duration, Instant};

use common::cluster::{
    self, Cluster, condition_of, deployment_replicas, eventually, patch_scaled_object,
    per_test_amqp,
};
use common::rabbitmq::{Broker, amqp_url};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::api::Api;
use tidescale::crd::ScaledObject;

/// A cluster with namespace `shop`, Deployment `orders` at `replicas` and a fresh queue.
async fn setup(test: &str, replicas: i32) -> (Cluster, Broker, String) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let queue = format!("tidescale-e2e-{test}-{}", std::process::id());
    let broker = Broker::new(&queue).await;
    let cluster = cluster::start().await;
    cluster.namespace("shop").await;
    cluster.deployment("shop", "orders", replicas).await;
    (cluster, broker, queue)
}

/// ScaledObject `orders` on the queue, polling every second, with `extra` spec lines and
/// `annotations` (a YAML flow map).
async fn create(cluster: &Cluster, queue: &str, extra: &str, annotations: &str) {
    let host = per_test_amqp(&amqp_url());
    cluster.create::<ScaledObject>(&format!("apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {{name: orders, namespace: shop, annotations: {annotations}}}\nspec:\n  scaleTargetRef: {{name: orders}}\n  pollingInterval: 1\n{extra}  triggers:\n    - type: rabbitmq\n      metadata: {{queueName: {queue}, mode: QueueLength, value: '5', host: '{host}'}}\n")).await;
}

async fn replicas(cluster: &Cluster) -> i32 {
    deployment_replicas(&cluster.client, "shop", "orders").await
}

async fn wait_replicas(cluster: &Cluster, wanted: i32, within: u64) {
    eventually(
        &format!("the target at {wanted}"),
        Duration::from_secs(within),
        || async { (replicas(cluster).await == wanted).then_some(()) },
    )
    .await;
}

/// The target stays at `wanted` for `secs` seconds.
async fn stays(cluster: &Cluster, wanted: i32, secs: u64) {
    for _ in 0..secs * 4 {
        assert_eq!(replicas(cluster).await, wanted, "the target moved");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn annotate(cluster: &Cluster, key: &str, value: serde_json::Value) {
    let patch = serde_json::json!({"metadata": {"annotations": {key: value}}});
    patch_scaled_object(&cluster.client, "shop", "orders", patch).await;
}

async fn wait_condition(cluster: &Cluster, type_: &str, status: &str) -> (String, String) {
    let api: Api<ScaledObject> = Api::namespaced(cluster.client.clone(), "shop");
    eventually(
        &format!("{type_}={status}"),
        Duration::from_secs(15),
        || async {
            let so = api.get("orders").await.ok()?;
            let (found, reason, message) = condition_of(&so, type_)?;
            (found == status).then_some((reason, message))
        },
    )
    .await
}

async fn hpa(cluster: &Cluster) -> Option<HorizontalPodAutoscaler> {
    let api: Api<HorizontalPodAutoscaler> = Api::namespaced(cluster.client.clone(), "shop");
    api.get_opt("keda-hpa-orders").await.ok().flatten()
}

async fn done(cluster: Cluster, broker: Broker) {
    broker.delete().await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_replicas_replace_zero_and_activation_goes_to_the_minimum() {
    let (cluster, broker, queue) = setup("idle", 4).await;
    let spec =
        "  minReplicaCount: 3\n  idleReplicaCount: 1\n  maxReplicaCount: 5\n  cooldownPeriod: 1\n";
    create(&cluster, &queue, spec, "{}").await;
    // Never active, no initial cooldown: straight to the idle count, not to zero.
    wait_replicas(&cluster, 1, 15).await;
    let min = hpa(&cluster).await.and_then(|h| h.spec?.min_replicas);
    assert_eq!(min, Some(3));
    broker.publish(8).await;
    wait_replicas(&cluster, 3, 10).await;
    broker.purge().await;
    wait_replicas(&cluster, 1, 10).await;
    done(cluster, broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initial_cooldown_delays_the_first_scale_in() {
    let (cluster, broker, queue) = setup("initial", 2).await;
    let created = Instant::now();
    create(
        &cluster,
        &queue,
        "  cooldownPeriod: 0\n  initialCooldownPeriod: 5\n",
        "{}",
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        replicas(&cluster).await,
        2,
        "scaled in during the initial cooldown"
    );
    wait_replicas(&cluster, 0, 12).await;
    // The cooldown counts from `creationTimestamp`, which has whole seconds (as in KEDA): up to
    // a second earlier than the create call returned.
    assert!(
        created.elapsed() >= Duration::from_secs(4),
        "{:?}",
        created.elapsed()
    );
    done(cluster, broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_freezes_the_target_and_removing_it_resumes() {
    let (cluster, broker, queue) = setup("paused", 0).await;
    create(&cluster, &queue, "  cooldownPeriod: 1\n", "{}").await;
    broker.publish(8).await;
    wait_replicas(&cluster, 1, 15).await;
    annotate(&cluster, "autoscaling.keda.sh/paused", "true".into()).await;
    wait_condition(&cluster, "Paused", "True").await;
    eventually("the HPA removed", Duration::from_secs(10), || async {
        hpa(&cluster).await.is_none().then_some(())
    })
    .await;
    broker.purge().await;
    stays(&cluster, 1, 3).await;
    annotate(
        &cluster,
        "autoscaling.keda.sh/paused",
        serde_json::Value::Null,
    )
    .await;
    wait_condition(&cluster, "Paused", "False").await;
    wait_replicas(&cluster, 0, 15).await;
    assert!(hpa(&cluster).await.is_some(), "the HPA is back");
    done(cluster, broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_scale_in_keeps_the_target_up_until_removed() {
    let (cluster, broker, queue) = setup("pausein", 0).await;
    create(&cluster, &queue, "  cooldownPeriod: 1\n", "{}").await;
    broker.publish(8).await;
    wait_replicas(&cluster, 1, 15).await;
    annotate(
        &cluster,
        "autoscaling.keda.sh/paused-scale-in",
        "true".into(),
    )
    .await;
    let (reason, message) = wait_condition(&cluster, "Paused", "True").await;
    assert_eq!(
        (reason.as_str(), message.as_str()),
        ("ScaledObjectPaused", "ScaledObject is paused for scale in")
    );
    let policy = eventually("scale-down disabled", Duration::from_secs(10), || async {
        let behavior = hpa(&cluster).await?.spec?.behavior?;
        behavior.scale_down?.select_policy
    })
    .await;
    assert_eq!(policy, "Disabled");
    broker.purge().await;
    stays(&cluster, 1, 3).await;
    annotate(
        &cluster,
        "autoscaling.keda.sh/paused-scale-in",
        serde_json::Value::Null,
    )
    .await;
    wait_condition(&cluster, "Paused", "False").await;
    wait_replicas(&cluster, 0, 10).await;
    done(cluster, broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_scale_out_keeps_the_target_at_zero_until_removed() {
    let (cluster, broker, queue) = setup("pauseout", 0).await;
    let annotations = "{autoscaling.keda.sh/paused-scale-out: 'true'}";
    create(&cluster, &queue, "  cooldownPeriod: 1\n", annotations).await;
    let (_, message) = wait_condition(&cluster, "Paused", "True").await;
    assert_eq!(message, "ScaledObject is paused for scale out");
    let policy = hpa(&cluster)
        .await
        .and_then(|h| h.spec?.behavior?.scale_up?.select_policy);
    assert_eq!(policy.as_deref(), Some("Disabled"));
    broker.publish(8).await;
    stays(&cluster, 0, 3).await;
    annotate(
        &cluster,
        "autoscaling.keda.sh/paused-scale-out",
        serde_json::Value::Null,
    )
    .await;
    wait_replicas(&cluster, 1, 10).await;
    wait_condition(&cluster, "Paused", "False").await;
    done(cluster, broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_activation_wakes_an_idle_target_until_removed() {
    let (cluster, broker, queue) = setup("force", 0).await;
    create(&cluster, &queue, "  cooldownPeriod: 1\n", "{}").await;
    wait_condition(&cluster, "Ready", "True").await;
    stays(&cluster, 0, 1).await;
    annotate(
        &cluster,
        "autoscaling.keda.sh/force-activation",
        "true".into(),
    )
    .await;
    wait_replicas(&cluster, 1, 10).await;
    stays(&cluster, 1, 2).await;
    annotate(
        &cluster,
        "autoscaling.keda.sh/force-activation",
        serde_json::Value::Null,
    )
    .await;
    wait_replicas(&cluster, 0, 10).await;
    done(cluster, broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_spec_is_not_ready_scales_nothing_and_recovers_when_fixed() {
    let (cluster, broker, queue) = setup("invalid", 0).await;
    broker.publish(8).await;
    create(
        &cluster,
        &queue,
        "  minReplicaCount: 5\n  maxReplicaCount: 2\n",
        "{}",
    )
    .await;
    let (reason, message) = wait_condition(&cluster, "Ready", "False").await;
    assert_eq!(reason, "ScaledObjectCheckFailed");
    assert!(message.contains("minReplicaCount"), "{message}");
    stays(&cluster, 0, 3).await;
    assert!(hpa(&cluster).await.is_none(), "no HPA for an invalid spec");

    let fix = serde_json::json!({"spec": {"minReplicaCount": 0}});
    patch_scaled_object(&cluster.client, "shop", "orders", fix).await;
    wait_condition(&cluster, "Ready", "True").await;
    wait_replicas(&cluster, 1, 10).await;
    done(cluster, broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_writers_neither_lose_status_nor_stop_scaling() {
    let (cluster, broker, queue) = setup("race", 0).await;
    create(&cluster, &queue, "  cooldownPeriod: 30\n", "{}").await;
    wait_condition(&cluster, "Ready", "True").await;
    broker.publish(8).await;
    // Metadata writes race the status writes of the activation.
    for i in 0..20 {
        let patch = serde_json::json!({"metadata": {"labels": {"race": format!("r{i}")}}});
        patch_scaled_object(&cluster.client, "shop", "orders", patch).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_replicas(&cluster, 1, 10).await;
    wait_condition(&cluster, "Active", "True").await;
    let api: Api<ScaledObject> = Api::namespaced(cluster.client.clone(), "shop");
    let so = api.get("orders").await.expect("orders");
    assert!(so.status.unwrap().last_active_time.is_some());
    // Someone scales the active target to zero behind the operator's back: the next poll
    // activates it again.
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(cluster.client.clone(), "shop");
    let to_zero = kube::api::Patch::Merge(serde_json::json!({"spec": {"replicas": 0}}));
    deployments
        .patch_scale("orders", &Default::default(), &to_zero)
        .await
        .expect("scale to zero");
    wait_replicas(&cluster, 1, 10).await;
    done(cluster, broker).await;
}
