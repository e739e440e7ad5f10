//! The Helm chart `manifests/chart/tidescale` and `manifests/install.yaml` (issue #7).
//!
//! The chart is rendered, linted (`helm lint --strict`) and schema-checked by the real Helm
//! engine (PyPI `helm-python-sdk`, offline) through `tests/chart/helm_tool.py`, run by
//! `$HELM_PYTHON`; every rendered object is validated with `kubernetes-validate --strict` for
//! the oldest (1.25) and newest (1.37) Kubernetes the chart claims; the custom resources that
//! tool has no schema for (cert-manager, Prometheus Operator) are checked by helm_tool.py
//! against closed subsets of their CRD schemas. `install.yaml` is applied with the real kubectl
//! to `tidescale dev`'s sandbox and read back. Missing tools fail the tests (run them with
//! `scripts/test`, which installs them); nothing is skipped.

mod common;

use common::dev::{kubectl, start_dev};

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

const RELEASE_NAMESPACE: &str = "keda";
/// Oldest and newest Kubernetes the chart supports (Chart.yaml kubeVersion >=1.25.0-0).
const KUBE_VERSIONS: [&str; 2] = ["1.25.0", "1.37.0"];
const REGENERATE: &str = "regenerate with scripts/render-install (scripts/generate runs it)";

fn chart_dir() -> PathBuf {
    common::repo().join("manifests/chart/tidescale")
}

/// The value matrix of issue #7: certificates, monitoring, network policy, namespaced watch,
/// HA, custom metrics off, adapter off, and every extra knob at once.
fn cases() -> Vec<(&'static str, Value)> {
    vec![
        ("defaults", json!({})),
        (
            "cert-manager",
            json!({"certificates": {"mode": "cert-manager"}}),
        ),
        (
            "secret",
            json!({"certificates": {"mode": "secret", "secret": {"name": "tidescale-tls", "caBundle": "TFMwdExTMUNSVWRKVGlCRFJWSlVTVVpKUTBGVVJTMHRMUzB0"}}}),
        ),
        (
            "monitoring",
            json!({
                "prometheus": {
                    "serviceMonitor": {"enabled": true, "labels": {"release": "kube-prometheus-stack"}},
                    "podMonitor": {"enabled": true},
                    "rules": {"enabled": true, "alertLabels": {"team": "platform"}}
                },
                "grafanaDashboard": {"enabled": true, "annotations": {"grafana_folder": "Autoscaling"}}
            }),
        ),
        (
            "network-policy",
            json!({"networkPolicy": {"enabled": true, "adapterFrom": [{"ipBlock": {"cidr": "172.16.0.0/12"}}], "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}]}}),
        ),
        (
            "namespaced",
            json!({"watchNamespace": "shop", "watchLabelSelector": "tidescale.sh/shard=a", "rbac": {"restrictSecretAccess": true}}),
        ),
        (
            "ha",
            json!({
                "replicaCount": 2,
                "podDisruptionBudget": {"enabled": true},
                "topologySpreadConstraints": [{
                    "maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                    "whenUnsatisfiable": "ScheduleAnyway",
                    "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "tidescale"}}
                }]
            }),
        ),
        (
            "no-custom-metrics",
            json!({"adapter": {"customMetrics": false}}),
        ),
        ("no-adapter", json!({"adapter": {"enabled": false}})),
        (
            "extras",
            json!({
                "image": {"registry": "myregistry.azurecr.io", "digest": format!("sha256:{}", "a".repeat(64))},
                "imagePullSecrets": [{"name": "acr-pull"}],
                "serviceAccount": {"annotations": {"azure.workload.identity/client-id": "00000000-0000-0000-0000-000000000000"}},
                "podLabels": {"azure.workload.identity/use": "true"},
                "podAnnotations": {"example.com/team": "platform"},
                "commonLabels": {"example.com/owner": "platform"},
                "priorityClassName": "system-cluster-critical",
                "tolerations": [{"key": "CriticalAddonsOnly", "operator": "Exists"}],
                "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64", "arm64"]}]}]}}},
                "env": [{"name": "HTTPS_PROXY", "value": "http://proxy.corp:3128"}],
                "envFrom": [{"configMapRef": {"name": "proxy-settings"}}],
                "extraArgs": ["--skip-ca-bundle-publish"],
                "extraVolumes": [{"name": "corp-ca", "configMap": {"name": "corp-ca"}}],
                "extraVolumeMounts": [{"name": "corp-ca", "mountPath": "/etc/ssl/corp", "readOnly": true}],
                "rbac": {"scaledRefKinds": [{"apiGroup": "apps", "resource": "deployments"}, {"apiGroup": "argoproj.io", "resource": "rollouts"}], "scaledJobs": false},
                "logging": {"level": "debug", "format": "json"},
                "clusterObjectNamespace": "keda-secrets",
                "podDisruptionBudget": {"enabled": true, "maxUnavailable": "50%"},
                "networkPolicy": {"enabled": true},
                "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": 1, "memory": "256Mi"}}
            }),
        ),
    ]
}

/// Run `tests/chart/helm_tool.py run` on `spec` and return its JSON answer.
fn helm(spec: Value) -> Value {
    let python = common::tool("HELM_PYTHON", "python3");
    let dir = tempfile::tempdir().unwrap();
    let spec_path = dir.path().join("spec.json");
    let mut spec = spec;
    spec["chart"] = json!(chart_dir());
    spec["namespace"] = json!(RELEASE_NAMESPACE);
    spec["kube_versions"] = json!(KUBE_VERSIONS);
    std::fs::write(&spec_path, spec.to_string()).unwrap();
    let output = Command::new(&python)
        .arg(common::repo().join("tests/chart/helm_tool.py"))
        .arg("run")
        .arg(&spec_path)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", python.display()));
    assert!(
        output.status.success(),
        "helm_tool.py failed (is helm-python-sdk installed for {}? run the tests with scripts/test):\n{}",
        python.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("helm_tool.py prints JSON")
}

/// Render every case of [`cases`] (optionally linting each for both Kubernetes versions).
fn render_cases(lint: bool) -> Value {
    let cases: Vec<Value> = cases()
        .into_iter()
        .map(|(name, values)| json!({"name": name, "values": values}))
        .collect();
    helm(json!({"cases": cases, "lint": lint}))
}

/// The objects of a YAML stream.
fn objects(manifest: &str) -> Vec<Value> {
    use serde::Deserialize;
    serde_yaml_ng::Deserializer::from_str(manifest)
        .map(|doc| Value::deserialize(doc).expect("rendered YAML parses"))
        .filter(|v| !v.is_null())
        .collect()
}

fn manifest<'a>(rendered: &'a Value, case: &str) -> &'a str {
    rendered["cases"][case]["manifest"]
        .as_str()
        .unwrap_or_else(|| panic!("case {case} not rendered"))
}

