use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use axum::Router;
use axum::extract::RawQuery;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use rstest::rstest;

use super::*;
use crate::PodIdentity;

fn map(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
    kv.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn cfg(meta: &[(&str, &str)], auth: &[(&str, &str)]) -> ScalerConfig {
    let mut metadata = map(&[
        ("serverAddress", "http://p:9090"),
        ("query", "up"),
        ("threshold", "1"),
    ]);
    metadata.extend(map(meta));
    ScalerConfig {
        trigger_type: TYPE.into(),
        trigger_index: 2,
        metadata,
        auth_params: map(auth),
        timeout: Duration::from_secs(2),
        ..ScalerConfig::default()
    }
}

#[rstest]
#[case::minimal(&[], &[])]
#[case::every_metadata_key(
    &[("activationThreshold", "-1.5"), ("namespace", "team"), ("queryParameters", "a=1, b=x y"),
      ("customHeaders", "X-A=1,X-B=2"), ("ignoreNullValues", "false"), ("unsafeSsl", "true"),
      ("timeout", "1500"), ("metricName", "ignored"), ("identityOwner", "pod")],
    &[]
)]
#[case::bearer(&[("authModes", "bearer")], &[("bearerToken", "t")])]
#[case::bearer_token_alias(&[("authModes", "bearer")], &[("token", "t")])]
#[case::auth_mode_from_auth(&[], &[("authModes", "basic"), ("username", "u")])]
#[case::auth_mode_singular(&[("authMode", "basic")], &[("username", "u"), ("password", "p")])]
#[case::tls_and_custom(&[("authModes", "tls,custom")], &[("cert", "C"), ("key", "K"), ("customAuthHeader", "X-Key"), ("customAuthValue", "v")])]
#[case::api_key_and_oauth_are_accepted(&[("authModes", "apiKey")], &[])]
fn parse_valid(#[case] meta: &[(&str, &str)], #[case] auth: &[(&str, &str)]) {
    let t = parse(&cfg(meta, auth)).expect("valid");
    assert_eq!(t.query, "up");
}

#[rstest]
#[case::missing_server(&[("serverAddress", " ")], &[], "missing required parameter \"serverAddress\" in [triggerMetadata]")]
#[case::missing_threshold(&[("threshold", "")], &[], "missing required parameter \"threshold\"")]
#[case::bad_threshold(&[("threshold", "x")], &[], "parameter \"threshold\" value \"x\" (from triggerMetadata) must be a number")]
#[case::bad_activation(&[("activationThreshold", "1,5")], &[], "parameter \"activationThreshold\"")]
#[case::bad_bool(&[("ignoreNullValues", "nope")], &[], "parameter \"ignoreNullValues\" value \"nope\"")]
#[case::bad_map(&[("queryParameters", "a")], &[], "parameter \"queryParameters\" value \"a\" (from triggerMetadata) must be a list of key=value pairs")]
#[case::bad_header(&[("customHeaders", "bad header=1")], &[], "\"customHeaders\" entry \"bad header\" is not a valid HTTP header")]
#[case::bad_timeout(&[("timeout", "soon")], &[], "parameter \"timeout\" value \"soon\"")]
#[case::unknown_auth_mode(&[("authModes", "bearer,kerberos")], &[], "parameter \"authModes\" value \"bearer,kerberos\" (from triggerMetadata) must be one of [apiKey basic tls bearer custom oauth]")]
#[case::two_exclusive_modes(&[("authModes", "bearer,basic")], &[("bearerToken", "t"), ("username", "u")], "only one of bearer, basic and oauth")]
#[case::bearer_without_token(&[("authModes", "bearer")], &[], "bearerToken (or token) is required")]
#[case::basic_without_user(&[("authModes", "basic")], &[("password", "p")], "username is required")]
#[case::tls_without_key(&[("authModes", "tls")], &[("cert", "C")], "cert and key are required")]
#[case::custom_without_value(&[("authModes", "custom")], &[("customAuthHeader", "X")], "customAuthHeader and customAuthValue are required")]
fn parse_invalid(
    #[case] meta: &[(&str, &str)],
    #[case] auth: &[(&str, &str)],
    #[case] message: &str,
) {
    let text = parse(&cfg(meta, auth)).expect_err("invalid").to_string();
    assert!(text.contains(message), "{text}");
}

