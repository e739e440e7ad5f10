//! Helpers shared by the integration tests: service addresses from env, config literals,
//! polling until a condition holds, and an HTTP client for test setup.
//!
//! A service that cannot be reached fails the test with a message naming the service and the
//! env var that points at it — tests never skip.

#![allow(dead_code)] // each test binary uses a different subset

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tidescale_scalers::ScalerConfig;
use tidescale_scalers::pool::http::{TlsSettings, rustls_config};

/// RabbitMQ AMQP URL.
pub fn rabbitmq_amqp() -> String {
    env_or(
        "TIDESCALE_TEST_RABBITMQ_AMQP",
        "amqp://guest:guest@127.0.0.1:5672/%2f",
    )
}

/// RabbitMQ management API base URL (with userinfo).
pub fn rabbitmq_http() -> String {
    env_or(
        "TIDESCALE_TEST_RABBITMQ_HTTP",
        "http://guest:guest@127.0.0.1:15672",
    )
}

/// Prometheus base URL.
pub fn prometheus_url() -> String {
    env_or("TIDESCALE_TEST_PROMETHEUS_URL", "http://127.0.0.1:9090")
}

/// Directory of Prometheus file-SD JSON files.
pub fn prometheus_sd_dir() -> String {
    env_or(
        "TIDESCALE_TEST_PROMETHEUS_SD_DIR",
        "/tmp/tidescale-prometheus-sd",
    )
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// A name unique to this test run: `<prefix>-<pid>-<nanos>`.
pub fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// A trigger config from metadata and auth literals.
pub fn config(trigger_type: &str, meta: &[(&str, &str)], auth: &[(&str, &str)]) -> ScalerConfig {
    let map = |kv: &[(&str, &str)]| -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    ScalerConfig {
        namespace: "default".into(),
        name: "it".into(),
        trigger_type: trigger_type.into(),
        metadata: map(meta),
        auth_params: map(auth),
        timeout: Duration::from_secs(3),
        ..ScalerConfig::default()
    }
}

/// A plain HTTP client for test setup (creating vhosts, publishing, querying).
pub fn http_client() -> reqwest::Client {
    let tls = rustls_config(&TlsSettings::default()).expect("rustls config");
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(Duration::from_secs(5))
        .build()
        .expect("http client")
}

/// Call `check` until it returns `Some`, for up to `limit`; panics with `what` on timeout.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Split `http://user:pass@host:port` into the bare base URL and its credentials.
pub fn split_userinfo(url: &str) -> (String, String, String) {
    let parsed = reqwest::Url::parse(url).expect("valid URL");
    let user = parsed.username().to_owned();
    let pass = parsed.password().unwrap_or_default().to_owned();
    let mut bare = parsed.clone();
    let _ = bare.set_username("");
    let _ = bare.set_password(None);
    (bare.as_str().trim_end_matches('/').to_owned(), user, pass)
}

/// Open file descriptors of this process.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .expect("read /proc/self/fd")
}

/// A TCP port on 127.0.0.1 where nothing listens (bound, then released).
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

pub mod rabbit;
