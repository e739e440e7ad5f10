//! Followers forward metrics reads to the leader (design.md §1): only the leader polls, so only
//! its store holds values. Any replica may receive the aggregator's request (the Service
//! balances over all of them); a follower authenticates and authorizes it as usual, then relays
//! it to the leader's adapter endpoint (advertised on the Lease) and returns the answer
//! verbatim. While no leader is known, reads get 503 with `Retry-After`.
//! A relayed read reaching a replica that does not lead (leadership changing hands) also gets
//! 503: it is never forwarded again (no loops) nor answered from a store that was not polled.
//!
//! The internal hop is authenticated by the serving certificate itself: every replica serves
//! the same certificate (shared through the Secret, or the same mounted files), so a follower
//! presents it as its client certificate and pins it as the leader's server certificate. A
//! peer that proves possession of that key is a fellow replica; the leader trusts its
//! authorization decision and answers from its store ([`ReplicaPeer`]). No token or extra API
//! call is involved. Written by hand: one request per HPA read (every 15 s per metric) needs
//! no pooled client, and the pinning verifier is a dozen lines.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::sync::watch;

use super::certs::ServingCert;
use super::status::ApiError;
use crate::operator::leader::Leadership;

/// Budget of one forwarded request, connect to last byte (the HPA waits for it).
const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);
/// Seconds a client should wait while no leader is known.
const RETRY_AFTER_SECONDS: u32 = 1;
/// Largest answer relayed from the leader.
const MAX_BODY: usize = 16 * 1024 * 1024;

/// Marks a request that came from a fellow replica (set by the security layer).
#[derive(Debug, Clone, Copy)]
pub struct ReplicaPeer;

/// Relays follower reads to the leader.
pub struct Forwarder {
    leadership: watch::Receiver<Leadership>,
    serving: Arc<ServingCert>,
}

impl Forwarder {
    /// Forwards while `leadership` says another process leads, authenticated with `serving`.
    pub fn new(leadership: watch::Receiver<Leadership>, serving: Arc<ServingCert>) -> Arc<Self> {
        Arc::new(Self {
            leadership,
            serving,
        })
    }
}

/// Puts leader forwarding in front of `router` (inside the security layer).
pub fn layer(router: axum::Router, forwarder: Arc<Forwarder>) -> axum::Router {
    router.layer(axum::middleware::from_fn_with_state(
        forwarder,
        forward_if_follower,
    ))
}

/// Metric reads and resource lists depend on the leader's store; discovery of groups, health
/// and OpenAPI do not.
fn needs_leader(path: &str) -> bool {
    [
        "/apis/external.metrics.k8s.io/",
        "/apis/custom.metrics.k8s.io/",
    ]
    .iter()
    .any(|prefix| path.starts_with(prefix))
}

/// The resource list is the aggregator's availability probe: a follower that knows no leader
/// still answers it (from its empty store) so the APIService stays Available.
fn is_resource_list(path: &str) -> bool {
    path.trim_end_matches('/').matches('/').count() == 3
}

async fn forward_if_follower(
    State(forwarder): State<Arc<Forwarder>>,
    request: Request,
    next: Next,
) -> Response {
    let leadership = forwarder.leadership.borrow().clone();
    let path = request.uri().path();
    if leadership.is_leader || !needs_leader(path) {
        return next.run(request).await;
    }
    if request.extensions().get::<ReplicaPeer>().is_some() {
        // A replica believes we lead but we do not (leadership is changing hands): never
        // forward again (no loops), and never serve values we did not poll.
        if is_resource_list(path) {
            return next.run(request).await;
        }
        return unavailable("this replica is not the leader: metric values are not available");
    }
    match leadership.leader_endpoint {
        Some(endpoint) => match forwarder.relay(&endpoint, request).await {
            Ok(response) => response,
            Err(error) => {
                tracing::warn!(leader = %endpoint, %error, "forwarding a metrics read to the leader");
                unavailable(&format!(
                    "the leader's metrics adapter did not answer: {error}"
                ))
            }
        },
        None if is_resource_list(path) => next.run(request).await,
        None => unavailable("no leader elected yet: metric values are not available"),
    }
}

fn unavailable(message: &str) -> Response {
    ApiError::service_unavailable(message, Some(RETRY_AFTER_SECONDS)).into_response()
}

