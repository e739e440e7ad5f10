use std::collections::BTreeMap;

use rstest::rstest;

use super::*;
use crate::PodIdentity;

const CONN: &str =
    "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=n;SharedAccessKey=hunter2";

fn map(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
    kv.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn cfg(
    index: usize,
    meta: &[(&str, &str)],
    auth: &[(&str, &str)],
    provider: Option<&str>,
) -> ScalerConfig {
    ScalerConfig {
        trigger_index: index,
        trigger_type: TYPE.into(),
        metadata: map(meta),
        auth_params: map(auth),
        pod_identity: provider.map(|p| PodIdentity {
            provider: p.into(),
            ..PodIdentity::default()
        }),
        ..ScalerConfig::default()
    }
}

fn with_conn(index: usize, meta: &[(&str, &str)]) -> ScalerConfig {
    cfg(index, meta, &[("connection", CONN)], None)
}

#[rstest]
#[case::queue(0, &[("queueName", "orders")], "s0-azure-servicebus-orders", 5, 0)]
#[case::index(4, &[("queueName", "orders")], "s4-azure-servicebus-orders", 5, 0)]
#[case::subscription(1, &[("topicName", "t.1"), ("subscriptionName", "s")], "s1-azure-servicebus-t-1", 5, 0)]
#[case::queue_regex(2, &[("queueName", "orders-.*"), ("useRegex", "true")], "s2-azure-servicebus-queue-regex", 5, 0)]
#[case::topic_regex(0, &[("topicName", "t"), ("subscriptionName", "s.*"), ("useRegex", "true")], "s0-azure-servicebus-topic-regex", 5, 0)]
#[case::counts(0, &[("queueName", "q"), ("messageCount", "50"), ("activationMessageCount", "3")], "s0-azure-servicebus-q", 50, 3)]
fn parse_valid_names_targets_activation(
    #[case] index: usize,
    #[case] meta: &[(&str, &str)],
    #[case] name: &str,
    #[case] target: i64,
    #[case] activation: i64,
) {
    let t = parse(&with_conn(index, meta)).expect("valid");
    assert_eq!(t.metric_name, name);
    assert_eq!(
        (t.message_count, t.activation_message_count),
        (target, activation)
    );
    let spec = t.metric_spec();
    assert_eq!(
        (spec.target, spec.target_is_integer, spec.metric_type),
        (target as f64, true, MetricType::AverageValue)
    );
}

#[rstest]
#[case::default_sum(&[], Operation::Sum)]
#[case::max(&[("operation", "max")], Operation::Max)]
#[case::avg(&[("operation", "avg")], Operation::Avg)]
fn parse_operation(#[case] extra: &[(&str, &str)], #[case] want: Operation) {
    let mut meta = vec![("queueName", "q")];
    meta.extend_from_slice(extra);
    assert_eq!(parse(&with_conn(0, &meta)).unwrap().operation, want);
}

#[rstest]
#[case::sum(Operation::Sum, &[3, 4, 5], 12)]
#[case::max(Operation::Max, &[3, 9, 5], 9)]
#[case::avg_truncates(Operation::Avg, &[3, 4], 3)]
#[case::avg_empty(Operation::Avg, &[], 0)]
#[case::max_empty(Operation::Max, &[], 0)]
#[case::sum_empty(Operation::Sum, &[], 0)]
fn operation_combines_counts(#[case] op: Operation, #[case] counts: &[i64], #[case] want: i64) {
    assert_eq!(op.apply(counts), want);
}

#[test]
fn regex_matches_whole_names_only() {
    let t = parse(&with_conn(
        0,
        &[("queueName", "orders-[0-9]+"), ("useRegex", "true")],
    ))
    .unwrap();
    let Entity::Queue {
        pattern: Some(re), ..
    } = t.entity
    else {
        panic!("regex queue")
    };
    assert!(re.is_match("orders-12"));
    assert!(!re.is_match("xorders-12") && !re.is_match("orders-12x"));
    let t = parse(&with_conn(
        0,
        &[("queueName", "a|ab"), ("useRegex", "true")],
    ))
    .unwrap();
    let Entity::Queue {
        pattern: Some(re), ..
    } = t.entity
    else {
        panic!("regex queue")
    };
    // Go's leftmost-longest match of "a|ab" on "ab" is the whole name.
    assert!(re.is_match("ab"));
}

#[test]
fn connection_comes_from_auth_or_env_never_metadata() {
    let t = parse(&cfg(
        0,
        &[("queueName", "q"), ("connectionFromEnv", "SB")],
        &[],
        None,
    ));
    assert!(
        t.unwrap_err()
            .to_string()
            .contains("no connection setting given")
    );
    let mut c = cfg(
        0,
        &[("queueName", "q"), ("connectionFromEnv", "SB")],
        &[],
        None,
    );
    c.resolved_env = map(&[("SB", CONN)]);
    let Credentials::Connection(cs) = parse(&c).unwrap().credentials else {
        panic!("connection")
    };
    assert_eq!(cs.fqdn, "ns.servicebus.windows.net");
    let e = parse(&cfg(
        0,
        &[("queueName", "q"), ("connection", CONN)],
        &[],
        None,
    ))
    .unwrap_err();
    assert!(e.to_string().contains("no connection setting given"));
}

#[rstest]
#[case::public(&[], "servicebus.windows.net")]
#[case::china_any_case(&[("cloud", "azurechinacloud")], "servicebus.chinacloudapi.cn")]
#[case::usgov(&[("cloud", "AzureUSGovernmentCloud")], "servicebus.usgovcloudapi.net")]
#[case::german(&[("cloud", "AzureGermanCloud")], "servicebus.cloudapi.de")]
fn workload_identity_cloud_suffixes(#[case] extra: &[(&str, &str)], #[case] suffix: &str) {
    let mut meta = vec![("queueName", "q"), ("namespace", "ns")];
    meta.extend_from_slice(extra);
    let t = parse(&cfg(0, &meta, &[], Some("azure-workload"))).unwrap();
    let Credentials::Workload {
        namespace,
        cloud: Cloud::Known(got),
    } = t.credentials
    else {
        panic!("known cloud")
    };
    assert_eq!((namespace.as_str(), got), ("ns", suffix));
}

#[test]
fn private_cloud_uses_endpoint_suffix_and_stack_defers_to_build() {
    let meta = [
        ("queueName", "q"),
        ("namespace", "ns"),
        ("cloud", "Private"),
        ("endpointSuffix", "sb.example"),
    ];
    let Credentials::Workload { cloud, .. } = parse(&cfg(0, &meta, &[], Some("azure-workload")))
        .unwrap()
        .credentials
    else {
        panic!("workload")
    };
    assert_eq!(cloud, Cloud::Private("sb.example".into()));
    let meta = [
        ("queueName", "q"),
        ("namespace", "ns"),
        ("cloud", "AzureStackCloud"),
    ];
    let Credentials::Workload { cloud, .. } = parse(&cfg(0, &meta, &[], Some("azure-workload")))
        .unwrap()
        .credentials
    else {
        panic!("workload")
    };
    assert_eq!(cloud, Cloud::Stack);
}

#[rstest]
#[case::queue_and_subscription(&[("queueName", "q"), ("subscriptionName", "s")], None, "subscription name provided with queue name")]
#[case::queue_and_topic(&[("queueName", "q"), ("topicName", "t")], None, "both topic and queue name metadata provided")]
#[case::topic_without_subscription(&[("topicName", "t")], None, "no subscription name provided with topic name")]
#[case::no_entity(&[], None, "no service bus entity type set")]
#[case::bad_queue_regex(&[("queueName", "("), ("useRegex", "true")], None, "queueName is not a valid regular expression")]
#[case::bad_subscription_regex(&[("topicName", "t"), ("subscriptionName", "[x"), ("useRegex", "true")], None, "subscriptionName is not a valid regular expression")]
#[case::bad_operation(&[("queueName", "q"), ("operation", "median")], None, "must be one of [sum max avg]")]
#[case::float_count(&[("queueName", "q"), ("messageCount", "5.5")], None, "parameter \"messageCount\" value \"5.5\"")]
#[case::bad_activation(&[("queueName", "q"), ("activationMessageCount", "x")], None, "activationMessageCount")]
#[case::bad_use_regex(&[("queueName", "q"), ("useRegex", "maybe")], None, "useRegex")]
#[case::no_namespace(&[("queueName", "q")], Some("azure-workload"), "namespace are required when using pod identity")]
#[case::bad_cloud(&[("queueName", "q"), ("namespace", "n"), ("cloud", "Mars")], Some("azure-workload"), "invalid cloud environment Mars")]
#[case::private_without_suffix(&[("queueName", "q"), ("namespace", "n"), ("cloud", "private")], Some("azure-workload"), "endpointSuffix must be provided for Private cloud type")]
#[case::other_identity(&[("queueName", "q")], Some("aws"), "azure service bus doesn't support pod identity aws")]
#[case::explicit_none_needs_connection(&[("queueName", "q")], Some("none"), "no connection setting given")]
fn parse_invalid_names_the_problem(
    #[case] meta: &[(&str, &str)],
    #[case] provider: Option<&str>,
    #[case] msg: &str,
) {
    let auth: &[(&str, &str)] = if provider.is_none() {
        &[("connection", CONN)]
    } else {
        &[]
    };
    let e = parse(&cfg(0, meta, auth, provider)).expect_err("invalid");
    assert!(e.is_config(), "{e}");
    assert!(e.to_string().contains(msg), "{e} does not contain {msg}");
}

#[test]
fn bad_connection_string_is_reported_without_its_value() {
    let e = parse(&cfg(
        0,
        &[("queueName", "q")],
        &[("connection", "Endpoint=http://x/;SharedAccessKey=hunter2")],
        None,
    ))
    .unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("not a valid Service Bus connection string"),
        "{text}"
    );
    assert!(!text.contains("hunter2"));
}

