//! A local HTTPS stand-in for the Service Bus management API and the Azure AD token endpoint.
//!
//! No Service Bus emulator exists on the build machines (and the real emulator has no
//! management API), so this server reproduces the documented Atom responses: an `<entry>` per
//! entity, paged `<feed>`s for listings, an empty feed for a missing entity, `<Error>` bodies
//! for 401/429. It **verifies** what the scaler sends: the SAS token is re-signed here
//! independently (HMAC-SHA256 over the lower-cased, query-escaped resource and the expiry), the
//! expiry must lie in the future, and the resource must cover the requested URL; bearer tokens
//! must be the one this server issued. Every rejection is recorded for the test to assert on.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

const QUEUE: &str = include_str!("../azure_servicebus_fixtures/queue_entry.xml");
const SUBSCRIPTION: &str = include_str!("../azure_servicebus_fixtures/subscription_entry.xml");
const FEED: &str = include_str!("../azure_servicebus_fixtures/feed.xml");
const EMPTY_FEED: &str = include_str!("../azure_servicebus_fixtures/empty_feed.xml");
const ERROR: &str = include_str!("../azure_servicebus_fixtures/error.xml");

/// The SAS key the server accepts.
pub const KEY_NAME: &str = "RootManageSharedAccessKey";
/// Base64-looking, used as UTF-8 bytes (as Service Bus does).
pub const KEY: &str = "dGlkZXNjYWxlLXRlc3Qta2V5Cg==";
/// The access token the token endpoint issues.
pub const ACCESS_TOKEN: &str = "eyJ0eXAiOiJKV1QifQ.aad-token.sig";
/// The federated assertion the token endpoint expects.
pub const ASSERTION: &str = "eyJhbGciOiJSUzI1NiJ9.projected-sa-token.sig";
/// The application id the token endpoint expects.
pub const CLIENT_ID: &str = "00000000-1111-2222-3333-444444444444";

/// How the server misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Documented happy-path responses.
    #[default]
    Normal,
    /// Every entity request gets 401 (a policy without Manage rights).
    Unauthorized,
    /// Every entity request gets 429.
    Throttled,
    /// Entries without `CountDetails` (seen under throttling).
    NoCountDetails,
    /// Answer after 2 s.
    Slow,
}

/// What the server holds and what it saw.
#[derive(Debug, Default)]
pub struct ServerState {
    /// Queue name → active count.
    pub queues: BTreeMap<String, i64>,
    /// (topic, subscription) → active count.
    pub subscriptions: BTreeMap<(String, String), i64>,
    /// Current behaviour.
    pub mode: Mode,
    /// Entity requests served (path and query).
    pub requests: Vec<String>,
    /// Why requests were rejected (empty when every credential checked out).
    pub rejections: Vec<String>,
    /// Token requests that succeeded.
    pub tokens_issued: usize,
    /// The scope token requests must ask for; `None` means Service Bus's.
    pub scope: Option<String>,
    /// Prometheus instant queries served (`/api/v1/query`, Azure managed Prometheus).
    pub prometheus_queries: usize,
}

/// A running server: its address, CA certificate (PEM) and state.
pub struct Server {
    /// `localhost:<port>`.
    pub host: String,
    /// The self-signed certificate, to trust as a CA.
    pub ca_pem: String,
    /// Shared with the handlers.
    pub state: Arc<Mutex<ServerState>>,
}

impl Server {
    /// Lock the state.
    pub fn state(&self) -> std::sync::MutexGuard<'_, ServerState> {
        self.state.lock().unwrap()
    }
}

/// Start the server on `127.0.0.1:0` with a fresh self-signed certificate for `localhost`.
pub async fn start() -> Server {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![CertificateDer::from(cert.cert.der().to_vec())], key)
    .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let state = Arc::new(Mutex::new(ServerState::default()));
    let app = Router::new().fallback(handle).with_state(state.clone());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                // A client that rejects our certificate fails the handshake: nothing to serve.
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = TowerToHyperService::new(app);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    Server {
        host: format!("localhost:{port}"),
        ca_pem: cert.cert.pem(),
        state,
    }
}

fn reply(status: StatusCode, body: String) -> Response {
    Response::builder()
        .status(status)
        .header(
            "Content-Type",
            "application/atom+xml;type=entry;charset=utf-8",
        )
        .body(Body::from(body))
        .unwrap()
}

fn error(status: StatusCode, detail: &str) -> Response {
    reply(
        status,
        ERROR
            .replace("{code}", status.as_str())
            .replace("{detail}", detail),
    )
}

