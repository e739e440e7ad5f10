//! No metadata makes a scaler's parser panic, and no auth param or env value — which may be a
//! secret — ever appears in an error message, whatever the input.

use std::collections::BTreeMap;

use proptest::prelude::*;
use tidescale_scalers::{MetricType, ScalerConfig, parse_only};

/// Keys KEDA users write for the four scalers, plus a few that exist for none.
const KEYS: &[&str] = &[
    "host",
    "queueName",
    "mode",
    "value",
    "activationValue",
    "queueLength",
    "protocol",
    "vhostName",
    "useRegex",
    "excludeUnacknowledged",
    "pageSize",
    "operation",
    "timeout",
    "unsafeSsl",
    "username",
    "password",
    "tls",
    "ca",
    "cert",
    "key",
    "keyPassword",
    "bootstrapServers",
    "consumerGroup",
    "topic",
    "lagThreshold",
    "activationLagThreshold",
    "offsetResetPolicy",
    "allowIdleConsumers",
    "excludePersistentLag",
    "scaleToZeroOnInvalidOffset",
    "limitToPartitionsWithLag",
    "ensureEvenDistributionOfPartitions",
    "partitionLimitation",
    "sasl",
    "version",
    "serverAddress",
    "query",
    "threshold",
    "activationThreshold",
    "namespace",
    "customHeaders",
    "queryParameters",
    "ignoreNullValues",
    "authModes",
    "bearerToken",
    "connection",
    "topicName",
    "subscriptionName",
    "messageCount",
    "activationMessageCount",
    "cloud",
    "endpointSuffix",
    "hostFromEnv",
    "connectionFromEnv",
    "bootstrapServersFromEnv",
    "awsRegion",
    "identityOwner",
    "awsAccessKeyID",
    "awsSecretAccessKey",
    "awsSessionToken",
    "awsRoleArn",
    "azureManagedPrometheusResourceURL",
    "workloadIdentityResource",
    "nonsense",
];

/// Values that stress parsers: numbers at the edges, odd URLs, lists, maps, unicode.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("  ".to_owned()),
        Just("-1".to_owned()),
        Just("1e400".to_owned()),
        Just("NaN".to_owned()),
        Just("9223372036854775808".to_owned()),
        Just("true".to_owned()),
        Just("amqp://u:p@h:5672/%2f".to_owned()),
        Just("http://[::1".to_owned()),
        Just("a=b,c".to_owned()),
        Just("1-3,5,x-y".to_owned()),
        Just("QueueLength".to_owned()),
        Just("MessageRate".to_owned()),
        Just("(".to_owned()),
        "[ -~]{0,24}",
        "\\PC{0,8}",
    ]
}

fn map(max: usize) -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map(
        prop::sample::select(KEYS).prop_map(str::to_owned),
        value(),
        0..max,
    )
}

fn secrets(max: usize) -> impl Strategy<Value = BTreeMap<String, String>> {
    // Every auth value carries a marker that must never reach a message.
    let keyed = (prop::sample::select(KEYS), "[a-zA-Z0-9:/@.]{0,12}");
    prop::collection::btree_map(
        keyed.prop_map(|(k, v)| (k.to_owned(), format!("SECRET-{v}"))),
        Just(()),
        0..max,
    )
    .prop_map(|m| m.into_keys().collect())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn parsers_never_panic_nor_leak_secrets(
        trigger_type in prop::sample::select(&["rabbitmq", "kafka", "azure-servicebus", "prometheus"][..]),
        metadata in map(10),
        auth_params in secrets(5),
        env_value in "[ -~]{0,16}",
        metric_type in prop::option::of(prop::sample::select(&[MetricType::AverageValue, MetricType::Value, MetricType::Utilization][..])),
        index in 0usize..20,
        provider in prop::option::of(prop::sample::select(&["none", "azure-workload", "gcp", "aws", "aws-eks", ""][..])),
    ) {
        let resolved_env = BTreeMap::from([("ENV_VAR".to_owned(), format!("SECRET-{env_value}"))]);
        let mut metadata = metadata;
        metadata.insert("hostFromEnv".to_owned(), "ENV_VAR".to_owned());
        let cfg = ScalerConfig {
            trigger_type: trigger_type.to_owned(),
            trigger_index: index,
            metadata,
            auth_params,
            resolved_env,
            metric_type,
            pod_identity: provider.map(|p| tidescale_scalers::PodIdentity {
                provider: p.to_owned(),
                ..Default::default()
            }),
            ..ScalerConfig::default()
        };
        match parse_only(&cfg) {
            Ok(specs) => {
                for spec in specs {
                    prop_assert!(spec.metric_name.starts_with(&format!("s{index}-")), "{}", spec.metric_name);
                }
            }
            Err(e) => {
                let message = e.to_string();
                prop_assert!(!message.contains("SECRET-"), "a secret leaked: {message}");
                prop_assert!(!message.is_empty());
            }
        }
    }
}