/// The one object of `kind` named `name` (panics when missing).
fn get<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| {
            panic!(
                "no {kind} {name} among {:?}",
                kinds_and_names(objects).collect::<Vec<_>>()
            )
        })
}

fn kinds_and_names(objects: &[Value]) -> impl Iterator<Item = String> + '_ {
    objects.iter().map(|o| {
        format!(
            "{}/{}",
            o["kind"].as_str().unwrap_or(""),
            o["metadata"]["name"].as_str().unwrap_or("")
        )
    })
}

fn count(objects: &[Value], kind: &str) -> usize {
    objects.iter().filter(|o| o["kind"] == kind).count()
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn container(objects: &[Value]) -> &Value {
    &get(objects, "Deployment", "tidescale-operator")["spec"]["template"]["spec"]["containers"][0]
}

fn args(objects: &[Value]) -> Vec<String> {
    strings(&container(objects)["args"])
}

fn env_value(objects: &[Value], name: &str) -> Option<Value> {
    container(objects)["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
        .cloned()
}

/// Does some rule of `role` grant `verb` on `group`/`resource`?
fn grants(role: &Value, group: &str, resource: &str, verb: &str) -> bool {
    role["rules"].as_array().into_iter().flatten().any(|rule| {
        strings(&rule["apiGroups"])
            .iter()
            .any(|g| g == group || g == "*")
            && strings(&rule["resources"])
                .iter()
                .any(|r| r == resource || r == "*")
            && strings(&rule["verbs"])
                .iter()
                .any(|v| v == verb || v == "*")
    })
}

#[test]
fn chart_lints_strictly_and_every_object_validates_for_oldest_and_newest_kubernetes() {
    let rendered = render_cases(true);
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    let mut custom_kinds = BTreeSet::new();
    for (name, _) in cases() {
        let case = &rendered["cases"][name];
        let lint = strings(&case["lint"]);
        assert!(
            lint.is_empty(),
            "helm lint --strict, case {name}:\n{}",
            lint.join("\n")
        );
        let problems = strings(&case["custom_resources"]);
        assert!(
            problems.is_empty(),
            "custom resources of case {name}:\n{}",
            problems.join("\n")
        );
        let text = manifest(&rendered, name);
        assert!(!objects(text).is_empty(), "case {name} renders nothing");
        for object in objects(text) {
            let api = object["apiVersion"].as_str().unwrap_or_default();
            if api.starts_with("cert-manager.io/") || api.starts_with("monitoring.coreos.com/") {
                custom_kinds.insert(format!("{api} {}", object["kind"].as_str().unwrap()));
            }
        }
        let path = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&path, text).unwrap();
        files.push(path);
    }
    files.push(common::repo().join("manifests/install.yaml"));
    let validator = common::tool("KUBERNETES_VALIDATE", "kubernetes-validate");
    for version in KUBE_VERSIONS {
        let output = Command::new(&validator)
            .args(["--strict", "--quiet", "-k", version])
            .args(&files)
            .output()
            .expect("run kubernetes-validate");
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            output.status.success(),
            "kubernetes-validate --strict -k {version}:\n{report}"
        );
        // It only warns when it has no schema: that must be the custom resources checked above,
        // never a built-in kind (a typo in apiVersion would otherwise pass unvalidated).
        for line in report.lines().filter(|l| !l.trim().is_empty()) {
            assert!(
                line.contains("Couldn't find schema for kind")
                    && (line.contains("api version cert-manager.io/v1")
                        || line.contains("api version monitoring.coreos.com/v1")),
                "unexpected kubernetes-validate output for {version}: {line}"
            );
        }
    }
    assert_eq!(
        custom_kinds.into_iter().collect::<Vec<_>>(),
        [
            "cert-manager.io/v1 Certificate",
            "cert-manager.io/v1 Issuer",
            "monitoring.coreos.com/v1 PodMonitor",
            "monitoring.coreos.com/v1 PrometheusRule",
            "monitoring.coreos.com/v1 ServiceMonitor"
        ]
    );
}

#[test]
fn install_yaml_is_the_default_render_and_chart_crds_are_the_generated_ones() {
    let rendered = helm(json!({"cases": []}));
    let committed = std::fs::read_to_string(common::repo().join("manifests/install.yaml"))
        .unwrap_or_else(|e| panic!("manifests/install.yaml: {e}; {REGENERATE}"));
    assert!(
        committed == rendered["install_yaml"].as_str().unwrap(),
        "manifests/install.yaml differs from the chart rendered with defaults; {REGENERATE}"
    );
    // The chart's CRDs are byte for byte the generated ones (scripts/generate copies them).
    let generated = common::files(&common::repo().join("manifests/crds"), "yaml");
    let chart_crds = rendered["crds"].as_object().unwrap();
    assert_eq!(
        chart_crds.len(),
        generated.len(),
        "chart crds/ holds other files"
    );
    for path in generated {
        let name = path.file_name().unwrap().to_str().unwrap();
        assert!(
            chart_crds.get(name).and_then(Value::as_str)
                == Some(&std::fs::read_to_string(&path).unwrap()),
            "manifests/chart/tidescale/crds/{name} differs from manifests/crds/{name}; run scripts/generate"
        );
    }
    // install.yaml = Namespace, the 4 CRDs, then the default render.
    let objects = objects(&committed);
    assert_eq!(objects[0]["kind"], "Namespace");
    assert_eq!(objects[0]["metadata"]["name"], RELEASE_NAMESPACE);
    assert_eq!(count(&objects, "CustomResourceDefinition"), 4);
    // Chart metadata: appVersion is the workspace version, kubeVersion the oldest supported.
    let chart = &rendered["chart"];
    assert_eq!(chart["apiVersion"], "v2");
    assert_eq!(
        chart["appVersion"],
        env!("CARGO_PKG_VERSION"),
        "Chart.yaml appVersion = Cargo.toml version"
    );
    assert_eq!(chart["kubeVersion"], ">=1.25.0-0");
}

