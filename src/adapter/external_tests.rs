use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::http::StatusCode;
use futures::future::BoxFuture;
use rstest::rstest;
use serde_json::json;

use super::super::api::test_support::{fixture_state, get, record};
use crate::scaling::store::{LiveMetrics, MetricRecord};

const PATH: &str = "/apis/external.metrics.k8s.io/v1beta1/namespaces";

fn item(metric: &str, value: &str) -> serde_json::Value {
    json!({"metricName": metric, "metricLabels": {}, "timestamp": "2024-05-01T12:00:00Z", "value": value})
}

fn list(items: Vec<serde_json::Value>) -> serde_json::Value {
    json!({"kind": "ExternalMetricValueList", "apiVersion": "external.metrics.k8s.io/v1beta1",
           "metadata": {}, "items": items})
}

#[tokio::test]
async fn hpa_read_by_scaled_object_name_returns_exactly_its_value() {
    let state = fixture_state();
    let (status, body) = get(
        &state,
        &format!(
            "{PATH}/shop/s0-rabbitmq-orders?labelSelector=scaledobject.keda.sh%2Fname%3Dorders"
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, list(vec![item("s0-rabbitmq-orders", "1500m")]));
}

#[rstest]
#[case::no_selector("", vec!["1k", "1500m"])]
#[case::empty_selector("?labelSelector=", vec!["1k", "1500m"])]
#[case::other_label("?labelSelector=team%3Dfinance", vec!["1k"])]
#[case::set_form("?labelSelector=team+in+%28finance%2Cpayments%29", vec!["1k", "1500m"])]
#[case::name_and_label("?labelSelector=scaledobject.keda.sh%2Fname%3Dorders%2Cteam%3Dpayments", vec!["1500m"])]
#[tokio::test]
async fn selectors_filter_scaled_objects_one_item_each(
    #[case] query: &str,
    #[case] values: Vec<&str>,
) {
    let state = fixture_state();
    // The metric name is requested lowercase by client-go; matching ignores case.
    let (status, body) = get(&state, &format!("{PATH}/shop/S0-RabbitMQ-Orders{query}")).await;
    assert_eq!(status, StatusCode::OK);
    let items = values
        .into_iter()
        .map(|v| item("S0-RabbitMQ-Orders", v))
        .collect();
    assert_eq!(body, list(items));
}

#[rstest]
#[case::unknown_metric(
    "/shop/s9-nothing",
    "the server could not find the metric s9-nothing for external metric"
)]
#[case::unknown_object(
    "/shop/s0-rabbitmq-orders?labelSelector=scaledobject.keda.sh%2Fname%3Dnope",
    "the server could not find the metric s0-rabbitmq-orders for external metric with selector scaledobject.keda.sh/name=nope"
)]
#[case::label_mismatch(
    "/shop/s0-rabbitmq-orders?labelSelector=scaledobject.keda.sh%2Fname%3Dorders%2Cteam%3Dfinance",
    "the server could not find the metric s0-rabbitmq-orders for external metric with selector scaledobject.keda.sh/name=orders,team=finance"
)]
#[case::other_namespace(
    "/empty/s0-rabbitmq-orders",
    "the server could not find the metric s0-rabbitmq-orders for external metric"
)]
#[tokio::test]
async fn missing_metrics_are_not_found(#[case] path: &str, #[case] message: &str) {
    let (status, body) = get(&fixture_state(), &format!("{PATH}{path}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body,
        json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
               "message":message,"reason":"NotFound","code":404})
    );
}

#[tokio::test]
async fn failed_reads_are_internal_errors_with_the_scaler_cause() {
    let (status, body) = get(&fixture_state(), &format!("{PATH}/shop/s0-kafka-lag")).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        body,
        json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
               "message":"unable to read metric s0-kafka-lag of ScaledObject shop/broken",
               "reason":"InternalError",
               "details":{"causes":[{"message":"connection refused"}]},"code":500})
    );
}

