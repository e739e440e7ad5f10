//! The complete autoscaler on one machine (issue #6): the real RabbitMQ, the operator and the
//! metrics adapter registered with the sandbox, and the sandbox's HPA controller reading
//! tidescale's external metric through the aggregation proxy (front-proxy certificate,
//! `X-Remote-*` headers, TLS verified against the published `caBundle`).
//!
//! Messages arrive → 0→1 by the operator, 1→N by the HPA (N = ceil(queue / target)); the queue
//! drains → N→1 by the HPA, 1→0 by the operator after the cooldown. Along the way `kubectl get
//! --raw` reads both metrics APIs, and a hand-written autoscaling/v2 HPA with an `Object` metric
//! on the Deployment scales another Deployment from the custom metrics API.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::cluster::{self, deployment_replicas, eventually, per_test_amqp};
use common::rabbitmq::{Broker, amqp_url};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Secret;
use serde_json::Value;
use tidescale::crd::{ScaledObject, TriggerAuthentication};

/// The queue length one replica handles (`value` of the trigger).
const TARGET: u32 = 5;
const MESSAGES: usize = 20;

fn kubectl_raw(kubeconfig: &Path, path: &str) -> Value {
    let output = Command::new(common::tool("KUBECTL", "kubectl"))
        .env("KUBECONFIG", kubeconfig)
        .args(["get", "--raw", path])
        .output()
        .expect("run kubectl");
    assert!(
        output.status.success(),
        "kubectl get --raw {path}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("kubectl prints JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_scales_zero_to_n_and_back_through_the_metrics_apis() {
    let queue = format!("tidescale-adapter-{}", std::process::id());
    let broker = Broker::new(&queue).await;
    let mut cluster = cluster::start_with_hpa_sync(Duration::from_secs(1)).await;
    cluster
        .dev
        .spawn_adapter(&cluster.telemetry)
        .await
        .expect("the adapter starts and registers");
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, cluster.dev.admin_kubeconfig()).unwrap();

    cluster.namespace("shop").await;
    cluster.deployment("shop", "orders", 0).await;
    cluster.deployment("shop", "reports", 1).await;
    cluster
        .create::<Secret>(&format!(
            "metadata: {{name: rabbit, namespace: shop}}\nstringData: {{host: '{}'}}\n",
            per_test_amqp(&amqp_url())
        ))
        .await;
    cluster
        .create::<TriggerAuthentication>(
            "metadata: {name: rabbit, namespace: shop}\nspec:\n  secretTargetRef: [{parameter: host, name: rabbit, key: host}]\n",
        )
        .await;
    cluster
        .create::<ScaledObject>(&format!(
            "metadata: {{name: orders, namespace: shop}}
spec:
  scaleTargetRef: {{name: orders}}
  pollingInterval: 1
  cooldownPeriod: 3
  maxReplicaCount: 10
  advanced:
    horizontalPodAutoscalerConfig:
      behavior:
        scaleDown: {{stabilizationWindowSeconds: 0}}
  triggers:
  - type: rabbitmq
    metadata: {{queueName: {queue}, mode: QueueLength, value: '{TARGET}'}}
    authenticationRef: {{name: rabbit}}
"
        ))
        .await;
    let metric = format!("s0-rabbitmq-{queue}");
    let expected = MESSAGES.div_ceil(TARGET as usize) as i32;

    broker.publish(MESSAGES).await;
    eventually(
        &format!("orders scaled to {expected} (0→1 by the operator, 1→{expected} by the HPA)"),
        Duration::from_secs(40),
        || async {
            (deployment_replicas(&cluster.client, "shop", "orders").await == expected).then_some(())
        },
    )
    .await;

    // kubectl reads the external metric through the sandbox's aggregation proxy.
    let external = kubectl_raw(
        &kubeconfig,
        &format!(
            "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/{metric}?labelSelector=scaledobject.keda.sh%2Fname%3Dorders"
        ),
    );
    assert_eq!(external["kind"], "ExternalMetricValueList");
    assert_eq!(external["items"][0]["value"], MESSAGES.to_string());
    let list = kubectl_raw(&kubeconfig, "/apis/external.metrics.k8s.io/v1beta1");
    assert!(
        list["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == metric.to_lowercase()),
        "{list}"
    );
    // Discovery through the aggregator works for kubectl (no "empty response" failures).
    let resources = Command::new(common::tool("KUBECTL", "kubectl"))
        .env("KUBECONFIG", &kubeconfig)
        .args(["api-resources", "--api-group=external.metrics.k8s.io"])
        .output()
        .expect("run kubectl");
    assert!(
        resources.status.success(),
        "kubectl api-resources: {}",
        String::from_utf8_lossy(&resources.stderr)
    );
    // …and the custom metric described on the scale target.
    let custom = kubectl_raw(
        &kubeconfig,
        &format!(
            "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/deployments.apps/orders/{metric}"
        ),
    );
    assert_eq!(custom["items"][0]["describedObject"]["name"], "orders");
    assert_eq!(custom["items"][0]["value"], MESSAGES.to_string());

    // A hand-written HPA with an Object metric on the Deployment scales `reports` from the
    // custom metrics API: ceil(1 × 20 / 5) = 4.
    cluster
        .create::<HorizontalPodAutoscaler>(&format!(
            "metadata: {{name: reports, namespace: shop}}
spec:
  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: reports}}
  minReplicas: 1
  maxReplicas: 10
  metrics:
  - type: Object
    object:
      describedObject: {{apiVersion: apps/v1, kind: Deployment, name: orders}}
      metric: {{name: {metric}}}
      target: {{type: Value, value: '{TARGET}'}}
"
        ))
        .await;
    eventually(
        "reports scaled by the Object-metric HPA",
        Duration::from_secs(20),
        || async {
            (deployment_replicas(&cluster.client, "shop", "reports").await == expected)
                .then_some(())
        },
    )
    .await;

    broker.purge().await;
    eventually(
        "orders back to 0 (N→1 by the HPA, 1→0 by the operator)",
        Duration::from_secs(40),
        || async {
            (deployment_replicas(&cluster.client, "shop", "orders").await == 0).then_some(())
        },
    )
    .await;
    broker.delete().await;
    cluster.shutdown().await;
}

