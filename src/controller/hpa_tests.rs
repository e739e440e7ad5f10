//! The owned HPA carries every field KEDA sets (`reference/keda.md` §2.3).

use tidescale_scalers::{MetricSpec, MetricType};

use super::*;

fn so(yaml_spec: &str) -> ScaledObject {
    let yaml = format!(
        "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata:\n  name: orders\n  namespace: shop\n  uid: u-1\n  labels:\n    team: a\n    secret-ish: b\n{yaml_spec}"
    );
    serde_yaml_ng::from_str(&yaml).expect("test ScaledObject")
}

const SPEC: &str = "spec:\n  scaleTargetRef:\n    name: orders\n  triggers:\n    - type: rabbitmq\n      metadata: {}\n";

fn target() -> TargetRef {
    TargetRef {
        api_version: "apps/v1".into(),
        kind: "Deployment".into(),
        name: "orders".into(),
    }
}

fn metric(name: &str, target: f64, integer: bool, metric_type: MetricType) -> MetricSpec {
    MetricSpec {
        metric_name: name.into(),
        target,
        target_is_integer: integer,
        metric_type,
        activation_threshold: 0.0,
    }
}

fn json(hpa: &HorizontalPodAutoscaler) -> serde_json::Value {
    serde_json::to_value(hpa).unwrap()
}

#[test]
fn hpa_mirrors_the_scaled_object() {
    let so = so(SPEC);
    let metrics = [metric(
        "s0-rabbitmq-orders",
        20.0,
        false,
        MetricType::AverageValue,
    )];
    let hpa = json(&desired_hpa(&so, &target(), &metrics, "0.1.0"));
    assert_eq!(hpa["metadata"]["name"], "keda-hpa-orders");
    assert_eq!(hpa["metadata"]["namespace"], "shop");
    assert_eq!(
        hpa["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "keda-operator"
    );
    assert_eq!(
        hpa["metadata"]["labels"]["app.kubernetes.io/part-of"],
        "orders"
    );
    assert_eq!(
        hpa["metadata"]["labels"]["app.kubernetes.io/name"],
        "keda-hpa-orders"
    );
    assert_eq!(hpa["metadata"]["labels"]["team"], "a");
    let owner = &hpa["metadata"]["ownerReferences"][0];
    assert_eq!(
        (
            owner["kind"].as_str(),
            owner["uid"].as_str(),
            owner["controller"].as_bool()
        ),
        (Some("ScaledObject"), Some("u-1"), Some(true))
    );
    assert_eq!(hpa["spec"]["minReplicas"], 1, "max(min, 1)");
    assert_eq!(hpa["spec"]["maxReplicas"], 100);
    assert_eq!(
        hpa["spec"]["scaleTargetRef"],
        serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "orders"})
    );
    let external = &hpa["spec"]["metrics"][0];
    assert_eq!(external["type"], "External");
    assert_eq!(external["external"]["metric"]["name"], "s0-rabbitmq-orders");
    assert_eq!(
        external["external"]["metric"]["selector"]["matchLabels"]["scaledobject.keda.sh/name"],
        "orders"
    );
    assert_eq!(
        external["external"]["target"],
        serde_json::json!({"type": "AverageValue", "averageValue": "20"})
    );
    assert!(hpa["spec"].get("behavior").is_none());
}

#[test]
fn metrics_keep_trigger_order_and_target_kinds() {
    let so = so(SPEC);
    let metrics = [
        metric("s0-kafka-payments", 50.0, true, MetricType::AverageValue),
        metric("s1-prometheus", 1.5, false, MetricType::Value),
    ];
    let hpa = json(&desired_hpa(&so, &target(), &metrics, "v"));
    assert_eq!(
        hpa["spec"]["metrics"][0]["external"]["target"]["averageValue"],
        "50"
    );
    assert_eq!(
        hpa["spec"]["metrics"][1]["external"]["target"],
        serde_json::json!({"type": "Value", "value": "1500m"})
    );
}

#[test]
fn modifiers_replace_metrics_with_one_composite_metric() {
    let spec = format!(
        "{SPEC}  advanced:\n    scalingModifiers:\n      formula: a + b\n      target: \"2.5\"\n      metricType: Value\n"
    );
    let so = so(&spec);
    let metrics = [
        metric("s0-a", 1.0, false, MetricType::AverageValue),
        metric("s1-b", 1.0, false, MetricType::AverageValue),
    ];
    let hpa = json(&desired_hpa(&so, &target(), &metrics, "v"));
    let all = hpa["spec"]["metrics"].as_array().unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0]["external"]["metric"]["name"], "composite-metric");
    assert_eq!(
        all[0]["external"]["target"],
        serde_json::json!({"type": "Value", "value": "2500m"})
    );
}

#[test]
fn configured_name_min_max_and_behavior_are_copied() {
    let spec = format!(
        "{SPEC}  minReplicaCount: 3\n  maxReplicaCount: 9\n  advanced:\n    horizontalPodAutoscalerConfig:\n      name: custom\n      behavior:\n        scaleDown:\n          stabilizationWindowSeconds: 60\n"
    );
    let hpa = json(&desired_hpa(&so(&spec), &target(), &[], "v"));
    assert_eq!(hpa["metadata"]["name"], "custom");
    assert_eq!(
        (
            hpa["spec"]["minReplicas"].as_i64(),
            hpa["spec"]["maxReplicas"].as_i64()
        ),
        (Some(3), Some(9))
    );
    assert_eq!(
        hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"],
        60
    );
}

#[test]
fn paused_directions_disable_their_select_policy() {
    let yaml = SPEC.replace(
        "spec:",
        "  annotations:\n    autoscaling.keda.sh/paused-scale-in: \"true\"\nspec:",
    );
    let hpa = json(&desired_hpa(&so(&yaml), &target(), &[], "v"));
    assert_eq!(
        hpa["spec"]["behavior"]["scaleDown"]["selectPolicy"],
        "Disabled"
    );
    assert!(hpa["spec"]["behavior"].get("scaleUp").is_none());
    assert_eq!(
        hpa["metadata"]["annotations"]["autoscaling.keda.sh/paused-scale-in"],
        "true"
    );
    let yaml = SPEC.replace(
        "spec:",
        "  annotations:\n    autoscaling.keda.sh/paused-scale-out: \"true\"\nspec:",
    );
    let hpa = json(&desired_hpa(&so(&yaml), &target(), &[], "v"));
    assert_eq!(
        hpa["spec"]["behavior"]["scaleUp"]["selectPolicy"],
        "Disabled"
    );
}

#[test]
fn excluded_labels_are_not_copied() {
    let yaml = SPEC.replace(
        "spec:",
        "  annotations:\n    scaledobject.keda.sh/hpa-excluded-labels: secret-ish, other\nspec:",
    );
    let hpa = json(&desired_hpa(&so(&yaml), &target(), &[], "v"));
    assert_eq!(hpa["metadata"]["labels"]["team"], "a");
    assert!(hpa["metadata"]["labels"].get("secret-ish").is_none());
}