/// Why a forwarded request failed.
#[derive(Debug, thiserror::Error)]
enum ForwardError {
    #[error("leader endpoint {0:?} is not https://host:port")]
    Endpoint(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Http(#[from] hyper::Error),
    #[error("{0}")]
    Request(#[from] axum::http::Error),
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    #[error("timed out after {FORWARD_TIMEOUT:?}")]
    Timeout,
    #[error("answer larger than {MAX_BODY} bytes")]
    TooLarge,
}

impl Forwarder {
    async fn relay(&self, endpoint: &str, request: Request) -> Result<Response, ForwardError> {
        tokio::time::timeout(FORWARD_TIMEOUT, self.send(endpoint, request))
            .await
            .map_err(|_| ForwardError::Timeout)?
    }

    async fn send(&self, endpoint: &str, request: Request) -> Result<Response, ForwardError> {
        let authority = endpoint
            .strip_prefix("https://")
            .map(|rest| rest.trim_end_matches('/'))
            .filter(|a| !a.is_empty() && !a.contains('/'))
            .ok_or_else(|| ForwardError::Endpoint(endpoint.to_owned()))?;
        let tcp = tokio::net::TcpStream::connect(authority).await?;
        let _ = tcp.set_nodelay(true);
        let connector = tokio_rustls::TlsConnector::from(self.client_config()?);
        // The certificate is pinned, so the name only has to be syntactically valid.
        let name = ServerName::try_from("tidescale-leader")
            .map_err(|_| ForwardError::Endpoint(endpoint.to_owned()))?;
        let tls = connector.connect(name, tcp).await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(connection);
        let path = request
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let mut outgoing = axum::http::Request::get(path.as_str());
        for name in [header::ACCEPT, header::USER_AGENT] {
            if let Some(value) = request.headers().get(&name) {
                outgoing = outgoing.header(name, value);
            }
        }
        let outgoing = outgoing
            .header(header::HOST, authority)
            .body(http_body_util::Empty::<bytes::Bytes>::new())?;
        let answer = sender.send_request(outgoing).await?;
        let (parts, body) = answer.into_parts();
        let bytes = http_body_util::Limited::new(body, MAX_BODY)
            .collect()
            .await
            .map_err(|_| ForwardError::TooLarge)?
            .to_bytes();
        let mut response = Response::new(Body::from(bytes));
        *response.status_mut() = parts.status;
        for name in [header::CONTENT_TYPE, header::RETRY_AFTER] {
            if let Some(value) = parts.headers.get(&name) {
                response.headers_mut().insert(name, value.clone());
            }
        }
        if parts.status == StatusCode::OK {
            tracing::debug!(%path, "metrics read answered by the leader");
        }
        Ok(response)
    }

    /// Client TLS: our serving certificate as client certificate, the same one pinned as the
    /// server's.
    fn client_config(&self) -> Result<Arc<rustls::ClientConfig>, ForwardError> {
        let own = self.serving.current();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = PinnedServer {
            leaf: own
                .cert
                .first()
                .cloned()
                .unwrap_or_else(|| CertificateDer::from(Vec::new())),
            provider: provider.clone(),
        };
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_client_cert_resolver(Arc::new(OwnCertificate(own)));
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// Presents the process's serving certificate as client certificate.
#[derive(Debug)]
struct OwnCertificate(Arc<rustls::sign::CertifiedKey>);

impl rustls::client::ResolvesClientCert for OwnCertificate {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Accepts exactly the certificate every replica serves; handshake signatures are verified,
/// so the leader proves it holds the key.
#[derive(Debug)]
struct PinnedServer {
    leaf: CertificateDer<'static>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for PinnedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.leaf.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "the leader does not serve this replica's certificate".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_metric_paths_need_the_leader() {
        assert!(needs_leader(
            "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/s0-rabbitmq-orders"
        ));
        assert!(needs_leader("/apis/custom.metrics.k8s.io/v1beta2"));
        assert!(!needs_leader("/apis"));
        assert!(!needs_leader("/apis/external.metrics.k8s.io"));
        assert!(!needs_leader("/readyz"));
        assert!(is_resource_list("/apis/external.metrics.k8s.io/v1beta1"));
        assert!(!is_resource_list(
            "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/m"
        ));
    }
}
