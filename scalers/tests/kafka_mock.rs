//! The `kafka` scaler against librdkafka's in-process mock cluster, which speaks the real Kafka
//! protocol (Metadata, OffsetFetch, OffsetCommit, ListOffsets). No broker package exists on the
//! build machines; this is the documented stand-in (environment.md).

#![cfg(feature = "kafka")]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, DefaultProducerContext, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rstest::rstest;
use tidescale_scalers::kafka::{self, PoolStats, pool_stats};
use tidescale_scalers::{Scaler, ScalerConfig};

/// Grouped in a module so the tests are selected by `-E 'test(kafka)'`.
mod kafka_mock_cluster {
    use super::*;

    type Cluster = MockCluster<'static, DefaultProducerContext>;

    /// A mock cluster with `topic` of `partitions` partitions holding `messages[p]` records each.
    fn cluster(topic: &str, messages: &[usize]) -> Cluster {
        let c = MockCluster::new(1).expect("mock cluster");
        let partitions = i32::try_from(messages.len()).expect("few partitions");
        c.create_topic(topic, partitions, 1).expect("create topic");
        produce(&c, topic, messages);
        c
    }

    fn produce(c: &Cluster, topic: &str, messages: &[usize]) {
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", c.bootstrap_servers())
            .create()
            .expect("producer");
        for (p, n) in messages.iter().enumerate() {
            for _ in 0..*n {
                let record = BaseRecord::to(topic)
                    .partition(p as i32)
                    .payload("m")
                    .key("k");
                producer.send(record).expect("enqueue");
            }
        }
        producer.flush(Duration::from_secs(10)).expect("flush");
    }

    /// Commit `offsets` (partition → offset) of `topic` for `group`, as a consumer would.
    fn commit(c: &Cluster, group: &str, topic: &str, offsets: &[(i32, i64)]) {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", c.bootstrap_servers())
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        let mut tpl = TopicPartitionList::new();
        for (p, o) in offsets {
            tpl.add_partition_offset(topic, *p, Offset::Offset(*o))
                .expect("offset");
        }
        consumer.commit(&tpl, CommitMode::Sync).expect("commit");
    }

