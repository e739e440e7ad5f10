use std::collections::BTreeMap;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use rstest::rstest;

use super::http::{Page, aggregate, queues_path};
use super::*;

fn map(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
    kv.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn cfg(meta: &[(&str, &str)], auth: &[(&str, &str)]) -> ScalerConfig {
    ScalerConfig {
        trigger_type: TYPE.into(),
        trigger_index: 1,
        metadata: map(meta),
        auth_params: map(auth),
        timeout: Duration::from_secs(2),
        ..ScalerConfig::default()
    }
}

const AMQP: (&str, &str) = ("host", "amqp://u:p@h:5672/%2f");
const HTTP: (&str, &str) = ("host", "http://u:p@h:15672");
const Q: (&str, &str) = ("queueName", "q");

#[rstest]
#[case::defaults_to_queue_length_20(&[AMQP, Q], &[], Mode::QueueLength, 20.0, Protocol::Amqp)]
#[case::mode_and_value(&[HTTP, Q, ("mode", "MessageRate"), ("value", "2.5")], &[], Mode::MessageRate, 2.5, Protocol::Http)]
#[case::deprecated_queue_length(&[AMQP, Q, ("queueLength", "7")], &[], Mode::QueueLength, 7.0, Protocol::Amqp)]
#[case::value_zero_is_unset(&[AMQP, Q, ("value", "0")], &[], Mode::QueueLength, 20.0, Protocol::Amqp)]
#[case::host_from_auth(&[Q], &[HTTP], Mode::QueueLength, 20.0, Protocol::Http)]
#[case::explicit_http_protocol(&[("host", "h:1"), Q, ("protocol", "http")], &[], Mode::QueueLength, 20.0, Protocol::Http)]
#[case::protocol_from_auth(&[("host", "x://h"), Q], &[("protocol", "amqp")], Mode::QueueLength, 20.0, Protocol::Amqp)]
#[case::amqps(&[("host", "AMQPS://h"), Q], &[], Mode::QueueLength, 20.0, Protocol::Amqp)]
#[case::https_all_http_keys(
    &[("host", "https://h/sub/vh"), Q, ("mode", "QueueLength"), ("value", "5"), ("useRegex", "true"),
      ("excludeUnacknowledged", "true"), ("pageSize", "10"), ("operation", "max"), ("timeout", "1s"),
      ("unsafeSsl", "true"), ("vhostName", "other"), ("activationValue", "3")],
    &[("username", "a"), ("password", "b"), ("tls", "enable"), ("ca", "C"), ("cert", "C"), ("key", "K")],
    Mode::QueueLength, 5.0, Protocol::Http
)]
#[case::oauth_on_http(
    &[HTTP, Q],
    &[("oauthTokenURI", "http://t/token"), ("clientID", "c"), ("clientSecret", "s"), ("scopes", "a,b")],
    Mode::QueueLength, 20.0, Protocol::Http
)]
#[case::amqp_zero_timeout_is_fine(&[AMQP, Q, ("timeout", "0")], &[], Mode::QueueLength, 20.0, Protocol::Amqp)]
fn parse_valid(
    #[case] meta: &[(&str, &str)],
    #[case] auth: &[(&str, &str)],
    #[case] mode: Mode,
    #[case] value: f64,
    #[case] protocol: Protocol,
) {
    let t = parse(&cfg(meta, auth)).expect("valid");
    assert_eq!((t.mode, t.value, t.protocol), (mode, value, protocol));
}

