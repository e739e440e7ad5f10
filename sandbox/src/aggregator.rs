//! The aggregation layer (`spec/kubernetes.md` §2): APIService-backed groups are proxied over
//! TLS to the Service they name, exactly as kube-aggregator does.
//!
//! - Resolution: APIService → Service (port, default 443) → Endpoints address and port. The
//!   endpoint may be 127.0.0.1 and any port, which is how tests register a local backend.
//! - TLS: SNI `<service>.<namespace>.svc`, server certificate verified against `caBundle`
//!   (or not at all with `insecureSkipTLSVerify`), client certificate `front-proxy-client`
//!   signed by the front-proxy CA.
//! - Identity: `Authorization` and any incoming `X-Remote-*` headers are stripped;
//!   `X-Remote-User` and one `X-Remote-Group` per group are set for the authenticated caller.
//! - Availability: a background loop probes `GET /apis/<group>/<version>` of every APIService
//!   and keeps its `Available` condition current; requests to an unavailable group get
//!   kube-aggregator's plain-text `503 service unavailable`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use http::{HeaderValue, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::api::ApiState;
use crate::auth::UserInfo;
use crate::pki::{Pki, provider};
use crate::store::{GroupResource, Store, WriteOptions, meta};

/// Connect + TLS handshake budget for a backend.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Budget for a proxied request's response headers (kube-apiserver's request timeout).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Budget of an availability probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often availability is re-checked.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);

fn apiservices() -> GroupResource {
    GroupResource::new("apiregistration.k8s.io", "apiservices")
}

/// Why a backend cannot be reached: (condition reason, message).
type Unreachable = (&'static str, String);

/// Where an APIService's backend listens, and the TLS name to ask for.
struct Backend {
    addr: SocketAddr,
    server_name: String,
}

fn resolve(store: &Store, svc: &Value) -> Result<Backend, Unreachable> {
    let field = |path: &str| {
        svc.pointer(path)
            .and_then(Value::as_str)
            .unwrap_or_default()
    };
    let (ns, name) = (
        field("/spec/service/namespace"),
        field("/spec/service/name"),
    );
    let port = svc
        .pointer("/spec/service/port")
        .and_then(Value::as_i64)
        .unwrap_or(443);
    let service = store
        .get(&GroupResource::new("", "services"), Some(ns), name)
        .map_err(|_| {
            (
                "ServiceNotFound",
                format!("service/{name} in \"{ns}\" is not present"),
            )
        })?;
    let ports = service
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let svc_port = ports
        .iter()
        .find(|p| p["port"].as_i64() == Some(port))
        .ok_or_else(|| {
            let message = format!("service/{name} in \"{ns}\" is not listening on port {port}");
            ("ServicePortError", message)
        })?;
    let endpoints = store
        .get(&GroupResource::new("", "endpoints"), Some(ns), name)
        .map_err(|_| {
            let message = format!("cannot find endpoints for service/{name} in \"{ns}\"");
            ("EndpointsNotFound", message)
        })?;
    let addr = endpoint_address(&endpoints, svc_port).ok_or_else(|| {
        let port_name = svc_port["name"].as_str().unwrap_or_default();
        let message = format!("endpoints for service/{name} in \"{ns}\" have no addresses with port name \"{port_name}\"");
        ("MissingEndpoints", message)
    })?;
    Ok(Backend {
        addr,
        server_name: format!("{name}.{ns}.svc"),
    })
}

/// The first address of an Endpoints object, with the port matching the Service port's name.
fn endpoint_address(endpoints: &Value, svc_port: &Value) -> Option<SocketAddr> {
    let subset = endpoints.pointer("/subsets/0")?;
    let ip = subset.pointer("/addresses/0/ip")?.as_str()?.parse().ok()?;
    let ports = subset["ports"].as_array()?;
    let named =
        |p: &&Value| svc_port.get("name").is_some() && p.get("name") == svc_port.get("name");
    let port = ports.iter().find(named).or_else(|| ports.first())?["port"].as_u64()?;
    Some(SocketAddr::new(ip, u16::try_from(port).ok()?))
}

/// Accepts any server certificate (`insecureSkipTLSVerify: true`), still checking signatures.
#[derive(Debug)]
struct SkipVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for SkipVerify {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn client_config(svc: &Value, pki: &Pki) -> Result<rustls::ClientConfig, Unreachable> {
    let err = |e: String| ("ServiceAccessError", e);
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| err(e.to_string()))?;
    let builder = if svc.pointer("/spec/insecureSkipTLSVerify") == Some(&json!(true)) {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(SkipVerify(provider())))
    } else {
        let bundle = svc
            .pointer("/spec/caBundle")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let pem = base64::engine::general_purpose::STANDARD
            .decode(bundle)
            .map_err(|e| err(format!("invalid caBundle: {e}")))?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(&pem) {
            let cert: CertificateDer<'static> =
                cert.map_err(|e| err(format!("invalid caBundle: {e}")))?;
            roots.add(cert).map_err(|e| err(e.to_string()))?;
        }
        builder.with_root_certificates(roots)
    };
    let client = &pki.front_proxy_client;
    builder
        .with_client_auth_cert(vec![client.cert_der.clone()], client.private_key())
        .map_err(|e| err(e.to_string()))
}

