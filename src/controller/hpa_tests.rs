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

fn existing_hpa(owner: Option<(&str, &str)>, target: &str) -> HorizontalPodAutoscaler {
    let mut hpa: HorizontalPodAutoscaler = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "user-hpa", "namespace": "shop"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target}, "maxReplicas": 5}
    }))
    .unwrap();
    hpa.metadata.owner_references = owner.map(|(name, uid)| {
        vec![OwnerReference {
            api_version: API_VERSION.into(),
            kind: "ScaledObject".into(),
            name: name.into(),
            uid: uid.into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }]
    });
    hpa
}

const NAMED: &str = "spec:\n  scaleTargetRef:\n    name: orders\n  advanced:\n    horizontalPodAutoscalerConfig: {name: user-hpa}\n  triggers:\n    - type: rabbitmq\n      metadata: {}\n";

#[test]
fn an_hpa_owned_by_this_object_is_applied_as_usual() {
    let so = so(NAMED);
    let hpa = existing_hpa(Some(("orders", "u-1")), "orders");
    assert_eq!(existing(&hpa, &so, "apps/v1.Deployment"), Existing::Owned);
    let other_uid = existing_hpa(Some(("orders", "u-2")), "orders");
    assert!(
        !owned_by(&other_uid, &so),
        "a previous object of the same name is not this one"
    );
}

#[test]
fn a_foreign_hpa_is_a_conflict_with_kedas_message_unless_transferred() {
    let mut so = so(NAMED);
    let hpa = existing_hpa(None, "orders");
    let Existing::Conflict(message) = existing(&hpa, &so, "apps/v1.Deployment") else {
        panic!("a conflict expected");
    };
    assert!(
        message.starts_with("the workload 'orders' of type 'apps/v1.Deployment' is already managed by the hpa 'user-hpa'"),
        "{message}"
    );
    assert!(message.contains("transfer-hpa-ownership"), "{message}");
    let elsewhere = existing_hpa(None, "billing");
    let Existing::Conflict(message) = existing(&elsewhere, &so, "apps/v1.Deployment") else {
        panic!("a conflict expected");
    };
    assert!(
        message.starts_with("the hpa 'user-hpa' already exists"),
        "{message}"
    );
    so.metadata.annotations = Some(
        [(
            ANNOTATION_TRANSFER_HPA_OWNERSHIP.to_owned(),
            "true".to_owned(),
        )]
        .into_iter()
        .collect(),
    );
    assert_eq!(existing(&hpa, &so, "apps/v1.Deployment"), Existing::Adopt);
}

#[test]
fn the_transfer_annotation_needs_the_configured_name() {
    let mut so = so(SPEC);
    so.metadata.annotations = Some(
        [(
            ANNOTATION_TRANSFER_HPA_OWNERSHIP.to_owned(),
            "true".to_owned(),
        )]
        .into_iter()
        .collect(),
    );
    let mut hpa = existing_hpa(None, "orders");
    hpa.metadata.name = Some("keda-hpa-orders".into());
    assert!(matches!(
        existing(&hpa, &so, "apps/v1.Deployment"),
        Existing::Conflict(_)
    ));
}

fn with_scaling_active(status: &str, reason: &str, message: &str) -> HorizontalPodAutoscaler {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "keda-hpa-orders"},
        "status": {"desiredReplicas": 1, "conditions": [
            {"type": "AbleToScale", "status": "True"},
            {"type": "ScalingActive", "status": status, "reason": reason, "message": message}
        ]}
    }))
    .unwrap()
}

#[rstest::rstest]
#[case::active("True", "ValidMetricFound", "ok", Some(("True", "HPAActive", "")))]
#[case::disabled_at_zero("False", "ScalingDisabled", "scaling is disabled", Some(("True", "ScalingDisabled", "scaling is disabled")))]
#[case::metrics_missing("False", "FailedGetExternalMetric", "unable to get metrics", Some(("False", "HPAMetricsUnavailable", "FailedGetExternalMetric: unable to get metrics")))]
#[case::reason_only("False", "FailedGetExternalMetric", "", Some(("False", "HPAMetricsUnavailable", "FailedGetExternalMetric")))]
fn hpa_active_mirrors_scaling_active(
    #[case] status: &str,
    #[case] reason: &str,
    #[case] message: &str,
    #[case] expected: Option<(&str, &str, &str)>,
) {
    let got = hpa_active(&with_scaling_active(status, reason, message));
    assert_eq!(got.as_ref().map(|(s, r, m)| (*s, *r, m.as_str())), expected);
}

#[test]
fn hpa_active_is_unknown_before_the_hpa_reports() {
    let hpa: HorizontalPodAutoscaler =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "h"}})).unwrap();
    assert_eq!(hpa_active(&hpa), None);
}
