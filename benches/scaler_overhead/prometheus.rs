//! Prometheus: one instant query (`vector(42)`: a one-sample vector, no scraping needed).
//!
//! Raw: a reqwest `GET /api/v1/query?query=…&time=…` on a client the bench holds (built with the
//! same rustls config as the scaler's pool, so the two differ only by the scaler path), then
//! the JSON body parsed to the sample value. Scaler: a `prometheus` trigger with the same query,
//! whose pooled client keeps its keep-alive connection warm.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow};
use reqwest::Url;
use serde::Deserialize;
use tidescale_scalers::Scaler;
use tidescale_scalers::pool::http;

use crate::backend::{self, ConnSnapshot, env_or, timed};
use crate::measure::Subject;
use crate::meter;

const URL_ENV: &str = "TIDESCALE_TEST_PROMETHEUS_URL";
/// The query both sides run.
const QUERY: &str = "vector(42)";

/// The raw client, the scaler and the server's port.
pub struct Prometheus {
    client: reqwest::Client,
    query_url: Url,
    scaler: Box<dyn Scaler>,
    metric: String,
    port: u16,
}

/// `{"data":{"result":[{"value":[<ts>,"<value>"]}]}}`: only what the raw call needs.
#[derive(Deserialize)]
struct QueryResponse {
    data: QueryData,
}

#[derive(Deserialize)]
struct QueryData {
    result: Vec<QuerySample>,
}

#[derive(Deserialize)]
struct QuerySample {
    value: (f64, String),
}

impl Prometheus {
    /// Build the raw client and the scaler, and check the server answers the query.
    pub async fn setup() -> Result<Self> {
        let base = env_or(URL_ENV, "http://127.0.0.1:9090");
        let parsed = Url::parse(&base).with_context(|| format!("{URL_ENV} is not a URL"))?;
        let port = parsed
            .port_or_known_default()
            .ok_or_else(|| anyhow!("{URL_ENV} has no port"))?;
        let query_url = parsed
            .join("/api/v1/query")
            .context("building the query URL")?;
        let tls = http::rustls_config(&http::TlsSettings::default())
            .map_err(|e| anyhow!("TLS setup: {e}"))?;
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .build()
            .context("building the raw HTTP client")?;
        let cfg = backend::scaler_config(
            "prometheus",
            &[
                ("serverAddress", base.trim_end_matches('/')),
                ("query", QUERY),
                ("threshold", "10"),
            ],
        );
        let (scaler, metric) = backend::build(&cfg).await?;
        let subject = Self {
            client,
            query_url,
            scaler,
            metric,
            port,
        };
        subject.raw().await.with_context(|| {
            format!("Prometheus is not usable at {base} (set {URL_ENV}; scripts/services start)")
        })?;
        Ok(subject)
    }

    /// Give the scaler's pooled client back.
    pub async fn teardown(self) {
        if let Err(e) = self.scaler.close().await {
            eprintln!("warning: closing the prometheus scaler: {e}");
        }
    }

    async fn raw(&self) -> Result<f64> {
        // `time` as the scaler sends it (evaluation at "now"), in Unix seconds.
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let request = self
            .client
            .get(self.query_url.clone())
            .query(&[("query", QUERY), ("time", &now.to_string())]);
        let response = timed("Prometheus query", async {
            request.send().await?.error_for_status()?.bytes().await
        })
        .await?;
        let body: QueryResponse =
            serde_json::from_slice(&response).context("decoding the query response")?;
        let [sample] = body.data.result.as_slice() else {
            return Err(anyhow!(
                "expected one sample, got {}",
                body.data.result.len()
            ));
        };
        sample
            .value
            .1
            .parse()
            .with_context(|| format!("sample value {:?}", sample.value.1))
    }
}

impl Subject for Prometheus {
    fn variants(&self) -> &[&'static str] {
        &["raw reqwest GET + JSON", "scaler prometheus"]
    }

    async fn call(&self, variant: usize) -> Result<f64> {
        match variant {
            0 => self.raw().await,
            _ => backend::poll(self.scaler.as_ref(), &self.metric).await,
        }
    }

    async fn connections(&self) -> Result<ConnSnapshot> {
        let mut snapshot = ConnSnapshot {
            sockets: meter::connections_to(self.port)?,
            ..ConnSnapshot::default()
        };
        let stats = http::pool().stats();
        snapshot
            .detail
            .insert("scaler_pool_clients", stats.clients as u64);
        snapshot
            .detail
            .insert("scaler_pool_failing_endpoints", stats.failing as u64);
        Ok(snapshot)
    }
}
