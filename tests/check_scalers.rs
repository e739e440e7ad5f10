//! `tidescale check` validates trigger metadata through the same scaler parser the operator
//! uses, resolving env and auth params from the objects the input holds.

mod common;

use tidescale::check::{Verdict, check_inputs};

const SECRET_VALUE: &str = "amqp://user:Sup3rS3cret@rabbit:5672/%2f";

fn check(text: &str) -> (Vec<String>, Vec<String>, Vec<Verdict>) {
    let (reports, unreadable) = check_inputs(&[("in.yaml".to_owned(), text.to_owned())], "keda");
    assert!(unreadable.is_empty(), "{unreadable:?}");
    let problems = reports.iter().flat_map(|r| r.problem_lines()).collect();
    let notes = reports
        .iter()
        .flat_map(|r| r.notes.iter().map(|n| n.to_string()))
        .collect();
    (
        problems,
        notes,
        reports.into_iter().map(|r| r.verdict).collect(),
    )
}

fn so(triggers: &str) -> String {
    format!(
        "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata:\n  name: orders\n  namespace: shop\nspec:\n  scaleTargetRef:\n    name: orders\n  triggers:\n{triggers}"
    )
}

const SECRET_AND_AUTH: &str = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: rabbit\n  namespace: shop\nstringData:\n  host: amqp://user:Sup3rS3cret@rabbit:5672/%2f\n---\napiVersion: keda.sh/v1alpha1\nkind: TriggerAuthentication\nmetadata:\n  name: rabbit-auth\n  namespace: shop\nspec:\n  secretTargetRef:\n    - parameter: host\n      name: rabbit\n      key: host\n---\n";

#[test]
fn invalid_metadata_names_the_key_and_source() {
    let cases = [
        (
            "    - type: rabbitmq\n      metadata:\n        host: amqp://h\n",
            "rabbitmq: missing required parameter \"queueName\"",
        ),
        (
            "    - type: kafka\n      metadata:\n        bootstrapServers: k:9092\n        consumerGroup: g\n        topic: t\n        lagThreshold: ten\n",
            "parameter \"lagThreshold\" value \"ten\" (from triggerMetadata) must be",
        ),
        (
            "    - type: prometheus\n      metadata:\n        query: up\n        threshold: \"1\"\n",
            "prometheus: missing required parameter \"serverAddress\"",
        ),
        (
            "    - type: rabbitmq\n      metadata:\n        host: amqp://h\n        queueName: q\n        mode: Bananas\n        value: \"1\"\n",
            "mode",
        ),
    ];
    for (trigger, expected) in cases {
        let (problems, _, _) = check(&so(trigger));
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("in.yaml:1: .spec.triggers[0].metadata: ")
                    && p.contains(expected)),
            "expected {expected:?} in {problems:#?}"
        );
    }
}

#[test]
fn unknown_trigger_types_are_reported_on_the_type() {
    let (problems, _, _) = check(&so("    - type: rabbit-mq\n      metadata: {}\n"));
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0]
            .starts_with("in.yaml:1: .spec.triggers[0].type: unknown trigger type \"rabbit-mq\""),
        "{}",
        problems[0]
    );
    assert!(
        problems[0].contains("rabbitmq"),
        "the known types are listed: {}",
        problems[0]
    );
}

#[test]
fn auth_params_resolve_from_secrets_in_the_input() {
    let text = format!(
        "{SECRET_AND_AUTH}{}",
        so(
            "    - type: rabbitmq\n      metadata:\n        queueName: orders\n        mode: QueueLength\n        value: \"20\"\n      authenticationRef:\n        name: rabbit-auth\n"
        )
    );
    let (problems, notes, verdicts) = check(&text);
    assert!(
        problems.is_empty() && notes.is_empty(),
        "{problems:?} {notes:?}"
    );
    let Verdict::Valid { metrics, .. } = &verdicts[2] else {
        panic!("{:?}", verdicts[2])
    };
    assert_eq!(metrics.len(), 1);
    assert_eq!(metrics[0].metric_name, "s0-rabbitmq-orders");
    assert_eq!(metrics[0].target, "20");
    assert_eq!(metrics[0].metric_type, "AverageValue");
}

#[test]
fn secret_values_never_appear_in_problems() {
    // The Secret holds a host the scaler rejects: the message names the key, not the value.
    let text = format!(
        "{}{}",
        SECRET_AND_AUTH.replace(SECRET_VALUE, "Sup3rS3cret-not-a-url"),
        so(
            "    - type: rabbitmq\n      metadata:\n        queueName: orders\n        mode: MessageRate\n        value: \"5\"\n      authenticationRef:\n        name: rabbit-auth\n"
        )
    );
    let output = common::run_tidescale(&["check", "--output", "json", "-"], &text);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.status.code(), Some(1), "{all}");
    assert!(!all.contains("Sup3rS3cret"), "a secret leaked: {all}");
}

#[test]
fn from_env_keys_resolve_from_the_scale_target() {
    let deployment = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: orders\n  namespace: shop\nspec:\n  selector:\n    matchLabels: {app: orders}\n  template:\n    metadata:\n      labels: {app: orders}\n    spec:\n      containers:\n        - name: worker\n          image: worker:1\n          env:\n            - name: AMQP_URL\n              value: amqp://guest:guest@rabbit:5672/%2f\n---\n";
    let trigger = "    - type: rabbitmq\n      metadata:\n        queueName: orders\n        hostFromEnv: AMQP_URL\n";
    let (problems, notes, _) = check(&format!("{deployment}{}", so(trigger)));
    assert!(
        problems.is_empty() && notes.is_empty(),
        "{problems:?} {notes:?}"
    );
    let (problems, _, _) = check(&format!(
        "{deployment}{}",
        so(&trigger.replace("AMQP_URL", "MISSING_VAR"))
    ));
    assert!(
        problems
            .iter()
            .any(|p| p.contains("missing required parameter \"host\"")),
        "{problems:?}"
    );
}

#[test]
fn values_the_input_does_not_hold_are_noted_not_rejected() {
    let trigger = "    - type: rabbitmq\n      metadata:\n        queueName: orders\n      authenticationRef:\n        name: elsewhere\n";
    let (problems, notes, _) = check(&so(trigger));
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(notes.len(), 1);
    assert!(
        notes[0]
            .contains(".spec.triggers[0]: rabbitmq: not fully checked offline: the value of host"),
        "{}",
        notes[0]
    );
    let output = common::run_tidescale(&["check", "-"], &so(trigger));
    assert_eq!(output.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&output.stderr).contains("note: .spec.triggers[0]"));
}

#[test]
fn json_output_lists_what_the_hpa_will_query() {
    let text = so(
        "    - type: kafka\n      metadata:\n        bootstrapServers: k:9092\n        consumerGroup: g\n        topic: payments\n        lagThreshold: \"50\"\n    - type: prometheus\n      metricType: Value\n      metadata:\n        serverAddress: http://prom:9090\n        query: sum(rate(x[1m]))\n        threshold: \"1.5\"\n",
    );
    let output = common::run_tidescale(&["check", "--output", "json", "-"], &text);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let metrics = &report[0]["metrics"];
    assert_eq!(metrics[0]["metricName"], "s0-kafka-payments");
    assert_eq!(metrics[0]["target"], "50");
    assert_eq!(metrics[1]["metricName"], "s1-prometheus");
    assert_eq!(metrics[1]["target"], "1500m");
    assert_eq!(metrics[1]["metricType"], "Value");
    assert_eq!(metrics[0]["activationThreshold"], 0.0);
}
