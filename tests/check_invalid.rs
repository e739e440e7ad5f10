//! `tidescale check` rejects each invalid document with the path and message a user needs.
//! One row per rule (schema, KEDA webhook rules, input shape), each asserting the exact path
//! and the start of the message.

use rstest::rstest;
use tidescale::check::{NoTriggerValidation, check_text};

/// A valid ScaledObject; each case replaces `SPEC` with its own spec lines.
fn scaled_object(spec: &str) -> String {
    format!(
        "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata:\n  name: orders\n  namespace: shop\nspec:\n{spec}"
    )
}

const TARGET: &str = "  scaleTargetRef:\n    name: orders\n";
const TRIGGER: &str = "  triggers:\n    - type: rabbitmq\n      metadata:\n        queueName: q\n";

fn so(extra: &str) -> String {
    scaled_object(&format!("{TARGET}{TRIGGER}{extra}"))
}

fn problems(text: &str) -> Vec<(String, String)> {
    let reports = check_text("case.yaml", text, &NoTriggerValidation).expect("readable input");
    reports
        .iter()
        .flat_map(|r| {
            r.problems()
                .iter()
                .map(|p| (p.path.clone(), p.message.clone()))
        })
        .collect()
}

#[rstest]
#[case::missing_scale_target_name(scaled_object(&format!("  scaleTargetRef: {{}}\n{TRIGGER}")),
    ".spec.scaleTargetRef.name", "Required value")]
#[case::empty_scale_target_name(scaled_object(&format!("  scaleTargetRef:\n    name: \"\"\n{TRIGGER}")),
    ".spec.scaleTargetRef.name", "Invalid value: \"\": spec.scaleTargetRef.name in body should be at least 1 chars long")]
#[case::missing_scale_target_ref(scaled_object(TRIGGER), ".spec.scaleTargetRef", "Required value")]
#[case::empty_triggers(scaled_object(&format!("{TARGET}  triggers: []\n")),
    ".spec.triggers", "Invalid value: 0: spec.triggers in body should have at least 1 items")]
#[case::missing_triggers(scaled_object(TARGET), ".spec.triggers", "Required value")]
#[case::missing_spec("apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata:\n  name: x\n".to_owned(),
    ".spec", "Required value")]
#[case::trigger_without_type(scaled_object(&format!("{TARGET}  triggers:\n    - metadata: {{}}\n")),
    ".spec.triggers[0].type", "Required value")]
#[case::trigger_without_metadata(scaled_object(&format!("{TARGET}  triggers:\n    - type: cron\n")),
    ".spec.triggers[0].metadata", "Required value")]
#[case::negative_min(
    so("  minReplicaCount: -1\n"),
    ".spec.minReplicaCount",
    "Invalid value: -1: spec.minReplicaCount in body should be greater than or equal to 0"
)]
#[case::zero_max(
    so("  maxReplicaCount: 0\n"),
    ".spec.maxReplicaCount",
    "Invalid value: 0: spec.maxReplicaCount in body should be greater than or equal to 1"
)]
#[case::zero_polling_interval(
    so("  pollingInterval: 0\n"),
    ".spec.pollingInterval",
    "Invalid value: 0: spec.pollingInterval in body should be greater than or equal to 1"
)]
#[case::negative_cooldown(
    so("  cooldownPeriod: -5\n"),
    ".spec.cooldownPeriod",
    "Invalid value: -5: spec.cooldownPeriod in body should be greater than or equal to 0"
)]
#[case::negative_initial_cooldown(
    so("  initialCooldownPeriod: -1\n"),
    ".spec.initialCooldownPeriod",
    "Invalid value: -1"
)]
#[case::negative_idle(
    so("  minReplicaCount: 2\n  idleReplicaCount: -1\n"),
    ".spec.idleReplicaCount",
    "Invalid value: -1"
)]
#[case::string_polling_interval(
    so("  pollingInterval: \"30\"\n"),
    ".spec.pollingInterval",
    "Invalid value: \"string\": spec.pollingInterval in body must be of type integer: \"string\""
)]
#[case::float_replicas(
    so("  maxReplicaCount: 2.5\n"),
    ".spec.maxReplicaCount",
    "Invalid value: \"number\": spec.maxReplicaCount in body must be of type integer"
)]
#[case::metadata_value_not_string(scaled_object(&format!("{TARGET}  triggers:\n    - type: rabbitmq\n      metadata:\n        value: 20\n")),
    ".spec.triggers[0].metadata[value]", "Invalid value: \"integer\"")]