/// Sends one request to a backend and returns its response.
async fn send(
    backend: &Backend,
    tls: rustls::ClientConfig,
    req: Request<Body>,
) -> Result<Response, String> {
    let connect = async {
        let tcp = tokio::net::TcpStream::connect(backend.addr)
            .await
            .map_err(|e| e.to_string())?;
        let name = ServerName::try_from(backend.server_name.clone()).map_err(|e| e.to_string())?;
        let stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())
    };
    let (mut sender, conn) = tokio::time::timeout(CONNECT_TIMEOUT, connect)
        .await
        .map_err(|_| "connect timeout".to_owned())??;
    tokio::spawn(conn);
    let response = tokio::time::timeout(REQUEST_TIMEOUT, sender.send_request(req))
        .await
        .map_err(|_| "request timeout".to_owned())?
        .map_err(|e| e.to_string())?;
    Ok(response.map(Body::new))
}

fn identity_request(
    method: http::Method,
    path_and_query: &str,
    user: &UserInfo,
    headers: &http::HeaderMap,
    body: Body,
    host: &str,
) -> Result<Request<Body>, String> {
    let mut req = Request::builder()
        .method(method)
        .uri(path_and_query)
        .body(body)
        .map_err(|e| e.to_string())?;
    for (name, value) in headers {
        let lower = name.as_str().to_ascii_lowercase();
        if lower == "authorization"
            || lower.starts_with("x-remote-")
            || lower == "host"
            || lower == "connection"
        {
            continue;
        }
        req.headers_mut().append(name.clone(), value.clone());
    }
    let h = req.headers_mut();
    h.insert(
        http::header::HOST,
        HeaderValue::from_str(host).map_err(|e| e.to_string())?,
    );
    h.insert(
        "x-remote-user",
        HeaderValue::from_str(&user.name).map_err(|e| e.to_string())?,
    );
    for group in &user.groups {
        h.append(
            "x-remote-group",
            HeaderValue::from_str(group).map_err(|e| e.to_string())?,
        );
    }
    Ok(req)
}

fn unavailable() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "service unavailable\n",
    )
        .into_response()
}

