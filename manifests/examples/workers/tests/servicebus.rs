//! The Service Bus worker against a local stand-in of Service Bus's REST API that checks the
//! SAS token's signature: it peek-locks every message, completes each (DELETE with the lock
//! token), and leaves the queue empty.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use base64::Engine;
use tidescale_sample_workers::servicebus::{Config, ConnectionString, sas_token};
use tidescale_sample_workers::{Common, Progress};
use tokio_util::sync::CancellationToken;

const KEY: &str = "dGVzdC1rZXk=";
const MESSAGES: usize = 12;

#[derive(Default)]
struct Queue {
    ready: VecDeque<String>,
    locked: HashMap<String, String>,
    completed: usize,
    bad_auth: usize,
}

type Shared = Arc<Mutex<Queue>>;

/// The signature of `header` verifies against `KEY` for the given audience.
fn signed(headers: &HeaderMap) -> bool {
    let Some(token) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some(fields) = token.strip_prefix("SharedAccessSignature ") else {
        return false;
    };
    let field = |name: &str| {
        fields
            .split('&')
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .unwrap_or_default()
            .to_owned()
    };
    let (sr, se, skn) = (field("sr"), field("se"), field("skn"));
    let Ok(expiry) = se.parse::<u64>() else {
        return false;
    };
    let expected = sas_token(
        "https://demo.servicebus.windows.net/orders",
        "listen",
        KEY,
        expiry,
    );
    // Independent check of the HMAC too: base64(HMAC-SHA256(key, sr + "\n" + se)).
    let mac = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, KEY.as_bytes());
    let sig = base64::engine::general_purpose::STANDARD
        .encode(ring::hmac::sign(&mac, format!("{sr}\n{se}").as_bytes()).as_ref());
    let sig =
        percent_encoding::utf8_percent_encode(&sig, percent_encoding::NON_ALPHANUMERIC).to_string();
    token == expected && skn == "listen" && field("sig").eq_ignore_ascii_case(&sig)
}

async fn receive(
    State(queue): State<Shared>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    let mut queue = queue.lock().unwrap();
    if name != "orders" {
        return StatusCode::NOT_FOUND.into_response();
    }
    if !signed(&headers) {
        queue.bad_auth += 1;
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let Some(body) = queue.ready.pop_front() else {
        return StatusCode::NO_CONTENT.into_response();
    };
    let id = format!("msg-{}", queue.locked.len() + queue.completed);
    let lock = format!("lock-{id}");
    queue.locked.insert(id.clone(), lock.clone());
    let properties = serde_json::json!({"MessageId": id, "LockToken": lock, "DeliveryCount": 1, "SequenceNumber": 1});
    (
        StatusCode::CREATED,
        [("BrokerProperties", properties.to_string())],
        body,
    )
        .into_response()
}

async fn complete(
    State(queue): State<Shared>,
    Path((name, id, lock)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> StatusCode {
    let mut queue = queue.lock().unwrap();
    if name != "orders" || !signed(&headers) {
        return StatusCode::UNAUTHORIZED;
    }
    match queue.locked.get(&id) {
        Some(held) if *held == lock => {
            queue.locked.remove(&id);
            queue.completed += 1;
            StatusCode::OK
        }
        _ => StatusCode::GONE,
    }
}

#[tokio::test]
async fn servicebus_worker_peek_locks_and_completes_every_message() {
    tidescale_sample_workers::install_crypto_provider();
    let shared: Shared = Arc::default();
    shared.lock().unwrap().ready = (0..MESSAGES).map(|i| format!("job {i}")).collect();
    let app = Router::new()
        .route("/{queue}/messages/head", post(receive))
        .route("/{queue}/messages/{id}/{lock}", delete(complete))
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });

    let connection: ConnectionString = format!(
        "Endpoint=sb://demo.servicebus.windows.net/;SharedAccessKeyName=listen;SharedAccessKey={KEY}"
    )
    .parse()
    .expect("connection string");
    let config = Config {
        connection,
        queue: "orders".into(),
        endpoint: format!("http://{addr}"),
        receive_timeout: Duration::from_secs(1),
        common: Common {
            work: Duration::from_millis(2),
        },
    };
    let shutdown = CancellationToken::new();
    let progress = Progress::default();
    let worker = tokio::spawn({
        let (config, shutdown, progress) = (config.clone(), shutdown.clone(), progress.clone());
        async move { run_worker(config, shutdown, progress).await }
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while progress.processed() < MESSAGES as u64 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "worker processed {} of {MESSAGES} (bad auth: {})",
            progress.processed(),
            shared.lock().unwrap().bad_auth
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), worker)
        .await
        .expect("worker stops")
        .expect("worker task")
        .expect("worker ends without error");
    let queue = shared.lock().unwrap();
    assert_eq!(queue.completed, MESSAGES);
    assert!(queue.ready.is_empty() && queue.locked.is_empty());
    assert_eq!(queue.bad_auth, 0);
}

async fn run_worker(
    config: Config,
    shutdown: CancellationToken,
    progress: Progress,
) -> anyhow::Result<()> {
    tidescale_sample_workers::servicebus::run(&config, shutdown, progress).await
}