#[case::min_above_max(
    so("  minReplicaCount: 5\n  maxReplicaCount: 3\n"),
    ".spec.minReplicaCount",
    "MinReplicaCount=5 must not be greater than MaxReplicaCount=3"
)]
#[case::min_above_default_max(
    so("  minReplicaCount: 101\n"),
    ".spec.minReplicaCount",
    "MinReplicaCount=101 must not be greater than MaxReplicaCount=100"
)]
#[case::idle_not_below_min(
    so("  minReplicaCount: 1\n  idleReplicaCount: 1\n"),
    ".spec.idleReplicaCount",
    "IdleReplicaCount=1 must be less than MinReplicaCount=1"
)]
#[case::idle_with_default_min(
    so("  idleReplicaCount: 0\n"),
    ".spec.idleReplicaCount",
    "IdleReplicaCount=0 must be less than MinReplicaCount=0"
)]
#[case::unknown_fallback_behavior(
    so("  fallback:\n    failureThreshold: 3\n    replicas: 2\n    behavior: sometimes\n"),
    ".spec.fallback.behavior",
    "Unsupported value: \"sometimes\": supported values: \"static\""
)]
#[case::negative_fallback_replicas(
    so("  fallback:\n    failureThreshold: 3\n    replicas: -2\n"),
    ".spec.fallback.replicas",
    "Invalid value: -2"
)]
#[case::fallback_missing_threshold(
    so("  fallback:\n    replicas: 2\n"),
    ".spec.fallback.failureThreshold",
    "Required value"
)]
#[case::fallback_modifiers_without_formula(
    so("  fallback:\n    failureThreshold: 3\n    replicas: 2\n    behavior: scalingModifiers\n"),
    ".spec.fallback.behavior",
    "behavior \"scalingModifiers\" requires spec.advanced.scalingModifiers.formula"
)]
#[case::fallback_with_only_cpu(scaled_object(&format!("{TARGET}  minReplicaCount: 1\n  fallback:\n    failureThreshold: 3\n    replicas: 2\n  triggers:\n    - type: cpu\n      metricType: Utilization\n      metadata:\n        value: \"50\"\n")),
    ".spec.fallback", "fallback needs at least one trigger that is not cpu or memory")]
#[case::duplicate_trigger_names(scaled_object(&format!("{TARGET}  triggers:\n    - type: rabbitmq\n      name: a\n      metadata: {{}}\n    - type: kafka\n      name: a\n      metadata: {{}}\n")),
    ".spec.triggers[1].name", "triggerName \"a\" is defined multiple times, but it must be unique")]
#[case::cached_metrics_on_cron(scaled_object(&format!("{TARGET}  triggers:\n    - type: cron\n      useCachedMetrics: true\n      metadata: {{}}\n")),
    ".spec.triggers[0].useCachedMetrics", "property \"useCachedMetrics\" is not supported for \"cron\" scaler")]
#[case::cached_metrics_on_cpu(scaled_object(&format!("{TARGET}  minReplicaCount: 1\n  triggers:\n    - type: cpu\n      useCachedMetrics: true\n      metricType: Utilization\n      metadata: {{}}\n")),
    ".spec.triggers[0].useCachedMetrics", "property \"useCachedMetrics\" is not supported for \"cpu\" scaler")]
#[case::unknown_metric_type(scaled_object(&format!("{TARGET}  triggers:\n    - type: rabbitmq\n      metricType: Average\n      metadata: {{}}\n")),
    ".spec.triggers[0].metricType", "Unsupported value: \"Average\"")]
#[case::utilization_on_external(scaled_object(&format!("{TARGET}  triggers:\n    - type: rabbitmq\n      metricType: Utilization\n      metadata: {{}}\n")),
    ".spec.triggers[0].metricType", "'Utilization' metric type is unsupported for external metrics")]
#[case::cpu_only_with_min_zero(scaled_object(&format!("{TARGET}  triggers:\n    - type: cpu\n      metricType: Utilization\n      metadata:\n        value: \"60\"\n")),
    ".spec.minReplicaCount", "scaledobject has only cpu/memory triggers AND minReplica is 0")]
#[case::unknown_auth_kind(scaled_object(&format!("{TARGET}  triggers:\n    - type: rabbitmq\n      metadata: {{}}\n      authenticationRef:\n        name: a\n        kind: Secret\n")),
    ".spec.triggers[0].authenticationRef.kind", "Unsupported value: \"Secret\"")]
#[case::modifiers_without_target(
    so("  advanced:\n    scalingModifiers:\n      formula: \"a + 1\"\n"),
    ".spec.advanced.scalingModifiers.target",
    "Required value: a formula needs a target"
)]
#[case::modifiers_zero_target(scaled_object(&format!("{TARGET}  advanced:\n    scalingModifiers:\n      formula: \"a\"\n      target: \"0\"\n  triggers:\n    - type: rabbitmq\n      name: a\n      metadata: {{}}\n")),
    ".spec.advanced.scalingModifiers.target", "Invalid value: \"0\": target must be greater than 0")]
