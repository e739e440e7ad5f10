//! The Prometheus stand-in: `GET /api/v1/query?query=bench_value{object="<i>"}` answers one
//! sample with object i's settable value, and records when each object was queried, so the
//! bench knows when every object was polled and when a flipped object's next poll began.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use axum::extract::{Query, State};
use axum::routing::get;

/// Times are microseconds since `start`, plus one: 0 means "never".
pub struct Fake {
    pub addr: SocketAddr,
    start: Instant,
    queries: AtomicU64,
    values: Vec<AtomicU32>,
    last_query: Vec<AtomicU64>,
    flipped: Vec<AtomicU64>,
    first_after_flip: Vec<AtomicU64>,
    scaled: Vec<AtomicU64>,
    reset: AtomicU64,
}

impl Fake {
    pub async fn start(objects: usize) -> Result<Arc<Self>> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let zeros = || (0..objects).map(|_| AtomicU64::new(0)).collect::<Vec<_>>();
        let fake = Arc::new(Fake {
            addr: listener.local_addr()?,
            start: Instant::now(),
            queries: AtomicU64::new(0),
            values: (0..objects).map(|_| AtomicU32::new(0)).collect(),
            last_query: zeros(),
            flipped: zeros(),
            first_after_flip: zeros(),
            scaled: zeros(),
            reset: AtomicU64::new(0),
        });
        let app = axum::Router::new()
            .route("/api/v1/query", get(query))
            .with_state(Arc::clone(&fake));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(fake)
    }

    fn now(&self) -> u64 {
        self.start.elapsed().as_micros() as u64 + 1
    }

    fn elapsed(from: u64, to: u64) -> Duration {
        Duration::from_micros(to.saturating_sub(from))
    }

    /// Queries answered so far.
    pub fn queries(&self) -> u64 {
        self.queries.load(Ordering::Relaxed)
    }

    /// Start counting "polled" afresh (before an operator starts).
    pub fn reset_first_polls(&self) {
        self.reset.store(self.now(), Ordering::SeqCst);
    }

    /// Wait until every object was queried since the last reset: the time that took, or
    /// after `timeout` the time waited, and how many were polled by then.
    pub async fn wait_all_polled(&self, timeout: Duration) -> (Duration, usize) {
        let reset = self.reset.load(Ordering::SeqCst);
        loop {
            let polled = self
                .last_query
                .iter()
                .filter(|t| t.load(Ordering::Relaxed) >= reset)
                .count();
            let waited = Self::elapsed(reset, self.now());
            if polled == self.last_query.len() || waited > timeout {
                return (waited, polled);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Object `index` becomes active (value 1 > activationThreshold 0).
    pub fn flip(&self, index: usize) {
        self.flipped[index].store(self.now(), Ordering::SeqCst);
        self.values[index].store(1, Ordering::SeqCst);
    }

    /// The target of object `index` was seen scaled out.
    pub fn scaled(&self, index: usize) {
        let Some(slot) = self.scaled.get(index) else {
            return;
        };
        if self.flipped[index].load(Ordering::SeqCst) != 0 {
            let _ = slot.compare_exchange(0, self.now(), Ordering::SeqCst, Ordering::SeqCst);
        }
    }

    /// `(overhead, latency)` of a measured activation: scaled − first query after the flip,
    /// and scaled − flip.
    pub fn activation(&self, index: usize) -> Option<(Duration, Duration)> {
        let flipped = self.flipped[index].load(Ordering::SeqCst);
        let polled = self.first_after_flip[index].load(Ordering::SeqCst);
        let scaled = self.scaled[index].load(Ordering::SeqCst);
        (flipped != 0 && polled != 0 && scaled != 0).then(|| {
            (
                Self::elapsed(polled, scaled),
                Self::elapsed(flipped, scaled),
            )
        })
    }
}

async fn query(
    State(fake): State<Arc<Fake>>,
    Query(params): Query<HashMap<String, String>>,
) -> axum::response::Response {
    fake.queries.fetch_add(1, Ordering::Relaxed);
    let index = params
        .get("query")
        .and_then(|q| q.split("object=\"").nth(1))
        .and_then(|rest| rest.split('"').next())
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|&i| i < fake.values.len());
    let mut value = 0;
    if let Some(i) = index {
        let now = fake.now();
        fake.last_query[i].store(now, Ordering::Relaxed);
        value = fake.values[i].load(Ordering::SeqCst);
        if value != 0 {
            let _ = fake.first_after_flip[i].compare_exchange(
                0,
                now,
                Ordering::SeqCst,
                Ordering::SeqCst,
            );
        }
    }
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let body = format!(
        r#"{{"status":"success","data":{{"resultType":"vector","result":[{{"metric":{{}},"value":[{at},"{value}"]}}]}}}}"#
    );
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

use axum::response::IntoResponse;
