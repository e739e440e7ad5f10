//! The real kubectl against the sandbox through a written kubeconfig.

mod common;

use common::{WIDGET_CRD, start};

const WIDGET: &str = "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: blue-one\n  namespace: default\nspec:\n  color: blue\n";

#[tokio::test]
async fn kubectl_applies_a_crd_and_prints_its_columns() {
    let env = start().await;
    env.apply(WIDGET_CRD, &[]).await;
    env.ok(&[
        "wait",
        "--for=condition=Established",
        "crd/widgets.example.com",
        "--timeout=20s",
    ])
    .await;
    env.apply(WIDGET, &[]).await;
    let table = env.ok(&["get", "widgets"]).await;
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "SIZE", "COLOR", "READY", "AGE"]);
    assert!(
        table.lines().nth(1).unwrap().starts_with("blue-one"),
        "{table}"
    );
    assert!(table.contains(" 1 ") && table.contains("blue"), "{table}");
    let short = env
        .ok(&["get", "wd", "blue-one", "-o", "jsonpath={.spec.replicas}"])
        .await;
    assert_eq!(short, "1", "schema default applied");
}

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: default
  labels: {app: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
        - name: app
          image: nginx:1
          env: [{name: A, value: "1"}]
"#;

#[tokio::test]
async fn kubectl_scales_describes_and_deletes_a_deployment() {
    let env = start().await;
    env.apply(DEPLOYMENT, &[]).await;
    let scaled = env.ok(&["scale", "deployment/web", "--replicas=5"]).await;
    assert!(scaled.contains("scaled"), "{scaled}");
    assert_eq!(
        env.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"])
            .await,
        "5"
    );
    let scale = env
        .ok(&[
            "get",
            "--raw",
            "/apis/apps/v1/namespaces/default/deployments/web/scale",
        ])
        .await;
    let scale: serde_json::Value = serde_json::from_str(&scale).unwrap();
    assert_eq!(
        (
            scale["spec"]["replicas"].as_i64(),
            scale["status"]["selector"].as_str()
        ),
        (Some(5), Some("app=web"))
    );
    let described = env.ok(&["describe", "deployment", "web"]).await;
    assert!(
        described.contains("Name:") && described.contains("web"),
        "{described}"
    );
    // A second client-side apply merges by container name and keeps the scaled replicas owner.
    env.apply(&DEPLOYMENT.replace("nginx:1", "nginx:2"), &[])
        .await;
    assert_eq!(
        env.ok(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}"
        ])
        .await,
        "nginx:2"
    );
    env.ok(&["delete", "deployment", "web"]).await;
    let missing = env.kubectl(&["get", "deployment", "web"]).await;
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("deployments.apps \"web\" not found")
    );
}

#[tokio::test]
async fn kubectl_server_side_apply_reports_conflicts_and_force_wins() {
    let env = start().await;
    env.apply(DEPLOYMENT, &["--server-side", "--field-manager=alice"])
        .await;
    let clash = DEPLOYMENT.replace("replicas: 2", "replicas: 7");
    let out = env
        .kubectl_with(
            &env.kubeconfig,
            &["apply", "--server-side", "--field-manager=bob", "-f", "-"],
            Some(&clash),
        )
        .await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("conflict with \"alice\"") && stderr.contains(".spec.replicas"),
        "{stderr}"
    );
    env.apply(
        &clash,
        &["--server-side", "--field-manager=bob", "--force-conflicts"],
    )
    .await;
    assert_eq!(
        env.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"])
            .await,
        "7"
    );
}

#[tokio::test]
async fn kubectl_rejects_invalid_custom_resources_with_field_errors() {
    let env = start().await;
    env.apply(WIDGET_CRD, &[]).await;
    let bad = WIDGET.replace("color: blue", "color: purple");
    let out = env
        .kubectl_with(&env.kubeconfig, &["apply", "-f", "-"], Some(&bad))
        .await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("is invalid")
            && stderr.contains("spec.color")
            && stderr.contains("Unsupported value"),
        "{stderr}"
    );
}

#[tokio::test]
async fn kubectl_scales_custom_resources_through_the_scale_subresource() {
    let env = start().await;
    env.apply(WIDGET_CRD, &[]).await;
    env.apply(WIDGET, &[]).await;
    env.ok(&["scale", "widget/blue-one", "--replicas=3"]).await;
    assert_eq!(
        env.ok(&[
            "get",
            "widget",
            "blue-one",
            "-o",
            "jsonpath={.spec.replicas}"
        ])
        .await,
        "3"
    );
    let resources = env.ok(&["api-resources", "--api-group=example.com"]).await;
    assert!(
        resources.contains("widgets") && resources.contains("wd"),
        "{resources}"
    );
}