async fn handle(
    State(state): State<Arc<Mutex<ServerState>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: String,
) -> Response {
    if method == Method::POST && uri.path().ends_with("/oauth2/v2.0/token") {
        return token(&state, uri.path(), &body);
    }
    if uri.path() == "/api/v1/query" {
        return prometheus_query(&state, &headers);
    }
    let mode = state.lock().unwrap().mode;
    if mode == Mode::Slow {
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let query = query_map(uri.query().unwrap_or_default());
    let mut st = state.lock().unwrap();
    st.requests.push(format!(
        "{}?{}",
        uri.path(),
        uri.query().unwrap_or_default()
    ));
    if query.get("api-version").map(String::as_str) != Some("2021-05") {
        st.rejections.push(format!("missing api-version on {uri}"));
        return error(StatusCode::BAD_REQUEST, "api-version required");
    }
    let auth = headers
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    if let Err(why) = check_auth(auth, &format!("https://{host}{}", uri.path())) {
        st.rejections.push(why.clone());
        return error(
            StatusCode::UNAUTHORIZED,
            &format!("InvalidSignature: {why}"),
        );
    }
    match mode {
        Mode::Unauthorized => {
            return error(
                StatusCode::UNAUTHORIZED,
                "Manage,EntityRead claims required for this operation. TrackingId:1f2e",
            );
        }
        Mode::Throttled => {
            return error(
                StatusCode::TOO_MANY_REQUESTS,
                "The request was terminated because the namespace is being throttled.",
            );
        }
        _ => {}
    }
    let render = Render {
        host: &host,
        path: uri.path(),
        query: &query,
        strip_counts: mode == Mode::NoCountDetails,
    };
    entities(&st, &render)
}

/// Serve an entity GET or a listing from the state.
/// A request's view of the server: where it went and how entries are rendered.
struct Render<'a> {
    host: &'a str,
    path: &'a str,
    query: &'a BTreeMap<String, String>,
    strip_counts: bool,
}

impl Render<'_> {
    fn entry(&self, template: &str, topic: &str, name: &str, active: i64) -> String {
        let xml = template
            .replace("{host}", self.host)
            .replace("{topic}", topic);
        let xml = xml
            .replace("{name}", name)
            .replace("{active}", &active.to_string());
        let xml = xml.replace("{total}", &(active + 5).to_string());
        if self.strip_counts {
            strip_count_details(&xml)
        } else {
            xml
        }
    }

    /// One page of a listing, honouring `$skip` and `$top` like the service.
    fn page(&self, title: &str, items: Vec<String>) -> String {
        let number = |k: &str, default| {
            self.query
                .get(k)
                .and_then(|s| s.parse().ok())
                .unwrap_or(default)
        };
        let (skip, top): (usize, usize) = (number("$skip", 0), number("$top", 100));
        let entries: String = items.into_iter().skip(skip).take(top).collect();
        FEED.replace("{title}", title)
            .replace("{host}", self.host)
            .replace("{path}", self.path)
            .replace("{entries}", &entries)
    }
}

/// Serve an entity GET or a listing from the state.
fn entities(st: &ServerState, r: &Render<'_>) -> Response {
    let segments: Vec<String> = r
        .path
        .trim_start_matches('/')
        .split('/')
        .map(unescape)
        .collect();
    let parts: Vec<&str> = segments.iter().map(String::as_str).collect();
    let body = match parts.as_slice() {
        ["$Resources", "Queues"] => r.page(
            "Queues",
            st.queues
                .iter()
                .map(|(n, c)| r.entry(QUEUE, "", n, *c))
                .collect(),
        ),
        [topic, "Subscriptions"] => {
            let subs = st.subscriptions.iter().filter(|((t, _), _)| t == topic);
            r.page(
                "Subscriptions",
                subs.map(|((t, s), c)| r.entry(SUBSCRIPTION, t, s, *c))
                    .collect(),
            )
        }
        [topic, "Subscriptions", sub] => {
            match st
                .subscriptions
                .get(&((*topic).to_owned(), (*sub).to_owned()))
            {
                Some(c) => r.entry(SUBSCRIPTION, topic, sub, *c),
                None => EMPTY_FEED.to_owned(),
            }
        }
        _ => match st.queues.get(&segments.join("/")) {
            Some(c) => r.entry(QUEUE, "", &segments.join("/"), *c),
            None => EMPTY_FEED.to_owned(),
        },
    };
    reply(StatusCode::OK, body)
}

fn strip_count_details(xml: &str) -> String {
    match (xml.find("<CountDetails"), xml.find("</CountDetails>")) {
        (Some(a), Some(b)) => format!("{}{}", &xml[..a], &xml[b + "</CountDetails>".len()..]),
        _ => xml.to_owned(),
    }
}

