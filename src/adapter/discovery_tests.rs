use std::collections::BTreeMap;

use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use serde_json::json;

use super::super::api::handle;
use super::super::api::test_support::{fixture_state, get, record};

#[tokio::test]
async fn group_list_names_both_groups() {
    let (status, body) = get(&fixture_state(), "/apis").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"kind":"APIGroupList","apiVersion":"v1","groups":[
            {"name":"external.metrics.k8s.io","versions":[{"groupVersion":"external.metrics.k8s.io/v1beta1","version":"v1beta1"}],
             "preferredVersion":{"groupVersion":"external.metrics.k8s.io/v1beta1","version":"v1beta1"}},
            {"name":"custom.metrics.k8s.io","versions":[{"groupVersion":"custom.metrics.k8s.io/v1beta2","version":"v1beta2"},{"groupVersion":"custom.metrics.k8s.io/v1beta1","version":"v1beta1"}],
             "preferredVersion":{"groupVersion":"custom.metrics.k8s.io/v1beta2","version":"v1beta2"}}]})
    );
}

#[tokio::test]
async fn group_is_one_list_element_with_kind() {
    let (status, body) = get(&fixture_state(), "/apis/external.metrics.k8s.io").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"kind":"APIGroup","apiVersion":"v1","name":"external.metrics.k8s.io",
               "versions":[{"groupVersion":"external.metrics.k8s.io/v1beta1","version":"v1beta1"}],
               "preferredVersion":{"groupVersion":"external.metrics.k8s.io/v1beta1","version":"v1beta1"}})
    );
}

fn external(name: &str) -> serde_json::Value {
    json!({"name":name,"singularName":"","namespaced":true,"kind":"ExternalMetricValueList","verbs":["get"]})
}

fn custom(name: &str) -> serde_json::Value {
    json!({"name":name,"singularName":"","namespaced":true,"kind":"MetricValueList","verbs":["get"]})
}

#[tokio::test]
async fn external_resources_list_every_known_metric_and_follow_changes() {
    let state = fixture_state();
    let (status, body) = get(&state, "/apis/external.metrics.k8s.io/v1beta1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"kind":"APIResourceList","apiVersion":"v1","groupVersion":"external.metrics.k8s.io/v1beta1",
               "resources":[external("s0-kafka-lag"), external("s0-nan"), external("s0-rabbitmq-orders")]})
    );
    state.store.record_poll(
        "shop",
        "new",
        BTreeMap::from([("s1-Cron".to_owned(), record(1.0))]),
    );
    let (_, body) = get(&state, "/apis/external.metrics.k8s.io/v1beta1").await;
    assert_eq!(body["resources"].as_array().unwrap().len(), 4);
    assert_eq!(body["resources"][3], external("s1-cron"));
}

/// client-go fails discovery of a group-version without resources ("received empty
/// response"), so an empty store lists KEDA's fixed `externalmetrics` entry.
#[tokio::test]
async fn empty_store_lists_one_placeholder_so_kubectl_discovery_succeeds() {
    let state = super::super::api::ApiState::new(Default::default(), Default::default());
    for (gv, name, kind) in [
        (
            "external.metrics.k8s.io/v1beta1",
            "externalmetrics",
            "ExternalMetricValueList",
        ),
        (
            "custom.metrics.k8s.io/v1beta2",
            "scaledobjects.keda.sh/externalmetrics",
            "MetricValueList",
        ),
    ] {
        let (status, body) = get(&state, &format!("/apis/{gv}")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            body["resources"],
            json!([{"name": name, "singularName": "", "namespaced": true, "kind": kind, "verbs": ["get"]}])
        );
    }
}

#[tokio::test]
async fn custom_resources_describe_metrics_on_targets_and_scaled_objects() {
    let (status, body) = get(&fixture_state(), "/apis/custom.metrics.k8s.io/v1beta1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"kind":"APIResourceList","apiVersion":"v1","groupVersion":"custom.metrics.k8s.io/v1beta1",
               "resources":[custom("deployments.apps/s0-kafka-lag"), custom("deployments.apps/s0-rabbitmq-orders"),
                            custom("scaledobjects.keda.sh/s0-kafka-lag"), custom("scaledobjects.keda.sh/s0-nan"),
                            custom("scaledobjects.keda.sh/s0-rabbitmq-orders")]})
    );
}

async fn call(uri: &str, headers: &[(header::HeaderName, &str)]) -> axum::response::Response {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.append(name.clone(), HeaderValue::from_str(value).unwrap());
    }
    let uri: Uri = uri.parse().unwrap();
    handle(&fixture_state(), &Method::GET, &uri, &map).await
}

#[tokio::test]
async fn aggregated_discovery_accept_gets_legacy_json() {
    let accept = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
    let response = call("/apis", &[(header::ACCEPT, accept)]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
}

#[tokio::test]
async fn protobuf_only_accept_is_not_acceptable_but_with_wildcard_is_fine() {
    let response = call(
        "/apis",
        &[(header::ACCEPT, "application/vnd.kubernetes.protobuf")],
    )
    .await;
    assert_eq!(response.status(), StatusCode::NOT_ACCEPTABLE);
    let response = call(
        "/apis",
        &[(header::ACCEPT, "application/vnd.kubernetes.protobuf, */*")],
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn openapi_v2_is_swagger_with_an_etag_and_304() {
    let response = call("/openapi/v2", &[]).await;
    assert_eq!(response.status(), StatusCode::OK);
    let etag = response.headers()[header::ETAG]
        .to_str()
        .unwrap()
        .to_owned();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(doc["swagger"], "2.0");
    assert!(doc["paths"]["/apis/external.metrics.k8s.io/v1beta1/namespaces/{namespace}/{metric}"]["get"].is_object());
    let response = call("/openapi/v2", &[(header::IF_NONE_MATCH, &etag)]).await;
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(response.headers()[header::ETAG], etag.as_str());
    let response = call("/openapi/v2", &[(header::IF_NONE_MATCH, "\"other\"")]).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn openapi_v3_is_not_served_and_version_names_the_crate() {
    let (status, body) = get(&fixture_state(), "/openapi/v3").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["reason"], "NotFound");
    let (status, body) = get(&fixture_state(), "/version").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["gitVersion"], concat!("v", env!("CARGO_PKG_VERSION")));
    assert_eq!(body["major"], env!("CARGO_PKG_VERSION_MAJOR"));
}
