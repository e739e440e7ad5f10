//! The public entry point: start a sandbox, get kubeconfigs and tokens, stop or restart it.
//!
//! ```text
//! let sandbox = Sandbox::start(SandboxConfig::default()).await?;
//! sandbox.write_kubeconfig(&path, &Credentials::Token(sandbox.admin_token().into()))?;
//! let store = sandbox.store();          // in-process access for controllers (see crate::store)
//! sandbox.restart().await?;             // same port, same objects, same certificates
//! sandbox.shutdown().await;             // down: connections refused (restart() serves again)
//! ```
//!
//! The objects live in the [`Store`] the handle owns, so a restart keeps them (like an API
//! server restart over a persistent etcd) while every open connection and watch is cut, and
//! the watch history is forgotten (resumed watches get 410 and relist, as after a real restart).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::api::{ApiState, router};
use crate::auth::{Authenticator, UserInfo};
use crate::clock::ClockHandle;
use crate::pki::{Pki, PkiError, Usage};
use crate::store::{DEFAULT_HISTORY, Store};
use crate::{gc, server};

/// How to run a sandbox.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Address to listen on.
    pub bind: IpAddr,
    /// Port; 0 picks a free one.
    pub port: u16,
    /// Clock for timestamps (and for the simulated controllers).
    pub clock: ClockHandle,
    /// Serve HTTPS (the default); plain HTTP is meant for loopback tests only.
    pub tls: bool,
    /// Watch events kept for resuming watches.
    pub history_capacity: usize,
    /// Interval of watch bookmarks.
    pub bookmark_interval: Duration,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 0,
            clock: ClockHandle::real(),
            tls: true,
            history_capacity: DEFAULT_HISTORY,
            bookmark_interval: Duration::from_secs(60),
        }
    }
}

/// Starting the sandbox failed.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// Certificates could not be generated.
    #[error(transparent)]
    Pki(#[from] PkiError),
}

/// Credentials written into a kubeconfig.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// A bearer token.
    Token(String),
    /// A client certificate and key (PEM).
    ClientCertificate {
        /// Certificate, PEM.
        cert_pem: String,
        /// Key, PEM.
        key_pem: String,
    },
}

/// User name of the built-in admin (group `system:masters`) the admin kubeconfig carries.
const ADMIN_USER: &str = "sandbox-admin";

/// A running (or stopped) sandbox. Dropping it stops the server.
#[derive(Debug)]
pub struct SandboxHandle {
    store: Arc<Store>,
    auth: Arc<Authenticator>,
    pki: Arc<Pki>,
    config: SandboxConfig,
    addr: SocketAddr,
    admin_token: String,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

/// The sandbox entry point.
#[derive(Debug)]
pub struct Sandbox;

impl Sandbox {
    /// Starts a sandbox with an empty store.
    pub async fn start(config: SandboxConfig) -> Result<SandboxHandle, SandboxError> {
        let store = Store::new(config.clock.clone(), config.history_capacity);
        let pki = Arc::new(Pki::generate(&[config.bind])?);
        let auth = Arc::new(Authenticator::default());
        let admin_token = auth.issue_token(UserInfo::new(ADMIN_USER, &["system:masters"]));
        crate::bootstrap::install(&store, &pki);
        let addr = SocketAddr::new(config.bind, config.port);
        let mut handle = SandboxHandle {
            store,
            auth,
            pki,
            config,
            addr,
            admin_token,
            shutdown: CancellationToken::new(),
            tasks: vec![],
        };
        handle.serve()?;
        Ok(handle)
    }
}

impl SandboxHandle {
    fn serve(&mut self) -> Result<(), SandboxError> {
        let listener = server::bind(self.addr).map_err(|source| SandboxError::Bind {
            addr: self.addr,
            source,
        })?;
        self.addr = listener.local_addr().map_err(|source| SandboxError::Bind {
            addr: self.addr,
            source,
        })?;
        self.shutdown = CancellationToken::new();
        let state = ApiState {
            store: self.store.clone(),
            auth: self.auth.clone(),
            pki: self.pki.clone(),
            server_address: self.addr.to_string(),
            bookmark_interval: self.config.bookmark_interval,
            shutdown: self.shutdown.clone(),
        };
        let tls = if self.config.tls {
            Some(server::acceptor(self.pki.server_config()?))
        } else {
            None
        };
        self.tasks.push(tokio::spawn(server::serve(
            listener,
            tls,
            router(state.clone()),
            self.shutdown.clone(),
        )));
        self.tasks.push(tokio::spawn(gc::run(
            self.store.clone(),
            self.shutdown.clone(),
        )));
        self.tasks
            .push(tokio::spawn(crate::aggregator::availability_loop(
                state,
                self.shutdown.clone(),
            )));
        Ok(())
    }

