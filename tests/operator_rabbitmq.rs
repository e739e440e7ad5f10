//! End to end on the sandbox with the real RabbitMQ: a ScaledObject on a Deployment at zero;
//! messages arrive → the operator scales the target to one within a polling interval and the
//! HPA exists with KEDA's spec; the queue drains → after the cooldown the target returns to
//! zero.

mod common;

use std::time::Duration;

use common::cluster::{self, eventually};
use common::rabbitmq::{Broker, amqp_url};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use tidescale::crd::{ScaledObject, TriggerAuthentication};

async fn replicas(client: &kube::Client, namespace: &str, name: &str) -> i32 {
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    api.get(name)
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_queue_scales_a_deployment_from_zero_and_back() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let queue = format!("tidescale-e2e-{}", std::process::id());
    let broker = Broker::new(&queue).await;
    let cluster = cluster::start().await;
    cluster.namespace("shop").await;
    cluster.deployment("shop", "orders", 0).await;
    cluster
        .create::<Secret>(&format!(
            "metadata: {{name: rabbit, namespace: shop}}\nstringData: {{host: '{}'}}\n",
            amqp_url()
        ))
        .await;
    cluster.create::<TriggerAuthentication>("apiVersion: keda.sh/v1alpha1\nkind: TriggerAuthentication\nmetadata: {name: rabbit, namespace: shop}\nspec:\n  secretTargetRef: [{parameter: host, name: rabbit, key: host}]\n").await;
    cluster.create::<ScaledObject>(&format!("apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {{name: orders, namespace: shop}}\nspec:\n  scaleTargetRef: {{name: orders}}\n  pollingInterval: 1\n  cooldownPeriod: 3\n  maxReplicaCount: 7\n  triggers:\n    - type: rabbitmq\n      metadata: {{queueName: {queue}, mode: QueueLength, value: '5'}}\n      authenticationRef: {{name: rabbit}}\n")).await;

    let scaled_objects: Api<ScaledObject> = Api::namespaced(cluster.client.clone(), "shop");
    let ready = eventually(
        "the ScaledObject to be Ready",
        Duration::from_secs(20),
        || async {
            let so = scaled_objects.get("orders").await.ok()?;
            (condition(&so, "Ready").as_deref() == Some("True")).then_some(so)
        },
    )
    .await;
    let status = ready.status.clone().unwrap();
    assert_eq!(status.hpa_name.as_deref(), Some("keda-hpa-orders"));
    assert_eq!(
        status.scale_target_kind.as_deref(),
        Some("apps/v1.Deployment")
    );
    assert_eq!(status.original_replica_count, Some(0));
    assert_eq!(
        status.external_metric_names,
        [format!("s0-rabbitmq-{queue}")]
    );
    assert_eq!(
        ready.metadata.labels.as_ref().unwrap()["scaledobject.keda.sh/name"],
        "orders"
    );
    assert!(
        ready
            .metadata
            .finalizers
            .as_ref()
            .unwrap()
            .contains(&"finalizer.keda.sh".to_owned())
    );
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(cluster.client.clone(), "shop");
    let hpa = hpas
        .get("keda-hpa-orders")
        .await
        .expect("the owned HPA exists");
    let spec = hpa.spec.unwrap();
    assert_eq!((spec.min_replicas, spec.max_replicas), (Some(1), 7));
    let metric = &spec.metrics.unwrap()[0];
    assert_eq!(
        metric.external.as_ref().unwrap().metric.name,
        format!("s0-rabbitmq-{queue}")
    );
    assert_eq!(
        replicas(&cluster.client, "shop", "orders").await,
        0,
        "nothing to do yet"
    );

    broker.publish(12).await;
    let started = std::time::Instant::now();
    eventually(
        "the target to scale to 1",
        Duration::from_secs(10),
        || async { (replicas(&cluster.client, "shop", "orders").await == 1).then_some(()) },
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "activation took {:?}",
        started.elapsed()
    );
    let active = eventually("Active=True", Duration::from_secs(10), || async {
        let so = scaled_objects.get("orders").await.ok()?;
        (condition(&so, "Active").as_deref() == Some("True")).then_some(so)
    })
    .await;
    assert!(active.status.unwrap().last_active_time.is_some());
    let served = eventually(
        "the value the adapter will serve",
        Duration::from_secs(10),
        || async {
            cluster
                .telemetry
                .values
                .get("shop", "orders", &format!("s0-rabbitmq-{queue}"))
                .filter(|r| r.value == 12.0)
        },
    )
    .await;
    assert!(served.active && served.error.is_none(), "{served:?}");

    broker.purge().await;
    let drained = std::time::Instant::now();
    eventually(
        "the target to return to 0 after the cooldown",
        Duration::from_secs(20),
        || async { (replicas(&cluster.client, "shop", "orders").await == 0).then_some(()) },
    )
    .await;
    assert!(
        drained.elapsed() >= Duration::from_secs(2),
        "scaled in before the 3 s cooldown: {:?}",
        drained.elapsed()
    );
    let reasons = event_reasons(&cluster.client, "shop", "orders").await;
    for expected in [
        "KEDAScalersStarted",
        "ScaledObjectReady",
        "KEDAScaleTargetActivated",
        "KEDAScaleTargetDeactivated",
    ] {
        assert!(
            reasons.iter().any(|(r, _)| r == expected),
            "no {expected} event in {reasons:?}"
        );
    }
    let activated = reasons
        .iter()
        .find(|(r, _)| r == "KEDAScaleTargetActivated")
        .unwrap();
    assert_eq!(
        activated.1,
        "Scaled apps/v1.Deployment shop/orders from 0 to 1"
    );
    broker.delete().await;
    cluster.shutdown().await;
}