#[rstest]
#[case::missing_host(&[Q], &[], "missing required parameter \"host\" in [triggerMetadata authParams resolvedEnv]")]
#[case::missing_queue(&[AMQP], &[], "missing required parameter \"queueName\" in [triggerMetadata]")]
#[case::bad_protocol(&[AMQP, Q, ("protocol", "mqtt")], &[], "the protocol has to be either `amqp`, `http`, or `auto`")]
#[case::bad_tls(&[AMQP, Q], &[("tls", "on")], "incorrect value for TLS given")]
#[case::cert_without_key(&[AMQP, Q], &[("cert", "c")], "both key and certificate must be provided")]
#[case::page_size_zero(&[AMQP, Q, ("pageSize", "0")], &[], "pageSize should be 1 or greater")]
#[case::page_size_not_int(&[AMQP, Q, ("pageSize", "1.5")], &[], "parameter \"pageSize\" value \"1.5\" (from triggerMetadata) must be an integer")]
#[case::user_without_password(&[AMQP, Q], &[("username", "u")], "username and password must be given together")]
#[case::unknown_scheme(&[("host", "redis://h"), Q], &[], "unknown host URL scheme")]
#[case::workload_identity_on_amqp(&[AMQP, Q], &[("workloadIdentityResource", "r")], "workload identity is not supported for the AMQP protocol")]
#[case::workload_identity_without_azure_pod_identity(&[HTTP, Q], &[("workloadIdentityResource", "api://rabbit")], "authParams \"workloadIdentityResource\" needs podIdentity provider azure-workload")]
#[case::oauth_with_workload_identity(&[HTTP, Q], &[("oauthTokenURI", "t"), ("clientID", "c"), ("clientSecret", "s"), ("workloadIdentityResource", "r")], "OAuth2 cannot be combined")]
#[case::oauth_incomplete(&[HTTP, Q], &[("clientID", "c")], "oauthTokenURI, clientID and clientSecret are all required")]
#[case::oauth_on_amqp(&[AMQP, Q], &[("oauthTokenURI", "t"), ("clientID", "c"), ("clientSecret", "s")], "OAuth2 is not supported for the AMQP protocol")]
#[case::oauth_with_basic(&[HTTP, Q], &[("oauthTokenURI", "t"), ("clientID", "c"), ("clientSecret", "s"), ("username", "u"), ("password", "p")], "OAuth2 cannot be combined")]
#[case::regex_on_amqp(&[AMQP, Q, ("useRegex", "true")], &[], "configure useRegex only with the http protocol")]
#[case::exclude_unacked_on_amqp(&[AMQP, Q, ("excludeUnacknowledged", "true")], &[], "excludeUnacknowledged=true only with the http protocol")]
#[case::queue_length_with_mode(&[AMQP, Q, ("queueLength", "5"), ("mode", "QueueLength")], &[], "queueLength is deprecated; use mode and value")]
#[case::value_without_mode(&[AMQP, Q, ("value", "5")], &[], "mode must be specified")]
#[case::mode_without_value(&[AMQP, Q, ("mode", "QueueLength")], &[], "value must be specified")]
#[case::unknown_mode(&[HTTP, Q, ("mode", "Bogus"), ("value", "1")], &[], "trigger mode Bogus must be one of QueueLength, MessageRate")]
#[case::rate_on_amqp(&[AMQP, Q, ("mode", "MessageRate"), ("value", "1")], &[], "must be HTTP to use trigger mode MessageRate")]
#[case::amqp_timeout(&[AMQP, Q, ("timeout", "5s")], &[], "AMQP protocol doesn't support custom timeouts")]
#[case::bad_bool(&[HTTP, Q, ("useRegex", "yes")], &[], "parameter \"useRegex\" value \"yes\" (from triggerMetadata) must be a boolean")]
#[case::bad_timeout(&[HTTP, Q, ("timeout", "-1s")], &[], "parameter \"timeout\" value \"-1s\" (from triggerMetadata) must be a non-negative duration")]
#[case::bad_value(&[HTTP, Q, ("mode", "QueueLength"), ("value", "ten")], &[], "parameter \"value\" value \"ten\" (from triggerMetadata) must be a number")]
#[case::bad_activation(&[HTTP, Q, ("activationValue", "NaN")], &[], "parameter \"activationValue\" value \"NaN\" (from triggerMetadata) must be a number")]
fn parse_invalid(
    #[case] meta: &[(&str, &str)],
    #[case] auth: &[(&str, &str)],
    #[case] message: &str,
) {
    let err = parse(&cfg(meta, auth)).expect_err("invalid");
    assert!(err.is_config());
    let text = err.to_string();
    assert!(text.contains(message), "{text}");
}

#[test]
fn parse_errors_are_joined_and_hide_secrets() {
    let c = cfg(
        &[("pageSize", "x")],
        &[("host", "amqp://u:hunter2@h"), ("tls", "maybe")],
    );
    let text = parse(&c).expect_err("invalid").to_string();
    assert!(
        text.contains("queueName") && text.contains("pageSize"),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "{text}");
    let mut c = cfg(&[Q], &[("host", "amqp://u:hunter2@h")]);
    c.metric_type = Some(crate::MetricType::Value);
    let t = parse(&c).expect("valid");
    assert!(!format!("{t:?}").contains("hunter2"));
    assert_eq!(t.metric_type, crate::MetricType::Value);
}

