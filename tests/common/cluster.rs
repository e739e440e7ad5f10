//! The operator's end-to-end harness: `tidescale dev`'s cluster (sandbox, CRDs, simulated
//! controllers with fast pod timings) and the operator running in-process against it.

use std::time::Duration;

use kube::api::{Api, PostParams};
use serde::de::DeserializeOwned;
use tidescale::dev::{DevCluster, dev_operator_args};
use tidescale_sandbox::SandboxConfig;
use tidescale_sandbox::controllers::{ControllerConfig, PodTimings};

/// A running cluster with the operator.
pub struct Cluster {
    pub dev: DevCluster,
    pub client: kube::Client,
    /// The operator's metrics and readiness.
    pub telemetry: tidescale::operator::Telemetry,
}

/// Create `yaml` (one namespaced object, in the namespace it names or `default`) with `client`.
pub async fn create<K>(client: &kube::Client, yaml: &str) -> K
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
    let api: Api<K> = Api::namespaced(client.clone(), &namespace);
    api.create(&PostParams::default(), &object)
        .await
        .expect("create")
}

/// Create namespace `name` with `client`.
pub async fn create_namespace(client: &kube::Client, name: &str) {
    let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let namespace =
        serde_yaml_ng::from_str(&format!("metadata: {{name: {name}}}")).expect("namespace");
    api.create(&PostParams::default(), &namespace)
        .await
        .expect("create namespace");
}

/// Start the cluster and the operator, with kube-controller-manager's HPA sync period.
pub async fn start() -> Cluster {
    start_with_hpa_sync(ControllerConfig::default().hpa.sync_period).await
}

impl Cluster {
    /// Create `yaml` (one namespaced object).
    pub async fn create<K>(&self, yaml: &str) -> K
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + serde::Serialize
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        create(&self.client, yaml).await
    }

    /// `{labels} → count` of the operator's `tidescale_api_requests_total`.
    pub fn api_requests(&self) -> std::collections::BTreeMap<String, u64> {
        self.telemetry
            .metrics
            .render()
            .lines()
            .filter_map(|line| line.strip_prefix("tidescale_api_requests_total"))
            .filter_map(|rest| {
                let (labels, value) = rest.rsplit_once(' ')?;
                Some((labels.to_owned(), value.parse().ok()?))
            })
            .collect()
    }

    /// Create namespace `name`.
    pub async fn namespace(&self, name: &str) {
        create_namespace(&self.client, name).await;
    }

    /// Create a one-container Deployment `name` at `replicas`, selecting `app: <name>`.
    pub async fn deployment(&self, namespace: &str, name: &str, replicas: i32) {
        self.create::<k8s_openapi::api::apps::v1::Deployment>(&format!(
            "metadata: {{name: {name}, namespace: {namespace}}}\nspec:\n  replicas: {replicas}\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec: {{containers: [{{name: {name}, image: '{name}:1'}}]}}\n"
        ))
        .await;
    }

    /// Stop the operator, the controllers and the API server.
    pub async fn shutdown(self) {
        self.dev.shutdown().await;
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

/// Start the cluster and the operator with the simulated HPA controller syncing every
/// `hpa_sync` (kube-controller-manager's default is 15 s), for tests that read HPA status.
pub async fn start_with_hpa_sync(hpa_sync: Duration) -> Cluster {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "info,kube=warn,tidescale_sandbox=warn",
        ))
        .with_test_writer()
        .try_init();
    let pods = PodTimings {
        start_delay: Duration::from_millis(100),
        ready_delay: Duration::from_millis(100),
        ..PodTimings::default()
    };
    let mut controllers = ControllerConfig {
        tick: Duration::from_millis(100),
        pods,
        ..ControllerConfig::default()
    };
    controllers.hpa.sync_period = hpa_sync;
    let mut dev = DevCluster::start(SandboxConfig::default(), controllers)
        .await
        .expect("cluster starts");
    let telemetry = tidescale::operator::Telemetry::default();
    dev.spawn_operator(dev_operator_args(), telemetry.clone())
        .await
        .expect("operator starts");
    let client = dev.client().await.expect("client");
    Cluster {
        dev,
        client,
        telemetry,
    }
}

/// The status of condition `type_` of `so`, with its reason and message.
pub fn condition_of(
    so: &tidescale::crd::ScaledObject,
    type_: &str,
) -> Option<(String, String, String)> {
    so.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| {
            (
                c.status.to_string(),
                c.reason.as_deref().unwrap_or_default().to_owned(),
                c.message.as_deref().unwrap_or_default().to_owned(),
            )
        })
}

/// Replicas of Deployment `namespace/name` (-1 when it cannot be read).
pub async fn deployment_replicas(client: &kube::Client, namespace: &str, name: &str) -> i32 {
    let api: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), namespace);
    api.get(name)
        .await
        .ok()
        .and_then(|d| d.spec.and_then(|s| s.replicas))
        .unwrap_or(-1)
}

/// Merge-patch ScaledObject `namespace/name` with `patch`.
pub async fn patch_scaled_object(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    patch: serde_json::Value,
) {
    let api: Api<tidescale::crd::ScaledObject> = Api::namespaced(client.clone(), namespace);
    api.patch(
        name,
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(patch),
    )
    .await
    .expect("patch the ScaledObject");
}

/// `url` with a `heartbeat` query unique in this test process. The scalers pool one AMQP
/// connection per URI process-wide, while each `#[tokio::test]` has its own runtime: a
/// connection opened by a test that has finished is dead for the others. A unique URI per test
/// keeps every test on connections of its own runtime.
pub fn per_test_amqp(url: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(30);
    let heartbeat = NEXT.fetch_add(1, Ordering::Relaxed);
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}heartbeat={heartbeat}")
}
