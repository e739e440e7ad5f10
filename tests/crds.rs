//! The committed CRDs under `manifests/crds/` are exactly what the Rust types generate, and
//! each is a valid `apiextensions.k8s.io/v1` object for the Kubernetes versions we support.

mod common;

use tidescale::crd::{CrdKind, crd_for_kind, crd_yaml, crds_yaml};

const REGENERATE: &str = "regenerate with `cargo run -- manifests crds --dir manifests/crds`";

#[test]
fn committed_crds_match_the_generated_ones() {
    let dir = common::repo().join("manifests/crds");
    let mut committed = Vec::new();
    for kind in CrdKind::ALL {
        let path = dir.join(kind.file_name());
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}; {REGENERATE}", path.display()));
        assert!(
            text == crd_yaml(kind),
            "{} differs from the generated CRD; {REGENERATE}",
            path.display()
        );
        committed.push(text);
    }
    assert_eq!(
        common::files(&dir, "yaml").len(),
        CrdKind::ALL.len(),
        "stray files in manifests/crds"
    );
    assert_eq!(committed.join("---\n"), crds_yaml());
}

#[test]
fn manifests_crds_prints_the_committed_stream() {
    let output = common::run_tidescale(&["manifests", "crds"], "");
    assert!(output.status.success());
    assert_eq!(String::from_utf8(output.stdout).unwrap(), crds_yaml());
}

#[test]
fn crds_carry_keda_names_scopes_and_subresources() {
    let expected = [
        (
            CrdKind::ScaledObject,
            "scaledobjects.keda.sh",
            "Namespaced",
            vec!["so"],
        ),
        (
            CrdKind::ScaledJob,
            "scaledjobs.keda.sh",
            "Namespaced",
            vec!["sj"],
        ),
        (
            CrdKind::TriggerAuthentication,
            "triggerauthentications.keda.sh",
            "Namespaced",
            vec!["ta", "triggerauth"],
        ),
        (
            CrdKind::ClusterTriggerAuthentication,
            "clustertriggerauthentications.keda.sh",
            "Cluster",
            vec!["cta", "clustertriggerauth"],
        ),
    ];
    for (kind, name, scope, short_names) in expected {
        let crd = crd_for_kind(kind);
        assert_eq!(crd.metadata.name.as_deref(), Some(name));
        assert_eq!(crd.spec.scope, scope);
        assert_eq!(
            crd.spec.names.short_names,
            Some(short_names.iter().map(|s| s.to_string()).collect())
        );
        let version = &crd.spec.versions[0];
        assert_eq!(
            (version.name.as_str(), version.served, version.storage),
            ("v1alpha1", true, true)
        );
        assert!(
            version
                .subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some(),
            "{name} has /status"
        );
        assert!(
            version
                .schema
                .as_ref()
                .and_then(|s| s.open_api_v3_schema.as_ref())
                .is_some()
        );
    }
    let so = crd_for_kind(CrdKind::ScaledObject);
    let columns: Vec<_> = so.spec.versions[0]
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(
        columns,
        [
            "ScaleTargetKind",
            "ScaleTargetName",
            "Min",
            "Max",
            "Ready",
            "Active",
            "Fallback",
            "Paused",
            "Triggers",
            "Authentications",
            "Age"
        ]
    );
}

#[test]
fn scaled_job_crd_fits_client_side_apply() {
    // kubectl stores the applied object in an annotation limited to 256 KiB.
    let json = serde_json::to_string(&crd_for_kind(CrdKind::ScaledJob)).unwrap();
    assert!(
        json.len() < 200 * 1024,
        "ScaledJob CRD is {} bytes",
        json.len()
    );
}

#[test]
fn crds_pass_kubernetes_validate_strict() {
    let validator = common::tool("KUBERNETES_VALIDATE", "kubernetes-validate");
    let files = common::files(&common::repo().join("manifests/crds"), "yaml");
    for version in ["1.25.0", "1.33.0", "1.37.0"] {
        let output = std::process::Command::new(&validator)
            .args(["--strict", "--quiet", "-k", version])
            .args(&files)
            .output()
            .expect("run kubernetes-validate");
        assert!(
            output.status.success(),
            "kubernetes-validate --strict -k {version} failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