    fn cfg(c: &Cluster, index: usize, meta: &[(&str, &str)]) -> ScalerConfig {
        let mut metadata: BTreeMap<String, String> = [
            ("bootstrapServers", c.bootstrap_servers().as_str()),
            ("consumerGroup", "g"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        metadata.extend(meta.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        ScalerConfig {
            trigger_index: index,
            trigger_type: kafka::TYPE.into(),
            metadata,
            timeout: Duration::from_secs(5),
            ..ScalerConfig::default()
        }
    }

    /// Build the trigger and poll it once: (metric value, active).
    async fn poll(c: &Cluster, meta: &[(&str, &str)]) -> (f64, bool) {
        let s = kafka::build(&cfg(c, 0, meta)).await.expect("build");
        let out = poll_built(s.as_ref()).await;
        s.close().await.expect("close");
        out
    }

    async fn poll_built(s: &dyn Scaler) -> (f64, bool) {
        let name = s.metric_specs()[0].metric_name.clone();
        let m = s.metrics_and_activity(&name).await.expect("poll");
        assert_eq!(m.values.len(), 1);
        (m.values[0], m.active)
    }

    #[tokio::test]
    async fn lag_sums_committed_offsets_over_several_partitions() {
        let c = cluster("orders", &[5, 3, 2]);
        commit(&c, "g", "orders", &[(0, 1), (1, 0), (2, 2)]);
        assert_eq!(poll(&c, &[("topic", "orders")]).await, (7.0, true));
    }

    #[rstest]
    #[case::latest_counts_one_per_partition(&[], 3.0, true)]
    #[case::latest_scale_to_zero(&[("scaleToZeroOnInvalidOffset", "true")], 0.0, false)]
    #[case::earliest_counts_watermark(&[("offsetResetPolicy", "earliest")], 10.0, true)]
    #[case::earliest_scale_to_zero(&[("offsetResetPolicy", "earliest"), ("scaleToZeroOnInvalidOffset", "true")], 0.0, false)]
    #[tokio::test]
    async fn uncommitted_partitions_follow_offset_reset_policy(
        #[case] meta: &[(&str, &str)],
        #[case] value: f64,
        #[case] active: bool,
    ) {
        let c = cluster("t", &[5, 3, 2]);
        let mut m = vec![("topic", "t")];
        m.extend_from_slice(meta);
        assert_eq!(poll(&c, &m).await, (value, active));
    }

    #[tokio::test]
    async fn partially_committed_group_mixes_real_and_invalid_offsets() {
        let c = cluster("t", &[5, 3]);
        commit(&c, "g", "t", &[(0, 2)]);
        // Partition 0: 5 - 2 = 3; partition 1: nothing committed, latest → 1.
        assert_eq!(poll(&c, &[("topic", "t")]).await, (4.0, true));
    }

    #[rstest]
    #[case::capped_at_partitions(&[("lagThreshold", "5")], 10.0)]
    #[case::idle_consumers_allowed(&[("lagThreshold", "5"), ("allowIdleConsumers", "true")], 40.0)]
    #[case::limited_to_lagging_partitions(&[("lagThreshold", "5"), ("limitToPartitionsWithLag", "true")], 5.0)]
    #[case::even_distribution(&[("lagThreshold", "3"), ("ensureEvenDistributionOfPartitions", "true")], 6.0)]
    #[tokio::test]
    async fn replica_cap_follows_flags(#[case] meta: &[(&str, &str)], #[case] value: f64) {
        let c = cluster("t", &[40, 0]);
        commit(&c, "g", "t", &[(0, 0), (1, 0)]);
        let mut m = vec![("topic", "t")];
        m.extend_from_slice(meta);
        assert_eq!(poll(&c, &m).await, (value, true));
    }

    #[tokio::test]
    async fn persistent_lag_is_excluded_but_keeps_the_trigger_active() {
        let c = cluster("t", &[6, 4]);
        commit(&c, "g", "t", &[(0, 1), (1, 1)]);
        let s = kafka::build(&cfg(
            &c,
            0,
            &[("topic", "t"), ("excludePersistentLag", "true")],
        ))
        .await
        .unwrap();
        assert_eq!(poll_built(s.as_ref()).await, (8.0, true));
        // Nothing moved: all lag is persistent.
        assert_eq!(poll_built(s.as_ref()).await, (0.0, true));
        // Partition 0 moved on; partition 1 is still stuck.
        commit(&c, "g", "t", &[(0, 2)]);
        assert_eq!(poll_built(s.as_ref()).await, (4.0, true));
        s.close().await.unwrap();
    }

    #[tokio::test]
    async fn partition_limitation_evaluates_only_listed_partitions() {
        let c = cluster("t", &[5, 7, 9, 11]);
        commit(&c, "g", "t", &[(0, 0), (1, 0), (2, 0), (3, 0)]);
        let meta = [
            ("topic", "t"),
            ("partitionLimitation", "0,2-3"),
            ("allowIdleConsumers", "true"),
        ];
        assert_eq!(poll(&c, &meta).await, (25.0, true));
        let e = kafka::build(&cfg(&c, 0, &[("topic", "t"), ("partitionLimitation", "9")]))
            .await
            .unwrap();
        let err = e
            .metrics_and_activity("s0-kafka-t")
            .await
            .expect_err("no partition left");
        assert!(
            err.to_string()
                .contains("expected at least one active partition within the topic 't'"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn no_topic_evaluates_topics_the_group_committed_to() {
        let c = cluster("a", &[4, 4]);
        c.create_topic("b", 1, 1).unwrap();
        produce(&c, "b", &[100]);
        commit(&c, "g", "a", &[(0, 1)]);
        let s = kafka::build(&cfg(&c, 2, &[("allowIdleConsumers", "true")]))
            .await
            .unwrap();
        assert_eq!(s.metric_specs()[0].metric_name, "s2-kafka-g-topics");
        // Topic a: 3 on partition 0, partition 1 uncommitted counts 1; topic b is not the group's.
        assert_eq!(poll_built(s.as_ref()).await, (4.0, true));
    }

    #[tokio::test]
    async fn activation_uses_strictly_greater_than() {
        let c = cluster("t", &[5]);
        commit(&c, "g", "t", &[(0, 0)]);
        assert_eq!(
            poll(&c, &[("topic", "t"), ("activationLagThreshold", "5")]).await,
            (5.0, false)
        );
        assert_eq!(
            poll(&c, &[("topic", "t"), ("activationLagThreshold", "4")]).await,
            (5.0, true)
        );
    }

    /// The mock broker speaks no SASL, so this proves what it can: librdkafka accepts the
    /// PLAIN settings (no config error), the failure comes from the wire within the timeout,
    /// and the password appears in no message.
    #[tokio::test]
    async fn sasl_plain_is_accepted_and_fails_only_on_the_wire() {
        let c = cluster("t", &[4]);
        let mut config = cfg(&c, 0, &[("topic", "t"), ("sasl", "plaintext")]);
        config.auth_params = [("username", "u"), ("password", "hunter2")]
            .map(|(k, v)| (k.into(), v.into()))
            .into();
        config.timeout = Duration::from_millis(800);
        let start = Instant::now();
        let err = kafka::build(&config)
            .await
            .expect_err("the mock speaks no SASL");
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "took {:?}",
            start.elapsed()
        );
        assert!(!err.is_config(), "{err}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert_eq!(pool_stats(&c.bootstrap_servers()), PoolStats::default());
    }

    /// Without the `kafka-tls` feature librdkafka has no OpenSSL: say so at build time.
    #[cfg(not(feature = "kafka-tls"))]
    #[tokio::test]
    async fn tls_without_openssl_is_a_clear_config_error() {
        let c = cluster("t", &[1]);
        let mut config = cfg(&c, 0, &[("topic", "t"), ("tls", "enable")]);
        config.auth_params = [("ca".to_owned(), "-----BEGIN CERTIFICATE-----".to_owned())].into();
        let err = kafka::build(&config)
            .await
            .expect_err("no TLS support compiled in");
        assert!(
            err.is_config() && err.to_string().contains("OpenSSL"),
            "{err}"
        );
        assert_eq!(pool_stats(&c.bootstrap_servers()), PoolStats::default());
    }

    /// With `kafka-tls`, a TLS client against the plaintext mock listener fails the handshake:
    /// a backend error within the timeout, and nothing left in the pool.
    #[cfg(feature = "kafka-tls")]
    #[tokio::test]
    async fn tls_handshake_failure_is_a_backend_error() {
        let c = cluster("t", &[1]);
        let mut config = cfg(
            &c,
            0,
            &[("topic", "t"), ("tls", "enable"), ("unsafeSsl", "true")],
        );
        config.timeout = Duration::from_millis(800);
        let start = Instant::now();
        let err = kafka::build(&config).await.expect_err("plaintext listener");
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "took {:?}",
            start.elapsed()
        );
        assert!(!err.is_config(), "{err}");
        assert_eq!(pool_stats(&c.bootstrap_servers()), PoolStats::default());
    }

    #[tokio::test]
    async fn unknown_topic_is_a_poll_error() {
        let c = cluster("t", &[1]);
        let s = kafka::build(&cfg(&c, 0, &[("topic", "missing")]))
            .await
            .expect("brokers answer");
        let err = s
            .metrics_and_activity("s0-kafka-missing")
            .await
            .expect_err("unknown topic");
        assert!(
            !err.is_config() && err.to_string().contains("error describing topic missing"),
            "{err}"
        );
        let err = s
            .metrics_and_activity("s0-other")
            .await
            .expect_err("unknown metric");
        assert_eq!(err.kind(), "unknown_metric");
    }

    #[tokio::test]
    async fn dead_cluster_fails_fast_and_leaks_no_client() {
        let servers = "127.0.0.1:1";
        let mut c = ScalerConfig {
            trigger_type: kafka::TYPE.into(),
            timeout: Duration::from_millis(500),
            ..ScalerConfig::default()
        };
        c.metadata.insert("bootstrapServers".into(), servers.into());
        c.metadata.insert("consumerGroup".into(), "g".into());
        c.metadata.insert("topic".into(), "t".into());
        let start = Instant::now();
        let err = kafka::build(&c)
            .await
            .expect_err("nothing listens on port 1");
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "took {:?}",
            start.elapsed()
        );
        assert!(
            !err.is_config() && err.to_string().contains("127.0.0.1:1"),
            "{err}"
        );
        assert_eq!(pool_stats(servers), PoolStats::default());
        // The endpoint now backs off: a rebuild fails at once, without touching the network.
        let start = Instant::now();
        let err = kafka::build(&c).await.expect_err("backing off");
        assert!(
            start.elapsed() < Duration::from_millis(100),
            "took {:?}",
            start.elapsed()
        );
        assert!(err.to_string().contains("backing off"), "{err}");
        assert_eq!(pool_stats(servers), PoolStats::default());
    }

    #[tokio::test]
    async fn broker_going_down_makes_polls_fail_within_the_timeout() {
        let c = cluster("t", &[3]);
        let mut config = cfg(&c, 0, &[("topic", "t")]);
        config.timeout = Duration::from_millis(800);
        let s = kafka::build(&config).await.unwrap();
        c.broker_down(1).expect("broker down");
        let start = Instant::now();
        let result = s.metrics_and_activity("s0-kafka-t").await;
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "took {:?}",
            start.elapsed()
        );
        assert!(
            result.is_err(),
            "a poll against a dead broker must fail, got {result:?}"
        );
        s.close().await.unwrap();
    }

    /// Same topic and group for all: one client, no group handle (plaintext reads committed
    /// offsets over the shared connections), one connection once polled. Distinct groups are
    /// covered by `kafka_groups.rs`.
    #[tokio::test]
    async fn thousand_triggers_on_one_cluster_share_one_client() {
        let c = cluster("t0", &[2, 2]);
        for i in 1..10 {
            c.create_topic(&format!("t{i}"), 2, 1).unwrap();
        }
        let servers = c.bootstrap_servers();
        let mut scalers = Vec::new();
        for i in 0..1000 {
            let topic = format!("t{}", i % 10);
            scalers.push(
                kafka::build(&cfg(&c, i, &[("topic", topic.as_str())]))
                    .await
                    .expect("build"),
            );
        }
        let stats = pool_stats(&servers);
        assert_eq!((stats.clients, stats.group_handles), (1, 0), "{stats:?}");
        assert_eq!(poll_built(scalers[0].as_ref()).await, (2.0, true));
        assert_eq!(pool_stats(&servers).connections, 1);
        // Another group shares the same client and connection.
        let other = kafka::build(&cfg(&c, 0, &[("topic", "t0"), ("consumerGroup", "h")]))
            .await
            .unwrap();
        assert_eq!(poll_built(other.as_ref()).await, (2.0, true));
        let stats = pool_stats(&servers);
        assert_eq!(
            (stats.clients, stats.group_handles, stats.connections),
            (1, 0, 1),
            "{stats:?}"
        );
        other.close().await.unwrap();
        for s in &scalers {
            s.close().await.unwrap();
        }
        assert_eq!(pool_stats(&servers), PoolStats::default());
    }
}
