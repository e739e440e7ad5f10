//! Secrets behind a TriggerAuthentication are watched (design.md §4 item 5): rotating one
//! rebuilds the scalers of exactly the ScaledObjects that read it, and the next poll uses the new
//! credentials — with the real RabbitMQ, whose users are created and deleted by the test. A
//! Secret switched to a broken endpoint mid-run makes queries fail: fallback applies and the
//! errors never scale the target in.

mod common;

use std::time::Duration;

use common::cluster::{self, Cluster, condition_of, deployment_replicas, eventually};
use common::rabbitmq::{Broker, amqp_url};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use tidescale::crd::{ScaledObject, TriggerAuthentication};

/// `amqp_url()` with other credentials or another vhost.
fn url_with(user: &str, password: &str, vhost: &str) -> String {
    let mut url = reqwest::Url::parse(&amqp_url()).expect("TIDESCALE_TEST_RABBITMQ_AMQP is a URL");
    url.set_username(user).expect("a user");
    url.set_password(Some(password)).expect("a password");
    url.set_path(vhost);
    cluster::per_test_amqp(url.as_str())
}

async fn create_user(broker: &Broker, user: &str) {
    broker
        .call(
            reqwest::Method::PUT,
            &format!("users/{user}"),
            Some(serde_json::json!({"password": "rotate-me", "tags": ""})),
        )
        .await;
    broker
        .call(
            reqwest::Method::PUT,
            &format!("permissions/%2f/{user}"),
            Some(serde_json::json!({"configure": ".*", "write": ".*", "read": ".*"})),
        )
        .await;
}

async fn delete_user(broker: &Broker, user: &str) {
    broker
        .call(reqwest::Method::DELETE, &format!("users/{user}"), None)
        .await;
}

/// A Secret `name` holding `host`, a TriggerAuthentication `name` reading it, and a
/// ScaledObject `name` on Deployment `name` at 0.
async fn object_with_secret(cluster: &Cluster, name: &str, queue: &str, host: &str, extra: &str) {
    cluster.deployment("shop", name, 0).await;
    cluster
        .create::<Secret>(&format!(
            "metadata: {{name: {name}, namespace: shop}}\nstringData: {{host: '{host}'}}\n"
        ))
        .await;
    cluster.create::<TriggerAuthentication>(&format!("apiVersion: keda.sh/v1alpha1\nkind: TriggerAuthentication\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n  secretTargetRef: [{{parameter: host, name: {name}, key: host}}]\n")).await;
    cluster.create::<ScaledObject>(&format!("apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n  scaleTargetRef: {{name: {name}}}\n  pollingInterval: 1\n  cooldownPeriod: 1\n{extra}  triggers:\n    - type: rabbitmq\n      metadata: {{queueName: {queue}, mode: QueueLength, value: '5'}}\n      authenticationRef: {{name: {name}}}\n")).await;
}

async fn set_host(cluster: &Cluster, secret: &str, host: &str) {
    let api: Api<Secret> = Api::namespaced(cluster.client.clone(), "shop");
    let patch = Patch::Merge(serde_json::json!({"stringData": {"host": host}}));
    api.patch(secret, &PatchParams::default(), &patch)
        .await
        .expect("rotate the Secret");
}