#[rstest]
#[case::plain(0, "q", "s0-rabbitmq-q")]
#[case::slash(1, "namespace/name", "s1-rabbitmq-namespace-2Fname")]
#[case::space_and_dot(2, "a b.c", "s2-rabbitmq-a+b-c")]
fn metric_name_uses_trigger_index_and_query_escape(
    #[case] index: usize,
    #[case] queue: &str,
    #[case] expected: &str,
) {
    let mut c = cfg(
        &[
            AMQP,
            ("queueName", queue),
            ("mode", "QueueLength"),
            ("value", "1.5"),
        ],
        &[],
    );
    c.trigger_index = index;
    let specs = crate::parse_only(&c).expect("valid");
    assert_eq!(specs.len(), 1);
    assert_eq!(specs[0].metric_name, expected);
    assert_eq!(crate::naming::target_quantity(&specs[0]), "1500m");
}

fn info(n: i64, p: f64, d: f64) -> QueueInfo {
    QueueInfo {
        messages: n,
        publish_rate: p,
        deliver_rate: d,
    }
}

#[rstest]
#[case::length_active(Mode::QueueLength, info(5, 0.0, 0.0), 0.0, 5.0, true)]
#[case::length_at_threshold(Mode::QueueLength, info(5, 0.0, 0.0), 5.0, 5.0, false)]
#[case::length_empty(Mode::QueueLength, info(0, 9.0, 9.0), 0.0, 0.0, false)]
#[case::rate_by_rate(Mode::MessageRate, info(0, 2.0, 0.0), 1.0, 2.0, true)]
#[case::rate_by_backlog(Mode::MessageRate, info(3, 0.0, 0.0), 1.0, 0.0, true)]
#[case::rate_idle(Mode::MessageRate, info(1, 1.0, 0.0), 1.0, 1.0, false)]
#[case::deliver(Mode::DeliverGetRate, info(0, 0.0, 4.0), 3.0, 4.0, true)]
#[case::ratio_no_publish(Mode::PublishedToDeliveredRatio, info(0, 0.0, 1.0), 0.0, 0.0, false)]
#[case::ratio_stalled(Mode::PublishedToDeliveredRatio, info(0, 2.0, 0.0), 1.5, 1.5, true)]
#[case::ratio(Mode::PublishedToDeliveredRatio, info(0, 4.0, 2.0), 1.0, 2.0, true)]
#[case::time_empty(Mode::ExpectedQueueConsumptionTime, info(0, 1.0, 1.0), 0.0, 0.0, false)]
#[case::time_stalled(Mode::ExpectedQueueConsumptionTime, info(10, 1.0, 0.0), 7.0, 7.0, true)]
#[case::time(
    Mode::ExpectedQueueConsumptionTime,
    info(10, 3.0, 2.0),
    100.0,
    5.5,
    false
)]
fn activation_and_metric_per_mode(
    #[case] mode: Mode,
    #[case] queue: QueueInfo,
    #[case] activation: f64,
    #[case] value: f64,
    #[case] active: bool,
) {
    assert_eq!(
        evaluate(mode, queue, activation),
        MetricsAndActivity {
            values: vec![value],
            active
        }
    );
}

#[rstest]
#[case::no_path("/", None, "/api/queues/%2F")]
#[case::empty_path("", None, "/api/queues/%2F")]
#[case::prefix_and_vhost("/sub1/myVhost", None, "/sub1/api/queues/myVhost")]
#[case::prefix_only("/sub1/", None, "/sub1/api/queues/%2F")]
#[case::encoded_vhost("/%2FmyVhost", None, "/api/queues/%2FmyVhost")]
#[case::vhost_name_slash("/x", Some("/"), "/api/queues/%2F")]
#[case::vhost_name_escaped("/sub/x", Some("a b/c"), "/sub/api/queues/a+b%2Fc")]
fn http_path_takes_prefix_and_vhost_from_host(
    #[case] path: &str,
    #[case] vhost_name: Option<&str>,
    #[case] expected: &str,
) {
    assert_eq!(queues_path(path, vhost_name), expected);
}

const TWO_QUEUES: &str = r#"{"page_count":1,"items":[
 {"messages":4,"messages_ready":3,"message_stats":{"publish_details":{"rate":1.5},"deliver_get_details":{"rate":1}}},
 {"messages":7,"messages_ready":1,"message_stats":{"publish_details":{"rate":0.5}}}]}"#;