#[test]
fn values_schema_covers_every_value_and_rejects_bad_ones() {
    let rendered = helm(json!({
        "cases": [],
        "schema_rejects": [
            {"replicaCount": "two"},
            {"replicaCounts": 2},
            {"certificates": {"mode": "vault"}},
            {"logging": {"format": "xml"}},
            {"image": {"pullPolicy": "Sometimes"}},
            {"leaderElection": {"leaseDuration": "fifteen"}},
            {"adapter": {"service": {"port": 70000}}},
            {"rbac": {"scaledRefKinds": [{"apiGroup": "apps"}]}},
            {"prometheus": {"serviceMonitor": {"enabled": "yes"}}}
        ],
        "render_fails": [
            {"replicaCount": 2, "leaderElection": {"enabled": false}},
            {"certificates": {"mode": "secret"}},
            {"certificates": {"mode": "secret", "secret": {"name": "tls"}}}
        ]
    }));
    let rejects = rendered["schema_rejects"].as_array().unwrap();
    assert_eq!(rejects.len(), 9);
    for (i, error) in rejects.iter().enumerate() {
        assert!(
            error.is_string(),
            "values.schema.json accepted bad values #{i}"
        );
    }
    assert!(
        rejects[0].as_str().unwrap().contains("/replicaCount"),
        "{}",
        rejects[0]
    );
    assert!(
        rejects[1].as_str().unwrap().contains("replicaCounts"),
        "{}",
        rejects[1]
    );
    for (i, error) in rendered["render_fails"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        assert!(error.is_string(), "contradictory values #{i} rendered");
    }
    assert!(
        rendered["render_fails"][1]
            .as_str()
            .unwrap()
            .contains("certificates.secret.name")
    );
    // The README's values table is the one values.yaml documents.
    let readme = std::fs::read_to_string(common::repo().join("README.md")).unwrap();
    assert!(
        readme.contains(rendered["values_table"].as_str().unwrap()),
        "README.md's values table is out of date; replace it with the output of `$HELM_PYTHON tests/chart/helm_tool.py values-table manifests/chart/tidescale`"
    );
    // Every value in values.yaml has a schema property (and the schema nothing values.yaml lacks).
    let schema = &rendered["schema"];
    assert_eq!(schema["$schema"], "http://json-schema.org/draft-07/schema#");
    let mut missing = Vec::new();
    walk_schema(&rendered["values"], schema, "", &mut missing);
    assert!(
        missing.is_empty(),
        "values without a schema property: {missing:?}"
    );
    let defaults = rendered["values"].as_object().unwrap();
    let properties = schema["properties"].as_object().unwrap();
    let extra: Vec<_> = properties
        .keys()
        .filter(|k| !defaults.contains_key(*k) && *k != "global")
        .collect();
    assert!(
        extra.is_empty(),
        "schema properties without a value in values.yaml: {extra:?}"
    );
}

/// Collect the paths of `values` that `schema` does not describe. Objects with
/// `additionalProperties: false` must list each key; free-form objects (maps, Kubernetes
/// types) end the walk.
fn walk_schema(values: &Value, schema: &Value, path: &str, missing: &mut Vec<String>) {
    let Some(map) = values.as_object() else {
        return;
    };
    let Some(properties) = schema["properties"].as_object() else {
        return;
    };
    if schema["additionalProperties"] != json!(false) {
        missing.push(format!("{path} (schema object is not closed)"));
    }
    for (key, value) in map {
        let child = format!("{path}.{key}");
        match properties.get(key) {
            None => missing.push(child),
            Some(sub) if sub.get("properties").is_some() => {
                walk_schema(value, sub, &child, missing)
            }
            Some(_) => {}
        }
    }
}

#[test]
fn values_yaml_documents_every_value_with_its_default() {
    let text = std::fs::read_to_string(chart_dir().join("values.yaml")).unwrap();
    // Every key line must carry a "Default:" in the comment block right above it, or sit under
    // a key whose comment documents the whole block (e.g. resources).
    let mut documented: Vec<(usize, bool)> = Vec::new(); // (indent, documented) of open keys
    let mut comment = String::new();
    let mut undocumented = Vec::new();
    let mut keys = 0;
    for line in text.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if trimmed.starts_with('#') {
            comment.push_str(trimmed);
            continue;
        }
        if trimmed.is_empty() {
            comment.clear();
            continue;
        }
        let is_key = !trimmed.starts_with("- ") && trimmed.contains(':');
        if is_key {
            documented.retain(|(i, _)| *i < indent);
            let inherited = documented.iter().any(|(_, d)| *d);
            let own = comment.contains("Default:");
            let has_children = trimmed.ends_with(':');
            if !own && !inherited && !has_children {
                undocumented.push(trimmed.to_owned());
            }
            documented.push((indent, own || inherited));
            keys += 1;
        }
        comment.clear();
    }
    assert!(keys > 100, "values.yaml has only {keys} keys?");
    assert!(
        undocumented.is_empty(),
        "values.yaml keys without a `Default:` comment: {undocumented:?}"
    );
}

