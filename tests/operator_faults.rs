//! Faults end to end (issue #5, "Faults"): the operator on the sandbox with the real RabbitMQ,
//! then one dependency goes away mid-run and comes back.
//!
//! - The API server restarts (stopped, down for a few polls, started again on the same
//!   address over the same store, its watch cache forgotten): nothing is scaled while it is
//!   down, the watches get 410 and relist, and changes made after the restart are acted on.
//! - The broker stops (a [`Proxy`] between the trigger and the shared RabbitMQ closes every
//!   connection and refuses new ones, since the shared server itself must keep running): with
//!   `fallback` the target goes to the fallback replicas and `Fallback` is True; without it the
//!   error never scales the target in. Once the proxy listens again, the pooled AMQP connection
//!   reopens and scaling follows the queue again.
//!
//! `tests/operator_fallback.rs` covers the other fallback case: a backend down from the start
//! with the target at zero.

mod common;

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use common::cluster::{self, Cluster, condition_of, deployment_replicas, eventually};
use common::proxy::Proxy;
use common::rabbitmq::{Broker, amqp_url};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use tidescale::crd::ScaledObject;
use tidescale_sandbox::{GroupResource, WriteOptions};

/// A ScaledObject `name` in `shop` on `queue` (one replica per 5 messages) through `host`.
fn scaled_object(name: &str, queue: &str, host: &str, extra: &str) -> String {
    format!(
        "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n  scaleTargetRef: {{name: {name}}}\n  pollingInterval: 1\n  cooldownPeriod: 1\n  maxReplicaCount: 5\n{extra}  triggers:\n    - type: rabbitmq\n      metadata: {{queueName: {queue}, mode: QueueLength, value: '5', host: '{host}'}}\n"
    )
}

fn metric(queue: &str) -> String {
    format!("s0-rabbitmq-{queue}")
}

/// When the loop last recorded `metric` of `shop/name` (advances once per poll).
fn last_poll(cluster: &Cluster, name: &str, metric: &str) -> Option<Timestamp> {
    cluster
        .telemetry
        .values
        .get("shop", name, metric)
        .map(|r| r.timestamp)
}

/// Wait for `polls` more polls of `shop/name` (at pollingInterval 1, about a second each).
async fn await_polls(cluster: &Cluster, name: &str, metric: &str, polls: usize) {
    let mut last = last_poll(cluster, name, metric);
    for _ in 0..polls {
        last = Some(
            eventually("the next poll", Duration::from_secs(10), || async {
                let now = last_poll(cluster, name, metric)?;
                (Some(now) != last).then_some(now)
            })
            .await,
        );
    }
}

/// `spec.replicas` of Deployment `shop/name` read from the store in-process (the API server
/// may be down).
fn stored_replicas(cluster: &Cluster, name: &str) -> i64 {
    let deployments = GroupResource::new("apps", "deployments");
    let deployment = cluster
        .dev
        .sandbox
        .store()
        .get(&deployments, Some("shop"), name)
        .expect("the Deployment is stored");
    deployment["spec"]["replicas"].as_i64().unwrap_or(-1)
}

/// `tidescale_api_requests_total{verb="list", resource}`: how often the operator listed it.
fn lists_of(cluster: &Cluster, resource: &str) -> u64 {
    let wanted = format!("resource=\"{resource}\"");
    cluster
        .api_requests()
        .iter()
        .filter(|(labels, _)| labels.contains("verb=\"list\"") && labels.contains(&wanted))
        .map(|(_, count)| count)
        .sum()
}

/// The status of condition `type_` of ScaledObject `shop/name`, once it is `status`.
async fn await_condition(cluster: &Cluster, name: &str, type_: &str, status: &str) {
    let api: Api<ScaledObject> = Api::namespaced(cluster.client.clone(), "shop");
    eventually(
        &format!("{name}: {type_}={status}"),
        Duration::from_secs(20),
        || async {
            let so = api.get(name).await.ok()?;
            (condition_of(&so, type_)?.0 == status).then_some(())
        },
    )
    .await;
}

async fn await_replicas(cluster: &Cluster, name: &str, replicas: i32, within: Duration) {
    eventually(
        &format!("{name} at {replicas} replicas"),
        within,
        || async {
            (deployment_replicas(&cluster.client, "shop", name).await == replicas).then_some(())
        },
    )
    .await;
}

