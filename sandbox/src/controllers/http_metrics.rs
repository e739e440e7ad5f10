//! [`MetricsApi`] over the network: HTTPS GETs to a running sandbox, exactly the path
//! kube-controller-manager's HPA takes to kube-apiserver (which then proxies to the adapter
//! through its aggregation layer, `spec/kubernetes.md` §1.1).
//!
//! Used when the controllers run beside a [`crate::SandboxHandle`] and only its public
//! surface (URL, cluster CA, a token) is at hand; in-process callers holding the router can use
//! [`super::RouterMetrics`] instead. One short-lived HTTP/1.1 connection per read: the HPA reads
//! each metric once per sync period, so pooling would buy nothing.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};

use super::metrics_api::{FetchError, MetricsApi, decode_response};

/// Budget for one metrics read, like kube-apiserver's default request timeout.
const TIMEOUT: Duration = Duration::from_secs(60);
/// Largest response accepted.
const MAX_BODY: usize = 16 * 1024 * 1024;

/// Reads metrics over HTTP(S) from an API server address.
#[derive(Clone)]
pub struct HttpMetrics {
    addr: SocketAddr,
    tls: Option<tokio_rustls::TlsConnector>,
    token: Option<String>,
}

impl fmt::Debug for HttpMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The token is a credential: never print it.
        f.debug_struct("HttpMetrics")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

fn io_error(e: impl fmt::Display) -> FetchError {
    FetchError {
        code: 0,
        message: e.to_string(),
    }
}

impl HttpMetrics {
    /// HTTPS to `addr`, trusting `ca` (DER) for the server certificate.
    pub fn https(
        addr: SocketAddr,
        ca: CertificateDer<'static>,
        token: Option<String>,
    ) -> Result<Self, FetchError> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca).map_err(io_error)?;
        let config = rustls::ClientConfig::builder_with_provider(crate::pki::provider())
            .with_safe_default_protocol_versions()
            .map_err(io_error)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let tls = Some(tokio_rustls::TlsConnector::from(Arc::new(config)));
        Ok(Self { addr, tls, token })
    }

    /// Plain HTTP to `addr` (a sandbox started without TLS).
    pub fn http(addr: SocketAddr, token: Option<String>) -> Self {
        Self {
            addr,
            tls: None,
            token,
        }
    }

    async fn send(&self, path_and_query: &str) -> Result<(u16, Bytes), FetchError> {
        let tcp = tokio::net::TcpStream::connect(self.addr)
            .await
            .map_err(io_error)?;
        match &self.tls {
            None => self.exchange(tcp, path_and_query).await,
            Some(connector) => {
                let name = ServerName::IpAddress(self.addr.ip().into());
                let stream = connector.connect(name, tcp).await.map_err(io_error)?;
                self.exchange(stream, path_and_query).await
            }
        }
    }

    async fn exchange<S>(&self, stream: S, path_and_query: &str) -> Result<(u16, Bytes), FetchError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(io_error)?;
        tokio::spawn(connection);
        let mut request = http::Request::get(path_and_query)
            .header(http::header::HOST, self.addr.to_string())
            .header(http::header::ACCEPT, "application/json, */*");
        if let Some(token) = &self.token {
            request = request.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request.body(Empty::<Bytes>::new()).map_err(io_error)?;
        let response = sender.send_request(request).await.map_err(io_error)?;
        let code = response.status().as_u16();
        let body = http_body_util::Limited::new(response.into_body(), MAX_BODY);
        let bytes = body.collect().await.map_err(io_error)?.to_bytes();
        Ok((code, bytes))
    }
}

#[async_trait]
impl MetricsApi for HttpMetrics {
    async fn get(&self, path_and_query: &str) -> Result<Value, FetchError> {
        let (code, bytes) = tokio::time::timeout(TIMEOUT, self.send(path_and_query))
            .await
            .map_err(|_| {
                io_error("the server was unable to return a response in the time allotted")
            })??;
        decode_response(code, path_and_query, &bytes)
    }
}
