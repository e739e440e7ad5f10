//! Malformed and unsupported requests get kube-apiserver's Status codes and reasons, and never
//! take the server down.

mod common;

use http::Request;
use kube::client::Body;
use proptest::prelude::*;
use serde_json::Value;

async fn send(
    client: &kube::Client,
    method: &str,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, Value) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", content_type)
        .body(Body::from(body))
        .unwrap();
    let resp = client.send(req).await.expect("the server answers");
    let code = resp.status().as_u16();
    let bytes = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn assert_status(code: u16, body: &Value, reason: &str) {
    assert_eq!(body["kind"], "Status", "{body}");
    assert_eq!(
        (body["code"].as_u64(), body["reason"].as_str()),
        (Some(u64::from(code)), Some(reason)),
        "{body}"
    );
}

#[tokio::test]
async fn bad_requests_get_the_matching_status() {
    let env = common::start().await;
    let client = env.client().await;
    let cms = "/api/v1/namespaces/default/configmaps";
    let (code, body) = send(
        &client,
        "POST",
        cms,
        "application/json",
        b"{not json".to_vec(),
    )
    .await;
    assert_status(code, &body, "BadRequest");
    let (code, body) = send(&client, "POST", cms, "text/plain", b"hello".to_vec()).await;
    assert_status(code, &body, "UnsupportedMediaType");
    let (code, body) = send(
        &client,
        "GET",
        "/apis/nothing.example.com/v1/things",
        "",
        vec![],
    )
    .await;
    assert_status(code, &body, "NotFound");
    let (code, body) = send(&client, "PUT", cms, "application/json", b"{}".to_vec()).await;
    assert_status(code, &body, "MethodNotAllowed");
    let patch = format!("{cms}/missing");
    let (code, body) = send(
        &client,
        "PATCH",
        &patch,
        "application/xml",
        b"<x/>".to_vec(),
    )
    .await;
    assert_status(code, &body, "UnsupportedMediaType");
    let bad_name = br#"{"metadata":{"name":"Not_Valid"}}"#.to_vec();
    let (code, body) = send(&client, "POST", cms, "application/json", bad_name).await;
    assert_status(code, &body, "Invalid");
    assert_eq!(body["details"]["causes"][0]["field"], "metadata.name");
    let deploy = br#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d"},"spec":{"replicas":-1,"selector":{"matchLabels":{"a":"b"}},"template":{"metadata":{"labels":{"a":"b"}}}}}"#.to_vec();
    let (code, body) = send(
        &client,
        "POST",
        "/apis/apps/v1/namespaces/default/deployments",
        "application/json",
        deploy,
    )
    .await;
    assert_status(code, &body, "Invalid");
    assert_eq!(
        body["message"],
        "Deployment.apps \"d\" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0"
    );
}

#[tokio::test]
async fn clients_that_only_take_protobuf_are_not_acceptable() {
    let env = common::start().await;
    let client = env.client().await;
    let req = Request::builder()
        .uri("/api/v1/namespaces/default/configmaps")
        .header("accept", "application/vnd.kubernetes.protobuf")
        .body(Body::empty())
        .unwrap();
    let resp = client.send(req).await.unwrap();
    assert_eq!(resp.status().as_u16(), 406);
    let req = Request::builder()
        .uri("/api/v1/namespaces/default/configmaps")
        .header("accept", "application/vnd.kubernetes.protobuf, */*")
        .body(Body::empty())
        .unwrap();
    assert_eq!(client.send(req).await.unwrap().status().as_u16(), 200);
}

#[tokio::test]
async fn strategic_merge_is_refused_for_custom_resources() {
    let env = common::start().await;
    env.apply(common::WIDGET_CRD, &[]).await;
    let client = env.client().await;
    let widget = br#"{"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"w"},"spec":{"color":"red"}}"#.to_vec();
    let path = "/apis/example.com/v1/namespaces/default/widgets";
    assert_eq!(
        send(&client, "POST", path, "application/json", widget)
            .await
            .0,
        201
    );
    let (code, body) = send(
        &client,
        "PATCH",
        &format!("{path}/w"),
        "application/strategic-merge-patch+json",
        b"{}".to_vec(),
    )
    .await;
    assert_status(code, &body, "UnsupportedMediaType");
    let (code, body) = send(&client, "PUT", &format!("{path}/w"), "application/json", br#"{"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"w"},"spec":{"color":"red"}}"#.to_vec()).await;
    assert_status(code, &body, "Invalid");
    assert_eq!(
        body["details"]["causes"][0]["field"],
        "metadata.resourceVersion"
    );
}

fn methods() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS",
    ])
}

fn paths() -> impl Strategy<Value = String> {
    let prefixes = prop::sample::select(vec![
        "/api/v1/namespaces/default/configmaps",
        "/apis/apps/v1/namespaces/default/deployments",
        "/api/v1/namespaces",
        "/apis/apps/v1/namespaces/default/deployments/x/scale",
        "/apis/example.com/v1/widgets",
        "/apis",
        "/api/v1/pods",
        "/apis/authorization.k8s.io/v1/subjectaccessreviews",
        "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers",
    ]);
    (
        prefixes,
        "[a-z0-9/._%-]{0,12}",
        prop::option::of("(watch|limit|continue|labelSelector|fieldSelector)=[a-z0-9=!,()-]{0,8}"),
    )
        .prop_map(|(p, tail, q)| {
            format!(
                "{p}{tail}{}",
                q.map(|q| format!("?{q}")).unwrap_or_default()
            )
        })
}

fn content_types() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "application/json",
        "application/yaml",
        "application/merge-patch+json",
        "application/json-patch+json",
        "application/strategic-merge-patch+json",
        "application/apply-patch+yaml",
        "text/plain",
        "",
        "application/vnd.kubernetes.protobuf",
    ])
}

fn bodies() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        Just(br#"{"metadata":{"name":"p"},"spec":{"replicas":"x"}}"#.to_vec()),
        Just(br#"[{"op":"replace","path":"/spec/x","value":1}]"#.to_vec()),
        Just(b"null".to_vec()),
        Just(br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"p","namespace":"other"}}"#.to_vec()),
    ]
}

#[test]
fn random_requests_always_get_a_status_and_the_server_stays_up() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (env, client) = rt.block_on(async {
        let env = common::start().await;
        let client = env.client().await;
        (env, client)
    });
    let config = ProptestConfig {
        cases: 200,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(method in methods(), path in paths(), ct in content_types(), body in bodies())| {
        let (code, reply) = rt.block_on(send(&client, method, &path, ct, body));
        if code >= 400 && method != "HEAD" {
            prop_assert_eq!(&reply["kind"], "Status", "{} {} -> {}: {}", method, path, code, reply);
            prop_assert_eq!(reply["code"].as_u64(), Some(u64::from(code)));
        }
        prop_assert!(code < 500, "{} {} -> {}: {}", method, path, code, reply);
    });
    let (code, _) = rt.block_on(send(
        &client,
        "GET",
        "/api/v1/namespaces/default/configmaps",
        "",
        vec![],
    ));
    assert_eq!(code, 200);
    drop(env);
}
