//! Two full operators with leader election on one sandbox and a RabbitMQ ScaledObject (the
//! real broker, `eval "$(scripts/services env)"`): only the leader polls and scales; when it
//! stops, the other takes over within about a retry period and scales the target back down.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::Api;
use tidescale::crd::ScaledObject;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::common::rabbitmq::{Broker, amqp_url};

const NS: &str = "elected";

/// One operator replica with leader election.
struct Operator {
    telemetry: Telemetry,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl Operator {
    async fn start(dev: &DevCluster, identity: &str) -> Self {
        let client = dev.client().await.expect("client");
        let telemetry = Telemetry::default();
        let cancel = CancellationToken::new();
        let task = tokio::spawn(run_with_leader_election(
            client,
            dev_operator_args(),
            lease_config("tidescale-operator", identity),
            telemetry.clone(),
            cancel.clone(),
        ));
        Self {
            telemetry,
            cancel,
            task,
        }
    }

    fn leads(&self) -> bool {
        self.telemetry.leadership.current().is_leader
    }

    /// Whether this replica ever polled the ScaledObject (values or KEDA metric families).
    fn polled(&self) -> bool {
        !self.telemetry.values.object(NS, "orders").is_empty()
            || self
                .telemetry
                .metrics
                .render()
                .contains("scaledObject=\"orders\"")
    }
}

async fn replicas(client: &kube::Client) -> i32 {
    let api: Api<Deployment> = Api::namespaced(client.clone(), NS);
    api.get("orders")
        .await
        .ok()
        .and_then(|d| d.spec?.replicas)
        .unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_scales_and_the_standby_takes_over_when_it_stops() {
    let queue = format!("tidescale-leader-{}", std::process::id());
    let broker = Broker::new(&queue).await;
    let dev = cluster().await;
    let client = dev.client().await.expect("client");
    let a = Operator::start(&dev, "a").await;
    let b = Operator::start(&dev, "b").await;
    eventually("both replicas ready", Duration::from_secs(10), || async {
        (a.telemetry.readiness.is_ready() && b.telemetry.readiness.is_ready()).then_some(())
    })
    .await;
    let leader = eventually("one leader", Duration::from_secs(5), || async {
        assert!(!(a.leads() && b.leads()), "two leaders");
        if a.leads() {
            Some(0)
        } else {
            b.leads().then_some(1)
        }
    })
    .await;
    let (leader, standby) = if leader == 0 { (a, b) } else { (b, a) };

    create_namespace(&client, NS).await;
    create::<Deployment>(&client, &orders_deployment(NS)).await;
    create::<ScaledObject>(&client, &format!("apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {{name: orders, namespace: {NS}}}\nspec:\n  scaleTargetRef: {{name: orders}}\n  pollingInterval: 1\n  cooldownPeriod: 2\n  triggers:\n    - type: rabbitmq\n      metadata: {{queueName: {queue}, mode: QueueLength, value: '5', host: '{}'}}\n", amqp_url())).await;

    broker.publish(12).await;
    eventually(
        "the leader to scale to 1",
        Duration::from_secs(10),
        || async { (replicas(&client).await == 1).then_some(()) },
    )
    .await;
    assert!(leader.polled(), "the leader polls");
    assert!(!standby.polled(), "the standby neither polls nor scales");
    assert!(leader.leads() && !standby.leads());

    leader.cancel.cancel();
    let stopped = Instant::now();
    leader.task.await.expect("the leader stops and releases");
    eventually("the standby to lead", Duration::from_secs(5), || async {
        standby.leads().then_some(())
    })
    .await;
    let took = stopped.elapsed();
    eprintln!("operator takeover after release: {took:?}");
    assert!(
        took < Duration::from_secs(2),
        "released, not expired: {took:?}"
    );

    broker.purge().await;
    eventually(
        "the new leader to scale to 0 after the cooldown",
        Duration::from_secs(15),
        || async { (replicas(&client).await == 0).then_some(()) },
    )
    .await;
    assert!(standby.polled(), "the new leader polls");
    standby.cancel.cancel();
    standby.task.await.expect("stops");
    broker.delete().await;
    dev.shutdown().await;
}

/// Start one operator (elected or alone) where a ScaledObject already exists, and sample
/// `/readyz`'s flag: the first moment it is ready, the object's value was already polled.
async fn ready_only_after_the_first_poll(elected: bool) {
    let queue = format!("tidescale-ready-{}-{elected}", std::process::id());
    let broker = Broker::new(&queue).await;
    broker.publish(3).await;
    let dev = cluster().await;
    let client = dev.client().await.expect("client");
    create_namespace(&client, NS).await;
    create::<Deployment>(&client, &orders_deployment(NS)).await;
    create::<ScaledObject>(&client, &format!("apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {{name: orders, namespace: {NS}}}\nspec:\n  scaleTargetRef: {{name: orders}}\n  pollingInterval: 30\n  triggers:\n    - type: rabbitmq\n      metadata: {{queueName: {queue}, mode: QueueLength, value: '5', host: '{}'}}\n", amqp_url())).await;

    let telemetry = Telemetry::default();
    let cancel = CancellationToken::new();
    let operator_client = dev.client().await.expect("client");
    let task = if elected {
        tokio::spawn(run_with_leader_election(
            operator_client,
            dev_operator_args(),
            lease_config("tidescale-operator", "only"),
            telemetry.clone(),
            cancel.clone(),
        ))
    } else {
        tokio::spawn(tidescale::operator::run_with_client(
            operator_client,
            dev_operator_args(),
            telemetry.clone(),
            cancel.clone(),
        ))
    };
    let started = Instant::now();
    while !telemetry.readiness.is_ready() {
        assert!(started.elapsed() < Duration::from_secs(15), "never ready");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(
        !telemetry.values.object(NS, "orders").is_empty(),
        "ready before the first poll of a ScaledObject that existed at start"
    );
    assert!(telemetry.leadership.current().is_leader);
    assert!(
        telemetry.metrics.render().contains("tidescale_leader 1"),
        "the leader gauge is set"
    );
    cancel.cancel();
    task.await.expect("stops");
    broker.delete().await;
    dev.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_elected_leader_is_ready_only_after_the_first_poll_of_every_object() {
    ready_only_after_the_first_poll(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_operator_is_ready_only_after_the_first_poll_of_every_object() {
    ready_only_after_the_first_poll(false).await;
}