#[rstest]
#[case::sum("sum", false, info(11, 2.0, 1.0))]
#[case::avg_counts_divide_as_integers("avg", false, info(5, 1.0, 0.5))]
#[case::max_per_field("max", false, info(7, 1.5, 1.0))]
#[case::sum_ready_only("sum", true, info(4, 2.0, 1.0))]
fn regex_aggregation(#[case] op: &str, #[case] exclude: bool, #[case] expected: QueueInfo) {
    let page: Page = serde_json::from_str(TWO_QUEUES).expect("json");
    assert_eq!(aggregate(&page.items, op, exclude).expect("ok"), expected);
}

#[test]
fn unknown_operation_fails_only_with_matches() {
    let page: Page = serde_json::from_str(TWO_QUEUES).expect("json");
    assert!(aggregate(&page.items, "median", false).is_err());
    assert_eq!(
        aggregate(&[], "median", false).expect("empty"),
        QueueInfo::default()
    );
}

/// A fake management API on 127.0.0.1:0 serving fixed bodies per path.
async fn mock(routes: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, routes).await });
    format!("http://guest:guest@{addr}")
}

async fn poll(host: &str, extra: &[(&str, &str)]) -> Result<MetricsAndActivity, ScalerError> {
    let mut meta = vec![("host", host), Q];
    meta.extend_from_slice(extra);
    let c = cfg(&meta, &[]);
    let scaler = build(&c).await?;
    let name = scaler.metric_specs()[0].metric_name.clone();
    let result = scaler.metrics_and_activity(&name).await;
    scaler.close().await?;
    result
}

#[tokio::test]
async fn mocked_api_single_queue_and_regex() {
    let routes = Router::new()
        .route(
            "/api/queues/%2F/q",
            get(|| async { r#"{"messages":3,"messages_ready":2}"# }),
        )
        .route("/sub/api/queues/vh", get(|| async { TWO_QUEUES }));
    let host = mock(routes).await;
    let got = poll(&host, &[]).await.expect("single");
    assert_eq!(
        got,
        MetricsAndActivity {
            values: vec![3.0],
            active: true
        }
    );
    let got = poll(&host, &[("excludeUnacknowledged", "true")])
        .await
        .expect("ready");
    assert_eq!(got.values, vec![2.0]);
    let regex = [("useRegex", "true"), ("operation", "max")];
    let got = poll(&format!("{host}/sub/vh"), &regex)
        .await
        .expect("regex");
    assert_eq!(got.values, vec![7.0]);
}

#[rstest]
#[case::not_found(
    StatusCode::NOT_FOUND,
    r#"{"error":"Object Not Found"}"#,
    "status: 404 Not Found, response: {\"error\":\"Object Not Found\"}"
)]
#[case::server_error(
    StatusCode::INTERNAL_SERVER_ERROR,
    "boom",
    "status: 500 Internal Server Error, response: boom"
)]
#[case::unauthorized(StatusCode::UNAUTHORIZED, "denied", "status: 401 Unauthorized")]
#[case::bad_json(StatusCode::OK, "not json", "cannot decode RabbitMQ API response")]
#[tokio::test]
async fn mocked_api_errors_are_reported_without_credentials(
    #[case] status: StatusCode,
    #[case] body: &'static str,
    #[case] message: &str,
) {
    let host = mock(Router::new().fallback(get(move || async move { (status, body) }))).await;
    let err = poll(&host, &[]).await.expect_err("error");
    assert_eq!(err.kind(), "backend");
    let text = err.to_string();
    assert!(text.contains(message), "{text}");
    assert!(!text.contains("guest:guest"), "{text}");
}

#[tokio::test]
async fn mocked_api_regex_with_more_pages_is_an_error() {
    let body = r#"{"page_count":2,"items":[]}"#;
    let host = mock(Router::new().fallback(get(move || async move { body }))).await;
    let err = poll(&host, &[("useRegex", "true")])
        .await
        .expect_err("error");
    assert!(
        err.to_string().contains("regex matches more queues"),
        "{err}"
    );
}

#[tokio::test]
async fn unknown_metric_name_is_rejected() {
    let host = mock(Router::new()).await;
    let scaler = build(&cfg(&[("host", host.as_str()), Q], &[]))
        .await
        .expect("build");
    let err = scaler
        .metrics_and_activity("s9-other")
        .await
        .expect_err("unknown");
    assert_eq!(err.kind(), "unknown_metric");
}

