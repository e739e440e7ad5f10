//! No input makes `check` panic: random text, random YAML-shaped documents, and random
//! mutations of a valid ScaledObject all produce a verdict or a read error.

use proptest::prelude::*;
use serde_json::{Value, json};
use tidescale::check::{NoTriggerValidation, check_document, check_text};

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "[a-zA-Z0-9 ./:-]{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    Just("spec".to_owned()),
                    Just("triggers".to_owned()),
                    Just("metadata".to_owned()),
                    Just("minReplicaCount".to_owned()),
                    Just("fallback".to_owned()),
                    Just("advanced".to_owned()),
                    Just("scaleTargetRef".to_owned()),
                    "[a-z]{1,8}",
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn keda_object() -> impl Strategy<Value = Value> {
    let kinds = prop_oneof![
        Just("ScaledObject"),
        Just("ScaledJob"),
        Just("TriggerAuthentication"),
        Just("ClusterTriggerAuthentication"),
    ];
    (kinds, json_value(), json_value()).prop_map(|(kind, spec, metadata)| {
        json!({"apiVersion": "keda.sh/v1alpha1", "kind": kind, "metadata": metadata, "spec": spec})
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_text_never_panics(text in "(?s).{0,400}") {
        let _ = check_text("fuzz.yaml", &text, &NoTriggerValidation);
    }

    #[test]
    fn random_yamlish_text_never_panics(text in "([a-zA-Z:{}\\[\\],\\- \n'\"&*<>!|#0-9.]){0,300}") {
        let _ = check_text("fuzz.yaml", &text, &NoTriggerValidation);
    }

    #[test]
    fn random_keda_objects_never_panic(doc in keda_object()) {
        let _ = check_document(doc, &NoTriggerValidation);
    }

    #[test]
    fn mutated_scaled_objects_never_panic(field in "[a-zA-Z]{1,20}", value in json_value(), at in 0usize..4) {
        let mut doc = json!({"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
            "metadata": {"name": "web"},
            "spec": {"scaleTargetRef": {"name": "web"}, "advanced": {"scalingModifiers": {}},
                "fallback": {"failureThreshold": 1, "replicas": 1},
                "triggers": [{"type": "rabbitmq", "metadata": {"queueName": "q"}}]}});
        let targets = ["/spec", "/spec/triggers/0", "/spec/advanced/scalingModifiers", "/spec/fallback"];
        if let Some(Value::Object(map)) = doc.pointer_mut(targets[at]) {
            map.insert(field, value);
        }
        let _ = check_document(doc, &NoTriggerValidation);
    }
}
