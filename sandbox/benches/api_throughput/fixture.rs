//! A fresh sandbox per scenario, a kube-rs client for it, and the benchmark's ConfigMaps.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::{Value, json};
use tidescale_sandbox::{GroupResource, Sandbox, SandboxConfig, SandboxHandle, WriteOptions};

/// The namespace every benchmark object lives in (empty apart from them).
pub const NAMESPACE: &str = "bench";
/// Requests in flight for create and patch (a busy operator's worth).
pub const CONCURRENCY: usize = 16;
/// Bound on one request; a request that takes longer fails the run.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Size of each ConfigMap's payload value, so objects are realistic (~0.5 KiB on the wire).
const PAYLOAD_BYTES: usize = 128;

/// `configmaps` in the core group.
pub fn configmaps() -> GroupResource {
    GroupResource::new("", "configmaps")
}

/// A started sandbox with the bench namespace and an admin kube-rs client (HTTPS).
pub struct Fixture {
    pub sandbox: SandboxHandle,
    pub client: kube::Client,
}

impl Fixture {
    /// Starts an empty sandbox (HTTPS on 127.0.0.1:0) and connects kube-rs to it.
    pub async fn start() -> Result<Self> {
        let sandbox = Sandbox::start(SandboxConfig::default())
            .await
            .context("starting the sandbox")?;
        let namespace = json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": NAMESPACE}});
        sandbox
            .store()
            .create(
                &GroupResource::new("", "namespaces"),
                namespace,
                &WriteOptions::default(),
            )
            .context("creating the bench namespace")?;
        let client = client_for(&sandbox.admin_kubeconfig()).await?;
        Ok(Self { sandbox, client })
    }

    /// The ConfigMaps of the bench namespace through kube-rs.
    pub fn api(&self) -> Api<ConfigMap> {
        Api::namespaced(self.client.clone(), NAMESPACE)
    }

    /// Creates `n` ConfigMaps through the in-process store (fast setup for list/patch/watch).
    pub fn populate(&self, n: usize) -> Result<()> {
        let store = self.sandbox.store();
        let gr = configmaps();
        for i in 0..n {
            store
                .create(&gr, configmap_json(i)?, &WriteOptions::default())
                .with_context(|| format!("populating {}", name(i)))?;
        }
        let (items, _) = store.list(&gr, Some(NAMESPACE));
        ensure!(
            items.len() == n,
            "store holds {} ConfigMaps, expected {n}",
            items.len()
        );
        Ok(())
    }

    /// Opens the client's connection pool: `CONCURRENCY` parallel GETs, so TLS handshakes are
    /// not part of the first measured requests.
    pub async fn warm_up(&self) -> Result<()> {
        let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(self.client.clone());
        let gets = futures::stream::iter(0..CONCURRENCY * 4)
            .map(|_| {
                let api = namespaces.clone();
                async move { tokio::time::timeout(REQUEST_TIMEOUT, api.get(NAMESPACE)).await }
            })
            .buffer_unordered(CONCURRENCY)
            .collect::<Vec<_>>()
            .await;
        for get in gets {
            get.context("warm-up GET timed out")?
                .context("warm-up GET")?;
        }
        Ok(())
    }

    /// Stops the sandbox (bounded: a stuck shutdown does not hold up the next scenario).
    pub async fn stop(mut self) {
        drop(self.client);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.sandbox.shutdown()).await;
    }
}

/// A kube-rs client from a kubeconfig (the ring provider is installed by `main`).
pub async fn client_for(kubeconfig_yaml: &str) -> Result<kube::Client> {
    let kubeconfig = Kubeconfig::from_yaml(kubeconfig_yaml).context("parsing the kubeconfig")?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .context("kube config from the sandbox kubeconfig")?;
    kube::Client::try_from(config).context("building the kube client")
}

/// Name of the i-th object (`cm-00042`: zero-padded so key order is index order).
pub fn name(i: usize) -> String {
    format!("cm-{i:05}")
}

/// The i-th benchmark ConfigMap, as kube-rs sends it.
pub fn configmap(i: usize) -> ConfigMap {
    let data = BTreeMap::from([
        ("index".to_owned(), i.to_string()),
        ("payload".to_owned(), "x".repeat(PAYLOAD_BYTES)),
    ]);
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name(i)),
            namespace: Some(NAMESPACE.to_owned()),
            labels: Some(BTreeMap::from([("app".to_owned(), "bench".to_owned())])),
            ..ObjectMeta::default()
        },
        data: Some(data),
        ..ConfigMap::default()
    }
}

/// The same ConfigMap as the JSON the in-process store takes (with apiVersion and kind).
pub fn configmap_json(i: usize) -> Result<Value> {
    serde_json::to_value(configmap(i)).context("serializing a ConfigMap")
}
