//! Committed offsets of many consumer groups over shared connections, against librdkafka's
//! mock cluster: values match what rdkafka reports, 1,000 distinct groups cost one connection
//! per broker and no reconnects, and a dead broker fails polls within the timeout and leaks
//! nothing.

#![cfg(feature = "kafka")]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::future::join_all;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, DefaultProducerContext, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tidescale_scalers::kafka::{self, PoolStats, pool_stats};
use tidescale_scalers::{Scaler, ScalerConfig};

/// Grouped in a module so the tests are selected by `-E 'test(kafka)'`.
mod kafka_shared_group_offsets {
    use super::*;

    type Cluster = MockCluster<'static, DefaultProducerContext>;

    /// `brokers` brokers; topic `t` with one partition per entry of `messages`.
    fn cluster(brokers: i32, messages: &[usize]) -> Cluster {
        let c = MockCluster::new(brokers).expect("mock cluster");
        let partitions = i32::try_from(messages.len()).unwrap();
        c.create_topic("t", partitions, 1).expect("create topic");
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", c.bootstrap_servers())
            .create()
            .expect("producer");
        for (p, n) in messages.iter().enumerate() {
            for _ in 0..*n {
                let record = BaseRecord::to("t")
                    .partition(p as i32)
                    .payload("m")
                    .key("k");
                producer.send(record).expect("enqueue");
            }
        }
        producer.flush(Duration::from_secs(10)).expect("flush");
        c
    }

    fn group_consumer(c: &Cluster, group: &str) -> BaseConsumer {
        ClientConfig::new()
            .set("bootstrap.servers", c.bootstrap_servers())
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer")
    }

    fn commit(c: &Cluster, group: &str, offsets: &[(i32, i64)]) {
        let mut tpl = TopicPartitionList::new();
        for (p, o) in offsets {
            tpl.add_partition_offset("t", *p, Offset::Offset(*o))
                .unwrap();
        }
        group_consumer(c, group)
            .commit(&tpl, CommitMode::Sync)
            .expect("commit");
    }

    /// Lag of `group` on `t` as rdkafka itself reports it (committed offsets and watermarks).
    fn rdkafka_lag(c: &Cluster, group: &str, partitions: i32) -> i64 {
        let consumer = group_consumer(c, group);
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition("t", p);
        }
        let committed = consumer
            .committed_offsets(tpl, Duration::from_secs(5))
            .expect("committed");
        committed
            .elements()
            .iter()
            .map(|e| {
                let (_, hw) = consumer
                    .fetch_watermarks("t", e.partition(), Duration::from_secs(5))
                    .expect("watermarks");
                match e.offset() {
                    Offset::Offset(o) => hw - o,
                    _ => 1,
                }
            })
            .sum()
    }

    fn cfg(c: &Cluster, index: usize, group: &str, timeout: Duration) -> ScalerConfig {
        let metadata: BTreeMap<String, String> = [
            ("bootstrapServers", c.bootstrap_servers().as_str()),
            ("consumerGroup", group),
            ("topic", "t"),
            ("allowIdleConsumers", "true"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        ScalerConfig {
            trigger_index: index,
            trigger_type: kafka::TYPE.into(),
            metadata,
            timeout,
            ..ScalerConfig::default()
        }
    }

    async fn poll(s: &dyn Scaler) -> f64 {
        let name = s.metric_specs()[0].metric_name.clone();
        let m = s.metrics_and_activity(&name).await.expect("poll");
        m.values[0]
    }

    #[tokio::test]
    async fn committed_offsets_per_group_match_rdkafka() {
        let c = cluster(3, &[9, 7, 5, 3]);
        for i in 0..12i64 {
            let offsets: Vec<(i32, i64)> = (0..4).map(|p| (p, (i + i64::from(p)) % 4)).collect();
            // Group 0 commits nothing: every partition reads as invalid (lag 1 each).
            if i > 0 {
                commit(
                    &c,
                    &format!("g{i}"),
                    &offsets[..usize::try_from(i % 4 + 1).unwrap()],
                );
            }
        }
        for i in 0..12 {
            let group = format!("g{i}");
            let s = kafka::build(&cfg(&c, 0, &group, Duration::from_secs(5)))
                .await
                .expect("build");
            let want = rdkafka_lag(&c, &group, 4);
            assert_eq!(poll(s.as_ref()).await, want as f64, "group {group}");
            s.close().await.unwrap();
        }
        assert_eq!(pool_stats(&c.bootstrap_servers()), PoolStats::default());
    }

    #[tokio::test]
    async fn thousand_distinct_groups_hold_one_connection_per_broker() {
        let brokers = 3;
        let c = cluster(brokers, &[4, 4, 4]);
        commit(&c, "g7", &[(0, 1), (1, 2), (2, 3)]);
        let servers = c.bootstrap_servers();
        let mut scalers = Vec::new();
        for i in 0..1000 {
            let config = cfg(&c, i, &format!("g{i}"), Duration::from_secs(10));
            scalers.push(kafka::build(&config).await.expect("build"));
        }
        let polls = join_all(scalers.iter().map(|s| poll(s.as_ref()))).await;
        assert_eq!(polls[7], 6.0);
        assert!(polls.iter().enumerate().all(|(i, v)| i == 7 || *v == 3.0));
        let warm = pool_stats(&servers);
        assert_eq!(
            (warm.clients, warm.group_handles, warm.connections),
            (1, 0, usize::try_from(brokers).unwrap()),
            "{warm:?}"
        );
        // Steady state: polling every trigger again opens nothing new.
        let polls = join_all(scalers.iter().map(|s| poll(s.as_ref()))).await;
        assert_eq!(polls[7], 6.0);
        let after = pool_stats(&servers);
        assert_eq!(after, warm, "no new connection after warm-up");
        eprintln!("1000 groups, {brokers} brokers: {after:?}");
        for s in &scalers {
            s.close().await.unwrap();
        }
        assert_eq!(pool_stats(&servers), PoolStats::default());
    }

    #[tokio::test]
    async fn dead_broker_fails_within_the_timeout_and_leaks_nothing() {
        let c = cluster(1, &[3]);
        let servers = c.bootstrap_servers();
        let timeout = Duration::from_millis(800);
        let s = kafka::build(&cfg(&c, 0, "g", timeout))
            .await
            .expect("build");
        assert_eq!(poll(s.as_ref()).await, 1.0);
        assert_eq!(pool_stats(&servers).connections, 1);
        c.broker_down(1).expect("broker down");
        for _ in 0..2 {
            let start = Instant::now();
            let result = s.metrics_and_activity("s0-kafka-t").await;
            assert!(start.elapsed() < timeout * 3, "took {:?}", start.elapsed());
            assert!(result.is_err(), "dead broker, got {result:?}");
        }
        s.close().await.unwrap();
        assert_eq!(pool_stats(&servers), PoolStats::default());
    }
}