#[tokio::test]
async fn kubectl_wait_sees_a_condition_set_later() {
    let env = start().await;
    env.apply(WIDGET_CRD, &[]).await;
    env.apply(WIDGET, &[]).await;
    let waiter = env.kubectl(&[
        "wait",
        "--for=condition=Ready",
        "widget/blue-one",
        "--timeout=30s",
    ]);
    let setter = async {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let patch = r#"{"status":{"conditions":[{"type":"Ready","status":"True"}]}}"#;
        env.ok(&[
            "patch",
            "widget",
            "blue-one",
            "--subresource=status",
            "--type=merge",
            "-p",
            patch,
        ])
        .await
    };
    let (waited, _) = tokio::join!(waiter, setter);
    assert!(
        waited.status.success(),
        "{}",
        String::from_utf8_lossy(&waited.stderr)
    );
    let table = env.ok(&["get", "widgets"]).await;
    assert!(table.lines().nth(1).unwrap().contains("True"), "{table}");
}

#[tokio::test]
async fn kubectl_get_watch_streams_an_event() {
    let env = start().await;
    let cache = env.dir.path().join("cache");
    let mut child = tokio::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&env.kubeconfig)
        .arg("--cache-dir")
        .arg(&cache)
        .args(["get", "configmaps", "-w", "--output-watch-events"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    env.apply(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: watched}\ndata: {a: b}\n",
        &[],
    )
    .await;
    let seen = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("watched") {
                return line;
            }
        }
        String::new()
    })
    .await
    .expect("watch event in time");
    assert!(seen.starts_with("ADDED"), "{seen}");
    child.kill().await.unwrap();
}

#[tokio::test]
async fn kubectl_deleting_a_namespace_removes_its_contents() {
    let env = start().await;
    env.apply(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n",
        &[],
    )
    .await;
    env.apply(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c1, namespace: shop}\ndata: {a: b}\n",
        &[],
    )
    .await;
    env.ok(&[
        "delete",
        "namespace",
        "shop",
        "--wait=true",
        "--timeout=20s",
    ])
    .await;
    let out = env.kubectl(&["get", "namespace", "shop"]).await;
    assert!(!out.status.success());
    assert!(
        env.sandbox
            .store()
            .get(
                &tidescale_sandbox::GroupResource::new("", "configmaps"),
                Some("shop"),
                "c1"
            )
            .is_err()
    );
}

#[tokio::test]
async fn kubectl_create_subcommands_send_protobuf_the_sandbox_decodes() {
    let env = start().await;
    env.ok(&["create", "namespace", "shop"]).await;
    env.ok(&[
        "-n",
        "shop",
        "create",
        "configmap",
        "settings",
        "--from-literal=mode=fast",
    ])
    .await;
    env.ok(&[
        "-n",
        "shop",
        "create",
        "secret",
        "generic",
        "creds",
        "--from-literal=password=hunter2",
    ])
    .await;
    env.ok(&[
        "-n",
        "shop",
        "create",
        "deployment",
        "api",
        "--image=nginx:1",
        "--replicas=2",
        "--port=8080",
    ])
    .await;
    env.ok(&["-n", "shop", "create", "serviceaccount", "robot"])
        .await;
    env.ok(&[
        "-n",
        "shop",
        "create",
        "role",
        "reader",
        "--verb=get",
        "--resource=pods",
    ])
    .await;
    assert_eq!(
        env.ok(&[
            "-n",
            "shop",
            "get",
            "cm",
            "settings",
            "-o",
            "jsonpath={.data.mode}"
        ])
        .await,
        "fast"
    );
    assert_eq!(
        env.ok(&[
            "-n",
            "shop",
            "get",
            "secret",
            "creds",
            "-o",
            "jsonpath={.data.password}"
        ])
        .await,
        "aHVudGVyMg=="
    );
    assert_eq!(
        env.ok(&[
            "-n",
            "shop",
            "get",
            "secret",
            "creds",
            "-o",
            "jsonpath={.type}"
        ])
        .await,
        "Opaque"
    );
    let deploy = env
        .ok(&["-n", "shop", "get", "deploy", "api", "-o", "json"])
        .await;
    let deploy: serde_json::Value = serde_json::from_str(&deploy).unwrap();
    assert_eq!(deploy["spec"]["replicas"], 2);
    assert_eq!(
        deploy["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1"
    );
    assert_eq!(
        deploy["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"],
        8080
    );
    assert_eq!(deploy["spec"]["selector"]["matchLabels"]["app"], "api");
    assert_eq!(
        env.ok(&["auth", "can-i", "delete", "pods"]).await.trim(),
        "yes"
    );
}

#[tokio::test]
async fn kubectl_reports_unknown_custom_resource_fields() {
    let env = start().await;
    env.apply(WIDGET_CRD, &[]).await;
    let typo = WIDGET.replace("color: blue", "color: blue\n  colour: blue");
    let out = env
        .kubectl_with(&env.kubeconfig, &["apply", "-f", "-"], Some(&typo))
        .await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown field \"spec.colour\""), "{stderr}");
    let lenient = env
        .kubectl_with(
            &env.kubeconfig,
            &["apply", "--validate=false", "-f", "-"],
            Some(&typo),
        )
        .await;
    assert!(
        lenient.status.success(),
        "{}",
        String::from_utf8_lossy(&lenient.stderr)
    );
    let stored = env
        .ok(&["get", "widget", "blue-one", "-o", "jsonpath={.spec}"])
        .await;
    assert!(!stored.contains("colour"), "unknown fields are pruned");
}