#[test]
fn auth_modes_with_pod_identity_are_rejected() {
    let mut c = cfg(
        &[("authModes", "bearer")],
        &[("bearerToken", "secret-token")],
    );
    c.pod_identity = Some(PodIdentity {
        provider: "azure-workload".into(),
        ..PodIdentity::default()
    });
    let text = parse(&c).expect_err("invalid").to_string();
    assert!(
        text.contains("pod identity cannot be enabled with other auth types"),
        "{text}"
    );
    assert!(!text.contains("secret-token"));
}

#[test]
fn utilization_metric_type_is_rejected() {
    let mut c = cfg(&[], &[]);
    c.metric_type = Some(MetricType::Utilization);
    assert!(
        parse(&c)
            .expect_err("invalid")
            .to_string()
            .contains("'Utilization'")
    );
}

#[rstest]
#[case::index_two(2, "s2-prometheus")]
#[case::index_zero(0, "s0-prometheus")]
fn metric_spec_uses_trigger_index(#[case] index: usize, #[case] name: &str) {
    let mut c = cfg(&[("threshold", "0.5")], &[]);
    c.trigger_index = index;
    let specs = crate::parse_only(&c).expect("valid");
    assert_eq!(specs[0].metric_name, name);
    assert_eq!(crate::naming::target_quantity(&specs[0]), "500m");
    assert_eq!(specs[0].metric_type, MetricType::AverageValue);
}

#[test]
fn query_url_escapes_query_and_parameters_but_not_namespace() {
    let c = cfg(
        &[
            ("query", "sum(rate(x{a=\"b c\"}[1m]))"),
            ("namespace", "a&b"),
            ("queryParameters", "k 1=v/2"),
        ],
        &[],
    );
    let url = parse(&c)
        .expect("valid")
        .query_url(UNIX_EPOCH + Duration::from_secs(86400));
    assert_eq!(
        url,
        "http://p:9090/api/v1/query?query=sum%28rate%28x%7Ba%3D%22b+c%22%7D%5B1m%5D%29%29\
         &time=1970-01-02T00:00:00Z&namespace=a&b&k+1=v%2F2"
    );
}

#[rstest]
#[case::plain("http://p:9090")]
#[case::path_and_slash("https://Prom.Example:443/prometheus/")]
#[case::ipv6("http://[::1]:9090")]
#[case::userinfo("http://u:p@p:9090")]
#[case::own_query("http://p:9090/x?tenant=a")]
fn the_parsed_base_gives_the_same_url_as_parsing_it_whole(#[case] address: &str) {
    let c = cfg(
        &[
            ("serverAddress", address),
            ("query", "sum(rate(x{a=\"b c\"}[1m])) / 2%"),
            ("namespace", "a&b é"),
            ("queryParameters", "k 1=v/2"),
        ],
        &[],
    );
    let trigger = parse(&c).expect("valid");
    let now = UNIX_EPOCH + Duration::from_secs(86400);
    let whole = Url::parse(&trigger.query_url(now)).expect("a URL");
    let base = query_base(&trigger);
    assert_eq!(base.is_none(), address.contains('?'));
    assert_eq!(query_url(base.as_ref(), &trigger, now), Ok(whole));
}

