//! The adapter's HTTPS server (`spec/kubernetes.md` §2.3, §2.5): tokio listener, tokio-rustls
//! handshake, hyper-util's auto builder (HTTP/2 via ALPN `h2`, or HTTP/1.1), serving an axum
//! `Router`.
//!
//! axum's own `serve` has no TLS, and the adapter needs two things it cannot give: the
//! certificate is resolved per handshake (it rotates), and the TLS layer *requests* a client
//! certificate without requiring one — the aggregation proxy presents its front-proxy
//! certificate, kubelet probes present nothing. The handshake only proves the client holds the
//! key of the certificate it sent (handshake signatures are verified); which CA must have
//! signed it is decided per request by `authn`, against the CAs in force at that moment (they
//! rotate with the `extension-apiserver-authentication` ConfigMap). The CA names offered to
//! clients follow that ConfigMap too: the rustls config is rebuilt when it changes.
//!
//! Bounds: 10 s handshakes, 30 s to send request headers (also the HTTP/1.1 keep-alive idle
//! limit), HTTP/2 pings every 30 s, at most [`MAX_CONNECTIONS`] connections. Cancelling the
//! token stops accepting, lets in-flight requests finish (up to [`DRAIN_TIMEOUT`]) and closes.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::ResolvesServerCert;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::auth_config::{AuthConfig, AuthConfigCell};
use super::peer::PeerCertificates;

/// Longest a client may take to finish the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a client may take to send request headers, and to stay idle between requests.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// Open connections at most; further clients wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = 1024;
/// How long in-flight requests may run after shutdown begins.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// What the TLS layer serves and asks for.
#[derive(Clone)]
pub struct TlsSettings {
    /// The serving certificate (e.g. `certs::ServingCert`).
    pub certs: Arc<dyn ResolvesServerCert>,
    /// Where the client CA names offered in the handshake come from (none: offer no names).
    pub auth: Option<Arc<AuthConfigCell>>,
}

impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSettings").finish_non_exhaustive()
    }
}

/// Requests a client certificate, accepts any chain whose key the client proves it holds.
#[derive(Debug)]
struct RequestClientCert {
    hints: Vec<DistinguishedName>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ClientCertVerifier for RequestClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // Chain verification happens per request in `authn`, against the CAs in force then.
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The rustls config for the current auth config, rebuilt only when that changes.
struct ConfigCache {
    tls: TlsSettings,
    built: Mutex<Option<(Arc<AuthConfig>, Arc<rustls::ServerConfig>)>>,
}

impl ConfigCache {
    fn current(&self) -> anyhow::Result<Arc<rustls::ServerConfig>> {
        let auth = self
            .tls
            .auth
            .as_ref()
            .map_or_else(Arc::default, |cell| cell.current());
        let mut built = self
            .built
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((for_auth, config)) = built.as_ref()
            && (Arc::ptr_eq(for_auth, &auth) || self.tls.auth.is_none())
        {
            return Ok(config.clone());
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = RequestClientCert {
            hints: auth.hint_subjects.clone(),
            provider: provider.clone(),
        };
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(Arc::new(verifier))
            .with_cert_resolver(self.tls.certs.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let config = Arc::new(config);
        *built = Some((auth, config.clone()));
        Ok(config)
    }
}

/// A running server.
#[derive(Debug)]
pub struct ServerHandle {
    local_addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl ServerHandle {
    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Resolves once the server has stopped accepting and every connection is closed.
    pub async fn stopped(self) {
        let _ = self.task.await;
    }
}

/// Binds `addr` and serves `app` over TLS until `cancel`.
pub async fn serve(
    addr: SocketAddr,
    tls: TlsSettings,
    app: axum::Router,
    cancel: CancellationToken,
) -> anyhow::Result<ServerHandle> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    let local_addr = listener.local_addr()?;
    let cache = Arc::new(ConfigCache {
        tls,
        built: Mutex::new(None),
    });
    // Fail now, not at the first handshake, if the config cannot be built.
    cache.current()?;
    let task = tokio::spawn(accept_loop(listener, cache, app, cancel));
    tracing::info!(address = %local_addr, "metrics adapter serving HTTPS");
    Ok(ServerHandle { local_addr, task })
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    cache: Arc<ConfigCache>,
    app: axum::Router,
    cancel: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            () = cancel.cancelled() => break,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            () = cancel.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(%error, "accepting a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let config = match cache.current() {
            Ok(config) => config,
            Err(error) => {
                tracing::warn!(%error, "building the TLS configuration");
                continue;
            }
        };
        let (app, cancel) = (app.clone(), cancel.clone());
        tokio::spawn(async move {
            connection(stream, config, app, cancel).await;
            drop(permit);
        });
    }
    drop(listener);
    // Every connection holds a permit: all of them back means all connections are closed.
    let all = u32::try_from(MAX_CONNECTIONS).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(DRAIN_TIMEOUT + HANDSHAKE_TIMEOUT, slots.acquire_many(all)).await;
}

async fn connection(
    stream: tokio::net::TcpStream,
    config: Arc<rustls::ServerConfig>,
    app: axum::Router,
    cancel: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let handshake =
        tokio::time::timeout(HANDSHAKE_TIMEOUT, TlsAcceptor::from(config).accept(stream));
    let tls = tokio::select! {
        () = cancel.cancelled() => return,
        result = handshake => match result {
            Ok(Ok(tls)) => tls,
            Ok(Err(error)) => {
                tracing::debug!(%error, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!("TLS handshake timed out");
                return;
            }
        },
    };
    let peer = PeerCertificates::new(
        tls.get_ref()
            .1
            .peer_certificates()
            .map(|chain| chain.iter().map(|c| c.clone().into_owned()).collect())
            .unwrap_or_default(),
    );
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(peer.clone());
        let app = app.clone();
        async move { app.oneshot(req.map(Body::new)).await }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(250)
        .keep_alive_interval(Some(HEADER_TIMEOUT))
        .keep_alive_timeout(HEADER_TIMEOUT);
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(%error, "connection ended with an error");
            }
        }
        () = cancel.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(DRAIN_TIMEOUT, conn).await;
        }
    }
}
