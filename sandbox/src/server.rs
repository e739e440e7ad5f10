//! Serving: the TLS (or plain, loopback) listener, per-connection identity, graceful stop.
//!
//! axum's `serve` does not speak TLS, so connections are accepted here, wrapped with
//! tokio-rustls and handed to hyper-util's auto (HTTP/1.1 + HTTP/2) connection builder. The
//! verified client certificate of each connection becomes a [`PeerIdentity`] request extension
//! for authentication. Every connection task also watches the shutdown token, so stopping the
//! sandbox ends long-running watches at once instead of waiting for them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpSocket};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::auth::{UserInfo, user_from_certificate};

/// Longest a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a client may take to send a request's headers (HTTP/1.1).
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// The user a verified TLS client certificate names, if the client sent one.
#[derive(Debug, Clone, Default)]
pub struct PeerIdentity(pub Option<UserInfo>);

/// Binds a listener with `SO_REUSEADDR`, so a restarted sandbox can take its old port back.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Accepts connections until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    router: axum::Router,
    shutdown: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _)) = accepted else { continue };
        let router = router.clone();
        let tls = tls.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = connection(stream, tls, router) => {}
                () = shutdown.cancelled() => {}
            }
        });
    }
}

async fn connection(stream: tokio::net::TcpStream, tls: Option<TlsAcceptor>, router: axum::Router) {
    let _ = stream.set_nodelay(true);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(HEADER_TIMEOUT));
    match tls {
        None => {
            let service = TowerToHyperService::new(router.layer(Extension(PeerIdentity(None))));
            let _ = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .await;
        }
        Some(acceptor) => {
            let Ok(Ok(tls_stream)) =
                tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
            else {
                return;
            };
            let peer = tls_stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(user_from_certificate);
            let service = TowerToHyperService::new(router.layer(Extension(PeerIdentity(peer))));
            let _ = builder
                .serve_connection_with_upgrades(TokioIo::new(tls_stream), service)
                .await;
        }
    }
}

/// A TLS acceptor from a server config.
pub fn acceptor(config: rustls::ServerConfig) -> TlsAcceptor {
    TlsAcceptor::from(Arc::new(config))
}
