use axum::http::StatusCode;
use rstest::rstest;
use serde_json::{Value, json};

use super::super::api::test_support::{fixture_state, get};

const V2: &str = "/apis/custom.metrics.k8s.io/v1beta2";
const V1: &str = "/apis/custom.metrics.k8s.io/v1beta1";

fn deployment(name: &str) -> Value {
    json!({"kind": "Deployment", "namespace": "shop", "name": name, "apiVersion": "apps/v1"})
}

fn scaled_object(name: &str) -> Value {
    json!({"kind": "ScaledObject", "namespace": "shop", "name": name, "apiVersion": "keda.sh/v1alpha1"})
}

fn v2_item(object: Value, value: &str) -> Value {
    json!({"describedObject": object, "metric": {"name": "s0-rabbitmq-orders", "selector": null},
           "timestamp": "2024-05-01T12:00:00Z", "value": value})
}

fn list(version: &str, items: Vec<Value>) -> Value {
    json!({"kind": "MetricValueList", "apiVersion": format!("custom.metrics.k8s.io/{version}"),
           "metadata": {}, "items": items})
}

#[tokio::test]
async fn v1beta2_describes_the_metric_on_the_scale_target() {
    let (status, body) = get(
        &fixture_state(),
        &format!("{V2}/namespaces/shop/Deployments.Apps/worker/s0-rabbitmq-orders"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        list("v1beta2", vec![v2_item(deployment("worker"), "1500m")])
    );
}

#[tokio::test]
async fn v1beta2_describes_the_metric_on_the_scaled_object() {
    let (status, body) = get(
        &fixture_state(),
        &format!("{V2}/namespaces/shop/scaledobjects.keda.sh/billing/s0-rabbitmq-orders"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        list("v1beta2", vec![v2_item(scaled_object("billing"), "1k")])
    );
}

#[tokio::test]
async fn v1beta1_uses_the_legacy_item_shape() {
    let (status, body) = get(
        &fixture_state(),
        &format!("{V1}/namespaces/shop/deployments.apps/worker/s0-rabbitmq-orders"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        list(
            "v1beta1",
            vec![
                json!({"describedObject": deployment("worker"), "metricName": "s0-rabbitmq-orders",
                        "timestamp": "2024-05-01T12:00:00Z", "value": "1500m", "selector": null})
            ]
        )
    );
}

#[rstest]
#[case::all_targets("deployments.apps", "", vec![v2_item(deployment("billing-worker"), "1k"), v2_item(deployment("worker"), "1500m")])]
#[case::targets_by_label("deployments.apps", "?labelSelector=team%3Dpayments", vec![v2_item(deployment("worker"), "1500m")])]
#[case::scaled_objects_by_name_label(
    "scaledobjects.keda.sh",
    "?labelSelector=scaledobject.keda.sh%2Fname%3Dbilling&metricLabelSelector=queue%3Dx",
    vec![v2_item(scaled_object("billing"), "1k")]
)]
#[tokio::test]
async fn wildcard_lists_every_matching_object(
    #[case] resource: &str,
    #[case] query: &str,
    #[case] items: Vec<Value>,
) {
    let (status, body) = get(
        &fixture_state(),
        &format!("{V2}/namespaces/shop/{resource}/*/s0-rabbitmq-orders{query}"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, list("v1beta2", items));
}

#[rstest]
#[case::other_target(
    "/namespaces/shop/deployments.apps/nope/s0-rabbitmq-orders",
    "the server could not find the metric s0-rabbitmq-orders for deployments.apps nope"
)]
#[case::other_resource(
    "/namespaces/shop/statefulsets.apps/worker/s0-rabbitmq-orders",
    "the server could not find the metric s0-rabbitmq-orders for statefulsets.apps worker"
)]
#[case::undescribed_object_on_targets(
    "/namespaces/shop/deployments.apps/*/s0-nan",
    "the server could not find the metric s0-nan for deployments.apps"
)]
#[case::wildcard_selector_mismatch(
    "/namespaces/shop/deployments.apps/*/s0-rabbitmq-orders?labelSelector=team%3Dnone",
    "the server could not find the metric s0-rabbitmq-orders for deployments.apps with selector team=none"
)]
#[case::cluster_scoped(
    "/deployments.apps/worker/s0-rabbitmq-orders",
    "the server could not find the metric s0-rabbitmq-orders for deployments.apps worker"
)]
#[case::namespace_metric(
    "/namespaces/shop/metrics/s0-rabbitmq-orders",
    "the server could not find the metric s0-rabbitmq-orders for namespaces shop"
)]
#[tokio::test]
async fn unknown_objects_are_not_found(#[case] path: &str, #[case] message: &str) {
    let (status, body) = get(&fixture_state(), &format!("{V2}{path}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["message"], message);
}

#[tokio::test]
async fn bad_metric_label_selector_is_a_bad_request() {
    let (status, body) = get(
        &fixture_state(),
        &format!("{V2}/namespaces/shop/deployments.apps/worker/s0-rabbitmq-orders?metricLabelSelector=%28"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["reason"], "BadRequest");
}

#[tokio::test]
async fn failed_reads_are_internal_errors() {
    let (status, body) = get(
        &fixture_state(),
        &format!("{V2}/namespaces/shop/deployments.apps/consumer/s0-kafka-lag"),
    )
    .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        body["details"]["causes"][0]["message"],
        "connection refused"
    );
}
