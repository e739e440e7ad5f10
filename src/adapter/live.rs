//! Live metric reads shared by concurrent requests (design.md §4.1).
//!
//! A trigger with `useCachedMetrics: false` is read on the HPA's path. Several HPA workers,
//! kubectl users and the custom-metrics paths may ask for the same (namespace, ScaledObject,
//! metric) at once; [`SingleFlight`] makes them share ONE backend call: the first caller starts it,
//! later callers await the same [`Shared`] future, and the entry is dropped when the call ends,
//! so the next read queries afresh. Each call is bounded by a timeout; a timed-out call reports
//! [`LiveError::Timeout`] to everyone waiting on it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};

use crate::scaling::store::{LiveMetrics, MetricRecord};

/// How long a live query may take by default.
pub const DEFAULT_LIVE_TIMEOUT: Duration = Duration::from_secs(3);

/// Why a live read gave no value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LiveError {
    /// The querier did not answer within the timeout.
    #[error("the live query did not answer within {0:?}")]
    Timeout(Duration),
    /// The querier failed (its message is secret-free).
    #[error("{0}")]
    Failed(String),
}

/// (namespace, ScaledObject, lowercased metric).
type FlightKey = (String, String, String);
type Flight = Shared<BoxFuture<'static, Result<MetricRecord, LiveError>>>;
/// In-flight calls; each carries an id so a finished call removes only its own entry.
type Flights = Arc<Mutex<HashMap<FlightKey, (u64, Flight)>>>;

/// Deduplicates concurrent live reads of the same metric. Cheap to clone.
#[derive(Clone, Default)]
pub struct SingleFlight {
    flights: Flights,
    next_id: Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for SingleFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let in_flight = self.flights.lock().map(|m| m.len()).unwrap_or_default();
        f.debug_struct("SingleFlight")
            .field("in_flight", &in_flight)
            .finish()
    }
}

impl SingleFlight {
    /// Reads `metric` of `namespace/object` through `querier`, joining a call already in flight
    /// for the same key; a new call is bounded by `timeout`.
    pub async fn query(
        &self,
        namespace: &str,
        object: &str,
        metric: &str,
        querier: Arc<dyn LiveMetrics>,
        timeout: Duration,
    ) -> Result<MetricRecord, LiveError> {
        let key = (
            namespace.to_owned(),
            object.to_owned(),
            metric.to_ascii_lowercase(),
        );
        let flight = {
            let mut flights = match self.flights.lock() {
                Ok(flights) => flights,
                Err(poisoned) => poisoned.into_inner(),
            };
            if let Some((_, flight)) = flights.get(&key) {
                flight.clone()
            } else {
                let id = self
                    .next_id
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let flight = self.start(key.clone(), id, metric.to_owned(), querier, timeout);
                flights.insert(key, (id, flight.clone()));
                flight
            }
        };
        flight.await
    }

    /// Number of calls in flight (for tests and debugging).
    pub fn in_flight(&self) -> usize {
        self.flights.lock().map(|m| m.len()).unwrap_or_default()
    }

    fn start(
        &self,
        key: FlightKey,
        id: u64,
        metric: String,
        querier: Arc<dyn LiveMetrics>,
        timeout: Duration,
    ) -> Flight {
        let flights = Arc::clone(&self.flights);
        async move {
            let result = match tokio::time::timeout(timeout, querier.query(&metric)).await {
                Ok(Ok(record)) => Ok(record),
                Ok(Err(message)) => Err(LiveError::Failed(message)),
                Err(_) => Err(LiveError::Timeout(timeout)),
            };
            let mut flights = match flights.lock() {
                Ok(flights) => flights,
                Err(poisoned) => poisoned.into_inner(),
            };
            if flights.get(&key).is_some_and(|(current, _)| *current == id) {
                flights.remove(&key);
            }
            result
        }
        .boxed()
        .shared()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use futures::future::join_all;
    use k8s_openapi::jiff::Timestamp;

    use super::*;

    /// Counts calls; each answers `value` after `delay`, or fails when `fail` is set.
    struct CountingQuerier {
        calls: AtomicUsize,
        delay: Duration,
        fail: bool,
    }

    impl CountingQuerier {
        fn new(delay: Duration, fail: bool) -> Arc<Self> {
            Arc::new(Self {
                calls: AtomicUsize::new(0),
                delay,
                fail,
            })
        }
    }

    impl LiveMetrics for CountingQuerier {
        fn query(&self, _metric: &str) -> BoxFuture<'static, Result<MetricRecord, String>> {
            let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            let (delay, fail) = (self.delay, self.fail);
            Box::pin(async move {
                tokio::time::sleep(delay).await;
                if fail {
                    return Err("broker unreachable".to_owned());
                }
                Ok(MetricRecord {
                    value: call as f64,
                    active: true,
                    timestamp: Timestamp::UNIX_EPOCH,
                    error: None,
                })
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn hundred_concurrent_reads_share_one_call() {
        let flights = SingleFlight::default();
        let querier = CountingQuerier::new(Duration::from_millis(50), false);
        let reads = (0..100).map(|_| {
            let querier: Arc<dyn LiveMetrics> = querier.clone();
            let flights = flights.clone();
            async move {
                flights
                    .query("shop", "orders", "S0-Redis", querier, DEFAULT_LIVE_TIMEOUT)
                    .await
            }
        });
        let results = join_all(reads).await;
        assert_eq!(querier.calls.load(Ordering::SeqCst), 1);
        assert!(
            results
                .iter()
                .all(|r| r.as_ref().map(|r| r.value) == Ok(1.0))
        );
        assert_eq!(flights.in_flight(), 0, "the entry is removed when done");
        // The next read queries afresh.
        let again = flights
            .query(
                "shop",
                "orders",
                "s0-redis",
                querier.clone(),
                DEFAULT_LIVE_TIMEOUT,
            )
            .await;
        assert_eq!(again.map(|r| r.value), Ok(2.0));
    }

    #[tokio::test(start_paused = true)]
    async fn different_keys_do_not_share() {
        let flights = SingleFlight::default();
        let querier = CountingQuerier::new(Duration::from_millis(10), false);
        let a = flights.query("shop", "a", "m", querier.clone(), DEFAULT_LIVE_TIMEOUT);
        let b = flights.query("shop", "b", "m", querier.clone(), DEFAULT_LIVE_TIMEOUT);
        let (a, b) = futures::join!(a, b);
        assert!(a.is_ok() && b.is_ok());
        assert_eq!(querier.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn slow_calls_time_out_for_every_waiter() {
        let flights = SingleFlight::default();
        let querier = CountingQuerier::new(Duration::from_secs(60), false);
        let timeout = Duration::from_secs(3);
        let first = flights.query("shop", "a", "m", querier.clone(), timeout);
        let second = flights.query("shop", "a", "m", querier.clone(), timeout);
        let (first, second) = futures::join!(first, second);
        assert_eq!(first, Err(LiveError::Timeout(timeout)));
        assert_eq!(second, Err(LiveError::Timeout(timeout)));
        assert_eq!(querier.calls.load(Ordering::SeqCst), 1);
        assert_eq!(flights.in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn failures_are_reported_with_their_message() {
        let flights = SingleFlight::default();
        let querier = CountingQuerier::new(Duration::ZERO, true);
        let result = flights
            .query("shop", "a", "m", querier, DEFAULT_LIVE_TIMEOUT)
            .await;
        assert_eq!(
            result,
            Err(LiveError::Failed("broker unreachable".to_owned()))
        );
    }
}
