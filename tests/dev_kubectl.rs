//! kubectl (the real upstream client) against `tidescale dev`: the CRDs are served, the
//! examples apply, and `kubectl get so` prints KEDA's columns.

mod common;

use common::dev::{kubectl, start_dev};

use std::process::{Command, Output};

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn kubectl_applies_crds_examples_and_prints_keda_columns() {
    let dev = start_dev();
    let kc = dev.kubeconfig.as_path();
    let crds = stdout(&kubectl(kc, &["get", "crd", "-o", "name"]));
    for name in [
        "scaledobjects.keda.sh",
        "scaledjobs.keda.sh",
        "triggerauthentications.keda.sh",
        "clustertriggerauthentications.keda.sh",
    ] {
        assert!(crds.contains(name), "{name} not installed: {crds}");
    }
    let crd_dir = common::repo().join("manifests/crds");
    kubectl(kc, &["apply", "-f", crd_dir.to_str().unwrap()]);
    for namespace in ["shop", "payments", "billing", "media"] {
        kubectl(kc, &["create", "namespace", namespace]);
    }
    let deployment = common::repo().join("tests/fixtures/orders-deployment.yaml");
    kubectl(kc, &["apply", "-f", deployment.to_str().unwrap()]);
    let examples = common::repo().join("manifests/examples");
    let applied = stdout(&kubectl(kc, &["apply", "-f", examples.to_str().unwrap()]));
    assert!(
        applied.contains("scaledobject.keda.sh/orders-worker created"),
        "{applied}"
    );
    let table = stdout(&kubectl(kc, &["get", "so", "-n", "shop"]));
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "SCALETARGETKIND",
            "SCALETARGETNAME",
            "MIN",
            "MAX",
            "READY",
            "ACTIVE",
            "FALLBACK",
            "PAUSED",
            "TRIGGERS",
            "AUTHENTICATIONS",
            "AGE"
        ]
    );
    let row = table
        .lines()
        .find(|l| l.starts_with("orders-worker"))
        .expect("orders-worker row");
    assert!(
        row.split_whitespace().collect::<Vec<_>>()[1..4] == ["orders-worker", "0", "30"],
        "{row}"
    );
    let auths = stdout(&kubectl(
        kc,
        &["get", "triggerauth", "-n", "shop", "-o", "name"],
    ));
    assert!(auths.contains("rabbitmq-consumer-auth"), "{auths}");
    kubectl(kc, &["get", "cta", "prometheus-basic-auth"]);
    let raw = stdout(&kubectl(
        kc,
        &[
            "get",
            "--raw",
            "/apis/keda.sh/v1alpha1/namespaces/shop/scaledobjects/orders-worker",
        ],
    ));
    let object: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(object["spec"]["pollingInterval"], 15);
    assert_eq!(
        object["spec"]["fallback"],
        serde_json::Value::Null,
        "no fallback in this example"
    );
    assert_eq!(
        object["spec"]["initialCooldownPeriod"], 0,
        "schema defaults are applied"
    );
    kubectl(kc, &["delete", "so", "orders-worker", "-n", "shop"]);
    let left = stdout(&kubectl(kc, &["get", "so", "-n", "shop", "-o", "name"]));
    assert!(!left.contains("orders-worker"), "{left}");
}

#[test]
fn invalid_scaled_objects_are_rejected_by_the_server() {
    let dev = start_dev();
    let kc = dev.kubeconfig.as_path();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata:\n  name: bad\n  namespace: default\nspec:\n  scaleTargetRef:\n    name: x\n  minReplicaCount: -1\n  triggers:\n    - type: rabbitmq\n      metadata: {}\n").unwrap();
    let output = Command::new(common::tool("KUBECTL", "kubectl"))
        .env("KUBECONFIG", kc)
        .args(["apply", "-f", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("spec.minReplicaCount"), "{stderr}");
}