/// Reasons and notes of the events.k8s.io Events about ScaledObject `name`.
async fn event_reasons(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Vec<(String, String)> {
    let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), namespace);
    let events = api.list(&Default::default()).await.expect("list events");
    events
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .filter(|e| e.regarding.as_ref().and_then(|r| r.kind.as_deref()) == Some("ScaledObject"))
        .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_replicas_holds_the_target_and_removing_it_resumes() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let queue = format!("tidescale-e2e-pause-{}", std::process::id());
    let broker = Broker::new(&queue).await;
    let cluster = cluster::start().await;
    cluster.namespace("shop").await;
    cluster.deployment("shop", "orders", 0).await;
    cluster.create::<ScaledObject>(&format!("apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {{name: orders, namespace: shop}}\nspec:\n  scaleTargetRef: {{name: orders}}\n  pollingInterval: 1\n  cooldownPeriod: 1\n  triggers:\n    - type: rabbitmq\n      metadata: {{queueName: {queue}, mode: QueueLength, value: '5', host: '{}'}}\n", amqp_url())).await;
    let scaled_objects: Api<ScaledObject> = Api::namespaced(cluster.client.clone(), "shop");
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(cluster.client.clone(), "shop");
    eventually("the HPA", Duration::from_secs(20), || async {
        hpas.get("keda-hpa-orders").await.ok()
    })
    .await;

    let annotate = |value: serde_json::Value| {
        let patch = kube::api::Patch::Merge(
            serde_json::json!({"metadata": {"annotations": {"autoscaling.keda.sh/paused-replicas": value}}}),
        );
        let api = scaled_objects.clone();
        async move {
            api.patch("orders", &kube::api::PatchParams::default(), &patch)
                .await
                .expect("annotate")
        }
    };
    annotate(serde_json::json!("2")).await;
    eventually("the target held at 2", Duration::from_secs(10), || async {
        (replicas(&cluster.client, "shop", "orders").await == 2).then_some(())
    })
    .await;
    let paused = eventually("Paused=True", Duration::from_secs(10), || async {
        let so = scaled_objects.get("orders").await.ok()?;
        (condition(&so, "Paused").as_deref() == Some("True")).then_some(so)
    })
    .await;
    assert_eq!(paused.status.unwrap().paused_replica_count, Some(2));
    eventually("the HPA removed", Duration::from_secs(10), || async {
        hpas.get_opt("keda-hpa-orders")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    // Paused: the empty queue must not scale the target in, even well past the 1 s cooldown.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(replicas(&cluster.client, "shop", "orders").await, 2);

    annotate(serde_json::Value::Null).await;
    eventually("the HPA back", Duration::from_secs(20), || async {
        hpas.get("keda-hpa-orders").await.ok()
    })
    .await;
    eventually("Paused=False", Duration::from_secs(10), || async {
        let so = scaled_objects.get("orders").await.ok()?;
        (condition(&so, "Paused").as_deref() == Some("False")).then_some(())
    })
    .await;
    eventually(
        "the idle target scaled in after the cooldown",
        Duration::from_secs(15),
        || async { (replicas(&cluster.client, "shop", "orders").await == 0).then_some(()) },
    )
    .await;
    let reasons = event_reasons(&cluster.client, "shop", "orders").await;
    for expected in ["ScaledObjectPaused", "ScaledObjectUnpaused"] {
        assert!(
            reasons.iter().any(|(r, _)| r == expected),
            "no {expected} event in {reasons:?}"
        );
    }
    broker.delete().await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_modifiers_combine_named_triggers_into_the_composite_metric() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (standard, priority) = (
        format!("tidescale-e2e-std-{}", std::process::id()),
        format!("tidescale-e2e-prio-{}", std::process::id()),
    );
    let (standard_queue, priority_queue) =
        (Broker::new(&standard).await, Broker::new(&priority).await);
    let cluster = cluster::start().await;
    cluster.namespace("shop").await;
    cluster.deployment("shop", "notifier", 0).await;
    let host = amqp_url();
    cluster.create::<ScaledObject>(&format!("apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {{name: notifier, namespace: shop}}\nspec:\n  scaleTargetRef: {{name: notifier}}\n  pollingInterval: 1\n  advanced:\n    scalingModifiers: {{formula: 'standard + priority * 2', target: '10', activationTarget: '4'}}\n  triggers:\n    - {{type: rabbitmq, name: standard, metadata: {{queueName: {standard}, mode: QueueLength, value: '10', host: '{host}'}}}}\n    - {{type: rabbitmq, name: priority, metadata: {{queueName: {priority}, mode: QueueLength, value: '10', host: '{host}'}}}}\n")).await;
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(cluster.client.clone(), "shop");
    let hpa = eventually("the HPA", Duration::from_secs(20), || async {
        hpas.get("keda-hpa-notifier").await.ok()
    })
    .await;
    let metrics = hpa.spec.unwrap().metrics.unwrap();
    assert_eq!(metrics.len(), 1);
    assert_eq!(
        metrics[0].external.as_ref().unwrap().metric.name,
        "composite-metric"
    );
    // 3 + 0 × 2 = 3: below the activation target of 4, so nothing scales.
    standard_queue.publish(3).await;
    let below = eventually("composite 3", Duration::from_secs(10), || async {
        cluster
            .telemetry
            .values
            .get("shop", "notifier", "composite-metric")
            .filter(|r| r.value == 3.0)
    })
    .await;
    assert!(!below.active);
    assert_eq!(replicas(&cluster.client, "shop", "notifier").await, 0);
    // 3 + 1 × 2 = 5 > 4: active, the target wakes up.
    priority_queue.publish(1).await;
    eventually(
        "composite 5 and the target at 1",
        Duration::from_secs(10),
        || async {
            let record = cluster
                .telemetry
                .values
                .get("shop", "notifier", "composite-metric")?;
            (record.value == 5.0
                && record.active
                && replicas(&cluster.client, "shop", "notifier").await == 1)
                .then_some(())
        },
    )
    .await;
    standard_queue.delete().await;
    priority_queue.delete().await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_hpa_is_recreated_and_deletion_restores_the_original_replicas() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let queue = format!("tidescale-e2e-restore-{}", std::process::id());
    let broker = Broker::new(&queue).await;
    let cluster = cluster::start().await;
    cluster.namespace("shop").await;
    cluster.deployment("shop", "orders", 2).await;
    cluster.create::<ScaledObject>(&format!("apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {{name: orders, namespace: shop}}\nspec:\n  scaleTargetRef: {{name: orders}}\n  pollingInterval: 1\n  cooldownPeriod: 1\n  advanced: {{restoreToOriginalReplicaCount: true}}\n  triggers:\n    - type: rabbitmq\n      metadata: {{queueName: {queue}, mode: QueueLength, value: '5', host: '{}'}}\n", amqp_url())).await;
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(cluster.client.clone(), "shop");
    eventually("the HPA", Duration::from_secs(20), || async {
        hpas.get("keda-hpa-orders").await.ok()
    })
    .await;
    // The empty queue scales the idle target in to zero after the 1 s cooldown.
    eventually("the target at 0", Duration::from_secs(15), || async {
        (replicas(&cluster.client, "shop", "orders").await == 0).then_some(())
    })
    .await;

    hpas.delete("keda-hpa-orders", &Default::default())
        .await
        .expect("delete the HPA");
    eventually("the HPA recreated", Duration::from_secs(20), || async {
        hpas.get("keda-hpa-orders").await.ok()
    })
    .await;

    let scaled_objects: Api<ScaledObject> = Api::namespaced(cluster.client.clone(), "shop");
    scaled_objects
        .delete("orders", &Default::default())
        .await
        .expect("delete the ScaledObject");
    eventually(
        "the original 2 replicas restored",
        Duration::from_secs(15),
        || async { (replicas(&cluster.client, "shop", "orders").await == 2).then_some(()) },
    )
    .await;
    eventually(
        "the ScaledObject gone after its finalizer",
        Duration::from_secs(10),
        || async {
            scaled_objects
                .get_opt("orders")
                .await
                .ok()?
                .is_none()
                .then_some(())
        },
    )
    .await;
    let reasons = event_reasons(&cluster.client, "shop", "orders").await;
    assert!(
        reasons.iter().any(|(r, _)| r == "ScaledObjectDeleted"),
        "{reasons:?}"
    );
    broker.delete().await;
    cluster.shutdown().await;
}