/// Proxies a request for an APIService-backed group.
pub async fn proxy(
    state: &ApiState,
    svc: &Value,
    user: &UserInfo,
    parts: &http::request::Parts,
    body: Body,
) -> Response {
    let available = svc
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Available" && c["status"] == "True")
        });
    if !available {
        return unavailable();
    }
    let Ok(backend) = resolve(&state.store, svc) else {
        return unavailable();
    };
    let Ok(tls) = client_config(svc, &state.pki) else {
        return unavailable();
    };
    let path_and_query = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let host = backend.server_name.clone();
    let Ok(req) = identity_request(
        parts.method.clone(),
        path_and_query,
        user,
        &parts.headers,
        body,
        &host,
    ) else {
        return unavailable();
    };
    match send(&backend, tls, req).await {
        Ok(response) => response,
        Err(e) => {
            tracing::warn!(apiservice = meta::name(svc), error = %e, "aggregated backend unreachable");
            unavailable()
        }
    }
}

/// Probes one APIService: `Ok` = available.
async fn probe(store: &Store, pki: &Pki, svc: &Value) -> Result<(), Unreachable> {
    let backend = resolve(store, svc)?;
    let tls = client_config(svc, pki)?;
    let group = svc
        .pointer("/spec/group")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let version = svc
        .pointer("/spec/version")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let path = format!("/apis/{group}/{version}");
    let user = UserInfo {
        name: "system:kube-aggregator".into(),
        uid: String::new(),
        groups: vec!["system:masters".into()],
    };
    let url = format!("https://{}{path}", backend.addr);
    let req = identity_request(
        http::Method::GET,
        &path,
        &user,
        &http::HeaderMap::new(),
        Body::empty(),
        &backend.server_name,
    )
    .map_err(|e| ("FailedDiscoveryCheck", e))?;
    let failed = |detail: String| {
        (
            "FailedDiscoveryCheck",
            format!("failing or missing response from {url}: {detail}"),
        )
    };
    match tokio::time::timeout(PROBE_TIMEOUT, send(&backend, tls, req)).await {
        Ok(Ok(r)) if r.status().is_success() => Ok(()),
        Ok(Ok(r)) => Err(failed(format!(
            "bad status from {url}: {}",
            r.status().as_u16()
        ))),
        Ok(Err(e)) => Err(failed(e)),
        Err(_) => Err(failed("timeout".into())),
    }
}

/// The `Available` condition for a probe result.
fn condition(
    result: &Result<(), Unreachable>,
    local: bool,
    previous: Option<&Value>,
    now: &str,
) -> Value {
    let (status, reason, message) = match result {
        Ok(()) if local => (
            "True",
            "Local",
            "Local APIServices are always available".to_owned(),
        ),
        Ok(()) => ("True", "Passed", "all checks passed".to_owned()),
        Err((reason, message)) => ("False", *reason, message.clone()),
    };
    let since = previous
        .filter(|p| p["status"] == status)
        .map_or_else(|| json!(now), |p| p["lastTransitionTime"].clone());
    json!({"type": "Available", "status": status, "lastTransitionTime": since, "reason": reason, "message": message})
}

/// Keeps every APIService's `Available` condition current until shutdown.
pub async fn availability_loop(state: ApiState, shutdown: CancellationToken) {
    loop {
        let (services, _) = state.store.list(&apiservices(), None);
        for svc in services {
            let local = svc.pointer("/spec/service").is_none_or(Value::is_null);
            let result = if local {
                Ok(())
            } else {
                probe(&state.store, &state.pki, &svc).await
            };
            let previous = svc
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .and_then(|cs| cs.iter().find(|c| c["type"] == "Available"))
                .cloned();
            let cond = condition(&result, local, previous.as_ref(), &state.store.now_string());
            let unchanged = previous.as_ref().is_some_and(|p| {
                p["status"] == cond["status"]
                    && p["reason"] == cond["reason"]
                    && p["message"] == cond["message"]
            });
            if !unchanged {
                let mut updated = Value::clone(&svc);
                updated["status"] = json!({"conditions": [cond]});
                // A concurrent write wins; the next round recomputes the condition.
                let _ = state
                    .store
                    .update(&apiservices(), updated, &WriteOptions::status());
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(PROBE_INTERVAL) => {}
        }
    }
}