/// Verify a SAS token (re-signed here) or the bearer token this server issued.
fn check_auth(header: &str, url: &str) -> Result<(), String> {
    if let Some(token) = header.strip_prefix("Bearer ") {
        return if token == ACCESS_TOKEN {
            Ok(())
        } else {
            Err("unknown bearer token".into())
        };
    }
    let fields = header
        .strip_prefix("SharedAccessSignature ")
        .ok_or("no SharedAccessSignature or Bearer authorization")?;
    let raw: BTreeMap<&str, &str> = fields
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .collect();
    let (sr, sig, se, skn) = match (raw.get("sr"), raw.get("sig"), raw.get("se"), raw.get("skn")) {
        (Some(a), Some(b), Some(c), Some(d)) => (*a, *b, *c, *d),
        _ => {
            return Err(format!(
                "incomplete SAS token fields {:?}",
                raw.keys().collect::<Vec<_>>()
            ));
        }
    };
    if skn != KEY_NAME {
        return Err(format!("unknown key name {skn}"));
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let expiry: u64 = se
        .parse()
        .map_err(|_| format!("expiry {se} is not a number"))?;
    if expiry <= now || expiry > now + 24 * 3600 {
        return Err(format!(
            "expiry {expiry} not within the next day (now {now})"
        ));
    }
    if sr != sr.to_lowercase() || sr.contains(':') || sr.contains('/') {
        return Err(format!(
            "resource {sr} is not lower-cased and query-escaped"
        ));
    }
    let resource = unescape(sr);
    if !url.to_lowercase().starts_with(&resource) {
        return Err(format!("resource {resource} does not cover {url}"));
    }
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, KEY.as_bytes());
    let expected =
        STANDARD.encode(ring::hmac::sign(&key, format!("{sr}\n{se}").as_bytes()).as_ref());
    if unescape(sig) != expected {
        return Err("signature mismatch".into());
    }
    Ok(())
}

/// The Azure AD v2 token endpoint: client credentials with a federated client assertion.
fn token(state: &Arc<Mutex<ServerState>>, path: &str, body: &str) -> Response {
    let form = query_map(body);
    let expect = [
        ("grant_type", "client_credentials"),
        ("client_id", CLIENT_ID),
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ),
        ("client_assertion", ASSERTION),
    ];
    let mut st = state.lock().unwrap();
    let scope = st
        .scope
        .clone()
        .unwrap_or_else(|| "https://servicebus.azure.net//.default".to_owned());
    let scope_ok = form.get("scope") == Some(&scope);
    let wrong: Vec<&str> = expect
        .iter()
        .filter(|(k, v)| form.get(*k).map(String::as_str) != Some(v))
        .map(|(k, _)| *k)
        .collect();
    if !path.starts_with("/tenant-1/") || !wrong.is_empty() || !scope_ok {
        st.rejections
            .push(format!("token request {path} with wrong fields {wrong:?}"));
        let json =
            r#"{"error":"invalid_client","error_description":"AADSTS700016: assertion rejected"}"#;
        return Response::builder()
            .status(StatusCode::UNAUTHORIZED)
            .body(Body::from(json))
            .unwrap();
    }
    st.tokens_issued += 1;
    let json = format!(
        r#"{{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"{ACCESS_TOKEN}"}}"#
    );
    Response::builder()
        .status(StatusCode::OK)
        .header("Content-Type", "application/json")
        .body(Body::from(json))
        .unwrap()
}

/// Azure Monitor managed Prometheus: an instant query answered with one sample (`7`) when the
/// bearer token is the one the token endpoint issued, 401 otherwise.
fn prometheus_query(state: &Arc<Mutex<ServerState>>, headers: &HeaderMap) -> Response {
    let auth = headers
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let mut st = state.lock().unwrap();
    if auth != format!("Bearer {ACCESS_TOKEN}") {
        st.rejections
            .push("prometheus query without the issued bearer token".into());
        return Response::builder()
            .status(StatusCode::UNAUTHORIZED)
            .body(Body::empty())
            .unwrap();
    }
    st.prometheus_queries += 1;
    let json = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"7"]}]}}"#;
    Response::builder()
        .status(StatusCode::OK)
        .header("Content-Type", "application/json")
        .body(Body::from(json))
        .unwrap()
}

fn query_map(q: &str) -> BTreeMap<String, String> {
    q.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (unescape(k), unescape(v)))
        .collect()
}

/// Form/query unescaping: `+` is a space, `%XX` a byte.
fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
