//! The metrics adapter in `tidescale dev` and the end-to-end tests: served on a local port and
//! registered with the sandbox exactly as the chart registers it in a cluster — a Service
//! `keda/tidescale-metrics-apiserver` whose Endpoints are that port, and the three APIServices
//! with the self-generated CA as `caBundle` — so the sandbox's HPA controller reads
//! tidescale's metrics through the aggregation proxy and scales 1↔N.

use std::net::{Ipv4Addr, SocketAddr};

use anyhow::Context;
use serde_json::{Value, json};
use tidescale_sandbox::{GroupResource, SandboxHandle, WriteOptions};
use tokio_util::sync::CancellationToken;

use crate::adapter::AdapterArgs;
use crate::adapter::certs::APISERVICES;
use crate::adapter::server::ServerHandle;
use crate::adapter::service::{AdapterInputs, start};

/// Namespace tidescale "runs in" on the sandbox.
const NAMESPACE: &str = "keda";
/// The Service in front of the adapter (the chart's name).
const SERVICE: &str = "tidescale-metrics-apiserver";

/// The adapter's flags in dev: a free local port, self-generated certificates.
pub fn dev_adapter_args() -> AdapterArgs {
    AdapterArgs {
        disable_adapter: false,
        adapter_bind_address: SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 0),
        tls_cert_file: None,
        tls_private_key_file: None,
        adapter_service_name: SERVICE.to_owned(),
        pod_namespace: NAMESPACE.to_owned(),
        cert_secret_name: "tidescale-certs".to_owned(),
        skip_ca_bundle_publish: false,
    }
}

/// Start the adapter with `client` and register it with `sandbox`.
pub async fn start_and_register(
    sandbox: &SandboxHandle,
    client: kube::Client,
    inputs: AdapterInputs,
    cancel: CancellationToken,
) -> anyhow::Result<ServerHandle> {
    ensure(
        sandbox,
        "",
        "namespaces",
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}),
    )?;
    let server = start(&dev_adapter_args(), client, inputs, cancel)
        .await
        .context("starting the metrics adapter")?;
    let port = server.local_addr().port();
    register(sandbox, port)?;
    Ok(server)
}

fn register(sandbox: &SandboxHandle, port: u16) -> anyhow::Result<()> {
    ensure(
        sandbox,
        "",
        "services",
        json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": SERVICE, "namespace": NAMESPACE},
            "spec": {"ports": [{"name": "https", "port": 443, "targetPort": port}]}}),
    )?;
    ensure(
        sandbox,
        "",
        "endpoints",
        json!({"apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": SERVICE, "namespace": NAMESPACE},
            "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "https", "port": port}]}]}),
    )?;
    let secret = sandbox
        .store()
        .get(
            &GroupResource::new("", "secrets"),
            Some(NAMESPACE),
            "tidescale-certs",
        )
        .map_err(|e| anyhow::anyhow!("reading the adapter's certificate Secret: {e:?}"))?;
    let ca_bundle = secret
        .pointer("/data/ca.crt")
        .and_then(Value::as_str)
        .context("the adapter's certificate Secret has no ca.crt")?
        .to_owned();
    for name in APISERVICES {
        let (version, group) = name
            .split_once('.')
            .context("APIService names are <version>.<group>")?;
        let version_priority = if name == "v1beta2.custom.metrics.k8s.io" {
            200
        } else {
            100
        };
        ensure(
            sandbox,
            "apiregistration.k8s.io",
            "apiservices",
            json!({"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
                "metadata": {"name": name},
                "spec": {"service": {"namespace": NAMESPACE, "name": SERVICE, "port": 443},
                    "group": group, "version": version, "caBundle": ca_bundle,
                    "groupPriorityMinimum": 100, "versionPriority": version_priority}}),
        )?;
    }
    Ok(())
}

/// Create `object` unless it exists.
fn ensure(
    sandbox: &SandboxHandle,
    group: &str,
    resource: &str,
    object: Value,
) -> anyhow::Result<()> {
    let resource = GroupResource::new(group, resource);
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let namespace = object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .map(str::to_owned);
    if sandbox
        .store()
        .get(&resource, namespace.as_deref(), &name)
        .is_ok()
    {
        return Ok(());
    }
    sandbox
        .store()
        .create(&resource, object, &WriteOptions::default())
        .map_err(|e| anyhow::anyhow!("registering the adapter: creating {name}: {e:?}"))?;
    Ok(())
}
