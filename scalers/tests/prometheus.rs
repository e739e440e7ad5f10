//! Prometheus scaler against a real Prometheus that scrapes this test's own `/metrics`.
//!
//! Needs `TIDESCALE_TEST_PROMETHEUS_URL` (default `http://127.0.0.1:9090`), a Prometheus whose
//! scrape config reads file-SD targets from `TIDESCALE_TEST_PROMETHEUS_SD_DIR/*.json` (default
//! dir `/tmp/tidescale-prometheus-sd`) with a 1 s scrape interval. Each test serves its metrics
//! on 127.0.0.1:0 and registers itself under a unique `job` label.

#![cfg(feature = "prometheus")]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use common::{config, eventually, http_client, prometheus_sd_dir, prometheus_url, unique};
use tidescale_scalers::{MetricsAndActivity, Scaler, ScalerError, build_scaler};

/// A `/metrics` endpoint registered with Prometheus through a file-SD file (removed on drop).
struct Target {
    job: String,
    body: Arc<Mutex<String>>,
    sd_file: String,
}

impl Target {
    async fn start(body: &str) -> Self {
        let ready = http_client()
            .get(format!("{}/-/ready", prometheus_url()))
            .send()
            .await;
        if !ready.as_ref().is_ok_and(|r| r.status().is_success()) {
            panic!(
                "Prometheus not reachable at {} (set TIDESCALE_TEST_PROMETHEUS_URL): {ready:?}",
                prometheus_url()
            );
        }
        let body = Arc::new(Mutex::new(body.to_owned()));
        let served = Arc::clone(&body);
        let app = Router::new().route(
            "/metrics",
            get(move || {
                let text = served.lock().map(|b| b.clone()).unwrap_or_default();
                async move { text }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        let job = unique("tidescale-it").replace('-', "_");
        let dir = prometheus_sd_dir();
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| {
            panic!("cannot create TIDESCALE_TEST_PROMETHEUS_SD_DIR {dir}: {e}")
        });
        let sd_file = format!("{dir}/{job}.json");
        let sd = serde_json::json!([{"targets": [addr.to_string()], "labels": {"job": job}}]);
        // Write then rename, so Prometheus never reads a half-written file.
        let tmp = format!("{sd_file}.tmp");
        std::fs::write(&tmp, sd.to_string()).expect("write SD file");
        std::fs::rename(&tmp, &sd_file).expect("rename SD file");
        Self { job, body, sd_file }
    }

    fn set(&self, body: &str) {
        if let Ok(mut b) = self.body.lock() {
            *b = body.to_owned();
        }
    }

    async fn scaler(&self, query: &str, meta: &[(&str, &str)]) -> Box<dyn Scaler> {
        let server = prometheus_url();
        let mut all = vec![
            ("serverAddress", server.as_str()),
            ("query", query),
            ("threshold", "1"),
        ];
        all.extend_from_slice(meta);
        build_scaler(&config("prometheus", &all, &[]))
            .await
            .expect("build")
    }

    /// Wait until Prometheus has scraped this target at least once.
    async fn await_scraped(&self) {
        let scaler = self
            .scaler(&format!("up{{job=\"{}\"}}", self.job), &[])
            .await;
        eventually("the first scrape", Duration::from_secs(20), || async {
            poll(scaler.as_ref())
                .await
                .ok()
                .filter(|m| m.values == [1.0])
                .map(drop)
        })
        .await;
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.sd_file);
    }
}

async fn poll(scaler: &dyn Scaler) -> Result<MetricsAndActivity, ScalerError> {
    let name = scaler.metric_specs()[0].metric_name.clone();
    scaler.metrics_and_activity(&name).await
}

#[tokio::test]
async fn value_and_activation_follow_the_scraped_gauge() {
    let target = Target::start("tidescale_it_value 5\n").await;
    let query = format!("tidescale_it_value{{job=\"{}\"}}", target.job);
    let scaler = target.scaler(&query, &[("activationThreshold", "4")]).await;
    let got = eventually("value 5", Duration::from_secs(20), || async {
        poll(scaler.as_ref())
            .await
            .ok()
            .filter(|m| m.values == [5.0])
    })
    .await;
    assert!(got.active);
    target.set("tidescale_it_value 3.5\n");
    let got = eventually("value 3.5", Duration::from_secs(20), || async {
        poll(scaler.as_ref())
            .await
            .ok()
            .filter(|m| m.values == [3.5])
    })
    .await;
    assert!(!got.active);
}

#[tokio::test]
async fn empty_result_is_zero_or_an_error() {
    let target = Target::start("").await;
    let query = format!("tidescale_it_absent{{job=\"{}\"}}", target.job);
    let lenient = target.scaler(&query, &[]).await;
    assert_eq!(
        poll(lenient.as_ref()).await.expect("lenient"),
        MetricsAndActivity {
            values: vec![0.0],
            active: false
        }
    );
    let strict = target
        .scaler(&query, &[("ignoreNullValues", "false")])
        .await;
    let err = poll(strict.as_ref()).await.expect_err("strict");
    assert!(err.to_string().contains("the result is empty"), "{err}");
}

#[tokio::test]
async fn nan_is_zero_or_an_error() {
    let target = Target::start("tidescale_it_nan NaN\n").await;
    target.await_scraped().await;
    let query = format!("tidescale_it_nan{{job=\"{}\"}}", target.job);
    let strict = target
        .scaler(&query, &[("ignoreNullValues", "false")])
        .await;
    let err = eventually("a NaN sample", Duration::from_secs(20), || async {
        poll(strict.as_ref())
            .await
            .err()
            .filter(|e| e.to_string().contains("returns NaN"))
    })
    .await;
    assert_eq!(err.kind(), "backend");
    let lenient = target.scaler(&query, &[]).await;
    assert_eq!(
        poll(lenient.as_ref()).await.expect("lenient").values,
        vec![0.0]
    );
}

#[tokio::test]
async fn multiple_series_are_an_error() {
    let target =
        Target::start("tidescale_it_multi{series=\"a\"} 1\ntidescale_it_multi{series=\"b\"} 2\n")
            .await;
    target.await_scraped().await;
    let query = format!("tidescale_it_multi{{job=\"{}\"}}", target.job);
    let scaler = target.scaler(&query, &[]).await;
    let err = eventually("two series", Duration::from_secs(20), || async {
        poll(scaler.as_ref()).await.err()
    })
    .await;
    assert!(err.to_string().contains("multiple elements"), "{err}");
    // Aggregating in PromQL is the fix users apply.
    let summed = target.scaler(&format!("sum({query})"), &[]).await;
    assert_eq!(poll(summed.as_ref()).await.expect("sum").values, vec![3.0]);
}

#[tokio::test]
async fn auth_headers_custom_headers_and_parameters_are_accepted() {
    let target = Target::start("tidescale_it_auth 7\n").await;
    target.await_scraped().await;
    let query = format!("tidescale_it_auth{{job=\"{}\"}}", target.job);
    let server = prometheus_url();
    let meta = [
        ("serverAddress", server.as_str()),
        ("query", query.as_str()),
        ("threshold", "1"),
        ("authModes", "bearer,custom"),
        ("customHeaders", "X-Scope-OrgID=tenant"),
        ("queryParameters", "timeout=5s"),
    ];
    let auth = [
        ("bearerToken", "t"),
        ("customAuthHeader", "X-Api-Key"),
        ("customAuthValue", "k"),
    ];
    let scaler = build_scaler(&config("prometheus", &meta, &auth))
        .await
        .expect("build");
    assert_eq!(poll(scaler.as_ref()).await.expect("poll").values, vec![7.0]);
}

#[tokio::test]
async fn a_bad_query_reports_the_status() {
    let target = Target::start("").await;
    let scaler = target.scaler("sum(", &[]).await;
    let err = poll(scaler.as_ref()).await.expect_err("bad query");
    assert!(err.to_string().contains("status: 400"), "{err}");
}
