use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use rstest::rstest;

use super::*;
use crate::prometheus::{self, Options};
use crate::{PodIdentity, ScalerConfig};

fn map(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
    kv.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn cfg(provider: &str, meta: &[(&str, &str)], auth: &[(&str, &str)]) -> ScalerConfig {
    let mut metadata = map(&[
        ("serverAddress", "http://p:9090"),
        ("query", "up"),
        ("threshold", "1"),
    ]);
    metadata.extend(map(meta));
    ScalerConfig {
        trigger_type: prometheus::TYPE.into(),
        metadata,
        auth_params: map(auth),
        pod_identity: (!provider.is_empty()).then(|| PodIdentity {
            provider: provider.into(),
            ..PodIdentity::default()
        }),
        timeout: Duration::from_secs(2),
        ..ScalerConfig::default()
    }
}

fn azure(scope: &str) -> Cloud {
    Cloud::Azure {
        scope: scope.into(),
    }
}

fn aws_static(id: &str, secret: &str) -> Cloud {
    Cloud::Aws {
        region: "eu-west-1".into(),
        credentials: AwsSource::Static(AwsCredentials {
            access_key_id: id.into(),
            secret_access_key: SecretString::from(secret),
            session_token: None,
        }),
    }
}

#[rstest]
#[case::plain("", &[], &[], Cloud::None)]
#[case::azure_default("azure-workload", &[], &[], azure("https://prometheus.monitor.azure.com/.default"))]
#[case::azure_us_gov("azure-workload", &[("cloud", "azureusgovernmentcloud")], &[], azure("https://prometheus.monitor.azure.us/.default"))]
#[case::azure_china("azure-workload", &[("cloud", "AzureChinaCloud")], &[], azure("https://prometheus.monitor.azure.cn/.default"))]
#[case::azure_private("azure-workload", &[("cloud", "Private"), ("azureManagedPrometheusResourceURL", "https://prom.example/.default")], &[], azure("https://prom.example/.default"))]
#[case::gcp("gcp", &[], &[], Cloud::Gcp)]
#[case::aws_static("", &[("awsRegion", "eu-west-1")], &[("awsAccessKeyID", "AKID"), ("awsSecretAccessKey", "s3cr3t")], aws_static("AKID", "s3cr3t"))]
#[case::aws_key_id_alias("", &[], &[("awsRegion", "eu-west-1"), ("awsAccessKeyId", "AKID"), ("awsSecretAccessKey", "s3cr3t")], aws_static("AKID", "s3cr3t"))]
#[case::aws_pod_identity("aws", &[("awsRegion", "eu-west-1")], &[], Cloud::Aws { region: "eu-west-1".into(), credentials: AwsSource::Operator })]
#[case::aws_identity_owner_operator("", &[("awsRegion", "eu-west-1"), ("identityOwner", "operator")], &[], Cloud::Aws { region: "eu-west-1".into(), credentials: AwsSource::Operator })]
#[case::aws_role_arn_on_operator("", &[("awsRegion", "eu-west-1")], &[("awsRoleArn", "arn:aws:iam::1:role/r")], Cloud::Aws { region: "eu-west-1".into(), credentials: AwsSource::AssumeRole { role_arn: "arn:aws:iam::1:role/r".into(), base: Box::new(AwsSource::Operator) } })]
#[case::aws_role_arn_on_keys("", &[("awsRegion", "eu-west-1")], &[("awsRoleArn", "arn:aws:iam::1:role/r"), ("awsAccessKeyID", "AKID"), ("awsSecretAccessKey", "s3cr3t")], Cloud::Aws { region: "eu-west-1".into(), credentials: AwsSource::AssumeRole { role_arn: "arn:aws:iam::1:role/r".into(), base: Box::new(AwsSource::Static(AwsCredentials { access_key_id: "AKID".into(), secret_access_key: SecretString::from("s3cr3t"), session_token: None })) } })]
#[case::aws_pod_identity_without_region("aws", &[], &[], Cloud::None)]
#[case::auth_modes_skip_cloud("", &[("awsRegion", "eu-west-1"), ("authModes", "bearer")], &[("bearerToken", "t")], Cloud::None)]
fn cloud_transport_is_chosen_from_identity_and_keys(
    #[case] provider: &str,
    #[case] meta: &[(&str, &str)],
    #[case] auth: &[(&str, &str)],
    #[case] expected: Cloud,
) {
    let trigger = prometheus::parse(&cfg(provider, meta, auth)).expect("valid");
    assert_eq!(trigger.cloud, expected);
}

#[rstest]
#[case::unknown_cloud("azure-workload", &[("cloud", "Mars")], &[], "parameter \"cloud\" value \"Mars\" must be one of [AzurePublicCloud")]
#[case::private_without_url("azure-workload", &[("cloud", "Private")], &[], "parameter \"azureManagedPrometheusResourceURL\" is required")]
#[case::aws_without_keys("", &[("awsRegion", "eu-west-1")], &[("awsAccessKeyID", "AKID")], "awsAccessKeyID and awsSecretAccessKey are required in authParams")]
#[case::aws_with_azure("azure-workload", &[("awsRegion", "eu-west-1")], &[], "awsRegion cannot be combined with podIdentity provider azure-workload")]
#[case::bad_identity_owner("", &[("identityOwner", "me")], &[], "parameter \"identityOwner\" value \"me\" (from triggerMetadata) must be one of [pod operator]")]
fn invalid_cloud_settings_name_the_key(
    #[case] provider: &str,
    #[case] meta: &[(&str, &str)],
    #[case] auth: &[(&str, &str)],
    #[case] message: &str,
) {
    let err = prometheus::parse(&cfg(provider, meta, auth))
        .expect_err("invalid")
        .to_string();
    assert!(err.contains(message), "{err}");
}

#[test]
fn aws_secrets_never_print() {
    let c = cfg(
        "",
        &[("awsRegion", "eu-west-1")],
        &[
            ("awsAccessKeyID", "AKID"),
            ("awsSecretAccessKey", "secret-key"),
            ("awsSessionToken", "secret-session"),
        ],
    );
    let text = format!("{:?}", prometheus::parse(&c).expect("valid"));
    assert!(!text.contains("secret-"), "{text}");
}

#[test]
fn operator_aws_credentials_come_from_static_env_first_then_irsa() {
    let tls = TlsSettings::default();
    let Credentials::Static(creds) = operator_aws(
        "eu-west-1",
        &map(&[
            ("AWS_ACCESS_KEY_ID", "AKID"),
            ("AWS_SECRET_ACCESS_KEY", "s"),
            ("AWS_SESSION_TOKEN", "t"),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", "/f"),
            ("AWS_ROLE_ARN", "arn:aws:iam::1:role/r"),
        ]),
        &tls,
    )
    .expect("static env") else {
        panic!("static keys win over web identity");
    };
    assert_eq!(creds.access_key_id, "AKID");
    assert!(creds.session_token.is_some());
    let irsa = operator_aws(
        "eu-west-1",
        &map(&[
            ("AWS_WEB_IDENTITY_TOKEN_FILE", "/f"),
            ("AWS_ROLE_ARN", "arn:aws:iam::1:role/r"),
        ]),
        &tls,
    )
    .expect("irsa");
    assert!(matches!(irsa, Credentials::Sts(_)), "{irsa:?}");
    let err = operator_aws(
        "eu-west-1",
        &map(&[("AWS_WEB_IDENTITY_TOKEN_FILE", "/f")]),
        &tls,
    )
    .unwrap_err();
    assert!(err.contains("AWS_ROLE_ARN is not"), "{err}");
    let err = operator_aws("eu-west-1", &BTreeMap::new(), &tls).unwrap_err();
    assert!(
        err.contains("AWS_ACCESS_KEY_ID") && err.contains("AWS_WEB_IDENTITY_TOKEN_FILE"),
        "{err}"
    );
}

/// What the fake cloud endpoints saw.
#[derive(Default)]
struct Seen {
    tokens: AtomicUsize,
    queries: AtomicUsize,
    auth: std::sync::Mutex<Vec<String>>,
}

const SAMPLE: &str = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"7"]}]}}"#;