#[tokio::test]
async fn bad_selectors_are_bad_requests() {
    let (status, body) = get(
        &fixture_state(),
        &format!("{PATH}/shop/s0-rabbitmq-orders?labelSelector=a%24%3Db"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["reason"], "BadRequest");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("unable to parse requirement: invalid label key")
    );
}

#[tokio::test]
async fn nan_values_are_served_as_zero() {
    let (status, body) = get(&fixture_state(), &format!("{PATH}/shop/s0-nan")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["items"][0]["value"], "0");
}

struct Live {
    calls: AtomicUsize,
    answer: Result<f64, String>,
    delay: Duration,
}

impl LiveMetrics for Live {
    fn query(&self, _metric: &str) -> BoxFuture<'static, Result<MetricRecord, String>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let (answer, delay) = (self.answer.clone(), self.delay);
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            answer.map(record)
        })
    }
}

fn live(answer: Result<f64, String>, delay: Duration) -> Arc<Live> {
    Arc::new(Live {
        calls: AtomicUsize::new(0),
        answer,
        delay,
    })
}

#[tokio::test(start_paused = true)]
async fn live_metrics_are_queried_instead_of_the_record() {
    let state = fixture_state();
    let querier = live(Ok(42.0), Duration::from_millis(10));
    state
        .store
        .set_live("shop", "orders", "s0-rabbitmq-orders", querier.clone());
    let uri = format!(
        "{PATH}/shop/s0-rabbitmq-orders?labelSelector=scaledobject.keda.sh%2Fname%3Dorders"
    );
    let (status, body) = get(&state, &uri).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["items"][0]["value"], "42");
    assert_eq!(querier.calls.load(Ordering::SeqCst), 1);
}

#[rstest]
#[case::failure(Err("broker down".to_owned()), Duration::ZERO, StatusCode::INTERNAL_SERVER_ERROR, "InternalError")]
#[case::timeout(
    Ok(1.0),
    Duration::from_secs(60),
    StatusCode::GATEWAY_TIMEOUT,
    "Timeout"
)]
#[tokio::test(start_paused = true)]
async fn live_failures_map_to_status(
    #[case] answer: Result<f64, String>,
    #[case] delay: Duration,
    #[case] code: StatusCode,
    #[case] reason: &str,
) {
    let state = fixture_state().with_live_timeout(Duration::from_secs(1));
    state
        .store
        .set_live("web", "api", "s0-rabbitmq-orders", live(answer, delay));
    let (status, body) = get(&state, &format!("{PATH}/web/s0-rabbitmq-orders")).await;
    assert_eq!(status, code);
    assert_eq!(body["reason"], reason);
}

#[rstest]
#[case::fraction(1.5, "1500m")]
#[case::thousand(1000.0, "1k")]
#[case::twelve_thousand(12000.0, "12k")]
#[case::whole(2.0, "2")]
#[case::nan(f64::NAN, "0")]
#[case::infinite(f64::INFINITY, "0")]
#[case::negative(-3.0, "0")]
#[tokio::test]
async fn values_are_canonical_quantities(#[case] value: f64, #[case] quantity: &str) {
    let state = fixture_state();
    state.store.record_poll(
        "q",
        "so",
        std::collections::BTreeMap::from([("m".to_owned(), record(value))]),
    );
    let (status, body) = get(&state, &format!("{PATH}/q/m")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["items"][0]["value"], quantity);
}

#[test]
fn the_hand_written_body_is_json_with_the_name_escaped() {
    let name = "we\"ird\\name\u{7}";
    let records = [record(1.5), record(2.0)];
    let body: serde_json::Value =
        serde_json::from_slice(&super::render(name, &records)).expect("the rendered list is JSON");
    assert_eq!(
        body,
        list(vec![item(name, "1500m"), item(name, "2")]),
        "same document as the typed one"
    );
    let empty: serde_json::Value = serde_json::from_slice(&super::render("m", &[])).unwrap();
    assert_eq!(empty, list(vec![]));
}