    /// The object store (in-process API for controllers and tests).
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The certificates (CAs, serving and front-proxy client certificates).
    pub fn pki(&self) -> &Pki {
        &self.pki
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://127.0.0.1:<port>` (or `http://` without TLS).
    pub fn base_url(&self) -> String {
        let scheme = if self.config.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// The token of the built-in admin (`system:masters`).
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// Issues a bearer token for a user (RBAC decides what it may do).
    pub fn issue_token(&self, user: UserInfo) -> String {
        self.auth.issue_token(user)
    }

    /// Issues a token for a ServiceAccount (`system:serviceaccount:<ns>:<name>`).
    pub fn service_account_token(&self, namespace: &str, name: &str) -> String {
        self.auth
            .issue_token(UserInfo::service_account(namespace, name))
    }

    /// Issues a client certificate (CN = user, O = groups) signed by the client CA.
    pub fn issue_client_certificate(
        &self,
        user: &str,
        groups: &[&str],
    ) -> Result<Credentials, PkiError> {
        let issued = self
            .pki
            .client_ca
            .issue(user, groups, &[], &[], Usage::Client)?;
        Ok(Credentials::ClientCertificate {
            cert_pem: issued.cert_pem,
            key_pem: issued.key_pem,
        })
    }

    /// A kubeconfig (YAML) for these credentials.
    pub fn kubeconfig(&self, credentials: &Credentials) -> String {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let user: Value = match credentials {
            Credentials::Token(token) => json!({"token": token}),
            Credentials::ClientCertificate { cert_pem, key_pem } => {
                json!({"client-certificate-data": b64(cert_pem), "client-key-data": b64(key_pem)})
            }
        };
        let mut cluster = json!({"server": self.base_url()});
        if self.config.tls {
            cluster["certificate-authority-data"] = json!(b64(&self.pki.cluster_ca.cert_pem));
        }
        let doc = json!({"apiVersion": "v1", "kind": "Config", "current-context": "sandbox", "preferences": {},
            "clusters": [{"name": "sandbox", "cluster": cluster}],
            "users": [{"name": "sandbox-user", "user": user}],
            "contexts": [{"name": "sandbox", "context": {"cluster": "sandbox", "user": "sandbox-user", "namespace": "default"}}]});
        serde_yaml_ng::to_string(&doc).unwrap_or_default()
    }

    /// The admin kubeconfig.
    pub fn admin_kubeconfig(&self) -> String {
        self.kubeconfig(&Credentials::Token(self.admin_token.clone()))
    }

    /// Writes a kubeconfig file (creating parent directories).
    pub fn write_kubeconfig(&self, path: &Path, credentials: &Credentials) -> std::io::Result<()> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, self.kubeconfig(credentials))
    }

    /// Stops serving: closes the listener, every connection and every watch.
    pub async fn shutdown(&mut self) {
        self.shutdown.cancel();
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
    }

    /// Stops and starts again on the same address with the same objects and certificates,
    /// like a kube-apiserver restarted over the same etcd.
    ///
    /// A restarted kube-apiserver rebuilds its watch cache from storage at the current
    /// revision, so watches resuming from a resourceVersion seen before the restart get
    /// `410 Expired` and clients must relist (`spec/kubernetes.md` §5.4); the sandbox models
    /// this by compacting the watch history ([`Store::compact`]). Calling [`Self::shutdown`]
    /// first and `restart` later leaves the API server down in between (an outage: every
    /// connection refused); the in-process store and controllers keep running meanwhile.
    pub async fn restart(&mut self) -> Result<(), SandboxError> {
        self.shutdown().await;
        self.store.compact();
        self.serve()
    }
}

impl Drop for SandboxHandle {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