#[case::modifiers_bad_target(scaled_object(&format!("{TARGET}  advanced:\n    scalingModifiers:\n      formula: \"a\"\n      target: ten\n  triggers:\n    - type: rabbitmq\n      name: a\n      metadata: {{}}\n")),
    ".spec.advanced.scalingModifiers.target", "Invalid value: \"ten\": must be a number")]
#[case::modifiers_formula_syntax(scaled_object(&format!("{TARGET}  advanced:\n    scalingModifiers:\n      formula: \"a +\"\n      target: \"5\"\n  triggers:\n    - type: rabbitmq\n      name: a\n      metadata: {{}}\n")),
    ".spec.advanced.scalingModifiers.formula", "")]
#[case::modifiers_unknown_trigger(scaled_object(&format!("{TARGET}  advanced:\n    scalingModifiers:\n      formula: \"a + b\"\n      target: \"5\"\n  triggers:\n    - type: rabbitmq\n      name: a\n      metadata: {{}}\n")),
    ".spec.advanced.scalingModifiers.formula", "")]
#[case::modifiers_utilization(
    so(
        "  advanced:\n    scalingModifiers:\n      formula: \"1\"\n      target: \"5\"\n      metricType: Utilization\n"
    ),
    ".spec.advanced.scalingModifiers.metricType",
    "Unsupported value: \"Utilization\": supported values: \"AverageValue\", \"Value\""
)]
#[case::modifiers_target_without_formula(
    so("  advanced:\n    scalingModifiers:\n      target: \"5\"\n"),
    ".spec.advanced.scalingModifiers.formula",
    "Required value"
)]
#[case::name_too_long(so("").replace("name: orders\n  namespace", &format!("name: {}\n  namespace", "a".repeat(64))),
    ".metadata.name", "Invalid value: \"aaaa")]
#[case::derived_hpa_name_too_long(so("").replace("name: orders\n  namespace", &format!("name: {}\n  namespace", "a".repeat(55))),
    ".metadata.name", "the HPA name \"keda-hpa-aaaa")]
#[case::custom_hpa_name_too_long(so(&format!("  advanced:\n    horizontalPodAutoscalerConfig:\n      name: {}\n", "h".repeat(64))),
    ".spec.advanced.horizontalPodAutoscalerConfig.name", "the HPA name \"hhhh")]
#[case::unknown_spec_field(
    so("  pollingIntervall: 10\n"),
    ".spec.pollingIntervall",
    "unknown field, not declared in the ScaledObject schema"
)]
#[case::unknown_trigger_field(scaled_object(&format!("{TARGET}  triggers:\n    - type: rabbitmq\n      metdata: {{}}\n      metadata: {{}}\n")),
    ".spec.triggers[0].metdata", "unknown field")]
#[case::missing_name("apiVersion: keda.sh/v1alpha1\nkind: TriggerAuthentication\nmetadata: {}\nspec: {}\n".to_owned(),
    ".metadata.name", "Required value")]
#[case::bad_name(so("").replace("name: orders", "name: Orders_1"), ".metadata.name", "Invalid value: \"Orders_1\": a lowercase RFC 1123 subdomain")]
#[case::unknown_kind("apiVersion: keda.sh/v1alpha1\nkind: ScaledThing\nmetadata:\n  name: x\n".to_owned(),
    ".kind", "Unsupported value: \"ScaledThing\": supported values: \"ScaledObject\"")]
#[case::unknown_version(so("").replace("keda.sh/v1alpha1", "keda.sh/v1"), ".apiVersion", "Unsupported value: \"keda.sh/v1\"")]
#[case::missing_kind("apiVersion: keda.sh/v1alpha1\nmetadata:\n  name: x\n".to_owned(), ".kind", "Required value")]
#[case::not_an_object("- just\n- a list\n".to_owned(), ".", "expected a Kubernetes object, found a list")]
#[case::scaled_job_metric_type("apiVersion: keda.sh/v1alpha1\nkind: ScaledJob\nmetadata:\n  name: j\nspec:\n  jobTargetRef:\n    template: {}\n  triggers:\n    - type: rabbitmq\n      metricType: Value\n      metadata: {}\n".to_owned(),
    ".spec.triggers[0].metricType", "metricType is not supported for ScaledJob triggers")]
#[case::scaled_job_unknown_strategy("apiVersion: keda.sh/v1alpha1\nkind: ScaledJob\nmetadata:\n  name: j\nspec:\n  jobTargetRef:\n    template: {}\n  scalingStrategy:\n    strategy: greedy\n  triggers:\n    - type: rabbitmq\n      metadata: {}\n".to_owned(),
    ".spec.scalingStrategy.strategy", "Unsupported value: \"greedy\"")]