/// A plain-HTTP server with a GCP metadata token endpoint and a Prometheus query endpoint
/// that records the `authorization` header and requires `Bearer gcp-token` unless `open`.
async fn gcp_and_prometheus(open: bool) -> (String, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let token = |State(seen): State<Arc<Seen>>, RawQuery(q): RawQuery, h: HeaderMap| async move {
        let flavor = h.get("metadata-flavor").and_then(|v| v.to_str().ok());
        let scope_ok = q.unwrap_or_default().contains("monitoring.read");
        if flavor != Some("Google") || !scope_ok {
            return (StatusCode::FORBIDDEN, String::new());
        }
        seen.tokens.fetch_add(1, Ordering::SeqCst);
        let body = r#"{"access_token":"gcp-token","expires_in":3599,"token_type":"Bearer"}"#;
        (StatusCode::OK, body.to_owned())
    };
    let query = move |State(seen): State<Arc<Seen>>, h: HeaderMap| async move {
        seen.queries.fetch_add(1, Ordering::SeqCst);
        let auth = h
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        seen.auth.lock().unwrap().push(auth.clone());
        if !open && auth != "Bearer gcp-token" {
            return (StatusCode::UNAUTHORIZED, String::new());
        }
        (StatusCode::OK, SAMPLE.to_owned())
    };
    let app = Router::new()
        .route(
            "/computeMetadata/v1/instance/service-accounts/default/token",
            get(token),
        )
        .route("/api/v1/query", get(query).post(query))
        .route("/unused", post(|| async { "" }))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr.to_string(), seen)
}