fn vector(values: &str) -> String {
    format!(r#"{{"status":"success","data":{{"resultType":"vector","result":[{values}]}}}}"#)
}

#[rstest]
#[case::one_sample(vector(r#"{"metric":{},"value":[1,"12.5"]}"#), true, Ok(12.5))]
#[case::empty_ignored(vector(""), true, Ok(0.0))]
#[case::empty_strict(vector(""), false, Err("the result is empty"))]
#[case::multi_series(
    vector(r#"{"value":[1,"1"]},{"value":[1,"2"]}"#),
    true,
    Err("returned multiple elements")
)]
#[case::matrix_ignored(vector(r#"{"values":[[1,"1"]]}"#), true, Ok(0.0))]
#[case::matrix_strict(
    vector(r#"{"values":[[1,"1"]]}"#),
    false,
    Err("the value list is empty")
)]
#[case::one_entry(vector(r#"{"value":[1]}"#), true, Err("didn't return enough values"))]
#[case::not_a_float(vector(r#"{"value":[1,"abc"]}"#), true, Err("is not a number"))]
#[case::null_is_minus_one(vector(r#"{"value":[1,null]}"#), false, Ok(-1.0))]
#[case::nan_ignored(vector(r#"{"value":[1,"NaN"]}"#), true, Ok(0.0))]
#[case::nan_strict(
    vector(r#"{"value":[1,"NaN"]}"#),
    false,
    Err("prometheus query returns NaN")
)]
#[case::inf_ignored(vector(r#"{"value":[1,"+Inf"]}"#), true, Ok(0.0))]
#[case::neg_inf_strict(
    vector(r#"{"value":[1,"-Inf"]}"#),
    false,
    Err("prometheus query returns -inf")
)]
#[case::negative(vector(r#"{"value":[1,"-3"]}"#), true, Ok(-3.0))]
#[case::scalar(r#"{"data":{"resultType":"scalar","result":[1,"7"]}}"#.to_owned(), true, Ok(7.0))]
#[case::invalid_json("nope".to_owned(), true, Err("cannot decode prometheus query response"))]
#[case::no_data(r#"{"status":"error"}"#.to_owned(), true, Err("cannot decode prometheus query response"))]
fn response_handling(
    #[case] body: String,
    #[case] ignore_null_values: bool,
    #[case] expected: Result<f64, &str>,
) {
    let got = parse_response(&body, ignore_null_values);
    match (got, expected) {
        (Ok(v), Ok(e)) => assert_eq!(v, e),
        (Err(m), Err(e)) => assert!(m.contains(e), "{m}"),
        (got, expected) => panic!("got {got:?}, expected {expected:?}"),
    }
}