#[tokio::test]
async fn kubectl_discovers_resources_and_categories() {
    let env = start().await;
    env.apply(DEPLOYMENT, &[]).await;
    let resources = env.ok(&["api-resources", "-o", "name"]).await;
    for name in [
        "deployments.apps",
        "horizontalpodautoscalers.autoscaling",
        "leases.coordination.k8s.io",
        "customresourcedefinitions.apiextensions.k8s.io",
        "apiservices.apiregistration.k8s.io",
    ] {
        assert!(
            resources.lines().any(|l| l == name),
            "{name} missing from\n{resources}"
        );
    }
    let all = env.ok(&["get", "all"]).await;
    assert!(all.contains("deployment.apps/web"), "{all}");
    let versions = env.ok(&["version", "-o", "json"]).await;
    assert!(versions.contains("serverVersion"), "{versions}");
}

#[tokio::test]
async fn kubectl_autoscale_writes_v1_and_the_stored_hpa_is_v2() {
    let env = start().await;
    env.apply(DEPLOYMENT, &[]).await;
    env.ok(&[
        "autoscale",
        "deployment",
        "web",
        "--max=5",
        "--cpu-percent=50",
    ])
    .await;
    let v2 = env
        .ok(&["get", "hpa.v2.autoscaling", "web", "-o", "json"])
        .await;
    let v2: serde_json::Value = serde_json::from_str(&v2).unwrap();
    assert_eq!(
        v2["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
        50
    );
    assert_eq!(v2["spec"]["minReplicas"], 1);
    let v1 = env
        .ok(&[
            "get",
            "--raw",
            "/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers/web",
        ])
        .await;
    let v1: serde_json::Value = serde_json::from_str(&v1).unwrap();
    assert_eq!(
        (
            v1["apiVersion"].as_str(),
            v1["spec"]["targetCPUUtilizationPercentage"].as_i64()
        ),
        (Some("autoscaling/v1"), Some(50)),
        "{v1}"
    );
    let v1_resource = kube::discovery::ApiResource {
        group: "autoscaling".into(),
        version: "v1".into(),
        api_version: "autoscaling/v1".into(),
        kind: "HorizontalPodAutoscaler".into(),
        plural: "horizontalpodautoscalers".into(),
    };
    let api: kube::Api<kube::api::DynamicObject> =
        kube::Api::namespaced_with(env.client().await, "default", &v1_resource);
    let patch = serde_json::json!({"spec": {"targetCPUUtilizationPercentage": 70}});
    let out = api
        .patch(
            "web",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(patch),
        )
        .await
        .unwrap();
    assert_eq!(out.data["spec"]["targetCPUUtilizationPercentage"], 70);
    let patched = env
        .ok(&[
            "get",
            "hpa",
            "web",
            "-o",
            "jsonpath={.spec.metrics[0].resource.target.averageUtilization}",
        ])
        .await;
    assert_eq!(patched, "70");
}

#[tokio::test]
async fn kubectl_explains_custom_resources_from_their_schema() {
    let env = start().await;
    env.apply(WIDGET_CRD, &[]).await;
    let explained = env.ok(&["explain", "widgets.spec"]).await;
    assert!(
        explained.contains("KIND:") && explained.contains("Widget"),
        "{explained}"
    );
    assert!(
        explained.contains("color") && explained.contains("replicas"),
        "{explained}"
    );
}
