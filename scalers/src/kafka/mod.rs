//! `kafka`: consumer-group lag of Kafka topics (KEDA's Sarama-based scaler, spec/scalers.md §3).
//!
//! The metric is the group's total lag over the evaluated partitions, capped so that with
//! `AverageValue` the HPA never asks for more replicas than partitions; the trigger is active
//! when the lag including persistent lag exceeds `activationLagThreshold`.
//!
//! | key | src | required | default | meaning |
//! |---|---|---|---|---|
//! | `bootstrapServers` | M,E | yes | – | comma-separated `host:port` |
//! | `consumerGroup` | M,E | yes | – | group whose committed offsets are read |
//! | `topic` | M,E | no | all topics the group committed to | topic to measure |
//! | `partitionLimitation` | M | no | all | `1,2,10-20`; ignored without `topic` |
//! | `lagThreshold` | M | no | 10 | target lag per replica, > 0 |
//! | `activationLagThreshold` | M | no | 0 | ≥ 0 |
//! | `offsetResetPolicy` | M | no | `latest` | `latest` or `earliest` |
//! | `allowIdleConsumers` | M | no | false | no cap at the partition count |
//! | `excludePersistentLag` | M | no | false | lag of a partition whose offset did not move is 0 |
//! | `scaleToZeroOnInvalidOffset` | M | no | false | uncommitted partitions count 0 |
//! | `limitToPartitionsWithLag` | M | no | false | cap at the number of lagging partitions |
//! | `ensureEvenDistributionOfPartitions` | M | no | false | lag rounded to a divisor of partitions |
//! | `fullMetadata` | M | no | true | accepted for compatibility: librdkafka always fetches sparse metadata |
//! | `version` | M | no | `1.0.0` | Sarama version string; validated only (librdkafka negotiates) |
//! | `tls` / `sasl` / `saslTokenProvider` | M,A | no | `disable` / `none` / `bearer` | metadata wins |
//! | `unsafeSsl`, `awsRegion` | M | no | false / – | `unsafeSsl`: no certificate checks (handshake signatures still verified) |
//! | `ca`, `cert`, `key`, `keyPassword` | A | no | system roots + `ca` / – | PEM; `key` PKCS#1/SEC1/PKCS#8, or encrypted PKCS#8 with `keyPassword` |
//! | `username`, `password`, `oauthTokenEndpointUri`, `scopes`, `oauthExtensions`, `keytab`, `realm`, `kerberosConfig`, `kerberosServiceName`, `kerberosDisableFAST` | A | – | – | auth-only |
//!
//! Protocol: metadata and high watermarks (ListOffsets, timestamp −1) through one shared
//! librdkafka client per (servers, security settings); committed offsets of any group with
//! FindCoordinator + OffsetFetch over shared broker connections, one per broker per
//! (servers, security settings), or on a librdkafka handle bound to the group otherwise
//! (`client.rs` explains why). See <https://keda.sh/docs/latest/scalers/apache-kafka/>.
//!
//! | security | committed offsets |
//! |---|---|
//! | none, SASL PLAIN, SCRAM-SHA-256/512 | shared connections (`conn.rs`, `sasl.rs`) |
//! | `tls=enable`, alone or with those SASL mechanisms | shared connections over tokio-rustls (ring): CA from `ca` plus system roots, client certificate from `cert`/`key`, SNI = broker host |
//! | `tls=enable` with a `key` rustls cannot load (e.g. legacy encrypted PEM) | librdkafka handle per group |
//! | OAUTHBEARER | librdkafka handle per group |
//! | GSSAPI, MSK IAM | refused at build |
//!
//! Security: `tls=enable`, SCRAM and `oauthbearer` need librdkafka built with OpenSSL and
//! libcurl (metadata and watermarks still go through librdkafka), i.e. the `kafka-tls` feature; without it such a trigger parses (so `tidescale
//! check` accepts what KEDA accepts) but building it fails with a config error naming the
//! missing support. PLAIN works in every build. MSK IAM and GSSAPI are refused at build: they
//! need signing and per-trigger Kerberos files librdkafka cannot do in-process.

mod client;
mod conn;
pub mod lag;
mod params;
mod reads;
mod sasl;
mod wire;

use std::sync::Mutex;

use async_trait::async_trait;

use crate::naming;
use crate::{MetricSpec, MetricsAndActivity, Scaler, ScalerConfig, ScalerError};

pub use client::{PoolStats, pool_stats};
pub use params::{Sasl, Security, Trigger, parse};

/// The KEDA trigger type.
pub const TYPE: &str = "kafka";

/// A built Kafka scaler: the parsed trigger, its share of the pooled client, and the committed
/// offsets of the previous poll (for `excludePersistentLag`).
pub struct KafkaScaler {
    trigger: Trigger,
    lease: client::Lease,
    previous: Mutex<lag::PreviousOffsets>,
}

impl std::fmt::Debug for KafkaScaler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaScaler")
            .field("trigger", &self.trigger)
            .field("lease", &self.lease)
            .finish()
    }
}

/// Parse the trigger, take a share of the pooled client for its endpoint and check the brokers
/// answer (spec §3.3: construction fails when they do not).
pub async fn build(cfg: &ScalerConfig) -> Result<Box<dyn Scaler>, ScalerError> {
    let trigger = parse(cfg)?;
    let key = trigger.security.client_key(&trigger.bootstrap_servers)?;
    let lease = client::acquire(&key, &trigger.consumer_group, trigger.timeout)?;
    // On failure the lease is dropped here, which gives the pooled client back.
    lease
        .check_reachable(trigger.topic.as_deref(), trigger.timeout)
        .await?;
    Ok(Box::new(KafkaScaler {
        trigger,
        lease,
        previous: Mutex::new(Default::default()),
    }))
}

impl KafkaScaler {
    /// Total lag and lag-with-persistent for one poll.
    async fn poll(&self) -> Result<lag::LagTotals, ScalerError> {
        let t = &self.trigger;
        let offsets = self
            .lease
            .fetch_offsets(t.topic.as_deref(), &t.partition_limitation, t.timeout)
            .await?;
        // The lock is held only for the arithmetic, never across an await.
        let mut previous = self.previous.lock().unwrap_or_else(|e| e.into_inner());
        Ok(lag::total_lag(&offsets, &t.rules, &mut previous))
    }
}

#[async_trait]
impl Scaler for KafkaScaler {
    fn scaler_type(&self) -> &'static str {
        TYPE
    }

    fn metric_specs(&self) -> Vec<MetricSpec> {
        vec![self.trigger.metric_spec()]
    }

    async fn metrics_and_activity(
        &self,
        metric_name: &str,
    ) -> Result<MetricsAndActivity, ScalerError> {
        crate::ensure_metric(TYPE, &self.trigger.metric_name, metric_name)?;
        let totals = self.poll().await?;
        Ok(MetricsAndActivity {
            // Lag fits f64 exactly up to 2^53 messages; beyond that precision loss is harmless.
            values: vec![totals.metric as f64],
            active: naming::is_active(
                totals.with_persistent as f64,
                self.trigger.activation_lag_threshold as f64,
            ),
        })
    }

    async fn close(&self) -> Result<(), ScalerError> {
        self.lease.release();
        Ok(())
    }
}
