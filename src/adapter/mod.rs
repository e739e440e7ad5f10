//! The metrics adapter (design.md §1, §4.1, §4.6; spec/kubernetes.md §1–2): the
//! `external.metrics.k8s.io/v1beta1` and `custom.metrics.k8s.io/v1beta2` APIs, served over TLS
//! inside `tidescale operator`, authenticated like an aggregated API server and answered from the
//! values the poll loop keeps (`crate::scaling::store`).
//!
//! - HTTP API (what is served): `api` (the router), `routes` (paths → typed requests),
//!   `selector`, `external`, `custom`, `discovery`, `status` (metav1.Status errors), `live`
//!   (live queries shared by concurrent reads), `health`, `forward` (followers relay reads to
//!   the leader), `service` (everything started together).
//! - Security (who may ask): `server` (TLS accept loop), `certs` (serving certificate: files
//!   hot-reloaded or self-generated and published), `auth_config` (the
//!   extension-apiserver-authentication ConfigMap), `authn`, `peer` (the client chain, read once per connection),
//!   `request_info`, `authz`.

use std::net::SocketAddr;
use std::path::PathBuf;

pub mod api;
pub mod auth_config;
pub mod authn;
pub mod authz;
pub mod certs;
pub mod custom;
pub mod discovery;
pub mod external;
pub mod forward;
pub mod health;
pub mod live;
pub mod peer;
pub mod request_info;
pub mod routes;
pub mod selector;
pub mod server;
pub mod service;
pub mod status;

/// Flags of the metrics adapter inside `tidescale operator`.
#[derive(Debug, Clone, clap::Args)]
pub struct AdapterArgs {
    /// Do not serve the metrics APIs from this process.
    #[arg(long, env = "TIDESCALE_DISABLE_ADAPTER")]
    pub disable_adapter: bool,
    /// Where the external and custom metrics APIs are served (HTTPS).
    #[arg(
        long,
        env = "TIDESCALE_ADAPTER_BIND_ADDRESS",
        default_value = "0.0.0.0:6443",
        value_name = "ADDR"
    )]
    pub adapter_bind_address: SocketAddr,
    /// Serving certificate (PEM, with chain); reloaded when the file changes. Without it the
    /// certificate is self-generated, kept in `--cert-secret-name` and published in the
    /// APIServices' `caBundle`.
    #[arg(
        long,
        env = "TIDESCALE_TLS_CERT_FILE",
        value_name = "FILE",
        requires = "tls_private_key_file"
    )]
    pub tls_cert_file: Option<PathBuf>,
    /// Private key of `--tls-cert-file` (PEM).
    #[arg(
        long,
        env = "TIDESCALE_TLS_PRIVATE_KEY_FILE",
        value_name = "FILE",
        requires = "tls_cert_file"
    )]
    pub tls_private_key_file: Option<PathBuf>,
    /// Service in front of the adapter: the self-generated certificate is valid for
    /// `<name>.<namespace>.svc`.
    #[arg(
        long,
        env = "TIDESCALE_ADAPTER_SERVICE_NAME",
        default_value = "tidescale-metrics-apiserver",
        value_name = "NAME"
    )]
    pub adapter_service_name: String,
    /// Namespace tidescale runs in (the Service, the certificate Secret, the Lease).
    #[arg(
        long,
        env = "POD_NAMESPACE",
        default_value = "keda",
        value_name = "NAMESPACE"
    )]
    pub pod_namespace: String,
    /// Secret holding the self-generated CA and serving certificate, shared by all replicas.
    #[arg(
        long,
        env = "TIDESCALE_CERT_SECRET_NAME",
        default_value = "tidescale-certs",
        value_name = "NAME"
    )]
    pub cert_secret_name: String,
    /// Do not write the self-generated CA into the APIServices' `caBundle` (e.g. when
    /// cert-manager's cainjector or the installer manages it).
    #[arg(long, env = "TIDESCALE_SKIP_CA_BUNDLE_PUBLISH")]
    pub skip_ca_bundle_publish: bool,
}