/// The shared RabbitMQ's AMQP address (what the proxy forwards to).
fn broker_address() -> SocketAddr {
    let url = reqwest::Url::parse(&amqp_url()).expect("the AMQP URL parses");
    let host = url.host_str().expect("the AMQP URL has a host").to_owned();
    (host.as_str(), url.port().unwrap_or(5672))
        .to_socket_addrs()
        .expect("the AMQP host resolves")
        .next()
        .expect("an address")
}

/// The trigger's `host`: the broker's URL with the proxy's address.
fn through(proxy: &Proxy) -> String {
    let mut url = reqwest::Url::parse(&amqp_url()).expect("the AMQP URL parses");
    url.set_host(Some("127.0.0.1")).expect("a host");
    url.set_port(Some(proxy.addr().port())).expect("a port");
    cluster::per_test_amqp(url.as_str())
}

/// The loop's last record of `metric` of `shop/name`, once `check` accepts it.
async fn await_record(
    cluster: &Cluster,
    name: &str,
    metric: &str,
    what: &str,
    check: impl Fn(&tidescale::scaling::store::MetricRecord) -> bool,
) {
    eventually(what, Duration::from_secs(20), || async {
        let record = cluster.telemetry.values.get("shop", name, metric)?;
        check(&record).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_server_restart_relists_and_scaling_carries_on() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let orders_queue = format!("tidescale-e2e-restart-orders-{}", std::process::id());
    let invoices_queue = format!("tidescale-e2e-restart-invoices-{}", std::process::id());
    let orders = Broker::new(&orders_queue).await;
    let invoices = Broker::new(&invoices_queue).await;
    let host = cluster::per_test_amqp(&amqp_url());
    let mut cluster = cluster::start().await;
    cluster.namespace("shop").await;
    cluster.deployment("shop", "orders", 0).await;
    cluster
        .create::<ScaledObject>(&scaled_object("orders", &orders_queue, &host, ""))
        .await;
    orders.publish(3).await;
    await_replicas(&cluster, "orders", 1, Duration::from_secs(15)).await;
    await_condition(&cluster, "orders", "Active", "True").await;

    // Down: every connection refused; the loop keeps polling the broker meanwhile.
    let lists_before = lists_of(&cluster, "scaledobjects");
    cluster.dev.sandbox.shutdown().await;
    await_polls(&cluster, "orders", &metric(&orders_queue), 3).await;
    assert_eq!(
        stored_replicas(&cluster, "orders"),
        1,
        "nothing scales while the API server is down"
    );
    // The queue drains during the outage: after the restart the target goes back to zero.
    orders.purge().await;
    await_polls(&cluster, "orders", &metric(&orders_queue), 2).await;
    assert_eq!(
        stored_replicas(&cluster, "orders"),
        1,
        "a scale-in the API server cannot take is not recorded as done"
    );

    // Others keep writing meanwhile (through other API-server replicas; here straight into
    // the store), so every watch of the operator is behind the restarted server's cache.
    let configmaps = GroupResource::new("", "configmaps");
    let written_while_down = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "written-while-down", "namespace": "shop"}});
    cluster
        .dev
        .sandbox
        .store()
        .create(&configmaps, written_while_down, &WriteOptions::default())
        .expect("a write while the API server is down");

    // Back, same address and store, watch cache forgotten: resumed watches get 410 and relist.
    cluster
        .dev
        .sandbox
        .restart()
        .await
        .expect("the API server restarts");
    await_replicas(&cluster, "orders", 0, Duration::from_secs(20)).await;

    // A ScaledObject created after the restart is seen (the watches relisted), gets its HPA,
    // and scales.
    cluster.deployment("shop", "invoices", 0).await;
    cluster
        .create::<ScaledObject>(&scaled_object("invoices", &invoices_queue, &host, ""))
        .await;
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(cluster.client.clone(), "shop");
    eventually(
        "the HPA of the new ScaledObject",
        Duration::from_secs(30),
        || async { hpas.get_opt("keda-hpa-invoices").await.ok().flatten() },
    )
    .await;
    await_condition(&cluster, "invoices", "Ready", "True").await;
    invoices.publish(3).await;
    await_replicas(&cluster, "invoices", 1, Duration::from_secs(15)).await;
    assert!(
        lists_of(&cluster, "scaledobjects") > lists_before,
        "the ScaledObject watches relisted after the restart"
    );

    // Scale-out and in of the first object still work.
    orders.publish(3).await;
    await_replicas(&cluster, "orders", 1, Duration::from_secs(15)).await;
    orders.purge().await;
    invoices.purge().await;
    await_replicas(&cluster, "orders", 0, Duration::from_secs(15)).await;
    await_replicas(&cluster, "invoices", 0, Duration::from_secs(15)).await;

    cluster.shutdown().await;
    orders.delete().await;
    invoices.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_outage_goes_to_fallback_replicas_and_scaling_resumes_after() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let queue = format!("tidescale-e2e-outage-fallback-{}", std::process::id());
    let broker = Broker::new(&queue).await;
    let mut proxy = Proxy::new(broker_address());
    // The adapter serves the fallback value to the sandbox's HPA, which scales 1→N from it.
    let mut cluster = cluster::start_with_hpa_sync(Duration::from_secs(1)).await;
    cluster
        .dev
        .spawn_adapter(&cluster.telemetry)
        .await
        .expect("the metrics adapter starts");
    cluster.namespace("shop").await;
    cluster.deployment("shop", "orders", 0).await;
    let fallback = "  fallback: {failureThreshold: 2, replicas: 3}\n";
    cluster
        .create::<ScaledObject>(&scaled_object("orders", &queue, &through(&proxy), fallback))
        .await;
    broker.publish(3).await;
    await_replicas(&cluster, "orders", 1, Duration::from_secs(15)).await;
    await_condition(&cluster, "orders", "Fallback", "False").await;
    let opened = tidescale_scalers::pool::amqp::connections_opened();

    // The broker goes away: past the threshold the HPA gets 3 replicas × target 5.
    proxy.stop().await;
    await_replicas(&cluster, "orders", 3, Duration::from_secs(20)).await;
    await_condition(&cluster, "orders", "Fallback", "True").await;
    let api: Api<ScaledObject> = Api::namespaced(cluster.client.clone(), "shop");
    let so = api.get("orders").await.expect("the ScaledObject");
    let health = &so.status.expect("a status").health[&metric(&queue)];
    assert_eq!(health.status.as_deref(), Some("Failing"));
    assert!(health.number_of_failures.unwrap_or_default() > 2);

    // Back: the pooled connection reopens, the real value returns, fallback ends.
    proxy.start();
    await_record(
        &cluster,
        "orders",
        &metric(&queue),
        "the queue read again",
        |r| r.error.is_none() && r.value == 3.0,
    )
    .await;
    await_condition(&cluster, "orders", "Fallback", "False").await;
    assert!(
        tidescale_scalers::pool::amqp::connections_opened() > opened,
        "the AMQP connection was opened again"
    );
    // Drained: back to zero after the cooldown.
    broker.purge().await;
    await_replicas(&cluster, "orders", 0, Duration::from_secs(20)).await;

    cluster.shutdown().await;
    broker.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_outage_without_fallback_never_scales_in() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let queue = format!("tidescale-e2e-outage-{}", std::process::id());
    let broker = Broker::new(&queue).await;
    let mut proxy = Proxy::new(broker_address());
    // Work waiting before the object exists, so the target at 2 is active from the first poll.
    broker.publish(3).await;
    let cluster = cluster::start().await;
    cluster.namespace("shop").await;
    cluster.deployment("shop", "orders", 2).await;
    cluster
        .create::<ScaledObject>(&scaled_object("orders", &queue, &through(&proxy), ""))
        .await;
    await_condition(&cluster, "orders", "Active", "True").await;
    let metric = metric(&queue);

    // The broker goes away: the trigger fails poll after poll, well past the cooldown (1 s).
    proxy.stop().await;
    await_record(&cluster, "orders", &metric, "a failing poll", |r| {
        r.error.is_some()
    })
    .await;
    await_polls(&cluster, "orders", &metric, 5).await;
    assert_eq!(
        deployment_replicas(&cluster.client, "shop", "orders").await,
        2,
        "an error is no reason to scale in"
    );
    await_condition(&cluster, "orders", "Ready", "False").await;

    // Back: the pooled connection reopens and scaling follows the queue again.
    proxy.start();
    await_record(&cluster, "orders", &metric, "the queue read again", |r| {
        r.error.is_none() && r.value == 3.0
    })
    .await;
    await_condition(&cluster, "orders", "Ready", "True").await;
    assert_eq!(
        deployment_replicas(&cluster.client, "shop", "orders").await,
        2
    );
    broker.purge().await;
    await_replicas(&cluster, "orders", 0, Duration::from_secs(20)).await;

    cluster.shutdown().await;
    broker.delete().await;
}
