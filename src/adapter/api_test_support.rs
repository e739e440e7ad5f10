//! Fixtures shared by the adapter's unit tests: a store with a few ScaledObjects and a way to
//! call [`handle`](super::handle) and read the JSON answer.

use std::collections::BTreeMap;

use axum::http::{HeaderMap, Method, StatusCode, Uri};
use k8s_openapi::jiff::Timestamp;
use serde_json::Value;

use super::ApiState;
use crate::scaling::store::{Described, DescribedTarget, MetricRecord, MetricStore};
use crate::telemetry::Readiness;

/// `2024-05-01T12:00:00.750Z`: fractional seconds must not appear on the wire.
pub(crate) fn poll_time() -> Timestamp {
    "2024-05-01T12:00:00.750Z".parse().unwrap()
}

pub(crate) fn record(value: f64) -> MetricRecord {
    MetricRecord {
        value,
        active: value > 0.0,
        timestamp: poll_time(),
        error: None,
    }
}

pub(crate) fn failed(error: &str) -> MetricRecord {
    MetricRecord {
        value: 0.0,
        active: false,
        timestamp: poll_time(),
        error: Some(error.to_owned()),
    }
}

pub(crate) fn described(target: &str, labels: &[(&str, &str)]) -> Described {
    Described {
        target: DescribedTarget {
            api_version: "apps/v1".to_owned(),
            kind: "Deployment".to_owned(),
            resource: "deployments.apps".to_owned(),
            name: target.to_owned(),
        },
        labels: labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    }
}

/// `shop/orders` (1.5, target `worker`, team=payments), `shop/billing` (1000, target
/// `billing-worker`, team=finance) share `s0-rabbitmq-orders`; `shop/broken` has a failing
/// `s0-kafka-lag`; `shop/undescribed` has `s0-nan` = NaN; `web/api` has `s0-rabbitmq-orders` = 3.
pub(crate) fn fixture_store() -> MetricStore {
    let store = MetricStore::default();
    let one = |name: &str, value: MetricRecord| BTreeMap::from([(name.to_owned(), value)]);
    store.record_poll("shop", "orders", one("s0-rabbitmq-orders", record(1.5)));
    store.describe(
        "shop",
        "orders",
        described("worker", &[("team", "payments")]),
    );
    store.record_poll("shop", "billing", one("s0-rabbitmq-orders", record(1000.0)));
    store.describe(
        "shop",
        "billing",
        described("billing-worker", &[("team", "finance")]),
    );
    store.record_poll(
        "shop",
        "broken",
        one("s0-kafka-lag", failed("connection refused")),
    );
    store.describe("shop", "broken", described("consumer", &[]));
    store.record_poll("shop", "undescribed", one("s0-nan", record(f64::NAN)));
    store.record_poll("web", "api", one("s0-rabbitmq-orders", record(3.0)));
    store
}

pub(crate) fn fixture_state() -> ApiState {
    let readiness = Readiness::new();
    readiness.set_ready();
    ApiState::new(fixture_store(), readiness)
}

/// GETs `uri` through [`handle`](super::handle); the body parsed as JSON (`Null` if not JSON).
pub(crate) async fn get(state: &ApiState, uri: &str) -> (StatusCode, Value) {
    let uri: Uri = uri.parse().unwrap();
    let response = super::handle(state, &Method::GET, &uri, &HeaderMap::new()).await;
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}
