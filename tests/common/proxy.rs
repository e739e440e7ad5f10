//! A TCP proxy that can "stop the broker" without touching it: the RabbitMQ server is shared
//! by every test (and other engineers' runs), so a fault test points its trigger at this proxy
//! instead and breaks the path in between.
//!
//! [`Proxy::stop`] closes every open connection and stops listening (new connections are
//! refused, as from a stopped broker); [`Proxy::start`] listens again on the same port. Each
//! accepted connection is piped to `upstream` byte for byte.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A stoppable TCP proxy on `127.0.0.1`.
pub struct Proxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    /// Cancels the accept loop and every connection of the current run.
    run: CancellationToken,
    accept: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Listen on a free port of 127.0.0.1 and forward to `upstream`.
    pub fn new(upstream: SocketAddr) -> Self {
        let listener = listen(SocketAddr::from(([127, 0, 0, 1], 0)));
        let addr = listener.local_addr().expect("the proxy's address");
        let mut proxy = Proxy {
            addr,
            upstream,
            run: CancellationToken::new(),
            accept: None,
        };
        proxy.spawn(listener);
        proxy
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// "Stop the broker": close every open connection and stop listening.
    pub async fn stop(&mut self) {
        self.run.cancel();
        if let Some(accept) = self.accept.take() {
            let _ = accept.await;
        }
    }

    /// "Start the broker again": listen on the same port.
    pub fn start(&mut self) {
        assert!(self.accept.is_none(), "the proxy is already listening");
        self.run = CancellationToken::new();
        let listener = listen(self.addr);
        self.spawn(listener);
    }

    fn spawn(&mut self, listener: TcpListener) {
        let (run, upstream) = (self.run.clone(), self.upstream);
        self.accept = Some(tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = run.cancelled() => return, // drops the listener: connections refused
                    accepted = listener.accept() => accepted,
                };
                let Ok((client, _)) = accepted else { continue };
                tokio::spawn(pipe(client, upstream, run.clone()));
            }
        }));
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.run.cancel();
    }
}

/// Bind with `SO_REUSEADDR`, so a stopped proxy takes its port back at once.
fn listen(addr: SocketAddr) -> TcpListener {
    let socket = TcpSocket::new_v4().expect("a socket");
    socket.set_reuseaddr(true).expect("SO_REUSEADDR");
    socket
        .bind(addr)
        .unwrap_or_else(|e| panic!("the proxy cannot listen on {addr}: {e}"));
    socket.listen(64).expect("listen")
}

/// Copy both ways until either side closes or the run is cancelled (which drops, so closes,
/// both sockets).
async fn pipe(mut client: TcpStream, upstream: SocketAddr, run: CancellationToken) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    tokio::select! {
        () = run.cancelled() => {}
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
    }
}