/// A fake Prometheus on 127.0.0.1:0 answering every query with `status` and `body`.
async fn mock(status: StatusCode, body: String) -> String {
    let handler = move || {
        let body = body.clone();
        async move { (status, body) }
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = Router::new().route("/api/v1/query", get(handler));
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

async fn poll(
    server: &str,
    meta: &[(&str, &str)],
    auth: &[(&str, &str)],
) -> Result<MetricsAndActivity, ScalerError> {
    let mut c = cfg(meta, auth);
    c.metadata.insert("serverAddress".into(), server.into());
    let scaler = build(&c).await?;
    let result = scaler.metrics_and_activity("s2-prometheus").await;
    scaler.close().await?;
    result
}

#[rstest]
#[case::value_above_activation(vector(r#"{"value":[1,"2.5"]}"#), &[("activationThreshold", "2")], Ok((2.5, true)))]
#[case::value_at_activation(vector(r#"{"value":[1,"2"]}"#), &[("activationThreshold", "2")], Ok((2.0, false)))]
#[case::nan_ignored(vector(r#"{"value":[1,"NaN"]}"#), &[], Ok((0.0, false)))]
#[case::inf_strict(vector(r#"{"value":[1,"+Inf"]}"#), &[("ignoreNullValues", "false")], Err("prometheus query returns inf"))]
#[case::empty_strict(vector(""), &[("ignoreNullValues", "false")], Err("the result is empty"))]
#[case::multi_series(vector(r#"{"value":[1,"1"]},{"value":[1,"2"]}"#), &[], Err("multiple elements"))]
#[tokio::test]
async fn mocked_backend_values(
    #[case] body: String,
    #[case] meta: &[(&str, &str)],
    #[case] expected: Result<(f64, bool), &str>,
) {
    let server = mock(StatusCode::OK, body).await;
    match (poll(&server, meta, &[]).await, expected) {
        (Ok(got), Ok((value, active))) => {
            assert_eq!(
                got,
                MetricsAndActivity {
                    values: vec![value],
                    active
                }
            );
        }
        (Err(e), Err(message)) => assert!(e.to_string().contains(message), "{e}"),
        (got, expected) => panic!("got {got:?}, expected {expected:?}"),
    }
}

#[rstest]
#[case::bad_request(StatusCode::BAD_REQUEST, "status: 400 response: {\"error\":\"parse\"}")]
#[case::unavailable(StatusCode::SERVICE_UNAVAILABLE, "status: 503")]
#[tokio::test]
async fn mocked_backend_error_statuses(#[case] status: StatusCode, #[case] message: &str) {
    let server = mock(status, r#"{"error":"parse"}"#.to_owned()).await;
    let err = poll(&server, &[], &[]).await.expect_err("error");
    assert_eq!(err.kind(), "backend");
    assert!(
        err.to_string()
            .contains("prometheus query api returned error"),
        "{err}"
    );
    assert!(err.to_string().contains(message), "{err}");
}

/// A fake Prometheus that answers 1 only when the auth header, the `X-Custom` header and the
/// query string are as expected, and 403 otherwise.
async fn strict_mock(auth: &'static str, custom: &'static str, query_part: &'static str) -> String {
    let handler = move |headers: HeaderMap, RawQuery(query): RawQuery| async move {
        let got_auth = headers.get("authorization").and_then(|v| v.to_str().ok());
        let got_custom = headers.get("x-custom").and_then(|v| v.to_str().ok());
        let ok = got_auth == Some(auth)
            && got_custom == Some(custom)
            && query.unwrap_or_default().contains(query_part);
        if ok {
            (StatusCode::OK, vector(r#"{"value":[1,"1"]}"#))
        } else {
            (StatusCode::FORBIDDEN, String::new())
        }
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = Router::new().route("/api/v1/query", get(handler));
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

#[rstest]
#[case::bearer(&[("authModes", "bearer")], &[("bearerToken", "tok")], "Bearer tok", "h")]
#[case::basic(&[("authModes", "basic")], &[("username", "u"), ("password", "p")], "Basic dTpw", "h")]
#[case::custom_overrides_custom_header(
    &[("authModes", "custom"), ("customHeaders", "Authorization=x,X-Custom=h")],
    &[("customAuthHeader", "Authorization"), ("customAuthValue", "Key k")],
    "Key k", "h"
)]
#[tokio::test]
async fn auth_headers_and_custom_headers_are_sent(
    #[case] meta: &[(&str, &str)],
    #[case] auth: &[(&str, &str)],
    #[case] expected_auth: &'static str,
    #[case] expected_custom: &'static str,
) {
    let server = strict_mock(expected_auth, expected_custom, "a=1").await;
    let mut meta = meta.to_vec();
    if !meta.iter().any(|(k, _)| *k == "customHeaders") {
        meta.push(("customHeaders", "X-Custom=h"));
    }
    meta.push(("queryParameters", "a=1"));
    let got = poll(&server, &meta, auth).await.expect("authorized");
    assert_eq!(got.values, vec![1.0]);
}

#[test]
fn secrets_never_show_in_debug_output() {
    let auth = [
        ("bearerToken", "secret-token"),
        ("cert", "C"),
        ("key", "secret-key"),
        ("customAuthHeader", "X-Key"),
        ("customAuthValue", "secret-value"),
    ];
    let c = cfg(&[("authModes", "bearer,custom,tls")], &auth);
    let trigger = format!("{:?}", parse(&c).expect("valid"));
    let config = format!("{c:?}");
    for text in [trigger, config] {
        assert!(!text.contains("secret-"), "{text}");
    }
}

#[tokio::test]
async fn a_slow_server_is_cut_off_by_the_trigger_timeout() {
    let handler = || async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        vector(r#"{"value":[1,"1"]}"#)
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = Router::new().route("/api/v1/query", get(handler));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let started = std::time::Instant::now();
    let err = poll(&format!("http://{addr}"), &[("timeout", "200ms")], &[])
        .await
        .expect_err("timeout");
    assert!(
        err.to_string().contains("request timed out after 200ms"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}