#[tokio::test]
async fn gcp_identity_sends_a_cached_metadata_token_shared_across_triggers() {
    let (addr, seen) = gcp_and_prometheus(false).await;
    let options = Options {
        env: Some(map(&[("GCE_METADATA_HOST", &addr)])),
        ..Options::default()
    };
    let c = cfg("gcp", &[("serverAddress", &format!("http://{addr}"))], &[]);
    let a = prometheus::build_with(&c, options.clone()).await.unwrap();
    let b = prometheus::build_with(&c, options).await.unwrap();
    for scaler in [&a, &b, &a, &b] {
        let got = scaler.metrics_and_activity("s0-prometheus").await.unwrap();
        assert_eq!(got.values, vec![7.0]);
    }
    assert_eq!(seen.queries.load(Ordering::SeqCst), 4);
    assert_eq!(
        seen.tokens.load(Ordering::SeqCst),
        1,
        "one token for two triggers and four polls"
    );
}

#[tokio::test]
async fn aws_region_signs_the_query_with_sigv4() {
    let (addr, seen) = gcp_and_prometheus(true).await;
    let c = cfg(
        "",
        &[
            ("serverAddress", &format!("http://{addr}")),
            ("awsRegion", "eu-west-1"),
        ],
        &[
            ("awsAccessKeyID", "AKIDTEST"),
            ("awsSecretAccessKey", "secret-key"),
            ("awsSessionToken", "session"),
        ],
    );
    let scaler = prometheus::build_with(&c, Options::default())
        .await
        .unwrap();
    let got = scaler.metrics_and_activity("s0-prometheus").await.unwrap();
    assert_eq!(got.values, vec![7.0]);
    let auth = seen.auth.lock().unwrap().pop().unwrap();
    assert!(
        auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDTEST/")
            && auth.contains("/eu-west-1/aps/aws4_request, ")
            && auth.contains("SignedHeaders=host;x-amz-date;x-amz-security-token, Signature="),
        "{auth}"
    );
}

#[tokio::test]
async fn unreachable_metadata_server_fails_the_poll_within_the_timeout() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent = listener.local_addr().unwrap().to_string();
    // Accept and never answer.
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let options = Options {
        env: Some(map(&[("GCE_METADATA_HOST", &silent)])),
        ..Options::default()
    };
    let c = cfg(
        "gcp",
        &[
            ("serverAddress", "http://127.0.0.1:9"),
            ("timeout", "300ms"),
        ],
        &[],
    );
    let scaler = prometheus::build_with(&c, options).await.unwrap();
    let started = Instant::now();
    let err = scaler
        .metrics_and_activity("s0-prometheus")
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(
        err.to_string().contains("gcp metadata token request"),
        "{err}"
    );
}
