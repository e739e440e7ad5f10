use axum::body::Body;
use axum::http::{Request, StatusCode};
use proptest::prelude::*;
use serde_json::Value;
use tower::ServiceExt;

use super::router;
use super::test_support::fixture_state;

/// Sends one request through [`router`]; (status, content type, body).
async fn send(method: &str, uri: &str) -> (StatusCode, String, Vec<u8>) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::empty())
        .unwrap();
    let response = router(fixture_state()).oneshot(request).await.unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, content_type, body.to_vec())
}

fn status_body(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap()
}

#[tokio::test]
async fn router_serves_discovery_reads_and_health() {
    let (status, content_type, _) = send("GET", "/apis/external.metrics.k8s.io/v1beta1").await;
    assert_eq!(
        (status, content_type.as_str()),
        (StatusCode::OK, "application/json")
    );
    let (status, _, body) = send(
        "GET",
        "/apis/external.metrics.k8s.io/v1beta1/namespaces/web/s0-rabbitmq-orders",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(status_body(&body)["items"][0]["value"], "3");
    let (status, content_type, body) = send("GET", "/readyz").await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.starts_with("text/plain"));
    assert_eq!(body, b"ok");
}

#[tokio::test]
async fn router_rejects_other_verbs_unknown_paths_and_watches_with_status() {
    for (method, uri, code, reason) in [
        ("POST", "/apis", 405, "MethodNotAllowed"),
        (
            "DELETE",
            "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/m",
            405,
            "MethodNotAllowed",
        ),
        ("GET", "/nope", 404, "NotFound"),
        (
            "GET",
            "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/m?watch=true",
            405,
            "MethodNotAllowed",
        ),
        ("GET", "/apis/%zz", 400, "BadRequest"),
    ] {
        let (status, content_type, body) = send(method, uri).await;
        assert_eq!(status.as_u16(), code, "{method} {uri}");
        assert_eq!(content_type, "application/json");
        let body = status_body(&body);
        assert_eq!(body["kind"], "Status");
        assert_eq!(body["reason"], reason);
        assert_eq!(body["code"], code);
    }
}

#[tokio::test]
async fn head_is_answered_like_get() {
    let (status, _, _) = send("HEAD", "/apis").await;
    assert_eq!(status, StatusCode::OK);
}

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "apis",
            "external.metrics.k8s.io",
            "custom.metrics.k8s.io",
            "v1beta1",
            "v1beta2",
            "namespaces",
            "shop",
            "web",
            "deployments.apps",
            "scaledobjects.keda.sh",
            "*",
            "s0-rabbitmq-orders",
            "s0-kafka-lag",
            "s0-nan",
            "metrics",
            "healthz",
            "livez",
            "readyz",
            "ping",
            "openapi",
            "v2",
            "v3",
            "version",
            ".",
            "..",
            "",
            "%",
            "%2F",
            "%ff",
        ])
        .prop_map(str::to_owned),
        "[a-zA-Z0-9%._~*+-]{0,12}",
    ]
}

fn query() -> impl Strategy<Value = String> {
    let param = prop_oneof![
        Just("labelSelector=".to_owned()),
        Just("metricLabelSelector=".to_owned()),
        Just("watch=".to_owned()),
        Just("verbose".to_owned()),
        Just("exclude=".to_owned()),
        "[a-zA-Z]{0,6}=",
    ];
    prop::collection::vec((param, "[a-zA-Z0-9%=+,()!._/-]{0,24}"), 0..4).prop_map(|pairs| {
        pairs
            .into_iter()
            .map(|(key, value)| format!("{key}{value}"))
            .collect::<Vec<_>>()
            .join("&")
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Whatever arrives, the answer is a 2xx body or a Status whose code is the HTTP status,
    /// and a 5xx only comes from the one metric whose poll failed.
    #[test]
    fn every_request_gets_a_2xx_or_a_status(
        method in prop::sample::select(vec!["GET", "GET", "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]),
        segments in prop::collection::vec(segment(), 0..9),
        query in query(),
    ) {
        let path = format!("/{}", segments.join("/"));
        let uri = if query.is_empty() { path.clone() } else { format!("{path}?{query}") };
        prop_assume!(uri.parse::<axum::http::Uri>().is_ok());
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (status, content_type, body) = runtime.block_on(send(method, &uri));
        if status.is_success() {
            prop_assert!(method == "HEAD" || !body.is_empty(), "{uri}: empty 2xx body");
            if content_type == "application/json" && method != "HEAD" {
                prop_assert!(serde_json::from_slice::<Value>(&body).is_ok(), "{uri}: invalid JSON");
            }
        } else if method != "HEAD" {
            // HEAD answers carry no body (axum strips it), only the status.
            let parsed: Value = serde_json::from_slice(&body)
                .map_err(|e| TestCaseError::fail(format!("{method} {uri} -> {status}: not JSON: {e}")))?;
            prop_assert_eq!(&parsed["kind"], "Status");
            prop_assert_eq!(parsed["code"].as_u64(), Some(u64::from(status.as_u16())));
            prop_assert_eq!(content_type.as_str(), "application/json");
        }
        if status.is_server_error() {
            prop_assert!(path.contains("s0-kafka-lag"), "{method} {uri} -> {status}");
        }
    }
}