#[rstest]
#[case::amqps_bad_ca("amqps://u:p@127.0.0.1:1/%2f")]
#[case::https_bad_ca("https://u:p@127.0.0.1:1")]
#[tokio::test]
async fn unusable_tls_material_is_a_config_error(#[case] host: &str) {
    let auth = [("tls", "enable"), ("ca", "not pem")];
    let err = build(&cfg(&[("host", host), Q], &auth))
        .await
        .expect_err("bad ca");
    assert!(err.is_config(), "{err}");
    assert!(
        err.to_string()
            .contains("tls: \"ca\" holds no PEM certificate"),
        "{err}"
    );
}

/// A listener that accepts connections and never answers: the worst kind of dead broker.
async fn silent_listener() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    addr
}

#[rstest]
#[case::amqp("amqp", "connect timed out after 300ms")]
#[case::http("http", "request timed out after 300ms")]
#[tokio::test]
async fn a_silent_broker_is_cut_off_by_the_timeout(#[case] scheme: &str, #[case] message: &str) {
    let addr = silent_listener().await;
    let mut c = cfg(&[("host", &format!("{scheme}://u:p@{addr}")), Q], &[]);
    c.timeout = Duration::from_millis(300);
    let started = std::time::Instant::now();
    let result = match build(&c).await {
        Ok(scaler) => poll_built(scaler.as_ref()).await,
        Err(e) => Err(e),
    };
    let err = result.expect_err("silent broker");
    assert!(err.to_string().contains(message), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

async fn poll_built(scaler: &dyn Scaler) -> Result<MetricsAndActivity, ScalerError> {
    let name = scaler.metric_specs()[0].metric_name.clone();
    scaler.metrics_and_activity(&name).await
}

#[tokio::test]
async fn oauth2_token_is_fetched_once_and_sent_as_bearer() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let tokens = Arc::new(AtomicUsize::new(0));
    let issued = Arc::clone(&tokens);
    let routes = Router::new()
        .route(
            "/token",
            axum::routing::post(move |body: String| {
                let issued = Arc::clone(&issued);
                async move {
                    issued.fetch_add(1, Ordering::SeqCst);
                    let ok = body.contains("grant_type=client_credentials")
                        && body.contains("client_id=c")
                        && body.contains("scope=a+b");
                    let status = if ok {
                        StatusCode::OK
                    } else {
                        StatusCode::BAD_REQUEST
                    };
                    (status, r#"{"access_token":"tok","expires_in":3600}"#)
                }
            }),
        )
        .route(
            "/api/queues/%2F/q",
            get(|headers: axum::http::HeaderMap| async move {
                match headers.get("authorization").and_then(|v| v.to_str().ok()) {
                    Some("Bearer tok") => (StatusCode::OK, r#"{"messages":9}"#),
                    _ => (StatusCode::UNAUTHORIZED, ""),
                }
            }),
        );
    let host = mock(routes).await;
    let token_uri = format!("{}/token", host.replace("guest:guest@", ""));
    let auth = [
        ("oauthTokenURI", token_uri.as_str()),
        ("clientID", "c"),
        ("clientSecret", "s"),
        ("scopes", "a,b"),
    ];
    let bare = host.replace("guest:guest@", "");
    let scaler = build(&cfg(&[("host", &bare), Q], &auth))
        .await
        .expect("build");
    for _ in 0..3 {
        assert_eq!(
            poll_built(scaler.as_ref()).await.expect("poll").values,
            vec![9.0]
        );
    }
    assert_eq!(tokens.load(Ordering::SeqCst), 1);
}

#[rstest]
#[case::app_id_uri("api://rabbitmq-mgmt", "api://rabbitmq-mgmt/.default")]
#[case::trailing_slash("https://rabbit.example/", "https://rabbit.example/.default")]
#[case::already_scoped("api://r/.default", "api://r/.default")]
#[case::guid(
    "00000000-1111-2222-3333-444444444444",
    "00000000-1111-2222-3333-444444444444/.default"
)]
fn workload_identity_resource_becomes_a_default_scope(#[case] resource: &str, #[case] scope: &str) {
    assert_eq!(super::http::scoped_resource(resource), scope);
}

#[test]
fn workload_identity_resource_with_azure_identity_parses_for_http() {
    let mut c = cfg(&[HTTP, Q], &[("workloadIdentityResource", "api://rabbit")]);
    c.pod_identity = Some(crate::PodIdentity {
        provider: "azure-workload".into(),
        ..crate::PodIdentity::default()
    });
    let t = parse(&c).expect("valid");
    assert_eq!(
        t.workload_identity_resource.as_deref(),
        Some("api://rabbit")
    );
}
