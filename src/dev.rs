//! `tidescale dev`: a local control plane to play with tidescale.
//!
//! Starts the sandbox API server (`tidescale-sandbox`), installs tidescale's CRDs into it,
//! writes an admin kubeconfig so `kubectl` works at once, and serves until Ctrl-C or SIGTERM.
//! Nothing persists: every run starts from an empty cluster with fresh certificates.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use tidescale_sandbox::{Credentials, GroupResource, Sandbox, SandboxConfig, WriteOptions};

/// How long to wait for the freshly started API server to accept a connection.
const READY_TIMEOUT: Duration = Duration::from_secs(5);

/// Flags of `tidescale dev`.
#[derive(Debug, Clone, clap::Args)]
pub struct DevArgs {
    /// Where to write the admin kubeconfig for kubectl.
    #[arg(
        long,
        env = "TIDESCALE_DEV_KUBECONFIG",
        default_value = "./.tidescale/kubeconfig"
    )]
    pub kubeconfig: PathBuf,
    /// Port of the sandbox API server; 0 picks a free port.
    #[arg(long, env = "TIDESCALE_DEV_PORT", default_value_t = 0)]
    pub port: u16,
    /// Address the sandbox API server listens on.
    #[arg(long, env = "TIDESCALE_DEV_BIND", default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub bind: IpAddr,
}

/// Runs the sandbox until Ctrl-C or SIGTERM.
pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    let DevArgs {
        kubeconfig,
        port,
        bind,
    } = args;
    let mut sandbox = Sandbox::start(SandboxConfig {
        bind,
        port,
        ..SandboxConfig::default()
    })
    .await
    .context("starting the sandbox API server")?;
    install_crds(&sandbox)?;
    let credentials = Credentials::Token(sandbox.admin_token().to_owned());
    sandbox
        .write_kubeconfig(&kubeconfig, &credentials)
        .with_context(|| format!("writing {}", kubeconfig.display()))?;
    println!("kubeconfig: {}", kubeconfig.display());
    wait_until_serving(sandbox.addr()).await?;
    println!(
        "ready: sandbox API server at {} (export KUBECONFIG={})",
        sandbox.base_url(),
        kubeconfig.display()
    );
    shutdown_signal().await?;
    sandbox.shutdown().await;
    Ok(())
}

/// Creates every tidescale CRD in the sandbox's store.
fn install_crds(sandbox: &tidescale_sandbox::SandboxHandle) -> anyhow::Result<()> {
    let crds = GroupResource::new("apiextensions.k8s.io", "customresourcedefinitions");
    for crd in crate::crd::all_crds() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        let value = serde_json::to_value(crd).context("serializing a CRD")?;
        sandbox
            .store()
            .create(&crds, value, &WriteOptions::default())
            .with_context(|| format!("installing CRD {name}"))?;
    }
    Ok(())
}

/// Waits until the listener accepts a TCP connection.
async fn wait_until_serving(addr: SocketAddr) -> anyhow::Result<()> {
    let target = if addr.ip().is_unspecified() {
        SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port())
    } else {
        addr
    };
    tokio::time::timeout(READY_TIMEOUT, async {
        while tokio::net::TcpStream::connect(target).await.is_err() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .with_context(|| format!("the sandbox did not accept connections on {target}"))
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("waiting for Ctrl-C"),
        _ = term.recv() => Ok(()),
    }
}