/// The value the loop last read for `metric` of `name`, when it read one without error.
fn served(cluster: &Cluster, name: &str, metric: &str) -> Option<f64> {
    let record = cluster.telemetry.values.get("shop", name, metric)?;
    record.error.is_none().then_some(record.value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_secret_rebuilds_only_its_readers_and_the_next_poll_uses_it() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let pid = std::process::id();
    let queue = format!("tidescale-e2e-rotate-{pid}");
    let broker = Broker::new(&queue).await;
    let (user_a, user_b) = (format!("tidescale-a-{pid}"), format!("tidescale-b-{pid}"));
    create_user(&broker, &user_a).await;
    create_user(&broker, &user_b).await;
    let cluster = cluster::start().await;
    cluster.namespace("shop").await;
    let host_a = url_with(&user_a, "rotate-me", "/%2f");
    object_with_secret(&cluster, "orders", &queue, &host_a, "").await;
    let guest = url_with("guest", "guest", "/%2f");
    object_with_secret(&cluster, "billing", &queue, &guest, "").await;
    let metric = format!("s0-rabbitmq-{queue}");
    let metrics = &cluster.telemetry.metrics;
    broker.publish(8).await;
    eventually("both objects active", Duration::from_secs(20), || async {
        let both = deployment_replicas(&cluster.client, "shop", "orders").await == 1
            && deployment_replicas(&cluster.client, "shop", "billing").await == 1;
        (both && served(&cluster, "orders", &metric) == Some(8.0)).then_some(())
    })
    .await;
    let (orders_builds, billing_builds) = (
        metrics.scaler_builds("shop", "orders"),
        metrics.scaler_builds("shop", "billing"),
    );
    assert!(orders_builds >= 1 && billing_builds >= 1);

    // Rewriting the Secret with the same value resolves to the same inputs: nothing rebuilt.
    set_host(&cluster, "orders", &host_a).await;
    let api: Api<Secret> = Api::namespaced(cluster.client.clone(), "shop");
    let touch = Patch::Merge(serde_json::json!({"metadata": {"labels": {"touched": "yes"}}}));
    api.patch("orders", &PatchParams::default(), &touch)
        .await
        .expect("touch the Secret");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(metrics.scaler_builds("shop", "orders"), orders_builds);

    // Rotate to user B, then remove user A: the object keeps reading the queue.
    set_host(&cluster, "orders", &url_with(&user_b, "rotate-me", "/%2f")).await;
    eventually("orders rebuilt", Duration::from_secs(10), || async {
        (metrics.scaler_builds("shop", "orders") == orders_builds + 1).then_some(())
    })
    .await;
    delete_user(&broker, &user_a).await;
    broker.publish(4).await;
    eventually(
        "the new credentials read 12 messages",
        Duration::from_secs(10),
        || async { (served(&cluster, "orders", &metric) == Some(12.0)).then_some(()) },
    )
    .await;
    let scaled_objects: Api<ScaledObject> = Api::namespaced(cluster.client.clone(), "shop");
    let so = scaled_objects.get("orders").await.expect("orders");
    assert_eq!(
        condition_of(&so, "Active").map(|c| c.0).as_deref(),
        Some("True")
    );
    assert_eq!(
        condition_of(&so, "Ready").map(|c| c.0).as_deref(),
        Some("True")
    );
    assert_eq!(
        deployment_replicas(&cluster.client, "shop", "orders").await,
        1
    );
    assert_eq!(
        metrics.scaler_builds("shop", "billing"),
        billing_builds,
        "an object reading another Secret is not rebuilt"
    );
    delete_user(&broker, &user_b).await;
    broker.delete().await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_switched_to_a_wrong_vhost_falls_back_and_never_scales_in_on_errors() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let queue = format!("tidescale-e2e-vhost-{}", std::process::id());
    let broker = Broker::new(&queue).await;
    let cluster = cluster::start().await;
    cluster.namespace("shop").await;
    let fallback = "  fallback: {failureThreshold: 2, replicas: 3}\n";
    let guest = url_with("guest", "guest", "/%2f");
    object_with_secret(&cluster, "orders", &queue, &guest, fallback).await;
    let metric = format!("s0-rabbitmq-{queue}");
    broker.publish(8).await;
    eventually(
        "the target active at 1",
        Duration::from_secs(20),
        || async {
            (deployment_replicas(&cluster.client, "shop", "orders").await == 1).then_some(())
        },
    )
    .await;

    // Mid-run, the credentials now point at a vhost that does not exist.
    set_host(
        &cluster,
        "orders",
        &url_with("guest", "guest", "/no-such-vhost"),
    )
    .await;
    let scaled_objects: Api<ScaledObject> = Api::namespaced(cluster.client.clone(), "shop");
    eventually("Fallback=True", Duration::from_secs(15), || async {
        let so = scaled_objects.get("orders").await.ok()?;
        (condition_of(&so, "Fallback")?.0 == "True").then_some(())
    })
    .await;
    let record = cluster
        .telemetry
        .values
        .get("shop", "orders", &metric)
        .expect("a record");
    assert_eq!(
        (record.value, record.error),
        (15.0, None),
        "the adapter serves fallback replicas 3 × target 5"
    );
    // Errors for well past the 1 s cooldown: the target is never scaled in because of them.
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(deployment_replicas(&cluster.client, "shop", "orders").await >= 1);
    }

    // Back to the right vhost: real values again, fallback over.
    set_host(&cluster, "orders", &guest).await;
    eventually("Fallback=False", Duration::from_secs(15), || async {
        let so = scaled_objects.get("orders").await.ok()?;
        let over = condition_of(&so, "Fallback")?.0 == "False";
        (over && served(&cluster, "orders", &metric) == Some(8.0)).then_some(())
    })
    .await;
    broker.delete().await;
    cluster.shutdown().await;
}