#[case::scaled_job_missing_template("apiVersion: keda.sh/v1alpha1\nkind: ScaledJob\nmetadata:\n  name: j\nspec:\n  triggers:\n    - type: rabbitmq\n      metadata: {}\n".to_owned(),
    ".spec.jobTargetRef", "Required value")]
#[case::auth_unknown_provider("apiVersion: keda.sh/v1alpha1\nkind: TriggerAuthentication\nmetadata:\n  name: a\nspec:\n  podIdentity:\n    provider: azure\n".to_owned(),
    ".spec.podIdentity.provider", "Unsupported value: \"azure\": supported values: \"none\", \"azure-workload\"")]
#[case::auth_empty_identity_id("apiVersion: keda.sh/v1alpha1\nkind: TriggerAuthentication\nmetadata:\n  name: a\nspec:\n  podIdentity:\n    provider: azure-workload\n    identityId: \"\"\n".to_owned(),
    ".spec.podIdentity.identityId", "Invalid value: \"\": identityId must not be empty when set")]
#[case::auth_secret_ref_without_key("apiVersion: keda.sh/v1alpha1\nkind: TriggerAuthentication\nmetadata:\n  name: a\nspec:\n  secretTargetRef:\n    - parameter: host\n      name: s\n".to_owned(),
    ".spec.secretTargetRef[0].key", "Required value")]
#[case::auth_file_path_namespaced("apiVersion: keda.sh/v1alpha1\nkind: TriggerAuthentication\nmetadata:\n  name: a\nspec:\n  filePath: creds.json\n".to_owned(),
    ".spec.filePath", "filePath is only supported by ClusterTriggerAuthentication")]
#[case::auth_external_id_without_role("apiVersion: keda.sh/v1alpha1\nkind: ClusterTriggerAuthentication\nmetadata:\n  name: a\nspec:\n  podIdentity:\n    provider: aws\n    externalID: x\n".to_owned(),
    ".spec.podIdentity.externalID", "externalID requires roleArn")]
#[case::auth_oauth2_bad_url("apiVersion: keda.sh/v1alpha1\nkind: TriggerAuthentication\nmetadata:\n  name: a\nspec:\n  oauth2:\n    clientId: c\n    tokenUrl: ftp://idp\n    clientSecret:\n      valueFrom:\n        secretKeyRef:\n          name: s\n          key: k\n".to_owned(),
    ".spec.oauth2.tokenUrl", "Invalid value: \"ftp://idp\": must be an http or https URL")]
#[case::cluster_auth_with_namespace("apiVersion: keda.sh/v1alpha1\nkind: ClusterTriggerAuthentication\nmetadata:\n  name: a\n  namespace: x\nspec: {}\n".to_owned(),
    ".metadata.namespace", "ClusterTriggerAuthentication is cluster-scoped")]
fn invalid_document_is_rejected_with_path_and_message(
    #[case] text: String,
    #[case] path: &str,
    #[case] message_start: &str,
) {
    let found = problems(&text);
    assert!(
        found
            .iter()
            .any(|(p, m)| p == path && m.starts_with(message_start)),
        "expected {path}: {message_start}…\nfound: {found:#?}\ninput:\n{text}"
    );
}

#[test]
fn formula_errors_say_what_is_wrong() {
    let text = scaled_object(&format!(
        "{TARGET}  advanced:\n    scalingModifiers:\n      formula: \"a + b\"\n      target: \"5\"\n  triggers:\n    - type: rabbitmq\n      name: a\n      metadata: {{}}\n"
    ));
    let found = problems(&text);
    let (_, message) = found
        .iter()
        .find(|(p, _)| p == ".spec.advanced.scalingModifiers.formula")
        .expect("a formula problem");
    assert!(
        message.contains('b'),
        "the message names the unknown trigger: {message}"
    );
}

#[test]
fn defaults_make_a_minimal_object_valid() {
    assert_eq!(problems(&so("")), Vec::<(String, String)>::new());
}

#[test]
fn malformed_yaml_is_unreadable_input_naming_the_line() {
    let err = check_text(
        "bad.yaml",
        "apiVersion: keda.sh/v1alpha1\nkind: [ScaledObject\n",
        &NoTriggerValidation,
    )
    .expect_err("a syntax error");
    let message = err.to_string();
    assert!(
        message.contains("invalid YAML") && message.contains("line"),
        "{message}"
    );
}

#[test]
fn other_api_groups_are_skipped_not_rejected() {
    let text = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: x\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n";
    let reports = check_text("mixed.yaml", text, &NoTriggerValidation).unwrap();
    assert_eq!(reports.len(), 2);
    assert!(
        reports
            .iter()
            .all(|r| matches!(r.verdict, tidescale::check::Verdict::Skipped { .. }))
    );
}
