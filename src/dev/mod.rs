//! `tidescale dev`: tidescale on one machine, for trying it and for its own tests.
//!
//! Starts the sandbox API server (`tidescale-sandbox`) with its simulated controllers
//! (Deployments get ReplicaSets and Pods that become Ready, Jobs complete, HPAs scale), installs
//! tidescale's CRDs into it, runs the operator against it in the same process, writes an admin
//! kubeconfig so `kubectl` works at once, and serves until Ctrl-C or SIGTERM. Nothing persists:
//! every run starts from an empty cluster with fresh certificates.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use tidescale_sandbox::clock::ClockHandle;
use tidescale_sandbox::controllers::{ControllerConfig, Controllers};
use tidescale_sandbox::{
    Credentials, GroupResource, Sandbox, SandboxConfig, SandboxHandle, WriteOptions,
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::adapter::server::ServerHandle;
use crate::adapter::service::AdapterInputs;
use crate::operator::{self, OperatorArgs};

mod adapter;

pub use adapter::dev_adapter_args;

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
    /// Serve the API only: do not run the operator against it.
    #[arg(long, env = "TIDESCALE_DEV_NO_OPERATOR")]
    pub no_operator: bool,
}

/// The sandbox with tidescale's CRDs and the simulated controllers; `tidescale dev` and the
/// operator's end-to-end tests run on it.
pub struct DevCluster {
    /// The API server.
    pub sandbox: SandboxHandle,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    servers: Vec<ServerHandle>,
}

impl DevCluster {
    /// Start the sandbox as `config` says, install the CRDs and start the controllers.
    pub async fn start(
        config: SandboxConfig,
        controllers: ControllerConfig,
    ) -> anyhow::Result<Self> {
        let sandbox = Sandbox::start(config)
            .await
            .context("starting the sandbox API server")?;
        install_crds(&sandbox)?;
        let stop = CancellationToken::new();
        let controllers = Controllers::for_sandbox(&sandbox, controllers)
            .context("starting the simulated controllers")?
            .spawn(&ClockHandle::real(), stop.clone());
        wait_until_serving(sandbox.addr()).await?;
        Ok(Self {
            sandbox,
            stop,
            tasks: vec![controllers],
            servers: Vec::new(),
        })
    }

    /// The admin kubeconfig, as YAML.
    pub fn admin_kubeconfig(&self) -> String {
        self.sandbox
            .kubeconfig(&Credentials::Token(self.sandbox.admin_token().to_owned()))
    }

    /// A kube client with admin rights.
    pub async fn client(&self) -> anyhow::Result<kube::Client> {
        let kubeconfig = kube::config::Kubeconfig::from_yaml(&self.admin_kubeconfig())
            .context("reading the sandbox kubeconfig")?;
        let options = kube::config::KubeConfigOptions::default();
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
            .await
            .context("configuring the client")?;
        crate::operator::client::from_config(config).context("building the client")
    }

    /// Run the operator against this cluster until it shuts down, recording into `telemetry`.
    pub async fn spawn_operator(
        &mut self,
        args: OperatorArgs,
        telemetry: operator::Telemetry,
    ) -> anyhow::Result<()> {
        let client = self.client().await?;
        let task = tokio::spawn(operator::run_with_client(
            client,
            args,
            telemetry,
            self.stop.clone(),
        ));
        self.tasks.push(task);
        Ok(())
    }

    /// Serve the metrics adapter from `telemetry`'s values on a local port and register it
    /// with the sandbox (Service, Endpoints, APIServices), so the sandbox's HPA controller
    /// scales 1↔N from tidescale's metrics. Returns where it listens.
    pub async fn spawn_adapter(
        &mut self,
        telemetry: &operator::Telemetry,
    ) -> anyhow::Result<SocketAddr> {
        let inputs = AdapterInputs {
            store: telemetry.values.clone(),
            readiness: telemetry.readiness.clone(),
            leadership: None,
        };
        let client = self.client().await?;
        let server =
            adapter::start_and_register(&self.sandbox, client, inputs, self.stop.clone()).await?;
        let addr = server.local_addr();
        self.servers.push(server);
        Ok(addr)
    }

    /// Stop the operator, the adapter and the controllers, then the API server.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
        for server in self.servers.drain(..) {
            server.stopped().await;
        }
        self.sandbox.shutdown().await;
    }
}

/// The operator's settings in `tidescale dev`: all namespaces, KEDA's defaults.
pub fn dev_operator_args() -> OperatorArgs {
    OperatorArgs {
        watch_namespace: None,
        cluster_object_namespace: "keda".to_owned(),
        scaler_timeout_ms: 3000,
        poll_threads: 1,
    }
}

/// Runs the sandbox (and the operator) until Ctrl-C or SIGTERM.
pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let DevArgs {
        kubeconfig,
        port,
        bind,
        no_operator,
    } = args;
    let config = SandboxConfig {
        bind,
        port,
        ..SandboxConfig::default()
    };
    let mut cluster = DevCluster::start(config, ControllerConfig::default()).await?;
    let credentials = Credentials::Token(cluster.sandbox.admin_token().to_owned());
    cluster
        .sandbox
        .write_kubeconfig(&kubeconfig, &credentials)
        .with_context(|| format!("writing {}", kubeconfig.display()))?;
    println!("kubeconfig: {}", kubeconfig.display());
    if !no_operator {
        let telemetry = operator::Telemetry::default();
        cluster
            .spawn_operator(dev_operator_args(), telemetry.clone())
            .await?;
        let adapter = cluster.spawn_adapter(&telemetry).await?;
        println!(
            "metrics adapter: https://{adapter} (registered as the external and custom metrics APIs)"
        );
    }
    let operator = if no_operator {
        "without the operator"
    } else {
        "with the operator"
    };
    println!(
        "ready: sandbox API server at {} {operator} (export KUBECONFIG={})",
        cluster.sandbox.base_url(),
        kubeconfig.display()
    );
    shutdown_signal().await?;
    cluster.shutdown().await;
    Ok(())
}

/// Creates every tidescale CRD in the sandbox's store.
fn install_crds(sandbox: &SandboxHandle) -> anyhow::Result<()> {
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
