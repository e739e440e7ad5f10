//! The telemetry server over real HTTP: a scrape returns KEDA's families in the text format,
//! `/healthz` is always 200, `/readyz` turns from 503 to 200 when the operator says so, and the
//! server stops when its shutdown token fires.

use std::sync::Arc;
use std::time::Duration;

use tidescale::telemetry::{Metrics, PollLabels, Readiness, ResourceType, serve};
use tokio_util::sync::CancellationToken;

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("http client")
}

fn sample_metrics() -> Arc<Metrics> {
    let metrics = Metrics::new();
    let labels = PollLabels {
        namespace: "shop",
        scaled_object: "orders",
        scaler: "rabbitmq",
        trigger_index: 0,
        metric: "s0-rabbitmq-orders",
        resource_type: ResourceType::ScaledObject,
    };
    metrics.record_poll(&labels, 7.0, true, Duration::from_millis(20));
    Arc::new(metrics)
}

#[tokio::test]
async fn telemetry_server_serves_metrics_and_probes_until_shutdown() {
    let readiness = Readiness::new();
    let shutdown = CancellationToken::new();
    let server = serve(
        "127.0.0.1:0".parse().expect("address"),
        sample_metrics(),
        readiness.clone(),
        shutdown.clone(),
    )
    .await
    .expect("server binds");
    let base = format!("http://{}", server.local_addr());
    let http = client();

    let scrape = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("scrape");
    assert_eq!(scrape.status(), 200);
    let content_type = scrape.headers()["content-type"].to_str().expect("ascii");
    assert_eq!(content_type, "text/plain; version=0.0.4");
    let body = scrape.text().await.expect("body");
    assert!(
        body.contains("# TYPE keda_scaler_metrics_value gauge"),
        "{body}"
    );
    assert!(body.contains(r#"keda_scaler_active{metric="s0-rabbitmq-orders",namespace="shop",scaledObject="orders",scaler="rabbitmq",triggerIndex="0",type="scaledobject"} 1"#), "{body}");
    assert!(body.contains("keda_build_info{"), "{body}");

    let status = |path: &'static str| {
        let http = http.clone();
        let url = format!("{base}{path}");
        async move { http.get(url).send().await.expect(path).status() }
    };
    assert_eq!(status("/healthz").await, 200);
    assert_eq!(status("/readyz").await, 503);
    readiness.set_ready();
    assert_eq!(status("/readyz").await, 200);
    assert_eq!(status("/nope").await, 404);

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), server.stopped())
        .await
        .expect("server stops after shutdown");
}

#[tokio::test]
async fn telemetry_serve_reports_a_taken_port() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("address");
    let result = serve(
        addr,
        Arc::new(Metrics::new()),
        Readiness::new(),
        CancellationToken::new(),
    )
    .await;
    assert!(result.is_err());
}