#[test]
fn default_render_runs_the_operator_like_keda_with_least_privilege() {
    let rendered = helm(json!({"cases": [{"name": "defaults", "values": {}}]}));
    let objects = objects(manifest(&rendered, "defaults"));
    let kinds: BTreeSet<String> = objects
        .iter()
        .map(|o| o["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        [
            "APIService",
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount"
        ]
    );
    // The Deployment: image, exact flags, probes, KEDA's securityContext defaults.
    let deployment = get(&objects, "Deployment", "tidescale-operator");
    assert_eq!(deployment["metadata"]["namespace"], RELEASE_NAMESPACE);
    assert_eq!(deployment["spec"]["replicas"], 1);
    let pod = &deployment["spec"]["template"]["spec"];
    let c = container(&objects);
    assert_eq!(
        c["image"],
        format!("ghcr.io/tidescale/tidescale:{}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(strings(&c["command"]), ["tidescale", "operator"]);
    assert_eq!(
        args(&objects),
        [
            "--cluster-object-namespace=keda",
            "--scaler-timeout-ms=3000",
            "--poll-threads=1",
            "--metrics-bind-address=0.0.0.0:8080",
            "--health-probe-bind-address=0.0.0.0:8081",
            "--log-level=info",
            "--log-format=plain",
            "--leader-elect",
            "--leader-election-id=tidescale-operator",
            "--leader-election-lease-duration=15s",
            "--leader-election-renew-deadline=10s",
            "--leader-election-retry-period=2s",
            "--adapter-bind-address=0.0.0.0:6443",
            "--adapter-service-name=tidescale-metrics-apiserver",
            "--cert-secret-name=tidescale-certs",
        ]
    );
    assert_eq!(
        env_value(&objects, "POD_NAME").unwrap()["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.name"
    );
    assert_eq!(
        env_value(&objects, "POD_NAMESPACE").unwrap()["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.namespace"
    );
    assert_eq!(
        c["livenessProbe"]["httpGet"],
        json!({"path": "/healthz", "port": "probes"})
    );
    assert_eq!(
        c["readinessProbe"]["httpGet"],
        json!({"path": "/readyz", "port": "probes"})
    );
    let ports: Vec<(String, i64)> = c["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_owned(),
                p["containerPort"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        ports,
        [
            ("adapter".into(), 6443),
            ("metrics".into(), 8080),
            ("probes".into(), 8081)
        ]
    );
    assert_eq!(
        c["securityContext"],
        json!({"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}, "readOnlyRootFilesystem": true, "runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}})
    );
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert!(
        c.get("volumeMounts").is_none() && pod.get("volumes").is_none(),
        "no writable volume needed"
    );
    assert_eq!(pod["serviceAccountName"], "tidescale-operator");
    // Services: 443 → adapter (6443) for the API server, 8080 for Prometheus.
    let adapter = get(&objects, "Service", "tidescale-metrics-apiserver");
    assert_eq!(
        adapter["spec"]["ports"],
        json!([{"name": "https", "port": 443, "targetPort": "adapter", "protocol": "TCP"}])
    );
    assert_eq!(
        adapter["spec"]["selector"],
        deployment["spec"]["selector"]["matchLabels"]
    );
    let metrics = get(&objects, "Service", "tidescale-operator");
    assert_eq!(metrics["spec"]["ports"][0]["port"], 8080);
    // The three APIServices with the priorities metrics adapters use.
    for (name, group, version, gpm, vp) in [
        (
            "v1beta1.external.metrics.k8s.io",
            "external.metrics.k8s.io",
            "v1beta1",
            100,
            100,
        ),
        (
            "v1beta2.custom.metrics.k8s.io",
            "custom.metrics.k8s.io",
            "v1beta2",
            100,
            200,
        ),
        (
            "v1beta1.custom.metrics.k8s.io",
            "custom.metrics.k8s.io",
            "v1beta1",
            100,
            100,
        ),
    ] {
        let spec = &get(&objects, "APIService", name)["spec"];
        assert_eq!(
            (
                spec["group"].as_str(),
                spec["version"].as_str(),
                spec["groupPriorityMinimum"].as_i64(),
                spec["versionPriority"].as_i64()
            ),
            (Some(group), Some(version), Some(gpm), Some(vp)),
            "{name}"
        );
        assert_eq!(
            spec["service"],
            json!({"name": "tidescale-metrics-apiserver", "namespace": "keda", "port": 443})
        );
        assert!(
            spec.get("caBundle").is_none(),
            "{name}: the operator publishes the self-generated CA"
        );
    }
    // RBAC.
    let operator = get(&objects, "ClusterRole", "tidescale-operator");
    for (group, resource, verb) in [
        ("keda.sh", "scaledobjects", "watch"),
        ("keda.sh", "scaledobjects/status", "update"),
        ("keda.sh", "scaledobjects/finalizers", "update"),
        ("keda.sh", "scaledjobs", "list"),
        ("keda.sh", "triggerauthentications", "watch"),
        ("keda.sh", "clustertriggerauthentications", "watch"),
        ("autoscaling", "horizontalpodautoscalers", "create"),
        ("autoscaling", "horizontalpodautoscalers", "delete"),
        ("apps", "deployments/scale", "update"),
        ("apps", "statefulsets/scale", "patch"),
        ("", "events", "create"),
        ("events.k8s.io", "events", "create"),
        ("", "secrets", "get"),
        ("", "configmaps", "watch"),
        ("apiregistration.k8s.io", "apiservices", "patch"),
    ] {
        assert!(
            grants(operator, group, resource, verb),
            "operator may not {verb} {group}/{resource}"
        );
    }
    for (group, resource, verb) in [
        ("", "secrets", "create"),
        ("", "secrets", "delete"),
        ("apps", "deployments", "update"),
        ("apps", "daemonsets/scale", "update"),
        ("apiregistration.k8s.io", "apiservices", "create"),
        ("rbac.authorization.k8s.io", "clusterroles", "get"),
    ] {
        assert!(
            !grants(operator, group, resource, verb),
            "operator must not {verb} {group}/{resource}"
        );
    }
    let apiservice_rule = operator["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| strings(&r["apiGroups"]) == ["apiregistration.k8s.io"])
        .unwrap();
    assert_eq!(
        strings(&apiservice_rule["resourceNames"]),
        [
            "v1beta1.external.metrics.k8s.io",
            "v1beta2.custom.metrics.k8s.io",
            "v1beta1.custom.metrics.k8s.io"
        ]
    );
    let own = get(&objects, "Role", "tidescale-operator");
    assert_eq!(own["metadata"]["namespace"], RELEASE_NAMESPACE);
    assert!(grants(own, "coordination.k8s.io", "leases", "create"));
    assert!(grants(own, "coordination.k8s.io", "leases", "update"));
    assert!(grants(own, "", "secrets", "create"));
    let certs_rule = own["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| strings(&r["resources"]) == ["secrets"] && r.get("resourceNames").is_some())
        .unwrap();
    assert_eq!(strings(&certs_rule["resourceNames"]), ["tidescale-certs"]);
    let sa = json!([{"kind": "ServiceAccount", "name": "tidescale-operator", "namespace": "keda"}]);
    for (kind, name, role_kind, role) in [
        (
            "ClusterRoleBinding",
            "tidescale-operator",
            "ClusterRole",
            "tidescale-operator",
        ),
        (
            "ClusterRoleBinding",
            "tidescale-auth-delegator",
            "ClusterRole",
            "system:auth-delegator",
        ),
        (
            "RoleBinding",
            "tidescale-auth-reader",
            "Role",
            "extension-apiserver-authentication-reader",
        ),
        (
            "RoleBinding",
            "tidescale-operator",
            "Role",
            "tidescale-operator",
        ),
    ] {
        let binding = get(&objects, kind, name);
        assert_eq!(binding["subjects"], sa, "{kind} {name}");
        assert_eq!(
            binding["roleRef"],
            json!({"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role})
        );
    }
    assert_eq!(
        get(&objects, "RoleBinding", "tidescale-auth-reader")["metadata"]["namespace"],
        "kube-system"
    );
    let hpa = get(
        &objects,
        "ClusterRoleBinding",
        "tidescale-hpa-metrics-reader",
    );
    assert_eq!(
        hpa["subjects"],
        json!([{"kind": "ServiceAccount", "name": "horizontal-pod-autoscaler", "namespace": "kube-system"}])
    );
    let reader = get(
        &objects,
        "ClusterRole",
        hpa["roleRef"]["name"].as_str().unwrap(),
    );
    assert!(grants(
        reader,
        "external.metrics.k8s.io",
        "queue_depth",
        "get"
    ));
    assert!(grants(reader, "custom.metrics.k8s.io", "pods", "list"));
    assert!(!grants(reader, "", "secrets", "get"));
    assert_eq!(
        get(&objects, "ServiceAccount", "tidescale-operator")["automountServiceAccountToken"],
        true
    );
}

#[test]
fn matrix_cases_render_what_their_values_ask_for() {
    let rendered = render_cases(false);
    let case = |name: &str| objects(manifest(&rendered, name));

    // cert-manager: CA chain, serving Certificate for the Service, mounted, cainjector annotation.
    let cm = case("cert-manager");
    assert_eq!((count(&cm, "Issuer"), count(&cm, "Certificate")), (2, 2));
    let serving = get(&cm, "Certificate", "tidescale-metrics-apiserver");
    assert_eq!(serving["spec"]["secretName"], "tidescale-certs");
    assert!(
        strings(&serving["spec"]["dnsNames"])
            .contains(&"tidescale-metrics-apiserver.keda.svc".to_owned())
    );
    assert_eq!(serving["spec"]["issuerRef"]["name"], "tidescale-ca");
    assert_eq!(
        get(&cm, "Certificate", "tidescale-ca")["spec"]["isCA"],
        true
    );
    for api in cm.iter().filter(|o| o["kind"] == "APIService") {
        assert_eq!(
            api["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
            "keda/tidescale-metrics-apiserver"
        );
    }
    let a = args(&cm);
    for flag in [
        "--tls-cert-file=/certs/tls.crt",
        "--tls-private-key-file=/certs/tls.key",
        "--skip-ca-bundle-publish",
    ] {
        assert!(
            a.contains(&flag.to_owned()),
            "cert-manager args lack {flag}: {a:?}"
        );
    }
    assert!(!a.iter().any(|f| f.starts_with("--cert-secret-name")));
    let pod = &get(&cm, "Deployment", "tidescale-operator")["spec"]["template"]["spec"];
    assert_eq!(pod["volumes"][0]["secret"]["secretName"], "tidescale-certs");
    assert_eq!(
        pod["containers"][0]["volumeMounts"][0],
        json!({"name": "certificates", "mountPath": "/certs", "readOnly": true})
    );
    assert!(!grants(
        get(&cm, "ClusterRole", "tidescale-operator"),
        "apiregistration.k8s.io",
        "apiservices",
        "patch"
    ));
    assert!(!grants(
        get(&cm, "Role", "tidescale-operator"),
        "",
        "secrets",
        "create"
    ));

    // secret: the user's TLS Secret is mounted and its CA is in every APIService.
    let secret = case("secret");
    for api in secret.iter().filter(|o| o["kind"] == "APIService") {
        assert!(
            api["spec"]["caBundle"]
                .as_str()
                .is_some_and(|s| !s.is_empty())
        );
    }
    assert_eq!(
        get(&secret, "Deployment", "tidescale-operator")["spec"]["template"]["spec"]["volumes"][0]
            ["secret"]["secretName"],
        "tidescale-tls"
    );
    assert_eq!(count(&secret, "Certificate"), 0);

    // monitoring: ServiceMonitor, PodMonitor, PrometheusRule, dashboard; metric names exist.
    let mon = case("monitoring");
    let sm = get(&mon, "ServiceMonitor", "tidescale-operator");
    assert_eq!(sm["metadata"]["labels"]["release"], "kube-prometheus-stack");
    assert_eq!(sm["spec"]["endpoints"][0]["port"], "metrics");
    assert_eq!(
        sm["spec"]["endpoints"][0]["honorLabels"], true,
        "keep the ScaledObject namespace label"
    );
    // The ServiceMonitor selects the metrics Service and not the adapter's.
    let selects = |service: &str| {
        let labels = &get(&mon, "Service", service)["metadata"]["labels"];
        sm["spec"]["selector"]["matchLabels"]
            .as_object()
            .unwrap()
            .iter()
            .all(|(k, v)| &labels[k] == v)
    };
    assert!(selects("tidescale-operator") && !selects("tidescale-metrics-apiserver"));
    assert_eq!(
        get(&mon, "PodMonitor", "tidescale-operator")["spec"]["podMetricsEndpoints"][0]["port"],
        "metrics"
    );
    let rules = &get(&mon, "PrometheusRule", "tidescale-operator")["spec"]["groups"][0]["rules"];
    let alerts: Vec<String> = rules
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["alert"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(alerts.len(), 7, "{alerts:?}");
    assert!(
        rules
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["labels"]["team"] == "platform")
    );
    let dashboard = get(&mon, "ConfigMap", "tidescale-dashboard");
    assert_eq!(dashboard["metadata"]["labels"]["grafana_dashboard"], "1");
    assert_eq!(
        dashboard["metadata"]["annotations"]["grafana_folder"],
        "Autoscaling"
    );
    let board: Value = serde_json::from_str(dashboard["data"]["tidescale.json"].as_str().unwrap())
        .expect("dashboard is JSON");
    assert!(board["panels"].as_array().unwrap().len() >= 10);
    let exprs = format!("{rules}{board}");
    // The families are declared in metrics.rs, and the per-object KEDA series in
    // object_series.rs.
    let families = ["src/telemetry/metrics.rs", "src/telemetry/object_series.rs"]
        .map(|file| std::fs::read_to_string(common::repo().join(file)).unwrap())
        .concat();
    let used = metric_names(&exprs);
    for required in [
        "keda_scaler_detail_errors_total",
        "keda_scaled_object_errors_total",
        "keda_scaler_metrics_latency_seconds",
        "keda_scaled_object_paused",
    ] {
        assert!(
            used.contains(required),
            "alerts and dashboard do not use {required}"
        );
    }
    for name in &used {
        // Histograms are queried through their _bucket series.
        let family = name.strip_suffix("_bucket").unwrap_or(name);
        assert!(
            families.contains(&format!("\"{family}\"")),
            "{name} is not a metric of src/telemetry/ (metrics.rs, object_series.rs)"
        );
    }

    // network policy: ingress on the three ports; egress only restricted when rules are given.
    let np = case("network-policy");
    let policy = get(&np, "NetworkPolicy", "tidescale-operator");
    let ports: Vec<i64> = policy["spec"]["ingress"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["ports"][0]["port"].as_i64().unwrap())
        .collect();
    assert_eq!(ports, [6443, 8080, 8081]);
    assert_eq!(
        policy["spec"]["ingress"][1]["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        "monitoring"
    );
    assert_eq!(
        strings(&policy["spec"]["policyTypes"]),
        ["Ingress", "Egress"]
    );
    // Standby replicas reach the leader's adapter even when ingress and egress are restricted.
    let selector = &get(&np, "Deployment", "tidescale-operator")["spec"]["selector"]["matchLabels"];
    assert_eq!(
        policy["spec"]["ingress"][0]["from"][1]["podSelector"]["matchLabels"],
        *selector
    );
    let to_leader = &policy["spec"]["egress"][1];
    assert_eq!(to_leader["to"][0]["podSelector"]["matchLabels"], *selector);
    assert_eq!(to_leader["ports"][0]["port"], 6443);
    let open = get(&case("extras"), "NetworkPolicy", "tidescale-operator").clone();
    assert_eq!(
        strings(&open["spec"]["policyTypes"]),
        ["Ingress"],
        "egress stays open by default"
    );

    // namespaced watch: flag, label selector, namespaced rules in a Role, secrets restricted.
    let ns = case("namespaced");
    let a = args(&ns);
    assert!(a.contains(&"--watch-namespace=shop".to_owned()), "{a:?}");
    assert_eq!(
        env_value(&ns, "WATCH_LABEL_SELECTOR").unwrap()["value"],
        "tidescale.sh/shard=a"
    );
    assert_eq!(
        env_value(&ns, "KEDA_RESTRICT_SECRET_ACCESS").unwrap()["value"],
        "true"
    );
    let cluster = get(&ns, "ClusterRole", "tidescale-operator");
    assert!(
        !grants(cluster, "keda.sh", "scaledobjects", "list"),
        "namespaced watch needs no cluster-wide ScaledObject access"
    );
    assert!(!grants(cluster, "", "secrets", "get"));
    assert!(grants(
        cluster,
        "keda.sh",
        "clustertriggerauthentications",
        "watch"
    ));
    let watched = ns
        .iter()
        .find(|o| o["kind"] == "Role" && o["metadata"]["namespace"] == "shop")
        .expect("Role in shop");
    assert!(
        grants(watched, "keda.sh", "scaledobjects", "watch")
            && grants(watched, "autoscaling", "horizontalpodautoscalers", "create")
    );
    assert!(
        !grants(watched, "", "secrets", "get"),
        "restrictSecretAccess"
    );
    let objects_role = get(&ns, "Role", "tidescale-cluster-objects");
    assert_eq!(objects_role["metadata"]["namespace"], "keda");
    assert!(grants(objects_role, "", "secrets", "get"));
    assert!(
        ns.iter()
            .any(|o| o["kind"] == "RoleBinding" && o["metadata"]["namespace"] == "shop")
    );

    // HA: two replicas, leader election, a PDB over the operator pods, spread over zones.
    let ha = case("ha");
    let deployment = get(&ha, "Deployment", "tidescale-operator");
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert!(args(&ha).contains(&"--leader-elect".to_owned()));
    let pdb = get(&ha, "PodDisruptionBudget", "tidescale-operator");
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"],
        deployment["spec"]["selector"]["matchLabels"]
    );
    assert_eq!(
        deployment["spec"]["template"]["spec"]["topologySpreadConstraints"][0]["topologyKey"],
        "topology.kubernetes.io/zone"
    );

    // custom metrics off: only the external metrics APIService, and no custom metrics RBAC.
    let nc = case("no-custom-metrics");
    assert_eq!(count(&nc, "APIService"), 1);
    get(&nc, "APIService", "v1beta1.external.metrics.k8s.io");
    assert!(!grants(
        get(&nc, "ClusterRole", "tidescale-metrics-reader"),
        "custom.metrics.k8s.io",
        "pods",
        "get"
    ));

    // adapter off: no APIService, no adapter Service, no delegated-auth bindings.
    let na = case("no-adapter");
    assert_eq!(count(&na, "APIService"), 0);
    assert!(args(&na).contains(&"--disable-adapter".to_owned()));
    assert!(
        !args(&na)
            .iter()
            .any(|f| f.starts_with("--adapter-") || f.starts_with("--cert-secret-name"))
    );
    assert!(!kinds_and_names(&na).any(|n| n.contains("metrics-apiserver") || n.contains("auth-")));

    // extras: every pass-through knob lands where it should.
    let ex = case("extras");
    let pod = &get(&ex, "Deployment", "tidescale-operator")["spec"]["template"];
    let c = container(&ex);
    assert_eq!(
        c["image"],
        format!(
            "myregistry.azurecr.io/tidescale/tidescale@sha256:{}",
            "a".repeat(64)
        )
    );
    assert_eq!(
        pod["spec"]["imagePullSecrets"],
        json!([{"name": "acr-pull"}])
    );
    assert_eq!(
        get(&ex, "ServiceAccount", "tidescale-operator")["metadata"]["annotations"]["azure.workload.identity/client-id"],
        "00000000-0000-0000-0000-000000000000"
    );
    assert_eq!(
        pod["metadata"]["labels"]["azure.workload.identity/use"],
        "true"
    );
    assert_eq!(
        pod["metadata"]["annotations"]["example.com/team"],
        "platform"
    );
    assert!(
        ex.iter()
            .all(|o| o["metadata"]["labels"]["example.com/owner"] == "platform"),
        "commonLabels on every object"
    );
    assert_eq!(pod["spec"]["priorityClassName"], "system-cluster-critical");
    assert_eq!(pod["spec"]["tolerations"][0]["key"], "CriticalAddonsOnly");
    assert!(pod["spec"]["affinity"]["nodeAffinity"].is_object());
    assert_eq!(
        env_value(&ex, "HTTPS_PROXY").unwrap()["value"],
        "http://proxy.corp:3128"
    );
    assert_eq!(c["envFrom"][0]["configMapRef"]["name"], "proxy-settings");
    let a = args(&ex);
    assert_eq!(
        a.last().map(String::as_str),
        Some("--skip-ca-bundle-publish")
    );
    for flag in [
        "--log-level=debug",
        "--log-format=json",
        "--cluster-object-namespace=keda-secrets",
    ] {
        assert!(a.contains(&flag.to_owned()), "{a:?}");
    }
    assert_eq!(pod["spec"]["volumes"][0]["name"], "corp-ca");
    assert_eq!(c["volumeMounts"][0]["mountPath"], "/etc/ssl/corp");
    let operator = get(&ex, "ClusterRole", "tidescale-operator");
    assert!(grants(operator, "argoproj.io", "rollouts/scale", "update"));
    assert!(!grants(operator, "apps", "statefulsets/scale", "update"));
    assert!(!grants(operator, "batch", "jobs", "create"));
    assert_eq!(
        get(&ex, "PodDisruptionBudget", "tidescale-operator")["spec"],
        json!({"maxUnavailable": "50%", "selector": pdb["spec"]["selector"]})
    );
    assert_eq!(c["resources"]["limits"]["memory"], "256Mi");
}

/// The `keda_*` and `tidescale_*` metric names in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let re = regex::Regex::new(r"\b(?:keda|tidescale)_[a-z_]*[a-z]").unwrap();
    re.find_iter(text).map(|m| m.as_str().to_owned()).collect()
}

/// The flags of `tidescale operator` the chart relies on (the contract of issue #7).
const OPERATOR_FLAGS: &[&str] = &[
    "--watch-namespace",
    "--cluster-object-namespace",
    "--scaler-timeout-ms",
    "--poll-threads",
    "--metrics-bind-address",
    "--health-probe-bind-address",
    "--log-level",
    "--log-format",
    "--leader-elect",
    "--leader-election-id",
    "--leader-election-lease-duration",
    "--leader-election-renew-deadline",
    "--leader-election-retry-period",
    "--adapter-bind-address",
    "--disable-adapter",
    "--tls-cert-file",
    "--tls-private-key-file",
    "--cert-secret-name",
    "--skip-ca-bundle-publish",
    "--adapter-service-name",
];

/// Every flag any case renders into the Deployment.
fn rendered_flags() -> BTreeSet<String> {
    let rendered = render_cases(false);
    let mut flags = BTreeSet::new();
    for (name, _) in cases() {
        for arg in args(&objects(manifest(&rendered, name))) {
            flags.insert(arg.split('=').next().unwrap().to_owned());
        }
    }
    flags
}

#[test]
fn chart_passes_only_the_operator_flags_of_the_contract() {
    let flags = rendered_flags();
    let unknown: Vec<_> = flags
        .iter()
        .filter(|f| !OPERATOR_FLAGS.contains(&f.as_str()))
        .collect();
    assert!(
        unknown.is_empty(),
        "flags outside the operator contract: {unknown:?}"
    );
    assert_eq!(
        flags.len(),
        OPERATOR_FLAGS.len(),
        "the matrix exercises every flag"
    );
}

#[test]
fn the_operator_binary_parses_the_arguments_of_every_case() {
    // clap checks every argument before `--help` (unknown flags, bad values, missing pairs) and
    // only then prints the help: success means `tidescale operator ARGS` would start with them.
    let rendered = render_cases(false);
    for (name, _) in cases() {
        let objects = objects(manifest(&rendered, name));
        let c = container(&objects);
        assert_eq!(strings(&c["command"]), ["tidescale", "operator"]);
        let mut args = args(&objects);
        args.push("--help".into());
        let output = common::tidescale()
            .arg("operator")
            .args(&args)
            .output()
            .expect("run tidescale operator --help");
        assert!(
            output.status.success(),
            "case {name}: `tidescale operator {}` is rejected:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    // The environment the chart sets is what the binary reads.
    let help = String::from_utf8_lossy(&common::run_tidescale(&["operator", "--help"], "").stdout)
        .into_owned();
    for env in ["POD_NAME", "POD_NAMESPACE", "POD_IP"] {
        assert!(
            help.contains(&format!("[env: {env}=")),
            "`tidescale operator` does not read {env}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The sandbox: `tidescale dev` + the real kubectl.
// ---------------------------------------------------------------------------------------------

fn kubectl_json(kubeconfig: &Path, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    serde_json::from_slice(&kubectl(kubeconfig, &all).stdout).expect("kubectl prints JSON")
}

/// API groups the chart can render whose kinds the sandbox does not serve (yet), and why the
/// sandbox test leaves them out. The lead extends the sandbox; this list then shrinks.
const UNSERVED: &[(&str, &str, &str)] = &[
    (
        "monitoring.coreos.com",
        "ServiceMonitor/PodMonitor/PrometheusRule",
        "Prometheus Operator CRDs, not installed",
    ),
    (
        "cert-manager.io",
        "Issuer/Certificate",
        "cert-manager CRDs, not installed",
    ),
];

#[test]
fn install_yaml_applies_to_the_sandbox_and_reads_back_as_meant() {
    let install = common::repo().join("manifests/install.yaml");
    let meant = objects(&std::fs::read_to_string(&install).unwrap());
    let dev = start_dev();
    let kc = dev.kubeconfig.as_path();

    // Which groups the sandbox serves: the default install uses only served kinds; the optional
    // kinds listed in UNSERVED are not served and are therefore not applied here.
    let groups = serde_json::from_slice::<Value>(&kubectl(kc, &["get", "--raw", "/apis"]).stdout)
        .expect("APIGroupList");
    let served: BTreeSet<String> = groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap().to_owned())
        .collect();
    for (group, kinds, why) in UNSERVED {
        assert!(
            !served.contains(*group),
            "the sandbox now serves {group} ({kinds}): apply those objects ({why}) in this test and drop them from UNSERVED"
        );
    }
    for object in &meant {
        let api = object["apiVersion"].as_str().unwrap();
        let group = api.rsplit_once('/').map_or("", |(g, _)| g);
        assert!(
            group.is_empty() || served.contains(group),
            "install.yaml uses {api}, which the sandbox does not serve"
        );
    }

    // kubectl apply, exactly as the README says (the Namespace is the file's first object).
    let applied =
        String::from_utf8_lossy(&kubectl(kc, &["apply", "-f", install.to_str().unwrap()]).stdout)
            .into_owned();
    // Lines look like "clusterrole.rbac.authorization.k8s.io/tidescale-operator created".
    let reported: BTreeSet<(String, String)> = applied
        .lines()
        .filter_map(|line| {
            let (kind, rest) = line.split_once('/')?;
            let name = rest.split_whitespace().next()?;
            Some((kind.split('.').next()?.to_owned(), name.to_owned()))
        })
        .collect();
    let expected: BTreeSet<(String, String)> = meant
        .iter()
        .map(|o| {
            (
                o["kind"].as_str().unwrap().to_lowercase(),
                o["metadata"]["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(reported, expected, "kubectl apply output:\n{applied}");

    // APIServices point at the adapter Service.
    for name in [
        "v1beta1.external.metrics.k8s.io",
        "v1beta2.custom.metrics.k8s.io",
        "v1beta1.custom.metrics.k8s.io",
    ] {
        let stored = kubectl_json(kc, &["get", "apiservice", name]);
        let expected = get(&meant, "APIService", name);
        assert_eq!(
            stored["spec"]["service"],
            json!({"name": "tidescale-metrics-apiserver", "namespace": "keda", "port": 443}),
            "{name}"
        );
        for field in [
            "group",
            "version",
            "groupPriorityMinimum",
            "versionPriority",
        ] {
            assert_eq!(
                stored["spec"][field], expected["spec"][field],
                "{name} {field}"
            );
        }
    }
    let service = kubectl_json(
        kc,
        &[
            "get",
            "service",
            "-n",
            "keda",
            "tidescale-metrics-apiserver",
        ],
    );
    assert_eq!(service["spec"]["ports"][0]["port"], 443);
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "adapter");

    // RBAC bindings bind the right subjects to the right roles, and the roles they name exist.
    let sa = json!([{"kind": "ServiceAccount", "name": "tidescale-operator", "namespace": "keda"}]);
    for (kind, namespace, name, role_kind, role, subjects) in [
        (
            "clusterrolebinding",
            None,
            "tidescale-operator",
            "ClusterRole",
            "tidescale-operator",
            sa.clone(),
        ),
        (
            "clusterrolebinding",
            None,
            "tidescale-auth-delegator",
            "ClusterRole",
            "system:auth-delegator",
            sa.clone(),
        ),
        (
            "clusterrolebinding",
            None,
            "tidescale-hpa-metrics-reader",
            "ClusterRole",
            "tidescale-metrics-reader",
            json!([{"kind": "ServiceAccount", "name": "horizontal-pod-autoscaler", "namespace": "kube-system"}]),
        ),
        (
            "rolebinding",
            Some("kube-system"),
            "tidescale-auth-reader",
            "Role",
            "extension-apiserver-authentication-reader",
            sa.clone(),
        ),
        (
            "rolebinding",
            Some("keda"),
            "tidescale-operator",
            "Role",
            "tidescale-operator",
            sa.clone(),
        ),
    ] {
        let mut get_args = vec!["get", kind, name];
        if let Some(ns) = namespace {
            get_args.extend(["-n", ns]);
        }
        let binding = kubectl_json(kc, &get_args);
        assert_eq!(binding["subjects"], subjects, "{kind} {name}");
        assert_eq!(
            binding["roleRef"],
            json!({"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role}),
            "{kind} {name}"
        );
        let mut role_args = vec![
            "get",
            if role_kind == "Role" {
                "role"
            } else {
                "clusterrole"
            },
            role,
        ];
        if let Some(ns) = namespace {
            role_args.extend(["-n", ns]);
        }
        kubectl(kc, &role_args);
    }
    let stored_role = kubectl_json(kc, &["get", "clusterrole", "tidescale-operator"]);
    assert_eq!(
        stored_role["rules"],
        get(&meant, "ClusterRole", "tidescale-operator")["rules"]
    );

    // The Deployment keeps the securityContext, args, env and probes the chart meant.
    let stored = kubectl_json(
        kc,
        &["get", "deployment", "-n", "keda", "tidescale-operator"],
    );
    let expected = get(&meant, "Deployment", "tidescale-operator");
    let (s, e) = (
        &stored["spec"]["template"]["spec"],
        &expected["spec"]["template"]["spec"],
    );
    assert_eq!(s["securityContext"], e["securityContext"]);
    assert_eq!(s["serviceAccountName"], "tidescale-operator");
    for field in [
        "image",
        "command",
        "args",
        "env",
        "ports",
        "securityContext",
        "resources",
    ] {
        assert_eq!(
            s["containers"][0][field], e["containers"][0][field],
            "container {field}"
        );
    }
    assert_eq!(
        s["containers"][0]["livenessProbe"]["httpGet"]["path"],
        "/healthz"
    );
    assert_eq!(
        s["containers"][0]["readinessProbe"]["httpGet"]["path"],
        "/readyz"
    );
    assert_eq!(stored["spec"]["selector"], expected["spec"]["selector"]);

    // A second apply is a no-op (idempotent install / upgrade path).
    let again =
        String::from_utf8_lossy(&kubectl(kc, &["apply", "-f", install.to_str().unwrap()]).stdout)
            .into_owned();
    let changed: Vec<_> = again
        .lines()
        .filter(|l| !l.ends_with(" unchanged"))
        .collect();
    assert!(
        changed.is_empty(),
        "second apply changed objects: {changed:?}"
    );

    // The optional kinds the sandbox serves: the HA case's PodDisruptionBudget and the
    // network-policy case's NetworkPolicy apply and read back as rendered.
    let rendered = helm(json!({"cases": [
        {"name": "ha", "values": cases().into_iter().find(|(n, _)| *n == "ha").unwrap().1},
        {"name": "network-policy", "values": cases().into_iter().find(|(n, _)| *n == "network-policy").unwrap().1},
    ], "lint": false}));
    for (case, kind, resource) in [
        ("ha", "PodDisruptionBudget", "poddisruptionbudget"),
        ("network-policy", "NetworkPolicy", "networkpolicy"),
    ] {
        let objects = objects(manifest(&rendered, case));
        let object = objects
            .iter()
            .find(|o| o["kind"] == kind)
            .unwrap_or_else(|| panic!("case {case} renders a {kind}"));
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), serde_json::to_string(object).unwrap()).unwrap();
        kubectl(kc, &["apply", "-f", file.path().to_str().unwrap()]);
        let name = object["metadata"]["name"].as_str().unwrap();
        let stored = kubectl_json(kc, &["get", resource, "-n", "keda", name]);
        assert_eq!(stored["spec"], object["spec"], "{kind} {name}");
    }
}
