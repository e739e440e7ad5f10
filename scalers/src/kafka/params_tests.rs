use std::collections::BTreeMap;

use rstest::rstest;
use secrecy::ExposeSecret;

use super::*;

fn map(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
    kv.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn cfg(index: usize, meta: &[(&str, &str)], auth: &[(&str, &str)]) -> ScalerConfig {
    let mut m = map(&[
        ("bootstrapServers", "b1:9092,b2:9092"),
        ("consumerGroup", "g"),
    ]);
    m.extend(map(meta));
    m.retain(|_, v| v != "<unset>");
    ScalerConfig {
        trigger_index: index,
        trigger_type: TYPE.into(),
        metadata: m,
        auth_params: map(auth),
        ..ScalerConfig::default()
    }
}

fn err(meta: &[(&str, &str)], auth: &[(&str, &str)]) -> String {
    parse(&cfg(0, meta, auth))
        .expect_err("expected a config error")
        .to_string()
}

#[rstest]
#[case::defaults(&[("topic", "orders")], 0, "s0-kafka-orders", 10, 0)]
#[case::index_in_name(&[("topic", "orders")], 3, "s3-kafka-orders", 10, 0)]
#[case::no_topic_uses_group(&[], 1, "s1-kafka-g-topics", 10, 0)]
#[case::normalized(&[("topic", "a.b:c/d")], 0, "s0-kafka-a-b-c-d", 10, 0)]
#[case::thresholds(&[("topic", "t"), ("lagThreshold", "50"), ("activationLagThreshold", "7")], 0, "s0-kafka-t", 50, 7)]
#[case::whitespace_trimmed(&[("topic", " t "), ("lagThreshold", " 5 ")], 0, "s0-kafka-t", 5, 0)]
fn parse_valid_names_and_thresholds(
    #[case] meta: &[(&str, &str)],
    #[case] index: usize,
    #[case] name: &str,
    #[case] threshold: i64,
    #[case] activation: i64,
) {
    let t = parse(&cfg(index, meta, &[])).expect("valid trigger");
    assert_eq!(t.metric_name, name);
    assert_eq!(t.rules.lag_threshold, threshold);
    assert_eq!(t.activation_lag_threshold, activation);
    let spec = t.metric_spec();
    assert_eq!(
        (
            spec.metric_name.as_str(),
            spec.target,
            spec.target_is_integer
        ),
        (name, threshold as f64, true)
    );
    assert_eq!(spec.metric_type, MetricType::AverageValue);
    assert_eq!(
        t.bootstrap_servers,
        vec!["b1:9092".to_owned(), "b2:9092".to_owned()]
    );
}

#[test]
fn parse_reads_every_flag_and_default() {
    let d = parse(&cfg(0, &[("topic", "t")], &[])).unwrap();
    assert_eq!(d.rules.offset_reset_policy, OffsetResetPolicy::Latest);
    assert!(!d.rules.allow_idle_consumers && !d.rules.exclude_persistent_lag);
    assert!(!d.rules.scale_to_zero_on_invalid_offset && !d.rules.limit_to_partitions_with_lag);
    assert!(!d.rules.ensure_even_distribution && d.full_metadata);
    assert_eq!(d.version, "1.0.0");
    assert!(!d.security.tls && !d.security.unsafe_ssl && matches!(d.security.sasl, Sasl::None));
    let meta = [
        ("topic", "t"),
        ("offsetResetPolicy", "earliest"),
        ("allowIdleConsumers", "true"),
        ("excludePersistentLag", "1"),
        ("scaleToZeroOnInvalidOffset", "T"),
        ("fullMetadata", "false"),
        ("version", "0.10.2.1"),
        ("unsafeSsl", "true"),
    ];
    let t = parse(&cfg(0, &meta, &[])).unwrap();
    assert_eq!(t.rules.offset_reset_policy, OffsetResetPolicy::Earliest);
    assert!(t.rules.allow_idle_consumers && t.rules.exclude_persistent_lag);
    assert!(t.rules.scale_to_zero_on_invalid_offset && !t.full_metadata && t.security.unsafe_ssl);
    assert_eq!(t.version, "0.10.2.1");
    let t = parse(&cfg(
        0,
        &[("topic", "t"), ("limitToPartitionsWithLag", "true")],
        &[],
    ))
    .unwrap();
    assert!(t.rules.limit_to_partitions_with_lag);
    let t = parse(&cfg(
        0,
        &[
            ("topic", "t"),
            ("ensureEvenDistributionOfPartitions", "true"),
        ],
        &[],
    ))
    .unwrap();
    assert!(t.rules.ensure_even_distribution);
}

#[test]
fn from_env_supplies_servers_group_and_topic() {
    let mut c = cfg(
        2,
        &[
            ("bootstrapServers", "<unset>"),
            ("consumerGroup", "<unset>"),
        ],
        &[],
    );
    c.metadata.extend(map(&[
        ("bootstrapServersFromEnv", "B"),
        ("consumerGroupFromEnv", "G"),
        ("topicFromEnv", "T"),
    ]));
    c.resolved_env = map(&[("B", "k:1"), ("G", "eg"), ("T", "et")]);
    let t = parse(&c).unwrap();
    assert_eq!(
        (t.bootstrap_servers.join(","), t.consumer_group.as_str()),
        ("k:1".into(), "eg")
    );
    assert_eq!(t.metric_name, "s2-kafka-et");
}

#[rstest]
#[case::single("3", &[(3, 3)], &[3], &[2, 4])]
#[case::list_and_ranges("1,2,10-20, 31", &[(1, 1), (2, 2), (10, 20), (31, 31)], &[1, 10, 20, 31], &[0, 9, 21, 30])]
#[case::spaces_in_range(" 4 - 6 ", &[(4, 6)], &[4, 5, 6], &[3, 7])]
fn partition_limitation_accepts_ints_and_ranges(
    #[case] raw: &str,
    #[case] ranges: &[(i32, i32)],
    #[case] allowed: &[i32],
    #[case] denied: &[i32],
) {
    let t = parse(&cfg(
        0,
        &[("topic", "t"), ("partitionLimitation", raw)],
        &[],
    ))
    .unwrap();
    assert_eq!(t.partition_limitation.0, ranges);
    assert!(allowed.iter().all(|p| t.partition_limitation.allows(*p)));
    assert!(denied.iter().all(|p| !t.partition_limitation.allows(*p)));
}

#[test]
fn partition_limitation_is_dropped_without_topic() {
    let t = parse(&cfg(0, &[("partitionLimitation", "not,valid")], &[])).unwrap();
    assert!(t.partition_limitation.is_empty());
    let t = parse(&cfg(
        0,
        &[("topic", "t"), ("partitionLimitation", "   ")],
        &[],
    ))
    .unwrap();
    assert!(t.partition_limitation.is_empty());
}

#[rstest]
#[case::missing_servers(&[("bootstrapServers", "<unset>")], &[], "missing required parameter \"bootstrapServers\"")]
#[case::missing_group(&[("consumerGroup", " ")], &[], "missing required parameter \"consumerGroup\"")]
#[case::zero_threshold(&[("lagThreshold", "0")], &[], "\"lagThreshold\" must be positive number")]
#[case::negative_threshold(&[("lagThreshold", "-3")], &[], "\"lagThreshold\" must be positive number")]
#[case::float_threshold(&[("lagThreshold", "1.5")], &[], "parameter \"lagThreshold\" value \"1.5\"")]
#[case::negative_activation(&[("activationLagThreshold", "-1")], &[], "\"activationLagThreshold\" must be non-negative")]
#[case::bad_policy(&[("offsetResetPolicy", "middle")], &[], "must be one of [latest earliest]")]
#[case::bad_bool(&[("allowIdleConsumers", "yes")], &[], "parameter \"allowIdleConsumers\"")]
#[case::bad_limitation(&[("topic", "t"), ("partitionLimitation", "1,x")], &[], "invalid partition limitation: x")]
#[case::bad_range(&[("topic", "t"), ("partitionLimitation", "1-2-3")], &[], "invalid partition limitation range")]
#[case::idle_and_limit(&[("topic", "t"), ("allowIdleConsumers", "true"), ("limitToPartitionsWithLag", "true")], &[], "allowIdleConsumers and limitToPartitionsWithLag cannot be set simultaneously")]
#[case::limit_without_topic(&[("limitToPartitionsWithLag", "true")], &[], "topic must be specified when using limitToPartitionsWithLag")]
#[case::limit_and_even(&[("topic", "t"), ("limitToPartitionsWithLag", "true"), ("ensureEvenDistributionOfPartitions", "true")], &[], "limitToPartitionsWithLag and ensureEvenDistributionOfPartitions cannot be set simultaneously")]
#[case::even_without_topic(&[("ensureEvenDistributionOfPartitions", "true")], &[], "topic must be specified when using ensureEvenDistributionOfPartitions")]
#[case::sparse_without_topic(&[("fullMetadata", "false")], &[], "topic must be specified when using fullMetadata=false")]
#[case::bad_version(&[("version", "1.0")], &[], "error parsing kafka version")]
#[case::bad_version_text(&[("version", "latest")], &[], "error parsing kafka version")]
#[case::bad_tls(&[("tls", "on")], &[], "must be one of [enable disable]")]
#[case::cert_without_key(&[("tls", "enable")], &[("cert", "C")], "key must be provided with cert")]
#[case::key_without_cert(&[], &[("tls", "enable"), ("key", "K")], "cert must be provided with key")]
#[case::bad_sasl(&[("sasl", "kerberos")], &[], "must be one of [none plaintext")]
#[case::plain_no_user(&[("sasl", "plaintext")], &[("password", "p")], "no username given")]
#[case::scram_no_password(&[("sasl", "scram_sha512")], &[("username", "u")], "no password given")]
#[case::oauth_no_endpoint(&[("sasl", "oauthbearer")], &[("username", "u"), ("password", "p")], "no oauth token endpoint uri given")]
#[case::oauth_bad_extension(&[("sasl", "oauthbearer")], &[("username", "u"), ("password", "p"), ("oauthTokenEndpointUri", "https://t"), ("oauthExtensions", "a=1,b")], "invalid OAuthBearer extension")]
#[case::msk_needs_tls(&[("sasl", "oauthbearer"), ("saslTokenProvider", "aws_msk_iam"), ("awsRegion", "eu-west-1")], &[], "TLS is required for MSK")]
#[case::msk_needs_region(&[("sasl", "oauthbearer"), ("saslTokenProvider", "aws_msk_iam"), ("tls", "enable")], &[], "no awsRegion given")]
#[case::bad_token_provider(&[("sasl", "oauthbearer"), ("saslTokenProvider", "jwt")], &[], "must be one of [bearer aws_msk_iam]")]
#[case::gssapi_both_secrets(&[("sasl", "gssapi")], &[("username", "u"), ("password", "p"), ("keytab", "k"), ("realm", "R"), ("kerberosConfig", "c")], "exactly one of 'password' or 'keytab'")]
#[case::gssapi_no_realm(&[("sasl", "gssapi")], &[("username", "u"), ("keytab", "k"), ("kerberosConfig", "c")], "no realm given")]
#[case::gssapi_no_krb5(&[("sasl", "gssapi")], &[("username", "u"), ("keytab", "k"), ("realm", "R")], "no Kerberos configuration file")]
#[case::utilization_rejected(&[], &[], "'Utilization' metric type is unsupported")]
fn parse_invalid_names_the_problem(
    #[case] meta: &[(&str, &str)],
    #[case] auth: &[(&str, &str)],
    #[case] msg: &str,
) {
    let mut c = cfg(0, meta, auth);
    if msg.contains("Utilization") {
        c.metric_type = Some(MetricType::Utilization);
    }
    let e = parse(&c).expect_err("expected a config error");
    assert!(e.is_config(), "{e}");
    assert!(e.to_string().contains(msg), "{e} does not contain {msg}");
}

#[test]
fn errors_are_joined_and_never_show_auth_values() {
    let e = err(
        &[
            ("lagThreshold", "0"),
            ("activationLagThreshold", "-1"),
            ("sasl", "plaintext"),
        ],
        &[("password", "hunter2")],
    );
    assert!(
        e.contains("lagThreshold")
            && e.contains("activationLagThreshold")
            && e.contains("no username given"),
        "{e}"
    );
    assert!(!e.contains("hunter2"));
}

#[rstest]
#[case::metadata_wins(&[("tls", "disable")], &[("tls", "enable")], false)]
#[case::auth_when_metadata_unset(&[], &[("tls", "enable")], true)]
fn tls_and_sasl_metadata_wins_over_auth(
    #[case] meta: &[(&str, &str)],
    #[case] auth: &[(&str, &str)],
    #[case] tls: bool,
) {
    assert_eq!(parse(&cfg(0, meta, auth)).unwrap().security.tls, tls);
}

#[rstest]
#[case::plain("plaintext", "PLAIN", "sasl_plaintext")]
#[case::scram256("scram_sha256", "SCRAM-SHA-256", "sasl_plaintext")]
#[case::scram512("scram_sha512", "SCRAM-SHA-512", "sasl_plaintext")]
fn sasl_password_maps_to_librdkafka(
    #[case] mode: &str,
    #[case] mechanism: &str,
    #[case] protocol: &str,
) {
    let t = parse(&cfg(
        0,
        &[("sasl", mode)],
        &[("username", "u"), ("password", "s3cret")],
    ))
    .unwrap();
    let key = t.security.client_key(&t.bootstrap_servers).unwrap();
    let props: BTreeMap<&str, String> = key
        .props
        .iter()
        .map(|(k, v)| (*k, v.expose_secret().to_owned()))
        .collect();
    assert_eq!(props["sasl.mechanism"], mechanism);
    assert_eq!(props["security.protocol"], protocol);
    assert_eq!(
        (
            props["sasl.username"].as_str(),
            props["sasl.password"].as_str()
        ),
        ("u", "s3cret")
    );
    assert!(
        !format!("{t:?}").contains("s3cret"),
        "Debug must not show secrets"
    );
}

#[test]
fn tls_and_oauth_map_to_librdkafka() {
    let auth = [
        ("tls", "enable"),
        ("ca", "CA"),
        ("cert", "CERT"),
        ("key", "KEY"),
        ("keyPassword", "KP"),
        ("sasl", "oauthbearer"),
        ("username", "id"),
        ("password", "sec"),
        ("oauthTokenEndpointUri", "https://idp/token"),
        ("scopes", "a, b"),
        ("oauthExtensions", "x=1,y=2"),
    ];
    let t = parse(&cfg(0, &[("unsafeSsl", "true")], &auth)).unwrap();
    let key = t.security.client_key(&t.bootstrap_servers).unwrap();
    let props: BTreeMap<&str, String> = key
        .props
        .iter()
        .map(|(k, v)| (*k, v.expose_secret().to_owned()))
        .collect();
    assert_eq!(props["security.protocol"], "sasl_ssl");
    assert_eq!(
        (
            props["ssl.ca.pem"].as_str(),
            props["ssl.key.password"].as_str()
        ),
        ("CA", "KP")
    );
    assert_eq!(props["enable.ssl.certificate.verification"], "false");
    assert_eq!(
        props["sasl.oauthbearer.token.endpoint.url"],
        "https://idp/token"
    );
    assert_eq!(props["sasl.oauthbearer.scope"], "a b");
    assert_eq!(props["sasl.oauthbearer.extensions"], "x=1,y=2");
}

#[rstest]
#[case::msk(&[("sasl", "oauthbearer"), ("saslTokenProvider", "aws_msk_iam"), ("tls", "enable"), ("awsRegion", "r")], &[], "aws_msk_iam")]
#[case::gssapi(&[("sasl", "gssapi")], &[("username", "u"), ("keytab", "k"), ("realm", "R"), ("kerberosConfig", "c")], "gssapi")]
fn unsupported_mechanisms_parse_but_refuse_a_client(
    #[case] meta: &[(&str, &str)],
    #[case] auth: &[(&str, &str)],
    #[case] what: &str,
) {
    let t = parse(&cfg(0, meta, auth)).expect("KEDA accepts this trigger");
    let e = t
        .security
        .client_key(&t.bootstrap_servers)
        .expect_err("no client for it");
    assert!(e.is_config() && e.to_string().contains(what), "{e}");
}
