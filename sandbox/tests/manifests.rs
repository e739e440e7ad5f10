//! tidescale's own CRDs and examples applied to the sandbox with kubectl, as a user would.

mod common;

use std::path::PathBuf;

fn manifests() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../manifests")
}

/// Every `metadata.namespace` named in the example files (the YAML files `kubectl apply -f
/// <dir>` applies: top level only; `workers/` holds the sample programs' own manifests).
fn example_namespaces(dir: &std::path::Path) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if !path.is_file() || path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let text = std::fs::read_to_string(path).unwrap();
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let value =
                <serde_json::Value as serde::Deserialize>::deserialize(doc).unwrap_or_default();
            if let Some(ns) = value
                .pointer("/metadata/namespace")
                .and_then(serde_json::Value::as_str)
            {
                out.insert(ns.to_owned());
            }
        }
    }
    out
}

#[tokio::test]
async fn kubectl_applies_the_keda_crds_and_every_example() {
    let env = common::start().await;
    let crds = manifests().join("crds");
    env.ok(&["apply", "-f", crds.to_str().unwrap()]).await;
    env.ok(&[
        "wait",
        "--for=condition=Established",
        "crd/scaledobjects.keda.sh",
        "--timeout=20s",
    ])
    .await;
    // The examples live in their own namespaces, which kube-apiserver requires to exist.
    let examples = manifests().join("examples");
    for ns in example_namespaces(&examples) {
        env.ok(&["create", "namespace", &ns]).await;
    }
    let out = env
        .kubectl(&["apply", "-f", examples.to_str().unwrap()])
        .await;
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let table = env.ok(&["get", "scaledobjects", "-A"]).await;
    let header = table.lines().next().unwrap_or_default();
    assert!(
        header.starts_with("NAMESPACE") && header.contains("SCALETARGETNAME"),
        "{table}"
    );
    let short = env.ok(&["get", "so", "-A", "-o", "name"]).await;
    assert!(short.lines().count() >= 1, "{short}");
}
