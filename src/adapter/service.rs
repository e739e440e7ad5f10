//! The adapter as `tidescale operator` runs it: the serving certificate (files or
//! self-generated), the watched authentication settings, the API router behind authentication,
//! authorization and leader forwarding, and the TLS server — started together by [`start`].

use tokio_util::sync::CancellationToken;

use super::AdapterArgs;
use super::api::{self, ApiState};
use super::auth_config::AuthConfigCell;
use super::authz::{Security, secure};
use super::certs;
use super::forward::{self, Forwarder};
use super::health::CheckScope;
use super::server::{self, ServerHandle, TlsSettings};
use crate::operator::leader::Leadership;
use crate::scaling::store::MetricStore;
use crate::telemetry::Readiness;

/// What the adapter reads from the rest of the process.
pub struct AdapterInputs {
    /// The values the poll loop keeps.
    pub store: MetricStore,
    /// The process's readiness (`/readyz`).
    pub readiness: Readiness,
    /// Who leads, when leader election is on; followers forward metric reads to the leader.
    pub leadership: Option<tokio::sync::watch::Receiver<Leadership>>,
}

/// Starts the adapter as `args` say, until `cancel`.
pub async fn start(
    args: &AdapterArgs,
    client: kube::Client,
    inputs: AdapterInputs,
    cancel: CancellationToken,
) -> anyhow::Result<ServerHandle> {
    let serving = certs::from_args(args, client.clone(), cancel.clone()).await?;
    let auth = AuthConfigCell::new();
    auth.spawn_watch(client.clone(), cancel.clone());
    let loaded = auth.clone();
    let state = ApiState::new(inputs.store, inputs.readiness).with_health_check(
        "authentication-config",
        CheckScope::Readiness,
        move || {
            if loaded.loaded() {
                Ok(())
            } else {
                Err("kube-system/extension-apiserver-authentication not loaded yet".into())
            }
        },
    );
    let mut app = api::router(state);
    if let Some(leadership) = inputs.leadership {
        app = forward::layer(app, Forwarder::new(leadership, serving.clone()));
    }
    let app = secure(
        app,
        Security::with_replicas(auth.clone(), client, serving.clone()),
    );
    let tls = TlsSettings {
        certs: serving,
        auth: Some(auth),
    };
    server::serve(args.adapter_bind_address, tls, app, cancel).await
}