/// librdkafka's in-process mock cluster (`environment.md`): `topic` with one partition per
/// entry of `messages`, each holding that many records, and `group` committed at offset 0.
mod kafka {
    use std::time::Duration;

    use rdkafka::config::ClientConfig;
    use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::{BaseProducer, BaseRecord, DefaultProducerContext, Producer};
    use rdkafka::{Offset, TopicPartitionList};

    pub type Cluster = MockCluster<'static, DefaultProducerContext>;

    pub fn cluster(topic: &str, group: &str, messages: &[usize]) -> Cluster {
        let cluster = MockCluster::new(1).expect("mock cluster");
        let partitions = i32::try_from(messages.len()).expect("few partitions");
        cluster
            .create_topic(topic, partitions, 1)
            .expect("create topic");
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", cluster.bootstrap_servers())
            .create()
            .expect("producer");
        for (partition, count) in messages.iter().enumerate() {
            for _ in 0..*count {
                let record = BaseRecord::to(topic)
                    .partition(partition as i32)
                    .payload("job")
                    .key("k");
                producer.send(record).expect("enqueue");
            }
        }
        producer.flush(Duration::from_secs(10)).expect("flush");
        commit(&cluster, group, topic, partitions, 0);
        cluster
    }

    /// Commit `offset` on every partition, as a consumer that processed that far would.
    pub fn commit(cluster: &Cluster, group: &str, topic: &str, partitions: i32, offset: i64) {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", cluster.bootstrap_servers())
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        let mut list = TopicPartitionList::new();
        for partition in 0..partitions {
            list.add_partition_offset(topic, partition, Offset::Offset(offset))
                .expect("offset");
        }
        consumer.commit(&list, CommitMode::Sync).expect("commit");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_lag_scales_to_the_partition_count_and_back() {
    const PARTITIONS: i32 = 3;
    const PER_PARTITION: usize = 20;
    let broker = kafka::cluster("payments", "billing", &[PER_PARTITION; PARTITIONS as usize]);
    let mut cluster = cluster::start_with_hpa_sync(Duration::from_secs(1)).await;
    cluster
        .dev
        .spawn_adapter(&cluster.telemetry)
        .await
        .expect("the adapter starts and registers");
    cluster.namespace("pay").await;
    cluster.deployment("pay", "billing", 0).await;
    // Lag 60 with lagThreshold 5 would ask for 12 replicas; without allowIdleConsumers KEDA
    // caps the metric at partitions × threshold, so the HPA settles at 3.
    cluster
        .create::<ScaledObject>(&format!(
            "metadata: {{name: billing, namespace: pay}}
spec:
  scaleTargetRef: {{name: billing}}
  pollingInterval: 1
  cooldownPeriod: 3
  maxReplicaCount: 10
  advanced:
    horizontalPodAutoscalerConfig:
      behavior:
        scaleDown: {{stabilizationWindowSeconds: 0}}
  triggers:
  - type: kafka
    metadata: {{bootstrapServers: '{}', consumerGroup: billing, topic: payments, lagThreshold: '5'}}
",
            broker.bootstrap_servers()
        ))
        .await;
    eventually(
        "billing scaled to the partition count",
        Duration::from_secs(40),
        || async {
            (deployment_replicas(&cluster.client, "pay", "billing").await == PARTITIONS)
                .then_some(())
        },
    )
    .await;
    // Stays there: never more replicas than partitions.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        deployment_replicas(&cluster.client, "pay", "billing").await,
        PARTITIONS
    );
    kafka::commit(
        &broker,
        "billing",
        "payments",
        PARTITIONS,
        PER_PARTITION as i64,
    );
    eventually(
        "billing back to 0 once the group caught up",
        Duration::from_secs(40),
        || async {
            (deployment_replicas(&cluster.client, "pay", "billing").await == 0).then_some(())
        },
    )
    .await;
    cluster.shutdown().await;
}
