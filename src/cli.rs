//! The command line: one `tidescale` binary with a subcommand per job (`design.md` §1).
//! Every flag has an environment-variable fallback and a doc line that `--help` shows.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::{check, dev, manifests, operator};

/// tidescale: event-driven autoscaling for Kubernetes, a drop-in replacement for KEDA.
///
/// Reads keda.sh/v1alpha1 ScaledObject, ScaledJob and (Cluster)TriggerAuthentication
/// manifests unchanged, polls queues and metrics backends, and scales workloads between zero
/// and their maximum.
#[derive(Debug, Parser)]
#[command(
    name = "tidescale",
    version,
    about,
    long_about,
    propagate_version = true
)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the operator: reconcile ScaledObjects into HPAs and scale their targets from zero.
    ///
    /// Connects with the in-cluster service account, or `$KUBECONFIG` outside a cluster, and
    /// runs until SIGTERM or Ctrl-C.
    // Boxed: the operator's flags (adapter, leader election) dwarf the other variants.
    Operator(Box<operator::OperatorCommand>),
    /// Validate ScaledObject, ScaledJob and TriggerAuthentication manifests offline.
    ///
    /// Reads YAML or JSON files (several documents per file are fine; `-` reads standard input),
    /// applies the CRD defaults, and checks every keda.sh object against its CRD schema and the
    /// rules KEDA's admission webhook enforces. Prints one line per problem as
    /// `FILE:DOC: .json.path: what is wrong`. Documents of other API groups are skipped.
    ///
    /// Exit status: 0 when every object is valid, 1 when any problem was found, 2 when an input
    /// could not be read or parsed.
    Check(CheckArgs),
    /// Print the manifests tidescale installs (the CRDs).
    #[command(subcommand)]
    Manifests(ManifestsCommand),
    /// Run tidescale on this machine: a local Kubernetes API (the sandbox) with the operator.
    ///
    /// Starts the sandbox control plane (a faithful stand-in for kube-apiserver with simulated
    /// Deployments, Jobs and HPAs), installs the keda.sh CRDs, runs the operator against it,
    /// writes a kubeconfig so kubectl works at once, prints `ready:` when it serves, and runs
    /// until Ctrl-C or SIGTERM. Nothing persists between runs.
    Dev(dev::DevArgs),
}

/// Arguments of `tidescale check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Manifest files to check; `-` reads standard input.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// How to print the result; `json` also lists, for every valid trigger, the external metric
    /// the HPA will query with its target and metric type.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text, env = "TIDESCALE_CHECK_OUTPUT")]
    pub output: OutputFormat,
    /// Namespace holding the Secrets and ConfigMaps that ClusterTriggerAuthentications name
    /// (KEDA's cluster-object namespace).
    #[arg(
        long,
        value_name = "NAMESPACE",
        default_value = "keda",
        env = "KEDA_CLUSTER_OBJECT_NAMESPACE"
    )]
    pub cluster_object_namespace: String,
}

/// Output formats of `tidescale check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// One line per problem, for people and CI logs.
    Text,
    /// A JSON report: every object with its problems.
    Json,
}

/// `tidescale manifests …`.
#[derive(Debug, Subcommand)]
pub enum ManifestsCommand {
    /// Print the CustomResourceDefinitions as one YAML stream (what `manifests/crds/` holds).
    Crds {
        /// Write one file per CRD into this directory instead of printing them.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

impl Cli {
    /// Run the chosen subcommand and return the process exit status.
    pub fn run(self) -> ExitCode {
        match self.command {
            Command::Check(args) => check::run(&args),
            Command::Manifests(ManifestsCommand::Crds { dir: None }) => manifests::print_crds(),
            Command::Manifests(ManifestsCommand::Crds { dir: Some(dir) }) => {
                manifests::write_crds(&dir)
            }
            Command::Dev(args) => run_async(dev::run(args)),
            Command::Operator(args) => run_async(operator::run(*args)),
        }
    }
}

/// Run an async subcommand on a multi-threaded runtime; print its error chain once, here.
fn run_async(job: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("tidescale: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(job) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tidescale: {e:#}");
            ExitCode::FAILURE
        }
    }
}