#[test]
fn debug_output_hides_the_key() {
    let t = parse(&with_conn(0, &[("queueName", "q")])).unwrap();
    assert!(!format!("{t:?}").contains("hunter2"));
}

#[test]
fn empty_identity_id_is_rejected_for_workload_identity() {
    let mut c = cfg(
        0,
        &[("queueName", "q"), ("namespace", "n")],
        &[],
        Some("azure-workload"),
    );
    if let Some(pi) = c.pod_identity.as_mut() {
        pi.identity_id = Some(String::new());
    }
    assert!(parse(&c).unwrap_err().to_string().contains("identityId"));
}

#[rstest]
#[case::value(Some(MetricType::Value), Ok(MetricType::Value))]
#[case::default_average(None, Ok(MetricType::AverageValue))]
#[case::utilization(
    Some(MetricType::Utilization),
    Err("'Utilization' metric type is unsupported")
)]
fn metric_type_is_external_only(
    #[case] given: Option<MetricType>,
    #[case] want: Result<MetricType, &str>,
) {
    let mut c = with_conn(0, &[("queueName", "q")]);
    c.metric_type = given;
    match (parse(&c), want) {
        (Ok(t), Ok(w)) => assert_eq!(t.metric_spec().metric_type, w),
        (Err(e), Err(msg)) => assert!(e.to_string().contains(msg), "{e}"),
        (got, w) => panic!("got {got:?}, want {w:?}"),
    }
}
