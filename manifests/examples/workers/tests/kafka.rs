//! The Kafka worker against librdkafka's in-process mock cluster (the real protocol; no broker
//! package exists here): it consumes every message of a 3-partition topic in its group and
//! commits, so the group's lag ends at zero.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tidescale_sample_workers::kafka::{Config, run};
use tidescale_sample_workers::{Common, Progress};
use tokio_util::sync::CancellationToken;

const MESSAGES: u64 = 30;
const PARTITIONS: i32 = 3;

#[tokio::test]
async fn kafka_worker_consumes_the_topic_and_commits_its_group_offsets() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    let topic = "orders";
    cluster
        .create_topic(topic, PARTITIONS, 1)
        .expect("create topic");
    let bootstrap = cluster.bootstrap_servers();

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .expect("producer");
    for i in 0..MESSAGES {
        let key = format!("k{i}");
        let payload = format!("job {i}");
        producer
            .send(
                FutureRecord::to(topic)
                    .key(&key)
                    .payload(&payload)
                    .partition((i % PARTITIONS as u64) as i32),
                Duration::from_secs(5),
            )
            .await
            .expect("produce");
    }

    let config = Config {
        bootstrap_servers: bootstrap.clone(),
        topic: topic.into(),
        group_id: "sample-workers".into(),
        offset_reset: "earliest".into(),
        extra: vec![],
        common: Common {
            work: Duration::from_millis(1),
        },
    };
    let shutdown = CancellationToken::new();
    let progress = Progress::default();
    let worker = tokio::spawn({
        let (config, shutdown, progress) = (config.clone(), shutdown.clone(), progress.clone());
        async move { run(&config, shutdown, progress).await }
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while progress.processed() < MESSAGES {
        assert!(
            tokio::time::Instant::now() < deadline,
            "worker processed {} of {MESSAGES} messages in 60 s",
            progress.processed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(15), worker)
        .await
        .expect("worker stops within 15 s of shutdown")
        .expect("worker task")
        .expect("worker ends without error");

    // The group's committed offsets reach every partition's end: lag 0.
    let probe: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "sample-workers")
        .create()
        .expect("probe consumer");
    let mut partitions = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        partitions.add_partition(topic, partition);
    }
    let committed = probe
        .committed_offsets(partitions, Duration::from_secs(10))
        .expect("committed offsets");
    let mut total = 0;
    for partition in 0..PARTITIONS {
        let (_, high) = probe
            .fetch_watermarks(topic, partition, Duration::from_secs(10))
            .expect("watermarks");
        let offset = committed
            .find_partition(topic, partition)
            .map(|p| p.offset())
            .expect("partition listed");
        assert_eq!(offset, Offset::Offset(high), "partition {partition} lags");
        total += high;
    }
    assert_eq!(total as u64, MESSAGES);
}
