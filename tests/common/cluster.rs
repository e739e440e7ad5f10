//! A sandbox control plane with tidescale's CRDs and the simulated controllers, plus the
//! operator running in-process against it: the harness of the operator's end-to-end tests.

use std::time::Duration;

use kube::api::{Api, PostParams};
use serde::de::DeserializeOwned;
use tidescale_sandbox::clock::ClockHandle;
use tidescale_sandbox::controllers::{ControllerConfig, Controllers, PodTimings};
use tidescale_sandbox::{
    Credentials, GroupResource, Sandbox, SandboxConfig, SandboxHandle, WriteOptions,
};
use tokio_util::sync::CancellationToken;

/// A running cluster; everything stops when it is dropped.
pub struct Cluster {
    pub sandbox: SandboxHandle,
    pub client: kube::Client,
    stop: CancellationToken,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Start the sandbox, install the CRDs, start pods-become-ready controllers (fast timings) and
/// the operator.
pub async fn start() -> Cluster {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // The operator's own log lines, shown when a test fails.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info,kube=warn,tidescale_sandbox=warn"))
        .with_test_writer()
        .try_init();
    let sandbox = Sandbox::start(SandboxConfig::default())
        .await
        .expect("sandbox starts");
    let crds = GroupResource::new("apiextensions.k8s.io", "customresourcedefinitions");
    for crd in tidescale::crd::all_crds() {
        let value = serde_json::to_value(crd).unwrap();
        sandbox
            .store()
            .create(&crds, value, &WriteOptions::default())
            .expect("install CRD");
    }
    let stop = CancellationToken::new();
    let pods = PodTimings {
        start_delay: Duration::from_millis(100),
        ready_delay: Duration::from_millis(100),
        ..PodTimings::default()
    };
    let config = ControllerConfig {
        tick: Duration::from_millis(100),
        pods,
        ..ControllerConfig::default()
    };
    Controllers::for_sandbox(&sandbox, config)
        .expect("controllers")
        .spawn(&ClockHandle::real(), stop.clone());
    let yaml = sandbox.kubeconfig(&Credentials::Token(sandbox.admin_token().to_owned()));
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&yaml).expect("kubeconfig parses");
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .expect("kube config");
    let client = kube::Client::try_from(config).expect("kube client");
    let args = tidescale::operator::OperatorArgs {
        watch_namespace: None,
        cluster_object_namespace: "keda".into(),
        scaler_timeout_ms: 3000,
    };
    tokio::spawn(tidescale::operator::run_with_client(
        client.clone(),
        args,
        stop.clone(),
    ));
    Cluster {
        sandbox,
        client,
        stop,
    }
}

impl Cluster {
    /// Create `yaml` (one object) in its namespace.
    pub async fn create<K>(&self, yaml: &str) -> K
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + serde::Serialize
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        let object: K = serde_yaml_ng::from_str(yaml).expect("test object parses");
        let namespace = object
            .meta()
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let api: Api<K> = Api::namespaced(self.client.clone(), &namespace);
        api.create(&PostParams::default(), &object)
            .await
            .expect("create")
    }
}

/// Wait until `check` returns `Some`, polling every 100 ms, failing after `within`.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
