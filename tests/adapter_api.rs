//! The adapter's HTTP API over a real socket: what kubectl `get --raw` and the aggregator's
//! plain-HTTP leg see (form-encoded selectors, Status errors, discovery), without TLS or auth.

use std::collections::BTreeMap;

use k8s_openapi::jiff::Timestamp;
use tidescale::adapter::api::{ApiState, router};
use tidescale::scaling::store::{MetricRecord, MetricStore};
use tidescale::telemetry::Readiness;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One HTTP/1.1 GET; returns (status code, body).
async fn get(addr: std::net::SocketAddr, target: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET {target} HTTP/1.1\r\nHost: adapter\r\nAccept: application/json, */*\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let code = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (code, body)
}

#[tokio::test]
async fn hpa_style_reads_discovery_and_errors_over_http() {
    let store = MetricStore::default();
    store.record_poll(
        "shop",
        "orders",
        BTreeMap::from([(
            "s0-rabbitmq-orders".to_owned(),
            MetricRecord {
                value: 7.0,
                active: true,
                timestamp: Timestamp::UNIX_EPOCH,
                error: None,
            },
        )]),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = router(ApiState::new(store, Readiness::new()));
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let (code, body) = get(
        addr,
        "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/s0-rabbitmq-orders?labelSelector=scaledobject.keda.sh%2Fname%3Dorders",
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"kind":"ExternalMetricValueList","apiVersion":"external.metrics.k8s.io/v1beta1","metadata":{},
            "items":[{"metricName":"s0-rabbitmq-orders","metricLabels":{},"timestamp":"1970-01-01T00:00:00Z","value":"7"}]})
    );

    let (code, body) = get(addr, "/apis/external.metrics.k8s.io/v1beta1").await;
    assert_eq!(code, 200);
    assert!(body.contains(r#""name":"s0-rabbitmq-orders""#), "{body}");

    let (code, body) = get(
        addr,
        "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/s0-rabbitmq-orders?labelSelector=a+in+%28b",
    )
    .await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains(r#""reason":"BadRequest""#));

    // Not ready yet: readyz fails with Go's text, livez passes.
    let (code, body) = get(addr, "/readyz").await;
    assert_eq!(code, 500);
    assert!(body.ends_with("readyz check failed\n"), "{body}");
    let (code, _) = get(addr, "/livez").await;
    assert_eq!(code, 200);
    server.abort();
}
