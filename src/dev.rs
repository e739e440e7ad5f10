//! `tidescale dev`: a local control plane to play with tidescale.
//!
//! Starts the sandbox API server (`tidescale-sandbox`) with its simulated controllers
//! (Deployments get ReplicaSets and Pods that become Ready, Jobs complete, HPAs scale), installs
//! tidescale's CRDs into it, writes an admin kubeconfig so `kubectl` works at once, and serves
//! until Ctrl-C or SIGTERM.
//! Nothing persists: every run starts from an empty cluster with fresh certificates.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use tidescale_sandbox::clock::ClockHandle;
use tidescale_sandbox::controllers::{ControllerConfig, Controllers};
use tidescale_sandbox::{Credentials, GroupResource, Sandbox, SandboxConfig, WriteOptions};
use tokio_util::sync::CancellationToken;

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
    let stop_controllers = CancellationToken::new();
    let controllers = Controllers::for_sandbox(&sandbox, ControllerConfig::default())
        .context("starting the simulated controllers")?
        .spawn(&ClockHandle::real(), stop_controllers.clone());
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
    stop_controllers.cancel();
    let _ = controllers.await;
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
pub(crate) async fn shutdown_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("waiting for Ctrl-C"),
        _ = term.recv() => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn dev_serves_the_crds_and_writes_a_working_kubeconfig() {
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("nested").join("kubeconfig");
        let args = DevArgs {
            kubeconfig: kubeconfig.clone(),
            port: 0,
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
        };
        let task = tokio::spawn(run(args));
        for _ in 0..200 {
            if kubeconfig.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let out = tokio::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .arg("--cache-dir")
            .arg(dir.path().join("cache"))
            .args([
                "get",
                "crd",
                "scaledobjects.keda.sh",
                "-o",
                "jsonpath={.spec.names.kind}",
            ])
            .output();
        let out = tokio::time::timeout(Duration::from_secs(30), out)
            .await
            .unwrap()
            .unwrap();
        task.abort();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "ScaledObject");
    }
}
